//! `Mutex<T>`: a process-shared lock around one `T` that survives a dead
//! holder.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::algo::robust::RobustLock;
use crate::error::Result;
use crate::shm::header::{Expect, ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Place, Placed, Token};
use crate::sync::lock_word::Held;
use crate::sync::poison::{
    LockResult, LockTimeoutResult, TryLockResult, map_lock, map_lock_timeout, map_try_lock,
};

/// A process-shared mutual-exclusion lock guarding one `T` in shared memory:
/// Python's `multiprocessing.Lock` with data, and the robust counterpart of
/// `std::sync::Mutex`.
///
/// Any process that has the `Mutex` (a forked child, or an attach from its
/// [`Descriptor`](crate::Descriptor)) locks the same lock. Waiters spin
/// briefly, then sleep on a shared futex; unlocking makes no system call when
/// nobody sleeps.
///
/// **A holder that dies does not deadlock the others.** If a process is
/// killed (even by `SIGKILL`) or a thread exits while holding the lock, the
/// next locker gets the lock within about 100 ms of starting to wait, with
/// the guard inside [`OwnerDied`](crate::OwnerDied): repair the data, then call
/// [`MutexGuard::mark_consistent`]. Until then every lock reports
/// `OwnerDied` (like std's poisoning). Dead holders are recognised by thread
/// id and thread start time through `/proc`, so all processes sharing a lock
/// must live in one PID namespace.
///
/// Locking a mutex again from the thread that holds it deadlocks (or times
/// out), as with std's `Mutex`; use [`RLock`](crate::RLock) for re-entry.
/// [`Lock`](crate::Lock) is the same lock with no data.
///
/// # Examples
///
/// ```
/// use multiproc::Mutex;
/// # fn main() -> multiproc::Result<()> {
/// let m = Mutex::new([0u64; 4])?;
/// {
///     let mut g = m.lock().unwrap_or_else(|died| died.into_inner());
///     g[0] += 1;
/// }
/// assert_eq!(m.lock().unwrap()[0], 1);
/// # Ok(())
/// # }
/// ```
pub struct Mutex<T> {
    pub(crate) obj: Placed,
    _t: PhantomData<T>,
}


// SAFETY: the handle is an Arc'd mapping plus offsets; the `T` is reached
// only under the lock, as with std's Mutex, which is Send + Sync for T: Send.
unsafe impl<T: Pod + Send> Send for Mutex<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send> Sync for Mutex<T> {}

impl<T> Clone for Mutex<T> {
    fn clone(&self) -> Self {
        Mutex {
            obj: self.obj.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("type", &std::any::type_name::<T>())
            .field("place", &self.obj)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> Mutex<T> {
    /// Places a mutex guarding `value` in shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if a new segment cannot be made.
    pub fn new(value: T) -> Result<Self> {
        Self::make(Place::Arena, value)
    }

    /// Places a mutex guarding `value` at `offset` of a named segment; see
    /// [`Value::create_at`](crate::Value::create_at).
    ///
    /// # Errors
    ///
    /// As [`Value::create_at`](crate::Value::create_at).
    pub fn create_at(shm: &SharedMemory, offset: usize, value: T) -> Result<Self> {
        Self::make(Place::At(shm, offset), value)
    }

    fn make(place: Place<'_>, value: T) -> Result<Self> {
        Self::place(place, ObjectKind::Mutex, value)
    }

    /// Places a lock word and `value` as an object of `kind` (`Mutex`, or
    /// `Value`, which is a `Mutex` with conveniences).
    pub(crate) fn place(place: Place<'_>, kind: ObjectKind, value: T) -> Result<Self> {
        let layout = ObjectLayout::new::<T>(kind, 1)?;
        let obj = place.make(layout, |p| {
            // SAFETY: aligned and valid for one T; nobody sees it before
            // `publish`. The lock word was zeroed (unlocked) by placement.
            unsafe { p.cast::<T>().write(value) }
        })?;
        Ok(Self::over(obj))
    }

    /// The mutex over a validated object of kind `Mutex` or `Value`.
    pub(crate) fn over(obj: Placed) -> Self {
        Mutex {
            obj,
            _t: PhantomData,
        }
    }

    /// Bytes a `Mutex<T>` takes in a segment.
    pub fn shared_size() -> usize {
        ObjectLayout::new::<T>(ObjectKind::Mutex, 1).map_or(usize::MAX, |l| l.total_size)
    }

    /// Alignment a `Mutex<T>` needs in a segment (at least 64).
    pub fn shared_align() -> usize {
        ObjectLayout::new::<T>(ObjectKind::Mutex, 1).map_or(usize::MAX, |l| l.align)
    }

    /// Takes the lock, sleeping while another thread or process holds it.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](crate::OwnerDied), holding the guard, if a previous holder died holding
    /// the lock and nobody has marked it consistent since.
    #[inline]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        map_lock(Held::lock(self.obj.lock_word()), |held| self.guard(held))
    }

    /// Takes the lock if it is free, without blocking. A lock whose holder
    /// died is only recovered by [`lock`](Self::lock) and
    /// [`lock_timeout`](Self::lock_timeout).
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`](crate::TryLockError::WouldBlock) if it
    /// is held, [`TryLockError::OwnerDied`](crate::TryLockError::OwnerDied)
    /// as for `lock`.
    #[inline]
    pub fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
        map_try_lock(Held::try_lock(self.obj.lock_word()), |held| {
            self.guard(held)
        })
    }

    /// Takes the lock, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockTimeoutError::Timeout`](crate::LockTimeoutError::Timeout) if
    /// still held when the time is up,
    /// [`LockTimeoutError::OwnerDied`](crate::LockTimeoutError::OwnerDied)
    /// as for `lock`.
    pub fn lock_timeout(&self, timeout: Duration) -> LockTimeoutResult<MutexGuard<'_, T>> {
        map_lock_timeout(Held::lock_timeout(self.obj.lock_word(), timeout), |held| {
            self.guard(held)
        })
    }

    /// Whether a holder died and nobody has marked the data consistent
    /// since (a snapshot).
    pub fn is_poisoned(&self) -> bool {
        RobustLock::is_poisoned(self.obj.lock_word())
    }

    /// Whether the lock is held right now, by anyone (a snapshot).
    pub fn is_locked(&self) -> bool {
        RobustLock::owner(self.obj.lock_word()).is_some()
    }

    fn guard<'a>(&'a self, held: Held<'a>) -> MutexGuard<'a, T> {
        MutexGuard { held, mutex: self }
    }

    /// Pointer to the value in this process's mapping.
    pub fn as_ptr(&self) -> *mut T {
        self.obj.data().cast()
    }
}


/// A held [`Mutex`]: derefs to the value, unlocks on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: Pod> {
    /// Unlocks on drop; keeps the guard on this thread (the lock word names
    /// it as the owner).
    held: Held<'a>,
    mutex: &'a Mutex<T>,
}

// SAFETY: a shared guard only hands out `&T`.
unsafe impl<T: Pod + Sync> Sync for MutexGuard<'_, T> {}

impl<'a, T: Pod> MutexGuard<'a, T> {
    /// Declares the data repaired after an [`OwnerDied`](crate::OwnerDied): later lockers no
    /// longer get `OwnerDied` (unless another holder dies).
    pub fn mark_consistent(&mut self) {
        self.held.mark_consistent();
    }

    /// Unlocks, runs `f`, and locks again: the heart of a condition wait.
    pub(crate) fn unlocked<R>(self, f: impl FnOnce() -> R) -> (R, LockResult<MutexGuard<'a, T>>) {
        let mutex = self.mutex;
        drop(self);
        let r = f();
        (r, mutex.lock())
    }
}

impl<T: Pod> Deref for MutexGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: we hold the lock: no cooperating writer; the value is
        // aligned and valid while the mapping lives.
        unsafe { &*self.mutex.as_ptr() }
    }
}

impl<T: Pod> DerefMut for MutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: we hold the lock: nobody else reads or writes the value.
        unsafe { &mut *self.mutex.as_ptr() }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

// SAFETY: a lock word and one `T` at the data offset of a `Mutex` header
// of `T`'s fingerprint, which is all the handle reads and writes.
unsafe impl<T: Pod> Object for Mutex<T> {
    const KIND: ObjectKind = ObjectKind::Mutex;

    fn expect() -> Expect {
        Expect::of::<T>()
    }

    fn from_placed(obj: Placed, _: u32, _: Token) -> Result<Self> {
        Ok(Self::over(obj))
    }

    fn placed(&self) -> &Placed {
        &self.obj
    }
}

/// Encodes the handle as its [`Descriptor`](crate::Descriptor).
impl<T: Pod> Serialize for Mutex<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de, T: Pod> Deserialize<'de> for Mutex<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
