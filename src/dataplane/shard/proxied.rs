//! The PROXY protocol on `accept_proxy` listeners, in the shard core: a connection
//! from a trusted source is admitted as usual, then waits in its slot, read by no one
//! else, until its header is whole (the one deadline heap bounds the wait by
//! `[http] header_timeout_ms`). The header's source becomes the connection's client
//! address; the bytes read past the header are the stream's first and go, untouched,
//! to the relay, the HTTP session, rustls or the ClientHello peek. Anything else —
//! an untrusted source, a header that does not parse, the client leaving, the timeout
//! — closes the connection, counted by reason.

use super::{Conn, Shard};
use crate::config::{AcceptProxy, SendProxy};
use crate::dataplane::link::Link;
use crate::dataplane::reactor::{Reactor, Want};
use crate::dataplane::tls::TlsSide;
use crate::proxy::{self, Command, Parsed, Version};
use crate::snapshot::{Front, Listeners, Snapshot};
use crate::stats::proxy::ProxyFailure;
use crate::tls::hello::{self, Peek};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;

/// Reads per readiness event: a header arrives in a few segments at most; a sender
/// that dribbles it byte by byte waits for the next event (or the timeout).
const READS: usize = 8;
/// A header buffer grown past this is not kept for the next connection.
const KEEP_BYTES: usize = 4096;

/// What a connection was admitted as, before its first byte is read.
pub(super) enum Admitted {
    /// A TCP service's relay.
    Tcp(Link),
    /// An HTTP connection (clear or TLS) through `front`.
    Http {
        listeners: Arc<Listeners>,
        tls: Option<Box<TlsSide>>,
        front: Front,
    },
}

/// A client socket and whom it is from.
pub(super) struct Accepted<S> {
    pub sock: S,
    pub key: u32,
    pub peer: SocketAddr,
    /// The address it connected to, when a PROXY header said.
    pub local: Option<SocketAddr>,
    /// The reactor reported the client's FIN (or a failure) already.
    pub hup: bool,
}

/// A connection whose PROXY header is not whole yet.
pub(super) struct ProxyWait<S> {
    client: S,
    ckey: u32,
    peer: SocketAddr,
    admitted: Admitted,
    /// The bytes so far (the shard's header buffer, lent while incomplete).
    buf: Vec<u8>,
    deadline_ms: u64,
    /// The reactor reported the client's FIN already.
    pub(super) hup: bool,
}

/// Why a connection from `peer`, outside `proxy_trusted`, is refused: `Closed` when
/// the reactor could not read its address any more (the unspecified one), else
/// `Untrusted`.
fn refused_source(peer: SocketAddr) -> ProxyFailure {
    if peer.ip().is_unspecified() {
        ProxyFailure::Closed
    } else {
        ProxyFailure::Untrusted
    }
}

/// The PROXY settings of the listener behind `front`, when it accepts the protocol.
pub(super) fn accepts<'a>(snap: &'a Snapshot, front: &'a Front) -> Option<&'a AcceptProxy> {
    let a = match front {
        Front::Service(s) => &s.config.proxy.accept,
        Front::Http => &snap.http.proxy,
        Front::Https => &snap.https.as_ref()?.proxy,
    };
    a.enabled.then_some(a)
}

impl<R: Reactor> Shard<R> {
    /// A source not in `proxy_trusted`: closed before it is admitted, counted. A
    /// client gone before its address could be read (a reactor reports it under the
    /// unspecified address, which no peer has) is counted as `closed`, not as an
    /// untrusted source: it is what a front balancer's quick connect-and-reset check
    /// looks like.
    pub(super) fn untrusted(&mut self, sock: R::Sock, peer: SocketAddr) {
        let reason = refused_source(peer);
        self.ctx.stats().proxy.failure(reason);
        if reason == ProxyFailure::Untrusted {
            tracing::debug!(client = %peer, "PROXY header from an untrusted source: closed");
        }
        self.io.close(sock, false);
    }

    /// Connection `idx`, admitted, waits for its header.
    pub(super) fn await_header(
        &mut self,
        idx: u32,
        sock: R::Sock,
        key: u32,
        peer: SocketAddr,
        admitted: Admitted,
        watched: bool,
    ) {
        let deadline_ms = self.ctx.now_ms + self.ctx.snapshot.http.limits.header_timeout_ms;
        self.slots[idx as usize].conn = Some(Conn::Proxy(ProxyWait {
            client: sock,
            ckey: key,
            peer,
            admitted,
            buf: Vec::new(),
            deadline_ms,
            hup: false,
        }));
        if !watched {
            return self.close(idx, false);
        }
        self.arm(idx, deadline_ms);
        self.read_header(idx);
    }

    /// Read what the client sent so far: no more than the header can still take (the
    /// longest v1 line, or exactly the rest of a v2 header once its length is known).
    pub(super) fn read_header(&mut self, idx: u32) {
        let Some(Conn::Proxy(p)) = &mut self.slots[idx as usize].conn else {
            return;
        };
        if p.buf.capacity() == 0 {
            p.buf = std::mem::take(&mut self.header_buf);
        }
        for _ in 0..READS {
            let want = proxy::wanted(&p.buf);
            match self.io.recv(&p.client, &mut p.buf, want) {
                Ok(0) => return self.header_failed(idx, ProxyFailure::Closed),
                Ok(_) => match proxy::parse(&p.buf) {
                    Parsed::NeedMore => continue,
                    Parsed::Header(h) => return self.header_done(idx, h),
                    Parsed::Error(e) => return self.header_failed(idx, e.into()),
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.header_failed(idx, ProxyFailure::Closed),
            }
        }
        // Incomplete: the buffer stays with the connection until the header is whole.
        self.io.want(
            &p.client,
            Want {
                read: true,
                ..Want::default()
            },
        );
    }

    /// The header is whole: the connection starts as admitted, from the header's
    /// client, with the bytes after the header as its first.
    fn header_done(&mut self, idx: u32, h: proxy::Header) {
        let Some(Conn::Proxy(p)) = self.slots[idx as usize].conn.take() else {
            return;
        };
        let stats = &self.ctx.stats().proxy;
        stats.headers[usize::from(h.version == Version::V2)].inc();
        if h.command == Command::Local {
            stats.local.inc();
        }
        let local = match (h.command, h.addrs) {
            (Command::Proxy, Some((_, dst))) => Some(dst),
            _ => None,
        };
        let peer = h.client(p.peer);
        tracing::trace!(socket = %p.peer, client = %peer, "PROXY header");
        let accepted = super::Accepted {
            sock: p.client,
            key: p.ckey,
            peer,
            local,
            hup: p.hup,
        };
        let mut buf = p.buf;
        // Armed for the header: the connection arms its own from here on.
        self.deadlines.disarm(idx);
        self.begin(idx, accepted, p.admitted, &buf[h.consumed..], true);
        if buf.capacity() <= KEEP_BYTES {
            buf.clear();
            self.header_buf = buf;
        }
    }

    fn header_failed(&mut self, idx: u32, why: ProxyFailure) {
        self.ctx.stats().proxy.failure(why);
        if let Some(Conn::Proxy(p)) = &self.slots[idx as usize].conn {
            tracing::debug!(client = %p.peer, reason = why.name(), "PROXY header refused: closed");
        }
        self.close(idx, false);
    }

    pub(super) fn header_timer(&mut self, idx: u32) {
        let Some(Conn::Proxy(p)) = &self.slots[idx as usize].conn else {
            return;
        };
        if self.ctx.now_ms >= p.deadline_ms {
            return self.header_failed(idx, ProxyFailure::Timeout);
        }
        let at = p.deadline_ms;
        self.arm(idx, at);
    }

    /// A relay of a `send_proxy` service just connected its backend: the header goes
    /// first, before any client byte (a passed-through ClientHello's too). The client's
    /// address is the link's (a received header's, else the socket's), the destination
    /// the one it connected to; v2 names the hello's server, when there is one, in an
    /// authority TLV.
    pub(super) fn send_header(&mut self, idx: u32) {
        let Some(Conn::Tcp(c)) = &mut self.slots[idx as usize].conn else {
            return;
        };
        let Some(version) = c.link.service.config.proxy.send else {
            return;
        };
        let dst = c
            .link
            .local
            .or_else(|| self.io.local_addr(&c.client).ok())
            .unwrap_or_else(|| proxy::unspecified(c.link.client));
        let mut header = std::mem::take(&mut self.header_buf);
        header.clear();
        // v2 names a passed-through hello's server.
        let mut scratch = Vec::new();
        let passthrough = !c.link.service.config.tls.sni.is_empty();
        let sni = match version {
            SendProxy::V2 if passthrough => match hello::peek(c.up.pending(), &mut scratch) {
                Peek::Hello(h) => h.server_name,
                _ => None,
            },
            _ => None,
        };
        proxy::encode(version, c.link.client, dst, sni, &mut header);
        let bufs = &mut self.bufs;
        c.up.prepend(&header, || bufs.pop().unwrap_or_default());
        header.clear();
        self.header_buf = header;
    }

    /// The waiting connection left the slab: its admission is undone.
    pub(super) fn header_closed(&mut self, mut p: ProxyWait<R::Sock>, reset: bool) {
        if self.header_buf.capacity() == 0 && p.buf.capacity() <= KEEP_BYTES {
            p.buf.clear();
            self.header_buf = std::mem::take(&mut p.buf);
        }
        match &p.admitted {
            Admitted::Tcp(link) => self.ctx.closed(link),
            Admitted::Http { .. } => self.ctx.stats().connections.dec(),
        }
        self.keys.free(p.ckey);
        self.io.close(p.client, reset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// io_uring reports a client reset before its address was read under the
    /// unspecified address (a front balancer's connect-and-reset check looks like
    /// that): counted as a client that left, not as an untrusted source.
    #[test]
    fn a_client_gone_before_its_address_is_not_untrusted() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(refused_source(at("0.0.0.0:0")), ProxyFailure::Closed);
        assert_eq!(refused_source(at("[::]:0")), ProxyFailure::Closed);
        assert_eq!(
            refused_source(at("127.0.0.1:4000")),
            ProxyFailure::Untrusted
        );
        assert_eq!(
            refused_source(at("[2001:db8::1]:4000")),
            ProxyFailure::Untrusted
        );
    }
}
