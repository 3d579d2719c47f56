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
//! The exceptions are `#[inline(never)]` functions whose own frame cannot
//! change thread and that never stay on a coroutine's stack across a switch:
//! `Coroutine::try_enter`'s inner function (see [`enter_replace_current`])
//! and the builder's `take_cached`, which read the current coroutine and the
//! one-body cache (hot.rs) directly, saving calls.

use std::cell::Cell;
use std::ptr::{self, NonNull};

use crate::body::Header;
use crate::hot::{self, Block, Counts};

/// All of the runtime's per-thread state in one thread-local, so a frame
/// computes its address once: the running coroutine, and the one-body cache
/// (hot.rs): the slot (a body of either guard kind), and the block of counters
/// (`None` until the first enter on the thread, and again once the thread's
/// exit guard has run). No destructor, so every access is a plain load at a
/// fixed offset from the thread pointer.
///
/// Aligned to a cache line, so the fields the fast path uses (all but the
/// eviction counts, at the end) share one line.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct Cache {
    /// The coroutine running on this thread (innermost when nested), or null.
    current: Cell<*const Header>,
    block: Cell<Option<&'static Block>>,
    slot: Cell<*mut Header>,
    /// The cache's counters; other threads read them through the block.
    counts: Counts,
}

thread_local! {
    static CACHE: Cache = const {
        Cache {
            current: Cell::new(ptr::null()),
            block: Cell::new(None),
            slot: Cell::new(ptr::null_mut()),
            counts: Counts::new(),
        }
    };
}

/// The calling thread's [`Cache`], as an address computed once.
///
/// Only for frames that never change thread (the `#[inline(never)]`
/// functions named in this module's docs), and never kept beyond them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ThreadCache(NonNull<Cache>);

impl ThreadCache {
    #[inline(always)]
    fn get(&self) -> &Cache {
        // SAFETY:
        // * the address of this thread's cache, used on this thread while
        //   it runs (see the type's docs); thread-locals without destructor
        //   stay valid until the thread is gone.
        unsafe { self.0.as_ref() }
    }

    /// The thread's counter block, if it has one.
    #[inline(always)]
    pub(crate) fn block(self) -> Option<&'static Block> {
        self.get().block.get()
    }

    /// The body cached in the slot, or null.
    #[inline(always)]
    pub(crate) fn slot(self) -> *mut Header {
        self.get().slot.get()
    }

    /// The thread's cache counters.
    #[inline(always)]
    pub(crate) fn counts(&self) -> &Counts {
        &self.get().counts
    }

    /// Sets the slot.
    #[inline(always)]
    pub(crate) fn set_slot(self, h: *mut Header) {
        self.get().slot.set(h);
    }

    /// Restores the running coroutine when an enter returns (see
    /// [`enter_replace_current`]).
    #[inline(always)]
    pub(crate) fn restore_current(self, h: *const Header) {
        self.get().current.set(h);
    }
}

/// This thread's cache. Inlined only into `#[inline(never)]` functions that
/// do not span a switch, or into `Coroutine::try_enter`'s inner function
/// (see [`enter_replace_current`]).
#[inline(always)]
pub(crate) fn cache() -> ThreadCache {
    CACHE.with(|c| ThreadCache(NonNull::from(c)))
}

/// The running coroutine's header, or null outside coroutines.
#[inline(never)]
pub(crate) fn current() -> *const Header {
    current_inline()
}

/// [`current`] inlined: only for `#[inline(never)]` functions whose frame
/// does not span a switch (the C ABI's halves of enter and yield).
#[inline(always)]
pub(crate) fn current_inline() -> *const Header {
    CACHE.with(|c| c.current.get())
}

/// Makes `new` the running coroutine; returns the previous one and this
/// thread's cache. The first call on a thread also makes sure the thread
/// has an alternate signal stack, so a stack overflow can be reported, and
/// claims the thread's counter block.
///
/// Inlined on purpose, so only for `Coroutine::try_enter`'s inner function,
/// which is itself `#[inline(never)]` and whose frame never changes thread:
/// the caller of `enter` is blocked in it until the callee yields or ends,
/// and that always switches back on the thread that entered.
#[inline(always)]
pub(crate) fn enter_replace_current(new: *const Header) -> (*const Header, ThreadCache) {
    let c = cache();
    if c.block().is_none() {
        first_enter_on_thread();
    }
    (c.get().current.replace(new), c)
}

/// Records the block [`hot::claim`] gave this thread.
pub(crate) fn set_block(b: &'static Block) {
    CACHE.with(|c| c.block.set(Some(b)));
}

/// Takes this thread's block away (thread exit).
pub(crate) fn take_block() -> Option<&'static Block> {
    CACHE.with(|c| c.block.take())
}

/// No block yet (or the thread is exiting, in which case this runs on every
/// enter: `ensure_altstack` is idempotent).
#[cold]
#[inline(never)]
fn first_enter_on_thread() {
    crate::overflow::ensure_altstack();
    hot::claim();
}
