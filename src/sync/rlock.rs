//! `RLock`: a re-entrant process-shared lock, Python's
//! `multiprocessing.RLock`.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::loom::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::shm::header::{Expect, ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Placed, Token};
use crate::shm::object::Place;
use crate::sync::lock_word;
use crate::sync::poison::{
    LockResult, LockTimeoutError, LockTimeoutResult, NotOwner, OwnerDied, TryLockError,
    TryLockResult, keep_held,
};
use crate::sys::thread as owner;
use crate::algo::robust::{Locked, Owner, RobustLock};
use crate::algo::wait::deadline;
use crate::sys::futex::Futex;
use crate::sys::thread::ProcLiveness;

/// The shared state: the robust lock word, then the recursion count (only
/// ever touched by the owner).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RLockState {
    word: u64,
    count: u32,
    reserved: u32,
}

/// A re-entrant process-shared lock: the thread that holds it may lock it
/// again, and it is released when every lock has been undone. Python's
/// `multiprocessing.RLock`.
///
/// Ownership is per thread of a process. Like [`Mutex`](crate::Mutex), it
/// survives a holder's death: the next locker gets the guard inside
/// [`OwnerDied`], with the recursion count reset to one.
///
/// Guards ([`lock`](Self::lock)) are the Rust way; Python's explicit
/// [`acquire`](Self::acquire) / [`release`](Self::release) pair is here too,
/// and releasing from a thread that does not hold the lock is the error
/// [`NotOwner`].
///
/// # Examples
///
/// ```
/// use multiproc::RLock;
/// # fn main() -> multiproc::Result<()> {
/// let r = RLock::new()?;
/// let outer = r.lock().unwrap();
/// let inner = r.lock().unwrap(); // same thread: no deadlock
/// assert_eq!(r.count(), 2);
/// drop((inner, outer));
/// assert!(r.release().is_err()); // not held any more
/// # Ok(())
/// # }
/// ```
pub struct RLock {
    obj: Placed,
    /// The lock word and, right after it, the recursion count: computed
    /// once (the hot paths then do not walk from the handle to the
    /// segment's mapping on every access).
    state: *const RLockWords,
}

/// The two words every operation touches, as atomics.
#[repr(C)]
struct RLockWords {
    word: AtomicU64,
    count: AtomicU32,
}

// SAFETY: `state` is a cached pointer into the mapping that `obj` keeps
// alive wherever the handle goes (Placed is Send and Sync); the words are
// only accessed atomically.
unsafe impl Send for RLock {}
// SAFETY: as for Send.
unsafe impl Sync for RLock {}

impl Clone for RLock {
    fn clone(&self) -> Self {
        RLock {
            obj: self.obj.clone(),
            state: self.state,
        }
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("place", &self.obj)
            .finish_non_exhaustive()
    }
}

impl RLock {
    /// Places an unlocked re-entrant lock in shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if a new segment cannot be made.
    pub fn new() -> Result<Self> {
        Self::make(Place::Arena)
    }

    /// Places an unlocked re-entrant lock at `offset` of a named segment.
    ///
    /// # Errors
    ///
    /// As [`Value::create_at`](crate::Value::create_at).
    pub fn create_at(shm: &SharedMemory, offset: usize) -> Result<Self> {
        Self::make(Place::At(shm, offset))
    }

    fn make(place: Place<'_>) -> Result<Self> {
        let layout = ObjectLayout::new::<RLockState>(ObjectKind::RLock, 1)?;
        // Placement zeroes the state: unlocked, count 0.
        Ok(Self::over(place.make(layout, |_| {})?))
    }

    fn over(obj: Placed) -> Self {
        let word: *const AtomicU64 = obj.lock_word();
        RLock {
            state: word.cast::<RLockWords>(),
            obj,
        }
    }

    #[inline]
    fn words(&self) -> &RLockWords {
        // SAFETY: the lock word (8 bytes at the data offset, 64-aligned)
        // and the count right after it (RLockState's first two fields) lie
        // in the mapping `self.obj` keeps alive; both are atomics, valid
        // for any bytes.
        unsafe { &*self.state }
    }

    #[inline]
    fn lock_word(&self) -> &AtomicU64 {
        &self.words().word
    }

    #[inline]
    fn count_word(&self) -> &AtomicU32 {
        // Bytes 8..12 of the state: the recursion count.
        &self.words().count
    }

    fn held_by_me(&self) -> bool {
        self.held_by(owner::current())
    }

    #[inline]
    fn held_by(&self, me: Owner) -> bool {
        RobustLock::owner(self.lock_word()) == Some(me)
    }

    /// Records the first level for the new owner `me` (this thread), just
    /// after acquiring the word, and makes a guard.
    #[inline]
    fn enter(&self, how: Locked, me: Owner) -> LockResult<RLockGuard<'_>> {
        // This thread held no level: the count is 1 now, whatever was left
        // in it (0 after a clean unlock; a dead owner's levels, or a peer's
        // garbage, otherwise). Only the owner writes the count; Relaxed
        // suffices (the lock word's Acquire/Release order it between owners).
        self.count_word().store(1, Ordering::Relaxed);
        lock_word::result(how, self.guard(me))
    }

    /// The fast paths: the word is free and we take it (one CAS, as a
    /// `Lock`), or this thread already holds it (one more level). `None`:
    /// another thread holds it (or it carries marks): the slow path.
    #[inline]
    fn enter_fast(&self, me: Owner) -> Option<LockResult<RLockGuard<'_>>> {
        let word = self.lock_word();
        if RobustLock::try_lock_free(word, me) {
            return Some(self.enter(Locked::Clean, me));
        }
        if !self.held_by(me) {
            return None;
        }
        let count = self.count_word();
        count.store(
            count.load(Ordering::Relaxed).saturating_add(1),
            Ordering::Relaxed,
        );
        Some(Ok(self.guard(me)))
    }

    /// Takes the lock (again, if this thread holds it), sleeping while
    /// another thread or process holds it.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], holding the guard, if a holder died holding it.
    #[inline]
    pub fn lock(&self) -> LockResult<RLockGuard<'_>> {
        let me = owner::current();
        if let Some(r) = self.enter_fast(me) {
            return r;
        }
        // No deadline: only returns once the lock is held.
        let how = RobustLock::lock(self.lock_word(), me, &Futex, &ProcLiveness, None)
            .unwrap_or(Locked::Clean);
        self.enter(how, me)
    }

    /// Takes the lock if this thread holds it or it is free; never blocks.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if another thread holds it,
    /// [`TryLockError::OwnerDied`] as for `lock`.
    pub fn try_lock(&self) -> TryLockResult<RLockGuard<'_>> {
        let me = owner::current();
        if let Some(r) = self.enter_fast(me) {
            return r.map_err(TryLockError::OwnerDied);
        }
        match RobustLock::try_lock(self.lock_word(), me) {
            None => Err(TryLockError::WouldBlock),
            Some(how) => self.enter(how, me).map_err(TryLockError::OwnerDied),
        }
    }

    /// Takes the lock, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockTimeoutError::Timeout`](crate::LockTimeoutError::Timeout) if
    /// another thread still holds it when the time is up,
    /// [`LockTimeoutError::OwnerDied`](crate::LockTimeoutError::OwnerDied)
    /// as for `lock`.
    pub fn lock_timeout(&self, timeout: Duration) -> LockTimeoutResult<RLockGuard<'_>> {
        let me = owner::current();
        if let Some(r) = self.enter_fast(me) {
            return r.map_err(LockTimeoutError::OwnerDied);
        }
        let word = self.lock_word();
        match RobustLock::lock(word, me, &Futex, &ProcLiveness, deadline(timeout)) {
            Err(_) => Err(LockTimeoutError::Timeout),
            Ok(how) => self.enter(how, me).map_err(LockTimeoutError::OwnerDied),
        }
    }

    /// Python's `acquire()`: takes the lock with no guard; undo with
    /// [`release`](Self::release).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] if a holder died holding it (the lock is then held).
    pub fn acquire(&self) -> std::result::Result<(), OwnerDied<()>> {
        keep_held(self.lock())
    }

    /// Python's `release()`: undoes one [`acquire`](Self::acquire) (or one
    /// level of a forgotten guard).
    ///
    /// # Errors
    ///
    /// [`NotOwner`] if this thread does not hold the lock.
    pub fn release(&self) -> std::result::Result<(), NotOwner> {
        let me = owner::current();
        if !self.held_by(me) {
            return Err(NotOwner);
        }
        self.leave(me);
        Ok(())
    }

    /// Undoes one level of `me` (this thread); unlocks at zero. Does
    /// nothing unless `me` holds the lock with a level to undo (a guard that
    /// outlived an explicit `release` of its level must not release someone
    /// else's lock).
    #[inline]
    fn leave(&self, me: Owner) {
        if !self.held_by(me) {
            return;
        }
        let count = self.count_word();
        let left = match count.load(Ordering::Relaxed).checked_sub(1) {
            Some(left) => left,
            None => return,
        };
        count.store(left, Ordering::Relaxed);
        if left == 0 && !RobustLock::try_unlock_clean(self.lock_word(), me) {
            // Marks on the word (sleepers, a past death): the full unlock.
            // SAFETY: this thread (`me`) holds the lock (checked above).
            unsafe { RobustLock::unlock(self.lock_word(), me, &Futex) }
        }
    }

    /// How many times the holder has locked it (0 when free); a snapshot,
    /// exact when called by the holder.
    pub fn count(&self) -> u32 {
        if RobustLock::owner(self.lock_word()).is_some() {
            self.count_word().load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Whether this thread holds the lock.
    pub fn is_owned(&self) -> bool {
        self.held_by_me()
    }

    #[inline]
    fn guard(&self, me: Owner) -> RLockGuard<'_> {
        RLockGuard {
            lock: self,
            me,
            _not_send: PhantomData,
        }
    }
}

/// One level of a held [`RLock`]; undone on drop.
#[must_use = "the level is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    /// The thread that took this level (a guard is not `Send`).
    me: Owner,
    _not_send: PhantomData<*const ()>,
}

impl RLockGuard<'_> {
    /// Declares the protected state repaired after an [`OwnerDied`].
    pub fn mark_consistent(&mut self) {
        // SAFETY: the guard exists only while this thread holds the lock.
        unsafe { RobustLock::mark_consistent(self.lock.obj.lock_word()) }
    }
}

impl Drop for RLockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // A forked child's copy of its parent's guard names the parent's
        // thread: it must leave the parent's levels alone (`current` is
        // this thread's identity, reset by `fork`).
        if self.me == owner::current() {
            self.lock.leave(self.me);
        }
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}

// SAFETY: an `RLockState` (lock word and count, used only atomically) at the data
// offset of an `RLock` header of its fingerprint: all the handle touches.
unsafe impl Object for RLock {
    const KIND: ObjectKind = ObjectKind::RLock;

    fn expect() -> Expect {
        Expect::of::<RLockState>()
    }

    fn from_placed(obj: Placed, _: u32, _: Token) -> Result<Self> {
        Ok(Self::over(obj))
    }

    fn placed(&self) -> &Placed {
        &self.obj
    }
}

/// Encodes the handle as its [`Descriptor`](crate::Descriptor).
impl Serialize for RLock {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de> Deserialize<'de> for RLock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
