//! What outlives one snapshot: listening sockets, backend states and counters, keyed so
//! that a reload re-uses them. Re-using a listening socket is what lets a reload keep
//! every queued and established connection.
//!
//! Counters are keyed by service name, a backend's by (service name, address): two
//! services naming one address count their traffic apart. A backend address's
//! [`Health`] (down-marks, drain deadline) is keyed by the address alone and shared.

use crate::balance::Selector;
use crate::config::{self, Config, Mode};
use crate::http::route::Router;
use crate::io::sys;
use crate::snapshot::{
    Backend, Front, Health, HttpFront, HttpsFront, Listeners, Service, Snapshot,
};
use crate::stats::{PerShard, ServiceCounters};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Listen backlog asked for; the kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 65_535;

/// What identifies a listening socket across reloads: its configured address, except
/// that port 0 gets a port of its own for each service (kept by name) and one for the
/// shared HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ListenKey {
    Addr(SocketAddr),
    /// A service's port 0, by the service's name.
    Ephemeral(String, IpAddr),
    /// `[http] listen` on port 0.
    HttpEphemeral(IpAddr),
    /// `[https] listen` on port 0.
    HttpsEphemeral(IpAddr),
}

/// How `[http] listen` is named in errors and logs.
const HTTP_FRONT: &str = "[http] listen";
const HTTPS_FRONT: &str = "[https] listen";

impl ListenKey {
    fn of(svc: &crate::config::ServiceConfig) -> Option<ListenKey> {
        let addr = svc.listen?;
        Some(if addr.port() == 0 {
            ListenKey::Ephemeral(svc.name.clone(), addr.ip())
        } else {
            ListenKey::Addr(addr)
        })
    }

    fn http(addr: SocketAddr) -> ListenKey {
        if addr.port() == 0 {
            ListenKey::HttpEphemeral(addr.ip())
        } else {
            ListenKey::Addr(addr)
        }
    }

    fn https(addr: SocketAddr) -> ListenKey {
        if addr.port() == 0 {
            ListenKey::HttpsEphemeral(addr.ip())
        } else {
            ListenKey::Addr(addr)
        }
    }
}

#[derive(Debug)]
pub struct Registry {
    shards: usize,
    generation: u64,
    listeners: HashMap<ListenKey, Arc<Listeners>>,
    health: HashMap<SocketAddr, Arc<Health>>,
    services: HashMap<String, Kept>,
    tls: super::tls::TlsRegistry,
    /// When a slow start in the last snapshot built reaches its next step.
    ramp_due_ms: Option<u64>,
}

/// What a service keeps across reloads: its counters and its backends' (by address).
#[derive(Debug)]
struct Kept {
    counters: Arc<PerShard<ServiceCounters>>,
    backends: HashMap<SocketAddr, Arc<Backend>>,
}

impl Registry {
    pub fn new(shards: usize) -> Self {
        Registry {
            shards,
            generation: 0,
            listeners: HashMap::new(),
            health: HashMap::new(),
            services: HashMap::new(),
            tls: super::tls::TlsRegistry::default(),
            ramp_due_ms: None,
        }
    }

    /// Whether a slow start reached its next step since the last build: time to build
    /// again.
    pub fn ramp_due(&self, now_ms: u64) -> bool {
        self.ramp_due_ms.is_some_and(|t| now_ms >= t)
    }

    /// The selector of `cfg`, whose backends are `backends`: while some backend is in
    /// its slow start, at that step's weight (see `health::ramp`).
    fn selector(
        &mut self,
        cfg: &crate::config::ServiceConfig,
        backends: &[Arc<Backend>],
        now: u64,
    ) -> Selector {
        let build = |list: &[crate::config::BackendConfig]| {
            Selector::build(list, cfg.balance, cfg.hash, cfg.table_size)
        };
        let slowstart = cfg.health.as_ref().map_or(0, |h| h.slowstart_ms);
        if slowstart == 0 {
            return build(&cfg.backends);
        }
        use crate::health::ramp;
        let mut steps = Vec::with_capacity(backends.len());
        for b in backends {
            let since = b.health.up_since_ms.load(Ordering::Relaxed);
            steps.push(ramp::step(now, since, slowstart));
            if let Some(t) = ramp::next_step_ms(now, since, slowstart) {
                self.ramp_due_ms = Some(self.ramp_due_ms.map_or(t, |d| d.min(t)));
            }
        }
        let configured: Vec<u32> = cfg.backends.iter().map(|b| b.weight).collect();
        match ramp::weights(&configured, &steps) {
            None => build(&cfg.backends),
            Some(w) => {
                let list: Vec<_> = cfg
                    .backends
                    .iter()
                    .zip(w)
                    .map(|(b, weight)| crate::config::BackendConfig { weight, ..*b })
                    .collect();
                build(&list)
            }
        }
    }

    /// Build the snapshot for `config`. Either every new listening socket binds and the
    /// registry moves to the new config, or nothing changes — not even the options of
    /// the sockets in use — and the errors are returned.
    pub fn build(&mut self, config: &Config) -> Result<Snapshot, Vec<String>> {
        let (snapshot, _) = self.build_with(config, true)?;
        Ok(snapshot)
    }

    /// Build, leaving out (and naming) the services whose address cannot be bound
    /// instead of failing: for services that come from Marathon, where one app's bad
    /// port must not hold back every other change.
    pub fn build_lenient(&mut self, config: &Config) -> (Snapshot, Vec<String>) {
        self.build_with(config, false)
            .expect("lenient builds do not fail")
    }

    fn build_with(
        &mut self,
        config: &Config,
        strict: bool,
    ) -> Result<(Snapshot, Vec<String>), Vec<String>> {
        let mut fresh = HashMap::new();
        // Sockets in use now change only once the new configuration is accepted.
        let mut retune = Vec::new();
        let mut errors = Vec::new();
        // Services left out for an address that does not bind, by name; and whether the
        // shared HTTP listener is.
        let mut unbound = HashSet::new();
        // The shared fronts left out: `[http] listen`, `[https] listen`.
        let mut fronts_unbound: HashSet<&str> = HashSet::new();
        let wanted = config
            .services
            .iter()
            .filter_map(|s| {
                let http = s.mode == Mode::Http;
                Some((Some(s.name.as_str()), ListenKey::of(s)?, s.listen?, http))
            })
            .chain(
                config
                    .http
                    .listen
                    .map(|a| (None, ListenKey::http(a), a, true)),
            )
            .chain(config.https.map(|a| (None, ListenKey::https(a), a, true)));
        for (service, key, addr, http) in wanted {
            let name = service.unwrap_or(match key {
                ListenKey::HttpsEphemeral(_) => HTTPS_FRONT,
                _ if Some(addr) == config.https => HTTPS_FRONT,
                _ => HTTP_FRONT,
            });
            if let Some(l) = self.listeners.get(&key) {
                retune.push((Arc::clone(l), http, name, addr));
                continue;
            }
            // An address sluice holds already (or one overlapping it, as a reload moving
            // a port from a wildcard to one address does) would fail the probe.
            let ours =
                |key: &ListenKey| matches!(key, ListenKey::Addr(a) if config::overlap(*a, addr));
            let held = self.listeners.keys().chain(fresh.keys()).any(ours);
            let bound = if held { Ok(()) } else { probe(addr) };
            match bound
                .and_then(|()| bind_all(addr, self.shards))
                .and_then(|l| tune(&l, http).map(|()| l))
            {
                Ok(l) => {
                    fresh.insert(key, Arc::new(l));
                }
                Err(e) => {
                    let at = config
                        .origin
                        .listen(name)
                        .map_or_else(String::new, |at| format!("{at}: "));
                    errors.push(format!("{at}{name}: cannot listen on {addr}: {e}"));
                    match service {
                        Some(s) => {
                            unbound.insert(s.to_owned());
                        }
                        None => {
                            fronts_unbound.insert(name);
                        }
                    }
                }
            }
        }
        let (service_tls, https_tls) = self.tls_configs(
            config,
            strict,
            &mut unbound,
            &mut fronts_unbound,
            &mut errors,
        );
        if strict && !errors.is_empty() {
            return Err(errors);
        }
        self.tls.sweep();
        for (l, http, name, addr) in retune {
            if let Err(e) = tune(&l, http) {
                tracing::warn!(service = name, %addr, error = %e, "cannot tune listening socket");
            }
        }
        self.listeners.extend(fresh);
        self.generation += 1;
        self.ramp_due_ms = None;
        let now = crate::snapshot::clock_ms();
        let mut services = Vec::with_capacity(config.services.len());
        let mut listeners = Vec::with_capacity(config.services.len() + 1);
        let mut fronts = Vec::with_capacity(config.services.len() + 1);
        for svc in config
            .services
            .iter()
            .filter(|s| !unbound.contains(&s.name))
        {
            let mut cfg = svc.clone();
            cfg.backends.sort_by_key(|b| b.addr);
            let shards = self.shards;
            let kept = self
                .services
                .entry(cfg.name.clone())
                .or_insert_with(|| Kept {
                    counters: Arc::new(PerShard::new(shards)),
                    backends: HashMap::new(),
                });
            let backends: Box<[Arc<Backend>]> = cfg
                .backends
                .iter()
                .map(|b| {
                    let health = self.health.entry(b.addr).or_default();
                    let backend = kept.backends.entry(b.addr).or_insert_with(|| {
                        Arc::new(Backend::new(b.addr, Arc::clone(health), shards))
                    });
                    debug_assert!(Arc::ptr_eq(&backend.health, health));
                    Arc::clone(backend)
                })
                .collect();
            let counters = Arc::clone(&kept.counters);
            let selector = self.selector(&cfg, &backends, now);
            let l = ListenKey::of(svc).map(|k| Arc::clone(&self.listeners[&k]));
            let draining = cfg
                .backends
                .iter()
                .map(|b| cfg.draining.contains(&b.addr))
                .collect();
            let mut sticky_ids: Vec<(u64, u16)> = backends
                .iter()
                .enumerate()
                .map(|(i, b)| (crate::snapshot::sticky_id(b.addr), i as u16))
                .collect();
            sticky_ids.sort_unstable();
            let service = Arc::new(Service {
                local: l.as_ref().map(|l| l.local),
                config: cfg,
                backends,
                selector,
                counters,
                draining,
                cursors: PerShard::new(self.shards),
                sticky_ids: sticky_ids.into(),
                tls: service_tls.get(&svc.name).cloned(),
            });
            if let Some(l) = l {
                listeners.push(l);
                fronts.push(Front::Service(Arc::clone(&service)));
            }
            services.push(service);
        }
        if let Some(addr) = config
            .http
            .listen
            .filter(|_| !fronts_unbound.contains(HTTP_FRONT))
        {
            listeners.push(Arc::clone(&self.listeners[&ListenKey::http(addr)]));
            fronts.push(Front::Http);
        }
        let https = config.https.zip(https_tls).map(|(addr, tls)| {
            listeners.push(Arc::clone(&self.listeners[&ListenKey::https(addr)]));
            fronts.push(Front::Https);
            let passthrough = crate::tls::SniRoutes::build(
                services
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.config.mode == Mode::Tcp)
                    .map(|(i, s)| (i, s.config.tls.sni.as_slice())),
            );
            Arc::new(HttpsFront {
                tls,
                passthrough,
                proxy: config.https_proxy.clone(),
            })
        });
        let router = Router::build(
            services
                .iter()
                .enumerate()
                .filter(|(_, s)| s.config.mode == Mode::Http)
                .map(|(i, s)| {
                    let h = &s.config.http;
                    (i, h.vhosts.as_slice(), h.path_prefix.as_deref())
                }),
        );
        let http = Arc::new(HttpFront {
            limits: crate::http::Limits {
                max_header_bytes: config.http.max_header_bytes,
                header_timeout_ms: config.http.header_timeout_ms,
                keepalive_timeout_ms: config.http.keepalive_timeout_ms,
                backend_timeout_ms: config.http.backend_timeout_ms,
                forwarded_headers: config.http.forwarded_headers,
            },
            router,
            pool_per_backend: config.http.pool_per_backend,
            proxy: config.http.accept_proxy.clone(),
        });
        // Forget what the new config no longer names; old snapshots and live
        // connections keep their own references until they end.
        // (Sets first: a thousand-app cluster has thousands of services and backends.)
        let keys: HashSet<ListenKey> = config
            .services
            .iter()
            .filter_map(ListenKey::of)
            .chain(config.http.listen.map(ListenKey::http))
            .chain(config.https.map(ListenKey::https))
            .collect();
        let addrs: HashSet<SocketAddr> = config
            .services
            .iter()
            .flat_map(|s| s.backends.iter().map(|b| b.addr))
            .collect();
        let named: HashMap<&str, &crate::config::ServiceConfig> = config
            .services
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        self.listeners.retain(|key, _| keys.contains(key));
        self.health.retain(|addr, _| addrs.contains(addr));
        self.services.retain(|name, kept| {
            let Some(svc) = named.get(name.as_str()) else {
                return false;
            };
            let own: HashSet<SocketAddr> = svc.backends.iter().map(|b| b.addr).collect();
            kept.backends.retain(|addr, _| own.contains(addr));
            true
        });
        let snapshot = Snapshot {
            generation: self.generation,
            server: config.server.clone(),
            services,
            listeners,
            fronts,
            http,
            https,
            certificates: self.tls.in_use().into(),
            draining: false,
        };
        Ok((snapshot, errors))
    }

    /// The TLS configuration of each `tls = true` service (by name) and of `[https]
    /// listen`. A service whose certificates cannot be used is left out (as one whose
    /// port cannot be bound), and so is `[https] listen`; with `strict` the errors
    /// refuse the whole build, else certificates read before stay in use.
    #[allow(clippy::type_complexity)]
    fn tls_configs(
        &mut self,
        config: &Config,
        strict: bool,
        unbound: &mut HashSet<String>,
        fronts_unbound: &mut HashSet<&str>,
        errors: &mut Vec<String>,
    ) -> (
        HashMap<String, Arc<rustls::ServerConfig>>,
        Option<Arc<rustls::ServerConfig>>,
    ) {
        self.tls.begin();
        let mut of_service = HashMap::new();
        let terminating: Vec<_> = config
            .services
            .iter()
            .filter(|s| s.tls.terminate && !unbound.contains(&s.name))
            .collect();
        for svc in terminating {
            let (paths, owner) = match svc.tls.certificates.is_empty() {
                true => (&config.tls.certificates, config::TLS_CERTIFICATES),
                false => (&svc.tls.certificates, svc.name.as_str()),
            };
            match self.tls.config(paths, &config.tls, !strict) {
                Ok(c) => {
                    of_service.insert(svc.name.clone(), c);
                }
                Err(e) => {
                    let at = at_certificates(config, owner);
                    errors.push(format!("{at}service {:?}: {e}", svc.name));
                    unbound.insert(svc.name.clone());
                }
            }
        }
        let https = config
            .https
            .filter(|_| !fronts_unbound.contains(HTTPS_FRONT));
        let https = https.and_then(|_| match self.https_config(&config.tls, strict) {
            Ok(c) => Some(c),
            Err(e) => {
                let at = at_certificates(config, config::TLS_CERTIFICATES);
                errors.push(format!("{at}{HTTPS_FRONT}: {e}"));
                fronts_unbound.insert(HTTPS_FRONT);
                None
            }
        });
        (of_service, https)
    }

    /// `[https] listen`'s configuration: `[tls] certificates` and those Marathon labels
    /// add. When the labels' cannot be used (and the build is lenient), the file's
    /// alone: one app's bad certificate does not take the TLS port down.
    fn https_config(
        &mut self,
        tls: &config::TlsConfig,
        strict: bool,
    ) -> Result<Arc<rustls::ServerConfig>, String> {
        let mut paths = tls.certificates.clone();
        paths.extend(tls.from_marathon.iter().cloned());
        match self.tls.config(&paths, tls, !strict) {
            Err(e) if !strict && !tls.from_marathon.is_empty() => {
                tracing::error!("{e}; [https] listen serves [tls] certificates alone");
                self.tls.config(&tls.certificates, tls, false)
            }
            r => r,
        }
    }

    /// Whether a certificate file in use changed since it was read: the caller builds
    /// again (a reload of the certificates alone).
    pub fn certificates_changed(&self) -> bool {
        self.tls.stale()
    }

    /// A snapshot that tells every shard to stop accepting; the registry lets go of
    /// every listening socket so the ports close once the shards drop theirs.
    pub fn draining(&mut self, last: &Snapshot) -> Snapshot {
        self.listeners.clear();
        self.generation += 1;
        Snapshot {
            generation: self.generation,
            server: last.server.clone(),
            services: Vec::new(),
            listeners: Vec::new(),
            fronts: Vec::new(),
            http: Arc::clone(&last.http),
            https: None,
            certificates: Arc::clone(&last.certificates),
            draining: true,
        }
    }
}

/// One SO_REUSEPORT listening socket per shard on `addr`. Port 0 is resolved by the
/// first bind and the others join it.
fn bind_all(addr: SocketAddr, shards: usize) -> std::io::Result<Listeners> {
    let mut sockets = Vec::with_capacity(shards);
    let mut local = addr;
    for _ in 0..shards {
        let l = bind_one(local)?;
        local = l.local_addr()?;
        sockets.push(l);
    }
    Ok(Listeners {
        local,
        sockets: sockets.into_boxed_slice(),
        http: AtomicBool::new(false),
    })
}

/// Tune `l`'s sockets for HTTP, or back to plain TCP, when that changed. For HTTP:
/// - `TCP_DEFER_ACCEPT`: a connection is accepted when its first bytes arrive (an
///   HTTP client always speaks first), so accepting and reading the request head take
///   one wake-up, and a client that connects and says nothing costs the kernel a
///   half-open entry rather than a connection. After a second the kernel hands over
///   the silent ones too, and `header_timeout_ms` deals with them.
/// - `TCP_QUICKACK` off: the response acknowledges the request, instead of a
///   segment of its own. Set after `listen`, which resets it; accepted sockets
///   inherit it.
///
/// Neither suits L4, where the server may speak first and every segment is relayed.
fn tune(l: &Listeners, http: bool) -> std::io::Result<()> {
    if l.http.load(Ordering::Relaxed) == http {
        return Ok(());
    }
    for s in l.sockets.iter() {
        sys::set_tcp_defer_accept(s, u32::from(http))?;
        socket2::SockRef::from(s).set_tcp_quickack(!http)?;
    }
    l.http.store(http, Ordering::Relaxed);
    Ok(())
}

/// Fails with `AddrInUse` when another process listens on `addr` (port 0 never does).
/// The per-shard sockets are bound with `SO_REUSEPORT`, which would silently join
/// another sluice's sockets on the same address and let the kernel split the clients
/// between the two; this bind, without it, fails as any other program's would.
/// `SO_REUSEADDR` lets a port whose only sockets are in TIME_WAIT pass.
fn probe(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            std::io::Error::new(e.kind(), "address already in use (by another process)")
        } else {
            e
        }
    })
}

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    // Accepted sockets inherit TCP_NODELAY: one system call here instead of one per
    // connection.
    s.set_tcp_nodelay(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

/// `file:line:column: ` of the certificate list of `owner`, when the file wrote one:
/// where to look when its certificates cannot be used.
fn at_certificates(config: &Config, owner: &str) -> String {
    config
        .origin
        .certificates(owner)
        .map_or_else(String::new, |at| format!("{at}: "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(TCP_DEFER_ACCEPT, TCP_QUICKACK)` of each socket of the snapshot's one listener.
    fn options(snap: &Snapshot) -> Vec<(i32, i32)> {
        assert_eq!(snap.listeners.len(), 1);
        snap.listeners[0]
            .sockets
            .iter()
            .map(|s| {
                let defer = sys::tcp_defer_accept(s).expect("TCP_DEFER_ACCEPT");
                let quickack = socket2::SockRef::from(s)
                    .tcp_quickack()
                    .expect("TCP_QUICKACK");
                (defer, i32::from(quickack))
            })
            .collect()
    }

    fn config(mode: &str) -> Config {
        crate::config::parse(&format!(
            "[[service]]\nname = \"web\"\nmode = \"{mode}\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"127.0.0.1:9\"]\n"
        ))
        .expect("valid config")
    }

    /// A backend that came up with a slow start is built at a quarter of the weight
    /// (the others scaled to keep their shares), and the registry says when the next
    /// step is due.
    #[test]
    fn a_slow_start_builds_at_reduced_weight_until_the_ramp_ends() {
        let cfg = crate::config::parse(
            "[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
             backends = [\"127.0.0.1:9\", { addr = \"127.0.0.1:10\", weight = 2 }]\n\
             [service.health]\nslowstart_ms = 3600000\n",
        )
        .expect("valid config");
        let mut registry = Registry::new(1);
        let first = registry.build(&cfg).expect("builds");
        assert_eq!(
            first.services[0].selector.weights(),
            [1, 2],
            "never down: no ramp"
        );
        assert!(!registry.ramp_due(u64::MAX));
        let now = crate::snapshot::clock_ms().max(1);
        first.services[0].backends[1]
            .health
            .up_since_ms
            .store(now, Ordering::Relaxed);
        let ramping = registry.build(&cfg).expect("builds");
        assert_eq!(
            ramping.services[0].selector.weights(),
            [4, 2],
            "a quarter of 2 × 4"
        );
        assert!(!registry.ramp_due(now) && registry.ramp_due(now + 900_000));
        first.services[0].backends[1]
            .health
            .up_since_ms
            .store(0, Ordering::Relaxed);
        let done = registry.build(&cfg).expect("builds");
        assert_eq!(done.services[0].selector.weights(), [1, 2], "not ramping");
    }

    #[test]
    fn services_sharing_an_address_share_its_health_not_its_counters() {
        let two = |b: &str| {
            crate::config::parse(&format!(
                "[[service]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"127.0.0.1:9\"]\n\
                 [[service]]\nname = \"b\"\nlisten = \"127.0.0.1:0\"\nbackends = [{b}]\n"
            ))
            .expect("valid config")
        };
        let mut registry = Registry::new(1);
        let first = registry.build(&two("\"127.0.0.1:9\"")).expect("builds");
        let (a, b) = (
            &first.services[0].backends[0],
            &first.services[1].backends[0],
        );
        assert!(!Arc::ptr_eq(a, b), "counters apart");
        assert!(Arc::ptr_eq(&a.health, &b.health), "one health per address");
        a.counters.shard(0).connections.inc();
        assert!(
            a.mark_down(0, u64::MAX, crate::health::Passive::Refused),
            "up until now"
        );
        assert_eq!(b.counters.sum(|c| c.connections.get()), 0);
        assert!(
            !b.is_up(0),
            "a refused connect is refused for every service"
        );
        // A reload keeps both; dropping the address from one service keeps the other's
        // counters and the shared health.
        let again = registry.build(&two("\"127.0.0.1:9\"")).expect("builds");
        assert!(Arc::ptr_eq(&again.services[0].backends[0], a));
        assert!(Arc::ptr_eq(&again.services[1].backends[0], b));
        let moved = registry.build(&two("\"127.0.0.1:10\"")).expect("builds");
        assert!(Arc::ptr_eq(&moved.services[0].backends[0], a));
        assert!(!moved.services[0].backends[0].is_up(0));
        let back = registry.build(&two("\"127.0.0.1:9\"")).expect("builds");
        let b2 = &back.services[1].backends[0];
        assert!(
            !Arc::ptr_eq(b2, b),
            "b's counters for the address start again"
        );
        assert!(Arc::ptr_eq(&b2.health, &a.health));
    }

    #[test]
    fn http_listeners_defer_accept_and_delay_acks_and_lose_both_when_tcp_again() {
        let mut registry = Registry::new(2);
        let tcp = registry.build(&config("tcp")).expect("builds");
        assert_eq!(options(&tcp), vec![(0, 1); 2]);
        let http = registry.build(&config("http")).expect("builds");
        let tuned = options(&http);
        assert!(
            tuned
                .iter()
                .all(|&(defer, quickack)| defer > 0 && quickack == 0),
            "{tuned:?}"
        );
        // The same sockets, re-tuned: a mode change does not re-bind.
        assert!(Arc::ptr_eq(&tcp.listeners[0], &http.listeners[0]));
        let back = registry.build(&config("tcp")).expect("builds");
        assert_eq!(options(&back), vec![(0, 1); 2]);
    }

    #[test]
    fn a_rejected_reload_leaves_the_listening_sockets_as_they_were() {
        let mut registry = Registry::new(2);
        let tcp = registry.build(&config("tcp")).expect("builds");
        // A second service on a port something else holds: the reload fails.
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("address").port();
        let mut failing = config("http");
        let blocked = crate::config::parse(&format!(
            "[[service]]\nname = \"blocked\"\nlisten = \"127.0.0.1:{port}\"\nbackends = [\"127.0.0.1:9\"]\n"
        ))
        .expect("valid config");
        failing.services.extend(blocked.services);
        let errors = registry.build(&failing).expect_err("the port is taken");
        assert!(
            errors[0].starts_with("blocked: cannot listen"),
            "{errors:?}"
        );
        assert_eq!(options(&tcp), vec![(0, 1); 2], "still tuned for TCP");
        assert!(!tcp.listeners[0].http.load(Ordering::Relaxed));
        // Accepted, the same change re-tunes the same sockets.
        let http = registry.build(&config("http")).expect("builds");
        assert!(Arc::ptr_eq(&tcp.listeners[0], &http.listeners[0]));
        assert!(options(&http)
            .iter()
            .all(|&(defer, quickack)| defer > 0 && quickack == 0));
    }

    /// A free fixed port on loopback (free when asked; tests take it at once).
    fn free_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("address").port()
    }

    #[test]
    fn a_fixed_port_another_registry_holds_is_refused_with_its_place() {
        let port = free_port();
        let text = format!(
            "[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:{port}\"\nbackends = [\"127.0.0.1:9\"]\n"
        );
        let cfg = crate::config::parse(&text).expect("valid config");
        let mut first = Registry::new(2);
        let held = first.build(&cfg).expect("builds");
        // What a second sluice process does: its SO_REUSEPORT sockets would join.
        let errors = Registry::new(2).build(&cfg).expect_err("the port is taken");
        assert_eq!(
            errors,
            [format!(
                "3:10: web: cannot listen on 127.0.0.1:{port}: address already in use (by another process)"
            )]
        );
        // The registry holding it rebuilds as before, on the same sockets.
        let again = first.build(&cfg).expect("builds");
        assert!(Arc::ptr_eq(&held.listeners[0], &again.listeners[0]));
    }

    #[test]
    fn a_reload_may_narrow_a_wildcard_it_holds_to_one_address() {
        let port = free_port();
        let on = |ip: &str| {
            crate::config::parse(&format!(
                "[[service]]\nname = \"web\"\nlisten = \"{ip}:{port}\"\nbackends = [\"127.0.0.1:9\"]\n"
            ))
            .expect("valid config")
        };
        let mut registry = Registry::new(1);
        registry.build(&on("0.0.0.0")).expect("builds");
        let narrowed = registry.build(&on("127.0.0.1")).expect("builds");
        assert_eq!(narrowed.listeners[0].local.port(), port);
    }

    /// `[http] listen` and one HTTP service named after the key the shared listener
    /// was once kept under, both on `listen`.
    fn named_like_the_http_front(listen: &str) -> Config {
        crate::config::parse(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\
             [[service]]\nname = \"[http] listen\"\nmode = \"http\"\nlisten = \"{listen}\"\n\
             backends = [\"127.0.0.1:9\"]\n"
        ))
        .expect("valid config")
    }

    #[test]
    fn a_service_named_like_the_http_front_gets_a_port_of_its_own() {
        let mut registry = Registry::new(1);
        let snap = registry
            .build(&named_like_the_http_front("127.0.0.1:0"))
            .expect("builds");
        assert_eq!(snap.listeners.len(), 2);
        assert!(matches!(snap.fronts[0], Front::Service(_)));
        assert!(matches!(snap.fronts[1], Front::Http));
        assert_ne!(snap.listeners[0].local, snap.listeners[1].local);
        let again = registry
            .build(&named_like_the_http_front("127.0.0.1:0"))
            .expect("builds");
        assert!(Arc::ptr_eq(&snap.listeners[0], &again.listeners[0]));
        assert!(Arc::ptr_eq(&snap.listeners[1], &again.listeners[1]));
    }

    #[test]
    fn a_service_named_like_the_http_front_that_cannot_bind_leaves_the_front_alone() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("address").port();
        let cfg = named_like_the_http_front(&format!("127.0.0.1:{port}"));
        let mut registry = Registry::new(1);
        let (snap, unbound) = registry.build_lenient(&cfg);
        assert_eq!(unbound.len(), 1, "{unbound:?}");
        assert!(snap.services.is_empty());
        assert_eq!(snap.listeners.len(), 1);
        assert!(matches!(snap.fronts[0], Front::Http));
    }
}
