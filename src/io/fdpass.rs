//! Handing descriptors to another process: a Unix `SOCK_SEQPACKET` channel (each
//! send is one message, read whole by one receive) carrying bytes and, beside them,
//! descriptors as `SCM_RIGHTS`. A descriptor received refers to the same open file
//! description as the sender's — for a listening socket, the same accept queue — so
//! two processes may accept from it, and its queue lives while either holds it.
//!
//! The system calls are nix's; what is left here needs `unsafe` once: taking
//! ownership of the descriptors the kernel installed for a received message.
#![allow(unsafe_code)]

use nix::sys::socket::{
    self, AddressFamily, Backlog, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag,
    SockType, UnixAddr,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// The largest message read (bytes, beside its descriptors).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// The most descriptors one message carries (the kernel's `SCM_MAX_FD` is 253).
pub const MAX_FDS: usize = 250;

/// A listening channel at a path, readable and writable by its owner only.
#[derive(Debug)]
pub struct ChannelListener(OwnedFd);

/// One connected channel.
#[derive(Debug)]
pub struct Channel(OwnedFd);

fn seqpacket() -> io::Result<OwnedFd> {
    Ok(socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

impl ChannelListener {
    /// Listen at `path`, replacing what is there (a channel left by a process that
    /// ended, or the one a process being replaced listens on: it keeps its socket,
    /// unreachable by the path). Mode 0600 from its creation: the socket's own mode,
    /// set before the bind, is the one the kernel gives the file it creates, so no
    /// other user can connect in between, and nothing is changed through the path
    /// (which another process may have replaced by a symbolic link meanwhile).
    pub fn bind(path: &Path) -> io::Result<ChannelListener> {
        let fd = seqpacket()?;
        let addr = UnixAddr::new(path)?;
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        // fchmod(2) on the socket itself.
        let file = std::fs::File::from(fd);
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let fd = OwnedFd::from(file);
        socket::bind(fd.as_raw_fd(), &addr)?;
        socket::listen(&fd, Backlog::new(4)?)?;
        Ok(ChannelListener(fd))
    }

    /// Wait for the next connection.
    pub fn accept(&self) -> io::Result<Channel> {
        Ok(Channel(socket::accept4(&self.0, SockFlag::SOCK_CLOEXEC)?))
    }
}

/// A socket timeout; zero is none.
fn timeval(timeout: Option<Duration>) -> nix::sys::time::TimeVal {
    timeout.map_or(nix::sys::time::TimeVal::new(0, 0), |t| {
        nix::sys::time::TimeVal::new(t.as_secs() as _, t.subsec_micros() as _)
    })
}

impl Channel {
    pub fn connect(path: &Path) -> io::Result<Channel> {
        let fd = seqpacket()?;
        socket::connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
        Ok(Channel(fd))
    }

    /// The peer's process id and user id, as the kernel recorded them at connect.
    pub fn peer(&self) -> io::Result<(u32, u32)> {
        let cred = socket::getsockopt(&self.0, socket::sockopt::PeerCredentials)?;
        Ok((cred.pid() as u32, cred.uid()))
    }

    /// How long a receive waits (`None`: for ever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        socket::setsockopt(&self.0, socket::sockopt::ReceiveTimeout, &timeval(timeout))?;
        Ok(())
    }

    /// How long a send waits for room in the peer's queue (`None`: for ever): a peer
    /// that does not read must not hold the sender.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        socket::setsockopt(&self.0, socket::sockopt::SendTimeout, &timeval(timeout))?;
        Ok(())
    }

    /// Send one message: `bytes` (not empty) and `fds` (at most [`MAX_FDS`]).
    pub fn send(&self, bytes: &[u8], fds: &[BorrowedFd]) -> io::Result<()> {
        assert!(!bytes.is_empty() && fds.len() <= MAX_FDS);
        let raw: Vec<_> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let cmsgs = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsgs };
        let sent = socket::sendmsg::<()>(
            self.0.as_raw_fd(),
            &[IoSlice::new(bytes)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        if sent != bytes.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "message cut short",
            ));
        }
        Ok(())
    }

    /// Receive one message and the descriptors it carries; an empty message is the
    /// end of the channel (the peer closed it, or exited).
    pub fn recv(&self) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; MAX_FDS]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = socket::recvmsg::<()>(
            self.0.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                for fd in raw {
                    // SAFETY: the kernel installed `fd` in this process's table for
                    // this message (SCM_RIGHTS); nothing else knows or owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        let (len, flags) = (msg.bytes, msg.flags);
        if flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message or descriptors cut short",
            ));
        }
        buf.truncate(len);
        Ok((buf, fds))
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_listening_socket_sent_is_the_same_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handover");
        let listener = ChannelListener::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let client = Channel::connect(&path).unwrap();
        let server = listener.accept().unwrap();
        assert_eq!(server.peer().unwrap().0, std::process::id());
        server.send(b"one", &[tcp.as_fd()]).unwrap();
        // Queued before the receiver has it: the same queue.
        let queued = std::net::TcpStream::connect(addr).unwrap();
        let (bytes, mut fds) = client.recv().unwrap();
        assert_eq!((bytes.as_slice(), fds.len()), (&b"one"[..], 1));
        drop(tcp);
        let received = std::net::TcpListener::from(fds.pop().unwrap());
        let (accepted, _) = received.accept().unwrap();
        assert_eq!(accepted.peer_addr().unwrap(), queued.local_addr().unwrap());
        drop(server);
        let (end, fds) = client.recv().unwrap();
        assert!(end.is_empty() && fds.is_empty());
    }
}
