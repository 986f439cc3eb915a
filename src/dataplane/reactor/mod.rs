//! What a shard needs from its event loop, and nothing more: the [`Reactor`] trait.
//!
//! The shard core (`dataplane::shard`) owns every duty — admission, connections,
//! backend choice and retries, deadlines, relaying, close and drain — and speaks to
//! sockets only through this trait. Three implement it: io_uring (`uring.rs`), epoll
//! (`epoll.rs`) and, in tests and behind the `sim` feature, a seeded simulation of the
//! network (`sim/`). A reactor turns its kernel interface into two things:
//! [`Event`]s (a connection accepted; a socket that may be read or written) and
//! non-blocking calls that answer at once (`recv`, `send`, …; "would block" is an
//! answer).
//!
//! The model is edge-triggered readiness: an event says a socket *may* have become
//! readable or writable since the core last asked; the core then calls until a call
//! would block, and tells the reactor with [`Reactor::want`] what it waits for next.
//! epoll watches every socket for both directions for its whole life (so `want` costs
//! nothing); io_uring arms one operation per wanted direction — for reading, a receive
//! into a kernel-chosen provided buffer whose bytes the next `recv` hands over, so the
//! readiness event and the data arrive together.

pub mod epoll;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod uring;

use crate::io::sys::Pipe;
use std::io;
use std::net::SocketAddr;

/// Names a watched socket in the events about it; chosen by the core.
pub type Token = u64;

/// A listening socket's number in its reactor: not reused until the reactor has
/// stopped accepting on it for good.
pub type ListenId = usize;

/// What a reactor reports.
#[derive(Debug)]
pub enum Event<S> {
    /// A listener took a connection (a non-blocking socket, not yet watched).
    Accepted {
        listener: ListenId,
        sock: S,
        peer: SocketAddr,
    },
    /// A listener's accept failed with `errno`.
    AcceptFailed { listener: ListenId, errno: i32 },
    /// The socket watched under `token` may be readable (`read`) or writable
    /// (`write`); `hup`: the peer closed or the socket failed, so reading goes on until
    /// a read says so, even after a short read.
    Ready {
        token: Token,
        read: bool,
        write: bool,
        hup: bool,
    },
}

/// What the core waits for on one socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Want {
    pub read: bool,
    pub write: bool,
    /// Readable without taking the bytes (the next read is a `splice`): io_uring arms
    /// a poll instead of a receive.
    pub poll_only: bool,
}

/// An event loop and the socket calls that go with it. Every call is non-blocking.
pub trait Reactor {
    /// A socket, owned by the core; handed back with [`Reactor::close`].
    type Sock;

    /// The reactor's clock in milliseconds (the simulation's is virtual).
    fn now_ms(&self) -> u64;
    /// Submit what is pending and wait for events, at most `timeout_ms` (0: only
    /// look); append them to `out`.
    fn wait(&mut self, timeout_ms: u64, out: &mut Vec<Event<Self::Sock>>) -> io::Result<()>;

    /// Start accepting on this shard's socket of `listeners` (held until `unlisten`).
    fn listen(
        &mut self,
        listeners: &std::sync::Arc<crate::snapshot::Listeners>,
        shard: usize,
    ) -> io::Result<ListenId>;
    /// Stop accepting on `id`. A connection the kernel accepted before it stopped (an
    /// accept in flight) is still reported, and the core serves it.
    fn unlisten(&mut self, id: ListenId);
    /// Stop (or resume) accepting on every listener: the shard is out of descriptors.
    fn pause_accepts(&mut self, paused: bool);
    /// Take what is queued on every listener even without a new wake-up (see
    /// `Published::rearm_accepts`). Readiness that wakes every waiter (epoll's) needs
    /// nothing.
    fn rearm_accepts(&mut self) {}

    /// Report readiness of `sock` under `token` from now on.
    fn watch(&mut self, sock: &Self::Sock, token: Token) -> io::Result<()>;
    /// Report events of `sock` under a new token (a pooled connection changes hands).
    fn retoken(&mut self, sock: &Self::Sock, token: Token);
    /// What the core waits for on `sock` (see the module's comment).
    fn want(&mut self, sock: &Self::Sock, want: Want);
    /// Forget and close `sock`; `reset`: with RST (`SO_LINGER` 0).
    fn close(&mut self, sock: Self::Sock, reset: bool);

    /// Start a non-blocking connect to `addr`; writable means it finished.
    fn connect(&mut self, addr: SocketAddr) -> io::Result<Self::Sock>;
    /// A connect in progress: `Ok(true)` connected, `Ok(false)` still under way.
    fn connect_result(&mut self, sock: &Self::Sock) -> io::Result<bool>;
    /// Receive at most `max` bytes, appended to `buf`. `Ok(0)`: end of stream.
    fn recv(&mut self, sock: &Self::Sock, buf: &mut Vec<u8>, max: usize) -> io::Result<usize>;
    /// Receive into `buf` (at most its length). `Ok(0)`: end of stream. For readers
    /// that own their buffer (rustls reads ciphertext this way).
    fn recv_slice(&mut self, sock: &Self::Sock, buf: &mut [u8]) -> io::Result<usize>;
    /// Send what the socket takes of `data`; `more`: the final partial segment waits
    /// for what follows (`MSG_MORE`).
    fn send(&mut self, sock: &Self::Sock, data: &[u8], more: bool) -> io::Result<usize>;
    /// Look without taking: `Ok(0)` the peer closed, `Ok(n)` bytes wait, `WouldBlock`
    /// nothing to read.
    fn peek(&mut self, sock: &Self::Sock) -> io::Result<usize>;
    /// Shut the write side (a FIN).
    fn shutdown(&mut self, sock: &Self::Sock);
    /// The address the peer of `sock` connected to (for a PROXY header to a backend).
    /// `Unsupported` where the reactor has none.
    fn local_addr(&self, _sock: &Self::Sock) -> io::Result<SocketAddr> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Nothing of `sock` is received and held, or being received, by the reactor: a
    /// read that bypasses it (`splice_in`) loses no byte.
    fn quiet(&self, sock: &Self::Sock) -> bool;
    /// Move up to `max` bytes from `sock` into `pipe` without copying them to user
    /// space. `Unsupported` where the reactor cannot (the flow stays buffered).
    fn splice_in(&mut self, sock: &Self::Sock, pipe: &Pipe, max: usize) -> io::Result<usize>;
    /// Move up to `n` bytes from `pipe` to `sock`.
    fn splice_out(&mut self, pipe: &Pipe, sock: &Self::Sock, n: usize) -> io::Result<usize>;
}

/// The index of a vacant entry of `slots` (a new one at the end when none is).
pub(crate) fn vacant<T>(slots: &mut Vec<Option<T>>) -> usize {
    match slots.iter().position(Option::is_none) {
        Some(i) => i,
        None => {
            slots.push(None);
            slots.len() - 1
        }
    }
}

/// The system calls both kernel reactors make the same way on a `socket2::Socket`.
pub(crate) mod calls {
    use crate::io::sys::{self, Pipe};
    use socket2::{Domain, Protocol, Socket, Type};
    use std::io::{self, ErrorKind};
    use std::mem::MaybeUninit;
    use std::net::{Shutdown, SocketAddr};
    use std::os::fd::AsRawFd;

    /// A non-blocking TCP socket for a connect to `addr`, with Nagle off.
    pub fn socket(addr: SocketAddr) -> io::Result<Socket> {
        let s = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        let _ = s.set_tcp_nodelay(true);
        Ok(s)
    }

    pub fn connect(addr: SocketAddr) -> io::Result<Socket> {
        let s = socket(addr)?;
        match s.connect(&addr.into()) {
            Ok(()) => Ok(s),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(s),
            Err(e) => Err(e),
        }
    }

    pub fn connect_result(s: &Socket) -> io::Result<bool> {
        if let Some(e) = s.take_error()? {
            return Err(e);
        }
        match s.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn send(s: &Socket, data: &[u8], more: bool) -> io::Result<usize> {
        let flags = if more { libc::MSG_MORE } else { 0 };
        s.send_with_flags(data, flags | libc::MSG_NOSIGNAL)
    }

    pub fn peek(s: &Socket) -> io::Result<usize> {
        let mut probe = [MaybeUninit::<u8>::uninit(); 1];
        s.peek(&mut probe)
    }

    pub fn local_addr(s: &Socket) -> io::Result<SocketAddr> {
        s.local_addr()?
            .as_socket()
            .ok_or_else(|| io::ErrorKind::Unsupported.into())
    }

    pub fn shutdown(s: &Socket) {
        let _ = s.shutdown(Shutdown::Write);
    }

    pub fn close(s: Socket, reset: bool) {
        if reset {
            sys::set_linger_zero(&s);
        }
    }

    pub fn splice_in(s: &Socket, pipe: &Pipe, max: usize) -> io::Result<usize> {
        sys::splice(s.as_raw_fd(), pipe.write.as_raw_fd(), max)
    }

    pub fn splice_out(pipe: &Pipe, s: &Socket, n: usize) -> io::Result<usize> {
        sys::splice(pipe.read.as_raw_fd(), s.as_raw_fd(), n)
    }
}
