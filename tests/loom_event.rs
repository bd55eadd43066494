//! loom model of the event core (`RawEvent`): a set wakes every waiter, no
//! wake-up is lost, and a set quickly followed by a clear still releases
//! whoever was waiting. The futex model (`tests/loom_model`) wakes exactly as
//! many sleepers as asked.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom cargo test --release --test loom_event`
#![cfg(loom)]

mod loom_model;

use std::time::{Duration, Instant};

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, Ordering};
use loom_model::{ModelFutex, check};
use multiproc::algo::event::{RawEvent, SLEEPERS};

struct Shared {
    word: AtomicU32,
    futex: ModelFutex,
    /// Written before `set`, read after `wait`: loom reports a data race if
    /// the set does not publish it.
    data: UnsafeCell<u32>,
}

fn shared(futex: ModelFutex) -> Arc<Shared> {
    Arc::new(Shared {
        word: AtomicU32::new(0),
        futex,
        data: UnsafeCell::new(0),
    })
}

fn spawn_waiter(s: &Arc<Shared>) -> loom::thread::JoinHandle<()> {
    let s = s.clone();
    loom::thread::spawn(move || {
        assert!(RawEvent::wait(&s.word, &s.futex, None));
        // SAFETY: written before the set we just saw; loom checks the order.
        assert_eq!(s.data.with(|p| unsafe { *p }), 7);
    })
}

fn publish_and_set(s: &Shared) {
    // SAFETY: waiters read `data` only after seeing the set below; loom
    // checks the order.
    s.data.with_mut(|p| unsafe { *p = 7 });
    RawEvent::set(&s.word, &s.futex);
}

/// A set in one thread wakes a waiter in another, which then sees what the
/// setter wrote before setting (loom fails a model in which every thread is
/// blocked).
#[test]
fn set_wakes_waiter() {
    check(3, || {
        let s = shared(ModelFutex::blocking());
        let t = spawn_waiter(&s);
        publish_and_set(&s);
        t.join().unwrap();
        assert!(RawEvent::is_set(&s.word));
    });
}

/// One set wakes both of two waiters.
#[test]
fn set_wakes_two_waiters() {
    check(3, || {
        let s = shared(ModelFutex::blocking());
        let ts = [spawn_waiter(&s), spawn_waiter(&s)];
        publish_and_set(&s);
        for t in ts {
            t.join().unwrap();
        }
    });
}

/// A set immediately followed by a clear still releases a waiter that was
/// already waiting (it announced itself as a sleeper), and leaves the flag
/// off. (A waiter that starts only after the clear rightly waits for the next
/// set, so the model waits for the announcement first.)
#[test]
fn set_then_clear_releases_waiter() {
    check(3, || {
        let s = shared(ModelFutex::blocking());
        let t = spawn_waiter(&s);
        while s.word.load(Ordering::SeqCst) & SLEEPERS == 0 {
            loom::thread::yield_now();
        }
        publish_and_set(&s);
        RawEvent::clear(&s.word);
        t.join().unwrap();
        assert!(!RawEvent::is_set(&s.word));
    });
}

/// Timed waits: whenever a timeout fires (the model fires them at any
/// moment), the waiter returns `false` only if the flag was never set before
/// it gave up, and a later `set` does not block on anybody.
#[test]
fn timed_wait_against_set() {
    check(3, || {
        let s = shared(ModelFutex::timing_out());
        let t = {
            let s = s.clone();
            loom::thread::spawn(move || {
                let far = Instant::now() + Duration::from_secs(3600);
                // A far deadline, but the model's timeouts fire anyway: the
                // wait loops until it sees the set.
                RawEvent::wait(&s.word, &s.futex, Some(far))
            })
        };
        RawEvent::set(&s.word, &s.futex);
        assert!(t.join().unwrap());
        // An expired deadline never blocks, set or not.
        let past = Instant::now();
        assert!(RawEvent::wait(&s.word, &s.futex, Some(past)));
        RawEvent::clear(&s.word);
        assert!(!RawEvent::wait(&s.word, &s.futex, Some(past)));
        assert!(!RawEvent::is_set(&s.word));
    });
}
