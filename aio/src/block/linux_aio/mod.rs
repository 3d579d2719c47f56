//! The linux-aio backend: `io_submit` in batches, completions from the userspace ring.
//!
//! * Submissions are queued and sent by one `io_submit` per batch: from a bottom half
//!   scheduled by the first request of an iteration, or at the end of completion
//!   processing (which runs plugged, so the coroutines it wakes queue their next request).
//!   A partial submit leaves the rest queued; `EAGAIN` waits for completions to free slots;
//!   an iocb the kernel refuses completes with its errno.
//! * Completions are read from the ring the kernel maps for us (the `ring` module); where it does
//!   not (unknown layout), `io_getevents` with a zero timeout. They are checked once right
//!   after each submit, so fast devices and cached files complete without a wake-up.
//! * The context sleeps in this backend's `io_getevents` while requests are in flight
//!   (the `sleep` module): an aio poll request on the context's epoll fd wakes that wait for
//!   every fd, notification and timer too. A busy context polls the ring (the poll handler).
//! * Where the context already has such a sleeper (a second linux-aio backend on it), or
//!   the kernel has no userspace ring or no aio poll, every iocb signals an eventfd instead
//!   (`IOCB_FLAG_RESFD`), an fd handler of the context.
//!
//! Why not always the eventfd: the kernel signals it for every iocb, from the device's
//! interrupt, and epoll's callback runs each time (~80 ns more per write than an eventfd
//! outside epoll, here). A virtio disk here completes a whole depth-64 queue in one
//! interrupt; block-layer traces of O_DIRECT random reads showed that interrupt's completion
//! work 10-25 us longer than under fio's libaio (which sleeps in `io_getevents`, so only the
//! first completion wakes anyone), and the first resubmission that much later: about 2% of
//! a ~700 us cycle. A thread asleep in `io_getevents` is woken once per burst.

mod ring;
mod sleep;
pub(crate) mod sys;

use super::bound::{while_raised, ThreadBound};
use super::error::syscall;
use super::glue;
use super::request::{self, Op, Request, RequestQueue};
use super::ring_driver::{self, RingDriver, Sequence};
use super::{Backend, BackendStats};
use crate::{AioContext, Bh};
use ring::CompletionRing;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};
use sys::{AioContextId, IoEvent, Iocb};

/// Requests the kernel holds at most at once (`io_setup`'s `nr_events`).
const MAX_EVENTS: usize = 1024;
/// iocbs per `io_submit`.
const SUBMIT_BATCH: usize = 256;

/// See the module documentation.
#[derive(Debug)]
pub struct LinuxAioBackend {
    shared: Arc<Shared>,
    ctx: Arc<AioContext>,
}

#[derive(Debug)]
struct Shared {
    state: ThreadBound<State>,
    id: AioContextId,
    eventfd: OwnedFd,
    submit_bh: OnceLock<Bh>,
}

#[derive(Debug)]
struct State {
    ring: Option<CompletionRing>,
    /// Prepared, not yet given to the kernel.
    pending: RequestQueue,
    /// Given to the kernel, not completed.
    in_kernel: usize,
    plugged: usize,
    bh_scheduled: bool,
    /// Whether completions come from a device (few are ready right after `io_submit`), so
    /// resubmissions are sent while a batch of completions is still being delivered.
    early_submit: bool,
    /// When resubmissions go while completions are delivered.
    sequence: Sequence,
    stats: BackendStats,
    /// Events fetched by `io_getevents` (by the context's sleep, or without a userspace
    /// ring), and how many of them were consumed.
    fetched: [IoEvent; 32],
    fetched_len: usize,
    fetched_next: usize,
    /// The eventfd each iocb signals; None while the context sleeps in our `io_getevents`.
    resfd: Option<RawFd>,
    /// Whether our aio poll request on the context's epoll fd is with the kernel.
    poll_armed: bool,
    /// Times the context slept in our `io_getevents`.
    sleeps: u64,
}

impl State {
    /// The next completed request's event, if any: fetched already, else from the ring,
    /// else through `io_getevents`. Skips our aio poll's own completion.
    fn next_event(&mut self, id: AioContextId) -> Option<IoEvent> {
        loop {
            let event = if self.fetched_next < self.fetched_len {
                self.fetched_next += 1;
                self.fetched[self.fetched_next - 1]
            } else if let Some(ring) = self.ring.as_mut() {
                let event = ring.pop()?;
                self.stats.reaped += 1;
                event
            } else {
                if self.in_kernel == 0 {
                    return None;
                }
                self.fetched_len = sys::io_getevents_nowait(id, &mut self.fetched).unwrap_or(0);
                self.fetched_next = 0;
                if self.fetched_len == 0 {
                    return None;
                }
                continue;
            };
            if event.data == sleep::POLL_TOKEN {
                self.poll_armed = false;
                continue;
            }
            self.in_kernel -= 1;
            return Some(event);
        }
    }

    /// Whether completed events wait, fetched or in the ring.
    fn has_events(&self) -> bool {
        self.fetched_next < self.fetched_len || self.ring.as_ref().is_some_and(|r| r.has_events())
    }
}

impl LinuxAioBackend {
    /// Sets up an AIO context and registers its eventfd with `ctx`.
    pub fn new(ctx: &Arc<AioContext>) -> io::Result<Self> {
        let efd = syscall!(eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC))?;
        // SAFETY: `eventfd` just returned this fd, owned by nobody else.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        let id = sys::io_setup(MAX_EVENTS as u32)?;
        // SAFETY: `id` is live until `Shared::drop` destroys it, after the ring view is gone.
        let ring = unsafe { CompletionRing::new(id) };
        let state = State {
            ring,
            pending: RequestQueue::default(),
            in_kernel: 0,
            plugged: 0,
            early_submit: false,
            sequence: Sequence::default(),
            bh_scheduled: false,
            stats: BackendStats::default(),
            fetched: [IoEvent::default(); 32],
            fetched_len: 0,
            fetched_next: 0,
            resfd: Some(efd),
            poll_armed: false,
            sleeps: 0,
        };
        let shared = Arc::new(Shared {
            state: ThreadBound::new(state),
            id,
            eventfd,
            submit_bh: OnceLock::new(),
        });
        ring_driver::attach(ctx, &shared, efd, Shared::clear_eventfd)?;
        sleep::lend_to(ctx, &shared);
        Ok(LinuxAioBackend {
            shared,
            ctx: ctx.clone(),
        })
    }

    /// Whether completions are read from the userspace ring (else `io_getevents`).
    pub fn uses_userspace_ring(&self) -> bool {
        self.shared.state.with(|s| s.ring.is_some())
    }

    /// Whether the context sleeps in this backend's `io_getevents` while requests are in
    /// flight (else each request signals an eventfd the context watches).
    pub fn context_sleeps_here(&self) -> bool {
        self.shared.state.with(|s| s.resfd.is_none())
    }
}

impl Drop for LinuxAioBackend {
    fn drop(&mut self) {
        if let Some(bh) = self.shared.submit_bh.get() {
            bh.delete();
        }
        sleep::take_back(&self.ctx, &self.shared);
        glue::unwatch_fd(&self.ctx, self.shared.eventfd.as_raw_fd());
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Drop the ring view first: `io_destroy` unmaps it.
        self.state.with(|s| s.ring = None);
        let _ = sys::io_destroy(self.id);
    }
}

/// Fills the request's iocb for `op`, to signal `resfd` when it completes.
fn prepare(req: NonNull<Request>, resfd: Option<RawFd>) {
    let r = req.as_ptr();
    // SAFETY:
    // * `req` is in flight and owned by the backend; its coroutine does not touch it.
    unsafe {
        let (iov, iovcnt, single) = ((*r).iov, (*r).iovcnt, (*r).iovcnt == 1);
        let (opcode, buf, nbytes) = match (*r).op {
            Op::Read if single => (
                sys::IOCB_CMD_PREAD,
                (*iov).iov_base as u64,
                (*iov).iov_len as u64,
            ),
            Op::Write if single => (
                sys::IOCB_CMD_PWRITE,
                (*iov).iov_base as u64,
                (*iov).iov_len as u64,
            ),
            Op::Read => (sys::IOCB_CMD_PREADV, iov as u64, iovcnt as u64),
            Op::Write => (sys::IOCB_CMD_PWRITEV, iov as u64, iovcnt as u64),
            Op::Flush => (sys::IOCB_CMD_FDSYNC, 0, 0),
        };
        (*r).iocb.write(Iocb {
            aio_data: r as u64,
            aio_lio_opcode: opcode,
            aio_fildes: (*r).fd as u32,
            aio_buf: buf,
            aio_nbytes: nbytes,
            aio_offset: (*r).offset as i64,
            aio_flags: if resfd.is_some() {
                sys::IOCB_FLAG_RESFD
            } else {
                0
            },
            aio_resfd: resfd.unwrap_or(0) as u32,
            ..Iocb::default()
        });
    }
}

impl Shared {
    fn clear_eventfd(&self) {
        let mut count = 0u64;
        // A failed read only means another pass already cleared it (EAGAIN).
        let _ = syscall!(read(
            self.eventfd.as_raw_fd(),
            (&mut count as *mut u64).cast(),
            8
        ));
    }
}

impl RingDriver for Shared {
    type State = State;

    fn state(&self) -> &ThreadBound<State> {
        &self.state
    }

    fn plugged(s: &mut State) -> &mut usize {
        &mut s.plugged
    }

    fn bh_scheduled(s: &mut State) -> &mut bool {
        &mut s.bh_scheduled
    }

    fn submit_bh(&self) -> &OnceLock<Bh> {
        &self.submit_bh
    }

    fn has_completions(&self) -> bool {
        self.state.with(|s| s.has_events())
    }

    /// Completes every event available now, plugged so that woken coroutines queue. One
    /// event leaves the ring (or the fallback buffer) per completion, so a coroutine that
    /// panics when woken loses no other completion.
    fn reap(&self) {
        while_raised(
            &self.state,
            |s| &mut s.plugged,
            || {
                while let Some(event) = self.state.with(|s| s.next_event(self.id)) {
                    // SAFETY:
                    // * `data` is the address of a request we submitted (set in `prepare`) and the
                    //   kernel reports each iocb once, so it is in flight and ours to complete;
                    // * no borrow of `state` is held.
                    unsafe {
                        request::complete(
                            NonNull::new_unchecked(event.data as *mut Request),
                            event.res as isize,
                        )
                    };
                    self.submit_early();
                }
            },
        )
    }

    /// Sends queued requests with as few `io_submit` calls as the kernel allows; returns
    /// how many it took.
    fn submit_pending(&self) -> usize {
        if self.state.with(|s| s.plugged > 0) {
            return 0;
        }
        self.submit_pending_now()
    }
}

impl Shared {
    /// While reaping a device's completions: sends the resubmissions of woken coroutines
    /// as `Sequence` says (in pairs, or in groups of 8 when sequential), so the device is
    /// not left shallow until the batch ends (page-cache reads, which complete inside
    /// `io_submit`, keep one call per batch).
    fn submit_early(&self) {
        let send = self
            .state
            .with(|s| s.early_submit && s.sequence.send_now(s.pending.len()));
        if send {
            self.submit_pending_now();
        }
    }

    /// `submit_pending`, also while plugged.
    fn submit_pending_now(&self) -> usize {
        let mut total = 0;
        loop {
            let mut iocbs = [std::ptr::null_mut::<Iocb>(); SUBMIT_BATCH];
            let step = self.state.with(|s| {
                // One slot stays free for our aio poll request.
                let room = (MAX_EVENTS - 1)
                    .saturating_sub(s.in_kernel)
                    .min(SUBMIT_BATCH);
                let mut n = 0;
                while n < room {
                    let Some(req) = s.pending.pop_front() else {
                        break;
                    };
                    // SAFETY: a queued request is valid; its iocb stays put until completion.
                    iocbs[n] =
                        unsafe { std::ptr::addr_of_mut!((*req.as_ptr()).iocb) }.cast::<Iocb>();
                    n += 1;
                }
                if n == 0 {
                    return Step::Done;
                }
                let ready_before = s.ring.as_ref().map_or(0, |ring| ring.len());
                // SAFETY: each iocb belongs to an in-flight request whose buffers live until it completes.
                let res = unsafe { sys::io_submit(self.id, &iocbs[..n]) };
                s.stats.submit_calls += 1;
                if let (Ok(taken), Some(ring)) = (&res, s.ring.as_ref()) {
                    // Most complete inside the call: page-cache reads. Few: a device.
                    let inline = ring.len().saturating_sub(ready_before);
                    if *taken >= ring_driver::GUESS_MIN_BATCH {
                        s.early_submit = inline * 2 < *taken;
                    }
                }
                let (taken, failed) = match res {
                    Ok(taken) => (taken, None),
                    Err(err) => match err.raw_os_error() {
                        Some(libc::EINTR) => (0, None),
                        // Out of slots while nothing is in flight would never recover: fail it.
                        Some(libc::EAGAIN) if s.in_kernel > 0 => (0, None),
                        errno => (0, Some(-(errno.unwrap_or(libc::EIO)) as isize)),
                    },
                };
                s.in_kernel += taken;
                s.stats.submitted += taken as u64;
                let refused = if failed.is_some() { 1 } else { 0 };
                for &iocb in iocbs[taken + refused..n].iter().rev() {
                    // SAFETY: the request owning this iocb was popped above and is still in flight.
                    unsafe {
                        s.pending.push_front(NonNull::new_unchecked(
                            iocb.cast::<u8>().sub(iocb_offset()).cast(),
                        ))
                    };
                }
                match failed {
                    Some(res) => Step::Failed(iocbs[taken], res, taken),
                    None if taken == n => Step::More(taken),
                    None => Step::Stop(taken),
                }
            });
            match step {
                Step::Done => return total,
                Step::More(taken) => total += taken,
                Step::Stop(taken) => return total + taken,
                Step::Failed(iocb, res, taken) => {
                    total += taken;
                    // SAFETY:
                    // * the kernel refused this iocb, so its request is still ours and in flight;
                    // * no borrow is held; the waiting coroutine is suspended or is this one.
                    unsafe {
                        request::complete(
                            NonNull::new_unchecked(iocb.cast::<u8>().sub(iocb_offset()).cast()),
                            res,
                        )
                    };
                }
            }
        }
    }
}

enum Step {
    Done,
    More(usize),
    Stop(usize),
    Failed(*mut Iocb, isize, usize),
}

/// Offset of `iocb` inside `Request` (to go back from an iocb to its request).
fn iocb_offset() -> usize {
    std::mem::offset_of!(Request, iocb)
}

impl Backend for LinuxAioBackend {
    fn name(&self) -> &'static str {
        "linux-aio"
    }

    unsafe fn submit(&self, req: NonNull<Request>) {
        ring_driver::submit(&*self.shared, |s| {
            prepare(req, s.resfd);
            // SAFETY: `req` is in flight and stays valid until completed (caller's contract).
            let r = unsafe { req.as_ref() };
            s.sequence.note(r.fd, r.offset, r.len as u64);
            // SAFETY: as above.
            unsafe { s.pending.push_back(req) };
        });
    }

    fn stats(&self) -> BackendStats {
        self.shared.state.with(|s| s.stats)
    }

    fn in_flight(&self) -> usize {
        self.shared.state.with(|s| s.in_kernel + s.pending.len())
    }

    fn plug(&self) {
        ring_driver::plug(&*self.shared);
    }

    fn unplug(&self) {
        ring_driver::unplug(&*self.shared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_come_from_the_userspace_ring() {
        let ctx = AioContext::new().unwrap();
        match LinuxAioBackend::new(&ctx) {
            Ok(backend) => assert!(
                backend.uses_userspace_ring(),
                "this kernel's aio_ring layout is not the one we read"
            ),
            Err(err) => eprintln!("!!! SKIPPED: the kernel refuses linux-aio ({err})"),
        }
    }
}
