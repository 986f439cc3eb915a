//! The process's life beyond one configuration: the hot upgrade's channel and
//! successor (the exchange itself is `upgrade.rs`), and what systemd is told.

use super::{upgrade, ControlEvent, Running};
use crate::io::fdpass::Channel;
use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;

/// How long a process that handed its sockets over waits for its shards to stop
/// accepting on them.
const STOP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// How this process takes part in hot upgrades.
#[derive(Debug, Default)]
pub struct Lifecycle {
    /// Where this process listens for a successor; with `upgrade`, where the
    /// process it replaces listens. `None`: no upgrades.
    pub channel: Option<PathBuf>,
    /// Take the listening sockets of the process at `channel` instead of binding.
    pub upgrade: bool,
    /// What SIGUSR2 starts: this binary's path (as it was started, so a binary
    /// replaced on disk is the new one) and its arguments, with `--upgrade`.
    pub successor: Option<(PathBuf, Vec<OsString>)>,
}

/// A hot upgrade under way, on the side of the process being replaced.
#[derive(Debug, Default)]
pub(super) struct Upgrading {
    /// The successor given the sockets and not yet ready.
    pending: Option<u32>,
    /// A successor SIGUSR2 started is running (until it exits: once it serves,
    /// this process no longer starts any): a storm of signals starts one.
    started: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The successor that took over: the channel stays open until this process
    /// exits, which is how the successor learns it.
    handed: Option<Channel>,
}

/// Every backend address the operator set to drain or maint on the admin port.
fn set_by_hand(snap: &crate::snapshot::Snapshot) -> Vec<upgrade::ByHand> {
    let mut out: Vec<upgrade::ByHand> = Vec::new();
    for b in snap.services.iter().flat_map(|s| &s.backends) {
        let admin = b.health.admin();
        if admin != crate::health::Admin::Ready && !out.iter().any(|h| h.addr == b.addr) {
            out.push(upgrade::ByHand {
                addr: b.addr,
                state: admin.word().to_owned(),
            });
        }
    }
    out
}

/// A successor: the states its predecessor's operator set by hand, set again on the
/// same addresses (a state is the address's, whichever service names it).
pub(super) fn restore_by_hand(snap: &crate::snapshot::Snapshot, by_hand: &[upgrade::ByHand]) {
    for h in by_hand {
        let admin = match h.state.as_str() {
            "drain" => crate::health::Admin::Drain,
            "maint" => crate::health::Admin::Maint,
            _ => continue,
        };
        let mut found = false;
        for b in snap.services.iter().flat_map(|s| &s.backends) {
            if b.addr == h.addr {
                b.health.set_admin(admin);
                // At once, not at the health thread's next look: the shards start next.
                b.health.set_state(match admin {
                    crate::health::Admin::Drain => crate::health::State::Drain,
                    _ => crate::health::State::Maint,
                });
                found = true;
            }
        }
        if found {
            tracing::info!(backend = %h.addr, "upgrade: backend kept at {}, as set by hand", admin.word());
        }
    }
}

/// Whether the admin socket handed over is the one `addr` asks for (port 0: any
/// port on that address).
pub fn same_place(l: &TcpListener, addr: SocketAddr) -> bool {
    l.local_addr()
        .is_ok_and(|a| a == addr || (addr.port() == 0 && a.ip() == addr.ip()))
}

/// Tell systemd (`Type=notify`) how the service is; nothing without
/// `$NOTIFY_SOCKET`.
pub fn notify_systemd(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => UnixAddr::from_abstract_name(name),
        None => UnixAddr::from_pathname(PathBuf::from(&path)),
    };
    let sent = addr.and_then(|a| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &a));
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

impl Running {
    /// Remove the channel's path when it is this process's (not once handed over:
    /// the path is then the successor's).
    pub(super) fn remove_channel(&self) {
        if let (Some(p), None) = (&self.lifecycle.channel, &self.upgrading.handed) {
            let _ = std::fs::remove_file(p);
        }
    }
    /// Listen on the upgrade channel, when there is one (a successor that took over
    /// from another process replaces that one's path).
    pub(super) fn listen_for_successors(&self, tx: &crossbeam::channel::Sender<ControlEvent>) {
        let Some(path) = &self.lifecycle.channel else {
            return;
        };
        let tx = tx.clone();
        match upgrade::listen(path, move |ch| {
            let _ = tx.send(ControlEvent::Upgrade(ch));
        }) {
            Ok(()) => tracing::info!(channel = %path.display(), "upgrade channel listening"),
            Err(e) => tracing::error!(
                channel = %path.display(),
                error = %e,
                "cannot listen for upgrades: `sluice run --upgrade` and SIGUSR2 will fail"
            ),
        }
    }

    /// SIGUSR2: start this binary again with `--upgrade`; it connects to the channel.
    pub(super) fn start_successor(&mut self) {
        let Some((exe, args)) = &self.lifecycle.successor else {
            tracing::warn!(
                "SIGUSR2: no upgrade channel (start with --pidfile or --upgrade-socket)"
            );
            return;
        };
        if let Some(pid) = self.upgrading.pending {
            tracing::warn!(pid, "SIGUSR2: an upgrade is in progress already");
            return;
        }
        let started = std::sync::Arc::clone(&self.upgrading.started);
        if started.swap(true, Relaxed) {
            tracing::warn!("SIGUSR2: the successor started before is still starting");
            return;
        }
        let child = std::process::Command::new(exe)
            .args(args)
            .stdin(std::process::Stdio::null())
            .spawn();
        match child {
            Ok(mut child) => {
                let pid = child.id();
                tracing::info!(pid, exe = %exe.display(), "SIGUSR2: started a successor");
                // Reaped here: while this process lives, it is the parent.
                let reaped = std::sync::Arc::clone(&started);
                let reaper = std::thread::Builder::new()
                    .name("sluice-successor".into())
                    .spawn(move || {
                        match child.wait() {
                            Ok(status) if !status.success() => {
                                tracing::warn!(pid, %status, "the successor exited")
                            }
                            _ => {}
                        }
                        reaped.store(false, Relaxed);
                    });
                if reaper.is_err() {
                    started.store(false, Relaxed);
                }
            }
            Err(e) => {
                started.store(false, Relaxed);
                tracing::error!(
                    exe = %exe.display(),
                    error = %e,
                    "SIGUSR2: cannot start a successor; this process keeps serving"
                )
            }
        }
    }

    /// A successor connected: give it the sockets, and wait for its verdict on a
    /// thread of its own (this one goes on serving meanwhile).
    pub(super) fn hand_over(&mut self, ch: Channel, tx: &crossbeam::channel::Sender<ControlEvent>) {
        if let Some(pid) = self
            .upgrading
            .pending
            .or(self.upgrading.handed.as_ref().map(|_| 0))
        {
            tracing::warn!(pid, "upgrade refused: one is in progress already");
            return;
        }
        let verdicts = self.anycast.verdicts();
        let by_hand = set_by_hand(&self.published.load());
        let sockets = self.registry.sockets();
        let admin = self.admin_socket.as_ref();
        let others = self.processes.pids();
        let pid = match upgrade::hand_over(&ch, sockets, admin, &verdicts, &by_hand, &others) {
            Ok(pid) => pid,
            Err(why) => {
                tracing::error!("upgrade failed: {why}; this process keeps serving");
                return;
            }
        };
        tracing::info!(
            pid,
            "upgrade: sockets handed over; waiting for the successor to be ready"
        );
        self.upgrading.pending = Some(pid);
        self.processes.add(pid);
        let tx = tx.clone();
        let waited = std::thread::Builder::new()
            .name("sluice-upgrade-wait".into())
            .spawn(move || {
                let verdict = upgrade::await_ready(&ch, pid);
                let _ = tx.send(ControlEvent::UpgradeVerdict(pid, ch, verdict));
            });
        if let Err(e) = waited {
            tracing::error!(error = %e, "upgrade: cannot wait for the successor");
            self.upgrading.pending = None;
            self.processes.remove(pid);
        }
    }

    /// Draining after a handover: once no shard accepts on the sockets handed over
    /// (each reactor let go of them: only `held` is left), tell the successor.
    /// Bounded: a shard that does not let go within [`STOP_PATIENCE`] is not waited
    /// for (the successor is told all the same).
    pub(super) fn stopped_accepting(&self, held: &[std::sync::Arc<crate::snapshot::Listeners>]) {
        let Some(ch) = &self.upgrading.handed else {
            return;
        };
        let until = std::time::Instant::now() + STOP_PATIENCE;
        while held.iter().any(|l| std::sync::Arc::strong_count(l) > 1)
            && std::time::Instant::now() < until
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        upgrade::stopped(ch);
    }

    pub(super) fn upgrade_pending(&self) -> bool {
        self.upgrading.pending.is_some()
    }

    /// SIGTERM or SIGINT while a successor holds the sockets and has not answered:
    /// shutting them down now would shut them under the successor too (they are the
    /// same sockets), which would then serve nothing while its health check said
    /// 200. So the stop waits for the answer (at most [`upgrade::READY_TIMEOUT`],
    /// serving meanwhile): the successor serves, and this process drains as after
    /// any handover; or it failed, and this process stops as at any signal. A second
    /// signal exits at once, shutting nothing down.
    pub(super) fn stop_when_answered(&self, sig: i32, asked: &mut Option<i32>) {
        if asked.replace(sig).is_some() {
            tracing::warn!("second signal: exiting without waiting for the successor");
            std::process::exit(1);
        }
        tracing::info!(
            signal = sig,
            pid = self.upgrading.pending,
            "stopping once the successor holding the sockets answers"
        );
    }

    /// The successor's verdict. True when it serves: this process is to drain.
    pub(super) fn upgrade_verdict(
        &mut self,
        pid: u32,
        ch: Channel,
        verdict: Result<(), String>,
    ) -> bool {
        self.upgrading.pending = None;
        match verdict {
            Ok(()) => {
                tracing::info!(
                    pid,
                    "upgrade: the successor serves; this process stops accepting and drains"
                );
                self.processes.hand_over();
                // Before the drain: judged on it, every VIP would be withdrawn.
                self.anycast.hand_over();
                self.upgrading.handed = Some(ch);
                if let Some(stop) = &self.admin_stop {
                    stop.stop_accepting();
                }
                true
            }
            Err(why) => {
                // `successor=`, not `pid=`: after "this process keeps serving" a bare
                // pid reads as this process's.
                tracing::error!(
                    successor = pid,
                    "upgrade failed: the successor {why}; this process keeps serving"
                );
                self.processes.remove(pid);
                false
            }
        }
    }
}
