//! `Semaphore` and `BoundedSemaphore` (Python's `multiprocessing.Semaphore`
//! and `BoundedSemaphore`), placed in shared memory.
//!
//! Both keep four words after the object header, the permit count, the
//! count of announced waiters (see [`RawSemaphore`] for the algorithm), the
//! bound (a `BoundedSemaphore`'s) and the count of permits taken back from
//! dead holders, then, from the next cache line, a [`HolderTable`] of the
//! permits held through guards (640 bytes in all). The two have different state
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
use crate::algo::semaphore::RawSemaphore;
use crate::algo::wait::deadline;
use crate::error::{Result, TimedOut, WouldBlock};
use crate::loom::atomic::{AtomicU32, Ordering};
use crate::sys::thread::{self, ProcLiveness};
use crate::shm::header::{Expect, ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Place, Placed, Token};
use crate::sys::futex::Futex;

/// A `Semaphore` in shared memory: only ever accessed through atomics.
#[repr(C, align(64))]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SemState {
    /// Permits available.
    count: u32,
    /// Acquirers that may sleep; releases wake only when non-zero.
    waiters: u32,
    /// A bounded semaphore's bound (unused here: same offsets for both).
    max: u32,
    /// Permits taken back from dead holders (wrapping).
    recovered: u32,
    _pad: [u32; 12],
    /// A [`HolderTable`] of the permits held through guards, from the next
    /// cache line.
    holders: [[u64; 8]; HOLDER_TABLE_BYTES / 64],
}

/// Field indices (in `u32`s from the start of the state), shared by both
/// state types.
const COUNT: usize = 0;
const WAITERS: usize = 1;
pub(super) const MAX: usize = 2;
const RECOVERED: usize = 3;
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
    /// The permit a dead guard holder held, in this slot of the table.
    FromDead(usize),
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
/// is recorded, with the holding process's pid and start time, in a table
/// of 63 slots next to the count. If that process dies (even by `SIGKILL`)
/// before the guard gives the permit back, an acquirer that finds no free
/// permit takes the dead holder's over: every blocking acquire
/// ([`acquire`](Self::acquire), [`acquire_timeout`](Self::acquire_timeout),
/// `access`, `access_timeout`) looks after 20 ms without a permit, then at
/// doubling intervals up to 1.28 s. A guard that got such a permit says so
/// ([`SemaphoreGuard::from_dead_holder`]), and
/// [`recovered_permits`](Self::recovered_permits) counts them.
///
/// Not covered: a permit taken by a bare [`acquire`](Self::acquire) (Python
/// allows `acquire` in one process and `release` in another, so nothing can
/// tell whose it is: a holder that dies keeps it, and later acquirers wait,
/// so give them a timeout); a guard taken while all 63 slots were in use;
/// a death in the few instructions between taking the permit and recording
/// it, or between clearing the record and giving it back;
/// [`try_acquire`](Self::try_acquire) and `try_access`, which make no
/// system call and so never look. Dead means what `/proc` says (one PID
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
                count: value,
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
    /// `COUNT` and `WAITERS`.
    #[inline]
    fn word(&self, index: usize) -> &AtomicU32 {
        self.obj.state_u32(index)
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
        self.take(None, 0);
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
        if RawSemaphore::try_acquire(self.word(COUNT)) {
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
        self.take(deadline(timeout), 0).map(|_| ()).ok_or(TimedOut)
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

    /// Takes a permit: a free one, or, after a slice with none, the place
    /// of a guard holder that died (its record then becomes `record`; 0
    /// frees it). `None` once `deadline` passed.
    fn take(&self, deadline: Option<Instant>, record: u64) -> Option<Taken> {
        let (count, waiters) = (self.word(COUNT), self.word(WAITERS));
        if RawSemaphore::try_acquire(count) {
            return Some(Taken::Free);
        }
        let mut slice = DEAD_HOLDER_LOOK;
        loop {
            let end = Instant::now() + slice;
            let until = deadline.map_or(end, |d| d.min(end));
            if RawSemaphore::acquire(count, waiters, &Futex, Some(until)) {
                return Some(Taken::Free);
            }
            // A slice with no permit: maybe a holder died with one.
            if let Some(i) = self.holders().take_over_dead(record, &ProcLiveness) {
                // SYNC: Relaxed: a statistic.
                self.word(RECOVERED).fetch_add(1, Ordering::Relaxed);
                return Some(Taken::FromDead(i));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            slice = (slice * 2).min(DEAD_HOLDER_LOOK_MAX);
        }
    }

    /// The guard over a permit just taken: recorded in the holder table
    /// (unless it is full), so that the permit comes back if this process
    /// dies holding it.
    fn guard(&self, taken: Taken, me: u64) -> SemaphoreGuard<'_> {
        let (slot, from_dead) = match taken {
            Taken::Free => (self.holders().put_free(me), false),
            Taken::FromDead(i) => (Some(i), true),
        };
        SemaphoreGuard {
            sem: self,
            me,
            slot,
            from_dead,
        }
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
        let (count, waiters) = (self.word(COUNT), self.word(WAITERS));
        RawSemaphore::release(count, waiters, &Futex, n, self.max)
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
        RawSemaphore::value(self.word(COUNT))
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
        let me = thread::process_prepared().bits();
        let taken = self.take(None, me).unwrap_or(Taken::Free);
        self.guard(taken, me)
    }

    /// Takes a permit if one is free, without blocking, as a guard.
    ///
    /// # Errors
    ///
    /// [`WouldBlock`](crate::WouldBlock) if no permit is free.
    #[inline]
    pub fn try_access(&self) -> std::result::Result<SemaphoreGuard<'_>, WouldBlock> {
        let me = thread::process_prepared().bits();
        self.try_acquire().map(|()| self.guard(Taken::Free, me))
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
        let me = thread::process_prepared().bits();
        self.take(deadline(timeout), me)
            .map(|taken| self.guard(taken, me))
            .ok_or(TimedOut)
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
    /// Its record in the holder table, if there was room.
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
        // Out of the table first, then back to the count: a death between
        // the two loses the permit (a few instructions), where the other
        // order would let a recoverer give it back twice.
        if let Some(i) = self.slot
            && !self.sem.holders().clear(i, self.me)
        {
            // The record is not ours any more (a peer scribbled over it,
            // or took it for dead): whoever holds it gives it back.
            return;
        }
        // A refused release (a bounded semaphore someone over-released) is
        // dropped: `Drop` must not fail.
        let _ = self.sem.release();
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
