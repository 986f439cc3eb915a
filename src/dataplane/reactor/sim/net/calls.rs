//! The socket calls both sides make (sluice's core through the reactor, the world's
//! actors directly): sends, with the window, `MSG_MORE` and segmentation; FIN and
//! RST; receives, with the split-read rule; peeks.

use super::{Link, Net, Segment, SockId, MSS};
use crate::dataplane::reactor::sim::trace::{Res, Tr};
use std::io::{self, ErrorKind};

impl Net {
    // ---- sending ---------------------------------------------------------------------

    /// Queue `data` toward the peer, cut into segments unless `together`.
    pub(super) fn push_data(&mut self, id: SockId, data: Vec<u8>, together: bool) {
        if data.is_empty() {
            return;
        }
        let now = self.now_ms;
        let jitter = self.params.jitter_ms;
        let split = self.params.split_send_pct;
        let s = &mut self.socks[id as usize];
        let pieces = if together || data.len() < 2 || !s.rng.chance(split) {
            1
        } else {
            s.rng.range_usize(2, 4).min(data.len())
        };
        let mut cuts: Vec<usize> = (1..pieces)
            .map(|_| s.rng.range_usize(1, data.len() - 1))
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        cuts.push(data.len());
        let mut start = 0;
        for end in cuts {
            let at_ms = s
                .last_at_ms
                .max(now + s.latency_ms + s.rng.range(0, jitter));
            s.last_at_ms = at_ms;
            s.wire.push_back(Segment {
                at_ms,
                data: data[start..end].to_vec(),
                fin: false,
                rst: false,
            });
            start = end;
        }
    }

    /// Queue a FIN or an RST; `merge`: in the segment of the last data when one is in
    /// flight (`None`: as chance has it).
    pub(super) fn push_ctl(&mut self, id: SockId, fin: bool, rst: bool, merge: bool) {
        let now = self.now_ms;
        let jitter = self.params.jitter_ms;
        let s = &mut self.socks[id as usize];
        if merge {
            if let Some(last) = s.wire.back_mut() {
                last.fin |= fin;
                last.rst |= rst;
                return;
            }
        }
        let at_ms = s
            .last_at_ms
            .max(now + s.latency_ms + s.rng.range(0, jitter));
        s.last_at_ms = at_ms;
        s.wire.push_back(Segment {
            at_ms,
            data: Vec::new(),
            fin,
            rst,
        });
    }

    pub(super) fn send_inner(
        &mut self,
        id: SockId,
        data: &[u8],
        more: bool,
        together: bool,
    ) -> io::Result<usize> {
        let now = self.now_ms;
        let s = &mut self.socks[id as usize];
        assert!(s.closed_at.is_none(), "send on closed socket {id}");
        match s.link {
            Link::Up => {}
            Link::Refused => return Err(ErrorKind::ConnectionRefused.into()),
            Link::Connecting { .. } | Link::Hole => return Err(ErrorKind::WouldBlock.into()),
        }
        if s.rx_rst {
            return Err(ErrorKind::ConnectionReset.into());
        }
        if s.shut {
            return Err(ErrorKind::BrokenPipe.into());
        }
        let n = data.len().min(s.free());
        if n < data.len() {
            s.blocked = true;
        }
        if n == 0 {
            return Err(ErrorKind::WouldBlock.into());
        }
        s.unacked += n;
        s.sent += n as u64;
        if more {
            // Linux holds back only the last partial segment of `MSG_MORE` bytes.
            if s.corked.is_empty() {
                s.cork_ms = now;
            }
            s.corked.extend_from_slice(&data[..n]);
            let full = s.corked.len() / MSS * MSS;
            if full > 0 {
                let seg: Vec<u8> = s.corked.drain(..full).collect();
                self.push_data(id, seg, false);
            }
        } else {
            let mut payload = std::mem::take(&mut s.corked);
            payload.extend_from_slice(&data[..n]);
            self.push_data(id, payload, together);
        }
        Ok(n)
    }

    /// Shut the write side: corked bytes leave with the FIN in one segment.
    pub(super) fn shut(&mut self, id: SockId, merge: Option<bool>) {
        let pct = self.params.fin_merge_pct;
        let s = &mut self.socks[id as usize];
        if s.shut || s.link != Link::Up || s.rx_rst {
            s.shut = true;
            return;
        }
        s.shut = true;
        let corked = std::mem::take(&mut s.corked);
        let merge = merge.unwrap_or_else(|| s.rng.chance(pct));
        let merge = merge || !corked.is_empty();
        self.push_data(id, corked, true);
        self.push_ctl(id, true, false, merge);
    }

    pub(super) fn close_inner(&mut self, id: SockId, reset: bool, merge: Option<bool>) {
        let now = self.now_ms;
        let pct = self.params.fin_merge_pct;
        let s = &mut self.socks[id as usize];
        assert!(s.closed_at.is_none(), "socket {id} closed twice");
        s.closed_at = Some(now);
        s.token = None;
        s.woken = false;
        s.armed_read = false;
        s.armed_write = false;
        let unread = s.unread();
        self.trace.add(
            now,
            s.core,
            Tr::Close {
                sock: id,
                reset,
                unread,
            },
        );
        match s.link {
            Link::Up => {}
            Link::Connecting { .. } => {
                s.link = Link::Hole; // the connect is abandoned
                return;
            }
            _ => return,
        }
        s.rx.clear();
        s.rx_off = 0;
        let peer = s.peer;
        if let Some(p) = peer {
            let src = &mut self.socks[p as usize];
            src.unacked = src.unacked.saturating_sub(unread);
        }
        let s = &mut self.socks[id as usize];
        if s.rx_rst {
            return;
        }
        // Linux resets a connection closed with bytes unread.
        if reset || unread > 0 {
            s.corked.clear();
            let merge = merge.unwrap_or_else(|| s.rng.chance(pct));
            self.push_ctl(id, false, true, merge);
        } else if !s.shut {
            self.shut(id, merge);
        }
    }

    // ---- the calls both sides make ----------------------------------------------------

    pub fn recv(&mut self, id: SockId, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let pct = self.params.split_read_pct;
        let s = &mut self.socks[id as usize];
        assert!(s.closed_at.is_none(), "recv on closed socket {id}");
        let avail = s.unread();
        let r = if avail > 0 && max > 0 {
            let mut n = avail.min(max);
            if s.core && n > 1 && s.rng.chance(pct) {
                // Only part had arrived when the read ran: the rest raises its own edge.
                n = s.rng.range_usize(1, n - 1);
                s.woken = true;
            }
            buf.extend_from_slice(&s.rx[s.rx_off..s.rx_off + n]);
            s.rx_off += n;
            if s.rx_off == s.rx.len() {
                s.rx.clear();
                s.rx_off = 0;
            }
            if let Some(p) = s.peer {
                self.read_freed(p, n);
            }
            Ok(n)
        } else if s.link == Link::Refused {
            Err(ErrorKind::ConnectionRefused.into())
        } else if s.rx_rst {
            Err(ErrorKind::ConnectionReset.into())
        } else if s.rx_fin {
            Ok(0)
        } else {
            Err(ErrorKind::WouldBlock.into())
        };
        let core = self.socks[id as usize].core;
        self.trace.add(
            self.now_ms,
            core,
            Tr::Recv {
                sock: id,
                max,
                r: Res::from(&r),
            },
        );
        r
    }

    /// The peer read `n` of the bytes `sender` sent: its window opens, and the
    /// acknowledgement pushes out what `MSG_MORE` held back.
    pub(super) fn read_freed(&mut self, sender: SockId, n: usize) {
        let s = &mut self.socks[sender as usize];
        s.unacked = s.unacked.saturating_sub(n);
        if !s.corked.is_empty() && !s.shut {
            let held = std::mem::take(&mut s.corked);
            self.push_data(sender, held, false);
        }
        let s = &mut self.socks[sender as usize];
        if s.blocked && s.free() * 3 >= s.window {
            s.blocked = false;
            s.woken = true;
        }
    }

    pub fn send(&mut self, id: SockId, data: &[u8], more: bool) -> io::Result<usize> {
        let r = self.send_inner(id, data, more, false);
        let core = self.socks[id as usize].core;
        self.trace.add(
            self.now_ms,
            core,
            Tr::Send {
                sock: id,
                len: data.len(),
                more,
                r: Res::from(&r),
            },
        );
        r
    }

    pub fn peek(&mut self, id: SockId) -> io::Result<usize> {
        let s = &self.socks[id as usize];
        let r = if s.unread() > 0 {
            Ok(s.unread())
        } else if s.rx_rst {
            Err(ErrorKind::ConnectionReset.into())
        } else if s.rx_fin {
            Ok(0)
        } else {
            Err(ErrorKind::WouldBlock.into())
        };
        let core = s.core;
        self.trace.add(
            self.now_ms,
            core,
            Tr::Peek {
                sock: id,
                r: Res::from(&r),
            },
        );
        r
    }

    pub fn shutdown(&mut self, id: SockId) {
        let core = self.socks[id as usize].core;
        self.trace.add(self.now_ms, core, Tr::Shutdown { sock: id });
        self.shut(id, None);
    }

    pub fn close(&mut self, id: SockId, reset: bool) {
        self.close_inner(id, reset, None);
    }
}
