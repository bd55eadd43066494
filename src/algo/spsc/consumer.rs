//! [`RawConsumer`]: the consumer end (pop, blocking pop, batch pop).

use std::time::Instant;

use super::cursor::Cursor;
use super::error::TryPopError;
use super::memory::RingMemory;
use super::state::Fencing;
use super::{PEER_LOOK, PEER_LOOK_MAX, publish_index, slice_end};
use crate::loom::atomic::Ordering;
use crate::loom::{load_sc, load_sc64};

/// The consumer end's private state over a [`RingMemory`].
#[derive(Debug)]
pub struct RawConsumer<M: RingMemory> {
    mem: M,
    /// Capacity, read once.
    cap: usize,
    /// Our position (the next item to take) and the producer's `tail` as
    /// last read (never ahead of the shared one). The shared `head` is a copy
    /// for the producer; we never read it back after [`Self::new`].
    at: Cursor,
    /// Publish with a `Release` store and
    /// [`EventCount::notify_light`](crate::algo::eventcount::EventCount::notify_light);
    /// otherwise with a `SeqCst` swap (see [`RawProducer`](super::RawProducer)).
    light: bool,
    /// The ring is asymmetric: a sleeping consumer issues the heavy barrier.
    heavy: bool,
}

impl<M: RingMemory> RawConsumer<M> {
    /// The consumer end of the ring in `mem`, starting from the ring's
    /// current shared `head` (where the last handle of this end left it).
    pub fn new(mem: M) -> Self {
        let cap = mem.capacity();
        let st = mem.state();
        let heavy = st.fencing() == Fencing::Asymmetric;
        let light = heavy && mem.receives_heavy_barrier();
        // Relaxed: our own index (see `RawProducer::new`).
        let head = st.consumer.head.load(Ordering::Relaxed);
        let mut c = RawConsumer {
            cap,
            at: Cursor::at(head, cap),
            light,
            heavy,
            mem,
        };
        c.refresh_avail();
        c
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

    /// Re-reads the producer's `tail` and recounts the items (0 if the
    /// distance is impossible: a scribbled `tail`).
    #[inline]
    fn refresh_avail(&mut self) -> usize {
        // SYNC: pairs with the Release store (or SeqCst swap) publishing
        // `tail` in `RawProducer::publish`: the slots below it were written
        // before.
        let tail = self.mem.state().producer.tail.load(Ordering::Acquire);
        // More than the capacity ahead: a scribbled index; nothing to
        // trust, no items.
        self.at.set_limit(tail, self.cap)
    }

    /// Items available, re-reading `tail` if fewer than `want` are known.
    #[inline]
    fn available_for(&mut self, want: usize) -> usize {
        let n = self.at.available();
        if n >= want {
            return n;
        }
        self.refresh_avail()
    }

    /// After finding no item: `Closed` if the ring is closed and, looked at
    /// again after seeing the close, still empty; else `Empty`.
    #[cold]
    fn empty_or_closed(&mut self) -> Result<(), TryPopError> {
        // SYNC: pairs with the SeqCst (Release) swap in `SpscState::close`:
        // every tail published before the close is visible below.
        if self.mem.state().wait.closed.load(Ordering::Acquire) == 0 {
            return Err(TryPopError::Empty);
        }
        if self.refresh_avail() == 0 {
            Err(TryPopError::Closed)
        } else {
            Ok(())
        }
    }

    /// Publishes that `n` more items were taken, then notifies a sleeping
    /// producer.
    #[inline]
    fn publish(&mut self, n: usize) {
        self.at.move_on(n, self.cap);
        let st = self.mem.state();
        // SYNC: `head` (Release) pairs with the Acquire loads of `head` in
        // `RawProducer::refresh_room` (also run by `RawProducer::new`) and
        // the re-check in `RawProducer::push_slow`: we are done reading
        // those slots. The Dekker pair is `writable`'s.
        publish_index(
            &st.consumer.head,
            self.at.pos(),
            &st.wait.writable,
            self.light,
            self.mem.waiter(),
        );
    }

    /// Takes the oldest item if there is one, without blocking. Makes no
    /// system call unless the producer sleeps.
    ///
    /// # Errors
    ///
    /// [`TryPopError::Empty`] if there is no item,
    /// [`TryPopError::Closed`] if there is none and the ring is closed.
    #[inline]
    pub fn try_pop(&mut self) -> Result<M::Item, TryPopError> {
        if self.at.pos() == self.at.limit && self.refresh_avail() == 0 {
            self.empty_or_closed()?;
        }
        // SAFETY: the slot index is below cap (the cursor keeps it so); the
        // slot holds a published item (tail, read with Acquire, is past it).
        let v = unsafe { self.mem.read(self.at.idx) };
        self.publish(1);
        Ok(v)
    }

    /// Takes the oldest item, waiting until `deadline` (`None`: as long as
    /// it takes): spins briefly, then sleeps on the `readable` eventcount.
    ///
    /// # Errors
    ///
    /// [`TryPopError::Closed`] once the ring is closed and drained,
    /// [`TryPopError::Empty`] if the deadline passed first.
    #[inline]
    pub fn pop(&mut self, deadline: Option<Instant>) -> Result<M::Item, TryPopError> {
        match self.try_pop() {
            Err(TryPopError::Empty) => self.pop_slow(deadline),
            done => done,
        }
    }

    #[cold]
    fn pop_slow(&mut self, deadline: Option<Instant>) -> Result<M::Item, TryPopError> {
        if !self.mem.watches_peer() {
            return self.pop_until(deadline);
        }
        let mut slice = PEER_LOOK;
        loop {
            match self.pop_until(Some(slice_end(deadline, slice))) {
                Err(TryPopError::Empty) => {}
                done => return done,
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(TryPopError::Empty);
            }
            if self.mem.peer_gone() {
                // Nobody will ever push again: close, then drain.
                self.mem.state().close(self.mem.waiter());
                return self.try_pop();
            }
            slice = (slice * 2).min(PEER_LOOK_MAX);
        }
    }

    /// [`pop`](Self::pop)'s wait, in one piece until `deadline`.
    fn pop_until(&mut self, deadline: Option<Instant>) -> Result<M::Item, TryPopError> {
        loop {
            let woke = {
                let mem = &self.mem;
                let st = mem.state();
                let head = self.at.pos();
                let cap = self.cap as u64;
                let readable = &st.wait.readable;
                // An impossible distance (a scribbled tail) counts as empty,
                // as in `refresh_avail`, so we sleep rather than spin on it.
                let has_item = |tail: u64| (1..=cap).contains(&tail.wrapping_sub(head));
                if self.heavy {
                    readable.wait_until_fenced(
                        mem.waiter(),
                        deadline,
                        || mem.heavy_barrier(),
                        || {
                            // SYNC: reading half of the waiter's side of the
                            // asymmetric `readable` Dekker pair, after the
                            // announcement and the heavy barrier: pairs with
                            // the Release stores (or SeqCst swaps) of `tail`
                            // in `RawProducer::publish` and the SeqCst swap
                            // of `closed` in `SpscState::close`.
                            st.wait.closed.load(Ordering::Acquire) != 0
                                || has_item(st.producer.tail.load(Ordering::Acquire))
                        },
                    )
                } else {
                    readable.wait_until(mem.waiter(), deadline, || {
                        // SYNC: reading half of the waiter's side of the
                        // symmetric `readable` Dekker pair: pairs with the
                        // SeqCst swaps of `tail` in `RawProducer::publish`
                        // and of `closed` in `SpscState::close`.
                        load_sc(&st.wait.closed) != 0 || has_item(load_sc64(&st.producer.tail))
                    })
                }
            };
            match self.try_pop() {
                Err(TryPopError::Empty) if woke => {}
                done => return done,
            }
        }
    }

    /// Takes up to `dst.len()` items into `dst`, oldest first, with one
    /// index publish; returns how many. Never blocks; returns 0 when empty
    /// (closed or not).
    #[inline]
    pub fn pop_into(&mut self, dst: &mut [M::Item]) -> usize {
        if dst.is_empty() {
            return 0;
        }
        let n = self.available_for(dst.len()).min(dst.len());
        if n == 0 {
            return 0;
        }
        let idx = self.at.idx;
        let first = n.min(self.cap - idx);
        let (a, b) = dst[..n].split_at_mut(first);
        // SAFETY: idx + first <= cap, and the rest (n - first <= cap)
        // starts at slot 0; all n slots hold published items (n <= items).
        unsafe {
            self.mem.read_run(idx, a);
            self.mem.read_run(0, b);
        }
        self.publish(n);
        n
    }
}
