//! The runtime's thread-locals, reached only through `#[inline(never)]`
//! accessors.
//!
//! A coroutine that yields on one thread may be entered again from another
//! one. Code running on the coroutine's stack must then not use a
//! thread-local address computed before the switch: the compiler is free to
//! keep such an address in a register or spill slot across a call it cannot
//! see through (QEMU hit this and added noinline TLS accessors). Every
//! access here is a real call that recomputes the address on the thread that
//! makes it. User code has the same hazard with its own thread-locals: read
//! them through a `#[inline(never)]` function, and never hold a reference
//! into one across `yield_now`.
//!
//! The one exception is `Coroutine::enter`, an `#[inline(never)]` function
//! whose own frame cannot change thread (see [`enter_replace_current`]): it
//! reads and writes the current coroutine directly, saving two calls.

use std::cell::Cell;
use std::ptr;

use crate::body::Header;

thread_local! {
    /// The coroutine running on this thread (innermost when nested), or null.
    static CURRENT: Cell<*const Header> = const { Cell::new(ptr::null()) };
    /// Whether this thread has been checked for an alternate signal stack.
    static ALTSTACK_CHECKED: Cell<bool> = const { Cell::new(false) };
}

/// The running coroutine's header, or null outside coroutines.
#[inline(never)]
pub(crate) fn current() -> *const Header {
    CURRENT.with(Cell::get)
}

/// Makes `new` the running coroutine and returns the previous one. The first
/// call on a thread also makes sure the thread has an alternate signal stack,
/// so a stack overflow can be reported.
///
/// Inlined on purpose, so only for [`Coroutine::enter`](crate::Coroutine::enter),
/// which is itself `#[inline(never)]` and whose frame never changes thread:
/// the caller of `enter` is blocked in it until the callee yields or ends,
/// and that always switches back on the thread that entered.
#[inline(always)]
pub(crate) fn enter_replace_current(new: *const Header) -> *const Header {
    if !ALTSTACK_CHECKED.with(Cell::get) {
        first_enter_on_thread();
    }
    CURRENT.with(|c| c.replace(new))
}

/// Restores the running coroutine when an enter returns (same rule as
/// [`enter_replace_current`]).
#[inline(always)]
pub(crate) fn enter_restore_current(h: *const Header) {
    CURRENT.with(|c| c.set(h));
}

#[cold]
#[inline(never)]
fn first_enter_on_thread() {
    ALTSTACK_CHECKED.with(|c| c.set(true));
    crate::overflow::ensure_altstack();
}
