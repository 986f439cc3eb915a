//! The heads sluice writes: the request head for the backend (hop-by-hop fields
//! dropped, framing written once and canonically, X-Forwarded-* extended), the response
//! head for the client, and sluice's own small responses.

use super::{Forward, Session};
use crate::http::head::{BodyKind, Field, Known, Method, Request};
use std::io::Write;

impl Session {
    /// The response head for the client: hop-by-hop fields replaced by our own.
    pub(super) fn write_response_head(&mut self, verbatim: bool) {
        let out = &mut self.to_client;
        let src = &self.from_backend;
        let _ = write!(out, "HTTP/1.1 {} ", self.resp.status);
        out.extend_from_slice(&src[self.resp.reason.clone()]);
        out.extend_from_slice(b"\r\n");
        let dechunk = self.req.minor == 0 && self.resp.body == BodyKind::Chunked;
        let options = !verbatim && has_options(src, &self.resp.fields);
        for (kind, f) in &self.resp.fields {
            let skip = match kind {
                Known::Other if options => listed(src, &self.resp.fields, &src[f.name.clone()]),
                Known::Connection | Known::KeepAlive | Known::ProxyConnection => !verbatim,
                Known::TransferEncoding => dechunk,
                // RFC 9112 §6.3: Transfer-Encoding overrides it; a de-chunked body for
                // HTTP/1.0 runs to the close.
                Known::ContentLength => self.resp.transfer_encoded,
                _ => false,
            };
            if !skip {
                out.extend_from_slice(&src[f.name.clone()]);
                out.extend_from_slice(b": ");
                out.extend_from_slice(&src[f.value.clone()]);
                out.extend_from_slice(b"\r\n");
            }
        }
        if (100..200).contains(&self.resp.status) {
            out.extend_from_slice(b"\r\n");
            return;
        }
        out.extend_from_slice(&self.pending_cookie);
        if !verbatim {
            if !self.client_keep {
                out.extend_from_slice(b"Connection: close\r\n");
            } else if self.req.minor == 0 {
                out.extend_from_slice(b"Connection: keep-alive\r\n");
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The target as the backend receives it, in origin form: a lead (`/` when an
    /// absolute-form target had no path, `*` for `OPTIONS` without one) and the rest.
    pub fn origin_form(&self) -> (&'static [u8], &[u8]) {
        origin_form(&self.req, &self.input)
    }

    /// The request head for the backend: hop-by-hop fields dropped, forwarded fields
    /// extended.
    pub(super) fn write_request_head(&mut self, fwd: &Forward) {
        let out = &mut self.to_backend;
        let src = &self.input;
        let req = &self.req;
        out.extend_from_slice(&src[req.method_range.clone()]);
        out.push(b' ');
        if req.absolute {
            // RFC 9112 §3.2.2: origin form, and the authority as the only Host.
            let (lead, origin) = origin_form(req, src);
            out.extend_from_slice(lead);
            out.extend_from_slice(origin);
            let _ = write!(out, " HTTP/1.{}\r\nHost: ", req.minor);
            out.extend_from_slice(&src[req.host.clone().unwrap_or_default()]);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(&src[req.target.clone()]);
            let _ = write!(out, " HTTP/1.{}\r\n", req.minor);
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
                let _ = write!(out, "Content-Length: {n}\r\n");
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
            let _ = write!(
                out,
                "{}\r\nX-Forwarded-Proto: {}\r\nX-Forwarded-Port: {}\r\n",
                fwd.client_ip,
                if fwd.https { "https" } else { "http" },
                fwd.listen_port
            );
        }
        out.extend_from_slice(b"\r\n");
    }

    /// A response of sluice's own, then close.
    pub(super) fn respond(&mut self, status: u16, now_ms: u64) {
        let reason = reason(status);
        let _ = write!(
            self.to_client,
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
