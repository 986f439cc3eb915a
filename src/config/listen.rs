//! Listen addresses that cannot both be bound as asked: the same address twice, or a
//! wildcard address and another on the same port and family. Service sockets are
//! bound with `SO_REUSEPORT`, so the kernel would let two services share a port and
//! split their clients between them (a wildcard and a specific address: the specific
//! one takes the clients for its address); the admin port is bound without it, so it
//! would fail at `run`. Either way it is a mistake, reported here with both places.

use super::parse::ConfigError;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;

/// One listen address in the file: where it is written and whose it is.
pub struct Listen {
    pub addr: SocketAddr,
    pub span: Range<usize>,
    /// `[http] listen`, `[admin] listen` or `service "name"`.
    pub owner: String,
}

/// Whether `a` and `b` take the same port on some address. IPv6 sockets are bound
/// IPv6-only, so the families never overlap; port 0 is a fresh port each time.
pub fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// An error at each listen address that overlaps one written before it, naming that
/// one and its `line:column` in `text`.
pub fn conflicts(mut listens: Vec<Listen>, text: &str) -> Vec<ConfigError> {
    listens.sort_by_key(|l| l.span.start);
    let mut by_port: HashMap<u16, Vec<usize>> = HashMap::new();
    let mut errs = Vec::new();
    for (i, l) in listens.iter().enumerate() {
        let earlier = by_port.entry(l.addr.port()).or_default();
        let first = earlier
            .iter()
            .map(|&j| &listens[j])
            .find(|f| overlap(f.addr, l.addr));
        if let Some(f) = first {
            let at = ConfigError::at(f.span.clone(), "").locate(text);
            let msg = if f.addr == l.addr {
                format!(
                    "duplicate listen address {}, first at {}:{} ({})",
                    l.addr, at.line, at.column, f.owner
                )
            } else {
                format!(
                    "listen address {} overlaps {} at {}:{} ({}): a wildcard address \
                     takes port {} on every address",
                    l.addr,
                    f.addr,
                    at.line,
                    at.column,
                    f.owner,
                    l.addr.port()
                )
            };
            errs.push(ConfigError::at(l.span.clone(), msg));
        }
        earlier.push(i);
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn overlap_by_port_family_and_wildcard() {
        assert!(overlap(a("127.0.0.1:80"), a("127.0.0.1:80")));
        assert!(overlap(a("0.0.0.0:80"), a("127.0.0.1:80")));
        assert!(overlap(a("10.0.0.1:80"), a("0.0.0.0:80")));
        assert!(overlap(a("[::]:80"), a("[::1]:80")));
        assert!(!overlap(a("127.0.0.1:80"), a("127.0.0.2:80")));
        assert!(!overlap(a("127.0.0.1:80"), a("127.0.0.1:81")));
        assert!(!overlap(a("0.0.0.0:80"), a("[::]:80")), "IPv6-only sockets");
        assert!(
            !overlap(a("0.0.0.0:0"), a("127.0.0.1:0")),
            "port 0: fresh ports"
        );
    }

    #[test]
    fn each_conflict_names_the_first_place() {
        let text = "a\nbb\nccc\n";
        let l = |addr: &str, start: usize, owner: &str| Listen {
            addr: a(addr),
            span: start..start + 1,
            owner: owner.into(),
        };
        let errs = conflicts(
            vec![
                l("127.0.0.1:80", 7, "service \"c\""),
                l("0.0.0.0:80", 2, "[http] listen"),
                l("127.0.0.1:81", 0, "[admin] listen"),
                l("127.0.0.1:81", 3, "service \"b\""),
            ],
            text,
        );
        let msgs: Vec<_> = errs.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "duplicate listen address 127.0.0.1:81, first at 1:1 ([admin] listen)",
                "listen address 127.0.0.1:80 overlaps 0.0.0.0:80 at 2:1 ([http] listen): a wildcard address takes port 80 on every address",
            ]
        );
        assert_eq!(errs[0].span, Some(3..4), "at the second place");
    }
}
