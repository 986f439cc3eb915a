//! `sluice demo` as a newcomer runs it: nothing but the binary, then curl.

mod common;

use common::{wait_for, BIN};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

fn demo(io: &str) {
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--https",
            "127.0.0.1:0",
            "--io",
            io,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&lines);
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    let vip: String = wait_for("the demo banner", || {
        lines.lock().unwrap().iter().find_map(|l| {
            l.strip_prefix("sluice demo: VIP app2 listening on ")
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        })
    });
    // The banner's lines arrive one by one: wait for the hint rather than race it.
    wait_for("the demo to say what to try", || {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("curl -s http://"))
            .then_some(())
    });
    let mut seen = HashSet::new();
    for _ in 0..30 {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10", &format!("http://{vip}/")])
            .output()
            .expect("curl is installed");
        assert!(out.status.success(), "curl failed: {out:?}");
        let body = String::from_utf8(out.stdout).unwrap();
        assert!(
            body.starts_with("Hello from app2-"),
            "unexpected body {body:?}"
        );
        seen.insert(body);
    }
    assert!(
        seen.len() >= 2,
        "the instance changes across requests: {seen:?}"
    );
    // The HTTP mode: requests are balanced one by one; the sticky cookie pins a client.
    let front: String = wait_for("the HTTP banner", || {
        lines.lock().unwrap().iter().find_map(|l| {
            l.strip_prefix("sluice demo: HTTP listening on ")
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        })
    });
    let jar = tempfile::NamedTempFile::new().unwrap();
    let jar = jar.path().to_str().unwrap();
    let get = |cookies: bool| {
        let mut args = vec!["-s", "--max-time", "10", "-H", "Host: app2.example"];
        if cookies {
            args.extend(["-c", jar, "-b", jar]);
        }
        let url = format!("http://{front}/");
        let out = Command::new("curl").args(&args).arg(&url).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let plain: HashSet<String> = (0..6).map(|_| get(false)).collect();
    assert!(plain.len() >= 2, "round-robin per request: {plain:?}");
    let sticky: HashSet<String> = (0..6).map(|_| get(true)).collect();
    assert_eq!(sticky.len(), 1, "sticky: {sticky:?}");
    assert!(sticky.iter().all(|b| b.starts_with("Hello from app2-")));
    // The same routes over TLS, with the self-signed certificate the banner warns of.
    let secure: String = wait_for("the HTTPS banner", || {
        lines.lock().unwrap().iter().find_map(|l| {
            l.strip_prefix("sluice demo: HTTPS listening on ")
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        })
    });
    let url = format!("https://{secure}/");
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-H", "Host: app2.example", &url])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.starts_with("Hello from app2-"), "over TLS: {body:?}");
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = wait_for("the demo to exit", || child.try_wait().unwrap());
    assert!(status.success(), "SIGINT stops the demo cleanly: {status}");
}

#[test]
fn demo_over_uring() {
    demo("uring");
}

#[test]
fn demo_over_epoll() {
    demo("epoll");
}
