//! Blue/green deploys as Marathon-LB's `zdd.py` drives them: a Marathon test server
//! with real tasks, sluice following it (one instance, or two fed by the same
//! Marathon), clients loading the service throughout, and `tests/zdd_driver.py`
//! playing zdd.py's protocol against Marathon and every sluice's stats CSV.

mod common;

use common::deploy::DeployMarathon;
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

both_io!(
    a_zdd_deploy_under_load_fails_no_request,
    a_zdd_deploy_with_two_balancers_fails_no_request,
);

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The app `zdd.py` is given: Marathon-LB's own blue/green example, renamed `/nginx`
/// in deployment group `nginx`, on `port` (alternate port `alt`), three instances,
/// its HTTP health check every second.
fn app_file(dir: &std::path::Path, port: u16, alt: u16) -> std::path::PathBuf {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/marathon/zdd_app_blue.json"
    );
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut app = v["apps"][0].clone();
    for k in [
        "tasks",
        "version",
        "versionInfo",
        "deployments",
        "tasksStaged",
        "tasksRunning",
        "tasksHealthy",
        "tasksUnhealthy",
    ] {
        app.as_object_mut().unwrap().remove(k);
    }
    app["id"] = json!("/nginx");
    app["instances"] = json!(3);
    app["ports"] = json!([port]);
    app["container"]["docker"]["portMappings"][0]["servicePort"] = json!(port);
    app["healthChecks"][0]["intervalSeconds"] = json!(1);
    app["healthChecks"][0]["timeoutSeconds"] = json!(1);
    app["labels"] = json!({
        "HAPROXY_DEPLOYMENT_GROUP": "nginx",
        "HAPROXY_DEPLOYMENT_ALT_PORT": alt.to_string(),
        "HAPROXY_GROUP": "external",
    });
    let file = dir.join("nginx.json");
    std::fs::write(&file, app.to_string()).unwrap();
    file
}

fn config(io: &str, marathon: &DeployMarathon, bind: &str) -> String {
    server(io, "")
        + "[admin]\nlisten = \"127.0.0.1:0\"\n"
        + &format!(
            "[marathon]\nurls = [\"{}\"]\ngroup = \"external\"\npoll_interval_ms = 100\n\
             events = false\nbind_address = \"{bind}\"\n",
            marathon.url()
        )
}

/// Run the driver; its JSON summary.
fn drive(marathon: &DeployMarathon, lbs: &[&Sluice], app: &std::path::Path) -> Value {
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/zdd_driver.py"))
        .args(["--marathon", &marathon.url(), "--json"])
        .arg(app)
        .args(["--step-delay", "0.2", "--max-wait", "20"]);
    for lb in lbs {
        cmd.args(["--lb", &format!("http://{}", lb.admin())]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "driver failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        marathon.log().join("\n")
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The server rows of backend `px` on one balancer: svname → status.
fn rows(admin: SocketAddr, px: &str) -> HashMap<String, String> {
    let csv = http::curl(&["-s", &format!("http://{admin}/haproxy?stats;csv")]);
    let mut lines = csv.lines();
    let head: Vec<&str> = lines.next().unwrap()[2..].split(',').collect();
    let status = head.iter().position(|c| *c == "status").unwrap();
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|r| r[0] == px && r[1] != "FRONTEND" && r[1] != "BACKEND")
        .map(|r| (r[1].to_owned(), r[status].to_owned()))
        .collect()
}

/// What the clients saw.
#[derive(Default, Debug)]
struct Seen {
    answers: HashMap<String, usize>,
    failures: Vec<String>,
}

/// One HTTP/1.1 exchange on `s`: the body, or what went wrong.
fn exchange(s: &mut TcpStream) -> Result<String, String> {
    s.write_all(b"GET / HTTP/1.1\r\nHost: nginx\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                return Err(head.lines().next().unwrap_or("").to_owned());
            }
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or("no length")?;
            if buf.len() >= end + 4 + len {
                return Ok(String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned());
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err("closed".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// Clients loading `services` until `stop`: one opening a connection per request,
/// one keeping its connection alive (a new one only after a close it was told of).
fn load(
    services: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut handles = Vec::new();
    for keep_alive in [false, true] {
        let (services, stop, seen) = (services.clone(), Arc::clone(&stop), Arc::clone(&seen));
        handles.push(std::thread::spawn(move || {
            let mut conns: Vec<Option<TcpStream>> = services.iter().map(|_| None).collect();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let k = n % services.len();
                if conns[k].is_none() {
                    match TcpStream::connect(services[k]) {
                        Ok(s) => {
                            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                            conns[k] = Some(s);
                        }
                        Err(e) => {
                            seen.lock().unwrap().failures.push(format!("connect: {e}"));
                            continue;
                        }
                    }
                }
                let got = exchange(conns[k].as_mut().unwrap());
                let mut s = seen.lock().unwrap();
                match got {
                    Ok(body) if body == "blue" || body == "green" => {
                        *s.answers.entry(body).or_default() += 1;
                    }
                    Ok(body) => s.failures.push(format!("answered by {body:?}")),
                    Err(e) => {
                        s.failures.push(e);
                        conns[k] = None;
                    }
                }
                drop(s);
                if !keep_alive {
                    conns[k] = None;
                }
            }
        }));
    }
    handles
}

fn deploy_under_load(io: &str, binds: &[&str]) {
    let marathon = DeployMarathon::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port("127.0.0.1");
    let alt = free_port("127.0.0.1");
    let app = app_file(dir.path(), port, alt);
    let lbs: Vec<Sluice> = binds
        .iter()
        .map(|b| Sluice::start(&config(io, &marathon, b)))
        .collect();
    let lb_refs: Vec<&Sluice> = lbs.iter().collect();
    // The first deploy: blue, three instances, nothing to swap.
    let first = drive(&marathon, &lb_refs, &app);
    assert_eq!(first["colour"], "blue");
    let services: Vec<SocketAddr> = binds
        .iter()
        .map(|b| SocketAddr::new(b.parse().unwrap(), port))
        .collect();
    for lb in &lbs {
        wait_for("blue's three tasks UP", || {
            let r = rows(lb.admin(), &format!("nginx_{port}"));
            (r.len() == 3 && r.values().all(|s| s == "UP")).then_some(())
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let clients = load(services.clone(), Arc::clone(&stop), Arc::clone(&seen));
    wait_for("blue answering the clients", || {
        (seen
            .lock()
            .unwrap()
            .answers
            .get("blue")
            .copied()
            .unwrap_or(0)
            >= 20)
            .then_some(())
    });
    // The second: green, swapped in step by step while the clients run.
    let second = drive(&marathon, &lb_refs, &app);
    assert_eq!(second["colour"], "green");
    // Blue: one task, then one more killed as drained, the last deleted with its app
    // (zdd.py's steps for three instances and one initial: 1 → 2 → 3 green).
    assert_eq!(second["killed"].as_array().unwrap().len(), 2, "{second}");
    assert_eq!(second["scaled"], json!([2, 3]));
    assert_eq!(second["deleted"], "/nginx-blue");
    assert!(second["maint_rows_seen"].as_u64().unwrap() >= 3 * binds.len() as u64);
    assert_eq!(second["maint_not_old"], json!([]), "{second}");
    assert_eq!(
        second["old_servers"].as_array().unwrap().len(),
        3,
        "{second}"
    );
    assert_eq!(
        marathon.apps(),
        [("/nginx-green".to_owned(), "green".to_owned(), 3, 3)]
    );
    // Each step was logged once per task as it went into maintenance.
    let maint_logged =
        |lb: &Sluice| lb.count_log(|l| l.contains("→ MAINT") && l.contains("blue/green deploy"));
    for lb in &lbs {
        wait_for("three MAINT changes logged", || {
            (maint_logged(lb) >= 3).then_some(())
        });
        assert_eq!(maint_logged(lb), 3, "{:?}", lb.log_lines());
    }
    // Green alone behind every balancer, then the clients stop.
    for lb in &lbs {
        wait_for("green's three tasks alone", || {
            let r = rows(lb.admin(), &format!("nginx_{port}"));
            (r.len() == 3 && r.values().all(|s| s == "UP")).then_some(())
        });
    }
    let green = || {
        seen.lock()
            .unwrap()
            .answers
            .get("green")
            .copied()
            .unwrap_or(0)
    };
    let before = green();
    wait_for("green answering the clients", || {
        (green() >= before + 20).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    assert!(
        seen.failures.is_empty(),
        "failed requests: {:?}",
        seen.failures
    );
    assert!(
        seen.answers["blue"] > 0 && seen.answers["green"] > 0,
        "{seen:?}"
    );
}

fn a_zdd_deploy_under_load_fails_no_request(io: &str) {
    deploy_under_load(io, &["127.0.0.1"]);
}

fn a_zdd_deploy_with_two_balancers_fails_no_request(io: &str) {
    deploy_under_load(io, &["127.0.0.1", "127.0.0.2"]);
}
