//! Counters. Each shard writes only its own cache line of every counter set, so
//! counting never makes two cores share a line; readers sum over the shards.

use crossbeam::utils::CachePadded;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// One set of counters per shard.
#[derive(Debug)]
pub struct PerShard<T> {
    slots: Box<[CachePadded<T>]>,
}

impl<T: Default> PerShard<T> {
    pub fn new(shards: usize) -> Self {
        PerShard {
            slots: (0..shards.max(1))
                .map(|_| CachePadded::new(T::default()))
                .collect(),
        }
    }
}

impl<T> PerShard<T> {
    #[inline]
    pub fn shard(&self, shard: usize) -> &T {
        &self.slots[shard]
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|s| &**s)
    }
}

/// A counter written by one thread; `add` is a relaxed read-modify-write on a line
/// no other core writes.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A level (for example, active connections). A connection opens and closes on the same
/// shard, so each shard's own level never goes below zero.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct ServiceCounters {
    pub accepted: Counter,
    pub active: Gauge,
    /// Refused because `max_connections` was reached.
    pub refused_limit: Counter,
    /// Closed because no backend could be connected.
    pub no_backend: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
}

#[derive(Debug, Default)]
pub struct BackendCounters {
    pub connections: Counter,
    pub active: Gauge,
    pub connect_errors: Counter,
    pub connect_timeouts: Counter,
    /// Client → backend.
    pub bytes_in: Counter,
    /// Backend → client.
    pub bytes_out: Counter,
}

#[derive(Debug, Default)]
pub struct ShardCounters {
    pub accepts: Counter,
    pub accept_errors: Counter,
    /// Times accepting was paused for lack of file descriptors.
    pub accept_paused: Counter,
    pub spliced_flows: Counter,
    pub resets: Counter,
    pub idle_timeouts: Counter,
}

impl PerShard<ServiceCounters> {
    pub fn sum(&self, f: impl Fn(&ServiceCounters) -> u64) -> u64 {
        self.iter().map(f).sum()
    }
}

impl PerShard<BackendCounters> {
    pub fn sum(&self, f: impl Fn(&BackendCounters) -> u64) -> u64 {
        self.iter().map(f).sum()
    }

    /// Active connections to this backend over all shards.
    pub fn active(&self) -> u32 {
        self.iter().map(|c| c.active.get()).sum::<i64>().max(0) as u32
    }
}

impl PerShard<ShardCounters> {
    pub fn sum(&self, f: impl Fn(&ShardCounters) -> u64) -> u64 {
        self.iter().map(f).sum()
    }
}
