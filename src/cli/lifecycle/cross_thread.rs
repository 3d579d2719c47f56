//! `corral lifecycle --cross-thread`: coroutines created on one thread and
//! entered to termination on another, pinned to two CPUs, through our pool
//! and through the `Mutex<Vec>` baseline; plus the floor figures that say
//! where the time goes (one cache line's trip between the CPUs, and each
//! side's cost while the other is idle).

use std::cell::UnsafeCell;
use std::hint::black_box;
use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use corral_runtime::{Builder, Coroutine};

use super::{backoff, cpu_ns, median};

/// Runs every cross-thread measurement, prints them, and returns the JSON
/// fields (each starting with a comma). `pooled` is the single-thread
/// pooled figure the cross-thread one is compared with.
pub(super) fn report(iters: usize, builder: Builder, pooled: f64) -> io::Result<String> {
    let n = (iters.saturating_mul(5) / 4).max(1);
    // Five interleaved rounds, medians: a busy machine moves these a lot.
    let (mut ours, mut ours_cpu, mut mutex, mut mutex_cpu) = (vec![], vec![], vec![], vec![]);
    for _ in 0..5 {
        let (wall, cpu) = cross_thread(n, builder)?;
        ours.push(wall);
        ours_cpu.push(cpu);
        let (wall, cpu) = cross_thread(n, builder.mutex_pool())?;
        mutex.push(wall);
        mutex_cpu.push(cpu);
    }
    let (ours, ours_cpu) = (median(ours), median(ours_cpu));
    let (mutex, mutex_cpu) = (median(mutex), median(mutex_cpu));
    let line = (0..5)
        .map(|_| line_transfer_ns(200_000))
        .collect::<io::Result<Option<Vec<f64>>>>()?
        .map(median);
    let (create_only, enter_only) = one_side_at_a_time(n, builder)?;
    match (affinity::two_cpus(), line) {
        (Some((a, b)), Some(line)) => println!(
            "cross-thread: creator pinned to CPU {a}, enterer to CPU {b}; one cache line takes {line:.1} ns between them (ping-pong, one way)"
        ),
        _ => println!("cross-thread: only one CPU available, threads share it"),
    }
    println!(
        "cross-thread (corral-pool)       {ours:9.1} ns  ({:.2}x pooled; CPU of both threads {ours_cpu:.1} ns)",
        ours / pooled
    );
    println!(
        "cross-thread (Mutex<Vec> pool)   {mutex:9.1} ns  ({:.1}x corral-pool; CPU of both threads {mutex_cpu:.1} ns)",
        mutex / ours
    );
    println!(
        "cross-thread, one side at a time: create {create_only:.1} ns, enter to termination {enter_only:.1} ns (the other thread idle)"
    );
    let mut json = format!(
        ",\"cross_thread_ns\":{ours:.2},\"mutex_pool_cross_thread_ns\":{mutex:.2},\"cross_thread_cpu_ns\":{ours_cpu:.2},\"mutex_pool_cross_thread_cpu_ns\":{mutex_cpu:.2},\"cross_thread_create_only_ns\":{create_only:.2},\"cross_thread_enter_only_ns\":{enter_only:.2}"
    );
    if let Some(line) = line {
        json += &format!(",\"line_transfer_ns\":{line:.2}");
    }
    Ok(json)
}

/// One cache line per index, so producer and consumer do not share lines.
#[repr(align(128))]
struct Padded(AtomicUsize);

/// A single-producer single-consumer ring of coroutine handles. Each side
/// publishes its index every [`PUBLISH`] items, and whenever it is about to
/// wait for the other (producer: ring full, or done; consumer: ring empty),
/// not per item: a per-item store would make each index line cross between
/// the two CPUs once per coroutine (and a locked instruction after it,
/// such as the enter's compare-and-swap, waits for that store), which
/// measures the ring rather than the pool. Both pools are measured through
/// this same ring, so the comparison stays fair.
struct Ring {
    slots: Box<[UnsafeCell<MaybeUninit<Coroutine>>]>,
    head: Padded,
    tail: Padded,
}

// SAFETY:
// * slot `i % RING` is written only by the producer, before it publishes a
//   tail above `i` (Release), and only once the consumer published a head
//   above `i - RING` (Acquire): the consumer is done with it. The consumer
//   reads slot `i` only after it acquired a tail above `i`. So no slot is
//   written while it is read, and every read sees the value written.
unsafe impl Sync for Ring {}

const RING: usize = 1024;

/// How many slots ahead of the one it fills the producer prefetches.
const FILL_AHEAD: usize = 16;

/// Where, between two publications, the consumer fetches its index line.
const PUBLISH_SOON: usize = PUBLISH - 8;

/// Items between two index publications (see [`Ring`]).
const PUBLISH: usize = 32;

/// How many coroutines ahead of the one it enters the consumer prefetches
/// (`Coroutine::prefetch`): the header lines the producer just wrote are
/// on their way while the consumer runs the coroutines before it.
const PREFETCH_AHEAD: usize = 8;

impl Ring {
    fn new() -> Ring {
        Ring {
            slots: (0..RING)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
        }
    }

    /// Producer: stores the coroutine of index `index` (not yet published),
    /// and asks for the line of the slot [`FILL_AHEAD`] places on (the
    /// consumer read it last).
    fn put(&self, index: usize, co: Coroutine) {
        corral_runtime::prefetch_line_for_write(self.slots[(index + FILL_AHEAD) % RING].get());
        // SAFETY:
        // * the producer owns slot `index` until it publishes a tail above
        //   it (see the `Sync` impl).
        unsafe { (*self.slots[index % RING].get()).write(co) };
    }

    /// Consumer: the coroutine of index `index`, below the tail it acquired.
    fn get(&self, index: usize) -> Coroutine {
        // SAFETY:
        // * `index` is below an acquired tail: the slot holds the value the
        //   producer wrote (see the `Sync` impl); `Coroutine` is `Copy`.
        unsafe { (*self.slots[index % RING].get()).assume_init() }
    }
}

/// ns per coroutine (wall time) when the main thread creates `n` coroutines
/// and another thread enters each to termination (so bodies are taken on one
/// thread and released on the other, and come back through the pool).
/// The two threads are pinned to two different CPUs (when the process may
/// use two): both are busy at once, and the figure includes every cache
/// line that crosses between them.
/// Returns (wall ns, CPU ns of the whole process) per coroutine.
fn cross_thread(n: usize, builder: Builder) -> io::Result<(f64, f64)> {
    let ring = Arc::new(Ring::new());
    let stop = Arc::new(AtomicBool::new(false));
    let cpus = affinity::two_cpus();
    let saved = cpus.and_then(|(main, _)| affinity::pin(main));
    let consumer = {
        let (ring, stop) = (ring.clone(), stop.clone());
        std::thread::Builder::new()
            .name("lifecycle-consumer".into())
            .spawn(move || {
                if let Some((_, other)) = cpus {
                    affinity::pin(other);
                }
                let mut head = 0;
                let mut seen_tail = 0;
                let mut spins = 0;
                loop {
                    if head == seen_tail {
                        // Caught up: show the producer all the room first.
                        ring.head.0.store(head, Ordering::Release);
                        seen_tail = ring.tail.0.load(Ordering::Acquire);
                        if head == seen_tail {
                            if stop.load(Ordering::Acquire)
                                && ring.tail.0.load(Ordering::Acquire) == head
                            {
                                return;
                            }
                            backoff(&mut spins);
                            continue;
                        }
                        spins = 0;
                        (head + 1..seen_tail.min(head + PREFETCH_AHEAD))
                            .for_each(|i| ring.get(i).prefetch());
                    }
                    if head + PREFETCH_AHEAD < seen_tail {
                        ring.get(head + PREFETCH_AHEAD).prefetch();
                    }
                    ring.get(head).enter();
                    head += 1;
                    match head % PUBLISH {
                        0 => ring.head.0.store(head, Ordering::Release),
                        // The producer read the index line last: fetch it
                        // now, or the store would wait in the store buffer
                        // and hold up the next enter's compare-and-swap.
                        PUBLISH_SOON => corral_runtime::prefetch_line_for_write(&ring.head.0),
                        _ => {}
                    }
                }
            })?
    };
    let produce = |count: usize, tail: &mut usize, seen_head: &mut usize| -> io::Result<()> {
        let mut result = Ok(());
        for _ in 0..count {
            if *tail - *seen_head >= RING {
                // Full: publish everything before waiting for room.
                ring.tail.0.store(*tail, Ordering::Release);
                let mut spins = 0;
                *seen_head = ring.head.0.load(Ordering::Acquire);
                while *tail - *seen_head >= RING {
                    backoff(&mut spins);
                    *seen_head = ring.head.0.load(Ordering::Acquire);
                }
            }
            match builder.try_spawn(|| black_box(())) {
                Ok(co) => {
                    ring.put(*tail, co);
                    *tail += 1;
                    if (*tail).is_multiple_of(PUBLISH) {
                        ring.tail.0.store(*tail, Ordering::Release);
                    }
                }
                Err(err) => {
                    result = Err(err);
                    break;
                }
            }
        }
        ring.tail.0.store(*tail, Ordering::Release);
        result
    };
    let (mut tail, mut seen_head) = (0, 0);
    // Warm-up: fill both threads' pools and the global list.
    let warm = (n / 10).min(100_000);
    let wait_drained = |tail: usize| {
        let mut spins = 0;
        while ring.head.0.load(Ordering::Acquire) != tail {
            backoff(&mut spins);
        }
    };
    let result = produce(warm, &mut tail, &mut seen_head).and_then(|()| {
        wait_drained(tail);
        let (start, cpu) = (Instant::now(), cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID));
        produce(n, &mut tail, &mut seen_head)?;
        wait_drained(tail);
        let wall = start.elapsed().as_nanos() as f64 / n as f64;
        Ok((
            wall,
            (cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID) - cpu) as f64 / n as f64,
        ))
    });
    stop.store(true, Ordering::Release);
    let joined = consumer.join();
    if let Some(saved) = saved {
        affinity::restore(&saved);
    }
    joined.map_err(|_| io::Error::other("cross-thread consumer panicked"))?;
    result
}

/// One-way latency, in ns, of one cache line between the two CPUs the
/// cross-thread run uses: two threads pinned there take turns writing a
/// counter on one line (a ping-pong), `rounds` round trips. The floor under
/// every line that a coroutine's create and enter move between the CPUs.
/// `None` when the process may use only one CPU.
fn line_transfer_ns(rounds: usize) -> io::Result<Option<f64>> {
    let Some((main, other)) = affinity::two_cpus() else {
        return Ok(None);
    };
    let line = Arc::new(Padded(AtomicUsize::new(0)));
    // Waits for `value` on the line, then writes `value + 1`.
    let turn = |line: &Padded, value: usize| {
        let mut spins = 0;
        while line.0.load(Ordering::Acquire) != value {
            backoff(&mut spins);
        }
        line.0.store(value + 1, Ordering::Release);
    };
    let saved = affinity::pin(main);
    let pong = {
        let line = line.clone();
        std::thread::Builder::new()
            .name("lifecycle-pong".into())
            .spawn(move || {
                affinity::pin(other);
                (0..rounds).for_each(|i| turn(&line, 2 * i + 1));
            })?
    };
    let start = Instant::now();
    (0..rounds).for_each(|i| turn(&line, 2 * i));
    let mut spins = 0;
    while line.0.load(Ordering::Acquire) != 2 * rounds {
        backoff(&mut spins);
    }
    let ns = start.elapsed().as_nanos() as f64 / (2 * rounds) as f64;
    let joined = pong.join();
    if let Some(saved) = saved {
        affinity::restore(&saved);
    }
    joined.map_err(|_| io::Error::other("ping-pong thread panicked"))?;
    Ok(Some(ns))
}

/// Each side's cost while the other is idle, on the same two pinned CPUs
/// and with the same [`RING`] coroutines in flight: the main thread creates
/// a ring's worth (timed), hands them over, and waits while the other
/// thread enters them all to termination (timed, with the same prefetch).
/// Returns (create ns, enter ns) per coroutine, medians of five samples of
/// about `n` coroutines. The pipelined figure cannot beat the slower side.
fn one_side_at_a_time(n: usize, builder: Builder) -> io::Result<(f64, f64)> {
    let cpus = affinity::two_cpus();
    let saved = cpus.and_then(|(main, _)| affinity::pin(main));
    let (to_enterer, batches) = std::sync::mpsc::sync_channel::<Vec<Coroutine>>(1);
    let (to_creator, done) = std::sync::mpsc::sync_channel::<(Vec<Coroutine>, u128)>(1);
    let enterer = std::thread::Builder::new()
        .name("lifecycle-enterer".into())
        .spawn(move || {
            if let Some((_, other)) = cpus {
                affinity::pin(other);
            }
            while let Ok(mut batch) = batches.recv() {
                let start = Instant::now();
                for (i, co) in batch.iter().enumerate() {
                    if let Some(ahead) = batch.get(i + PREFETCH_AHEAD) {
                        ahead.prefetch();
                    }
                    co.enter();
                }
                let ns = start.elapsed().as_nanos();
                batch.clear();
                if to_creator.send((batch, ns)).is_err() {
                    return;
                }
            }
        })?;
    let rounds = (n / RING).max(1);
    let run = || -> io::Result<(f64, f64)> {
        let gone = || io::Error::other("cross-thread enterer stopped");
        let mut batch = Vec::with_capacity(RING);
        let (mut create, mut enter) = (Vec::new(), Vec::new());
        for sample in 0..6 {
            let (mut c, mut e) = (0u128, 0u128);
            for _ in 0..rounds {
                let start = Instant::now();
                for _ in 0..RING {
                    batch.push(builder.try_spawn(|| black_box(()))?);
                }
                c += start.elapsed().as_nanos();
                to_enterer
                    .send(std::mem::take(&mut batch))
                    .map_err(|_| gone())?;
                let (back, ns) = done.recv().map_err(|_| gone())?;
                batch = back;
                e += ns;
            }
            // The first sample warms both threads' pools up.
            if sample > 0 {
                create.push(c as f64 / (rounds * RING) as f64);
                enter.push(e as f64 / (rounds * RING) as f64);
            }
        }
        Ok((median(create), median(enter)))
    };
    let result = run();
    drop(to_enterer);
    let joined = enterer.join();
    if let Some(saved) = saved {
        affinity::restore(&saved);
    }
    joined.map_err(|_| io::Error::other("cross-thread enterer panicked"))?;
    result
}

/// Pinning the cross-thread run's two threads to two CPUs.
mod affinity {
    /// The first two CPUs this thread may run on, if it may use two.
    pub(super) fn two_cpus() -> Option<(usize, usize)> {
        let set = current()?;
        let mut cpus = (0..libc::CPU_SETSIZE as usize)
            // SAFETY:
            // * `set` is an initialised mask; the index is below CPU_SETSIZE.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) });
        Some((cpus.next()?, cpus.next()?))
    }

    fn current() -> Option<libc::cpu_set_t> {
        // SAFETY:
        // * a zeroed cpu_set_t is a valid empty mask; sched_getaffinity(0, ..)
        //   writes at most `size_of::<cpu_set_t>()` bytes into it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            let r = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
            (r == 0).then_some(set)
        }
    }

    /// Pins the calling thread to `cpu` and returns its previous mask (best
    /// effort: a refusal leaves the scheduler free to place the thread).
    pub(super) fn pin(cpu: usize) -> Option<libc::cpu_set_t> {
        let saved = current()?;
        // SAFETY:
        // * as in `current`; CPU_SET gets an index below CPU_SETSIZE (it
        //   came from `two_cpus`), and sched_setaffinity(0, ..) reads a
        //   valid, live mask and affects only the calling thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
        Some(saved)
    }

    /// Gives the calling thread back the mask `pin` returned.
    pub(super) fn restore(saved: &libc::cpu_set_t) {
        // SAFETY:
        // * `saved` is a valid mask; the call only reads it.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), saved) };
    }
}
