//! What outlives one snapshot: listening sockets, backend states and service counters,
//! keyed so that a reload re-uses them. Re-using a listening socket is what lets a reload
//! keep every queued and established connection.

use crate::balance::Selector;
use crate::config::Config;
use crate::snapshot::{Backend, Listeners, Service, Snapshot};
use crate::stats::{PerShard, ServiceCounters};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

/// Listen backlog asked for; the kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 65_535;

/// What identifies a listening socket across reloads: its configured address, except
/// that every service asking for port 0 gets a port of its own, kept by service name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ListenKey {
    Addr(SocketAddr),
    Ephemeral(String, std::net::IpAddr),
}

impl ListenKey {
    fn of(svc: &crate::config::ServiceConfig) -> ListenKey {
        if svc.listen.port() == 0 {
            ListenKey::Ephemeral(svc.name.clone(), svc.listen.ip())
        } else {
            ListenKey::Addr(svc.listen)
        }
    }
}

#[derive(Debug)]
pub struct Registry {
    shards: usize,
    generation: u64,
    listeners: HashMap<ListenKey, Arc<Listeners>>,
    backends: HashMap<SocketAddr, Arc<Backend>>,
    counters: HashMap<String, Arc<PerShard<ServiceCounters>>>,
}

impl Registry {
    pub fn new(shards: usize) -> Self {
        Registry {
            shards,
            generation: 0,
            listeners: HashMap::new(),
            backends: HashMap::new(),
            counters: HashMap::new(),
        }
    }

    /// Build the snapshot for `config`. Either every new listening socket binds and the
    /// registry moves to the new config, or nothing changes and the errors are returned.
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
        let mut errors = Vec::new();
        let mut unbound = HashSet::new();
        for svc in &config.services {
            let key = ListenKey::of(svc);
            if self.listeners.contains_key(&key) {
                continue;
            }
            match bind_all(svc.listen, self.shards) {
                Ok(l) => {
                    fresh.insert(key, Arc::new(l));
                }
                Err(e) => {
                    errors.push(format!(
                        "service {}: cannot listen on {}: {e}",
                        svc.name, svc.listen
                    ));
                    unbound.insert(svc.name.clone());
                }
            }
        }
        if strict && !errors.is_empty() {
            return Err(errors);
        }
        self.listeners.extend(fresh);
        self.generation += 1;
        let mut services = Vec::with_capacity(config.services.len());
        let mut listeners = Vec::with_capacity(config.services.len());
        for svc in config
            .services
            .iter()
            .filter(|s| !unbound.contains(&s.name))
        {
            let mut cfg = svc.clone();
            cfg.backends.sort_by_key(|b| b.addr);
            let backends: Box<[Arc<Backend>]> = cfg
                .backends
                .iter()
                .map(|b| {
                    let shards = self.shards;
                    Arc::clone(
                        self.backends
                            .entry(b.addr)
                            .or_insert_with(|| Arc::new(Backend::new(b.addr, shards))),
                    )
                })
                .collect();
            let selector = Selector::build(&cfg.backends, cfg.balance, cfg.hash, cfg.table_size);
            let shards = self.shards;
            let counters = Arc::clone(
                self.counters
                    .entry(cfg.name.clone())
                    .or_insert_with(|| Arc::new(PerShard::new(shards))),
            );
            let l = Arc::clone(&self.listeners[&ListenKey::of(svc)]);
            let draining = cfg
                .backends
                .iter()
                .map(|b| cfg.draining.contains(&b.addr))
                .collect();
            services.push(Arc::new(Service {
                local: l.local,
                config: cfg,
                backends,
                selector,
                counters,
                draining,
                cursors: PerShard::new(self.shards),
            }));
            listeners.push(l);
        }
        // Forget what the new config no longer names; old snapshots and live
        // connections keep their own references until they end.
        // (Sets first: a thousand-app cluster has thousands of services and backends.)
        let keys: HashSet<ListenKey> = config.services.iter().map(ListenKey::of).collect();
        let addrs: HashSet<SocketAddr> = config
            .services
            .iter()
            .flat_map(|s| s.backends.iter().map(|b| b.addr))
            .collect();
        let names: HashSet<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
        self.listeners.retain(|key, _| keys.contains(key));
        self.backends.retain(|addr, _| addrs.contains(addr));
        self.counters
            .retain(|name, _| names.contains(name.as_str()));
        let snapshot = Snapshot {
            generation: self.generation,
            server: config.server.clone(),
            services,
            listeners,
            draining: false,
        };
        Ok((snapshot, errors))
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
