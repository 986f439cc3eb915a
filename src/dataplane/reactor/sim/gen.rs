//! A run drawn from its seed: every choice the scenario makes, before it starts.
//! Waits that must not trip a timeout (a slow backend, a slow client, think time)
//! stay clear of it by a margin larger than the network's delays.

use super::net::ConnectPolicy;
use super::plan::*;
use super::rng::Rng;
use std::net::SocketAddr;

/// What a wait that must not trip a timeout keeps clear of it.
const MARGIN_MS: u64 = 400;

pub fn generate(seed: u64) -> Scenario {
    let root = Rng::new(seed);
    let mut r = root.fork(0x5ce7);
    let net = net_params(&mut r);
    let t = Timeouts {
        connect_ms: r.pick(&[300, 800]),
        header_ms: r.pick(&[1_000, 1_500]),
        keepalive_ms: r.pick(&[1_200, 2_500]),
        backend_ms: r.pick(&[1_500, 2_000]),
        idle_ms: r.pick(&[4_000, 5_000]),
    };
    let mut sc = Scenario {
        seed,
        net,
        t,
        pool: r.pick(&[1, 2, 4, 64]),
        balance: r.pick(&["roundrobin", "leastconn"]),
        late_close: r.chance(20),
        web: backends(&mut r, 10, t),
        tcp: backends(&mut r, 11, t),
        reqs: vec![placeholder()],
        clients: Vec::new(),
        l4: vec![L4Plan {
            id: 0,
            hole: false,
            start_ms: 0,
            up: 0,
            echo: true,
            down: 0,
            piece: 1,
            pause_ms: 0,
            read_piece: 1,
            read_pause_ms: 0,
            end: L4End::HalfClose,
        }],
    };
    let spread = r.pick(&[0, 200, 1_500]);
    let n = r.pick(&[1, 2, 3, 4, 6, 8]);
    for idx in 0..n {
        let c = client(&mut r, &mut sc, idx, false, spread);
        sc.clients.push(c);
    }
    if r.chance(10) {
        let c = client(&mut r, &mut sc, n, true, spread);
        sc.clients.push(c);
    }
    let l4 = r.pick(&[0, 0, 1, 2, 3]);
    for _ in 0..l4 {
        let p = l4_plan(&mut r, &sc, false, spread);
        sc.l4.push(p);
    }
    if r.chance(8) {
        let p = l4_plan(&mut r, &sc, true, spread);
        sc.l4.push(p);
    }
    sc
}

/// One to three backends: the first always answers connects (slowly at times);
/// another may refuse some or let some go unanswered.
fn backends(r: &mut Rng, net: u8, t: Timeouts) -> Vec<(SocketAddr, ConnectPolicy)> {
    let n = r.range(1, 3);
    let slow_ms = (t.connect_ms / 3).min(100);
    (0..n)
        .map(|i| {
            let addr = SocketAddr::from(([10, net, 0, i as u8 + 1], 80));
            let mut p = ConnectPolicy {
                slow_pct: r.pick(&[0, 10, 30]),
                slow_ms,
                ..ConnectPolicy::default()
            };
            if i > 0 {
                match r.below(4) {
                    0 => p.refuse_pct = 30,
                    1 => p.refuse_now_pct = 20,
                    // One backend at most goes unanswered, so a request loses at most
                    // one connect timeout of its backend timeout.
                    2 if i == 1 => p.hole_pct = 20,
                    _ => {}
                }
            }
            (addr, p)
        })
        .collect()
}

fn placeholder() -> ReqPlan {
    ReqPlan {
        id: 0,
        client: usize::MAX,
        method: Method::Get,
        body_len: 0,
        chunk: 1,
        close: false,
        stall: None,
        smuggle: None,
        resp: RespPlan {
            status: 200,
            framing: Framing::Length,
            len: 0,
            delay_ms: 0,
            interim: false,
            piece: usize::MAX,
            pause_ms: 0,
            chunk: 1,
            close_header: false,
            early: false,
            then: Then::Keep,
            fault: Fault::None,
        },
    }
}

fn client(r: &mut Rng, sc: &mut Scenario, idx: usize, hole: bool, spread: u64) -> ClientPlan {
    let slow_send = r.chance(15);
    let slow_read = r.chance(15);
    let n = if hole { 1 } else { r.pick(&[1, 1, 2, 3, 5, 8]) };
    let end = match r.below(100) {
        _ if hole => End::FinAfter,
        0..=19 => End::CloseHeader,
        20..=39 => End::FinWithLast,
        40..=64 => End::FinAfter,
        65..=74 => End::Idle,
        75..=84 => End::Abort {
            after: r.range_usize(0, n),
            reset: r.chance(50),
        },
        _ => End::Stall,
    };
    let mut c = ClientPlan {
        idx,
        hole,
        start_ms: r.range(0, spread),
        reqs: Vec::new(),
        depth: if r.chance(60) { 1 } else { r.range_usize(2, 3) },
        think_ms: if r.chance(70) { 0 } else { r.range(0, 300) },
        send_piece: if slow_send {
            r.range_usize(16, 256)
        } else {
            usize::MAX
        },
        send_pause_ms: if slow_send { r.range(0, 5) } else { 0 },
        read_piece: if slow_read {
            r.range_usize(512, 8_192)
        } else {
            usize::MAX
        },
        read_pause_ms: if slow_read { r.range(0, 10) } else { 0 },
        end,
    };
    for k in 0..n {
        let last = k + 1 == n;
        let id = sc.reqs.len() as u64;
        let mut p = request(r, sc, id, idx, slow_send || slow_read, last);
        if hole {
            p.method = Method::Get;
            p.smuggle = None;
            p.resp.fault = Fault::None;
        }
        if last && end == End::CloseHeader {
            p.close = true;
        }
        if last && end == End::Stall {
            p.stall = Some(if p.method.has_body() && p.body_len > 0 {
                Stall::Body(r.range_usize(0, p.body_len - 1))
            } else {
                Stall::Head(r.range_usize(1, 40))
            });
            p.resp.fault = Fault::None;
            p.resp.early = false;
            p.smuggle = None;
        }
        sc.reqs.push(p);
        c.reqs.push(id);
        if let Some(s) = sc.reqs[id as usize].smuggle {
            let mut q = request(r, sc, s, usize::MAX, true, false);
            q.method = Method::Get;
            q.body_len = 0;
            q.smuggle = None;
            q.resp.early = false;
            q.resp.fault = Fault::None;
            q.resp.then = Then::Keep;
            sc.reqs.push(q);
        }
    }
    c
}

fn request(r: &mut Rng, sc: &Scenario, id: u64, client: usize, slow: bool, last: bool) -> ReqPlan {
    let t = sc.t;
    let method = match r.below(100) {
        0..=44 => Method::Get,
        45..=59 => Method::Head,
        60..=84 => Method::Post,
        _ => Method::PostChunked,
    };
    let max_body = if slow { 4_096 } else { 200_000 };
    let body_len = if method.has_body() {
        r.size(max_body)
    } else {
        0
    };
    let big = !slow && r.chance(if sc.net.large_window_pct > 50 { 25 } else { 6 });
    let len = if big {
        r.range_usize(1 << 20, 3 << 20)
    } else {
        r.size(if slow { 16_384 } else { 65_536 })
    };
    let framing = match r.below(100) {
        0..=49 => Framing::Length,
        50..=84 => Framing::Chunked,
        _ if last && method != Method::Head => Framing::Close,
        _ => Framing::Length,
    };
    let max_delay = t.backend_ms - MARGIN_MS;
    let delay_ms = match r.below(100) {
        0..=69 => 0,
        70..=89 => r.range(0, 50),
        _ => r.range(0, max_delay),
    };
    let then = match r.below(100) {
        0..=61 => Then::Keep,
        62..=73 => Then::Fin {
            together: true,
            ms: 0,
        },
        74..=78 => Then::Reset {
            together: true,
            ms: 0,
        },
        79..=87 => Then::Stray,
        _ if method == Method::Head => Then::HeadBody { ms: r.range(0, 50) },
        _ if sc.late_close && r.chance(50) => Then::Fin {
            together: false,
            ms: r.range(1, 40),
        },
        _ if sc.late_close => Then::Reset {
            together: false,
            ms: r.range(1, 40),
        },
        _ => Then::Keep,
    };
    let head_body = method == Method::Head;
    let fault = match r.below(100) {
        0..=87 => Fault::None,
        88..=90 => Fault::Stall,
        91..=92 if !head_body && len > 0 => Fault::StallMid(r.range_usize(0, len.min(1_000) - 1)),
        93..=95 => Fault::ResetAfter(r.range_usize(0, 200)),
        96..=97 if !head_body && framing == Framing::Length && len > 0 => {
            Fault::Truncate(r.range_usize(0, len - 1))
        }
        98..=99 => Fault::Garbage,
        _ => Fault::None,
    };
    let smuggle = (method == Method::Post && r.chance(6)).then_some(id + 1);
    ReqPlan {
        id,
        client,
        method: if smuggle.is_some() {
            Method::Post
        } else {
            method
        },
        body_len,
        chunk: r.range_usize(1, 16_384),
        close: false,
        stall: None,
        smuggle,
        resp: RespPlan {
            status: r.pick(&[200, 200, 200, 201, 404, 500]),
            framing,
            len,
            delay_ms,
            interim: r.chance(5),
            // Paced writes: at most about fifty of them.
            piece: if r.chance(60) {
                usize::MAX
            } else {
                r.size(65_536).max(len / 50 + 1)
            },
            pause_ms: if r.chance(70) { 0 } else { r.range(0, 20) },
            chunk: r.range_usize(1, 16_384),
            close_header: r.chance(4),
            early: smuggle.is_some() || (method.has_body() && r.chance(5)),
            then,
            fault,
        },
    }
}

fn l4_plan(r: &mut Rng, sc: &Scenario, hole: bool, spread: u64) -> L4Plan {
    let id = sc.l4.len() as u64;
    let echo = r.chance(50);
    let big = r.chance(10);
    let up = if big {
        r.range_usize(1 << 20, 2 << 20)
    } else {
        r.size(300_000)
    };
    let down = if echo { up } else { r.size(300_000) };
    let end = match r.below(100) {
        _ if hole => L4End::Idle,
        0..=74 => L4End::HalfClose,
        75..=82 if up > 0 => L4End::ClientReset(r.range_usize(0, up - 1)),
        83..=90 if !echo && down > 0 => L4End::BackendReset(r.range_usize(0, down - 1)),
        91..=99 => L4End::Idle,
        _ => L4End::HalfClose,
    };
    let idle = end == L4End::Idle;
    let slow = r.chance(20) && !big;
    L4Plan {
        id,
        hole,
        start_ms: r.range(0, spread),
        up: if idle { 0 } else { up },
        echo,
        down: if idle { 0 } else { down },
        // At most about a hundred writes (slow) or a few hundred (fast) per stream.
        piece: if slow {
            r.range_usize(1, 4_096).max(up.max(down) / 100 + 1)
        } else {
            r.size(1 << 20).max(up.max(down) / 300 + 1)
        },
        pause_ms: if slow { r.range(0, 20) } else { 0 },
        read_piece: if slow {
            r.range_usize(1, 4_096).max(down / 100 + 1)
        } else {
            usize::MAX
        },
        read_pause_ms: if slow { r.range(0, 20) } else { 0 },
        end,
    }
}
