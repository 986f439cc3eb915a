//! The io_uring reactor: multishot accepts, receives into kernel-chosen provided
//! buffers, one-shot polls for writability (and for readability of a spliced flow).
//!
//! A socket the core wants to read gets a receive armed; when it completes, its
//! buffer waits in the socket's stash and a readiness event goes to the core, whose
//! `recv` then copies from the stash (no system call). A short read — a completion,
//! or a direct one — means the socket was empty then, so the next `recv` with nothing
//! stashed says "would block" without asking the kernel; otherwise (after a full
//! buffer, or on a socket not read yet) `recv` reads directly.
//!
//! A socket's state lives in a slab here, named in user data with a generation, and
//! is freed (its descriptor closed) only when nothing is in flight on it, so neither a
//! late completion nor an operation still queued can reach a descriptor number the
//! kernel has handed out again.

use super::{calls, Event, ListenId, Reactor, Token, Want};
use crate::io::sys::{self, Pipe};
use crate::io::uring::{Buffer, Completion, Ring, RingConfig};
use crate::snapshot::Listeners;
use socket2::Socket;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

const RING_ENTRIES: u32 = 4096;
const BUFFERS: u16 = 1024;

// user_data: operation in bits 56..62 (bits 62 and 63 are the ring's: operations stay
// below 64), generation in 32..56, slot in the low 32 bits.
const OP_ACCEPT: u64 = 1;
const OP_RECV: u64 = 2;
const OP_POLL_IN: u64 = 3;
const OP_POLL_OUT: u64 = 4;
const OP_IGNORE: u64 = 5;
const OP_CONNECT: u64 = 6;

fn ud(op: u64, generation: u32, slot: u32) -> u64 {
    op << 56 | u64::from(generation & 0xff_ffff) << 32 | u64::from(slot)
}

fn ud_parts(ud: u64) -> (u64, u32, u32) {
    (
        ud >> 56,
        ((ud >> 32) & 0xff_ffff) as u32,
        (ud & 0xffff_ffff) as u32,
    )
}

/// A socket of the io_uring reactor: the descriptor and its slot here.
#[derive(Debug)]
pub struct USock {
    sock: Socket,
    slot: u32,
}

/// What a completed receive left for the core.
enum Stashed {
    Bytes { buf: Buffer, offset: u32, len: u32 },
    End,
    Failed(i32),
}

#[derive(Default)]
struct SockState {
    generation: u32,
    live: bool,
    token: Token,
    /// The receive or readability poll in flight (its operation; 0: none).
    reading: u64,
    /// The writability poll or the connect in flight (the same).
    writing: u64,
    /// A connect through the ring: its outcome once completed (0 or an errno).
    connect: Option<Option<i32>>,
    inflight: u8,
    /// What the one receive in flight completed with, until the core takes it (a
    /// receive is armed only when nothing is stashed). Held inline: a slot keeps no
    /// allocation of its own after its socket is gone.
    stash: Option<Stashed>,
    /// The last receive completed short: the socket was empty then.
    drained: bool,
    /// After `close`, while operations are still in flight: the descriptor, closed
    /// when the last one completes.
    closing: Option<Socket>,
}

impl SockState {
    fn stash(&mut self, s: Stashed) {
        debug_assert!(self.stash.is_none(), "a receive armed with bytes stashed");
        self.stash = Some(s);
    }
}

struct ListenerSlot {
    listeners: Arc<Listeners>,
    shard: usize,
    generation: u32,
    armed: bool,
    cancelling: bool,
    /// `unlisten` was called: freed when its accept has completed for the last time.
    retired: bool,
}

pub struct Uring {
    ring: Ring,
    socks: Vec<SockState>,
    free: Vec<u32>,
    listeners: Vec<Option<ListenerSlot>>,
    paused: bool,
    completions: Vec<Completion>,
    /// Events owed to the core outside a completion (a read wanted while bytes wait).
    owed: Vec<Token>,
    /// Listeners whose last accept completed, kept until the next wait: the core
    /// has then dispatched that accept's connection, with the listener alive.
    done: Vec<Arc<Listeners>>,
}

impl Uring {
    pub fn new(slots: usize) -> io::Result<Uring> {
        let ring = Ring::new(RingConfig {
            entries: RING_ENTRIES,
            buffers: BUFFERS,
            buffer_bytes: crate::dataplane::BUF_BYTES as u32,
        })?;
        tracing::debug!(setup = ring.setup, "io_uring ready");
        Ok(Uring {
            ring,
            socks: Vec::with_capacity(slots.min(1 << 20)),
            free: Vec::new(),
            listeners: Vec::new(),
            paused: false,
            completions: Vec::with_capacity(RING_ENTRIES as usize * 4),
            owed: Vec::new(),
            done: Vec::new(),
        })
    }

    fn adopt(&mut self, sock: Socket) -> USock {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.socks.push(SockState::default());
                (self.socks.len() - 1) as u32
            }
        };
        let st = &mut self.socks[slot as usize];
        st.generation = st.generation.wrapping_add(1);
        st.live = true;
        st.token = Token::MAX;
        st.drained = false;
        st.connect = None;
        USock { sock, slot }
    }

    fn arm_accept(&mut self, id: ListenId) {
        let paused = self.paused;
        let Some(l) = self.listeners[id].as_mut() else {
            return;
        };
        if l.armed || l.retired || paused {
            return;
        }
        l.armed = true;
        l.cancelling = false;
        let fd = l.listeners.sockets[l.shard].as_raw_fd();
        self.ring
            .accept_multi(fd, ud(OP_ACCEPT, l.generation, id as u32));
    }

    fn disarm_accept(&mut self, id: ListenId) {
        if let Some(l) = self.listeners[id].as_mut() {
            if l.armed && !l.cancelling {
                l.cancelling = true;
                self.ring
                    .cancel_accept(ud(OP_ACCEPT, l.generation, id as u32), ud(OP_IGNORE, 0, 0));
            }
        }
    }

    fn on_accept(
        &mut self,
        generation: u32,
        id: usize,
        mut c: Completion,
        out: &mut Vec<Event<USock>>,
    ) {
        let Some(l) = self.listeners.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        if l.generation & 0xff_ffff != generation {
            return;
        }
        if !c.more() {
            l.armed = false;
            l.cancelling = false;
        }
        let retired = l.retired;
        if retired && !l.armed {
            if let Some(l) = self.listeners[id].take() {
                self.done.push(l.listeners);
            }
        }
        match c.take_accepted() {
            // Accepted while being retired too: the core serves it (a connection the
            // kernel took off the queue is the client's, whoever stopped listening).
            Some(fd) => {
                let sock = Socket::from(fd);
                // Asked as epoll's accept asks it, so that a client reset before its
                // address was asked is still named (a PROXY listener's trust, a source
                // hash, the log see the same address under both reactors). Should even
                // that fail, it is reported all the same, under the unspecified address,
                // so that both reactors count the accept and the reset the first read
                // meets.
                let peer = sys::accepted_peer(&sock, listening_v6(&sock));
                let peer = peer.unwrap_or_else(|| unknown_peer(&sock));
                let sock = self.adopt(sock);
                out.push(Event::Accepted {
                    listener: id,
                    sock,
                    peer,
                });
            }
            None if -c.result == libc::ECANCELED => {}
            None => out.push(Event::AcceptFailed {
                listener: id,
                errno: -c.result,
            }),
        }
        if !retired {
            self.arm_accept(id);
        }
    }

    /// A completion of socket `slot`'s operation; `None` when the socket is closed
    /// (or its slot freed once nothing is left in flight).
    fn settle(&mut self, slot: u32, generation: u32, op: u64) -> Option<&mut SockState> {
        let st = self.socks.get_mut(slot as usize)?;
        if st.generation & 0xff_ffff != generation || st.inflight == 0 {
            debug_assert!(false, "a completion for no operation");
            return None;
        }
        st.inflight -= 1;
        match op {
            OP_POLL_OUT | OP_CONNECT => st.writing = 0,
            _ => st.reading = 0,
        }
        if st.live {
            return Some(st);
        }
        if st.inflight == 0 {
            st.closing = None; // closes the descriptor
            if let Some(Stashed::Bytes { buf, .. }) = st.stash.take() {
                self.ring.recycle(buf);
            }
            self.free.push(slot);
        }
        None
    }

    fn on_completion(&mut self, mut c: Completion, out: &mut Vec<Event<USock>>) {
        let (op, generation, slot) = ud_parts(c.user_data);
        match op {
            OP_ACCEPT => return self.on_accept(generation, slot as usize, c, out),
            OP_IGNORE => return,
            _ => {}
        }
        let buffer = c.take_buffer();
        let bytes = self.ring.buffer_bytes();
        let Some(st) = self.settle(slot, generation, op) else {
            if let Some(buf) = buffer {
                self.ring.recycle(buf);
            }
            return;
        };
        let token = st.token;
        let r = c.result;
        match op {
            OP_RECV => {
                match (r, buffer) {
                    (n, Some(buf)) if n > 0 => {
                        st.drained = (n as u32) < bytes;
                        st.stash(Stashed::Bytes {
                            buf,
                            offset: 0,
                            len: n as u32,
                        });
                    }
                    (0, _) => st.stash(Stashed::End),
                    // Out of provided buffers: the core's next `recv` reads directly.
                    (e, _) if -e == libc::ENOBUFS => st.drained = false,
                    (e, _) if -e == libc::ECANCELED => return,
                    (e, _) => st.stash(Stashed::Failed(-e)),
                }
                let hup = r <= 0 && -r != libc::ENOBUFS;
                out.push(Event::Ready {
                    token,
                    read: true,
                    write: false,
                    hup,
                });
            }
            OP_POLL_IN => {
                if -r == libc::ECANCELED {
                    return;
                }
                st.drained = false;
                let hup =
                    r < 0 || r & i32::from(libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0;
                out.push(Event::Ready {
                    token,
                    read: true,
                    write: false,
                    hup,
                });
            }
            OP_CONNECT => {
                st.connect = Some(Some(-r.min(0)));
                // A new connection has nothing to read yet: the first read waits for a
                // receive through the ring.
                st.drained = r == 0;
                out.push(Event::Ready {
                    token,
                    read: false,
                    write: true,
                    hup: r < 0,
                });
            }
            _ => {
                if -r == libc::ECANCELED {
                    return;
                }
                out.push(Event::Ready {
                    token,
                    read: false,
                    write: true,
                    hup: false,
                });
            }
        }
    }
}

/// Whether an accepted socket is IPv6 (its listener's family).
fn listening_v6(sock: &Socket) -> bool {
    sock.local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .is_some_and(|a| a.is_ipv6())
}

/// The address of a client the kernel no longer names: unspecified, in the
/// listening socket's family.
fn unknown_peer(sock: &Socket) -> SocketAddr {
    match listening_v6(sock) {
        true => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
        false => SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0)),
    }
}

/// Hand at most `max` stashed bytes of `st` to `put` (one receive's, in order), or
/// the stashed end of stream or failure; `None` when nothing is stashed.
fn take_stashed(
    ring: &mut Ring,
    st: &mut SockState,
    max: usize,
    put: impl FnOnce(&[u8]),
) -> Option<io::Result<usize>> {
    Some(match st.stash.as_mut()? {
        Stashed::Bytes { buf, offset, len } => {
            let n = (*len).min(max as u32);
            put(ring.bytes(buf, *offset, n));
            *offset += n;
            *len -= n;
            if *len == 0 {
                if let Some(Stashed::Bytes { buf, .. }) = st.stash.take() {
                    ring.recycle(buf);
                }
            }
            Ok(n as usize)
        }
        Stashed::End => Ok(0),
        Stashed::Failed(e) => Err(io::Error::from_raw_os_error(*e)),
    })
}

impl Reactor for Uring {
    type Sock = USock;

    fn now_ms(&self) -> u64 {
        crate::snapshot::clock_ms()
    }

    fn wait(&mut self, timeout_ms: u64, out: &mut Vec<Event<USock>>) -> io::Result<()> {
        self.done.clear();
        let timeout = if self.owed.is_empty() { timeout_ms } else { 0 };
        self.ring.submit_and_wait(Duration::from_millis(timeout))?;
        for token in self.owed.drain(..) {
            out.push(Event::Ready {
                token,
                read: true,
                write: false,
                hup: false,
            });
        }
        let mut batch = std::mem::take(&mut self.completions);
        self.ring.drain(&mut batch);
        for c in batch.drain(..) {
            self.on_completion(c, out);
        }
        self.completions = batch;
        Ok(())
    }

    fn listen(&mut self, listeners: &Arc<Listeners>, shard: usize) -> io::Result<ListenId> {
        let id = super::vacant(&mut self.listeners);
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        self.listeners[id] = Some(ListenerSlot {
            listeners: Arc::clone(listeners),
            shard,
            generation: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xff_ffff,
            armed: false,
            cancelling: false,
            retired: false,
        });
        self.arm_accept(id);
        Ok(id)
    }

    fn unlisten(&mut self, id: ListenId) {
        let Some(l) = self.listeners.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        l.retired = true;
        if l.armed {
            self.disarm_accept(id);
        } else {
            self.listeners[id] = None;
        }
    }

    fn rearm_accepts(&mut self) {
        // Cancelled, an accept re-arms at its last completion (unless paused or
        // retired), and a new accept takes what is queued before it waits.
        for id in 0..self.listeners.len() {
            self.disarm_accept(id);
        }
    }

    fn pause_accepts(&mut self, paused: bool) {
        if self.paused == paused {
            return;
        }
        self.paused = paused;
        for id in 0..self.listeners.len() {
            if paused {
                // The kernel would otherwise go on taking connections (and descriptors)
                // on the shard's behalf.
                self.disarm_accept(id);
            } else {
                self.arm_accept(id);
            }
        }
    }

    fn watch(&mut self, sock: &USock, token: Token) -> io::Result<()> {
        self.socks[sock.slot as usize].token = token;
        Ok(())
    }

    fn retoken(&mut self, sock: &USock, token: Token) {
        self.socks[sock.slot as usize].token = token;
    }

    fn want(&mut self, sock: &USock, want: Want) {
        let slot = sock.slot;
        let st = &mut self.socks[slot as usize];
        let generation = st.generation;
        let fd = sock.sock.as_raw_fd();
        if want.read && st.reading == 0 {
            if st.stash.is_some() {
                self.owed.push(st.token);
            } else {
                st.inflight += 1;
                if want.poll_only {
                    st.reading = OP_POLL_IN;
                    let events = libc::POLLIN | libc::POLLRDHUP;
                    self.ring.poll(fd, events, ud(OP_POLL_IN, generation, slot));
                } else {
                    st.reading = OP_RECV;
                    self.ring.recv(fd, ud(OP_RECV, generation, slot));
                }
            }
        }
        let st = &mut self.socks[slot as usize];
        if want.write && st.writing == 0 {
            st.writing = OP_POLL_OUT;
            st.inflight += 1;
            self.ring
                .poll(fd, libc::POLLOUT, ud(OP_POLL_OUT, generation, slot));
        }
    }

    fn close(&mut self, sock: USock, reset: bool) {
        let USock { sock, slot } = sock;
        if reset {
            sys::set_linger_zero(&sock);
        }
        let st = &mut self.socks[slot as usize];
        st.live = false;
        let generation = st.generation;
        if let Some(Stashed::Bytes { buf, .. }) = st.stash.take() {
            self.ring.recycle(buf);
        }
        let st = &mut self.socks[slot as usize];
        if st.inflight == 0 {
            self.free.push(slot);
            return; // dropping `sock` closes it
        }
        // Closed when the last operation completes: until then the descriptor number
        // cannot be handed out again, so no queued operation reaches another socket.
        let (reading, writing) = (st.reading, st.writing);
        st.closing = Some(sock);
        let ignore = ud(OP_IGNORE, 0, 0);
        for op in [reading, writing] {
            match op {
                0 => {}
                OP_CONNECT => self
                    .ring
                    .cancel_connect(ud(OP_CONNECT, generation, slot), ignore),
                op => self.ring.cancel(ud(op, generation, slot), ignore),
            }
        }
    }

    fn connect(&mut self, addr: SocketAddr) -> io::Result<USock> {
        let s = calls::socket(addr)?;
        let sock = self.adopt(s);
        let st = &mut self.socks[sock.slot as usize];
        st.connect = Some(None);
        st.writing = OP_CONNECT;
        st.inflight += 1;
        let ud = ud(OP_CONNECT, st.generation, sock.slot);
        self.ring.connect(sock.sock.as_raw_fd(), addr, ud);
        Ok(sock)
    }

    fn connect_result(&mut self, sock: &USock) -> io::Result<bool> {
        match self.socks[sock.slot as usize].connect {
            Some(None) => Ok(false),
            Some(Some(0)) | None => Ok(true),
            Some(Some(e)) => Err(io::Error::from_raw_os_error(e)),
        }
    }

    fn recv(&mut self, sock: &USock, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let ring = &mut self.ring;
        let st = &mut self.socks[sock.slot as usize];
        match take_stashed(ring, st, max, |b| buf.extend_from_slice(b)) {
            Some(r) => r,
            None if st.reading != 0 || st.drained => Err(ErrorKind::WouldBlock.into()),
            None => {
                // A short read empties the socket: the next waits for a receive armed
                // through the ring, which also sees a FIN that came after the bytes
                // (a receive is not an edge: it completes on what is already there).
                let n = sys::recv_into(&sock.sock, buf, max)?;
                st.drained = n < max;
                Ok(n)
            }
        }
    }

    fn recv_slice(&mut self, sock: &USock, buf: &mut [u8]) -> io::Result<usize> {
        let ring = &mut self.ring;
        let st = &mut self.socks[sock.slot as usize];
        match take_stashed(ring, st, buf.len(), |b| buf[..b.len()].copy_from_slice(b)) {
            Some(r) => r,
            None if st.reading != 0 || st.drained => Err(ErrorKind::WouldBlock.into()),
            None => {
                let n = std::io::Read::read(&mut &sock.sock, buf)?;
                st.drained = n < buf.len();
                Ok(n)
            }
        }
    }

    fn send(&mut self, sock: &USock, data: &[u8], more: bool) -> io::Result<usize> {
        calls::send(&sock.sock, data, more)
    }

    fn peek(&mut self, sock: &USock) -> io::Result<usize> {
        match &self.socks[sock.slot as usize].stash {
            Some(Stashed::Bytes { len, .. }) => Ok(*len as usize),
            Some(Stashed::End) => Ok(0),
            Some(Stashed::Failed(e)) => Err(io::Error::from_raw_os_error(*e)),
            None => calls::peek(&sock.sock),
        }
    }

    fn shutdown(&mut self, sock: &USock) {
        calls::shutdown(&sock.sock);
    }

    fn local_addr(&self, sock: &USock) -> io::Result<SocketAddr> {
        calls::local_addr(&sock.sock)
    }

    fn quiet(&self, sock: &USock) -> bool {
        let st = &self.socks[sock.slot as usize];
        st.reading != OP_RECV && st.stash.is_none()
    }

    fn splice_in(&mut self, sock: &USock, pipe: &Pipe, max: usize) -> io::Result<usize> {
        calls::splice_in(&sock.sock, pipe, max)
    }

    fn splice_out(&mut self, pipe: &Pipe, sock: &USock, n: usize) -> io::Result<usize> {
        calls::splice_out(pipe, &sock.sock, n)
    }
}
