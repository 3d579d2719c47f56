//! The entry closure of a coroutine, kept inline: creating a pooled
//! coroutine allocates nothing when the closure fits in
//! [`INLINE_ENTRY_BYTES`] (larger closures are boxed).
//!
//! The slot is split in two: the function pointer that runs the closure
//! ([`EntryFn`]) lives in the header's first cache line, beside the state
//! word, and the closure's bytes ([`EntryStorage`]) in the body. A closure
//! that captures nothing is then written to the one line the first `enter`
//! needs anyway: a coroutine created on one thread and entered on another
//! moves one line, not two.

use std::mem::{align_of, size_of, MaybeUninit};
use std::ptr;

/// Closures up to this size (and alignment 16) are stored without allocation.
pub const INLINE_ENTRY_BYTES: usize = 64;

/// The closure's bytes.
#[repr(C, align(16))]
pub(crate) struct EntryStorage([MaybeUninit<u8>; INLINE_ENTRY_BYTES]);

impl EntryStorage {
    pub(crate) const fn new() -> EntryStorage {
        EntryStorage([MaybeUninit::uninit(); INLINE_ENTRY_BYTES])
    }
}

/// Runs (and consumes) the closure in the storage; `None` when the slot is empty.
#[derive(Clone, Copy)]
pub(crate) struct EntryFn(Option<unsafe fn(*mut EntryStorage)>);

impl EntryFn {
    pub(crate) const EMPTY: EntryFn = EntryFn(None);
}

/// Stores `f`: its bytes in `storage`, how to run it in `run`.
///
/// # Safety
///
/// * `run` and `storage` belong to one body that the caller owns, and the
///   slot is empty (`*run` is `EMPTY`: the last entry, if any, was run).
#[inline]
pub(crate) unsafe fn put<F: FnOnce() + Send + 'static>(
    run: *mut EntryFn,
    storage: *mut EntryStorage,
    f: F,
) {
    #[cfg(debug_assertions)]
    {
        // SAFETY:
        // * `run` is valid and owned (caller).
        let empty = unsafe { (*run).0.is_none() };
        debug_assert!(empty, "entry slot already holds a closure");
    }
    let dst = storage.cast::<u8>();
    if size_of::<F>() <= INLINE_ENTRY_BYTES && align_of::<F>() <= align_of::<EntryStorage>() {
        // SAFETY:
        // * the storage is large and aligned enough for F (checked above);
        // * it holds no live value (the slot is empty).
        unsafe {
            ptr::write(dst.cast::<F>(), f);
            *run = EntryFn(Some(run_inline::<F>));
        }
    } else {
        let boxed = Box::new(f);
        // SAFETY:
        // * a Box pointer fits in the storage and is aligned enough;
        // * the storage holds no live value.
        unsafe {
            ptr::write(dst.cast::<Box<F>>(), boxed);
            *run = EntryFn(Some(run_boxed::<F>));
        }
    }
}

/// Takes the stored closure out and runs it.
///
/// # Safety
///
/// * The slot must hold a closure (`put` was called since the last run), and
///   belong to a body the caller owns; nobody touches it while the closure
///   runs, except a `put` after the closure was moved out (which happens
///   first thing in `run_*`).
#[inline]
pub(crate) unsafe fn run(run: *mut EntryFn, storage: *mut EntryStorage) {
    // SAFETY:
    // * `run` is valid and set because a closure is stored (caller).
    let f = unsafe { (*run).0.unwrap_unchecked() };
    // Only `put`'s debug check reads an emptied slot: release builds save
    // the store.
    #[cfg(debug_assertions)]
    {
        // SAFETY:
        // * as above.
        unsafe { *run = EntryFn::EMPTY };
    }
    // SAFETY:
    // * `f` matches the type written by `put`; the storage is initialised.
    unsafe { f(storage) }
}

/// # Safety
///
/// * `p` holds an initialised `F` written by `put`; it is moved out.
unsafe fn run_inline<F: FnOnce()>(p: *mut EntryStorage) {
    // SAFETY:
    // * `p` holds an initialised F (caller); reading moves it out exactly once.
    let f = unsafe { ptr::read(p.cast::<F>()) };
    f()
}

/// # Safety
///
/// * `p` holds an initialised `Box<F>` written by `put`; it is moved out.
unsafe fn run_boxed<F: FnOnce()>(p: *mut EntryStorage) {
    // SAFETY:
    // * `p` holds an initialised Box<F> (caller); reading moves it out exactly once.
    let f = unsafe { ptr::read(p.cast::<Box<F>>()) };
    f()
}
