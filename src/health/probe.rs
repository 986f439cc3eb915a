//! One check in flight: a non-blocking connect and, for HTTP, one request and the
//! status line of its response. Driven by the health thread's mio loop; the response
//! parsing is pure.

use super::state::{CheckResult, CheckStatus};
use crate::config::{CheckKind, HealthCheck, SendProxy};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;

/// The most bytes read looking for the status line.
const STATUS_LINE_MAX: usize = 1024;

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

/// The status line so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusLine {
    Incomplete,
    Code(u16),
    Invalid,
}

/// The status code of `buf`'s first line (`HTTP/1.x NNN ...`).
pub fn status_line(buf: &[u8]) -> StatusLine {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= STATUS_LINE_MAX || !b"HTTP/1.".starts_with(&buf[..buf.len().min(7)])
        {
            StatusLine::Invalid
        } else {
            StatusLine::Incomplete
        };
    };
    let line = &buf[..end];
    let ok = line.len() >= 12
        && line.starts_with(b"HTTP/1.")
        && line[7].is_ascii_digit()
        && line[8] == b' '
        && line[9..12].iter().all(u8::is_ascii_digit)
        && line.get(12).map_or(true, |&b| b == b' ' || b == b'\r');
    if !ok {
        return StatusLine::Invalid;
    }
    let code = line[9..12]
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    if (100..=599).contains(&code) {
        StatusLine::Code(code)
    } else {
        StatusLine::Invalid
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
        let tcp = spec.check.kind == CheckKind::Tcp;
        while self.sent < spec.request.len() {
            match self.stream.write(&spec.request[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) if tcp => return result(CheckStatus::L4CON, None),
                Err(_) => return result(CheckStatus::L7RSP, None),
            }
        }
        if tcp {
            return result(CheckStatus::L4OK, None);
        }
        let mut chunk = [0u8; 512];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return result(CheckStatus::L7RSP, None),
                Ok(n) => {
                    let room = STATUS_LINE_MAX.saturating_sub(self.buf.len());
                    self.buf.extend_from_slice(&chunk[..n.min(room)]);
                    match status_line(&self.buf) {
                        StatusLine::Incomplete => {}
                        StatusLine::Invalid => return result(CheckStatus::L7RSP, None),
                        StatusLine::Code(c) => {
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
                Err(_) => return result(CheckStatus::L7RSP, None),
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
    fn status_lines() {
        assert_eq!(status_line(b"HTTP/1.1 200 OK\r\n"), StatusLine::Code(200));
        assert_eq!(status_line(b"HTTP/1.0 503\r\n"), StatusLine::Code(503));
        assert_eq!(
            status_line(b"HTTP/1.1 204 No Content\n"),
            StatusLine::Code(204)
        );
        assert_eq!(status_line(b"HTTP/1.1 20"), StatusLine::Incomplete);
        assert_eq!(status_line(b"HTT"), StatusLine::Incomplete);
        assert_eq!(status_line(b"SSH-2.0-OpenSSH"), StatusLine::Invalid);
        assert_eq!(status_line(b"HTTP/1.1 2000 OK\r\n"), StatusLine::Invalid);
        assert_eq!(status_line(b"HTTP/1.1 099 x\r\n"), StatusLine::Invalid);
        assert_eq!(status_line(&[b'H'; 10]), StatusLine::Invalid);
        let long = [b"HTTP/1.1 ".as_slice(), &[b'2'; 2000]].concat();
        assert_eq!(status_line(&long), StatusLine::Invalid);
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
