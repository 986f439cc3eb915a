//! A connection's TLS: rustls's client driven on the thread's non-blocking socket.
//! Ciphertext is read from the socket in one large read into the thread's buffer and
//! handed to rustls piece by piece (rustls itself reads at most a few KiB per call,
//! which would cost a system call each in bulk mode); what it decrypts goes straight
//! to the response parser; what it has to send is written whenever the socket takes
//! it. Readiness comes from the same mio loop as clear-text connections'.

use super::{Failure, State, Worker};
use rustls::{ClientConnection, HandshakeKind, ProtocolVersion};
use std::fmt::Display;
use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;

/// What one read from the socket came to.
enum Pulled {
    /// The socket has nothing more now: readiness will say when.
    Blocked,
    /// Ciphertext read and taken by rustls; the socket may have more.
    Fed,
    /// The awaited response is complete.
    Complete,
    /// The server's end of stream (or its close_notify).
    Eof,
    Failed(Failure),
}

impl Worker {
    /// The TCP connection is up: start its handshake.
    pub(super) fn begin_tls(&mut self, idx: usize) {
        let config = Arc::clone(self.tls_config.as_ref().expect("a TLS run"));
        let name = self.plan.tls.as_ref().expect("a TLS run").name.clone();
        self.conns[idx].state = State::Handshaking;
        match ClientConnection::new(config, name) {
            Ok(conn) => {
                self.conns[idx].tls = Some(Box::new(conn));
                self.handshake(idx);
            }
            Err(e) => self.tls_failed(idx, e, Failure::Other),
        }
    }

    /// Move the handshake on as far as the socket allows; once it is done, send the
    /// request.
    pub(super) fn handshake(&mut self, idx: usize) {
        loop {
            if let Err(f) = self.flush(idx) {
                return self.fail(idx, f);
            }
            if !self.conns[idx]
                .tls
                .as_ref()
                .expect("handshaking")
                .is_handshaking()
            {
                break;
            }
            match self.pull(idx) {
                Pulled::Blocked => return,
                Pulled::Fed => {}
                Pulled::Eof => return self.fail(idx, Failure::Reset),
                Pulled::Failed(f) => return self.fail(idx, f),
                // No response is awaited before the request is sent.
                Pulled::Complete => return self.fail(idx, Failure::Other),
            }
        }
        self.established(idx);
        self.conns[idx].state = State::Sending;
        self.send_tls(idx);
    }

    /// Count a completed handshake: full or resumed, and what it negotiated.
    fn established(&mut self, idx: usize) {
        let tls = self.conns[idx].tls.as_ref().expect("established");
        let t = &mut self.tally.tls;
        match tls.handshake_kind() {
            Some(HandshakeKind::Resumed) => t.resumed += 1,
            Some(HandshakeKind::FullWithHelloRetryRequest) => {
                t.full += 1;
                t.hello_retries += 1;
            }
            _ => t.full += 1,
        }
        t.versions.add(
            match tls.protocol_version() {
                Some(ProtocolVersion::TLSv1_3) => "1.3",
                Some(ProtocolVersion::TLSv1_2) => "1.2",
                _ => "other",
            },
            1,
        );
        // A resumed TLS 1.2 session has no key exchange.
        let group = tls.negotiated_key_exchange_group();
        t.groups
            .add(group.and_then(|g| g.name().as_str()).unwrap_or("none"), 1);
        let suite = tls.negotiated_cipher_suite();
        t.cipher_suites
            .add(suite.and_then(|s| s.suite().as_str()).unwrap_or("other"), 1);
    }

    /// Hand the request to rustls and write it out, as far as the socket takes it.
    pub(super) fn send_tls(&mut self, idx: usize) {
        let plan = Arc::clone(&self.plan);
        loop {
            let c = &mut self.conns[idx];
            let tls = c.tls.as_mut().expect("sending over TLS");
            if c.sent < plan.request.len() {
                match tls.writer().write(&plan.request[c.sent..]) {
                    Ok(n) => {
                        c.sent += n;
                        self.tally.tx_bytes += n as u64;
                    }
                    Err(_) => return self.fail(idx, Failure::Other),
                }
            }
            if let Err(f) = self.flush(idx) {
                return self.fail(idx, f);
            }
            let c = &self.conns[idx];
            if c.sent == plan.request.len() {
                break;
            }
            if c.tls.as_ref().is_some_and(|t| t.wants_write()) {
                // The socket is full: writability will bring us back.
                return;
            }
        }
        // What is still buffered is flushed while receiving.
        self.conns[idx].state = State::Receiving;
        self.receive_tls(idx);
    }

    pub(super) fn receive_tls(&mut self, idx: usize) {
        loop {
            if let Err(f) = self.flush(idx) {
                return self.fail(idx, f);
            }
            match self.pull(idx) {
                Pulled::Blocked => return,
                Pulled::Fed => {}
                Pulled::Complete => return self.finish(idx),
                Pulled::Eof => return self.ended(idx),
                Pulled::Failed(f) => return self.fail(idx, f),
            }
        }
    }

    /// One read from the socket, all of it handed to rustls; while a response is
    /// awaited, what rustls decrypts goes to the parser. Every byte read is given to
    /// rustls even when the response ends before it: a keep-alive connection's record
    /// stream must stay whole.
    fn pull(&mut self, idx: usize) -> Pulled {
        let c = &mut self.conns[idx];
        let s = c.stream.as_ref().expect("a TLS stream");
        let tls = c.tls.as_mut().expect("a TLS stream");
        let n = match (&*s).read(&mut self.cipher) {
            Ok(0) => {
                // Tell rustls: its reader then says whether the end was clean, after
                // what it still holds.
                let _ = tls.read_tls(&mut std::io::empty());
                return match c.state {
                    State::Receiving => match self.drain(idx) {
                        Pulled::Fed => Pulled::Eof,
                        p => p,
                    },
                    _ => Pulled::Eof,
                };
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Pulled::Blocked,
            Err(e) if e.kind() == ErrorKind::Interrupted => return Pulled::Fed,
            Err(_) => return Pulled::Failed(Failure::Reset),
        };
        let mut fed = 0;
        let mut outcome = Pulled::Fed;
        while fed < n {
            let tls = self.conns[idx].tls.as_mut().expect("a TLS stream");
            match tls.read_tls(&mut &self.cipher[fed..n]) {
                // After the server's close_notify rustls takes nothing more.
                Ok(0) => break,
                Ok(k) => fed += k,
                // Its plaintext buffer is full: more than a response was sent.
                Err(_) => return Pulled::Failed(Failure::BadResponse),
            }
            if let Err(e) = tls.process_new_packets() {
                // rustls queued an alert saying why: send it, as a real client would.
                let _ = self.flush(idx);
                if self.conns[idx].state == State::Handshaking {
                    self.note_failure(e);
                }
                return Pulled::Failed(Failure::Other);
            }
            if matches!(outcome, Pulled::Fed) && self.conns[idx].state == State::Receiving {
                outcome = self.drain(idx);
                if matches!(outcome, Pulled::Failed(_)) {
                    return outcome;
                }
            }
        }
        outcome
    }

    /// Give the parser the plaintext rustls holds: `Complete` when that completes the
    /// response, `Eof` at the server's end of stream (close_notify, or a TCP end
    /// rustls was told of), `Fed` when rustls has no more for now.
    fn drain(&mut self, idx: usize) -> Pulled {
        loop {
            let tls = self.conns[idx].tls.as_mut().expect("a TLS stream");
            let n = match tls.reader().read(&mut self.scratch) {
                Ok(0) => return Pulled::Eof,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Pulled::Fed,
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Pulled::Eof,
                Err(_) => return Pulled::Failed(Failure::Other),
            };
            self.tally.rx_bytes += n as u64;
            match self.consume(idx, n) {
                Some(true) => return Pulled::Complete,
                Some(false) => {}
                None => return Pulled::Failed(Failure::BadResponse),
            }
        }
    }

    /// Write what rustls has to send, as far as the socket takes it now.
    fn flush(&mut self, idx: usize) -> Result<(), Failure> {
        let c = &mut self.conns[idx];
        let (Some(tls), Some(s)) = (c.tls.as_mut(), c.stream.as_mut()) else {
            return Ok(());
        };
        while tls.wants_write() {
            match tls.write_tls(s) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(Failure::Reset),
            }
        }
        Ok(())
    }

    /// Before closing a connection whose exchange completed: a close_notify, best
    /// effort, as browsers and wrk send one.
    pub(super) fn close_notify(&mut self, idx: usize) {
        let c = &mut self.conns[idx];
        if let (Some(tls), Some(s)) = (c.tls.as_mut(), c.stream.as_mut()) {
            tls.send_close_notify();
            let _ = tls.write_tls(s);
        }
    }

    /// A handshake failed with a rustls error: keep its message, count the failure.
    fn tls_failed(&mut self, idx: usize, e: rustls::Error, f: Failure) {
        self.note_failure(e);
        self.fail(idx, f);
    }

    /// Keep the first handshake failure's cause for the report.
    pub(super) fn note_failure(&mut self, why: impl Display) {
        if self.tally.tls.first_failure.is_none() {
            self.tally.tls.first_failure = Some(why.to_string());
        }
    }
}
