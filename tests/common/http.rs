//! An HTTP/1.1 test backend that records what it sees: every request (method, path,
//! head, body) and every connection, so tests can check what sluice sent and how
//! often it reused a connection.

use super::Backend;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The head, lower-cased, lines joined with `\n`.
    pub head: String,
    pub body: Vec<u8>,
}

pub struct HttpServer {
    pub backend: Backend,
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
}

impl HttpServer {
    /// Answers `GET /…` with its `name`; see [`respond`] for the special paths.
    pub fn start(name: &'static str) -> HttpServer {
        HttpServer::start_at("127.0.0.1", name)
    }

    /// [`HttpServer::start`] on another loopback address (see [`Backend::spawn_at`]).
    pub fn start_at(ip: &str, name: &'static str) -> HttpServer {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (s, c) = (Arc::clone(&seen), Arc::clone(&connections));
        let backend = Backend::spawn_at(ip, move |conn| {
            c.fetch_add(1, Ordering::Relaxed);
            serve(conn, name, &s);
        });
        HttpServer {
            addr: backend.addr,
            backend,
            seen,
            connections,
        }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

fn read_more(c: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match c.read(&mut chunk) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Read a chunked body from the front of `buf` (reading more as needed); returns the
/// decoded body and removes the framing from `buf`.
fn read_chunked(c: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            if !read_more(c, buf) {
                return None;
            }
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).to_string();
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers up to the empty line.
            loop {
                if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                    buf.drain(..p + 2);
                    if p == 0 {
                        return Some(body);
                    }
                } else if !read_more(c, buf) {
                    return None;
                }
            }
        }
        while buf.len() < size + 2 {
            if !read_more(c, buf) {
                return None;
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

fn serve(mut c: TcpStream, name: &str, seen: &Mutex<Vec<Seen>>) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            if !read_more(&mut c, &mut buf) {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end + 4);
        let mut first = head.lines().next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_uppercase();
        let path = first.next().unwrap_or("").to_owned();
        let header = |k: &str| {
            head.lines().skip(1).find_map(|l| {
                l.strip_prefix(&format!("{k}:"))
                    .map(|v| v.trim().to_owned())
            })
        };
        if header("expect").as_deref() == Some("100-continue") {
            let _ = c.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let body = if header("transfer-encoding").is_some() {
            match read_chunked(&mut c, &mut buf) {
                Some(b) => b,
                None => return,
            }
        } else {
            let n: usize = header("content-length").map_or(0, |v| v.parse().unwrap_or(0));
            while buf.len() < n {
                if !read_more(&mut c, &mut buf) {
                    return;
                }
            }
            buf.drain(..n).collect()
        };
        seen.lock().unwrap().push(Seen {
            method: method.clone(),
            path: path.clone(),
            head: head.clone(),
            body: body.clone(),
        });
        if !respond(&mut c, name, &method, &path, &head, &body) {
            return;
        }
        if header("connection").as_deref() == Some("close") {
            return;
        }
    }
}

/// `CONNECT` answers 200 and echoes raw bytes. Special paths: `/echo` answers the body, `/headers` the request head, `/slow`
/// answers after 3 s, `/bytes?n=N` with N bytes of [`pattern`], `/chunked` in chunks, `/close` without a length (then closes),
/// `/ws` with `Upgrade` switches protocols and echoes raw bytes. Returns whether the
/// connection stays open.
fn respond(
    c: &mut TcpStream,
    name: &str,
    method: &str,
    path: &str,
    head: &str,
    body: &[u8],
) -> bool {
    let plain = |c: &mut TcpStream, body: &[u8]| {
        let h = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        c.write_all(h.as_bytes()).is_ok() && (method == "HEAD" || c.write_all(body).is_ok())
    };
    if method == "CONNECT" {
        if c.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut r = c.try_clone().unwrap();
        let _ = std::io::copy(&mut r, c);
        return false;
    }
    if let Some(n) = path.strip_prefix("/bytes?n=") {
        return plain(c, &pattern(n.parse().unwrap_or(0)));
    }
    match path {
        "/echo" => plain(c, body),
        "/headers" => plain(c, head.as_bytes()),
        "/slow" => {
            std::thread::sleep(Duration::from_secs(3));
            plain(c, name.as_bytes())
        }
        "/chunked" => c
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n2\r\nbc\r\n0\r\n\r\n")
            .is_ok(),
        "/close" => {
            let _ = c.write_all(format!("HTTP/1.1 200 OK\r\n\r\n{name}-until-close").as_bytes());
            false
        }
        "/ws" if head.contains("upgrade: websocket") => {
            if c
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                .is_err()
            {
                return false;
            }
            let mut r = c.try_clone().unwrap();
            let _ = std::io::copy(&mut r, c);
            false
        }
        _ => plain(c, name.as_bytes()),
    }
}

/// `n` bytes a client can check: byte `i` is `i % 251`.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Send raw bytes, read until the peer closes (bounded by `PATIENCE`).
pub fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(super::PATIENCE)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in `text`.
pub fn status(text: &str) -> u16 {
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `curl` with `args`; returns stdout (and panics with stderr when curl fails).
pub fn curl_bytes(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// [`curl_bytes`] as text.
pub fn curl(args: &[&str]) -> String {
    String::from_utf8_lossy(&curl_bytes(args)).into_owned()
}

/// `wrk` with `args` (threads, connections, duration, URL, …): asserts that it ran and
/// saw no error status or socket error; returns its report and the requests it
/// completed.
pub fn wrk(args: &[&str]) -> (String, usize) {
    let out = std::process::Command::new("wrk")
        .args(args)
        .output()
        .expect("wrk is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "{text}"
    );
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's report:\n{text}"));
    (text, requests)
}
