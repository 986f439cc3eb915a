//! The control thread: loads the config, builds and publishes snapshots, handles
//! signals. It is the only thread that binds sockets or builds tables.

mod registry;

pub use registry::Registry;

use crate::config::{self, Config};
use crate::dataplane;
use crate::snapshot::Published;
use crate::stats::{PerShard, ShardCounters};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where the services come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A TOML file, re-read on SIGHUP.
    File(PathBuf),
    /// A config built in the binary (the demo); SIGHUP has nothing to re-read.
    Embedded(Box<Config>),
}

impl Source {
    fn load(&self) -> Result<Config, Vec<String>> {
        match self {
            Source::File(p) => config::load(p),
            Source::Embedded(c) => Ok((**c).clone()),
        }
    }
}

/// A running balancer: the published state and its shard threads.
pub struct Running {
    pub published: Arc<Published>,
    /// Where the admin port listens, when configured.
    pub admin_addr: Option<std::net::SocketAddr>,
    pub shard_counters: Arc<PerShard<ShardCounters>>,
    shards: Vec<std::thread::JoinHandle<()>>,
    registry: Registry,
    source: Source,
    /// The server settings at start: the ones a reload cannot change.
    started: crate::config::ServerConfig,
    started_admin: crate::config::AdminConfig,
    signals: Signals,
}

/// Load the config, bind every service, start the shards. Errors here are fatal
/// start-up errors (bad config, a port that cannot be bound, no I/O backend).
pub fn start(source: Source) -> anyhow::Result<Running> {
    // Handlers first: a SIGHUP or SIGTERM that arrives while starting must not take
    // the default action (terminating the process).
    let signals = Signals::new([SIGHUP, SIGTERM, SIGINT])?;
    let cfg = source
        .load()
        .map_err(|errs| anyhow::anyhow!(errs.join("\n")))?;
    let workers = cfg.server.effective_workers();
    let mut registry = Registry::new(workers);
    let snapshot = registry
        .build(&cfg)
        .map_err(|errs| anyhow::anyhow!(errs.join("\n")))?;
    log_services(&snapshot);
    let published = Arc::new(Published::new(snapshot));
    let shard_counters = Arc::new(PerShard::new(workers));
    let shards = dataplane::spawn(
        Arc::clone(&published),
        Arc::clone(&shard_counters),
        workers,
        cfg.server.io,
    )?;
    let admin_addr = match cfg.admin.listen {
        Some(addr) => {
            let view = crate::admin::View {
                published: Arc::clone(&published),
                shards: Arc::clone(&shard_counters),
            };
            let local = crate::admin::start(addr, view)
                .map_err(|e| anyhow::anyhow!("admin port: cannot listen on {addr}: {e}"))?;
            tracing::info!(listen = %local, "admin listening");
            Some(local)
        }
        None => None,
    };
    Ok(Running {
        published,
        admin_addr,
        shard_counters,
        shards,
        registry,
        source,
        started: cfg.server,
        started_admin: cfg.admin,
        signals,
    })
}

impl Running {
    /// Serve until SIGTERM or SIGINT, reloading on SIGHUP; then drain and return.
    pub fn serve_until_signalled(mut self) -> anyhow::Result<()> {
        while let Some(sig) = self.signals.forever().next() {
            if sig == SIGHUP {
                self.reload();
                continue;
            }
            tracing::info!(signal = sig, "stopping: no new connections, draining");
            break;
        }
        self.drain();
        Ok(())
    }

    /// Re-read the source and publish it; on any error keep serving the old state.
    pub fn reload(&mut self) {
        let cfg = match self.source.load() {
            Ok(c) => c,
            Err(errs) => {
                for e in &errs {
                    tracing::error!("{e}");
                }
                tracing::error!("reload rejected: the previous configuration keeps serving");
                return;
            }
        };
        let (new, was) = (&cfg.server, &self.started);
        if new.effective_workers() != was.effective_workers()
            || new.io != was.io
            || new.max_connections != was.max_connections
            || cfg.admin != self.started_admin
        {
            tracing::warn!(
                "server.workers, io, max_connections and [admin] keep their start-up values until restart"
            );
        }
        match self.registry.build(&cfg) {
            Ok(next) => {
                log_services(&next);
                let (generation, services) = (next.generation, next.services.len());
                self.published.publish(next);
                tracing::info!(generation, services, "configuration reloaded");
            }
            Err(errs) => {
                for e in &errs {
                    tracing::error!("{e}");
                }
                tracing::error!("reload rejected: the previous configuration keeps serving");
            }
        }
    }

    /// Stop accepting and wait for the shards to finish their connections (each shard
    /// gives up after `shutdown_grace_ms`). A second signal ends the wait at once.
    fn drain(mut self) {
        let last = self.published.load();
        let draining = self.registry.draining(&last);
        drop(last);
        self.published.publish(draining);
        while self.shards.iter().any(|h| !h.is_finished()) {
            if self.signals.pending().next().is_some() {
                tracing::warn!("second signal: exiting without waiting for connections");
                std::process::exit(1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for h in self.shards.drain(..) {
            let _ = h.join();
        }
        tracing::info!("stopped");
    }
}

fn log_services(snapshot: &crate::snapshot::Snapshot) {
    for s in &snapshot.services {
        tracing::info!(
            service = %s.config.name,
            listen = %s.local,
            backends = s.backends.len(),
            balance = ?s.config.balance,
            "service listening"
        );
    }
}
