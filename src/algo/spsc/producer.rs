//! [`RawProducer`]: the producer end (push, blocking push, batch push).

use std::time::Instant;

use super::cursor::Cursor;
use super::error::TryPushError;
use super::memory::RingMemory;
use super::state::Fencing;
use super::{PEER_LOOK, PEER_LOOK_MAX, publish_index, slice_end};
use crate::loom::atomic::Ordering;
use crate::loom::{load_sc, load_sc64};

/// The producer end's private state over a [`RingMemory`].
#[derive(Debug)]
pub struct RawProducer<M: RingMemory> {
    mem: M,
    /// Capacity, read once.
    cap: usize,
    /// Our position (after the last item we published) and how far the
    /// consumer's `head`, as last read, lets us go. The shared `tail` is a
    /// copy for the consumer; we never read it back after [`Self::new`].
    /// `head` as read is never ahead of the shared one, so the limit only
    /// under-reports room.
    at: Cursor,
    /// Publish with a `Release` store and
    /// [`EventCount::notify_light`](crate::algo::eventcount::EventCount::notify_light)
    /// (the ring is asymmetric and this process receives heavy barriers);
    /// otherwise with a `SeqCst` swap.
    light: bool,
    /// The ring is asymmetric: a sleeping producer issues the heavy barrier.
    heavy: bool,
}

impl<M: RingMemory> RawProducer<M> {
    /// The producer end of the ring in `mem`, starting from the ring's
    /// current shared `tail` (where the last handle of this end left it).
    pub fn new(mem: M) -> Self {
        let cap = mem.capacity();
        let st = mem.state();
        let heavy = st.fencing() == Fencing::Asymmetric;
        let light = heavy && mem.receives_heavy_barrier();
        // Relaxed: our own index; whoever used this end before us handed it
        // over by some synchronising means of its own (or it is a misuse).
        let tail = st.producer.tail.load(Ordering::Relaxed);
        let mut p = RawProducer {
            cap,
            at: Cursor::at(tail, cap),
            light,
            heavy,
            mem,
        };
        p.refresh_room();
        p
    }

    /// The ring's memory.
    #[inline]
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Whether this end publishes with the light half of an asymmetric
    /// fence.
    #[inline]
    pub fn is_light(&self) -> bool {
        self.light
    }

    /// Re-reads the consumer's `head` and recounts the free slots (0 if the
    /// distance is impossible: a scribbled `head`).
    #[inline]
    fn refresh_room(&mut self) -> usize {
        // SYNC: pairs with the Release store (or SeqCst swap) publishing
        // `head` in `RawConsumer::publish`: the consumer read those slots
        // before it published, so we may overwrite them.
        let head = self.mem.state().consumer.head.load(Ordering::Acquire);
        self.at
            .set_limit(head.wrapping_add(self.cap as u64), self.cap)
    }

    /// Free slots, re-reading `head` if fewer than `want` are known.
    #[inline]
    fn room_for(&mut self, want: usize) -> usize {
        let room = self.at.available();
        if room >= want {
            return room;
        }
        self.refresh_room()
    }

    /// Publishes `n` more items (already written), then notifies a sleeping
    /// consumer.
    #[inline]
    fn publish(&mut self, n: usize) {
        self.at.move_on(n, self.cap);
        let st = self.mem.state();
        // SYNC: `tail` (Release) pairs with the Acquire loads of `tail` in
        // `RawConsumer::refresh_avail` (also run by `RawConsumer::new`) and
        // the re-check in `RawConsumer::pop_slow`: the slots written before
        // are visible to the consumer. The Dekker pair is `readable`'s.
        publish_index(
            &st.producer.tail,
            self.at.pos(),
            &st.wait.readable,
            self.light,
            self.mem.waiter(),
        );
    }

    /// Pushes `value` if there is room, without blocking. Makes no system
    /// call unless the consumer sleeps.
    ///
    /// # Errors
    ///
    /// [`TryPushError::Closed`] after
    /// [`SpscState::close`](super::SpscState::close),
    /// [`TryPushError::Full`] if there is no room.
    #[inline]
    pub fn try_push(&mut self, value: M::Item) -> Result<(), TryPushError<M::Item>> {
        // Relaxed: only the producer closes (or a consumer that found every
        // holder of this end dead); a close by another handle of this end
        // was handed over with the end.
        if self.mem.state().wait.closed.load(Ordering::Relaxed) != 0 {
            return Err(TryPushError::Closed(value));
        }
        if self.at.pos() == self.at.limit && self.refresh_room() == 0 {
            return Err(TryPushError::Full(value));
        }
        // SAFETY: the slot index is below cap (the cursor keeps it so), and
        // the slot is free: head (as read with Acquire) is past it.
        unsafe { self.mem.write(self.at.idx, value) };
        self.publish(1);
        Ok(())
    }

    /// Pushes `value`, waiting for room until `deadline` (`None`: as long as
    /// it takes): spins briefly, then sleeps on the `writable` eventcount.
    ///
    /// # Errors
    ///
    /// [`TryPushError::Closed`] if the ring is (or gets) closed,
    /// [`TryPushError::Full`] if the deadline passed first.
    #[inline]
    pub fn push(
        &mut self,
        value: M::Item,
        deadline: Option<Instant>,
    ) -> Result<(), TryPushError<M::Item>> {
        match self.try_push(value) {
            Err(TryPushError::Full(v)) => self.push_slow(v, deadline),
            done => done,
        }
    }

    #[cold]
    fn push_slow(
        &mut self,
        mut value: M::Item,
        deadline: Option<Instant>,
    ) -> Result<(), TryPushError<M::Item>> {
        if !self.mem.watches_peer() {
            return self.push_until(value, deadline);
        }
        let mut slice = PEER_LOOK;
        loop {
            match self.push_until(value, Some(slice_end(deadline, slice))) {
                Err(TryPushError::Full(v)) => value = v,
                done => return done,
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(TryPushError::Full(value));
            }
            if self.mem.peer_gone() {
                // Nobody will ever pop again: close, and fail.
                self.mem.state().close(self.mem.waiter());
                return self.try_push(value);
            }
            slice = (slice * 2).min(PEER_LOOK_MAX);
        }
    }

    /// [`push`](Self::push)'s wait, in one piece until `deadline`.
    fn push_until(
        &mut self,
        mut value: M::Item,
        deadline: Option<Instant>,
    ) -> Result<(), TryPushError<M::Item>> {
        loop {
            let woke = {
                let mem = &self.mem;
                let st = mem.state();
                let tail = self.at.pos();
                let cap = self.cap as u64;
                let writable = &st.wait.writable;
                if self.heavy {
                    writable.wait_until_fenced(
                        mem.waiter(),
                        deadline,
                        || mem.heavy_barrier(),
                        || {
                            // SYNC: reading half of the waiter's side of the
                            // asymmetric `writable` Dekker pair, after the
                            // announcement and the heavy barrier: pairs with
                            // the Release stores (or SeqCst swaps) of `head`
                            // in `RawConsumer::publish` and the SeqCst swap
                            // of `closed` in `SpscState::close`.
                            st.wait.closed.load(Ordering::Acquire) != 0
                                || tail.wrapping_sub(st.consumer.head.load(Ordering::Acquire)) < cap
                        },
                    )
                } else {
                    writable.wait_until(mem.waiter(), deadline, || {
                        // SYNC: reading half of the waiter's side of the
                        // symmetric `writable` Dekker pair: pairs with the
                        // SeqCst swaps of `head` in `RawConsumer::publish`
                        // and of `closed` in `SpscState::close`.
                        load_sc(&st.wait.closed) != 0
                            || tail.wrapping_sub(load_sc64(&st.consumer.head)) < cap
                    })
                }
            };
            match self.try_push(value) {
                Err(TryPushError::Full(v)) if woke => value = v,
                done => return done,
            }
        }
    }

    /// Pushes as many items of `src` as fit now, in order, with one index
    /// publish; returns how many. Never blocks; returns 0 if the ring is
    /// full or closed.
    #[inline]
    pub fn push_slice(&mut self, src: &[M::Item]) -> usize {
        if src.is_empty() || self.mem.state().wait.closed.load(Ordering::Relaxed) != 0 {
            return 0;
        }
        let n = self.room_for(src.len()).min(src.len());
        if n == 0 {
            return 0;
        }
        let idx = self.at.idx;
        let first = n.min(self.cap - idx);
        // SAFETY: idx + first <= cap, and the rest (n - first <= cap)
        // starts at slot 0; all n slots are free (n <= room).
        unsafe {
            self.mem.write_run(idx, &src[..first]);
            self.mem.write_run(0, &src[first..n]);
        }
        self.publish(n);
        n
    }

    /// Closes the ring (see [`SpscState::close`](super::SpscState::close)).
    pub fn close(&self) {
        self.mem.state().close(self.mem.waiter());
    }
}
