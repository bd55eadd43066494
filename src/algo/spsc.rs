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
//! Each end keeps its *own* position in the handle, as rtrb does, and only
//! ever writes the shared copy: the hot path reads no shared word but the
//! other side's index (when its cached copy runs out) and the read-mostly
//! wait line. A handle reads the shared copy of its own position once, when
//! it is made ([`RawProducer::new`], [`RawConsumer::new`]), so a handle
//! attached in another process starts where the end was left. A *copy* of a
//! handle (a forked child's) does not see what another copy did since: using
//! an end again after another copy moved it is a misuse that can lose,
//! duplicate or garble items, nothing worse; the way back is a fresh handle.
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
//! The producer writes slots, then publishes `tail` with a `Release` store
//! (the consumer's `Acquire` load of `tail` then sees the slots). The
//! consumer mirrors that with `head`: it reads slots, then publishes `head`,
//! so the producer's `Acquire` load of `head` lets it overwrite them.
//!
//! Publishing an index is also the state store of an eventcount's Dekker
//! pair ("publish, then look for a sleeper" against the sleeper's "announce,
//! then re-check the index"). How that pair is fenced is fixed when the ring
//! is made ([`Fencing`], a word in the shared state):
//!
//! * [`Fencing::Symmetric`]: the publish is a `SeqCst` swap (one `xchg`, a
//!   locked instruction that waits until the store owns the cache line the
//!   other side keeps reading), and waiters re-check with `SeqCst` loads.
//! * [`Fencing::Asymmetric`]: the publish is a plain `Release` store and a
//!   compiler fence ([`EventCount::notify_light`]); a waiter, after
//!   announcing itself, issues the heavy barrier of
//!   [`RingMemory::heavy_barrier`] (Linux `membarrier`), so the fence costs
//!   nothing per item and a few microseconds per sleep. An end whose process
//!   does not receive heavy barriers ([`RingMemory::receives_heavy_barrier`])
//!   publishes symmetrically even in such a ring, which is correct against
//!   either kind of waiter.
//!
//! `close` is always a `SeqCst` swap followed by a `SeqCst` read of the
//! waiters: rare, and correct against both kinds of waiter.

use std::time::Instant;

use super::eventcount::EventCount;
use crate::algo::wait::Waiter;
use crate::loom::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::loom::{load_sc, load_sc64, store_sc64};

/// Publishes an end's new position `pos` in its shared index `word` and
/// notifies the other end's sleepers on `ec`.
///
/// The store's Release half publishes what the end did to the slots (see
/// the callers). With `light` the eventcount's Dekker pair is asymmetric:
/// this plain store, then the light barrier and the read of `waiters` in
/// `notify_light`, against the sleeper's announcement, heavy barrier and
/// re-check. Otherwise the store is a SeqCst swap, the state store of the
/// symmetric pair (see `EventCount::notify`), against the sleeper's SeqCst
/// (or heavy barrier and Acquire) re-check.
#[inline]
fn publish_index<W: Waiter>(word: &AtomicU64, pos: u64, ec: &EventCount, light: bool, waiter: &W) {
    if light {
        // SYNC: Release; the asymmetric Dekker pair (above).
        word.store(pos, Ordering::Release);
        ec.notify_light(waiter);
    } else {
        // SYNC: Release and the SeqCst state store of the symmetric pair.
        store_sc64(word, pos);
        ec.notify(waiter);
    }
}

/// How the Dekker pairs of a ring are fenced (see the module
/// documentation); fixed when the ring is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fencing {
    /// `SeqCst` publishes and re-checks: a locked instruction per publish.
    Symmetric,
    /// `Release` publishes with a compiler fence; sleepers issue a heavy
    /// barrier before their re-check.
    Asymmetric,
}

/// The word value of [`Fencing::Asymmetric`]; any other value (0 in a
/// zeroed ring) reads as [`Fencing::Symmetric`].
const ASYMMETRIC: u32 = 1;

/// The producer's cache line: written only by the producer.
#[repr(C, align(64))]
#[derive(Debug)]
struct ProducerLine {
    /// Position after the last published item.
    tail: AtomicU64,
}

/// The wait line: read on every publish, written only when somebody sleeps
/// or closes (so it stays in both sides' caches).
#[repr(C, align(64))]
#[derive(Debug)]
struct WaitLine {
    /// The consumer waits here for items (or the close).
    readable: EventCount,
    /// The producer waits here for room (or the close).
    writable: EventCount,
    /// Non-zero once the channel is closed.
    closed: AtomicU32,
    /// [`ASYMMETRIC`] or not; written before the ring is published, read
    /// when an end is made.
    fencing: AtomicU32,
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
/// accessed through atomics; all-zero bytes are an empty, open ring with
/// [`Fencing::Symmetric`].
///
/// ```text
/// +0    tail (u64)                                  producer's line
/// +64   readable, writable eventcounts, closed,     wait line
///       fencing (u32 each)
/// +128  head (u64)                                  consumer's line
/// +192  spacer                                      (slots follow at +256)
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
    /// An empty, open ring's words, fenced symmetrically.
    pub fn new() -> Self {
        Self::with_fencing(Fencing::Symmetric)
    }

    /// An empty, open ring's words, fenced as `fencing` says.
    pub fn with_fencing(fencing: Fencing) -> Self {
        let st = SpscState {
            producer: ProducerLine {
                tail: AtomicU64::new(0),
            },
            wait: WaitLine {
                readable: EventCount::new(),
                writable: EventCount::new(),
                closed: AtomicU32::new(0),
                fencing: AtomicU32::new(0),
            },
            consumer: ConsumerLine {
                head: AtomicU64::new(0),
            },
            _spacer: Spacer([0; 64]),
        };
        st.init_fencing(fencing);
        st
    }

    /// Sets the fencing of a ring nobody uses yet (in shared memory: before
    /// the object's header is published, whose `Release` store makes it
    /// visible to every process that attaches).
    pub(crate) fn init_fencing(&self, fencing: Fencing) {
        let word = match fencing {
            Fencing::Symmetric => 0,
            Fencing::Asymmetric => ASYMMETRIC,
        };
        // Relaxed: published with the ring (see above).
        self.wait.fencing.store(word, Ordering::Relaxed);
    }

    /// The ring's fencing, as written when it was made.
    pub fn fencing(&self) -> Fencing {
        // Relaxed: written before the ring was handed to anyone (see
        // `init_fencing`).
        if self.wait.fencing.load(Ordering::Relaxed) == ASYMMETRIC {
            Fencing::Asymmetric
        } else {
            Fencing::Symmetric
        }
    }

    /// Closes the ring: later pushes fail, pops drain what is left and then
    /// report [`TryPopError::Closed`]. Wakes both sides if they sleep.
    /// Closing twice is harmless.
    pub fn close<W: Waiter>(&self, waiter: &W) {
        // SYNC: the Release half pairs with the Acquire loads of `closed` in
        // `RawConsumer::empty_or_closed` and in the waiters' re-checks: a
        // consumer that sees the close sees every `tail` published before
        // it. SeqCst (a swap, see `store_sc64`), then the SeqCst reads of
        // `waiters` in `notify`: the state store of both eventcounts'
        // Dekker pairs, with the re-checks in `RawConsumer::pop_slow` and
        // `RawProducer::push_slow` (SeqCst loads, or Acquire loads after a
        // heavy barrier: either way a full fence on both sides).
        self.wait.closed.swap(1, Ordering::SeqCst);
        self.wait.readable.notify(waiter);
        self.wait.writable.notify(waiter);
    }

    /// Whether the ring was closed.
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.wait.closed.load(Ordering::Relaxed) != 0
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
///
/// [`receives_heavy_barrier`](Self::receives_heavy_barrier) may return
/// `true` only if every later [`heavy_barrier`](Self::heavy_barrier) that
/// returns `true`, issued by any user of a ring of this memory, makes every
/// thread of this process that may use the ring execute a full memory fence
/// (or pass through one, as a thread that is not running does) before it
/// returns: the light side of the asymmetric Dekker pair relies on it.
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
    /// Whether this process's threads take part in every
    /// [`heavy_barrier`](Self::heavy_barrier) (asked once, when an end is
    /// made, and only of a ring with [`Fencing::Asymmetric`]); an end whose
    /// answer is `false` publishes with `SeqCst` swaps.
    fn receives_heavy_barrier(&self) -> bool;
    /// The heavy half of an asymmetric fence: a full memory fence on every
    /// thread of every process that [receives](Self::receives_heavy_barrier)
    /// it, and on the caller's. Returns `false` if it could not be done
    /// (the waiter then sleeps in short slices).
    fn heavy_barrier(&self) -> bool;
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

/// An end's own position, kept in its handle as the position of slot 0 in
/// the current lap plus a slot index, so that a single-item step writes one
/// word (the index) and never divides; plus the limit the other side's
/// position allows, so that the hot path compares one word.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// Position of slot 0 in the current lap (a multiple of the capacity
    /// past the position the handle started from, less its slot index).
    base: u64,
    /// Slot index of the position, `< cap`.
    idx: usize,
    /// The first position this end may not pass: for the producer, the
    /// consumer's `head` (when last read) plus the capacity; for the
    /// consumer, the producer's `tail` (when last read). Never below the
    /// position; at most the capacity above it.
    limit: u64,
}

impl Cursor {
    /// A cursor at `pos` with nothing known to be available.
    fn at(pos: u64, cap: usize) -> Cursor {
        let idx = (pos % cap as u64) as usize;
        Cursor {
            base: pos - idx as u64,
            idx,
            limit: pos,
        }
    }

    /// The position.
    #[inline]
    fn pos(&self) -> u64 {
        self.base.wrapping_add(self.idx as u64)
    }

    /// Slots (or items) this end may move now, as far as it knows.
    #[inline]
    fn available(&self) -> usize {
        // At most the capacity (see `limit`), so it fits.
        self.limit.wrapping_sub(self.pos()) as usize
    }

    /// Sets the limit to `limit` if it lies within `cap` above the position,
    /// else (a scribbled index) to the position: nothing available.
    #[inline]
    fn set_limit(&mut self, limit: u64, cap: usize) -> usize {
        let pos = self.pos();
        self.limit = if limit.wrapping_sub(pos) <= cap as u64 {
            limit
        } else {
            pos
        };
        self.available()
    }

    /// Moves on by one slot.
    #[inline]
    fn step(&mut self, cap: usize) {
        self.idx += 1;
        if self.idx == cap {
            self.idx = 0;
            self.base = self.base.wrapping_add(cap as u64);
        }
    }

    /// Moves on by `n <= cap` slots, the single step without the
    /// arithmetic of a batch.
    #[inline]
    fn move_on(&mut self, n: usize, cap: usize) {
        if n == 1 {
            self.step(cap);
        } else {
            self.advance(n, cap);
        }
    }

    /// Moves on by `n <= cap` slots.
    #[inline]
    fn advance(&mut self, n: usize, cap: usize) {
        // idx < cap and n <= cap, so the sum is below 2 * cap, which fits:
        // capacity is bounded by the layout (a slot is at least a byte, or
        // the typed layer's own limit).
        self.idx += n;
        if self.idx >= cap {
            self.idx -= cap;
            self.base = self.base.wrapping_add(cap as u64);
        }
    }
}

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
    /// Publish with a `Release` store and [`EventCount::notify_light`]
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
    /// [`TryPushError::Closed`] after [`SpscState::close`],
    /// [`TryPushError::Full`] if there is no room.
    #[inline]
    pub fn try_push(&mut self, value: M::Item) -> Result<(), TryPushError<M::Item>> {
        // Relaxed: only the producer closes; a close by another handle of
        // this end was handed over with the end.
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
    /// Our position (the next item to take) and the producer's `tail` as
    /// last read (never ahead of the shared one). The shared `head` is a copy
    /// for the producer; we never read it back after [`Self::new`].
    at: Cursor,
    /// Publish with a `Release` store and [`EventCount::notify_light`];
    /// otherwise with a `SeqCst` swap (see [`RawProducer`]).
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
        loop {
            let woke = {
                let mem = &self.mem;
                let st = mem.state();
                let head = self.at.pos();
                let cap = self.cap as u64;
                let readable = &st.wait.readable;
                // An impossible distance (a scribbled tail) counts as empty,
                // as in `items`, so we sleep rather than spin on it.
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
