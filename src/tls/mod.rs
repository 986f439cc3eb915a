//! TLS at the edge: certificates (loaded the way HAProxy reads `crt`, chosen by SNI),
//! the peek at a ClientHello that routes a connection before any byte is consumed, and
//! rustls's server side driven by the shard's own buffers.

pub mod certs;
pub mod hello;
mod routes;
pub mod server;

pub use routes::SniRoutes;

/// What `sluice check` says of the certificates `config` names: errors (a file that
/// cannot be used; a certificate expired, not yet valid, or its chain out of order)
/// and warnings (one that expires within two weeks, names no host; TLS served with a
/// generated certificate), each naming the file.
pub fn check(config: &crate::config::Config) -> (Vec<String>, Vec<String>) {
    use crate::config::TLS_CERTIFICATES;
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    // Each list once, by the owner whose key says where it is written.
    let mut sets: Vec<(&str, &[std::path::PathBuf])> = Vec::new();
    let shared = config.https.is_some()
        || config
            .services
            .iter()
            .any(|s| s.tls.terminate && s.tls.certificates.is_empty());
    if shared {
        sets.push((TLS_CERTIFICATES, &config.tls.certificates));
    }
    for s in config
        .services
        .iter()
        .filter(|s| s.tls.terminate && !s.tls.certificates.is_empty())
    {
        sets.push((s.name.as_str(), &s.tls.certificates));
    }
    sets.dedup_by(|a, b| a.1 == b.1);
    let now = std::time::SystemTime::now();
    for (owner, paths) in sets {
        if paths.is_empty() && owner == TLS_CERTIFICATES && config.acme.is_some() {
            warnings.push(
                "warning: [tls] certificates is empty: until [acme] obtains the first \
                 certificate, [https] listen serves a generated self-signed one"
                    .to_owned(),
            );
            continue;
        }
        if paths.is_empty() {
            warnings.push(
                "warning: no certificate configured: TLS would be served with a generated self-signed \
                 certificate that no client trusts; set [tls] certificates"
                    .to_owned(),
            );
            continue;
        }
        // Each finding names its file; the key that named the file comes before it.
        let (at, key) = (config.origin.certificates(owner), key_of(owner));
        let place = at.map_or_else(String::new, |at| format!("{at}: "));
        match certs::load(paths) {
            Err(e) => errors.push(format!("{place}{key}: {e}")),
            Ok(set) => {
                for f in certs::inspect(&set, now) {
                    match f.severity() {
                        certs::Severity::Error => errors.push(format!("{place}{key}: {f}")),
                        certs::Severity::Warning => {
                            warnings.push(format!("{place}warning: {key}: {f}"))
                        }
                    }
                }
            }
        }
    }
    (errors, warnings)
}

/// The key that holds the certificate list of `owner` (a service's name, or `[tls]
/// certificates`), as messages name it.
fn key_of(owner: &str) -> String {
    match owner {
        crate::config::TLS_CERTIFICATES => owner.to_owned(),
        name => format!("service {name:?} certificates"),
    }
}
