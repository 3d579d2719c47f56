//! The one door through which the pool reaches atomics, `UnsafeCell` and
//! thread-locals.
//!
//! Under `--cfg loom` every item comes from [loom] so the model checker sees
//! every shared access; otherwise they are the `std` items (the `UnsafeCell`
//! wrapper below has loom's closure-based API and compiles to nothing).
//!
//! Loom atomics cannot be built in a `const` context, so under loom the pool's
//! constructors are plain functions: see [`loom_const_fn!`].

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub use loom::thread::LocalKey;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub use std::thread::LocalKey;

/// `std::cell::UnsafeCell` behind loom's `with` / `with_mut` API.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a shared raw pointer to the contents.
    #[allow(dead_code)]
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a mutable raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Declares a function that is `const` normally and a plain `fn` under loom
/// (whose atomics register with the running model and so cannot be `const`).
macro_rules! loom_const_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident $(<$($gen:tt),*>)? ($($args:tt)*) -> $ret:ty $body:block) => {
        #[cfg(not(loom))]
        $(#[$meta])*
        $vis const fn $name $(<$($gen),*>)? ($($args)*) -> $ret $body

        #[cfg(loom)]
        $(#[$meta])*
        $vis fn $name $(<$($gen),*>)? ($($args)*) -> $ret $body
    };
}
pub(crate) use loom_const_fn;
