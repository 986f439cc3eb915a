//! What a run will do, drawn from its seed before it starts: the timeouts, the
//! network's manners, the backends' connect policies, and every client's script —
//! each HTTP request with the response its backend will give (and how it will
//! misbehave), each L4 stream. Requests carry unique ids that backends echo, so the
//! oracle knows whose every byte is.

use super::net::{ConnectPolicy, NetParams, Readiness};
use super::rng::{extend_pattern, Rng};
use std::io::Write;
use std::net::SocketAddr;

/// Ids of responses nobody asked for (stray bytes, late HEAD bodies) start here.
pub const STRAY_BASE: u64 = 1 << 40;
/// Request bodies are pattern streams of their own, apart from response bodies.
pub const UP_STREAM: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    PostChunked,
}

impl Method {
    pub fn word(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post | Method::PostChunked => "POST",
        }
    }

    pub fn has_body(self) -> bool {
        matches!(self, Method::Post | Method::PostChunked)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length,
    Chunked,
    /// Delimited by the backend's close.
    Close,
}

/// What the backend does with its connection after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    Keep,
    /// FIN: in the segment of the response's last bytes, or `ms` later.
    Fin {
        together: bool,
        ms: u64,
    },
    /// RST: with the last bytes, or `ms` later.
    Reset {
        together: bool,
        ms: u64,
    },
    /// A complete response nobody asked for, in the segment of the last bytes.
    Stray,
    /// To a HEAD: a body anyway (itself a complete stray response), `ms` later.
    HeadBody {
        ms: u64,
    },
}

/// How the backend fails the exchange itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// No response until sluice gives up: 504 at `backend_timeout_ms`.
    Stall,
    /// The head and `n` body bytes, then silence: cut at `backend_timeout_ms`.
    StallMid(usize),
    /// `n` bytes of the response (0: none), then RST.
    ResetAfter(usize),
    /// Content-Length framing, `n` body bytes, then FIN.
    Truncate(usize),
    /// A status line that does not parse: 502.
    Garbage,
}

#[derive(Debug, Clone)]
pub struct RespPlan {
    pub status: u16,
    pub framing: Framing,
    pub len: usize,
    pub delay_ms: u64,
    /// A `100 Continue` first.
    pub interim: bool,
    /// Written `piece` bytes at a time, `pause_ms` apart.
    pub piece: usize,
    pub pause_ms: u64,
    pub chunk: usize,
    pub close_header: bool,
    /// Answered after the head, before the request body is read.
    pub early: bool,
    pub then: Then,
    pub fault: Fault,
}

/// A client that stops sending: 408 at `header_timeout_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// After this many bytes of the head.
    Head(usize),
    /// After the head and this many body bytes.
    Body(usize),
}

#[derive(Debug, Clone)]
pub struct ReqPlan {
    pub id: u64,
    /// The client actor sending it (`usize::MAX`: a request smuggled in a body).
    pub client: usize,
    pub method: Method,
    pub body_len: usize,
    pub chunk: usize,
    pub close: bool,
    pub stall: Option<Stall>,
    /// The body is the request with this id (sent to a backend that answers early
    /// and parses what follows the head as the next request).
    pub smuggle: Option<u64>,
    pub resp: RespPlan,
}

impl ReqPlan {
    /// The request as the client sends it.
    pub fn bytes(&self, plans: &[ReqPlan]) -> Vec<u8> {
        let mut v = Vec::with_capacity(128 + self.body_len);
        let _ = write!(
            v,
            "{} /r/{} HTTP/1.1\r\nHost: web\r\nX-Sim-Id: {}\r\n",
            self.method.word(),
            self.id,
            self.id
        );
        let body = match self.smuggle {
            Some(s) => plans[s as usize].bytes(plans),
            None => {
                let mut b = Vec::new();
                extend_pattern(&mut b, UP_STREAM + self.id, 0, self.body_len);
                b
            }
        };
        match self.method {
            Method::Post => {
                let _ = write!(v, "Content-Length: {}\r\n", body.len());
            }
            Method::PostChunked => v.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            _ => {}
        }
        if self.close {
            v.extend_from_slice(b"Connection: close\r\n");
        }
        v.extend_from_slice(b"\r\n");
        if self.method == Method::PostChunked {
            for c in body.chunks(self.chunk.max(1)) {
                let _ = write!(v, "{:x}\r\n", c.len());
                v.extend_from_slice(c);
                v.extend_from_slice(b"\r\n");
            }
            v.extend_from_slice(b"0\r\n\r\n");
        } else {
            v.extend_from_slice(&body);
        }
        v
    }

    /// Where the body starts in [`bytes`](Self::bytes).
    pub fn head_len(&self, plans: &[ReqPlan]) -> usize {
        let b = self.bytes(plans);
        b.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4
    }

    /// A request sluice could send again on a new connection.
    pub fn replayable(&self) -> bool {
        !self.method.has_body()
    }
}

/// The response for request `p` as the backend writes it, and where its body starts.
pub fn response_bytes(p: &ReqPlan) -> (Vec<u8>, usize) {
    let r = &p.resp;
    let mut v = Vec::with_capacity(128 + r.len);
    if r.interim {
        v.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    if r.fault == Fault::Garbage {
        v.extend_from_slice(b"HTTP/1.1 2x0 Garbage\r\n\r\n");
        let n = v.len();
        return (v, n);
    }
    let _ = write!(v, "HTTP/1.1 {} Sim\r\nX-Sim-Id: {}\r\n", r.status, p.id);
    match r.framing {
        Framing::Length => {
            let _ = write!(v, "Content-Length: {}\r\n", r.len);
        }
        Framing::Chunked => v.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::Close => {}
    }
    if r.close_header || r.framing == Framing::Close {
        v.extend_from_slice(b"Connection: close\r\n");
    }
    v.extend_from_slice(b"\r\n");
    let head = v.len();
    if p.method == Method::Head {
        return (v, head);
    }
    let mut body = Vec::new();
    extend_pattern(&mut body, p.id, 0, r.len);
    if r.framing == Framing::Chunked {
        for c in body.chunks(r.chunk.max(1)) {
            let _ = write!(v, "{:x}\r\n", c.len());
            v.extend_from_slice(c);
            v.extend_from_slice(b"\r\n");
        }
        v.extend_from_slice(b"0\r\n\r\n");
    } else {
        v.extend_from_slice(&body);
    }
    (v, head)
}

/// A complete response for id `id` that nobody asked for.
pub fn stray_bytes(id: u64) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 Stray\r\nX-Sim-Id: {}\r\nContent-Length: 5\r\n\r\nstray",
        STRAY_BASE + id
    )
    .into_bytes()
}

/// How an HTTP client's connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The last request says `Connection: close`.
    CloseHeader,
    /// The client's FIN leaves with its last request.
    FinWithLast,
    /// The client's FIN follows the last response.
    FinAfter,
    /// The client waits: sluice closes it at `keepalive_timeout_ms`.
    Idle,
    /// The client goes away (`reset`: with RST) once it has `after` responses.
    Abort { after: usize, reset: bool },
    /// The last request stalls (see [`Stall`]): 408.
    Stall,
}

#[derive(Debug, Clone)]
pub struct ClientPlan {
    pub idx: usize,
    /// To the service whose only backend never answers a connect.
    pub hole: bool,
    pub start_ms: u64,
    pub reqs: Vec<u64>,
    /// Requests sent ahead of their responses (1: one at a time).
    pub depth: usize,
    pub think_ms: u64,
    pub send_piece: usize,
    pub send_pause_ms: u64,
    pub read_piece: usize,
    pub read_pause_ms: u64,
    pub end: End,
}

impl ClientPlan {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((
            [10, 0, (self.idx / 250) as u8, (self.idx % 250) as u8 + 1],
            40_000,
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4End {
    /// Both sides send everything, then half-close.
    HalfClose,
    /// The client resets after sending `n` bytes.
    ClientReset(usize),
    /// The backend resets after sending `n` bytes.
    BackendReset(usize),
    /// The client sends its preamble, then nothing: closed at `idle_timeout_ms`.
    Idle,
}

#[derive(Debug, Clone)]
pub struct L4Plan {
    pub id: u64,
    pub hole: bool,
    pub start_ms: u64,
    pub up: usize,
    /// The backend echoes what it gets (else sends `down` bytes of its own).
    pub echo: bool,
    pub down: usize,
    pub piece: usize,
    pub pause_ms: u64,
    pub read_piece: usize,
    pub read_pause_ms: u64,
    pub end: L4End,
}

impl L4Plan {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((
            [10, 2, (self.id / 250) as u8, (self.id % 250) as u8 + 1],
            50_000,
        ))
    }
}

/// The timeouts of a run's config.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect_ms: u64,
    pub header_ms: u64,
    pub keepalive_ms: u64,
    pub backend_ms: u64,
    pub idle_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub net: NetParams,
    pub t: Timeouts,
    pub pool: usize,
    pub balance: &'static str,
    /// A backend may close (or reset) an idle keep-alive connection at any moment:
    /// a race no proxy wins, so a request it could not replay may get a 502.
    pub late_close: bool,
    pub web: Vec<(SocketAddr, ConnectPolicy)>,
    pub tcp: Vec<(SocketAddr, ConnectPolicy)>,
    pub reqs: Vec<ReqPlan>,
    pub clients: Vec<ClientPlan>,
    pub l4: Vec<L4Plan>,
}

pub const HOLE: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 9, 0, 1)),
    80,
);

impl Scenario {
    pub fn config(&self) -> String {
        let list = |b: &[(SocketAddr, ConnectPolicy)]| {
            b.iter()
                .map(|(a, _)| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let t = &self.t;
        format!(
            "[server]\nworkers = 1\nio = \"epoll\"\nmax_connections = 10000\n\
             connect_timeout_ms = {}\nidle_timeout_ms = {}\nshutdown_grace_ms = 1000\n\
             splice = \"never\"\n\n\
             [http]\nheader_timeout_ms = {}\nkeepalive_timeout_ms = {}\nbackend_timeout_ms = {}\n\
             pool_per_backend = {}\n\n\
             [[service]]\nname = \"web\"\nmode = \"http\"\nlisten = \"127.0.0.1:0\"\nbalance = \"{}\"\nbackends = [{}]\n\n\
             [[service]]\nname = \"hole\"\nmode = \"http\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{HOLE}\"]\n\n\
             [[service]]\nname = \"tcp\"\nlisten = \"127.0.0.1:0\"\nbalance = \"{}\"\nbackends = [{}]\n\n\
             [[service]]\nname = \"tcphole\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{HOLE}\"]\n",
            t.connect_ms,
            t.idle_ms,
            t.header_ms,
            t.keepalive_ms,
            t.backend_ms,
            self.pool,
            self.balance,
            list(&self.web),
            self.balance,
            list(&self.tcp),
        )
    }
}

/// The network's manners for a run.
pub fn net_params(r: &mut Rng) -> NetParams {
    NetParams {
        readiness: if r.chance(70) {
            Readiness::Edge
        } else {
            Readiness::OneShot
        },
        latency_ms: r.pick(&[0, 1, 3]),
        jitter_ms: r.pick(&[0, 1, 2]),
        split_send_pct: r.pick(&[0, 10, 40]),
        split_read_pct: r.pick(&[0, 0, 10, 30]),
        fin_merge_pct: r.pick(&[20, 50, 90]),
        spurious_pct: r.pick(&[0, 5]),
        batch_split_pct: r.pick(&[0, 10, 30]),
        tiny_window_pct: r.pick(&[0, 0, 5]),
        // One run in four is about bulk: large windows, big bodies.
        large_window_pct: r.pick(&[33, 33, 33, 90]),
    }
}
