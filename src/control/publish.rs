//! What publishing a snapshot tells: the services logged when new or changed, the
//! drain deadlines of backends that stopped serving, the Marathon apps seen.

use std::sync::atomic::Ordering::Relaxed;

/// Apps that gave a service or VIP, and their tasks, in a Marathon translation.
pub(super) fn seen(t: &crate::marathon::apps::Translation) -> (u64, u64) {
    use std::collections::HashSet;
    let services = t.services.iter().map(|s| (&s.app_id, &s.backends));
    let vips = t.vips.iter().map(|(v, b)| (&v.app_id, b));
    let (mut apps, mut tasks) = (HashSet::new(), HashSet::new());
    for (app, backends) in services.chain(vips) {
        apps.insert(app.as_str());
        tasks.extend(backends.iter().map(|b| b.task_id.as_str()));
    }
    (apps.len() as u64, tasks.len() as u64)
}

/// One line per listener and per service of `next` that is new or changed since
/// `old` (every one at start): a reload, a Marathon event or a certificate change that
/// leaves a listener or a service as it was does not log it again.
pub(super) fn log_services(
    old: Option<&crate::snapshot::Snapshot>,
    next: &crate::snapshot::Snapshot,
) {
    use crate::snapshot::Front;
    let had = |local, front: &Front| {
        old.is_some_and(|o| {
            o.listeners.iter().zip(&o.fronts).any(|(l, f)| {
                l.local == local && std::mem::discriminant(f) == std::mem::discriminant(front)
            })
        })
    };
    for (l, f) in next.listeners.iter().zip(&next.fronts) {
        match f {
            Front::Http if !had(l.local, f) => tracing::info!(listen = %l.local, "http listening"),
            Front::Https if !had(l.local, f) => {
                tracing::info!(listen = %l.local, "https listening")
            }
            _ => {}
        }
    }
    let before: std::collections::HashSet<ServiceLine> = old.map_or_else(Default::default, |o| {
        o.services.iter().map(|s| ServiceLine::of(o, s)).collect()
    });
    for s in &next.services {
        let line = ServiceLine::of(next, s);
        if before.contains(&line) {
            continue;
        }
        tracing::info!(
            service = %line.name,
            listen = %line.listen,
            mode = %line.mode,
            backends = line.backends,
            balance = %line.balance,
            tls = line.tls,
            "service listening"
        );
    }
}

/// What the log says of a service, in the configuration's words.
#[derive(PartialEq, Eq, Hash)]
struct ServiceLine {
    name: String,
    listen: String,
    mode: String,
    backends: usize,
    balance: String,
    tls: bool,
}

impl ServiceLine {
    fn of(snapshot: &crate::snapshot::Snapshot, s: &crate::snapshot::Service) -> ServiceLine {
        // Without a port of its own: where it is reached (by server name, or by Host
        // and path on the shared listeners).
        let shared = if !s.config.tls.sni.is_empty() {
            "[https]/sni"
        } else if snapshot.https.is_some() {
            "[http],[https]"
        } else {
            "[http]"
        };
        ServiceLine {
            name: s.config.name.clone(),
            listen: s.local.map_or_else(|| shared.to_owned(), |l| l.to_string()),
            // The enums' names are the configuration's words, lower-cased.
            mode: format!("{:?}", s.config.mode).to_lowercase(),
            backends: s.backends.len(),
            balance: format!("{:?}", s.config.balance).to_lowercase(),
            tls: s.tls.is_some(),
        }
    }
}

/// Backends that no longer take connections (removed, or draining) get a deadline for
/// their established connections; the ones serving again lose theirs. Shards close
/// connections past the deadline in their once-a-second sweep.
pub(super) fn set_drain_deadlines(
    old: &crate::snapshot::Snapshot,
    next: &crate::snapshot::Snapshot,
    deadline_ms: u64,
) {
    let mut serving = std::collections::HashSet::new();
    for svc in &next.services {
        for (i, b) in svc.backends.iter().enumerate() {
            // Kept in maintenance by a deploy: its connections finish at their pace.
            if svc.draining[i] && !svc.maint[i] {
                b.health.drain_deadline_ms.fetch_min(deadline_ms, Relaxed);
            } else {
                serving.insert(b.addr);
                b.health.drain_deadline_ms.store(u64::MAX, Relaxed);
            }
        }
    }
    for b in old.services.iter().flat_map(|s| s.backends.iter()) {
        if !serving.contains(&b.addr) {
            b.health.drain_deadline_ms.fetch_min(deadline_ms, Relaxed);
        }
    }
}
