//! HTTP response times per service in HdrHistograms. A shard records into histograms
//! of its own (no atomics, no lock) and, once a second, publishes a copy of each that
//! changed into its slot of the service's counters, where the admin port reads and
//! merges them for percentiles.

use super::{PerShard, ServiceCounters};
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::sync::Arc;

/// Microseconds; one minute at most; two significant figures (1 % resolution).
const HIGHEST_US: u64 = 60_000_000;
const SIGFIG: u8 = 2;

/// A new, empty histogram of the shape every shard and the admin port use.
pub fn histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, HIGHEST_US, SIGFIG).expect("valid bounds")
}

struct Local {
    counters: Arc<PerShard<ServiceCounters>>,
    hist: Histogram<u32>,
    dirty: bool,
}

/// One shard's histograms, keyed by the service's counters (which outlive reloads).
#[derive(Default)]
pub struct Latencies {
    by_service: HashMap<usize, Local>,
}

impl Latencies {
    pub fn record(&mut self, counters: &Arc<PerShard<ServiceCounters>>, us: u64) {
        let key = Arc::as_ptr(counters) as usize;
        let local = self.by_service.entry(key).or_insert_with(|| Local {
            counters: Arc::clone(counters),
            hist: histogram(),
            dirty: false,
        });
        local.hist.saturating_record(us.clamp(1, HIGHEST_US));
        local.dirty = true;
    }

    /// Publish the histograms that changed into shard `shard`'s slots; forget those of
    /// services no snapshot names any more.
    pub fn publish(&mut self, shard: usize) {
        self.by_service.retain(|_, l| {
            if l.dirty {
                l.dirty = false;
                l.counters
                    .shard(shard)
                    .response_hdr
                    .store(Some(Arc::new(l.hist.clone())));
            }
            Arc::strong_count(&l.counters) > 1
        });
    }
}
