//! Dead claimants (see "Dead claimants" and "Close" in the module docs):
//! telling a stuck claim's owner dead ([`Claimant`]), freeing the slot of a
//! consumer that died reading it, skipping the position of a producer that
//! died writing it, and giving up a position claimed after the close.

use super::stamp::{ForGet, ForPut, store_release};
use std::time::Instant;

use super::{CLAIM_WAIT, QueueMemory, RawQueue};
use crate::algo::robust::Owner;
use crate::algo::wait::yield_now;
use crate::loom::atomic::{AtomicU64, Ordering};
use crate::loom::store_sc64;

/// A stuck claim's owner, as a recoverer sees it.
enum Claimant {
    /// Our position is stale (the hint moved past it).
    Stale,
    /// The owner lives (or cannot be told dead): wait for it.
    Alive,
    /// The owner is dead: the claim may be recovered.
    Dead,
}

impl<M: QueueMemory> RawQueue<M> {
    /// What to make of a claim by `owner` stuck at our position `pos`,
    /// given the hint in `hint` (the same side's).
    #[cold]
    fn claimant(&self, hint: &AtomicU64, pos: u64, owner: Option<Owner>) -> Claimant {
        // SYNC: Acquire, as the first hint load. A hint past `pos` means our
        // position is stale: look again there instead.
        if hint.load(Ordering::Acquire) > pos {
            return Claimant::Stale;
        }
        match owner {
            Some(owner) if self.mem.is_dead(owner) => Claimant::Dead,
            // Alive, or not to be told dead.
            _ => Claimant::Alive,
        }
    }

    /// A live claimant holds the position (a write or read in progress):
    /// yields and re-reads the stamp, as crossbeam's `ArrayQueue` waits for
    /// a write in progress. Returns the stamp once it changed, or unchanged
    /// after a while (the caller then asks again whether the claimant
    /// lives); `None` once the claim has held for [`CLAIM_WAIT`] since
    /// `waited` was first set. Under loom it waits as long as it takes (a
    /// model's claimant either finishes or dies).
    #[cold]
    pub(super) fn wait_out_claim(
        word: &AtomicU64,
        stamp: u64,
        waited: &mut Option<Instant>,
    ) -> Option<u64> {
        if !cfg!(loom) {
            let since = *waited.get_or_insert_with(Instant::now);
            if since.elapsed() >= CLAIM_WAIT {
                return None;
            }
        }
        for _ in 0..if cfg!(loom) { 1 } else { 64 } {
            yield_now();
            // SYNC: Acquire, as the stamp reads of the caller.
            let now = word.load(Ordering::Acquire);
            if now != stamp {
                return Some(now);
            }
        }
        Some(stamp)
    }

    /// Gives up a position claimed after the ring was closed: no item will
    /// be written there, so consumers skip it.
    #[cold]
    pub(super) fn give_up_put(&self, word: &AtomicU64, pos: u64) {
        // SYNC: SeqCst, as a publish: consumers waiting on `pos` see the
        // position taken (and `can_get`'s Dekker pair holds).
        store_sc64(word, pos.wrapping_add(self.one_lap));
        self.mem.state().wait.readable.notify(self.mem.waiter());
    }

    /// The slot at the producers' position `tail` is claimed, as `stamp`,
    /// by the previous lap's consumer `owner`: if that consumer is dead,
    /// frees the slot (counting its item as lost). Returns whether the
    /// caller should look again (`false`: the consumer lives, or cannot be
    /// told dead).
    #[cold]
    pub(super) fn free_dead_reader(
        &self,
        word: &AtomicU64,
        stamp: u64,
        tail: u64,
        owner: Option<Owner>,
    ) -> bool {
        let st = self.mem.state();
        match self.claimant(&st.tail.tail, tail, owner) {
            Claimant::Stale => return true,
            Claimant::Alive => return false,
            Claimant::Dead => {}
        }
        // The claim is for `tail - one_lap` (see "Dead claimants"); only its
        // dead owner could have written this exact word, so the CAS fails
        // only if another recoverer was first.
        // SYNC: SeqCst (Release), as the consumer's own release of the slot
        // would have been: producers claim it with Acquire.
        if word
            .compare_exchange(stamp, tail, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            st.wait.lost.fetch_add(1, Ordering::Relaxed);
            st.wait.writable.notify(self.mem.waiter());
            st.wait.released.notify(self.mem.waiter());
        }
        true
    }

    /// The slot at the consumers' position `head` (slot `idx`) is claimed,
    /// as `stamp`, by its producer `owner`: if that producer is dead, takes
    /// the position as an empty one (free for the next lap). Returns
    /// whether the caller should look again (`false`: the producer lives,
    /// or cannot be told dead).
    #[cold]
    pub(super) fn skip_dead_writer(
        &self,
        word: &AtomicU64,
        stamp: u64,
        head: u64,
        idx: usize,
        owner: Option<Owner>,
    ) -> bool {
        let st = self.mem.state();
        match self.claimant(&st.head.head, head, owner) {
            Claimant::Stale => return true,
            Claimant::Alive => return false,
            Claimant::Dead => {}
        }
        // The claim is for `head` (see "Dead claimants"); only its dead
        // owner could have written this exact word.
        // SYNC: SeqCst (Release), as a consumer's release of the slot:
        // producers of the next lap claim it with Acquire.
        if word
            .compare_exchange(
                stamp,
                head.wrapping_add(self.one_lap),
                Ordering::SeqCst,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            let (next, _) = self.advance(head, idx, 1);
            // SYNC: Release, as after a claim.
            store_release(&st.head.head, next);
            st.wait.writable.notify(self.mem.waiter());
            st.wait.released.notify(self.mem.waiter());
        }
        true
    }

    /// Frees the slot at the tail hint if a dead consumer holds it.
    /// Returns whether a consumer's claim was there (dead and freed now,
    /// or alive: worth looking again soon).
    #[cold]
    pub(super) fn recover_at_tail(&self) -> bool {
        // SYNC: Acquire, as the first hint load.
        let tail = self.mem.state().tail.tail.load(Ordering::Acquire);
        let Some(idx) = self.slot_of(tail) else {
            return false;
        };
        // SAFETY: idx < cap.
        let word = unsafe { self.mem.stamp(idx) };
        // SYNC: Acquire, as the stamp reads in `try_put_with`.
        let stamp = word.load(Ordering::Acquire);
        if let ForPut::Reading(owner) = self.for_put(stamp, tail) {
            self.free_dead_reader(word, stamp, tail, owner);
            return true;
        }
        false
    }

    /// Skips the position at the head hint if a dead producer holds it.
    /// Returns whether a producer's claim was there (dead and skipped now,
    /// or alive: worth looking again soon).
    #[cold]
    pub(super) fn recover_at_head(&self) -> bool {
        // SYNC: Acquire, as the first hint load.
        let head = self.mem.state().head.head.load(Ordering::Acquire);
        let Some(idx) = self.slot_of(head) else {
            return false;
        };
        // SAFETY: idx < cap.
        let word = unsafe { self.mem.stamp(idx) };
        // SYNC: Acquire, as the stamp reads in `try_get_with`.
        let stamp = word.load(Ordering::Acquire);
        if let ForGet::Writing(owner) = self.for_get(stamp, head) {
            self.skip_dead_writer(word, stamp, head, idx, owner);
            return true;
        }
        false
    }
}
