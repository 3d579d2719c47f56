//! Pool benchmarks: `cargo bench --bench pool`.
//!
//! * `same_thread`: one get + one put of a boxed 128-byte object on one
//!   thread, against `Box::new` + drop of the same object and against a
//!   `Mutex<Vec<_>>` pool.
//! * `cross_thread`: objects taken on thread A and released on thread B
//!   (2 threads, running concurrently), against the mutex pool. A hands B
//!   its objects 4096 at a time through a channel, so the channel's wake-ups
//!   cost little per object; the figure is time per object (one get on A +
//!   one put on B).
// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]
use corral::pool::{pool, Pool, PoolConfig};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use std::sync::{mpsc, Mutex};
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

/// A way to get and release objects, shared by the benchmarks.
trait Source: Sync + 'static {
    fn take(&'static self) -> Obj;
    fn release(&'static self, obj: Obj);
}

struct Corral(&'static Pool<Obj>);
impl Source for Corral {
    fn take(&'static self) -> Obj {
        self.0.get_or_create(new_obj)
    }
    fn release(&'static self, obj: Obj) {
        self.0.put(obj)
    }
}

struct MutexPool(&'static Mutex<Vec<Obj>>);
impl Source for MutexPool {
    fn take(&'static self) -> Obj {
        let popped = self.0.lock().unwrap().pop();
        popped.unwrap_or_else(new_obj)
    }
    fn release(&'static self, obj: Obj) {
        let mut list = self.0.lock().unwrap();
        if list.len() < MUTEX_POOL_CAP {
            list.push(obj);
        }
    }
}

struct Malloc;
impl Source for Malloc {
    fn take(&'static self) -> Obj {
        new_obj()
    }
    fn release(&'static self, obj: Obj) {
        drop(obj)
    }
}

static CORRAL: Corral = Corral(&POOL);
static MUTEX: MutexPool = MutexPool(&MUTEX_POOL);
static MALLOC: Malloc = Malloc;

fn same_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("same_thread");
    let sources: [(&str, &'static dyn Source); 3] = [
        ("corral_pool", &CORRAL),
        ("box_new_drop", &MALLOC),
        ("mutex_vec_pool", &MUTEX),
    ];
    for (name, source) in sources {
        group.bench_function(BenchmarkId::new("get_put_128B", name), |b| {
            b.iter(|| {
                let mut obj = source.take();
                obj[0] = black_box(1); // touch it, as a user would
                source.release(black_box(obj));
            })
        });
    }
    group.finish();
}

/// Objects per hand-over from thread A to thread B.
const CHUNK: usize = 4096;

/// Takes `iters` objects on this thread and releases them on another one.
fn cross_thread_run(source: &'static dyn Source, iters: u64) -> Duration {
    // At most 3 chunks in flight: 12,288 objects, under the global cap, so
    // the pool reaches a steady state without creating objects.
    let (to_b, from_a) = mpsc::sync_channel::<Vec<Obj>>(1);
    let (to_a, from_b) = mpsc::sync_channel::<Vec<Obj>>(3);
    for _ in 0..3 {
        to_a.send(Vec::with_capacity(CHUNK)).unwrap();
    }
    let start = Instant::now();
    let releaser = thread::spawn(move || {
        for mut chunk in from_a {
            chunk.drain(..).for_each(|obj| source.release(obj));
            // A may have finished and dropped its receiver: fine.
            let _ = to_a.send(chunk);
        }
    });
    let mut left = iters as usize;
    while left > 0 {
        let n = left.min(CHUNK);
        let mut chunk = from_b.recv().unwrap();
        chunk.extend((0..n).map(|_| source.take()));
        to_b.send(chunk).unwrap();
        left -= n;
    }
    drop(to_b);
    releaser.join().unwrap();
    start.elapsed()
}

fn cross_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("cross_thread");
    let sources: [(&str, &'static dyn Source); 2] =
        [("corral_pool", &CORRAL), ("mutex_vec_pool", &MUTEX)];
    for (name, source) in sources {
        group.bench_function(BenchmarkId::new("take_on_a_release_on_b", name), |b| {
            b.iter_custom(|iters| cross_thread_run(source, iters))
        });
    }
    group.finish();
}

criterion_group!(benches, same_thread, cross_thread);
criterion_main!(benches);
