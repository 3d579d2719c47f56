//! A pooled coroutine entered for the first time runs on the stack its
//! enterer's thread ran last (the one warm in that CPU's caches), whatever
//! thread made it: the stack it was made with waits, untouched, in the
//! thread's one-body cache instead. A coroutine already entered, or one
//! of another shape or source, keeps its own stack.

use std::sync::{mpsc, Mutex};
use std::thread;

use corral_runtime::c_abi::{self, Refusal};
use corral_runtime::{pool_stats, yield_now, Builder, Coroutine};

/// An address in the caller's frame: on the stack it runs on.
#[inline(never)]
fn here() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// Runs `make` on a new thread and enters the coroutine it returns there.
fn run_on_new_thread(make: impl FnOnce() -> Coroutine + Send + 'static) {
    thread::spawn(move || make().enter()).join().unwrap();
}

/// A coroutine that sends the address its entry runs at.
fn reporting(b: Builder, to: &mpsc::Sender<usize>) -> Coroutine {
    let to = to.clone();
    b.spawn(move || to.send(here()).unwrap())
}

/// Makes a coroutine that yields once, enters it with `first_enter`, then
/// enters it again on a new thread that ran a coroutine of its own first.
/// Returns where it ran before the yield, where the new thread's own
/// coroutine ran, and where it ran after the yield.
fn yield_then_enter_elsewhere(first_enter: &dyn Fn(Coroutine)) -> (usize, usize, usize) {
    let (to, from) = mpsc::channel();
    let to_co = to.clone();
    let co = Coroutine::new(move || {
        to_co.send(here()).unwrap();
        yield_now();
        to_co.send(here()).unwrap();
    });
    first_enter(co);
    let before = from.recv().unwrap();
    run_on_new_thread(move || {
        reporting(Builder::new(), &to).enter();
        co
    });
    (before, from.recv().unwrap(), from.recv().unwrap())
}

/// Same stack: the two addresses lie within one frame's reach.
fn same_stack(a: usize, b: usize) -> bool {
    a.abs_diff(b) < 16 * 1024
}

/// The tests assert the process-wide pool counters: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

extern "C" fn code(refusal: Refusal) -> i32 {
    -(refusal as i32)
}

#[test]
fn first_enter_borrows_the_warm_stack_of_the_entering_thread() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let created_before = pool_stats().created;
    let b = Builder::new();
    let (to, from) = mpsc::channel();

    // Thread A runs one coroutine: its body (stack SA) then waits in A's
    // cache, and A's next create takes it.
    let (made_tx, made_rx) = mpsc::channel::<usize>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let to_a = to.clone();
    let a = thread::spawn(move || {
        reporting(b, &to_a).enter();
        let co = reporting(b, &to_a);
        made_tx.send(co.into_raw().as_ptr() as usize).unwrap();
        // Keep A (and its cache) alive until B is done.
        go_rx.recv().unwrap();
    });
    let on_a = from.recv().unwrap();
    let raw = made_rx.recv().unwrap();

    // Thread B runs one coroutine of its own (stack SB), then enters A's.
    let to_b = to.clone();
    let b_thread = thread::spawn(move || {
        reporting(b, &to_b).enter();
        // SAFETY:
        // * made by `into_raw` on thread A, sent once.
        let co = unsafe { Coroutine::from_raw(std::ptr::NonNull::new(raw as *mut _).unwrap()) };
        co.enter();
        assert!(co.is_terminated());
        // The stack A's coroutine came with is in B's cache: B's next
        // coroutine that borrows finds it there, and it still works.
        let again = reporting(b, &to_b);
        again.enter();
    });
    let on_b = from.recv().unwrap();
    let made_on_a_ran_at = from.recv().unwrap();
    let next_on_b = from.recv().unwrap();
    b_thread.join().unwrap();
    go_tx.send(()).unwrap();
    a.join().unwrap();

    assert!(!same_stack(on_a, on_b), "A and B ran on one stack");
    assert!(
        same_stack(made_on_a_ran_at, on_b),
        "made on A, first entered on B: ran at {made_on_a_ran_at:#x}, \
         not on B's warm stack ({on_b:#x}); A's stack is at {on_a:#x}"
    );
    assert!(same_stack(next_on_b, on_b), "B's warm stack stays in use");

    // Every body came back: at most two stacks were made (A's and B's),
    // none is in use.
    let stats = pool_stats();
    assert!(stats.created - created_before <= 2, "{stats:?}");
    assert_eq!(stats.in_use(), 0, "{stats:?}");
}

#[test]
fn entered_or_unlike_coroutines_keep_their_stack() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (to, from) = mpsc::channel();

    // A coroutine that yielded keeps its stack when entered again from a
    // thread whose cache holds a warm one (its frames live there); the
    // same when it yielded under the C ABI's enter, which marks a yield as
    // the Rust enter does.
    let rust_enter = |co: Coroutine| co.enter();
    let c_enter = |co: Coroutine| {
        // SAFETY:
        // * a handle of `into_raw`.
        assert_eq!(unsafe { c_abi::enter(co.into_raw().as_ptr(), code) }, 0);
    };
    for (how, first_enter) in [("Rust", &rust_enter as &dyn Fn(Coroutine)), ("C", &c_enter)] {
        let (before, warm, after) = yield_then_enter_elsewhere(first_enter);
        assert!(
            same_stack(before, after),
            "yielded under the {how} enter: moved stacks"
        );
        assert!(!same_stack(after, warm));
    }

    // An unpooled coroutine (and one of another stack size) keeps its own.
    for other in [
        Builder::new().pooled(false),
        Builder::new().mutex_pool(),
        Builder::new().stack_size(128 * 1024),
    ] {
        let to_t = to.clone();
        let co = reporting(other, &to);
        run_on_new_thread(move || {
            reporting(Builder::new(), &to_t).enter();
            co
        });
        let warm = from.recv().unwrap();
        let ran = from.recv().unwrap();
        assert!(!same_stack(ran, warm), "{other:?} borrowed a stack");
    }
}
