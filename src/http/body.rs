//! Message bodies: how many bytes belong to the message, and the chunked coding
//! checked strictly and re-framed in canonical form (sizes in lower-case hex, no
//! extensions, CRLF everywhere), so that what the backend receives can be read only
//! one way, whatever the client sent. Pure: bytes in, bytes out.

use super::head::BodyKind;
use std::io::Write;

/// Longest chunk extension or trailer section accepted.
const MAX_META_BYTES: usize = 16 * 1024;
/// Most digits in a chunk size, leading zeros included.
const MAX_SIZE_DIGITS: u8 = 32;
/// Largest chunk size: 15 significant hex digits (HAProxy refuses a few less).
const MAX_CHUNK: u64 = (1 << 60) - 1;

/// Why a body is malformed (the connection cannot continue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("invalid chunk size")]
    ChunkSize,
    #[error("invalid chunk framing")]
    ChunkFraming,
    #[error("invalid trailer")]
    Trailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits: value so far and digit count.
    Size(u64, u8),
    /// Whitespace after the size (RFC 9112 §7.1.1's BWS): only `;` or CR may follow.
    Bws(u64, usize),
    /// A chunk extension, up to CR.
    Ext(u64, usize),
    /// After the size line's CR.
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart(usize),
    TrailerLine {
        used: usize,
        colon: bool,
    },
    TrailerLf(usize),
    LastLf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Done,
    Length(u64),
    Close,
    Chunked(Chunk),
}

/// How a chunked body leaves: re-framed chunked, or decoded to plain bytes (for an
/// HTTP/1.0 client, which does not know the chunked coding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Chunked,
    Plain,
}

/// One message body in transit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Body {
    state: State,
    output: Output,
}

impl Default for Body {
    fn default() -> Self {
        Body::DONE
    }
}

impl Body {
    /// No body, or one already passed.
    pub const DONE: Body = Body {
        state: State::Done,
        output: Output::Chunked,
    };
}

impl Body {
    pub fn new(kind: BodyKind, output: Output) -> Body {
        let state = match kind {
            BodyKind::None => State::Done,
            BodyKind::Length(n) => State::Length(n),
            BodyKind::Close => State::Close,
            BodyKind::Chunked => State::Chunked(Chunk::Size(0, 0)),
        };
        Body { state, output }
    }

    /// The whole body has passed.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// The body runs until the sender closes.
    pub fn until_close(&self) -> bool {
        self.state == State::Close
    }

    /// Move body bytes from the front of `input` to `out`; returns how many bytes of
    /// `input` belong to this body (what follows is the next message).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, BodyError> {
        match self.state {
            State::Done => Ok(0),
            State::Close => {
                out.extend_from_slice(input);
                Ok(input.len())
            }
            State::Length(left) => {
                let n = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                out.extend_from_slice(&input[..n]);
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::Done
                } else {
                    State::Length(left)
                };
                Ok(n)
            }
            State::Chunked(_) => self.feed_chunked(input, out),
        }
    }

    fn feed_chunked(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, BodyError> {
        let chunked = self.output == Output::Chunked;
        let mut i = 0;
        while i < input.len() {
            let State::Chunked(c) = self.state else {
                break;
            };
            if let Chunk::Data(left) = c {
                let n = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                out.extend_from_slice(&input[i..i + n]);
                i += n;
                let left = left - n as u64;
                self.state = State::Chunked(if left == 0 {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left)
                });
                continue;
            }
            let b = input[i];
            i += 1;
            let next = match c {
                Chunk::Size(v, digits) => match (b as char).to_digit(16) {
                    Some(_) if digits >= MAX_SIZE_DIGITS || v > MAX_CHUNK >> 4 => {
                        return Err(BodyError::ChunkSize)
                    }
                    Some(d) => Chunk::Size(v << 4 | u64::from(d), digits + 1),
                    None if digits == 0 => return Err(BodyError::ChunkSize),
                    None if b == b'\r' => Chunk::SizeLf(v),
                    None if b == b';' => Chunk::Ext(v, 1),
                    None if b == b' ' || b == b'\t' => Chunk::Bws(v, 1),
                    None => return Err(BodyError::ChunkSize),
                },
                // `5 junk` is refused: a parser that stops at the first non-digit and
                // one that refuses the line would disagree.
                Chunk::Bws(v, used) => match b {
                    b'\r' => Chunk::SizeLf(v),
                    b';' => Chunk::Ext(v, used + 1),
                    _ if used >= MAX_META_BYTES => return Err(BodyError::ChunkFraming),
                    b' ' | b'\t' => Chunk::Bws(v, used + 1),
                    _ => return Err(BodyError::ChunkSize),
                },
                Chunk::Ext(v, used) => match b {
                    b'\r' => Chunk::SizeLf(v),
                    _ if used >= MAX_META_BYTES => return Err(BodyError::ChunkFraming),
                    b'\t' | b' '..=b'~' | 0x80.. => Chunk::Ext(v, used + 1),
                    _ => return Err(BodyError::ChunkFraming),
                },
                Chunk::SizeLf(v) => {
                    if b != b'\n' {
                        return Err(BodyError::ChunkFraming);
                    }
                    if chunked {
                        let _ = write!(out, "{v:x}\r\n");
                    }
                    if v == 0 {
                        Chunk::TrailerStart(0)
                    } else {
                        Chunk::Data(v)
                    }
                }
                Chunk::Data(_) => unreachable!("handled above"),
                Chunk::DataCr if b == b'\r' => Chunk::DataLf,
                Chunk::DataLf if b == b'\n' => {
                    if chunked {
                        out.extend_from_slice(b"\r\n");
                    }
                    Chunk::Size(0, 0)
                }
                Chunk::DataCr | Chunk::DataLf => return Err(BodyError::ChunkFraming),
                Chunk::TrailerStart(_) if b == b'\r' => Chunk::LastLf,
                Chunk::TrailerStart(_) if b == b' ' || b == b'\t' || b == b':' => {
                    return Err(BodyError::Trailer)
                }
                Chunk::TrailerStart(used) => self.trailer_byte(b, used, false, out)?,
                Chunk::TrailerLine { used, colon } if b == b'\r' => {
                    if !colon {
                        return Err(BodyError::Trailer);
                    }
                    Chunk::TrailerLf(used)
                }
                Chunk::TrailerLine { used, colon } => self.trailer_byte(b, used, colon, out)?,
                Chunk::TrailerLf(used) if b == b'\n' => {
                    if chunked {
                        out.extend_from_slice(b"\r\n");
                    }
                    Chunk::TrailerStart(used)
                }
                Chunk::TrailerLf(_) => return Err(BodyError::Trailer),
                Chunk::LastLf if b == b'\n' => {
                    if chunked {
                        out.extend_from_slice(b"\r\n");
                    }
                    self.state = State::Done;
                    break;
                }
                Chunk::LastLf => return Err(BodyError::Trailer),
            };
            self.state = State::Chunked(next);
        }
        Ok(i)
    }

    fn trailer_byte(
        &self,
        b: u8,
        used: usize,
        colon: bool,
        out: &mut Vec<u8>,
    ) -> Result<Chunk, BodyError> {
        if used >= MAX_META_BYTES || !(b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80) {
            return Err(BodyError::Trailer);
        }
        if self.output == Output::Chunked {
            out.push(b);
        }
        Ok(Chunk::TrailerLine {
            used: used + 1,
            colon: colon || b == b':',
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(kind: BodyKind, output: Output, parts: &[&[u8]]) -> Result<(Vec<u8>, usize), BodyError> {
        let mut b = Body::new(kind, output);
        let mut out = Vec::new();
        let mut used = 0;
        for p in parts {
            used += b.feed(p, &mut out)?;
        }
        assert!(b.done(), "not done");
        Ok((out, used))
    }

    #[test]
    fn chunked_is_reframed_canonically() {
        let input = b"5;ext=1\r\nhello\r\nA \r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (out, used) = run(BodyKind::Chunked, Output::Chunked, &[input]).unwrap();
        assert_eq!(out, b"5\r\nhello\r\na\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n");
        assert_eq!(&input[used..], b"NEXT");
        let (plain, _) = run(BodyKind::Chunked, Output::Plain, &[input]).unwrap();
        assert_eq!(plain, b"hello0123456789");
    }

    #[test]
    fn bad_chunking_is_refused() {
        let bad: &[&[u8]] = &[
            b"x\r\n",
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"5\r\nhello\r\n0\r\n folded\r\n\r\n",
            b"5\r\nhello\r\n0\r\nnocolon\r\n\r\n",
            b"-5\r\n",
            b"ffffffffffffffff0\r\n",
            b"5;\x01\r\n",
        ];
        for case in bad {
            let mut b = Body::new(BodyKind::Chunked, Output::Chunked);
            assert!(b.feed(case, &mut Vec::new()).is_err(), "{case:?}");
        }
    }

    #[test]
    fn chunk_size_lines_are_strict() {
        let good: &[&[u8]] = &[
            b"5;name=value\r\nhello\r\n0\r\n\r\n",
            b"5;a\r\nhello\r\n0\r\n\r\n",
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5\t \r\nhello\r\n0\r\n\r\n",
            b"5 ;a=b\r\nhello\r\n0\r\n\r\n",
            b"5; a = \"b c\"\r\nhello\r\n0\r\n\r\n",
            b"005\r\nhello\r\n0\r\n\r\n",
            b"00000000000000000005\r\nhello\r\n000\r\n\r\n",
        ];
        for case in good {
            let (out, used) = run(BodyKind::Chunked, Output::Chunked, &[case]).unwrap();
            assert_eq!(
                (out.as_slice(), used),
                (&b"5\r\nhello\r\n0\r\n\r\n"[..], case.len()),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
        let bad: &[&[u8]] = &[
            b"5 junk\r\n",
            b"5junk\r\n",
            b"5 5\r\n",
            b"5\t=\r\n",
            b"0 junk\r\n",
            b" 5\r\n",
            b"+5\r\n",
            b"0x5\r\n",
            b"5\r\r\n",
            // Past 60 bits, leading zeros or not; past 32 digits.
            b"1000000000000000\r\n",
            b"ffffffffffffffff\r\n",
            b"10000000000000005\r\n",
            b"000000000000000000000000000000005\r\n",
        ];
        for case in bad {
            let mut b = Body::new(BodyKind::Chunked, Output::Chunked);
            let got = b.feed(case, &mut Vec::new());
            assert!(got.is_err(), "{}: {got:?}", String::from_utf8_lossy(case));
        }
        let mut b = Body::new(BodyKind::Chunked, Output::Chunked);
        let mut out = Vec::new();
        let largest = b"fffffffffffffff\r\n";
        assert_eq!(b.feed(largest, &mut out), Ok(largest.len()));
        assert_eq!(out, largest);
    }

    #[test]
    fn length_stops_at_the_end() {
        let (out, used) = run(BodyKind::Length(3), Output::Chunked, &[b"ab", b"cdef"]).unwrap();
        assert_eq!((out.as_slice(), used), (&b"abc"[..], 3));
    }

    proptest! {
        /// However the bytes are split, the result is the same.
        #[test]
        fn chunked_in_any_split(cuts in proptest::collection::vec(0usize..60, 0..8)) {
            let input: &[u8] = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\nrest";
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
            cuts.push(0);
            cuts.push(input.len());
            cuts.sort_unstable();
            let parts: Vec<&[u8]> = cuts.windows(2).map(|w| &input[w[0]..w[1]]).collect();
            let mut b = Body::new(BodyKind::Chunked, Output::Chunked);
            let mut out = Vec::new();
            let mut used = 0;
            for p in parts {
                used += b.feed(p, &mut out).unwrap();
            }
            prop_assert!(b.done());
            prop_assert_eq!(used, input.len() - 4);
            prop_assert_eq!(out, b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n".to_vec());
        }
    }
}
