//! A bounded single-producer single-consumer ring, as in Lamport's
//! 1983 queue with the cached-index refinement of rtrb and Folly's
//! `ProducerConsumerQueue`: the producer owns the `tail` index, the consumer
//! owns `head`, and each side keeps a private copy of the other side's index,
//! re-reading the shared one only when its copy says "full" or "empty".
//! Blocking uses two [`EventCount`]s: `readable` (the consumer waits for an
//! item) and `writable` (the producer waits for room).
//!
//! # Indices
//!
//! `head` and `tail` are positions in the stream of items, counted from 0
//! and only ever increased (a `u64` does not wrap in practice); the slot of
//! position `p` is `p % capacity`, computed by the side that owns `p` and
//! then kept up to date by an increment-and-wrap, so the hot path never
//! divides. Items `head..tail` are in the ring; `tail - head <= capacity`.
//! Monotonic positions make a stale copy of the other side's index
//! harmless: it is never ahead of the truth, so it can only under-report
//! items or room.
//!
//! Each side re-reads its *own* shared index on every operation and
//! re-synchronises (slot index, cached copy) if it differs from the local
//! one: another handle used this end in between (the end was handed to
//! another process, or a forked child's copy was used). That keeps
//! sequential hand-over of an end correct; two handles using one end at the
//! same time is a user error that can lose or duplicate items, nothing
//! worse.
//!
//! # Bad shared state
//!
//! Shared indices are never trusted to address memory: slot indices are
//! always reduced modulo the locally known capacity, and a distance
//! `tail - head` above the capacity (a peer scribbled over the indices) is
//! treated as "no items" and "no room". A scribbler can make results wrong
//! or operations wait (until their timeout), never make us read or write
//! outside the slots.
//!
//! # Memory order
//!
//! The producer writes slots, then publishes `tail` with a `SeqCst` swap
//! (its Release half publishes the slots to the consumer's Acquire load of
//! `tail`; its SeqCst half is the state store of the eventcount's Dekker
//! pair). The consumer mirrors that with `head`: it reads slots, then
//! publishes `head`, so the producer's Acquire load of `head` lets it
//! overwrite them. The Dekker pair costs one locked instruction (`xchg`)
//! per publish, which is what "no system call when nobody waits" costs in
//! any eventcount; a batch publishes once, so batches amortise it.

use std::time::Instant;

use super::eventcount::EventCount;
use crate::loom::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::sync::raw::futex::{Waiter, load_sc};

/// A `SeqCst` load of a 64-bit index for the reading half of a Dekker pair;
/// under loom a `fetch_add(0)` (see
/// [`load_sc`] for why).
#[inline]
fn load_sc64(word: &AtomicU64) -> u64 {
    #[cfg(not(loom))]
    return word.load(Ordering::SeqCst);
    #[cfg(loom)]
    return word.fetch_add(0, Ordering::SeqCst);
}

/// A `SeqCst` store of an index or flag that the other side reads with
/// [`load_sc64`] / `load_sc`, done as a swap: on x86-64 a `SeqCst` store is
/// the same `xchg` instruction, and under loom, where those reads are
/// `fetch_add(0)`, loom keeps the modification order of a word total only
/// between read-modify-writes (a plain store racing a `fetch_add(0)` could
/// be ordered after it while the RMW read the older value).
#[inline]
fn store_sc64(word: &AtomicU64, value: u64) {
    word.swap(value, Ordering::SeqCst);
}

/// The producer's cache line: written only by the producer.
#[repr(C, align(64))]
#[derive(Debug)]
struct ProducerLine {
    /// Position after the last published item.
    tail: AtomicU64,
    /// Non-zero once the channel is closed.
    closed: AtomicU32,
}

/// The wait line: written only when somebody sleeps.
#[repr(C, align(64))]
#[derive(Debug)]
struct WaitLine {
    /// The consumer waits here for items (or the close).
    readable: EventCount,
    /// The producer waits here for room (or the close).
    writable: EventCount,
}

/// The consumer's cache line: written only by the consumer.
#[repr(C, align(64))]
#[derive(Debug)]
struct ConsumerLine {
    /// Position of the next item to take.
    head: AtomicU64,
}

/// A spacer, so that the consumer's line and slot 0 are 128 bytes apart.
#[repr(C, align(64))]
#[derive(Debug)]
struct Spacer([u8; 64]);

/// The shared words of an SPSC ring: heap-allocated (loom models) or in
/// mapped memory (the typed [`spsc`](crate::spsc) handles). Only ever
/// accessed through atomics; all-zero bytes are an empty, open ring.
///
/// ```text
/// +0    tail (u64), closed (u32)        producer's line
/// +64   readable, writable eventcounts  wait line
/// +128  head (u64)                      consumer's line
/// +192  spacer                          (slots follow at +256)
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct SpscState {
    producer: ProducerLine,
    wait: WaitLine,
    consumer: ConsumerLine,
    _spacer: Spacer,
}

/// Bytes of [`SpscState`] in shared memory.
#[cfg(not(loom))]
pub(crate) const STATE_BYTES: usize = 256;
#[cfg(not(loom))]
const _: () = assert!(size_of::<SpscState>() == STATE_BYTES && align_of::<SpscState>() == 64);

impl Default for SpscState {
    fn default() -> Self {
        Self::new()
    }
}

impl SpscState {
    /// An empty, open ring's words.
    pub fn new() -> Self {
        SpscState {
            producer: ProducerLine {
                tail: AtomicU64::new(0),
                closed: AtomicU32::new(0),
            },
            wait: WaitLine {
                readable: EventCount::new(),
                writable: EventCount::new(),
            },
            consumer: ConsumerLine {
                head: AtomicU64::new(0),
            },
            _spacer: Spacer([0; 64]),
        }
    }

    /// Closes the ring: later pushes fail, pops drain what is left and then
    /// report [`TryPopError::Closed`]. Wakes both sides if they sleep.
    /// Closing twice is harmless.
    pub fn close<W: Waiter>(&self, waiter: &W) {
        // SYNC: the Release half pairs with the Acquire load of `closed` in
        // `RawConsumer::empty_or_closed`: a consumer that sees the close
        // sees every `tail` published before it. SeqCst (a swap, see
        // `store_sc64`): the state store of both eventcounts' Dekker pairs,
        // with the SeqCst re-checks in `RawConsumer::pop_slow` and
        // `RawProducer::push_slow`.
        self.producer.closed.swap(1, Ordering::SeqCst);
        self.wait.readable.notify(waiter);
        self.wait.writable.notify(waiter);
    }

    /// Whether the ring was closed.
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.producer.closed.load(Ordering::Relaxed) != 0
    }

    /// Items in the ring now (a snapshot), `0..=capacity`.
    #[inline]
    pub fn len(&self, capacity: usize) -> usize {
        // Head first: tail only grows, so a tail read after head is at least
        // that head (unless a peer scribbled: then clamp).
        let head = self.consumer.head.load(Ordering::Relaxed);
        let tail = self.producer.tail.load(Ordering::Relaxed);
        let n = tail.wrapping_sub(head);
        if n > capacity as u64 {
            // Only a scribbled index gets here; "full" is as good an answer
            // as any and keeps `len <= capacity`.
            capacity
        } else {
            n as usize
        }
    }

    /// Announced waiters on the readable and writable eventcounts (a
    /// snapshot, for tests).
    #[cfg_attr(not(loom), allow(dead_code))] // used by the loom models
    pub fn waiters(&self) -> (u32, u32) {
        (self.wait.readable.waiters(), self.wait.writable.waiters())
    }
}

/// The memory an SPSC ring lives in: its [`SpscState`], its slots and the
/// futex to sleep on.
///
/// # Safety
///
/// [`state`](Self::state) must return the same state and
/// [`capacity`](Self::capacity) the same non-zero value on every call for as
/// long as the value lives; the slot accessors must be valid for every
/// index below that capacity. Callers of the `unsafe` accessors promise
/// `index + len <= capacity`; the producer and consumer in this module never
/// access one slot at the same time except when the shared indices were
/// scribbled over (then the implementation must still be memory-safe, as
/// volatile copies of `Pod` values are).
pub unsafe trait RingMemory {
    /// The slot type.
    type Item: Copy;
    /// The futex implementation sleepers use.
    type Waiter: Waiter;
    /// The shared index and wait words.
    fn state(&self) -> &SpscState;
    /// Number of slots (constant, at least 1).
    fn capacity(&self) -> usize;
    /// The futex to sleep on.
    fn waiter(&self) -> &Self::Waiter;
    /// Writes slot `index`.
    ///
    /// # Safety
    ///
    /// `index < capacity()`.
    unsafe fn write(&self, index: usize, value: Self::Item);
    /// Reads slot `index`.
    ///
    /// # Safety
    ///
    /// `index < capacity()`.
    unsafe fn read(&self, index: usize) -> Self::Item;
    /// Writes `src` to slots `index..index + src.len()`.
    ///
    /// # Safety
    ///
    /// `index + src.len() <= capacity()`.
    unsafe fn write_run(&self, index: usize, src: &[Self::Item]) {
        for (i, v) in src.iter().enumerate() {
            // SAFETY: index + i < index + src.len() <= capacity (caller).
            unsafe { self.write(index + i, *v) };
        }
    }
    /// Reads slots `index..index + dst.len()` into `dst`.
    ///
    /// # Safety
    ///
    /// `index + dst.len() <= capacity()`.
    unsafe fn read_run(&self, index: usize, dst: &mut [Self::Item]) {
        for (i, v) in dst.iter_mut().enumerate() {
            // SAFETY: index + i < index + dst.len() <= capacity (caller).
            *v = unsafe { self.read(index + i) };
        }
    }
}

/// A push refused without blocking; the value comes back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TryPushError<T> {
    /// The ring is full (or, from a timed push, was still full at the
    /// deadline).
    Full(T),
    /// The ring is closed.
    Closed(T),
}

impl<T> TryPushError<T> {
    /// The value that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            TryPushError::Full(v) | TryPushError::Closed(v) => v,
        }
    }

    /// Whether the ring was full (rather than closed).
    pub fn is_full(&self) -> bool {
        matches!(self, TryPushError::Full(_))
    }

    /// Whether the ring was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, TryPushError::Closed(_))
    }
}

impl<T> std::fmt::Debug for TryPushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryPushError::Full(_) => f.write_str("Full(..)"),
            TryPushError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> std::fmt::Display for TryPushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryPushError::Full(_) => f.write_str("the queue is full"),
            TryPushError::Closed(_) => f.write_str("the queue is closed"),
        }
    }
}

impl<T> std::error::Error for TryPushError<T> {}

/// A pop that got no item without blocking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryPopError {
    /// The ring is empty (or, from a timed pop, was still empty at the
    /// deadline) but not closed.
    #[error("the queue is empty")]
    Empty,
    /// The ring is closed and every item was taken.
    #[error("the queue is closed and empty")]
    Closed,
}

/// The channel is closed: a blocking push hands its value back
/// (`Closed<T>`), a blocking pop reports that every item was taken
/// (`Closed`, that is `Closed<()>`).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Closed<T = ()>(pub T);

impl<T> std::fmt::Debug for Closed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Closed(..)")
    }
}

impl<T> std::fmt::Display for Closed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the queue is closed")
    }
}

impl<T> std::error::Error for Closed<T> {}

/// Advances slot index `idx` by `n` (`n <= cap`) with wrap-around.
#[inline]
fn wrap_add(idx: usize, n: usize, cap: usize) -> usize {
    // idx < cap and n <= cap, so the sum is below 2 * cap, which fits:
    // capacity is bounded by the layout (a slot is at least a byte, or the
    // typed layer's own limit).
    let s = idx + n;
    if s >= cap { s - cap } else { s }
}

/// The producer end's private state over a [`RingMemory`].
#[derive(Debug)]
pub struct RawProducer<M: RingMemory> {
    mem: M,
    /// Capacity, read once.
    cap: usize,
    /// Our last published position (the shared `tail` unless another handle
    /// pushed since).
    tail: u64,
    /// `tail % cap`, kept by increments.
    tail_idx: usize,
    /// The consumer's `head`, as last read: never ahead of the shared one.
    cached_head: u64,
}

impl<M: RingMemory> RawProducer<M> {
    /// The producer end of the ring in `mem`, starting from its current
    /// shared indices.
    pub fn new(mem: M) -> Self {
        let cap = mem.capacity();
        let mut p = RawProducer {
            mem,
            cap,
            tail: 0,
            tail_idx: 0,
            cached_head: 0,
        };
        let t = p.mem.state().producer.tail.load(Ordering::Relaxed);
        p.resync(t);
        p
    }

    /// The ring's memory.
    #[inline]
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Re-reads our own shared index; re-synchronises if another handle
    /// moved it. Returns the tail to push at.
    #[inline]
    fn sync_tail(&mut self) -> u64 {
        // Relaxed: our own index; whoever used this end before us handed it
        // over by some synchronising means of its own (or is a misuse).
        let t = self.mem.state().producer.tail.load(Ordering::Relaxed);
        if t != self.tail {
            self.resync(t);
        }
        t
    }

    #[cold]
    fn resync(&mut self, t: u64) {
        self.tail = t;
        self.tail_idx = (t % self.cap as u64) as usize;
        // SYNC: pairs with the SeqCst (Release) swap publishing `head` in
        // `RawConsumer::publish`: slots below `head` were read before it.
        self.cached_head = self.mem.state().consumer.head.load(Ordering::Acquire);
    }

    /// Free slots according to `head` (0 if the distance is impossible).
    #[inline]
    fn room(&self, head: u64) -> usize {
        let used = self.tail.wrapping_sub(head);
        // A distance above capacity means a scribbled (or, across a
        // hand-over, stale) index: no room.
        (self.cap as u64).saturating_sub(used) as usize
    }

    /// Free slots, refreshing the cached head if fewer than `want`.
    #[inline]
    fn room_for(&mut self, want: usize) -> usize {
        let room = self.room(self.cached_head);
        if room >= want {
            return room;
        }
        // SYNC: pairs with the SeqCst (Release) swap publishing `head` in
        // `RawConsumer::publish`: the consumer read those slots before it
        // published, so we may overwrite them.
        self.cached_head = self.mem.state().consumer.head.load(Ordering::Acquire);
        self.room(self.cached_head)
    }

    /// Publishes `n` more items (already written), then notifies a sleeping
    /// consumer.
    #[inline]
    fn publish(&mut self, n: usize) {
        self.tail = self.tail.wrapping_add(n as u64);
        self.tail_idx = wrap_add(self.tail_idx, n, self.cap);
        let st = self.mem.state();
        // SYNC: the Release half pairs with the Acquire loads of `tail` in
        // `RawConsumer::available_for` and `resync` (the slots written before
        // are visible to the consumer), and with the SeqCst re-check in
        // `RawConsumer::pop_slow`; the SeqCst half is the state store of the
        // `readable` eventcount's Dekker pair (see `EventCount::notify`).
        store_sc64(&st.producer.tail, self.tail);
        st.wait.readable.notify(self.mem.waiter());
    }

    /// Pushes `value` if there is room, without blocking. Makes no system
    /// call unless the consumer sleeps.
    ///
    /// # Errors
    ///
    /// [`TryPushError::Closed`] after [`SpscState::close`],
    /// [`TryPushError::Full`] if there is no room.
    #[inline]
    pub fn try_push(&mut self, value: M::Item) -> Result<(), TryPushError<M::Item>> {
        // Relaxed: only the producer closes; a close by another handle of
        // this end was handed over with the end.
        if self.mem.state().producer.closed.load(Ordering::Relaxed) != 0 {
            return Err(TryPushError::Closed(value));
        }
        self.sync_tail();
        if self.room_for(1) == 0 {
            return Err(TryPushError::Full(value));
        }
        // SAFETY: tail_idx < cap (it is always reduced modulo cap), and the
        // slot is free: head (as read with Acquire above) is past it.
        unsafe { self.mem.write(self.tail_idx, value) };
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
        loop {
            let woke = {
                let st = self.mem.state();
                let tail = self.tail;
                let cap = self.cap as u64;
                st.wait
                    .writable
                    .wait_until(self.mem.waiter(), deadline, || {
                        // SYNC: reading half of the waiter's side of the
                        // `writable` Dekker pair: pairs with the SeqCst swaps of
                        // `head` in `RawConsumer::publish` and of `closed` in
                        // `SpscState::close`.
                        load_sc(&st.producer.closed) != 0
                            || tail.wrapping_sub(load_sc64(&st.consumer.head)) < cap
                    })
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
        if src.is_empty() || self.mem.state().producer.closed.load(Ordering::Relaxed) != 0 {
            return 0;
        }
        self.sync_tail();
        let n = self.room_for(src.len()).min(src.len());
        if n == 0 {
            return 0;
        }
        let first = n.min(self.cap - self.tail_idx);
        // SAFETY: tail_idx + first <= cap, and the rest (n - first <= cap)
        // starts at slot 0; all n slots are free (n <= room).
        unsafe {
            self.mem.write_run(self.tail_idx, &src[..first]);
            self.mem.write_run(0, &src[first..n]);
        }
        self.publish(n);
        n
    }

    /// Closes the ring (see [`SpscState::close`]).
    pub fn close(&self) {
        self.mem.state().close(self.mem.waiter());
    }
}

/// The consumer end's private state over a [`RingMemory`].
#[derive(Debug)]
pub struct RawConsumer<M: RingMemory> {
    mem: M,
    /// Capacity, read once.
    cap: usize,
    /// Our last published position.
    head: u64,
    /// `head % cap`, kept by increments.
    head_idx: usize,
    /// The producer's `tail`, as last read: never ahead of the shared one.
    cached_tail: u64,
}

impl<M: RingMemory> RawConsumer<M> {
    /// The consumer end of the ring in `mem`, starting from its current
    /// shared indices.
    pub fn new(mem: M) -> Self {
        let cap = mem.capacity();
        let mut c = RawConsumer {
            mem,
            cap,
            head: 0,
            head_idx: 0,
            cached_tail: 0,
        };
        let h = c.mem.state().consumer.head.load(Ordering::Relaxed);
        c.resync(h);
        c
    }

    /// The ring's memory.
    #[inline]
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Re-reads our own shared index; re-synchronises if another handle
    /// moved it.
    #[inline]
    fn sync_head(&mut self) {
        // Relaxed: our own index (see `RawProducer::sync_tail`).
        let h = self.mem.state().consumer.head.load(Ordering::Relaxed);
        if h != self.head {
            self.resync(h);
        }
    }

    #[cold]
    fn resync(&mut self, h: u64) {
        self.head = h;
        self.head_idx = (h % self.cap as u64) as usize;
        // SYNC: pairs with the SeqCst (Release) swap publishing `tail` in
        // `RawProducer::publish`.
        self.cached_tail = self.mem.state().producer.tail.load(Ordering::Acquire);
    }

    /// Items according to `tail` (0 if the distance is impossible).
    #[inline]
    fn items(&self, tail: u64) -> usize {
        let n = tail.wrapping_sub(self.head);
        // Above capacity: a scribbled index; nothing to trust, no items.
        if n > self.cap as u64 { 0 } else { n as usize }
    }

    /// Items available, refreshing the cached tail if fewer than `want`.
    #[inline]
    fn available_for(&mut self, want: usize) -> usize {
        let n = self.items(self.cached_tail);
        if n >= want {
            return n;
        }
        // SYNC: pairs with the SeqCst (Release) swap publishing `tail` in
        // `RawProducer::publish`: the slots below it were written before.
        self.cached_tail = self.mem.state().producer.tail.load(Ordering::Acquire);
        self.items(self.cached_tail)
    }

    /// After finding no item: `Closed` if the ring is closed and, looked at
    /// again after seeing the close, still empty; else `Empty`.
    #[cold]
    fn empty_or_closed(&mut self) -> Result<(), TryPopError> {
        // SYNC: pairs with the SeqCst (Release) swap in `SpscState::close`:
        // every tail published before the close is visible below.
        if self.mem.state().producer.closed.load(Ordering::Acquire) == 0 {
            return Err(TryPopError::Empty);
        }
        if self.available_for(1) == 0 {
            Err(TryPopError::Closed)
        } else {
            Ok(())
        }
    }

    /// Publishes that `n` more items were taken, then notifies a sleeping
    /// producer.
    #[inline]
    fn publish(&mut self, n: usize) {
        self.head = self.head.wrapping_add(n as u64);
        self.head_idx = wrap_add(self.head_idx, n, self.cap);
        let st = self.mem.state();
        // SYNC: the Release half pairs with the Acquire loads of `head` in
        // `RawProducer::room_for` and `resync` (we are done reading those
        // slots), and with the SeqCst re-check in `RawProducer::push_slow`;
        // the SeqCst half is the state store of the `writable` eventcount's
        // Dekker pair.
        store_sc64(&st.consumer.head, self.head);
        st.wait.writable.notify(self.mem.waiter());
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
        self.sync_head();
        if self.available_for(1) == 0 {
            self.empty_or_closed()?;
        }
        // SAFETY: head_idx < cap (always reduced modulo cap); the slot holds
        // a published item (tail, read with Acquire, is past it).
        let v = unsafe { self.mem.read(self.head_idx) };
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
        loop {
            let woke = {
                let st = self.mem.state();
                let head = self.head;
                let cap = self.cap as u64;
                st.wait
                    .readable
                    .wait_until(self.mem.waiter(), deadline, || {
                        // SYNC: reading half of the waiter's side of the
                        // `readable` Dekker pair: pairs with the SeqCst swaps of
                        // `tail` in `RawProducer::publish` and of `closed` in
                        // `SpscState::close`. An impossible distance (a scribbled
                        // tail) counts as empty, as in `items`, so we sleep
                        // rather than spin on it.
                        load_sc(&st.producer.closed) != 0
                            || (1..=cap).contains(&load_sc64(&st.producer.tail).wrapping_sub(head))
                    })
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
        self.sync_head();
        let n = self.available_for(dst.len()).min(dst.len());
        if n == 0 {
            return 0;
        }
        let first = n.min(self.cap - self.head_idx);
        let (a, b) = dst[..n].split_at_mut(first);
        // SAFETY: head_idx + first <= cap, and the rest (n - first <= cap)
        // starts at slot 0; all n slots hold published items (n <= items).
        unsafe {
            self.mem.read_run(self.head_idx, a);
            self.mem.read_run(0, b);
        }
        self.publish(n);
        n
    }
}
