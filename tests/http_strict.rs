//! Strict HTTP/1.1 parsing end to end, on both I/O backends: raw bytes over loopback
//! to a real `sluice`, checking the status the client gets and what the backend
//! received. Where a rule follows HAProxy 2.6 the case says so.

mod common;

use common::http::{raw, status, HttpServer};
use common::*;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

both_io!(
    absolute_form_targets_follow_their_authority,
    malformed_targets_are_400,
    framing_lists_and_lengths_are_strict,
    responses_with_transfer_encoding_lose_their_content_length,
    response_codings_sluice_cannot_undo_are_502,
);

/// `[server]`, the shared HTTP listener, and `services`.
fn config(io: &str, services: &str) -> String {
    server(io, "") + "[http]\nlisten = \"127.0.0.1:0\"\n" + services
}

/// An HTTP service with a port of its own, or only on the shared listener by `vhost`.
fn service(name: &str, vhost: Option<&str>, backend: SocketAddr) -> String {
    let place = match vhost {
        Some(v) => format!("vhosts = [\"{v}\"]"),
        None => "listen = \"127.0.0.1:0\"".to_owned(),
    };
    format!(
        "[[service]]\nname = \"{name}\"\nmode = \"http\"\n{place}\nbackends = [\"{backend}\"]\n"
    )
}

/// The body of a response that arrived whole (read to the close).
fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

fn post(fields: &str, body: &str) -> String {
    format!("POST /p HTTP/1.1\r\nHost: x\r\n{fields}\r\n{body}{SMUGGLED}")
}

/// Send `request`; expect a 400 and the close after it.
fn refused(addr: SocketAddr, request: &str) {
    let r = raw(addr, request.as_bytes());
    assert_eq!(status(&r), 400, "{request:?}: {r}");
    assert_eq!(r.matches("HTTP/1.1").count(), 1, "one response: {r}");
}

fn absolute_form_targets_follow_their_authority(io: &str) {
    let (public, internal) = (HttpServer::start("public"), HttpServer::start("internal"));
    let services = service("public", Some("public.example"), public.addr)
        + &service("internal", Some("internal.example"), internal.addr);
    let lb = Sluice::start(&config(io, &services));
    let front = lb.http();
    // RFC 9112 §3.2.2: the authority replaces Host, for routing and for the backend,
    // which gets the origin form and one Host. (HAProxy 2.6 answers 400 when the
    // two differ.)
    let r = raw(
        front,
        b"GET http://internal.example/secret?x=1 HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((status(&r), body(&r)), (200, "internal"), "{r}");
    assert!(public.requests().is_empty(), "routed by the Host field");
    let seen = internal.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/secret?x=1");
    let lines: Vec<&str> = seen[0].head.lines().collect();
    assert_eq!(lines[0], "get /secret?x=1 http/1.1", "{lines:?}");
    let hosts: Vec<&str> = seen[0]
        .head
        .lines()
        .filter(|l| l.starts_with("host:"))
        .collect();
    assert_eq!(hosts, ["host: internal.example"], "{}", seen[0].head);
    // A port, an upper-case scheme, HTTP/1.0 without Host, an empty path.
    let r = raw(front, b"GET HTTPS://internal.example:8443 HTTP/1.0\r\n\r\n");
    assert_eq!((status(&r), body(&r)), (200, "internal"), "{r}");
    let seen = internal.requests();
    let lines: Vec<&str> = seen[1].head.lines().take(2).collect();
    assert_eq!(lines, ["get / http/1.0", "host: internal.example:8443"]);
    // The Host field still routes origin-form requests.
    let r = raw(
        front,
        b"GET / HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(body(&r), "public");

    // Other schemes, an empty authority, userinfo: 400, and no backend hears of it.
    // (HAProxy 2.6 forwards the first six and the eighth when Host matches.)
    for target in [
        "ftp://internal.example/",
        "ws://internal.example/",
        "http:///",
        "http://",
        "http://:80/",
        "http://user@internal.example/",
        "http://user:pw@internal.example/",
        "http://@internal.example/",
        "http:internal.example/",
        "http://internal.example/#top",
    ] {
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\n\r\n");
        let r = raw(front, request.as_bytes());
        assert_eq!(status(&r), 400, "{target}: {r}");
    }
    assert_eq!(public.requests().len(), 1);
    assert_eq!(internal.requests().len(), 2);
}

fn malformed_targets_are_400(io: &str) {
    let a = HttpServer::start("a");
    let lb = Sluice::start(&config(io, &service("web", None, a.addr)));
    let addr = lb.addr("web");
    let get = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n{SMUGGLED}");
    // All 400 in HAProxy 2.6 too, but `GET *` (200 there).
    for request in [
        get("/a#frag"),
        get("/a?b#c"),
        get("/a#"),
        get("http://x/a#f"),
        get("/a b"), // a space in the target: 400, not 505
        get("/a  b"),
        format!("GET /a b HTTP/2.0\r\nHost: x\r\n\r\n{SMUGGLED}"), // 400, not 505
        get("?q"),
        get("a"),
        get("*"),
        format!("CONNECT /x HTTP/1.1\r\nHost: x\r\n\r\n{SMUGGLED}"),
        format!("CONNECT x HTTP/1.1\r\nHost: x\r\n\r\n{SMUGGLED}"),
        format!("CONNECT http://x/ HTTP/1.1\r\nHost: x\r\n\r\n{SMUGGLED}"),
    ] {
        refused(addr, &request);
    }
    assert_eq!(a.connections(), 0, "a refused head reaches no backend");
    let close = "Host: x\r\nConnection: close\r\n\r\n";
    for (line, path) in [
        ("OPTIONS * HTTP/1.1", "*"),
        ("GET /a%20b?c HTTP/1.1", "/a%20b?c"),
    ] {
        let r = raw(addr, format!("{line}\r\n{close}").as_bytes());
        assert_eq!(status(&r), 200, "{line}: {r}");
        assert_eq!(a.requests().last().unwrap().path, path);
    }
}

fn framing_lists_and_lengths_are_strict(io: &str) {
    let a = HttpServer::start("a");
    let lb = Sluice::start(&config(io, &service("web", None, a.addr)));
    let addr = lb.addr("web");
    let chunked = "Transfer-Encoding: chunked\r\n";
    // Refused while the head is read: no backend connection at all. HAProxy 2.6 gives
    // 400 for each, but where a comment says otherwise.
    let heads: Vec<String> = vec![
        post("Transfer-Encoding:\r\nContent-Length: 5\r\n", "hello"),
        post("Transfer-Encoding: ,\r\nContent-Length: 5\r\n", "hello"),
        post("Transfer-Encoding:\r\n", ""),
        post("Transfer-Encoding: ,\r\n", ""),
        post("Transfer-Encoding: , chunked\r\n", "0\r\n\r\n"), // HAProxy: 422
        post("Transfer-Encoding: chunked,\r\n", "0\r\n\r\n"),  // HAProxy: 200
        post("Transfer-Encoding: chunked,,\r\n", "0\r\n\r\n"),
        post(
            "Transfer-Encoding:\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\n",
        ), // HAProxy: 200
        post("Content-Length: 4,\r\n", "abcd"),
        post("Content-Length: ,4\r\n", "abcd"),
        post("Content-Length: 4,,4\r\n", "abcd"),
        post("Content-Length: ,\r\n", ""),
        post("Content-Length: 4,\r\nContent-Length: 4\r\n", "abcd"),
        post("Content-Length: +4\r\n", "abcd"),
        post("Content-Length: -4\r\n", "abcd"),
        post("Content-Length: 0x4\r\n", "abcd"),
        post("Content-Length: 4 4\r\n", "abcd"),
        // 2^64: HAProxy 2.6.12 reads it as 0 and forwards the request behind it.
        post("Content-Length: 18446744073709551616\r\n", ""),
    ];
    for request in &heads {
        refused(addr, request);
    }
    assert_eq!(a.connections(), 0, "a refused head reaches no backend");

    // Refused in the body: the head may have left, but no request completes.
    let bodies = [
        post(chunked, "5 junk\r\nhello\r\n0\r\n\r\n"),
        post(chunked, "5junk\r\nhello\r\n0\r\n\r\n"),
        post(chunked, "5 5\r\nhello\r\n0\r\n\r\n"),
        post(chunked, "5\r\nhello\r\n0 junk\r\n\r\n"),
        post(chunked, " 5\r\nhello\r\n0\r\n\r\n"),
        post(chunked, "+5\r\nhello\r\n0\r\n\r\n"),
        post(chunked, "0x5\r\nhello\r\n0\r\n\r\n"),
        post(chunked, "10000000000000005\r\nhello\r\n0\r\n\r\n"),
    ];
    for request in &bodies {
        let r = raw(addr, request.as_bytes());
        assert_eq!(status(&r), 400, "{request:?}: {r}");
    }
    assert!(a.requests().is_empty(), "{:?}", a.requests());

    // Their legal siblings pass: chunk extensions and whitespace before them, leading
    // zeros, a list of equal lengths, a coding's case.
    let close = "Connection: close\r\n";
    let good = [
        (
            format!("{chunked}{close}"),
            "5;name=value\r\nhello\r\n0\r\n\r\n",
        ),
        (format!("{chunked}{close}"), "5 ;a=b\r\nhello\r\n0\r\n\r\n"),
        (format!("{chunked}{close}"), "5\t\r\nhello\r\n0\r\n\r\n"),
        (
            format!("{chunked}{close}"),
            "0000000000000000005\r\nhello\r\n0\r\n\r\n",
        ),
        (
            format!("Transfer-Encoding: Chunked\r\n{close}"),
            "5\r\nhello\r\n0\r\n\r\n",
        ),
        (format!("Content-Length: 0005\r\n{close}"), "hello"),
        (format!("Content-Length: 5, 5\r\n{close}"), "hello"),
        (
            format!("Content-Length: 5\r\nContent-Length: 5\r\n{close}"),
            "hello",
        ),
    ];
    for (fields, body) in &good {
        let request = format!("POST /echo HTTP/1.1\r\nHost: x\r\n{fields}\r\n{body}");
        let r = raw(addr, request.as_bytes());
        assert_eq!(
            (status(&r), self::body(&r)),
            (200, "hello"),
            "{request:?}: {r}"
        );
    }
    let seen = a.requests();
    assert_eq!(seen.len(), good.len());
    for s in &seen {
        let framing: Vec<&str> = s
            .head
            .lines()
            .filter(|l| l.starts_with("content-length:") || l.starts_with("transfer-encoding:"))
            .collect();
        assert!(
            framing == ["content-length: 5"] || framing == ["transfer-encoding: chunked"],
            "framing written once, canonically: {}",
            s.head
        );
    }
    assert!(seen.iter().all(|r| r.path != "/smuggled"));
}

/// A backend answering each request with the response named by its path, then closing.
fn canned(seen: Arc<Mutex<Vec<String>>>) -> Backend {
    Backend::spawn(move |mut c| {
        let Some(head) = try_read_head(&mut c) else {
            return;
        };
        let head = String::from_utf8_lossy(&head).into_owned();
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        seen.lock().unwrap().push(head);
        let response: &[u8] = match path.as_str() {
            "/cl-te" => b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "/te-cl" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "/gzip" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
            "/gzip-cl" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello",
            "/chunked-gzip" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nhello",
            "/gzip-chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "/te-te" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "/te-empty" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\nContent-Length: 5\r\n\r\nhello",
            "/cl-comma" => b"HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\nhello",
            "/chunk-junk" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 junk\r\nhello\r\n0\r\n\r\n",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        };
        let _ = c.write_all(response);
    })
}

fn responses_with_transfer_encoding_lose_their_content_length(io: &str) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let backend = canned(Arc::clone(&seen));
    let lb = Sluice::start(&config(io, &service("web", None, backend.addr)));
    let addr = lb.addr("web");
    for path in ["/cl-te", "/te-cl"] {
        // RFC 9112 §6.3: Transfer-Encoding wins; the length is not forwarded.
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let r = raw(addr, request.as_bytes());
        let lower = r.to_ascii_lowercase();
        assert_eq!(status(&r), 200, "{r}");
        assert!(!lower.contains("content-length"), "{r}");
        assert_eq!(
            lower.matches("transfer-encoding: chunked").count(),
            1,
            "{r}"
        );
        assert_eq!(body(&r), "5\r\nhello\r\n0\r\n\r\n");
        // HTTP/1.0: de-chunked, and delimited by the close rather than the backend's
        // wrong length. (HAProxy 2.6 sends HTTP/1.0 clients the chunked body.)
        let request = format!("GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = raw(addr, request.as_bytes());
        let lower = r.to_ascii_lowercase();
        assert_eq!(status(&r), 200, "{r}");
        assert!(
            !lower.contains("content-length") && !lower.contains("transfer-encoding"),
            "{r}"
        );
        assert!(r.contains("Connection: close\r\n"), "{r}");
        assert_eq!(body(&r), "hello");
    }
    assert_eq!(seen.lock().unwrap().len(), 4);
}

fn response_codings_sluice_cannot_undo_are_502(io: &str) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let backend = canned(Arc::clone(&seen));
    let lb = Sluice::start(&config(io, &service("web", None, backend.addr)));
    let addr = lb.addr("web");
    // All 502 in HAProxy 2.6 too, but for `/te-empty`, which it relays with the body
    // delimited by the close.
    for path in [
        "/gzip",
        "/gzip-cl",
        "/chunked-gzip",
        "/gzip-chunked",
        "/te-te",
        "/te-empty",
        "/cl-comma",
        "/chunk-junk",
    ] {
        for version in ["1.1", "1.0"] {
            let request =
                format!("GET {path} HTTP/{version}\r\nHost: x\r\nConnection: close\r\n\r\n");
            let r = raw(addr, request.as_bytes());
            assert_eq!(status(&r), 502, "{path} HTTP/{version}: {r}");
            assert_eq!(r.matches("HTTP/").count(), 1, "one response: {path}: {r}");
        }
    }
    let r = raw(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((status(&r), body(&r)), (200, "ok"));
}
