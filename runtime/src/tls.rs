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
use crate::hot::{self, Block};

thread_local! {
    /// The coroutine running on this thread (innermost when nested), or null.
    static CURRENT: Cell<*const Header> = const { Cell::new(ptr::null()) };
    /// This thread's one-body cache (hot.rs): `None` until the first enter
    /// on the thread, and again once the thread's exit guard has run. No
    /// destructor, so every access is a plain load at a fixed offset.
    static BLOCK: Cell<Option<&'static Block>> = const { Cell::new(None) };
}

/// The running coroutine's header, or null outside coroutines.
#[inline(never)]
pub(crate) fn current() -> *const Header {
    CURRENT.with(Cell::get)
}

/// Makes `new` the running coroutine; returns the previous one and this
/// thread's block. The first call on a thread also makes sure the thread
/// has an alternate signal stack, so a stack overflow can be reported, and
/// claims the thread's block.
///
/// Inlined on purpose, so only for `Coroutine::try_enter`'s inner function,
/// which is itself `#[inline(never)]` and whose frame never changes thread:
/// the caller of `enter` is blocked in it until the callee yields or ends,
/// and that always switches back on the thread that entered.
#[inline(always)]
pub(crate) fn enter_replace_current(new: *const Header) -> (*const Header, Option<&'static Block>) {
    let block = match BLOCK.with(Cell::get) {
        Some(b) => Some(b),
        None => first_enter_on_thread(),
    };
    (CURRENT.with(|c| c.replace(new)), block)
}

/// Restores the running coroutine when an enter returns (same rule as
/// [`enter_replace_current`]).
#[inline(always)]
pub(crate) fn enter_restore_current(h: *const Header) {
    CURRENT.with(|c| c.set(h));
}

/// This thread's block, if it has one. Same inlining rule as
/// [`enter_replace_current`]: only inside `#[inline(never)]` functions that
/// do not span a switch.
#[inline(always)]
pub(crate) fn block() -> Option<&'static Block> {
    BLOCK.with(Cell::get)
}

/// Records the block [`hot::claim`] gave this thread.
pub(crate) fn set_block(b: &'static Block) {
    BLOCK.with(|c| c.set(Some(b)));
}

/// Takes this thread's block away (thread exit).
pub(crate) fn take_block() -> Option<&'static Block> {
    BLOCK.with(Cell::take)
}

/// No block yet (or the thread is exiting, in which case this runs on every
/// enter: `ensure_altstack` is idempotent).
#[cold]
#[inline(never)]
fn first_enter_on_thread() -> Option<&'static Block> {
    crate::overflow::ensure_altstack();
    hot::claim()
}
