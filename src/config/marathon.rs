//! `[marathon]`: where Marathon is, which apps to serve, and how to authenticate.

use super::parse::{int_in, ConfigError};
use super::{MarathonConfig, Origin};
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMarathon {
    urls: Option<Spanned<Vec<Spanned<String>>>>,
    group: Option<String>,
    poll_interval_ms: Option<Spanned<i64>>,
    events: Option<bool>,
    events_silence_ms: Option<Spanned<i64>>,
    bind_address: Option<Spanned<String>>,
    vip_cidr: Option<Spanned<String>>,
    health_check: Option<bool>,
    drain_timeout_ms: Option<Spanned<i64>>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    credentials_file: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
}

/// The section, checked; the places of the files it names go to `origin`, so that
/// [`super::load`] can say where an unreadable one was written.
pub(super) fn validate(
    m: RawMarathon,
    text: &str,
    origin: &mut Origin,
    errs: &mut Vec<ConfigError>,
) -> MarathonConfig {
    let d = MarathonConfig::default();
    check_auth(&m, errs);
    let files = [
        ("token_file", &m.token_file),
        ("credentials_file", &m.credentials_file),
    ];
    for (key, v) in files {
        if let Some(v) = v {
            let at = ConfigError::at(v.span(), "").locate(text);
            origin.marathon_files.push((key, at));
        }
    }
    let mut urls = Vec::new();
    if let Some(list) = &m.urls {
        if list.get_ref().is_empty() {
            errs.push(ConfigError::at(
                list.span(),
                "marathon urls must not be empty",
            ));
        }
        for u in list.get_ref() {
            let url = u.get_ref().trim_end_matches('/');
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
                let msg = format!(
                    "marathon url must be http://host:port or https://…, got {:?}",
                    u.get_ref()
                );
                errs.push(ConfigError::at(u.span(), msg));
            }
            urls.push(url.to_owned());
        }
    }
    let bind_address = match &m.bind_address {
        None => d.bind_address,
        Some(b) => b.get_ref().parse().unwrap_or_else(|_| {
            let msg = format!("bind_address must be an IP address, got {:?}", b.get_ref());
            errs.push(ConfigError::at(b.span(), msg));
            d.bind_address
        }),
    };
    let vip_cidr = match &m.vip_cidr {
        None => d.vip_cidr,
        Some(c) => parse_cidr(c.get_ref()).unwrap_or_else(|| {
            let msg = format!(
                "vip_cidr must be an IPv4 network like 127.11.0.0/16 (prefix 8 to 30), got {:?}",
                c.get_ref()
            );
            errs.push(ConfigError::at(c.span(), msg));
            d.vip_cidr
        }),
    };
    let ms = 1..(24 * 3_600_000);
    MarathonConfig {
        urls: if m.urls.is_some() { urls } else { d.urls },
        group: m.group.unwrap_or(d.group),
        poll_interval_ms: int_in(
            &m.poll_interval_ms,
            1000,
            100..ms.end,
            "poll_interval_ms",
            errs,
        ) as u64,
        events: m.events.unwrap_or(d.events),
        events_silence_ms: int_in(
            &m.events_silence_ms,
            30_000,
            100..ms.end,
            "events_silence_ms",
            errs,
        ) as u64,
        bind_address,
        vip_cidr,
        health_check: m.health_check.unwrap_or(d.health_check),
        drain_timeout_ms: int_in(
            &m.drain_timeout_ms,
            30_000,
            0..ms.end,
            "drain_timeout_ms",
            errs,
        ) as u64,
        username: m.username.map(Spanned::into_inner),
        password: m.password.map(Spanned::into_inner),
        credentials_file: m.credentials_file.map(|f| f.into_inner().into()),
        token_file: m.token_file.map(|f| f.into_inner().into()),
    }
}

/// `a.b.c.d/n` with 8 ≤ n ≤ 30.
fn parse_cidr(s: &str) -> Option<(std::net::Ipv4Addr, u8)> {
    let (ip, prefix) = s.split_once('/')?;
    let prefix: u8 = prefix.parse().ok()?;
    (8..=30).contains(&prefix).then_some(())?;
    Some((ip.parse().ok()?, prefix))
}
/// One way to authenticate, not several of which all but one would be ignored: a
/// token file, a credentials file, or username and password.
fn check_auth(m: &RawMarathon, errs: &mut Vec<ConfigError>) {
    let others = [
        ("username", &m.username),
        ("password", &m.password),
        ("credentials_file", &m.credentials_file),
    ];
    let used = if m.token_file.is_some() {
        Some("token_file (a DC/OS token is sent instead)")
    } else if m.credentials_file.is_some() {
        Some("credentials_file (it holds user:password)")
    } else {
        None
    };
    if let Some(other) = used {
        let ignored = others.iter().filter(|(k, _)| !other.starts_with(k));
        for (key, v) in ignored {
            if let Some(v) = v {
                let msg = format!("marathon {key} is not used with {other}: keep one of the two");
                errs.push(ConfigError::at(v.span(), msg));
            }
        }
        return;
    }
    if let (Some(p), None) = (&m.password, &m.username) {
        errs.push(ConfigError::at(
            p.span(),
            "marathon password needs username",
        ));
    }
}
