//! The admin port: HAProxy-compatible stats (`/haproxy?stats;csv`), Prometheus
//! metrics (`/metrics`) and a health check, served from a thread of its own. Nothing
//! here touches the shards: it reads the published snapshot and the counters.

mod csv;
mod html;
mod json;
mod metrics;
mod rates;

use crate::snapshot::Published;
use crate::stats::{PerShard, ShardCounters};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// What the admin pages read.
#[derive(Clone)]
pub struct View {
    pub published: Arc<Published>,
    pub shards: Arc<PerShard<ShardCounters>>,
    pub control: Arc<crate::control::ControlCounters>,
    /// Asks for a Marathon re-fetch.
    pub hup: crossbeam::channel::Sender<()>,
}

/// Bind the admin port and serve it from a new thread; returns the bound address.
pub fn start(addr: SocketAddr, view: View) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let rates = rates::spawn(Arc::clone(&view.published))?;
    std::thread::Builder::new()
        .name("sluice-admin".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(c) => serve(c, &view, &rates),
                    // Out of descriptors: wait rather than spin.
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })?;
    Ok(local)
}

/// The largest request head the admin port reads.
const MAX_HEAD: usize = 8192;

/// One request per connection; a slow or bad client costs this thread at most the
/// read timeout, never the data plane.
fn serve(mut c: TcpStream, view: &View, rates: &rates::Rates) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = c.set_write_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return respond(&mut c, 431, "text/plain", "request head too large\n");
        }
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let (status, kind, body) = route(&head, view, rates);
    respond(&mut c, status, kind, &body);
}

/// Pick the page for a request head: (status, content type, body).
fn route(head: &[u8], view: &View, rates: &rates::Rates) -> (u16, &'static str, String) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let (method, path) = match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => (req.method.unwrap_or(""), req.path.unwrap_or("")),
        _ => return (400, "text/plain", "bad request\n".into()),
    };
    if method != "GET" && method != "HEAD" {
        return (405, "text/plain", "only GET\n".into());
    }
    match path {
        "/_haproxy_health_check" => (200, "text/plain", "OK\n".into()),
        "/_mlb_signal/hup" => {
            // A full channel means a re-fetch is already pending: same outcome.
            let _ = view.hup.try_send(());
            (200, "text/plain", "re-fetching from Marathon\n".into())
        }
        "/_haproxy_getconfig" => (
            200,
            "application/json",
            json::config(&view.published.load()),
        ),
        "/v1/vips" => (200, "application/json", json::vips(&view.published.load())),
        "/haproxy?stats" | "/haproxy?stats;norefresh" => (
            200,
            "text/html; charset=utf-8",
            html::render(&view.published.load(), rates),
        ),
        "/haproxy?stats;csv" | "/haproxy?stats;csv;norefresh" => {
            (200, "text/csv", csv::render(&view.published.load(), rates))
        }
        "/metrics" => (
            200,
            "text/plain; version=0.0.4",
            metrics::render(&view.published.load(), &view.shards, &view.control),
        ),
        _ => (404, "text/plain", "not found\n".into()),
    }
}

fn respond(c: &mut TcpStream, status: u16, kind: &str, body: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = c.write_all(head.as_bytes());
    let _ = c.write_all(body.as_bytes());
}

/// An HTTP service's response-time percentiles in µs (p50, p90, p99, p99.9, max),
/// merged over the shards' published HdrHistograms; `None` before any response.
fn response_percentiles(svc: &crate::snapshot::Service) -> Option<[u64; 5]> {
    let mut merged = crate::dataplane::latency::histogram();
    for shard in svc.counters.iter() {
        if let Some(h) = shard.response_hdr.load_full() {
            let _ = merged.add(&*h);
        }
    }
    if merged.is_empty() {
        return None;
    }
    let q = |p: f64| merged.value_at_quantile(p);
    Some([q(0.5), q(0.9), q(0.99), q(0.999), merged.max()])
}
