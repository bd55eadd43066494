//! A futex condition variable: a sequence word that sleepers wait on and
//! notifiers bump, plus a count of sleepers so that notifying nobody makes no
//! system call.
//!
//! A waiter, still holding the mutex, registers (`waiters += 1`) and reads
//! the sequence ([`RawCondvar::prepare`]); it releases the mutex, sleeps while
//! the sequence is unchanged ([`RawCondvar::sleep`]), re-locks and
//! deregisters ([`RawCondvar::finish`]). A notifier bumps the sequence, then
//! wakes if anyone is registered ([`RawCondvar::notify`]). Both sides use
//! SeqCst, so either the notifier sees the registration and wakes, or the
//! waiter read the bumped sequence before sleeping and the futex wait returns
//! at once: a notify issued after a waiter released its mutex is never lost.
//! Wakes may be spurious; callers loop on their predicate.

use std::time::Duration;

use crate::algo::wait::Waiter;
use crate::loom::atomic::{AtomicU32, Ordering};
use crate::loom::load_sc;

pub use crate::algo::wait::WAKE_ALL as ALL;

/// Operations on a condition variable's two words.
pub struct RawCondvar;

impl RawCondvar {
    /// Registers a waiter; call with the mutex held. Returns the sequence
    /// token to [`sleep`](Self::sleep) on.
    #[inline]
    pub fn prepare(seq: &AtomicU32, waiters: &AtomicU32) -> u32 {
        // SYNC: SeqCst with the SeqCst bump and load in `notify`: either the
        // notifier sees this registration, or we see its bump below.
        waiters.fetch_add(1, Ordering::SeqCst);
        load_sc(seq)
    }

    /// Sleeps while the sequence still equals `token` (after the caller
    /// released its mutex), until notified, timed out or woken spuriously.
    #[inline]
    pub fn sleep<W: Waiter>(seq: &AtomicU32, token: u32, waiter: &W, timeout: Option<Duration>) {
        waiter.wait(seq, token, timeout);
    }

    /// Whether a notification happened since [`prepare`](Self::prepare)
    /// returned `token`.
    #[inline]
    pub fn moved(seq: &AtomicU32, token: u32) -> bool {
        seq.load(Ordering::Acquire) != token
    }

    /// Deregisters a waiter (after it woke).
    #[inline]
    pub fn finish(waiters: &AtomicU32) {
        waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// Wakes up to `count` registered waiters; no system call if none.
    #[inline]
    pub fn notify<W: Waiter>(seq: &AtomicU32, waiters: &AtomicU32, waiter: &W, count: u32) {
        // SYNC: pairs with the SeqCst registration in `prepare`.
        seq.fetch_add(1, Ordering::SeqCst);
        if load_sc(waiters) != 0 {
            waiter.wake(seq, count);
        }
    }
}
