//! Memory reclamation for popped batch nodes: why the Treiber pop is ABA-free.
//!
//! The ABA hazard: thread 1 reads `head == A` and `A.next == B`, stalls;
//! others pop `A` and `B`, free `A`, and a new node is allocated at `A`'s
//! address and pushed. Thread 1's `CAS(head, A, B)` then succeeds and installs
//! the freed `B`. Two rules rule it out here:
//!
//! 1. a node is pushed exactly once (every push allocates a fresh node; a
//!    popped node is never pushed again), and
//! 2. a popped node's memory is not freed while any thread that may hold its
//!    address is still inside the [`Guard`] it loaded it under.
//!
//! So while thread 1 is pinned, no node can reappear at address `A`: if its
//! CAS finds `head == A`, `A` has not been popped since the load, and `A.next`
//! (immutable after publication) is still `B`. Reading `A.next` after `A` was
//! popped by someone else is also safe, because `A`'s memory is still live.
//!
//! In normal builds rule 2 is crossbeam-epoch: popping threads are pinned and
//! `retire` defers the free until every thread pinned at that time has
//! unpinned. Loom cannot model crossbeam-epoch, so under `cfg(loom)` `retire`
//! never frees during the model execution (the node is leaked, a few bytes per
//! run). That is the strongest form of rule 2 -- no address is ever reused --
//! so the loom models check exactly the push/pop protocol on `head` (the
//! CAS orderings, the hand-over of a batch's objects through `UnsafeCell`,
//! the cumulative counts) under the reclamation guarantee epoch provides,
//! not epoch's own implementation (which crossbeam tests with its own loom
//! models).

/// Keeps popped nodes alive while it lives (an epoch pin).
#[cfg(not(loom))]
pub(crate) struct Guard(crossbeam_epoch::Guard);

/// Keeps popped nodes alive while it lives (under loom: nothing is freed).
#[cfg(loom)]
pub(crate) struct Guard(());

/// Pins the current thread: nodes retired from now on outlive the guard.
#[cfg(not(loom))]
#[inline]
pub(crate) fn pin() -> Guard {
    // `crossbeam_epoch::pin` falls back to a fresh handle when its own
    // thread-local is gone, so it is usable during TLS teardown.
    Guard(crossbeam_epoch::pin())
}

/// Pins the current thread (a no-op under loom).
#[cfg(loom)]
pub(crate) fn pin() -> Guard {
    Guard(())
}

impl Guard {
    /// Frees the boxed `node` once no pinned thread can still reach it.
    ///
    /// # Safety
    ///
    /// * `node` came from `Box::into_raw` and was unlinked from every shared
    ///   location by the caller (so no new reader can find it);
    /// * it is retired once;
    /// * dropping the `Box<N>` on another thread is sound (here: a node
    ///   whose object vector was emptied, so dropping it drops no `T`).
    #[cfg(not(loom))]
    pub(crate) unsafe fn retire<N>(&self, node: *mut N) {
        // SAFETY:
        // * per this function's contract, `node` is unreachable for new
        //   readers and retired once; epoch runs the closure only after every
        //   thread pinned now has unpinned, so no reader is left;
        // * the closure only frees the box, which the contract allows on any
        //   thread.
        unsafe { self.0.defer_unchecked(move || drop(Box::from_raw(node))) }
    }

    /// Under loom: leaks `node`, so its address is never reused in the model.
    ///
    /// # Safety
    ///
    /// Same contract as the normal build's `retire` (nothing is checked or
    /// freed here).
    #[cfg(loom)]
    pub(crate) unsafe fn retire<N>(&self, node: *mut N) {
        let _ = node;
    }
}
