//! Positions and stamps (see "Positions and stamps" in the module docs):
//! the claim word's bits and the helpers that build and read it, the
//! hint/stamp store helper, and how a producer ([`ForPut`]) or a consumer
//! ([`ForGet`]) at a position reads a slot's stamp.

use super::{QueueMemory, RawQueue};
use crate::algo::robust::Owner;
use crate::loom::atomic::{AtomicU64, Ordering};

/// Stamp bit: the stamp is a claim, not a position.
pub(super) const CLAIM: u64 = 1 << 63;

/// Claim bit: a consumer's claim (clear: a producer's).
pub(super) const READING: u64 = 1 << 62;

/// Where the lap tag sits in a claim, and its mask (after shifting).
const TAG_SHIFT: u32 = 54;
const TAG_MASK: u64 = 0xff;

/// The owner TID bits of a claim (Linux TIDs stay below 2^22).
const CLAIM_TID_MASK: u64 = (1 << 22) - 1;

/// The claim bits that name `me`: TID and start stamp. A TID that does not
/// fit is recorded as 0, "unknown", never taken for dead.
#[inline]
pub(super) fn owner_bits(me: Owner) -> u64 {
    let tid = u64::from(me.tid);
    let tid = if tid <= CLAIM_TID_MASK { tid } else { 0 };
    (tid << 32) | u64::from(me.stamp)
}

/// The owner a claim names, if it names one.
#[inline]
pub(super) fn claim_owner(word: u64) -> Option<Owner> {
    let tid = ((word >> 32) & CLAIM_TID_MASK) as u32;
    (tid != 0).then_some(Owner {
        tid,
        stamp: word as u32,
    })
}

/// A Release store of a word that other threads also read-modify-write.
/// Under loom a swap: loom 0.7 lets a read-modify-write by another thread
/// read a value older than a plain store before it (when an earlier RMW
/// of that thread came first), a stale read no hardware makes; the claims'
/// CASes and `load_sc64`'s `fetch_add(0)` are such RMWs. A Release swap
/// publishes what a Release store does.
#[inline]
pub(super) fn store_release(word: &AtomicU64, value: u64) {
    #[cfg(not(loom))]
    word.store(value, Ordering::Release);
    #[cfg(loom)]
    word.swap(value, Ordering::Release);
}

/// What a producer at a position finds in the slot's stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ForPut {
    /// Free for the position.
    Free,
    /// Another producer took the position (or ours is stale): move on.
    Taken,
    /// The previous lap's item is still there (or still being written):
    /// full.
    Full,
    /// The previous lap's consumer is reading the slot: full until it is
    /// done, or dead.
    Reading(Option<Owner>),
    /// Makes no sense for the position (a scribble).
    Odd,
}

/// What a consumer at a position finds in the slot's stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ForGet {
    /// Written for the position.
    Item,
    /// Nothing claimed at the position yet: empty.
    Empty,
    /// Another consumer took the position (or ours is stale): move on.
    Taken,
    /// Its producer claimed it and is writing it, or died doing so.
    Writing(Option<Owner>),
    /// Makes no sense for the position (a scribble).
    Odd,
}

impl<M: QueueMemory> RawQueue<M> {
    /// The slot index of `pos`, if it is below the capacity (else the
    /// position was scribbled over).
    #[inline]
    pub(super) fn slot_of(&self, pos: u64) -> Option<usize> {
        let idx = (pos & (self.index_end - 1)) as usize;
        (idx < self.cap).then_some(idx)
    }

    /// The position `i` places after `pos` (slot `idx`), `i <= cap`, and its
    /// slot index.
    #[inline]
    pub(super) fn advance(&self, pos: u64, idx: usize, i: usize) -> (u64, usize) {
        let to = idx + i;
        if to < self.cap {
            (pos.wrapping_add(i as u64), to)
        } else {
            // At most one wrap: idx < cap and i <= cap.
            let to = to - self.cap;
            (
                (pos & !(self.one_lap - 1))
                    .wrapping_add(self.one_lap)
                    .wrapping_add(to as u64),
                to,
            )
        }
    }

    /// The claim word for position `pos`: the owner bits `who` (with the
    /// reading bit for a consumer) and the lap tag of `pos`.
    #[inline]
    pub(super) fn claim_at(&self, who: u64, pos: u64) -> u64 {
        who | (((pos >> self.lap_shift) & TAG_MASK) << TAG_SHIFT)
    }

    /// How many laps (mod 256) the claim `word` is ahead of `pos`:
    /// 0 for `pos`'s lap, 1 for the next, `TAG_MASK` for the previous.
    #[inline]
    fn tag_distance(&self, word: u64, pos: u64) -> u64 {
        ((word >> TAG_SHIFT).wrapping_sub(pos >> self.lap_shift)) & TAG_MASK
    }

    /// Reads a stamp as a producer at `pos` sees it.
    #[inline]
    pub(super) fn for_put(&self, stamp: u64, pos: u64) -> ForPut {
        if stamp & CLAIM == 0 {
            if stamp == pos {
                ForPut::Free
            } else if stamp > pos {
                // Written for `pos`, or a later lap.
                ForPut::Taken
            } else if stamp.wrapping_add(self.one_lap) == pos.wrapping_add(1) {
                ForPut::Full
            } else {
                ForPut::Odd
            }
        } else {
            let reading = stamp & READING != 0;
            match (self.tag_distance(stamp, pos), reading) {
                (0 | 1, _) => ForPut::Taken,
                (TAG_MASK, true) => ForPut::Reading(claim_owner(stamp)),
                (TAG_MASK, false) => ForPut::Full,
                _ => ForPut::Odd,
            }
        }
    }

    /// Reads a stamp as a consumer at `pos` sees it.
    #[inline]
    pub(super) fn for_get(&self, stamp: u64, pos: u64) -> ForGet {
        if stamp & CLAIM == 0 {
            if stamp == pos.wrapping_add(1) {
                ForGet::Item
            } else if stamp == pos {
                ForGet::Empty
            } else if stamp > pos {
                ForGet::Taken
            } else {
                ForGet::Odd
            }
        } else {
            let reading = stamp & READING != 0;
            match (self.tag_distance(stamp, pos), reading) {
                (0, false) => ForGet::Writing(claim_owner(stamp)),
                (0, true) | (1, _) => ForGet::Taken,
                // The previous lap's consumer still reads: nothing written
                // for `pos` yet.
                (TAG_MASK, true) => ForGet::Empty,
                _ => ForGet::Odd,
            }
        }
    }

    /// The position to try after `pos` (slot `idx`) was taken: the next
    /// one, or the hint in `word` if that is further on. Updates `hint` to
    /// the hint just read.
    #[inline]
    pub(super) fn move_on(&self, word: &AtomicU64, hint: &mut u64, pos: u64, idx: usize) -> u64 {
        let (next, _) = self.advance(pos, idx, 1);
        // SYNC: Acquire, as the first hint load (claims in order).
        *hint = word.load(Ordering::Acquire);
        next.max(*hint)
    }
}
