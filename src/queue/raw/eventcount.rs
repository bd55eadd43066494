//! An eventcount: a blocking protocol for lock-free structures, on two
//! futex-sized words, with no system call (and no write to shared memory)
//! when nobody waits.
//!
//! The algorithm is Dmitry Vyukov's eventcount (as in Folly's
//! `EventCount` and Rust's `event-listener`), on a shared futex:
//!
//! | word | meaning |
//! |---|---|
//! | `seq` | bumped by a notifier that sees a waiter; sleepers wait while it is unchanged |
//! | `waiters` | threads announced as (about to be) asleep; a notifier bumps and wakes only when non-zero |
//!
//! A waiter first spins a little on its condition. Then it announces itself
//! (`waiters += 1`), reads `seq` as its *key*, re-checks the condition and
//! sleeps on `seq == key` only if the condition still fails; it withdraws
//! (`waiters -= 1`) when done. A notifier first changes the state the
//! condition reads (a queue's index, a closed flag) with a `SeqCst` store,
//! then reads `waiters`; only if somebody announced does it bump `seq` and
//! wake.
//!
//! No lost wake-up: "state store, then read `waiters`" against "announce,
//! then read the state" is a Dekker pair. With all four accesses `SeqCst`,
//! either the notifier sees the announcement (and bumps and wakes) or the
//! waiter's re-check sees the new state (and does not sleep). If the bump
//! comes after the waiter read its key, the futex's compare-and-sleep
//! returns at once or is woken; if before, the waiter's key read saw the
//! bump, which was made after the state change, so its re-check sees the
//! state too.
//!
//! Why not [`RawCondvar`](crate::sync::raw::condvar::RawCondvar): its
//! `notify` bumps the sequence on every call, an atomic read-modify-write on
//! a shared line per queue operation even when nobody waits; here the bump
//! happens only when the notifier sees a waiter, so the common path is one
//! load of a line that stays shared in every cache.

use std::time::Instant;

use crate::loom::atomic::{AtomicU32, Ordering};
use crate::sync::raw::futex::{SPIN_ROUNDS, WAKE_ALL, Waiter, backoff, load_sc, time_left};

/// The two words of an eventcount, living anywhere (heap or shared memory).
///
/// All-zero bytes are a valid, idle eventcount.
#[repr(C)]
#[derive(Debug)]
pub struct EventCount {
    /// Notification sequence: the futex word sleepers wait on.
    seq: AtomicU32,
    /// Announced waiters.
    waiters: AtomicU32,
}

impl Default for EventCount {
    fn default() -> Self {
        Self::new()
    }
}

impl EventCount {
    /// An idle eventcount (both words zero).
    pub fn new() -> Self {
        EventCount {
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// Wakes every waiter if anyone announced itself; otherwise does
    /// nothing at all (one load, no write, no system call).
    ///
    /// Call it *after* a `SeqCst` store (or read-modify-write) of the state
    /// that waiters' conditions read, and make those conditions read that
    /// state with `SeqCst` loads: the two form the Dekker pair described in
    /// the module documentation.
    #[inline]
    pub fn notify<W: Waiter>(&self, waiter: &W) {
        // SYNC: second half of the notifier's side of the Dekker pair (the
        // caller's SeqCst state store, then this SeqCst read); pairs with the
        // SeqCst announcement, then the SeqCst condition re-check, in
        // `wait_until`.
        if load_sc(&self.waiters) != 0 {
            self.notify_slow(waiter);
        }
    }

    #[cold]
    fn notify_slow<W: Waiter>(&self, waiter: &W) {
        // SYNC: the release half of this bump pairs with the SeqCst key read
        // in `wait_until`: a waiter whose key already includes the bump sees
        // the state change made before it.
        self.seq.fetch_add(1, Ordering::SeqCst);
        waiter.wake(&self.seq, WAKE_ALL);
    }

    /// Blocks until `ready()` returns `true` or `deadline` passes: spins a
    /// few rounds, then announces itself and sleeps between re-checks.
    ///
    /// Returns whether `ready()` returned `true` (`false`: the deadline
    /// passed first; with `None` it always returns `true` eventually, or
    /// never). `ready` must read the state its notifiers change with `SeqCst`
    /// loads (see [`notify`](Self::notify)); it is called again after every
    /// wake, so spurious wakes are harmless.
    #[inline]
    pub fn wait_until<W: Waiter>(
        &self,
        waiter: &W,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        // Step 1: spin a little; the other side is likely to be busy on
        // another core and about to change the state.
        for round in 0..SPIN_ROUNDS {
            if ready() {
                return true;
            }
            backoff(round);
        }
        // Step 2: announce ourselves, so that every later notify wakes us.
        // SYNC: first half of the waiter's side of the Dekker pair: this
        // SeqCst RMW, then the SeqCst reads inside `ready`, pair with the
        // notifier's SeqCst state store, then the SeqCst read of `waiters`,
        // in `notify`.
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let got = loop {
            // Step 3: take the key before re-checking, so that a notify after
            // the re-check changes `seq` and the sleep below returns at once.
            // SYNC: pairs with the SeqCst bump in `notify_slow`.
            let key = load_sc(&self.seq);
            if ready() {
                break true;
            }
            let Ok(timeout) = time_left(deadline) else {
                break false;
            };
            // Sleeps only while `seq == key`.
            waiter.wait(&self.seq, key, timeout);
        };
        // Leaving: a notifier that still sees us makes one spare bump and
        // wake at most. Relaxed: nothing is published through this word.
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        got
    }

    /// The number of announced waiters now (a snapshot, for tests and
    /// diagnostics).
    #[cfg_attr(not(loom), allow(dead_code))] // used by the loom models
    #[inline]
    pub fn waiters(&self) -> u32 {
        self.waiters.load(Ordering::Relaxed)
    }
}
