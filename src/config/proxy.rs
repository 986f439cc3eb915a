//! The PROXY protocol keys: `accept_proxy` and `proxy_trusted` where a listener is
//! configured (`[http]`, `[https]`, a `[[service]]` with its own `listen`), and a
//! service's `send_proxy`. What they mean and what is refused.

use super::parse::ConfigError;
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;
use toml::Spanned;

/// Receiving the PROXY protocol on a listener: with `enabled`, every connection must
/// start with a header (v1 or v2), and only sources in `trusted` may connect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct AcceptProxy {
    pub enabled: bool,
    pub trusted: Vec<Cidr>,
}

impl AcceptProxy {
    /// Whether a connection from `ip` may send a header here.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|c| c.contains(ip))
    }

    /// The keys as `sluice check` prints them (nothing when off).
    pub fn to_toml(&self) -> String {
        if !self.enabled {
            return String::new();
        }
        let list: Vec<String> = self.trusted.iter().map(|c| format!("\"{c}\"")).collect();
        format!(
            "accept_proxy = true\nproxy_trusted = [{}]\n",
            list.join(", ")
        )
    }
}

/// An address block: `10.0.0.0/8`, `2001:db8::/32`; a bare address is one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("proxy_trusted entries are CIDRs (10.0.0.0/8, 2001:db8::/32) or addresses, got {s:?}"))?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= bits && (p == "0" || !p.starts_with('0')) => n,
                _ => return Err(format!("prefix length must be 0 to {bits}, got {s:?}")),
            },
        };
        let c = Cidr { addr, prefix };
        if c.network() != addr {
            return Err(format!(
                "{s:?} has address bits set past its /{prefix}: write {}/{prefix}",
                c.network()
            ));
        }
        Ok(c)
    }

    fn mask(&self, ip: IpAddr) -> Option<IpAddr> {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(v)) => {
                let m = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                Some(IpAddr::from(std::net::Ipv4Addr::from(u32::from(v) & m)))
            }
            (IpAddr::V6(_), IpAddr::V6(v)) => {
                let m = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                Some(IpAddr::from(std::net::Ipv6Addr::from(u128::from(v) & m)))
            }
            _ => None,
        }
    }

    fn network(&self) -> IpAddr {
        self.mask(self.addr).unwrap_or(self.addr)
    }

    /// Whether `ip` is in the block (an IPv4 address matches IPv4 blocks only).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.mask(ip) == Some(self.addr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The PROXY header a service sends its backends before the first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SendProxy {
    V1,
    V2,
}

impl SendProxy {
    pub fn word(self) -> &'static str {
        match self {
            SendProxy::V1 => "v1",
            SendProxy::V2 => "v2",
        }
    }
}

/// A service's PROXY protocol settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct ServiceProxy {
    /// On its own `listen`.
    pub accept: AcceptProxy,
    pub send: Option<SendProxy>,
}

/// The raw keys of one listener.
pub(super) struct AcceptKeys<'a> {
    pub accept: Option<&'a Spanned<bool>>,
    pub trusted: Option<&'a Spanned<Vec<Spanned<String>>>>,
}

/// `accept_proxy` and `proxy_trusted` of a listener; `listener`: where the keys stand
/// has a listen address of its own to apply them to (`Err`: why not, for the message).
pub(super) fn validate_accept(
    keys: AcceptKeys,
    listener: Result<(), &str>,
    errs: &mut Vec<ConfigError>,
) -> AcceptProxy {
    let enabled = keys.accept.is_some_and(|a| *a.get_ref());
    let mut trusted = Vec::new();
    for t in keys.trusted.into_iter().flat_map(|l| l.get_ref()) {
        match Cidr::parse(t.get_ref().trim()) {
            Ok(c) => trusted.push(c),
            Err(msg) => errs.push(ConfigError::at(t.span(), msg)),
        }
    }
    if let (Some(a), Err(why)) = (keys.accept.filter(|a| *a.get_ref()), listener) {
        errs.push(ConfigError::at(
            a.span(),
            format!("accept_proxy needs {why}"),
        ));
    }
    match (keys.accept.filter(|a| *a.get_ref()), keys.trusted) {
        (Some(a), None) => errs.push(ConfigError::at(
            a.span(),
            "accept_proxy needs proxy_trusted: the sources allowed to send a PROXY header \
             (connections from anywhere else are closed)",
        )),
        (Some(_), Some(t)) if t.get_ref().is_empty() => errs.push(ConfigError::at(
            t.span(),
            "proxy_trusted must name at least one source (10.0.0.0/8, …)",
        )),
        (None, Some(t)) => errs.push(ConfigError::at(
            t.span(),
            "proxy_trusted needs accept_proxy = true",
        )),
        _ => {}
    }
    AcceptProxy { enabled, trusted }
}

/// `send_proxy = "v1" | "v2"`. Any other value, of any type (`true`, written as
/// HAProxy's `send-proxy` is a flag), is refused with HAProxy's words for the two.
pub(super) fn validate_send(
    raw: Option<&Spanned<toml::Value>>,
    errs: &mut Vec<ConfigError>,
) -> Option<SendProxy> {
    let v = raw?;
    match v.get_ref().as_str() {
        Some("v1") => Some(SendProxy::V1),
        Some("v2") => Some(SendProxy::V2),
        _ => {
            let msg = format!(
                "send_proxy must be \"v1\" (HAProxy's send-proxy) or \"v2\" (send-proxy-v2), \
                 got {}",
                v.get_ref()
            );
            errs.push(ConfigError::at(v.span(), msg));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `send_proxy = true` (HAProxy's `send-proxy` is a flag) is refused in the key's
    /// words at its value, not as serde's "invalid type: boolean".
    #[test]
    fn send_proxy_of_another_type_is_named() {
        for (value, got) in [
            ("true", "got true"),
            ("2", "got 2"),
            ("\"v3\"", "got \"v3\""),
        ] {
            let text = format!(
                "[[service]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\n\
                 backends = [\"127.0.0.1:9\"]\nsend_proxy = {value}\n"
            );
            let errs = super::super::parse(&text).expect_err(value);
            let at = errs[0].locate(&text);
            assert_eq!((at.line, at.column), (5, 14), "{errs:?}");
            assert!(
                errs[0].message.starts_with("send_proxy must be \"v1\""),
                "{errs:?}"
            );
            assert!(errs[0].message.ends_with(got), "{errs:?}");
        }
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("::ffff:10.0.0.1".parse().unwrap()));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::".parse().unwrap()));
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0.0/08",
            "10/8",
            "x",
            "::/129",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        let a = AcceptProxy {
            enabled: true,
            trusted: vec![c],
        };
        assert!(a.trusts("::ffff:10.0.0.1".parse().unwrap()), "v4-mapped");
    }
}
