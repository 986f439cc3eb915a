//! Thin wrappers over the system calls sluice makes outside io_uring: pipes and splice
//! (the zero-copy path for bulk flows), SO_LINGER-0 resets, receives that append to a
//! `Vec` without zeroing it first, and the two socket options socket2 lacks.
//!
//! socket2 does what it can (linger, receiving into uninitialised memory, quick ack)
//! and mio makes the pipes; what is left here needs `unsafe`: `F_SETPIPE_SZ`,
//! `splice(2)`, `setsockopt` for `TCP_DEFER_ACCEPT` and `IP_BIND_ADDRESS_NO_PORT`,
//! `SO_PEERNAME` (an accepted client's address, even once it reset), the length of a
//! `Vec` the kernel filled, and the descriptor limit (`RLIMIT_NOFILE`).
#![allow(unsafe_code)]

use socket2::SockRef;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A pipe used as the in-kernel buffer between two sockets.
#[derive(Debug)]
pub struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
}

/// Bytes a splice pipe is asked to hold (the kernel may grant less).
pub const PIPE_BYTES: usize = 256 * 1024;

impl Pipe {
    /// A non-blocking, close-on-exec pipe.
    pub fn new() -> io::Result<Pipe> {
        let (write, read) = mio::unix::pipe::new()?;
        let (read, write) = (OwnedFd::from(read), OwnedFd::from(write));
        // Best effort: a larger pipe moves more per splice; the default (64 KiB) also works.
        // SAFETY: F_SETPIPE_SZ takes an int argument and touches no memory of ours.
        unsafe {
            libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_BYTES as libc::c_int,
            )
        };
        Ok(Pipe { read, write })
    }
}

/// splice(2) between two descriptors without blocking; `Ok(0)` is end of input.
pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: null offsets are allowed for pipes and sockets; no memory of ours is passed.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Make the next close of `sock` send a RST instead of a FIN.
pub fn set_linger_zero(sock: &impl AsFd) {
    let _ = SockRef::from(sock).set_linger(Some(Duration::ZERO));
}

/// Set an integer socket option.
fn set_int_opt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a valid int and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// TCP_DEFER_ACCEPT on a listening socket: accept a connection only once its first
/// bytes arrived, or after `secs` seconds (0: off).
pub fn set_tcp_defer_accept(sock: &impl AsFd, secs: u32) -> io::Result<()> {
    let secs = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    let fd = sock.as_fd().as_raw_fd();
    set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, secs)
}

/// TCP_DEFER_ACCEPT as the kernel reports it (rounded to its retransmission steps).
#[cfg(test)]
pub fn tcp_defer_accept(sock: &impl AsFd) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is a writable int and `len` holds its size.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

/// The address of the client on an accepted socket, asked as accept(2) asks it
/// (`SO_PEERNAME`): unlike getpeername(2), it still answers once the client reset, so
/// an accept that did not ask for the address (io_uring's multishot accept) learns the
/// same one epoll's accept returns. `v6`: the listening socket's family.
pub fn accepted_peer(sock: &impl AsFd, v6: bool) -> Option<std::net::SocketAddr> {
    let fd = sock.as_fd().as_raw_fd();
    // The kernel refuses a buffer longer than the address: exactly the family's size.
    let size = match v6 {
        true => std::mem::size_of::<libc::sockaddr_in6>(),
        false => std::mem::size_of::<libc::sockaddr_in>(),
    };
    // SAFETY: `storage` is a writable `sockaddr_storage` and `len` (set to `size`, which
    // is no more than its size) bounds what the kernel writes into it.
    let (_, addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            *len = size as libc::socklen_t;
            let rc = libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERNAME, storage.cast(), len);
            match rc {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            }
        })
    }
    .ok()?;
    addr.as_socket()
}

/// IP_BIND_ADDRESS_NO_PORT: bind to a source address now, choose the port at connect
/// time, so many connections can share one source address across destinations.
pub fn set_bind_address_no_port(sock: &impl AsFd) -> io::Result<()> {
    let fd = sock.as_fd().as_raw_fd();
    set_int_opt(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)
}

/// Receive up to `max` bytes from `sock` into the spare capacity of `buf` (appending;
/// no zeroing of the space first). `Ok(0)` is the end of the stream.
pub fn recv_into(sock: &impl AsFd, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    let len = spare.len().min(max);
    let n = SockRef::from(sock).recv(&mut spare[..len])?;
    // SAFETY: `recv` initialised the first `n` (≤ `len`) bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// The open-descriptor limit: `(soft, hard)`.
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((r.rlim_cur, r.rlim_max))
}

/// Raise the soft open-descriptor limit to the hard one (as HAProxy does at start);
/// returns the soft limit in force afterwards. An unlimited hard limit is read as
/// the kernel's ceiling, `fs.nr_open`.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let (soft, hard) = nofile_limit()?;
    let ceiling = if hard == libc::RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20)
    } else {
        hard
    };
    if soft >= ceiling {
        return Ok(soft);
    }
    let r = libc::rlimit {
        rlim_cur: ceiling,
        rlim_max: hard,
    };
    // SAFETY: `r` is a valid rlimit, read by the call only.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ceiling)
}

/// Hand the heap's free pages back to the system (glibc's `malloc_trim`); elsewhere
/// nothing.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the allocator's locks and releases only free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn recv_into_appends() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.write_all(b"hello").unwrap();
        let mut buf = b"say ".to_vec();
        assert_eq!(recv_into(&server, &mut buf, 3).unwrap(), 3);
        assert_eq!(recv_into(&server, &mut buf, 64).unwrap(), 2);
        assert_eq!(buf, b"say hello");
        drop(client);
        assert_eq!(recv_into(&server, &mut buf, 64).unwrap(), 0);
        assert_eq!(buf, b"say hello");
    }

    #[test]
    fn a_pipe_moves_bytes_and_does_not_block() {
        let p = Pipe::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let empty = splice(p.read.as_raw_fd(), server.as_raw_fd(), 16);
        assert_eq!(
            empty.unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "an empty non-blocking pipe"
        );
        client.write_all(b"bytes").unwrap();
        let mut moved = 0;
        for _ in 0..100 {
            match splice(server.as_raw_fd(), p.write.as_raw_fd(), 16) {
                Ok(n) => {
                    moved = n;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(moved, 5);
        assert_eq!(
            splice(p.read.as_raw_fd(), server.as_raw_fd(), 16).unwrap(),
            5
        );
    }
}
