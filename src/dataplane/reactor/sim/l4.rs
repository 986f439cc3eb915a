//! Scripted L4 peers: a client that sends a preamble naming its stream and then its
//! bytes (half-closing, resetting, or going idle as its plan says), and backends that
//! echo what they get or send a stream of their own. Both check every byte.

use super::net::{Net, SockId};
use super::plan::{L4End, L4Plan};
use super::rng::{mismatch, pattern};
use super::world::Records;
use std::net::SocketAddr;

const PREAMBLE: usize = 16;

/// The pattern stream of L4 connection `id`'s upload, and of its download.
pub fn up_stream(id: u64) -> u64 {
    (1 << 30) + id
}

pub fn down_stream(p: &L4Plan) -> u64 {
    if p.echo {
        up_stream(p.id)
    } else {
        (1 << 31) + p.id
    }
}

fn preamble(id: u64) -> [u8; PREAMBLE] {
    let mut b = [0u8; PREAMBLE];
    b[..4].copy_from_slice(b"SIM4");
    b[4..12].copy_from_slice(&id.to_le_bytes());
    b
}

pub struct L4Client {
    pub plan: L4Plan,
    listener: SocketAddr,
    pub sock: Option<SockId>,
    /// Bytes sent, the preamble included.
    pub sent: usize,
    next_send_ms: u64,
    next_read_ms: u64,
    pub got: u64,
    buf: Vec<u8>,
    pub fin_sent: bool,
    pub closed_ms: Option<u64>,
    pub reset: bool,
    pub aborted: bool,
    pub done: bool,
    /// The last time a byte left or arrived.
    pub active_ms: u64,
}

impl L4Client {
    pub fn new(plan: L4Plan, listener: SocketAddr) -> L4Client {
        L4Client {
            next_send_ms: plan.start_ms,
            plan,
            listener,
            sock: None,
            sent: 0,
            next_read_ms: 0,
            got: 0,
            buf: Vec::new(),
            fin_sent: false,
            closed_ms: None,
            reset: false,
            aborted: false,
            done: false,
            active_ms: 0,
        }
    }

    fn total(&self) -> usize {
        PREAMBLE + self.plan.up
    }

    pub fn wake_ms(&self, net: &Net) -> Option<u64> {
        if self.done {
            return None;
        }
        let Some(s) = self.sock else {
            return Some(self.plan.start_ms);
        };
        let mut t = None;
        if self.sent < self.total() && net.free(s) > 0 {
            t = Some(self.next_send_ms);
        }
        if net.unread(s) > 0 {
            t = Some(t.map_or(self.next_read_ms, |x: u64| x.min(self.next_read_ms)));
        }
        t
    }

    pub fn step(&mut self, net: &mut Net, rec: &mut Records) {
        let now = net.now_ms;
        if self.done || now < self.plan.start_ms {
            return;
        }
        let s = match self.sock {
            Some(s) => s,
            None => match net.dial(self.listener, self.plan.addr()) {
                Some(s) => {
                    self.sock = Some(s);
                    self.active_ms = now;
                    s
                }
                None => {
                    rec.fail(now, format!("l4 client {}: nothing listens", self.plan.id));
                    self.done = true;
                    return;
                }
            },
        };
        self.send(net, s);
        if self.done {
            return;
        }
        self.read(net, s, rec);
        if self.closed_ms.is_some() && (self.sent == self.total() || self.reset) {
            self.done = true;
            net.close(s, false);
        }
    }

    fn send(&mut self, net: &mut Net, s: SockId) {
        let now = net.now_ms;
        let limit = match self.plan.end {
            L4End::ClientReset(n) => PREAMBLE + n.min(self.plan.up),
            _ => self.total(),
        };
        // A download that ended (the backend's FIN) leaves the upload going.
        while self.sent < limit && now >= self.next_send_ms && !self.reset && net.free(s) > 0 {
            let pre = preamble(self.plan.id);
            let want = self.plan.piece.min(limit - self.sent);
            let chunk: &[u8] = if self.sent < PREAMBLE {
                &pre[self.sent..PREAMBLE.min(self.sent + want)]
            } else {
                let off = (self.sent - PREAMBLE) as u64;
                pattern(up_stream(self.plan.id), off, want)
            };
            let Ok(n) = net.send(s, chunk, false) else {
                break;
            };
            self.sent += n;
            self.active_ms = now;
            if self.plan.pause_ms > 0 {
                self.next_send_ms = now + self.plan.pause_ms;
                break;
            }
        }
        if self.sent == limit && self.sent < self.total() {
            // ClientReset: gone, with a reset.
            net.close(s, true);
            self.aborted = true;
            self.done = true;
            self.closed_ms = Some(now);
            return;
        }
        let half_close = matches!(self.plan.end, L4End::HalfClose | L4End::BackendReset(_));
        if self.sent == self.total() && half_close && !self.fin_sent && !self.plan.hole {
            net.shutdown(s);
            self.fin_sent = true;
        }
    }

    fn read(&mut self, net: &mut Net, s: SockId, rec: &mut Records) {
        let now = net.now_ms;
        if net.unread(s) > 0 && now >= self.next_read_ms {
            self.buf.clear();
            let _ = net.recv(s, &mut self.buf, self.plan.read_piece);
            if let Some(at) = mismatch(down_stream(&self.plan), self.got, &self.buf) {
                rec.fail(
                    now,
                    format!("l4 client {}: download differs at byte {at}", self.plan.id),
                );
            }
            self.got += self.buf.len() as u64;
            self.active_ms = now;
            if self.plan.read_pause_ms > 0 {
                self.next_read_ms = now + self.plan.read_pause_ms;
            }
        }
        if self.closed_ms.is_none() && net.unread(s) == 0 && (net.at_eof(s) || net.was_reset(s)) {
            self.closed_ms = Some(now);
            self.reset = net.was_reset(s);
        }
    }
}

struct Conn {
    sock: SockId,
    pre: Vec<u8>,
    id: Option<u64>,
    up: u64,
    out: Vec<u8>,
    out_off: usize,
    down: u64,
    next_write_ms: u64,
    shut: bool,
    closed: bool,
}

pub struct L4Backend {
    pub addr: SocketAddr,
    conns: Vec<Conn>,
}

impl L4Backend {
    pub fn new(addr: SocketAddr) -> L4Backend {
        L4Backend {
            addr,
            conns: Vec::new(),
        }
    }

    pub fn accept(&mut self, sock: SockId) {
        self.conns.push(Conn {
            sock,
            pre: Vec::new(),
            id: None,
            up: 0,
            out: Vec::new(),
            out_off: 0,
            down: 0,
            next_write_ms: 0,
            shut: false,
            closed: false,
        });
    }

    pub fn wake_ms(&self, net: &Net, plans: &[L4Plan]) -> Option<u64> {
        let mut t: Option<u64> = None;
        for c in self
            .conns
            .iter()
            .filter(|c| !c.closed && !c.shut && net.free(c.sock) > 0)
        {
            let Some(id) = c.id else { continue };
            let p = &plans[id as usize];
            if c.out_off < c.out.len() || (!p.echo && (c.down as usize) < p.down) {
                t = Some(t.map_or(c.next_write_ms, |x| x.min(c.next_write_ms)));
            }
        }
        t
    }

    pub fn step(&mut self, net: &mut Net, plans: &[L4Plan], rec: &mut Records) {
        let addr = self.addr;
        for c in self.conns.iter_mut().filter(|c| !c.closed) {
            c.step(net, plans, rec, addr);
        }
    }
}

impl Conn {
    fn step(&mut self, net: &mut Net, plans: &[L4Plan], rec: &mut Records, addr: SocketAddr) {
        let now = net.now_ms;
        let mut buf = Vec::new();
        if net.unread(self.sock) > 0 {
            let _ = net.recv(self.sock, &mut buf, usize::MAX);
        }
        if self.id.is_none() {
            let k = (PREAMBLE - self.pre.len()).min(buf.len());
            self.pre.extend(buf.drain(..k));
            if self.pre.len() == PREAMBLE {
                let id = u64::from_le_bytes(self.pre[4..12].try_into().expect("8 bytes"));
                if &self.pre[..4] != b"SIM4" || id as usize >= plans.len() {
                    rec.fail(
                        now,
                        format!("l4 backend {addr}: a stream with no known preamble"),
                    );
                    net.close(self.sock, true);
                    self.closed = true;
                    return;
                }
                self.id = Some(id);
                rec.l4[id as usize].conns += 1;
                rec.l4[id as usize].first_ms = Some(now);
            }
        }
        let Some(id) = self.id else {
            return self.ended(net, true);
        };
        let p = &plans[id as usize];
        if !buf.is_empty() {
            if let Some(at) = mismatch(up_stream(id), self.up, &buf) {
                rec.fail(
                    now,
                    format!("l4 backend {addr}: upload of {id} differs at byte {at}"),
                );
            }
            self.up += buf.len() as u64;
            rec.l4[id as usize].up = self.up;
            if p.echo {
                self.out.extend_from_slice(&buf);
            }
        }
        self.write(net, p);
        if self.closed {
            return;
        }
        let r = &mut rec.l4[id as usize];
        r.eof |= net.at_eof(self.sock);
        r.reset |= net.was_reset(self.sock);
        self.ended(net, p.end == L4End::Idle);
    }

    fn write(&mut self, net: &mut Net, p: &L4Plan) {
        let now = net.now_ms;
        let cut = match p.end {
            L4End::BackendReset(n) => Some(n as u64),
            _ => None,
        };
        while now >= self.next_write_ms && !self.shut && net.free(self.sock) > 0 {
            if cut.is_some_and(|n| self.down >= n) {
                net.close(self.sock, true);
                self.closed = true;
                return;
            }
            let room = cut
                .map_or(usize::MAX, |n| (n - self.down) as usize)
                .min(p.piece);
            let r = if p.echo {
                if self.out_off == self.out.len() {
                    break;
                }
                let end = self.out_off + room.min(self.out.len() - self.out_off);
                net.send(self.sock, &self.out[self.out_off..end], false)
            } else {
                let left = p.down - self.down as usize;
                if left == 0 {
                    break;
                }
                net.send(
                    self.sock,
                    pattern(down_stream(p), self.down, room.min(left)),
                    false,
                )
            };
            let Ok(n) = r else { break };
            self.down += n as u64;
            if p.echo {
                self.out_off += n;
            }
            if p.pause_ms > 0 {
                self.next_write_ms = now + p.pause_ms;
                break;
            }
        }
        let all_sent = if p.echo {
            self.out_off == self.out.len() && net.at_eof(self.sock)
        } else {
            self.down as usize == p.down
        };
        if all_sent && !self.shut && cut.is_none() && p.end != L4End::Idle {
            net.shutdown(self.sock);
            self.shut = true;
        }
    }

    /// Close once sluice closed its side (or reset it) and nothing is left to send
    /// (`anyway`: nothing was to be sent).
    fn ended(&mut self, net: &mut Net, anyway: bool) {
        let eof = net.at_eof(self.sock) && (self.shut || anyway);
        if eof || net.was_reset(self.sock) {
            net.close(self.sock, false);
            self.closed = true;
        }
    }
}
