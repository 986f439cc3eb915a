//! Marathon apps → services, the way Marathon-LB reads them. Pure: JSON in, services
//! out; the control thread does the fetching.
//!
//! Shapes handled: `portDefinitions` (host networking), legacy `ports`,
//! `container.docker.portMappings` (BRIDGE, before Marathon 1.5),
//! `container.portMappings` with `networks` (1.5), and IP-per-task (`ipAddress`, or a
//! `container` network) where backends are the task IP and container port.

use crate::config::{Balance, HashKey};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// What the translation needs from `[marathon]`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Serve apps whose HAPROXY_GROUP matches; `*` serves every app.
    pub group: String,
    pub bind_address: IpAddr,
    /// Named VIPs get addresses in this IPv4 network.
    pub vip_network: (Ipv4Addr, u8),
    /// Only tasks whose health checks pass (for apps that have any).
    pub health_check: bool,
}

/// How a service forwards: `Http` is recorded (from labels or an HTTP health check)
/// and forwarded as TCP until the HTTP mode exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppMode {
    Tcp,
    Http,
}

/// A task's part in its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Takes new connections.
    Serving,
    /// Takes no new connections; established ones continue (TASK_KILLING).
    Draining,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskBackend {
    pub task_id: String,
    pub addr: SocketAddr,
    pub state: TaskState,
}

/// One service port of one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppService {
    pub app_id: String,
    pub port_index: usize,
    /// `<app id without the leading slash, / → _>_<service port>`, as Marathon-LB names
    /// its HAProxy backends.
    pub name: String,
    pub listen: SocketAddr,
    pub mode: AppMode,
    pub balance: Balance,
    pub hash: HashKey,
    pub vhosts: Vec<String>,
    pub backends: Vec<TaskBackend>,
}

/// A named VIP (`VIP_n` port label): an L4 service on its own address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    /// `/name` for named VIPs, empty for address VIPs.
    pub name: String,
    pub listen: SocketAddr,
    /// `<name without slashes>.marathon.l4lb.thisdcos.directory`, for named VIPs.
    pub dns: Option<String>,
    pub app_id: String,
    pub port_index: usize,
}

/// Everything one `/v2/apps?embed=apps.tasks` body yields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Translation {
    pub services: Vec<AppService>,
    pub vips: Vec<(Vip, Vec<TaskBackend>)>,
}

/// Task health remembered between refreshes: task id → alive, for tasks whose results
/// went missing ("keep the last known result").
pub type HealthMemory = BTreeMap<String, bool>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AppsError {
    #[error("body is not JSON: {0}")]
    Json(String),
    #[error("body has no \"apps\" array")]
    Shape,
}

/// The fields of an app that matter here; everything else in an app (env, constraints,
/// fetch, upgrade strategy, …) is skipped while parsing instead of being built into
/// values, and tasks are parsed straight into their own type: most of a body is tasks.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppFields {
    id: Option<Value>,
    labels: Option<Value>,
    container: Option<Value>,
    port_definitions: Option<Value>,
    ports: Option<Value>,
    ip_address: Option<Value>,
    networks: Option<Value>,
    health_checks: Option<Value>,
    tasks: Option<Vec<Task>>,
}

/// The fields of a task that matter here.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Task {
    id: String,
    host: Option<String>,
    ports: Option<Vec<Value>>,
    state: Option<String>,
    ip_addresses: Option<Vec<TaskIp>>,
    health_check_results: Option<Vec<HealthResult>>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct TaskIp {
    ip_address: Option<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct HealthResult {
    alive: Option<bool>,
}

impl AppFields {
    /// The app's fields as one JSON object (for the label and port lookups), and its
    /// tasks.
    fn split(self) -> (Value, Vec<Task>) {
        let fields = [
            ("id", self.id),
            ("labels", self.labels),
            ("container", self.container),
            ("portDefinitions", self.port_definitions),
            ("ports", self.ports),
            ("ipAddress", self.ip_address),
            ("networks", self.networks),
            ("healthChecks", self.health_checks),
        ];
        let app = fields
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v?)))
            .collect();
        (Value::Object(app), self.tasks.unwrap_or_default())
    }
}

#[derive(serde::Deserialize)]
struct Body {
    apps: Option<Vec<AppFields>>,
}

/// Translate a `/v2/apps?embed=apps.tasks` body.
pub fn translate(
    body: &[u8],
    opts: &Options,
    health: &mut HealthMemory,
) -> Result<Translation, AppsError> {
    let parsed: Body = serde_json::from_slice(body).map_err(|e| match e.classify() {
        // Valid JSON of another shape (`{"apps": 3}`, a task field of the wrong type).
        serde_json::error::Category::Data => AppsError::Shape,
        _ => AppsError::Json(e.to_string()),
    })?;
    let mut out = Translation::default();
    for app in parsed.apps.ok_or(AppsError::Shape)? {
        let (app, tasks) = app.split();
        translate_app(&app, &tasks, opts, health, &mut out);
    }
    out.services
        .sort_by(|a, b| a.listen.cmp(&b.listen).then(a.name.cmp(&b.name)));
    Ok(out)
}

fn label<'a>(labels: &'a Value, key: &str) -> Option<&'a str> {
    labels.get(key).and_then(Value::as_str)
}

/// Service ports and the per-port entries carrying labels, in port-index order.
fn port_entries(app: &Value) -> Vec<(Option<u16>, &Value)> {
    static NULL: Value = Value::Null;
    fn non_empty(v: Option<&Value>) -> Option<&Vec<Value>> {
        v.and_then(Value::as_array).filter(|a| !a.is_empty())
    }
    let container = app.get("container");
    let mappings = non_empty(container.and_then(|c| c.get("portMappings"))).or_else(|| {
        non_empty(
            container
                .and_then(|c| c.get("docker"))
                .and_then(|d| d.get("portMappings")),
        )
    });
    if let Some(m) = mappings {
        return m.iter().map(|p| (port(p.get("servicePort")), p)).collect();
    }
    if let Some(defs) = non_empty(app.get("portDefinitions")) {
        return defs.iter().map(|p| (port(p.get("port")), p)).collect();
    }
    let legacy = app.get("ports").and_then(Value::as_array);
    legacy
        .into_iter()
        .flatten()
        .map(|p| (port(Some(p)), &NULL))
        .collect()
}

fn port(v: Option<&Value>) -> Option<u16> {
    v.and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
}

/// IP-per-task: the legacy `ipAddress` field, or a `container` (not bridge) network.
fn ip_per_task(app: &Value) -> bool {
    if app.get("ipAddress").is_some_and(|v| !v.is_null()) {
        return true;
    }
    let user_docker = app
        .get("container")
        .and_then(|c| c.get("docker"))
        .and_then(|d| d.get("network"))
        .and_then(Value::as_str)
        == Some("USER");
    let container_net = app
        .get("networks")
        .and_then(Value::as_array)
        .is_some_and(|n| {
            n.iter()
                .any(|x| x.get("mode").and_then(Value::as_str) == Some("container"))
        });
    user_docker || container_net
}

/// The address and ports a task is reached at.
fn task_endpoint(app: &Value, task: &Task, per_task: bool) -> Option<(IpAddr, Vec<u16>)> {
    if per_task {
        let ip = task
            .ip_addresses
            .as_ref()?
            .first()?
            .ip_address
            .as_deref()?
            .parse()
            .ok()?;
        let container = app.get("container");
        let mappings = container
            .and_then(|c| c.get("portMappings"))
            .or_else(|| {
                container
                    .and_then(|c| c.get("docker"))
                    .and_then(|d| d.get("portMappings"))
            })
            .and_then(Value::as_array);
        let ports = match mappings {
            Some(m) if !m.is_empty() => m
                .iter()
                .filter_map(|p| port(p.get("containerPort")))
                .collect(),
            _ => app
                .get("ipAddress")
                .and_then(|a| a.get("discovery"))
                .and_then(|d| d.get("ports"))
                .and_then(Value::as_array)
                .map(|ps| ps.iter().filter_map(|p| port(p.get("number"))).collect())
                .unwrap_or_default(),
        };
        return Some((ip, ports));
    }
    let host = task.host.as_deref()?;
    // Agents are named by address in most clusters; a name is resolved (on the poller
    // thread).
    let ip = host.parse().ok().or_else(|| {
        use std::net::ToSocketAddrs;
        (host, 0).to_socket_addrs().ok()?.next().map(|a| a.ip())
    })?;
    let ports = task
        .ports
        .as_ref()?
        .iter()
        .filter_map(|p| port(Some(p)))
        .collect();
    Some((ip, ports))
}

/// Whether a task takes new connections, drains, or is left out.
fn task_state(
    app: &Value,
    task: &Task,
    opts: &Options,
    health: &mut HealthMemory,
) -> Option<TaskState> {
    let serving = match task.state.as_deref().unwrap_or("TASK_RUNNING") {
        // Marathon-LB keeps serving tasks whose agent is merely out of touch.
        "TASK_RUNNING" | "TASK_LOST" | "TASK_UNREACHABLE" => TaskState::Serving,
        "TASK_KILLING" => TaskState::Draining,
        _ => return None,
    };
    let checks = app
        .get("healthChecks")
        .and_then(Value::as_array)
        .is_some_and(|h| !h.is_empty());
    if !(opts.health_check && checks) || serving == TaskState::Draining {
        return Some(serving);
    }
    let alive = match task.health_check_results.as_ref().filter(|r| !r.is_empty()) {
        Some(r) => {
            let alive = r.iter().all(|x| x.alive == Some(true));
            health.insert(task.id.clone(), alive);
            alive
        }
        // No results this time: the last known one stands; never seen means not yet.
        None => health.get(&task.id).copied().unwrap_or(false),
    };
    alive.then_some(TaskState::Serving)
}

fn translate_app(
    app: &Value,
    tasks: &[Task],
    opts: &Options,
    health: &mut HealthMemory,
    out: &mut Translation,
) {
    let Some(app_id) = app.get("id").and_then(Value::as_str) else {
        return;
    };
    let labels = app.get("labels").unwrap_or(&Value::Null);
    let per_task = ip_per_task(app);
    let entries = port_entries(app);
    let tasks: Vec<(&str, IpAddr, Vec<u16>, TaskState)> = tasks
        .iter()
        .filter_map(|t| {
            let state = task_state(app, t, opts, health)?;
            let (ip, ports) = task_endpoint(app, t, per_task)?;
            Some((t.id.as_str(), ip, ports, state))
        })
        .collect();
    let http_check = app
        .get("healthChecks")
        .and_then(Value::as_array)
        .is_some_and(|hs| {
            hs.iter().any(|h| {
                matches!(
                    h.get("protocol").and_then(Value::as_str),
                    Some("HTTP" | "MESOS_HTTP")
                ) && h.get("portIndex").and_then(Value::as_u64).unwrap_or(0) == 0
            })
        });
    for (n, (service_port, entry)) in entries.iter().enumerate() {
        let backends: Vec<TaskBackend> = tasks
            .iter()
            .filter_map(|(id, ip, ports, state)| {
                Some(TaskBackend {
                    task_id: (*id).to_owned(),
                    addr: SocketAddr::new(*ip, *ports.get(n)?),
                    state: *state,
                })
            })
            .collect();
        vips(app_id, n, entry, opts, &backends, out);
        let key = |k: &str| format!("HAPROXY_{n}_{k}");
        let group = label(labels, &key("GROUP")).or_else(|| label(labels, "HAPROXY_GROUP"));
        if opts.group != "*" && group != Some(opts.group.as_str()) {
            continue;
        }
        let service_port = label(labels, &key("PORT"))
            .and_then(|p| p.parse().ok())
            .or(*service_port);
        let Some(service_port) = service_port else {
            continue;
        };
        let bind = label(labels, &key("BIND_ADDR"))
            .and_then(|a| a.parse().ok())
            .unwrap_or(opts.bind_address);
        let vhosts: Vec<String> = label(labels, &key("VHOST"))
            .map(|v| {
                v.split(',')
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let mode = match label(labels, &key("MODE")) {
            Some("http") => AppMode::Http,
            Some("tcp") => AppMode::Tcp,
            _ if !vhosts.is_empty() || (n == 0 && http_check) => AppMode::Http,
            _ => AppMode::Tcp,
        };
        let (balance, hash) = match label(labels, &key("BALANCE")) {
            Some("leastconn") => (Balance::Leastconn, HashKey::Tuple),
            Some("source") => (Balance::Maglev, HashKey::Source),
            _ => (Balance::Roundrobin, HashKey::Tuple),
        };
        out.services.push(AppService {
            app_id: app_id.to_owned(),
            port_index: n,
            name: format!(
                "{}_{service_port}",
                app_id.trim_start_matches('/').replace('/', "_")
            ),
            listen: SocketAddr::new(bind, service_port),
            mode,
            balance,
            hash,
            vhosts,
            backends,
        });
    }
}

/// `VIP_n` labels on a port entry: `/name:port` (an address derived from the name) or
/// `ip:port` (that address).
fn vips(
    app_id: &str,
    n: usize,
    entry: &Value,
    opts: &Options,
    backends: &[TaskBackend],
    out: &mut Translation,
) {
    let Some(labels) = entry.get("labels").and_then(Value::as_object) else {
        return;
    };
    for (k, v) in labels {
        let (true, Some(v)) = (k.starts_with("VIP_"), v.as_str()) else {
            continue;
        };
        let Some((target, port)) = v.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let vip = if let Ok(ip) = target.parse::<IpAddr>() {
            Vip {
                name: String::new(),
                listen: SocketAddr::new(ip, port),
                dns: None,
                app_id: app_id.to_owned(),
                port_index: n,
            }
        } else {
            let name = if target.starts_with('/') {
                target.to_owned()
            } else {
                format!("/{target}")
            };
            Vip {
                listen: SocketAddr::new(IpAddr::V4(vip_address(&name, opts.vip_network)), port),
                dns: Some(format!(
                    "{}.marathon.l4lb.thisdcos.directory",
                    name.replace('/', "")
                )),
                name,
                app_id: app_id.to_owned(),
                port_index: n,
            }
        };
        out.vips.push((vip, backends.to_vec()));
    }
}

/// The address of a named VIP inside `network`: the same on every host (a fixed-seed
/// hash of the name), never the network or broadcast address.
pub fn vip_address(name: &str, network: (Ipv4Addr, u8)) -> Ipv4Addr {
    let (base, prefix) = network;
    let host_bits = 32 - u32::from(prefix.min(30));
    let hosts = (1u64 << host_bits) - 2;
    let h = crate::balance::hash::hash_bytes(crate::balance::hash::SEED_FLOW, name.as_bytes());
    let mask = if host_bits == 32 {
        0
    } else {
        u32::MAX << host_bits
    };
    Ipv4Addr::from((u32::from(base) & mask) + 1 + (h % hosts) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(group: &str) -> Options {
        Options {
            group: group.into(),
            bind_address: "0.0.0.0".parse().unwrap(),
            vip_network: ("127.11.0.0".parse().unwrap(), 16),
            health_check: true,
        }
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/marathon/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).unwrap()
    }

    fn run(body: &[u8], group: &str) -> Translation {
        translate(body, &opts(group), &mut HealthMemory::new()).unwrap()
    }

    /// `name listen mode balance [backends]`, draining backends marked `~`.
    fn dump(t: &Translation) -> Vec<String> {
        t.services
            .iter()
            .map(|s| {
                let b: Vec<String> = s
                    .backends
                    .iter()
                    .map(|b| {
                        format!(
                            "{}{}",
                            b.addr,
                            if b.state == TaskState::Draining {
                                "~"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect();
                format!(
                    "{} {} {:?} {:?} [{}]",
                    s.name,
                    s.listen,
                    s.mode,
                    s.balance,
                    b.join(" ")
                )
            })
            .collect()
    }

    #[test]
    fn bridge_apps_before_marathon_1_5() {
        // container.docker.portMappings, BRIDGE, tasks without `state`; the blue app's
        // HAPROXY_0_PORT moves it from its service port 10001 to 10000; the MESOS_HTTP
        // health check on port index 0 makes both http.
        let t = run(&fixture("zdd_apps.json"), "external");
        assert_eq!(
            dump(&t),
            [
                "nginx-blue_10000 0.0.0.0:10000 Http Roundrobin [10.0.1.147:25724]",
                "nginx-green_10000 0.0.0.0:10000 Http Roundrobin [10.0.6.25:16916 10.0.6.25:31184 10.0.6.25:23336]",
            ]
        );
        assert!(run(&fixture("zdd_apps.json"), "internal")
            .services
            .is_empty());
    }

    #[test]
    fn documented_app_shapes() {
        // GET /v2/apps/{id} example: docker portMappings with a service port, the
        // legacy `ipAddress` (IP-per-task: tasks are reached at their own address on
        // the container port) and an HTTP health check (http mode; a task serves once
        // a check passed).
        let mut app: Value = serde_json::from_slice(&fixture("app.json")).unwrap();
        app["tasks"] = json!([{"id": "foo.1", "host": "10.0.0.9", "ports": [31000],
                               "ipAddresses": [{"ipAddress": "9.1.1.1", "protocol": "IPv4"}],
                               "healthCheckResults": [{"alive": true}]}]);
        let body = json!({"apps": [app]}).to_string();
        assert_eq!(
            dump(&run(body.as_bytes(), "*")),
            ["foo_10019 0.0.0.0:10019 Http Roundrobin [9.1.1.1:80]"]
        );
        // GET /v2/apps example: legacy `ports`, no tasks yet: the services listen with no
        // backend.
        let t = run(&fixture("app_list.json"), "*");
        assert_eq!(
            dump(&t),
            [
                "myapp_10013 0.0.0.0:10013 Tcp Roundrobin []",
                "myapp_10015 0.0.0.0:10015 Tcp Roundrobin []"
            ]
        );
        // Neither has HAPROXY_GROUP: the default group serves neither.
        assert!(run(&fixture("app_list.json"), "external")
            .services
            .is_empty());
    }

    #[test]
    fn marathon_1_5_shape() {
        // networks container/bridge with container.portMappings: host ports, not the
        // container addresses the tasks also list.
        let t = run(&fixture("zdd_app_blue_marathon1.5.json"), "*");
        assert_eq!(
            dump(&t),
            ["nginx-green_10000 0.0.0.0:10000 Http Roundrobin [10.0.6.25:16916 10.0.6.25:31184 10.0.6.25:23336]"]
        );
    }

    fn app2(tasks: Value) -> Vec<u8> {
        json!({"apps": [{
            "id": "/dcos-101/app2",
            "labels": {"HAPROXY_GROUP": "external"},
            "networks": [{"mode": "container", "name": "dcos"}],
            "container": {"type": "MESOS", "portMappings": [
                {"containerPort": 80, "servicePort": 10101, "labels": {"VIP_0": "/dcos-101/app2:10000"}}
            ]},
            "healthChecks": [{"protocol": "TCP", "portIndex": 0}],
            "tasks": tasks,
        }]})
        .to_string()
        .into_bytes()
    }

    fn task(id: &str, ip: &str, state: &str, alive: Option<bool>) -> Value {
        let mut t = json!({"id": id, "host": "10.0.0.1", "ports": [31000], "state": state,
                           "ipAddresses": [{"ipAddress": ip, "protocol": "IPv4"}]});
        if let Some(a) = alive {
            t["healthCheckResults"] = json!([{"alive": a}]);
        }
        t
    }

    #[test]
    fn ip_per_task_and_named_vip() {
        let body = app2(json!([task("a.1", "9.0.0.1", "TASK_RUNNING", Some(true))]));
        let t = run(&body, "external");
        assert_eq!(
            dump(&t),
            ["dcos-101_app2_10101 0.0.0.0:10101 Tcp Roundrobin [9.0.0.1:80]"]
        );
        assert_eq!(t.vips.len(), 1);
        let (vip, backends) = &t.vips[0];
        assert_eq!(vip.name, "/dcos-101/app2");
        assert_eq!(
            vip.dns.as_deref(),
            Some("dcos-101app2.marathon.l4lb.thisdcos.directory")
        );
        assert_eq!(vip.listen.port(), 10000);
        assert_eq!(
            vip.listen.ip(),
            IpAddr::V4(vip_address(
                "/dcos-101/app2",
                ("127.11.0.0".parse().unwrap(), 16)
            ))
        );
        assert_eq!(backends[0].addr, "9.0.0.1:80".parse().unwrap());
    }

    #[test]
    fn task_states_and_health() {
        let tasks = json!([
            task("a.1", "9.0.0.1", "TASK_RUNNING", Some(true)),
            task("a.2", "9.0.0.2", "TASK_KILLING", Some(true)),
            task("a.3", "9.0.0.3", "TASK_UNREACHABLE", Some(true)),
            task("a.4", "9.0.0.4", "TASK_RUNNING", Some(false)),
            task("a.5", "9.0.0.5", "TASK_RUNNING", None),
            task("a.6", "9.0.0.6", "TASK_STAGING", None),
            task("a.7", "9.0.0.7", "TASK_LOST", Some(true)),
        ]);
        let mut health = HealthMemory::new();
        let t = translate(&app2(tasks), &opts("external"), &mut health).unwrap();
        // Running and alive serve; killing drains; unreachable and lost keep serving;
        // failing and never-checked tasks wait; staging is not up yet.
        assert_eq!(
            dump(&t),
            ["dcos-101_app2_10101 0.0.0.0:10101 Tcp Roundrobin [9.0.0.1:80 9.0.0.2:80~ 9.0.0.3:80 9.0.0.7:80]"]
        );
        // Results missing on the next refresh: the last known result stands.
        let t = translate(
            &app2(json!([task("a.1", "9.0.0.1", "TASK_RUNNING", None)])),
            &opts("external"),
            &mut health,
        )
        .unwrap();
        assert_eq!(t.services[0].backends.len(), 1);
        // Without health checking every running task serves.
        let mut o = opts("external");
        o.health_check = false;
        let t = translate(
            &app2(json!([task("a.4", "9.0.0.4", "TASK_RUNNING", Some(false))])),
            &o,
            &mut HealthMemory::new(),
        )
        .unwrap();
        assert_eq!(t.services[0].backends.len(), 1);
    }

    #[test]
    fn labels_per_port() {
        let body = json!({"apps": [{
            "id": "/shop/web",
            "labels": {
                "HAPROXY_GROUP": "internal",
                "HAPROXY_0_GROUP": "external",
                "HAPROXY_0_VHOST": "shop.example, www.shop.example",
                "HAPROXY_1_GROUP": "external",
                "HAPROXY_1_BALANCE": "source",
                "HAPROXY_1_BIND_ADDR": "127.0.0.5",
                "HAPROXY_2_MODE": "http",
                "HAPROXY_2_BALANCE": "leastconn",
                "HAPROXY_2_PORT": "18080",
            },
            "portDefinitions": [{"port": 10000}, {"port": 10001}, {"port": 10002}],
            "tasks": [{"id": "w.1", "host": "10.1.1.1", "ports": [31001, 31002, 31003]}],
        }, {
            "id": "/legacy",
            "labels": {"HAPROXY_GROUP": "external"},
            "ports": [10005],
            "tasks": [{"id": "l.1", "host": "10.1.1.2", "ports": [32000], "state": "TASK_RUNNING"}],
        }]})
        .to_string();
        let t = run(body.as_bytes(), "external");
        assert_eq!(
            dump(&t),
            [
                "shop_web_10000 0.0.0.0:10000 Http Roundrobin [10.1.1.1:31001]",
                "legacy_10005 0.0.0.0:10005 Tcp Roundrobin [10.1.1.2:32000]",
                "shop_web_10001 127.0.0.5:10001 Tcp Maglev [10.1.1.1:31002]",
            ]
        );
        assert_eq!(t.services[0].vhosts, ["shop.example", "www.shop.example"]);
        assert_eq!(t.services[2].hash, HashKey::Source);
        // Port 2 is in the app-wide group only.
        let t = run(body.as_bytes(), "internal");
        assert_eq!(
            dump(&t),
            ["shop_web_18080 0.0.0.0:18080 Http Leastconn [10.1.1.1:31003]"]
        );
    }

    #[test]
    fn bad_bodies_are_errors() {
        let mut h = HealthMemory::new();
        let o = opts("*");
        assert!(matches!(
            translate(b"<html>502</html>", &o, &mut h),
            Err(AppsError::Json(_))
        ));
        let full = fixture("zdd_apps.json");
        assert!(matches!(
            translate(&full[..full.len() / 2], &o, &mut h),
            Err(AppsError::Json(_))
        ));
        assert_eq!(
            translate(b"{\"message\": \"x\"}", &o, &mut h),
            Err(AppsError::Shape)
        );
        assert_eq!(
            translate(b"{\"apps\": []}", &o, &mut h),
            Ok(Translation::default())
        );
    }

    #[test]
    fn thousand_real_apps_with_synthetic_tasks() {
        let mut v: Value = serde_json::from_slice(&fixture("apps_1000_real.json")).unwrap();
        let apps = v["apps"].as_array_mut().unwrap();
        let mut expected = 0;
        for (i, app) in apps.iter_mut().enumerate() {
            let ports = port_entries(app).len();
            expected += port_entries(app)
                .iter()
                .filter(|(p, _)| p.is_some())
                .count();
            let tasks: Vec<Value> = (0..10)
                .map(|k| json!({"id": format!("t{i}.{k}"), "host": format!("10.2.{}.{}", i % 250, k + 1),
                                "ports": (0..ports).map(|p| 31000 + p).collect::<Vec<_>>(), "state": "TASK_RUNNING"}))
                .collect();
            app["tasks"] = Value::Array(tasks);
            app["healthChecks"] = json!([]);
        }
        let body = serde_json::to_vec(&v).unwrap();
        let t = run(&body, "*");
        assert_eq!(t.services.len(), expected);
        assert!(
            expected > 900,
            "most of the real apps have a service port: {expected}"
        );
        assert!(t.services.iter().all(|s| s.backends.len() == 10));
    }

    #[test]
    fn vip_addresses_stay_inside_the_network() {
        let net = ("127.11.0.0".parse().unwrap(), 16);
        for name in ["/a", "/dcos-101/app2", "/x/y/z", ""] {
            let a = vip_address(name, net);
            assert_eq!(a, vip_address(name, net), "deterministic");
            let o = a.octets();
            assert_eq!((o[0], o[1]), (127, 11));
            assert!(
                a != "127.11.0.0".parse::<Ipv4Addr>().unwrap()
                    && a != "127.11.255.255".parse::<Ipv4Addr>().unwrap()
            );
        }
    }
}
