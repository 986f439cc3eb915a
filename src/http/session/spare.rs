//! What a session holds only while it works — its byte buffers, the parsed heads, the
//! bodies' framing — kept in one boxed [`Parts`], taken from a bounded pool per thread
//! (a shard is one thread) when the connection needs it and given back as its exchange
//! ends (or by its close): new connections and their heads cost no allocation, and a
//! keep-alive connection between requests holds one pointer.

use super::KEEP_BYTES;
use crate::http::body::Body;
use crate::http::head::{Request, Response};
use std::cell::{Cell, RefCell};
use std::ops::{Deref, DerefMut};

/// Parts a thread keeps at most (about 5 KiB each); beyond that, given-back parts
/// are freed.
const SETS: usize = 256;
/// A byte buffer's first capacity: a usual head fits, so writing one does not grow
/// the buffer step by step.
const HEAD_BYTES: usize = 1024;
/// A field list's first capacity.
const FIELDS: usize = 24;

/// A session's state of the current exchange.
#[derive(Debug)]
pub(super) struct Parts {
    /// Client bytes not yet consumed: a head being read, body bytes, pipelined requests.
    pub input: Vec<u8>,
    pub to_client: Vec<u8>,
    pub client_sent: usize,
    pub to_backend: Vec<u8>,
    pub backend_sent: usize,
    /// Backend bytes not yet consumed (a response head being read).
    pub from_backend: Vec<u8>,
    pub req: Request,
    pub resp: Response,
    pub req_body: Body,
    pub resp_body: Body,
    /// `Set-Cookie` line for the current response (sticky sessions).
    pub pending_cookie: Vec<u8>,
}

/// What a session without parts reads: nothing in any buffer, no request.
static EMPTY: Parts = EMPTY_PARTS;

/// Sets freed (the spares full) since the heap was last trimmed, past which
/// [`trim_heap`] hands the free memory back to the system.
const FREED_TO_TRIM: usize = 256;

thread_local! {
    // Boxed in the pool too: a session takes and gives back the box itself, so that
    // neither moves `Parts` nor allocates.
    #[allow(clippy::vec_box)]
    static SPARE: RefCell<Vec<Box<Parts>>> = const { RefCell::new(Vec::new()) };
    static FREED: Cell<usize> = const { Cell::new(0) };
}

/// After a burst (many sets in use at once, freed as their exchanges ended), give the
/// heap's free pages back to the system: the allocator would otherwise keep the burst's
/// peak for good. Called by the once-a-second sweep; does nothing after a quiet second.
pub fn trim_heap() {
    if FREED.get() < FREED_TO_TRIM {
        return;
    }
    FREED.set(0);
    crate::io::sys::release_free_heap();
}

fn fresh() -> Box<Parts> {
    let bytes = || Vec::with_capacity(HEAD_BYTES);
    Box::new(Parts {
        input: bytes(),
        to_client: bytes(),
        to_backend: bytes(),
        from_backend: bytes(),
        req: Request {
            fields: Vec::with_capacity(FIELDS),
            ..Request::EMPTY
        },
        resp: Response {
            fields: Vec::with_capacity(FIELDS),
            ..Response::EMPTY
        },
        ..EMPTY_PARTS
    })
}

/// `EMPTY`'s value, to build from.
const EMPTY_PARTS: Parts = Parts {
    input: Vec::new(),
    to_client: Vec::new(),
    client_sent: 0,
    to_backend: Vec::new(),
    backend_sent: 0,
    from_backend: Vec::new(),
    req: Request::EMPTY,
    resp: Response::EMPTY,
    req_body: Body::DONE,
    resp_body: Body::DONE,
    pending_cookie: Vec::new(),
};

/// Empty, and freed when it grew past what is kept.
fn kept<T>(mut v: Vec<T>, most: usize) -> Vec<T> {
    v.clear();
    match v.capacity() * std::mem::size_of::<T>() > most {
        true => Vec::new(),
        false => v,
    }
}

/// A session's [`Parts`], when it holds them. Read without them, it is empty; written,
/// it takes a set from the thread's spare ones first (or allocates one).
#[derive(Debug, Default)]
pub(super) struct Lease(Option<Box<Parts>>);

impl Deref for Lease {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Parts {
        self.0
            .get_or_insert_with(|| SPARE.with_borrow_mut(Vec::pop).unwrap_or_else(fresh))
    }
}

impl Lease {
    /// Give the parts back, their contents dropped: the session holds none after.
    pub(super) fn give_back(&mut self) {
        let Some(mut parts) = self.0.take() else {
            return;
        };
        let p = &mut *parts;
        let keep = |v: &mut Vec<u8>| kept(std::mem::take(v), KEEP_BYTES);
        *p = Parts {
            input: keep(&mut p.input),
            to_client: keep(&mut p.to_client),
            to_backend: keep(&mut p.to_backend),
            from_backend: keep(&mut p.from_backend),
            pending_cookie: keep(&mut p.pending_cookie),
            req: Request {
                fields: kept(std::mem::take(&mut p.req.fields), KEEP_BYTES),
                ..Request::EMPTY
            },
            resp: Response {
                fields: kept(std::mem::take(&mut p.resp.fields), KEEP_BYTES),
                ..Response::EMPTY
            },
            ..EMPTY_PARTS
        };
        // A session dropped while its thread exits finds the pool gone: its parts are
        // freed.
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SETS {
                spare.push(parts);
            } else {
                FREED.set(FREED.get() + 1);
            }
        });
    }

    /// The session holds its parts.
    #[cfg(test)]
    pub(super) fn held(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.give_back();
    }
}

#[cfg(test)]
pub(super) fn spare_sets() -> usize {
    SPARE.with_borrow(Vec::len)
}

#[cfg(test)]
pub(super) fn freed_sets() -> usize {
    FREED.get()
}
