//! PROXY protocol headers received on each shard: accepted by version, refused by
//! reason (each refusal is a closed connection).

use super::Counter;

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
    Malformed,
    Oversized,
    LeadingZero,
    Version,
    Command,
    Family,
    /// The source is not in `proxy_trusted`.
    Untrusted,
    /// No whole header within `[http] header_timeout_ms`.
    Timeout,
    /// The client left (or its socket failed) before its header was whole.
    Closed,
}

impl ProxyFailure {
    pub const COUNT: usize = 9;
    pub const ALL: [ProxyFailure; ProxyFailure::COUNT] = [
        ProxyFailure::Malformed,
        ProxyFailure::Oversized,
        ProxyFailure::LeadingZero,
        ProxyFailure::Version,
        ProxyFailure::Command,
        ProxyFailure::Family,
        ProxyFailure::Untrusted,
        ProxyFailure::Timeout,
        ProxyFailure::Closed,
    ];

    /// The label on `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            ProxyFailure::Malformed => "malformed",
            ProxyFailure::Oversized => "oversized",
            ProxyFailure::LeadingZero => "leading_zero",
            ProxyFailure::Version => "version",
            ProxyFailure::Command => "command",
            ProxyFailure::Family => "family",
            ProxyFailure::Untrusted => "untrusted",
            ProxyFailure::Timeout => "timeout",
            ProxyFailure::Closed => "closed",
        }
    }
}

impl From<crate::proxy::Error> for ProxyFailure {
    fn from(e: crate::proxy::Error) -> ProxyFailure {
        use crate::proxy::Error;
        match e {
            Error::Malformed => ProxyFailure::Malformed,
            Error::Oversized => ProxyFailure::Oversized,
            Error::LeadingZero => ProxyFailure::LeadingZero,
            Error::Version => ProxyFailure::Version,
            Error::Command => ProxyFailure::Command,
            Error::Family => ProxyFailure::Family,
        }
    }
}

impl ProxyCounters {
    pub fn failure(&self, why: ProxyFailure) {
        self.failures[why as usize].inc();
    }
}
