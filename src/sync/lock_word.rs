//! The robust lock word (`algo::robust`) with this crate's futex and
//! `/proc` liveness, and [`Held`], a held word that unlocks on drop: what
//! every lock-protected object (`Mutex`, `Value`, `Array`, `RLock`) is
//! built on.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::algo::robust::{Locked, RobustLock, TimedOut};
use crate::algo::wait::deadline;
use crate::loom::atomic::AtomicU64;
use crate::sync::poison::{
    LockResult, LockTimeoutError, LockTimeoutResult, OwnerDied, TryLockError, TryLockResult,
};
use crate::sys::futex::Futex;
use crate::sys::thread::{self, ProcLiveness};

/// Blocks until held (or `deadline`).
#[inline]
pub(crate) fn lock(word: &AtomicU64, deadline: Option<Instant>) -> Result<Locked, TimedOut> {
    RobustLock::lock(word, thread::current(), &Futex, &ProcLiveness, deadline)
}

/// Never blocks.
#[inline]
pub(crate) fn try_lock(word: &AtomicU64) -> Option<Locked> {
    RobustLock::try_lock(word, thread::current())
}

/// Blocks until held, or until `timeout` has passed (`None`).
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
    unsafe { RobustLock::unlock(word, thread::current(), &Futex) }
}

/// Whether the calling thread holds the lock.
#[inline]
pub(crate) fn held_by_me(word: &AtomicU64) -> bool {
    RobustLock::owner(word) == Some(thread::current())
}

/// An acquisition outcome in the lock-result shape.
#[inline]
pub(crate) fn result<G>(how: Locked, guard: G) -> LockResult<G> {
    match how {
        Locked::Clean => Ok(guard),
        Locked::OwnerDied => Err(OwnerDied::new(guard)),
    }
}

/// As [`result`], for a try acquisition (`None`: not acquired).
#[inline]
pub(crate) fn try_result<G>(how: Option<Locked>, guard: impl FnOnce() -> G) -> TryLockResult<G> {
    match how {
        None => Err(TryLockError::WouldBlock),
        Some(how) => result(how, guard()).map_err(TryLockError::OwnerDied),
    }
}

/// As [`result`], for a timed acquisition (`None`: the time ran out).
#[inline]
pub(crate) fn timeout_result<G>(
    how: Option<Locked>,
    guard: impl FnOnce() -> G,
) -> LockTimeoutResult<G> {
    match how {
        None => Err(LockTimeoutError::Timeout),
        Some(how) => result(how, guard()).map_err(LockTimeoutError::OwnerDied),
    }
}

/// A held lock word: unlocks on drop. Like std's `MutexGuard`, it stays on
/// the thread that locked (the word names that thread).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub(crate) struct Held<'a> {
    word: &'a AtomicU64,
    _not_send: PhantomData<*const ()>,
}

impl<'a> Held<'a> {
    /// Takes the lock, sleeping while another thread or process holds it.
    #[inline]
    pub(crate) fn lock(word: &'a AtomicU64) -> LockResult<Held<'a>> {
        // No deadline: only returns once the lock is held.
        let how = lock(word, None).unwrap_or(Locked::Clean);
        result(how, Held::new(word))
    }

    /// Takes the lock if it is free, without blocking.
    #[inline]
    pub(crate) fn try_lock(word: &'a AtomicU64) -> TryLockResult<Held<'a>> {
        try_result(try_lock(word), || Held::new(word))
    }

    /// Takes the lock, giving up after `timeout`.
    #[inline]
    pub(crate) fn lock_timeout(
        word: &'a AtomicU64,
        timeout: Duration,
    ) -> LockTimeoutResult<Held<'a>> {
        timeout_result(lock_timeout(word, timeout), || Held::new(word))
    }

    fn new(word: &'a AtomicU64) -> Held<'a> {
        Held {
            word,
            _not_send: PhantomData,
        }
    }

    /// Declares the protected data repaired after an [`OwnerDied`].
    pub(crate) fn mark_consistent(&mut self) {
        // SAFETY: a `Held` exists only while this thread holds the lock.
        unsafe { RobustLock::mark_consistent(self.word) }
    }
}

impl Drop for Held<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: a `Held` exists only while this thread holds the lock.
        unsafe { unlock(self.word) }
    }
}
