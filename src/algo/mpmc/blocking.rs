//! The blocking calls: `put_with` / `get_with` wait on the `writable` /
//! `readable` eventcounts, in slices between which they look for dead
//! claimants ([`CLAIM_POLL`] while a claim sits at their position, doubling
//! up to [`CLAIM_POLL_MAX`] while none does), and the waiters' conditions
//! `put_state` / `can_get`. A producer whose slot a consumer is still
//! reading waits on `released` instead of `writable`.

use std::cell::Cell;
use std::time::Instant;

use super::stamp::{ForGet, ForPut};
use super::{CLAIM_POLL, CLAIM_POLL_MAX, QueueMemory, RawQueue};
use crate::algo::spsc::{TryPopError, TryPushError};
use crate::algo::wait::time_left;
use crate::loom::atomic::AtomicU64;
use crate::loom::{load_sc, load_sc64};

/// What a waiting producer finds at the tail.
enum PutState<'a> {
    /// Room, or the ring is closed: try the put.
    Ready,
    /// No room: sleep until a consumer takes the item there.
    Sleep,
    /// A consumer is reading the item there: this stamp word holds its
    /// claim; wait until it releases the slot.
    Reader(&'a AtomicU64, u64),
}

/// Re-reads a waiter's condition makes while the position it looks at
/// keeps moving, before it just reports "ready" (and lets the caller retry).
const RECHECKS: u32 = if cfg!(loom) { 2 } else { 16 };

impl<M: QueueMemory> RawQueue<M> {
    /// Puts `value` as [`try_put_with`](Self::try_put_with) does, waiting
    /// for room until `deadline` (`None`: as long as it takes): spins
    /// briefly, then sleeps on the `writable` eventcount.
    ///
    /// # Errors
    ///
    /// [`TryPushError::Closed`] if the ring is (or gets) closed,
    /// [`TryPushError::Full`] if the deadline passed first.
    #[inline]
    pub fn put_with<V>(
        &self,
        value: V,
        write: impl Fn(&M, usize, V),
        deadline: Option<Instant>,
    ) -> Result<(), TryPushError<V>> {
        match self.try_put_with(value, &write) {
            Err(TryPushError::Full(v)) => self.put_slow(v, write, deadline),
            done => done,
        }
    }

    #[cold]
    fn put_slow<V>(
        &self,
        mut value: V,
        write: impl Fn(&M, usize, V),
        deadline: Option<Instant>,
    ) -> Result<(), TryPushError<V>> {
        loop {
            let woke = self.wait_writable(deadline);
            match self.try_put_with(value, &write) {
                // The waiter's condition and the put can disagree (on
                // scribbled words): the deadline still ends the loop.
                Err(TryPushError::Full(v)) if woke && time_left(deadline).is_ok() => value = v,
                done => return done,
            }
        }
    }

    /// Waits until a put may succeed (room at the tail, or closed), or
    /// `deadline` passes; returns whether it may. Sleeps in slices of
    /// [`CLAIM_POLL`], freeing the slot of a consumer that died reading it.
    ///
    /// While the slot at the tail holds an item, it sleeps on `writable`,
    /// which its consumer wakes once it claimed the item (before it
    /// releases the slot); while a consumer is reading the slot, on
    /// `released`, which that consumer wakes after the release.
    pub fn wait_writable(&self, deadline: Option<Instant>) -> bool {
        let ec = &self.mem.state().wait.writable;
        let mut slice = CLAIM_POLL;
        let reader = Cell::new(None);
        loop {
            if let Some((word, stamp)) = reader.take() {
                if self.wait_released(word, stamp, deadline) {
                    return true;
                }
                if time_left(deadline).is_err() {
                    return false;
                }
                // A slice with no release: maybe the reader died.
                self.recover_at_tail();
                slice = CLAIM_POLL;
                continue;
            }
            let ready = || match self.put_state() {
                PutState::Sleep => false,
                PutState::Ready => true,
                PutState::Reader(word, stamp) => {
                    reader.set(Some((word, stamp)));
                    true
                }
            };
            if ec.wait_sliced(self.mem.waiter(), deadline, slice, ready) {
                if reader.get().is_some() {
                    // A consumer claimed the item at the tail (its wake may
                    // be what woke us): wait for its release instead.
                    continue;
                }
                return true;
            }
            if time_left(deadline).is_err() {
                return false;
            }
            if self.mem.consumers_gone() {
                // Nobody will ever take: the close makes the put fail.
                self.close();
            }
            // A slice with no notify: maybe a consumer died at the tail. With no claim
            // there at all (an idle queue), look again less and less often.
            slice = if self.recover_at_tail() {
                CLAIM_POLL
            } else {
                (slice * 2).min(CLAIM_POLL_MAX)
            };
            crate::loom::spin_hint();
        }
    }

    /// Waits until a get may succeed (an item at the head, or closed and
    /// drained), or `deadline` passes; returns whether it may. Sleeps in
    /// slices of [`CLAIM_POLL`], skipping the position of a producer that
    /// died writing it.
    pub fn wait_readable(&self, deadline: Option<Instant>) -> bool {
        let ec = &self.mem.state().wait.readable;
        let mut slice = CLAIM_POLL;
        loop {
            if ec.wait_sliced(self.mem.waiter(), deadline, slice, || self.can_get()) {
                return true;
            }
            if time_left(deadline).is_err() {
                return false;
            }
            if self.mem.producers_gone() {
                // Nobody can put any more: the close lets us drain, then
                // report `Closed`.
                self.close();
            }
            // A slice with no notify: maybe a producer died at the head. With no claim
            // there at all (an idle queue), look again less and less often.
            slice = if self.recover_at_head() {
                CLAIM_POLL
            } else {
                (slice * 2).min(CLAIM_POLL_MAX)
            };
            crate::loom::spin_hint();
        }
    }

    /// Waits (one slice of [`CLAIM_POLL`] at most) until the claim `stamp`
    /// in `word` is gone or the ring is closed; returns whether it is.
    fn wait_released(&self, word: &AtomicU64, stamp: u64, deadline: Option<Instant>) -> bool {
        let st = self.mem.state();
        // SYNC: reading half of the waiter's side of the `released` Dekker
        // pair: pairs with the SeqCst stamp swap of `release_read` (and of
        // the recoveries and `get_into`) and with the swap in `close`.
        st.wait
            .released
            .wait_sliced(self.mem.waiter(), deadline, CLAIM_POLL, || {
                load_sc64(word) != stamp || load_sc(&st.wait.closed) != 0
            })
    }

    /// A waiting producer's condition: ready if the ring is closed or the
    /// slot at the tail is free for it; a reader if a consumer's claim holds
    /// that slot (the producer then waits for the release on `released`:
    /// see [`wait_writable`](Self::wait_writable)); else sleep.
    fn put_state(&self) -> PutState<'_> {
        let st = self.mem.state();
        // SYNC: reading half of the waiter's side of the `writable` Dekker
        // pair (every load here): pairs with the SeqCst claiming CASes of
        // consumers (`release_read` and `get_into` wake `writable` after
        // them, before the release), with the SeqCst stamp swaps of the
        // recoveries and with the swap in `close`.
        if load_sc(&st.wait.closed) != 0 {
            return PutState::Ready;
        }
        let mut hint = load_sc64(&st.tail.tail);
        let mut tail = hint;
        let (mut rechecks, mut skips) = (RECHECKS, self.skip_budget());
        loop {
            let Some(idx) = self.slot_of(tail) else {
                // Scribbled: sleep (until a notify or the deadline).
                return PutState::Sleep;
            };
            // SAFETY: idx < cap.
            let word = unsafe { self.mem.stamp(idx) };
            let stamp = load_sc64(word);
            match self.for_put(stamp, tail) {
                ForPut::Free => return PutState::Ready,
                // A reader claimed the item: it wakes `released` after it
                // frees the slot, not `writable`.
                ForPut::Reading(_) => return PutState::Reader(word, stamp),
                // Walk on from a lagging hint to the first untaken position.
                // A hint lags by less than a lap, so a walk past the budget
                // means scribbled stamps: sleep (until a notify or a slice
                // ends), do not spin.
                ForPut::Taken => {
                    if skips == 0 {
                        return PutState::Sleep;
                    }
                    skips -= 1;
                    let (next, _) = self.advance(tail, idx, 1);
                    hint = load_sc64(&st.tail.tail);
                    tail = next.max(hint);
                }
                // The previous lap's item is still there (its consumer will
                // notify once it claims it), unless a producer claimed
                // meanwhile (the hint changed; a lagging hint store counts as
                // a change).
                ForPut::Full | ForPut::Odd => {
                    let again = load_sc64(&st.tail.tail);
                    if again == hint {
                        return PutState::Sleep;
                    }
                    if rechecks == 0 {
                        return PutState::Ready;
                    }
                    rechecks -= 1;
                    hint = again;
                    tail = tail.max(again);
                }
            }
        }
    }

    /// Takes the oldest item as [`try_get_with`](Self::try_get_with) does,
    /// waiting until `deadline` (`None`: as long as it takes): spins
    /// briefly, then sleeps on the `readable` eventcount.
    ///
    /// # Errors
    ///
    /// [`TryPopError::Closed`] once the ring is closed and drained,
    /// [`TryPopError::Empty`] if the deadline passed first.
    #[inline]
    pub fn get_with<R>(
        &self,
        read: impl Fn(&M, usize) -> R,
        deadline: Option<Instant>,
    ) -> Result<R, TryPopError> {
        match self.try_get_with(&read) {
            Err(TryPopError::Empty) => self.get_slow(read, deadline),
            done => done,
        }
    }

    #[cold]
    fn get_slow<R>(
        &self,
        read: impl Fn(&M, usize) -> R,
        deadline: Option<Instant>,
    ) -> Result<R, TryPopError> {
        loop {
            let woke = self.wait_readable(deadline);
            match self.try_get_with(&read) {
                // As in `put_slow`: the deadline ends the loop.
                Err(TryPopError::Empty) if woke && time_left(deadline).is_ok() => {}
                done => return done,
            }
        }
    }

    /// A waiting consumer's condition: the slot at the head holds an item,
    /// or the ring is closed and drained.
    fn can_get(&self) -> bool {
        let st = self.mem.state();
        // SYNC: reading half of the waiter's side of the `readable` Dekker
        // pair (every load here): pairs with the SeqCst stamp swaps of
        // `try_put_with` / `put_slice` / `give_up_put` and with the swap in
        // `close`.
        let mut hint = load_sc64(&st.head.head);
        let mut head = hint;
        let (mut rechecks, mut skips) = (RECHECKS, self.skip_budget());
        loop {
            let Some(idx) = self.slot_of(head) else {
                return load_sc(&st.wait.closed) != 0;
            };
            // SAFETY: idx < cap.
            match self.for_get(load_sc64(unsafe { self.mem.stamp(idx) }), head) {
                ForGet::Item => return true,
                // Nothing claimed here yet: a producer will notify.
                ForGet::Empty => return load_sc(&st.wait.closed) != 0,
                // Walk on from a lagging hint to the first untaken position
                // (past the budget: scribbled, sleep, as in `put_state`).
                ForGet::Taken => {
                    if skips == 0 {
                        return false;
                    }
                    skips -= 1;
                    let (next, _) = self.advance(head, idx, 1);
                    hint = load_sc64(&st.head.head);
                    head = next.max(hint);
                }
                // Being written (its producer will notify when done), unless
                // a consumer claimed meanwhile (the hint changed).
                ForGet::Writing(_) | ForGet::Odd => {
                    let again = load_sc64(&st.head.head);
                    if again == hint {
                        return false;
                    }
                    if rechecks == 0 {
                        return true;
                    }
                    rechecks -= 1;
                    hint = again;
                    head = head.max(again);
                }
            }
        }
    }
}
