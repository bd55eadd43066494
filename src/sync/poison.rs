//! What a robust lock reports: [`OwnerDied`] (the previous holder died
//! holding it, like std's poisoning, with the guard inside),
//! [`TryLockError`] (also held elsewhere), [`NotOwner`] (a release by a
//! thread that does not hold it). Shared by `Mutex`, `Lock`, `RLock`,
//! `Value` and `Array`.

use std::fmt;

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

    /// The same report around another guard (a typed guard over the raw
    /// one).
    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> OwnerDied<H> {
        OwnerDied::new(f(self.guard))
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

/// Why a non-blocking lock did not simply succeed.
pub enum TryLockError<G> {
    /// Acquired, from a holder that died: see [`OwnerDied`].
    OwnerDied(OwnerDied<G>),
    /// Not acquired: held by a live owner.
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

impl<G> TryLockError<G> {
    /// The same error around another guard.
    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> TryLockError<H> {
        match self {
            TryLockError::OwnerDied(e) => TryLockError::OwnerDied(e.map(f)),
            TryLockError::WouldBlock => TryLockError::WouldBlock,
        }
    }
}

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

/// Why a timed lock did not simply succeed.
pub enum LockTimeoutError<G> {
    /// Acquired, from a holder that died: see [`OwnerDied`].
    OwnerDied(OwnerDied<G>),
    /// Not acquired: still held when the timeout ran out.
    Timeout,
}

impl<G> LockTimeoutError<G> {
    /// The same error around another guard.
    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> LockTimeoutError<H> {
        match self {
            LockTimeoutError::OwnerDied(e) => LockTimeoutError::OwnerDied(e.map(f)),
            LockTimeoutError::Timeout => LockTimeoutError::Timeout,
        }
    }
}

impl<G> fmt::Debug for LockTimeoutError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockTimeoutError::OwnerDied(e) => fmt::Debug::fmt(e, f),
            LockTimeoutError::Timeout => f.write_str("Timeout"),
        }
    }
}

impl<G> fmt::Display for LockTimeoutError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockTimeoutError::OwnerDied(e) => fmt::Display::fmt(e, f),
            LockTimeoutError::Timeout => f.write_str("the lock was still held when the time ran out"),
        }
    }
}

impl<G> std::error::Error for LockTimeoutError<G> {}

impl<G> From<OwnerDied<G>> for LockTimeoutError<G> {
    fn from(e: OwnerDied<G>) -> Self {
        LockTimeoutError::OwnerDied(e)
    }
}

/// Drops the guard (so the lock is free again) and keeps the kind.
impl<G> From<OwnerDied<G>> for crate::Error {
    fn from(_: OwnerDied<G>) -> Self {
        crate::Error::OwnerDied
    }
}

/// Drops any guard and keeps the kind.
impl<G> From<TryLockError<G>> for crate::Error {
    fn from(e: TryLockError<G>) -> Self {
        match e {
            TryLockError::OwnerDied(_) => crate::Error::OwnerDied,
            TryLockError::WouldBlock => crate::Error::WouldBlock,
        }
    }
}

/// Drops any guard and keeps the kind.
impl<G> From<LockTimeoutError<G>> for crate::Error {
    fn from(e: LockTimeoutError<G>) -> Self {
        match e {
            LockTimeoutError::OwnerDied(_) => crate::Error::OwnerDied,
            LockTimeoutError::Timeout => crate::Error::Timeout,
        }
    }
}

impl From<NotOwner> for crate::Error {
    fn from(_: NotOwner) -> Self {
        crate::Error::NotOwner
    }
}

/// Result of a blocking lock: the guard, or the guard inside [`OwnerDied`].
pub type LockResult<G> = std::result::Result<G, OwnerDied<G>>;
/// Result of `try_lock`.
pub type TryLockResult<G> = std::result::Result<G, TryLockError<G>>;
/// Result of `lock_timeout`.
pub type LockTimeoutResult<G> = std::result::Result<G, LockTimeoutError<G>>;


/// A lock result around another guard.
#[inline]
pub(crate) fn map_lock<G, H>(r: LockResult<G>, f: impl FnOnce(G) -> H) -> LockResult<H> {
    match r {
        Ok(g) => Ok(f(g)),
        Err(e) => Err(e.map(f)),
    }
}

/// A try-lock result around another guard.
#[inline]
pub(crate) fn map_try_lock<G, H>(r: TryLockResult<G>, f: impl FnOnce(G) -> H) -> TryLockResult<H> {
    match r {
        Ok(g) => Ok(f(g)),
        Err(e) => Err(e.map(f)),
    }
}

/// A timed-lock result around another guard.
#[inline]
pub(crate) fn map_lock_timeout<G, H>(
    r: LockTimeoutResult<G>,
    f: impl FnOnce(G) -> H,
) -> LockTimeoutResult<H> {
    match r {
        Ok(g) => Ok(f(g)),
        Err(e) => Err(e.map(f)),
    }
}
