//! A real ACME server for tests: pebble (Let's Encrypt's test CA), with
//! pebble-challtestsrv as its DNS (every name is 127.0.0.1), validating challenges
//! for real against the ports given — sluice's `[http]` and `[https]` listeners.

use super::tls::Pki;
use super::wait_for;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A loopback port the OS says is free now (for a config that must name it before
/// the process that binds it starts).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn installed(bin: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{bin} is not installed: these tests run a real ACME server; install it with \
         `apt-get install -y pebble` (.ci/run does)"
    );
}

/// Running pebble and its DNS.
pub struct Pebble {
    pebble: Option<Child>,
    dns: Child,
    dns_port: u16,
    /// Where it validates HTTP-01 and TLS-ALPN-01.
    validate: (u16, u16),
    pub dir: tempfile::TempDir,
    /// The directory URL for `[acme] directory`.
    pub directory: String,
    /// The CA pebble's own HTTPS listener chains to, for `[acme] ca_bundle`.
    pub listener_ca: PathBuf,
    listen: SocketAddr,
    management: SocketAddr,
}

impl Pebble {
    /// Start pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`
    /// of 127.0.0.1; certificates valid `validity_secs` (pebble's default: 5 years).
    /// A port another process took between [`free_port`] and pebble's start makes
    /// pebble exit: it is started again on new ports of its own (twice at most).
    pub fn start(http_port: u16, tls_port: u16, validity_secs: Option<u64>) -> Pebble {
        let mut attempts = 0;
        loop {
            let mut p = Pebble::prepare(http_port, tls_port, validity_secs);
            match p.try_run() {
                Ok(()) => return p,
                Err(log) if attempts == 2 => panic!("pebble did not start: {log}"),
                Err(_) => attempts += 1,
            }
        }
    }

    /// [`Pebble::start`] without running pebble yet: its directory URL is known (and
    /// unavailable) until [`Pebble::run`].
    pub fn prepare(http_port: u16, tls_port: u16, validity_secs: Option<u64>) -> Pebble {
        installed("pebble");
        installed("pebble-challtestsrv");
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new();
        let (cert, key) = pki.leaf(&["127.0.0.1", "localhost"]);
        let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_file, cert).unwrap();
        std::fs::write(&key_file, key).unwrap();
        let listener_ca = dir.path().join("listener-ca.pem");
        std::fs::copy(&pki.ca_file, &listener_ca).unwrap();
        let dns_port = free_port();
        let dns_mgmt = free_port();
        let dns = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{dns_mgmt}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let management: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let validity = validity_secs.map_or(String::new(), |v| {
            format!(",\n    \"certificateValidityPeriod\": {v}")
        });
        let config = format!(
            "{{\n  \"pebble\": {{\n    \"listenAddress\": \"{listen}\",\n    \
             \"managementListenAddress\": \"{management}\",\n    \"certificate\": {:?},\n    \
             \"privateKey\": {:?},\n    \"httpPort\": {http_port},\n    \"tlsPort\": {tls_port},\n    \
             \"ocspResponderURL\": \"\",\n    \"externalAccountBindingRequired\": false{validity}\n  }}\n}}\n",
            cert_file.display().to_string(),
            key_file.display().to_string(),
        );
        std::fs::write(dir.path().join("pebble.json"), config).unwrap();
        let p = Pebble {
            pebble: None,
            dns,
            dns_port,
            validate: (http_port, tls_port),
            directory: format!("https://{listen}/dir"),
            listener_ca,
            listen,
            management,
            dir,
        };
        wait_for("pebble-challtestsrv to listen", || {
            TcpStream::connect(("127.0.0.1", dns_mgmt)).ok()
        });
        p
    }

    /// Validate on these ports instead (before [`Pebble::run`]): sluice's, once it
    /// listens on ports of its own choosing.
    pub fn validate_on(&mut self, http_port: u16, tls_port: u16) {
        let path = self.dir.path().join("pebble.json");
        let (http, tls) = self.validate;
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace(
                &format!("\"httpPort\": {http},"),
                &format!("\"httpPort\": {http_port},"),
            )
            .replace(
                &format!("\"tlsPort\": {tls},"),
                &format!("\"tlsPort\": {tls_port},"),
            );
        std::fs::write(&path, text).unwrap();
        self.validate = (http_port, tls_port);
    }

    /// Run pebble; returns once it listens.
    pub fn run(&mut self) {
        if let Err(log) = self.try_run() {
            panic!("pebble did not start: {log}");
        }
    }

    /// Run pebble: `Err` with its log when it exits before it listens.
    fn try_run(&mut self) -> Result<(), String> {
        let log = self.dir.path().join("pebble.log");
        let child = Command::new("pebble")
            .arg("-config")
            .arg(self.dir.path().join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{}", self.dns_port)])
            // Validation at once, and no nonce refused at random: the tests wait
            // on outcomes, not on pebble's simulated delays.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(self.dir.path().join("pebble.err")).unwrap())
            .spawn()
            .unwrap();
        let child = self.pebble.insert(child);
        let exited = wait_for("pebble to listen", || {
            if TcpStream::connect(self.listen).is_ok() {
                return Some(false);
            }
            child.try_wait().unwrap().map(|_| true)
        });
        if !exited {
            return Ok(());
        }
        self.pebble = None;
        let out = std::fs::read_to_string(&log).unwrap_or_default();
        let err = std::fs::read_to_string(self.dir.path().join("pebble.err")).unwrap_or_default();
        Err(out + &err)
    }

    /// pebble's issuing root (made at its start), as a PEM file for `curl --cacert`.
    pub fn root(&self) -> PathBuf {
        let path = self.dir.path().join("root.pem");
        let url = format!("https://{}/roots/0", self.management);
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
            .arg(&self.listener_ca)
            .arg(&url)
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "pebble root: {:?}", out);
        std::fs::write(&path, out.stdout).unwrap();
        path
    }

    /// Stop pebble (its DNS stays): the ACME server is unavailable.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.pebble.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        let _ = self.dns.kill();
        let _ = self.dns.wait();
    }
}

/// curl `https://{host}/` on `addr` trusting `root` only: (success, body, stderr).
pub fn curl_trusting(
    root: &std::path::Path,
    addr: SocketAddr,
    host: &str,
) -> (bool, String, String) {
    let resolve = format!("{host}:{}:{}", addr.port(), addr.ip());
    let url = format!("https://{host}:{}/", addr.port());
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--resolve", &resolve, "--cacert"])
        .arg(root)
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
