//! What the load generator's TLS client offers and trusts (`--tls` and the flags that
//! go with it), built once into a rustls `ClientConfig`; each thread then takes its
//! own copy with its own session store (`Sessions`).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, NamedGroup, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The TLS flags of `sluice bench`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// HTTPS: a TLS handshake (rustls, aws-lc-rs) on each connection before its
    /// requests; ALPN http/1.1 offered. Needs --insecure or --cacert.
    #[arg(long = "tls", id = "tls", requires = "trust")]
    pub enabled: bool,
    /// The server name sent as SNI and verified. Default: --host without its port;
    /// none (no SNI, the target's IP verified) when that is absent or an address.
    #[arg(long, requires = "tls")]
    pub sni: Option<String>,
    /// Accept any certificate (self-signed, test): the server's signature over the
    /// handshake is still checked, so the handshake costs what a real one does.
    #[arg(long, requires = "tls", group = "trust")]
    pub insecure: bool,
    /// Trust only the certificates in this PEM file.
    #[arg(long, requires = "tls", group = "trust")]
    pub cacert: Option<PathBuf>,
    /// Offer only this version. Default: 1.3 and 1.2, 1.3 preferred.
    #[arg(long, value_enum, requires = "tls")]
    pub tls_version: Option<TlsVersion>,
    /// Resume sessions: each thread keeps the tickets its connections receive (room
    /// for two a connection), so in close mode every connection after each one's first
    /// resumes. Without it every handshake is full.
    #[arg(long, requires = "tls")]
    pub resume: bool,
    /// Key exchange groups to offer, in order (comma-separated, e.g. X25519 or
    /// secp256r1). Default: rustls's, X25519MLKEM768 first, whose share goes with an
    /// X25519 one.
    #[arg(long, requires = "tls", value_delimiter = ',')]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsVersion {
    #[value(name = "1.2")]
    V1_2,
    #[value(name = "1.3")]
    V1_3,
}

/// What every thread's TLS client shares.
#[derive(Debug)]
pub struct TlsPlan {
    /// Resumption disabled; [`TlsPlan::for_thread`] gives each thread its store.
    config: ClientConfig,
    /// Asked for in SNI (a DNS name) and verified.
    pub name: ServerName<'static>,
    pub resume: bool,
    /// The versions offered, preferred first, for the report.
    pub offered: Vec<&'static str>,
}

impl TlsPlan {
    /// `host`: the Host header given, if any; `target`: where connections go.
    pub fn new(args: &TlsArgs, host: Option<&str>, target: SocketAddr) -> anyhow::Result<TlsPlan> {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if !args.groups.is_empty() {
            provider.kx_groups = choose_groups(&provider, &args.groups)?;
        }
        let algorithms = provider.signature_verification_algorithms;
        let (versions, offered): (&[&rustls::SupportedProtocolVersion], _) = match args.tls_version
        {
            None => (rustls::DEFAULT_VERSIONS, vec!["1.3", "1.2"]),
            Some(TlsVersion::V1_3) => (&[&rustls::version::TLS13], vec!["1.3"]),
            Some(TlsVersion::V1_2) => (&[&rustls::version::TLS12], vec!["1.2"]),
        };
        let builder = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)?;
        let mut config = match &args.cacert {
            Some(path) => builder.with_root_certificates(roots(path)?),
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(algorithms))),
        }
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = Resumption::disabled();
        Ok(TlsPlan {
            config,
            name: server_name(args.sni.as_deref(), host, target)?,
            resume: args.resume,
            offered,
        })
    }

    /// The configuration of a thread with `connections` connections. With
    /// `--resume`, a session store of its own: the tickets one connection receives are
    /// there for the thread's next ones, and no lock is shared between threads.
    pub fn for_thread(&self, connections: usize) -> Arc<ClientConfig> {
        let mut c = self.config.clone();
        if self.resume {
            c.resumption = Resumption::store(Arc::new(Sessions::new(connections)));
        }
        Arc::new(c)
    }

    /// The name sent in SNI, if one is.
    pub fn sni(&self) -> Option<String> {
        match &self.name {
            ServerName::DnsName(d) => Some(d.as_ref().to_owned()),
            _ => None,
        }
    }
}

/// The provider's groups named in `names`, in that order.
fn choose_groups(
    provider: &CryptoProvider,
    names: &[String],
) -> anyhow::Result<Vec<&'static dyn rustls::crypto::SupportedKxGroup>> {
    let name_of = |g: &&'static dyn rustls::crypto::SupportedKxGroup| g.name().as_str();
    names
        .iter()
        .map(|n| {
            provider
                .kx_groups
                .iter()
                .find(|g| name_of(g).is_some_and(|s| s.eq_ignore_ascii_case(n.trim())))
                .copied()
                .ok_or_else(|| {
                    let known: Vec<&str> = provider.kx_groups.iter().filter_map(name_of).collect();
                    anyhow::anyhow!(
                        "--groups: unknown group {n:?} (known: {})",
                        known.join(", ")
                    )
                })
        })
        .collect()
}

fn roots(path: &PathBuf) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("--cacert {}: {e}", path.display()))?;
    for c in certs {
        roots
            .add(c)
            .map_err(|e| anyhow::anyhow!("--cacert {}: {e}", path.display()))?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "--cacert {}: no certificate in it",
        path.display()
    );
    Ok(roots)
}

/// `--sni`, else the host of `--host`, else the target's address (which rustls
/// verifies against the certificate's IP addresses and does not send as SNI).
fn server_name(
    sni: Option<&str>,
    host: Option<&str>,
    target: SocketAddr,
) -> anyhow::Result<ServerName<'static>> {
    let name = match (sni, host) {
        (Some(s), _) => s,
        (None, Some(h)) => without_port(h),
        (None, None) => return Ok(ServerName::IpAddress(target.ip().into())),
    };
    ServerName::try_from(name.to_owned())
        .map_err(|_| anyhow::anyhow!("{name:?} is not a server name (--sni, --host)"))
}

/// A Host header's host: `shop.example:8443` → `shop.example`, `[::1]:443` → `::1`; a
/// bare IPv6 address stays whole.
fn without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// `--insecure`: any certificate chain is accepted, but the handshake signature is
/// verified as usual, so the client does the work (and the server is held to the
/// key) of a real handshake.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A load-generator thread's TLS session store, for `--resume`.
///
/// rustls's `ClientSessionMemoryCache` keeps at most 8 TLS 1.3 tickets per server.
/// Tickets are single-use, and a thread's connections start in bursts (all of them at
/// the start, then one at each response), so a thread with more than 8 connections
/// keeps finding the cache empty: with 16 connections a thread, 10–40% of the
/// handshakes of a `--resume` run were full, in a proportion that depended on the
/// server's timing, which would skew a comparison of resumed handshakes between
/// servers. This store is the same thing with room for two tickets per connection of
/// the thread, so that after each connection's first handshake every one resumes.
///
/// It holds the sessions of one thread with the one server a run talks to: the server
/// name rustls passes is the same on every call, so it is not kept. The lock is never
/// contended (one thread uses the store); rustls's trait asks for `Sync`.
#[derive(Debug)]
struct Sessions {
    inner: Mutex<Kept>,
    /// TLS 1.3 tickets kept at most: past it the oldest goes.
    capacity: usize,
}

#[derive(Debug, Default)]
struct Kept {
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tls13: VecDeque<Tls13ClientSessionValue>,
}

impl Sessions {
    /// A store for a thread with `connections` connections.
    fn new(connections: usize) -> Sessions {
        let capacity = (2 * connections).max(8);
        Sessions {
            inner: Mutex::new(Kept {
                tls13: VecDeque::with_capacity(capacity),
                ..Kept::default()
            }),
            capacity,
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panic elsewhere while holding it ends the run anyway.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientSessionStore for Sessions {
    fn set_kx_hint(&self, _: ServerName<'static>, group: NamedGroup) {
        self.kept().kx_hint = Some(group);
    }

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        self.kept().kx_hint
    }

    fn set_tls12_session(&self, _: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.kept().tls12 = Some(value);
    }

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.kept().tls12.clone()
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {
        self.kept().tls12 = None;
    }

    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: Tls13ClientSessionValue) {
        let mut kept = self.kept();
        if kept.tls13.len() >= self.capacity {
            kept.tls13.pop_front();
        }
        kept.tls13.push_back(value);
    }

    /// The newest ticket, as rustls's own cache gives: the likeliest still valid.
    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.kept().tls13.pop_back()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_sni_then_host_then_nothing() {
        let target: SocketAddr = "127.0.0.1:443".parse().unwrap();
        let dns = |n: &str| ServerName::try_from(n.to_owned()).unwrap();
        let name = |s, h| server_name(s, h, target).unwrap();
        assert_eq!(name(Some("a.example"), Some("b.example")), dns("a.example"));
        assert_eq!(name(None, Some("b.example:8443")), dns("b.example"));
        assert_eq!(name(None, Some("10.0.0.1:80")), dns("10.0.0.1"));
        assert!(matches!(name(None, None), ServerName::IpAddress(_)));
        assert!(server_name(Some("bad name"), None, target).is_err());
    }

    #[test]
    fn ports_are_taken_off_hosts() {
        assert_eq!(without_port("shop.example"), "shop.example");
        assert_eq!(without_port("shop.example:8443"), "shop.example");
        assert_eq!(without_port("[::1]:443"), "::1");
        assert_eq!(without_port("::1"), "::1");
    }

    #[test]
    fn groups_by_name_in_order() {
        let p = rustls::crypto::aws_lc_rs::default_provider();
        let want = ["secp256r1".to_owned(), "x25519".to_owned()];
        let got: Vec<_> = choose_groups(&p, &want)
            .unwrap()
            .iter()
            .map(|g| g.name().as_str().unwrap())
            .collect();
        assert_eq!(got, ["secp256r1", "X25519"]);
        assert!(choose_groups(&p, &["nope".to_owned()]).is_err());
    }
}
