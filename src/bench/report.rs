//! The figures `sluice bench` reports: one JSON object (`--json`, which scripts read:
//! field names only ever added) or text like wrk's, one figure a line.

use super::tally::{Counts, Tally};
use super::{BenchArgs, BenchMode, Plan};
use serde::Serialize;
use std::net::SocketAddr;

#[derive(Debug, Serialize)]
pub struct Report {
    pub target: SocketAddr,
    pub mode: BenchMode,
    pub connections: usize,
    pub threads: usize,
    pub rate: Option<f64>,
    pub duration_s: f64,
    pub requests: u64,
    pub requests_per_s: f64,
    /// TCP connections established per second.
    pub connections_per_s: f64,
    /// HTTP bytes (over TLS, before encryption).
    pub rx_gbit_per_s: f64,
    pub tx_gbit_per_s: f64,
    pub errors: Errors,
    pub latency_us: Latency,
    /// With `--tls`; `null` without.
    pub tls: Option<TlsReport>,
}

#[derive(Debug, Serialize)]
pub struct Errors {
    pub refused: u64,
    pub reset: u64,
    pub timeout: u64,
    pub bad_response: u64,
    pub non_2xx: u64,
    pub other: u64,
    /// Connections whose TLS handshake did not complete (any cause); the same number
    /// as `tls.handshake_failures`, here so that the errors add up to every failure.
    pub tls_handshake: u64,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
    pub mean: f64,
}

#[derive(Debug, Serialize)]
pub struct TlsReport {
    /// The name sent as SNI; `null` when none was (an IP target).
    pub sni: Option<String>,
    /// The versions offered, preferred first: `["1.3", "1.2"]`.
    pub versions_offered: Vec<&'static str>,
    /// `--resume`: session tickets kept and used.
    pub resume: bool,
    /// Completed handshakes per second (full and resumed): in close mode, the
    /// handshake rate.
    pub handshakes_per_s: f64,
    pub handshakes_full: u64,
    pub handshakes_resumed: u64,
    pub handshake_failures: u64,
    /// Full handshakes that took a HelloRetryRequest (within `handshakes_full`).
    pub hello_retries: u64,
    /// Completed handshakes by negotiated version (`"1.3"`), key exchange group
    /// (`"X25519"`; `"none"` for a resumed TLS 1.2 session) and cipher suite.
    pub versions: Counts,
    pub groups: Counts,
    pub cipher_suites: Counts,
    /// Why the first failed handshake failed; `null` when none did.
    pub first_failure: Option<String>,
}

/// The report of a run of `args` by `threads` threads, from their merged tally.
pub fn build(args: &BenchArgs, plan: &Plan, threads: usize, tally: Tally) -> Report {
    let secs = args.duration.as_secs_f64();
    let h = &tally.latency_us;
    let tls = plan.tls.as_ref().map(|p| TlsReport {
        sni: p.sni(),
        versions_offered: p.offered.clone(),
        resume: p.resume,
        handshakes_per_s: (tally.tls.full + tally.tls.resumed) as f64 / secs,
        handshakes_full: tally.tls.full,
        handshakes_resumed: tally.tls.resumed,
        handshake_failures: tally.tls_handshake,
        hello_retries: tally.tls.hello_retries,
        versions: tally.tls.versions.clone(),
        groups: tally.tls.groups.clone(),
        cipher_suites: tally.tls.cipher_suites.clone(),
        first_failure: tally.tls.first_failure.clone(),
    });
    Report {
        target: args.target,
        mode: args.mode,
        connections: args.connections,
        threads,
        rate: args.rate,
        duration_s: secs,
        requests: tally.requests,
        requests_per_s: tally.requests as f64 / secs,
        connections_per_s: tally.connects as f64 / secs,
        rx_gbit_per_s: tally.rx_bytes as f64 * 8.0 / 1e9 / secs,
        tx_gbit_per_s: tally.tx_bytes as f64 * 8.0 / 1e9 / secs,
        errors: Errors {
            refused: tally.refused,
            reset: tally.reset,
            timeout: tally.timeout,
            bad_response: tally.bad_response,
            non_2xx: tally.non_2xx,
            other: tally.other,
            tls_handshake: tally.tls_handshake,
        },
        latency_us: Latency {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        },
        tls,
    }
}

/// Render like wrk does, one figure a line; the TLS lines only for a TLS run.
pub fn render(r: &Report) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    let rate = r
        .rate
        .map_or("closed loop".to_owned(), |x| format!("{x} req/s target"));
    let e = &r.errors;
    let tls_errors = match r.tls {
        Some(_) => format!(", tls handshake {}", e.tls_handshake),
        None => String::new(),
    };
    let mut out = format!(
        "sluice bench: {} mode {:?}, {} connections, {} threads, {:.1} s, {rate}\n\
         requests        {}\n\
         requests/s      {:.1}\n\
         connections/s   {:.1}\n\
         throughput      {:.3} Gbit/s in, {:.3} Gbit/s out\n\
         errors          refused {}, reset {}, timeout {}, bad response {}, non-2xx {}, other {}{tls_errors}\n\
         latency ms      p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}\n",
        r.target,
        r.mode,
        r.connections,
        r.threads,
        r.duration_s,
        r.requests,
        r.requests_per_s,
        r.connections_per_s,
        r.rx_gbit_per_s,
        r.tx_gbit_per_s,
        e.refused,
        e.reset,
        e.timeout,
        e.bad_response,
        e.non_2xx,
        e.other,
        ms(r.latency_us.p50),
        ms(r.latency_us.p90),
        ms(r.latency_us.p99),
        ms(r.latency_us.p99_9),
        ms(r.latency_us.max),
    );
    if let Some(t) = &r.tls {
        out += &render_tls(t);
    }
    out
}

fn render_tls(t: &TlsReport) -> String {
    let mut out = format!(
        "tls             offered {}, sni {}, resumption {}\n\
         handshakes/s    {:.1}\n\
         handshakes      full {}, resumed {}, failed {}, hello retries {}\n\
         tls versions    {}\n\
         tls groups      {}\n\
         cipher suites   {}\n",
        t.versions_offered.join(", "),
        t.sni.as_deref().unwrap_or("none"),
        if t.resume { "on" } else { "off" },
        t.handshakes_per_s,
        t.handshakes_full,
        t.handshakes_resumed,
        t.handshake_failures,
        t.hello_retries,
        t.versions.render(),
        t.groups.render(),
        t.cipher_suites.render(),
    );
    if let Some(why) = &t.first_failure {
        out += &format!("first failure   {why}\n");
    }
    out
}
