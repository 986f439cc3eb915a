//! One load-generator thread: a mio loop driving its share of the connections.

use super::http::{parse_head, Body, Chunked, HeadError};
use crate::io::sys;
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
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
}

/// What one thread measured.
#[derive(Debug)]
pub struct Tally {
    pub requests: u64,
    pub connects: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub refused: u64,
    pub reset: u64,
    pub timeout: u64,
    pub bad_response: u64,
    pub non_2xx: u64,
    pub other: u64,
    /// Request latency in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            requests: 0,
            connects: 0,
            rx_bytes: 0,
            tx_bytes: 0,
            refused: 0,
            reset: 0,
            timeout: 0,
            bad_response: 0,
            non_2xx: 0,
            other: 0,
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
        }
    }

    pub fn merge(&mut self, o: &Tally) {
        self.requests += o.requests;
        self.connects += o.connects;
        self.rx_bytes += o.rx_bytes;
        self.tx_bytes += o.tx_bytes;
        self.refused += o.refused;
        self.reset += o.reset;
        self.timeout += o.timeout;
        self.bad_response += o.bad_response;
        self.non_2xx += o.non_2xx;
        self.other += o.other;
        self.latency_us.add(&o.latency_us).expect("same bounds");
    }
}

/// One thread's running totals, published at its 100 ms sweep (not per request: no
/// atomic on the hot path) for the progress line.
#[derive(Debug, Default)]
pub struct Live {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
}

impl Live {
    fn publish(&self, t: &Tally) {
        let errors = t.refused + t.reset + t.timeout + t.bad_response + t.non_2xx + t.other;
        self.requests.store(t.requests, Ordering::Relaxed);
        self.errors.store(errors, Ordering::Relaxed);
    }
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Connecting,
    Sending,
    Receiving,
}

#[derive(Debug, Clone, Copy)]
enum Failure {
    Refused,
    Reset,
    Timeout,
    BadResponse,
    Other,
}

struct Conn {
    stream: Option<TcpStream>,
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

pub struct Worker {
    plan: Arc<Plan>,
    poll: Poll,
    conns: Vec<Conn>,
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    next_ip: usize,
    scratch: Box<[u8]>,
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
        Ok(Worker {
            next_ip: first,
            plan,
            poll: Poll::new()?,
            conns,
            due,
            scratch: vec![0u8; 256 * 1024].into_boxed_slice(),
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
            self.send(idx);
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
                        self.conns[idx].state = State::Sending;
                        self.send(idx);
                    }
                    (Ok(None), Err(e)) if e.kind() == ErrorKind::NotConnected => {}
                    (Ok(Some(e)), _) | (Err(e), _) if e.kind() == ErrorKind::ConnectionRefused => {
                        self.fail(idx, Failure::Refused)
                    }
                    _ => self.fail(idx, Failure::Other),
                }
            }
            State::Sending => self.send(idx),
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
                    let complete = matches!(c.body, Some((Body::UntilClose, _, _)));
                    if complete {
                        self.finish(idx);
                    } else if c.body.is_none() && c.head_buf.is_empty() {
                        self.fail(idx, Failure::Reset);
                    } else {
                        self.fail(idx, Failure::BadResponse);
                    }
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

    /// Account for `n` fresh bytes in the scratch buffer: `Some(true)` when the
    /// response is complete, `None` when it is malformed.
    fn consume(&mut self, idx: usize, n: usize) -> Option<bool> {
        let c = &mut self.conns[idx];
        let mut bytes = &self.scratch[..n];
        if c.body.is_none() {
            c.head_buf.extend_from_slice(bytes);
            let head = match parse_head(&c.head_buf, false) {
                Ok(h) => h,
                Err(HeadError::Partial) if c.head_buf.len() < 64 * 1024 => return Some(false),
                Err(_) => return None,
            };
            let consumed_before = c.head_buf.len() - n;
            bytes = &self.scratch[head.len - consumed_before..n];
            c.body = Some((head.body, head.status, head.keep_alive));
            if let Body::Length(len) = head.body {
                c.left = len;
            }
            c.head_buf.clear();
        }
        let (body, _, _) = c.body.expect("head parsed");
        match body {
            Body::Length(_) => {
                c.left = c.left.saturating_sub(bytes.len() as u64);
                Some(c.left == 0)
            }
            Body::Chunked => {
                c.chunked.feed(bytes)?;
                Some(c.chunked.done())
            }
            Body::UntilClose => Some(false),
        }
    }

    fn finish(&mut self, idx: usize) {
        let now = Instant::now();
        let c = &mut self.conns[idx];
        let (_, status, keep_alive) = c.body.expect("complete response");
        self.tally.requests += 1;
        if !(200..300).contains(&status) {
            self.tally.non_2xx += 1;
        }
        let us = now.saturating_duration_since(c.intended).as_micros() as u64;
        let _ = self.tally.latency_us.record(us.clamp(1, 60_000_000));
        if !(self.plan.keep_alive && keep_alive) {
            self.drop_stream(idx);
        }
        self.schedule_next(idx, now);
    }

    fn fail(&mut self, idx: usize, f: Failure) {
        match f {
            Failure::Refused => self.tally.refused += 1,
            Failure::Reset => self.tally.reset += 1,
            Failure::Timeout => self.tally.timeout += 1,
            Failure::BadResponse => self.tally.bad_response += 1,
            Failure::Other => self.tally.other += 1,
        }
        self.drop_stream(idx);
        self.schedule_next(idx, Instant::now());
    }

    fn drop_stream(&mut self, idx: usize) {
        if let Some(mut s) = self.conns[idx].stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
    }

    fn schedule_next(&mut self, idx: usize, now: Instant) {
        let c = &mut self.conns[idx];
        c.state = State::Waiting;
        let at = match self.plan.interval {
            Some(iv) => c.intended + iv,
            None => now,
        };
        self.due.push(Reverse((at, idx)));
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
