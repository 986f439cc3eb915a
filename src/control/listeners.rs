//! The listening sockets a registry holds across reloads, keyed so that a reload
//! re-uses them: re-using a listening socket is what lets a reload keep every
//! queued and established connection. Binding happens in two steps — [`Sockets::plan`]
//! binds what is new and notes what cannot be bound, [`Sockets::commit`] adopts it
//! once the whole configuration is accepted — so a rejected reload changes nothing.

use crate::config::{self, Config, Mode, ServiceConfig};
use crate::io::sys;
use crate::snapshot::Listeners;
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
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub(super) enum ListenKey {
    Addr(SocketAddr),
    /// A service's port 0, by the service's name.
    Ephemeral(String, IpAddr),
    /// `[http] listen` on port 0.
    HttpEphemeral(IpAddr),
    /// `[https] listen` on port 0.
    HttpsEphemeral(IpAddr),
}

/// How `[http] listen` is named in errors and logs.
pub(super) const HTTP_FRONT: &str = "[http] listen";
pub(super) const HTTPS_FRONT: &str = "[https] listen";

impl ListenKey {
    fn of(svc: &ServiceConfig) -> Option<ListenKey> {
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

/// Every listening socket held, by key.
#[derive(Debug)]
pub(super) struct Sockets {
    shards: usize,
    held: HashMap<ListenKey, Arc<Listeners>>,
    /// Sockets handed over by the process this one replaces (a hot upgrade), adopted
    /// by the first plan that names their key instead of binding anew.
    inherited: HashMap<ListenKey, (bool, Vec<TcpListener>)>,
    /// Keep the sockets handed over that a build did not name, for a later build:
    /// a successor following Marathon builds the file's services first, then
    /// Marathon's ([`Sockets::release_inherited`] ends it).
    hold_inherited: bool,
}

/// One listening address's sockets as a hot upgrade hands them over: its key, whether
/// they are tuned for HTTP, one socket per shard.
pub(super) type HandedOver = (ListenKey, bool, Vec<TcpListener>);

/// What a configuration could not bind: the errors, and the services and shared
/// fronts (`[http] listen`, `[https] listen`) left out for it.
#[derive(Debug, Default)]
pub(super) struct Unbound {
    pub errors: Vec<String>,
    pub services: HashSet<String>,
    pub fronts: HashSet<&'static str>,
}

/// Sockets bound for a configuration not yet accepted, and the held ones it re-tunes.
#[derive(Debug)]
pub(super) struct Binding<'a> {
    fresh: HashMap<ListenKey, Arc<Listeners>>,
    retune: Vec<(Arc<Listeners>, bool, &'a str, SocketAddr)>,
}

impl Sockets {
    pub fn new(shards: usize) -> Self {
        Sockets {
            shards,
            held: HashMap::new(),
            inherited: HashMap::new(),
            hold_inherited: false,
        }
    }

    /// Take the sockets a process being replaced handed over: the next plan adopts
    /// them by key rather than binding (a bind would make a second queue, and the
    /// probe would refuse the address the other process holds).
    pub fn inherit(&mut self, sockets: Vec<HandedOver>, hold: bool) {
        for (key, http, list) in sockets {
            self.inherited.insert(key, (http, list));
        }
        self.hold_inherited = hold;
    }

    /// Close the sockets handed over that no build has named (see `hold_inherited`).
    pub fn release_inherited(&mut self) {
        self.hold_inherited = false;
        self.drop_unclaimed();
    }

    /// Every socket held, by key, for a successor: (key, tuned for HTTP, sockets).
    pub fn handover(&self) -> Vec<(&ListenKey, bool, &Listeners)> {
        self.held
            .iter()
            .map(|(k, l)| (k, l.http.load(Ordering::Relaxed), &**l))
            .collect()
    }

    /// Every listening address held.
    pub fn held(&self) -> Vec<Arc<Listeners>> {
        self.held.values().cloned().collect()
    }

    /// Sockets handed over that no configuration named: closed (their queued
    /// connections are reset once the process that handed them over exits too).
    fn drop_unclaimed(&mut self) {
        for (key, (_, list)) in self.inherited.drain() {
            let local = list.first().and_then(|l| l.local_addr().ok());
            tracing::warn!(
                ?key,
                ?local,
                "a listener handed over is not in the configuration: closed"
            );
        }
    }

    /// The sockets handed over for `key`, as this process's shards need them: one per
    /// shard (more: joined to the same group; fewer: the rest closed, their queued
    /// connections reset — logged).
    fn adopt(&mut self, key: &ListenKey) -> Option<std::io::Result<Listeners>> {
        let (http, mut list) = self.inherited.remove(key)?;
        Some((|| {
            let local = list
                .first()
                .ok_or_else(|| std::io::Error::other("no socket handed over"))?
                .local_addr()?;
            if list.len() > self.shards {
                tracing::warn!(%local, handed = list.len(), shards = self.shards,
                    "fewer shards than the process replaced: its extra sockets closed, \
                     connections queued on them reset");
                list.truncate(self.shards);
            }
            while list.len() < self.shards {
                list.push(bind_one(local)?);
            }
            for l in &list {
                l.set_nonblocking(true)?;
            }
            Ok(Listeners {
                local,
                sockets: list.into_boxed_slice(),
                http: AtomicBool::new(http),
            })
        })())
    }

    /// Binds every address `config` names that is not held yet. Sockets in use now
    /// change only at [`Sockets::commit`].
    pub fn plan<'a>(&mut self, config: &'a Config) -> (Binding<'a>, Unbound) {
        let mut binding = Binding {
            fresh: HashMap::new(),
            retune: Vec::new(),
        };
        let mut unbound = Unbound::default();
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
            if let Some(l) = self.held.get(&key) {
                binding.retune.push((Arc::clone(l), http, name, addr));
                continue;
            }
            // An address sluice holds already (or one overlapping it, as a reload moving
            // a port from a wildcard to one address does) would fail the probe.
            let ours =
                |key: &ListenKey| matches!(key, ListenKey::Addr(a) if config::overlap(*a, addr));
            let held = self.held.keys().chain(binding.fresh.keys()).any(ours);
            let listeners = match self.adopt(&key) {
                Some(adopted) => adopted,
                None if held => bind_all(addr, self.shards),
                None => probe(addr).and_then(|()| bind_all(addr, self.shards)),
            };
            match listeners.and_then(|l| tune(&l, http).map(|()| l)) {
                Ok(l) => {
                    binding.fresh.insert(key, Arc::new(l));
                }
                Err(e) => {
                    let at = config
                        .origin
                        .listen(name)
                        .map_or_else(String::new, |at| format!("{at}: "));
                    unbound
                        .errors
                        .push(format!("{at}{name}: cannot listen on {addr}: {e}"));
                    match service {
                        Some(s) => {
                            unbound.services.insert(s.to_owned());
                        }
                        None if name == HTTPS_FRONT => {
                            unbound.fronts.insert(HTTPS_FRONT);
                        }
                        None => {
                            unbound.fronts.insert(HTTP_FRONT);
                        }
                    }
                }
            }
        }
        (binding, unbound)
    }

    /// Adopts what [`Sockets::plan`] bound, and re-tunes the held sockets whose mode
    /// changed.
    pub fn commit(&mut self, binding: Binding) {
        for (l, http, name, addr) in binding.retune {
            if let Err(e) = tune(&l, http) {
                tracing::warn!(service = name, %addr, error = %e, "cannot tune listening socket");
            }
        }
        self.held.extend(binding.fresh);
        if !self.hold_inherited {
            self.drop_unclaimed();
        }
    }

    /// The sockets of a service with its own `listen`.
    pub fn service(&self, svc: &ServiceConfig) -> Option<Arc<Listeners>> {
        ListenKey::of(svc).map(|k| Arc::clone(&self.held[&k]))
    }

    /// The sockets of `[http] listen` on `addr`.
    pub fn http(&self, addr: SocketAddr) -> Arc<Listeners> {
        Arc::clone(&self.held[&ListenKey::http(addr)])
    }

    /// The sockets of `[https] listen` on `addr`.
    pub fn https(&self, addr: SocketAddr) -> Arc<Listeners> {
        Arc::clone(&self.held[&ListenKey::https(addr)])
    }

    /// Lets go of the sockets `config` no longer names; old snapshots and live
    /// connections keep their own references until they end.
    pub fn keep_only(&mut self, config: &Config) {
        let keys: HashSet<ListenKey> = config
            .services
            .iter()
            .filter_map(ListenKey::of)
            .chain(config.http.listen.map(ListenKey::http))
            .chain(config.https.map(ListenKey::https))
            .collect();
        self.held.retain(|key, _| keys.contains(key));
    }

    /// Lets go of every socket: the ports close once the shards drop theirs.
    pub fn clear(&mut self) {
        self.held.clear();
    }
}

/// Stop listening on `l`'s sockets: `shutdown(SHUT_RD)` takes a listening socket out
/// of the kernel's tables whoever else holds its descriptor (a shard's reactor), so a
/// new connect is refused instead of queueing where nobody will accept it. What was
/// queued already is reset, as at a close.
pub(super) fn shut_down(l: &Listeners) {
    for s in l.sockets.iter() {
        if let Err(e) = socket2::SockRef::from(s).shutdown(std::net::Shutdown::Read) {
            tracing::debug!(listen = %l.local, error = %e, "cannot shut a listener down");
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

#[cfg(test)]
mod tests {
    use super::super::Registry;
    use super::*;
    use crate::snapshot::{Front, Snapshot};

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

    /// The kernel's name of the socket behind `s` (`socket:[inode]`): the same for
    /// every descriptor of one open socket, in any process.
    fn identity(s: &TcpListener) -> std::path::PathBuf {
        use std::os::fd::AsRawFd;
        std::fs::read_link(format!("/proc/self/fd/{}", s.as_raw_fd())).expect("readlink")
    }

    /// What a process being replaced hands over: a copy of each socket it holds.
    fn handed(registry: &Registry) -> Vec<HandedOver> {
        registry
            .sockets()
            .handover()
            .into_iter()
            .map(|(k, http, l)| {
                let copies = l.sockets.iter().map(|s| s.try_clone().expect("dup"));
                (k.clone(), http, copies.collect())
            })
            .collect()
    }

    #[test]
    fn sockets_handed_over_are_adopted_by_key_not_bound_again() {
        let cfg = config("http");
        let mut old = Registry::new(2);
        let before = old.build(&cfg).expect("builds");
        let ids: Vec<_> = before.listeners[0].sockets.iter().map(identity).collect();
        // As many shards: the very same sockets, still tuned for HTTP.
        let mut same = Registry::new(2);
        same.inherit(handed(&old), false);
        let after = same.build(&cfg).expect("builds");
        assert_eq!(after.listeners[0].local, before.listeners[0].local);
        let got: Vec<_> = after.listeners[0].sockets.iter().map(identity).collect();
        assert_eq!(got, ids);
        assert!(after.listeners[0].http.load(Ordering::Relaxed));
        // More shards: those, and one more in the same group, on the same port.
        let mut more = Registry::new(3);
        more.inherit(handed(&old), false);
        let wider = more.build(&cfg).expect("builds");
        let got: Vec<_> = wider.listeners[0].sockets.iter().map(identity).collect();
        assert_eq!((&got[..2], got.len()), (&ids[..], 3));
        assert_eq!(wider.listeners[0].local, before.listeners[0].local);
        // Fewer: the first ones.
        let mut fewer = Registry::new(1);
        fewer.inherit(handed(&old), false);
        let narrow = fewer.build(&cfg).expect("builds");
        let got: Vec<_> = narrow.listeners[0].sockets.iter().map(identity).collect();
        assert_eq!(got, ids[..1]);
        // A key no configuration names is let go of at the first build.
        let mut other = Registry::new(2);
        other.inherit(handed(&old), false);
        let renamed = crate::config::parse(
            "[[service]]\nname = \"api\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"127.0.0.1:9\"]\n",
        )
        .expect("valid config");
        let fresh = other.build(&renamed).expect("builds");
        assert_ne!(fresh.listeners[0].local, before.listeners[0].local);
        assert!(other.sockets().inherited.is_empty());
        // Held: a build that does not name the key keeps it for one that does (a
        // successor's Marathon services, built after the file's); released, the rest
        // is closed.
        let mut held = Registry::new(2);
        held.inherit(handed(&old), true);
        held.build(&renamed).expect("builds");
        assert_eq!(held.sockets().inherited.len(), 1);
        let later = held.build(&cfg).expect("builds");
        let got: Vec<_> = later
            .listeners
            .iter()
            .flat_map(|l| l.sockets.iter().map(identity))
            .collect();
        assert!(
            ids.iter().all(|id| got.contains(id)),
            "adopted by the later build"
        );
        assert!(held.sockets().inherited.is_empty());
        let mut unnamed = Registry::new(2);
        unnamed.inherit(handed(&old), true);
        unnamed.build(&renamed).expect("builds");
        unnamed.release_inherited();
        assert!(unnamed.sockets().inherited.is_empty());
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
    /// was once kept under, both on `listen`. A file cannot give that name (it holds
    /// characters a service name may not); the service is renamed after parsing, as
    /// the registry does not check names.
    fn named_like_the_http_front(listen: &str) -> Config {
        let mut cfg = crate::config::parse(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\
             [[service]]\nname = \"web\"\nmode = \"http\"\nlisten = \"{listen}\"\n\
             backends = [\"127.0.0.1:9\"]\n"
        ))
        .expect("valid config");
        cfg.services[0].name = "[http] listen".into();
        cfg
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
