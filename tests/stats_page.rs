//! The stats page in a real browser: sluice with a few services (one following
//! Marathon) and some traffic; headless Chromium loads `/haproxy?stats`, runs its
//! script, and the DOM it ends with (`--dump-dom`) is checked: services, servers and
//! their statuses, BACKEND rows, the header, the charts, the refresh. `;json` is
//! checked against `;csv`.
//!
//! Without a `chromium` binary the browser test is skipped with a message, unless `CI`
//! or `SLUICE_BROWSER_REQUIRED` is set: then it fails (`.ci/run` installs Chromium).

mod common;

use common::http::HttpServer;
use common::marathon::{apps_body, Answer, Marathon, Task};
use common::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Chromium, or `None` (with a message) where the test may be skipped.
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    });
    let required = ["CI", "SLUICE_BROWSER_REQUIRED"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    match found {
        Some(p) => Some(p),
        None if required => panic!(
            "no `chromium` on PATH, and CI or SLUICE_BROWSER_REQUIRED is set: the browser \
             test must run here (Debian: apt-get install chromium; .ci/run installs it)"
        ),
        None => {
            // Straight to stderr: the test harness captures `eprintln!` of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: the stats page browser test needs `chromium` on PATH \
                 (Debian: apt-get install chromium). Set CI or SLUICE_BROWSER_REQUIRED \
                 to make its absence a failure."
            );
            None
        }
    }
}

/// Load `url` in headless Chromium and return the DOM it ends with. With a virtual
/// time budget, the page's timers run that long (in virtual time) first.
fn dump_dom(chromium: &PathBuf, url: &str, budget_ms: Option<u32>) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    if let Some(ms) = budget_ms {
        cmd.arg(format!("--virtual-time-budget={ms}"));
    }
    let mut child = cmd
        .args(["--dump-dom", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (dom, log) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        status.is_some_and(|s| s.success()) && dom.contains("</html>"),
        "chromium failed ({status:?}) on {url}:\n{log}"
    );
    dom
}

/// An HTTP GET on the admin port: the body.
fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = connect(addr);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    body.to_owned()
}

/// The value of attribute `name` in the tag that starts `tag`.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let tag = &tag[..tag.find('>')?];
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&tag[at..at + tag[at..].find('"')?])
}

/// Every tag of the DOM that starts with `start` (`<tr `, `<svg `), from its `<`.
fn tags<'a>(dom: &'a str, start: &'a str) -> impl Iterator<Item = &'a str> {
    dom.match_indices(start).map(|(i, _)| &dom[i..])
}

/// A service's `<section>`, whole.
fn section<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom
        .find(&format!("<section class=\"svc\" data-service=\"{name}\""))
        .unwrap_or_else(|| panic!("service {name} missing from the page:\n{dom}"));
    let len = dom[start..].find("</section>").unwrap();
    &dom[start..start + len]
}

/// `svname → status` of a service's rows, in page order.
fn rows(section: &str) -> Vec<(String, String)> {
    tags(section, "<tr class=\"")
        .filter_map(|t| {
            Some((
                attr(t, "data-svname")?.into(),
                attr(t, "data-status")?.into(),
            ))
        })
        .collect()
}

fn server_name(addr: SocketAddr) -> String {
    addr.to_string().replace(['.', ':'], "_")
}

/// A TCP round trip through `addr`.
fn echo(addr: SocketAddr) {
    let mut c = connect(addr);
    assert_eq!(roundtrip(&mut c, b"ping"), b"ping");
}

/// An HTTP request through `addr`, answered 200.
fn request(addr: SocketAddr) {
    let mut c = connect(addr);
    c.write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

struct Setup {
    /// The Marathon app's named VIP, `/shop:<port>`.
    vip: String,
    lb: Sluice,
    admin: SocketAddr,
    /// Process start, bracketed: just before spawning, just after it listened.
    started: (Instant, Instant),
    tcp: SocketAddr,
    web: SocketAddr,
    marathon_svc: String,
    echo_server: String,
    dead_server: String,
    web_servers: [String; 2],
    running: String,
    killing: String,
    _keep: (Backend, Backend, Backend, HttpServer, HttpServer, Marathon),
}

fn start() -> Setup {
    let echo_backend = Backend::echo();
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (w1, w2) = (HttpServer::start("w1"), HttpServer::start("w2"));
    let (running, killing) = (Backend::named("m1"), Backend::named("m2"));
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let tasks = [
        Task {
            id: "shop.1",
            backend: running.addr,
            state: "TASK_RUNNING",
            alive: true,
        },
        Task {
            id: "shop.2",
            backend: killing.addr,
            state: "TASK_KILLING",
            alive: true,
        },
    ];
    // A VIP port of its own: the tests run side by side, and a second process is
    // refused an address another holds.
    let vip = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("/shop:{}", l.local_addr().unwrap().port())
    };
    let marathon = Marathon::start(Answer::Apps(apps_body(
        "/shop", "external", port, &vip, &tasks,
    )));
    let config = server("auto", "")
        + "[admin]\nlisten = \"127.0.0.1:0\"\n"
        + &format!(
            "[marathon]\nurls = [\"{}\"]\ngroup = \"external\"\npoll_interval_ms = 200\n\
             events = false\nbind_address = \"127.0.0.1\"\n",
            marathon.url()
        )
        + &service("tcp-echo", "maglev", &[echo_backend.addr, dead])
        + &format!(
            "[[service]]\nname = \"web\"\nmode = \"http\"\nlisten = \"127.0.0.1:0\"\n\
             balance = \"roundrobin\"\nbackends = [\"{}\", \"{}\"]\n",
            w1.addr, w2.addr
        );
    let before = Instant::now();
    let lb = Sluice::start(&config);
    let started = (before, Instant::now());
    let marathon_svc = format!("shop_{port}");
    wait_for("the Marathon service", || {
        lb.listening()
            .iter()
            .any(|(n, _)| *n == marathon_svc)
            .then_some(())
    });
    Setup {
        vip,
        admin: lb.admin(),
        tcp: lb.addr("tcp-echo"),
        web: lb.addr("web"),
        lb,
        started,
        marathon_svc,
        echo_server: server_name(echo_backend.addr),
        dead_server: server_name(dead),
        web_servers: [server_name(w1.addr), server_name(w2.addr)],
        running: server_name(running.addr),
        killing: server_name(killing.addr),
        _keep: (echo_backend, running, killing, w1, w2, marathon),
    }
}

/// Traffic for `seconds`: TCP and HTTP every 100 ms.
fn traffic(s: &Setup, seconds: u64) {
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        echo(s.tcp);
        request(s.web);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Connect through `tcp-echo` until its dead server is marked down (a refused
/// connect marks it down for 5 s; the client is retried on the live one).
fn mark_dead_down(s: &Setup) {
    wait_for("the dead server marked down", || {
        echo(s.tcp);
        let csv = get(s.admin, "/haproxy?stats;csv");
        csv.lines()
            .any(|l| l.starts_with(&format!("tcp-echo,{},", s.dead_server)) && l.contains(",DOWN,"))
            .then_some(())
    });
}

#[test]
fn the_page_in_a_browser() {
    let Some(browser) = chromium() else {
        return;
    };
    let s = start();
    traffic(&s, 4);
    let url = format!("http://{}/haproxy?stats", s.admin);
    // The dead server is DOWN for 5 s after each refused connect: load the page then.
    let mut dom = String::new();
    let mut seen_at = Instant::now();
    for _ in 0..5 {
        mark_dead_down(&s);
        seen_at = Instant::now();
        dom = dump_dom(&browser, &url, None);
        let tcp = rows(section(&dom, "tcp-echo"));
        if tcp.contains(&(s.dead_server.clone(), "DOWN".into())) {
            break;
        }
    }
    let loaded_at = Instant::now();

    // Every service, each with FRONTEND, its servers and BACKEND, statuses right.
    let up = |n: &String| (n.clone(), "UP".to_owned());
    let frontend = ("FRONTEND".to_owned(), "OPEN".to_owned());
    let backend_up = ("BACKEND".to_owned(), "UP".to_owned());
    let mut tcp_servers = vec![up(&s.echo_server), (s.dead_server.clone(), "DOWN".into())];
    tcp_servers.sort();
    let want = |servers: Vec<(String, String)>| {
        [vec![frontend.clone()], servers, vec![backend_up.clone()]].concat()
    };
    assert_eq!(rows(section(&dom, "tcp-echo")), want(tcp_servers), "{dom}");
    let mut web_servers: Vec<_> = s.web_servers.iter().map(up).collect();
    web_servers.sort();
    assert_eq!(rows(section(&dom, "web")), want(web_servers));
    let mut shop = vec![up(&s.running), (s.killing.clone(), "DRAIN".into())];
    shop.sort();
    assert_eq!(rows(section(&dom, &s.marathon_svc)), want(shop.clone()));
    assert_eq!(rows(section(&dom, &format!("vip:{}", s.vip))), want(shop));
    assert_eq!(dom.matches("data-svname=\"BACKEND\"").count(), 4);
    // The words of the config.
    let title = section(&dom, "web");
    assert!(title.contains("http · roundrobin"), "{title}");
    assert!(section(&dom, "tcp-echo").contains("tcp · maglev · hash tuple"));
    // A server's status says since when.
    let dead_row = tags(section(&dom, "tcp-echo"), "<tr class=\"server\"")
        .find(|t| attr(t, "data-svname") == Some(&s.dead_server))
        .unwrap();
    assert!(
        dead_row.contains("<td class=\"st DOWN\">DOWN <small>"),
        "{dead_row}"
    );

    // The header: uptime within what the test measured, the generation as published.
    let header = |id: &str| {
        tags(&dom, "<dd ")
            .find(|t| attr(t, "id") == Some(id))
            .unwrap_or_else(|| panic!("#{id} missing"))
    };
    let uptime: u64 = attr(header("uptime"), "data-s").unwrap().parse().unwrap();
    let (lo, hi) = (
        seen_at.duration_since(s.started.1).as_secs(),
        loaded_at.duration_since(s.started.0).as_secs() + 1,
    );
    assert!(
        (lo..=hi).contains(&uptime),
        "uptime {uptime}, not in {lo}..={hi}"
    );
    let generation: u64 = attr(header("generation"), "data-generation")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        generation >= 2,
        "the file's services, then Marathon's: {generation}"
    );
    assert!(header("generation").contains("published"));
    let event_loop = attr(header("workers"), "data-event-loop").unwrap();
    assert!(["io_uring", "epoll"].contains(&event_loop), "{event_loop}");
    assert_eq!(attr(header("workers"), "data-workers"), Some("2"));
    assert!(header("version").contains(env!("CARGO_PKG_VERSION")));
    assert!(attr(header("marathon-sync"), "data-age-s").is_some());
    assert_eq!(attr(header("marathon-seen"), "data-apps"), Some("1"));
    assert_eq!(attr(header("marathon-seen"), "data-tasks"), Some("2"));
    assert_eq!(
        attr(header("marathon-left-out"), "data-left-out"),
        Some("0")
    );

    // Charts: a point for every second the sampler has seen, once a second since start.
    let charts = |svc: &str| -> HashMap<String, (u64, usize)> {
        tags(section(&dom, svc), "<svg ")
            .map(|t| {
                let svg = &t[..t.find("</svg>").unwrap()];
                let d = attr(&svg[svg.find("<path").unwrap_or(0)..], "d").unwrap_or("");
                let drawn = d.matches(['M', 'L']).count();
                let points = attr(svg, "data-points").unwrap().parse().unwrap();
                (
                    attr(svg, "data-metric").unwrap().to_owned(),
                    (points, drawn),
                )
            })
            .collect()
    };
    let web = charts("web");
    let (points, drawn) = web["sessions"];
    assert_eq!(points as usize, drawn, "every point is drawn");
    let (lo, hi) = (
        seen_at
            .duration_since(s.started.1)
            .as_secs()
            .saturating_sub(2),
        loaded_at.duration_since(s.started.0).as_secs() + 1,
    );
    assert!(
        (lo..=hi).contains(&points),
        "{points} points, not in {lo}..={hi}"
    );
    let (p99_points, p99_drawn) = web["p99"];
    assert_eq!(p99_points as usize, p99_drawn);
    assert!(
        (2..=points).contains(&p99_points),
        "a p99 for the seconds with responses (4 s of traffic): {p99_points}"
    );
    assert!(
        !charts("tcp-echo").contains_key("p99"),
        "TCP has no response times"
    );
    assert!(charts("tcp-echo")["sessions"].0 >= lo);

    // The refresh: every 2 s by default, the figures swapped in place; off with 0.
    assert_eq!(
        attr(tags(&dom, "<body").next().unwrap(), "data-refresh"),
        Some("2")
    );
    let later = dump_dom(&browser, &url, Some(5_000));
    let body = tags(&later, "<body").next().unwrap();
    let updates: u32 = attr(body, "data-updates").unwrap().parse().unwrap();
    assert!(updates >= 1, "refreshed within 5 s: {updates}");
    assert!(later.contains("id=\"filter\""), "the filter box stays");
    let off = dump_dom(&browser, &format!("{url}&refresh=0"), Some(5_000));
    let body = tags(&off, "<body").next().unwrap();
    assert_eq!(attr(body, "data-refresh"), Some("0"));
    assert_eq!(attr(body, "data-updates"), Some("0"));
    assert!(!off.contains("http-equiv=\"refresh\""));

    // The filter narrows the page to matching services.
    let filtered = dump_dom(&browser, &format!("{url}&filter=ECHO"), None);
    assert_eq!(filtered.matches("<section class=\"svc\"").count(), 1);
    assert!(filtered.contains("data-service=\"tcp-echo\""));
    drop(s.lb);
}

/// `;json` is the page's figures, and says what `;csv` says.
#[test]
fn json_agrees_with_csv() {
    let s = start();
    traffic(&s, 2);
    // Two equal CSVs around the JSON: nothing moved in between.
    let (csv, json) = wait_for("a quiet moment", || {
        let a = get(s.admin, "/haproxy?stats;csv");
        let json = get(s.admin, "/haproxy?stats;json");
        let b = get(s.admin, "/haproxy?stats;csv");
        (a == b).then_some((a, json))
    });
    let v: serde_json::Value = serde_json::from_str(&json).expect(";json parses");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap()[2..].split(',').collect();
    let services = v["services"].as_array().unwrap();
    let mut compared = 0;
    for line in lines {
        let row: HashMap<&str, &str> = header.iter().copied().zip(line.split(',')).collect();
        let svc = services
            .iter()
            .find(|x| x["name"] == row["pxname"])
            .unwrap_or_else(|| panic!("{} missing from ;json", row["pxname"]));
        let j = match row["svname"] {
            "FRONTEND" => &svc["frontend"],
            "BACKEND" => &svc["backend"],
            name => svc["servers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["svname"] == name)
                .unwrap(),
        };
        for col in [
            "scur", "stot", "bin", "bout", "econ", "status", "weight", "act", "dreq", "rate",
        ] {
            let (c, js) = (row[col], &j[col]);
            if c.is_empty() || (col == "act" && row["svname"] != "BACKEND") {
                continue;
            }
            let js = js.as_str().map_or_else(|| js.to_string(), str::to_owned);
            assert_eq!(c, js, "{} {} {col}", row["pxname"], row["svname"]);
            compared += 1;
        }
        for col in ["hrsp_2xx", "hrsp_5xx", "req_tot", "ttime"] {
            if !row[col].is_empty() {
                assert_eq!(
                    row[col],
                    j["http"][col].to_string(),
                    "{} {col}",
                    row["pxname"]
                );
                compared += 1;
            }
        }
        assert_eq!(row["mode"], svc["mode"]);
    }
    assert!(compared > 50, "{compared} figures compared");
    let p = &v["process"];
    assert_eq!(p["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(p["workers"], 2);
    assert!(p["generation"].as_u64().unwrap() >= 2);
    assert_eq!(v["marathon"]["tasks"], 2);
    let web = services.iter().find(|x| x["name"] == "web").unwrap();
    assert_eq!(web["mode"], "http");
    assert_eq!(web["balance"], "roundrobin");
    let history = &web["history"];
    let n = history["sessions_per_s"].as_array().unwrap().len();
    assert!(n >= 2, "{history}");
    assert_eq!(history["age_s"].as_array().unwrap().len(), n);
    assert_eq!(history["p99_ms"].as_array().unwrap().len(), n);
    // Every failed connect to tcp-echo's dead server was tried again on the live one.
    let tcp = services.iter().find(|x| x["name"] == "tcp-echo").unwrap();
    let failed = tcp["backend"]["econ"].as_u64().unwrap();
    assert!(failed >= 1, "{tcp}");
    assert_eq!(tcp["backend"]["wretr"].as_u64(), Some(failed), "{tcp}");
    drop(s.lb);
}
