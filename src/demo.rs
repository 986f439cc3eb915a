//! `sluice demo`: three built-in HTTP backends that answer with their instance name,
//! an L4 VIP balancing over them like the DC/OS tutorial's app2, and the same three as
//! an HTTP service routed by Host with sticky sessions, as Marathon-LB would serve it.

use crate::config::{
    AdminConfig, BackendConfig, Balance, Config, HashKey, HttpConfig, HttpOptions, IoKind, Mode,
    Origin, ServerConfig, ServiceConfig, ServiceTls, TlsConfig, DEFAULT_TABLE_SIZE,
};
use crate::control::{self, Source};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

const INSTANCES: usize = 3;

/// The Host the demo's HTTP service answers to.
const VHOST: &str = "app2.example";

pub fn run(
    listen: SocketAddr,
    admin: SocketAddr,
    http: SocketAddr,
    https: SocketAddr,
    io: IoKind,
) -> anyhow::Result<()> {
    let mut backends = Vec::with_capacity(INSTANCES);
    for i in 1..=INSTANCES {
        let name = format!("app2-{i}");
        let l = TcpListener::bind("127.0.0.1:0")?;
        let addr = l.local_addr()?;
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || serve_backend(l, &name))?;
        backends.push(addr);
    }
    let list: Vec<BackendConfig> = backends
        .iter()
        .map(|&addr| BackendConfig { addr, weight: 1 })
        .collect();
    let cfg = Config {
        server: ServerConfig {
            io,
            // A demo on a workstation: within a default descriptor limit, so it starts
            // without the warning a production-sized max_connections would give.
            max_connections: 4096,
            ..ServerConfig::default()
        },
        admin: AdminConfig {
            listen: Some(admin),
            token: None,
        },
        http: HttpConfig {
            listen: Some(http),
            ..HttpConfig::default()
        },
        https: Some(https),
        https_proxy: Default::default(),
        tls: TlsConfig::default(),
        anycast: Default::default(),
        acme: None,
        marathon: None,
        origin: Origin::default(),
        services: vec![
            ServiceConfig {
                name: "app2".into(),
                mode: Mode::Tcp,
                listen: Some(listen),
                balance: Balance::Maglev,
                hash: HashKey::Tuple,
                table_size: DEFAULT_TABLE_SIZE,
                backends: list.clone(),
                draining: Vec::new(),
                maint: Vec::new(),
                server_names: Vec::new(),
                http: HttpOptions::default(),
                tls: ServiceTls::default(),
                health: None,
                proxy: Default::default(),
                anycast: false,
            },
            ServiceConfig {
                name: "app2-web".into(),
                mode: Mode::Http,
                listen: None,
                balance: Balance::Roundrobin,
                hash: HashKey::Tuple,
                table_size: DEFAULT_TABLE_SIZE,
                backends: list,
                draining: Vec::new(),
                maint: Vec::new(),
                server_names: Vec::new(),
                http: HttpOptions {
                    vhosts: vec![VHOST.into()],
                    sticky: true,
                    ..HttpOptions::default()
                },
                tls: ServiceTls::default(),
                health: None,
                proxy: Default::default(),
                anycast: false,
            },
        ],
    };
    let running = control::start(
        Source::Embedded(Box::new(cfg)),
        control::Lifecycle::default(),
    )?;
    let snap = running.published.load();
    let vip = snap.services[0].local.expect("the demo VIP listens");
    let front = snap
        .listeners
        .iter()
        .zip(&snap.fronts)
        .find(|(_, f)| matches!(f, crate::snapshot::Front::Http))
        .map(|(l, _)| l.local)
        .expect("the demo has an HTTP listener");
    let secure = snap
        .listeners
        .iter()
        .zip(&snap.fronts)
        .find(|(_, f)| matches!(f, crate::snapshot::Front::Https))
        .map(|(l, _)| l.local)
        .expect("the demo has an HTTPS listener");
    drop(snap);
    let admin = running.admin_addr.expect("the demo has an admin port");
    println!("sluice demo: VIP app2 listening on {vip} (L4, Maglev over {INSTANCES} backends)");
    for (i, b) in backends.iter().enumerate() {
        println!("  backend app2-{} on {b}", i + 1);
    }
    println!(
        "sluice demo: HTTP listening on {front} (L7: Host {VHOST} → app2-web, round-robin, sticky)"
    );
    println!(
        "sluice demo: HTTPS listening on {secure} (the same routes; a self-signed certificate)"
    );
    println!();
    println!("Try it: each new connection is hashed to one instance; watch the name change:");
    println!("  for i in $(seq 6); do curl -s http://{vip}/; done");
    println!(
        "HTTP mode: each request is balanced; with the sticky cookie a client keeps its instance:"
    );
    println!("  for i in $(seq 6); do curl -s -H 'Host: {VHOST}' http://{front}/; done");
    println!(
        "  for i in $(seq 6); do curl -s -c /tmp/sluice.jar -b /tmp/sluice.jar -H 'Host: {VHOST}' http://{front}/; done"
    );
    println!("The same over TLS (-k: the demo's certificate is self-signed):");
    println!("  curl -sk -H 'Host: {VHOST}' https://{secure}/");
    println!("Stats (HAProxy-compatible) and metrics:");
    println!("  curl -s 'http://{admin}/haproxy?stats;csv'");
    println!("  curl -s http://{admin}/metrics");
    println!("Stop with Ctrl-C.");
    running.serve_until_signalled()
}

/// A tiny HTTP/1.1 server: one answer per connection, naming the instance.
fn serve_backend(listener: TcpListener, name: &str) {
    for stream in listener.incoming().flatten() {
        let name = name.to_owned();
        // A thread per connection is fine for a demo; the data plane is the point.
        let _ = std::thread::Builder::new().spawn(move || answer(stream, &name));
    }
}

/// Answer requests on one connection until the client closes it (keep-alive, so the
/// HTTP mode can pool connections to the instance).
fn answer(mut s: TcpStream, name: &str) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let body = format!("Hello from {name}\n");
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        // Read one request head (bounded at 16 KiB); the demo ignores its content and
        // any body.
        let end = loop {
            if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if head.len() > 16 * 1024 {
                return;
            }
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        };
        head.drain(..end);
        if s.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}
