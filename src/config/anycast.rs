//! `[anycast]`: how the VIPs of services marked `anycast = true` are judged for
//! announcement over BGP (by `sluice announce` and the speaker it drives), and a
//! service's `anycast` key.

use super::parse::{int_in, ConfigError};
use super::AnycastConfig;
use serde::Deserialize;
use std::net::SocketAddr;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnycast {
    rise: Option<Spanned<i64>>,
    fall: Option<Spanned<i64>>,
    interval_ms: Option<Spanned<i64>>,
    admin_timeout_ms: Option<Spanned<i64>>,
    withdraw_grace_ms: Option<Spanned<i64>>,
}

/// The section, checked against its ranges.
pub(super) fn validate(raw: Option<RawAnycast>, errs: &mut Vec<ConfigError>) -> AnycastConfig {
    let d = AnycastConfig::default();
    let Some(r) = raw else { return d };
    let hour_ms = 3_600_000;
    let count = |v: &Option<Spanned<i64>>, default: u32, what: &str, errs: &mut Vec<_>| {
        int_in(v, i64::from(default), 1..100, what, errs) as u32
    };
    let ms = |v: &Option<Spanned<i64>>, default: u64, min: i64, what: &str, errs: &mut Vec<_>| {
        int_in(v, default as i64, min..hour_ms, what, errs) as u64
    };
    AnycastConfig {
        rise: count(&r.rise, d.rise, "[anycast] rise", errs),
        fall: count(&r.fall, d.fall, "[anycast] fall", errs),
        interval_ms: ms(
            &r.interval_ms,
            d.interval_ms,
            10,
            "[anycast] interval_ms",
            errs,
        ),
        admin_timeout_ms: ms(
            &r.admin_timeout_ms,
            d.admin_timeout_ms,
            100,
            "[anycast] admin_timeout_ms",
            errs,
        ),
        withdraw_grace_ms: ms(
            &r.withdraw_grace_ms,
            d.withdraw_grace_ms,
            0,
            "[anycast] withdraw_grace_ms",
            errs,
        ),
    }
}

impl AnycastConfig {
    /// The section as `sluice check` prints it, every key filled in.
    pub(super) fn to_toml(self) -> String {
        format!(
            "\n[anycast]\nrise = {}\nfall = {}\ninterval_ms = {}\nadmin_timeout_ms = {}\n\
             withdraw_grace_ms = {}\n",
            self.rise, self.fall, self.interval_ms, self.admin_timeout_ms, self.withdraw_grace_ms
        )
    }
}

/// A service's `anycast = true`: its own listen address must name one host address
/// (the /32 or /128 announced), not a wildcard.
pub(super) fn validate_service(
    anycast: Option<&Spanned<bool>>,
    listen: Option<SocketAddr>,
    errs: &mut Vec<ConfigError>,
) -> bool {
    let Some(a) = anycast.filter(|a| *a.get_ref()) else {
        return false;
    };
    match listen {
        None => {
            let msg = "anycast announces the service's own listen address, and it has none";
            errs.push(ConfigError::at(a.span(), msg));
        }
        Some(l) if l.ip().is_unspecified() => {
            let msg = format!(
                "anycast announces the listen address as a /32 or /128, and {} is a \
                 wildcard: listen on the VIP itself",
                l.ip()
            );
            errs.push(ConfigError::at(a.span(), msg));
        }
        Some(_) => {}
    }
    true
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn errors(text: &str) -> Vec<String> {
        parse(text)
            .err()
            .unwrap_or_default()
            .iter()
            .map(|e| {
                let at = e.locate(text);
                format!("{}:{}: {}", at.line, at.column, e.message)
            })
            .collect()
    }

    #[test]
    fn defaults_and_settings() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.anycast, super::AnycastConfig::default());
        assert_eq!(cfg.anycast.withdraw_grace_ms, 3000);
        let cfg = parse(
            "[anycast]\nrise = 1\nfall = 4\ninterval_ms = 50\nadmin_timeout_ms = 500\n\
             withdraw_grace_ms = 0\n[[service]]\nname = \"web\"\nlisten = \"192.0.2.10:80\"\n\
             anycast = true\nbackends = [\"10.0.0.1:80\"]\n",
        )
        .unwrap();
        let a = &cfg.anycast;
        assert_eq!(
            (a.rise, a.fall, a.interval_ms, a.admin_timeout_ms),
            (1, 4, 50, 500)
        );
        assert_eq!(a.withdraw_grace_ms, 0);
        assert!(cfg.services[0].anycast);
        let printed = cfg.to_toml();
        assert!(
            printed.contains("\n[anycast]\nrise = 1\nfall = 4\n"),
            "{printed}"
        );
        assert!(printed.contains("\nanycast = true\n"), "{printed}");
        let again = parse(&printed).expect("to_toml parses");
        assert_eq!(again.anycast, cfg.anycast);
        assert!(again.services[0].anycast);
    }

    /// `sluice check` prints `[anycast]` with its defaults where a service uses it,
    /// and not at all where nothing does.
    #[test]
    fn the_effective_config_prints_anycast_where_used() {
        let plain = "[[service]]\nname = \"web\"\nlisten = \"192.0.2.10:80\"\n\
                     backends = [\"10.0.0.1:80\"]\n";
        assert!(!parse(plain).unwrap().to_toml().contains("anycast"));
        let used = plain.replace("backends", "anycast = true\nbackends");
        let printed = parse(&used).unwrap().to_toml();
        assert!(
            printed.contains(
                "\n[anycast]\nrise = 3\nfall = 2\ninterval_ms = 1000\nadmin_timeout_ms = 3000\n\
                 withdraw_grace_ms = 3000\n"
            ),
            "{printed}"
        );
    }

    #[test]
    fn refused_values_are_located() {
        assert_eq!(
            errors("[anycast]\nrise = 0\n"),
            ["2:8: [anycast] rise must be between 1 and 100, got 0"]
        );
        assert_eq!(
            errors("[anycast]\ninterval_ms = 5\n"),
            ["2:15: [anycast] interval_ms must be between 10 and 3600000, got 5"]
        );
        assert_eq!(errors("[anycast]\nhold = 3\n").len(), 1);
        let svc = |listen: &str| {
            format!(
                "[http]\nlisten = \"127.0.0.1:80\"\n[[service]]\nname = \"web\"\nmode = \"http\"\n\
                 vhosts = [\"a\"]\n{listen}anycast = true\nbackends = [\"10.0.0.1:80\"]\n"
            )
        };
        assert_eq!(
            errors(&svc("")),
            ["7:11: anycast announces the service's own listen address, and it has none"]
        );
        let e = errors(&svc("listen = \"0.0.0.0:81\"\n"));
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("8:11: anycast announces"), "{e:?}");
    }
}
