//! A `[[service]]` table: its raw form as TOML gives it, and its validation into a
//! [`ServiceConfig`] — listen, balancing and hash, HTTP routing options, backends.
//! The TLS, health and PROXY protocol keys are validated beside their own types.

use super::parse::{int_in, ConfigError};
use super::*;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) name: Spanned<String>,
    mode: Option<Mode>,
    pub(super) listen: Option<Spanned<String>>,
    balance: Option<Balance>,
    hash: Option<Spanned<String>>,
    table_size: Option<Spanned<i64>>,
    backends: Spanned<Vec<Spanned<RawBackend>>>,
    vhosts: Option<Vec<Spanned<String>>>,
    pub(super) acme: Option<Spanned<bool>>,
    path_prefix: Option<Spanned<String>>,
    sticky: Option<Spanned<bool>>,
    sticky_cookie: Option<Spanned<String>>,
    pub(super) redirect_to_https: Option<Spanned<bool>>,
    tls: Option<Spanned<bool>>,
    pub(super) certificates: Option<Spanned<Vec<Spanned<String>>>>,
    sni: Option<Spanned<Vec<Spanned<String>>>>,
    health: Option<Spanned<super::health::RawHealth>>,
    accept_proxy: Option<Spanned<bool>>,
    proxy_trusted: Option<Spanned<Vec<Spanned<String>>>>,
    send_proxy: Option<Spanned<toml::Value>>,
    anycast: Option<Spanned<bool>>,
}

/// `"host:port"` or `{ addr = "host:port", weight = 3 }`.
struct RawBackend {
    addr: String,
    weight: Option<i64>,
}

impl<'de> Deserialize<'de> for RawBackend {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawBackend;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#""host:port" or { addr = "host:port", weight = N }"#)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawBackend, E> {
                Ok(RawBackend {
                    addr: s.to_owned(),
                    weight: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawBackend, A::Error> {
                let (mut addr, mut weight) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "addr" => addr = Some(map.next_value::<String>()?),
                        "weight" => weight = Some(map.next_value::<i64>()?),
                        other => return Err(de::Error::unknown_field(other, &["addr", "weight"])),
                    }
                }
                let addr = addr.ok_or_else(|| de::Error::missing_field("addr"))?;
                Ok(RawBackend { addr, weight })
            }
        }
        d.deserialize_any(V)
    }
}

/// What [`is_service_name`] asks, as errors and reports say it.
pub const SERVICE_NAME_RULE: &str =
    "may hold only letters, digits, '-', '_', '.' and ':' (as HAProxy's proxy names)";

/// A service name HAProxy would take for a proxy: ASCII letters, digits, `-`, `_`,
/// `.` and `:`. Names are shown where tools read them as HAProxy writes them (the
/// stats CSV, which has no quoting: a comma or a line break in a name would split a
/// row or forge one), so a name HAProxy refuses is refused here too: in a file's
/// `[[service]] name`, and for Marathon's apps (see `marathon::apps`).
pub fn is_service_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

pub(super) fn validate_service(
    s: RawService,
    https_acme: bool,
    errs: &mut Vec<ConfigError>,
) -> Option<ServiceConfig> {
    let before = errs.len();
    let name = s.name.get_ref().trim().to_owned();
    if name.is_empty() || name.len() > 128 {
        errs.push(ConfigError::at(
            s.name.span(),
            "service name must be 1 to 128 characters",
        ));
    } else if !is_service_name(&name) {
        let msg = format!("service name {name:?} {SERVICE_NAME_RULE}");
        errs.push(ConfigError::at(s.name.span(), msg));
    }
    let listen = s
        .listen
        .as_ref()
        .map(|l| match l.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                let msg = format!(
                    "listen must be IPv4:port or [IPv6]:port, got {:?}",
                    l.get_ref()
                );
                errs.push(ConfigError::at(l.span(), msg));
                None
            }
        });
    let mode = s.mode.unwrap_or(Mode::Tcp);
    let balance = s.balance.unwrap_or(match mode {
        Mode::Tcp => Balance::Maglev,
        Mode::Http => Balance::Roundrobin,
    });
    let (hash, hash_name) = match &s.hash {
        None => (HashKey::Tuple, String::new()),
        Some(h) => parse_hash(h, mode, balance, errs),
    };
    let http = validate_http_options(&s, mode, errs);
    let (terminate, certificates, sni) = super::tls::validate_service_tls(
        super::tls::ServiceTlsKeys {
            mode,
            has_listen: s.listen.is_some(),
            tls: s.tls.as_ref(),
            certificates: s.certificates.as_ref(),
            sni: s.sni.as_ref(),
        },
        errs,
    );
    let acme = super::acme::validate_service(
        s.acme.as_ref(),
        https_acme,
        mode,
        s.vhosts.as_deref().unwrap_or_default(),
        errs,
    );
    let routed = match mode {
        Mode::Tcp => s.sni.is_some(),
        Mode::Http => !http.vhosts.is_empty() || http.path_prefix.is_some(),
    };
    if s.listen.is_none() && !routed {
        let msg = match mode {
            Mode::Tcp => "a tcp service needs listen (or sni, on [https] listen)",
            Mode::Http => "an http service needs listen, vhosts or path_prefix",
        };
        errs.push(ConfigError::at(s.name.span(), msg));
    }
    let table_size = int_in(
        &s.table_size,
        i64::from(DEFAULT_TABLE_SIZE),
        1..i64::from(MAX_TABLE_SIZE),
        "table_size",
        errs,
    ) as u32;
    if let Some(t) = &s.table_size {
        if errs.len() == before && !is_prime(table_size) {
            let msg =
                format!("table_size must be prime, got {table_size} (65537 is a good choice)");
            errs.push(ConfigError::at(t.span(), msg));
        }
    }
    let backends = validate_backends(&s.backends, errs);
    if backends.len() > table_size as usize {
        let msg = format!(
            "table_size {table_size} is smaller than the number of backends ({})",
            backends.len()
        );
        // At table_size when written, else at the backends outgrowing the default.
        let at = s
            .table_size
            .as_ref()
            .map_or(s.backends.span(), Spanned::span);
        errs.push(ConfigError::at(at, msg));
    }
    let health = s
        .health
        .as_ref()
        .map(|h| super::health::validate(h, &http.vhosts, errs));
    let proxy = ServiceProxy {
        accept: super::proxy::validate_accept(
            super::proxy::AcceptKeys {
                accept: s.accept_proxy.as_ref(),
                trusted: s.proxy_trusted.as_ref(),
            },
            match s.listen {
                Some(_) => Ok(()),
                None => Err(
                    "listen: a service without one is reached through [http] or \
                             [https] listen, whose accept_proxy applies",
                ),
            },
            errs,
        ),
        send: super::proxy::validate_send(s.send_proxy.as_ref(), errs),
    };
    let listen = match listen {
        Some(l) => Some(l?),
        None => None,
    };
    let anycast = super::anycast::validate_service(s.anycast.as_ref(), listen, errs);
    (errs.len() == before).then_some(ServiceConfig {
        name,
        mode,
        listen,
        balance,
        hash,
        table_size,
        backends,
        draining: Vec::new(),
        maint: Vec::new(),
        server_names: Vec::new(),
        http: HttpOptions { hash_name, ..http },
        tls: ServiceTls {
            terminate,
            certificates,
            sni,
            acme,
        },
        health,
        proxy,
        anycast,
    })
}

/// `source`, `tuple`, `header:NAME` or `cookie:NAME` (the last two in HTTP mode).
/// Only Maglev hashes: with another balance a hash would be ignored, so it is an
/// error, as HTTP settings on a TCP service are.
fn parse_hash(
    h: &Spanned<String>,
    mode: Mode,
    balance: Balance,
    errs: &mut Vec<ConfigError>,
) -> (HashKey, String) {
    let v = h.get_ref().as_str();
    let named = |prefix: &str| {
        v.strip_prefix(prefix)
            .map(str::trim)
            .filter(|n| is_token(n))
    };
    let (key, name) = match v {
        "source" => (HashKey::Source, String::new()),
        "tuple" => (HashKey::Tuple, String::new()),
        _ if mode == Mode::Http && named("header:").is_some() => (
            HashKey::Header,
            named("header:").unwrap_or_default().to_owned(),
        ),
        _ if mode == Mode::Http && named("cookie:").is_some() => (
            HashKey::Cookie,
            named("cookie:").unwrap_or_default().to_owned(),
        ),
        _ => {
            let expected = match mode {
                Mode::Tcp => "`source` or `tuple`",
                Mode::Http => "`source`, `tuple`, `header:NAME` or `cookie:NAME`",
            };
            let msg = format!("unknown hash {v:?}, expected {expected}");
            errs.push(ConfigError::at(h.span(), msg));
            return (HashKey::Tuple, String::new());
        }
    };
    if balance != Balance::Maglev {
        let (word, default) = match balance {
            Balance::Roundrobin => ("roundrobin", " (the default in http mode)"),
            _ => ("leastconn", ""),
        };
        let msg = format!(
            "hash needs balance = \"maglev\": {word}{default} does not hash, so hash would be ignored"
        );
        errs.push(ConfigError::at(h.span(), msg));
    }
    (key, name)
}

/// An HTTP token (header and cookie names).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn validate_http_options(s: &RawService, mode: Mode, errs: &mut Vec<ConfigError>) -> HttpOptions {
    let d = HttpOptions::default();
    let http_only = |what: &str, span: Range<usize>, errs: &mut Vec<ConfigError>| {
        if mode != Mode::Http {
            errs.push(ConfigError::at(
                span,
                format!("{what} needs mode = \"http\""),
            ));
        }
    };
    let mut vhosts = Vec::new();
    for v in s.vhosts.iter().flatten() {
        http_only("vhosts", v.span(), errs);
        let host = v.get_ref().trim().to_ascii_lowercase();
        let bare = host.strip_prefix("*.").unwrap_or(&host);
        let ok = !bare.is_empty()
            && bare.len() <= 253
            && bare
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !ok {
            let msg = format!(
                "vhost must be a host name or *.domain, got {:?}",
                v.get_ref()
            );
            errs.push(ConfigError::at(v.span(), msg));
        }
        vhosts.push(host);
    }
    let path_prefix = s.path_prefix.as_ref().map(|p| {
        http_only("path_prefix", p.span(), errs);
        if !p.get_ref().starts_with('/') || p.get_ref().bytes().any(|b| b <= b' ' || b == 0x7f) {
            let msg = format!(
                "path_prefix must start with / and hold no spaces, got {:?}",
                p.get_ref()
            );
            errs.push(ConfigError::at(p.span(), msg));
        }
        p.get_ref().clone()
    });
    let sticky_cookie = match &s.sticky_cookie {
        Some(c) if !is_token(c.get_ref()) => {
            let msg = format!("sticky_cookie must be a cookie name, got {:?}", c.get_ref());
            errs.push(ConfigError::at(c.span(), msg));
            d.sticky_cookie
        }
        Some(c) => c.get_ref().clone(),
        None => d.sticky_cookie,
    };
    let flags = [
        ("sticky", &s.sticky),
        ("redirect_to_https", &s.redirect_to_https),
    ];
    for (key, flag) in flags {
        if let Some(f) = flag.as_ref().filter(|f| *f.get_ref()) {
            http_only(key, f.span(), errs);
        }
    }
    HttpOptions {
        vhosts,
        path_prefix,
        sticky: s.sticky.as_ref().is_some_and(|f| *f.get_ref()),
        sticky_cookie,
        redirect_to_https: s.redirect_to_https.as_ref().is_some_and(|f| *f.get_ref()),
        hash_name: String::new(),
    }
}

fn validate_backends(
    raw: &Spanned<Vec<Spanned<RawBackend>>>,
    errs: &mut Vec<ConfigError>,
) -> Vec<BackendConfig> {
    if raw.get_ref().is_empty() {
        errs.push(ConfigError::at(raw.span(), "backends must not be empty"));
    }
    if raw.get_ref().len() > MAX_BACKENDS {
        let msg = format!("at most {MAX_BACKENDS} backends per service");
        errs.push(ConfigError::at(raw.span(), msg));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.get_ref().len());
    for b in raw.get_ref() {
        let Ok(addr) = b.get_ref().addr.parse::<SocketAddr>() else {
            let msg = format!(
                "backend address must be IPv4:port or [IPv6]:port, got {:?}",
                b.get_ref().addr
            );
            errs.push(ConfigError::at(b.span(), msg));
            continue;
        };
        if addr.port() == 0 || addr.ip().is_unspecified() {
            let msg = format!("backend address {addr} needs a concrete IP and a non-zero port");
            errs.push(ConfigError::at(b.span(), msg));
        }
        let weight = b.get_ref().weight.unwrap_or(1);
        if !(1..=i64::from(MAX_WEIGHT)).contains(&weight) {
            let msg = format!("backend weight must be between 1 and {MAX_WEIGHT}, got {weight}");
            errs.push(ConfigError::at(b.span(), msg));
        }
        if !seen.insert(addr) {
            errs.push(ConfigError::at(
                b.span(),
                format!("duplicate backend {addr}"),
            ));
        }
        out.push(BackendConfig {
            addr,
            weight: weight.clamp(1, i64::from(MAX_WEIGHT)) as u32,
        });
    }
    out
}
