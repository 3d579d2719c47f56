//! Criterion benchmarks of the event loop (issue 4), plus the eventfd-write counts that show
//! the notify protocol at work.
//!
//! `cargo bench --bench aio`
//!
//! * `aio/bh oneshot local (per BH)`: schedule 64 one-shot bottom halves on the polling
//!   thread, run them with one poll; time per bottom half.
//! * `aio/bh oneshot cross-thread (per BH)`: another thread schedules into a context that
//!   keeps polling; time per bottom half, producer side.
//! * `aio/CoMutex uncontended lock+unlock`.
//! * `aio/co_wake cross-thread round trip`: two coroutines on two contexts (two threads)
//!   wake each other; one round trip is two cross-thread wakes.
//!
//! After criterion, it prints eventfd writes per cross-thread bottom half for a busy
//! context (it always has work, so it never sleeps) and an idle one (it sleeps before every
//! bottom half), read from `AioStats::eventfd_writes`, and their ratio.

use corral::aio::{co_wake, AioContext, CoMutex};
use corral::runtime::{yield_now, Coroutine};
use criterion::Criterion;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// A context polled by its own thread until dropped.
struct IoThread {
    ctx: Arc<AioContext>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IoThread {
    fn new() -> IoThread {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let ctx = AioContext::new().expect("AioContext::new");
            tx.send(ctx.clone()).unwrap();
            while !s.load(SeqCst) {
                ctx.poll(true);
            }
        });
        IoThread {
            ctx: rx.recv().unwrap(),
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        let s = self.stop.clone();
        self.ctx.bh_schedule_oneshot(move || s.store(true, SeqCst));
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn bottom_halves(c: &mut Criterion) {
    let mut g = c.benchmark_group("aio");
    let ctx = AioContext::new().unwrap();
    static RAN: AtomicU64 = AtomicU64::new(0);
    g.bench_function("bh oneshot local (per BH)", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut left = iters;
            while left > 0 {
                let n = left.min(64);
                for _ in 0..n {
                    ctx.bh_schedule_oneshot(|| {
                        RAN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    });
                }
                ctx.poll(false);
                left -= n;
            }
            start.elapsed()
        })
    });

    let io = IoThread::new();
    let done = Arc::new(AtomicU64::new(0));
    g.bench_function("bh oneshot cross-thread (per BH)", |b| {
        b.iter_custom(|iters| {
            let target = done.load(SeqCst) + iters;
            let start = Instant::now();
            for _ in 0..iters {
                let d = done.clone();
                io.ctx.bh_schedule_oneshot(move || {
                    d.fetch_add(1, SeqCst);
                });
            }
            let t = start.elapsed();
            while done.load(SeqCst) < target {
                std::hint::spin_loop();
            }
            t
        })
    });

    let m = CoMutex::new(0u64);
    g.bench_function("CoMutex uncontended lock+unlock", |b| {
        b.iter(|| {
            *m.lock() += 1;
        })
    });
    black_box(m.try_lock().map(|g| *g));

    let a = IoThread::new();
    let bth = IoThread::new();
    g.bench_function("co_wake cross-thread round trip", |b| {
        b.iter_custom(|iters| round_trips(&a.ctx, &bth.ctx, iters))
    });
    g.finish();
}

/// Two coroutines, X on `ca` and Y on `cb`, wake each other `iters` times.
fn round_trips(ca: &AioContext, cb: &AioContext, iters: u64) -> Duration {
    let y_slot: Arc<std::sync::Mutex<Option<Coroutine>>> = Arc::default();
    let x_slot: Arc<std::sync::Mutex<Option<Coroutine>>> = Arc::default();
    let y_parked = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<Duration>();
    let (xs, yp) = (x_slot.clone(), y_parked.clone());
    let y = Coroutine::new(move || {
        for _ in 0..iters {
            yp.fetch_add(1, SeqCst);
            yield_now();
            co_wake(xs.lock().unwrap().unwrap());
        }
    });
    *y_slot.lock().unwrap() = Some(y);
    cb.co_schedule(y);
    while y_parked.load(SeqCst) == 0 {
        std::thread::yield_now();
    }
    let ys = y_slot.clone();
    let x = Coroutine::new(move || {
        let start = Instant::now();
        for _ in 0..iters {
            co_wake(ys.lock().unwrap().unwrap());
            yield_now();
        }
        tx.send(start.elapsed()).unwrap();
    });
    *x_slot.lock().unwrap() = Some(x);
    ca.co_schedule(x);
    rx.recv().unwrap()
}

/// eventfd writes per bottom half scheduled from another thread.
fn eventfd_writes_per_bh() {
    const N: u64 = 200_000;
    const IDLE_N: u64 = 2_000;

    // Busy: the context always has a bottom half of its own pending, so it never sleeps.
    let io = IoThread::new();
    let keep_busy = Arc::new(AtomicBool::new(true));
    {
        let (ctx, kb) = (io.ctx.clone(), keep_busy.clone());
        fn spin(ctx: Arc<AioContext>, kb: Arc<AtomicBool>) {
            if kb.load(SeqCst) {
                let c = ctx.clone();
                ctx.bh_schedule_oneshot(move || spin(c, kb));
            }
        }
        io.ctx.bh_schedule_oneshot(move || spin(ctx, kb));
    }
    let done = Arc::new(AtomicU64::new(0));
    std::thread::sleep(Duration::from_millis(10));
    let before = io.ctx.stats().eventfd_writes;
    for _ in 0..N {
        let d = done.clone();
        io.ctx.bh_schedule_oneshot(move || {
            d.fetch_add(1, SeqCst);
        });
    }
    while done.load(SeqCst) < N {
        std::hint::spin_loop();
    }
    let busy = (io.ctx.stats().eventfd_writes - before) as f64 / N as f64;
    keep_busy.store(false, SeqCst);
    drop(io);

    // Idle: wait until the context sleeps in epoll_wait before each bottom half.
    let io = IoThread::new();
    let done = Arc::new(AtomicU64::new(0));
    let st0 = io.ctx.stats();
    let mut waits_before = 0;
    for i in 0..IDLE_N {
        // Once the previous bottom half ran, the context polls again and blocks: its
        // blocking-wait counter moves past the value read when that one was scheduled.
        while io.ctx.stats().blocking_waits <= waits_before {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_micros(50));
        waits_before = io.ctx.stats().blocking_waits;
        let d = done.clone();
        io.ctx.bh_schedule_oneshot(move || {
            d.fetch_add(1, SeqCst);
        });
        while done.load(SeqCst) <= i {
            std::thread::yield_now();
        }
    }
    let st1 = io.ctx.stats();
    let idle_writes = st1.eventfd_writes - st0.eventfd_writes;
    let idle = idle_writes as f64 / IDLE_N as f64;
    drop(io);

    println!();
    println!("eventfd writes per cross-thread bottom half (AioStats::eventfd_writes):");
    println!("  busy context: {busy:.6} ({N} bottom halves)");
    println!("  idle context: {idle:.4} ({idle_writes} writes for {IDLE_N} bottom halves, each needing one wake-up)");
    if busy > 0.0 {
        println!("  idle / busy:  {:.0}x", idle / busy);
    } else {
        println!("  idle / busy:  inf (busy took no eventfd write at all)");
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bottom_halves(&mut c);
    c.final_summary();
    eventfd_writes_per_bh();
}
