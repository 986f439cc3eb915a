//! `sluice demo`: three built-in HTTP backends that answer with their instance name and
//! an L4 VIP balancing over them, like the DC/OS tutorial's app2.

use crate::config::{
    AdminConfig, BackendConfig, Balance, Config, HashKey, IoKind, Mode, ServerConfig,
    ServiceConfig, DEFAULT_TABLE_SIZE,
};
use crate::control::{self, Source};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

const INSTANCES: usize = 3;

pub fn run(listen: SocketAddr, admin: SocketAddr, io: IoKind) -> anyhow::Result<()> {
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
    let cfg = Config {
        server: ServerConfig {
            io,
            ..ServerConfig::default()
        },
        admin: AdminConfig {
            listen: Some(admin),
        },
        http: Default::default(),
        marathon: None,
        services: vec![ServiceConfig {
            name: "app2".into(),
            mode: Mode::Tcp,
            listen: Some(listen),
            balance: Balance::Maglev,
            hash: HashKey::Tuple,
            table_size: DEFAULT_TABLE_SIZE,
            backends: backends
                .iter()
                .map(|&addr| BackendConfig { addr, weight: 1 })
                .collect(),
            draining: Vec::new(),
            http: Default::default(),
        }],
    };
    let running = control::start(Source::Embedded(Box::new(cfg)))?;
    let vip = running.published.load().services[0]
        .local
        .expect("the demo VIP listens");
    let admin = running.admin_addr.expect("the demo has an admin port");
    println!("sluice demo: VIP app2 listening on {vip} (L4, Maglev over {INSTANCES} backends)");
    for (i, b) in backends.iter().enumerate() {
        println!("  backend app2-{} on {b}", i + 1);
    }
    println!();
    println!("Try it: each new connection is hashed to one instance; watch the name change:");
    println!("  for i in $(seq 6); do curl -s http://{vip}/; done");
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

fn answer(mut s: TcpStream, name: &str) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    // Read the request head (bounded at 16 KiB); the demo ignores its content.
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = format!("Hello from {name}\n");
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes());
}
