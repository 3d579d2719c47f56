//! Building coroutines with a custom stack size, guard kind, or no pooling.

use std::io;

use crate::body::Parked;
use crate::coroutine::Coroutine;
use crate::hot;
use crate::pool::{mutex_pool_get, pool_for, set_caps_once, Home};
use crate::stack::{GuardKind, DEFAULT_STACK_SIZE};

/// Options for a new coroutine. Defaults: [`DEFAULT_STACK_SIZE`], the probed
/// [`GuardKind`], pooled.
///
/// Pooled coroutines of one guard kind share one pool; a pooled body whose
/// stack size differs from the one asked for is dropped and a new one made,
/// so a program should use one pooled stack size per guard kind.
#[derive(Clone, Copy, Debug)]
pub struct Builder {
    stack_size: usize,
    guard: GuardKind,
    pooled: bool,
    mutex_pool: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// The defaults.
    #[inline]
    pub fn new() -> Builder {
        Builder {
            stack_size: DEFAULT_STACK_SIZE,
            guard: GuardKind::probed(),
            pooled: true,
            mutex_pool: false,
        }
    }

    /// Usable stack bytes (rounded up to whole pages, at least 4 KiB).
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = bytes;
        self
    }

    /// Forces a guard kind. `Install` on a kernel without
    /// `MADV_GUARD_INSTALL` makes every spawn fail with EINVAL.
    pub fn guard(mut self, kind: GuardKind) -> Builder {
        self.guard = kind;
        self
    }

    /// Whether the coroutine's body comes from (and returns to) the pool.
    /// Unpooled coroutines map a fresh stack and unmap it when they end.
    pub fn pooled(mut self, pooled: bool) -> Builder {
        self.pooled = pooled;
        self
    }

    /// Takes bodies from (and returns them to) one process-wide
    /// `Mutex<Vec>` instead of corral-pool: QEMU's pool before 2014, kept as
    /// the baseline that `corral lifecycle --cross-thread` compares against.
    pub fn mutex_pool(mut self) -> Builder {
        self.mutex_pool = true;
        self
    }

    /// Creates the coroutine (not started: [`Coroutine::enter`] runs it).
    ///
    /// # Panics
    ///
    /// With the clear stack error if the kernel refuses a stack.
    #[inline]
    pub fn spawn(self, entry: impl FnOnce() + Send + 'static) -> Coroutine {
        match self.try_spawn(entry) {
            Ok(co) => co,
            Err(err) => spawn_failed(err),
        }
    }

    /// Creates the coroutine, or says why the kernel refused its stack.
    #[inline]
    pub fn try_spawn(self, entry: impl FnOnce() + Send + 'static) -> io::Result<Coroutine> {
        let body = self.take_body()?;
        // SAFETY:
        // * we own the body: its entry slot is empty (the last entry, if any,
        //   was moved out when it ran).
        unsafe { body.header().put_entry(entry) };
        Ok(Coroutine::from_parked(body))
    }

    /// A body for a new coroutine, words cleared: this thread's cached one,
    /// else one from the pool (or a new one).
    // Not generic and never inlined: one copy of the lookup, and the
    // thread-local read in `hot::take` stays in a frame that spans no switch.
    #[inline(never)]
    fn take_body(self) -> io::Result<Parked> {
        let body = if self.mutex_pool {
            mutex_pool_get(self.stack_size, self.guard)?
        } else if !self.pooled {
            Parked::new(self.stack_size, self.guard, Home::Unpooled)?
        } else if let Some(body) = hot::take(self.guard, self.stack_size) {
            body
        } else {
            self.take_from_pool()?
        };
        body.clear_words();
        Ok(body)
    }

    /// The thread's cache had no body of this shape: the pool's.
    #[inline(never)]
    fn take_from_pool(self) -> io::Result<Parked> {
        let pool = pool_for(self.guard);
        loop {
            let body = pool.try_get_or_create(|| {
                set_caps_once();
                Parked::new(self.stack_size, self.guard, Home::Pooled)
            })?;
            if body.has_shape(self.stack_size, self.guard) {
                return Ok(body);
            }
            pool.discard(body);
        }
    }
}

#[cold]
#[inline(never)]
fn spawn_failed(err: io::Error) -> ! {
    panic!("{err}")
}
