//! The Marathon poller thread: fetch, translate, hand to the control thread; every
//! `poll_interval_ms`, or at once when woken (admin `/_mlb_signal/hup`).

use super::apps::{translate, HealthMemory, Options, Translation};
use super::client::Client;
use super::labels::Reported;
use crate::config::MarathonConfig;
use crossbeam::channel::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

/// One poll's outcome.
pub type Poll = Result<Translation, String>;

/// One good translation, fetched now: tried every `poll_interval_ms` until `within`
/// has passed; the last failure otherwise. For a successor (a hot upgrade), which
/// must serve Marathon's services from its first moment as the process it replaces
/// does.
pub fn first(cfg: &MarathonConfig, within: Duration) -> Result<Translation, String> {
    let until = std::time::Instant::now() + within;
    let mut client = Client::new(cfg).map_err(|e| e.to_string())?;
    let opts = options(cfg);
    loop {
        let poll = client
            .fetch_apps()
            .map_err(|e| e.to_string())
            .and_then(|body| {
                translate(&body, &opts, &mut HealthMemory::new()).map_err(|e| e.to_string())
            });
        let pause = Duration::from_millis(cfg.poll_interval_ms);
        match poll {
            Ok(t) => return Ok(t),
            Err(e) if std::time::Instant::now() + pause >= until => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "Marathon fetch failed; trying again");
                std::thread::sleep(pause);
            }
        }
    }
}

fn options(cfg: &MarathonConfig) -> Options {
    Options {
        group: cfg.group.clone(),
        bind_address: cfg.bind_address,
        vip_network: cfg.vip_cidr,
        health_check: cfg.health_check,
    }
}

/// Each label sluice does not follow, once while it is present: a warning that the
/// app is served without what it asks.
fn report_ignored(reported: &mut Reported, t: &Translation) {
    for l in reported.news(&t.ignored) {
        tracing::warn!(
            app = ?l.app_id,
            label = ?l.label,
            "Marathon-LB label not supported by sluice: the app is served without it"
        );
    }
}

/// Start polling; results go to `out` (wrapped by `wrap`), a message on `wake` polls now.
pub fn spawn<E: Send + 'static>(
    cfg: &MarathonConfig,
    out: Sender<E>,
    wrap: fn(Poll) -> E,
    wake: Receiver<()>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let mut client = Client::new(cfg)?;
    let opts = options(cfg);
    let interval = Duration::from_millis(cfg.poll_interval_ms);
    let handle = std::thread::Builder::new()
        .name("sluice-marathon".into())
        .spawn(move || {
            let mut health = HealthMemory::new();
            let mut reported = Reported::default();
            loop {
                let poll = client
                    .fetch_apps()
                    .map_err(|e| e.to_string())
                    .and_then(|body| {
                        translate(&body, &opts, &mut health).map_err(|e| e.to_string())
                    });
                if let Ok(t) = &poll {
                    report_ignored(&mut reported, t);
                }
                if out.send(wrap(poll)).is_err() {
                    return;
                }
                match wake.recv_timeout(interval) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        })?;
    Ok(handle)
}
