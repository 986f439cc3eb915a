//! `sluice bench`: the load generator. HTTP/1.1 requests over new or persistent
//! connections, in clear text or over TLS (`--tls`), closed-loop or at a fixed rate
//! (with coordinated-omission correction), spread over many source addresses; latency
//! in an HdrHistogram.

mod client;
pub mod http;
mod report;
mod tally;
pub mod tls;

use client::{Plan, Worker};
pub use report::{render, Report};
use serde::Serialize;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally::{Live, Tally};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchMode {
    /// A new TCP connection per request (`Connection: close`).
    Close,
    /// Requests over persistent connections.
    Keepalive,
    /// Large responses (or uploads with --request-bytes) over persistent connections,
    /// reported in Gbit/s.
    Bulk,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Where to send requests.
    #[arg(long)]
    pub target: SocketAddr,
    #[arg(long, value_enum, default_value_t = BenchMode::Keepalive)]
    pub mode: BenchMode,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// How long to run: `10s`, `500ms`, `2m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Requests per second over all connections (open loop); without it, closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Load generator threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Source addresses to spread connections over: `127.0.0.2-127.0.0.60`, or a
    /// comma-separated list.
    #[arg(long, value_parser = parse_ips)]
    pub source_ips: Option<IpList>,
    /// Request body bytes (a POST); 0 sends a GET.
    #[arg(long, default_value_t = 0)]
    pub request_bytes: usize,
    /// Request path.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// The Host header (a vhost of an HTTP service); default: the target address.
    #[arg(long)]
    pub host: Option<String>,
    /// Per-request timeout.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print one JSON object instead of text (and no progress lines: those are shown
    /// only when stdout and stderr are both terminals).
    #[arg(long)]
    pub json: bool,
    #[command(flatten, next_help_heading = "TLS")]
    pub tls: tls::TlsArgs,
}

/// A list of source addresses.
#[derive(Debug, Clone)]
pub struct IpList(pub Vec<IpAddr>);

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (use ms, s or m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

pub fn parse_ips(s: &str) -> Result<IpList, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a.trim().parse().map_err(|_| format!("bad address {a:?}"))?;
            let b: Ipv4Addr = b.trim().parse().map_err(|_| format!("bad address {b:?}"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 65_536 {
                return Err(format!("bad address range {part:?}"));
            }
            out.extend((a..=b).map(|x| IpAddr::V4(Ipv4Addr::from(x))));
        } else {
            out.push(part.parse().map_err(|_| format!("bad address {part:?}"))?);
        }
    }
    Ok(IpList(out))
}

fn request(args: &BenchArgs) -> Vec<u8> {
    let host = args.host.clone().unwrap_or_else(|| args.target.to_string());
    let conn = match args.mode {
        BenchMode::Close => "Connection: close\r\n",
        _ => "",
    };
    let mut r = if args.request_bytes > 0 {
        format!(
            "POST {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sluice-bench\r\n{conn}Content-Length: {}\r\n\r\n",
            args.path, args.request_bytes
        )
        .into_bytes()
    } else {
        format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sluice-bench\r\n{conn}\r\n",
            args.path
        )
        .into_bytes()
    };
    r.resize(r.len() + args.request_bytes, b'x');
    r
}

/// Run the load and return the figures.
pub fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, args.connections);
    if let Some(r) = args.rate {
        anyhow::ensure!(r > 0.0, "--rate must be positive");
    }
    let start = Instant::now() + Duration::from_millis(20);
    let plan = Arc::new(Plan {
        target: args.target,
        request: request(args),
        keep_alive: args.mode != BenchMode::Close,
        source_ips: args.source_ips.clone().map(|l| l.0).unwrap_or_default(),
        interval: args
            .rate
            .map(|r| Duration::from_secs_f64(args.connections as f64 / r)),
        timeout: args.timeout,
        start,
        end: start + args.duration,
        tls: match args.tls.enabled {
            true => Some(tls::TlsPlan::new(
                &args.tls,
                args.host.as_deref(),
                args.target,
            )?),
            false => None,
        },
    });
    let mut handles = Vec::with_capacity(threads);
    let mut live = Vec::with_capacity(threads);
    let mut first = 0;
    for t in 0..threads {
        let n = args.connections / threads + usize::from(t < args.connections % threads);
        live.push(Arc::new(Live::default()));
        let w = Worker::new(
            Arc::clone(&plan),
            n,
            first,
            args.connections,
            Arc::clone(&live[t]),
        )?;
        first += n;
        handles.push(
            std::thread::Builder::new()
                .name(format!("bench-{t}"))
                .spawn(move || w.run())?,
        );
    }
    if !args.json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
        progress(&plan, &live);
    }
    let mut tally = Tally::new();
    for h in handles {
        tally.merge(
            &h.join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))?,
        );
    }
    Ok(report::build(args, &plan, threads, tally))
}

/// One line on stderr each second of the run: requests and errors so far, and the
/// rate over the last second (the threads' totals are at most 100 ms old).
fn progress(plan: &Plan, live: &[Arc<Live>]) {
    let sum = |f: fn(&Live) -> u64| live.iter().map(|l| f(l)).sum::<u64>();
    let mut before = 0;
    for second in 1.. {
        let at = plan.start + Duration::from_secs(second);
        if at >= plan.end {
            return;
        }
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let requests = sum(|l| l.requests.load(Ordering::Relaxed));
        let errors = sum(|l| l.errors.load(Ordering::Relaxed));
        eprintln!(
            "{second:>4} s  requests {requests:>10}  rate {:>9}/s  errors {errors}",
            requests - before
        );
        before = requests;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3h").is_err());
    }

    #[test]
    fn ip_ranges() {
        let l = parse_ips("127.0.0.2-127.0.0.4,127.0.0.9").unwrap().0;
        let want: Vec<IpAddr> = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.9"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(l, want);
        assert!(parse_ips("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_ips("localhost").is_err());
    }
}
