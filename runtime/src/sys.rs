//! Thin helpers over libc: one place turns `-1`/errno into `io::Result`.

use std::io;
use std::sync::OnceLock;

/// Runs a libc call that returns `-1` on failure and keeps the raw errno.
///
/// `syscall!(name(args...))` expands to an `unsafe` call of `libc::name` (resolved in
/// the calling crate, which must depend on `libc`) and gives `io::Result` of its return
/// value: `Err(io::Error::last_os_error())` when it returned `-1`.
///
/// Contract: the macro hides the `unsafe`, so every call site must itself make sure the
/// arguments satisfy the libc function's contract (valid fds, pointers to buffers that
/// live across the call, lengths that match them). Exported for corral's own crates
/// (corral-aio), not a public API.
#[doc(hidden)]
#[macro_export]
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY:
        // * the caller of the macro passes arguments that satisfy the libc
        //   function's contract (checked at each call site);
        // * the result is only compared with -1, errno is read right after.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

/// The page size, read once.
pub(crate) fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY:
        // * sysconf has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if size > 0 && (size as usize).is_power_of_two() {
            size as usize
        } else {
            4096
        }
    })
}

/// `vm.max_map_count`, read once (65530 when it cannot be read: the kernel default).
pub(crate) fn max_map_count() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(65530)
    })
}

/// Number of memory mappings of this process (lines of /proc/self/maps).
///
/// Reads through a small stack buffer: it must work when the process is out
/// of mappings (a large heap buffer would itself need a new mapping).
pub fn map_count() -> io::Result<usize> {
    use std::io::Read;
    let mut file = std::fs::File::open("/proc/self/maps")?;
    let mut buf = [0u8; 8192];
    let mut lines = 0;
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(lines),
            Ok(n) => lines += buf[..n].iter().filter(|&&b| b == b'\n').count(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The soft `RLIMIT_AS` in bytes, `None` when unlimited or unreadable.
pub(crate) fn address_space_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY:
    // * `lim` is a valid, writable rlimit for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}
