//! `corral bench`: drives block requests through the whole stack, like `qemu-img bench`.
//!
//! Each request is an AIO-face request (`aio_pread`/`aio_pwrite`): queued on the device,
//! run in a coroutine (a pooled worker that goes on with the next queued request, or a
//! fresh unpooled coroutine per request with `--mode heap`), and its callback submits the
//! next one, keeping `--depth` in flight.
//! Everything runs on the calling thread's `AioContext`.

use super::block_shuffle::BlockShuffle;
use corral::aio::block::{AllocMode, BackendKind, BackendStats, BlockDevice, OpenOptions};
use corral::aio::{AioContext, PollParams};
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of `corral bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// File or block device to use; without one, the null backend does no I/O.
    file: Option<PathBuf>,
    /// null | null-bh | threads | linux-aio | io-uring (default: null without FILE, else io-uring).
    #[arg(long)]
    backend: Option<BackendKind>,
    /// Number of requests (default: 200,000 with FILE, 10,000,000 on a null backend with
    /// FILE; without FILE, the run lasts --runtime).
    #[arg(short = 'c', long, conflicts_with = "runtime")]
    count: Option<u64>,
    /// Run for this many seconds instead of a number of requests, like fio's `--runtime`
    /// (default without FILE and --count: 3).
    #[arg(short = 't', long)]
    runtime: Option<f64>,
    /// Requests in flight at once.
    #[arg(short = 'd', long, default_value_t = 64)]
    depth: usize,
    /// Bytes per request.
    #[arg(short = 's', long, default_value_t = 4096)]
    size: usize,
    /// Write instead of read.
    #[arg(short = 'w', long)]
    write: bool,
    /// Random offsets (aligned to --size) instead of sequential ones; like fio's default
    /// random map, no block is read twice before every block was read once.
    #[arg(long)]
    random: bool,
    /// O_DIRECT: bypass the page cache.
    #[arg(short = 'n', long)]
    direct: bool,
    /// pooled: pooled coroutine, request on its stack; heap: boxed request, fresh unpooled coroutine.
    #[arg(long, value_enum, default_value_t = Mode::Pooled)]
    mode: Mode,
    /// Latency sampling: time one request in N, rounded up to a power of two (default: 64 on
    /// the null backends, where a clock read costs a quarter of a request; 8 elsewhere,
    /// where two clock reads would still cost ~4% of a page-cache read).
    #[arg(long)]
    sample: Option<u64>,
    /// Longest adaptive busy-poll window of the event loop in ns (0: never poll; default:
    /// the context's default, like QEMU's iothread `poll-max-ns`).
    #[arg(long)]
    poll_max_ns: Option<u64>,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Pooled,
    Heap,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Pooled => "pooled",
            Mode::Heap => "heap",
        }
    }
}

/// How long `corral bench` runs without FILE and --count.
const DEFAULT_RUNTIME_S: f64 = 3.0;

/// Main-loop turns between two looks at the clock in a timed run.
const CLOCK_EVERY: u64 = 64;

/// Offsets wrap at this size on the null backends (no file to bound them).
const NULL_SPAN: u64 = 1 << 30;

/// A zeroed buffer aligned for O_DIRECT, passed through the AIO face and back.
struct Buffer(Box<[u8]>, usize);

impl Buffer {
    /// `size` bytes at a 4096-aligned address (over-allocated, offset inside).
    fn new(size: usize) -> Buffer {
        let raw = vec![0u8; size + 4096].into_boxed_slice();
        let skip = raw.as_ptr().align_offset(4096);
        Buffer(raw, skip)
    }
}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        let len = self.0.len() - 4096;
        &self.0[self.1..self.1 + len]
    }
}

impl AsMut<[u8]> for Buffer {
    fn as_mut(&mut self) -> &mut [u8] {
        let len = self.0.len() - 4096;
        &mut self.0[self.1..self.1 + len]
    }
}

/// State of a run, kept in a thread-local: the callbacks run on this thread and capture
/// only a slot number, so each request's coroutine entry stays small and copies nothing.
struct Run {
    dev: BlockDevice,
    write: bool,
    size: u64,
    span: u64,
    random: bool,
    shuffle: BlockShuffle,
    next_seq: u64,
    count: u64,
    submitted: u64,
    completed: u64,
    errors: u64,
    first_error: Option<io::Error>,
    sample: u64,
    started: Vec<Option<Instant>>,
    latency: Histogram<u64>,
}

thread_local! {
    static RUN: RefCell<Option<Run>> = const { RefCell::new(None) };
}

impl Run {
    fn next_offset(&mut self) -> u64 {
        if self.random {
            self.shuffle.next_block() * self.size
        } else {
            // Sequential, wrapping at the end like `qemu-img bench`'s step.
            let offset = self.next_seq;
            self.next_seq = if offset + 2 * self.size > self.span {
                0
            } else {
                offset + self.size
            };
            offset
        }
    }
}

/// Submits the next request on `slot` if any are left (called with the run borrowed).
fn issue(run: &mut Run, slot: usize, buf: Buffer) {
    if run.submitted >= run.count {
        return;
    }
    let offset = run.next_offset();
    // `sample` is a power of two: a mask, not a division, on the hot path.
    run.started[slot] = if run.submitted & (run.sample - 1) == 0 {
        Some(Instant::now())
    } else {
        None
    };
    run.submitted += 1;
    if run.write {
        run.dev
            .aio_pwrite(offset, buf, move |buf, res| complete(slot, buf, res));
    } else {
        run.dev
            .aio_pread(offset, buf, move |buf, res| complete(slot, buf, res));
    }
}

fn complete(slot: usize, buf: Buffer, res: io::Result<usize>) {
    RUN.with(|run| {
        let mut run = run.borrow_mut();
        let run = run.as_mut().expect("bench state");
        if let Some(start) = run.started[slot] {
            let _ = run.latency.record(start.elapsed().as_nanos() as u64);
        }
        run.completed += 1;
        if let Err(err) = res {
            run.errors += 1;
            run.first_error.get_or_insert(err);
        }
        issue(run, slot, buf);
    });
}

/// CPU time of the process so far: (user, system).
fn cpu_times() -> (Duration, Duration) {
    // SAFETY: `rusage` is plain data; all-zero is valid and getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

/// Runs `corral bench`.
pub(crate) fn run(args: Args) -> io::Result<()> {
    let backend = args.backend.unwrap_or(if args.file.is_some() {
        BackendKind::IoUring
    } else {
        BackendKind::Null
    });
    let null = matches!(backend, BackendKind::Null | BackendKind::NullBh);
    // A timed run issues requests until its time is up, then counts what it issued.
    let runtime = match (args.count, args.runtime, &args.file) {
        (Some(_), _, _) => None,
        (None, Some(secs), _) => Some(secs),
        (None, None, None) => Some(DEFAULT_RUNTIME_S),
        (None, None, Some(_)) => None,
    };
    let runtime = match runtime {
        Some(secs) if !(secs.is_finite() && secs > 0.0 && secs < 1e9) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--runtime must be a positive number of seconds, not {secs}"),
            ));
        }
        Some(secs) => Some(Duration::from_secs_f64(secs)),
        None => None,
    };
    let count = match (args.count, runtime) {
        (Some(count), _) => count,
        (None, Some(_)) => u64::MAX,
        (None, None) if null => 10_000_000,
        (None, None) => 200_000,
    };
    let sample = args
        .sample
        .unwrap_or(if null { 64 } else { 8 })
        .max(1)
        .next_power_of_two();
    if args.depth == 0 || args.size == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--depth and --size must be at least 1",
        ));
    }
    let ctx = match args.poll_max_ns {
        Some(max_ns) => AioContext::with_poll_params(PollParams {
            max_ns,
            ..PollParams::default()
        })?,
        None => AioContext::new()?,
    };
    let opts = OpenOptions {
        backend,
        write: args.write,
        create: false,
        direct: args.direct,
        fault: None,
        alloc: if args.mode == Mode::Heap {
            AllocMode::Heap
        } else {
            AllocMode::Pooled
        },
    };
    let (dev, span) = match &args.file {
        Some(path) => {
            let dev = BlockDevice::open(&ctx, path, &opts)
                .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
            let span = dev.size()?;
            if span < args.size as u64 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is smaller than --size", path.display()),
                ));
            }
            (dev, span)
        }
        None if null => (
            BlockDevice::open(
                &ctx,
                "/dev/null",
                &OpenOptions {
                    direct: false,
                    ..opts
                },
            )?,
            NULL_SPAN,
        ),
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--backend {backend} needs a FILE"),
            ))
        }
    };
    if let Some((_, align)) = dev.alignment() {
        if !args.size.is_multiple_of(align) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--direct needs --size to be a multiple of {align} bytes on this file"),
            ));
        }
    }
    let pattern = format!(
        "{} {} {}",
        if args.write { "write" } else { "read" },
        if args.random { "random" } else { "sequential" },
        if args.direct { "O_DIRECT" } else { "buffered" }
    );
    let amount = match runtime {
        Some(time) => format!("{:.1} s of requests", time.as_secs_f64()),
        None => format!("{count} requests"),
    };
    eprintln!(
        "corral bench: {amount}, {} bytes each, {} in flight, {pattern}, backend {backend}, mode {}",
        args.size,
        args.depth,
        args.mode.name()
    );
    let depth = args.depth.min(count.max(1) as usize);
    RUN.with(|run| {
        *run.borrow_mut() = Some(Run {
            dev: dev.clone(),
            write: args.write,
            size: args.size as u64,
            span,
            random: args.random,
            shuffle: BlockShuffle::new(span / args.size as u64, 0x9e37_79b9_7f4a_7c15),
            next_seq: 0,
            count,
            submitted: 0,
            completed: 0,
            errors: 0,
            first_error: None,
            sample,
            started: vec![None; depth],
            latency: Histogram::new(3).expect("3 significant digits is valid"),
        })
    });
    let progress = Progress::new(match runtime {
        Some(time) => time.as_millis() as u64,
        None => count,
    });
    let cpu_before = cpu_times();
    let stats_before = dev.backend_stats();
    let loop_before = ctx.stats();
    let start = Instant::now();
    RUN.with(|run| {
        let mut run = run.borrow_mut();
        let run = run.as_mut().expect("bench state");
        for slot in 0..depth {
            issue(run, slot, Buffer::new(args.size));
        }
    });
    let mut iterations = 0u64;
    loop {
        let done = RUN.with(|run| {
            run.borrow()
                .as_ref()
                .is_some_and(|run| run.completed >= run.count)
        });
        if done {
            break;
        }
        ctx.poll(true);
        iterations += 1;
        let timed_out = runtime
            .is_some_and(|time| iterations.is_multiple_of(CLOCK_EVERY) && start.elapsed() >= time);
        if timed_out {
            // Issue no more: the run ends when those in flight have completed.
            RUN.with(|run| {
                if let Some(run) = run.borrow_mut().as_mut() {
                    run.count = run.count.min(run.submitted);
                }
            });
        }
        if iterations.is_multiple_of(1024) {
            let done = match runtime {
                Some(_) => start.elapsed().as_millis() as u64,
                None => RUN.with(|run| run.borrow().as_ref().map_or(0, |run| run.completed)),
            };
            progress.update(done, start);
        }
    }
    dev.drain()?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu_after = cpu_times();
    let stats = dev.backend_stats();
    let loop_after = ctx.stats();
    progress.finish();
    let run = RUN
        .with(|run| run.borrow_mut().take())
        .expect("bench state");
    report(
        &args,
        backend,
        &run,
        seconds,
        (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1),
        delta(stats, stats_before),
        (
            loop_after.eventfd_writes - loop_before.eventfd_writes,
            loop_after.blocking_waits - loop_before.blocking_waits,
        ),
    );
    match run.first_error {
        Some(err) => Err(io::Error::new(
            err.kind(),
            format!(
                "{} of {} requests failed, first: {err}",
                run.errors, run.count
            ),
        )),
        None => Ok(()),
    }
}

fn delta(after: BackendStats, before: BackendStats) -> BackendStats {
    BackendStats {
        submit_calls: after.submit_calls - before.submit_calls,
        submitted: after.submitted - before.submitted,
        reaped: after.reaped - before.reaped,
    }
}

/// A progress bar on stderr when it is a terminal, shown once a run passed one second.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(count: u64) -> Progress {
        let bar = io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::hidden();
            bar.set_length(count);
            bar
        });
        Progress { bar }
    }

    fn update(&self, done: u64, start: Instant) {
        if let Some(bar) = &self.bar {
            if bar.is_hidden() && start.elapsed() > Duration::from_secs(1) {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
            bar.set_position(done);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn report(
    args: &Args,
    backend: BackendKind,
    run: &Run,
    seconds: f64,
    cpu: (Duration, Duration),
    stats: BackendStats,
    (eventfd_writes, blocking_waits): (u64, u64),
) {
    let requests = run.count;
    let iops = requests as f64 / seconds;
    let mib_s = iops * args.size as f64 / (1024.0 * 1024.0);
    let us = |q: f64| run.latency.value_at_quantile(q) as f64 / 1000.0;
    let (user, sys) = (cpu.0.as_secs_f64(), cpu.1.as_secs_f64());
    let per_req = |s: f64| s * 1e6 / requests as f64;
    let mode = args.mode.name();
    println!("requests      {requests} ({} failed)", run.errors);
    println!("seconds       {seconds:.3}");
    println!("requests/s    {iops:.0}");
    println!("MiB/s         {mib_s:.1}");
    println!(
        "latency us    p50 {:.2}  p99 {:.2}  p99.9 {:.2}  (1 in {} requests timed with CLOCK_MONOTONIC, {} samples)",
        us(0.5),
        us(0.99),
        us(0.999),
        run.sample,
        run.latency.len()
    );
    println!("cpu s         user {user:.3}  sys {sys:.3}");
    println!(
        "cpu us/req    {:.3}  (user {:.3}, sys {:.3})",
        per_req(user + sys),
        per_req(user),
        per_req(sys)
    );
    if stats.submit_calls > 0 {
        println!(
            "syscalls/req  {:.4}  ({} submit calls for {} requests, {} completions reaped from the ring)",
            stats.submit_calls as f64 / requests as f64,
            stats.submit_calls,
            stats.submitted,
            stats.reaped
        );
    }
    println!(
        "event loop    {eventfd_writes} eventfd writes, {blocking_waits} blocking waits ({:.4} per request)",
        (eventfd_writes + blocking_waits) as f64 / requests as f64
    );
    if args.json {
        println!(
            "{{\"backend\":\"{backend}\",\"mode\":\"{mode}\",\"requests\":{requests},\"depth\":{},\"size\":{},\"write\":{},\"random\":{},\"direct\":{},\"seconds\":{seconds:.6},\"iops\":{iops:.1},\"mib_s\":{mib_s:.2},\"lat_us_p50\":{:.3},\"lat_us_p99\":{:.3},\"lat_us_p999\":{:.3},\"lat_sample_every\":{},\"cpu_user_s\":{user:.6},\"cpu_sys_s\":{sys:.6},\"cpu_us_per_req\":{:.4},\"submit_calls_per_req\":{:.5},\"errors\":{}}}",
            args.depth,
            args.size,
            args.write,
            args.random,
            args.direct,
            us(0.5),
            us(0.99),
            us(0.999),
            run.sample,
            per_req(user + sys),
            stats.submit_calls as f64 / requests as f64,
            run.errors
        );
    }
}
