//! A full Marathon refresh for 1,000 real apps with 10 synthetic tasks each: parse and
//! translate the body, merge with static services, build the snapshot (selectors,
//! tables; listening sockets re-used after the first build).
//! Run: `cargo bench --bench marathon`.

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use sluice::config::{Config, MarathonConfig};
use sluice::control::Registry;
use sluice::marathon::apps::{translate, HealthMemory, Options};
use std::hint::black_box;

fn body() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/marathon/apps_1000_real.json"
    );
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    for (i, app) in v["apps"].as_array_mut().unwrap().iter_mut().enumerate() {
        let tasks: Vec<Value> = (0..10)
            .map(|k| {
                json!({"id": format!("t{i}.{k}"), "host": format!("10.3.{}.{}", i % 250, k + 1),
                       "ports": [31000, 31001, 31002, 31003], "state": "TASK_RUNNING",
                       "healthCheckResults": [{"alive": true}]})
            })
            .collect();
        app["tasks"] = Value::Array(tasks);
    }
    serde_json::to_vec(&v).unwrap()
}

fn refresh(c: &mut Criterion) {
    let body = body();
    let m = MarathonConfig {
        group: "*".into(),
        bind_address: "127.0.0.1".parse().unwrap(),
        ..MarathonConfig::default()
    };
    let opts = Options {
        group: m.group.clone(),
        bind_address: m.bind_address,
        vip_network: m.vip_cidr,
        health_check: true,
    };
    let base = Config {
        server: Default::default(),
        admin: Default::default(),
        http: Default::default(),
        https: None,
        https_proxy: Default::default(),
        tls: Default::default(),
        anycast: Default::default(),
        acme: None,
        marathon: Some(m),
        origin: Default::default(),
        services: Vec::new(),
    };
    let mut registry = Registry::new(1);
    let mut health = HealthMemory::new();
    c.bench_function("marathon_translate_1000_apps", |b| {
        b.iter(|| translate(black_box(&body), &opts, &mut health).unwrap())
    });
    c.bench_function("marathon_full_refresh_1000_apps", |b| {
        b.iter(|| {
            let t = translate(black_box(&body), &opts, &mut health).unwrap();
            let mut cfg = base.clone();
            cfg.services = sluice::control::merge_services(&[], &t).0;
            registry.build_lenient(&cfg).0.services.len()
        })
    });
}

criterion_group!(benches, refresh);
criterion_main!(benches);
