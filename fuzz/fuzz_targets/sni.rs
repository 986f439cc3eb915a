//! The ClientHello peek (`sluice::tls::hello`) under arbitrary bytes: no panic; a
//! server name it returns is a valid DNS name (checked here independently of the
//! rustls rules it applies); and no prefix of an input gets another answer than
//! `NeedMore` or the input's own, so a connection's answer cannot change as its bytes
//! arrive. The first byte chooses what the rest is: even, the stream itself (the
//! record layer); odd, a ClientHello body, framed into one record and into records of
//! `1 + byte / 2` bytes, which must give the same answer (reassembly changes nothing),
//! and which [`worth_a_peek`] must find worth a peek.
#![no_main]

use sluice::tls::hello::{peek, worth_a_peek, Peek, Reason, Worth, MAX_RECORDS, MAX_RECORD_BYTES};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        check(rest);
        return;
    }
    let mut message = vec![1];
    message.extend_from_slice(&(rest.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(rest);
    let whole = records(&message, MAX_RECORD_BYTES);
    let split = records(&message, 1 + usize::from(mode / 2));
    let (mut s1, mut s2) = (Vec::new(), Vec::new());
    let (a, b) = (peek(&whole, &mut s1), peek(&split, &mut s2));
    if a != Peek::Malformed(Reason::TooFragmented) && b != Peek::Malformed(Reason::TooFragmented) {
        assert_eq!(
            a,
            b,
            "one record and records of {} bytes differ",
            1 + mode / 2
        );
    }
    check(&whole);
    check(&split);
    // Whole records are always worth a peek (a connection waiting for more would
    // wait forever), unless there are too many of them.
    for (bytes, n) in [
        (&whole, message.len().div_ceil(MAX_RECORD_BYTES)),
        (&split, message.len().div_ceil(1 + usize::from(mode / 2))),
    ] {
        let want = if n > MAX_RECORDS {
            Worth::TooManyRecords
        } else {
            Worth::Yes
        };
        assert_eq!(worth_a_peek(bytes), want, "{n} whole records");
    }
});

/// Peeks `bytes` and about 128 of its prefixes (all of them for short inputs),
/// starting at an offset that varies with the length so that runs cover them all.
fn check(bytes: &[u8]) {
    let _ = worth_a_peek(bytes);
    let mut scratch = Vec::new();
    let whole = peek(bytes, &mut scratch);
    if let Peek::Hello(hello) = whole {
        if let Some(name) = hello.server_name {
            assert!(valid_name(name), "invalid server name {name:?}");
        }
    }
    let step = 1 + bytes.len() / 128;
    let mut part_scratch = Vec::new();
    for n in (bytes.len() % step..bytes.len()).step_by(step) {
        let part = peek(&bytes[..n], &mut part_scratch);
        assert!(
            part == Peek::NeedMore || part == whole,
            "prefix of {n} bytes: {part:?}, whole: {whole:?}"
        );
    }
}

/// A DNS name in the LDH rules (plus `_`), without a trailing dot, not ending in a
/// numeric label (which would read as an IPv4 address).
fn valid_name(name: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let last_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    (1..=253).contains(&name.len()) && name.split('.').all(label_ok) && !last_numeric
}

/// `message` in handshake records of `size` payload bytes (the last one shorter).
fn records(message: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in message.chunks(size) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
        out.extend_from_slice(piece);
    }
    out
}
