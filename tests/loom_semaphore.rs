//! loom model of the semaphore core (`RawSemaphore`): no lost wake-up, the
//! count never goes below zero, never more holders than permits, and a
//! `release_n` wakes enough sleepers. The futex model (`tests/loom_model`)
//! wakes exactly as many sleepers as asked.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom cargo test --release --test loom_semaphore`
#![cfg(loom)]

mod loom_model;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use loom_model::{ModelFutex, check};
use multiproc::algo::semaphore::{RawSemaphore, held_bit};

struct Shared {
    word: AtomicU64,
    waiters: AtomicU32,
    futex: ModelFutex,
    /// Threads holding a permit right now.
    inside: AtomicU32,
}

fn shared(permits: u32) -> Arc<Shared> {
    Arc::new(Shared {
        word: AtomicU64::new(u64::from(permits)),
        waiters: AtomicU32::new(0),
        futex: ModelFutex::blocking(),
        inside: AtomicU32::new(0),
    })
}

fn acquire(s: &Shared) {
    assert!(RawSemaphore::acquire(
        &s.word, &s.waiters, &s.futex, None, 0
    ));
}

fn release(s: &Shared, n: u32, max: u32) {
    RawSemaphore::release(&s.word, &s.waiters, &s.futex, n, max, 0).unwrap();
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
        assert_eq!(RawSemaphore::value(&s.word), 0);
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
        assert_eq!(RawSemaphore::value(&s.word), 0);
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
        assert_eq!(RawSemaphore::value(&s.word), 1);
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
        assert_eq!(RawSemaphore::value(&s.word), 2);
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
                assert!(RawSemaphore::try_acquire(&s.word, 0));
                RawSemaphore::release(&s.word, &s.waiters, &s.futex, 1, 1, 0).is_err()
            })
        };
        let mine = RawSemaphore::release(&s.word, &s.waiters, &s.futex, 1, 1, 0).is_err();
        let theirs = t.join().unwrap();
        assert!(mine ^ theirs, "refused: mine {mine}, theirs {theirs}");
        assert_eq!(RawSemaphore::value(&s.word), 1);
        let past = std::time::Instant::now();
        assert!(RawSemaphore::acquire(
            &s.word,
            &s.waiters,
            &s.futex,
            Some(past),
            0
        ));
        assert!(!RawSemaphore::acquire(
            &s.word,
            &s.waiters,
            &s.futex,
            Some(past),
            0
        ));
    });
}

/// A holder marked in slot 0 "dies" holding its permit of a one-permit
/// bounded semaphore; two survivors race: one sleeps in `acquire` (marked
/// with slot 1), the other takes the dead permit over (to slot 2) and gives
/// it back. Exactly one permit exists throughout: the taker-over and the
/// sleeper never hold at once, the sleeper gets it, the dead bit is gone,
/// and the bound is never passed (a second take-over of the same bit
/// fails).
#[test]
fn dead_holders_permit_is_taken_over_once() {
    check(3, || {
        let s = shared(1);
        // The holder of slot 0 took the only permit, then died.
        assert!(RawSemaphore::try_acquire(&s.word, held_bit(0)));
        let sleeper = {
            let s = s.clone();
            loom::thread::spawn(move || {
                assert!(RawSemaphore::acquire(
                    &s.word,
                    &s.waiters,
                    &s.futex,
                    None,
                    held_bit(1)
                ));
                let now = s.inside.fetch_add(1, Ordering::SeqCst) + 1;
                assert_eq!(now, 1, "two holders of one permit");
                s.inside.fetch_sub(1, Ordering::SeqCst);
            })
        };
        assert!(RawSemaphore::take_over(&s.word, held_bit(0), held_bit(2)));
        assert!(
            !RawSemaphore::take_over(&s.word, held_bit(0), 0),
            "taken over once"
        );
        let now = s.inside.fetch_add(1, Ordering::SeqCst) + 1;
        assert_eq!(now, 1, "two holders of one permit");
        s.inside.fetch_sub(1, Ordering::SeqCst);
        RawSemaphore::release(&s.word, &s.waiters, &s.futex, 1, 1, held_bit(2)).unwrap();
        sleeper.join().unwrap();
        assert_eq!(RawSemaphore::held(&s.word), 0b10, "the sleeper's bit only");
        assert_eq!(RawSemaphore::value(&s.word), 0);
        assert!(
            RawSemaphore::release(&s.word, &s.waiters, &s.futex, 1, 1, held_bit(2)).is_err(),
            "not ours any more"
        );
        RawSemaphore::release(&s.word, &s.waiters, &s.futex, 1, 1, held_bit(1)).unwrap();
        assert_eq!(RawSemaphore::value(&s.word), 1);
        assert_eq!(RawSemaphore::held(&s.word), 0);
    });
}
