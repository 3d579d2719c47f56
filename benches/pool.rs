//! Pool benchmarks: `cargo bench --bench pool`.
//!
//! * `same_thread`: one get + one put of a boxed 128-byte object on one
//!   thread, against `Box::new` + drop of the same object and against a
//!   `Mutex<Vec<_>>` pool.
//! * `cross_thread`: objects taken on thread A and released on thread B, both
//!   running at once (2 threads), against the mutex pool. A hands B its
//!   objects 256 at a time through a bounded channel; both sides spin on
//!   `try_send`/`try_recv` rather than sleep, so both threads stay runnable
//!   (as a vCPU thread and an I/O thread do; each is pinned to its own CPU
//!   when the machine has two or more) and the hand-over costs little per
//!   object. Whether they actually run at the same instant is up to the
//!   (hypervisor's) scheduler: on a VM whose vCPUs are time-sliced the mutex
//!   is rarely contended and its cost stays near the uncontended one. The figure is the time both threads spend in
//!   the pool per object moved: A's time taking + B's time releasing (timed
//!   per chunk of 256, so spinning on the hand-over is excluded, lock waits
//!   and cache misses on shared lines are included), divided by the objects.
//!   Wall time per object is printed beside it; on a shared 2-core machine
//!   it mostly measures who else is running. `hand_over_only` runs the same
//!   harness with plain 8-byte tokens and no pool: the cost of moving a
//!   handle between cores that any pool pays, to subtract when comparing
//!   the pools themselves.
// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use corral::pool::{pool, PoolConfig};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
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

/// Objects per hand-over from thread A to thread B.
const CHUNK: usize = 256;
/// Hand-over buffers in flight (so at most 4 * 256 objects travel at once).
const BUFFERS: usize = 4;

/// Spins until `tx` accepts `value` (yielding now and then: the machine may
/// have fewer free cores than spinning threads).
fn send_spinning<T>(tx: &SyncSender<T>, mut value: T) -> Result<(), T> {
    for spins in 0u32.. {
        match tx.try_send(value) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(v)) => value = v,
            Err(TrySendError::Disconnected(v)) => return Err(v),
        }
        spin_or_yield(spins);
    }
    unreachable!()
}

/// Spins until `rx` has a value; `None` once the sender is gone.
fn recv_spinning<T>(rx: &Receiver<T>) -> Option<T> {
    for spins in 0u32.. {
        match rx.try_recv() {
            Ok(v) => return Some(v),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => spin_or_yield(spins),
        }
    }
    unreachable!()
}

fn spin_or_yield(spins: u32) {
    if spins % 64 == 63 {
        thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// Pins the calling thread to `cpu` (best effort: a refusal only leaves the
/// scheduler free to place it).
fn pin_to_cpu(cpu: usize) {
    // SAFETY:
    // * `set` is a plain bit mask, zero-initialised then filled by CPU_SET
    //   with an index below CPU_SETSIZE (`cpu` is 0 or 1);
    // * sched_setaffinity(0, ..) affects only the calling thread and reads
    //   `size_of::<cpu_set_t>()` bytes from a valid, live `set`.
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

/// Takes `iters` objects on this thread and releases them on another one;
/// returns the time spent in the pool on both threads, and the wall time.
fn cross_thread_run<S: Source>(source: S, iters: u64) -> (Duration, Duration) {
    let (to_b, from_a) = mpsc::sync_channel::<Vec<S::Item>>(BUFFERS);
    let (to_a, from_b) = mpsc::sync_channel::<Vec<S::Item>>(BUFFERS);
    for _ in 0..BUFFERS {
        to_a.send(Vec::with_capacity(CHUNK)).unwrap();
    }
    let pin = cpus() >= 2;
    let releaser = thread::spawn(move || {
        if pin {
            pin_to_cpu(1);
        }
        let mut busy = Duration::ZERO;
        while let Some(mut chunk) = recv_spinning(&from_a) {
            let start = Instant::now();
            chunk.drain(..).for_each(|obj| source.release(obj));
            busy += start.elapsed();
            // A may have finished and dropped its receiver: fine.
            let _ = send_spinning(&to_a, chunk);
        }
        busy
    });
    if pin {
        pin_to_cpu(0);
    }
    let wall = Instant::now();
    let mut busy = Duration::ZERO;
    let mut left = iters as usize;
    while left > 0 {
        let n = left.min(CHUNK);
        let mut chunk = recv_spinning(&from_b).expect("releaser alive");
        let start = Instant::now();
        chunk.extend((0..n).map(|_| source.take()));
        busy += start.elapsed();
        if send_spinning(&to_b, chunk).is_err() {
            panic!("releaser gone");
        }
        left -= n;
    }
    drop(to_b);
    busy += releaser.join().unwrap();
    let wall = wall.elapsed();
    if pin {
        unpin(cpus());
    }
    (busy, wall)
}

fn cross_thread_one<S: Source>(c: &mut Criterion, name: &str, source: S) {
    let (mut objects, mut wall) = (0u64, Duration::ZERO);
    c.bench_function(
        &format!("cross_thread/take_on_a_release_on_b/{name}"),
        |b| {
            b.iter_custom(|iters| {
                let (busy, elapsed) = cross_thread_run(source, iters);
                objects += iters;
                wall += elapsed;
                busy
            })
        },
    );
    if objects > 0 {
        let ns = wall.as_nanos() as f64 / objects as f64;
        println!("cross_thread/{name}: wall time {ns:.1} ns per object (all samples)");
    }
}

fn cross_thread(c: &mut Criterion) {
    cross_thread_one(c, "corral_pool", Corral);
    cross_thread_one(c, "mutex_vec_pool", MutexPool);
    cross_thread_one(c, "hand_over_only", HandOverOnly);
}

criterion_group!(benches, same_thread, cross_thread);
criterion_main!(benches);
