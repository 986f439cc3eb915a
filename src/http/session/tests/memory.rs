//! What a session holds: its parts taken from the thread's spares while an exchange
//! is under way, given back as it ends, and the heap trimmed after a burst.

use super::*;

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
