//! fd handlers: read / write / poll / poll-ready callbacks per file descriptor, kept in a
//! copy-on-write table that may change while it is walked.
//!
//! Writers (`set`, any thread, serialised by a mutex) build a new table and swap it in;
//! the old one is retired through crossbeam-epoch, which plays the role of QEMU's RCU: a
//! poller holds an epoch guard only while it looks a handler up, and clones the `Arc` of the
//! nodes it will call, so a handler may add or remove handlers (itself included) from inside
//! its callback. A removed node is marked `deleted` and is never called again, even if it was
//! already in a poller's ready list.

use crate::epoll::Epoll;
use crossbeam_epoch::{self as epoch, Atomic, Owned};
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};

type Callback = Arc<dyn Fn() + Send + Sync>;
type PollFn = Arc<dyn Fn() -> bool + Send + Sync>;

/// The callbacks for one fd (QEMU's `aio_set_fd_handler` arguments), built fluently:
///
/// ```
/// # use corral_aio::FdHandlers;
/// let h = FdHandlers::new().read(|| println!("readable"));
/// # drop(h);
/// ```
///
/// `poll` is the busy-poll check (true: there is work) and `poll_ready` runs when it said so;
/// `poll_begin` / `poll_end` bracket busy-polling (e.g. to suppress device notifications).
#[derive(Clone, Default)]
pub struct FdHandlers {
    pub(crate) read: Option<Callback>,
    pub(crate) write: Option<Callback>,
    pub(crate) poll: Option<PollFn>,
    pub(crate) poll_ready: Option<Callback>,
    pub(crate) poll_begin: Option<Callback>,
    pub(crate) poll_end: Option<Callback>,
}

impl fmt::Debug for FdHandlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FdHandlers")
            .field("read", &self.read.is_some())
            .field("write", &self.write.is_some())
            .field("poll", &self.poll.is_some())
            .finish()
    }
}

impl FdHandlers {
    /// No callbacks: passing this to `set_fd_handler` removes the fd.
    pub fn new() -> Self {
        Self::default()
    }
    /// Called when the fd is readable (or has an error / hang-up).
    pub fn read(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.read = Some(Arc::new(f));
        self
    }
    /// Called when the fd is writable (or has an error).
    pub fn write(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.write = Some(Arc::new(f));
        self
    }
    /// Busy-poll check and the callback to run when it returns true.
    pub fn poll(
        mut self,
        poll: impl Fn() -> bool + Send + Sync + 'static,
        ready: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        self.poll = Some(Arc::new(poll));
        self.poll_ready = Some(Arc::new(ready));
        self
    }
    /// Called when busy-polling starts and ends (QEMU's `aio_set_fd_poll`).
    pub fn poll_begin_end(
        mut self,
        begin: impl Fn() + Send + Sync + 'static,
        end: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        self.poll_begin = Some(Arc::new(begin));
        self.poll_end = Some(Arc::new(end));
        self
    }
    fn is_empty(&self) -> bool {
        self.read.is_none() && self.write.is_none() && self.poll.is_none()
    }
    fn epoll_events(&self) -> u32 {
        let mut ev = 0;
        if self.read.is_some() {
            ev |= (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        }
        if self.write.is_some() {
            ev |= (libc::EPOLLOUT | libc::EPOLLERR) as u32;
        }
        ev
    }
}

pub(crate) struct FdNode {
    pub(crate) fd: RawFd,
    pub(crate) h: FdHandlers,
    pub(crate) deleted: AtomicBool,
    /// Set while one of its callbacks runs: a nested poll neither polls nor calls it.
    pub(crate) in_dispatch: AtomicBool,
}

#[derive(Default)]
pub(crate) struct HandlerTable {
    pub(crate) nodes: Vec<Arc<FdNode>>,
}

impl HandlerTable {
    pub(crate) fn find(&self, fd: RawFd) -> Option<&Arc<FdNode>> {
        self.nodes.iter().find(|n| n.fd == fd)
    }
}

pub(crate) struct FdHandlerList {
    table: Atomic<HandlerTable>,
    writer: Mutex<()>,
    /// Handlers with a poll function, and without one (cached for the poll loop).
    pub(crate) with_poll: AtomicUsize,
    pub(crate) without_poll: AtomicUsize,
}

impl fmt::Debug for FdHandlerList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FdHandlerList")
            .field("with_poll", &self.with_poll.load(Relaxed))
            .field("without_poll", &self.without_poll.load(Relaxed))
            .finish()
    }
}

impl FdHandlerList {
    pub(crate) fn new() -> Self {
        FdHandlerList {
            table: Atomic::new(HandlerTable::default()),
            writer: Mutex::new(()),
            with_poll: AtomicUsize::new(0),
            without_poll: AtomicUsize::new(0),
        }
    }

    /// Runs `f` on the current table under an epoch guard.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&HandlerTable) -> R) -> R {
        let guard = epoch::pin();
        let t = self.table.load(Acquire, &guard);
        // SAFETY:
        // * the table pointer is never null (created in `new`, replaced by `set`);
        // * a replaced table is destroyed only after every guard pinned before the swap is
        //   dropped, and ours lives until `f` returns.
        f(unsafe { t.deref() })
    }

    /// Adds, replaces (`handlers` non-empty) or removes (`handlers` empty) the handler of `fd`.
    pub(crate) fn set(&self, epoll: &Epoll, fd: RawFd, handlers: FdHandlers) -> io::Result<()> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let guard = epoch::pin();
        let old_ptr = self.table.load(Acquire, &guard);
        // SAFETY: as in `with`; writers are serialised, so `old_ptr` is the current table.
        let old = unsafe { old_ptr.deref() };
        let existing = old.find(fd).cloned();
        let mut nodes: Vec<Arc<FdNode>> =
            old.nodes.iter().filter(|n| n.fd != fd).cloned().collect();
        if handlers.is_empty() {
            if existing.is_none() {
                return Ok(());
            }
            epoll.delete(fd)?;
        } else {
            let events = handlers.epoll_events();
            if existing.is_some() {
                epoll.modify(fd, events, fd as u64)?;
            } else {
                epoll.add(fd, events, fd as u64)?;
            }
            nodes.push(Arc::new(FdNode {
                fd,
                h: handlers,
                deleted: AtomicBool::new(false),
                in_dispatch: AtomicBool::new(false),
            }));
        }
        if let Some(old_node) = existing {
            old_node.deleted.store(true, Relaxed);
        }
        let with_poll = nodes.iter().filter(|n| n.h.poll.is_some()).count();
        self.with_poll.store(with_poll, Relaxed);
        self.without_poll.store(nodes.len() - with_poll, Relaxed);
        let prev = self
            .table
            .swap(Owned::new(HandlerTable { nodes }), AcqRel, &guard);
        // SAFETY:
        // * `prev` is no longer reachable from `self.table`; readers that loaded it hold
        //   guards pinned before the swap, and destruction waits for them.
        unsafe { guard.defer_destroy(prev) };
        Ok(())
    }
}

/// A ready fd handler found by epoll or by busy polling.
pub(crate) struct Ready {
    pub(crate) node: Arc<FdNode>,
    pub(crate) revents: u32,
    pub(crate) poll_ready: bool,
}

/// Runs the callbacks of the ready handlers; a removed handler, or one whose callback is
/// running (we are in a nested poll), is skipped.
pub(crate) fn dispatch_ready(ready: Vec<Ready>) -> bool {
    let mut progress = false;
    for r in ready {
        let n = &*r.node;
        if n.deleted.load(Relaxed) || n.in_dispatch.load(Relaxed) {
            continue;
        }
        n.in_dispatch.store(true, Relaxed);
        struct Leave<'a>(&'a FdNode);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.in_dispatch.store(false, Relaxed);
            }
        }
        let _leave = Leave(n);
        const READ: u32 = (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        const WRITE: u32 = (libc::EPOLLOUT | libc::EPOLLERR) as u32;
        if r.poll_ready && r.revents == 0 {
            if let Some(f) = &n.h.poll_ready {
                f();
                progress = true;
            }
            continue;
        }
        if r.revents & READ != 0 && !n.deleted.load(Relaxed) {
            if let Some(f) = &n.h.read {
                f();
                progress = true;
            }
        }
        if r.revents & WRITE != 0 && !n.deleted.load(Relaxed) {
            if let Some(f) = &n.h.write {
                f();
                progress = true;
            }
        }
    }
    progress
}

impl Drop for FdHandlerList {
    fn drop(&mut self) {
        // SAFETY:
        // * `&mut self`: no reader or writer can hold the table any more.
        drop(unsafe { self.table.load(Relaxed, epoch::unprotected()).into_owned() });
    }
}
