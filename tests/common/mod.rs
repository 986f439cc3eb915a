//! Test harness: real `sluice` processes, real backends, real sockets on loopback.
#![allow(dead_code)]

pub mod acme;
pub mod deploy;
pub mod faulty;
pub mod http;
pub mod marathon;
pub mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");
/// Upper bound for anything a test waits for; tests fail rather than hang.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Poll `f` until it returns `Some`, or panic with `what` after [`PATIENCE`].
pub fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_for_within(what, PATIENCE, f)
}

/// [`wait_for`] with a bound of its own, for what is due only later (a renewal).
pub fn wait_for_within<T>(what: &str, patience: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < patience, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A running `sluice run` with its config file and collected stderr.
pub struct Sluice {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Sluice {
    /// Start with `config` (TOML). Returns once every service logged that it listens.
    pub fn start(config: &str) -> Sluice {
        Sluice::start_cmd(config, Command::new(BIN))
    }

    /// Start under `prlimit` with at most `nofile` open descriptors.
    pub fn start_with_nofile(config: &str, nofile: u32) -> Sluice {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}")).arg(BIN);
        Sluice::start_cmd(config, cmd)
    }

    /// Start under `prlimit` with a soft descriptor limit of `soft` and a hard one of
    /// `hard`.
    pub fn start_with_nofile_limits(config: &str, soft: u32, hard: u32) -> Sluice {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={soft}:{hard}")).arg(BIN);
        Sluice::start_cmd(config, cmd)
    }

    pub fn start_cmd(config: &str, cmd: Command) -> Sluice {
        Sluice::try_start_cmd(config, cmd).unwrap_or_else(|log| panic!("sluice exited: {log}"))
    }

    /// [`Sluice::start`], or the log of a process that exited while starting (a
    /// listen address another process took, say).
    pub fn try_start(config: &str) -> Result<Sluice, String> {
        Sluice::try_start_cmd(config, Command::new(BIN))
    }

    fn try_start_cmd(config: &str, cmd: Command) -> Result<Sluice, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, config).unwrap();
        let (mut s, reader) = Sluice::spawn(dir, path, cmd, &[]);
        match s.started(config) {
            Ok(()) => Ok(s),
            Err(()) => {
                // Its log read to the end (the pipe closed with the process).
                let _ = reader.join();
                Err(s.log_lines().join("\n"))
            }
        }
    }

    /// Start with `config` and more arguments to `run` (`--pidfile`, …); `{dir}` in
    /// an argument stands for the process's temporary directory.
    pub fn start_args(config: &str, args: &[&str]) -> Sluice {
        Sluice::start_cmd_args(config, Command::new(BIN), args)
    }

    /// [`Sluice::start_args`] with `cmd` as the binary (`ip netns exec NS sluice`, say).
    pub fn start_cmd_args(config: &str, cmd: Command, args: &[&str]) -> Sluice {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, config).unwrap();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{dir}", &dir.path().display().to_string()))
            .collect();
        let (mut s, _) = Sluice::spawn(dir, path, cmd, &args);
        s.wait_started(config);
        s
    }

    /// Start `sluice run --config <config file> ARGS` without waiting for anything.
    pub fn spawn_in(config: &std::path::Path, args: &[String]) -> Sluice {
        let dir = tempfile::tempdir().unwrap();
        Sluice::spawn(dir, config.to_owned(), Command::new(BIN), args).0
    }

    /// The process, and the thread collecting its log (it ends with the process).
    fn spawn(
        dir: tempfile::TempDir,
        path: PathBuf,
        mut cmd: Command,
        args: &[String],
    ) -> (Sluice, thread::JoinHandle<()>) {
        let mut child = cmd
            .args(["run", "--config"])
            .arg(&path)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[sluice] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let s = Sluice {
            child,
            dir,
            config: path,
            log,
        };
        (s, reader)
    }

    /// Wait until the shards started and every service of `config` logged that it
    /// listens; panics, with the log, if the process exits first.
    pub fn wait_started(&mut self, config: &str) {
        if self.started(config).is_err() {
            panic!("sluice exited: {}", self.log_lines().join("\n"));
        }
    }

    /// [`Sluice::wait_started`], or `Err` when the process exited first.
    fn started(&mut self, config: &str) -> Result<(), ()> {
        let services = config.matches("[[service]]").count();
        let exited = wait_for("shards started", || {
            if self.count_log(|l| l.contains("starting shards")) > 0 {
                return Some(false);
            }
            self.child.try_wait().unwrap().map(|_| true)
        });
        if exited {
            return Err(());
        }
        wait_for("services to listen", || {
            (self.count_log(|l| l.contains("service listening")) >= services).then_some(())
        });
        Ok(())
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Wait until a log line matches; panics (with the log) if the process exits first.
    pub fn wait_log(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| f(l)) {
                return l.clone();
            }
            assert!(
                start.elapsed() < PATIENCE,
                "timed out waiting for log: {what}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Count log lines that match.
    pub fn count_log(&self, f: impl Fn(&str) -> bool) -> usize {
        self.log.lock().unwrap().iter().filter(|l| f(l)).count()
    }

    /// `service name → bound address` from the "service listening" lines, latest wins.
    pub fn listening(&self) -> Vec<(String, SocketAddr)> {
        let mut out: Vec<(String, SocketAddr)> = Vec::new();
        for l in self.log.lock().unwrap().iter() {
            if !l.contains("service listening") {
                continue;
            }
            let field = |k: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .map(str::to_owned)
            };
            if let (Some(name), Some(addr)) = (field("service="), field("listen=")) {
                // HTTP services routed by `[http] listen` alone log `listen=[http]`.
                if let Ok(addr) = addr.parse() {
                    out.retain(|(n, _)| *n != name);
                    out.push((name, addr));
                }
            }
        }
        out
    }

    /// The shared HTTP listener, from the "http listening" line.
    pub fn http(&self) -> SocketAddr {
        let line = self.wait_log("http listening", |l| l.contains("http listening"));
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("listen="))
            .expect("listen= field")
            .parse()
            .unwrap()
    }

    /// The shared TLS listener, from the "https listening" line.
    pub fn https(&self) -> SocketAddr {
        let line = self.wait_log("https listening", |l| l.contains("https listening"));
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("listen="))
            .expect("listen= field")
            .parse()
            .unwrap()
    }

    /// The admin port, from the "admin listening" line.
    pub fn admin(&self) -> SocketAddr {
        let line = self.wait_log("admin listening", |l| l.contains("admin listening"));
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("listen="))
            .expect("listen= field")
            .parse()
            .unwrap()
    }

    pub fn addr(&self, service: &str) -> SocketAddr {
        self.listening()
            .into_iter()
            .find(|(n, _)| n == service)
            .unwrap_or_else(|| panic!("service {service} not listening"))
            .1
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Replace the config file and send SIGHUP; waits for the reload verdict.
    pub fn reload(&self, config: &str) -> bool {
        let ok_before = self.count_log(|l| l.contains("configuration reloaded"));
        let bad_before = self.count_log(|l| l.contains("reload rejected"));
        std::fs::write(&self.config, config).unwrap();
        self.signal("HUP");
        wait_for("reload verdict", || {
            if self.count_log(|l| l.contains("configuration reloaded")) > ok_before {
                Some(true)
            } else if self.count_log(|l| l.contains("reload rejected")) > bad_before {
                Some(false)
            } else {
                None
            }
        })
    }

    /// Wait for the process to exit (bounded).
    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_for("sluice to exit", || self.child.try_wait().unwrap())
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `[server]` section tests use, with the I/O backend under test.
pub fn server(io: &str, extra: &str) -> String {
    format!("[server]\nworkers = 2\nio = \"{io}\"\nshutdown_grace_ms = 5000\n{extra}\n")
}

pub fn service(name: &str, balance: &str, backends: &[SocketAddr]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nbalance = \"{balance}\"\nbackends = [{}]\n",
        list.join(", ")
    )
}

/// A test backend: a listener on an OS-chosen loopback port served by a thread per
/// connection. Dropping it (or calling `kill`) closes the listener.
pub struct Backend {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Backend {
    pub fn spawn(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> Backend {
        Backend::spawn_at("127.0.0.1", handler)
    }

    /// [`Backend::spawn`] on another loopback address (`127.0.0.2`…): sluice sorts a
    /// service's backends by address, so the address decides a backend's place.
    pub fn spawn_at(ip: &str, handler: impl Fn(TcpStream) + Send + Sync + 'static) -> Backend {
        let l = TcpListener::bind((ip, 0)).unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let (a, s) = (Arc::clone(&accepted), Arc::clone(&stop));
        let handle = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        a.fetch_add(1, Ordering::Relaxed);
                        let h = Arc::clone(&handler);
                        thread::Builder::new()
                            .stack_size(128 * 1024)
                            .spawn(move || h(c))
                            .unwrap();
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Backend {
            addr,
            accepted,
            stop,
            handle: Some(handle),
        }
    }

    /// Writes `name` and closes.
    pub fn named(name: &'static str) -> Backend {
        Backend::spawn(move |mut c| {
            let _ = c.write_all(name.as_bytes());
        })
    }

    /// Echoes every byte until the client half-closes, then half-closes too.
    pub fn echo() -> Backend {
        Backend::spawn(|mut c| {
            let mut r = c.try_clone().unwrap();
            let _ = std::io::copy(&mut r, &mut c);
            let _ = c.shutdown(Shutdown::Write);
        })
    }

    /// Stop accepting and close the listening socket: new connects are refused.
    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback listener whose accept queue is full: further SYNs are dropped, so a
/// connect to it neither succeeds nor fails until it times out. Dropping it closes the
/// listener and the connections that fill its queue.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<TcpStream>,
}

/// A [`Blackhole`] on `127.0.0.1`.
pub fn blackhole() -> Blackhole {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    s.listen(0).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    // Fill the queue (a backlog of 0 still queues one; take a few to be sure).
    let fillers = (0..4)
        .map(|_| {
            let f = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            f.set_nonblocking(true).unwrap();
            let _ = f.connect(&addr.into());
            TcpStream::from(f)
        })
        .collect();
    thread::sleep(Duration::from_millis(50));
    Blackhole {
        addr,
        _listener: s,
        _fillers: fillers,
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, PATIENCE).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s
}

/// Connect, read to end of stream, return what arrived.
pub fn fetch(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, PATIENCE)?;
    s.set_read_timeout(Some(PATIENCE))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Read a message head, through its blank line and not a byte further (what follows
/// belongs to the body or to a tunnel).
pub fn read_head(s: &mut impl Read) -> Vec<u8> {
    try_read_head(s).expect("a whole head before the end of stream")
}

/// [`read_head`], or `None` when the stream ends (or fails) first.
pub fn try_read_head(s: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}

/// Send `msg` on `s` and read back exactly as many bytes.
pub fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).unwrap();
    back
}

/// A deterministic byte stream (xorshift) and its running FNV-1a digest.
pub struct Stream {
    state: u64,
}

impl Stream {
    pub fn new(seed: u64) -> Stream {
        Stream { state: seed | 1 }
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let b = self.state.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

pub fn fnv(hash: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *hash ^= u64::from(b);
        *hash = hash.wrapping_mul(0x100_0000_01b3);
    }
}

pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Write `total` bytes of stream `seed` to `w`, then half-close.
pub fn send_stream(mut w: TcpStream, seed: u64, total: usize) -> u64 {
    let mut s = Stream::new(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut h = FNV_START;
    let mut left = total;
    while left > 0 {
        let n = left.min(buf.len());
        s.fill(&mut buf[..n]);
        fnv(&mut h, &buf[..n]);
        w.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    w.shutdown(Shutdown::Write).unwrap();
    h
}

/// Read `r` to end of stream; returns (bytes, digest).
pub fn drain_stream(mut r: TcpStream) -> (usize, u64) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut h = FNV_START;
    let mut total = 0;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (total, h),
            Ok(n) => {
                fnv(&mut h, &buf[..n]);
                total += n;
            }
            Err(e) => panic!("stream read failed after {total} bytes: {e}"),
        }
    }
}

/// The digest of `total` bytes of stream `seed`, computed locally.
pub fn expected_digest(seed: u64, total: usize) -> u64 {
    let mut s = Stream::new(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut h = FNV_START;
    let mut left = total;
    while left > 0 {
        let n = left.min(buf.len());
        s.fill(&mut buf[..n]);
        fnv(&mut h, &buf[..n]);
        left -= n;
    }
    h
}

/// A channel-reporting backend for bulk tests: sends `total` bytes of stream 2 while
/// reading the client's bytes to the end; reports (bytes received, digest).
pub fn bulk_backend(total: usize) -> (Backend, mpsc::Receiver<(usize, u64)>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let b = Backend::spawn(move |c| {
        let w = c.try_clone().unwrap();
        let sender = thread::spawn(move || send_stream(w, 2, total));
        let got = drain_stream(c);
        sender.join().unwrap();
        tx.lock().unwrap().send(got).unwrap();
    });
    (b, rx)
}

/// Run the test body once per I/O backend.
#[macro_export]
macro_rules! both_io {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $( #[test] fn $name() { super::$name("uring") } )*
        }
        mod epoll {
            $( #[test] fn $name() { super::$name("epoll") } )*
        }
    };
}

/// Runs `sluice check` on `text`: (exit code, stdout, stderr with the file's temporary
/// path replaced by `FILE`).
pub fn sluice_check(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let p = path.display().to_string();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap().replace(&p, "FILE"),
    )
}

/// Reads one request from `s`: its head, and a body of `Content-Length` bytes, both
/// taken off `buf` (which keeps what came after). The head without its blank line, or
/// `None` once the peer closes or the read fails.
pub fn read_request(s: &mut impl Read, buf: &mut Vec<u8>) -> Option<String> {
    read_request_body(s, buf).map(|(head, _)| head)
}

/// [`read_request`], with the request's body.
pub fn read_request_body(s: &mut impl Read, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < end + 4 + length {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[end + 4..end + 4 + length].to_vec();
    buf.drain(..end + 4 + length);
    Some((head, body))
}

/// A minimal HTTP/1.1 server: answers every request with `body`, keeps the connection
/// open unless the request says `Connection: close`; counts requests in `served`.
pub fn http_backend(body: &'static str, served: Arc<AtomicUsize>) -> Backend {
    Backend::spawn(move |mut c| {
        let mut buf = Vec::new();
        while let Some(head) = read_request(&mut c, &mut buf) {
            served.fetch_add(1, Ordering::Relaxed);
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let close = head.to_ascii_lowercase().contains("connection: close");
            if c.write_all(resp.as_bytes()).is_err() || close {
                return;
            }
        }
    })
}

/// The sum of the samples of Prometheus metric `name` (any labels) on the admin port.
/// The sum of the samples of `name` whose labels contain `labels` (`kind="full"`).
pub fn metric_where(admin: SocketAddr, name: &str, labels: &str) -> f64 {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", &format!("http://{admin}/metrics")])
        .output()
        .expect("curl is installed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

pub fn metric(admin: SocketAddr, name: &str) -> f64 {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", &format!("http://{admin}/metrics")])
        .output()
        .expect("curl is installed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}
