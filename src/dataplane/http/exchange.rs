//! One exchange's life in the driver: routing the parsed request to a service, picking
//! its backend (sticky cookie, hash key, selector), attaching a pooled or new
//! connection, connect completion and failure, and the end of the exchange (counters,
//! latency, the connection back to the pool).

use super::{is_exhaustion, BackendSock, Exchange, HttpConn, HttpShard};
use crate::balance::{hash, Attempt};
use crate::config::HashKey;
use crate::dataplane::keys::Io;
use crate::dataplane::reactor::{Reactor, Want};
use crate::dataplane::ShardCtx;
use crate::http::{Finished, Forward, Phase};
use crate::snapshot::Front;
use std::sync::Arc;
use std::time::Instant;

impl<S> HttpConn<S> {
    /// Finish exchanges the session completed and route requests it parsed.
    pub(super) fn settle<R: Reactor<Sock = S>>(
        &mut self,
        ctx: &ShardCtx,
        shard: &mut HttpShard<S>,
        io: &mut Io<R>,
    ) {
        for _ in 0..2 {
            if let Some(f) = self.session.take_finished() {
                self.end_exchange(f, ctx, shard, io);
            }
            if self.session.phase() == Phase::Route && self.exchange.is_none() {
                self.route(ctx, shard, io);
            }
        }
    }

    pub(super) fn end_exchange<R: Reactor<Sock = S>>(
        &mut self,
        f: Finished,
        ctx: &ShardCtx,
        shard: &mut HttpShard<S>,
        io: &mut Io<R>,
    ) {
        let Some(ex) = self.exchange.take() else {
            // Answered before routing (400, 408, 404…): counted on the port's service,
            // or on the shard for the shared listener.
            match self.front(&ctx.snapshot) {
                Some(Front::Service(s)) => s.counters.shard(ctx.id).response(f.status),
                _ => {
                    let class = usize::from(f.status / 100);
                    let k = if (1..=5).contains(&class) { class } else { 0 };
                    ctx.stats().http_front_responses[k].inc();
                }
            }
            return;
        };
        // A response that ended may still wait to be written: its bytes are counted
        // now, while its exchange is known.
        let pending = self.session.client_output().len();
        count_bytes(ctx, &ex, false, pending.saturating_sub(self.out_counted));
        self.out_counted = pending;
        let c = ex.service.counters.shard(ctx.id);
        c.active.dec();
        c.response(f.status);
        let us = ex.started.elapsed().as_micros() as u64;
        c.response_latency.record(us);
        shard.latency.record(&ex.service.counters, us);
        let backend = &ex.service.backends[ex.backend];
        if ex.counted {
            backend.counters.shard(ctx.id).active.dec();
        }
        if let Some(b) = self.backend.take() {
            let keep = f.reusable && b.connected && ctx.draining_since_ms.is_none();
            if let Some(version) = b.proxied.filter(|_| keep && b.preamble.is_empty()) {
                // It speaks for this client: held for its next request, never pooled.
                self.hold(b, backend.addr, version, io);
            } else if keep && b.proxied.is_none() {
                io.pooled(b.key, backend.addr, &b.sock);
                shard.put(backend.addr, b.sock, b.key, ctx.now_ms);
            } else {
                io.close(b.key, b.sock, false);
            }
        }
        self.ready.backend_read = false;
        self.ready.backend_write = false;
        self.ready.backend_hup = false;
    }

    /// Route the parsed request to a service, then to a backend.
    pub(super) fn route<R: Reactor<Sock = S>>(
        &mut self,
        ctx: &ShardCtx,
        shard: &mut HttpShard<S>,
        io: &mut Io<R>,
    ) {
        let now = ctx.now_ms;
        let snap = &ctx.snapshot;
        let service = match self.front(snap) {
            Some(Front::Service(s)) => s,
            Some(front @ (Front::Http | Front::Https)) => {
                // An ACME HTTP-01 validation, before routing: a GET (or HEAD) of a
                // pending token only; any other method is routed as usual.
                if matches!(front, Front::Http) && self.session.is_read() {
                    if let Some(answer) = snap.acme.http01(self.session.path()) {
                        return self.session.answer(&answer, now);
                    }
                }
                let found = snap
                    .http
                    .router
                    .route(self.session.host(), self.session.path());
                match found {
                    Some(i) => Arc::clone(&snap.services[i]),
                    None => return self.session.refuse(404, now),
                }
            }
            None => return self.session.refuse(503, now),
        };
        let opts = &service.config.http;
        // Over TLS already, the request is served (else the redirect would loop).
        if opts.redirect_to_https && self.tls.is_none() {
            let host = String::from_utf8_lossy(self.session.host()).into_owned();
            // The target as a backend would get it: path and query.
            let (lead, rest) = self.session.origin_form();
            let path = String::from_utf8_lossy(&[lead, rest].concat()).into_owned();
            // To sluice's own `[https] listen`, on its port when that is not 443.
            let port = snap
                .fronts
                .iter()
                .zip(&snap.listeners)
                .find(|(f, _)| matches!(f, Front::Https))
                .map(|(_, l)| l.local.port())
                .filter(|&p| p != 443)
                .map_or_else(String::new, |p| format!(":{p}"));
            service.counters.shard(ctx.id).response(301);
            return self
                .session
                .redirect(&format!("https://{host}{port}{path}"), now);
        }
        let c = service.counters.shard(ctx.id);
        c.accepted.inc();
        c.active.inc();
        let attempt = match service.config.hash {
            HashKey::Header => self.session.header(&opts.hash_name),
            HashKey::Cookie => self.session.cookie(&opts.hash_name),
            _ => None,
        }
        .map_or_else(Attempt::default, |v| {
            Attempt::hashed(hash::hash_bytes(hash::SEED_FLOW, v))
        });
        // A valid sticky cookie names a backend; it is used while that backend is up.
        let sticky = opts
            .sticky
            .then(|| self.session.cookie(&opts.sticky_cookie))
            .flatten()
            .and_then(parse_hex)
            .and_then(|id| service.by_sticky_id(id))
            .filter(|&i| !service.draining[i] && service.backends[i].is_up(now));
        let set_cookie = opts.sticky && sticky.is_none();
        self.exchange = Some(Exchange {
            service,
            backend: 0,
            attempt,
            started: Instant::now(),
            set_cookie,
            counted: false,
            replay: false,
            tries: 0,
        });
        self.connect_next(ctx, shard, io, sticky);
    }

    /// Attach the next backend (`first` when sticky) to the exchange: a pooled
    /// connection when one is idle, else a new connect. With none left: 503 when no
    /// backend was available at all, 502 after failed connects.
    pub(super) fn connect_next<R: Reactor<Sock = S>>(
        &mut self,
        ctx: &ShardCtx,
        shard: &mut HttpShard<S>,
        io: &mut Io<R>,
        first: Option<usize>,
    ) {
        let now = ctx.now_ms;
        let Some(ex) = self.exchange.as_mut() else {
            return;
        };
        let mut first = first;
        loop {
            let i = match first.take() {
                Some(i) => i,
                None => match ctx.pick_live(&ex.service, self.peer, &mut ex.attempt) {
                    Some(i) => {
                        // Chosen by the selector, not by a valid cookie (none, or its
                        // backend just failed): the response names the new backend.
                        ex.set_cookie |= ex.service.config.http.sticky;
                        i
                    }
                    None => {
                        ex.service.counters.shard(ctx.id).no_backend.inc();
                        let status = if ex.attempt.tries() == 0 { 503 } else { 502 };
                        self.session.refuse(status, now);
                        return;
                    }
                },
            };
            ex.backend = i;
            if ex.tries > 0 {
                ex.service.counters.shard(ctx.id).retries.inc();
            }
            ex.tries = ex.tries.saturating_add(1);
            let addr = ex.service.backends[i].addr;
            let bc = ex.service.backends[i].counters.shard(ctx.id);
            // A replayed request (its pooled connection failed) takes a new connection.
            let send_proxy = ex.service.config.proxy.send;
            let pooled = match send_proxy {
                _ if self.session.phase() != Phase::Route || ex.replay => None,
                Some(v) => super::proxied::take_held(&mut self.held, addr, v, io),
                None => shard.take(addr, io.r),
            };
            let (sock, key, connected) = match pooled {
                Some((s, key)) => {
                    bc.reused.inc();
                    (s, key, true)
                }
                None => match io.r.connect(addr) {
                    Ok(s) => {
                        let key = io.open(&s);
                        io.r.want(
                            &s,
                            Want {
                                write: true,
                                ..Want::default()
                            },
                        );
                        (s, key, false)
                    }
                    Err(e) if is_exhaustion(&e) => {
                        // This host ran out, not the backend: no down-mark; accepting
                        // pauses, as in TCP mode.
                        ctx.socket_failed(e.raw_os_error().unwrap_or(0));
                        self.session.refuse(503, now);
                        return;
                    }
                    Err(_) => {
                        bc.connect_errors.inc();
                        ctx.mark_down(&ex.service, i, false);
                        continue;
                    }
                },
            };
            return self.attach_backend(ctx, io, i, sock, key, connected);
        }
    }

    /// Backend `i`'s connection (`connected` when it came from a pool) becomes the
    /// exchange's: its PROXY header when new and the service sends one, its counters,
    /// and the request forwarded to it.
    fn attach_backend<R: Reactor<Sock = S>>(
        &mut self,
        ctx: &ShardCtx,
        io: &mut Io<R>,
        i: usize,
        sock: S,
        key: u32,
        connected: bool,
    ) {
        let now = ctx.now_ms;
        let Some(ex) = self.exchange.as_mut() else {
            return;
        };
        let send_proxy = ex.service.config.proxy.send;
        let bc = ex.service.backends[i].counters.shard(ctx.id);
        io.attach(key);
        // A new connection of a `send_proxy` service starts with its header.
        let preamble = match send_proxy.filter(|_| !connected) {
            Some(v) => super::proxied::preamble(
                v,
                self.peer,
                self.local,
                &self.client,
                self.tls.as_deref(),
                io.r,
            ),
            None => Vec::new(),
        };
        self.backend = Some(BackendSock {
            sock,
            key,
            connected,
            connect_deadline_ms: now + ctx.snapshot.server.connect_timeout_ms,
            picked: Instant::now(),
            proxied: send_proxy,
            preamble,
        });
        if connected {
            bc.connections.inc();
            bc.active.inc();
            ex.counted = true;
        }
        // Nothing can be read before the request is sent: wait for readiness.
        self.ready.backend_read = false;
        self.ready.backend_hup = false;
        self.ready.backend_write = connected;
        let id = ex
            .set_cookie
            .then(|| format!("{:016x}", ex.service.sticky_id(i)));
        let fwd = Forward {
            client_ip: self.peer.ip(),
            listen_port: self.local_port,
            https: self.tls.is_some(),
            set_cookie: id
                .as_deref()
                .map(|id| (ex.service.config.http.sticky_cookie.as_str(), id)),
            reused: connected,
        };
        if self.session.phase() == Phase::Route {
            self.session.attach(fwd, now);
        } else {
            self.session.retarget(fwd.set_cookie);
        }
    }

    /// A connect in progress became writable: connected, or failed.
    pub(super) fn finish_connect<R: Reactor<Sock = S>>(
        &mut self,
        ctx: &ShardCtx,
        shard: &mut HttpShard<S>,
        io: &mut Io<R>,
    ) {
        let Some(b) = self.backend.as_mut() else {
            return;
        };
        match io.r.connect_result(&b.sock) {
            Ok(true) => {}
            Ok(false) => {
                // A stale hint: the connect is still under way.
                self.ready.backend_write = false;
                return;
            }
            Err(_) => {
                self.connect_failed(ctx, false, io);
                self.connect_next(ctx, shard, io, None);
                return;
            }
        }
        b.connected = true;
        self.ready.backend_read = true;
        if let Some(ex) = self.exchange.as_mut() {
            let bc = ex.service.backends[ex.backend].counters.shard(ctx.id);
            bc.connections.inc();
            bc.active.inc();
            bc.connect_latency
                .record(b.picked.elapsed().as_micros() as u64);
            ex.counted = true;
        }
    }

    pub(super) fn connect_failed<R: Reactor<Sock = S>>(
        &mut self,
        ctx: &ShardCtx,
        timed_out: bool,
        io: &mut Io<R>,
    ) {
        if let Some(b) = self.backend.take() {
            io.close(b.key, b.sock, false);
        }
        self.ready.backend_read = false;
        self.ready.backend_write = false;
        self.ready.backend_hup = false;
        if let Some(ex) = &self.exchange {
            let bc = ex.service.backends[ex.backend].counters.shard(ctx.id);
            bc.connect_errors.inc();
            if timed_out {
                bc.connect_timeouts.inc();
            }
            tracing::debug!(backend = %ex.service.backends[ex.backend].addr, timed_out, "backend connect failed, marked down");
            ctx.mark_down(&ex.service, ex.backend, timed_out);
        }
    }

    pub(super) fn uncount_backend(&mut self, ctx: &ShardCtx) {
        if let Some(ex) = self.exchange.as_mut() {
            if ex.counted {
                ex.counted = false;
                ex.service.backends[ex.backend]
                    .counters
                    .shard(ctx.id)
                    .active
                    .dec();
            }
        }
    }
}

pub(super) fn count_bytes(ctx: &ShardCtx, ex: &Exchange, up: bool, n: usize) {
    let s = ex.service.counters.shard(ctx.id);
    let b = ex.service.backends[ex.backend].counters.shard(ctx.id);
    let n = n as u64;
    if up {
        s.bytes_in.add(n);
        b.bytes_in.add(n);
    } else {
        s.bytes_out.add(n);
        b.bytes_out.add(n);
    }
}

fn parse_hex(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(v).ok()?, 16).ok()
}
