//! Parity with the locking cases of QEMU's tests/unit/test-coroutine.c (plus the semaphore
//! and CoQueue::restart_all), driven by one context on the test thread.

use corral_aio::{AioContext, CoMutex, CoQueue, CoRwLock, CoSemaphore};
use corral_runtime::{yield_now, Coroutine};
use std::sync::{Arc, Mutex};

type Log = Arc<Mutex<Vec<&'static str>>>;

fn log(l: &Log, s: &'static str) {
    l.lock().unwrap().push(s);
}

fn drain(ctx: &AioContext) {
    while ctx.poll(false) {}
}

/// /locking/co-mutex: the second locker waits, gets the lock handed over when the first
/// unlocks, and uncontended lock/unlock works outside any wait.
#[test]
fn co_mutex() {
    let ctx = AioContext::new().unwrap();
    let m = Arc::new(CoMutex::new(0u32));
    let l: Log = Arc::default();
    // Locks, logs, yields once holding the lock, then adds one and unlocks.
    let locker = |locked: &'static str, unlocks: &'static str| {
        let (m, l) = (m.clone(), l.clone());
        Coroutine::new(move || {
            let mut g = m.lock();
            log(&l, locked);
            yield_now();
            *g += 1;
            log(&l, unlocks);
        })
    };
    let c1 = locker("c1 locked", "c1 unlocks");
    let c2 = locker("c2 locked", "c2 unlocks");
    ctx.co_enter(c1);
    ctx.co_enter(c2);
    assert_eq!(*l.lock().unwrap(), ["c1 locked"], "c2 must wait");
    assert!(m.try_lock().is_none());
    ctx.co_enter(c1);
    assert!(c1.is_terminated());
    drain(&ctx);
    assert_eq!(*l.lock().unwrap(), ["c1 locked", "c1 unlocks", "c2 locked"]);
    ctx.co_enter(c2);
    assert!(c2.is_terminated());
    assert_eq!(*m.try_lock().expect("free again"), 2);
}

/// Waiters get the lock in arrival order.
#[test]
fn co_mutex_is_fifo() {
    let ctx = AioContext::new().unwrap();
    let m = Arc::new(CoMutex::new(Vec::new()));
    let holder = {
        let m = m.clone();
        Coroutine::new(move || {
            let g = m.lock();
            yield_now();
            drop(g);
        })
    };
    ctx.co_enter(holder);
    let waiters: Vec<Coroutine> = (0..8)
        .map(|i| {
            let m = m.clone();
            Coroutine::new(move || m.lock().push(i))
        })
        .collect();
    for &w in &waiters {
        ctx.co_enter(w);
    }
    ctx.co_enter(holder);
    while !waiters.iter().all(|w| w.is_terminated()) {
        ctx.poll(true);
    }
    assert_eq!(*m.try_lock().unwrap(), (0..8).collect::<Vec<_>>());
}

/// /locking/co-rwlock/upgrade: a sole reader upgrading queues behind a waiting writer.
#[test]
fn co_rwlock_upgrade() {
    let ctx = AioContext::new().unwrap();
    let rw = Arc::new(CoRwLock::new(()));
    let l: Log = Arc::default();
    let (rw1, l1) = (rw.clone(), l.clone());
    let c1 = Coroutine::new(move || {
        let r = rw1.read();
        log(&l1, "c1 read");
        yield_now();
        let w = r.upgrade();
        log(&l1, "c1 upgraded");
        drop(w);
    });
    let (rw2, l2) = (rw.clone(), l.clone());
    let c2 = Coroutine::new(move || {
        let w = rw2.write();
        log(&l2, "c2 write");
        yield_now();
        drop(w);
        log(&l2, "c2 unlocked");
    });
    ctx.co_enter(c1);
    ctx.co_enter(c2); // queues: c1 reads
    assert_eq!(*l.lock().unwrap(), ["c1 read"]);
    ctx.co_enter(c1); // upgrade: gives up the read lock, queues behind c2
    assert!(!c1.is_terminated());
    drain(&ctx);
    assert_eq!(*l.lock().unwrap(), ["c1 read", "c2 write"]);
    ctx.co_enter(c2);
    drain(&ctx);
    assert!(c1.is_terminated() && c2.is_terminated());
    assert_eq!(
        *l.lock().unwrap(),
        ["c1 read", "c2 write", "c2 unlocked", "c1 upgraded"]
    );
}

/// A sole reader with nobody queued upgrades at once.
#[test]
fn co_rwlock_upgrade_uncontended() {
    let ctx = AioContext::new().unwrap();
    let rw = Arc::new(CoRwLock::new(1));
    let rw1 = rw.clone();
    let co = Coroutine::new(move || {
        let r = rw1.read();
        let mut w = r.upgrade();
        *w += 1;
    });
    ctx.co_enter(co);
    assert!(co.is_terminated());
    let rw2 = rw.clone();
    let check = Coroutine::new(move || assert_eq!(*rw2.read(), 2));
    ctx.co_enter(check);
    assert!(check.is_terminated());
}

/// /locking/co-rwlock/downgrade: a writer downgrading admits the readers queued ahead of
/// the next writer, not the ones behind it.
#[test]
fn co_rwlock_downgrade() {
    let ctx = AioContext::new().unwrap();
    let rw = Arc::new(CoRwLock::new(0));
    let l: Log = Arc::default();
    let (rw1, l1) = (rw.clone(), l.clone());
    let c1 = Coroutine::new(move || {
        let mut w = rw1.write();
        *w = 1;
        log(&l1, "c1 write");
        yield_now();
        let r = w.downgrade();
        log(&l1, "c1 downgraded");
        yield_now();
        drop(r);
    });
    let reader = |name: &'static str| {
        let (rw, l) = (rw.clone(), l.clone());
        Coroutine::new(move || {
            let r = rw.read();
            assert_eq!(*r, 1);
            log(&l, name);
            yield_now();
        })
    };
    let c2 = reader("c2 read");
    let c3 = reader("c3 read");
    let (rw4, l4) = (rw.clone(), l.clone());
    let c4 = Coroutine::new(move || {
        let _w = rw4.write();
        log(&l4, "c4 write");
    });
    let c5 = reader("c5 read");
    for co in [c1, c2, c3, c4, c5] {
        ctx.co_enter(co);
    }
    assert_eq!(*l.lock().unwrap(), ["c1 write"]);
    ctx.co_enter(c1); // downgrade
    drain(&ctx);
    assert_eq!(
        *l.lock().unwrap(),
        ["c1 write", "c1 downgraded", "c2 read", "c3 read"]
    );
    // Readers and c1 release; then c4 writes, then c5 reads.
    for co in [c1, c2, c3] {
        ctx.co_enter(co);
    }
    drain(&ctx);
    assert_eq!(
        *l.lock().unwrap(),
        [
            "c1 write",
            "c1 downgraded",
            "c2 read",
            "c3 read",
            "c4 write",
            "c5 read"
        ]
    );
    ctx.co_enter(c5);
    assert!([c1, c2, c3, c4, c5].iter().all(|c| c.is_terminated()));
}

/// A counting semaphore never admits more holders than permits.
#[test]
fn co_semaphore() {
    let ctx = AioContext::new().unwrap();
    let sem = Arc::new(CoSemaphore::new(2));
    let gate = Arc::new(CoQueue::new());
    let inside = Arc::new(Mutex::new((0usize, 0usize))); // (now, max)
    let cos: Vec<Coroutine> = (0..6)
        .map(|_| {
            let (sem, gate, inside) = (sem.clone(), gate.clone(), inside.clone());
            Coroutine::new(move || {
                sem.acquire();
                {
                    let mut i = inside.lock().unwrap();
                    i.0 += 1;
                    i.1 = i.1.max(i.0);
                }
                gate.wait();
                inside.lock().unwrap().0 -= 1;
                sem.release();
            })
        })
        .collect();
    for &c in &cos {
        ctx.co_enter(c);
    }
    assert_eq!(sem.available(), 0);
    assert!(!sem.try_acquire());
    let mut rounds = 0;
    loop {
        drain(&ctx);
        if cos.iter().all(|c| c.is_terminated()) {
            break;
        }
        assert!(gate.restart_all() <= 2);
        rounds += 1;
        assert!(rounds < 100, "semaphore waiters stuck");
    }
    assert_eq!(
        inside.lock().unwrap().1,
        2,
        "never more than 2 inside, and 2 at a time"
    );
    assert_eq!(sem.available(), 2);
}

/// CoQueue::restart_all wakes every waiter.
#[test]
fn co_queue_restart_all() {
    let ctx = AioContext::new().unwrap();
    let q = Arc::new(CoQueue::new());
    let cos: Vec<Coroutine> = (0..5)
        .map(|_| {
            let q = q.clone();
            Coroutine::new(move || q.wait())
        })
        .collect();
    for &c in &cos {
        ctx.co_enter(c);
    }
    assert!(!q.is_empty());
    assert_eq!(q.restart_all(), 5);
    assert!(q.is_empty());
    assert!(!q.next());
    drain(&ctx);
    assert!(cos.iter().all(|c| c.is_terminated()));
}
