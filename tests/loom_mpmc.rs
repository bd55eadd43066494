//! loom models of the MPMC ring core (`RawQueue`) and its eventcounts:
//! every item is taken exactly once, slots are never read and written at
//! once (loom's `UnsafeCell` checks that, so a stamp published too weakly
//! fails here), no wake-up is lost (the futex model ignores timeouts, so a
//! lost wake-up is a deadlock), and close lets consumers drain, then report
//! `Closed`, and no put succeeds once `Closed` was reported; a
//! `JoinableQueue`'s census-and-takers truth never misses a task. A thread that
//! dies inside a put or get (it panics in the slot closure, then is marked
//! dead) blocks nobody: consumers skip a dead producer's position,
//! producers free a dead consumer's slot and count it lost, and exactly one
//! of two racing recoverers wins. The death models use the futex whose
//! timed waits return at once: sleepers poll for dead claimants.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom cargo test --release --test loom_mpmc`
#![cfg(loom)]

mod loom_model;

use std::panic::{AssertUnwindSafe, catch_unwind, panic_any};

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use loom_model::{ModelFutex, check};
use multiproc::algo::mpmc::{MpmcState, QueueMemory, RawQueue, SlotMemory};
use multiproc::algo::robust::Owner;
use multiproc::algo::spsc::{TryPopError, TryPushError};

struct Ring {
    state: MpmcState,
    stamps: Vec<AtomicU64>,
    slots: Vec<UnsafeCell<u32>>,
    futex: ModelFutex,
    /// Bit `t`: the thread with id `t` died (it does nothing after).
    dead: AtomicU32,
}

/// Heap memory for the ring, shared by every handle, and the identity of
/// the thread that uses this handle (0: anonymous, never dead).
#[derive(Clone)]
struct Mem(Arc<Ring>, u32);

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

    fn me(&self) -> Owner {
        Owner {
            tid: self.1,
            stamp: 1,
        }
    }

    fn is_dead(&self, owner: Owner) -> bool {
        owner.tid < 32 && self.0.dead.load(Ordering::SeqCst) & (1 << owner.tid) != 0
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
    ring_with(capacity, ModelFutex::blocking())
}

fn ring_with(capacity: usize, futex: ModelFutex) -> RawQueue<Mem> {
    let q = RawQueue::new(Mem(
        Arc::new(Ring {
            state: MpmcState::new(),
            stamps: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            slots: (0..capacity).map(|_| UnsafeCell::new(0)).collect(),
            futex,
            dead: AtomicU32::new(0),
        }),
        0,
    ));
    q.init();
    q
}

/// A handle on the same ring for the thread with id `tid` (1..32).
fn handle(q: &RawQueue<Mem>, tid: u32) -> RawQueue<Mem> {
    RawQueue::new(Mem(q.memory().0.clone(), tid))
}

/// The panic payload a thread "dies" with, in the middle of an operation.
struct Died;

/// Runs `op`, in which the thread dies (`panic_any(Died)` after its claim,
/// in the slot closure); then marks the thread `tid` dead: like a process
/// killed there, it leaves its claim and does nothing more.
fn die_inside(q: &RawQueue<Mem>, tid: u32, op: impl FnOnce()) {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<Died>().is_none() {
                prev(info);
            }
        }));
    });
    let died = catch_unwind(AssertUnwindSafe(op)).is_err();
    assert!(died, "the operation finished instead of dying inside");
    q.memory().0.dead.fetch_or(1 << tid, Ordering::SeqCst);
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

/// A producer blocked on a full ring of one while the consumer takes the
/// item: the consumer wakes `writable` once it has claimed the item (before
/// it frees the slot), the producer then waits on `released` for the
/// slot's release, which the consumer wakes after freeing it. Without
/// either wake some schedule deadlocks.
#[test]
fn producer_waits_out_a_reader() {
    check(3, || {
        let q = ring(1);
        assert!(q.try_put(1).is_ok());
        let p = {
            let q = q.clone();
            loom::thread::spawn(move || q.put(2, None).unwrap())
        };
        // Let the producer announce itself first (loom does not run a
        // spinning thread on while another can run, so without this the
        // producer would never sleep before the get).
        while q.memory().state().waiters().1 == 0 {
            loom::thread::yield_now();
        }
        assert_eq!(q.get(None), Ok(1));
        assert_eq!(q.get(None), Ok(2));
        p.join().unwrap();
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

/// A producer dies inside its put (after claiming position 0); another
/// producer puts 2; a consumer gets 2: it skipped the dead claim, whether
/// it found it before or after the death. Nothing is counted lost, and the
/// ring works on afterwards.
#[test]
fn dead_producer_is_skipped() {
    check(2, || {
        let q = ring_with(2, ModelFutex::timing_out());
        let a = handle(&q, 1);
        let dier = loom::thread::spawn(move || {
            die_inside(&a, 1, || {
                let _ = a.try_put_with(1, |_, _, _| panic_any(Died));
            });
        });
        let b = handle(&q, 2);
        let producer = loom::thread::spawn(move || b.put(2, None).unwrap());
        let c = handle(&q, 3);
        assert_eq!(c.get(None), Ok(2));
        dier.join().unwrap();
        producer.join().unwrap();
        assert_eq!(c.lost(), 0);
        assert_eq!(c.try_get(), Err(TryPopError::Empty));
        assert!(c.try_put(3).is_ok());
        assert_eq!(c.try_get(), Ok(3));
    });
}

/// A consumer dies inside its get of item 1 in a ring of one; a producer
/// blocked on the full ring (or arriving later) frees the slot, counts one
/// lost item and puts 2, which the next get returns.
#[test]
fn dead_consumer_is_freed_and_counted() {
    check(2, || {
        let q = ring_with(1, ModelFutex::timing_out());
        assert!(q.try_put(1).is_ok());
        let a = handle(&q, 1);
        let dier = loom::thread::spawn(move || {
            die_inside(&a, 1, || {
                let _ = a.try_get_with(|_, _| -> u32 { panic_any(Died) });
            });
        });
        let b = handle(&q, 2);
        b.put(2, None).unwrap();
        dier.join().unwrap();
        assert_eq!(b.lost(), 1);
        assert_eq!(b.try_get(), Ok(2));
        assert_eq!(b.try_get(), Err(TryPopError::Empty));
    });
}

/// Two consumers race to skip the same dead producer's claim: each item
/// put after it is taken exactly once.
#[test]
fn racing_recoverers() {
    check(1, || {
        let q = ring_with(2, ModelFutex::timing_out());
        let a = handle(&q, 1);
        die_inside(&a, 1, || {
            let _ = a.try_put_with(1, |_, _, _| panic_any(Died));
        });
        assert!(q.try_put(5).is_ok());
        let cs: Vec<_> = [2, 3]
            .into_iter()
            .map(|tid| {
                let c = handle(&q, tid);
                loom::thread::spawn(move || c.get(None).unwrap())
            })
            .collect();
        let p = handle(&q, 4);
        p.put(6, None).unwrap();
        let mut got: Vec<u32> = cs.into_iter().map(|c| c.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, [5, 6]);
        assert_eq!(q.lost(), 0);
    });
}

/// A put racing a close: if the put succeeded, a consumer gets its item
/// before `Closed`; if not, it reports `Closed`, and the consumer sees
/// `Closed` with nothing before it.
#[test]
fn close_races_a_put() {
    check(3, || {
        let q = ring(2);
        let p = handle(&q, 1);
        let producer = loom::thread::spawn(move || p.try_put(1).is_ok());
        let x = handle(&q, 2);
        let closer = loom::thread::spawn(move || x.close());
        closer.join().unwrap();
        let mut got = Vec::new();
        loop {
            match q.get(None) {
                Ok(v) => got.push(v),
                Err(TryPopError::Closed) => break,
                Err(TryPopError::Empty) => unreachable!("no deadline"),
            }
        }
        let put = producer.join().unwrap();
        assert_eq!(got, if put { vec![1] } else { vec![] });
    });
}

/// Linearizability of the non-blocking calls (crossbeam's `linearizable`
/// scenario): two threads each `try_put` then `try_get` on a ring of two.
/// Each get comes after its own put completed, so neither may find the
/// ring empty, even while the other thread's put holds an earlier position
/// claimed but not yet written.
#[test]
fn try_get_after_own_try_put_is_never_empty() {
    check(2, || {
        let q = ring(2);
        let other = handle(&q, 2);
        let t = loom::thread::spawn(move || {
            other.try_put(20).expect("room for both");
            other.try_get().expect("our own put completed")
        });
        let me = handle(&q, 1);
        me.try_put(10).expect("room for both");
        let mine = me.try_get().expect("our own put completed");
        let theirs = t.join().unwrap();
        let mut got = [mine, theirs];
        got.sort_unstable();
        assert_eq!(got, [10, 20]);
    });
}

/// Nobody dies (for the takers' table).
struct NobodyDies;

// SAFETY: never reports dead.
unsafe impl multiproc::algo::robust::Liveness for NobodyDies {
    fn is_dead(&self, _: Owner) -> bool {
        false
    }
}

/// `JoinableQueue`'s truth (issue 16, item 1): a census of the ring plus
/// the takers' table, against a producer that counts and puts, and a
/// consumer that takes (raising its taker count inside the claim), works
/// and marks the task done. Once the put returned, the truth never says
/// "nothing unfinished" before the task is done, and when it says so the
/// consumer's work is visible. (It fails if the taker count is raised after
/// the get returns instead of inside the claim.) The truth reads no live
/// count, so a producer that counted and died before claiming cannot
/// raise it.
#[test]
fn joinable_truth_never_misses_a_task() {
    use multiproc::algo::takers::Takers;
    check(2, || {
        let q = ring(1);
        let takers = Arc::new(Takers::new());
        let work = Arc::new(AtomicU32::new(0));
        let truth = |q: &RawQueue<Mem>, t: &Takers| {
            let c = q.census();
            let held = t.held(&NobodyDies).expect("no overflow");
            c.written + c.writing + c.reading + held.live
        };
        let consumer = {
            let (q, takers, work) = (handle(&q, 2), takers.clone(), work.clone());
            loom::thread::spawn(move || {
                let me = Owner { tid: 2, stamp: 1 };
                let took = std::cell::Cell::new(usize::MAX);
                loop {
                    match q.try_get_with(|m, i| {
                        let mut h = took.get();
                        takers.took(me, &mut h);
                        took.set(h);
                        // SAFETY: i < capacity.
                        unsafe { m.read(i) }
                    }) {
                        Ok(v) => {
                            assert_eq!(v, 7);
                            break;
                        }
                        Err(TryPopError::Empty) => loom::thread::yield_now(),
                        Err(e) => panic!("{e:?}"),
                    }
                }
                assert!(took.get() < 2, "an entry was taken");
                work.store(1, Ordering::Relaxed);
                assert!(takers.done(me, took.get(), &NobodyDies).is_some());
            })
        };
        let producer = {
            let q = handle(&q, 1);
            loom::thread::spawn(move || q.try_put(7).expect("room"))
        };
        producer.join().unwrap();
        // The put returned: the task is unfinished until it is done.
        if truth(&q, &takers) == 0 {
            assert_eq!(work.load(Ordering::Relaxed), 1, "done, with its work");
        }
        consumer.join().unwrap();
        assert_eq!(truth(&q, &takers), 0);
        assert_eq!(takers.held(&NobodyDies).unwrap().dead, 0);
    });
}
