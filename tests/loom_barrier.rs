//! loom model of the barrier core (`RawBarrier`): every party is released
//! once per round, exactly one leader per round, nobody runs ahead into the
//! next round; a break (abort, timeout) reaches every waiter; a reset with a
//! waiter inside drains it before the next round. The futex model
//! (`tests/loom_model`) wakes exactly as many sleepers as asked.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom cargo test --release --test loom_barrier`
#![cfg(loom)]

mod loom_model;

use std::time::Instant;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, Ordering};
use loom_model::{ModelFutex, check};
use multiproc::algo::barrier::{NoRoster, RawBarrier, Roster, WaitError};

const ROUNDS: usize = 2;

struct Shared {
    word: AtomicU32,
    futex: ModelFutex,
    parties: u32,
    /// Arrivals per round, counted before waiting.
    arrived: [AtomicU32; ROUNDS + 1],
    /// Leaders per round.
    leaders: [AtomicU32; ROUNDS],
    /// Each party writes its own slot before a round and reads every slot
    /// after it: loom reports a data race if the barrier does not order them.
    slots: [UnsafeCell<u32>; 3],
}

fn shared(parties: u32, futex: ModelFutex) -> Arc<Shared> {
    Arc::new(Shared {
        word: AtomicU32::new(0),
        futex,
        parties,
        arrived: std::array::from_fn(|_| AtomicU32::new(0)),
        leaders: std::array::from_fn(|_| AtomicU32::new(0)),
        slots: std::array::from_fn(|_| UnsafeCell::new(0)),
    })
}

fn wait(s: &Shared) -> Result<bool, WaitError> {
    RawBarrier::wait(&s.word, s.parties, &s.futex, &NoRoster, None).map(|a| a.leader)
}

/// One party's `rounds` rounds (two barrier generations each).
fn party(s: &Shared, me: usize, rounds: usize) {
    for r in 0..rounds {
        // SAFETY: others read our slot only between the two waits of a
        // round; loom checks the order.
        s.slots[me].with_mut(|p| unsafe { *p = r as u32 + 1 });
        s.arrived[r].fetch_add(1, Ordering::Relaxed);
        // Round r cannot complete without us: nobody is in round r + 1.
        assert_eq!(s.arrived[r + 1].load(Ordering::Relaxed), 0);
        let leader = wait(s).expect("never broken here");
        // Everybody wrote their slot for round r before we were released.
        assert_eq!(s.arrived[r].load(Ordering::Relaxed), s.parties);
        for i in 0..s.parties as usize {
            // SAFETY: every slot was written before the first wait of this
            // round and is written again only after the second.
            assert_eq!(s.slots[i].with(|p| unsafe { *p }), r as u32 + 1);
        }
        if leader {
            s.leaders[r].fetch_add(1, Ordering::Relaxed);
        }
        // Nobody may overwrite a slot for round r + 1 while others read it
        // for round r: a second barrier separates reading from writing.
        wait(s).expect("never broken here");
    }
}

fn rounds(parties: u32, rounds: usize, preemption_bound: usize) {
    check(preemption_bound, move || {
        let s = shared(parties, ModelFutex::blocking());
        let ts: Vec<_> = (1..parties as usize)
            .map(|me| {
                let s = s.clone();
                loom::thread::spawn(move || party(&s, me, rounds))
            })
            .collect();
        party(&s, 0, rounds);
        for t in ts {
            t.join().unwrap();
        }
        for r in 0..rounds {
            assert_eq!(s.leaders[r].load(Ordering::Relaxed), 1, "round {r}");
        }
        assert_eq!(RawBarrier::n_waiting(&s.word), 0);
        assert!(!RawBarrier::is_broken(&s.word));
    });
}

/// Two parties, two rounds (four generations of the barrier word).
#[test]
fn two_parties_two_rounds() {
    rounds(2, 2, 3);
}

/// Three parties, one round (two generations): a sleeper may be woken while
/// another arrives, and the next generation fills while the last released
/// party has not yet run.
#[test]
fn three_parties() {
    rounds(3, 1, 1);
}

/// Three parties, one crossing, more preemptions: wake-ups racing the last
/// arrival.
#[test]
fn three_parties_one_crossing() {
    check(2, || {
        let s = shared(3, ModelFutex::blocking());
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                loom::thread::spawn(move || wait(&s).expect("never broken here"))
            })
            .collect();
        let mut leaders = u32::from(wait(&s).expect("never broken here"));
        for t in ts {
            leaders += u32::from(t.join().unwrap());
        }
        assert_eq!(leaders, 1);
        assert_eq!(RawBarrier::n_waiting(&s.word), 0);
    });
}

/// `abort` wakes a sleeping waiter with `Broken`; later waits fail at once;
/// `reset` makes the barrier whole, and the next round completes.
#[test]
fn abort_then_reset() {
    check(3, || {
        let s = shared(2, ModelFutex::blocking());
        let t = {
            let s = s.clone();
            loom::thread::spawn(move || {
                let first = wait(&s);
                // Wait for the reset below, then meet the main thread.
                while RawBarrier::is_broken(&s.word) {
                    loom::thread::yield_now();
                }
                (first, wait(&s))
            })
        };
        // Abort only once the other thread has arrived, so that its wait
        // must end in `Broken` rather than in a later round.
        while RawBarrier::n_waiting(&s.word) == 0 {
            loom::thread::yield_now();
        }
        RawBarrier::abort(&s.word, &s.futex);
        assert!(wait(&s).is_err());
        RawBarrier::reset(&s.word, &s.futex, &NoRoster);
        // The other thread may still be inside the broken round; a reset
        // drains it first, then our wait meets its second one.
        let mine = wait(&s).expect("whole again");
        let (first, second) = t.join().unwrap();
        assert_eq!(first, Err(WaitError::Broken));
        let theirs = second.expect("whole again");
        assert!(mine ^ theirs, "exactly one leader");
    });
}

/// `reset` while a waiter sleeps: the waiter fails, arrivals wait for it to
/// leave, then the barrier works again.
#[test]
fn reset_with_waiter_inside() {
    check(3, || {
        let s = shared(2, ModelFutex::blocking());
        let t = {
            let s = s.clone();
            loom::thread::spawn(move || {
                let first = wait(&s);
                (first, wait(&s))
            })
        };
        while RawBarrier::n_waiting(&s.word) == 0 {
            loom::thread::yield_now();
        }
        RawBarrier::reset(&s.word, &s.futex, &NoRoster);
        let mine = wait(&s).expect("whole after the drain");
        let (first, second) = t.join().unwrap();
        assert_eq!(first, Err(WaitError::Broken));
        let theirs = second.expect("whole after the drain");
        assert!(mine ^ theirs, "exactly one leader");
        assert!(!RawBarrier::is_broken(&s.word));
    });
}

/// A waiter whose deadline has passed arrives, then breaks the round when
/// it finds it incomplete, racing the other party's arrival: either both are
/// released or both see `Broken`; never a hang, never one of each. (The
/// deadline is already past so that every loom run takes the same path;
/// real clocks are not modelled.)
#[test]
fn timeout_breaks_round() {
    check(3, || {
        let s = shared(2, ModelFutex::blocking());
        let t = {
            let s = s.clone();
            loom::thread::spawn(move || {
                let past = Instant::now();
                RawBarrier::wait(&s.word, 2, &s.futex, &NoRoster, Some(past)).is_ok()
            })
        };
        let mine = wait(&s).is_ok();
        let theirs = t.join().unwrap();
        assert_eq!(mine, theirs, "one released, one broken");
        assert_eq!(RawBarrier::is_broken(&s.word), !mine);
        assert_eq!(RawBarrier::n_waiting(&s.word), 0);
    });
}

/// A roster of model threads: one word each (Relaxed, as the real table's
/// slots are, each its own word), slot 0 for a party that died inside.
struct ModelRoster<'a> {
    slots: &'a [AtomicU32; 4],
    me: usize,
}

impl Roster for ModelRoster<'_> {
    fn enter(&self) {
        self.slots[self.me].store(1, Ordering::Relaxed);
    }
    fn leave(&self) {
        self.slots[self.me].store(0, Ordering::Relaxed);
    }
    fn all_dead(&self) -> bool {
        self.slots[1..]
            .iter()
            .all(|slot| slot.load(Ordering::Relaxed) == 0)
    }
}

/// A party died inside a round (counted, recorded, never leaving); two live
/// parties wait in it when a `reset` comes. Whatever the interleaving of
/// their leaves, their heals and the reset's own heal, once all three are
/// done the barrier is whole: of the two last live leavers at least one
/// sees the other's record gone (the fence in `heal`), and a reset that
/// finds them gone heals itself.
#[test]
fn reset_heals_a_round_with_a_dead_party() {
    check(2, || {
        let s = shared(4, ModelFutex::blocking());
        // Slot 0: the dead party, recorded.
        let slots = Arc::new([1, 0, 0, 0].map(AtomicU32::new));
        // The dead party's arrival.
        s.word.store(1, Ordering::SeqCst);
        let live: Vec<_> = [1, 2]
            .into_iter()
            .map(|me| {
                let (s, slots) = (s.clone(), slots.clone());
                loom::thread::spawn(move || {
                    let roster = ModelRoster { slots: &slots, me };
                    RawBarrier::wait(&s.word, s.parties, &s.futex, &roster, None)
                })
            })
            .collect();
        while RawBarrier::n_waiting(&s.word) < 3 {
            loom::thread::yield_now();
        }
        let me = ModelRoster {
            slots: &slots,
            me: 3,
        };
        RawBarrier::reset(&s.word, &s.futex, &me);
        for t in live {
            assert_eq!(t.join().unwrap(), Err(WaitError::Broken));
        }
        assert!(!RawBarrier::is_broken(&s.word), "healed");
        assert_eq!(RawBarrier::n_waiting(&s.word), 0);
    });
}
