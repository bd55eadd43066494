//! A three-state futex mutex word (Drepper, "Futexes Are Tricky", 2011,
//! "Mutex, Take 3").
//!
//! This is the lock inside [`Value`](crate::Value) and [`Array`](crate::Array)
//! in the foundation release. It sleeps on a shared futex, so it works across
//! processes, and its unlock makes no system call when nobody sleeps. It does
//! **not** survive the death of its holder: a process killed while holding it
//! leaves it locked. The robust lock family replaces it.
//!
//! The word's states:
//!
//! | value | meaning |
//! |---|---|
//! | `0` | unlocked |
//! | `1` | locked, nobody sleeps |
//! | `2` | locked, someone may sleep: unlock must wake |
//!
//! A locker that has to sleep first swaps in `2`, so the holder's unlock sees
//! that it must wake. A waiter that wins the swap from `0` holds the lock in
//! state `2` (it cannot know whether others still sleep), which costs at most
//! one spare wake.

use std::time::Instant;

use super::futex::Waiter;
use crate::loom::atomic::{AtomicU32, Ordering};

/// Unlocked.
pub const UNLOCKED: u32 = 0;
/// Locked, no sleeper.
pub const LOCKED: u32 = 1;
/// Locked, sleepers possible.
pub const CONTENDED: u32 = 2;

/// Spin rounds before sleeping: exponential backoff of `1, 2, 4, ...` pause
/// hints, as crossbeam's `Backoff::spin`, about a microsecond in all. Under
/// loom one round keeps models small.
#[cfg(not(loom))]
const SPIN_ROUNDS: u32 = 6;
#[cfg(loom)]
const SPIN_ROUNDS: u32 = 1;

/// Operations on a simple lock word living anywhere (heap or shared memory).
///
/// A zero-sized namespace: the word itself is a plain [`AtomicU32`], so it can
/// sit in a `repr(C)` shared header.
pub struct SimpleLock;

impl SimpleLock {
    /// Takes the lock if it is free. Never blocks, never makes a system call.
    #[inline]
    pub fn try_lock(word: &AtomicU32) -> bool {
        // SYNC: Acquire pairs with the Release swap in `unlock`: the previous
        // holder's writes to the protected data are visible to us.
        word.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock, sleeping on `waiter` while it is held elsewhere.
    ///
    /// Returns `false` only if `deadline` passed first; with `None` it returns
    /// `true` once the lock is held.
    #[inline]
    pub fn lock<W: Waiter>(word: &AtomicU32, waiter: &W, deadline: Option<Instant>) -> bool {
        Self::try_lock(word) || Self::lock_slow(word, waiter, deadline)
    }

    #[cold]
    fn lock_slow<W: Waiter>(word: &AtomicU32, waiter: &W, deadline: Option<Instant>) -> bool {
        // Step 1: spin a little while the holder is likely to let go soon (state
        // LOCKED: it has no sleepers, so it is probably running).
        for round in 0..SPIN_ROUNDS {
            match word.load(Ordering::Relaxed) {
                UNLOCKED if Self::try_lock(word) => return true,
                CONTENDED => break,
                _ => {}
            }
            for _ in 0..(1u32 << round) {
                crate::loom::spin_hint();
            }
        }
        // Step 2: announce a sleeper by swapping in CONTENDED. Winning the swap
        // from UNLOCKED takes the lock (in state CONTENDED, conservatively).
        loop {
            // SYNC: Acquire pairs with the Release swap in `unlock`.
            if word.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                return true;
            }
            let timeout = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    // Leaving the word at CONTENDED is safe: the holder makes
                    // one spare wake at most.
                    _ => return false,
                },
            };
            // Sleeps only if the word is still CONTENDED; an unlock in between
            // changed it, and the wait returns at once.
            waiter.wait(word, CONTENDED, timeout);
        }
    }

    /// Releases the lock, waking one sleeper if the word says there may be one.
    ///
    /// # Safety
    ///
    /// The caller must hold the lock (a `true` from `lock`/`try_lock` not yet
    /// followed by `unlock`).
    #[inline]
    pub unsafe fn unlock<W: Waiter>(word: &AtomicU32, waiter: &W) {
        // SYNC: Release pairs with the Acquire in `try_lock` / `lock_slow`.
        if word.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            waiter.wake(word, 1);
        }
    }

    /// Whether the word says the lock is held (a snapshot, for diagnostics).
    #[cfg_attr(not(loom), allow(dead_code))]
    #[inline]
    pub fn is_locked(word: &AtomicU32) -> bool {
        word.load(Ordering::Relaxed) != UNLOCKED
    }
}
