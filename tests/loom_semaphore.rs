//! loom model of the semaphore core (`RawSemaphore`): no lost wake-up, the
//! count never goes below zero, never more holders than permits, and a
//! `release_n` wakes enough sleepers. The futex model (`tests/loom_model`)
//! wakes exactly as many sleepers as asked.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom cargo test --release --test loom_semaphore`
#![cfg(loom)]

mod loom_model;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, Ordering};
use loom_model::{ModelFutex, check};
use multiproc::algo::semaphore::RawSemaphore;

struct Shared {
    count: AtomicU32,
    waiters: AtomicU32,
    futex: ModelFutex,
    /// Threads holding a permit right now.
    inside: AtomicU32,
}

fn shared(permits: u32) -> Arc<Shared> {
    Arc::new(Shared {
        count: AtomicU32::new(permits),
        waiters: AtomicU32::new(0),
        futex: ModelFutex::blocking(),
        inside: AtomicU32::new(0),
    })
}

fn acquire(s: &Shared) {
    assert!(RawSemaphore::acquire(&s.count, &s.waiters, &s.futex, None));
}

fn release(s: &Shared, n: u32, max: u32) {
    RawSemaphore::release(&s.count, &s.waiters, &s.futex, n, max).unwrap();
}

/// Takes a permit, checks that no more than `permits` threads hold one,
/// gives it back.
fn hold(s: &Shared, permits: u32) {
    acquire(s);
    let now = s.inside.fetch_add(1, Ordering::SeqCst) + 1;
    assert!(now <= permits, "{now} holders of {permits} permits");
    s.inside.fetch_sub(1, Ordering::SeqCst);
    release(s, 1, permits);
}

/// An acquirer that may be asleep is woken by a release in another thread
/// (loom fails a model in which every thread is blocked).
#[test]
fn release_wakes_acquirer() {
    check(3, || {
        let s = shared(0);
        let t = {
            let s = s.clone();
            loom::thread::spawn(move || acquire(&s))
        };
        release(&s, 1, 1);
        t.join().unwrap();
        assert_eq!(RawSemaphore::value(&s.count), 0);
        assert_eq!(s.waiters.load(Ordering::SeqCst), 0);
    });
}

/// `release_n(2)` wakes both of two sleeping acquirers, not just one.
#[test]
fn release_n_wakes_two() {
    check(3, || {
        let s = shared(0);
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                loom::thread::spawn(move || acquire(&s))
            })
            .collect();
        release(&s, 2, 2);
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(RawSemaphore::value(&s.count), 0);
        assert_eq!(s.waiters.load(Ordering::SeqCst), 0);
    });
}

/// Three threads share one permit: never two holders at once, nobody stuck,
/// the permit is back at the end.
#[test]
fn one_permit_three_threads() {
    check(3, || {
        let s = shared(1);
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                loom::thread::spawn(move || hold(&s, 1))
            })
            .collect();
        hold(&s, 1);
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(RawSemaphore::value(&s.count), 1);
    });
}

/// Two permits, two threads that each take and give back one twice: never
/// over-admitted, the count never wraps below zero.
#[test]
fn two_permits_two_threads() {
    check(3, || {
        let s = shared(2);
        let t = {
            let s = s.clone();
            loom::thread::spawn(move || {
                hold(&s, 2);
                hold(&s, 2);
            })
        };
        hold(&s, 2);
        hold(&s, 2);
        t.join().unwrap();
        assert_eq!(RawSemaphore::value(&s.count), 2);
    });
}

/// A bounded release racing an acquire and release: exactly one of the two
/// releases into the one-permit semaphore is refused, whatever the order,
/// and the value ends at its bound. `try_acquire` and an expired deadline
/// never block.
#[test]
fn bounded_over_release_race() {
    check(3, || {
        let s = shared(1);
        let t = {
            let s = s.clone();
            loom::thread::spawn(move || {
                // The permit is out only while this thread holds it.
                assert!(RawSemaphore::try_acquire(&s.count));
                RawSemaphore::release(&s.count, &s.waiters, &s.futex, 1, 1).is_err()
            })
        };
        let mine = RawSemaphore::release(&s.count, &s.waiters, &s.futex, 1, 1).is_err();
        let theirs = t.join().unwrap();
        assert!(mine ^ theirs, "refused: mine {mine}, theirs {theirs}");
        assert_eq!(RawSemaphore::value(&s.count), 1);
        let past = std::time::Instant::now();
        assert!(RawSemaphore::acquire(
            &s.count,
            &s.waiters,
            &s.futex,
            Some(past)
        ));
        assert!(!RawSemaphore::acquire(
            &s.count,
            &s.waiters,
            &s.futex,
            Some(past)
        ));
    });
}
