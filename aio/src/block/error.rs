//! Errors of the block layer: every failure is an `io::Error` that keeps its errno.
//!
//! Kernel failures keep the raw errno (`io::Error::from_raw_os_error`). Bad input that
//! we catch before the kernel sees it gets a message saying what was wrong, and still
//! carries its errno: [`errno_of`] recovers it from either kind of error.

use std::fmt;
use std::io;

/// The runtime's `syscall!` (errno kept), re-exported for the block layer.
pub(crate) use crate::sys::syscall;

/// A request rejected before it reached the kernel: the errno it stands for and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidRequest {
    /// The errno the kernel would have returned (or the closest one).
    pub errno: i32,
    /// What was wrong, in words.
    pub reason: &'static str,
}

impl fmt::Display for InvalidRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({})",
            self.reason,
            io::Error::from_raw_os_error(self.errno)
        )
    }
}

impl std::error::Error for InvalidRequest {}

/// Builds the error of a request rejected at submission.
pub(crate) fn invalid(errno: i32, reason: &'static str) -> io::Error {
    let kind = io::Error::from_raw_os_error(errno).kind();
    io::Error::new(kind, InvalidRequest { errno, reason })
}

/// The errno of a block-layer error, whether it came from the kernel or from our checks.
pub fn errno_of(err: &io::Error) -> Option<i32> {
    err.raw_os_error().or_else(|| {
        err.get_ref()?
            .downcast_ref::<InvalidRequest>()
            .map(|e| e.errno)
    })
}

/// Completion value of a request: bytes transferred, or a negative errno (the kernel's
/// convention, so backends store what the kernel gave them without converting).
pub(crate) fn result_from_raw(res: isize) -> io::Result<usize> {
    if res >= 0 {
        Ok(res as usize)
    } else {
        Err(io::Error::from_raw_os_error(-res as i32))
    }
}
