//! The thread pool: blocking work on worker threads, completion back on the context.
//!
//! Work is queued under a mutex (the pool is for calls that block for microseconds or more).
//! Workers are spawned on demand up to `max`, and one idle longer than the idle timeout
//! exits while more than `min` remain. A finished request's completion is pushed to the
//! pool's done list and a bottom half of the context runs it, so callbacks always run on the
//! context's thread, never on a worker.
//!
//! Each request has a state word: QUEUED -> RUNNING -> DONE, or QUEUED -> CANCELLED. Workers
//! and `Work::cancel` race with a CAS from QUEUED, so a request is either cancelled (its
//! callback gets ECANCELED and the work never runs) or it runs to the end and completes
//! normally; there is no "cancelled but started".

use crate::bh::Bh;
use crate::co_schedule::{co_wake, current_with_home};
use crate::context::AioContext;
use corral_runtime::yield_now;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU64, AtomicU8};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
const CANCELLED: u8 = 3;

type Completion = Box<dyn FnOnce() + Send>;

trait Job: Send + Sync {
    fn state(&self) -> &AtomicU8;
    /// Runs the work (caller won QUEUED -> RUNNING) and returns its completion.
    fn run(&self) -> Completion;
    /// The completion for a cancelled request (its work never runs).
    fn cancelled(&self) -> Completion;
}

type WorkFn<R> = Box<dyn FnOnce() -> R + Send>;
type DoneFn<R> = Box<dyn FnOnce(Option<R>) + Send>;

/// `done` gets `None` when the request was cancelled.
struct Request<R> {
    state: AtomicU8,
    work: Mutex<Option<WorkFn<R>>>,
    done: Mutex<Option<DoneFn<R>>>,
}

fn take<X>(m: &Mutex<Option<X>>) -> Option<X> {
    m.lock().unwrap_or_else(|e| e.into_inner()).take()
}

impl<R: Send + 'static> Job for Request<R> {
    fn state(&self) -> &AtomicU8 {
        &self.state
    }
    fn run(&self) -> Completion {
        let work = take(&self.work).expect("work runs once");
        let res = work();
        let done = take(&self.done);
        Box::new(move || {
            if let Some(d) = done {
                d(Some(res))
            }
        })
    }
    fn cancelled(&self) -> Completion {
        drop(take(&self.work));
        let done = take(&self.done);
        Box::new(move || {
            if let Some(d) = done {
                d(None)
            }
        })
    }
}

/// Counters of a pool (snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadPoolStats {
    /// Live worker threads.
    pub workers: usize,
    /// Workers waiting for work.
    pub idle: usize,
    /// Workers ever spawned.
    pub spawned: u64,
    /// Requests whose work ran.
    pub completed: u64,
    /// Requests cancelled before they started.
    pub cancelled: u64,
}

struct State {
    queue: VecDeque<Arc<dyn Job>>,
    workers: usize,
    idle: usize,
    min: usize,
    max: usize,
    idle_timeout: Duration,
    stopping: bool,
}

struct Inner {
    state: Mutex<State>,
    work_cv: Condvar,
    done: Mutex<Vec<Completion>>,
    bh: Bh,
    spawned: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deliver(&self, c: Completion) {
        self.done.lock().unwrap_or_else(|e| e.into_inner()).push(c);
        self.bh.schedule();
    }

    /// Runs the delivered completions, on the context's thread (the bottom half).
    fn run_completions(&self) {
        let list = std::mem::take(&mut *self.done.lock().unwrap_or_else(|e| e.into_inner()));
        let mut rest = Requeue {
            pool: self,
            rest: list.into_iter(),
        };
        for c in rest.rest.by_ref() {
            c();
        }
    }

    fn worker(self: Arc<Self>) {
        let mut st = self.lock();
        loop {
            while st.queue.is_empty() && !st.stopping {
                st.idle += 1;
                let timeout = st.idle_timeout;
                let (g, to) = self
                    .work_cv
                    .wait_timeout(st, timeout)
                    .unwrap_or_else(|e| e.into_inner());
                st = g;
                st.idle -= 1;
                if to.timed_out() && st.queue.is_empty() && st.workers > st.min {
                    st.workers -= 1;
                    return;
                }
            }
            let Some(job) = st.queue.pop_front() else {
                // stopping and nothing queued
                st.workers -= 1;
                return;
            };
            drop(st);
            if job
                .state()
                .compare_exchange(QUEUED, RUNNING, AcqRel, Acquire)
                .is_ok()
            {
                let c = job.run();
                job.state().store(DONE, Release);
                self.completed.fetch_add(1, Relaxed);
                self.deliver(c);
            }
            st = self.lock();
        }
    }
}

/// The completions not yet run by `run_completions`. If a `done` callback panics, they go
/// back to the front of the done list and the bottom half is scheduled again, so one panicking
/// callback loses no other completion (the panic still reaches the caller of `poll`).
struct Requeue<'a> {
    pool: &'a Inner,
    rest: std::vec::IntoIter<Completion>,
}

impl Drop for Requeue<'_> {
    fn drop(&mut self) {
        if self.rest.len() == 0 {
            return;
        }
        let mut done = self.pool.done.lock().unwrap_or_else(|e| e.into_inner());
        let newer = std::mem::replace(&mut *done, self.rest.by_ref().collect());
        done.extend(newer);
        drop(done);
        self.pool.bh.schedule();
    }
}

/// A context's pool of worker threads (QEMU's `ThreadPool`).
pub struct ThreadPool {
    inner: Arc<Inner>,
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("stats", &self.stats())
            .finish()
    }
}

/// A submitted request; cancel it before it starts with [`Work::cancel`].
pub struct Work {
    job: Arc<dyn Job>,
    pool: Arc<Inner>,
}

impl fmt::Debug for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Work")
            .field("state", &self.job.state().load(Relaxed))
            .finish()
    }
}

impl Work {
    /// Cancels the request if it has not started (QEMU's asynchronous cancel): its
    /// callback then runs on the context with `ECANCELED` and the work never runs. Returns
    /// false if it is running or finished; it then completes normally.
    pub fn cancel(&self) -> bool {
        if self
            .job
            .state()
            .compare_exchange(QUEUED, CANCELLED, AcqRel, Acquire)
            .is_err()
        {
            return false;
        }
        self.pool.cancelled.fetch_add(1, Relaxed);
        self.pool.deliver(self.job.cancelled());
        true
    }

    /// Whether the work has finished running (its callback may still be pending).
    pub fn is_done(&self) -> bool {
        self.job.state().load(Acquire) == DONE
    }
}

impl ThreadPool {
    pub(crate) fn new(ctx: &AioContext) -> ThreadPool {
        let done_slot: Arc<Mutex<Option<std::sync::Weak<Inner>>>> = Arc::new(Mutex::new(None));
        let slot = done_slot.clone();
        let bh = ctx.bh_new(move || {
            let inner = slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .and_then(|w| w.upgrade());
            if let Some(inner) = inner {
                inner.run_completions();
            }
        });
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                workers: 0,
                idle: 0,
                min: 0,
                max: 64,
                idle_timeout: Duration::from_secs(10),
                stopping: false,
            }),
            work_cv: Condvar::new(),
            done: Mutex::new(Vec::new()),
            bh,
            spawned: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
        });
        *done_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(&inner));
        ThreadPool { inner }
    }

    /// Sets the minimum (kept alive when idle) and maximum number of workers.
    pub fn set_limits(&self, min: usize, max: usize) {
        let mut st = self.inner.lock();
        st.max = max.max(1);
        st.min = min.min(st.max);
        self.inner.work_cv.notify_all();
    }

    /// How long an idle worker above `min` waits for work before it exits.
    pub fn set_idle_timeout(&self, d: Duration) {
        self.inner.lock().idle_timeout = d;
        self.inner.work_cv.notify_all();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ThreadPoolStats {
        let st = self.inner.lock();
        ThreadPoolStats {
            workers: st.workers,
            idle: st.idle,
            spawned: self.inner.spawned.load(Relaxed),
            completed: self.inner.completed.load(Relaxed),
            cancelled: self.inner.cancelled.load(Relaxed),
        }
    }

    /// Runs `work` on a worker; `done` then runs on the context's thread with its result,
    /// or with `ECANCELED` if [`Work::cancel`] stopped it before it started.
    pub fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> io::Result<T> + Send + 'static,
        done: impl FnOnce(io::Result<T>) + Send + 'static,
    ) -> Work {
        self.submit_raw(work, move |r: Option<io::Result<T>>| {
            done(r.unwrap_or_else(|| Err(io::Error::from_raw_os_error(libc::ECANCELED))))
        })
    }

    /// Like `submit` for any result type; `done` gets `None` if the request was cancelled.
    pub fn submit_raw<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
        done: impl FnOnce(Option<R>) + Send + 'static,
    ) -> Work {
        let job: Arc<dyn Job> = Arc::new(Request {
            state: AtomicU8::new(QUEUED),
            work: Mutex::new(Some(Box::new(work))),
            done: Mutex::new(Some(Box::new(done))),
        });
        let mut st = self.inner.lock();
        st.queue.push_back(job.clone());
        if st.idle == 0 && st.workers < st.max {
            st.workers += 1;
            drop(st);
            let inner = self.inner.clone();
            let spawned = std::thread::Builder::new()
                .name("corral-pool".into())
                .spawn(move || inner.worker());
            match spawned {
                Ok(_) => {
                    self.inner.spawned.fetch_add(1, Relaxed);
                }
                Err(_) => {
                    let mut st = self.inner.lock();
                    st.workers -= 1;
                    let orphaned = st.workers == 0;
                    drop(st);
                    // No worker at all (the kernel refused a thread): run it here rather than
                    // never; the completion still goes through the bottom half.
                    if orphaned
                        && job
                            .state()
                            .compare_exchange(QUEUED, RUNNING, AcqRel, Acquire)
                            .is_ok()
                    {
                        let c = job.run();
                        job.state().store(DONE, Release);
                        self.inner.completed.fetch_add(1, Relaxed);
                        self.inner.deliver(c);
                    }
                }
            }
        } else {
            drop(st);
            self.inner.work_cv.notify_one();
        }
        Work {
            job,
            pool: self.inner.clone(),
        }
    }

    /// Runs `work` on a worker with no completion callback (QEMU's submit with a NULL cb).
    pub fn submit_detached(&self, work: impl FnOnce() + Send + 'static) -> Work {
        self.submit(
            move || {
                work();
                Ok(())
            },
            |_| {},
        )
    }

    /// Coroutine form: runs `work` on a worker and yields until its completion arrives on
    /// the context (QEMU's `thread_pool_submit_co`).
    ///
    /// # Panics
    /// Outside a coroutine.
    pub fn co_submit<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let co = current_with_home("ThreadPool::co_submit");
        let slot: Arc<Mutex<Option<io::Result<T>>>> = Arc::new(Mutex::new(None));
        let s2 = slot.clone();
        self.submit(work, move |r| {
            *s2.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            co_wake(co);
        });
        loop {
            yield_now();
            if let Some(r) = take(&slot) {
                return r;
            }
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        let mut st = self.inner.lock();
        st.stopping = true;
        // Queued work will never complete on a context that is going away.
        for job in st.queue.drain(..) {
            let _ = job
                .state()
                .compare_exchange(QUEUED, CANCELLED, AcqRel, Acquire);
        }
        drop(st);
        self.inner.work_cv.notify_all();
    }
}
