//! The control thread: loads the config, builds and publishes snapshots, handles
//! signals. It is the only thread that binds sockets or builds tables.

mod anycast;
mod checks;
mod lifecycle;
mod listeners;
mod merge;
mod publish;
mod registry;
mod tls;
mod upgrade;

use checks::{check_descriptors, restart_only_changes};
use publish::{log_services, seen, set_drain_deadlines};

pub use lifecycle::Lifecycle;

pub use merge::merge as merge_services;
pub use registry::Registry;

use crate::config::{self, Config};
use crate::dataplane;
use crate::snapshot::Published;
use crate::stats::{ControlCounters, PerShard};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};
use signal_hook::iterator::Signals;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
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
            Source::File(p) => config::load_with_warnings(p).map(|(cfg, warnings)| {
                for w in warnings {
                    tracing::warn!("{w}");
                }
                cfg
            }),
            Source::Embedded(c) => Ok((**c).clone()),
        }
    }
}

/// A running balancer: the published state and its shard threads.
pub struct Running {
    pub published: Arc<Published>,
    /// Where the admin port listens, when configured.
    pub admin_addr: Option<std::net::SocketAddr>,
    shards: Vec<std::thread::JoinHandle<()>>,
    registry: Registry,
    source: Source,
    /// The server settings at start: the ones a reload cannot change.
    started: crate::config::ServerConfig,
    started_admin: crate::config::AdminConfig,
    signals: Option<Signals>,
    /// The last configuration read from the source (its static services).
    file: Config,
    /// Marathon's last good translation, when Marathon is configured.
    marathon: Option<crate::marathon::apps::Translation>,
    /// What the last build could not bind: tried again at each Marathon answer (a
    /// port another process held may be free by then), logged once.
    unbound: Vec<String>,
    pub control_counters: Arc<ControlCounters>,
    /// Asks the Marathon poller for a fetch now (events, admin `/_mlb_signal/hup`). One
    /// pending wake-up at most: requests that arrive while one is pending coalesce. Kept
    /// here as well so the poller's waits never see the channel disconnect.
    wake: crossbeam::channel::Sender<()>,
    wake_rx: Option<crossbeam::channel::Receiver<()>>,
    /// The health thread says a backend with a slow start came up.
    ramp_rx: Option<crossbeam::channel::Receiver<()>>,
    /// The ACME thread, with `[acme]`, and what it was started with (a reload cannot
    /// change it).
    acme: Option<(crate::acme::Handle, config::AcmeConfig)>,
    /// The ACME thread says it wrote a certificate (or found one another host wrote).
    acme_rx: Option<crossbeam::channel::Receiver<()>>,
    /// The anycast VIPs' verdicts, and `[anycast]` as read at start.
    anycast: Arc<crate::anycast::Board>,
    started_anycast: crate::config::AnycastConfig,
    /// The processes serving, for `/_haproxy_getpids`.
    pub processes: Arc<crate::stats::processes::Processes>,
    /// Hot upgrades: the channel, the successor's command, the one in progress.
    lifecycle: Lifecycle,
    upgrading: lifecycle::Upgrading,
    /// A copy of the admin port's socket, to hand over; and what stops its thread
    /// accepting.
    admin_socket: Option<std::net::TcpListener>,
    admin_stop: Option<crate::admin::Stop>,
}

/// What the control thread waits for.
enum ControlEvent {
    Signal(i32),
    Marathon(crate::marathon::poller::Poll),
    /// Once a second: time to look whether a certificate file changed, or a slow
    /// start reached its next step.
    Tick,
    /// A backend with a slow start came up: rebuild its service's table.
    Ramp,
    /// The ACME thread wrote a certificate: build it in.
    Acme,
    /// A successor connected to the upgrade channel.
    Upgrade(crate::io::fdpass::Channel),
    /// The successor given the sockets (its pid) is ready, or failed (why).
    UpgradeVerdict(u32, crate::io::fdpass::Channel, Result<(), String>),
}

/// How often certificate files are looked at for a change.
const CERTIFICATE_CHECK: Duration = Duration::from_secs(1);

/// Load the config, bind every service, start the shards. Errors here are fatal
/// start-up errors (bad config, a port that cannot be bound, no I/O backend).
///
/// With `lifecycle.upgrade`, the listening sockets are those of the running process
/// at `lifecycle.channel` (see `upgrade.rs`): it is told once this one serves, or why
/// this one could not start.
pub fn start(source: Source, lifecycle: Lifecycle) -> anyhow::Result<Running> {
    // Handlers first: a SIGHUP or SIGTERM that arrives while starting must not take
    // the default action (terminating the process).
    let signals = Signals::new([SIGHUP, SIGTERM, SIGINT, SIGUSR2])?;
    let Some(path) = lifecycle.channel.as_deref().filter(|_| lifecycle.upgrade) else {
        if let Some(path) = &lifecycle.channel {
            upgrade::refuse_if_taken(path)?;
        }
        let running = start_with(source, lifecycle, signals, Inherited::default())?;
        lifecycle::notify_systemd("READY=1");
        return Ok(running);
    };
    let upgrade::Inheritance {
        channel,
        old_pid,
        listeners,
        admin,
        anycast,
        by_hand,
        others,
    } = upgrade::receive(path)?;
    let inherited = Inherited {
        listeners,
        admin,
        anycast,
        by_hand,
    };
    match start_with(source, lifecycle, signals, inherited) {
        Ok(running) => {
            running.processes.add(old_pid);
            // Left out once they exit (`Processes::pids`).
            for pid in others {
                running.processes.add(pid);
            }
            let published = Arc::clone(&running.published);
            upgrade::ready(
                channel,
                old_pid,
                Arc::clone(&running.processes),
                move || published.rearm_accepts(),
            )?;
            // systemd follows this process from now on (`NotifyAccess=all`).
            let pid = std::process::id();
            lifecycle::notify_systemd(&format!("MAINPID={pid}\nREADY=1"));
            tracing::info!(old_pid, "upgrade: serving; the previous process drains");
            Ok(running)
        }
        Err(e) => {
            upgrade::failed(&channel, &format!("{e:#}"));
            Err(e)
        }
    }
}

/// What a successor takes from the process it replaces (nothing, at a plain start).
#[derive(Default)]
struct Inherited {
    listeners: Vec<listeners::HandedOver>,
    admin: Option<std::net::TcpListener>,
    anycast: Vec<crate::anycast::Verdict>,
    by_hand: Vec<upgrade::ByHand>,
}

fn start_with(
    source: Source,
    lifecycle: Lifecycle,
    signals: Signals,
    inherited: Inherited,
) -> anyhow::Result<Running> {
    let started_ms = crate::snapshot::clock_ms();
    let cfg = source
        .load()
        .map_err(|errs| anyhow::anyhow!(errs.join("\n")))?;
    let workers = cfg.server.effective_workers();
    check_descriptors(&cfg, workers);
    let mut registry = Registry::new(workers);
    // A successor following Marathon keeps the sockets of Marathon's services until
    // it has built them too (below).
    let follows = cfg.marathon.is_some() && !inherited.listeners.is_empty();
    registry.inherit(inherited.listeners, follows);
    let snapshot = registry
        .build(&cfg)
        .map_err(|errs| anyhow::anyhow!(errs.join("\n")))?;
    log_services(None, &snapshot);
    let published = Arc::new(Published::new(snapshot));
    let shard_counters = Arc::new(PerShard::new(workers));
    // Chosen here, not in `spawn`, so that the stats page can say which it is.
    let (io, event_loop) = match dataplane::choose(cfg.server.io)? {
        dataplane::Backend::Uring => (config::IoKind::Uring, "io_uring"),
        dataplane::Backend::Epoll => (config::IoKind::Epoll, "epoll"),
    };
    // One pending notice at most: a rebuild covers every backend that came up.
    let (ramp_tx, ramp_rx) = crossbeam::channel::bounded::<()>(1);
    crate::health::spawn(
        Arc::clone(&published),
        Box::new(move || {
            let _ = ramp_tx.try_send(());
        }),
    )?;
    let anycast = anycast::start(&published, &cfg, &inherited.anycast)?;
    let control_counters = Arc::new(ControlCounters::default());
    // One pending notice at most: a build reads every certificate there is.
    let (acme_tx, acme_rx) = crossbeam::channel::bounded::<()>(1);
    let acme = match &cfg.acme {
        Some(a) => {
            if let Some(pem) = &a.ca_bundle {
                crate::acme::store::check_root(pem)
                    .map_err(|e| anyhow::anyhow!("[acme] ca_bundle: {e}"))?;
            }
            let handle = crate::acme::spawn(
                a.clone(),
                registry.challenges(),
                Arc::clone(&control_counters.acme),
                Box::new(move || {
                    let _ = acme_tx.try_send(());
                }),
            )
            .map_err(|e| anyhow::anyhow!("[acme] state_dir: {e}"))?;
            handle.follow(config::vhost_sets(&cfg.services, a));
            tracing::info!(directory = %a.directory, challenge = a.challenge.as_str(), "ACME on");
            Some((handle, a.clone()))
        }
        None => None,
    };
    let processes = Arc::new(crate::stats::processes::Processes::default());
    let (wake, wake_rx) = crossbeam::channel::bounded::<()>(1);
    let (mut admin_socket, mut admin_stop) = (None, None);
    let admin_addr = match cfg.admin.listen {
        Some(addr) => {
            let view = crate::admin::View {
                published: Arc::clone(&published),
                shards: Arc::clone(&shard_counters),
                control: Arc::clone(&control_counters),
                hup: wake.clone(),
                token: cfg.admin.token.clone(),
                process: crate::admin::Process {
                    started_ms,
                    workers,
                    event_loop,
                    max_connections: cfg.server.max_connections,
                },
                marathon: cfg.marathon.is_some(),
                anycast: Arc::clone(&anycast),
                processes: Arc::clone(&processes),
            };
            let listener = match inherited.admin.filter(|l| lifecycle::same_place(l, addr)) {
                Some(l) => Ok(l),
                None => crate::admin::bind(addr),
            };
            let (local, stop) = listener
                .and_then(|l| {
                    admin_socket = Some(l.try_clone()?);
                    crate::admin::start(l, view)
                })
                .map_err(|e| anyhow::anyhow!("admin port: cannot listen on {addr}: {e}"))?;
            admin_stop = Some(stop);
            tracing::info!(listen = %local, "admin listening");
            Some(local)
        }
        None => None,
    };
    let mut running = Running {
        published: Arc::clone(&published),
        admin_addr,
        shards: Vec::new(),
        registry,
        source,
        started: cfg.server.clone(),
        started_admin: cfg.admin.clone(),
        signals: Some(signals),
        anycast,
        started_anycast: cfg.anycast,
        file: cfg,
        marathon: None,
        unbound: Vec::new(),
        control_counters,
        wake,
        wake_rx: Some(wake_rx),
        ramp_rx: Some(ramp_rx),
        acme,
        acme_rx: Some(acme_rx),
        processes,
        lifecycle,
        upgrading: Default::default(),
        admin_socket,
        admin_stop,
    };
    if follows {
        running.take_marathon_over()?;
    }
    lifecycle::restore_by_hand(&running.published.load(), &inherited.by_hand);
    // The shards start last, once nothing else can fail: a successor (a hot upgrade)
    // that gave up after its shards had taken connections off the shared sockets would
    // drop them as it exits, while the process it was to replace serves on.
    running.shards = dataplane::spawn(published, shard_counters, workers, io)?;
    Ok(running)
}

/// A signal to a process that is stopping (draining, or waiting for the routers
/// after withdrawing its anycast VIPs), `stops` the stops asked so far: a reload or
/// an upgrade is not for it (the successor, if any, does those) and changes nothing;
/// a first stop (a drain that a handover began has had none: `systemctl stop`
/// signals every process of the service) lets it go on; a second exits at once.
fn signalled_while_stopping(sig: i32, stops: &mut usize) {
    match sig {
        SIGHUP | SIGUSR2 => tracing::warn!(
            signal = sig,
            "stopping: a reload or upgrade is not for this process; ignored"
        ),
        _ if *stops == 0 => {
            *stops = 1;
            tracing::info!(
                signal = sig,
                "stopping already; a second signal exits at once"
            );
        }
        _ => {
            tracing::warn!("second signal: exiting without waiting for connections");
            std::process::exit(1);
        }
    }
}

/// Why the services are built again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rebuild {
    /// The file or Marathon changed.
    Change,
    /// A slow start's step: the same services at new weights.
    SlowStart,
    /// The same services, for those that could not be bound before.
    Retry,
}

/// How long a successor following Marathon tries to fetch Marathon's apps before it
/// gives up the upgrade (within the predecessor's [`upgrade::READY_TIMEOUT`]).
const MARATHON_AT_UPGRADE: Duration = Duration::from_secs(30);

impl Running {
    /// A successor following Marathon: Marathon's services built before the first
    /// connection is taken, adopting the sockets the process being replaced held for
    /// them — built from the file alone, this process would close those sockets and
    /// refuse their connections until Marathon's first answer, and then find their
    /// ports held by the draining process. Marathon not answering fails the upgrade
    /// (the running process keeps serving).
    fn take_marathon_over(&mut self) -> anyhow::Result<()> {
        let Some(m) = &self.file.marathon else {
            return Ok(());
        };
        let t = crate::marathon::poller::first(m, MARATHON_AT_UPGRADE).map_err(|e| {
            anyhow::anyhow!(
                "Marathon did not answer within {} s ({e}): without Marathon's services this                  process would refuse their connections",
                MARATHON_AT_UPGRADE.as_secs()
            )
        })?;
        self.marathon = Some(t);
        self.apply();
        self.registry.release_inherited();
        Ok(())
    }

    /// Serve until SIGTERM or SIGINT, reloading on SIGHUP and following Marathon when
    /// configured; then drain and return.
    pub fn serve_until_signalled(mut self) -> anyhow::Result<()> {
        let (tx, rx) = crossbeam::channel::unbounded();
        let mut signals = self.signals.take().expect("signals registered at start");
        let sig_tx = tx.clone();
        std::thread::Builder::new()
            .name("sluice-signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if sig_tx.send(ControlEvent::Signal(sig)).is_err() {
                        return;
                    }
                }
            })?;
        if let (Some(m), Some(wake_rx)) = (&self.file.marathon, self.wake_rx.take()) {
            crate::marathon::poller::spawn(m, tx.clone(), ControlEvent::Marathon, wake_rx)?;
            tracing::info!(urls = ?m.urls, group = %m.group, "following Marathon");
            if m.events {
                let auth = crate::marathon::client::auth_header(m)?;
                let silence = Duration::from_millis(m.events_silence_ms);
                crate::marathon::events::spawn(m.urls.clone(), auth, silence, self.wake.clone())?;
            }
        }
        if let Some(ramp_rx) = self.ramp_rx.take() {
            let ramp_tx = tx.clone();
            std::thread::Builder::new()
                .name("sluice-ramp".into())
                .spawn(move || {
                    for () in ramp_rx.iter() {
                        if ramp_tx.send(ControlEvent::Ramp).is_err() {
                            return;
                        }
                    }
                })?;
        }
        if let Some(acme_rx) = self.acme_rx.take() {
            let acme_tx = tx.clone();
            std::thread::Builder::new()
                .name("sluice-acme-notice".into())
                .spawn(move || {
                    for () in acme_rx.iter() {
                        if acme_tx.send(ControlEvent::Acme).is_err() {
                            return;
                        }
                    }
                })?;
        }
        let tick_tx = tx.clone();
        std::thread::Builder::new()
            .name("sluice-tick".into())
            .spawn(move || {
                while tick_tx.send(ControlEvent::Tick).is_ok() {
                    std::thread::sleep(CERTIFICATE_CHECK);
                }
            })?;
        self.listen_for_successors(&tx);
        let mut failing = false;
        let mut upgraded = false;
        // A stop asked while a successor holds the sockets and has not answered.
        let mut stop_asked = None;
        for event in rx.iter() {
            match event {
                ControlEvent::Signal(SIGHUP) => self.reload(),
                ControlEvent::Signal(SIGUSR2) => self.start_successor(),
                ControlEvent::Upgrade(ch) => self.hand_over(ch, &tx),
                ControlEvent::UpgradeVerdict(pid, ch, verdict) => {
                    if self.upgrade_verdict(pid, ch, verdict) {
                        upgraded = true;
                        break;
                    }
                    if let Some(sig) = stop_asked {
                        self.leave_anycast(sig, &rx);
                        tracing::info!(signal = sig, "stopping: no new connections, draining");
                        break;
                    }
                }
                ControlEvent::Signal(sig) if self.upgrade_pending() => {
                    self.stop_when_answered(sig, &mut stop_asked)
                }
                ControlEvent::Tick => {
                    if self.registry.certificates_changed() {
                        tracing::info!("certificate files changed: loading them");
                        self.apply();
                    } else if self.registry.ramp_due(crate::snapshot::clock_ms()) {
                        self.apply_quietly();
                    }
                }
                ControlEvent::Ramp => self.apply_quietly(),
                ControlEvent::Acme => {
                    tracing::info!("ACME certificate written: loading it");
                    self.apply();
                }
                ControlEvent::Signal(sig) => {
                    self.leave_anycast(sig, &rx);
                    tracing::info!(signal = sig, "stopping: no new connections, draining");
                    break;
                }
                ControlEvent::Marathon(Ok(t)) => {
                    self.control_counters.marathon_fetches.inc();
                    let c = &self.control_counters;
                    c.marathon_last_success_ms
                        .store(crate::snapshot::clock_ms().max(1), Relaxed);
                    let (apps, tasks) = seen(&t);
                    c.marathon_apps.store(apps, Relaxed);
                    c.marathon_tasks.store(tasks, Relaxed);
                    c.marathon_labels_ignored
                        .store(t.ignored.len() as u64, Relaxed);
                    if failing {
                        tracing::info!("Marathon answers again");
                        failing = false;
                    }
                    if self.marathon.as_ref() != Some(&t) {
                        self.marathon = Some(t);
                        self.apply();
                    } else if !self.unbound.is_empty() {
                        self.publish_merged(Rebuild::Retry);
                    }
                }
                ControlEvent::Marathon(Err(e)) => {
                    self.control_counters.marathon_fetches.inc();
                    self.control_counters.marathon_failures.inc();
                    if let Ok(mut last) = self.control_counters.marathon_last_error.lock() {
                        *last = Some((crate::snapshot::clock_ms(), e.clone()));
                    }
                    // Once per episode; the last good services keep serving.
                    if !failing {
                        tracing::error!(error = %e, "Marathon fetch failed; keeping the last good state");
                        failing = true;
                    }
                }
            }
        }
        drop(tx);
        self.drain(&rx, upgraded);
        Ok(())
    }

    /// Publish the file's services plus Marathon's. Marathon services that conflict or
    /// cannot be bound are left out (logged, counted); the rest are applied.
    fn apply(&mut self) {
        self.publish_merged(Rebuild::Change);
    }

    /// [`Running::apply`] for a slow start's step: the same services at new weights,
    /// logged as such.
    fn apply_quietly(&mut self) {
        self.publish_merged(Rebuild::SlowStart);
    }

    fn publish_merged(&mut self, why: Rebuild) {
        let slow_start = why != Rebuild::Change;
        let mut cfg = self.file.clone();
        let counters = &self.control_counters;
        if let Some(t) = &self.marathon {
            let (services, conflicts) = merge::merge(&self.file.services, t);
            // A slow start's step rebuilds what was applied already: what it left out
            // was logged and counted then.
            for c in conflicts.iter().filter(|_| !slow_start) {
                tracing::error!("Marathon service left out: {c}");
                counters.marathon_conflicts.inc();
            }
            counters
                .marathon_left_out
                .store(conflicts.len() as u64, Relaxed);
            cfg.services = services;
            cfg.tls.from_marathon = t.ssl_certs();
        }
        cfg.acme = self.acme.as_ref().map(|(_, a)| a.clone());
        if let Some((acme, a)) = &self.acme {
            acme.follow(config::vhost_sets(&cfg.services, a));
        }
        let old = self.published.load();
        let (next, unbound) = self.registry.build_lenient(&cfg);
        // Each failure once while it lasts (a build at each Marathon answer retries it).
        for e in unbound.iter().filter(|e| !self.unbound.contains(e)) {
            tracing::error!("{e}");
            counters.bind_failures.inc();
        }
        for e in self.unbound.iter().filter(|e| !unbound.contains(e)) {
            tracing::info!("bound now: {e}");
        }
        counters.unbound.store(unbound.len() as u64, Relaxed);
        self.unbound = unbound;
        let drain_ms = self
            .file
            .marathon
            .as_ref()
            .map_or(0, |m| m.drain_timeout_ms);
        set_drain_deadlines(&old, &next, crate::snapshot::clock_ms() + drain_ms);
        log_services(Some(&old), &next);
        let (generation, services) = (next.generation, next.services.len());
        self.published.publish(next);
        match why {
            Rebuild::Change => tracing::info!(generation, services, "services updated"),
            Rebuild::SlowStart => {
                tracing::info!(generation, services, "slow start: weights updated")
            }
            Rebuild::Retry => tracing::debug!(generation, services, "unbound services tried again"),
        }
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
                self.control_counters.reload_failures.inc();
                return;
            }
        };
        let mut changed = restart_only_changes(
            &self.started,
            &self.started_admin,
            self.file.marathon.as_ref(),
            &cfg,
        );
        changed.extend(self.anycast_changed(&cfg));
        if !changed.is_empty() {
            tracing::warn!(
                changed = %changed.join(", "),
                "changed settings keep their start-up values until restart"
            );
        }
        let started_acme = self.acme.as_ref().map(|(_, a)| a);
        if cfg.acme.as_ref() != started_acme {
            tracing::warn!(
                "[acme] or [https] acme changed: they keep their start-up values until restart"
            );
        }
        let mut full = cfg.clone();
        full.acme = started_acme.cloned();
        let mut left_out = 0;
        if let Some(t) = &self.marathon {
            let (services, conflicts) = merge::merge(&cfg.services, t);
            (full.services, left_out) = (services, conflicts.len() as u64);
            full.tls.from_marathon = t.ssl_certs();
        }
        match self.registry.build(&full) {
            Ok(next) => {
                let counters = &self.control_counters;
                counters.marathon_left_out.store(left_out, Relaxed);
                counters.unbound.store(0, Relaxed);
                if let Some((acme, a)) = &self.acme {
                    acme.follow(config::vhost_sets(&full.services, a));
                }
                self.file = cfg;
                log_services(Some(&self.published.load()), &next);
                let (generation, services) = (next.generation, next.services.len());
                self.published.publish(next);
                tracing::info!(generation, services, "configuration reloaded");
            }
            Err(errs) => {
                for e in &errs {
                    tracing::error!("{e}");
                }
                tracing::error!("reload rejected: the previous configuration keeps serving");
                self.control_counters.reload_failures.inc();
            }
        }
    }

    /// Stop accepting and wait for the shards to finish their connections (each shard
    /// gives up after `shutdown_grace_ms`). A second signal ends the wait at once.
    ///
    /// Unless the sockets were handed to a successor (`upgraded`), they stop
    /// listening too, so that a connect is refused rather than queued where nobody
    /// accepts it any more; handed over, they are the successor's, and what queues
    /// there is its to accept.
    fn drain(mut self, events: &crossbeam::channel::Receiver<ControlEvent>, upgraded: bool) {
        // Not after a handover: the successor is the service now (it told systemd
        // its MAINPID), and with `NotifyAccess=all` a STOPPING=1 from this process
        // would have systemd stop the whole service, the successor with it.
        if !upgraded {
            lifecycle::notify_systemd("STOPPING=1");
        }
        let held = self.registry.held();
        let last = self.published.load();
        let draining = self.registry.draining(&last);
        drop(last);
        self.published.publish(draining);
        if !upgraded {
            // After the draining snapshot: a shard that meets the shut-down socket
            // (an accept error) has seen the snapshot already, and does not count it.
            for l in &held {
                listeners::shut_down(l);
            }
            self.remove_channel();
        } else {
            self.stopped_accepting(&held);
        }
        drop(held);
        // A drain that a hot upgrade began has had no stop asked yet: its first
        // SIGTERM or SIGINT (`systemctl stop` signals every process of the service)
        // lets it go on draining. A stop asked twice exits at once; a reload or an
        // upgrade asked of a draining process is not for it (its successor, if any,
        // does those) and changes nothing.
        let mut stops = usize::from(!upgraded);
        while self.shards.iter().any(|h| !h.is_finished()) {
            if let Ok(ControlEvent::Signal(sig)) = events.recv_timeout(Duration::from_millis(20)) {
                signalled_while_stopping(sig, &mut stops);
            }
        }
        for h in self.shards.drain(..) {
            let _ = h.join();
        }
        tracing::info!("stopped");
    }
}
