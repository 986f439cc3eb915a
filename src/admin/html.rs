//! `/haproxy?stats`: the statistics as a page a person can read.

use super::csv::server_name;
use crate::snapshot::{clock_ms, Snapshot};
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn render(snap: &Snapshot, rates: &super::rates::Rates) -> String {
    let now = clock_ms();
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>sluice statistics</title>\
         <meta http-equiv=\"refresh\" content=\"5\"><style>\
         body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;margin-bottom:1.5em}\
         th,td{border:1px solid #bbb;padding:2px 8px;text-align:right}th{background:#eee}\
         td.name{text-align:left}tr.UP td.st{background:#c8f0c8}tr.DOWN td.st{background:#f4c0c0}\
         tr.DRAIN td.st{background:#c0d8f4}tr.front{background:#f6f6f6}\
         </style></head><body><h1>sluice statistics</h1>",
    );
    let _ = write!(out, "<p>Configuration generation {}. CSV: <a href=\"?stats;csv\">;csv</a>, Prometheus: <a href=\"/metrics\">/metrics</a>.</p>", snap.generation);
    for svc in &snap.services {
        let c = &svc.counters;
        let _ = write!(
            out,
            "<h2>{} <small>({}, {:?}, {:?})</small></h2><table><tr><th>server</th><th>status</th><th>current sessions</th>\
             <th>total sessions</th><th>sessions/s</th><th>bytes in</th><th>bytes out</th><th>connect errors</th><th>refused</th></tr>",
            esc(&svc.config.name),
            svc.local.map_or_else(|| "routed by [http] listen".to_owned(), |l| l.to_string()),
            svc.config.mode,
            svc.config.balance
        );
        let _ = write!(
            out,
            "<tr class=\"front\"><td class=\"name\">FRONTEND</td><td class=\"st\">OPEN</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td></td><td>{}</td></tr>",
            c.iter().map(|s| s.active.get()).sum::<i64>().max(0),
            c.sum(|s| s.accepted.get()),
            rates.get(&svc.config.name),
            c.sum(|s| s.bytes_in.get()),
            c.sum(|s| s.bytes_out.get()),
            c.sum(|s| s.refused_limit.get() + s.no_backend.get()),
        );
        for (i, b) in svc.backends.iter().enumerate() {
            let bc = &b.counters;
            let status = if svc.draining[i] {
                "DRAIN"
            } else if b.is_up(now) {
                "UP"
            } else {
                "DOWN"
            };
            let _ = write!(
                out,
                "<tr class=\"{status}\"><td class=\"name\">{} <small>{}</small></td><td class=\"st\">{status}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td></td></tr>",
                server_name(b.addr),
                b.addr,
                bc.active(),
                bc.sum(|x| x.connections.get()),
                rates.get(&super::rates::backend_key(&svc.config.name, b.addr)),
                bc.sum(|x| x.bytes_in.get()),
                bc.sum(|x| x.bytes_out.get()),
                bc.sum(|x| x.connect_errors.get()),
            );
        }
        out.push_str("</table>");
        if svc.config.mode == crate::config::Mode::Http {
            let class = |i: usize| c.sum(|s| s.responses[i].get());
            let _ = write!(
                out,
                "<p>HTTP responses: 1xx {} · 2xx {} · 3xx {} · 4xx {} · 5xx {} · other {}",
                class(1),
                class(2),
                class(3),
                class(4),
                class(5),
                class(0)
            );
            if let Some([p50, p90, p99, p999, max]) = super::response_percentiles(svc) {
                let ms = |us: u64| us as f64 / 1000.0;
                let _ = write!(
                    out,
                    "; response time p50 {:.2} ms · p90 {:.2} ms · p99 {:.2} ms · p99.9 {:.2} ms · max {:.2} ms",
                    ms(p50),
                    ms(p90),
                    ms(p99),
                    ms(p999),
                    ms(max)
                );
            }
            out.push_str("</p>");
        }
    }
    out.push_str("</body></html>\n");
    out
}
