//! `/haproxy?stats`: the statistics as a page a person reads. The process and
//! Marathon at the top, a legend, then per service a title line with its config words
//! and charts of the last five minutes, its FRONTEND row, a row per server and its
//! BACKEND row. Above [`COLLAPSE_OVER`] services only the FRONTEND and BACKEND rows
//! are shown (the filter or `expand` brings the rest back).
//!
//! Each service is a small table of fixed column widths (one `<colgroup>`, so the
//! columns line up under the one header row), in a block the browser lays out only
//! when it scrolls into view (`content-visibility: auto`): refreshing a page of a
//! thousand services costs the browser what the visible ones cost, not a relayout of
//! one table of 60,000 cells.
//!
//! Self-contained: the style and the small script that refreshes the page are in it;
//! nothing is fetched from elsewhere, so it works on a host with no internet.

use super::chart;
use super::figures::{MarathonFigures, ProcessFigures, Row, ServiceFigures, Stats};
use super::query::{self, StatsQuery};
use std::fmt::Write;

/// Above this many services (after the filter), services show their summary rows only.
pub const COLLAPSE_OVER: usize = 50;

/// The columns' widths (px): name, status, sessions (3), sessions/s (2), bytes (2),
/// errors (4), HTTP responses (6), response time (2), weight.
const WIDTHS: [u32; 22] = [
    146, 76, 52, 52, 52, 50, 50, 70, 70, 60, 54, 56, 68, 48, 48, 48, 48, 48, 48, 62, 62, 58,
];

/// The tables' width: the columns' and a pixel for each border.
fn table_width() -> u32 {
    WIDTHS.iter().sum::<u32>() + WIDTHS.len() as u32 + 1
}

pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page for `stats`, whose services are already filtered; `total` is how many
/// there are in all.
pub fn render(stats: &Stats, q: &StatsQuery, total: usize) -> String {
    let shown = stats.services.len();
    let expanded = q.expand || shown <= COLLAPSE_OVER;
    let per_service = if expanded { 8_000 } else { 1_500 };
    let mut out = String::with_capacity(16_384 + shown * per_service);
    head(&mut out, q);
    toolbar(&mut out, q);
    out.push_str("<main id=\"stats\">");
    process(&mut out, &stats.process);
    if let Some(m) = &stats.marathon {
        marathon(&mut out, m);
    }
    counts(&mut out, q, shown, total, expanded);
    table(&mut out, &stats.services, expanded);
    out.push_str("</main>");
    let _ = writeln!(out, "<script>{SCRIPT}</script></body></html>");
    out
}

const STYLE: &str = "\
body{font:13px/1.35 system-ui,sans-serif;margin:0 1em 2em;color:#222}\
header{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ccc;z-index:1}\
h1{font-size:1.3em;margin:0 1em 0 0;display:inline-block}\
.tools{display:inline-flex;gap:1em;align-items:center;flex-wrap:wrap}\
.tools input[type=search]{width:16em;padding:2px 4px}\
.facts dl{display:flex;flex-wrap:wrap;gap:.3em 2em;margin:.6em 0}\
.facts dl div{display:flex;gap:.4em}.facts dt{color:#666}.facts dd{margin:0;font-weight:600}\
.facts h2{font-size:1em;margin:.6em 0 0}\
.warn{color:#b00}.muted{color:#888;font-weight:400}\
.legend{display:flex;flex-wrap:wrap;gap:.3em 1.2em;list-style:none;padding:0;margin:.4em 0}\
table.stats{border-collapse:collapse;table-layout:fixed}\
.stats th,.stats td{border:1px solid #ccc;padding:1px 4px;text-align:right;white-space:nowrap;\
overflow:hidden;text-overflow:ellipsis;box-sizing:border-box}\
.stats td{font-size:12px;font-variant-numeric:tabular-nums}.stats thead th{background:#e8e8e8;font-weight:600}.stats thead tr+tr th{font-weight:400;font-size:12px}\
.stats td.name,.stats th.name{text-align:left}\
section.svc{content-visibility:auto;contain-intrinsic-size:auto 90px;margin-top:.6em}\
.title{display:flex;justify-content:space-between;align-items:center;gap:2em;\
background:#f4f4f4;border:1px solid #ccc;border-bottom:0;padding:3px 4px;font-weight:600}\
.title a{font-size:1.15em;color:#024;text-decoration:none}\
.words{color:#555;font-weight:400;margin-left:.6em}\
.charts{display:flex;gap:1.5em;font-weight:400;color:#555}\
.charts figure{margin:0;display:flex;align-items:center;gap:.5em}\
svg.chart{background:#fafafa;border:1px solid #ddd}\
svg.chart path{fill:none;stroke:#2a6fb0;stroke-width:1.5;stroke-linecap:round;stroke-linejoin:round}\
svg.chart[data-metric=p99] path{stroke:#b05a2a}\
svg.chart .axis{stroke:#ddd}\
tr.frontend td,tr.backend td{background:#f7f7f2;font-weight:600}\
.st{font-weight:600}.st small{font-weight:400}\
.st.UP{background:#b5e7b5}.st.DOWN{background:#f3a0a0}.st.DRAIN{background:#a9c8f5}\
.st.MAINT{background:#d8c7a4}.st.NOCHECK{background:#e4e4e4}.st.OPEN{background:#dfe8f3}\
.legend span.st{padding:0 .5em;border:1px solid #bbb}\
section.svc[hidden]{display:none}";

fn head(out: &mut String, q: &StatsQuery) {
    out.push_str(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>sluice statistics</title>",
    );
    if q.refresh_s > 0 {
        // Without scripts the browser reloads the page; with them, the script
        // replaces the figures in place (keeping the filter box and the scroll).
        let _ = write!(
            out,
            "<noscript><meta http-equiv=\"refresh\" content=\"{}\"></noscript>",
            q.refresh_s
        );
    }
    let w = table_width();
    // The title's padding and side borders make up the 10 px.
    let _ = write!(
        out,
        "<style>{STYLE}table.stats{{width:{w}px}}.title{{width:{}px}}",
        w - 10
    );
    // A fixed layout takes its widths from the first row: every service's table has
    // the same, so their columns line up under the header's.
    for (i, w) in WIDTHS.iter().enumerate() {
        let _ = write!(out, ".svc td:nth-child({}){{width:{w}px}}", i + 1);
    }
    let _ = write!(
        out,
        "</style></head><body data-refresh=\"{}\" data-updates=\"0\">",
        q.refresh_s
    );
}

fn toolbar(out: &mut String, q: &StatsQuery) {
    out.push_str(
        "<header><h1>sluice statistics</h1><form class=\"tools\" method=\"get\" action=\"/haproxy\">\
         <input type=\"hidden\" name=\"stats\" value=\"\">",
    );
    let _ = write!(
        out,
        "<input type=\"search\" id=\"filter\" name=\"filter\" value=\"{}\" placeholder=\"filter services\" autocomplete=\"off\">\
         <input type=\"hidden\" name=\"refresh\" value=\"{}\">",
        esc(&q.filter),
        q.refresh_s
    );
    if q.expand {
        out.push_str("<input type=\"hidden\" name=\"expand\" value=\"1\">");
    }
    out.push_str("<span id=\"refresh\">refresh: ");
    for (i, s) in [2u32, 10, 0].into_iter().enumerate() {
        let label = if s == 0 {
            "off".into()
        } else {
            format!("{s} s")
        };
        if i > 0 {
            out.push_str(" · ");
        }
        if s == q.refresh_s {
            let _ = write!(out, "<b>{label}</b>");
        } else {
            let link = query::link(&StatsQuery {
                refresh_s: s,
                ..q.clone()
            });
            let _ = write!(out, "<a href=\"{}\">{label}</a>", esc(&link));
        }
    }
    out.push_str(
        "</span><span id=\"live\"></span><span><a href=\"/haproxy?stats;csv\">CSV</a> · \
         <a href=\"/haproxy?stats;json\">JSON</a> · <a href=\"/metrics\">metrics</a></span>\
         </form>",
    );
    column_heads(out);
    out.push_str("</header>");
}

/// The one header row of every service's table, kept in view with the toolbar.
fn column_heads(out: &mut String) {
    let _ = write!(
        out,
        "<table class=\"stats\" id=\"columns\"><colgroup>{}</colgroup><thead><tr><th rowspan=\"2\" class=\"name\">service · server</th>\
         <th rowspan=\"2\">status</th><th colspan=\"3\">sessions</th><th colspan=\"2\">sessions/s</th>\
         <th colspan=\"2\">bytes</th><th colspan=\"4\">errors</th><th colspan=\"6\">HTTP responses</th>\
         <th colspan=\"2\">response time</th><th rowspan=\"2\">weight</th></tr>\
         <tr><th>cur</th><th title=\"the most open at once, sampled each second\">max</th>\
         <th>total</th><th>cur</th><th>max</th><th>in</th><th>out</th>\
         <th title=\"connects refused or timed out\">connect</th>\
         <th title=\"connects tried again on another server, requests sent again\">retries</th>\
         <th title=\"clients refused at max_connections\">refused</th>\
         <th title=\"clients no server could take\">no server</th>\
         <th>1xx</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th><th>other</th>\
         <th title=\"over the service's life\">p50</th><th title=\"over the service's life\">p99</th></tr></thead></table>",
        WIDTHS
            .iter()
            .map(|w| format!("<col style=\"width:{w}px\">"))
            .collect::<String>()
    );
}

fn process(out: &mut String, p: &ProcessFigures) {
    let _ = write!(
        out,
        "<section class=\"facts\" id=\"process\"><dl>\
         <div><dt>version</dt><dd id=\"version\">sluice {}</dd></div>\
         <div><dt>pid</dt><dd id=\"pid\">{}</dd></div>\
         <div><dt>uptime</dt><dd id=\"uptime\" data-s=\"{}\">{}</dd></div>\
         <div><dt>workers</dt><dd id=\"workers\" data-workers=\"{}\" data-event-loop=\"{}\">{} × {}</dd></div>\
         <div><dt>connections</dt><dd id=\"connections\" data-cur=\"{}\" data-max=\"{}\">{} <span class=\"muted\">of max {}</span></dd></div>\
         <div><dt>configuration</dt><dd id=\"generation\" data-generation=\"{}\" data-age-s=\"{}\">generation {} \
         <span class=\"muted\">published {} ago, {}</span></dd></div>\
         </dl></section>",
        p.version,
        p.pid,
        p.uptime_s,
        duration(p.uptime_s),
        p.workers,
        p.event_loop,
        p.workers,
        p.event_loop,
        p.connections,
        p.max_connections,
        p.connections,
        p.max_connections,
        p.generation,
        p.generation_age_s,
        p.generation,
        duration(p.generation_age_s),
        utc(p.generation_published_unix),
    );
}

fn marathon(out: &mut String, m: &MarathonFigures) {
    out.push_str("<section class=\"facts\" id=\"marathon\"><h2>Marathon</h2><dl>");
    let _ = match m.last_sync_age_s {
        Some(s) => write!(
            out,
            "<div><dt>last sync</dt><dd id=\"marathon-sync\" data-age-s=\"{s}\">{} ago</dd></div>",
            duration(s)
        ),
        None => write!(
            out,
            "<div><dt>last sync</dt><dd id=\"marathon-sync\" class=\"warn\">none yet</dd></div>"
        ),
    };
    let _ = match (&m.last_error, m.last_error_age_s) {
        (Some(e), Some(s)) => {
            // An error newer than the last good sync means Marathon is failing now.
            let now = !matches!(m.last_sync_age_s, Some(sync) if sync <= s);
            write!(
                out,
                "<div><dt>last error</dt><dd id=\"marathon-error\" data-age-s=\"{s}\"{}>{} <span class=\"muted\">{} ago</span></dd></div>",
                if now { " class=\"warn\"" } else { "" },
                esc(e),
                duration(s)
            )
        }
        _ => write!(
            out,
            "<div><dt>last error</dt><dd id=\"marathon-error\">none</dd></div>"
        ),
    };
    let _ = write!(
        out,
        "<div><dt>seen</dt><dd id=\"marathon-seen\" data-apps=\"{}\" data-tasks=\"{}\">{} apps, {} tasks</dd></div>\
         <div><dt>left out</dt><dd id=\"marathon-left-out\" data-left-out=\"{}\" data-unbound=\"{}\"{}>{} \
         <span class=\"muted\">address or name taken</span>, {} <span class=\"muted\">address cannot be bound</span></dd></div>\
         <div><dt>fetches</dt><dd id=\"marathon-fetches\">{} <span class=\"muted\">{} failed</span></dd></div></dl></section>",
        m.apps,
        m.tasks,
        m.apps,
        m.tasks,
        m.left_out,
        m.unbound,
        if m.left_out + m.unbound > 0 { " class=\"warn\"" } else { "" },
        m.left_out,
        m.unbound,
        m.fetches,
        m.failures,
    );
}

/// How many services are shown, and the legend of server states.
fn counts(out: &mut String, q: &StatsQuery, shown: usize, total: usize, expanded: bool) {
    let _ = write!(
        out,
        "<p id=\"shown\" data-shown=\"{shown}\" data-total=\"{total}\">{shown} of {total} services"
    );
    if !q.filter.is_empty() {
        let _ = write!(out, " matching “{}”", esc(&q.filter));
    }
    if !expanded {
        let link = query::link(&StatsQuery {
            expand: true,
            ..q.clone()
        });
        let _ = write!(
            out,
            "; summary rows only (more than {COLLAPSE_OVER}): filter, or <a href=\"{}\">show every server</a>",
            esc(&link)
        );
    }
    out.push_str(
        "</p><ul class=\"legend\">\
         <li><span class=\"st UP\">UP</span> takes connections</li>\
         <li><span class=\"st DOWN\">DOWN</span> a connect failed: skipped for 5 s</li>\
         <li><span class=\"st DRAIN\">DRAIN</span> no new connections, open ones continue</li>\
         <li><span class=\"st MAINT\">MAINT</span> taken out by hand</li>\
         <li><span class=\"st NOCHECK\">not checked</span> no health information</li></ul>",
    );
}

fn table(out: &mut String, services: &[ServiceFigures], expanded: bool) {
    for s in services {
        service(out, s, expanded);
    }
}

fn service(out: &mut String, s: &ServiceFigures, expanded: bool) {
    let name = esc(&s.name);
    let link = query::link(&StatsQuery {
        format: query::Format::Html,
        refresh_s: query::DEFAULT_REFRESH_S,
        filter: s.name.to_lowercase(),
        expand: false,
    });
    let _ = write!(
        out,
        "<section class=\"svc\" data-service=\"{name}\" data-mode=\"{}\"><div class=\"title\">\
         <div><a href=\"{}\">{name}</a><span class=\"words\">{} · {}{} · {}</span></div>",
        s.mode,
        esc(&link),
        s.mode,
        s.balance,
        s.hash
            .as_ref()
            .map_or(String::new(), |h| format!(" · hash {}", esc(h))),
        s.listen.as_deref().unwrap_or("routed by [http] listen"),
    );
    if expanded {
        charts(out, s);
    }
    out.push_str("</div><table class=\"stats\">");
    row(out, &s.frontend, "frontend");
    if expanded {
        for r in &s.servers {
            row(out, r, "server");
        }
    }
    row(out, &s.backend, "backend");
    out.push_str("</table></section>");
}

fn charts(out: &mut String, s: &ServiceFigures) {
    let h = &s.history;
    let now = h.sessions_per_s.last().copied().unwrap_or(0);
    let max = h.sessions_per_s.iter().copied().max().unwrap_or(0);
    let label = format!("sessions/s, last 5 min: now {now}, max {max}");
    out.push_str("<div class=\"charts\"><figure>");
    let points = h
        .age_s
        .iter()
        .zip(&h.sessions_per_s)
        .map(|(&a, &v)| (a, Some(f64::from(v))));
    chart::line(out, "sessions", &label, points);
    let _ = write!(
        out,
        "<figcaption>sessions/s <b>{now}</b> max {max}</figcaption></figure>"
    );
    if let Some(p99) = &h.p99_ms {
        let last = p99.iter().rev().find_map(|v| *v);
        let max = p99.iter().filter_map(|v| *v).fold(0.0, f64::max);
        let label = format!("p99 response time by second, last 5 min: max {max:.1} ms");
        out.push_str("<figure>");
        chart::line(
            out,
            "p99",
            &label,
            h.age_s.iter().copied().zip(p99.iter().copied()),
        );
        let _ = write!(
            out,
            "<figcaption>p99 <b>{}</b> max {max:.1} ms</figcaption></figure>",
            last.map_or("–".into(), |v| format!("{v:.1} ms"))
        );
    }
    out.push_str("</div>");
}

fn row(out: &mut String, r: &Row, kind: &str) {
    let status = match (kind, r.act, r.servers) {
        ("backend", Some(up), Some(n)) => format!("{} <small>{up}/{n}</small>", r.status),
        _ => match r.lastchg {
            Some(s) => format!("{} <small>{}</small>", r.status, duration(s)),
            None => r.status.to_owned(),
        },
    };
    let name = match &r.addr {
        Some(a) => format!(
            "<td class=\"name\" title=\"{}\">{}</td>",
            esc(a),
            esc(&r.svname)
        ),
        None => format!("<td class=\"name\">{}</td>", r.svname),
    };
    let _ = write!(
        out,
        "<tr class=\"{kind}\" data-svname=\"{}\" data-status=\"{}\">{name}\
         <td class=\"st {}\">{status}</td>",
        esc(&r.svname),
        r.status,
        r.status,
    );
    let (scur, smax) = (r.scur.max(0) as u64, r.smax.max(0) as u64);
    for n in [scur, smax, r.stot, r.rate, r.rate_max] {
        out.push_str(&count(n));
    }
    out.push_str(&bytes(r.bin));
    out.push_str(&bytes(r.bout));
    for n in [r.econ, r.wretr, r.dreq, r.no_backend] {
        out.push_str(&n.map_or("<td></td>".into(), count));
    }
    match &r.http {
        Some(h) => {
            for n in [
                h.hrsp_1xx,
                h.hrsp_2xx,
                h.hrsp_3xx,
                h.hrsp_4xx,
                h.hrsp_5xx,
                h.hrsp_other,
            ] {
                out.push_str(&count(n));
            }
            let ms = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.1} ms"));
            let _ = write!(out, "<td>{}</td><td>{}</td>", ms(h.p50_ms), ms(h.p99_ms));
        }
        None => {
            out.push_str("<td></td><td></td><td></td><td></td><td></td><td></td><td></td><td></td>")
        }
    }
    let _ = write!(
        out,
        "<td>{}</td></tr>",
        r.weight.map_or(String::new(), |w| w.to_string())
    );
}

/// A count, shortened from 100,000 on (`226k`, `2.2M`) with the exact figure in its
/// tooltip, so that it fits its column.
fn count(n: u64) -> String {
    let short = match n {
        0..100_000 => return format!("<td>{n}</td>"),
        100_000..1_000_000 => format!("{}k", n / 1000),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    };
    format!("<td title=\"{n}\">{short}</td>")
}

/// A byte count for people, the exact figure in its tooltip.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("<td title=\"{n}\">{n} B</td>")
    } else {
        format!("<td title=\"{n}\">{v:.1} {}</td>", UNITS[unit])
    }
}

/// `45s`, `3m12s`, `2h05m`, `3d04h`.
pub fn duration(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86_400, s / 3600 % 24),
    }
}

/// Seconds since the Unix epoch as a UTC date and time.
pub fn utc(unix: u64) -> String {
    // Days to a civil date: Howard Hinnant's `civil_from_days`.
    let z = (unix / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let s = unix % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The filter box hides services as one types; the refresh fetches the page again and
/// swaps its figures in, so the box, what was typed and the scroll position stay.
const SCRIPT: &str = r#"(function(){
var body=document.body,box=document.getElementById('filter'),live=document.getElementById('live');
function filter(){var t=box.value.trim().toLowerCase();
document.querySelectorAll('section.svc').forEach(function(b){b.hidden=t!==''&&b.dataset.service.toLowerCase().indexOf(t)<0;});}
box.addEventListener('input',filter);filter();
var every=+body.dataset.refresh;if(!every)return;
function tick(){fetch(location.href,{cache:'no-store'}).then(function(r){
if(!r.ok)throw new Error('HTTP '+r.status);return r.text();}).then(function(t){
var next=new DOMParser().parseFromString(t,'text/html').getElementById('stats');
if(!next)throw new Error('no figures in the answer');
document.getElementById('stats').replaceWith(next);filter();
body.dataset.updates=+body.dataset.updates+1;live.textContent='';live.className='';
}).catch(function(e){live.textContent='not updated: '+e.message;live.className='warn';
}).finally(function(){setTimeout(tick,every*1000);});}
setTimeout(tick,every*1000);})();"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(192), "3m12s");
        assert_eq!(duration(7_500), "2h05m");
        assert_eq!(duration(273_600), "3d04h");
    }

    #[test]
    fn big_counts_fit_their_column() {
        assert_eq!(count(99_999), "<td>99999</td>");
        assert_eq!(count(226_123), "<td title=\"226123\">226k</td>");
        assert_eq!(count(2_226_000), "<td title=\"2226000\">2.2M</td>");
        assert_eq!(count(7_300_000_000), "<td title=\"7300000000\">7.3G</td>");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
