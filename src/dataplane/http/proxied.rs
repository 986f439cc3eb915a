//! The PROXY protocol on an HTTP connection: the bytes that came after a received
//! header (the first of the stream), and the header sent to a `send_proxy` service's
//! backends. A backend connection that carried a header speaks for this client only:
//! it is never pooled, but held by the connection for its next request to the same
//! backend, and closed with it.

use super::{BackendSock, HttpConn};
use crate::config::SendProxy;
use crate::dataplane::keys::Io;
use crate::dataplane::reactor::Reactor;
use crate::dataplane::tls::{Count, TlsSide};
use crate::dataplane::ShardCtx;
use crate::proxy;
use std::io::ErrorKind;
use std::net::SocketAddr;

/// A backend connection that carried a PROXY header for this client, idle between its
/// requests.
pub(super) struct Held<S> {
    sock: S,
    key: u32,
    addr: SocketAddr,
    version: SendProxy,
}

impl<S> HttpConn<S> {
    /// The stream's first bytes, read past a PROXY header: to the ClientHello peek,
    /// to rustls, or to the session, as if just received. False when TLS refuses them
    /// (the connection closes).
    pub fn preload(&mut self, early: &[u8], ctx: &ShardCtx) -> bool {
        if early.is_empty() {
            return true;
        }
        if let Some(buf) = self.sniff.as_mut() {
            buf.extend_from_slice(early);
            return true;
        }
        if let Some(tls) = self.tls.as_mut() {
            let count = Count {
                shard: &ctx.stats().tls,
                id: ctx.id,
            };
            return tls.feed(early, count).is_ok();
        }
        let _ = self.session.client_read(ctx.now_ms, |buf| {
            buf.extend_from_slice(early);
            Ok::<usize, ()>(early.len())
        });
        true
    }

    /// Keep `b`, a backend connection to `addr` that carried a header, for this
    /// client's next request.
    pub(super) fn hold<R: Reactor<Sock = S>>(
        &mut self,
        b: BackendSock<S>,
        addr: SocketAddr,
        version: SendProxy,
        io: &mut Io<R>,
    ) {
        self.drop_held(io);
        self.held = Some(Held {
            sock: b.sock,
            key: b.key,
            addr,
            version,
        });
    }

    /// Close the held connection, if any (the client leaves, or becomes a tunnel).
    pub fn drop_held<R: Reactor<Sock = S>>(&mut self, io: &mut Io<R>) {
        if let Some(h) = self.held.take() {
            io.close(h.key, h.sock, false);
        }
    }
}

/// The PROXY header for a new connection to a backend: the client's address `peer` (a
/// received header's, else the socket's) to the one it connected to (`local`, a
/// received header's, else the `client` socket's own); with v2, the server name of
/// its TLS hello as an authority TLV.
pub(super) fn preamble<R: Reactor>(
    version: SendProxy,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    client: &R::Sock,
    tls: Option<&TlsSide>,
    r: &R,
) -> Vec<u8> {
    let dst = local
        .or_else(|| r.local_addr(client).ok())
        .unwrap_or_else(|| proxy::unspecified(peer));
    let mut out = Vec::with_capacity(64);
    let sni = tls.and_then(|t| t.server_name());
    proxy::encode(version, peer, dst, sni, &mut out);
    out
}

/// The connection in `held` to `addr` that carried a `version` header, if it is still
/// open and silent (one the backend closed, or that holds bytes nobody asked for, is
/// closed, as the pool does). A held connection to another backend is closed: the
/// next one is opened for this request.
pub(super) fn take_held<R: Reactor>(
    held: &mut Option<Held<R::Sock>>,
    addr: SocketAddr,
    version: SendProxy,
    io: &mut Io<R>,
) -> Option<(R::Sock, u32)> {
    let h = held.take()?;
    let fits = h.addr == addr
        && h.version == version
        && matches!(io.r.peek(&h.sock), Err(e) if e.kind() == ErrorKind::WouldBlock);
    if fits {
        return Some((h.sock, h.key));
    }
    io.close(h.key, h.sock, false);
    None
}
