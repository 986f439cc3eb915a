//! One client connection in HTTP mode, sans I/O: bytes from the client and from the
//! backend go in, bytes for each come out, and the phase tells the driver (a shard)
//! what it must do — find a backend, give one back, close. No sockets, no clock (the
//! driver passes `now_ms`), so every path is exercised by unit tests and the fuzzer.
//!
//! Requests are handled one at a time: a pipelined request waits in `input` until the
//! response before it is complete, so responses leave in request order.

mod engine;
mod heads;
mod spare;
#[cfg(test)]
mod tests;

pub use heads::reason;

use super::body::{Body, Output};
use super::head::{self, BodyKind, Method};
pub use spare::trim_heap;
use spare::Lease;
use std::io::Write;
use std::net::IpAddr;

/// Bytes waiting for a socket before reading more from the other side stops: towards
/// the backend (a request body the backend is slow to take)…
const HIGH_WATER: usize = 256 * 1024;
/// …and towards the client, less, since a client that does not read is the cheapest
/// way to make an edge host hold memory (HAProxy holds about 32 KiB per stream).
const CLIENT_HIGH_WATER: usize = 32 * 1024;
/// How long a closing connection reads (and discards) what the client still sends, so
/// the close does not turn into a reset that destroys the error response.
const LINGER_MS: u64 = 2_000;

/// What a session's timer watches (see [`Session::waiting`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// A keep-alive connection between requests (or a new one before its first byte).
    NextRequest,
    /// The rest of a request head.
    Head,
    /// More of a request body.
    ClientBody,
    /// The backend, to take request bytes or send response bytes.
    Backend,
    /// An exchange waiting on neither side (a slow client reading the response).
    NeitherSide,
    /// A close's linger, discarding what the client still sends.
    Linger,
    /// The client, to take what it is owed (a response's tail, to a slow reader):
    /// bounded by the driver's idle timeout, as a slow reader mid-exchange is.
    ClientReads,
    Nothing,
}

/// Settings from `[http]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub header_timeout_ms: u64,
    pub keepalive_timeout_ms: u64,
    pub backend_timeout_ms: u64,
    pub forwarded_headers: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading a request head.
    Head,
    /// A request head is parsed: the driver routes it and calls [`Session::attach`] or
    /// [`Session::refuse`].
    Route,
    /// Request and response in flight through the attached backend.
    Exchange,
    /// After a 101 or a CONNECT: bytes pass untouched both ways.
    Tunnel,
    /// Flushing the last response; the connection ends after it (with a linger).
    Closing,
    /// Done: the driver closes both sockets.
    Closed,
}

/// What a session hands over when it becomes a tunnel ([`Session::take_tunnel`]).
#[derive(Debug)]
pub struct Tunnel {
    pub to_backend: Vec<u8>,
    pub to_client: Vec<u8>,
    pub client_eof: bool,
    pub backend_eof: bool,
    pub status: u16,
}

/// What the driver decided for a routed request.
#[derive(Debug, Clone, Copy)]
pub struct Forward<'a> {
    pub client_ip: IpAddr,
    pub listen_port: u16,
    /// The client came over TLS (`X-Forwarded-Proto: https`).
    pub https: bool,
    /// `Set-Cookie` to add to the response: cookie name and server id.
    pub set_cookie: Option<(&'a str, &'a str)>,
    /// The backend connection came from the pool: a failure before the response may
    /// be retried on a new connection when the request can be replayed.
    pub reused: bool,
}

/// The outcome of one exchange, for counters and the backend pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    pub status: u16,
    /// The backend connection may serve another request.
    pub reusable: bool,
}

/// Why the backend side ended the exchange early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendFault {
    /// Reset or closed before any response byte on a reused connection, for a request
    /// that can be replayed: the driver attaches a new connection and calls `attach`.
    Retry,
    /// The client got an error status (502/504) or was cut off mid-response.
    Failed,
}

#[derive(Debug)]
pub struct Session {
    limits: Limits,
    phase: Phase,
    /// Buffers, heads and bodies of the current exchange, from the thread's spare
    /// parts (`spare.rs`): none while idle, so an idle keep-alive connection is small.
    p: Lease,
    /// A final (non-1xx) response head was relayed.
    resp_started: bool,
    /// Any response byte arrived from the backend for this request.
    resp_bytes: bool,
    /// The client keeps the connection after the current response.
    client_keep: bool,
    /// The rewritten head stays in `to_backend` until the response starts (replay).
    replayable: bool,
    client_eof: bool,
    backend_eof: bool,
    fin_to_backend: bool,
    /// No more requests after the current one (shutting down).
    last: bool,
    /// Closing after a complete exchange (not an error of the client's): nothing
    /// more is expected from the client.
    graceful: bool,
    /// A response was cut short (its backend failed mid-body, its request body turned
    /// out malformed): the client must be able to tell, so over TLS no `close_notify`.
    cut_short: bool,
    /// Requests served on this connection.
    served: u64,
    /// Start of the current wait (head, keep-alive, linger) for its timeout.
    since_ms: u64,
    /// Last sign of life from the backend in the exchange (attached, took bytes, sent
    /// bytes), or the last time the exchange was waiting on something else: the
    /// server timeout measures the backend's silence while sluice waits on it.
    backend_since_ms: u64,
    /// The request asked for `100-continue`: until its body starts, the client waits
    /// for the backend, not the other way round.
    expect_continue: bool,
    /// A byte of the current request's body arrived.
    body_seen: bool,
    finished: Option<Finished>,
}

impl Session {
    pub fn new(limits: Limits, now_ms: u64) -> Session {
        Session {
            limits,
            phase: Phase::Head,
            p: Lease::default(),
            resp_started: false,
            resp_bytes: false,
            client_keep: true,
            replayable: false,
            client_eof: false,
            backend_eof: false,
            fin_to_backend: false,
            graceful: false,
            last: false,
            cut_short: false,
            served: 0,
            since_ms: now_ms,
            backend_since_ms: now_ms,
            expect_continue: false,
            body_seen: false,
            finished: None,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// A response was cut short: the connection must not end as if it were complete
    /// (over TLS: no `close_notify`, so that a client reading to the close sees the
    /// truncation).
    pub fn cut_short(&self) -> bool {
        self.cut_short
    }

    /// Closing after a complete exchange whose request was read whole: once the
    /// response is out, the connection may close without waiting for the client (the
    /// driver still checks that nothing is left to read, so the close cannot reset).
    pub fn graceful_close(&self) -> bool {
        self.phase == Phase::Closing && self.graceful && self.p.input.is_empty()
    }

    /// The process is shutting down: the response in flight (if any) is the last on
    /// this connection and says `Connection: close`.
    pub fn stop_keep_alive(&mut self) {
        self.last = true;
        if !self.resp_started {
            self.client_keep = false;
        }
    }

    /// Between requests with nothing read: give back every buffer and field list, so
    /// an idle keep-alive connection holds only the session itself. Done as the last
    /// byte of a response is written (the set goes to the thread's spare ones, where
    /// the next request of any connection takes it: a burst of connections holds sets
    /// only while exchanges are under way), and by the sweep for whatever ended
    /// another way.
    pub fn trim_if_idle(&mut self) {
        if self.phase != Phase::Head || !self.p.input.is_empty() || !self.client_output().is_empty()
        {
            return;
        }
        self.p.give_back();
    }

    /// Between requests with nothing read: safe to close when shutting down.
    pub fn is_idle(&self) -> bool {
        (self.phase == Phase::Head && self.p.input.is_empty()) || self.phase == Phase::Closing
    }

    // ---- what the driver reads --------------------------------------------------

    /// Bytes to write to the client.
    pub fn client_output(&self) -> &[u8] {
        &self.p.to_client[self.p.client_sent..]
    }

    /// Everything in [`client_output`](Self::client_output) is the last the client
    /// gets: its FIN follows once it is written.
    pub fn output_is_last(&self) -> bool {
        self.phase == Phase::Closing
    }

    pub fn client_wrote(&mut self, n: usize) {
        // Nothing written: nothing to note (a session without parts takes none for it).
        if n > 0 {
            self.p.client_sent += n;
            if self.p.client_sent == self.p.to_client.len() {
                release(&mut self.p.to_client);
                self.p.client_sent = 0;
            }
        }
        self.settle();
        self.trim_if_idle();
    }

    /// Bytes to write to the backend.
    pub fn backend_output(&self) -> &[u8] {
        match self.phase {
            Phase::Exchange | Phase::Tunnel => &self.p.to_backend[self.p.backend_sent..],
            _ => &[],
        }
    }

    pub fn backend_wrote(&mut self, n: usize, now_ms: u64) {
        if n > 0 {
            self.backend_since_ms = now_ms;
            self.p.backend_sent += n;
            if self.p.backend_sent == self.p.to_backend.len() && !self.replayable {
                release(&mut self.p.to_backend);
                self.p.backend_sent = 0;
            }
        }
        self.settle();
    }

    /// Whether reading from the client is useful now.
    pub fn wants_client_read(&self) -> bool {
        if self.client_eof {
            return false;
        }
        match self.phase {
            Phase::Head => self.p.input.len() < self.limits.max_header_bytes,
            Phase::Exchange => !self.p.req_body.done() && self.backend_output().len() < HIGH_WATER,
            Phase::Tunnel => self.backend_output().len() < HIGH_WATER,
            Phase::Closing => true, // discarded: see `LINGER_MS`
            Phase::Route | Phase::Closed => false,
        }
    }

    /// Whether reading from the backend is useful now.
    pub fn wants_backend_read(&self) -> bool {
        !self.backend_eof
            && matches!(self.phase, Phase::Exchange | Phase::Tunnel)
            && self.client_output().len() < CLIENT_HIGH_WATER
    }

    /// The client's write side should be shut now: the last response is flushed, or
    /// the tunnel's backend sent its FIN and everything before it is delivered. The
    /// driver does it once.
    pub fn fin_to_client(&self) -> bool {
        self.client_output().is_empty()
            && match self.phase {
                Phase::Closing => true,
                Phase::Tunnel => self.backend_eof,
                _ => false,
            }
    }

    /// In a tunnel whose client sent its FIN and whose bytes are all delivered: shut the
    /// backend's write side.
    pub fn fin_to_backend(&self) -> bool {
        self.phase == Phase::Tunnel && self.client_eof && self.backend_output().is_empty()
    }

    /// Note that the driver forwarded a FIN to the backend.
    pub fn backend_shut(&mut self) {
        self.fin_to_backend = true;
        self.settle();
    }

    /// The last exchange's outcome, once: the driver detaches (and maybe pools) the
    /// backend and counts the status.
    pub fn take_finished(&mut self) -> Option<Finished> {
        self.finished.take()
    }

    /// The routed request can be sent again should a reused connection fail before
    /// any response byte: idempotent and without a body.
    pub fn replayable(&self) -> bool {
        self.p.req.method.idempotent() && self.p.req.body == BodyKind::None
    }

    // ---- the parsed request, for routing -------------------------------------------

    /// The Host without its port, or "" when absent; for an absolute-form target its
    /// authority, which replaces the Host field (RFC 9112 §3.2.2).
    pub fn host(&self) -> &[u8] {
        self.p
            .req
            .host
            .as_ref()
            .map_or(b"", |r| head::host_name(&self.p.input[r.clone()]))
    }

    /// The path of the request target, with its query: what the backend receives (an
    /// absolute-form target without a path is `/`, or `*` for OPTIONS).
    pub fn path(&self) -> &[u8] {
        let origin = &self.p.input[self.p.req.origin.clone()];
        match origin.first() {
            Some(b'/') => origin,
            _ if !self.p.req.absolute => origin,
            None if self.p.req.method == Method::Options => b"*",
            _ => b"/",
        }
    }

    /// The first value of header `name`; for Host, the authority of an absolute-form
    /// target.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        if self.p.req.absolute && name.eq_ignore_ascii_case("host") {
            return self.p.req.host.as_ref().map(|r| &self.p.input[r.clone()]);
        }
        self.p.req.fields.iter().find_map(|(_, f)| {
            self.p.input[f.name.clone()]
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| &self.p.input[f.value.clone()])
        })
    }

    /// The value of cookie `name` in the request's Cookie headers.
    pub fn cookie(&self, name: &str) -> Option<&[u8]> {
        self.p
            .req
            .fields
            .iter()
            .filter(|(_, f)| self.p.input[f.name.clone()].eq_ignore_ascii_case(b"cookie"))
            .flat_map(|(_, f)| self.p.input[f.value.clone()].split(|&b| b == b';'))
            .find_map(|pair| {
                let pair = pair.trim_ascii();
                let eq = pair.iter().position(|&b| b == b'=')?;
                (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
            })
    }

    // ---- input from the driver ----------------------------------------------------

    /// Read client bytes with `read`, which appends to the buffer it is given and
    /// returns how many bytes it added (`Ok(0)`: end of stream).
    pub fn client_read<E>(
        &mut self,
        now_ms: u64,
        read: impl FnOnce(&mut Vec<u8>) -> Result<usize, E>,
    ) -> Result<usize, E> {
        let before = self.p.input.len();
        let n = read(&mut self.p.input)?;
        if n == 0 {
            return Ok(0);
        }
        if self.phase == Phase::Closing {
            self.p.input.clear();
            return Ok(n);
        }
        if (self.phase == Phase::Head && before == 0) || self.phase == Phase::Exchange {
            // The head timeout runs from its first byte; a body's from its last.
            self.since_ms = now_ms;
            self.body_seen |= self.phase == Phase::Exchange;
        }
        self.advance(now_ms);
        Ok(n)
    }

    /// The client sent its FIN. A request already read is still answered (a client may
    /// half-close after sending); a request cut short is dropped.
    pub fn client_closed(&mut self) {
        self.client_eof = true;
        match self.phase {
            // Between requests (a head cut short is dropped): the connection closes
            // once the last response is written — it may still be, to a slow client
            // that half-closed after its request (see `settle`).
            Phase::Head => self.p.input.clear(),
            Phase::Exchange if !self.p.req_body.done() => self.phase = Phase::Closed,
            // Requests already read (the current one, pipelined ones) are answered;
            // the connection closes after the last.
            Phase::Route | Phase::Exchange | Phase::Tunnel | Phase::Closing | Phase::Closed => {}
        }
        self.settle();
    }

    /// Backend bytes arrived.
    pub fn backend_read(&mut self, data: &[u8], now_ms: u64) {
        if data.is_empty() {
            return;
        }
        self.resp_bytes = true;
        self.backend_since_ms = now_ms;
        if self.phase == Phase::Tunnel {
            self.p.to_client.extend_from_slice(data);
            return;
        }
        if self.phase != Phase::Exchange {
            return;
        }
        if self.resp_started && self.p.from_backend.is_empty() {
            // The common case for body bytes: no copy into `from_backend` first.
            let p = &mut *self.p;
            match p.resp_body.feed(data, &mut p.to_client) {
                Ok(used) if used < data.len() => {
                    // Bytes after the response: the backend is broken; never reuse it.
                    self.p.resp.keep_alive = false;
                }
                Ok(_) => {}
                Err(_) => return self.backend_failed(now_ms),
            }
        } else {
            self.p.from_backend.extend_from_slice(data);
        }
        self.advance_response(now_ms);
    }

    /// The backend closed its side (`reset`: with an error).
    pub fn backend_closed(&mut self, reset: bool, now_ms: u64) -> BackendFault {
        self.backend_eof = true;
        match self.phase {
            Phase::Tunnel if !reset => {
                self.settle();
                BackendFault::Failed
            }
            Phase::Exchange if self.resp_started && self.p.resp_body.until_close() && !reset => {
                // The end of a body delimited by the close.
                self.p.resp_body = Body::default();
                self.client_keep = false;
                self.complete(now_ms);
                BackendFault::Failed
            }
            Phase::Exchange if !self.resp_bytes && self.replayable => {
                self.backend_eof = false;
                self.p.backend_sent = 0;
                self.phase = Phase::Route;
                BackendFault::Retry
            }
            _ => {
                self.backend_failed(now_ms);
                BackendFault::Failed
            }
        }
    }

    /// The backend was silent for `backend_timeout_ms` while sluice waited on it: 504
    /// while no final response head was relayed (none, or one cut short), else the
    /// client is cut off mid-body.
    fn backend_timed_out(&mut self, now_ms: u64) {
        tracing::debug!(started = self.resp_started, "backend timed out");
        if self.resp_started {
            self.backend_failed(now_ms);
        } else {
            self.respond(504, now_ms);
        }
    }

    /// The exchange waits for more of the request body from the client.
    fn waits_on_client(&self) -> bool {
        !self.p.req_body.done()
            && !self.client_eof
            && self.backend_output().is_empty()
            && (self.body_seen || !self.expect_continue)
    }

    /// The client paused its request body for `header_timeout_ms`: 408 while no response
    /// was relayed, else the connection is cut.
    fn client_timed_out(&mut self, now_ms: u64) {
        tracing::debug!(started = self.resp_started, "request body timed out");
        if self.resp_started {
            self.finished = Some(Finished {
                status: self.p.resp.status,
                reusable: false,
            });
            self.cut(now_ms);
        } else {
            self.respond(408, now_ms);
        }
    }

    /// The exchange waits on the backend: to take request bytes, or to send response
    /// bytes that the client is ready for (a request still arriving from the client, or
    /// a client too slow to take the response, is not the backend's silence).
    fn waits_on_backend(&self) -> bool {
        !self.backend_output().is_empty()
            || (self.wants_backend_read() && (self.p.req_body.done() || self.resp_started))
    }

    /// What the session waits on now, and until when it may (`u64::MAX`: untimed).
    /// The one place each timeout's start and length are chosen: both
    /// [`deadline_ms`](Self::deadline_ms) and [`check_timers`](Self::check_timers)
    /// read it.
    fn waiting(&self) -> (Waiting, u64) {
        let l = &self.limits;
        let since = |limit: u64| self.since_ms.saturating_add(limit);
        match self.phase {
            // A slow reader still taking a response: the keep-alive wait or the linger
            // starts once it has all of it (`check_timers` moves `since_ms` along).
            Phase::Head | Phase::Closing
                if self.p.input.is_empty() && !self.client_output().is_empty() =>
            {
                (Waiting::ClientReads, u64::MAX)
            }
            Phase::Head if self.p.input.is_empty() => {
                let limit = if self.served == 0 {
                    l.header_timeout_ms
                } else {
                    l.keepalive_timeout_ms
                };
                (Waiting::NextRequest, since(limit))
            }
            Phase::Head => (Waiting::Head, since(l.header_timeout_ms)),
            // A request body that stops arriving: `header_timeout_ms` bounds every pause,
            // as it bounds the head (a slow body holds a backend connection too).
            Phase::Exchange if self.waits_on_client() => {
                (Waiting::ClientBody, since(l.header_timeout_ms))
            }
            Phase::Exchange if !self.waits_on_backend() => (Waiting::NeitherSide, u64::MAX),
            Phase::Exchange => (
                Waiting::Backend,
                self.backend_since_ms.saturating_add(l.backend_timeout_ms),
            ),
            Phase::Closing => (Waiting::Linger, since(LINGER_MS)),
            _ => (Waiting::Nothing, u64::MAX),
        }
    }

    /// When [`check_timers`](Self::check_timers) has something to do next (a time in
    /// the driver's clock; `u64::MAX`: nothing is timed).
    pub fn deadline_ms(&self) -> u64 {
        self.waiting().1
    }

    /// The timeouts of this connection's current wait; call at every deadline and
    /// after every change of what the connection waits on.
    pub fn check_timers(&mut self, now_ms: u64) {
        let (what, at) = self.waiting();
        if matches!(what, Waiting::ClientBody | Waiting::NeitherSide) {
            // The backend's silence is timed from when the exchange starts waiting on it.
            self.backend_since_ms = now_ms;
        }
        if what == Waiting::ClientReads {
            self.since_ms = now_ms;
        }
        if now_ms < at {
            return;
        }
        match what {
            Waiting::NextRequest | Waiting::Linger => self.phase = Phase::Closed,
            Waiting::Head => self.respond(408, now_ms),
            Waiting::ClientBody => self.client_timed_out(now_ms),
            Waiting::Backend => self.backend_timed_out(now_ms),
            Waiting::NeitherSide | Waiting::ClientReads | Waiting::Nothing => {}
        }
    }

    /// A tunnel leaves the session: the bytes still owed to each side, whether each
    /// side already sent its FIN, and the status that opened it (a 101, or a 2xx to a
    /// CONNECT). From here the driver relays the bytes itself; the session is spent.
    pub fn take_tunnel(&mut self) -> Option<Tunnel> {
        if self.phase != Phase::Tunnel {
            return None;
        }
        let mut to_backend = std::mem::take(&mut self.p.to_backend);
        to_backend.drain(..self.p.backend_sent);
        let mut to_client = std::mem::take(&mut self.p.to_client);
        to_client.drain(..self.p.client_sent);
        self.p.backend_sent = 0;
        self.p.client_sent = 0;
        self.phase = Phase::Closed;
        Some(Tunnel {
            to_backend,
            to_client,
            client_eof: self.client_eof,
            backend_eof: self.backend_eof,
            status: self.p.resp.status,
        })
    }

    // ---- routing decisions from the driver ----------------------------------------------

    /// Forward the routed request to the backend the driver attached.
    pub fn attach(&mut self, fwd: Forward, now_ms: u64) {
        debug_assert_eq!(self.phase, Phase::Route);
        self.phase = Phase::Exchange;
        self.since_ms = now_ms;
        self.backend_since_ms = now_ms;
        self.backend_eof = false;
        if !self.p.to_backend.is_empty() {
            // A replay: the head is still there.
            self.p.backend_sent = 0;
            self.replayable = false;
            return;
        }
        self.resp_started = false;
        self.resp_bytes = false;
        self.write_request_head(&fwd);
        self.retarget(fwd.set_cookie);
        self.replayable = fwd.reused && self.replayable();
        // Read before the head leaves the buffer (the fields point into it).
        self.expect_continue = self
            .header("expect")
            .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
        let head_len = self.p.req.len;
        self.p.input.drain(..head_len);
        self.body_seen = !self.p.input.is_empty();
        let chunked_out = Output::Chunked;
        self.p.req_body = Body::new(self.p.req.body, chunked_out);
        self.client_keep = self.p.req.keep_alive && !self.last;
        self.pump_request_body(now_ms);
    }

    /// The backend changed before anything was sent to it (a failed connect): only the
    /// sticky cookie for the response changes.
    pub fn retarget(&mut self, set_cookie: Option<(&str, &str)>) {
        self.p.pending_cookie.clear();
        if let Some((name, id)) = set_cookie {
            let _ = write!(self.p.pending_cookie, "Set-Cookie: {name}={id}; Path=/\r\n");
        }
    }

    /// Answer the routed request with `status` (no route, no backend, …) and close.
    pub fn refuse(&mut self, status: u16, now_ms: u64) {
        self.respond(status, now_ms);
    }

    /// Answer the routed request with a redirect to `location` and close.
    pub fn redirect(&mut self, location: &str, now_ms: u64) {
        let _ = write!(
            self.p.to_client,
            "HTTP/1.1 301 Moved Permanently\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        self.finish_with(301, now_ms);
    }

    /// The request is a GET or a HEAD: one sluice may answer itself.
    pub fn is_read(&self) -> bool {
        matches!(self.p.req.method, Method::Get | Method::Head)
    }

    /// Answer the request with `body` (200, as bytes; a HEAD its head alone) and
    /// close: what sluice serves itself, an ACME HTTP-01 key authorization.
    pub fn answer(&mut self, body: &str, now_ms: u64) {
        let _ = write!(
            self.p.to_client,
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        if self.p.req.method != Method::Head {
            self.p.to_client.extend_from_slice(body.as_bytes());
        }
        self.finish_with(200, now_ms);
    }
}

/// Bytes a buffer may keep allocated once empty: a connection between requests holds
/// little memory however large its last message was.
const KEEP_BYTES: usize = 4096;

/// Empty `buf`, giving its memory back when it grew past `KEEP_BYTES`.
fn release(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP_BYTES {
        *buf = Vec::new();
    } else {
        buf.clear();
    }
}
