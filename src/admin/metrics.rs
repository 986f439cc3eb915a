//! `/metrics` in the Prometheus text format.

use crate::snapshot::{clock_ms, Snapshot};
use crate::stats::{PerShard, ShardCounters};
use std::fmt::Write;

/// One metric family: its help line, type, and samples as (labels, value).
pub(super) struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    pub(super) samples: Vec<(String, i64)>,
}

impl Family {
    pub(super) fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, v) in &self.samples {
            let _ = writeln!(out, "{}{{{labels}}} {v}", self.name);
        }
    }
}

/// A label value with `\`, `"` and newlines escaped.
pub(super) fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `sluice_anycast_announced`: each anycast VIP's verdict, as `/v1/anycast` gives it.
pub fn anycast(out: &mut String, board: &crate::anycast::Board) {
    let mut f = Family::new(
        "sluice_anycast_announced",
        "gauge",
        "1 while the anycast VIP is to be announced over BGP, else 0 (see /v1/anycast).",
    );
    for r in board.reports() {
        let l = format!(
            "prefix=\"{}\",service=\"{}\"",
            esc(&r.prefix),
            esc(&r.service)
        );
        f.samples.push((l, i64::from(r.announce)));
    }
    f.write(out);
}

pub fn render(
    snap: &Snapshot,
    shards: &PerShard<ShardCounters>,
    control: &crate::stats::ControlCounters,
    admin: &super::AdminCounters,
) -> String {
    let now = clock_ms();
    let families = service_families(snap, now)
        .into_iter()
        .chain(shard_families(shards))
        .chain(super::metrics_tls::families(snap, shards, &control.acme))
        .chain(super::metrics_health::families(snap, now));
    let mut out = String::with_capacity(4096);
    for fam in families {
        fam.write(&mut out);
    }
    latency(&mut out, snap);
    http(&mut out, snap);
    process_lines(&mut out, snap, control, admin);
    out
}

/// Each service's and each of its backends' connections and bytes.
fn service_families(snap: &Snapshot, now: u64) -> Vec<Family> {
    let mut f = vec![
        Family::new(
            "sluice_service_connections_total",
            "counter",
            "Client connections accepted.",
        ),
        Family::new(
            "sluice_service_active_connections",
            "gauge",
            "Client connections open.",
        ),
        Family::new(
            "sluice_service_refused_total",
            "counter",
            "Client connections refused: max_connections reached.",
        ),
        Family::new(
            "sluice_service_no_backend_total",
            "counter",
            "Client connections closed because no backend could be connected.",
        ),
        Family::new(
            "sluice_service_bytes_in_total",
            "counter",
            "Bytes from clients to backends.",
        ),
        Family::new(
            "sluice_service_bytes_out_total",
            "counter",
            "Bytes from backends to clients.",
        ),
        Family::new(
            "sluice_backend_up",
            "gauge",
            "1 when the backend takes new connections, 0 while marked down.",
        ),
        Family::new(
            "sluice_backend_connections_total",
            "counter",
            "Connections established to the backend.",
        ),
        Family::new(
            "sluice_backend_active_connections",
            "gauge",
            "Connections open to the backend.",
        ),
        Family::new(
            "sluice_backend_connect_errors_total",
            "counter",
            "Failed connects (refused or timed out).",
        ),
        Family::new(
            "sluice_backend_connect_timeouts_total",
            "counter",
            "Connects that timed out.",
        ),
        Family::new(
            "sluice_backend_bytes_in_total",
            "counter",
            "Bytes sent to the backend.",
        ),
        Family::new(
            "sluice_backend_bytes_out_total",
            "counter",
            "Bytes received from the backend.",
        ),
    ];
    for svc in &snap.services {
        let l = format!("service=\"{}\"", esc(&svc.config.name));
        let c = &svc.counters;
        let service_values = [
            c.sum(|s| s.accepted.get()) as i64,
            c.iter().map(|s| s.active.get()).sum::<i64>().max(0),
            c.sum(|s| s.refused_limit.get()) as i64,
            c.sum(|s| s.no_backend.get()) as i64,
            c.sum(|s| s.bytes_in.get()) as i64,
            c.sum(|s| s.bytes_out.get()) as i64,
        ];
        for (fam, v) in f.iter_mut().zip(service_values) {
            fam.samples.push((l.clone(), v));
        }
        for (b, name) in svc.backends.iter().zip(svc.svnames.iter()) {
            let bl = format!("{l},backend=\"{}\",server=\"{name}\"", b.addr);
            let bc = &b.counters;
            let values = [
                i64::from(b.is_up(now)),
                bc.sum(|x| x.connections.get()) as i64,
                i64::from(bc.active()),
                bc.sum(|x| x.connect_errors.get()) as i64,
                bc.sum(|x| x.connect_timeouts.get()) as i64,
                bc.sum(|x| x.bytes_in.get()) as i64,
                bc.sum(|x| x.bytes_out.get()) as i64,
            ];
            for (fam, v) in f[6..].iter_mut().zip(values) {
                fam.samples.push((bl.clone(), v));
            }
        }
    }
    f
}

/// Each shard's connections and accepts, and the shared HTTP listener's own answers.
fn shard_families(shards: &PerShard<ShardCounters>) -> Vec<Family> {
    let mut s = vec![
        Family::new(
            "sluice_shard_connections",
            "gauge",
            "Connections open on the shard.",
        ),
        Family::new(
            "sluice_shard_ring_batch",
            "gauge",
            "Completions (io_uring) or events (epoll) handled in the shard's last loop turn.",
        ),
        Family::new(
            "sluice_shard_accepts_total",
            "counter",
            "Connections accepted by the shard.",
        ),
        Family::new(
            "sluice_shard_refused_total",
            "counter",
            "Clients refused: the shard held its share of max_connections.",
        ),
        Family::new(
            "sluice_shard_accept_errors_total",
            "counter",
            "Failed accepts.",
        ),
        Family::new(
            "sluice_shard_accept_paused_total",
            "counter",
            "Times accepting paused for lack of descriptors.",
        ),
        Family::new(
            "sluice_shard_resets_total",
            "counter",
            "Connections ended by a reset.",
        ),
        Family::new(
            "sluice_shard_idle_timeouts_total",
            "counter",
            "Connections closed for idleness.",
        ),
        Family::new(
            "sluice_shard_drain_timeouts_total",
            "counter",
            "Connections closed at the end of their backend's drain time.",
        ),
        Family::new(
            "sluice_shard_spliced_flows_total",
            "counter",
            "Flow directions moved to splice.",
        ),
    ];
    for (i, c) in shards.iter().enumerate() {
        let l = format!("shard=\"{i}\"");
        let values = [
            c.connections.get().max(0) as u64,
            c.last_batch.load(std::sync::atomic::Ordering::Relaxed),
            c.accepts.get(),
            c.refused_limit.get(),
            c.accept_errors.get(),
            c.accept_paused.get(),
            c.resets.get(),
            c.idle_timeouts.get(),
            c.drain_timeouts.get(),
            c.spliced_flows.get(),
        ];
        for (fam, v) in s.iter_mut().zip(values) {
            fam.samples.push((l.clone(), v as i64));
        }
    }
    let mut front = Family::new(
        "sluice_http_front_responses_total",
        "counter",
        "sluice's own answers on the shared HTTP listener before a service was found (404 no route, 400, 408, 431...).",
    );
    for (i, c) in shards.iter().enumerate() {
        for (k, n) in c.http_front_responses.iter().enumerate().skip(1) {
            front
                .samples
                .push((format!("shard=\"{i}\",code=\"{k}xx\""), n.get() as i64));
        }
    }
    s.push(front);
    s
}

/// The control thread's and the admin port's own figures, one line each.
fn process_lines(
    out: &mut String,
    snap: &Snapshot,
    control: &crate::stats::ControlCounters,
    admin: &super::AdminCounters,
) {
    let last = control
        .marathon_last_success_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    let age = if last == 0 {
        -1.0
    } else {
        clock_ms().saturating_sub(last) as f64 / 1000.0
    };
    let plain = [
        (
            "sluice_marathon_fetches_total",
            "counter",
            "Marathon fetches.",
            control.marathon_fetches.get() as f64,
        ),
        (
            "sluice_marathon_failures_total",
            "counter",
            "Marathon fetches that failed (unreachable, error status, bad body).",
            control.marathon_failures.get() as f64,
        ),
        (
            "sluice_marathon_last_success_age_seconds",
            "gauge",
            "Seconds since the last good Marathon fetch; -1 before the first.",
            age,
        ),
        (
            "sluice_marathon_conflicts_total",
            "counter",
            "Marathon services left out: address or name already taken, a name HAProxy \
             would refuse, or access control sluice does not have (HAPROXY_{n}_AUTH).",
            control.marathon_conflicts.get() as f64,
        ),
        (
            "sluice_marathon_labels_ignored",
            "gauge",
            "Marathon-LB labels sluice does not follow on the apps it serves (one per app \
             and label; each is logged once while present).",
            control
                .marathon_labels_ignored
                .load(std::sync::atomic::Ordering::Relaxed) as f64,
        ),
        (
            "sluice_bind_failures_total",
            "counter",
            "Services left out because their address could not be bound.",
            control.bind_failures.get() as f64,
        ),
        (
            "sluice_reload_failures_total",
            "counter",
            "Reloads rejected (the previous configuration kept serving).",
            control.reload_failures.get() as f64,
        ),
        (
            "sluice_admin_requests_total",
            "counter",
            "Requests answered by the admin port.",
            admin.requests.get() as f64,
        ),
        (
            "sluice_admin_refused_total",
            "counter",
            "Admin connections answered 503 at once: every connection slot was writing a response.",
            admin.refused.get() as f64,
        ),
        (
            "sluice_admin_evicted_total",
            "counter",
            "Admin connections still reading their head closed (408) to make room for a new one.",
            admin.evicted.get() as f64,
        ),
        (
            "sluice_admin_denied_total",
            "counter",
            "Admin requests refused: 401 (no or wrong token) or 403 (a cross-site signal).",
            admin.denied.get() as f64,
        ),
        (
            "sluice_admin_timeouts_total",
            "counter",
            "Admin connections closed at a deadline (request head or response too slow).",
            admin.timeouts.get() as f64,
        ),
    ];
    for (name, kind, help, v) in plain {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP sluice_config_generation Generation of the published configuration."
    );
    let _ = writeln!(out, "# TYPE sluice_config_generation gauge");
    let _ = writeln!(out, "sluice_config_generation {}", snap.generation);
}

/// Backend connect latency, per backend and per service (the sum of its backends), as
/// Prometheus histograms in seconds.
fn latency(out: &mut String, snap: &Snapshot) {
    use crate::stats::LATENCY_BOUNDS_US;
    let name = "sluice_backend_connect_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from picking a backend to the connection being established."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    let svc_name = "sluice_service_connect_seconds";
    let mut by_service = Vec::new();
    for svc in &snap.services {
        let mut total = ([0u64; LATENCY_BOUNDS_US.len() + 1], 0u64);
        for b in svc.backends.iter() {
            let mut h = ([0u64; LATENCY_BOUNDS_US.len() + 1], 0u64);
            for shard in b.counters.iter() {
                add(&mut h, shard.connect_latency.read());
            }
            add(&mut total, h);
            let labels = format!(
                "service=\"{}\",backend=\"{}\"",
                esc(&svc.config.name),
                b.addr
            );
            write_histogram(out, name, &labels, &h);
        }
        by_service.push((format!("service=\"{}\"", esc(&svc.config.name)), total));
    }
    let _ = writeln!(
        out,
        "# HELP {svc_name} Backend connect latency over all of the service's backends."
    );
    let _ = writeln!(out, "# TYPE {svc_name} histogram");
    for (labels, h) in &by_service {
        write_histogram(out, svc_name, labels, h);
    }
}

/// HTTP services: responses by status class, backend connections reused from the
/// pool, and response time as a histogram.
fn http(out: &mut String, snap: &Snapshot) {
    let http_services = || {
        snap.services
            .iter()
            .filter(|s| s.config.mode == crate::config::Mode::Http)
    };
    let name = "sluice_http_responses_total";
    let _ = writeln!(
        out,
        "# HELP {name} HTTP responses sent to clients, by status class."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    for svc in http_services() {
        for (i, class) in ["other", "1xx", "2xx", "3xx", "4xx", "5xx"]
            .iter()
            .enumerate()
        {
            let v = svc.counters.sum(|s| s.responses[i].get());
            let _ = writeln!(
                out,
                "{name}{{service=\"{}\",code=\"{class}\"}} {v}",
                esc(&svc.config.name)
            );
        }
    }
    let name = "sluice_http_backend_reused_total";
    let _ = writeln!(
        out,
        "# HELP {name} Requests sent over a pooled keep-alive backend connection."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    for svc in http_services() {
        for b in svc.backends.iter() {
            let _ = writeln!(
                out,
                "{name}{{service=\"{}\",backend=\"{}\"}} {}",
                esc(&svc.config.name),
                b.addr,
                b.counters.sum(|x| x.reused.get())
            );
        }
    }
    let name = "sluice_http_response_quantile_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Response time percentiles over the service's life (HdrHistogram, 1 % resolution; published each second)."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    for svc in http_services() {
        if let Some(q) = super::response_percentiles(svc) {
            for (label, us) in ["0.5", "0.9", "0.99", "0.999", "1"].iter().zip(q) {
                let _ = writeln!(
                    out,
                    "{name}{{service=\"{}\",quantile=\"{label}\"}} {}",
                    esc(&svc.config.name),
                    us as f64 / 1e6
                );
            }
        }
    }
    let name = "sluice_http_response_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} From a request head's arrival to the end of its response."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for svc in http_services() {
        let mut h = ([0u64; crate::stats::LATENCY_BOUNDS_US.len() + 1], 0u64);
        for shard in svc.counters.iter() {
            add(&mut h, shard.response_latency.read());
        }
        let labels = format!("service=\"{}\"", esc(&svc.config.name));
        write_histogram(out, name, &labels, &h);
    }
}

/// Add histogram `h` (bucket counts, sum) into `acc`.
fn add(acc: &mut ([u64; 13], u64), h: ([u64; 13], u64)) {
    for (a, c) in acc.0.iter_mut().zip(h.0) {
        *a += c;
    }
    acc.1 += h.1;
}

fn write_histogram(out: &mut String, name: &str, labels: &str, h: &([u64; 13], u64)) {
    use crate::stats::LATENCY_BOUNDS_US;
    let mut cumulative = 0;
    for (i, c) in h.0.iter().enumerate() {
        cumulative += c;
        let le = LATENCY_BOUNDS_US
            .get(i)
            .map_or("+Inf".to_owned(), |us| format!("{}", *us as f64 / 1e6));
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.1 as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
}
