//! The body of a coroutine: a type-stable header (state word, event-loop
//! words) plus the parked trampoline that runs one entry after another.
//!
//! Headers are never given back to the allocator: a freed header goes to a
//! free list and keeps its generation counter, so a stale [`Coroutine`]
//! handle always reads valid memory and sees a generation that moved on.
//!
//! [`Coroutine`]: crate::Coroutine

use std::any::Any;
use std::cell::UnsafeCell;
use std::io;
use std::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::entry::{self, EntryFn, EntryStorage};
use crate::pool::Home;
use crate::stack::{GuardKind, Stack, StackWord};
use crate::switch::{self, Slots};
use crate::EventLoopWords;

/// A panic payload carried from a coroutine to whoever entered it.
pub(crate) type Payload = Box<dyn Any + Send + 'static>;

/// What a trampoline reports when it switches back: one register (the
/// switch's message). A panic's payload waits in [`Inner::payload`]; the
/// enterer resumes with 0 (a body being destroyed is told so by
/// [`Header::exit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Event {
    /// The entry called `yield_now`.
    Yielded = 0,
    /// The entry returned; the trampoline is parked, ready for the next entry.
    Finished = 1,
    /// The entry panicked (payload in `Inner::payload`); parked as above.
    Panicked = 2,
    /// The trampoline left its loop (the body is being destroyed): its
    /// stack holds nothing any more and is never resumed.
    Exited = 3,
}

impl Event {
    /// The event a switch message carries.
    #[inline(always)]
    pub(crate) fn from_message(message: usize) -> Event {
        match message {
            0 => Event::Yielded,
            1 => Event::Finished,
            2 => Event::Panicked,
            _ => Event::Exited,
        }
    }
}

/// State word layout: `generation << 1 | RUNNING`. A coroutine handle holds
/// the generation it was created with; termination bumps the generation.
pub(crate) const RUNNING: u64 = 1;

/// Canary written at the lowest kept word of a parked stack: if an entry
/// used the stack below it, the canary is (almost always) overwritten, and
/// the release hook gives the deep pages back.
const CANARY: u64 = 0xC0DE_57AC_CA7A_12E5;

/// Room left below the trampoline's own frame for the frames `suspend`
/// pushes when it parks (generous: debug builds have large frames).
const PARK_MARGIN: usize = 2048;

/// The type-stable part of a coroutine. Aligned so that handles can carry
/// low generation bits in the pointer (see `Coroutine::into_raw`).
///
/// Four cache lines: (0) everything a create and an enter both touch: the
/// state word, the entry's function pointer, the event loop's words, the
/// owner's fields a pooled create, enter and terminate read (shape, home,
/// exit, parked); (1) the entry closure's bytes (written by a create of a
/// capturing closure); (2) the switch slots and the stack word, which only
/// the entering thread touches; (3) the payload of a panic, cold. A
/// coroutine created on one thread and entered on another moves line 0
/// (and line 1 if its closure captures) between their CPUs, not more.
#[repr(C, align(256))]
pub(crate) struct Header {
    /// `generation << 1 | RUNNING`; the single CAS of `enter` works on it.
    pub(crate) state: AtomicU64,
    /// How to run the entry stored in the body (owner only, see [`Inner`]).
    entry_fn: UnsafeCell<EntryFn>,
    pub(crate) words: EventLoopWords,
    pub(crate) user_word: AtomicUsize,
    /// The stack size the body was made for, as asked, and its guard kind,
    /// as one word (see [`shape`]): the pool's and the cache's match key.
    /// Written when a body is installed; owner only (see [`Inner`]).
    shape: UnsafeCell<usize>,
    /// Where the body goes when its coroutine ends. As `shape`.
    pub(crate) home: UnsafeCell<Home>,
    /// Set (by the body's owner) before the last resume: the trampoline
    /// leaves its loop. As `shape`.
    exit: UnsafeCell<bool>,
    /// The trampoline is parked in its loop (or not started): no entry is
    /// under way on the stack, which may then be exchanged for a warmer one
    /// (see [`swap_parked_stacks`]). Set when a body is made and when an
    /// entry ends, cleared when one yields (by the enterer, in the line
    /// where it writes the state word anyway). As `shape`.
    pub(crate) parked: UnsafeCell<bool>,
    inner: UnsafeCell<MaybeUninit<Inner>>,
}

const _: () = assert!(
    std::mem::size_of::<Header>() == 256,
    "a header is four cache lines"
);

/// Offset of a header's switch slots (`Inner` is `repr(C)`, slots first):
/// what the C ABI's assembly resumes with.
pub(crate) const SLOTS_OFFSET: usize =
    std::mem::offset_of!(Header, inner) + std::mem::offset_of!(Inner, slots);

/// Offset of a header's entry bytes (a line of their own).
pub(crate) const ENTRY_OFFSET: usize =
    std::mem::offset_of!(Header, inner) + std::mem::offset_of!(Inner, entry);
const _: () = assert!(
    ENTRY_OFFSET.is_multiple_of(64),
    "the entry starts a cache line"
);

/// Offset of a header's `parked` byte: the C ABI's assembly clears it.
pub(crate) const PARKED_OFFSET: usize = std::mem::offset_of!(Header, parked);
const _: () = assert!(
    SLOTS_OFFSET.is_multiple_of(64),
    "the slots start a cache line"
);

/// The parts of a body used only by whoever owns it: the pool, the creator
/// before the first enter, or the thread holding the RUNNING bit.
///
/// `repr(C)`: the entry's bytes fill the header's second line; the switch
/// slots start the third, written on every switch by the entering thread
/// only, in a line the creator never touches.
#[repr(C)]
pub(crate) struct Inner {
    pub(crate) entry: EntryStorage,
    /// The trampoline's saved context and its enterer's (see `switch.rs`).
    pub(crate) slots: Slots,
    /// The stack the trampoline runs on (unmapped when the body is
    /// dropped), which describes itself in its top line (see
    /// `stack/placed.rs`). With `slots.co_sp`, all that belongs to the
    /// stack: two words, exchanged by [`swap_parked_stacks`].
    pub(crate) stack: StackWord,
    /// The payload of the entry that panicked, until its enterer takes it.
    pub(crate) payload: Option<Payload>,
}

impl Header {
    const fn new() -> Header {
        Header {
            state: AtomicU64::new(0),
            entry_fn: UnsafeCell::new(EntryFn::EMPTY),
            words: EventLoopWords::new(),
            user_word: AtomicUsize::new(0),
            shape: UnsafeCell::new(0),
            home: UnsafeCell::new(Home::Unpooled),
            exit: UnsafeCell::new(false),
            parked: UnsafeCell::new(false),
            inner: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Raw access to the owned part.
    ///
    /// Only the owner (see [`Inner`]) may dereference it, and only while a
    /// body is installed in the header.
    #[inline]
    pub(crate) fn inner(&self) -> *mut Inner {
        self.inner.get().cast::<Inner>()
    }

    /// Stores the entry closure of a new coroutine.
    ///
    /// # Safety
    ///
    /// * The caller owns the body (just taken from the pool or made) and its
    ///   entry slot is empty.
    #[inline]
    pub(crate) unsafe fn put_entry<F: FnOnce() + Send + 'static>(&self, f: F) {
        // SAFETY:
        // * owned body with an empty slot (caller); both parts are its own.
        unsafe {
            entry::put(
                self.entry_fn.get(),
                ptr::addr_of_mut!((*self.inner()).entry),
                f,
            )
        }
    }

    /// Whether `other` (a pooled body) may give its stack to this coroutine:
    /// this one is pooled too, with the same stack size and guard kind.
    ///
    /// # Safety
    ///
    /// * The caller owns both bodies.
    #[inline(always)]
    pub(crate) unsafe fn may_swap_stacks_with(&self, other: &Header) -> bool {
        // SAFETY:
        // * owned bodies (caller): plain data set when they were made.
        unsafe {
            *self.shape.get() == *other.shape.get()
                && matches!(*self.home.get(), Home::PooledInstall | Home::PooledMprotect)
        }
    }

    /// Current generation.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.state.load(Ordering::Acquire) >> 1
    }
}

/// Exchanges the stacks of two bodies with everything that belongs to a
/// stack (the mapping, the parked context, the kept pages), so that a
/// coroutine about to run for the first time runs on the stack that is
/// warm in this CPU's caches rather than on the one it was created with.
/// Neither stack is touched: one line of each header is.
///
/// # Safety
///
/// * The caller owns both bodies; both trampolines are parked in their
///   loop or not started (neither runs an entry), and
///   [`Header::may_swap_stacks_with`] holds. A parked trampoline takes its
///   header from the slots it is resumed through, so each one then runs
///   the entries of its new header.
#[inline(always)]
pub(crate) unsafe fn swap_parked_stacks(a: &Header, b: &Header) {
    let (a, b) = (a.inner(), b.inner());
    // SAFETY:
    // * both bodies are installed and owned (caller): the places are
    //   initialised and disjoint (two distinct headers).
    unsafe {
        ptr::swap(
            ptr::addr_of_mut!((*a).slots.co_sp),
            ptr::addr_of_mut!((*b).slots.co_sp),
        );
        ptr::swap(ptr::addr_of_mut!((*a).stack), ptr::addr_of_mut!((*b).stack));
    }
}

/// A body's stack size (as asked) and guard kind in one word: the size
/// shifted left by three, the guard kind's index (install 0, mprotect 1)
/// in bit 0, bits 1-2 zero. It is also the word of a pooling builder of
/// that shape (`Builder::word`). Requested sizes stay below 2^61 (see
/// `Builder::stack_size`), so the shift loses nothing and equal words mean
/// equal shapes.
#[inline(always)]
pub(crate) fn shape(size: usize, kind: GuardKind) -> usize {
    debug_assert!(size <= MAX_REQUESTED_SIZE, "stack size not clamped");
    size << 3 | kind_index(kind)
}

/// The largest stack size a builder passes on (larger requests are
/// clamped to it; the kernel refuses such a stack anyway).
pub(crate) const MAX_REQUESTED_SIZE: usize = usize::MAX >> 3;

/// A guard kind's index: its cache slot, its pooled home, its shape bit.
#[inline(always)]
pub(crate) fn kind_index(kind: GuardKind) -> usize {
    match kind {
        GuardKind::Install => 0,
        GuardKind::Mprotect => 1,
    }
}

// ---- header arena ---------------------------------------------------------

struct HeaderPtr(NonNull<Header>);
// SAFETY:
// * a free header is plain memory owned by the free list; it is handed to
//   exactly one taker.
unsafe impl Send for HeaderPtr {}

static FREE_HEADERS: Mutex<Vec<HeaderPtr>> = Mutex::new(Vec::new());
const HEADER_CHUNK: usize = 64;

/// Takes a free header (slow path only: a new stack is being mapped anyway).
fn alloc_header() -> NonNull<Header> {
    let mut free = FREE_HEADERS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = free.pop() {
        return h.0;
    }
    // Leaked on purpose: headers are type-stable for the life of the process.
    let chunk: &'static mut [Header] = Box::leak(
        (0..HEADER_CHUNK)
            .map(|_| Header::new())
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    // `Coroutine::into_raw` packs generation bits above bit 48 of the
    // address: a header must live below 2^48 (every user-space address on
    // x86-64 Linux does unless a program maps memory above it on purpose).
    let end = chunk.as_ptr_range().end as usize;
    assert!(
        end >> 48 == 0,
        "coroutine headers allocated above the 48-bit address space"
    );
    let (first, rest) = chunk.split_first_mut().expect("chunk is not empty");
    free.extend(rest.iter_mut().map(|h| HeaderPtr(NonNull::from(h))));
    NonNull::from(first)
}

fn free_header(h: NonNull<Header>) {
    let mut free = FREE_HEADERS.lock().unwrap_or_else(|e| e.into_inner());
    free.push(HeaderPtr(h));
}

// ---- the pooled object ----------------------------------------------------

/// Owns a body whose trampoline is parked (or not started): what the pool holds.
#[derive(Debug)]
pub(crate) struct Parked(NonNull<Header>);

// SAFETY:
// * a parked trampoline has no frames of user code on its stack, only the
//   trampoline's own (which hold no thread-bound values), so the body may be
//   resumed or dropped on any thread.
unsafe impl Send for Parked {}

impl Parked {
    /// Maps a stack and sets a trampoline on it (not started yet).
    pub(crate) fn new(size: usize, kind: GuardKind, home: Home) -> io::Result<Parked> {
        let (stack, free_top) = StackWord::place(Stack::new(size, kind)?);
        let header = alloc_header();
        // SAFETY:
        // * the stack was just mapped: nobody runs on it, and the pages
        //   below its description are writable (at least MIN_STACK_SIZE
        //   usable bytes).
        let co_sp = unsafe { switch::init(free_top, trampoline_main, 0) };
        let inner = Inner {
            slots: Slots {
                co_sp,
                parent_sp: 0,
            },
            stack,
            payload: None,
            entry: EntryStorage::new(),
        };
        // SAFETY:
        // * the header came from the free list: nobody else owns it and no
        //   body is installed, so writing the owner's fields and the
        //   uninitialised part is fine (a reused header's `exit` is reset).
        unsafe {
            let hd = header.as_ref();
            *hd.shape.get() = shape(size, kind);
            *hd.home.get() = home;
            *hd.exit.get() = false;
            *hd.parked.get() = true;
            hd.inner().write(inner);
        }
        Ok(Parked(header))
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY:
        // * headers live for the whole process.
        unsafe { self.0.as_ref() }
    }

    pub(crate) fn inner(&self) -> *mut Inner {
        self.header().inner()
    }

    /// Gives up ownership without destroying the body.
    pub(crate) fn into_raw(self) -> NonNull<Header> {
        let h = self.0;
        std::mem::forget(self);
        h
    }

    /// Takes back ownership of a body released with `into_raw`.
    ///
    /// # Safety
    ///
    /// * `h` came from `into_raw`, its trampoline is parked (or finished),
    ///   and no one else claims ownership of it.
    pub(crate) unsafe fn from_raw(h: NonNull<Header>) -> Parked {
        Parked(h)
    }

    /// Whether the body was made for this stack size (as asked) and guard kind.
    #[inline]
    pub(crate) fn has_shape(&self, size: usize, kind: GuardKind) -> bool {
        self.has_shape_word(shape(size, kind))
    }

    /// Whether the body's [`shape`] is `word`.
    #[inline(always)]
    pub(crate) fn has_shape_word(&self, word: usize) -> bool {
        // SAFETY:
        // * we own the body; this field is plain data set at creation.
        unsafe { *self.header().shape.get() == word }
    }

    /// Clears the event loop's words and the user word for a new coroutine.
    /// Stores only when one is not 0 (one test for all four): stores still in
    /// the store buffer slow down the CAS of the first enter, which follows
    /// at once; and a body from the pool may come with its header line in
    /// another CPU's cache, where every store waits for it.
    #[inline(always)]
    pub(crate) fn clear_words(&self) {
        let h = self.header();
        let words = [
            &h.words.home,
            &h.words.scheduled,
            &h.words.link,
            &h.user_word,
        ];
        if words.iter().fold(0, |a, w| a | w.load(Ordering::Relaxed)) != 0 {
            words.iter().for_each(|w| w.store(0, Ordering::Relaxed));
        }
    }

    /// Guard kind of the body's stack (bit 0 of its shape: the header's
    /// hot line, not the cold `bounds`).
    #[inline]
    pub(crate) fn kind(&self) -> GuardKind {
        // SAFETY:
        // * we own the body; `shape` is plain data set at creation.
        let word = unsafe { *self.header().shape.get() };
        if word & 1 == kind_index(GuardKind::Install) {
            GuardKind::Install
        } else {
            GuardKind::Mprotect
        }
    }

    /// The release hook: if the last entries used the stack below the
    /// trampoline's kept pages (canary overwritten), give the deep pages back.
    pub(crate) fn trim(&mut self) {
        // SAFETY:
        // * we own the body; only the trampoline (run by the owner) writes it.
        let word = unsafe { ptr::addr_of_mut!((*self.inner()).stack) };
        // SAFETY:
        // * as above.
        let stack = unsafe { *word };
        // Not started, or no entry ran since the last look: the canary
        // (a line of the stack no one touched since) is still intact, and
        // the stack's own lines are left alone.
        if !stack.ran() {
            return;
        }
        // SAFETY:
        // * the body's stack is placed and mapped while the body lives.
        let (kept, looked) = unsafe { stack.look() };
        let canary = kept as *mut u64;
        // SAFETY:
        // * we own the body and its trampoline is parked: nothing live lies
        //   below `kept` (the trampoline's frames are above it);
        // * `kept` is inside the stack's mapping (set by the trampoline,
        //   which ran: it is not 0).
        unsafe {
            *word = looked;
            if canary.read_volatile() != CANARY {
                stack.bounds().trim_below(kept);
                canary.write_volatile(CANARY);
            }
        }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        let inner = self.inner();
        // SAFETY:
        // * we own the body (pool object or finished unpooled coroutine);
        // * its trampoline is parked in its loop or not started, so with
        //   `exit` set it leaves without running user code and suspends one
        //   last time, holding nothing; then the body is dropped once (which
        //   unmaps the stack) and the header goes back to the free list.
        unsafe {
            *self.header().exit.get() = true;
            let event = switch::resume(ptr::addr_of_mut!((*inner).slots), 0);
            assert_eq!(
                Event::from_message(event),
                Event::Exited,
                "a parked trampoline did not exit"
            );
            let stack = (*inner).stack.take();
            ptr::drop_in_place(inner);
            drop(stack);
        }
        free_header(self.0);
    }
}

/// An address inside a callee's frame: below the caller's stack pointer.
#[inline(never)]
fn below_this_frame() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// The header whose slots are `slots` (`Inner` sits at [`SLOTS_OFFSET`]).
#[inline(always)]
fn header_of(slots: *mut Slots) -> NonNull<Header> {
    // SAFETY:
    // * bodies are only ever resumed through a header's slots: the address
    //   minus the offset is that header's, which is not null.
    unsafe { NonNull::new_unchecked(slots.cast::<u8>().wrapping_sub(SLOTS_OFFSET).cast()) }
}

/// Where every body's stack starts (see `switch::init`): the trampoline,
/// then the last switch, which never comes back.
///
/// # Safety
///
/// * `slots` are the switch slots of the header that owns this stack now
///   (they came in `rsi` from the first resume).
unsafe extern "sysv64" fn trampoline_main(_: usize, slots: *mut Slots) -> ! {
    // SAFETY:
    // * we run on this stack, entered by its owner through `slots` (caller).
    let slots = unsafe { trampoline_loop(slots) };
    // Nothing of the loop is left on the stack: `Parked::drop` unmaps it
    // after this switch and never resumes us.
    // SAFETY:
    // * the owner entered us through these slots.
    unsafe { switch::suspend(slots, Event::Exited as usize) };
    // SAFETY:
    // * see above: an exited trampoline is never resumed.
    unsafe { std::hint::unreachable_unchecked() }
}

/// The loop every body runs: one entry after another, parked in between,
/// until the owner sets `exit`. Returns the slots of the owner that did.
///
/// A parked stack may change headers (see [`swap_parked_stacks`]): every
/// resume comes through the slots of the header that owns the stack at that
/// moment, and the loop takes its header from them each time.
///
/// # Safety
///
/// * We run on the stack of `slots`' header, entered through
///   `switch::resume` by its owner.
unsafe fn trampoline_loop(mut slots: *mut Slots) -> *mut Slots {
    let page = crate::sys::page_size();
    let keep_from = (below_this_frame() - PARK_MARGIN) & !(page - 1);
    // SAFETY:
    // * the trampoline runs only when its enterer owns the body;
    // * `keep_from` is more than PARK_MARGIN below our stack pointer (so
    //   below anything live, including the frames `suspend` will push) and
    //   above the guard page (stacks are at least MIN_STACK_SIZE, and the
    //   trampoline's frames are far smaller), so writing the canary there
    //   clobbers nothing.
    unsafe {
        (keep_from as *mut u64).write_volatile(CANARY);
        (*header_of(slots).as_ref().inner())
            .stack
            .set_keep_from(keep_from);
    }
    loop {
        // SAFETY:
        // * headers are type-stable.
        let h = unsafe { header_of(slots).as_ref() };
        // SAFETY:
        // * only the owner writes `exit`, before resuming us.
        if unsafe { *h.exit.get() } {
            return slots;
        }
        let inner = h.inner();
        // SAFETY:
        // * `Run` is only sent after `put_entry` (creation stores the entry);
        // * the slot is not touched again until the entry has been moved out.
        let outcome = catch_unwind(AssertUnwindSafe(|| unsafe {
            entry::run(h.entry_fn.get(), ptr::addr_of_mut!((*inner).entry))
        }));
        // SAFETY:
        // * we run for the owner (caller): the body's words are ours.
        unsafe { (*inner).stack = (*inner).stack.with_ran() };
        // Unpooled bodies park too: dropping the body ends the loop with
        // `exit`, and the loop needs no test of where the body goes.
        let event = match outcome {
            Ok(()) => Event::Finished,
            Err(payload) => {
                // SAFETY:
                // * we run for the owner; it takes the payload on `Panicked`
                //   before the body can run another entry, so the slot is
                //   empty here.
                unsafe { (*inner).payload = Some(payload) };
                Event::Panicked
            }
        };
        // SAFETY:
        // * the owner entered us through `resume` (caller's contract).
        slots = unsafe { switch::suspend_to(slots, event as usize) }.1;
    }
}
