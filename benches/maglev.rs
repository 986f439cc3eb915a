//! Maglev table build (N backends, M = 65537) and lookup, plus a full pick.
//! Run: `cargo bench --bench maglev`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice::balance::maglev::{Entry, Table};
use sluice::balance::{hash, Attempt, Selector};
use sluice::config::{BackendConfig, Balance, HashKey};
use std::hint::black_box;
use std::net::SocketAddr;

fn names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.{}.{}.{}:8080", i / 65536, (i / 256) % 256, i % 256))
        .collect()
}

fn build(c: &mut Criterion) {
    let mut g = c.benchmark_group("maglev_build_m65537");
    for n in [10usize, 100, 1000] {
        let k = names(n);
        let entries: Vec<Entry> = k
            .iter()
            .map(|s| Entry {
                key: s.as_bytes(),
                weight: 1,
            })
            .collect();
        g.bench_with_input(BenchmarkId::from_parameter(n), &entries, |b, e| {
            b.iter(|| Table::build(black_box(e), 65537))
        });
    }
    g.finish();
}

fn lookup(c: &mut Criterion) {
    let k = names(100);
    let entries: Vec<Entry> = k
        .iter()
        .map(|s| Entry {
            key: s.as_bytes(),
            weight: 1,
        })
        .collect();
    let table = Table::build(&entries, 65537);
    let clients: Vec<SocketAddr> = (0..1024u32)
        .map(|i| SocketAddr::from(([127, 0, (i >> 8) as u8, i as u8], 40000 + i as u16)))
        .collect();
    let mut g = c.benchmark_group("maglev_lookup");
    g.throughput(Throughput::Elements(clients.len() as u64));
    g.bench_function("hash_tuple_and_lookup", |b| {
        b.iter(|| {
            let mut acc = 0usize;
            for &a in &clients {
                acc ^= table.lookup(hash::hash_tuple(black_box(a)));
            }
            acc
        })
    });
    let backends: Vec<BackendConfig> = (0..100)
        .map(|i| BackendConfig {
            addr: SocketAddr::from(([10, 0, 0, i as u8], 8080)),
            weight: 1,
        })
        .collect();
    let sel = Selector::build(&backends, Balance::Maglev, HashKey::Tuple, 65537);
    g.bench_function("selector_pick", |b| {
        b.iter(|| {
            let mut acc = 0usize;
            let mut cursor = 0;
            for &a in &clients {
                let mut at = Attempt::default();
                acc ^= sel
                    .pick(black_box(a), &mut at, &mut cursor, |_| true, |_| 0)
                    .unwrap_or(0);
            }
            acc
        })
    });
    g.finish();
}

criterion_group!(benches, build, lookup);
criterion_main!(benches);
