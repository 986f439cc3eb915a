//! The oracle's verdict at the end of a run. Byte-level checks (every body and stream
//! byte, every id) were made as the bytes arrived; here each request's outcome is
//! held against what its plan allows, each deadline against its time, and each
//! connection's end against when it was due.
//!
//! A request whose backend behaved gets its own response, whole, unless its
//! connection had ended before (after an error answer or a cut). A fault of the
//! backend's or the client's allows exactly the outcome that fault causes, at the time
//! its timeout says: 408 at `header_timeout_ms` after the stall, 504 at
//! `backend_timeout_ms` after the backend had the request, 502 at
//! `connect_timeout_ms` from a black hole (or 503 at once while it is marked down).

use super::client::{Got, HttpClient};
use super::l4::L4Client;
use super::plan::{End, Fault, Framing, L4End, ReqPlan, Scenario, Stall, Then};
use super::world::{Records, World};

/// How long after its script ends a client may wait for sluice to close.
const CLOSE_MS: u64 = 100;

/// How late after its deadline a timeout may be seen: a request and an answer cross
/// the network (`latency + jitter` each way), and a loop turn may take a millisecond.
fn tolerance(sc: &Scenario) -> u64 {
    2 * (sc.net.latency_ms + sc.net.jitter_ms) + 3
}

/// Whether `at` is within `[from + after, from + after + tol]`; a message if not.
fn on_time(
    what: &str,
    at: Option<u64>,
    from: Option<u64>,
    after: u64,
    tol: u64,
    early: u64,
) -> Option<String> {
    let (Some(at), Some(from)) = (at, from) else {
        return Some(format!("{what}: not seen (at {at:?}, from {from:?})"));
    };
    let due = from + after;
    if at + early < due || at > due + tol {
        return Some(format!(
            "{what} at {at} ms, due at {due} ms ({after} ms after {from} ms; allowed {} ..= {})",
            due.saturating_sub(early),
            due + tol
        ));
    }
    None
}

pub fn check(w: &mut World) {
    let mut problems = Vec::new();
    for c in &w.clients {
        check_client(c, &w.sc, &w.rec, &mut problems);
    }
    for c in &w.l4c {
        check_l4(c, &w.sc, &w.rec, &mut problems);
    }
    let now = w.net.now_ms;
    for p in problems {
        w.rec.fail(now, p);
    }
}

fn check_client(c: &HttpClient, sc: &Scenario, rec: &Records, out: &mut Vec<String>) {
    let who = format!("client {}", c.plan.idx);
    let tol = tolerance(sc);
    let lat = sc.net.latency_ms + sc.net.jitter_ms + 1;
    if !c.done {
        let waiting = c.plan.reqs.get(c.cur).copied();
        out.push(format!(
            "{who} never finished: {} of {} answered ({:?}), waiting for {waiting:?} (sent up to {:?}), script ({:?}) done at {:?}, socket {:?}",
            c.cur,
            c.plan.reqs.len(),
            c.got,
            c.times.get(c.cur).and_then(|t| t.last_sent),
            c.plan.end,
            c.script_done_ms,
            c.sock,
        ));
        return;
    }
    let mut ended = false;
    // After an answer that came before its request's body was all read, sluice may
    // close the connection (it does not wait for the rest of a body nobody reads).
    let mut may_have_ended = false;
    for (k, &id) in c.plan.reqs.iter().enumerate() {
        let p = &sc.reqs[id as usize];
        let (g, t) = (c.got[k], c.times[k]);
        let aborted = matches!(c.plan.end, End::Abort { after, .. } if k >= after);
        if ended || aborted {
            continue;
        }
        if may_have_ended && g == Got::Nothing {
            ended = true;
            continue;
        }
        let bad = |why: String| {
            format!(
                "{who}: request {id} ({:?}, {:?}): {why}",
                p.method, p.resp.fault
            )
        };
        if c.plan.hole {
            let late = on_time(
                "502 from the black hole",
                t.answered,
                t.head_sent,
                sc.t.connect_ms,
                tol,
                0,
            );
            let now = on_time(
                "503 while it is marked down",
                t.answered,
                t.head_sent,
                0,
                tol,
                0,
            );
            match g {
                Got::Own(502) => out.extend(late.map(bad)),
                Got::Own(503) => out.extend(now.map(bad)),
                g => out.push(bad(format!("{} from a black hole", said(g, p, t.answered)))),
            }
            ended = true;
            continue;
        }
        if p.stall.is_some() && g == Got::Own(502) && sc.late_close && !p.replayable() {
            ended = true; // see `outcome`
            continue;
        }
        if let Some(stall) = p.stall {
            let sent = match stall {
                Stall::Head(_) => t.first_sent,
                Stall::Body(_) => t.last_sent,
            };
            // Pipelined behind another request, its wait starts when that exchange
            // ends: after its backend's last byte, before its client had it.
            let (mut from, mut to) = (sent, sent);
            if k > 0 {
                let prev = c.plan.reqs[k - 1] as usize;
                from = from.max(rec.resp_out_ms[prev]);
                to = to.max(c.times[k - 1].answered);
            }
            let slack = from.zip(to).map_or(0, |(f, t)| t.saturating_sub(f));
            match g {
                Got::Own(408) => out.extend(
                    on_time(
                        "408 for a stalled request",
                        t.answered,
                        from,
                        sc.t.header_ms,
                        tol + lat + slack,
                        0,
                    )
                    .map(bad),
                ),
                g => out.push(bad(format!(
                    "{} for a request that stalled ({stall:?})",
                    said(g, p, t.answered)
                ))),
            }
            ended = true;
            continue;
        }
        // While the response before was more than sluice buffers for a client, sluice
        // was not waiting on this request's backend: its silence counts from then on.
        let backlog = k.checked_sub(1).and_then(|j| c.times[j].answered);
        if let Some(why) = outcome(p, g, (t.answered, backlog), sc, rec, tol) {
            out.push(bad(why));
        }
        let said_close = c.close_after == Some(k);
        ended = g != Got::Exact || said_close;
        may_have_ended |= p.resp.early && p.method.has_body();
        let reason = p.close || p.resp.framing == Framing::Close;
        if g == Got::Exact && said_close && k + 1 < c.plan.reqs.len() && !reason {
            out.push(bad(
                "sluice closed the connection after it, though more requests followed".into(),
            ));
        }
    }
    let last = c.plan.reqs.len() - 1;
    let all_exact = c.got.iter().all(|g| *g == Got::Exact);
    let keepalive_idle = c.plan.end == End::Idle && all_exact && !ended;
    let prompt = c
        .script_done_ms
        .zip(c.closed_ms)
        .is_some_and(|(d, cl)| cl <= d + CLOSE_MS);
    if keepalive_idle && !(may_have_ended && prompt) {
        let id = c.plan.reqs[last] as usize;
        let from = rec.resp_out_ms[id];
        let slack = c.times[last].answered.zip(from).map_or(0, |(a, f)| a - f);
        out.extend(on_time(
            &format!("{who}: closed as idle"),
            c.closed_ms,
            from,
            sc.t.keepalive_ms,
            tol + slack,
            0,
        ));
    } else if !c.aborted && !keepalive_idle {
        if let (Some(done), Some(closed)) = (c.script_done_ms, c.closed_ms) {
            if closed > done + CLOSE_MS {
                out.push(format!(
                    "{who}: sluice closed the connection {} ms after the client's script ended at {done} ms ({:?}; answers {:?})",
                    closed - done,
                    c.plan.end,
                    c.got
                ));
            }
        }
    }
}

/// Whether outcome `g` (seen at `at`) is one request `p`'s plan allows; `backlog`:
/// when its client had the response before it.
fn outcome(
    p: &ReqPlan,
    g: Got,
    (at, backlog): (Option<u64>, Option<u64>),
    sc: &Scenario,
    rec: &Records,
    tol: u64,
) -> Option<String> {
    let id = p.id as usize;
    let lat = sc.net.latency_ms + sc.net.jitter_ms + 1;
    let bt = sc.t.backend_ms;
    // The backend's silence starts at `from`, or as late as the client's backlog ended.
    let silence = |from: Option<u64>, what: &str| {
        let late = backlog.zip(from).map_or(0, |(b, f)| b.saturating_sub(f));
        on_time(what, at, from, bt, tol + late, lat)
    };
    match (p.resp.fault, g) {
        // A backend that closes an idle connection when it likes: a request sent on it
        // just then is lost (before its own plan could play), and one that cannot be
        // replayed gets a 502.
        (_, Got::Own(502)) if sc.late_close && !p.replayable() => None,
        // Answered before its body, then reset while the body was still being sent:
        // sluice's send fails before it reads (the rest of) the answer (reported, not
        // fixed): a 502, or the answer cut short.
        (_, Got::Own(502) | Got::Cut(_))
            if p.resp.early && matches!(p.resp.then, Then::Reset { .. }) =>
        {
            None
        }
        (Fault::None, Got::Exact) => None,
        (Fault::Stall, Got::Own(504)) => silence(rec.req_in_ms[id], "504"),
        // Silence counts from the backend's last byte, or from the request's last one
        // when the head was sent before the body had all arrived.
        (Fault::StallMid(_), Got::Cut(_)) => {
            silence(rec.resp_out_ms[id].max(rec.req_in_ms[id]), "cut")
        }
        // Reset after the whole response (it was short), or during it.
        (Fault::ResetAfter(_), Got::Exact | Got::Own(502) | Got::Cut(_)) => None,
        (Fault::Truncate(_), Got::Cut(_)) => None,
        (Fault::Garbage, Got::Own(502)) => None,
        (f, g) => Some(format!(
            "{}, where the plan ({f:?}) allows otherwise",
            said(g, p, at)
        )),
    }
}

fn check_l4(c: &L4Client, sc: &Scenario, rec: &Records, out: &mut Vec<String>) {
    let p = &c.plan;
    let who = format!("l4 client {} ({:?}, echo {})", p.id, p.end, p.echo);
    let tol = tolerance(sc);
    let lat = sc.net.latency_ms + sc.net.jitter_ms + 1;
    let r = rec.l4[p.id as usize];
    if !c.done {
        out.push(format!(
            "{who} never finished: sent {} of {}, got {} of {}, backend got {} (eof {}, reset {})",
            c.sent,
            p.up + 16,
            c.got,
            p.down,
            r.up,
            r.eof,
            r.reset
        ));
        return;
    }
    if p.hole {
        out.extend(on_time(
            &format!("{who}: closed after the connect timeout"),
            c.closed_ms,
            Some(p.start_ms),
            sc.t.connect_ms,
            tol,
            0,
        ));
        return;
    }
    match p.end {
        L4End::HalfClose => {
            if c.got != p.down as u64 || r.up != p.up as u64 || c.reset {
                out.push(format!(
                    "{who}: got {} of {} bytes (reset {}); the backend got {} of {}",
                    c.got, p.down, c.reset, r.up, p.up
                ));
            }
        }
        L4End::Idle => out.extend(on_time(
            &format!("{who}: closed as idle"),
            c.closed_ms,
            r.first_ms,
            sc.t.idle_ms,
            tol,
            lat,
        )),
        L4End::ClientReset(_) => {}
        L4End::BackendReset(n) => {
            if c.got > n as u64 {
                out.push(format!(
                    "{who}: got {} bytes, more than the {n} sent before the reset",
                    c.got
                ));
            }
        }
    }
    if r.conns > 1 {
        out.push(format!(
            "{who}: {} backend connections carried one stream",
            r.conns
        ));
    }
}

/// An outcome in words.
fn said(g: Got, p: &ReqPlan, at: Option<u64>) -> String {
    let at = at.map_or_else(|| "never".to_string(), |t| format!("at {t} ms"));
    match g {
        Got::Nothing => "no answer".to_string(),
        Got::Exact => format!("its whole response {at}"),
        Got::Own(s) => format!("sluice's own {s} {at}"),
        Got::Cut(n) => format!(
            "the connection ended {at}, {n} bytes into a response whose body is {} bytes",
            p.resp.len
        ),
    }
}
