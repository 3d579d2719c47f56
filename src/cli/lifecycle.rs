//! `corral lifecycle`: what a coroutine costs, from creation to termination.
//!
//! * default: ns per create+enter+terminate of a pooled coroutine, of an
//!   unpooled one (fresh stack each time), and of libc malloc+memset+free of
//!   128 bytes (the 2014 QEMU thread's baseline), all in one run;
//! * `--cross-thread`: coroutines created on one thread and entered (to
//!   termination) on another, through our pool and through a `Mutex<Vec>`
//!   pool; the figure is wall time per coroutine with both threads busy,
//!   pinned to two different CPUs;
//! * `--live N`: N coroutines suspended at the same time: mappings added,
//!   resident memory per coroutine, ns per create+first enter.
//!
//! Single-thread figures are per-thread CPU time (robust on a busy machine);
//! the cross-thread figures are wall time per coroutine (both threads busy),
//! with the CPU time of both threads beside them; `--live` is wall time.
//!
//! With `--json` the last line of standard output is one JSON object.

use std::hint::black_box;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use corral_runtime::{yield_now, Builder, Coroutine, GuardKind, DEFAULT_STACK_SIZE};

/// Options of `corral lifecycle`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Also measure coroutines created on one thread and terminated on another.
    #[arg(long)]
    cross_thread: bool,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
    /// Keep N coroutines suspended at once and report mappings and memory.
    #[arg(long, value_name = "N")]
    live: Option<usize>,
    /// Usable stack bytes per coroutine.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_STACK_SIZE)]
    stack_size: usize,
    /// Guard page kind (default: install where the kernel supports it).
    #[arg(long, value_name = "install|mprotect")]
    guard: Option<GuardKind>,
    /// Pooled create+enter+terminate iterations per round (ROUNDS interleaved
    /// rounds of pooled and malloc, medians kept).
    #[arg(long, default_value_t = 400_000)]
    iterations: usize,
}

/// Runs `corral lifecycle`.
pub(crate) fn run(args: Args) -> io::Result<()> {
    let guard = args.guard.unwrap_or_else(GuardKind::probed);
    let builder = Builder::new().stack_size(args.stack_size).guard(guard);
    // Fail early, with the stack error, if this guard kind cannot be used.
    builder.try_spawn(|| {})?.enter();
    match args.live {
        Some(n) => live(&args, builder, guard, n),
        None => lifecycle(&args, builder, guard),
    }
}

fn lifecycle(args: &Args, builder: Builder, guard: GuardKind) -> io::Result<()> {
    let iters = args.iterations.max(1);
    let unpooled_iters = (iters / 20).clamp(1_000, 20_000);
    let mut pooled = Vec::new();
    let mut malloc = Vec::new();
    let mut ratios = Vec::new();
    // Many short rounds, pooled and malloc back to back and in alternating
    // order: on a busy machine (another process on the sibling CPU) both
    // figures then see the same interference, and the medians drop the
    // rounds it hit hardest.
    for round in 0..ROUNDS {
        let p = || per_op(iters, || pooled_once(builder));
        // Same loop for both: one out-of-line call per iteration (the
        // baseline's function is itself `#[inline(never)]`), `Ok(())` back.
        let m = || {
            per_op(iters, || {
                corral_runtime::baseline::malloc_memset_free_128();
                Ok(())
            })
        };
        let (pr, mr) = if round % 2 == 0 {
            let pr = p()?;
            (pr, m()?)
        } else {
            let mr = m()?;
            (p()?, mr)
        };
        pooled.push(pr);
        malloc.push(mr);
        ratios.push(pr / mr);
    }
    let ratio = median(ratios);
    // An entry too large for the inline slot (INLINE_ENTRY_BYTES) is boxed:
    // what a heap allocation per coroutine would cost.
    let big = [7u8; 2 * corral_runtime::INLINE_ENTRY_BYTES];
    let boxed = median(
        (0..3)
            .map(|_| {
                per_op(iters / 2, || {
                    builder
                        .try_spawn(move || {
                            black_box(&big);
                        })
                        .map(|co| co.enter())
                })
            })
            .collect::<io::Result<Vec<f64>>>()?,
    );
    let unpooled_builder = builder.pooled(false);
    let unpooled = per_op(unpooled_iters, || {
        unpooled_builder
            .try_spawn(|| black_box(()))
            .map(|co| co.enter())
    })?;
    let (pooled, malloc) = (median(pooled), median(malloc));
    let load = load_average();
    println!(
        "guard {guard}, stack {} KiB, load average {load:.2} on {} CPUs",
        args.stack_size / 1024,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "pooled   create+enter+terminate  {pooled:9.1} ns  ({iters} x {ROUNDS} rounds, median)"
    );
    println!(
        "unpooled create+enter+terminate  {unpooled:9.1} ns  ({unpooled_iters} iterations, {:.0}x pooled)",
        unpooled / pooled
    );
    println!(
        "malloc+memset+free 128 B         {malloc:9.1} ns  (pooled/malloc = {:.2}; median of the rounds' ratios {ratio:.2})",
        pooled / malloc
    );
    println!("pooled, entry boxed (> inline)   {boxed:9.1} ns  (a heap allocation per coroutine)");
    let mut json = format!(
        "{{\"guard\":\"{guard}\",\"stack_size\":{},\"pooled_ns\":{pooled:.2},\"unpooled_ns\":{unpooled:.2},\"malloc128_ns\":{malloc:.2},\"pooled_malloc_round_ratio\":{ratio:.3},\"pooled_boxed_entry_ns\":{boxed:.2},\"loadavg_1m\":{load:.2}",
        args.stack_size
    );
    if args.cross_thread {
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
        let line = (0..5)
            .map(|_| line_transfer_ns(200_000))
            .collect::<io::Result<Option<Vec<f64>>>>()?
            .map(median);
        match (affinity::two_cpus(), line) {
            (Some((a, b)), Some(line)) => println!(
                "cross-thread: creator pinned to CPU {a}, enterer to CPU {b}; one cache line takes {line:.1} ns between them (ping-pong, one way)"
            ),
            _ => println!("cross-thread: only one CPU available, threads share it"),
        }
        let (mutex, mutex_cpu) = (median(mutex), median(mutex_cpu));
        println!(
            "cross-thread (corral-pool)       {ours:9.1} ns  ({:.2}x pooled; CPU of both threads {ours_cpu:.1} ns)",
            ours / pooled
        );
        println!(
            "cross-thread (Mutex<Vec> pool)   {mutex:9.1} ns  ({:.1}x corral-pool; CPU of both threads {mutex_cpu:.1} ns)",
            mutex / ours
        );
        json += &format!(
            ",\"cross_thread_ns\":{ours:.2},\"mutex_pool_cross_thread_ns\":{mutex:.2},\"cross_thread_cpu_ns\":{ours_cpu:.2},\"mutex_pool_cross_thread_cpu_ns\":{mutex_cpu:.2}"
        );
        if let Some(line) = line {
            json += &format!(",\"line_transfer_ns\":{line:.2}");
        }
    }
    if args.json {
        println!("{json}}}");
    }
    Ok(())
}

/// Interleaved rounds of the single-thread pooled and malloc figures.
const ROUNDS: usize = 25;

#[inline(never)]
fn pooled_once(builder: Builder) -> io::Result<()> {
    builder.try_spawn(|| black_box(())).map(|co| co.enter())
}

/// Runs `op` `n` times (after a short warm-up) and returns ns per call.
///
/// Time is this thread's CPU time (user + system), so time slices given to
/// other processes on a busy machine do not count.
fn per_op(n: usize, mut op: impl FnMut() -> io::Result<()>) -> io::Result<f64> {
    for _ in 0..(n / 10).min(10_000) {
        op()?;
    }
    let start = cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID);
    for _ in 0..n {
        op()?;
    }
    Ok((cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID) - start) as f64 / n as f64)
}

/// CPU time in ns of this thread or process (a CPU-time clock id).
fn cpu_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY:
    // * `ts` is a valid, writable timespec; the clock id is a constant.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One cache line per index, so producer and consumer do not share lines.
#[repr(align(128))]
struct Padded(AtomicUsize);

/// A single-producer single-consumer ring of coroutine handles (words from
/// `Coroutine::into_raw`). Each side publishes its index every [`PUBLISH`]
/// items, and whenever it is about to wait for the other (producer: ring
/// full, or done; consumer: ring empty), not per item: a per-item store
/// would make each index line cross between the two CPUs once per coroutine
/// (and a locked instruction after it, such as the enter's compare-and-swap,
/// waits for that store), which measures the ring rather than the pool.
/// Both pools are measured through this same ring, so the comparison stays
/// fair.
struct Ring {
    slots: Box<[AtomicUsize]>,
    head: Padded,
    tail: Padded,
}

const RING: usize = 1024;

/// Items between two index publications (see [`Ring`]).
const PUBLISH: usize = 32;

/// How many coroutines ahead of the one it enters the consumer prefetches
/// (`Coroutine::prefetch_raw`): the header line the producer just wrote is
/// on its way while the consumer runs the coroutines before it.
const PREFETCH_AHEAD: usize = 4;

impl Ring {
    fn word(&self, index: usize) -> usize {
        self.slots[index % RING].load(Ordering::Relaxed)
    }

    /// Consumer: prefetch the header of the coroutine in slot `index`.
    fn prefetch(&self, index: usize) {
        if let Some(raw) = std::ptr::NonNull::new(self.word(index) as *mut std::ffi::c_void) {
            Coroutine::prefetch_raw(raw);
        }
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
    let ring = Arc::new(Ring {
        slots: (0..RING).map(|_| AtomicUsize::new(0)).collect(),
        head: Padded(AtomicUsize::new(0)),
        tail: Padded(AtomicUsize::new(0)),
    });
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
                            .for_each(|i| ring.prefetch(i));
                    }
                    if head + PREFETCH_AHEAD < seen_tail {
                        ring.prefetch(head + PREFETCH_AHEAD);
                    }
                    let word = ring.word(head);
                    // SAFETY:
                    // * the word was made by `into_raw` on the producer side,
                    //   published by its Release store of `tail` (Acquired above).
                    let co = unsafe {
                        Coroutine::from_raw(std::ptr::NonNull::new_unchecked(word as *mut _))
                    };
                    co.enter();
                    head += 1;
                    if head % PUBLISH == 0 {
                        ring.head.0.store(head, Ordering::Release);
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
                    ring.slots[*tail % RING]
                        .store(co.into_raw().as_ptr() as usize, Ordering::Relaxed);
                    *tail += 1;
                    if *tail % PUBLISH == 0 {
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

/// Spins a little, then gives the core away (the other side may share it).
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Keeps `n` coroutines suspended at once, reports, then finishes them all.
fn live(args: &Args, builder: Builder, guard: GuardKind, n: usize) -> io::Result<()> {
    let mut handles = Vec::with_capacity(n);
    let maps_before = corral_runtime::map_count()?;
    let rss_before = rss_kib()?;
    let start = Instant::now();
    for i in 0..n {
        match builder.try_spawn(yield_now) {
            Ok(co) => {
                co.enter();
                handles.push(co);
            }
            Err(err) => {
                let maps = corral_runtime::map_count().unwrap_or(0);
                println!("reached {i} of {n} live coroutines ({guard} guards, {maps} mappings in the process)");
                if args.json {
                    println!(
                        "{{\"live\":{i},\"requested\":{n},\"guard\":\"{guard}\",\"error\":true}}"
                    );
                }
                return Err(err);
            }
        }
    }
    let create_ns = start.elapsed().as_nanos() as f64 / n.max(1) as f64;
    let vmas_added = corral_runtime::map_count()? as i64 - maps_before as i64;
    let rss_per_live = (rss_kib()? as f64 - rss_before as f64) / n.max(1) as f64;
    let live = handles.len();
    let finish = Instant::now();
    for co in &handles {
        co.enter();
    }
    let finish_ns = finish.elapsed().as_nanos() as f64 / n.max(1) as f64;
    assert!(handles.iter().all(Coroutine::is_terminated));
    println!(
        "live {live} coroutines at once ({guard} guards, stack {} KiB)",
        args.stack_size / 1024
    );
    println!("mappings added   {vmas_added}");
    println!("RSS per live     {rss_per_live:.2} KiB");
    println!("create+enter     {create_ns:.1} ns per coroutine; finish {finish_ns:.1} ns");
    if args.json {
        println!(
            "{{\"live\":{live},\"vmas_added\":{vmas_added},\"rss_kib_per_live\":{rss_per_live:.2},\"create_ns\":{create_ns:.1},\"finish_ns\":{finish_ns:.1},\"guard\":\"{guard}\",\"stack_size\":{}}}",
            args.stack_size
        );
    }
    Ok(())
}

/// The 1-minute load average: the figures above are only comparable on a
/// quiet machine (the cross-thread run needs two free cores).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Resident set size of this process in KiB (VmRSS).
fn rss_kib() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS in /proc/self/status"))
}
