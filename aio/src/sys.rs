//! Thin, errno-preserving wrappers over the few syscalls the event loop makes.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Runs a libc call and turns `-1`/errno into `io::Error` (the raw errno is kept): the
/// runtime's helper, one copy for both crates.
pub(crate) use corral_runtime::syscall;

/// A non-blocking, close-on-exec eventfd: the kernel object behind `AioContext::notify`.
#[derive(Debug)]
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        let fd = syscall!(eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))?;
        // SAFETY:
        // * `fd` was just returned by eventfd(2) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventFd { fd })
    }

    /// Adds 1 to the counter, making the fd readable. A full counter (EAGAIN) is already readable.
    pub(crate) fn set(&self) {
        let one: u64 = 1;
        let p = &one as *const u64 as *const libc::c_void;
        let _ = syscall!(write(self.fd.as_raw_fd(), p, 8));
    }

    /// Reads and resets the counter; returns whether it was set.
    pub(crate) fn test_and_clear(&self) -> bool {
        let mut v: u64 = 0;
        let p = &mut v as *mut u64 as *mut libc::c_void;
        matches!(syscall!(read(self.fd.as_raw_fd(), p, 8)), Ok(8))
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
