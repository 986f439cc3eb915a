//! A Marathon test server with the write API a deploy script uses (`zdd.py`'s calls:
//! create, scale, kill tasks with `scale=true`, delete), whose tasks are real HTTP
//! servers on loopback answering with their app's `HAPROXY_DEPLOYMENT_COLOUR`. A
//! killed task dies as a process would: its port refuses connections and its open
//! connections are closed.
#![allow(dead_code)]

use super::Backend;
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One running task: its server and the flag that ends its connections.
struct RunningTask {
    id: String,
    backend: Backend,
    dead: Arc<AtomicBool>,
}

impl RunningTask {
    fn start(id: String, colour: String) -> RunningTask {
        let dead = Arc::new(AtomicBool::new(false));
        let d = Arc::clone(&dead);
        let backend = Backend::spawn(move |c| serve_task(c, &colour, &d));
        RunningTask { id, backend, dead }
    }

    fn kill(mut self) {
        self.dead.store(true, Ordering::Relaxed);
        self.backend.kill();
    }

    fn json(&self, app_id: &str) -> Value {
        json!({
            "id": self.id,
            "appId": app_id,
            "host": "127.0.0.1",
            "ipAddresses": [{"ipAddress": "127.0.0.1", "protocol": "IPv4"}],
            "ports": [self.backend.addr.port()],
            "state": "TASK_RUNNING",
            "healthCheckResults": [{"alive": true, "consecutiveFailures": 0, "taskId": self.id}],
        })
    }
}

/// Answer every request with `colour` (keep-alive) until the task is killed.
fn serve_task(mut c: TcpStream, colour: &str, dead: &AtomicBool) {
    c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !dead.load(Ordering::Relaxed) {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{colour}",
                colour.len()
            );
            if c.write_all(resp.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        match c.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

struct App {
    /// The definition as posted, without runtime fields.
    def: Value,
    tasks: Vec<RunningTask>,
    last_scaling_at: String,
}

#[derive(Default)]
struct State {
    apps: Vec<App>,
    /// Task ids and scaling times are drawn from this counter: unique and ordered.
    serial: u64,
    /// What the API was asked, in order (`POST /v2/apps /nginx-blue`, …).
    log: Vec<String>,
}

impl State {
    fn stamp(&mut self) -> String {
        self.serial += 1;
        let s = self.serial;
        format!(
            "2026-01-01T{:02}:{:02}:{:02}.000Z",
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    }

    fn scale(&mut self, i: usize, instances: usize) {
        while self.apps[i].tasks.len() > instances {
            self.apps[i].tasks.pop().unwrap().kill();
        }
        while self.apps[i].tasks.len() < instances {
            self.serial += 1;
            let app = &self.apps[i];
            let id = format!(
                "{}.{:08x}",
                app.def["id"].as_str().unwrap().trim_start_matches('/'),
                // Spread over the id space, as Marathon's UUIDs are: the order tasks
                // are put in maintenance (by id) is not their start order.
                (self.serial * 2_654_435_761) % (1 << 32)
            );
            let colour = app.def["labels"]["HAPROXY_DEPLOYMENT_COLOUR"]
                .as_str()
                .unwrap_or("none")
                .to_owned();
            self.apps[i].tasks.push(RunningTask::start(id, colour));
        }
        self.apps[i].def["instances"] = json!(instances);
        self.apps[i].last_scaling_at = self.stamp();
    }

    fn find(&self, id: &str) -> Option<usize> {
        self.apps.iter().position(|a| a.def["id"] == id)
    }

    fn app_json(&self, app: &App) -> Value {
        let mut v = app.def.clone();
        let id = v["id"].as_str().unwrap().to_owned();
        let ports: Vec<Value> = v["container"]["docker"]["portMappings"]
            .as_array()
            .map(|m| m.iter().map(|p| p["servicePort"].clone()).collect())
            .unwrap_or_default();
        v["ports"] = Value::Array(ports);
        v["tasks"] = app.tasks.iter().map(|t| t.json(&id)).collect();
        v["tasksRunning"] = json!(app.tasks.len());
        v["tasksHealthy"] = json!(app.tasks.len());
        v["deployments"] = json!([]);
        v["versionInfo"] = json!({"lastScalingAt": app.last_scaling_at});
        v
    }
}

pub struct DeployMarathon {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl DeployMarathon {
    pub fn start() -> DeployMarathon {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let s = Arc::clone(&state);
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let s = Arc::clone(&s);
                std::thread::spawn(move || serve(c, &s));
            }
        });
        DeployMarathon { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `(app id, colour label, instances, task count)` of every app.
    pub fn apps(&self) -> Vec<(String, String, u64, usize)> {
        let st = self.state.lock().unwrap();
        st.apps
            .iter()
            .map(|a| {
                (
                    a.def["id"].as_str().unwrap().to_owned(),
                    a.def["labels"]["HAPROXY_DEPLOYMENT_COLOUR"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                    a.def["instances"].as_u64().unwrap(),
                    a.tasks.len(),
                )
            })
            .collect()
    }

    /// The write calls received, in order.
    pub fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
}

fn serve(mut c: TcpStream, state: &Mutex<State>) {
    let Some((head, body)) = super::read_request_body(&mut c, &mut Vec::new()) else {
        return;
    };
    let line = head.lines().next().unwrap_or("").to_owned();
    let mut words = line.split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, answer) = answer(state, method, target, &body);
    let text = answer.to_string();
    let resp = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = c.write_all(resp.as_bytes());
}

fn answer(state: &Mutex<State>, method: &str, target: &str, body: &[u8]) -> (u16, Value) {
    let mut st = state.lock().unwrap();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match (method, path) {
        ("GET", "/v2/apps") => {
            let apps: Vec<Value> = st.apps.iter().map(|a| st.app_json(a)).collect();
            (200, json!({ "apps": apps }))
        }
        ("GET", p) if p.starts_with("/v2/apps/") => match st.find(&p[8..]) {
            Some(i) => (200, json!({"app": st.app_json(&st.apps[i])})),
            None => (404, json!({"message": "no such app"})),
        },
        ("POST", "/v2/apps") => {
            let mut def = body;
            let instances = def["instances"].as_u64().unwrap_or(1) as usize;
            for k in ["tasks", "deployments", "versionInfo", "version"] {
                def.as_object_mut().map(|o| o.remove(k));
            }
            let id = def["id"].as_str().unwrap_or("").to_owned();
            if id.is_empty() || st.find(&id).is_some() {
                return (409, json!({"message": "app exists"}));
            }
            st.log.push(format!("POST /v2/apps {id}"));
            let stamp = st.stamp();
            st.apps.push(App {
                def,
                tasks: Vec::new(),
                last_scaling_at: stamp,
            });
            let i = st.apps.len() - 1;
            st.scale(i, instances);
            (201, st.app_json(&st.apps[i]))
        }
        ("PUT", p) if p.starts_with("/v2/apps/") => match st.find(&p[8..]) {
            Some(i) => {
                let n = body["instances"].as_u64().unwrap_or(0) as usize;
                st.log.push(format!("PUT {p} {n}"));
                st.scale(i, n);
                (200, json!({"deploymentId": "1", "version": "x"}))
            }
            None => (404, json!({"message": "no such app"})),
        },
        ("DELETE", p) if p.starts_with("/v2/apps/") => match st.find(&p[8..]) {
            Some(i) => {
                st.log.push(format!("DELETE {p}"));
                for t in st.apps.remove(i).tasks {
                    t.kill();
                }
                (200, json!({"deploymentId": "2", "version": "x"}))
            }
            None => (404, json!({"message": "no such app"})),
        },
        ("POST", "/v2/tasks/delete") if query == "scale=true" => {
            let ids: Vec<String> = body["ids"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| Some(v.as_str()?.to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            st.log.push(format!("KILL {}", ids.join(" ")));
            for i in 0..st.apps.len() {
                let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut st.apps[i].tasks)
                    .into_iter()
                    .partition(|t| ids.contains(&t.id));
                if gone.is_empty() {
                    st.apps[i].tasks = kept;
                    continue;
                }
                st.apps[i].tasks = kept;
                for t in gone {
                    t.kill();
                }
                let n = st.apps[i].tasks.len();
                st.apps[i].def["instances"] = json!(n);
                st.apps[i].last_scaling_at = st.stamp();
            }
            (200, json!({"tasks": []}))
        }
        _ => (404, json!({"message": "not here"})),
    }
}
