//! One load-generator thread: a mio loop driving its share of the connections. A
//! connection goes Waiting → Connecting → (Handshaking, with `--tls`) → Sending →
//! Receiving. Beside this file: `tls.rs`, the TLS states and the TLS paths of sending
//! and receiving; `outcome.rs`, how a request ends (response complete, or a failure
//! counted by cause), over either.

mod outcome;
mod tls;

use outcome::Failure;

use super::http::{Body, Chunked};
use super::tally::{Live, Tally};
use super::tls::TlsPlan;
use crate::io::sys;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::{ClientConfig, ClientConnection};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every thread does, shared read-only.
#[derive(Debug)]
pub struct Plan {
    pub target: SocketAddr,
    /// The whole request, head and body.
    pub request: Vec<u8>,
    /// Keep connections open between requests (keepalive and bulk modes).
    pub keep_alive: bool,
    pub source_ips: Vec<IpAddr>,
    /// Open loop: the time between two requests on one connection.
    pub interval: Option<Duration>,
    pub timeout: Duration,
    pub start: Instant,
    pub end: Instant,
    /// `--tls`: what the client offers and trusts.
    pub tls: Option<TlsPlan>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Connecting,
    /// The TCP connection is up, its TLS handshake under way.
    Handshaking,
    Sending,
    Receiving,
}

struct Conn {
    stream: Option<TcpStream>,
    /// With `--tls`, from the end of the TCP connect to the close. Boxed: a plain run's
    /// slots stay small.
    tls: Option<Box<ClientConnection>>,
    state: State,
    /// When the current request was due: latency counts from here (so a late send is
    /// not hidden, as wrk2 does).
    intended: Instant,
    deadline: Instant,
    sent: usize,
    head_buf: Vec<u8>,
    body: Option<(Body, u16, bool)>,
    left: u64,
    chunked: Chunked,
}

/// Bytes read from a socket at once.
const SCRATCH: usize = 256 * 1024;

pub struct Worker {
    plan: Arc<Plan>,
    poll: Poll,
    conns: Vec<Conn>,
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    next_ip: usize,
    scratch: Box<[u8]>,
    /// With `--tls`: this thread's client configuration (its own session store) and
    /// the buffer ciphertext is read into, in large reads, before rustls takes it.
    tls_config: Option<Arc<ClientConfig>>,
    cipher: Box<[u8]>,
    tally: Tally,
    live: Arc<Live>,
}

impl Worker {
    /// A worker for `connections` connections; `first` spreads open-loop start times;
    /// `live` receives its running totals.
    pub fn new(
        plan: Arc<Plan>,
        connections: usize,
        first: usize,
        total: usize,
        live: Arc<Live>,
    ) -> io::Result<Self> {
        let mut due = BinaryHeap::with_capacity(connections);
        for i in 0..connections {
            let offset = match plan.interval {
                Some(iv) => iv.mul_f64((first + i) as f64 / total.max(1) as f64),
                None => Duration::ZERO,
            };
            due.push(Reverse((plan.start + offset, i)));
        }
        let conns = (0..connections)
            .map(|_| Conn {
                stream: None,
                tls: None,
                state: State::Waiting,
                intended: plan.start,
                deadline: plan.start,
                sent: 0,
                head_buf: Vec::new(),
                body: None,
                left: 0,
                chunked: Chunked::default(),
            })
            .collect();
        let tls_config = plan.tls.as_ref().map(|t| t.for_thread(connections));
        let cipher_len = if tls_config.is_some() { SCRATCH } else { 0 };
        Ok(Worker {
            next_ip: first,
            tls_config,
            cipher: vec![0u8; cipher_len].into_boxed_slice(),
            plan,
            poll: Poll::new()?,
            conns,
            due,
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            tally: Tally::new(),
            live,
        })
    }

    pub fn run(mut self) -> Tally {
        let mut events = Events::with_capacity(1024);
        let mut last_sweep = Instant::now();
        loop {
            let now = Instant::now();
            if now >= self.plan.end {
                self.live.publish(&self.tally);
                return self.tally;
            }
            while let Some(&Reverse((at, idx))) = self.due.peek() {
                if at > now {
                    break;
                }
                self.due.pop();
                self.start(idx, at.max(self.plan.start));
            }
            let wait = self
                .due
                .peek()
                .map_or(Duration::from_millis(10), |Reverse((at, _))| {
                    at.saturating_duration_since(now)
                })
                .min(Duration::from_millis(10));
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != ErrorKind::Interrupted {
                    self.live.publish(&self.tally);
                    return self.tally;
                }
            }
            for ev in events.iter() {
                self.on_ready(ev.token().0);
            }
            if last_sweep.elapsed() >= Duration::from_millis(100) {
                last_sweep = Instant::now();
                self.expire(last_sweep);
                self.live.publish(&self.tally);
            }
        }
    }

    /// Begin the request due at `intended` on connection `idx`.
    fn start(&mut self, idx: usize, intended: Instant) {
        let now = Instant::now();
        let c = &mut self.conns[idx];
        c.intended = if self.plan.interval.is_some() {
            intended
        } else {
            now
        };
        c.deadline = now + self.plan.timeout;
        c.sent = 0;
        c.head_buf.clear();
        c.body = None;
        c.chunked = Chunked::default();
        if c.stream.is_some() {
            c.state = State::Sending;
            if c.tls.is_some() {
                self.send_tls(idx);
            } else {
                self.send(idx);
            }
            return;
        }
        match self.connect() {
            Ok(mut s) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                if self
                    .poll
                    .registry()
                    .register(&mut s, Token(idx), interest)
                    .is_err()
                {
                    self.fail(idx, Failure::Other);
                    return;
                }
                let c = &mut self.conns[idx];
                c.stream = Some(s);
                c.state = State::Connecting;
            }
            Err(e) => {
                let f = if e.raw_os_error() == Some(libc::ECONNREFUSED) {
                    Failure::Refused
                } else {
                    Failure::Other
                };
                self.fail(idx, f);
            }
        }
    }

    fn connect(&mut self) -> io::Result<TcpStream> {
        use socket2::{Domain, Protocol, Socket, Type};
        let target = self.plan.target;
        let s = Socket::new(
            Domain::for_address(target),
            Type::STREAM.nonblocking(),
            Some(Protocol::TCP),
        )?;
        s.set_tcp_nodelay(true)?;
        if !self.plan.source_ips.is_empty() {
            let ip = self.plan.source_ips[self.next_ip % self.plan.source_ips.len()];
            self.next_ip += 1;
            // The port is chosen at connect time per destination, so ephemeral ports
            // and TIME_WAIT are spread over every source address.
            sys::set_bind_address_no_port(&s)?;
            s.bind(&SocketAddr::new(ip, 0).into())?;
        }
        match s.connect(&target.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream::from_std(s.into()))
    }

    fn on_ready(&mut self, idx: usize) {
        let Some(c) = self.conns.get(idx) else { return };
        match c.state {
            State::Waiting => {}
            State::Connecting => {
                let s = c.stream.as_ref().expect("connecting stream");
                match (s.take_error(), s.peer_addr()) {
                    (Ok(None), Ok(_)) => {
                        self.tally.connects += 1;
                        if self.tls_config.is_some() {
                            self.begin_tls(idx);
                        } else {
                            self.conns[idx].state = State::Sending;
                            self.send(idx);
                        }
                    }
                    (Ok(None), Err(e)) if e.kind() == ErrorKind::NotConnected => {}
                    (Ok(Some(e)), _) | (Err(e), _) if e.kind() == ErrorKind::ConnectionRefused => {
                        self.fail(idx, Failure::Refused)
                    }
                    _ => self.fail(idx, Failure::Other),
                }
            }
            State::Handshaking => self.handshake(idx),
            State::Sending if c.tls.is_some() => self.send_tls(idx),
            State::Sending => self.send(idx),
            State::Receiving if c.tls.is_some() => self.receive_tls(idx),
            State::Receiving => self.receive(idx),
        }
    }

    fn send(&mut self, idx: usize) {
        let plan = Arc::clone(&self.plan);
        let c = &mut self.conns[idx];
        let s = c.stream.as_ref().expect("sending stream");
        while c.sent < plan.request.len() {
            match (&*s).write(&plan.request[c.sent..]) {
                Ok(n) => {
                    c.sent += n;
                    self.tally.tx_bytes += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.fail(idx, Failure::Reset);
                    return;
                }
            }
        }
        c.state = State::Receiving;
        self.receive(idx);
    }

    fn receive(&mut self, idx: usize) {
        loop {
            let c = &mut self.conns[idx];
            let s = c.stream.as_ref().expect("receiving stream");
            let n = match (&*s).read(&mut self.scratch) {
                Ok(0) => {
                    self.ended(idx);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.fail(idx, Failure::Reset);
                    return;
                }
            };
            self.tally.rx_bytes += n as u64;
            match self.consume(idx, n) {
                Some(true) => {
                    self.finish(idx);
                    return;
                }
                Some(false) => {}
                None => {
                    self.fail(idx, Failure::BadResponse);
                    return;
                }
            }
        }
    }

    fn drop_stream(&mut self, idx: usize) {
        self.conns[idx].tls = None;
        if let Some(mut s) = self.conns[idx].stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
    }

    fn expire(&mut self, now: Instant) {
        for idx in 0..self.conns.len() {
            let c = &self.conns[idx];
            if c.state != State::Waiting && c.deadline <= now {
                self.fail(idx, Failure::Timeout);
            }
        }
    }
}
