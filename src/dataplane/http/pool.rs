//! The shard's HTTP state: idle keep-alive backend connections per backend (reused
//! across clients), and the response-time histograms.

use crate::dataplane::reactor::Reactor;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;

/// A pooled connection idle for longer is closed (backends time out idle keep-alive
/// connections themselves; reusing one just as it closes costs a retry).
const POOL_IDLE_MS: u64 = 10_000;

/// A shard's HTTP state: idle keep-alive backend connections per backend address
/// (each with its shard key; connections it lets go are listed in `evicted` for the
/// shard to close), and its response-time histograms.
pub struct HttpShard<S> {
    idle: HashMap<SocketAddr, Vec<Idle<S>>>,
    per_backend: usize,
    /// Pooled sockets let go since the shard last looked, with their keys.
    pub evicted: Vec<(S, u32)>,
    /// The shard's buffer for backend reads (borrowed per read).
    pub(super) scratch: Vec<u8>,
    pub latency: crate::stats::latency::Latencies,
}

impl<S> Default for HttpShard<S> {
    fn default() -> Self {
        HttpShard {
            idle: HashMap::new(),
            per_backend: 0,
            evicted: Vec::new(),
            scratch: Vec::new(),
            latency: Default::default(),
        }
    }
}

struct Idle<S> {
    sock: S,
    key: u32,
    since_ms: u64,
}

impl<S> HttpShard<S> {
    pub fn set_limit(&mut self, per_backend: usize) {
        self.per_backend = per_backend;
    }

    /// An idle connection to `addr` that is still open and silent: one the backend
    /// closed, or that holds bytes nobody asked for (a body after a HEAD response, a
    /// second response), reads as something other than "would block" and is closed.
    /// Checked on every take, whatever the connection's age and whether or not the
    /// reactor watches pooled sockets: stray bytes handed to the next request would be
    /// read as its response, by another client.
    pub fn take<R: Reactor<Sock = S>>(&mut self, addr: SocketAddr, r: &mut R) -> Option<(S, u32)> {
        let list = self.idle.get_mut(&addr)?;
        while let Some(idle) = list.pop() {
            match r.peek(&idle.sock) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Some((idle.sock, idle.key)),
                _ => self.evicted.push((idle.sock, idle.key)),
            }
        }
        None
    }

    pub fn put(&mut self, addr: SocketAddr, sock: S, key: u32, now_ms: u64) {
        let list = self.idle.entry(addr).or_default();
        if list.len() < self.per_backend {
            list.push(Idle {
                sock,
                key,
                since_ms: now_ms,
            });
        } else {
            self.evicted.push((sock, key));
        }
    }

    /// The pooled socket `key` to `addr` became readable: the backend closed it (or
    /// sent bytes nobody asked for). The socket, for the caller to close.
    pub fn evict(&mut self, addr: SocketAddr, key: u32) -> Option<S> {
        let list = self.idle.get_mut(&addr)?;
        let i = list.iter().position(|x| x.key == key)?;
        Some(list.swap_remove(i).sock)
    }

    /// Close connections idle past `POOL_IDLE_MS`; forget empty entries.
    pub fn sweep(&mut self, now_ms: u64) {
        let evicted = &mut self.evicted;
        for list in self.idle.values_mut() {
            let mut i = 0;
            while i < list.len() {
                if now_ms.saturating_sub(list[i].since_ms) < POOL_IDLE_MS {
                    i += 1;
                } else {
                    let x = list.swap_remove(i);
                    evicted.push((x.sock, x.key));
                }
            }
        }
        self.idle.retain(|_, list| !list.is_empty());
    }

    /// Close every idle connection (shutdown).
    pub fn clear(&mut self) {
        for (_, list) in self.idle.drain() {
            self.evicted
                .extend(list.into_iter().map(|x| (x.sock, x.key)));
        }
    }
}
