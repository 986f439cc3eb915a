//! The event-loop-independent half of a proxied connection: which service and backend
//! it belongs to, and the bookkeeping (counters, down-marks, idleness) every shard does
//! the same way whether it runs io_uring or epoll.

use super::ShardCtx;
use crate::balance::Attempt;
use crate::snapshot::Service;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// How long accepting pauses after running out of file descriptors.
const ACCEPT_PAUSE_MS: u64 = 100;
/// Refusals at `max_connections`, and accept pauses, are logged at most this often
/// per shard (each line counting what it stands for; the counters stay exact).
pub const QUIET_MS: u64 = 10_000;

/// A connection's place in the balancer.
pub struct Link {
    /// The service as of the snapshot the connection started under.
    pub service: Arc<Service>,
    pub client: SocketAddr,
    /// The address the client connected to, as a PROXY header from the balancer in
    /// front said (`None`: the socket's own, looked up when a header is sent on).
    pub local: Option<SocketAddr>,
    /// Index of the chosen backend in `service.backends`.
    pub backend: usize,
    pub attempt: Attempt,
    pub connected: bool,
    pub last_active_ms: u64,
    /// When the current backend was picked: connect latency runs from here.
    pub picked_at: std::time::Instant,
}

/// Which way bytes moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client → backend.
    Up,
    /// Backend → client.
    Down,
}

impl ShardCtx {
    /// Admit a new client of `service`, or refuse it (counted) when this shard already
    /// holds its share of `max_connections`.
    pub fn admit(&self, service: &Arc<Service>, client: SocketAddr, live: usize) -> Option<Link> {
        let counters = service.counters.shard(self.id);
        if live >= self.conn_limit {
            self.refused_at_limit(Some(service));
            return None;
        }
        counters.accepted.inc();
        counters.active.inc();
        self.stats().connections.inc();
        Some(Link {
            service: Arc::clone(service),
            client,
            local: None,
            backend: 0,
            attempt: Attempt::default(),
            connected: false,
            last_active_ms: self.now_ms,
            picked_at: std::time::Instant::now(),
        })
    }

    /// A client of `[https] listen` (admitted there) passed through to `service` by
    /// the server name of its ClientHello: now the service's.
    pub fn passthrough(&self, service: &Arc<Service>, client: SocketAddr) -> Link {
        let counters = service.counters.shard(self.id);
        counters.accepted.inc();
        counters.active.inc();
        self.stats().tls.passthrough.inc();
        Link {
            service: Arc::clone(service),
            client,
            local: None,
            backend: 0,
            attempt: Attempt::default(),
            connected: false,
            last_active_ms: self.now_ms,
            picked_at: std::time::Instant::now(),
        }
    }

    /// Admit a new HTTP client that came through `front`, or refuse it when this shard
    /// holds its share of `max_connections`.
    pub fn admit_http(&self, front: &crate::snapshot::Front, live: usize) -> bool {
        if live >= self.conn_limit {
            let service = match front {
                crate::snapshot::Front::Service(s) => Some(&**s),
                crate::snapshot::Front::Http | crate::snapshot::Front::Https => None,
            };
            self.refused_at_limit(service);
            return false;
        }
        self.stats().connections.inc();
        true
    }

    /// A client refused at this shard's share of `max_connections`: counted on the
    /// shard, and on the port's service when it has one (the shared HTTP listener has
    /// none); logged at most every [`QUIET_MS`].
    fn refused_at_limit(&self, service: Option<&Service>) {
        self.stats().refused_limit.inc();
        if let Some(s) = service {
            s.counters.shard(self.id).refused_limit.inc();
        }
        if self.refusal_log.hit(self.now_ms, QUIET_MS).is_some() {
            tracing::warn!(
                shard = self.id,
                limit = self.conn_limit,
                refused = self.stats().refused_limit.get(),
                "max_connections reached: new clients refused"
            );
        }
    }

    /// The next backend to connect `link` to; `None` (counted) when none is left.
    pub fn next_backend(&self, link: &mut Link) -> Option<SocketAddr> {
        let retry = link.attempt.tries() > 0;
        match self.pick(&link.service, link.client, &mut link.attempt) {
            Some(b) => {
                if retry {
                    link.service.counters.shard(self.id).retries.inc();
                }
                link.backend = b;
                link.picked_at = std::time::Instant::now();
                Some(link.service.backends[b].addr)
            }
            None => {
                link.service.counters.shard(self.id).no_backend.inc();
                tracing::debug!(client = %link.client, "no backend left");
                None
            }
        }
    }

    /// A connect to the current backend failed: count it and mark the backend down.
    pub fn connect_failed(&self, link: &Link, timed_out: bool) {
        let backend = &link.service.backends[link.backend];
        let c = backend.counters.shard(self.id);
        c.connect_errors.inc();
        if timed_out {
            c.connect_timeouts.inc();
        }
        tracing::debug!(backend = %backend.addr, timed_out, "backend connect failed, marked down");
        self.mark_down(&link.service, link.backend, timed_out);
    }

    pub fn connected(&self, link: &mut Link) {
        link.connected = true;
        let c = link.service.backends[link.backend].counters.shard(self.id);
        c.connections.inc();
        c.active.inc();
        c.connect_latency
            .record(link.picked_at.elapsed().as_micros() as u64);
    }

    /// `n` bytes were forwarded in direction `dir`.
    pub fn moved(&self, link: &mut Link, dir: Direction, n: u64) {
        link.last_active_ms = self.now_ms;
        let b = link.service.backends[link.backend].counters.shard(self.id);
        let s = link.service.counters.shard(self.id);
        match dir {
            Direction::Up => {
                b.bytes_in.add(n);
                s.bytes_in.add(n);
            }
            Direction::Down => {
                b.bytes_out.add(n);
                s.bytes_out.add(n);
            }
        }
    }

    /// The connection ended.
    pub fn closed(&self, link: &Link) {
        self.stats().connections.dec();
        self.left(&link.service, link.backend, link.connected);
    }

    /// A client of `service` is gone: it is no longer active there, nor on `backend`
    /// when it was `connected` to it.
    pub fn left(&self, service: &Service, backend: usize, connected: bool) {
        service.counters.shard(self.id).active.dec();
        if connected {
            service.backends[backend]
                .counters
                .shard(self.id)
                .active
                .dec();
        }
    }

    /// Connected to a backend whose drain deadline passed (a task Marathon killed or
    /// removed, after `drain_timeout_ms`); counted.
    pub fn drained(&self, link: &Link) -> bool {
        if !link.connected {
            return false;
        }
        let deadline = link.service.backends[link.backend]
            .health
            .drain_deadline_ms
            .load(Relaxed);
        if self.now_ms >= deadline {
            self.stats().drain_timeouts.inc();
            return true;
        }
        false
    }

    /// Count a failed accept; on running out of descriptors or memory, pause accepting
    /// for a moment rather than spin on a queue that cannot be drained (connections wait
    /// in the backlog meanwhile).
    pub fn accept_failed(&self, errno: i32) {
        // EINVAL while draining: the control thread stopped the socket listening
        // (after publishing the draining snapshot, which this shard has seen).
        if errno == libc::ECANCELED || (errno == libc::EINVAL && self.draining_since_ms.is_some()) {
            return;
        }
        self.stats().accept_errors.inc();
        self.pause_if_exhausted(errno);
    }

    /// A backend socket could not be created. That is this host's fault, not the
    /// backend's: the backend is not marked down, the client is closed (counted as an
    /// accept error) and, when descriptors or memory ran out, accepting pauses — else a
    /// shard that accepts the last descriptor would accept and close forever.
    pub fn socket_failed(&self, errno: i32) {
        tracing::debug!(errno, "cannot create backend socket");
        self.stats().accept_errors.inc();
        self.pause_if_exhausted(errno);
    }

    fn pause_if_exhausted(&self, errno: i32) {
        if !matches!(
            errno,
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
        ) {
            return;
        }
        self.stats().accept_paused.inc();
        // A pause extended before it ended is not a new one.
        let pauses = match self.accept_paused_until_ms.get() {
            None => self.pause_log.hit(self.now_ms, QUIET_MS),
            Some(_) => None,
        };
        if let Some(pauses) = pauses {
            tracing::warn!(
                shard = self.id,
                errno,
                pauses,
                "accept paused: out of descriptors or memory"
            );
        }
        self.accept_paused_until_ms
            .set(Some(self.now_ms + ACCEPT_PAUSE_MS));
    }

    pub fn accept_paused(&self) -> bool {
        self.accept_paused_until_ms.get().is_some()
    }

    /// When the accept pause ends.
    pub fn accept_paused_until(&self) -> Option<u64> {
        self.accept_paused_until_ms.get()
    }

    /// True once, when a pause ends: the caller re-arms its accepts.
    pub fn accept_resumes(&mut self) -> bool {
        if self
            .accept_paused_until_ms
            .get()
            .is_some_and(|t| self.now_ms >= t)
        {
            self.accept_paused_until_ms.set(None);
            return true;
        }
        false
    }
}
