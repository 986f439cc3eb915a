//! The anycast thread: every `[anycast] interval_ms`, one check of every anycast VIP
//! of the published snapshot — is its address listened on, has its service a backend
//! up — through its [`Vip`], the verdicts stored on the [`Board`]. Changes are logged.

use super::{prefix, Board, Hysteresis, Observation, Report, Verdict, Vip};
use crate::config::AnycastConfig;
use crate::snapshot::{Backend, Published, Service, Snapshot};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The VIPs' states at start: those `inherited` announced from the process this one
/// replaces (a hot upgrade) start announced, every other one withdrawn.
fn initial(inherited: &[Verdict]) -> HashMap<(String, SocketAddr), Vip> {
    inherited
        .iter()
        .filter(|v| v.announce)
        .map(|v| {
            tracing::info!(
                prefix = %prefix(v.listen),
                service = %v.service,
                "anycast VIP: announced by the previous process, kept announced"
            );
            ((v.service.clone(), v.listen), Vip::announced())
        })
        .collect()
}

/// Make the first check, then start the thread that makes the others; it runs for
/// the life of the process. The first check is made here, before the admin port
/// answers: its first answer is a verdict, never "not checked yet" (an announcer
/// waits through that, but a successor's admin port must say at once what its
/// predecessor's said).
pub fn spawn(
    published: Arc<Published>,
    board: Arc<Board>,
    cfg: AnycastConfig,
    inherited: &[Verdict],
) -> std::io::Result<()> {
    let h = Hysteresis {
        rise: cfg.rise,
        fall: cfg.fall,
    };
    let mut vips = initial(inherited);
    board.set(check(&published.load(), &mut vips, h, cfg.admin_timeout_ms));
    std::thread::Builder::new()
        .name("sluice-anycast".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(cfg.interval_ms));
            let reports = check(&published.load(), &mut vips, h, cfg.admin_timeout_ms);
            board.set(reports);
        })?;
    Ok(())
}

/// One check of every anycast VIP of `snap`; VIPs no longer there are forgotten.
fn check(
    snap: &Snapshot,
    vips: &mut HashMap<(String, SocketAddr), Vip>,
    h: Hysteresis,
    admin_timeout_ms: u64,
) -> Vec<Report> {
    let now = crate::snapshot::clock_ms();
    let mut reports = Vec::new();
    let mut seen = HashMap::new();
    for svc in snap.services.iter().filter(|s| s.config.anycast) {
        let Some(local) = svc.local else { continue };
        let key = (svc.config.name.clone(), local);
        let mut vip = vips.get(&key).copied().unwrap_or_default();
        let taking = || {
            svc.backends
                .iter()
                .zip(svc.draining.iter())
                .filter(|(_, &draining)| !draining)
                .map(|(b, _)| up(svc, b, now))
        };
        let o = Observation {
            accepting: !snap.draining && snap.listeners.iter().any(|l| l.local == local),
            backends_up: taking().filter(|&u| u == Up::Yes).count(),
            backends_unchecked: taking().filter(|&u| u == Up::Unchecked).count(),
            backends: svc.backends.len(),
        };
        let was = vip.announced;
        let reason = vip.observe(o, h);
        let prefix = prefix(local);
        if vip.announced != was {
            let verdict = if vip.announced {
                "announce"
            } else {
                "withdraw"
            };
            tracing::info!(%prefix, service = %svc.config.name, %reason, "anycast VIP: {verdict}");
        }
        reports.push(Report {
            prefix,
            service: svc.config.name.clone(),
            listen: local.to_string(),
            announce: vip.announced,
            reason,
            admin_timeout_ms,
        });
        seen.insert(key, vip);
    }
    *vips = seen;
    reports
}

/// Whether a backend counts as up for an announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Up {
    Yes,
    /// UP, but not checked yet.
    Unchecked,
    No,
}

/// Up for an announcement: taking new connections, and, when checked, checked once
/// already — a backend starts UP before its first check (HAProxy's way), and a VIP
/// announced on that alone would be withdrawn at the first failure.
fn up(svc: &Service, b: &Backend, now_ms: u64) -> Up {
    if !b.is_up(now_ms) {
        return Up::No;
    }
    let record = b.health.record();
    if (svc.config.health.is_some() || record.checked) && record.last.is_none() {
        Up::Unchecked
    } else {
        Up::Yes
    }
}
