//! loom models of the robust lock word (`RobustLock`): mutual exclusion, no
//! lost wake-up, and recovery from an owner that dies holding the lock.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release --test loom_robust`
#![cfg(loom)]

mod loom_model;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use loom_model::{ModelFutex, check};
use multiproc::algo::robust::{Liveness, Locked, Owner, RobustLock};

/// Owners 1..=3 are threads of the model; `dead[tid]` says which have died.
struct Deaths {
    dead: [AtomicBool; 4],
}

impl Deaths {
    fn new() -> Self {
        Deaths {
            dead: [(); 4].map(|()| AtomicBool::new(false)),
        }
    }
}

// SAFETY: an owner is reported dead only after its model thread said so and
// stopped touching the lock.
unsafe impl Liveness for Deaths {
    fn is_dead(&self, owner: Owner) -> bool {
        self.dead[owner.tid as usize].load(Ordering::SeqCst)
    }
}

fn me(tid: u32) -> Owner {
    Owner { tid, stamp: 7 }
}

struct Shared {
    word: AtomicU64,
    futex: ModelFutex,
    deaths: Deaths,
    /// Two halves that a holder keeps equal; a dying holder leaves them apart.
    data: UnsafeCell<[u32; 2]>,
}

fn shared(futex: ModelFutex) -> Arc<Shared> {
    Arc::new(Shared {
        word: AtomicU64::new(0),
        futex,
        deaths: Deaths::new(),
        data: UnsafeCell::new([0, 0]),
    })
}

fn lock(s: &Shared, tid: u32) -> Locked {
    RobustLock::lock(&s.word, me(tid), &s.futex, &s.deaths, None).expect("no deadline")
}

fn increment(s: &Shared, tid: u32) {
    assert_eq!(lock(s, tid), Locked::Clean);
    // loom reports a data race here if two holders ever overlap.
    // SAFETY: loom's UnsafeCell access; loom itself checks it for races.
    s.data.with_mut(|p| unsafe {
        (*p)[0] += 1;
        (*p)[1] += 1;
    });
    // SAFETY: this model thread holds the lock here.
    unsafe { RobustLock::unlock(&s.word, me(tid), &s.futex) };
}

/// Two lockers, waits blocking: exclusion, no lost wake-up, exact count.
#[test]
fn two_threads_exclusion_and_wakeup() {
    loom::model(|| {
        let s = shared(ModelFutex::blocking());
        let t = {
            let s = s.clone();
            loom::thread::spawn(move || increment(&s, 2))
        };
        increment(&s, 1);
        t.join().unwrap();
        // SAFETY: loom's UnsafeCell access; loom itself checks it for races.
        assert_eq!(s.data.with(|p| unsafe { *p }), [2, 2]);
        assert_eq!(RobustLock::owner(&s.word), None);
    });
}

/// Three lockers, waits blocking.
#[test]
fn three_threads() {
    check(2, || {
        let s = shared(ModelFutex::blocking());
        let ts: Vec<_> = (2..=3)
            .map(|tid| {
                let s = s.clone();
                loom::thread::spawn(move || increment(&s, tid))
            })
            .collect();
        increment(&s, 1);
        for t in ts {
            t.join().unwrap();
        }
        // SAFETY: loom's UnsafeCell access; loom itself checks it for races.
        assert_eq!(s.data.with(|p| unsafe { *p }), [3, 3]);
        assert_eq!(RobustLock::owner(&s.word), None);
    });
}

/// A survivor: locks, repairs torn data if the lock said the owner died,
/// marks consistent, increments, unlocks. Returns how it got the lock.
fn survive(s: &Shared, tid: u32) -> Locked {
    let how = lock(s, tid);
    // SAFETY: loom's UnsafeCell access; loom itself checks it for races.
    s.data.with_mut(|p| unsafe {
        if (*p)[0] != (*p)[1] {
            assert_eq!(how, Locked::OwnerDied, "torn data reported clean");
            (*p)[1] = (*p)[0];
        }
        (*p)[0] += 1;
        (*p)[1] += 1;
    });
    if how == Locked::OwnerDied {
        // SAFETY: this model thread holds the lock here.
        unsafe { RobustLock::mark_consistent(&s.word) };
    }
    // SAFETY: this model thread holds the lock here.
    unsafe { RobustLock::unlock(&s.word, me(tid), &s.futex) };
    how
}

/// An owner dies mid-update (locks, writes half, "dies" without unlocking)
/// while another thread waits for the lock: the survivor gets it with
/// `OwnerDied`, whatever the interleaving, and nobody hangs.
#[test]
fn owner_death_is_recovered() {
    loom::model(|| {
        let s = shared(ModelFutex::timing_out());
        let dying = {
            let s = s.clone();
            loom::thread::spawn(move || {
                assert_eq!(lock(&s, 1), Locked::Clean);
                // SAFETY: loom's UnsafeCell access; loom itself checks it for races.
                s.data.with_mut(|p| unsafe { (*p)[0] += 1 });
                s.deaths.dead[1].store(true, Ordering::SeqCst);
            })
        };
        let how = survive(&s, 2);
        dying.join().unwrap();
        // Either the survivor came first (clean; the dying thread then tore
        // the data and still holds the lock) or after the death (it was told,
        // repaired, and released a consistent lock).
        // SAFETY: loom's UnsafeCell access; loom itself checks it for races.
        let data = s.data.with(|p| unsafe { *p });
        match how {
            Locked::Clean => {
                assert_eq!(data, [2, 1]);
                assert_eq!(RobustLock::owner(&s.word), Some(me(1)));
            }
            Locked::OwnerDied => {
                assert_eq!(data, [2, 2]);
                assert_eq!(RobustLock::owner(&s.word), None);
                assert!(!RobustLock::is_poisoned(&s.word));
            }
        }
    });
}

/// Two survivors race over a word whose owner is already dead: exactly one
/// takes it over with `OwnerDied`; after it marks the data consistent, the
/// other gets the lock clean.
#[test]
fn takeover_happens_once() {
    loom::model(|| {
        let s = shared(ModelFutex::timing_out());
        s.word.store(me(1).bits(), Ordering::SeqCst);
        s.deaths.dead[1].store(true, Ordering::SeqCst);
        // SAFETY: loom's UnsafeCell access; loom itself checks it for races.
        s.data.with_mut(|p| unsafe { *p = [1, 0] });
        let t = {
            let s = s.clone();
            loom::thread::spawn(move || survive(&s, 3))
        };
        let mine = survive(&s, 2);
        let theirs = t.join().unwrap();
        let died = [mine, theirs]
            .iter()
            .filter(|h| **h == Locked::OwnerDied)
            .count();
        assert_eq!(died, 1, "{mine:?} {theirs:?}");
        // SAFETY: loom's UnsafeCell access; loom itself checks it for races.
        assert_eq!(s.data.with(|p| unsafe { *p }), [3, 3]);
        assert!(!RobustLock::is_poisoned(&s.word));
        assert_eq!(RobustLock::owner(&s.word), None);
    });
}

/// Without `mark_consistent`, the mark survives unlocks: the next locker
/// hears of the death too.
#[test]
fn unrepaired_death_is_reported_again() {
    loom::model(|| {
        let s = shared(ModelFutex::timing_out());
        s.word.store(me(1).bits(), Ordering::SeqCst);
        s.deaths.dead[1].store(true, Ordering::SeqCst);
        assert_eq!(lock(&s, 2), Locked::OwnerDied);
        // SAFETY: this model thread holds the lock here.
        unsafe { RobustLock::unlock(&s.word, me(2), &s.futex) };
        assert!(RobustLock::is_poisoned(&s.word));
        assert_eq!(
            RobustLock::try_lock(&s.word, me(3)),
            Some(Locked::OwnerDied)
        );
        // SAFETY: this model thread holds the lock here.
        unsafe { RobustLock::mark_consistent(&s.word) };
        // SAFETY: this model thread holds the lock here.
        unsafe { RobustLock::unlock(&s.word, me(3), &s.futex) };
        assert_eq!(RobustLock::try_lock(&s.word, me(2)), Some(Locked::Clean));
    });
}
