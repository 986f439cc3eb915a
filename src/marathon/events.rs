//! The Marathon event stream (`/v2/events`, server-sent events): a re-fetch is asked for
//! on task status, health and deployment events, coalesced; the stream is reconnected
//! with jittered backoff and a silent one (no byte, heartbeats included, for
//! `events_silence_ms`) is taken for dead.

use crossbeam::channel::{Sender, TrySendError};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The event types that change what Marathon-LB would serve.
pub const EVENT_TYPES: [&str; 5] = [
    "status_update_event",
    "health_status_changed_event",
    "api_post_event",
    "deployment_success",
    "deployment_step_success",
];

const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// `http://host:port` → (host, port); `None` for other schemes (https: polling only).
fn host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_owned(), p.parse().ok()?)),
        None => Some((authority.to_owned(), 80)),
    }
}

/// Follow the stream of the first URL that answers; on each relevant event, ask the
/// poller for a re-fetch through `wake` (a full channel means one is already pending).
pub fn spawn(
    urls: Vec<String>,
    auth: Option<String>,
    silence: Duration,
    wake: Sender<()>,
) -> std::io::Result<()> {
    std::thread::Builder::new().name("sluice-events".into()).spawn(move || {
        let mut failures = 0u32;
        loop {
            for url in &urls {
                match follow(url, auth.as_deref(), silence, &wake) {
                    Ok(Ended::Closed) => failures = 0,
                    Ok(Ended::PollerGone) => return,
                    Err(e) => {
                        if failures == 0 {
                            tracing::warn!(url, error = %e, "Marathon event stream lost; polling continues");
                        }
                        failures += 1;
                    }
                }
            }
            std::thread::sleep(backoff(failures));
        }
    })?;
    Ok(())
}

enum Ended {
    Closed,
    PollerGone,
}

/// 100 ms doubling to 10 s, with up to half of it added at random so that several
/// balancers do not reconnect in step.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(100)
        .saturating_mul(1 << failures.min(7))
        .min(MAX_BACKOFF);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    base + base.mul_f64(f64::from(nanos % 1000) / 2000.0)
}

/// Read one stream until it ends. HTTP/1.0 is asked for so the body is delimited by
/// the connection's end rather than chunked.
fn follow(
    url: &str,
    auth: Option<&str>,
    silence: Duration,
    wake: &Sender<()>,
) -> std::io::Result<Ended> {
    let (host, port) = host_port(url)
        .ok_or_else(|| std::io::Error::other("only http:// URLs carry the event stream"))?;
    let addr = (host.as_str(), port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(silence))?;
    let query: Vec<String> = EVENT_TYPES
        .iter()
        .map(|t| format!("event_type={t}"))
        .collect();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET /v2/events?{} HTTP/1.0\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n{auth}\r\n",
        query.join("&")
    )?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    if !line.starts_with("HTTP/1.") || line.split_whitespace().nth(1) != Some("200") {
        return Err(std::io::Error::other(format!(
            "event stream answered {:?}",
            line.trim()
        )));
    }
    // Skip the response head.
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(Ended::Closed);
        }
        if line.trim().is_empty() {
            break;
        }
    }
    tracing::info!(url, "following the Marathon event stream");
    let mut event = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(Ended::Closed);
        }
        let l = line.trim_end();
        if let Some(e) = l.strip_prefix("event:") {
            event = e.trim().to_owned();
        } else if l.is_empty() && !event.is_empty() {
            if EVENT_TYPES.contains(&event.as_str()) {
                if let Err(TrySendError::Disconnected(())) = wake.try_send(()) {
                    return Ok(Ended::PollerGone);
                }
            }
            event.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_backoff() {
        assert_eq!(
            host_port("http://127.0.0.1:8080"),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(
            host_port("http://marathon.mesos/"),
            Some(("marathon.mesos".into(), 80))
        );
        assert_eq!(host_port("https://m:8443"), None);
        assert!(
            backoff(0) >= Duration::from_millis(100) && backoff(0) <= Duration::from_millis(150)
        );
        assert!(backoff(30) >= MAX_BACKOFF && backoff(30) <= MAX_BACKOFF * 3 / 2);
    }
}
