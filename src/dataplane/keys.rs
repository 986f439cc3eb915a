//! Socket keys: every socket the shard watches has one, and the reactor reports it
//! under a token made of the key and the key's generation. The key says who owns the
//! socket now — a connection (as its client or its backend), or the HTTP pool — so a
//! pooled connection changes hands without telling the reactor, and an event for a
//! socket closed since (reported in the same batch) is told apart by its generation.

use crate::dataplane::reactor::{Reactor, Token, Want};
use std::net::SocketAddr;

/// Generations take 30 bits of a token, which stays below the reactors' own tokens.
const GENERATION_MASK: u32 = (1 << 30) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Free,
    /// Connection `idx`'s client socket, or its backend socket.
    Conn {
        idx: u32,
        backend: bool,
    },
    /// An idle keep-alive connection to `addr` in the HTTP pool.
    Pooled {
        addr: SocketAddr,
    },
}

#[derive(Debug, Default)]
pub struct Keys {
    slots: Vec<(u32, Owner)>,
    free: Vec<u32>,
}

impl Keys {
    /// A key for a new socket owned by `owner`.
    pub fn open(&mut self, owner: Owner) -> u32 {
        match self.free.pop() {
            Some(k) => {
                let s = &mut self.slots[k as usize];
                s.0 = s.0.wrapping_add(1);
                s.1 = owner;
                k
            }
            None => {
                self.slots.push((0, owner));
                (self.slots.len() - 1) as u32
            }
        }
    }

    pub fn token(&self, key: u32) -> Token {
        u64::from(self.slots[key as usize].0 & GENERATION_MASK) << 32 | u64::from(key)
    }

    pub fn key(&self, token: Token) -> u32 {
        token as u32
    }

    /// Who owns the socket of `token`; `None` for a socket closed since.
    pub fn owner(&self, token: Token) -> Option<Owner> {
        let (generation, owner) = *self.slots.get(token as u32 as usize)?;
        let current = u64::from(generation & GENERATION_MASK) == token >> 32;
        (current && owner != Owner::Free).then_some(owner)
    }

    pub fn set(&mut self, key: u32, owner: Owner) {
        self.slots[key as usize].1 = owner;
    }

    pub fn free(&mut self, key: u32) {
        self.slots[key as usize].1 = Owner::Free;
        self.free.push(key);
    }
}

/// What an HTTP connection may do with the sockets of the shard: the reactor's calls,
/// and the keys of its backend sockets.
pub struct Io<'a, R: Reactor> {
    pub r: &'a mut R,
    pub(crate) keys: &'a mut Keys,
    /// The connection's slot.
    pub(crate) idx: u32,
}

impl<R: Reactor> Io<'_, R> {
    /// A new backend socket of this connection: watched from now on; its key.
    pub fn open(&mut self, sock: &R::Sock) -> u32 {
        let key = self.keys.open(Owner::Conn {
            idx: self.idx,
            backend: true,
        });
        // A socket the reactor cannot watch fails its connect by the deadline.
        let _ = self.r.watch(sock, self.keys.token(key));
        key
    }

    /// A pooled backend socket now serves this connection.
    pub fn attach(&mut self, key: u32) {
        self.keys.set(
            key,
            Owner::Conn {
                idx: self.idx,
                backend: true,
            },
        );
    }

    /// A backend socket goes to the pool: watched for a close (or stray bytes).
    pub fn pooled(&mut self, key: u32, addr: SocketAddr, sock: &R::Sock) {
        self.keys.set(key, Owner::Pooled { addr });
        self.r.want(
            sock,
            Want {
                read: true,
                ..Want::default()
            },
        );
    }

    /// A backend socket is done with.
    pub fn close(&mut self, key: u32, sock: R::Sock, reset: bool) {
        self.keys.free(key);
        self.r.close(sock, reset);
    }
}
