//! HTTP connections on the ring: a slab of their own, one-shot readiness polls (at
//! most one per socket and direction, kept until they complete so no completion finds
//! its slot reused), and the `Watch` that cancels a released backend's polls.

use super::{ud, Shard, OP_HPOLL, OP_IGNORE};
use crate::dataplane::http::{self, After, HttpConn, Watch};
use crate::io::uring::Ring;
use crate::snapshot::{Front, Listeners};
use socket2::Socket;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

/// An HTTP connection's readiness polls: client readable, client writable, backend
/// readable, backend writable; at most one of each in flight.
#[derive(Default)]
pub(super) struct Polls {
    armed: [bool; 4],
    /// Cancelled with the backend it watched: not re-armed until it completes.
    cancelling: [bool; 4],
    inflight: u16,
}

const CLIENT_IN: usize = 0;

/// An HTTP connection's slot: the connection (gone once closing) and its polls (kept
/// until every poll completed, so no completion finds the slot reused).
pub(super) struct HttpSlot {
    pub(super) conn: Option<HttpConn>,
    pub(super) polls: Polls,
}

impl Shard {
    /// The once-a-second part of HTTP: the pool's idle connections, the latency
    /// histograms, and each connection's timers (or its end, when shutting down).
    pub(super) fn sweep_http(&mut self, now: u64) {
        self.http.sweep(now);
        self.http.latency.publish(self.ctx.id);
        let draining = self.ctx.draining_since_ms.is_some();
        for idx in 0..self.hslots.len() {
            let Some(HttpSlot {
                conn: Some(c),
                polls,
            }) = self.hslots[idx].as_mut()
            else {
                continue;
            };
            let mut watch = UringWatch {
                ring: &mut self.ring,
                polls,
                idx,
            };
            let after = if draining && c.session.is_idle() {
                After::Close { reset: false }
            } else {
                c.timers(&self.ctx, &mut self.http, &mut watch)
            };
            self.after_http(idx, after);
        }
    }

    pub(super) fn on_http_client(
        &mut self,
        fd: OwnedFd,
        listeners: &Arc<Listeners>,
        front: &Front,
    ) {
        let client = Socket::from(fd);
        let Some(addr) = client.peer_addr().ok().and_then(|a| a.as_socket()) else {
            return;
        };
        if !self.ctx.admit_http(front, self.live) {
            return;
        }
        let idx = match self.hfree.pop() {
            Some(i) => i,
            None => {
                self.hslots.push(None);
                self.hslots.len() - 1
            }
        };
        self.live += 1;
        self.hslots[idx] = Some(HttpSlot {
            conn: Some(HttpConn::new(client, addr, listeners, &self.ctx)),
            polls: Polls::default(),
        });
        self.pump_http(idx);
    }

    /// A readiness poll completed with `result` (the events, or an error).
    pub(super) fn on_hpoll(&mut self, idx: usize, k: usize, result: i32) {
        let Some(slot) = self.hslots.get_mut(idx).and_then(Option::as_mut) else {
            debug_assert!(false, "poll completion for a free slot");
            return;
        };
        slot.polls.inflight -= 1;
        slot.polls.armed[k] = false;
        let cancelled = std::mem::take(&mut slot.polls.cancelling[k]);
        let Some(c) = slot.conn.as_mut() else {
            if slot.polls.inflight == 0 {
                self.hslots[idx] = None;
                self.hfree.push(idx);
            }
            return;
        };
        if !cancelled {
            // Any outcome (readiness, hang-up, error) is worth a try: the system call
            // tells what it is. A hang-up keeps the read hint until the end of stream
            // is read, as on epoll.
            let hup = result < 0
                || result & i32::from(libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0;
            match k {
                0 => {
                    c.ready.client_read = true;
                    c.ready.client_hup |= hup;
                }
                1 => c.ready.client_write = true,
                2 => {
                    c.ready.backend_read = true;
                    c.ready.backend_hup |= hup;
                }
                _ => c.ready.backend_write = true,
            }
        }
        self.pump_http(idx);
    }

    pub(super) fn pump_http(&mut self, idx: usize) {
        let Some(HttpSlot {
            conn: Some(c),
            polls,
        }) = self.hslots[idx].as_mut()
        else {
            return;
        };
        let mut watch = UringWatch {
            ring: &mut self.ring,
            polls,
            idx,
        };
        let after = c.pump(&self.ctx, &mut self.http, &mut watch);
        self.after_http(idx, after);
    }

    /// Arm the polls the connection waits on, or close it.
    pub(super) fn after_http(&mut self, idx: usize, after: After) {
        let Some(HttpSlot {
            conn: Some(c),
            polls,
        }) = self.hslots[idx].as_mut()
        else {
            return;
        };
        if let After::Close { reset } = after {
            let mut watch = UringWatch {
                ring: &mut self.ring,
                polls,
                idx,
            };
            c.close(&self.ctx, &mut watch);
            watch.cancel_all(0..2);
            if reset {
                self.ctx.stats().resets.inc();
                http::reset(&c.client);
            }
            let inflight = polls.inflight;
            // Dropping the connection closes its sockets; the slot waits for its polls.
            self.hslots[idx].as_mut().expect("live slot").conn = None;
            if inflight == 0 {
                self.hslots[idx] = None;
                self.hfree.push(idx);
            }
            self.live -= 1;
            self.ctx.stats().connections.dec();
            return;
        }
        if after == After::Yield {
            self.http.again.push(idx);
        }
        let (cr, cw) = c.client_interest();
        let (br, bw) = c.backend_interest();
        let client = c.client.as_raw_fd();
        let backend = c.backend_fd();
        let want = [
            (cr, Some(client)),
            (cw, Some(client)),
            (br, backend),
            (bw, backend),
        ];
        for (k, (on, fd)) in want.into_iter().enumerate() {
            let Some(fd) = fd else { continue };
            if on && !polls.armed[k] && !polls.cancelling[k] {
                let events = if k % 2 == 0 {
                    libc::POLLIN | libc::POLLRDHUP
                } else {
                    libc::POLLOUT
                };
                self.ring.poll(fd, events, ud(OP_HPOLL, k, idx));
                polls.armed[k] = true;
                polls.inflight += 1;
            }
        }
    }
}

/// The io_uring side of backend changes: a released backend's polls are cancelled.
struct UringWatch<'a> {
    ring: &'a mut Ring,
    polls: &'a mut Polls,
    idx: usize,
}

impl UringWatch<'_> {
    /// Cancel the armed polls of slots `CLIENT_IN + 2 * sides`.
    fn cancel_all(&mut self, sides: std::ops::Range<usize>) {
        for side in sides {
            for k in [CLIENT_IN + 2 * side, CLIENT_IN + 2 * side + 1] {
                if self.polls.armed[k] && !self.polls.cancelling[k] {
                    self.polls.cancelling[k] = true;
                    self.ring
                        .cancel(ud(OP_HPOLL, k, self.idx), ud(OP_IGNORE, 0, 0));
                }
            }
        }
    }
}

impl Watch for UringWatch<'_> {
    fn backend_opened(&mut self, _fd: std::os::fd::RawFd, _addr: std::net::SocketAddr) -> usize {
        0 // polls are armed per wait; nothing to register
    }

    fn backend_attached(&mut self, _key: usize) {}

    fn backend_released(&mut self, _key: usize, _pooled: bool) {
        self.cancel_all(1..2);
    }
}
