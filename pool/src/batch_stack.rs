//! The global list: a lock-free Treiber stack whose nodes are whole batches.
//!
//! ```text
//!   head ──► [batch: 64 objects | total = 192] ──► [64 | total 128] ──► [64 | 64] ──► null
//! ```
//!
//! * push: one `compare_exchange` on `head` (Release) puts a whole batch in;
//! * pop: one `compare_exchange` on `head` (Acquire) takes exactly one batch
//!   out -- never the whole list, so one thread cannot starve the others;
//! * every write to `head` is a read-modify-write, so each Acquire that reads
//!   a node's address synchronises with the Release push that published it
//!   (release sequences), and the node's fields written before the push are
//!   visible;
//! * each node records `total`, the objects in it and in every node below it.
//!   Nodes below the head never change, so `head.total` is the exact length of
//!   the list: the global cap is enforced with no extra counter and no extra
//!   atomic operation.
//!
//! ABA-freedom of the pop is argued in [`crate::reclaim`].

use crate::reclaim;
use crate::sync::{loom_const_fn, AtomicPtr, AtomicUsize, Ordering, UnsafeCell};
use crossbeam_utils::CachePadded;
use std::{fmt, mem, ptr};

struct Node<T> {
    /// The batch. Written by the pusher before publication, emptied by the
    /// one thread whose pop CAS unlinked the node: never accessed by two
    /// threads at once (loom checks it).
    items: UnsafeCell<Vec<T>>,
    /// Objects in this node and all nodes below it. Immutable once published.
    total: usize,
    /// The node below. Immutable once published.
    next: *mut Node<T>,
}

/// Objects in `node` and below it (0 for an empty list).
///
/// # Safety
///
/// * `node` is null, or was loaded with Acquire from `head` (or a published
///   `next`) under a guard that is still alive, so it is not freed yet
///   (reclaim rule 2) and its `total` (immutable once published) is visible.
unsafe fn total_of<T>(node: *const Node<T>) -> usize {
    if node.is_null() {
        0
    } else {
        // SAFETY: per this function's contract, a non-null `node` is live.
        unsafe { (*node).total }
    }
}

/// The global batch list of one pool.
pub(crate) struct BatchStack<T> {
    head: CachePadded<AtomicPtr<Node<T>>>,
    /// The global cap in objects (relaxed: a new cap applies to later pushes).
    cap: AtomicUsize,
    /// Popped nodes awaiting their free (only used under loom).
    graveyard: reclaim::Graveyard<Node<T>>,
}

// SAFETY:
// * the stack owns `T`s and hands them from one thread to another, which is
//   what `T: Send` allows; no `&T` is ever shared between threads, so
//   `T: Sync` is not needed;
// * nodes are reached through atomics only, with the protocol above.
unsafe impl<T: Send> Send for BatchStack<T> {}
// SAFETY: as for `Send` above.
unsafe impl<T: Send> Sync for BatchStack<T> {}

impl<T> fmt::Debug for BatchStack<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchStack")
            .field("len", &self.len())
            .field("cap", &self.cap())
            .finish()
    }
}

impl<T> BatchStack<T> {
    loom_const_fn! {
        pub(crate) fn new(cap: usize) -> BatchStack<T> {
            BatchStack {
                head: CachePadded::new(AtomicPtr::new(ptr::null_mut())),
                cap: AtomicUsize::new(cap),
                graveyard: reclaim::Graveyard::new(),
            }
        }
    }

    pub(crate) fn cap(&self) -> usize {
        self.cap.load(Ordering::Relaxed)
    }

    pub(crate) fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
    }

    /// Objects in the list (exact at the moment `head` is read).
    pub(crate) fn len(&self) -> usize {
        let _guard = reclaim::pin();
        let head = self.head.load(Ordering::Acquire);
        // SAFETY:
        // * `head` was loaded (Acquire) under `_guard`: null or a live node.
        unsafe { total_of(head) }
    }

    /// Pushes `batch` with one CAS, keeping at most what fits under the cap.
    ///
    /// Returns the objects that did not fit (empty if all went in); the
    /// caller drops and counts them. `pushed` tells whether a node went in.
    pub(crate) fn push(&self, batch: Vec<T>) -> (Vec<T>, bool) {
        if batch.is_empty() {
            return (batch, false);
        }
        let mut excess = Vec::new();
        let node = Box::into_raw(Box::new(Node {
            items: UnsafeCell::new(batch),
            total: 0,
            next: ptr::null_mut(),
        }));
        let _guard = reclaim::pin();
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            // SAFETY:
            // * `head` was loaded (Acquire) under `_guard`: null or a live node.
            let below = unsafe { total_of(head) };
            let room = self.cap().saturating_sub(below);
            // SAFETY:
            // * `node` is not published yet (first try, or the CAS failed):
            //   this thread is its only user.
            let len = unsafe {
                (*node).items.with_mut(|items| {
                    if (*items).len() > room {
                        // Conservative under contention: what is cut off on
                        // one try is dropped even if a later try had room.
                        excess.append(&mut (*items).split_off(room));
                    }
                    (*items).len()
                })
            };
            if len == 0 {
                // SAFETY:
                // * `node` came from `Box::into_raw` above and was never
                //   published; its items are empty.
                drop(unsafe { Box::from_raw(node) });
                return (excess, false);
            }
            // SAFETY: `node` is unpublished: this thread is its only user.
            unsafe {
                (*node).total = len + below;
                (*node).next = head;
            }
            match self
                .head
                .compare_exchange(head, node, Ordering::Release, Ordering::Acquire)
            {
                Ok(_) => return (excess, true),
                Err(actual) => head = actual,
            }
        }
    }

    /// Pops exactly one batch with one CAS, or `None` if the list is empty.
    pub(crate) fn pop(&self) -> Option<Vec<T>> {
        let guard = reclaim::pin();
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            if head.is_null() {
                return None;
            }
            // SAFETY:
            // * loaded under `guard`: `head` is live even if popped meanwhile (reclaim rule 2);
            // * `next` is immutable after the Release push our Acquire load synchronised with.
            let next = unsafe { (*head).next };
            // The CAS succeeds only if `head` was not popped since the load
            // (no address reuse while pinned, see `reclaim`), so `next` is
            // still the node below it.
            match self
                .head
                .compare_exchange(head, next, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => {
                    // SAFETY:
                    // * our CAS unlinked `head`: only we take `items` (others read `next`/`total`);
                    // * the Acquire CAS made the pusher's items visible.
                    let items = unsafe { (*head).items.with_mut(|items| mem::take(&mut *items)) };
                    // SAFETY:
                    // * from `Box::into_raw` in `push`, unlinked by our CAS and no other;
                    // * its items are empty, so freeing it on any thread drops no `T`.
                    unsafe { guard.retire(head, &self.graveyard) };
                    return Some(items);
                }
                Err(actual) => head = actual,
            }
        }
    }
}

impl<T> Drop for BatchStack<T> {
    /// Drops the pooled objects and frees the nodes (never runs for a
    /// `static` pool; loom models drop theirs).
    fn drop(&mut self) {
        let mut cur = self.head.load(Ordering::Acquire);
        while !cur.is_null() {
            // SAFETY:
            // * `&mut self`: no other thread can reach the list any more;
            // * every linked node came from `Box::into_raw` in `push` and is
            //   linked once; popped nodes are not linked.
            let node = unsafe { Box::from_raw(cur) };
            cur = node.next;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::BatchStack;

    #[test]
    fn pops_one_batch_at_a_time_newest_first() {
        let stack = BatchStack::new(100);
        assert_eq!(stack.push(vec![1, 2]), (vec![], true));
        assert_eq!(stack.push(vec![3, 4, 5]), (vec![], true));
        assert_eq!(stack.len(), 5);
        assert_eq!(stack.pop(), Some(vec![3, 4, 5]));
        assert_eq!(stack.len(), 2);
        assert_eq!(stack.pop(), Some(vec![1, 2]));
        assert_eq!(stack.pop(), None);
        assert_eq!(stack.len(), 0);
    }

    #[test]
    fn cap_cuts_the_batch_and_returns_the_excess() {
        let stack = BatchStack::new(4);
        assert_eq!(stack.push(vec![1, 2, 3]), (vec![], true));
        assert_eq!(stack.push(vec![4, 5, 6]), (vec![5, 6], true));
        assert_eq!(stack.push(vec![7]), (vec![7], false));
        assert_eq!(stack.len(), 4);
        stack.set_cap(0);
        assert_eq!(stack.len(), 4, "a lower cap keeps what is there");
        assert_eq!(stack.push(Vec::<i32>::new()), (vec![], false));
    }

    #[test]
    fn drop_frees_pooled_objects() {
        let witness = std::sync::Arc::new(());
        let stack = BatchStack::new(10);
        stack.push(vec![witness.clone(), witness.clone()]);
        stack.push(vec![witness.clone()]);
        assert_eq!(std::sync::Arc::strong_count(&witness), 4);
        drop(stack);
        assert_eq!(std::sync::Arc::strong_count(&witness), 1);
    }
}
