//! corral-ffi: the C ABI of corral, built as `libcorral.a` / `libcorral.so`
//! with the hand-written header `include/corral.h` (`make -C ffi`).
//!
//! It lets a C program (a storage engine, a VMM with a pluggable coroutine
//! backend like QEMU's) use corral's pooled coroutines and coroutine I/O.
//! Every exported function catches panics at the boundary: misuse comes back
//! as a negative errno (or, in the `*_or_abort` variants, as a clear message
//! and `abort()`), never as unwinding into C.
//!
//! The functions can be called from Rust too, which is how this example and
//! the crate's unit tests exercise them:
//!
//! ```
//! use corral_ffi::{corral_co_create, corral_co_enter, corral_co_is_terminated, corral_co_yield};
//! use std::ffi::c_void;
//!
//! unsafe extern "C" fn body(opaque: *mut c_void) {
//!     // SAFETY: opaque is the &mut u32 passed to corral_co_create below.
//!     let steps = unsafe { &mut *opaque.cast::<u32>() };
//!     *steps += 1;
//!     assert_eq!(corral_co_yield(), 0);
//!     *steps += 1;
//! }
//!
//! let mut steps = 0u32;
//! let co = corral_co_create(Some(body), (&mut steps as *mut u32).cast());
//! assert!(!co.is_null());
//! // SAFETY: co came from corral_co_create; `steps` outlives the coroutine.
//! unsafe {
//!     assert_eq!(corral_co_enter(co), 0); // runs to the yield
//!     assert_eq!(corral_co_enter(co), 0); // runs to the end
//!     assert!(corral_co_is_terminated(co));
//!     assert_eq!(corral_co_enter(co), -libc::EINVAL); // stale handle: detected
//! }
//! assert_eq!(steps, 2);
//! assert_eq!(corral_co_yield(), -libc::EPERM); // not in a coroutine
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod aio;
mod boundary;
mod coroutine;
mod stats;

pub use aio::*;
pub use boundary::corral_last_error;
pub use coroutine::*;
pub use stats::*;
