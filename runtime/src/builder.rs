//! Building coroutines with a custom stack size, guard kind, or no pooling.

use std::io;

use crate::body::{Parked, MAX_REQUESTED_SIZE};
use crate::coroutine::Coroutine;
use crate::hot;
use corral_pool::Pool;

use crate::pool::{mutex_pool_get, set_caps_once, with_pool, Home};
use crate::stack::{GuardKind, DEFAULT_STACK_SIZE};

/// Options for a new coroutine. Defaults: [`DEFAULT_STACK_SIZE`], the probed
/// [`GuardKind`], pooled.
///
/// Pooled coroutines of one guard kind share one pool; a pooled body whose
/// stack size differs from the one asked for is dropped and a new one made,
/// so a program should use one pooled stack size per guard kind.
#[derive(Clone, Copy)]
pub struct Builder {
    /// The stack size shifted left by [`OPTS_BITS`], and the [`Opts`] in the
    /// low bits: one word, which travels in one register and is the very
    /// [`shape`] a cached body of this builder has (a builder that does not
    /// pool has source bits no body's shape has), so the cache lookup
    /// compares one word.
    word: usize,
}

/// Bits of [`Builder::word`] below the stack size.
const OPTS_BITS: u32 = 3;

/// Guard kind (bit 0: mprotect) and [`Source`] (bits 1-2) of a builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Opts(u8);

const MPROTECT_BIT: u8 = 1;

impl Opts {
    #[inline(always)]
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

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("stack_size", &self.size())
            .field("guard", &self.opts().guard())
            .field("source", &self.opts().source())
            .finish()
    }
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
        Builder::from_parts(
            DEFAULT_STACK_SIZE,
            Opts::new(GuardKind::probed(), Source::Pooled),
        )
    }

    #[inline(always)]
    fn from_parts(stack_size: usize, opts: Opts) -> Builder {
        debug_assert!(stack_size <= MAX_REQUESTED_SIZE);
        Builder {
            word: stack_size << OPTS_BITS | opts.0 as usize,
        }
    }

    #[inline(always)]
    fn size(self) -> usize {
        self.word >> OPTS_BITS
    }

    #[inline(always)]
    fn opts(self) -> Opts {
        Opts((self.word & ((1 << OPTS_BITS) - 1)) as u8)
    }

    /// Usable stack bytes (rounded up to whole pages, at least 4 KiB; sizes
    /// above `isize::MAX` are clamped to it, which no kernel grants).
    pub fn stack_size(self, bytes: usize) -> Builder {
        Builder::from_parts(bytes.min(MAX_REQUESTED_SIZE), self.opts())
    }

    /// Forces a guard kind. `Install` on a kernel without
    /// `MADV_GUARD_INSTALL` makes every spawn fail with EINVAL.
    pub fn guard(self, kind: GuardKind) -> Builder {
        Builder::from_parts(self.size(), Opts::new(kind, self.opts().source()))
    }

    /// Whether the coroutine's body comes from (and returns to) the pool.
    /// Unpooled coroutines map a fresh stack and unmap it when they end.
    pub fn pooled(self, pooled: bool) -> Builder {
        if self.opts().source() == Source::Mutex {
            return self;
        }
        let source = if pooled {
            Source::Pooled
        } else {
            Source::Unpooled
        };
        Builder::from_parts(self.size(), Opts::new(self.opts().guard(), source))
    }

    /// Takes bodies from (and returns them to) one process-wide
    /// `Mutex<Vec>` instead of corral-pool: QEMU's pool before 2014, kept as
    /// the baseline that `corral lifecycle --cross-thread` compares against.
    pub fn mutex_pool(self) -> Builder {
        Builder::from_parts(self.size(), Opts::new(self.opts().guard(), Source::Mutex))
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
        let body = match take_cached(self.word) {
            Some(body) => body,
            None => match take_pooled(self.word) {
                Some(body) => body,
                None => take_body_slow(self.size(), self.opts())?,
            },
        };
        // SAFETY:
        // * we own the body: its entry slot is empty (the last entry, if any,
        //   was moved out when it ran).
        unsafe { body.header().put_entry(entry) };
        Ok(Coroutine::from_parked(body))
    }
}

/// This thread's cached body for a new coroutine of a builder's `word`,
/// words cleared; `None` when it has none (or the builder does not pool).
// Not generic and never inlined: one copy of the lookup, and the
// thread-local read in `hot::take` stays in a frame that spans no switch.
// A leaf that returns a nullable pointer: no registers saved, and the
// caller tests one register before calling `take_body_slow` itself.
#[inline(never)]
fn take_cached(word: usize) -> Option<Parked> {
    // The builder's word is the shape of the bodies it may take (see
    // `Builder::word`): one value live across the thread-local access
    // (which the compiler treats as a call), one compare, and no test of
    // the source (an unpooled or mutex builder's word matches no body).
    let body = hot::take(word)?;
    body.clear_words();
    Some(body)
}

/// A body from the pool of a pooling builder's `word` when the thread's
/// slot had none, words cleared; `None` when the builder does not pool, the pool has no
/// body to give without making one, or the one it gave has another stack
/// size (it is dropped). A leaf like [`take_cached`]: a thread that creates
/// the coroutines other threads run takes every body here, and the pool's
/// fast path needs no registers saved.
#[inline(never)]
fn take_pooled(word: usize) -> Option<Parked> {
    let opts = Opts((word & ((1 << OPTS_BITS) - 1)) as u8);
    if opts.source() != Source::Pooled {
        return None;
    }
    let body = with_pool(opts.guard(), |pool| pool.try_get())?;
    if body.has_shape_word(word) {
        body.clear_words();
        return Some(body);
    }
    drop_other_shape(body);
    None
}

/// [`take_pooled`] got a body of another stack size: dropped (counted).
#[cold]
#[inline(never)]
fn drop_other_shape(body: Parked) {
    with_pool(body.kind(), |pool| pool.discard(body));
}

/// A body for a new coroutine, words cleared, when [`take_cached`] had none:
/// from the pool (or a new one).
#[cold]
#[inline(never)]
fn take_body_slow(size: usize, opts: Opts) -> io::Result<Parked> {
    let guard = opts.guard();
    let body = match opts.source() {
        Source::Pooled => {
            hot::evict_other_shape(size, guard);
            take_from_pool(size, guard)?
        }
        Source::Mutex => mutex_pool_get(size, guard)?,
        Source::Unpooled => Parked::new(size, guard, Home::Unpooled)?,
    };
    body.clear_words();
    Ok(body)
}

/// The thread's cache had no body of this shape: the pool's.
#[inline(always)]
fn take_from_pool(size: usize, guard: GuardKind) -> io::Result<Parked> {
    with_pool(guard, |pool| take_from(pool, size, guard))
}

/// [`take_from_pool`] with the pool of `guard`.
#[inline(always)]
fn take_from(pool: &'static Pool<Parked>, size: usize, guard: GuardKind) -> io::Result<Parked> {
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
        assert_eq!(b.opts().source(), Source::Mutex);
        assert_eq!(b.opts().guard(), GuardKind::Mprotect);
        let b = Builder::new().pooled(false).guard(GuardKind::Install);
        assert_eq!(b.opts().source(), Source::Unpooled);
        assert_eq!(b.opts().guard(), GuardKind::Install);
    }

    /// A pooling builder's word is the shape of the bodies it may take from
    /// the cache; a builder that does not pool matches no body's shape.
    #[test]
    fn builder_word_is_the_shape_of_its_bodies() {
        for guard in [GuardKind::Install, GuardKind::Mprotect] {
            for size in [4096, 256 * 1024, MAX_REQUESTED_SIZE] {
                let b = Builder::new().guard(guard).stack_size(size);
                assert_eq!(b.word, crate::body::shape(size, guard));
                assert_eq!((b.size(), b.opts().guard()), (size, guard));
                for other in [b.pooled(false), b.mutex_pool()] {
                    assert_ne!(other.word & !1, crate::body::shape(size, guard) & !1);
                }
            }
        }
        assert_eq!(
            Builder::new().stack_size(usize::MAX).size(),
            MAX_REQUESTED_SIZE
        );
    }

    /// The thread's cached body is only handed out for the stack size it
    /// was made for.
    #[test]
    fn each_coroutine_gets_the_stack_size_it_asked_for() {
        // The thread's one cached body serves both guard kinds: a create
        // must never get a body of the other kind or size.
        let (m, p) = (GuardKind::Mprotect, GuardKind::probed());
        let shapes = [
            (m, 64 * 1024),
            (m, 128 * 1024),
            (m, 128 * 1024),
            (p, 128 * 1024),
            (m, 128 * 1024),
            (m, 64 * 1024),
            (p, 64 * 1024),
            (m, 200 * 1024),
        ];
        for (kind, size) in shapes {
            let co = Builder::new().guard(kind).stack_size(size).spawn(move || {
                let h = crate::tls::current();
                // SAFETY:
                // * the running coroutine's header, body installed: its stack
                //   word names its mapped stack.
                let b = unsafe { (*(*h).inner()).stack.bounds() };
                assert_eq!(b.top - b.bottom, usable_size(size) + page_size());
                assert_eq!(b.kind, kind);
            });
            co.enter();
            assert!(co.is_terminated());
        }
    }
}
