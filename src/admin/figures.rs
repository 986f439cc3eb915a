//! The figures the stats pages show, gathered once per request from the published
//! snapshot, the counters and the sampler's tracks. The HTML page, `;csv` and `;json`
//! all render from these, so they cannot disagree. Row fields carry the names of
//! HAProxy's CSV columns where there is one (`scur`, `stot`, `econ`, …).

use super::rates::{Sample, Tracks};
use super::View;
use crate::config::{Balance, Mode};
use crate::health::State;
use crate::snapshot::{Service, Snapshot};
use serde::Serialize;

/// A server's status: its address's state (`health::State`, HAProxy's spelling),
/// MAINT when a blue/green deploy keeps it in maintenance (Marathon-LB's `disabled`,
/// which `zdd.py` waits on), DRAIN when this service drains it.
pub fn server_status(svc: &Service, i: usize, now_ms: u64) -> State {
    if svc.maint[i] {
        State::Maint
    } else if svc.draining[i] {
        State::Drain
    } else {
        svc.backends[i].health.look().effective(now_ms)
    }
}

/// `mode` as the config writes it.
pub fn mode_word(mode: Mode) -> &'static str {
    match mode {
        Mode::Tcp => "tcp",
        Mode::Http => "http",
    }
}

/// `balance` as the config writes it.
pub fn balance_word(balance: Balance) -> &'static str {
    match balance {
        Balance::Maglev => "maglev",
        Balance::Roundrobin => "roundrobin",
        Balance::Leastconn => "leastconn",
    }
}

#[derive(Debug, Serialize)]
pub struct Stats {
    pub process: ProcessFigures,
    /// Present when services come from Marathon.
    pub marathon: Option<MarathonFigures>,
    pub services: Vec<ServiceFigures>,
}

#[derive(Debug, Serialize)]
pub struct ProcessFigures {
    pub version: &'static str,
    pub pid: u32,
    pub uptime_s: u64,
    pub workers: usize,
    /// `io_uring` or `epoll`.
    pub event_loop: &'static str,
    /// Client connections open, over every shard.
    pub connections: u64,
    pub max_connections: u32,
    pub generation: u64,
    /// Seconds since this generation was published.
    pub generation_age_s: u64,
    /// When it was published, in seconds since the Unix epoch.
    pub generation_published_unix: u64,
    /// When these figures were gathered, in seconds since the Unix epoch.
    pub now_unix: u64,
}

#[derive(Debug, Serialize)]
pub struct MarathonFigures {
    /// Seconds since the last good fetch; none before the first.
    pub last_sync_age_s: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_age_s: Option<u64>,
    pub fetches: u64,
    pub failures: u64,
    /// In the last good fetch: apps that gave a service or VIP, and their tasks.
    pub apps: u64,
    pub tasks: u64,
    /// Marathon services left out now: their address or name is taken, their name is
    /// one HAProxy would refuse, or they ask for access control sluice does not have.
    pub left_out: u64,
    /// Services left out now: their address cannot be bound.
    pub unbound: u64,
}

#[derive(Debug, Serialize)]
pub struct ServiceFigures {
    pub name: String,
    pub mode: &'static str,
    pub balance: &'static str,
    /// What Maglev hashes (`source`, `tuple`, `header:NAME`, `cookie:NAME`).
    pub hash: Option<String>,
    /// Its own address; none when routed by `[http] listen` alone.
    pub listen: Option<String>,
    pub frontend: Row,
    pub servers: Vec<Row>,
    pub backend: Row,
    pub history: History,
}

/// The sampler's last five minutes of one service, oldest first, one entry a second.
#[derive(Debug, Default, Serialize)]
pub struct History {
    /// How long ago each second ended.
    pub age_s: Vec<u32>,
    pub sessions_per_s: Vec<u32>,
    /// HTTP: the p99 response time of that second's responses; null when none ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<Vec<Option<f64>>>,
}

/// One row: FRONTEND, a server, or BACKEND.
#[derive(Debug, Default, Serialize)]
pub struct Row {
    pub svname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// OPEN (FRONTEND), UP, DOWN, DRAIN, MAINT.
    pub status: &'static str,
    /// Servers: seconds since the state last changed (or since the start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lastchg: Option<u64>,
    /// Servers: UP → DOWN changes, and the seconds spent DOWN (HAProxy's `chkdown`,
    /// `downtime`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chkdown: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime: Option<u64>,
    /// Why the state last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Servers with an active check: its figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckFigures>,
    /// Sessions open, and the most seen open at once (sampled each second).
    pub scur: i64,
    pub smax: i64,
    pub stot: u64,
    /// Sessions in the last second, and the most in one second.
    pub rate: u64,
    pub rate_max: u64,
    pub bin: u64,
    pub bout: u64,
    /// Failed connects (servers, BACKEND).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub econ: Option<u64>,
    /// FRONTEND: clients refused at `max_connections`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dreq: Option<u64>,
    /// BACKEND: clients closed (TCP) or answered 502/503 (HTTP) for want of a server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_backend: Option<u64>,
    /// BACKEND: connects retried on another server after one failed, and HTTP requests
    /// sent again after a reused connection failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wretr: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// BACKEND: servers up, of `servers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub act: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub servers: Option<usize>,
    /// FRONTEND and BACKEND of an HTTP service (the same figures: one per service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpFigures>,
    /// FRONTEND of a service terminating TLS on its port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFigures>,
}

/// HAProxy's check columns, for a server with an active check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckFigures {
    /// L4OK, L4TOUT, L4CON, L7OK, L7STS, L7TOUT, L7RSP, SOCKERR; INI before the first.
    pub check_status: &'static str,
    /// The HTTP status of the last check, if it got one.
    pub check_code: Option<u16>,
    /// How long the last check took, in ms.
    pub check_duration: Option<u64>,
    /// HAProxy's words for `check_status`.
    pub check_desc: &'static str,
    /// Checks failed while the server was UP.
    pub chkfail: u64,
    pub check_rise: u32,
    pub check_fall: u32,
    /// 0 to `check_rise + check_fall - 1`; UP at `check_rise` and above.
    pub check_health: u32,
}

/// HAProxy's `ssl_*` columns: handshakes done, of them resumed, and failed.
#[derive(Debug, Clone, Serialize)]
pub struct TlsFigures {
    pub ssl_sess: u64,
    pub ssl_reused_sess: u64,
    pub ssl_failed_handshake: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpFigures {
    pub hrsp_1xx: u64,
    pub hrsp_2xx: u64,
    pub hrsp_3xx: u64,
    pub hrsp_4xx: u64,
    pub hrsp_5xx: u64,
    pub hrsp_other: u64,
    pub req_tot: u64,
    /// The mean response time (ms, rounded down), as HAProxy's `ttime`.
    pub ttime: u64,
    /// Response-time percentiles over the service's life; none before a response.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Everything, for the HTML page and `;json`: the services whose name contains
/// `filter` (lower case; empty for all).
pub fn gather(view: &View, snap: &Snapshot, tracks: &Tracks, now_ms: u64, filter: &str) -> Stats {
    Stats {
        process: process(view, snap, now_ms),
        marathon: view.marathon.then(|| marathon(&view.control, now_ms)),
        services: snap
            .services
            .iter()
            .filter(|s| filter.is_empty() || s.config.name.to_lowercase().contains(filter))
            .map(|s| service(s, tracks, now_ms))
            .collect(),
    }
}

fn process(view: &View, snap: &Snapshot, now_ms: u64) -> ProcessFigures {
    let p = &view.process;
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let age_s = now_ms.saturating_sub(view.published.published_ms()) / 1000;
    ProcessFigures {
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        uptime_s: now_ms.saturating_sub(p.started_ms) / 1000,
        workers: p.workers,
        event_loop: p.event_loop,
        connections: view
            .shards
            .iter()
            .map(|s| s.connections.get())
            .sum::<i64>()
            .max(0) as u64,
        max_connections: p.max_connections,
        generation: snap.generation,
        generation_age_s: age_s,
        generation_published_unix: now_unix.saturating_sub(age_s),
        now_unix,
    }
}

fn marathon(c: &crate::stats::ControlCounters, now_ms: u64) -> MarathonFigures {
    use std::sync::atomic::Ordering::Relaxed;
    let age = |ms: u64| now_ms.saturating_sub(ms) / 1000;
    let last_sync = c.marathon_last_success_ms.load(Relaxed);
    let last_error = c
        .marathon_last_error
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    MarathonFigures {
        last_sync_age_s: (last_sync != 0).then(|| age(last_sync)),
        last_error_age_s: last_error.as_ref().map(|(ms, _)| age(*ms)),
        last_error: last_error.map(|(_, e)| e),
        fetches: c.marathon_fetches.get(),
        failures: c.marathon_failures.get(),
        apps: c.marathon_apps.load(Relaxed),
        tasks: c.marathon_tasks.load(Relaxed),
        left_out: c.marathon_left_out.load(Relaxed),
        unbound: c.unbound.load(Relaxed),
    }
}

/// One service's rows and history.
pub fn service(svc: &Service, tracks: &Tracks, now_ms: u64) -> ServiceFigures {
    let track = tracks.service(svc);
    let c = &svc.counters;
    let http = (svc.config.mode == Mode::Http).then(|| http(svc));
    let scur = c.iter().map(|s| s.active.get()).sum::<i64>().max(0);
    let (rate, smax) = track.map_or((Default::default(), 0), |t| (t.rate, t.scur_max));
    let frontend = Row {
        svname: "FRONTEND".into(),
        status: "OPEN",
        scur,
        smax: smax.max(scur),
        stot: c.sum(|s| s.accepted.get()),
        rate: rate.last,
        rate_max: rate.max,
        bin: c.sum(|s| s.bytes_in.get()),
        bout: c.sum(|s| s.bytes_out.get()),
        dreq: Some(c.sum(|s| s.refused_limit.get())),
        http: http.clone(),
        tls: svc.tls.is_some().then(|| TlsFigures {
            ssl_sess: c.sum(|s| s.tls.handshakes.iter().map(|h| h.get()).sum()),
            ssl_reused_sess: c.sum(|s| s.tls.handshakes[1].get()),
            ssl_failed_handshake: c.sum(|s| s.tls.failures.iter().map(|f| f.get()).sum()),
        }),
        ..Row::default()
    };
    let servers: Vec<Row> = (0..svc.backends.len())
        .map(|i| server(svc, i, tracks, now_ms))
        .collect();
    let sum = |f: fn(&Row) -> u64| servers.iter().map(f).sum::<u64>();
    let up = servers.iter().filter(|r| r.status == "UP").count();
    let scur = servers.iter().map(|r| r.scur).sum::<i64>();
    let (rate, smax) = track.map_or((Default::default(), 0), |t| {
        (t.backend_rate, t.backend_scur_max)
    });
    let backend = Row {
        svname: "BACKEND".into(),
        status: if up > 0 { "UP" } else { "DOWN" },
        scur,
        smax: smax.max(scur),
        stot: sum(|r| r.stot),
        rate: rate.last,
        rate_max: rate.max,
        bin: frontend.bin,
        bout: frontend.bout,
        econ: Some(sum(|r| r.econ.unwrap_or(0))),
        no_backend: Some(c.sum(|s| s.no_backend.get())),
        wretr: Some(c.sum(|s| s.retries.get())),
        weight: Some(svc.config.backends.iter().map(|b| b.weight).sum()),
        act: Some(up),
        servers: Some(servers.len()),
        http,
        ..Row::default()
    };
    let cfg = &svc.config;
    ServiceFigures {
        name: cfg.name.clone(),
        mode: mode_word(cfg.mode),
        balance: balance_word(cfg.balance),
        hash: (cfg.balance == Balance::Maglev).then(|| cfg.hash_word()),
        listen: svc.local.map(|l| l.to_string()),
        frontend,
        servers,
        backend,
        history: track.map_or_else(Default::default, |t| {
            history(t.ring.iter(), cfg.mode == Mode::Http, now_ms)
        }),
    }
}

fn server(svc: &Service, i: usize, tracks: &Tracks, now_ms: u64) -> Row {
    let b = &svc.backends[i];
    let bc = &b.counters;
    let status = server_status(svc, i, now_ms);
    let track = tracks.service(svc).and_then(|t| t.server(b));
    let record = b.health.record();
    let check = record.checked.then(|| CheckFigures {
        check_status: record.last.map_or("INI", |r| r.status.word()),
        check_code: record.last.and_then(|r| r.code),
        check_duration: record.last.map(|r| r.duration_ms),
        check_desc: record.last.map_or("Initializing", |r| r.status.desc()),
        chkfail: record.chkfail,
        check_rise: record.rise,
        check_fall: record.fall,
        check_health: record.health,
    });
    let scur = i64::from(bc.active());
    Row {
        svname: svc.svnames[i].to_string(),
        addr: Some(b.addr.to_string()),
        status: status.word(),
        lastchg: Some(record.lastchg_s(now_ms)),
        chkdown: Some(record.chkdown),
        downtime: Some(record.downtime_s(now_ms)),
        reason: (!record.reason.is_empty()).then(|| record.reason.clone()),
        check,
        scur,
        smax: track.map_or(0, |t| t.scur_max).max(scur),
        stot: bc.sum(|x| x.connections.get()),
        rate: track.map_or(0, |t| t.rate.last),
        rate_max: track.map_or(0, |t| t.rate.max),
        bin: bc.sum(|x| x.bytes_in.get()),
        bout: bc.sum(|x| x.bytes_out.get()),
        econ: Some(bc.sum(|x| x.connect_errors.get())),
        weight: Some(
            svc.config
                .backends
                .iter()
                .find(|x| x.addr == b.addr)
                .map_or(1, |x| x.weight),
        ),
        ..Row::default()
    }
}

fn http(svc: &Service) -> HttpFigures {
    let c = &svc.counters;
    let class = |i: usize| c.sum(|s| s.responses[i].get());
    let (mut count, mut sum_us) = (0u64, 0u64);
    for s in c.iter() {
        let (buckets, sum) = s.response_latency.read();
        count += buckets.iter().sum::<u64>();
        sum_us += sum;
    }
    let q = super::response_percentiles(svc);
    let ms = |us: u64| us as f64 / 1000.0;
    HttpFigures {
        hrsp_1xx: class(1),
        hrsp_2xx: class(2),
        hrsp_3xx: class(3),
        hrsp_4xx: class(4),
        hrsp_5xx: class(5),
        hrsp_other: class(0),
        req_tot: (0..6).map(class).sum(),
        ttime: sum_us.checked_div(count).unwrap_or(0) / 1000,
        p50_ms: q.map(|q| ms(q[0])),
        p99_ms: q.map(|q| ms(q[2])),
    }
}

fn history<'a>(samples: impl Iterator<Item = &'a Sample>, http: bool, now_ms: u64) -> History {
    let now_s = (now_ms / 1000) as u32;
    let mut h = History {
        p99_ms: http.then(Vec::new),
        ..History::default()
    };
    for s in samples {
        h.age_s.push(now_s.saturating_sub(s.at_s));
        h.sessions_per_s.push(s.sessions);
        if let Some(p) = h.p99_ms.as_mut() {
            p.push(s.p99_us().map(|us| f64::from(us) / 1000.0));
        }
    }
    h
}
