//! Request and response heads: parsed by httparse, then checked against the framing
//! rules a proxy must enforce (RFC 9112 §6) so that sluice and the backend can never
//! disagree on where a message ends. Pure functions of bytes; results are byte ranges
//! into the caller's buffer, kept in reusable storage (no allocation per request once
//! warm).

mod target;

use std::ops::Range;

/// Header fields per request; more is answered 431.
pub const MAX_HEADERS: usize = 100;
/// Header fields a head may hold once sluice added its own (X-Forwarded-*, Connection).
pub const MAX_FORWARDED_HEADERS: usize = MAX_HEADERS + 8;

/// Why a request cannot be served, as the status sluice answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// 400: malformed, or framing that could be read two ways (smuggling).
    Bad(&'static str),
    /// 431: the head (or one of its lines) exceeds `max_header_bytes`.
    TooLarge,
    /// 501: a transfer coding other than `chunked`.
    NotImplemented,
    /// 505: not HTTP/1.0 or HTTP/1.1.
    Version,
}

impl HeadError {
    pub fn status(self) -> u16 {
        match self {
            HeadError::Bad(_) => 400,
            HeadError::TooLarge => 431,
            HeadError::NotImplemented => 501,
            HeadError::Version => 505,
        }
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Trace,
    Connect,
    Other,
}

impl Method {
    fn of(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }

    /// Safe to send twice (RFC 9110 §9.2.2): a retry on another backend is allowed.
    pub fn idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

/// One header line: name and value as ranges of the head's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

/// Hop-by-hop and framing headers the proxy rewrites rather than copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Connection,
    KeepAlive,
    ProxyConnection,
    ContentLength,
    TransferEncoding,
    Host,
    Upgrade,
    XForwardedFor,
    XForwardedProto,
    XForwardedPort,
    Other,
}

fn known(name: &str) -> Known {
    const TABLE: [(&str, Known); 10] = [
        ("connection", Known::Connection),
        ("keep-alive", Known::KeepAlive),
        ("proxy-connection", Known::ProxyConnection),
        ("content-length", Known::ContentLength),
        ("transfer-encoding", Known::TransferEncoding),
        ("host", Known::Host),
        ("upgrade", Known::Upgrade),
        ("x-forwarded-for", Known::XForwardedFor),
        ("x-forwarded-proto", Known::XForwardedProto),
        ("x-forwarded-port", Known::XForwardedPort),
    ];
    TABLE
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map_or(Known::Other, |&(_, k)| k)
}

/// A parsed request head. Reused from request to request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Bytes of the head, final empty line included.
    pub len: usize,
    pub method: Method,
    pub method_range: Range<usize>,
    pub target: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub fields: Vec<(Known, Field)>,
    pub body: BodyKind,
    /// The client wants the connection kept open after the response.
    pub keep_alive: bool,
    /// `Connection: upgrade` with an `Upgrade` header: a tunnel if the backend agrees.
    pub upgrade: bool,
    /// The Host field's value, or an absolute-form target's authority, which
    /// replaces it (RFC 9112 §3.2.2).
    pub host: Option<Range<usize>>,
    /// The target is in absolute form: `origin` is forwarded, and `host` in place of
    /// the Host field.
    pub absolute: bool,
    /// The target as forwarded: the whole target, or an absolute form's path and query
    /// (perhaps empty).
    pub origin: Range<usize>,
    /// A Content-Length field was present (a `0` one leaves `body` at `None`).
    pub had_length: bool,
}

impl Default for Request {
    fn default() -> Self {
        Request::EMPTY
    }
}

impl Request {
    /// No request yet (a const, so that an empty session part can be a static).
    pub const EMPTY: Request = {
        Request {
            len: 0,
            method: Method::Get,
            method_range: 0..0,
            target: 0..0,
            minor: 1,
            fields: Vec::new(),
            body: BodyKind::None,
            keep_alive: true,
            upgrade: false,
            host: None,
            absolute: false,
            origin: 0..0,
            had_length: false,
        }
    };
}

/// Offset of `part` inside `buf` (httparse hands out sub-slices of its input — except
/// for an empty or non-ASCII reason phrase, which it gives as a static `""`: such a
/// part lies outside `buf` and maps to an empty range).
fn offset(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    if start <= buf.len() && part.len() <= buf.len() - start {
        start..start + part.len()
    } else {
        debug_assert!(part.is_empty(), "a non-empty part outside its buffer");
        0..0
    }
}

/// Comma-separated tokens of a header value, trimmed, empty ones skipped.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    elements(value).filter(|t| !t.is_empty())
}

/// Every element of a comma-separated list, trimmed, empty ones included: the framing
/// fields refuse them, since `4,` or a bare `Transfer-Encoding:` are read differently
/// by different implementations.
fn elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(|t| t.trim_ascii())
}

/// The host of a Host value or authority: without its port, `[v6]` kept whole.
pub fn host_name(value: &[u8]) -> &[u8] {
    let h = value.trim_ascii();
    if h.first() == Some(&b'[') {
        return h.iter().position(|&b| b == b']').map_or(h, |e| &h[..=e]);
    }
    h.iter().rposition(|&b| b == b':').map_or(h, |c| &h[..c])
}

/// A Content-Length value: decimal digits (leading zeros allowed) that fit in 64
/// bits; a list only of equal values.
fn parse_length(value: &[u8], seen: &mut Option<u64>) -> Result<(), HeadError> {
    for t in elements(value) {
        if t.is_empty() {
            return Err(HeadError::Bad("empty element in Content-Length"));
        }
        let n = t
            .iter()
            .try_fold(0u64, |n, &d| {
                let digit = d.is_ascii_digit().then(|| u64::from(d - b'0'))?;
                n.checked_mul(10)?.checked_add(digit)
            })
            .ok_or(HeadError::Bad("invalid Content-Length"))?;
        match *seen {
            Some(m) if m != n => return Err(HeadError::Bad("differing Content-Length values")),
            _ => *seen = Some(n),
        }
    }
    Ok(())
}

/// What the Connection, Content-Length and Transfer-Encoding fields of a message say.
#[derive(Default)]
struct Framing {
    length: Option<u64>,
    /// Transfer codings in order, over every Transfer-Encoding line.
    codings: u32,
    chunked_last: bool,
    chunked_count: u32,
    close: bool,
    keep_alive: bool,
    upgrade_token: bool,
}

impl Framing {
    fn field(&mut self, kind: Known, value: &[u8]) -> Result<(), HeadError> {
        match kind {
            Known::ContentLength => parse_length(value, &mut self.length)?,
            Known::TransferEncoding => {
                for t in elements(value) {
                    if t.is_empty() {
                        return Err(HeadError::Bad("empty element in Transfer-Encoding"));
                    }
                    self.codings += 1;
                    let chunked = t.eq_ignore_ascii_case(b"chunked");
                    self.chunked_count += u32::from(chunked);
                    self.chunked_last = chunked;
                }
            }
            Known::Connection => {
                for t in tokens(value) {
                    self.close |= t.eq_ignore_ascii_case(b"close");
                    self.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
                    self.upgrade_token |= t.eq_ignore_ascii_case(b"upgrade");
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn persistent(&self, minor: u8) -> bool {
        !self.close && (minor >= 1 || self.keep_alive)
    }
}

/// Parse a request head from the start of `buf`. `Ok(false)`: incomplete, read more.
/// A head longer than `max_bytes` is [`HeadError::TooLarge`] whether complete or not.
pub fn parse_request(buf: &[u8], max_bytes: usize, out: &mut Request) -> Result<bool, HeadError> {
    parse_request_with(buf, max_bytes, MAX_HEADERS, out)
}

/// [`parse_request`] with at most `max_fields` header fields.
pub fn parse_request_with(
    buf: &[u8],
    max_bytes: usize,
    max_fields: usize,
    out: &mut Request,
) -> Result<bool, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_FORWARDED_HEADERS];
    let mut req = httparse::Request::new(&mut headers[..max_fields.min(MAX_FORWARDED_HEADERS)]);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(false),
        Err(httparse::Error::Version) if well_formed_version(buf) => {
            return Err(HeadError::Version)
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Bad("malformed request head")),
    };
    if len > max_bytes {
        return Err(HeadError::TooLarge);
    }
    let method = req.method.expect("complete head");
    let path = req.path.expect("complete head");
    out.len = len;
    out.method = Method::of(method);
    out.method_range = offset(buf, method.as_bytes());
    out.target = offset(buf, path.as_bytes());
    let absolute = target::classify(out.method, path.as_bytes(), out.target.start)?;
    out.minor = req.version.expect("complete head");
    out.fields.clear();
    out.fields.reserve(req.headers.len());
    out.host = None;
    let mut framing = Framing::default();
    let mut hosts = 0;
    let mut upgrade_field = false;
    for h in req.headers.iter() {
        let kind = known(h.name);
        let field = Field {
            name: offset(buf, h.name.as_bytes()),
            value: offset(buf, h.value),
        };
        framing.field(kind, h.value)?;
        match kind {
            Known::Host => {
                hosts += 1;
                out.host = Some(field.value.clone());
            }
            Known::Upgrade => upgrade_field = true,
            _ => {}
        }
        out.fields.push((kind, field));
    }
    if hosts > 1 || (hosts == 0 && out.minor == 1) {
        return Err(HeadError::Bad("HTTP/1.1 needs exactly one Host"));
    }
    out.absolute = absolute.is_some();
    out.origin = out.target.clone();
    if let Some(a) = absolute {
        out.host = Some(a.authority);
        out.origin = a.origin;
    }
    out.body = request_body(&framing, out.minor)?;
    out.had_length = framing.length.is_some();
    out.keep_alive = framing.persistent(out.minor);
    out.upgrade = framing.upgrade_token && upgrade_field;
    Ok(true)
}

/// The request line is `method SP target SP HTTP/d.d`: a version, only not one
/// sluice speaks (505); anything else there — a space inside the target, say — is a
/// malformed request (400).
fn well_formed_version(buf: &[u8]) -> bool {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or(b"");
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(v), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !method.is_empty()
        && !target.is_empty()
        && v.len() == 8
        && v.starts_with(b"HTTP/")
        && v[5].is_ascii_digit()
        && v[6] == b'.'
        && v[7].is_ascii_digit()
}

fn request_body(f: &Framing, minor: u8) -> Result<BodyKind, HeadError> {
    if f.codings == 0 {
        return Ok(f.length.map_or(BodyKind::None, |n| {
            if n == 0 {
                BodyKind::None
            } else {
                BodyKind::Length(n)
            }
        }));
    }
    if f.length.is_some() {
        return Err(HeadError::Bad("both Content-Length and Transfer-Encoding"));
    }
    if minor == 0 {
        return Err(HeadError::Bad("Transfer-Encoding in an HTTP/1.0 request"));
    }
    if !f.chunked_last || f.chunked_count > 1 {
        return Err(HeadError::Bad(
            "Transfer-Encoding must end in a single chunked",
        ));
    }
    if f.codings > 1 {
        return Err(HeadError::NotImplemented);
    }
    Ok(BodyKind::Chunked)
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct Response {
    pub len: usize,
    pub status: u16,
    pub reason: Range<usize>,
    pub minor: u8,
    pub fields: Vec<(Known, Field)>,
    pub body: BodyKind,
    /// The backend keeps the connection open after this response.
    pub keep_alive: bool,
    /// A Transfer-Encoding field is present: any Content-Length is not forwarded
    /// (RFC 9112 §6.3).
    pub transfer_encoded: bool,
}

impl Default for Response {
    fn default() -> Self {
        Response::EMPTY
    }
}

impl Response {
    /// No response yet.
    pub const EMPTY: Response = {
        Response {
            len: 0,
            status: 0,
            reason: 0..0,
            minor: 1,
            fields: Vec::new(),
            body: BodyKind::None,
            keep_alive: true,
            transfer_encoded: false,
        }
    };
}

/// Why a backend's response cannot be relayed (answered 502).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadResponse;

/// Parse a response head to a request with `method`. `Ok(false)`: incomplete.
pub fn parse_response(
    buf: &[u8],
    max_bytes: usize,
    method: Method,
    out: &mut Response,
) -> Result<bool, BadResponse> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_FORWARDED_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= max_bytes => n,
        Ok(httparse::Status::Partial) if buf.len() < max_bytes => return Ok(false),
        _ => return Err(BadResponse),
    };
    out.len = len;
    out.status = resp.code.expect("complete head");
    out.reason = offset(buf, resp.reason.expect("complete head").as_bytes());
    out.minor = resp.version.expect("complete head");
    out.fields.clear();
    out.fields.reserve(resp.headers.len());
    let mut framing = Framing::default();
    for h in resp.headers.iter() {
        let kind = known(h.name);
        framing.field(kind, h.value).map_err(|_| BadResponse)?;
        let field = Field {
            name: offset(buf, h.name.as_bytes()),
            value: offset(buf, h.value),
        };
        out.fields.push((kind, field));
    }
    out.keep_alive = framing.persistent(out.minor);
    out.transfer_encoded = framing.codings > 0;
    let bodiless = method == Method::Head
        || (100..200).contains(&out.status)
        || out.status == 204
        || out.status == 304
        || (method == Method::Connect && (200..300).contains(&out.status));
    out.body = if bodiless {
        BodyKind::None
    } else if framing.codings > 0 {
        // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length (which is then
        // dropped, and the connection not reused). Codings sluice cannot undo are
        // refused, as HAProxy does: a body delimited by the close could not be
        // re-framed for the client, nor a gzip one de-chunked for HTTP/1.0.
        if framing.length.is_some() {
            out.keep_alive = false;
        }
        if framing.codings != 1 || !framing.chunked_last {
            return Err(BadResponse);
        }
        BodyKind::Chunked
    } else {
        match framing.length {
            Some(0) => BodyKind::None,
            Some(n) => BodyKind::Length(n),
            None => {
                out.keep_alive = false;
                BodyKind::Close
            }
        }
    };
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> Result<Request, HeadError> {
        let mut r = Request::default();
        match parse_request(text.as_bytes(), 16384, &mut r)? {
            true => Ok(r),
            false => panic!("incomplete: {text:?}"),
        }
    }

    #[test]
    fn framing_of_requests() {
        let r = req("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(r.body, BodyKind::Length(5));
        assert!(r.keep_alive);
        let r = req("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(r.body, BodyKind::Chunked);
        let r = req("GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!r.keep_alive);
        let r = req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        assert!(r.keep_alive);
        let r = req("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!r.keep_alive);
        let r = req("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n").unwrap();
        assert_eq!(r.body, BodyKind::Length(3));
        let r =
            req("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                .unwrap();
        assert!(r.upgrade);
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let cases: &[(&str, u16)] = &[
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5a\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHo st: a\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
            ("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
            ("GET / HTTQ/1.1\r\nHost: a\r\n\r\n", 400),
            ("NOT A REQUEST\r\n\r\n", 400),
        ];
        for (text, status) in cases {
            let got = req(text).map(|_| 200).unwrap_or_else(|e| e.status());
            assert_eq!(got, *status, "{text:?}");
        }
    }

    #[test]
    fn framing_lists_and_lengths_are_strict() {
        let post = |fields: &str| format!("POST / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
        let cases: &[(&str, u16)] = &[
            // A Transfer-Encoding that names no coding, beside a length or not.
            ("Transfer-Encoding:\r\nContent-Length: 5\r\n", 400),
            ("Transfer-Encoding: ,\r\nContent-Length: 5\r\n", 400),
            ("Transfer-Encoding:\r\n", 400),
            ("Transfer-Encoding: \t\r\n", 400),
            ("Transfer-Encoding: ,\r\n", 400),
            ("Transfer-Encoding:\r\nContent-Length: 0\r\n", 400),
            // Empty elements anywhere in the list.
            ("Transfer-Encoding: , chunked\r\n", 400),
            ("Transfer-Encoding: chunked,\r\n", 400),
            ("Transfer-Encoding: chunked,,\r\n", 400),
            (
                "Transfer-Encoding: ,\r\nTransfer-Encoding: chunked\r\n",
                400,
            ),
            ("Transfer-Encoding: chunked\r\nTransfer-Encoding:\r\n", 400),
            ("Transfer-Encoding: chunked;q=1\r\n", 400),
            ("Transfer-Encoding: \"chunked\"\r\n", 400),
            ("Transfer-Encoding: identity\r\n", 400),
            ("Transfer-Encoding: CHUNKED\r\n", 200),
            ("Transfer-Encoding:\tchunked\t\r\n", 200),
            // Content-Length lists: equal values only, no empty element.
            ("Content-Length: 4,\r\n", 400),
            ("Content-Length: ,4\r\n", 400),
            ("Content-Length: 4,,4\r\n", 400),
            ("Content-Length: 4, ,4\r\n", 400),
            ("Content-Length: ,\r\n", 400),
            ("Content-Length:\r\n", 400),
            ("Content-Length: 4,\r\nContent-Length: 4\r\n", 400),
            ("Content-Length: 4, 4\r\n", 200),
            ("Content-Length: 4\r\nContent-Length: 4\r\n", 200),
            // Signs, other bases, fractions, inner spaces, overflow.
            ("Content-Length: +4\r\n", 400),
            ("Content-Length: -4\r\n", 400),
            ("Content-Length: 0x4\r\n", 400),
            ("Content-Length: 4.0\r\n", 400),
            ("Content-Length: 4e0\r\n", 400),
            ("Content-Length: 4 4\r\n", 400),
            ("Content-Length: 18446744073709551616\r\n", 400),
            ("Content-Length: 99999999999999999999\r\n", 400),
            ("Content-Length: 18446744073709551615\r\n", 200),
            ("Content-Length:  4 \r\n", 200),
            ("Content-Length: 0000000000000000000004\r\n", 200),
        ];
        for (fields, status) in cases {
            let text = post(fields);
            let got = req(&text).map(|_| 200).unwrap_or_else(|e| e.status());
            assert_eq!(got, *status, "{text:?}");
        }
        let r = req(&post("Content-Length: 0004\r\n")).unwrap();
        assert_eq!(r.body, BodyKind::Length(4));
        let r = req(&post("Content-Length: 18446744073709551615\r\n")).unwrap();
        assert_eq!(r.body, BodyKind::Length(u64::MAX));
    }

    #[test]
    fn spaces_fragments_and_unknown_forms_in_the_target_are_400() {
        let cases: &[(&str, u16)] = &[
            ("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET /a  b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET /a  HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET  /a HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET /a b HTTP/2.0\r\nHost: x\r\n\r\n", 400),
            ("GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET /a HTTP/1.1 \r\nHost: x\r\n\r\n", 400),
            ("GET /a#f HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET /a?b#c HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET ?q HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("CONNECT /x HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 200),
            ("GET /a%20b HTTP/1.1\r\nHost: x\r\n\r\n", 200),
            ("GET /a HTTP/1.2\r\nHost: x\r\n\r\n", 505),
        ];
        for (text, status) in cases {
            let got = req(text).map(|_| 200).unwrap_or_else(|e| e.status());
            assert_eq!(got, *status, "{text:?}");
        }
    }

    #[test]
    fn an_absolute_form_authority_replaces_host() {
        let text = "GET http://internal.example:8080/x?y HTTP/1.1\r\nHost: public.example\r\n\r\n";
        let r = req(text).unwrap();
        assert!(r.absolute);
        let host = r.host.clone().unwrap();
        assert_eq!(&text[host.clone()], "internal.example:8080");
        assert_eq!(&text[r.origin], "/x?y");
        assert_eq!(host_name(text[host].as_bytes()), b"internal.example");
        // HTTP/1.0 without Host: the authority is the host.
        let text = "GET http://h.example HTTP/1.0\r\n\r\n";
        let r = req(text).unwrap();
        assert_eq!((&text[r.host.unwrap()], r.origin.len()), ("h.example", 0));
        // Origin form: the target is forwarded as it is.
        let text = "GET /p?q HTTP/1.1\r\nHost: h\r\n\r\n";
        let r = req(text).unwrap();
        assert!(!r.absolute);
        assert_eq!((&text[r.host.unwrap()], &text[r.origin]), ("h", "/p?q"));
        // HTTP/1.1 still needs its Host field, and only one.
        for text in [
            "GET http://h/ HTTP/1.1\r\n\r\n",
            "GET http://h/ HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n",
            "GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET http:/// HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert_eq!(
                req(text).map(|_| ()).map_err(HeadError::status),
                Err(400),
                "{text:?}"
            );
        }
        assert_eq!(host_name(b" [::1]:80 "), b"[::1]");
        assert_eq!(host_name(b"h:"), b"h");
    }

    #[test]
    fn oversized_heads_are_431_complete_or_not() {
        let mut r = Request::default();
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(200));
        assert_eq!(
            parse_request(long.as_bytes(), 100, &mut r),
            Err(HeadError::TooLarge)
        );
        assert_eq!(
            parse_request(&long.as_bytes()[..120], 100, &mut r),
            Err(HeadError::TooLarge)
        );
        assert_eq!(
            parse_request(&long.as_bytes()[..50], 100, &mut r),
            Ok(false)
        );
    }

    #[test]
    fn response_framing() {
        let mut r = Response::default();
        let p = |t: &str, m: Method, r: &mut Response| parse_response(t.as_bytes(), 4096, m, r);
        assert_eq!(
            p(
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
                Method::Get,
                &mut r
            ),
            Ok(true)
        );
        assert_eq!((r.body, r.keep_alive), (BodyKind::Length(3), true));
        p(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
            Method::Head,
            &mut r,
        )
        .unwrap();
        assert_eq!(r.body, BodyKind::None);
        p("HTTP/1.1 200 OK\r\n\r\n", Method::Get, &mut r).unwrap();
        assert_eq!((r.body, r.keep_alive), (BodyKind::Close, false));
        p("HTTP/1.1 204 No Content\r\n\r\n", Method::Get, &mut r).unwrap();
        assert_eq!((r.body, r.keep_alive), (BodyKind::None, true));
        p(
            "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
            Method::Get,
            &mut r,
        )
        .unwrap();
        assert!(!r.keep_alive);
        p(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
            Method::Get,
            &mut r,
        )
        .unwrap();
        assert_eq!((r.body, r.keep_alive), (BodyKind::Chunked, false));
        assert!(r.transfer_encoded);
        assert_eq!(
            p("HTTP/1.1 2x0 OK\r\n\r\n", Method::Get, &mut r),
            Err(BadResponse)
        );
    }

    #[test]
    fn responses_with_codings_sluice_cannot_undo_are_refused() {
        let mut r = Response::default();
        let mut p = |t: &str, m: Method| parse_response(t.as_bytes(), 4096, m, &mut r);
        for fields in [
            "Transfer-Encoding: gzip\r\n",
            "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n",
            "Transfer-Encoding: chunked, gzip\r\n",
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding:\r\nContent-Length: 5\r\n",
            "Transfer-Encoding: chunked,\r\n",
            "Content-Length: 5,\r\n",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
        ] {
            let text = format!("HTTP/1.1 200 OK\r\n{fields}\r\n");
            assert_eq!(p(&text, Method::Get), Err(BadResponse), "{text:?}");
        }
        // Without a body the coding does not matter.
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(p(head, Method::Head), Ok(true));
        assert_eq!(r.body, BodyKind::None);
    }
}
