//! `/haproxy?stats;csv` in HAProxy 2.6's header and column order, so tools written for
//! Marathon-LB (zero-downtime deploy scripts reading `scur`) keep working.

use crate::snapshot::{clock_ms, Service, Snapshot};

/// HAProxy 2.6's columns, in order (`show stat` / `;csv`).
const COLUMNS: &[&str] = &[
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "agent_status",
    "agent_code",
    "agent_duration",
    "check_desc",
    "agent_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "agent_rise",
    "agent_fall",
    "agent_health",
    "addr",
    "cookie",
    "mode",
    "algo",
    "conn_rate",
    "conn_rate_max",
    "conn_tot",
    "intercepted",
    "dcon",
    "dses",
    "wrew",
    "connect",
    "reuse",
    "cache_lookups",
    "cache_hits",
    "srv_icur",
    "src_ilim",
    "qtime_max",
    "ctime_max",
    "rtime_max",
    "ttime_max",
    "eint",
    "idle_conn_cur",
    "safe_conn_cur",
    "used_conn_cur",
    "need_conn_est",
    "uweight",
    "agg_server_status",
    "agg_server_check_status",
    "agg_check_status",
    "-",
    "ssl_sess",
    "ssl_reused_sess",
    "ssl_failed_handshake",
    "h2_headers_rcvd",
    "h2_data_rcvd",
    "h2_settings_rcvd",
    "h2_rst_stream_rcvd",
    "h2_goaway_rcvd",
    "h2_detected_conn_protocol_errors",
    "h2_detected_strm_protocol_errors",
    "h2_rst_stream_resp",
    "h2_goaway_resp",
    "h2_open_connections",
    "h2_backend_open_streams",
    "h2_total_connections",
    "h2_backend_total_streams",
    "h1_open_connections",
    "h1_open_streams",
    "h1_total_connections",
    "h1_total_streams",
    "h1_bytes_in",
    "h1_bytes_out",
    "h1_spliced_bytes_in",
    "h1_spliced_bytes_out",
];

/// One CSV row, filled by column name.
struct Row(Vec<String>);

impl Row {
    fn new() -> Row {
        Row(vec![String::new(); COLUMNS.len()])
    }

    fn set(&mut self, column: &str, value: impl ToString) -> &mut Row {
        let i = COLUMNS
            .iter()
            .position(|c| *c == column)
            .expect("known column");
        self.0[i] = value.to_string();
        self
    }

    fn write(&self, out: &mut String) {
        for v in &self.0 {
            out.push_str(v);
            out.push(',');
        }
        out.push('\n');
    }
}

/// HAProxy's server names in Marathon-LB configs: the address with `_` for `.`/`:`.
pub fn server_name(addr: std::net::SocketAddr) -> String {
    addr.to_string()
        .replace(['.', ':'], "_")
        .replace(['[', ']'], "")
}

pub fn render(snap: &Snapshot, rates: &super::rates::Rates) -> String {
    let mut out = String::from("# ");
    out.push_str(&COLUMNS.join(","));
    out.push_str(",\n");
    let now = clock_ms();
    for (iid, svc) in snap.services.iter().enumerate() {
        service_rows(
            &mut out,
            svc,
            iid + 1,
            now,
            snap.server.max_connections,
            rates,
        );
    }
    out
}

fn service_rows(
    out: &mut String,
    svc: &Service,
    iid: usize,
    now: u64,
    limit: u32,
    rates: &super::rates::Rates,
) {
    let name = &svc.config.name;
    let c = &svc.counters;
    let mut front = Row::new();
    front
        .set("pxname", name)
        .set("svname", "FRONTEND")
        .set("scur", c.iter().map(|s| s.active.get()).sum::<i64>().max(0))
        .set("slim", limit)
        .set("stot", c.sum(|s| s.accepted.get()))
        .set("bin", c.sum(|s| s.bytes_in.get()))
        .set("bout", c.sum(|s| s.bytes_out.get()))
        .set("dreq", c.sum(|s| s.refused_limit.get()))
        .set("status", "OPEN")
        .set("pid", 1)
        .set("iid", iid)
        .set("sid", 0)
        .set("type", 0)
        .set("rate", rates.get(name))
        .set("conn_rate", rates.get(name))
        .set("conn_tot", c.sum(|s| s.accepted.get()))
        .set("mode", mode(svc));
    http_columns(&mut front, svc);
    front.write(out);
    let (mut up, mut scur, mut stot, mut econ) = (0, 0i64, 0, 0);
    for (sid, b) in svc.backends.iter().enumerate() {
        let bc = &b.counters;
        let active = i64::from(bc.active());
        let draining = svc.draining[sid];
        let is_up = b.is_up(now) && !draining;
        up += usize::from(is_up);
        scur += active;
        stot += bc.sum(|x| x.connections.get());
        econ += bc.sum(|x| x.connect_errors.get());
        let weight = svc
            .config
            .backends
            .iter()
            .find(|x| x.addr == b.addr)
            .map_or(1, |x| x.weight);
        let mut row = Row::new();
        row.set("pxname", name)
            .set("svname", server_name(b.addr))
            .set("qcur", 0)
            .set("qmax", 0)
            .set("scur", active)
            .set("stot", bc.sum(|x| x.connections.get()))
            .set("bin", bc.sum(|x| x.bytes_in.get()))
            .set("bout", bc.sum(|x| x.bytes_out.get()))
            .set("econ", bc.sum(|x| x.connect_errors.get()))
            .set(
                "status",
                if draining {
                    "DRAIN"
                } else if is_up {
                    "UP"
                } else {
                    "DOWN"
                },
            )
            .set("weight", weight)
            .set("act", 1)
            .set("bck", 0)
            .set("pid", 1)
            .set("iid", iid)
            .set("sid", sid + 1)
            .set("type", 2)
            .set("rate", rates.get(&super::rates::backend_key(name, b.addr)))
            .set("addr", b.addr)
            .set("mode", mode(svc));
        row.write(out);
    }
    let mut back = Row::new();
    back.set("pxname", name)
        .set("svname", "BACKEND")
        .set("qcur", 0)
        .set("qmax", 0)
        .set("scur", scur)
        .set("stot", stot)
        .set("bin", c.sum(|s| s.bytes_in.get()))
        .set("bout", c.sum(|s| s.bytes_out.get()))
        .set("econ", econ)
        .set("status", if up > 0 { "UP" } else { "DOWN" })
        .set(
            "weight",
            svc.config.backends.iter().map(|b| b.weight).sum::<u32>(),
        )
        .set("act", up)
        .set("bck", 0)
        .set("pid", 1)
        .set("iid", iid)
        .set("sid", 0)
        .set("type", 1)
        .set("mode", mode(svc))
        .set("algo", format!("{:?}", svc.config.balance).to_lowercase());
    http_columns(&mut back, svc);
    back.write(out);
}

fn mode(svc: &Service) -> &'static str {
    match svc.config.mode {
        crate::config::Mode::Tcp => "tcp",
        crate::config::Mode::Http => "http",
    }
}

/// HTTP mode: responses by class, requests, and the mean response time (ms) as
/// HAProxy reports `ttime`.
fn http_columns(row: &mut Row, svc: &Service) {
    if svc.config.mode != crate::config::Mode::Http {
        return;
    }
    let c = &svc.counters;
    let class = |i: usize| c.sum(|s| s.responses[i].get());
    let (mut count, mut sum_us) = (0u64, 0u64);
    for s in c.iter() {
        let (buckets, sum) = s.response_latency.read();
        count += buckets.iter().sum::<u64>();
        sum_us += sum;
    }
    row.set("hrsp_1xx", class(1))
        .set("hrsp_2xx", class(2))
        .set("hrsp_3xx", class(3))
        .set("hrsp_4xx", class(4))
        .set("hrsp_5xx", class(5))
        .set("hrsp_other", class(0))
        .set("req_tot", (0..6).map(class).sum::<u64>())
        .set("ttime", sum_us.checked_div(count).unwrap_or(0) / 1000);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_26_has_128_columns_starting_with_pxname() {
        assert_eq!(COLUMNS.len(), 128);
        assert_eq!(&COLUMNS[..5], ["pxname", "svname", "qcur", "qmax", "scur"]);
    }

    /// The whole CSV for known counters, byte for byte: what scripts parse must not
    /// move when the pages around it change.
    #[test]
    fn known_counters_give_the_recorded_csv() {
        let snap = crate::admin::testkit::two_services();
        let got = render(&snap, &Default::default());
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/admin-csv-golden.csv"
        );
        if std::env::var_os("SLUICE_WRITE_GOLDEN").is_some() {
            std::fs::write(path, &got).unwrap();
        }
        assert_eq!(got, std::fs::read_to_string(path).unwrap());
    }

    #[test]
    fn server_names_like_marathon_lb() {
        assert_eq!(
            server_name("10.0.1.215:31458".parse().unwrap()),
            "10_0_1_215_31458"
        );
    }
}
