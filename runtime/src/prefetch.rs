//! Prefetch hints: ask the CPU to bring a cache line here before the code
//! that uses it runs, owned when it will be written.
//!
//! A coroutine created on one thread and entered on another moves its
//! header's first line between the CPUs: the creator wrote the entry's
//! function there, and `enter` compare-and-swaps the state word in it. A
//! plain read prefetch would fetch a shared copy, and the compare-and-swap
//! would still wait for the other CPU to give the line up; `prefetchw` asks
//! for it owned. A line that is only read (the entry's bytes) is fetched
//! shared, so its writer keeps its copy. Only hints: they never fault,
//! whatever the address, and change no value.
//!
//! `prefetchw` is used where CPUID reports it (PRFCHW: AMD since the K6-2,
//! Intel since Broadwell), checked once per process; elsewhere a read
//! prefetch (`prefetcht0`). The runtime is x86-64 only (see `switch.rs`).

use std::sync::atomic::{AtomicU8, Ordering};

/// Hints the CPU to bring the `LINES` 64-byte lines from `p` into this
/// CPU's cache, owned for writing. Any address is fine (no fault, no effect
/// on values). The CPUID answer is read once per call; the loop unrolls.
#[inline(always)]
pub(crate) fn prefetch_lines_for_write<const LINES: usize>(p: *const u8) {
    prefetch_for_write(std::array::from_fn::<_, LINES, _>(|i| {
        p.wrapping_add(64 * i)
    }));
}

/// Hints the CPU to bring the lines of these addresses into this CPU's
/// cache, owned for writing (as [`prefetch_lines_for_write`], for lines
/// that are not next to each other).
#[inline(always)]
pub(crate) fn prefetch_for_write<const N: usize>(lines: [*const u8; N]) {
    if has_prefetchw() {
        for p in lines {
            // SAFETY:
            // * the CPU reports PRFCHW, so the instruction is defined; it is
            //   a hint: no fault whatever the address, no memory or flag
            //   changed.
            unsafe {
                std::arch::asm!(
                    "prefetchw [{0}]",
                    in(reg) p,
                    options(nostack, readonly, preserves_flags)
                );
            }
        }
    } else {
        for p in lines {
            // SAFETY:
            // * SSE is part of x86-64; a prefetch never faults.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
            };
        }
    }
}

/// Asks this CPU to fetch, owned, the cache line that holds `p`, ahead of
/// a write to it: for a queue that hands values to another thread, the
/// slots it will fill next (the other thread read them last, so each
/// first write would wait for the line to come back). Only a hint: any
/// address is fine, nothing is read or written.
#[inline(always)]
pub fn prefetch_line_for_write<T>(p: *const T) {
    prefetch_for_write([p.cast::<u8>()]);
}

/// Hints the CPU to bring the line of `p` into this CPU's cache for
/// reading: a shared copy, which leaves the writer's copy in place. Any
/// address is fine.
#[inline(always)]
pub(crate) fn prefetch_for_read(p: *const u8) {
    // SAFETY:
    // * SSE is part of x86-64; a prefetch never faults.
    unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast()) };
}

/// 0: not probed yet; 1: no `prefetchw`; 2: `prefetchw` available.
static PRFCHW: AtomicU8 = AtomicU8::new(0);

#[inline(always)]
fn has_prefetchw() -> bool {
    match PRFCHW.load(Ordering::Relaxed) {
        0 => probe(),
        v => v == 2,
    }
}

/// Reads CPUID leaf 0x8000_0001 ECX bit 8 (PRFCHW) and caches it.
#[cold]
#[inline(never)]
fn probe() -> bool {
    // SAFETY:
    // * CPUID exists on every x86-64 CPU; the extended leaf is asked only
    //   if the maximum extended leaf covers it.
    // (`__cpuid` is a safe fn in newer Rust, unsafe in our MSRV's.)
    #[allow(unused_unsafe)]
    let have = unsafe {
        let max = std::arch::x86_64::__cpuid(0x8000_0000).eax;
        max >= 0x8000_0001 && std::arch::x86_64::__cpuid(0x8000_0001).ecx & (1 << 8) != 0
    };
    PRFCHW.store(if have { 2 } else { 1 }, Ordering::Relaxed);
    have
}

#[cfg(test)]
mod tests {
    use super::prefetch_lines_for_write;

    #[test]
    fn prefetch_is_harmless_on_any_address() {
        let x = 7u64;
        prefetch_lines_for_write::<1>(std::ptr::addr_of!(x).cast());
        prefetch_lines_for_write::<4>(std::ptr::null());
        prefetch_lines_for_write::<2>((usize::MAX - 64) as *const u8);
        super::prefetch_line_for_write(std::ptr::addr_of!(x));
        super::prefetch_line_for_write(usize::MAX as *const u64);
        super::prefetch_for_write([std::ptr::null(), std::ptr::addr_of!(x).cast()]);
        assert_eq!(x, 7);
    }

    /// A prefetch of a live or a stale handle's word changes nothing.
    #[test]
    fn prefetching_a_handle_changes_nothing() {
        use crate::Coroutine;
        use std::sync::atomic::{AtomicUsize, Ordering};
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let co = Coroutine::new(|| {
            RUNS.fetch_add(1, Ordering::Relaxed);
        });
        let raw = co.into_raw();
        Coroutine::prefetch_raw(raw);
        assert!(!co.is_terminated());
        co.enter();
        Coroutine::prefetch_raw(raw);
        assert!(co.is_terminated());
        assert_eq!(RUNS.load(Ordering::Relaxed), 1);
    }
}
