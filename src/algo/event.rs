//! An event flag (Python's `Event`) in one futex word.
//!
//! The word packs the flag, a "sleepers" bit and a count of sets:
//!
//! | bits | name | meaning |
//! |---|---|---|
//! | 0 | [`SET`] | the flag: `set` turns it on, `clear` off |
//! | 1 | [`SLEEPERS`] | someone may sleep on the word: the next `set` must wake |
//! | 2..32 | generation | how many times the flag went from clear to set (wrapping) |
//!
//! A waiter that finds the flag clear remembers the generation, spins a
//! little, then sets [`SLEEPERS`] with a CAS and sleeps while the word is
//! unchanged. `set` bumps the generation, turns the flag on and clears
//! [`SLEEPERS`] in one CAS, and wakes *all* sleepers only if the bit was on;
//! a `set` with nobody asleep is one CAS, no system call. Since every sleeper
//! is woken, clearing the bit is exact; any that must sleep again set it
//! again. Waiters return when the flag is on *or* the generation moved, so a
//! `set` quickly followed by `clear` still releases everybody who was
//! waiting, as with Python's `threading.Event` (a waiter that sleeps through
//! 2^30 set/clear cycles could miss them: the generation wraps).
//!
//! Everything happens on one word, so there is no ordering subtlety beyond
//! its modification order: a sleeper's CAS that sets [`SLEEPERS`] either
//! precedes `set`'s CAS (which then sees the bit and wakes) or fails against
//! it (and the waiter re-reads the word and returns).

use std::time::Instant;

use crate::algo::wait::{SPIN_ROUNDS, WAKE_ALL, Waiter, backoff, time_left};
use crate::loom::atomic::{AtomicU32, Ordering};

/// The flag.
pub const SET: u32 = 1;
/// Someone may sleep on the word; the next `set` wakes all.
pub const SLEEPERS: u32 = 2;
/// One step of the generation (bits 2..32).
const GEN_ONE: u32 = 4;
/// The generation bits.
const GEN_MASK: u32 = !(SET | SLEEPERS);

/// Operations on an event word living anywhere (heap or shared memory). A
/// zero-sized namespace, like [`RobustLock`](super::robust::RobustLock).
pub struct RawEvent;

impl RawEvent {
    /// Whether the flag is set (a snapshot).
    #[inline]
    pub fn is_set(word: &AtomicU32) -> bool {
        // SYNC: Acquire pairs with the Release CAS in `set`: a caller that
        // sees the flag sees what the setter wrote before setting it.
        word.load(Ordering::Acquire) & SET != 0
    }

    /// Sets the flag and wakes every waiter. No system call if nobody
    /// sleeps; nothing at all if the flag is already set.
    #[inline]
    pub fn set<W: Waiter>(word: &AtomicU32, waiter: &W) {
        let mut v = word.load(Ordering::Relaxed);
        loop {
            if v & SET != 0 {
                return;
            }
            let new = (v.wrapping_add(GEN_ONE) | SET) & !SLEEPERS;
            // SYNC: Release pairs with the Acquire loads in `is_set` and
            // `wait_slow`: a waiter released by this set sees our writes.
            match word.compare_exchange_weak(v, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => {
                    if v & SLEEPERS != 0 {
                        waiter.wake(word, WAKE_ALL);
                    }
                    return;
                }
                Err(now) => v = now,
            }
        }
    }

    /// Clears the flag. Never wakes anybody, never makes a system call.
    #[inline]
    pub fn clear(word: &AtomicU32) {
        // Relaxed: clearing publishes nothing. The RMW keeps the release
        // sequence of the last `set` unbroken, so a waiter that reads the
        // cleared word (with a new generation) still synchronises with it.
        word.fetch_and(!SET, Ordering::Relaxed);
    }

    /// Waits until the flag is set, or was set at some point since the call
    /// began. Returns `true` then, `false` if `deadline` passed first.
    #[inline]
    pub fn wait<W: Waiter>(word: &AtomicU32, waiter: &W, deadline: Option<Instant>) -> bool {
        // SYNC: Acquire pairs with the Release CAS in `set`.
        let v = word.load(Ordering::Acquire);
        v & SET != 0 || Self::wait_slow(word, waiter, v, deadline)
    }

    #[cold]
    fn wait_slow<W: Waiter>(
        word: &AtomicU32,
        waiter: &W,
        start: u32,
        deadline: Option<Instant>,
    ) -> bool {
        let generation = start & GEN_MASK;
        let fired = |v: u32| v & SET != 0 || v & GEN_MASK != generation;
        // Step 1: spin a little; a setter may be just about to set.
        for round in 0..SPIN_ROUNDS {
            backoff(round);
            // SYNC: Acquire pairs with the Release CAS in `set`.
            if fired(word.load(Ordering::Acquire)) {
                return true;
            }
        }
        // SYNC: Acquire pairs with the Release CAS in `set`.
        let mut v = word.load(Ordering::Acquire);
        loop {
            if fired(v) {
                return true;
            }
            let Ok(timeout) = time_left(deadline) else {
                return false;
            };
            // Step 2: announce a sleeper, unless the bit is already on. A
            // failed CAS means the word moved: look at it again.
            if v & SLEEPERS == 0 {
                // SYNC: Acquire (on failure too) pairs with the Release CAS
                // in `set`, for the value we then look at.
                match word.compare_exchange(v, v | SLEEPERS, Ordering::Acquire, Ordering::Acquire) {
                    Ok(_) => v |= SLEEPERS,
                    Err(now) => {
                        v = now;
                        continue;
                    }
                }
            }
            // Step 3: sleep while the word is exactly what we announced on.
            // A set in between changed it, and the wait returns at once.
            waiter.wait(word, v, timeout);
            // SYNC: Acquire pairs with the Release CAS in `set`.
            v = word.load(Ordering::Acquire);
        }
    }
}
