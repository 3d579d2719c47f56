//! The context's sleep in our `io_getevents` (see the crate's `sleeper` module).
//!
//! While requests are in flight the context sleeps here rather than in `epoll_wait`, and
//! the iocbs carry no eventfd: the kernel wakes a thread in `io_getevents` once, not once
//! per completion. An aio poll request on the context's epoll fd (one shot, re-armed
//! after it fires) makes every fd, notification and timer wake this wait as well; one slot
//! of the AIO context stays free for it.

use super::sys::{self, Iocb};
use super::Shared;
use crate::sleeper::Sleeper;
use crate::AioContext;
use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Weak};

/// `aio_data` of our aio poll request (requests carry their address, never 1).
pub(super) const POLL_TOKEN: u64 = 1;

/// How long a sleep lasts at most when the poll request could not be armed: the fds are
/// looked at after it.
const UNWATCHED_SLEEP_NS: i64 = 1_000_000;

fn as_sleeper(shared: &Arc<Shared>) -> Weak<dyn Sleeper> {
    Arc::downgrade(shared) as Weak<dyn Sleeper>
}

/// Lends our wait to `ctx` if the context has no sleeper yet, completions come from the
/// userspace ring (a busy context polls it), and the kernel takes an aio poll on an epoll
/// fd. Otherwise every iocb keeps signalling the eventfd.
pub(super) fn lend_to(ctx: &AioContext, shared: &Arc<Shared>) {
    if shared.state.with(|s| s.ring.is_none()) || !ctx.claim_sleeper(as_sleeper(shared)) {
        return;
    }
    let armed = shared.state.with(|s| {
        s.poll_armed = arm(shared.id, ctx.epoll_fd()).is_ok();
        if s.poll_armed {
            s.resfd = None;
        }
        s.poll_armed
    });
    if !armed {
        ctx.release_sleeper(&as_sleeper(shared));
    }
}

/// Takes back what `lend_to` lent.
pub(super) fn take_back(ctx: &AioContext, shared: &Arc<Shared>) {
    ctx.release_sleeper(&as_sleeper(shared));
}

/// Submits the aio poll request on `epoll_fd` (readable: some fd it watches is ready).
fn arm(id: sys::AioContextId, epoll_fd: RawFd) -> io::Result<()> {
    let mut iocb = Iocb {
        aio_data: POLL_TOKEN,
        aio_lio_opcode: sys::IOCB_CMD_POLL,
        aio_fildes: epoll_fd as u32,
        aio_buf: libc::POLLIN as u64,
        ..Iocb::default()
    };
    // SAFETY: the kernel copies the iocb during the call; a poll request has no buffer.
    match unsafe { sys::io_submit(id, &[&mut iocb]) }? {
        1 => Ok(()),
        _ => Err(io::Error::from_raw_os_error(libc::EAGAIN)),
    }
}

impl Sleeper for Shared {
    fn wants_sleep(&self) -> bool {
        self.state.is_owner() && self.state.with(|s| s.in_kernel > 0)
    }

    fn sleep(&self, epoll_fd: RawFd, timeout_ns: i64) -> bool {
        self.state.with(|s| {
            if s.has_events() {
                // No sleep: completions wait already. The fds are looked at all the same
                // (our poll's completion may be among the events), so that a loop kept
                // busy by completions never starves its other fd handlers.
                return true;
            }
            let mut timeout_ns = timeout_ns;
            let mut epoll_ready = false;
            if !s.poll_armed {
                match arm(self.id, epoll_fd) {
                    Ok(()) => s.poll_armed = true,
                    Err(_) => {
                        timeout_ns = match timeout_ns {
                            t if t < 0 => UNWATCHED_SLEEP_NS,
                            t => t.min(UNWATCHED_SLEEP_NS),
                        };
                        epoll_ready = true;
                    }
                }
            }
            s.sleeps += 1;
            // EINTR (a signal) returns early with nothing: the caller polls and comes back.
            let n = sys::io_getevents(self.id, 1, &mut s.fetched, timeout_ns).unwrap_or(0);
            let mut kept = 0;
            for i in 0..n {
                if s.fetched[i].data == POLL_TOKEN {
                    s.poll_armed = false;
                    epoll_ready = true;
                } else {
                    s.fetched[kept] = s.fetched[i];
                    kept += 1;
                }
            }
            s.fetched_len = kept;
            s.fetched_next = 0;
            epoll_ready
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::LinuxAioBackend;
    use super::*;
    use crate::{FdHandlers, Timer};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    /// A backend whose context sleeps in its `io_getevents`, with one kernel request that
    /// never completes (an aio poll on a pipe nobody writes), so the context sleeps there.
    fn sleeping_backend() -> Option<(Arc<AioContext>, LinuxAioBackend, OwnedFd, OwnedFd)> {
        let ctx = AioContext::new().unwrap();
        let backend = match LinuxAioBackend::new(&ctx) {
            Ok(b) => b,
            Err(err) => {
                eprintln!("!!! SKIPPED: the kernel refuses linux-aio ({err})");
                return None;
            }
        };
        assert!(
            backend.context_sleeps_here(),
            "this kernel has a userspace ring and aio poll: the context should sleep here"
        );
        let (rd, wr) = pipe();
        let mut iocb = Iocb {
            aio_data: 2,
            aio_lio_opcode: sys::IOCB_CMD_POLL,
            aio_fildes: rd.as_raw_fd() as u32,
            aio_buf: libc::POLLIN as u64,
            ..Iocb::default()
        };
        let shared = &backend.shared;
        // SAFETY: a poll request has no buffer; the kernel copies the iocb.
        let taken = unsafe { sys::io_submit(shared.id, &[&mut iocb]) };
        assert_eq!(taken.unwrap(), 1);
        shared.state.with(|s| s.in_kernel += 1);
        Some((ctx, backend, rd, wr))
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two fds pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 just returned these fds, owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn sleeps(backend: &LinuxAioBackend) -> u64 {
        backend.shared.state.with(|s| s.sleeps)
    }

    /// Polls (blocking) until `done`, which the test makes true after 30 ms; fails if
    /// only the backstop (500 ms) ended a sleep, or if the context never slept in our
    /// `io_getevents`.
    fn poll_until(ctx: &AioContext, backend: &LinuxAioBackend, done: impl Fn() -> bool) {
        // A backstop: the sleep's timeout ends it even if nothing else does.
        let backstop = Timer::new(ctx, || {});
        let (start, before) = (Instant::now(), sleeps(backend));
        while !done() && start.elapsed() < Duration::from_secs(1) {
            if !backstop.is_pending() {
                backstop.arm_after(Duration::from_millis(500));
            }
            ctx.poll(true);
        }
        let took = start.elapsed();
        assert!(done(), "the sleep was not woken");
        assert!(
            took < Duration::from_millis(300),
            "woken by the backstop ({took:?})"
        );
        assert!(
            sleeps(backend) > before,
            "the context slept in epoll_wait, not in io_getevents"
        );
    }

    /// Runs `f` on another thread 30 ms from now.
    fn in_30ms<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            f()
        })
    }

    #[test]
    fn one_backend_per_context_lends_its_wait_and_gives_it_back_when_dropped() {
        let ctx = AioContext::new().unwrap();
        let first = match LinuxAioBackend::new(&ctx) {
            Ok(b) => b,
            Err(err) => return eprintln!("!!! SKIPPED: the kernel refuses linux-aio ({err})"),
        };
        let second = LinuxAioBackend::new(&ctx).unwrap();
        assert!(first.context_sleeps_here());
        assert!(
            !second.context_sleeps_here(),
            "a context sleeps in one wait only"
        );
        drop(first);
        let third = LinuxAioBackend::new(&ctx).unwrap();
        assert!(
            third.context_sleeps_here(),
            "the dropped backend kept the slot"
        );
        drop(second);
        assert!(third.context_sleeps_here());
    }

    #[test]
    fn a_bottom_half_from_another_thread_wakes_the_sleep() {
        let Some((ctx, backend, _rd, _wr)) = sleeping_backend() else {
            return;
        };
        let ran = Arc::new(AtomicUsize::new(0));
        let (ctx2, ran2) = (ctx.clone(), ran.clone());
        let thread = in_30ms(move || {
            ctx2.bh_schedule_oneshot(move || {
                ran2.fetch_add(1, SeqCst);
            })
        });
        poll_until(&ctx, &backend, || ran.load(SeqCst) == 1);
        thread.join().unwrap();
    }

    #[test]
    fn a_timer_ends_the_sleep_on_time() {
        let Some((ctx, backend, _rd, _wr)) = sleeping_backend() else {
            return;
        };
        let fired = Arc::new(AtomicUsize::new(0));
        let fired2 = fired.clone();
        let timer = Timer::new(&ctx, move || {
            fired2.fetch_add(1, SeqCst);
        });
        let start = Instant::now();
        timer.arm_after(Duration::from_millis(20));
        poll_until(&ctx, &backend, || fired.load(SeqCst) == 1);
        assert!(
            start.elapsed() >= Duration::from_millis(20),
            "the timer fired early"
        );
    }

    #[test]
    fn a_readable_fd_wakes_the_sleep_and_its_handler_runs() {
        let Some((ctx, backend, _rd, _wr)) = sleeping_backend() else {
            return;
        };
        let (rd, wr) = pipe();
        let read = Arc::new(AtomicUsize::new(0));
        let (read2, fd) = (read.clone(), rd.as_raw_fd());
        ctx.set_fd_handler(
            fd,
            FdHandlers::new().read(move || {
                let mut byte = 0u8;
                // SAFETY: one byte into a valid local; the pipe stays open while registered.
                if unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) } == 1 {
                    read2.fetch_add(1, SeqCst);
                }
            }),
        )
        .unwrap();
        let thread = in_30ms(move || {
            // SAFETY: one byte from a valid local into the pipe's write end.
            let written = unsafe { libc::write(wr.as_raw_fd(), b"x".as_ptr().cast(), 1) };
            assert_eq!(written, 1);
            wr
        });
        poll_until(&ctx, &backend, || read.load(SeqCst) == 1);
        let _wr = thread.join().unwrap();
        ctx.remove_fd_handler(fd).unwrap();
    }
}
