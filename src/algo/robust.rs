//! The robust lock word: a futex mutex that knows its owner, so that the
//! death of a process (or thread) holding it never deadlocks the others.
//!
//! # The word
//!
//! One 64-bit word, `repr(C)` in shared memory, read and written only as an
//! `AtomicU64`. The futex sleeps on its low 32 bits.
//!
//! | bits | meaning |
//! |---|---|
//! | 0..=29 | owner thread id (TID); 0 = unlocked |
//! | 30 | `DIED`: the data's last owner died holding it and nobody has marked it consistent since |
//! | 31 | `WAITERS`: someone may sleep on the futex; unlock must wake |
//! | 32..=63 | owner *stamp*: the owner thread's start time (clock ticks since boot, truncated; 0 = unknown) |
//!
//! Claiming the lock writes the owner's TID and stamp in one CAS, so the pair
//! is always consistent: a checker never sees a TID with a stale stamp.
//!
//! # Owner death
//!
//! A locker that finds the word held spins briefly, sets `WAITERS`, and
//! sleeps on the futex with a timeout that starts at 1 ms and doubles to
//! 100 ms. If it wakes to find the word unchanged (same owner, nobody
//! unlocked), it asks its [`Liveness`] whether the owner still lives: a TID
//! that no longer exists, a zombie, or a TID now worn by a thread with another
//! start time (the TID was reused) means dead. It then takes the lock over by
//! CAS from the exact word it checked, with `DIED` set, and reports
//! [`Locked::OwnerDied`]. So a dead holder is noticed within about 100 ms of
//! the first wait, and a holder that merely holds the lock long costs each
//! waiter one liveness check per 100 ms.
//!
//! `DIED` stays set through unlocks until an owner calls
//! [`RobustLock::mark_consistent`]: like a poisoned std `Mutex`, every lock
//! reports the death until someone has repaired the data.
//!
//! Why not robust pthread mutexes: their robust-list links are pointers kept
//! in the shared mutex, which a peer can overwrite (our `unlock` would then
//! write through them), and glibc owns the one robust list a thread may have.
//! Why not PI futexes: the kernel hands a PI lock straight to the next waiter
//! on unlock, so a contended lock costs a context switch per hand-off.
//!
//! Limits: all processes sharing a lock must share a PID namespace (TIDs are
//! per namespace); a child made by a raw `clone` that bypasses `fork`'s atfork
//! handlers would keep its parent's cached TID.

use std::time::{Duration, Instant};

use crate::algo::wait::{SPIN_ROUNDS, Waiter, backoff, time_left};
use crate::loom::atomic::{AtomicU64, Ordering};

/// Mask of the owner TID bits.
pub const TID_MASK: u64 = (1 << 30) - 1;
/// The data's last owner died holding the lock.
pub const DIED: u64 = 1 << 30;
/// Someone may sleep on the futex.
pub const WAITERS: u64 = 1 << 31;

/// First and longest sleep between two liveness checks of the owner.
const POLL_MIN: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(100);

/// A lock owner as the word records it: thread id and start stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    /// Thread id (`gettid`), at most 30 bits (the kernel's pid limit is 2^22).
    pub tid: u32,
    /// Start time of that thread, truncated to 32 bits; 0 when unknown.
    pub stamp: u32,
}

impl Owner {
    /// The word bits that record this owner (no flags).
    #[inline]
    pub fn bits(self) -> u64 {
        (u64::from(self.stamp) << 32) | (u64::from(self.tid) & TID_MASK)
    }

    /// The owner recorded in `word`, or `None` if it is unlocked.
    #[inline]
    pub fn of(word: u64) -> Option<Owner> {
        let tid = (word & TID_MASK) as u32;
        (tid != 0).then_some(Owner {
            tid,
            stamp: (word >> 32) as u32,
        })
    }
}

/// Tells whether a lock owner is dead.
///
/// # Safety
///
/// `is_dead` must never return `true` for an owner that still runs: the
/// caller would take its lock over while it is held. Returning `false` for a
/// dead owner is allowed (recovery is merely delayed).
pub unsafe trait Liveness {
    /// Whether `owner` is certainly gone.
    fn is_dead(&self, owner: Owner) -> bool;
}

/// How a lock was acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locked {
    /// Normally.
    Clean,
    /// From (or after) an owner that died holding it, not yet marked
    /// consistent: the protected data may be half-updated.
    OwnerDied,
}

/// The deadline passed before the lock was acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOut;

/// Operations on a robust lock word living anywhere (heap or shared memory).
pub struct RobustLock;

impl RobustLock {
    /// Takes the lock if it is free. Never blocks, never makes a system call;
    /// a lock whose owner died is only recovered by [`lock`](Self::lock).
    #[inline]
    pub fn try_lock(word: &AtomicU64, me: Owner) -> Option<Locked> {
        if Self::fast(word, me) {
            return Some(Locked::Clean);
        }
        Self::try_claim_free(word, me, 0)
    }

    /// Claims the word if it is 0 (free, no marks): the uncontended path
    /// alone, one CAS; `false` in every other case (held, marked, or
    /// contended), which [`try_lock`](Self::try_lock) or
    /// [`lock`](Self::lock) then handle.
    #[inline]
    pub fn try_lock_free(word: &AtomicU64, me: Owner) -> bool {
        Self::fast(word, me)
    }

    /// Releases the word if it is exactly `me` with no marks (one CAS);
    /// `false` in every other case ([`unlock`](Self::unlock) handles marks).
    #[inline]
    pub fn try_unlock_clean(word: &AtomicU64, me: Owner) -> bool {
        // SYNC: Release pairs with the Acquire CAS in `fast` /
        // `try_claim_free`, as in `unlock`.
        word.compare_exchange(me.bits(), 0, Ordering::Release, Ordering::Relaxed)
            .is_ok()
    }

    /// The uncontended path: the word is 0 (free, no marks) and we claim it.
    #[inline]
    fn fast(word: &AtomicU64, me: Owner) -> bool {
        // SYNC: Acquire pairs with the Release CAS in `unlock`.
        word.compare_exchange(0, me.bits(), Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Claims the word if it is unlocked (possibly with `DIED` set), adding
    /// `extra` flag bits.
    #[inline]
    fn try_claim_free(word: &AtomicU64, me: Owner, extra: u64) -> Option<Locked> {
        let cur = word.load(Ordering::Relaxed);
        if cur & TID_MASK != 0 {
            return None;
        }
        let new = me.bits() | (cur & DIED) | extra;
        // SYNC: Acquire pairs with the Release CAS in `unlock`.
        word.compare_exchange(cur, new, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| {
                if cur & DIED != 0 {
                    Locked::OwnerDied
                } else {
                    Locked::Clean
                }
            })
    }

    /// Takes the lock, sleeping on `waiter` while a live owner holds it and
    /// taking it over from a dead one (see the module docs).
    ///
    /// # Errors
    ///
    /// [`TimedOut`] if `deadline` passed first.
    #[inline]
    pub fn lock<W: Waiter, L: Liveness>(
        word: &AtomicU64,
        me: Owner,
        waiter: &W,
        live: &L,
        deadline: Option<Instant>,
    ) -> Result<Locked, TimedOut> {
        if Self::fast(word, me) {
            return Ok(Locked::Clean);
        }
        Self::lock_slow(word, me, waiter, live, deadline)
    }

    #[cold]
    fn lock_slow<W: Waiter, L: Liveness>(
        word: &AtomicU64,
        me: Owner,
        waiter: &W,
        live: &L,
        deadline: Option<Instant>,
    ) -> Result<Locked, TimedOut> {
        // Step 1: spin while the owner runs without sleepers.
        for round in 0..SPIN_ROUNDS {
            if let Some(how) = Self::try_claim_free(word, me, 0) {
                return Ok(how);
            }
            if word.load(Ordering::Relaxed) & WAITERS != 0 {
                break;
            }
            backoff(round);
        }
        // Step 2: sleep, announcing ourselves with WAITERS; once we slept we
        // claim the lock with WAITERS set, since others may still sleep.
        let mut poll = POLL_MIN;
        let mut slept = 0;
        loop {
            if let Some(how) = Self::try_claim_free(word, me, slept) {
                return Ok(how);
            }
            let cur = word.load(Ordering::Relaxed);
            let Some(owner) = Owner::of(cur) else {
                continue;
            };
            if cur & WAITERS == 0
                && word
                    .compare_exchange(cur, cur | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue; // the word moved: look again
            }
            let seen = cur | WAITERS;
            let Ok(left) = time_left(deadline) else {
                // Out of time: one last look at the owner, then give up.
                return Self::take_over_if_dead(word, seen, owner, me, live).ok_or(TimedOut);
            };
            let nap = left.map_or(poll, |l| l.min(poll));
            waiter.wait64(word, seen as u32, Some(nap));
            slept = WAITERS;
            if word.load(Ordering::Relaxed) == seen {
                // Nobody unlocked while we slept: a timeout (or a spurious
                // wake). Is the owner still there?
                if let Some(how) = Self::take_over_if_dead(word, seen, owner, me, live) {
                    return Ok(how);
                }
                poll = (poll * 2).min(POLL_MAX);
            }
        }
    }

    /// If `owner` (recorded in the word `seen`) is dead, claims the lock from
    /// exactly that word, with `DIED` set.
    fn take_over_if_dead<L: Liveness>(
        word: &AtomicU64,
        seen: u64,
        owner: Owner,
        me: Owner,
        live: &L,
    ) -> Option<Locked> {
        if owner == me || !live.is_dead(owner) {
            return None;
        }
        let new = me.bits() | DIED | WAITERS;
        // SYNC: Acquire: the dead owner never released, so there is no
        // Release to pair with; Acquire orders our reads of the data after the
        // claim (its writes reached memory before it died, or never will).
        word.compare_exchange(seen, new, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Locked::OwnerDied)
    }

    /// Releases the lock held by `me`, waking one sleeper if the word says
    /// there may be one. A `DIED` mark stays on the unlocked word.
    ///
    /// Does nothing if the word does not name `me` as its owner (a second
    /// release, or a stale guard after the lock was taken over): releasing
    /// someone else's lock would break their exclusion.
    ///
    /// # Safety
    ///
    /// The calling thread must be the one `me` describes, and should hold the
    /// lock.
    #[inline]
    pub unsafe fn unlock<W: Waiter>(word: &AtomicU64, me: Owner, waiter: &W) {
        const OWNER_BITS: u64 = !(DIED | WAITERS);
        let mut cur = word.load(Ordering::Relaxed);
        loop {
            if cur & OWNER_BITS != me.bits() {
                return;
            }
            // Keep DIED (it changes only under the lock); others may only
            // have added WAITERS, which a failed CAS makes us read again.
            // SYNC: Release pairs with the Acquire CAS in `fast` /
            // `try_claim_free`.
            match word.compare_exchange_weak(cur, cur & DIED, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    if cur & WAITERS != 0 {
                        waiter.wake64(word, 1);
                    }
                    return;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Clears `DIED`: the holder has repaired the data.
    ///
    /// # Safety
    ///
    /// The calling thread must hold the lock.
    #[inline]
    pub unsafe fn mark_consistent(word: &AtomicU64) {
        word.fetch_and(!DIED, Ordering::Relaxed);
    }

    /// The current owner, if the lock is held (a snapshot).
    #[inline]
    pub fn owner(word: &AtomicU64) -> Option<Owner> {
        Owner::of(word.load(Ordering::Relaxed))
    }

    /// Whether the word carries the `DIED` mark (a snapshot).
    #[inline]
    pub fn is_poisoned(word: &AtomicU64) -> bool {
        word.load(Ordering::Relaxed) & DIED != 0
    }
}
