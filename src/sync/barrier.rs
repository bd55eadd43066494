//! `Barrier` (Python's `multiprocessing.Barrier`), placed in shared memory.
//!
//! After the object header: the barrier word (arrivals, flags,
//! generation; see [`RawBarrier`] for the algorithm), the number of
//! parties (written once before publish), and from the next cache line a
//! [`HolderTable`] of the threads inside `wait`, the [`Roster`] that lets
//! a round broken with a dead waiter inside heal (640 bytes in all).

use std::fmt;
use std::time::Duration;

use bytemuck::{Pod, Zeroable};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::loom::atomic::{AtomicU32, Ordering};
use crate::shm::header::{Expect, ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Placed, Token};
use crate::algo::wait::deadline;
use crate::shm::object::Place;
use crate::algo::barrier::{MAX_PARTIES, RawBarrier, Roster, WaitError};
use crate::algo::holders::{HOLDER_TABLE_BYTES, HolderTable};
use crate::sys::futex::Futex;
use crate::sys::thread::{self, ProcLiveness};

/// A `Barrier` in shared memory: only ever accessed through atomics.
#[repr(C, align(64))]
#[derive(Clone, Copy, Pod, Zeroable)]
struct BarrierState {
    /// `RawBarrier`'s word.
    word: u32,
    /// How many waiters release a round.
    parties: u32,
    _pad: [u32; 14],
    /// A [`HolderTable`] of the threads inside `wait` (the barrier's
    /// [`Roster`]), on its own cache lines.
    waiters: [[u64; 8]; HOLDER_TABLE_BYTES / 64],
}

/// Byte offset of the waiter table in [`BarrierState`].
const WAITERS_AT: usize = 64;
const _: () = assert!(std::mem::offset_of!(BarrierState, waiters) == WAITERS_AT);

/// The barrier's [`Roster`]: its shared table of the threads inside `wait`,
/// each recorded as its TID and start stamp, dead when `/proc` says so.
struct Waiters<'a>(&'a HolderTable);

impl Roster for Waiters<'_> {
    #[inline]
    fn enter(&self) {
        // A full table marks itself overflowed: it then never reads as
        // all dead, and the barrier never heals (the documented limit).
        let _ = self.0.add_untimed(thread::current(), &ProcLiveness);
    }

    #[inline]
    fn leave(&self) {
        self.0.remove(thread::current());
    }

    fn all_dead(&self) -> bool {
        self.0.gone(&ProcLiveness)
    }
}

/// The barrier is broken: a waiter timed out, someone called
/// [`Barrier::abort`] or [`Barrier::reset`] while this waiter waited, or the
/// barrier was already broken. Python's `BrokenBarrierError`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, thiserror::Error)]
#[error("the barrier is broken")]
pub struct BrokenBarrier;

impl From<BrokenBarrier> for crate::Error {
    fn from(_: BrokenBarrier) -> Self {
        crate::Error::BrokenBarrier
    }
}

/// Why a [`Barrier::wait_timeout`] failed. Both leave the barrier broken
/// until [`reset`](Barrier::reset) (Python's `BrokenBarrierError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierTimeoutError {
    /// This waiter's time ran out, which broke the round it had arrived in
    /// for everybody (during a [`reset`](Barrier::reset), it gave up
    /// before arriving).
    #[error("timed out at the barrier (the barrier is now broken)")]
    Timeout,
    /// The barrier is or became broken otherwise: another waiter timed
    /// out, or someone called [`abort`](Barrier::abort) or
    /// [`reset`](Barrier::reset).
    #[error("the barrier is broken")]
    Broken,
}

impl From<BarrierTimeoutError> for crate::Error {
    fn from(e: BarrierTimeoutError) -> Self {
        match e {
            BarrierTimeoutError::Timeout => crate::Error::Timeout,
            BarrierTimeoutError::Broken => crate::Error::BrokenBarrier,
        }
    }
}

/// What a successful [`Barrier::wait`] returns: whether this waiter is the
/// round's leader (as `std::sync::BarrierWaitResult`), and its arrival index
/// (as Python's `wait()` return value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarrierWaitResult {
    index: u32,
    leader: bool,
}

impl BarrierWaitResult {
    /// `true` for exactly one waiter per round: the one whose arrival
    /// completed it.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let b = multiproc::Barrier::new(1)?;
    /// assert!(b.wait()?.is_leader());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// Arrival order in the round, `0..parties`: different for every waiter
    /// of a round; the leader's is `parties - 1`.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let b = multiproc::Barrier::new(1)?;
    /// assert_eq!(b.wait()?.index(), 0);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn index(&self) -> u32 {
        self.index
    }
}

/// A meeting point for a fixed number of processes: Python's
/// `multiprocessing.Barrier`.
///
/// Each of `parties` waiters calls [`wait`](Self::wait); all of them sleep
/// until the last arrives, then all return, exactly one of them as the
/// [leader](BarrierWaitResult::is_leader). The barrier is then ready for the
/// next round.
///
/// As in Python, a barrier can *break*: when a waiter's
/// [`wait_timeout`](Self::wait_timeout) runs out, or someone calls
/// [`abort`](Self::abort). Every waiter of the round, and every later one,
/// then gets [`BrokenBarrier`] until [`reset`](Self::reset).
///
/// Waiting spins briefly, then sleeps on a shared futex; the last arrival
/// makes no system call when nobody sleeps.
///
/// # A party that dies
///
/// A party killed (even by `SIGKILL`):
///
/// - **after it arrived** (inside `wait`) still counts: its round completes
///   when the others arrive, as if it had passed;
/// - **before it arrived** never comes: the others' plain `wait` would wait
///   for it forever, so use [`wait_timeout`](Self::wait_timeout), whose
///   timeout breaks the round for everybody; [`reset`](Self::reset) then
///   makes the barrier whole again;
/// - **inside a round that then breaks** never leaves that round; the
///   barrier keeps a table of the threads inside `wait` (63 slots, each a
///   thread id and start time, next to the barrier word), and once a reset
///   is draining a round in which no live thread is left, the round is
///   dropped: by [`reset`](Self::reset) itself, by the last live waiter of
///   that round as it leaves, or by an arrival waiting for the drain (it
///   looks every 10 ms; until one comes, [`is_broken`](Self::is_broken) may
///   stay `true` if the last live thread to leave was one released from an
///   earlier round).
///   After more than 63 threads were inside `wait` at once the table
///   overflows for good and such a round stays broken: make a new barrier.
///
/// Dead means what `/proc` says (all processes in one PID namespace); a
/// thread whose liveness cannot be told counts as alive.
///
/// # Examples
///
/// ```
/// use multiproc::Barrier;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let b = Barrier::new(2)?;
/// let other = b.clone(); // or a forked child's copy
/// let t = std::thread::spawn(move || other.wait().map(|r| r.is_leader()));
/// let me = b.wait()?.is_leader();
/// let them = t.join().unwrap()?;
/// assert!(me != them); // exactly one leader
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Barrier {
    obj: Placed,
    /// Read once when placed or attached: a peer scribbling over it later
    /// cannot change this handle's view.
    parties: u32,
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.is_broken())
            .field("place", &self.obj)
            .finish()
    }
}

impl Barrier {
    /// Places a barrier for `parties` waiters in shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`] for 0 parties or more than 32,767,
    /// [`Error::Io`] if a new segment cannot be made.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let b = multiproc::Barrier::new(4)?;
    /// assert_eq!(b.parties(), 4);
    /// assert!(multiproc::Barrier::new(0).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(parties: u32) -> Result<Self> {
        Self::make(Place::Arena, parties)
    }

    /// Places a barrier for `parties` waiters at `offset` of a named segment,
    /// for unrelated processes to [`open_at`](crate::SharedObject::open_at). `offset` must
    /// be a multiple of [`shared_align`](Self::shared_align) with
    /// [`shared_size`](Self::shared_size) bytes free after it.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), plus
    /// [`Error::OutOfBounds`] for a misaligned or too-late offset and
    /// [`Error::AlreadyExists`] if an object was already placed there.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::SharedObject;
    /// use multiproc::{Barrier, SharedMemory};
    /// # fn main() -> multiproc::Result<()> {
    /// # let name = format!("multiproc-doc-barrier-{}", std::process::id());
    /// let shm = SharedMemory::create(&name, 4096)?;
    /// let b = Barrier::create_at(&shm, 0, 3)?;
    /// assert_eq!(Barrier::open_at(&shm, 0)?.parties(), 3);
    /// # drop(b);
    /// # shm.unlink()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn create_at(shm: &SharedMemory, offset: usize, parties: u32) -> Result<Self> {
        Self::make(Place::At(shm, offset), parties)
    }

    fn make(place: Place<'_>, parties: u32) -> Result<Self> {
        if parties == 0 || parties > MAX_PARTIES {
            return Err(Error::InvalidSize {
                requested: u64::from(parties),
                reason: if parties == 0 {
                    "a barrier needs at least one party"
                } else {
                    "a barrier takes at most 32767 parties"
                },
            });
        }
        let layout = ObjectLayout::new::<BarrierState>(ObjectKind::Barrier, 1)?;
        let obj = place.make(layout, |p| {
            let state = BarrierState {
                parties,
                ..Zeroable::zeroed()
            };
            // SAFETY: the data pointer is aligned and valid for one
            // BarrierState; nobody else can see it before `publish`.
            unsafe { p.cast::<BarrierState>().write(state) }
        })?;
        Ok(Self::over(obj))
    }

    fn over(obj: Placed) -> Self {
        // SAFETY: BarrierState holds `parties` as its second u32.
        let parties = unsafe { word(&obj, 1) }.load(Ordering::Relaxed);
        // A scribbled 0 would make every waiter a leader of its own round;
        // clamp to the smallest real barrier instead.
        Barrier {
            obj,
            parties: parties.clamp(1, MAX_PARTIES),
        }
    }

    /// Bytes a `Barrier` takes in a segment.
    pub fn shared_size() -> usize {
        ObjectLayout::new::<BarrierState>(ObjectKind::Barrier, 1)
            .map_or(usize::MAX, |l| l.total_size)
    }

    /// Alignment a `Barrier` needs in a segment (64).
    pub fn shared_align() -> usize {
        ObjectLayout::new::<BarrierState>(ObjectKind::Barrier, 1).map_or(usize::MAX, |l| l.align)
    }

    #[inline]
    fn waiters(&self) -> Waiters<'_> {
        // SAFETY: the data pointer is aligned for BarrierState (64), whose
        // `waiters` field at WAITERS_AT holds HOLDER_TABLE_BYTES bytes; a
        // HolderTable is only atomics, valid for any bytes, and the mapping
        // lives as long as `self.obj`.
        Waiters(unsafe { &*self.obj.data().add(WAITERS_AT).cast::<HolderTable>() })
    }

    #[inline]
    fn word(&self) -> &AtomicU32 {
        // SAFETY: BarrierState holds the barrier word as its first u32.
        unsafe { word(&self.obj, 0) }
    }

    /// Waits until `parties` waiters (this one included) have arrived in this
    /// round (Python's `wait()`). See [`wait_timeout`](Self::wait_timeout) to
    /// give up after a while.
    ///
    /// # Errors
    ///
    /// [`BrokenBarrier`] if the barrier is broken, or breaks while waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let b = multiproc::Barrier::new(1)?;
    /// for _ in 0..3 {
    ///     assert!(b.wait()?.is_leader()); // a party of one leads every round
    /// }
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn wait(&self) -> Result<BarrierWaitResult, BrokenBarrier> {
        // Without a deadline the only failure is a broken round.
        self.wait_until(None).map_err(|_| BrokenBarrier)
    }

    /// Waits as [`wait`](Self::wait) for at most `timeout` (Python's
    /// `wait(timeout)`). Running out of time breaks the barrier for
    /// everybody, as in Python.
    ///
    /// # Errors
    ///
    /// [`BarrierTimeoutError::Timeout`] if the timeout ran out (which broke
    /// the barrier), [`BarrierTimeoutError::Broken`] if the barrier is or
    /// became broken otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::BarrierTimeoutError;
    /// # fn main() -> multiproc::Result<()> {
    /// let b = multiproc::Barrier::new(2)?;
    /// let err = b.wait_timeout(Duration::from_millis(5)).unwrap_err(); // nobody came
    /// assert_eq!(err, BarrierTimeoutError::Timeout);
    /// assert!(b.is_broken());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn wait_timeout(
        &self,
        timeout: Duration,
    ) -> Result<BarrierWaitResult, BarrierTimeoutError> {
        self.wait_until(deadline(timeout)).map_err(|e| match e {
            WaitError::TimedOut => BarrierTimeoutError::Timeout,
            WaitError::Broken => BarrierTimeoutError::Broken,
        })
    }

    fn wait_until(
        &self,
        deadline: Option<std::time::Instant>,
    ) -> Result<BarrierWaitResult, WaitError> {
        RawBarrier::wait(self.word(), self.parties, &Futex, &self.waiters(), deadline).map(|a| BarrierWaitResult {
            index: a.index,
            leader: a.leader,
        })
    }

    /// Breaks the barrier: every waiter, now and until
    /// [`reset`](Self::reset), gets [`BrokenBarrier`] (Python's `abort()`).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let b = multiproc::Barrier::new(2)?;
    /// b.abort();
    /// assert!(b.is_broken());
    /// assert!(b.wait().is_err());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn abort(&self) {
        RawBarrier::abort(self.word(), &Futex);
    }

    /// Makes the barrier whole and empty again (Python's `reset()`). Waiters
    /// of the current round get [`BrokenBarrier`]; new arrivals wait until
    /// those have left, then fill a fresh round. Waiters that died inside
    /// the round are not waited for (see [A party that
    /// dies](Self#a-party-that-dies)).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let b = multiproc::Barrier::new(1)?;
    /// b.abort();
    /// b.reset();
    /// assert!(!b.is_broken());
    /// assert!(b.wait()?.is_leader());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn reset(&self) {
        RawBarrier::reset(self.word(), &Futex, &self.waiters());
    }

    /// Whether the barrier is broken (a snapshot; Python's `broken`).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let b = multiproc::Barrier::new(3)?;
    /// assert!(!b.is_broken());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn is_broken(&self) -> bool {
        RawBarrier::is_broken(self.word())
    }

    /// How many waiters release a round (Python's `parties`).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// assert_eq!(multiproc::Barrier::new(5)?.parties(), 5);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn parties(&self) -> u32 {
        self.parties
    }

    /// How many waiters are waiting in the current round (a snapshot, 0 when
    /// broken; Python's `n_waiting`).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let b = multiproc::Barrier::new(2)?;
    /// assert_eq!(b.n_waiting(), 0);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn n_waiting(&self) -> u32 {
        RawBarrier::n_waiting(self.word())
    }
}

/// The `index`th `u32` of a barrier's state, as an atomic.
///
/// # Safety
///
/// `index` must be 0 or 1 (the fields of [`BarrierState`]).
unsafe fn word(obj: &Placed, index: usize) -> &AtomicU32 {
    // SAFETY: the data pointer is aligned for BarrierState (align 4) and
    // valid for both its fields (the caller's contract) while the mapping
    // lives, which `obj` guarantees for the returned lifetime; after publish
    // every process accesses these words only atomically.
    unsafe { AtomicU32::from_ptr(obj.data().cast::<u32>().add(index)) }
}

// SAFETY: a `BarrierState` (two `u32`s, used only atomically) at the data offset of
// a `Barrier` header of its fingerprint, which is all the handle touches.
unsafe impl Object for Barrier {
    const KIND: ObjectKind = ObjectKind::Barrier;

    fn expect() -> Expect {
        Expect::of::<BarrierState>()
    }

    fn from_placed(obj: Placed, _: u32, _: Token) -> Result<Self> {
        Ok(Self::over(obj))
    }

    fn placed(&self) -> &Placed {
        &self.obj
    }
}

/// Encodes the handle as its [`Descriptor`](crate::Descriptor).
impl Serialize for Barrier {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::barrier::{BROKEN, RESETTING};
    use crate::algo::robust::Owner;

    /// An arrival that finds a reset draining a round whose only waiter is
    /// dead (a TID above the kernel's limit: no such task) heals it after
    /// one slice and fills a round of its own.
    #[test]
    fn an_arrival_heals_a_drain_that_only_the_dead_hold() {
        let b = Barrier::new(1).unwrap();
        let dead = Owner {
            tid: 1 << 29,
            stamp: 1,
        };
        assert!(b.waiters().0.add(dead, &ProcLiveness));
        b.word().store(1 | BROKEN | RESETTING, Ordering::SeqCst);
        assert!(b.is_broken());
        let r = b.wait_timeout(Duration::from_secs(10)).expect("healed");
        assert!(r.is_leader());
        assert!(!b.is_broken());
        assert_eq!(b.waiters().0.holders(), 1, "only the dead record");
    }

    /// While a live waiter is recorded, the drain is not dropped: the
    /// arrival times out instead.
    #[test]
    fn a_live_waiter_keeps_the_drain() {
        let b = Barrier::new(1).unwrap();
        let me = thread::current();
        assert!(b.waiters().0.add(me, &ProcLiveness));
        b.word().store(1 | BROKEN | RESETTING, Ordering::SeqCst);
        let other = b.clone();
        let r = std::thread::spawn(move || other.wait_timeout(Duration::from_millis(60)))
            .join()
            .unwrap();
        assert_eq!(r, Err(BarrierTimeoutError::Timeout));
        b.reset();
        assert!(b.is_broken(), "reset cannot drop a live waiter's round");
    }
}
