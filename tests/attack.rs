//! An adversarial pass over the shard core and its two reactors: each test states
//! what an edge balancer owes a misbehaving peer, on both I/O backends — no byte lost
//! when a relay moves to splice while the reactor holds received bytes, no shard
//! spinning on an idle connection, bounded memory for clients that never read.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Duration;

both_io!(
    tunnel_opened_mid_request_body_relays_under_splice_always,
    reload_to_splice_always_keeps_idle_l4_connections_relaying,
    slow_readers_cost_bounded_memory,
    clients_reset_in_the_accept_queue_are_accepted_and_closed,
);

/// Clients that reset their connection at once, half of them after a request: the
/// kernel keeps them in the accept queue, so each is accepted, counted and closed — on
/// an L4 port, an HTTP service's port and the shared HTTP listener, alike on both
/// reactors (io_uring learns the address of a client already gone only by asking, and
/// must accept it all the same).
fn clients_reset_in_the_accept_queue_are_accepted_and_closed(io: &str) {
    let b = Backend::echo();
    let cfg = server(io, "")
        + "[admin]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n"
        + &service("l4", "roundrobin", &[b.addr])
        + &format!(
            "[[service]]\nname = \"web\"\nmode = \"http\"\nlisten = \"127.0.0.1:0\"\n\
             vhosts = [\"web.example\"]\nbackends = [\"{}\"]\n",
            b.addr
        );
    let lb = Sluice::start(&cfg);
    let targets = [lb.addr("l4"), lb.addr("web"), lb.http()];
    const EACH: usize = 30;
    for (i, &addr) in targets.iter().cycle().take(3 * EACH).enumerate() {
        let s = TcpStream::connect(addr).unwrap();
        if (i / 3) % 2 == 1 {
            let _ = (&s).write_all(b"GET / HTTP/1.1\r\nHost: web.example\r\n\r\n");
        }
        let s = socket2::Socket::from(s);
        s.set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
    }
    // HTTP ports defer the accept until the first bytes (TCP_DEFER_ACCEPT): a client
    // reset there before sending any is dropped by the kernel, never accepted.
    let accepted = EACH + EACH / 2 + EACH / 2;
    let admin = lb.admin();
    let mut last = (0.0, 0.0);
    let settled = (0..200).any(|_| {
        last = (
            metric(admin, "sluice_shard_accepts_total"),
            metric(admin, "sluice_shard_connections"),
        );
        if last == (accepted as f64, 0.0) {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
        false
    });
    assert!(settled, "[{io}] accepted, open: {last:?}");
}

/// CPU time (user + system, in clock ticks of 10 ms) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Resident memory of the process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

/// CPU ticks the process used over one idle second.
fn idle_cpu(lb: &Sluice) -> u64 {
    let pid = lb.child.id();
    let before = cpu_ticks(pid);
    thread::sleep(Duration::from_secs(1));
    cpu_ticks(pid) - before
}

/// Read until `n` bytes arrived or the read times out; what came.
fn read_some(s: &mut TcpStream, n: usize, wait: Duration) -> Vec<u8> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while got.len() < n {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => got.extend_from_slice(&chunk[..k]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(_) => break,
        }
    }
    got
}

/// A backend that answers the first request head with a 101 at once (whatever the
/// request's body), then echoes every byte, prefixed once with `echo:`.
fn upgrading_echo() -> Backend {
    Backend::spawn(|mut c| {
        let Some(_) = try_read_head(&mut c) else {
            return;
        };
        let _ = c.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        );
        let _ = c.write_all(b"echo:");
        let mut r = c.try_clone().unwrap();
        let _ = std::io::copy(&mut r, &mut c);
        let _ = c.shutdown(Shutdown::Write);
    })
}

/// FINDING 1 (io_uring): a flow that moves to a pipe while a provided-buffer receive is
/// still in flight on its source. `Flow::wait_for` switches to splice when the pump
/// ended on "would block" — which the io_uring reactor also answers while its own
/// receive is armed (`st.reading`). The receive then completes into the socket's stash,
/// but a piped flow reads only with `splice_in` from the socket: the stashed bytes are
/// never forwarded, and `want(read, poll_only)` with a non-empty stash is answered by
/// an "owed" event every turn, so the shard spins at 100 % CPU for as long as the
/// connection lives. A client reaches that state with any Upgrade request whose body
/// is unfinished when the backend answers 101 (HTTP keeps a receive armed on the client
/// while a body is due). epoll relays the bytes. HAProxy 2.6 answers such a 101 with
/// 502 (it does not switch protocols before the request is complete).
fn tunnel_opened_mid_request_body_relays_under_splice_always(io: &str) {
    let b = upgrading_echo();
    let cfg = server(io, "splice = \"always\"")
        + "[[service]]\nname = \"ws\"\nmode = \"http\"\nlisten = \"127.0.0.1:0\"\n"
        + &format!("backends = [\"{}\"]\n", b.addr);
    let lb = Sluice::start(&cfg);
    let mut c = connect(lb.addr("ws"));
    // The body is announced, never sent: the backend switches protocols at the head.
    c.write_all(
        b"POST /ws HTTP/1.1\r\nHost: ws\r\nContent-Length: 1000\r\n\
          Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .unwrap();
    let head = read_some(&mut c, 80, Duration::from_secs(5));
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "[{io}] got {head:?}");
    let early = head.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    thread::sleep(Duration::from_millis(200));
    c.write_all(b"hello").unwrap();
    let want = b"echo:hello";
    let rest = read_some(&mut c, want.len() - early.len(), Duration::from_secs(3));
    let got = [early.as_bytes(), &rest].concat();
    let ticks = idle_cpu(&lb);
    assert!(
        got == want && ticks < 30,
        "[{io}] the tunnel relayed {:?} (want {:?}); the idle shard used {ticks} ticks of CPU in 1 s",
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(want)
    );
}

/// FINDING 1, second way in (io_uring): a reload that turns `splice` to "always" (or
/// lowers `splice_threshold_bytes`) while an L4 connection sits idle with a receive
/// armed on each side. The next event on one side pumps both flows; the other flow
/// sees "would block", moves to a pipe with its receive still in flight, and the bytes
/// that receive takes are never forwarded (and the shard spins, as above). epoll keeps
/// relaying.
fn reload_to_splice_always_keeps_idle_l4_connections_relaying(io: &str) {
    let b = Backend::echo();
    let svc = service("echo", "maglev", &[b.addr]);
    let lb = Sluice::start(&(server(io, "splice = \"never\"") + &svc));
    let mut c = connect(lb.addr("echo"));
    assert_eq!(roundtrip(&mut c, b"one"), b"one");
    thread::sleep(Duration::from_millis(200));
    assert!(lb.reload(&(server(io, "splice = \"always\"") + &svc)));
    // Let every shard load the new snapshot (a shard waits at most a second).
    thread::sleep(Duration::from_millis(1500));
    c.write_all(b"two-after-reload").unwrap();
    let got = read_some(&mut c, 16, Duration::from_secs(3));
    let ticks = idle_cpu(&lb);
    assert!(
        got == b"two-after-reload" && ticks < 30,
        "[{io}] echoed {:?} after the reload; the idle shard used {ticks} ticks of CPU in 1 s",
        String::from_utf8_lossy(&got)
    );
}

/// FINDING 2: a client that asks for a large response and never reads it holds about
/// 300 KiB of sluice's memory (`HIGH_WATER` = 256 KiB of session output, plus a 32 KiB
/// read), on both reactors; HAProxy 2.6 with its defaults holds about 56 KiB for the
/// same connection (measured: 200 such clients, RSS before and after). At the default
/// `max_connections = 100000`, an attacker with slow readers pins ~30 GB. The test
/// measures the marginal cost of 200 slow readers after 100 (so the io_uring
/// provided-buffer ring, touched once, is not counted) and asks for at most 128 KiB
/// each.
fn slow_readers_cost_bounded_memory(io: &str) {
    const BODY: usize = 64 << 20;
    let b = Backend::spawn(|mut c| {
        let Some(_) = try_read_head(&mut c) else {
            return;
        };
        let _ = write!(c, "HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\n\r\n");
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..BODY / chunk.len() {
            if c.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let cfg = server(io, "max_connections = 2000")
        + "[[service]]\nname = \"big\"\nmode = \"http\"\nlisten = \"127.0.0.1:0\"\n"
        + &format!("backends = [\"{}\"]\n", b.addr);
    let lb = Sluice::start(&cfg);
    let addr = lb.addr("big");
    let pid = lb.child.id();
    let open = |n: usize, out: &mut Vec<TcpStream>| {
        for _ in 0..n {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.set_recv_buffer_size(2048).unwrap();
            s.connect(&addr.into()).unwrap();
            let mut s = TcpStream::from(s);
            s.write_all(b"GET /big HTTP/1.1\r\nHost: big\r\n\r\n")
                .unwrap();
            out.push(s);
            thread::sleep(Duration::from_millis(2));
        }
    };
    let mut clients = Vec::new();
    open(100, &mut clients);
    thread::sleep(Duration::from_secs(2));
    let base = rss_kib(pid);
    open(200, &mut clients);
    thread::sleep(Duration::from_secs(3));
    let per_conn = (rss_kib(pid).saturating_sub(base)) / 200;
    eprintln!("[{io}] marginal memory per slow reader: {per_conn} KiB");
    assert!(
        per_conn <= 128,
        "[{io}] each slow reader costs {per_conn} KiB of sluice's memory"
    );
}
