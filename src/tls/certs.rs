//! Interim certificate loading (one PEM file: chain and key), replaced by the
//! certificate store.
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug)]
pub struct CertSet(Arc<CertifiedKey>);

impl CertSet {
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        1
    }
}

impl ResolvesServerCert for CertSet {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

pub fn load(paths: &[PathBuf]) -> Result<CertSet, String> {
    let p = &paths[0];
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(p)
        .map_err(|e| format!("{}: {e}", p.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", p.display()))?;
    let key = PrivateKeyDer::from_pem_file(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let ck = CertifiedKey::from_der(certs, key, &provider)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(CertSet(Arc::new(ck)))
}

pub fn self_signed(_: &[String]) -> Result<CertSet, String> {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::Pkcs8(c.signing_key.serialize_der().into());
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let ck = CertifiedKey::from_der(vec![c.cert.der().clone()], key, &provider)
        .map_err(|e| e.to_string())?;
    Ok(CertSet(Arc::new(ck)))
}

pub fn fingerprint(paths: &[PathBuf]) -> std::io::Result<u64> {
    let mut h = 0u64;
    for p in paths {
        let m = std::fs::metadata(p)?;
        h = h
            .wrapping_mul(31)
            .wrapping_add(m.len())
            .wrapping_add(std::os::unix::fs::MetadataExt::mtime_nsec(&m) as u64);
    }
    Ok(h)
}
