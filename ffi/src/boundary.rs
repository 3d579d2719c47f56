//! The Rust/C boundary: no panic crosses it, and errors become errno values
//! plus a per-thread message C can read with `corral_last_error()`.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

thread_local! {
    /// Message of the last failing call on this thread (NUL-terminated for C).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Runs `f` at an exported function's boundary: a panic (which only a bug in
/// corral or a misuse the pre-checks missed can cause) never unwinds into C,
/// where unwinding is undefined behaviour. The panic hook has printed the
/// panic's message by the time the guard sees the unwind; the guard then adds
/// its own line and aborts.
///
/// A drop guard rather than `catch_unwind`: `catch_unwind` runs `f` behind
/// an extra call frame (the try intrinsic's shim), and enter and yield keep
/// their frames live across a coroutine switch, where each one costs a
/// mispredicted return afterwards. The guard adds no frame and no instruction
/// on the normal path (only a landing pad), and works the same on toolchains
/// older than 1.81, where unwinding out of `extern "C"` was undefined.
#[inline(always)]
pub(crate) fn guard<R>(f: impl FnOnce() -> R) -> R {
    let bomb = AbortOnUnwind;
    let value = f();
    std::mem::forget(bomb);
    value
}

/// Dropped only while unwinding (the normal path forgets it).
struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    #[cold]
    fn drop(&mut self) {
        abort_with("a panic reached the C boundary (its message is above); aborting");
    }
}

/// Prints `corral: <message>` to stderr and aborts (QEMU's reaction to misuse).
#[cold]
pub(crate) fn abort_with(message: &str) -> ! {
    eprintln!("corral: {message}");
    std::process::abort()
}

/// Records `message` as this thread's last error and sets `errno` to `errno`.
#[cold]
pub(crate) fn set_error(errno: i32, message: &str) {
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    // try_with: during thread teardown the message is dropped, errno still set.
    let _ = LAST_ERROR.try_with(|last| *last.borrow_mut() = text);
    // SAFETY:
    // * __errno_location returns the calling thread's errno, valid for writes
    //   for the thread's lifetime.
    unsafe { *libc::__errno_location() = errno };
}

/// Records `message` and returns `-errno`, for the functions that return codes.
#[cold]
pub(crate) fn fail(errno: i32, message: &str) -> i32 {
    set_error(errno, message);
    -errno
}

/// Pointer to this thread's last error message; "" if none.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|last| last.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// `corral_last_error`: the message of the last error on this thread.
#[no_mangle]
pub extern "C" fn corral_last_error() -> *const c_char {
    guard(last_error_ptr)
}
