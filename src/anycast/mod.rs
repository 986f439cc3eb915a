//! Anycast VIPs: whether each `anycast = true` service's listen address should be
//! announced over BGP, and the process that tells a BGP speaker so.
//!
//! sluice is not a BGP speaker. It judges each VIP (`Vip`, pure: the hysteresis and
//! the reasons), a thread of its own follows the published snapshot and the backends'
//! health (`watch.rs`) and keeps the verdicts on a [`Board`] that the admin port
//! serves as `/v1/anycast`; `sluice announce` (`announce.rs`) polls that page and
//! prints ExaBGP API commands when a verdict changes.
//!
//! A VIP is announced only while sluice accepts on it (its listener is bound, the
//! process is not leaving) and its service has a backend up, with hysteresis: `rise`
//! good checks in a row announce a withdrawn VIP, `fall` bad ones withdraw an
//! announced one. Not accepting withdraws at once: a route to a closed port loses
//! every connection it attracts.
//!
//! A hot upgrade hands the verdicts over with the sockets ([`Verdict`]): the
//! successor starts the VIPs its predecessor announced as announced, and the process
//! that handed over keeps reporting them as they were ([`Board::hand_over`]), so
//! the announcement does not flap. Until a backend has had its first health check
//! (a process that just started), a check that finds no other backend up is no
//! evidence against an announced VIP.

pub mod announce;
mod watch;

pub use watch::spawn;

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;

/// What one check of a VIP saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// sluice has a listening socket on the VIP's address.
    pub accepting: bool,
    /// Backends that take new connections (UP, not draining, not marked down) and
    /// were health-checked once at least, when checked.
    pub backends_up: usize,
    /// Backends that would count as up but await their first health check.
    pub backends_unchecked: usize,
    pub backends: usize,
}

/// One VIP's announcement state: announced or not, and the run of checks that
/// agrees or disagrees with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vip {
    pub announced: bool,
    /// Checks in a row that disagree with `announced` (good ones while withdrawn, bad
    /// ones while announced); at `rise` or `fall` the state turns.
    against: u32,
}

/// The hysteresis: checks in a row that turn a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    pub rise: u32,
    pub fall: u32,
}

impl Vip {
    /// A VIP taken over announced (a process that inherits a live announcement).
    pub fn announced() -> Vip {
        Vip {
            announced: true,
            against: 0,
        }
    }

    /// Take one check; returns why the VIP is (or is not) announced after it.
    pub fn observe(&mut self, o: Observation, h: Hysteresis) -> String {
        if !o.accepting {
            *self = Vip::default();
            return "not accepting on the address".into();
        }
        let good = o.backends_up > 0;
        let (up, all) = (o.backends_up, o.backends);
        if !good && self.announced && o.backends_unchecked > 0 {
            // No evidence either way: neither a good check nor a bad one.
            let n = o.backends_unchecked;
            return format!("{n} of {all} backends not checked yet: announced until they are");
        }
        if good == self.announced {
            self.against = 0;
        } else {
            self.against += 1;
            let needed = if good { h.rise } else { h.fall };
            if self.against >= needed {
                *self = Vip {
                    announced: good,
                    against: 0,
                };
            }
        }
        match (self.announced, good) {
            (true, true) => format!("{up} of {all} backends up"),
            (false, false) => format!("no backend up (of {all})"),
            (false, true) => format!(
                "{up} of {all} backends up: announced after {} good checks in a row, {} so far",
                h.rise, self.against
            ),
            (true, false) => format!(
                "no backend up (of {all}): withdrawn after {} bad checks in a row, {} so far",
                h.fall, self.against
            ),
        }
    }
}

/// The prefix announced for a listen address: the host route of its IP.
pub fn prefix(addr: SocketAddr) -> String {
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => format!("{ip}/32"),
        IpAddr::V6(ip) => format!("{ip}/128"),
    }
}

/// One VIP as `/v1/anycast` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub prefix: String,
    pub service: String,
    pub listen: String,
    pub announce: bool,
    pub reason: String,
    /// `[anycast] admin_timeout_ms`: how long `sluice announce` keeps the routes
    /// when this page stops answering.
    pub admin_timeout_ms: u64,
}

/// One VIP's verdict as a hot upgrade hands it to the successor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub service: String,
    pub listen: SocketAddr,
    pub announce: bool,
}

/// The verdicts, written by the watcher (and by the control thread when leaving),
/// read by the admin port. Neither side is a shard.
#[derive(Debug, Default)]
pub struct Board {
    reports: Mutex<Vec<Report>>,
    /// The first check is done: until then an empty list would say "no VIP", and an
    /// announcer would withdraw what it had announced.
    checked: AtomicBool,
    leaving: AtomicBool,
    /// The sockets went to a successor: the verdicts are its to make.
    handed_over: AtomicBool,
}

/// Why every VIP is withdrawn once SIGTERM arrived.
pub const LEAVING: &str = "shutting down: withdrawn before draining";
/// Why a process that handed its sockets over reports what it last judged.
pub const HANDED_OVER: &str = "handed over to the successor, which judges it now";

impl Board {
    /// Store the watcher's verdicts; once leaving, they are withdrawn whatever they
    /// say; once handed over, they are not stored (this process no longer accepts on
    /// the VIPs, and says nothing its successor did not).
    pub(crate) fn set(&self, mut reports: Vec<Report>) {
        let mut held = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        if self.handed_over.load(Relaxed) {
            return;
        }
        if self.leaving.load(Relaxed) {
            withdraw(&mut reports);
        }
        *held = reports;
        self.checked.store(true, Relaxed);
    }

    /// A successor took the sockets and serves: keep reporting each VIP as last
    /// judged until this process exits. It drains, and a VIP judged on that
    /// ("not accepting") would be reported withdrawn while the successor announces it.
    pub fn hand_over(&self) {
        let mut held = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        self.handed_over.store(true, Relaxed);
        for r in held.iter_mut() {
            HANDED_OVER.clone_into(&mut r.reason);
        }
    }

    /// The verdicts for a successor: every VIP checked, announced or not.
    pub fn verdicts(&self) -> Vec<Verdict> {
        let held = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        held.iter()
            .filter_map(|r| {
                Some(Verdict {
                    service: r.service.clone(),
                    listen: r.listen.parse().ok()?,
                    announce: r.announce,
                })
            })
            .collect()
    }

    /// SIGTERM: report every VIP withdrawn from now on, while still accepting.
    pub fn leave(&self) {
        let mut held = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        self.leaving.store(true, Relaxed);
        withdraw(&mut held);
    }

    pub fn leaving(&self) -> bool {
        self.leaving.load(Relaxed)
    }

    pub fn reports(&self) -> Vec<Report> {
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `/v1/anycast`: a JSON array, one object per anycast VIP; `None` before the
    /// first check.
    pub fn json(&self) -> Option<String> {
        if !self.checked.load(Relaxed) {
            return None;
        }
        Some(serde_json::to_string(&self.reports()).unwrap_or_else(|_| "[]".into()))
    }
}

fn withdraw(reports: &mut [Report]) {
    for r in reports {
        r.announce = false;
        LEAVING.clone_into(&mut r.reason);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const H: Hysteresis = Hysteresis { rise: 3, fall: 2 };

    fn seen(backends_up: usize) -> Observation {
        Observation {
            accepting: true,
            backends_up,
            backends_unchecked: 0,
            backends: 2,
        }
    }

    /// The announced state after each observation.
    fn run(vip: &mut Vip, ups: &[usize]) -> Vec<bool> {
        ups.iter()
            .map(|&u| {
                vip.observe(seen(u), H);
                vip.announced
            })
            .collect()
    }

    #[test]
    fn rise_good_checks_announce_and_fall_bad_ones_withdraw() {
        let mut vip = Vip::default();
        assert_eq!(run(&mut vip, &[1, 1, 1, 2]), [false, false, true, true]);
        assert_eq!(run(&mut vip, &[0, 0, 0]), [true, false, false]);
        assert_eq!(run(&mut vip, &[1, 1, 1]), [false, false, true]);
    }

    #[test]
    fn a_flapping_backend_does_not_flap_the_route() {
        let mut vip = Vip::default();
        run(&mut vip, &[1, 1, 1]);
        // Down one check in two: never `fall` in a row.
        assert!(run(&mut vip, &[0, 1, 0, 1, 0, 1, 0]).iter().all(|&a| a));
        let mut vip = Vip::default();
        // Up one check in two (or two in three): never `rise` in a row.
        assert!(run(&mut vip, &[1, 0, 1, 1, 0, 1, 1, 0]).iter().all(|&a| !a));
    }

    #[test]
    fn not_accepting_withdraws_at_once_and_starts_over() {
        let mut vip = Vip::announced();
        let closed = Observation {
            accepting: false,
            ..seen(2)
        };
        assert_eq!(vip.observe(closed, H), "not accepting on the address");
        assert!(!vip.announced);
        assert_eq!(run(&mut vip, &[2, 2, 2]), [false, false, true]);
    }

    #[test]
    fn backends_not_checked_yet_keep_an_announced_vip_and_announce_none() {
        let unchecked = Observation {
            backends_unchecked: 2,
            ..seen(0)
        };
        // A successor's first checks of a VIP it took over announced.
        let mut vip = Vip::announced();
        for _ in 0..5 {
            assert_eq!(
                vip.observe(unchecked, H),
                "2 of 2 backends not checked yet: announced until they are"
            );
            assert!(vip.announced);
        }
        // Checked, and down: `fall` bad checks, as ever.
        assert_eq!(run(&mut vip, &[0, 0]), [true, false]);
        // Withdrawn, they are no reason to announce.
        for _ in 0..5 {
            assert_eq!(vip.observe(unchecked, H), "no backend up (of 2)");
            assert!(!vip.announced);
        }
        // A bad check counted before them still counts after.
        let mut vip = Vip::announced();
        vip.observe(seen(0), H);
        vip.observe(unchecked, H);
        assert!(!run(&mut vip, &[0])[0]);
    }

    #[test]
    fn reasons_say_where_the_run_stands() {
        let mut vip = Vip::default();
        assert_eq!(
            vip.observe(seen(1), H),
            "1 of 2 backends up: announced after 3 good checks in a row, 1 so far"
        );
        run(&mut vip, &[1, 1]);
        assert_eq!(vip.observe(seen(2), H), "2 of 2 backends up");
        assert_eq!(
            vip.observe(seen(0), H),
            "no backend up (of 2): withdrawn after 2 bad checks in a row, 1 so far"
        );
        assert_eq!(vip.observe(seen(0), H), "no backend up (of 2)");
    }

    #[test]
    fn prefixes_are_host_routes() {
        assert_eq!(prefix("192.0.2.10:80".parse().unwrap()), "192.0.2.10/32");
        assert_eq!(
            prefix("[2001:db8::10]:443".parse().unwrap()),
            "2001:db8::10/128"
        );
        assert_eq!(
            prefix("[::ffff:192.0.2.1]:80".parse().unwrap()),
            "192.0.2.1/32"
        );
    }

    #[test]
    fn leaving_withdraws_what_is_and_what_comes() {
        let board = Board::default();
        assert_eq!(board.json(), None, "nothing to say before the first check");
        let report = |announce| Report {
            prefix: "192.0.2.10/32".into(),
            service: "web".into(),
            listen: "192.0.2.10:80".into(),
            announce,
            reason: "1 of 1 backends up".into(),
            admin_timeout_ms: 3000,
        };
        board.set(vec![report(true)]);
        assert!(board.reports()[0].announce);
        board.leave();
        assert!(!board.reports()[0].announce);
        board.set(vec![report(true)]);
        let r = &board.reports()[0];
        assert_eq!((r.announce, r.reason.as_str()), (false, LEAVING));
        let parsed: Vec<Report> = serde_json::from_str(&board.json().unwrap()).unwrap();
        assert_eq!(parsed, board.reports());
    }

    /// A checked VIP's report (also what the upgrade's tests hand over).
    pub(crate) fn report(service: &str, listen: &str, announce: bool) -> Report {
        Report {
            prefix: prefix(listen.parse().unwrap()),
            service: service.into(),
            listen: listen.into(),
            announce,
            reason: "checked".into(),
            admin_timeout_ms: 3000,
        }
    }

    #[test]
    fn the_verdicts_handed_over_are_the_ones_reported() {
        let board = Board::default();
        assert!(board.verdicts().is_empty());
        board.set(vec![
            report("web", "192.0.2.10:80", true),
            report("db", "192.0.2.11:5432", false),
        ]);
        let v = |service: &str, listen: &str, announce| Verdict {
            service: service.into(),
            listen: listen.parse().unwrap(),
            announce,
        };
        assert_eq!(
            board.verdicts(),
            [
                v("web", "192.0.2.10:80", true),
                v("db", "192.0.2.11:5432", false)
            ]
        );
        // Leaving withdraws them: a successor would start them withdrawn.
        board.leave();
        assert!(board.verdicts().iter().all(|v| !v.announce));
    }

    #[test]
    fn a_board_handed_over_keeps_its_verdicts_while_the_process_drains() {
        let board = Board::default();
        board.set(vec![report("web", "192.0.2.10:80", true)]);
        board.hand_over();
        // The drain's checks: not accepting any more.
        board.set(vec![Report {
            announce: false,
            reason: "not accepting on the address".into(),
            ..report("web", "192.0.2.10:80", false)
        }]);
        let r = &board.reports()[0];
        assert_eq!((r.announce, r.reason.as_str()), (true, HANDED_OVER));
        assert!(board.json().unwrap().contains("\"announce\":true"));
    }
}
