//! PROXY protocol headers received on each shard: accepted by version, refused by
//! reason (each refusal is a closed connection).

use super::Counter;
use crate::proxy::Error;

#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Headers accepted: `[0]` v1, `[1]` v2.
    pub headers: [Counter; 2],
    /// Of those, LOCAL commands (the sender's own checks), which keep the socket's
    /// address.
    pub local: Counter,
    /// Connections closed for their header, by [`ProxyFailure`] (as `usize`).
    pub failures: [Counter; ProxyFailure::COUNT],
}

/// Why a connection to an `accept_proxy` listener was closed before its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFailure {
    /// The header did not parse: the parser's own reason.
    Header(Error),
    /// The source is not in `proxy_trusted`.
    Untrusted,
    /// No whole header within `[http] header_timeout_ms`.
    Timeout,
    /// The client left (or its socket failed) before its header was whole.
    Closed,
}

/// How many reasons the parser has; the connection's own follow them.
const PARSE: usize = Error::ALL.len();

impl ProxyFailure {
    pub const COUNT: usize = PARSE + 3;

    /// Every reason, in counter order.
    pub fn all() -> impl Iterator<Item = ProxyFailure> {
        let own = [
            ProxyFailure::Untrusted,
            ProxyFailure::Timeout,
            ProxyFailure::Closed,
        ];
        Error::ALL.into_iter().map(ProxyFailure::Header).chain(own)
    }

    /// The reason's counter in [`ProxyCounters::failures`].
    pub fn index(self) -> usize {
        match self {
            ProxyFailure::Header(e) => e as usize,
            ProxyFailure::Untrusted => PARSE,
            ProxyFailure::Timeout => PARSE + 1,
            ProxyFailure::Closed => PARSE + 2,
        }
    }

    /// The label on `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            ProxyFailure::Header(e) => e.reason(),
            ProxyFailure::Untrusted => "untrusted",
            ProxyFailure::Timeout => "timeout",
            ProxyFailure::Closed => "closed",
        }
    }
}

impl From<Error> for ProxyFailure {
    fn from(e: Error) -> ProxyFailure {
        ProxyFailure::Header(e)
    }
}

impl ProxyCounters {
    pub fn failure(&self, why: ProxyFailure) {
        self.failures[why.index()].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter_and_label() {
        let all: Vec<ProxyFailure> = ProxyFailure::all().collect();
        assert_eq!(all.len(), ProxyFailure::COUNT);
        for (i, f) in all.iter().enumerate() {
            assert_eq!(f.index(), i, "{f:?}");
        }
        let mut names: Vec<&str> = all.iter().map(|f| f.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ProxyFailure::COUNT);
    }
}
