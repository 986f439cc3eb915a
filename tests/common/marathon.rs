//! A Marathon test server: real HTTP on loopback, answering `/v2/apps?embed=apps.tasks`
//! with bodies built from the recorded Marathon 1.5 response in `tests/fixtures/marathon`.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What the server answers with.
#[derive(Debug, Clone)]
pub enum Answer {
    Apps(String),
    Status(u16),
    Garbage,
    Truncated(String),
    /// Close the connection without a word (Marathon down).
    Close,
    /// 307 to this URL (a standby pointing at the leader, or at itself: a loop).
    Redirect(String),
}

pub struct Marathon {
    pub addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    pub requests: Arc<AtomicUsize>,
    /// Open `/v2/events` streams.
    streams: Arc<Mutex<Vec<std::net::TcpStream>>>,
    /// When set, requests without this `Authorization` value get a 401.
    auth: Arc<Mutex<Option<String>>>,
}

impl Marathon {
    pub fn start(first: Answer) -> Marathon {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(first));
        let requests = Arc::new(AtomicUsize::new(0));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let auth = Arc::new(Mutex::new(None));
        let shared = (
            Arc::clone(&answer),
            Arc::clone(&requests),
            Arc::clone(&streams),
            Arc::clone(&auth),
        );
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let (a, r, st, au) = shared.clone();
                std::thread::spawn(move || serve(c, &a, &r, &st, &au));
            }
        });
        Marathon {
            addr,
            answer,
            requests,
            streams,
            auth,
        }
    }

    /// Require this `Authorization` header value from now on.
    pub fn require_auth(&self, value: &str) {
        *self.auth.lock().unwrap() = Some(value.to_owned());
    }

    /// Open event streams.
    pub fn streams(&self) -> usize {
        self.streams.lock().unwrap().len()
    }

    /// Send one server-sent event of `event_type` to every open stream.
    pub fn emit(&self, event_type: &str) {
        let msg = format!(
            "event: {event_type}\ndata: {{\"eventType\":\"{event_type}\",\"timestamp\":\"2026-11-24T00:00:00.000Z\"}}\n\n"
        );
        self.streams
            .lock()
            .unwrap()
            .retain_mut(|s| s.write_all(msg.as_bytes()).is_ok());
    }

    pub fn set(&self, a: Answer) {
        *self.answer.lock().unwrap() = a;
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

fn serve(
    mut c: std::net::TcpStream,
    answer: &Mutex<Answer>,
    requests: &AtomicUsize,
    streams: &Mutex<Vec<std::net::TcpStream>>,
    auth: &Mutex<Option<String>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if head.starts_with(b"GET /v2/events?") {
        let hello = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n\
                     event: event_stream_attached\ndata: {\"eventType\":\"event_stream_attached\"}\n\n";
        if c.write_all(hello.as_bytes()).is_ok() {
            streams.lock().unwrap().push(c);
        }
        return;
    }
    requests.fetch_add(1, Ordering::Relaxed);
    if let Some(want) = auth.lock().unwrap().as_deref() {
        let text = String::from_utf8_lossy(&head);
        let ok = text.lines().any(|l| {
            l.split_once(':')
                .is_some_and(|(k, v)| k.eq_ignore_ascii_case("authorization") && v.trim() == want)
        });
        if !ok {
            let _ = c.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
    }
    let path_ok = head.starts_with(b"GET /v2/apps?embed=apps.tasks ");
    let a = answer.lock().unwrap().clone();
    let (status, body, declared) = match (path_ok, a) {
        (false, _) => (404, "{}".to_owned(), None),
        (true, Answer::Apps(b)) => (200, b, None),
        (true, Answer::Status(s)) => (s, "{\"message\":\"error\"}".to_owned(), None),
        (true, Answer::Garbage) => (
            200,
            "<html><body>proxy error</body></html>".to_owned(),
            None,
        ),
        (true, Answer::Truncated(b)) => (200, b[..b.len() / 2].to_owned(), None),
        (true, Answer::Close) => return,
        (true, Answer::Redirect(to)) => {
            let resp = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {to}/v2/apps?embed=apps.tasks\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = c.write_all(resp.as_bytes());
            return;
        }
    };
    let len = declared.unwrap_or(body.len());
    let resp = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{body}"
    );
    let _ = c.write_all(resp.as_bytes());
}

/// One task of the test app.
pub struct Task {
    pub id: &'static str,
    pub backend: SocketAddr,
    pub state: &'static str,
    pub alive: bool,
}

/// A `/v2/apps?embed=apps.tasks` body: the recorded Marathon 1.5 app (container/bridge,
/// `container.portMappings`, MESOS_HTTP health check) renamed to `id`, its service port
/// set to `service_port` with `vip` as its `VIP_0` label, and the given tasks. The port
/// is labelled `HAPROXY_0_MODE=tcp`: its HTTP health check would otherwise make it an
/// HTTP service, and these tests follow Marathon with plain TCP backends.
pub fn apps_body(id: &str, group: &str, service_port: u16, vip: &str, tasks: &[Task]) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/marathon/zdd_app_blue_marathon1.5.json"
    );
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let app = &mut v["apps"][0];
    let template = app["tasks"][0].clone();
    app["id"] = json!(id);
    app["labels"] = json!({"HAPROXY_GROUP": group, "HAPROXY_0_MODE": "tcp"});
    app["container"]["portMappings"][0]["servicePort"] = json!(service_port);
    app["container"]["portMappings"][0]["labels"] = json!({"VIP_0": vip});
    app["instances"] = json!(tasks.len());
    app["tasks"] = Value::Array(
        tasks
            .iter()
            .map(|t| {
                let mut task = template.clone();
                task["id"] = json!(t.id);
                task["appId"] = json!(id);
                task["host"] = json!(t.backend.ip().to_string());
                task["ports"] = json!([t.backend.port()]);
                task["state"] = json!(t.state);
                task["healthCheckResults"][0]["alive"] = json!(t.alive);
                task
            })
            .collect(),
    );
    v.to_string()
}
