//! `Value<T>`: one `T` in shared memory behind a process-shared lock
//! (Python's `multiprocessing.Value`): a [`Mutex<T>`] with `get` and `set`.

use std::fmt;
use std::time::Duration;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::shm::header::{Expect, ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Place, Placed, Token};
use crate::sync::mutex::{Mutex, MutexGuard};
use crate::sync::poison::{LockResult, LockTimeoutResult, OwnerDied, TryLockResult};

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
/// [`OwnerDied`](crate::OwnerDied). For plain counters prefer
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
    /// The lock and the value (an object of kind `Value`).
    mutex: Mutex<T>,
}

/// The lock of a [`Value`], held: a [`MutexGuard`] (derefs to the value,
/// unlocks on drop).
pub type ValueGuard<'a, T> = MutexGuard<'a, T>;

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            mutex: self.mutex.clone(),
        }
    }
}

impl<T> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("type", &std::any::type_name::<T>())
            .field("place", &self.mutex.obj)
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
    /// to [`open_at`](crate::SharedObject::open_at). `offset` must be a multiple of
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
        Mutex::place(place, ObjectKind::Value, value).map(|mutex| Value { mutex })
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
    /// and nobody has called [`MutexGuard::mark_consistent`] since; see
    /// [`Mutex`](crate::Mutex).
    #[inline]
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        self.mutex.lock()
    }

    /// Takes the lock if it is free, without blocking.
    ///
    /// # Errors
    ///
    /// As [`Mutex::try_lock`](crate::Mutex::try_lock).
    #[inline]
    pub fn try_lock(&self) -> TryLockResult<ValueGuard<'_, T>> {
        self.mutex.try_lock()
    }

    /// Takes the lock, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock_timeout`](crate::Mutex::lock_timeout).
    pub fn lock_timeout(&self, timeout: Duration) -> LockTimeoutResult<ValueGuard<'_, T>> {
        self.mutex.lock_timeout(timeout)
    }

    /// Pointer to the value in this process's mapping.
    pub fn as_ptr(&self) -> *mut T {
        self.mutex.as_ptr()
    }
}

// SAFETY: the layout of a `Mutex<T>` (a lock word, then one `T`), under
// its own kind, which is all the handle reads and writes.
unsafe impl<T: Pod> Object for Value<T> {
    const KIND: ObjectKind = ObjectKind::Value;

    fn expect() -> Expect {
        Expect::of::<T>()
    }

    fn from_placed(obj: Placed, _: u32, _: Token) -> Result<Self> {
        Ok(Value {
            mutex: Mutex::over(obj),
        })
    }

    fn placed(&self) -> &Placed {
        self.mutex.placed()
    }
}

/// Encodes the handle as its [`Descriptor`](crate::Descriptor).
impl<T: Pod> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de, T: Pod> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
