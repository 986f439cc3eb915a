//! What the control thread keeps of TLS across snapshots: one set of ticket keys for
//! the process (a client resumes on any shard, after any reload), and each server
//! configuration built, by its certificate files and settings, with a fingerprint of
//! those files so that a change is seen (once a second) and an unchanged set is not
//! read again at every Marathon update.

use crate::config::TlsConfig;
use crate::tls::certs;
use rustls::server::ProducesTickets;
use rustls::ServerConfig;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    /// Empty: the generated self-signed certificate.
    paths: Vec<PathBuf>,
    tls: TlsConfig,
    /// TLS-ALPN-01 challenges are answered (`[acme] challenge = "tls-alpn-01"`).
    alpn01: bool,
}

struct Built {
    fingerprint: u64,
    config: Arc<ServerConfig>,
    certs: Arc<certs::CertSet>,
    /// Asked for by the build in progress: kept by [`TlsRegistry::sweep`].
    used: bool,
}

#[derive(Default)]
pub struct TlsRegistry {
    tickets: Option<Arc<dyn ProducesTickets>>,
    built: HashMap<Key, Built>,
    self_signed: Option<Arc<certs::CertSet>>,
    /// The ACME challenges pending, for a configuration answering TLS-ALPN-01.
    challenges: Arc<crate::acme::Challenges>,
}

impl std::fmt::Debug for TlsRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsRegistry")
            .field("configs", &self.built.len())
            .finish()
    }
}

impl TlsRegistry {
    /// A registry whose configurations answering TLS-ALPN-01 read `challenges`.
    pub fn new(challenges: Arc<crate::acme::Challenges>) -> Self {
        TlsRegistry {
            challenges,
            ..TlsRegistry::default()
        }
    }

    /// The server configuration for the certificates at `paths` (none: a generated
    /// self-signed one) with `tls`'s settings. When the files cannot be read or are
    /// wrong: with `keep_old`, the configuration built from them before, if there is
    /// one (the error is logged); else the error, naming the file. With `alpn01`,
    /// TLS-ALPN-01 validations get the pending challenge certificate.
    pub fn config(
        &mut self,
        paths: &[PathBuf],
        tls: &TlsConfig,
        keep_old: bool,
        alpn01: bool,
    ) -> Result<Arc<ServerConfig>, String> {
        // The settings that shape a configuration; the lists of paths are `paths`.
        let settings = TlsConfig {
            certificates: Vec::new(),
            from_marathon: Vec::new(),
            ..tls.clone()
        };
        let key = Key {
            paths: paths.to_vec(),
            tls: settings,
            alpn01,
        };
        match self.read(&key) {
            Ok(Some((fingerprint, config, certs))) => {
                let built = Built {
                    fingerprint,
                    config: Arc::clone(&config),
                    certs,
                    used: true,
                };
                self.built.insert(key, built);
                Ok(config)
            }
            Ok(None) => {
                let b = self.built.get_mut(&key).expect("read says it is built");
                b.used = true;
                Ok(Arc::clone(&b.config))
            }
            Err(e) => match self.built.get_mut(&key).filter(|_| keep_old) {
                Some(b) => {
                    tracing::error!("{e}; the certificates read before stay in use");
                    b.used = true;
                    // Not read again until the files change again (a fingerprint that
                    // cannot be taken is remembered as such, not retried every second).
                    b.fingerprint = certs::fingerprint(&key.paths).unwrap_or(u64::MAX);
                    Ok(Arc::clone(&b.config))
                }
                None => Err(e),
            },
        }
    }

    /// `Ok(None)`: what was built for `key` is current. Else a new configuration and
    /// the fingerprint of the files it was read from.
    #[allow(clippy::type_complexity)]
    fn read(
        &mut self,
        key: &Key,
    ) -> Result<Option<(u64, Arc<ServerConfig>, Arc<certs::CertSet>)>, String> {
        let fingerprint = if key.paths.is_empty() {
            0
        } else {
            certs::fingerprint(&key.paths).map_err(|e| e.to_string())?
        };
        if self
            .built
            .get(key)
            .is_some_and(|b| b.fingerprint == fingerprint)
        {
            return Ok(None);
        }
        let set = if key.paths.is_empty() {
            self.self_signed()?
        } else {
            let set = Arc::new(certs::load(&key.paths).map_err(|e| e.to_string())?);
            tracing::info!(files = ?key.paths, certificates = set.len(), "certificates loaded");
            // Served all the same (an expired certificate beats no listener), but said.
            for f in certs::inspect(&set, std::time::SystemTime::now()) {
                tracing::warn!("{f}");
            }
            set
        };
        let tickets = self.tickets()?;
        let config = match key.alpn01 {
            false => crate::tls::server::server_config(set.clone(), &key.tls, &tickets),
            true => {
                let resolver = Arc::new(crate::acme::AlpnResolver {
                    certs: set.clone(),
                    challenges: Arc::clone(&self.challenges),
                });
                crate::tls::server::server_config_alpn01(resolver, &key.tls, &tickets)
            }
        }
        .map_err(|e| format!("TLS settings: {e}"))?;
        Ok(Some((fingerprint, config, set)))
    }

    fn tickets(&mut self) -> Result<Arc<dyn ProducesTickets>, String> {
        if let Some(t) = &self.tickets {
            return Ok(Arc::clone(t));
        }
        let t = crate::tls::server::tickets().map_err(|e| format!("TLS ticket keys: {e}"))?;
        self.tickets = Some(Arc::clone(&t));
        Ok(t)
    }

    /// The certificate used where none is configured: generated once per process, as
    /// Marathon-LB does, and said loudly.
    fn self_signed(&mut self) -> Result<Arc<certs::CertSet>, String> {
        if let Some(s) = &self.self_signed {
            return Ok(Arc::clone(s));
        }
        let set = Arc::new(certs::self_signed(&[]).map_err(|e| e.to_string())?);
        tracing::warn!(
            "no certificate configured (or none obtained from [acme] yet): TLS is served \
             with a generated self-signed certificate that no client trusts; set [tls] \
             certificates, or wait for [acme]'s first"
        );
        self.self_signed = Some(Arc::clone(&set));
        Ok(set)
    }

    /// Whether a certificate file changed (or vanished, or appeared) since it was read.
    pub fn stale(&self) -> bool {
        self.built.iter().any(|(k, b)| {
            !k.paths.is_empty() && certs::fingerprint(&k.paths).unwrap_or(u64::MAX) != b.fingerprint
        })
    }

    /// Start a build: what it does not ask for is forgotten by [`TlsRegistry::sweep`].
    pub fn begin(&mut self) {
        for b in self.built.values_mut() {
            b.used = false;
        }
    }

    pub fn sweep(&mut self) {
        self.built.retain(|_, b| b.used);
    }

    /// Every certificate in use, once (by file and first name), for `/metrics`.
    pub fn in_use(&self) -> Vec<crate::snapshot::CertExpiry> {
        let mut out: Vec<crate::snapshot::CertExpiry> = Vec::new();
        for c in self.built.values().flat_map(|b| b.certs.certificates()) {
            let e = crate::snapshot::CertExpiry {
                file: c.file().display().to_string(),
                name: c.names().first().cloned().unwrap_or_default(),
                not_after_unix: c.not_after_unix(),
            };
            if !out.iter().any(|o| o.file == e.file && o.name == e.name) {
                out.push(e);
            }
        }
        out.sort_by(|a, b| (&a.file, &a.name).cmp(&(&b.file, &b.name)));
        out
    }
}
