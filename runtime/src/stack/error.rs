//! Turning a refused stack into an error that says what ran out.

use std::io;

use super::{live_stacks, GuardKind};
use crate::sys::{address_space_limit, map_count, max_map_count};

/// Wraps `err` (from mmap, madvise or mprotect) with what ran out. The kind is
/// kept, and the original OS error (raw errno) is the wrapped error's `source()`.
pub(crate) fn explain(err: io::Error, step: &str, len: usize, kind: GuardKind) -> io::Error {
    let live = live_stacks();
    let what = match step {
        "map" => format!("cannot map a {} KiB coroutine stack", len / 1024),
        _ => format!("cannot set the {kind} guard page of a coroutine stack"),
    };
    let why = if err.raw_os_error() == Some(libc::ENOMEM) {
        let max = max_map_count();
        let maps = map_count().unwrap_or(0);
        if maps + 2 >= max {
            format!(
                "out of memory mappings: the process has {maps} of vm.max_map_count = {max} \
                 ({live} coroutine stacks live, {} mapping(s) each with {kind} guards; \
                 raise vm.max_map_count or use a kernel with MADV_GUARD_INSTALL, Linux 6.13+)",
                kind.mappings_per_stack()
            )
        } else if let Some(limit) = address_space_limit() {
            format!(
                "out of address space: RLIMIT_AS is {} MiB ({live} coroutine stacks live)",
                limit >> 20
            )
        } else {
            format!("out of memory ({live} coroutine stacks live, {maps} mappings of vm.max_map_count = {max})")
        }
    } else {
        format!("{live} coroutine stacks live")
    };
    io::Error::new(
        err.kind(),
        StackError {
            what,
            why,
            source: err,
        },
    )
}

/// The error value carried inside the `io::Error` of a refused stack.
#[derive(Debug)]
struct StackError {
    what: String,
    why: String,
    source: io::Error,
}

impl std::fmt::Display for StackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.what, self.source, self.why)
    }
}

impl std::error::Error for StackError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
