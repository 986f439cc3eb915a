//! How a request ends: its response read to its end (whatever carried it, clear text
//! or TLS) and timed, or a failure counted by its cause; then the connection's next
//! request is scheduled.

use super::{State, Worker};
use crate::bench::http::{parse_head, Body, HeadError};
use std::cmp::Reverse;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub(super) enum Failure {
    Refused,
    Reset,
    Timeout,
    BadResponse,
    Other,
}

impl Failure {
    /// What this failure means when it ends a handshake.
    fn during_handshake(self) -> &'static str {
        match self {
            Failure::Refused => "connection refused",
            Failure::Reset => "connection reset or closed during the handshake",
            Failure::Timeout => "handshake timed out",
            Failure::BadResponse => "not a TLS server",
            Failure::Other => "TLS error",
        }
    }
}

impl Worker {
    /// The server ended the connection while a response was awaited: that ends a
    /// response without a length, and fails any other.
    pub(super) fn ended(&mut self, idx: usize) {
        let c = &self.conns[idx];
        if matches!(c.body, Some((Body::UntilClose, _, _))) {
            self.finish(idx);
        } else if c.body.is_none() && c.head_buf.is_empty() {
            self.fail(idx, Failure::Reset);
        } else {
            self.fail(idx, Failure::BadResponse);
        }
    }

    /// Account for `n` fresh bytes in the scratch buffer: `Some(true)` when the
    /// response is complete, `None` when it is malformed.
    pub(super) fn consume(&mut self, idx: usize, n: usize) -> Option<bool> {
        let c = &mut self.conns[idx];
        let mut bytes = &self.scratch[..n];
        if c.body.is_none() {
            c.head_buf.extend_from_slice(bytes);
            let head = match parse_head(&c.head_buf, false) {
                Ok(h) => h,
                Err(HeadError::Partial) if c.head_buf.len() < 64 * 1024 => return Some(false),
                Err(_) => return None,
            };
            let consumed_before = c.head_buf.len() - n;
            bytes = &self.scratch[head.len - consumed_before..n];
            c.body = Some((head.body, head.status, head.keep_alive));
            if let Body::Length(len) = head.body {
                c.left = len;
            }
            c.head_buf.clear();
        }
        let (body, _, _) = c.body.expect("head parsed");
        match body {
            Body::Length(_) => {
                c.left = c.left.saturating_sub(bytes.len() as u64);
                Some(c.left == 0)
            }
            Body::Chunked => {
                c.chunked.feed(bytes)?;
                Some(c.chunked.done())
            }
            Body::UntilClose => Some(false),
        }
    }

    pub(super) fn finish(&mut self, idx: usize) {
        let now = Instant::now();
        let c = &mut self.conns[idx];
        let (_, status, keep_alive) = c.body.expect("complete response");
        self.tally.requests += 1;
        if !(200..300).contains(&status) {
            self.tally.non_2xx += 1;
        }
        let us = now.saturating_duration_since(c.intended).as_micros() as u64;
        let _ = self.tally.latency_us.record(us.clamp(1, 60_000_000));
        if !(self.plan.keep_alive && keep_alive) {
            self.close_notify(idx);
            self.drop_stream(idx);
        }
        self.schedule_next(idx, now);
    }

    pub(super) fn fail(&mut self, idx: usize, f: Failure) {
        if self.conns[idx].state == State::Handshaking {
            // Whatever ended it, the handshake did not complete: one count, and the
            // first cause kept for the report.
            self.tally.tls_handshake += 1;
            self.note_failure(f.during_handshake());
        } else {
            self.count(f);
        }
        self.drop_stream(idx);
        self.schedule_next(idx, Instant::now());
    }

    fn count(&mut self, f: Failure) {
        match f {
            Failure::Refused => self.tally.refused += 1,
            Failure::Reset => self.tally.reset += 1,
            Failure::Timeout => self.tally.timeout += 1,
            Failure::BadResponse => self.tally.bad_response += 1,
            Failure::Other => self.tally.other += 1,
        }
    }

    pub(super) fn schedule_next(&mut self, idx: usize, now: Instant) {
        let c = &mut self.conns[idx];
        c.state = State::Waiting;
        let at = match self.plan.interval {
            Some(iv) => c.intended + iv,
            None => now,
        };
        self.due.push(Reverse((at, idx)));
    }
}
