//! loom models of the MPMC ring core (`RawQueue`) and its eventcounts:
//! every item is taken exactly once, slots are never read and written at
//! once (loom's `UnsafeCell` checks that, so a stamp published too weakly
//! fails here), no wake-up is lost (the futex model ignores timeouts, so a
//! lost wake-up is a deadlock), and close lets consumers drain, then report
//! `Closed`.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom cargo test --release --test loom_mpmc`
#![cfg(loom)]

mod loom_model;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::AtomicU64;
use loom_model::{ModelFutex, check};
use multiproc::queue::raw::mpmc::{MpmcState, QueueMemory, RawQueue, SlotMemory};
use multiproc::queue::raw::spsc::{TryPopError, TryPushError};

struct Ring {
    state: MpmcState,
    stamps: Vec<AtomicU64>,
    slots: Vec<UnsafeCell<u32>>,
    futex: ModelFutex,
}

/// Heap memory for the ring, shared by every handle.
#[derive(Clone)]
struct Mem(Arc<Ring>);

// SAFETY: one state, a fixed number of slots and stamps, each access
// bounds-checked by `Vec` indexing; loom's UnsafeCell reports any
// concurrent slot access.
unsafe impl QueueMemory for Mem {
    type Waiter = ModelFutex;

    fn state(&self) -> &MpmcState {
        &self.0.state
    }

    fn capacity(&self) -> usize {
        self.0.slots.len()
    }

    fn waiter(&self) -> &ModelFutex {
        &self.0.futex
    }

    unsafe fn stamp(&self, index: usize) -> &AtomicU64 {
        &self.0.stamps[index]
    }
}

// SAFETY: each slot access is bounds-checked by `Vec` indexing; loom's
// UnsafeCell reports any concurrent slot access.
unsafe impl SlotMemory for Mem {
    type Item = u32;

    unsafe fn write(&self, index: usize, value: u32) {
        // SAFETY: loom's UnsafeCell access; loom itself checks it for races.
        self.0.slots[index].with_mut(|p| unsafe { *p = value });
    }

    unsafe fn read(&self, index: usize) -> u32 {
        // SAFETY: as in `write`.
        self.0.slots[index].with(|p| unsafe { *p })
    }
}

fn ring(capacity: usize) -> RawQueue<Mem> {
    let q = RawQueue::new(Mem(Arc::new(Ring {
        state: MpmcState::new(),
        stamps: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
        slots: (0..capacity).map(|_| UnsafeCell::new(0)).collect(),
        futex: ModelFutex::blocking(),
    })));
    q.init();
    q
}

/// Two producers put two items each into a ring of two with blocking
/// puts; one consumer takes four with blocking gets: every item once, each
/// producer's items in order, nobody left announced.
#[test]
fn two_producers_one_consumer() {
    check(1, || {
        let q = ring(2);
        let ts: Vec<_> = [10, 20]
            .into_iter()
            .map(|base| {
                let q = q.clone();
                loom::thread::spawn(move || {
                    for v in base + 1..=base + 2 {
                        q.put(v, None).unwrap();
                    }
                })
            })
            .collect();
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(q.get(None).unwrap());
        }
        for t in ts {
            t.join().unwrap();
        }
        let from = |b: u32| {
            got.iter()
                .copied()
                .filter(|v| v / 10 == b / 10)
                .collect::<Vec<_>>()
        };
        assert_eq!(from(10), [11, 12]);
        assert_eq!(from(20), [21, 22]);
        assert_eq!(q.try_get(), Err(TryPopError::Empty));
        assert_eq!(q.memory().state().waiters(), (0, 0));
    });
}

/// One producer, two consumers that get until `Closed`: the producer puts
/// two items into a ring of two and closes; each item is taken by
/// exactly one consumer, and both consumers end with `Closed` (the close
/// wakes a sleeper, and nobody reports `Closed` while an item is left).
#[test]
fn one_producer_two_consumers_close_drains() {
    check(1, || {
        let q = ring(2);
        let cs: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                loom::thread::spawn(move || {
                    let mut got = Vec::new();
                    loop {
                        match q.get(None) {
                            Ok(v) => got.push(v),
                            Err(TryPopError::Closed) => return got,
                            Err(TryPopError::Empty) => unreachable!("no deadline"),
                        }
                    }
                })
            })
            .collect();
        for v in 1..=2 {
            q.put(v, None).unwrap();
        }
        q.close();
        assert!(matches!(q.try_put(9), Err(TryPushError::Closed(9))));
        let mut all: Vec<u32> = cs.into_iter().flat_map(|c| c.join().unwrap()).collect();
        all.sort_unstable();
        assert_eq!(all, [1, 2]);
    });
}

/// A producer blocked on a full ring is woken by a close from another
/// handle, which it reports with its value.
#[test]
fn close_wakes_blocked_producer() {
    check(3, || {
        let q = ring(1);
        assert!(q.try_put(1).is_ok());
        let q2 = q.clone();
        let t =
            loom::thread::spawn(move || matches!(q2.put(2, None), Err(TryPushError::Closed(2))));
        q.close();
        assert!(t.join().unwrap());
        assert_eq!(q.try_get(), Ok(1));
        assert_eq!(q.try_get(), Err(TryPopError::Closed));
    });
}

/// Batches: two producers `put_slice` two items each into a ring of two
/// (falling back to blocking puts), one consumer `get_into`s (falling back
/// to blocking gets): every item once, each producer's in order.
#[test]
fn batches() {
    check(1, || {
        let q = ring(2);
        let ts: Vec<_> = [10, 20]
            .into_iter()
            .map(|base| {
                let q = q.clone();
                loom::thread::spawn(move || {
                    let src = [base + 1, base + 2];
                    let mut at = 0;
                    while at < src.len() {
                        match q.put_slice(&src[at..]) {
                            0 => {
                                q.put(src[at], None).unwrap();
                                at += 1;
                            }
                            n => at += n,
                        }
                    }
                })
            })
            .collect();
        let mut got = Vec::new();
        let mut buf = [0; 2];
        while got.len() < 4 {
            match q.get_into(&mut buf) {
                0 => got.push(q.get(None).unwrap()),
                n => got.extend_from_slice(&buf[..n]),
            }
        }
        for t in ts {
            t.join().unwrap();
        }
        let from = |b: u32| {
            got.iter()
                .copied()
                .filter(|v| v / 10 == b / 10)
                .collect::<Vec<_>>()
        };
        assert_eq!(from(10), [11, 12]);
        assert_eq!(from(20), [21, 22]);
    });
}

/// Without concurrency: full hands the value back, empty says so, an
/// expired deadline does not block, wrap-around over several laps.
#[test]
fn try_and_deadline() {
    check(1, || {
        let q = ring(2);
        let past = Some(std::time::Instant::now());
        assert_eq!(q.try_get(), Err(TryPopError::Empty));
        assert_eq!(q.get(past), Err(TryPopError::Empty));
        assert_eq!(q.put_slice(&[1, 2, 3]), 2);
        assert_eq!(q.len(), 2);
        assert!(matches!(q.try_put(4), Err(TryPushError::Full(4))));
        assert!(matches!(q.put(5, past), Err(TryPushError::Full(5))));
        let mut buf = [0; 3];
        assert_eq!(q.get_into(&mut buf), 2);
        assert_eq!(buf[..2], [1, 2]);
        for v in 6..12 {
            assert!(q.try_put(v).is_ok());
            assert_eq!(q.try_get(), Ok(v));
        }
        assert_eq!(q.len(), 0);
    });
}
