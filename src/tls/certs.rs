//! The certificate store: certificates and keys read the way HAProxy reads
//! `crt <file|dir>` ([`load`]), or one generated for `[https]` without certificates
//! ([`self_signed`]); chosen per handshake by SNI ([`CertSet`] is rustls's
//! `ResolvesServerCert`); checked for `sluice check` ([`inspect`]); watched for
//! changes ([`fingerprint`]).
//!
//! Everything here runs on the control thread except [`CertSet::select`], which a
//! handshake calls: it takes no lock and allocates nothing, because the lookup tables
//! are built once, at load. A set is all or nothing: any bad file fails the whole
//! load, so a reload that meets one keeps the set in use.

mod inspect;
mod load;
mod names;
#[cfg(test)]
pub(crate) mod testkit;
mod watch;

pub use inspect::{inspect, Check, Finding, Severity, EXPIRY_WARNING_DAYS};
pub use load::{load, MAX_DIR_FILES, MAX_FILE_BYTES};
pub use watch::fingerprint;

use names::Lookup;
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use x509_parser::time::ASN1Time;

/// Why a set of certificates could not be built. Each message is a sentence that
/// names the file at fault, to be logged as it is.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("no certificate file or directory is configured")]
    NoPaths,
    #[error("{}: cannot be read: {error}", path.display())]
    Unreadable { path: PathBuf, error: io::Error },
    #[error("{}: is larger than {MAX_FILE_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: is not PEM: {reason}", path.display())]
    NotPem { path: PathBuf, reason: &'static str },
    #[error("{}: holds no certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: holds no private key and {} does not exist", path.display(), key_file.display())]
    MissingKey { path: PathBuf, key_file: PathBuf },
    #[error("{}: holds no private key", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: the private key is encrypted; sluice reads only unencrypted keys", path.display())]
    EncryptedKey { path: PathBuf },
    #[error("{}: the private key cannot be used: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("{}: the private key does not match the certificate", path.display())]
    KeyMismatch { path: PathBuf },
    #[error(
        "{}: the private key is that of certificate {position} in the file, not of the \
         first: put the server certificate first, then the chain that signs it",
        path.display()
    )]
    LeafNotFirst { path: PathBuf, position: usize },
    #[error("{}: a certificate cannot be parsed: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{}: the directory holds no certificate file", path.display())]
    EmptyDirectory { path: PathBuf },
    #[error("{}: the directory holds more than {MAX_DIR_FILES} files", path.display())]
    TooManyFiles { path: PathBuf },
    #[error("a self-signed certificate cannot be generated: {reason}")]
    SelfSigned { reason: String },
}

/// Certificates with their keys, in load order, and the tables that pick one for a
/// server name. Never empty: the first certificate is the default, sent when the
/// client names no server or a name no certificate carries.
pub struct CertSet {
    keys: Vec<Arc<CertifiedKey>>,
    certs: Vec<CertInfo>,
    lookup: Lookup,
}

/// What is known of one loaded certificate chain: for metrics, logs and
/// [`inspect`].
#[derive(Debug, Clone)]
pub struct CertInfo {
    file: PathBuf,
    names: Vec<String>,
    chain: Vec<ChainCert>,
}

/// One certificate of a chain, as far as the checks need it.
#[derive(Debug, Clone)]
struct ChainCert {
    subject: String,
    not_before: i64,
    not_after: i64,
    /// Whether this certificate's issuer is the next certificate's subject (true
    /// for the last one).
    issued_by_next: bool,
}

impl CertInfo {
    /// The file the certificate was read from ([`SELF_SIGNED_FILE`] for a generated
    /// one).
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The names it serves, lower-cased: its DNS subject alternative names, or its
    /// subject common names when it has no DNS name.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The end of the server certificate's validity, in Unix seconds.
    pub fn not_after_unix(&self) -> i64 {
        self.chain[0].not_after
    }

    /// The start of the server certificate's validity, in Unix seconds.
    pub fn not_before_unix(&self) -> i64 {
        self.chain[0].not_before
    }
}

/// The name given as the file of a certificate [`self_signed`] made.
pub const SELF_SIGNED_FILE: &str = "(self-signed)";

impl CertSet {
    fn new(entries: Vec<(Arc<CertifiedKey>, CertInfo)>) -> CertSet {
        assert!(!entries.is_empty(), "a certificate set is never empty");
        let (keys, certs): (Vec<_>, Vec<_>) = entries.into_iter().unzip();
        let lookup = Lookup::build(certs.iter().map(|c| c.names.as_slice()));
        CertSet {
            keys,
            certs,
            lookup,
        }
    }

    /// The certificates, in load order (the first is the default).
    pub fn certificates(&self) -> &[CertInfo] {
        &self.certs
    }

    /// How many certificates the set holds.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Never true: a set holds at least its default certificate.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// The index in [`Self::certificates`] of the certificate for `server_name`:
    /// an exact name, else a wildcard one label up, else the first certificate.
    pub fn index_for(&self, server_name: Option<&str>) -> usize {
        self.candidates(server_name)[0]
    }

    /// The certificates that may answer `server_name`, in load order: those carrying
    /// it (or a wildcard one label up), else the first certificate.
    fn candidates(&self, server_name: Option<&str>) -> &[usize] {
        server_name
            .and_then(|name| self.lookup.find_all(name))
            .unwrap_or(&[0])
    }

    /// The certificate and key for `server_name` (see [`Self::index_for`]).
    pub fn select(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        &self.keys[self.index_for(server_name)]
    }

    /// As [`Self::select`], and among several certificates for the name (an ECDSA
    /// and an RSA one, as HAProxy serves them) the first whose key can sign with one
    /// of the client's `schemes`; the first of them when none can (the handshake then
    /// fails, counted as "no certificate").
    pub fn select_for(
        &self,
        server_name: Option<&str>,
        schemes: &[SignatureScheme],
    ) -> &Arc<CertifiedKey> {
        let all = self.candidates(server_name);
        let usable =
            |&&i: &&usize| all.len() == 1 || self.keys[i].key.choose_scheme(schemes).is_some();
        &self.keys[*all.iter().find(usable).unwrap_or(&all[0])]
    }
}

impl ResolvesServerCert for CertSet {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = client_hello.server_name();
        Some(Arc::clone(
            self.select_for(name, client_hello.signature_schemes()),
        ))
    }
}

/// Files and names only: a set can hold thousands of certificates, and their DER
/// bytes say nothing in a log.
impl fmt::Debug for CertSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for c in &self.certs {
            list.entry(&format_args!("{} {:?}", c.file.display(), c.names));
        }
        list.finish()
    }
}

/// Builds one entry from a chain (server certificate first) and its key: parses the
/// chain for names and validity, and refuses a key that is not the certificate's.
fn certify(
    file: PathBuf,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<(Arc<CertifiedKey>, CertInfo), CertError> {
    let (names, chain_certs) = match names::parse_chain(&chain) {
        Ok(parsed) => parsed,
        Err(reason) => return Err(CertError::BadCertificate { path: file, reason }),
    };
    let signing_key = match any_supported_type(&key) {
        Ok(k) => k,
        Err(e) => {
            let reason = e.to_string();
            return Err(CertError::BadKey { path: file, reason });
        }
    };
    let key = CertifiedKey::new(chain, signing_key);
    match key.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            // A chain pasted in the wrong order (CA first) reads as a mismatch; say
            // what is wrong when the key is that of a later certificate.
            let later = (1..key.cert.len()).find(|&i| {
                CertifiedKey::new(vec![key.cert[i].clone()], Arc::clone(&key.key))
                    .keys_match()
                    .is_ok()
            });
            return Err(match later {
                Some(i) => CertError::LeafNotFirst {
                    path: file,
                    position: i + 1,
                },
                None => CertError::KeyMismatch { path: file },
            });
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            let reason = "its public half is unknown, so it cannot be checked against \
                          the certificate"
                .to_string();
            return Err(CertError::BadKey { path: file, reason });
        }
        Err(e) => {
            let reason = match e {
                // `openssl x509 -req` without extensions makes these.
                rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))
                    if format!("{o:?}").contains("UnsupportedCertVersion") =>
                {
                    "it is an X.509 v1 certificate; reissue it as v3 (with a \
                     subjectAltName naming the host)"
                        .to_string()
                }
                e => e.to_string(),
            };
            return Err(CertError::BadCertificate { path: file, reason });
        }
    }
    let info = CertInfo {
        file,
        names,
        chain: chain_certs,
    };
    Ok((Arc::new(key), info))
}

/// How long a generated certificate is valid: about a year, as public CAs allowed
/// until recently; its start is set an hour back for clients whose clocks lag.
const SELF_SIGNED_VALID_SECS: i64 = 365 * 86_400;
const SELF_SIGNED_BACKDATE_SECS: i64 = 3_600;

/// An ECDSA P-256 certificate for `names` (`localhost` when empty), signed by its own
/// key: what `[https]` serves when no certificate is configured, as Marathon-LB does,
/// so that TLS works at once and browsers warn. The caller says so loudly.
pub fn self_signed(names: &[String]) -> Result<CertSet, CertError> {
    let fail = |e: rcgen::Error| CertError::SelfSigned {
        reason: e.to_string(),
    };
    let names = match names {
        [] => vec!["localhost".to_string()],
        _ => names.to_vec(),
    };
    let mut params = rcgen::CertificateParams::new(names.clone()).map_err(fail)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0].as_str());
    let now = unix_now(SystemTime::now());
    params.not_before = asn1_time(now - SELF_SIGNED_BACKDATE_SECS)?.to_datetime();
    params.not_after = asn1_time(now + SELF_SIGNED_VALID_SECS)?.to_datetime();
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let cert = params.self_signed(&key_pair).map_err(fail)?;
    let key = PrivatePkcs8KeyDer::from(key_pair.serialize_der()).into();
    let entry = certify(
        PathBuf::from(SELF_SIGNED_FILE),
        vec![cert.der().clone()],
        key,
    )?;
    Ok(CertSet::new(vec![entry]))
}

/// Unix seconds as a certificate time: x509-parser's, whose `to_datetime` is the
/// date type rcgen takes (both use the `time` crate), so sluice needs no date crate.
fn asn1_time(unix_secs: i64) -> Result<ASN1Time, CertError> {
    ASN1Time::from_timestamp(unix_secs).map_err(|e| CertError::SelfSigned {
        reason: e.to_string(),
    })
}

/// `now` in Unix seconds (0 before 1970, which no certificate check needs).
fn unix_now(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::testkit::{write, Ca};
    use super::*;
    use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig};
    use rustls::{ServerConnection, SignatureAlgorithm};
    use rustls_pki_types::ServerName;

    /// Shows `set` to a rustls client trusting `root` through an in-memory
    /// handshake, and returns the server certificate the client saw.
    fn handshake(
        set: Arc<CertSet>,
        root: CertificateDer<'static>,
        sni: Option<&str>,
        verify_as: &str,
    ) -> CertificateDer<'static> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(set);
        let mut roots = RootCertStore::empty();
        roots.add(root).unwrap();
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.enable_sni = sni.is_some();
        let name = ServerName::try_from(sni.unwrap_or(verify_as).to_string()).unwrap();
        let mut client = Connection::from(ClientConnection::new(Arc::new(client), name).unwrap());
        let mut server = Connection::from(ServerConnection::new(Arc::new(server)).unwrap());
        for _ in 0..8 {
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
            transfer(&mut client, &mut server);
            transfer(&mut server, &mut client);
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        client.peer_certificates().unwrap()[0].clone()
    }

    /// Moves every TLS byte `from` has to send into `to`, and lets `to` process them.
    fn transfer(from: &mut Connection, to: &mut Connection) {
        let mut bytes = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut bytes).unwrap();
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).unwrap();
            to.process_new_packets().unwrap();
        }
    }

    #[test]
    fn handshakes_get_the_certificate_for_their_name() {
        let ca = Ca::new("Handshake CA");
        let default = ca.leaf(&["default.example"]);
        let wildcard = ca.leaf(&["*.example.com"]);
        let www = ca.leaf(&["www.example.com"]);
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "1-default.pem", &default.pem());
        write(dir.path(), "2-wildcard.pem", &wildcard.pem());
        write(dir.path(), "3-www.pem", &www.pem());
        let set = Arc::new(load(&[dir.path().to_path_buf()]).unwrap());
        let seen = |sni, verify_as| handshake(set.clone(), ca.der(), sni, verify_as);

        assert_eq!(seen(Some("www.example.com"), ""), www.der, "exact");
        assert_eq!(seen(Some("api.example.com"), ""), wildcard.der, "wildcard");
        assert_eq!(seen(None, "default.example"), default.der, "no SNI");
    }

    #[test]
    fn traditional_key_forms_load_and_serve() {
        let ca = Ca::new("Key forms CA");
        let rsa = ca.leaf_rsa(&["rsa.example"]);
        let ec = ca.leaf(&["ec.example"]);
        let dir = tempfile::tempdir().unwrap();
        let rsa_pem = format!("{}{}", rsa.traditional_key_pem(), rsa.cert_pem);
        assert!(rsa_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        write(dir.path(), "rsa.pem", &rsa_pem);
        write(dir.path(), "ec.pem", &ec.cert_pem);
        write(dir.path(), "ec.pem.key", &ec.traditional_key_pem());
        let set = Arc::new(load(&[dir.path().to_path_buf()]).unwrap());
        let algorithm = |name| set.select(Some(name)).key.algorithm();
        assert_eq!(algorithm("rsa.example"), SignatureAlgorithm::RSA);
        assert_eq!(algorithm("ec.example"), SignatureAlgorithm::ECDSA);
        assert_eq!(
            handshake(set.clone(), ca.der(), Some("rsa.example"), ""),
            rsa.der
        );
        assert_eq!(handshake(set, ca.der(), Some("ec.example"), ""), ec.der);
    }

    /// An ECDSA and an RSA certificate for one name, as HAProxy serves them: the
    /// client's signature schemes choose, whichever was loaded first; a client that
    /// can verify neither gets the first (and a failed handshake).
    #[test]
    fn one_name_with_an_ecdsa_and_an_rsa_certificate() {
        let ca = Ca::new("Dual CA");
        let ec = ca.leaf(&["dual.example"]);
        let rsa = ca.leaf_rsa(&["dual.example", "rsa-only.example"]);
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "1-rsa.pem", &rsa.pem());
        write(dir.path(), "2-ec.pem", &ec.pem());
        let set = Arc::new(load(&[dir.path().to_path_buf()]).unwrap());
        use SignatureScheme::*;
        let algorithm =
            |name, schemes: &[SignatureScheme]| set.select_for(Some(name), schemes).key.algorithm();
        let modern = [ECDSA_NISTP256_SHA256, RSA_PSS_SHA256, ED25519];
        assert_eq!(algorithm("dual.example", &modern), SignatureAlgorithm::RSA);
        let ecdsa_only = [ECDSA_NISTP256_SHA256];
        assert_eq!(
            algorithm("dual.example", &ecdsa_only),
            SignatureAlgorithm::ECDSA
        );
        let rsa_only = [RSA_PKCS1_SHA256, RSA_PSS_SHA256];
        assert_eq!(
            algorithm("dual.example", &rsa_only),
            SignatureAlgorithm::RSA
        );
        assert_eq!(
            algorithm("DUAL.example.", &ecdsa_only),
            SignatureAlgorithm::ECDSA
        );
        // One certificate for the name: it, whatever the client offers.
        assert_eq!(
            algorithm("rsa-only.example", &ecdsa_only),
            SignatureAlgorithm::RSA
        );
        assert_eq!(
            algorithm("dual.example", &[ED25519]),
            SignatureAlgorithm::RSA
        );
        // A rustls client offers both: it gets the first loaded.
        assert_eq!(handshake(set, ca.der(), Some("dual.example"), ""), rsa.der);
    }

    #[test]
    fn self_signed_serves_its_names_for_a_year() {
        let set = Arc::new(self_signed(&[]).unwrap());
        let cert = &set.certificates()[0];
        assert_eq!(cert.names(), ["localhost"]);
        assert_eq!(cert.file(), Path::new(SELF_SIGNED_FILE));
        let now = unix_now(SystemTime::now());
        let days = (cert.not_after_unix() - now) / 86_400;
        assert!((364..=365).contains(&days), "{days} days");
        assert!(cert.not_before_unix() < now);
        let key = set.select(None);
        assert_eq!(key.key.algorithm(), SignatureAlgorithm::ECDSA);
        let der = key.cert[0].clone();
        assert_eq!(
            handshake(set.clone(), der.clone(), Some("localhost"), ""),
            der
        );
        assert!(inspect(&set, SystemTime::now()).is_empty());

        let names = ["edge.example".to_string(), "*.edge.example".to_string()];
        let set = self_signed(&names).unwrap();
        assert_eq!((set.len(), set.is_empty()), (1, false));
        assert_eq!(set.certificates()[0].names(), names);
        assert_eq!(set.index_for(Some("a.edge.example")), 0);
        let err = self_signed(&["bücher.example".to_string()]).unwrap_err();
        assert!(matches!(err, CertError::SelfSigned { .. }), "{err}");
    }

    #[test]
    fn a_set_is_a_shareable_resolver_and_debugs_briefly() {
        fn resolver<T: ResolvesServerCert + fmt::Debug + Send + Sync + 'static>() {}
        resolver::<CertSet>();
        let set = self_signed(&["brief.example".to_string()]).unwrap();
        let text = format!("{set:?}");
        assert_eq!(text, format!("[{SELF_SIGNED_FILE} [\"brief.example\"]]"));
    }

    #[test]
    fn errors_read_as_sentences_naming_the_file() {
        let err = CertError::KeyMismatch {
            path: PathBuf::from("/etc/ssl/sluice/a.pem"),
        };
        assert_eq!(
            err.to_string(),
            "/etc/ssl/sluice/a.pem: the private key does not match the certificate"
        );
    }
}
