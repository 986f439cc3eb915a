//! The session driven by hand: bytes in, bytes out, phases.

use super::*;
use std::net::Ipv4Addr;

const LIMITS: Limits = Limits {
    max_header_bytes: 1024,
    header_timeout_ms: 100,
    keepalive_timeout_ms: 1000,
    backend_timeout_ms: 500,
    forwarded_headers: true,
};

fn fwd(reused: bool) -> Forward<'static> {
    Forward {
        client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        listen_port: 80,
        https: false,
        set_cookie: None,
        reused,
    }
}

fn client(s: &mut Session, bytes: &[u8]) {
    let _ = s.client_read(0, |buf| {
        buf.extend_from_slice(bytes);
        Ok::<usize, ()>(bytes.len())
    });
}

fn take_client(s: &mut Session) -> String {
    let out = String::from_utf8_lossy(s.client_output()).into_owned();
    s.client_wrote(out.len());
    out
}

fn take_backend(s: &mut Session) -> String {
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
fn timeouts_answer_408_and_504() {
    let mut s = Session::new(LIMITS, 0);
    client(&mut s, b"GET / HTTP/1.1\r\n");
    s.check_timers(99);
    assert_eq!(s.phase(), Phase::Head);
    s.check_timers(100);
    assert!(take_client(&mut s).starts_with("HTTP/1.1 408 "));

    let mut s = Session::new(LIMITS, 0);
    client(&mut s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    s.attach(fwd(false), 10);
    take_backend(&mut s);
    s.check_timers(510);
    assert!(take_client(&mut s).starts_with("HTTP/1.1 504 "));
}

/// The server timeout (500 ms here) measures the backend's silence while the session
/// waits on it, not the length of the exchange; a pause in the request body is bounded
/// by the head's timeout (100 ms here).
#[test]
fn the_backend_timeout_counts_only_the_backends_silence() {
    // A body arriving steadily for longer than the server timeout, taken by the backend
    // as it comes: no 504.
    let mut s = Session::new(LIMITS, 0);
    client(
        &mut s,
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 30\r\n\r\n",
    );
    s.attach(fwd(false), 0);
    let send_byte = |s: &mut Session, now: u64| {
        let _ = s.client_read(now, |buf| {
            buf.push(b'x');
            Ok::<usize, ()>(1)
        });
        let n = s.backend_output().len();
        s.backend_wrote(n, now);
    };
    for t in 1..30u64 {
        let now = t * 60;
        send_byte(&mut s, now);
        s.check_timers(now + 50);
        assert_eq!(s.phase(), Phase::Exchange, "at {now} ms");
    }
    // The client pauses with one byte to go, for less than the head timeout: its
    // silence is not the backend's.
    s.check_timers(1_740 + 99);
    assert_eq!(s.phase(), Phase::Exchange);
    send_byte(&mut s, 1_800);
    // Now the response is awaited: 500 ms of silence is a 504.
    s.check_timers(2_299);
    assert_eq!(s.phase(), Phase::Exchange);
    s.check_timers(2_300);
    assert!(take_client(&mut s).starts_with("HTTP/1.1 504 "));
}

#[test]
fn a_request_body_that_stops_gets_408() {
    let mut s = Session::new(LIMITS, 0);
    client(
        &mut s,
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
    );
    s.attach(fwd(false), 0);
    take_backend(&mut s);
    s.check_timers(99);
    assert_eq!(s.phase(), Phase::Exchange);
    s.check_timers(100);
    assert!(take_client(&mut s).starts_with("HTTP/1.1 408 "));
    assert_eq!(s.take_finished().map(|f| f.reusable), Some(false));
}

#[test]
fn a_backend_stalling_mid_head_gets_504_and_mid_body_a_cut() {
    let mut s = Session::new(LIMITS, 0);
    client(&mut s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    s.attach(fwd(false), 0);
    take_backend(&mut s);
    s.backend_read(b"HTTP/1.1 200 OK\r\n", 100);
    s.check_timers(599);
    assert_eq!(s.phase(), Phase::Exchange);
    s.check_timers(600);
    assert!(take_client(&mut s).starts_with("HTTP/1.1 504 "));

    let mut s = Session::new(LIMITS, 0);
    client(&mut s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    s.attach(fwd(false), 0);
    take_backend(&mut s);
    s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 100);
    assert!(take_client(&mut s).ends_with("abc"));
    s.check_timers(599);
    assert_eq!(s.phase(), Phase::Exchange);
    s.check_timers(600);
    assert_eq!(s.phase(), Phase::Closed);
    assert_eq!(s.take_finished().map(|f| f.reusable), Some(false));
}

#[test]
fn a_client_too_slow_for_the_response_does_not_time_the_backend_out() {
    let mut s = Session::new(LIMITS, 0);
    client(&mut s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    s.attach(fwd(false), 0);
    take_backend(&mut s);
    let big = vec![b'x'; CLIENT_HIGH_WATER + 1];
    s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n", 0);
    s.backend_read(&big, 0);
    assert!(!s.wants_backend_read());
    s.check_timers(5_000);
    assert_eq!(s.phase(), Phase::Exchange);
}

#[test]
fn a_keep_alive_session_gives_its_memory_back_as_an_exchange_ends_and_serves_the_next() {
    let mut s = Session::new(LIMITS, 0);
    let held = |s: &Session| {
        s.p.input.capacity()
            + s.p.to_client.capacity()
            + s.p.to_backend.capacity()
            + s.p.from_backend.capacity()
            + s.p.req.fields.capacity()
            + s.p.resp.fields.capacity()
    };
    for round in 0..2 {
        client(&mut s, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
        // Mid-exchange nothing is trimmed.
        let before = held(&s);
        s.trim_if_idle();
        assert_eq!((s.phase(), held(&s)), (Phase::Route, before));
        s.attach(fwd(round > 0), 0);
        take_backend(&mut s);
        s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0);
        assert_eq!(s.phase(), Phase::Head);
        assert!(held(&s) > 0, "an exchange allocates");
        // Written in two parts: the set is kept until the last byte is out.
        let out = s.client_output().len();
        s.client_wrote(out - 1);
        assert!(s.p.held(), "round {round}: a byte of the response is left");
        s.client_wrote(1);
        assert_eq!(held(&s), 0, "round {round}");
        assert!(!s.p.held(), "round {round}");
    }
}

#[test]
fn a_write_of_nothing_takes_no_parts() {
    let mut s = Session::new(LIMITS, 0);
    s.client_wrote(0);
    s.backend_wrote(0, 0);
    assert!(!s.p.held());
}

#[test]
fn a_session_keeps_its_memory_while_a_pipelined_request_waits() {
    let mut s = Session::new(LIMITS, 0);
    client(
        &mut s,
        b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    s.attach(fwd(false), 0);
    assert!(take_backend(&mut s).starts_with("GET /a "));
    s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0);
    assert!(take_client(&mut s).ends_with("\r\n\r\nok"));
    assert_eq!(s.phase(), Phase::Route, "the second request is read");
    assert!(s.p.held());
    s.attach(fwd(true), 0);
    assert!(take_backend(&mut s).starts_with("GET /b "));
    s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0);
    assert!(take_client(&mut s).ends_with("\r\n\r\nok"));
    assert_eq!(s.phase(), Phase::Head);
    assert!(!s.p.held(), "nothing waits: given back");
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

/// With `Expect: 100-continue` the client waits for the backend's interim answer before
/// it sends the body: that wait is the backend's (504 after its timeout), not a pause
/// of the client's; once the body started, a pause is the client's again.
#[test]
fn a_client_waiting_for_100_continue_is_not_timed_out_as_slow() {
    let mut s = Session::new(LIMITS, 0);
    client(
        &mut s,
        b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    );
    s.attach(fwd(false), 0);
    take_backend(&mut s);
    s.check_timers(499);
    assert_eq!(
        s.phase(),
        Phase::Exchange,
        "no 408 while the backend decides"
    );
    s.backend_read(b"HTTP/1.1 100 Continue\r\n\r\n", 450);
    assert!(take_client(&mut s).starts_with("HTTP/1.1 100 "));
    let _ = s.client_read(460, |buf| {
        buf.extend_from_slice(b"ab");
        Ok::<usize, ()>(2)
    });
    take_backend(&mut s);
    s.check_timers(559);
    assert_eq!(s.phase(), Phase::Exchange);
    s.check_timers(560);
    assert!(take_client(&mut s).starts_with("HTTP/1.1 408 "));
}

/// What the driver sees of a session: its phase, the bytes it owes, its outcome.
fn visible(s: &mut Session) -> (Phase, usize, usize, Option<Finished>) {
    (
        s.phase(),
        s.client_output().len(),
        s.backend_output().len(),
        s.take_finished(),
    )
}

/// `deadline_ms` is exactly when `check_timers` next does something: nothing the
/// driver can see changes a millisecond before it, something does at it. The shard
/// arms its timer heap from `deadline_ms` alone, so an error here is a timeout that
/// fires late (or never) or early.
#[test]
fn the_deadline_is_when_the_timers_act() {
    type Make = fn() -> Session;
    let scenarios: [(&str, Make); 7] = [
        ("waiting for a first head", || Session::new(LIMITS, 7)),
        ("a head cut short", || {
            let mut s = Session::new(LIMITS, 0);
            client(&mut s, b"GET / HTTP/1.1\r\n");
            s
        }),
        ("idle between requests", || {
            let mut s = Session::new(LIMITS, 0);
            client(&mut s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
            s.attach(fwd(false), 0);
            take_backend(&mut s);
            s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 40);
            take_client(&mut s);
            s
        }),
        ("a request body that pauses", || {
            let mut s = Session::new(LIMITS, 0);
            client(
                &mut s,
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nab",
            );
            s.attach(fwd(false), 3);
            take_backend(&mut s);
            s
        }),
        ("a backend silent before its head", || {
            let mut s = Session::new(LIMITS, 0);
            client(&mut s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
            s.attach(fwd(false), 11);
            take_backend(&mut s);
            s
        }),
        ("a backend silent mid-body", || {
            let mut s = Session::new(LIMITS, 0);
            client(&mut s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
            s.attach(fwd(false), 0);
            take_backend(&mut s);
            s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", 25);
            take_client(&mut s);
            s
        }),
        ("lingering after a refusal", || {
            let mut s = Session::new(LIMITS, 0);
            client(&mut s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
            s.refuse(404, 13);
            take_client(&mut s);
            s
        }),
    ];
    for (what, make) in scenarios {
        let mut before = make();
        let _ = before.take_finished();
        let at = before.deadline_ms();
        assert!(at < u64::MAX, "{what}: a deadline");
        let still = visible(&mut before);
        before.check_timers(at - 1);
        assert_eq!(
            visible(&mut before),
            still,
            "{what}: nothing before {at} ms"
        );
        let mut due = make();
        let _ = due.take_finished();
        let still = visible(&mut due);
        due.check_timers(at);
        assert_ne!(visible(&mut due), still, "{what}: something at {at} ms");
    }
    // Waiting on a client too slow for the response has no deadline of the session's
    // (the shard's idle timeout bounds it).
    let mut s = Session::new(LIMITS, 0);
    client(&mut s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    s.attach(fwd(false), 0);
    take_backend(&mut s);
    s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n", 0);
    s.backend_read(&vec![b'x'; CLIENT_HIGH_WATER + 1], 0);
    assert_eq!(s.deadline_ms(), u64::MAX);
}

#[test]
fn buffers_come_from_the_threads_spare_sets_and_go_back_when_idle_or_closed() {
    let exchange = |s: &mut Session| {
        client(s, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
        s.attach(fwd(false), 0);
        assert!(take_backend(s).starts_with("GET /a HTTP/1.1\r\n"));
        s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0);
        assert!(take_client(s).ends_with("\r\n\r\nok"));
        assert_eq!(s.take_finished().map(|f| f.status), Some(200));
    };
    let before = super::spare::spare_sets();
    let mut s = Session::new(LIMITS, 0);
    exchange(&mut s);
    // Given back as the exchange ends; the next request takes one and gives it back.
    assert_eq!(super::spare::spare_sets(), before + 1);
    client(&mut s, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(super::spare::spare_sets(), before);
    s.attach(fwd(true), 0);
    take_backend(&mut s);
    s.backend_read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0);
    take_client(&mut s);
    assert_eq!(super::spare::spare_sets(), before + 1);
    // A set that grew past what is kept comes back without its large buffer.
    client(
        &mut s,
        format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(9000)).as_bytes(),
    );
    drop(s);
    assert_eq!(super::spare::spare_sets(), before + 1);
    // A session that never read holds no set and gives none back.
    drop(Session::new(LIMITS, 0));
    assert_eq!(super::spare::spare_sets(), before + 1);
}

#[test]
fn sets_freed_past_the_spares_are_counted_until_the_heap_is_trimmed() {
    // A burst: 600 sessions in the middle of a request at once, then gone.
    let busy: Vec<Session> = (0..600)
        .map(|_| {
            let mut s = Session::new(LIMITS, 0);
            client(&mut s, b"GET /a HTTP/1.1\r\n");
            s
        })
        .collect();
    let (spares, freed) = (super::spare::spare_sets(), super::spare::freed_sets());
    drop(busy);
    let kept = super::spare::spare_sets() - spares;
    assert_eq!(super::spare::spare_sets(), 256, "the spares are full");
    assert_eq!(super::spare::freed_sets() - freed, 600 - kept);
    super::trim_heap();
    assert_eq!(super::spare::freed_sets(), 0, "trimmed, counted afresh");
    super::trim_heap();
    assert_eq!(super::spare::freed_sets(), 0);
}
