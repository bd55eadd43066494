//! The shared words of a ring ([`SpscState`]: the producer's, wait and
//! consumer's cache lines), its [`Fencing`] and the operations on the words
//! alone: close, length, waiters.

use crate::algo::eventcount::EventCount;
use crate::algo::wait::Waiter;
use crate::loom::atomic::{AtomicU32, AtomicU64, Ordering};

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
pub(super) struct ProducerLine {
    /// Position after the last published item.
    pub(super) tail: AtomicU64,
}

/// The wait line: read on every publish, written only when somebody sleeps
/// or closes (so it stays in both sides' caches).
#[repr(C, align(64))]
#[derive(Debug)]
pub(super) struct WaitLine {
    /// The consumer waits here for items (or the close).
    pub(super) readable: EventCount,
    /// The producer waits here for room (or the close).
    pub(super) writable: EventCount,
    /// Non-zero once the channel is closed.
    pub(super) closed: AtomicU32,
    /// [`ASYMMETRIC`] or not; written before the ring is published, read
    /// when an end is made.
    fencing: AtomicU32,
}

/// The consumer's cache line: written only by the consumer.
#[repr(C, align(64))]
#[derive(Debug)]
pub(super) struct ConsumerLine {
    /// Position of the next item to take.
    pub(super) head: AtomicU64,
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
    pub(super) producer: ProducerLine,
    pub(super) wait: WaitLine,
    pub(super) consumer: ConsumerLine,
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
    /// report [`TryPopError::Closed`](super::TryPopError::Closed). Wakes
    /// both sides if they sleep. Closing twice is harmless.
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
