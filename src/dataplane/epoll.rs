//! The epoll shard (mio, edge-triggered): the same behaviour as the io_uring shard for
//! kernels or sandboxes where io_uring is unavailable.

use super::flow::{Flow, Pump, Side};
use super::http::{self, After, HttpConn, HttpShard, Watch};
use super::link::{Direction, Link};
use super::{ShardCtx, BUF_BYTES};
use crate::config::Mode;
use crate::io::sys;
use crate::snapshot::{Front, Listeners, Service};
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

const LISTENER_TAG: usize = 1 << 62;
/// Tokens of HTTP-mode client sockets: `HTTP_TAG | idx << 1`.
const HTTP_TAG: usize = 1 << 61;
/// Tokens of HTTP-mode backend sockets: `BACKEND_TAG | key`.
const BACKEND_TAG: usize = 1 << 60;
/// Reads per flow per event before yielding to other connections.
const PUMP_BUDGET: usize = 32;
const EVENTS: usize = 1024;

struct ListenerSlot {
    listeners: Arc<Listeners>,
    front: Front,
}

struct Conn {
    serial: u64,
    link: Link,
    client: TcpStream,
    backend: Option<TcpStream>,
    /// Client → backend.
    up: Flow,
    /// Backend → client.
    down: Flow,
}

struct Shard {
    ctx: ShardCtx,
    poll: Poll,
    listeners: Vec<Option<ListenerSlot>>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// HTTP-mode connections.
    hconns: Vec<Option<HttpConn>>,
    hfree: Vec<usize>,
    /// HTTP backend sockets by key (attached or pooled).
    bslots: Vec<Option<BackendSlot>>,
    bfree: Vec<usize>,
    http: HttpShard,
    /// Connections of both kinds.
    live: usize,
    bufs: Vec<Box<[u8]>>,
    pipes: Vec<sys::Pipe>,
    /// Connects in flight, in deadline order (every connect has the same timeout).
    connecting: VecDeque<(u64, usize, u64)>,
    /// Flows that used up their budget and continue next turn.
    again: Vec<(usize, u64, Side)>,
    again_spare: Vec<(usize, u64, Side)>,
    next_serial: u64,
    last_sweep_ms: u64,
}

pub fn run(ctx: ShardCtx) -> io::Result<()> {
    let limit = ctx.conn_limit;
    let mut shard = Shard {
        ctx,
        poll: Poll::new()?,
        listeners: Vec::new(),
        conns: Vec::new(),
        free: Vec::new(),
        hconns: Vec::new(),
        hfree: Vec::new(),
        bslots: Vec::new(),
        bfree: Vec::new(),
        http: HttpShard::default(),
        live: 0,
        bufs: Vec::new(),
        pipes: Vec::new(),
        connecting: VecDeque::new(),
        again: Vec::new(),
        again_spare: Vec::new(),
        next_serial: 0,
        last_sweep_ms: 0,
    };
    shard.conns.reserve(limit.min(65_536));
    shard.sync_listeners();
    shard.event_loop()
}

impl Shard {
    fn event_loop(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS);
        loop {
            let timeout = if !self.again.is_empty() || !self.http.again.is_empty() {
                Duration::ZERO
            } else if self.ctx.draining_since_ms.is_some()
                || !self.connecting.is_empty()
                || self.ctx.accept_paused()
            {
                Duration::from_millis(50)
            } else {
                Duration::from_millis(1000)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            self.ctx.tick();
            if self.ctx.refresh() {
                self.sync_listeners();
            }
            let n = events.iter().count() as u64;
            self.ctx
                .stats()
                .last_batch
                .store(n, std::sync::atomic::Ordering::Relaxed);
            for ev in events.iter() {
                let t = ev.token().0;
                if t & LISTENER_TAG != 0 {
                    self.accept_all(t & !LISTENER_TAG);
                } else if t & HTTP_TAG != 0 {
                    self.on_http_event((t & !HTTP_TAG) >> 1, Side::Client, ev);
                } else if t & BACKEND_TAG != 0 {
                    self.on_backend_event(t & !BACKEND_TAG, ev);
                } else {
                    self.on_conn_event(t >> 1, Side::from_bit(t & 1), ev.is_writable());
                }
            }
            // Swapped with a spare so neither list is reallocated each turn.
            std::mem::swap(&mut self.again, &mut self.again_spare);
            for k in 0..self.again_spare.len() {
                let (idx, serial, side) = self.again_spare[k];
                if self.conns[idx].as_ref().is_some_and(|c| c.serial == serial) {
                    self.pump_flow(idx, side);
                }
            }
            self.again_spare.clear();
            // A slot closed and reused since it yielded is pumped once for nothing (at
            // most a read that would block).
            let again = self.http.take_again();
            for &idx in &again {
                self.pump_http(idx);
            }
            self.http.done_again(again);
            self.timers();
            if self.ctx.draining_since_ms.is_some() && (self.live == 0 || self.ctx.grace_over()) {
                self.close_all();
                return Ok(());
            }
        }
    }

    /// Make the registered listeners match the snapshot's services.
    fn sync_listeners(&mut self) {
        let snap = Arc::clone(&self.ctx.snapshot);
        for (i, slot) in self.listeners.iter_mut().enumerate() {
            let Some(s) = slot else { continue };
            match snap
                .listeners
                .iter()
                .position(|l| Arc::ptr_eq(l, &s.listeners))
            {
                Some(k) => s.front = snap.fronts[k].clone(),
                None => {
                    let fd = s.listeners.sockets[self.ctx.id].as_raw_fd();
                    let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                    tracing::debug!(shard = self.ctx.id, slot = i, "listener removed");
                    *slot = None;
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
            let i = match self.listeners.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    self.listeners.push(None);
                    self.listeners.len() - 1
                }
            };
            let fd = listeners.sockets[self.ctx.id].as_raw_fd();
            let token = Token(LISTENER_TAG | i);
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut SourceFd(&fd), token, Interest::READABLE)
            {
                tracing::error!(listen = %listeners.local, error = %e, "cannot watch listener");
                continue;
            }
            self.listeners[i] = Some(ListenerSlot {
                listeners: Arc::clone(listeners),
                front: front.clone(),
            });
            // Edge-triggered: connections queued before registration raise no event.
            self.accept_all(i);
        }
    }

    fn accept_all(&mut self, slot: usize) {
        if self.ctx.accept_paused() {
            return;
        }
        let Some(l) = self.listeners.get(slot).and_then(Option::as_ref) else {
            return;
        };
        let front = l.front.clone();
        let listeners = Arc::clone(&l.listeners);
        let listener = &listeners.sockets[self.ctx.id];
        loop {
            match listener.accept() {
                Ok((stream, addr)) => {
                    self.ctx.stats().accepts.inc();
                    let _ = stream.set_nonblocking(true);
                    match &front {
                        Front::Service(svc) if svc.config.mode == Mode::Tcp => {
                            self.on_accept(TcpStream::from_std(stream), addr, svc)
                        }
                        _ => self.on_http_accept(stream.into(), addr, &listeners, &front),
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.ctx.accept_failed(e.raw_os_error().unwrap_or(0));
                    return;
                }
            }
        }
    }

    fn on_accept(&mut self, client: TcpStream, addr: SocketAddr, service: &Arc<Service>) {
        let Some(link) = self.ctx.admit(service, addr, self.live) else {
            return; // dropping `client` closes it
        };
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        self.next_serial += 1;
        let mut conn = Conn {
            serial: self.next_serial,
            link,
            client,
            backend: None,
            up: Flow::default(),
            down: Flow::default(),
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(&mut conn.client, Token(idx << 1), interest)
            .is_err()
        {
            self.ctx.closed(&conn.link);
            self.free.push(idx);
            return;
        }
        self.conns[idx] = Some(conn);
        self.live += 1;
        self.connect_next(idx);
    }

    /// Try the next backend for connection `idx`; with none left, close the client.
    fn connect_next(&mut self, idx: usize) {
        loop {
            let conn = self.conns[idx].as_mut().expect("live connection");
            let Some(addr) = self.ctx.next_backend(&mut conn.link) else {
                self.close(idx, false);
                return;
            };
            match TcpStream::connect(addr) {
                Ok(mut s) => {
                    let token = Token(idx << 1 | 1);
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if self
                        .poll
                        .registry()
                        .register(&mut s, token, interest)
                        .is_ok()
                    {
                        conn.backend = Some(s);
                        let deadline =
                            self.ctx.now_ms + self.ctx.snapshot.server.connect_timeout_ms;
                        self.connecting.push_back((deadline, idx, conn.serial));
                        return;
                    }
                }
                Err(e) if http::is_exhaustion(&e) => {
                    // This host ran out, not the backend: no down-mark.
                    self.ctx.socket_failed(e.raw_os_error().unwrap_or(0));
                    self.close(idx, false);
                    return;
                }
                Err(e) => tracing::debug!(backend = %addr, error = %e, "connect failed at once"),
            }
            self.connect_failed(idx, false);
        }
    }

    /// Count a failed connect, mark the backend down and forget the socket.
    fn connect_failed(&mut self, idx: usize, timed_out: bool) {
        let conn = self.conns[idx].as_mut().expect("live connection");
        self.ctx.connect_failed(&conn.link, timed_out);
        if let Some(mut s) = conn.backend.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
    }

    fn on_conn_event(&mut self, idx: usize, side: Side, writable: bool) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if side == Side::Backend && !conn.link.connected {
            if !writable {
                return;
            }
            let s = conn.backend.as_ref().expect("connecting backend");
            match (s.take_error(), s.peer_addr()) {
                (Ok(None), Ok(_)) => {}
                (Ok(None), Err(e)) if e.kind() == ErrorKind::NotConnected => return,
                _ => {
                    self.connect_failed(idx, false);
                    self.connect_next(idx);
                    return;
                }
            }
            let _ = s.set_nodelay(true);
            self.ctx.connected(&mut conn.link);
            self.pump_flow(idx, Side::Client);
            self.pump_flow(idx, Side::Backend);
            return;
        }
        if !conn.link.connected {
            return; // client data waits in the socket until the backend is connected
        }
        // Readable on `side` moves data away from it; writable on it lets the other
        // direction flush into it. Pumping both is cheap and covers both.
        self.pump_flow(idx, side);
        self.pump_flow(idx, side.other());
    }

    /// Move bytes from `from` to its peer until one side would block.
    fn pump_flow(&mut self, idx: usize, from: Side) {
        let splice = self.ctx.snapshot.server.splice;
        let threshold = self.ctx.snapshot.server.splice_threshold_bytes;
        let Some(conn) = self.conns[idx].as_mut() else {
            return;
        };
        if !conn.link.connected {
            return;
        }
        let backend = conn.backend.as_ref().expect("connected backend");
        let (src, dst, flow) = match from {
            Side::Client => (&conn.client, backend, &mut conn.up),
            Side::Backend => (backend, &conn.client, &mut conn.down),
        };
        if flow.wants_splice(splice, threshold) {
            flow.pipe = self.pipes.pop().or_else(|| sys::Pipe::new().ok());
            if flow.pipe.is_some() {
                self.ctx.stats().spliced_flows.inc();
            }
        }
        if flow.pipe.is_none() && flow.buf.is_none() {
            flow.buf = Some(
                self.bufs
                    .pop()
                    .unwrap_or_else(|| vec![0u8; BUF_BYTES].into_boxed_slice()),
            );
        }
        let before = flow.bytes;
        let result = flow.pump(src, dst, PUMP_BUDGET);
        let moved = flow.bytes - before;
        // An idle flow gives its buffer back: idle connections hold no memory but their own.
        if let Some(b) = flow.take_idle_buf() {
            self.bufs.push(b);
        }
        if moved > 0 {
            let dir = match from {
                Side::Client => Direction::Up,
                Side::Backend => Direction::Down,
            };
            self.ctx.moved(&mut conn.link, dir, moved);
        }
        match result {
            Pump::Blocked { .. } => {}
            Pump::Budget => self.again.push((idx, conn.serial, from)),
            Pump::Done => {
                if conn.up.finished() && conn.down.finished() {
                    self.close(idx, false);
                }
            }
            Pump::Reset => {
                self.ctx.stats().resets.inc();
                self.close(idx, true);
            }
        }
    }

    fn timers(&mut self) {
        let now = self.ctx.now_ms;
        if self.ctx.accept_resumes() {
            for i in 0..self.listeners.len() {
                self.accept_all(i);
            }
        }
        while let Some(&(deadline, idx, serial)) = self.connecting.front() {
            if deadline > now {
                break;
            }
            self.connecting.pop_front();
            let pending = self.conns[idx]
                .as_ref()
                .is_some_and(|c| c.serial == serial && !c.link.connected && c.backend.is_some());
            if pending {
                self.connect_failed(idx, true);
                self.connect_next(idx);
            }
        }
        if now < self.last_sweep_ms + 1000 {
            return;
        }
        self.last_sweep_ms = now;
        // Bounded by the slab size; runs once a second.
        for idx in 0..self.conns.len() {
            if self.conns[idx]
                .as_ref()
                .is_some_and(|c| self.ctx.expired(&c.link))
            {
                self.close(idx, false);
            }
        }
        self.http.sweep(now);
        self.http.latency.publish(self.ctx.id);
        self.forget_evicted();
        let draining = self.ctx.draining_since_ms.is_some();
        for idx in 0..self.hconns.len() {
            let Some(c) = self.hconns[idx].as_mut() else {
                continue;
            };
            let mut watch = EpollWatch {
                registry: self.poll.registry(),
                slots: &mut self.bslots,
                free: &mut self.bfree,
                conn: idx,
            };
            let after = if draining && c.session.is_idle() {
                After::Close { reset: false }
            } else {
                c.timers(&self.ctx, &mut self.http, &mut watch)
            };
            match after {
                After::Close { reset } => self.close_http(idx, reset),
                After::Yield => self.http.again.push(idx),
                After::Continue => {}
            }
        }
    }

    fn on_http_accept(
        &mut self,
        client: socket2::Socket,
        addr: SocketAddr,
        listeners: &Arc<Listeners>,
        front: &Front,
    ) {
        if !self.ctx.admit_http(front, self.live) {
            return;
        }
        let idx = match self.hfree.pop() {
            Some(i) => i,
            None => {
                self.hconns.push(None);
                self.hconns.len() - 1
            }
        };
        let fd = client.as_raw_fd();
        let token = Token(HTTP_TAG | idx << 1);
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(&mut SourceFd(&fd), token, interest)
            .is_err()
        {
            self.hfree.push(idx);
            self.ctx.stats().connections.dec();
            return;
        }
        self.live += 1;
        self.hconns[idx] = Some(HttpConn::new(client, addr, listeners, &self.ctx));
        self.pump_http(idx);
    }

    fn on_http_event(&mut self, idx: usize, side: Side, ev: &mio::event::Event) {
        let Some(c) = self.hconns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let hup = ev.is_error() || ev.is_read_closed();
        let gone = hup || ev.is_write_closed();
        let (r, w) = (ev.is_readable() || gone, ev.is_writable() || gone);
        match side {
            Side::Client => {
                c.ready.client_read |= r;
                c.ready.client_write |= w;
                c.ready.client_hup |= hup;
            }
            Side::Backend => {
                c.ready.backend_read |= r;
                c.ready.backend_write |= w;
                c.ready.backend_hup |= hup;
            }
        }
        self.pump_http(idx);
    }

    fn on_backend_event(&mut self, key: usize, ev: &mio::event::Event) {
        let Some(slot) = self.bslots.get(key).and_then(Option::as_ref) else {
            return;
        };
        match slot.owner {
            Some(idx) => self.on_http_event(idx, Side::Backend, ev),
            None if ev.is_readable() || ev.is_error() || ev.is_read_closed() => {
                // A pooled connection has something to read: the backend closed it (or
                // sent bytes nobody asked for).
                tracing::trace!(key, "pooled backend connection closed");
                self.http.evict(slot.addr, key);
                self.forget_evicted();
            }
            None => {}
        }
    }

    /// Free the keys of backend sockets the pool closed.
    fn forget_evicted(&mut self) {
        for key in self.http.evicted.drain(..) {
            self.bslots[key] = None;
            self.bfree.push(key);
        }
    }

    fn pump_http(&mut self, idx: usize) {
        let Some(c) = self.hconns[idx].as_mut() else {
            return;
        };
        let mut watch = EpollWatch {
            registry: self.poll.registry(),
            slots: &mut self.bslots,
            free: &mut self.bfree,
            conn: idx,
        };
        match c.pump(&self.ctx, &mut self.http, &mut watch) {
            After::Close { reset } => self.close_http(idx, reset),
            After::Yield => self.http.again.push(idx),
            After::Continue => {}
        }
        if !self.http.evicted.is_empty() {
            self.forget_evicted();
        }
    }

    fn close_http(&mut self, idx: usize, reset: bool) {
        let Some(mut c) = self.hconns[idx].take() else {
            return;
        };
        let mut watch = EpollWatch {
            registry: self.poll.registry(),
            slots: &mut self.bslots,
            free: &mut self.bfree,
            conn: idx,
        };
        c.close(&self.ctx, &mut watch);
        let fd = c.client.as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        if reset {
            self.ctx.stats().resets.inc();
            http::reset(&c.client);
        }
        self.hfree.push(idx);
        self.live -= 1;
        self.ctx.stats().connections.dec();
    }

    /// Close both sides of connection `idx`; `reset` sends RSTs instead of FINs.
    fn close(&mut self, idx: usize, reset: bool) {
        let Some(mut conn) = self.conns[idx].take() else {
            return;
        };
        self.free.push(idx);
        self.live -= 1;
        let _ = self.poll.registry().deregister(&mut conn.client);
        self.ctx.closed(&conn.link);
        if let Some(mut b) = conn.backend.take() {
            let _ = self.poll.registry().deregister(&mut b);
            if reset {
                sys::set_linger_zero(&b);
            }
        }
        if reset {
            sys::set_linger_zero(&conn.client);
        } else {
            let _ = conn.client.shutdown(Shutdown::Write);
        }
        for flow in [&mut conn.up, &mut conn.down] {
            if let Some(b) = flow.buf.take() {
                self.bufs.push(b);
            }
            if let Some(p) = flow.take_reusable_pipe() {
                self.pipes.push(p);
            }
        }
    }

    fn close_all(&mut self) {
        for idx in 0..self.conns.len() {
            self.close(idx, false);
        }
        for idx in 0..self.hconns.len() {
            self.close_http(idx, false);
        }
        self.http.clear();
        self.forget_evicted();
    }
}

/// A backend socket of HTTP mode, registered for its whole life under its key.
struct BackendSlot {
    /// The HTTP connection it serves; none while pooled.
    owner: Option<usize>,
    addr: SocketAddr,
}

/// The epoll side of backend socket changes: a slab of keys, no system call but the
/// registration of a new socket.
struct EpollWatch<'a> {
    registry: &'a mio::Registry,
    slots: &'a mut Vec<Option<BackendSlot>>,
    free: &'a mut Vec<usize>,
    conn: usize,
}

impl Watch for EpollWatch<'_> {
    fn backend_opened(&mut self, fd: std::os::fd::RawFd, addr: SocketAddr) -> usize {
        let key = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        self.slots[key] = Some(BackendSlot { owner: None, addr });
        let interest = Interest::READABLE | Interest::WRITABLE;
        let _ = self
            .registry
            .register(&mut SourceFd(&fd), Token(BACKEND_TAG | key), interest);
        key
    }

    fn backend_attached(&mut self, key: usize) {
        if let Some(s) = self.slots[key].as_mut() {
            s.owner = Some(self.conn);
        }
    }

    fn backend_released(&mut self, key: usize, pooled: bool) {
        if pooled {
            if let Some(s) = self.slots[key].as_mut() {
                s.owner = None;
            }
        } else {
            // The caller closes the socket, which takes it out of the epoll set.
            self.slots[key] = None;
            self.free.push(key);
        }
    }
}
