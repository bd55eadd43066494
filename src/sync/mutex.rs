//! `Mutex<T>` and `Lock`: process-shared locks that survive a dead holder,
//! and the `OwnerDied` error family shared with `Value`, `Array` and `RLock`.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::error::Result;
use crate::loom::atomic::AtomicU64;
use crate::shm::header::{ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Placed, attach_api};
use crate::algo::wait::deadline;
use crate::shm::object::Place;
use crate::sys::thread::{self as owner, ProcLiveness};
use crate::sys::futex::Futex;
use crate::algo::robust::{Locked, RobustLock, TimedOut};

/// The lock was acquired, but its previous holder died while holding it (a
/// process killed, a thread that exited): the data it protects may be
/// half-updated. Like std's `PoisonError`, it carries the guard.
///
/// Take the guard with [`into_inner`](Self::into_inner), repair the data,
/// and call the guard's `mark_consistent`; until someone does, every lock of
/// this lock reports `OwnerDied` again.
pub struct OwnerDied<G> {
    guard: G,
}

impl<G> OwnerDied<G> {
    pub(crate) fn new(guard: G) -> Self {
        OwnerDied { guard }
    }

    /// The guard: the lock is held.
    pub fn into_inner(self) -> G {
        self.guard
    }

    /// A reference to the guard.
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// A mutable reference to the guard.
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerDied").finish_non_exhaustive()
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a previous holder of the lock died while holding it; the data may need repair")
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

/// The calling thread does not hold the lock it tried to release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("release of a lock not held by this thread")]
pub struct NotOwner;

/// Why a non-blocking or timed lock did not simply succeed.
pub enum TryLockError<G> {
    /// Acquired, from a holder that died: see [`OwnerDied`].
    OwnerDied(OwnerDied<G>),
    /// Not acquired: held by a live owner (for `try_lock`), or still held
    /// when the timeout ran out (for `lock_timeout`).
    WouldBlock,
}

impl<G> fmt::Debug for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::OwnerDied(e) => fmt::Debug::fmt(e, f),
            TryLockError::WouldBlock => f.write_str("WouldBlock"),
        }
    }
}

impl<G> fmt::Display for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::OwnerDied(e) => fmt::Display::fmt(e, f),
            TryLockError::WouldBlock => f.write_str("the lock is held elsewhere"),
        }
    }
}

impl<G> std::error::Error for TryLockError<G> {}

impl<G> From<OwnerDied<G>> for TryLockError<G> {
    fn from(e: OwnerDied<G>) -> Self {
        TryLockError::OwnerDied(e)
    }
}

/// Python-style `acquire`: keeps the lock held past the guard (it is released
/// by an explicit `release`), reporting only whether its holder had died.
pub(crate) fn keep_held<G>(r: LockResult<G>) -> std::result::Result<(), OwnerDied<()>> {
    match r {
        Ok(g) => {
            std::mem::forget(g);
            Ok(())
        }
        Err(died) => {
            std::mem::forget(died.into_inner());
            Err(OwnerDied::new(()))
        }
    }
}

/// Result of a blocking lock: the guard, or the guard inside [`OwnerDied`].
pub type LockResult<G> = std::result::Result<G, OwnerDied<G>>;
/// Result of `try_lock` / `lock_timeout`.
pub type TryLockResult<G> = std::result::Result<G, TryLockError<G>>;

/// The robust lock operations with this crate's futex and `/proc` liveness:
/// what every lock-protected object uses.
pub(crate) mod word {
    use super::*;

    /// Blocks until held (or `deadline`).
    #[inline]
    pub(crate) fn lock(word: &AtomicU64, deadline: Option<Instant>) -> Result<Locked, TimedOut> {
        RobustLock::lock(word, owner::current(), &Futex, &ProcLiveness, deadline)
    }

    /// Never blocks.
    #[inline]
    pub(crate) fn try_lock(word: &AtomicU64) -> Option<Locked> {
        RobustLock::try_lock(word, owner::current())
    }

    /// Wraps an acquisition outcome into the lock-result shape.
    #[inline]
    pub(crate) fn result<G>(how: Locked, guard: G) -> LockResult<G> {
        match how {
            Locked::Clean => Ok(guard),
            Locked::OwnerDied => Err(OwnerDied::new(guard)),
        }
    }

    /// As [`result`], for a try/timed acquisition.
    #[inline]
    pub(crate) fn try_result<G>(
        how: Option<Locked>,
        guard: impl FnOnce() -> G,
    ) -> TryLockResult<G> {
        match how {
            None => Err(TryLockError::WouldBlock),
            Some(how) => result(how, guard()).map_err(TryLockError::OwnerDied),
        }
    }

    /// `lock` with a timeout, in the try-result shape.
    #[inline]
    pub(crate) fn lock_timeout(word: &AtomicU64, timeout: Duration) -> Option<Locked> {
        lock(word, deadline(timeout)).ok()
    }

    /// Releases the lock.
    ///
    /// # Safety
    ///
    /// The calling thread holds it.
    #[inline]
    pub(crate) unsafe fn unlock(word: &AtomicU64) {
        // SAFETY: forwarded; `current()` is this thread.
        unsafe { RobustLock::unlock(word, owner::current(), &Futex) }
    }
}

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
/// the guard inside [`OwnerDied`]: repair the data, then call
/// [`MutexGuard::mark_consistent`]. Until then every lock reports
/// `OwnerDied` (like std's poisoning). Dead holders are recognised by thread
/// id and thread start time through `/proc`, so all processes sharing a lock
/// must live in one PID namespace.
///
/// Locking a mutex again from the thread that holds it deadlocks (or times
/// out), as with std's `Mutex`; use [`RLock`](crate::RLock) for re-entry.
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
    obj: Placed,
    _t: PhantomData<T>,
}

/// A process-shared lock with no data: Python's `multiprocessing.Lock`.
///
/// # Examples
///
/// ```
/// use multiproc::Lock;
/// # fn main() -> multiproc::Result<()> {
/// let lock = Lock::new(())?;
/// let guard = lock.lock().unwrap();
/// assert!(lock.try_lock().is_err());
/// drop(guard);
/// assert!(lock.try_lock().is_ok());
/// # Ok(())
/// # }
/// ```
pub type Lock = Mutex<()>;

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
        let layout = ObjectLayout::new::<T>(ObjectKind::Mutex, 1)?;
        let obj = place.make(layout, |p| {
            // SAFETY: aligned and valid for one T; nobody sees it before
            // `publish`. The lock word was zeroed (unlocked) by placement.
            unsafe { p.cast::<T>().write(value) }
        })?;
        Ok(Self::from_placed(obj))
    }

    attach_api!("Mutex<T>", ObjectKind::Mutex, Some(1), T);

    fn from_placed(obj: Placed) -> Self {
        Mutex {
            obj,
            _t: PhantomData,
        }
    }

    fn placed(&self) -> &Placed {
        &self.obj
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
    /// [`OwnerDied`], holding the guard, if a previous holder died holding
    /// the lock and nobody has marked it consistent since.
    #[inline]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        // No deadline: `lock` only returns once the lock is held.
        let how = word::lock(self.obj.lock_word(), None).unwrap_or(Locked::Clean);
        word::result(how, self.guard())
    }

    /// Takes the lock if it is free, without blocking. A lock whose holder
    /// died is only recovered by [`lock`](Self::lock) and
    /// [`lock_timeout`](Self::lock_timeout).
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if it is held, [`TryLockError::OwnerDied`]
    /// as for `lock`.
    #[inline]
    pub fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
        word::try_result(word::try_lock(self.obj.lock_word()), || self.guard())
    }

    /// Takes the lock, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if still held when the time is up,
    /// [`TryLockError::OwnerDied`] as for `lock`.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<MutexGuard<'_, T>> {
        word::try_result(word::lock_timeout(self.obj.lock_word(), timeout), || {
            self.guard()
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

    fn guard(&self) -> MutexGuard<'_, T> {
        MutexGuard {
            mutex: self,
            _not_send: PhantomData,
        }
    }
}

impl Mutex<()> {
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
        let word = self.obj.lock_word();
        if RobustLock::owner(word) != Some(owner::current()) {
            return Err(NotOwner);
        }
        // SAFETY: this thread holds the lock (checked just above; only the
        // owner can change the owner field away from itself).
        unsafe { word::unlock(word) };
        Ok(())
    }
}

/// A held [`Mutex`]: derefs to the value, unlocks on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: Pod> {
    mutex: &'a Mutex<T>,
    // The owner recorded in the lock is this thread: the guard stays here.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard only hands out `&T`.
unsafe impl<T: Pod + Sync> Sync for MutexGuard<'_, T> {}

impl<'a, T: Pod> MutexGuard<'a, T> {
    /// Declares the data repaired after an [`OwnerDied`]: later lockers no
    /// longer get `OwnerDied` (unless another holder dies).
    pub fn mark_consistent(&mut self) {
        // SAFETY: the guard exists only while this thread holds the lock.
        unsafe { RobustLock::mark_consistent(self.mutex.obj.lock_word()) }
    }

    /// Unlocks, runs `f`, and locks again: the heart of a condition wait.
    pub(crate) fn unlocked<R>(self, f: impl FnOnce() -> R) -> (R, LockResult<MutexGuard<'a, T>>) {
        let mutex = self.mutex;
        std::mem::forget(self);
        // SAFETY: the guard we just consumed proves this thread held the lock.
        unsafe { word::unlock(mutex.obj.lock_word()) };
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
        unsafe { &*self.mutex.obj.data().cast::<T>() }
    }
}

impl<T: Pod> DerefMut for MutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: we hold the lock: nobody else reads or writes the value.
        unsafe { &mut *self.mutex.obj.data().cast::<T>() }
    }
}

impl<T: Pod> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: a guard exists only while this thread holds the lock.
        unsafe { word::unlock(self.mutex.obj.lock_word()) }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
