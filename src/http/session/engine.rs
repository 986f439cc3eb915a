//! The session's engine: client input through the head parser and body framing, backend
//! input through the response parser, and the bookkeeping at the end of an exchange.

use super::{release, Finished, Phase, Session};
use crate::http::body::{Body, BodyError, Output};
use crate::http::head::{self, BodyKind, HeadError, Method};

impl Session {
    /// End states reached by flushing: a closing connection whose client left, a tunnel
    /// finished both ways.
    pub(super) fn settle(&mut self) {
        let flushed = self.client_output().is_empty();
        match self.phase {
            Phase::Closing if flushed && self.client_eof => self.phase = Phase::Closed,
            // The client's FIN came between requests: it closes once its last response
            // is out.
            Phase::Head if flushed && self.client_eof && self.p.input.is_empty() => {
                self.phase = Phase::Closed
            }
            Phase::Tunnel
                if flushed
                    && self.backend_eof
                    && self.fin_to_backend
                    && self.backend_output().is_empty() =>
            {
                self.phase = Phase::Closed
            }
            _ => {}
        }
    }

    /// Process client input as far as the phase allows.
    pub(super) fn advance(&mut self, now_ms: u64) {
        match self.phase {
            Phase::Head => {
                if self.p.input.is_empty() {
                    return;
                }
                let p = &mut *self.p;
                match head::parse_request(&p.input, self.limits.max_header_bytes, &mut p.req) {
                    // The client sent its FIN: this head can never be completed; the
                    // connection closes once what came before is written.
                    Ok(false) if self.client_eof => {
                        self.p.input.clear();
                        self.settle();
                    }
                    Ok(false) => {}
                    Ok(true) => self.phase = Phase::Route,
                    Err(e) => self.bad_request(e, now_ms),
                }
            }
            Phase::Exchange => self.pump_request_body(now_ms),
            Phase::Tunnel => {
                let p = &mut *self.p;
                p.to_backend.extend_from_slice(&p.input);
                p.input.clear();
            }
            Phase::Route | Phase::Closing | Phase::Closed => {}
        }
    }

    pub(super) fn bad_request(&mut self, e: HeadError, now_ms: u64) {
        if let HeadError::Bad(why) = e {
            tracing::debug!(why, "bad request");
        }
        self.respond(e.status(), now_ms);
    }

    pub(super) fn pump_request_body(&mut self, now_ms: u64) {
        if self.p.req_body.done() {
            return;
        }
        let p = &mut *self.p;
        match p.req_body.feed(&p.input, &mut p.to_backend) {
            Ok(used) => {
                self.p.input.drain(..used);
                if self.p.input.is_empty() {
                    release(&mut self.p.input);
                }
            }
            Err(e) => return self.body_error(e, now_ms),
        }
        if self.p.req_body.done() {
            self.since_ms = now_ms; // the response wait starts with the whole request sent
            if self.resp_started && self.p.resp_body.done() {
                self.complete(now_ms);
            }
        }
    }

    pub(super) fn body_error(&mut self, e: BodyError, now_ms: u64) {
        tracing::debug!(error = %e, "bad request body");
        if self.resp_bytes {
            self.cut_short = true;
            self.phase = Phase::Closed;
        } else {
            self.respond(400, now_ms);
        }
    }

    /// Process backend input: response heads (interim ones relayed), then the body.
    pub(super) fn advance_response(&mut self, now_ms: u64) {
        while !self.resp_started && self.phase == Phase::Exchange {
            let max = self.limits.max_header_bytes.max(16 * 1024);
            let p = &mut *self.p;
            match head::parse_response(&p.from_backend, max, p.req.method, &mut p.resp) {
                Ok(false) => return,
                Err(_) => return self.backend_failed(now_ms),
                Ok(true) => {}
            }
            let status = self.p.resp.status;
            let tunnel = (status == 101 && self.p.req.upgrade)
                || (self.p.req.method == Method::Connect && (200..300).contains(&status));
            if status == 101 && !tunnel {
                return self.backend_failed(now_ms);
            }
            if (100..200).contains(&status) && !tunnel {
                if self.p.req.minor == 1 {
                    self.write_response_head(true);
                }
                let n = self.p.resp.len;
                self.p.from_backend.drain(..n);
                continue;
            }
            self.start_response(tunnel, now_ms);
        }
        if self.phase == Phase::Exchange && self.p.resp_body.done() {
            self.complete(now_ms);
        }
    }

    /// A final response head is in `from_backend`: relay it and start its body.
    pub(super) fn start_response(&mut self, tunnel: bool, now_ms: u64) {
        self.resp_started = true;
        if self.replayable {
            self.replayable = false;
            if self.p.backend_sent == self.p.to_backend.len() {
                self.p.to_backend.clear();
                self.p.backend_sent = 0;
            }
        }
        let old_client = self.p.req.minor == 0;
        let output = if self.p.resp.body == BodyKind::Chunked && old_client {
            Output::Plain
        } else {
            Output::Chunked
        };
        self.client_keep &= !(self.client_eof && self.p.input.is_empty())
            && self.p.resp.body != BodyKind::Close
            && output == Output::Chunked
            && !tunnel;
        let head_at = self.p.to_client.len();
        self.write_response_head(tunnel);
        let n = self.p.resp.len;
        self.p.from_backend.drain(..n);
        if tunnel {
            self.phase = Phase::Tunnel;
            let p = &mut *self.p;
            p.to_client.extend_from_slice(&p.from_backend);
            p.from_backend.clear();
            p.to_backend.extend_from_slice(&p.input);
            p.input.clear();
            return;
        }
        let p = &mut *self.p;
        p.resp_body = Body::new(p.resp.body, output);
        match p.resp_body.feed(&p.from_backend, &mut p.to_client) {
            Ok(used) if used < self.p.from_backend.len() => self.p.resp.keep_alive = false,
            Ok(_) => {}
            Err(_) => {
                // Malformed framing that came with the head: nothing of this response
                // has left yet, so the client gets a 502 instead.
                self.p.to_client.truncate(head_at);
                self.p.from_backend.clear();
                self.resp_started = false;
                return self.backend_failed(now_ms);
            }
        }
        self.p.from_backend.clear();
    }

    /// The backend failed: 502 before any response was relayed, else cut the client off.
    pub(super) fn backend_failed(&mut self, now_ms: u64) {
        if self.resp_started {
            self.finished = Some(Finished {
                status: self.p.resp.status,
                reusable: false,
            });
            self.cut(now_ms);
        } else {
            self.respond(502, now_ms);
        }
    }

    /// The response in flight cannot be completed: the connection ends — once what the
    /// client is owed from before is written (earlier responses, pipelined, that a
    /// slow client has not taken yet; the start of this one).
    pub(super) fn cut(&mut self, now_ms: u64) {
        self.cut_short = true;
        if self.client_output().is_empty() {
            self.phase = Phase::Closed;
            return;
        }
        // Nothing more is read from the client: it closes as soon as that is out.
        self.phase = Phase::Closing;
        self.graceful = true;
        self.since_ms = now_ms;
        self.p.input.clear();
        self.p.to_backend.clear();
        self.p.backend_sent = 0;
        self.replayable = false;
    }

    pub(super) fn finish_with(&mut self, status: u16, now_ms: u64) {
        self.served += 1;
        self.finished = Some(Finished {
            status,
            reusable: false,
        });
        self.phase = Phase::Closing;
        self.since_ms = now_ms;
        self.p.input.clear();
        self.p.to_backend.clear();
        self.p.backend_sent = 0;
        self.replayable = false;
        self.settle();
    }

    /// Request and response both complete.
    pub(super) fn complete(&mut self, now_ms: u64) {
        self.served += 1;
        // A backend may answer without reading a request body; whatever it left unread
        // would be parsed as the next request on the connection, another client's
        // (request hijacking). A HEAD response is where backends most often write a
        // body anyway, perhaps late, past any check at reuse. Neither connection is
        // handed to another request.
        let reusable = self.p.resp.keep_alive
            && self.p.req.body == BodyKind::None
            && self.p.req.method != Method::Head
            && self.p.req_body.done()
            && self.p.from_backend.is_empty()
            && !self.backend_eof
            && self.backend_output().is_empty();
        self.finished = Some(Finished {
            status: self.p.resp.status,
            reusable,
        });
        release(&mut self.p.to_backend);
        self.p.backend_sent = 0;
        release(&mut self.p.from_backend);
        self.resp_started = false;
        self.resp_bytes = false;
        self.backend_eof = false;
        self.replayable = false;
        self.p.pending_cookie.clear();
        self.since_ms = now_ms;
        let more = !self.client_eof || !self.p.input.is_empty();
        if self.client_keep && self.p.req_body.done() && more {
            self.phase = Phase::Head;
            self.advance(now_ms); // a pipelined request may be waiting
        } else {
            self.graceful = self.p.req_body.done() && self.p.input.is_empty();
            self.phase = Phase::Closing;
            self.p.input.clear();
            self.settle();
        }
    }
}
