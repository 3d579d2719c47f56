//! Bottom halves: callbacks scheduled onto a context from any thread, without a lock.
//!
//! A scheduled bottom half sits in the context's lock-free list (a Treiber stack that is only
//! ever pushed to and taken whole, so it has no ABA problem). The polling thread takes the
//! whole list in one swap, reverses it into FIFO order and runs it as a *slice*. A nested
//! poll started from a callback keeps running the outer slice first (QEMU's bh slices), so a
//! callback that polls until some other pending bottom half ran does not deadlock.
//!
//! Flags live in one atomic word per bottom half:
//! * `PENDING`: it is linked into a list (the shared list or a slice). Whoever sets it pushes.
//! * `SCHEDULED`: it should run when dequeued. `cancel` clears it.
//! * `DELETED`: its callback is dropped when dequeued; later schedules are ignored.
//!
//! Dequeueing clears `PENDING | SCHEDULED` *before* the callback runs, so a bottom half
//! scheduled by its own callback is queued again and runs in the next iteration (once per
//! poll). A reusable bottom half whose callback is running is never run re-entrantly by a
//! nested poll: it is re-queued when its callback returns instead.

use crate::context::CtxShared;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::fmt;
use std::ptr;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32};
use std::sync::Arc;

const PENDING: u32 = 1;
const SCHEDULED: u32 = 2;
const DELETED: u32 = 4;

/// What a list node must provide. `BhNode` is the first field of each concrete kind
/// (`#[repr(C)]`), so a `*const BhNode` can be cast back to the kind its `ops` belong to.
pub(crate) struct BhOps {
    /// Runs (or drops, when `run` is false) what the node stands for and releases the list's
    /// reference to it.
    dispatch: unsafe fn(node: *const BhNode, run: bool) -> bool,
}

#[repr(C)]
pub(crate) struct BhNode {
    flags: AtomicU32,
    /// Next node; written by the thread that set `PENDING` before it publishes the node.
    next: Cell<*const BhNode>,
    ops: &'static BhOps,
}

// SAFETY:
// * `next` is written only by the thread that won the `PENDING` bit, before the node is
//   published with a Release CAS, and read only by the polling thread after its Acquire swap.
unsafe impl Sync for BhNode {}
// SAFETY:
// * as above; the node carries no thread-bound data itself.
unsafe impl Send for BhNode {}

/// The lock-free list head in a context.
///
/// Once its context is dropped the list is *closed*: nothing will poll it again, so a push
/// drops what it pushed at once. Without that a reusable bottom half scheduled onto a dropped
/// context would hold its context, whose list holds it: a cycle that never frees either.
#[derive(Debug, Default)]
pub(crate) struct BhList {
    head: AtomicPtr<BhNode>,
    closed: AtomicBool,
}

impl BhList {
    /// Pushes a node whose `PENDING` bit the caller just set.
    ///
    /// Exactly one side frees a node pushed while the list closes: if `close`'s swap comes
    /// after the push CAS in `head`'s modification order, the swap takes the node; otherwise
    /// the CAS reads from the swap (an RMW reads the latest value), synchronises with it and
    /// so sees `closed`, and the pusher takes it. SeqCst throughout (on x86 a SeqCst CAS and
    /// load cost what Release and Relaxed do).
    fn push(&self, node: *const BhNode) {
        let node = node as *mut BhNode;
        let mut head = self.head.load(Relaxed);
        loop {
            // SAFETY:
            // * the caller owns the node's link (it set PENDING), nobody reads it until the CAS.
            unsafe { (*node).next.set(head) };
            match self.head.compare_exchange_weak(head, node, SeqCst, Relaxed) {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        if self.closed.load(SeqCst) {
            self.close();
        }
    }

    /// Closes the list (its context is being dropped) and drops every node without running
    /// it. Any thread, any number of times.
    pub(crate) fn close(&self) {
        self.closed.store(true, SeqCst);
        let taken = self.head.swap(ptr::null_mut(), SeqCst) as *const BhNode;
        // SAFETY:
        // * `taken` is a whole list swapped out of the head: nobody else can reach it.
        unsafe { drop_list(reverse(taken)) };
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.head.load(Relaxed).is_null()
    }

    /// Takes the whole list and returns it in scheduling (FIFO) order.
    pub(crate) fn take_fifo(&self) -> *const BhNode {
        if self.is_empty() {
            return ptr::null();
        }
        let taken = self.head.swap(ptr::null_mut(), Acquire) as *const BhNode;
        // SAFETY: a whole list swapped out of the head is ours alone.
        unsafe { reverse(taken) }
    }
}

/// Reverses a list taken from a `BhList` head (LIFO) into scheduling (FIFO) order.
///
/// # Safety
/// `head` is a whole list swapped out of a `BhList` head by the caller (or null).
unsafe fn reverse(head: *const BhNode) -> *const BhNode {
    let mut cur = head;
    let mut rev: *const BhNode = ptr::null();
    while !cur.is_null() {
        // SAFETY:
        // * nodes in a taken list are kept alive by the list's reference and their `next`
        //   was published before the Release (or SeqCst) CAS that the taking swap, Acquire
        //   or SeqCst, synchronised with.
        let next = unsafe { (*cur).next.get() };
        // SAFETY: as above; the taken list is ours alone now.
        unsafe { (*cur).next.set(rev) };
        rev = cur;
        cur = next;
    }
    rev
}

/// Drops every node of a taken list without running it (its context is going away).
///
/// # Safety
/// `head` is a list taken with `take_fifo` (or swapped out and reversed) that the caller owns;
/// none of its nodes is used again.
pub(crate) unsafe fn drop_list(head: *const BhNode) {
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: the caller owns the taken list (contract).
        let next = unsafe { next_of(cur) };
        // SAFETY:
        // * `cur` was taken from the list, which held a reference to it; dispatch releases it
        //   and the node is not used again.
        unsafe { dispatch_node(cur, false) };
        cur = next;
    }
}

/// The node after `node` in a local (taken) list.
///
/// # Safety
/// `node` is in a list taken with `take_fifo` and owned by the caller.
pub(crate) unsafe fn next_of(node: *const BhNode) -> *const BhNode {
    // SAFETY: guaranteed by the caller.
    unsafe { (*node).next.get() }
}

/// Dequeues and dispatches a node popped from a local list. Returns whether a callback ran.
///
/// # Safety
/// `node` was popped from a taken list by the polling thread and is not used again.
pub(crate) unsafe fn dispatch_node(node: *const BhNode, run: bool) -> bool {
    // SAFETY: the list's reference keeps the node alive until dispatch releases it.
    let ops = unsafe { (*node).ops };
    // SAFETY: forwarded from the caller.
    unsafe { (ops.dispatch)(node, run) }
}

/// Takes the scheduled bottom halves as a new slice and runs every slice, the oldest first
/// (a nested poll continues the slices of the polls it is nested in). Returns how many ran.
///
/// # Safety
/// The caller is the thread polling the context that owns `list`, and `slices` (that
/// context's) holds only lists taken from `list` with `take_fifo`.
pub(crate) unsafe fn run_slices(list: &BhList, slices: &RefCell<Vec<*const BhNode>>) -> u64 {
    let taken = list.take_fifo();
    {
        let mut s = slices.borrow_mut();
        if taken.is_null() && s.iter().all(|h| h.is_null()) {
            return 0;
        }
        s.push(taken);
    }
    let mut ran = 0u64;
    loop {
        let node = {
            let mut s = slices.borrow_mut();
            let mut found = ptr::null();
            for h in s.iter_mut() {
                if !h.is_null() {
                    found = *h;
                    // SAFETY: slices hold taken lists owned by the caller (contract).
                    *h = unsafe { next_of(found) };
                    break;
                }
            }
            found
        };
        if node.is_null() {
            break;
        }
        // SAFETY: popped from a taken list above, dispatched exactly once.
        if unsafe { dispatch_node(node, true) } {
            ran += 1;
        }
    }
    let mut s = slices.borrow_mut();
    while s.last().is_some_and(|h| h.is_null()) {
        s.pop();
    }
    ran
}

// ---------------------------------------------------------------------------------------------
// One-shot bottom halves: one allocation holding the node and the closure.

#[repr(C)]
struct OneShot<F> {
    node: BhNode,
    f: F,
}

impl<F: FnOnce() + Send + 'static> OneShot<F> {
    const OPS: BhOps = BhOps {
        dispatch: Self::dispatch,
    };

    /// # Safety
    /// `node` came from `Box::into_raw` in `schedule_oneshot` and is dispatched exactly once.
    unsafe fn dispatch(node: *const BhNode, run: bool) -> bool {
        // SAFETY:
        // * `node` is the first field of a `#[repr(C)] OneShot<F>` boxed by `schedule_oneshot`;
        // * one-shot nodes are dispatched exactly once, so the box is reclaimed exactly once.
        let this = unsafe { Box::from_raw(node as *mut OneShot<F>) };
        if run {
            (this.f)();
        }
        run
    }
}

pub(crate) fn schedule_oneshot<F: FnOnce() + Send + 'static>(shared: &CtxShared, f: F) {
    let node = Box::new(OneShot {
        node: BhNode {
            flags: AtomicU32::new(PENDING | SCHEDULED),
            next: Cell::new(ptr::null()),
            ops: &OneShot::<F>::OPS,
        },
        f,
    });
    shared.bh_list.push(Box::into_raw(node) as *const BhNode);
    shared.notify_if_remote();
}

// ---------------------------------------------------------------------------------------------
// Reusable bottom halves.

#[repr(C)]
struct BhInner {
    node: BhNode,
    ctx: Arc<CtxShared>,
    /// Touched only by the thread polling `ctx` (the poll is exclusive), see `Sync` below.
    cb: UnsafeCell<Option<Box<dyn FnMut() + Send>>>,
    running: Cell<bool>,
    rerun: Cell<bool>,
}

// SAFETY:
// * `cb`, `running` and `rerun` are accessed only by the thread that currently polls the
//   context (exclusive, enforced by `AioContext::poll`), or by whoever drops the last
//   reference (no other reference exists then); the closure is `Send`.
// * everything else is atomic or immutable.
unsafe impl Sync for BhInner {}
// SAFETY: as above.
unsafe impl Send for BhInner {}

impl BhInner {
    const OPS: BhOps = BhOps {
        dispatch: Self::dispatch,
    };

    /// # Safety
    /// `node` is a `BhInner` whose list reference (one `Arc` count) the caller hands over.
    unsafe fn dispatch(node: *const BhNode, run: bool) -> bool {
        // SAFETY:
        // * `node` is the first field of a `#[repr(C)] BhInner` put in the list with
        //   `Arc::into_raw` by `Bh::schedule`, and that reference is released here once.
        let this = unsafe { Arc::from_raw(node as *const BhInner) };
        let old = this.node.flags.fetch_and(!(PENDING | SCHEDULED), AcqRel);
        if old & DELETED != 0 {
            if !this.running.get() {
                // SAFETY: polling thread, callback not running: no other access to `cb`.
                drop(unsafe { (*this.cb.get()).take() });
            }
            return false;
        }
        if !run || old & SCHEDULED == 0 {
            return false;
        }
        if this.running.get() {
            // Scheduled again and dequeued by a nested poll: run it after the callback returns.
            this.rerun.set(true);
            return false;
        }
        this.running.set(true);
        struct Finish<'a>(&'a Arc<BhInner>);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                let this = self.0;
                this.running.set(false);
                if this.node.flags.load(Acquire) & DELETED != 0 {
                    // SAFETY: polling thread, callback returned: no other access to `cb`.
                    drop(unsafe { (*this.cb.get()).take() });
                } else if this.rerun.replace(false) {
                    Bh::schedule_inner(this);
                }
            }
        }
        let _finish = Finish(&this);
        // SAFETY:
        // * polling thread; `running` guarantees no other `&mut` to the closure is live (a
        //   nested poll defers instead of calling it again).
        if let Some(cb) = unsafe { (*this.cb.get()).as_mut() } {
            cb();
        }
        true
    }
}

/// A reusable bottom half (QEMU's `QEMUBH`): created on a context, scheduled from any thread.
///
/// Clone it to schedule it from elsewhere. Scheduling an already scheduled bottom half does
/// nothing; one scheduled while its callback runs runs again in the next iteration.
///
/// `Bh` has no `Drop`: the callback lives until [`Bh::delete`] or until the last handle is
/// dropped (owners that go away call `delete`). Once its context is dropped, scheduling it
/// does nothing: the callback never runs again.
#[derive(Clone)]
pub struct Bh {
    inner: Arc<BhInner>,
}

impl fmt::Debug for Bh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags = self.inner.node.flags.load(Relaxed);
        f.debug_struct("Bh")
            .field("scheduled", &(flags & SCHEDULED != 0))
            .field("deleted", &(flags & DELETED != 0))
            .finish()
    }
}

impl Bh {
    pub(crate) fn new(ctx: Arc<CtxShared>, cb: Box<dyn FnMut() + Send>) -> Bh {
        Bh {
            inner: Arc::new(BhInner {
                node: BhNode {
                    flags: AtomicU32::new(0),
                    next: Cell::new(ptr::null()),
                    ops: &BhInner::OPS,
                },
                ctx,
                cb: UnsafeCell::new(Some(cb)),
                running: Cell::new(false),
                rerun: Cell::new(false),
            }),
        }
    }

    /// Schedules the callback to run in the context's next iteration (any thread, lock-free).
    ///
    /// Everything the caller wrote before `schedule` is visible to the callback run it
    /// causes (or to the already pending run it joins).
    #[inline]
    pub fn schedule(&self) {
        Self::schedule_inner(&self.inner);
    }

    /// The fast path, inlined into callers. The "already scheduled" test is an RMW that
    /// changes nothing (`fetch_add(0)`: one `lock xadd`, not a CAS loop), not a plain load: a
    /// load would not order the caller's earlier writes before the dispatcher's clearing
    /// `fetch_and`, so the callback could run without seeing them and nothing would run it
    /// again (a lost request). An RMW that reads `PENDING | SCHEDULED` comes before that
    /// `fetch_and` in the flags' modification order, so the `fetch_and` synchronises with it.
    #[inline]
    fn schedule_inner(inner: &Arc<BhInner>) {
        let f = inner.node.flags.fetch_add(0, AcqRel);
        // Deleted, or already queued to run: whoever queued it notifies.
        if f & DELETED != 0 || f & (PENDING | SCHEDULED) == PENDING | SCHEDULED {
            return;
        }
        Self::enqueue(inner);
    }

    /// Sets `SCHEDULED` (and `PENDING` if it is not queued), queues it, wakes the context.
    #[inline(never)]
    fn enqueue(inner: &Arc<BhInner>) {
        let old = inner.node.flags.fetch_or(PENDING | SCHEDULED, AcqRel);
        if old & DELETED != 0 {
            return;
        }
        if old & PENDING == 0 {
            // We won PENDING: the list now holds a reference.
            let raw = Arc::into_raw(inner.clone()) as *const BhNode;
            inner.ctx.bh_list.push(raw);
        }
        inner.ctx.notify_if_remote();
    }

    /// Unschedules it: the callback does not run until scheduled again.
    pub fn cancel(&self) {
        self.inner.node.flags.fetch_and(!SCHEDULED, AcqRel);
    }

    /// Deletes it: the callback never runs again and is dropped on the context's thread at its
    /// next iteration. Safe to call from inside the callback itself.
    pub fn delete(&self) {
        let old = self.inner.node.flags.fetch_or(PENDING | DELETED, AcqRel);
        if old & DELETED == 0 && old & PENDING == 0 {
            let raw = Arc::into_raw(self.inner.clone()) as *const BhNode;
            self.inner.ctx.bh_list.push(raw);
            self.inner.ctx.notify_if_remote();
        }
    }

    /// Whether it is scheduled and not yet run.
    pub fn is_scheduled(&self) -> bool {
        self.inner.node.flags.load(Acquire) & (SCHEDULED | DELETED) == SCHEDULED
    }
}
