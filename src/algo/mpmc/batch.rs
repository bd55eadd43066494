//! The value-taking operations, for rings whose slots hold one `Copy`
//! value each ([`SlotMemory`]): the single-item calls over the `*_with`
//! paths, and the batch calls `put_slice` / `get_into`, which claim a run
//! of slots, store the hint once and wake sleepers once.

use std::time::Instant;

use super::stamp::{CLAIM, READING, owner_bits, store_release};
use super::{RawQueue, SlotMemory};
use crate::algo::spsc::{TryPopError, TryPushError};
use crate::loom::atomic::Ordering;
use crate::loom::{load_sc, store_sc64};

impl<M: SlotMemory> RawQueue<M> {
    /// Puts `value` if there is room, without blocking. Makes no system
    /// call unless a consumer sleeps.
    ///
    /// # Errors
    ///
    /// [`TryPushError::Closed`] after [`close`](Self::close),
    /// [`TryPushError::Full`] if there is no room (or the slot at the tail
    /// stays claimed by a live consumer still reading it for [`CLAIM_WAIT`](super::CLAIM_WAIT)).
    #[inline]
    pub fn try_put(&self, value: M::Item) -> Result<(), TryPushError<M::Item>> {
        // SAFETY: `try_put_with` passes an index below the capacity.
        self.try_put_with(value, |m, i, v| unsafe { m.write(i, v) })
    }

    /// Takes the oldest item if there is one, without blocking. Makes no
    /// system call unless a producer sleeps.
    ///
    /// # Errors
    ///
    /// [`TryPopError::Empty`] if there is no item (or the item at the head
    /// stays claimed by a live producer still writing it for [`CLAIM_WAIT`](super::CLAIM_WAIT)),
    /// [`TryPopError::Closed`] if the ring is closed and every item was
    /// taken.
    #[inline]
    pub fn try_get(&self) -> Result<M::Item, TryPopError> {
        // SAFETY: `try_get_with` passes an index below the capacity.
        self.try_get_with(|m, i| unsafe { m.read(i) })
    }

    /// Puts `value`, waiting for room until `deadline` (`None`: as long as
    /// it takes).
    ///
    /// # Errors
    ///
    /// [`TryPushError::Closed`] if the ring is (or gets) closed,
    /// [`TryPushError::Full`] if the deadline passed first.
    #[inline]
    pub fn put(
        &self,
        value: M::Item,
        deadline: Option<Instant>,
    ) -> Result<(), TryPushError<M::Item>> {
        // SAFETY: `put_with` passes an index below the capacity.
        self.put_with(value, |m, i, v| unsafe { m.write(i, v) }, deadline)
    }

    /// Takes the oldest item, waiting until `deadline` (`None`: as long as
    /// it takes).
    ///
    /// # Errors
    ///
    /// [`TryPopError::Closed`] once the ring is closed and drained,
    /// [`TryPopError::Empty`] if the deadline passed first.
    #[inline]
    pub fn get(&self, deadline: Option<Instant>) -> Result<M::Item, TryPopError> {
        // SAFETY: `get_with` passes an index below the capacity.
        self.get_with(|m, i| unsafe { m.read(i) }, deadline)
    }

    /// Puts as many items of `src` as fit now, in order: claims their
    /// slots one by one from the tail, stores the tail hint once, and
    /// wakes sleepers once; returns how many. Never blocks; returns 0 if
    /// the ring is full or closed.
    pub fn put_slice(&self, src: &[M::Item]) -> usize {
        let Some(&first) = src.first() else {
            return 0;
        };
        let st = self.mem.state();
        // Relaxed: a quick way out, as in `try_put_with`.
        if st.wait.closed.load(Ordering::Relaxed) != 0 {
            return 0;
        }
        let who = CLAIM | owner_bits(self.mem.me());
        // SYNC: Acquire, as in `try_put_with`.
        let tail = st.tail.tail.load(Ordering::Acquire);
        let Some(idx0) = self.slot_of(tail) else {
            return 0;
        };
        // Claim free slots from `tail` on, in order, until one is not.
        let want = src.len().min(self.cap);
        let mut n = 0;
        while n < want {
            let (pos, idx) = self.advance(tail, idx0, n);
            // SAFETY: idx < cap (from `advance`).
            let word = unsafe { self.mem.stamp(idx) };
            // SYNC: as the claiming CAS in `try_put_with`.
            if word
                .compare_exchange(
                    pos,
                    self.claim_at(who, pos),
                    Ordering::SeqCst,
                    Ordering::Acquire,
                )
                .is_err()
            {
                break;
            }
            n += 1;
        }
        if n == 0 {
            // Full, contended, stale or stalled: one item the careful way.
            return usize::from(self.try_put(first).is_ok());
        }
        let (end, _) = self.advance(tail, idx0, n);
        // SYNC: Release, as in `try_put_with`.
        store_release(&st.tail.tail, end);
        // SYNC: SeqCst, after the SeqCst claims: see "Close".
        if load_sc(&st.wait.closed) != 0 {
            for i in (0..n).rev() {
                let (pos, idx) = self.advance(tail, idx0, i);
                // SAFETY: idx < cap.
                self.give_up_put(unsafe { self.mem.stamp(idx) }, pos);
            }
            return 0;
        }
        for (i, v) in src[..n].iter().enumerate() {
            let (_, idx) = self.advance(tail, idx0, i);
            // SAFETY: idx < cap; positions tail..end are ours (claimed) and
            // their slots were free (the CASes read them with Acquire).
            unsafe { self.mem.write(idx, *v) };
        }
        // Last to first: consumers take positions in order and wait at a
        // claimed one, so none reaches slot i > 0 before it took slot 0,
        // whose store comes after all the others.
        for i in (1..n).rev() {
            let (pos, idx) = self.advance(tail, idx0, i);
            // SAFETY: idx < cap.
            // SYNC: Release: pairs with the Acquire of consumers' claiming
            // CASes (the value written above is visible).
            store_release(unsafe { self.mem.stamp(idx) }, pos.wrapping_add(1));
        }
        // SAFETY: idx0 < cap.
        // SYNC: as the stamp swap in `try_put_with` (Release for slot 0,
        // SeqCst for the `readable` Dekker pair).
        store_sc64(unsafe { self.mem.stamp(idx0) }, tail.wrapping_add(1));
        st.wait.readable.notify(self.mem.waiter());
        n
    }

    /// Takes up to `dst.len()` items into `dst`, oldest first: claims their
    /// slots one by one from the head, stores the head hint once, and wakes
    /// sleepers once; returns how many. Never blocks; returns 0 when empty
    /// (closed or not).
    pub fn get_into(&self, dst: &mut [M::Item]) -> usize {
        if dst.is_empty() {
            return 0;
        }
        let st = self.mem.state();
        let who = CLAIM | READING | owner_bits(self.mem.me());
        // SYNC: Acquire, as in `try_get_with`.
        let head = st.head.head.load(Ordering::Acquire);
        let Some(idx0) = self.slot_of(head) else {
            return 0;
        };
        let want = dst.len().min(self.cap);
        let mut n = 0;
        while n < want {
            let (pos, idx) = self.advance(head, idx0, n);
            // SAFETY: idx < cap (from `advance`).
            let word = unsafe { self.mem.stamp(idx) };
            // SYNC: as the claiming CAS in `try_get_with`.
            if word
                .compare_exchange(
                    pos.wrapping_add(1),
                    self.claim_at(who, pos),
                    Ordering::SeqCst,
                    Ordering::Acquire,
                )
                .is_err()
            {
                break;
            }
            n += 1;
        }
        if n == 0 {
            return match self.try_get() {
                Ok(v) => {
                    dst[0] = v;
                    1
                }
                Err(_) => 0,
            };
        }
        let (end, _) = self.advance(head, idx0, n);
        // SYNC: Release, as in `try_get_with`.
        store_release(&st.head.head, end);
        for (i, v) in dst[..n].iter_mut().enumerate() {
            let (_, idx) = self.advance(head, idx0, i);
            // SAFETY: idx < cap; positions head..end are ours (claimed) and
            // their slots written (the CASes read them with Acquire).
            *v = unsafe { self.mem.read(idx) };
        }
        // Wake the producers that sleep for room while the slots are still
        // claimed, as `release_read` does (the claiming CASes are the
        // state stores of that Dekker pair).
        st.wait.writable.notify(self.mem.waiter());
        // Last to first, as in `put_slice`: producers claim positions in
        // order and wait at a claimed one.
        for i in (1..n).rev() {
            let (pos, idx) = self.advance(head, idx0, i);
            // SAFETY: idx < cap.
            // SYNC: Release: pairs with the Acquire of producers' claiming
            // CASes (we are done reading the slot).
            store_release(
                unsafe { self.mem.stamp(idx) },
                pos.wrapping_add(self.one_lap),
            );
        }
        // SAFETY: idx0 < cap.
        // SYNC: as the stamp swap in `try_get_with`.
        store_sc64(
            unsafe { self.mem.stamp(idx0) },
            head.wrapping_add(self.one_lap),
        );
        st.wait.released.notify(self.mem.waiter());
        n
    }
}
