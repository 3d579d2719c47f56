//! Parity with QEMU's tests/unit/test-thread-pool.c.

mod common;

use common::Watchdog;
use corral_aio::AioContext;
use corral_runtime::Coroutine;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A gate the workers block on until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut g = self.open.lock().unwrap();
        while !*g {
            g = self.cv.wait(g).unwrap();
        }
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

/// submit-no-complete: work without a completion callback runs on a worker.
#[test]
fn submit_no_complete() {
    let _w = Watchdog::new("submit_no_complete", Duration::from_secs(60));
    let ctx = AioContext::new().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let main = std::thread::current().id();
    ctx.thread_pool().submit_detached(move || {
        assert_ne!(std::thread::current().id(), main);
        n2.fetch_add(1, SeqCst);
    });
    while n.load(SeqCst) == 0 {
        ctx.poll(true);
    }
    assert_eq!(n.load(SeqCst), 1);
}

/// submit-aio: the callback runs on the context's thread with the work's result.
#[test]
fn submit_aio() {
    let _w = Watchdog::new("submit_aio", Duration::from_secs(60));
    let ctx = AioContext::new().unwrap();
    let main = std::thread::current().id();
    let got: Arc<Mutex<Option<io::Result<u32>>>> = Arc::default();
    let g2 = got.clone();
    ctx.thread_pool().submit(
        || Ok(42),
        move |r| {
            assert_eq!(
                std::thread::current().id(),
                main,
                "completion on the context's thread"
            );
            *g2.lock().unwrap() = Some(r);
        },
    );
    while got.lock().unwrap().is_none() {
        ctx.poll(true);
    }
    assert_eq!(got.lock().unwrap().take().unwrap().unwrap(), 42);
    let e = Arc::new(Mutex::new(None));
    let e2 = e.clone();
    ctx.thread_pool().submit(
        || -> io::Result<()> { Err(io::Error::from_raw_os_error(libc::EIO)) },
        move |r| *e2.lock().unwrap() = Some(r.unwrap_err().raw_os_error()),
    );
    while e.lock().unwrap().is_none() {
        ctx.poll(true);
    }
    assert_eq!(*e.lock().unwrap(), Some(Some(libc::EIO)), "errno kept");
}

/// submit-co: a coroutine yields until its work is done.
#[test]
fn submit_co() {
    let _w = Watchdog::new("submit_co", Duration::from_secs(60));
    let ctx = AioContext::new().unwrap();
    let result = Arc::new(Mutex::new(None));
    let (r2, c2) = (result.clone(), ctx.clone());
    let main = std::thread::current().id();
    let co = Coroutine::new(move || {
        let worker = c2
            .thread_pool()
            .co_submit(|| Ok(std::thread::current().id()));
        assert_eq!(std::thread::current().id(), main);
        *r2.lock().unwrap() = Some(worker.unwrap());
    });
    ctx.co_enter(co);
    assert!(!co.is_terminated(), "yielded while the work runs");
    while !co.is_terminated() {
        ctx.poll(true);
    }
    let worker = result.lock().unwrap().unwrap();
    assert_ne!(worker, main, "the work ran on a worker thread");
}

/// submit-many: more requests than workers, callback and coroutine forms mixed; all
/// complete, with at most `max` workers.
#[test]
fn submit_many() {
    let _w = Watchdog::new("submit_many", Duration::from_secs(60));
    const N: usize = 100;
    let ctx = AioContext::new().unwrap();
    ctx.thread_pool().set_limits(0, 4);
    let done = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let max_running = Arc::new(AtomicUsize::new(0));
    let work = {
        let (running, max_running) = (running.clone(), max_running.clone());
        move |i: usize| {
            let (running, max_running) = (running.clone(), max_running.clone());
            move || {
                let now = running.fetch_add(1, SeqCst) + 1;
                max_running.fetch_max(now, SeqCst);
                std::thread::sleep(Duration::from_micros(200));
                running.fetch_sub(1, SeqCst);
                Ok(i)
            }
        }
    };
    let mut cos = Vec::new();
    for i in 0..N {
        if i % 2 == 0 {
            let d = done.clone();
            ctx.thread_pool().submit(work(i), move |r| {
                assert_eq!(r.unwrap(), i);
                d.fetch_add(1, SeqCst);
            });
        } else {
            let (d, c, w) = (done.clone(), ctx.clone(), work(i));
            let co = Coroutine::new(move || {
                assert_eq!(c.thread_pool().co_submit(w).unwrap(), i);
                d.fetch_add(1, SeqCst);
            });
            ctx.co_enter(co);
            cos.push(co);
        }
    }
    while done.load(SeqCst) < N {
        ctx.poll(true);
    }
    assert!(cos.iter().all(|c| c.is_terminated()));
    assert!(
        max_running.load(SeqCst) <= 4,
        "more than max workers ran at once"
    );
    let st = ctx.thread_pool().stats();
    assert!(st.spawned <= 4 || st.workers <= 4);
    assert_eq!(st.completed, N as u64);
}

struct CancelRun {
    cancelled: Vec<bool>,
    results: Vec<Option<io::Result<usize>>>,
    ran: Vec<bool>,
}

/// Submits `n` gated requests and cancels each with `cancel`, then opens the gate.
fn cancel_scenario(n: usize, wait_for_running: usize, cancel_from_thread: bool) -> CancelRun {
    let ctx = AioContext::new().unwrap();
    let workers = 4;
    ctx.thread_pool().set_limits(0, workers);
    let gate = Arc::new(Gate::default());
    let started = Arc::new(AtomicUsize::new(0));
    let ran: Arc<Vec<AtomicBool>> = Arc::new((0..n).map(|_| AtomicBool::new(false)).collect());
    let results: Arc<Mutex<Vec<Option<io::Result<usize>>>>> =
        Arc::new(Mutex::new((0..n).map(|_| None).collect()));
    let completed = Arc::new(AtomicUsize::new(0));
    let mut works = Vec::new();
    for i in 0..n {
        let (g, s, r) = (gate.clone(), started.clone(), ran.clone());
        let (res, c) = (results.clone(), completed.clone());
        works.push(ctx.thread_pool().submit(
            move || {
                s.fetch_add(1, SeqCst);
                g.wait();
                r[i].store(true, SeqCst);
                Ok(i)
            },
            move |x| {
                let mut res = res.lock().unwrap();
                assert!(res[i].is_none(), "completed twice");
                res[i] = Some(x);
                c.fetch_add(1, SeqCst);
            },
        ));
    }
    while started.load(SeqCst) < wait_for_running {
        std::thread::yield_now();
    }
    let cancelled: Vec<bool> = if cancel_from_thread {
        let g = gate.clone();
        std::thread::spawn(move || {
            let c = works.iter().map(|w| w.cancel()).collect();
            g.open();
            c
        })
        .join()
        .unwrap()
    } else {
        let c = works.iter().map(|w| w.cancel()).collect();
        gate.open();
        c
    };
    while completed.load(SeqCst) < n {
        ctx.poll(true);
    }
    let results = std::mem::take(&mut *results.lock().unwrap());
    CancelRun {
        cancelled,
        results,
        ran: ran.iter().map(|b| b.load(SeqCst)).collect(),
    }
}

fn check_cancel_invariants(r: &CancelRun) -> (usize, usize) {
    let (mut nc, mut nd) = (0, 0);
    for i in 0..r.ran.len() {
        match r.results[i]
            .as_ref()
            .expect("every request completes exactly once")
        {
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ECANCELED));
                assert!(r.cancelled[i], "ECANCELED without a successful cancel");
                assert!(!r.ran[i], "request {i}: cancelled but started");
                nc += 1;
            }
            Ok(v) => {
                assert_eq!(*v, i);
                assert!(
                    !r.cancelled[i],
                    "request {i}: cancel succeeded but it completed"
                );
                assert!(r.ran[i]);
                nd += 1;
            }
        }
    }
    (nc, nd)
}

/// cancel: queued work cancels with ECANCELED and never runs; running work completes.
#[test]
fn cancel() {
    let _w = Watchdog::new("cancel", Duration::from_secs(60));
    let r = cancel_scenario(100, 4, false);
    let (nc, nd) = check_cancel_invariants(&r);
    assert_eq!(nd, 4, "exactly the 4 running requests complete");
    assert_eq!(nc, 96);
}

/// cancel-async: cancellation races with workers picking requests up (from another thread,
/// without waiting for anything to start); the invariants hold for every request.
#[test]
fn cancel_async() {
    let _w = Watchdog::new("cancel_async", Duration::from_secs(60));
    for _ in 0..if cfg!(miri) { 1 } else { 20 } {
        let r = cancel_scenario(50, 0, true);
        let (nc, nd) = check_cancel_invariants(&r);
        assert_eq!(nc + nd, 50);
    }
}

/// Idle workers above `min` exit after the idle timeout.
#[test]
fn idle_workers_exit() {
    let _w = Watchdog::new("idle_workers_exit", Duration::from_secs(60));
    let ctx = AioContext::new().unwrap();
    let pool = ctx.thread_pool();
    pool.set_limits(1, 4);
    pool.set_idle_timeout(Duration::from_millis(20));
    let gate = Arc::new(Gate::default());
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..4 {
        let (g, d) = (gate.clone(), done.clone());
        pool.submit(
            move || {
                g.wait();
                Ok(())
            },
            move |_| {
                d.fetch_add(1, SeqCst);
            },
        );
    }
    assert_eq!(pool.stats().workers, 4);
    gate.open();
    while done.load(SeqCst) < 4 {
        ctx.poll(true);
    }
    while pool.stats().workers > 1 {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(pool.stats().workers, 1, "min workers stay");
}

/// A `done` callback that panics loses no other completion: the ones after it in the same
/// bottom-half run are put back and run in the next iteration (no request is ever lost).
#[test]
fn panicking_completion_loses_no_other_completion() {
    let _w = Watchdog::new(
        "panicking_completion_loses_no_other_completion",
        Duration::from_secs(60),
    );
    let ctx = AioContext::new().unwrap();
    // One worker: request k starts only after request k-1's completion was delivered.
    ctx.thread_pool().set_limits(1, 1);
    const N: usize = 6;
    const PANICKER: usize = 1;
    let ran = Arc::new(AtomicUsize::new(0));
    for i in 0..N {
        let ran = ran.clone();
        ctx.thread_pool().submit(
            move || Ok(i),
            move |r| {
                assert_eq!(r.unwrap(), i);
                if i == PANICKER {
                    panic!("done callback {i} panics");
                }
                ran.fetch_add(1, SeqCst);
            },
        );
    }
    // The last request holds the worker until all others are delivered, so the first N
    // completions sit in one list when the bottom half runs.
    let started = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(Gate::default());
    let (s2, g2, ran2) = (started.clone(), gate.clone(), ran.clone());
    ctx.thread_pool().submit(
        move || {
            s2.store(true, SeqCst);
            g2.wait();
            Ok(())
        },
        move |r| {
            r.unwrap();
            ran2.fetch_add(1, SeqCst);
        },
    );
    while !started.load(SeqCst) {
        std::thread::yield_now();
    }
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ctx.poll(false)));
    assert!(
        panicked.is_err(),
        "the panicking completion's panic reaches poll"
    );
    assert_eq!(
        ran.load(SeqCst),
        PANICKER,
        "completions before the panicking one ran"
    );
    // The rest of the list runs in the next iteration, without any new delivery.
    assert!(
        ctx.poll(false),
        "the remaining completions were rescheduled"
    );
    assert_eq!(
        ran.load(SeqCst),
        N - 1,
        "no completion after the panicking one is lost"
    );
    gate.open();
    while ran.load(SeqCst) < N {
        ctx.poll(true);
    }
    assert_eq!(ran.load(SeqCst), N);
    assert_eq!(ctx.thread_pool().stats().completed, N as u64 + 1);
}
