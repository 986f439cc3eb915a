//! The client's side of an HTTP connection over TLS: ciphertext from the socket to
//! rustls, plaintext from rustls to the session, and back. The session cannot tell it
//! from a clear-text client but for `X-Forwarded-Proto: https`.

use super::{HttpConn, READ_BYTES};
use crate::dataplane::reactor::Reactor;
use crate::dataplane::tls::{Count, Pulled};
use crate::dataplane::ShardCtx;
use crate::tls::hello::{self, Peek, Worth, MAX_PEEK_BYTES};
use std::io::ErrorKind;

/// What the peek at a ClientHello decided.
pub(super) enum Sniffed {
    /// Not all of it has arrived.
    Wait,
    /// Pass the connection to the TCP service of `[https] listen`'s SNI routes at
    /// this index.
    Route(usize),
    /// Terminate TLS here (what was read is rustls's now).
    Terminate,
    /// The client left before its hello was complete.
    Close,
}

impl<S> HttpConn<S> {
    /// Read what the client sent through TLS; `Err(reset)` ends the connection (a
    /// failed handshake ends with rustls's alert and a FIN, not a reset).
    pub(super) fn read_tls_client<R: Reactor<Sock = S>>(
        &mut self,
        ctx: &ShardCtx,
        r: &mut R,
    ) -> Result<usize, bool> {
        let tls = self.tls.as_mut().expect("a TLS connection");
        let counters = Count {
            shard: &ctx.stats().tls,
            id: ctx.id,
        };
        // rustls stopped with bytes perhaps left in the socket (its budget, or its
        // buffer): that is progress, so the pump goes on (or yields) rather than wait
        // for a readiness event that, on io_uring, nothing would arm.
        let mut more = false;
        if self.ready.client_read {
            match tls.pull(r, &self.client, counters) {
                // After the client's FIN, reading goes on until the end is read.
                Ok(Pulled::Blocked) => self.ready.client_read = self.ready.client_hup,
                Ok(Pulled::Full) => more = true,
                Ok(Pulled::Eof) => self.ready.client_read = false,
                Err(why) => {
                    tracing::debug!(client = %self.peer, ?why, "TLS failed");
                    // The alert rustls queued, if the socket takes it; then a FIN.
                    let _ = tls.push(r, &self.client);
                    return Err(false);
                }
            }
        }
        let now = ctx.now_ms;
        let res = self
            .session
            .client_read(now, |buf| tls.plaintext(buf, READ_BYTES));
        match res {
            Ok(0) => {
                self.ready.client_read = false;
                self.session.client_closed();
                Ok(0)
            }
            Ok(n) => Ok(n.max(usize::from(more))),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(usize::from(more)),
            Err(_) => Err(true),
        }
    }

    /// Hand the session's output to rustls and send what rustls has (the handshake's
    /// messages, records, alerts).
    pub(super) fn write_tls_client<R: Reactor<Sock = S>>(
        &mut self,
        ctx: &ShardCtx,
        r: &mut R,
    ) -> Result<bool, ()> {
        let tls = self.tls.as_mut().expect("a TLS connection");
        // What rustls has taken stays in the session's output until it is sent.
        let out = self.session.client_output();
        debug_assert!(tls.unsent() <= out.len());
        let out = out.get(tls.unsent()..).unwrap_or_default();
        let taken = if out.is_empty() {
            0
        } else {
            tls.write_plain(out)
        };
        let mut progress = taken > 0;
        if self.ready.client_write && tls.pending() {
            match tls.push(r, &self.client) {
                Ok(all) => self.ready.client_write = all,
                Err(_) => return Err(()),
            }
            progress = true;
        }
        let sent = tls.sent();
        if sent > 0 {
            self.client_wrote(ctx, sent);
        }
        Ok(progress)
    }

    /// Over TLS, the FIN waits until `close_notify` and everything before it is sent;
    /// in clear text it may go at once. No `close_notify` after a response cut short:
    /// a client reading to the close must see the truncation.
    pub(super) fn tls_flushed<R: Reactor<Sock = S>>(&mut self, r: &mut R) -> bool {
        let Some(tls) = self.tls.as_mut() else {
            return true;
        };
        if !self.session.cut_short() {
            tls.close_notify();
        }
        if self.ready.client_write {
            match tls.push(r, &self.client) {
                Ok(all) => self.ready.client_write = all,
                // The client is gone: nothing more can reach it.
                Err(_) => return true,
            }
        }
        !tls.pending()
    }

    /// The session ended the connection (its client left between requests, or idled
    /// past the keep-alive timeout): over TLS, `close_notify` if the socket takes it
    /// now — the close does not wait for it.
    pub(super) fn tls_goodbye<R: Reactor<Sock = S>>(&mut self, r: &mut R) {
        if self.tls.is_some() && !self.shut_client {
            self.ready.client_write = true;
            let _ = self.tls_flushed(r);
        }
    }

    /// A handshake still under way when the connection's timers closed it.
    pub(super) fn tls_timed_out(&mut self, ctx: &ShardCtx) {
        if let Some(tls) = self.tls.as_mut().filter(|t| t.handshaking()) {
            tls.timed_out(Count {
                shard: &ctx.stats().tls,
                id: ctx.id,
            });
        }
    }
}

impl<S> HttpConn<S> {
    /// Read the start of the stream and peek at the ClientHello for its server name:
    /// a name an SNI route names is passed through, anything else is terminated here
    /// (a malformed hello or plain HTTP included: rustls then fails it, counted).
    pub(super) fn sniff_hello<R: Reactor<Sock = S>>(
        &mut self,
        ctx: &ShardCtx,
        r: &mut R,
    ) -> Sniffed {
        let buf = self.sniff.as_mut().expect("sniffing");
        let count = Count {
            shard: &ctx.stats().tls,
            id: ctx.id,
        };
        while self.ready.client_read && !self.sniff_eof && buf.len() < MAX_PEEK_BYTES {
            match r.recv(&self.client, buf, MAX_PEEK_BYTES - buf.len()) {
                // A FIN right behind a whole hello is a half-close, not a departure.
                Ok(0) => self.sniff_eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.ready.client_read = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // A reset: counted as `closed` when the connection closes.
                Err(_) => return Sniffed::Close,
            }
        }
        let routes = ctx.snapshot.https.as_ref().map(|h| &h.passthrough);
        // Reassembly room for a hello split over records (rare: no allocation else).
        let mut scratch = Vec::new();
        let decided = match hello::worth_a_peek(buf) {
            // A hello in that many records is left to rustls (which reads
            // incrementally), not routed by SNI (HAProxy routes only a hello whose
            // first record holds it whole).
            Worth::TooManyRecords => Some(Sniffed::Terminate),
            Worth::NotYet if buf.len() < MAX_PEEK_BYTES => None,
            Worth::Yes | Worth::NotYet => match hello::peek(buf, &mut scratch) {
                Peek::NeedMore if buf.len() < MAX_PEEK_BYTES => None,
                Peek::Hello(h) => Some(
                    h.server_name
                        .and_then(|name| routes?.route(name))
                        .map_or(Sniffed::Terminate, Sniffed::Route),
                ),
                _ => Some(Sniffed::Terminate),
            },
        };
        let Some(decided) = decided else {
            if self.sniff_eof {
                return Sniffed::Close;
            }
            return Sniffed::Wait;
        };
        if let Sniffed::Terminate = decided {
            let bytes = self.sniff.take().expect("sniffing");
            let tls = self.tls.as_mut().expect("a TLS connection");
            if tls.feed(&bytes, count).is_err() {
                let _ = tls.push(r, &self.client);
                return Sniffed::Close;
            }
            // The socket may hold more: reading goes on as if nothing was peeked.
            self.ready.client_read = true;
        }
        decided
    }

    /// The connection leaves HTTP for a TCP relay: its socket and key, the bytes read
    /// so far (the hello), owed to the backend, and whether the client's FIN came too.
    pub fn into_passthrough(mut self) -> (S, u32, Vec<u8>, bool) {
        let bytes = self.sniff.take().unwrap_or_default();
        (self.client, self.ckey, bytes, self.sniff_eof)
    }
}
