//! One backend address's state: what the shards read on every pick (one atomic word),
//! and what the admin port shows (the record of the last change and of the checks).
//!
//! Writers, each of its own part of the word, with a compare-and-swap so neither
//! overwrites the other:
//! - shards, after a refused or timed-out connect: the passive down-mark, a time
//!   until which new connections avoid the address (the low 62 bits);
//! - the health thread ([`super::checker`]): the state its checks, the control
//!   thread's drain marks and the operator's hand ([`Health::set_admin`]) give (the
//!   top 2 bits).
//!
//! The record (state as last logged, when and why it changed, the last check's
//! result, HAProxy's `chkfail`, `chkdown`, `downtime`) is written by the health thread
//! alone and read by the admin port, behind a mutex no shard ever takes.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// A backend's state, spelled as HAProxy's `status` column spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum State {
    /// Takes new connections.
    #[default]
    #[serde(rename = "UP")]
    Up,
    /// Failed its checks (`fall` in a row), or refused or timed out a connect lately.
    #[serde(rename = "DOWN")]
    Down,
    /// Takes no new connection; its established ones continue (a task being killed).
    #[serde(rename = "DRAIN")]
    Drain,
    /// Taken out by hand: no new connection, not checked.
    #[serde(rename = "MAINT")]
    Maint,
}

impl State {
    pub fn word(self) -> &'static str {
        match self {
            State::Up => "UP",
            State::Down => "DOWN",
            State::Drain => "DRAIN",
            State::Maint => "MAINT",
        }
    }

    fn bits(self) -> u64 {
        match self {
            State::Up => 0,
            State::Down => 1,
            State::Drain => 2,
            State::Maint => 3,
        }
    }

    fn from_bits(b: u64) -> State {
        match b & 3 {
            0 => State::Up,
            1 => State::Down,
            2 => State::Drain,
            _ => State::Maint,
        }
    }
}

/// What the operator set by hand on the admin port (HAProxy's `ready`, `drain`,
/// `maint` actions): it outranks what the checks say until set back to `Ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Admin {
    /// Nothing set by hand: the checks, passive marks and Marathon decide.
    #[default]
    Ready,
    /// No new connections; established ones continue.
    Drain,
    /// No new connections; established ones continue; shown as MAINT.
    Maint,
}

impl Admin {
    /// HAProxy's action word for it.
    pub fn word(self) -> &'static str {
        match self {
            Admin::Ready => "ready",
            Admin::Drain => "drain",
            Admin::Maint => "maint",
        }
    }

    fn from_u8(v: u8) -> Admin {
        match v {
            1 => Admin::Drain,
            2 => Admin::Maint,
            _ => Admin::Ready,
        }
    }
}

const STATE_SHIFT: u32 = 62;
const UNTIL_MASK: u64 = (1 << STATE_SHIFT) - 1;

/// One load of a backend's word: its state and its passive down-mark together.
#[derive(Debug, Clone, Copy)]
pub struct Look(u64);

impl Look {
    /// The state the health thread set (checks, drain, maintenance).
    #[inline]
    pub fn state(self) -> State {
        State::from_bits(self.0 >> STATE_SHIFT)
    }

    /// Until when (ms, process clock) a failed connect keeps new connections away.
    #[inline]
    pub fn down_until_ms(self) -> u64 {
        self.0 & UNTIL_MASK
    }

    /// Takes new connections: not taken out by its checks, drained (by Marathon or by
    /// hand) or in maintenance. A snapshot's drain (`Service::draining`) closes the
    /// address at once; the health thread's DRAIN follows it for every service naming
    /// the address, since it is one task going away.
    #[inline]
    pub fn open(self) -> bool {
        self.state() == State::Up
    }

    /// Open, and not avoided after a failed connect at `now_ms`.
    #[inline]
    pub fn up(self, now_ms: u64) -> bool {
        self.open() && self.down_until_ms() <= now_ms
    }

    /// The state as the admin port shows it: an UP backend avoided after a failed
    /// connect is DOWN.
    pub fn effective(self, now_ms: u64) -> State {
        match self.state() {
            State::Up if self.down_until_ms() > now_ms => State::Down,
            s => s,
        }
    }
}

/// What the last active check found, in HAProxy's words (`check_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CheckStatus {
    /// Connected (a TCP check's success).
    L4OK,
    /// The connect did not finish within the check's timeout.
    L4TOUT,
    /// The connect was refused or failed.
    L4CON,
    /// The status was in the expected range.
    L7OK,
    /// A status outside the expected range.
    L7STS,
    /// Connected, but no status line within the timeout.
    L7TOUT,
    /// Something that is not an HTTP response, or the connection closed before one.
    L7RSP,
    /// No socket could be made (this host's fault).
    SOCKERR,
}

impl CheckStatus {
    pub fn word(self) -> &'static str {
        match self {
            CheckStatus::L4OK => "L4OK",
            CheckStatus::L4TOUT => "L4TOUT",
            CheckStatus::L4CON => "L4CON",
            CheckStatus::L7OK => "L7OK",
            CheckStatus::L7STS => "L7STS",
            CheckStatus::L7TOUT => "L7TOUT",
            CheckStatus::L7RSP => "L7RSP",
            CheckStatus::SOCKERR => "SOCKERR",
        }
    }

    /// HAProxy's `check_desc` for it.
    pub fn desc(self) -> &'static str {
        match self {
            CheckStatus::L4OK => "Layer4 check passed",
            CheckStatus::L4TOUT => "Layer4 timeout",
            CheckStatus::L4CON => "Layer4 connection problem",
            CheckStatus::L7OK => "Layer7 check passed",
            CheckStatus::L7STS => "Layer7 wrong status",
            CheckStatus::L7TOUT => "Layer7 timeout",
            CheckStatus::L7RSP => "Layer7 invalid response",
            CheckStatus::SOCKERR => "Socket error",
        }
    }

    pub fn passed(self) -> bool {
        matches!(self, CheckStatus::L4OK | CheckStatus::L7OK)
    }
}

/// One check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckResult {
    pub status: CheckStatus,
    /// The HTTP status received, if any (`check_code`).
    pub code: Option<u16>,
    pub duration_ms: u64,
}

/// What the admin port shows of a backend address: the health thread's record.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The state as last logged.
    pub state: State,
    /// When it last changed (ms, process clock); 0 when it never did.
    pub since_ms: u64,
    /// Why it last changed.
    pub reason: String,
    /// Actively checked (`[service.health]` or a Marathon health check).
    pub checked: bool,
    pub rise: u32,
    pub fall: u32,
    /// HAProxy's `check_health`: 0 to `rise + fall - 1`, up at `rise` and above.
    pub health: u32,
    pub last: Option<CheckResult>,
    /// Checks failed while the backend was up (HAProxy's `chkfail`).
    pub chkfail: u64,
    /// UP → DOWN transitions (HAProxy's `chkdown`).
    pub chkdown: u64,
    /// Time spent DOWN in the episodes that ended, in ms.
    pub downtime_ms: u64,
}

impl Record {
    /// Seconds spent DOWN so far (HAProxy's `downtime`), the current episode included.
    pub fn downtime_s(&self, now_ms: u64) -> u64 {
        let current = match self.state {
            State::Down => now_ms.saturating_sub(self.since_ms),
            _ => 0,
        };
        (self.downtime_ms + current) / 1000
    }

    /// Seconds since the last change (HAProxy's `lastchg`).
    pub fn lastchg_s(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.since_ms) / 1000
    }
}

/// Why the shards last marked an address down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passive {
    Refused,
    TimedOut,
}

/// What is known of a backend address whichever service reached it: a refused connect
/// means the same for every service, a failed check too, and a task Marathon kills is
/// gone for all.
#[derive(Debug)]
pub struct Health {
    /// State (top 2 bits) and passive down-until (the rest): see [`Look`].
    word: AtomicU64,
    /// When established connections to this address are closed (ms on the process
    /// clock): set when Marathon kills or removes the task; `u64::MAX` when serving.
    pub drain_deadline_ms: AtomicU64,
    /// The cause of the last passive mark: 1 refused, 2 timed out.
    passive: std::sync::atomic::AtomicU8,
    /// What the operator set by hand ([`Admin`] as `u8`); the health thread folds it
    /// into the word.
    admin: std::sync::atomic::AtomicU8,
    /// When the address last came up after being down (ms, process clock): the start
    /// of its slow start; 0 when never.
    pub up_since_ms: AtomicU64,
    /// Boxed: the health thread writes it (and its lock) often, and the word beside it
    /// is read on every pick; apart, those writes do not evict the shards' line.
    record: Box<Mutex<Record>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            word: AtomicU64::new(0),
            drain_deadline_ms: AtomicU64::new(u64::MAX),
            passive: std::sync::atomic::AtomicU8::new(0),
            admin: std::sync::atomic::AtomicU8::new(0),
            up_since_ms: AtomicU64::new(0),
            record: Box::new(Mutex::new(Record::default())),
        }
    }
}

impl Health {
    /// The word: one relaxed load, all a pick needs.
    #[inline]
    pub fn look(&self) -> Look {
        Look(self.word.load(Relaxed))
    }

    /// Avoid this address until `until_ms` (a later mark wins); true when it was not
    /// avoided at `now_ms`.
    pub fn mark_down(&self, now_ms: u64, until_ms: u64, cause: Passive) -> bool {
        let until_ms = until_ms.min(UNTIL_MASK);
        let mut before = self.word.load(Relaxed);
        loop {
            if before & UNTIL_MASK >= until_ms {
                return (before & UNTIL_MASK) <= now_ms;
            }
            let next = (before & !UNTIL_MASK) | until_ms;
            match self
                .word
                .compare_exchange_weak(before, next, Relaxed, Relaxed)
            {
                Ok(_) => {
                    // The cause of the mark that stands: a mark that lost says nothing.
                    let code = match cause {
                        Passive::Refused => 1,
                        Passive::TimedOut => 2,
                    };
                    self.passive.store(code, Relaxed);
                    return (before & UNTIL_MASK) <= now_ms;
                }
                Err(actual) => before = actual,
            }
        }
    }

    /// The cause of the last passive mark.
    pub fn passive_cause(&self) -> Option<Passive> {
        match self.passive.load(Relaxed) {
            1 => Some(Passive::Refused),
            2 => Some(Passive::TimedOut),
            _ => None,
        }
    }

    /// What the operator set by hand.
    pub fn admin(&self) -> Admin {
        Admin::from_u8(self.admin.load(Relaxed))
    }

    /// Set by hand (the admin port); the health thread applies it to the word within
    /// its next look (100 ms) and logs the change.
    pub fn set_admin(&self, admin: Admin) {
        let v = match admin {
            Admin::Ready => 0,
            Admin::Drain => 1,
            Admin::Maint => 2,
        };
        self.admin.store(v, Relaxed);
    }

    /// Set the state part of the word (the health thread's), keeping the down-mark.
    pub(crate) fn set_state(&self, state: State) {
        let mut before = self.word.load(Relaxed);
        loop {
            let next = (before & UNTIL_MASK) | (state.bits() << STATE_SHIFT);
            if next == before {
                return;
            }
            match self
                .word
                .compare_exchange_weak(before, next, Relaxed, Relaxed)
            {
                Ok(_) => return,
                Err(actual) => before = actual,
            }
        }
    }

    /// A copy of the record, for the admin port.
    pub fn record(&self) -> Record {
        self.record.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Change the record (the health thread).
    pub(crate) fn update<T>(&self, f: impl FnOnce(&mut Record) -> T) -> T {
        let mut r = match self.record.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_marks_and_states_share_one_word_without_overwriting() {
        let h = Health::default();
        assert!(h.look().up(0));
        assert!(h.mark_down(100, 5_100, Passive::Refused), "up until now");
        assert!(
            !h.mark_down(200, 5_000, Passive::TimedOut),
            "an earlier mark loses"
        );
        assert_eq!(
            h.passive_cause(),
            Some(Passive::Refused),
            "and says nothing"
        );
        assert_eq!(h.look().down_until_ms(), 5_100);
        h.set_state(State::Down);
        assert_eq!(h.look().down_until_ms(), 5_100, "the mark survives");
        assert_eq!(h.look().state(), State::Down);
        assert!(!h.mark_down(300, 6_000, Passive::TimedOut));
        assert_eq!(h.look().state(), State::Down, "the state survives");
        assert_eq!(h.passive_cause(), Some(Passive::TimedOut));
        h.set_state(State::Up);
        assert!(!h.look().up(5_999) && h.look().up(6_000));
        assert_eq!(h.look().effective(5_999), State::Down);
        assert_eq!(h.look().effective(6_000), State::Up);
    }

    #[test]
    fn only_up_is_open_in_the_word() {
        let h = Health::default();
        for (s, open) in [
            (State::Up, true),
            (State::Drain, false),
            (State::Down, false),
            (State::Maint, false),
        ] {
            h.set_state(s);
            assert_eq!(h.look().open(), open, "{s:?}");
            assert_eq!(h.look().effective(0), s);
        }
    }

    #[test]
    fn downtime_counts_the_current_episode() {
        let r = Record {
            state: State::Down,
            since_ms: 10_000,
            downtime_ms: 4_000,
            ..Record::default()
        };
        assert_eq!(r.downtime_s(13_500), 7);
        assert_eq!(r.lastchg_s(13_500), 3);
    }
}
