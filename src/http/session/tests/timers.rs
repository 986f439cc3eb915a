//! The session's clocks: header, body, backend and keep-alive timeouts, and the
//! deadline it reports for the driver to arm.

use super::*;

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
