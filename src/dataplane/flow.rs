//! One direction of a proxied TCP connection for readiness-based loops: bytes read from
//! one socket wait in a buffer (or a pipe, when spliced) until the other takes them.

use crate::config::SpliceMode;
use crate::io::sys::{self, Pipe, PIPE_BYTES};
use socket2::SockRef;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd};

/// Which socket of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
}

impl Side {
    pub fn from_bit(bit: usize) -> Side {
        if bit == 0 {
            Side::Client
        } else {
            Side::Backend
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Backend,
            Side::Backend => Side::Client,
        }
    }
}

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

#[derive(Debug, Default)]
pub struct Flow {
    pub buf: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    pub pipe: Option<Pipe>,
    piped: usize,
    read_eof: bool,
    shut: bool,
    /// Bytes read from the source so far.
    pub bytes: u64,
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
    /// buffered, so bytes never overtake each other. `auto` switches bulk transfers only:
    /// past the threshold and with reads that fill whole buffers; a conversation of small
    /// messages stays on the buffer path however long it lasts (a splice costs a poll and
    /// two system calls per message).
    pub fn wants_splice(&self, mode: SpliceMode, threshold: u64) -> bool {
        self.pipe.is_none()
            && self.start == self.end
            && match mode {
                SpliceMode::Never => false,
                SpliceMode::Always => true,
                SpliceMode::Auto => self.full_read && self.bytes >= threshold,
            }
    }

    /// Both the end of stream and everything before it have been forwarded.
    pub fn finished(&self) -> bool {
        self.shut
    }

    /// The buffer, when it holds nothing (or a pipe took over).
    pub fn take_idle_buf(&mut self) -> Option<Box<[u8]>> {
        if self.start == self.end && (self.pipe.is_some() || !self.read_eof || self.shut) {
            self.start = 0;
            self.end = 0;
            return self.buf.take();
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

    /// Count `n` bytes read by someone else (the io_uring shard) into a buffer of
    /// `capacity` bytes.
    pub fn count(&mut self, n: u64, capacity: u64) {
        self.bytes += n;
        self.full_read = n >= capacity;
    }

    /// Forward the half-close to `dst`; the other direction stays open.
    pub fn forward_fin(&mut self, dst: &impl AsFd) {
        let _ = SockRef::from(dst).shutdown(Shutdown::Write);
        self.finish_by_close();
    }

    /// The source ended and the connection is about to close both sockets anyway: the
    /// close sends the FIN, so no `shutdown` is needed.
    pub fn finish_by_close(&mut self) {
        self.read_eof = true;
        self.shut = true;
    }

    /// Move bytes from `src` to `dst` for at most `budget` reads.
    pub fn pump(&mut self, src: &impl AsFd, dst: &impl AsFd, budget: usize) -> Pump {
        let (src_ref, dst_ref) = (SockRef::from(src), SockRef::from(dst));
        if self.shut {
            return Pump::Done;
        }
        for _ in 0..budget {
            // Flush what is waiting before reading more.
            if self.piped > 0 {
                let p = self.pipe.as_ref().expect("piped bytes live in a pipe");
                match sys::splice(p.read.as_raw_fd(), dst_ref.as_raw_fd(), self.piped) {
                    Ok(n) => self.piped -= n,
                    Err(e) => return fails(e.kind(), true),
                }
                continue;
            }
            if self.start < self.end {
                let buf = self.buf.as_ref().expect("buffered bytes live in a buffer");
                match (&*dst_ref).write(&buf[self.start..self.end]) {
                    Ok(n) => self.start += n,
                    Err(e) => return fails(e.kind(), true),
                }
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                }
                continue;
            }
            if self.read_eof {
                self.forward_fin(dst);
                return Pump::Done;
            }
            let read = match (&self.pipe, &mut self.buf) {
                (Some(p), _) => sys::splice(src_ref.as_raw_fd(), p.write.as_raw_fd(), PIPE_BYTES)
                    .inspect(|&n| self.piped = n),
                (None, Some(buf)) => (&*src_ref).read(buf).inspect(|&n| {
                    self.end = n;
                    self.full_read = n == buf.len();
                }),
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
