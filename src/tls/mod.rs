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
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    let mut sets: Vec<&[std::path::PathBuf]> = Vec::new();
    let shared = config.https.is_some()
        || config
            .services
            .iter()
            .any(|s| s.tls.terminate && s.tls.certificates.is_empty());
    if shared {
        sets.push(&config.tls.certificates);
    }
    for s in config
        .services
        .iter()
        .filter(|s| s.tls.terminate && !s.tls.certificates.is_empty())
    {
        sets.push(&s.tls.certificates);
    }
    sets.dedup();
    let now = std::time::SystemTime::now();
    for paths in sets {
        if paths.is_empty() {
            warnings.push(
                "warning: no certificate configured: TLS would be served with a generated self-signed \
                 certificate that no client trusts; set [tls] certificates"
                    .to_owned(),
            );
            continue;
        }
        match certs::load(paths) {
            Err(e) => errors.push(e.to_string()),
            Ok(set) => {
                for f in certs::inspect(&set, now) {
                    match f.severity() {
                        certs::Severity::Error => errors.push(f.to_string()),
                        certs::Severity::Warning => warnings.push(format!("warning: {f}")),
                    }
                }
            }
        }
    }
    (errors, warnings)
}
