//! Tests of the ClientHello peek: real hellos from rustls (generated here), OpenSSL's
//! `s_client` and curl (captured on a loopback listener), hand-built hellos for each
//! refusal, and property tests over arbitrary bytes and arbitrary record splits.

use super::*;
use proptest::prelude::*;
use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The ClientHello a rustls client writes first: TLS 1.2 and 1.3 (with the
/// X25519MLKEM768 key share of the aws-lc-rs provider), or TLS 1.2 only.
fn rustls_hello(name: &str, sni: bool, alpn: &[&str], tls12_only: bool) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider);
    let builder = if tls12_only {
        builder.with_protocol_versions(&[&rustls::version::TLS12])
    } else {
        builder.with_safe_default_protocol_versions()
    };
    let mut config = builder
        .expect("protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config.enable_sni = sni;
    let name = ServerName::try_from(name.to_string()).expect("server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut wire = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut wire).expect("write_tls");
    }
    wire
}

/// One rustls hello, shared by the property tests.
fn common_hello() -> &'static [u8] {
    static HELLO: OnceLock<Vec<u8>> = OnceLock::new();
    HELLO.get_or_init(|| rustls_hello("app.example", true, &["h2", "http/1.1"], false))
}

/// The handshake bytes carried by a stream of well-formed records.
fn handshake_of(wire: &[u8]) -> Vec<u8> {
    let (mut out, mut rest) = (Vec::new(), wire);
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        out.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
    out
}

/// `handshake` in handshake records whose payload sizes are taken in turn from
/// `sizes` (each at least 1).
fn records(handshake: &[u8], sizes: &[usize]) -> Vec<u8> {
    let (mut out, mut rest) = (Vec::new(), handshake);
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(size.clamp(1, rest.len()));
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
        out.extend_from_slice(piece);
        rest = tail;
    }
    out
}

/// A ClientHello message (with its handshake header) carrying `extensions`; `None`
/// leaves the extension block out altogether.
fn build_hello(extensions: Option<&[(u16, Vec<u8>)]>) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(32);
    body.extend_from_slice(&[9; 32]);
    body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02, 1, 0]);
    if let Some(extensions) = extensions {
        let mut block = Vec::new();
        for (kind, data) in extensions {
            block.extend_from_slice(&kind.to_be_bytes());
            block.extend_from_slice(&(data.len() as u16).to_be_bytes());
            block.extend_from_slice(data);
        }
        body.extend_from_slice(&(block.len() as u16).to_be_bytes());
        body.extend_from_slice(&block);
    }
    let mut message = vec![1];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(&body);
    message
}

/// A `server_name` extension body with the given (type, name) entries.
fn sni_ext(entries: &[(u8, &[u8])]) -> (u16, Vec<u8>) {
    let mut list = Vec::new();
    for (kind, name) in entries {
        list.push(*kind);
        list.extend_from_slice(&(name.len() as u16).to_be_bytes());
        list.extend_from_slice(name);
    }
    let mut body = (list.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(&list);
    (EXT_SERVER_NAME, body)
}

fn alpn_ext(names: &[&[u8]]) -> (u16, Vec<u8>) {
    let mut list = Vec::new();
    for name in names {
        list.push(name.len() as u8);
        list.extend_from_slice(name);
    }
    let mut body = (list.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(&list);
    (EXT_ALPN, body)
}

/// A hand-built hello with these extensions, in one record.
fn wire(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
    records(&build_hello(Some(extensions)), &[MAX_RECORD_BYTES])
}

/// `peek` with a scratch buffer of its own, the answer reduced to owned parts.
fn outcome(bytes: &[u8]) -> Result<(Option<String>, Vec<Vec<u8>>), Peek<'static>> {
    let mut scratch = Vec::new();
    match peek(bytes, &mut scratch) {
        Peek::Hello(h) => Ok((
            h.server_name.map(str::to_string),
            h.alpn.iter().map(<[u8]>::to_vec).collect(),
        )),
        Peek::NeedMore => Err(Peek::NeedMore),
        Peek::NotTls => Err(Peek::NotTls),
        Peek::Malformed(r) => Err(Peek::Malformed(r)),
    }
}

fn name_of(bytes: &[u8]) -> Option<String> {
    outcome(bytes).expect("a hello").0
}

fn alpn(names: &[&str]) -> Vec<Vec<u8>> {
    names.iter().map(|n| n.as_bytes().to_vec()).collect()
}

#[test]
fn rustls_hello_in_one_record_borrows_the_input() {
    let wire = common_hello();
    let mut scratch = Vec::new();
    let Peek::Hello(h) = peek(wire, &mut scratch) else {
        panic!("not a hello: {:?}", peek(wire, &mut Vec::new()));
    };
    assert_eq!(h.server_name, Some("app.example"));
    assert!(h.alpn.contains(b"h2") && h.alpn.contains(b"http/1.1"));
    assert_eq!(h.alpn.iter().collect::<Vec<_>>(), [&b"h2"[..], b"http/1.1"]);
    assert!(h.supported_versions && h.tls13 && !h.ech);
    assert_eq!(h.legacy_version, 0x0303);
    let name = h.server_name.unwrap().as_bytes().as_ptr_range();
    assert!(wire.as_ptr_range().contains(&name.start), "zero-copy");
    assert_eq!(scratch.capacity(), 0, "scratch untouched");
}

#[test]
fn every_prefix_of_a_hello_needs_more() {
    let wire = common_hello();
    let mut scratch = Vec::new();
    for n in 0..wire.len() {
        assert_eq!(peek(&wire[..n], &mut scratch), Peek::NeedMore, "prefix {n}");
    }
}

#[test]
fn a_hello_in_one_byte_records_is_reassembled() {
    let message = handshake_of(common_hello());
    let wire = records(&message, &[1]);
    assert_eq!(wire.len(), message.len() * 6);
    assert_eq!(outcome(&wire), outcome(common_hello()));
    let mut scratch = Vec::new();
    for n in 0..wire.len() {
        assert_eq!(peek(&wire[..n], &mut scratch), Peek::NeedMore, "prefix {n}");
    }
    // The handshake header itself split 1 + 3, then the rest in one record.
    let wire = records(&message, &[1, 3, message.len()]);
    assert_eq!(name_of(&wire).as_deref(), Some("app.example"));
}

#[test]
fn a_hello_without_sni_has_no_name() {
    let wire = rustls_hello("app.example", false, &["http/1.1"], false);
    assert_eq!(outcome(&wire), Ok((None, alpn(&["http/1.1"]))));
}

#[test]
fn a_tls12_only_hello_does_not_offer_tls13() {
    let wire = rustls_hello("legacy.example", true, &[], true);
    let mut scratch = Vec::new();
    let Peek::Hello(h) = peek(&wire, &mut scratch) else {
        panic!("not a hello");
    };
    assert_eq!(h.server_name, Some("legacy.example"));
    assert!(h.alpn.is_empty() && h.supported_versions && !h.tls13);
}

#[test]
fn bytes_after_the_hello_are_not_read() {
    let mut wire = common_hello().to_vec();
    let alone = outcome(&wire);
    wire.extend_from_slice(&[20, 3, 3, 0, 1, 1]); // change_cipher_spec
    wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
    assert_eq!(outcome(&wire), alone);
}

#[test]
fn what_cannot_start_tls_is_not_tls() {
    let sslv2_hello = [
        0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
    ];
    for bytes in [
        &b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n"[..],
        b"G",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"PROXY TCP4 10.0.0.1 10.0.0.2 1234 443\r\n",
        b"\x16\x02\x00",
        b"\x16\x00",
        &sslv2_hello,
    ] {
        assert_eq!(peek(bytes, &mut Vec::new()), Peek::NotTls, "{bytes:?}");
    }
    assert_eq!(peek(b"", &mut Vec::new()), Peek::NeedMore);
    assert_eq!(peek(b"\x16", &mut Vec::new()), Peek::NeedMore);
    assert_eq!(peek(b"\x15", &mut Vec::new()), Peek::NeedMore);
}

#[test]
fn broken_records_are_malformed() {
    use Reason::*;
    let message = build_hello(Some(&[sni_ext(&[(0, b"app.example")])]));
    let mut alert_between = records(&message[..10], &[10]);
    alert_between.extend_from_slice(&[21, 3, 3, 0, 2, 2, 40]);
    let mut old_version_between = records(&message[..10], &[10]);
    old_version_between.extend_from_slice(&[22, 2, 0, 0, 1]);
    let cases: &[(&[u8], Reason)] = &[
        (&[22, 3, 1, 0, 0], RecordLength),
        (&[22, 3, 1, 0x41, 0x01], RecordLength),
        (&[21, 3, 3, 0, 2, 2, 40], RecordType),
        (&[23, 3, 3], RecordType),
        (&[22, 3, 3, 0, 4, 2, 0, 0, 70], NotClientHello),
        (&[22, 3, 1, 0, 4, 1, 0, 0x40, 0x01], TooLarge),
        (&alert_between, RecordType),
        (&old_version_between, RecordVersion),
    ];
    for (bytes, reason) in cases {
        assert_eq!(
            peek(bytes, &mut Vec::new()),
            Peek::Malformed(*reason),
            "{bytes:?}"
        );
    }
    // A body of exactly the limit is read to its end.
    assert_eq!(
        peek(&[22, 3, 1, 0, 4, 1, 0, 0x40, 0], &mut Vec::new()),
        Peek::NeedMore
    );
}

#[test]
fn the_peek_is_bounded() {
    // About 6 KB of hello: fine in one record, too many bytes in one-byte records.
    let padding = (21u16, vec![0; 6000]);
    let message = build_hello(Some(&[sni_ext(&[(0, b"big.example")]), padding]));
    assert_eq!(
        name_of(&records(&message, &[MAX_RECORD_BYTES])).as_deref(),
        Some("big.example")
    );
    let wire = records(&message, &[1]);
    assert!(wire.len() > MAX_PEEK_BYTES);
    let too_fragmented = Peek::Malformed(Reason::TooFragmented);
    assert_eq!(peek(&wire, &mut Vec::new()), too_fragmented);
    assert_eq!(
        peek(&wire[..MAX_PEEK_BYTES], &mut Vec::new()),
        too_fragmented
    );
    assert_eq!(
        peek(&wire[..MAX_PEEK_BYTES - 1], &mut Vec::new()),
        Peek::NeedMore
    );
    // The largest accepted hello, in records of the largest plaintext size.
    let padding = (
        21u16,
        vec![0; MAX_HELLO_BYTES - build_hello(Some(&[])).len()],
    );
    let message = build_hello(Some(&[padding]));
    assert_eq!(message.len(), 4 + MAX_HELLO_BYTES);
    assert_eq!(outcome(&records(&message, &[1 << 14])), Ok((None, vec![])));
}

#[test]
fn server_names_are_judged_as_rustls_judges_them() {
    let named = |name: &[u8]| outcome(&wire(&[sni_ext(&[(0, name)])]));
    let ok = |name: &str| Ok((Some(name.to_string()), vec![]));
    assert_eq!(named(b"App.Example"), ok("App.Example"));
    assert_eq!(named(b"app.example."), ok("app.example"));
    assert_eq!(named(b"x"), ok("x"));
    assert_eq!(named(b"my_host.example"), ok("my_host.example"));
    assert_eq!(named(b"xn--bcher-kva.example"), ok("xn--bcher-kva.example"));
    // IP literals are not names (RFC 6066); rustls ignores them.
    assert_eq!(named(b"192.0.2.1"), Ok((None, vec![])));
    assert_eq!(named(b"2001:db8::1"), Ok((None, vec![])));
    let long_label = [b'a'; 64];
    let long_name = [b"a.".repeat(126).as_slice(), b"aa"].concat();
    for bad in [
        &b""[..],
        b".",
        b"app..example",
        b".app.example",
        b"app.example..",
        b"-app.example",
        b"app-.example",
        b"app example",
        b"app.example\0",
        b"b\xc3\xbccher.example",
        b"\xff",
        b"1.2.3.4.5",
        b"app.0x1f",
        &long_label,
        &long_name,
    ] {
        let malformed = Err(Peek::Malformed(Reason::ServerName));
        assert_eq!(named(bad), malformed, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn the_server_name_list_is_read_as_rustls_reads_it() {
    let bad = Err(Peek::Malformed(Reason::ServerName));
    let host = (0u8, &b"app.example"[..]);
    let other = (7u8, &b"whatever"[..]);
    let only = Ok((Some("app.example".to_string()), vec![]));
    assert_eq!(outcome(&wire(&[sni_ext(&[host, other])])), only);
    assert_eq!(outcome(&wire(&[sni_ext(&[host, host])])), bad);
    assert_eq!(outcome(&wire(&[sni_ext(&[other, host])])), bad);
    assert_eq!(outcome(&wire(&[sni_ext(&[])])), bad);
    assert_eq!(outcome(&wire(&[(EXT_SERVER_NAME, vec![])])), bad);
    let (kind, mut body) = sni_ext(&[host]);
    body.push(0);
    assert_eq!(outcome(&wire(&[(kind, body)])), bad);
}

#[test]
fn extensions_routing_reads_are_refused_twice() {
    let dup = Err(Peek::Malformed(Reason::DuplicateExtension));
    let sni = sni_ext(&[(0, b"app.example")]);
    let h2 = alpn_ext(&[b"h2"]);
    assert_eq!(outcome(&wire(&[sni.clone(), h2.clone(), sni.clone()])), dup);
    assert_eq!(outcome(&wire(&[h2.clone(), sni.clone(), h2.clone()])), dup);
    let versions = (EXT_SUPPORTED_VERSIONS, vec![2, 3, 4]);
    assert_eq!(outcome(&wire(&[versions.clone(), versions])), dup);
    // Other types are the server's to refuse.
    let padding = (21u16, vec![0; 4]);
    assert!(outcome(&wire(&[padding.clone(), sni, padding])).is_ok());
}

#[test]
fn alpn_lists_must_be_well_formed() {
    let bad = Err(Peek::Malformed(Reason::Alpn));
    assert_eq!(outcome(&wire(&[alpn_ext(&[b"h2", b""])])), bad);
    assert_eq!(outcome(&wire(&[alpn_ext(&[])])), bad);
    assert_eq!(outcome(&wire(&[(EXT_ALPN, vec![0, 3, 2, b'h'])])), bad);
    let names = alpn_ext(&[b"h2", b"http/1.1", &[0xff; 255]]);
    let (_, got) = outcome(&wire(&[names])).expect("a hello");
    assert_eq!(got, [b"h2".to_vec(), b"http/1.1".to_vec(), vec![0xff; 255]]);
}

#[test]
fn hello_bodies_are_checked_for_shape() {
    // No extension block at all (TLS 1.0–1.2 allow it).
    assert_eq!(
        outcome(&records(&build_hello(None), &[100])),
        Ok((None, vec![]))
    );
    let mut trailing = build_hello(Some(&[]));
    trailing.push(0);
    trailing[3] += 1;
    let mut long_session = build_hello(Some(&[]));
    long_session[4 + 34] = 33;
    let mut ssl2_version = build_hello(Some(&[]));
    ssl2_version[4] = 2;
    let mut short = build_hello(Some(&[]));
    short.truncate(4 + 20);
    short[3] = 20;
    let ech = wire(&[(EXT_ECH, vec![0; 8])]);
    let mut scratch = Vec::new();
    let Peek::Hello(h) = peek(&ech, &mut scratch) else {
        panic!("not a hello");
    };
    assert!(h.ech && h.server_name.is_none() && !h.supported_versions);
    for (message, reason) in [
        (trailing, Reason::Syntax),
        (long_session, Reason::Syntax),
        (ssl2_version, Reason::Version),
        (short, Reason::Syntax),
    ] {
        let got = outcome(&records(&message, &[1000]));
        assert_eq!(got, Err(Peek::Malformed(reason)));
    }
    let bad_versions = (EXT_SUPPORTED_VERSIONS, vec![3, 3, 4, 3]);
    assert_eq!(
        outcome(&wire(&[bad_versions])),
        Err(Peek::Malformed(Reason::Syntax))
    );
}

/// Runs a TLS client against a loopback listener and returns the bytes it sent
/// until `peek` decided; `None` (with a note) when the program is not installed.
fn capture(program: &str, args: impl FnOnce(u16) -> Vec<String>) -> Option<Vec<u8>> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let spawned = Command::new(program)
        .args(args(port))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("note: {program} is not installed; skipping its ClientHello");
            return None;
        }
        Err(e) => panic!("spawning {program}: {e}"),
    };
    listener.set_nonblocking(true).expect("nonblocking");
    // A bound on the wait, should the client never connect: not a timing assertion.
    let give_up = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(_) if Instant::now() < give_up && child.try_wait().ok().flatten().is_none() => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("{program} did not connect: {e}"),
        }
    };
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    while peek(&bytes, &mut Vec::new()) == Peek::NeedMore {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
    drop(stream);
    let _ = child.kill();
    let _ = child.wait();
    Some(bytes)
}

#[test]
fn openssl_s_client_hello() {
    let Some(bytes) = capture("openssl", |port| {
        let connect = format!("127.0.0.1:{port}");
        [
            "s_client",
            "-connect",
            &connect,
            "-servername",
            "app.example",
            "-alpn",
            "http/1.1",
        ]
        .map(String::from)
        .to_vec()
    }) else {
        return;
    };
    let mut scratch = Vec::new();
    let Peek::Hello(h) = peek(&bytes, &mut scratch) else {
        panic!(
            "openssl: {:?} from {bytes:02x?}",
            peek(&bytes, &mut Vec::new())
        );
    };
    assert_eq!(h.server_name, Some("app.example"));
    assert_eq!(h.alpn.iter().collect::<Vec<_>>(), [b"http/1.1"]);
    assert!(h.tls13);
}

#[test]
fn curl_hello() {
    let Some(bytes) = capture("curl", |port| {
        let resolve = format!("app.example:{port}:127.0.0.1");
        let url = format!("https://app.example:{port}/");
        ["-sk", "--max-time", "30", "--resolve", &resolve, &url]
            .map(String::from)
            .to_vec()
    }) else {
        return;
    };
    let mut scratch = Vec::new();
    let Peek::Hello(h) = peek(&bytes, &mut scratch) else {
        panic!(
            "curl: {:?} from {bytes:02x?}",
            peek(&bytes, &mut Vec::new())
        );
    };
    assert_eq!(h.server_name, Some("app.example"));
    assert!(h.alpn.contains(b"http/1.1"), "{:?}", h.alpn);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut scratch = Vec::new();
        let whole = peek(&data, &mut scratch);
        if let Peek::Hello(Hello { server_name: Some(name), .. }) = whole {
            prop_assert!(!name.ends_with('.') && name.is_ascii());
        }
        let whole = outcome(&data);
        for n in 0..data.len() {
            let part = outcome(&data[..n]);
            prop_assert!(part == Err(Peek::NeedMore) || part == whole, "prefix {}", n);
        }
    }

    /// Arbitrary handshake bytes behind a valid record header and ClientHello
    /// header, so that the body parser is reached.
    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut message = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        message.extend_from_slice(&body);
        let _ = peek(&records(&message, &[MAX_RECORD_BYTES]), &mut Vec::new());
    }

    /// A hello in whole records is worth a peek at every record boundary and at no
    /// other prefix (up to [`MAX_RECORDS`] records), so a caller that peeks only when
    /// told misses no answer and waits on no sender.
    #[test]
    fn worth_a_peek_exactly_at_record_boundaries(
        sizes in proptest::collection::vec(1usize..300, 1..20),
    ) {
        let message = handshake_of(common_hello());
        let wire = records(&message, &sizes);
        let mut ends = Vec::new();
        let mut at = 0;
        while at < wire.len() {
            at += 5 + usize::from(u16::from_be_bytes([wire[at + 3], wire[at + 4]]));
            ends.push(at);
        }
        for n in 0..=wire.len() {
            // Records whose header has arrived.
            let started = 1 + ends.iter().filter(|&&e| e + 5 <= n).count();
            let started = if n >= 5 { started } else { 0 };
            let want = match ends.contains(&n) {
                _ if started > MAX_RECORDS => Worth::TooManyRecords,
                true => Worth::Yes,
                false => Worth::NotYet,
            };
            prop_assert_eq!(worth_a_peek(&wire[..n]), want, "prefix {}", n);
        }
    }

    #[test]
    fn any_split_into_records_gives_the_same_hello(
        sizes in proptest::collection::vec(1usize..400, 1..20),
    ) {
        let message = handshake_of(common_hello());
        let wire = records(&message, &sizes);
        prop_assert_eq!(outcome(&wire), outcome(common_hello()));
    }
}

/// Bytes that are not a handshake record are worth a peek at once (the peek says
/// what they are); so is a record too long to be one.
#[test]
fn worth_a_peek_at_what_is_no_handshake() {
    assert_eq!(worth_a_peek(b""), Worth::NotYet);
    assert_eq!(worth_a_peek(b"G"), Worth::Yes);
    assert_eq!(worth_a_peek(&[22, 3, 1]), Worth::NotYet);
    assert_eq!(worth_a_peek(&[22, 3, 1, 0xff, 0xff]), Worth::Yes);
    assert_eq!(worth_a_peek(&[22, 3, 1, 0, 1, 1, 23, 3, 3]), Worth::NotYet);
    assert_eq!(
        worth_a_peek(&[22, 3, 1, 0, 1, 1, 23, 3, 3, 0, 1]),
        Worth::Yes
    );
}
