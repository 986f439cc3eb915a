//! `sluice bench` against real servers on loopback: its counts match what the server
//! saw, and each kind of failure is reported as such.

mod common;

use common::tls::Pki;
use common::*;
use std::io::{Read, Write};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn bench(args: &[&str]) -> serde_json::Value {
    let (ok, report, stderr) = bench_status(args);
    assert!(ok, "{stderr}");
    report
}

/// A run whose every request failed: its report still comes out, and it exits
/// non-zero saying that nothing completed.
fn bench_failing(args: &[&str]) -> serde_json::Value {
    let (ok, report, stderr) = bench_status(args);
    assert!(!ok, "a run with no request completed exits non-zero");
    assert!(stderr.contains("no request completed"), "{stderr}");
    report
}

/// One run's exit status, report and stderr. A run that ended before any attempt
/// did — no request answered, no error counted: a machine busy enough that the
/// duration passed before a first answer or failure — says nothing either way, so it
/// is run again with twice the duration (at most four times).
fn bench_status(args: &[&str]) -> (bool, serde_json::Value, String) {
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    for _ in 0..4 {
        let run = bench_once(&args);
        if attempts_ended(&run.1) > 0.0 {
            return run;
        }
        let Some(i) = args.iter().position(|a| a == "--duration") else {
            return run;
        };
        let ms = parse_ms(&args[i + 1]);
        args[i + 1] = format!("{}ms", ms * 2);
    }
    bench_once(&args)
}

fn bench_once(args: &[String]) -> (bool, serde_json::Value, String) {
    let out = Command::new(BIN)
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (out.status.success(), report, stderr)
}

/// Requests answered plus errors of every kind: the attempts a run saw end.
fn attempts_ended(report: &serde_json::Value) -> f64 {
    let errors = report["errors"]
        .as_object()
        .map_or(0.0, |e| e.values().filter_map(|v| v.as_f64()).sum());
    report["requests"].as_f64().unwrap_or(0.0) + errors
}

/// `300ms`, `2s` in milliseconds (the durations these tests pass).
fn parse_ms(d: &str) -> u64 {
    match d.strip_suffix("ms") {
        Some(ms) => ms.parse().unwrap(),
        None => d.strip_suffix('s').unwrap().parse::<u64>().unwrap() * 1000,
    }
}

fn num(v: &serde_json::Value, path: &[&str]) -> f64 {
    let mut v = v;
    for p in path {
        v = &v[p];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{path:?} missing in {v}"))
}

/// Requests the tool counted were answered by the server; at most one request per
/// connection can be in flight when the run ends.
fn counts_match(mode: &str, extra: &[&str]) {
    let served = Arc::new(AtomicUsize::new(0));
    let b = http_backend("hello", Arc::clone(&served));
    let target = b.addr.to_string();
    let mut args = vec![
        "--target",
        &target,
        "--mode",
        mode,
        "--connections",
        "8",
        "--duration",
        "1s",
    ];
    args.extend_from_slice(extra);
    let r = bench(&args);
    let requests = num(&r, &["requests"]) as usize;
    let seen = served.load(Ordering::Relaxed);
    assert!(requests > 0, "a loopback server answered nothing: {r}");
    assert!(
        requests <= seen && seen <= requests + 8,
        "tool {requests}, server {seen}"
    );
    for kind in [
        "refused",
        "reset",
        "timeout",
        "bad_response",
        "non_2xx",
        "other",
        "tls_handshake",
    ] {
        assert_eq!(num(&r, &["errors", kind]), 0.0, "{kind}: {r}");
    }
    assert!(r["tls"].is_null(), "no TLS figures without --tls: {r}");
    let p50 = num(&r, &["latency_us", "p50"]);
    let max = num(&r, &["latency_us", "max"]);
    assert!(p50 >= 1.0 && p50 <= max, "{r}");
    if mode == "close" {
        // One connection per request.
        let conns = num(&r, &["connections_per_s"]) * num(&r, &["duration_s"]);
        assert!((conns - requests as f64).abs() <= 8.0, "{r}");
        // One connection per request at the server, but for the connections the run
        // ended on: accepted, their request not sent or not yet read (one per client
        // connection at most).
        let accepted = b.accepted();
        assert!(
            seen <= accepted && accepted <= seen + 8,
            "accepted {accepted}, served {seen}"
        );
    } else {
        assert!(b.accepted() <= 8, "persistent connections are reused");
    }
}

#[test]
fn keepalive_counts_match_the_server() {
    counts_match("keepalive", &[]);
}

#[test]
fn close_counts_match_the_server() {
    counts_match("close", &[]);
}

#[test]
fn uploads_and_source_addresses() {
    counts_match(
        "bulk",
        &[
            "--request-bytes",
            "100000",
            "--source-ips",
            "127.0.0.2-127.0.0.9",
        ],
    );
}

#[test]
fn open_loop_rate_is_kept() {
    let served = Arc::new(AtomicUsize::new(0));
    let b = http_backend("hi", Arc::clone(&served));
    let target = b.addr.to_string();
    let r = bench(&[
        "--target",
        &target,
        "--connections",
        "4",
        "--duration",
        "2s",
        "--rate",
        "200",
    ]);
    let requests = num(&r, &["requests"]);
    // 200/s for 2 s: 400 requests, less the ones in flight at the end; a closed loop
    // would make thousands.
    assert!((300.0..=404.0).contains(&requests), "{r}");
}

#[test]
fn refused_connections_are_counted() {
    // Bind then drop: nothing listens on this port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = bench_failing(&[
        "--target",
        &port.to_string(),
        "--mode",
        "close",
        "--connections",
        "2",
        "--duration",
        "300ms",
    ]);
    assert_eq!(num(&r, &["requests"]), 0.0);
    assert!(num(&r, &["errors", "refused"]) > 0.0, "{r}");
}

#[test]
fn garbage_is_a_bad_response() {
    let b = Backend::spawn(|mut c| {
        let _ = c.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n");
    });
    let target = b.addr.to_string();
    let r = bench_failing(&[
        "--target",
        &target,
        "--mode",
        "close",
        "--connections",
        "2",
        "--duration",
        "300ms",
    ]);
    assert_eq!(num(&r, &["requests"]), 0.0);
    assert!(num(&r, &["errors", "bad_response"]) > 0.0, "{r}");
}

#[test]
fn text_report_names_every_figure() {
    let served = Arc::new(AtomicUsize::new(0));
    let b = http_backend("hi", served);
    let out = Command::new(BIN)
        .args([
            "bench",
            "--target",
            &b.addr.to_string(),
            "--duration",
            "300ms",
            "--connections",
            "2",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for word in [
        "requests/s",
        "connections/s",
        "Gbit/s",
        "refused",
        "reset",
        "timeout",
        "bad response",
        "p99.9",
    ] {
        assert!(text.contains(word), "{word} missing in:\n{text}");
    }
}

/// `--host` sets the Host header, so a vhost behind a shared HTTP listener can be
/// measured; without it the Host is the target address.
#[test]
fn host_header_is_the_target_or_the_one_given() {
    for host in [None, Some("shop.example")] {
        let b = common::http::HttpServer::start("v");
        let target = b.addr.to_string();
        let mut args = vec![
            "--target",
            &target,
            "--mode",
            "close",
            "--connections",
            "1",
            "--duration",
            "200ms",
        ];
        if let Some(h) = host {
            args.extend_from_slice(&["--host", h]);
        }
        bench(&args);
        let want = format!("host: {}", host.unwrap_or(&target));
        let head = b.requests()[0].head.clone();
        assert!(head.lines().any(|l| l.trim() == want), "{want:?} in {head}");
    }
}

/// A TLS server for the load generator: rustls's server on each accepted connection
/// (a thread each, blocking), its certificate for `localhost` signed by `pki`'s CA at
/// test time, answering every HTTP/1.1 request with `body_bytes` bytes and keeping
/// the connection open unless the request says `Connection: close`. Counts requests in
/// `served`; TLS 1.3 tickets and TLS 1.2 sessions by ticket, so clients can resume.
fn tls_server(pki: &Pki, body_bytes: usize, served: Arc<AtomicUsize>) -> Backend {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = pki.leaf(&["localhost"]);
    let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let response = Arc::new(
        (format!("HTTP/1.1 200 OK\r\nContent-Length: {body_bytes}\r\n\r\n")
            + &"x".repeat(body_bytes))
            .into_bytes(),
    );
    Backend::spawn(move |c| {
        let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, c);
        serve_http(&mut tls, &response, &served);
        tls.conn.send_close_notify();
        let _ = tls.conn.complete_io(&mut tls.sock);
    })
}

/// Answer requests on `s` with `response` until the client closes or asks to.
fn serve_http(s: &mut (impl Read + Write), response: &[u8], served: &AtomicUsize) {
    let mut buf = Vec::new();
    while let Some(head) = read_request(s, &mut buf) {
        served.fetch_add(1, Ordering::Relaxed);
        if s.write_all(response).is_err() || s.flush().is_err() {
            return;
        }
        if head.to_ascii_lowercase().contains("connection: close") {
            return;
        }
    }
}

/// A TLS run against a fresh [`tls_server`] with `connections` connections for 1 s;
/// `extra` flags after the common ones. The report, requests served, connections
/// accepted.
fn tls_run(mode: &str, connections: usize, body_bytes: usize, extra: &[&str]) -> TlsRun {
    let served = Arc::new(AtomicUsize::new(0));
    let pki = Pki::new();
    let b = tls_server(&pki, body_bytes, Arc::clone(&served));
    let target = b.addr.to_string();
    let n = connections.to_string();
    let mut args = vec![
        "--target",
        &target,
        "--tls",
        "--insecure",
        "--mode",
        mode,
        "--connections",
        &n,
        "--duration",
        "1s",
    ];
    args.extend_from_slice(extra);
    let report = bench(&args);
    TlsRun {
        served: served.load(Ordering::Relaxed),
        accepted: b.accepted(),
        report,
    }
}

struct TlsRun {
    report: serde_json::Value,
    served: usize,
    accepted: usize,
}

impl TlsRun {
    fn tls(&self, field: &str) -> f64 {
        num(&self.report, &["tls", field])
    }

    fn requests(&self) -> f64 {
        num(&self.report, &["requests"])
    }

    fn no_errors(&self) {
        let errors = self.report["errors"].as_object().unwrap();
        assert!(errors.values().all(|v| v == 0), "{}", self.report);
    }
}

/// Close mode over TLS: every request on a connection of its own, each connection one
/// full handshake (resumption off), what the server counted.
#[test]
fn tls_close_does_one_full_handshake_per_connection() {
    let run = tls_run("close", 4, 5, &[]);
    let (full, requests) = (run.tls("handshakes_full"), run.requests());
    let r = &run.report;
    run.no_errors();
    assert!(requests > 20.0, "{r}");
    assert_eq!(run.tls("handshakes_resumed"), 0.0, "{r}");
    assert_eq!(run.tls("handshake_failures"), 0.0, "{r}");
    // A handshake per request, but for the connections the run ended on (handshake
    // done, response not yet in): one per client connection at most.
    assert!(requests <= full && full <= requests + 4.0, "{r}");
    assert!(
        run.served as f64 >= requests && run.served as f64 <= requests + 4.0,
        "{r}"
    );
    assert!(
        run.accepted as f64 >= full,
        "accepted {}: {r}",
        run.accepted
    );
    assert_eq!(
        num(r, &["tls", "versions", "1.3"]),
        full,
        "1.3 preferred: {r}"
    );
    let conns = num(r, &["connections_per_s"]) * num(r, &["duration_s"]);
    assert!(
        (conns - full).abs() <= 4.0,
        "a TCP connection per handshake: {r}"
    );
    assert!(r["tls"]["sni"].is_null(), "no SNI to an IP target: {r}");
    assert_eq!(num(r, &["tls", "handshakes_per_s"]), full, "over 1 s: {r}");
}

/// `--resume`: each thread's first connections do a full handshake, every one after
/// resumes with a ticket (TLS 1.3) or the session (TLS 1.2) an earlier one received
/// from the server, though a thread has more connections (12) than rustls's own cache
/// keeps tickets for one server (8).
#[test]
fn tls_resume_makes_most_handshakes_resumed() {
    for version in ["1.3", "1.2"] {
        let run = tls_run(
            "close",
            24,
            5,
            &["--resume", "--threads", "2", "--tls-version", version],
        );
        let r = &run.report;
        let (full, resumed) = (run.tls("handshakes_full"), run.tls("handshakes_resumed"));
        run.no_errors();
        assert!(full >= 2.0, "a full handshake per thread at least: {r}");
        assert!(full <= 24.0, "no more than one per connection: {r}");
        assert!(resumed > full, "most resumed: {r}");
        assert_eq!(num(r, &["tls", "versions", version]), full + resumed, "{r}");
        assert_eq!(r["tls"]["versions_offered"], serde_json::json!([version]));
    }
}

/// Keepalive mode: one handshake per connection, then requests on it.
#[test]
fn tls_keepalive_does_one_handshake_per_connection() {
    let run = tls_run("keepalive", 4, 5, &[]);
    let r = &run.report;
    run.no_errors();
    assert!(run.requests() > 100.0, "{r}");
    assert_eq!(run.tls("handshakes_full"), 4.0, "{r}");
    assert_eq!(run.tls("handshakes_resumed"), 0.0, "{r}");
    assert_eq!(run.accepted, 4, "{r}");
    assert!(run.served as f64 <= run.requests() + 4.0, "{r}");
}

/// Bulk over TLS: uploads larger than rustls buffers at once and responses of many
/// records arrive whole; throughput counts the HTTP bytes.
#[test]
fn tls_bulk_moves_large_bodies() {
    let body = 256 * 1024;
    let run = tls_run("bulk", 2, body, &["--request-bytes", "100000"]);
    let r = &run.report;
    run.no_errors();
    let requests = run.requests();
    assert!(requests > 5.0, "{r}");
    assert!(run.served as f64 >= requests && run.served as f64 <= requests + 2.0);
    let secs = num(r, &["duration_s"]);
    let rx = num(r, &["rx_gbit_per_s"]) * 1e9 / 8.0 * secs;
    let tx = num(r, &["tx_gbit_per_s"]) * 1e9 / 8.0 * secs;
    assert!(rx >= requests * body as f64 * 0.999, "{r}");
    assert!(tx >= requests * 100_000.0 * 0.999, "{r}");
}

/// `--cacert`: the right CA and name verify; another CA, or no name for a certificate
/// that has none but `localhost`, fails every handshake: counted, the cause in the
/// report, and the run exits non-zero as any run with no request completed does.
#[test]
fn tls_certificates_are_verified_with_cacert() {
    let served = Arc::new(AtomicUsize::new(0));
    let pki = Pki::new();
    let other = Pki::new();
    let b = tls_server(&pki, 5, Arc::clone(&served));
    let target = b.addr.to_string();
    let ca = pki.ca_file.to_str().unwrap();
    let wrong = other.ca_file.to_str().unwrap();
    let base = [
        "--target",
        &target,
        "--tls",
        "--mode",
        "close",
        "--connections",
        "2",
        "--duration",
        "300ms",
    ];
    let ok = bench(&[&base[..], &["--cacert", ca, "--sni", "localhost"]].concat());
    assert!(num(&ok, &["requests"]) > 0.0, "{ok}");
    assert_eq!(ok["tls"]["sni"], "localhost");
    for flags in [
        ["--cacert", wrong, "--sni", "localhost"],
        ["--cacert", ca, "--sni", "127.0.0.1"],
    ] {
        let r = bench_failing(&[&base[..], &flags].concat());
        assert_eq!(num(&r, &["requests"]), 0.0, "{r}");
        let failures = num(&r, &["tls", "handshake_failures"]);
        assert!(failures > 0.0, "{r}");
        assert_eq!(num(&r, &["errors", "tls_handshake"]), failures, "{r}");
        assert_eq!(num(&r, &["tls", "handshakes_full"]), 0.0, "{r}");
        let why = r["tls"]["first_failure"].as_str().unwrap_or_default();
        assert!(why.contains("certificate"), "{r}");
    }
}

/// The text report names the TLS figures on a TLS run, and only there.
#[test]
fn tls_text_report() {
    let pki = Pki::new();
    let b = tls_server(&pki, 5, Arc::new(AtomicUsize::new(0)));
    let target = b.addr.to_string();
    let text = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["bench", "--target", &target, "--duration", "300ms"])
            .args(["--connections", "2", "--mode", "close"])
            .args(extra)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let tls = text(&["--tls", "--insecure", "--resume"]);
    for word in [
        "handshakes/s",
        "full",
        "resumed",
        "tls versions",
        "tls handshake",
        "1.3",
    ] {
        assert!(tls.contains(word), "{word} missing in:\n{tls}");
    }
    let served = Arc::new(AtomicUsize::new(0));
    let plain = http_backend("hi", served);
    let target = plain.addr.to_string();
    let out = Command::new(BIN)
        .args(["bench", "--target", &target, "--duration", "300ms"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("handshake"), "{text}");
}
