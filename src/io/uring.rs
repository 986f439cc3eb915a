//! io_uring: ring setup, the provided-buffer ring and the operations the shards use.
//!
//! The safe methods here take only descriptors, buffer ids and slot numbers; every
//! piece of memory the kernel reads or writes (the provided buffers, the wait timeout) is
//! owned by [`Ring`] and outlives the operations that use it: the ring is torn down
//! (cancelling whatever is in flight) before that memory is freed.
//!
//! What a completion hands over is decoded here, not by the caller: the descriptor of
//! an accept arrives as an [`OwnedFd`] in the [`Completion`], and only completions of
//! accepts the ring submitted carry one (the ring marks their user data), so no other
//! result can be mistaken for a descriptor. A filled provided buffer arrives as a
//! [`Buffer`], a token that is neither `Copy` nor `Clone` and that [`Ring::recycle`]
//! consumes, so a buffer cannot be given back twice.
#![allow(unsafe_code)]

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

/// Whether this process may create an io_uring (kernel support, sysctl, seccomp).
pub fn probe() -> io::Result<()> {
    IoUring::new(8).map(drop)
}

/// The buffer group id of the shard's provided-buffer ring.
const BGID: u16 = 0;

/// The bit of user data that marks an accept's completions. Reserved: the user data
/// callers pass must leave it clear, and completions come back with it cleared.
const ACCEPT_TAG: u64 = 1 << 63;

/// The bit of user data that marks a connect's completion, which frees the socket
/// address the connect read. Reserved like [`ACCEPT_TAG`].
const CONNECT_TAG: u64 = 1 << 62;

/// A socket address as a connect reads it: the size and alignment of
/// `sockaddr_storage` (128 bytes, 8-aligned).
type AddrBuf = [u64; 16];

/// A provided buffer a receive filled, held by whoever holds this token: the kernel
/// does not write into it until [`Ring::recycle`] gives it back, which takes the token.
/// Dropped instead, the buffer is lost to the ring.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a buffer that is not recycled is lost to the ring"]
pub struct Buffer {
    id: u16,
}

/// One completion, copied out of the completion queue, with what it hands over.
#[derive(Debug)]
pub struct Completion {
    /// As given when the operation was queued.
    pub user_data: u64,
    pub result: i32,
    flags: u32,
    /// An accept's new socket.
    accepted: Option<OwnedFd>,
    /// The provided buffer a receive filled (`result` bytes).
    buffer: Option<Buffer>,
}

impl Completion {
    /// The buffer a receive filled with `result` bytes (once; `None` on any other
    /// completion and on a receive that got no bytes).
    pub fn take_buffer(&mut self) -> Option<Buffer> {
        self.buffer.take()
    }

    /// A multishot operation stays armed.
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }

    /// The socket an accept completion carries (once; `None` on any other completion
    /// and on a failed accept, whose error is in `result`).
    pub fn take_accepted(&mut self) -> Option<OwnedFd> {
        self.accepted.take()
    }

    fn decode(user_data: u64, result: i32, flags: u32) -> Completion {
        let accept = user_data & ACCEPT_TAG != 0;
        let accepted = (accept && result >= 0).then(|| {
            // SAFETY: the tag is set only by `accept_multi`, so this is an accept's
            // completion, and its non-negative result is a descriptor the kernel just
            // installed for this process; this is its only owner.
            unsafe { OwnedFd::from_raw_fd(result) }
        });
        Completion {
            user_data: user_data & !ACCEPT_TAG,
            result,
            flags,
            accepted,
            buffer: None,
        }
    }
}

/// Provided buffers: `count` buffers of `size` bytes handed to the kernel through a
/// buffer ring. A buffer belongs to the kernel until a receive completes into it, then
/// to the holder of its [`Buffer`] until [`Ring::recycle`] gives it back.
struct BufRing {
    entries: *mut types::BufRingEntry,
    entries_len: usize,
    mask: u16,
    tail: u16,
    /// The buffers, `count * size` bytes from `Box::into_raw`; only ever used through
    /// raw pointers since the kernel writes into them.
    memory: *mut u8,
    memory_len: usize,
    size: u32,
}

impl BufRing {
    fn new(count: u16, size: u32) -> io::Result<BufRing> {
        assert!(count.is_power_of_two() && count <= 32768);
        let entries_len = usize::from(count) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping; the kernel requires page alignment, which
        // mmap gives. Checked for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                entries_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let memory_len = usize::from(count) * size as usize;
        let memory = Box::into_raw(vec![0u8; memory_len].into_boxed_slice()).cast::<u8>();
        let mut ring = BufRing {
            entries: ptr.cast(),
            entries_len,
            mask: count - 1,
            tail: 0,
            memory,
            memory_len,
            size,
        };
        for bid in 0..count {
            ring.push(bid);
        }
        ring.publish();
        Ok(ring)
    }

    fn push(&mut self, bid: u16) {
        let addr = self.addr(bid, 0) as u64;
        let i = usize::from(self.tail & self.mask);
        // SAFETY: `i` is within the mapping of `mask + 1` entries; the kernel reads only
        // entries below the published tail, and this one is not published yet.
        let e = unsafe { &mut *self.entries.add(i) };
        e.set_addr(addr);
        e.set_len(self.size);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lives in the first entry of our mapping; the kernel reads
        // it concurrently, so it is written with an atomic release store.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn addr(&self, bid: u16, offset: u32) -> *const u8 {
        let start = usize::from(bid) * self.size as usize + offset as usize;
        assert!(start < self.memory_len);
        // SAFETY: `start` is within the allocation (checked above).
        unsafe { self.memory.add(start) }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `new` with this length and is unmapped once;
        // the buffers came from `Box::into_raw` of a slice of `memory_len` bytes.
        unsafe {
            libc::munmap(self.entries.cast(), self.entries_len);
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.memory,
                self.memory_len,
            )));
        }
    }
}

/// A shard's io_uring with the memory its operations use.
pub struct Ring {
    // Field order is drop order: the ring goes first, cancelling in-flight operations,
    // before the memory they point at is freed.
    ring: IoUring,
    bufs: BufRing,
    free_bufs: usize,
    wait_timeout: Box<types::Timespec>,
    /// The addresses of connects in flight, by user data: boxed, so they stay put
    /// until the connect completes; then kept for the next connect.
    connecting: std::collections::HashMap<u64, Box<AddrBuf>>,
    // Boxes travel between the map and this list; neither copies the address.
    #[allow(clippy::vec_box)]
    spare_addrs: Vec<Box<AddrBuf>>,
    /// Completions taken out of the queue early (to make room for submissions),
    /// handed over by the next `drain`.
    early: Vec<Completion>,
    /// How the ring was set up, for the log.
    pub setup: &'static str,
}

/// Connect addresses kept for reuse.
const SPARE_ADDRS: usize = 64;

/// Applies one set of setup flags to a ring builder.
type SetupFn = fn(&mut io_uring::Builder);

/// Ring geometry for one shard.
#[derive(Debug, Clone, Copy)]
pub struct RingConfig {
    pub entries: u32,
    pub buffers: u16,
    pub buffer_bytes: u32,
}

impl Ring {
    pub fn new(cfg: RingConfig) -> io::Result<Ring> {
        let cq = cfg.entries * 4;
        // Newest setup first: single issuer with deferred task running (6.1+), then
        // cooperative task running (5.19+), then plain.
        let attempts: [(&'static str, SetupFn); 3] = [
            ("single-issuer, defer-taskrun", |b| {
                b.setup_single_issuer().setup_defer_taskrun();
            }),
            ("coop-taskrun", |b| {
                b.setup_coop_taskrun();
            }),
            ("plain", |_| {}),
        ];
        let mut last = None;
        for (setup, apply) in attempts {
            let mut b = IoUring::builder();
            b.setup_cqsize(cq).setup_submit_all();
            apply(&mut b);
            match b.build(cfg.entries) {
                Ok(ring) => return Ring::with(ring, cfg, setup),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("io_uring setup failed")))
    }

    fn with(ring: IoUring, cfg: RingConfig, setup: &'static str) -> io::Result<Ring> {
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::other(
                "io_uring lacks EXT_ARG (kernel 5.11+ needed)",
            ));
        }
        let bufs = BufRing::new(cfg.buffers, cfg.buffer_bytes)?;
        // SAFETY: the ring entries live in `bufs`' mapping, which outlives the ring
        // (field order); the entry count is a power of two below 2^15.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.entries as u64,
                cfg.buffers,
                BGID,
                0,
            )?;
        }
        Ok(Ring {
            ring,
            free_bufs: usize::from(cfg.buffers),
            bufs,
            wait_timeout: Box::new(types::Timespec::new()),
            connecting: std::collections::HashMap::new(),
            spare_addrs: Vec::new(),
            early: Vec::new(),
            setup,
        })
    }

    /// Queue `e`, whose user data came from the caller.
    ///
    /// # Safety
    /// Memory `e` points at must stay valid until its completion arrives.
    unsafe fn push(&mut self, e: squeue::Entry) {
        assert_eq!(
            e.get_user_data() & (ACCEPT_TAG | CONNECT_TAG),
            0,
            "the top two bits of user data are the ring's"
        );
        // SAFETY: forwarded from the caller.
        unsafe { self.submit(e) }
    }

    /// Queue `e`, submitting first if the submission queue is full.
    ///
    /// # Safety
    /// Memory `e` points at must stay valid until its completion arrives.
    unsafe fn submit(&mut self, e: squeue::Entry) {
        loop {
            // SAFETY: forwarded from the caller.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
            // Full: hand what is queued to the kernel and retry. The kernel refuses
            // (EBUSY) while completions it could not post wait: taking the posted ones
            // (kept for the next `drain`) lets it post the rest, without waiting.
            if self.ring.submit().is_err() {
                let mut early = std::mem::take(&mut self.early);
                self.reap(&mut early);
                self.early = early;
                if self.ring.submit().is_err() {
                    // Not a full completion queue (out of memory in the kernel): the
                    // one place a shard waits, for something to complete.
                    let _ = self.ring.submit_and_wait(1);
                }
            }
        }
    }

    /// Arm a multishot accept on a listening socket; its completions carry the new
    /// sockets ([`Completion::take_accepted`]). Accepted sockets are non-blocking:
    /// io_uring does not need it, but the splice path calls `splice(2)` on them directly.
    pub fn accept_multi(&mut self, listener: RawFd, user_data: u64) {
        assert_eq!(
            user_data & ACCEPT_TAG,
            0,
            "the top bit of user data is the ring's"
        );
        let e = opcode::AcceptMulti::new(types::Fd(listener))
            .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
            .build()
            .user_data(user_data | ACCEPT_TAG);
        // SAFETY: no memory is involved, only a descriptor.
        unsafe { self.submit(e) };
    }

    /// Cancel the accept armed with `accept_user_data`.
    pub fn cancel_accept(&mut self, accept_user_data: u64, ud: u64) {
        let e = opcode::AsyncCancel::new(accept_user_data | ACCEPT_TAG)
            .build()
            .user_data(ud);
        // SAFETY: no memory is involved.
        unsafe { self.push(e) };
    }

    /// Connect `fd` to `addr`. The completion's result is 0 or the error; the address
    /// is kept here until then.
    pub fn connect(&mut self, fd: RawFd, addr: SocketAddr, ud: u64) {
        assert_eq!(ud & (ACCEPT_TAG | CONNECT_TAG), 0, "the ring's bits");
        let sa = socket2::SockAddr::from(addr);
        let len = sa.len();
        const _: () = assert!(std::mem::size_of::<libc::sockaddr_storage>() == 128);
        let mut buf = self.spare_addrs.pop().unwrap_or_else(|| Box::new([0; 16]));
        // SAFETY: `sa` holds `len` valid bytes, and `len` is at most the 128 bytes of
        // the buffer (the size of sockaddr_storage).
        unsafe {
            std::ptr::copy_nonoverlapping(
                sa.as_ptr().cast::<u8>(),
                buf.as_mut_ptr().cast::<u8>(),
                len as usize,
            );
        }
        let ptr = buf.as_ptr().cast::<libc::sockaddr>();
        // The box's memory does not move when the box does.
        if let Some(old) = self.connecting.insert(ud, buf) {
            // Another connect under the same user data may still read this one: it is
            // never freed (a caller's mistake costs 128 bytes, not memory safety).
            Box::leak(old);
        }
        let e = opcode::Connect::new(types::Fd(fd), ptr, len)
            .build()
            .user_data(ud | CONNECT_TAG);
        // SAFETY: the address is in `self.connecting` until this connect's completion
        // is reaped, and the ring is torn down before that map (field order).
        unsafe { self.submit(e) };
    }

    /// Cancel the connect submitted with `ud`.
    pub fn cancel_connect(&mut self, ud: u64, cancel_ud: u64) {
        self.cancel(ud | CONNECT_TAG, cancel_ud);
    }

    /// Receive into a provided buffer.
    pub fn recv(&mut self, fd: RawFd, ud: u64) {
        let e = opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), self.bufs.size)
            .buf_group(BGID)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(ud);
        // SAFETY: the kernel picks a buffer from the registered ring, memory owned by self.
        unsafe { self.push(e) };
    }

    /// One-shot readiness poll (`libc::POLLIN` / `libc::POLLOUT`).
    pub fn poll(&mut self, fd: RawFd, events: i16, ud: u64) {
        let e = opcode::PollAdd::new(types::Fd(fd), events as u32)
            .build()
            .user_data(ud);
        // SAFETY: no memory is involved.
        unsafe { self.push(e) };
    }

    /// Cancel the operation submitted with `target` (an accept: [`Ring::cancel_accept`]).
    pub fn cancel(&mut self, target: u64, ud: u64) {
        assert_eq!(ud & (ACCEPT_TAG | CONNECT_TAG), 0, "the ring's bits");
        let e = opcode::AsyncCancel::new(target).build().user_data(ud);
        // SAFETY: no memory is involved.
        unsafe { self.push(e) };
    }

    /// Bytes `offset..offset + len` of a filled buffer.
    pub fn bytes(&self, buf: &Buffer, offset: u32, len: u32) -> &[u8] {
        assert!(
            offset + len <= self.bufs.size,
            "a read past the end of a buffer"
        );
        let ptr = self.bufs.addr(buf.id, offset);
        // SAFETY: the range is inside the buffer memory (checked), which lives as long
        // as `self`; the kernel does not write into this buffer while its token is held
        // (it was taken out of the provided ring and goes back only by `recycle`, which
        // consumes the token, so no `&[u8]` borrowed from it can outlive that).
        unsafe { std::slice::from_raw_parts(ptr, len as usize) }
    }

    /// Give a buffer back to the kernel.
    pub fn recycle(&mut self, buf: Buffer) {
        self.bufs.push(buf.id);
        self.bufs.publish();
        self.free_bufs += 1;
    }

    pub fn free_buffers(&self) -> usize {
        self.free_bufs
    }

    pub fn buffer_bytes(&self) -> u32 {
        self.bufs.size
    }

    /// Submit what is queued and wait for at least one completion or `timeout`.
    pub fn submit_and_wait(&mut self, timeout: Duration) -> io::Result<()> {
        *self.wait_timeout = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&self.wait_timeout);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => Ok(()),
                _ => Err(e),
            },
        }
    }

    /// Move every available completion into `out`.
    pub fn drain(&mut self, out: &mut Vec<Completion>) {
        out.append(&mut self.early);
        self.reap(out);
    }

    fn reap(&mut self, out: &mut Vec<Completion>) {
        let start = out.len();
        for c in self.ring.completion() {
            let mut ud = c.user_data();
            if ud & CONNECT_TAG != 0 {
                ud &= !CONNECT_TAG;
                if let Some(buf) = self.connecting.remove(&ud) {
                    // A few kept for the next connects; the rest freed, so that a
                    // burst's addresses do not stay scattered through the heap,
                    // holding pages the allocator could otherwise give back.
                    if self.spare_addrs.len() < SPARE_ADDRS {
                        self.spare_addrs.push(buf);
                    }
                }
            }
            out.push(Completion::decode(ud, c.result(), c.flags()));
        }
        for c in &mut out[start..] {
            let Some(id) = cqueue::buffer_select(c.flags) else {
                continue;
            };
            self.free_bufs -= 1;
            if c.result > 0 {
                c.buffer = Some(Buffer { id });
            } else {
                // A buffer reported with no bytes in it (end of stream, an error: some
                // kernels take one for those) has nothing to send: it goes straight back.
                self.recycle(Buffer { id });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    /// A small ring, or `None` where io_uring is not allowed (the test then passes).
    fn ring() -> Option<Ring> {
        probe().ok()?;
        let cfg = RingConfig {
            entries: 8,
            buffers: 4,
            buffer_bytes: 64,
        };
        Some(Ring::new(cfg).expect("ring"))
    }

    /// The next `n` completions (bounded wait).
    fn next(ring: &mut Ring, n: usize) -> Vec<Completion> {
        let mut out = Vec::new();
        for _ in 0..100 {
            ring.submit_and_wait(Duration::from_millis(50))
                .expect("wait");
            ring.drain(&mut out);
            if out.len() >= n {
                return out;
            }
        }
        panic!("{} of {n} completions", out.len());
    }

    #[test]
    fn only_accept_completions_carry_a_socket() {
        let Some(mut ring) = ring() else { return };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        ring.accept_multi(listener.as_raw_fd(), 7);
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut c = next(&mut ring, 1).remove(0);
        assert_eq!(c.user_data, 7, "the ring's mark is cleared");
        assert!(c.more());
        let fd = c.take_accepted().expect("an accepted socket");
        assert!(c.take_accepted().is_none(), "handed over once");
        let accepted = socket2::Socket::from(fd);
        let peer = accepted.peer_addr().unwrap().as_socket();
        assert_eq!(peer, Some(client.local_addr().unwrap()));

        // A successful poll's result is a non-negative number too, but not a descriptor.
        ring.poll(accepted.as_raw_fd(), libc::POLLOUT, 8);
        let mut c = next(&mut ring, 1).remove(0);
        assert_eq!(c.user_data, 8);
        assert!(c.result >= 0);
        assert!(c.take_accepted().is_none());

        ring.cancel_accept(7, 9);
        let done = next(&mut ring, 2);
        assert!(done.iter().any(|c| c.user_data == 7 && !c.more()));
    }

    #[test]
    fn a_buffer_is_held_by_its_token_until_recycled() {
        use std::io::Write;
        let Some(mut ring) = ring() else { return };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.write_all(b"hello").unwrap();
        ring.recv(server.as_raw_fd(), 1);
        let mut c = next(&mut ring, 1).remove(0);
        assert_eq!(c.result, 5);
        let buf = c.take_buffer().expect("a filled buffer");
        assert!(c.take_buffer().is_none(), "handed over once");
        assert_eq!(ring.free_buffers(), 3);
        assert_eq!(ring.bytes(&buf, 1, 4), b"ello");
        ring.recycle(buf);
        assert_eq!(ring.free_buffers(), 4);

        // End of stream: no bytes, so no token, and every buffer is in the ring.
        client.shutdown(std::net::Shutdown::Write).unwrap();
        ring.recv(server.as_raw_fd(), 2);
        let mut c = next(&mut ring, 1).remove(0);
        assert_eq!(c.result, 0);
        assert!(c.take_buffer().is_none());
        assert_eq!(ring.free_buffers(), 4);
    }

    #[test]
    #[should_panic(expected = "the top two bits of user data are the ring's")]
    fn user_data_cannot_claim_the_accept_mark() {
        let Some(mut ring) = ring() else {
            panic!("the top two bits of user data are the ring's (no io_uring here)")
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        ring.poll(listener.as_raw_fd(), libc::POLLIN, ACCEPT_TAG | 7);
    }

    #[test]
    #[should_panic(expected = "the top two bits of user data are the ring's")]
    fn user_data_cannot_claim_the_connect_mark() {
        let Some(mut ring) = ring() else {
            panic!("the top two bits of user data are the ring's (no io_uring here)")
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        ring.poll(listener.as_raw_fd(), libc::POLLIN, CONNECT_TAG | 7);
    }

    #[test]
    fn a_connect_reports_its_outcome_and_gives_its_address_back() {
        let Some(mut ring) = ring() else { return };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let sock = |_| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None);
        let (a, b) = (sock(0).unwrap(), sock(1).unwrap());
        ring.connect(a.as_raw_fd(), open, 1);
        ring.connect(b.as_raw_fd(), closed, 2);
        let done = next(&mut ring, 2);
        let result = |ud| done.iter().find(|c| c.user_data == ud).map(|c| c.result);
        assert_eq!(result(1), Some(0), "connected");
        assert_eq!(result(2), Some(-libc::ECONNREFUSED), "refused");
        assert!(ring.connecting.is_empty(), "both addresses given back");
        assert_eq!(ring.spare_addrs.len(), 2);
        assert!(listener.accept().is_ok());
    }
}
