//! A harness for fuzzing the HTTP session (used by `fuzz/` and by a property test):
//! drive a [`Session`] with arbitrary client bytes, in arbitrary pieces, answering
//! every routed request from a fixed backend, and check that what went to the backend
//! reads back as exactly the requests sluice routed — never one more (a smuggled
//! request), each in origin form with the host and path it was routed by — and that
//! nothing panics or loops.

use super::body::{Body, Output};
use super::head::{host_name, parse_request_with, Method, Request, MAX_FORWARDED_HEADERS};
use super::session::{Forward, Limits, Phase, Session};
use std::net::{IpAddr, Ipv4Addr};

const LIMITS: Limits = Limits {
    max_header_bytes: 4096,
    header_timeout_ms: 10_000,
    keepalive_timeout_ms: 60_000,
    backend_timeout_ms: 60_000,
    forwarded_headers: true,
};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Run the session over `data`; panics when an invariant breaks. Returns how many
/// requests were routed.
pub fn exercise(data: &[u8]) -> usize {
    let Some((&seed, input)) = data.split_first() else {
        return 0;
    };
    let mut s = Session::new(LIMITS, 0);
    let mut sent = Vec::new();
    // Host and path of each routed request, as the router saw them.
    let mut routed: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let (mut pos, mut answered) = (0usize, false);
    let mut rng = u32::from(seed) | 1;
    for _ in 0..100_000 {
        let mut progress = false;
        if s.phase() == Phase::Route {
            routed.push((s.host().to_vec(), s.path().to_vec()));
            answered = false;
            let fwd = Forward {
                client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                listen_port: 80,
                https: false,
                set_cookie: None,
                reused: false,
            };
            s.attach(fwd, 0);
            progress = true;
        }
        if s.wants_client_read() && pos < input.len() {
            rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let n = (1 + (rng >> 16) as usize % 64).min(input.len() - pos);
            let piece = &input[pos..pos + n];
            let _ = s.client_read(0, |buf| {
                buf.extend_from_slice(piece);
                Ok::<usize, ()>(n)
            });
            pos += n;
            progress = true;
        }
        let out = s.backend_output().len();
        if out > 0 {
            sent.extend_from_slice(s.backend_output());
            s.backend_wrote(out, 0);
            progress = true;
        }
        let back = s.client_output().len();
        if back > 0 {
            s.client_wrote(back);
            progress = true;
        }
        let _ = s.take_finished();
        if s.phase() == Phase::Exchange && !answered && s.backend_output().is_empty() {
            answered = true;
            s.backend_read(RESPONSE, 0);
            progress = true;
        }
        if !progress {
            if s.phase() == Phase::Closed || pos >= input.len() {
                break;
            }
            s.client_closed();
        }
    }
    check_backend_stream(&sent, &routed);
    routed.len()
}

/// The bytes sent to the backend hold at most the `routed` requests, in order, each
/// well framed and naming the host and path it was routed by.
fn check_backend_stream(mut sent: &[u8], routed: &[(Vec<u8>, Vec<u8>)]) {
    let mut req = Request::default();
    let mut seen = 0;
    while !sent.is_empty() {
        match parse_request_with(sent, usize::MAX, MAX_FORWARDED_HEADERS, &mut req) {
            Ok(true) => {}
            // A request cut short (the client went away mid-head cannot happen: heads
            // are sent whole) — or a body aborted on error: the stream just ends.
            Ok(false) => panic!("a partial head was sent to the backend: {sent:?}"),
            Err(e) => panic!("sluice sent a request it would refuse ({e:?}): {sent:?}"),
        }
        assert!(
            seen < routed.len(),
            "more requests reached the backend than were routed"
        );
        same_route(sent, &req, &routed[seen]);
        seen += 1;
        unambiguous(&sent[..req.len]);
        let connect = req.method == Method::Connect;
        sent = &sent[req.len..];
        let mut body = Body::new(req.body, Output::Chunked);
        let used = body
            .feed(sent, &mut Vec::new())
            .expect("bodies sent to the backend are well framed");
        sent = &sent[used..];
        if connect || req.upgrade || !body.done() {
            return; // a tunnel follows, or the body was cut off
        }
    }
}

/// The backend reads the request in origin form, with the host and path sluice routed
/// by (an absolute-form target's authority, not a Host field it replaced).
fn same_route(head: &[u8], req: &Request, (host, path): &(Vec<u8>, Vec<u8>)) {
    assert!(!req.absolute, "an absolute-form target was forwarded");
    let sent_host = req.host.clone().map_or(&b""[..], |r| host_name(&head[r]));
    assert_eq!(sent_host, &host[..], "the backend sees another host");
    let without_query = |p: &[u8]| p.split(|&b| b == b'?').next().unwrap_or(b"").to_vec();
    assert_eq!(
        without_query(&head[req.target.clone()]),
        without_query(path),
        "the backend sees another path"
    );
}

/// A backend that prefers Transfer-Encoding (as RFC 9112 says) and one that prefers
/// Content-Length must read the same framing from a head sluice sent: at most one of
/// the two fields, and no repeated Content-Length.
fn unambiguous(head: &[u8]) {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let count = |name: &str| {
        text.split("\r\n")
            .filter(|l| l.split(':').next().is_some_and(|n| n.trim() == name))
            .count()
    };
    let (te, cl) = (count("transfer-encoding"), count("content-length"));
    assert!(
        te == 0 || cl == 0,
        "both Transfer-Encoding and Content-Length sent: {text}"
    );
    assert!(cl <= 1 && te <= 1, "repeated framing fields sent: {text}");
}

/// Drive a session through one request whose answer is `data` (first byte: the
/// seed that cuts it into pieces), as a misbehaving backend would send it: nothing may
/// panic, and whatever the client gets starts with a status line.
pub fn exercise_response(data: &[u8]) {
    let Some((&seed, answer)) = data.split_first() else {
        return;
    };
    let mut s = Session::new(LIMITS, 0);
    let _ = s.client_read(0, |buf| {
        buf.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        Ok::<usize, ()>(1)
    });
    assert_eq!(s.phase(), Phase::Route);
    s.attach(
        Forward {
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            listen_port: 80,
            https: false,
            set_cookie: None,
            reused: false,
        },
        0,
    );
    let n = s.backend_output().len();
    s.backend_wrote(n, 0);
    let mut rng = u32::from(seed) | 1;
    let mut pos = 0;
    let mut to_client = Vec::new();
    while pos < answer.len() && s.phase() == Phase::Exchange {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let n = (rng as usize % 64 + 1).min(answer.len() - pos);
        s.backend_read(&answer[pos..pos + n], 0);
        pos += n;
        to_client.extend_from_slice(s.client_output());
        let k = s.client_output().len();
        s.client_wrote(k);
    }
    let _ = s.backend_closed(false, 0);
    to_client.extend_from_slice(s.client_output());
    assert!(
        to_client.is_empty() || to_client.starts_with(b"HTTP/1.1 "),
        "the client got something other than a response"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Pieces of requests, valid and hostile, for the generator to combine.
    const PARTS: &[&str] = &[
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET /s HTTP/1.1\r\nHost: a\r\n\r\n",
        "Transfer-Encoding: chunked\r\n",
        "Content-Length: 3\r\n",
        "0\r\n\r\n",
        "\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "X: y\r\n z\r\n",
        "3;x\r\nabc\r\n",
        "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
        "GET /w HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
        "Expect: 100-continue\r\n",
        "GET http://b/x?q HTTP/1.1\r\nHost: a\r\n\r\n",
        "OPTIONS http://b HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://u@b/ HTTP/1.1\r\n",
        "GET /f#x HTTP/1.1\r\n",
        "Host: b\r\n",
        "Transfer-Encoding: ,\r\n",
        "Content-Length: 3,\r\n",
        "5 junk\r\nhello\r\n",
        "\n",
        "\r",
    ];

    #[test]
    fn absolute_forms_reach_the_backend_by_their_authority() {
        let data =
            b"\x01GET http://b:81/x HTTP/1.1\r\nHost: a\r\n\r\nGET http://c HTTP/1.0\r\n\r\n";
        assert_eq!(exercise(data), 2);
    }

    #[test]
    #[should_panic(expected = "another host")]
    fn the_oracle_sees_a_host_other_than_the_routed_one() {
        let mut req = Request::default();
        let head = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(parse_request_with(head, 4096, 8, &mut req), Ok(true));
        same_route(head, &req, &(b"b".to_vec(), b"/x".to_vec()));
    }

    #[test]
    fn pipelined_requests_are_all_routed() {
        let mut data = vec![7u8];
        for p in [0, 1, 2, 4] {
            data.extend_from_slice(PARTS[p].as_bytes());
        }
        assert_eq!(exercise(&data), 4);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn no_smuggling_from_combined_pieces(
            seed in any::<u8>(),
            picks in proptest::collection::vec(0..PARTS.len(), 1..12),
        ) {
            let mut data = vec![seed];
            for p in picks {
                data.extend_from_slice(PARTS[p].as_bytes());
            }
            let _ = exercise(&data);
        }

        #[test]
        fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = exercise(&data);
        }

        #[test]
        fn any_backend_answer(
            seed in any::<u8>(),
            picks in proptest::collection::vec(0..ANSWERS.len(), 1..6),
            noise in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut data = vec![seed];
            for p in picks {
                data.extend_from_slice(ANSWERS[p]);
            }
            data.extend_from_slice(&noise);
            exercise_response(&data);
        }
    }

    /// Pieces of responses, valid and broken: empty, non-ASCII or missing reasons,
    /// bare LF, interim responses, bad framing.
    const ANSWERS: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200\nContent-Length: 2\n\nok",
        b"HTTP/1.1 404 N\xc3\xa3o Encontrado\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 100\r\n\r\n",
        b"HTTP/1.1 103 \r\nLink: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 204 \xff\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\nuntil close",
        b"Content-Length: 3\r\n",
        b"\r\n",
    ];

    #[test]
    fn reasons_httparse_does_not_point_into_the_buffer_are_empty() {
        for answer in [
            &b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok"[..],
            b"HTTP/1.1 200\nContent-Length: 2\n\nok",
            b"HTTP/1.1 404 N\xc3\xa3o Encontrado\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 100\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ] {
            let mut data = vec![1u8];
            data.extend_from_slice(answer);
            exercise_response(&data);
        }
    }
}
