//! A look at a TLS ClientHello before any byte of it is consumed: the server name
//! (SNI) and ALPN protocols it asks for, so that the HTTPS listener can choose, per
//! connection, between passing the bytes through untouched to a TCP-mode service (as
//! HAProxy's `req.ssl_sni` routing does) and terminating TLS itself. Sans I/O: the
//! shard hands [`peek`] the bytes received so far from the start of the stream, and
//! peeks again with more until the answer is not [`Peek::NeedMore`].
//!
//! Parsing is checked in the manner of smoltcp: every read goes through a small
//! `Cursor` whose reads return `Option`, so no input can make an index panic; every
//! loop consumes at least one byte per turn of an input that is itself bounded.
//!
//! What it accepts, and why where HAProxy differs:
//!
//! - The ClientHello may be fragmented over several handshake records (legal, and
//!   used by censorship-evasion tools to hide the name from middleboxes that read
//!   only the first record); they are reassembled. HAProxy's `req.ssl_sni` reads the
//!   first record only and finds no name in such a hello. A record of another type
//!   before the hello is complete is [`Reason::RecordType`].
//! - SSLv2-compatible hellos are [`Peek::NotTls`]: their first byte has the high bit
//!   set, which no TLS record type has, they cannot carry extensions (so no SNI), and
//!   RFC 6176 forbids them; nothing a TLS listener should answer sends one. HAProxy's
//!   `req.ssl_hello_type` likewise finds no TLS hello in them.
//! - The name is the one rustls, sluice's terminator, would see, so that a connection
//!   is routed alike whether passed through or terminated: a DNS name as
//!   `rustls_pki_types::DnsName` accepts it (ASCII letters, digits, `-` and `_`,
//!   labels of 1–63 bytes, at most 253 bytes, the last label not numeric), returned
//!   without the one trailing dot RFC 6066 forbids but some clients send; an IP
//!   literal (forbidden by RFC 6066, sent by a few clients) counts as no name, as
//!   rustls ignores it; anything else, two `host_name` entries, or a list without one
//!   is [`Reason::ServerName`] (rustls refuses the handshake). HAProxy returns the
//!   raw bytes, whatever they are. Lower-casing is the caller's.
//! - Bounded: a handshake body over [`MAX_HELLO_BYTES`] is [`Reason::TooLarge`] as
//!   soon as its length is read, a record longer than [`MAX_RECORD_BYTES`] is
//!   [`Reason::RecordLength`], and [`peek`] never looks past [`MAX_PEEK_BYTES`]:
//!   given that many bytes it always decides, so the caller's buffer needs no more.

use rustls_pki_types::ServerName;

/// The largest ClientHello body accepted. A Chrome hello with an X25519MLKEM768 key
/// share is about 1.8 KB; 16 KiB leaves room for larger post-quantum shares and
/// padding while keeping what a client can make the proxy hold small.
pub const MAX_HELLO_BYTES: usize = 16 * 1024;

/// The largest record length accepted: RFC 8446 allows 2^14 bytes of plaintext;
/// 256 more tolerate a sender that counts loosely, as HAProxy tolerates 2^14 + 2048.
pub const MAX_RECORD_BYTES: usize = (1 << 14) + 256;

/// [`peek`] decides within this many bytes of the stream: a hello not complete by
/// then is [`Reason::TooFragmented`]. Twice [`MAX_HELLO_BYTES`] lets a large hello
/// span several records with their headers. A hello in more than [`MAX_RECORDS`]
/// records is not peeked at all: its callers leave it to rustls.
pub const MAX_PEEK_BYTES: usize = 32 * 1024;

/// Handshake records an incomplete ClientHello may come in before a caller stops
/// peeking and leaves it to rustls (see [`worth_a_peek`]).
pub const MAX_RECORDS: usize = 64;

/// Whether [`peek`] at the start of a stream can tell more than at a shorter prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Worth {
    /// The bytes end where a record ends, or are not handshake records at all, or
    /// a record is too long to be one: peek.
    Yes,
    /// The bytes end inside a record: a sender sends whole records, so more come.
    NotYet,
    /// More than [`MAX_RECORDS`] records and no end in sight.
    TooManyRecords,
}

/// Whether peeking at `buf` now is worth it. Peeking at every arrival of a hello
/// trickling in would cost time quadratic in its length (each peek reads from the
/// start); walking the record headers is cheap and bounded.
pub fn worth_a_peek(buf: &[u8]) -> Worth {
    if buf.first().is_some_and(|&t| t != CONTENT_HANDSHAKE) {
        return Worth::Yes;
    }
    let (mut at, mut records) = (0, 0);
    while let Some(h) = buf.get(at..at + 5) {
        let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
        if h[0] != CONTENT_HANDSHAKE || len > MAX_RECORD_BYTES {
            return Worth::Yes;
        }
        at += 5 + len;
        records += 1;
        if records > MAX_RECORDS {
            return Worth::TooManyRecords;
        }
    }
    match at == buf.len() && at > 0 {
        true => Worth::Yes,
        false => Worth::NotYet,
    }
}

const HANDSHAKE_HEADER_BYTES: usize = 4;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const EXT_ECH: u16 = 0xfe0d;
const NAME_TYPE_HOST: u8 = 0;

/// What the bytes received so far say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek<'a> {
    /// A prefix of a plausible ClientHello: peek again when more bytes arrive.
    NeedMore,
    /// The first bytes cannot start a TLS record: plain HTTP on the TLS port, an
    /// SSLv2-compatible hello, a PROXY protocol header, noise.
    NotTls,
    /// TLS records, but not a ClientHello sluice accepts.
    Malformed(Reason),
    /// A complete ClientHello.
    Hello(Hello<'a>),
}

/// Why a stream of TLS records is not an acceptable ClientHello: small and `Copy`,
/// for a counter per reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A record other than handshake (22) before the hello is complete.
    RecordType,
    /// A record after the first whose version does not start with 3 (SSL 3.0 on).
    RecordVersion,
    /// A record of length 0 (RFC 8446 forbids empty handshake records) or over
    /// [`MAX_RECORD_BYTES`].
    RecordLength,
    /// The first handshake message is not a ClientHello.
    NotClientHello,
    /// The ClientHello body is longer than [`MAX_HELLO_BYTES`].
    TooLarge,
    /// The hello is not complete within [`MAX_PEEK_BYTES`] of records.
    TooFragmented,
    /// `legacy_version` does not start with 3.
    Version,
    /// A length that overruns its container, an empty list that may not be,
    /// bytes after the extensions.
    Syntax,
    /// `server_name`, `application_layer_protocol_negotiation` or
    /// `supported_versions` twice (RFC 8446 §4.2: at most one of each type): the
    /// proxy and the server behind it could read different ones.
    DuplicateExtension,
    /// A `server_name` extension that is malformed or names no valid DNS name.
    ServerName,
    /// A malformed ALPN extension: an empty list or an empty protocol name.
    Alpn,
}

impl Reason {
    /// A stable name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RecordType => "record_type",
            Reason::RecordVersion => "record_version",
            Reason::RecordLength => "record_length",
            Reason::NotClientHello => "not_client_hello",
            Reason::TooLarge => "too_large",
            Reason::TooFragmented => "too_fragmented",
            Reason::Version => "version",
            Reason::Syntax => "syntax",
            Reason::DuplicateExtension => "duplicate_extension",
            Reason::ServerName => "server_name",
            Reason::Alpn => "alpn",
        }
    }
}

/// What a ClientHello says that routing can use. Borrowed from the input, or from
/// the scratch buffer when the hello spanned several records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hello<'a> {
    /// The `host_name` of the `server_name` extension: a valid DNS name (see the
    /// module comment), never ending in a dot, not lower-cased. `None` without the
    /// extension, or when it names an IP address.
    pub server_name: Option<&'a str>,
    /// The ALPN protocol names, in the client's order of preference; empty without
    /// the extension.
    pub alpn: Protocols<'a>,
    /// The `supported_versions` extension is present (rustls sends it even when it
    /// offers TLS 1.2 only; OpenSSL does not).
    pub supported_versions: bool,
    /// `supported_versions` lists TLS 1.3 (0x0304).
    pub tls13: bool,
    /// An `encrypted_client_hello` extension is present: [`Hello::server_name`] is
    /// then the public name of the client-facing server, the real one encrypted.
    pub ech: bool,
    /// The hello's `legacy_version` (0x0303 from TLS 1.2 clients on), what HAProxy's
    /// `req.ssl_ver` reports.
    pub legacy_version: u16,
}

/// The protocol names of an ALPN extension, validated: each non-empty, together
/// filling the list exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Protocols<'a> {
    list: &'a [u8],
}

impl<'a> Protocols<'a> {
    /// The names in the client's order of preference.
    pub fn iter(&self) -> ProtocolIter<'a> {
        ProtocolIter {
            cur: Cursor::new(self.list),
        }
    }

    /// No ALPN extension was sent.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The client offers `name` (for example `b"h2"`).
    pub fn contains(&self, name: &[u8]) -> bool {
        self.iter().any(|n| n == name)
    }
}

impl<'a> IntoIterator for Protocols<'a> {
    type Item = &'a [u8];
    type IntoIter = ProtocolIter<'a>;
    fn into_iter(self) -> ProtocolIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Protocols`].
#[derive(Debug, Clone)]
pub struct ProtocolIter<'a> {
    cur: Cursor<'a>,
}

impl<'a> Iterator for ProtocolIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        self.cur.vec_u8()
    }
}

/// Peek at `bytes`, the start of a new connection's stream, for a ClientHello.
///
/// Nothing is consumed: the caller keeps the bytes and forwards them, or feeds them
/// to its TLS server, once the answer is not [`Peek::NeedMore`]. Peeking a longer
/// stream never changes an answer other than `NeedMore`.
///
/// When the hello lies in its first record, the answer borrows from `bytes` and
/// `scratch` is not touched. When it spans records they are reassembled into
/// `scratch` (cleared first), which then holds at most [`MAX_PEEK_BYTES`]: one
/// buffer per shard, reused across connections, serves every peek without an
/// allocation once grown. Both are borrowed for as long as the answer is held.
///
/// Stateless: each call reads the records again from the start, one step per record.
/// A client sending one-byte records one per segment makes a caller that peeks on
/// every arrival take steps quadratic in the records (about 15 million over the 5,461
/// records that fit in [`MAX_PEEK_BYTES`]), so such a caller should also bound the
/// peeks per connection, as HAProxy bounds its inspection by `inspect-delay`.
pub fn peek<'a>(bytes: &'a [u8], scratch: &'a mut Vec<u8>) -> Peek<'a> {
    let window = bytes.get(..MAX_PEEK_BYTES).unwrap_or(bytes);
    if let Some(answer) = first_bytes(window) {
        return answer;
    }
    match reassemble(window, scratch) {
        Err(reason) => Peek::Malformed(reason),
        Ok(None) if window.len() == MAX_PEEK_BYTES => Peek::Malformed(Reason::TooFragmented),
        Ok(None) => Peek::NeedMore,
        Ok(Some(body)) => match client_hello(body) {
            Ok(hello) => Peek::Hello(hello),
            Err(reason) => Peek::Malformed(reason),
        },
    }
}

/// Whether the stream can start with a TLS record: a content type of TLS 1.0–1.3
/// (change_cipher_spec, alert, handshake, application_data) and a version whose
/// first byte is 3. `None` when it can; the rest is for [`Records`] to judge.
fn first_bytes(bytes: &[u8]) -> Option<Peek<'static>> {
    match (bytes.first(), bytes.get(1)) {
        (None, _) => Some(Peek::NeedMore),
        (Some(t), _) if !(20..=23).contains(t) => Some(Peek::NotTls),
        (Some(_), None) => Some(Peek::NeedMore),
        (Some(_), Some(&v)) if v != 3 => Some(Peek::NotTls),
        _ => None,
    }
}

/// The ClientHello's body (after its 4-byte handshake header), borrowed from the
/// first record when it holds the whole message, else copied into `scratch` from
/// each record in turn. `Ok(None)` until the message is complete.
fn reassemble<'a>(bytes: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<Option<&'a [u8]>, Reason> {
    let mut records = Records {
        cur: Cursor::new(bytes),
    };
    let Some(first) = records.next()? else {
        return Ok(None);
    };
    let mut total = message_len(first)?;
    if let Some(body) = total.and_then(|t| first.get(HANDSHAKE_HEADER_BYTES..t)) {
        return Ok(Some(body));
    }
    scratch.clear();
    scratch.extend_from_slice(first);
    // Each turn consumes a record header at least: bounded by `bytes.len() / 5`.
    while total.map_or(true, |t| scratch.len() < t) {
        let Some(payload) = records.next()? else {
            return Ok(None);
        };
        scratch.extend_from_slice(payload);
        total = message_len(scratch)?;
    }
    let scratch: &'a Vec<u8> = scratch;
    Ok(total.and_then(|t| scratch.get(HANDSHAKE_HEADER_BYTES..t)))
}

/// From the first bytes of the handshake stream: the whole ClientHello message's
/// length, header included, once its header is there. Refuses another message type
/// and a body over [`MAX_HELLO_BYTES`] as soon as the bytes saying so arrive.
fn message_len(handshake: &[u8]) -> Result<Option<usize>, Reason> {
    let mut c = Cursor::new(handshake);
    match c.u8() {
        None => return Ok(None),
        Some(HANDSHAKE_CLIENT_HELLO) => {}
        Some(_) => return Err(Reason::NotClientHello),
    }
    let Some(len) = c.u24() else {
        return Ok(None);
    };
    if len > MAX_HELLO_BYTES {
        return Err(Reason::TooLarge);
    }
    Ok(Some(HANDSHAKE_HEADER_BYTES + len))
}

/// The handshake records at the start of a stream, one payload at a time.
struct Records<'a> {
    cur: Cursor<'a>,
}

impl<'a> Records<'a> {
    /// The next record's payload, or as much of it as has arrived (the last record
    /// may be cut short). `Ok(None)` when its header is not all there; a header
    /// field is judged as soon as its bytes arrive, so a longer stream never turns
    /// an error into something else.
    fn next(&mut self) -> Result<Option<&'a [u8]>, Reason> {
        let mut c = self.cur;
        match c.u8() {
            None => return Ok(None),
            Some(CONTENT_HANDSHAKE) => {}
            Some(_) => return Err(Reason::RecordType),
        }
        match c.u8() {
            None => return Ok(None),
            Some(3) => {}
            Some(_) => return Err(Reason::RecordVersion),
        }
        let (Some(_minor), Some(len)) = (c.u8(), c.u16()) else {
            return Ok(None);
        };
        let len = usize::from(len);
        if len == 0 || len > MAX_RECORD_BYTES {
            return Err(Reason::RecordLength);
        }
        let payload = c.take_up_to(len);
        self.cur = c;
        Ok(Some(payload))
    }
}

/// A ClientHello body (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2): version, random,
/// session id, cipher suites and compression methods are checked for shape only;
/// extensions may be absent altogether (TLS 1.0–1.2 allow it).
fn client_hello(body: &[u8]) -> Result<Hello<'_>, Reason> {
    let mut c = Cursor::new(body);
    let legacy_version = c.u16().ok_or(Reason::Syntax)?;
    if legacy_version >> 8 != 3 {
        return Err(Reason::Version);
    }
    let _random = c.take(32).ok_or(Reason::Syntax)?;
    let session_id = c.vec_u8().ok_or(Reason::Syntax)?;
    let suites = c.vec_u16().ok_or(Reason::Syntax)?;
    let compression = c.vec_u8().ok_or(Reason::Syntax)?;
    if session_id.len() > 32 || suites.is_empty() || suites.len() % 2 != 0 {
        return Err(Reason::Syntax);
    }
    if compression.is_empty() {
        return Err(Reason::Syntax);
    }
    let mut hello = Hello {
        legacy_version,
        ..Hello::default()
    };
    if c.is_empty() {
        return Ok(hello);
    }
    let extensions = c.vec_u16().ok_or(Reason::Syntax)?;
    if !c.is_empty() {
        return Err(Reason::Syntax);
    }
    read_extensions(extensions, &mut hello)?;
    Ok(hello)
}

/// Walks the extension list, reading the few that routing needs. Duplicates are
/// refused among those only: finding them among all types would need a set per
/// peek, and the server behind (or rustls) refuses the others itself.
fn read_extensions<'a>(list: &'a [u8], hello: &mut Hello<'a>) -> Result<(), Reason> {
    let mut c = Cursor::new(list);
    let mut seen = 0u8;
    // Each turn consumes at least 4 bytes.
    while !c.is_empty() {
        let kind = c.u16().ok_or(Reason::Syntax)?;
        let body = c.vec_u16().ok_or(Reason::Syntax)?;
        let bit = match kind {
            EXT_SERVER_NAME => 1,
            EXT_ALPN => 2,
            EXT_SUPPORTED_VERSIONS => 4,
            EXT_ECH => 8,
            _ => continue,
        };
        if seen & bit != 0 {
            return Err(Reason::DuplicateExtension);
        }
        seen |= bit;
        match kind {
            EXT_SERVER_NAME => hello.server_name = server_name(body)?,
            EXT_ALPN => hello.alpn = protocols(body).ok_or(Reason::Alpn)?,
            EXT_SUPPORTED_VERSIONS => {
                hello.supported_versions = true;
                hello.tls13 = offers_tls13(body).ok_or(Reason::Syntax)?;
            }
            // EXT_ECH, the only kind left; its payload is the client's to encrypt.
            _ => hello.ech = true,
        }
    }
    Ok(())
}

/// The `server_name` extension (RFC 6066 §3), read as rustls reads it: entries up
/// to the first of an unknown type (whose encoding is undefined, so nothing after it
/// can be read), exactly one of them a `host_name`.
fn server_name(body: &[u8]) -> Result<Option<&str>, Reason> {
    let mut c = Cursor::new(body);
    let list = c.vec_u16().ok_or(Reason::ServerName)?;
    if !c.is_empty() {
        return Err(Reason::ServerName);
    }
    let mut entries = Cursor::new(list);
    let mut host = None;
    // Each turn consumes at least 3 bytes.
    while entries.u8() == Some(NAME_TYPE_HOST) {
        let name = entries.vec_u16().ok_or(Reason::ServerName)?;
        if host.replace(name).is_some() {
            return Err(Reason::ServerName);
        }
    }
    host.map_or(Err(Reason::ServerName), dns_name)
}

/// A `host_name` as rustls judges it (see the module comment): a DNS name without
/// its trailing dot, `None` for an IP literal, else an error.
fn dns_name(raw: &[u8]) -> Result<Option<&str>, Reason> {
    let text = std::str::from_utf8(raw).map_err(|_| Reason::ServerName)?;
    match ServerName::try_from(text) {
        Ok(ServerName::DnsName(_)) => Ok(Some(text.strip_suffix('.').unwrap_or(text))),
        Ok(ServerName::IpAddress(_)) => Ok(None),
        _ => Err(Reason::ServerName),
    }
}

/// The ALPN extension (RFC 7301 §3.1): a non-empty list of non-empty names.
fn protocols(body: &[u8]) -> Option<Protocols<'_>> {
    let mut c = Cursor::new(body);
    let list = c.vec_u16()?;
    if !c.is_empty() || list.is_empty() {
        return None;
    }
    let mut names = Cursor::new(list);
    // Each turn consumes at least 2 bytes.
    while !names.is_empty() {
        if names.vec_u8()?.is_empty() {
            return None;
        }
    }
    Some(Protocols { list })
}

/// The ClientHello form of `supported_versions` (RFC 8446 §4.2.1): a list of 1 to
/// 127 versions, two bytes each. Whether TLS 1.3 is among them.
fn offers_tls13(body: &[u8]) -> Option<bool> {
    let mut c = Cursor::new(body);
    let list = c.vec_u8()?;
    if !c.is_empty() || list.is_empty() || list.len() % 2 != 0 {
        return None;
    }
    let mut versions = Cursor::new(list);
    // Each turn consumes 2 bytes.
    while let Some(version) = versions.u16() {
        if version == 0x0304 {
            return Some(true);
        }
    }
    Some(false)
}

/// A read position in a byte slice whose reads fail with `None` instead of
/// panicking; a failed read consumes nothing.
#[derive(Debug, Clone, Copy)]
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Cursor { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.rest.split_at_checked(n)?;
        self.rest = rest;
        Some(head)
    }

    /// The next `n` bytes, or all that remain when fewer.
    fn take_up_to(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        head
    }

    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }

    fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        let byte = |i: usize| b.get(i).map(|&x| usize::from(x));
        Some(byte(0)? << 16 | byte(1)? << 8 | byte(2)?)
    }

    /// A vector with a one-byte length prefix (TLS `opaque x<0..2^8-1>`).
    fn vec_u8(&mut self) -> Option<&'a [u8]> {
        let mut c = *self;
        let len = usize::from(c.u8()?);
        let v = c.take(len)?;
        *self = c;
        Some(v)
    }

    /// A vector with a two-byte length prefix (TLS `opaque x<0..2^16-1>`).
    fn vec_u16(&mut self) -> Option<&'a [u8]> {
        let mut c = *self;
        let len = usize::from(c.u16()?);
        let v = c.take(len)?;
        *self = c;
        Some(v)
    }
}

#[cfg(test)]
#[path = "hello_tests.rs"]
mod tests;
