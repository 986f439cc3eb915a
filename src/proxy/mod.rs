//! The PROXY protocol (HAProxy's `doc/proxy-protocol.txt`), versions 1 and 2: the
//! header a balancer in front puts before a connection's first byte to say whom it
//! accepted the connection from, and the one sluice puts before its own first byte to
//! a backend. Sans I/O and without allocation: [`parse`] takes the bytes received so
//! far from the start of the stream and answers [`Parsed::NeedMore`], a
//! [`Header`] with the number of bytes it took, or an [`Error`]; the encoders append
//! to a buffer the caller owns.
//!
//! What it accepts, and where the specification leaves a choice:
//!
//! - Nothing is guessed: the first byte must start `PROXY ` (v1) or the v2 signature,
//!   else [`Error::Malformed`]. A strict prefix of a valid header is always
//!   `NeedMore`; the answer for a given input never changes as bytes are added after
//!   the header, and `consumed` never exceeds the bytes given.
//! - v1: at most [`V1_MAX_BYTES`] (107) bytes including the CRLF, longer is
//!   [`Error::Oversized`]. `TCP4` with two IPv4 and `TCP6` with two IPv6 addresses,
//!   then two ports, single spaces between; an IPv4 octet or a port written with a
//!   leading zero (`010`, `08080`) is [`Error::LeadingZero`] (it reads as octal to
//!   some parsers, so it is refused rather than read either way); `UNKNOWN` ignores
//!   the rest of its line and keeps the socket's addresses.
//! - v2: version 2 (else [`Error::Version`]); command LOCAL (the balancer's own
//!   connection, a health check: the socket's addresses stand, and the protocol
//!   block, family included, is ignored as the specification asks) or PROXY,
//!   anything else [`Error::Command`]; address families AF_UNSPEC, AF_INET, AF_INET6
//!   and AF_UNIX over STREAM. AF_UNIX and AF_UNSPEC carry no address sluice can use, so
//!   they keep the socket's addresses, as HAProxy does; an unknown family, or a
//!   transport other than STREAM with an address family, is [`Error::Family`]. The
//!   whole header is at most [`V2_MAX_BYTES`] (its 16 fixed bytes and 2,032 of
//!   addresses and TLVs), longer is [`Error::Oversized`] as soon as the length is
//!   read. The address block must fit the length, and after it the TLVs must tile
//!   the rest exactly (else [`Error::Malformed`]); the first `PP2_TYPE_AUTHORITY`
//!   TLV is reported (the server name the client asked for).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[cfg(test)]
mod tests;

/// The longest v1 header, CRLF included.
pub const V1_MAX_BYTES: usize = 107;
/// The longest v2 header sluice accepts (16 fixed bytes, then addresses and TLVs).
pub const V2_MAX_BYTES: usize = 2048;
/// The v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// `PP2_TYPE_AUTHORITY`: the host name the client asked for (TLS SNI).
pub const TLV_AUTHORITY: u8 = 0x02;

const V1_PREFIX: &[u8] = b"PROXY ";

/// Which version of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    V1,
    V2,
}

/// What the header says of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The sender's own connection (a health check): the socket's addresses stand.
    Local,
    /// A relayed connection.
    Proxy,
}

/// A complete header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    pub command: Command,
    /// The client's address and the address it connected to, as the sender saw them;
    /// `None` keeps the socket's own (LOCAL, v1 `UNKNOWN`, AF_UNSPEC, AF_UNIX).
    pub addrs: Option<(SocketAddr, SocketAddr)>,
    /// Where the TLVs are in the input (`tlvs_at..tlvs_end`; empty for v1).
    pub tlvs_at: usize,
    pub tlvs_end: usize,
    /// Where the first `PP2_TYPE_AUTHORITY` value is in the input, if any.
    pub authority: Option<(usize, usize)>,
    /// Bytes of the input the header takes: what follows is the connection's payload.
    pub consumed: usize,
}

impl Header {
    /// The client address the connection goes by: the header's source, or `socket`
    /// when the header carries none.
    pub fn client(&self, socket: SocketAddr) -> SocketAddr {
        match (self.command, self.addrs) {
            (Command::Proxy, Some((src, _))) => src,
            _ => socket,
        }
    }
}

/// Why a header is refused; each maps to a counter's label ([`Error::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// Not a PROXY header, or not one that parses.
    Malformed,
    /// Longer than the bound of its version.
    Oversized,
    /// v1: an IPv4 octet or a port with a leading zero.
    LeadingZero,
    /// v2: a version other than 2.
    Version,
    /// v2: a command other than LOCAL or PROXY.
    Command,
    /// v2: an unknown address family or transport.
    Family,
}

impl Error {
    pub const ALL: [Error; 6] = [
        Error::Malformed,
        Error::Oversized,
        Error::LeadingZero,
        Error::Version,
        Error::Command,
        Error::Family,
    ];

    /// The counter label.
    pub fn reason(self) -> &'static str {
        match self {
            Error::Malformed => "malformed",
            Error::Oversized => "oversized",
            Error::LeadingZero => "leading_zero",
            Error::Version => "version",
            Error::Command => "command",
            Error::Family => "family",
        }
    }
}

/// What [`parse`] made of the bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    NeedMore,
    Header(Header),
    Error(Error),
}

/// Parse the header at the start of `buf` (the bytes received so far).
pub fn parse(buf: &[u8]) -> Parsed {
    match buf.first() {
        None => Parsed::NeedMore,
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Parsed::Error(Error::Malformed),
    }
}

/// How many more bytes to read before parsing again: enough for the longest v1 header,
/// or exactly the rest of a v2 header once its length is known — so that a read
/// takes little or nothing past the header.
pub fn wanted(buf: &[u8]) -> usize {
    if buf.len() >= 16 && buf.starts_with(&V2_SIGNATURE) {
        let total = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        return total.min(V2_MAX_BYTES).saturating_sub(buf.len()).max(1);
    }
    V1_MAX_BYTES.saturating_sub(buf.len()).max(1)
}

fn parse_v1(buf: &[u8]) -> Parsed {
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] != V1_PREFIX[..n] {
        return Parsed::Error(Error::Malformed);
    }
    let window = &buf[..buf.len().min(V1_MAX_BYTES)];
    let end = window.iter().position(|&b| b == b'\r');
    // A line of printable ASCII: a stray LF or NUL is refused as soon as it is seen.
    if !window[..end.unwrap_or(window.len())]
        .iter()
        .all(|&b| (b' '..=b'~').contains(&b))
    {
        return Parsed::Error(Error::Malformed);
    }
    let Some(cr) = end else {
        return match buf.len() >= V1_MAX_BYTES {
            true => Parsed::Error(Error::Oversized),
            false => Parsed::NeedMore,
        };
    };
    if cr + 2 > V1_MAX_BYTES {
        return Parsed::Error(Error::Oversized);
    }
    match buf.get(cr + 1) {
        None => return Parsed::NeedMore,
        Some(b'\n') => {}
        Some(_) => return Parsed::Error(Error::Malformed),
    }
    if cr < V1_PREFIX.len() {
        return Parsed::Error(Error::Malformed);
    }
    match v1_line(&buf[V1_PREFIX.len()..cr]) {
        Ok(addrs) => Parsed::Header(Header {
            version: Version::V1,
            command: Command::Proxy,
            addrs,
            tlvs_at: cr + 2,
            tlvs_end: cr + 2,
            authority: None,
            consumed: cr + 2,
        }),
        Err(e) => Parsed::Error(e),
    }
}

/// The line after `PROXY `, without its CRLF.
fn v1_line(line: &[u8]) -> Result<Option<(SocketAddr, SocketAddr)>, Error> {
    if let Some(rest) = line.strip_prefix(b"UNKNOWN") {
        // The receiver ignores whatever follows UNKNOWN on its line.
        return match rest.first() {
            None | Some(b' ') => Ok(None),
            Some(_) => Err(Error::Malformed),
        };
    }
    let mut fields = line.split(|&b| b == b' ');
    let proto = fields.next().ok_or(Error::Malformed)?;
    let (src, dst, sport, dport) = match (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) {
        (Some(a), Some(b), Some(c), Some(d), None) => (a, b, c, d),
        _ => return Err(Error::Malformed),
    };
    let (src, dst) = match proto {
        b"TCP4" => (IpAddr::V4(ipv4(src)?), IpAddr::V4(ipv4(dst)?)),
        b"TCP6" => (IpAddr::V6(ipv6(src)?), IpAddr::V6(ipv6(dst)?)),
        _ => return Err(Error::Malformed),
    };
    let (sport, dport) = (port(sport)?, port(dport)?);
    Ok(Some((
        SocketAddr::new(src, sport),
        SocketAddr::new(dst, dport),
    )))
}

/// A decimal number of 1 to `digits` digits, no leading zero; at most `max`.
fn decimal(s: &[u8], digits: usize, max: u32) -> Result<u32, Error> {
    if s.is_empty() || s.len() > digits || !s.iter().all(u8::is_ascii_digit) {
        return Err(Error::Malformed);
    }
    if s.len() > 1 && s[0] == b'0' {
        return Err(Error::LeadingZero);
    }
    let v = s.iter().fold(0u32, |v, &d| v * 10 + u32::from(d - b'0'));
    if v > max {
        return Err(Error::Malformed);
    }
    Ok(v)
}

fn port(s: &[u8]) -> Result<u16, Error> {
    decimal(s, 5, 65_535).map(|v| v as u16)
}

fn ipv4(s: &[u8]) -> Result<Ipv4Addr, Error> {
    let mut octets = [0u8; 4];
    let mut parts = s.split(|&b| b == b'.');
    for o in &mut octets {
        *o = decimal(parts.next().ok_or(Error::Malformed)?, 3, 255)? as u8;
    }
    match parts.next() {
        None => Ok(Ipv4Addr::from(octets)),
        Some(_) => Err(Error::Malformed),
    }
}

fn ipv6(s: &[u8]) -> Result<Ipv6Addr, Error> {
    // Only hex digits and colons: an IPv6 text form with an embedded IPv4 part
    // (`::ffff:1.2.3.4`) is accepted too, as std parses it.
    if s.len() > 45
        || !s
            .iter()
            .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    {
        return Err(Error::Malformed);
    }
    std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(Error::Malformed)
}

fn parse_v2(buf: &[u8]) -> Parsed {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Parsed::Error(Error::Malformed);
    }
    if buf.len() < 16 {
        return Parsed::NeedMore;
    }
    let (ver_cmd, fam) = (buf[12], buf[13]);
    if ver_cmd >> 4 != 2 {
        return Parsed::Error(Error::Version);
    }
    let command = match ver_cmd & 0x0f {
        0 => Command::Local,
        1 => Command::Proxy,
        _ => return Parsed::Error(Error::Command),
    };
    let total = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if total > V2_MAX_BYTES {
        return Parsed::Error(Error::Oversized);
    }
    if buf.len() < total {
        return Parsed::NeedMore;
    }
    let body = &buf[16..total];
    let mut header = Header {
        version: Version::V2,
        command,
        addrs: None,
        tlvs_at: total,
        tlvs_end: total,
        authority: None,
        consumed: total,
    };
    if command == Command::Local {
        // The sender's own connection: the protocol block, family included, is
        // ignored, as the specification asks.
        return Parsed::Header(header);
    }
    // An address family over anything but STREAM is not a TCP connection.
    let (family, transport) = (fam >> 4, fam & 0x0f);
    if family > 3 || transport > 2 || (family != 0 && transport != 1) {
        return Parsed::Error(Error::Family);
    }
    let addr_len = match family {
        0 => 0,
        1 => 12,
        2 => 36,
        _ => 216,
    };
    let Some(addr) = body.get(..addr_len) else {
        return Parsed::Error(Error::Malformed);
    };
    header.addrs = v2_addresses(family, addr);
    header.tlvs_at = 16 + addr_len;
    for tlv in Tlvs::new(&buf[header.tlvs_at..total]) {
        let Some((kind, at, len)) = tlv else {
            return Parsed::Error(Error::Malformed);
        };
        if kind == TLV_AUTHORITY && header.authority.is_none() {
            let start = header.tlvs_at + at;
            header.authority = Some((start, start + len));
        }
    }
    Parsed::Header(header)
}

/// The (source, destination) of a v2 address block of `family` (1 IPv4, 2 IPv6; none
/// for UNSPEC and UNIX), `addr` being exactly the block's length for the family.
fn v2_addresses(family: u8, addr: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let port = |at: usize| u16::from_be_bytes([addr[at], addr[at + 1]]);
    match family {
        1 => {
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    addr[at],
                    addr[at + 1],
                    addr[at + 2],
                    addr[at + 3],
                ))
            };
            Some((
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            ))
        }
        2 => {
            let ip = |at: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&addr[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(o))
            };
            Some((
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            ))
        }
        _ => None,
    }
}

/// The TLVs of a TLV area: `Some((type, offset of the value, length))` each, and one
/// `None` (then nothing) where the area does not end with a whole TLV.
#[derive(Debug, Clone)]
pub struct Tlvs<'a> {
    area: &'a [u8],
    at: usize,
}

impl<'a> Tlvs<'a> {
    pub fn new(area: &'a [u8]) -> Tlvs<'a> {
        Tlvs { area, at: 0 }
    }
}

impl Iterator for Tlvs<'_> {
    type Item = Option<(u8, usize, usize)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.area.len() {
            return None;
        }
        let rest = &self.area[self.at..];
        let whole = rest.get(..3).and_then(|h| {
            let len = usize::from(u16::from_be_bytes([h[1], h[2]]));
            (rest.len() >= 3 + len).then_some((h[0], self.at + 3, len))
        });
        match whole {
            Some((_, value, len)) => self.at = value + len,
            None => self.at = self.area.len(),
        }
        Some(whole)
    }
}

/// Append a v1 header for a connection from `src` to `dst` (`None`: `UNKNOWN`).
/// Addresses of two families are both written as IPv6 (`TCP6`, IPv4-mapped).
pub fn encode_v1(addrs: Option<(SocketAddr, SocketAddr)>, out: &mut Vec<u8>) {
    use std::io::Write;
    let Some((src, dst)) = addrs else {
        out.extend_from_slice(b"PROXY UNKNOWN\r\n");
        return;
    };
    // Writing to a Vec cannot fail.
    let _ = match same_family(src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => write!(out, "PROXY TCP4 {s} {d} "),
        (s, d) => write!(out, "PROXY TCP6 {} {} ", v6(s), v6(d)),
    };
    let _ = write!(out, "{} {}\r\n", src.port(), dst.port());
}

/// Append a v2 header: `Local` (addresses ignored), or `Proxy` for a connection from
/// `src` to `dst` (`None`: AF_UNSPEC), with `tlvs` (type, value) after the addresses.
/// Addresses of two families are both written as AF_INET6 (IPv4-mapped). TLVs that
/// would take the header past [`V2_MAX_BYTES`] are left out.
pub fn encode_v2(
    command: Command,
    addrs: Option<(SocketAddr, SocketAddr)>,
    tlvs: &[(u8, &[u8])],
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(match command {
        Command::Local => 0x20,
        Command::Proxy => 0x21,
    });
    let fam_at = out.len();
    out.extend_from_slice(&[0, 0, 0]);
    if let Some((src, dst)) = addrs {
        let fam = match same_family(src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
                0x11
            }
            (s, d) => {
                out.extend_from_slice(&v6(s).octets());
                out.extend_from_slice(&v6(d).octets());
                0x21
            }
        };
        out[fam_at] = fam;
        out.extend_from_slice(&src.port().to_be_bytes());
        out.extend_from_slice(&dst.port().to_be_bytes());
    }
    for &(kind, value) in tlvs {
        let len = value.len().min(usize::from(u16::MAX));
        if out.len() - start + 3 + len > V2_MAX_BYTES {
            continue;
        }
        out.push(kind);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&value[..len]);
    }
    let len = (out.len() - start - 16) as u16;
    out[fam_at + 1..fam_at + 3].copy_from_slice(&len.to_be_bytes());
}

/// The header a `send_proxy` service puts before a backend connection's first byte:
/// `version`, from the client `src` to the address it reached, `dst`; v2 names
/// `authority` (the TLS server name, terminated or passed through) in an AUTHORITY TLV.
pub fn encode(
    version: crate::config::SendProxy,
    src: SocketAddr,
    dst: SocketAddr,
    authority: Option<&str>,
    out: &mut Vec<u8>,
) {
    match version {
        crate::config::SendProxy::V1 => encode_v1(Some((src, dst)), out),
        crate::config::SendProxy::V2 => {
            let tlvs: &[(u8, &[u8])] = match authority {
                Some(name) => &[(TLV_AUTHORITY, name.as_bytes())],
                None => &[],
            };
            encode_v2(Command::Proxy, Some((src, dst)), tlvs, out);
        }
    }
}

/// Both addresses in one family: IPv4 when both are (an IPv4 client of a dual-stack
/// listener arrives IPv4-mapped, and is sent as the IPv4 client it is), else IPv6
/// (IPv4-mapped) when they differ.
fn same_family(src: SocketAddr, dst: SocketAddr) -> (IpAddr, IpAddr) {
    match (src.ip().to_canonical(), dst.ip().to_canonical()) {
        (s @ IpAddr::V4(_), d @ IpAddr::V4(_)) | (s @ IpAddr::V6(_), d @ IpAddr::V6(_)) => (s, d),
        (s, d) => (IpAddr::V6(v6(s)), IpAddr::V6(v6(d))),
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The unspecified address (port 0) of `peer`'s family: the destination written when
/// the address a client connected to is unknown.
pub fn unspecified(peer: SocketAddr) -> SocketAddr {
    let ip = match peer.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}
