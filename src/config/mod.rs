//! Configuration: the types the rest of sluice consumes, and their defaults.
//!
//! Parsing is a pure function of the file's text ([`parse`]); every error carries
//! the line and column of the offending value so `sluice check` can point at it.

mod acme;
mod anycast;
mod health;
mod listen;
mod marathon;
mod parse;
mod proxy;
mod routes;
mod service;
mod tls;

pub use acme::{vhost_sets, AcmeConfig, ChallengeKind};
pub use health::{
    is_check_host, is_check_method, is_check_path, parse_expect, CheckKind, HealthCheck,
};
pub use listen::overlap;
pub use parse::{is_prime, parse, parse_with_warnings, ConfigError, Located};
pub use proxy::{AcceptProxy, Cidr, SendProxy, ServiceProxy};
pub use service::{is_service_name, SERVICE_NAME_RULE};
pub use tls::comma_paths;

use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole, validated configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub http: HttpConfig,
    /// `[https] listen`: the shared TLS listener (Marathon-LB's :443), routing like
    /// `[http] listen` after the handshake, or passing a connection through by SNI.
    pub https: Option<SocketAddr>,
    /// `[https] accept_proxy` and `proxy_trusted`.
    pub https_proxy: AcceptProxy,
    pub tls: TlsConfig,
    /// `[anycast]`: when the VIPs of `anycast = true` services are announced.
    pub anycast: AnycastConfig,
    /// `[acme]`: certificates obtained and renewed for the services asking (a
    /// service's `acme`, or `[https] acme` for all).
    pub acme: Option<AcmeConfig>,
    /// Absent: services come from the file alone.
    #[serde(skip)]
    pub marathon: Option<MarathonConfig>,
    #[serde(rename = "service")]
    pub services: Vec<ServiceConfig>,
    /// Where the file wrote what is checked only later, when it is put to use.
    #[serde(skip)]
    pub origin: Origin,
}

/// The owner of `[tls] certificates` in [`Origin::certificates`] and in messages.
pub const TLS_CERTIFICATES: &str = "[tls] certificates";

/// Where a file's settings were written, for the errors found only when they are put
/// to use (a listen address another process holds). Not part of what the
/// configuration means: configs that differ only in it compare equal.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The file, when the config came from one ([`load`]); [`parse`] sees only text.
    pub file: Option<String>,
    /// Each listen address's place, by owner: a service's name, or `[http] listen`.
    pub(crate) listens: std::collections::HashMap<String, Located>,
    /// `[marathon] token_file` and `credentials_file`, by key.
    pub(crate) marathon_files: Vec<(&'static str, Located)>,
    /// Each certificate list's place, by owner: a service's name, or `[tls]
    /// certificates`.
    pub(crate) certificates: std::collections::HashMap<String, Located>,
    /// `[acme] ca_bundle`'s place.
    pub(crate) acme_ca_bundle: Option<Located>,
}

impl PartialEq for Origin {
    fn eq(&self, _: &Origin) -> bool {
        true
    }
}

impl Origin {
    /// `file:line:column` (or `line:column`) of the listen address of `owner` (a
    /// service's name, or `[http] listen`), when the file wrote one.
    pub fn listen(&self, owner: &str) -> Option<String> {
        self.listens.get(owner).map(|at| self.place(at))
    }

    /// `file:line:column` (or `line:column`) of the certificate list of `owner` (a
    /// service's name, or `[tls] certificates`), when the file wrote one: a certificate
    /// that cannot be used is found only when it is read, and reported there.
    pub fn certificates(&self, owner: &str) -> Option<String> {
        self.certificates.get(owner).map(|at| self.place(at))
    }

    fn place(&self, at: &Located) -> String {
        match &self.file {
            Some(f) => format!("{f}:{}:{}", at.line, at.column),
            None => format!("{}:{}", at.line, at.column),
        }
    }
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

/// `[http]`: the shared HTTP listener (Marathon-LB's :80) and the limits every HTTP
/// connection lives by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpConfig {
    /// Where requests are routed to `mode = "http"` services by Host and path; absent
    /// means no shared listener (services may still have their own `listen`).
    pub listen: Option<SocketAddr>,
    /// A request line plus headers longer than this is answered 431.
    pub max_header_bytes: usize,
    /// The whole request head must arrive within this, and a request body may not pause
    /// for longer (else 408: the slowloris case, head and body).
    pub header_timeout_ms: u64,
    /// How long a client connection may wait between requests.
    pub keepalive_timeout_ms: u64,
    /// How long a backend may stay silent while sluice waits on it (to take request
    /// bytes, or to send response bytes the client is ready for): 504 before the
    /// response head, else the client is cut off.
    pub backend_timeout_ms: u64,
    /// Add X-Forwarded-For (extending the client's), X-Forwarded-Proto and -Port.
    pub forwarded_headers: bool,
    /// Idle keep-alive connections kept per backend per shard for reuse.
    pub pool_per_backend: usize,
    /// `accept_proxy` and `proxy_trusted` of `[http] listen`.
    pub accept_proxy: AcceptProxy,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: None,
            max_header_bytes: 16_384,
            header_timeout_ms: 10_000,
            keepalive_timeout_ms: 60_000,
            backend_timeout_ms: 60_000,
            forwarded_headers: true,
            pool_per_backend: 64,
            accept_proxy: AcceptProxy::default(),
        }
    }
}

/// `[tls]`: how TLS is terminated on `[https] listen` (and, unless a service names
/// its own certificates, on a service's `tls = true` port).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TlsConfig {
    /// PEM files or directories of them, read as HAProxy reads `crt`: each file a
    /// certificate chain and its key (or the key in `<file>.key`). Empty: a generated
    /// self-signed certificate, said loudly in the log.
    pub certificates: Vec<PathBuf>,
    pub min_version: TlsVersion,
    /// Protocols offered by ALPN, in order of preference.
    pub alpn: Vec<String>,
    /// Certificates Marathon labels add (`HAPROXY_{n}_SSL_CERT`), served on `[https]
    /// listen` beside `certificates`. Not a file setting.
    #[serde(skip)]
    pub from_marathon: Vec<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            certificates: Vec::new(),
            min_version: TlsVersion::Tls12,
            alpn: vec!["http/1.1".into()],
            from_marathon: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// A service's TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServiceTls {
    /// `tls = true`: TLS is terminated on the service's own `listen` (HTTP mode).
    pub terminate: bool,
    /// The service's own certificates for that port; empty: `[tls] certificates`.
    pub certificates: Vec<PathBuf>,
    /// TCP mode without a port of its own: TLS connections on `[https] listen` whose
    /// ClientHello names one of these (exact, or `*.` one label) pass through to the
    /// service untouched. Lower-case.
    pub sni: Vec<String>,
    /// Its vhosts' certificate comes from `[acme]` (its own `acme = true`, or
    /// `[https] acme = true`).
    pub acme: bool,
}

/// `[admin]`: the stats and metrics port. Absent means no admin port.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
pub struct AdminConfig {
    pub listen: Option<SocketAddr>,
    /// When set, every admin page but `/_haproxy_health_check` needs
    /// `Authorization: Bearer <token>` (else 401).
    #[serde(skip)]
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "********"))
            .finish()
    }
}

/// `[anycast]`: the hysteresis and timers of anycast VIPs' announcement. Read at
/// start (a change takes a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AnycastConfig {
    /// Good checks in a row before a withdrawn VIP is announced.
    pub rise: u32,
    /// Bad checks (no backend up) in a row before an announced VIP is withdrawn.
    pub fall: u32,
    /// How often each VIP is checked.
    pub interval_ms: u64,
    /// `sluice announce` withdraws everything and exits when the admin port has not
    /// answered for this long.
    pub admin_timeout_ms: u64,
    /// After SIGTERM, how long the VIPs are reported withdrawn while sluice still
    /// accepts on them (the routers converge), before draining.
    pub withdraw_grace_ms: u64,
}

impl Default for AnycastConfig {
    fn default() -> Self {
        AnycastConfig {
            rise: 3,
            fall: 2,
            interval_ms: 1000,
            admin_timeout_ms: 3000,
            withdraw_grace_ms: 3000,
        }
    }
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
    /// L4: bytes are forwarded untouched.
    Tcp,
    /// L7: HTTP/1.1 requests are parsed, routed and balanced one by one.
    Http,
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
    /// HTTP: the value of a request header (`hash = "header:NAME"`); the client IP
    /// when the request has none.
    Header,
    /// HTTP: the value of a cookie (`hash = "cookie:NAME"`); the client IP when absent.
    Cookie,
}

/// One `[[service]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceConfig {
    pub name: String,
    pub mode: Mode,
    /// Its own listening address. Optional for HTTP services routed on `[http] listen`.
    pub listen: Option<SocketAddr>,
    pub balance: Balance,
    pub hash: HashKey,
    pub table_size: u32,
    pub backends: Vec<BackendConfig>,
    /// Backends (among `backends`) that take no new connections while their
    /// established ones finish: tasks Marathon is killing. Not a file setting.
    #[serde(skip)]
    pub draining: Vec<SocketAddr>,
    /// Backends (among `backends`) a blue/green deploy keeps in maintenance: the old
    /// colour's tasks beyond those Marathon-LB would keep serving. No new connections,
    /// established ones continue with no deadline (the task is not going away yet).
    /// Not a file setting.
    #[serde(skip)]
    pub maint: Vec<SocketAddr>,
    /// Server names for the stats where the address alone does not give the one
    /// Marathon-LB writes (`<host>_<task ip>_<port>` for a task whose agent's name or
    /// address differs from the address it is reached at). Not a file setting.
    #[serde(skip)]
    pub server_names: Vec<(SocketAddr, String)>,
    pub http: HttpOptions,
    pub tls: ServiceTls,
    /// `[service.health]`: the active check of its backends, when it has one.
    pub health: Option<HealthCheck>,
    /// `accept_proxy`, `proxy_trusted` (on its own `listen`) and `send_proxy`.
    pub proxy: ServiceProxy,
    /// `anycast = true`: its listen address, a /32 or /128 on the host's loopback, is
    /// announced over BGP while it is served (see `src/anycast/`).
    pub anycast: bool,
}

/// The settings of an HTTP service (ignored in TCP mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpOptions {
    /// Host names routed to this service on `[http] listen`: exact, or `*.domain`.
    pub vhosts: Vec<String>,
    /// Requests whose path starts with this; the longest prefix wins.
    pub path_prefix: Option<String>,
    /// Cookie-based stickiness: a client keeps its backend while it is up.
    pub sticky: bool,
    pub sticky_cookie: String,
    /// Answer every request with a 301 to the same URL over https.
    pub redirect_to_https: bool,
    /// The header or cookie name hashed when `hash` is `header` or `cookie`.
    pub hash_name: String,
}

/// Marathon-LB's sticky cookie name.
pub const DEFAULT_STICKY_COOKIE: &str = "mesosphere_server_id";

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            vhosts: Vec::new(),
            path_prefix: None,
            sticky: false,
            sticky_cookie: DEFAULT_STICKY_COOKIE.into(),
            redirect_to_https: false,
            hash_name: String::new(),
        }
    }
}

impl ServiceConfig {
    /// `hash` as written in the file (`header:NAME`, `cookie:NAME` carry their name).
    pub fn hash_word(&self) -> String {
        match self.hash {
            HashKey::Header => format!("header:{}", self.http.hash_name),
            HashKey::Cookie => format!("cookie:{}", self.http.hash_name),
            h => word(&h).trim_matches('"').to_owned(),
        }
    }
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
    load_with_warnings(path).map(|(config, _)| config)
}

/// [`load`], with the warnings about a valid file (rendered
/// `file:line:column: warning: message`): settings that work but are likely mistakes.
pub fn load_with_warnings(path: &Path) -> Result<(Config, Vec<String>), Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{}: cannot read: {e}", path.display())])?;
    let file = path.display().to_string();
    let render = |errors: Vec<ConfigError>, prefix: &str| -> Vec<String> {
        errors
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e.message.insert_str(0, prefix);
                e.render_in(&file, &text)
            })
            .collect()
    };
    match parse_with_warnings(&text) {
        Ok((mut config, warnings)) => {
            config.origin.file = Some(file.clone());
            let unreadable = unreadable_files(&config);
            if !unreadable.is_empty() {
                return Err(unreadable);
            }
            Ok((config, render(warnings, "warning: ")))
        }
        Err(errors) => Err(render(errors, "")),
    }
}

/// The files `[marathon]` and `[acme] ca_bundle` name that cannot be read (or, for
/// `ca_bundle`, hold no PEM certificate) now, each error at its key: what `run`
/// would fail on, found by `check` too.
fn unreadable_files(config: &Config) -> Vec<String> {
    let file = config.origin.file.as_deref().unwrap_or("");
    let mut errors = Vec::new();
    let bundle = config.acme.as_ref().and_then(|a| a.ca_bundle.as_ref());
    if let (Some(pem), Some(at)) = (bundle, &config.origin.acme_ca_bundle) {
        if let Err(e) = crate::acme::store::check_root(pem) {
            errors.push(format!(
                "{file}:{}:{}: [acme] ca_bundle: {e}",
                at.line, at.column
            ));
        }
    }
    let Some(m) = &config.marathon else {
        return errors;
    };
    for (key, at) in &config.origin.marathon_files {
        let path = match *key {
            "token_file" => &m.token_file,
            _ => &m.credentials_file,
        };
        let Some(path) = path else { continue };
        if let Err(e) = std::fs::read(path) {
            errors.push(format!(
                "{file}:{}:{}: cannot read marathon {key} {}: {e}",
                at.line,
                at.column,
                path.display()
            ));
        }
    }
    errors
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
        let h = &self.http;
        let _ = write!(out, "\n[http]\n");
        if let Some(l) = h.listen {
            let _ = writeln!(out, "listen = {}", q(&l.to_string()));
        }
        let _ = write!(
            out,
            "max_header_bytes = {}\nheader_timeout_ms = {}\nkeepalive_timeout_ms = {}\n\
             backend_timeout_ms = {}\nforwarded_headers = {}\npool_per_backend = {}\n",
            h.max_header_bytes,
            h.header_timeout_ms,
            h.keepalive_timeout_ms,
            h.backend_timeout_ms,
            h.forwarded_headers,
            h.pool_per_backend
        );
        out.push_str(&h.accept_proxy.to_toml());
        let paths = |list: &[PathBuf]| -> String {
            let l: Vec<String> = list.iter().map(|p| q(&p.display().to_string())).collect();
            l.join(", ")
        };
        if let Some(l) = self.https {
            let _ = write!(out, "\n[https]\nlisten = {}\n", q(&l.to_string()));
            if self.acme.as_ref().is_some_and(|a| a.all_vhosts) {
                out.push_str("acme = true\n");
            }
            out.push_str(&self.https_proxy.to_toml());
        }
        let t = &self.tls;
        let alpn: Vec<String> = t.alpn.iter().map(|p| q(p)).collect();
        let _ = write!(
            out,
            "\n[tls]\ncertificates = [{}]\nmin_version = {}\nalpn = [{}]\n",
            paths(&t.certificates),
            word(&t.min_version),
            alpn.join(", ")
        );
        if let Some(a) = self.admin.listen {
            let _ = write!(out, "\n[admin]\nlisten = {}\n", q(&a.to_string()));
            if self.admin.token.is_some() {
                // Never echoed.
                let _ = writeln!(out, "token = \"********\"");
            } else {
                let _ = writeln!(
                    out,
                    "# token not set: every page is open to whoever reaches listen"
                );
            }
        }
        if let Some(a) = &self.acme {
            out.push_str(&a.to_toml());
        }
        if self.anycast != AnycastConfig::default() || self.services.iter().any(|s| s.anycast) {
            out.push_str(&self.anycast.to_toml());
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
                "\n[[service]]\nname = {}\nmode = {}\n",
                q(&s.name),
                word(&s.mode)
            );
            if let Some(l) = s.listen {
                let _ = writeln!(out, "listen = {}", q(&l.to_string()));
            }
            if s.anycast {
                out.push_str("anycast = true\n");
            }
            let _ = writeln!(out, "balance = {}", word(&s.balance));
            // Only Maglev hashes (and says how).
            if s.balance == Balance::Maglev {
                let _ = writeln!(out, "hash = {}", q(&s.hash_word()));
            }
            let _ = writeln!(out, "table_size = {}", s.table_size);
            if s.mode == Mode::Http {
                let h = &s.http;
                let vhosts: Vec<String> = h.vhosts.iter().map(|v| q(v)).collect();
                let _ = writeln!(out, "vhosts = [{}]", vhosts.join(", "));
                if let Some(p) = &h.path_prefix {
                    let _ = writeln!(out, "path_prefix = {}", q(p));
                }
                let _ = write!(
                    out,
                    "sticky = {}\nsticky_cookie = {}\nredirect_to_https = {}\n",
                    h.sticky,
                    q(&h.sticky_cookie),
                    h.redirect_to_https
                );
            }
            if s.tls.terminate {
                let _ = write!(
                    out,
                    "tls = true\ncertificates = [{}]\n",
                    paths(&s.tls.certificates)
                );
            }
            if s.tls.acme {
                out.push_str("acme = true\n");
            }
            if !s.tls.sni.is_empty() {
                let sni: Vec<String> = s.tls.sni.iter().map(|n| q(n)).collect();
                let _ = writeln!(out, "sni = [{}]", sni.join(", "));
            }
            out.push_str(&s.proxy.accept.to_toml());
            if let Some(v) = s.proxy.send {
                let _ = writeln!(out, "send_proxy = {}", q(v.word()));
            }
            let _ = write!(out, "backends = [\n    {},\n]\n", backends.join(",\n    "));
            if let Some(h) = &s.health {
                out.push_str(&h.to_toml());
            }
        }
        out
    }
}

/// The TOML word of a unit enum value (its serde name).
fn word<T: Serialize>(v: &T) -> String {
    toml::Value::try_from(v).map_or_else(|_| String::new(), |w| w.to_string())
}
