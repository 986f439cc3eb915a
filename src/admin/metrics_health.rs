//! `/metrics`: each backend's state and active check, as the CSV's `status`,
//! `check_status`, `check_code`, `chkfail`, `chkdown`, `lastchg` and `downtime`.

use super::figures::server_status;
use super::metrics::{esc, Family};
use crate::health::State;
use crate::snapshot::Snapshot;

const STATES: [State; 4] = [State::Up, State::Down, State::Drain, State::Maint];

pub(super) fn families(snap: &Snapshot, now: u64) -> Vec<Family> {
    let mut state = Family::new(
        "sluice_backend_state",
        "gauge",
        "1 for the backend's state (UP, DOWN, DRAIN, MAINT, as the CSV's status), else 0.",
    );
    let mut check = Family::new(
        "sluice_backend_check_status",
        "gauge",
        "1 for the last active check's outcome (L4OK, L4TOUT, L4CON, L7OK, L7STS, L7TOUT, L7RSP, SOCKERR; INI before the first).",
    );
    let mut code = Family::new(
        "sluice_backend_check_code",
        "gauge",
        "The HTTP status the last active check got.",
    );
    let mut chkfail = Family::new(
        "sluice_backend_check_failures_total",
        "counter",
        "Active checks failed while the backend was UP (chkfail).",
    );
    let mut chkdown = Family::new(
        "sluice_backend_down_transitions_total",
        "counter",
        "UP to DOWN changes (chkdown).",
    );
    let mut lastchg = Family::new(
        "sluice_backend_last_change_seconds",
        "gauge",
        "Seconds since the backend's state last changed, or since the start (lastchg).",
    );
    let mut downtime = Family::new(
        "sluice_backend_downtime_seconds_total",
        "counter",
        "Seconds the backend spent DOWN (downtime).",
    );
    for svc in &snap.services {
        for (i, b) in svc.backends.iter().enumerate() {
            let l = format!(
                "service=\"{}\",backend=\"{}\",server=\"{}\"",
                esc(&svc.config.name),
                b.addr,
                svc.svnames[i]
            );
            let now_state = server_status(svc, i, now);
            for s in STATES {
                let v = i64::from(s == now_state);
                state
                    .samples
                    .push((format!("{l},state=\"{}\"", s.word()), v));
            }
            let r = b.health.record();
            lastchg.samples.push((l.clone(), r.lastchg_s(now) as i64));
            downtime.samples.push((l.clone(), r.downtime_s(now) as i64));
            chkdown.samples.push((l.clone(), r.chkdown as i64));
            if !r.checked {
                continue;
            }
            let word = r.last.map_or("INI", |c| c.status.word());
            check
                .samples
                .push((format!("{l},check_status=\"{word}\""), 1));
            if let Some(c) = r.last.and_then(|c| c.code) {
                code.samples.push((l.clone(), i64::from(c)));
            }
            chkfail.samples.push((l, r.chkfail as i64));
        }
    }
    vec![state, check, code, chkfail, chkdown, lastchg, downtime]
}
