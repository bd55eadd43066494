//! loom model of the simple futex lock word (`SimpleLock`), with the futex
//! itself modelled by a mutex and condition variable: a `wait` that checks
//! the word and sleeps atomically with respect to `wake`, as FUTEX_WAIT does.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release --test loom_simple_lock`
#![cfg(loom)]

use std::time::Duration;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU32, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use multiproc::sync::raw::futex::Waiter;
use multiproc::sync::raw::simple_lock::SimpleLock;

/// A futex model: sleepers park on one condition variable; `wait` re-checks
/// the word under the mutex, so a wake after a change is never lost.
#[derive(Default)]
struct ModelFutex {
    m: Mutex<()>,
    cv: Condvar,
}

// SAFETY: `wait` checks the word and parks under `m`, and `wake` notifies
// under `m`: a wake that follows a change of the word cannot slip between the
// check and the park.
unsafe impl Waiter for ModelFutex {
    fn wait(&self, word: &AtomicU32, expected: u32, _timeout: Option<Duration>) {
        let g = self.m.lock().unwrap();
        if word.load(Ordering::SeqCst) != expected {
            return;
        }
        drop(self.cv.wait(g).unwrap());
    }

    fn wake(&self, _word: &AtomicU32, _count: u32) {
        let _g = self.m.lock().unwrap();
        self.cv.notify_all();
    }
}

struct Shared {
    word: AtomicU32,
    futex: ModelFutex,
    data: UnsafeCell<u32>,
}

fn increment(s: &Shared) {
    assert!(SimpleLock::lock(&s.word, &s.futex, None));
    // loom reports a data race here if the lock ever lets two threads in.
    s.data.with_mut(|p| unsafe { *p += 1 });
    unsafe { SimpleLock::unlock(&s.word, &s.futex) };
}

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        word: AtomicU32::new(0),
        futex: ModelFutex::default(),
        data: UnsafeCell::new(0),
    })
}

/// Two lockers: mutual exclusion, no lost wake-up (loom fails a model in
/// which every thread is blocked), final count exact.
#[test]
fn two_threads_exclusion_and_wakeup() {
    loom::model(|| {
        let s = shared();
        let t = {
            let s = s.clone();
            loom::thread::spawn(move || increment(&s))
        };
        increment(&s);
        t.join().unwrap();
        assert_eq!(s.data.with(|p| unsafe { *p }), 2);
        assert!(!SimpleLock::is_locked(&s.word));
    });
}

/// Three lockers, so a sleeper can be woken while another spins: the state
/// word must still end up unlocked with every increment done.
#[test]
fn three_threads() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(|| {
        let s = shared();
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                loom::thread::spawn(move || increment(&s))
            })
            .collect();
        increment(&s);
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(s.data.with(|p| unsafe { *p }), 3);
        assert!(!SimpleLock::is_locked(&s.word));
    });
}

/// `try_lock` never succeeds while another thread holds the lock, and a lock
/// with an expired deadline gives up without corrupting the word.
#[test]
fn try_lock_and_expired_deadline() {
    loom::model(|| {
        let s = shared();
        let t = {
            let s = s.clone();
            loom::thread::spawn(move || {
                if SimpleLock::try_lock(&s.word) {
                    s.data.with_mut(|p| unsafe { *p += 1 });
                    unsafe { SimpleLock::unlock(&s.word, &s.futex) };
                }
                // A deadline already past: either gets the lock at once or
                // gives up; never blocks.
                let past = std::time::Instant::now();
                if SimpleLock::lock(&s.word, &s.futex, Some(past)) {
                    s.data.with_mut(|p| unsafe { *p += 1 });
                    unsafe { SimpleLock::unlock(&s.word, &s.futex) };
                }
            })
        };
        increment(&s);
        t.join().unwrap();
        // The main thread's increment always lands; the other's may not.
        let n = s.data.with(|p| unsafe { *p });
        assert!((1..=3).contains(&n));
        // Whatever happened, the lock can be taken again.
        assert!(SimpleLock::try_lock(&s.word));
    });
}
