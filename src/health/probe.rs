//! One check in flight: a non-blocking connect and, for HTTP, one request and the
//! head of its response. Driven by the health thread's mio loop; the response
//! parsing is pure.

use super::state::{CheckResult, CheckStatus};
use crate::config::{CheckKind, HealthCheck, SendProxy};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;

/// The longest status line.
const STATUS_LINE_MAX: usize = 1024;
/// The most bytes read looking for the end of the response head (HAProxy's buffer).
pub const HEAD_MAX: usize = 16 * 1024;

/// What an address is checked with: the check and the bytes it sends once connected
/// (a PROXY header, an HTTP request; a TCP check without PROXY sends none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub check: HealthCheck,
    pub request: Box<[u8]>,
}

impl Spec {
    /// The check of `addr`: the request carries the check's `Host`, else the address.
    /// A service that sends backends a PROXY header sends one with its checks too, as
    /// HAProxy does by default: v1 `UNKNOWN`, or v2's `LOCAL` command, which says the
    /// connection is the proxy's own.
    pub fn new(check: &HealthCheck, addr: SocketAddr, send_proxy: Option<SendProxy>) -> Spec {
        let mut request = Vec::new();
        match send_proxy {
            None => {}
            Some(SendProxy::V1) => crate::proxy::encode_v1(None, &mut request),
            Some(SendProxy::V2) => {
                crate::proxy::encode_v2(crate::proxy::Command::Local, None, &[], &mut request)
            }
        }
        if check.kind == CheckKind::Http {
            let host = check.host.clone().unwrap_or_else(|| addr.to_string());
            request.extend_from_slice(
                format!(
                    "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sluice-check\r\n\
                     Accept: */*\r\nConnection: close\r\n\r\n",
                    check.method, check.path
                )
                .as_bytes(),
            );
        }
        Spec {
            check: check.clone(),
            request: request.into_boxed_slice(),
        }
    }
}

/// The response head so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    Incomplete,
    /// A whole head (status line, headers, the empty line), and its status.
    Code(u16),
    Invalid,
}

/// The status of the response head at the start of `buf`: its first line must be
/// `HTTP/1.x NNN ...` (else `Invalid` as soon as that is plain), and the check passes
/// or fails on the status only once the head is whole — a response cut after its
/// status line is not one a client could use (HAProxy decides so too). A head that
/// does not end within [`HEAD_MAX`] bytes is `Invalid`, as HAProxy's does past its
/// buffer.
pub fn response_head(buf: &[u8]) -> Head {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= STATUS_LINE_MAX || !b"HTTP/1.".starts_with(&buf[..buf.len().min(7)])
        {
            Head::Invalid
        } else {
            Head::Incomplete
        };
    };
    let line = &buf[..end];
    let ok = line.len() >= 12
        && line.len() < STATUS_LINE_MAX
        && line.starts_with(b"HTTP/1.")
        && line[7].is_ascii_digit()
        && line[8] == b' '
        && line[9..12].iter().all(u8::is_ascii_digit)
        && line.get(12).map_or(true, |&b| b == b' ' || b == b'\r');
    if !ok {
        return Head::Invalid;
    }
    let code = line[9..12]
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&code) {
        return Head::Invalid;
    }
    // The empty line that ends the head: CRLF, or a bare LF as HTTP parsers accept.
    let rest = &buf[end..];
    let whole = rest.windows(3).any(|w| w == b"\n\r\n") || rest.windows(2).any(|w| w == b"\n\n");
    match (whole, buf.len() >= HEAD_MAX) {
        (true, _) => Head::Code(code),
        (false, true) => Head::Invalid,
        (false, false) => Head::Incomplete,
    }
}

/// A check in flight, with the spec it started with: a reload that changes the check
/// meanwhile applies from the next one, never halfway through a request.
pub struct Probe {
    pub stream: mio::net::TcpStream,
    spec: std::sync::Arc<Spec>,
    pub started_ms: u64,
    pub deadline_ms: u64,
    connected: bool,
    sent: usize,
    buf: Vec<u8>,
}

impl Probe {
    /// Start connecting to `addr`. The socket closes with a reset when dropped, as
    /// HAProxy's checks do: a check leaves no TIME_WAIT behind on either side.
    pub fn connect(
        addr: SocketAddr,
        spec: std::sync::Arc<Spec>,
        now_ms: u64,
    ) -> std::io::Result<Probe> {
        let stream = mio::net::TcpStream::connect(addr)?;
        socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO))?;
        Ok(Probe {
            stream,
            deadline_ms: now_ms + spec.check.timeout_ms,
            spec,
            started_ms: now_ms,
            connected: false,
            sent: 0,
            buf: Vec::new(),
        })
    }

    /// Move on after a readiness event; the result once the check is decided.
    pub fn advance(&mut self, now_ms: u64) -> Option<CheckResult> {
        let spec = std::sync::Arc::clone(&self.spec);
        let result = |status, code| {
            Some(CheckResult {
                status,
                code,
                duration_ms: now_ms.saturating_sub(self.started_ms),
            })
        };
        if !self.connected {
            match self.stream.take_error() {
                Ok(Some(_)) | Err(_) => return result(CheckStatus::L4CON, None),
                Ok(None) => {}
            }
            match self.stream.peer_addr() {
                Ok(_) => self.connected = true,
                Err(e) if e.kind() == ErrorKind::NotConnected => return None,
                Err(_) => return result(CheckStatus::L4CON, None),
            }
        }
        // Connected: a failure to send or receive from here on is a socket error (a
        // reset, most often), as HAProxy reports it, not a connect failure nor a
        // response.
        while self.sent < spec.request.len() {
            match self.stream.write(&spec.request[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return result(CheckStatus::SOCKERR, None),
            }
        }
        if spec.check.kind == CheckKind::Tcp {
            return result(CheckStatus::L4OK, None);
        }
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                // The end of the stream before a whole head.
                Ok(0) => return result(CheckStatus::L7RSP, None),
                Ok(n) => {
                    let room = HEAD_MAX.saturating_sub(self.buf.len());
                    self.buf.extend_from_slice(&chunk[..n.min(room)]);
                    match response_head(&self.buf) {
                        Head::Incomplete => {}
                        Head::Invalid => return result(CheckStatus::L7RSP, None),
                        Head::Code(c) => {
                            let (lo, hi) = spec.check.expect;
                            let status = if (lo..=hi).contains(&c) {
                                CheckStatus::L7OK
                            } else {
                                CheckStatus::L7STS
                            };
                            return result(status, Some(c));
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return result(CheckStatus::SOCKERR, None),
            }
        }
    }

    /// The check's deadline passed: which timeout it was.
    pub fn timed_out(&self, now_ms: u64) -> CheckResult {
        CheckResult {
            status: if self.connected {
                CheckStatus::L7TOUT
            } else {
                CheckStatus::L4TOUT
            },
            code: None,
            duration_ms: now_ms.saturating_sub(self.started_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads() {
        let code = |c| Head::Code(c);
        assert_eq!(response_head(b"HTTP/1.1 200 OK\r\n\r\n"), code(200));
        assert_eq!(
            response_head(b"HTTP/1.0 503\r\nA: b\r\n\r\nbody"),
            code(503)
        );
        assert_eq!(response_head(b"HTTP/1.1 204 No Content\n\n"), code(204));
        assert_eq!(response_head(b"HTTP/1.1 200 OK\nA: b\n\n"), code(200));
        // A status line alone, or with headers but no empty line, is not a response yet.
        assert_eq!(response_head(b"HTTP/1.1 200 OK\r\n"), Head::Incomplete);
        assert_eq!(
            response_head(b"HTTP/1.1 200 OK\r\nA: b\r\n"),
            Head::Incomplete
        );
        assert_eq!(response_head(b"HTTP/1.1 20"), Head::Incomplete);
        assert_eq!(response_head(b"HTT"), Head::Incomplete);
        assert_eq!(response_head(b"SSH-2.0-OpenSSH"), Head::Invalid);
        // An invalid status line is told at once, without waiting for the head's end.
        assert_eq!(response_head(b"HTTP/1.1 2000 OK\r\n"), Head::Invalid);
        assert_eq!(response_head(b"HTTP/1.1 099 x\r\n"), Head::Invalid);
        assert_eq!(response_head(b"\x00\xffgarbage\r\n\r\n"), Head::Invalid);
        assert_eq!(response_head(&[b'H'; 10]), Head::Invalid);
        let long = [b"HTTP/1.1 ".as_slice(), &[b'2'; 2000]].concat();
        assert_eq!(response_head(&long), Head::Invalid);
        // Headers that do not end within the bound.
        let big = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; HEAD_MAX]].concat();
        assert_eq!(response_head(&big[..HEAD_MAX - 1]), Head::Incomplete);
        assert_eq!(response_head(&big[..HEAD_MAX]), Head::Invalid);
    }

    #[test]
    fn the_request_always_carries_a_host() {
        let addr: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        let mut check = HealthCheck::new(CheckKind::Http);
        check.path = "/health".into();
        let spec = Spec::new(&check, addr, None);
        let text = String::from_utf8(spec.request.to_vec()).unwrap();
        assert!(text.starts_with("GET /health HTTP/1.1\r\nHost: 10.0.0.1:8080\r\n"));
        check.host = Some("web.example".into());
        let text = String::from_utf8(Spec::new(&check, addr, None).request.to_vec()).unwrap();
        assert!(text.contains("\r\nHost: web.example\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    /// Behind `send_proxy`, a check starts with a header the backend's parser takes as
    /// the proxy's own connection: v1 UNKNOWN, v2 LOCAL.
    #[test]
    fn checks_of_a_send_proxy_service_send_a_local_header_first() {
        let addr: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        let http = HealthCheck::new(CheckKind::Http);
        let v1 = Spec::new(&http, addr, Some(SendProxy::V1)).request;
        assert!(v1.starts_with(b"PROXY UNKNOWN\r\nGET / HTTP/1.1\r\n"));
        let tcp = HealthCheck::new(CheckKind::Tcp);
        assert!(Spec::new(&tcp, addr, None).request.is_empty());
        let v2 = Spec::new(&tcp, addr, Some(SendProxy::V2)).request;
        match crate::proxy::parse(&v2) {
            crate::proxy::Parsed::Header(h) => {
                assert_eq!(h.consumed, v2.len());
                assert_eq!(h.command, crate::proxy::Command::Local);
            }
            other => panic!("{other:?}"),
        }
    }
}
