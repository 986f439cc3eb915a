//! The shard's HTTP state: idle keep-alive backend connections per backend (reused
//! across clients), and the response-time histograms.

use socket2::Socket;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::mem::MaybeUninit;
use std::net::SocketAddr;

/// A pooled connection idle for longer is closed (backends time out idle keep-alive
/// connections themselves; reusing one just as it closes costs a retry).
const POOL_IDLE_MS: u64 = 10_000;

/// A shard's HTTP state: idle keep-alive backend connections per backend address
/// (each with its shard key; connections it closes are listed in `evicted` for the
/// shard to forget), and its response-time histograms.
#[derive(Default)]
pub struct HttpShard {
    idle: HashMap<SocketAddr, Vec<Idle>>,
    per_backend: usize,
    /// Keys of pooled sockets closed since the shard last looked.
    pub evicted: Vec<usize>,
    /// The shard's buffer for backend reads (borrowed per read).
    pub(super) scratch: Vec<u8>,
    pub latency: crate::stats::latency::Latencies,
    /// Connections (the shard's slab indexes) that yielded with work left, pumped
    /// again in the next loop turn, which then does not wait for events.
    pub again: Vec<usize>,
    again_spare: Vec<usize>,
}

struct Idle {
    sock: Socket,
    key: usize,
    since_ms: u64,
}

impl HttpShard {
    pub fn set_limit(&mut self, per_backend: usize) {
        self.per_backend = per_backend;
    }

    /// An idle connection to `addr` that is still open and silent: one the backend
    /// closed, or that holds bytes nobody asked for (a body after a HEAD response, a
    /// second response), reads as something other than "would block" and is closed.
    /// Checked on every take, whatever the connection's age and whether or not the
    /// reactor watches pooled sockets: stray bytes handed to the next request would be
    /// read as its response, by another client.
    pub fn take(&mut self, addr: SocketAddr) -> Option<(Socket, usize)> {
        let list = self.idle.get_mut(&addr)?;
        while let Some(idle) = list.pop() {
            let mut probe = [MaybeUninit::<u8>::uninit(); 1];
            match idle.sock.peek(&mut probe) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Some((idle.sock, idle.key)),
                _ => self.evicted.push(idle.key),
            }
        }
        None
    }

    pub fn put(&mut self, addr: SocketAddr, sock: Socket, key: usize, now_ms: u64) {
        let list = self.idle.entry(addr).or_default();
        if list.len() < self.per_backend {
            list.push(Idle {
                sock,
                key,
                since_ms: now_ms,
            });
        } else {
            self.evicted.push(key);
        }
    }

    /// The pooled socket `key` to `addr` became readable: the backend closed it (or
    /// sent bytes nobody asked for). Close it.
    pub fn evict(&mut self, addr: SocketAddr, key: usize) {
        if let Some(list) = self.idle.get_mut(&addr) {
            if let Some(i) = list.iter().position(|x| x.key == key) {
                list.swap_remove(i);
                self.evicted.push(key);
            }
        }
    }

    /// Close connections idle past `POOL_IDLE_MS`; forget empty entries.
    pub fn sweep(&mut self, now_ms: u64) {
        let evicted = &mut self.evicted;
        self.idle.retain(|_, list| {
            list.retain(|x| {
                let keep = now_ms.saturating_sub(x.since_ms) < POOL_IDLE_MS;
                if !keep {
                    evicted.push(x.key);
                }
                keep
            });
            !list.is_empty()
        });
    }

    /// The connections to pump again this turn (the list is empty afterwards; give it
    /// back with [`Self::done_again`] so neither list is reallocated each turn).
    pub fn take_again(&mut self) -> Vec<usize> {
        let mut list = std::mem::take(&mut self.again_spare);
        std::mem::swap(&mut list, &mut self.again);
        list
    }

    pub fn done_again(&mut self, mut list: Vec<usize>) {
        list.clear();
        self.again_spare = list;
    }

    /// Close every idle connection (shutdown).
    pub fn clear(&mut self) {
        for list in self.idle.values() {
            self.evicted.extend(list.iter().map(|x| x.key));
        }
        self.idle.clear();
    }
}
