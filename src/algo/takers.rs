//! A `JoinableQueue`'s table of takers: per process, how many messages it
//! got and has not yet marked done, so that the tasks a dead process held
//! are known lost rather than unfinished for ever.
//!
//! Each entry is two words: the process (`Owner` bits: pid and start
//! stamp, 0 for a free entry) and its count. A process takes an entry at
//! its first `get` (a free one; never a dead process's, whose count is
//! its lost tasks until [`Takers::clear_dead`]) and keeps it. A `get`
//! adds one while it still holds the message's slot claim (so a census of
//! the ring that finds the slot released finds the count raised), and a
//! `task_done` takes one off the caller's entry (or, if its count is 0,
//! off any live entry's: Python lets any process mark a task done).
//!
//! A process that finds no free entry marks the table overflowed for good:
//! the counts are then incomplete and nobody may trust them (the queue then
//! goes by its plain unfinished count, as before the table).

use crate::algo::robust::{Liveness, Owner};
use crate::loom::atomic::{AtomicU64, Ordering};

/// Entries of one table (two in the loom models, whose state space grows
/// with every atomic).
pub const ENTRIES: usize = if cfg!(loom) { 2 } else { 63 };

/// Bytes of a [`Takers`] table in shared memory (17 lines).
pub const TAKERS_BYTES: usize = 17 * 64;

/// The flag an entry's owner word carries while a clearer takes its count:
/// the word is then the clearer's identity with this bit (outside the TID
/// bits), so a later clearer can finish for a clearer that died.
const CLEARING: u64 = crate::algo::robust::DIED;

/// One process's entry.
#[repr(C)]
struct Entry {
    owner: AtomicU64,
    count: AtomicU64,
}

/// The takers' table (see the module docs). Only atomics, so any bytes are
/// a valid table.
#[repr(C, align(64))]
pub struct Takers {
    overflow: AtomicU64,
    _pad: [u64; 7],
    entries: [Entry; ENTRIES],
    _end: [u64; 2],
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<Takers>() == TAKERS_BYTES);

/// What the table says, summed over its entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// Tasks that live processes got and have not marked done.
    pub live: u64,
    /// Tasks that dead processes got and never marked done.
    pub dead: u64,
}

impl Default for Takers {
    fn default() -> Self {
        Self::new()
    }
}

impl Takers {
    /// An empty table (shared memory holds one as zeroed bytes).
    pub fn new() -> Self {
        Takers {
            overflow: AtomicU64::new(0),
            _pad: [0; 7],
            entries: std::array::from_fn(|_| Entry {
                owner: AtomicU64::new(0),
                count: AtomicU64::new(0),
            }),
            _end: [0; 2],
        }
    }

    /// Adds one to `me`'s count; `hint` caches the index of `me`'s entry
    /// (`usize::MAX`: not known yet). A table with no room left is marked
    /// overflowed.
    pub fn took(&self, me: Owner, hint: &mut usize) {
        let mine = me.bits();
        let i = match self.entries.get(*hint) {
            // SYNC: Relaxed: an entry's owner is only ever ours to change
            // once we hold it.
            Some(e) if e.owner.load(Ordering::Relaxed) == mine => *hint,
            _ => match self.find_or_take(mine) {
                Some(i) => i,
                None => {
                    self.overflow.store(1, Ordering::Relaxed);
                    return;
                }
            },
        };
        *hint = i;
        // SYNC: Relaxed: sequenced before the release of the message's
        // slot (the caller holds the claim), which a census reads with
        // Acquire before it reads this count.
        self.entries[i].count.fetch_add(1, Ordering::Relaxed);
    }

    fn find_or_take(&self, mine: u64) -> Option<usize> {
        if let Some(i) = self
            .entries
            .iter()
            .position(|e| e.owner.load(Ordering::Relaxed) == mine)
        {
            return Some(i);
        }
        self.entries.iter().position(|e| {
            // A free entry's count is 0 (a cleared dead one is zeroed
            // before its owner is).
            // SYNC: Acquire pairs with the Release store in `clear_dead`.
            e.owner.load(Ordering::Relaxed) == 0
                && e.owner
                    .compare_exchange(0, mine, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
        })
    }

    /// Takes one off a count for a task `me` marks done, and returns the
    /// entry's index (for [`undo`](Self::undo)): off `me`'s own entry
    /// (`hint`: where it was last found; a process may own two entries if
    /// two of its threads took one at once), else off another live
    /// process's (Python lets any process mark a task done), else off a
    /// dead one's (a task handed over by a process that then died). `None`
    /// if no entry has any.
    pub fn done(&self, me: Owner, hint: usize, live: &impl Liveness) -> Option<usize> {
        let mine = me.bits();
        let take_one = |e: &Entry| {
            let mut n = e.count.load(Ordering::Relaxed);
            while n > 0 {
                // SYNC: SeqCst, with the census's SeqCst loads of the
                // counts: a joiner that sees the unfinished count at 0
                // sees this too.
                match e
                    .count
                    .compare_exchange(n, n - 1, Ordering::SeqCst, Ordering::Relaxed)
                {
                    Ok(_) => return true,
                    Err(now) => n = now,
                }
            }
            false
        };
        let owner_of = |e: &Entry| e.owner.load(Ordering::Relaxed);
        if self
            .entries
            .get(hint)
            .is_some_and(|e| owner_of(e) == mine && take_one(e))
        {
            return Some(hint);
        }
        let pick = |want: &dyn Fn(u64) -> bool| {
            self.entries
                .iter()
                .position(|e| want(owner_of(e)) && take_one(e))
        };
        pick(&|o| o == mine)
            .or_else(|| {
                pick(&|o| {
                    o != 0 && o & CLEARING == 0 && Owner::of(o).is_some_and(|o| !live.is_dead(o))
                })
            })
            .or_else(|| {
                pick(&|o| {
                    o != 0 && o & CLEARING == 0 && Owner::of(o).is_some_and(|o| live.is_dead(o))
                })
            })
    }

    /// Gives back the one [`done`](Self::done) took off entry `index` (its
    /// task was not marked done after all).
    pub fn undo(&self, index: usize) {
        if let Some(e) = self.entries.get(index) {
            e.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts of live and dead processes, or `None` if the table
    /// overflowed (some taker is not in it).
    pub fn held(&self, live: &impl Liveness) -> Option<Held> {
        if self.overflow.load(Ordering::Relaxed) != 0 {
            return None;
        }
        let mut h = Held::default();
        for e in &self.entries {
            let o = e.owner.load(Ordering::Relaxed);
            // SYNC: SeqCst: see `done`.
            let n = e.count.load(Ordering::SeqCst);
            match Owner::of(o) {
                Some(_) if o & CLEARING != 0 => h.dead += n,
                Some(owner) if live.is_dead(owner) => h.dead += n,
                Some(_) => h.live += n,
                None => {}
            }
        }
        Some(h)
    }

    /// Frees the entries of dead processes; returns the tasks they held.
    /// `me` is the caller (who marks an entry it clears with its identity,
    /// so that if it dies mid-clear a later clearer finishes).
    pub fn clear_dead(&self, me: Owner, live: &impl Liveness) -> u64 {
        let mine = me.bits() | CLEARING;
        let mut cleared = 0;
        for e in &self.entries {
            let o = e.owner.load(Ordering::Relaxed);
            // The dead write nothing more. A dead owner's entry, or one a
            // dead clearer was clearing: one clearer wins it (the CAS to
            // its own CLEARING word, which no taker takes), takes the
            // count, then frees the entry, so a new owner starts at 0.
            if o != 0
                && o != mine
                && Owner::of(o).is_some_and(|owner| live.is_dead(owner))
                && e.owner
                    .compare_exchange(o, mine, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                cleared += e.count.swap(0, Ordering::Relaxed);
                // SYNC: Release: the zeroed count before the free entry.
                e.owner.store(0, Ordering::Release);
            }
        }
        cleared
    }
}
