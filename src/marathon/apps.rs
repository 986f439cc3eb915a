//! Marathon apps → services, the way Marathon-LB reads them. Pure: JSON in, services
//! out; the control thread does the fetching.
//!
//! Shapes handled: `portDefinitions` (host networking), legacy `ports`,
//! `container.docker.portMappings` (BRIDGE, before Marathon 1.5),
//! `container.portMappings` with `networks` (1.5), and IP-per-task (`ipAddress`, or a
//! `container` network) where backends are the task IP and container port.

pub use super::labels::IgnoredLabel;
use super::labels::Verdict;
use crate::config::{Balance, HashKey};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

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
    /// Kept in maintenance by a blue/green deploy (see [`super::bluegreen`]): no new
    /// connections, established ones continue.
    Maint,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskBackend {
    pub task_id: String,
    pub addr: SocketAddr,
    pub state: TaskState,
    /// Its server name as Marathon-LB writes it (and `zdd.py` looks it up): see
    /// [`task_server_name`].
    pub name: String,
}

/// The server name Marathon-LB gives a task's backend: `<ip>_<port>`, or
/// `<host>_<ip>_<port>` when the task's agent (`host`: a name, or another address,
/// IP-per-task) is not the address the task is reached at; every character but
/// letters, digits and `-` written `_`.
pub fn task_server_name(host: Option<&str>, addr: SocketAddr) -> String {
    let ip = addr.ip().to_string();
    match host.filter(|h| *h != ip) {
        Some(h) => format!("{h}_{ip}_{}", addr.port())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
        None => crate::snapshot::server_name(addr),
    }
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
    /// `HAPROXY_{n}_PATH`: routed by this path prefix on the shared HTTP listener.
    pub path: Option<String>,
    /// `HAPROXY_{n}_STICKY=true`: cookie stickiness.
    pub sticky: bool,
    /// `HAPROXY_{n}_REDIRECT_TO_HTTPS=true`.
    pub redirect_to_https: bool,
    /// `HAPROXY_{n}_SSL_CERT`: certificates (comma-separated paths) added to those
    /// served on `[https] listen`, as Marathon-LB adds them to its :443 `bind`.
    pub ssl_certs: Vec<PathBuf>,
    /// `HAPROXY_{n}_BIND_OPTIONS` with `ssl`: TLS on the service's own port, with the
    /// certificates its `crt` options name (none: `[tls] certificates`).
    pub bind_tls: Option<Vec<PathBuf>>,
    /// The active check derived from the app's Marathon health check for this port
    /// (and Marathon-LB's labels): see [`super::health`].
    pub health: Option<crate::config::HealthCheck>,
    /// `HAPROXY_{n}_BACKEND_SERVER_OPTIONS` with `send-proxy` or `send-proxy-v2`: a
    /// PROXY header before the first byte to every backend.
    pub send_proxy: Option<crate::config::SendProxy>,
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
    /// App ports and VIPs not served, and why: a name HAProxy would refuse (see
    /// [`crate::config::is_service_name`]), or access control sluice does not have
    /// (`HAPROXY_{n}_AUTH`: see [`super::labels`]). Reported with the services a
    /// merge leaves out.
    pub left_out: Vec<String>,
    /// Marathon-LB labels sluice does not follow on the apps it serves, in order, once.
    pub ignored: Vec<IgnoredLabel>,
}

impl Translation {
    /// Every `HAPROXY_{n}_SSL_CERT` certificate, once, in the order first named.
    pub fn ssl_certs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for p in self.services.iter().flat_map(|s| &s.ssl_certs) {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }
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
    instances: Option<Value>,
    version_info: Option<Value>,
    tasks: Option<Vec<Task>>,
}

/// The fields of a task that matter here.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct Task {
    pub(super) id: String,
    host: Option<String>,
    ports: Option<Vec<Value>>,
    state: Option<String>,
    ip_addresses: Option<Vec<TaskIp>>,
    health_check_results: Option<Vec<HealthResult>>,
    /// Kept in maintenance by its blue/green deploy (set by the merge, not read).
    #[serde(skip)]
    pub(super) maint: bool,
}

impl Task {
    /// One of its health check results says alive (Marathon-LB's count of a new
    /// colour's healthy tasks).
    pub(super) fn any_alive(&self) -> bool {
        self.health_check_results
            .iter()
            .flatten()
            .any(|r| r.alive == Some(true))
    }
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
            ("instances", self.instances),
            ("versionInfo", self.version_info),
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
    let apps = parsed.apps.ok_or(AppsError::Shape)?;
    let apps = super::bluegreen::merge_groups(apps.into_iter().map(AppFields::split).collect());
    for (app, tasks) in apps {
        translate_app(&app, &tasks, opts, health, &mut out);
    }
    out.services
        .sort_by(|a, b| a.listen.cmp(&b.listen).then(a.name.cmp(&b.name)));
    out.ignored.sort();
    out.ignored.dedup();
    Ok(out)
}

/// HAProxy `bind` options: with `ssl`, the files of their `crt` options.
fn bind_tls(options: &str) -> Option<Vec<PathBuf>> {
    let words: Vec<&str> = options.split_whitespace().collect();
    if !words.contains(&"ssl") {
        return None;
    }
    let crts = words
        .windows(2)
        .filter(|w| w[0] == "crt")
        .map(|w| PathBuf::from(w[1]))
        .collect();
    Some(crts)
}

/// HAProxy `server` options: `send-proxy-v2` (or `send-proxy`, v1), the last one
/// named winning as in HAProxy.
fn server_send_proxy(options: &str) -> Option<crate::config::SendProxy> {
    use crate::config::SendProxy;
    options.split_whitespace().fold(None, |v, w| match w {
        "send-proxy" => Some(SendProxy::V1),
        "send-proxy-v2" | "send-proxy-v2-ssl" | "send-proxy-v2-ssl-cn" => Some(SendProxy::V2),
        _ => v,
    })
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

/// A task's state, with a blue/green deploy's maintenance over serving.
fn deploy_state(
    app: &Value,
    task: &Task,
    opts: &Options,
    health: &mut HealthMemory,
) -> Option<TaskState> {
    match task_state(app, task, opts, health)? {
        TaskState::Serving if task.maint => Some(TaskState::Maint),
        state => Some(state),
    }
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
    let tasks: Vec<(&Task, IpAddr, Vec<u16>, TaskState)> = tasks
        .iter()
        .filter_map(|t| {
            let state = deploy_state(app, t, opts, health)?;
            let (ip, ports) = task_endpoint(app, t, per_task)?;
            Some((t, ip, ports, state))
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
    // The labels sluice does not simply follow, with what it makes of them.
    let verdicts: Vec<(&str, Verdict)> = labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| (k.as_str(), super::labels::verdict(k)))
        .filter(|(_, v)| *v != Verdict::Followed)
        .collect();
    let ignored = |port: Option<usize>, out: &mut Translation| {
        let here = verdicts
            .iter()
            .filter(|(_, v)| *v == Verdict::Ignored(port));
        out.ignored.extend(here.map(|(k, _)| IgnoredLabel {
            app_id: app_id.to_owned(),
            label: (*k).to_owned(),
        }));
    };
    let mut in_group = false;
    for (n, (service_port, entry)) in entries.iter().enumerate() {
        let backends: Vec<TaskBackend> = tasks
            .iter()
            .filter_map(|(t, ip, ports, state)| {
                let addr = SocketAddr::new(*ip, *ports.get(n)?);
                Some(TaskBackend {
                    task_id: t.id.clone(),
                    addr,
                    state: *state,
                    name: task_server_name(t.host.as_deref(), addr),
                })
            })
            .collect();
        vips(app_id, n, entry, opts, &backends, out);
        let key = |k: &str| format!("HAPROXY_{n}_{k}");
        let group = label(labels, &key("GROUP")).or_else(|| label(labels, "HAPROXY_GROUP"));
        if opts.group != "*" && group != Some(opts.group.as_str()) {
            continue;
        }
        in_group = true;
        ignored(Some(n), out);
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
        let path = label(labels, &key("PATH"))
            .map(str::trim)
            .filter(|p| p.starts_with('/') && !p.bytes().any(|b| b <= b' '))
            .map(str::to_owned);
        let flag = |k: &str| label(labels, &key(k)).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mode = match label(labels, &key("MODE")) {
            Some("http") => AppMode::Http,
            Some("tcp") => AppMode::Tcp,
            _ if !vhosts.is_empty() || (n == 0 && http_check) => AppMode::Http,
            _ => AppMode::Tcp,
        };
        let http = mode == AppMode::Http;
        let mut health = super::health::derive(app, labels, n, Some(service_port), http);
        if let Some(h) = health
            .as_mut()
            .filter(|h| h.kind == crate::config::CheckKind::Http)
        {
            // The first exact vhost, as for a `[service.health]` without `host`.
            // A label is anyone's text: one that is no host name leaves the check
            // on the backend's address, as a service without vhosts.
            h.host = vhosts
                .iter()
                .find(|v| !v.starts_with("*."))
                .filter(|v| crate::config::is_check_host(v))
                .cloned();
        }
        let name = format!(
            "{}_{service_port}",
            app_id.trim_start_matches('/').replace('/', "_")
        );
        if let Some(why) = refusal(app_id, labels, n, &name, &verdicts) {
            out.left_out.push(why);
            continue;
        }
        let (balance, hash) = match label(labels, &key("BALANCE")) {
            Some("leastconn") => (Balance::Leastconn, HashKey::Tuple),
            Some("source") => (Balance::Maglev, HashKey::Source),
            _ => (Balance::Roundrobin, HashKey::Tuple),
        };
        out.services.push(AppService {
            app_id: app_id.to_owned(),
            port_index: n,
            name,
            listen: SocketAddr::new(bind, service_port),
            mode,
            balance,
            hash,
            vhosts,
            path,
            sticky: flag("STICKY"),
            redirect_to_https: flag("REDIRECT_TO_HTTPS"),
            ssl_certs: label(labels, &key("SSL_CERT"))
                .map(crate::config::comma_paths)
                .unwrap_or_default(),
            bind_tls: label(labels, &key("BIND_OPTIONS")).and_then(bind_tls),
            health,
            send_proxy: label(labels, &key("BACKEND_SERVER_OPTIONS")).and_then(server_send_proxy),
            backends,
        });
    }
    if in_group {
        ignored(None, out);
    }
}

/// Why port `n` of `app_id`, to be service `name`, is not served, if it is not: a
/// name HAProxy would refuse (Marathon-LB's HAProxy would fail to load it), or a
/// label restricting who reaches the port, which sluice would not enforce.
fn refusal(
    app_id: &str,
    labels: &Value,
    n: usize,
    name: &str,
    verdicts: &[(&str, Verdict)],
) -> Option<String> {
    if !crate::config::is_service_name(name) {
        let from = match label(labels, "HAPROXY_DEPLOYMENT_GROUP") {
            Some(g) => format!("HAPROXY_DEPLOYMENT_GROUP {g:?}"),
            None => format!("app id {app_id:?}"),
        };
        let rule = crate::config::SERVICE_NAME_RULE;
        return Some(format!("{name:?} (from {from}): a service name {rule}"));
    }
    verdicts.iter().find_map(|(k, v)| match v {
        Verdict::Refused(m, what) if *m == n => Some(format!(
            "{name} (app {app_id}): {k} ({what}) is not supported: left out rather than \
             served without it"
        )),
        _ => None,
    })
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
            // Shown as service `vip:<name>:<port>` wherever services are listed.
            if !crate::config::is_service_name(&name.replace('/', "_")) {
                out.left_out.push(format!(
                    "{k:?} {v:?} (app {app_id:?}): a VIP name may hold only letters, digits, \
                     '-', '_', '.', ':' and '/'"
                ));
                continue;
            }
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
#[path = "apps_tests.rs"]
mod tests;
