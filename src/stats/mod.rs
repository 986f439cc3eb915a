//! Counters. Each shard writes only its own cache line of every counter set, so
//! counting never makes two cores share a line; readers sum over the shards. The
//! control plane's counters and the shards' HdrHistograms of response times
//! (`latency.rs`) live here too: the shards and the control thread write them, the
//! admin port reads them, and none of the three needs the others' modules for that.

pub mod latency;
pub mod processes;
pub mod proxy;

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

/// A counter of a shard's own slot of a [`PerShard`] set: one thread writes it, so
/// `add` is a relaxed load and store — a plain add, without the locked instruction of
/// a read-modify-write, which cost a per cent of an L4 keep-alive request's CPU
/// (docs/benchmarks.md). Readers on other threads see each store whole. A counter
/// that several threads write is a [`SharedCounter`].
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
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

/// A counter any thread may write (the control plane's, the admin port's): a relaxed
/// read-modify-write.
#[derive(Debug, Default)]
pub struct SharedCounter(AtomicU64);

impl SharedCounter {
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

/// A level (for example, active connections) of a shard's own slot, written by that
/// shard alone (a plain add, as [`Counter`]). A connection opens and closes on the same
/// shard, so each shard's own level never goes below zero.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    #[inline]
    pub fn inc(&self) {
        self.0.store(self.0.load(Relaxed).wrapping_add(1), Relaxed);
    }
    #[inline]
    pub fn dec(&self) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(1), Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// Upper bounds (µs) of the latency histogram buckets; a last bucket holds the rest.
pub const LATENCY_BOUNDS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// A fixed-bucket latency histogram (Prometheus style), one per shard like every counter.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [Counter; LATENCY_BOUNDS_US.len() + 1],
    sum_us: Counter,
}

impl Histogram {
    #[inline]
    pub fn record(&self, us: u64) {
        let i = LATENCY_BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].inc();
        self.sum_us.add(us);
    }

    /// Per-bucket counts (not cumulative) and the sum, in µs.
    pub fn read(&self) -> ([u64; LATENCY_BOUNDS_US.len() + 1], u64) {
        (
            std::array::from_fn(|i| self.buckets[i].get()),
            self.sum_us.get(),
        )
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
    /// Connects tried on another backend after one failed (HAProxy's `wretr`), and
    /// HTTP requests sent again after a reused connection failed.
    pub retries: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    /// HTTP responses by class: `[0]` other, `[1]` 1xx … `[5]` 5xx.
    pub responses: [Counter; 6],
    /// TLS terminated on the service's own port (`tls = true`).
    pub tls: TlsCounters,
    /// HTTP: from a request head's arrival to its response's end.
    pub response_latency: Histogram,
    /// The same as an HdrHistogram (µs), published by the shard once a second.
    pub response_hdr: arc_swap::ArcSwapOption<hdrhistogram::Histogram<u32>>,
}

impl ServiceCounters {
    /// Count an HTTP response of `status`.
    #[inline]
    pub fn response(&self, status: u16) {
        let class = usize::from(status / 100);
        self.responses[if (1..=5).contains(&class) { class } else { 0 }].inc();
    }
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
    /// Time from picking this backend to the connection being established.
    pub connect_latency: Histogram,
    /// HTTP requests sent over a pooled (kept-alive) connection instead of a new one.
    pub reused: Counter,
}

#[derive(Debug, Default)]
pub struct ShardCounters {
    pub accepts: Counter,
    /// Clients refused because the shard held its share of `max_connections`, on any
    /// listener (the shared HTTP listener's have no service to be counted on).
    pub refused_limit: Counter,
    pub accept_errors: Counter,
    /// Times accepting was paused for lack of file descriptors.
    pub accept_paused: Counter,
    pub spliced_flows: Counter,
    pub resets: Counter,
    pub idle_timeouts: Counter,
    /// Connections closed at the end of their backend's drain time.
    pub drain_timeouts: Counter,
    /// sluice's own answers on the shared HTTP listener before a service was found
    /// (404 no route, 400, 408, 431…), by status class as `ServiceCounters::responses`.
    pub http_front_responses: [Counter; 6],
    pub tls: TlsCounters,
    pub proxy: proxy::ProxyCounters,
    /// Connections open on the shard.
    pub connections: Gauge,
    /// Completions (io_uring) or events (epoll) handled in the last loop turn.
    pub last_batch: AtomicU64,
}

/// TLS handshakes on the shard, by outcome.
#[derive(Debug, Default)]
pub struct TlsCounters {
    /// Completed handshakes: `[0]` full, `[1]` resumed.
    pub handshakes: [Counter; 2],
    /// Completed handshakes by version: `[0]` TLS 1.2, `[1]` TLS 1.3.
    pub versions: [Counter; 2],
    /// Failed handshakes by [`TlsFailure`] (as `usize`).
    pub failures: [Counter; TlsFailure::COUNT],
    /// Connections of `[https] listen` passed through untouched by SNI.
    pub passthrough: Counter,
}

impl TlsCounters {
    pub fn handshake(&self, resumed: bool, v13: bool) {
        self.handshakes[usize::from(resumed)].inc();
        self.versions[usize::from(v13)].inc();
    }

    pub fn failure(&self, why: TlsFailure) {
        self.failures[why as usize].inc();
    }
}

/// Why a TLS handshake (or a connection on a TLS port) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// Nothing the client can use: no certificate, or none whose key signs with a
    /// scheme (or fits a cipher suite) the client offers — an RSA-only client and an
    /// ECDSA certificate, say.
    NoCertificate,
    /// The client broke the protocol: a malformed or unexpected message, an oversized
    /// record, a renegotiation attempt, no version or cipher in common.
    Protocol,
    /// The client sent a fatal alert (it did not accept the certificate, say).
    Alert,
    /// The handshake did not finish within `[http] header_timeout_ms`.
    Timeout,
    /// The client closed (or reset) the connection before the handshake finished.
    Closed,
    /// The first bytes were not a TLS handshake (plain HTTP on a TLS port, say).
    NotTls,
}

impl TlsFailure {
    pub const COUNT: usize = 6;
    pub const ALL: [TlsFailure; TlsFailure::COUNT] = [
        TlsFailure::NoCertificate,
        TlsFailure::Protocol,
        TlsFailure::Alert,
        TlsFailure::Timeout,
        TlsFailure::Closed,
        TlsFailure::NotTls,
    ];

    /// The label on `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            TlsFailure::NoCertificate => "no_certificate",
            TlsFailure::Protocol => "protocol",
            TlsFailure::Alert => "alert",
            TlsFailure::Timeout => "timeout",
            TlsFailure::Closed => "closed",
            TlsFailure::NotTls => "not_tls",
        }
    }
}

/// Control-plane counters, shown on `/metrics` and the stats page. Written by the
/// control thread only.
#[derive(Debug, Default)]
pub struct ControlCounters {
    pub marathon_fetches: SharedCounter,
    pub marathon_failures: SharedCounter,
    /// Process-clock ms of the last good fetch (0: none yet).
    pub marathon_last_success_ms: AtomicU64,
    /// The last failed fetch: when (process-clock ms) and why. Written by the control
    /// thread, read by the admin thread; no shard comes near it.
    pub marathon_last_error: std::sync::Mutex<Option<(u64, String)>>,
    /// In the last good fetch: apps that gave a service or VIP, and their tasks.
    pub marathon_apps: AtomicU64,
    pub marathon_tasks: AtomicU64,
    /// Marathon services left out of what is published now: address or name already
    /// taken, a name HAProxy would refuse, access control sluice does not have
    /// (`marathon_conflicts` counts every time one was).
    pub marathon_left_out: AtomicU64,
    /// In the last good fetch: Marathon-LB labels sluice does not follow on the apps it
    /// serves, one per app and label.
    pub marathon_labels_ignored: AtomicU64,
    /// Services left out of what is published now: their address cannot be bound.
    pub unbound: AtomicU64,
    pub marathon_conflicts: SharedCounter,
    pub bind_failures: SharedCounter,
    /// Reloads (signal or admin) rejected: the previous configuration kept serving.
    pub reload_failures: SharedCounter,
    /// Written by the ACME thread.
    pub acme: std::sync::Arc<crate::acme::AcmeStats>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let h = Histogram::default();
        for us in [1, 100, 101, 999_999, 1_000_000, 5_000_000] {
            h.record(us);
        }
        let (counts, sum) = h.read();
        assert_eq!(counts[0], 2, "1 and 100 are ≤ 100 µs");
        assert_eq!(counts[1], 1, "101 is in (100, 250]");
        assert_eq!(counts[11], 2, "999,999 and 1,000,000 are in (250 ms, 1 s]");
        assert_eq!(counts[12], 1, "5 s is past the last bound");
        assert_eq!(sum, 1 + 100 + 101 + 999_999 + 1_000_000 + 5_000_000);
    }
}
