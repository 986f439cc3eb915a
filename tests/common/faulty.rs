//! A misbehaving HTTP/1.1 backend: a real loopback server whose every response is
//! scripted by the query string of the request it answers, so a test states the fault
//! in the URL it sends. Deterministic (split points come from a seed), bounded in time
//! (every wait has a limit), and recording what it received. Each response carries its
//! identity — backend, connection, request — so a test can tell when a client got
//! bytes meant for someone else.
//!
//! | parameter | effect |
//! |---|---|
//! | `len=N` | the body is the first N bytes of [`pattern`] (default: the [`Ident`] text) |
//! | `framing=length\|chunked\|close\|both` | Content-Length (default), chunked, ended by the close, or both headers at once (a smuggling response; the body is chunked) |
//! | `chunk=N` | the chunk size of `framing=chunked` (default 64 KiB) |
//! | `status=N` | the status code (default 200) |
//! | `delay=MS` | a pause before the first response byte |
//! | `interim=1` | an unasked-for `100 Continue` before the response |
//! | `split=SEED` | the writes cut at seeded-random points, with pauses of a few ms |
//! | `upto=N`, `body_upto=N` | only N bytes written (of the whole response; after the head) |
//! | `then=next\|close\|rst\|stall\|stray` | after the last byte: serve the next request (the default), FIN with the last data (the default for `framing=close`), RST (`SO_LINGER` 0) `after` ms later, silence until the peer closes (the default when `upto` cuts the response), a second complete response `after` ms later |
//! | `after=MS` | the pause before `rst` and `stray` |
//! | `head_body=MS` | to a HEAD: the body anyway, MS ms after the head (that body is itself a complete [`stray`] response) |
//! | `early=1` | the response before the request body is read |
//! | `slow_read=N` | the first N request body bytes read 1 KiB at a time, 1 ms apart |

use super::{fnv, Backend, Stream, FNV_START};
use socket2::SockRef;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The period of [`pattern`]: a prime, so that a buffer lost or repeated (whatever its
/// power-of-two size) shifts every byte after it.
pub const PERIOD: usize = 1_000_003;
/// The longest a backend connection waits for anything: a request, a stalled peer's
/// close, the peer's FIN after ours.
const WAIT: Duration = Duration::from_secs(60);
/// Bytes of a body kept for inspection (an identity text fits).
pub const KEEP: usize = 4096;

/// Body bytes: a deterministic stream of period [`PERIOD`], repeated.
pub fn pattern() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| {
        let mut v = vec![0; PERIOD];
        Stream::new(0x5eed).fill(&mut v);
        v
    })
}

/// Up to `n` pattern bytes from `offset` on (fewer where the period wraps).
pub fn pattern_at(offset: u64, n: usize) -> &'static [u8] {
    let start = (offset % PERIOD as u64) as usize;
    &pattern()[start..(start + n).min(PERIOD)]
}

/// The FNV digest of the first `len` pattern bytes (cached: 100 MiB takes a while).
pub fn pattern_digest(len: u64) -> u64 {
    static CACHE: OnceLock<Mutex<HashMap<u64, u64>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(d) = cache.lock().unwrap().get(&len) {
        return *d;
    }
    let mut h = FNV_START;
    let mut off = 0;
    while off < len {
        let p = pattern_at(off, (len - off).min(PERIOD as u64) as usize);
        fnv(&mut h, p);
        off += p.len() as u64;
    }
    cache.lock().unwrap().insert(len, h);
    h
}

// ---- reading ------------------------------------------------------------------------

/// Why a read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The peer's FIN.
    Eof,
    /// The peer's RST.
    Reset,
    /// Nothing before the deadline.
    Timeout,
    /// A message that does not parse, or another socket error.
    Broken,
}

fn stop_of(e: &std::io::Error) -> Stop {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Stop::Timeout,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            Stop::Reset
        }
        _ => Stop::Broken,
    }
}

/// Pace for the first bytes of a body: reads of at most `piece` bytes, `pause` apart,
/// until `first` bytes are in.
#[derive(Debug, Clone, Copy)]
pub struct Slow {
    pub first: u64,
    pub piece: usize,
    pub pause: Duration,
}

/// Where body bytes go: counted, digested, the first [`KEEP`] kept.
#[derive(Debug, Clone)]
pub struct Sink {
    pub len: u64,
    pub digest: u64,
    pub kept: Vec<u8>,
}

impl Default for Sink {
    fn default() -> Sink {
        Sink {
            len: 0,
            digest: FNV_START,
            kept: Vec::new(),
        }
    }
}

impl Sink {
    pub fn put(&mut self, bytes: &[u8]) {
        fnv(&mut self.digest, bytes);
        self.len += bytes.len() as u64;
        let room = KEEP.saturating_sub(self.kept.len()).min(bytes.len());
        self.kept.extend_from_slice(&bytes[..room]);
    }

    /// The bytes are the first `len` bytes of the pattern.
    pub fn is_pattern(&self) -> bool {
        self.digest == pattern_digest(self.len)
    }
}

/// Buffered reads from one socket, each bounded by one deadline.
pub struct Wire {
    pub sock: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    deadline: Instant,
}

impl Wire {
    pub fn new(sock: TcpStream, deadline: Instant) -> Wire {
        Wire {
            sock,
            buf: Vec::new(),
            pos: 0,
            deadline,
        }
    }

    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Bytes read but not consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Read at most `max` more bytes (one system call).
    pub fn fill(&mut self, max: usize) -> Result<usize, Stop> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos >= 64 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Stop::Timeout);
            }
            self.sock
                .set_read_timeout(Some(left))
                .map_err(|_| Stop::Broken)?;
            let old = self.buf.len();
            self.buf.resize(old + max, 0);
            let r = self.sock.read(&mut self.buf[old..]);
            self.buf.truncate(old + *r.as_ref().unwrap_or(&0));
            return match r {
                Ok(0) => Err(Stop::Eof),
                Ok(n) => Ok(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => Err(stop_of(&e)),
            };
        }
    }

    /// A message head through its empty line, at most `limit` bytes.
    pub fn head(&mut self, limit: usize) -> Result<Vec<u8>, Stop> {
        loop {
            if let Some(p) = find(self.buffered(), b"\r\n\r\n") {
                let head = self.buffered()[..p + 4].to_vec();
                self.pos += p + 4;
                return Ok(head);
            }
            if self.buffered().len() > limit {
                return Err(Stop::Broken);
            }
            self.fill(16 * 1024)?;
        }
    }

    /// A line without its CRLF.
    pub fn line(&mut self) -> Result<Vec<u8>, Stop> {
        loop {
            if let Some(p) = find(self.buffered(), b"\r\n") {
                let line = self.buffered()[..p].to_vec();
                self.pos += p + 2;
                return Ok(line);
            }
            if self.buffered().len() > 4096 {
                return Err(Stop::Broken);
            }
            self.fill(4096)?;
        }
    }

    /// Move `n` bytes into `sink`, paced by `slow` while its first bytes are read.
    pub fn take(&mut self, n: u64, sink: &mut Sink, slow: Option<Slow>) -> Result<(), Stop> {
        let mut left = n;
        while left > 0 {
            if self.pos == self.buf.len() {
                match slow.filter(|s| sink.len < s.first) {
                    Some(s) => {
                        thread::sleep(s.pause);
                        self.fill(s.piece)?;
                    }
                    None => {
                        self.fill(64 * 1024)?;
                    }
                }
            }
            let avail = self.buffered();
            let k = avail.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            sink.put(&avail[..k]);
            self.pos += k;
            left -= k as u64;
        }
        Ok(())
    }

    /// Everything until the stream ends; returns how it ended.
    pub fn rest(&mut self, sink: &mut Sink, slow: Option<Slow>) -> Stop {
        match self.take(u64::MAX, sink, slow) {
            Err(stop) => stop,
            Ok(()) => unreachable!("an endless body ended"),
        }
    }

    /// A chunked body, decoded into `sink` (trailers skipped).
    pub fn chunked(&mut self, sink: &mut Sink, slow: Option<Slow>) -> Result<(), Stop> {
        loop {
            let line = self.line()?;
            let text = String::from_utf8_lossy(&line);
            let size = text.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size, 16).map_err(|_| Stop::Broken)?;
            if size == 0 {
                while !self.line()?.is_empty() {}
                return Ok(());
            }
            self.take(size, sink, slow)?;
            if !self.line()?.is_empty() {
                return Err(Stop::Broken);
            }
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A parsed message head: the start line's words, the fields with lower-cased names.
#[derive(Debug, Clone)]
pub struct Head {
    pub start: Vec<String>,
    pub fields: Vec<(String, String)>,
}

impl Head {
    pub fn parse(raw: &[u8]) -> Head {
        let text = String::from_utf8_lossy(raw);
        let mut lines = text.split("\r\n");
        let start = lines
            .next()
            .unwrap_or("")
            .splitn(3, ' ')
            .map(str::to_owned)
            .collect();
        let fields = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Head { start, fields }
    }

    pub fn word(&self, i: usize) -> &str {
        self.start.get(i).map_or("", String::as_str)
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Field `name` lists `token` (case-insensitive).
    pub fn has(&self, name: &str, token: &str) -> bool {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// How a body follows this head: `Some(n)` bytes, chunked (`None`, true) or up to
    /// the close (`None`, false).
    pub fn framing(&self) -> (Option<u64>, bool) {
        if self.has("transfer-encoding", "chunked") {
            return (None, true);
        }
        let length = self.field("content-length").and_then(|v| v.parse().ok());
        (length, false)
    }
}

// ---- identities -------------------------------------------------------------------

/// Who answered which request: the default body of every response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    pub backend: String,
    pub conn: usize,
    pub req: usize,
    pub method: String,
    pub target: String,
    /// The request body as the backend received it.
    pub body_len: u64,
    pub body_digest: u64,
}

impl Ident {
    pub fn text(&self) -> String {
        format!(
            "{} c{} r{} {} {} {} {:016x}\n",
            self.backend,
            self.conn,
            self.req,
            self.method,
            self.target,
            self.body_len,
            self.body_digest
        )
    }

    pub fn parse(body: &[u8]) -> Option<Ident> {
        let text = std::str::from_utf8(body).ok()?.strip_suffix('\n')?;
        let w: Vec<&str> = text.split(' ').collect();
        let [backend, conn, req, method, target, len, digest] = w[..] else {
            return None;
        };
        Some(Ident {
            backend: backend.to_owned(),
            conn: conn.strip_prefix('c')?.parse().ok()?,
            req: req.strip_prefix('r')?.parse().ok()?,
            method: method.to_owned(),
            target: target.to_owned(),
            body_len: len.parse().ok()?,
            body_digest: u64::from_str_radix(digest, 16).ok()?,
        })
    }
}

/// A complete response nobody asked for, sent on connection `conn` after request `req`.
pub fn stray(backend: &str, conn: usize, req: usize) -> Vec<u8> {
    let body = format!("stray {backend} c{conn} r{req}\n");
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Backend: {backend}\r\nX-Stray: yes\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

// ---- the server -------------------------------------------------------------------

/// What became of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Being written (or the request body still being read).
    Writing,
    /// Written as scripted.
    Sent,
    /// A write failed: the peer had gone.
    Refused,
    /// Silent as scripted, waiting for the peer to close.
    Stalled,
    /// The peer closed the stalled connection.
    Dropped,
    /// Nobody closed the stalled connection in time.
    Abandoned,
}

/// One request as the backend received it, and its answer.
#[derive(Debug, Clone)]
pub struct Seen {
    pub conn: usize,
    pub req: usize,
    pub method: String,
    pub target: String,
    /// Field names lower-cased.
    pub head: Head,
    pub body_len: u64,
    pub body_digest: u64,
    pub answer: Answer,
}

pub struct Faulty {
    pub name: &'static str,
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    _backend: Backend,
}

impl Faulty {
    pub fn start(name: &'static str) -> Faulty {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (s, c) = (Arc::clone(&seen), Arc::clone(&connections));
        let backend = Backend::spawn(move |sock| {
            let conn = c.fetch_add(1, Ordering::Relaxed) + 1;
            serve(sock, name, conn, &s);
        });
        Faulty {
            name,
            addr: backend.addr,
            seen,
            connections,
            _backend: backend,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// The latest request for `target`.
    pub fn request(&self, target: &str) -> Option<Seen> {
        self.seen().into_iter().rev().find(|s| s.target == target)
    }

    /// Wait, at most `limit`, until the latest request for `target` has `answer`;
    /// returns the request as it was when the wait ended.
    pub fn wait_answer(&self, target: &str, answer: Answer, limit: Duration) -> Option<Seen> {
        let start = Instant::now();
        loop {
            let s = self.request(target);
            if s.as_ref().is_some_and(|s| s.answer == answer) || start.elapsed() >= limit {
                return s;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length,
    Chunked,
    Close,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Next,
    Close,
    Rst,
    Stall,
    Stray,
}

/// A response's script, from the request target's query.
#[derive(Debug, Clone)]
struct Plan {
    len: Option<u64>,
    framing: Framing,
    chunk: usize,
    status: u16,
    delay_ms: u64,
    interim: bool,
    split: Option<u64>,
    upto: Option<u64>,
    body_upto: Option<u64>,
    /// As asked; see [`Plan::then`] for the default.
    then: Option<Then>,
    after_ms: u64,
    head_body_ms: Option<u64>,
    early: bool,
    slow_read: u64,
}

impl Plan {
    fn parse(target: &str) -> Plan {
        let mut p = Plan {
            len: None,
            framing: Framing::Length,
            chunk: 64 * 1024,
            status: 200,
            delay_ms: 0,
            interim: false,
            split: None,
            upto: None,
            body_upto: None,
            then: None,
            after_ms: 0,
            head_body_ms: None,
            early: false,
            slow_read: 0,
        };
        let query = target.split_once('?').map_or("", |(_, q)| q);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let n = || -> u64 {
                v.parse()
                    .unwrap_or_else(|_| panic!("{k}={v:?} in {target}: a number"))
            };
            match k {
                "len" => p.len = Some(n()),
                "framing" => {
                    p.framing = match v {
                        "length" => Framing::Length,
                        "chunked" => Framing::Chunked,
                        "close" => Framing::Close,
                        "both" => Framing::Both,
                        _ => panic!("framing={v:?} in {target}"),
                    }
                }
                "chunk" => p.chunk = n().max(1) as usize,
                "status" => p.status = n() as u16,
                "delay" => p.delay_ms = n(),
                "interim" => p.interim = n() != 0,
                "split" => p.split = Some(n()),
                "upto" => p.upto = Some(n()),
                "body_upto" => p.body_upto = Some(n()),
                "then" => {
                    p.then = Some(match v {
                        "next" => Then::Next,
                        "close" => Then::Close,
                        "rst" => Then::Rst,
                        "stall" => Then::Stall,
                        "stray" => Then::Stray,
                        _ => panic!("then={v:?} in {target}"),
                    })
                }
                "after" => p.after_ms = n(),
                "head_body" => p.head_body_ms = Some(n()),
                "early" => p.early = n() != 0,
                "slow_read" => p.slow_read = n(),
                _ => panic!("unknown parameter {k:?} in {target}"),
            }
        }
        p
    }

    /// What follows the last byte written (`whole`: the response was not cut short).
    fn then(&self, whole: bool) -> Then {
        self.then.unwrap_or(if !whole {
            Then::Stall
        } else if self.framing == Framing::Close {
            Then::Close
        } else {
            Then::Next
        })
    }
}

fn serve(sock: TcpStream, name: &str, conn: usize, seen: &Mutex<Vec<Seen>>) {
    let _ = sock.set_nodelay(true);
    let mut w = Wire::new(sock, Instant::now() + WAIT);
    for req in 1.. {
        w.set_deadline(Instant::now() + WAIT);
        let Ok(raw) = w.head(64 * 1024) else {
            return;
        };
        let head = Head::parse(&raw);
        let (method, target) = (head.word(0).to_owned(), head.word(1).to_owned());
        let plan = Plan::parse(&target);
        if head.field("expect") == Some("100-continue")
            && (&w.sock)
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .is_err()
        {
            return;
        }
        let mut body = Sink::default();
        if !plan.early && read_body(&mut w, &head, &plan, &mut body).is_err() {
            return;
        }
        let index = {
            let mut seen = seen.lock().unwrap();
            seen.push(Seen {
                conn,
                req,
                method: method.clone(),
                target: target.clone(),
                head: head.clone(),
                body_len: body.len,
                body_digest: body.digest,
                answer: Answer::Writing,
            });
            seen.len() - 1
        };
        let mark = |a: Answer| seen.lock().unwrap()[index].answer = a;
        let id = Ident {
            backend: name.to_owned(),
            conn,
            req,
            method,
            target,
            body_len: body.len,
            body_digest: body.digest,
        };
        let go_on = respond(&mut w, &plan, &id, &mark);
        if !go_on {
            return;
        }
        if plan.early && read_body(&mut w, &head, &plan, &mut Sink::default()).is_err() {
            return;
        }
        if head.has("connection", "close") {
            let _ = w.sock.shutdown(Shutdown::Write);
            linger(&mut w);
            return;
        }
    }
}

fn read_body(w: &mut Wire, head: &Head, plan: &Plan, sink: &mut Sink) -> Result<(), Stop> {
    let slow = (plan.slow_read > 0).then_some(Slow {
        first: plan.slow_read,
        piece: 1024,
        pause: Duration::from_millis(1),
    });
    match head.framing() {
        (_, true) => w.chunked(sink, slow),
        (Some(n), false) => w.take(n, sink, slow),
        (None, false) => Ok(()),
    }
}

/// After our FIN: wait (bounded) for the peer's, so that closing sends no RST.
fn linger(w: &mut Wire) {
    w.set_deadline(Instant::now() + WAIT);
    let _ = w.rest(&mut Sink::default(), None);
}

/// Write the scripted response; returns whether the connection serves another request.
fn respond(w: &mut Wire, plan: &Plan, id: &Ident, mark: &dyn Fn(Answer)) -> bool {
    thread::sleep(Duration::from_millis(plan.delay_ms));
    let head_only = id.method == "HEAD";
    let text = match plan.head_body_ms {
        Some(_) if head_only => stray(&id.backend, id.conn, id.req),
        _ => id.text().into_bytes(),
    };
    let body_len = plan.len.unwrap_or(text.len() as u64);
    let head = response_head(plan, id, body_len);
    let limit = plan.upto.or(plan.body_upto.map(|n| head.len() as u64 + n));
    if plan.then(true) == Then::Close && plan.split.is_none() {
        // Held back until the FIN, which then leaves with the last data.
        let _ = SockRef::from(&w.sock).set_tcp_cork(true);
    }
    let mut out = Out {
        sock: &w.sock,
        rng: plan
            .split
            .map(|s| s.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
        sent: 0,
        limit: limit.unwrap_or(u64::MAX),
    };
    let written = write_response(&mut out, plan, &head, &text, head_only);
    let whole = match written {
        Ok(whole) => whole,
        Err(_) => {
            mark(Answer::Refused);
            return false;
        }
    };
    let then = plan.then(whole);
    let after = Duration::from_millis(plan.after_ms);
    match then {
        Then::Next => {
            mark(Answer::Sent);
            true
        }
        Then::Close => {
            let _ = w.sock.shutdown(Shutdown::Write);
            mark(Answer::Sent);
            linger(w);
            false
        }
        Then::Rst => {
            thread::sleep(after);
            let _ = SockRef::from(&w.sock).set_linger(Some(Duration::ZERO));
            mark(Answer::Sent);
            false
        }
        Then::Stall => {
            mark(Answer::Stalled);
            w.set_deadline(Instant::now() + WAIT);
            match w.rest(&mut Sink::default(), None) {
                Stop::Timeout => mark(Answer::Abandoned),
                _ => mark(Answer::Dropped),
            }
            false
        }
        Then::Stray => {
            thread::sleep(after);
            let ok = (&w.sock)
                .write_all(&stray(&id.backend, id.conn, id.req))
                .is_ok();
            mark(if ok { Answer::Sent } else { Answer::Refused });
            ok
        }
    }
}

fn response_head(plan: &Plan, id: &Ident, body_len: u64) -> Vec<u8> {
    let mut h = format!(
        "HTTP/1.1 {} {}\r\nX-Backend: {}\r\nX-Conn: {}\r\nX-Req: {}\r\n",
        plan.status,
        if plan.status == 200 { "OK" } else { "Whatever" },
        id.backend,
        id.conn,
        id.req
    );
    match plan.framing {
        Framing::Length => h += &format!("Content-Length: {body_len}\r\n"),
        Framing::Chunked => h += "Transfer-Encoding: chunked\r\n",
        Framing::Close => {}
        Framing::Both => {
            h += &format!("Content-Length: {body_len}\r\nTransfer-Encoding: chunked\r\n")
        }
    }
    h += "\r\n";
    let mut bytes = Vec::new();
    if plan.interim {
        bytes.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    bytes.extend_from_slice(h.as_bytes());
    bytes
}

/// Head and body through `out`; `Ok(false)` when its limit cut them short.
fn write_response(
    out: &mut Out,
    plan: &Plan,
    head: &[u8],
    text: &[u8],
    head_only: bool,
) -> std::io::Result<bool> {
    if !out.put(head)? {
        return Ok(false);
    }
    if head_only {
        return match plan.head_body_ms {
            Some(ms) => {
                thread::sleep(Duration::from_millis(ms));
                out.put(text)
            }
            None => Ok(true),
        };
    }
    let chunked = matches!(plan.framing, Framing::Chunked | Framing::Both);
    let piece = if chunked { plan.chunk } else { 256 * 1024 };
    let total = plan.len.unwrap_or(text.len() as u64);
    let mut off = 0u64;
    let mut framed = Vec::new();
    while off < total {
        let n = piece.min(usize::try_from(total - off).unwrap_or(usize::MAX));
        let mut bytes = match plan.len {
            Some(_) => pattern_at(off, n),
            None => &text[off as usize..off as usize + n],
        };
        if chunked {
            framed.clear();
            // A piece of the pattern may end early where the period wraps: the chunk
            // is what was taken.
            framed.extend_from_slice(format!("{:x}\r\n", bytes.len()).as_bytes());
            framed.extend_from_slice(bytes);
            framed.extend_from_slice(b"\r\n");
            off += bytes.len() as u64;
            bytes = &framed;
        } else {
            off += bytes.len() as u64;
        }
        if !out.put(bytes)? {
            return Ok(false);
        }
    }
    if chunked {
        return out.put(b"0\r\n\r\n");
    }
    Ok(true)
}

/// The response's writes: whole, or (with a seed) cut at random points with pauses,
/// and never past `limit` bytes.
struct Out<'a> {
    sock: &'a TcpStream,
    rng: Option<u64>,
    sent: u64,
    limit: u64,
}

impl Out<'_> {
    /// Write `bytes`, or as much as the limit allows; `Ok(false)` once it withheld any.
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<bool> {
        let room = usize::try_from(self.limit - self.sent).unwrap_or(usize::MAX);
        let cut = bytes.len() > room;
        let mut bytes = &bytes[..bytes.len().min(room)];
        while !bytes.is_empty() {
            let n = match &mut self.rng {
                None => bytes.len(),
                Some(state) => {
                    *state ^= *state << 13;
                    *state ^= *state >> 7;
                    *state ^= *state << 17;
                    let r = *state;
                    // Finer cuts in and near the head, where parsers look at each byte.
                    let max = if self.sent < 512 { 16 } else { 3000 };
                    if (r >> 32) & 3 == 0 {
                        thread::sleep(Duration::from_millis(1 + (r >> 40) % 3));
                    }
                    (1 + (r % max) as usize).min(bytes.len())
                }
            };
            let mut sock = self.sock;
            sock.write_all(&bytes[..n])?;
            self.sent += n as u64;
            bytes = &bytes[n..];
        }
        Ok(!cut)
    }
}
