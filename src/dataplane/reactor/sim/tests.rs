//! The simulation in `cargo test`: a bounded number of seeds, a replay of one, and
//! a check that a seed replays exactly.

use super::run::{run_seed, Summary};
use std::time::Instant;

/// Seeds run by `cargo test` (about 20 s in a debug build); `SIM_SEEDS` for more.
pub const CI_SEEDS: u64 = 1_500;

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn sim_seeds() {
    let n = env("SIM_SEEDS").unwrap_or(CI_SEEDS);
    let base = env("SIM_BASE").unwrap_or(0);
    let started = Instant::now();
    let mut total = Summary::default();
    let mut slowest = (0, 0.0);
    for seed in base..base + n {
        let t = Instant::now();
        let r = run_seed(seed);
        let s = t.elapsed().as_secs_f64();
        if s > slowest.1 {
            slowest = (seed, s);
        }
        match r {
            Ok(s) => {
                total.virtual_ms += s.virtual_ms;
                total.turns += s.turns;
                total.requests += s.requests;
                total.streams += s.streams;
                total.sockets += s.sockets;
            }
            Err(f) => panic!("after {} seeds:\n{f}", seed - base + 1),
        }
    }
    eprintln!(
        "sim: {n} seeds from {base} in {:.1} s (slowest: {} in {:.2} s): {} requests, {} L4 streams, {} sockets, {} loop turns, {:.0} s of virtual time",
        started.elapsed().as_secs_f64(),
        slowest.0,
        slowest.1,
        total.requests,
        total.streams,
        total.sockets,
        total.turns,
        total.virtual_ms as f64 / 1000.0
    );
}

/// `SIM_SEED=<n>`: run that seed alone (with `SIM_TRACE=1`, every event).
#[test]
fn sim_replay() {
    let Some(seed) = env("SIM_SEED") else {
        return;
    };
    match run_seed(seed) {
        Ok(s) => eprintln!("sim seed {seed}: passed ({s:?})"),
        Err(f) => panic!("{f}"),
    }
}

/// A seed replays exactly: the same turns, the same virtual time, the same sockets.
#[test]
fn sim_runs_replay_exactly() {
    for seed in [3, 17] {
        let a = run_seed(seed)
            .map_err(|f| f.to_string())
            .map(|s| (s.turns, s.virtual_ms, s.sockets));
        let b = run_seed(seed)
            .map_err(|f| f.to_string())
            .map(|s| (s.turns, s.virtual_ms, s.sockets));
        assert_eq!(a, b, "seed {seed}");
    }
}
