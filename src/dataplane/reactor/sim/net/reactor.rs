//! The reactor's side of the network, the calls only the shard core makes: connects
//! to backend addresses (their fate drawn from the address's policy), watching and
//! wanting, listeners, and the events of a wait.

use super::{Fate, Link, Net, Readiness, SimSock, Sock, SockId};
use crate::dataplane::reactor::sim::trace::Tr;
use crate::dataplane::reactor::{Event, ListenId, Token, Want};
use std::io::{self, ErrorKind};
use std::net::SocketAddr;

impl Net {
    // ---- the core's side ---------------------------------------------------------------

    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<SimSock> {
        let policy = self
            .backends
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, p)| *p);
        let port = self.port();
        let local = SocketAddr::from(([127, 0, 0, 1], port));
        let id = self.new_sock(true, local, addr, Link::Hole);
        let s = &mut self.socks[id as usize];
        let fate = match policy {
            None => Fate::RefuseNow,
            Some(p) => {
                let d = s.rng.below(100);
                let fast = s.rng.range(0, 2);
                if d < p.refuse_now_pct {
                    Fate::RefuseNow
                } else if d < p.refuse_now_pct + p.refuse_pct {
                    Fate::Refuse(fast)
                } else if d < p.refuse_now_pct + p.refuse_pct + p.hole_pct {
                    Fate::Blackhole
                } else if s.rng.chance(p.slow_pct) {
                    Fate::Accept(s.rng.range(0, p.slow_ms))
                } else {
                    Fate::Accept(fast)
                }
            }
        };
        self.trace.add(
            self.now_ms,
            true,
            Tr::Connect {
                sock: id,
                addr,
                fate,
            },
        );
        let now = self.now_ms;
        let s = &mut self.socks[id as usize];
        s.link = match fate {
            Fate::RefuseNow => {
                s.closed_at = Some(now);
                return Err(ErrorKind::ConnectionRefused.into());
            }
            Fate::Blackhole => Link::Hole,
            Fate::Accept(ms) | Fate::Refuse(ms) => Link::Connecting {
                at_ms: now + ms,
                fate,
            },
        };
        Ok(SimSock(id))
    }

    pub fn connect_result(&mut self, id: SockId) -> io::Result<bool> {
        match self.socks[id as usize].link {
            Link::Up => Ok(true),
            Link::Refused => Err(ErrorKind::ConnectionRefused.into()),
            Link::Connecting { .. } | Link::Hole => Ok(false),
        }
    }

    pub fn watch(&mut self, id: SockId, token: Token) {
        let s = &mut self.socks[id as usize];
        s.token = Some(token);
        // EPOLL_CTL_ADD reports a socket that is ready already.
        if self.params.readiness == Readiness::Edge && (s.readable() || s.writable()) {
            s.woken = true;
        }
    }

    pub fn retoken(&mut self, id: SockId, token: Token) {
        self.socks[id as usize].token = Some(token);
    }

    pub fn want(&mut self, id: SockId, want: Want) {
        self.trace.add(
            self.now_ms,
            true,
            Tr::Want {
                sock: id,
                read: want.read,
                write: want.write,
            },
        );
        let s = &mut self.socks[id as usize];
        s.armed_read |= want.read;
        s.armed_write |= want.write;
    }

    pub fn listen(&mut self, addr: SocketAddr) -> io::Result<ListenId> {
        let id = self
            .listeners
            .iter()
            .position(|l| l.addr == addr)
            .ok_or_else(|| io::Error::new(ErrorKind::AddrNotAvailable, "not simulated"))?;
        self.listeners[id].listening = true;
        Ok(id)
    }

    pub fn unlisten(&mut self, id: ListenId) {
        if let Some(l) = self.listeners.get_mut(id) {
            l.listening = false;
        }
    }

    pub fn pause_accepts(&mut self, paused: bool) {
        self.paused = paused;
    }

    pub fn listening(&self) -> usize {
        self.listeners.iter().filter(|l| l.listening).count()
    }

    /// Whether an event is waiting for the core.
    pub fn has_events(&self) -> bool {
        let now = self.now_ms;
        self.accepts.iter().any(|p| p.at_ms <= now)
            || self
                .socks
                .iter()
                .any(|s| self.ready_dirs(s) != (false, false))
    }

    /// The directions socket `s` has an event for.
    fn ready_dirs(&self, s: &Sock) -> (bool, bool) {
        if s.token.is_none() || s.closed_at.is_some() {
            return (false, false);
        }
        match self.params.readiness {
            Readiness::Edge if s.woken => (s.readable(), s.writable()),
            Readiness::Edge => (false, false),
            Readiness::OneShot => (s.armed_read && s.readable(), s.armed_write && s.writable()),
        }
    }

    /// Hand the core its events: due accepts and sockets with news, in a shuffled
    /// order, sometimes only some of them (the rest come with the next wait).
    pub fn events(&mut self, out: &mut Vec<Event<SimSock>>) {
        let now = self.now_ms;
        let mut ready: Vec<SockId> = Vec::new();
        for (i, s) in self.socks.iter().enumerate() {
            if self.ready_dirs(s) != (false, false) {
                ready.push(i as SockId);
            }
        }
        if self.params.readiness == Readiness::Edge && self.rng.chance(self.params.spurious_pct) {
            let watched: Vec<SockId> = (0..self.socks.len() as SockId)
                .filter(|&i| {
                    let s = &self.socks[i as usize];
                    s.token.is_some() && s.closed_at.is_none() && (s.readable() || s.writable())
                })
                .collect();
            if !watched.is_empty() {
                let i = self.rng.pick(&watched);
                self.socks[i as usize].woken = true;
                if !ready.contains(&i) {
                    ready.push(i);
                }
            }
        }
        let mut due: Vec<usize> = Vec::new();
        for (k, p) in self.accepts.iter().enumerate() {
            if p.at_ms <= now && !self.paused {
                due.push(k);
            }
        }
        // (true, i): accept i; (false, id): socket id.
        let mut all: Vec<(bool, usize)> = due
            .iter()
            .map(|&k| (true, k))
            .chain(ready.iter().map(|&s| (false, s as usize)))
            .collect();
        self.rng.shuffle(&mut all);
        if all.len() > 1 && self.rng.chance(self.params.batch_split_pct) {
            let keep = self.rng.range_usize(1, all.len() - 1);
            all.truncate(keep);
        }
        let mut taken: Vec<usize> = Vec::new();
        for (accept, i) in all {
            if accept {
                taken.push(i);
                continue;
            }
            let s = &mut self.socks[i];
            let (read, write) = match self.params.readiness {
                Readiness::Edge => (s.readable(), s.writable()),
                Readiness::OneShot => (s.armed_read && s.readable(), s.armed_write && s.writable()),
            };
            let hup = s.hup() && (read || self.params.readiness == Readiness::Edge);
            s.woken = false;
            s.armed_read &= !read;
            s.armed_write &= !write;
            let token = s.token.expect("watched");
            self.trace.add(
                now,
                false,
                Tr::Event {
                    sock: i as SockId,
                    read,
                    write,
                    hup,
                },
            );
            out.push(Event::Ready {
                token,
                read: read || hup,
                write: write || (hup && self.params.readiness == Readiness::Edge),
                hup,
            });
        }
        taken.sort_unstable();
        for k in taken.into_iter().rev() {
            let p = self.accepts.remove(k);
            if !self.listeners[p.listener].listening {
                // Unlistened meanwhile: the reactor closes what it still delivers.
                self.close(p.sock, true);
                continue;
            }
            self.trace.add(
                now,
                false,
                Tr::Accepted {
                    sock: p.sock,
                    peer: p.peer,
                },
            );
            out.push(Event::Accepted {
                listener: p.listener,
                sock: SimSock(p.sock),
                peer: p.peer,
            });
        }
        // Accepts were appended after the shuffle: move them to random places too.
        let n = out.len();
        if n > 1 {
            self.rng.shuffle(&mut out[..]);
        }
    }
}
