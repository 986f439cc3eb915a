//! The session driven by hand: bytes in, bytes out, phases.

use super::*;
use std::net::Ipv4Addr;

pub(super) const LIMITS: Limits = Limits {
    max_header_bytes: 1024,
    header_timeout_ms: 100,
    keepalive_timeout_ms: 1000,
    backend_timeout_ms: 500,
    forwarded_headers: true,
};

pub(super) fn fwd(reused: bool) -> Forward<'static> {
    Forward {
        client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        listen_port: 80,
        https: false,
        set_cookie: None,
        reused,
    }
}

pub(super) fn client(s: &mut Session, bytes: &[u8]) {
    let _ = s.client_read(0, |buf| {
        buf.extend_from_slice(bytes);
        Ok::<usize, ()>(bytes.len())
    });
}

pub(super) fn take_client(s: &mut Session) -> String {
    let out = String::from_utf8_lossy(s.client_output()).into_owned();
    s.client_wrote(out.len());
    out
}

pub(super) fn take_backend(s: &mut Session) -> String {
    let out = String::from_utf8_lossy(s.backend_output()).into_owned();
    s.backend_wrote(out.len(), 0);
    out
}

#[test]
fn keep_alive_exchange_returns_to_head_and_reuses_the_backend() {
    let mut s = Session::new(LIMITS, 0);
    client(
        &mut s,
        b"GET /a HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
    );
    assert_eq!(s.phase(), Phase::Route);
    assert_eq!((s.host(), s.path()), (&b"h"[..], &b"/a"[..]));
    s.attach(fwd(false), 0);
    let sent = take_backend(&mut s);
    assert!(sent.starts_with("GET /a HTTP/1.1\r\nHost: h\r\n"), "{sent}");
    assert!(
        sent.contains("X-Forwarded-For: 1.2.3.4, 10.0.0.1\r\n"),
        "{sent}"
    );
    s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0);
    assert_eq!(
        s.take_finished(),
        Some(Finished {
            status: 200,
            reusable: true
        })
    );
    assert!(take_client(&mut s).ends_with("\r\n\r\nok"));
    assert_eq!(s.phase(), Phase::Head);
}

#[test]
fn pipelined_requests_before_the_clients_fin_are_all_answered() {
    let mut s = Session::new(LIMITS, 0);
    client(
        &mut s,
        b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    s.client_closed();
    for (path, last) in [("/1", false), ("/2", true)] {
        assert_eq!(s.phase(), Phase::Route);
        assert_eq!(s.path(), path.as_bytes());
        s.attach(fwd(false), 0);
        take_backend(&mut s);
        s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0);
        let out = take_client(&mut s);
        assert_eq!(out.contains("Connection: close"), last, "{out}");
    }
    assert_eq!(s.phase(), Phase::Closed);
}

#[test]
fn a_fin_read_while_the_last_response_is_written_waits_for_it() {
    let mut s = Session::new(LIMITS, 0);
    client(&mut s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    s.attach(fwd(false), 0);
    take_backend(&mut s);
    s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody", 0);
    assert_eq!(s.phase(), Phase::Head);
    // The client's window took only part of the response when its FIN is read.
    s.client_wrote(10);
    s.client_closed();
    assert_eq!(s.phase(), Phase::Head, "the response's tail is still owed");
    assert!(!s.wants_client_read());
    assert!(take_client(&mut s).ends_with("\r\n\r\nbody"));
    assert_eq!(s.phase(), Phase::Closed);
}

/// A client slow to take a finished response keeps it: neither the keep-alive wait
/// nor a close's linger runs while it is owed bytes (the driver's idle timeout bounds
/// that); each starts once the last byte is written.
#[test]
fn a_slow_reader_keeps_the_tail_past_the_keep_alive_and_the_linger() {
    for close in [false, true] {
        let mut s = Session::new(LIMITS, 0);
        let conn = if close { "Connection: close\r\n" } else { "" };
        client(
            &mut s,
            format!("GET / HTTP/1.1\r\nHost: h\r\n{conn}\r\n").as_bytes(),
        );
        s.attach(fwd(false), 0);
        take_backend(&mut s);
        s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody", 0);
        assert_eq!(s.phase(), if close { Phase::Closing } else { Phase::Head });
        s.client_wrote(10);
        // Long after every timer of a finished exchange would have fired.
        let late = 100 * (LIMITS.keepalive_timeout_ms + LINGER_MS);
        assert_eq!(s.deadline_ms(), u64::MAX, "close: {close}");
        s.check_timers(late);
        assert_ne!(s.phase(), Phase::Closed, "close: {close}");
        assert!(take_client(&mut s).ends_with("\r\n\r\nbody"));
        // The wait that follows starts from the last check, not from the response.
        let limit = if close {
            LINGER_MS
        } else {
            LIMITS.keepalive_timeout_ms
        };
        assert_eq!(s.deadline_ms(), late + limit, "close: {close}");
        s.check_timers(late + limit);
        assert_eq!(s.phase(), Phase::Closed, "close: {close}");
    }
}

/// A response cut short says so: the driver must not end it as a complete one.
#[test]
fn a_cut_response_is_marked_and_a_whole_one_is_not() {
    for cut in [false, true] {
        let mut s = Session::new(LIMITS, 0);
        client(
            &mut s,
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        );
        s.attach(fwd(false), 0);
        take_backend(&mut s);
        s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nbody", 0);
        if cut {
            s.backend_closed(true, 0);
        } else {
            s.backend_read(b"more", 0);
        }
        take_client(&mut s);
        assert_eq!(s.cut_short(), cut);
        assert!(s.fin_to_client());
    }
}

#[test]
fn a_response_cut_short_leaves_the_one_before_it_whole() {
    let mut s = Session::new(LIMITS, 0);
    client(
        &mut s,
        b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    s.attach(fwd(false), 0);
    take_backend(&mut s);
    s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst", 0);
    assert!(s.take_finished().is_some());
    // A slow client: the first response is still being written.
    s.client_wrote(4);
    assert_eq!(s.phase(), Phase::Route);
    s.attach(fwd(true), 0);
    take_backend(&mut s);
    s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsec", 0);
    assert_eq!(s.backend_closed(true, 0), BackendFault::Failed);
    assert_eq!(
        s.phase(),
        Phase::Closing,
        "not closed before the first is out"
    );
    let out = take_client(&mut s);
    assert!(out.contains("\r\n\r\nfirstHTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nsec"), "{out}");
    assert!(s.graceful_close());
}

#[test]
fn a_head_cut_short_by_the_fin_closes_once_flushed() {
    let mut s = Session::new(LIMITS, 0);
    client(&mut s, b"GET / HTT");
    s.client_closed();
    assert_eq!(s.phase(), Phase::Closed);
}

#[test]
fn shutting_down_makes_the_response_in_flight_the_last() {
    let mut s = Session::new(LIMITS, 0);
    client(&mut s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    s.attach(fwd(false), 0);
    take_backend(&mut s);
    s.stop_keep_alive();
    s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0);
    assert!(take_client(&mut s).contains("Connection: close\r\n"));
    assert!(s.graceful_close());
}

#[test]
fn old_clients_get_plain_bodies_and_a_close() {
    let mut s = Session::new(LIMITS, 0);
    client(&mut s, b"GET / HTTP/1.0\r\n\r\n");
    s.attach(fwd(false), 0);
    take_backend(&mut s);
    s.backend_read(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        0,
    );
    let out = take_client(&mut s);
    assert!(
        out.contains("Connection: close\r\n") && out.ends_with("\r\n\r\nok"),
        "{out}"
    );
    assert!(!out.contains("chunked"), "{out}");
    assert!(s.graceful_close());
}

#[test]
fn interim_responses_are_relayed() {
    let mut s = Session::new(LIMITS, 0);
    client(
        &mut s,
        b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    );
    s.attach(fwd(false), 0);
    assert!(take_backend(&mut s).contains("Expect: 100-continue"));
    s.backend_read(b"HTTP/1.1 100 Continue\r\n\r\n", 0);
    assert_eq!(take_client(&mut s), "HTTP/1.1 100 Continue\r\n\r\n");
    client(&mut s, b"hi");
    assert_eq!(take_backend(&mut s), "hi");
    s.backend_read(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", 0);
    assert!(take_client(&mut s).starts_with("HTTP/1.1 201 Created"));
    assert_eq!(s.take_finished().map(|f| f.status), Some(201));
}

#[test]
fn a_failed_pooled_connection_replays_only_what_can_be_replayed() {
    let mut s = Session::new(LIMITS, 0);
    client(&mut s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    s.attach(fwd(true), 0);
    let first = take_backend(&mut s);
    assert_eq!(s.backend_closed(false, 0), BackendFault::Retry);
    assert_eq!(s.phase(), Phase::Route);
    s.attach(fwd(false), 0);
    assert_eq!(take_backend(&mut s), first, "the same request, again");

    let mut s = Session::new(LIMITS, 0);
    client(
        &mut s,
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx",
    );
    s.attach(fwd(true), 0);
    take_backend(&mut s);
    assert_eq!(s.backend_closed(false, 0), BackendFault::Failed);
    assert!(take_client(&mut s).starts_with("HTTP/1.1 502 "));
}

#[test]
fn an_absolute_form_target_is_routed_and_forwarded_by_its_authority() {
    let mut s = Session::new(LIMITS, 0);
    client(
        &mut s,
        b"GET http://Internal.example:8080/x?y=1 HTTP/1.1\r\nHost: public.example\r\nAccept: */*\r\n\r\n",
    );
    assert_eq!(s.phase(), Phase::Route);
    assert_eq!(
        (s.host(), s.path()),
        (&b"Internal.example"[..], &b"/x?y=1"[..])
    );
    assert_eq!(s.header("HOST"), Some(&b"Internal.example:8080"[..]));
    s.attach(fwd(false), 0);
    let sent = take_backend(&mut s);
    assert!(
        sent.starts_with("GET /x?y=1 HTTP/1.1\r\nHost: Internal.example:8080\r\nAccept: */*\r\n"),
        "{sent}"
    );
    assert_eq!(
        sent.to_ascii_lowercase().matches("host:").count(),
        1,
        "{sent}"
    );
    assert!(!sent.contains("public.example"), "{sent}");

    // No path: `/`, or `*` for OPTIONS; a query alone gets its `/`.
    for (request, line, path) in [
        (
            "GET http://h HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\r\n",
            "/",
        ),
        (
            "GET https://h?q HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /?q HTTP/1.1\r\n",
            "/",
        ),
        (
            "OPTIONS http://h HTTP/1.1\r\nHost: h\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\n",
            "*",
        ),
        (
            "OPTIONS http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            "OPTIONS / HTTP/1.1\r\n",
            "/",
        ),
        (
            "GET http://h/ HTTP/1.0\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: h\r\n",
            "/",
        ),
    ] {
        let mut s = Session::new(LIMITS, 0);
        client(&mut s, request.as_bytes());
        assert_eq!(s.path(), path.as_bytes(), "{request:?}");
        s.attach(fwd(false), 0);
        let sent = take_backend(&mut s);
        assert!(sent.starts_with(line), "{request:?} sent {sent:?}");
    }
}

#[test]
fn a_response_with_transfer_encoding_loses_its_content_length() {
    let both = &b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..];
    let mut s = Session::new(LIMITS, 0);
    client(&mut s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    s.attach(fwd(false), 0);
    take_backend(&mut s);
    s.backend_read(both, 0);
    let out = take_client(&mut s);
    assert!(
        !out.to_ascii_lowercase().contains("content-length"),
        "{out}"
    );
    assert!(
        out.ends_with("Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        "{out}"
    );
    assert_eq!(s.take_finished().map(|f| f.reusable), Some(false));

    // HTTP/1.0: de-chunked, without a length, delimited by the close.
    let mut s = Session::new(LIMITS, 0);
    client(&mut s, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    s.attach(fwd(false), 0);
    take_backend(&mut s);
    s.backend_read(both, 0);
    let out = take_client(&mut s);
    let lower = out.to_ascii_lowercase();
    assert!(
        !lower.contains("content-length") && !lower.contains("transfer-encoding"),
        "{out}"
    );
    assert!(
        out.contains("Connection: close\r\n") && out.ends_with("\r\n\r\nhello"),
        "{out}"
    );
    assert!(s.graceful_close());
}

#[test]
fn malformed_response_framing_is_502_while_nothing_was_relayed() {
    for response in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 junk\r\nhello\r\n0\r\n\r\n",
    ] {
        let mut s = Session::new(LIMITS, 0);
        client(&mut s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        s.attach(fwd(false), 0);
        take_backend(&mut s);
        s.backend_read(response, 0);
        let out = take_client(&mut s);
        assert!(
            out.starts_with("HTTP/1.1 502 ") && out.matches("HTTP/").count() == 1,
            "{}: {out}",
            String::from_utf8_lossy(response)
        );
        assert_eq!(
            s.take_finished().map(|f| (f.status, f.reusable)),
            Some((502, false))
        );
    }
    // Once the head has left, the client is cut off instead.
    let mut s = Session::new(LIMITS, 0);
    client(&mut s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    s.attach(fwd(false), 0);
    take_backend(&mut s);
    s.backend_read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0);
    assert!(take_client(&mut s).starts_with("HTTP/1.1 200 "));
    s.backend_read(b"5 junk\r\n", 0);
    assert_eq!(s.phase(), Phase::Closed);
}

#[test]
fn strict_request_parsing_answers_400_and_sends_nothing() {
    for request in [
        &b"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 junk\r\nhello\r\n0\r\n\r\n",
    ] {
        let mut s = Session::new(LIMITS, 0);
        client(&mut s, request);
        assert_eq!(s.phase(), Phase::Route, "{}", String::from_utf8_lossy(request));
    }
    for request in [
        &b"GET /a#f HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ,4\r\n\r\nabcd",
    ] {
        let mut s = Session::new(LIMITS, 0);
        client(&mut s, request);
        assert!(take_client(&mut s).starts_with("HTTP/1.1 400 "));
        assert_eq!(s.backend_output(), b"");
    }
    // A junk chunk size in the bytes that came with the head: 400, and the head is
    // dropped before it could leave.
    let mut s = Session::new(LIMITS, 0);
    client(
        &mut s,
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 junk\r\nhello\r\n0\r\n\r\n",
    );
    s.attach(fwd(false), 0);
    assert!(take_client(&mut s).starts_with("HTTP/1.1 400 "));
    assert_eq!(s.backend_output(), b"");
}

/// RFC 9110 §7.6.1: fields named by Connection are hop-by-hop, both ways; Host and the
/// fields sluice writes itself stay.
#[test]
fn fields_named_by_connection_are_not_forwarded() {
    let mut s = Session::new(LIMITS, 0);
    client(
        &mut s,
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret, host\r\nX-Secret: 1\r\nX-Kept: 2\r\n\r\n",
    );
    s.attach(fwd(false), 0);
    let head = take_backend(&mut s).to_ascii_lowercase();
    assert!(!head.contains("x-secret"), "{head}");
    assert!(
        head.contains("host: h\r\n") && head.contains("x-kept: 2\r\n"),
        "{head}"
    );
    s.backend_read(
        b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: y\r\nX-Public: z\r\nContent-Length: 0\r\n\r\n",
        0,
    );
    let resp = take_client(&mut s).to_ascii_lowercase();
    assert!(!resp.contains("x-internal"), "{resp}");
    assert!(resp.contains("x-public: z\r\n"), "{resp}");
}

/// A backend connection that carried a request body (which the backend may have left
/// unread) or answered a HEAD (whose body a backend may still write) is not reused.
#[test]
fn connections_after_a_body_or_a_head_are_not_reused() {
    for (request, reusable) in [
        (&b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"[..], true),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab",
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            false,
        ),
        (b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", false),
    ] {
        let mut s = Session::new(LIMITS, 0);
        client(&mut s, request);
        s.attach(fwd(false), 0);
        take_backend(&mut s);
        s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0);
        let f = s.take_finished().expect("complete");
        assert_eq!(f.reusable, reusable, "{}", String::from_utf8_lossy(request));
    }
}

mod memory;
mod timers;
