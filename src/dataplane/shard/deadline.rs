//! The shard's one timer structure: a binary min-heap of connection deadlines with at
//! most one entry per connection, found through an index by slot, so it never holds
//! more entries than there are connections.
//!
//! A connection's deadline moves with its activity (an idle timeout restarts with
//! every byte), and moving an entry on every byte would cost a sift each time. So an
//! entry only ever moves earlier: a later deadline leaves the entry where it is, and
//! when it comes up the connection finds nothing due and arms its real deadline
//! again. Every deadline fires at its time, never late; an early wake-up costs one
//! check.

/// No deadline.
pub const NEVER: u64 = u64::MAX;

const ABSENT: u32 = u32::MAX;

#[derive(Debug, Default)]
pub struct Deadlines {
    /// `(at, slot)`, a min-heap on `at`.
    heap: Vec<(u64, u32)>,
    /// Where each slot's entry is in `heap` (`ABSENT`: none).
    pos: Vec<u32>,
}

impl Deadlines {
    /// Slot `idx` needs attention at `at`: an entry there, unless it has one as early.
    pub fn arm(&mut self, idx: u32, at: u64) {
        if at == NEVER {
            return;
        }
        let i = idx as usize;
        if self.pos.len() <= i {
            self.pos.resize(i + 1, ABSENT);
        }
        match self.pos[i] {
            ABSENT => {
                self.heap.push((at, idx));
                self.pos[i] = (self.heap.len() - 1) as u32;
                self.up(self.heap.len() - 1);
            }
            p if at < self.heap[p as usize].0 => {
                self.heap[p as usize].0 = at;
                self.up(p as usize);
            }
            _ => {}
        }
    }

    /// Slot `idx` is closed: its entry goes.
    pub fn disarm(&mut self, idx: u32) {
        let Some(&p) = self.pos.get(idx as usize) else {
            return;
        };
        if p != ABSENT {
            self.remove(p as usize);
        }
    }

    /// When the earliest entry is due.
    pub fn next_ms(&self) -> u64 {
        self.heap.first().map_or(NEVER, |e| e.0)
    }

    /// The slot of an entry due at `now_ms`, taken out of the heap.
    pub fn pop_due(&mut self, now_ms: u64) -> Option<u32> {
        let &(at, idx) = self.heap.first()?;
        if at > now_ms {
            return None;
        }
        self.remove(0);
        Some(idx)
    }

    fn remove(&mut self, p: usize) {
        let last = self.heap.len() - 1;
        self.swap(p, last);
        let (_, idx) = self.heap.pop().expect("an entry");
        self.pos[idx as usize] = ABSENT;
        if p < self.heap.len() {
            self.down(p);
            self.up(p);
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].1 as usize] = a as u32;
        self.pos[self.heap[b].1 as usize] = b as u32;
    }

    fn up(&mut self, mut p: usize) {
        while p > 0 {
            let parent = (p - 1) / 2;
            if self.heap[parent].0 <= self.heap[p].0 {
                return;
            }
            self.swap(p, parent);
            p = parent;
        }
    }

    fn down(&mut self, mut p: usize) {
        loop {
            let (l, r) = (2 * p + 1, 2 * p + 2);
            let mut m = p;
            if l < self.heap.len() && self.heap[l].0 < self.heap[m].0 {
                m = l;
            }
            if r < self.heap.len() && self.heap[r].0 < self.heap[m].0 {
                m = r;
            }
            if m == p {
                return;
            }
            self.swap(p, m);
            p = m;
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_slot_moved_only_earlier() {
        let mut d = Deadlines::default();
        d.arm(1, 300);
        d.arm(2, 100);
        d.arm(1, 500); // later: the entry stays at 300
        assert_eq!(d.len(), 2);
        d.arm(1, 200); // earlier: moved
        assert_eq!(d.len(), 2);
        assert_eq!(d.next_ms(), 100);
        assert_eq!(d.pop_due(99), None);
        assert_eq!(d.pop_due(250), Some(2));
        assert_eq!(d.pop_due(250), Some(1));
        assert_eq!(d.pop_due(250), None);
        assert_eq!(d.next_ms(), NEVER);
        d.arm(3, 10);
        d.disarm(3);
        d.disarm(3);
        assert_eq!(d.len(), 0);
    }

    /// Against a plain model: whatever the arms and disarms, entries come out in
    /// deadline order, each slot's at its earliest arm since it last fired.
    #[test]
    fn pops_in_order_like_a_model() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut d = Deadlines::default();
        let mut model: Vec<Option<u64>> = vec![None; 64];
        let mut now = 0;
        for _ in 0..20_000 {
            let idx = rnd(64) as u32;
            match rnd(4) {
                0 | 1 => {
                    let at = now + rnd(1_000);
                    d.arm(idx, at);
                    let m = &mut model[idx as usize];
                    *m = Some(m.map_or(at, |x| x.min(at)));
                }
                2 => {
                    d.disarm(idx);
                    model[idx as usize] = None;
                }
                _ => {
                    now += rnd(50);
                    while let Some(i) = d.pop_due(now) {
                        let at = model[i as usize].take().expect("a modelled entry");
                        assert!(at <= now);
                        let earliest = model.iter().flatten().min().copied().unwrap_or(NEVER);
                        assert!(at <= earliest, "in order");
                    }
                    assert!(model.iter().flatten().all(|&at| at > now), "none left due");
                }
            }
        }
    }
}
