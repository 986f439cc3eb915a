//! The challenges an order has pending, as the shards answer them: HTTP-01 on
//! `[http] listen` (`/.well-known/acme-challenge/TOKEN` → the key authorization,
//! before routing), TLS-ALPN-01 on `[https] listen` (a ClientHello offering only
//! `acme-tls/1` gets the challenge certificate, RFC 8737).
//!
//! The ACME thread stores a new [`Pending`] whenever an order starts or ends; shards
//! and handshakes load it lock-free, as they load a snapshot. A request whose path
//! does not start with the challenge prefix costs one prefix comparison and no load;
//! a token not pending falls through to routing (and its 404).

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// Where HTTP-01 validation asks (RFC 8555, section 8.3).
pub const HTTP01_PREFIX: &[u8] = b"/.well-known/acme-challenge/";

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// What is pending now: tokens with their key authorizations, and server names with
/// their challenge certificates. A handful at most (one per name of the orders in
/// progress): a scan beats a map.
#[derive(Default)]
pub struct Pending {
    http: Vec<(Box<str>, Arc<str>)>,
    alpn: Vec<(Box<str>, Arc<CertifiedKey>)>,
}

impl Pending {
    pub fn add_http(&mut self, token: &str, key_authorization: &str) {
        self.http.push((token.into(), key_authorization.into()));
    }

    pub fn add_alpn(&mut self, name: &str, key: Arc<CertifiedKey>) {
        self.alpn.push((name.to_ascii_lowercase().into(), key));
    }

    pub fn is_empty(&self) -> bool {
        self.http.is_empty() && self.alpn.is_empty()
    }
}

/// The cell the ACME thread writes and the data plane reads.
#[derive(Default)]
pub struct Challenges {
    pending: ArcSwap<Pending>,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.pending.load();
        f.debug_struct("Challenges")
            .field("http01", &p.http.len())
            .field("tls_alpn01", &p.alpn.len())
            .finish()
    }
}

impl Challenges {
    /// Publish what is pending now (an empty set when an order ends).
    pub fn set(&self, pending: Pending) {
        self.pending.store(Arc::new(pending));
    }

    /// The key authorization to answer a GET of `path` with, when it asks for a
    /// pending HTTP-01 token (a query string is ignored).
    pub fn http01(&self, path: &[u8]) -> Option<Arc<str>> {
        let rest = path.strip_prefix(HTTP01_PREFIX)?;
        let token = rest.split(|&b| b == b'?').next().unwrap_or(rest);
        let pending = self.pending.load();
        pending
            .http
            .iter()
            .find(|(t, _)| t.as_bytes() == token)
            .map(|(_, k)| Arc::clone(k))
    }

    /// The challenge certificate for `server_name`, when one is pending.
    fn alpn01(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let pending = self.pending.load();
        pending
            .alpn
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(server_name))
            .map(|(_, k)| Arc::clone(k))
    }
}

/// `[https] listen`'s certificate choice with TLS-ALPN-01: a ClientHello offering
/// exactly `acme-tls/1` is a validation — it gets the name's challenge certificate,
/// or nothing (the handshake fails) when none is pending, never a served
/// certificate; any other goes to the configured certificates.
pub struct AlpnResolver {
    pub certs: Arc<dyn ResolvesServerCert>,
    pub challenges: Arc<Challenges>,
}

impl std::fmt::Debug for AlpnResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlpnResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for AlpnResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if is_validation(&hello) {
            return self.challenges.alpn01(hello.server_name()?);
        }
        self.certs.resolve(hello)
    }
}

fn is_validation(hello: &ClientHello<'_>) -> bool {
    let Some(mut offered) = hello.alpn() else {
        return false;
    };
    offered.next() == Some(ACME_TLS_ALPN) && offered.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pending_tokens_under_the_prefix_are_answered() {
        let c = Challenges::default();
        assert!(c.http01(b"/.well-known/acme-challenge/abc").is_none());
        let mut p = Pending::default();
        p.add_http("abc", "abc.thumb");
        c.set(p);
        let hit = c.http01(b"/.well-known/acme-challenge/abc?x=1");
        assert_eq!(hit.as_deref(), Some("abc.thumb"));
        assert!(c.http01(b"/.well-known/acme-challenge/abd").is_none());
        assert!(c.http01(b"/.well-known/acme-challenge/").is_none());
        assert!(c.http01(b"/abc").is_none());
        c.set(Pending::default());
        assert!(c.http01(b"/.well-known/acme-challenge/abc").is_none());
    }
}
