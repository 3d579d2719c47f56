//! A stack released to the global pool list after deep use gives its deep
//! pages back: mincore(2) on the deep range and the Rss of the stack's
//! mapping in /proc/self/smaps (own test binary).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use corral_runtime::{pool_stats, Coroutine};

/// Uses about `bytes` of stack below the caller and returns the lowest
/// address reached.
#[inline(never)]
fn dig(bytes: usize) -> usize {
    let mut buf = [0u8; 4096];
    std::hint::black_box(&mut buf).fill(1);
    let here = buf.as_ptr() as usize;
    if bytes <= 4096 {
        here
    } else {
        std::hint::black_box(dig(bytes - 4096))
    }
}

/// Resident pages of `start..end` (page aligned) according to mincore(2).
fn resident_pages(start: usize, end: usize) -> usize {
    let page = 4096;
    let mut vec = vec![0u8; (end - start) / page];
    // SAFETY: `vec` has one byte per page of the range.
    let rc = unsafe { libc::mincore(start as *mut libc::c_void, end - start, vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    vec.iter().filter(|&&b| b & 1 != 0).count()
}

/// Rss (KiB) of the mapping that contains `addr`, from /proc/self/smaps.
fn mapping_rss_kib(addr: usize) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&addr);
                continue;
            }
        }
        if inside {
            if let Some(rest) = line.strip_prefix("Rss:") {
                return rest.trim().trim_end_matches("kB").trim().parse().unwrap();
            }
        }
    }
    panic!("no mapping contains {addr:#x}");
}

#[test]
fn deep_pages_are_given_back_when_the_stack_leaves_the_thread() {
    const DEPTH: usize = 160 * 1024;
    let lowest = Arc::new(AtomicUsize::new(0));
    let top = Arc::new(AtomicUsize::new(0));
    let (l, t) = (lowest.clone(), top.clone());
    let before = pool_stats();
    let (resident_in_use, rss_in_use) = std::thread::spawn(move || {
        let (l2, t2) = (l.clone(), t.clone());
        let co = Coroutine::new(move || {
            let marker = 0u8;
            t2.store(
                std::hint::black_box(&marker) as *const u8 as usize,
                Ordering::SeqCst,
            );
            l2.store(dig(DEPTH), Ordering::SeqCst);
        });
        co.enter();
        let low = l.load(Ordering::SeqCst) & !4095;
        let high = (t.load(Ordering::SeqCst) & !4095) - 2 * 4096;
        // The body is in this thread's local pool list: not trimmed yet.
        (resident_pages(low, high), mapping_rss_kib(low))
        // Thread exit hands the local list to the global list: the release hook trims.
    })
    .join()
    .unwrap();
    let low = lowest.load(Ordering::SeqCst) & !4095;
    let high = (top.load(Ordering::SeqCst) & !4095) - 2 * 4096;
    let deep_pages = (high - low) / 4096;
    assert!(
        resident_in_use * 10 >= deep_pages * 9,
        "the deep use made {resident_in_use} of {deep_pages} pages resident"
    );
    let after = pool_stats();
    assert_eq!(
        after.pooled,
        before.pooled + 1,
        "the body went to the global list, not dropped"
    );
    assert_eq!(
        resident_pages(low, high),
        0,
        "deep pages still resident after release"
    );
    let rss_after = mapping_rss_kib(low);
    assert!(
        rss_after + (deep_pages as u64 * 4) * 9 / 10 <= rss_in_use,
        "RSS {rss_in_use} KiB in use, {rss_after} KiB after release"
    );
}
