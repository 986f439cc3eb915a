//! The PROXY protocol with real peers: HAProxy 2.6 (`send-proxy`, `send-proxy-v2`) in
//! front of sluice's `accept_proxy` listeners, and sluice's `send_proxy` to HAProxy
//! (`accept-proxy`) and nginx (`listen … proxy_protocol`) behind it; each checks the
//! client address that arrives, the client bound to 127.0.0.2 (or .3) so that it
//! differs from every socket's own. Then bad input against sluice directly, each a
//! close and a counter. Every test runs on both reactors.

mod common;

use common::http::{curl, HttpServer};
use common::tls::Pki;
use common::*;
use sluice::proxy::{self, Parsed};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether a socket listens on 127.0.0.1:`port` (`/proc/net/tcp`, state 0A).
fn listens(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "0A"
        })
}

/// HAProxy or nginx, started from a config in a temp dir; killed on drop.
struct Peer {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Peer {
    fn start(cmd: &mut Command, addr: SocketAddr, dir: tempfile::TempDir) -> Peer {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy and nginx are installed");
        let peer = Peer {
            child,
            addr,
            _dir: dir,
        };
        // Not by connecting: a probe through HAProxy would reach sluice as a client.
        wait_for("the peer to listen", || listens(addr.port()).then_some(()));
        peer
    }

    /// HAProxy with `body` after a `global`/`defaults` preamble; `{port}` is its port.
    fn haproxy(body: &str) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = format!(
            "global\n  maxconn 200\ndefaults\n  timeout connect 5s\n  timeout client 30s\n  \
             timeout server 30s\n{}",
            body.replace("{port}", &port.to_string())
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let check = Command::new("haproxy")
            .args(["-c", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(check.status.success(), "{check:?}");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        Peer::start(
            Command::new("haproxy").arg("-db").arg("-f").arg(&path),
            addr,
            dir,
        )
    }

    /// nginx answering every request with the address its PROXY header named.
    fn nginx() -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display();
        let cfg = format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n  \
             client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;\n  \
             uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n  server {{\n    \
             listen 127.0.0.1:{port} proxy_protocol;\n    \
             location / {{ return 200 \"src=$proxy_protocol_addr\"; }}\n  }}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, cfg).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        Peer::start(
            Command::new("nginx")
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&path),
            addr,
            dir,
        )
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // TERM, so that nginx's master stops its worker too (a KILLed master leaves
        // the worker running); KILL if it has not gone within the bound.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = std::time::Instant::now();
        while start.elapsed() < PATIENCE {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(from.parse().unwrap(), 0).into())
        .unwrap();
    s.connect(&to.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

/// What a PROXY-reading backend saw of one connection: the header's client, the
/// authority TLV, and the first bytes after the header.
#[derive(Debug)]
struct Arrived {
    client: Option<SocketAddr>,
    /// The address the client connected to, as the header said.
    dst: Option<SocketAddr>,
    authority: Option<String>,
}

/// A backend that reads a PROXY header (either version), reports it, then echoes.
fn proxy_backend() -> (Backend, mpsc::Receiver<Arrived>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let b = Backend::spawn(move |mut c| {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let h = loop {
            match proxy::parse(&buf) {
                Parsed::NeedMore => {}
                Parsed::Header(h) => break h,
                Parsed::Error(e) => panic!("backend got a bad header: {e:?}"),
            }
            match c.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let authority = h
            .authority
            .map(|(a, b)| String::from_utf8_lossy(&buf[a..b]).into_owned());
        let client = h.addrs.map(|(src, _)| src);
        let dst = h.addrs.map(|(_, dst)| dst);
        let _ = tx.lock().unwrap().send(Arrived {
            client,
            dst,
            authority,
        });
        let _ = c.write_all(&buf[h.consumed..]);
        let mut r = c.try_clone().unwrap();
        let _ = std::io::copy(&mut r, &mut c);
        let _ = c.shutdown(Shutdown::Write);
    });
    (b, rx)
}

fn recv(rx: &mpsc::Receiver<Arrived>) -> Arrived {
    rx.recv_timeout(PATIENCE).expect("the backend saw a header")
}

const TRUSTED: &str = "accept_proxy = true\nproxy_trusted = [\"127.0.0.0/8\"]\n";

/// `GET url` with `Host: web.example` from 127.0.0.2: the body.
fn web_from_2(url: &str) -> String {
    curl(&[
        "-s",
        "--interface",
        "127.0.0.2",
        "-H",
        "Host: web.example",
        url,
    ])
}

fn haproxy_in_front(to: SocketAddr, option: &str) -> Peer {
    Peer::haproxy(&format!(
        "frontend f\n  mode tcp\n  bind 127.0.0.1:{{port}}\n  default_backend b\n\
         backend b\n  mode tcp\n  server s {to} {option}\n"
    ))
}

/// HAProxy (`send-proxy-v2`, then `send-proxy`) in front of `[http] accept_proxy`: the
/// backend's X-Forwarded-For names the client HAProxy accepted.
fn haproxy_in_front_of_http(io: &str) {
    let web = HttpServer::start("web");
    let cfg = format!(
        "{}[admin]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n{TRUSTED}\n\
         [[service]]\nname = \"web\"\nmode = \"http\"\nvhosts = [\"web.example\"]\n\
         backends = [\"{}\"]\n",
        server(io, ""),
        web.addr
    );
    let sluice = Sluice::start(&cfg);
    for option in ["send-proxy-v2", "send-proxy"] {
        let front = haproxy_in_front(sluice.http(), option);
        let url = format!("http://{}/", front.addr);
        let body = web_from_2(&url);
        assert_eq!(body, "web", "{option}");
        let seen = web.requests().pop().unwrap();
        assert!(
            seen.head.contains("x-forwarded-for: 127.0.0.2"),
            "{option}: {}",
            seen.head
        );
    }
    let admin = sluice.admin();
    assert_eq!(
        metric_where(
            admin,
            "sluice_proxy_protocol_headers_total",
            "version=\"2\""
        ),
        1.0
    );
    assert_eq!(
        metric_where(
            admin,
            "sluice_proxy_protocol_headers_total",
            "version=\"1\""
        ),
        1.0
    );
}

/// HAProxy `send-proxy` in front of a TCP service with `accept_proxy` and
/// `send_proxy = "v2"`: the backend's header names HAProxy's client; the bytes flow
/// both ways untouched.
fn haproxy_in_front_of_tcp_relayed_onward(io: &str) {
    let (backend, seen) = proxy_backend();
    let cfg = format!(
        "{}[[service]]\nname = \"db\"\nlisten = \"127.0.0.1:0\"\n{TRUSTED}send_proxy = \"v2\"\n\
         backends = [\"{}\"]\n",
        server(io, ""),
        backend.addr
    );
    let sluice = Sluice::start(&cfg);
    let front = haproxy_in_front(sluice.addr("db"), "send-proxy");
    let mut c = connect_from("127.0.0.2", front.addr);
    assert_eq!(
        roundtrip(&mut c, b"hello through two proxies"),
        b"hello through two proxies"
    );
    let arrived = recv(&seen);
    assert_eq!(
        arrived.client.map(|a| a.ip()),
        Some("127.0.0.2".parse().unwrap())
    );
    assert_eq!(
        arrived.dst,
        Some(front.addr),
        "the address HAProxy's client reached"
    );
    assert_eq!(arrived.authority, None);
}

/// HAProxy `send-proxy-v2` in front of `[https] accept_proxy`: the PROXY header comes
/// before the ClientHello; a terminated connection's backend hears the client in
/// X-Forwarded-For, and a name passed through by SNI reaches a `send_proxy = "v2"`
/// service's backend with the client and the name (an authority TLV).
fn haproxy_in_front_of_https(io: &str) {
    let pki = Pki::new();
    let cert = pki.write_leaf("web.pem", &["web.example", "pp.example"]);
    let web = HttpServer::start("web");
    let (db, seen) = proxy_backend();
    // Behind sluice: HAProxy answering with the client and authority of the v2
    // header it got.
    let back = Peer::haproxy(
        "frontend f\n  mode http\n  bind 127.0.0.1:{port} accept-proxy\n  \
         http-request return status 200 content-type text/plain \
         lf-string \"src=%[src] dst=%[dst]:%[dst_port] authority=%[fc_pp_authority]\"\n",
    );
    let cfg = format!(
        "{}[https]\nlisten = \"127.0.0.1:0\"\n{TRUSTED}\n[tls]\ncertificates = [\"{}\"]\n\n\
         [[service]]\nname = \"web\"\nmode = \"http\"\nvhosts = [\"web.example\"]\n\
         backends = [\"{}\"]\n\n[[service]]\nname = \"pp\"\nmode = \"http\"\n\
         vhosts = [\"pp.example\"]\nsend_proxy = \"v2\"\nbackends = [\"{}\"]\n\n\
         [[service]]\nname = \"db\"\nsni = [\"db.example\"]\n\
         send_proxy = \"v2\"\nbackends = [\"{}\"]\n",
        server(io, ""),
        cert.display(),
        web.addr,
        back.addr,
        db.addr
    );
    let sluice = Sluice::start(&cfg);
    let front = haproxy_in_front(sluice.https(), "send-proxy-v2");
    let ca = pki.ca_file.display().to_string();
    let get = |name: &str, from: &str| {
        let url = format!("https://{name}:{}/", front.addr.port());
        let resolve = format!("{name}:{}:127.0.0.1", front.addr.port());
        curl(&[
            "-s",
            "--interface",
            from,
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
            &url,
        ])
    };
    assert_eq!(get("web.example", "127.0.0.2"), "web");
    let head = web.requests().pop().unwrap().head;
    assert!(head.contains("x-forwarded-for: 127.0.0.2"), "{head}");
    // Terminated here, sent on with the client HAProxy accepted and the SNI.
    assert_eq!(
        get("pp.example", "127.0.0.4"),
        format!("src=127.0.0.4 dst={} authority=pp.example", front.addr)
    );
    // The passed-through hello: its backend speaks no TLS, so the handshake fails
    // there, after the header.
    let mut c = connect_from("127.0.0.3", front.addr);
    c.write_all(&client_hello("db.example")).unwrap();
    let arrived = recv(&seen);
    assert_eq!(
        arrived.client.map(|a| a.ip()),
        Some("127.0.0.3".parse().unwrap())
    );
    assert_eq!(arrived.authority.as_deref(), Some("db.example"));
    assert_eq!(
        arrived.dst,
        Some(front.addr),
        "the address HAProxy's client reached"
    );
}

/// A minimal TLS 1.2 ClientHello naming `name`.
fn client_hello(name: &str) -> Vec<u8> {
    let n = name.as_bytes();
    let mut sni = vec![0];
    sni.extend_from_slice(&(n.len() as u16).to_be_bytes());
    sni.extend_from_slice(n);
    let mut list = (sni.len() as u16).to_be_bytes().to_vec();
    list.extend_from_slice(&sni);
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
    ext.extend_from_slice(&list);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![22, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// sluice `send_proxy` (v1 from an HTTP service, v2 from a TCP one) to HAProxy
/// `accept-proxy`, which answers with the source its header named.
fn send_proxy_to_haproxy(io: &str) {
    let back = Peer::haproxy(
        "frontend f\n  mode http\n  bind 127.0.0.1:{port} accept-proxy\n  \
         http-request return status 200 content-type text/plain lf-string \"src=%[src]\"\n",
    );
    let cfg = format!(
        "{}[http]\nlisten = \"127.0.0.1:0\"\n\n[[service]]\nname = \"web\"\nmode = \"http\"\n\
         vhosts = [\"web.example\"]\nsend_proxy = \"v1\"\nbackends = [\"{}\"]\n\n\
         [[service]]\nname = \"tcp\"\nlisten = \"127.0.0.1:0\"\nsend_proxy = \"v2\"\n\
         backends = [\"{}\"]\n",
        server(io, ""),
        back.addr,
        back.addr
    );
    let sluice = Sluice::start(&cfg);
    let url = format!("http://{}/", sluice.http());
    let body = web_from_2(&url);
    assert_eq!(body, "src=127.0.0.2");
    let url = format!("http://{}/", sluice.addr("tcp"));
    let body = curl(&["-s", "--interface", "127.0.0.3", &url]);
    assert_eq!(body, "src=127.0.0.3");
}

/// sluice `send_proxy = "v2"` to nginx `listen … proxy_protocol`: a backend
/// connection that carried one client's header serves that client's next request and
/// never another client.
fn send_proxy_to_nginx(io: &str) {
    let back = Peer::nginx();
    let cfg = format!(
        "{}[http]\nlisten = \"127.0.0.1:0\"\n\n[[service]]\nname = \"web\"\nmode = \"http\"\n\
         vhosts = [\"web.example\"]\nsend_proxy = \"v2\"\nbackends = [\"{}\"]\n",
        server(io, "workers = 1"),
        back.addr
    );
    let cfg = cfg.replace("workers = 2\n", "");
    let cfg = format!("{cfg}[admin]\nlisten = \"127.0.0.1:0\"\n");
    let sluice = Sluice::start(&cfg);
    let request = b"GET / HTTP/1.1\r\nHost: web.example\r\n\r\n";
    for from in ["127.0.0.2", "127.0.0.3", "127.0.0.2"] {
        let mut c = connect_from(from, sluice.http());
        for _ in 0..2 {
            c.write_all(request).unwrap();
            let text = read_response(&mut c);
            assert!(text.ends_with(&format!("src={from}")), "{from}: {text}");
        }
    }
    // Each client's second request went over the connection its first opened.
    let reused = metric(sluice.admin(), "sluice_http_backend_reused_total");
    assert_eq!(reused, 3.0);
}

/// One response with a Content-Length body, as text.
fn read_response(c: &mut TcpStream) -> String {
    let head = String::from_utf8(read_head(c)).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a Content-Length");
    let mut body = vec![0; len];
    c.read_exact(&mut body).unwrap();
    head + &String::from_utf8(body).unwrap()
}

/// A header split over segments works; the bytes after it in the same segment are
/// the stream's first; a LOCAL header keeps the socket's address.
fn split_headers_payload_and_local(io: &str) {
    let (backend, seen) = proxy_backend();
    let web = HttpServer::start("web");
    let cfg = format!(
        "{}[admin]\nlisten = \"127.0.0.1:0\"\n\n[[service]]\nname = \"db\"\n\
         listen = \"127.0.0.1:0\"\n{TRUSTED}send_proxy = \"v1\"\nbackends = [\"{}\"]\n\n\
         [[service]]\nname = \"web\"\nmode = \"http\"\nlisten = \"127.0.0.1:0\"\n{TRUSTED}\
         backends = [\"{}\"]\n",
        server(io, ""),
        backend.addr,
        web.addr
    );
    let sluice = Sluice::start(&cfg);
    let mut v2 = Vec::new();
    let src: SocketAddr = "192.0.2.7:4321".parse().unwrap();
    let dst: SocketAddr = "198.51.100.1:443".parse().unwrap();
    proxy::encode_v2(
        proxy::Command::Proxy,
        Some((src, dst)),
        &[(0xea, b"x")],
        &mut v2,
    );
    let mut c = connect(sluice.addr("db"));
    c.set_nodelay(true).unwrap();
    for piece in v2.chunks(5) {
        c.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    c.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    let arrived = recv(&seen);
    assert_eq!(arrived.client, Some(src), "the header's client, sent on");
    assert_eq!(arrived.dst, Some(dst));
    // v1 and a request in one segment.
    let mut c = connect(sluice.addr("web"));
    c.write_all(b"PROXY TCP4 203.0.113.9 198.51.100.1 5555 80\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    assert!(text.ends_with("web"), "{text}");
    let head = web.requests().pop().unwrap().head;
    assert!(head.contains("x-forwarded-for: 203.0.113.9"), "{head}");
    // LOCAL: the balancer's own health check.
    let mut local = Vec::new();
    proxy::encode_v2(proxy::Command::Local, None, &[], &mut local);
    local.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let mut c = connect_from("127.0.0.2", sluice.addr("web"));
    c.write_all(&local).unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    assert!(text.ends_with("web"), "{text}");
    let head = web.requests().pop().unwrap().head;
    assert!(head.contains("x-forwarded-for: 127.0.0.2"), "{head}");
    let admin = sluice.admin();
    assert_eq!(metric(admin, "sluice_proxy_protocol_errors_total"), 0.0);
}

/// The connection is closed (FIN or reset) without a byte for the client.
fn assert_closed(c: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    match c.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("{what}: got {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("{what}: still open")
        }
        Err(_) => {}
    }
}

/// Bad headers, an untrusted source and a silent client: each a close and a count by
/// reason; the backend never sees a byte.
fn bad_input_is_closed_and_counted(io: &str) {
    let (backend, _seen) = proxy_backend();
    let cfg = format!(
        "{}[admin]\nlisten = \"127.0.0.1:0\"\n[http]\nheader_timeout_ms = 300\n\n\
         [[service]]\nname = \"db\"\nlisten = \"127.0.0.1:0\"\n{TRUSTED}backends = [\"{}\"]\n\n\
         [[service]]\nname = \"strict\"\nlisten = \"127.0.0.1:0\"\naccept_proxy = true\n\
         proxy_trusted = [\"10.0.0.0/8\"]\nbackends = [\"{}\"]\n",
        server(io, ""),
        backend.addr,
        backend.addr
    );
    let sluice = Sluice::start(&cfg);
    let admin = sluice.admin();
    let v2 = |ver_cmd: u8, fam: u8, body: &[u8]| {
        let mut b = proxy::V2_SIGNATURE.to_vec();
        b.extend_from_slice(&[ver_cmd, fam]);
        b.extend_from_slice(&(body.len() as u16).to_be_bytes());
        b.extend_from_slice(body);
        b
    };
    let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100]].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("malformed", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        ("malformed", b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n".to_vec()),
        ("oversized", long),
        (
            "leading_zero",
            b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n".to_vec(),
        ),
        (
            "leading_zero",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 02\r\n".to_vec(),
        ),
        ("command", v2(0x22, 0x11, &[0; 12])),
        ("family", v2(0x21, 0x51, &[0; 12])),
        ("version", v2(0x31, 0x11, &[0; 12])),
    ];
    for (reason, bytes) in cases {
        let labels = format!("reason=\"{reason}\"");
        let before = metric_where(admin, "sluice_proxy_protocol_errors_total", &labels);
        let mut c = connect(sluice.addr("db"));
        c.write_all(&bytes).unwrap();
        assert_closed(&mut c, reason);
        wait_for(reason, || {
            let n = metric_where(admin, "sluice_proxy_protocol_errors_total", &labels);
            (n == before + 1.0).then_some(())
        });
    }
    let mut c = connect(sluice.addr("strict"));
    let _ = c.write_all(b"PROXY UNKNOWN\r\n");
    assert_closed(&mut c, "untrusted");
    assert_eq!(
        metric_where(
            admin,
            "sluice_proxy_protocol_errors_total",
            "reason=\"untrusted\""
        ),
        1.0
    );
    // Half a header, then silence: closed at header_timeout_ms.
    let mut c = connect(sluice.addr("db"));
    c.write_all(b"PROXY TCP4 1.2.3.4").unwrap();
    assert_closed(&mut c, "timeout");
    assert_eq!(
        metric_where(
            admin,
            "sluice_proxy_protocol_errors_total",
            "reason=\"timeout\""
        ),
        1.0
    );
    assert_eq!(
        backend.accepted(),
        0,
        "no backend connection for a bad header"
    );
}

/// Maglev's `hash = "source"` hashes the header's client, not the socket's: every
/// connection comes from 127.0.0.1, yet 32 header sources spread over both backends,
/// and each source keeps its backend.
fn source_hash_follows_the_header(io: &str) {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let cfg = format!(
        "{}[[service]]\nname = \"db\"\nlisten = \"127.0.0.1:0\"\n{TRUSTED}hash = \"source\"\n\
         backends = [\"{}\", \"{}\"]\n",
        server(io, ""),
        a.addr,
        b.addr
    );
    let sluice = Sluice::start(&cfg);
    let via = |src: &str, port: u16| {
        let mut c = connect(sluice.addr("db"));
        let line = format!("PROXY TCP4 {src} 10.0.0.1 {port} 5432\r\n");
        c.write_all(line.as_bytes()).unwrap();
        let mut name = String::new();
        c.read_to_string(&mut name).unwrap();
        name
    };
    let mut seen = std::collections::HashSet::new();
    for i in 1..=32 {
        let src = format!("198.51.100.{i}");
        let first = via(&src, 1000);
        assert_eq!(via(&src, 2000 + i), first, "{src} changed backend");
        seen.insert(first);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

/// A client that sends its header, a keep-alive request and its FIN at once is
/// answered and closed then, not at the keep-alive timeout: the FIN seen while the
/// header was read is not lost.
fn a_fin_behind_the_header_is_kept(io: &str) {
    let web = HttpServer::start("web");
    let cfg = format!(
        "{}[http]\nkeepalive_timeout_ms = 600000\n\n[[service]]\nname = \"web\"\nmode = \"http\"\n\
         listen = \"127.0.0.1:0\"\n{TRUSTED}backends = [\"{}\"]\n",
        server(io, ""),
        web.addr
    );
    let sluice = Sluice::start(&cfg);
    for _ in 0..10 {
        let mut c = connect(sluice.addr("web"));
        // The header's start first, so that the rest, the request and the FIN come
        // while the connection waits for its header.
        c.write_all(b"PROXY TCP4 192.0.2.1").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        c.write_all(b" 192.0.2.2 1 2\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text)
            .expect("closed after the response");
        assert!(text.ends_with("web"), "{text}");
    }
}

/// Clients that send part of a header and reset, most of them before sluice accepted
/// them (an HTTP listener accepts only once bytes arrived): each is counted by what it
/// did, from the address it connected from, whichever reactor accepted it — `closed`
/// from a trusted source, `untrusted` from another — and none reaches a backend.
fn a_client_reset_before_its_accept_keeps_its_address(io: &str) {
    let (backend, _seen) = proxy_backend();
    let service = |name: &str, mode: &str, trusted: &str| {
        format!(
            "[[service]]\nname = \"{name}\"\nmode = \"{mode}\"\nlisten = \"127.0.0.1:0\"\n\
             accept_proxy = true\nproxy_trusted = [\"{trusted}\"]\nbackends = [\"{}\"]\n",
            backend.addr
        )
    };
    let cfg = format!(
        "{}[admin]\nlisten = \"127.0.0.1:0\"\n{}{}{}{}",
        server(io, ""),
        service("web", "http", "127.0.0.0/8"),
        service("strict", "http", "10.0.0.0/8"),
        service("db", "tcp", "127.0.0.0/8"),
        service("dbstrict", "tcp", "10.0.0.0/8"),
    );
    let sluice = Sluice::start(&cfg);
    let admin = sluice.admin();
    const EACH: usize = 20;
    for name in ["web", "strict", "db", "dbstrict"] {
        for _ in 0..EACH {
            let c = socket2::Socket::from(connect(sluice.addr(name)));
            c.send(b"PROXY TCP4 192.0.2.1").unwrap();
            c.set_linger(Some(Duration::ZERO)).unwrap();
        }
    }
    let count = |reason: &str| {
        let labels = format!("reason=\"{reason}\"");
        metric_where(admin, "sluice_proxy_protocol_errors_total", &labels) as usize
    };
    wait_for("every reset counted", || {
        (count("closed") + count("untrusted") >= 4 * EACH).then_some(())
    });
    assert_eq!(
        (count("closed"), count("untrusted")),
        (2 * EACH, 2 * EACH),
        "reset clients counted by their own address"
    );
    assert_eq!(
        backend.accepted(),
        0,
        "no backend connection for a reset client"
    );
}

both_io!(
    a_client_reset_before_its_accept_keeps_its_address,
    a_fin_behind_the_header_is_kept,
    source_hash_follows_the_header,
    haproxy_in_front_of_http,
    haproxy_in_front_of_tcp_relayed_onward,
    haproxy_in_front_of_https,
    send_proxy_to_haproxy,
    send_proxy_to_nginx,
    split_headers_payload_and_local,
    bad_input_is_closed_and_counted,
);
