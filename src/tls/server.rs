//! The rustls server configuration every TLS port is built from: the aws-lc-rs
//! provider (X25519MLKEM768 preferred, X25519 and the NIST curves after it), TLS 1.3
//! and, unless `min_version = "1.3"`, TLS 1.2; ALPN; stateless resumption tickets
//! from one rotating key set for the whole process, so a client resumes on any shard
//! and across reloads.

use crate::config::{TlsConfig, TlsVersion};
use rustls::server::{NoServerSessionStorage, ProducesTickets, ResolvesServerCert};
use rustls::ServerConfig;
use std::sync::Arc;

/// The process's ticket keys: rotated every six hours, the previous key still
/// accepted for a period (rustls's `TicketRotator`).
pub fn tickets() -> Result<Arc<dyn ProducesTickets>, rustls::Error> {
    rustls::crypto::aws_lc_rs::Ticketer::new()
}

/// A server configuration choosing its certificate with `certs`.
pub fn server_config(
    certs: Arc<dyn ResolvesServerCert>,
    tls: &TlsConfig,
    tickets: &Arc<dyn ProducesTickets>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut c = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    c.alpn_protocols = tls.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    c.ticketer = Arc::clone(tickets);
    // Resumption is by ticket only: a session cache would be a lock every shard takes
    // on every full handshake (TLS 1.2 clients without ticket support do full ones).
    c.session_storage = Arc::new(NoServerSessionStorage {});
    Ok(Arc::new(c))
}

/// [`server_config`] for a port answering ACME's TLS-ALPN-01 (RFC 8737): `acme-tls/1`
/// is accepted after the configured protocols (a client offering others gets one of
/// those), and `certs` is expected to serve the challenge certificate to a
/// validation ([`crate::acme::AlpnResolver`]); such a connection then carries no
/// application data (`dataplane::tls`).
pub fn server_config_alpn01(
    certs: Arc<dyn ResolvesServerCert>,
    tls: &TlsConfig,
    tickets: &Arc<dyn ProducesTickets>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut c = Arc::unwrap_or_clone(server_config(certs, tls, tickets)?);
    c.alpn_protocols.push(crate::acme::ACME_TLS_ALPN.to_vec());
    Ok(Arc::new(c))
}
