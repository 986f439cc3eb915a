//! The PROXY protocol parser (`sluice::proxy`) under arbitrary bytes: no panic; a
//! header never claims more bytes than it was given; every prefix of an input answers
//! `NeedMore` or the input's own answer, so a connection's answer cannot change as
//! its bytes arrive; and a header that parses, written again by the encoder of its
//! version, parses back to the same addresses (and, for v2, the same authority).
//! The first byte chooses a lead: nothing, `PROXY ` or the v2 signature, so that the
//! parsers past them are reached.
#![no_main]

use sluice::proxy::{encode_v1, encode_v2, parse, Command, Parsed, Version, TLV_AUTHORITY, V2_SIGNATURE};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut input = match mode % 3 {
        0 => Vec::new(),
        1 => b"PROXY ".to_vec(),
        _ => V2_SIGNATURE.to_vec(),
    };
    input.extend_from_slice(rest);
    let whole = parse(&input);
    for n in 0..input.len() {
        let part = parse(&input[..n]);
        assert!(
            part == Parsed::NeedMore || part == whole,
            "prefix of {n} bytes: {part:?}, whole: {whole:?}"
        );
    }
    let Parsed::Header(h) = whole else {
        return;
    };
    assert!(h.consumed <= input.len());
    assert!(h.tlvs_at <= h.tlvs_end && h.tlvs_end <= h.consumed);
    let authority = h.authority.map(|(a, b)| &input[a..b]);
    let mut again = Vec::new();
    match h.version {
        Version::V1 => encode_v1(h.addrs, &mut again),
        Version::V2 => {
            let tlvs: Vec<(u8, &[u8])> = authority.map(|a| (TLV_AUTHORITY, a)).into_iter().collect();
            encode_v2(h.command, h.addrs, &tlvs, &mut again);
        }
    }
    let Parsed::Header(back) = parse(&again) else {
        panic!("{again:?} does not parse back");
    };
    assert_eq!(back.consumed, again.len());
    if h.command == Command::Proxy {
        assert_eq!(back.addrs, h.addrs);
        assert_eq!(back.authority.map(|(a, b)| &again[a..b]), authority);
    }
});
