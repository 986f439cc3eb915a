//! Active health checks: real `sluice` processes checking real backends on loopback,
//! with clients requesting through sluice all along. Assertions are on counts and
//! states (check requests the backend saw, the CSV and /metrics, the log), never on
//! times.

mod common;

use common::marathon::{apps_body, Answer, Marathon, Task};
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

both_io!(
    a_failing_check_takes_an_http_backend_out_and_back,
    a_failing_check_takes_an_l4_backend_out_and_back,
    a_hung_backend_is_found_by_the_check_timeout,
    every_backend_down_http_answers_503_and_tcp_refuses,
    marathon_health_checks_are_derived_and_run,
    a_backend_back_up_ramps_up_its_weight,
    checks_send_the_proxy_header_a_send_proxy_backend_expects,
    maint_and_drain_by_hand_take_an_http_backend_out_until_ready,
    maint_and_drain_by_hand_take_an_l4_backend_out_until_ready,
    broken_check_answers_are_told_as_haproxy_tells_them,
    a_backend_failing_from_the_start_is_down_at_its_first_failed_check,
);

const CHECK_PATH: &str = "/health";

/// An HTTP backend that counts what it is asked: check requests (on [`CHECK_PATH`],
/// answered with `check_status`) apart from client requests (answered 200 with
/// `name`). With `hang`, it reads requests and answers none.
struct Checked {
    backend: Backend,
    checks: Arc<AtomicUsize>,
    /// Check requests answered with a status other than 200.
    failed_checks: Arc<AtomicUsize>,
    clients: Arc<AtomicUsize>,
    check_status: Arc<AtomicU16>,
}

impl Checked {
    fn start(ip: &str, name: &'static str, hang: bool) -> Checked {
        Checked::start_with(ip, name, hang, false)
    }

    /// With `proxy`, every connection must start with a PROXY header (else it is
    /// closed unanswered).
    fn start_with(ip: &str, name: &'static str, hang: bool, proxy: bool) -> Checked {
        let checks = Arc::new(AtomicUsize::new(0));
        let failed_checks = Arc::new(AtomicUsize::new(0));
        let clients = Arc::new(AtomicUsize::new(0));
        let check_status = Arc::new(AtomicU16::new(200));
        let (ch, fc, cl, st) = (
            Arc::clone(&checks),
            Arc::clone(&failed_checks),
            Arc::clone(&clients),
            Arc::clone(&check_status),
        );
        let backend = Backend::spawn_at(ip, move |mut c| {
            let mut pre = Vec::new();
            if proxy {
                let mut chunk = [0u8; 512];
                loop {
                    match sluice::proxy::parse(&pre) {
                        sluice::proxy::Parsed::Header(h) => {
                            pre.drain(..h.consumed);
                            break;
                        }
                        sluice::proxy::Parsed::Error(_) => return,
                        sluice::proxy::Parsed::NeedMore => match c.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pre.extend_from_slice(&chunk[..n]),
                        },
                    }
                }
            }
            serve(c, pre, name, hang, &ch, &fc, &cl, &st);
        });
        Checked {
            backend,
            checks,
            failed_checks,
            clients,
            check_status,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.backend.addr
    }

    fn checks(&self) -> usize {
        self.checks.load(Ordering::SeqCst)
    }

    fn failed_checks(&self) -> usize {
        self.failed_checks.load(Ordering::SeqCst)
    }

    fn clients(&self) -> usize {
        self.clients.load(Ordering::SeqCst)
    }

    fn answer_checks_with(&self, status: u16) {
        self.check_status.store(status, Ordering::SeqCst);
    }
}

#[allow(clippy::too_many_arguments)]
fn serve(
    mut c: TcpStream,
    mut buf: Vec<u8>,
    name: &str,
    hang: bool,
    checks: &AtomicUsize,
    failed: &AtomicUsize,
    clients: &AtomicUsize,
    status: &AtomicU16,
) {
    let mut chunk = [0u8; 4096];
    let Some(head) = read_request(&mut c, &mut buf) else {
        return;
    };
    let path = head.split(' ').nth(1).unwrap_or("");
    let resp = if path == CHECK_PATH {
        assert!(
            head.to_ascii_lowercase().contains("\r\nhost: "),
            "a check always carries Host: {head}"
        );
        checks.fetch_add(1, Ordering::SeqCst);
        let s = status.load(Ordering::SeqCst);
        if hang {
            // Accepts, reads, never answers: until the checker gives up.
            let _ = c.read(&mut chunk);
            return;
        }
        if s != 200 {
            failed.fetch_add(1, Ordering::SeqCst);
        }
        format!("HTTP/1.1 {s} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    } else {
        clients.fetch_add(1, Ordering::SeqCst);
        if hang {
            let _ = c.read(&mut chunk);
            return;
        }
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
            name.len()
        )
    };
    // One request per connection: clients say `Connection: close`, and an L4
    // client reads to the end.
    let _ = c.write_all(resp.as_bytes());
}

/// One request on a new connection through sluice: the status and the body.
fn request(addr: SocketAddr) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(PATIENCE)).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: web.example\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Some((status, body))
}

/// Clients requesting through sluice, one after another, until stopped.
struct Clients {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Clients {
    fn start(addr: SocketAddr) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (s, o, f) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        let handle = thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match request(addr) {
                    Some((200, _)) => o.fetch_add(1, Ordering::SeqCst),
                    other => {
                        eprintln!("client request failed: {other:?}");
                        f.fetch_add(1, Ordering::SeqCst)
                    }
                };
                thread::sleep(Duration::from_millis(2));
            }
        });
        Clients {
            stop,
            ok,
            failed,
            handle: Some(handle),
        }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    /// Wait for `n` more successful requests.
    fn more(&self, n: usize) {
        let target = self.ok() + n;
        wait_for("client requests", || (self.ok() >= target).then_some(()));
    }

    /// Stop and give the number of failed requests.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        self.failed.load(Ordering::SeqCst)
    }
}

/// The stats CSV as (header, rows), every row a field list.
fn csv(admin: SocketAddr) -> (Vec<String>, Vec<Vec<String>>) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .arg(format!("http://{admin}/haproxy?stats;csv"))
        .output()
        .expect("curl is installed");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap_or("")
        .trim_start_matches("# ")
        .split(',')
        .map(str::to_owned)
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    (header, rows)
}

/// Column `col` of the server row of `addr` in service `px`.
fn server_field(admin: SocketAddr, px: &str, addr: SocketAddr, col: &str) -> String {
    let (header, rows) = csv(admin);
    let i = header.iter().position(|h| h == col).expect("known column");
    let svname = addr.to_string().replace(['.', ':'], "_");
    rows.iter()
        .find(|r| r[0] == px && r[1] == svname)
        .map(|r| r[i].clone())
        .unwrap_or_default()
}

fn wait_status(admin: SocketAddr, px: &str, addr: SocketAddr, status: &str) {
    wait_for(&format!("{addr} {status}"), || {
        (server_field(admin, px, addr, "status") == status).then_some(())
    });
}

fn health_table(extra: &str) -> String {
    format!(
        "[service.health]\nkind = \"http\"\npath = \"{CHECK_PATH}\"\ninterval_ms = 500\n\
         timeout_ms = 2000\nrise = 2\nfall = 3\n{extra}"
    )
}

fn config(io: &str, mode: &str, backends: &[SocketAddr], health: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    server(io, "")
        + "[admin]\nlisten = \"127.0.0.1:0\"\n"
        + &format!(
            "[[service]]\nname = \"web\"\nmode = \"{mode}\"\nlisten = \"127.0.0.1:0\"\n\
             balance = \"roundrobin\"\nbackends = [{}]\n",
            list.join(", ")
        )
        + health
}

/// The log lines saying `addr` went `change` (`"UP → DOWN"`).
fn changes(lb: &Sluice, addr: SocketAddr, change: &str) -> usize {
    let needle = format!("backend {change}");
    lb.count_log(|l| l.contains(&needle) && l.contains(&addr.to_string()))
}

fn a_failing_check_takes_an_http_backend_out_and_back(io: &str) {
    out_and_back(io, "http");
}

fn a_failing_check_takes_an_l4_backend_out_and_back(io: &str) {
    out_and_back(io, "tcp");
}

/// A backend whose check starts answering 500 while it keeps serving: out of rotation
/// after `fall` failed checks (one more may have been in flight), back after `rise`
/// good ones; clients requesting all along see no failure.
fn out_and_back(io: &str, mode: &str) {
    let (fall, rise) = (3, 2);
    let a = Checked::start("127.0.0.1", "a", false);
    let b = Checked::start("127.0.0.1", "b", false);
    let lb = Sluice::start(&config(io, mode, &[a.addr(), b.addr()], &health_table("")));
    let (admin, web) = (lb.admin(), lb.addr("web"));
    wait_for("both backends checked", || {
        let ok = |c: &Checked| server_field(admin, "web", c.addr(), "check_status") == "L7OK";
        (ok(&a) && ok(&b)).then_some(())
    });
    let clients = Clients::start(web);
    clients.more(20);

    let before = a.checks();
    a.answer_checks_with(500);
    wait_status(admin, "web", a.addr(), "DOWN");
    let failed = a.failed_checks();
    let seen = a.checks() - before;
    assert!(
        failed >= fall && seen <= fall + 1,
        "DOWN after {failed} failed checks of {seen} (fall {fall})"
    );
    assert_eq!(
        server_field(admin, "web", a.addr(), "check_status"),
        "L7STS"
    );
    assert_eq!(server_field(admin, "web", a.addr(), "check_code"), "500");
    // Out of rotation: the requests that follow all go to b (one picked just before
    // may still land on a).
    let served = a.clients();
    clients.more(20);
    assert!(a.clients() <= served + 1, "a is out of rotation");

    let (before, failed_before) = (a.checks(), a.failed_checks());
    a.answer_checks_with(200);
    wait_status(admin, "web", a.addr(), "UP");
    let seen = a.checks() - before;
    let good = seen - (a.failed_checks() - failed_before);
    assert!(
        good >= rise && seen <= rise + 1,
        "UP after {good} good checks of {seen} (rise {rise})"
    );
    let served = a.clients();
    wait_for("a back in rotation", || {
        thread::sleep(Duration::from_millis(20));
        (a.clients() > served).then_some(())
    });
    clients.more(10);
    assert_eq!(clients.stop(), 0, "no client request failed");

    // Each change logged once, and counted as HAProxy counts them.
    assert_eq!(changes(&lb, a.addr(), "UP → DOWN"), 1);
    assert_eq!(changes(&lb, a.addr(), "DOWN → UP"), 1);
    assert_eq!(changes(&lb, b.addr(), "UP → DOWN"), 0);
    assert_eq!(server_field(admin, "web", a.addr(), "chkdown"), "1");
    assert_eq!(
        server_field(admin, "web", a.addr(), "chkfail"),
        fall.to_string()
    );
    assert_eq!(server_field(admin, "web", b.addr(), "chkdown"), "0");
    let labels = format!(
        "server=\"{}\"",
        a.addr().to_string().replace(['.', ':'], "_")
    );
    let m = |name: &str, more: &str| metric_where(admin, name, &format!("{labels}{more}"));
    assert_eq!(m("sluice_backend_state", ",state=\"UP\""), 1.0);
    assert_eq!(m("sluice_backend_state", ",state=\"DOWN\""), 0.0);
    assert_eq!(m("sluice_backend_down_transitions_total", ""), 1.0);
    assert_eq!(m("sluice_backend_check_failures_total", ""), fall as f64);
    assert_eq!(
        m("sluice_backend_check_status", ",check_status=\"L7OK\""),
        1.0
    );
    assert_eq!(m("sluice_backend_check_code", ""), 200.0);
    zdd_parses_the_csv(admin);
}

/// Marathon-LB's zdd.py reads the CSV into a namedtuple per row, this way.
fn zdd_parses_the_csv(admin: SocketAddr) {
    let script = r#"
import sys
from collections import namedtuple
import csv
data = sys.stdin.read()
rows = data.splitlines()
headings = rows.pop(0).lstrip('# ').rstrip(',\n').split(',')
Row = namedtuple('Row', headings)
parsed = [Row(*r[0:-1]) for r in csv.reader(rows, delimiter=',', quotechar="'") if r[0][0] != '#']
print(sorted({r.status for r in parsed if r.svname not in ('FRONTEND', 'BACKEND')}))
"#;
    let text = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .arg(format!("http://{admin}/haproxy?stats;csv"))
        .output()
        .unwrap()
        .stdout;
    let mut py = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is installed");
    py.stdin.take().unwrap().write_all(&text).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "zdd.py's parse fails: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "['UP']");
}

/// A backend that accepts and never answers is taken out by its check's timeout
/// alone: no client request is sent until it is DOWN, and none reaches it after.
fn a_hung_backend_is_found_by_the_check_timeout(io: &str) {
    let a = Checked::start("127.0.0.1", "a", false);
    let hung = Checked::start("127.0.0.1", "hung", true);
    let health = "[service.health]\nkind = \"http\"\npath = \"/health\"\ninterval_ms = 300\n\
                  timeout_ms = 300\nfall = 2\n";
    let lb = Sluice::start(&config(io, "http", &[a.addr(), hung.addr()], health));
    let (admin, web) = (lb.admin(), lb.addr("web"));
    wait_status(admin, "web", hung.addr(), "DOWN");
    assert_eq!(
        server_field(admin, "web", hung.addr(), "check_status"),
        "L7TOUT"
    );
    // Hung from the start: DOWN at its first timed-out check, as HAProxy's.
    assert!(hung.checks() >= 1, "a check timed out");
    assert_eq!(server_field(admin, "web", hung.addr(), "chkfail"), "1");
    assert_eq!(hung.clients(), 0, "found without a client request");
    for _ in 0..10 {
        assert_eq!(request(web), Some((200, "a".to_owned())));
    }
    assert_eq!(hung.clients(), 0, "no client request reached it");
    assert_eq!(changes(&lb, hung.addr(), "UP → DOWN"), 1);
    assert!(
        lb.log_lines()
            .iter()
            .any(|l| l.contains("UP → DOWN") && l.contains("L7TOUT")),
        "the log says why"
    );
}

/// Every backend DOWN by its checks: an HTTP request is answered 503 and a TCP client
/// is closed, neither reaching the backend.
fn every_backend_down_http_answers_503_and_tcp_refuses(io: &str) {
    for mode in ["http", "tcp"] {
        let only = Checked::start("127.0.0.1", "only", false);
        only.answer_checks_with(500);
        let health = "[service.health]\nkind = \"http\"\npath = \"/health\"\ninterval_ms = 200\n\
                      fall = 1\n";
        let lb = Sluice::start(&config(io, mode, &[only.addr()], health));
        let (admin, web) = (lb.admin(), lb.addr("web"));
        wait_status(admin, "web", only.addr(), "DOWN");
        for _ in 0..5 {
            let got = request(web);
            match mode {
                "http" => assert_eq!(got.map(|(s, _)| s), Some(503), "{mode}"),
                _ => assert_eq!(got, None, "{mode}: closed without an answer"),
            }
        }
        assert_eq!(only.clients(), 0, "{mode}: no request reached the backend");
    }
}

/// As HAProxy starts a checked server (UP, "going down": `check_health` = rise), a
/// backend failing from the start is DOWN at its first failed check, not after `fall`,
/// and the log says how many checks it took; one that passes is fully UP.
fn a_backend_failing_from_the_start_is_down_at_its_first_failed_check(io: &str) {
    let bad = Checked::start("127.0.0.1", "bad", false);
    bad.answer_checks_with(500);
    let good = Checked::start("127.0.0.1", "good", false);
    let lb = Sluice::start(&config(
        io,
        "http",
        &[bad.addr(), good.addr()],
        &health_table(""),
    ));
    let admin = lb.admin();
    wait_status(admin, "web", bad.addr(), "DOWN");
    let field = |c: &Checked, col: &str| server_field(admin, "web", c.addr(), col);
    assert_eq!(field(&bad, "chkfail"), "1", "one failed check while UP");
    assert_eq!(field(&bad, "chkdown"), "1");
    assert_eq!(field(&bad, "check_health"), "0");
    assert_eq!(changes(&lb, bad.addr(), "UP → DOWN"), 1);
    let said = lb.count_log(|l| {
        l.contains(&bad.addr().to_string()) && l.contains("1 check failed, last L7STS")
    });
    assert_eq!(said, 1, "the log line counts the one check");
    wait_for("the good backend checked", || {
        (field(&good, "check_status") == "L7OK").then_some(())
    });
    assert_eq!(field(&good, "status"), "UP");
    assert_eq!(
        field(&good, "check_health"),
        "4",
        "rise + fall - 1: fully UP"
    );
    assert_eq!(changes(&lb, good.addr(), "UP → DOWN"), 0);
}

/// An app's Marathon HTTP health check, with Marathon-LB's labels speeding it up,
/// becomes an HTTP check of its service: a task whose check fails is DOWN.
fn marathon_health_checks_are_derived_and_run(io: &str) {
    let good = Checked::start("127.0.0.1", "good", false);
    let bad = Checked::start("127.0.0.1", "bad", false);
    bad.answer_checks_with(503);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let task = |id, c: &Checked| Task {
        id,
        backend: c.addr(),
        state: "TASK_RUNNING",
        alive: true,
    };
    let app = format!("/checked-{io}");
    let body = apps_body(
        &app,
        "external",
        port,
        "",
        &[task("t1", &good), task("t2", &bad)],
    );
    let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["apps"][0]["labels"] = serde_json::json!({
        "HAPROXY_GROUP": "external",
        "HAPROXY_0_MODE": "http",
        "HAPROXY_0_BACKEND_HTTP_HEALTHCHECK_OPTIONS":
            "  option  httpchk GET /health\n  timeout check {healthCheckTimeoutSeconds}s\n",
        "HAPROXY_0_BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS":
            "  check inter 200 fall 2{healthCheckPortOptions}\n",
    });
    v["apps"][0]["container"]["portMappings"][0]["labels"] = serde_json::json!({});
    let marathon = Marathon::start(Answer::Apps(v.to_string()));
    let cfg = server(io, "")
        + "[admin]\nlisten = \"127.0.0.1:0\"\n"
        + &format!(
            "[marathon]\nurls = [\"{}\"]\ngroup = \"external\"\npoll_interval_ms = 100\n\
             bind_address = \"127.0.0.1\"\n",
            marathon.url()
        );
    let lb = Sluice::start(&cfg);
    let admin = lb.admin();
    let px = format!("checked-{io}_{port}");
    wait_status(admin, &px, bad.addr(), "DOWN");
    assert_eq!(
        server_field(admin, &px, bad.addr(), "check_status"),
        "L7STS"
    );
    assert_eq!(server_field(admin, &px, bad.addr(), "check_code"), "503");
    assert_eq!(server_field(admin, &px, bad.addr(), "check_fall"), "2");
    wait_for("the good task checked", || {
        (server_field(admin, &px, good.addr(), "check_status") == "L7OK").then_some(())
    });
    assert_eq!(server_field(admin, &px, good.addr(), "status"), "UP");
    // Failing from the start: DOWN at its first failed check, as HAProxy's.
    assert!(good.checks() >= 1 && bad.checks() >= 1);
    assert_eq!(server_field(admin, &px, bad.addr(), "chkfail"), "1");
    let svc: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..6 {
        assert_eq!(request(svc), Some((200, "good".to_owned())));
    }
    assert_eq!(bad.clients(), 0, "the failing task takes no request");
}

/// With `slowstart_ms`, a backend that comes back UP takes a quarter of its share at
/// first: the control thread rebuilt the table at reduced weight.
fn a_backend_back_up_ramps_up_its_weight(io: &str) {
    let a = Checked::start("127.0.0.1", "a", false);
    let b = Checked::start("127.0.0.1", "b", false);
    // Steps of 30 s: the first lasts the whole test.
    let health = "[service.health]\nkind = \"http\"\npath = \"/health\"\ninterval_ms = 200\n\
                  rise = 1\nfall = 1\nslowstart_ms = 120000\n";
    let lb = Sluice::start(&config(io, "http", &[a.addr(), b.addr()], health));
    let (admin, web) = (lb.admin(), lb.addr("web"));
    let share = |n: usize| {
        (0..n)
            .filter(|_| request(web).expect("answered").1 == "a")
            .count()
    };
    let before = share(40);
    assert!(
        (16..=24).contains(&before),
        "equal weights: a takes half (each shard keeps its own turn), got {before} of 40"
    );
    a.answer_checks_with(500);
    wait_status(admin, "web", a.addr(), "DOWN");
    let ramps = |l: &str| l.contains("slow start: weights updated");
    let rebuilt = lb.count_log(ramps);
    a.answer_checks_with(200);
    wait_status(admin, "web", a.addr(), "UP");
    wait_for("the table rebuilt at a quarter", || {
        (lb.count_log(ramps) > rebuilt).then_some(())
    });
    let got = share(40);
    assert!(
        (1..=12).contains(&got),
        "a quarter of a's weight: about 1 request in 5, got {got} of 40"
    );
}

/// A service that sends its backends a PROXY header sends one with its checks too (as
/// HAProxy does): a backend that closes connections without one stays UP, and clients
/// reach it.
fn checks_send_the_proxy_header_a_send_proxy_backend_expects(io: &str) {
    let only = Checked::start_with("127.0.0.1", "only", false, true);
    let health =
        "[service.health]\nkind = \"http\"\npath = \"/health\"\ninterval_ms = 200\nfall = 1\n";
    let cfg = config(io, "http", &[only.addr()], health).replace(
        "balance = \"roundrobin\"\n",
        "balance = \"roundrobin\"\nsend_proxy = \"v2\"\n",
    );
    let lb = Sluice::start(&cfg);
    let (admin, web) = (lb.admin(), lb.addr("web"));
    wait_for("three checks answered", || {
        (only.checks() >= 3).then_some(())
    });
    assert_eq!(
        server_field(admin, "web", only.addr(), "check_status"),
        "L7OK"
    );
    assert_eq!(server_field(admin, "web", only.addr(), "status"), "UP");
    assert_eq!(request(web), Some((200, "only".to_owned())));
    assert_eq!(changes(&lb, only.addr(), "UP → DOWN"), 0);
}

/// `POST /haproxy?stats` with the stats page's admin form: the status line and the
/// `Location` it redirects to (empty when none).
fn admin_action(admin: SocketAddr, form: &str, extra: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "10", "-d", form])
        .args(extra)
        .arg(format!("http://{admin}/haproxy?stats"))
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text.lines().next().unwrap_or("").trim().to_owned();
    let location = text
        .lines()
        .find_map(|l| l.strip_prefix("Location: "))
        .unwrap_or("")
        .trim()
        .to_owned();
    (status, location)
}

fn maint_and_drain_by_hand_take_an_http_backend_out_until_ready(io: &str) {
    by_hand(io, "http");
}

fn maint_and_drain_by_hand_take_an_l4_backend_out_until_ready(io: &str) {
    by_hand(io, "tcp");
}

/// The stats page's admin actions, as HAProxy's page posts them: `maint` and `drain`
/// take a backend out of rotation (no check needed) and `ready` brings it back, each
/// change logged once; a form for a server the backend does not have, or with an
/// unknown action, or from another site, changes nothing. No client request fails.
fn by_hand(io: &str, mode: &str) {
    let a = Checked::start("127.0.0.1", "a", false);
    let b = Checked::start("127.0.0.1", "b", false);
    let lb = Sluice::start(&config(io, mode, &[a.addr(), b.addr()], ""));
    let (admin, web) = (lb.admin(), lb.addr("web"));
    let svname = a.addr().to_string().replace(['.', ':'], "_");
    let clients = Clients::start(web);
    clients.more(10);
    for (action, status) in [("maint", "MAINT"), ("drain", "DRAIN")] {
        let (line, location) =
            admin_action(admin, &format!("s={svname}&action={action}&b=web"), &[]);
        assert!(line.contains(" 303 "), "{line}");
        assert_eq!(location, "/haproxy?stats;st=DONE");
        wait_status(admin, "web", a.addr(), status);
        let served = a.clients();
        clients.more(20);
        assert!(a.clients() <= served + 1, "a is out of rotation ({status})");
        // By its address too, as an operator would type it.
        let form = format!("s={}&action=ready&b=web", a.addr());
        assert_eq!(admin_action(admin, &form, &[]).1, "/haproxy?stats;st=DONE");
        wait_status(admin, "web", a.addr(), "UP");
        let served = a.clients();
        wait_for("a back in rotation", || {
            thread::sleep(Duration::from_millis(20));
            (a.clients() > served).then_some(())
        });
        assert_eq!(changes(&lb, a.addr(), &format!("UP → {status}")), 1);
        assert_eq!(changes(&lb, a.addr(), &format!("{status} → UP")), 1);
    }
    // Changes nothing: a server not in the backend, a backend that does not exist, an
    // action HAProxy has and sluice does not, and a request from another site.
    let refused = [
        ("s=127_0_0_9_1&action=maint&b=web".to_owned(), "st=NONE"),
        (format!("s={svname}&action=maint&b=nope"), "st=NONE"),
        (format!("s={svname}&action=shutdown&b=web"), "st=ERRP"),
    ];
    for (form, st) in refused {
        let (line, location) = admin_action(admin, &form, &[]);
        assert!(
            line.contains(" 303 ") && location.ends_with(st),
            "{form}: {line} {location}"
        );
    }
    let form = format!("s={svname}&action=maint&b=web");
    let (line, _) = admin_action(admin, &form, &["-H", "Origin: http://evil.example"]);
    assert!(line.contains(" 403 "), "{line}");
    let served = a.clients();
    clients.more(20);
    assert!(a.clients() > served, "a still in rotation");
    assert_eq!(server_field(admin, "web", a.addr(), "status"), "UP");
    assert_eq!(clients.stop(), 0, "no client request failed");
}

/// A backend that reads a check's request and answers it as `how` says.
fn answering(how: &'static str) -> Backend {
    Backend::spawn(move |mut c| {
        let mut req = Vec::new();
        let mut chunk = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match c.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => req.extend_from_slice(&chunk[..n]),
            }
        }
        let reset = |c: TcpStream| {
            socket2::SockRef::from(&c)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        };
        match how {
            "status line, FIN" => {
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nA: b\r\n");
                let _ = c.shutdown(std::net::Shutdown::Write);
                let _ = c.read(&mut chunk);
            }
            "status line, reset" => {
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\n");
                reset(c);
            }
            "reset" => reset(c),
            "1 MiB of headers" => {
                let big = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; 1 << 20]].concat();
                let _ = c.write_all(&big);
                let _ = c.write_all(b"\r\n\r\n");
            }
            _ => {
                let _ = c.write_all(b"HTTP/1.0 200 OK\nA: b\n\n");
            }
        }
    })
}

/// What a check makes of broken answers, as HAProxy 2.6's `option httpchk` does: the
/// check passes on a whole response head only — a status line cut by a FIN, or a head
/// past 16 KiB, is an invalid response (L7RSP); a reset once connected is a socket
/// error (SOCKERR), with or without part of a response before it; a whole head with
/// bare LFs from an HTTP/1.0 server that closes is good.
fn broken_check_answers_are_told_as_haproxy_tells_them(io: &str) {
    let cases = [
        ("status line, FIN", "DOWN", "L7RSP"),
        ("status line, reset", "DOWN", "SOCKERR"),
        ("reset", "DOWN", "SOCKERR"),
        ("1 MiB of headers", "DOWN", "L7RSP"),
        ("HTTP/1.0 with LFs", "UP", "L7OK"),
    ];
    let backends: Vec<Backend> = cases.iter().map(|(how, _, _)| answering(how)).collect();
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let health = "[service.health]\nkind = \"http\"\ninterval_ms = 200\nfall = 2\n";
    let lb = Sluice::start(&config(io, "http", &addrs, health));
    let admin = lb.admin();
    for ((how, status, check), addr) in cases.iter().zip(&addrs) {
        let got = wait_for(&format!("{how}: {status} {check}"), || {
            let now = (
                server_field(admin, "web", *addr, "status"),
                server_field(admin, "web", *addr, "check_status"),
            );
            (now.0 == *status && now.1 == *check).then_some(now)
        });
        assert_eq!(got, (status.to_string(), check.to_string()), "{how}");
    }
    let ok = addrs[cases.len() - 1];
    assert_eq!(server_field(admin, "web", ok, "chkfail"), "0");
}
