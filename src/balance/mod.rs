//! Backend selection: Maglev, weighted round-robin, least-connections.
//!
//! Pure: no I/O, no clock, no locks. Tables are built here by the control thread
//! ([`Selector::build`]); shards only call [`Selector::pick`].

pub mod hash;
pub mod maglev;

use crate::config::{BackendConfig, Balance, HashKey};
use std::net::SocketAddr;

/// Connect attempts per client connection (the first pick and the retries).
pub const MAX_TRIES: usize = 3;

#[derive(Debug)]
enum Algorithm {
    Maglev {
        table: maglev::Table,
        key: HashKey,
    },
    /// A smooth weighted round-robin order, precomputed; shards walk it with a cursor.
    RoundRobin {
        order: Box<[u16]>,
    },
    LeastConn,
}

/// How one service picks among its backends (indices into its backend list).
#[derive(Debug)]
pub struct Selector {
    algorithm: Algorithm,
    weights: Box<[u32]>,
}

/// The state of one client connection's search for a backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attempt {
    tried: [u16; MAX_TRIES],
    count: u8,
    /// Maglev: the slot the walk continues from.
    slot: u32,
    /// The flow's hash when the caller computed it (HTTP header and cookie keys).
    preset: Option<u64>,
}

impl Attempt {
    /// A search whose Maglev key is `hash` rather than the client's address.
    pub fn hashed(hash: u64) -> Attempt {
        Attempt {
            preset: Some(hash),
            ..Attempt::default()
        }
    }

    pub fn tries(&self) -> usize {
        usize::from(self.count)
    }

    fn has_tried(&self, i: usize) -> bool {
        self.tried[..self.tries()]
            .iter()
            .any(|&t| usize::from(t) == i)
    }

    fn record(&mut self, i: usize) -> usize {
        self.tried[self.tries()] = i as u16;
        self.count += 1;
        i
    }
}

impl Selector {
    /// Build for `backends`, which must already be in canonical (address) order.
    pub fn build(backends: &[BackendConfig], balance: Balance, key: HashKey, size: u32) -> Self {
        let weights: Box<[u32]> = backends.iter().map(|b| b.weight).collect();
        if backends.is_empty() {
            // A service whose tasks are all gone still listens; `pick` finds nothing.
            return Selector {
                algorithm: Algorithm::LeastConn,
                weights,
            };
        }
        let algorithm = match balance {
            Balance::Maglev => {
                let names: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
                let entries: Vec<maglev::Entry> = names
                    .iter()
                    .zip(backends)
                    .map(|(n, b)| maglev::Entry {
                        key: n.as_bytes(),
                        weight: b.weight,
                    })
                    .collect();
                Algorithm::Maglev {
                    table: maglev::Table::build(&entries, size),
                    key,
                }
            }
            Balance::Roundrobin => Algorithm::RoundRobin {
                order: smooth_weighted_order(&weights),
            },
            Balance::Leastconn => Algorithm::LeastConn,
        };
        Selector { algorithm, weights }
    }

    /// The weights the selector was built with, by backend index.
    pub fn weights(&self) -> &[u32] {
        &self.weights
    }

    /// Pick the next backend to try for `client`, or `None` when the tries are spent or
    /// no backend is left. `up(i)` says whether backend `i` may take new connections;
    /// `load(i)` is its active connection count. `cursor` is the calling shard's own.
    pub fn pick(
        &self,
        client: SocketAddr,
        attempt: &mut Attempt,
        cursor: &mut u32,
        up: impl Fn(usize) -> bool,
        load: impl Fn(usize) -> u32,
    ) -> Option<usize> {
        let n = self.weights.len();
        if attempt.tries() >= MAX_TRIES.min(n) {
            return None;
        }
        let ok = |i: usize, a: &Attempt| up(i) && !a.has_tried(i);
        let found = match &self.algorithm {
            Algorithm::Maglev { table, key } => {
                if attempt.tries() == 0 {
                    let h = match (attempt.preset, key) {
                        (Some(h), _) => h,
                        (None, HashKey::Tuple) => hash::hash_tuple(client),
                        (None, HashKey::Source | HashKey::Header | HashKey::Cookie) => {
                            hash::hash_ip(client.ip())
                        }
                    };
                    attempt.slot = table.slot_of(h) as u32;
                }
                // Walk the table from the flow's slot: the "next backend in Maglev order".
                // Bounded by the table size; a usable backend is usually a few slots away.
                let m = table.len();
                let start = attempt.slot as usize;
                (0..m).map(|k| (start + k) % m).find_map(|s| {
                    let i = table.at(s);
                    ok(i, attempt).then(|| {
                        attempt.slot = s as u32;
                        i
                    })
                })
            }
            Algorithm::RoundRobin { order } => {
                let len = order.len();
                (0..len).find_map(|_| {
                    let i = usize::from(order[*cursor as usize % len]);
                    *cursor = cursor.wrapping_add(1);
                    ok(i, attempt).then_some(i)
                })
            }
            Algorithm::LeastConn => {
                // Least load per unit of weight; ties go round the backends in turn.
                let start = *cursor as usize;
                *cursor = cursor.wrapping_add(1);
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| ok(i, attempt))
                    .min_by_key(|&i| u64::from(load(i)) * 1000 / u64::from(self.weights[i]))
            }
        };
        found.map(|i| attempt.record(i))
    }
}

/// nginx's smooth weighted round-robin, unrolled into one period of picks. Weights are
/// divided by their gcd; a period longer than 65,536 picks is truncated (the shares of
/// such extreme weights come out approximate).
fn smooth_weighted_order(weights: &[u32]) -> Box<[u16]> {
    let g = weights.iter().fold(0, |g, &w| gcd(g, w)).max(1);
    let w: Vec<i64> = weights.iter().map(|&x| i64::from(x / g)).collect();
    let total: i64 = w.iter().sum();
    let period = total.clamp(1, 65_536) as usize;
    let mut current = vec![0i64; w.len()];
    let mut order = Vec::with_capacity(period);
    for _ in 0..period {
        for (c, wi) in current.iter_mut().zip(&w) {
            *c += wi;
        }
        let best = (0..w.len())
            .max_by_key(|&i| (current[i], -(i as i64)))
            .unwrap_or(0);
        current[best] -= total;
        order.push(best as u16);
    }
    order.into_boxed_slice()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(weights: &[u32]) -> Vec<BackendConfig> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| BackendConfig {
                addr: format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
                weight,
            })
            .collect()
    }

    fn client(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn round_robin_follows_weights_smoothly() {
        let s = Selector::build(&backends(&[1, 3]), Balance::Roundrobin, HashKey::Tuple, 7);
        let mut cursor = 0;
        let picks: Vec<usize> = (0..8)
            .map(|p| {
                let mut a = Attempt::default();
                s.pick(client(p), &mut a, &mut cursor, |_| true, |_| 0)
                    .unwrap()
            })
            .collect();
        assert_eq!(picks, vec![1, 0, 1, 1, 1, 0, 1, 1]);
    }

    #[test]
    fn maglev_retry_walks_to_another_backend_and_stops() {
        let s = Selector::build(
            &backends(&[1, 1, 1, 1]),
            Balance::Maglev,
            HashKey::Tuple,
            251,
        );
        let mut a = Attempt::default();
        let mut cursor = 0;
        let first = s
            .pick(client(5000), &mut a, &mut cursor, |_| true, |_| 0)
            .unwrap();
        let second = s
            .pick(client(5000), &mut a, &mut cursor, |_| true, |_| 0)
            .unwrap();
        let third = s
            .pick(client(5000), &mut a, &mut cursor, |_| true, |_| 0)
            .unwrap();
        assert!(first != second && second != third && first != third);
        assert_eq!(
            s.pick(client(5000), &mut a, &mut cursor, |_| true, |_| 0),
            None
        );
    }

    #[test]
    fn maglev_source_hash_ignores_port_and_skips_down() {
        let s = Selector::build(&backends(&[1, 1, 1]), Balance::Maglev, HashKey::Source, 251);
        let pick = |port, down: Option<usize>| {
            let mut a = Attempt::default();
            s.pick(client(port), &mut a, &mut 0, |i| Some(i) != down, |_| 0)
        };
        let a = pick(1000, None).unwrap();
        assert_eq!(pick(2000, None), Some(a));
        let b = pick(1000, Some(a)).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn leastconn_prefers_the_idle_backend() {
        let s = Selector::build(&backends(&[1, 1, 1]), Balance::Leastconn, HashKey::Tuple, 7);
        let loads = [5u32, 0, 3];
        let mut a = Attempt::default();
        let p = s.pick(client(1), &mut a, &mut 0, |_| true, |i| loads[i]);
        assert_eq!(p, Some(1));
        let p = s.pick(client(1), &mut a, &mut 0, |_| true, |i| loads[i]);
        assert_eq!(p, Some(2), "the retry takes the next least loaded");
    }

    #[test]
    fn no_backends_means_no_pick() {
        for balance in [Balance::Maglev, Balance::Roundrobin, Balance::Leastconn] {
            let s = Selector::build(&[], balance, HashKey::Tuple, 7);
            assert_eq!(
                s.pick(client(1), &mut Attempt::default(), &mut 0, |_| true, |_| 0),
                None
            );
        }
    }

    #[test]
    fn nothing_up_means_no_pick() {
        let s = Selector::build(&backends(&[1, 1]), Balance::Roundrobin, HashKey::Tuple, 7);
        let mut a = Attempt::default();
        assert_eq!(s.pick(client(1), &mut a, &mut 0, |_| false, |_| 0), None);
    }
}
