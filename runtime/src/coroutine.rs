//! The coroutine handle and QEMU's operations on it: enter, yield, current.

use std::fmt;
use std::io;
use std::panic::resume_unwind;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::body::{Event, Header, Parked, ENTRY_OFFSET, RUNNING, SLOTS_OFFSET};
use crate::builder::Builder;
use crate::hot;
use crate::switch::{self, Slots};
use crate::tls;
use crate::tls::ThreadCache;

/// Handle to a coroutine: a pointer to its type-stable header and the
/// generation it was created with. `Copy`, `Send`, `Sync`; equal handles name
/// the same coroutine.
///
/// A handle outlives its coroutine safely: once the coroutine terminated (and
/// its slot was perhaps reused) the generation no longer matches, so
/// [`enter`](Coroutine::enter) panics with a clear message instead of
/// touching someone else's coroutine.
///
/// A coroutine that is created (or yields) and is never entered again is
/// leaked with its stack, as in QEMU: every coroutine must run to its end.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Coroutine {
    header: NonNull<Header>,
    /// The state word of this coroutine while it is not running:
    /// `generation << 1` (kept shifted, so `enter` compares it as is).
    idle: u64,
}

// SAFETY:
// * the header is type-stable (never freed) and every shared access to it
//   goes through atomics; the body behind it is only touched by whoever wins
//   the RUNNING bit of the state word (a single CAS in `enter`).
unsafe impl Send for Coroutine {}
// SAFETY:
// * `&Coroutine` offers nothing beyond what a copy of it offers (see Send).
unsafe impl Sync for Coroutine {}

/// Three words owned by the event loop (corral-aio): home context,
/// `scheduled` tag, intrusive queue link. All are 0 when a coroutine is
/// created (the runtime clears them when a new coroutine takes the slot).
#[derive(Debug, Default)]
pub struct EventLoopWords {
    /// The coroutine's home context (aio's choice of encoding).
    pub home: AtomicUsize,
    /// Set while the coroutine is scheduled (catches double scheduling).
    pub scheduled: AtomicUsize,
    /// Intrusive link for the event loop's queues.
    pub link: AtomicUsize,
}

impl EventLoopWords {
    pub(crate) const fn new() -> EventLoopWords {
        EventLoopWords {
            home: AtomicUsize::new(0),
            scheduled: AtomicUsize::new(0),
            link: AtomicUsize::new(0),
        }
    }
}

impl Coroutine {
    /// A pooled coroutine with the default stack and guard kind.
    ///
    /// # Panics
    ///
    /// Panics with the clear stack error (what ran out) if the kernel refuses
    /// a stack; [`try_new`](Coroutine::try_new) returns it instead.
    #[inline]
    pub fn new(entry: impl FnOnce() + Send + 'static) -> Coroutine {
        Builder::new().spawn(entry)
    }

    /// Like [`new`](Coroutine::new), returning the stack error as a value.
    pub fn try_new(entry: impl FnOnce() + Send + 'static) -> io::Result<Coroutine> {
        Builder::new().try_spawn(entry)
    }

    /// A builder for a custom stack size, guard kind, or an unpooled coroutine.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Makes a handle for a body just taken from the pool (or made) whose
    /// words were cleared (see [`Parked::clear_words`]).
    #[inline]
    pub(crate) fn from_parked(parked: Parked) -> Coroutine {
        let header = parked.into_raw();
        // SAFETY:
        // * headers are type-stable.
        let h = unsafe { header.as_ref() };
        Coroutine {
            header,
            // Not running: the state word is `generation << 1`.
            idle: h.state.load(Ordering::Relaxed),
        }
    }

    #[inline]
    fn header(&self) -> &Header {
        // SAFETY:
        // * headers are type-stable: valid for the whole process.
        unsafe { self.header.as_ref() }
    }

    /// Runs the coroutine until it yields or terminates.
    ///
    /// Entering from inside another coroutine nests: when this one yields or
    /// terminates, the caller continues. May be called from any thread
    /// (the coroutine then continues on that thread).
    ///
    /// # Panics
    ///
    /// * "coroutine re-entered recursively" if it is running (on this thread
    ///   or, racing, on another);
    /// * "coroutine entered after it terminated" if it finished;
    /// * with the coroutine's own payload if its entry panicked (the body
    ///   goes back to the pool first, intact).
    #[inline]
    pub fn enter(&self) {
        if let Err(err) = self.try_enter() {
            enter_refused(err);
        }
    }

    /// Like [`enter`](Coroutine::enter), but a coroutine that cannot be
    /// entered is reported as a value instead of a panic. A panic inside the
    /// coroutine still resurfaces here.
    #[inline]
    pub fn try_enter(&self) -> Result<(), EnterError> {
        enter_raw(self.header, self.idle)
    }
}

/// [`Coroutine::try_enter`], with the handle passed in registers.
// Never inlined: the thread-local accesses below must not be merged with
// the caller's, whose frame may change thread across a yield (see tls.rs).
#[inline(never)]
fn enter_raw(header: NonNull<Header>, idle: u64) -> Result<(), EnterError> {
    let (prev, cache) = enter_begin(header, idle)?;
    // SAFETY:
    // * `enter_begin` gave us the RUNNING bit, hence the body; it was
    //   installed when this generation was created.
    let message = unsafe { switch::resume(slots_of(header), 0) };
    enter_end(header, prev, cache, message);
    Ok(())
}

/// The switch slots of a body.
#[inline(always)]
pub(crate) fn slots_of(header: NonNull<Header>) -> *mut Slots {
    // SAFETY:
    // * headers are type-stable; only the address is computed here.
    unsafe { ptr::addr_of_mut!((*header.as_ref().inner()).slots) }
}

/// First half of an enter (shared with the C ABI's): take the RUNNING bit
/// with one CAS and make the coroutine current. Returns what
/// [`enter_end`] needs back. Only for frames that never change thread
/// (see `tls::enter_replace_current`).
#[inline(always)]
pub(crate) fn enter_begin(
    header: NonNull<Header>,
    idle: u64,
) -> Result<(*const Header, ThreadCache), EnterError> {
    // SAFETY:
    // * headers are type-stable: valid for the whole process.
    let h = unsafe { header.as_ref() };
    if let Err(state) =
        h.state
            .compare_exchange(idle, idle | RUNNING, Ordering::Acquire, Ordering::Relaxed)
    {
        return Err(refused(state, idle));
    }
    let (prev, cache) = tls::enter_replace_current(h);
    hot::lend_stack(h, cache);
    Ok((prev, cache))
}

/// [`enter_begin`] from a raw handle, for the C ABI's general path (its
/// fast path claims in assembly, `c_abi::enter`, with the same test).
///
/// # Safety
///
/// * `word` is non-null and came from [`Coroutine::into_raw`].
pub(crate) unsafe fn enter_begin_raw(
    word: usize,
) -> Result<(NonNull<Header>, *const Header), EnterError> {
    // SAFETY:
    // * caller's contract.
    let co = unsafe { Coroutine::from_raw(NonNull::new_unchecked(word as *mut _)) };
    enter_begin(co.header, co.idle).map(|(prev, _)| (co.header, prev))
}

/// Second half of an enter, once the coroutine switched back with
/// `message`: restore the current coroutine, then act on the event.
#[inline(always)]
pub(crate) fn enter_end(
    header: NonNull<Header>,
    prev: *const Header,
    cache: ThreadCache,
    message: usize,
) {
    tls::set_current(prev);
    let res = Event::from_message(message);
    // The two common cases inline: nothing but the header and the cache's
    // address kept across the switch (the generation is read back from the
    // state word, which we own while RUNNING).
    match res {
        Event::Finished => finish::<false>(header, true, cache),
        Event::Yielded => {
            // SAFETY:
            // * headers are type-stable: valid for the whole process.
            let h = unsafe { header.as_ref() };
            // The coroutine is off its stack now: let anyone enter it. Only
            // the RUNNING holder writes the state word, so a plain load
            // reads our own CAS's value.
            let running = h.state.load(Ordering::Relaxed);
            // SAFETY:
            // * we still hold the RUNNING bit: the body is ours.
            unsafe { *h.parked.get() = false };
            h.state.store(running & !RUNNING, Ordering::Release);
        }
        _ => after_switch_slow(header, res, cache),
    }
}

/// The refused CAS of `enter_raw`: why.
#[cold]
#[inline(never)]
fn refused(state: u64, idle: u64) -> EnterError {
    if state & !RUNNING != idle {
        EnterError::Terminated
    } else {
        EnterError::Running
    }
}

/// What an enter does when the coroutine did not simply finish or yield.
#[cold]
#[inline(never)]
fn after_switch_slow(header: NonNull<Header>, res: Event, cache: ThreadCache) {
    // SAFETY:
    // * headers are type-stable: valid for the whole process.
    let h = unsafe { header.as_ref() };
    match res {
        Event::Panicked => {
            // SAFETY:
            // * we still own the body; the trampoline left the payload there.
            let payload = unsafe { (*h.inner()).payload.take() };
            finish::<true>(header, true, cache);
            if let Some(p) = payload {
                resume_unwind(p);
            }
        }
        // Only a body being destroyed exits (see `Parked::drop`).
        Event::Exited | Event::Finished | Event::Yielded => finish::<true>(header, false, cache),
    }
}

/// Bumps the generation and gives the body back (pool, via this thread's
/// `cache`) or destroys it. Called by the enterer that holds the RUNNING bit.
/// `OUTLINED`: see [`Home::give_back`](crate::pool::Home::give_back).
#[inline(always)]
pub(crate) fn finish<const OUTLINED: bool>(
    header: NonNull<Header>,
    parked: bool,
    cache: ThreadCache,
) {
    // SAFETY:
    // * headers are type-stable.
    let h = unsafe { header.as_ref() };
    // `generation << 1 | RUNNING` plus one is `(generation + 1) << 1`: the
    // next generation, not running. Only the RUNNING holder writes the state
    // word, so the plain load reads our own CAS's value.
    let running = h.state.load(Ordering::Relaxed);
    debug_assert_eq!(running & RUNNING, RUNNING, "finish without the RUNNING bit");
    // SAFETY:
    // * we hold the RUNNING bit: the body is ours; its entry is over.
    unsafe { *h.parked.get() = parked };
    h.state.store(running + 1, Ordering::Release);
    // SAFETY:
    // * we still own the body (terminated under our RUNNING bit, and the
    //   new generation is not handed out until the pool gives it away);
    // * a pooled body's trampoline is parked, an unpooled one returned.
    let body = unsafe { Parked::from_raw(header) };
    // SAFETY:
    // * we own the body; `home` is plain data.
    let home = unsafe { *h.home.get() };
    if parked {
        home.give_back::<OUTLINED>(body, cache);
    } else {
        drop(body);
    }
}

impl Coroutine {
    /// Whether the coroutine's entry has returned (or panicked).
    #[inline]
    pub fn is_terminated(&self) -> bool {
        self.header().state.load(Ordering::Acquire) & !RUNNING != self.idle
    }

    /// QEMU's `qemu_coroutine_entered`: true while the coroutine runs,
    /// including while it is suspended inside a nested `enter` of another.
    #[inline]
    pub fn entered(&self) -> bool {
        self.header().state.load(Ordering::Acquire) == self.idle | RUNNING
    }

    /// The event loop's words of this coroutine (see [`EventLoopWords`]).
    #[inline]
    pub fn event_loop_words(&self) -> &EventLoopWords {
        &self.header().words
    }

    /// One word for an embedder (for example a C binding's per-coroutine
    /// pointer); 0 when the coroutine is created.
    #[inline]
    pub fn user_word(&self) -> &AtomicUsize {
        &self.header().user_word
    }

    /// Packs the handle into one non-null pointer-sized word (for intrusive
    /// lists and C callers). The low 24 bits of the generation travel in
    /// bits the header's alignment and the address space leave free, so
    /// [`from_raw`](Coroutine::from_raw) still detects a stale handle unless
    /// its slot was reused 2^24 times in between.
    #[inline]
    pub fn into_raw(self) -> NonNull<std::ffi::c_void> {
        let addr = self.header.as_ptr() as usize;
        // Checked when the header was allocated (`body::alloc_header`).
        debug_assert!(addr >> ADDR_BITS == 0, "coroutine header above 48 bits");
        let g = (self.idle >> 1) as usize;
        let word = addr | (g & LOW_MASK) | (((g >> LOW_BITS) & HIGH_MASK) << ADDR_BITS);
        NonNull::new(word as *mut std::ffi::c_void).expect("header address is not null")
    }

    /// Asks this CPU to fetch, owned, the header lines that [`enter`]
    /// reads and writes: the state word's, the entry closure's bytes (a
    /// create wrote them on its thread), and the parked trampoline's
    /// context. Only those: each line fetched for nothing pushes a line of
    /// another coroutine out of this CPU's caches. An event loop that
    /// enters a queue of coroutines made on another thread calls it a few
    /// entries ahead, so the enter does not wait for those lines to cross
    /// between CPUs or to come back from a far cache. Only a hint: nothing
    /// is read or written.
    ///
    /// [`enter`]: Coroutine::enter
    #[inline]
    pub fn prefetch(&self) {
        prefetch_header(self.header.as_ptr() as usize);
    }

    /// [`prefetch`](Coroutine::prefetch) for a word of
    /// [`into_raw`](Coroutine::into_raw): `raw` may be any word (stale, or
    /// not a handle at all).
    #[inline]
    pub fn prefetch_raw(raw: NonNull<std::ffi::c_void>) {
        prefetch_header(raw.as_ptr() as usize & ADDR_PART);
    }

    /// Rebuilds a handle from [`into_raw`](Coroutine::into_raw).
    ///
    /// # Safety
    ///
    /// * `raw` must come from `into_raw` in this process (any generation:
    ///   a stale one is detected as described there).
    #[inline]
    pub unsafe fn from_raw(raw: NonNull<std::ffi::c_void>) -> Coroutine {
        let word = raw.as_ptr() as usize;
        let addr = word & ((1 << ADDR_BITS) - 1) & !LOW_MASK;
        let packed = ((word & LOW_MASK) | ((word >> ADDR_BITS) << LOW_BITS)) as u64;
        // SAFETY:
        // * `addr` is a header address (caller), and headers are never freed.
        let header = unsafe { NonNull::new_unchecked(addr as *mut Header) };
        // SAFETY:
        // * as above.
        let current = unsafe { header.as_ref() }.generation();
        let generation = current - (current.wrapping_sub(packed) & ((1 << GEN_BITS) - 1));
        Coroutine {
            header,
            idle: generation << 1,
        }
    }
}

/// See [`Coroutine::prefetch`]; any address is fine.
#[inline(always)]
fn prefetch_header(addr: usize) {
    crate::prefetch::prefetch_for_write([
        addr as *const u8,
        addr.wrapping_add(SLOTS_OFFSET) as *const u8,
    ]);
    // The entry's bytes are only read here: a shared copy, so the creating
    // thread keeps its own for its next write.
    crate::prefetch::prefetch_for_read(addr.wrapping_add(ENTRY_OFFSET) as *const u8);
}

/// Why [`Coroutine::try_enter`] could not enter a coroutine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnterError {
    /// It is running (entered and not yet yielded), here or on another thread.
    Running,
    /// Its entry returned (or panicked); the handle is stale.
    Terminated,
}

impl fmt::Display for EnterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EnterError::Running => "coroutine re-entered recursively",
            EnterError::Terminated => "coroutine entered after it terminated",
        })
    }
}

impl std::error::Error for EnterError {}

#[cold]
#[inline(never)]
fn enter_refused(err: EnterError) -> ! {
    panic!("{err}")
}

/// [`try_yield_now`] was called outside a coroutine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotInCoroutine;

impl fmt::Display for NotInCoroutine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("yield outside a coroutine")
    }
}

impl std::error::Error for NotInCoroutine {}

pub(crate) const ADDR_BITS: u32 = 48;
pub(crate) const LOW_BITS: u32 = 8; // Header is 256-byte aligned.
const LOW_MASK: usize = (1 << LOW_BITS) - 1;
const HIGH_MASK: usize = (1 << (64 - ADDR_BITS)) - 1;
pub(crate) const GEN_BITS: u32 = LOW_BITS + (64 - ADDR_BITS);
/// The header address bits of an `into_raw` word.
pub(crate) const ADDR_PART: usize = ((1 << ADDR_BITS) - 1) & !LOW_MASK;

impl fmt::Debug for Coroutine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coroutine")
            .field("header", &self.header)
            .field("generation", &(self.idle >> 1))
            .field("terminated", &self.is_terminated())
            .finish()
    }
}

/// Suspends the running coroutine and resumes whoever entered it.
///
/// When the coroutine is entered again (possibly from another thread) this
/// returns there. Do not keep references to thread-locals, or thread-bound
/// values such as an `Rc` shared with the thread, across this call if the
/// coroutine may be entered from another thread (see the crate docs).
///
/// # Panics
///
/// "yield outside a coroutine" when called outside one.
// The thread-local read goes through an `#[inline(never)]` accessor, so
// inlining this into code that spans several yields is safe (see tls.rs);
// and inlining matters: every frame between the entry and the switch costs
// mispredicted returns.
#[inline]
pub fn yield_now() {
    if try_yield_now().is_err() {
        yield_outside();
    }
}

/// Like [`yield_now`], returning [`NotInCoroutine`] outside a coroutine.
#[inline]
pub fn try_yield_now() -> Result<(), NotInCoroutine> {
    let h = tls::current();
    if h.is_null() {
        return Err(NotInCoroutine);
    }
    // SAFETY:
    // * a non-null current header is the coroutine running on this thread:
    //   we own its body, and its enterer's context is in its slots.
    unsafe {
        switch::suspend(
            slots_of(NonNull::new_unchecked(h.cast_mut())),
            Event::Yielded as usize,
        )
    };
    Ok(())
}

#[cold]
#[inline(never)]
fn yield_outside() -> ! {
    panic!("{NotInCoroutine}")
}

/// The running coroutine (the innermost when nested), `None` outside.
#[inline]
pub fn current() -> Option<Coroutine> {
    let h = NonNull::new(tls::current().cast_mut())?;
    // SAFETY:
    // * headers are type-stable; the running one's generation is stable
    //   while it runs (only its enterer bumps it after it terminates).
    let running = unsafe { h.as_ref() }.state.load(Ordering::Relaxed);
    Some(Coroutine {
        header: h,
        idle: running & !RUNNING,
    })
}

/// Whether the caller runs inside a coroutine.
#[inline]
pub fn in_coroutine() -> bool {
    !tls::current().is_null()
}
