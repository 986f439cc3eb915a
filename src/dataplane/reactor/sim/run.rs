//! One run: the scenario's config parsed and built into a real snapshot and a real
//! shard core, driven by the simulated reactor until every client is done; then a
//! pause for sluice to let go of what it holds, a drain as at SIGTERM, and the
//! oracle's verdict.

use super::gen::generate;
use super::oracle;
use super::plan::Scenario;
use super::world::World;
use super::Sim;
use crate::control::Registry;
use crate::dataplane::shard::Shard;
use crate::dataplane::ShardCtx;
use crate::snapshot::Published;
use crate::stats::PerShard;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// Virtual time the clients may take before the run counts as stuck.
const HORIZON_MS: u64 = 60_000;
/// Loop turns at one instant of virtual time before the run counts as a livelock.
const SPIN_TURNS: u64 = 50_000;
/// After the clients are done: time for sluice to close what it holds for them (more
/// than its 2 s linger after an error answer).
const SETTLE_MS: u64 = 3_000;

/// A run the oracle rejected: what, when, and how to see it again.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub at_ms: u64,
    pub msg: String,
    pub others: Vec<String>,
    pub trace: String,
    pub sockets: String,
    pub config: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sim seed {} failed at {} ms: {}",
            self.seed, self.at_ms, self.msg
        )?;
        for o in self.others.iter().take(8) {
            writeln!(f, "  also: {o}")?;
        }
        writeln!(
            f,
            "replay: SIM_SEED={} cargo test --lib sim_replay -- --nocapture \
             (SIM_TRACE=1: every event; SIM_PLAN=1: the scenario)",
            self.seed
        )?;
        writeln!(f, "config:\n{}", self.config)?;
        writeln!(
            f,
            "sockets (id, side, local -> remote, closed at):\n{}",
            self.sockets
        )?;
        write!(f, "last events:\n{}", self.trace)
    }
}

/// What a run did, for the tests' totals.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub virtual_ms: u64,
    pub turns: u64,
    pub requests: usize,
    pub streams: usize,
    pub sockets: usize,
}

pub fn run_seed(seed: u64) -> Result<Summary, Box<Failure>> {
    run(generate(seed))
}

pub fn run(sc: Scenario) -> Result<Summary, Box<Failure>> {
    let seed = sc.seed;
    let text = sc.config();
    let setup = |msg: String| {
        Box::new(Failure {
            seed,
            at_ms: 0,
            msg,
            others: Vec::new(),
            trace: String::new(),
            sockets: String::new(),
            config: text.clone(),
        })
    };
    if std::env::var_os("SIM_PLAN").is_some() {
        eprintln!("{sc:#?}");
    }
    let config = crate::config::parse(&text).map_err(|e| setup(format!("config: {e:?}")))?;
    let mut registry = Registry::new(1);
    let snap = registry
        .build(&config)
        .map_err(|e| setup(format!("{e:?}")))?;
    let listen: Vec<(String, SocketAddr)> = snap
        .services
        .iter()
        .filter_map(|s| Some((s.config.name.clone(), s.local?)))
        .collect();
    let published = Arc::new(Published::new(snap));
    let ctx = ShardCtx::new(0, 1, Arc::clone(&published), Arc::new(PerShard::new(1)));
    let world = World::new(sc, &listen);
    let mut shard = Shard::new(ctx, Sim { world });
    shard.start();
    let mut h = Harness {
        shard,
        turns: 0,
        spin: 0,
        last_ms: 0,
    };
    while !h.world().clients_done() && h.now() <= HORIZON_MS {
        h.turn()?;
    }
    let done_ms = h.now();
    while h.now() < done_ms + SETTLE_MS {
        h.turn()?;
    }
    h.held_for_clients(done_ms);
    // SIGTERM: every connection ends, every socket is closed.
    published.publish(registry.draining(&published.load()));
    let grace = published.load().server.shutdown_grace_ms;
    let drain_ms = h.now();
    loop {
        if h.shard.turn().map_err(|e| setup(format!("turn: {e}")))? {
            break;
        }
        if h.now() > drain_ms + grace + 2_000 {
            let now = h.now();
            h.world_mut().rec.fail(now, "the drain never ended".into());
            break;
        }
    }
    h.leaks();
    let w = h.world_mut();
    oracle::check(w);
    let summary = Summary {
        virtual_ms: w.net.now_ms,
        turns: h.turns,
        requests: h.world().sc.reqs.len() - 1,
        streams: h.world().sc.l4.len() - 1,
        sockets: h.world().net.socks.len(),
    };
    match h.failure(seed, text) {
        Some(f) => Err(f),
        None => Ok(summary),
    }
}

struct Harness {
    shard: Shard<Sim>,
    turns: u64,
    spin: u64,
    last_ms: u64,
}

impl Harness {
    fn world(&self) -> &World {
        &self.shard.reactor().world
    }

    fn world_mut(&mut self) -> &mut World {
        &mut self.shard.reactor_mut().world
    }

    fn now(&self) -> u64 {
        self.world().net.now_ms
    }

    fn turn(&mut self) -> Result<(), Box<Failure>> {
        if let Err(e) = self.shard.turn() {
            let now = self.now();
            self.world_mut().rec.fail(now, format!("turn failed: {e}"));
        }
        self.turns += 1;
        let now = self.now();
        if now == self.last_ms {
            self.spin += 1;
        } else {
            self.spin = 0;
            self.last_ms = now;
        }
        if self.spin > SPIN_TURNS {
            self.world_mut().rec.fail(
                now,
                format!("livelock: {SPIN_TURNS} loop turns without time passing"),
            );
            // Stop at once: the verdict is in.
            let text = self.world().sc.config();
            return Err(self.failure(self.world().sc.seed, text).expect("a failure"));
        }
        Ok(())
    }

    /// Every connection of a client that is done is closed by sluice.
    fn held_for_clients(&mut self, done_ms: u64) {
        let w = self.world_mut();
        let socks = w
            .clients
            .iter()
            .map(|c| (c.sock, format!("client {}", c.plan.idx)))
            .chain(
                w.l4c
                    .iter()
                    .map(|c| (c.sock, format!("l4 client {}", c.plan.id))),
            );
        let mut open = Vec::new();
        for (s, who) in socks {
            let Some(core) = s.and_then(|s| w.net.socks[s as usize].peer) else {
                continue;
            };
            if w.net.socks[core as usize].closed_at.is_none() {
                open.push(format!(
                    "sluice still holds {who}'s connection (socket {core}) {SETTLE_MS} ms after the last client was done at {done_ms} ms"
                ));
            }
        }
        let now = w.net.now_ms;
        for o in open {
            w.rec.fail(now, o);
        }
    }

    /// After the drain, every socket the core had is closed.
    fn leaks(&mut self) {
        let w = self.world_mut();
        let now = w.net.now_ms;
        let open: Vec<String> = (0..w.net.socks.len())
            .filter(|&i| w.net.socks[i].core && w.net.socks[i].closed_at.is_none())
            .map(|i| {
                let s = &w.net.socks[i];
                format!(
                    "socket {i} ({} -> {}) never closed by sluice",
                    s.local, s.remote
                )
            })
            .collect();
        for o in open {
            w.rec.fail(now, o);
        }
        if w.net.listening() > 0 {
            w.rec.fail(now, "still listening after the drain".into());
        }
    }

    fn failure(&self, seed: u64, config: String) -> Option<Box<Failure>> {
        let w = self.world();
        let mut all = w.rec.failures.clone();
        all.sort_by_key(|(t, _)| *t);
        let (at_ms, msg) = all.first()?.clone();
        let tail = std::env::var("SIM_TAIL")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(80);
        let sockets = w
            .net
            .socks
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let side = if s.core { "sluice" } else { "world " };
                format!(
                    "  {i:>4} {side} {} -> {} {:?}\n",
                    s.local, s.remote, s.closed_at
                )
            })
            .collect();
        Some(Box::new(Failure {
            seed,
            at_ms,
            msg,
            others: all
                .iter()
                .skip(1)
                .map(|(t, m)| format!("{t} ms: {m}"))
                .collect(),
            trace: w.net.trace.tail(tail),
            sockets,
            config,
        }))
    }
}
