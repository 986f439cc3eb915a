//! One client connection in HTTP mode, sans I/O: bytes from the client and from the
//! backend go in, bytes for each come out, and the phase tells the driver (a shard)
//! what it must do — find a backend, give one back, close. No sockets, no clock (the
//! driver passes `now_ms`), so every path is exercised by unit tests and the fuzzer.
//!
//! Requests are handled one at a time: a pipelined request waits in `input` until the
//! response before it is complete, so responses leave in request order.

use super::body::{Body, BodyError, Output};
use super::head::{self, BodyKind, HeadError, Known, Method, Request, Response};
use std::io::Write;
use std::net::IpAddr;

/// Bytes waiting for a socket before reading more from the other side stops.
const HIGH_WATER: usize = 256 * 1024;
/// How long a closing connection reads (and discards) what the client still sends, so
/// the close does not turn into a reset that destroys the error response.
const LINGER_MS: u64 = 2_000;

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

/// What the driver decided for a routed request.
#[derive(Debug, Clone, Copy)]
pub struct Forward<'a> {
    pub client_ip: IpAddr,
    pub listen_port: u16,
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
    /// Client bytes not yet consumed: a head being read, body bytes, pipelined requests.
    input: Vec<u8>,
    to_client: Vec<u8>,
    client_sent: usize,
    to_backend: Vec<u8>,
    backend_sent: usize,
    /// Backend bytes not yet consumed (a response head being read).
    from_backend: Vec<u8>,
    req: Request,
    resp: Response,
    req_body: Body,
    resp_body: Body,
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
    /// `Set-Cookie` line for the current response (sticky sessions).
    pending_cookie: Vec<u8>,
    /// No more requests after the current one (shutting down).
    last: bool,
    /// Closing after a complete exchange (not an error of the client's): nothing
    /// more is expected from the client.
    graceful: bool,
    /// Requests served on this connection.
    served: u64,
    /// Start of the current wait (head, keep-alive, response) for its timeout.
    since_ms: u64,
    finished: Option<Finished>,
}

impl Session {
    pub fn new(limits: Limits, now_ms: u64) -> Session {
        Session {
            limits,
            phase: Phase::Head,
            input: Vec::new(),
            to_client: Vec::new(),
            client_sent: 0,
            to_backend: Vec::new(),
            backend_sent: 0,
            from_backend: Vec::new(),
            req: Request::default(),
            resp: Response::default(),
            req_body: Body::default(),
            resp_body: Body::default(),
            resp_started: false,
            resp_bytes: false,
            client_keep: true,
            replayable: false,
            client_eof: false,
            backend_eof: false,
            fin_to_backend: false,
            pending_cookie: Vec::new(),
            graceful: false,
            last: false,
            served: 0,
            since_ms: now_ms,
            finished: None,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Closing after a complete exchange whose request was read whole: once the
    /// response is out, the connection may close without waiting for the client (the
    /// driver still checks that nothing is left to read, so the close cannot reset).
    pub fn graceful_close(&self) -> bool {
        self.phase == Phase::Closing && self.graceful && self.input.is_empty()
    }

    /// The process is shutting down: the response in flight (if any) is the last on
    /// this connection and says `Connection: close`.
    pub fn stop_keep_alive(&mut self) {
        self.last = true;
        if !self.resp_started {
            self.client_keep = false;
        }
    }

    /// Between requests with nothing read: safe to close when shutting down.
    pub fn is_idle(&self) -> bool {
        (self.phase == Phase::Head && self.input.is_empty()) || self.phase == Phase::Closing
    }

    // ---- what the driver reads --------------------------------------------------

    /// Bytes to write to the client.
    pub fn client_output(&self) -> &[u8] {
        &self.to_client[self.client_sent..]
    }

    pub fn client_wrote(&mut self, n: usize) {
        self.client_sent += n;
        if self.client_sent == self.to_client.len() {
            release(&mut self.to_client);
            self.client_sent = 0;
        }
        self.settle();
    }

    /// Bytes to write to the backend.
    pub fn backend_output(&self) -> &[u8] {
        match self.phase {
            Phase::Exchange | Phase::Tunnel => &self.to_backend[self.backend_sent..],
            _ => &[],
        }
    }

    pub fn backend_wrote(&mut self, n: usize) {
        self.backend_sent += n;
        if self.backend_sent == self.to_backend.len() && !self.replayable {
            release(&mut self.to_backend);
            self.backend_sent = 0;
        }
        self.settle();
    }

    /// Whether reading from the client is useful now.
    pub fn wants_client_read(&self) -> bool {
        if self.client_eof {
            return false;
        }
        match self.phase {
            Phase::Head => self.input.len() < self.limits.max_header_bytes,
            Phase::Exchange => !self.req_body.done() && self.backend_output().len() < HIGH_WATER,
            Phase::Tunnel => self.backend_output().len() < HIGH_WATER,
            Phase::Closing => true, // discarded: see `LINGER_MS`
            Phase::Route | Phase::Closed => false,
        }
    }

    /// Whether reading from the backend is useful now.
    pub fn wants_backend_read(&self) -> bool {
        !self.backend_eof
            && matches!(self.phase, Phase::Exchange | Phase::Tunnel)
            && self.client_output().len() < HIGH_WATER
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
        self.req.method.idempotent() && self.req.body == BodyKind::None
    }

    /// Requests served so far on this connection.
    pub fn served(&self) -> u64 {
        self.served
    }

    // ---- the parsed request, for routing -------------------------------------------

    pub fn method(&self) -> Method {
        self.req.method
    }

    /// The Host without its port, or "" when absent.
    pub fn host(&self) -> &[u8] {
        let Some(r) = &self.req.host else {
            return b"";
        };
        let h = self.input[r.clone()].trim_ascii();
        if h.first() == Some(&b'[') {
            // [v6]:port
            return h.iter().position(|&b| b == b']').map_or(h, |e| &h[..=e]);
        }
        h.iter().rposition(|&b| b == b':').map_or(h, |c| &h[..c])
    }

    /// The path of the request target (an absolute-form target loses its authority).
    pub fn path(&self) -> &[u8] {
        let t = &self.input[self.req.target.clone()];
        for scheme in [&b"http://"[..], b"https://"] {
            if t.len() > scheme.len() && t[..scheme.len()].eq_ignore_ascii_case(scheme) {
                let rest = &t[scheme.len()..];
                return rest
                    .iter()
                    .position(|&b| b == b'/')
                    .map_or(b"/", |p| &rest[p..]);
            }
        }
        t
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.req.fields.iter().find_map(|(_, f)| {
            self.input[f.name.clone()]
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| &self.input[f.value.clone()])
        })
    }

    /// The value of cookie `name` in the request's Cookie headers.
    pub fn cookie(&self, name: &str) -> Option<&[u8]> {
        self.req
            .fields
            .iter()
            .filter(|(_, f)| self.input[f.name.clone()].eq_ignore_ascii_case(b"cookie"))
            .flat_map(|(_, f)| self.input[f.value.clone()].split(|&b| b == b';'))
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
        let before = self.input.len();
        let n = read(&mut self.input)?;
        if n == 0 {
            return Ok(0);
        }
        if self.phase == Phase::Closing {
            self.input.clear();
            return Ok(n);
        }
        if self.phase == Phase::Head && before == 0 {
            self.since_ms = now_ms; // the head timeout runs from its first byte
        }
        self.advance(now_ms);
        Ok(n)
    }

    /// The client sent its FIN. A request already read is still answered (a client may
    /// half-close after sending); a request cut short is dropped.
    pub fn client_closed(&mut self) {
        self.client_eof = true;
        match self.phase {
            Phase::Head => self.phase = Phase::Closed,
            Phase::Exchange if !self.req_body.done() => self.phase = Phase::Closed,
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
        if self.phase == Phase::Tunnel {
            self.to_client.extend_from_slice(data);
            return;
        }
        if self.phase != Phase::Exchange {
            return;
        }
        if self.resp_started && self.from_backend.is_empty() {
            // The common case for body bytes: no copy into `from_backend` first.
            match self.resp_body.feed(data, &mut self.to_client) {
                Ok(used) if used < data.len() => {
                    // Bytes after the response: the backend is broken; never reuse it.
                    self.resp.keep_alive = false;
                }
                Ok(_) => {}
                Err(_) => return self.backend_failed(now_ms),
            }
        } else {
            self.from_backend.extend_from_slice(data);
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
            Phase::Exchange if self.resp_started && self.resp_body.until_close() && !reset => {
                // The end of a body delimited by the close.
                self.resp_body = Body::default();
                self.client_keep = false;
                self.complete(now_ms);
                BackendFault::Failed
            }
            Phase::Exchange if !self.resp_bytes && self.replayable => {
                self.backend_eof = false;
                self.backend_sent = 0;
                self.phase = Phase::Route;
                BackendFault::Retry
            }
            _ => {
                self.backend_failed(now_ms);
                BackendFault::Failed
            }
        }
    }

    /// No response in time: 504, or a cut-off when the response had started.
    pub fn backend_timed_out(&mut self, now_ms: u64) {
        if self.phase == Phase::Exchange && !self.resp_bytes {
            self.respond(504, now_ms);
        } else {
            self.phase = Phase::Closed;
        }
    }

    /// The timeouts of this connection's current wait; call now and then.
    pub fn check_timers(&mut self, now_ms: u64) {
        let waited = now_ms.saturating_sub(self.since_ms);
        match self.phase {
            Phase::Head if self.input.is_empty() => {
                let limit = if self.served == 0 {
                    self.limits.header_timeout_ms
                } else {
                    self.limits.keepalive_timeout_ms
                };
                if waited >= limit {
                    self.phase = Phase::Closed;
                }
            }
            Phase::Head if waited >= self.limits.header_timeout_ms => self.respond(408, now_ms),
            Phase::Exchange if !self.resp_bytes && waited >= self.limits.backend_timeout_ms => {
                self.backend_timed_out(now_ms)
            }
            Phase::Closing if waited >= LINGER_MS => self.phase = Phase::Closed,
            _ => {}
        }
    }

    // ---- routing decisions from the driver ----------------------------------------------

    /// Forward the routed request to the backend the driver attached.
    pub fn attach(&mut self, fwd: Forward, now_ms: u64) {
        debug_assert_eq!(self.phase, Phase::Route);
        self.phase = Phase::Exchange;
        self.since_ms = now_ms;
        self.backend_eof = false;
        if !self.to_backend.is_empty() {
            // A replay: the head is still there.
            self.backend_sent = 0;
            self.replayable = false;
            return;
        }
        self.resp_started = false;
        self.resp_bytes = false;
        self.write_request_head(&fwd);
        self.retarget(fwd.set_cookie);
        self.replayable = fwd.reused && self.replayable();
        let head_len = self.req.len;
        self.input.drain(..head_len);
        let chunked_out = Output::Chunked;
        self.req_body = Body::new(self.req.body, chunked_out);
        self.client_keep = self.req.keep_alive && !self.last;
        self.pump_request_body(now_ms);
    }

    /// The backend changed before anything was sent to it (a failed connect): only the
    /// sticky cookie for the response changes.
    pub fn retarget(&mut self, set_cookie: Option<(&str, &str)>) {
        self.pending_cookie.clear();
        if let Some((name, id)) = set_cookie {
            let _ = write!(self.pending_cookie, "Set-Cookie: {name}={id}; Path=/\r\n");
        }
    }

    /// Answer the routed request with `status` (no route, no backend, …) and close.
    pub fn refuse(&mut self, status: u16, now_ms: u64) {
        self.respond(status, now_ms);
    }

    /// Answer the routed request with a redirect to `location` and close.
    pub fn redirect(&mut self, location: &str, now_ms: u64) {
        let _ = write!(
            self.to_client,
            "HTTP/1.1 301 Moved Permanently\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        self.finish_with(301, now_ms);
    }

    // ---- the machinery --------------------------------------------------------------------

    /// End states reached by flushing: a closing connection whose client left, a tunnel
    /// finished both ways.
    fn settle(&mut self) {
        let flushed = self.client_output().is_empty();
        match self.phase {
            Phase::Closing if flushed && self.client_eof => self.phase = Phase::Closed,
            Phase::Tunnel
                if flushed
                    && self.backend_eof
                    && self.fin_to_backend
                    && self.backend_output().is_empty() =>
            {
                self.phase = Phase::Closed
            }
            _ => {}
        }
    }

    /// Process client input as far as the phase allows.
    fn advance(&mut self, now_ms: u64) {
        match self.phase {
            Phase::Head => {
                if self.input.is_empty() {
                    return;
                }
                match head::parse_request(&self.input, self.limits.max_header_bytes, &mut self.req)
                {
                    // The client sent its FIN: this head can never be completed.
                    Ok(false) if self.client_eof => self.phase = Phase::Closed,
                    Ok(false) => {}
                    Ok(true) => self.phase = Phase::Route,
                    Err(e) => self.bad_request(e, now_ms),
                }
            }
            Phase::Exchange => self.pump_request_body(now_ms),
            Phase::Tunnel => {
                self.to_backend.extend_from_slice(&self.input);
                self.input.clear();
            }
            Phase::Route | Phase::Closing | Phase::Closed => {}
        }
    }

    fn bad_request(&mut self, e: HeadError, now_ms: u64) {
        if let HeadError::Bad(why) = e {
            tracing::debug!(why, "bad request");
        }
        self.respond(e.status(), now_ms);
    }

    fn pump_request_body(&mut self, now_ms: u64) {
        if self.req_body.done() {
            return;
        }
        match self.req_body.feed(&self.input, &mut self.to_backend) {
            Ok(used) => {
                self.input.drain(..used);
                if self.input.is_empty() {
                    release(&mut self.input);
                }
            }
            Err(e) => return self.body_error(e, now_ms),
        }
        if self.req_body.done() {
            self.since_ms = now_ms; // the response wait starts with the whole request sent
            if self.resp_started && self.resp_body.done() {
                self.complete(now_ms);
            }
        }
    }

    fn body_error(&mut self, e: BodyError, now_ms: u64) {
        tracing::debug!(error = %e, "bad request body");
        if self.resp_bytes {
            self.phase = Phase::Closed;
        } else {
            self.respond(400, now_ms);
        }
    }

    /// Process backend input: response heads (interim ones relayed), then the body.
    fn advance_response(&mut self, now_ms: u64) {
        while !self.resp_started {
            let max = self.limits.max_header_bytes.max(16 * 1024);
            match head::parse_response(&self.from_backend, max, self.req.method, &mut self.resp) {
                Ok(false) => return,
                Err(_) => return self.backend_failed(now_ms),
                Ok(true) => {}
            }
            let status = self.resp.status;
            let tunnel = (status == 101 && self.req.upgrade)
                || (self.req.method == Method::Connect && (200..300).contains(&status));
            if status == 101 && !tunnel {
                return self.backend_failed(now_ms);
            }
            if (100..200).contains(&status) && !tunnel {
                if self.req.minor == 1 {
                    self.write_response_head(true);
                }
                let n = self.resp.len;
                self.from_backend.drain(..n);
                continue;
            }
            self.start_response(tunnel, now_ms);
        }
        if self.phase == Phase::Exchange && self.resp_body.done() {
            self.complete(now_ms);
        }
    }

    /// A final response head is in `from_backend`: relay it and start its body.
    fn start_response(&mut self, tunnel: bool, now_ms: u64) {
        self.resp_started = true;
        if self.replayable {
            self.replayable = false;
            if self.backend_sent == self.to_backend.len() {
                self.to_backend.clear();
                self.backend_sent = 0;
            }
        }
        let old_client = self.req.minor == 0;
        let output = if self.resp.body == BodyKind::Chunked && old_client {
            Output::Plain
        } else {
            Output::Chunked
        };
        self.client_keep &= !(self.client_eof && self.input.is_empty())
            && self.resp.body != BodyKind::Close
            && output == Output::Chunked
            && !tunnel;
        self.write_response_head(tunnel);
        let n = self.resp.len;
        self.from_backend.drain(..n);
        if tunnel {
            self.phase = Phase::Tunnel;
            self.to_client.extend_from_slice(&self.from_backend);
            self.from_backend.clear();
            self.to_backend.extend_from_slice(&self.input);
            self.input.clear();
            return;
        }
        self.resp_body = Body::new(self.resp.body, output);
        match self.resp_body.feed(&self.from_backend, &mut self.to_client) {
            Ok(used) if used < self.from_backend.len() => self.resp.keep_alive = false,
            Ok(_) => {}
            Err(_) => {
                self.phase = Phase::Closed;
                return;
            }
        }
        self.from_backend.clear();
        let _ = now_ms;
    }

    /// The response head for the client: hop-by-hop fields replaced by our own.
    fn write_response_head(&mut self, verbatim: bool) {
        let out = &mut self.to_client;
        let src = &self.from_backend;
        let _ = write!(out, "HTTP/1.1 {} ", self.resp.status);
        out.extend_from_slice(&src[self.resp.reason.clone()]);
        out.extend_from_slice(b"\r\n");
        let dechunk = self.req.minor == 0 && self.resp.body == BodyKind::Chunked;
        for (kind, f) in &self.resp.fields {
            let skip = match kind {
                Known::Connection | Known::KeepAlive | Known::ProxyConnection => !verbatim,
                Known::TransferEncoding => dechunk,
                _ => false,
            };
            if !skip {
                out.extend_from_slice(&src[f.name.clone()]);
                out.extend_from_slice(b": ");
                out.extend_from_slice(&src[f.value.clone()]);
                out.extend_from_slice(b"\r\n");
            }
        }
        if (100..200).contains(&self.resp.status) {
            out.extend_from_slice(b"\r\n");
            return;
        }
        out.extend_from_slice(&self.pending_cookie);
        if !verbatim {
            if !self.client_keep {
                out.extend_from_slice(b"Connection: close\r\n");
            } else if self.req.minor == 0 {
                out.extend_from_slice(b"Connection: keep-alive\r\n");
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The request head for the backend: hop-by-hop fields dropped, forwarded fields
    /// extended.
    fn write_request_head(&mut self, fwd: &Forward) {
        let out = &mut self.to_backend;
        let src = &self.input;
        let req = &self.req;
        out.extend_from_slice(&src[req.method_range.clone()]);
        out.push(b' ');
        out.extend_from_slice(&src[req.target.clone()]);
        let _ = write!(out, " HTTP/1.{}\r\n", req.minor);
        let forwarded = self.limits.forwarded_headers;
        let mut xff = false;
        for (kind, f) in &req.fields {
            let skip = match kind {
                // Framing is written once, canonically, below.
                Known::Connection
                | Known::KeepAlive
                | Known::ProxyConnection
                | Known::ContentLength
                | Known::TransferEncoding => true,
                Known::XForwardedFor | Known::XForwardedProto | Known::XForwardedPort => forwarded,
                _ => false,
            };
            if skip {
                continue;
            }
            out.extend_from_slice(&src[f.name.clone()]);
            out.extend_from_slice(b": ");
            out.extend_from_slice(&src[f.value.clone()]);
            out.extend_from_slice(b"\r\n");
        }
        match req.body {
            BodyKind::Length(n) => {
                let _ = write!(out, "Content-Length: {n}\r\n");
            }
            BodyKind::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            BodyKind::None if req.had_length => out.extend_from_slice(b"Content-Length: 0\r\n"),
            BodyKind::None | BodyKind::Close => {}
        }
        if req.upgrade {
            out.extend_from_slice(b"Connection: upgrade\r\n");
        } else if req.minor == 0 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        if forwarded {
            out.extend_from_slice(b"X-Forwarded-For: ");
            for (kind, f) in &req.fields {
                if *kind == Known::XForwardedFor {
                    let v = src[f.value.clone()].trim_ascii();
                    if !v.is_empty() {
                        out.extend_from_slice(v);
                        out.extend_from_slice(b", ");
                        xff = true;
                    }
                }
            }
            let _ = xff;
            let _ = write!(
                out,
                "{}\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: {}\r\n",
                fwd.client_ip, fwd.listen_port
            );
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The backend failed: 502 before any response was relayed, else cut the client off.
    fn backend_failed(&mut self, now_ms: u64) {
        if self.resp_started {
            self.phase = Phase::Closed;
            self.finished = Some(Finished {
                status: self.resp.status,
                reusable: false,
            });
        } else {
            self.respond(502, now_ms);
        }
    }

    /// A response of sluice's own, then close.
    fn respond(&mut self, status: u16, now_ms: u64) {
        let reason = reason(status);
        let _ = write!(
            self.to_client,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reason}\n",
            reason.len() + 1
        );
        self.finish_with(status, now_ms);
    }

    fn finish_with(&mut self, status: u16, now_ms: u64) {
        self.served += 1;
        self.finished = Some(Finished {
            status,
            reusable: false,
        });
        self.phase = Phase::Closing;
        self.since_ms = now_ms;
        self.input.clear();
        self.to_backend.clear();
        self.backend_sent = 0;
        self.replayable = false;
        self.settle();
    }

    /// Request and response both complete.
    fn complete(&mut self, now_ms: u64) {
        self.served += 1;
        let reusable = self.resp.keep_alive
            && self.req_body.done()
            && self.from_backend.is_empty()
            && !self.backend_eof
            && self.backend_output().is_empty();
        self.finished = Some(Finished {
            status: self.resp.status,
            reusable,
        });
        release(&mut self.to_backend);
        self.backend_sent = 0;
        release(&mut self.from_backend);
        self.resp_started = false;
        self.resp_bytes = false;
        self.backend_eof = false;
        self.replayable = false;
        self.pending_cookie.clear();
        self.since_ms = now_ms;
        let more = !self.client_eof || !self.input.is_empty();
        if self.client_keep && self.req_body.done() && more {
            self.phase = Phase::Head;
            self.advance(now_ms); // a pipelined request may be waiting
        } else {
            self.graceful = self.req_body.done() && self.input.is_empty();
            self.phase = Phase::Closing;
            self.input.clear();
            self.settle();
        }
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

/// The reason phrase sluice sends with its own responses.
pub fn reason(status: u16) -> &'static str {
    match status {
        301 => "Moved Permanently",
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LIMITS: Limits = Limits {
        max_header_bytes: 1024,
        header_timeout_ms: 100,
        keepalive_timeout_ms: 1000,
        backend_timeout_ms: 500,
        forwarded_headers: true,
    };

    fn fwd(reused: bool) -> Forward<'static> {
        Forward {
            client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            listen_port: 80,
            set_cookie: None,
            reused,
        }
    }

    fn client(s: &mut Session, bytes: &[u8]) {
        let _ = s.client_read(0, |buf| {
            buf.extend_from_slice(bytes);
            Ok::<usize, ()>(bytes.len())
        });
    }

    fn take_client(s: &mut Session) -> String {
        let out = String::from_utf8_lossy(s.client_output()).into_owned();
        s.client_wrote(out.len());
        out
    }

    fn take_backend(s: &mut Session) -> String {
        let out = String::from_utf8_lossy(s.backend_output()).into_owned();
        s.backend_wrote(out.len());
        out
    }

    #[test]
    fn keep_alive_exchange_returns_to_head_and_reuses_the_backend() {
        let mut s = Session::new(LIMITS, 0);
        client(
            &mut s,
            b"GET /a HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
        );
        assert_eq!(s.phase(), Phase::Route);
        assert_eq!((s.host(), s.path()), (&b"h"[..], &b"/a"[..]));
        s.attach(fwd(false), 0);
        let sent = take_backend(&mut s);
        assert!(sent.starts_with("GET /a HTTP/1.1\r\nHost: h\r\n"), "{sent}");
        assert!(
            sent.contains("X-Forwarded-For: 1.2.3.4, 10.0.0.1\r\n"),
            "{sent}"
        );
        s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0);
        assert_eq!(
            s.take_finished(),
            Some(Finished {
                status: 200,
                reusable: true
            })
        );
        assert!(take_client(&mut s).ends_with("\r\n\r\nok"));
        assert_eq!(s.phase(), Phase::Head);
    }

    #[test]
    fn pipelined_requests_before_the_clients_fin_are_all_answered() {
        let mut s = Session::new(LIMITS, 0);
        client(
            &mut s,
            b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
        );
        s.client_closed();
        for (path, last) in [("/1", false), ("/2", true)] {
            assert_eq!(s.phase(), Phase::Route);
            assert_eq!(s.path(), path.as_bytes());
            s.attach(fwd(false), 0);
            take_backend(&mut s);
            s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0);
            let out = take_client(&mut s);
            assert_eq!(out.contains("Connection: close"), last, "{out}");
        }
        assert_eq!(s.phase(), Phase::Closed);
    }

    #[test]
    fn shutting_down_makes_the_response_in_flight_the_last() {
        let mut s = Session::new(LIMITS, 0);
        client(&mut s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        s.attach(fwd(false), 0);
        take_backend(&mut s);
        s.stop_keep_alive();
        s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0);
        assert!(take_client(&mut s).contains("Connection: close\r\n"));
        assert!(s.graceful_close());
    }

    #[test]
    fn old_clients_get_plain_bodies_and_a_close() {
        let mut s = Session::new(LIMITS, 0);
        client(&mut s, b"GET / HTTP/1.0\r\n\r\n");
        s.attach(fwd(false), 0);
        take_backend(&mut s);
        s.backend_read(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            0,
        );
        let out = take_client(&mut s);
        assert!(
            out.contains("Connection: close\r\n") && out.ends_with("\r\n\r\nok"),
            "{out}"
        );
        assert!(!out.contains("chunked"), "{out}");
        assert!(s.graceful_close());
    }

    #[test]
    fn interim_responses_are_relayed() {
        let mut s = Session::new(LIMITS, 0);
        client(
            &mut s,
            b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
        );
        s.attach(fwd(false), 0);
        assert!(take_backend(&mut s).contains("Expect: 100-continue"));
        s.backend_read(b"HTTP/1.1 100 Continue\r\n\r\n", 0);
        assert_eq!(take_client(&mut s), "HTTP/1.1 100 Continue\r\n\r\n");
        client(&mut s, b"hi");
        assert_eq!(take_backend(&mut s), "hi");
        s.backend_read(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", 0);
        assert!(take_client(&mut s).starts_with("HTTP/1.1 201 Created"));
        assert_eq!(s.take_finished().map(|f| f.status), Some(201));
    }

    #[test]
    fn a_failed_pooled_connection_replays_only_what_can_be_replayed() {
        let mut s = Session::new(LIMITS, 0);
        client(&mut s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        s.attach(fwd(true), 0);
        let first = take_backend(&mut s);
        assert_eq!(s.backend_closed(false, 0), BackendFault::Retry);
        assert_eq!(s.phase(), Phase::Route);
        s.attach(fwd(false), 0);
        assert_eq!(take_backend(&mut s), first, "the same request, again");

        let mut s = Session::new(LIMITS, 0);
        client(
            &mut s,
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx",
        );
        s.attach(fwd(true), 0);
        take_backend(&mut s);
        assert_eq!(s.backend_closed(false, 0), BackendFault::Failed);
        assert!(take_client(&mut s).starts_with("HTTP/1.1 502 "));
    }

    #[test]
    fn timeouts_answer_408_and_504() {
        let mut s = Session::new(LIMITS, 0);
        client(&mut s, b"GET / HTTP/1.1\r\n");
        s.check_timers(99);
        assert_eq!(s.phase(), Phase::Head);
        s.check_timers(100);
        assert!(take_client(&mut s).starts_with("HTTP/1.1 408 "));

        let mut s = Session::new(LIMITS, 0);
        client(&mut s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        s.attach(fwd(false), 10);
        take_backend(&mut s);
        s.check_timers(510);
        assert!(take_client(&mut s).starts_with("HTTP/1.1 504 "));
    }
}
