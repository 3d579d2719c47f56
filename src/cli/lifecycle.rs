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
use std::time::Instant;

use corral_runtime::{yield_now, Builder, Coroutine, GuardKind, DEFAULT_STACK_SIZE};

mod cross_thread;

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
        json += &cross_thread::report(iters, builder, pooled)?;
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
pub(super) fn cpu_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY:
    // * `ts` is a valid, writable timespec; the clock id is a constant.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Spins a little, then gives the core away (the other side may share it).
pub(super) fn backoff(spins: &mut u32) {
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
