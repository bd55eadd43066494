//! A table of the processes that hold something (one end of a pipe, say),
//! in shared memory, so that the other side can tell when every holder is
//! gone: Python's end-of-file on a pipe whose writers all exited, for
//! memory the kernel does not count references to.
//!
//! Each slot is one word: a holder's identity as an [`Owner`] (the process
//! id and its start stamp, as the robust locks record a thread), or 0 for
//! a free slot. A process puts itself in when it starts holding the thing
//! (its first handle in that process, or a `fork` that copied handles) and
//! takes itself out when its last handle is dropped; a process that dies
//! stays in until its slot is reused, and counts as gone from then on (a
//! checker asks [`Liveness`], which reads `/proc`).
//!
//! ```text
//! +0    overflow (u64): non-zero once a holder found no free slot
//! +8    adds (u64): how many holders were ever put in (a generation)
//! +16   settle (u64): the generation (low 24 bits) and the time in ms
//!       (high 40 bits) at which a checker first found every holder gone
//! +64   SLOTS words: holder identity (Owner bits) or 0
//! ```
//!
//! [`gone`](HolderTable::gone) says "every holder is gone" only when it is
//! sure: a table that overflowed (a holder it does not know of may live)
//! is never gone, and a holder whose liveness cannot be told counts as
//! alive. An empty table is gone: every holder dropped its handles.
//!
//! One look can still be early: a forked child records itself in its
//! `fork` (an atfork child handler), so between its parent dropping its
//! copy and the child running, the table reads empty.
//! [`gone_for`](HolderTable::gone_for) therefore says gone only once every
//! look for a while (`settle` ms, by any checker, in any process) found it
//! gone and no holder was put in meanwhile: the first such look stamps
//! the time and the generation, a later one compares.
//!
//! Putting in and taking out are one CAS each on a slot; nothing blocks,
//! nothing waits. All-zero bytes are an empty table.

use crate::algo::robust::{Liveness, Owner};
use crate::loom::atomic::{AtomicU64, Ordering};

/// Holders one table records.
pub const SLOTS: usize = 63;

/// A table of holders in shared memory (see the module docs). Only ever
/// accessed through atomics, so any bytes are a valid table.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct HolderTable {
    /// Non-zero once a holder could not be recorded.
    overflow: AtomicU64,
    /// Holders ever put in (wrapping).
    adds: AtomicU64,
    /// When (and at which `adds`) a look first found every holder gone;
    /// 0 for never.
    settle: AtomicU64,
    _pad: [u64; 5],
    slots: [AtomicU64; SLOTS],
    _end: u64,
}

/// How long every look must find a table's holders gone before
/// [`gone_for`](HolderTable::gone_for) says so, as its callers use it: far
/// longer than a forked child takes to record itself, short next to the
/// waits of a reader that waits for a dead writer.
pub const SETTLE_MS: u64 = 50;

/// Bits of the generation in the `settle` word.
const GEN_BITS: u32 = 24;
const GEN_MASK: u64 = (1 << GEN_BITS) - 1;

/// Bytes of a [`HolderTable`] in shared memory.
pub const HOLDER_TABLE_BYTES: usize = 64 + SLOTS * 8 + 8;
const _: () = assert!(HOLDER_TABLE_BYTES == 576);
#[cfg(not(loom))]
const _: () = assert!(size_of::<HolderTable>() == HOLDER_TABLE_BYTES);

impl Default for HolderTable {
    fn default() -> Self {
        Self::new()
    }
}

impl HolderTable {
    /// An empty table.
    pub fn new() -> Self {
        HolderTable {
            overflow: AtomicU64::new(0),
            adds: AtomicU64::new(0),
            settle: AtomicU64::new(0),
            _pad: [0; 5],
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            _end: 0,
        }
    }

    /// Records `me` as a holder: in a free slot, or in the slot of a
    /// holder `live` says is dead. If no slot is left, marks the table as
    /// overflowed (it is then never [`gone`](Self::gone)) and returns
    /// `false`. Recording a holder twice takes two slots; [`remove`]
    /// (Self::remove) takes one out.
    pub fn add(&self, me: Owner, live: &impl Liveness) -> bool {
        let added = self.put_in(me, live);
        // SYNC: after the slot's CAS, so a checker that read `adds` before
        // its scan and missed the slot sees a new generation next time
        // (SeqCst, with the checker's SeqCst loads: neither is on a hot
        // path).
        self.adds.fetch_add(1, Ordering::SeqCst);
        added
    }

    /// [`add`](Self::add) without counting a generation: for a table whose
    /// users never ask [`gone_for`](Self::gone_for) (a barrier's roster of
    /// waiters), so a hot path pays one CAS, not two RMWs.
    pub fn add_untimed(&self, me: Owner, live: &impl Liveness) -> bool {
        self.put_in(me, live)
    }

    fn put_in(&self, me: Owner, live: &impl Liveness) -> bool {
        let mine = me.bits();
        // First a free slot (no liveness look-up), then a dead holder's.
        for slot in &self.slots {
            // SYNC: Relaxed: a slot carries nothing but itself; checkers
            // read it with `gone`, which decides nothing from its order
            // with other memory.
            if slot.load(Ordering::Relaxed) == 0
                && slot
                    .compare_exchange(0, mine, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                return true;
            }
        }
        for slot in &self.slots {
            let seen = slot.load(Ordering::Relaxed);
            if seen != 0
                && Owner::of(seen).is_some_and(|o| live.is_dead(o))
                && slot
                    .compare_exchange(seen, mine, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                return true;
            }
        }
        self.overflow.store(1, Ordering::Relaxed);
        false
    }

    /// Takes one record of `me` out (if there is one).
    pub fn remove(&self, me: Owner) {
        let mine = me.bits();
        for slot in &self.slots {
            if slot.load(Ordering::Relaxed) == mine
                && slot
                    .compare_exchange(mine, 0, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
        }
    }

    /// Marks the table as overflowed: a holder exists that it cannot
    /// record (its process could not keep count of its handles), so it is
    /// never [`gone`](Self::gone).
    pub fn mark_unknown(&self) {
        self.overflow.store(1, Ordering::Relaxed);
    }

    /// Whether every holder is certainly gone: no slot names a holder that
    /// `live` cannot call dead, and the table never overflowed.
    pub fn gone(&self, live: &impl Liveness) -> bool {
        if self.overflow.load(Ordering::Relaxed) != 0 {
            return false;
        }
        self.slots
            .iter()
            .all(|slot| Owner::of(slot.load(Ordering::Relaxed)).is_none_or(|o| live.is_dead(o)))
    }

    /// Whether every holder is gone for good: this look finds them
    /// [`gone`](Self::gone), and so did a look at least `settle_ms`
    /// before it (`now_ms` and the stamps are one clock's milliseconds,
    /// shared by every process: `CLOCK_MONOTONIC`), with no holder put in
    /// since. The first look that finds them gone stamps the time, and
    /// returns `false`.
    pub fn gone_for(&self, live: &impl Liveness, now_ms: u64, settle_ms: u64) -> bool {
        // SYNC: SeqCst, read before the scan: see `add`.
        let generation = self.adds.load(Ordering::SeqCst) & GEN_MASK;
        if !self.gone(live) {
            return false;
        }
        let stamp = (now_ms << GEN_BITS) | generation;
        let seen = self.settle.load(Ordering::SeqCst);
        let since = seen >> GEN_BITS;
        if seen != 0 && seen & GEN_MASK == generation && since <= now_ms {
            return now_ms - since >= settle_ms;
        }
        // Never stamped, stamped in another generation (a holder came
        // since: start again), or by a clock ahead of ours. A lost race
        // leaves another checker's stamp, as good as ours.
        let _ =
            self.settle
                .compare_exchange(seen, stamp.max(1), Ordering::SeqCst, Ordering::SeqCst);
        false
    }

    /// Slot `index`'s word now (0 for free, or out of range).
    pub fn slot(&self, index: usize) -> u64 {
        // SYNC: Acquire pairs with the AcqRel of `replace`.
        self.slots
            .get(index)
            .map_or(0, |s| s.load(Ordering::Acquire))
    }

    /// Sets slot `index` from `old` to `new` in one CAS; whether it was
    /// `old`.
    pub fn replace(&self, index: usize, old: u64, new: u64) -> bool {
        self.slots.get(index).is_some_and(|s| {
            // SYNC: AcqRel: a slot's owner is written before the word that
            // refers to it (a semaphore's held bit) and read after it.
            s.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
    }

    /// The recorded holders now (a snapshot, for tests and `Debug`).
    pub fn holders(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) != 0)
            .count()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Liveness from a list of dead TIDs.
    struct Dead(RefCell<Vec<u32>>);

    // SAFETY: a test double: "dead" only for the TIDs the test lists.
    unsafe impl Liveness for Dead {
        fn is_dead(&self, owner: Owner) -> bool {
            self.0.borrow().contains(&owner.tid)
        }
    }

    fn who(tid: u32) -> Owner {
        Owner { tid, stamp: 7 }
    }

    #[test]
    fn empty_is_gone_and_a_live_holder_is_not() {
        let t = HolderTable::new();
        let dead = Dead(RefCell::new(vec![]));
        assert!(t.gone(&dead));
        assert!(t.add(who(10), &dead));
        assert!(!t.gone(&dead));
        dead.0.borrow_mut().push(10);
        assert!(t.gone(&dead));
    }

    #[test]
    fn remove_takes_one_record_out() {
        let t = HolderTable::new();
        let dead = Dead(RefCell::new(vec![]));
        assert!(t.add(who(10), &dead));
        assert!(t.add(who(10), &dead));
        assert!(t.add(who(11), &dead));
        t.remove(who(10));
        assert_eq!(t.holders(), 2);
        t.remove(who(10));
        t.remove(who(11));
        assert_eq!(t.holders(), 0);
        assert!(t.gone(&dead));
    }

    #[test]
    fn a_full_table_reuses_dead_slots_then_overflows() {
        let t = HolderTable::new();
        let dead = Dead(RefCell::new(vec![]));
        for tid in 1..=SLOTS as u32 {
            assert!(t.add(who(tid), &dead));
        }
        dead.0.borrow_mut().push(5);
        assert!(t.add(who(1000), &dead), "the dead holder's slot");
        assert!(!t.add(who(1001), &dead), "no slot left");
        // Every recorded holder dead: still not gone, one is unknown.
        dead.0.borrow_mut().extend(1..=SLOTS as u32 + 1001);
        assert!(!t.gone(&dead));
    }

    #[test]
    fn slot_and_replace() {
        let t = HolderTable::new();
        let (a, b) = (who(10).bits(), who(11).bits());
        assert_eq!(t.slot(3), 0);
        assert!(t.replace(3, 0, a));
        assert!(!t.replace(3, 0, b), "taken");
        assert_eq!(t.slot(3), a);
        assert!(t.replace(3, a, 0));
        assert!(!t.replace(SLOTS, 0, a), "out of range");
        assert_eq!(t.slot(SLOTS), 0);
    }

    #[test]
    fn gone_for_needs_two_looks_a_settle_apart_with_no_add_between() {
        let t = HolderTable::new();
        let dead = Dead(RefCell::new(vec![]));
        assert!(t.add(who(10), &dead));
        assert!(!t.gone_for(&dead, 1_000, 50), "a live holder");
        t.remove(who(10));
        assert!(!t.gone_for(&dead, 1_000, 50), "the first look stamps");
        assert!(!t.gone_for(&dead, 1_049, 50), "too soon");
        // A holder came and went between two looks: start again.
        assert!(t.add(who(11), &dead));
        t.remove(who(11));
        assert!(!t.gone_for(&dead, 1_060, 50), "another generation");
        assert!(!t.gone_for(&dead, 1_100, 50));
        assert!(t.gone_for(&dead, 1_110, 50));
        assert!(t.gone_for(&dead, 5_000, 50), "and stays gone");
        // A clock behind the stamp (another time namespace): no verdict.
        assert!(!t.gone_for(&dead, 10, 50));
        // A dead holder counts as gone, like a removed one.
        assert!(t.add(who(12), &dead));
        dead.0.borrow_mut().push(12);
        assert!(!t.gone_for(&dead, 20_000, 50));
        assert!(t.gone_for(&dead, 20_050, 50));
    }
}
