//! `Value<T>` (one `T` behind a process-shared lock) and `RawValue<T>` (one
//! `T`, no lock).

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bytemuck::Pod;

use crate::error::Result;
use crate::shm::header::{ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Place, Placed, attach_api};
use crate::sync::mutex::{LockResult, OwnerDied, TryLockResult, word};
use crate::algo::robust::{Locked, RobustLock};

/// One `T` in shared memory, guarded by a process-shared lock: Python's
/// `multiprocessing.Value`.
///
/// Every handle (clones, a forked child's copy, an attach from a
/// [`Descriptor`](crate::Descriptor)) reaches the same memory. [`get`](Self::get) and
/// [`set`](Self::set) take the lock for one read or write; for a
/// read-modify-write hold the guard from [`lock`](Self::lock), as in Python's
/// `with v.get_lock(): v.value += 1`.
///
/// The lock sleeps on a shared futex and makes no system call when nobody
/// waits. It is the robust lock of [`Mutex`](crate::Mutex): if a process
/// dies holding it, the next [`lock`](Self::lock) gets the guard inside
/// [`OwnerDied`]. For plain counters prefer
/// [`AtomicValue`](crate::AtomicValue), which has no lock at all.
///
/// # Examples
///
/// ```
/// use multiproc::Value;
/// # fn main() -> multiproc::Result<()> {
/// let v = Value::new(0.5f64)?;
/// v.set(3.1415927);
/// *v.lock().unwrap() += 1.0;
/// assert_eq!(v.get(), 4.1415927);
/// # Ok(())
/// # }
/// ```
pub struct Value<T> {
    obj: Placed,
    _t: PhantomData<T>,
}

// SAFETY: the handle is an Arc'd mapping plus offsets; access to the `T` goes
// through the shared lock (or copies), so sharing handles across threads is
// as safe as sharing a `Mutex<T>`, which needs `T: Send`.
unsafe impl<T: Pod + Send> Send for Value<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send> Sync for Value<T> {}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            obj: self.obj.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("type", &std::any::type_name::<T>())
            .field("place", &self.obj)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> Value<T> {
    /// Places `value` in shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if a new segment cannot be made.
    pub fn new(value: T) -> Result<Self> {
        Self::make(Place::Arena, value)
    }

    /// Places `value` at `offset` of a named segment, for unrelated processes
    /// to [`open_at`](Self::open_at). `offset` must be a multiple of
    /// [`shared_align`](Self::shared_align) with
    /// [`shared_size`](Self::shared_size) bytes free after it.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`](crate::Error::OutOfBounds) for a misaligned or
    /// too-late offset, [`Error::AlreadyExists`](crate::Error::AlreadyExists)
    /// if an object was already placed there.
    pub fn create_at(shm: &SharedMemory, offset: usize, value: T) -> Result<Self> {
        Self::make(Place::At(shm, offset), value)
    }

    fn make(place: Place<'_>, value: T) -> Result<Self> {
        let layout = ObjectLayout::new::<T>(ObjectKind::Value, 1)?;
        let obj = place.make(layout, |p| {
            // SAFETY: the data pointer is aligned for T and
            // valid for one T; nobody else can see the object before `publish`.
            unsafe { p.cast::<T>().write(value) }
        })?;
        Ok(Value {
            obj,
            _t: PhantomData,
        })
    }

    attach_api!("Value<T>", ObjectKind::Value, Some(1), T);

    fn from_placed(obj: Placed) -> Self {
        Value {
            obj,
            _t: PhantomData,
        }
    }

    fn placed(&self) -> &Placed {
        &self.obj
    }

    /// Bytes a `Value<T>` takes in a segment (header, lock word and value).
    pub fn shared_size() -> usize {
        ObjectLayout::new::<T>(ObjectKind::Value, 1).map_or(usize::MAX, |l| l.total_size)
    }

    /// Alignment a `Value<T>` needs in a segment (at least 64).
    pub fn shared_align() -> usize {
        ObjectLayout::new::<T>(ObjectKind::Value, 1).map_or(usize::MAX, |l| l.align)
    }

    /// Reads the value under the lock. If a holder died mid-update, this
    /// reads whatever it left (see [`lock`](Self::lock) to find out).
    #[inline]
    pub fn get(&self) -> T {
        *self.lock().unwrap_or_else(OwnerDied::into_inner)
    }

    /// Writes the value under the lock. An earlier holder's death is left
    /// for [`lock`](Self::lock) to report.
    #[inline]
    pub fn set(&self, value: T) {
        *self.lock().unwrap_or_else(OwnerDied::into_inner) = value;
    }

    /// Takes the lock, sleeping while another thread or process holds it,
    /// and returns a guard that derefs to the value and unlocks on drop.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], holding the guard, if a holder died holding the lock
    /// and nobody has called [`ValueGuard::mark_consistent`] since; see
    /// [`Mutex`](crate::Mutex).
    #[inline]
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        // No deadline: only returns once the lock is held.
        let how = word::lock(self.obj.lock_word(), None).unwrap_or(Locked::Clean);
        word::result(how, self.guard())
    }

    /// Takes the lock if it is free, without blocking.
    ///
    /// # Errors
    ///
    /// As [`Mutex::try_lock`](crate::Mutex::try_lock).
    #[inline]
    pub fn try_lock(&self) -> TryLockResult<ValueGuard<'_, T>> {
        word::try_result(word::try_lock(self.obj.lock_word()), || self.guard())
    }

    /// Takes the lock, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock_timeout`](crate::Mutex::lock_timeout).
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<ValueGuard<'_, T>> {
        word::try_result(word::lock_timeout(self.obj.lock_word(), timeout), || {
            self.guard()
        })
    }

    fn guard(&self) -> ValueGuard<'_, T> {
        ValueGuard {
            value: self,
            _not_send: PhantomData,
        }
    }

    /// Pointer to the value in this process's mapping.
    pub fn as_ptr(&self) -> *mut T {
        self.obj.data().cast()
    }
}

/// The lock of a [`Value`], held: derefs to the value, unlocks on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: Pod> {
    value: &'a Value<T>,
    // Like std's MutexGuard, a guard stays on the thread that locked.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard only hands out `&T`.
unsafe impl<T: Pod + Sync> Sync for ValueGuard<'_, T> {}

impl<T: Pod> ValueGuard<'_, T> {
    /// Declares the value repaired after an [`OwnerDied`].
    pub fn mark_consistent(&mut self) {
        // SAFETY: the guard exists only while this thread holds the lock.
        unsafe { RobustLock::mark_consistent(self.value.obj.lock_word()) }
    }
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: we hold the lock, so no cooperating thread or process
        // writes the value; the pointer is aligned and valid for one T.
        unsafe { &*self.value.as_ptr() }
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: we hold the lock: nobody else reads or writes the value.
        unsafe { &mut *self.value.as_ptr() }
    }
}

impl<T: Pod> Drop for ValueGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: a guard exists only while this thread holds the lock.
        unsafe { word::unlock(self.value.obj.lock_word()) }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// One `T` in shared memory without a lock: Python's
/// `multiprocessing.RawValue`.
///
/// [`get`](Self::get) and [`set`](Self::set) are single volatile reads and
/// writes. Concurrent writers are not excluded: a read racing a write of a
/// `T` wider than a machine word can see a mix of old and new bytes (still a
/// valid `T`, since `T: Pod`). Synchronise yourself, or use [`Value`] or
/// [`AtomicValue`](crate::AtomicValue).
///
/// # Examples
///
/// ```
/// use multiproc::RawValue;
/// # fn main() -> multiproc::Result<()> {
/// let v = RawValue::new([1u16, 2, 3])?;
/// v.set([4, 5, 6]);
/// assert_eq!(v.get(), [4, 5, 6]);
/// # Ok(())
/// # }
/// ```
pub struct RawValue<T> {
    obj: Placed,
    _t: PhantomData<T>,
}

// SAFETY: access is by volatile copies only; sharing handles shares no Rust
// references to the value.
unsafe impl<T: Pod + Send> Send for RawValue<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send> Sync for RawValue<T> {}

impl<T> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue {
            obj: self.obj.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawValue")
            .field("type", &std::any::type_name::<T>())
            .field("place", &self.obj)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> RawValue<T> {
    /// Places `value` in shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if a new segment cannot be made.
    pub fn new(value: T) -> Result<Self> {
        Self::make(Place::Arena, value)
    }

    /// Places `value` at `offset` of a named segment; see
    /// [`Value::create_at`].
    ///
    /// # Errors
    ///
    /// As [`Value::create_at`].
    pub fn create_at(shm: &SharedMemory, offset: usize, value: T) -> Result<Self> {
        Self::make(Place::At(shm, offset), value)
    }

    fn make(place: Place<'_>, value: T) -> Result<Self> {
        let layout = ObjectLayout::new::<T>(ObjectKind::RawValue, 1)?;
        let obj = place.make(layout, |p| {
            // SAFETY: aligned, valid for one T, not yet shared.
            unsafe { p.cast::<T>().write(value) }
        })?;
        Ok(RawValue {
            obj,
            _t: PhantomData,
        })
    }

    attach_api!("RawValue<T>", ObjectKind::RawValue, Some(1), T);

    fn from_placed(obj: Placed) -> Self {
        RawValue {
            obj,
            _t: PhantomData,
        }
    }

    fn placed(&self) -> &Placed {
        &self.obj
    }

    /// Bytes a `RawValue<T>` takes in a segment.
    pub fn shared_size() -> usize {
        ObjectLayout::new::<T>(ObjectKind::RawValue, 1).map_or(usize::MAX, |l| l.total_size)
    }

    /// Alignment a `RawValue<T>` needs in a segment (at least 64).
    pub fn shared_align() -> usize {
        ObjectLayout::new::<T>(ObjectKind::RawValue, 1).map_or(usize::MAX, |l| l.align)
    }

    /// Reads the value (one volatile read).
    #[inline]
    pub fn get(&self) -> T {
        // SAFETY: aligned and valid for one T for as long as `self` lives;
        // any bytes are a valid T (Pod).
        unsafe { self.as_ptr().read_volatile() }
    }

    /// Writes the value (one volatile write).
    #[inline]
    pub fn set(&self, value: T) {
        // SAFETY: as for `get`.
        unsafe { self.as_ptr().write_volatile(value) }
    }

    /// Pointer to the value in this process's mapping.
    pub fn as_ptr(&self) -> *mut T {
        self.obj.data().cast()
    }
}
