//! `[https]`, `[tls]` and a service's TLS keys (`tls`, `certificates`, `sni`): what
//! they mean and what is refused. Certificates themselves are read only when put to
//! use (`sluice check`, start, reload): parsing stays a function of the text.

use super::parse::ConfigError;
use super::{Mode, ServiceConfig, TlsConfig, TlsVersion};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttps {
    pub listen: Spanned<String>,
    pub acme: Option<Spanned<bool>>,
    pub accept_proxy: Option<Spanned<bool>>,
    pub proxy_trusted: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    certificates: Option<Spanned<Certificates>>,
    min_version: Option<Spanned<String>>,
    alpn: Option<Vec<Spanned<String>>>,
}

/// The protocols an ALPN list may name: sluice speaks HTTP/1.x to clients.
const ALPN: [&str; 2] = ["http/1.1", "http/1.0"];

pub(super) fn validate_https(
    raw: &Option<RawHttps>,
    errs: &mut Vec<ConfigError>,
) -> Option<SocketAddr> {
    let l = &raw.as_ref()?.listen;
    match l.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            let msg = format!(
                "[https] listen must be IPv4:port or [IPv6]:port, got {:?}",
                l.get_ref()
            );
            errs.push(ConfigError::at(l.span(), msg));
            None
        }
    }
}

/// Where `[tls] certificates` is written, when it is.
pub(super) fn certificates_span(raw: &RawTls) -> Option<Range<usize>> {
    raw.certificates.as_ref().map(Spanned::span)
}

pub(super) fn validate_tls(raw: Option<RawTls>, errs: &mut Vec<ConfigError>) -> TlsConfig {
    let d = TlsConfig::default();
    let Some(r) = raw else { return d };
    let min_version = match &r.min_version {
        None => d.min_version,
        Some(v) => match v.get_ref().as_str() {
            "1.2" => TlsVersion::Tls12,
            "1.3" => TlsVersion::Tls13,
            other => {
                let msg = format!("min_version must be \"1.2\" or \"1.3\", got {other:?}");
                errs.push(ConfigError::at(v.span(), msg));
                d.min_version
            }
        },
    };
    let alpn = match &r.alpn {
        None => d.alpn,
        Some(list) => list
            .iter()
            .filter_map(|p| {
                if ALPN.contains(&p.get_ref().as_str()) {
                    return Some(p.get_ref().clone());
                }
                let msg = format!(
                    "alpn may name {} (sluice speaks HTTP/1.x to clients), got {:?}",
                    ALPN.join(" and "),
                    p.get_ref()
                );
                errs.push(ConfigError::at(p.span(), msg));
                None
            })
            .collect(),
    };
    TlsConfig {
        certificates: certificate_list(r.certificates, errs),
        min_version,
        alpn,
        from_marathon: Vec::new(),
    }
}

/// `[tls] certificates`: a list, or one string of comma-separated paths as
/// Marathon-LB's `--ssl-certs` takes them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Certificates {
    List(Vec<String>),
    Commas(String),
}

fn certificate_list(
    raw: Option<Spanned<Certificates>>,
    errs: &mut Vec<ConfigError>,
) -> Vec<PathBuf> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    let span = raw.span();
    let (list, empty) = match raw.into_inner() {
        Certificates::List(l) => {
            let empty = l.iter().any(|p| p.trim().is_empty());
            (l.into_iter().map(PathBuf::from).collect(), empty)
        }
        Certificates::Commas(s) => {
            let list = comma_paths(&s);
            let empty = list.is_empty();
            (list, empty)
        }
    };
    if empty {
        errs.push(ConfigError::at(span, "a certificate path may not be empty"));
    }
    list
}

/// Comma-separated paths, as `HAPROXY_{n}_SSL_CERT` and Marathon-LB's `--ssl-certs`
/// write them.
pub fn comma_paths(list: &str) -> Vec<PathBuf> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// Certificate paths: files or directories, each non-empty.
pub(super) fn paths(raw: Option<&[Spanned<String>]>, errs: &mut Vec<ConfigError>) -> Vec<PathBuf> {
    raw.unwrap_or_default()
        .iter()
        .filter_map(|p| {
            if p.get_ref().trim().is_empty() {
                errs.push(ConfigError::at(
                    p.span(),
                    "a certificate path may not be empty",
                ));
                return None;
            }
            Some(PathBuf::from(p.get_ref()))
        })
        .collect()
}

/// A service's `sni` names: host names (`db.example`) or one-label wildcards
/// (`*.db.example`), lower-cased.
pub(super) fn sni_names(raw: &[Spanned<String>], errs: &mut Vec<ConfigError>) -> Vec<String> {
    raw.iter()
        .filter_map(|n| {
            let name = n.get_ref().trim().to_ascii_lowercase();
            let host = name.strip_prefix("*.").unwrap_or(&name);
            if is_host_name(host) {
                return Some(name);
            }
            let msg = format!(
                "sni names a server: a host name (db.example) or *. and one (*.db.example), got {:?}",
                n.get_ref()
            );
            errs.push(ConfigError::at(n.span(), msg));
            None
        })
        .collect()
}

/// Letters, digits and hyphens in dot-separated labels of 1 to 63, at most 253 in all.
fn is_host_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The TLS keys of one service, checked against its mode and listen: `tls = true`
/// terminates TLS on the service's own port (HTTP mode); `certificates` go with it;
/// `sni` sends matching connections of `[https] listen` through untouched (TCP mode,
/// no port of its own).
pub(super) struct ServiceTlsKeys<'a> {
    pub mode: Mode,
    pub has_listen: bool,
    pub tls: Option<&'a Spanned<bool>>,
    pub certificates: Option<&'a Spanned<Vec<Spanned<String>>>>,
    pub sni: Option<&'a Spanned<Vec<Spanned<String>>>>,
}

/// `(tls, certificates, sni)` of a service, with its errors.
pub(super) fn validate_service_tls(
    s: ServiceTlsKeys,
    errs: &mut Vec<ConfigError>,
) -> (bool, Vec<PathBuf>, Vec<String>) {
    let tls = s.tls.is_some_and(|t| *t.get_ref());
    if let Some(t) = s.tls.filter(|_| tls) {
        if s.mode != Mode::Http {
            let msg = "tls = true terminates TLS for an http service; a tcp service forwards \
                       TLS untouched (on its own listen, or by sni on [https] listen)";
            errs.push(ConfigError::at(t.span(), msg));
        } else if !s.has_listen {
            let msg = "tls = true is for a service's own listen; vhosts are served over TLS \
                       on [https] listen";
            errs.push(ConfigError::at(t.span(), msg));
        }
    }
    let certificates = match s.certificates {
        Some(c) if !tls => {
            errs.push(ConfigError::at(c.span(), "certificates go with tls = true"));
            Vec::new()
        }
        Some(c) => paths(Some(c.get_ref()), errs),
        None => Vec::new(),
    };
    let sni = match s.sni {
        None => Vec::new(),
        Some(list) if s.mode != Mode::Tcp || s.has_listen => {
            let msg = "sni is for a tcp service without a listen of its own: it takes the TLS \
                       connections of [https] listen that name its servers";
            errs.push(ConfigError::at(list.span(), msg));
            Vec::new()
        }
        Some(list) if list.get_ref().is_empty() => {
            errs.push(ConfigError::at(list.span(), "sni needs at least one name"));
            Vec::new()
        }
        Some(list) => sni_names(list.get_ref(), errs),
    };
    (tls, certificates, sni)
}

/// The `sni` names two services claim (the first keeps them), and `sni` while
/// `[https] listen` is not set (nothing would reach the service).
pub(super) fn sni_conflicts(
    services: &[(&ServiceConfig, Range<usize>)],
    https: bool,
    text: &str,
) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let mut claimed: HashMap<&str, (&str, &Range<usize>)> = HashMap::new();
    for (svc, span) in services {
        if svc.tls.sni.is_empty() {
            continue;
        }
        if !https {
            let msg = format!(
                "service {:?} is routed by sni on [https] listen, which is not set: nothing \
                 reaches it",
                svc.name
            );
            errs.push(ConfigError::at(span.clone(), msg));
        }
        for name in &svc.tls.sni {
            let first = *claimed.entry(name).or_insert((&svc.name, span));
            if std::ptr::eq(first.1, span) {
                continue;
            }
            let at = ConfigError::at(first.1.clone(), "").locate(text);
            let msg = format!(
                "sni {name:?} already passed to service {:?} at {}:{}",
                first.0, at.line, at.column
            );
            errs.push(ConfigError::at(span.clone(), msg));
        }
    }
    errs
}
