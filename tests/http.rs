//! HTTP mode end to end: real clients (curl, Python's http.client, wrk, raw sockets)
//! through a real `sluice` to recording HTTP backends, on both I/O backends.

mod common;

use common::http::{curl, curl_bytes, raw, status, wrk, HttpServer};
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

/// `[server]` + `[http]` (shared listener on an OS-chosen port) + `services`.
fn config(io: &str, http_extra: &str, services: &str) -> String {
    server(io, "") + &format!("[http]\nlisten = \"127.0.0.1:0\"\n{http_extra}\n") + services
}

/// An HTTP service on a port of its own, with `extra` settings.
fn web(name: &str, extra: &str, backends: &[SocketAddr]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "[[service]]\nname = \"{name}\"\nmode = \"http\"\nlisten = \"127.0.0.1:0\"\n{extra}\nbackends = [{}]\n",
        list.join(", ")
    )
}

/// An HTTP service reached only through the shared listener.
fn routed(name: &str, extra: &str, backends: &[SocketAddr]) -> String {
    web(name, extra, backends).replace("listen = \"127.0.0.1:0\"\n", "")
}

both_io!(
    curl_keep_alive_reuses_backend_connections,
    chunked_upload_and_expect_continue_with_curl,
    python_http_client_keep_alive,
    wrk_load_has_no_errors,
    upgrade_becomes_a_tunnel,
    a_tunnel_relays_early_bytes_bulk_and_half_close,
    pipelined_requests_are_answered_in_order,
    routing_by_host_and_path,
    no_route_no_backend_bad_gateway_and_timeout,
    sticky_cookie_keeps_the_backend_until_it_goes,
    sticky_cookie_moves_with_the_first_response_when_its_backend_dies,
    status_lines_without_a_usable_reason_are_relayed,
    a_body_the_backend_leaves_unread_reaches_no_other_client,
    a_client_fin_with_its_last_request_still_gets_every_answer,
    malformed_and_smuggling_requests_are_refused,
    slow_heads_get_408,
    forwarded_headers_and_redirects,
    old_clients_and_close_delimited_responses,
    http_counters_show_on_the_admin_port,
    sigterm_finishes_requests_in_flight,
    out_of_descriptors_pauses_and_recovers,
);

/// Out of descriptors, HTTP mode pauses accepting as TCP mode does — whether the last
/// descriptor went to a client (its accept fails) or to a backend socket (the request
/// gets 503) — then serves again once descriptors are free. Clients arrive one at a
/// time and each leaves a pooled backend connection; two limits of different parity.
fn out_of_descriptors_pauses_and_recovers(io: &str) {
    for nofile in [64, 65] {
        let a = HttpServer::start("a");
        let cfg = format!("[server]\nworkers = 1\nio = \"{io}\"\n")
            + "[http]\npool_per_backend = 1000\n"
            + &web("web", "", &[a.addr]);
        let lb = Sluice::start_with_nofile(&cfg, nofile);
        let addr = lb.addr("web");
        let mut held = Vec::new();
        for i in 0..80 {
            let mut c = connect(addr);
            c.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut buf = [0u8; 12];
            match c.read_exact(&mut buf) {
                Ok(()) if buf.starts_with(b"HTTP/1.1 200") => held.push(c),
                Ok(()) => {
                    assert!(buf.starts_with(b"HTTP/1.1 503"), "client {i}: {buf:?}");
                    lb.wait_log("accepting paused", |l| l.contains("accept paused"));
                    break;
                }
                // Not accepted: the listener's queue holds it while accepting pauses.
                Err(_) => {
                    lb.wait_log("accepting paused", |l| l.contains("accept paused"));
                    break;
                }
            }
        }
        assert!(!held.is_empty());
        drop(held);
        wait_for("a fresh request to be served", || {
            let r = raw(
                addr,
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            (status(&r) == 200).then_some(())
        });
    }
}

fn curl_keep_alive_reuses_backend_connections(io: &str) {
    let (a, b) = (HttpServer::start("a"), HttpServer::start("b"));
    let lb = Sluice::start(&config(io, "", &web("web", "", &[a.addr, b.addr])));
    let url = format!("http://{}/", lb.addr("web"));
    // One curl, 200 requests over one kept-alive client connection.
    let urls = vec![url.as_str(); 200];
    let out = curl(&urls);
    assert_eq!(out.matches('a').count() + out.matches('b').count(), 200);
    assert!(
        out.contains('a') && out.contains('b'),
        "both backends: {out}"
    );
    let seen = a.requests().len() + b.requests().len();
    let conns = a.connections() + b.connections();
    assert_eq!(seen, 200);
    // Round-robin over two backends from one shard's pool: a connection or two each.
    assert!(
        conns <= 8,
        "{conns} backend connections for {seen} requests"
    );
    let head = &a.requests()[0].head;
    assert!(head.contains("x-forwarded-for: 127.0.0.1"), "{head}");
}

fn chunked_upload_and_expect_continue_with_curl(io: &str) {
    let a = HttpServer::start("a");
    let lb = Sluice::start(&config(io, "", &web("web", "", &[a.addr])));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upload");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let url = format!("http://{}/echo", lb.addr("web"));
    let at = format!("@{}", file.display());
    let chunked = curl_bytes(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &at,
        &url,
    ]);
    assert_eq!(chunked, data);
    let seen = a.requests();
    assert!(seen[0].head.contains("transfer-encoding: chunked"));
    assert_eq!(seen[0].body, data);
    let expect = curl_bytes(&["-H", "Expect: 100-continue", "--data-binary", &at, &url]);
    assert_eq!(expect, data);
    assert!(a.requests()[1].head.contains("expect: 100-continue"));
}

fn python_http_client_keep_alive(io: &str) {
    let a = HttpServer::start("a");
    let lb = Sluice::start(&config(io, "", &web("web", "", &[a.addr])));
    let addr = lb.addr("web");
    let script = format!(
        r#"
import http.client
c = http.client.HTTPConnection("{ip}", {port}, timeout=20)
for i in range(20):
    c.request("GET", "/n%d" % i)
    r = c.getresponse()
    assert r.status == 200 and r.read() == b"a", r.status
c.request("POST", "/echo", body=b"x" * 100000, headers={{"Content-Type": "application/octet-stream"}})
r = c.getresponse()
assert r.status == 200 and r.read() == b"x" * 100000
c.request("HEAD", "/")
r = c.getresponse()
assert r.status == 200 and r.read() == b"" and r.getheader("Content-Length") == "1"
c.request("GET", "/chunked")
r = c.getresponse()
assert r.read() == b"abc"
print("ok", c.sock.getsockname()[1])
"#,
        ip = addr.ip(),
        port = addr.port()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("ok "));
    assert_eq!(a.requests().len(), 23);
}

fn wrk_load_has_no_errors(io: &str) {
    let (a, b) = (HttpServer::start("a"), HttpServer::start("b"));
    let lb = Sluice::start(&config(io, "", &web("web", "", &[a.addr, b.addr])));
    let (_, requests) = wrk(&["-t1", "-c8", "-d1s", &format!("http://{}/", lb.addr("web"))]);
    let served = a.requests().len() + b.requests().len();
    // wrk counts the responses it read; the backends may have answered a few more
    // that were in flight when wrk stopped.
    assert!(requests > 0 && served >= requests, "{requests} vs {served}");
    assert!(a.connections() + b.connections() <= 2 * 8 * 2);
}

fn upgrade_becomes_a_tunnel(io: &str) {
    let a = HttpServer::start("a");
    let lb = Sluice::start(&config(io, "", &web("web", "", &[a.addr])));
    let mut s = TcpStream::connect(lb.addr("web")).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .unwrap();
    let head = read_head(&mut s);
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: websocket"));
    for msg in [&b"hello"[..], b"frames of any bytes \x00\x01\xff"] {
        assert_eq!(roundtrip(&mut s, msg), msg);
    }
    // CONNECT: a 2xx answer makes a tunnel too.
    let mut s = TcpStream::connect(lb.addr("web")).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n")
        .unwrap();
    let head = read_head(&mut s);
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    assert_eq!(roundtrip(&mut s, b"\x00binary\x01"), b"\x00binary\x01");
}

/// A tunnel after a 101 keeps every byte of both sides: those the client sent right
/// behind its request, those the backend sent with its 101, 4 MiB each way, and each
/// side's FIN (the other direction goes on after the client's).
fn a_tunnel_relays_early_bytes_bulk_and_half_close(io: &str) {
    const BULK: usize = 4 << 20;
    let b = Backend::spawn(|mut c| {
        read_head(&mut c);
        c.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nearly",
        )
        .unwrap();
        // Echo until the client's FIN, then say goodbye and close.
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = c.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            c.write_all(&buf[..n]).unwrap();
        }
        c.write_all(b"bye").unwrap();
    });
    let lb = Sluice::start(&config(io, "", &web("web", "", &[b.addr])));
    let mut s = TcpStream::connect(lb.addr("web")).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"GET /t HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\npre")
        .unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let mut early = [0u8; 8];
    s.read_exact(&mut early).unwrap();
    assert_eq!(
        &early, b"earlypre",
        "the backend's early bytes, then the echo of the client's"
    );
    let writer = s.try_clone().unwrap();
    let sent = std::thread::spawn(move || send_stream(writer, 7, BULK));
    let mut got = vec![0u8; BULK];
    s.read_exact(&mut got).unwrap();
    let digest = sent.join().unwrap();
    let mut h = FNV_START;
    fnv(&mut h, &got);
    assert_eq!(h, digest, "4 MiB echoed byte for byte");
    // `send_stream` ended with the client's FIN.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert_eq!(
        rest, b"bye",
        "the other direction outlives the client's FIN"
    );
}

fn pipelined_requests_are_answered_in_order(io: &str) {
    let a = HttpServer::start("a");
    let lb = Sluice::start(&config(io, "", &web("web", "", &[a.addr])));
    let mut req = Vec::new();
    for body in ["first", "second", "third"] {
        let close = if body == "third" {
            "Connection: close\r\n"
        } else {
            ""
        };
        req.extend_from_slice(
            format!(
                "POST /echo HTTP/1.1\r\nHost: x\r\n{close}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    let out = raw(lb.addr("web"), &req);
    assert_eq!(out.matches("HTTP/1.1 200").count(), 3, "{out}");
    let (f, s, t) = (
        out.find("first").unwrap(),
        out.find("second").unwrap(),
        out.find("third").unwrap(),
    );
    assert!(f < s && s < t, "{out}");
}

fn routing_by_host_and_path(io: &str) {
    let (exact, wild, api, path_only) = (
        HttpServer::start("exact"),
        HttpServer::start("wild"),
        HttpServer::start("api"),
        HttpServer::start("static"),
    );
    let services = routed("exact", "vhosts = [\"web.example\"]", &[exact.addr])
        + &routed("wild", "vhosts = [\"*.web.example\"]", &[wild.addr])
        + &routed(
            "api",
            "vhosts = [\"web.example\"]\npath_prefix = \"/api\"",
            &[api.addr],
        )
        + &routed("static", "path_prefix = \"/static\"", &[path_only.addr]);
    let lb = Sluice::start(&config(io, "", &services));
    let front = lb.http();
    let get = |host: &str, path: &str| {
        raw(
            front,
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    let body = |r: String| r.rsplit("\r\n\r\n").next().unwrap().to_owned();
    assert_eq!(body(get("web.example", "/")), "exact");
    assert_eq!(body(get("WEB.example:80", "/api/v1")), "api");
    assert_eq!(body(get("a.web.example", "/api")), "wild");
    assert_eq!(body(get("other.example", "/static/x.css")), "static");
    let miss = get("other.example", "/");
    assert_eq!(status(&miss), 404, "{miss}");
}

fn no_route_no_backend_bad_gateway_and_timeout(io: &str) {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap() // closed when `l` drops: connects are refused
    };
    let slow = HttpServer::start("slow");
    let services = web("dead", "", &[dead]) + &web("slow", "", &[slow.addr]);
    let lb = Sluice::start(&config(io, "backend_timeout_ms = 500", &services));
    let get = |svc: &str, path: &str| {
        raw(
            lb.addr(svc),
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
    };
    // The connect is refused: nothing was sent, no other backend: 502.
    assert_eq!(status(&get("dead", "/")), 502);
    // Now the only backend is marked down: 503 at once.
    assert_eq!(status(&get("dead", "/")), 503);
    // The backend takes 3 s to answer, the limit is 0.5 s.
    assert_eq!(status(&get("slow", "/slow")), 504);
    assert_eq!(status(&get("slow", "/")), 200);
}

fn sticky_cookie_keeps_the_backend_until_it_goes(io: &str) {
    let backends = [
        HttpServer::start("s1"),
        HttpServer::start("s2"),
        HttpServer::start("s3"),
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let cfg = |list: &[SocketAddr]| {
        let svc = web("web", "sticky = true", list).replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"\nsticky_cookie = \"mesosphere_server_id\"",
        );
        config(io, "", &svc)
    };
    let lb = Sluice::start(&cfg(&addrs));
    let url = format!("http://{}/", lb.addr("web"));
    let first = curl(&["-i", &url]);
    let cookie = first
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: mesosphere_server_id="))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no sticky cookie: {first}"))
        .to_owned();
    let name = first.rsplit("\r\n\r\n").next().unwrap().to_owned();
    let jar = format!("mesosphere_server_id={cookie}");
    for _ in 0..100 {
        let r = curl(&["-i", "-b", &jar, &url]);
        assert!(
            !r.contains("Set-Cookie"),
            "a valid cookie is not replaced: {r}"
        );
        assert_eq!(r.rsplit("\r\n\r\n").next().unwrap(), name);
    }
    // Remove that backend: the next request moves and gets a new cookie.
    let keep: Vec<SocketAddr> = addrs
        .iter()
        .zip(["s1", "s2", "s3"])
        .filter(|(_, n)| *n != name)
        .map(|(a, _)| *a)
        .collect();
    assert_eq!(keep.len(), 2);
    assert!(lb.reload(&cfg(&keep)));
    let moved = curl(&["-i", "-b", &jar, &url]);
    let new_name = moved.rsplit("\r\n\r\n").next().unwrap();
    assert_ne!(new_name, name);
    let new_cookie = moved
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: mesosphere_server_id="))
        .unwrap_or_else(|| panic!("a new cookie: {moved}"));
    assert!(!new_cookie.starts_with(&cookie));
}

/// Send `request`, expect `expected` as the status and the connection closed after it.
fn refused(addr: SocketAddr, request: &[u8], expected: u16) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    // read_to_end returns only at the close (or fails at the timeout).
    s.read_to_end(&mut out).expect("the connection is closed");
    let text = String::from_utf8_lossy(&out);
    assert_eq!(
        status(&text),
        expected,
        "{:?} answered {text:?}",
        String::from_utf8_lossy(request)
    );
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "one response: {text}");
}

fn malformed_and_smuggling_requests_are_refused(io: &str) {
    let a = HttpServer::start("a");
    let lb = Sluice::start(&config(
        io,
        "max_header_bytes = 1024",
        &web("web", "", &[a.addr]),
    ));
    let addr = lb.addr("web");
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(2000));
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(2000)
    );
    let cases: Vec<(String, u16)> = vec![
        // CL.TE and TE.CL: both headers.
        (format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"), 400),
        (format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n{smuggled}"), 400),
        // Differing duplicate Content-Length.
        (format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 38\r\n\r\n{smuggled}"), 400),
        (format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 38\r\n\r\n{smuggled}"), 400),
        (format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +38\r\n\r\n{smuggled}"), 400),
        // Transfer-Encoding other than a final chunked.
        (format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n{smuggled}"), 400),
        (format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n{smuggled}"), 400),
        (format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{smuggled}"), 501),
        (format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}"), 400),
        (format!("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"), 400),
        // Invalid chunk sizes.
        (format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{smuggled}"), 400),
        (format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n{smuggled}"), 400),
        (format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n{smuggled}"), 400),
        (format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n{smuggled}"), 400),
        // obs-fold, bare CR, invalid names.
        (format!("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n{smuggled}"), 400),
        (format!("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\rX-B: 2\r\n\r\n{smuggled}"), 400),
        (format!("GET / HTTP/1.1\r\nHost: x\r\nX(A): 1\r\n\r\n{smuggled}"), 400),
        (format!("GET / HTTP/1.1\r\nHost: x\r\n: empty\r\n\r\n{smuggled}"), 400),
        ("GET / HTTP/1.1\r\n\r\n".to_owned(), 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_owned(), 400),
        ("NOT A REQUEST\r\n\r\n".to_owned(), 400),
        // Too long.
        (long, 431),
        (big_header, 431),
        // Versions.
        ("GET / HTTP/2.0\r\nHost: x\r\n\r\n".to_owned(), 505),
        ("GET / HTTP/1.2\r\nHost: x\r\n\r\n".to_owned(), 505),
    ];
    for (request, expected) in &cases {
        refused(addr, request.as_bytes(), *expected);
    }
    let seen = a.requests();
    assert!(
        seen.iter().all(|r| r.path != "/smuggled"),
        "the backend saw a smuggled request: {seen:?}"
    );
    // The service keeps serving.
    assert_eq!(
        status(&raw(
            addr,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )),
        200
    );
}

fn slow_heads_get_408(io: &str) {
    let a = HttpServer::start("a");
    let lb = Sluice::start(&config(
        io,
        "header_timeout_ms = 300",
        &web("web", "", &[a.addr]),
    ));
    // A slowloris: a head that never ends.
    let mut s = TcpStream::connect(lb.addr("web")).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert_eq!(status(&out), 408, "{out}");
    assert!(a.requests().is_empty());
    // A body that stops arriving is bounded the same way (it holds a backend
    // connection meanwhile), however long idle_timeout_ms is.
    let mut s = TcpStream::connect(lb.addr("web")).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert_eq!(status(&out), 408, "{out}");
}

fn forwarded_headers_and_redirects(io: &str) {
    let a = HttpServer::start("a");
    let services =
        web("web", "", &[a.addr]) + &web("secure", "redirect_to_https = true", &[a.addr]);
    let lb = Sluice::start(&config(io, "", &services));
    let web_addr = lb.addr("web");
    let r = raw(
        web_addr,
        b"GET /headers HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    );
    assert!(r.contains("x-forwarded-for: 10.1.2.3, 127.0.0.1"), "{r}");
    assert!(r.contains("x-forwarded-proto: http\r\n"), "{r}");
    assert!(
        r.contains(&format!("x-forwarded-port: {}", web_addr.port())),
        "{r}"
    );
    assert_eq!(r.matches("x-forwarded-for").count(), 1);
    let red = raw(
        lb.addr("secure"),
        b"GET /a/b?c=d HTTP/1.1\r\nHost: shop.example:8080\r\n\r\n",
    );
    assert_eq!(status(&red), 301);
    assert!(
        red.contains("Location: https://shop.example/a/b?c=d\r\n"),
        "{red}"
    );
    // An absolute-form target without a path: its authority and query are kept.
    let red = raw(
        lb.addr("secure"),
        b"GET http://shop.example?c=d HTTP/1.1\r\nHost: other.example\r\n\r\n",
    );
    assert_eq!(status(&red), 301);
    assert!(
        red.contains("Location: https://shop.example/?c=d\r\n"),
        "{red}"
    );
}

/// The cookie's backend refuses the connect: the request goes to another backend and
/// that very response carries the new cookie (not only the next one).
fn sticky_cookie_moves_with_the_first_response_when_its_backend_dies(io: &str) {
    let mut backends = [HttpServer::start("s1"), HttpServer::start("s2")];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    // No pooled connections: the dead backend's only way in is a new connect.
    let lb = Sluice::start(&config(
        io,
        "pool_per_backend = 0",
        &web("web", "sticky = true", &addrs),
    ));
    let url = format!("http://{}/", lb.addr("web"));
    let first = curl(&["-i", &url]);
    let cookie = first
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: mesosphere_server_id="))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no sticky cookie: {first}"))
        .to_owned();
    let name = first.rsplit("\r\n\r\n").next().unwrap().to_owned();
    let dead = if name == "s1" { 0 } else { 1 };
    backends[dead].backend.kill();
    let jar = format!("mesosphere_server_id={cookie}");
    let moved = curl(&["-i", "-b", &jar, &url]);
    assert_eq!(status(&moved), 200, "{moved}");
    assert_ne!(moved.rsplit("\r\n\r\n").next().unwrap(), name);
    let new_cookie = moved
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: mesosphere_server_id="))
        .unwrap_or_else(|| panic!("the first response after the move sets a cookie: {moved}"));
    assert!(!new_cookie.starts_with(&cookie), "{moved}");
}

/// A status line with no reason phrase, or one with bytes past ASCII, is relayed (with
/// an empty reason), and sluice goes on serving.
fn status_lines_without_a_usable_reason_are_relayed(io: &str) {
    let b = Backend::spawn(|mut c| {
        let mut buf = [0u8; 4096];
        let answers: [&[u8]; 3] = [
            b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 404 N\xc3\xa3o Encontrado\r\nContent-Length: 2\r\n\r\nno",
            b"HTTP/1.1 100\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ];
        for a in answers.iter().cycle() {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if c.write_all(a).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let lb = Sluice::start(&config(io, "", &web("web", "", &[b.addr])));
    let mut c = connect(lb.addr("web"));
    for want in [200, 404, 200, 200] {
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !(got.ends_with(b"ok") || got.ends_with(b"no")) {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        let last = text.rsplit("HTTP/1.1 ").next().unwrap();
        assert!(last.starts_with(&format!("{want} ")), "{text}");
    }
}

/// A backend that answers without reading the request body (as many do for GET) leaves
/// it in the connection, where it would be parsed as the next request: another
/// client's, on a pooled connection. The attacker's body here is a request prefix
/// that would swallow the victim's request line.
fn a_body_the_backend_leaves_unread_reaches_no_other_client(io: &str) {
    let b = Backend::spawn(|mut c| {
        // Answers each request head with its own request line, keep-alive, never
        // reading a body.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let line = buf[..end].split(|&b| b == b'\r').next().unwrap().to_vec();
                buf.drain(..end + 4);
                let body = String::from_utf8_lossy(&line).into_owned();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if c.write_all(resp.as_bytes()).is_err() {
                    return;
                }
            }
            match c.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });
    let cfg = config(io, "", &web("web", "", &[b.addr])).replace("workers = 2", "workers = 1");
    let lb = Sluice::start(&cfg);
    let addr = lb.addr("web");
    for _ in 0..5 {
        let prefix = "GET /chosen HTTP/1.1\r\nX-Swallow: ";
        let attack = format!(
            "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{prefix}",
            prefix.len()
        );
        let r = raw(addr, attack.as_bytes());
        assert!(r.ends_with("GET /a HTTP/1.1"), "{r}");
        let victim = raw(
            addr,
            b"GET /victim HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(
            victim.ends_with("GET /victim HTTP/1.1"),
            "the victim got: {victim}"
        );
    }
}

/// The family of a FIN arriving with the last data, on the client's side: requests
/// followed at once by the client's FIN (one segment, often) are all answered, then the
/// connection ends — on both reactors, however the kernel splits the bytes.
fn a_client_fin_with_its_last_request_still_gets_every_answer(io: &str) {
    let a = HttpServer::start("a");
    let lb = Sluice::start(&config(io, "", &web("web", "", &[a.addr])));
    for n in [1usize, 2, 3] {
        for _ in 0..10 {
            let mut s = connect(lb.addr("web"));
            let req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(n);
            // Corked: the requests and the FIN leave in one segment, so an
            // edge-triggered loop hears of both in one event.
            socket2::SockRef::from(&s).set_tcp_cork(true).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            assert_eq!(out.matches("HTTP/1.1 200 ").count(), n, "{out}");
            assert!(out.ends_with("\r\n\r\na"), "{out}");
        }
    }
}

fn old_clients_and_close_delimited_responses(io: &str) {
    let a = HttpServer::start("a");
    let lb = Sluice::start(&config(io, "", &web("web", "", &[a.addr])));
    let addr = lb.addr("web");
    // An HTTP/1.0 client cannot read chunked: it gets the plain body, then the close.
    let r = raw(addr, b"GET /chunked HTTP/1.0\r\n\r\n");
    assert!(r.ends_with("\r\n\r\nabc"), "{r}");
    assert!(!r.to_ascii_lowercase().contains("transfer-encoding"), "{r}");
    // A response delimited by the backend's close ends the client connection too.
    let r = raw(addr, b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.ends_with("\r\n\r\na-until-close"), "{r}");
    assert!(r.contains("Connection: close"), "{r}");
    // HTTP/1.0 with keep-alive is kept alive.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n\r\na") {
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("Connection: keep-alive"), "{text}");
    }
}

fn http_counters_show_on_the_admin_port(io: &str) {
    let a = HttpServer::start("a");
    let cfg = config(io, "", &web("web", "", &[a.addr])) + "[admin]\nlisten = \"127.0.0.1:0\"\n";
    let lb = Sluice::start(&cfg);
    let url = format!("http://{}/", lb.addr("web"));
    let urls = vec![url.as_str(); 10];
    curl(&urls);
    let bad = raw(lb.addr("web"), b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(status(&bad), 400);
    let admin = lb.admin();
    let csv = curl(&[&format!("http://{admin}/haproxy?stats;csv")]);
    let header: Vec<&str> = csv
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |name: &str| header.iter().position(|c| *c == name).unwrap();
    let front: Vec<&str> = csv
        .lines()
        .find(|l| l.starts_with("web,FRONTEND,"))
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(front[col("mode")], "http");
    assert_eq!(front[col("hrsp_2xx")], "10");
    assert_eq!(front[col("hrsp_4xx")], "1");
    assert_eq!(front[col("req_tot")], "11");
    assert_eq!(metric(admin, "sluice_http_responses_total"), 11.0);
    // Ten requests over one client connection: nine went over a pooled connection.
    assert_eq!(metric(admin, "sluice_http_backend_reused_total"), 9.0);
    assert_eq!(a.connections(), 1);
    let page = curl(&[&format!("http://{admin}/haproxy?stats")]);
    // 1xx, 2xx, 3xx, 4xx, 5xx, other.
    let responses = "<td>0</td><td>10</td><td>0</td><td>1</td><td>0</td><td>0</td>";
    assert!(page.contains(responses), "{page}");
    // Percentiles come from the shards' HdrHistograms, published once a second.
    wait_for("response percentiles", || {
        (metric(admin, "sluice_http_response_quantile_seconds") > 0.0).then_some(())
    });
    let page = curl(&[&format!("http://{admin}/haproxy?stats")]);
    assert!(page.contains(" ms</td>"), "p50 and p99 in the rows: {page}");
}

/// SIGTERM: idle keep-alive clients are let go, a request in flight is answered (its
/// response the last on its connection), then sluice exits 0.
fn sigterm_finishes_requests_in_flight(io: &str) {
    let a = HttpServer::start("a");
    let mut lb = Sluice::start(&config(io, "", &web("web", "", &[a.addr])));
    let addr = lb.addr("web");
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(PATIENCE)).unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = Vec::new();
    while !first.ends_with(b"\r\n\r\na") {
        let mut buf = [0u8; 256];
        let n = idle.read(&mut buf).unwrap();
        assert!(n > 0, "the first response, whole");
        first.extend_from_slice(&buf[..n]);
    }
    let slow = std::thread::spawn(move || raw(addr, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"));
    wait_for("the slow request to reach the backend", || {
        a.requests().iter().any(|r| r.path == "/slow").then_some(())
    });
    lb.signal("TERM");
    lb.wait_log("draining", |l| l.contains("draining"));
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest).unwrap();
    assert!(
        rest.is_empty(),
        "the idle connection is closed without a word: {:?}",
        String::from_utf8_lossy(&rest)
    );
    let answer = slow.join().unwrap();
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(answer.contains("Connection: close\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\na"), "{answer}");
    assert!(lb.wait_exit().success());
}
