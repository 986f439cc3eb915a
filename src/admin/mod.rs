//! The admin port: HAProxy-compatible stats (`/haproxy?stats;csv`), Prometheus
//! metrics (`/metrics`) and a health check, served from a thread of its own. Nothing
//! here touches the shards: it reads the published snapshot and the counters.
//!
//! `server.rs` holds the connections (bounded, with deadlines); `guard.rs` decides who
//! may ask (the bearer token, cross-site requests); this file picks the page.

mod actions;
mod chart;
mod csv;
mod figures;
mod guard;
mod html;
mod json;
mod metrics;
mod metrics_health;
mod metrics_tls;
mod query;
mod rates;
mod server;
#[cfg(test)]
mod testkit;

pub use server::{
    AdminCounters, Stop, HEAD_DEADLINE, MAX_CONNECTIONS, MAX_HEAD, RESPONSE_DEADLINE,
};

use crate::snapshot::Published;
use crate::stats::{PerShard, ShardCounters};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

/// What the admin pages read.
#[derive(Clone)]
pub struct View {
    pub published: Arc<Published>,
    pub shards: Arc<PerShard<ShardCounters>>,
    pub control: Arc<crate::stats::ControlCounters>,
    /// Asks for a Marathon re-fetch.
    pub hup: crossbeam::channel::Sender<()>,
    /// When set, every page but the health check needs the token (`Authorization:
    /// Bearer <token>`, or Basic with the token as the password).
    pub token: Option<String>,
    pub process: Process,
    /// Whether services come from Marathon too (the page then says how that goes).
    pub marathon: bool,
    /// The anycast VIPs' verdicts (`/v1/anycast`).
    pub anycast: Arc<crate::anycast::Board>,
    /// The processes serving (`/_haproxy_getpids`), and whether this one handed its
    /// sockets over.
    pub processes: Arc<crate::stats::processes::Processes>,
}

/// What the stats page says about the process: settings fixed at start.
#[derive(Debug, Clone, Copy)]
pub struct Process {
    /// When the process started, in ms on the process clock.
    pub started_ms: u64,
    /// Shard threads.
    pub workers: usize,
    /// The shards' event loop: `io_uring` or `epoll`.
    pub event_loop: &'static str,
    pub max_connections: u32,
}

/// Serve the admin port on `listener` (from [`bind`], or handed over by the process
/// this one replaces) from a new thread; returns the bound address and the handle
/// that stops it accepting.
pub fn start(listener: TcpListener, view: View) -> std::io::Result<(SocketAddr, Stop)> {
    let local = listener.local_addr()?;
    let history = rates::spawn(Arc::clone(&view.published))?;
    let pages = Pages {
        view,
        history,
        counters: AdminCounters::default(),
    };
    let server = server::Server::new(listener, pages)?;
    let stop = server.stopper();
    std::thread::Builder::new()
        .name("sluice-admin".into())
        .spawn(move || server.run())?;
    Ok((local, stop))
}

/// The admin port's socket. IPv6 only on an IPv6 address, as the services' sockets
/// are: `[::]:P` leaves `0.0.0.0:P` free, as `sluice check` assumes.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// An answer: status, content type, extra header lines, body.
pub struct Page {
    status: u16,
    kind: &'static str,
    /// Extra header lines, each ending in `\r\n`.
    headers: &'static str,
    body: String,
    /// A HEAD request: the head alone.
    head_only: bool,
}

impl Page {
    fn new(status: u16, kind: &'static str, body: String) -> Page {
        Page {
            status,
            kind,
            headers: "",
            body,
            head_only: false,
        }
    }

    fn text(status: u16, body: &str) -> Page {
        Page::new(status, "text/plain", body.to_owned())
    }

    fn with_headers(mut self, headers: &'static str) -> Page {
        self.headers = headers;
        self
    }

    fn into_bytes(self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            303 => "See Other",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            411 => "Length Required",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
            self.status,
            self.kind,
            self.body.len(),
            self.headers,
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

struct Pages {
    view: View,
    history: Arc<rates::History>,
    counters: AdminCounters,
}

impl server::Answer for Pages {
    fn answer(&self, request: &[u8], local: SocketAddr) -> Page {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(head)) = req.parse(request) else {
            return Page::text(400, "bad request\n");
        };
        let method = req.method.unwrap_or("");
        let path = req.path.unwrap_or("");
        let body = &request[head..];
        let mut page = self.route(method, path, req.headers, body, local);
        page.head_only = method == "HEAD";
        page
    }

    fn counters(&self) -> &AdminCounters {
        &self.counters
    }
}

/// Pages that change state: refused to cross-site requests.
const SIGNALS: [&str; 1] = ["/_mlb_signal/hup"];
/// What upstream balancers poll: the one page open without the token.
const HEALTH_CHECK: &str = "/_haproxy_health_check";

impl Pages {
    /// Pick the page for a parsed request.
    fn route(
        &self,
        method: &str,
        path: &str,
        headers: &[httparse::Header],
        body: &[u8],
        local: SocketAddr,
    ) -> Page {
        let view = &self.view;
        if path != HEALTH_CHECK {
            if let Some(token) = &view.token {
                if !guard::token_matches(headers, token) {
                    self.counters.denied.inc();
                    // Basic first: a browser asks for it (any user, the token as the
                    // password); scripts send the token as a bearer token.
                    return Page::text(401, "this admin port needs its token\n").with_headers(
                        "WWW-Authenticate: Basic realm=\"sluice admin\", Bearer realm=\"sluice admin\"\r\n",
                    );
                }
            }
        }
        let stats = query::parse(path).is_some();
        if method == "POST" && stats {
            return self.admin_action(headers, body, local);
        }
        if method != "GET" && method != "HEAD" {
            let allow = if stats {
                "Allow: GET, HEAD, POST\r\n"
            } else {
                "Allow: GET, HEAD\r\n"
            };
            return Page::text(405, "only GET\n").with_headers(allow);
        }
        if SIGNALS.contains(&path) {
            if let Err(why) = guard::same_origin(headers, local) {
                self.counters.denied.inc();
                tracing::debug!(path, reason = why, "admin port: cross-site request refused");
                return Page::text(403, "cross-site requests may not signal\n");
            }
        }
        match path {
            // Shutting down: upstream balancers stop sending before the listeners go.
            // A process that handed its sockets to a successor drains, but the host
            // goes on serving; one leaving anycast says so before it drains.
            HEALTH_CHECK
                if (view.published.load().draining && !view.processes.handed_over())
                    || view.anycast.leaving() =>
            {
                Page::text(503, "draining\n")
            }
            HEALTH_CHECK => Page::text(200, "OK\n"),
            "/_mlb_signal/hup" if view.marathon => {
                // A full channel means a re-fetch is already pending: same outcome.
                let _ = view.hup.try_send(());
                Page::text(200, "re-fetching from Marathon\n")
            }
            "/_mlb_signal/hup" => {
                // No Marathon to re-fetch from: reload the file, as SIGHUP does.
                match signal_hook::low_level::raise(signal_hook::consts::SIGHUP) {
                    Ok(()) => Page::text(200, "reloading the configuration file\n"),
                    Err(_) => Page::text(500, "could not signal a reload\n"),
                }
            }
            "/_haproxy_getconfig" => Page::new(
                200,
                "application/json",
                json::config(&view.published.load()),
            ),
            "/v1/anycast" => match view.anycast.json() {
                Some(body) => Page::new(200, "application/json", body),
                None => Page::text(503, "anycast: the first check is not done yet\n"),
            },
            // Marathon-LB's: what a deploy waits on while a reload or an upgrade runs.
            "/_haproxy_getpids" => {
                Page::new(200, "application/json", json::pids(&view.processes.pids()))
            }
            "/v1/vips" => Page::new(200, "application/json", json::vips(&view.published.load())),
            _ if path.starts_with("/haproxy?") => match query::parse(path) {
                Some(q) => self.stats(&q),
                None => Page::text(404, "not found\n"),
            },
            "/metrics" => {
                let mut body = metrics::render(
                    &view.published.load(),
                    &view.shards,
                    &view.control,
                    &self.counters,
                );
                metrics::anycast(&mut body, &view.anycast);
                Page::new(200, "text/plain; version=0.0.4", body)
            }
            _ => Page::text(404, "not found\n"),
        }
    }
}

impl Pages {
    /// A stats page admin action (`POST /haproxy?stats`, see `actions.rs`): refused
    /// to cross-site requests, as the signals are.
    fn admin_action(&self, headers: &[httparse::Header], body: &[u8], local: SocketAddr) -> Page {
        if let Err(why) = guard::same_origin(headers, local) {
            self.counters.denied.inc();
            tracing::debug!(reason = why, "admin port: cross-site action refused");
            return Page::text(403, "cross-site requests may not change a backend\n");
        }
        let (outcome, line) = actions::apply(&self.view.published.load(), body);
        Page::new(303, "text/plain", line).with_headers(outcome.location())
    }

    /// `/haproxy?stats` in the format asked for.
    fn stats(&self, q: &query::StatsQuery) -> Page {
        let snap = self.view.published.load();
        let tracks = self.history.read();
        let now = crate::snapshot::clock_ms();
        if q.format == query::Format::Csv {
            // HAProxy's CSV lists everything, whatever the page's settings.
            return Page::new(200, "text/csv", csv::render(&snap, &tracks));
        }
        let stats = figures::gather(&self.view, &snap, &tracks, now, &q.filter);
        drop(tracks);
        let total = snap.services.len();
        match q.format {
            query::Format::Json => Page::new(200, "application/json", json::stats(&stats)),
            _ => Page::new(
                200,
                "text/html; charset=utf-8",
                html::render(&stats, q, total),
            )
            .with_headers("Cache-Control: no-store\r\n"),
        }
    }
}

/// An HTTP service's response-time percentiles in µs (p50, p90, p99, p99.9, max),
/// merged over the shards' published HdrHistograms; `None` before any response.
fn response_percentiles(svc: &crate::snapshot::Service) -> Option<[u64; 5]> {
    let mut merged = crate::stats::latency::histogram();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A thousand services: the page, `;json` and `;csv` render whole (summary rows
    /// only on the page unless expanded). Times are printed, not asserted:
    /// `cargo test --release --lib admin::tests -- --nocapture` to read them.
    #[test]
    fn a_thousand_services_render() {
        let view = testkit::view(testkit::many(1000));
        let snap = view.published.load();
        let history = rates::History::default();
        for s in 1..=rates::SECONDS as u64 {
            for svc in &snap.services {
                svc.counters.shard(0).accepted.add(s % 7);
            }
            history.read().sample(&snap, s * 1000);
        }
        let pages = Pages {
            view: view.clone(),
            history: Arc::new(history),
            counters: AdminCounters::default(),
        };
        for (path, services, rows) in [
            ("/haproxy?stats", 1000, 2000),
            ("/haproxy?stats&expand", 1000, 5000),
            ("/haproxy?stats&filter=app-09", 100, 200),
            ("/haproxy?stats&filter=app-099", 10, 50),
        ] {
            let start = Instant::now();
            let page = pages.stats(&query::parse(path).unwrap());
            let took = start.elapsed();
            let body = &page.body;
            eprintln!("{path}: {took:?}, {} bytes", body.len());
            assert_eq!(
                body.matches("<section class=\"svc\"").count(),
                services,
                "{path}"
            );
            assert_eq!(body.matches("<tr class=\"").count(), rows, "{path}");
        }
        let start = Instant::now();
        let json = pages
            .stats(&query::parse("/haproxy?stats;json").unwrap())
            .body;
        eprintln!(";json: {:?}, {} bytes", start.elapsed(), json.len());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["services"].as_array().unwrap().len(), 1000);
        let start = Instant::now();
        let csv = pages
            .stats(&query::parse("/haproxy?stats;csv").unwrap())
            .body;
        eprintln!(";csv: {:?}, {} bytes", start.elapsed(), csv.len());
        assert_eq!(csv.lines().count(), 1 + 5 * 1000);
    }
}
