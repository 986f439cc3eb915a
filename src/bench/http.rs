//! Response framing for the load generator: where one HTTP/1.1 response ends, without
//! keeping its body. Pure: bytes in, progress out.

/// What the head of a response says about its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Length(u64),
    Chunked,
    /// No length: the body runs to the end of the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of the head, including the blank line.
    pub len: usize,
    pub body: Body,
    /// The server keeps the connection open after this response.
    pub keep_alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// More bytes are needed.
    Partial,
    /// Not a valid HTTP/1.x response head.
    Invalid,
}

/// Parse a response head at the start of `buf`.
pub fn parse_head(buf: &[u8], head_request: bool) -> Result<Head, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(HeadError::Partial),
        Err(_) => return Err(HeadError::Invalid),
    };
    let status = resp.code.ok_or(HeadError::Invalid)?;
    let mut keep_alive = resp.version == Some(1);
    let mut body = Body::UntilClose;
    for h in resp.headers.iter() {
        let v = std::str::from_utf8(h.value)
            .map_err(|_| HeadError::Invalid)?
            .trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            body = Body::Length(v.parse().map_err(|_| HeadError::Invalid)?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if v.eq_ignore_ascii_case("chunked") {
                body = Body::Chunked;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            if v.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if v.eq_ignore_ascii_case("keep-alive") {
                keep_alive = true;
            }
        }
    }
    // 1xx, 204 and 304 responses and answers to HEAD have no body.
    if head_request || status / 100 == 1 || status == 204 || status == 304 {
        body = Body::Length(0);
    }
    if body == Body::UntilClose {
        keep_alive = false;
    }
    Ok(Head {
        status,
        len,
        body,
        keep_alive,
    })
}

/// Counts through a chunked body without storing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Chunked {
    /// Reading a chunk-size line; the value so far.
    #[default]
    Size,
    SizeValue(u64),
    /// Skipping chunk extensions up to the end of the size line.
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines until an empty one.
    Trailer {
        line_empty: bool,
    },
    TrailerLf {
        line_empty: bool,
    },
    Done,
}

impl Chunked {
    /// Feed bytes; returns how many were consumed (all, unless the body ended inside
    /// `buf`), or `None` on a framing error.
    pub fn feed(&mut self, buf: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            *self = match *self {
                Chunked::Size => Chunked::SizeValue(u64::from(hex(b)?)),
                Chunked::SizeValue(n) => match b {
                    b'\r' => Chunked::SizeLf(n),
                    b';' => Chunked::Extension(n),
                    _ => Chunked::SizeValue(n.checked_mul(16)?.checked_add(u64::from(hex(b)?))?),
                },
                Chunked::Extension(n) if b == b'\r' => Chunked::SizeLf(n),
                Chunked::Extension(n) => Chunked::Extension(n),
                Chunked::SizeLf(n) if b == b'\n' => {
                    if n == 0 {
                        Chunked::Trailer { line_empty: true }
                    } else {
                        Chunked::Data(n)
                    }
                }
                Chunked::SizeLf(_) => return None,
                Chunked::Data(n) => {
                    let take = (n as usize).min(buf.len() - i);
                    i += take;
                    let left = n - take as u64;
                    *self = if left == 0 {
                        Chunked::DataCr
                    } else {
                        Chunked::Data(left)
                    };
                    continue;
                }
                Chunked::DataCr if b == b'\r' => Chunked::DataLf,
                Chunked::DataLf if b == b'\n' => Chunked::Size,
                Chunked::DataCr | Chunked::DataLf => return None,
                Chunked::Trailer { line_empty } if b == b'\r' => Chunked::TrailerLf { line_empty },
                Chunked::Trailer { .. } => Chunked::Trailer { line_empty: false },
                Chunked::TrailerLf { line_empty } if b == b'\n' => {
                    if line_empty {
                        *self = Chunked::Done;
                        return Some(i + 1);
                    }
                    Chunked::Trailer { line_empty: true }
                }
                Chunked::TrailerLf { .. } => return None,
                Chunked::Done => return Some(i),
            };
            i += 1;
        }
        Some(i)
    }

    pub fn done(&self) -> bool {
        *self == Chunked::Done
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false).unwrap();
        assert_eq!(
            h,
            Head {
                status: 200,
                len: 38,
                body: Body::Length(5),
                keep_alive: true
            }
        );
        let h = parse_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", false).unwrap();
        assert_eq!((h.body, h.keep_alive), (Body::UntilClose, false));
        let h = parse_head(b"HTTP/1.0 404 NF\r\nContent-Length: 0\r\n\r\n", false).unwrap();
        assert_eq!((h.status, h.keep_alive), (404, false));
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(h.body, Body::Chunked);
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nCont", false),
            Err(HeadError::Partial)
        );
        assert_eq!(
            parse_head(b"SSH-2.0-OpenSSH\r\n\r\n", false),
            Err(HeadError::Invalid)
        );
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false);
        assert_eq!(h, Err(HeadError::Invalid));
    }

    #[test]
    fn chunked_in_any_split() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..body.len() {
            let mut c = Chunked::default();
            let a = c.feed(&body[..split]).unwrap();
            assert_eq!(a, split.min(end));
            if !c.done() {
                let b = c.feed(&body[split..]).unwrap();
                assert_eq!(split + b, end, "split at {split}");
            }
            assert!(c.done(), "split at {split}");
        }
        assert_eq!(Chunked::default().feed(b"zz\r\n"), None);
        assert_eq!(Chunked::default().feed(b"1\r\nab\r\n"), None);
    }
}
