//! corral's coroutine stack: one `mmap`, `MAP_NORESERVE`, a guard page at the
//! bottom (see [`GuardKind`]).
//!
//! ```text
//!  bottom (limit)                                              top (base)
//!  | guard | deep pages ........................ | kept pages  |
//!           ^ given back by `trim` when the stack goes to the global pool
//! ```

mod error;
mod guard;
mod placed;

use std::io;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The smallest usable size a stack gets (requests below it are raised):
/// room for the trampoline's frames and a small entry.
pub(crate) const MIN_STACK_SIZE: usize = 4096;

pub(crate) use error::explain;
pub use guard::{install_supported, GuardKind};
pub(crate) use placed::StackWord;

use crate::sys::page_size;
use crate::syscall;

/// Default usable stack size: 256 KiB. Address space is reserved, not memory
/// (`MAP_NORESERVE`): only pages a coroutine touches become resident.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// Stacks alive in this process (any guard kind), for error messages and tests.
static LIVE_STACKS: AtomicUsize = AtomicUsize::new(0);

/// Number of coroutine stacks currently mapped by this process.
pub fn live_stacks() -> usize {
    LIVE_STACKS.load(Ordering::Relaxed)
}

/// A coroutine stack: `size` usable bytes above one guard page.
#[derive(Debug)]
pub struct Stack {
    bottom: usize,
    /// `bottom + len`: the (exclusive) top the stack grows down from.
    top: NonZeroUsize,
    len: usize,
    kind: GuardKind,
}

impl Stack {
    /// Maps a stack with at least `size` usable bytes (rounded up to pages).
    ///
    /// On failure the error keeps the raw errno and says what ran out
    /// (address space / `RLIMIT_AS`, or `vm.max_map_count` with the number of
    /// stacks alive).
    pub fn new(size: usize, kind: GuardKind) -> io::Result<Stack> {
        let page = page_size();
        let usable = size
            .max(MIN_STACK_SIZE)
            .checked_add(page - 1)
            .ok_or_else(too_big)?
            & !(page - 1);
        let len = usable.checked_add(page).ok_or_else(too_big)?;
        debug_assert_eq!(usable, usable_size(size));
        crate::overflow::install_handler();
        // SAFETY:
        // * anonymous private mapping at a kernel-chosen address: aliases nothing;
        // * the result is checked against MAP_FAILED before use.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                // MAP_STACK keeps transparent huge pages off stacks (Linux 6.7+),
                // so merged neighbouring stacks do not fault in 2 MiB at a time.
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            let err = io::Error::last_os_error();
            return Err(explain(err, "map", len, kind));
        }
        LIVE_STACKS.fetch_add(1, Ordering::Relaxed);
        // From here on, dropping `stack` unmaps it.
        let stack = Stack {
            bottom: addr as usize,
            top: NonZeroUsize::new(addr as usize + len).expect("a mapping does not end at 0"),
            len,
            kind,
        };
        if let Err(err) = guard::make_guard(kind, addr, page) {
            drop(stack);
            return Err(explain(err, "guard", len, kind));
        }
        Ok(stack)
    }

    /// Usable bytes (without the guard page).
    pub fn size(&self) -> usize {
        self.len - page_size()
    }

    /// How the guard page is made.
    pub fn guard_kind(&self) -> GuardKind {
        self.kind
    }

    /// Highest address (the stack grows down from here).
    pub fn top(&self) -> usize {
        self.top.get()
    }

    /// The guard page's address range.
    pub fn guard_range(&self) -> std::ops::Range<usize> {
        self.bottom..self.bottom + page_size()
    }

    /// Whole mapping, guard included.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.bottom..self.top()
    }

    /// Address bounds (a copy the overflow handler and the release hook read).
    pub(crate) fn bounds(&self) -> Bounds {
        Bounds {
            bottom: self.bottom,
            top: self.top(),
            kind: self.kind,
        }
    }
}

/// Where a stack lies, copied out of the [`Stack`] for the body, the release
/// hook and the overflow handler.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    pub(crate) bottom: usize,
    pub(crate) top: usize,
    pub(crate) kind: GuardKind,
}

impl Bounds {
    /// End of the guard page (first usable byte).
    pub(crate) fn guard_end(&self) -> usize {
        self.bottom + page_size()
    }

    /// Gives back the pages between the guard and `keep_from` (exclusive) with
    /// `MADV_DONTNEED`: they read as zero and cost no memory until touched.
    /// An installed guard marker survives `MADV_DONTNEED`, and the range never
    /// includes the guard page anyway.
    ///
    /// # Safety
    ///
    /// * Nothing live may be stored between the guard and `keep_from` (the
    ///   stack's owner is parked above `keep_from`).
    pub(crate) unsafe fn trim_below(&self, keep_from: usize) {
        let start = self.guard_end();
        let end = keep_from & !(page_size() - 1);
        if end > start {
            // Failure only costs memory, never correctness: ignore it.
            let _ = syscall!(madvise(
                start as *mut libc::c_void,
                end - start,
                libc::MADV_DONTNEED
            ));
        }
    }
}

/// The usable size a stack asked for with `size` bytes gets (whole pages,
/// at least `MIN_STACK_SIZE` (4 KiB)).
#[inline]
pub fn usable_size(size: usize) -> usize {
    let page = page_size();
    size.max(MIN_STACK_SIZE).saturating_add(page - 1) & !(page - 1)
}

fn too_big() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "coroutine stack size overflows usize",
    )
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY:
        // * `bottom..bottom+len` is the mapping this Stack made and owns;
        // * no coroutine runs on it any more (the owner dropped it).
        let rc = unsafe { libc::munmap(self.bottom as *mut libc::c_void, self.len) };
        debug_assert_eq!(rc, 0, "munmap of a coroutine stack failed");
        LIVE_STACKS.fetch_sub(1, Ordering::Relaxed);
    }
}
