//! Services that follow Marathon: a real `sluice run` polling a Marathon test server
//! that answers with bodies built from recorded Marathon responses.

mod common;

use common::marathon::{apps_body, Answer, Marathon, Task};
use common::*;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

both_io!(
    dcos_tutorial_scale_up_and_down_under_load,
    marathon_failures_keep_the_last_good_state,
    an_event_applies_a_change_before_the_next_poll,
    admin_hup_refetches_and_reports_vips,
    conflicts_are_left_out_and_urls_fail_over,
    removed_tasks_drain_then_close,
    a_standby_redirects_to_the_leader,
    health_flips_take_a_task_out_and_back,
    basic_and_token_auth,
    a_silent_event_stream_is_reconnected,
    http_apps_are_routed_by_vhost,
    what_sluice_cannot_serve_as_marathon_lb_is_left_out_or_reported,
);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(io: &str, marathon: &Marathon) -> String {
    config_with(io, marathon, 100, false)
}

/// The named-VIP range of the tests on reactor `io`: the two reactors' runs go side by
/// side, and the same app must not claim the same VIP address in both (a second
/// process is refused an address another holds).
fn vip_cidr(io: &str) -> (std::net::Ipv4Addr, u8) {
    let net = if io == "epoll" {
        "127.12.0.0"
    } else {
        "127.11.0.0"
    };
    (net.parse().unwrap(), 16)
}

fn config_with(io: &str, marathon: &Marathon, poll_ms: u64, events: bool) -> String {
    let (net, bits) = vip_cidr(io);
    server(io, "")
        + "[admin]\nlisten = \"127.0.0.1:0\"\n"
        + &format!(
            "[marathon]\nurls = [\"{}\"]\ngroup = \"external\"\npoll_interval_ms = {poll_ms}\n\
             events = {events}\nbind_address = \"127.0.0.1\"\nvip_cidr = \"{net}/{bits}\"\n",
            marathon.url()
        )
}

/// Wait until a connection to `svc` reaches the backend named `name` (bounded).
fn reaches(svc: SocketAddr, name: &str) {
    wait_for(name, || {
        (0..10)
            .any(|_| fetch(svc).map(|n| n == name).unwrap_or(false))
            .then_some(())
    });
}

fn service_addr(lb: &Sluice, name: String) -> SocketAddr {
    wait_for("the service", || {
        lb.listening()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| a)
    })
}

/// The poll interval is an hour: a change visible within the test's patience came
/// through the event stream.
fn an_event_applies_a_change_before_the_next_poll(io: &str) {
    let (one, two) = (Backend::named("app2-1"), Backend::named("app2-2"));
    let port = free_port();
    let body = |tasks: &[Task]| apps_body("/evented", "external", port, "/evented:10002", tasks);
    let marathon = Marathon::start(Answer::Apps(body(&[task("e.1", &one, "TASK_RUNNING")])));
    let lb = Sluice::start(&config_with(io, &marathon, 3_600_000, true));
    let svc = service_addr(&lb, format!("evented_{port}"));
    wait_for("the event stream", || {
        (marathon.streams() > 0).then_some(())
    });
    let two_tasks = [
        task("e.1", &one, "TASK_RUNNING"),
        task("e.2", &two, "TASK_RUNNING"),
    ];
    marathon.set(Answer::Apps(body(&two_tasks)));
    let polls = marathon.requests();
    marathon.emit("status_update_event");
    reaches(svc, "app2-2");
    assert!(marathon.requests() > polls);
}

fn admin_hup_refetches_and_reports_vips(io: &str) {
    let (one, two) = (Backend::named("app2-1"), Backend::named("app2-2"));
    let port = free_port();
    let body = |tasks: &[Task]| apps_body("/hup/app", "external", port, "/hup/app:10003", tasks);
    let marathon = Marathon::start(Answer::Apps(body(&[task("h.1", &one, "TASK_RUNNING")])));
    let lb = Sluice::start(&config_with(io, &marathon, 3_600_000, false));
    let svc = service_addr(&lb, format!("hup_app_{port}"));
    let admin = lb.admin();
    let two_tasks = [
        task("h.1", &one, "TASK_RUNNING"),
        task("h.2", &two, "TASK_RUNNING"),
    ];
    marathon.set(Answer::Apps(body(&two_tasks)));
    let curl = |path: &str| {
        let out = Command::new("curl")
            .args(["-s", &format!("http://{admin}{path}")])
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    };
    curl("/_mlb_signal/hup");
    reaches(svc, "app2-2");
    let vips: serde_json::Value = serde_json::from_slice(&curl("/v1/vips")).unwrap();
    let vip = &vips[0];
    assert_eq!(vip["vip"], "/hup/app:10003");
    assert_eq!(vip["dns"], "hupapp.marathon.l4lb.thisdcos.directory");
    let ip = sluice::marathon::apps::vip_address("/hup/app", vip_cidr(io));
    assert_eq!(vip["address"], format!("{ip}:10003"));
    assert_eq!(vip["backends"].as_array().unwrap().len(), 2);
    let cfg: serde_json::Value = serde_json::from_slice(&curl("/_haproxy_getconfig")).unwrap();
    let names: Vec<&str> = cfg["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&format!("hup_app_{port}").as_str()),
        "{names:?}"
    );
    assert!(names.contains(&"vip:/hup/app:10003"), "{names:?}");
}

fn task(id: &'static str, backend: &Backend, state: &'static str) -> Task {
    Task {
        id,
        backend: backend.addr,
        state,
        alive: true,
    }
}

/// `svname → status` of the servers of proxy `px` in the stats CSV.
fn servers(admin: SocketAddr, px: &str) -> HashMap<String, String> {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            &format!("http://{admin}/haproxy?stats;csv"),
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(&format!("{px},")))
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[1] != "FRONTEND" && f[1] != "BACKEND")
        .map(|f| (f[1].to_owned(), f[17].to_owned()))
        .collect()
}

fn dcos_tutorial_scale_up_and_down_under_load(io: &str) {
    let (one, two) = (Backend::named("app2-1"), Backend::named("app2-2"));
    let port = free_port();
    let vip_name = format!("/dcos-101/app2-{io}");
    let body = |tasks: &[Task]| {
        apps_body(
            &format!("/dcos-101/app2-{io}"),
            "external",
            port,
            &format!("{vip_name}:10000"),
            tasks,
        )
    };
    let marathon = Marathon::start(Answer::Apps(body(&[task("app2.1", &one, "TASK_RUNNING")])));
    let lb = Sluice::start(&config(io, &marathon));
    let px = format!("vip:{vip_name}:10000");
    let vip = wait_for("the named VIP", || {
        lb.listening()
            .into_iter()
            .find(|(n, _)| *n == px)
            .map(|(_, a)| a)
    });
    let ip = sluice::marathon::apps::vip_address(&vip_name, vip_cidr(io));
    assert_eq!(
        vip,
        SocketAddr::new(ip.into(), 10000),
        "the VIP address derives from its name"
    );
    let admin = lb.admin();

    // Continuous load from a client for the whole sequence.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let (failures, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, seen, failures, requests) = (
            stop.clone(),
            seen.clone(),
            failures.clone(),
            requests.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match fetch(vip) {
                    Ok(name) if name.starts_with("app2-") => {
                        seen.lock().unwrap().insert(name);
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                requests.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    wait_for("app2-1 to answer", || {
        seen.lock().unwrap().contains("app2-1").then_some(())
    });

    // Scale to 2: requests reach both instances; the CSV shows the second server.
    marathon.set(Answer::Apps(body(&[
        task("app2.1", &one, "TASK_RUNNING"),
        task("app2.2", &two, "TASK_RUNNING"),
    ])));
    wait_for("app2-2 to answer", || {
        seen.lock().unwrap().contains("app2-2").then_some(())
    });
    let s2 = two.addr.to_string().replace(['.', ':'], "_");
    assert_eq!(servers(admin, &px).get(&s2).map(String::as_str), Some("UP"));

    // Back to 1: the killed task drains (no new connection), then leaves.
    marathon.set(Answer::Apps(body(&[
        task("app2.1", &one, "TASK_RUNNING"),
        task("app2.2", &two, "TASK_KILLING"),
    ])));
    wait_for("the second server to drain", || {
        (servers(admin, &px).get(&s2).map(String::as_str) == Some("DRAIN")).then_some(())
    });
    // The load's request in flight when the drain was published may still reach the
    // second server; the ones after it may not.
    let r0 = requests.load(Ordering::Relaxed);
    wait_for("the load to go on", || {
        (requests.load(Ordering::Relaxed) >= r0 + 2).then_some(())
    });
    // What each client gets names the backend it reached. (Counting the second
    // backend's accepts would count the app's active check too: Marathon's health
    // check becomes a TCP check every 3 s, and a draining task goes on being checked,
    // as HAProxy checks a draining server.)
    for _ in 0..20 {
        assert_eq!(
            fetch(vip).unwrap(),
            "app2-1",
            "a draining task gets no new connection"
        );
    }
    marathon.set(Answer::Apps(body(&[task("app2.1", &one, "TASK_RUNNING")])));
    wait_for("the second server to leave", || {
        (!servers(admin, &px).contains_key(&s2)).then_some(())
    });

    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert!(
        requests.load(Ordering::Relaxed) > 20,
        "the load ran throughout"
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no failed connection over the whole sequence"
    );
    // The service port serves too.
    assert_eq!(
        fetch(SocketAddr::from(([127, 0, 0, 1], port))).unwrap(),
        "app2-1"
    );
}

fn marathon_failures_keep_the_last_good_state(io: &str) {
    let (one, two) = (Backend::named("app2-1"), Backend::named("app2-2"));
    let port = free_port();
    let body = |tasks: &[Task]| apps_body("/failing", "external", port, "/failing:10001", tasks);
    let good = body(&[task("f.1", &one, "TASK_RUNNING")]);
    let marathon = Marathon::start(Answer::Apps(good.clone()));
    let lb = Sluice::start(&config(io, &marathon));
    let svc = wait_for("the service", || {
        lb.listening()
            .into_iter()
            .find(|(n, _)| n == &format!("failing_{port}"))
            .map(|(_, a)| a)
    });
    assert_eq!(fetch(svc).unwrap(), "app2-1");
    for bad in [
        Answer::Status(500),
        Answer::Garbage,
        Answer::Truncated(good.clone()),
        Answer::Close,
        Answer::Apps("{\"apps\": 3}".into()),
        Answer::Redirect(marathon.url()),
    ] {
        marathon.set(bad.clone());
        let n = marathon.requests();
        wait_for("two polls of the bad answer", || {
            (marathon.requests() >= n + 2).then_some(())
        });
        assert_eq!(fetch(svc).unwrap(), "app2-1", "still serving after {bad:?}");
    }
    let failures = lb.count_log(|l| l.contains("Marathon fetch failed"));
    assert!(failures >= 1, "failures are logged");
    // Back to good, with a second task: the change applies.
    marathon.set(Answer::Apps(body(&[
        task("f.1", &one, "TASK_RUNNING"),
        task("f.2", &two, "TASK_RUNNING"),
    ])));
    wait_for("the second task", || {
        (0..10)
            .any(|_| fetch(svc).map(|n| n == "app2-2").unwrap_or(false))
            .then_some(())
    });
    let fails = metric(lb.admin(), "sluice_marathon_failures_total");
    assert!(fails >= 10.0, "every failed poll is counted: {fails}");
}

/// A Marathon service on a static service's address is left out (logged, counted), the
/// rest applies; the first Marathon URL is dead and the second answers.
fn conflicts_are_left_out_and_urls_fail_over(io: &str) {
    let (mine, theirs) = (Backend::named("static"), Backend::named("app2-1"));
    let port = free_port();
    let body = apps_body(
        "/clash",
        "external",
        port,
        "/clash:10004",
        &[task("c.1", &theirs, "TASK_RUNNING")],
    );
    let marathon = Marathon::start(Answer::Apps(body));
    let dead = format!("http://127.0.0.1:{}", free_port());
    let cfg = server(io, "")
        + "[admin]\nlisten = \"127.0.0.1:0\"\n"
        + &format!(
            "[marathon]\nurls = [\"{dead}\", \"{}\"]\ngroup = \"external\"\npoll_interval_ms = 100\n\
             events = false\nbind_address = \"127.0.0.1\"\n",
            marathon.url()
        )
        + &format!("[[service]]\nname = \"static\"\nlisten = \"127.0.0.1:{port}\"\nbackends = [\"{}\"]\n", mine.addr);
    let lb = Sluice::start(&cfg);
    let vip = service_addr(&lb, "vip:/clash:10004".into());
    assert_eq!(fetch(vip).unwrap(), "app2-1", "the rest of the app applies");
    assert_eq!(
        fetch(SocketAddr::from(([127, 0, 0, 1], port))).unwrap(),
        "static"
    );
    lb.wait_log("the conflict is logged", |l| {
        l.contains("Marathon service left out: clash_")
    });
    let conflicts = metric(lb.admin(), "sluice_marathon_conflicts_total");
    assert!(conflicts >= 1.0);
}

/// A connection to a task Marathon removed continues until `drain_timeout_ms`, then
/// the balancer closes it; new connections go to the remaining task at once.
fn removed_tasks_drain_then_close(io: &str) {
    use std::io::Read;
    let (old, new) = (Backend::echo(), Backend::named("app2-2"));
    let port = free_port();
    let body = |tasks: &[Task]| apps_body("/drain", "external", port, "/drain:10005", tasks);
    let marathon = Marathon::start(Answer::Apps(body(&[task("d.1", &old, "TASK_RUNNING")])));
    let cfg =
        config(io, &marathon).replace("events = false", "events = false\ndrain_timeout_ms = 300");
    let lb = Sluice::start(&cfg);
    let svc = service_addr(&lb, format!("drain_{port}"));
    let mut held = connect(svc);
    assert_eq!(roundtrip(&mut held, b"before"), b"before");
    marathon.set(Answer::Apps(body(&[task("d.2", &new, "TASK_RUNNING")])));
    reaches(svc, "app2-2");
    // The drain time runs out and the balancer closes the connection.
    let mut rest = Vec::new();
    held.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let drained = metric(lb.admin(), "sluice_shard_drain_timeouts_total");
    // The held connection, and any probe of `reaches` that got to the old task before
    // the change applied.
    assert!(drained >= 1.0, "{drained}");
}

fn a_standby_redirects_to_the_leader(io: &str) {
    let one = Backend::named("app2-1");
    let port = free_port();
    let body = apps_body(
        "/led",
        "external",
        port,
        "/led:10006",
        &[task("l.1", &one, "TASK_RUNNING")],
    );
    let leader = Marathon::start(Answer::Apps(body));
    let standby = Marathon::start(Answer::Redirect(leader.url()));
    let lb = Sluice::start(&config(io, &standby));
    let svc = service_addr(&lb, format!("led_{port}"));
    assert_eq!(fetch(svc).unwrap(), "app2-1");
    assert!(standby.requests() >= 1 && leader.requests() >= 1);
}

fn health_flips_take_a_task_out_and_back(io: &str) {
    let (one, two) = (Backend::named("app2-1"), Backend::named("app2-2"));
    let port = free_port();
    let body = |alive: bool| {
        let t2 = Task {
            id: "hf.2",
            backend: two.addr,
            state: "TASK_RUNNING",
            alive,
        };
        apps_body(
            "/flip",
            "external",
            port,
            "/flip:10007",
            &[task("hf.1", &one, "TASK_RUNNING"), t2],
        )
    };
    let marathon = Marathon::start(Answer::Apps(body(true)));
    let lb = Sluice::start(&config(io, &marathon));
    let svc = service_addr(&lb, format!("flip_{port}"));
    reaches(svc, "app2-2");
    marathon.set(Answer::Apps(body(false)));
    // Once the failing check applies, 50 connections in a row all reach the healthy task.
    wait_for("the unhealthy task to leave", || {
        (0..50)
            .all(|_| fetch(svc).map(|n| n == "app2-1").unwrap_or(false))
            .then_some(())
    });
    marathon.set(Answer::Apps(body(true)));
    reaches(svc, "app2-2");
}

fn basic_and_token_auth(io: &str) {
    let one = Backend::named("app2-1");
    let dir = tempfile::tempdir().unwrap();
    for (setting, header, file) in [
        (
            "username = \"ops\"\npassword = \"s3cret\"",
            "Basic b3BzOnMzY3JldA==",
            None,
        ),
        (
            "credentials_file = \"CREDS\"",
            "Basic b3BzOnMzY3JldA==",
            Some(("CREDS", "ops:s3cret\n")),
        ),
        (
            "token_file = \"TOKEN\"",
            "token=eyJhbGciOi.abc",
            Some(("TOKEN", "eyJhbGciOi.abc\n")),
        ),
    ] {
        let port = free_port();
        let body = apps_body(
            "/auth",
            "external",
            port,
            "/auth:10008",
            &[task("a.1", &one, "TASK_RUNNING")],
        );
        let marathon = Marathon::start(Answer::Apps(body));
        marathon.require_auth(header);
        let mut setting = setting.to_owned();
        if let Some((name, content)) = file {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            setting = setting.replace(name, &path.display().to_string());
        }
        let cfg =
            config(io, &marathon).replace("events = false", &format!("events = false\n{setting}"));
        let lb = Sluice::start(&cfg);
        let svc = service_addr(&lb, format!("auth_{port}"));
        assert_eq!(fetch(svc).unwrap(), "app2-1", "{setting}");
    }
}

/// The test server's stream says hello and then nothing: past `events_silence_ms` the
/// balancer takes it for dead and opens a new one.
fn a_silent_event_stream_is_reconnected(io: &str) {
    let one = Backend::named("app2-1");
    let port = free_port();
    let body = apps_body(
        "/quiet",
        "external",
        port,
        "/quiet:10009",
        &[task("q.1", &one, "TASK_RUNNING")],
    );
    let marathon = Marathon::start(Answer::Apps(body));
    let cfg = config_with(io, &marathon, 3_600_000, true)
        .replace("events = true", "events = true\nevents_silence_ms = 300");
    let lb = Sluice::start(&cfg);
    service_addr(&lb, format!("quiet_{port}"));
    wait_for("a second event stream", || {
        (marathon.streams() >= 2).then_some(())
    });
    lb.wait_log("the loss is logged", |l| {
        l.contains("Marathon event stream lost")
    });
}

/// An app labelled `HAPROXY_0_VHOST` is an HTTP service: routed by Host on the shared
/// listener (Marathon-LB's :80) and served on its service port, following scaling.
fn http_apps_are_routed_by_vhost(io: &str) {
    let (one, two) = (
        common::http::HttpServer::start("web-1"),
        common::http::HttpServer::start("web-2"),
    );
    let port = free_port();
    let body = |tasks: &[Task]| {
        let mut v: serde_json::Value = serde_json::from_str(&apps_body(
            "/shop/web",
            "external",
            port,
            "/web:10009",
            tasks,
        ))
        .unwrap();
        v["apps"][0]["labels"] = serde_json::json!({
            "HAPROXY_GROUP": "external",
            "HAPROXY_0_VHOST": "shop.example",
        });
        v.to_string()
    };
    let marathon = Marathon::start(Answer::Apps(body(&[task(
        "w.1",
        &one.backend,
        "TASK_RUNNING",
    )])));
    let cfg = config(io, &marathon) + "[http]\nlisten = \"127.0.0.1:0\"\n";
    let lb = Sluice::start(&cfg);
    let own = service_addr(&lb, format!("shop_web_{port}"));
    let front = lb.http();
    let get = |addr: SocketAddr| {
        common::http::curl(&["-H", "Host: shop.example", &format!("http://{addr}/")])
    };
    assert_eq!(get(front), "web-1");
    assert_eq!(get(own), "web-1");
    let miss = common::http::curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{front}/"),
    ]);
    assert_eq!(miss, "404");
    marathon.set(Answer::Apps(body(&[
        task("w.1", &one.backend, "TASK_RUNNING"),
        task("w.2", &two.backend, "TASK_RUNNING"),
    ])));
    wait_for("the second task to serve", || {
        (get(front) == "web-2").then_some(())
    });
    marathon.set(Answer::Apps(body(&[task(
        "w.2",
        &two.backend,
        "TASK_RUNNING",
    )])));
    wait_for("the first task to go", || {
        (0..4).all(|_| get(front) == "web-2").then_some(())
    });
}

/// One app of the test body: [`apps_body`]'s, as `id` on service port `port` with one
/// task, no VIP, and `labels` added to its own.
fn app_with(id: &str, port: u16, t: Task, labels: serde_json::Value) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&apps_body(id, "external", port, "", &[t])).unwrap();
    let mut app = v["apps"][0].take();
    app["container"]["portMappings"][0]["labels"] = serde_json::json!({});
    for (k, x) in labels.as_object().unwrap() {
        app["labels"][k] = x.clone();
    }
    app
}

/// An app port with `HAPROXY_0_AUTH` is not served open, and a deployment group that
/// would forge rows of the stats CSV (a comma and a line break in the name `zdd.py`
/// reads there) is not served at all: both are logged and counted as left out. A
/// Marathon-LB label sluice does not follow is logged once while present, however
/// many polls see it, and counted.
fn what_sluice_cannot_serve_as_marathon_lb_is_left_out_or_reported(io: &str) {
    let backends = [
        Backend::named("open"),
        Backend::named("locked"),
        Backend::named("forged"),
    ];
    let ports = [free_port(), free_port(), free_port()];
    let body = serde_json::json!({"apps": [
        app_with("/open", ports[0], task("o.1", &backends[0], "TASK_RUNNING"),
                 serde_json::json!({"HAPROXY_0_FRONTEND_HEAD": "frontend {backend}\n"})),
        app_with("/locked", ports[1], task("l.1", &backends[1], "TASK_RUNNING"),
                 serde_json::json!({"HAPROXY_0_AUTH": "realm:user:$6$salt$hash"})),
        app_with("/forged-blue", ports[2], task("f.1", &backends[2], "TASK_RUNNING"),
                 serde_json::json!({"HAPROXY_DEPLOYMENT_GROUP": "web,evil\nopen_1,x"})),
    ]});
    let marathon = Marathon::start(Answer::Apps(body.to_string()));
    let lb = Sluice::start(&config(io, &marathon));
    let open = service_addr(&lb, format!("open_{}", ports[0]));
    assert_eq!(fetch(open).unwrap(), "open");
    lb.wait_log("the authenticated port left out", |l| {
        l.contains(&format!(
            "Marathon service left out: locked_{} (app /locked): HAPROXY_0_AUTH (basic \
             authentication) is not supported: left out rather than served without it",
            ports[1]
        ))
    });
    lb.wait_log("the forged name left out", |l| {
        l.contains(&format!(
            "Marathon service left out: \"web,evil\\nopen_1,x_{}\" (from \
             HAPROXY_DEPLOYMENT_GROUP \"web,evil\\nopen_1,x\")",
            ports[2]
        ))
    });
    let warned = |l: &str| {
        l.contains("label not supported") && l.contains("label=\"HAPROXY_0_FRONTEND_HEAD\"")
    };
    lb.wait_log("the ignored label reported", warned);
    let polls = metric(lb.admin(), "sluice_marathon_fetches_total");
    wait_for("five more polls", || {
        (metric(lb.admin(), "sluice_marathon_fetches_total") >= polls + 5.0).then_some(())
    });
    assert_eq!(lb.count_log(warned), 1, "once while present");
    assert_eq!(metric(lb.admin(), "sluice_marathon_labels_ignored"), 1.0);
    assert!(metric(lb.admin(), "sluice_marathon_conflicts_total") >= 2.0);
    let names: HashSet<String> = lb.listening().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, HashSet::from([format!("open_{}", ports[0])]));
    // The CSV as zdd.py reads it: lines, then commas; one proxy, whole rows.
    let csv = common::http::curl(&["-s", &format!("http://{}/haproxy?stats;csv", lb.admin())]);
    let width = csv.lines().next().unwrap().split(',').count();
    for line in csv.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), width, "{line}");
        assert_eq!(fields[0], format!("open_{}", ports[0]), "{line}");
    }
    let json = common::http::curl(&["-s", &format!("http://{}/haproxy?stats;json", lb.admin())]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["marathon"]["left_out"], 2);
}
