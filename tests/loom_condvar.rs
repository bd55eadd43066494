//! loom model of the condition variable (`RawCondvar`) with the robust lock:
//! a notification after the waiter released its mutex is never lost.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release --test loom_condvar`
#![cfg(loom)]

mod loom_model;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, AtomicU64};
use loom_model::ModelFutex;
use multiproc::algo::condvar::RawCondvar;
use multiproc::algo::robust::{Liveness, Owner, RobustLock};

struct NoDeaths;

// SAFETY: never reports anyone dead.
unsafe impl Liveness for NoDeaths {
    fn is_dead(&self, _: Owner) -> bool {
        false
    }
}

struct Shared {
    lock: AtomicU64,
    seq: AtomicU32,
    waiters: AtomicU32,
    futex: ModelFutex,
    ready: UnsafeCell<bool>,
}

fn me(tid: u32) -> Owner {
    Owner { tid, stamp: 1 }
}

fn lock(s: &Shared, tid: u32) {
    RobustLock::lock(&s.lock, me(tid), &s.futex, &NoDeaths, None).unwrap();
}

fn unlock(s: &Shared, tid: u32) {
    // SAFETY: this model thread holds the lock here.
    unsafe { RobustLock::unlock(&s.lock, me(tid), &s.futex) };
}

/// The consumer waits until `ready`; the producer sets it under the lock and
/// notifies (after unlocking, or while holding the lock). Waits block, so a
/// lost notification shows as a deadlock.
fn model(notify_under_lock: bool) {
    loom::model(move || {
        let s = Arc::new(Shared {
            lock: AtomicU64::new(0),
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            futex: ModelFutex::blocking(),
            ready: UnsafeCell::new(false),
        });
        let producer = {
            let s = s.clone();
            loom::thread::spawn(move || {
                lock(&s, 2);
                // SAFETY: loom's UnsafeCell access; loom itself checks it for races.
                s.ready.with_mut(|r| unsafe { *r = true });
                if notify_under_lock {
                    RawCondvar::notify(&s.seq, &s.waiters, &s.futex, 1);
                    unlock(&s, 2);
                } else {
                    unlock(&s, 2);
                    RawCondvar::notify(&s.seq, &s.waiters, &s.futex, 1);
                }
            })
        };
        lock(&s, 1);
        // SAFETY: loom's UnsafeCell access; loom itself checks it for races.
        while !s.ready.with(|r| unsafe { *r }) {
            let token = RawCondvar::prepare(&s.seq, &s.waiters);
            unlock(&s, 1);
            RawCondvar::sleep(&s.seq, token, &s.futex, None);
            lock(&s, 1);
            RawCondvar::finish(&s.waiters);
        }
        unlock(&s, 1);
        producer.join().unwrap();
    });
}

#[test]
fn notify_after_unlock() {
    model(false);
}

#[test]
fn notify_under_lock() {
    model(true);
}
