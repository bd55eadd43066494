//! `Semaphore` and `BoundedSemaphore` (Python's `multiprocessing.Semaphore`
//! and `BoundedSemaphore`), placed in shared memory.
//!
//! Both keep, after the object header, the semaphore's 64-bit word (the
//! permit count and a bitmap of the permits held through guards; see
//! [`RawSemaphore`] for the algorithm), the count of announced waiters, the
//! bound (a `BoundedSemaphore`'s) and the count of permits taken back from
//! dead holders, then, from the next cache line, a [`HolderTable`] whose
//! first 32 slots name the guard holders (640 bytes in all). The two have different state
//! types, so their headers carry different fingerprints and attaching one as
//! the other is an [`Error::LayoutMismatch`](crate::Error::LayoutMismatch).
//!
//! As in Python, a bounded semaphore (`sync/bounded_semaphore.rs`) is a
//! semaphore whose release refuses to pass its bound: every handle keeps
//! the bound it may release up to (`u32::MAX` for a plain one, the initial
//! value for a bounded one, read once when placed or attached), so one
//! implementation serves both.

use std::fmt;
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::algo::holders::{HOLDER_TABLE_BYTES, HolderTable};
use crate::algo::robust::{Liveness, Owner};
use crate::algo::semaphore::{HELD_SLOTS, RawSemaphore, held_bit};
use crate::algo::wait::deadline;
use crate::error::{Result, TimedOut, WouldBlock};
use crate::loom::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::sys::thread::{self, ProcLiveness};
use crate::shm::header::{Expect, ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Place, Placed, Token};
use crate::sys::futex::Futex;

/// A `Semaphore` in shared memory: only ever accessed through atomics.
#[repr(C, align(64))]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SemState {
    /// `RawSemaphore`'s word: permits available (low half) and which
    /// holder-table slots hold one (high half).
    word: u64,
    /// Acquirers that may sleep; releases wake only when non-zero.
    waiters: u32,
    /// A bounded semaphore's bound (unused here: same offsets for both).
    max: u32,
    /// Permits taken back from dead holders (wrapping).
    recovered: u32,
    _pad: [u32; 11],
    /// A [`HolderTable`] of the permits held through guards, from the next
    /// cache line.
    holders: [[u64; 8]; HOLDER_TABLE_BYTES / 64],
}

/// Field indices (in `u32`s from the start of the state, after the `u64`
/// word), shared by both state types.
const WAITERS: usize = 2;
pub(super) const MAX: usize = 3;
const RECOVERED: usize = 4;
/// Byte offset of the holder table, in both state types.
pub(super) const HOLDERS_AT: usize = 64;
const _: () = assert!(std::mem::offset_of!(SemState, holders) == HOLDERS_AT);

/// How long a blocked acquirer sleeps before it first looks for a guard
/// holder that died; it doubles each fruitless look, up to
/// [`DEAD_HOLDER_LOOK_MAX`] (the queues' claim polls, `CLAIM_POLL`, go the
/// same way).
const DEAD_HOLDER_LOOK: Duration = Duration::from_millis(20);
const DEAD_HOLDER_LOOK_MAX: Duration = Duration::from_millis(1280);

/// How a permit was taken.
#[derive(Clone, Copy)]
enum Taken {
    /// A free permit (from `count`).
    Free,
    /// The permit a dead guard holder held (now marked as the caller's).
    FromDead,
}

/// A release that would take a semaphore above its bound: the initial value
/// of a [`BoundedSemaphore`](crate::BoundedSemaphore) (a release without a matching acquire), or
/// `u32::MAX` permits for a [`Semaphore`]. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("semaphore released too many times: its value may not exceed {max}")]
pub struct OverRelease {
    /// The bound.
    pub max: u32,
}

impl From<OverRelease> for crate::Error {
    fn from(e: OverRelease) -> Self {
        crate::Error::OverRelease { max: e.max }
    }
}

/// A counting semaphore shared between processes: Python's
/// `multiprocessing.Semaphore`.
///
/// It holds a number of permits: [`acquire`](Self::acquire) takes one,
/// sleeping while there is none; [`release`](Self::release) gives one back
/// (or adds one: nothing checks that releases match acquires, see
/// [`BoundedSemaphore`](crate::BoundedSemaphore) for that; only a count past `u32::MAX` is refused).
/// [`access`](Self::access) acquires and returns a guard that releases on
/// drop, like `with sem:`.
///
/// Waiting spins briefly, then sleeps on a shared futex; a release makes no
/// system call when nobody waits. Every handle (clones, a forked child's copy,
/// an attach from a [`Descriptor`](crate::Descriptor)) reaches the same
/// semaphore.
///
/// # A holder that dies
///
/// A permit taken through a guard ([`access`](Self::access),
/// [`try_access`](Self::try_access), [`access_timeout`](Self::access_timeout))
/// is recorded: the process writes its pid and start time into one of 32
/// slots next to the count, and the CAS that takes the permit also sets
/// that slot's bit in the count's word (the CAS that gives it back clears
/// it), so a holder killed at any instruction either holds a marked permit
/// or none. If that process dies (even by `SIGKILL`) before the guard gives
/// the permit back, an acquirer that finds no free permit takes the dead
/// holder's over, moving the bit to its own slot in one CAS (one survivor
/// wins each permit; a bounded semaphore never passes its bound): every
/// blocking acquire
/// ([`acquire`](Self::acquire), [`acquire_timeout`](Self::acquire_timeout),
/// `access`, `access_timeout`) looks after 20 ms without a permit, then at
/// doubling intervals up to 1.28 s. A guard that got such a permit says so
/// ([`SemaphoreGuard::from_dead_holder`]), and
/// [`recovered_permits`](Self::recovered_permits) counts them.
///
/// Not covered: a permit taken by a bare [`acquire`](Self::acquire) (Python
/// allows `acquire` in one process and `release` in another, so nothing can
/// tell whose it is: a holder that dies keeps it, and later acquirers wait,
/// so give them a timeout); a guard taken while all 32 slots were in use;
/// [`try_acquire`](Self::try_acquire) and `try_access`, which make no
/// system call and so never look. Measured with a holder looping on
/// `access` and SIGKILLed at random (`MULTIPROC_REDTEAM=300 cargo test
/// --release --test dead_holders`): 300 of 300 runs got the permit back. Dead means what `/proc` says (one PID
/// namespace); a holder whose liveness cannot be told counts as alive.
///
/// # Examples
///
/// ```
/// use multiproc::Semaphore;
/// use std::time::Duration;
/// # fn main() -> multiproc::Result<()> {
/// let sem = Semaphore::new(2)?;
/// sem.acquire();
/// {
///     let _permit = sem.access(); // like `with sem:`
///     assert_eq!(sem.value(), 0);
///     assert!(sem.try_acquire().is_err());
///     assert!(sem.acquire_timeout(Duration::from_millis(1)).is_err());
/// }
/// sem.release()?;
/// assert_eq!(sem.value(), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Semaphore {
    pub(super) obj: Placed,
    /// What a release may raise the count to: `u32::MAX`, or a bounded
    /// semaphore's bound, read once when placed or attached (a peer
    /// scribbling over it later cannot change this handle's view).
    pub(super) max: u32,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .field("max", &self.max)
            .field("place", &self.obj)
            .finish()
    }
}

impl Semaphore {
    /// Places a semaphore with `value` permits in shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if a new segment cannot be made.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::Semaphore::new(3)?;
    /// assert_eq!(sem.value(), 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(value: u32) -> Result<Self> {
        Self::make(Place::Arena, value)
    }

    /// Places a semaphore with `value` permits at `offset` of a named
    /// segment, for unrelated processes to [`open_at`](crate::SharedObject::open_at).
    /// `offset` must be a multiple of [`shared_align`](Self::shared_align)
    /// with [`shared_size`](Self::shared_size) bytes free after it.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`](crate::Error::OutOfBounds) for a misaligned or
    /// too-late offset, [`Error::AlreadyExists`](crate::Error::AlreadyExists)
    /// if an object was already placed there.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::SharedObject;
    /// use multiproc::{Semaphore, SharedMemory};
    /// # fn main() -> multiproc::Result<()> {
    /// # let name = format!("multiproc-doc-sem-{}", std::process::id());
    /// let shm = SharedMemory::create(&name, 4096)?;
    /// let sem = Semaphore::create_at(&shm, 0, 1)?;
    /// let same = Semaphore::open_at(&shm, 0)?;
    /// same.acquire();
    /// assert_eq!(sem.value(), 0);
    /// # shm.unlink()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn create_at(shm: &SharedMemory, offset: usize, value: u32) -> Result<Self> {
        Self::make(Place::At(shm, offset), value)
    }

    fn make(place: Place<'_>, value: u32) -> Result<Self> {
        let layout = ObjectLayout::new::<SemState>(ObjectKind::Semaphore, 1)?;
        let obj = place.make(layout, |p| {
            let state = SemState {
                word: u64::from(value),
                ..Zeroable::zeroed()
            };
            // SAFETY: the data pointer is aligned and valid for one SemState;
            // nobody else can see the object before `publish`.
            unsafe { p.cast::<SemState>().write(state) }
        })?;
        Ok(Semaphore { obj, max: u32::MAX })
    }

    /// Bytes a `Semaphore` takes in a segment.
    pub fn shared_size() -> usize {
        ObjectLayout::new::<SemState>(ObjectKind::Semaphore, 1).map_or(usize::MAX, |l| l.total_size)
    }

    /// Alignment a `Semaphore` needs in a segment (64).
    pub fn shared_align() -> usize {
        ObjectLayout::new::<SemState>(ObjectKind::Semaphore, 1).map_or(usize::MAX, |l| l.align)
    }

    /// The `index`th `u32` of the state, as an atomic. Both state types hold
    /// `WAITERS`, `MAX` and `RECOVERED` at the same indices.
    #[inline]
    fn word(&self, index: usize) -> &AtomicU32 {
        self.obj.state_u32(index)
    }

    /// The semaphore's word (count and held bitmap), in both state types.
    #[inline]
    fn sem_word(&self) -> &AtomicU64 {
        self.obj.state_u64(0)
    }

    /// Takes a permit, sleeping while there is none.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::Semaphore::new(1)?;
    /// sem.acquire();
    /// assert_eq!(sem.value(), 0);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn acquire(&self) {
        self.take(None, 0, 0);
    }

    /// Takes a permit if one is free, without blocking (Python's
    /// `acquire(block=False)`).
    ///
    /// # Errors
    ///
    /// [`WouldBlock`](crate::WouldBlock) if no permit is free.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::Semaphore::new(1)?;
    /// sem.try_acquire()?;
    /// assert!(sem.try_acquire().is_err());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> std::result::Result<(), WouldBlock> {
        if RawSemaphore::try_acquire(self.sem_word(), 0) {
            Ok(())
        } else {
            Err(WouldBlock)
        }
    }

    /// Takes a permit, giving up after `timeout` (Python's
    /// `acquire(timeout=...)`).
    ///
    /// # Errors
    ///
    /// [`TimedOut`](crate::TimedOut) if no permit came free in time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::Semaphore::new(0)?;
    /// assert!(sem.acquire_timeout(Duration::from_millis(1)).is_err());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn acquire_timeout(&self, timeout: Duration) -> std::result::Result<(), TimedOut> {
        self.take(deadline(timeout), 0, 0).map(|_| ()).ok_or(TimedOut)
    }

    /// The table of permits held through guards.
    #[inline]
    fn holders(&self) -> &HolderTable {
        // SAFETY: both state types hold HOLDER_TABLE_BYTES bytes at
        // HOLDERS_AT of their 64-aligned data (the fingerprint checked
        // their size); a HolderTable is only atomics, valid for any bytes,
        // and the mapping lives as long as `self.obj`.
        unsafe { &*self.obj.data().add(HOLDERS_AT).cast::<HolderTable>() }
    }

    /// Takes a permit, with `mark` (the held bit of the caller's reserved
    /// slot, or 0) set in the same CAS: a free one, or, after a slice with
    /// none, the permit of a guard holder that died (taken over with one
    /// CAS that moves its bit to `mark`). `None` once `deadline` passed.
    /// `me`: the caller's record in the table (0 for none).
    fn take(&self, deadline: Option<Instant>, mark: u64, me: u64) -> Option<Taken> {
        let (word, waiters) = (self.sem_word(), self.word(WAITERS));
        if RawSemaphore::try_acquire(word, mark) {
            return Some(Taken::Free);
        }
        let mut slice = DEAD_HOLDER_LOOK;
        loop {
            let end = Instant::now() + slice;
            let until = deadline.map_or(end, |d| d.min(end));
            if RawSemaphore::acquire(word, waiters, &Futex, Some(until), mark) {
                return Some(Taken::Free);
            }
            // A slice with no permit: maybe a holder died with one.
            if self.take_dead(mark, me) {
                // SYNC: Relaxed: a statistic.
                self.word(RECOVERED).fetch_add(1, Ordering::Relaxed);
                return Some(Taken::FromDead);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            slice = (slice * 2).min(DEAD_HOLDER_LOOK_MAX);
        }
    }

    /// Takes over one permit whose holder (per its slot) is dead, moving
    /// its held bit to `mark`, and frees the dead holder's slot; whether
    /// there was one. `me` (the caller's record, 0 for none) is never taken
    /// for dead.
    ///
    /// The slot is claimed first (its dead owner replaced by the caller's
    /// identity, in one CAS), then the bit taken: while the slot names a
    /// live process nobody else can reuse it, so its bit, if set, is still
    /// the dead holder's permit. Taking the bit on the strength of an
    /// earlier look at the slot could take a live holder's permit: another
    /// survivor may have recovered it, freed the slot, and a new holder
    /// reserved the slot and set the bit again, meanwhile. A caller killed
    /// between the claim and the take leaves a dead-named slot with the bit
    /// set, which the next survivor recovers.
    fn take_dead(&self, mark: u64, me: u64) -> bool {
        let word = self.sem_word();
        let held = RawSemaphore::held(word);
        let table = self.holders();
        let claimer = thread::process_prepared().bits();
        (0..HELD_SLOTS).filter(|i| held & (1 << i) != 0).any(|i| {
            let v = table.slot(i);
            if v == me
                || v == claimer
                || !Owner::of(v).is_some_and(|o| ProcLiveness.is_dead(o))
                || !table.replace(i, v, claimer)
            {
                return false;
            }
            let taken = RawSemaphore::take_over(word, held_bit(i), mark);
            // Ours either way now: free it (the permit, if taken, is
            // marked with `mark`'s slot, or nobody's for a bare acquire).
            table.replace(i, claimer, 0);
            taken
        })
    }

    /// Reserves a slot of the holder table for `me`, among the first
    /// [`HELD_SLOTS`]: a free one, or one whose holder died holding
    /// nothing (its bit clear). `None` if none is left.
    fn reserve(&self, me: u64) -> Option<usize> {
        let table = self.holders();
        let word = self.sem_word();
        (0..HELD_SLOTS).find(|&i| {
            let v = table.slot(i);
            if v == 0 {
                return table.replace(i, 0, me);
            }
            RawSemaphore::held(word) & (1 << i) == 0
                && Owner::of(v).is_some_and(|o| ProcLiveness.is_dead(o))
                && table.replace(i, v, me)
        })
    }

    /// A guard's permit: reserves a slot, takes a permit marked with it
    /// (`Some(deadline)`: a blocking take; `None`: a try), and builds the
    /// guard; gives the slot back if no permit came.
    fn guarded(&self, wait: Option<Option<Instant>>) -> Option<SemaphoreGuard<'_>> {
        let me = thread::process_prepared().bits();
        let slot = self.reserve(me);
        let mark = slot.map_or(0, held_bit);
        let taken = match wait {
            Some(deadline) => self.take(deadline, mark, me),
            None => RawSemaphore::try_acquire(self.sem_word(), mark).then_some(Taken::Free),
        };
        let Some(taken) = taken else {
            if let Some(i) = slot {
                self.holders().replace(i, me, 0);
            }
            return None;
        };
        Some(SemaphoreGuard {
            sem: self,
            me,
            slot,
            from_dead: matches!(taken, Taken::FromDead),
        })
    }

    /// Permits taken back from holders that died holding them through a
    /// guard, since the semaphore was made (wrapping): a snapshot.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::Semaphore::new(1)?;
    /// drop(sem.access());
    /// assert_eq!(sem.recovered_permits(), 0);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn recovered_permits(&self) -> u32 {
        self.word(RECOVERED).load(Ordering::Relaxed)
    }

    /// Gives back (or adds) one permit, waking a waiter if there is one.
    ///
    /// # Errors
    ///
    /// [`OverRelease`] (nothing changed) if that would take the count past
    /// the bound: a [`BoundedSemaphore`](crate::BoundedSemaphore)'s initial value, or `u32::MAX`.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::Semaphore::new(0)?;
    /// sem.release()?;
    /// assert_eq!(sem.value(), 1);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn release(&self) -> std::result::Result<(), OverRelease> {
        self.release_n(1)
    }

    /// Gives back (or adds) `n` permits, waking up to `n` waiters (Python's
    /// `release(n)`).
    ///
    /// # Errors
    ///
    /// As [`release`](Self::release): all `n` or none.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::Semaphore::new(0)?;
    /// sem.release_n(3)?;
    /// assert_eq!(sem.value(), 3);
    /// assert!(sem.release_n(u32::MAX).is_err());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn release_n(&self, n: u32) -> std::result::Result<(), OverRelease> {
        RawSemaphore::release(self.sem_word(), self.word(WAITERS), &Futex, n, self.max, 0)
            .map_err(|_| OverRelease { max: self.max })
    }

    /// The number of permits available now (Python's `get_value()`): a
    /// snapshot that other processes may change at once.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::Semaphore::new(4)?;
    /// assert_eq!(sem.value(), 4);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn value(&self) -> u32 {
        RawSemaphore::value(self.sem_word())
    }

    /// Takes a permit, sleeping while there is none, and returns a guard that
    /// gives it back on drop (Python's `with sem:`).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::Semaphore::new(1)?;
    /// {
    ///     let _permit = sem.access();
    ///     assert_eq!(sem.value(), 0);
    /// }
    /// assert_eq!(sem.value(), 1);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn access(&self) -> SemaphoreGuard<'_> {
        loop {
            // Without a deadline the take ends only with a permit.
            if let Some(g) = self.guarded(Some(None)) {
                return g;
            }
        }
    }

    /// Takes a permit if one is free, without blocking, as a guard.
    ///
    /// # Errors
    ///
    /// [`WouldBlock`](crate::WouldBlock) if no permit is free.
    #[inline]
    pub fn try_access(&self) -> std::result::Result<SemaphoreGuard<'_>, WouldBlock> {
        self.guarded(None).ok_or(WouldBlock)
    }

    /// Takes a permit, giving up after `timeout`, as a guard.
    ///
    /// # Errors
    ///
    /// [`TimedOut`](crate::TimedOut) if no permit came free in time.
    #[inline]
    pub fn access_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<SemaphoreGuard<'_>, TimedOut> {
        self.guarded(Some(deadline(timeout))).ok_or(TimedOut)
    }
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`](crate::BoundedSemaphore), held: gives it back
/// on drop.
///
/// A permit is not tied to a thread, so the guard may move to another one;
/// it is tied to the process that took it: that process's death gives it
/// back to the next acquirer (see [A holder that
/// dies](Semaphore#a-holder-that-dies)), and a forked child's copy of the
/// guard gives nothing back when dropped. Dropping a guard whose release is refused (a `BoundedSemaphore` someone
/// else has already over-released, or a plain semaphore already at
/// `u32::MAX` permits) adds nothing: a drop never fails or panics.
///
/// # Examples
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let sem = multiproc::Semaphore::new(1)?;
/// let permit = sem.access();
/// assert_eq!(sem.value(), 0);
/// drop(permit);
/// assert_eq!(sem.value(), 1);
/// # Ok(())
/// # }
/// ```
#[must_use = "the permit is given back as soon as the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
    /// The process that took the permit (`Owner` bits).
    me: u64,
    /// Its slot in the holder table (whose held bit in the word marks the
    /// permit), if there was room.
    slot: Option<usize>,
    /// Whether the permit was a dead holder's.
    from_dead: bool,
}

impl SemaphoreGuard<'_> {
    /// Whether this permit was taken back from a process that died holding
    /// it through a guard (the semaphore's counterpart of a mutex's
    /// `OwnerDied`): whatever the permit stood for may have been left
    /// half done.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::Semaphore::new(1)?;
    /// assert!(!sem.access().from_dead_holder());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn from_dead_holder(&self) -> bool {
        self.from_dead
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard")
            .field("from_dead_holder", &self.from_dead)
            .finish_non_exhaustive()
    }
}

impl Drop for SemaphoreGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if thread::process().bits() != self.me {
            // A forked child's copy of its parent's guard: the permit is
            // the parent's to give back.
            return;
        }
        let sem = self.sem;
        // The permit back and its held bit cleared in one CAS; then the
        // slot (a death in between leaves a dead slot with its bit clear,
        // which the next reservation reuses). A refused release (a bounded
        // semaphore someone over-released, or a bit no longer ours: a
        // survivor took the permit for a dead holder's) changes nothing:
        // `Drop` must not fail.
        let mark = self.slot.map_or(0, held_bit);
        let _ = RawSemaphore::release(sem.sem_word(), sem.word(WAITERS), &Futex, 1, sem.max, mark);
        if let Some(i) = self.slot {
            sem.holders().replace(i, self.me, 0);
        }
    }
}

// SAFETY: a `SemState` (words and a holder table, used only atomically) at the data offset
// of a `Semaphore` header of its fingerprint, which is all the handle
// touches.
unsafe impl Object for Semaphore {
    const KIND: ObjectKind = ObjectKind::Semaphore;

    fn expect() -> Expect {
        Expect::of::<SemState>()
    }

    fn from_placed(obj: Placed, _: u32, _: Token) -> Result<Self> {
        Ok(Semaphore { obj, max: u32::MAX })
    }

    fn placed(&self) -> &Placed {
        &self.obj
    }
}

/// Encodes the handle as its [`Descriptor`](crate::Descriptor).
impl Serialize for Semaphore {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de> Deserialize<'de> for Semaphore {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
