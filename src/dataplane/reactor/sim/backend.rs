//! A scripted HTTP backend: one per backend address, serving every connection sluice
//! opens to it. It checks each request it gets (its id, method, framing and every
//! body byte) and answers as the request's plan says — framing, pace, delay, and the
//! faults: stalls, resets, short bodies, garbage, stray bytes, a body after a HEAD
//! response, an answer before the request body, FIN or RST with the last bytes.

use super::framing::{take, Body, Chunk, Inbuf, Reader};
use super::net::{Net, SockId};
use super::plan::{response_bytes, stray_bytes, Fault, Framing, Method, ReqPlan, Then, UP_STREAM};
use super::rng::mismatch;
use super::world::Records;
use std::collections::VecDeque;
use std::net::SocketAddr;

enum Input {
    Head,
    Body { id: u64, rd: Reader, early: bool },
}

/// Something the backend does later on a connection.
enum Act {
    Shut,
    Reset,
    Send(Vec<u8>),
}

struct Answer {
    id: u64,
    /// Sent in one segment with the response's last bytes.
    stray: Option<Vec<u8>>,
}

struct Conn {
    sock: SockId,
    inbuf: Inbuf,
    input: Input,
    queue: VecDeque<u64>,
    out: Vec<u8>,
    out_off: usize,
    answering: Option<Answer>,
    next_write_ms: u64,
    later: Vec<(u64, Act)>,
    /// No more responses (stalled, or closing).
    quiet: bool,
    closed: bool,
}

pub struct HttpBackend {
    pub addr: SocketAddr,
    conns: Vec<Conn>,
}

impl HttpBackend {
    pub fn new(addr: SocketAddr) -> HttpBackend {
        HttpBackend {
            addr,
            conns: Vec::new(),
        }
    }

    pub fn accept(&mut self, sock: SockId) {
        self.conns.push(Conn {
            sock,
            inbuf: Inbuf::default(),
            input: Input::Head,
            queue: VecDeque::new(),
            out: Vec::new(),
            out_off: 0,
            answering: None,
            next_write_ms: 0,
            later: Vec::new(),
            quiet: false,
            closed: false,
        });
    }

    /// When a connection next acts of its own accord (a pause or a delay ends, a
    /// planned close comes); a full window waits for news instead.
    pub fn wake_ms(&self, net: &Net) -> Option<u64> {
        let mut t: Option<u64> = None;
        for c in self.conns.iter().filter(|c| !c.closed) {
            let mut w = c.later.iter().map(|(at, _)| *at).min();
            let writing = c.out_off < c.out.len() && net.free(c.sock) > 0;
            if writing || (!c.queue.is_empty() && !c.quiet && c.answering.is_none()) {
                w = Some(w.map_or(c.next_write_ms, |x| x.min(c.next_write_ms)));
            }
            if let Some(w) = w {
                t = Some(t.map_or(w, |x| x.min(w)));
            }
        }
        t
    }

    pub fn step(&mut self, net: &mut Net, reqs: &[ReqPlan], rec: &mut Records) {
        let addr = self.addr;
        for c in self.conns.iter_mut().filter(|c| !c.closed) {
            c.step(net, reqs, rec, addr);
        }
    }
}

impl Conn {
    fn step(&mut self, net: &mut Net, reqs: &[ReqPlan], rec: &mut Records, addr: SocketAddr) {
        let now = net.now_ms;
        if net.unread(self.sock) > 0 {
            let _ = net.recv(self.sock, self.inbuf.tail(), usize::MAX);
            self.parse(now, reqs, rec, addr);
        }
        let mut k = 0;
        while k < self.later.len() {
            if self.later[k].0 > now {
                k += 1;
                continue;
            }
            match self.later.swap_remove(k).1 {
                Act::Shut => net.shutdown(self.sock),
                Act::Reset => {
                    net.close(self.sock, true);
                    self.closed = true;
                    return;
                }
                Act::Send(b) => {
                    let _ = net.send(self.sock, &b, false);
                }
            }
        }
        self.write(net, reqs, rec);
        if self.closed {
            return;
        }
        // Sluice closed its side (it never half-closes an HTTP backend connection).
        if net.at_eof(self.sock) || net.was_reset(self.sock) {
            net.close(self.sock, false);
            self.closed = true;
        }
    }

    fn parse(&mut self, now: u64, reqs: &[ReqPlan], rec: &mut Records, addr: SocketAddr) {
        loop {
            match &mut self.input {
                Input::Head => {
                    let Some(end) = self.inbuf.bytes().windows(4).position(|w| w == b"\r\n\r\n")
                    else {
                        return;
                    };
                    let Some((id, rd)) = head(&self.inbuf.bytes()[..end + 4], reqs, rec, now, addr)
                    else {
                        self.inbuf.clear();
                        return;
                    };
                    self.inbuf.consume(end + 4);
                    let p = &reqs[id as usize];
                    if p.resp.early || rd.is_none() {
                        self.received(id, p, now, rec);
                    }
                    // A request smuggled in a body: that body has now arrived whole.
                    if p.client == usize::MAX {
                        if let Some(outer) = reqs.iter().find(|q| q.smuggle == Some(id)) {
                            rec.req_in_ms[outer.id as usize] = Some(now);
                        }
                    }
                    match rd {
                        // A backend that answers at once and reads what follows the head
                        // as the next request: a smuggled one.
                        Some(_) if p.smuggle.is_some() => {}
                        Some(rd) => {
                            self.input = Input::Body {
                                id,
                                rd,
                                early: p.resp.early,
                            }
                        }
                        None => {}
                    }
                }
                Input::Body { id, rd, early } => {
                    let (id, early) = (*id, *early);
                    let t = take(rd, self.inbuf.bytes());
                    if t.bad {
                        rec.fail(
                            now,
                            format!("backend {addr}: request {id}: broken chunked framing"),
                        );
                        self.inbuf.clear();
                        return;
                    }
                    if let Some((off, r)) = t.data {
                        if let Some(at) = mismatch(UP_STREAM + id, off, &self.inbuf.bytes()[r]) {
                            rec.fail(
                                now,
                                format!(
                                    "backend {addr}: body of request {id} differs at byte {at}"
                                ),
                            );
                        }
                    }
                    self.inbuf.consume(t.used);
                    if t.done {
                        self.input = Input::Head;
                        if early {
                            rec.req_in_ms[id as usize] = Some(now);
                        } else {
                            self.received(id, &reqs[id as usize], now, rec);
                        }
                    } else if t.used == 0 {
                        return;
                    }
                }
            }
        }
    }

    /// A request arrived whole (or, answered early, its head did).
    fn received(&mut self, id: u64, p: &ReqPlan, now: u64, rec: &mut Records) {
        rec.got[id as usize] += 1;
        let n = rec.got[id as usize];
        if n > 1 && p.method.has_body() {
            rec.fail(
                now,
                format!("request {id}, which has a body, reached a backend {n} times"),
            );
        }
        rec.req_in_ms[id as usize] = Some(now);
        self.queue.push_back(id);
    }

    /// Start the next response when idle; write what the pace allows.
    fn write(&mut self, net: &mut Net, reqs: &[ReqPlan], rec: &mut Records) {
        let now = net.now_ms;
        if self.out_off == self.out.len() && self.answering.is_none() && !self.quiet {
            if let Some(id) = self.queue.pop_front() {
                self.start(id, &reqs[id as usize], now, net);
            }
        }
        while self.out_off < self.out.len() && now >= self.next_write_ms && net.free(self.sock) > 0
        {
            let p = &reqs[self.answering.as_ref().map_or(0, |a| a.id) as usize];
            let end = self
                .out_off
                .saturating_add(p.resp.piece)
                .min(self.out.len());
            let last = end == self.out.len();
            let stray = self
                .answering
                .as_mut()
                .and_then(|a| a.stray.take().filter(|_| last));
            let sent = match stray {
                Some(s) => {
                    let mut b = self.out[self.out_off..].to_vec();
                    b.extend_from_slice(&s);
                    let r = net.send_together(self.sock, &b).map(|_| end - self.out_off);
                    if r.is_err() {
                        if let Some(a) = self.answering.as_mut() {
                            a.stray = Some(s);
                        }
                    }
                    r
                }
                None => net.send(self.sock, &self.out[self.out_off..end], false),
            };
            let Ok(n) = sent else {
                return;
            };
            self.out_off += n;
            if self.out_off < self.out.len() && p.resp.pause_ms > 0 {
                self.next_write_ms = now + p.resp.pause_ms;
                return;
            }
        }
        if self.out_off == self.out.len() {
            if let Some(a) = self.answering.take() {
                rec.resp_out_ms[a.id as usize] = Some(now);
                self.finish(&reqs[a.id as usize], now, net);
            }
        }
    }

    /// The bytes of the response to `p`, as its fault allows.
    fn start(&mut self, id: u64, p: &ReqPlan, now: u64, net: &mut Net) {
        let r = &p.resp;
        let (mut out, head) = response_bytes(p);
        match r.fault {
            Fault::Stall => out.clear(),
            Fault::StallMid(n) | Fault::Truncate(n) => out.truncate(head + n),
            Fault::ResetAfter(n) => out.truncate(n),
            Fault::None | Fault::Garbage => {}
        }
        if out.is_empty() {
            self.quiet = true;
        }
        // Stray bytes ride with the last ones only when the window can take both at
        // once; otherwise they would arrive after, a race no proxy can win.
        let fits = |extra: usize| out.len().min(r.piece) + extra <= net.window(self.sock);
        // (After a body delimited by the close, stray bytes would be body bytes.)
        let stray = match (r.fault, r.then) {
            (Fault::None, Then::Stray) if r.framing != Framing::Close => {
                Some(stray_bytes(id)).filter(|s| fits(s.len()))
            }
            _ => None,
        };
        self.out = out;
        self.out_off = 0;
        self.next_write_ms = now + r.delay_ms;
        self.answering = Some(Answer { id, stray });
    }

    /// The response to `p` is written: what its plan does next.
    fn finish(&mut self, p: &ReqPlan, now: u64, net: &mut Net) {
        let r = &p.resp;
        match r.fault {
            Fault::Stall | Fault::StallMid(_) => {
                self.quiet = true;
                return;
            }
            Fault::ResetAfter(_) => {
                // With the last bytes: when they made a whole response, an RST after
                // them would race the connection's next use.
                net.reset_together(self.sock);
                self.closed = true;
                return;
            }
            Fault::Truncate(_) => {
                net.shutdown(self.sock);
                self.quiet = true;
                return;
            }
            Fault::None | Fault::Garbage => {}
        }
        if r.framing == Framing::Close || r.close_header {
            net.shutdown_together(self.sock);
            self.quiet = true;
            return;
        }
        match r.then {
            Then::Keep | Then::Stray => {}
            Then::Fin { together: true, .. } => {
                net.shutdown_together(self.sock);
                self.quiet = true;
            }
            Then::Fin { ms, .. } => {
                self.later.push((now + ms, Act::Shut));
                self.quiet = true;
            }
            Then::Reset { together: true, .. } => {
                net.reset_together(self.sock);
                self.closed = true;
            }
            Then::Reset { ms, .. } => {
                self.later.push((now + ms, Act::Reset));
                self.quiet = true;
            }
            Then::HeadBody { ms } if p.method == Method::Head => {
                self.later.push((now + ms, Act::Send(stray_bytes(p.id))));
            }
            Then::HeadBody { .. } => {}
        }
    }
}

/// Check a request head: its id, method and framing. The id and a reader for its
/// body (`None`: no body).
fn head(
    h: &[u8],
    reqs: &[ReqPlan],
    rec: &mut Records,
    now: u64,
    addr: SocketAddr,
) -> Option<(u64, Option<Reader>)> {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut fields);
    let bad = |rec: &mut Records, why: &str| {
        let text = String::from_utf8_lossy(&h[..h.len().min(160)]);
        rec.fail(now, format!("backend {addr}: {why}: {text:?}"));
        None
    };
    if !matches!(req.parse(h), Ok(httparse::Status::Complete(_))) {
        return bad(rec, "a request head that does not parse");
    }
    let id: Option<u64> = req
        .path
        .and_then(|p| p.strip_prefix("/r/"))
        .and_then(|p| p.parse().ok());
    let Some(id) = id.filter(|&id| (id as usize) < reqs.len() && id > 0) else {
        return bad(rec, "a request for no known id");
    };
    let p = &reqs[id as usize];
    let (mut sim_id, mut length, mut chunked) = (None, None, false);
    for f in req.headers.iter() {
        let v = std::str::from_utf8(f.value).unwrap_or("").trim();
        if f.name.eq_ignore_ascii_case("x-sim-id") {
            sim_id = v.parse::<u64>().ok();
        } else if f.name.eq_ignore_ascii_case("content-length") {
            length = v.parse::<u64>().ok();
        } else if f.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.eq_ignore_ascii_case("chunked");
        }
    }
    if sim_id != Some(id) || req.method != Some(p.method.word()) {
        return bad(rec, &format!("not request {id} as sent"));
    }
    let rd = match (p.method, chunked, length) {
        (Method::Get | Method::Head, false, None | Some(0)) => None,
        (Method::Post | Method::PostChunked, true, None) => {
            Some(Reader::new(Body::Chunked(Chunk::Size)))
        }
        (Method::Post | Method::PostChunked, false, Some(n)) => Some(Reader::new(Body::Length(n))),
        _ => return bad(rec, &format!("request {id} framed wrongly")),
    };
    Some((id, rd))
}
