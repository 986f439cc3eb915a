use super::*;
use proptest::prelude::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn header(bytes: &[u8]) -> Header {
    match parse(bytes) {
        Parsed::Header(h) => h,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
    }
}

fn error(bytes: &[u8]) -> Error {
    match parse(bytes) {
        Parsed::Error(e) => e,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
    }
}

#[test]
fn v1_tcp4_and_the_payload_after_it() {
    let b = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n";
    let h = header(b);
    assert_eq!(h.version, Version::V1);
    assert_eq!(h.addrs, Some((sa("192.0.2.7:56324"), sa("10.0.0.1:443"))));
    assert_eq!(&b[h.consumed..], b"GET / HTTP/1.1\r\n");
    assert_eq!(h.client(sa("127.0.0.1:1")), sa("192.0.2.7:56324"));
}

#[test]
fn v1_tcp6_and_unknown() {
    let h = header(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n");
    assert_eq!(h.addrs, Some((sa("[2001:db8::1]:1"), sa("[::1]:65535"))));
    for line in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN 1.2.3.4 whatever\r\n",
    ] {
        let h = header(line);
        assert_eq!(h.addrs, None);
        assert_eq!(h.consumed, line.len());
        assert_eq!(h.client(sa("127.0.0.9:7")), sa("127.0.0.9:7"));
    }
}

#[test]
fn v1_refusals() {
    let cases: &[(&[u8], Error)] = &[
        (b"GET / HTTP/1.1\r\n", Error::Malformed),
        (b"PROXY TCP4 010.0.0.1 10.0.0.2 1 2\r\n", Error::LeadingZero),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 01 2\r\n", Error::LeadingZero),
        (
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1 080\r\n",
            Error::LeadingZero,
        ),
        (b"PROXY TCP4 10.0.0.256 10.0.0.2 1 2\r\n", Error::Malformed),
        (
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1 65536\r\n",
            Error::Malformed,
        ),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 1\r\n", Error::Malformed),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2 3\r\n", Error::Malformed),
        (b"PROXY TCP4  10.0.0.1 10.0.0.2 1 2\r\n", Error::Malformed),
        (b"PROXY TCP4 ::1 ::1 1 2\r\n", Error::Malformed),
        (b"PROXY TCP6 10.0.0.1 10.0.0.2 1 2\r\n", Error::Malformed),
        (b"PROXY UDP4 10.0.0.1 10.0.0.2 1 2\r\n", Error::Malformed),
        (b"PROXY UNKNOWNX\r\n", Error::Malformed),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\n", Error::Malformed),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\rX", Error::Malformed),
        (b"PROXY\r\n", Error::Malformed),
    ];
    for (bytes, want) in cases {
        assert_eq!(error(bytes), *want, "{:?}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn v1_is_at_most_107_bytes() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(V1_MAX_BYTES - 2, b'x');
    line.extend_from_slice(b"\r\n");
    assert_eq!(header(&line).consumed, V1_MAX_BYTES);
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX_BYTES - 1, b'x');
    assert_eq!(parse(&long), Parsed::NeedMore);
    long.push(b'x');
    assert_eq!(error(&long), Error::Oversized);
    long.truncate(V1_MAX_BYTES - 1);
    long.extend_from_slice(b"\r\n");
    assert_eq!(error(&long), Error::Oversized, "the CRLF at 107 and 108");
}

fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut b = V2_SIGNATURE.to_vec();
    b.push(ver_cmd);
    b.push(fam);
    b.extend_from_slice(&(body.len() as u16).to_be_bytes());
    b.extend_from_slice(body);
    b
}

#[test]
fn v2_inet_with_authority() {
    let mut out = Vec::new();
    let (src, dst) = (sa("192.0.2.7:56324"), sa("10.0.0.1:443"));
    encode_v2(
        Command::Proxy,
        Some((src, dst)),
        &[(TLV_AUTHORITY, b"db.example")],
        &mut out,
    );
    out.extend_from_slice(b"\x16\x03\x01");
    let h = header(&out);
    assert_eq!(h.addrs, Some((src, dst)));
    let (a, b) = h.authority.unwrap();
    assert_eq!(&out[a..b], b"db.example");
    assert_eq!(&out[h.consumed..], b"\x16\x03\x01");
}

#[test]
fn v2_local_unspec_and_unix_keep_the_socket_address() {
    let socket = sa("127.0.0.5:9");
    let mut local = Vec::new();
    encode_v2(Command::Local, None, &[], &mut local);
    let h = header(&local);
    assert_eq!((h.command, h.consumed), (Command::Local, 16));
    assert_eq!(h.client(socket), socket);
    // LOCAL ignores whatever address block it carries.
    let h = header(&v2(0x20, 0x11, &[1; 12]));
    assert_eq!(h.client(socket), socket);
    assert_eq!(
        header(&v2(0x20, 0x52, &[])).client(socket),
        socket,
        "any family"
    );
    assert_eq!(header(&v2(0x21, 0x00, &[])).client(socket), socket);
    assert_eq!(header(&v2(0x21, 0x31, &[0; 216])).client(socket), socket);
}

#[test]
fn v2_refusals() {
    let cases: &[(Vec<u8>, Error)] = &[
        (v2(0x11, 0x11, &[0; 12]), Error::Version),
        (v2(0x22, 0x11, &[0; 12]), Error::Command),
        (v2(0x2f, 0x11, &[0; 12]), Error::Command),
        (v2(0x21, 0x41, &[0; 12]), Error::Family),
        (v2(0x21, 0x13, &[0; 12]), Error::Family),
        (v2(0x21, 0x12, &[0; 12]), Error::Family),
        (v2(0x21, 0x11, &[0; 11]), Error::Malformed),
        (v2(0x21, 0x21, &[0; 12]), Error::Malformed),
        (v2(0x21, 0x11, &[0; 14]), Error::Malformed),
        (
            v2(0x21, 0x11, &[[0; 12].as_slice(), &[2, 0, 5, b'a']].concat()),
            Error::Malformed,
        ),
        (v2(0x21, 0x11, &[0; V2_MAX_BYTES - 15]), Error::Oversized),
    ];
    for (bytes, want) in cases {
        assert_eq!(error(bytes), *want, "{bytes:?}");
    }
    // Oversized as soon as the length is read.
    let mut head = V2_SIGNATURE.to_vec();
    head.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    assert_eq!(error(&head), Error::Oversized);
    assert_eq!(parse(b"\r\n\r\n\0\r\nQU"), Parsed::NeedMore);
    assert_eq!(
        error(b"\r\n\r\n\0\r\nQUIX"),
        Error::Malformed,
        "a v2 signature gone wrong"
    );
    assert_eq!(wanted(&head[..16]), V2_MAX_BYTES - 16);
}

#[test]
fn mixed_families_are_written_as_ipv6() {
    let (src, dst) = (sa("192.0.2.7:1"), sa("[2001:db8::1]:2"));
    let mut out = Vec::new();
    encode_v1(Some((src, dst)), &mut out);
    assert_eq!(out, b"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 1 2\r\n");
    let h = header(&out);
    assert_eq!(h.addrs.unwrap().0.ip().to_canonical(), src.ip());
    out.clear();
    encode_v2(Command::Proxy, Some((src, dst)), &[], &mut out);
    assert_eq!(header(&out).addrs.unwrap().1, dst);
}

fn addr_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    let v4 = (
        any::<[u8; 4]>(),
        any::<u16>(),
        any::<[u8; 4]>(),
        any::<u16>(),
    )
        .prop_map(|(a, p, b, q)| {
            (
                SocketAddr::new(IpAddr::from(a), p),
                SocketAddr::new(IpAddr::from(b), q),
            )
        });
    let v6 = (
        any::<[u8; 16]>(),
        any::<u16>(),
        any::<[u8; 16]>(),
        any::<u16>(),
    )
        .prop_map(|(a, p, b, q)| {
            (
                SocketAddr::new(IpAddr::from(a), p),
                SocketAddr::new(IpAddr::from(b), q),
            )
        });
    prop_oneof![v4, v6]
}

/// Every strict prefix is `NeedMore`; the whole, with `tail` after it, is `h` and
/// leaves the tail untouched.
fn check_prefixes(bytes: &[u8], tail: &[u8]) -> Header {
    for n in 0..bytes.len() {
        assert_eq!(parse(&bytes[..n]), Parsed::NeedMore, "prefix of {n} bytes");
    }
    let whole = [bytes, tail].concat();
    let h = header(&whole);
    assert_eq!(h.consumed, bytes.len());
    assert_eq!(&whole[h.consumed..], tail);
    h
}

proptest! {
    #[test]
    fn v1_round_trips(addrs in proptest::option::of(addr_pair()), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut out = Vec::new();
        encode_v1(addrs, &mut out);
        prop_assert!(out.len() <= V1_MAX_BYTES);
        let h = check_prefixes(&out, &tail);
        prop_assert_eq!(h.addrs, addrs);
        prop_assert_eq!(h.command, Command::Proxy);
    }

    #[test]
    fn v2_round_trips(
        local in any::<bool>(),
        addrs in proptest::option::of(addr_pair()),
        tlvs in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..5),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let command = if local { Command::Local } else { Command::Proxy };
        let list: Vec<(u8, &[u8])> = tlvs.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let mut out = Vec::new();
        encode_v2(command, addrs, &list, &mut out);
        prop_assert!(out.len() <= V2_MAX_BYTES);
        let h = check_prefixes(&out, &tail);
        prop_assert_eq!(h.command, command);
        if local {
            return Ok(());
        }
        prop_assert_eq!(h.addrs, addrs);
        let got: Vec<(u8, &[u8])> = Tlvs::new(&out[h.tlvs_at..h.tlvs_end])
            .map(|t| t.map(|(k, at, len)| (k, &out[h.tlvs_at + at..h.tlvs_at + at + len])))
            .collect::<Option<_>>()
            .expect("whole TLVs");
        // All written while they fit the bound: a prefix of the list.
        prop_assert_eq!(&got[..], &list[..got.len()]);
        let authority = got.iter().find(|(k, _)| *k == TLV_AUTHORITY).map(|(_, v)| *v);
        prop_assert_eq!(h.authority.map(|(a, b)| &out[a..b]), authority);
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_overclaim(
        lead in 0u8..3,
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        // Bias towards the two prefixes, so the parsers past them are reached.
        let mut input = match lead {
            0 => Vec::new(),
            1 => b"PROXY ".to_vec(),
            _ => V2_SIGNATURE.to_vec(),
        };
        input.extend_from_slice(&bytes);
        let whole = parse(&input);
        if let Parsed::Header(h) = whole {
            prop_assert!(h.consumed <= input.len());
            prop_assert!(h.tlvs_at <= h.tlvs_end && h.tlvs_end <= h.consumed);
        }
        prop_assert!(wanted(&input) >= 1);
        for n in 0..input.len() {
            let part = parse(&input[..n]);
            prop_assert!(part == Parsed::NeedMore || part == whole, "prefix {}: {:?} vs {:?}", n, part, whole);
        }
    }
}

/// An IPv4 client of a dual-stack listener arrives IPv4-mapped: it is sent as IPv4
/// when the address it reached is IPv4 too, in both versions.
#[test]
fn ipv4_mapped_clients_are_sent_as_ipv4() {
    let src: SocketAddr = "[::ffff:192.0.2.7]:4000".parse().unwrap();
    let dst: SocketAddr = "[::ffff:198.51.100.1]:443".parse().unwrap();
    let mut v1 = Vec::new();
    encode_v1(Some((src, dst)), &mut v1);
    assert_eq!(v1, b"PROXY TCP4 192.0.2.7 198.51.100.1 4000 443\r\n");
    let mut v2 = Vec::new();
    encode_v2(Command::Proxy, Some((src, dst)), &[], &mut v2);
    match parse(&v2) {
        Parsed::Header(h) => {
            let plain: SocketAddr = "192.0.2.7:4000".parse().unwrap();
            assert_eq!(h.client(dst), plain);
        }
        other => panic!("{other:?}"),
    }
}
