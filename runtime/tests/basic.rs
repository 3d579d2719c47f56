//! QEMU's tests/unit/test-coroutine.c, basic group: one test per case.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use corral_runtime::{current, in_coroutine, yield_now, Coroutine};

/// /basic/no-dangling-access: c1 enters c2, c2 yields, c1 terminates and its
/// body is reused; re-entering c2 must not touch c1's (reused) state.
#[test]
fn no_dangling_access() {
    let c2_slot: Arc<Mutex<Option<Coroutine>>> = Arc::new(Mutex::new(None));
    let c2_done = Arc::new(AtomicBool::new(false));
    let d = c2_done.clone();
    let c2 = Coroutine::new(move || {
        yield_now();
        d.store(true, Ordering::SeqCst);
    });
    *c2_slot.lock().unwrap() = Some(c2);
    let slot = c2_slot.clone();
    let c1 = Coroutine::new(move || {
        let c2 = slot.lock().unwrap().unwrap();
        c2.enter(); // c2 yields back to c1
    });
    c1.enter();
    assert!(c1.is_terminated());
    assert!(!c2.is_terminated());
    // Reuse c1's body (likely the same slot) with a sentinel that must stay untouched.
    let touched = Arc::new(AtomicU32::new(0));
    let t = touched.clone();
    let filler = Coroutine::new(move || {
        t.fetch_add(1, Ordering::SeqCst);
        yield_now();
        t.fetch_add(1, Ordering::SeqCst);
    });
    filler.enter();
    assert_eq!(touched.load(Ordering::SeqCst), 1);
    c2.enter(); // returns to us, not to the dead c1 (whose slot filler holds)
    assert!(c2_done.load(Ordering::SeqCst));
    assert!(c2.is_terminated());
    assert_eq!(
        touched.load(Ordering::SeqCst),
        1,
        "re-entering c2 resumed c1's reused slot"
    );
    filler.enter();
    assert_eq!(touched.load(Ordering::SeqCst), 2);
}

/// /basic/lifecycle: create, enter, terminate, twice in a row (the second
/// reuses the first's body).
#[test]
fn lifecycle() {
    for _ in 0..2 {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let co = Coroutine::new(move || d.store(true, Ordering::SeqCst));
        assert!(!co.is_terminated());
        co.enter();
        assert!(done.load(Ordering::SeqCst));
        assert!(co.is_terminated());
    }
}

/// /basic/yield: yield 5 times; the coroutine is entered exactly 6 times.
#[test]
fn yield_five_times() {
    const MAX: u32 = 5;
    let done = Arc::new(AtomicU32::new(0));
    let d = done.clone();
    let co = Coroutine::new(move || {
        for _ in 0..MAX {
            d.fetch_add(1, Ordering::SeqCst);
            yield_now();
        }
    });
    let mut entries = 0;
    while !co.is_terminated() {
        co.enter();
        entries += 1;
    }
    assert_eq!(done.load(Ordering::SeqCst), MAX);
    assert_eq!(entries, MAX + 1);
}

/// /basic/nesting: depth 128; every level enters the next.
#[test]
fn nesting() {
    const MAX: usize = 128;
    let enters = Arc::new(AtomicUsize::new(0));
    let returns = Arc::new(AtomicUsize::new(0));
    fn nest(level: usize, enters: Arc<AtomicUsize>, returns: Arc<AtomicUsize>) {
        enters.fetch_add(1, Ordering::SeqCst);
        if level < MAX {
            let (e, r) = (enters.clone(), returns.clone());
            let child = Coroutine::new(move || nest(level + 1, e, r));
            child.enter();
            assert!(child.is_terminated());
        }
        returns.fetch_add(1, Ordering::SeqCst);
    }
    let (e, r) = (enters.clone(), returns.clone());
    let root = Coroutine::new(move || nest(1, e, r));
    root.enter();
    assert_eq!(enters.load(Ordering::SeqCst), MAX);
    assert_eq!(returns.load(Ordering::SeqCst), MAX);
}

/// /basic/self: `current()` inside a coroutine is that coroutine.
#[test]
fn self_is_current() {
    let seen: Arc<Mutex<Option<Coroutine>>> = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let co = Coroutine::new(move || *s.lock().unwrap() = current());
    co.enter();
    assert_eq!(*seen.lock().unwrap(), Some(co));
    assert_eq!(current(), None);
}

/// /basic/entered: entered() is true while running, including while
/// suspended in a nested enter, and false once yielded.
#[test]
fn entered() {
    let log: Arc<Mutex<Vec<(&'static str, bool)>>> = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let outer = Coroutine::new(move || {
        let me = current().unwrap();
        l.lock().unwrap().push(("outer self", me.entered()));
        let l2 = l.clone();
        let inner = Coroutine::new(move || {
            l2.lock().unwrap().push(("inner sees outer", me.entered()));
            l2.lock()
                .unwrap()
                .push(("inner self", current().unwrap().entered()));
            yield_now();
        });
        inner.enter();
        l.lock()
            .unwrap()
            .push(("inner after yield", inner.entered()));
        inner.enter();
        yield_now();
    });
    assert!(!outer.entered());
    outer.enter();
    assert!(!outer.entered(), "a yielded coroutine is not entered");
    outer.enter();
    assert!(!outer.entered());
    let log = log.lock().unwrap();
    assert_eq!(
        *log,
        vec![
            ("outer self", true),
            ("inner sees outer", true),
            ("inner self", true),
            ("inner after yield", false)
        ]
    );
}

/// /basic/in_coroutine
#[test]
fn in_coroutine_flag() {
    assert!(!in_coroutine());
    let seen = Arc::new(AtomicBool::new(false));
    let s = seen.clone();
    Coroutine::new(move || s.store(in_coroutine(), Ordering::SeqCst)).enter();
    assert!(seen.load(Ordering::SeqCst));
    assert!(!in_coroutine());
}

/// /basic/order: exact interleaving of enter / yield / terminate records.
#[test]
fn order() {
    let records: Arc<Mutex<Vec<(u32, u32)>>> = Arc::new(Mutex::new(Vec::new()));
    let rec = |r: &Arc<Mutex<Vec<(u32, u32)>>>, func, state| r.lock().unwrap().push((func, state));
    let r = records.clone();
    let co = Coroutine::new(move || {
        rec(&r, 2, 1);
        yield_now();
        rec(&r, 2, 2);
    });
    rec(&records, 1, 1);
    co.enter();
    rec(&records, 1, 2);
    co.enter();
    rec(&records, 1, 3);
    assert_eq!(
        *records.lock().unwrap(),
        vec![(1, 1), (2, 1), (1, 2), (2, 2), (1, 3)]
    );
}

/// A handle crosses threads: a coroutine yielded on one thread is finished
/// on another, and `current()` there is still the same coroutine.
#[test]
fn enter_from_another_thread() {
    let seen: Arc<Mutex<Vec<Option<Coroutine>>>> = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let co = Coroutine::new(move || {
        s.lock().unwrap().push(current());
        yield_now();
        s.lock().unwrap().push(current());
    });
    co.enter();
    std::thread::spawn(move || co.enter()).join().unwrap();
    assert!(co.is_terminated());
    assert_eq!(*seen.lock().unwrap(), vec![Some(co), Some(co)]);
}

/// into_raw / from_raw round-trip, and a stale raw handle is still detected.
#[test]
fn raw_round_trip() {
    let co = Coroutine::new(yield_now);
    co.enter();
    // SAFETY: the word comes from into_raw in this process.
    let back = unsafe { Coroutine::from_raw(co.into_raw()) };
    assert_eq!(back, co);
    back.enter();
    assert!(co.is_terminated());
    let next = Coroutine::new(|| {});
    // SAFETY: as above.
    let stale = unsafe { Coroutine::from_raw(co.into_raw()) };
    assert!(stale.is_terminated());
    next.enter();
}

/// Event-loop and user words start at 0 for every new coroutine.
#[test]
fn words_reset_on_create() {
    let co = Coroutine::new(yield_now);
    co.event_loop_words().scheduled.store(7, Ordering::SeqCst);
    co.user_word().store(9, Ordering::SeqCst);
    co.enter();
    co.enter();
    let next = Coroutine::new(|| {});
    assert_eq!(next.event_loop_words().scheduled.load(Ordering::SeqCst), 0);
    assert_eq!(next.user_word().load(Ordering::SeqCst), 0);
    next.enter();

    // The same for bodies that come from the pool, not the thread's slot:
    // several coroutines alive at once take all but one from the pool.
    let set_words = |co: &Coroutine| {
        co.event_loop_words().home.store(5, Ordering::SeqCst);
        co.event_loop_words().link.store(6, Ordering::SeqCst);
        co.user_word().store(9, Ordering::SeqCst);
    };
    let first: Vec<Coroutine> = (0..8).map(|_| Coroutine::new(yield_now)).collect();
    first.iter().for_each(set_words);
    first.iter().for_each(Coroutine::enter);
    first.iter().for_each(Coroutine::enter);
    let second: Vec<Coroutine> = (0..8).map(|_| Coroutine::new(|| {})).collect();
    for co in &second {
        let w = co.event_loop_words();
        let words = [&w.home, &w.scheduled, &w.link, co.user_word()];
        assert!(words.iter().all(|w| w.load(Ordering::SeqCst) == 0));
    }
    second.iter().for_each(Coroutine::enter);
}

/// Entry closures larger than the inline slot are boxed and still run once;
/// captured values are dropped when the entry has run (nothing leaks).
#[test]
fn large_and_small_entries_run_once_and_drop_their_captures() {
    let token = Arc::new(());
    let big = [3u8; 4 * corral_runtime::INLINE_ENTRY_BYTES];
    let sum = Arc::new(AtomicUsize::new(0));
    let (t, s) = (token.clone(), sum.clone());
    let co = Coroutine::new(move || {
        let _keep = &t;
        s.fetch_add(big.iter().map(|&b| b as usize).sum(), Ordering::SeqCst);
    });
    assert_eq!(Arc::strong_count(&token), 2);
    co.enter();
    assert_eq!(
        sum.load(Ordering::SeqCst),
        3 * 4 * corral_runtime::INLINE_ENTRY_BYTES
    );
    assert_eq!(
        Arc::strong_count(&token),
        1,
        "the boxed entry's captures were dropped"
    );
    let t = token.clone();
    Coroutine::new(move || drop(t)).enter();
    assert_eq!(
        Arc::strong_count(&token),
        1,
        "the inline entry's captures were dropped"
    );
}

/// Both guard kinds, pooled, unpooled and the mutex baseline pool run the
/// same lifecycle.
#[test]
fn every_body_source_runs_the_lifecycle() {
    use corral_runtime::{Builder, GuardKind};
    let mut kinds = vec![GuardKind::Mprotect];
    if corral_runtime::install_supported() {
        kinds.push(GuardKind::Install);
    } else {
        eprintln!("install guard kind not tested: no MADV_GUARD_INSTALL on this kernel");
    }
    for kind in kinds {
        for builder in [
            Builder::new().guard(kind),
            Builder::new().guard(kind).pooled(false),
            Builder::new().guard(kind).mutex_pool(),
            Builder::new().guard(kind).stack_size(64 * 1024),
        ] {
            let steps = Arc::new(AtomicU32::new(0));
            let s = steps.clone();
            let co = builder.spawn(move || {
                s.fetch_add(1, Ordering::SeqCst);
                yield_now();
                s.fetch_add(1, Ordering::SeqCst);
            });
            co.enter();
            assert_eq!(steps.load(Ordering::SeqCst), 1);
            co.enter();
            assert_eq!(steps.load(Ordering::SeqCst), 2, "{builder:?}");
            assert!(co.is_terminated());
        }
    }
}
