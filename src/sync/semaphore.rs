//! `Semaphore` and `BoundedSemaphore` (Python's `multiprocessing.Semaphore`
//! and `BoundedSemaphore`), placed in shared memory.
//!
//! Both keep two words after the object header, the permit count and the
//! count of announced waiters (see [`RawSemaphore`] for the algorithm); a
//! `BoundedSemaphore` also records its bound. The two have different state
//! types, so their headers carry different fingerprints and attaching one as
//! the other is an [`Error::LayoutMismatch`](crate::Error::LayoutMismatch).
//!
//! As in Python, a bounded semaphore (`sync/bounded_semaphore.rs`) is a
//! semaphore whose release refuses to pass its bound: every handle keeps
//! the bound it may release up to (`u32::MAX` for a plain one, the initial
//! value for a bounded one, read once when placed or attached), so one
//! implementation serves both.

use std::fmt;
use std::time::Duration;

use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::algo::semaphore::RawSemaphore;
use crate::algo::wait::deadline;
use crate::error::{Result, TimedOut, WouldBlock};
use crate::loom::atomic::AtomicU32;
use crate::shm::header::{Expect, ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Place, Placed, Token};
use crate::sys::futex::Futex;

/// A `Semaphore` in shared memory: only ever accessed through atomics.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SemState {
    /// Permits available.
    count: u32,
    /// Acquirers that may sleep; releases wake only when non-zero.
    waiters: u32,
}

/// Field indices (in `u32`s from the start of the state), shared by both
/// state types.
const COUNT: usize = 0;
const WAITERS: usize = 1;
pub(super) const MAX: usize = 2;

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
                waiters: 0,
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
        RawSemaphore::acquire(self.word(COUNT), self.word(WAITERS), &Futex, None);
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
        let (count, waiters) = (self.word(COUNT), self.word(WAITERS));
        if RawSemaphore::acquire(count, waiters, &Futex, deadline(timeout)) {
            Ok(())
        } else {
            Err(TimedOut)
        }
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
        self.acquire();
        SemaphoreGuard { sem: self }
    }

    /// Takes a permit if one is free, without blocking, as a guard.
    ///
    /// # Errors
    ///
    /// [`WouldBlock`](crate::WouldBlock) if no permit is free.
    #[inline]
    pub fn try_access(&self) -> std::result::Result<SemaphoreGuard<'_>, WouldBlock> {
        self.try_acquire().map(|()| SemaphoreGuard { sem: self })
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
        self.acquire_timeout(timeout)
            .map(|()| SemaphoreGuard { sem: self })
    }
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`](crate::BoundedSemaphore), held: gives it back
/// on drop.
///
/// A permit is not tied to a thread, so the guard may move to another one.
/// Dropping a guard whose release is refused (a `BoundedSemaphore` someone
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
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").finish_non_exhaustive()
    }
}

impl Drop for SemaphoreGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // A refused release (a bounded semaphore someone over-released) is
        // dropped: `Drop` must not fail.
        let _ = self.sem.release();
    }
}

// SAFETY: a `SemState` (two `u32`s, used only atomically) at the data offset
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
