//! The epoll reactor (mio, edge-triggered), for kernels or sandboxes without io_uring.
//! Every socket is registered once for both directions; `want` costs nothing.

use super::{calls, Event, ListenId, Reactor, Token, Want};
use crate::io::sys::{self, Pipe};
use crate::snapshot::Listeners;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use socket2::Socket;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

/// Tokens at and above this one are listeners'; the core's stay below.
const LISTENER_BASE: usize = 1 << 62;
const EVENTS: usize = 1024;

pub struct Epoll {
    poll: Poll,
    events: Events,
    /// Listening sockets by id, with the shard's index into them.
    listeners: Vec<Option<(Arc<Listeners>, usize)>>,
    paused: bool,
    /// Accepting resumed: take what queued meanwhile at the next wait.
    resumed: bool,
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        Ok(Epoll {
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS),
            listeners: Vec::new(),
            paused: false,
            resumed: false,
        })
    }

    /// Take every connection waiting on listener `id` (edge-triggered: one event stands
    /// for all of them).
    fn accept_all(&mut self, id: ListenId, out: &mut Vec<Event<Socket>>) {
        let Some(Some((l, shard))) = self.listeners.get(id) else {
            return;
        };
        let listener = &l.sockets[*shard];
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    let _ = stream.set_nonblocking(true);
                    out.push(Event::Accepted {
                        listener: id,
                        sock: Socket::from(stream),
                        peer,
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    out.push(Event::AcceptFailed {
                        listener: id,
                        errno: e.raw_os_error().unwrap_or(0),
                    });
                    return;
                }
            }
        }
    }
}

impl Reactor for Epoll {
    type Sock = Socket;

    fn now_ms(&self) -> u64 {
        crate::snapshot::clock_ms()
    }

    fn wait(&mut self, timeout_ms: u64, out: &mut Vec<Event<Socket>>) -> io::Result<()> {
        let timeout = Duration::from_millis(timeout_ms);
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            if e.kind() != ErrorKind::Interrupted {
                return Err(e);
            }
        }
        if std::mem::take(&mut self.resumed) && !self.paused {
            for id in 0..self.listeners.len() {
                self.accept_all(id, out);
            }
        }
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for ev in events.iter() {
            let t = ev.token().0;
            if t >= LISTENER_BASE {
                if !self.paused {
                    self.accept_all(t - LISTENER_BASE, out);
                }
                continue;
            }
            let hup = ev.is_error() || ev.is_read_closed();
            let gone = hup || ev.is_write_closed();
            out.push(Event::Ready {
                token: t as Token,
                read: ev.is_readable() || gone,
                write: ev.is_writable() || gone,
                hup,
            });
        }
        self.events = events;
        Ok(())
    }

    fn listen(&mut self, listeners: &Arc<Listeners>, shard: usize) -> io::Result<ListenId> {
        let id = super::vacant(&mut self.listeners);
        let fd = listeners.sockets[shard].as_raw_fd();
        self.poll.registry().register(
            &mut SourceFd(&fd),
            mio::Token(LISTENER_BASE + id),
            Interest::READABLE,
        )?;
        self.listeners[id] = Some((Arc::clone(listeners), shard));
        // Edge-triggered: connections queued before registration raise no event.
        self.resumed = true;
        Ok(id)
    }

    fn unlisten(&mut self, id: ListenId) {
        if let Some((l, shard)) = self.listeners.get_mut(id).and_then(Option::take) {
            let fd = l.sockets[shard].as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
    }

    fn pause_accepts(&mut self, paused: bool) {
        // Edge-triggered: what queued while paused raised its event already; the
        // next wait takes it.
        self.resumed |= self.paused && !paused;
        self.paused = paused;
    }

    fn watch(&mut self, sock: &Socket, token: Token) -> io::Result<()> {
        let fd = sock.as_raw_fd();
        self.poll.registry().register(
            &mut SourceFd(&fd),
            mio::Token(token as usize),
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    fn retoken(&mut self, sock: &Socket, token: Token) {
        let fd = sock.as_raw_fd();
        let _ = self.poll.registry().reregister(
            &mut SourceFd(&fd),
            mio::Token(token as usize),
            Interest::READABLE | Interest::WRITABLE,
        );
    }

    fn want(&mut self, _sock: &Socket, _want: Want) {}

    fn close(&mut self, sock: Socket, reset: bool) {
        // Closing the descriptor takes it out of the epoll set.
        calls::close(sock, reset);
    }

    fn connect(&mut self, addr: SocketAddr) -> io::Result<Socket> {
        calls::connect(addr)
    }

    fn connect_result(&mut self, sock: &Socket) -> io::Result<bool> {
        calls::connect_result(sock)
    }

    fn recv(&mut self, sock: &Socket, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        sys::recv_into(sock, buf, max)
    }

    fn recv_slice(&mut self, sock: &Socket, buf: &mut [u8]) -> io::Result<usize> {
        std::io::Read::read(&mut &*sock, buf)
    }

    fn send(&mut self, sock: &Socket, data: &[u8], more: bool) -> io::Result<usize> {
        calls::send(sock, data, more)
    }

    fn peek(&mut self, sock: &Socket) -> io::Result<usize> {
        calls::peek(sock)
    }

    fn shutdown(&mut self, sock: &Socket) {
        calls::shutdown(sock);
    }

    fn local_addr(&self, sock: &Socket) -> io::Result<SocketAddr> {
        calls::local_addr(sock)
    }

    fn quiet(&self, _sock: &Socket) -> bool {
        true
    }

    fn splice_in(&mut self, sock: &Socket, pipe: &Pipe, max: usize) -> io::Result<usize> {
        calls::splice_in(sock, pipe, max)
    }

    fn splice_out(&mut self, pipe: &Pipe, sock: &Socket, n: usize) -> io::Result<usize> {
        calls::splice_out(pipe, sock, n)
    }
}
