//! The immutable state the control thread publishes and the shards read.
//!
//! The control thread builds a new [`Snapshot`] and stores it in the [`Published`]
//! cell; shards compare one generation number per loop turn and load the snapshot
//! only when it changed. Nothing in a snapshot is mutated after publication except
//! counters and the backend addresses' [`Health`] (atomics, and the health thread's
//! record behind a mutex no shard takes).

use crate::balance::Selector;
use crate::config::{ServerConfig, ServiceConfig};
use crate::http::route::Router;
use crate::http::Limits;
use crate::stats::{BackendCounters, PerShard, ServiceCounters};
use arc_swap::ArcSwap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub server: ServerConfig,
    pub services: Vec<Arc<Service>>,
    /// Every listening socket set; `fronts[i]` says what `listeners[i]` serves. Kept
    /// apart from [`Service`] because connections hold their service: a listening
    /// socket must close when the shards stop accepting on it, not when its last
    /// connection ends.
    pub listeners: Vec<Arc<Listeners>>,
    pub fronts: Vec<Front>,
    /// HTTP settings and the router of the shared `[http] listen`.
    pub http: Arc<HttpFront>,
    /// `[https] listen`, when set (and bound).
    pub https: Option<Arc<HttpsFront>>,
    /// The certificates served, for their expiry on `/metrics`.
    pub certificates: Arc<[CertExpiry]>,
    /// The ACME challenges pending (HTTP-01 tokens answered on `[http] listen`).
    pub acme: Arc<crate::acme::Challenges>,
    /// Set on SIGTERM/SIGINT: stop accepting, finish what is established.
    pub draining: bool,
}

/// What a listening socket serves.
#[derive(Debug, Clone)]
pub enum Front {
    /// One service (L4 or HTTP).
    Service(Arc<Service>),
    /// The shared HTTP listener: each request is routed by [`HttpFront::router`].
    Http,
    /// The shared TLS listener: terminated with [`HttpsFront::tls`], then routed as
    /// [`Front::Http`]; or passed through untouched by SNI.
    Https,
}

/// A certificate in use and when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertExpiry {
    pub file: String,
    /// The first name it serves.
    pub name: String,
    pub not_after_unix: i64,
}

/// What `[https] listen` serves.
#[derive(Debug)]
pub struct HttpsFront {
    /// Certificates chosen by SNI, ALPN, versions, session tickets.
    pub tls: Arc<rustls::ServerConfig>,
    /// TCP services that take, untouched, the connections whose ClientHello names
    /// one of their `sni` names.
    pub passthrough: crate::tls::SniRoutes,
    /// `[https] accept_proxy` and `proxy_trusted`.
    pub proxy: crate::config::AcceptProxy,
}

/// The HTTP side of a snapshot.
#[derive(Debug)]
pub struct HttpFront {
    pub limits: Limits,
    /// Routes to indices of [`Snapshot::services`].
    pub router: Router,
    /// Idle backend connections kept per backend per shard.
    pub pool_per_backend: usize,
    /// `[http] accept_proxy` and `proxy_trusted`.
    pub proxy: crate::config::AcceptProxy,
}

impl Snapshot {
    /// The index in `fronts` of the front served by `listeners`, when it still exists.
    /// A scan of the listeners: callers on the request path cache it per generation.
    pub fn front_index(&self, listeners: *const Listeners) -> Option<usize> {
        self.listeners
            .iter()
            .position(|l| std::ptr::eq(Arc::as_ptr(l), listeners))
    }
}

/// One listening service. Connections hold an `Arc<Service>`, so a service replaced
/// by a reload stays alive (with its backends and counters) until its last connection ends.
#[derive(Debug)]
pub struct Service {
    pub config: ServiceConfig,
    /// The address bound (the configured port 0 resolved); none for an HTTP service
    /// reached only through the shared HTTP listener.
    pub local: Option<SocketAddr>,
    /// Sorted by address: the order Maglev and the selectors index.
    pub backends: Box<[Arc<Backend>]>,
    pub selector: Selector,
    pub counters: Arc<PerShard<ServiceCounters>>,
    /// `draining[i]`: backend `i` takes no new connections (a task being killed, or
    /// kept in maintenance by a blue/green deploy).
    pub draining: Box<[bool]>,
    /// `maint[i]`: backend `i` is out because a blue/green deploy keeps it in
    /// maintenance (then also `draining[i]`): MAINT in the stats, and no drain
    /// deadline on its established connections.
    pub maint: Box<[bool]>,
    /// `svnames[i]`: backend `i`'s name in the stats, as Marathon-LB names servers.
    pub svnames: Box<[Box<str>]>,
    /// Each shard's round-robin / least-connections cursor for this service.
    pub cursors: PerShard<AtomicU32>,
    /// Sticky-session server ids, `(id, backend index)` sorted by id.
    pub sticky_ids: Box<[(u64, u16)]>,
    /// `tls = true`: TLS terminated on the service's own port with this.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Service {
    /// The stable sticky-session id of backend `i`: derived from its address alone, so
    /// every host and every restart gives a backend the same id.
    pub fn sticky_id(&self, i: usize) -> u64 {
        sticky_id(self.backends[i].addr)
    }

    /// The backend whose sticky id is `id`.
    pub fn by_sticky_id(&self, id: u64) -> Option<usize> {
        self.sticky_ids
            .binary_search_by_key(&id, |&(k, _)| k)
            .ok()
            .map(|k| usize::from(self.sticky_ids[k].1))
    }
}

/// A backend's sticky-session id: a fixed-seed hash of its address.
pub fn sticky_id(addr: SocketAddr) -> u64 {
    crate::balance::hash::hash_bytes(
        crate::balance::hash::SEED_STICKY,
        addr.to_string().as_bytes(),
    )
}

/// One SO_REUSEPORT socket per shard, shared with older snapshots of the same listen
/// address so a reload never closes a socket that keeps serving.
#[derive(Debug)]
pub struct Listeners {
    /// The address actually bound (the configured port 0 resolved).
    pub local: SocketAddr,
    pub sockets: Box<[TcpListener]>,
    /// Whether the sockets are tuned for HTTP (see `Registry`); changed only by the
    /// control thread, when a service's mode changes.
    pub http: std::sync::atomic::AtomicBool,
}

/// One service's backend, shared by every snapshot in which that service names the
/// address. Its counters are the service's own (HAProxy's server rows are per
/// backend section too); its [`Health`] belongs to the address, shared by every
/// service naming it.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    pub health: Arc<Health>,
    pub counters: PerShard<BackendCounters>,
}

pub use crate::health::Health;

impl Backend {
    pub fn new(addr: SocketAddr, health: Arc<Health>, shards: usize) -> Self {
        Backend {
            addr,
            health,
            counters: PerShard::new(shards),
        }
    }

    /// Whether new connections may go to this backend at `now_ms`: one atomic load
    /// of its address's word (drains, per service, are `Service::draining`).
    #[inline]
    pub fn is_up(&self, now_ms: u64) -> bool {
        self.health.look().up(now_ms)
    }

    /// Avoid this address until `until_ms`; true when it was up at `now_ms`.
    pub fn mark_down(&self, now_ms: u64, until_ms: u64, cause: crate::health::Passive) -> bool {
        self.health.mark_down(now_ms, until_ms, cause)
    }
}

/// The publication cell: an atomically swapped pointer plus its generation number.
#[derive(Debug)]
pub struct Published {
    current: ArcSwap<Snapshot>,
    generation: AtomicU64,
    /// When the newest snapshot was stored (ms on the process clock), for the stats page.
    published_ms: AtomicU64,
    /// Raised when shards are to ask the kernel for their listeners' queues afresh
    /// (see [`Published::rearm_accepts`]).
    rearm: AtomicU64,
}

impl Published {
    pub fn new(first: Snapshot) -> Self {
        let generation = AtomicU64::new(first.generation);
        Published {
            current: ArcSwap::from_pointee(first),
            generation,
            published_ms: AtomicU64::new(clock_ms()),
            rearm: AtomicU64::new(0),
        }
    }

    /// Ask every shard to re-arm its accepts. After a hot upgrade the process
    /// replaced has stopped accepting on sockets this one shares; a wake-up it took
    /// for a connection it then left in the queue (io_uring's accepts wait as
    /// exclusive waiters: one connection wakes one) would otherwise leave that
    /// connection waiting for the next one. A re-armed accept first takes what is
    /// queued.
    pub fn rearm_accepts(&self) {
        self.rearm.fetch_add(1, Ordering::Release);
    }

    /// How many times [`Published::rearm_accepts`] was asked.
    pub fn rearms(&self) -> u64 {
        self.rearm.load(Ordering::Acquire)
    }

    /// Store `next`; shards see it on their next loop turn.
    ///
    /// The generation goes first. A reader of the snapshot itself (the admin port)
    /// must never see it before the shards can: were the generation stored last, a
    /// backend the stats already show draining could still be given new connections
    /// for as long as the publishing thread stays descheduled between the two stores.
    /// This way a shard that sees the new generation before the snapshot loads the
    /// one before, keeps that one's generation, and loads again on its next turn.
    pub fn publish(&self, next: Snapshot) {
        self.begin_publish(next)()
    }

    /// The two stores of [`Published::publish`]: the first now, the second when the
    /// returned closure runs.
    fn begin_publish(&self, next: Snapshot) -> impl FnOnce() + '_ {
        self.generation.store(next.generation, Ordering::SeqCst);
        move || {
            self.current.store(Arc::new(next));
            self.published_ms.store(clock_ms(), Ordering::Relaxed);
        }
    }

    /// [`Published::publish`] with the publishing thread stopped between its stores.
    #[cfg(test)]
    pub(crate) fn publish_in_halves(&self, next: Snapshot) -> impl FnOnce() + '_ {
        self.begin_publish(next)
    }

    /// When the newest snapshot was published, in ms on the process clock.
    pub fn published_ms(&self) -> u64 {
        self.published_ms.load(Ordering::Relaxed)
    }

    /// The generation of the newest snapshot: one atomic load, checked every loop turn.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }
}

/// Milliseconds since the process clock started: the clock shared by every thread
/// (shards mark backends down on it; the admin port reads the marks).
pub fn clock_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// A server's name as Marathon-LB writes it in HAProxy's config for a backend reached
/// at the agent's own address: the address with `_` for `.` and `:`.
pub fn server_name(addr: SocketAddr) -> String {
    addr.to_string()
        .replace(['.', ':'], "_")
        .replace(['[', ']'], "")
}
