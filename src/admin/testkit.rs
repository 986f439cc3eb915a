//! Snapshots with known counters for the admin pages' unit tests: built by the real
//! `Registry` (no socket is bound: the services have no `listen`), then counted into
//! by hand as shards would.

use crate::config::{
    BackendConfig, Balance, Config, HashKey, HttpOptions, Mode, ServerConfig, ServiceConfig,
};
use crate::snapshot::{clock_ms, Snapshot};

pub const SHARDS: usize = 2;

fn service(name: &str, mode: Mode, balance: Balance, backends: &[(&str, u32)]) -> ServiceConfig {
    ServiceConfig {
        name: name.into(),
        mode,
        listen: None,
        balance,
        hash: HashKey::Tuple,
        table_size: 251,
        backends: backends
            .iter()
            .map(|(a, w)| BackendConfig {
                addr: a.parse().unwrap(),
                weight: *w,
            })
            .collect(),
        draining: Vec::new(),
        maint: Vec::new(),
        server_names: Vec::new(),
        http: HttpOptions {
            vhosts: vec![format!("{name}.example")],
            ..HttpOptions::default()
        },
        tls: Default::default(),
        health: None,
        proxy: Default::default(),
        anycast: false,
    }
}

fn config(services: Vec<ServiceConfig>) -> Config {
    Config {
        server: ServerConfig {
            workers: SHARDS,
            ..ServerConfig::default()
        },
        admin: Default::default(),
        http: Default::default(),
        https: None,
        https_proxy: Default::default(),
        tls: Default::default(),
        anycast: Default::default(),
        acme: None,
        marathon: None,
        services,
        origin: Default::default(),
    }
}

/// Two services with traffic: `web` (HTTP, round-robin; one backend draining) and `db`
/// (TCP, Maglev; one backend marked down).
pub fn two_services() -> Snapshot {
    let mut web = service(
        "web",
        Mode::Http,
        Balance::Roundrobin,
        &[("10.0.0.1:80", 1), ("10.0.0.2:80", 2), ("10.0.0.3:80", 1)],
    );
    web.draining = vec!["10.0.0.3:80".parse().unwrap()];
    let db = service(
        "db",
        Mode::Tcp,
        Balance::Maglev,
        &[("10.0.1.1:5432", 1), ("10.0.1.2:5432", 1)],
    );
    let snap = crate::control::Registry::new(SHARDS)
        .build(&config(vec![web, db]))
        .unwrap();
    for (k, svc) in snap.services.iter().enumerate() {
        let k = k as u64 + 1;
        for (shard, c) in svc.counters.iter().enumerate() {
            let s = shard as u64 + 1;
            c.accepted.add(100 * k * s);
            c.active.inc();
            c.refused_limit.add(k);
            c.no_backend.add(2 * k);
            c.bytes_in.add(1000 * k * s);
            c.bytes_out.add(5000 * k * s);
        }
        for (i, b) in svc.backends.iter().enumerate() {
            let i = i as u64 + 1;
            for c in b.counters.iter() {
                c.connections.add(10 * i * k);
                c.active.inc();
                c.connect_errors.add(i);
                c.bytes_in.add(300 * i);
                c.bytes_out.add(1500 * i);
            }
        }
    }
    let web = &snap.services[0].counters;
    for (status, n) in [
        (101, 1),
        (200, 180),
        (304, 10),
        (404, 5),
        (503, 3),
        (600, 1),
    ] {
        for _ in 0..n {
            web.shard(0).response(status);
        }
    }
    for us in [150, 900, 2_000, 40_000] {
        web.shard(1).response_latency.record(us);
    }
    snap.services[1].backends[1].mark_down(
        clock_ms(),
        clock_ms() + 60_000,
        crate::health::Passive::Refused,
    );
    snap
}

/// `n` services of three backends each, every other one HTTP, with a little traffic.
pub fn many(n: usize) -> Snapshot {
    let services = (0..n)
        .map(|i| {
            let (mode, balance) = if i % 2 == 0 {
                (Mode::Http, Balance::Roundrobin)
            } else {
                (Mode::Tcp, Balance::Leastconn)
            };
            let addrs: Vec<String> = (0..3)
                .map(|b| format!("10.{}.{}.{b}:8080", i / 256, i % 256))
                .collect();
            let backends: Vec<(&str, u32)> = addrs.iter().map(|a| (a.as_str(), 1)).collect();
            service(&format!("app-{i:04}"), mode, balance, &backends)
        })
        .collect();
    let snap = crate::control::Registry::new(SHARDS)
        .build(&config(services))
        .unwrap();
    for svc in &snap.services {
        svc.counters.shard(0).accepted.add(1000);
        svc.counters.shard(1).response(200);
        for b in svc.backends.iter() {
            b.counters.shard(0).connections.add(333);
        }
    }
    snap
}

/// The admin view of a process serving `snap`, following Marathon.
pub fn view(snap: Snapshot) -> super::View {
    use std::sync::Arc;
    let (hup, _) = crossbeam::channel::bounded(1);
    super::View {
        published: Arc::new(crate::snapshot::Published::new(snap)),
        shards: Arc::new(crate::stats::PerShard::new(SHARDS)),
        control: Arc::new(crate::stats::ControlCounters::default()),
        hup,
        token: None,
        process: super::Process {
            started_ms: 0,
            workers: SHARDS,
            event_loop: "epoll",
            max_connections: 100_000,
        },
        marathon: true,
        anycast: Default::default(),
        processes: Arc::default(),
    }
}

/// `web` mid blue/green deploy: `10.0.0.1:80` kept in maintenance by the deploy,
/// `10.0.0.3:80` a task being killed (on an agent known by name), `10.0.0.2:80`
/// serving.
pub fn deploy_in_progress() -> Snapshot {
    let mut web = service(
        "web",
        Mode::Http,
        Balance::Roundrobin,
        &[("10.0.0.1:80", 1), ("10.0.0.2:80", 1), ("10.0.0.3:80", 1)],
    );
    web.maint = vec!["10.0.0.1:80".parse().unwrap()];
    web.draining = vec!["10.0.0.3:80".parse().unwrap()];
    web.server_names = vec![("10.0.0.3:80".parse().unwrap(), "agent-3_10_0_0_3_80".into())];
    crate::control::Registry::new(SHARDS)
        .build(&config(vec![web]))
        .unwrap()
}
