//! `Semaphore` and `BoundedSemaphore` (Python's `multiprocessing.Semaphore`
//! and `BoundedSemaphore`), placed in shared memory.
//!
//! Both keep two words after the object header, the permit count and the
//! count of announced waiters (see [`RawSemaphore`] for the algorithm); a
//! `BoundedSemaphore` also records its bound. The two have different state
//! types, so their headers carry different fingerprints and attaching one as
//! the other is an [`Error::LayoutMismatch`](crate::Error::LayoutMismatch).

use std::fmt;
use std::time::Duration;

use bytemuck::{Pod, Zeroable};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::loom::atomic::{AtomicU32, Ordering};
use crate::shm::header::{Expect, ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::descriptor::Descriptor;
use crate::shm::object::{Placed, SharedObject};
use crate::algo::wait::deadline;
use crate::shm::object::Place;
use crate::sys::futex::Futex;
use crate::algo::semaphore::RawSemaphore;

/// A `Semaphore` in shared memory: only ever accessed through atomics.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SemState {
    /// Permits available.
    count: u32,
    /// Acquirers that may sleep; releases wake only when non-zero.
    waiters: u32,
}

/// A `BoundedSemaphore` in shared memory: `count` and `waiters` as in
/// [`SemState`] (same offsets), then the bound, written once before publish.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct BoundedSemState {
    count: u32,
    waiters: u32,
    /// The initial value, which `count` may never exceed.
    max: u32,
}

/// Field indices (in `u32`s from the start of the state), shared by both
/// state types.
const COUNT: usize = 0;
const WAITERS: usize = 1;
const MAX: usize = 2;

/// The `index`th `u32` of an object's state, as an atomic.
///
/// # Safety
///
/// The object's state type must hold at least `index + 1` `u32` fields.
unsafe fn word(obj: &Placed, index: usize) -> &AtomicU32 {
    // SAFETY: the data pointer is aligned for the state (align 4) and valid
    // for all its fields (the caller's contract) while the mapping lives, which
    // `obj` guarantees for the returned lifetime; after publish every process
    // accesses these words only atomically.
    unsafe { AtomicU32::from_ptr(obj.data().cast::<u32>().add(index)) }
}

/// A semaphore released more times than it was acquired: the release would
/// take a [`BoundedSemaphore`] above its initial value. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("semaphore released too many times: its value may not exceed {max}")]
pub struct OverRelease {
    /// The bound (the semaphore's initial value).
    pub max: u32,
}

/// A counting semaphore shared between processes: Python's
/// `multiprocessing.Semaphore`.
///
/// It holds a number of permits: [`acquire`](Self::acquire) takes one,
/// sleeping while there is none; [`release`](Self::release) gives one back
/// (or adds one: nothing checks that releases match acquires, see
/// [`BoundedSemaphore`] for that). [`access`](Self::access) acquires and
/// returns a guard that releases on drop, like `with sem:`.
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
///     assert!(!sem.try_acquire());
///     assert!(!sem.acquire_timeout(Duration::from_millis(1)));
/// }
/// sem.release();
/// assert_eq!(sem.value(), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Semaphore {
    obj: Placed,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
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
    /// segment, for unrelated processes to [`open_at`](Self::open_at).
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
        Ok(Semaphore { obj })
    }

        /// Opens the `Semaphore` placed at `offset` of a named segment.
    ///
    /// # Errors
    ///
    /// See [`Descriptor`](crate::Descriptor#errors-of-attach-and-open_at).
    pub fn open_at(shm: &SharedMemory, offset: usize) -> Result<Self> {
        Self::open_object(shm, offset)
    }

    /// Attaches to the `Semaphore` a descriptor names, in this process or
    /// another.
    ///
    /// # Errors
    ///
    /// See [`Descriptor`](crate::Descriptor#errors-of-attach-and-open_at).
    pub fn attach(descriptor: &Descriptor) -> Result<Self> {
        Self::attach_object(descriptor)
    }

    /// A descriptor from which another process can [`attach`](Self::attach).
    pub fn descriptor(&self) -> Descriptor {
        self.describe()
    }

    fn over(obj: Placed) -> Self {
        Semaphore { obj }
    }

    /// Bytes a `Semaphore` takes in a segment.
    pub fn shared_size() -> usize {
        ObjectLayout::new::<SemState>(ObjectKind::Semaphore, 1).map_or(usize::MAX, |l| l.total_size)
    }

    /// Alignment a `Semaphore` needs in a segment (64).
    pub fn shared_align() -> usize {
        ObjectLayout::new::<SemState>(ObjectKind::Semaphore, 1).map_or(usize::MAX, |l| l.align)
    }

    #[inline]
    fn count(&self) -> &AtomicU32 {
        // SAFETY: SemState holds `count` at COUNT.
        unsafe { word(&self.obj, COUNT) }
    }

    #[inline]
    fn waiters(&self) -> &AtomicU32 {
        // SAFETY: SemState holds `waiters` at WAITERS.
        unsafe { word(&self.obj, WAITERS) }
    }

    /// Takes a permit, sleeping while there is none (Python's
    /// `acquire()`). See [`acquire_timeout`](Self::acquire_timeout) to give
    /// up after a while.
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
        RawSemaphore::acquire(self.count(), self.waiters(), &Futex, None);
    }

    /// Takes a permit if one is available, without blocking (Python's
    /// `acquire(block=False)`).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::Semaphore::new(1)?;
    /// assert!(sem.try_acquire());
    /// assert!(!sem.try_acquire());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> bool {
        RawSemaphore::try_acquire(self.count())
    }

    /// Takes a permit, giving up after `timeout` (Python's
    /// `acquire(timeout=...)`). Returns whether a permit was taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::Semaphore::new(0)?;
    /// assert!(!sem.acquire_timeout(Duration::from_millis(5)));
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        RawSemaphore::acquire(self.count(), self.waiters(), &Futex, deadline(timeout))
    }

    /// Gives back (or adds) one permit, waking a waiter if there is one.
    /// The count saturates at `u32::MAX`.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::Semaphore::new(0)?;
    /// sem.release();
    /// assert_eq!(sem.value(), 1);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn release(&self) {
        self.release_n(1);
    }

    /// Gives back (or adds) `n` permits, waking up to `n` waiters (Python's
    /// `release(n)`). The count saturates at `u32::MAX`.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::Semaphore::new(0)?;
    /// sem.release_n(3);
    /// assert_eq!(sem.value(), 3);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn release_n(&self, n: u32) {
        RawSemaphore::release_saturating(self.count(), self.waiters(), &Futex, n);
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
        RawSemaphore::value(self.count())
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
        self.guard()
    }

    /// Takes a permit if one is available, without blocking, as a guard.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::Semaphore::new(1)?;
    /// let permit = sem.try_access();
    /// assert!(permit.is_some());
    /// assert!(sem.try_access().is_none());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn try_access(&self) -> Option<SemaphoreGuard<'_>> {
        self.try_acquire().then(|| self.guard())
    }

    /// Takes a permit as a guard, giving up after `timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::Semaphore::new(1)?;
    /// let permit = sem.access_timeout(Duration::from_millis(5));
    /// assert!(permit.is_some());
    /// assert!(sem.access_timeout(Duration::from_millis(5)).is_none());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn access_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard<'_>> {
        self.acquire_timeout(timeout).then(|| self.guard())
    }

    fn guard(&self) -> SemaphoreGuard<'_> {
        SemaphoreGuard {
            count: self.count(),
            waiters: self.waiters(),
            max: u32::MAX,
        }
    }
}

/// A semaphore that refuses to be released above its initial value:
/// Python's `multiprocessing.BoundedSemaphore`.
///
/// Everything works as for [`Semaphore`], except that
/// [`release`](Self::release) and [`release_n`](Self::release_n) return
/// [`OverRelease`] (and change nothing) when the value would exceed the
/// initial value, which catches a release without a matching acquire.
///
/// # Examples
///
/// ```
/// use multiproc::BoundedSemaphore;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sem = BoundedSemaphore::new(1)?;
/// sem.acquire();
/// sem.release()?;
/// assert!(sem.release().is_err()); // one release too many
/// assert_eq!(sem.value(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    obj: Placed,
    /// The bound, read once when placed or attached: a peer scribbling over
    /// it later cannot change this handle's view.
    max: u32,
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.value())
            .field("max", &self.max)
            .field("place", &self.obj)
            .finish()
    }
}

impl BoundedSemaphore {
    /// Places a bounded semaphore with `value` permits, which is also its
    /// bound, in shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if a new segment cannot be made.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::BoundedSemaphore::new(3)?;
    /// assert_eq!(sem.max_value(), 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(value: u32) -> Result<Self> {
        Self::make(Place::Arena, value)
    }

    /// Places a bounded semaphore at `offset` of a named segment; see
    /// [`Semaphore::create_at`].
    ///
    /// # Errors
    ///
    /// As [`Semaphore::create_at`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{BoundedSemaphore, SharedMemory};
    /// # fn main() -> multiproc::Result<()> {
    /// # let name = format!("multiproc-doc-bsem-{}", std::process::id());
    /// let shm = SharedMemory::create(&name, 4096)?;
    /// let sem = BoundedSemaphore::create_at(&shm, 0, 2)?;
    /// assert_eq!(BoundedSemaphore::open_at(&shm, 0)?.max_value(), 2);
    /// # drop(sem);
    /// # shm.unlink()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn create_at(shm: &SharedMemory, offset: usize, value: u32) -> Result<Self> {
        Self::make(Place::At(shm, offset), value)
    }

    fn make(place: Place<'_>, value: u32) -> Result<Self> {
        let layout = ObjectLayout::new::<BoundedSemState>(ObjectKind::Semaphore, 1)?;
        let obj = place.make(layout, |p| {
            let state = BoundedSemState {
                count: value,
                waiters: 0,
                max: value,
            };
            // SAFETY: the data pointer is aligned and valid for one
            // BoundedSemState; nobody else can see it before `publish`.
            unsafe { p.cast::<BoundedSemState>().write(state) }
        })?;
        Ok(Self::over(obj))
    }

        /// Opens the `BoundedSemaphore` placed at `offset` of a named segment.
    ///
    /// # Errors
    ///
    /// See [`Descriptor`](crate::Descriptor#errors-of-attach-and-open_at).
    pub fn open_at(shm: &SharedMemory, offset: usize) -> Result<Self> {
        Self::open_object(shm, offset)
    }

    /// Attaches to the `BoundedSemaphore` a descriptor names, in this process or
    /// another.
    ///
    /// # Errors
    ///
    /// See [`Descriptor`](crate::Descriptor#errors-of-attach-and-open_at).
    pub fn attach(descriptor: &Descriptor) -> Result<Self> {
        Self::attach_object(descriptor)
    }

    /// A descriptor from which another process can [`attach`](Self::attach).
    pub fn descriptor(&self) -> Descriptor {
        self.describe()
    }

    fn over(obj: Placed) -> Self {
        // SAFETY: BoundedSemState holds `max` at MAX.
        let max = unsafe { word(&obj, MAX) }.load(Ordering::Relaxed);
        BoundedSemaphore { obj, max }
    }

    /// Bytes a `BoundedSemaphore` takes in a segment.
    pub fn shared_size() -> usize {
        ObjectLayout::new::<BoundedSemState>(ObjectKind::Semaphore, 1)
            .map_or(usize::MAX, |l| l.total_size)
    }

    /// Alignment a `BoundedSemaphore` needs in a segment (64).
    pub fn shared_align() -> usize {
        ObjectLayout::new::<BoundedSemState>(ObjectKind::Semaphore, 1)
            .map_or(usize::MAX, |l| l.align)
    }

    #[inline]
    fn count(&self) -> &AtomicU32 {
        // SAFETY: BoundedSemState holds `count` at COUNT.
        unsafe { word(&self.obj, COUNT) }
    }

    #[inline]
    fn waiters(&self) -> &AtomicU32 {
        // SAFETY: BoundedSemState holds `waiters` at WAITERS.
        unsafe { word(&self.obj, WAITERS) }
    }

    /// The bound: the initial value, which the value may never exceed.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::BoundedSemaphore::new(2)?;
    /// sem.acquire();
    /// assert_eq!((sem.value(), sem.max_value()), (1, 2));
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn max_value(&self) -> u32 {
        self.max
    }

    /// Takes a permit, sleeping while there is none; see
    /// [`Semaphore::acquire`].
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::BoundedSemaphore::new(1)?;
    /// sem.acquire();
    /// assert_eq!(sem.value(), 0);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn acquire(&self) {
        RawSemaphore::acquire(self.count(), self.waiters(), &Futex, None);
    }

    /// Takes a permit if one is available, without blocking.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::BoundedSemaphore::new(1)?;
    /// assert!(sem.try_acquire());
    /// assert!(!sem.try_acquire());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> bool {
        RawSemaphore::try_acquire(self.count())
    }

    /// Takes a permit, giving up after `timeout`. Returns whether a permit
    /// was taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::BoundedSemaphore::new(1)?;
    /// assert!(sem.acquire_timeout(Duration::from_millis(5)));
    /// assert!(!sem.acquire_timeout(Duration::from_millis(5)));
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        RawSemaphore::acquire(self.count(), self.waiters(), &Futex, deadline(timeout))
    }

    /// Gives back one permit, waking a waiter if there is one.
    ///
    /// # Errors
    ///
    /// [`OverRelease`] if the value is already at its bound (more releases
    /// than acquires); nothing changes then.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sem = multiproc::BoundedSemaphore::new(1)?;
    /// sem.acquire();
    /// sem.release()?;
    /// let err = sem.release().unwrap_err();
    /// assert_eq!(err.max, 1);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn release(&self) -> Result<(), OverRelease> {
        self.release_n(1)
    }

    /// Gives back `n` permits at once, waking up to `n` waiters.
    ///
    /// # Errors
    ///
    /// [`OverRelease`] if the value would exceed its bound; nothing changes
    /// then (no permit of the `n` is added).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sem = multiproc::BoundedSemaphore::new(3)?;
    /// for _ in 0..3 {
    ///     sem.acquire();
    /// }
    /// sem.release_n(2)?;
    /// assert!(sem.release_n(2).is_err());
    /// assert_eq!(sem.value(), 2);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn release_n(&self, n: u32) -> Result<(), OverRelease> {
        RawSemaphore::release(self.count(), self.waiters(), &Futex, n, self.max)
            .map_err(|_| OverRelease { max: self.max })
    }

    /// The number of permits available now: a snapshot.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::BoundedSemaphore::new(4)?;
    /// assert_eq!(sem.value(), 4);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn value(&self) -> u32 {
        RawSemaphore::value(self.count())
    }

    /// Takes a permit, sleeping while there is none, and returns a guard that
    /// gives it back on drop (Python's `with sem:`).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::BoundedSemaphore::new(1)?;
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
        self.guard()
    }

    /// Takes a permit if one is available, without blocking, as a guard.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::BoundedSemaphore::new(1)?;
    /// let permit = sem.try_access();
    /// assert!(permit.is_some());
    /// assert!(sem.try_access().is_none());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn try_access(&self) -> Option<SemaphoreGuard<'_>> {
        self.try_acquire().then(|| self.guard())
    }

    /// Takes a permit as a guard, giving up after `timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::BoundedSemaphore::new(1)?;
    /// let permit = sem.access_timeout(Duration::from_millis(5));
    /// assert!(permit.is_some());
    /// assert!(sem.access_timeout(Duration::from_millis(5)).is_none());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn access_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard<'_>> {
        self.acquire_timeout(timeout).then(|| self.guard())
    }

    fn guard(&self) -> SemaphoreGuard<'_> {
        SemaphoreGuard {
            count: self.count(),
            waiters: self.waiters(),
            max: self.max,
        }
    }
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`], held: gives it back
/// on drop.
///
/// A permit is not tied to a thread, so the guard may move to another one.
/// Dropping the guard of a `BoundedSemaphore` that someone else has already
/// over-released adds nothing (a drop never fails or panics).
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
    count: &'a AtomicU32,
    waiters: &'a AtomicU32,
    max: u32,
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
        let _ = RawSemaphore::release(self.count, self.waiters, &Futex, 1, self.max);
    }
}

// SAFETY: a `SemState` (two `u32`s, used only atomically) at the data offset of a
// `Semaphore` header of its fingerprint, which is all the handle touches.
unsafe impl SharedObject for Semaphore {
    const KIND: ObjectKind = ObjectKind::Semaphore;

    fn expect() -> Expect {
        Expect::of::<SemState>()
    }

    fn from_placed(obj: Placed, _: u32) -> Result<Self> {
        Ok(Self::over(obj))
    }

    fn placed(&self) -> &Placed {
        &self.obj
    }
}

/// Encodes the handle as its [`Descriptor`].
impl Serialize for Semaphore {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`] names.
impl<'de> Deserialize<'de> for Semaphore {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}

// SAFETY: a `BoundedSemState` (three `u32`s, used only atomically) at the data
// offset of a `Semaphore` header of its fingerprint: all the handle touches.
unsafe impl SharedObject for BoundedSemaphore {
    const KIND: ObjectKind = ObjectKind::Semaphore;

    fn expect() -> Expect {
        Expect::of::<BoundedSemState>()
    }

    fn from_placed(obj: Placed, _: u32) -> Result<Self> {
        Ok(Self::over(obj))
    }

    fn placed(&self) -> &Placed {
        &self.obj
    }
}

/// Encodes the handle as its [`Descriptor`].
impl Serialize for BoundedSemaphore {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`] names.
impl<'de> Deserialize<'de> for BoundedSemaphore {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
