//! Certificates generated at test time (no private key is checked in): a CA, the
//! leaves it signs, and PEM files written where a test wants them.

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, RsaKeySize,
    PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use x509_parser::time::ASN1Time;

/// A certificate authority that signs leaves (and intermediates).
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A signed certificate and its key, PEM-encoded.
pub struct Leaf {
    pub der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
    rsa: bool,
}

impl Leaf {
    /// The certificate followed by its key: the usual HAProxy `crt` file.
    pub fn pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }

    /// The key in its traditional form, PKCS#1 for RSA and SEC1 for EC: the private
    /// key field of the PKCS#8 structure rcgen writes.
    pub fn traditional_key_pem(&self) -> String {
        let pkcs8 = PrivatePkcs8KeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let (_, info) = x509_parser::der_parser::parse_der(pkcs8.secret_pkcs8_der()).unwrap();
        let inner = info.as_sequence().unwrap()[2].as_slice().unwrap();
        let label = if self.rsa {
            "RSA PRIVATE KEY"
        } else {
            "EC PRIVATE KEY"
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(inner);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }
}

fn key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
}

impl Ca {
    pub fn new(cn: &str) -> Ca {
        Ca {
            issuer: CertifiedIssuer::self_signed(ca_params(cn), key()).unwrap(),
        }
    }

    /// A CA signed by this one.
    pub fn intermediate(&self, cn: &str) -> Ca {
        Ca {
            issuer: CertifiedIssuer::signed_by(ca_params(cn), key(), &self.issuer).unwrap(),
        }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.sign(params(names))
    }

    /// A server certificate for `names` with subject CN `cn`.
    pub fn leaf_with_cn(&self, names: &[&str], cn: &str) -> Leaf {
        let mut p = params(names);
        p.distinguished_name.push(DnType::CommonName, cn);
        self.sign(p)
    }

    /// A server certificate for `names` valid between two Unix times.
    pub fn leaf_valid(&self, names: &[&str], not_before: i64, not_after: i64) -> Leaf {
        let mut p = params(names);
        p.not_before = ASN1Time::from_timestamp(not_before).unwrap().to_datetime();
        p.not_after = ASN1Time::from_timestamp(not_after).unwrap().to_datetime();
        self.sign(p)
    }

    /// A server certificate for `names` with an RSA 2048 key.
    pub fn leaf_rsa(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
        self.sign_with(params(names), key, true)
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        self.sign_with(params, key(), false)
    }

    fn sign_with(&self, params: CertificateParams, key: KeyPair, rsa: bool) -> Leaf {
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            rsa,
        }
    }
}

/// Leaf parameters without rcgen's default subject ("rcgen self signed cert"), so a
/// certificate has a CN only when a test gives it one.
fn params(names: &[&str]) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut p = CertificateParams::new(names).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}
