//! L4 forwarding end to end: a real `sluice run` between real sockets on loopback,
//! once per I/O backend.

mod common;

use common::*;
use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::thread;

both_io!(
    short_connections_reach_both_backends,
    bulk_recv_send_path_is_intact,
    bulk_splice_path_is_intact,
    half_close_keeps_the_other_direction,
    backend_reset_resets_the_client,
    two_thousand_concurrent_connections,
    dead_backend_costs_no_connection,
    reload_keeps_established_connections,
    invalid_reload_keeps_serving,
    sigterm_drains_then_exits_zero,
    max_connections_refuses_the_excess,
);

fn short_connections_reach_both_backends(io: &str) {
    let a = Backend::named("alpha");
    let b = Backend::named("beta");
    let cfg = server(io, "") + &service("vip", "maglev", &[a.addr, b.addr]);
    let lb = Sluice::start(&cfg);
    let vip = lb.addr("vip");
    let mut seen = HashSet::new();
    for _ in 0..200 {
        let got = fetch(vip).expect("connection through the VIP");
        assert!(got == "alpha" || got == "beta", "unexpected answer {got:?}");
        seen.insert(got);
    }
    assert_eq!(
        seen.len(),
        2,
        "Maglev on the tuple spreads clients over both backends"
    );
    assert_eq!(a.accepted() + b.accepted(), 200);
}

const BULK: usize = 64 << 20;

fn bulk(io: &str, splice: &str) {
    let (b, results) = bulk_backend(BULK);
    let cfg = server(io, &format!("splice = \"{splice}\"")) + &service("bulk", "maglev", &[b.addr]);
    let lb = Sluice::start(&cfg);
    let c = connect(lb.addr("bulk"));
    let w = c.try_clone().unwrap();
    let sender = thread::spawn(move || send_stream(w, 1, BULK));
    let (down_bytes, down_digest) = drain_stream(c);
    let up_digest = sender.join().unwrap();
    assert_eq!(down_bytes, BULK, "backend → client byte count");
    assert_eq!(
        down_digest,
        expected_digest(2, BULK),
        "backend → client bytes intact"
    );
    let (up_bytes, got_up_digest) = results.recv_timeout(PATIENCE).unwrap();
    assert_eq!(up_bytes, BULK, "client → backend byte count");
    assert_eq!(got_up_digest, up_digest, "client → backend bytes intact");
}

fn bulk_recv_send_path_is_intact(io: &str) {
    bulk(io, "never");
}

fn bulk_splice_path_is_intact(io: &str) {
    bulk(io, "always");
}

fn half_close_keeps_the_other_direction(io: &str) {
    // The backend reads to end of stream first, then answers: only a forwarded FIN
    // (with the reverse direction still open) lets the answer through.
    let b = Backend::spawn(|mut c| {
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        c.write_all(format!("got {} bytes", got.len()).as_bytes())
            .unwrap();
    });
    let lb = Sluice::start(&(server(io, "") + &service("hc", "roundrobin", &[b.addr])));
    let mut c = connect(lb.addr("hc"));
    c.write_all(b"hello, half-closed world").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "got 24 bytes");
}

fn backend_reset_resets_the_client(io: &str) {
    let b = Backend::spawn(|mut c| {
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).unwrap();
        let s = socket2::SockRef::from(&c);
        s.set_linger(Some(std::time::Duration::ZERO)).unwrap();
        drop(c); // RST
    });
    let lb = Sluice::start(&(server(io, "") + &service("rst", "roundrobin", &[b.addr])));
    let mut c = connect(lb.addr("rst"));
    c.write_all(b"hello").unwrap();
    let mut buf = [0u8; 16];
    let err = c
        .read(&mut buf)
        .expect_err("the client sees the reset, not a clean end");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

fn two_thousand_concurrent_connections(io: &str) {
    let b = Backend::echo();
    let lb = Sluice::start(&(server(io, "") + &service("many", "leastconn", &[b.addr])));
    let vip = lb.addr("many");
    // All open at once, then each used.
    let mut conns: Vec<_> = (0..2000).map(|_| connect(vip)).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        let msg = format!("connection {i}");
        assert_eq!(roundtrip(c, msg.as_bytes()), msg.as_bytes());
    }
    for c in &conns {
        c.shutdown(Shutdown::Write).unwrap();
    }
    for mut c in conns {
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
    // One backend connection per client — or more, when a loaded machine lets the
    // backend's accept queue overflow and a connect is retried after its timeout (the
    // abandoned attempt is then accepted too, and closed).
    assert!(b.accepted() >= 2000, "{}", b.accepted());
}

fn dead_backend_costs_no_connection(io: &str) {
    let mut a = Backend::named("alpha");
    let b = Backend::named("beta");
    let lb = Sluice::start(&(server(io, "") + &service("ha", "maglev", &[a.addr, b.addr])));
    let vip = lb.addr("ha");
    for _ in 0..20 {
        fetch(vip).unwrap();
    }
    a.kill();
    for i in 0..200 {
        let got = fetch(vip).unwrap_or_else(|e| panic!("connection {i} failed: {e}"));
        assert_eq!(got, "beta", "connection {i} reached the survivor");
    }
}

fn reload_keeps_established_connections(io: &str) {
    let old = Backend::echo();
    let new = Backend::named("new");
    let lb = Sluice::start(&(server(io, "") + &service("svc", "maglev", &[old.addr])));
    let vip = lb.addr("svc");
    let mut conns: Vec<_> = (0..100).map(|_| connect(vip)).collect();
    for c in conns.iter_mut() {
        assert_eq!(roundtrip(c, b"before"), b"before");
    }
    assert!(lb.reload(&(server(io, "") + &service("svc", "maglev", &[new.addr]))));
    assert_eq!(
        lb.addr("svc"),
        vip,
        "the listening socket survives the reload"
    );
    // Established connections keep their backend...
    for c in conns.iter_mut() {
        assert_eq!(roundtrip(c, b"after"), b"after");
    }
    // ...and new ones follow the new list.
    for _ in 0..20 {
        assert_eq!(fetch(vip).unwrap(), "new");
    }
    assert_eq!(old.accepted(), 100);
}

fn invalid_reload_keeps_serving(io: &str) {
    let b = Backend::named("steady");
    let good = server(io, "") + &service("svc", "maglev", &[b.addr]);
    let lb = Sluice::start(&good);
    let vip = lb.addr("svc");
    assert!(!lb.reload("[server]\nworkers = \"two\"\n"));
    lb.wait_log("the error names the file position", |l| {
        l.contains("sluice.toml:2:11")
    });
    for _ in 0..10 {
        assert_eq!(fetch(vip).unwrap(), "steady");
    }
}

fn sigterm_drains_then_exits_zero(io: &str) {
    let b = Backend::echo();
    let mut lb = Sluice::start(&(server(io, "") + &service("svc", "roundrobin", &[b.addr])));
    let vip = lb.addr("svc");
    let mut c = connect(vip);
    assert_eq!(roundtrip(&mut c, b"one"), b"one");
    lb.signal("TERM");
    lb.wait_log("draining", |l| l.contains("draining"));
    // New connections are no longer accepted once the shards drop their listeners...
    wait_for("the listener to close", || {
        std::net::TcpStream::connect(vip).is_err().then_some(())
    });
    // ...while the established one still works.
    assert_eq!(roundtrip(&mut c, b"two"), b"two");
    assert!(
        lb.child.try_wait().unwrap().is_none(),
        "still running while a connection is open"
    );
    c.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    let status = lb.wait_exit();
    assert!(status.success(), "exit status {status}");
}

fn max_connections_refuses_the_excess(io: &str) {
    let b = Backend::echo();
    let cfg = format!("[server]\nworkers = 1\nio = \"{io}\"\nmax_connections = 3\n")
        + &service("svc", "roundrobin", &[b.addr]);
    let lb = Sluice::start(&cfg);
    let vip = lb.addr("svc");
    let mut held: Vec<_> = (0..3).map(|_| connect(vip)).collect();
    for c in held.iter_mut() {
        assert_eq!(roundtrip(c, b"x"), b"x");
    }
    // Past the limit a connection is closed at once, without reaching a backend.
    let mut extra = connect(vip);
    let _ = extra.write_all(b"y");
    let mut buf = [0u8; 1];
    let n = extra.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the fourth connection is refused");
    assert_eq!(b.accepted(), 3);
    // Room again once one closes.
    drop(held.pop());
    let mut again = wait_for("a free connection slot", || {
        let mut c = connect(vip);
        c.write_all(b"z").ok()?;
        let mut buf = [0u8; 1];
        (c.read(&mut buf).ok()? == 1).then_some(c)
    });
    assert_eq!(roundtrip(&mut again, b"w"), b"w");
}

mod more {
    use super::*;

    both_io!(
        client_reset_resets_the_backend,
        connect_timeout_moves_on,
        reload_adds_and_removes_services,
        idle_connections_are_closed,
        out_of_descriptors_pauses_and_recovers,
        splice_path_ping_pong,
    );
}

/// Small back-and-forth messages over a spliced flow: the shard must never block in a
/// read that has nothing to return.
fn splice_path_ping_pong(io: &str) {
    let b = Backend::echo();
    let lb =
        Sluice::start(&(server(io, "splice = \"always\"") + &service("sp", "maglev", &[b.addr])));
    let mut conns: Vec<_> = (0..4).map(|_| connect(lb.addr("sp"))).collect();
    for round in 0..20 {
        for c in conns.iter_mut() {
            let msg = format!("ping {round}");
            assert_eq!(roundtrip(c, msg.as_bytes()), msg.as_bytes());
        }
    }
}

fn client_reset_resets_the_backend(io: &str) {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let b = Backend::spawn(move |mut c| {
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).unwrap();
        c.write_all(b"ready").unwrap();
        // Wait for the reset to arrive through the balancer.
        let r = c.read(&mut buf);
        tx.lock().unwrap().send(r.map_err(|e| e.kind())).unwrap();
    });
    let lb = Sluice::start(&(server(io, "") + &service("rst", "roundrobin", &[b.addr])));
    let mut c = connect(lb.addr("rst"));
    assert_eq!(roundtrip(&mut c, b"hello"), b"ready");
    socket2::SockRef::from(&c)
        .set_linger(Some(std::time::Duration::ZERO))
        .unwrap();
    drop(c); // RST
    let seen = rx.recv_timeout(PATIENCE).unwrap();
    assert_eq!(
        seen,
        Err(ErrorKind::ConnectionReset),
        "the backend sees a reset, not a FIN"
    );
}

fn connect_timeout_moves_on(io: &str) {
    let hole = blackhole();
    let good = Backend::named("good");
    let cfg = server(io, "connect_timeout_ms = 300")
        + &service("svc", "roundrobin", &[hole.addr, good.addr]);
    let lb = Sluice::start(&cfg);
    let vip = lb.addr("svc");
    // Round-robin sends some first tries to the black hole; every one still arrives.
    for i in 0..6 {
        assert_eq!(fetch(vip).unwrap(), "good", "connection {i}");
    }
    assert!(good.accepted() >= 6);
}

fn reload_adds_and_removes_services(io: &str) {
    let a = Backend::named("a");
    let b = Backend::named("b");
    let lb = Sluice::start(&(server(io, "") + &service("one", "maglev", &[a.addr])));
    let one = lb.addr("one");
    let mut held = connect(one);
    assert!(lb.reload(&(server(io, "") + &service("two", "maglev", &[b.addr]))));
    let two = lb.addr("two");
    assert_eq!(fetch(two).unwrap(), "b");
    // The removed service's port closes; its established connection is untouched.
    wait_for("the removed service's port to close", || {
        std::net::TcpStream::connect(one).is_err().then_some(())
    });
    let mut got = String::new();
    held.read_to_string(&mut got).unwrap();
    assert_eq!(got, "a");
}

fn idle_connections_are_closed(io: &str) {
    let b = Backend::echo();
    let lb = Sluice::start(
        &(server(io, "idle_timeout_ms = 200") + &service("svc", "maglev", &[b.addr])),
    );
    let mut c = connect(lb.addr("svc"));
    assert_eq!(roundtrip(&mut c, b"ping"), b"ping");
    // Nothing more is sent: the balancer closes the connection (within a sweep).
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

fn out_of_descriptors_pauses_and_recovers(io: &str) {
    // Two limits of different parity: the last descriptor goes either to an accepted
    // client or to its backend socket, and both must pause accepting.
    for nofile in [64, 65] {
        out_of_descriptors_with(io, nofile);
    }
}

fn out_of_descriptors_with(io: &str, nofile: u32) {
    let b = Backend::echo();
    let cfg =
        format!("[server]\nworkers = 1\nio = \"{io}\"\n") + &service("svc", "maglev", &[b.addr]);
    // Few descriptors: the balancer runs out long before max_connections.
    let lb = Sluice::start_with_nofile(&cfg, nofile);
    let vip = lb.addr("svc");
    let mut conns = Vec::new();
    for _ in 0..60 {
        conns.push(connect(vip));
    }
    lb.wait_log("accepting paused", |l| l.contains("accept paused"));
    // The connections that got through work; then all close and new ones are served.
    let mut served = 0;
    for c in conns.iter_mut() {
        c.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        if c.write_all(b"x").is_ok() {
            let mut buf = [0u8; 1];
            if matches!(c.read(&mut buf), Ok(1)) {
                served += 1;
            }
        }
    }
    assert!(
        served > 0 && served < 60,
        "some but not all were served: {served}"
    );
    drop(conns);
    let mut c = wait_for("a fresh connection to be served", || {
        let mut c = connect(vip);
        c.set_read_timeout(Some(std::time::Duration::from_millis(500)))
            .unwrap();
        c.write_all(b"y").ok()?;
        let mut buf = [0u8; 1];
        (c.read(&mut buf).ok()? == 1).then_some(c)
    });
    assert_eq!(roundtrip(&mut c, b"z"), b"z");
}

mod ipv6 {
    use super::*;
    both_io!(ipv6_vip_to_ipv4_backends);
}

fn ipv6_vip_to_ipv4_backends(io: &str) {
    let b = Backend::named("v4");
    let cfg = server(io, "")
        + &format!(
            "[[service]]\nname = \"six\"\nlisten = \"[::1]:0\"\nbackends = [\"{}\"]\n",
            b.addr
        );
    let lb = Sluice::start(&cfg);
    let vip = lb.addr("six");
    assert!(vip.is_ipv6());
    assert_eq!(fetch(vip).unwrap(), "v4");
}

#[test]
fn json_logs_are_json() {
    use std::io::BufRead;
    let b = Backend::named("j");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(
        &path,
        server("auto", "") + &service("j", "maglev", &[b.addr]),
    )
    .unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["--log-format", "json", "run", "--config"])
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut seen_listening = false;
    for _ in 0..3 {
        let line = lines.next().unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).expect("each log line is JSON");
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
        if v["fields"]["message"] == "service listening" {
            assert_eq!(v["fields"]["service"], "j");
            seen_listening = true;
        }
    }
    assert!(seen_listening);
    let _ = child.kill();
    let _ = child.wait();
}

/// A free fixed port on loopback (free when asked; the test takes it at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Listening sockets are SO_REUSEPORT, one per shard; a second sluice must not join
/// the first one's sockets and take half of its clients.
#[test]
fn a_port_another_sluice_holds_is_refused() {
    let b = Backend::named("first");
    let port = free_port();
    let svc = |name: &str, port: u16| {
        format!(
            "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:{port}\"\nbackends = [\"{}\"]\n",
            b.addr
        )
    };
    let cfg = server("auto", "") + &svc("web", port);
    let lb = Sluice::start(&cfg);
    let second = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&lb.config)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    let want =
        format!("sluice.toml:8:10: web: cannot listen on 127.0.0.1:{port}: address already in use");
    assert!(stderr.contains(&want), "{stderr}");
    // A reload adding an address something else holds fails and changes nothing.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = taken.local_addr().unwrap().port();
    assert!(!lb.reload(&(cfg.clone() + &svc("other", other))));
    lb.wait_log("the error names the place", |l| {
        l.contains(&format!(
            "sluice.toml:12:10: other: cannot listen on 127.0.0.1:{other}"
        ))
    });
    for _ in 0..10 {
        assert_eq!(fetch(lb.addr("web")).unwrap(), "first");
    }
}

/// Each shard admits its share of `max_connections`; the shares add up to the limit,
/// not to one more per shard.
#[test]
fn max_connections_is_exact_over_shards() {
    let b = Backend::echo();
    let cfg = "[server]\nworkers = 2\nmax_connections = 3\n".to_owned()
        + &service("svc", "roundrobin", &[b.addr]);
    let lb = Sluice::start(&cfg);
    let vip = lb.addr("svc");
    // The kernel spreads connections over both shards' sockets by their addresses:
    // with twenty, each shard sees more than its share.
    let mut conns: Vec<_> = (0..20).map(|_| connect(vip)).collect();
    let mut served = 0;
    for c in conns.iter_mut() {
        let _ = c.write_all(b"x");
        let mut buf = [0u8; 1];
        if c.read(&mut buf).unwrap_or(0) == 1 {
            served += 1;
        }
    }
    assert_eq!(served, 3);
    assert_eq!(b.accepted(), 3);
}

/// The soft descriptor limit is raised to the hard one; a hard limit short of what
/// max_connections needs is named in a warning.
#[test]
fn the_descriptor_limit_is_raised_and_a_short_one_named() {
    let b = Backend::echo();
    let cfg = "[server]\nworkers = 2\nmax_connections = 1000\n".to_owned()
        + &service("svc", "roundrobin", &[b.addr]);
    let lb = Sluice::start_with_nofile_limits(&cfg, 100, 900);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", lb.child.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["900", "900"], "{open_files}");
    // 2 per connection, one listener per shard, and the spare ones.
    let line = lb.wait_log("the short limit named", |l| l.contains("descriptor limit"));
    assert!(
        line.contains("limit=900") && line.contains("need=2258"),
        "{line}"
    );
    assert_eq!(fetch_echo(lb.addr("svc")), "x");
}

fn fetch_echo(addr: std::net::SocketAddr) -> String {
    let mut c = connect(addr);
    String::from_utf8(roundtrip(&mut c, b"x")).unwrap()
}
