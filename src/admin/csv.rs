//! `/haproxy?stats;csv` in HAProxy 2.6's header and column order, so tools written for
//! Marathon-LB (zero-downtime deploy scripts reading `scur`) keep working.

use super::figures::{HttpFigures, ServiceFigures};
use super::rates::Tracks;
use crate::snapshot::{clock_ms, Snapshot};

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
    // HAProxy 2.6 names this column "-", which is no identifier (Marathon-LB's zdd.py
    // makes a namedtuple of the header); later versions call it "srid".
    "srid",
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
        self.0[i] = field(value.to_string());
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

/// A field as it may be written. HAProxy never quotes a field, and this page's
/// readers split on line breaks and commas (`zdd.py` splits lines, then reads them
/// with Python's csv module, quote character `'`; shell scripts use `cut -d,`): a
/// comma, a line break or a quote in a field would split its row or forge another —
/// another app's servers MAINT with no session, which `zdd.py` acts on by killing
/// their tasks.
///
/// Names are checked where they come in (a file's `[[service]] name`, Marathon's app
/// ids and deployment groups, VIP names: [`crate::config::is_service_name`]; server
/// names are built from addresses, agents' names with `_` for all but letters, digits
/// and `-`), so nothing here is expected to change. Should a name ever get through,
/// it is sanitised, not refused: those characters become `_`. Quoting it instead
/// would not read as HAProxy's CSV does, and a debug assertion would turn a name
/// from the network into a panic in debug builds; this page must answer whatever
/// the services are called.
fn field(v: String) -> String {
    // Line breaks as Python's `str.splitlines` takes them: the control characters
    // (`\n`, `\r`, `\x0b`, `\x0c`, `\x1c`–`\x1e`, `\x85`; NUL, which its csv module
    // refuses) and the Unicode line and paragraph separators.
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, ',' | '"' | '\'' | '\u{2028}' | '\u{2029}');
    if !v.contains(unsafe_char) {
        return v;
    }
    v.replace(unsafe_char, "_")
}

pub fn render(snap: &Snapshot, tracks: &Tracks) -> String {
    let mut out = String::from("# ");
    out.push_str(&COLUMNS.join(","));
    out.push_str(",\n");
    let now = clock_ms();
    for (iid, svc) in snap.services.iter().enumerate() {
        let f = super::figures::service(svc, tracks, now);
        service_rows(&mut out, &f, iid + 1, snap.server.max_connections);
    }
    out
}

fn service_rows(out: &mut String, f: &ServiceFigures, iid: usize, limit: u32) {
    let name = &f.name;
    let fr = &f.frontend;
    let mut front = Row::new();
    front
        .set("pxname", name)
        .set("svname", "FRONTEND")
        .set("scur", fr.scur)
        .set("slim", limit)
        .set("stot", fr.stot)
        .set("bin", fr.bin)
        .set("bout", fr.bout)
        .set("dreq", fr.dreq.unwrap_or(0))
        .set("status", "OPEN")
        .set("pid", 1)
        .set("iid", iid)
        .set("sid", 0)
        .set("type", 0)
        .set("rate", fr.rate)
        .set("conn_rate", fr.rate)
        .set("conn_tot", fr.stot)
        .set("mode", f.mode);
    http_columns(&mut front, fr.http.as_ref());
    if let Some(t) = &fr.tls {
        front
            .set("ssl_sess", t.ssl_sess)
            .set("ssl_reused_sess", t.ssl_reused_sess)
            .set("ssl_failed_handshake", t.ssl_failed_handshake);
    }
    front.write(out);
    for (sid, s) in f.servers.iter().enumerate() {
        let mut row = Row::new();
        row.set("pxname", name)
            .set("svname", &s.svname)
            .set("qcur", 0)
            .set("qmax", 0)
            .set("scur", s.scur)
            .set("stot", s.stot)
            .set("bin", s.bin)
            .set("bout", s.bout)
            .set("econ", s.econ.unwrap_or(0))
            .set("status", s.status)
            .set("weight", s.weight.unwrap_or(1))
            .set("act", 1)
            .set("bck", 0)
            .set("pid", 1)
            .set("iid", iid)
            .set("sid", sid + 1)
            .set("type", 2)
            .set("rate", s.rate)
            .set("addr", s.addr.as_deref().unwrap_or(""))
            .set("mode", f.mode)
            .set("lastchg", s.lastchg.unwrap_or(0))
            .set("chkdown", s.chkdown.unwrap_or(0))
            .set("downtime", s.downtime.unwrap_or(0));
        if let Some(c) = &s.check {
            row.set("chkfail", c.chkfail)
                .set("check_status", c.check_status)
                .set("check_desc", c.check_desc)
                .set("check_rise", c.check_rise)
                .set("check_fall", c.check_fall)
                .set("check_health", c.check_health);
            if let Some(code) = c.check_code {
                row.set("check_code", code);
            }
            if let Some(ms) = c.check_duration {
                row.set("check_duration", ms);
            }
        }
        row.write(out);
    }
    let b = &f.backend;
    let mut back = Row::new();
    back.set("pxname", name)
        .set("svname", "BACKEND")
        .set("qcur", 0)
        .set("qmax", 0)
        .set("scur", b.scur)
        .set("stot", b.stot)
        .set("bin", b.bin)
        .set("bout", b.bout)
        .set("econ", b.econ.unwrap_or(0))
        .set("status", b.status)
        .set("weight", b.weight.unwrap_or(0))
        .set("act", b.act.unwrap_or(0))
        .set("bck", 0)
        .set("pid", 1)
        .set("iid", iid)
        .set("sid", 0)
        .set("type", 1)
        .set("mode", f.mode)
        .set("algo", f.balance);
    http_columns(&mut back, b.http.as_ref());
    back.write(out);
}

/// HTTP mode: responses by class, requests, and the mean response time (ms) as
/// HAProxy reports `ttime`.
fn http_columns(row: &mut Row, http: Option<&HttpFigures>) {
    let Some(h) = http else {
        return;
    };
    row.set("hrsp_1xx", h.hrsp_1xx)
        .set("hrsp_2xx", h.hrsp_2xx)
        .set("hrsp_3xx", h.hrsp_3xx)
        .set("hrsp_4xx", h.hrsp_4xx)
        .set("hrsp_5xx", h.hrsp_5xx)
        .set("hrsp_other", h.hrsp_other)
        .set("req_tot", h.req_tot)
        .set("ttime", h.ttime);
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

    /// Marathon-LB's zdd.py makes a `collections.namedtuple` of the header: every
    /// column must be a Python identifier, and not a keyword.
    #[test]
    fn every_column_is_a_python_identifier() {
        const KEYWORDS: &[&str] = &[
            "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class",
            "continue", "def", "del", "elif", "else", "except", "finally", "for", "from", "global",
            "if", "import", "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise",
            "return", "try", "while", "with", "yield",
        ];
        for c in COLUMNS {
            let mut bytes = c.bytes();
            let first = bytes.next().expect("not empty");
            assert!(first.is_ascii_alphabetic() || first == b'_', "{c}");
            assert!(bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{c}");
            assert!(!KEYWORDS.contains(c), "{c}");
        }
    }

    /// What zdd.py reads of a deploy: MAINT for the servers the deploy keeps out,
    /// DRAIN for a task being killed, with `scur` and `qcur`.
    #[test]
    fn a_deploys_maintenance_is_maint() {
        let snap = crate::admin::testkit::deploy_in_progress();
        assert!(snap.services[0].draining[0] && snap.services[0].maint[0]);
        let csv = render(&snap, &Default::default());
        let mut lines = csv.lines();
        let head: Vec<&str> = lines.next().unwrap()[2..].split(',').collect();
        let col = |name: &str| head.iter().position(|c| *c == name).unwrap();
        let rows: Vec<(String, String, String)> = lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|r| r[0] == "web" && !["FRONTEND", "BACKEND"].contains(&r[1]))
            .map(|r| {
                let (q, s) = (r[col("qcur")], r[col("scur")]);
                assert_eq!((q, s), ("0", "0"));
                (r[1].to_owned(), r[col("status")].to_owned(), s.to_owned())
            })
            .collect();
        let status: Vec<(&str, &str)> = rows
            .iter()
            .map(|(n, s, _)| (n.as_str(), s.as_str()))
            .collect();
        assert_eq!(
            status,
            [
                ("10_0_0_1_80", "MAINT"),
                ("10_0_0_2_80", "UP"),
                ("agent-3_10_0_0_3_80", "DRAIN")
            ]
        );
    }

    /// However a name got in, it cannot split its row or forge another: a comma, a
    /// line break or a quote is written `_`.
    #[test]
    fn a_field_never_carries_a_separator_or_a_quote() {
        let mut row = Row::new();
        row.set("pxname", "web,evil\nfoo_1,bar")
            .set("svname", "a'b\"c\r\0d\u{2028}e")
            .set("scur", 0);
        let mut out = String::new();
        row.write(&mut out);
        assert_eq!(out.lines().count(), 1, "{out:?}");
        let fields: Vec<&str> = out.trim_end().split(',').collect();
        assert_eq!(fields.len(), COLUMNS.len() + 1, "{out:?}");
        assert_eq!(&fields[..3], ["web_evil_foo_1_bar", "a_b_c__d_e", ""]);
        assert_eq!(fields[4], "0");
        assert_eq!(field("web_10000".into()), "web_10000");
    }

    #[test]
    fn server_names_like_marathon_lb() {
        assert_eq!(
            crate::snapshot::server_name("10.0.1.215:31458".parse().unwrap()),
            "10_0_1_215_31458"
        );
    }
}
