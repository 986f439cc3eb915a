//! `[service.health]`: the active check of a service's backends, written after the
//! `[[service]]` it belongs to. Defaults are HAProxy's (`inter 2s`, `rise 2`,
//! `fall 3`) and Marathon's (a status of 200 to 399 passes).

use super::parse::{int_in, ConfigError};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use toml::Spanned;

/// How a backend is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A connect that succeeds within `timeout_ms` passes.
    Tcp,
    /// An HTTP/1.1 request whose response status is in `expect` passes.
    Http,
}

/// A service's active health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub kind: CheckKind,
    /// HTTP: the request's method, path and `Host`.
    pub method: String,
    pub path: String,
    /// Explicit, else the service's first exact vhost; none: the backend's address.
    pub host: Option<String>,
    /// HTTP: the statuses that pass, inclusive.
    pub expect: (u16, u16),
    /// Between the end of one check and the start of the next while the state holds.
    pub interval_ms: u64,
    /// For the connect and (HTTP) the status line together.
    pub timeout_ms: u64,
    /// Checks passed in a row that bring a DOWN backend UP.
    pub rise: u32,
    /// Checks failed in a row that take an UP backend DOWN.
    pub fall: u32,
    /// After coming UP, the backend's weight ramps up over this long (0: at once).
    pub slowstart_ms: u64,
}

pub const DEFAULT_INTERVAL_MS: u64 = 2_000;
pub const DEFAULT_TIMEOUT_MS: u64 = 1_000;
pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 3;

impl HealthCheck {
    /// A check of `kind` with every default.
    pub fn new(kind: CheckKind) -> Self {
        HealthCheck {
            kind,
            method: "GET".into(),
            path: "/".into(),
            host: None,
            expect: (200, 399),
            interval_ms: DEFAULT_INTERVAL_MS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
            slowstart_ms: 0,
        }
    }

    /// While a backend is changing state (a check failed while UP, or passed while
    /// DOWN), it is checked this often: a quarter of the interval, HAProxy's
    /// `fastinter`, so a change is confirmed (or refuted) quickly.
    pub fn fast_interval_ms(&self) -> u64 {
        (self.interval_ms / 4).max(50)
    }

    /// While a backend is DOWN (and no check has passed since), it is checked this
    /// often: twice the interval, HAProxy's `downinter`, so a dead backend costs half.
    pub fn down_interval_ms(&self) -> u64 {
        self.interval_ms.saturating_mul(2)
    }

    /// The `[service.health]` table, every default written out (for `sluice check`).
    pub fn to_toml(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let mut out = String::from("\n[service.health]\n");
        let kind = match self.kind {
            CheckKind::Tcp => "tcp",
            CheckKind::Http => "http",
        };
        out.push_str(&format!("kind = {}\n", q(kind)));
        if self.kind == CheckKind::Http {
            out.push_str(&format!(
                "method = {}\npath = {}\n",
                q(&self.method),
                q(&self.path)
            ));
            if let Some(h) = &self.host {
                out.push_str(&format!("host = {}\n", q(h)));
            }
            let (lo, hi) = self.expect;
            out.push_str(&format!("expect = {}\n", q(&format!("{lo}-{hi}"))));
        }
        out.push_str(&format!(
            "interval_ms = {}\ntimeout_ms = {}\nrise = {}\nfall = {}\nslowstart_ms = {}\n",
            self.interval_ms, self.timeout_ms, self.rise, self.fall, self.slowstart_ms
        ));
        out
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    kind: Option<CheckKind>,
    method: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    /// A string (`"200-399"`, `"200"`) or a bare status (`200`).
    expect: Option<Spanned<toml::Value>>,
    interval_ms: Option<Spanned<i64>>,
    timeout_ms: Option<Spanned<i64>>,
    rise: Option<Spanned<i64>>,
    fall: Option<Spanned<i64>>,
    slowstart_ms: Option<Spanned<i64>>,
}

/// A check's method: an upper-case token, as HTTP methods are written.
pub fn is_check_method(v: &str) -> bool {
    !v.is_empty() && v.len() <= 16 && v.bytes().all(|b| b.is_ascii_uppercase())
}

/// A check's path: absolute, printable ASCII, no space (it goes on the request line).
pub fn is_check_path(v: &str) -> bool {
    v.starts_with('/') && v.len() <= 1024 && v.bytes().all(|b| b > b' ' && b < 0x7f)
}

/// A check's `Host`: a host name or address, with an optional port.
pub fn is_check_host(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 255
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
}

/// An hour: the longest interval, timeout or slow start accepted.
const HOUR_MS: i64 = 3_600_000;

/// The table, checked. `vhosts` are the service's, for the default `Host`.
pub(super) fn validate(
    raw: &Spanned<RawHealth>,
    vhosts: &[String],
    errs: &mut Vec<ConfigError>,
) -> HealthCheck {
    let r = raw.get_ref();
    let kind = r.kind.unwrap_or(CheckKind::Tcp);
    let mut hc = HealthCheck::new(kind);
    let http_only = |what: &str, span: Range<usize>, errs: &mut Vec<ConfigError>| {
        if kind != CheckKind::Http {
            let msg = format!("health {what} needs kind = \"http\"");
            errs.push(ConfigError::at(span, msg));
        }
    };
    if let Some(m) = &r.method {
        http_only("method", m.span(), errs);
        let v = m.get_ref();
        if !is_check_method(v) {
            let msg = format!("health method must be a method name like GET or HEAD, got {v:?}");
            errs.push(ConfigError::at(m.span(), msg));
        }
        hc.method = v.clone();
    }
    if let Some(p) = &r.path {
        http_only("path", p.span(), errs);
        let v = p.get_ref();
        if !is_check_path(v) {
            let msg = format!("health path must start with / and hold no space, got {v:?}");
            errs.push(ConfigError::at(p.span(), msg));
        }
        hc.path = v.clone();
    }
    if let Some(h) = &r.host {
        http_only("host", h.span(), errs);
        let v = h.get_ref();
        if !is_check_host(v) {
            let msg =
                format!("health host must be a host name (with an optional :port), got {v:?}");
            errs.push(ConfigError::at(h.span(), msg));
        }
        hc.host = Some(v.clone());
    } else if kind == CheckKind::Http {
        hc.host = vhosts.iter().find(|v| !v.starts_with("*.")).cloned();
    }
    if let Some(e) = &r.expect {
        http_only("expect", e.span(), errs);
        let text = match e.get_ref() {
            toml::Value::String(v) => Some(v.clone()),
            toml::Value::Integer(n) => Some(n.to_string()),
            _ => None,
        };
        match text.as_deref().and_then(parse_expect) {
            Some(range) => hc.expect = range,
            None => {
                let msg = format!(
                    "health expect must be a status or a range like \"200-399\" (100 to 599), got {}",
                    e.get_ref()
                );
                errs.push(ConfigError::at(e.span(), msg));
            }
        }
    }
    let ms = |v: &Option<Spanned<i64>>, d: u64, lo: i64, what: &str, errs: &mut Vec<_>| {
        int_in(v, d as i64, lo..HOUR_MS, what, errs) as u64
    };
    hc.interval_ms = ms(
        &r.interval_ms,
        hc.interval_ms,
        100,
        "health interval_ms",
        errs,
    );
    hc.timeout_ms = ms(&r.timeout_ms, hc.timeout_ms, 1, "health timeout_ms", errs);
    hc.slowstart_ms = ms(&r.slowstart_ms, 0, 0, "health slowstart_ms", errs);
    hc.rise = int_in(&r.rise, i64::from(hc.rise), 1..100, "health rise", errs) as u32;
    hc.fall = int_in(&r.fall, i64::from(hc.fall), 1..100, "health fall", errs) as u32;
    hc
}

/// `"200"` or `"200-399"`, statuses 100 to 599, low first.
pub fn parse_expect(v: &str) -> Option<(u16, u16)> {
    let status = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
    };
    let (lo, hi) = match v.split_once('-') {
        Some((lo, hi)) => (status(lo)?, status(hi)?),
        None => (status(v)?, status(v)?),
    };
    (lo <= hi).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, CheckKind};

    fn with_health(health: &str) -> String {
        format!(
            "[[service]]\nname = \"web\"\nmode = \"http\"\nlisten = \"127.0.0.1:0\"\n\
             vhosts = [\"*.web.example\", \"web.example\"]\nbackends = [\"127.0.0.1:9\"]\n\
             [service.health]\n{health}"
        )
    }

    #[test]
    fn defaults_are_haproxys_and_host_is_the_first_exact_vhost() {
        let cfg = parse(&with_health("kind = \"http\"\n")).expect("valid");
        let h = cfg.services[0].health.as_ref().expect("checked");
        assert_eq!(h.kind, CheckKind::Http);
        assert_eq!((h.method.as_str(), h.path.as_str()), ("GET", "/"));
        assert_eq!(h.host.as_deref(), Some("web.example"));
        assert_eq!(h.expect, (200, 399));
        assert_eq!((h.interval_ms, h.rise, h.fall), (2_000, 2, 3));
        assert_eq!((h.fast_interval_ms(), h.down_interval_ms()), (500, 4_000));
        assert_eq!(h.slowstart_ms, 0);
    }

    /// `expect = 200`, a bare status as HAProxy's `http-check expect status 200` reads:
    /// the same as `expect = "200"`.
    #[test]
    fn expect_may_be_a_bare_status() {
        let cfg = parse(&with_health("kind = \"http\"\nexpect = 204\n")).expect("valid");
        assert_eq!(cfg.services[0].health.as_ref().unwrap().expect, (204, 204));
    }

    #[test]
    fn the_effective_config_parses_back_to_the_same_check() {
        let cfg = parse(&with_health(
            "kind = \"http\"\nmethod = \"HEAD\"\npath = \"/health\"\nhost = \"h.example:8080\"\n\
             expect = \"204\"\ninterval_ms = 500\ntimeout_ms = 200\nrise = 1\nfall = 5\nslowstart_ms = 10000\n",
        ))
        .expect("valid");
        let again = parse(&cfg.to_toml()).expect("to_toml parses");
        assert_eq!(again.services[0].health, cfg.services[0].health);
        assert_eq!(
            again.services[0].health.as_ref().unwrap().expect,
            (204, 204)
        );
        let tcp = parse(&with_health("kind = \"tcp\"\n")).expect("valid");
        let again = parse(&tcp.to_toml()).expect("to_toml parses");
        assert_eq!(again.services[0].health, tcp.services[0].health);
    }

    #[test]
    fn bad_values_are_reported_at_their_place() {
        let cases = [
            ("kind = \"udp\"\n", 8, 8, "unknown variant `udp`"),
            (
                "kind = \"tcp\"\npath = \"/x\"\n",
                9,
                8,
                "needs kind = \"http\"",
            ),
            ("kind = \"http\"\npath = \"x\"\n", 9, 8, "must start with /"),
            (
                "kind = \"http\"\nexpect = \"500-200\"\n",
                9,
                10,
                "health expect",
            ),
            (
                "kind = \"http\"\nmethod = \"get\"\n",
                9,
                10,
                "health method",
            ),
            ("interval_ms = 10\n", 8, 15, "between 100 and"),
            ("kind = \"http\"\nexpect = 600\n", 9, 10, "got 600"),
            ("kind = \"http\"\nexpect = true\n", 9, 10, "got true"),
            ("fall = 0\n", 8, 8, "health fall must be between 1"),
            ("colour = 1\n", 8, 1, "unknown field `colour`"),
        ];
        for (health, line, column, message) in cases {
            let text = with_health(health);
            let errs = parse(&text).expect_err(health);
            let at = errs[0].locate(&text);
            assert_eq!((at.line, at.column), (line, column), "{health}: {errs:?}");
            assert!(errs[0].message.contains(message), "{health}: {errs:?}");
        }
    }

    /// `[service.health]` written before its `[[service]]`, or as `[[service.health]]`:
    /// TOML reads them as something else ("duplicate key", "unknown variant `kind`"),
    /// so the error names the table and says where it goes.
    #[test]
    fn a_misplaced_health_table_is_named() {
        let service = "[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
                       backends = [\"127.0.0.1:9\"]\n";
        let cases = [
            (
                format!("[server]\n\n [service.health]\nkind = \"tcp\"\n{service}"),
                3,
                2,
                "[service.health] belongs to the [[service]] above it",
            ),
            (
                "[ service . health ]\nkind = \"tcp\"\n".to_string(),
                1,
                1,
                "[service.health] belongs to the [[service]] above it",
            ),
            (
                format!("{service}[[service.health]]\nkind = \"tcp\"\n"),
                5,
                1,
                "[[service.health]] is an array of tables",
            ),
        ];
        for (text, line, column, message) in cases {
            let errs = parse(&text).expect_err(&text);
            assert_eq!(errs.len(), 1, "{errs:?}");
            let at = errs[0].locate(&text);
            assert_eq!((at.line, at.column), (line, column), "{text}: {errs:?}");
            assert!(errs[0].message.starts_with(message), "{text}: {errs:?}");
        }
        // After its service, the same table is what it should be.
        let text = format!("{service}[service.health]\nkind = \"tcp\"\n");
        assert!(parse(&text).expect("valid").services[0].health.is_some());
    }
}
