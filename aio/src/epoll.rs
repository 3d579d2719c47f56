//! The epoll instance behind a context's fd handlers (level-triggered).

use crate::sys::syscall;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Events returned by one `epoll_wait` at most; more stay pending for the next iteration.
pub(crate) const MAX_EVENTS: usize = 64;

#[derive(Debug)]
pub(crate) struct Epoll {
    fd: OwnedFd,
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Epoll> {
        let fd = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
        // SAFETY:
        // * `fd` was just returned by epoll_create1(2) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        syscall!(epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev)).map(drop)
    }

    pub(crate) fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    pub(crate) fn modify(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
    }

    /// Unregisters `fd`. An fd the caller already closed (EBADF) or that epoll dropped with it
    /// (ENOENT) counts as removed.
    pub(crate) fn delete(&self, fd: RawFd) -> io::Result<()> {
        match self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBADF) | Some(libc::ENOENT)) => Ok(()),
            r => r,
        }
    }

    /// Waits up to `timeout_ns` (negative: forever; rounded *up* to whole milliseconds so a
    /// timer never fires early). EINTR counts as "nothing ready".
    pub(crate) fn wait(
        &self,
        out: &mut [libc::epoll_event; MAX_EVENTS],
        timeout_ns: i64,
    ) -> io::Result<usize> {
        let ms: libc::c_int = if timeout_ns < 0 {
            -1
        } else {
            ((timeout_ns + 999_999) / 1_000_000).min(libc::c_int::MAX as i64) as libc::c_int
        };
        match syscall!(epoll_wait(
            self.fd.as_raw_fd(),
            out.as_mut_ptr(),
            MAX_EVENTS as libc::c_int,
            ms
        )) {
            Ok(n) => Ok(n as usize),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(0),
            Err(e) => Err(e),
        }
    }
}
