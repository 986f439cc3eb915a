//! The shard core: every duty of a shard, written once over a [`Reactor`].
//!
//! It owns the listeners of the current snapshot, admission and `max_connections`, a
//! generational slab of connections (TCP relays and HTTP sessions), the keys under
//! which the reactor reports each socket, the one deadline heap (connect, idle,
//! header, keep-alive and backend timeouts, each at its time), the connections that
//! yielded with work left, the once-a-second sweep (drain deadlines, the HTTP pool,
//! memory of idle sessions, latency histograms), the accept pause when descriptors run
//! out, and the drain at shutdown. The reactor only turns its kernel interface into
//! events and non-blocking calls.

mod deadline;
mod http;
mod proxied;
mod tcp;

use super::http::{HttpConn, HttpShard};
use super::keys::{Keys, Owner};
use super::reactor::{Event, ListenId, Reactor, Token};
use super::tls::TlsSide;
use super::ShardCtx;
use crate::config::Mode;
use crate::io::sys::Pipe;
use crate::snapshot::{Front, Listeners};
use deadline::Deadlines;
use proxied::{Accepted, Admitted, ProxyWait};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tcp::TcpConn;

/// How often the sweep runs.
const SWEEP_MS: u64 = 1_000;
/// The longest wait for events, so that a new snapshot (a reload, the drain at
/// shutdown: listeners close) is taken within this much: ten wake-ups a second of an
/// idle shard, each a generation check.
const MAX_WAIT_MS: u64 = 100;

struct ListenerSlot {
    listeners: Arc<Listeners>,
    front: Front,
}

// Slots are allocated once and reused, so the TCP variant's unused room costs memory
// per slot, not an allocation per connection.
#[allow(clippy::large_enum_variant)]
enum Conn<S> {
    Tcp(TcpConn<S>),
    Http(HttpConn<S>),
    /// Accepted on an `accept_proxy` listener, its PROXY header not whole yet.
    Proxy(ProxyWait<S>),
}

/// A slot of the connection slab: the generation tells a stale reference (a yielded
/// connection) from the connection now in it.
struct Slot<S> {
    generation: u32,
    conn: Option<Conn<S>>,
}

pub struct Shard<R: Reactor> {
    pub ctx: ShardCtx,
    io: R,
    /// By the reactor's listener id.
    listeners: Vec<Option<ListenerSlot>>,
    /// Listeners removed, by id, until the reactor reuses the id: a connection the
    /// kernel accepted before the reactor stopped accepting on it (io_uring's
    /// multishot accept, cancelled) is served as it would have been, not dropped —
    /// the reactor holds the sockets until its last accept completed, so the `Weak`
    /// upgrades exactly while such a connection can arrive.
    retired: Vec<Option<(std::sync::Weak<Listeners>, Front)>>,
    slots: Vec<Slot<R::Sock>>,
    free: Vec<u32>,
    keys: Keys,
    http: HttpShard<R::Sock>,
    /// Connections that used their budget with work left: pumped again next turn.
    again: Vec<(u32, u32)>,
    again_spare: Vec<(u32, u32)>,
    deadlines: Deadlines,
    /// Connections of both kinds.
    live: usize,
    bufs: Vec<Vec<u8>>,
    /// The buffer a PROXY header is read into; a connection keeps it only while its
    /// header is incomplete.
    header_buf: Vec<u8>,
    pipes: Vec<Pipe>,
    next_sweep_ms: u64,
    events: Vec<Event<R::Sock>>,
}

impl<R: Reactor> Shard<R> {
    pub fn new(mut ctx: ShardCtx, io: R) -> Shard<R> {
        // The core's clock is the reactor's (a simulation's is virtual).
        ctx.tick(io.now_ms());
        let slots = ctx.conn_limit.min(1 << 16);
        Shard {
            next_sweep_ms: ctx.now_ms + SWEEP_MS,
            ctx,
            io,
            listeners: Vec::new(),
            retired: Vec::new(),
            slots: Vec::with_capacity(slots),
            free: Vec::new(),
            keys: Keys::default(),
            http: HttpShard::default(),
            again: Vec::new(),
            again_spare: Vec::new(),
            deadlines: Deadlines::default(),
            live: 0,
            bufs: Vec::new(),
            header_buf: Vec::new(),
            pipes: Vec::new(),
            events: Vec::with_capacity(1024),
        }
    }

    /// Run until the process drains.
    pub fn run(&mut self) -> io::Result<()> {
        self.start();
        loop {
            if self.turn()? {
                return Ok(());
            }
        }
    }

    /// Start accepting on the snapshot's listeners; `run` does it first.
    pub fn start(&mut self) {
        self.sync_listeners();
    }

    /// The reactor, for a simulation to look at the world it drives.
    #[cfg(any(test, feature = "sim"))]
    pub fn reactor(&self) -> &R {
        &self.io
    }

    #[cfg(any(test, feature = "sim"))]
    pub fn reactor_mut(&mut self) -> &mut R {
        &mut self.io
    }

    /// One loop turn: wait, handle the events, the yielded connections and the due
    /// deadlines. True when the shard is done (drained).
    pub fn turn(&mut self) -> io::Result<bool> {
        let timeout = self.timeout_ms();
        let mut events = std::mem::take(&mut self.events);
        self.io.wait(timeout, &mut events)?;
        self.ctx.tick(self.io.now_ms());
        self.ctx
            .stats()
            .last_batch
            .store(events.len() as u64, Relaxed);
        // A newer snapshot routes the requests of this turn; the listeners change after
        // the events, which name them as they were when the reactor took them.
        let changed = self.ctx.refresh();
        if changed {
            self.refresh_fronts();
        }
        for ev in events.drain(..) {
            self.dispatch(ev);
        }
        self.events = events;
        if changed {
            self.sync_listeners();
        }
        if self.ctx.rearm_due() {
            self.io.rearm_accepts();
        }
        self.pump_again();
        if self.ctx.accept_paused() {
            self.io.pause_accepts(true);
        }
        self.timers();
        if self.ctx.draining_since_ms.is_some() {
            if self.ctx.grace_over() {
                self.close_all();
            }
            if self.live == 0 {
                self.close_all();
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// How long the next wait may last: until the earliest deadline, the sweep, or
    /// the end of an accept pause; not at all while connections wait to be pumped.
    fn timeout_ms(&self) -> u64 {
        if !self.again.is_empty() {
            return 0;
        }
        let now = self.ctx.now_ms;
        let mut until = self.deadlines.next_ms().min(self.next_sweep_ms);
        if let Some(t) = self.ctx.accept_paused_until() {
            until = until.min(t);
        }
        if self.ctx.draining_since_ms.is_some() {
            until = until.min(now + 50);
        }
        until.saturating_sub(now).min(MAX_WAIT_MS)
    }

    fn dispatch(&mut self, ev: Event<R::Sock>) {
        match ev {
            Event::Accepted {
                listener,
                sock,
                peer,
            } => self.on_accept(listener, sock, peer),
            Event::AcceptFailed { errno, .. } => self.ctx.accept_failed(errno),
            Event::Ready {
                token,
                read,
                write,
                hup,
            } => self.on_ready(token, read, write, hup),
        }
    }

    /// What each listener serves in the current snapshot.
    fn refresh_fronts(&mut self) {
        let snap = &self.ctx.snapshot;
        for slot in self.listeners.iter_mut().flatten() {
            if let Some(k) = snap
                .listeners
                .iter()
                .position(|l| Arc::ptr_eq(l, &slot.listeners))
            {
                slot.front = snap.fronts[k].clone();
            }
        }
    }

    /// Make the listeners match the snapshot's.
    fn sync_listeners(&mut self) {
        let snap = Arc::clone(&self.ctx.snapshot);
        for id in 0..self.listeners.len() {
            let Some(slot) = self.listeners[id].as_mut() else {
                continue;
            };
            match snap
                .listeners
                .iter()
                .position(|l| Arc::ptr_eq(l, &slot.listeners))
            {
                Some(k) => slot.front = snap.fronts[k].clone(),
                None => {
                    tracing::debug!(shard = self.ctx.id, listen = %slot.listeners.local, "listener removed");
                    if self.retired.len() <= id {
                        self.retired.resize_with(id + 1, || None);
                    }
                    self.retired[id] = Some((Arc::downgrade(&slot.listeners), slot.front.clone()));
                    self.listeners[id] = None;
                    self.io.unlisten(id);
                }
            }
        }
        self.http.set_limit(snap.http.pool_per_backend);
        for (front, listeners) in snap.fronts.iter().zip(&snap.listeners) {
            let known = self
                .listeners
                .iter()
                .flatten()
                .any(|s| Arc::ptr_eq(&s.listeners, listeners));
            if known {
                continue;
            }
            match self.io.listen(listeners, self.ctx.id) {
                Ok(id) => {
                    if self.listeners.len() <= id {
                        self.listeners.resize_with(id + 1, || None);
                    }
                    self.listeners[id] = Some(ListenerSlot {
                        listeners: Arc::clone(listeners),
                        front: front.clone(),
                    });
                    if let Some(r) = self.retired.get_mut(id) {
                        *r = None;
                    }
                }
                Err(e) => {
                    tracing::error!(listen = %listeners.local, error = %e, "cannot watch listener")
                }
            }
        }
    }

    fn on_accept(&mut self, listener: ListenId, sock: R::Sock, peer: SocketAddr) {
        let found = match self.listeners.get(listener) {
            Some(Some(l)) => Some((l.front.clone(), Arc::clone(&l.listeners))),
            _ => self
                .retired
                .get(listener)
                .and_then(Option::as_ref)
                .and_then(|(l, front)| Some((front.clone(), l.upgrade()?))),
        };
        let Some((front, listeners)) = found else {
            self.io.close(sock, false);
            return;
        };
        self.ctx.stats().accepts.inc();
        let proxy = proxied::accepts(&self.ctx.snapshot, &front).map(|p| p.trusts(peer.ip()));
        if proxy == Some(false) {
            return self.untrusted(sock, peer);
        }
        let admitted = match &front {
            Front::Service(svc) if svc.config.mode == Mode::Tcp => {
                match self.ctx.admit(svc, peer, self.live) {
                    Some(link) => Admitted::Tcp(link),
                    None => return self.io.close(sock, false),
                }
            }
            _ if self.ctx.admit_http(&front, self.live) => match self.tls_for(&front) {
                Ok(tls) => Admitted::Http {
                    listeners,
                    tls,
                    front,
                },
                Err(()) => {
                    self.ctx.stats().connections.dec();
                    return self.io.close(sock, false);
                }
            },
            _ => return self.io.close(sock, false),
        };
        let idx = self.insert();
        let key = self.keys.open(Owner::Conn {
            idx,
            backend: false,
        });
        self.live += 1;
        let watched = self.io.watch(&sock, self.keys.token(key)).is_ok();
        if proxy.is_some() {
            return self.await_header(idx, sock, key, peer, admitted, watched);
        }
        self.begin(
            idx,
            Accepted {
                sock,
                key,
                peer,
                local: None,
                hup: false,
            },
            admitted,
            &[],
            watched,
        );
    }

    /// Start connection `idx` as what it was admitted as, from the client `a` (its
    /// address perhaps from a PROXY header); `early`: bytes read past such a header,
    /// the first of the stream. `watched`: else it closes at once.
    fn begin(
        &mut self,
        idx: u32,
        a: Accepted<R::Sock>,
        admitted: Admitted,
        early: &[u8],
        watched: bool,
    ) {
        let (conn, ok) = match admitted {
            Admitted::Tcp(mut link) => {
                link.client = a.peer;
                link.local = a.local;
                let conn = if early.is_empty() {
                    TcpConn::new(link, a.sock, a.key)
                } else {
                    let mut b = self.bufs.pop().unwrap_or_default();
                    b.extend_from_slice(early);
                    TcpConn::with_pending(link, a.sock, a.key, b, false)
                };
                (Conn::Tcp(conn), true)
            }
            Admitted::Http {
                listeners,
                tls,
                front,
            } => {
                // `[https] listen` peeks at the ClientHello when a service takes some
                // server names untouched.
                let sniff = matches!(front, Front::Https)
                    && self
                        .ctx
                        .snapshot
                        .https
                        .as_ref()
                        .is_some_and(|h| !h.passthrough.is_empty());
                let mut c = HttpConn::new(
                    a.sock,
                    a.key,
                    a.peer,
                    (&listeners, front),
                    tls,
                    sniff,
                    &self.ctx,
                );
                c.local = a.local;
                c.ready.client_hup = a.hup;
                let ok = c.preload(early, &self.ctx);
                (Conn::Http(c), ok)
            }
        };
        let tcp = matches!(conn, Conn::Tcp(_));
        self.slots[idx as usize].conn = Some(conn);
        match (watched && ok, tcp) {
            (false, _) => self.close(idx, false),
            (true, true) => self.tcp_connect_next(idx),
            (true, false) => self.pump_http(idx),
        }
    }

    /// The TLS side of a new connection through `front`, when it terminates TLS;
    /// `Err` when it should and cannot (the client is closed, never served in clear).
    fn tls_for(&self, front: &Front) -> Result<Option<Box<TlsSide>>, ()> {
        let (config, service) = match front {
            Front::Https => (
                self.ctx.snapshot.https.as_ref().map(|h| &h.tls).ok_or(())?,
                None,
            ),
            Front::Service(s) => match &s.tls {
                Some(c) => (c, Some(Arc::clone(&s.counters))),
                None => return Ok(None),
            },
            Front::Http => return Ok(None),
        };
        match TlsSide::new(config, service) {
            Ok(t) => Ok(Some(Box::new(t))),
            Err(e) => {
                tracing::error!(error = %e, "cannot start a TLS connection");
                Err(())
            }
        }
    }

    /// A free slot for a new connection; its index.
    fn insert(&mut self) -> u32 {
        match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    conn: None,
                });
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn on_ready(&mut self, token: Token, read: bool, write: bool, hup: bool) {
        match self.keys.owner(token) {
            Some(Owner::Conn { idx, backend }) => match &mut self.slots[idx as usize].conn {
                Some(Conn::Tcp(_)) => self.tcp_event(idx, backend, read || hup, write || hup),
                Some(Conn::Http(c)) => {
                    c.ready.note(backend, read, write, hup);
                    self.pump_http(idx);
                }
                Some(Conn::Proxy(p)) => {
                    // A FIN reported with the header's bytes is not reported again.
                    p.hup |= hup;
                    self.read_header(idx);
                }
                None => {}
            },
            Some(Owner::Pooled { addr }) if read || hup => {
                // A pooled connection has something to read: the backend closed it (or
                // sent bytes nobody asked for).
                let key = self.keys.key(token);
                if let Some(sock) = self.http.evict(addr, key) {
                    self.keys.free(key);
                    self.io.close(sock, false);
                }
            }
            _ => {}
        }
    }

    /// Pump the connections that yielded in the last turn (a slot closed and reused
    /// since is skipped by its generation).
    fn pump_again(&mut self) {
        std::mem::swap(&mut self.again, &mut self.again_spare);
        for k in 0..self.again_spare.len() {
            let (idx, generation) = self.again_spare[k];
            let slot = &self.slots[idx as usize];
            if slot.generation != generation {
                continue;
            }
            match &slot.conn {
                Some(Conn::Tcp(_)) => self.tcp_pump_both(idx),
                Some(Conn::Http(_)) => self.pump_http(idx),
                Some(Conn::Proxy(_)) | None => {}
            }
        }
        self.again_spare.clear();
    }

    fn yielded(&mut self, idx: u32) {
        let generation = self.slots[idx as usize].generation;
        if !self.again.contains(&(idx, generation)) {
            self.again.push((idx, generation));
        }
    }

    /// Arm connection `idx`'s next deadline.
    fn arm(&mut self, idx: u32, at: u64) {
        self.deadlines.arm(idx, at);
    }

    fn timers(&mut self) {
        let now = self.ctx.now_ms;
        if self.ctx.accept_resumes() {
            self.io.pause_accepts(false);
        }
        while let Some(idx) = self.deadlines.pop_due(now) {
            match self.slots[idx as usize].conn {
                Some(Conn::Tcp(_)) => self.tcp_timer(idx),
                Some(Conn::Http(_)) => self.http_timer(idx),
                Some(Conn::Proxy(_)) => self.header_timer(idx),
                None => {}
            }
        }
        if now >= self.next_sweep_ms {
            self.next_sweep_ms = now + SWEEP_MS;
            self.sweep();
        }
    }

    /// The once-a-second duties: connections to backends past their drain deadline,
    /// the HTTP pool's idle connections, idle sessions' memory, the latency
    /// histograms; when shutting down, HTTP connections idle between requests.
    fn sweep(&mut self) {
        let draining = self.ctx.draining_since_ms.is_some();
        for idx in 0..self.slots.len() as u32 {
            match &mut self.slots[idx as usize].conn {
                Some(Conn::Tcp(c)) if self.ctx.drained(&c.link) => self.close(idx, false),
                Some(Conn::Tcp(_) | Conn::Proxy(_)) => {}
                Some(Conn::Http(c)) => {
                    if draining && c.session.is_idle() {
                        self.close(idx, false);
                    } else {
                        c.session.trim_if_idle();
                    }
                }
                None => {}
            }
        }
        crate::http::session::trim_heap();
        self.http.sweep(self.ctx.now_ms);
        self.close_evicted();
        self.http.latency.publish(self.ctx.id);
    }

    /// Close the pooled connections the pool let go.
    fn close_evicted(&mut self) {
        for (sock, key) in self.http.evicted.drain(..) {
            self.keys.free(key);
            self.io.close(sock, false);
        }
    }

    /// Close connection `idx`: both sockets (`reset`: with RSTs), its counters.
    fn close(&mut self, idx: u32, reset: bool) {
        let slot = &mut self.slots[idx as usize];
        let Some(conn) = slot.conn.take() else {
            return;
        };
        slot.generation = slot.generation.wrapping_add(1);
        self.deadlines.disarm(idx);
        self.free.push(idx);
        self.live -= 1;
        if reset {
            self.ctx.stats().resets.inc();
        }
        match conn {
            Conn::Tcp(c) => self.tcp_closed(c, reset),
            Conn::Http(c) => self.http_closed(c, reset),
            Conn::Proxy(p) => self.header_closed(p, reset),
        }
    }

    fn close_all(&mut self) {
        for idx in 0..self.slots.len() as u32 {
            self.close(idx, false);
        }
        self.http.clear();
        self.close_evicted();
        for id in 0..self.listeners.len() {
            if self.listeners[id].take().is_some() {
                self.io.unlisten(id);
            }
        }
    }
}
