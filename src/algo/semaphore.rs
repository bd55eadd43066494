//! A counting semaphore on a 64-bit word and a waiter count: the permit
//! count, and in the same word a bitmap of the permits that named holders
//! hold, so that taking or giving back a permit and recording who holds it
//! are one atomic step.
//!
//! The algorithm is the classic futex semaphore (as glibc's `sem_post` /
//! `sem_wait` with a separate `nwaiters`):
//!
//! | word | bits | meaning |
//! |---|---|---|
//! | `word` | 0..32 | permits available, `0..=max`; sleepers wait (on this half) while it is `0` |
//! | `word` | 32..64 | bit `32 + i`: holder-table slot `i` holds one permit ([`HELD_SLOTS`] slots) |
//! | `waiters` | all | acquirers that announced they may sleep; `release` wakes only if non-zero |
//!
//! An acquirer that finds no permit spins briefly, then increments
//! `waiters`, re-checks the count, and sleeps on the count's half of the
//! word while it is `0`. A releaser adds permits, then reads `waiters` and
//! calls `wake` only when somebody announced. The two "write one word, then
//! read the other" sequences form a Dekker pair: with every access
//! `SeqCst`, either the releaser sees the waiter's announcement (and wakes
//! it) or the waiter sees the new permit (and does not sleep). The futex's
//! own compare-and-sleep covers the window between the waiter's re-check
//! and its sleep.
//!
//! **Named holders.** A caller that wants its permit recorded first writes
//! its identity into a free slot `i` of a holder table kept next to the
//! word (the caller's business), then acquires with the *mark*
//! [`held_bit`]`(i)`: the CAS that takes the permit sets the bit. Giving
//! back clears it in the CAS that adds the permit. So at every instant a
//! set bit means "slot `i`'s holder holds a permit": a holder that dies
//! (SIGKILL at any instruction) either holds one with its bit set, or holds
//! none. A survivor that finds a set bit whose slot names a dead process
//! [takes the permit over](RawSemaphore::take_over) with one CAS that
//! clears that bit (and sets its own, if it records itself), leaving the
//! count alone: exactly one survivor wins each dead permit, and a bounded
//! semaphore never exceeds its bound.
//!
//! A waiter that dies (SIGKILL) while announced leaves `waiters` one too
//! high: releases then make a spare `wake` system call, never a wrong
//! result.

use std::time::Instant;

use crate::algo::wait::{SPIN_ROUNDS, WAKE_ALL, Waiter, backoff, time_left};
use crate::loom::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::loom::{load_sc, load_sc64};

/// The count's half of the word.
pub const COUNT_MASK: u64 = 0xffff_ffff;

/// Holder-table slots the word can mark.
pub const HELD_SLOTS: usize = 32;

/// The word bit that says slot `i` (below [`HELD_SLOTS`]) holds a permit;
/// 0 for any other `i` (an unrecorded permit).
#[inline]
pub fn held_bit(i: usize) -> u64 {
    if i < HELD_SLOTS { 1 << (32 + i) } else { 0 }
}

/// Operations on a semaphore's `word` and `waiters` living anywhere (heap or
/// shared memory). A zero-sized namespace, like
/// [`RobustLock`](super::robust::RobustLock).
pub struct RawSemaphore;

impl RawSemaphore {
    /// Takes a permit if one is available, setting the bits of `mark` (0:
    /// none) in the same CAS. Never blocks, never makes a system call.
    #[inline]
    pub fn try_acquire(word: &AtomicU64, mark: u64) -> bool {
        // SYNC: this SeqCst read is the second half of the waiter's side of
        // the Dekker pair in `acquire_slow` (announce, then re-check); it
        // pairs with the SeqCst CAS on `word` in `release`.
        let mut w = load_sc64(word);
        while w & COUNT_MASK != 0 {
            // SYNC: the acquire half of this SeqCst CAS pairs with the release
            // half of the CAS in `release`: the releaser's writes before
            // its release are visible to us once we hold its permit.
            match word.compare_exchange_weak(w, (w - 1) | mark, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(now) => w = now,
            }
        }
        false
    }

    /// Takes a permit (setting `mark`, as [`try_acquire`](Self::try_acquire)),
    /// sleeping on `waiter` while there is none.
    ///
    /// Returns `false` only if `deadline` passed first; with `None` it
    /// returns `true` once a permit is taken.
    #[inline]
    pub fn acquire<W: Waiter>(
        word: &AtomicU64,
        waiters: &AtomicU32,
        waiter: &W,
        deadline: Option<Instant>,
        mark: u64,
    ) -> bool {
        Self::try_acquire(word, mark) || Self::acquire_slow(word, waiters, waiter, deadline, mark)
    }

    #[cold]
    fn acquire_slow<W: Waiter>(
        word: &AtomicU64,
        waiters: &AtomicU32,
        waiter: &W,
        deadline: Option<Instant>,
        mark: u64,
    ) -> bool {
        // Step 1: spin a little; a holder is likely to release soon.
        for round in 0..SPIN_ROUNDS {
            backoff(round);
            if Self::try_acquire(word, mark) {
                return true;
            }
        }
        // Step 2: announce ourselves, so that every later release wakes.
        // SYNC: first half of the waiter's side of the Dekker pair: this
        // SeqCst RMW, then the SeqCst read of `word` in `try_acquire`,
        // pair with the SeqCst CAS on `word`, then the SeqCst read of
        // `waiters`, in `release`. In the single total order one of the
        // two reads comes last and sees the other side's write.
        waiters.fetch_add(1, Ordering::SeqCst);
        let got = loop {
            // Step 3: re-check after announcing, and before each sleep; a
            // timed-out wake still takes a permit that is there, so a wake
            // meant for us is never wasted.
            if Self::try_acquire(word, mark) {
                break true;
            }
            let Ok(timeout) = time_left(deadline) else {
                break false;
            };
            // Sleeps only while the count is still 0: a release between the
            // re-check and here changed it, and the wait returns at once.
            waiter.wait64(word, 0, timeout);
        };
        // Leaving: a release that still sees us makes one spare wake at most.
        waiters.fetch_sub(1, Ordering::Relaxed);
        got
    }

    /// Adds `n` permits and clears the bits of `unmark` (0: none), unless
    /// that would take the count above `max`; wakes up to `n` sleepers if
    /// any waiter announced itself.
    ///
    /// # Errors
    ///
    /// `Err(current count)` (nothing changed) if the count + `n` would
    /// exceed `max` (a bounded semaphore released more often than it was
    /// acquired, or a plain one, `max` = `u32::MAX`, about to overflow), or
    /// if some bit of `unmark` is not set (that permit is not the caller's
    /// any more: a survivor took it over).
    #[inline]
    pub fn release<W: Waiter>(
        word: &AtomicU64,
        waiters: &AtomicU32,
        waiter: &W,
        n: u32,
        max: u32,
        unmark: u64,
    ) -> Result<(), u32> {
        let mut w = word.load(Ordering::Relaxed);
        loop {
            let c = (w & COUNT_MASK) as u32;
            let Some(new) = c.checked_add(n).filter(|&v| v <= max) else {
                return Err(c);
            };
            if w & unmark != unmark {
                return Err(c);
            }
            if new == c && unmark == 0 {
                // Nothing to add (n == 0): nobody to wake either.
                return Ok(());
            }
            let next = (w & !COUNT_MASK & !unmark) | u64::from(new);
            // SYNC: the release half of this SeqCst CAS pairs with the acquire
            // half of the CAS in `try_acquire`; being SeqCst it is also the
            // write on our side of the Dekker pair with `acquire_slow`.
            match word.compare_exchange_weak(w, next, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        // SYNC: second half of our side of the Dekker pair (see
        // `acquire_slow`, Step 2): if this reads 0, every waiter announced
        // later re-checks the count after our CAS and sees our permits.
        if n > 0 && load_sc(waiters) != 0 {
            waiter.wake64(word, n.min(WAKE_ALL));
        }
        Ok(())
    }

    /// Takes over the permit that the bit `from` marks (its holder died):
    /// clears `from` and sets `to` (the caller's own mark, or 0) in one CAS,
    /// leaving the count alone. `false` if `from` is not set (nobody holds
    /// that permit, or another survivor took it first).
    #[inline]
    pub fn take_over(word: &AtomicU64, from: u64, to: u64) -> bool {
        let mut w = word.load(Ordering::Relaxed);
        while w & from == from && from != 0 {
            // SYNC: AcqRel: the Acquire half orders what the dead holder did
            // under its permit (as far as it got) before our use of it.
            match word.compare_exchange_weak(
                w,
                (w & !from) | to,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => w = now,
            }
        }
        false
    }

    /// The number of permits available now (a snapshot).
    #[inline]
    pub fn value(word: &AtomicU64) -> u32 {
        (word.load(Ordering::Relaxed) & COUNT_MASK) as u32
    }

    /// The held bitmap now (bit `i`: slot `i` holds a permit; a snapshot).
    #[inline]
    pub fn held(word: &AtomicU64) -> u32 {
        (word.load(Ordering::Relaxed) >> 32) as u32
    }
}
