//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4), weighted.
//!
//! Each backend has a permutation of the table's slots given by `offset` and `skip`
//! (both from fixed-seed hashes of its address, so every host computes the same). The
//! backends take turns claiming their next preferred free slot until the table is full.
//! Weights change how often a backend gets a turn: a backend of weight `w` takes a turn
//! in a round only while its turns so far are at most `round * w / max_weight`, so the
//! shares come out proportional to the weights.

use super::hash::{hash_bytes, SEED_OFFSET, SEED_SKIP};

/// A backend as the table builder sees it: a stable name and a weight.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Bytes that identify the backend on every host (its address, rendered).
    pub key: &'a [u8],
    pub weight: u32,
}

/// One backend's walk through its permutation of the slots.
struct Perm {
    next: u32,
    skip: u32,
    weight: u64,
    turns: u64,
}

impl Perm {
    /// The paper's step: walk the permutation to the first free slot.
    #[inline]
    fn probe(&self, slots: &[u16], size: u32) -> u32 {
        let mut c = self.next;
        // A permutation visits every slot, and one is still free: this terminates.
        while slots[c as usize] != u16::MAX {
            c = advance(c, self.skip, size);
        }
        c
    }
}

/// Free slots left when [`Tail`] takes over from probing. Probing for the last few free
/// slots costs about M/F steps each; past this point computing each free slot's place
/// in the permutation is cheaper (measured: see `benches/maglev.rs`).
const TAIL_SLOTS: usize = 96;

/// The end of the fill: the few free slots, listed. The first free slot along a
/// permutation `next, next + skip, …` is the free `f` with the fewest steps
/// `(f - next) · skip⁻¹ mod M`; the result is the same slot [`Perm::probe`] finds.
struct Tail {
    free: Vec<u32>,
    /// `skip⁻¹ mod M` per backend.
    inverse: Vec<u64>,
}

impl Tail {
    fn new(slots: &[u16], perms: &[Perm]) -> Tail {
        let m = slots.len() as u64;
        Tail {
            free: (0..m as u32)
                .filter(|&c| slots[c as usize] == u16::MAX)
                .collect(),
            inverse: perms
                .iter()
                .map(|p| mod_inverse(u64::from(p.skip), m))
                .collect(),
        }
    }

    fn claim(&mut self, i: usize, p: &Perm, size: u32) -> u32 {
        let m = u64::from(size);
        let inv = self.inverse[i];
        let steps = |f: u32| (u64::from(f) + m - u64::from(p.next)) % m * inv % m;
        let (k, _) = self
            .free
            .iter()
            .enumerate()
            .min_by_key(|&(_, &f)| steps(f))
            .expect("a free slot is left");
        self.free.swap_remove(k)
    }
}

/// `a⁻¹ mod m` for prime `m` and `0 < a < m` (extended Euclid).
fn mod_inverse(a: u64, m: u64) -> u64 {
    let (mut r0, mut r1) = (m as i64, a as i64);
    let (mut t0, mut t1) = (0i64, 1i64);
    while r1 != 0 {
        let q = r0 / r1;
        (r0, r1) = (r1, r0 - q * r1);
        (t0, t1) = (t1, t0 - q * t1);
    }
    t0.rem_euclid(m as i64) as u64
}

/// A populated lookup table: slot → index into the entries it was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    slots: Box<[u16]>,
}

impl Table {
    /// Build a table of `size` slots (`size` prime and ≥ the number of entries).
    ///
    /// Entries must be in a canonical order (sluice sorts them by address) so that
    /// the indices mean the same thing on every host. Weights must be ≥ 1.
    pub fn build(entries: &[Entry<'_>], size: u32) -> Table {
        assert!(
            !entries.is_empty(),
            "maglev table needs at least one backend"
        );
        assert!(entries.len() <= usize::from(u16::MAX), "too many backends");
        assert!(
            size as usize >= entries.len() && size >= 2,
            "table smaller than backend set"
        );
        debug_assert!(crate::config::is_prime(size));
        let m = size as usize;
        // Permutation state per backend: the next slot it prefers, and its stride.
        let mut perms: Vec<Perm> = entries
            .iter()
            .map(|e| {
                assert!(e.weight >= 1, "maglev weight must be at least 1");
                Perm {
                    next: (hash_bytes(SEED_OFFSET, e.key) % u64::from(size)) as u32,
                    skip: (hash_bytes(SEED_SKIP, e.key) % u64::from(size - 1)) as u32 + 1,
                    weight: u64::from(e.weight),
                    turns: 0,
                }
            })
            .collect();
        let max_weight = perms.iter().map(|p| p.weight).max().unwrap_or(1);
        let equal = perms.iter().all(|p| p.weight == max_weight);
        let mut slots = vec![u16::MAX; m].into_boxed_slice();
        let mut filled = 0usize;
        let mut round = 0u64;
        let mut tail: Option<Tail> = None;
        // Every round gives the heaviest backend a turn, and every turn fills one slot,
        // so this ends after at most `m` rounds.
        while filled < m {
            round += 1;
            for (i, p) in perms.iter_mut().enumerate() {
                if !equal {
                    if p.turns * max_weight > round * p.weight {
                        continue;
                    }
                    p.turns += 1;
                }
                let c = match &mut tail {
                    Some(t) => t.claim(i, p, size),
                    None => p.probe(&slots, size),
                };
                slots[c as usize] = i as u16;
                p.next = advance(c, p.skip, size);
                filled += 1;
                if filled == m {
                    break;
                }
            }
            if tail.is_none() && m - filled <= TAIL_SLOTS {
                tail = Some(Tail::new(&slots, &perms));
            }
        }
        Table { slots }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slot a flow hash lands on.
    #[inline]
    pub fn slot_of(&self, flow_hash: u64) -> usize {
        (flow_hash % self.slots.len() as u64) as usize
    }

    /// The backend index in slot `slot`.
    #[inline]
    pub fn at(&self, slot: usize) -> usize {
        usize::from(self.slots[slot])
    }

    /// The backend a flow hash maps to.
    #[inline]
    pub fn lookup(&self, flow_hash: u64) -> usize {
        self.at(self.slot_of(flow_hash))
    }

    /// The raw slots, for comparison and inspection.
    pub fn slots(&self) -> &[u16] {
        &self.slots
    }
}

/// `(c + skip) mod size` for `c, skip < size`, without a branch: the wrap-around is
/// taken at random, so a branch here is mispredicted about half the time.
#[inline(always)]
fn advance(c: u32, skip: u32, size: u32) -> u32 {
    let t = c + skip;
    t - (size & ((t >= size) as u32).wrapping_neg())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("10.0.{}.{}:8080", i / 250, i % 250 + 1))
            .collect()
    }

    fn entries<'a>(names: &'a [String], weights: &[u32]) -> Vec<Entry<'a>> {
        names
            .iter()
            .zip(weights)
            .map(|(k, &weight)| Entry {
                key: k.as_bytes(),
                weight,
            })
            .collect()
    }

    fn counts(t: &Table, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &s in t.slots() {
            c[usize::from(s)] += 1;
        }
        c
    }

    #[test]
    fn equal_weights_differ_by_at_most_one() {
        for n in [1, 2, 3, 7, 10, 100, 1000] {
            let k = names(n);
            let t = Table::build(&entries(&k, &vec![1; n]), 65537);
            let c = counts(&t, n);
            let (lo, hi) = (c.iter().min().unwrap(), c.iter().max().unwrap());
            assert!(hi - lo <= 1, "n={n}: slot counts range {lo}..{hi}");
        }
    }

    #[test]
    fn weights_one_to_three_share_within_one_percent() {
        let k = names(2);
        let t = Table::build(&entries(&k, &[1, 3]), 65537);
        let c = counts(&t, 2);
        let share = c[0] as f64 / t.len() as f64;
        assert!((share - 0.25).abs() < 0.01, "share of weight 1 is {share}");
        // Several backends with mixed weights follow their weights too.
        let k = names(4);
        let w = [1, 2, 3, 4];
        let t = Table::build(&entries(&k, &w), 65537);
        let c = counts(&t, 4);
        for i in 0..4 {
            let share = c[i] as f64 / t.len() as f64;
            let want = f64::from(w[i]) / 10.0;
            assert!(
                (share - want).abs() < 0.01,
                "backend {i}: {share} vs {want}"
            );
        }
    }

    #[test]
    fn removing_one_of_hundred_moves_near_the_minimum() {
        let k = names(100);
        let all = entries(&k, &[1; 100]);
        let before = Table::build(&all, 65537);
        let removed = 42;
        let rest: Vec<Entry> = all
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != removed)
            .map(|(_, e)| *e)
            .collect();
        let after = Table::build(&rest, 65537);
        // Map "after" indices back to the original indices.
        let orig = |i: usize| if i >= removed { i + 1 } else { i };
        let moved = (0..before.len())
            .filter(|&s| before.at(s) != orig(after.at(s)))
            .count();
        let moved_pct = 100.0 * moved as f64 / before.len() as f64;
        // The minimum is the removed backend's share: 1%. Maglev trades a little more
        // disruption for balance; the paper reports a small multiple of the minimum.
        println!("removing 1 of 100 backends moved {moved_pct:.3}% of slots (minimum 1%)");
        assert!(moved_pct >= 1.0, "cannot move less than the removed share");
        assert!(
            moved_pct < 2.0,
            "moved {moved_pct:.3}% of slots, expected under 2%"
        );
    }

    #[test]
    fn rebuild_is_identical() {
        let k = names(37);
        let w: Vec<u32> = (0..37).map(|i| 1 + i % 5).collect();
        let a = Table::build(&entries(&k, &w), 65537);
        let b = Table::build(&entries(&k, &w), 65537);
        assert_eq!(a.slots(), b.slots());
    }

    /// The paper's algorithm, probing to the very end: the reference the tail shortcut
    /// must match slot for slot.
    fn reference(entries: &[Entry], size: u32) -> Vec<u16> {
        let mut perms: Vec<Perm> = entries
            .iter()
            .map(|e| Perm {
                next: (hash_bytes(SEED_OFFSET, e.key) % u64::from(size)) as u32,
                skip: (hash_bytes(SEED_SKIP, e.key) % u64::from(size - 1)) as u32 + 1,
                weight: u64::from(e.weight),
                turns: 0,
            })
            .collect();
        let max_weight = perms.iter().map(|p| p.weight).max().unwrap();
        let mut slots = vec![u16::MAX; size as usize];
        let (mut filled, mut round) = (0, 0u64);
        while filled < slots.len() {
            round += 1;
            for (i, p) in perms.iter_mut().enumerate() {
                if p.turns * max_weight > round * p.weight || filled == slots.len() {
                    continue;
                }
                p.turns += 1;
                let c = p.probe(&slots, size);
                slots[c as usize] = i as u16;
                p.next = (c + p.skip) % size;
                filled += 1;
            }
        }
        slots
    }

    #[test]
    fn tail_shortcut_matches_the_paper() {
        for (n, size) in [(1, 7), (3, 251), (10, 65537), (100, 65537), (7, 4099)] {
            let k = names(n);
            let w: Vec<u32> = (0..n as u32).map(|i| 1 + i % 3).collect();
            for weights in [vec![1; n], w] {
                let e = entries(&k, &weights);
                assert_eq!(
                    Table::build(&e, size).slots(),
                    &reference(&e, size)[..],
                    "n={n}"
                );
            }
        }
    }

    #[test]
    fn mod_inverse_inverts() {
        for a in [1u64, 2, 3, 1000, 65536] {
            assert_eq!(a * mod_inverse(a, 65537) % 65537, 1);
        }
    }

    #[test]
    fn small_prime_table_is_full() {
        let k = names(3);
        let t = Table::build(&entries(&k, &[1, 1, 1]), 7);
        assert!(t.slots().iter().all(|&s| s < 3));
    }
}
