//! Misuse is a clean panic with a clear message; a panic inside a coroutine
//! resurfaces in its enterer with the original payload.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use corral_runtime::{current, yield_now, Coroutine};

#[test]
#[should_panic(expected = "coroutine re-entered recursively")]
fn reentering_a_running_coroutine_panics() {
    let co = Coroutine::new(|| current().unwrap().enter());
    co.enter();
}

#[test]
#[should_panic(expected = "coroutine entered after it terminated")]
fn entering_a_terminated_coroutine_panics() {
    let co = Coroutine::new(|| {});
    co.enter();
    co.enter();
}

#[test]
#[should_panic(expected = "coroutine entered after it terminated")]
fn stale_handle_after_reuse_panics() {
    let old = Coroutine::new(|| {});
    old.enter();
    let new = Coroutine::new(yield_now); // likely the same body
    new.enter();
    let res = catch_unwind(AssertUnwindSafe(|| old.enter()));
    new.enter(); // the new coroutine was not disturbed
    assert!(new.is_terminated());
    std::panic::resume_unwind(res.unwrap_err());
}

#[test]
#[should_panic(expected = "yield outside a coroutine")]
fn yield_outside_panics() {
    yield_now();
}

#[derive(Debug, PartialEq)]
struct Payload(u64, &'static str);

#[test]
fn panic_resurfaces_with_payload_and_body_is_reused() {
    let co = Coroutine::new(|| std::panic::panic_any(Payload(42, "boom")));
    let err = catch_unwind(AssertUnwindSafe(|| co.enter())).unwrap_err();
    assert_eq!(err.downcast_ref::<Payload>(), Some(&Payload(42, "boom")));
    assert!(co.is_terminated());
    // The pool still works, and the body that panicked runs the next entry.
    let out = Arc::new(Mutex::new(0));
    let o = out.clone();
    let next = Coroutine::new(move || {
        yield_now();
        *o.lock().unwrap() = 7;
    });
    next.enter();
    next.enter();
    assert_eq!(*out.lock().unwrap(), 7);
}

/// Unpooled and mutex-pool bodies carry a panic out the same way, and the
/// panicking body's payload slot does not leak into the next coroutine.
#[test]
fn panic_resurfaces_from_every_body_source() {
    use corral_runtime::Builder;
    for builder in [
        Builder::new().pooled(false),
        Builder::new().mutex_pool(),
        Builder::new(),
    ] {
        let co = builder.spawn(|| std::panic::panic_any(Payload(7, "unpooled")));
        let err = catch_unwind(AssertUnwindSafe(|| co.enter())).unwrap_err();
        assert_eq!(err.downcast_ref::<Payload>(), Some(&Payload(7, "unpooled")));
        assert!(co.is_terminated());
        let next = builder.spawn(|| {});
        next.enter();
        assert!(next.is_terminated(), "{builder:?}");
    }
}

#[test]
fn panic_through_nested_coroutines() {
    let outer = Coroutine::new(|| {
        let inner = Coroutine::new(|| panic!("inner failed"));
        inner.enter();
        unreachable!("the inner panic unwinds through the outer coroutine");
    });
    let err = catch_unwind(AssertUnwindSafe(|| outer.enter())).unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"inner failed"));
    assert!(outer.is_terminated());
}

#[test]
fn try_forms_report_instead_of_panicking() {
    use corral_runtime::{try_yield_now, EnterError, NotInCoroutine};
    assert_eq!(try_yield_now(), Err(NotInCoroutine));
    let inner_result = Arc::new(Mutex::new(None));
    let r = inner_result.clone();
    let co = Coroutine::new(move || {
        *r.lock().unwrap() = Some(current().unwrap().try_enter());
        try_yield_now().unwrap();
    });
    assert_eq!(co.try_enter(), Ok(()));
    assert_eq!(
        *inner_result.lock().unwrap(),
        Some(Err(EnterError::Running))
    );
    assert_eq!(co.try_enter(), Ok(()));
    assert_eq!(co.try_enter(), Err(EnterError::Terminated));
    assert_eq!(
        EnterError::Terminated.to_string(),
        "coroutine entered after it terminated"
    );
}
