//! io_uring setup and operations.
#![allow(unsafe_code)]

use std::io;

/// Whether this process may create an io_uring (kernel support, sysctl, seccomp).
pub fn probe() -> io::Result<()> {
    io_uring::IoUring::new(8).map(drop)
}
