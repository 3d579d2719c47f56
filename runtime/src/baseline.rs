//! The baseline the coroutine lifecycle is measured against (the 2014 QEMU
//! thread's "malloc, memset, free for 128 bytes"), shared by `corral
//! lifecycle` and the criterion benchmarks so both measure the same thing.

use std::hint::black_box;

/// One libc `malloc(128)`, `memset` of the 128 bytes, `free`.
#[inline(never)]
pub fn malloc_memset_free_128() {
    // SAFETY:
    // * malloc's result is checked for null before use;
    // * 128 bytes are written inside the allocation, which is then freed once.
    // `black_box` keeps the compiler from fusing malloc+memset into calloc.
    unsafe {
        let p = black_box(libc::malloc(128).cast::<u8>());
        if !p.is_null() {
            std::ptr::write_bytes(p, 0, 128);
            black_box(p);
            libc::free(p.cast());
        }
    }
}
