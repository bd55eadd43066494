//! `Lock`: a process-shared lock with no data (Python's
//! `multiprocessing.Lock`), a [`Mutex<()>`](crate::Mutex) with Python's
//! `acquire` / `release` pair.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::shm::header::{Expect, ObjectKind};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Place, Placed, Token};
use crate::sync::lock_word;
use crate::sync::mutex::{Mutex, MutexGuard};
use crate::sync::poison::{
    LockResult, LockTimeoutResult, NotOwner, OwnerDied, TryLockResult, keep_held,
};

/// A process-shared lock with no data: Python's `multiprocessing.Lock`,
/// robust like [`Mutex`](crate::Mutex) (a holder that dies does not
/// deadlock the others: the next locker gets [`OwnerDied`]).
///
/// Guards ([`lock`](Self::lock)) are the Rust way; Python's explicit
/// [`acquire`](Self::acquire) / [`release`](Self::release) pair is here too.
/// A `Lock` is a `Mutex<()>` in shared memory: either attaches to the
/// other's descriptor.
///
/// # Examples
///
/// ```
/// use multiproc::Lock;
/// # fn main() -> multiproc::Result<()> {
/// let lock = Lock::new()?;
/// let guard = lock.lock().unwrap();
/// assert!(lock.try_lock().is_err());
/// drop(guard);
/// lock.acquire().unwrap();
/// lock.release()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Lock {
    mutex: Mutex<()>,
}

impl Lock {
    /// Places an unlocked lock in shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if a new segment cannot be made.
    pub fn new() -> Result<Self> {
        Mutex::place(Place::Arena, ObjectKind::Mutex, ()).map(|mutex| Lock { mutex })
    }

    /// Places an unlocked lock at `offset` of a named segment; see
    /// [`Value::create_at`](crate::Value::create_at).
    ///
    /// # Errors
    ///
    /// As [`Value::create_at`](crate::Value::create_at).
    pub fn create_at(shm: &SharedMemory, offset: usize) -> Result<Self> {
        Mutex::place(Place::At(shm, offset), ObjectKind::Mutex, ()).map(|mutex| Lock { mutex })
    }

    /// Bytes a `Lock` takes in a segment.
    pub fn shared_size() -> usize {
        Mutex::<()>::shared_size()
    }

    /// Alignment a `Lock` needs in a segment (64).
    pub fn shared_align() -> usize {
        Mutex::<()>::shared_align()
    }

    /// Takes the lock, sleeping while another thread or process holds it.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock`](crate::Mutex::lock).
    #[inline]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, ()>> {
        self.mutex.lock()
    }

    /// Takes the lock if it is free, without blocking.
    ///
    /// # Errors
    ///
    /// As [`Mutex::try_lock`](crate::Mutex::try_lock).
    #[inline]
    pub fn try_lock(&self) -> TryLockResult<MutexGuard<'_, ()>> {
        self.mutex.try_lock()
    }

    /// Takes the lock, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock_timeout`](crate::Mutex::lock_timeout).
    pub fn lock_timeout(&self, timeout: Duration) -> LockTimeoutResult<MutexGuard<'_, ()>> {
        self.mutex.lock_timeout(timeout)
    }

    /// Python's `Lock.acquire()`: takes the lock with no guard; undo with
    /// [`release`](Self::release).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] if a holder died holding it (the lock is then held).
    pub fn acquire(&self) -> std::result::Result<(), OwnerDied<()>> {
        keep_held(self.lock())
    }

    /// Python's `Lock.release()`. Unlike Python's `Lock`, which anyone may
    /// release, this lock belongs to the thread that took it (that is how a
    /// dead holder is recognised).
    ///
    /// # Errors
    ///
    /// [`NotOwner`] if this thread does not hold the lock.
    pub fn release(&self) -> std::result::Result<(), NotOwner> {
        let word = self.mutex.obj.lock_word();
        if !lock_word::held_by_me(word) {
            return Err(NotOwner);
        }
        // SAFETY: this thread holds the lock (checked just above; only the
        // owner can change the owner field away from itself).
        unsafe { lock_word::unlock(word) };
        Ok(())
    }

    /// Whether the lock is held right now, by anyone (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.mutex.is_locked()
    }

    /// Whether a holder died and nobody has marked the lock consistent since
    /// (a snapshot).
    pub fn is_poisoned(&self) -> bool {
        self.mutex.is_poisoned()
    }
}

// SAFETY: the layout of a `Mutex<()>` (a lock word), which is all the
// handle touches.
unsafe impl Object for Lock {
    const KIND: ObjectKind = ObjectKind::Mutex;

    fn expect() -> Expect {
        Expect::of::<()>()
    }

    fn from_placed(obj: Placed, _: u32, _: Token) -> Result<Self> {
        Ok(Lock {
            mutex: Mutex::over(obj),
        })
    }

    fn placed(&self) -> &Placed {
        &self.mutex.obj
    }
}

/// Encodes the handle as its [`Descriptor`](crate::Descriptor).
impl Serialize for Lock {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de> Deserialize<'de> for Lock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
