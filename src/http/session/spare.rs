//! Spare buffers for sessions, one bounded pool per thread (a shard is one thread): a
//! connection's first request takes a set, its close or the idle sweep gives the set
//! back, so that new connections and their heads cost no allocation and an idle
//! keep-alive connection still holds none.

use super::{Session, KEEP_BYTES};
use crate::http::head::{Field, Known};
use std::cell::RefCell;

/// Sets a thread keeps at most (about 5 KiB each); beyond that, given-back buffers
/// are freed.
const SETS: usize = 256;
/// A byte buffer's first capacity: a usual head fits, so writing one does not grow
/// the buffer step by step.
const HEAD_BYTES: usize = 1024;
/// A field list's first capacity.
const FIELDS: usize = 24;

/// The buffers of one session.
pub(super) struct Set {
    bytes: [Vec<u8>; 4],
    fields: [Vec<(Known, Field)>; 2],
}

thread_local! {
    static SPARE: RefCell<Vec<Set>> = const { RefCell::new(Vec::new()) };
}

fn fresh() -> Set {
    Set {
        bytes: std::array::from_fn(|_| Vec::with_capacity(HEAD_BYTES)),
        fields: std::array::from_fn(|_| Vec::with_capacity(FIELDS)),
    }
}

/// Put `from` in `to` when `to` has none allocated (it always has none when a session
/// takes its set: nothing was read or written yet).
fn fill<T>(to: &mut Vec<T>, from: Vec<T>) {
    if to.capacity() == 0 {
        *to = from;
    }
}

/// Empty, and freed when it grew past what is kept.
fn kept<T>(mut v: Vec<T>, most: usize) -> Vec<T> {
    v.clear();
    match v.capacity() * std::mem::size_of::<T>() > most {
        true => Vec::new(),
        false => v,
    }
}

impl Session {
    /// Take a set of buffers for the first request, unless the session has one.
    pub(super) fn provision(&mut self) {
        if self.provisioned {
            return;
        }
        self.provisioned = true;
        let set = SPARE.with_borrow_mut(Vec::pop).unwrap_or_else(fresh);
        let [a, b, c, d] = set.bytes;
        fill(&mut self.input, a);
        fill(&mut self.to_client, b);
        fill(&mut self.to_backend, c);
        fill(&mut self.from_backend, d);
        let [e, f] = set.fields;
        fill(&mut self.req.fields, e);
        fill(&mut self.resp.fields, f);
    }

    /// Give the buffers back (their contents dropped): the session holds none after.
    pub(super) fn unprovision(&mut self) {
        if !self.provisioned {
            return;
        }
        self.provisioned = false;
        let keep = |v: &mut Vec<u8>| kept(std::mem::take(v), KEEP_BYTES);
        let set = Set {
            bytes: [
                keep(&mut self.input),
                keep(&mut self.to_client),
                keep(&mut self.to_backend),
                keep(&mut self.from_backend),
            ],
            fields: [
                kept(std::mem::take(&mut self.req.fields), KEEP_BYTES),
                kept(std::mem::take(&mut self.resp.fields), KEEP_BYTES),
            ],
        };
        // A session dropped while its thread exits finds the pool gone: its set is
        // freed.
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SETS {
                spare.push(set);
            }
        });
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.unprovision();
    }
}

#[cfg(test)]
pub(super) fn spare_sets() -> usize {
    SPARE.with_borrow(Vec::len)
}
