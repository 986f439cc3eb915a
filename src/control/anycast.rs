//! Anycast on the control thread: the watcher started with the process, and the
//! withdrawal that comes before a drain.

use super::{ControlEvent, Running};
use crate::anycast::Board;
use crate::config::Config;
use crate::snapshot::Published;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The board `/v1/anycast` serves, and the thread that fills it.
pub(super) fn start(published: &Arc<Published>, cfg: &Config) -> anyhow::Result<Arc<Board>> {
    let board = Arc::new(Board::default());
    crate::anycast::spawn(Arc::clone(published), Arc::clone(&board), cfg.anycast)?;
    Ok(board)
}

impl Running {
    /// `[anycast]` when a reload changed it: its settings are read at start.
    pub(super) fn anycast_changed(&self, cfg: &Config) -> Option<String> {
        (cfg.anycast != self.started_anycast).then(|| "[anycast]".to_owned())
    }

    /// SIGTERM with anycast VIPs: report them withdrawn, then keep accepting for
    /// `[anycast] withdraw_grace_ms` while the routers converge, so that no new
    /// connection meets a closed port. A second signal ends the wait (and the process)
    /// at once, as it does a drain.
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
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match events.recv_timeout(left) {
                Ok(ControlEvent::Signal(_)) => {
                    tracing::warn!("second signal: exiting without waiting for connections");
                    std::process::exit(1);
                }
                Err(crossbeam::channel::RecvTimeoutError::Disconnected) => std::thread::sleep(left),
                _ => {}
            }
        }
    }
}
