//! HTTP mode in the shard core: each connection's `HttpConn` is pumped on its
//! events, when it yielded, and when its deadline comes; after each pump the reactor
//! hears what the connection waits for and the heap its next deadline.

use super::tcp::TcpConn;
use super::{Conn, Shard};
use crate::dataplane::http::{After, HttpConn};
use crate::dataplane::keys::Io;
use crate::dataplane::reactor::Reactor;

impl<R: Reactor> Shard<R> {
    pub(super) fn pump_http(&mut self, idx: u32) {
        self.drive_http(idx, false);
    }

    pub(super) fn http_timer(&mut self, idx: u32) {
        self.drive_http(idx, true);
    }

    /// Pump the connection (`timers`: after checking its timers, its deadline came).
    fn drive_http(&mut self, idx: u32, timers: bool) {
        let Some(Conn::Http(c)) = &mut self.slots[idx as usize].conn else {
            return;
        };
        let mut io = Io {
            r: &mut self.io,
            keys: &mut self.keys,
            idx,
        };
        let after = if timers {
            c.timers(&self.ctx, &mut self.http, &mut io)
        } else {
            c.pump(&self.ctx, &mut self.http, &mut io)
        };
        self.after_http(idx, after);
    }

    /// Close the connection, or tell the reactor what it waits for and arm its next
    /// deadline.
    fn after_http(&mut self, idx: u32, after: After) {
        if !self.http.evicted.is_empty() {
            self.close_evicted();
        }
        match after {
            After::Close { reset } => return self.close(idx, reset),
            After::Tunnel => return self.upgrade(idx),
            After::Passthrough { service } => return self.pass_through(idx, service),
            After::Yield => self.yielded(idx),
            After::Continue => {}
        }
        let Some(Conn::Http(c)) = &self.slots[idx as usize].conn else {
            return;
        };
        c.wants(&mut self.io);
        let at = c.deadline(&self.ctx);
        self.arm(idx, at);
    }

    /// An HTTP connection became a tunnel: the same slot (and socket keys) now holds
    /// a TCP relay, which moves the bytes from here on.
    fn upgrade(&mut self, idx: u32) {
        let slot = &mut self.slots[idx as usize];
        if !matches!(&slot.conn, Some(Conn::Http(c)) if c.is_tunnel()) {
            return self.close(idx, true);
        }
        let Some(Conn::Http(mut c)) = slot.conn.take() else {
            return;
        };
        c.drop_held(&mut Io {
            r: &mut self.io,
            keys: &mut self.keys,
            idx,
        });
        let u = c.into_tunnel(&self.ctx, &mut self.http);
        slot.conn = Some(Conn::Tcp(TcpConn::upgraded(u)));
        self.tcp_pump_both(idx);
    }

    /// A TLS connection of `[https] listen` whose ClientHello names a server of the TCP
    /// service at `service`: the same slot now holds that service's relay, the hello
    /// owed to the backend it connects.
    fn pass_through(&mut self, idx: u32, service: usize) {
        let slot = &mut self.slots[idx as usize];
        let svc = self.ctx.snapshot.services.get(service).cloned();
        let (Some(svc), Some(Conn::Http(c))) = (svc, slot.conn.take()) else {
            return self.close(idx, true);
        };
        let (peer, local) = (c.peer(), c.local);
        let (client, ckey, hello, eof) = c.into_passthrough();
        let mut link = self.ctx.passthrough(&svc, peer);
        link.local = local;
        let relay = TcpConn::with_pending(link, client, ckey, hello, eof);
        slot.conn = Some(Conn::Tcp(relay));
        self.tcp_connect_next(idx);
    }

    /// The connection left the slab: its backend socket and counters, then its client.
    pub(super) fn http_closed(&mut self, mut c: HttpConn<R::Sock>, reset: bool) {
        let mut io = Io {
            r: &mut self.io,
            keys: &mut self.keys,
            idx: u32::MAX,
        };
        c.close(&self.ctx, &mut io);
        self.keys.free(c.ckey);
        self.io.close(c.client, reset);
        self.ctx.stats().connections.dec();
        if !self.http.evicted.is_empty() {
            self.close_evicted();
        }
    }
}
