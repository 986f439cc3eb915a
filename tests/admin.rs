//! The admin port: HAProxy-compatible CSV stats, Prometheus metrics, health check,
//! and 4xx for bad requests — fetched with curl, as operators' scripts do.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;

both_io!(
    csv_counts_sessions_and_marks_dead_servers,
    metrics_follow_the_traffic,
    http_bytes_out_count_with_keep_alive_backends,
    refusals_on_the_shared_http_listener_are_counted_and_logged,
    unrouted_requests_and_failed_reloads_are_counted,
);

fn curl(url: &str) -> (u16, String) {
    curl_with(url, &[])
}

/// `curl` with extra request headers (`"Name: value"`).
fn curl_with(url: &str, headers: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}", url])
        .args(headers.iter().flat_map(|h| ["-H", h]))
        .output()
        .expect("curl is installed");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

fn config(io: &str, backends: &[SocketAddr]) -> String {
    server(io, "")
        + "[admin]\nlisten = \"127.0.0.1:0\"\n"
        + &service("app2", "roundrobin", backends)
}

/// (svname → row as column name → value) of one proxy in the CSV.
fn rows(csv: &str, proxy: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .filter(|r: &std::collections::HashMap<String, String>| r["pxname"] == proxy)
        .collect()
}

fn csv_counts_sessions_and_marks_dead_servers(io: &str) {
    let a = Backend::echo();
    let mut b = Backend::echo();
    let lb = Sluice::start(&config(io, &[a.addr, b.addr]));
    let (vip, admin) = (lb.addr("app2"), lb.admin());
    let url = format!("http://{admin}/haproxy?stats;csv");

    let (code, csv) = curl(&url);
    assert_eq!(code, 200);
    let want = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/haproxy-2.6-stat-header.csv"
    ))
    .unwrap();
    // HAProxy 2.6 names one column "-"; sluice names it "srid", as later versions
    // do, so that the header makes a Python namedtuple (Marathon-LB's zdd.py).
    assert_eq!(
        csv.lines().next().unwrap(),
        want.trim_end().replace(",-,", ",srid,"),
        "HAProxy 2.6's header, column for column"
    );
    let r = rows(&csv, "app2");
    let names: Vec<&str> = r.iter().map(|x| x["svname"].as_str()).collect();
    let (sa, sb) = (
        a.addr.to_string().replace(['.', ':'], "_"),
        b.addr.to_string().replace(['.', ':'], "_"),
    );
    let mut servers = vec![sa.as_str(), sb.as_str()];
    servers.sort();
    assert_eq!(names, [&["FRONTEND"][..], &servers, &["BACKEND"]].concat());

    // Three held connections show as current sessions (what zero-downtime deploy
    // scripts poll); then 10 more short ones add to the totals.
    let mut held: Vec<_> = (0..3).map(|_| connect(vip)).collect();
    for c in held.iter_mut() {
        assert_eq!(roundtrip(c, b"x"), b"x");
    }
    let r = rows(&curl(&url).1, "app2");
    assert_eq!(r[0]["scur"], "3", "FRONTEND scur");
    assert_eq!(r[3]["scur"], "3", "BACKEND scur");
    drop(held);
    for _ in 0..10 {
        let mut c = connect(vip);
        assert_eq!(roundtrip(&mut c, b"y"), b"y");
    }
    let r = wait_for("sessions to end", || {
        let r = rows(&curl(&url).1, "app2");
        (r[0]["scur"] == "0").then_some(r)
    });
    assert_eq!(r[0]["stot"], "13");
    let per_server: u64 = r[1..3]
        .iter()
        .map(|x| x["stot"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(per_server, 13);
    assert!(r[1..3].iter().all(|x| x["status"] == "UP"));

    // A dead server is marked DOWN after its first refused connect.
    b.kill();
    for _ in 0..4 {
        let mut c = connect(vip);
        assert_eq!(roundtrip(&mut c, b"z"), b"z");
    }
    let r = rows(&curl(&url).1, "app2");
    let dead = r.iter().find(|x| x["svname"] == sb).unwrap();
    assert_eq!(dead["status"], "DOWN");
    assert!(dead["econ"].parse::<u64>().unwrap() >= 1);
    assert_eq!(
        r[3]["status"], "UP",
        "the backend as a whole is up while one server is"
    );
    // The page for people shows the same.
    let (code, html) = curl(&format!("http://{admin}/haproxy?stats"));
    assert_eq!(code, 200);
    assert!(html.contains("data-service=\"app2\""), "{html}");
    assert!(
        html.contains(&format!("data-svname=\"{sb}\" data-status=\"DOWN\"")),
        "{html}"
    );
    assert!(
        html.contains(&format!("data-svname=\"{sa}\" data-status=\"UP\"")),
        "{html}"
    );
}

fn metrics_follow_the_traffic(io: &str) {
    let a = Backend::echo();
    let lb = Sluice::start(&config(io, &[a.addr]));
    let (vip, admin) = (lb.addr("app2"), lb.admin());
    let mut c = connect(vip);
    assert_eq!(roundtrip(&mut c, b"hello"), b"hello");
    drop(c);
    let (code, text) = curl(&format!("http://{admin}/metrics"));
    assert_eq!(code, 200);
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} missing:\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        value("sluice_service_connections_total{service=\"app2\"}"),
        1.0
    );
    assert_eq!(
        value("sluice_service_bytes_in_total{service=\"app2\"}"),
        5.0
    );
    assert_eq!(
        value("sluice_service_bytes_out_total{service=\"app2\"}"),
        5.0
    );
    assert_eq!(value("sluice_backend_up{service=\"app2\""), 1.0);
    assert!(text.contains("# TYPE sluice_shard_accepts_total counter"));
    assert!(text.contains("# TYPE sluice_backend_connect_seconds histogram"));
    assert_eq!(
        value("sluice_service_connect_seconds_count{service=\"app2\"}"),
        1.0
    );
    assert_eq!(
        value("sluice_service_connect_seconds_bucket{service=\"app2\",le=\"+Inf\"}"),
        1.0
    );
    let accepts: f64 = text
        .lines()
        .filter(|l| l.starts_with("sluice_shard_accepts_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(accepts, 1.0);
}

#[test]
fn health_check_and_bad_requests() {
    let a = Backend::echo();
    let lb = Sluice::start(&config("auto", &[a.addr]));
    let admin = lb.admin();
    assert_eq!(
        curl(&format!("http://{admin}/_haproxy_health_check")).0,
        200
    );
    assert_eq!(curl(&format!("http://{admin}/nope")).0, 404);
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg(format!("http://{admin}/metrics"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "405");
    // Not HTTP at all: 400, and the connection is closed.
    let mut s = std::net::TcpStream::connect(admin).unwrap();
    s.write_all(b"\x16\x03\x01garbage\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // The data plane did not notice.
    let mut c = connect(lb.addr("app2"));
    assert_eq!(roundtrip(&mut c, b"still"), b"still");
}

/// Read what the admin port answers on `s` (to its close).
fn answer(mut s: std::net::TcpStream) -> String {
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A client dribbling its head a byte every 1.5 s and 40 silent ones hold the slots
/// they took and nothing else: the health check is answered meanwhile (before curl's
/// bound, far below what serving them one after the other would take), and the
/// dribbler is cut at its deadline with 408 however steadily it sends.
#[test]
fn slow_clients_do_not_hold_the_admin_port() {
    let a = Backend::echo();
    let lb = Sluice::start(&config("auto", &[a.addr]));
    let admin = lb.admin();
    let mut dribbler = std::net::TcpStream::connect(admin).unwrap();
    let reader = dribbler.try_clone().unwrap();
    let cut = std::thread::spawn(move || answer(reader));
    std::thread::spawn(move || {
        for &b in b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" {
            if dribbler.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1500));
        }
    });
    let silent: Vec<_> = (0..40)
        .map(|_| std::net::TcpStream::connect(admin).unwrap())
        .collect();
    for _ in 0..3 {
        assert_eq!(
            curl(&format!("http://{admin}/_haproxy_health_check")),
            (200, "OK\n".to_owned())
        );
    }
    let cut = cut.join().unwrap();
    assert!(cut.starts_with("HTTP/1.1 408"), "{cut}");
    drop(silent);
    assert!(metric(admin, "sluice_admin_timeouts_total") >= 1.0);
}

/// Past `MAX_CONNECTIONS` open admin connections a new one is answered 503 at once
/// and counted; once the crowd leaves, the port answers again.
#[test]
fn admin_connections_are_bounded() {
    let a = Backend::echo();
    let lb = Sluice::start(&config("auto", &[a.addr]));
    let admin = lb.admin();
    let limit = sluice::admin::MAX_CONNECTIONS;
    // Every slot held by a client that never finishes its head.
    let held: Vec<_> = (0..limit)
        .map(|_| std::net::TcpStream::connect(admin).unwrap())
        .collect();
    // A health checker still gets its answer: the oldest silent client makes room.
    for _ in 0..3 {
        assert_eq!(
            curl(&format!("http://{admin}/_haproxy_health_check")),
            (200, "OK\n".to_owned())
        );
    }
    let first = held.into_iter().next().unwrap();
    let cut = answer(first);
    assert!(cut.starts_with("HTTP/1.1 408"), "{cut}");
    assert!(metric(admin, "sluice_admin_evicted_total") >= 1.0);
}

/// A page that changes state refuses what a browser says comes from another site, or
/// from another origin than the admin port's; scripts and the user's own requests
/// pass.
#[test]
fn signals_refuse_cross_site_requests() {
    let a = Backend::echo();
    let lb = Sluice::start(&config("auto", &[a.addr]));
    let admin = lb.admin();
    let hup = format!("http://{admin}/_mlb_signal/hup");
    let own = format!("Origin: http://{admin}");
    for refused in [
        &["Sec-Fetch-Site: cross-site"][..],
        &["Sec-Fetch-Site: same-site"],
        &["Origin: http://evil.example"],
        &["Origin: null"],
        &["Sec-Fetch-Site: same-origin", "Host: rebound.example"],
    ] {
        assert_eq!(curl_with(&hup, refused).0, 403, "{refused:?}");
    }
    for allowed in [
        &[][..],
        &["Sec-Fetch-Site: none"],
        &["Sec-Fetch-Site: same-origin", own.as_str()],
    ] {
        assert_eq!(curl_with(&hup, allowed).0, 200, "{allowed:?}");
    }
    // Pages that only read are not affected.
    let stats = format!("http://{admin}/haproxy?stats;csv");
    assert_eq!(curl_with(&stats, &["Sec-Fetch-Site: cross-site"]).0, 200);
    assert_eq!(metric(admin, "sluice_admin_denied_total"), 5.0);
}

/// With `[admin] token`, every page but the health check needs the bearer token.
#[test]
fn token_guards_every_page_but_the_health_check() {
    let a = Backend::echo();
    let token = "0123456789abcdef0123456789abcdef";
    let lb = Sluice::start(&config("auto", &[a.addr]).replace(
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
        &format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\"\n"),
    ));
    let admin = lb.admin();
    let good = format!("Authorization: Bearer {token}");
    assert_eq!(
        curl(&format!("http://{admin}/_haproxy_health_check")).0,
        200
    );
    for page in [
        "/metrics",
        "/haproxy?stats;csv",
        "/haproxy?stats",
        "/_haproxy_getconfig",
        "/v1/vips",
        "/_mlb_signal/hup",
        "/nope",
    ] {
        let url = format!("http://{admin}{page}");
        assert_eq!(curl(&url).0, 401, "{page}");
        for wrong in [
            "Authorization: Bearer 0123456789abcdef0123456789abcdeX",
            "Authorization: Bearer 0123456789abcdef",
            "Authorization: Basic MDEyMzQ1Njc4OWFiY2RlZg==",
        ] {
            assert_eq!(curl_with(&url, &[wrong]).0, 401, "{page} {wrong}");
        }
        let want = if page == "/nope" { 404 } else { 200 };
        assert_eq!(curl_with(&url, &[&good]).0, want, "{page}");
    }
    // The refusal says what it wants.
    let mut s = std::net::TcpStream::connect(admin).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let refused = answer(s);
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(
        refused.contains(
            "\r\nWWW-Authenticate: Basic realm=\"sluice admin\", Bearer realm=\"sluice admin\"\r\n"
        ),
        "{refused}"
    );
    // A browser (or `curl -u`) gives the token as the password, any user name.
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-u"])
        .arg(format!("operator:{token}"))
        .arg(format!("http://{admin}/haproxy?stats"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "200");
}

/// Without `[marathon]` there is nothing to re-fetch: `/_mlb_signal/hup` reloads the
/// file, as SIGHUP does.
#[test]
fn hup_without_marathon_reloads_the_file() {
    let (a, b) = (Backend::echo(), Backend::echo());
    let lb = Sluice::start(&config("auto", &[a.addr]));
    let admin = lb.admin();
    let two = config("auto", &[a.addr]) + &service("more", "roundrobin", &[b.addr]);
    std::fs::write(&lb.config, two).unwrap();
    let (code, body) = curl(&format!("http://{admin}/_mlb_signal/hup"));
    assert_eq!(code, 200, "{body}");
    lb.wait_log("reload", |l| l.contains("configuration reloaded"));
    let mut c = wait_for("the new service", || {
        lb.listening()
            .iter()
            .find(|(n, _)| n == "more")
            .and_then(|(_, addr)| std::net::TcpStream::connect(addr).ok())
    });
    assert_eq!(roundtrip(&mut c, b"new"), b"new");
}

/// While sluice drains after SIGTERM, the health check fails, so balancers in front
/// stop sending before the listeners go.
#[test]
fn health_check_fails_while_draining() {
    let a = Backend::echo();
    let lb = Sluice::start(&config("auto", &[a.addr]));
    let admin = lb.admin();
    let health = format!("http://{admin}/_haproxy_health_check");
    assert_eq!(curl(&health).0, 200);
    // A live connection keeps the drain going (shutdown_grace_ms is 5 s).
    let mut held = connect(lb.addr("app2"));
    assert_eq!(roundtrip(&mut held, b"x"), b"x");
    lb.signal("TERM");
    wait_for("the health check to fail", || {
        (curl(&health).0 == 503).then_some(())
    });
}

/// Two services naming one backend address keep their own server counters: traffic
/// on one shows in its rows only, in the CSV and in `/metrics`.
#[test]
fn services_sharing_a_backend_count_apart() {
    let a = Backend::echo();
    let lb =
        Sluice::start(&(config("auto", &[a.addr]) + &service("quiet", "roundrobin", &[a.addr])));
    let admin = lb.admin();
    for _ in 0..3 {
        let mut c = connect(lb.addr("app2"));
        assert_eq!(roundtrip(&mut c, b"hello"), b"hello");
    }
    let server = a.addr.to_string().replace(['.', ':'], "_");
    let row = |proxy: &str| {
        let csv = curl(&format!("http://{admin}/haproxy?stats;csv")).1;
        rows(&csv, proxy)
            .into_iter()
            .find(|r| r["svname"] == server)
            .unwrap()
    };
    let busy = wait_for("the busy server's bytes", || {
        let r = row("app2");
        (r["bout"] == "15").then_some(r)
    });
    assert_eq!((busy["stot"].as_str(), busy["bin"].as_str()), ("3", "15"));
    let quiet = row("quiet");
    for col in ["scur", "stot", "bin", "bout", "econ"] {
        assert_eq!(quiet[col], "0", "quiet's {col}");
    }
    let (_, text) = curl(&format!("http://{admin}/metrics"));
    let sample = |service: &str| -> String {
        let prefix = format!("sluice_backend_connections_total{{service=\"{service}\",");
        text.lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{prefix} missing:\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        (sample("app2").as_str(), sample("quiet").as_str()),
        ("3", "0")
    );
}

/// One HTTP/1.1 exchange on a kept-alive client connection; returns how many bytes
/// the response took on the wire.
fn exchange(c: &mut std::net::TcpStream, host: &str) -> usize {
    c.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("a length-delimited response");
            if got.len() >= end + 4 + length {
                assert_eq!(got.len(), end + 4 + length, "one response at a time");
                return got.len();
            }
        }
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "closed mid-response");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Bytes sent to HTTP clients are counted when the backend keeps its connection
/// alive (the response ends before it is written out), on the service and on the
/// server, in `/metrics` and the CSV.
fn http_bytes_out_count_with_keep_alive_backends(io: &str) {
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a = http_backend("hello from a", served);
    let cfg = server(io, "")
        + "[admin]\nlisten = \"127.0.0.1:0\"\n"
        + &service("web", "roundrobin", &[a.addr])
            .replace("[[service]]\n", "[[service]]\nmode = \"http\"\n");
    let lb = Sluice::start(&cfg);
    let admin = lb.admin();
    let mut c = connect(lb.addr("web"));
    let sent: usize = (0..5).map(|_| exchange(&mut c, "web")).sum();
    let csv_bout = || {
        let csv = curl(&format!("http://{admin}/haproxy?stats;csv")).1;
        let r = rows(&csv, "web");
        (r[0]["bout"].clone(), r[1]["bout"].clone())
    };
    assert_eq!(
        metric(admin, "sluice_service_bytes_out_total"),
        sent as f64,
        "bytes written to the client"
    );
    assert_eq!(metric(admin, "sluice_backend_bytes_out_total"), sent as f64);
    assert_eq!(csv_bout(), (sent.to_string(), sent.to_string()));
    assert!(metric(admin, "sluice_service_bytes_in_total") > 0.0);
    let (_, json) = curl(&format!("http://{admin}/_haproxy_getconfig"));
    assert!(json.contains("\"mode\":\"http\""), "{json}");
}

/// Clients refused at `max_connections` on the shared `[http]` listener (no service
/// of its own to count them on) are counted on the shard and logged.
fn refusals_on_the_shared_http_listener_are_counted_and_logged(io: &str) {
    let a = Backend::echo();
    // Two workers, one connection each.
    let cfg = server(io, "max_connections = 2")
        + "[admin]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n"
        + &service("web", "roundrobin", &[a.addr]).replace(
            "[[service]]\n",
            "[[service]]\nmode = \"http\"\nvhosts = [\"web\"]\n",
        );
    let lb = Sluice::start(&cfg);
    let http = lb.http();
    // Heads begun and never finished hold their connections; at most two are admitted.
    let held: Vec<_> = (0..6)
        .map(|_| {
            let mut c = connect(http);
            c.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            c
        })
        .collect();
    let refused = wait_for("refusals counted", || {
        let n = metric(lb.admin(), "sluice_shard_refused_total");
        (n >= 4.0).then_some(n)
    });
    assert!(refused <= 6.0, "{refused}");
    lb.wait_log("refusal logged", |l| l.contains("max_connections reached"));
    drop(held);
}

/// sluice's own answers on the shared HTTP listener (no route: 404) and rejected
/// reloads show on `/metrics`.
fn unrouted_requests_and_failed_reloads_are_counted(io: &str) {
    let a = Backend::echo();
    let cfg = server(io, "")
        + "[admin]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n"
        + &service("web", "roundrobin", &[a.addr]).replace(
            "[[service]]\n",
            "[[service]]\nmode = \"http\"\nvhosts = [\"web\"]\n",
        );
    let lb = Sluice::start(&cfg);
    for _ in 0..3 {
        let r = common::http::raw(lb.http(), b"GET / HTTP/1.1\r\nHost: nowhere\r\n\r\n");
        assert_eq!(common::http::status(&r), 404, "{r}");
    }
    let r = common::http::raw(lb.http(), b"GET /a#b HTTP/1.1\r\nHost: web\r\n\r\n");
    assert_eq!(common::http::status(&r), 400, "{r}");
    let counted = wait_for("front responses counted", || {
        let n = metric(lb.admin(), "sluice_http_front_responses_total");
        (n >= 4.0).then_some(n)
    });
    assert_eq!(counted, 4.0);
    assert_eq!(metric(lb.admin(), "sluice_reload_failures_total"), 0.0);
    assert!(!lb.reload("[server]\nworkers = \"many\"\n"));
    assert_eq!(metric(lb.admin(), "sluice_reload_failures_total"), 1.0);
}
