//! A scripted HTTP client: sends its requests (pipelined or one at a time, fast or in
//! pieces, with a FIN, a stall or an abort where its script says), reads and checks
//! every response — whose id, status and body it must be — and notes when each thing
//! happened, for the oracle.

use super::framing::{take, Body, Chunk, Inbuf, Reader};
use super::net::{Net, SockId};
use super::plan::{ClientPlan, End, Method, ReqPlan, Stall, STRAY_BASE};
use super::rng::mismatch;
use super::world::Records;
use std::collections::VecDeque;
use std::net::SocketAddr;

/// What became of one request, as its client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Got {
    /// No response byte (yet).
    Nothing,
    /// Its own response, whole and byte-exact.
    Exact,
    /// A response of sluice's own (no id): this status.
    Own(u16),
    /// The connection ended after this many bytes of its response.
    Cut(usize),
}

/// When things happened to one request, in virtual ms.
#[derive(Debug, Clone, Copy, Default)]
pub struct Times {
    pub first_sent: Option<u64>,
    pub head_sent: Option<u64>,
    pub last_sent: Option<u64>,
    pub answered: Option<u64>,
}

/// The response being read.
struct Resp {
    /// Its id, when it carries one (else sluice's own).
    id: Option<u64>,
    status: u16,
    close: bool,
    rd: Reader,
    bytes: usize,
}

pub struct HttpClient {
    pub plan: ClientPlan,
    listener: SocketAddr,
    pub sock: Option<SockId>,
    out: Vec<u8>,
    out_off: usize,
    /// Requests in `out`: (index, start, end of head, end).
    out_ends: VecDeque<(usize, usize, usize, usize)>,
    queued: usize,
    next_send_ms: u64,
    next_read_ms: u64,
    inbuf: Inbuf,
    resp: Option<Resp>,
    /// Index of the request whose response comes next.
    pub cur: usize,
    pub got: Vec<Got>,
    pub times: Vec<Times>,
    /// A response said `Connection: close` (the last it gets).
    pub closing: bool,
    /// The index of that response.
    pub close_after: Option<usize>,
    pub fin_sent_ms: Option<u64>,
    /// Its script is over: it waits only for sluice to close.
    pub script_done_ms: Option<u64>,
    /// Sluice's FIN (or RST, `reset`) arrived.
    pub closed_ms: Option<u64>,
    pub reset: bool,
    pub aborted: bool,
    pub done: bool,
}

impl HttpClient {
    pub fn new(plan: ClientPlan, listener: SocketAddr) -> HttpClient {
        let n = plan.reqs.len();
        HttpClient {
            next_send_ms: plan.start_ms,
            plan,
            listener,
            sock: None,
            out: Vec::new(),
            out_off: 0,
            out_ends: VecDeque::new(),
            queued: 0,
            next_read_ms: 0,
            inbuf: Inbuf::default(),
            resp: None,
            cur: 0,
            got: vec![Got::Nothing; n],
            times: vec![Times::default(); n],
            closing: false,
            close_after: None,
            fin_sent_ms: None,
            script_done_ms: None,
            closed_ms: None,
            reset: false,
            aborted: false,
            done: false,
        }
    }

    /// When it next acts of its own accord (a pause ends); `None`: on news only.
    pub fn wake_ms(&self, net: &Net) -> Option<u64> {
        if self.done {
            return None;
        }
        let Some(s) = self.sock else {
            return Some(self.plan.start_ms);
        };
        let mut t = None;
        let writing = self.out_off < self.out.len() && net.free(s) > 0;
        if writing || self.wants_to_queue() {
            t = Some(self.next_send_ms);
        }
        if net.unread(s) > 0 {
            t = Some(t.map_or(self.next_read_ms, |x: u64| x.min(self.next_read_ms)));
        }
        t
    }

    fn wants_to_queue(&self) -> bool {
        let p = &self.plan;
        self.queued < p.reqs.len() && self.queued - self.cur < p.depth && !self.closing
    }

    pub fn step(&mut self, net: &mut Net, reqs: &[ReqPlan], rec: &mut Records) {
        if self.done {
            return;
        }
        let now = net.now_ms;
        let Some(s) = self.sock else {
            if now < self.plan.start_ms {
                return;
            }
            match net.dial(self.listener, self.plan.addr()) {
                Some(s) => self.sock = Some(s),
                None => {
                    rec.fail(now, format!("client {}: nothing listens", self.plan.idx));
                    self.done = true;
                    return;
                }
            }
            return self.step(net, reqs, rec);
        };
        self.send(net, s, reqs);
        self.read(net, s, reqs, rec);
        self.end(net, s);
    }

    fn send(&mut self, net: &mut Net, s: SockId, reqs: &[ReqPlan]) {
        let now = net.now_ms;
        while self.wants_to_queue() && now >= self.next_send_ms {
            let i = self.queued;
            // A request after one still unanswered goes out at once (pipelined); the
            // next one after an answer waits for the client's think time.
            let p = &reqs[self.plan.reqs[i] as usize];
            let mut bytes = p.bytes(reqs);
            let head = p.head_len(reqs);
            match p.stall {
                Some(Stall::Head(n)) => bytes.truncate(n.min(head - 1)),
                Some(Stall::Body(n)) => bytes.truncate(head + n),
                None => {}
            }
            if self.out_off == self.out.len() {
                self.out.clear();
                self.out_off = 0;
            }
            let start = self.out.len();
            self.out.extend_from_slice(&bytes);
            self.out_ends
                .push_back((i, start, start + head, self.out.len()));
            self.queued += 1;
            if p.stall.is_some() {
                break;
            }
        }
        while self.out_off < self.out.len()
            && now >= self.next_send_ms
            && self.fin_sent_ms.is_none()
            && net.free(s) > 0
        {
            let end = self
                .out_off
                .saturating_add(self.plan.send_piece)
                .min(self.out.len());
            let Ok(n) = net.send(s, &self.out[self.out_off..end], false) else {
                break;
            };
            for &(i, start, head, _) in self.out_ends.iter() {
                let t = &mut self.times[i];
                if start < self.out_off + n && t.first_sent.is_none() {
                    t.first_sent = Some(now);
                }
                if head <= self.out_off + n && t.head_sent.is_none() {
                    t.head_sent = Some(now);
                }
            }
            self.out_off += n;
            while let Some(&(i, _, _, e)) = self.out_ends.front() {
                if e > self.out_off {
                    break;
                }
                self.times[i].last_sent = Some(now);
                self.out_ends.pop_front();
                let last = i + 1 == self.plan.reqs.len();
                if last && self.plan.end == End::FinWithLast {
                    net.shutdown_together(s);
                    self.fin_sent_ms = Some(now);
                }
            }
            if self.plan.send_pause_ms > 0 {
                self.next_send_ms = now + self.plan.send_pause_ms;
                break;
            }
        }
    }

    fn read(&mut self, net: &mut Net, s: SockId, reqs: &[ReqPlan], rec: &mut Records) {
        let now = net.now_ms;
        if now >= self.next_read_ms && net.unread(s) > 0 {
            let _ = net.recv(s, self.inbuf.tail(), self.plan.read_piece);
            if self.plan.read_pause_ms > 0 {
                self.next_read_ms = now + self.plan.read_pause_ms;
            }
            self.parse(now, reqs, rec);
        }
        if net.unread(s) > 0 || self.closed_ms.is_some() {
            return;
        }
        if net.at_eof(s) || net.was_reset(s) {
            self.reset = net.was_reset(s);
            self.closed_ms = Some(now);
            self.on_close(now, reqs);
        }
    }

    /// Parse what arrived, as far as it goes.
    fn parse(&mut self, now: u64, reqs: &[ReqPlan], rec: &mut Records) {
        let who = self.plan.idx;
        loop {
            if self.resp.is_none() {
                if self.inbuf.is_empty() {
                    return;
                }
                if self.cur >= self.queued {
                    let what =
                        String::from_utf8_lossy(&self.inbuf.bytes()[..self.inbuf.len().min(80)]);
                    rec.fail(
                        now,
                        format!("client {who}: bytes nobody asked for: {what:?}"),
                    );
                    self.inbuf.clear();
                    return;
                }
                let Some(end) = self.inbuf.bytes().windows(4).position(|w| w == b"\r\n\r\n") else {
                    return;
                };
                if let Some(r) = self.head(end + 4, reqs, rec, now) {
                    self.resp = Some(r);
                }
                continue;
            }
            let id = self.plan.reqs[self.cur];
            let r = self.resp.as_mut().expect("a response");
            let taken = take(&mut r.rd, self.inbuf.bytes());
            if taken.bad {
                let rid = r.id;
                rec.fail(
                    now,
                    format!("client {who}: response {rid:?} to {id}: broken chunked framing"),
                );
                self.inbuf.clear();
                return;
            }
            if let (Some(rid), Some((off, bytes))) = (r.id, taken.data) {
                if let Some(at) = mismatch(rid, off, &self.inbuf.bytes()[bytes]) {
                    rec.fail(
                        now,
                        format!("client {who}: body of response {rid} differs at byte {at}"),
                    );
                }
            }
            self.inbuf.consume(taken.used);
            r.bytes += taken.used;
            if !taken.done {
                if taken.used == 0 {
                    return;
                }
                continue;
            }
            let r = self.resp.take().expect("a response");
            let p = &reqs[id as usize];
            let got = match r.id {
                Some(_) if r.status != p.resp.status => {
                    rec.fail(
                        now,
                        format!(
                            "client {who}: response {id}: status {} for {}",
                            r.status, p.resp.status
                        ),
                    );
                    Got::Exact
                }
                Some(_) if p.method != Method::Head && r.rd.got != p.resp.len as u64 => {
                    rec.fail(
                        now,
                        format!(
                            "client {who}: response {id}: {} body bytes for {}",
                            r.rd.got, p.resp.len
                        ),
                    );
                    Got::Exact
                }
                Some(_) => Got::Exact,
                None => Got::Own(r.status),
            };
            self.answered(now, got, r.close || r.id.is_none());
        }
    }

    /// The head of the next response (1xx heads are skipped); `None` when it is not a
    /// final one.
    fn head(&mut self, len: usize, reqs: &[ReqPlan], rec: &mut Records, now: u64) -> Option<Resp> {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut h = httparse::Response::new(&mut fields);
        let status = match h.parse(&self.inbuf.bytes()[..len]) {
            Ok(httparse::Status::Complete(_)) => h.code.unwrap_or(0),
            _ => {
                let what = String::from_utf8_lossy(&self.inbuf.bytes()[..len.min(120)]);
                rec.fail(
                    now,
                    format!(
                        "client {}: a response head that does not parse: {what:?}",
                        self.plan.idx
                    ),
                );
                self.inbuf.clear();
                return None;
            }
        };
        let mut r = Resp {
            id: None,
            status,
            close: false,
            rd: Reader::new(Body::Length(0)),
            bytes: len,
        };
        let mut length = None;
        let mut chunked = false;
        for f in h.headers.iter() {
            let v = std::str::from_utf8(f.value).unwrap_or("").trim();
            if f.name.eq_ignore_ascii_case("x-sim-id") {
                r.id = v.parse().ok();
            } else if f.name.eq_ignore_ascii_case("content-length") {
                length = v.parse::<u64>().ok();
            } else if f.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.eq_ignore_ascii_case("chunked");
            } else if f.name.eq_ignore_ascii_case("connection") {
                r.close = v.eq_ignore_ascii_case("close");
            }
        }
        self.inbuf.consume(len);
        if (100..200).contains(&status) {
            return None;
        }
        let id = self.plan.reqs[self.cur];
        if let Some(rid) = r.id.filter(|&rid| rid != id) {
            let whose = match reqs.get(rid as usize) {
                _ if rid >= STRAY_BASE => format!(
                    "bytes its backend wrote after the response to request {} (a second response, or a body after HEAD)",
                    rid - STRAY_BASE
                ),
                Some(p) if p.client == usize::MAX => format!("the answer to request {rid}, smuggled in a body"),
                Some(p) => format!("client {}'s response to request {rid}", p.client),
                None => format!("a response to no request ({rid})"),
            };
            rec.fail(
                now,
                format!(
                    "client {}: got {whose} (id {rid}) as the response to its request {id}",
                    self.plan.idx
                ),
            );
        }
        let head_only = r.id.is_some() && reqs[id as usize].method == Method::Head;
        r.rd.body = match (head_only, chunked, length) {
            (true, _, _) => Body::Length(0),
            (_, true, _) => Body::Chunked(Chunk::Size),
            (_, _, Some(n)) => Body::Length(n),
            _ => Body::UntilClose,
        };
        Some(r)
    }

    fn answered(&mut self, now: u64, got: Got, close: bool) {
        self.got[self.cur] = got;
        self.times[self.cur].answered = Some(now);
        if close && !self.closing {
            self.close_after = Some(self.cur);
        }
        self.cur += 1;
        self.closing |= close;
    }

    /// Sluice closed the connection (or reset it).
    fn on_close(&mut self, now: u64, reqs: &[ReqPlan]) {
        if let Some(r) = self.resp.take() {
            let id = self.plan.reqs[self.cur];
            // A body delimited by the close that ends short was cut: the client
            // cannot tell, the oracle can.
            let whole = matches!(r.rd.body, Body::UntilClose)
                && !self.reset
                && (r.id.is_none() || r.rd.got == reqs[id as usize].resp.len as u64);
            let got = match r.id {
                _ if !whole => Got::Cut(r.bytes),
                Some(_) => Got::Exact,
                None => Got::Own(r.status),
            };
            self.answered(now, got, true);
        } else if !self.inbuf.is_empty() && self.cur < self.got.len() {
            self.got[self.cur] = Got::Cut(self.inbuf.len());
        }
        self.script_done_ms.get_or_insert(now);
        self.done = true;
    }

    /// After the script's last response: FIN, wait, or nothing more to do.
    fn end(&mut self, net: &mut Net, s: SockId) {
        let now = net.now_ms;
        if self.done {
            if !net.is_closed(s) {
                net.close(s, false);
            }
            return;
        }
        if let End::Abort { after, reset } = self.plan.end {
            if self.cur >= after {
                self.aborted = true;
                self.script_done_ms = Some(now);
                self.done = true;
                net.close(s, reset);
                return;
            }
        }
        let all = self.cur == self.plan.reqs.len();
        if self.script_done_ms.is_none() && (all || self.closing) {
            self.script_done_ms = Some(now);
        }
        if all && self.plan.end == End::FinAfter && self.fin_sent_ms.is_none() {
            net.shutdown(s);
            self.fin_sent_ms = Some(now);
            self.script_done_ms = Some(now);
        }
    }
}
