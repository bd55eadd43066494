//! A counting semaphore on two futex-sized words: the permit count (the futex
//! word sleepers wait on) and an exact count of announced waiters.
//!
//! The algorithm is the classic futex semaphore (as glibc's `sem_post` /
//! `sem_wait` with a separate `nwaiters`), with the two halves in separate
//! words so loom can model them:
//!
//! | word | meaning |
//! |---|---|
//! | `count` | permits available, `0..=max`; sleepers wait while it is `0` |
//! | `waiters` | acquirers that announced they may sleep; `release` wakes only if non-zero |
//!
//! An acquirer that finds no permit spins briefly, then increments `waiters`,
//! re-checks `count`, and sleeps on `count == 0`. A releaser adds permits,
//! then reads `waiters` and calls `wake` only when somebody announced. The two
//! "write one word, then read the other" sequences form a Dekker pair: with
//! every access `SeqCst`, either the releaser sees the waiter's announcement
//! (and wakes it) or the waiter sees the new permit (and does not sleep). The
//! futex's own compare-and-sleep covers the window between the waiter's
//! re-check and its sleep.
//!
//! A waiter that dies (SIGKILL) while announced leaves `waiters` one too high:
//! releases then make a spare `wake` system call, never a wrong result.

use std::time::Instant;

use crate::algo::wait::{SPIN_ROUNDS, WAKE_ALL, Waiter, backoff, time_left};
use crate::loom::atomic::{AtomicU32, Ordering};
use crate::loom::load_sc;

/// Operations on a semaphore's `count` and `waiters` words living anywhere
/// (heap or shared memory). A zero-sized namespace, like
/// [`RobustLock`](super::robust::RobustLock).
pub struct RawSemaphore;

impl RawSemaphore {
    /// Takes a permit if one is available. Never blocks, never makes a
    /// system call.
    #[inline]
    pub fn try_acquire(count: &AtomicU32) -> bool {
        // SYNC: this SeqCst read is the second half of the waiter's side of
        // the Dekker pair in `acquire_slow` (announce, then re-check); it
        // pairs with the SeqCst CAS on `count` in `release`.
        let mut c = load_sc(count);
        while c != 0 {
            // SYNC: the acquire half of this SeqCst CAS pairs with the release
            // half of the CAS in `release`: the releaser's writes before
            // its release are visible to us once we hold its permit.
            match count.compare_exchange_weak(c, c - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
        false
    }

    /// Takes a permit, sleeping on `waiter` while there is none.
    ///
    /// Returns `false` only if `deadline` passed first; with `None` it
    /// returns `true` once a permit is taken.
    #[inline]
    pub fn acquire<W: Waiter>(
        count: &AtomicU32,
        waiters: &AtomicU32,
        waiter: &W,
        deadline: Option<Instant>,
    ) -> bool {
        Self::try_acquire(count) || Self::acquire_slow(count, waiters, waiter, deadline)
    }

    #[cold]
    fn acquire_slow<W: Waiter>(
        count: &AtomicU32,
        waiters: &AtomicU32,
        waiter: &W,
        deadline: Option<Instant>,
    ) -> bool {
        // Step 1: spin a little; a holder is likely to release soon.
        for round in 0..SPIN_ROUNDS {
            backoff(round);
            if Self::try_acquire(count) {
                return true;
            }
        }
        // Step 2: announce ourselves, so that every later release wakes.
        // SYNC: first half of the waiter's side of the Dekker pair: this
        // SeqCst RMW, then the SeqCst read of `count` in `try_acquire`,
        // pair with the SeqCst CAS on `count`, then the SeqCst read of
        // `waiters`, in `release`. In the single total order one of the
        // two reads comes last and sees the other side's write.
        waiters.fetch_add(1, Ordering::SeqCst);
        let got = loop {
            // Step 3: re-check after announcing, and before each sleep; a
            // timed-out wake still takes a permit that is there, so a wake
            // meant for us is never wasted.
            if Self::try_acquire(count) {
                break true;
            }
            let Ok(timeout) = time_left(deadline) else {
                break false;
            };
            // Sleeps only while `count` is still 0: a release between the
            // re-check and here changed it, and the wait returns at once.
            waiter.wait(count, 0, timeout);
        };
        // Leaving: a release that still sees us makes one spare wake at most.
        waiters.fetch_sub(1, Ordering::Relaxed);
        got
    }

    /// Adds `n` permits unless that would take `count` above `max`; wakes up
    /// to `n` sleepers if any waiter announced itself.
    ///
    /// # Errors
    ///
    /// `Err(current)` (nothing changed) if `count + n` would exceed `max`:
    /// a bounded semaphore released more often than it was acquired, or a
    /// plain one (`max` = `u32::MAX`) about to overflow.
    #[inline]
    pub fn release<W: Waiter>(
        count: &AtomicU32,
        waiters: &AtomicU32,
        waiter: &W,
        n: u32,
        max: u32,
    ) -> Result<(), u32> {
        let mut c = count.load(Ordering::Relaxed);
        loop {
            let Some(new) = c.checked_add(n).filter(|&v| v <= max) else {
                return Err(c);
            };
            if new == c {
                // Nothing to add (n == 0): nobody to wake either.
                return Ok(());
            }
            // SYNC: the release half of this SeqCst CAS pairs with the acquire
            // half of the CAS in `try_acquire`; being SeqCst it is also the
            // write on our side of the Dekker pair with `acquire_slow`.
            match count.compare_exchange_weak(c, new, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        // SYNC: second half of our side of the Dekker pair (see
        // `acquire_slow`, Step 2): if this reads 0, every waiter announced
        // later re-checks `count` after our CAS and sees our permits.
        if load_sc(waiters) != 0 {
            waiter.wake(count, n.min(WAKE_ALL));
        }
        Ok(())
    }

    /// The number of permits available now (a snapshot).
    #[inline]
    pub fn value(count: &AtomicU32) -> u32 {
        count.load(Ordering::Relaxed)
    }
}
