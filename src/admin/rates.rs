//! The admin side's memory of the last five minutes. A sampler thread reads the
//! counters once a second and keeps, per service of the published snapshot: the last
//! second's session rates (the service's and each server's), the highest rates and
//! session counts it has seen, and a ring of
//! [`SECONDS`] samples (sessions per second; for HTTP, that second's p99 response
//! time) for the page's charts.
//!
//! Bounded: one fixed ring per service, allocated when the service first appears and
//! dropped when it leaves the snapshot. Memory follows the number of services, never
//! the uptime. The shards are not involved: the sampler reads their counters and the
//! HdrHistograms they publish each second.

use crate::snapshot::{clock_ms, Backend, Published, Service, Snapshot};
use crate::stats::{PerShard, ServiceCounters};
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Samples kept per service: five minutes of seconds.
pub const SECONDS: usize = 300;

/// One second of one service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// When the second ended, in s on the process clock.
    pub at_s: u32,
    /// Client sessions accepted in that second.
    pub sessions: u32,
    /// HTTP: the p99 response time of the responses that ended in that second (µs);
    /// [`Sample::NO_RESPONSE`] when none did.
    pub p99_us: u32,
}

impl Sample {
    pub const NO_RESPONSE: u32 = u32::MAX;

    pub fn p99_us(&self) -> Option<u32> {
        (self.p99_us != Self::NO_RESPONSE).then_some(self.p99_us)
    }
}

/// The last [`SECONDS`] samples, in a buffer allocated once.
#[derive(Debug)]
pub struct Ring {
    buf: Box<[Sample]>,
    /// Where the next sample goes.
    next: usize,
    len: usize,
}

impl Default for Ring {
    fn default() -> Self {
        Ring {
            buf: vec![Sample::default(); SECONDS].into_boxed_slice(),
            next: 0,
            len: 0,
        }
    }
}

impl Ring {
    pub fn push(&mut self, s: Sample) {
        self.buf[self.next] = s;
        self.next = (self.next + 1) % SECONDS;
        self.len = (self.len + 1).min(SECONDS);
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Sample> {
        let start = (self.next + SECONDS - self.len) % SECONDS;
        (0..self.len).map(move |i| &self.buf[(start + i) % SECONDS])
    }
}

/// A rate per second: the last second's, and the highest seen.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rate {
    total: u64,
    pub last: u64,
    pub max: u64,
}

impl Rate {
    fn update(&mut self, total: u64) {
        // Counters only grow; a smaller total would be another set of counters.
        self.last = total.saturating_sub(self.total);
        self.max = self.max.max(self.last);
        self.total = total;
    }
}

/// What the sampler knows of one server of one service.
#[derive(Debug)]
pub struct ServerTrack {
    /// Held so that the key (its address in memory) stays this server's.
    _backend: Arc<Backend>,
    pub rate: Rate,
    /// The most sessions seen open at once (at a sampled second).
    pub scur_max: i64,
}

/// What the sampler knows of one service.
#[derive(Debug)]
pub struct ServiceTrack {
    /// Held so that the key (its address in memory) stays this service's.
    _counters: Arc<PerShard<ServiceCounters>>,
    /// Sessions accepted (the FRONTEND row).
    pub rate: Rate,
    pub scur_max: i64,
    /// Connections made to its servers (the BACKEND row).
    pub backend_rate: Rate,
    pub backend_scur_max: i64,
    /// Each shard's response-time HdrHistogram as last seen: cumulative, so the
    /// difference from the one a shard publishes next is that second's responses.
    hdr: Box<[Option<Arc<Histogram<u32>>>]>,
    pub ring: Ring,
    servers: HashMap<usize, ServerTrack>,
}

impl ServiceTrack {
    pub fn server(&self, b: &Arc<Backend>) -> Option<&ServerTrack> {
        self.servers.get(&(Arc::as_ptr(b) as usize))
    }
}

/// Every service's track, keyed by its counters (which outlive reloads).
#[derive(Debug, Default)]
pub struct Tracks {
    services: HashMap<usize, ServiceTrack>,
}

impl Tracks {
    pub fn service(&self, svc: &Service) -> Option<&ServiceTrack> {
        self.services.get(&(Arc::as_ptr(&svc.counters) as usize))
    }

    /// Take one sample of every service in `snap`; forget the services it no longer has.
    pub fn sample(&mut self, snap: &Snapshot, now_ms: u64) {
        let mut alive = std::collections::HashSet::with_capacity(snap.services.len());
        for (k, svc) in snap.services.iter().enumerate() {
            let key = Arc::as_ptr(&svc.counters) as usize;
            alive.insert(key);
            let track = self.services.entry(key).or_insert_with(|| ServiceTrack {
                _counters: Arc::clone(&svc.counters),
                rate: Rate::default(),
                scur_max: 0,
                backend_rate: Rate::default(),
                backend_scur_max: 0,
                hdr: vec![None; svc.counters.iter().count()].into_boxed_slice(),
                ring: Ring::default(),
                servers: HashMap::new(),
            });
            sample_service(track, &snap.services[k], now_ms);
        }
        self.services.retain(|k, _| alive.contains(k));
    }
}

fn sample_service(track: &mut ServiceTrack, svc: &Service, now_ms: u64) {
    let c = &svc.counters;
    track.rate.update(c.sum(|s| s.accepted.get()));
    let scur = c.iter().map(|s| s.active.get()).sum::<i64>().max(0);
    track.scur_max = track.scur_max.max(scur);
    let (mut connections, mut active) = (0, 0);
    let mut alive = std::collections::HashSet::with_capacity(svc.backends.len());
    for b in svc.backends.iter() {
        let key = Arc::as_ptr(b) as usize;
        alive.insert(key);
        let server = track.servers.entry(key).or_insert_with(|| ServerTrack {
            _backend: Arc::clone(b),
            rate: Rate::default(),
            scur_max: 0,
        });
        let total = b.counters.sum(|x| x.connections.get());
        server.rate.update(total);
        let scur = i64::from(b.counters.active());
        server.scur_max = server.scur_max.max(scur);
        connections += total;
        active += scur;
    }
    track.servers.retain(|k, _| alive.contains(k));
    track.backend_rate.update(connections);
    track.backend_scur_max = track.backend_scur_max.max(active);
    let p99_us = second_p99_us(&mut track.hdr, c).map_or(Sample::NO_RESPONSE, |us| {
        u32::try_from(us).unwrap_or(Sample::NO_RESPONSE - 1)
    });
    track.ring.push(Sample {
        at_s: (now_ms / 1000) as u32,
        sessions: u32::try_from(track.rate.last).unwrap_or(u32::MAX),
        p99_us,
    });
}

/// The p99 (µs) of the responses recorded since the last call: each shard's newly
/// published histogram minus the one seen before. `None` when no shard published.
fn second_p99_us(
    seen: &mut [Option<Arc<Histogram<u32>>>],
    counters: &PerShard<ServiceCounters>,
) -> Option<u64> {
    let mut second: Option<Histogram<u32>> = None;
    for (slot, shard) in seen.iter_mut().zip(counters.iter()) {
        let Some(now) = shard.response_hdr.load_full() else {
            continue;
        };
        if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, &now)) {
            continue;
        }
        let mut new = (*now).clone();
        let fresh = match slot.as_deref() {
            Some(before) => new.subtract(before).is_ok(),
            None => true,
        };
        if fresh {
            let _ = second
                .get_or_insert_with(crate::stats::latency::histogram)
                .add(&new);
        }
        *slot = Some(now);
    }
    second
        .filter(|h| !h.is_empty())
        .map(|h| h.value_at_quantile(0.99))
}

/// The sampler's results, shared with the pages.
#[derive(Debug, Default)]
pub struct History {
    tracks: Mutex<Tracks>,
}

impl History {
    /// The tracks, for the length of a page's rendering.
    pub fn read(&self) -> MutexGuard<'_, Tracks> {
        self.tracks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Start the once-a-second sampler.
pub fn spawn(published: Arc<Published>) -> std::io::Result<Arc<History>> {
    let history = Arc::new(History::default());
    let h = Arc::clone(&history);
    std::thread::Builder::new()
        .name("sluice-rates".into())
        .spawn(move || {
            let mut next = Instant::now();
            loop {
                // Ticks a second apart whatever a sample took; after a stall, start over.
                next += Duration::from_secs(1);
                let now = Instant::now();
                if next <= now {
                    next = now + Duration::from_secs(1);
                }
                std::thread::sleep(next - now);
                let snap = published.load();
                h.read().sample(&snap, clock_ms());
            }
        })?;
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::testkit;

    #[test]
    fn the_ring_keeps_the_last_300_seconds_oldest_first() {
        let mut r = Ring::default();
        for at_s in 0..1000u32 {
            r.push(Sample {
                at_s,
                sessions: at_s,
                p99_us: 0,
            });
        }
        assert_eq!(r.iter().count(), SECONDS);
        let kept: Vec<u32> = r.iter().map(|s| s.at_s).collect();
        assert_eq!(kept, (700..1000).collect::<Vec<u32>>());
    }

    #[test]
    fn rates_are_per_second_differences_and_remember_their_highest() {
        let snap = testkit::two_services();
        let mut t = Tracks::default();
        t.sample(&snap, 1_000);
        let web = &snap.services[0];
        web.counters.shard(0).accepted.add(7);
        t.sample(&snap, 2_000);
        web.counters.shard(1).accepted.add(2);
        t.sample(&snap, 3_000);
        let track = t.service(web).unwrap();
        assert_eq!(track.rate.last, 2);
        assert_eq!(track.rate.max, 300, "the first second counts from zero");
        let seconds: Vec<(u32, u32)> = track.ring.iter().map(|s| (s.at_s, s.sessions)).collect();
        assert_eq!(seconds, [(1, 300), (2, 7), (3, 2)]);
    }

    #[test]
    fn p99_is_of_the_responses_of_that_second_alone() {
        let snap = testkit::two_services();
        let web = &snap.services[0];
        let publish = |h: &Histogram<u32>| {
            web.counters
                .shard(0)
                .response_hdr
                .store(Some(Arc::new(h.clone())))
        };
        let mut h = crate::stats::latency::histogram();
        let mut t = Tracks::default();
        h.record_n(1_000, 100).unwrap();
        publish(&h);
        t.sample(&snap, 1_000);
        t.sample(&snap, 2_000);
        h.record_n(50_000, 100).unwrap();
        publish(&h);
        t.sample(&snap, 3_000);
        let p99: Vec<Option<u32>> = t
            .service(web)
            .unwrap()
            .ring
            .iter()
            .map(Sample::p99_us)
            .collect();
        assert_eq!(p99.len(), 3);
        assert!(p99[0].unwrap().abs_diff(1_000) <= 10, "{p99:?}");
        assert_eq!(p99[1], None, "no response in the second second");
        assert!(p99[2].unwrap().abs_diff(50_000) <= 500, "{p99:?}");
    }

    #[test]
    fn services_that_leave_the_snapshot_are_forgotten() {
        let snap = testkit::two_services();
        let mut t = Tracks::default();
        for s in 0..400 {
            t.sample(&snap, s * 1000);
        }
        assert_eq!(t.services.len(), 2);
        assert_eq!(
            t.service(&snap.services[0]).unwrap().ring.iter().count(),
            SECONDS
        );
        let another = testkit::two_services();
        t.sample(&another, 401_000);
        assert_eq!(
            t.services.len(),
            2,
            "the other snapshot's services replace them"
        );
        assert!(t.service(&snap.services[0]).is_none());
    }
}
