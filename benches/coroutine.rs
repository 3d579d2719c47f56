//! Criterion benchmarks of the coroutine lifecycle (issue 3): pooled and
//! unpooled create+enter+terminate, the libc malloc+memset+free 128 B
//! baseline of the 2014 QEMU thread, and one enter+yield round trip.
//!
//! `cargo bench --bench coroutine`

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use corral::runtime::{yield_now, Builder, Coroutine};
use criterion::Criterion;

fn lifecycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("coroutine");
    group.bench_function("pooled create+enter+terminate", |b| {
        b.iter(|| Coroutine::new(|| black_box(())).enter())
    });
    let unpooled = Builder::new().pooled(false);
    group.bench_function("unpooled create+enter+terminate", |b| {
        b.iter(|| unpooled.spawn(|| black_box(())).enter())
    });
    group.bench_function("malloc+memset+free 128 B", |b| {
        b.iter(corral::runtime::baseline::malloc_memset_free_128)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let co = Coroutine::new(move || {
        while !s.load(Ordering::Relaxed) {
            yield_now();
        }
    });
    group.bench_function("enter+yield round trip", |b| b.iter(|| co.enter()));
    stop.store(true, Ordering::Relaxed);
    co.enter();
    assert!(co.is_terminated());
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    lifecycle(&mut c);
    c.final_summary();
}
