//! HTTP mode in a shard: moves bytes between sockets and the sans-I/O
//! [`Session`](crate::http::Session), routes each request, picks its backend, and keeps
//! a pool of idle keep-alive backend connections per backend. Readiness-driven with
//! non-blocking system calls; the epoll shard feeds it edge-triggered events, the
//! io_uring shard poll completions. Readiness flags are hints: a `WouldBlock` clears
//! them, an event sets them.

use super::ShardCtx;
use crate::balance::{hash, Attempt};
use crate::config::HashKey;
use crate::http::{BackendFault, Finished, Forward, Phase, Session};
use crate::io::sys;
use crate::snapshot::{Front, Listeners, Service};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

/// Bytes read from a client per call.
const READ_BYTES: usize = 16 * 1024;
/// Bytes read from a backend per call.
const BACKEND_READ_BYTES: usize = 32 * 1024;
/// A pooled connection idle for less than this is used without checking that the
/// backend kept it open, when a failure could be answered by replaying the request.
const POOL_TRUST_MS: u64 = 1_000;
/// Rounds of read/route/write per pump before yielding to other connections.
const PUMP_ROUNDS: usize = 16;
/// A pooled backend connection idle for longer is closed (backends time out idle
/// keep-alive connections themselves; reusing one just as it closes costs a retry).
const POOL_IDLE_MS: u64 = 10_000;

/// Which sockets may be ready.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ready {
    pub client_read: bool,
    pub client_write: bool,
    pub backend_read: bool,
    pub backend_write: bool,
}

/// The shard's side of backend socket changes. Each backend socket has a key of the
/// shard's (epoll keeps it registered for its whole life under that key, pooled or
/// not, so moving it between connections and the pool costs no system call).
pub trait Watch {
    /// A new backend socket: watch it; returns its key.
    fn backend_opened(&mut self, fd: RawFd, addr: SocketAddr) -> usize;
    /// The socket `key` now serves this connection.
    fn backend_attached(&mut self, key: usize);
    /// The socket `key` left this connection: into the pool (`pooled`) or closed.
    fn backend_released(&mut self, key: usize, pooled: bool);
}

/// The exchange in flight: which service and backend serve the current request.
struct Exchange {
    service: Arc<Service>,
    backend: usize,
    attempt: Attempt,
    started: Instant,
    /// The request carried no valid sticky cookie: the response sets one.
    set_cookie: bool,
    /// The backend was reached and counted as active.
    counted: bool,
    /// The request is being replayed after its pooled connection failed: it takes a
    /// new connection.
    replay: bool,
}

struct BackendSock {
    sock: Socket,
    key: usize,
    connected: bool,
    connect_deadline_ms: u64,
    picked: Instant,
}

pub struct HttpConn {
    pub client: Socket,
    peer: SocketAddr,
    /// The listening socket set the client came through (identity only: holding it
    /// would keep a removed port open).
    front: *const Listeners,
    local_port: u16,
    pub session: Session,
    exchange: Option<Exchange>,
    backend: Option<BackendSock>,
    pub ready: Ready,
    shut_client: bool,
    pub last_active_ms: u64,
}

/// What the shard does with the connection after a pump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Continue,
    /// Close both sockets (`reset`: with RST).
    Close {
        reset: bool,
    },
}

impl HttpConn {
    pub fn new(
        client: Socket,
        peer: SocketAddr,
        front: &Arc<Listeners>,
        ctx: &ShardCtx,
    ) -> HttpConn {
        HttpConn {
            client,
            peer,
            front: Arc::as_ptr(front),
            local_port: front.local.port(),
            session: Session::new(ctx.snapshot.http.limits, ctx.now_ms),
            exchange: None,
            backend: None,
            ready: Ready {
                client_read: true,
                client_write: true,
                ..Ready::default()
            },
            shut_client: false,
            last_active_ms: ctx.now_ms,
        }
    }

    pub fn backend_fd(&self) -> Option<RawFd> {
        self.backend.as_ref().map(|b| b.sock.as_raw_fd())
    }

    /// Whether the connection wants to hear of the client becoming readable/writable.
    pub fn client_interest(&self) -> (bool, bool) {
        let r = self.session.wants_client_read() && !self.ready.client_read;
        let w = !self.session.client_output().is_empty() && !self.ready.client_write;
        (r, w)
    }

    /// The same for the backend socket (a connect in progress waits for writable).
    pub fn backend_interest(&self) -> (bool, bool) {
        let Some(b) = &self.backend else {
            return (false, false);
        };
        if !b.connected {
            return (false, !self.ready.backend_write);
        }
        let r = self.session.wants_backend_read() && !self.ready.backend_read;
        let w = !self.session.backend_output().is_empty() && !self.ready.backend_write;
        (r, w)
    }

    /// Make all the progress the sockets allow.
    pub fn pump(&mut self, ctx: &ShardCtx, shard: &mut HttpShard, watch: &mut impl Watch) -> After {
        let now = ctx.now_ms;
        if ctx.draining_since_ms.is_some() {
            self.session.stop_keep_alive();
        }
        for _ in 0..PUMP_ROUNDS {
            let mut progress = false;
            if self.ready.client_read && self.session.wants_client_read() {
                match self.read_client(now, shard) {
                    Ok(n) => progress |= n > 0,
                    Err(()) => return After::Close { reset: true },
                }
            }
            self.settle(ctx, shard, watch);
            if self.backend.as_ref().is_some_and(|b| !b.connected) && self.ready.backend_write {
                self.finish_connect(ctx, shard, watch);
                progress = true;
            }
            progress |= self.write_backend(ctx, shard, watch);
            progress |= self.read_backend(ctx, shard, watch);
            self.settle(ctx, shard, watch);
            match self.write_client(ctx) {
                Ok(p) => progress |= p,
                Err(()) => return After::Close { reset: true },
            }
            self.forward_fins();
            if self.shut_client && self.session.graceful_close() && self.nothing_to_read() {
                return After::Close { reset: false };
            }
            if self.session.phase() == Phase::Closed {
                self.settle(ctx, shard, watch);
                return After::Close { reset: false };
            }
            if !progress {
                break;
            }
            self.last_active_ms = now;
        }
        After::Continue
    }

    /// Timeouts: the session's own (head, keep-alive, response, linger) and connects.
    pub fn timers(
        &mut self,
        ctx: &ShardCtx,
        shard: &mut HttpShard,
        watch: &mut impl Watch,
    ) -> After {
        let now = ctx.now_ms;
        let connect_expired = self
            .backend
            .as_ref()
            .is_some_and(|b| !b.connected && now >= b.connect_deadline_ms);
        if connect_expired {
            self.connect_failed(ctx, true, watch);
            self.connect_next(ctx, shard, watch, None);
        }
        self.session.check_timers(now);
        // A tunnel, or a message stalled mid-stream, silent for `idle_timeout_ms`.
        if matches!(self.session.phase(), Phase::Tunnel | Phase::Exchange)
            && now.saturating_sub(self.last_active_ms) >= ctx.snapshot.server.idle_timeout_ms
        {
            ctx.stats().idle_timeouts.inc();
            return After::Close { reset: false };
        }
        self.pump(ctx, shard, watch)
    }

    /// Counters and pool for whatever the connection still holds; call before dropping.
    pub fn close(&mut self, ctx: &ShardCtx, watch: &mut impl Watch) {
        if let Some(b) = self.backend.take() {
            watch.backend_released(b.key, false);
        }
        if let Some(ex) = self.exchange.take() {
            let c = ex.service.counters.shard(ctx.id);
            c.active.dec();
            if ex.counted {
                ex.service.backends[ex.backend]
                    .counters
                    .shard(ctx.id)
                    .active
                    .dec();
            }
        }
    }

    /// The client sent nothing more (or only its FIN): closing now sends no reset.
    fn nothing_to_read(&self) -> bool {
        let mut probe = [MaybeUninit::<u8>::uninit(); 1];
        match self.client.peek(&mut probe) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == ErrorKind::WouldBlock,
        }
    }

    /// Read through the shard's scratch buffer, so that a connection's own buffer
    /// holds only what it must keep (a head being read, pipelined bytes) and an idle
    /// connection holds almost nothing.
    fn read_client(&mut self, now: u64, shard: &mut HttpShard) -> Result<usize, ()> {
        let fd = self.client.as_raw_fd();
        let mut scratch = std::mem::take(&mut shard.scratch);
        scratch.clear();
        let r = self.session.client_read(now, |buf| {
            let n = sys::recv_into(fd, &mut scratch, READ_BYTES)?;
            buf.extend_from_slice(&scratch);
            Ok::<usize, std::io::Error>(n)
        });
        shard.scratch = scratch;
        match r {
            Ok(0) => {
                self.ready.client_read = false;
                self.session.client_closed();
                Ok(0)
            }
            Ok(n) => {
                // A short read emptied the socket: wait for readiness rather than pay
                // a system call to hear "would block".
                self.ready.client_read = n == READ_BYTES;
                Ok(n)
            }
            Err(e) => match e.kind() {
                ErrorKind::WouldBlock => {
                    self.ready.client_read = false;
                    Ok(0)
                }
                ErrorKind::Interrupted => Ok(0),
                _ => Err(()),
            },
        }
    }

    fn write_client(&mut self, ctx: &ShardCtx) -> Result<bool, ()> {
        let out = self.session.client_output();
        if out.is_empty() || !self.ready.client_write {
            return Ok(false);
        }
        let n = write_some(&self.client, out, &mut self.ready.client_write)?;
        if let Some(ex) = &self.exchange {
            count_bytes(ctx, ex, false, n);
        }
        self.session.client_wrote(n);
        Ok(n > 0)
    }

    fn write_backend(
        &mut self,
        ctx: &ShardCtx,
        shard: &mut HttpShard,
        watch: &mut impl Watch,
    ) -> bool {
        let Some(b) = self.backend.as_ref().filter(|b| b.connected) else {
            return false;
        };
        let out = self.session.backend_output();
        if out.is_empty() || !self.ready.backend_write {
            return false;
        }
        match write_some(&b.sock, out, &mut self.ready.backend_write) {
            Ok(n) => {
                if let Some(ex) = &self.exchange {
                    count_bytes(ctx, ex, true, n);
                }
                self.session.backend_wrote(n);
                n > 0
            }
            Err(()) => {
                self.backend_gone(true, ctx, shard, watch);
                true
            }
        }
    }

    fn read_backend(
        &mut self,
        ctx: &ShardCtx,
        shard: &mut HttpShard,
        watch: &mut impl Watch,
    ) -> bool {
        let Some(b) = self.backend.as_ref().filter(|b| b.connected) else {
            return false;
        };
        if !self.ready.backend_read || !self.session.wants_backend_read() {
            return false;
        }
        let mut buf = std::mem::take(&mut shard.scratch);
        buf.clear();
        let r = sys::recv_into(b.sock.as_raw_fd(), &mut buf, BACKEND_READ_BYTES);
        let progress = match r {
            Ok(0) => {
                self.ready.backend_read = false;
                self.backend_gone(false, ctx, shard, watch);
                true
            }
            Ok(n) => {
                self.ready.backend_read = n == BACKEND_READ_BYTES;
                self.session.backend_read(&buf, ctx.now_ms);
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.ready.backend_read = false;
                false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => false,
            Err(_) => {
                self.backend_gone(true, ctx, shard, watch);
                true
            }
        };
        shard.scratch = buf;
        progress
    }

    /// The backend closed or failed.
    fn backend_gone(
        &mut self,
        reset: bool,
        ctx: &ShardCtx,
        shard: &mut HttpShard,
        watch: &mut impl Watch,
    ) {
        match self.session.backend_closed(reset, ctx.now_ms) {
            BackendFault::Retry => {
                // A pooled connection the backend had closed: a new one, same request.
                if let Some(b) = self.backend.take() {
                    watch.backend_released(b.key, false);
                }
                self.uncount_backend(ctx);
                let same = self.exchange.as_mut().map(|ex| {
                    ex.replay = true;
                    ex.backend
                });
                self.connect_next(ctx, shard, watch, same);
            }
            BackendFault::Failed => {}
        }
    }

    fn forward_fins(&mut self) {
        if self.session.fin_to_client() && !self.shut_client {
            self.shut_client = true;
            let _ = self.client.shutdown(Shutdown::Write);
        }
        if self.session.fin_to_backend() {
            if let Some(b) = &self.backend {
                let _ = b.sock.shutdown(Shutdown::Write);
            }
            self.session.backend_shut();
        }
    }

    /// Finish exchanges the session completed and route requests it parsed.
    fn settle(&mut self, ctx: &ShardCtx, shard: &mut HttpShard, watch: &mut impl Watch) {
        for _ in 0..2 {
            if let Some(f) = self.session.take_finished() {
                self.end_exchange(f, ctx, shard, watch);
            }
            if self.session.phase() == Phase::Route && self.exchange.is_none() {
                self.route(ctx, shard, watch);
            }
        }
    }

    fn end_exchange(
        &mut self,
        f: Finished,
        ctx: &ShardCtx,
        shard: &mut HttpShard,
        watch: &mut impl Watch,
    ) {
        let Some(ex) = self.exchange.take() else {
            // Answered before routing (400, 408, 404…): counted on the port's service.
            if let Some(Front::Service(s)) = ctx.snapshot.front_of(self.front) {
                s.counters.shard(ctx.id).response(f.status);
            }
            return;
        };
        let c = ex.service.counters.shard(ctx.id);
        c.active.dec();
        c.response(f.status);
        let us = ex.started.elapsed().as_micros() as u64;
        c.response_latency.record(us);
        shard.latency.record(&ex.service.counters, us);
        let backend = &ex.service.backends[ex.backend];
        if ex.counted {
            backend.counters.shard(ctx.id).active.dec();
        }
        if let Some(b) = self.backend.take() {
            let keep = f.reusable && b.connected && ctx.draining_since_ms.is_none();
            watch.backend_released(b.key, keep);
            if keep {
                shard.put(backend.addr, b.sock, b.key, ctx.now_ms);
            }
        }
        self.ready.backend_read = false;
        self.ready.backend_write = false;
    }

    /// Route the parsed request to a service, then to a backend.
    fn route(&mut self, ctx: &ShardCtx, shard: &mut HttpShard, watch: &mut impl Watch) {
        let now = ctx.now_ms;
        let snap = &ctx.snapshot;
        let service = match snap.front_of(self.front) {
            Some(Front::Service(s)) => Arc::clone(s),
            Some(Front::Http) => {
                let found = snap
                    .http
                    .router
                    .route(self.session.host(), self.session.path());
                match found {
                    Some(i) => Arc::clone(&snap.services[i]),
                    None => return self.session.refuse(404, now),
                }
            }
            None => return self.session.refuse(503, now),
        };
        let opts = &service.config.http;
        if opts.redirect_to_https {
            let host = String::from_utf8_lossy(self.session.host()).into_owned();
            let path = String::from_utf8_lossy(self.session.path()).into_owned();
            service.counters.shard(ctx.id).response(301);
            return self.session.redirect(&format!("https://{host}{path}"), now);
        }
        let c = service.counters.shard(ctx.id);
        c.accepted.inc();
        c.active.inc();
        let attempt = match service.config.hash {
            HashKey::Header => self.session.header(&opts.hash_name),
            HashKey::Cookie => self.session.cookie(&opts.hash_name),
            _ => None,
        }
        .map_or_else(Attempt::default, |v| {
            Attempt::hashed(hash::hash_bytes(hash::SEED_FLOW, v))
        });
        // A valid sticky cookie names a backend; it is used while that backend is up.
        let sticky = opts
            .sticky
            .then(|| self.session.cookie(&opts.sticky_cookie))
            .flatten()
            .and_then(parse_hex)
            .and_then(|id| service.by_sticky_id(id))
            .filter(|&i| !service.draining[i] && service.backends[i].is_up(now));
        let set_cookie = opts.sticky && sticky.is_none();
        self.exchange = Some(Exchange {
            service,
            backend: 0,
            attempt,
            started: Instant::now(),
            set_cookie,
            counted: false,
            replay: false,
        });
        self.connect_next(ctx, shard, watch, sticky);
    }

    /// Attach the next backend (`first` when sticky) to the exchange: a pooled
    /// connection when one is idle, else a new connect. With none left: 503 when no
    /// backend was available at all, 502 after failed connects.
    fn connect_next(
        &mut self,
        ctx: &ShardCtx,
        shard: &mut HttpShard,
        watch: &mut impl Watch,
        first: Option<usize>,
    ) {
        let now = ctx.now_ms;
        let Some(ex) = self.exchange.as_mut() else {
            return;
        };
        let mut first = first;
        loop {
            let i = match first.take() {
                Some(i) => i,
                None => match ctx.pick_live(&ex.service, self.peer, &mut ex.attempt) {
                    Some(i) => i,
                    None => {
                        ex.service.counters.shard(ctx.id).no_backend.inc();
                        let status = if ex.attempt.tries() == 0 { 503 } else { 502 };
                        self.session.refuse(status, now);
                        return;
                    }
                },
            };
            ex.backend = i;
            let addr = ex.service.backends[i].addr;
            let bc = ex.service.backends[i].counters.shard(ctx.id);
            // A replayed request (its pooled connection failed) takes a new connection.
            let pooled = if self.session.phase() == Phase::Route && !ex.replay {
                shard.take(addr, !self.session.replayable(), now)
            } else {
                None
            };
            let (sock, key, connected) = match pooled {
                Some((s, key)) => {
                    bc.reused.inc();
                    (s, key, true)
                }
                None => match connect(addr) {
                    Ok(s) => {
                        let key = watch.backend_opened(s.as_raw_fd(), addr);
                        (s, key, false)
                    }
                    Err(e) if is_exhaustion(&e) => {
                        ctx.stats().accept_errors.inc();
                        self.session.refuse(503, now);
                        return;
                    }
                    Err(_) => {
                        bc.connect_errors.inc();
                        ctx.mark_down(&ex.service, i);
                        continue;
                    }
                },
            };
            watch.backend_attached(key);
            self.backend = Some(BackendSock {
                sock,
                key,
                connected,
                connect_deadline_ms: now + ctx.snapshot.server.connect_timeout_ms,
                picked: Instant::now(),
            });
            if connected {
                bc.connections.inc();
                bc.active.inc();
                ex.counted = true;
            }
            // Nothing can be read before the request is sent: wait for readiness.
            self.ready.backend_read = false;
            self.ready.backend_write = connected;
            let id = ex
                .set_cookie
                .then(|| format!("{:016x}", ex.service.sticky_id(i)));
            let fwd = Forward {
                client_ip: self.peer.ip(),
                listen_port: self.local_port,
                set_cookie: id
                    .as_deref()
                    .map(|id| (ex.service.config.http.sticky_cookie.as_str(), id)),
                reused: connected,
            };
            if self.session.phase() == Phase::Route {
                self.session.attach(fwd, now);
            } else {
                self.session.retarget(fwd.set_cookie);
            }
            return;
        }
    }

    /// A connect in progress became writable: connected, or failed.
    fn finish_connect(&mut self, ctx: &ShardCtx, shard: &mut HttpShard, watch: &mut impl Watch) {
        let Some(b) = self.backend.as_mut() else {
            return;
        };
        match (b.sock.take_error(), b.sock.peer_addr()) {
            (Ok(None), Ok(_)) => {}
            (Ok(None), Err(e)) if e.kind() == ErrorKind::NotConnected => {
                // A stale hint: the connect is still under way.
                self.ready.backend_write = false;
                return;
            }
            _ => {
                self.connect_failed(ctx, false, watch);
                self.connect_next(ctx, shard, watch, None);
                return;
            }
        }
        b.connected = true;
        self.ready.backend_read = true;
        if let Some(ex) = self.exchange.as_mut() {
            let bc = ex.service.backends[ex.backend].counters.shard(ctx.id);
            bc.connections.inc();
            bc.active.inc();
            bc.connect_latency
                .record(b.picked.elapsed().as_micros() as u64);
            ex.counted = true;
        }
    }

    fn connect_failed(&mut self, ctx: &ShardCtx, timed_out: bool, watch: &mut impl Watch) {
        if let Some(b) = self.backend.take() {
            watch.backend_released(b.key, false);
        }
        self.ready.backend_read = false;
        self.ready.backend_write = false;
        if let Some(ex) = &self.exchange {
            let bc = ex.service.backends[ex.backend].counters.shard(ctx.id);
            bc.connect_errors.inc();
            if timed_out {
                bc.connect_timeouts.inc();
            }
            tracing::debug!(backend = %ex.service.backends[ex.backend].addr, timed_out, "backend connect failed, marked down");
            ctx.mark_down(&ex.service, ex.backend);
        }
    }

    fn uncount_backend(&mut self, ctx: &ShardCtx) {
        if let Some(ex) = self.exchange.as_mut() {
            if ex.counted {
                ex.counted = false;
                ex.service.backends[ex.backend]
                    .counters
                    .shard(ctx.id)
                    .active
                    .dec();
            }
        }
    }
}

/// Write what `sock` takes of `out`. A short write or "would block" clears `ready`
/// (readiness will say when to go on); `Err` is a failed socket.
fn write_some(sock: &Socket, out: &[u8], ready: &mut bool) -> Result<usize, ()> {
    match (&*sock).write(out) {
        Ok(n) => {
            *ready = n == out.len();
            Ok(n)
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => {
            *ready = false;
            Ok(0)
        }
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(0),
        Err(_) => Err(()),
    }
}

fn count_bytes(ctx: &ShardCtx, ex: &Exchange, up: bool, n: usize) {
    let s = ex.service.counters.shard(ctx.id);
    let b = ex.service.backends[ex.backend].counters.shard(ctx.id);
    let n = n as u64;
    if up {
        s.bytes_in.add(n);
        b.bytes_in.add(n);
    } else {
        s.bytes_out.add(n);
        b.bytes_out.add(n);
    }
}

fn parse_hex(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(v).ok()?, 16).ok()
}

/// A non-blocking connect under way (or done, on loopback).
fn connect(addr: SocketAddr) -> std::io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    let _ = s.set_tcp_nodelay(true);
    match s.connect(&addr.into()) {
        Ok(()) => Ok(s),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(s),
        Err(e) => Err(e),
    }
}

/// Out of descriptors or memory: this host's fault, not the backend's.
pub fn is_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// A shard's HTTP state: idle keep-alive backend connections per backend address
/// (each with its shard key; connections it closes are listed in `evicted` for the
/// shard to forget), and its response-time histograms.
#[derive(Default)]
pub struct HttpShard {
    idle: HashMap<SocketAddr, Vec<Idle>>,
    per_backend: usize,
    /// Keys of pooled sockets closed since the shard last looked.
    pub evicted: Vec<usize>,
    /// The shard's buffer for backend reads (borrowed per read).
    scratch: Vec<u8>,
    pub latency: super::latency::Latencies,
}

struct Idle {
    sock: Socket,
    key: usize,
    since_ms: u64,
}

impl HttpShard {
    pub fn set_limit(&mut self, per_backend: usize) {
        self.per_backend = per_backend;
    }

    /// An idle connection to `addr` that is still open: a connection the backend closed
    /// (or that has stray bytes) reads as something other than "would block". Unless
    /// `verify`, a connection idle for less than `POOL_TRUST_MS` is trusted without the
    /// check (the caller can replay the request if it fails).
    pub fn take(&mut self, addr: SocketAddr, verify: bool, now_ms: u64) -> Option<(Socket, usize)> {
        let list = self.idle.get_mut(&addr)?;
        while let Some(idle) = list.pop() {
            if !verify && now_ms.saturating_sub(idle.since_ms) < POOL_TRUST_MS {
                return Some((idle.sock, idle.key));
            }
            let mut probe = [MaybeUninit::<u8>::uninit(); 1];
            match idle.sock.peek(&mut probe) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Some((idle.sock, idle.key)),
                _ => self.evicted.push(idle.key),
            }
        }
        None
    }

    pub fn put(&mut self, addr: SocketAddr, sock: Socket, key: usize, now_ms: u64) {
        let list = self.idle.entry(addr).or_default();
        if list.len() < self.per_backend {
            list.push(Idle {
                sock,
                key,
                since_ms: now_ms,
            });
        } else {
            self.evicted.push(key);
        }
    }

    /// The pooled socket `key` to `addr` became readable: the backend closed it (or
    /// sent bytes nobody asked for). Close it.
    pub fn evict(&mut self, addr: SocketAddr, key: usize) {
        if let Some(list) = self.idle.get_mut(&addr) {
            if let Some(i) = list.iter().position(|x| x.key == key) {
                list.swap_remove(i);
                self.evicted.push(key);
            }
        }
    }

    /// Close connections idle past `POOL_IDLE_MS`; forget empty entries.
    pub fn sweep(&mut self, now_ms: u64) {
        let evicted = &mut self.evicted;
        self.idle.retain(|_, list| {
            list.retain(|x| {
                let keep = now_ms.saturating_sub(x.since_ms) < POOL_IDLE_MS;
                if !keep {
                    evicted.push(x.key);
                }
                keep
            });
            !list.is_empty()
        });
    }

    /// Close every idle connection (shutdown).
    pub fn clear(&mut self) {
        for list in self.idle.values() {
            self.evicted.extend(list.iter().map(|x| x.key));
        }
        self.idle.clear();
    }
}

/// Close with RST (`SO_LINGER` 0).
pub fn reset(s: &Socket) {
    let _ = SockRef::from(s).set_linger(Some(std::time::Duration::ZERO));
}
