//! The simulation's one source of chance: a splitmix64 generator, forked per socket
//! and per actor so that a draw made by one never shifts another's, and the byte
//! pattern every simulated body and stream is made of.

use std::sync::OnceLock;

/// splitmix64: tiny, fast, and good enough to pick split points and delays.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5157_5eed_0000_0001)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A generator of its own for `salt` (a socket, an actor), independent of the
    /// order in which the others draw.
    pub fn fork(&self, salt: u64) -> Rng {
        let mut r = Rng(self.0 ^ salt.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        r.next_u64();
        r
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    pub fn range_usize(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as u64, hi as u64) as usize
    }

    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }

    /// A size spread over orders of magnitude: mostly small, sometimes large.
    pub fn size(&mut self, max: usize) -> usize {
        let bits = self.range(0, u64::from(usize::BITS - max.leading_zeros()));
        let top = (1usize << bits).min(max);
        self.range_usize(0, top)
    }
}

/// The period of [`pattern`]: a prime, so that a buffer lost or repeated (whatever
/// its power-of-two size) shifts every byte after it.
const PERIOD: usize = 65_521;

/// `n` bytes of stream `stream` from `offset` on (fewer where the period wraps):
/// every body and L4 stream is a window on one table, started where its id says.
pub fn pattern(stream: u64, offset: u64, n: usize) -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut r = Rng::new(0x7ab1e);
        (0..PERIOD).map(|_| r.next_u64() as u8).collect()
    });
    let start = ((stream.wrapping_mul(7_919) + offset) % PERIOD as u64) as usize;
    &t[start..(start + n).min(PERIOD)]
}

/// Append `n` bytes of stream `stream` from `offset` to `out`.
pub fn extend_pattern(out: &mut Vec<u8>, stream: u64, mut offset: u64, mut n: usize) {
    while n > 0 {
        let p = pattern(stream, offset, n);
        out.extend_from_slice(p);
        offset += p.len() as u64;
        n -= p.len();
    }
}

/// Where `got` (bytes of stream `stream` from `offset` on) first differs from the
/// pattern, if anywhere.
pub fn mismatch(stream: u64, mut offset: u64, mut got: &[u8]) -> Option<u64> {
    while !got.is_empty() {
        let p = pattern(stream, offset, got.len());
        if p != &got[..p.len()] {
            let i = p.iter().zip(got).position(|(a, b)| a != b).unwrap_or(0);
            return Some(offset + i as u64);
        }
        offset += p.len() as u64;
        got = &got[p.len()..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forks_do_not_depend_on_each_other() {
        let root = Rng::new(7);
        let mut a = root.fork(1);
        let first = a.next_u64();
        let mut b = root.fork(2);
        b.next_u64();
        assert_eq!(root.fork(1).next_u64(), first);
        assert_ne!(root.fork(2).next_u64(), first);
    }

    #[test]
    fn patterns_check_what_they_made() {
        let mut v = Vec::new();
        extend_pattern(&mut v, 3, 100, 200_000);
        assert_eq!(mismatch(3, 100, &v), None);
        assert!(mismatch(4, 100, &v[..10]).is_some());
        v[150_000] ^= 1;
        assert_eq!(mismatch(3, 100, &v), Some(150_100));
    }
}
