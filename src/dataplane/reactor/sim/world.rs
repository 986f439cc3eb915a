//! The world outside the shard: the network and the actors on it, advanced by the
//! reactor's `wait` — deliver what is due, let every actor act, and move the virtual
//! clock to the next thing that happens (or the core's timeout) when nothing is left
//! for the core.

use super::backend::HttpBackend;
use super::client::HttpClient;
use super::l4::{L4Backend, L4Client};
use super::net::{Net, SimSock};
use super::plan::{Scenario, HOLE};
use super::rng::Rng;
use crate::dataplane::reactor::Event;
use std::net::SocketAddr;

/// What the actors saw, for the oracle.
#[derive(Debug, Default)]
pub struct Records {
    pub failures: Vec<(u64, String)>,
    /// Per request id: how many times a backend got it whole.
    pub got: Vec<u32>,
    /// Per request id: when a backend had it whole (the last time).
    pub req_in_ms: Vec<Option<u64>>,
    /// Per request id: when its backend wrote the last byte of its response.
    pub resp_out_ms: Vec<Option<u64>>,
    pub l4: Vec<L4Rec>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct L4Rec {
    /// Backend connections that carried the stream.
    pub conns: u32,
    pub first_ms: Option<u64>,
    pub up: u64,
    pub eof: bool,
    pub reset: bool,
}

impl Records {
    pub fn fail(&mut self, at_ms: u64, msg: String) {
        self.failures.push((at_ms, msg));
    }
}

pub struct World {
    pub net: Net,
    pub sc: Scenario,
    pub clients: Vec<HttpClient>,
    pub backends: Vec<HttpBackend>,
    pub l4c: Vec<L4Client>,
    pub l4b: Vec<L4Backend>,
    pub rec: Records,
    rng: Rng,
}

impl World {
    /// `listen`: each service's name and the address its listener was bound to.
    pub fn new(sc: Scenario, listen: &[(String, SocketAddr)]) -> World {
        let root = Rng::new(sc.seed);
        let mut net = Net::new(sc.net, root.fork(1));
        let at = |name: &str| {
            listen
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, a)| *a)
                .expect("a listener per service")
        };
        for (_, addr) in listen {
            net.add_listener(*addr);
        }
        for (addr, policy) in sc.web.iter().chain(&sc.tcp) {
            net.add_backend(*addr, *policy);
        }
        let hole = super::net::ConnectPolicy {
            hole_pct: 100,
            ..Default::default()
        };
        net.add_backend(HOLE, hole);
        let clients = sc
            .clients
            .iter()
            .map(|c| HttpClient::new(c.clone(), at(if c.hole { "hole" } else { "web" })))
            .collect();
        let l4c = sc
            .l4
            .iter()
            .skip(1)
            .map(|p| L4Client::new(p.clone(), at(if p.hole { "tcphole" } else { "tcp" })))
            .collect();
        let rec = Records {
            got: vec![0; sc.reqs.len()],
            req_in_ms: vec![None; sc.reqs.len()],
            resp_out_ms: vec![None; sc.reqs.len()],
            l4: vec![L4Rec::default(); sc.l4.len()],
            ..Records::default()
        };
        World {
            backends: sc.web.iter().map(|(a, _)| HttpBackend::new(*a)).collect(),
            l4b: sc.tcp.iter().map(|(a, _)| L4Backend::new(*a)).collect(),
            net,
            clients,
            l4c,
            rec,
            rng: root.fork(2),
            sc,
        }
    }

    /// Every client has finished its script and seen its connection end.
    pub fn clients_done(&self) -> bool {
        self.clients.iter().all(|c| c.done) && self.l4c.iter().all(|c| c.done)
    }

    /// Deliver what is due now and let every actor act, until nothing more happens at
    /// this instant.
    fn step(&mut self) {
        for _ in 0..64 {
            self.net.deliver();
            for (addr, sock) in std::mem::take(&mut self.net.established) {
                if let Some(b) = self.backends.iter_mut().find(|b| b.addr == addr) {
                    b.accept(sock);
                } else if let Some(b) = self.l4b.iter_mut().find(|b| b.addr == addr) {
                    b.accept(sock);
                }
            }
            let reqs = &self.sc.reqs;
            for c in &mut self.clients {
                c.step(&mut self.net, reqs, &mut self.rec);
            }
            for b in &mut self.backends {
                b.step(&mut self.net, reqs, &mut self.rec);
            }
            for c in &mut self.l4c {
                c.step(&mut self.net, &mut self.rec);
            }
            for b in &mut self.l4b {
                b.step(&mut self.net, &self.sc.l4, &mut self.rec);
            }
            let now = self.net.now_ms;
            if !self.net.next_due().is_some_and(|t| t <= now) {
                return;
            }
        }
    }

    /// When an actor next acts of its own accord.
    fn wake_ms(&self) -> Option<u64> {
        let net = &self.net;
        let all = self
            .clients
            .iter()
            .map(|c| c.wake_ms(net))
            .chain(self.backends.iter().map(|b| b.wake_ms(net)))
            .chain(self.l4c.iter().map(|c| c.wake_ms(net)))
            .chain(self.l4b.iter().map(|b| b.wake_ms(net, &self.sc.l4)));
        all.flatten().min()
    }

    /// The reactor's wait: the world runs until the core has events, or for
    /// `timeout_ms` of virtual time.
    pub fn wait(&mut self, timeout_ms: u64, out: &mut Vec<Event<SimSock>>) {
        let deadline = self.net.now_ms.saturating_add(timeout_ms);
        // A loop turn takes time, now and then a millisecond.
        if self.net.now_ms < deadline && self.rng.chance(10) {
            self.net.now_ms += 1;
        }
        loop {
            self.step();
            if self.net.has_events() {
                self.net.events(out);
                break;
            }
            let now = self.net.now_ms;
            if now >= deadline {
                break;
            }
            let next = [self.net.next_due(), self.wake_ms(), Some(deadline)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(deadline);
            self.net.now_ms = next.clamp(now + 1, deadline);
        }
        self.net.trace.add(
            self.net.now_ms,
            false,
            super::trace::Tr::Wait {
                timeout_ms,
                events: out.len(),
            },
        );
    }
}
