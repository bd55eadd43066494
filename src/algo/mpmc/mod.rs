//! A bounded multi-producer multi-consumer ring with per-slot sequence
//! stamps, after Dmitry Vyukov's bounded MPMC queue and crossbeam's
//! `ArrayQueue`, changed so that a process killed in the middle of a put or
//! a get blocks nobody: a position is claimed in its slot's stamp, with the
//! claimant's identity, rather than in a shared counter. Blocking uses three
//! [`EventCount`]s: `readable` (consumers wait for an item), `writable`
//! (producers wait for room) and `released` (producers wait for a consumer
//! still reading the slot they want to free it).
//!
//! # Positions and stamps
//!
//! Positions are a lap number in the high bits and a slot index in the low
//! bits:
//!
//! ```text
//! index_end = (capacity + 1).next_power_of_two()
//! one_lap   = 2 * index_end
//! position  = lap * one_lap | index          (index < capacity)
//! ```
//!
//! The position after the last slot of a lap is index 0 of the next lap,
//! so the hot path never divides. Each slot's stamp says where the slot is
//! in its life, either as a position (bit 63 clear) or as a claim (bit 63
//! set):
//!
//! ```text
//! p                      free for the producer of position p
//! W(owner, tag p)        claimed by that producer, which is writing it
//! p + 1                  written: free for the consumer of p
//! R(owner, tag p)        claimed by that consumer, which is reading it
//! p + one_lap            read: free for the producer of the next lap
//!
//! claim word: bit 63 claim | bit 62 reading | bits 61..54 tag (lap mod 256)
//!             | bits 53..32 owner TID | bits 31..0 owner start stamp
//! ```
//!
//! A fresh ring has stamp `i` in slot `i`.
//!
//! # Put and get
//!
//! A producer reads the `tail` hint and claims its position with one CAS of
//! the slot's stamp from `tail` to `W(me)`; then it stores the next position
//! into `tail` (a plain Release store), writes the slot and stores the stamp
//! `tail + 1`. A consumer mirrors that with `head`: CAS from `head + 1` to
//! `R(me)`, store `head`, read, store `head + one_lap`. That is two locked
//! instructions per operation, as in crossbeam (which CASes the counter and
//! stores the stamp).
//!
//! `tail` and `head` are only hints. A CAS that fails shows who has the
//! position: a claim or a stamp of the same or a later lap means another
//! thread took it, and the caller moves on to the next position (or to a
//! newer hint). So positions are claimed in order: a producer claims `p + 1`
//! only after it saw `p` taken, or read a hint stored after `p` was. A
//! hint can lag (a slow claimant may store an older value after a faster
//! one), never by a lap: nobody gets a lap ahead of an unfinished claim.
//!
//! Because claims are in order, a consumer that finds `head` still free for
//! its producer knows the ring is empty, without reading `tail`.
//!
//! # Dead claimants
//!
//! A claim names its owner (TID and start time, as the robust locks record
//! them, see [`Owner`]), so a stalled claim can be told from a dead one
//! (through [`QueueMemory::is_dead`]):
//!
//! * **a producer died after claiming** (`W` at the head): a consumer that
//!   finds the claim still there after spinning, and its owner dead, takes
//!   the position as an empty one: it CASes the stamp to `p + one_lap` (free
//!   for the next lap) and moves on. The dead producer's `put` never
//!   returned, so no item is lost.
//! * **a consumer died after claiming** (`R` a lap behind the tail): a
//!   producer that finds the ring full because of it, and its owner dead,
//!   frees the slot (CAS to `p + one_lap`) and counts the item in the
//!   ring's `lost` counter: the dead consumer's `get` never returned it.
//!
//! The claim word is compared whole in the recovering CAS, and a dead owner
//! writes nothing more, so exactly one recoverer wins. Before recovering,
//! the recoverer re-reads the hint: if the hint is past its position, it
//! was stale and retries instead. Otherwise the claim is for its position
//! (a claim with the same tag 256 laps away would need the hint to lag by a
//! lap). Sleepers cannot be woken by a dead claimant, so blocking calls
//! sleep in slices and look for dead claims between them: [`CLAIM_POLL`]
//! while a claim sits at their position, doubling to [`CLAIM_POLL_MAX`]
//! while none does.
//! A claimant whose identity does not fit (a TID of 2^22 or more) or whose
//! liveness cannot be told is never taken for dead: its position then
//! stays blocked, as in every Vyukov ring.
//!
//! # Dead consumers' items
//!
//! A consumer's item is counted lost when the consumer dies while its claim
//! is on the slot, so the claim is held for everything a get does before
//! it returns: the read (for message rings, the copy and the decode, in the
//! caller's `read` closure) and the wake of producers that sleep for room.
//! That wake comes *before* the release, which producers need to see: a
//! producer that sleeps because the slot at its tail still holds an item
//! (sleeping on `writable`) is woken by the consumer's claim, finds the
//! slot claimed by a reader, and waits for the release on a third
//! eventcount, `released`, which the consumer notifies after freeing the
//! slot (a load, no system call, unless a read took so long that the
//! producer went to sleep there). So a consumer killed after its release
//! loses its item uncounted only in that load and the return.
//!
//! # Close
//!
//! `close` sets the `closed` word (on the wait line, which producers read
//! anyway) and wakes every sleeper, on all three eventcounts. A producer
//! checks it before claiming (a quick way out) and again, with `SeqCst`,
//! after claiming: if the ring was closed in between, it gives the position
//! up (stamp `p + one_lap`, which consumers skip) and reports `Closed`. A
//! consumer that finds its position free for its producer reads `closed`
//! and then the stamp again (all `SeqCst`): if both say so, no producer can
//! still publish there, and it reports [`TryPopError::Closed`]. So every
//! put that succeeded is taken before consumers see `Closed`, and none
//! succeeds after the close.
//!
//! # Stalls
//!
//! A slot claimed but not yet written (or read) by a live thread that was
//! preempted mid-operation blocks the position, as in every Vyukov ring. A
//! non-blocking call spins a few rounds on such a slot, then, while the
//! claimant lives, yields and looks again, as crossbeam's `ArrayQueue`
//! waits for a write in progress: a put whose claim is made is not an empty
//! queue, and reporting `Empty` there would break linearizability (a
//! `try_get` after one's own completed `try_put` finding nothing). Only a
//! claim held for [`CLAIM_WAIT`] (a stopped process, a forged word naming a
//! live thread) makes it report `Full` (or `Empty`) after all. The blocking
//! calls sleep until the stamp changes.
//!
//! # Bad shared state
//!
//! Shared positions are never trusted to address memory: a slot index is
//! masked out of a position and then checked against the locally known
//! capacity; a position whose index is not below the capacity (a peer
//! scribbled over it) reads as "full" and "empty". A non-blocking call gives
//! up after a bounded number of rounds and skipped positions, so
//! inconsistent stamps make it report `Full` or `Empty`. A scribbler can
//! make results wrong or operations wait (until their timeout), and a
//! forged claim can make a recoverer free a slot, never make us read or
//! write outside the slots.
//!
//! # Memory order
//!
//! The stamp carries the slot's contents: the producer writes the slot,
//! then stores the stamp with a `SeqCst` swap, whose Release half pairs with
//! the Acquire of the consumer's claiming CAS (and the consumer's swap with
//! the next producer's claiming CAS, so a slot is never overwritten before
//! it was read). The `SeqCst` half is the state store of the eventcount's
//! Dekker pair, paid once per operation (once per batch for
//! [`put_slice`](RawQueue::put_slice) / [`get_into`](RawQueue::get_into),
//! which store the other stamps of the batch with Release, last to first).
//! Hints are stored with Release and loaded with Acquire, so a claim made
//! after reading a hint happens after the claim that hint announced: that is
//! what "claims are in order" needs in the memory model.
//!
//! [`EventCount`]: crate::algo::eventcount::EventCount
//! [`Owner`]: crate::algo::robust::Owner

// The files: `layout` (the shared state lines and the memory traits),
// `stamp` (positions, claim words and reading a stamp), `recovery` (dead
// claimants), `blocking` (the waiting calls and their conditions) and
// `batch` (the value-taking calls of `SlotMemory` rings); the handle, the
// single-item put and get, close and the snapshots are here.
mod batch;
mod blocking;
mod layout;
mod recovery;
mod stamp;

#[cfg(not(loom))]
pub(crate) use layout::STATE_BYTES;
pub use layout::{MpmcState, QueueMemory, SlotMemory};
// `Census` is defined below, next to `RawQueue::census`.

use std::time::Duration;

use self::stamp::{CLAIM, ForGet, ForPut, READING, owner_bits, store_release};
use super::spsc::{TryPopError, TryPushError};
use crate::algo::wait::backoff;
use crate::loom::atomic::{AtomicU64, Ordering};
use crate::loom::{load_sc, load_sc64, store_sc64};

/// What a ring's slots hold, counted by [`RawQueue::census`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Written, not yet claimed by a consumer.
    pub written: u64,
    /// Claimed by a live producer, which is writing.
    pub writing: u64,
    /// Claimed by a live consumer, which is reading.
    pub reading: u64,
    /// Claimed by a consumer that died: lost (counted in
    /// [`lost`](RawQueue::lost) once a producer frees the slot).
    pub reading_dead: u64,
}

/// Rounds a non-blocking call waits on a slot that another thread claimed
/// but has not finished (or on a position that makes no sense), before
/// giving up (or, for a claim, asking whether its owner is dead); each
/// round spins `2^round` hints.
const STALL_ROUNDS: u32 = if cfg!(loom) { 1 } else { 8 };

/// The longest a non-blocking call waits for a live claimant at its
/// position to finish (a put or get in progress, normally a few
/// nanoseconds; longer only if its thread was preempted between its claim
/// and its stamp): past it the call reports full or empty after all, so a
/// claim that never ends (a stopped process, a forged word naming a live
/// thread) cannot hold it.
pub const CLAIM_WAIT: Duration = Duration::from_millis(50);

/// The longest a blocked call sleeps before it looks for a dead claimant
/// at the position it waits for (nobody wakes it when one dies), while a
/// claim sits there.
pub const CLAIM_POLL: Duration = Duration::from_millis(20);

/// The longest slice of a blocked call while no claim sits at its position
/// (an idle queue): slices double from [`CLAIM_POLL`] to this, so an idle
/// waiter wakes about once a second, not 50 times (a producer that claims
/// the position and dies is then noticed within this, plus one short
/// slice).
pub const CLAIM_POLL_MAX: Duration = Duration::from_millis(1280);

/// A handle on an MPMC ring: any number of them, in any threads or
/// processes, put and take concurrently (`&self` operations).
#[derive(Debug, Clone)]
pub struct RawQueue<M: QueueMemory> {
    mem: M,
    /// Capacity, read once.
    cap: usize,
    /// One past the largest index mask (a power of two above `cap`).
    index_end: u64,
    /// Position increment of one lap.
    one_lap: u64,
    /// `log2(one_lap)`: a position shifted right by it is its lap.
    lap_shift: u32,
}

impl<M: QueueMemory> RawQueue<M> {
    /// A handle on the ring in `mem` (initialised once with
    /// [`init`](Self::init)).
    pub fn new(mem: M) -> Self {
        let cap = mem.capacity();
        // Below 2^60: positions stay far below the claim bit.
        assert!(cap >= 1 && (cap as u64) < 1 << 60);
        let index_end = (cap as u64 + 1).next_power_of_two();
        let one_lap = index_end * 2;
        RawQueue {
            mem,
            cap,
            index_end,
            one_lap,
            lap_shift: one_lap.trailing_zeros(),
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

    /// Positions a non-blocking call may skip (taken by others) before it
    /// gives up: far more than a lagging hint and a few races need.
    #[inline]
    fn skip_budget(&self) -> usize {
        self.cap.saturating_mul(4).saturating_add(64)
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
    /// call unless a consumer sleeps (or a claim at the tail stays put,
    /// and its owner's liveness is looked up).
    ///
    /// # Errors
    ///
    /// [`TryPushError::Closed`] after [`close`](Self::close),
    /// [`TryPushError::Full`] if there is no room (or the slot at the tail
    /// stays claimed by a live consumer still reading it for [`CLAIM_WAIT`]).
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
        // Relaxed: a quick way out; the SeqCst re-check after the claim
        // decides.
        if st.wait.closed.load(Ordering::Relaxed) != 0 {
            return Err(TryPushError::Closed(value));
        }
        let who = CLAIM | owner_bits(self.mem.me());
        // SYNC: Acquire pairs with the Release hint stores below: a claim
        // made after reading a hint happens after the claim it announced.
        let mut hint = st.tail.tail.load(Ordering::Acquire);
        let mut tail = hint;
        let mut seen = None;
        let (mut stalls, mut skips) = (0, self.skip_budget());
        let mut waited = None;
        loop {
            let Some(idx) = self.slot_of(tail) else {
                return Err(TryPushError::Full(value));
            };
            // SAFETY: idx < cap.
            let word = unsafe { self.mem.stamp(idx) };
            // A stamp just loaded that says "not free" is read as it is;
            // otherwise straight to the CAS (one trip for the cache line).
            let stamp = match seen.take() {
                Some(s) if s != tail => s,
                // SYNC: Acquire (both ways) pairs with the SeqCst (Release)
                // stamp swaps of consumers (and their Release stores in
                // `get_into`): the slot is free once its previous item was
                // read. SeqCst on success: ordered before the SeqCst
                // `closed` re-check (see "Close").
                _ => match word.compare_exchange(
                    tail,
                    self.claim_at(who, tail),
                    Ordering::SeqCst,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        let (next, _) = self.advance(tail, idx, 1);
                        // SYNC: Release: pairs with the Acquire hint loads.
                        store_release(&st.tail.tail, next);
                        // SYNC: SeqCst, after the SeqCst claim: see "Close".
                        if load_sc(&st.wait.closed) != 0 {
                            self.give_up_put(word, tail);
                            return Err(TryPushError::Closed(value));
                        }
                        // idx < cap; the position is ours (claimed) and its
                        // slot free (the CAS read it with Acquire).
                        write(&self.mem, idx, value);
                        // SYNC: the Release half pairs with the Acquire of
                        // consumers' claiming CASes (the value written above
                        // is visible to the consumer); the SeqCst half is
                        // the state store of the `readable` Dekker pair,
                        // read by `can_get`.
                        store_sc64(word, tail.wrapping_add(1));
                        st.wait.readable.notify(self.mem.waiter());
                        return Ok(());
                    }
                    Err(s) => s,
                },
            };
            match self.for_put(stamp, tail) {
                // Changed between our load and the CAS: try again.
                ForPut::Free => {}
                ForPut::Taken => {
                    if skips == 0 {
                        return Err(TryPushError::Full(value));
                    }
                    skips -= 1;
                    tail = self.move_on(&st.tail.tail, &mut hint, tail, idx);
                }
                ForPut::Full => return Err(TryPushError::Full(value)),
                ForPut::Reading(owner) => {
                    if Self::stall(&mut stalls) {
                        seen = Some(word.load(Ordering::Acquire));
                        continue;
                    }
                    if !self.free_dead_reader(word, stamp, tail, owner) {
                        // A live consumer still reads the slot: its get is
                        // done, the room is there; wait for the read.
                        match Self::wait_out_claim(word, stamp, &mut waited) {
                            Some(now) => {
                                seen = Some(now);
                                continue;
                            }
                            None => return Err(TryPushError::Full(value)),
                        }
                    }
                    // Freed (the slot is free for `tail` now), or stale (the
                    // hint is further on).
                    // SYNC: Acquire, as the first hint load.
                    hint = st.tail.tail.load(Ordering::Acquire);
                    tail = tail.max(hint);
                    stalls = 0;
                }
                ForPut::Odd => {
                    // SYNC: Acquire, as the first hint load.
                    let again = st.tail.tail.load(Ordering::Acquire);
                    if again == hint && !Self::stall(&mut stalls) {
                        return Err(TryPushError::Full(value));
                    }
                    (hint, tail) = (again, again);
                }
            }
        }
    }

    /// Takes the oldest item if there is one, without blocking. Makes no
    /// system call unless a producer sleeps (or a claim at the head stays
    /// put, and its owner's liveness is looked up).
    ///
    /// # Errors
    ///
    /// [`TryPopError::Empty`] if there is no item (or the item at the head
    /// stays claimed by a live producer still writing it for [`CLAIM_WAIT`]),
    /// [`TryPopError::Closed`] if the ring is closed and every item was
    /// taken.
    ///
    /// `read(memory, index)` empties slot `index` (below the capacity, owned
    /// by this call until it returns); it is called once, and only if there
    /// is an item.
    #[inline]
    pub fn try_get_with<R>(&self, read: impl FnOnce(&M, usize) -> R) -> Result<R, TryPopError> {
        let st = self.mem.state();
        let who = CLAIM | READING | owner_bits(self.mem.me());
        // SYNC: Acquire, as in `try_put_with`.
        let mut hint = st.head.head.load(Ordering::Acquire);
        let mut head = hint;
        let mut seen = None;
        let (mut stalls, mut skips) = (0, self.skip_budget());
        let mut waited = None;
        loop {
            let Some(idx) = self.slot_of(head) else {
                return Err(self.empty_or_closed());
            };
            // SAFETY: idx < cap.
            let word = unsafe { self.mem.stamp(idx) };
            let want = head.wrapping_add(1);
            let stamp = match seen.take() {
                Some(s) if s != want => s,
                // SYNC: Acquire (both ways) pairs with the SeqCst (Release)
                // stamp swaps of producers (and their Release stores in
                // `put_slice`): the slot's value was written before.
                _ => match word.compare_exchange(
                    want,
                    self.claim_at(who, head),
                    Ordering::SeqCst,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        let (next, _) = self.advance(head, idx, 1);
                        // SYNC: Release: pairs with the Acquire hint loads.
                        store_release(&st.head.head, next);
                        // idx < cap; the position is ours and its slot
                        // written (the CAS read it with Acquire).
                        let v = read(&self.mem, idx);
                        self.release_read(word, head.wrapping_add(self.one_lap));
                        return Ok(v);
                    }
                    Err(s) => s,
                },
            };
            match self.for_get(stamp, head) {
                ForGet::Item => {}
                ForGet::Empty => {
                    // SYNC: SeqCst, then the stamp again with SeqCst: see
                    // "Close".
                    if load_sc(&st.wait.closed) == 0 {
                        return Err(TryPopError::Empty);
                    }
                    let again = load_sc64(word);
                    if again == stamp {
                        return Err(TryPopError::Closed);
                    }
                    seen = Some(again);
                }
                ForGet::Taken => {
                    if skips == 0 {
                        return Err(self.empty_or_closed());
                    }
                    skips -= 1;
                    head = self.move_on(&st.head.head, &mut hint, head, idx);
                }
                ForGet::Writing(owner) => {
                    if Self::stall(&mut stalls) {
                        seen = Some(word.load(Ordering::Acquire));
                        continue;
                    }
                    if !self.skip_dead_writer(word, stamp, head, idx, owner) {
                        // A live producer is writing the slot: a put in
                        // progress, not an empty ring (items finished
                        // after it wait behind it); wait for the write.
                        match Self::wait_out_claim(word, stamp, &mut waited) {
                            Some(now) => {
                                seen = Some(now);
                                continue;
                            }
                            None => return Err(TryPopError::Empty),
                        }
                    }
                    // Skipped (the position is done), or stale (the hint is
                    // further on).
                    head = self.move_on(&st.head.head, &mut hint, head, idx);
                    stalls = 0;
                }
                ForGet::Odd => {
                    // SYNC: Acquire, as the first hint load.
                    let again = st.head.head.load(Ordering::Acquire);
                    if again == hint && !Self::stall(&mut stalls) {
                        return Err(self.empty_or_closed());
                    }
                    (hint, head) = (again, again);
                }
            }
        }
    }

    /// Ends a get whose item is read (and decoded) out of the slot that
    /// `word` stamps: wakes the producers that sleep for room, then frees
    /// the slot (stamp `free`), then wakes the producers that wait for this
    /// very slot's release (see "Dead consumers' items" in the module
    /// docs). The wake system call comes while the slot is still claimed,
    /// so a consumer killed in it leaves a claim that the recovery counts
    /// in [`lost`](Self::lost); after the release only a load remains
    /// (unless a producer sleeps on the release, after a slow read).
    #[inline]
    fn release_read(&self, word: &AtomicU64, free: u64) {
        let st = self.mem.state();
        // SYNC: the state store of the `writable` Dekker pair is our
        // claiming CAS (SeqCst), read by `put_state`, which takes a slot
        // claimed by a reader as a reason to stop sleeping there and wait
        // on `released` instead.
        st.wait.writable.notify(self.mem.waiter());
        // SYNC: the Release half pairs with the Acquire of producers'
        // claiming CASes (we are done reading the slot); the SeqCst half is
        // the state store of the `released` Dekker pair, read by the
        // condition in `wait_released`.
        store_sc64(word, free);
        st.wait.released.notify(self.mem.waiter());
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

    /// Closes the ring: later puts fail, gets drain what is left and then
    /// report [`TryPopError::Closed`]. Wakes every sleeper. Closing twice
    /// is harmless.
    pub fn close(&self) {
        let st = self.mem.state();
        // SYNC: SeqCst: the state store of both eventcounts' Dekker pairs,
        // read by `put_state` / `can_get`, and the close of "Close".
        st.wait.closed.swap(1, Ordering::SeqCst);
        st.wait.readable.notify(self.mem.waiter());
        st.wait.writable.notify(self.mem.waiter());
        st.wait.released.notify(self.mem.waiter());
    }

    /// Whether the ring was closed.
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.mem.state().wait.closed.load(Ordering::Relaxed) != 0
    }

    /// Items a consumer took and never returned because it died, as
    /// counted by the producers that freed their slots.
    pub fn lost(&self) -> u64 {
        self.mem.state().wait.lost.load(Ordering::Relaxed)
    }

    /// What every slot holds now, read stamp by stamp (`O(capacity)`, and
    /// a liveness look for each claim): a count of the ring's items that
    /// trusts no counter and no hint. Each stamp is read with Acquire, so
    /// whatever a consumer did before releasing a slot this census finds
    /// released is visible after it.
    pub fn census(&self) -> Census {
        let mut c = Census::default();
        for i in 0..self.cap {
            // SAFETY: i < capacity.
            let stamp = unsafe { self.mem.stamp(i) };
            // SYNC: Acquire pairs with the Release (or SeqCst) stamp stores
            // of puts and gets: a released slot's get did everything it
            // does before its release.
            let s = stamp.load(Ordering::Acquire);
            if s & CLAIM != 0 {
                let dead = stamp::claim_owner(s).is_some_and(|o| self.mem.is_dead(o));
                match (s & READING != 0, dead) {
                    (true, false) => c.reading += 1,
                    (true, true) => c.reading_dead += 1,
                    (false, false) => c.writing += 1,
                    // A dead producer's claim: its put never returned.
                    (false, true) => {}
                }
            } else if s & (self.one_lap - 1) == i as u64 + 1 {
                c.written += 1;
            }
        }
        c
    }

    /// Items in the ring now (a snapshot from the hints, `0..=capacity`);
    /// positions claimed by a producer but not yet written count.
    pub fn len(&self) -> usize {
        let st = self.mem.state();
        let tail = st.tail.tail.load(Ordering::SeqCst);
        let head = st.head.head.load(Ordering::SeqCst);
        let (Some(h), Some(t)) = (self.slot_of(head), self.slot_of(tail)) else {
            // Scribbled: nothing sensible to say.
            return 0;
        };
        let laps = (tail >> self.lap_shift).wrapping_sub(head >> self.lap_shift) as i64;
        let n = (laps as i128) * (self.cap as i128) + t as i128 - h as i128;
        n.clamp(0, self.cap as i128) as usize
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
