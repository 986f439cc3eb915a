//! What a load-generator thread counts: requests, bytes, failures by cause, latency,
//! and with `--tls` its handshakes. Each thread owns its `Tally` (no atomic on the hot
//! path); the threads' tallies are merged once at the end.

use hdrhistogram::Histogram;
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::sync::atomic::{AtomicU64, Ordering};

/// What one thread measured.
#[derive(Debug)]
pub struct Tally {
    pub requests: u64,
    pub connects: u64,
    /// HTTP bytes (over TLS: plaintext, so that a TLS run's throughput is the same
    /// figure as a clear-text run's).
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub refused: u64,
    pub reset: u64,
    pub timeout: u64,
    pub bad_response: u64,
    pub non_2xx: u64,
    pub other: u64,
    /// Connections that failed before their TLS handshake completed, whatever the
    /// cause (alert, certificate refused, reset, timeout).
    pub tls_handshake: u64,
    /// Request latency in microseconds.
    pub latency_us: Histogram<u64>,
    pub tls: TlsTally,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            requests: 0,
            connects: 0,
            rx_bytes: 0,
            tx_bytes: 0,
            refused: 0,
            reset: 0,
            timeout: 0,
            bad_response: 0,
            non_2xx: 0,
            other: 0,
            tls_handshake: 0,
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
            tls: TlsTally::default(),
        }
    }

    pub fn merge(&mut self, o: &Tally) {
        self.requests += o.requests;
        self.connects += o.connects;
        self.rx_bytes += o.rx_bytes;
        self.tx_bytes += o.tx_bytes;
        self.refused += o.refused;
        self.reset += o.reset;
        self.timeout += o.timeout;
        self.bad_response += o.bad_response;
        self.non_2xx += o.non_2xx;
        self.other += o.other;
        self.tls_handshake += o.tls_handshake;
        self.latency_us.add(&o.latency_us).expect("same bounds");
        self.tls.merge(&o.tls);
    }

    /// Every failed request, whatever its cause.
    pub fn errors(&self) -> u64 {
        self.refused
            + self.reset
            + self.timeout
            + self.bad_response
            + self.non_2xx
            + self.other
            + self.tls_handshake
    }
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

/// The handshakes one thread completed, and what they negotiated.
#[derive(Debug, Default)]
pub struct TlsTally {
    pub full: u64,
    pub resumed: u64,
    /// Full handshakes that took a HelloRetryRequest (also counted in `full`): the
    /// server wanted a key share the client did not send, an extra round trip.
    pub hello_retries: u64,
    pub versions: Counts,
    pub groups: Counts,
    pub cipher_suites: Counts,
    /// Why the first failed handshake failed: the one line that tells a wrong
    /// `--cacert` from a server that speaks no TLS.
    pub first_failure: Option<String>,
}

impl TlsTally {
    fn merge(&mut self, o: &TlsTally) {
        self.full += o.full;
        self.resumed += o.resumed;
        self.hello_retries += o.hello_retries;
        self.versions.merge(&o.versions);
        self.groups.merge(&o.groups);
        self.cipher_suites.merge(&o.cipher_suites);
        if self.first_failure.is_none() {
            self.first_failure.clone_from(&o.first_failure);
        }
    }
}

/// How often each of a few names (versions, groups, suites) was seen. There are a
/// handful at most, so a vector searched in order: no hashing per handshake.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts(pub Vec<(&'static str, u64)>);

impl Counts {
    pub fn add(&mut self, name: &'static str, n: u64) {
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => *v += n,
            None => self.0.push((name, n)),
        }
    }

    fn merge(&mut self, o: &Counts) {
        for &(k, v) in &o.0 {
            self.add(k, v);
        }
    }

    /// `name n, name n` for the text report, most frequent first.
    pub fn render(&self) -> String {
        let mut v = self.0.clone();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let parts: Vec<String> = v.iter().map(|(k, n)| format!("{k} {n}")).collect();
        if parts.is_empty() {
            "-".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// A JSON object, name to count.
impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// One thread's running totals, published at its 100 ms sweep (not per request: no
/// atomic on the hot path) for the progress line.
#[derive(Debug, Default)]
pub struct Live {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
}

impl Live {
    pub fn publish(&self, t: &Tally) {
        self.requests.store(t.requests, Ordering::Relaxed);
        self.errors.store(t.errors(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_merge_and_render() {
        let mut a = Counts::default();
        a.add("1.3", 2);
        a.add("1.2", 1);
        a.add("1.3", 1);
        let mut b = Counts::default();
        b.add("1.2", 5);
        a.merge(&b);
        assert_eq!(a.0, vec![("1.3", 3), ("1.2", 6)]);
        assert_eq!(a.render(), "1.2 6, 1.3 3");
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"{"1.3":3,"1.2":6}"#);
        assert_eq!(Counts::default().render(), "-");
    }
}
