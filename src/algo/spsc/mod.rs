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

mod consumer;
mod cursor;
mod error;
mod memory;
mod producer;
mod state;

pub use consumer::RawConsumer;
pub use error::{Closed, TryPopError, TryPushError};
pub use memory::RingMemory;
pub use producer::RawProducer;
#[cfg(not(loom))]
pub(crate) use state::STATE_BYTES;
pub use state::{Fencing, SpscState};

/// The first slice of a blocked end whose memory
/// [watches its peer](RingMemory::watches_peer); each fruitless look
/// doubles it, up to [`PEER_LOOK_MAX`] (the MPMC claim polls go the same way).
pub const PEER_LOOK: Duration = Duration::from_millis(20);
/// The longest slice between two looks at the peer.
pub const PEER_LOOK_MAX: Duration = Duration::from_millis(1280);

/// The end of the next slice of a peer-watching wait: `slice` from now, or
/// `deadline` if that comes first.
#[inline]
fn slice_end(deadline: Option<Instant>, slice: Duration) -> Instant {
    let end = Instant::now() + slice;
    deadline.map_or(end, |d| d.min(end))
}

use std::time::{Duration, Instant};

use super::eventcount::EventCount;
use crate::algo::wait::Waiter;
use crate::loom::atomic::{AtomicU64, Ordering};
use crate::loom::store_sc64;

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
