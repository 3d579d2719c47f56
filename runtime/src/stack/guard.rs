//! Guard pages: installed guard markers (Linux 6.13+) or `mprotect`.
//!
//! `mprotect(PROT_NONE)` on the lowest page splits a stack's mapping in two,
//! so every stack costs two of the kernel's `vm.max_map_count` mappings.
//! `madvise(MADV_GUARD_INSTALL)` puts a guard marker in the page tables
//! instead: no VMA of its own, and stacks mapped next to each other with the
//! same flags merge into one VMA. Both fault (SIGSEGV) when touched.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::sys::page_size;
use crate::syscall;

/// `MADV_GUARD_INSTALL` (Linux 6.13, uapi value 102); not yet in every libc.
pub(crate) const MADV_GUARD_INSTALL: libc::c_int = 102;

/// How the lowest page of a stack is made to fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuardKind {
    /// `madvise(MADV_GUARD_INSTALL)`: a guard marker inside the stack's own
    /// mapping, costing no mapping (Linux 6.13 and later).
    Install,
    /// `mprotect(PROT_NONE)`: works on every kernel, costs a second mapping
    /// per stack (counted against `vm.max_map_count`).
    Mprotect,
}

impl GuardKind {
    /// The kind this process uses by default: `Install` where the kernel
    /// accepts `MADV_GUARD_INSTALL` (probed once), `Mprotect` otherwise.
    #[inline]
    pub fn probed() -> GuardKind {
        if install_supported() {
            GuardKind::Install
        } else {
            GuardKind::Mprotect
        }
    }

    /// Name as used on the command line and in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            GuardKind::Install => "install",
            GuardKind::Mprotect => "mprotect",
        }
    }

    /// Mappings one stack of this kind adds to the process.
    pub fn mappings_per_stack(self) -> usize {
        match self {
            GuardKind::Install => 1,
            GuardKind::Mprotect => 2,
        }
    }
}

impl Default for GuardKind {
    fn default() -> Self {
        GuardKind::probed()
    }
}

impl fmt::Display for GuardKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GuardKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "install" => Ok(GuardKind::Install),
            "mprotect" => Ok(GuardKind::Mprotect),
            other => Err(format!(
                "unknown guard kind {other:?} (expected install or mprotect)"
            )),
        }
    }
}

/// Whether `MADV_GUARD_INSTALL` works here. Probed once on a scratch mapping:
/// EINVAL (an unknown advice) means the kernel predates 6.13.
#[inline]
pub fn install_supported() -> bool {
    match PROBED.load(Ordering::Relaxed) {
        YES => true,
        NO => false,
        _ => probe_once(),
    }
}

const UNKNOWN: u8 = 0;
const YES: u8 = 1;
const NO: u8 = 2;
static PROBED: AtomicU8 = AtomicU8::new(UNKNOWN);

#[cold]
#[inline(never)]
fn probe_once() -> bool {
    // Benign race: two threads may both probe; they get the same answer.
    let ok = probe_install();
    PROBED.store(if ok { YES } else { NO }, Ordering::Relaxed);
    ok
}

fn probe_install() -> bool {
    let page = page_size();
    let len = 2 * page;
    // SAFETY:
    // * an anonymous private mapping at an address of the kernel's choice
    //   aliases nothing; the result is checked against MAP_FAILED.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return false;
    }
    let ok = syscall!(madvise(addr, page, MADV_GUARD_INSTALL)).is_ok();
    // SAFETY:
    // * `addr..addr+len` is the mapping made above, used by nothing else.
    unsafe { libc::munmap(addr, len) };
    ok
}

/// Makes `addr..addr+len` (page aligned, inside a stack mapping) fault.
pub(crate) fn make_guard(kind: GuardKind, addr: *mut libc::c_void, len: usize) -> io::Result<()> {
    match kind {
        GuardKind::Install => syscall!(madvise(addr, len, MADV_GUARD_INSTALL)).map(drop),
        GuardKind::Mprotect => syscall!(mprotect(addr, len, libc::PROT_NONE)).map(drop),
    }
}
