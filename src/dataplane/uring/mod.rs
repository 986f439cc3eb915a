//! The io_uring shard: completion-driven, one ring per shard thread.
//!
//! Per connection at most one operation is in flight per direction (a receive into a
//! provided buffer, the send of that buffer, or a readiness poll for a spliced flow),
//! plus the connect and its linked timeout. A connection's slot is freed only when its
//! in-flight count is back to zero, so a completion never finds its slot reused.
//! HTTP connections live in a slab of their own and wait on one-shot readiness polls
//! (at most one per socket and direction), then move bytes with non-blocking system
//! calls through `dataplane::http`.

use super::flow::{Flow, Pump};
mod http;

use super::http::{After, HttpShard};
use super::link::{Direction, Link};
use super::{ShardCtx, BUF_BYTES};
use crate::config::Mode;
use crate::io::sys;
use crate::io::uring::{Buffer, Completion, Ring, RingConfig};
use crate::snapshot::{Front, Listeners, Service};
use http::HttpSlot;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

const RING_ENTRIES: u32 = 4096;
const BUFFERS: u16 = 1024;
/// Splice rounds per readiness before yielding to other connections.
const PUMP_BUDGET: usize = 16;

// user_data: operation in the top byte (its top bit is the ring's: operations stay
// below 128), direction in the next, slot in the low bits.
const OP_ACCEPT: u64 = 1;
const OP_CONNECT: u64 = 2;
const OP_CONNECT_TIMEOUT: u64 = 3;
const OP_RECV: u64 = 4;
const OP_SEND: u64 = 5;
const OP_POLL: u64 = 6;
const OP_IGNORE: u64 = 7;
/// A readiness poll of an HTTP connection; the direction field indexes `Polls::armed`
/// (client readable, client writable, backend readable, backend writable).
const OP_HPOLL: u64 = 8;

fn ud(op: u64, dir: usize, idx: usize) -> u64 {
    op << 56 | (dir as u64) << 48 | idx as u64
}

fn ud_parts(ud: u64) -> (u64, usize, usize) {
    (
        ud >> 56,
        ((ud >> 48) & 0xff) as usize,
        (ud & 0xffff_ffff_ffff) as usize,
    )
}

/// Directions: 0 moves client → backend, 1 backend → client.
const UP: usize = 0;
const DOWN: usize = 1;

/// A direction's operation in flight. Not `Copy`: a send holds its buffer's token,
/// which leaves only by `std::mem::replace` and goes back to the ring once.
#[derive(Debug)]
enum Op {
    Idle,
    Recv,
    Send {
        buf: Buffer,
        offset: u32,
        len: u32,
    },
    Poll,
    /// A receive found no free buffer; re-armed when one is recycled.
    Starved,
}

struct ListenerSlot {
    listeners: Arc<Listeners>,
    front: Front,
    armed: bool,
    /// A cancel of the armed accept is in flight.
    cancelling: bool,
    /// Removed from the snapshot: waiting for the cancelled accept's last completion.
    retired: bool,
}

struct Conn {
    link: Link,
    client: Socket,
    backend: Option<Socket>,
    flows: [Flow; 2],
    ops: [Op; 2],
    inflight: u16,
    /// Set once closing began; `true` closes with RSTs.
    closing: Option<bool>,
}

impl Conn {
    fn src(&self, dir: usize) -> &Socket {
        if dir == UP {
            &self.client
        } else {
            self.backend.as_ref().expect("connected")
        }
    }

    fn dst(&self, dir: usize) -> &Socket {
        self.src(1 - dir)
    }
}

struct Shard {
    ctx: ShardCtx,
    ring: Ring,
    listeners: Vec<Option<ListenerSlot>>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    hslots: Vec<Option<HttpSlot>>,
    hfree: Vec<usize>,
    http: HttpShard,
    /// Connections of both kinds.
    live: usize,
    pipes: Vec<sys::Pipe>,
    starved: VecDeque<(usize, usize)>,
    last_sweep_ms: u64,
    completions: Vec<Completion>,
}

pub fn run(ctx: ShardCtx) -> io::Result<()> {
    let slots = ctx.conn_limit;
    let ring = Ring::new(RingConfig {
        entries: RING_ENTRIES,
        buffers: BUFFERS,
        buffer_bytes: BUF_BYTES as u32,
        slots,
    })?;
    tracing::debug!(shard = ctx.id, setup = ring.setup, "io_uring ready");
    let mut shard = Shard {
        ctx,
        ring,
        listeners: Vec::new(),
        // Fixed capacity: slots are indexed by in-flight operations.
        conns: Vec::with_capacity(slots),
        free: Vec::new(),
        hslots: Vec::new(),
        hfree: Vec::new(),
        http: HttpShard::default(),
        live: 0,
        pipes: Vec::new(),
        starved: VecDeque::new(),
        last_sweep_ms: 0,
        completions: Vec::with_capacity(RING_ENTRIES as usize * 4),
    };
    shard.apply_server_settings();
    shard.sync_listeners();
    shard.event_loop()
}

impl Shard {
    fn event_loop(&mut self) -> io::Result<()> {
        loop {
            let busy = self.ctx.draining_since_ms.is_some() || self.ctx.accept_paused();
            let timeout = if !self.http.again.is_empty() {
                Duration::ZERO
            } else {
                Duration::from_millis(if busy { 50 } else { 1000 })
            };
            self.ring.submit_and_wait(timeout)?;
            self.ctx.tick();
            if self.ctx.refresh() {
                self.apply_server_settings();
                self.sync_listeners();
            }
            let mut batch = std::mem::take(&mut self.completions);
            self.ring.drain(&mut batch);
            let n = batch.len() as u64;
            self.ctx
                .stats()
                .last_batch
                .store(n, std::sync::atomic::Ordering::Relaxed);
            for c in batch.drain(..) {
                self.dispatch(c);
            }
            self.completions = batch;
            let again = self.http.take_again();
            for &idx in &again {
                self.pump_http(idx);
            }
            self.http.done_again(again);
            if self.ctx.accept_paused() {
                self.disarm_accepts();
            }
            self.feed_starved();
            self.timers();
            if self.ctx.draining_since_ms.is_some() {
                if self.ctx.grace_over() {
                    for idx in 0..self.conns.len() {
                        self.close(idx, false);
                    }
                    for idx in 0..self.hslots.len() {
                        self.after_http(idx, After::Close { reset: false });
                    }
                }
                if self.live == 0 && self.listeners.iter().all(Option::is_none) {
                    return Ok(());
                }
            }
        }
    }

    fn apply_server_settings(&mut self) {
        let ms = self.ctx.snapshot.server.connect_timeout_ms;
        self.ring.set_connect_timeout(Duration::from_millis(ms));
    }

    fn dispatch(&mut self, mut c: Completion) {
        let (op, dir, idx) = ud_parts(c.user_data);
        match op {
            OP_ACCEPT => self.on_accept(idx, c),
            OP_IGNORE => {}
            OP_HPOLL => self.on_hpoll(idx, dir, c.result),
            _ => {
                let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
                    debug_assert!(false, "completion for a free slot");
                    return;
                };
                conn.inflight -= 1;
                if conn.closing.is_some() {
                    // Buffers that arrive for a closing connection go straight back.
                    if let Some(buf) = c.take_buffer() {
                        self.ring.recycle(buf);
                    }
                    if op == OP_RECV || op == OP_SEND || op == OP_POLL {
                        // This completion was direction `dir`'s one operation: a send
                        // that completed hands its buffer back.
                        if let Op::Send { buf, .. } =
                            std::mem::replace(&mut conn.ops[dir], Op::Idle)
                        {
                            self.ring.recycle(buf);
                        }
                    }
                    self.finish_close(idx);
                    return;
                }
                match op {
                    OP_CONNECT => self.on_connect(idx, c.result),
                    OP_CONNECT_TIMEOUT => {}
                    OP_RECV => self.on_recv(idx, dir, c),
                    OP_SEND => self.on_send(idx, dir, c.result),
                    OP_POLL => self.pump_splice(idx, dir),
                    _ => debug_assert!(false, "unknown operation {op}"),
                }
            }
        }
    }

    /// Make the armed listeners match the snapshot's services.
    fn sync_listeners(&mut self) {
        let snap = Arc::clone(&self.ctx.snapshot);
        for slot in self.listeners.iter_mut().flatten() {
            if slot.retired {
                continue;
            }
            match snap
                .listeners
                .iter()
                .position(|l| Arc::ptr_eq(l, &slot.listeners))
            {
                Some(k) => slot.front = snap.fronts[k].clone(),
                None => slot.retired = true,
            }
        }
        for i in 0..self.listeners.len() {
            let Some(slot) = &self.listeners[i] else {
                continue;
            };
            if slot.retired {
                if slot.armed {
                    self.disarm(i);
                } else {
                    self.listeners[i] = None;
                }
            }
        }
        self.http.set_limit(snap.http.pool_per_backend);
        for (front, listeners) in snap.fronts.iter().zip(&snap.listeners) {
            let known = self
                .listeners
                .iter()
                .flatten()
                .any(|s| !s.retired && Arc::ptr_eq(&s.listeners, listeners));
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
            self.listeners[i] = Some(ListenerSlot {
                listeners: Arc::clone(listeners),
                front: front.clone(),
                armed: false,
                cancelling: false,
                retired: false,
            });
            self.arm_accept(i);
        }
    }

    fn arm_accept(&mut self, i: usize) {
        let Some(slot) = self.listeners[i].as_mut() else {
            return;
        };
        if slot.armed || slot.retired || self.ctx.accept_paused() {
            return;
        }
        slot.armed = true;
        let fd = slot.listeners.sockets[self.ctx.id].as_raw_fd();
        self.ring.accept_multi(fd, ud(OP_ACCEPT, 0, i));
    }

    /// Stop the armed multishot accepts while accepting is paused: the kernel would
    /// otherwise go on taking connections (and descriptors) on the shard's behalf.
    fn disarm_accepts(&mut self) {
        for i in 0..self.listeners.len() {
            self.disarm(i);
        }
    }

    /// Cancel listener `i`'s armed accept (once); its last completion clears `armed`.
    fn disarm(&mut self, i: usize) {
        if let Some(slot) = self.listeners[i].as_mut() {
            if slot.armed && !slot.cancelling {
                slot.cancelling = true;
                self.ring
                    .cancel_accept(ud(OP_ACCEPT, 0, i), ud(OP_IGNORE, 0, 0));
            }
        }
    }

    fn on_accept(&mut self, i: usize, mut c: Completion) {
        let Some(slot) = self.listeners.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if !c.more() {
            slot.armed = false;
            slot.cancelling = false;
        }
        let front = slot.front.clone();
        let listeners = Arc::clone(&slot.listeners);
        let retired = slot.retired;
        if retired && !slot.armed {
            self.listeners[i] = None; // the socket closes once no snapshot holds it
        }
        match c.take_accepted() {
            Some(fd) if !retired => {
                self.ctx.stats().accepts.inc();
                match &front {
                    Front::Service(svc) if svc.config.mode == Mode::Tcp => self.on_client(fd, svc),
                    _ => self.on_http_client(fd, &listeners, &front),
                }
            }
            Some(_) => {} // accepted while being retired: closed by the drop
            None => self.ctx.accept_failed(-c.result),
        }
        if !retired {
            self.arm_accept(i);
        }
    }

    fn on_client(&mut self, fd: OwnedFd, service: &Arc<Service>) {
        let client = Socket::from(fd);
        let Some(addr) = client.peer_addr().ok().and_then(|a| a.as_socket()) else {
            return; // already gone
        };
        let Some(link) = self.ctx.admit(service, addr, self.live) else {
            return; // dropping `client` closes it
        };
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                assert!(
                    self.conns.len() < self.conns.capacity(),
                    "slab is fixed size"
                );
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        self.conns[idx] = Some(Conn {
            link,
            client,
            backend: None,
            flows: [Flow::default(), Flow::default()],
            ops: [Op::Idle, Op::Idle],
            inflight: 0,
            closing: None,
        });
        self.live += 1;
        self.connect_next(idx);
    }

    /// Try the next backend; with none left, close the client.
    fn connect_next(&mut self, idx: usize) {
        let conn = self.conns[idx].as_mut().expect("live connection");
        let Some(addr) = self.ctx.next_backend(&mut conn.link) else {
            self.close(idx, false);
            return;
        };
        let domain = Domain::for_address(addr);
        // Non-blocking for the splice path's direct `splice(2)` calls (see `accept_multi`).
        let ty = Type::STREAM.cloexec().nonblocking();
        match Socket::new(domain, ty, Some(Protocol::TCP)) {
            Ok(s) => {
                let _ = s.set_tcp_nodelay(true);
                let fd = s.as_raw_fd();
                conn.backend = Some(s);
                conn.inflight += 2;
                let (c, t) = (ud(OP_CONNECT, 0, idx), ud(OP_CONNECT_TIMEOUT, 0, idx));
                self.ring.connect(idx, fd, addr, c, t);
            }
            Err(e) => {
                self.ctx.socket_failed(e.raw_os_error().unwrap_or(0));
                self.close(idx, false);
            }
        }
    }

    fn on_connect(&mut self, idx: usize, result: i32) {
        let conn = self.conns[idx].as_mut().expect("live connection");
        if result < 0 {
            // The linked timeout cancels the connect: ECANCELED means it timed out.
            self.ctx
                .connect_failed(&conn.link, -result == libc::ECANCELED);
            conn.backend = None;
            self.connect_next(idx);
            return;
        }
        self.ctx.connected(&mut conn.link);
        self.arm(idx, UP);
        self.arm(idx, DOWN);
    }

    /// Start the next read of direction `dir`: a buffered receive, or a readiness poll
    /// when the flow is (or now becomes) spliced.
    fn arm(&mut self, idx: usize, dir: usize) {
        let splice = self.ctx.snapshot.server.splice;
        let threshold = self.ctx.snapshot.server.splice_threshold_bytes;
        let conn = self.conns[idx].as_mut().expect("live connection");
        let flow = &mut conn.flows[dir];
        if flow.wants_splice(splice, threshold) {
            flow.pipe = self.pipes.pop().or_else(|| sys::Pipe::new().ok());
            if flow.pipe.is_some() {
                self.ctx.stats().spliced_flows.inc();
            }
        }
        let fd = conn.src(dir).as_raw_fd();
        conn.inflight += 1;
        if conn.flows[dir].pipe.is_some() {
            conn.ops[dir] = Op::Poll;
            self.ring.poll(fd, libc::POLLIN, ud(OP_POLL, dir, idx));
        } else {
            conn.ops[dir] = Op::Recv;
            self.ring.recv(fd, ud(OP_RECV, dir, idx));
        }
    }

    fn on_recv(&mut self, idx: usize, dir: usize, mut c: Completion) {
        let conn = self.conns[idx].as_mut().expect("live connection");
        conn.ops[dir] = Op::Idle;
        match c.result {
            n if n > 0 => {
                let buf = c.take_buffer().expect("a receive with data has a buffer");
                let len = n as u32;
                // Most sends fit the socket buffer at once: a direct send saves a
                // submission, a completion and a loop turn. The rest goes to the ring.
                let fd = conn.dst(dir).as_raw_fd();
                match self.ring.send_now(fd, &buf, 0, len) {
                    Ok(k) if k as u32 == len => self.sent(idx, dir, buf, len),
                    Ok(k) => self.send_rest(idx, dir, buf, k as u32, len - k as u32),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.send_rest(idx, dir, buf, 0, len)
                    }
                    Err(_) => {
                        self.ring.recycle(buf);
                        self.reset(idx);
                    }
                }
            }
            0 => self.end_of_input(idx, dir),
            e if -e == libc::ENOBUFS => {
                conn.ops[dir] = Op::Starved;
                self.starved.push_back((idx, dir));
            }
            _ => self.reset(idx),
        }
    }

    fn on_send(&mut self, idx: usize, dir: usize, result: i32) {
        let conn = self.conns[idx].as_mut().expect("live connection");
        let Op::Send { buf, offset, len } = std::mem::replace(&mut conn.ops[dir], Op::Idle) else {
            unreachable!("send completion without a send");
        };
        if result <= 0 {
            self.ring.recycle(buf);
            self.reset(idx);
            return;
        }
        let sent = result as u32;
        if sent < len {
            self.send_rest(idx, dir, buf, offset + sent, len - sent);
        } else {
            self.sent(idx, dir, buf, offset + sent);
        }
    }

    /// Queue the send of `len` bytes from `offset` of `buf` on the ring; the send holds
    /// the buffer until it completes.
    fn send_rest(&mut self, idx: usize, dir: usize, buf: Buffer, offset: u32, len: u32) {
        let conn = self.conns[idx].as_mut().expect("live connection");
        conn.inflight += 1;
        let fd = conn.dst(dir).as_raw_fd();
        self.ring.send(fd, &buf, offset, len, ud(OP_SEND, dir, idx));
        conn.ops[dir] = Op::Send { buf, offset, len };
    }

    /// `buf`, holding `total` received bytes, is sent: give it back, count, and
    /// receive again.
    fn sent(&mut self, idx: usize, dir: usize, buf: Buffer, total: u32) {
        let capacity = u64::from(self.ring.buffer_bytes());
        let conn = self.conns[idx].as_mut().expect("live connection");
        conn.ops[dir] = Op::Idle;
        self.ring.recycle(buf);
        conn.flows[dir].count(u64::from(total), capacity);
        self.ctx
            .moved(&mut conn.link, direction(dir), u64::from(total));
        self.arm(idx, dir);
    }

    /// A spliced flow's socket is ready: move what can move, then wait again.
    fn pump_splice(&mut self, idx: usize, dir: usize) {
        let conn = self.conns[idx].as_mut().expect("live connection");
        conn.ops[dir] = Op::Idle;
        let before = conn.flows[dir].bytes;
        let (src, dst) = (conn.src(dir).as_raw_fd(), conn.dst(dir).as_raw_fd());
        let result = {
            let (src_sock, dst_sock) = if dir == UP {
                (&conn.client, conn.backend.as_ref().expect("connected"))
            } else {
                (conn.backend.as_ref().expect("connected"), &conn.client)
            };
            conn.flows[dir].pump(src_sock, dst_sock, PUMP_BUDGET)
        };
        let moved = conn.flows[dir].bytes - before;
        if moved > 0 {
            self.ctx.moved(&mut conn.link, direction(dir), moved);
        }
        match result {
            Pump::Blocked { write } => {
                conn.ops[dir] = Op::Poll;
                conn.inflight += 1;
                let (fd, ev) = if write {
                    (dst, libc::POLLOUT)
                } else {
                    (src, libc::POLLIN)
                };
                self.ring.poll(fd, ev, ud(OP_POLL, dir, idx));
            }
            Pump::Budget => {
                // Readiness polls are level-triggered: this one fires at once.
                conn.ops[dir] = Op::Poll;
                conn.inflight += 1;
                self.ring.poll(src, libc::POLLIN, ud(OP_POLL, dir, idx));
            }
            Pump::Done => self.after_fin(idx),
            Pump::Reset => self.reset(idx),
        }
    }

    /// The source of `dir` ended: forward the FIN, keep the other direction open.
    fn end_of_input(&mut self, idx: usize, dir: usize) {
        let conn = self.conns[idx].as_mut().expect("live connection");
        if conn.flows[1 - dir].finished() {
            // Both directions are done: the close right after sends the FIN.
            conn.flows[dir].finish_by_close();
        } else {
            let dst = if dir == UP {
                conn.backend.as_ref().expect("connected")
            } else {
                &conn.client
            };
            conn.flows[dir].forward_fin(dst);
        }
        self.after_fin(idx);
    }

    fn after_fin(&mut self, idx: usize) {
        let conn = self.conns[idx].as_ref().expect("live connection");
        if conn.flows[UP].finished() && conn.flows[DOWN].finished() {
            self.close(idx, false);
        }
    }

    fn reset(&mut self, idx: usize) {
        self.ctx.stats().resets.inc();
        self.close(idx, true);
    }

    /// Begin closing: cancel what is in flight; the slot is freed when it all completed.
    fn close(&mut self, idx: usize, reset: bool) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if conn.closing.is_some() {
            return;
        }
        conn.closing = Some(reset);
        if conn.inflight > 0 {
            self.ring
                .cancel_fd(conn.client.as_raw_fd(), ud(OP_IGNORE, 0, 0));
            if let Some(b) = &conn.backend {
                self.ring.cancel_fd(b.as_raw_fd(), ud(OP_IGNORE, 0, 0));
            }
        }
        self.finish_close(idx);
    }

    /// Free the slot once nothing is in flight for it.
    fn finish_close(&mut self, idx: usize) {
        let conn = self.conns[idx].as_ref().expect("closing connection");
        if conn.inflight > 0 {
            return;
        }
        let mut conn = self.conns[idx].take().expect("closing connection");
        self.free.push(idx);
        self.live -= 1;
        self.ctx.closed(&conn.link);
        if conn.closing == Some(true) {
            sys::set_linger_zero(&conn.client);
            if let Some(b) = &conn.backend {
                sys::set_linger_zero(b);
            }
        }
        for flow in &mut conn.flows {
            if let Some(p) = flow.take_reusable_pipe() {
                self.pipes.push(p);
            }
        }
        // Dropping the sockets closes them.
    }

    /// Re-arm receives that found no buffer, as far as buffers allow.
    fn feed_starved(&mut self) {
        while self.ring.free_buffers() > 0 {
            let Some((idx, dir)) = self.starved.pop_front() else {
                return;
            };
            let ok = self.conns[idx]
                .as_ref()
                .is_some_and(|c| c.closing.is_none() && matches!(c.ops[dir], Op::Starved));
            if ok {
                self.arm(idx, dir);
            }
        }
    }

    fn timers(&mut self) {
        let now = self.ctx.now_ms;
        if self.ctx.accept_resumes() {
            for i in 0..self.listeners.len() {
                self.arm_accept(i);
            }
        }
        if now < self.last_sweep_ms + 1000 {
            return;
        }
        self.last_sweep_ms = now;
        for idx in 0..self.conns.len() {
            let expired = self.conns[idx]
                .as_ref()
                .is_some_and(|c| c.closing.is_none() && self.ctx.expired(&c.link));
            if expired {
                self.close(idx, false);
            }
        }
        self.sweep_http(now);
    }
}

fn direction(dir: usize) -> Direction {
    if dir == UP {
        Direction::Up
    } else {
        Direction::Down
    }
}
