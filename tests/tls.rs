//! TLS termination end to end, on both I/O backends: real clients (curl, `openssl
//! s_client`, Python's `ssl`) against a real `sluice` serving certificates made at
//! test time, to recording HTTP backends.

mod common;

use common::http::{wrk, HttpServer};
use common::tls::{curl_https, s_client, write_atomically, Pki};
use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

both_io!(
    https_routes_by_host_like_http_and_says_so_to_the_backend,
    versions_alpn_and_resumption_with_openssl,
    python_ssl_pipelining_and_large_bodies,
    clients_that_do_not_speak_tls_are_closed_and_counted,
    a_certificate_replaced_under_load_fails_no_request,
    a_service_port_with_tls_and_the_self_signed_fallback,
    redirect_to_https_lands_on_sluice_itself,
    sni_passthrough_reaches_a_tls_backend_untouched,
    a_peeked_hello_reaches_the_backend_byte_for_byte,
    wrk_over_https_has_no_errors,
    a_tunnel_over_tls_is_refused_not_relayed_in_clear,
    a_slow_reader_gets_every_response_whole_in_clear_and_over_tls,
    an_ecdsa_and_an_rsa_certificate_for_one_name,
    renegotiation_is_refused_and_the_connection_ends,
    a_hello_that_trickles_in_is_closed_at_the_head_timeout,
    every_tls_connection_has_one_outcome_whatever_the_client_cuts,
);

/// A TLS 1.2 client asking to renegotiate (`R` in `openssl s_client`) is refused
/// (rustls never renegotiates; the client gives up with "no renegotiation"), and
/// nothing stays open behind it; the next client is served.
fn renegotiation_is_refused_and_the_connection_ends(io: &str) {
    let (pki, _shop, lb) = shop(io, "");
    // Without -ign_eof (which turns s_client's command letters off), stdin kept open
    // until the refusal is read.
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-tls1_2",
            "-servername",
            "shop.example",
            "-CAfile",
        ])
        .arg(&pki.ca_file)
        .args(["-connect", &lb.https().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let said = std::sync::Arc::clone(&said);
        std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(stream);
            let mut line = String::new();
            while std::io::BufRead::read_line(&mut r, &mut line).is_ok_and(|n| n > 0) {
                said.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
    }
    wait_for("the handshake", || {
        said.lock()
            .unwrap()
            .contains("Verify return code: 0")
            .then_some(())
    });
    stdin.write_all(b"R\n").unwrap();
    wait_for("the renegotiation refused", || {
        let out = said.lock().unwrap();
        (out.contains("RENEGOTIATING") && out.contains("no renegotiation")).then_some(())
    });
    drop(stdin);
    wait_for("s_client to exit", || child.try_wait().unwrap());
    wait_for("the connection closed", || {
        (metric(lb.admin(), "sluice_shard_connections") == 0.0).then_some(())
    });
    let (ok, body, err) = curl_https(&pki, lb.https(), "shop.example", "/", &[]);
    assert!(ok && body == "shop", "{err}");
}

/// A directory with an ECDSA and an RSA certificate for one name, as operators give
/// HAProxy for old clients: each client gets the one it can verify (its signature
/// algorithms choose), on TLS 1.3 and 1.2.
fn an_ecdsa_and_an_rsa_certificate_for_one_name(io: &str) {
    let pki = Pki::new();
    let (cert, key) = pki.leaf(&["dual.example"]);
    let (rsa_cert, rsa_key) = pki.leaf_rsa(&["dual.example"]);
    let dir = pki.dir.path().join("certs");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("1-ecdsa.pem"), cert + &key).unwrap();
    std::fs::write(dir.join("2-rsa.pem"), rsa_cert + &rsa_key).unwrap();
    let a = HttpServer::start("dual");
    let services = routed("dual", &["dual.example"], "", a.addr);
    let lb = Sluice::start(&config(io, &[&dir], "", &services));
    for version in ["-tls1_3", "-tls1_2"] {
        for (sigalgs, key_bits) in [
            ("ECDSA+SHA256", "256"),
            ("RSA-PSS+SHA256:RSA+SHA256", "2048"),
        ] {
            let out = s_client(
                lb.https(),
                &[version, "-servername", "dual.example", "-sigalgs", sigalgs],
                "GET / HTTP/1.1\r\nHost: dual.example\r\nConnection: close\r\n\r\n",
            );
            assert!(
                out.contains(&format!("Server public key is {key_bits} bit"))
                    && out.contains("HTTP/1.1 200 OK"),
                "{version} {sigalgs}:
{out}"
            );
        }
    }
}

/// A client that stops reading — after its request, after half-closing, between
/// keep-alive requests — for longer than every timer of a finished exchange (the
/// keep-alive timeout, the close's linger, the head timeout) still gets the whole
/// response, then a clean end: over TLS a `close_notify` (Python raises on a FIN
/// without one), whatever part of the response waited in the session or in rustls
/// when it stopped. Its receive buffer is small, so that the response backs up into
/// sluice; sizes from one that fits the socket buffers to one that cannot.
fn a_slow_reader_gets_every_response_whole_in_clear_and_over_tls(io: &str) {
    let (pki, _shop, lb) = shop(io, "keepalive_timeout_ms = 200\nheader_timeout_ms = 500");
    let script = r#"
import socket, ssl, sys, time
port, tls, ca, mode, size = int(sys.argv[1]), sys.argv[2] == "tls", sys.argv[3], sys.argv[4], int(sys.argv[5])
raw = socket.socket()
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
raw.settimeout(20)
raw.connect(("127.0.0.1", port))
s = ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname="shop.example") if tls else raw
close = "" if mode == "keepalive" else "Connection: close\r\n"
s.sendall(f"GET /bytes?n={size} HTTP/1.1\r\nHost: shop.example\r\n{close}\r\n".encode())
if mode == "halfclose":
    socket.socket.shutdown(s, socket.SHUT_WR)  # TCP only: no close_notify
time.sleep(3)
got = b""
while True:
    chunk = s.recv(65536)  # over TLS: b"" only after close_notify
    if not chunk:
        break
    got += chunk
head, _, body = got.partition(b"\r\n\r\n")
assert head.startswith(b"HTTP/1.1 200"), got[:200]
want = bytes(i % 251 for i in range(size))
assert body == want, (len(body), size, body[:20] == want[:20])
print("ok")
"#;
    let mut runs = Vec::new();
    for (tls, addr) in [("tls", lb.https()), ("clear", lb.http())] {
        for mode in ["close", "halfclose", "keepalive"] {
            for size in [48 << 10, 8 << 20] {
                let child = Command::new("python3")
                    .args(["-c", script, &addr.port().to_string(), tls])
                    .arg(&pki.ca_file)
                    .args([mode, &size.to_string()])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                runs.push((format!("{tls} {mode} {size}"), child));
            }
        }
    }
    let failed: Vec<String> = runs
        .into_iter()
        .filter_map(|(what, child)| {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            (!(out.status.success() && text.starts_with("ok"))).then(|| format!("{what}: {text}"))
        })
        .collect();
    assert!(failed.is_empty(), "[{io}]\n{}", failed.join("\n"));
}

/// An upgrade (WebSocket) over TLS: the TCP relay carries no TLS, so the connection is
/// refused by a reset — never relayed with the backend's bytes in clear text.
fn a_tunnel_over_tls_is_refused_not_relayed_in_clear(io: &str) {
    let pki = Pki::new();
    let cert = pki.write_leaf("shop.pem", &["shop.example"]);
    let b = Backend::spawn(|mut c| {
        let _ = common::try_read_head(&mut c);
        let _ = c.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nBACKEND-IN-CLEAR",
        );
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
    });
    let services = routed("shop", &["shop.example"], "", b.addr);
    let lb = Sluice::start(&config(io, &[&cert], "", &services));
    // The raw bytes on the wire, through a memory BIO: clear text there is the leak.
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
s = ctx.wrap_bio(inc, out, server_hostname="shop.example")
wire = b""
def pump():
    global wire
    raw.sendall(out.read())
    d = raw.recv(65536)
    wire += d
    inc.write(d)
    return d
while True:
    try:
        s.do_handshake()
        break
    except ssl.SSLWantReadError:
        pump()
s.write(b"GET /ws HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
try:
    while pump():
        pass
except OSError:
    pass
assert b"BACKEND-IN-CLEAR" not in wire, wire[-200:]
print("ok", len(wire))
"#;
    let (ok, text) = python_tls(script, lb.https().port(), &pki);
    assert!(ok && text.contains("ok"), "{text}");
}

/// wrk over HTTPS, keep-alive: every request answered, one handshake per connection.
fn wrk_over_https_has_no_errors(io: &str) {
    let (_pki, a, lb) = shop(io, "");
    let url = format!("https://127.0.0.1:{}/", lb.https().port());
    let (text, requests) = wrk(&["-t1", "-c8", "-d2s", "-H", "Host: shop.example", &url]);
    // How many requests fit in the run depends on the machine (a debug build's
    // handshakes are slow): that each was answered and no connection handshook twice
    // does not.
    assert!(requests > 0 && a.requests().len() >= requests, "{text}");
    let full = metric_where(lb.admin(), "sluice_tls_handshakes_total", "kind=\"full\"");
    assert!(full <= 8.0, "one handshake per connection, got {full}");
}

/// `[server]`, `[admin]`, `[http]` and `[https]` on OS-chosen ports, `[tls]` with
/// `certs`, then `services`.
fn config(io: &str, certs: &[&Path], http_extra: &str, services: &str) -> String {
    let list: Vec<String> = certs
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    server(io, "")
        + "[admin]\nlisten = \"127.0.0.1:0\"\n"
        + &format!("[http]\nlisten = \"127.0.0.1:0\"\n{http_extra}\n")
        + "[https]\nlisten = \"127.0.0.1:0\"\n"
        + &format!("[tls]\ncertificates = [{}]\n", list.join(", "))
        + services
}

/// sluice terminating TLS for `shop.example` (with `http_extra` in `[http]`) in front
/// of one HTTP backend answering `shop`: the PKI, the backend, sluice.
fn shop(io: &str, http_extra: &str) -> (Pki, HttpServer, Sluice) {
    let pki = Pki::new();
    let cert = pki.write_leaf("shop.pem", &["shop.example"]);
    let a = HttpServer::start("shop");
    let services = routed("shop", &["shop.example"], "", a.addr);
    let lb = Sluice::start(&config(io, &[&cert], http_extra, &services));
    (pki, a, lb)
}

/// Runs `script` in python3 with the TLS port and the CA file as arguments: whether it
/// exited 0, and what it printed (stdout then stderr).
fn python_tls(script: &str, port: u16, pki: &Pki) -> (bool, String) {
    let out = Command::new("python3")
        .args(["-c", script, &port.to_string()])
        .arg(&pki.ca_file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// An HTTP service routed by `vhosts` on the shared listeners.
fn routed(name: &str, vhosts: &[&str], extra: &str, backend: SocketAddr) -> String {
    let v: Vec<String> = vhosts.iter().map(|h| format!("\"{h}\"")).collect();
    format!(
        "[[service]]\nname = \"{name}\"\nmode = \"http\"\nvhosts = [{}]\n{extra}\nbackends = [\"{backend}\"]\n",
        v.join(", ")
    )
}

/// Requests on `[https] listen` are routed by Host as on `[http] listen`; the backend
/// hears `X-Forwarded-Proto: https` and the TLS port; a keep-alive connection serves
/// several requests over one handshake; the certificate matching the SNI name is the
/// one served (a wildcard for a name under it).
fn https_routes_by_host_like_http_and_says_so_to_the_backend(io: &str) {
    let pki = Pki::new();
    let shop = pki.write_leaf("shop.pem", &["shop.example", "*.shop.example"]);
    let api = pki.write_leaf("api.pem", &["api.example"]);
    let (a, b) = (HttpServer::start("shop"), HttpServer::start("api"));
    let services = routed("shop", &["shop.example", "*.shop.example"], "", a.addr)
        + &routed("api", &["api.example"], "", b.addr);
    let lb = Sluice::start(&config(io, &[&shop, &api], "", &services));
    let tls = lb.https();
    let (ok, body, err) = curl_https(&pki, tls, "shop.example", "/headers", &[]);
    assert!(ok, "{err}");
    assert!(body.contains("x-forwarded-proto: https"), "{body}");
    assert!(
        body.contains(&format!("x-forwarded-port: {}", tls.port())),
        "{body}"
    );
    let (ok, body, err) = curl_https(&pki, tls, "api.example", "/", &[]);
    assert!(ok, "{err}");
    assert_eq!(body, "api");
    let (ok, body, err) = curl_https(&pki, tls, "www.shop.example", "/", &[]);
    assert!(ok, "the wildcard certificate for www.shop.example: {err}");
    assert_eq!(body, "shop");
    // Three requests, one connection, one handshake (curl reuses it).
    let url = format!("https://shop.example:{}/x", tls.port());
    let (ok, body, err) = curl_https(&pki, tls, "shop.example", "/1", &[&url, &url]);
    assert!(ok, "{err}");
    assert_eq!(body, "shopshopshop");
    assert!(err.is_empty() || !err.contains("error"), "{err}");
    let admin = lb.admin();
    let full = metric_where(admin, "sluice_tls_handshakes_total", "kind=\"full\"");
    assert_eq!(full, 4.0, "one handshake per curl run");
}

/// TLS 1.2 and 1.3 each on request, ALPN http/1.1, and a session resumed from its
/// ticket (`-sess_out` / `-sess_in`): counted as such on `/metrics`.
fn versions_alpn_and_resumption_with_openssl(io: &str) {
    let (pki, _shop, lb) = shop(io, "");
    let tls = lb.https();
    let get = "GET / HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n";
    let ca = pki.ca_file.display().to_string();
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = s_client(
            tls,
            &[
                "-servername",
                "shop.example",
                "-CAfile",
                &ca,
                flag,
                "-alpn",
                "http/1.1",
            ],
            get,
        );
        assert!(
            out.contains(&format!("Protocol  : {version}"))
                || out.contains(&format!(", {version},")),
            "{out}"
        );
        assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
        assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
        assert!(
            out.contains("\r\n\r\nshop") || out.ends_with("shop") || out.contains("\nshop"),
            "{out}"
        );
    }
    let sess = pki.dir.path().join("session");
    let sess = sess.display().to_string();
    let first = s_client(
        tls,
        &[
            "-servername",
            "shop.example",
            "-CAfile",
            &ca,
            "-sess_out",
            &sess,
        ],
        get,
    );
    assert!(first.contains("New, TLSv1.3"), "{first}");
    let again = s_client(
        tls,
        &[
            "-servername",
            "shop.example",
            "-CAfile",
            &ca,
            "-sess_in",
            &sess,
        ],
        get,
    );
    assert!(again.contains("Reused, TLSv1.3"), "{again}");
    let admin = lb.admin();
    let resumed = metric_where(admin, "sluice_tls_handshakes_total", "kind=\"resumed\"");
    assert_eq!(resumed, 1.0);
    let v12 = metric_where(
        admin,
        "sluice_tls_handshake_versions_total",
        "version=\"1.2\"",
    );
    assert_eq!(v12, 1.0);
}

/// Python's `ssl` through sluice: two requests pipelined in one write, a 4 MiB upload
/// echoed back (large bodies both ways through the TLS layer), then a clean close.
fn python_ssl_pipelining_and_large_bodies(io: &str) {
    let (pki, _shop, lb) = shop(io, "");
    let tls = lb.https();
    let script = r#"
import socket, ssl, sys, hashlib
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20), server_hostname="shop.example")
req = b"GET /a HTTP/1.1\r\nHost: shop.example\r\n\r\n" * 2
s.sendall(req)
body = bytes(range(256)) * (4 * 4096)
s.sendall(b"POST /echo HTTP/1.1\r\nHost: shop.example\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
got = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
parts = got.split(b"HTTP/1.1 200 OK")
assert len(parts) == 4, got[:300]
assert parts[1].endswith(b"shop") and parts[2].endswith(b"shop"), got[:300]
assert parts[3].endswith(body), len(parts[3])
print("ok", hashlib.sha256(parts[3][-len(body):]).hexdigest()[:8])
"#;
    let (ok, text) = python_tls(script, tls.port(), &pki);
    assert!(ok && text.starts_with("ok"), "{text}");
}

/// What is not TLS on the TLS port ends in a close, never an answer in clear text or
/// a held slot, and is counted: a plain HTTP request, bytes that are no record, a
/// handshake that stops halfway (closed at `header_timeout_ms`), one cut by the
/// client's FIN. A ClientHello trickling in byte by byte still completes.
fn clients_that_do_not_speak_tls_are_closed_and_counted(io: &str) {
    let (_pki, _shop, lb) = shop(io, "header_timeout_ms = 500");
    let tls = lb.https();
    let admin = lb.admin();
    let failures = |reason: &str| {
        metric_where(
            admin,
            "sluice_tls_failures_total",
            &format!("reason=\"{reason}\""),
        )
    };
    // Plain HTTP: closed, with at most a TLS alert — never an HTTP answer.
    let got = send_and_read(tls, b"GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n");
    assert!(
        !got.starts_with(b"HTTP"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    wait_for("not_tls counted", || {
        (failures("not_tls") == 1.0).then_some(())
    });
    // A record header claiming a handshake, then nonsense.
    send_and_read(tls, b"\x16\x03\x01\x00\x05\xff\xff\xff\xff\xff");
    wait_for("protocol counted", || {
        (failures("protocol") >= 1.0).then_some(())
    });
    // A record longer than TLS allows (2^14 + 2048): refused with an alert, counted,
    // not waited for.
    let mut oversized = b"\x16\x03\x01\xff\xff".to_vec();
    oversized.extend_from_slice(&[0u8; 1024]);
    let got = send_and_read(tls, &oversized);
    assert_eq!(got.first(), Some(&0x15), "an alert answers: {got:?}");
    wait_for("protocol counted again", || {
        (failures("protocol") >= 2.0).then_some(())
    });
    // Half a ClientHello, then silence: closed by the timer.
    let hello = client_hello();
    let mut s = connect(tls);
    s.write_all(&hello[..hello.len() / 2]).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    wait_for("timeout counted", || {
        (failures("timeout") == 1.0).then_some(())
    });
    // Half a ClientHello, then the client's FIN.
    let mut s = connect(tls);
    s.write_all(&hello[..hello.len() / 2]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = s.read_to_end(&mut rest);
    wait_for("closed counted", || {
        (failures("closed") == 1.0).then_some(())
    });
    // The whole ClientHello, one byte per write: the server's answer comes.
    let mut s = connect(tls);
    s.set_nodelay(true).unwrap();
    for b in &hello {
        s.write_all(std::slice::from_ref(b)).unwrap();
    }
    let mut head = [0u8; 5];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x16, "a handshake record (ServerHello) answers");
    // Nothing above held a connection: the shard's gauge drops back.
    drop(s);
    wait_for("connections closed", || {
        (metric(admin, "sluice_shard_connections") == 0.0).then_some(())
    });
}

/// Write `bytes`, then read until the server closes (bounded by the read timeout).
fn send_and_read(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = connect(addr);
    s.write_all(bytes).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

/// A real ClientHello for `shop.example` (Python's ssl, through a memory BIO).
fn client_hello() -> Vec<u8> {
    client_hello_for("shop.example")
}

/// A real ClientHello naming `name`.
fn client_hello_for(name: &str) -> Vec<u8> {
    let script = r#"
import ssl, sys
ctx = ssl.create_default_context()
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
s = ctx.wrap_bio(inc, out, server_hostname=sys.argv[1])
try:
    s.do_handshake()
except ssl.SSLWantReadError:
    pass
sys.stdout.buffer.write(out.read())
"#;
    let out = Command::new("python3")
        .args(["-c", script, name])
        .output()
        .unwrap();
    assert!(out.status.success() && out.stdout.len() > 100);
    out.stdout
}

/// A certificate file replaced while curl loops: every request succeeds, and the new
/// certificate is served within a few seconds (the once-a-second check).
fn a_certificate_replaced_under_load_fails_no_request(io: &str) {
    let (pki, _shop, lb) = shop(io, "");
    let tls = lb.https();
    let served = |pki: &Pki| {
        let (ok, out, err) = curl_https(pki, tls, "shop.example", "/", &["-w", "%{certs}"]);
        assert!(ok, "{err}");
        out
    };
    let before = served(&pki);
    assert!(before.starts_with("shop") && before.contains("BEGIN CERTIFICATE"));
    // curl loops (each run a new connection and handshake) while the file changes.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looping = {
        let (stop, ca) = (std::sync::Arc::clone(&stop), pki.ca_file.clone());
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = Command::new("curl")
                    .args(["-sS", "--max-time", "20", "--resolve"])
                    .arg(format!("shop.example:{}:127.0.0.1", tls.port()))
                    .arg("--cacert")
                    .arg(&ca)
                    .arg(format!("https://shop.example:{}/", tls.port()))
                    .output()
                    .unwrap();
                let err = String::from_utf8_lossy(&out.stderr).into_owned();
                assert!(out.status.success(), "{err}");
                assert_eq!(out.stdout, b"shop");
                runs += 1;
            }
            runs
        })
    };
    let (new_cert, new_key) = pki.leaf(&["shop.example"]);
    let cert = pki.dir.path().join("shop.pem");
    write_atomically(&cert, &(new_cert.clone() + &new_key));
    let first_line = new_cert.lines().nth(1).unwrap().to_owned();
    wait_for("the new certificate served", || {
        served(&pki).contains(&first_line).then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = looping.join().expect("no request failed");
    assert!(runs > 0);
    assert!(lb
        .log_lines()
        .iter()
        .any(|l| l.contains("certificate files changed")));
    // Nothing but the certificates changed: no listener or service is logged again.
    let listening = lb.count_log(|l| {
        ["http listening", "https listening", "service listening"]
            .iter()
            .any(|what| l.contains(what))
    });
    assert_eq!(listening, 3, "{:#?}", lb.log_lines());
}

/// `tls = true` on a service's own port serves TLS there; with no certificate
/// configured anywhere, a generated self-signed one, said loudly in the log.
fn a_service_port_with_tls_and_the_self_signed_fallback(io: &str) {
    let a = HttpServer::start("own");
    let services = format!(
        "[[service]]\nname = \"own\"\nmode = \"http\"\nlisten = \"127.0.0.1:0\"\ntls = true\nbackends = [\"{}\"]\n",
        a.addr
    );
    let admin = "[admin]\nlisten = \"127.0.0.1:0\"\n";
    let lb = Sluice::start(&(server(io, "") + admin + &services));
    let port = lb.addr("own");
    let out = Command::new("curl")
        .args([
            "-sSk",
            "--max-time",
            "20",
            &format!("https://127.0.0.1:{}/headers", port.port()),
        ])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(body.contains("x-forwarded-proto: https"), "{body}");
    assert!(lb
        .log_lines()
        .iter()
        .any(|l| l.contains("self-signed") && l.contains("WARN")));
    // Without -k the certificate is not trusted: the handshake fails, counted.
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            &format!("https://127.0.0.1:{}/", port.port()),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    // The service's FRONTEND row counts both in HAProxy's ssl_* columns.
    let csv = |column: &str| -> String {
        let text = Command::new("curl")
            .args(["-s", &format!("http://{}/haproxy?stats;csv", lb.admin())])
            .output()
            .unwrap()
            .stdout;
        let text = String::from_utf8(text).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let at = header.iter().position(|h| *h == column).unwrap();
        let row = lines.find(|l| l.starts_with("own,FRONTEND,")).unwrap();
        row.split(',').nth(at).unwrap().to_owned()
    };
    wait_for("the failed handshake counted", || {
        (csv("ssl_failed_handshake") == "1").then_some(())
    });
    assert_eq!(csv("ssl_sess"), "1");
    assert_eq!(csv("ssl_reused_sess"), "0");
}

/// `redirect_to_https = true`: plain HTTP gets a 301 to https, which sluice serves
/// itself (no second redirect over TLS).
fn redirect_to_https_lands_on_sluice_itself(io: &str) {
    let pki = Pki::new();
    let cert = pki.write_leaf("shop.pem", &["shop.example"]);
    let a = HttpServer::start("shop");
    let services = routed(
        "shop",
        &["shop.example"],
        "redirect_to_https = true",
        a.addr,
    );
    let lb = Sluice::start(&config(io, &[&cert], "", &services));
    let (http, tls) = (lb.http(), lb.https());
    let mut s = TcpStream::connect(http).unwrap();
    s.write_all(b"GET /p?q=1 HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 301"), "{answer}");
    // To sluice's own TLS port (not 443 here): curl follows it there and is served.
    let location = format!("Location: https://shop.example:{}/p?q=1", tls.port());
    assert!(answer.contains(&location), "{answer}");
    let out = Command::new("curl")
        .args(["-sSL", "--max-time", "20", "--cacert"])
        .arg(&pki.ca_file)
        .arg("--resolve")
        .arg(format!("shop.example:{}:127.0.0.1", http.port()))
        .arg("--resolve")
        .arg(format!("shop.example:{}:127.0.0.1", tls.port()))
        .arg(format!("http://shop.example:{}/p?q=1", http.port()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"shop");
}

/// `sluice check` reads the certificates a config names: a key that is not the
/// certificate's, or an expired certificate, fails it with the file named; `sluice run`
/// refuses to start on the first; a reload that brings one keeps the old
/// configuration serving; a certificate file broken under a running sluice leaves the
/// certificates read before in use.
#[test]
fn bad_certificates_are_refused_with_their_file() {
    let pki = Pki::new();
    let good = pki.write_leaf("good.pem", &["shop.example"]);
    let (cert, _) = pki.leaf(&["shop.example"]);
    let (_, other_key) = pki.leaf(&["shop.example"]);
    let mismatched = pki.dir.path().join("mismatched.pem");
    write_atomically(&mismatched, &(cert + &other_key));
    let (old, old_key) = pki.leaf_until(&["shop.example"], 2001);
    let expired = pki.dir.path().join("expired.pem");
    write_atomically(&expired, &(old + &old_key));
    let a = HttpServer::start("shop");
    let services = routed("shop", &["shop.example"], "", a.addr);
    let check = |cert: &Path| {
        let (code, _, err) = sluice_check(&config("epoll", &[cert], "", &services));
        (Some(code), err)
    };
    assert_eq!(check(&good).0, Some(0), "{}", check(&good).1);
    for bad in [&mismatched, &expired] {
        let (code, err) = check(bad);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains(&bad.display().to_string()), "{err}");
    }
    // An expired certificate is served by `run` (a listener beats none), said in its log.
    let lb = Sluice::start(&config("epoll", &[&expired], "", &services));
    lb.wait_log("the expired certificate named", |l| {
        l.contains("WARN") && l.contains(&expired.display().to_string()) && l.contains("expired")
    });
    drop(lb);
    // Start: refused, the file named.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, config("epoll", &[&mismatched], "", &services)).unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&mismatched.display().to_string()), "{err}");
    // Reload: refused, the old certificate keeps serving.
    let lb = Sluice::start(&config("epoll", &[&good], "", &services));
    let tls = lb.https();
    assert!(!lb.reload(&config("epoll", &[&mismatched], "", &services)));
    let (ok, body, err) = curl_https(&pki, tls, "shop.example", "/", &[]);
    assert!(ok && body == "shop", "{err}");
    // The file itself broken under the running process: logged, the old one serves.
    std::fs::write(&good, "not a certificate").unwrap();
    lb.wait_log("the bad file named", |l| {
        l.contains(&good.display().to_string()) && l.contains("stay in use")
    });
    let (ok, body, err) = curl_https(&pki, tls, "shop.example", "/", &[]);
    assert!(ok && body == "shop", "{err}");
}

/// A tcp service with `sni` takes, untouched, the TLS connections of `[https] listen`
/// that name its servers: the client completes its handshake with the backend
/// (`openssl s_server`, its own certificate) and sees that certificate; other names on
/// the same listener are terminated by sluice.
fn sni_passthrough_reaches_a_tls_backend_untouched(io: &str) {
    let pki = Pki::new();
    let shop = pki.write_leaf("shop.pem", &["shop.example"]);
    // The backend's certificate, from a CA of its own: only it can make curl trust
    // the connection to db.example.
    let backend_pki = Pki::new();
    let (cert, key) = backend_pki.leaf(&["db.example"]);
    let (cert_file, key_file) = (
        backend_pki.dir.path().join("c.pem"),
        backend_pki.dir.path().join("k.pem"),
    );
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let port = free_port();
    let mut s_server = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &port.to_string(),
            "-cert",
        ])
        .arg(&cert_file)
        .arg("-key")
        .arg(&key_file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("s_server listening", || {
        TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
    });
    let a = HttpServer::start("shop");
    let services = routed("shop", &["shop.example"], "", a.addr)
        + &format!(
            "[[service]]\nname = \"db\"\nsni = [\"db.example\", \"*.db.example\"]\nbackends = [\"127.0.0.1:{port}\"]\n"
        );
    let lb = Sluice::start(&config(io, &[&shop], "", &services));
    let tls = lb.https();
    for host in ["db.example", "x.db.example"] {
        let (ok, body, err) = curl_https(&backend_pki, tls, host, "/", &[]);
        let _ = host;
        if host == "db.example" {
            assert!(ok, "{err}");
            assert!(body.contains("s_server"), "the backend's own page: {body}");
        } else {
            // The backend's certificate does not name x.db.example: curl refuses it,
            // which shows the certificate came from the backend, not from sluice.
            assert!(!ok);
            assert!(
                err.contains("x.db.example") || err.contains("certificate"),
                "{err}"
            );
        }
    }
    let (ok, body, err) = curl_https(&pki, tls, "shop.example", "/", &[]);
    assert!(ok && body == "shop", "{err}");
    let admin = lb.admin();
    assert_eq!(metric(admin, "sluice_tls_passthrough_total"), 2.0);
    let _ = s_server.kill();
    let _ = s_server.wait();
}

/// A port no one listens on now (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The hello peeked to route a connection reaches the backend exactly as sent, even
/// trickling in one byte per segment, and the bytes after it follow in order.
fn a_peeked_hello_reaches_the_backend_byte_for_byte(io: &str) {
    let pki = Pki::new();
    let shop = pki.write_leaf("shop.pem", &["shop.example"]);
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let b = Backend::spawn(move |mut c| {
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        let _ = c.write_all(format!("got {}", got.len()).as_bytes());
        let _ = tx.lock().unwrap().send(got);
    });
    let services = format!(
        "[[service]]\nname = \"db\"\nsni = [\"db.example\"]\nbackends = [\"{}\"]\n",
        b.addr
    );
    let lb = Sluice::start(&config(io, &[&shop], "", &services));
    let hello = client_hello_for("db.example");
    // The hello as sent, and cut into 8 handshake records (legal; some evasion tools
    // do it): each trickling in one byte per segment.
    let mut total = 0;
    for hello in [hello.clone(), in_records(&hello, 8)] {
        let mut sent = hello;
        sent.extend_from_slice(b"\x17\x03\x03 and what follows the hello");
        let mut s = connect(lb.https());
        s.set_nodelay(true).unwrap();
        for b in &sent {
            s.write_all(std::slice::from_ref(b)).unwrap();
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).unwrap();
        assert_eq!(answer, format!("got {}", sent.len()).as_bytes());
        let got = rx.recv_timeout(PATIENCE).unwrap();
        assert!(
            got == sent,
            "the backend got other bytes than the client sent"
        );
        // Counted as received from the client, the peeked hello included.
        total += sent.len();
        let counted = |what: &str| metric_where(lb.admin(), what, "service=\"db\"");
        wait_for("the relay's bytes to be counted", || {
            (counted("sluice_service_bytes_in_total") == total as f64).then_some(())
        });
        assert_eq!(counted("sluice_backend_bytes_in_total"), total as f64);
    }
}

/// A one-record ClientHello re-cut into `n` handshake records.
fn in_records(hello: &[u8], n: usize) -> Vec<u8> {
    let body = &hello[5..];
    let mut out = Vec::new();
    for chunk in body.chunks(body.len().div_ceil(n)) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// A slowloris during the handshake: a ClientHello sent one byte at a time, each
/// byte well within `header_timeout_ms` of the last, is closed when the timer set at
/// the accept fires — activity does not push it back — before the hello is complete:
/// on `[https] listen` while the hello is peeked for a passthrough name (whether the
/// name is one, and in records too many to be peeked), and on a service's own TLS
/// port where rustls reads it at once. Each counted as a timeout, none passed through.
fn a_hello_that_trickles_in_is_closed_at_the_head_timeout(io: &str) {
    let pki = Pki::new();
    let cert = pki.write_leaf("shop.pem", &["shop.example"]);
    let a = HttpServer::start("shop");
    let b = Backend::echo();
    let services = routed("shop", &["shop.example"], "", a.addr)
        + &format!(
            "[[service]]\nname = \"own\"\nmode = \"http\"\nlisten = \"127.0.0.1:0\"\n\
             tls = true\ncertificates = [{:?}]\nbackends = [\"{}\"]\n",
            cert.display().to_string(),
            a.addr
        )
        + &format!(
            "[[service]]\nname = \"db\"\nsni = [\"db.example\"]\nbackends = [\"{}\"]\n",
            b.addr
        );
    let http = "header_timeout_ms = 300";
    let lb = Sluice::start(&config(io, &[&cert], http, &services));
    let db = client_hello_for("db.example");
    let shop = client_hello();
    let one_byte_records = in_records(&db, db.len() - 5);
    let cases = [
        ("a passthrough name, peeked", lb.https(), &db),
        (
            "a passthrough name in 1-byte records",
            lb.https(),
            &one_byte_records,
        ),
        ("a terminated name, peeked", lb.https(), &shop),
        ("a service's own TLS port", lb.addr("own"), &shop),
    ];
    for (what, addr, hello) in cases {
        let mut s = connect(addr);
        s.set_nodelay(true).unwrap();
        // Each pause is a sixth of the head timeout: never idle long enough to be
        // closed for idling, and the whole hello takes many timeouts to send.
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut ended = None;
        for (i, b) in hello.iter().enumerate() {
            if s.write_all(std::slice::from_ref(b)).is_err() {
                ended = Some(i);
                break;
            }
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                Ok(0) => {
                    ended = Some(i);
                    break;
                }
                Ok(n) => panic!("[{io}] {what}: answered {:?}", &buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                // A reset: closed too.
                Err(_) => {
                    ended = Some(i);
                    break;
                }
            }
        }
        assert!(
            ended.is_some(),
            "[{io}] {what}: the whole hello ({} bytes, one every 50 ms) was taken",
            hello.len()
        );
    }
    let admin = lb.admin();
    wait_for("the four timeouts counted", || {
        let n = metric_where(admin, "sluice_tls_failures_total", "reason=\"timeout\"");
        (n == 4.0).then_some(())
    });
    assert_eq!(metric(admin, "sluice_tls_passthrough_total"), 0.0, "[{io}]");
}

/// Every connection accepted on `[https] listen` is counted once: a handshake, a
/// passthrough or a failure — also when the client resets it while the server's
/// first flight is on its way, or after its FIN, at any point of the hello, for a
/// terminated name and a passed-through one.
fn every_tls_connection_has_one_outcome_whatever_the_client_cuts(io: &str) {
    let pki = Pki::new();
    let cert = pki.write_leaf("shop.pem", &["shop.example"]);
    let a = HttpServer::start("shop");
    let b = Backend::echo();
    let services = routed("shop", &["shop.example"], "", a.addr)
        + &format!(
            "[[service]]\nname = \"db\"\nsni = [\"db.example\"]\nbackends = [\"{}\"]\n",
            b.addr
        );
    let lb = Sluice::start(&config(io, &[&cert], "", &services));
    let (shop, db) = (client_hello(), client_hello_for("db.example"));
    for round in 0..120 {
        let hello = if round % 2 == 0 { &shop } else { &db };
        let cut = [hello.len(), hello.len() / 2, 10][round / 2 % 3];
        let s = connect(lb.https());
        let _ = (&s).write_all(&hello[..cut]);
        if round / 6 % 2 == 1 {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        // Some resets right away, some once the server may be answering.
        if round / 12 % 2 == 1 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let s = socket2::Socket::from(s);
        s.set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
    }
    let admin = lb.admin();
    let outcomes = || {
        ["sluice_tls_failures_total", "sluice_tls_handshakes_total"]
            .iter()
            .map(|m| metric_where(admin, m, "shard="))
            .sum::<f64>()
            + metric(admin, "sluice_tls_passthrough_total")
    };
    // Counted when each connection closes. A connection reset while it waited in the
    // accept queue is still accepted (the kernel keeps it there), on both reactors.
    let mut last = (0.0, 0.0);
    let settled = (0..200).any(|_| {
        let accepted = metric(admin, "sluice_shard_accepts_total");
        let open = metric(admin, "sluice_shard_connections");
        last = (accepted, outcomes());
        if accepted == 120.0 && open == 0.0 && last.1 == accepted {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
        false
    });
    assert!(
        settled,
        "[{io}] {} connections accepted, {} outcomes counted",
        last.0, last.1
    );
}
