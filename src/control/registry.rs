//! What outlives one snapshot: listening sockets (held in [`Sockets`]), backend states
//! and counters, keyed so that a reload re-uses them. Re-using a listening socket is
//! what lets a reload keep every queued and established connection.
//!
//! Counters are keyed by service name, a backend's by (service name, address): two
//! services naming one address count their traffic apart. A backend address's
//! [`Health`] (down-marks, drain deadline) is keyed by the address alone and shared.

use super::listeners::{Sockets, HTTPS_FRONT, HTTP_FRONT};
use crate::balance::Selector;
use crate::config::{self, Config, Mode};
use crate::http::route::Router;
use crate::snapshot::{Backend, Front, Health, HttpFront, HttpsFront, Service, Snapshot};
use crate::stats::{PerShard, ServiceCounters};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(Debug)]
pub struct Registry {
    shards: usize,
    generation: u64,
    sockets: Sockets,
    health: HashMap<SocketAddr, Arc<Health>>,
    services: HashMap<String, Kept>,
    tls: super::tls::TlsRegistry,
    /// When a slow start in the last snapshot built reaches its next step.
    ramp_due_ms: Option<u64>,
    /// The ACME challenges pending: in every snapshot, for `[http] listen`, and read
    /// by `[https] listen`'s certificate choice.
    challenges: Arc<crate::acme::Challenges>,
    /// `[acme]`'s certificate directory, and whether the last build read it.
    acme_dir: Option<(std::path::PathBuf, bool)>,
}

/// What a service keeps across reloads: its counters and its backends' (by address).
#[derive(Debug)]
struct Kept {
    counters: Arc<PerShard<ServiceCounters>>,
    backends: HashMap<SocketAddr, Arc<Backend>>,
}

impl Registry {
    pub fn new(shards: usize) -> Self {
        let challenges = Arc::new(crate::acme::Challenges::default());
        Registry {
            shards,
            generation: 0,
            sockets: Sockets::new(shards),
            health: HashMap::new(),
            services: HashMap::new(),
            tls: super::tls::TlsRegistry::new(Arc::clone(&challenges)),
            ramp_due_ms: None,
            challenges,
            acme_dir: None,
        }
    }

    /// The cell the ACME thread publishes its pending challenges in.
    pub fn challenges(&self) -> Arc<crate::acme::Challenges> {
        Arc::clone(&self.challenges)
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
        let (binding, mut unbound) = self.sockets.plan(config);
        let (service_tls, https_tls) = self.tls_configs(
            config,
            strict,
            &mut unbound.services,
            &mut unbound.fronts,
            &mut unbound.errors,
        );
        if strict && !unbound.errors.is_empty() {
            return Err(unbound.errors);
        }
        self.tls.sweep();
        self.sockets.commit(binding);
        self.generation += 1;
        self.ramp_due_ms = None;
        let now = crate::snapshot::clock_ms();
        let mut services = Vec::with_capacity(config.services.len());
        let mut listeners = Vec::with_capacity(config.services.len() + 1);
        let mut fronts = Vec::with_capacity(config.services.len() + 1);
        for svc in config
            .services
            .iter()
            .filter(|s| !unbound.services.contains(&s.name))
        {
            let l = self.sockets.service(svc);
            let tls = service_tls.get(&svc.name).cloned();
            let service = self.service(svc, l.as_ref().map(|l| l.local), tls, now);
            if let Some(l) = l {
                listeners.push(l);
                fronts.push(Front::Service(Arc::clone(&service)));
            }
            services.push(service);
        }
        if let Some(addr) = config
            .http
            .listen
            .filter(|_| !unbound.fronts.contains(HTTP_FRONT))
        {
            listeners.push(self.sockets.http(addr));
            fronts.push(Front::Http);
        }
        let https = config.https.zip(https_tls).map(|(addr, tls)| {
            listeners.push(self.sockets.https(addr));
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
        self.sockets.keep_only(config);
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
            acme: Arc::clone(&self.challenges),
            draining: false,
        };
        Ok((snapshot, unbound.errors))
    }

    /// The service `svc` listening on `local`, with the counters and backends it kept
    /// from the last build (or new ones).
    fn service(
        &mut self,
        svc: &config::ServiceConfig,
        local: Option<SocketAddr>,
        tls: Option<Arc<rustls::ServerConfig>>,
        now: u64,
    ) -> Arc<Service> {
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
        let backends: Box<[Arc<Backend>]> =
            cfg.backends
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
        let svnames = cfg
            .backends
            .iter()
            .map(|b| {
                let named = cfg.server_names.iter().find(|(a, _)| *a == b.addr);
                named
                    .map_or_else(|| crate::snapshot::server_name(b.addr), |(_, n)| n.clone())
                    .into_boxed_str()
            })
            .collect();
        let maint: Box<[bool]> = cfg
            .backends
            .iter()
            .map(|b| cfg.maint.contains(&b.addr))
            .collect();
        let draining = cfg
            .backends
            .iter()
            .zip(maint.iter())
            .map(|(b, &m)| m || cfg.draining.contains(&b.addr))
            .collect();
        let mut sticky_ids: Vec<(u64, u16)> = backends
            .iter()
            .enumerate()
            .map(|(i, b)| (crate::snapshot::sticky_id(b.addr), i as u16))
            .collect();
        sticky_ids.sort_unstable();
        Arc::new(Service {
            local,
            config: cfg,
            backends,
            selector,
            counters,
            draining,
            maint,
            svnames,
            cursors: PerShard::new(self.shards),
            sticky_ids: sticky_ids.into(),
            tls,
        })
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
            match self.tls.config(paths, &config.tls, !strict, false) {
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
        let https = https.and_then(|_| match self.https_config(config, strict) {
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
    /// alone: one app's bad certificate does not take the TLS port down. The
    /// certificates `[acme]` obtained come last, once there is one.
    fn https_config(
        &mut self,
        config: &Config,
        strict: bool,
    ) -> Result<Arc<rustls::ServerConfig>, String> {
        let tls = &config.tls;
        self.acme_dir = config.acme.as_ref().map(|a| {
            let dir = crate::acme::store::certs_dir(&a.state_dir);
            let read = crate::acme::store::has_certificates(&dir);
            (dir, read)
        });
        let acme_dir = self
            .acme_dir
            .as_ref()
            .filter(|(_, read)| *read)
            .map(|(dir, _)| dir.clone());
        let alpn01 = config
            .acme
            .as_ref()
            .is_some_and(|a| a.challenge == config::ChallengeKind::TlsAlpn01);
        let mut paths = tls.certificates.clone();
        paths.extend(tls.from_marathon.iter().cloned());
        paths.extend(acme_dir.clone());
        match self.tls.config(&paths, tls, !strict, alpn01) {
            Err(e) if !strict && !tls.from_marathon.is_empty() => {
                tracing::error!("{e}; [https] listen serves [tls] certificates alone");
                let mut paths = tls.certificates.clone();
                paths.extend(acme_dir);
                self.tls.config(&paths, tls, false, alpn01)
            }
            r => r,
        }
    }

    /// Whether a certificate file in use changed since it was read: the caller builds
    /// again (a reload of the certificates alone).
    /// So is `[acme]`'s certificate directory gaining its first certificate (or
    /// losing its last), which the last build did not read.
    pub fn certificates_changed(&self) -> bool {
        let acme = self
            .acme_dir
            .as_ref()
            .is_some_and(|(dir, read)| crate::acme::store::has_certificates(dir) != *read);
        acme || self.tls.stale()
    }

    /// Adopt, at the next build that names them, the listening sockets a process
    /// being replaced handed over. With `hold`, those a build does not name are kept
    /// for a later one until [`Registry::release_inherited`]; without, the first
    /// build closes them.
    pub(super) fn inherit(&mut self, sockets: Vec<super::listeners::HandedOver>, hold: bool) {
        self.sockets.inherit(sockets, hold);
    }

    /// Close the sockets handed over that no build named.
    pub(super) fn release_inherited(&mut self) {
        self.sockets.release_inherited();
    }

    /// The listening sockets held, for a successor.
    pub(super) fn sockets(&self) -> &Sockets {
        &self.sockets
    }

    /// Every listening address held.
    pub(super) fn held(&self) -> Vec<Arc<crate::snapshot::Listeners>> {
        self.sockets.held()
    }

    /// A snapshot that tells every shard to stop accepting; the registry lets go of
    /// every listening socket so the ports close once the shards drop theirs. The
    /// services and routes stay: a request that reaches an established connection
    /// while it drains (the next one on a keep-alive connection) is served, with
    /// `Connection: close`, not answered 503.
    pub fn draining(&mut self, last: &Snapshot) -> Snapshot {
        self.sockets.clear();
        self.generation += 1;
        Snapshot {
            generation: self.generation,
            server: last.server.clone(),
            services: last.services.clone(),
            listeners: Vec::new(),
            fronts: Vec::new(),
            http: Arc::clone(&last.http),
            https: last.https.clone(),
            certificates: Arc::clone(&last.certificates),
            acme: Arc::clone(&last.acme),
            draining: true,
        }
    }
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
}
