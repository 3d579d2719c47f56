//! The runtime's thread-locals: the running coroutine (a thread-local
//! declared in assembly, read and written by `asm!` blocks), and the
//! one-body cache (a Rust thread-local reached through `#[inline(never)]`
//! accessors).
//!
//! A coroutine that yields on one thread may be entered again from another
//! one. Code running on the coroutine's stack must then not use a
//! thread-local address computed before the switch: the compiler is free to
//! keep such an address in a register or spill slot across a call it cannot
//! see through (QEMU hit this and added noinline TLS accessors). Every
//! access here recomputes the address on the thread that makes it: an
//! `asm!` block the compiler may neither merge nor move, or a real call.
//! User code has the same hazard with its own thread-locals: read
//! them through a `#[inline(never)]` function, and never hold a reference
//! into one across `yield_now`.
//!
//! The exceptions are `#[inline(never)]` functions whose own frame cannot
//! change thread and that never stay on a coroutine's stack across a switch:
//! `Coroutine::try_enter`'s inner function (see [`enter_replace_current`])
//! and the builder's `take_cached`, which read the one-body cache (hot.rs)
//! directly, saving calls.

use std::arch::{asm, global_asm};
use std::cell::Cell;
use std::ptr::{self, NonNull};

use crate::body::Header;
use crate::hot::{self, Block, Counts};

// The running coroutine and the "warm" flag live in thread-locals declared
// here, in assembly, rather than in `CACHE`: the C ABI's enter and yield
// (c_abi.rs) are assembly and must reach them without a call, and stable
// Rust gives assembly no way to address a Rust thread-local. Accessed with
// the initial-exec model (a GOT slot holding the offset from the thread
// pointer; the linker turns it into a constant in executables). That works
// for executables, for shared libraries loaded at start and for ones loaded
// with dlopen while the C library's static TLS surplus lasts (16 bytes
// here; glibc reserves hundreds). Each access is an `asm!` block the
// compiler cannot merge or keep across a switch, so the accessors below may
// be inlined anywhere, and they are async-signal-safe (the overflow handler
// reads `current`).
global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 3",
    ".globl corral_runtime_current_v1",
    ".hidden corral_runtime_current_v1",
    ".type corral_runtime_current_v1, @object",
    ".size corral_runtime_current_v1, 8",
    "corral_runtime_current_v1:",
    ".zero 8",
    // Right after `current`: the C ABI's enter reads it at `current + 8`.
    ".globl corral_runtime_warm_v1",
    ".hidden corral_runtime_warm_v1",
    ".type corral_runtime_warm_v1, @object",
    ".size corral_runtime_warm_v1, 8",
    "corral_runtime_warm_v1:",
    ".zero 8",
    ".popsection",
);

/// Stores `$value` (a word) into this thread's copy of the assembly
/// thread-local `$sym` (declared above).
macro_rules! store_asm_tls {
    ($sym:literal, $value:expr) => {
        // SAFETY:
        // * writes this thread's copy of the thread-local declared above:
        //   its GOT slot holds the offset from the thread pointer.
        unsafe {
            asm!(
                concat!("mov {t}, qword ptr [rip + ", $sym, "@GOTTPOFF]"),
                "mov qword ptr fs:[{t}], {v}",
                t = out(reg) _,
                v = in(reg) $value,
                options(nostack, preserves_flags),
            )
        }
    };
}

/// The running coroutine's header on this thread (innermost when nested),
/// or null outside coroutines.
#[inline(always)]
pub(crate) fn current() -> *const Header {
    let h: *const Header;
    // SAFETY:
    // * reads this thread's `corral_runtime_current_v1` (declared above):
    //   the GOT slot holds its offset from the thread pointer.
    unsafe {
        asm!(
            "mov {t}, qword ptr [rip + corral_runtime_current_v1@GOTTPOFF]",
            "mov {h}, qword ptr fs:[{t}]",
            t = out(reg) _,
            h = out(reg) h,
            options(nostack, readonly, preserves_flags),
        )
    };
    h
}

/// Makes `h` this thread's running coroutine.
#[inline(always)]
pub(crate) fn set_current(h: *const Header) {
    store_asm_tls!("corral_runtime_current_v1", h);
}

/// Whether this thread is set up for coroutines (signal stack, counter
/// block): what the C ABI's enter tests before taking its fast path.
fn set_warm(warm: bool) {
    store_asm_tls!("corral_runtime_warm_v1", warm as usize);
}

/// All of the runtime's per-thread state but the running coroutine in one
/// thread-local, so a frame computes its address once: the one-body cache
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
    block: Cell<Option<&'static Block>>,
    slot: Cell<*mut Header>,
    /// The cache's counters; other threads read them through the block.
    counts: Counts,
}

thread_local! {
    static CACHE: Cache = const {
        Cache {
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
}

/// This thread's cache. Inlined only into `#[inline(never)]` functions that
/// do not span a switch, or into `Coroutine::try_enter`'s inner function
/// (see [`enter_replace_current`]).
#[inline(always)]
pub(crate) fn cache() -> ThreadCache {
    CACHE.with(|c| ThreadCache(NonNull::from(c)))
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
    let prev = current();
    set_current(new);
    (prev, c)
}

/// Records the block [`hot::claim`] gave this thread.
pub(crate) fn set_block(b: &'static Block) {
    CACHE.with(|c| c.block.set(Some(b)));
    set_warm(true);
}

/// Takes this thread's block away (thread exit).
pub(crate) fn take_block() -> Option<&'static Block> {
    set_warm(false);
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
