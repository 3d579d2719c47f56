//! The coroutine I/O part of the C ABI: an `AioContext` (poll, bottom halves,
//! scheduling coroutines into it) and block devices with a coroutine face and
//! a callback face. Errors are negative errno values.

mod block;
mod callback;
mod context;

pub use block::*;
pub use callback::*;
pub use context::*;

use std::ffi::c_void;

/// A C function pointer and its argument, to run from Rust callbacks that may
/// run on another thread (bottom halves, completions).
pub(crate) struct CCallback<F> {
    pub(crate) func: F,
    pub(crate) opaque: *mut c_void,
}

// SAFETY:
// * the opaque pointer belongs to the C program, which asked for the callback
//   to be run in the context (possibly on another thread) with it.
unsafe impl<F: Send> Send for CCallback<F> {}

/// `Err(-errno)` of an I/O error (EIO when it carries none).
pub(crate) fn negative_errno(error: &std::io::Error) -> i32 {
    -corral_aio::block::errno_of(error).unwrap_or(libc::EIO)
}
