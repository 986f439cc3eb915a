//! The health thread: one per process, its own mio loop. It checks every backend
//! address of every service that has a check, each on its own phase so a thousand
//! backends are not probed at once, and it is the one place a backend's state
//! changes: it folds its checks, the shards' passive down-marks and the snapshot's
//! drains into the state word the shards read, and logs every change once.

use super::probe::{Probe, Spec};
use super::state::{Admin, CheckResult, Health, Passive, State};
use crate::config::{HealthCheck, SendProxy};
use crate::snapshot::{clock_ms, Published, Snapshot};
use mio::{Events, Interest, Poll, Token};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often passive marks and drains are looked at for a change of state. A passive
/// mark lasts 5 s; a change is logged (and stamped) within this.
const OBSERVE_MS: u64 = 100;
/// Readiness events handled per loop turn.
const EVENTS: usize = 1024;

/// Called when a backend with a slow start came up: the control thread rebuilds the
/// service's table at a reduced weight.
pub type RampNotify = Box<dyn Fn() + Send>;

/// Start the health thread, following the snapshots `published` holds.
pub fn spawn(
    published: Arc<Published>,
    ramp: RampNotify,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let poll = Poll::new()?;
    std::thread::Builder::new()
        .name("sluice-health".into())
        .spawn(move || {
            let mut checker = Checker::new(published, poll, ramp);
            if let Err(e) = checker.run() {
                tracing::error!(error = %e, "health thread stopped");
            }
        })
}

/// The active check of one address.
struct Check {
    spec: Arc<Spec>,
    /// What the checks say: UP until `fall` fail in a row, then DOWN until `rise` pass.
    up: bool,
    /// Checks passed (while DOWN) or failed (while UP) in a row. A new check starts
    /// at `fall - 1`, as HAProxy's does (UP, "going down"): a backend that fails its
    /// first check is DOWN at once, one that passes it is fully UP.
    streak: u32,
    /// Of `streak`, the checks that ran (not the start's head start).
    ran: u32,
    /// How many checks in a row made the last change of `up` (for its log line).
    changed_after: u32,
    next_ms: u64,
    probe: Option<(Token, Probe)>,
    last: Option<CheckResult>,
}

/// What a snapshot says of an address: its health, the services naming it, whether
/// one drains it, the first check a service gives it.
type Named<'a> = (
    Arc<Health>,
    Vec<&'a str>,
    Out,
    Option<(&'a HealthCheck, Option<SendProxy>)>,
);

/// What the snapshot's services say of an address, besides its checks.
#[derive(Clone, Copy, Default)]
struct Out {
    /// Some service drains it (a task Marathon is killing).
    drain: bool,
    /// Some service's blue/green deploy keeps it in maintenance.
    maint: bool,
}

/// One backend address, whichever services name it.
struct Watched {
    health: Arc<Health>,
    /// The services naming it, for the log.
    services: String,
    out: Out,
    check: Option<Check>,
    /// The state as last logged (the record's, kept here so that the 100 ms look at
    /// every address takes no lock), and whether a DOWN came from a failed connect.
    state: State,
    passive_down: bool,
}

struct Checker {
    published: Arc<Published>,
    generation: u64,
    poll: Poll,
    ramp: RampNotify,
    watched: HashMap<SocketAddr, Watched>,
    /// Probes in flight, by token.
    tokens: HashMap<Token, SocketAddr>,
    next_token: usize,
    /// (when, address): a check to start or a probe's deadline; stale entries are
    /// skipped when they come up.
    timers: BinaryHeap<Reverse<(u64, SocketAddr)>>,
    next_observe_ms: u64,
}

impl Checker {
    fn new(published: Arc<Published>, poll: Poll, ramp: RampNotify) -> Self {
        Checker {
            published,
            generation: 0,
            poll,
            ramp,
            watched: HashMap::new(),
            tokens: HashMap::new(),
            next_token: 0,
            timers: BinaryHeap::new(),
            next_observe_ms: 0,
        }
    }

    fn run(&mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(EVENTS);
        loop {
            let now = clock_ms();
            if self.published.generation() != self.generation {
                let snap = self.published.load();
                if snap.draining {
                    return Ok(());
                }
                self.follow(&snap, now);
            }
            self.fire_timers(now);
            if now >= self.next_observe_ms {
                self.observe(now);
                self.next_observe_ms = now + OBSERVE_MS;
            }
            let next = self
                .timers
                .peek()
                .map_or(self.next_observe_ms, |Reverse((t, _))| *t)
                .min(self.next_observe_ms);
            let wait = Duration::from_millis(next.saturating_sub(clock_ms()).max(1));
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = clock_ms();
            for ev in events.iter() {
                if let Some(&addr) = self.tokens.get(&ev.token()) {
                    self.advance(addr, now);
                }
            }
        }
    }

    /// A new snapshot: the addresses it names, their services, drains and checks.
    /// What each address knew (its checks' streak, a probe in flight) is kept.
    fn follow(&mut self, snap: &Snapshot, now: u64) {
        self.generation = snap.generation;
        let mut next: HashMap<SocketAddr, Named> = HashMap::new();
        for svc in &snap.services {
            for (i, b) in svc.backends.iter().enumerate() {
                let e = next
                    .entry(b.addr)
                    .or_insert_with(|| (Arc::clone(&b.health), Vec::new(), Out::default(), None));
                e.1.push(&svc.config.name);
                // A deploy's maintenance is no drain: the task stays.
                e.2.drain |= svc.draining[i] && !svc.maint[i];
                e.2.maint |= svc.maint[i];
                // The first service (in snapshot order) with a check checks the address.
                if e.3.is_none() {
                    e.3 = svc
                        .config
                        .health
                        .as_ref()
                        .map(|h| (h, svc.config.proxy.send));
                }
            }
        }
        let mut old = std::mem::take(&mut self.watched);
        for (addr, (health, services, out, check)) in next {
            let mut w = old.remove(&addr).unwrap_or_else(|| Watched {
                health: Arc::clone(&health),
                services: String::new(),
                out: Out::default(),
                check: None,
                state: health.record().state,
                passive_down: false,
            });
            if !Arc::ptr_eq(&w.health, &health) {
                // A new Health for the address (it left every service and came back).
                self.drop_probe(&mut w);
                w.state = health.record().state;
                w.health = health;
                w.check = None;
            }
            w.services = services.join(",");
            w.out = out;
            let spec = check.map(|(c, send)| Spec::new(c, addr, send));
            self.set_check(&mut w, addr, spec, now);
            self.watched.insert(addr, w);
        }
        for (_, mut w) in old {
            self.drop_probe(&mut w);
        }
        self.observe(now);
    }

    /// Give `w` (at `addr`) the check `spec`, or none: a new check starts on its own
    /// phase; a changed one keeps its streak and applies from its next probe; a removed
    /// one drops its probe.
    fn set_check(&mut self, w: &mut Watched, addr: SocketAddr, spec: Option<Spec>, now: u64) {
        match (&mut w.check, spec) {
            (Some(c), Some(s)) if *c.spec == s => {}
            (Some(c), Some(s)) => c.spec = Arc::new(s),
            (None, Some(s)) => {
                // A phase of its own: the first check lands anywhere in one interval.
                let phase = crate::balance::hash::hash_bytes(
                    crate::balance::hash::SEED_FLOW,
                    addr.to_string().as_bytes(),
                ) % s.check.interval_ms.max(1);
                let next_ms = now + phase;
                self.timers.push(Reverse((next_ms, addr)));
                let head_start = s.check.fall.saturating_sub(1);
                w.check = Some(Check {
                    spec: Arc::new(s),
                    up: true,
                    streak: head_start,
                    ran: 0,
                    changed_after: 0,
                    next_ms,
                    probe: None,
                    last: None,
                });
                w.health.update(|r| {
                    r.checked = true;
                    r.rise = w.check.as_ref().map_or(0, |c| c.spec.check.rise);
                    r.fall = w.check.as_ref().map_or(0, |c| c.spec.check.fall);
                });
            }
            (Some(_), None) => {
                self.drop_probe(w);
                w.check = None;
                w.health.update(|r| r.checked = false);
            }
            (None, None) => {}
        }
        if let Some(c) = &w.check {
            let (rise, fall) = (c.spec.check.rise, c.spec.check.fall);
            let health = health_counter(c, rise, fall);
            w.health.update(|r| {
                r.rise = rise;
                r.fall = fall;
                r.health = health;
            });
        }
    }

    fn drop_probe(&mut self, w: &mut Watched) {
        if let Some((token, mut p)) = w.check.as_mut().and_then(|c| c.probe.take()) {
            let _ = self.poll.registry().deregister(&mut p.stream);
            self.tokens.remove(&token);
        }
    }

    /// Start the checks that are due and time out the probes past their deadline.
    fn fire_timers(&mut self, now: u64) {
        while let Some(&Reverse((at, addr))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(c) = self.watched.get_mut(&addr).and_then(|w| w.check.as_mut()) else {
                continue;
            };
            match &c.probe {
                Some((_, p)) if now >= p.deadline_ms => {
                    let r = p.timed_out(now);
                    self.finish(addr, r, now);
                }
                Some(_) => {}
                None if now >= c.next_ms => self.start(addr, now),
                None => {}
            }
        }
    }

    fn start(&mut self, addr: SocketAddr, now: u64) {
        let Some(c) = self.watched.get_mut(&addr).and_then(|w| w.check.as_mut()) else {
            return;
        };
        match Probe::connect(addr, Arc::clone(&c.spec), now) {
            Ok(mut p) => {
                let token = Token(self.next_token);
                self.next_token = self.next_token.wrapping_add(1);
                let interest = Interest::READABLE | Interest::WRITABLE;
                if self
                    .poll
                    .registry()
                    .register(&mut p.stream, token, interest)
                    .is_err()
                {
                    self.finish(addr, socket_error(), now);
                    return;
                }
                self.timers.push(Reverse((p.deadline_ms, addr)));
                self.tokens.insert(token, addr);
                c.probe = Some((token, p));
            }
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                let r = CheckResult {
                    status: super::CheckStatus::L4CON,
                    code: None,
                    duration_ms: 0,
                };
                self.finish(addr, r, now);
            }
            Err(_) => self.finish(addr, socket_error(), now),
        }
    }

    fn advance(&mut self, addr: SocketAddr, now: u64) {
        let Some(c) = self.watched.get_mut(&addr).and_then(|w| w.check.as_mut()) else {
            return;
        };
        let Some((_, p)) = c.probe.as_mut() else {
            return;
        };
        if let Some(r) = p.advance(now) {
            self.finish(addr, r, now);
        }
    }

    /// A check of `addr` ended with `r`: count it, maybe change the state, schedule
    /// the next one.
    fn finish(&mut self, addr: SocketAddr, r: CheckResult, now: u64) {
        let Some(w) = self.watched.get_mut(&addr) else {
            return;
        };
        let Some(c) = w.check.as_mut() else {
            return;
        };
        if let Some((token, mut p)) = c.probe.take() {
            let _ = self.poll.registry().deregister(&mut p.stream);
            self.tokens.remove(&token);
        }
        let (rise, fall) = (c.spec.check.rise, c.spec.check.fall);
        let failed_while_up = c.up && !r.status.passed();
        if r.status.passed() == c.up {
            c.streak = 0;
            c.ran = 0;
        } else {
            c.streak += 1;
            c.ran += 1;
            let needed = if c.up { fall } else { rise };
            if c.streak >= needed {
                c.up = !c.up;
                c.changed_after = c.ran;
                c.streak = 0;
                c.ran = 0;
            }
        }
        c.last = Some(r);
        let h = &c.spec.check;
        let wait = if c.streak > 0 {
            h.fast_interval_ms()
        } else if !c.up {
            h.down_interval_ms()
        } else {
            h.interval_ms
        };
        c.next_ms = now + wait;
        self.timers.push(Reverse((c.next_ms, addr)));
        let health = health_counter(c, rise, fall);
        w.health.update(|rec| {
            rec.last = Some(r);
            rec.health = health;
            if failed_while_up {
                rec.chkfail += 1;
            }
        });
        self.settle(addr, now);
    }

    /// Look at every address for a change its checks did not make: a passive mark
    /// set or expired, a drain begun or ended.
    fn observe(&mut self, now: u64) {
        let addrs: Vec<SocketAddr> = self.watched.keys().copied().collect();
        for addr in addrs {
            self.settle(addr, now);
        }
    }

    /// Bring `addr`'s word and record in line with what is known of it; log a change.
    fn settle(&mut self, addr: SocketAddr, now: u64) {
        let Some(w) = self.watched.get_mut(&addr) else {
            return;
        };
        let checked_down = w.check.as_ref().is_some_and(|c| !c.up);
        let admin = w.health.admin();
        let word_state = if admin == Admin::Maint || w.out.maint {
            State::Maint
        } else if w.out.drain || admin == Admin::Drain {
            State::Drain
        } else if checked_down {
            State::Down
        } else {
            State::Up
        };
        w.health.set_state(word_state);
        let look = w.health.look();
        let state = match word_state {
            State::Up if look.down_until_ms() > now => State::Down,
            s => s,
        };
        let old = w.state;
        // Whether a DOWN is the passive mark's, kept current while the state holds: a
        // passive DOWN the checks then confirm is theirs when it ends.
        let passive_before = w.passive_down;
        w.passive_down = state == State::Down && !checked_down;
        if old == state {
            return;
        }
        let reason = reason(w, old, state, passive_before);
        w.state = state;
        tracing::info!(
            service = %w.services,
            backend = %addr,
            reason = %reason,
            "backend {} → {}",
            old.word(),
            state.word()
        );
        let slowstart = w.check.as_ref().map_or(0, |c| c.spec.check.slowstart_ms);
        w.health.update(|r| {
            if old == State::Down {
                r.downtime_ms += now.saturating_sub(r.since_ms);
            }
            if old == State::Up && state == State::Down {
                r.chkdown += 1;
            }
            r.state = state;
            r.since_ms = now;
            r.reason = reason;
        });
        // Slow start, as HAProxy's: after the checks bring a backend back, or it leaves
        // maintenance; not when a failed connect's mark merely expires.
        let recovered = (old == State::Down && !passive_before) || old == State::Maint;
        if recovered && state == State::Up {
            w.health
                .up_since_ms
                .store(now.max(1), std::sync::atomic::Ordering::Relaxed);
            if slowstart > 0 {
                (self.ramp)();
            }
        }
    }
}

/// HAProxy's `check_health`: `rise + fall - 1` when fully up, 0 when fully down.
fn health_counter(c: &Check, rise: u32, fall: u32) -> u32 {
    if c.up {
        (rise + fall - 1).saturating_sub(c.streak)
    } else {
        c.streak
    }
}

fn socket_error() -> CheckResult {
    CheckResult {
        status: super::CheckStatus::SOCKERR,
        code: None,
        duration_ms: 0,
    }
}

/// Why `w` went from `old` to `new`, in words for the log and the stats page.
fn reason(w: &Watched, old: State, new: State, passive_before: bool) -> String {
    let last = w.check.as_ref().and_then(|c| c.last);
    let check = |verb: &str, n: u32| {
        let checks = if n == 1 { "check" } else { "checks" };
        match last {
            Some(r) => match r.code {
                Some(code) => format!(
                    "{n} {checks} {verb}, last {} (status {code})",
                    r.status.word()
                ),
                None => format!("{n} {checks} {verb}, last {}", r.status.word()),
            },
            None => format!("checks {verb}"),
        }
    };
    let changed_after = w.check.as_ref().map_or(0, |c| c.changed_after);
    let spec = w.check.as_ref().map(|c| &c.spec.check);
    match new {
        State::Drain if w.health.admin() == Admin::Drain => {
            "drained by hand on the admin port: no new connections".into()
        }
        State::Drain => "draining: no new connections".into(),
        State::Maint if w.health.admin() != Admin::Maint => {
            "kept in maintenance by a blue/green deploy: no new connections".into()
        }
        State::Maint => "maintenance set by hand on the admin port".into(),
        State::Up | State::Down if matches!(old, State::Maint | State::Drain) => {
            let what = if old == State::Maint {
                "maintenance"
            } else {
                "drain"
            };
            let now = if new == State::Up { "serving" } else { "down" };
            format!("{what} ended, {now}")
        }
        State::Down if w.check.as_ref().is_some_and(|c| !c.up) => check("failed", changed_after),
        State::Down => match w.health.passive_cause() {
            Some(Passive::TimedOut) => "connect timed out".into(),
            _ => "connect refused".into(),
        },
        State::Up if old == State::Down => match spec {
            Some(_) if !passive_before => check("passed", changed_after),
            _ => "connect mark expired".into(),
        },
        State::Up => "serving again".into(),
    }
}
