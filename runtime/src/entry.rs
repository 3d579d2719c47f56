//! The entry closure of a coroutine, kept inline in its slot: creating a
//! pooled coroutine allocates nothing when the closure fits in
//! [`INLINE_ENTRY_BYTES`] (larger closures are boxed).

use std::mem::{align_of, size_of, MaybeUninit};
use std::ptr;

/// Closures up to this size (and alignment 16) are stored without allocation.
pub const INLINE_ENTRY_BYTES: usize = 64;

#[repr(C, align(16))]
struct Storage([MaybeUninit<u8>; INLINE_ENTRY_BYTES]);

/// Holds at most one entry closure, not yet run.
pub(crate) struct EntrySlot {
    /// Runs (and consumes) the closure in `storage`; `None` when empty.
    run: Option<unsafe fn(*mut Storage)>,
    storage: Storage,
}

impl EntrySlot {
    pub(crate) const fn new() -> EntrySlot {
        EntrySlot {
            run: None,
            storage: Storage([MaybeUninit::uninit(); INLINE_ENTRY_BYTES]),
        }
    }

    /// Stores `f`. The slot must be empty (a previous entry was taken).
    #[inline]
    pub(crate) fn put<F: FnOnce() + Send + 'static>(&mut self, f: F) {
        debug_assert!(self.run.is_none(), "entry slot already holds a closure");
        let dst = self.storage.0.as_mut_ptr();
        if size_of::<F>() <= INLINE_ENTRY_BYTES && align_of::<F>() <= align_of::<Storage>() {
            // SAFETY:
            // * the storage is large and aligned enough for F (checked above);
            // * it holds no live value (the slot is empty).
            unsafe { ptr::write(dst.cast::<F>(), f) };
            self.run = Some(run_inline::<F>);
        } else {
            let boxed = Box::new(f);
            // SAFETY:
            // * a Box pointer fits in the storage and is 16-byte aligned enough;
            // * the storage holds no live value.
            unsafe { ptr::write(dst.cast::<Box<F>>(), boxed) };
            self.run = Some(run_boxed::<F>);
        }
    }

    /// Takes the stored closure out and runs it.
    ///
    /// # Safety
    ///
    /// * The slot must hold a closure (`put` was called since the last run).
    /// * The slot must not be touched by anyone else while the closure runs
    ///   except through another `put` after the closure was moved out (which
    ///   happens first thing in `run_*`).
    #[inline]
    pub(crate) unsafe fn run(this: *mut EntrySlot) {
        // SAFETY:
        // * `this` is valid (caller); `run` is set because a closure is stored.
        let run = unsafe { (*this).run.take().unwrap_unchecked() };
        // SAFETY:
        // * `run` matches the type written by `put`; the storage is initialised.
        unsafe { run(ptr::addr_of_mut!((*this).storage)) }
    }
}

/// # Safety
///
/// * `p` holds an initialised `F` written by `EntrySlot::put`; it is moved out.
unsafe fn run_inline<F: FnOnce()>(p: *mut Storage) {
    // SAFETY:
    // * `p` holds an initialised F (caller); reading moves it out exactly once.
    let f = unsafe { ptr::read(p.cast::<F>()) };
    f()
}

/// # Safety
///
/// * `p` holds an initialised `Box<F>` written by `EntrySlot::put`; it is moved out.
unsafe fn run_boxed<F: FnOnce()>(p: *mut Storage) {
    // SAFETY:
    // * `p` holds an initialised Box<F> (caller); reading moves it out exactly once.
    let f = unsafe { ptr::read(p.cast::<Box<F>>()) };
    f()
}
