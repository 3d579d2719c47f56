//! The driving loop the two kernel-ring backends ([`super::io_uring`],
//! [`super::linux_aio`]) share: the submit bottom half and fd handlers, plugging, the
//! "schedule one bottom half per iteration" rule, and `process` (reap, submit, reap again)
//! with its guard against panicking coroutines.
//!
//! Each backend's `Shared` implements [`RingDriver`]; the functions here are generic over
//! it (no `dyn`, no allocation), so each backend gets its own inlined copy.

use super::bound::ThreadBound;
use super::glue;
use crate::{AioContext, Bh};
use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, OnceLock};

/// Submissions smaller than this do not change a backend's guess whether its completions
/// come from a device (few complete inside the submit call) or from the page cache
/// (most do). The guess compares the completions that appeared during the call with the
/// requests it carried, and completions of *earlier* requests can appear then too (a
/// device's burst, io_uring task work run by the call): with one request per call, as
/// while a device's completions are delivered, one of those flipped the guess to "page
/// cache" and the rest of the batch waited for its end (6% of requests on O_DIRECT reads).
pub(super) const GUESS_MIN_BATCH: usize = 8;

/// Requests that continue one another wait for up to this many to go together (see
/// [`Sequence`]).
const MERGE_BATCH: usize = 8;

/// Other requests go in pairs (see [`Sequence`]).
const PAIR: usize = 2;

/// Decides, while a device's completions are delivered, when the resubmissions of woken
/// coroutines go to the kernel.
///
/// A request held back is one the device is not working on: grouped by 8, about 3.5 of 64
/// random reads waited on average and the device ran that much shallower (O_DIRECT 4 KiB
/// random reads, depth 64, 8 interleaved rounds: 81.0 K IOPS grouped, 85.7 K one at a
/// time as fio does with its default `iodepth_batch_submit=1`, fio 84.5 K). In pairs, the
/// device keeps that depth (6 rounds: io-uring 89.9 K vs 90.1 K one at a time, linux-aio
/// 89.2 K vs 87.3 K) for one system call and one doorbell per two requests: 8-10% less
/// CPU per request. Requests that continue one another (sequential I/O) are merged by the
/// block layer into one bigger I/O when they reach it together, which small groups
/// prevent: those wait for up to [`MERGE_BATCH`] (sequential O_DIRECT reads: 194 K IOPS
/// in groups of 8, 91 K one at a time).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Sequence {
    /// End of the last request queued: its fd and the byte after it.
    end: Option<(RawFd, u64)>,
    /// Whether the last request queued began where the one before it ended.
    continues: bool,
}

impl Sequence {
    /// Notes a request queued for the kernel.
    #[inline]
    pub(super) fn note(&mut self, fd: RawFd, offset: u64, len: u64) {
        self.continues = self.end == Some((fd, offset));
        self.end = Some((fd, offset + len));
    }

    /// Whether the `queued` requests not given to the kernel yet should go now.
    #[inline]
    pub(super) fn send_now(&self, queued: usize) -> bool {
        queued >= MERGE_BATCH || (queued >= PAIR && !self.continues)
    }
}

/// What a ring backend's shared half gives the common loop.
pub(super) trait RingDriver: Send + Sync + Sized + 'static {
    /// The backend's state, touched only on the context's thread.
    type State;
    /// The state.
    fn state(&self) -> &ThreadBound<Self::State>;
    /// The plug depth inside the state (raised while completions are delivered too).
    fn plugged(s: &mut Self::State) -> &mut usize;
    /// Whether the submit bottom half is already scheduled.
    fn bh_scheduled(s: &mut Self::State) -> &mut bool;
    /// The bottom half that runs [`process`].
    fn submit_bh(&self) -> &OnceLock<Bh>;
    /// Whether completions wait (the poll handler).
    fn has_completions(&self) -> bool;
    /// Completes every completion available now, plugged so that woken coroutines queue.
    fn reap(&self);
    /// Sends queued requests unless plugged; returns how many the kernel took.
    fn submit_pending(&self) -> usize;
}

/// Creates the submit bottom half and watches `fd` (readable when completions wait);
/// `on_read` runs before `process` when the fd is readable.
pub(super) fn attach<D: RingDriver>(
    ctx: &AioContext,
    shared: &Arc<D>,
    fd: RawFd,
    on_read: impl Fn(&D) + Send + Sync + 'static,
) -> io::Result<()> {
    let weak = Arc::downgrade(shared);
    let bh = ctx.bh_new(move || {
        if let Some(shared) = weak.upgrade() {
            shared.state().with(|s| *D::bh_scheduled(s) = false);
            process(&*shared);
        }
    });
    let _ = shared.submit_bh().set(bh);
    let (on_readable, on_poll, on_poll_ready) = (
        Arc::downgrade(shared),
        Arc::downgrade(shared),
        Arc::downgrade(shared),
    );
    glue::watch_fd(
        ctx,
        fd,
        move || {
            if let Some(shared) = on_readable.upgrade() {
                on_read(&shared);
                process(&*shared);
            }
        },
        move || {
            on_poll
                .upgrade()
                .is_some_and(|shared| shared.has_completions())
        },
        move || {
            if let Some(shared) = on_poll_ready.upgrade() {
                process(&*shared);
            }
        },
    )
}

/// Delivers completions, then submits what they (and earlier requests) queued, and
/// checks once more for completions that the submission found ready.
#[inline]
pub(super) fn process<D: RingDriver>(d: &D) {
    // A woken coroutine that panics unwinds through here: run again from the bottom
    // half so the completions and submissions left behind are not stranded (the
    // eventfd may already be cleared).
    struct Resume<'a, D: RingDriver>(&'a D);
    impl<D: RingDriver> Drop for Resume<'_, D> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.state().with(|s| *D::bh_scheduled(s) = true);
                if let Some(bh) = self.0.submit_bh().get() {
                    bh.schedule();
                }
            }
        }
    }
    let _resume = Resume(d);
    d.reap();
    if d.submit_pending() > 0 {
        d.reap();
        d.submit_pending();
    }
}

/// Inside the state borrow: whether the caller must schedule the submit bottom half (not
/// plugged -- unplug or the end of reaping submits then -- and not scheduled yet). Marks
/// it scheduled.
#[inline]
pub(super) fn claim_bh<D: RingDriver>(s: &mut D::State) -> bool {
    let schedule = *D::plugged(s) == 0 && !*D::bh_scheduled(s);
    *D::bh_scheduled(s) |= schedule;
    schedule
}

/// Schedules the submit bottom half if `claim` says so.
#[inline]
pub(super) fn schedule_if<D: RingDriver>(d: &D, claim: bool) {
    if claim {
        if let Some(bh) = d.submit_bh().get() {
            bh.schedule();
        }
    }
}

/// Queues a request with `enqueue` and schedules the submit bottom half if needed.
#[inline]
pub(super) fn submit<D: RingDriver>(d: &D, enqueue: impl FnOnce(&mut D::State)) {
    let claim = d.state().with(|s| {
        enqueue(s);
        claim_bh::<D>(s)
    });
    schedule_if(d, claim);
}

/// `Backend::plug`.
#[inline]
pub(super) fn plug<D: RingDriver>(d: &D) {
    d.state().with(|s| *D::plugged(s) += 1);
}

/// `Backend::unplug`: the last unplug sends what was queued.
#[inline]
pub(super) fn unplug<D: RingDriver>(d: &D) {
    let now = d.state().with(|s| {
        *D::plugged(s) -= 1;
        *D::plugged(s) == 0
    });
    if now {
        process(d);
    }
}

#[cfg(test)]
mod tests {
    use super::{Sequence, MERGE_BATCH, PAIR};

    #[test]
    fn random_requests_go_at_once_sequential_ones_in_groups() {
        let mut seq = Sequence::default();
        seq.note(3, 8192, 4096);
        assert!(!seq.send_now(1), "a random request waits for a second one");
        seq.note(3, 40960, 4096);
        assert!(seq.send_now(PAIR), "a pair of random requests goes");
        seq.note(3, 45056, 4096); // continues the one before
        assert!(!seq.send_now(3), "a sequential run waits to be merged");
        assert!(seq.send_now(MERGE_BATCH), "but no longer than a group");
        seq.note(4, 49152, 4096); // where the last ended, but another file
        assert!(seq.send_now(PAIR));
        seq.note(4, 0, 4096); // a jump back
        assert!(seq.send_now(PAIR));
        assert!(!seq.send_now(0), "nothing queued, nothing to send");
    }
}
