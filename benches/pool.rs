//! Pool benchmarks: `cargo bench --bench pool`.
//!
//! * `same_thread`: one get + one put of a boxed 128-byte object on one
//!   thread, against `Box::new` + drop of the same object and against a
//!   `Mutex<Vec<_>>` pool.
//! * `cross_thread`: a producer thread A takes objects from the pool and a
//!   consumer thread B releases them, both running at the same time (a vCPU
//!   thread creating coroutines that an I/O thread finishes). The objects
//!   travel one by one through a bounded single-producer single-consumer
//!   ring of 1024 slots; A is pinned to CPU 0 and B to CPU 1 when the
//!   machine has two. Exactly the same harness runs for each pool:
//!   - A repeatedly takes `CHUNK` (256) objects into a local array -- *timed*
//!     -- then pushes them into the ring, spinning while it is full (not
//!     timed); B pops `CHUNK` objects from the ring, spinning while it is
//!     empty (not timed), then releases them -- *timed*. So each side's time
//!     is its time inside the pool (plus one `Instant::now` per 256
//!     objects), including cache misses on lines the other thread wrote and
//!     lock waits, but excluding the hand-over itself.
//!   - the figure criterion reports is A's time + B's time per object (the
//!     pool's cost per object moved, both sides together);
//!   - after each pool, the medians over all samples of A's time per
//!     object, B's time per object and the wall time per object are printed,
//!     and the wall time minus the `hand_over_only` wall time (the same
//!     harness moving 8-byte tokens with no pool: the hand-over's own cost;
//!     its A and B figures are each side's timing floor -- the clock reads
//!     and the local array).
//!
//! Whether the two vCPUs of a VM actually run at the same instant is up to
//! the hypervisor; when they do, the mutex's lock line bounces between them
//! on every operation, and when they take turns it is rarely contended. On a
//! shared machine the wall time mostly measures who else is running.
// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use corral::pool::{pool, PoolConfig};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// The 128-byte object (QEMU's malloc+memset+free comparison uses 128 B).
type Obj = Box<[u8; 128]>;

fn new_obj() -> Obj {
    Box::new([0u8; 128])
}

pool! { static POOL: Pool<Obj> = PoolConfig::DEFAULT; }

/// The pool QEMU had before 2014: one mutex around a free list.
static MUTEX_POOL: Mutex<Vec<Obj>> = Mutex::new(Vec::new());
const MUTEX_POOL_CAP: usize = PoolConfig::DEFAULT.global_cap;

/// A way to get and release objects, shared by the benchmarks. Unit types
/// and generics (not `dyn`) so each source is inlined as a user would see it.
trait Source: Copy + Send + 'static {
    type Item: Send + 'static;
    fn take(self) -> Self::Item;
    fn release(self, item: Self::Item);
}

#[derive(Clone, Copy)]
struct Corral;
impl Source for Corral {
    type Item = Obj;
    #[inline]
    fn take(self) -> Obj {
        POOL.get_or_create(new_obj)
    }
    #[inline]
    fn release(self, obj: Obj) {
        POOL.put(obj)
    }
}

#[derive(Clone, Copy)]
struct MutexPool;
impl Source for MutexPool {
    type Item = Obj;
    #[inline]
    fn take(self) -> Obj {
        let popped = MUTEX_POOL.lock().unwrap().pop();
        popped.unwrap_or_else(new_obj)
    }
    #[inline]
    fn release(self, obj: Obj) {
        let mut list = MUTEX_POOL.lock().unwrap();
        if list.len() < MUTEX_POOL_CAP {
            list.push(obj);
        }
    }
}

#[derive(Clone, Copy)]
struct Malloc;
impl Source for Malloc {
    type Item = Obj;
    #[inline]
    fn take(self) -> Obj {
        new_obj()
    }
    #[inline]
    fn release(self, obj: Obj) {
        drop(obj)
    }
}

/// No pool: tokens made from nothing and dropped, to time the harness.
#[derive(Clone, Copy)]
struct HandOverOnly;
impl Source for HandOverOnly {
    type Item = usize;
    #[inline]
    fn take(self) -> usize {
        black_box(1)
    }
    #[inline]
    fn release(self, token: usize) {
        black_box(token);
    }
}

fn same_thread_one<S: Source<Item = Obj>>(c: &mut Criterion, name: &str, source: S) {
    c.bench_function(&format!("same_thread/get_put_128B/{name}"), |b| {
        b.iter(|| {
            let mut obj = source.take();
            obj[0] = black_box(1); // touch it, as a user would
            source.release(black_box(obj));
        })
    });
}

fn same_thread(c: &mut Criterion) {
    same_thread_one(c, "corral_pool", Corral);
    same_thread_one(c, "box_new_drop", Malloc);
    same_thread_one(c, "mutex_vec_pool", MutexPool);
}

/// Objects A takes (and B releases) per timed stretch.
const CHUNK: usize = 256;
/// Slots in the hand-over ring.
const RING: usize = 1024;

/// A 64-byte aligned cell, so the two indices do not share a cache line.
#[repr(align(64))]
struct Line<T>(T);

/// A bounded single-producer single-consumer ring: A pushes, B pops.
struct Ring<T> {
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    /// Next slot B pops (written by B only).
    head: Line<AtomicUsize>,
    /// Next slot A fills (written by A only).
    tail: Line<AtomicUsize>,
    /// Set by A after its last push.
    done: AtomicBool,
}

// SAFETY:
// * a slot is written only by the producer while it is outside
//   `head..tail` and read only by the consumer while it is inside; the
//   Release store of `tail` (resp. `head`) hands it over, so no slot is ever
//   accessed by both threads at once;
// * the `T`s move between threads, which `T: Send` allows.
unsafe impl<T: Send> Sync for Ring<T> {}

impl<T> Ring<T> {
    fn new() -> Self {
        Ring {
            slots: (0..RING)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
            head: Line(AtomicUsize::new(0)),
            tail: Line(AtomicUsize::new(0)),
            done: AtomicBool::new(false),
        }
    }

    /// Producer only: pushes `value`, spinning while the ring is full.
    /// `seen_head` is the producer's last view of `head`: it reads B's line
    /// again only when the ring looks full (so the indices' cache lines
    /// move once per stretch, not once per object).
    fn push(&self, value: T, seen_head: &mut usize) {
        let tail = self.tail.0.load(Relaxed);
        let mut spins = 0u32;
        while tail - *seen_head == RING {
            *seen_head = self.head.0.load(Acquire);
            if tail - *seen_head == RING {
                spin_or_yield(&mut spins);
            }
        }
        // SAFETY: only the producer pushes; the slot is outside `head..tail` (not
        // full), so the consumer is done with it (its Release of `head` was Acquired).
        unsafe { (*self.slots[tail % RING].get()).write(value) };
        self.tail.0.store(tail + 1, Release);
    }

    /// Consumer only: pops a value, spinning while the ring is empty;
    /// `None` once the producer is done and the ring is drained.
    /// `seen_tail` is the consumer's last view of `tail` (as for `push`).
    fn pop(&self, seen_tail: &mut usize) -> Option<T> {
        let head = self.head.0.load(Relaxed);
        let mut spins = 0u32;
        while *seen_tail == head {
            *seen_tail = self.tail.0.load(Acquire);
            if *seen_tail == head {
                if self.done.load(Acquire) && self.tail.0.load(Acquire) == head {
                    return None;
                }
                spin_or_yield(&mut spins);
            }
        }
        // SAFETY: only the consumer pops; the slot is in `head..tail`, written before
        // the producer's Release of `tail` (Acquired); read once, then `head` moves on.
        let value = unsafe { (*self.slots[head % RING].get()).assume_init_read() };
        self.head.0.store(head + 1, Release);
        Some(value)
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        let mut seen_tail = self.tail.0.load(Relaxed);
        while self.head.0.load(Relaxed) != seen_tail {
            drop(self.pop(&mut seen_tail));
        }
    }
}

/// Spins, yielding now and then (the machine may have fewer free cores
/// than spinning threads).
fn spin_or_yield(spins: &mut u32) {
    *spins += 1;
    if (*spins).is_multiple_of(64) {
        thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// Pins the calling thread to `cpu` (best effort: a refusal only leaves the
/// scheduler free to place it).
fn pin_to_cpu(cpu: usize) {
    // SAFETY: `set` is a zeroed bit mask filled by CPU_SET with `cpu` < CPU_SETSIZE;
    // sched_setaffinity(0, ..) touches only this thread and reads a live `set`.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Restores the calling thread's affinity to every CPU it may use.
fn unpin(cpus: usize) {
    // SAFETY: as in `pin_to_cpu`; every index is below `cpus`, which comes
    // from `available_parallelism` and is far below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (0..cpus).for_each(|cpu| libc::CPU_SET(cpu, &mut set));
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn cpus() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// One sample: per object, A's time taking, B's time releasing, wall time.
#[derive(Clone, Copy)]
struct Sample {
    a_ns: f64,
    b_ns: f64,
    wall_ns: f64,
}

/// A takes `iters` objects (this thread) and B releases them (another
/// thread), at the same time; returns both sides' pool time and the wall time.
fn cross_thread_run<S: Source>(source: S, iters: u64) -> (Duration, Duration, Duration) {
    let ring = std::sync::Arc::new(Ring::<S::Item>::new());
    // Read before pinning: pinned, this thread sees one CPU.
    let cpus = cpus();
    let pin = cpus >= 2;
    let consumer = {
        let ring = ring.clone();
        thread::spawn(move || {
            if pin {
                pin_to_cpu(1);
            }
            let mut busy = Duration::ZERO;
            let mut chunk = Vec::with_capacity(CHUNK);
            let mut seen_tail = 0;
            loop {
                chunk.extend((0..CHUNK).map_while(|_| ring.pop(&mut seen_tail)));
                if chunk.is_empty() {
                    return busy;
                }
                let start = Instant::now();
                chunk.drain(..).for_each(|obj| source.release(obj));
                busy += start.elapsed();
            }
        })
    };
    if pin {
        pin_to_cpu(0);
    }
    let wall = Instant::now();
    let mut busy = Duration::ZERO;
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut seen_head = 0;
    let mut left = iters as usize;
    while left > 0 {
        let n = left.min(CHUNK);
        let start = Instant::now();
        chunk.extend((0..n).map(|_| source.take()));
        busy += start.elapsed();
        chunk
            .drain(..)
            .for_each(|obj| ring.push(obj, &mut seen_head));
        left -= n;
    }
    ring.done.store(true, Release);
    let consumer_busy = consumer.join().unwrap();
    let wall = wall.elapsed();
    if pin {
        unpin(cpus);
    }
    (busy, consumer_busy, wall)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs one cross-thread benchmark; returns the median wall ns per object.
fn cross_thread_one<S: Source>(
    c: &mut Criterion,
    name: &str,
    source: S,
    hand_over_wall_ns: Option<f64>,
) -> f64 {
    let mut samples = Vec::new();
    c.bench_function(
        &format!("cross_thread/take_on_a_release_on_b/{name}"),
        |b| {
            b.iter_custom(|iters| {
                let (a, b, wall) = cross_thread_run(source, iters);
                let per = |d: Duration| d.as_nanos() as f64 / iters as f64;
                samples.push(Sample {
                    a_ns: per(a),
                    b_ns: per(b),
                    wall_ns: per(wall),
                });
                a + b
            })
        },
    );
    let pick = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    let (a, b, wall) = (pick(|s| s.a_ns), pick(|s| s.b_ns), pick(|s| s.wall_ns));
    print!("cross_thread/{name}: medians per object: A takes {a:.2} ns, B releases {b:.2} ns, wall {wall:.2} ns");
    match hand_over_wall_ns {
        Some(h) => println!(", wall minus hand-over {:.2} ns", wall - h),
        None => println!(),
    }
    wall
}

fn cross_thread(c: &mut Criterion) {
    let hand_over = cross_thread_one(c, "hand_over_only", HandOverOnly, None);
    cross_thread_one(c, "corral_pool", Corral, Some(hand_over));
    cross_thread_one(c, "mutex_vec_pool", MutexPool, Some(hand_over));
}

criterion_group!(benches, same_thread, cross_thread);
criterion_main!(benches);
