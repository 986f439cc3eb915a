//! Anycast on the control thread: the watcher started with the process, and the
//! withdrawal that comes before a drain.

use super::{ControlEvent, Running};
use crate::anycast::{Board, Verdict};
use crate::config::Config;
use crate::snapshot::Published;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The board `/v1/anycast` serves, and the thread that fills it; the VIPs
/// `inherited` announced (a hot upgrade's) start announced.
pub(super) fn start(
    published: &Arc<Published>,
    cfg: &Config,
    inherited: &[Verdict],
) -> anyhow::Result<Arc<Board>> {
    let board = Arc::new(Board::default());
    crate::anycast::spawn(
        Arc::clone(published),
        Arc::clone(&board),
        cfg.anycast,
        inherited,
    )?;
    Ok(board)
}

impl Running {
    /// `[anycast]` when a reload changed it: its settings are read at start.
    pub(super) fn anycast_changed(&self, cfg: &Config) -> Option<String> {
        (cfg.anycast != self.started_anycast).then(|| "[anycast]".to_owned())
    }

    /// SIGTERM with anycast VIPs: report them withdrawn, then keep accepting for
    /// `[anycast] withdraw_grace_ms` while the routers converge, so that no new
    /// connection meets a closed port. A second stop ends the wait (and the process)
    /// at once, as it does a drain; a reload or an upgrade asked meanwhile is ignored.
    pub(super) fn leave_anycast(
        &self,
        sig: i32,
        events: &crossbeam::channel::Receiver<ControlEvent>,
    ) {
        let snap = self.published.load();
        if !snap.services.iter().any(|s| s.config.anycast) {
            return;
        }
        drop(snap);
        self.anycast.leave();
        let grace = Duration::from_millis(self.started_anycast.withdraw_grace_ms);
        tracing::info!(
            signal = sig,
            grace_ms = grace.as_millis() as u64,
            "stopping: anycast VIPs reported withdrawn, still accepting while routers converge"
        );
        let end = Instant::now() + grace;
        let mut stops = 1;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match events.recv_timeout(left) {
                Ok(ControlEvent::Signal(sig)) => super::signalled_while_stopping(sig, &mut stops),
                Err(crossbeam::channel::RecvTimeoutError::Disconnected) => std::thread::sleep(left),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A successor's first verdicts, before any health check: what its predecessor
    /// announced is announced, what it withdrew is withdrawn, and a VIP it did not
    /// judge is withdrawn until `rise` good checks.
    #[test]
    fn a_successor_reports_the_verdicts_it_inherited_from_its_first_answer() {
        let cfg = crate::config::parse(
            "[anycast]\ninterval_ms = 3600000\n\
             [[service]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nanycast = true\n\
             backends = [\"127.0.0.1:9\"]\n[service.health]\ninterval_ms = 100\n\
             [[service]]\nname = \"b\"\nlisten = \"127.0.0.2:0\"\nanycast = true\n\
             backends = [\"127.0.0.1:9\"]\n[service.health]\ninterval_ms = 100\n\
             [[service]]\nname = \"c\"\nlisten = \"127.0.0.3:0\"\nanycast = true\n\
             backends = [\"127.0.0.1:9\"]\n[service.health]\ninterval_ms = 100\n",
        )
        .expect("valid config");
        let mut registry = crate::control::Registry::new(1);
        let snap = registry.build(&cfg).expect("builds");
        let local = |i: usize| snap.services[i].local.unwrap();
        let verdict = |i: usize, announce| Verdict {
            service: snap.services[i].config.name.clone(),
            listen: local(i),
            announce,
        };
        let inherited = [verdict(0, true), verdict(1, false)];
        let first = local(0);
        let published = Arc::new(Published::new(snap));
        let board = start(&published, &cfg, &inherited).unwrap();
        // No wait: the first check is made before `start` returns.
        let reports = board.reports();
        let seen: Vec<_> = reports
            .iter()
            .map(|r| (r.service.as_str(), r.announce, r.reason.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "a",
                    true,
                    "1 of 1 backends not checked yet: announced until they are"
                ),
                ("b", false, "no backend up (of 1)"),
                ("c", false, "no backend up (of 1)"),
            ]
        );
        assert_eq!(reports[0].listen, first.to_string());
        // Nothing inherited: every VIP starts withdrawn, as without an upgrade.
        let fresh = start(&published, &cfg, &[]).unwrap();
        assert!(fresh.reports().iter().all(|r| !r.announce));
    }
}
