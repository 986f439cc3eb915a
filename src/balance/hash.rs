//! Fixed-seed hashing. The seeds are constants, never random: every sluice instance
//! must compute the same permutations and the same flow hashes.

use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};

/// Seeds for the two Maglev permutation hashes and for flow hashing.
pub const SEED_OFFSET: (u64, u64) = (0x736c_7569_6365_0001, 0x6d61_676c_6576_0001);
pub const SEED_SKIP: (u64, u64) = (0x736c_7569_6365_0002, 0x6d61_676c_6576_0002);
pub const SEED_FLOW: (u64, u64) = (0x736c_7569_6365_0003, 0x6d61_676c_6576_0003);
/// For sticky-session server ids.
pub const SEED_STICKY: (u64, u64) = (0x736c_7569_6365_0004, 0x6d61_676c_6576_0004);

pub fn hash_bytes(seed: (u64, u64), bytes: &[u8]) -> u64 {
    let mut h = SipHasher13::new_with_keys(seed.0, seed.1);
    h.write(bytes);
    h.finish()
}

/// Hash of a client's IP address (IPv4 as 4 bytes, IPv6 as 16).
pub fn hash_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => hash_bytes(SEED_FLOW, &v4.octets()),
        IpAddr::V6(v6) => hash_bytes(SEED_FLOW, &v6.octets()),
    }
}

/// Hash of a client's IP address and port.
pub fn hash_tuple(addr: SocketAddr) -> u64 {
    let mut buf = [0u8; 18];
    let len = match addr.ip() {
        IpAddr::V4(v4) => {
            buf[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            buf[..16].copy_from_slice(&v6.octets());
            16
        }
    };
    buf[len..len + 2].copy_from_slice(&addr.port().to_be_bytes());
    hash_bytes(SEED_FLOW, &buf[..len + 2])
}
