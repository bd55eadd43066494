//! A bounded multi-producer multi-consumer ring with per-slot sequence
//! stamps, after Dmitry Vyukov's bounded MPMC queue and crossbeam's
//! `ArrayQueue`, changed so that a process killed in the middle of a put or
//! a get blocks nobody: a position is claimed in its slot's stamp, with the
//! claimant's identity, rather than in a shared counter. Blocking uses two
//! [`EventCount`]s: `readable` (consumers wait for an item) and `writable`
//! (producers wait for room).
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
//! sleep in slices of [`CLAIM_POLL`] and look for dead claims between them.
//! A claimant whose identity does not fit (a TID of 2^22 or more) or whose
//! liveness cannot be told is never taken for dead: its position then
//! stays blocked, as in every Vyukov ring.
//!
//! # Close
//!
//! `close` sets the `closed` word (on the wait line, which producers read
//! anyway) and wakes every sleeper. A producer checks it before claiming
//! (a quick way out) and again, with `SeqCst`, after claiming: if the ring
//! was closed in between, it gives the position up (stamp `p + one_lap`,
//! which consumers skip) and reports `Closed`. A consumer that finds its
//! position free for its producer reads `closed` and then the stamp again
//! (all `SeqCst`): if both say so, no producer can still publish there, and
//! it reports [`TryPopError::Closed`]. So every put that succeeded is taken
//! before consumers see `Closed`, and none succeeds after the close.
//!
//! # Stalls
//!
//! A slot claimed but not yet written (or read) by a live thread that was
//! preempted mid-operation blocks the position, as in every Vyukov ring. A
//! non-blocking call spins a few rounds on such a slot, then reports `Full`
//! (or `Empty`); the blocking calls sleep until the stamp changes.
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

use std::time::{Duration, Instant};

use super::eventcount::EventCount;
use super::spsc::{TryPopError, TryPushError};
use crate::algo::robust::Owner;
use crate::algo::wait::{Waiter, backoff, time_left};
use crate::loom::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::loom::{load_sc, load_sc64, store_sc64};

/// Rounds a non-blocking call waits on a slot that another thread claimed
/// but has not finished (or on a position that makes no sense), before
/// giving up (or, for a claim, asking whether its owner is dead); each
/// round spins `2^round` hints.
const STALL_ROUNDS: u32 = if cfg!(loom) { 1 } else { 8 };

/// Re-reads a waiter's condition makes while the position it looks at
/// keeps moving, before it just reports "ready" (and lets the caller retry).
const RECHECKS: u32 = if cfg!(loom) { 2 } else { 16 };

/// The longest a blocked call sleeps before it looks for a dead claimant
/// at the position it waits for (nobody wakes it when one dies).
pub const CLAIM_POLL: Duration = Duration::from_millis(20);

/// Stamp bit: the stamp is a claim, not a position.
const CLAIM: u64 = 1 << 63;
/// Claim bit: a consumer's claim (clear: a producer's).
const READING: u64 = 1 << 62;
/// Where the lap tag sits in a claim, and its mask (after shifting).
const TAG_SHIFT: u32 = 54;
const TAG_MASK: u64 = 0xff;
/// The owner TID bits of a claim (Linux TIDs stay below 2^22).
const CLAIM_TID_MASK: u64 = (1 << 22) - 1;

/// The claim bits that name `me`: TID and start stamp. A TID that does not
/// fit is recorded as 0, "unknown", never taken for dead.
#[inline]
fn owner_bits(me: Owner) -> u64 {
    let tid = u64::from(me.tid);
    let tid = if tid <= CLAIM_TID_MASK { tid } else { 0 };
    (tid << 32) | u64::from(me.stamp)
}

/// The owner a claim names, if it names one.
#[inline]
fn claim_owner(word: u64) -> Option<Owner> {
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
fn store_release(word: &AtomicU64, value: u64) {
    #[cfg(not(loom))]
    word.store(value, Ordering::Release);
    #[cfg(loom)]
    word.swap(value, Ordering::Release);
}

/// What a producer at a position finds in the slot's stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ForPut {
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
enum ForGet {
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

/// A stuck claim's owner, as a recoverer sees it.
enum Claimant {
    /// Our position is stale (the hint moved past it).
    Stale,
    /// The owner lives (or cannot be told dead): wait for it.
    Alive,
    /// The owner is dead: the claim may be recovered.
    Dead,
}

/// The producers' cache line.
#[repr(C, align(64))]
#[derive(Debug)]
struct TailLine {
    /// Where producers start looking for a free position (a hint).
    tail: AtomicU64,
}

/// The wait line: read by every put, written only when somebody sleeps,
/// closes, or recovers a dead consumer's slot.
#[repr(C, align(64))]
#[derive(Debug)]
struct WaitLine {
    /// Consumers wait here for items (or the close).
    readable: EventCount,
    /// Producers wait here for room (or the close).
    writable: EventCount,
    /// Non-zero once the ring is closed.
    closed: AtomicU32,
    /// Items taken by consumers that died before their get returned.
    lost: AtomicU64,
}

/// The consumers' cache line.
#[repr(C, align(64))]
#[derive(Debug)]
struct HeadLine {
    /// Where consumers start looking for an item (a hint).
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
/// +0    tail hint (u64)                          producers' line
/// +64   readable, writable eventcounts, closed   wait line
///       (u32), lost (u64)
/// +128  head hint (u64)                          consumers' line
/// +192  spacer                                   (slots follow at +256)
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
                closed: AtomicU32::new(0),
                lost: AtomicU64::new(0),
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
/// slots, the futex to sleep on, and who the caller is. What a slot holds,
/// and how, is up to the caller of the `*_with` operations (or to
/// [`SlotMemory`]).
///
/// # Safety
///
/// [`state`](Self::state) must return the same state and
/// [`capacity`](Self::capacity) the same value, at least 1 and below
/// `2^60`, on every call for as long as the value lives; the stamp accessor
/// must be valid for every index below that capacity. Callers of
/// [`stamp`](Self::stamp) promise `index < capacity`.
/// [`is_dead`](Self::is_dead) must never return `true` for an owner that
/// may still run: its slot would be taken from under it.
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
    /// Who the calling thread is, as its claims record it (unique among
    /// the threads that may use the ring at the same time).
    fn me(&self) -> Owner;
    /// Whether the thread a claim names is certainly gone (see the trait's
    /// safety section); asked only about claims stuck for a while.
    fn is_dead(&self, owner: Owner) -> bool;
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

    /// The slot index of `pos`, if it is below the capacity (else the
    /// position was scribbled over).
    #[inline]
    fn slot_of(&self, pos: u64) -> Option<usize> {
        let idx = (pos & (self.index_end - 1)) as usize;
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

    /// The claim word for position `pos`: the owner bits `who` (with the
    /// reading bit for a consumer) and the lap tag of `pos`.
    #[inline]
    fn claim_at(&self, who: u64, pos: u64) -> u64 {
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
    fn for_put(&self, stamp: u64, pos: u64) -> ForPut {
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
    fn for_get(&self, stamp: u64, pos: u64) -> ForGet {
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
    fn move_on(&self, word: &AtomicU64, hint: &mut u64, pos: u64, idx: usize) -> u64 {
        let (next, _) = self.advance(pos, idx, 1);
        // SYNC: Acquire, as the first hint load (claims in order).
        *hint = word.load(Ordering::Acquire);
        next.max(*hint)
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
    /// stays claimed by a live consumer still reading it).
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
                        return Err(TryPushError::Full(value));
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

    /// Gives up a position claimed after the ring was closed: no item will
    /// be written there, so consumers skip it.
    #[cold]
    fn give_up_put(&self, word: &AtomicU64, pos: u64) {
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
    fn free_dead_reader(
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
        }
        true
    }

    /// Takes the oldest item if there is one, without blocking. Makes no
    /// system call unless a producer sleeps (or a claim at the head stays
    /// put, and its owner's liveness is looked up).
    ///
    /// # Errors
    ///
    /// [`TryPopError::Empty`] if there is no item (or the item at the head
    /// stays claimed by a live producer still writing it),
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
                        // SYNC: the Release half pairs with the Acquire of
                        // producers' claiming CASes (we are done reading
                        // the slot); the SeqCst half is the state store of
                        // the `writable` Dekker pair, read by `can_put`.
                        store_sc64(word, head.wrapping_add(self.one_lap));
                        st.wait.writable.notify(self.mem.waiter());
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
                        return Err(TryPopError::Empty);
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

    /// The slot at the consumers' position `head` (slot `idx`) is claimed,
    /// as `stamp`, by its producer `owner`: if that producer is dead, takes
    /// the position as an empty one (free for the next lap). Returns
    /// whether the caller should look again (`false`: the producer lives,
    /// or cannot be told dead).
    #[cold]
    fn skip_dead_writer(
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
        }
        true
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
    pub fn wait_writable(&self, deadline: Option<Instant>) -> bool {
        let ec = &self.mem.state().wait.writable;
        loop {
            if ec.wait_sliced(self.mem.waiter(), deadline, CLAIM_POLL, || self.can_put()) {
                return true;
            }
            if time_left(deadline).is_err() {
                return false;
            }
            // A slice with no notify: maybe a consumer died at the tail.
            self.recover_at_tail();
            crate::loom::spin_hint();
        }
    }

    /// Waits until a get may succeed (an item at the head, or closed and
    /// drained), or `deadline` passes; returns whether it may. Sleeps in
    /// slices of [`CLAIM_POLL`], skipping the position of a producer that
    /// died writing it.
    pub fn wait_readable(&self, deadline: Option<Instant>) -> bool {
        let ec = &self.mem.state().wait.readable;
        loop {
            if ec.wait_sliced(self.mem.waiter(), deadline, CLAIM_POLL, || self.can_get()) {
                return true;
            }
            if time_left(deadline).is_err() {
                return false;
            }
            // A slice with no notify: maybe a producer died at the head.
            self.recover_at_head();
            crate::loom::spin_hint();
        }
    }

    /// Frees the slot at the tail hint if a dead consumer holds it.
    #[cold]
    fn recover_at_tail(&self) {
        // SYNC: Acquire, as the first hint load.
        let tail = self.mem.state().tail.tail.load(Ordering::Acquire);
        let Some(idx) = self.slot_of(tail) else {
            return;
        };
        // SAFETY: idx < cap.
        let word = unsafe { self.mem.stamp(idx) };
        // SYNC: Acquire, as the stamp reads in `try_put_with`.
        let stamp = word.load(Ordering::Acquire);
        if let ForPut::Reading(owner) = self.for_put(stamp, tail) {
            self.free_dead_reader(word, stamp, tail, owner);
        }
    }

    /// Skips the position at the head hint if a dead producer holds it.
    #[cold]
    fn recover_at_head(&self) {
        // SYNC: Acquire, as the first hint load.
        let head = self.mem.state().head.head.load(Ordering::Acquire);
        let Some(idx) = self.slot_of(head) else {
            return;
        };
        // SAFETY: idx < cap.
        let word = unsafe { self.mem.stamp(idx) };
        // SYNC: Acquire, as the stamp reads in `try_get_with`.
        let stamp = word.load(Ordering::Acquire);
        if let ForGet::Writing(owner) = self.for_get(stamp, head) {
            self.skip_dead_writer(word, stamp, head, idx, owner);
        }
    }

    /// A waiting producer's condition: closed, or the slot at the tail is
    /// free for it.
    fn can_put(&self) -> bool {
        let st = self.mem.state();
        // SYNC: reading half of the waiter's side of the `writable` Dekker
        // pair (every load here): pairs with the SeqCst stamp swaps freeing a
        // slot in `try_get_with` / `get_into` and with the swap in `close`.
        if load_sc(&st.wait.closed) != 0 {
            return true;
        }
        let mut hint = load_sc64(&st.tail.tail);
        let mut tail = hint;
        let (mut rechecks, mut skips) = (RECHECKS, self.skip_budget());
        loop {
            let Some(idx) = self.slot_of(tail) else {
                // Scribbled: sleep (until a notify or the deadline).
                return false;
            };
            // SAFETY: idx < cap.
            match self.for_put(load_sc64(unsafe { self.mem.stamp(idx) }), tail) {
                ForPut::Free => return true,
                // Walk on from a lagging hint to the first untaken position.
                // A hint lags by less than a lap, so a walk past the budget
                // means scribbled stamps: sleep (until a notify or a slice
                // ends), do not spin.
                ForPut::Taken => {
                    if skips == 0 {
                        return false;
                    }
                    skips -= 1;
                    let (next, _) = self.advance(tail, idx, 1);
                    hint = load_sc64(&st.tail.tail);
                    tail = next.max(hint);
                }
                // The previous lap's item is still there (its consumer will
                // notify when done), unless a producer claimed meanwhile (the
                // hint changed; a lagging hint store counts as a change).
                ForPut::Full | ForPut::Reading(_) | ForPut::Odd => {
                    let again = load_sc64(&st.tail.tail);
                    if again == hint {
                        return false;
                    }
                    if rechecks == 0 {
                        return true;
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
                // (past the budget: scribbled, sleep, as in `can_put`).
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

    /// Closes the ring: later puts fail, gets drain what is left and then
    /// report [`TryPopError::Closed`]. Wakes every sleeper. Closing twice
    /// is harmless.
    pub fn close(&self) {
        let st = self.mem.state();
        // SYNC: SeqCst: the state store of both eventcounts' Dekker pairs,
        // read by `can_put` / `can_get`, and the close of "Close".
        st.wait.closed.swap(1, Ordering::SeqCst);
        st.wait.readable.notify(self.mem.waiter());
        st.wait.writable.notify(self.mem.waiter());
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

impl<M: SlotMemory> RawQueue<M> {
    /// Puts `value` if there is room, without blocking. Makes no system
    /// call unless a consumer sleeps.
    ///
    /// # Errors
    ///
    /// [`TryPushError::Closed`] after [`close`](Self::close),
    /// [`TryPushError::Full`] if there is no room (or the slot at the tail
    /// stays claimed by a live consumer still reading it).
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
    /// stays claimed by a live producer still writing it),
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
        st.wait.writable.notify(self.mem.waiter());
        n
    }
}
