//! Who may ask the admin port: the bearer token (`[admin] token`), and the rules that
//! keep a web page from signalling through a visitor's browser. Pure functions of a
//! request's headers and the address the client reached.
//!
//! A page that changes state (`/_mlb_signal/hup`) answers only requests a browser
//! marks as the user's own (`Sec-Fetch-Site: none`, typed or bookmarked) or as coming
//! from the admin port's own origin, and requests from no browser at all (curl and
//! scripts send neither `Sec-Fetch-Site` nor `Origin`). The admin port's own origin is
//! `http://` and the address the client connected to (or `localhost` and the port, on
//! loopback): not whatever the `Host` header says, which a DNS-rebinding page controls.

use std::net::SocketAddr;

/// The value of the first header named `name` (case-insensitive), trimmed.
fn header<'a>(headers: &'a [httparse::Header], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.trim_ascii())
}

/// Whether the request carries the token: `Authorization: Bearer <token>` (scripts),
/// or `Basic` with the token as the password and any user name (what a browser sends
/// once it has asked for it). The comparison takes the same time wherever the first
/// difference is.
pub fn token_matches(headers: &[httparse::Header], token: &str) -> bool {
    use base64::Engine;
    let Some(v) = header(headers, "authorization") else {
        return false;
    };
    let Some(sp) = v.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, given) = (&v[..sp], v[sp..].trim_ascii());
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return constant_time_eq(given, token.as_bytes());
    }
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return false;
    }
    let Ok(pair) = base64::engine::general_purpose::STANDARD.decode(given) else {
        return false;
    };
    let password = pair
        .iter()
        .position(|&b| b == b':')
        .map_or(&[][..], |c| &pair[c + 1..]);
    constant_time_eq(password, token.as_bytes())
}

/// Byte equality without an early exit: every byte of the longer input is looked at,
/// and a length difference counts as a difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// `Ok` when a state-changing request may proceed; else why not.
pub fn same_origin(headers: &[httparse::Header], local: SocketAddr) -> Result<(), &'static str> {
    match header(headers, "sec-fetch-site") {
        None => {}
        Some(v) if v.eq_ignore_ascii_case(b"none") => {}
        Some(v) if v.eq_ignore_ascii_case(b"same-origin") => {
            // Same origin as what the browser thinks it is talking to: that must be
            // this port by its address, not a rebound name.
            let host = header(headers, "host").unwrap_or_default();
            if !own_authority(host, local) {
                return Err("same-origin request for a host that is not the admin port's address");
            }
        }
        Some(_) => return Err("Sec-Fetch-Site says the request comes from another site"),
    }
    if let Some(origin) = header(headers, "origin") {
        let own = origin
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case(b"http://"))
            && own_authority(&origin[7..], local);
        if !own {
            return Err("Origin is not the admin port's own");
        }
    }
    Ok(())
}

/// Whether `authority` (`host:port`) names the admin port as the client reached it:
/// its address, or `localhost` when that is a loopback address; the port may be left
/// out when it is 80.
fn own_authority(authority: &[u8], local: SocketAddr) -> bool {
    let ip = local.ip().to_canonical();
    let port = local.port();
    let addr = SocketAddr::new(ip, port).to_string();
    let bare = match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let mut names = vec![addr, bare];
    if ip.is_loopback() {
        names.push(format!("localhost:{port}"));
        names.push("localhost".to_owned());
    }
    names.iter().enumerate().any(|(i, n)| {
        // Odd entries have no port: only for port 80.
        (i % 2 == 0 || port == 80) && n.as_bytes().eq_ignore_ascii_case(authority)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    const LOCAL: &str = "127.0.0.1:9090";

    fn check(headers: &[httparse::Header]) -> bool {
        same_origin(headers, LOCAL.parse().unwrap()).is_ok()
    }

    #[test]
    fn the_token_must_match_exactly_as_bearer_or_basic_password() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let t = "s3cret-token";
        for good in [
            "Bearer s3cret-token".to_owned(),
            "bearer  s3cret-token ".to_owned(),
            format!("Basic {}", b64("admin:s3cret-token")),
            format!("basic {}", b64(":s3cret-token")),
        ] {
            assert!(token_matches(&[h("Authorization", &good)], t), "{good:?}");
        }
        for bad in [
            "Bearer s3cret-toke".to_owned(),
            "Bearer s3cret-token2".to_owned(),
            "Bearer S3CRET-TOKEN".to_owned(),
            "Basic s3cret-token".to_owned(),
            format!("Basic {}", b64("s3cret-token")),
            format!("Basic {}", b64("s3cret-token:x")),
            "Bearers3cret-token".to_owned(),
            "Bearer".to_owned(),
            String::new(),
        ] {
            assert!(!token_matches(&[h("Authorization", &bad)], t), "{bad:?}");
        }
        assert!(!token_matches(&[h("X-Token", "Bearer s3cret-token")], t));
        assert!(!token_matches(&[], t));
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abc\0"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn scripts_and_the_users_own_requests_pass() {
        assert!(check(&[]));
        assert!(check(&[h("Host", LOCAL), h("User-Agent", "curl/8")]));
        assert!(check(&[h("Sec-Fetch-Site", "none"), h("Host", "lb1:9090")]));
        assert!(check(&[
            h("Sec-Fetch-Site", "same-origin"),
            h("Host", "127.0.0.1:9090"),
            h("Origin", "http://127.0.0.1:9090"),
        ]));
        assert!(check(&[
            h("Sec-Fetch-Site", "same-origin"),
            h("Host", "LOCALHOST:9090")
        ]));
        assert!(check(&[h("Origin", "http://localhost:9090")]));
    }

    #[test]
    fn cross_site_and_rebound_requests_are_refused() {
        for site in ["cross-site", "same-site", "bogus"] {
            assert!(
                !check(&[h("Sec-Fetch-Site", site), h("Host", LOCAL)]),
                "{site}"
            );
        }
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:9091",
            "https://127.0.0.1:9090",
            "http://127.0.0.1:9090.evil.example",
            "null",
            "",
        ] {
            assert!(!check(&[h("Origin", origin)]), "{origin:?}");
        }
        // DNS rebinding: the browser thinks evil.example is the same origin.
        assert!(!check(&[
            h("Sec-Fetch-Site", "same-origin"),
            h("Host", "evil.example:9090")
        ]));
        assert!(!check(&[h("Sec-Fetch-Site", "same-origin")]));
    }

    #[test]
    fn own_authority_by_address() {
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert!(own_authority(b"[::1]:80", v6));
        assert!(own_authority(b"[::1]", v6));
        assert!(own_authority(b"localhost", v6));
        let mapped: SocketAddr = "[::ffff:10.0.0.5]:9090".parse().unwrap();
        assert!(own_authority(b"10.0.0.5:9090", mapped));
        assert!(!own_authority(b"localhost:9090", mapped));
        assert!(
            !own_authority(b"10.0.0.5", mapped),
            "port 9090 must be named"
        );
    }
}
