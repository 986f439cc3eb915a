//! Marathon-LB's `HAPROXY_*` app labels as sluice takes them: those it follows, those
//! it will not serve a port without (access control it does not have: serving the
//! port anyway would open what Marathon-LB kept closed), and the rest — HAProxy
//! template snippets and options sluice has no equivalent for — ignored and reported.
//! Pure: label names in, verdicts out; and which reports are new since the last poll.

use std::collections::BTreeSet;

/// App-wide labels (`HAPROXY_<NAME>`) sluice follows, and `zdd.py`'s bookkeeping
/// (`DEPLOYMENT_COLOUR`, `DEPLOYMENT_ALT_PORT`, `APP_ID`), which asks nothing of a
/// balancer: Marathon-LB reads none of those three either.
const APP: &[&str] = &[
    "GROUP",
    "DEPLOYMENT_GROUP",
    "DEPLOYMENT_STARTED_AT",
    "DEPLOYMENT_TARGET_INSTANCES",
    "DEPLOYMENT_NEW_INSTANCES",
    "DEPLOYMENT_COLOUR",
    "DEPLOYMENT_ALT_PORT",
    "APP_ID",
];

/// Per-port labels (`HAPROXY_{n}_<NAME>`) sluice follows: see [`super::apps`] and
/// [`super::health`].
const PORT: &[&str] = &[
    "GROUP",
    "PORT",
    "BIND_ADDR",
    "VHOST",
    "PATH",
    "MODE",
    "BALANCE",
    "STICKY",
    "REDIRECT_TO_HTTPS",
    "SSL_CERT",
    "BIND_OPTIONS",
    "BACKEND_SERVER_OPTIONS",
    "BACKEND_HTTP_HEALTHCHECK_OPTIONS",
    "BACKEND_TCP_HEALTHCHECK_OPTIONS",
    "BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS",
    "BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS",
];

/// Per-port labels that restrict who reaches the port, and what they do.
const REFUSED: &[(&str, &str)] = &[
    ("AUTH", "basic authentication"),
    ("BACKEND_NETWORK_ALLOWED_ACL", "source address restriction"),
];

/// What sluice makes of one app label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Followed, or not Marathon-LB's (no `HAPROXY_` prefix).
    Followed,
    /// Port `n`'s access control, which sluice does not have: the port is left out.
    Refused(usize, &'static str),
    /// Not followed, for port `n` (`Some`) or the whole app.
    Ignored(Option<usize>),
}

/// The verdict on the label named `key`.
pub fn verdict(key: &str) -> Verdict {
    let Some(rest) = key.strip_prefix("HAPROXY_") else {
        return Verdict::Followed;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let per_port = rest[digits..].strip_prefix('_').filter(|_| digits > 0);
    let Some(name) = per_port else {
        return match APP.contains(&rest) {
            true => Verdict::Followed,
            false => Verdict::Ignored(None),
        };
    };
    // Marathon-LB reads `HAPROXY_{n}_…` with `n` written plainly: `HAPROXY_00_AUTH`
    // is no port's label (nor one with more digits than an index holds).
    let n = match rest[..digits].parse::<usize>() {
        Ok(n) if n.to_string() == rest[..digits] => n,
        _ => return Verdict::Ignored(None),
    };
    if let Some((_, what)) = REFUSED.iter().find(|(r, _)| *r == name) {
        return Verdict::Refused(n, what);
    }
    match PORT.contains(&name) {
        true => Verdict::Followed,
        false => Verdict::Ignored(Some(n)),
    }
}

/// A label on an app sluice serves (some port of it, in its group) that sluice does
/// not follow.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IgnoredLabel {
    pub app_id: String,
    pub label: String,
}

/// The ignored labels already reported, so that each is reported once while it is
/// present (Marathon is polled every second), and again if it comes back.
#[derive(Debug, Default)]
pub struct Reported(BTreeSet<IgnoredLabel>);

impl Reported {
    /// Of `now` (a translation's ignored labels), those not present at the last call.
    pub fn news<'a>(&mut self, now: &'a [IgnoredLabel]) -> Vec<&'a IgnoredLabel> {
        let fresh = now.iter().filter(|l| !self.0.contains(l)).collect();
        self.0 = now.iter().cloned().collect();
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_followed_refused_or_ignored() {
        for key in [
            "HAPROXY_GROUP",
            "HAPROXY_DEPLOYMENT_GROUP",
            "HAPROXY_DEPLOYMENT_COLOUR",
            "HAPROXY_APP_ID",
            "HAPROXY_0_VHOST",
            "HAPROXY_12_BALANCE",
            "HAPROXY_10_PATH",
            "HAPROXY_1_BIND_ADDR",
            "HAPROXY_0_BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS",
            "VIP_0",
            "owner",
        ] {
            assert_eq!(verdict(key), Verdict::Followed, "{key}");
        }
        assert_eq!(
            verdict("HAPROXY_0_AUTH"),
            Verdict::Refused(0, "basic authentication")
        );
        assert_eq!(
            verdict("HAPROXY_2_BACKEND_NETWORK_ALLOWED_ACL"),
            Verdict::Refused(2, "source address restriction")
        );
        for (key, port) in [
            ("HAPROXY_0_HTTP_BACKEND_PROXYPASS_PATH", Some(0)),
            ("HAPROXY_0_FRONTEND_HEAD", Some(0)),
            ("HAPROXY_3_BACKEND_HEAD", Some(3)),
            ("HAPROXY_1_USE_HSTS", Some(1)),
            ("HAPROXY_1_", Some(1)),
            ("HAPROXY_BACKEND_HEAD", None),
            ("HAPROXY_0", None),
            ("HAPROXY_", None),
            ("HAPROXY_99999999999999999999999_AUTH", None),
            ("HAPROXY_00_AUTH", None),
            ("HAPROXY_01_VHOST", None),
        ] {
            assert_eq!(verdict(key), Verdict::Ignored(port), "{key}");
        }
    }

    #[test]
    fn each_ignored_label_is_news_once_while_present() {
        let l = |app: &str, label: &str| IgnoredLabel {
            app_id: app.into(),
            label: label.into(),
        };
        let (a, b) = (
            l("/a", "HAPROXY_0_FRONTEND_HEAD"),
            l("/b", "HAPROXY_0_BACKEND_HEAD"),
        );
        let (only_a, only_b, both) = ([a.clone()], [b.clone()], [a.clone(), b.clone()]);
        let mut reported = Reported::default();
        assert_eq!(reported.news(&only_a), [&a]);
        assert!(reported.news(&only_a).is_empty());
        assert_eq!(reported.news(&both), [&b]);
        assert!(reported.news(&only_b).is_empty());
        assert_eq!(reported.news(&both), [&a], "gone, then back");
    }
}
