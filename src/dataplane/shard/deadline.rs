//! The shard's one timer structure: a min-heap of connection deadlines.
//!
//! A connection's deadline moves with its activity (an idle timeout restarts with
//! every byte), so the heap is lazy: each connection remembers the one deadline it
//! has armed, and an entry is pushed only when the connection needs an earlier one.
//! An entry whose time is no longer the connection's armed one is stale and skipped
//! when it comes up; a live one fires, and the connection then reports its next
//! deadline (which may be later: its activity moved it). Every deadline fires at
//! its time, not at the next sweep.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// No deadline.
pub const NEVER: u64 = u64::MAX;

#[derive(Debug, Default)]
pub struct Deadlines {
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
}

impl Deadlines {
    /// Connection `idx` (generation `generation`), whose armed deadline is `*armed`,
    /// next needs attention at `at`: push an entry if that is earlier.
    pub fn arm(&mut self, idx: u32, generation: u32, armed: &mut u64, at: u64) {
        if at < *armed {
            *armed = at;
            self.heap.push(Reverse((at, idx, generation)));
        }
    }

    /// When the earliest entry is due (it may be stale).
    pub fn next_ms(&self) -> u64 {
        self.heap.peek().map_or(NEVER, |Reverse((at, _, _))| *at)
    }

    /// An entry due at `now_ms`: `(at, idx, generation)`. The caller checks it against
    /// the connection's armed deadline and generation.
    pub fn pop_due(&mut self, now_ms: u64) -> Option<(u64, u32, u32)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now_ms => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
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
    fn entries_fire_in_deadline_order_and_only_when_earlier() {
        let mut d = Deadlines::default();
        let (mut a, mut b) = (NEVER, NEVER);
        d.arm(1, 7, &mut a, 300);
        d.arm(2, 7, &mut b, 100);
        d.arm(1, 7, &mut a, 500); // later: nothing pushed, the armed one stays
        assert_eq!(a, 300);
        assert_eq!(d.len(), 2);
        d.arm(1, 7, &mut a, 200); // earlier: pushed; the 300 entry is now stale
        assert_eq!(d.next_ms(), 100);
        assert_eq!(d.pop_due(99), None);
        assert_eq!(d.pop_due(250), Some((100, 2, 7)));
        assert_eq!(d.pop_due(250), Some((200, 1, 7)));
        assert_eq!(d.pop_due(250), None);
        assert_eq!(
            d.pop_due(300),
            Some((300, 1, 7)),
            "stale: the caller skips it"
        );
        assert_eq!(d.next_ms(), NEVER);
    }
}
