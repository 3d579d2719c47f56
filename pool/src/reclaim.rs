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
//! parks the node in a [`Graveyard`] freed only when the stack is dropped,
//! after the model's threads are done. That is the strongest form of rule 2 --
//! no address is reused while the stack is in use --
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

/// Where retired nodes wait under loom; nothing in normal builds.
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub(crate) struct Graveyard<N>(std::marker::PhantomData<*mut N>);

#[cfg(not(loom))]
impl<N> Graveyard<N> {
    pub(crate) const fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

/// Where retired nodes wait under loom: freed when the graveyard drops.
#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct Graveyard<N>(std::sync::Mutex<Vec<*mut N>>);

#[cfg(loom)]
impl<N> Graveyard<N> {
    pub(crate) fn new() -> Self {
        Self(std::sync::Mutex::new(Vec::new()))
    }
}

#[cfg(loom)]
impl<N> Drop for Graveyard<N> {
    fn drop(&mut self) {
        for node in self.0.get_mut().unwrap().drain(..) {
            // SAFETY:
            // * every pointer was retired once (per `retire`'s contract) from
            //   a `Box::into_raw`, and the owner of the graveyard is being
            //   dropped, so no thread can reach the nodes any more.
            drop(unsafe { Box::from_raw(node) });
        }
    }
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
    pub(crate) unsafe fn retire<N>(&self, node: *mut N, _graveyard: &Graveyard<N>) {
        // SAFETY:
        // * per this function's contract, `node` is unreachable for new
        //   readers and retired once; epoch runs the closure only after every
        //   thread pinned now has unpinned, so no reader is left;
        // * the closure only frees the box, which the contract allows on any
        //   thread.
        unsafe { self.0.defer_unchecked(move || drop(Box::from_raw(node))) }
    }

    /// Under loom: parks `node` in `graveyard`, so its address is not
    /// reused while the model runs.
    ///
    /// # Safety
    ///
    /// Same contract as the normal build's `retire`.
    #[cfg(loom)]
    pub(crate) unsafe fn retire<N>(&self, node: *mut N, graveyard: &Graveyard<N>) {
        graveyard.0.lock().unwrap().push(node);
    }
}
