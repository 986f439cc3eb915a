//! TOML text → [`Config`], with every error located at line and column.
//!
//! Two passes: serde checks shape and types (unknown keys, wrong types, bad enum
//! values; it stops at the first), then [`validate`] checks meaning and reports every
//! problem it finds, each at the span of the value at fault.

use super::listen::Listen;
use super::service::{validate_service, RawService};
use super::*;
use serde::Deserialize;
use std::collections::HashSet;
use std::ops::Range;
use toml::Spanned;

/// A configuration error at a byte range of the source text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub span: Option<Range<usize>>,
    pub message: String,
}

/// A [`ConfigError`] resolved to 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    pub line: usize,
    pub column: usize,
}

impl ConfigError {
    pub(super) fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        ConfigError {
            span: Some(span),
            message: message.into(),
        }
    }

    /// Line and column (1-based, column in characters) of the error's start.
    pub fn locate(&self, text: &str) -> Located {
        let start = self.span.as_ref().map_or(0, |s| s.start).min(text.len());
        let before = &text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Located { line, column }
    }

    /// `file:line:column: message`, the form editors and `sluice check` users expect.
    pub fn render_in(&self, file: &str, text: &str) -> String {
        let at = self.locate(text);
        format!("{file}:{}:{}: {}", at.line, at.column, self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    server: Option<RawServer>,
    admin: Option<RawAdmin>,
    http: Option<RawHttp>,
    https: Option<super::tls::RawHttps>,
    tls: Option<super::tls::RawTls>,
    marathon: Option<super::marathon::RawMarathon>,
    anycast: Option<super::anycast::RawAnycast>,
    acme: Option<super::acme::RawAcme>,
    #[serde(default)]
    service: Vec<Spanned<RawService>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<Spanned<String>>,
    max_header_bytes: Option<Spanned<i64>>,
    header_timeout_ms: Option<Spanned<i64>>,
    keepalive_timeout_ms: Option<Spanned<i64>>,
    backend_timeout_ms: Option<Spanned<i64>>,
    forwarded_headers: Option<bool>,
    pool_per_backend: Option<Spanned<i64>>,
    accept_proxy: Option<Spanned<bool>>,
    proxy_trusted: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Spanned<String>,
    token: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    workers: Option<Spanned<i64>>,
    io: Option<IoKind>,
    max_connections: Option<Spanned<i64>>,
    connect_timeout_ms: Option<Spanned<i64>>,
    idle_timeout_ms: Option<Spanned<i64>>,
    shutdown_grace_ms: Option<Spanned<i64>>,
    splice: Option<SpliceMode>,
    splice_threshold_bytes: Option<Spanned<i64>>,
}

/// Parse and validate config text. Returns every error found (at least one on `Err`).
pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    parse_with_warnings(text).map(|(config, _)| config)
}

/// [`parse`], with warnings about a valid config: settings that work but are likely
/// mistakes (an admin port reachable from other hosts, a short token).
pub fn parse_with_warnings(text: &str) -> Result<(Config, Vec<ConfigError>), Vec<ConfigError>> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        if let Some(hint) = misplaced_table(text) {
            return vec![hint];
        }
        vec![ConfigError {
            span: e.span(),
            message: e
                .message()
                .trim_end()
                .replace("expected i64", "expected an integer"),
        }]
    })?;
    validate(raw, text)
}

/// A table header written where TOML reads something else than meant, which the
/// parser reports in its own terms ("invalid type: map" at 1:1, "duplicate key" at the
/// next `[[service]]`, "unknown variant" inside): said in the config's terms instead.
fn misplaced_table(text: &str) -> Option<ConfigError> {
    let heads = table_headers(text);
    let hint = |span: &Range<usize>, message: &str| {
        Some(ConfigError {
            span: Some(span.clone()),
            message: message.into(),
        })
    };
    let first_service = heads
        .iter()
        .position(|(name, array, _)| *array && name == "service");
    for (i, (name, array, span)) in heads.iter().enumerate() {
        match (name.as_str(), *array) {
            ("service", false) => {
                return hint(
                    span,
                    "[service] is one table: each service is an entry of an array of \
                     tables, written [[service]]",
                )
            }
            ("service.health", true) => {
                return hint(
                    span,
                    "[[service.health]] is an array of tables: a service has one check, \
                     written [service.health] after its [[service]]",
                )
            }
            (n, false) if n.starts_with("service.") && first_service.map_or(true, |f| i < f) => {
                return hint(
                    span,
                    &format!("[{n}] belongs to the [[service]] above it: write it after one"),
                )
            }
            _ => {}
        }
    }
    None
}

/// Every table header in `text`: its name (spaces around dots removed), whether it is
/// `[[an array of tables]]`, and where it stands.
fn table_headers(text: &str) -> Vec<(String, bool, Range<usize>)> {
    let mut out = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        let header = trimmed
            .strip_prefix('[')
            .and_then(|t| t.split('#').next())
            .map(str::trim_end)
            .and_then(|t| t.strip_suffix(']'));
        if let Some(h) = header {
            let (name, array) = match h.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                Some(inner) => (inner, true),
                None => (h, false),
            };
            let name: Vec<&str> = name.split('.').map(str::trim).collect();
            let start = at + (line.len() - line.trim_start().len());
            out.push((name.join("."), array, start..start + trimmed.len()));
        }
        at += line.len();
    }
    out
}

/// An integer setting checked against an inclusive range.
pub(super) fn int_in(
    v: &Option<Spanned<i64>>,
    default: i64,
    range: Range<i64>,
    what: &str,
    errs: &mut Vec<ConfigError>,
) -> i64 {
    let Some(v) = v else { return default };
    let n = *v.get_ref();
    if n < range.start || n > range.end {
        errs.push(ConfigError::at(
            v.span(),
            format!(
                "{what} must be between {} and {}, got {n}",
                range.start, range.end
            ),
        ));
        return default;
    }
    n
}

fn validate(raw: RawFile, text: &str) -> Result<(Config, Vec<ConfigError>), Vec<ConfigError>> {
    let mut errs = Vec::new();
    let mut listens = Vec::new();
    let mut origin = Origin::default();
    // `owner` as messages name it; `key` as the registry does (see `Origin::listen`).
    let mut listen_at = |what: &Spanned<String>, key: &str, owner: String| {
        let at = ConfigError::at(what.span(), "").locate(text);
        origin.listens.insert(key.to_owned(), at);
        if let Ok(addr) = what.get_ref().parse::<SocketAddr>() {
            listens.push(Listen {
                addr,
                span: what.span(),
                owner,
            });
        }
    };
    if let Some(l) = raw.http.as_ref().and_then(|h| h.listen.as_ref()) {
        listen_at(l, "[http] listen", "[http] listen".into());
    }
    if let Some(h) = &raw.https {
        listen_at(&h.listen, "[https] listen", "[https] listen".into());
    }
    if let Some(a) = &raw.admin {
        listen_at(&a.listen, "[admin] listen", "[admin] listen".into());
    }
    let mut warnings = Vec::new();
    let server = validate_server(raw.server, &mut errs);
    let admin = raw.admin.map_or_else(AdminConfig::default, |a| {
        validate_admin(a, &mut errs, &mut warnings)
    });
    let http = validate_http(raw.http, &mut errs);
    let https = super::tls::validate_https(&raw.https, &mut errs);
    let https_proxy = raw.https.as_ref().map_or_else(AcceptProxy::default, |h| {
        super::proxy::validate_accept(
            super::proxy::AcceptKeys {
                accept: h.accept_proxy.as_ref(),
                trusted: h.proxy_trusted.as_ref(),
            },
            Ok(()),
            &mut errs,
        )
    });
    // Each certificate list's place (inserted once `listen_at` is done with `origin`).
    let mut certificates_at = Vec::new();
    if let Some(span) = raw.tls.as_ref().and_then(super::tls::certificates_span) {
        let at = ConfigError::at(span, "").locate(text);
        certificates_at.push((TLS_CERTIFICATES.to_owned(), at));
    }
    let tls = super::tls::validate_tls(raw.tls, &mut errs);
    let anycast = super::anycast::validate(raw.anycast, &mut errs);
    let https_acme = raw
        .https
        .as_ref()
        .and_then(|h| h.acme.as_ref())
        .filter(|a| *a.get_ref())
        .map(Spanned::span);
    let acme_table = raw.acme.is_some();
    origin.acme_ca_bundle = raw
        .acme
        .as_ref()
        .and_then(super::acme::RawAcme::ca_bundle_span)
        .map(|span| ConfigError::at(span, "").locate(text));
    let acme = super::acme::validate(
        raw.acme,
        super::acme::Listeners {
            http: http.listen.is_some(),
            https: https.is_some(),
            https_acme: https_acme.clone(),
        },
        &mut errs,
    );
    let mut services = Vec::with_capacity(raw.service.len());
    // Where each valid service is reported: its name.
    let mut named_at = Vec::with_capacity(raw.service.len());
    let mut names = HashSet::new();
    for s in raw.service {
        let s = s.into_inner();
        if !names.insert(s.name.get_ref().clone()) {
            let msg = format!("duplicate service name {:?}", s.name.get_ref());
            errs.push(ConfigError::at(s.name.span(), msg));
        }
        // Checked apart from the rest so a conflict is reported even when the service
        // has other errors.
        if let Some(l) = &s.listen {
            let name = s.name.get_ref();
            listen_at(l, name.trim(), format!("service {name:?}"));
        }
        if let Some(c) = &s.certificates {
            let at = ConfigError::at(c.span(), "").locate(text);
            certificates_at.push((s.name.get_ref().trim().to_owned(), at));
        }
        if https.is_none() {
            if let Some(r) = s.redirect_to_https.as_ref().filter(|r| *r.get_ref()) {
                let msg = "redirect_to_https sends clients to https://HOST/ on port 443, and \
                           [https] listen is not set: this sluice does not serve it";
                warnings.push(ConfigError::at(r.span(), msg));
            }
        }
        if let Some(a) = s.acme.as_ref().filter(|a| *a.get_ref() && !acme_table) {
            errs.push(ConfigError::at(
                a.span(),
                "acme = true needs an [acme] table",
            ));
        }
        let name_span = s.name.span();
        if let Some(svc) = validate_service(s, https_acme.is_some(), &mut errs) {
            services.push(svc);
            named_at.push(name_span);
        }
    }
    origin.certificates.extend(certificates_at);
    let marathon = raw
        .marathon
        .map(|m| super::marathon::validate(m, text, &mut origin, &mut errs));
    errs.extend(super::listen::conflicts(listens, text));
    let located: Vec<_> = services.iter().zip(named_at).collect();
    errs.extend(super::routes::unreachable(
        &located,
        http.listen.is_some() || https.is_some(),
        text,
    ));
    errs.extend(super::tls::sni_conflicts(&located, https.is_some(), text));
    // Reported in file order, whatever order the checks ran in.
    errs.sort_by_key(|e| e.span.as_ref().map_or(0, |s| s.start));
    if errs.is_empty() {
        let config = Config {
            server,
            admin,
            http,
            https,
            https_proxy,
            tls,
            anycast,
            acme,
            marathon,
            services,
            origin,
        };
        Ok((config, warnings))
    } else {
        Err(errs)
    }
}

/// Tokens shorter than this are warned about.
const SHORT_TOKEN: usize = 16;
const MAX_TOKEN: usize = 512;

fn validate_admin(
    a: RawAdmin,
    errs: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> AdminConfig {
    let listen = match a.listen.get_ref().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            let msg = format!(
                "admin listen must be IPv4:port or [IPv6]:port, got {:?}",
                a.listen.get_ref()
            );
            errs.push(ConfigError::at(a.listen.span(), msg));
            None
        }
    };
    let token = a.token.as_ref().and_then(|t| {
        let v = t.get_ref();
        if !is_b64token(v) || v.len() > MAX_TOKEN {
            let msg = format!(
                "admin token must be 1 to {MAX_TOKEN} characters of A-Z a-z 0-9 - . _ ~ + / \
                 (then = padding), as a bearer token is written"
            );
            errs.push(ConfigError::at(t.span(), msg));
            return None;
        }
        if v.len() < SHORT_TOKEN {
            let msg = format!(
                "admin token is only {} characters; 32 random ones (openssl rand -hex 16) resist guessing",
                v.len()
            );
            warnings.push(ConfigError::at(t.span(), msg));
        }
        Some(v.clone())
    });
    if let Some(addr) = listen.filter(|a| !a.ip().to_canonical().is_loopback()) {
        let msg = if token.is_some() {
            format!(
                "admin listen {addr} is not a loopback address: the token crosses the \
                 network in clear text (the admin port has no TLS)"
            )
        } else {
            format!(
                "admin listen {addr} is not a loopback address: whoever reaches it reads \
                 the statistics and can trigger Marathon re-fetches; keep it on loopback \
                 or set [admin] token"
            )
        };
        warnings.push(ConfigError::at(a.listen.span(), msg));
    }
    AdminConfig { listen, token }
}

/// RFC 6750's `b64token`: what may follow `Bearer `.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fn validate_server(raw: Option<RawServer>, errs: &mut Vec<ConfigError>) -> ServerConfig {
    let d = ServerConfig::default();
    let Some(r) = raw else { return d };
    let ms = 0..(365 * 24 * 3_600_000);
    ServerConfig {
        workers: int_in(&r.workers, 0, 0..MAX_WORKERS as i64, "workers", errs) as usize,
        io: r.io.unwrap_or(d.io),
        max_connections: int_in(
            &r.max_connections,
            i64::from(d.max_connections),
            1..10_000_000,
            "max_connections",
            errs,
        ) as u32,
        connect_timeout_ms: int_in(
            &r.connect_timeout_ms,
            3000,
            1..ms.end,
            "connect_timeout_ms",
            errs,
        ) as u64,
        idle_timeout_ms: int_in(
            &r.idle_timeout_ms,
            3_600_000,
            1..ms.end,
            "idle_timeout_ms",
            errs,
        ) as u64,
        shutdown_grace_ms: int_in(&r.shutdown_grace_ms, 10_000, ms, "shutdown_grace_ms", errs)
            as u64,
        splice: r.splice.unwrap_or(d.splice),
        splice_threshold_bytes: int_in(
            &r.splice_threshold_bytes,
            d.splice_threshold_bytes as i64,
            0..i64::MAX,
            "splice_threshold_bytes",
            errs,
        ) as u64,
    }
}

fn validate_http(raw: Option<RawHttp>, errs: &mut Vec<ConfigError>) -> HttpConfig {
    let d = HttpConfig::default();
    let Some(r) = raw else { return d };
    let ms = 1..(365 * 24 * 3_600_000);
    let listen = r
        .listen
        .and_then(|l| match l.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                let msg = format!(
                    "http listen must be IPv4:port or [IPv6]:port, got {:?}",
                    l.get_ref()
                );
                errs.push(ConfigError::at(l.span(), msg));
                None
            }
        });
    let accept_proxy = super::proxy::validate_accept(
        super::proxy::AcceptKeys {
            accept: r.accept_proxy.as_ref(),
            trusted: r.proxy_trusted.as_ref(),
        },
        match listen {
            Some(_) => Ok(()),
            None => Err("[http] listen"),
        },
        errs,
    );
    let ms_of =
        |v: &Option<Spanned<i64>>, default: u64, what: &str, errs: &mut Vec<ConfigError>| {
            int_in(v, default as i64, ms.clone(), what, errs) as u64
        };
    HttpConfig {
        listen,
        max_header_bytes: int_in(
            &r.max_header_bytes,
            d.max_header_bytes as i64,
            256..1_048_576,
            "max_header_bytes",
            errs,
        ) as usize,
        header_timeout_ms: ms_of(
            &r.header_timeout_ms,
            d.header_timeout_ms,
            "header_timeout_ms",
            errs,
        ),
        keepalive_timeout_ms: ms_of(
            &r.keepalive_timeout_ms,
            d.keepalive_timeout_ms,
            "keepalive_timeout_ms",
            errs,
        ),
        backend_timeout_ms: ms_of(
            &r.backend_timeout_ms,
            d.backend_timeout_ms,
            "backend_timeout_ms",
            errs,
        ),
        forwarded_headers: r.forwarded_headers.unwrap_or(d.forwarded_headers),
        pool_per_backend: int_in(
            &r.pool_per_backend,
            d.pool_per_backend as i64,
            0..100_000,
            "pool_per_backend",
            errs,
        ) as usize,
        accept_proxy,
    }
}

/// Trial division: table sizes are at most 2^24, so this is at most ~2,000 steps.
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3u32;
    while d.saturating_mul(d) <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}
