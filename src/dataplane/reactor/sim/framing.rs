//! Message bodies as they come off a socket: Content-Length, chunked (any chunk
//! sizes, extensions, trailers) or delimited by the close. Used by the simulated
//! clients and backends to take apart what sluice sent them; written apart from
//! sluice's own parser so that the oracle does not check the code with itself.

#[derive(Debug, Clone, Copy)]
pub enum Body {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Debug, Clone, Copy)]
pub enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
}

/// Bytes received and not yet taken apart, consumed from the front by moving an
/// offset (a drain per chunk would copy a large body over and over).
#[derive(Debug, Default)]
pub struct Inbuf {
    data: Vec<u8>,
    pos: usize,
}

impl Inbuf {
    pub fn bytes(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    pub fn len(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where a receive appends.
    pub fn tail(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }

    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.data.len() {
            self.clear();
        } else if self.pos > 1 << 16 && self.pos * 2 > self.data.len() {
            self.data.drain(..self.pos);
            self.pos = 0;
        }
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.pos = 0;
    }
}

/// A body being read: its framing and the body bytes taken so far.
#[derive(Debug, Clone, Copy)]
pub struct Reader {
    pub body: Body,
    pub got: u64,
}

impl Reader {
    pub fn new(body: Body) -> Reader {
        Reader { body, got: 0 }
    }
}

/// What [`body`] took from the buffer: bytes used, the body bytes among them (their
/// offset in the body and place in the buffer), whether the body ended, and whether
/// the framing was broken.
pub struct Taken {
    pub used: usize,
    pub data: Option<(u64, std::ops::Range<usize>)>,
    pub done: bool,
    pub bad: bool,
}

impl Taken {
    fn framing(used: usize, done: bool) -> Taken {
        Taken {
            used,
            data: None,
            done,
            bad: false,
        }
    }
}

/// Take body bytes of `r` from the front of `buf` (one chunk's piece at most).
pub fn take(r: &mut Reader, buf: &[u8]) -> Taken {
    let off = r.got;
    let data = |n: usize| Some((off, 0..n));
    match r.body {
        Body::Length(n) => {
            let k = (n - r.got).min(buf.len() as u64) as usize;
            r.got += k as u64;
            Taken {
                used: k,
                data: data(k),
                done: r.got == n,
                bad: false,
            }
        }
        Body::UntilClose => {
            r.got += buf.len() as u64;
            Taken {
                used: buf.len(),
                data: data(buf.len()),
                done: false,
                bad: false,
            }
        }
        Body::Chunked(state) => {
            // Only a size line or a trailer is looked for a line end in (not chunk data).
            let line = match state {
                Chunk::Size | Chunk::Trailer => buf.windows(2).position(|w| w == b"\r\n"),
                Chunk::Data(_) | Chunk::DataEnd => None,
            };
            match (state, line) {
                (Chunk::Size, Some(e)) => {
                    let text = std::str::from_utf8(&buf[..e]).unwrap_or("!");
                    let hex = text.split(';').next().unwrap_or("").trim();
                    let Ok(n) = u64::from_str_radix(hex, 16) else {
                        return Taken {
                            bad: true,
                            ..Taken::framing(0, false)
                        };
                    };
                    r.body = Body::Chunked(if n == 0 {
                        Chunk::Trailer
                    } else {
                        Chunk::Data(n)
                    });
                    Taken::framing(e + 2, false)
                }
                (Chunk::Data(n), _) => {
                    let k = n.min(buf.len() as u64) as usize;
                    let left = n - k as u64;
                    r.body = Body::Chunked(if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    });
                    r.got += k as u64;
                    Taken {
                        used: k,
                        data: data(k),
                        done: false,
                        bad: false,
                    }
                }
                (Chunk::DataEnd, _) if buf.len() >= 2 => {
                    r.body = Body::Chunked(Chunk::Size);
                    Taken {
                        bad: &buf[..2] != b"\r\n",
                        ..Taken::framing(2, false)
                    }
                }
                (Chunk::Trailer, Some(0)) => Taken::framing(2, true),
                (Chunk::Trailer, Some(e)) => Taken::framing(e + 2, false),
                _ => Taken::framing(0, false),
            }
        }
    }
}
