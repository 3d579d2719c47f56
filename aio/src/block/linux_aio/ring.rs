//! Reading linux-aio completions straight from the ring the kernel maps into our
//! address space, without `io_getevents` (the idea of seed 5, QEMU 2016).
//!
//! The kernel appends events at `tail` and we consume them from `head`:
//!
//! * `tail` is read with Acquire: the kernel writes the event, then (`smp_wmb`) the new
//!   `tail`, so once we see the tail the events before it are complete;
//! * `head` is written with Release after we copied the event out, so the kernel never
//!   reuses a slot we are still reading.
//!
//! Only this thread consumes events (we never call `io_getevents` while the ring is
//! used), so reading `head` needs no ordering: it is our own last write.

use super::sys::{AioContextId, AioRing, IoEvent, AIO_RING_MAGIC};
use std::sync::atomic::{AtomicU32, Ordering};

/// The userspace view of an AIO context's completion ring.
#[derive(Debug)]
pub(crate) struct CompletionRing {
    header: *mut AioRing,
    events: *const IoEvent,
    nr: u32,
}

// SAFETY:
// * the ring is memory the kernel keeps mapped until `io_destroy`, which the owner calls
//   only after dropping this view; it is used from one thread at a time (kept in a
//   `ThreadBound`), and moving the pointers between threads is harmless.
unsafe impl Send for CompletionRing {}

impl CompletionRing {
    /// The ring of `id`, if the kernel exposes one in the layout we know.
    ///
    /// # Safety
    ///
    /// * `id` is a live context returned by `io_setup`, not destroyed while the view lives.
    pub(crate) unsafe fn new(id: AioContextId) -> Option<CompletionRing> {
        let header = id as *mut AioRing;
        if header.is_null() {
            return None;
        }
        // SAFETY: `io_setup` returns the address of the mapped ring header (caller's contract).
        let (magic, incompat, header_length, nr) = unsafe {
            (
                (*header).magic,
                (*header).incompat_features,
                (*header).header_length,
                (*header).nr,
            )
        };
        if magic != AIO_RING_MAGIC
            || incompat != 0
            || header_length as usize != std::mem::size_of::<AioRing>()
            || nr == 0
        {
            return None;
        }
        // SAFETY: the event array follows the header in the same mapping (`header_length` checked).
        let events = unsafe { header.cast::<u8>().add(header_length as usize) }.cast::<IoEvent>();
        Some(CompletionRing { header, events, nr })
    }

    fn head(&self) -> &AtomicU32 {
        // SAFETY:
        // * the header is mapped and aligned for `u32` (page-aligned mapping);
        // * the kernel accesses it only with word-sized loads and stores, so treating it as
        //   an atomic is sound.
        unsafe { AtomicU32::from_ptr(std::ptr::addr_of_mut!((*self.header).head)) }
    }

    fn tail(&self) -> &AtomicU32 {
        // SAFETY: as in `head`.
        unsafe { AtomicU32::from_ptr(std::ptr::addr_of_mut!((*self.header).tail)) }
    }

    /// Whether completed events wait in the ring (one load each: cheap enough to poll).
    pub(crate) fn has_events(&self) -> bool {
        self.head().load(Ordering::Relaxed) != self.tail().load(Ordering::Acquire)
    }

    /// Completed events waiting in the ring.
    pub(crate) fn len(&self) -> usize {
        let head = self.head().load(Ordering::Relaxed);
        let tail = self.tail().load(Ordering::Acquire);
        ((tail + self.nr - head) % self.nr) as usize
    }

    /// Takes the oldest completed event.
    pub(crate) fn pop(&mut self) -> Option<IoEvent> {
        let head = self.head().load(Ordering::Relaxed);
        let tail = self.tail().load(Ordering::Acquire);
        if head == tail || head >= self.nr {
            return None;
        }
        // SAFETY:
        // * `head < nr`, so the slot is inside the mapped event array;
        // * the Acquire load of `tail` above orders this read after the kernel's write.
        let event = unsafe { self.events.add(head as usize).read_volatile() };
        self.head().store((head + 1) % self.nr, Ordering::Release);
        Some(event)
    }
}
