//! Stack overflow reporting: a SIGSEGV handler, run on an alternate signal
//! stack, that recognises a fault in the running coroutine's guard page,
//! prints "coroutine stack overflow" with the stack's bounds and aborts.
//! Any other fault is handed to the handler that was there before (std's
//! thread-overflow handler, or the default action).

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::{Once, OnceLock};

use crate::tls;

/// The SIGSEGV disposition we replaced, called for faults that are not ours.
struct Previous(libc::sigaction);
// SAFETY:
// * plain data (handler address, mask, flags), written once before our
//   handler is installed and only read afterwards.
unsafe impl Sync for Previous {}
// SAFETY:
// * as above; moved once into the OnceLock.
unsafe impl Send for Previous {}

static PREVIOUS: OnceLock<Previous> = OnceLock::new();

type FaultHandler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Installs the handler once per process (called when the first stack is mapped).
pub(crate) fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut old = MaybeUninit::<libc::sigaction>::zeroed();
        let mut new = MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY:
        // * both structs are zeroed (a valid sigaction) and writable;
        // * `on_fault` has the SA_SIGINFO signature; SA_ONSTACK because the
        //   faulting stack is the one that overflowed.
        unsafe {
            let new = new.as_mut_ptr();
            (*new).sa_sigaction = on_fault as FaultHandler as usize;
            (*new).sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut (*new).sa_mask);
            if libc::sigaction(libc::SIGSEGV, ptr::null(), old.as_mut_ptr()) != 0 {
                return;
            }
            // Publish the previous disposition before ours can run.
            let _ = PREVIOUS.set(Previous(old.assume_init()));
            libc::sigaction(libc::SIGSEGV, new, ptr::null_mut());
        }
        ensure_altstack();
    });
}

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY:
    // * the kernel passes a valid siginfo for SIGSEGV.
    let addr = unsafe { (*info).si_addr() } as usize;
    let h = tls::current();
    if !h.is_null() {
        // SAFETY:
        // * a non-null current header has its body installed and running on
        //   this thread: its stack word names its mapped stack, whose top
        //   line (far from the faulting guard page) describes it.
        let b = unsafe { (*(*h).inner()).stack.bounds() };
        if (b.bottom..b.guard_end()).contains(&addr) {
            report(addr, b.bottom, b.guard_end(), b.top, b.kind.name());
            // SAFETY:
            // * abort is async-signal-safe.
            unsafe { libc::abort() };
        }
    }
    chain(sig, info, ctx);
}

/// Hands a fault that is not a coroutine overflow to the previous handler.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let Some(Previous(prev)) = PREVIOUS.get() else {
        reset_default(sig);
        return;
    };
    match prev.sa_sigaction {
        libc::SIG_DFL | libc::SIG_IGN => reset_default(sig),
        f if prev.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY:
            // * with SA_SIGINFO the previous handler has this signature; we
            //   pass the kernel's own arguments through.
            let f: FaultHandler = unsafe { std::mem::transmute(f) };
            f(sig, info, ctx)
        }
        f => {
            // SAFETY:
            // * without SA_SIGINFO the previous handler takes only the signal number.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(f) };
            f(sig)
        }
    }
}

/// Restores the default action; returning re-runs the faulting access, which
/// then kills the process the usual way.
fn reset_default(sig: libc::c_int) {
    // SAFETY:
    // * signal() with SIG_DFL is async-signal-safe and has no preconditions.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}

/// Writes the report with `write(2)` only (no allocation in a signal handler).
fn report(addr: usize, bottom: usize, guard_end: usize, top: usize, kind: &str) {
    let mut buf = [0u8; 256];
    let mut n = 0;
    let mut put = |s: &[u8]| {
        let m = s.len().min(buf.len() - n);
        buf[n..n + m].copy_from_slice(&s[..m]);
        n += m;
    };
    put(b"\ncoroutine stack overflow: fault at ");
    put(&hex(addr));
    put(b", stack ");
    put(&hex(guard_end));
    put(b"..");
    put(&hex(top));
    put(b", guard page ");
    put(&hex(bottom));
    put(b"..");
    put(&hex(guard_end));
    put(b" (");
    put(kind.as_bytes());
    put(b")\n");
    // SAFETY:
    // * write(2) is async-signal-safe; `buf[..n]` is initialised.
    unsafe { libc::write(2, buf.as_ptr().cast(), n) };
}

fn hex(v: usize) -> [u8; 18] {
    let mut out = *b"0x0000000000000000";
    for i in 0..16 {
        let nib = (v >> ((15 - i) * 4)) & 0xf;
        out[2 + i] = b"0123456789abcdef"[nib];
    }
    out
}

/// An alternate signal stack this runtime installed on a thread that had none.
struct AltStack {
    addr: *mut libc::c_void,
    len: usize,
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let disable = libc::stack_t {
            ss_sp: ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY:
        // * the thread is exiting and runs no more coroutines: disabling the
        //   alternate stack, then unmapping the memory we mapped, is fine.
        unsafe {
            libc::sigaltstack(&disable, ptr::null_mut());
            libc::munmap(self.addr, self.len);
        }
    }
}

thread_local! {
    static ALTSTACK: RefCell<Option<AltStack>> = const { RefCell::new(None) };
}

/// Gives this thread an alternate signal stack if it has none (std's threads
/// and main thread already have one).
pub(crate) fn ensure_altstack() {
    let mut cur = MaybeUninit::<libc::stack_t>::zeroed();
    // SAFETY:
    // * a null new stack only queries; `cur` is writable.
    if unsafe { libc::sigaltstack(ptr::null(), cur.as_mut_ptr()) } != 0 {
        return;
    }
    // SAFETY:
    // * sigaltstack succeeded and filled `cur`.
    let cur = unsafe { cur.assume_init() };
    if cur.ss_flags & libc::SS_DISABLE == 0 {
        return;
    }
    let len = 64 * 1024;
    // SAFETY:
    // * anonymous mapping at a kernel-chosen address; checked for MAP_FAILED.
    let addr = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return;
    }
    let st = libc::stack_t {
        ss_sp: addr,
        ss_flags: 0,
        ss_size: len,
    };
    // SAFETY:
    // * `addr..addr+len` is ours and stays mapped until the AltStack drops.
    if unsafe { libc::sigaltstack(&st, ptr::null_mut()) } == 0 {
        let _ = ALTSTACK.try_with(|a| *a.borrow_mut() = Some(AltStack { addr, len }));
    } else {
        // SAFETY:
        // * the mapping was not installed; it is ours to unmap.
        unsafe { libc::munmap(addr, len) };
    }
}
