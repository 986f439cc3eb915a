//! The upgrade channel under misuse: a peer that connects and takes nothing, a stop
//! asked while a successor holds the sockets and has not answered, and a channel put
//! in place by another user. The running process keeps serving through each, and a
//! real successor can still take over.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

/// Listening addresses, one message each in the handover: more than a channel's
/// send buffer holds (about 280 such messages) unless the peer reads.
const MANY: usize = 400;

fn many_services(io: &str, backend: SocketAddr) -> String {
    let mut cfg = format!("{}[admin]\nlisten = \"127.0.0.1:0\"\n", server(io, ""));
    for i in 0..MANY {
        cfg.push_str(&service(&format!("s{i}"), "maglev", &[backend]));
    }
    cfg
}

fn successor(config: &std::path::Path, socket: &std::path::Path) -> Sluice {
    Sluice::spawn_in(
        config,
        &[
            "--upgrade-socket".into(),
            socket.display().to_string(),
            "--upgrade".into(),
        ],
    )
}

/// A Python peer on the channel, driven line by line through its stdin.
struct Peer {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Peer {
    fn start(script: &str, socket: &std::path::Path) -> Peer {
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Peer { child, out }
    }

    /// The next line it prints (bounded by its own timeouts: it exits on error).
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).unwrap();
        l.trim().to_owned()
    }

    fn say(&mut self, l: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{l}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects and then reads nothing, until told to go.
const SILENT: &str = r#"import socket,sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
print('connected', flush=True)
sys.stdin.readline()
"#;

fn a_peer_that_takes_no_sockets_holds_nothing(io: &str) {
    let backend = Backend::named("served");
    let cfg = many_services(io, backend.addr);
    let old = Sluice::start_args(&cfg, &["--upgrade-socket", "{dir}/upgrade.sock"]);
    let socket = old.dir.path().join("upgrade.sock");
    old.wait_log("the channel", |l| l.contains("upgrade channel listening"));
    let addr = old.addr("s0");
    let mut silent = Peer::start(SILENT, &socket);
    assert_eq!(silent.line(), "connected");
    let why = old.wait_log("the handover to give up", |l| l.contains("upgrade failed"));
    assert!(why.contains("did not take the sockets"), "{why}");
    // The control thread is free: a reload is applied, and the process serves.
    assert!(old.reload(&cfg));
    assert_eq!(fetch(addr).unwrap(), "served");
    // While the silent peer still holds its end, a real successor takes over.
    let mut new = successor(&old.config, &socket);
    new.wait_started(&cfg);
    old.wait_log("the successor serves", |l| {
        l.contains("the successor serves")
    });
    assert_eq!(fetch(addr).unwrap(), "served");
    silent.say("go");
}

/// Takes the sockets as a successor does, then answers as told on its stdin:
/// `ready` (and then serves one connection on the first socket received) or
/// `failed`.
const FAKE_SUCCESSOR: &str = r#"import socket,sys,os,json
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
fds = []
while True:
    msg, got, _, _ = socket.recv_fds(s, 65536, 300)
    fds += got
    if json.loads(msg)['kind'] == 'end': break
print('taken', flush=True)
verdict = sys.stdin.readline().strip()
if verdict == 'ready-for-another':
    s.send(json.dumps({'kind': 'ready', 'pid': 1}).encode())
    print('sent', flush=True)
elif verdict == 'failed-in-lines':
    s.send(json.dumps({'kind': 'failed', 'reason': 'one\nFORGED upgrade: serving'}).encode())
    print('sent', flush=True)
elif verdict == 'ready':
    s.send(json.dumps({'kind': 'ready', 'pid': os.getpid()}).encode())
    print('sent', flush=True)
    l = socket.socket(fileno=fds[0])
    l.settimeout(20)
    c, _ = l.accept()
    c.sendall(b'successor')
    c.close()
    print('served', flush=True)
else:
    s.send(json.dumps({'kind': 'failed', 'reason': 'told to fail'}).encode())
    print('sent', flush=True)
sys.stdin.readline()
"#;

fn config(io: &str, backend: SocketAddr) -> String {
    format!(
        "{}[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        server(io, "").replace("workers = 2", "workers = 1"),
        service("web", "maglev", &[backend])
    )
}

fn read_all(mut s: TcpStream) -> String {
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A sluice that handed its sockets to a fake successor, which has not answered yet,
/// and was then sent SIGTERM: it, its service's address, the fake.
fn stopped_while_handed_over(cfg: &str) -> (Sluice, std::net::SocketAddr, Peer) {
    let old = Sluice::start_args(cfg, &["--upgrade-socket", "{dir}/upgrade.sock"]);
    let socket = old.dir.path().join("upgrade.sock");
    old.wait_log("the channel", |l| l.contains("upgrade channel listening"));
    let addr = old.addr("web");
    let mut fake = Peer::start(FAKE_SUCCESSOR, &socket);
    assert_eq!(fake.line(), "taken");
    old.wait_log("the handover", |l| l.contains("sockets handed over"));
    old.signal("TERM");
    old.wait_log("the stop to wait", |l| {
        l.contains("stopping once the successor")
    });
    (old, addr, fake)
}

fn sigterm_while_a_successor_holds_the_sockets_waits_for_its_answer(io: &str) {
    let backend = Backend::named("old");
    let cfg = config(io, backend.addr);

    // The successor serves: the sockets are left to it, not shut down.
    let (mut old, addr, mut fake) = stopped_while_handed_over(&cfg);
    // Still serving meanwhile.
    assert_eq!(fetch(addr).unwrap(), "old");
    fake.say("ready");
    assert_eq!(fake.line(), "sent");
    assert!(old.wait_exit().success());
    // The socket is the successor's, listening: a connect reaches it.
    assert_eq!(read_all(connect(addr)), "successor");
    assert_eq!(fake.line(), "served");
    drop(fake);

    // The successor fails: the process stops as at any SIGTERM.
    let (mut old, addr, mut fake) = stopped_while_handed_over(&cfg);
    fake.say("failed");
    assert_eq!(fake.line(), "sent");
    old.wait_log("the failure", |l| l.contains("told to fail"));
    assert!(old.wait_exit().success());
    let refused = TcpStream::connect_timeout(&addr, PATIENCE);
    assert!(
        refused.is_err(),
        "nobody serves: a connect is refused, not queued"
    );
}

/// Listens at the path given as another user (nobody), as whoever may write to the
/// channel's directory could, and offers a listening socket of its own.
const IMPOSTOR: &str = r#"import socket,sys,os,json
os.setgid(65534)
os.setuid(65534)
t = socket.socket()
t.bind(('127.0.0.1', 0))
t.listen()
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(sys.argv[1])
s.listen()
print('listening', flush=True)
c, _ = s.accept()
c.settimeout(20)
try:
    c.send(json.dumps({'kind': 'hello', 'pid': 1}).encode())
    c.send(json.dumps({'kind': 'end'}).encode())
    heard = c.recv(65536).decode() or 'closed'
except OSError:
    heard = 'closed'
print(heard, flush=True)
"#;

fn a_successor_takes_sockets_from_its_own_user_only(io: &str) {
    if !nix_is_root() {
        eprintln!("skipped: needs root to play another user");
        return;
    }
    let backend = Backend::named("served");
    let cfg = config(io, backend.addr);
    let dir = tempfile::tempdir().unwrap();
    // A directory anyone may write to, as /tmp.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    let socket = dir.path().join("upgrade.sock");
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(&config_path, &cfg).unwrap();
    let mut impostor = Peer::start(IMPOSTOR, &socket);
    assert_eq!(impostor.line(), "listening");
    let mut new = successor(&config_path, &socket);
    assert!(!new.wait_exit().success(), "it refuses the channel");
    new.wait_log("the refusal", |l| l.contains("runs as user nobody (65534)"));
    // It told the impostor nothing: no `ready` came.
    assert_eq!(impostor.line(), "closed");

    // Nor does a sluice starting on that channel (not an upgrade) tell it anything
    // (its `failed`, with this process's id, is for a sluice of its own user).
    let socket = dir.path().join("squatted.sock");
    let mut squatter = Peer::start(IMPOSTOR, &socket);
    assert_eq!(squatter.line(), "listening");
    let mut started = Sluice::spawn_in(
        &config_path,
        &["--upgrade-socket".into(), socket.display().to_string()],
    );
    assert!(!started.wait_exit().success());
    started.wait_log("the refusal", |l| {
        l.contains("a process of user nobody (65534)") && l.contains("listens there")
    });
    assert_eq!(squatter.line(), "closed");
}

/// A successor's word is taken for itself only: `ready` naming another process is
/// no verdict, and a reason sent in several lines is logged as one.
fn a_successors_word_is_checked_and_kept_to_one_line(io: &str) {
    let backend = Backend::named("old");
    let cfg = config(io, backend.addr);
    let old = Sluice::start_args(&cfg, &["--upgrade-socket", "{dir}/upgrade.sock"]);
    let socket = old.dir.path().join("upgrade.sock");
    old.wait_log("the channel", |l| l.contains("upgrade channel listening"));
    let addr = old.addr("web");
    for (verdict, logged) in [
        ("ready-for-another", "said process 1 is ready"),
        ("failed-in-lines", "one; FORGED upgrade: serving"),
    ] {
        let mut fake = Peer::start(FAKE_SUCCESSOR, &socket);
        assert_eq!(fake.line(), "taken");
        fake.say(verdict);
        assert_eq!(fake.line(), "sent");
        let why = old.wait_log("the failure", |l| {
            l.contains("upgrade failed") && l.contains(logged)
        });
        assert!(why.contains("keeps serving"), "{why}");
        assert_eq!(fetch(addr).unwrap(), "old");
    }
    assert_eq!(old.count_log(|l| l.starts_with("FORGED")), 0);
}

/// A second sluice started with the running one's --pidfile (so its channel) fails
/// to start, rather than taking the channel and the pidfile: the running one keeps
/// both, and can still be upgraded.
fn a_second_process_on_the_same_channel_is_refused(io: &str) {
    let backend = Backend::named("served");
    let cfg = config(io, backend.addr);
    let old = Sluice::start_args(&cfg, &["--pidfile", "{dir}/sluice.pid"]);
    old.wait_log("the channel", |l| l.contains("upgrade channel listening"));
    let pidfile = old.dir.path().join("sluice.pid");
    let addr = old.addr("web");
    let neighbour_cfg = old.dir.path().join("neighbour.toml");
    std::fs::write(
        &neighbour_cfg,
        cfg.replace("name = \"web\"", "name = \"other\""),
    )
    .unwrap();
    let mut neighbour = Sluice::spawn_in(
        &neighbour_cfg,
        &["--pidfile".into(), pidfile.display().to_string()],
    );
    assert!(!neighbour.wait_exit().success());
    neighbour.wait_log("the refusal", |l| l.contains("listens there already"));
    old.wait_log("the reason", |l| {
        l.contains("upgrade failed") && l.contains("left it alone")
    });
    let named: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(named, old.child.id());
    assert_eq!(fetch(addr).unwrap(), "served");
    let mut new = successor(&old.config, &old.dir.path().join("sluice.upgrade"));
    new.wait_started(&cfg);
    old.wait_log("the successor serves", |l| {
        l.contains("the successor serves")
    });
}

/// Hands nothing over and is gone before its successor is ready, as a process
/// killed during an upgrade.
const VANISHING: &str = r#"import socket,sys,os,json
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(sys.argv[1])
s.listen()
print('listening', flush=True)
c, _ = s.accept()
c.send(json.dumps({'kind': 'hello', 'pid': os.getpid()}).encode())
c.send(json.dumps({'kind': 'end'}).encode())
if sys.argv[2:] == ['gave-up']:
    c.send(json.dumps({'kind': 'failed', 'reason': 'not ready in time'}).encode())
c.close()
print('gone', flush=True)
"#;

/// A successor whose predecessor died while it started serves, rather than
/// exiting for want of someone to tell; one whose predecessor gave up on it (and
/// serves on) exits.
fn a_successor_whose_predecessor_died_serves_alone(io: &str) {
    let backend = Backend::named("served");
    let cfg = config(io, backend.addr);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("upgrade.sock");
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(&config_path, &cfg).unwrap();
    let mut old = Peer::start(VANISHING, &socket);
    assert_eq!(old.line(), "listening");
    let mut new = successor(&config_path, &socket);
    assert_eq!(old.line(), "gone");
    new.wait_started(&cfg);
    new.wait_log("the warning", |l| {
        l.contains("the previous process is gone")
    });
    assert_eq!(fetch(new.addr("web")).unwrap(), "served");
    assert!(new.child.try_wait().unwrap().is_none(), "still serving");
    drop(new);

    let socket = dir.path().join("upgrade2.sock");
    let mut old = Peer::start(&VANISHING.replace("sys.argv[2:]", "['gave-up']"), &socket);
    assert_eq!(old.line(), "listening");
    let mut new = successor(&config_path, &socket);
    assert_eq!(old.line(), "gone");
    assert!(
        !new.wait_exit().success(),
        "it does not serve beside the old one"
    );
    new.wait_log("the reason", |l| l.contains("not ready in time"));
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

both_io!(
    a_peer_that_takes_no_sockets_holds_nothing,
    sigterm_while_a_successor_holds_the_sockets_waits_for_its_answer,
    a_successor_takes_sockets_from_its_own_user_only,
    a_second_process_on_the_same_channel_is_refused,
    a_successor_whose_predecessor_died_serves_alone,
    a_successors_word_is_checked_and_kept_to_one_line,
);
