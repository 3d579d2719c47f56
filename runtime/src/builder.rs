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
    /// Guard kind and source in one byte, so a `Builder` is a pair of
    /// scalars and travels in two registers (see [`Opts`]).
    opts: Opts,
}

/// Guard kind (bit 0: mprotect) and [`Source`] (bits 1-2) of a builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Opts(u8);

const MPROTECT_BIT: u8 = 1;

impl Opts {
    fn new(guard: GuardKind, source: Source) -> Opts {
        let g = match guard {
            GuardKind::Install => 0,
            GuardKind::Mprotect => MPROTECT_BIT,
        };
        Opts(g | (source as u8) << 1)
    }

    #[inline(always)]
    fn guard(self) -> GuardKind {
        if self.0 & MPROTECT_BIT == 0 {
            GuardKind::Install
        } else {
            GuardKind::Mprotect
        }
    }

    #[inline(always)]
    fn source(self) -> Source {
        match self.0 >> 1 {
            0 => Source::Pooled,
            1 => Source::Mutex,
            _ => Source::Unpooled,
        }
    }
}

/// Where a builder's bodies come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The thread's one-body cache, then corral-pool.
    Pooled = 0,
    /// The `Mutex<Vec>` baseline pool.
    Mutex = 1,
    /// A fresh stack each time.
    Unpooled = 2,
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
            opts: Opts::new(GuardKind::probed(), Source::Pooled),
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
        self.opts = Opts::new(kind, self.opts.source());
        self
    }

    /// Whether the coroutine's body comes from (and returns to) the pool.
    /// Unpooled coroutines map a fresh stack and unmap it when they end.
    pub fn pooled(mut self, pooled: bool) -> Builder {
        if self.opts.source() != Source::Mutex {
            let source = if pooled {
                Source::Pooled
            } else {
                Source::Unpooled
            };
            self.opts = Opts::new(self.opts.guard(), source);
        }
        self
    }

    /// Takes bodies from (and returns them to) one process-wide
    /// `Mutex<Vec>` instead of corral-pool: QEMU's pool before 2014, kept as
    /// the baseline that `corral lifecycle --cross-thread` compares against.
    pub fn mutex_pool(mut self) -> Builder {
        self.opts = Opts::new(self.opts.guard(), Source::Mutex);
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
        let body = take_body(self.stack_size, self.opts)?;
        // SAFETY:
        // * we own the body: its entry slot is empty (the last entry, if any,
        //   was moved out when it ran).
        unsafe { body.header().put_entry(entry) };
        Ok(Coroutine::from_parked(body))
    }
}

/// A body for a new coroutine, words cleared: this thread's cached one, else
/// one from the pool (or a new one).
// Not generic and never inlined: one copy of the lookup, and the
// thread-local read in `hot::take` stays in a frame that spans no switch.
// The cache hit calls nothing, so it saves no registers; everything else
// is a tail call.
#[inline(never)]
fn take_body(size: usize, opts: Opts) -> io::Result<Parked> {
    if opts.source() == Source::Pooled {
        if let Some(body) = hot::take(opts.guard(), size) {
            body.clear_words();
            return Ok(body);
        }
    }
    take_body_slow(size, opts)
}

/// [`take_body`] without a cached body of this shape.
#[cold]
#[inline(never)]
fn take_body_slow(size: usize, opts: Opts) -> io::Result<Parked> {
    let guard = opts.guard();
    let body = match opts.source() {
        Source::Pooled => {
            hot::evict_other_size(guard, size);
            take_from_pool(size, guard)?
        }
        Source::Mutex => mutex_pool_get(size, guard)?,
        Source::Unpooled => Parked::new(size, guard, Home::Unpooled)?,
    };
    body.clear_words();
    Ok(body)
}

/// The thread's cache had no body of this shape: the pool's.
#[inline(never)]
fn take_from_pool(size: usize, guard: GuardKind) -> io::Result<Parked> {
    let pool = pool_for(guard);
    loop {
        let body = pool.try_get_or_create(|| {
            set_caps_once();
            Parked::new(size, guard, Home::pooled(guard))
        })?;
        if body.has_shape(size, guard) {
            return Ok(body);
        }
        pool.discard(body);
    }
}

#[cold]
#[inline(never)]
fn spawn_failed(err: io::Error) -> ! {
    panic!("{err}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::usable_size;
    use crate::sys::page_size;

    #[test]
    fn opts_keep_guard_and_source() {
        for guard in [GuardKind::Install, GuardKind::Mprotect] {
            for source in [Source::Pooled, Source::Mutex, Source::Unpooled] {
                let o = Opts::new(guard, source);
                assert_eq!((o.guard(), o.source()), (guard, source));
            }
        }
        let b = Builder::new()
            .mutex_pool()
            .pooled(false)
            .guard(GuardKind::Mprotect);
        assert_eq!(b.opts.source(), Source::Mutex);
        assert_eq!(b.opts.guard(), GuardKind::Mprotect);
        let b = Builder::new().pooled(false).guard(GuardKind::Install);
        assert_eq!(b.opts.source(), Source::Unpooled);
        assert_eq!(b.opts.guard(), GuardKind::Install);
    }

    /// The thread's cached body is only handed out for the stack size it
    /// was made for.
    #[test]
    fn each_coroutine_gets_the_stack_size_it_asked_for() {
        let kind = GuardKind::Mprotect;
        for size in [64 * 1024, 128 * 1024, 128 * 1024, 64 * 1024, 200 * 1024] {
            let co = Builder::new().guard(kind).stack_size(size).spawn(move || {
                let h = crate::tls::current();
                // SAFETY:
                // * the running coroutine's header, body installed; `bounds`
                //   is plain data.
                let b = unsafe { (*(*h).inner()).bounds };
                assert_eq!(b.top - b.bottom, usable_size(size) + page_size());
            });
            co.enter();
            assert!(co.is_terminated());
        }
    }
}
