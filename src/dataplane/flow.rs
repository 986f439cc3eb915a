//! One direction of a proxied TCP connection: bytes read from one socket wait in a
//! buffer (or a pipe, when spliced) until the other takes them. Its I/O goes through
//! the shard's [`Reactor`], whichever it is.

use super::reactor::{Reactor, Want};
use crate::config::SpliceMode;
use crate::io::sys::{Pipe, PIPE_BYTES};
use std::io::ErrorKind;

/// What a pump call ended on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pump {
    /// A socket would block (the destination when `write`, else the source); its
    /// readiness continues the flow.
    Blocked { write: bool },
    /// The per-call budget ran out with work left.
    Budget,
    /// End of stream read and forwarded as a FIN.
    Done,
    /// A socket failed or was reset: the connection must be reset.
    Reset,
}

/// When and how a flow moves to a pipe: the settings, the shard's spare pipes, and
/// whether a pump just moved one (for the count of spliced flows).
pub struct Splice<'a> {
    pub mode: SpliceMode,
    pub threshold: u64,
    pub pipes: &'a mut Vec<Pipe>,
    pub switched: bool,
}

#[derive(Debug, Default)]
pub struct Flow {
    /// Bytes read and not yet written are `buf[start..]`.
    pub buf: Option<Vec<u8>>,
    start: usize,
    pub pipe: Option<Pipe>,
    piped: usize,
    read_eof: bool,
    shut: bool,
    /// Bytes read from the source so far.
    pub bytes: u64,
    /// Bytes it started with that were read before it existed and are counted by
    /// nobody else (a peeked ClientHello): counted by its first pump, once the
    /// backend they go to is known.
    pub uncounted: u64,
    /// The last read filled its whole buffer: the source is sending faster than one
    /// buffer per turn, the mark of a bulk transfer rather than a conversation.
    full_read: bool,
}

fn fails(kind: ErrorKind, write: bool) -> Pump {
    if kind == ErrorKind::WouldBlock {
        Pump::Blocked { write }
    } else {
        Pump::Reset
    }
}

impl Flow {
    /// Whether this flow should move to a pipe now. A flow switches only with nothing
    /// buffered here and (see [`Flow::pump`]) nothing held or awaited of the source by
    /// the reactor, so bytes never overtake each other and none is left behind. `auto` switches bulk transfers only:
    /// past the threshold and with reads that fill whole buffers; a conversation of small
    /// messages stays on the buffer path however long it lasts (a splice costs a poll and
    /// two system calls per message).
    pub fn wants_splice(&self, mode: SpliceMode, threshold: u64) -> bool {
        self.pipe.is_none()
            && self.buffered() == 0
            && match mode {
                SpliceMode::Never => false,
                SpliceMode::Always => true,
                SpliceMode::Auto => self.full_read && self.bytes >= threshold,
            }
    }

    /// A flow that starts with `bytes` to write (an HTTP tunnel's, read before it
    /// became one) and, with `eof`, the source's end already read.
    pub fn with_pending(bytes: Vec<u8>, eof: bool) -> Flow {
        Flow {
            buf: (!bytes.is_empty()).then_some(bytes),
            read_eof: eof,
            ..Flow::default()
        }
    }

    /// Put `bytes` before whatever waits to be written (a PROXY header: sent ahead of
    /// every byte of the source); `fresh` gives the buffer when the flow has none.
    pub fn prepend(&mut self, bytes: &[u8], fresh: impl FnOnce() -> Vec<u8>) {
        debug_assert!(
            self.pipe.is_none(),
            "a flow is spliced only once it carried bytes"
        );
        let buf = self.buf.get_or_insert_with(fresh);
        buf.splice(self.start..self.start, bytes.iter().copied());
    }

    /// The bytes waiting to be written.
    pub fn pending(&self) -> &[u8] {
        self.buf.as_deref().map_or(&[], |b| &b[self.start..])
    }

    fn buffered(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| b.len() - self.start)
    }

    /// What to wait for after the pump ended on `blocked`: writability of the
    /// destination, or readability of the source (without taking its bytes when the
    /// next read is a splice).
    pub fn wait_for(&self, write: bool) -> Want {
        Want {
            read: !write,
            write,
            poll_only: !write && self.pipe.is_some(),
        }
    }

    /// Both the end of stream and everything before it have been forwarded.
    pub fn finished(&self) -> bool {
        self.shut
    }

    /// The buffer, when it holds nothing (or a pipe took over).
    pub fn take_idle_buf(&mut self) -> Option<Vec<u8>> {
        if self.buffered() == 0 && (self.pipe.is_some() || !self.read_eof || self.shut) {
            self.start = 0;
            let mut b = self.buf.take()?;
            b.clear();
            return Some(b);
        }
        None
    }

    /// The pipe, when empty and so fit for another flow.
    pub fn take_reusable_pipe(&mut self) -> Option<Pipe> {
        let p = self.pipe.take();
        if self.piped == 0 {
            p
        } else {
            None
        }
    }

    /// Forward the half-close to `dst`; the other direction stays open.
    pub fn forward_fin<R: Reactor>(&mut self, io: &mut R, dst: &R::Sock) {
        io.shutdown(dst);
        self.finish_by_close();
    }

    /// The source ended and the connection is about to close both sockets anyway: the
    /// close sends the FIN, so no `shutdown` is needed.
    pub fn finish_by_close(&mut self) {
        self.read_eof = true;
        self.shut = true;
    }

    /// Move bytes from `src` to `dst` for at most `budget` reads. `peer_done`: the other
    /// direction has finished, so the connection closes when this one does and the
    /// close sends the FIN (no `shutdown`). A flow moves to a pipe here, before a read,
    /// the moment it qualifies: a bulk transfer whose destination is the slower side
    /// never waits on its source, so no later moment would come.
    pub fn pump<R: Reactor>(
        &mut self,
        io: &mut R,
        src: &R::Sock,
        dst: &R::Sock,
        budget: usize,
        peer_done: bool,
        splice: &mut Splice<'_>,
    ) -> Pump {
        if self.shut {
            return Pump::Done;
        }
        for _ in 0..budget {
            // Flush what is waiting before reading more.
            if self.piped > 0 {
                let p = self.pipe.as_ref().expect("piped bytes live in a pipe");
                match io.splice_out(p, dst, self.piped) {
                    Ok(n) => self.piped -= n,
                    Err(e) => return fails(e.kind(), true),
                }
                continue;
            }
            if let Some(buf) = self.buf.as_mut().filter(|b| b.len() > self.start) {
                match io.send(dst, &buf[self.start..], false) {
                    Ok(n) => self.start += n,
                    Err(e) => return fails(e.kind(), true),
                }
                if self.start == buf.len() {
                    self.start = 0;
                    buf.clear();
                }
                continue;
            }
            if self.read_eof {
                if peer_done {
                    self.finish_by_close();
                } else {
                    self.forward_fin(io, dst);
                }
                return Pump::Done;
            }
            if self.wants_splice(splice.mode, splice.threshold) && io.quiet(src) {
                self.pipe = splice.pipes.pop().or_else(|| Pipe::new().ok());
                splice.switched |= self.pipe.is_some();
            }
            let read = match (&self.pipe, &mut self.buf) {
                (Some(p), _) => io
                    .splice_in(src, p, PIPE_BYTES)
                    .inspect(|&n| self.piped = n),
                (None, Some(buf)) => {
                    let cap = super::BUF_BYTES;
                    io.recv(src, buf, cap)
                        .inspect(|&n| self.full_read = n == cap)
                }
                (None, None) => return Pump::Blocked { write: false },
            };
            match read {
                Ok(0) => self.read_eof = true,
                Ok(n) => self.bytes += n as u64,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return fails(e.kind(), false),
            }
        }
        Pump::Budget
    }
}
