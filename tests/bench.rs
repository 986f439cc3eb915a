//! `sluice bench` against real servers on loopback: its counts match what the server
//! saw, and each kind of failure is reported as such.

mod common;

use common::*;
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

fn bench_status(args: &[&str]) -> (bool, serde_json::Value, String) {
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
    assert!(
        requests > 100,
        "a loopback server answers more than 100 requests/s: {r}"
    );
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
    ] {
        assert_eq!(num(&r, &["errors", kind]), 0.0, "{kind}: {r}");
    }
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
    use std::io::Write;
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
