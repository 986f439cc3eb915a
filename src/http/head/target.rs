//! The request target (RFC 9112 §3.2), checked strictly: origin form (`/path?query`),
//! asterisk form (`*`, OPTIONS only), authority form (`host:port`, CONNECT only), or
//! absolute form (`http://authority/path?query`), whose authority replaces Host
//! (§3.2.2) and whose path and query are what the backend receives. A fragment never
//! belongs in a request. Pure: ranges of the caller's buffer out.

use super::{HeadError, Method};
use std::ops::Range;

/// An absolute-form target split in two, as ranges of the head's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Absolute {
    /// `host[:port]`: the request's Host from now on.
    pub authority: Range<usize>,
    /// Path and query, perhaps empty (`http://h`) or a query alone (`http://h?q`).
    pub origin: Range<usize>,
}

/// Check `target` (found at offset `at` of the head) for `method`. `Ok(None)`: it is
/// forwarded as it is; `Ok(Some(_))`: an absolute form, rewritten.
pub fn classify(method: Method, target: &[u8], at: usize) -> Result<Option<Absolute>, HeadError> {
    if target.contains(&b'#') {
        return Err(HeadError::Bad("fragment in the request target"));
    }
    if method == Method::Connect {
        authority(target, true)?;
        return Ok(None);
    }
    match target {
        [] => Err(HeadError::Bad("empty request target")),
        [b'/', ..] => Ok(None),
        b"*" if method == Method::Options => Ok(None),
        b"*" => Err(HeadError::Bad("asterisk target outside OPTIONS")),
        _ => absolute(target, at).map(Some),
    }
}

fn absolute(target: &[u8], at: usize) -> Result<Absolute, HeadError> {
    let sep = target
        .windows(3)
        .position(|w| w == b"://")
        .ok_or(HeadError::Bad("request target in no known form"))?;
    let scheme = &target[..sep];
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return Err(HeadError::Bad(
            "absolute-form scheme other than http or https",
        ));
    }
    let start = sep + 3;
    let end = target[start..]
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .map_or(target.len(), |p| start + p);
    authority(&target[start..end], false)?;
    Ok(Absolute {
        authority: at + start..at + end,
        origin: at + end..at + target.len(),
    })
}

/// `host[:port]` (RFC 3986 §3.2) without userinfo; the port may be required (CONNECT).
fn authority(a: &[u8], port_required: bool) -> Result<(), HeadError> {
    if a.is_empty() {
        return Err(HeadError::Bad("empty authority"));
    }
    if a.contains(&b'@') {
        return Err(HeadError::Bad("userinfo in the authority"));
    }
    let (host, port) = if a[0] == b'[' {
        let close = a
            .iter()
            .position(|&b| b == b']')
            .ok_or(HeadError::Bad("unterminated IP literal"))?;
        let literal = &a[1..close];
        let ok = !literal.is_empty()
            && literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !ok {
            return Err(HeadError::Bad("invalid IP literal"));
        }
        match &a[close + 1..] {
            [] => (&a[..=close], None),
            [b':', port @ ..] => (&a[..=close], Some(port)),
            _ => return Err(HeadError::Bad("invalid authority")),
        }
    } else {
        match a.iter().rposition(|&b| b == b':') {
            Some(c) => (&a[..c], Some(&a[c + 1..])),
            None => (a, None),
        }
    };
    if host.is_empty() || (host[0] != b'[' && !reg_name(host)) {
        return Err(HeadError::Bad("invalid host in the authority"));
    }
    let port_ok = match port {
        None | Some([]) => !port_required,
        Some(p) => p.len() <= 5 && p.iter().all(u8::is_ascii_digit),
    };
    if !port_ok {
        return Err(HeadError::Bad("invalid port in the authority"));
    }
    Ok(())
}

/// Unreserved characters, sub-delimiters and well-formed percent-encodings.
fn reg_name(host: &[u8]) -> bool {
    let mut i = 0;
    while i < host.len() {
        match host[i] {
            b'%' => {
                let hex = host.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
                continue;
            }
            b if b.is_ascii_alphanumeric() => {}
            b'-' | b'.' | b'_' | b'~' => {}
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(method: Method, t: &str) -> Result<Option<(String, String)>, HeadError> {
        let at = 10;
        let mut buf = vec![b' '; at];
        buf.extend_from_slice(t.as_bytes());
        let text = |r: Range<usize>| String::from_utf8(buf[r].to_vec()).unwrap();
        Ok(classify(method, t.as_bytes(), at)?.map(|a| (text(a.authority), text(a.origin))))
    }

    #[test]
    fn the_four_forms() {
        let abs = |a: &str, o: &str| Ok(Some((a.to_owned(), o.to_owned())));
        assert_eq!(form(Method::Get, "/a?b"), Ok(None));
        assert_eq!(form(Method::Options, "*"), Ok(None));
        assert_eq!(form(Method::Connect, "db.internal:5432"), Ok(None));
        assert_eq!(form(Method::Connect, "[::1]:443"), Ok(None));
        assert_eq!(
            form(Method::Get, "http://h.example/x?y"),
            abs("h.example", "/x?y")
        );
        assert_eq!(form(Method::Get, "HTTPS://h:8443"), abs("h:8443", ""));
        assert_eq!(form(Method::Get, "http://h?q"), abs("h", "?q"));
        assert_eq!(form(Method::Get, "http://[::1]:80/"), abs("[::1]:80", "/"));
        assert_eq!(form(Method::Get, "http://h:/"), abs("h:", "/"));
        assert_eq!(form(Method::Get, "http://a%2Db/"), abs("a%2Db", "/"));
    }

    #[test]
    fn malformed_targets_are_400() {
        let bad: &[(Method, &str)] = &[
            (Method::Get, "/a#frag"),
            (Method::Get, "/a#"),
            (Method::Get, "http://h/a#f"),
            (Method::Get, ""),
            (Method::Get, "a"),
            (Method::Get, "?q"),
            (Method::Get, "*"),
            (Method::Get, "http:h"),
            (Method::Get, "ftp://h/"),
            (Method::Get, "ws://h/"),
            (Method::Get, "http:///"),
            (Method::Get, "http://"),
            (Method::Get, "http://:80/"),
            (Method::Get, "http://user@h/"),
            (Method::Get, "http://@h/"),
            (Method::Get, "http://u:p@h/"),
            (Method::Get, "http://h\"/"),
            (Method::Get, "http://h%4/"),
            (Method::Get, "http://h:abc/"),
            (Method::Get, "http://h:123456/"),
            (Method::Get, "http://[::1/"),
            (Method::Get, "http://[]/"),
            (Method::Get, "http://[::1]x/"),
            (Method::Connect, "/x"),
            (Method::Connect, "h"),
            (Method::Connect, "h:"),
            (Method::Connect, "http://h/"),
            (Method::Connect, "u@h:443"),
        ];
        for (m, t) in bad {
            assert!(
                matches!(form(*m, t), Err(HeadError::Bad(_))),
                "{m:?} {t:?}: {:?}",
                form(*m, t)
            );
        }
    }
}
