//! HTTP mode in a shard: moves bytes between sockets and the sans-I/O
//! [`Session`](crate::http::Session), routes each request, picks its backend, and keeps
//! a pool of idle keep-alive backend connections per backend. Readiness-driven with
//! non-blocking calls through the shard's [`Reactor`], whichever it is. Readiness
//! flags are hints: a `WouldBlock` clears them, an event sets them.

mod client_tls;
mod exchange;
mod pool;
mod proxied;

pub use pool::HttpShard;

use super::keys::Io;
use super::link::Link;
use super::reactor::{Reactor, Want};
use super::tls::{Count, TlsSide};
use super::ShardCtx;
use crate::balance::Attempt;
use crate::http::{BackendFault, Phase, Session, Tunnel};
use crate::snapshot::{Front, Listeners, Service};
use client_tls::Sniffed;
use exchange::count_bytes;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Bytes read from a client per call.
const READ_BYTES: usize = 16 * 1024;
/// Bytes read from a backend per call.
const BACKEND_READ_BYTES: usize = 32 * 1024;
/// Rounds of read/route/write per pump before yielding to other connections.
const PUMP_ROUNDS: usize = 16;

/// Which sockets may be ready.
///
/// A short read clears the read hint, to wait for readiness rather than pay a system
/// call to hear "would block". That is wrong once the peer's FIN has arrived: an
/// edge-triggered reactor reports data and FIN in one event and never again, so the
/// reactor sets `*_hup` when an event says the peer closed (or the socket failed), and
/// the read hint then stays set until a read returns the end of stream.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ready {
    pub client_read: bool,
    pub client_write: bool,
    pub backend_read: bool,
    pub backend_write: bool,
    pub client_hup: bool,
    pub backend_hup: bool,
}

impl Ready {
    /// An event of the client's socket (or the backend's).
    pub fn note(&mut self, backend: bool, read: bool, write: bool, hup: bool) {
        if backend {
            self.backend_read |= read;
            self.backend_write |= write;
            self.backend_hup |= hup;
        } else {
            self.client_read |= read;
            self.client_write |= write;
            self.client_hup |= hup;
        }
    }
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
    /// Backends tried for this exchange so far: every try after the first is a retry
    /// (a connect failed, or a reused connection did), counted.
    tries: u8,
}

struct BackendSock<S> {
    sock: S,
    key: u32,
    connected: bool,
    connect_deadline_ms: u64,
    picked: Instant,
    /// It carries (or carried) a PROXY header of this version: this client's only.
    proxied: Option<crate::config::SendProxy>,
    /// What of that header is still to be sent, before any request byte.
    preamble: Vec<u8>,
}

pub struct HttpConn<S> {
    pub client: S,
    /// The client socket's key in the shard.
    pub ckey: u32,
    peer: SocketAddr,
    /// The address the client connected to, as a PROXY header said (`None`: the
    /// socket's own).
    pub local: Option<SocketAddr>,
    /// A backend connection that carried a PROXY header for this client, idle.
    held: Option<proxied::Held<S>>,
    /// The listening socket set the client came through (identity only: holding it
    /// would keep a removed port open).
    front: *const Listeners,
    /// `(snapshot generation, index in its fronts)` of `front`, found once per
    /// generation rather than per request.
    front_at: Option<(u64, usize)>,
    /// What `front` served when last found: what the connection's requests are
    /// routed by while the process drains (its snapshot lists no listener).
    served: Front,
    local_port: u16,
    pub session: Session,
    /// TLS between the client and the session (`[https] listen`, a `tls = true` port).
    tls: Option<Box<TlsSide>>,
    /// `[https] listen` with SNI routes: the start of the stream, read while the
    /// ClientHello is peeked (until then nothing reaches rustls).
    sniff: Option<Vec<u8>>,
    /// The client's FIN came while peeking.
    sniff_eof: bool,

    exchange: Option<Exchange>,
    backend: Option<BackendSock<S>>,
    pub ready: Ready,
    shut_client: bool,
    pub last_active_ms: u64,
    /// Bytes at the front of the client output already counted, by the exchange that
    /// ended before they were written.
    out_counted: usize,
}

/// What the shard does with the connection after a pump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Waiting on readiness.
    Continue,
    /// Used its budget with work left: pump again in the next loop turn.
    Yield,
    /// Close both sockets (`reset`: with RST).
    Close { reset: bool },
    /// The session became a tunnel: the shard hands the connection to its TCP relay
    /// ([`HttpConn::into_tunnel`]).
    Tunnel,
    /// The ClientHello names a server of `[https] listen`'s SNI routes: the shard
    /// hands the connection, untouched, to that service's TCP relay
    /// ([`HttpConn::into_passthrough`]).
    Passthrough { service: usize },
}

/// A connection whose session became a tunnel, as the shard's TCP relay takes it.
pub struct Upgrade<S> {
    pub link: Link,
    pub client: S,
    pub ckey: u32,
    pub backend: S,
    pub bkey: u32,
    pub tunnel: Tunnel,
}

impl<S> HttpConn<S> {
    pub fn new(
        client: S,
        ckey: u32,
        peer: SocketAddr,
        (front, served): (&Arc<Listeners>, Front),
        tls: Option<Box<TlsSide>>,
        sniff: bool,
        ctx: &ShardCtx,
    ) -> HttpConn<S> {
        HttpConn {
            client,
            ckey,
            peer,
            local: None,
            held: None,
            front: Arc::as_ptr(front),
            front_at: None,
            served,
            local_port: front.local.port(),
            session: Session::new(ctx.snapshot.http.limits, ctx.now_ms),
            tls,
            sniff: sniff.then(Vec::new),
            sniff_eof: false,

            exchange: None,
            backend: None,
            ready: Ready {
                client_read: true,
                client_write: true,
                ..Ready::default()
            },
            shut_client: false,
            last_active_ms: ctx.now_ms,
            out_counted: 0,
        }
    }

    /// What the connection's listening socket serves in the current snapshot (none
    /// once a reload removed it).
    fn front(&mut self, snap: &crate::snapshot::Snapshot) -> Option<Front> {
        let i = match self.front_at {
            Some((generation, i)) if generation == snap.generation => Some(i),
            _ => {
                let i = snap.front_index(self.front);
                if let Some(f) = i.and_then(|i| snap.fronts.get(i)) {
                    self.served = f.clone();
                }
                self.front_at = i.map(|i| (snap.generation, i));
                i
            }
        };
        match i.and_then(|i| snap.fronts.get(i)) {
            Some(f) => Some(f.clone()),
            // Draining: the listener is gone, the connection is still served.
            None if snap.draining => Some(self.served.clone()),
            None => None,
        }
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the connection wants to hear of the client becoming readable/writable.
    pub fn client_interest(&self) -> (bool, bool) {
        let r = self.session.wants_client_read() && !self.ready.client_read;
        let pending = self.tls.as_ref().is_some_and(|t| t.pending());
        let w = (pending || !self.session.client_output().is_empty()) && !self.ready.client_write;
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
        let out = !self.session.backend_output().is_empty() || !b.preamble.is_empty();
        let w = out && !self.ready.backend_write;
        (r, w)
    }

    /// Tell the reactor what the connection waits for.
    pub fn wants<R: Reactor<Sock = S>>(&self, r: &mut R) {
        let (read, write) = self.client_interest();
        if read || write {
            r.want(
                &self.client,
                Want {
                    read,
                    write,
                    poll_only: false,
                },
            );
        }
        let (read, write) = self.backend_interest();
        if let Some(b) = self.backend.as_ref().filter(|_| read || write) {
            r.want(
                &b.sock,
                Want {
                    read,
                    write,
                    poll_only: false,
                },
            );
        }
    }

    /// When the connection next needs its timers checked: a connect's deadline, the
    /// session's (head, keep-alive, body pause, backend silence, linger), a stalled
    /// message's or a tunnel's idle timeout.
    pub fn deadline(&self, ctx: &ShardCtx) -> u64 {
        let mut at = self.session.deadline_ms();
        if let Some(b) = self.backend.as_ref().filter(|b| !b.connected) {
            at = at.min(b.connect_deadline_ms);
        }
        if self.idle_timed() {
            let idle = self
                .last_active_ms
                .saturating_add(ctx.snapshot.server.idle_timeout_ms);
            at = at.min(idle);
        }
        at
    }

    /// Whether `idle_timeout_ms` bounds the connection's silence now: a tunnel, an
    /// exchange, or a client yet to take what it is owed (the rest of a response;
    /// over TLS, records rustls still holds).
    fn idle_timed(&self) -> bool {
        matches!(self.session.phase(), Phase::Tunnel | Phase::Exchange)
            || !self.session.client_output().is_empty()
            || self.tls.as_ref().is_some_and(|t| t.pending())
    }

    /// Make all the progress the sockets allow.
    pub fn pump<R: Reactor<Sock = S>>(
        &mut self,
        ctx: &ShardCtx,
        shard: &mut HttpShard<S>,
        io: &mut Io<R>,
    ) -> After {
        let now = ctx.now_ms;
        if ctx.draining_since_ms.is_some() {
            self.session.stop_keep_alive();
        }
        if self.sniff.is_some() {
            if self.session.phase() == Phase::Closed {
                return After::Close { reset: false };
            }
            match self.sniff_hello(ctx, io.r) {
                Sniffed::Wait => return After::Continue,
                Sniffed::Close => return After::Close { reset: false },
                Sniffed::Route(service) => return After::Passthrough { service },
                Sniffed::Terminate => {}
            }
        }
        for _ in 0..PUMP_ROUNDS {
            let mut progress = false;
            let decrypted = self.tls.as_mut().is_some_and(|t| t.readable());
            if (self.ready.client_read || decrypted) && self.session.wants_client_read() {
                let read = match self.tls.is_some() {
                    true => self.read_tls_client(ctx, io.r),
                    false => self.read_client(now, shard, io.r),
                };
                match read {
                    Ok(n) => progress |= n > 0,
                    Err(reset) => return After::Close { reset },
                }
            }
            self.settle(ctx, shard, io);
            if self.backend.as_ref().is_some_and(|b| !b.connected) && self.ready.backend_write {
                self.finish_connect(ctx, shard, io);
                progress = true;
            }
            progress |= self.write_backend(ctx, shard, io);
            progress |= self.read_backend(ctx, shard, io);
            self.settle(ctx, shard, io);
            if self.session.phase() == Phase::Tunnel {
                // The TCP relay carries no TLS: a tunnel over TLS (a WebSocket over
                // wss, a CONNECT) would relay the client's records raw and the
                // backend's bytes in clear. Refused, by a reset, until it does.
                if self.tls.is_some() {
                    ctx.stats().resets.inc();
                    return After::Close { reset: true };
                }
                return After::Tunnel;
            }
            match self.write_client(ctx, io.r) {
                Ok(p) => progress |= p,
                Err(()) => return After::Close { reset: true },
            }
            self.forward_fins(io.r);
            if self.shut_client && self.session.graceful_close() && self.nothing_to_read(io.r) {
                return After::Close { reset: false };
            }
            if self.session.phase() == Phase::Closed {
                self.settle(ctx, shard, io);
                self.tls_goodbye(io.r);
                return After::Close { reset: false };
            }
            if !progress {
                // Timers that moved with this pump's progress (the backend's silence
                // restarts when it starts being waited on).
                self.session.check_timers(now);
                return After::Continue;
            }
            self.last_active_ms = now;
        }
        // The budget ran out with sockets still ready: no readiness event will come for
        // bytes already there, so the shard pumps the connection again next turn.
        After::Yield
    }

    /// A deadline came: timeouts (the session's own — head, keep-alive, response,
    /// linger — and connects).
    pub fn timers<R: Reactor<Sock = S>>(
        &mut self,
        ctx: &ShardCtx,
        shard: &mut HttpShard<S>,
        io: &mut Io<R>,
    ) -> After {
        let now = ctx.now_ms;
        let connect_expired = self
            .backend
            .as_ref()
            .is_some_and(|b| !b.connected && now >= b.connect_deadline_ms);
        if connect_expired {
            self.connect_failed(ctx, true, io);
            self.connect_next(ctx, shard, io, None);
        }
        self.session.check_timers(now);
        if self.session.phase() == Phase::Closed {
            self.tls_timed_out(ctx);
        }
        // A tunnel, a message stalled mid-stream, a client that stopped taking what it
        // is owed: silent for `idle_timeout_ms`.
        if self.idle_timed()
            && now.saturating_sub(self.last_active_ms) >= ctx.snapshot.server.idle_timeout_ms
        {
            ctx.stats().idle_timeouts.inc();
            return After::Close { reset: false };
        }
        self.pump(ctx, shard, io)
    }

    /// The session became a tunnel: the exchange ends here (its status and latency are
    /// counted; the bytes still owed are counted now, the relay counts the rest) and
    /// its sockets and owed bytes go to the relay. Call when [`Self::is_tunnel`].
    pub fn into_tunnel(mut self, ctx: &ShardCtx, shard: &mut HttpShard<S>) -> Upgrade<S> {
        let tunnel = self.session.take_tunnel().expect("a tunnel");
        let ex = self.exchange.take().expect("an exchange");
        let b = self.backend.take().expect("a backend");
        let c = ex.service.counters.shard(ctx.id);
        c.response(tunnel.status);
        let us = ex.started.elapsed().as_micros() as u64;
        c.response_latency.record(us);
        shard.latency.record(&ex.service.counters, us);
        let owed = tunnel.to_client.len().saturating_sub(self.out_counted);
        count_bytes(ctx, &ex, false, owed);
        count_bytes(ctx, &ex, true, tunnel.to_backend.len());
        let link = Link {
            service: ex.service,
            client: self.peer,
            local: self.local,
            backend: ex.backend,
            attempt: ex.attempt,
            connected: ex.counted,
            last_active_ms: ctx.now_ms,
            picked_at: b.picked,
        };
        Upgrade {
            link,
            client: self.client,
            ckey: self.ckey,
            backend: b.sock,
            bkey: b.key,
            tunnel,
        }
    }

    /// The session became a tunnel to a connected backend.
    pub fn is_tunnel(&self) -> bool {
        self.session.phase() == Phase::Tunnel
            && self.exchange.is_some()
            && self.backend.as_ref().is_some_and(|b| b.connected)
    }

    /// Counters and pool for whatever the connection still holds; call before closing
    /// the client socket.
    pub fn close<R: Reactor<Sock = S>>(&mut self, ctx: &ShardCtx, io: &mut Io<R>) {
        self.drop_held(io);
        if let Some(b) = self.backend.take() {
            io.close(b.key, b.sock, false);
        }
        if let Some(ex) = self.exchange.take() {
            ctx.left(&ex.service, ex.backend, ex.counted);
        }
        if let Some(tls) = self.tls.as_mut() {
            tls.ended(Count {
                shard: &ctx.stats().tls,
                id: ctx.id,
            });
        }
    }

    /// The client sent nothing more (or only its FIN): closing now sends no reset.
    fn nothing_to_read<R: Reactor<Sock = S>>(&self, r: &mut R) -> bool {
        match r.peek(&self.client) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == ErrorKind::WouldBlock,
        }
    }

    /// Read through the shard's scratch buffer, so that a connection's own buffer
    /// holds only what it must keep (a head being read, pipelined bytes) and an idle
    /// connection holds almost nothing.
    fn read_client<R: Reactor<Sock = S>>(
        &mut self,
        now: u64,
        shard: &mut HttpShard<S>,
        r: &mut R,
    ) -> Result<usize, bool> {
        let client = &self.client;
        let mut scratch = std::mem::take(&mut shard.scratch);
        scratch.clear();
        let res = self.session.client_read(now, |buf| {
            let n = r.recv(client, &mut scratch, READ_BYTES)?;
            buf.extend_from_slice(&scratch);
            Ok::<usize, std::io::Error>(n)
        });
        shard.scratch = scratch;
        match res {
            Ok(0) => {
                self.ready.client_read = false;
                self.session.client_closed();
                Ok(0)
            }
            Ok(n) => {
                // A short read emptied the socket: wait for readiness rather than pay
                // a system call to hear "would block".
                self.ready.client_read = n == READ_BYTES || self.ready.client_hup;
                Ok(n)
            }
            Err(e) => match e.kind() {
                ErrorKind::WouldBlock => {
                    self.ready.client_read = false;
                    Ok(0)
                }
                ErrorKind::Interrupted => Ok(0),
                _ => Err(true),
            },
        }
    }

    fn write_client<R: Reactor<Sock = S>>(
        &mut self,
        ctx: &ShardCtx,
        r: &mut R,
    ) -> Result<bool, ()> {
        if self.tls.is_some() {
            return self.write_tls_client(ctx, r);
        }
        let out = self.session.client_output();
        if out.is_empty() || !self.ready.client_write {
            return Ok(false);
        }
        // The last bytes before the FIN: held back (MSG_MORE) so that the shutdown that
        // follows sends them and the FIN in one segment, one wake-up for the client.
        let last = self.session.output_is_last();
        let n = write_some(r, &self.client, out, last, &mut self.ready.client_write)?;
        self.client_wrote(ctx, n);
        Ok(n > 0)
    }

    /// `n` bytes of the session's output went out (or, over TLS, to rustls).
    fn client_wrote(&mut self, ctx: &ShardCtx, n: usize) {
        let counted = n.min(self.out_counted);
        self.out_counted -= counted;
        if let Some(ex) = &self.exchange {
            count_bytes(ctx, ex, false, n - counted);
        }
        self.session.client_wrote(n);
    }

    fn write_backend<R: Reactor<Sock = S>>(
        &mut self,
        ctx: &ShardCtx,
        shard: &mut HttpShard<S>,
        io: &mut Io<R>,
    ) -> bool {
        let Some(b) = self.backend.as_mut().filter(|b| b.connected) else {
            return false;
        };
        if !b.preamble.is_empty() {
            // The PROXY header goes first, whole, uncounted (it is not the client's).
            if !self.ready.backend_write {
                return false;
            }
            return match write_some(
                io.r,
                &b.sock,
                &b.preamble,
                false,
                &mut self.ready.backend_write,
            ) {
                Ok(n) => {
                    b.preamble.drain(..n);
                    if b.preamble.is_empty() {
                        b.preamble = Vec::new();
                    }
                    n > 0
                }
                Err(()) => {
                    self.backend_gone(true, ctx, shard, io);
                    true
                }
            };
        }
        let out = self.session.backend_output();
        if out.is_empty() || !self.ready.backend_write {
            return false;
        }
        match write_some(io.r, &b.sock, out, false, &mut self.ready.backend_write) {
            Ok(n) => {
                if let Some(ex) = &self.exchange {
                    count_bytes(ctx, ex, true, n);
                }
                self.session.backend_wrote(n, ctx.now_ms);
                n > 0
            }
            Err(()) => {
                self.backend_gone(true, ctx, shard, io);
                true
            }
        }
    }

    fn read_backend<R: Reactor<Sock = S>>(
        &mut self,
        ctx: &ShardCtx,
        shard: &mut HttpShard<S>,
        io: &mut Io<R>,
    ) -> bool {
        let Some(b) = self.backend.as_ref().filter(|b| b.connected) else {
            return false;
        };
        if !self.ready.backend_read || !self.session.wants_backend_read() {
            return false;
        }
        let mut buf = std::mem::take(&mut shard.scratch);
        buf.clear();
        let r = io.r.recv(&b.sock, &mut buf, BACKEND_READ_BYTES);
        let progress = match r {
            Ok(0) => {
                self.ready.backend_read = false;
                self.backend_gone(false, ctx, shard, io);
                true
            }
            Ok(n) => {
                self.ready.backend_read = n == BACKEND_READ_BYTES || self.ready.backend_hup;
                self.session.backend_read(&buf, ctx.now_ms);
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.ready.backend_read = false;
                false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => false,
            Err(_) => {
                self.backend_gone(true, ctx, shard, io);
                true
            }
        };
        shard.scratch = buf;
        progress
    }

    /// The backend closed or failed.
    fn backend_gone<R: Reactor<Sock = S>>(
        &mut self,
        reset: bool,
        ctx: &ShardCtx,
        shard: &mut HttpShard<S>,
        io: &mut Io<R>,
    ) {
        match self.session.backend_closed(reset, ctx.now_ms) {
            BackendFault::Retry => {
                // A pooled connection the backend had closed: a new one, same request.
                if let Some(b) = self.backend.take() {
                    io.close(b.key, b.sock, false);
                }
                self.uncount_backend(ctx);
                let same = self.exchange.as_mut().map(|ex| {
                    ex.replay = true;
                    ex.backend
                });
                self.connect_next(ctx, shard, io, same);
            }
            BackendFault::Failed => {}
        }
    }

    fn forward_fins<R: Reactor<Sock = S>>(&mut self, r: &mut R) {
        if self.session.fin_to_client() && !self.shut_client && self.tls_flushed(r) {
            self.shut_client = true;
            r.shutdown(&self.client);
        }
        if self.session.fin_to_backend() {
            if let Some(b) = &self.backend {
                r.shutdown(&b.sock);
            }
            self.session.backend_shut();
        }
    }
}

/// Write what `sock` takes of `out`; with `more`, a final partial segment waits for
/// what follows (`MSG_MORE`). A short write or "would block" clears `ready` (readiness
/// will say when to go on); `Err` is a failed socket.
fn write_some<R: Reactor>(
    r: &mut R,
    sock: &R::Sock,
    out: &[u8],
    more: bool,
    ready: &mut bool,
) -> Result<usize, ()> {
    match r.send(sock, out, more) {
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

/// Out of descriptors or memory: this host's fault, not the backend's.
pub fn is_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
