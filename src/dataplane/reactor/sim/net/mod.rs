//! The simulated network: sockets in pairs, each direction a queue of segments in
//! flight (arriving in order, after a latency) and a receive queue, bounded by a
//! window; FIN and RST; connects that succeed, are refused or go nowhere; and the
//! readiness edges an edge-triggered kernel would raise. See the module above for
//! the contract it keeps.

mod calls;
mod reactor;

use super::rng::Rng;
use super::trace::{Tr, Trace};
use crate::dataplane::reactor::Token;
use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;

pub type SockId = u32;

/// The core's handle on a simulated socket: neither `Copy` nor `Clone`, so the core
/// hands it back with `close` exactly once, as it would a descriptor.
#[derive(Debug)]
pub struct SimSock(pub(super) SockId);

/// How readiness is reported (chosen per run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// epoll, edge-triggered, every socket watched both ways for life: an event each
    /// time a socket's state changes, carrying its whole current mask.
    Edge,
    /// One-shot polls armed by `want`, as the io_uring reactor waits: an event only
    /// for a direction armed since its last event, at once if it is ready already.
    OneShot,
}

/// How one connect to a backend address goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Established after `ms`.
    Accept(u64),
    /// Refused (RST to the SYN) after `ms`.
    Refuse(u64),
    /// Refused by `connect` itself.
    RefuseNow,
    /// Never answered.
    Blackhole,
}

/// What a backend address does with connects, in percent.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectPolicy {
    pub refuse_pct: u64,
    pub refuse_now_pct: u64,
    pub hole_pct: u64,
    /// A slow connect: established after up to `slow_ms`.
    pub slow_pct: u64,
    pub slow_ms: u64,
}

/// The network's settings for a run.
#[derive(Debug, Clone, Copy)]
pub struct NetParams {
    pub readiness: Readiness,
    pub latency_ms: u64,
    pub jitter_ms: u64,
    /// A send cut into several segments arriving apart.
    pub split_send_pct: u64,
    /// A read that takes only part of what is queued, the rest announced by a fresh
    /// edge as though it arrived just after.
    pub split_read_pct: u64,
    /// A FIN (or RST) riding in the segment of the last data.
    pub fin_merge_pct: u64,
    /// An event for a socket whose state did not change (its current mask).
    pub spurious_pct: u64,
    /// Events of one turn handed over in two waits.
    pub batch_split_pct: u64,
    /// Windows of two or three segments, to cut transfers into many small ones.
    pub tiny_window_pct: u64,
    /// Windows of 256 KiB to 4 MiB, where bulk transfers outrun a pump's budget.
    pub large_window_pct: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Connecting {
        at_ms: u64,
        fate: Fate,
    },
    Up,
    Refused,
    /// A connect nobody answers (or one the core gave up).
    Hole,
}

struct Segment {
    at_ms: u64,
    data: Vec<u8>,
    fin: bool,
    rst: bool,
}

/// One end of a connection.
pub struct Sock {
    /// Held by the shard core (else by an actor of the world).
    pub core: bool,
    pub peer: Option<SockId>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    link: Link,
    token: Option<Token>,
    pub closed_at: Option<u64>,
    rx: Vec<u8>,
    rx_off: usize,
    /// The peer's FIN arrived (after everything in `rx`).
    rx_fin: bool,
    /// The peer's RST arrived.
    rx_rst: bool,
    pub fin_arrived_ms: Option<u64>,
    wire: VecDeque<Segment>,
    /// When the last segment sent arrives: segments arrive in order.
    last_at_ms: u64,
    corked: Vec<u8>,
    cork_ms: u64,
    /// Bytes sent (corked included) the peer has not read yet.
    unacked: usize,
    window: usize,
    shut: bool,
    /// A send found the window full: the next opening raises a writable edge.
    blocked: bool,
    woken: bool,
    armed_read: bool,
    armed_write: bool,
    latency_ms: u64,
    pub sent: u64,
    pub received: u64,
    rng: Rng,
}

impl Sock {
    fn unread(&self) -> usize {
        self.rx.len() - self.rx_off
    }

    fn free(&self) -> usize {
        self.window.saturating_sub(self.unacked)
    }

    fn readable(&self) -> bool {
        self.unread() > 0 || self.hup()
    }

    fn hup(&self) -> bool {
        self.rx_fin || self.rx_rst || self.link == Link::Refused
    }

    fn writable(&self) -> bool {
        match self.link {
            // Linux reports a shut write side as writable (the send fails at once).
            Link::Up => self.rx_rst || self.shut || self.free() > 0,
            Link::Refused => true,
            _ => false,
        }
    }
}

struct Listener {
    addr: SocketAddr,
    listening: bool,
}

struct Pending {
    at_ms: u64,
    listener: usize,
    sock: SockId,
    peer: SocketAddr,
}

pub struct Net {
    pub now_ms: u64,
    pub params: NetParams,
    pub socks: Vec<Sock>,
    listeners: Vec<Listener>,
    paused: bool,
    accepts: Vec<Pending>,
    backends: Vec<(SocketAddr, ConnectPolicy)>,
    /// Connections established to backend addresses since the world last looked.
    pub established: Vec<(SocketAddr, SockId)>,
    rng: Rng,
    pub trace: Trace,
    next_port: u16,
}

impl Net {
    pub fn new(params: NetParams, rng: Rng) -> Net {
        Net {
            now_ms: 0,
            params,
            socks: Vec::new(),
            listeners: Vec::new(),
            paused: false,
            accepts: Vec::new(),
            backends: Vec::new(),
            established: Vec::new(),
            rng,
            trace: Trace::default(),
            next_port: 30_000,
        }
    }

    pub fn add_listener(&mut self, addr: SocketAddr) {
        self.listeners.push(Listener {
            addr,
            listening: false,
        });
    }

    pub fn add_backend(&mut self, addr: SocketAddr, policy: ConnectPolicy) {
        self.backends.push((addr, policy));
    }

    pub fn note(&mut self, what: String) {
        self.trace.add(self.now_ms, false, Tr::Note(what));
    }

    fn new_sock(
        &mut self,
        core: bool,
        local: SocketAddr,
        remote: SocketAddr,
        link: Link,
    ) -> SockId {
        let id = self.socks.len() as SockId;
        let mut rng = self.rng.fork(u64::from(id) + 1);
        // Never below two segments: a receiver advertises no less (silly window
        // avoidance), and a sender's buffer holds more than that anyway.
        let window = if rng.chance(self.params.tiny_window_pct) {
            rng.range_usize(2 * MSS, 3 * MSS)
        } else {
            match rng.below(100) {
                k if k >= 100 - self.params.large_window_pct => {
                    rng.range_usize(256 * 1024, 4 * 1024 * 1024)
                }
                k if k % 2 == 0 => rng.range_usize(3 * MSS, 8 * 1024),
                _ => rng.range_usize(8 * 1024, 256 * 1024),
            }
        };
        let latency_ms = rng.range(0, self.params.latency_ms);
        self.socks.push(Sock {
            core,
            peer: None,
            local,
            remote,
            link,
            token: None,
            closed_at: None,
            rx: Vec::new(),
            rx_off: 0,
            rx_fin: false,
            rx_rst: false,
            fin_arrived_ms: None,
            wire: VecDeque::new(),
            last_at_ms: 0,
            corked: Vec::new(),
            cork_ms: 0,
            unacked: 0,
            window,
            shut: false,
            blocked: false,
            woken: false,
            armed_read: false,
            armed_write: false,
            latency_ms,
            sent: 0,
            received: 0,
            rng,
        });
        id
    }

    fn port(&mut self) -> u16 {
        self.next_port = self.next_port.wrapping_add(1).max(30_000);
        self.next_port
    }

    // ---- the world's side ----------------------------------------------------------

    /// A client at `from` connects to the listener at `addr`: its socket, or `None`
    /// (refused) when nothing listens there.
    pub fn dial(&mut self, addr: SocketAddr, from: SocketAddr) -> Option<SockId> {
        let listener = self
            .listeners
            .iter()
            .position(|l| l.addr == addr && l.listening)?;
        let client = self.new_sock(false, from, addr, Link::Up);
        let core = self.new_sock(true, addr, from, Link::Up);
        self.socks[client as usize].peer = Some(core);
        self.socks[core as usize].peer = Some(client);
        let at_ms = self.now_ms + self.socks[client as usize].latency_ms;
        self.accepts.push(Pending {
            at_ms,
            listener,
            sock: core,
            peer: from,
        });
        Some(client)
    }

    pub fn unread(&self, id: SockId) -> usize {
        self.socks[id as usize].unread()
    }

    /// The peer's FIN arrived and everything before it was read.
    pub fn at_eof(&self, id: SockId) -> bool {
        let s = &self.socks[id as usize];
        s.rx_fin && s.unread() == 0
    }

    pub fn was_reset(&self, id: SockId) -> bool {
        self.socks[id as usize].rx_rst
    }

    pub fn free(&self, id: SockId) -> usize {
        let s = &self.socks[id as usize];
        if s.link == Link::Up && !s.shut && !s.rx_rst {
            s.free()
        } else {
            0
        }
    }

    /// The most the socket can have in flight.
    pub fn window(&self, id: SockId) -> usize {
        self.socks[id as usize].window
    }

    pub fn is_closed(&self, id: SockId) -> bool {
        self.socks[id as usize].closed_at.is_some()
    }

    /// An actor's send of all of `data` in one segment (which must fit the window):
    /// bytes that arrive together, as a backend's response and the stray bytes it
    /// wrote with it.
    pub fn send_together(&mut self, id: SockId, data: &[u8]) -> io::Result<usize> {
        if self.free(id) < data.len() {
            return Err(ErrorKind::WouldBlock.into());
        }
        self.send_inner(id, data, false, true)
    }

    /// An actor's shut of its write side with the FIN in the segment of the last data
    /// (when one is still in flight).
    pub fn shutdown_together(&mut self, id: SockId) {
        self.shut(id, Some(true));
    }

    /// An actor's close with an RST arriving with the last data.
    pub fn reset_together(&mut self, id: SockId) {
        self.close_inner(id, true, Some(true));
    }

    // ---- time ------------------------------------------------------------------------

    /// The earliest time something is due (an arrival, a settled connect, a corked
    /// flush, an accept), if anything is.
    pub fn next_due(&self) -> Option<u64> {
        let mut t = self.accepts.iter().map(|p| p.at_ms).min();
        for s in &self.socks {
            let mut due = s.wire.front().map(|seg| seg.at_ms);
            if let Link::Connecting { at_ms, .. } = s.link {
                due = Some(due.map_or(at_ms, |d| d.min(at_ms)));
            }
            if !s.corked.is_empty() {
                let c = s.cork_ms + CORK_MS;
                due = Some(due.map_or(c, |d| d.min(c)));
            }
            t = match (t, due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        t
    }

    /// Deliver what is due at `now_ms`: arrivals, connects, corked bytes.
    pub fn deliver(&mut self) {
        let now = self.now_ms;
        for id in 0..self.socks.len() {
            let s = &mut self.socks[id];
            if !s.corked.is_empty() && now >= s.cork_ms + CORK_MS {
                let data = std::mem::take(&mut s.corked);
                self.push_data(id as SockId, data, false);
            }
            if let Link::Connecting { at_ms, fate } = self.socks[id].link {
                if now >= at_ms {
                    self.settle(id as SockId, fate);
                }
            }
            while self.socks[id].wire.front().is_some_and(|s| s.at_ms <= now) {
                let seg = self.socks[id].wire.pop_front().expect("front");
                self.arrive(id as SockId, seg);
            }
        }
    }

    fn settle(&mut self, id: SockId, fate: Fate) {
        let up = matches!(fate, Fate::Accept(_));
        self.trace
            .add(self.now_ms, false, Tr::Settled { sock: id, up });
        let s = &mut self.socks[id as usize];
        s.woken = true;
        if !up {
            s.link = Link::Refused;
            return;
        }
        s.link = Link::Up;
        let (local, remote) = (s.remote, s.local);
        let b = self.new_sock(false, local, remote, Link::Up);
        self.socks[b as usize].peer = Some(id);
        self.socks[id as usize].peer = Some(b);
        self.established.push((local, b));
    }

    fn arrive(&mut self, from: SockId, seg: Segment) {
        let Some(to) = self.socks[from as usize].peer else {
            return;
        };
        let n = seg.data.len();
        let dropped = self.socks[to as usize].closed_at.is_some();
        self.trace.add(
            self.now_ms,
            false,
            Tr::Arrive {
                sock: to,
                bytes: n,
                fin: seg.fin,
                rst: seg.rst,
                dropped,
            },
        );
        if dropped {
            // A closed socket takes nothing: the sender's window is free again, and
            // data is answered with a reset.
            let src = &mut self.socks[from as usize];
            src.unacked = src.unacked.saturating_sub(n);
            if n > 0 && !seg.rst && !src.rx_rst && src.closed_at.is_none() {
                self.push_ctl(to, false, true, false);
            }
            return;
        }
        let now = self.now_ms;
        let dst = &mut self.socks[to as usize];
        if dst.rx_off > 0 && dst.rx_off == dst.rx.len() {
            dst.rx.clear();
            dst.rx_off = 0;
        }
        dst.rx.extend_from_slice(&seg.data);
        dst.received += n as u64;
        if seg.fin && !dst.rx_fin {
            dst.rx_fin = true;
            dst.fin_arrived_ms = Some(now);
        }
        if seg.rst {
            dst.rx_rst = true;
            dst.unacked = 0;
            dst.corked.clear();
        }
        dst.woken = true;
    }
}

/// How long corked (`MSG_MORE`) bytes wait for what follows at most, as Linux's
/// 200 ms for a corked socket.
const CORK_MS: u64 = 200;
/// A segment's payload.
const MSS: usize = 1448;
