//! The shared memory of an MPMC ring: the [`MpmcState`] lines (tail hint,
//! wait line, head hint, spacer) and their byte layout ([`STATE_BYTES`]),
//! and the [`QueueMemory`] / [`SlotMemory`] traits through which the ring
//! reaches its state, its slots' stamps and values, its futex and its
//! caller's identity.

use crate::algo::eventcount::EventCount;
use crate::algo::robust::Owner;
use crate::algo::wait::Waiter;
use crate::loom::atomic::{AtomicU32, AtomicU64};

/// The producers' cache line.
#[repr(C, align(64))]
#[derive(Debug)]
pub(super) struct TailLine {
    /// Where producers start looking for a free position (a hint).
    pub(super) tail: AtomicU64,
}

/// The wait line: read by every put, written only when somebody sleeps,
/// closes, or recovers a dead consumer's slot.
#[repr(C, align(64))]
#[derive(Debug)]
pub(super) struct WaitLine {
    /// Consumers wait here for items (or the close).
    pub(super) readable: EventCount,
    /// Producers wait here for room (or the close).
    pub(super) writable: EventCount,
    /// Non-zero once the ring is closed.
    pub(super) closed: AtomicU32,
    /// Items taken by consumers that died before their get returned.
    pub(super) lost: AtomicU64,
    /// Producers whose slot a live consumer is still reading wait here for
    /// it to be released (the consumer wakes `writable` before releasing,
    /// this one after).
    pub(super) released: EventCount,
}

/// The consumers' cache line.
#[repr(C, align(64))]
#[derive(Debug)]
pub(super) struct HeadLine {
    /// Where consumers start looking for an item (a hint).
    pub(super) head: AtomicU64,
}

/// A spacer, so that the consumers' line and slot 0 are 128 bytes apart.
#[repr(C, align(64))]
#[derive(Debug)]
pub(super) struct Spacer([u8; 64]);

/// The shared words of an MPMC ring (the slots and their stamps live in
/// [`QueueMemory`]). Only ever accessed through atomics; all-zero bytes
/// are an empty, open ring (the stamps need [`RawQueue::init`]).
///
/// ```text
/// +0    tail hint (u64)                          producers' line
/// +64   readable, writable eventcounts, closed   wait line
///       (u32), lost (u64), released eventcount
/// +128  head hint (u64)                          consumers' line
/// +192  spacer                                   (slots follow at +256)
/// ```
///
/// [`RawQueue::init`]: super::RawQueue::init
#[repr(C)]
#[derive(Debug)]
pub struct MpmcState {
    pub(super) tail: TailLine,
    pub(super) wait: WaitLine,
    pub(super) head: HeadLine,
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
                released: EventCount::new(),
            },
            head: HeadLine {
                head: AtomicU64::new(0),
            },
            _spacer: Spacer([0; 64]),
        }
    }

    /// Announced waiters: consumers on `readable`, and producers on
    /// `writable` and `released` together (a snapshot, for tests).
    #[cfg_attr(not(loom), allow(dead_code))] // used by the loom models
    pub fn waiters(&self) -> (u32, u32) {
        (
            self.wait.readable.waiters(),
            self.wait.writable.waiters() + self.wait.released.waiters(),
        )
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

    /// Whether everyone who could put into the ring is gone for good
    /// (every holder of a pipe's sending end died or dropped it, and no
    /// new one came for a while): asked by a consumer that slept a slice
    /// on an empty ring, which then closes the ring (it drains, then
    /// reports `Closed`). Default: never.
    fn producers_gone(&self) -> bool {
        false
    }

    /// Whether everyone who could take from the ring is gone for good:
    /// asked by a producer that slept a slice on a full ring, which then
    /// closes the ring (its put fails). Default: never.
    fn consumers_gone(&self) -> bool {
        false
    }
}

/// [`QueueMemory`] whose slots hold one `Copy` value each, for the
/// value-taking operations ([`try_put`](super::RawQueue::try_put),
/// [`put_slice`](super::RawQueue::put_slice), ...).
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
