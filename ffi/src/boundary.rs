//! The Rust/C boundary: no panic crosses it, and errors become errno values
//! plus a per-thread message C can read with `corral_last_error()`.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    /// Message of the last failing call on this thread (NUL-terminated for C).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Runs `f` at an exported function's boundary. A panic (which only a bug in
/// corral or a misuse the pre-checks missed can cause) is reported with its
/// message and aborts the process: unwinding into C frames is undefined
/// behaviour, so it never happens.
#[inline(always)]
pub(crate) fn guard<R>(f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(payload) => abort_with(panic_message(payload.as_ref())),
    }
}

/// Prints `corral: <message>` to stderr and aborts (QEMU's reaction to misuse).
#[cold]
pub(crate) fn abort_with(message: &str) -> ! {
    eprintln!("corral: {message}");
    std::process::abort()
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "panic with a non-string payload"
    }
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
