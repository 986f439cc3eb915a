//! Certificates made at test time (a CA and leaves it signs, with rcgen: no private
//! key is checked in) and the real TLS clients tests drive: curl, `openssl s_client`.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A test CA: its certificate on disk (for `--cacert`), and what signs leaves.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
    ca: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "sluice test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).unwrap();
        Pki {
            ca: Issuer::new(params, key),
            dir,
            ca_file,
        }
    }

    /// A leaf for `names` (the first is also its CN): `(certificate PEM, key PEM)`.
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        self.leaf_until(names, 2100)
    }

    /// A leaf valid from 2000 until the start of year `until` (in the past: expired).
    pub fn leaf_until(&self, names: &[&str], until: i32) -> (String, String) {
        self.leaf_with(names, until, KeyPair::generate().unwrap())
    }

    /// A leaf for `names` with an RSA 2048 key: `(certificate PEM, key PEM)`.
    pub fn leaf_rsa(&self, names: &[&str]) -> (String, String) {
        let key =
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
        self.leaf_with(names, 2100, key)
    }

    fn leaf_with(&self, names: &[&str], until: i32, key: KeyPair) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].clone());
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A leaf for `names` written as one PEM file (chain, then key) named `file` in
    /// the PKI's directory; its path.
    pub fn write_leaf(&self, file: &str, names: &[&str]) -> PathBuf {
        let (cert, key) = self.leaf(names);
        let path = self.dir.path().join(file);
        write_atomically(&path, &(cert + &key));
        path
    }
}

/// Replace `path` with `text` in one rename, as an operator's deploy tool would: a
/// reader never sees half a file.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// curl to `https://{host}{path}` on `addr` (resolved with `--resolve`), trusting the
/// test CA; `extra` arguments first. Returns (exit status, stdout, stderr).
pub fn curl_https(
    pki: &Pki,
    addr: SocketAddr,
    host: &str,
    path: &str,
    extra: &[&str],
) -> (bool, String, String) {
    let resolve = format!("{host}:{}:{}", addr.port(), addr.ip());
    let url = format!("https://{host}:{}{path}", addr.port());
    let out = Command::new("curl")
        .args(extra)
        .args(["-sS", "--max-time", "20", "--resolve", &resolve, "--cacert"])
        .arg(&pki.ca_file)
        .arg(&url)
        .stdin(Stdio::null())
        .output()
        .expect("curl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `openssl s_client` to `addr` with `args` (e.g. `-servername x -tls1_2`), sending
/// `input` then closing its input; the transcript (stdout and stderr).
pub fn s_client(addr: SocketAddr, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-ign_eof"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    // Bounded: a server that never closes fails the test instead of hanging it.
    super::wait_for("openssl s_client to finish", || child.try_wait().unwrap());
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}
