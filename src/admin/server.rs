//! The admin port's connections: one thread, one non-blocking event loop, at most
//! [`MAX_CONNECTIONS`] connections at once, each with deadlines for its whole request
//! rather than per read. A client that sends nothing, or one byte at a time, holds one
//! slot until its deadline and delays no one. With every slot taken, a new connection
//! takes the slot of the oldest one still reading its head (told 408, counted): clients
//! that hold connections open cannot keep a health checker out. Only when every slot
//! is writing a response is the newcomer answered 503 at once (counted).

use super::Page;
use crate::stats::SharedCounter;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Connections served at once. Each holds at most a request head ([`MAX_HEAD`]) and
/// one rendered page.
pub const MAX_CONNECTIONS: usize = 64;
/// The whole request head must arrive within this of the accept (else 408).
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// The response must be written within this of the accept (else the connection is
/// closed).
pub const RESPONSE_DEADLINE: Duration = Duration::from_secs(15);
/// The largest request head read.
pub const MAX_HEAD: usize = 8192;
/// The largest request body read (a form of the stats page's admin actions).
pub const MAX_BODY: usize = 4096;
/// How long accepting waits after a failed accept (out of descriptors, typically).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
const LISTENER: Token = Token(usize::MAX);
const WAKE: Token = Token(usize::MAX - 1);

/// Tells the admin port to stop accepting (its process handed the port over to a
/// successor): connections already accepted are served to their end.
#[derive(Debug, Clone)]
pub struct Stop {
    waker: std::sync::Arc<mio::Waker>,
    asked: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Stop {
    pub fn stop_accepting(&self) {
        self.asked.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = self.waker.wake() {
            tracing::warn!(error = %e, "admin port: cannot wake its thread");
        }
    }
}

/// The admin port's own counters, shown on `/metrics`.
#[derive(Debug, Default)]
pub struct AdminCounters {
    /// Requests answered (any status).
    pub requests: SharedCounter,
    /// Connections answered 503 at once because [`MAX_CONNECTIONS`] were open.
    pub refused: SharedCounter,
    /// Requests refused 401 (no or wrong token) or 403 (cross-site signal).
    pub denied: SharedCounter,
    /// Connections closed at a deadline (head or response not done in time).
    pub timeouts: SharedCounter,
    /// Connections still reading their head closed to make room for a new one.
    pub evicted: SharedCounter,
}

/// What the loop asks of the pages: an answer for a complete request, its head and
/// (with `Content-Length`) its body.
pub trait Answer {
    fn answer(&self, request: &[u8], local: SocketAddr) -> Page;
    fn counters(&self) -> &AdminCounters;
}

struct Conn {
    stream: TcpStream,
    /// The address the client reached (the admin port's own origin).
    local: SocketAddr,
    accepted: Instant,
    head: Vec<u8>,
    /// The response, once the head is complete; `sent` of it is written.
    response: Option<Vec<u8>>,
    sent: usize,
}

impl Conn {
    fn deadline(&self) -> Instant {
        self.accepted
            + match self.response {
                None => HEAD_DEADLINE,
                Some(_) => RESPONSE_DEADLINE,
            }
    }
}

/// What became of a connection after some progress.
enum Next {
    Wait,
    Close,
}

pub struct Server<A> {
    poll: Poll,
    /// `None` once it stopped accepting.
    listener: Option<TcpListener>,
    stop: Stop,
    conns: Vec<Option<Conn>>,
    pages: A,
    /// Accepting is retried then (an accept failed).
    accept_retry: Option<Instant>,
    /// The bound was reached and not yet left: logged once per episode.
    full: bool,
}

impl<A: Answer> Server<A> {
    pub fn new(listener: std::net::TcpListener, pages: A) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let stop = Stop {
            waker: std::sync::Arc::new(mio::Waker::new(poll.registry(), WAKE)?),
            asked: Default::default(),
        };
        Ok(Server {
            poll,
            listener: Some(listener),
            stop,
            conns: (0..MAX_CONNECTIONS).map(|_| None).collect(),
            pages,
            accept_retry: None,
            full: false,
        })
    }

    /// Serve forever.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(MAX_CONNECTIONS + 1);
        loop {
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()) + Duration::from_millis(1));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != ErrorKind::Interrupted {
                    tracing::error!(error = %e, "admin port: poll failed, stopped");
                    return;
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_all(),
                    WAKE => self.maybe_stop(),
                    Token(i) => self.drive(i),
                }
            }
            self.expire(Instant::now());
        }
    }

    /// The earliest deadline: a connection's, or the accept retry.
    fn next_deadline(&self) -> Option<Instant> {
        self.conns
            .iter()
            .flatten()
            .map(Conn::deadline)
            .chain(self.accept_retry)
            .min()
    }

    /// The handle that stops this server accepting.
    pub fn stopper(&self) -> Stop {
        self.stop.clone()
    }

    fn maybe_stop(&mut self) {
        if !self.stop.asked.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
            self.accept_retry = None;
            tracing::info!("admin port: no longer accepting (handed over)");
        }
    }

    fn accept_all(&mut self) {
        self.accept_retry = None;
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let (stream, _) = match listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, typically: the backlog keeps the clients
                    // until a retry (an edge-triggered listener would not say again).
                    tracing::debug!(error = %e, "admin port: accept failed");
                    self.accept_retry = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            };
            self.admit(stream);
        }
    }

    /// A free slot, or the slot of the oldest connection still reading its head
    /// (closed with 408).
    fn slot(&mut self) -> Option<usize> {
        if let Some(i) = self.conns.iter().position(Option::is_none) {
            return Some(i);
        }
        let (i, _) = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
            .filter(|(_, c)| c.response.is_none())
            .min_by_key(|(_, c)| c.accepted)?;
        self.pages.counters().evicted.inc();
        if let Some(c) = self.conns[i].as_mut() {
            too_slow(&mut c.stream);
        }
        self.close(i);
        Some(i)
    }

    fn admit(&mut self, mut stream: TcpStream) {
        let Some(i) = self.slot() else {
            self.pages.counters().refused.inc();
            if !self.full {
                self.full = true;
                tracing::warn!(
                    limit = MAX_CONNECTIONS,
                    "admin port: every connection slot is writing a response, refusing with 503"
                );
            }
            refuse(&mut stream, 503, "Service Unavailable", "admin port busy\n");
            return;
        };
        self.full = false;
        let registered = self.poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        );
        let Ok(local) = registered.and_then(|()| stream.local_addr()) else {
            return;
        };
        self.conns[i] = Some(Conn {
            stream,
            local,
            accepted: Instant::now(),
            head: Vec::with_capacity(1024),
            response: None,
            sent: 0,
        });
        // Edge-triggered: data that came with the connection must be read now.
        self.drive(i);
    }

    fn drive(&mut self, i: usize) {
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let next = if conn.response.is_none() {
            read_head(conn, &self.pages)
        } else {
            Next::Wait
        };
        let next = match (next, &conn.response) {
            (Next::Wait, Some(_)) => write_response(conn),
            (next, _) => next,
        };
        if let Next::Close = next {
            self.close(i);
        }
    }

    fn close(&mut self, i: usize) {
        if let Some(mut c) = self.conns[i].take() {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    /// Close every connection past its deadline; one still reading its head is told
    /// 408 first.
    fn expire(&mut self, now: Instant) {
        if self.accept_retry.is_some_and(|t| now >= t) {
            self.accept_all();
        }
        for i in 0..self.conns.len() {
            let Some(c) = self.conns[i].as_mut() else {
                continue;
            };
            if now < c.deadline() {
                continue;
            }
            self.pages.counters().timeouts.inc();
            if c.response.is_none() {
                too_slow(&mut c.stream);
            }
            self.close(i);
        }
    }
}

/// Read what the client sent; once the request is complete, render the answer.
fn read_head(conn: &mut Conn, pages: &impl Answer) -> Next {
    let mut buf = [0u8; 2048];
    loop {
        match conn.stream.read(&mut buf) {
            Ok(0) => return Next::Close,
            Ok(n) => conn.head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Wait,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Next::Close,
        }
        let page = match request_len(&conn.head) {
            Ok(None) => continue,
            Ok(Some(len)) => pages.answer(&conn.head[..len], conn.local),
            Err((status, why)) => Page::text(status, why),
        };
        pages.counters().requests.inc();
        conn.response = Some(page.into_bytes());
        conn.head = Vec::new();
        // Anything more the client sends is not read: one request per connection.
        return Next::Wait;
    }
}

/// How long the request at the start of `buf` is, head and body, once all of it is
/// there; the status to refuse it with when it cannot be read.
fn request_len(buf: &[u8]) -> Result<Option<usize>, (u16, &'static str)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err((431, "request head too large\n"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err((431, "too many headers\n")),
        Err(_) => return Err((400, "bad request\n")),
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
    };
    if header("transfer-encoding").is_some() {
        return Err((411, "a body needs Content-Length\n"));
    }
    // Every Content-Length digits only, and all the same: two lengths are two
    // readings of where the request ends (refused, as HAProxy refuses them).
    let mut body = None;
    for h in req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        let n = std::str::from_utf8(h.value)
            .ok()
            .map(|v| v.trim_matches([' ', '\t']))
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<usize>().ok());
        match (n, body) {
            (None, _) => return Err((400, "bad Content-Length\n")),
            (Some(n), Some(m)) if n != m => return Err((400, "two Content-Lengths\n")),
            (Some(n), _) if n > MAX_BODY => return Err((413, "request body too large\n")),
            (Some(n), _) => body = Some(n),
        }
    }
    let body = body.unwrap_or(0);
    Ok((buf.len() >= head + body).then_some(head + body))
}

fn write_response(conn: &mut Conn) -> Next {
    let Some(out) = &conn.response else {
        return Next::Wait;
    };
    while conn.sent < out.len() {
        match conn.stream.write(&out[conn.sent..]) {
            Ok(0) => return Next::Close,
            Ok(n) => conn.sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Wait,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Next::Close,
        }
    }
    let _ = conn.stream.shutdown(std::net::Shutdown::Write);
    Next::Close
}

/// 408 to a client whose request head did not arrive in time (or whose slot a newer
/// client took).
fn too_slow(stream: &mut TcpStream) {
    refuse(stream, 408, "Request Timeout", "request head too slow\n");
}

/// Best effort, without waiting: what the client already sent is read (so the close
/// does not reset the answer away), a short answer written, the connection closed.
fn refuse(stream: &mut TcpStream, status: u16, reason: &str, body: &str) {
    let mut sink = [0u8; 2048];
    let _ = stream.read(&mut sink);
    let text = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write(text.as_bytes());
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::request_len;

    #[test]
    fn a_body_is_framed_by_one_plain_content_length() {
        let post = |headers: &str| format!("POST /haproxy?stats HTTP/1.1\r\n{headers}\r\nb=web");
        let one = post("Content-Length: 5\r\n");
        assert_eq!(request_len(one.as_bytes()), Ok(Some(one.len())));
        let same = post("Content-Length: 5\r\ncontent-length: 5\r\n");
        assert_eq!(request_len(same.as_bytes()), Ok(Some(same.len())));
        assert_eq!(
            request_len(post("Content-Length: 9\r\n").as_bytes()),
            Ok(None)
        );
        for (headers, status) in [
            ("Content-Length: 5\r\nContent-Length: 3\r\n", 400),
            ("Content-Length: 3\r\nContent-Length: 5\r\n", 400),
            ("Content-Length: +5\r\n", 400),
            ("Content-Length: 5, 5\r\n", 400),
            ("Content-Length: 0x5\r\n", 400),
            ("Content-Length: \r\n", 400),
            ("Content-Length: 99999999999999999999999\r\n", 400),
            ("Content-Length: 4097\r\n", 413),
            ("Transfer-Encoding: chunked\r\n", 411),
            ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 411),
        ] {
            let got = request_len(post(headers).as_bytes()).map_err(|(s, _)| s);
            assert_eq!(got, Err(status), "{headers:?}");
        }
    }
}
