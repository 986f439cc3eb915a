//! Data-plane deadlines are exact: a connect timeout, an HTTP head timeout and an HTTP
//! keep-alive timeout each fire at their time — never before it, and within
//! [`LATE_MS`] after it rather than at the next once-a-second sweep — on both I/O
//! backends.
//!
//! These tests assert on time because the time is the behaviour under test. The lower
//! bound is deterministic (a deadline must not fire early; [`SLACK_MS`] covers clock
//! granularity); the upper bound leaves a deadline [`LATE_MS`] to be noticed. Every
//! measurement is printed, so a run's log shows how close each one came.

mod common;

use common::http::{status, HttpServer};
use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The one deadline every test configures.
const TIMEOUT_MS: u64 = 300;
/// How much earlier than its deadline a close may be seen (clock granularity, and the
/// client starting its watch after sluice started the deadline: under the parallel
/// tests, the client's thread may read the last response several milliseconds after
/// sluice wrote it — 7 ms seen).
const SLACK_MS: u64 = 50;
/// How late after its deadline a timeout may fire.
const LATE_MS: u64 = 100;

/// The loopback address of the good backend in the retry tests. sluice sorts a
/// service's backends by address, so a black hole on `127.0.0.1` comes first, and
/// round-robin (each shard's cursor starting at the first backend) tries it first.
const AFTER_THE_HOLE: &str = "127.0.0.2";

both_io!(
    l4_connect_timeout_closes_the_client,
    l4_connect_timeout_moves_to_the_next_backend,
    http_connect_timeout_answers_502,
    http_connect_timeout_moves_to_the_next_backend,
    http_header_timeout_answers_408,
    http_keepalive_timeout_closes_the_idle_client,
);

/// Print how long `what` took and check it against the deadline.
fn assert_on_time(io: &str, what: &str, elapsed: Duration) {
    let ms = elapsed.as_secs_f64() * 1000.0;
    eprintln!("deadline [{io}] {what}: {ms:.1} ms (deadline {TIMEOUT_MS} ms)");
    assert!(
        elapsed >= Duration::from_millis(TIMEOUT_MS - SLACK_MS),
        "[{io}] {what} after {ms:.1} ms: before its {TIMEOUT_MS} ms deadline"
    );
    assert!(
        elapsed < Duration::from_millis(TIMEOUT_MS + LATE_MS),
        "[{io}] {what} after {ms:.1} ms: more than {LATE_MS} ms after its {TIMEOUT_MS} ms deadline"
    );
}

/// Read until `want` has arrived; returns what was read and the moment it arrived.
fn read_until(s: &mut TcpStream, want: &[u8]) -> (Vec<u8>, Instant) {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => panic!(
                "closed before {:?} arrived: {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&got)
            ),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => panic!(
                "waiting for {:?}: {e}; got {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&got)
            ),
        }
        if got.windows(want.len()).any(|w| w == want) {
            return (got, Instant::now());
        }
    }
}

/// Read until sluice closes the connection (end of stream or reset); returns any bytes
/// that came first and the moment of the close.
fn read_until_closed(s: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return (got, Instant::now()),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, Instant::now()),
            Err(e) => panic!(
                "waiting for the close: {e}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

/// `[server]` with `server_extra`, `[http]` with `http_extra` (no shared listener).
fn config(io: &str, server_extra: &str, http_extra: &str, services: &str) -> String {
    server(io, server_extra) + &format!("[http]\n{http_extra}\n") + services
}

/// An HTTP service on a port of its own, round-robin over `backends`.
fn http_service(name: &str, backends: &[SocketAddr]) -> String {
    service(name, "roundrobin", backends).replace("[[service]]\n", "[[service]]\nmode = \"http\"\n")
}

/// A GET that asks for the connection to close after its response.
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

// ---- connect timeout, L4 ------------------------------------------------------------

/// The only backend never answers the connect: the client is closed once the connect
/// timeout has passed, there being no other backend to try.
fn l4_connect_timeout_closes_the_client(io: &str) {
    let hole = blackhole();
    let cfg = server(io, &format!("connect_timeout_ms = {TIMEOUT_MS}"))
        + &service("svc", "roundrobin", &[hole.addr]);
    let lb = Sluice::start(&cfg);
    let vip = lb.addr("svc");
    let start = Instant::now();
    let mut c = connect(vip);
    c.write_all(b"x").unwrap();
    let (got, closed) = read_until_closed(&mut c);
    assert!(got.is_empty(), "{got:?}");
    assert_on_time(io, "L4 connect timeout, client closed", closed - start);
}

/// The first backend tried never answers the connect: the client gets the next
/// backend's answer once the connect timeout has passed.
fn l4_connect_timeout_moves_to_the_next_backend(io: &str) {
    let hole = blackhole();
    let good = Backend::spawn_at(AFTER_THE_HOLE, |mut c| {
        let _ = c.write_all(b"good");
    });
    assert!(hole.addr < good.addr, "the black hole is tried first");
    let cfg = server(io, &format!("connect_timeout_ms = {TIMEOUT_MS}"))
        + &service("svc", "roundrobin", &[hole.addr, good.addr]);
    let lb = Sluice::start(&cfg);
    let vip = lb.addr("svc");
    let start = Instant::now();
    let mut c = connect(vip);
    c.write_all(b"x").unwrap();
    let (_, answered) = read_until(&mut c, b"good");
    assert_on_time(
        io,
        "L4 connect timeout, next backend answered",
        answered - start,
    );
    assert_eq!(good.accepted(), 1);
}

// ---- connect timeout, HTTP ----------------------------------------------------------

/// The only backend never answers the connect: 502 once the connect timeout has
/// passed (a connect was tried and failed, none is left).
fn http_connect_timeout_answers_502(io: &str) {
    let hole = blackhole();
    let cfg = config(
        io,
        &format!("connect_timeout_ms = {TIMEOUT_MS}"),
        "",
        &http_service("web", &[hole.addr]),
    );
    let lb = Sluice::start(&cfg);
    let mut c = connect(lb.addr("web"));
    let start = Instant::now();
    c.write_all(GET).unwrap();
    let (head, answered) = read_until(&mut c, b"\r\n");
    let head = String::from_utf8_lossy(&head).into_owned();
    assert_eq!(status(&head), 502, "{head}");
    assert_on_time(io, "HTTP connect timeout, 502", answered - start);
}

/// The first backend tried never answers the connect: the next backend's response
/// arrives once the connect timeout has passed.
fn http_connect_timeout_moves_to_the_next_backend(io: &str) {
    let hole = blackhole();
    let good = HttpServer::start_at(AFTER_THE_HOLE, "good");
    assert!(hole.addr < good.addr, "the black hole is tried first");
    let cfg = config(
        io,
        &format!("connect_timeout_ms = {TIMEOUT_MS}"),
        "",
        &http_service("web", &[hole.addr, good.addr]),
    );
    let lb = Sluice::start(&cfg);
    let mut c = connect(lb.addr("web"));
    let start = Instant::now();
    c.write_all(GET).unwrap();
    let (mut response, answered) = read_until(&mut c, b"\r\n");
    assert_on_time(
        io,
        "HTTP connect timeout, next backend answered",
        answered - start,
    );
    c.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    assert_eq!(status(&response), 200, "{response}");
    assert!(response.ends_with("\r\n\r\ngood"), "{response}");
    assert_eq!(good.requests().len(), 1);
}

// ---- client timeouts, HTTP ----------------------------------------------------------

/// A request head that stops halfway: 408 once `header_timeout_ms` has passed since
/// its first byte.
fn http_header_timeout_answers_408(io: &str) {
    let a = HttpServer::start("a");
    let cfg = config(
        io,
        "",
        &format!("header_timeout_ms = {TIMEOUT_MS}"),
        &http_service("web", &[a.addr]),
    );
    let lb = Sluice::start(&cfg);
    let mut c = connect(lb.addr("web"));
    let start = Instant::now();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let (head, answered) = read_until(&mut c, b"\r\n");
    let head = String::from_utf8_lossy(&head).into_owned();
    assert_eq!(status(&head), 408, "{head}");
    assert_on_time(io, "HTTP header timeout, 408", answered - start);
    assert!(a.requests().is_empty());
}

/// After one complete exchange, a kept-alive client that sends nothing more is closed
/// once `keepalive_timeout_ms` has passed since its response.
fn http_keepalive_timeout_closes_the_idle_client(io: &str) {
    let a = HttpServer::start("a");
    let cfg = config(
        io,
        "",
        &format!("keepalive_timeout_ms = {TIMEOUT_MS}"),
        &http_service("web", &[a.addr]),
    );
    let lb = Sluice::start(&cfg);
    let mut c = connect(lb.addr("web"));
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // The backend answers `a` with a length of 1: the response is complete with it.
    let (response, _) = read_until(&mut c, b"\r\n\r\na");
    let start = Instant::now();
    let response = String::from_utf8_lossy(&response).into_owned();
    assert_eq!(status(&response), 200, "{response}");
    let (more, closed) = read_until_closed(&mut c);
    assert!(more.is_empty(), "{more:?}");
    assert_on_time(io, "HTTP keep-alive timeout, client closed", closed - start);
}
