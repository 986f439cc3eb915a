//! TCP mode in the shard core: connect (and retry) a backend, then relay both
//! directions with a [`Flow`] each until both have forwarded their FIN.

use super::{Conn, Shard};
use crate::dataplane::flow::{Flow, Pump, Splice};
use crate::dataplane::http::Upgrade;
use crate::dataplane::keys::Owner;
use crate::dataplane::link::{Direction, Link};
use crate::dataplane::reactor::{Reactor, Want};
use crate::dataplane::BUF_BYTES;

/// Reads per flow per event before yielding to other connections.
const PUMP_BUDGET: usize = 32;

pub struct TcpConn<S> {
    pub link: Link,
    pub client: S,
    ckey: u32,
    backend: Option<(S, u32)>,
    connect_deadline_ms: u64,
    /// Client → backend.
    pub(super) up: Flow,
    /// Backend → client.
    down: Flow,
}

impl<S> TcpConn<S> {
    pub fn new(link: Link, client: S, ckey: u32) -> TcpConn<S> {
        TcpConn {
            link,
            client,
            ckey,
            backend: None,
            connect_deadline_ms: 0,
            up: Flow::default(),
            down: Flow::default(),
        }
    }
}

impl<S> TcpConn<S> {
    /// When the relay next needs its timer, in the manner of a sans-I/O peer's
    /// `poll_timeout`: the connect's deadline while connecting, else the moment it has
    /// been idle (no byte moved either way) for `idle_ms`.
    pub fn poll_timeout(&self, idle_ms: u64) -> u64 {
        if self.link.connected {
            self.link.last_active_ms.saturating_add(idle_ms)
        } else {
            self.connect_deadline_ms
        }
    }

    /// A relay whose client already sent `bytes` (a ClientHello peeked on `[https]
    /// listen`) and, with `eof`, its FIN: they go to the backend first, once connected.
    pub fn with_pending(link: Link, client: S, ckey: u32, bytes: Vec<u8>, eof: bool) -> TcpConn<S> {
        let mut up = Flow::with_pending(bytes, eof);
        up.uncounted = up.buf.as_ref().map_or(0, |b| b.len() as u64);
        TcpConn {
            up,
            ..TcpConn::new(link, client, ckey)
        }
    }

    /// The relay an HTTP tunnel continues in: its sockets (and their keys), and the
    /// bytes each side is still owed.
    pub fn upgraded(u: Upgrade<S>) -> TcpConn<S> {
        TcpConn {
            link: u.link,
            client: u.client,
            ckey: u.ckey,
            backend: Some((u.backend, u.bkey)),
            connect_deadline_ms: 0,
            up: Flow::with_pending(u.tunnel.to_backend, u.tunnel.client_eof),
            down: Flow::with_pending(u.tunnel.to_client, u.tunnel.backend_eof),
        }
    }
}

impl<R: Reactor> Shard<R> {
    fn tcp(&mut self, idx: u32) -> Option<&mut TcpConn<R::Sock>> {
        match &mut self.slots[idx as usize].conn {
            Some(Conn::Tcp(c)) => Some(c),
            _ => None,
        }
    }

    /// Try the next backend for connection `idx`; with none left, close the client.
    pub(super) fn tcp_connect_next(&mut self, idx: u32) {
        loop {
            let Some(Conn::Tcp(c)) = &mut self.slots[idx as usize].conn else {
                return;
            };
            let Some(addr) = self.ctx.next_backend(&mut c.link) else {
                self.close(idx, false);
                return;
            };
            match self.io.connect(addr) {
                Ok(s) => {
                    let key = self.keys.open(Owner::Conn { idx, backend: true });
                    let watched = self.io.watch(&s, self.keys.token(key));
                    self.io.want(
                        &s,
                        Want {
                            write: true,
                            ..Want::default()
                        },
                    );
                    c.backend = Some((s, key));
                    if watched.is_ok() {
                        let at = self.ctx.now_ms + self.ctx.snapshot.server.connect_timeout_ms;
                        c.connect_deadline_ms = at;
                        self.arm(idx, at);
                        return;
                    }
                }
                Err(e) if crate::dataplane::http::is_exhaustion(&e) => {
                    // This host ran out, not the backend: no down-mark.
                    self.ctx.socket_failed(e.raw_os_error().unwrap_or(0));
                    self.close(idx, false);
                    return;
                }
                Err(e) => tracing::debug!(backend = %addr, error = %e, "connect failed at once"),
            }
            self.tcp_connect_failed(idx, false);
        }
    }

    /// Count a failed connect, mark the backend down and close the socket.
    fn tcp_connect_failed(&mut self, idx: u32, timed_out: bool) {
        let Some(Conn::Tcp(c)) = &mut self.slots[idx as usize].conn else {
            return;
        };
        self.ctx.connect_failed(&c.link, timed_out);
        if let Some((s, key)) = c.backend.take() {
            self.keys.free(key);
            self.io.close(s, false);
        }
    }

    pub(super) fn tcp_event(&mut self, idx: u32, backend: bool, read: bool, write: bool) {
        let Some(c) = self.tcp(idx) else {
            return;
        };
        let connected = c.link.connected;
        if backend && !connected {
            if !write {
                return;
            }
            let Some(Conn::Tcp(c)) = &mut self.slots[idx as usize].conn else {
                return;
            };
            let (s, _) = c.backend.as_ref().expect("connecting backend");
            match self.io.connect_result(s) {
                Ok(true) => {}
                Ok(false) => {
                    self.io.want(
                        s,
                        Want {
                            write: true,
                            ..Want::default()
                        },
                    );
                    return;
                }
                Err(_) => {
                    self.tcp_connect_failed(idx, false);
                    self.tcp_connect_next(idx);
                    return;
                }
            }
            self.ctx.connected(&mut c.link);
            self.send_header(idx);
            self.tcp_pump_both(idx);
            return;
        }
        if !connected {
            return; // client data waits in the socket until the backend is connected
        }
        // Readable moves data away from this side; writable lets the other direction
        // flush into it.
        if read {
            self.tcp_pump(idx, backend);
        }
        if write {
            self.tcp_pump(idx, !backend);
        }
        self.tcp_rearm(idx);
    }

    /// Both directions: when the connection starts, or continues after yielding.
    pub(super) fn tcp_pump_both(&mut self, idx: u32) {
        self.tcp_pump(idx, false);
        self.tcp_pump(idx, true);
        self.tcp_rearm(idx);
    }

    /// Move bytes from the client (`from_backend` false) or the backend to the other
    /// side until one would block.
    fn tcp_pump(&mut self, idx: u32, from_backend: bool) {
        let splice = self.ctx.snapshot.server.splice;
        let threshold = self.ctx.snapshot.server.splice_threshold_bytes;
        let Some(Conn::Tcp(c)) = &mut self.slots[idx as usize].conn else {
            return;
        };
        let Some((backend, _)) = c.backend.as_ref().filter(|_| c.link.connected) else {
            return;
        };
        let (src, dst, flow, other) = if from_backend {
            (backend, &c.client, &mut c.down, &c.up)
        } else {
            (&c.client, backend, &mut c.up, &c.down)
        };
        let peer_done = other.finished();
        if flow.pipe.is_none() && flow.buf.is_none() {
            flow.buf = Some(
                self.bufs
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(BUF_BYTES)),
            );
        }
        let before = flow.bytes;
        let mut sp = Splice {
            mode: splice,
            threshold,
            pipes: &mut self.pipes,
            switched: false,
        };
        let result = flow.pump(&mut self.io, src, dst, PUMP_BUDGET, peer_done, &mut sp);
        if sp.switched {
            self.ctx.stats().spliced_flows.inc();
        }
        let moved = flow.bytes - before + std::mem::take(&mut flow.uncounted);
        // An idle flow gives its buffer back: idle connections hold no memory but their own.
        if let Some(b) = flow.take_idle_buf() {
            self.bufs.push(b);
        }
        match result {
            Pump::Blocked { write } => {
                self.io
                    .want(if write { dst } else { src }, flow.wait_for(write));
            }
            Pump::Budget => {}
            Pump::Done | Pump::Reset => {}
        }
        if moved > 0 {
            let dir = if from_backend {
                Direction::Down
            } else {
                Direction::Up
            };
            self.ctx.moved(&mut c.link, dir, moved);
        }
        match result {
            Pump::Budget => self.yielded(idx),
            Pump::Done => {
                if c.up.finished() && c.down.finished() {
                    self.close(idx, false);
                }
            }
            Pump::Reset => self.close(idx, true),
            Pump::Blocked { .. } => {}
        }
    }

    /// Arm the connection's next deadline: its connect, or its idle timeout.
    fn tcp_rearm(&mut self, idx: u32) {
        let idle = self.ctx.snapshot.server.idle_timeout_ms;
        let Some(c) = self.tcp(idx) else {
            return;
        };
        let at = c.poll_timeout(idle);
        self.arm(idx, at);
    }

    pub(super) fn tcp_timer(&mut self, idx: u32) {
        let now = self.ctx.now_ms;
        let idle = self.ctx.snapshot.server.idle_timeout_ms;
        let Some(c) = self.tcp(idx) else {
            return;
        };
        let due = now >= c.poll_timeout(idle);
        if !c.link.connected {
            if c.backend.is_some() && due {
                self.tcp_connect_failed(idx, true);
                self.tcp_connect_next(idx);
            } else {
                self.tcp_rearm(idx);
            }
            return;
        }
        if due {
            self.ctx.stats().idle_timeouts.inc();
            self.close(idx, false);
            return;
        }
        self.tcp_rearm(idx);
    }

    /// The connection left the slab: give back its sockets, buffers and pipes.
    pub(super) fn tcp_closed(&mut self, mut c: TcpConn<R::Sock>, reset: bool) {
        self.ctx.closed(&c.link);
        self.keys.free(c.ckey);
        self.io.close(c.client, reset);
        if let Some((s, key)) = c.backend.take() {
            self.keys.free(key);
            self.io.close(s, reset);
        }
        for flow in [&mut c.up, &mut c.down] {
            if let Some(mut b) = flow.buf.take() {
                b.clear();
                self.bufs.push(b);
            }
            if let Some(p) = flow.take_reusable_pipe() {
                self.pipes.push(p);
            }
        }
    }
}
