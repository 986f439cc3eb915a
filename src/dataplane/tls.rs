//! The TLS side of a client connection: rustls's server state between the client's
//! socket and the HTTP session. Ciphertext moves through the shard's reactor (rustls
//! reads and writes through the two adapters below, so no byte is copied on the way
//! in or out beyond what rustls itself does); plaintext moves to and from the
//! [`Session`](crate::http::Session) exactly as a clear-text socket's bytes would.
//! Written once, above the reactors.

use super::reactor::Reactor;
use crate::stats::{PerShard, ServiceCounters, TlsCounters, TlsFailure};
use rustls::{HandshakeKind, ProtocolVersion, ServerConfig, ServerConnection};
use std::io::{self, BufRead, ErrorKind, Read, Write};
use std::sync::Arc;

/// Ciphertext reads per call before yielding to other connections.
const READS: usize = 8;

/// Plaintext rustls holds for the client before it is encrypted and written: past
/// this the session's output waits in the session (its own high-water mark holds).
const SEND_BUFFER: usize = 64 * 1024;

/// A client's TLS connection.
pub struct TlsSide {
    conn: ServerConnection,
    /// The handshake finished and was counted.
    established: bool,
    /// `close_notify` is queued.
    closing: bool,
    /// The client's end of stream (or close_notify) was read.
    eof: bool,
    /// ... and told to the session.
    eof_told: bool,
    failed: Option<TlsFailure>,
    /// Plaintext taken for the client whose records are not all sent yet: the session
    /// hears it was written only once they are (see [`TlsSide::sent`]), so that its
    /// idea of "flushed" — which ends a connection, or lets it idle — holds over TLS
    /// as over a clear-text socket.
    unsent: usize,
    /// The counters of the service whose own port this is (`tls = true`), counted
    /// beside the shard's.
    service: Option<Arc<PerShard<ServiceCounters>>>,
}

/// Where a connection's TLS outcomes are counted: the shard's counters (and the
/// connection's service's, on that shard).
#[derive(Clone, Copy)]
pub struct Count<'a> {
    pub shard: &'a TlsCounters,
    pub id: usize,
}

/// `Read` and `Write` over a socket of the reactor, for rustls.
struct SockIo<'a, R: Reactor> {
    r: &'a mut R,
    sock: &'a R::Sock,
}

impl<R: Reactor> Read for SockIo<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.r.recv_slice(self.sock, buf)
    }
}

impl<R: Reactor> Write for SockIo<'_, R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.r.send(self.sock, buf, false)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a [`TlsSide::pull`] ended on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// The socket has nothing more now: readiness will say when.
    Blocked,
    /// rustls holds as much plaintext as it may, or the read budget ran out: the
    /// socket may still have bytes.
    Full,
    /// The client's end of stream.
    Eof,
}

impl TlsSide {
    pub fn new(
        config: &Arc<ServerConfig>,
        service: Option<Arc<PerShard<ServiceCounters>>>,
    ) -> Result<TlsSide, rustls::Error> {
        let mut conn = ServerConnection::new(Arc::clone(config))?;
        conn.set_buffer_limit(Some(SEND_BUFFER));
        Ok(TlsSide {
            conn,
            established: false,
            closing: false,
            eof: false,
            eof_told: false,
            failed: None,
            unsent: 0,
            service,
        })
    }

    /// Ciphertext already read from the client (a ClientHello peeked to route the
    /// connection): fed to rustls as if just received.
    pub fn feed(&mut self, mut bytes: &[u8], c: Count<'_>) -> Result<(), TlsFailure> {
        while !bytes.is_empty() {
            match self.conn.read_tls(&mut bytes) {
                Ok(0) => break,
                Ok(_) => self.process(c)?,
                Err(_) => return Err(self.fail(TlsFailure::Protocol, c)),
            }
        }
        Ok(())
    }

    /// Read and decrypt what the client sent, while rustls has room for it.
    pub fn pull<R: Reactor>(
        &mut self,
        r: &mut R,
        sock: &R::Sock,
        c: Count<'_>,
    ) -> Result<Pulled, TlsFailure> {
        if let Some(f) = self.failed {
            return Err(f);
        }
        for _ in 0..READS {
            if self.eof {
                return Ok(Pulled::Eof);
            }
            if !self.conn.wants_read() {
                return Ok(Pulled::Full);
            }
            match self.conn.read_tls(&mut SockIo { r, sock }) {
                Ok(0) => {
                    self.eof = true;
                    if self.conn.is_handshaking() {
                        return Err(self.fail(TlsFailure::Closed, c));
                    }
                }
                Ok(_) => self.process(c)?,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Pulled::Blocked),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // A reset, or rustls's own "buffer full" (not reached: `wants_read`).
                Err(_) => return Err(self.fail(TlsFailure::Closed, c)),
            }
        }
        Ok(Pulled::Full)
    }

    fn process(&mut self, c: Count<'_>) -> Result<(), TlsFailure> {
        if let Err(e) = self.conn.process_new_packets() {
            return Err(self.fail(failure_of(&e), c));
        }
        if !self.established && !self.conn.is_handshaking() {
            self.established = true;
            let resumed = self.conn.handshake_kind() == Some(HandshakeKind::Resumed);
            let v13 = self.conn.protocol_version() == Some(ProtocolVersion::TLSv1_3);
            c.shard.handshake(resumed, v13);
            if let Some(s) = &self.service {
                s.shard(c.id).tls.handshake(resumed, v13);
            }
        }
        Ok(())
    }

    /// Count a failure once; rustls has queued the alert that tells the client, for
    /// [`TlsSide::push`] to send before the close.
    fn fail(&mut self, why: TlsFailure, c: Count<'_>) -> TlsFailure {
        if self.failed.is_none() && !self.established {
            c.shard.failure(why);
            if let Some(s) = &self.service {
                s.shard(c.id).tls.failure(why);
            }
        }
        *self.failed.get_or_insert(why)
    }

    /// The handshake did not finish in time: counted (the caller closes).
    pub fn timed_out(&mut self, c: Count<'_>) {
        if !self.established {
            self.fail(TlsFailure::Timeout, c);
        }
    }

    /// The connection closes: a handshake that neither finished nor failed ended with
    /// the client gone some other way — a reset or a refused write while the server's
    /// flight was sent, a close the session decided — and is counted as `closed`, so
    /// that every TLS connection accepted has one outcome.
    pub fn ended(&mut self, c: Count<'_>) {
        if !self.established {
            self.fail(TlsFailure::Closed, c);
        }
    }

    /// Decrypted bytes for the session, at most `max`, appended to `buf`. `Ok(0)`: the
    /// client closed (with close_notify or without); `WouldBlock`: none yet.
    pub fn plaintext(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        // An ACME TLS-ALPN-01 validation carries no application data (RFC 8737): what
        // it sends is taken as its end.
        if self.conn.alpn_protocol() == Some(crate::acme::ACME_TLS_ALPN) {
            self.eof_told = true;
            return Ok(0);
        }
        let mut reader = self.conn.reader();
        match reader.fill_buf() {
            Ok([]) => {
                self.eof_told = true;
                Ok(0)
            }
            Ok(chunk) => {
                let n = chunk.len().min(max);
                buf.extend_from_slice(&chunk[..n]);
                reader.consume(n);
                Ok(n)
            }
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                self.eof_told = true;
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// Decrypted bytes wait for the session (or the client's end does): they are read
    /// without waiting for the socket.
    pub fn readable(&mut self) -> bool {
        !self.eof_told
            && !matches!(self.conn.reader().fill_buf(), Err(e) if e.kind() == ErrorKind::WouldBlock)
    }

    /// Take plaintext for the client: how much rustls accepted. Before the handshake
    /// ends (a 408 to a client that never finished it) there is no one to send it to:
    /// it is taken and dropped, and reported sent as the rest is (else the session
    /// would wait for it).
    pub fn write_plain(&mut self, data: &[u8]) -> usize {
        if !self.established {
            self.unsent += data.len();
            return data.len();
        }
        if self.closing || self.failed.is_some() {
            return 0;
        }
        let n = self.conn.writer().write(data).unwrap_or(0);
        self.unsent += n;
        n
    }

    /// Plaintext taken but not yet on its way: its records wait in rustls.
    pub fn unsent(&self) -> usize {
        self.unsent
    }

    /// How much of the plaintext taken has now gone to the socket in full (all of it
    /// once rustls holds no record; nothing before), counted once.
    pub fn sent(&mut self) -> usize {
        match self.conn.wants_write() {
            true => 0,
            false => std::mem::take(&mut self.unsent),
        }
    }

    /// Send what rustls has for the client: `Ok(true)` when nothing is left.
    pub fn push<R: Reactor>(&mut self, r: &mut R, sock: &R::Sock) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut SockIo { r, sock }) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Ciphertext waits to be sent.
    pub fn pending(&self) -> bool {
        self.conn.wants_write()
    }

    /// The response is complete and the connection ends: say so (`close_notify`)
    /// before the FIN, as a TLS client expects.
    pub fn close_notify(&mut self) {
        if !self.closing && self.failed.is_none() {
            self.closing = true;
            self.conn.send_close_notify();
        }
    }

    /// The server name the client's hello asked for.
    pub fn server_name(&self) -> Option<&str> {
        self.conn.server_name()
    }

    pub fn handshaking(&self) -> bool {
        !self.established
    }
}

/// The counter a rustls error falls under.
fn failure_of(e: &rustls::Error) -> TlsFailure {
    use rustls::InvalidMessage::InvalidContentType;
    match e {
        // The first byte was not a TLS record's: plain HTTP on a TLS port, say.
        rustls::Error::InvalidMessage(InvalidContentType) => TlsFailure::NotTls,
        rustls::Error::AlertReceived(_) => TlsFailure::Alert,
        rustls::Error::General(m) if m.contains("certificate") => TlsFailure::NoCertificate,
        // The certificate's key cannot sign anything the client accepts (an RSA-only
        // client and an ECDSA certificate, say).
        rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::NoSignatureSchemesInCommon
            | rustls::PeerIncompatible::NoCipherSuitesInCommon,
        ) => TlsFailure::NoCertificate,
        _ => TlsFailure::Protocol,
    }
}

#[cfg(test)]
mod tests {
    //! rustls's client against a `TlsSide` through an in-memory reactor that splits
    //! every read and write at arbitrary points: whatever the record boundaries and
    //! segment sizes, the handshake completes and every byte arrives once, in order.

    use super::*;
    use crate::dataplane::reactor::{Event, ListenId, Token, Want};
    use crate::io::sys::Pipe;
    use crate::tls::certs::testkit::Ca;
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::net::SocketAddr;

    /// One socket: bytes from the client waiting for the server, and the server's
    /// for the client; each call moves at most the next size of `sizes`.
    struct Mem {
        to_server: VecDeque<u8>,
        to_client: VecDeque<u8>,
        sizes: Vec<usize>,
        next: usize,
    }

    impl Mem {
        fn size(&mut self) -> usize {
            self.next += 1;
            self.sizes[self.next % self.sizes.len()]
        }
    }

    impl Reactor for Mem {
        type Sock = ();
        fn now_ms(&self) -> u64 {
            0
        }
        fn wait(&mut self, _: u64, _: &mut Vec<Event<()>>) -> io::Result<()> {
            Ok(()) // the test drives the TLS side directly: there is nothing to wait for
        }
        fn listen(
            &mut self,
            _: &Arc<crate::snapshot::Listeners>,
            _: usize,
        ) -> io::Result<ListenId> {
            Err(ErrorKind::Unsupported.into())
        }
        fn unlisten(&mut self, _: ListenId) {}
        fn pause_accepts(&mut self, _: bool) {}
        fn watch(&mut self, _: &(), _: Token) -> io::Result<()> {
            Ok(())
        }
        fn retoken(&mut self, _: &(), _: Token) {}
        fn want(&mut self, _: &(), _: Want) {}
        fn close(&mut self, _: (), _: bool) {}
        fn connect(&mut self, _: SocketAddr) -> io::Result<()> {
            Err(ErrorKind::Unsupported.into())
        }
        fn connect_result(&mut self, _: &()) -> io::Result<bool> {
            Ok(true)
        }
        fn recv(&mut self, _: &(), buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
            let mut b = vec![0; max];
            let n = self.recv_slice(&(), &mut b)?;
            buf.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn recv_slice(&mut self, _: &(), buf: &mut [u8]) -> io::Result<usize> {
            if self.to_server.is_empty() {
                return Err(ErrorKind::WouldBlock.into());
            }
            let n = self.size().min(buf.len()).min(self.to_server.len());
            for b in buf.iter_mut().take(n) {
                *b = self.to_server.pop_front().unwrap();
            }
            Ok(n)
        }
        fn send(&mut self, _: &(), data: &[u8], _: bool) -> io::Result<usize> {
            let n = self.size().min(data.len());
            self.to_client.extend(&data[..n]);
            Ok(n)
        }
        fn peek(&mut self, _: &()) -> io::Result<usize> {
            Ok(self.to_server.len())
        }
        fn shutdown(&mut self, _: &()) {}
        fn quiet(&self, _: &()) -> bool {
            true
        }
        fn splice_in(&mut self, _: &(), _: &Pipe, _: usize) -> io::Result<usize> {
            Err(ErrorKind::Unsupported.into())
        }
        fn splice_out(&mut self, _: &Pipe, _: &(), _: usize) -> io::Result<usize> {
            Err(ErrorKind::Unsupported.into())
        }
    }

    fn configs(tls13: bool) -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        let ca = Ca::new("test CA");
        let leaf = ca.leaf(&["shop.example"]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shop.pem");
        std::fs::write(&file, leaf.pem()).unwrap();
        let set = Arc::new(crate::tls::certs::load(&[file]).unwrap());
        let tickets = crate::tls::server::tickets().unwrap();
        let server = crate::tls::server::server_config(set, &Default::default(), &tickets).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = match tls13 {
            true => &[&rustls::version::TLS13],
            false => &[&rustls::version::TLS12],
        };
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (server, Arc::new(client))
    }

    /// Send `data` from the client, echo it back from the server side: both ways
    /// through records cut at the reactor's `sizes`.
    fn echo(data: &[u8], sizes: Vec<usize>, tls13: bool) -> Vec<u8> {
        let (server, client) = configs(tls13);
        let name = "shop.example".try_into().unwrap();
        let mut c = rustls::ClientConnection::new(client, name).unwrap();
        let mut side = TlsSide::new(&server, None).unwrap();
        let counters = TlsCounters::default();
        let count = Count {
            shard: &counters,
            id: 0,
        };
        let mut r = Mem {
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            sizes,
            next: 0,
        };
        let (mut sent, mut echoed, mut back) = (0, 0, Vec::new());
        for _ in 0..100_000 {
            // rustls's client holds at most its buffer limit of plaintext.
            sent += c.writer().write(&data[sent..]).unwrap();
            // The client's records, in whatever pieces the "network" takes them.
            while c.wants_write() {
                let mut out = Vec::new();
                c.write_tls(&mut out).unwrap();
                r.to_server.extend(out);
            }
            let _ = side.pull(&mut r, &(), count).expect("no TLS failure");
            let mut plain = Vec::new();
            while let Ok(n) = side.plaintext(&mut plain, 1000) {
                if n == 0 {
                    break;
                }
            }
            let mut at = 0;
            while at < plain.len() {
                let n = side.write_plain(&plain[at..]);
                assert!(n > 0, "rustls takes the echo");
                at += n;
            }
            echoed += plain.len();
            while side.pending() && !side.push(&mut r, &()).unwrap() {}
            let bytes: Vec<u8> = r.to_client.drain(..).collect();
            let mut rd = &bytes[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets().unwrap();
            }
            let mut buf = [0u8; 4096];
            while let Ok(n) = c.reader().read(&mut buf) {
                if n == 0 {
                    break;
                }
                back.extend_from_slice(&buf[..n]);
            }
            if back.len() == data.len() {
                break;
            }
        }
        assert_eq!(echoed, data.len());
        let versions = counters.versions[usize::from(tls13)].get();
        assert_eq!(versions, 1, "one handshake, of the version asked");
        back
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn every_byte_arrives_whatever_the_segments(
            len in 0usize..100_000,
            sizes in proptest::collection::vec(1usize..20_000, 1..8),
            tls13 in any::<bool>(),
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
            prop_assert_eq!(echo(&data, sizes, tls13), data);
        }
    }

    #[test]
    fn one_byte_segments() {
        let data = b"GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n".repeat(50);
        assert_eq!(echo(&data, vec![1], true), data);
        assert_eq!(echo(&data, vec![1, 3, 17000], false), data);
    }
}
