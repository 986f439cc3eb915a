//! What happened, compactly: a ring of the last events of a run, printed when the
//! oracle fails (and, with `SIM_TRACE=1`, as they happen).

use super::net::{Fate, SockId};
use std::collections::VecDeque;
use std::fmt;
use std::io::ErrorKind;
use std::net::SocketAddr;

/// Entries kept for the report of a failed run.
const KEEP: usize = 4096;

/// The result of a socket call, as the trace shows it.
#[derive(Debug, Clone, Copy)]
pub enum Res {
    Ok(usize),
    Would,
    Err(ErrorKind),
}

impl<T: Into<usize> + Copy> From<&std::io::Result<T>> for Res {
    fn from(r: &std::io::Result<T>) -> Res {
        match r {
            Ok(n) => Res::Ok((*n).into()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Res::Would,
            Err(e) => Res::Err(e.kind()),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Tr {
    Wait {
        timeout_ms: u64,
        events: usize,
    },
    Event {
        sock: SockId,
        read: bool,
        write: bool,
        hup: bool,
    },
    Accepted {
        sock: SockId,
        peer: SocketAddr,
    },
    Recv {
        sock: SockId,
        max: usize,
        r: Res,
    },
    Send {
        sock: SockId,
        len: usize,
        more: bool,
        r: Res,
    },
    Peek {
        sock: SockId,
        r: Res,
    },
    Shutdown {
        sock: SockId,
    },
    Close {
        sock: SockId,
        reset: bool,
        unread: usize,
    },
    Connect {
        sock: SockId,
        addr: SocketAddr,
        fate: Fate,
    },
    Settled {
        sock: SockId,
        up: bool,
    },
    Arrive {
        sock: SockId,
        bytes: usize,
        fin: bool,
        rst: bool,
        dropped: bool,
    },
    Want {
        sock: SockId,
        read: bool,
        write: bool,
    },
    Note(String),
}

pub struct Trace {
    ring: VecDeque<(u64, bool, Tr)>,
    live: bool,
}

impl Default for Trace {
    fn default() -> Self {
        Trace {
            ring: VecDeque::with_capacity(KEEP),
            live: std::env::var_os("SIM_TRACE").is_some(),
        }
    }
}

impl Trace {
    /// Record `tr` at `now_ms`; `core`: a call the shard core made (else the world's).
    pub fn add(&mut self, now_ms: u64, core: bool, tr: Tr) {
        if self.live {
            eprintln!("{}", Line(now_ms, core, &tr));
        }
        if self.ring.len() == KEEP {
            self.ring.pop_front();
        }
        self.ring.push_back((now_ms, core, tr));
    }

    /// The last `n` entries, one a line.
    pub fn tail(&self, n: usize) -> String {
        let skip = self.ring.len().saturating_sub(n);
        let mut s = String::new();
        for (t, core, tr) in self.ring.iter().skip(skip) {
            s += &format!("  {}\n", Line(*t, *core, tr));
        }
        s
    }
}

struct Line<'a>(u64, bool, &'a Tr);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.1 { "core " } else { "world" };
        write!(f, "{:>7} ms {who} {:?}", self.0, self.2)
    }
}
