//! The data plane: one shard thread per core, each with its own event loop (io_uring or
//! epoll), its own listening sockets and its own connections. Shards never block and
//! never take a lock; they learn about configuration changes by checking one generation
//! number per loop turn.

mod flow;
mod http;
mod keys;
mod link;
pub mod reactor;
mod shard;
mod tls;

use crate::balance::Attempt;
use crate::config::IoKind;
use crate::snapshot::{clock_ms, Published, Service, Snapshot};
use crate::stats::{PerShard, ShardCounters};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;

/// How long a backend that refused or timed out a connect is avoided.
pub const BACKEND_DOWN_MS: u64 = 5_000;
/// Bytes a recv/send buffer holds.
pub const BUF_BYTES: usize = 32 * 1024;

/// Which event loop the shards run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Uring,
    Epoll,
}

/// Decide the I/O backend: `auto` probes io_uring and falls back to epoll, saying why.
pub fn choose(io: IoKind) -> anyhow::Result<Backend> {
    match io {
        IoKind::Epoll => Ok(Backend::Epoll),
        IoKind::Uring => match crate::io::uring::probe() {
            Ok(()) => Ok(Backend::Uring),
            Err(e) => anyhow::bail!("io = \"uring\" but io_uring cannot be set up: {e}"),
        },
        IoKind::Auto => match crate::io::uring::probe() {
            Ok(()) => Ok(Backend::Uring),
            Err(e) => {
                tracing::warn!(error = %e, "io_uring unavailable, using epoll");
                Ok(Backend::Epoll)
            }
        },
    }
}

/// Start `workers` shard threads, each pinned to a core.
pub fn spawn(
    published: Arc<Published>,
    counters: Arc<PerShard<ShardCounters>>,
    workers: usize,
    io: IoKind,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let backend = choose(io)?;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    tracing::info!(workers, io = ?backend, cores = cores.len(), "starting shards");
    let mut handles = Vec::with_capacity(workers);
    for id in 0..workers {
        let ctx = ShardCtx::new(id, workers, Arc::clone(&published), Arc::clone(&counters));
        let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        let h = std::thread::Builder::new()
            .name(format!("sluice-shard-{id}"))
            .spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(c);
                }
                let result = match backend {
                    Backend::Uring => reactor::uring::Uring::new(ctx.conn_limit)
                        .and_then(|r| shard::Shard::new(ctx, r).run()),
                    Backend::Epoll => {
                        reactor::epoll::Epoll::new().and_then(|r| shard::Shard::new(ctx, r).run())
                    }
                };
                if let Err(e) = result {
                    tracing::error!(shard = id, error = %e, "shard stopped on error");
                }
            })?;
        handles.push(h);
    }
    Ok(handles)
}

/// What every shard needs whatever its event loop: the current snapshot, the clock,
/// its counters and its limits.
pub struct ShardCtx {
    pub id: usize,
    published: Arc<Published>,
    pub snapshot: Arc<Snapshot>,
    generation: u64,
    /// The last `Published::rearms` acted on.
    rearms: u64,
    pub now_ms: u64,
    pub counters: Arc<PerShard<ShardCounters>>,
    /// This shard's share of `max_connections`.
    pub conn_limit: usize,
    /// When draining began (process clock), once the draining snapshot arrived.
    pub draining_since_ms: Option<u64>,
    /// Accepting is paused until then (out of descriptors).
    accept_paused_until_ms: std::cell::Cell<Option<u64>>,
    /// Refusals at `max_connections`, logged at most every [`link::QUIET_MS`].
    refusal_log: Throttle,
    /// Accept pauses, the same.
    pause_log: Throttle,
}

/// A log line due at most once per period: counts the events between lines, so each
/// line can say how many it stands for.
#[derive(Debug, Default)]
pub struct Throttle {
    logged_ms: std::cell::Cell<Option<u64>>,
    since: std::cell::Cell<u64>,
}

impl Throttle {
    /// One more event at `now_ms`. `Some(n)` when a line is due, `n` the events since
    /// the last line, this one included.
    pub fn hit(&self, now_ms: u64, period_ms: u64) -> Option<u64> {
        let n = self.since.get() + 1;
        let due = self
            .logged_ms
            .get()
            .map_or(true, |t| now_ms >= t + period_ms);
        if !due {
            self.since.set(n);
            return None;
        }
        self.logged_ms.set(Some(now_ms));
        self.since.set(0);
        Some(n)
    }
}

/// Shard `id`'s share of `max` connections over `workers` shards: the shares add up
/// to `max` exactly, the first `max % workers` shards taking one more.
fn share(max: usize, workers: usize, id: usize) -> usize {
    let workers = workers.max(1);
    max / workers + usize::from(id < max % workers)
}

impl ShardCtx {
    fn new(
        id: usize,
        workers: usize,
        published: Arc<Published>,
        counters: Arc<PerShard<ShardCounters>>,
    ) -> Self {
        let snapshot = published.load();
        let generation = snapshot.generation;
        let rearms = published.rearms();
        let conn_limit = share(snapshot.server.max_connections as usize, workers, id);
        ShardCtx {
            id,
            published,
            snapshot,
            generation,
            rearms,
            now_ms: clock_ms(),
            counters,
            conn_limit,
            draining_since_ms: None,
            accept_paused_until_ms: std::cell::Cell::new(None),
            refusal_log: Throttle::default(),
            pause_log: Throttle::default(),
        }
    }

    /// Advance the clock (the reactor's); called once per loop turn.
    #[inline]
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// Pick up a newer snapshot if one was published; true when it changed.
    #[inline]
    /// Whether the control thread asked for the accepts to be re-armed since the
    /// last call.
    pub fn rearm_due(&mut self) -> bool {
        let r = self.published.rearms();
        std::mem::replace(&mut self.rearms, r) != r
    }

    pub fn refresh(&mut self) -> bool {
        let g = self.published.generation();
        if g == self.generation {
            return false;
        }
        self.snapshot = self.published.load();
        self.generation = self.snapshot.generation;
        if self.snapshot.draining && self.draining_since_ms.is_none() {
            self.draining_since_ms = Some(self.now_ms);
        }
        true
    }

    /// Past the shutdown grace period: close whatever is left.
    pub fn grace_over(&self) -> bool {
        self.draining_since_ms
            .is_some_and(|t| self.now_ms >= t + self.snapshot.server.shutdown_grace_ms)
    }

    #[inline]
    pub fn stats(&self) -> &ShardCounters {
        self.counters.shard(self.id)
    }

    /// The next backend to try for a client of `svc`, avoiding backends marked down.
    /// When every backend is marked down the marks are ignored: one of them may be back.
    pub fn pick(&self, svc: &Service, client: SocketAddr, attempt: &mut Attempt) -> Option<usize> {
        self.pick_with(svc, client, attempt, true)
    }

    /// As [`ShardCtx::pick`], but a backend marked down is never picked: HTTP answers
    /// 503 at once while every backend is down, as HAProxy does.
    pub fn pick_live(
        &self,
        svc: &Service,
        client: SocketAddr,
        attempt: &mut Attempt,
    ) -> Option<usize> {
        self.pick_with(svc, client, attempt, false)
    }

    fn pick_with(
        &self,
        svc: &Service,
        client: SocketAddr,
        attempt: &mut Attempt,
        all_down_retries: bool,
    ) -> Option<usize> {
        let now = self.now_ms;
        let cursor = svc.cursors.shard(self.id);
        let mut c = cursor.load(Relaxed);
        let load = |i: usize| svc.backends[i].counters.active();
        // Draining backends take no new connection, nor those their checks (or a hand)
        // took out; among the rest, those a failed connect marked down are skipped
        // unless all are (then one of them may be back). One atomic load per backend.
        let open = |i: usize| !svc.draining[i] && svc.backends[i].health.look().open();
        let up = |i: usize| !svc.draining[i] && svc.backends[i].is_up(now);
        let all_down = all_down_retries && attempt.tries() == 0 && !(0..svc.backends.len()).any(up);
        let picked = if all_down {
            svc.selector.pick(client, attempt, &mut c, open, load)
        } else {
            svc.selector.pick(client, attempt, &mut c, up, load)
        };
        cursor.store(c, Relaxed);
        picked
    }

    /// Mark backend `i` of `svc` down after a failed connect: avoided by every service
    /// naming the address for [`BACKEND_DOWN_MS`]. The health thread logs the change
    /// (once per episode).
    pub fn mark_down(&self, svc: &Service, i: usize, timed_out: bool) {
        let cause = if timed_out {
            crate::health::Passive::TimedOut
        } else {
            crate::health::Passive::Refused
        };
        svc.backends[i].mark_down(self.now_ms, self.now_ms + BACKEND_DOWN_MS, cause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The publishing thread stores the generation, then the snapshot, and may be
    /// descheduled between the two: a shard turn in that gap must not take the old
    /// snapshot for the new one, or it would route by it (a backend the stats show
    /// draining still given new connections) until the next publication.
    #[test]
    fn a_turn_between_the_two_stores_of_a_publication_takes_the_snapshot_on_the_next() {
        let cfg = |backend: &str| {
            crate::config::parse(&format!(
                "[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{backend}\"]\n"
            ))
            .expect("valid config")
        };
        let mut registry = crate::control::Registry::new(1);
        let first = registry.build(&cfg("127.0.0.1:9")).expect("builds");
        let published = Arc::new(Published::new(first));
        let mut ctx = ShardCtx::new(0, 1, Arc::clone(&published), Arc::new(PerShard::new(1)));
        let next = registry.build(&cfg("127.0.0.1:10")).expect("builds");
        let want = next.generation;
        assert_ne!(want, ctx.snapshot.generation);

        // Whatever a reader of the snapshot (the stats) sees, a shard turn taken then
        // routes by the same, in the gap and after it.
        let second_half = published.publish_in_halves(next);
        ctx.refresh();
        let stats_see = published.load().generation;
        assert_eq!(ctx.snapshot.generation, stats_see, "in the gap");
        second_half();
        ctx.refresh();
        assert_eq!(published.load().generation, want);
        assert_eq!(ctx.snapshot.generation, want, "after it");
        assert_eq!(ctx.snapshot.services[0].backends[0].addr.port(), 10);
        assert!(!ctx.refresh(), "and then has nothing more to take");
    }

    #[test]
    fn shares_of_max_connections_add_up_to_it() {
        let shares = |max, workers| {
            (0..workers)
                .map(|i| share(max, workers, i))
                .collect::<Vec<_>>()
        };
        assert_eq!(shares(3, 2), [2, 1]);
        assert_eq!(shares(4, 2), [2, 2]);
        assert_eq!(shares(1, 4), [1, 0, 0, 0]);
        assert_eq!(shares(100_000, 3), [33_334, 33_333, 33_333]);
        for max in 1..50 {
            for workers in 1..9 {
                let s = shares(max, workers);
                assert_eq!(s.iter().sum::<usize>(), max);
                assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
            }
        }
    }

    #[test]
    fn a_throttled_line_counts_the_events_it_stands_for() {
        let t = Throttle::default();
        assert_eq!(t.hit(1_000, 10_000), Some(1), "the first is logged");
        let quiet: Vec<_> = (1..=99).map(|i| t.hit(1_000 + i * 100, 10_000)).collect();
        assert!(
            quiet.iter().all(Option::is_none),
            "ten a second, for ten seconds"
        );
        assert_eq!(t.hit(11_000, 10_000), Some(100));
        assert_eq!(t.hit(11_001, 10_000), None);
        assert_eq!(t.hit(30_000, 10_000), Some(2));
    }
}
