//! A bounded multi-producer multi-consumer ring: Dmitry Vyukov's bounded
//! MPMC queue with per-slot sequence stamps, in the encoding of crossbeam's
//! `ArrayQueue` and array channel (a closed mark in the tail word).
//! Blocking uses two [`EventCount`]s: `readable` (consumers wait for an
//! item) and `writable` (producers wait for room).
//!
//! # Positions and stamps
//!
//! `head` and `tail` are *positions*: a lap number in the high bits, a
//! slot index in the low bits, and between them the `mark` bit, set in
//! `tail` by [`close`](RawQueue::close):
//!
//! ```text
//! mark     = (capacity + 1).next_power_of_two()
//! one_lap  = 2 * mark
//! position = lap * one_lap | index          (index < capacity)
//! ```
//!
//! The position after the last slot of a lap is index 0 of the next lap,
//! so the hot path never divides. Each slot has a stamp: `position` when
//! the slot is free for the producer of `position`, `position + 1` once
//! that producer wrote it (free for the consumer of `position`), and
//! `position + one_lap` once that consumer read it (free for the producer of
//! the next lap). A fresh ring has stamp `i` in slot `i`.
//!
//! A producer reads `tail`, checks that its slot's stamp says "free for
//! `tail`", claims the position by a CAS of `tail` to the next one, writes
//! the slot and stores the stamp `tail + 1`. A consumer mirrors that with
//! `head`. Producers never wait for each other, nor consumers: a stale
//! position makes the CAS fail, and the loop retries with the new one.
//!
//! # Close
//!
//! `close` sets the mark bit of `tail` with one `fetch_or`. Producers see it
//! before claiming, and their CAS (which expects an unmarked `tail`) fails
//! after it, so no put succeeds after the close: closing is linearisable. A
//! consumer reports [`TryPopError::Closed`] only when `tail` is marked and
//! `head` reached it, so every item claimed before the close is taken first.
//!
//! # Stalls
//!
//! A slot claimed but not yet written (or read) by a thread that was
//! preempted mid-operation blocks the position for everyone, as in every
//! Vyukov ring. A non-blocking call spins a few rounds on such a slot, then
//! reports `Full` (or `Empty`); the blocking calls sleep until the stamp
//! changes. A process killed between its claim and its stamp store leaves
//! that position blocked for good (documented, not prevented).
//!
//! # Bad shared state
//!
//! Shared positions are never trusted to address memory: a slot index is
//! masked out of a position and then checked against the locally known
//! capacity; a position whose index is not below the capacity (a peer
//! scribbled over it) reads as "full" and "empty". Inconsistent stamps make
//! a non-blocking call give up after a bounded number of rounds. A
//! scribbler can make results wrong or operations wait (until their
//! timeout), never make us read or write outside the slots.
//!
//! # Memory order
//!
//! The stamp carries the slot's contents: the producer writes the slot,
//! then stores the stamp with a `SeqCst` swap, whose Release half pairs with
//! the consumer's Acquire load of the stamp (and the consumer's swap with
//! the next producer's load, so a slot is never overwritten before it was
//! read). The `SeqCst` half is the state store of the eventcount's Dekker
//! pair, paid once per operation (once per batch for
//! [`put_slice`](RawQueue::put_slice) / [`get_into`](RawQueue::get_into),
//! which store the other stamps of the batch with Release, last to first, so
//! that the `SeqCst` store of the first stamp publishes the whole batch).
//! The `head`/`tail` CASes are `SeqCst` as in crossbeam, so the full and
//! empty checks read positions in one total order with them.

use std::time::Instant;

use super::eventcount::EventCount;
use super::spsc::{TryPopError, TryPushError};
use crate::loom::atomic::{AtomicU64, Ordering};
use crate::sync::raw::futex::{Waiter, backoff};

/// Rounds a non-blocking call waits on a slot that another thread claimed
/// but has not finished (or on a position that makes no sense), before
/// giving up; each round spins `2^round` hints.
const STALL_ROUNDS: u32 = if cfg!(loom) { 1 } else { 8 };

/// Re-reads a waiter's condition makes while the position it looks at
/// keeps moving, before it just reports "ready" (and lets the caller retry).
const RECHECKS: u32 = if cfg!(loom) { 2 } else { 16 };

/// A `SeqCst` load of a 64-bit word for the reading half of a Dekker pair;
/// under loom a `fetch_add(0)` (see
/// [`load_sc`](crate::sync::raw::futex::load_sc) for why).
#[inline]
fn load_sc64(word: &AtomicU64) -> u64 {
    #[cfg(not(loom))]
    return word.load(Ordering::SeqCst);
    #[cfg(loom)]
    return word.fetch_add(0, Ordering::SeqCst);
}

/// A `SeqCst` store read by [`load_sc64`], done as a swap (one `xchg` on
/// x86-64, and a total modification order against loom's `fetch_add(0)`).
#[inline]
fn store_sc64(word: &AtomicU64, value: u64) {
    word.swap(value, Ordering::SeqCst);
}

/// The producers' cache line.
#[repr(C, align(64))]
#[derive(Debug)]
struct TailLine {
    /// The next position to put at, with the closed mark.
    tail: AtomicU64,
}

/// The wait line: written only when somebody sleeps.
#[repr(C, align(64))]
#[derive(Debug)]
struct WaitLine {
    /// Consumers wait here for items (or the close).
    readable: EventCount,
    /// Producers wait here for room (or the close).
    writable: EventCount,
}

/// The consumers' cache line.
#[repr(C, align(64))]
#[derive(Debug)]
struct HeadLine {
    /// The next position to take from.
    head: AtomicU64,
}

/// A spacer, so that the consumers' line and slot 0 are 128 bytes apart.
#[repr(C, align(64))]
#[derive(Debug)]
struct Spacer([u8; 64]);

/// The shared words of an MPMC ring (the slots and their stamps live in
/// [`QueueMemory`]). Only ever accessed through atomics; all-zero bytes
/// are an empty, open ring (the stamps need [`RawQueue::init`]).
///
/// ```text
/// +0    tail (u64, with the closed mark)   producers' line
/// +64   readable, writable eventcounts     wait line
/// +128  head (u64)                         consumers' line
/// +192  spacer                             (slots follow at +256)
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct MpmcState {
    tail: TailLine,
    wait: WaitLine,
    head: HeadLine,
    _spacer: Spacer,
}

/// Bytes of [`MpmcState`] in shared memory.
#[cfg(not(loom))]
pub(crate) const STATE_BYTES: usize = 256;
#[cfg(not(loom))]
const _: () = assert!(size_of::<MpmcState>() == STATE_BYTES && align_of::<MpmcState>() == 64);

impl Default for MpmcState {
    fn default() -> Self {
        Self::new()
    }
}

impl MpmcState {
    /// An empty, open ring's words.
    pub fn new() -> Self {
        MpmcState {
            tail: TailLine {
                tail: AtomicU64::new(0),
            },
            wait: WaitLine {
                readable: EventCount::new(),
                writable: EventCount::new(),
            },
            head: HeadLine {
                head: AtomicU64::new(0),
            },
            _spacer: Spacer([0; 64]),
        }
    }

    /// Announced waiters on the readable and writable eventcounts (a
    /// snapshot, for tests).
    #[cfg_attr(not(loom), allow(dead_code))] // used by the loom models
    pub fn waiters(&self) -> (u32, u32) {
        (self.wait.readable.waiters(), self.wait.writable.waiters())
    }
}

/// The memory an MPMC ring lives in: its [`MpmcState`], the stamps of its
/// slots, and the futex to sleep on. What a slot holds, and how, is up to
/// the caller of the `*_with` operations (or to [`SlotMemory`]).
///
/// # Safety
///
/// [`state`](Self::state) must return the same state and
/// [`capacity`](Self::capacity) the same value, at least 1 and below
/// `2^60`, on every call for as long as the value lives; the stamp accessor
/// must be valid for every index below that capacity. Callers of
/// [`stamp`](Self::stamp) promise `index < capacity`.
pub unsafe trait QueueMemory {
    /// The futex implementation sleepers use.
    type Waiter: Waiter;
    /// The shared position and wait words.
    fn state(&self) -> &MpmcState;
    /// Number of slots (constant, `1..2^60`).
    fn capacity(&self) -> usize;
    /// The futex to sleep on.
    fn waiter(&self) -> &Self::Waiter;
    /// The stamp of slot `index`.
    ///
    /// # Safety
    ///
    /// `index < capacity()`.
    unsafe fn stamp(&self, index: usize) -> &AtomicU64;
}

/// [`QueueMemory`] whose slots hold one `Copy` value each, for the
/// value-taking operations ([`try_put`](RawQueue::try_put),
/// [`put_slice`](RawQueue::put_slice), ...).
///
/// # Safety
///
/// The slot accessors must be valid for every index below the capacity;
/// callers promise `index < capacity`. The ring never reads and writes one
/// slot at the same time unless the shared words were scribbled over (then
/// the implementation must still be memory-safe, as volatile copies of
/// `Pod` values are).
pub unsafe trait SlotMemory: QueueMemory {
    /// The slot type.
    type Item: Copy;
    /// Writes the value of slot `index`.
    ///
    /// # Safety
    ///
    /// `index < capacity()`.
    unsafe fn write(&self, index: usize, value: Self::Item);
    /// Reads the value of slot `index`.
    ///
    /// # Safety
    ///
    /// `index < capacity()`.
    unsafe fn read(&self, index: usize) -> Self::Item;
}

/// A handle on an MPMC ring: any number of them, in any threads or
/// processes, put and take concurrently (`&self` operations).
#[derive(Debug, Clone)]
pub struct RawQueue<M: QueueMemory> {
    mem: M,
    /// Capacity, read once.
    cap: usize,
    /// The closed bit of `tail` (also one past the largest index mask).
    mark: u64,
    /// Position increment of one lap.
    one_lap: u64,
}

impl<M: QueueMemory> RawQueue<M> {
    /// A handle on the ring in `mem` (initialised once with
    /// [`init`](Self::init)).
    pub fn new(mem: M) -> Self {
        let cap = mem.capacity();
        // Below 2^60: `one_lap` stays far from overflowing.
        assert!(cap >= 1 && (cap as u64) < 1 << 60);
        let mark = (cap as u64 + 1).next_power_of_two();
        RawQueue {
            mem,
            cap,
            mark,
            one_lap: mark * 2,
        }
    }

    /// Writes the stamps of an empty ring (`i` in slot `i`). Call once on
    /// fresh memory (state all zero), before any handle uses it.
    #[cfg_attr(not(loom), allow(dead_code))] // used by the loom models
    pub fn init(&self) {
        for i in 0..self.cap {
            // SAFETY: i < cap. Relaxed: the memory is published to other
            // handles by whatever hands them the ring (the object header's
            // Release `ready` store, a thread spawn).
            unsafe { self.mem.stamp(i) }.store(i as u64, Ordering::Relaxed);
        }
    }

    /// The ring's memory.
    #[inline]
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The slot index of `pos`, if it is below the capacity (else the
    /// position was scribbled over).
    #[inline]
    fn slot_of(&self, pos: u64) -> Option<usize> {
        let idx = (pos & (self.mark - 1)) as usize;
        (idx < self.cap).then_some(idx)
    }

    /// The position `i` places after `pos` (slot `idx`), `i <= cap`, and its
    /// slot index.
    #[inline]
    fn advance(&self, pos: u64, idx: usize, i: usize) -> (u64, usize) {
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

    /// Backs off for stall round `round`; `false` once the rounds are used
    /// up.
    #[inline]
    fn stall(round: &mut u32) -> bool {
        if *round >= STALL_ROUNDS {
            return false;
        }
        backoff(*round);
        *round += 1;
        true
    }

    /// Puts `value` if there is room, without blocking. Makes no system
    /// call unless a consumer sleeps.
    ///
    /// # Errors
    ///
    /// [`TryPushError::Closed`] after [`close`](Self::close),
    /// [`TryPushError::Full`] if there is no room (or the slot at the tail
    /// stays claimed by a consumer still reading it).
    ///
    /// `write(memory, index, value)` fills slot `index` (below the
    /// capacity, owned by this call until it returns); it is called once,
    /// and only if the put succeeds.
    #[inline]
    pub fn try_put_with<V>(
        &self,
        value: V,
        write: impl FnOnce(&M, usize, V),
    ) -> Result<(), TryPushError<V>> {
        let st = self.mem.state();
        // Relaxed: only a starting point; the CAS below checks it.
        let mut tail = st.tail.tail.load(Ordering::Relaxed);
        let mut stalls = 0;
        loop {
            if tail & self.mark != 0 {
                return Err(TryPushError::Closed(value));
            }
            let Some(idx) = self.slot_of(tail) else {
                return Err(TryPushError::Full(value));
            };
            // SAFETY: idx < cap.
            let word = unsafe { self.mem.stamp(idx) };
            // SYNC: pairs with the SeqCst (Release) stamp swaps of consumers
            // in `try_get` and `get_into` (and their Release stores in
            // `get_into`): a stamp saying "free for `tail`" comes after the
            // consumer's read of the old value.
            let stamp = word.load(Ordering::Acquire);
            if stamp == tail {
                let (next, _) = self.advance(tail, idx, 1);
                // SYNC: SeqCst, as in crossbeam: one total order with the
                // SeqCst position reads of the full and empty checks and with
                // `close`'s fetch_or (a marked tail makes this CAS fail).
                match st
                    .tail
                    .tail
                    .compare_exchange(tail, next, Ordering::SeqCst, Ordering::Relaxed)
                {
                    Ok(_) => {
                        // idx < cap; the position is ours (won the CAS) and
                        // its slot free (stamp read with Acquire).
                        write(&self.mem, idx, value);
                        // SYNC: the Release half pairs with the Acquire stamp
                        // loads in `try_get` / `get_into` (the value written
                        // above is visible to the consumer); the SeqCst half
                        // is the state store of the `readable` Dekker pair,
                        // read by `can_get`.
                        store_sc64(word, tail.wrapping_add(1));
                        st.wait.readable.notify(self.mem.waiter());
                        return Ok(());
                    }
                    Err(t) => tail = t,
                }
            } else if stamp.wrapping_add(self.one_lap) == tail.wrapping_add(1) {
                // The slot still holds the previous lap's item: full, unless
                // a consumer already claimed it and is reading it.
                // SYNC: SeqCst, ordered with the SeqCst head CASes.
                let head = st.head.head.load(Ordering::SeqCst);
                if head.wrapping_add(self.one_lap) == tail || !Self::stall(&mut stalls) {
                    return Err(TryPushError::Full(value));
                }
                tail = st.tail.tail.load(Ordering::Relaxed);
            } else {
                // Another producer moved `tail` on (ours is stale), or the
                // words were scribbled over.
                let again = st.tail.tail.load(Ordering::Relaxed);
                if again == tail && !Self::stall(&mut stalls) {
                    return Err(TryPushError::Full(value));
                }
                tail = again;
            }
        }
    }

    /// Takes the oldest item if there is one, without blocking. Makes no
    /// system call unless a producer sleeps.
    ///
    /// # Errors
    ///
    /// [`TryPopError::Empty`] if there is no item (or the item at the head
    /// stays claimed by a producer still writing it),
    /// [`TryPopError::Closed`] if the ring is closed and every item was
    /// taken.
    ///
    /// `read(memory, index)` empties slot `index` (below the capacity, owned
    /// by this call until it returns); it is called once, and only if there
    /// is an item.
    #[inline]
    pub fn try_get_with<R>(&self, read: impl FnOnce(&M, usize) -> R) -> Result<R, TryPopError> {
        let st = self.mem.state();
        // Relaxed: only a starting point; the CAS below checks it.
        let mut head = st.head.head.load(Ordering::Relaxed);
        let mut stalls = 0;
        loop {
            let Some(idx) = self.slot_of(head) else {
                return Err(self.empty_or_closed());
            };
            // SAFETY: idx < cap.
            let word = unsafe { self.mem.stamp(idx) };
            // SYNC: pairs with the SeqCst (Release) stamp swaps of producers
            // in `try_put` and `put_slice` (and their Release stores in
            // `put_slice`): the slot's value was written before.
            let stamp = word.load(Ordering::Acquire);
            if stamp == head.wrapping_add(1) {
                let (next, _) = self.advance(head, idx, 1);
                // SYNC: SeqCst, as in `try_put`.
                match st
                    .head
                    .head
                    .compare_exchange(head, next, Ordering::SeqCst, Ordering::Relaxed)
                {
                    Ok(_) => {
                        // idx < cap; the position is ours and its slot
                        // written (stamp read with Acquire).
                        let v = read(&self.mem, idx);
                        // SYNC: the Release half pairs with the Acquire stamp
                        // loads in `try_put` / `put_slice` (we are done
                        // reading the slot); the SeqCst half is the state
                        // store of the `writable` Dekker pair, read by
                        // `can_put`.
                        store_sc64(word, head.wrapping_add(self.one_lap));
                        st.wait.writable.notify(self.mem.waiter());
                        return Ok(v);
                    }
                    Err(h) => head = h,
                }
            } else if stamp == head {
                // Nothing written at this position yet: empty, unless a
                // producer claimed it and is writing it.
                // SYNC: SeqCst, ordered with the SeqCst tail CASes and
                // `close`'s fetch_or.
                let tail = st.tail.tail.load(Ordering::SeqCst);
                if tail & !self.mark == head {
                    return Err(if tail & self.mark != 0 {
                        TryPopError::Closed
                    } else {
                        TryPopError::Empty
                    });
                }
                if !Self::stall(&mut stalls) {
                    return Err(TryPopError::Empty);
                }
                head = st.head.head.load(Ordering::Relaxed);
            } else {
                // Another consumer moved `head` on, or a scribble.
                let again = st.head.head.load(Ordering::Relaxed);
                if again == head && !Self::stall(&mut stalls) {
                    return Err(self.empty_or_closed());
                }
                head = again;
            }
        }
    }

    /// For a head that makes no sense: `Closed` if the ring is closed, else
    /// `Empty`.
    #[cold]
    fn empty_or_closed(&self) -> TryPopError {
        if self.is_closed() {
            TryPopError::Closed
        } else {
            TryPopError::Empty
        }
    }

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
                Err(TryPushError::Full(v)) if woke => value = v,
                done => return done,
            }
        }
    }

    /// Waits until a put may succeed (room at the tail, or closed), or
    /// `deadline` passes; returns whether it may.
    pub fn wait_writable(&self, deadline: Option<Instant>) -> bool {
        self.mem
            .state()
            .wait
            .writable
            .wait_until(self.mem.waiter(), deadline, || self.can_put())
    }

    /// Waits until a get may succeed (an item at the head, or closed and
    /// drained), or `deadline` passes; returns whether it may.
    pub fn wait_readable(&self, deadline: Option<Instant>) -> bool {
        self.mem
            .state()
            .wait
            .readable
            .wait_until(self.mem.waiter(), deadline, || self.can_get())
    }

    /// A waiting producer's condition: closed, or the slot at the tail is
    /// free for it.
    fn can_put(&self) -> bool {
        let st = self.mem.state();
        // SYNC: reading half of the waiter's side of the `writable` Dekker
        // pair (every load here): pairs with the SeqCst stamp swaps freeing a
        // slot in `try_get` / `get_into` and with the fetch_or in `close`.
        let mut tail = load_sc64(&st.tail.tail);
        for _ in 0..RECHECKS {
            if tail & self.mark != 0 {
                return true;
            }
            let Some(idx) = self.slot_of(tail) else {
                // Scribbled: sleep (until a notify or the deadline).
                return false;
            };
            // SAFETY: idx < cap.
            if load_sc64(unsafe { self.mem.stamp(idx) }) == tail {
                return true;
            }
            // Not free for `tail`: the previous lap's item is still there
            // (its consumer will notify when done), unless `tail` moved on.
            let again = load_sc64(&st.tail.tail);
            if again == tail {
                return false;
            }
            tail = again;
        }
        true
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
                Err(TryPopError::Empty) if woke => {}
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
        // `try_put` / `put_slice` and with the fetch_or in `close`.
        let mut head = load_sc64(&st.head.head);
        for _ in 0..RECHECKS {
            let Some(idx) = self.slot_of(head) else {
                return load_sc64(&st.tail.tail) & self.mark != 0;
            };
            // SAFETY: idx < cap.
            if load_sc64(unsafe { self.mem.stamp(idx) }) == head.wrapping_add(1) {
                return true;
            }
            let tail = load_sc64(&st.tail.tail);
            if tail & self.mark != 0 && tail & !self.mark == head {
                return true;
            }
            // Nothing at `head` yet: its producer (if one claimed it) will
            // notify when done, unless `head` moved on.
            let again = load_sc64(&st.head.head);
            if again == head {
                return false;
            }
            head = again;
        }
        true
    }

    /// Closes the ring: later puts fail, gets drain what is left and then
    /// report [`TryPopError::Closed`]. Wakes every sleeper. Closing twice
    /// is harmless.
    pub fn close(&self) {
        let st = self.mem.state();
        // SYNC: SeqCst RMW: the state store of both eventcounts' Dekker
        // pairs, read by `can_put` / `can_get`; ordered with the SeqCst tail
        // CASes, which fail once the mark is set.
        st.tail.tail.fetch_or(self.mark, Ordering::SeqCst);
        st.wait.readable.notify(self.mem.waiter());
        st.wait.writable.notify(self.mem.waiter());
    }

    /// Whether the ring was closed.
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.mem.state().tail.tail.load(Ordering::Relaxed) & self.mark != 0
    }

    /// Items in the ring now (a snapshot), `0..=capacity`; items claimed by
    /// a producer but not yet written count.
    pub fn len(&self) -> usize {
        let st = self.mem.state();
        let mut tries = 0;
        loop {
            let tail = st.tail.tail.load(Ordering::SeqCst) & !self.mark;
            let head = st.head.head.load(Ordering::SeqCst);
            tries += 1;
            // A tail unchanged around the head read: a consistent pair.
            if st.tail.tail.load(Ordering::SeqCst) & !self.mark != tail && tries < 8 {
                continue;
            }
            let (Some(h), Some(t)) = (self.slot_of(head), self.slot_of(tail)) else {
                // Scribbled: nothing sensible to say.
                return 0;
            };
            return match h.cmp(&t) {
                std::cmp::Ordering::Less => t - h,
                std::cmp::Ordering::Greater => self.cap - h + t,
                std::cmp::Ordering::Equal if tail == head => 0,
                std::cmp::Ordering::Equal => self.cap,
            };
        }
    }

    /// Whether the ring is empty now (a snapshot).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of slots.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap
    }
}

impl<M: SlotMemory> RawQueue<M> {
    /// Puts `value` if there is room, without blocking. Makes no system
    /// call unless a consumer sleeps.
    ///
    /// # Errors
    ///
    /// [`TryPushError::Closed`] after [`close`](Self::close),
    /// [`TryPushError::Full`] if there is no room (or the slot at the tail
    /// stays claimed by a consumer still reading it).
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
    /// stays claimed by a producer still writing it),
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

    /// Puts as many items of `src` as fit now, in order, claiming them with
    /// one CAS of `tail` and waking sleepers once; returns how many. Never
    /// blocks; returns 0 if the ring is full or closed.
    pub fn put_slice(&self, src: &[M::Item]) -> usize {
        let Some(&first) = src.first() else {
            return 0;
        };
        let st = self.mem.state();
        let mut tail = st.tail.tail.load(Ordering::Relaxed);
        loop {
            if tail & self.mark != 0 {
                return 0;
            }
            let Some(idx0) = self.slot_of(tail) else {
                return 0;
            };
            // Count the free slots from `tail` on.
            let want = src.len().min(self.cap);
            let mut n = 0;
            while n < want {
                let (pos, idx) = self.advance(tail, idx0, n);
                // SAFETY: idx < cap (from `advance`).
                // SYNC: as the stamp load in `try_put`.
                if unsafe { self.mem.stamp(idx) }.load(Ordering::Acquire) != pos {
                    break;
                }
                n += 1;
            }
            if n == 0 {
                // Full, contended or stalled: one item the careful way.
                return usize::from(self.try_put(first).is_ok());
            }
            let (end, _) = self.advance(tail, idx0, n);
            // SYNC: SeqCst, as in `try_put`.
            match st
                .tail
                .tail
                .compare_exchange(tail, end, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => {
                    for (i, v) in src[..n].iter().enumerate() {
                        let (_, idx) = self.advance(tail, idx0, i);
                        // SAFETY: idx < cap; positions tail..end are ours and
                        // their slots were free (stamps read with Acquire).
                        unsafe { self.mem.write(idx, *v) };
                    }
                    // Last to first: consumers take positions in order, so
                    // none reaches slot i > 0 before it saw slot 0's stamp,
                    // whose store comes after all the others.
                    for i in (1..n).rev() {
                        let (pos, idx) = self.advance(tail, idx0, i);
                        // SAFETY: idx < cap.
                        // SYNC: pairs with the Acquire stamp loads in
                        // `try_get` / `get_into`, through the SeqCst swap of
                        // slot 0's stamp below (a consumer reaches this slot
                        // only after it took slot 0).
                        unsafe { self.mem.stamp(idx) }
                            .store(pos.wrapping_add(1), Ordering::Release);
                    }
                    // SAFETY: idx0 < cap.
                    // SYNC: as the stamp swap in `try_put` (Release for the
                    // whole batch, SeqCst for the `readable` Dekker pair).
                    store_sc64(unsafe { self.mem.stamp(idx0) }, tail.wrapping_add(1));
                    st.wait.readable.notify(self.mem.waiter());
                    return n;
                }
                Err(t) => tail = t,
            }
        }
    }

    /// Takes up to `dst.len()` items into `dst`, oldest first, claiming
    /// them with one CAS of `head` and waking sleepers once; returns how
    /// many. Never blocks; returns 0 when empty (closed or not).
    pub fn get_into(&self, dst: &mut [M::Item]) -> usize {
        if dst.is_empty() {
            return 0;
        }
        let st = self.mem.state();
        let mut head = st.head.head.load(Ordering::Relaxed);
        loop {
            let Some(idx0) = self.slot_of(head) else {
                return 0;
            };
            let want = dst.len().min(self.cap);
            let mut n = 0;
            while n < want {
                let (pos, idx) = self.advance(head, idx0, n);
                // SAFETY: idx < cap (from `advance`).
                // SYNC: as the stamp load in `try_get`.
                if unsafe { self.mem.stamp(idx) }.load(Ordering::Acquire) != pos.wrapping_add(1) {
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
            // SYNC: SeqCst, as in `try_put`.
            match st
                .head
                .head
                .compare_exchange(head, end, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => {
                    for (i, v) in dst[..n].iter_mut().enumerate() {
                        let (_, idx) = self.advance(head, idx0, i);
                        // SAFETY: idx < cap; positions head..end are ours and
                        // their slots written (stamps read with Acquire).
                        *v = unsafe { self.mem.read(idx) };
                    }
                    // Last to first, as in `put_slice`: producers fill
                    // positions in order.
                    for i in (1..n).rev() {
                        let (pos, idx) = self.advance(head, idx0, i);
                        // SAFETY: idx < cap.
                        // SYNC: pairs with the Acquire stamp loads in
                        // `try_put` / `put_slice`, through the SeqCst swap of
                        // slot 0's stamp below.
                        unsafe { self.mem.stamp(idx) }
                            .store(pos.wrapping_add(self.one_lap), Ordering::Release);
                    }
                    // SAFETY: idx0 < cap.
                    // SYNC: as the stamp swap in `try_get`.
                    store_sc64(
                        unsafe { self.mem.stamp(idx0) },
                        head.wrapping_add(self.one_lap),
                    );
                    st.wait.writable.notify(self.mem.waiter());
                    return n;
                }
                Err(h) => head = h,
            }
        }
    }
}
