//! Configuration: the types the rest of sluice consumes, and their defaults.
//!
//! Parsing is a pure function of the file's text ([`parse`]); every error carries
//! the line and column of the offending value so `sluice check` can point at it.

mod parse;

pub use parse::{is_prime, parse, ConfigError, Located};

use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole, validated configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    /// Absent: services come from the file alone.
    #[serde(skip)]
    pub marathon: Option<MarathonConfig>,
    #[serde(rename = "service")]
    pub services: Vec<ServiceConfig>,
}

/// `[marathon]`: services from Marathon apps, as Marathon-LB serves them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MarathonConfig {
    /// Tried in order; a standby's redirect to the leader is followed.
    pub urls: Vec<String>,
    /// Serve apps whose HAPROXY_GROUP (or HAPROXY_{n}_GROUP) matches; "*" serves all.
    pub group: String,
    pub poll_interval_ms: u64,
    /// Hold `/v2/events` open and re-fetch on status, health and deployment events.
    pub events: bool,
    /// An event stream silent (not even a heartbeat) for this long is reconnected.
    pub events_silence_ms: u64,
    /// Where service ports are bound (HAPROXY_{n}_BIND_ADDR overrides).
    pub bind_address: std::net::IpAddr,
    /// Named VIPs (`VIP_n = "/name:port"`) get their addresses in this IPv4 network.
    pub vip_cidr: (std::net::Ipv4Addr, u8),
    /// For apps with health checks, only tasks whose checks pass take connections.
    pub health_check: bool,
    /// How long connections to a task that is gone or being killed may continue.
    pub drain_timeout_ms: u64,
    /// HTTP basic authentication.
    pub username: Option<String>,
    pub password: Option<String>,
    /// A file holding `user:password`, for basic authentication.
    pub credentials_file: Option<std::path::PathBuf>,
    /// A file holding a DC/OS authentication token (`Authorization: token=…`).
    pub token_file: Option<std::path::PathBuf>,
}

impl Default for MarathonConfig {
    fn default() -> Self {
        MarathonConfig {
            urls: vec!["http://127.0.0.1:8080".into()],
            group: "external".into(),
            poll_interval_ms: 1000,
            events: true,
            events_silence_ms: 30_000,
            bind_address: std::net::IpAddr::from([0, 0, 0, 0]),
            vip_cidr: (std::net::Ipv4Addr::new(127, 11, 0, 0), 16),
            health_check: true,
            drain_timeout_ms: 30_000,
            username: None,
            password: None,
            credentials_file: None,
            token_file: None,
        }
    }
}

/// `[admin]`: the stats and metrics port. Absent means no admin port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AdminConfig {
    pub listen: Option<SocketAddr>,
}

/// `[server]`: process-wide settings. Only `workers` and `io` need a restart to change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerConfig {
    /// Shard threads; 0 means one per available core.
    pub workers: usize,
    pub io: IoKind,
    /// Established (client-side) connections allowed at once, over all shards.
    pub max_connections: u32,
    pub connect_timeout_ms: u64,
    /// A connection with no byte in either direction for this long is closed.
    pub idle_timeout_ms: u64,
    /// After SIGTERM/SIGINT, how long established connections may take to finish.
    pub shutdown_grace_ms: u64,
    pub splice: SpliceMode,
    /// With `splice = "auto"`, a flow direction switches to splice after this many bytes.
    pub splice_threshold_bytes: u64,
}

pub const DEFAULT_TABLE_SIZE: u32 = 65537;
/// The largest table size accepted; a table of this many u16 slots is 32 MiB.
pub const MAX_TABLE_SIZE: u32 = 16_777_213;
pub const MAX_WEIGHT: u32 = 1000;
pub const MAX_WORKERS: usize = 256;
/// Backends per service; backend ids are u16 in the Maglev table.
pub const MAX_BACKENDS: usize = 4096;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            workers: 0,
            io: IoKind::Auto,
            max_connections: 100_000,
            connect_timeout_ms: 3000,
            idle_timeout_ms: 3_600_000,
            shutdown_grace_ms: 10_000,
            splice: SpliceMode::Auto,
            splice_threshold_bytes: 64 * 1024,
        }
    }
}

impl ServerConfig {
    /// The number of shard threads this config asks for on this machine.
    pub fn effective_workers(&self) -> usize {
        if self.workers != 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoKind {
    /// io_uring when the kernel allows it, else epoll.
    Auto,
    Uring,
    Epoll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpliceMode {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    Maglev,
    Roundrobin,
    Leastconn,
}

/// What a Maglev service hashes to pick a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashKey {
    /// The client's IP address: one client always lands on one backend.
    Source,
    /// Client IP and port.
    Tuple,
}

/// One `[[service]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceConfig {
    pub name: String,
    pub mode: Mode,
    pub listen: SocketAddr,
    pub balance: Balance,
    pub hash: HashKey,
    pub table_size: u32,
    pub backends: Vec<BackendConfig>,
    /// Backends (among `backends`) that take no new connections while their
    /// established ones finish: tasks Marathon is killing. Not a file setting.
    #[serde(skip)]
    pub draining: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct BackendConfig {
    pub addr: SocketAddr,
    pub weight: u32,
}

/// Where `sluice run` looks when no `--config` is given, in order.
pub const DEFAULT_PATHS: [&str; 2] = ["./sluice.toml", "/etc/sluice/sluice.toml"];

/// The first default config file that exists.
pub fn find_default() -> Option<PathBuf> {
    DEFAULT_PATHS
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .map(Path::to_path_buf)
}

/// Read and parse a config file; errors are rendered `file:line:column: message`.
pub fn load(path: &Path) -> Result<Config, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{}: cannot read: {e}", path.display())])?;
    let file = path.display().to_string();
    parse(&text).map_err(|errors| errors.iter().map(|e| e.render_in(&file, &text)).collect())
}

impl Config {
    /// The effective configuration as TOML, every default filled in; it parses back to
    /// the same `Config`.
    pub fn to_toml(&self) -> String {
        use std::fmt::Write;
        #[derive(Serialize)]
        struct Server<'a> {
            server: &'a ServerConfig,
        }
        let mut out = toml::to_string(&Server {
            server: &self.server,
        })
        .expect("serializes");
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        if let Some(a) = self.admin.listen {
            let _ = write!(out, "\n[admin]\nlisten = {}\n", q(&a.to_string()));
        }
        if let Some(m) = &self.marathon {
            let urls: Vec<String> = m.urls.iter().map(|u| q(u)).collect();
            let _ = write!(
                out,
                "\n[marathon]\nurls = [{}]\ngroup = {}\npoll_interval_ms = {}\nevents = {}\nevents_silence_ms = {}\n\
                 bind_address = {}\nvip_cidr = {}\nhealth_check = {}\ndrain_timeout_ms = {}\n",
                urls.join(", "),
                q(&m.group),
                m.poll_interval_ms,
                m.events,
                m.events_silence_ms,
                q(&m.bind_address.to_string()),
                q(&format!("{}/{}", m.vip_cidr.0, m.vip_cidr.1)),
                m.health_check,
                m.drain_timeout_ms,
            );
            let paths = [
                ("credentials_file", &m.credentials_file),
                ("token_file", &m.token_file),
            ];
            for (k, v) in paths {
                if let Some(p) = v {
                    let _ = writeln!(out, "{k} = {}", q(&p.display().to_string()));
                }
            }
            if let Some(u) = &m.username {
                let _ = writeln!(out, "username = {}", q(u));
            }
            if m.password.is_some() {
                // Never echoed.
                let _ = writeln!(out, "password = \"********\"");
            }
        }
        for s in &self.services {
            let backends: Vec<String> = s
                .backends
                .iter()
                .map(|b| {
                    format!(
                        "{{ addr = {}, weight = {} }}",
                        q(&b.addr.to_string()),
                        b.weight
                    )
                })
                .collect();
            let _ = write!(
                out,
                "\n[[service]]\nname = {}\nmode = {}\nlisten = {}\nbalance = {}\nhash = {}\n\
                 table_size = {}\nbackends = [\n    {},\n]\n",
                q(&s.name),
                word(&s.mode),
                q(&s.listen.to_string()),
                word(&s.balance),
                word(&s.hash),
                s.table_size,
                backends.join(",\n    ")
            );
        }
        out
    }
}

/// The TOML word of a unit enum value (its serde name).
fn word<T: Serialize>(v: &T) -> String {
    toml::Value::try_from(v).map_or_else(|_| String::new(), |w| w.to_string())
}
