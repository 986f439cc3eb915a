//! `[acme]`, `[https] acme` and a service's `acme`: certificates obtained and renewed
//! from an ACME (RFC 8555) server for the vhosts `[https] listen` serves. What is
//! refused: ACME without a place to answer its challenge, a wildcard vhost (neither
//! HTTP-01 nor TLS-ALPN-01 can prove one), a directory that is not `https://`.

use super::parse::ConfigError;
use super::{Mode, ServiceConfig};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::PathBuf;
use toml::Spanned;

/// `[acme]`: where certificates come from and where they are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcmeConfig {
    /// The ACME server's directory URL (`https://…/directory`).
    pub directory: String,
    /// The account's contact URLs (`mailto:ops@example.com`).
    pub contact: Vec<String>,
    /// The account key and the certificates: `account.json`, `certs/*.pem`.
    pub state_dir: PathBuf,
    pub challenge: ChallengeKind,
    /// A PEM root the ACME server's own HTTPS certificate chains to (a private CA,
    /// pebble's), trusted instead of the system's roots; absent: the system's.
    pub ca_bundle: Option<PathBuf>,
    /// The first wait after a failed order; it doubles, jittered, up to
    /// `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// `[https] acme = true`: every HTTP service's vhosts, Marathon's included.
    pub all_vhosts: bool,
}

impl AcmeConfig {
    /// The `[acme]` table as `sluice check` prints it, every default filled in.
    pub(super) fn to_toml(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let contact: Vec<String> = self.contact.iter().map(|c| q(c)).collect();
        let mut out = format!(
            "\n[acme]\ndirectory = {}\ncontact = [{}]\nstate_dir = {}\nchallenge = {}\n",
            q(&self.directory),
            contact.join(", "),
            q(&self.state_dir.display().to_string()),
            q(self.challenge.as_str()),
        );
        if let Some(pem) = &self.ca_bundle {
            out.push_str(&format!("ca_bundle = {}\n", q(&pem.display().to_string())));
        }
        out.push_str(&format!(
            "retry_initial_ms = {}\nretry_max_ms = {}\n",
            self.retry_initial_ms, self.retry_max_ms
        ));
        out
    }
}

/// How the ACME server checks that this host serves a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChallengeKind {
    /// `http://NAME/.well-known/acme-challenge/TOKEN` on `[http] listen` (port 80).
    #[serde(rename = "http-01")]
    Http01,
    /// A TLS handshake offering only ALPN `acme-tls/1` on `[https] listen` (443).
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl ChallengeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcme {
    directory: Spanned<String>,
    contact: Option<Vec<Spanned<String>>>,
    state_dir: Spanned<String>,
    challenge: Option<Spanned<ChallengeKind>>,
    ca_bundle: Option<Spanned<String>>,
    retry_initial_ms: Option<Spanned<i64>>,
    retry_max_ms: Option<Spanned<i64>>,
}

impl RawAcme {
    /// Where `ca_bundle` is written: a file read only when it is used, and reported
    /// there.
    pub(super) fn ca_bundle_span(&self) -> Option<Range<usize>> {
        self.ca_bundle.as_ref().map(Spanned::span)
    }
}

/// One minute, doubling to an hour: an ACME server that refuses is not hammered,
/// and one that is back is tried again within the hour.
const RETRY_INITIAL_MS: u64 = 60_000;
const RETRY_MAX_MS: u64 = 3_600_000;

/// What the rest of the file tells `[acme]`'s validation.
pub(super) struct Listeners {
    pub http: bool,
    pub https: bool,
    /// Where `[https] acme = true` is written, when it is.
    pub https_acme: Option<Range<usize>>,
}

pub(super) fn validate(
    raw: Option<RawAcme>,
    at: Listeners,
    errs: &mut Vec<ConfigError>,
) -> Option<AcmeConfig> {
    let Some(r) = raw else {
        if let Some(span) = at.https_acme {
            errs.push(ConfigError::at(span, "acme = true needs an [acme] table"));
        }
        return None;
    };
    let directory = r.directory.get_ref().trim().to_owned();
    if !directory.starts_with("https://") {
        let msg = format!("directory is the ACME server's https:// URL, got {directory:?}");
        errs.push(ConfigError::at(r.directory.span(), msg));
    }
    let state_dir = r.state_dir.get_ref().trim();
    if state_dir.is_empty() {
        errs.push(ConfigError::at(
            r.state_dir.span(),
            "state_dir may not be empty",
        ));
    } else if !state_dir.starts_with('/') {
        // Relative to whatever directory sluice was started in: a restart from
        // another (a unit without WorkingDirectory) orders every certificate again.
        let msg = format!("state_dir is an absolute path, got {state_dir:?}");
        errs.push(ConfigError::at(r.state_dir.span(), msg));
    }
    let challenge = r
        .challenge
        .as_ref()
        .map_or(ChallengeKind::Http01, |c| *c.get_ref());
    let span = r
        .challenge
        .as_ref()
        .map_or(r.directory.span(), Spanned::span);
    if challenge == ChallengeKind::Http01 && !at.http {
        let msg = "the http-01 challenge is answered on [http] listen, which is not set";
        errs.push(ConfigError::at(span.clone(), msg));
    }
    if !at.https {
        let msg = "ACME certificates are served on [https] listen, which is not set";
        errs.push(ConfigError::at(span, msg));
    }
    let contact = r
        .contact
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| {
            if c.get_ref().contains(':') {
                return Some(c.get_ref().trim().to_owned());
            }
            let msg = format!(
                "a contact is a URL (mailto:ops@example.com), got {:?}",
                c.get_ref()
            );
            errs.push(ConfigError::at(c.span(), msg));
            None
        })
        .collect();
    let retry_initial_ms = millis(r.retry_initial_ms.as_ref(), RETRY_INITIAL_MS, errs);
    let retry_max_ms = millis(r.retry_max_ms.as_ref(), RETRY_MAX_MS, errs).max(retry_initial_ms);
    Some(AcmeConfig {
        directory,
        contact,
        state_dir: PathBuf::from(state_dir),
        challenge,
        ca_bundle: r.ca_bundle.map(|c| PathBuf::from(c.into_inner())),
        retry_initial_ms,
        retry_max_ms,
        all_vhosts: at.https_acme.is_some(),
    })
}

fn millis(v: Option<&Spanned<i64>>, default: u64, errs: &mut Vec<ConfigError>) -> u64 {
    match v {
        None => default,
        Some(v) if (100..=86_400_000).contains(v.get_ref()) => *v.get_ref() as u64,
        Some(v) => {
            let msg = format!("must be from 100 to 86400000 (a day), got {}", v.get_ref());
            errs.push(ConfigError::at(v.span(), msg));
            default
        }
    }
}

/// A service's `acme = true`: an HTTP service with exact vhosts. `https_acme`:
/// `[https] acme = true`, which asks for every HTTP service's vhosts.
pub(super) fn validate_service(
    acme: Option<&Spanned<bool>>,
    https_acme: bool,
    mode: Mode,
    vhosts: &[Spanned<String>],
    errs: &mut Vec<ConfigError>,
) -> bool {
    let own = acme.filter(|a| *a.get_ref());
    if let Some(a) = own {
        if mode != Mode::Http || vhosts.is_empty() {
            let msg = "acme = true obtains a certificate for an http service's vhosts: this \
                       service has none";
            errs.push(ConfigError::at(a.span(), msg));
        }
    }
    let wanted = own.is_some() || (https_acme && mode == Mode::Http);
    if wanted {
        for v in vhosts.iter().filter(|v| v.get_ref().starts_with("*.")) {
            let msg = format!(
                "ACME cannot prove a wildcard vhost ({}) over http-01 or tls-alpn-01: give \
                 this service certificates of its own, or name the hosts",
                v.get_ref()
            );
            errs.push(ConfigError::at(v.span(), msg));
        }
        // Those a vhost's own check lets through ('_', empty labels): a vhost's
        // characters are refused there already.
        let odd = vhosts.iter().filter(|v| {
            let v = v.get_ref().trim();
            !v.starts_with("*.")
                && !is_dns_name(v)
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        });
        for v in odd {
            let msg = format!(
                "ACME orders certificates for DNS names (letters, digits, '-' and '.'), got \
                 vhost {:?}",
                v.get_ref()
            );
            errs.push(ConfigError::at(v.span(), msg));
        }
    }
    wanted && !vhosts.is_empty()
}

/// `name` is a DNS name an ACME server can be asked for, and one that may name a
/// file in `state_dir/certs/` (no '/', no dot-segment).
pub fn is_dns_name(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The vhost sets to obtain certificates for: one per service asking (its own
/// `acme`, or any HTTP service with `[https] acme`), its exact vhosts in its order
/// (a Marathon app's wildcard vhost cannot be proven, and is left to its own
/// certificates), a set listed once.
pub fn vhost_sets(services: &[ServiceConfig], acme: &AcmeConfig) -> Vec<Vec<String>> {
    let mut sets: Vec<Vec<String>> = Vec::new();
    let asking = services
        .iter()
        .filter(|s| s.tls.acme || (acme.all_vhosts && s.mode == Mode::Http));
    for s in asking {
        let set: Vec<String> = s
            .http
            .vhosts
            .iter()
            // A wildcard cannot be proven; a Marathon label that is not a DNS name
            // cannot be ordered, nor name a file.
            .filter(|v| is_dns_name(v))
            .cloned()
            .collect();
        if !set.is_empty() && !sets.contains(&set) {
            sets.push(set);
        }
    }
    sets
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, ChallengeKind};

    const BASE: &str = r#"
[http]
listen = "127.0.0.1:80"
[https]
listen = "127.0.0.1:443"
acme = true
[acme]
directory = "https://acme.example/dir"
contact = ["mailto:ops@example.com"]
state_dir = "/var/lib/sluice/acme"
"#;

    fn svc(vhosts: &str) -> String {
        format!("[[service]]\nname = \"shop\"\nmode = \"http\"\nbackends = [\"127.0.0.1:9\"]\nvhosts = {vhosts}\n")
    }

    #[test]
    fn https_acme_asks_for_every_http_services_vhosts() {
        let cfg = parse(&format!(
            "{BASE}{}",
            svc(r#"["shop.example", "www.shop.example"]"#)
        ))
        .expect("valid");
        let acme = cfg.acme.as_ref().expect("[acme]");
        assert_eq!(acme.challenge, ChallengeKind::Http01);
        assert_eq!(acme.retry_initial_ms, 60_000);
        assert!(acme.all_vhosts);
        assert_eq!(
            super::vhost_sets(&cfg.services, acme),
            vec![vec!["shop.example".to_string(), "www.shop.example".into()]]
        );
    }

    #[test]
    fn a_vhost_that_is_not_a_dns_name_is_refused_and_never_ordered() {
        for odd in ["a..b", ".a", "..", "under_score.example", "shop.example."] {
            let text = format!("{BASE}{}", svc(&format!("[{odd:?}]")));
            let errs = parse(&text).expect_err(odd);
            assert!(errs[0].message.contains("DNS names"), "{odd}: {errs:?}");
            assert_eq!(errs[0].clone().locate(&text).line, 15, "{odd}");
        }
        assert!(super::is_dns_name("www.shop-1.example"));
        let mut cfg = parse(&format!("{BASE}{}", svc(r#"["shop.example"]"#))).expect("valid");
        // What Marathon's labels may give, unchecked: left out.
        cfg.services[0].http.vhosts = vec!["../../etc/x".into(), "shop.example".into()];
        let acme = cfg.acme.clone().expect("[acme]");
        assert_eq!(
            super::vhost_sets(&cfg.services, &acme),
            vec![vec!["shop.example".to_string()]]
        );
    }

    #[test]
    fn check_prints_acme_and_it_parses_back() {
        let text = format!(
            "{BASE}ca_bundle = \"/etc/sluice/acme-root.pem\"\n{}",
            svc(r#"["shop.example"]"#)
        );
        let cfg = parse(&text).expect("valid");
        let shown = cfg.to_toml();
        for line in [
            "acme = true",
            "[acme]",
            "directory = \"https://acme.example/dir\"",
            "contact = [\"mailto:ops@example.com\"]",
            "state_dir = \"/var/lib/sluice/acme\"",
            "challenge = \"http-01\"",
            "ca_bundle = \"/etc/sluice/acme-root.pem\"",
            "retry_initial_ms = 60000",
            "retry_max_ms = 3600000",
        ] {
            assert!(shown.lines().any(|l| l == line), "{line} not in:\n{shown}");
        }
        let again = parse(&shown).expect("to_toml parses");
        assert_eq!(again.acme, cfg.acme);
        assert_eq!(again.services[0].tls.acme, cfg.services[0].tls.acme);
    }

    #[test]
    fn a_wildcard_vhost_is_refused_at_its_place() {
        let text = format!("{BASE}{}", svc(r#"["*.shop.example"]"#));
        let errs = parse(&text).expect_err("wildcard");
        let e = errs[0].clone().locate(&text);
        assert!(
            errs[0].message.contains("wildcard"),
            "{:?}",
            errs[0].message
        );
        assert_eq!(e.line, 15);
    }

    #[test]
    fn http01_without_http_listen_and_a_plain_directory_are_refused() {
        let text = BASE
            .replace("[http]\nlisten = \"127.0.0.1:80\"\n", "")
            .replace("https://acme", "http://acme");
        let errs = parse(&text).expect_err("refused");
        let all: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
        assert!(all.iter().any(|m| m.contains("https:// URL")), "{all:?}");
        assert!(all.iter().any(|m| m.contains("[http] listen")), "{all:?}");
    }

    #[test]
    fn a_relative_state_dir_is_refused_at_its_place() {
        let text = BASE.replace("\"/var/lib/sluice/acme\"", "\"var/acme\"");
        let errs = parse(&text).expect_err("relative");
        assert!(
            errs[0].message.contains("absolute"),
            "{:?}",
            errs[0].message
        );
        assert_eq!(errs[0].clone().locate(&text).line, 10);
    }

    #[test]
    fn a_service_acme_without_the_table_is_refused() {
        let text =
            "[https]\nlisten = \"127.0.0.1:443\"\n[[service]]\nname = \"a\"\nmode = \"http\"\n\
                    backends = [\"127.0.0.1:9\"]\nvhosts = [\"a.example\"]\nacme = true\n";
        let errs = parse(text).expect_err("refused");
        assert!(errs[0].message.contains("[acme]"), "{:?}", errs[0].message);
    }
}
