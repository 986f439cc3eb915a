//! The heads sluice writes: the request head for the backend (hop-by-hop fields
//! dropped, framing written once and canonically, X-Forwarded-* extended), the response
//! head for the client, and sluice's own small responses.

use super::{Forward, Session};
use crate::http::head::{BodyKind, Field, Known, Method, Request};
use std::io::Write;

impl Session {
    /// The response head for the client: hop-by-hop fields replaced by our own.
    pub(super) fn write_response_head(&mut self, verbatim: bool) {
        let p = &mut *self.p;
        let out = &mut p.to_client;
        let src = &p.from_backend;
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, u64::from(p.resp.status));
        out.push(b' ');
        out.extend_from_slice(&src[p.resp.reason.clone()]);
        out.extend_from_slice(b"\r\n");
        let dechunk = p.req.minor == 0 && p.resp.body == BodyKind::Chunked;
        let options = !verbatim && has_options(src, &p.resp.fields);
        for (kind, f) in &p.resp.fields {
            let skip = match kind {
                Known::Other if options => listed(src, &p.resp.fields, &src[f.name.clone()]),
                Known::Connection | Known::KeepAlive | Known::ProxyConnection => !verbatim,
                Known::TransferEncoding => dechunk,
                // RFC 9112 §6.3: Transfer-Encoding overrides it; a de-chunked body for
                // HTTP/1.0 runs to the close.
                Known::ContentLength => p.resp.transfer_encoded,
                _ => false,
            };
            if !skip {
                out.extend_from_slice(&src[f.name.clone()]);
                out.extend_from_slice(b": ");
                out.extend_from_slice(&src[f.value.clone()]);
                out.extend_from_slice(b"\r\n");
            }
        }
        if (100..200).contains(&p.resp.status) {
            out.extend_from_slice(b"\r\n");
            return;
        }
        out.extend_from_slice(&p.pending_cookie);
        if !verbatim {
            if !self.client_keep {
                out.extend_from_slice(b"Connection: close\r\n");
            } else if p.req.minor == 0 {
                out.extend_from_slice(b"Connection: keep-alive\r\n");
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The target as the backend receives it, in origin form: a lead (`/` when an
    /// absolute-form target had no path, `*` for `OPTIONS` without one) and the rest.
    pub fn origin_form(&self) -> (&'static [u8], &[u8]) {
        origin_form(&self.p.req, &self.p.input)
    }

    /// The request head for the backend: hop-by-hop fields dropped, forwarded fields
    /// extended.
    pub(super) fn write_request_head(&mut self, fwd: &Forward) {
        let p = &mut *self.p;
        let out = &mut p.to_backend;
        let src = &p.input;
        let req = &p.req;
        out.extend_from_slice(&src[req.method_range.clone()]);
        out.push(b' ');
        if req.absolute {
            // RFC 9112 §3.2.2: origin form, and the authority as the only Host.
            let (lead, origin) = origin_form(req, src);
            out.extend_from_slice(lead);
            out.extend_from_slice(origin);
            push_version(out, req.minor);
            out.extend_from_slice(b"Host: ");
            out.extend_from_slice(&src[req.host.clone().unwrap_or_default()]);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(&src[req.target.clone()]);
            push_version(out, req.minor);
        }
        let forwarded = self.limits.forwarded_headers;
        let options = has_options(src, &req.fields);
        for (kind, f) in &req.fields {
            let skip = match kind {
                // RFC 9110 §7.6.1: fields the Connection header names are hop-by-hop.
                // Host and the fields sluice writes itself are not taken away.
                Known::Other if options => listed(src, &req.fields, &src[f.name.clone()]),
                Known::Host => req.absolute,
                // Framing is written once, canonically, below.
                Known::Connection
                | Known::KeepAlive
                | Known::ProxyConnection
                | Known::ContentLength
                | Known::TransferEncoding => true,
                Known::XForwardedFor | Known::XForwardedProto | Known::XForwardedPort => forwarded,
                _ => false,
            };
            if skip {
                continue;
            }
            out.extend_from_slice(&src[f.name.clone()]);
            out.extend_from_slice(b": ");
            out.extend_from_slice(&src[f.value.clone()]);
            out.extend_from_slice(b"\r\n");
        }
        match req.body {
            BodyKind::Length(n) => {
                out.extend_from_slice(b"Content-Length: ");
                push_decimal(out, n);
                out.extend_from_slice(b"\r\n");
            }
            BodyKind::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            BodyKind::None if req.had_length => out.extend_from_slice(b"Content-Length: 0\r\n"),
            BodyKind::None | BodyKind::Close => {}
        }
        if req.upgrade {
            out.extend_from_slice(b"Connection: upgrade\r\n");
        } else if req.minor == 0 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        if forwarded {
            out.extend_from_slice(b"X-Forwarded-For: ");
            for (kind, f) in &req.fields {
                if *kind == Known::XForwardedFor {
                    let v = src[f.value.clone()].trim_ascii();
                    if !v.is_empty() {
                        out.extend_from_slice(v);
                        out.extend_from_slice(b", ");
                    }
                }
            }
            push_ip(out, fwd.client_ip);
            out.extend_from_slice(match fwd.https {
                true => b"\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: ",
                false => b"\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: ",
            });
            push_decimal(out, u64::from(fwd.listen_port));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// A response of sluice's own, then close.
    pub(super) fn respond(&mut self, status: u16, now_ms: u64) {
        let reason = reason(status);
        let _ = write!(
            self.p.to_client,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reason}\n",
            reason.len() + 1
        );
        self.finish_with(status, now_ms);
    }
}

/// The Connection fields name something other than `close`, `keep-alive` and
/// `upgrade`: other fields may be hop-by-hop (the common case pays one scan).
fn has_options(src: &[u8], fields: &[(Known, Field)]) -> bool {
    connection_options(src, fields).any(|o| {
        !(o.eq_ignore_ascii_case(b"close")
            || o.eq_ignore_ascii_case(b"keep-alive")
            || o.eq_ignore_ascii_case(b"upgrade"))
    })
}

/// Field `name` is one of the Connection options.
fn listed(src: &[u8], fields: &[(Known, Field)], name: &[u8]) -> bool {
    connection_options(src, fields).any(|o| o.eq_ignore_ascii_case(name))
}

fn connection_options<'a>(
    src: &'a [u8],
    fields: &'a [(Known, Field)],
) -> impl Iterator<Item = &'a [u8]> {
    fields
        .iter()
        .filter(|(k, _)| *k == Known::Connection)
        .flat_map(move |(_, f)| src[f.value.clone()].split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|o| !o.is_empty())
}

fn origin_form<'a>(req: &Request, src: &'a [u8]) -> (&'static [u8], &'a [u8]) {
    let origin = &src[req.origin.clone()];
    match origin.first() {
        _ if !req.absolute => (b"", origin),
        Some(b'/') => (b"", origin),
        None if req.method == Method::Options => (b"*", origin),
        _ => (b"/", origin),
    }
}

/// The reason phrase sluice sends with its own responses.
pub fn reason(status: u16) -> &'static str {
    match status {
        301 => "Moved Permanently",
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

// Every request writes these: plain byte pushes rather than `fmt`, which costs a few
// per cent of a keep-alive request's CPU (measured: docs/benchmarks.md).

/// ` HTTP/1.x` and the line's end.
fn push_version(out: &mut Vec<u8>, minor: u8) {
    out.extend_from_slice(b" HTTP/1.");
    push_decimal(out, u64::from(minor));
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// An address as `Display` writes it (dotted quad; IPv6 through `fmt`, rarer).
fn push_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, u64::from(octet));
            }
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{push_decimal, push_ip, push_version};
    use std::net::IpAddr;

    #[test]
    fn numbers_and_addresses_are_written_as_display_writes_them() {
        for n in [0u64, 1, 9, 10, 99, 100, 255, 443, 65535, 1 << 40, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.45",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().as_bytes());
        }
        let mut out = Vec::new();
        push_version(&mut out, 0);
        assert_eq!(out, b" HTTP/1.0\r\n");
    }
}
