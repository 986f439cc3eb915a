//! Hot binary upgrade and the process's end: a successor takes every listening socket
//! (and the admin port) from the running sluice without a connection refused or
//! reset; a successor that cannot start leaves the running one serving; SIGTERM stops
//! listening before it drains.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// Mid-transfer connections held across the upgrade.
const HELD: usize = 200;

fn config(io: &str, backend: SocketAddr) -> String {
    format!(
        "{}[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        server(io, ""),
        service("echo", "maglev", &[backend])
    )
}

/// `GET path` on the admin port: (status, body).
fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let mut s = connect(admin);
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (status, body.unwrap_or_default())
}

fn pids(admin: SocketAddr) -> Vec<u32> {
    let (status, body) = admin_get(admin, "/_haproxy_getpids");
    assert_eq!(status, 200, "{body}");
    let list: Vec<u32> = serde_json::from_str(&body).unwrap();
    // zdd.py counts the words (`text.split()`): more than one means a reload runs.
    assert_eq!(body.split_whitespace().count(), list.len(), "{body}");
    list
}

fn read_pidfile(path: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// What one client loop saw: connections that did their round trip, and the
/// failures (refused, reset, cut short), described.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

/// New connections one after another until `stop`: connect, a round trip, a
/// half-close, the end of stream.
fn client_loop(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let msg = format!("ping {n}\n");
            let run = || -> std::io::Result<()> {
                let mut s = TcpStream::connect_timeout(&addr, PATIENCE)?;
                s.set_read_timeout(Some(PATIENCE))?;
                s.write_all(msg.as_bytes())?;
                s.shutdown(Shutdown::Write)?;
                let mut back = String::new();
                s.read_to_string(&mut back)?;
                if back != msg {
                    return Err(std::io::Error::other(format!("echoed {back:?}")));
                }
                Ok(())
            };
            match run() {
                Ok(()) => {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tally
                    .failures
                    .lock()
                    .unwrap()
                    .push(format!("connection {n}: {e}")),
            }
        }
    })
}

/// One held connection: round trips of 1 KiB until `stop`, then a half-close and the
/// end of stream. Returns the bytes echoed, or what failed.
fn held_connection(
    addr: SocketAddr,
    seed: u64,
    stop: Arc<AtomicBool>,
    started: Arc<AtomicUsize>,
) -> thread::JoinHandle<Result<usize, String>> {
    thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut s = connect(addr);
            let mut stream = Stream::new(seed);
            let mut buf = vec![0u8; 1024];
            let mut back = vec![0u8; 1024];
            let mut total = 0;
            let mut first = true;
            while first || !stop.load(Ordering::Relaxed) {
                stream.fill(&mut buf);
                s.write_all(&buf)
                    .map_err(|e| format!("write after {total}: {e}"))?;
                s.read_exact(&mut back)
                    .map_err(|e| format!("read after {total}: {e}"))?;
                if back != buf {
                    return Err(format!("wrong bytes after {total}"));
                }
                total += buf.len();
                if first {
                    started.fetch_add(1, Ordering::Relaxed);
                    first = false;
                }
                thread::sleep(std::time::Duration::from_millis(5));
            }
            s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
            let mut rest = Vec::new();
            s.read_to_end(&mut rest)
                .map_err(|e| format!("end of stream: {e}"))?;
            if !rest.is_empty() {
                return Err(format!("{} stray bytes", rest.len()));
            }
            Ok(total)
        })
        .unwrap()
}

/// One request to the shared HTTP listener for `web.example`: the response body.
fn http_get(addr: SocketAddr) -> String {
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: web.example\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.split_once("\r\n\r\n").unwrap().1.to_owned()
}

fn upgrade_drops_nothing(io: &str) {
    let backend = Backend::echo();
    let web = http_backend("web", Arc::default());
    // The shared HTTP listener too: its sockets are tuned for HTTP, and move as they are.
    let cfg = format!(
        "{}[http]\nlisten = \"127.0.0.1:0\"\n[[service]]\nname = \"web\"\nmode = \"http\"\n\
         vhosts = [\"web.example\"]\nbackends = [\"{}\"]\n",
        config(io, backend.addr),
        web.addr
    );
    let mut old = Sluice::start_args(&cfg, &["--pidfile", "{dir}/sluice.pid"]);
    let pidfile = old.dir.path().join("sluice.pid");
    old.wait_log("the channel", |l| l.contains("upgrade channel listening"));
    let (addr, admin, http) = (old.addr("echo"), old.admin(), old.http());
    assert_eq!(http_get(http), "web");
    let old_pid = old.child.id();
    wait_for("the pidfile", || {
        (read_pidfile(&pidfile) == Some(old_pid)).then_some(())
    });
    assert_eq!(pids(admin), [old_pid]);

    let stop_held = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let held: Vec<_> = (0..HELD as u64)
        .map(|i| held_connection(addr, i + 1, Arc::clone(&stop_held), Arc::clone(&started)))
        .collect();
    wait_for("the held connections to transfer", || {
        (started.load(Ordering::Relaxed) == HELD).then_some(())
    });
    let stop_loop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let looping = client_loop(addr, Arc::clone(&stop_loop), Arc::clone(&tally));
    wait_for("the client loop", || {
        (tally.ok.load(Ordering::Relaxed) > 20).then_some(())
    });

    let pidfile_arg = pidfile.display().to_string();
    let mut new = Sluice::spawn_in(
        &old.config,
        &["--pidfile".into(), pidfile_arg, "--upgrade".into()],
    );
    new.wait_started(&cfg);
    old.wait_log("the successor serves", |l| {
        l.contains("the successor serves")
    });
    let new_pid = new.child.id();
    assert_eq!(new.addr("echo"), addr, "the same listening address");
    assert_eq!(new.admin(), admin, "the same admin port");
    assert_eq!(new.http(), http, "the same HTTP listener");
    assert_eq!(http_get(http), "web");
    // Both serve: the old one its held connections, the new one everything new.
    let mut both = vec![old_pid, new_pid];
    both.sort_unstable();
    assert_eq!(pids(admin), both);
    assert_eq!(admin_get(admin, "/_haproxy_health_check").0, 200);
    wait_for("the pidfile to name the successor", || {
        (read_pidfile(&pidfile) == Some(new_pid)).then_some(())
    });
    let before = tally.ok.load(Ordering::Relaxed);
    wait_for("new connections during the overlap", || {
        (tally.ok.load(Ordering::Relaxed) > before + 50).then_some(())
    });
    assert!(
        old.child.try_wait().unwrap().is_none(),
        "the old process drains its connections"
    );

    stop_held.store(true, Ordering::Relaxed);
    for (i, h) in held.into_iter().enumerate() {
        let moved = h
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("held connection {i}: {e}"));
        assert!(moved >= 1024);
    }
    let status = old.wait_exit();
    assert!(status.success(), "{status}");
    wait_for("the old pid to leave the list", || {
        (pids(admin) == [new_pid]).then_some(())
    });
    let after_exit = tally.ok.load(Ordering::Relaxed);
    wait_for("new connections after the old process exited", || {
        (tally.ok.load(Ordering::Relaxed) > after_exit + 20).then_some(())
    });
    stop_loop.store(true, Ordering::Relaxed);
    looping.join().unwrap();
    let failures = tally.failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert_eq!(read_pidfile(&pidfile), Some(new_pid));
    assert!(old.count_log(|l| l.contains("the previous process exited")) == 0);
    new.wait_log("the old process's exit", |l| {
        l.contains("the previous process exited")
    });
}

fn a_successor_that_cannot_start_leaves_the_old_one_serving(io: &str) {
    let backend = Backend::named("still here");
    let cfg = format!(
        "{}[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        server(io, ""),
        service("web", "maglev", &[backend.addr])
    );
    let old = Sluice::start_args(&cfg, &["--upgrade-socket", "{dir}/upgrade.sock"]);
    let (addr, admin) = (old.addr("web"), old.admin());
    let socket = old.dir.path().join("upgrade.sock");
    old.wait_log("the channel", |l| l.contains("upgrade channel listening"));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let bad = old.dir.path().join("bad.toml");
    std::fs::write(&bad, cfg.replace("[[service]]", "[[service]]\nnope = 1")).unwrap();
    let mut new = Sluice::spawn_in(
        &bad,
        &[
            "--upgrade-socket".into(),
            socket.display().to_string(),
            "--upgrade".into(),
        ],
    );
    let status = new.wait_exit();
    assert!(!status.success());
    let why = old.wait_log("the failure", |l| l.contains("upgrade failed"));
    assert!(
        why.contains("nope"),
        "the reason is in the old process's log: {why}"
    );
    assert!(why.contains("keeps serving"), "{why}");
    assert!(
        why.contains(&format!("successor={}", new.child.id())),
        "the successor named as such: {why}"
    );
    // Untouched: the same process answers, alone, and is not draining.
    assert_eq!(fetch(addr).unwrap(), "still here");
    assert_eq!(pids(admin), [old.child.id()]);
    assert_eq!(admin_get(admin, "/_haproxy_health_check").0, 200);

    // A successor that fails late — its configuration is good, its admin port's
    // address is taken — fails before its shards start, so it never took a
    // connection off the shared sockets that its exit would drop.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let late = old.dir.path().join("late.toml");
    let late_cfg = cfg.replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!("[admin]\nlisten = \"{}\"", taken.local_addr().unwrap()),
    );
    assert_ne!(late_cfg, cfg);
    std::fs::write(&late, late_cfg).unwrap();
    let mut new = Sluice::spawn_in(
        &late,
        &[
            "--upgrade-socket".into(),
            socket.display().to_string(),
            "--upgrade".into(),
        ],
    );
    assert!(!new.wait_exit().success());
    let why = old.wait_log("the late failure", |l| {
        l.contains("upgrade failed") && l.contains("admin port")
    });
    assert!(why.contains("keeps serving"), "{why}");
    assert_eq!(
        new.count_log(|l| l.contains("starting shards")),
        0,
        "the successor started no shard: {:?}",
        new.log_lines()
    );
    assert_eq!(fetch(addr).unwrap(), "still here");
    assert_eq!(pids(admin), [old.child.id()]);

    // A successor that takes the sockets and exits without a word: the same.
    let script = "import socket,sys\n\
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n\
s.connect(sys.argv[1])\n\
while b'\"end\"' not in s.recv(65536): pass\n";
    let ok = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&socket)
        .status()
        .unwrap()
        .success();
    assert!(ok, "the fake successor took the sockets");
    old.wait_log("the successor's exit", |l| {
        l.contains("exited before it was ready")
    });
    assert_eq!(fetch(addr).unwrap(), "still here");
    assert_eq!(pids(admin), [old.child.id()]);

    // And a good successor after that still takes over.
    let mut new = Sluice::spawn_in(
        &old.config,
        &[
            "--upgrade-socket".into(),
            socket.display().to_string(),
            "--upgrade".into(),
        ],
    );
    new.wait_started(&cfg);
    old.wait_log("the successor serves", |l| {
        l.contains("the successor serves")
    });
    assert_eq!(fetch(addr).unwrap(), "still here");
}

fn sigterm_refuses_new_connects_and_finishes_established_ones(io: &str) {
    let backend = Backend::echo();
    let cfg = config(io, backend.addr);
    let mut s = Sluice::start_args(&cfg, &["--pidfile", "{dir}/sluice.pid"]);
    let pidfile = s.dir.path().join("sluice.pid");
    let addr = s.addr("echo");
    let mut established = connect(addr);
    assert_eq!(roundtrip(&mut established, b"before"), b"before");
    s.signal("TERM");
    s.wait_log("stopping", |l| l.contains("stopping"));
    wait_for("connects to be refused", || {
        match TcpStream::connect_timeout(&addr, PATIENCE) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Some(()),
            Err(e) => panic!("connect failed otherwise: {e}"),
            // Accepted before the shards saw the drain: served to its end.
            Ok(mut c) => {
                c.set_read_timeout(Some(PATIENCE)).unwrap();
                c.write_all(b"raced").unwrap();
                c.shutdown(Shutdown::Write).unwrap();
                let mut back = Vec::new();
                c.read_to_end(&mut back).unwrap();
                assert_eq!(back, b"raced");
                None
            }
        }
    });
    assert!(s.child.try_wait().unwrap().is_none(), "still draining");
    // A reload or an upgrade asked of a draining process changes nothing.
    for sig in ["HUP", "USR2"] {
        s.signal(sig);
    }
    wait_for("both signals' notices", || {
        (s.count_log(|l| l.contains("a reload or upgrade is not for this process")) == 2)
            .then_some(())
    });
    assert!(s.child.try_wait().unwrap().is_none(), "still draining");
    assert_eq!(roundtrip(&mut established, b"after"), b"after");
    established.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    established.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert!(s.wait_exit().success());
    assert!(!pidfile.exists(), "the pidfile is removed at exit");
}

/// SIGTERM with an anycast VIP: the VIP is reported withdrawn and the process goes
/// on accepting for `withdraw_grace_ms` while the routers converge; a reload or an
/// upgrade asked meanwhile does not cut that short.
fn the_withdraw_grace_outlasts_a_reload_or_upgrade_asked_meanwhile(io: &str) {
    let backend = Backend::echo();
    let vip = if io == "epoll" {
        "127.0.77.2"
    } else {
        "127.0.77.1"
    };
    let cfg = format!(
        "{}[admin]\nlisten = \"127.0.0.1:0\"\n[anycast]\ninterval_ms = 100\nrise = 1\n\
         withdraw_grace_ms = 60000\n[[service]]\nname = \"vip\"\nlisten = \"{vip}:0\"\n\
         anycast = true\nbackends = [\"{}\"]\n",
        server(io, ""),
        backend.addr
    );
    let mut s = Sluice::start(&cfg);
    let addr = s.addr("vip");
    let admin = s.admin();
    wait_for("the VIP announced", || {
        admin_get(admin, "/v1/anycast")
            .1
            .contains("\"announce\":true")
            .then_some(())
    });
    s.signal("TERM");
    s.wait_log("the withdrawal", |l| {
        l.contains("anycast VIPs reported withdrawn")
    });
    for sig in ["HUP", "USR2"] {
        s.signal(sig);
    }
    wait_for("both signals' notices", || {
        (s.count_log(|l| l.contains("a reload or upgrade is not for this process")) == 2)
            .then_some(())
    });
    assert!(s.child.try_wait().unwrap().is_none(), "still in the grace");
    assert_eq!(
        fetch_echo(addr),
        "through the successor\n",
        "still accepting"
    );
    // A second stop ends the grace at once.
    s.signal("TERM");
    assert!(!s.wait_exit().success());
}

/// A request that reaches an established HTTP connection after SIGTERM (the next
/// one on a keep-alive connection; here the end of a head begun before) is served,
/// with `Connection: close`, rather than answered 503: the drain lets established
/// connections finish, and a hot upgrade's old process drains the same way.
fn a_keep_alive_request_is_served_while_draining(io: &str) {
    let backend = http_backend("served", Arc::new(AtomicUsize::new(0)));
    let cfg = format!(
        "{}[http]\nlisten = \"127.0.0.1:0\"\n[[service]]\nname = \"web\"\nmode = \"http\"\n\
         vhosts = [\"web.example\"]\nbackends = [\"{}\"]\n",
        server(io, ""),
        backend.addr
    );
    let mut s = Sluice::start(&cfg);
    let addr = s.http();
    let mut c = connect(addr);
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: web.example\r\n";
    c.write_all(request).unwrap();
    c.write_all(b"\r\n").unwrap();
    let head = String::from_utf8(read_head(&mut c)).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = [0u8; 6];
    c.read_exact(&mut body).unwrap();
    // The next request begins before the drain (so the connection is not idle, which
    // a drain closes) and ends after the shards stopped accepting.
    c.write_all(request).unwrap();
    s.signal("TERM");
    wait_for(
        "connects to be refused",
        || match TcpStream::connect_timeout(&addr, PATIENCE) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Some(()),
            Err(e) => panic!("connect failed otherwise: {e}"),
            Ok(_) => None,
        },
    );
    c.write_all(b"\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{out}"
    );
    assert!(out.ends_with("served"), "{out}");
    assert!(s.wait_exit().success());
}

/// Kills a process that is not this test's child (a successor started by sluice).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

fn sigusr2_starts_the_binary_again_and_hands_over(io: &str) {
    let backend = Backend::named("served");
    let cfg = format!(
        "{}[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        server(io, ""),
        service("web", "maglev", &[backend.addr])
    );
    let mut old = Sluice::start_args(&cfg, &["--pidfile", "{dir}/sluice.pid"]);
    let pidfile = old.dir.path().join("sluice.pid");
    old.wait_log("the channel", |l| l.contains("upgrade channel listening"));
    let (addr, admin) = (old.addr("web"), old.admin());
    let old_pid = old.child.id();
    old.signal("USR2");
    // The successor logs to the same stderr.
    old.wait_log("the successor serves", |l| {
        l.contains("the successor serves")
    });
    let new_pid = wait_for("the successor's pidfile", || {
        read_pidfile(&pidfile).filter(|&p| p != old_pid)
    });
    let _guard = KillOnDrop(new_pid);
    assert!(old.wait_exit().success());
    assert_eq!(fetch(addr).unwrap(), "served");
    wait_for("the old pid to leave the list", || {
        (pids(admin) == [new_pid]).then_some(())
    });
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &new_pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    wait_for("the successor to exit and remove its pidfile", || {
        (!pidfile.exists()).then_some(())
    });
}

/// After a handover the successor is the service: systemd (`Type=notify`,
/// `NotifyAccess=all`) hears READY and then the successor's MAINPID, and no STOPPING
/// from the draining process — which would stop the whole service, the successor
/// with it. Signals meant for the service reach the draining process too (`systemctl
/// stop` signals every process of it; an operator repeats a SIGUSR2 or reloads): a
/// reload or an upgrade is not for it, and its first stop lets it go on draining, so
/// its held connection goes on working through all three.
fn a_draining_process_tells_systemd_nothing_and_finishes_its_connections(io: &str) {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let backend = Backend::echo();
    let cfg = config(io, backend.addr);
    let mut cmd = std::process::Command::new(BIN);
    cmd.env("NOTIFY_SOCKET", &notify_path);
    let mut old = Sluice::start_cmd_args(&cfg, cmd, &["--pidfile", "{dir}/sluice.pid"]);
    let pidfile = old.dir.path().join("sluice.pid");
    old.wait_log("the channel", |l| l.contains("upgrade channel listening"));
    let (addr, old_pid) = (old.addr("echo"), old.child.id());
    let mut held = connect(addr);
    let round_trip = |s: &mut std::net::TcpStream, n: u32| {
        let msg = format!("round trip {n}\n");
        s.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    };
    round_trip(&mut held, 0);

    old.signal("USR2");
    old.wait_log("the successor serves", |l| {
        l.contains("the successor serves")
    });
    let new_pid = wait_for("the successor's pidfile", || {
        read_pidfile(&pidfile).filter(|&p| p != old_pid)
    });
    let _guard = KillOnDrop(new_pid);
    for (n, sig) in ["HUP", "USR2", "TERM"].into_iter().enumerate() {
        old.signal(sig);
        old.wait_log("the signal's notice", |l| {
            l.contains("stopping: a reload or upgrade is not for this process")
                && (sig != "USR2" || l.contains("signal=12"))
                || sig == "TERM" && l.contains("stopping already")
        });
        round_trip(&mut held, n as u32 + 1);
    }
    assert!(old.child.try_wait().unwrap().is_none(), "still draining");
    assert_eq!(fetch_echo(addr), "through the successor\n");
    drop(held);
    assert!(old.wait_exit().success());
    let mut told = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = notify.recv(&mut buf) {
        told.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(
        told,
        ["READY=1".to_owned(), format!("MAINPID={new_pid}\nREADY=1")],
        "what systemd heard"
    );
}

/// One connection through `addr` to the echo backend: what came back.
fn fetch_echo(addr: SocketAddr) -> String {
    let mut s = connect(addr);
    s.write_all(b"through the successor\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut back = String::new();
    s.read_to_string(&mut back).unwrap();
    back
}

/// A sluice following Marathon, upgraded under a client loop: the successor serves
/// Marathon's services (a service port and a named VIP) from its first moment on the
/// sockets it was handed — none refused while Marathon's answer stays the same — and
/// a successor that cannot reach Marathon gives the upgrade up, leaving the running
/// process serving.
fn a_successor_following_marathon_serves_its_services_from_the_start(io: &str) {
    use common::marathon::{apps_body, Answer, Marathon, Task};
    let backend = Backend::echo();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let task = Task {
        id: "mig.1",
        backend: backend.addr,
        state: "TASK_RUNNING",
        alive: true,
    };
    let body = apps_body("/mig", "external", port, "/mig:10009", &[task]);
    let marathon = Marathon::start(Answer::Apps(body.clone()));
    let net = if io == "epoll" {
        "127.14.0.0"
    } else {
        "127.13.0.0"
    };
    let cfg = format!(
        "{}[admin]\nlisten = \"127.0.0.1:0\"\n[marathon]\nurls = [\"{}\"]\n\
         group = \"external\"\npoll_interval_ms = 100\nevents = false\n\
         bind_address = \"127.0.0.1\"\nvip_cidr = \"{net}/16\"\n",
        server(io, ""),
        marathon.url()
    );
    let mut old = Sluice::start_args(&cfg, &["--pidfile", "{dir}/sluice.pid"]);
    let pidfile = old.dir.path().join("sluice.pid").display().to_string();
    let name = format!("mig_{port}");
    let addr = wait_for("Marathon's service", || {
        old.listening()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| a)
    });
    let listening = old.listening();
    assert_eq!(
        listening.len(),
        2,
        "the service port and the VIP: {listening:?}"
    );

    // Marathon unreachable: the successor gives up; the running process serves on.
    marathon.set(Answer::Close);
    let mut failed = Sluice::spawn_in(
        &old.config,
        &["--pidfile".into(), pidfile.clone(), "--upgrade".into()],
    );
    // It tries for 30 s.
    let status = wait_for_within(
        "the successor to give up",
        std::time::Duration::from_secs(60),
        || failed.child.try_wait().unwrap(),
    );
    assert!(!status.success());
    let why = old.wait_log("the failure", |l| l.contains("upgrade failed"));
    assert!(why.contains("Marathon did not answer"), "{why}");
    assert_eq!(fetch_echo(addr), "through the successor\n");
    marathon.set(Answer::Apps(body));

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let looping = client_loop(addr, Arc::clone(&stop), Arc::clone(&tally));
    wait_for("the client loop", || {
        (tally.ok.load(Ordering::Relaxed) > 20).then_some(())
    });
    let mut new = Sluice::spawn_in(
        &old.config,
        &["--pidfile".into(), pidfile, "--upgrade".into()],
    );
    old.wait_log("the successor serves", |l| {
        l.contains("the successor serves")
    });
    assert!(old.wait_exit().success());
    let after_exit = tally.ok.load(Ordering::Relaxed);
    wait_for("new connections after the old process exited", || {
        (tally.ok.load(Ordering::Relaxed) > after_exit + 20).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    looping.join().unwrap();
    let failures = tally.failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    let mut now = new.listening();
    let mut before = listening;
    now.sort();
    before.sort();
    assert_eq!(now, before, "the same services on the same addresses");
    assert_eq!(
        new.count_log(|l| l.contains("not in the configuration") || l.contains("cannot listen")),
        0
    );
    new.signal("TERM");
    assert!(new.wait_exit().success());
}

/// A backend the operator put in maintenance on the admin port stays there across
/// an upgrade, as across a reload: the successor shows it MAINT and sends it nothing.
fn a_backend_set_to_maint_by_hand_stays_so_after_an_upgrade(io: &str) {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let cfg = format!(
        "{}[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        server(io, ""),
        service("web", "roundrobin", &[a.addr, b.addr])
    );
    let mut old = Sluice::start_args(&cfg, &["--pidfile", "{dir}/sluice.pid"]);
    let pidfile = old.dir.path().join("sluice.pid").display().to_string();
    let (addr, admin) = (old.addr("web"), old.admin());
    let form = format!("b=web&s={}&action=maint", b.addr);
    let mut s = connect(admin);
    write!(
        s,
        "POST /haproxy?stats HTTP/1.0\r\nHost: x\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("st=DONE"), "{answer}");
    let maint_row = |csv: &str| {
        csv.lines().any(|l| {
            l.starts_with("web,") && l.contains(&b.addr.port().to_string()) && l.contains(",MAINT,")
        })
    };
    wait_for("b in maintenance", || {
        maint_row(&admin_get(admin, "/haproxy?stats;csv").1).then_some(())
    });
    let mut new = Sluice::spawn_in(
        &old.config,
        &["--pidfile".into(), pidfile, "--upgrade".into()],
    );
    old.wait_log("the successor serves", |l| {
        l.contains("the successor serves")
    });
    assert!(old.wait_exit().success());
    assert!(
        maint_row(&admin_get(admin, "/haproxy?stats;csv").1),
        "MAINT in the successor"
    );
    for _ in 0..20 {
        assert_eq!(fetch(addr).unwrap(), "a");
    }
    new.signal("TERM");
    assert!(new.wait_exit().success());
}

/// Two upgrades in a row while the first process still drains: the last one lists
/// all three until each exits, as `pidof haproxy` would, so that `zdd.py` waits.
fn getpids_lists_every_process_still_draining_after_two_upgrades(io: &str) {
    let backend = Backend::echo();
    let cfg = config(io, backend.addr);
    let mut a = Sluice::start_args(&cfg, &["--pidfile", "{dir}/sluice.pid"]);
    let pidfile = a.dir.path().join("sluice.pid").display().to_string();
    let (addr, admin) = (a.addr("echo"), a.admin());
    let upgrade = |from: &Sluice| {
        let next = Sluice::spawn_in(
            &from.config,
            &["--pidfile".into(), pidfile.clone(), "--upgrade".into()],
        );
        from.wait_log("the successor serves", |l| {
            l.contains("the successor serves")
        });
        next
    };
    // Each held connection does a round trip: accepted by the process it is to keep.
    let mut held_a = connect(addr);
    assert_eq!(roundtrip(&mut held_a, b"a"), b"a");
    let mut b = upgrade(&a);
    b.wait_log("a to stop accepting", |l| {
        l.contains("the previous process stopped accepting")
    });
    let mut held_b = connect(addr);
    assert_eq!(roundtrip(&mut held_b, b"b"), b"b");
    let mut c = upgrade(&b);
    c.wait_log("ready", |l| l.contains("upgrade: serving"));
    let mut all = vec![a.child.id(), b.child.id(), c.child.id()];
    all.sort_unstable();
    assert_eq!(pids(admin), all);
    drop(held_a);
    assert!(a.wait_exit().success());
    let mut two = vec![b.child.id(), c.child.id()];
    two.sort_unstable();
    wait_for("a to leave the list", || (pids(admin) == two).then_some(()));
    drop(held_b);
    assert!(b.wait_exit().success());
    wait_for("b to leave the list", || {
        (pids(admin) == [c.child.id()]).then_some(())
    });
    c.signal("TERM");
    assert!(c.wait_exit().success());
}

both_io!(
    getpids_lists_every_process_still_draining_after_two_upgrades,
    a_backend_set_to_maint_by_hand_stays_so_after_an_upgrade,
    the_withdraw_grace_outlasts_a_reload_or_upgrade_asked_meanwhile,
    a_successor_following_marathon_serves_its_services_from_the_start,
    a_draining_process_tells_systemd_nothing_and_finishes_its_connections,
    sigusr2_starts_the_binary_again_and_hands_over,
    upgrade_drops_nothing,
    a_successor_that_cannot_start_leaves_the_old_one_serving,
    sigterm_refuses_new_connects_and_finishes_established_ones,
    a_keep_alive_request_is_served_while_draining,
);
