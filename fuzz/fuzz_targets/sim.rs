//! One simulation run per input, its seed the input's first eight bytes (little
//! endian): the shard core under a seeded network and scripted peers, with the
//! simulation's oracle (see `sluice::dataplane::reactor::sim`). A failure prints its
//! seed; `SIM_SEED=<seed> cargo test --lib sim_replay` replays it outside the fuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut seed = [0u8; 8];
    let n = data.len().min(8);
    seed[..n].copy_from_slice(&data[..n]);
    if let Err(f) = sluice::dataplane::reactor::sim::run_seed(u64::from_le_bytes(seed)) {
        panic!("{f}");
    }
});
