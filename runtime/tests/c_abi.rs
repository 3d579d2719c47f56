//! The C ABI's enter and yield (`corral_runtime::c_abi`), called from Rust
//! as a C program would: results, refusals, and mixing with the Rust API
//! on the same coroutine (both follow one switch protocol).

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use corral_runtime::c_abi::{self, Refusal};
use corral_runtime::{current, yield_now, Coroutine};

/// Refusal handler: the refusal's code, negated (so it cannot be 0).
extern "C" fn code(refusal: Refusal) -> i32 {
    -(refusal as i32)
}

fn c_enter(co: Coroutine) -> i32 {
    // SAFETY:
    // * a handle of `into_raw`.
    unsafe { c_abi::enter(co.into_raw().as_ptr(), code) }
}

fn c_yield() -> i32 {
    // SAFETY:
    // * an ordinary call.
    unsafe { c_abi::yield_(code) }
}

#[test]
fn enter_and_yield_through_the_c_abi() {
    let entered = Arc::new(AtomicUsize::new(0));
    let e = entered.clone();
    let co = Coroutine::new(move || {
        for _ in 0..5 {
            e.fetch_add(1, Ordering::Relaxed);
            assert_eq!(c_yield(), 0);
        }
        e.fetch_add(1, Ordering::Relaxed);
    });
    for round in 1..=6 {
        assert_eq!(c_enter(co), 0);
        assert_eq!(entered.load(Ordering::Relaxed), round);
    }
    assert!(co.is_terminated());
    assert_eq!(c_enter(co), -(Refusal::Terminated as i32));
}

#[test]
fn refusals_call_the_handler() {
    // SAFETY:
    // * NULL is allowed.
    let null = unsafe { c_abi::enter(std::ptr::null_mut::<c_void>(), code) };
    assert_eq!(null, -(Refusal::Null as i32));
    assert_eq!(c_yield(), -(Refusal::NotInCoroutine as i32));
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let co = Coroutine::new(move || {
        let me = current().expect("in a coroutine");
        s.store((-c_enter(me)) as usize, Ordering::Relaxed);
    });
    assert_eq!(c_enter(co), 0);
    assert_eq!(seen.load(Ordering::Relaxed), Refusal::Running as usize);
}

#[test]
fn c_and_rust_halves_mix() {
    let steps = Arc::new(AtomicUsize::new(0));
    let s = steps.clone();
    let co = Coroutine::new(move || {
        s.fetch_add(1, Ordering::Relaxed);
        assert_eq!(c_yield(), 0); // resumed by Rust's enter
        s.fetch_add(1, Ordering::Relaxed);
        yield_now(); // resumed by the C enter
        s.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(c_enter(co), 0);
    assert_eq!(steps.load(Ordering::Relaxed), 1);
    co.enter();
    assert_eq!(steps.load(Ordering::Relaxed), 2);
    assert_eq!(c_enter(co), 0);
    assert_eq!(steps.load(Ordering::Relaxed), 3);
    assert!(co.is_terminated());
}

#[test]
fn nested_c_enters_come_back_in_order() {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (l1, l2) = (log.clone(), log.clone());
    let inner = Coroutine::new(move || {
        l2.lock().unwrap().push("inner 1");
        c_yield();
        l2.lock().unwrap().push("inner 2");
    });
    let outer = Coroutine::new(move || {
        l1.lock().unwrap().push("outer 1");
        c_enter(inner);
        l1.lock().unwrap().push("outer 2");
        c_yield();
        c_enter(inner);
        l1.lock().unwrap().push("outer 3");
    });
    c_enter(outer);
    c_enter(outer);
    assert_eq!(
        *log.lock().unwrap(),
        ["outer 1", "inner 1", "outer 2", "inner 2", "outer 3"]
    );
    assert!(inner.is_terminated() && outer.is_terminated());
}

/// Sets every callee-saved register to a pattern made from `seed`, calls
/// `f(a0, a1)` (a C-ABI function), and returns which registers lost their
/// pattern (a bit each: rbx, rbp, r12-r15).
fn call_with_patterns(f: usize, a0: usize, a1: usize, seed: u64) -> u64 {
    let lost: u64;
    // SAFETY:
    // * rbx and rbp are saved and restored by hand; r12-r15 are declared
    //   clobbered; `f` is a C-ABI function taking two words, called with
    //   an aligned stack (two pushes keep the asm entry's alignment).
    unsafe {
        std::arch::asm!(
            "push rbx",
            "push rbp",
            "mov rbx, {s}",
            "lea rbp, [{s} + 1]",
            "lea r12, [{s} + 2]",
            "lea r13, [{s} + 3]",
            "lea r14, [{s} + 4]",
            "lea r15, [{s} + 5]",
            "push {s}",
            "push {s}",
            "call {f}",
            "pop rdx",
            "pop rdx",
            "xor ecx, ecx",
            "cmp rbx, rdx", "setne al", "movzx eax, al", "or rcx, rax",
            "inc rdx", "cmp rbp, rdx", "setne al", "movzx eax, al", "shl eax, 1", "or rcx, rax",
            "inc rdx", "cmp r12, rdx", "setne al", "movzx eax, al", "shl eax, 2", "or rcx, rax",
            "inc rdx", "cmp r13, rdx", "setne al", "movzx eax, al", "shl eax, 3", "or rcx, rax",
            "inc rdx", "cmp r14, rdx", "setne al", "movzx eax, al", "shl eax, 4", "or rcx, rax",
            "inc rdx", "cmp r15, rdx", "setne al", "movzx eax, al", "shl eax, 5", "or rcx, rax",
            "pop rbp",
            "pop rbx",
            s = in(reg) seed,
            f = in(reg) f,
            in("rdi") a0,
            in("rsi") a1,
            lateout("rcx") lost,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
            clobber_abi("C"),
        );
    }
    lost
}

#[test]
fn both_sides_keep_their_callee_saved_registers() {
    let yield_lost = Arc::new(AtomicUsize::new(usize::MAX));
    let y = yield_lost.clone();
    let co = Coroutine::new(move || {
        let mut lost = 0;
        for round in 0..3 {
            let handler = code as extern "C" fn(Refusal) -> i32 as usize;
            lost |= call_with_patterns(
                c_abi::yield_ as *const () as usize,
                handler,
                0,
                0x7000 + round,
            );
        }
        y.store(lost as usize, Ordering::Relaxed);
    });
    let handler = code as extern "C" fn(Refusal) -> i32 as usize;
    let raw = co.into_raw().as_ptr() as usize;
    let mut enter_lost = 0;
    for round in 0..4 {
        enter_lost |= call_with_patterns(
            c_abi::enter as *const () as usize,
            raw,
            handler,
            0x9000 + round * 16,
        );
    }
    assert!(co.is_terminated());
    assert_eq!(
        enter_lost, 0,
        "registers lost across enter (bits: rbx rbp r12-r15)"
    );
    assert_eq!(
        yield_lost.load(Ordering::Relaxed),
        0,
        "registers lost across yield"
    );
}

#[test]
fn a_stale_handle_is_refused_after_its_header_is_reused() {
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let first = Coroutine::new(|| {});
    assert_eq!(c_enter(first), 0);
    // The next create on this thread reuses the body (and header) just freed.
    let second = Coroutine::new(move || {
        r.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(
        first.into_raw().as_ptr() as usize & !0xff & ((1 << 48) - 1),
        second.into_raw().as_ptr() as usize & !0xff & ((1 << 48) - 1),
        "the header was reused (the case this test is about)"
    );
    assert_eq!(c_enter(first), -(Refusal::Terminated as i32));
    assert_eq!(
        ran.load(Ordering::Relaxed),
        0,
        "the stale handle ran the new coroutine"
    );
    assert_eq!(c_enter(second), 0);
    assert_eq!(ran.load(Ordering::Relaxed), 1);
}

#[test]
fn handles_of_old_bodies_carry_every_generation_bit() {
    // One body reused 600 times (the thread's one-body cache): generations
    // above 255 put bits in the handle's top 16, which the C enter's claim
    // must compare too.
    let ran = Arc::new(AtomicUsize::new(0));
    let mut last = None;
    for round in 0..600 {
        let r = ran.clone();
        let co = Coroutine::new(move || {
            r.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(c_enter(co), 0, "round {round}");
        if let Some(stale) = last.replace(co) {
            assert_eq!(c_enter(stale), -(Refusal::Terminated as i32));
        }
    }
    assert_eq!(ran.load(Ordering::Relaxed), 600);
    let high = last.expect("ran").into_raw().as_ptr() as usize >> 48;
    assert_ne!(
        high, 0,
        "the body was not reused enough to reach the high bits"
    );
}

#[test]
fn a_threads_first_enter_may_come_from_c() {
    let entered = Arc::new(AtomicUsize::new(0));
    let e = entered.clone();
    let co = Coroutine::new(move || {
        e.fetch_add(1, Ordering::Relaxed);
        c_yield();
        e.fetch_add(1, Ordering::Relaxed);
    });
    // A fresh thread: its first enter (C) sets the thread up, its second
    // takes the fast path.
    std::thread::spawn(move || {
        assert_eq!(c_enter(co), 0);
        assert_eq!(c_enter(co), 0);
    })
    .join()
    .expect("thread");
    assert_eq!(entered.load(Ordering::Relaxed), 2);
    assert!(co.is_terminated());
}
