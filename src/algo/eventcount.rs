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
//! A waiter first spins a little on its condition, then yields its core a
//! few times (with more runnable processes than cores, the notifier may be
//! waiting for that core). Then it announces itself
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
//! Why not [`RawCondvar`](crate::algo::condvar::RawCondvar): its
//! `notify` bumps the sequence on every call, an atomic read-modify-write on
//! a shared line per queue operation even when nobody waits; here the bump
//! happens only when the notifier sees a waiter, so the common path is one
//! load of a line that stays shared in every cache.
//!
//! # Asymmetric fences
//!
//! The Dekker pair needs a store-load fence on both sides. With `SeqCst`
//! accesses the notifier pays for it on every notification (a locked
//! instruction that waits until its store owns the cache line, which the
//! other side is reading). [`notify_light`](EventCount::notify_light) and
//! [`wait_until_fenced`](EventCount::wait_until_fenced) move the whole cost
//! to the waiter, which is about to sleep anyway: the notifier's state store
//! is a plain `Release` store and its fence only a compiler fence (the
//! *light* barrier), and the waiter, after announcing itself, issues a
//! *heavy* barrier that makes every thread of every notifying process
//! execute a full fence (Linux `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`,
//! as Folly's `asymmetricHeavyBarrier` does within one process). Each
//! notifier's fence then falls somewhere in its program: before its state
//! store (so its later read of `waiters` sees the announcement), or after it
//! (so the store is visible to the waiter's re-check). A notifier that is not
//! running has passed through the scheduler's full fences, which the kernel
//! counts for it. This pairing (a compiler barrier in one thread against
//! `sys_membarrier` in another) is the one the kernel's `membarrier`
//! documents as ordered. The heavy barrier is injected (a closure), so the
//! algorithm stays free of system calls; loom models both barriers as
//! `SeqCst` fences.
//!
//! A waiter whose heavy barrier fails (the system call refused by this
//! process's seccomp filter, say) cannot trust a light notifier; it then
//! sleeps in slices of [`DEGRADED_SLICE`] and re-checks after each, so a
//! missed notification costs at most one slice, never a wake-up.
//!
//! A waiter whose heavy barrier succeeds still sleeps at most
//! [`FENCED_SLICE`] at a time. The argument above says it need not, yet on
//! the development machine (Linux 6.18 in a KVM guest) a blocking SPSC
//! ping-pong between a parent and a forked child stopped, 2 times in 10
//! two-minute stress runs, with an item in the ring, the waiter announced
//! and asleep, and no wake-up coming; fenced symmetrically it never did (20
//! runs). Until the cause is known, a missed light notification costs at
//! most one slice instead of a wait forever.

use std::time::{Duration, Instant};

use crate::algo::wait::{SPIN_ROUNDS, WAKE_ALL, Waiter, backoff, time_left};
use crate::loom::atomic::{AtomicU32, Ordering};
use crate::loom::load_sc;

/// The longest sleep of a waiter whose heavy barrier failed (see the module
/// documentation): the most a missed notification can delay it.
pub const DEGRADED_SLICE: Duration = Duration::from_millis(1);

/// The longest sleep of a waiter whose heavy barrier succeeded (see the
/// module documentation): the most a light notification that is missed all
/// the same can delay it, and the period at which an idle fenced waiter
/// looks again.
pub const FENCED_SLICE: Duration = Duration::from_millis(10);

/// Times a waiter yields its core, after spinning and before it sleeps
/// (see `wait`).
#[cfg(not(loom))]
const YIELD_ROUNDS: u32 = 4;

/// The light half of an asymmetric fence: keeps the compiler from moving
/// the notifier's read of `waiters` above its state store; the CPU may still
/// do so, and the waiter's heavy barrier covers that. Under loom, which has
/// no heavy barrier to pair with, a `SeqCst` fence (the two `SeqCst` fences
/// of the model then order the pair as the real barriers do).
#[inline]
fn light_barrier() {
    #[cfg(not(loom))]
    crate::loom::atomic::compiler_fence(Ordering::SeqCst);
    #[cfg(loom)]
    crate::loom::atomic::fence(Ordering::SeqCst);
}

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

    /// [`notify`](Self::notify) for a notifier on the light side of an
    /// asymmetric fence: call it right after a plain `Release` store of the
    /// state that waiters' conditions read, in a process whose threads take
    /// part in the heavy barrier that waiters pass to
    /// [`wait_until_fenced`](Self::wait_until_fenced). No locked instruction,
    /// no write, no system call when nobody waits.
    #[inline]
    pub fn notify_light<W: Waiter>(&self, waiter: &W) {
        light_barrier();
        // SYNC: the notifier's side of the asymmetric Dekker pair (the
        // caller's Release state store, the light barrier, this read);
        // pairs with the announcement, the heavy barrier, then the condition
        // re-check in `wait_until_fenced`. Relaxed: the heavy barrier, not
        // this load, orders the pair; what the waiter must see is published
        // by the bump in `notify_slow`.
        if self.waiters.load(Ordering::Relaxed) != 0 {
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
        ready: impl FnMut() -> bool,
    ) -> bool {
        self.wait(waiter, deadline, None, None::<fn() -> bool>, ready)
    }

    /// [`wait_until`](Self::wait_until) that sleeps once, at most `slice`
    /// (spinning first reads no clock): it also returns `false` when that
    /// sleep ends (slice over, a wake, or a spurious one) with `ready()`
    /// still false. For waiters that must look at something no notifier
    /// will tell them about (a claimant that died, in the MPMC ring) every
    /// so often.
    #[inline]
    pub fn wait_sliced<W: Waiter>(
        &self,
        waiter: &W,
        deadline: Option<Instant>,
        slice: Duration,
        ready: impl FnMut() -> bool,
    ) -> bool {
        self.wait(waiter, deadline, Some(slice), None::<fn() -> bool>, ready)
    }

    /// [`wait_until`](Self::wait_until) for a waiter whose notifiers may use
    /// [`notify_light`](Self::notify_light): after announcing itself it
    /// calls `heavy_barrier` once, which must make every thread of every
    /// process that notifies lightly execute a full fence, and return
    /// whether it did. If it did not, the waiter sleeps at most
    /// [`DEGRADED_SLICE`] at a time, and if it did, at most [`FENCED_SLICE`]
    /// (see the module documentation). `ready` may read the state with
    /// `Acquire` loads: the heavy barrier orders them after the
    /// announcement.
    #[inline]
    pub fn wait_until_fenced<W: Waiter>(
        &self,
        waiter: &W,
        deadline: Option<Instant>,
        heavy_barrier: impl FnOnce() -> bool,
        ready: impl FnMut() -> bool,
    ) -> bool {
        self.wait(waiter, deadline, None, Some(heavy_barrier), ready)
    }

    #[inline]
    fn wait<W: Waiter>(
        &self,
        waiter: &W,
        deadline: Option<Instant>,
        slice: Option<Duration>,
        heavy_barrier: Option<impl FnOnce() -> bool>,
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
        // Step 1b: give the core away a few times before sleeping: with
        // more runnable processes than cores, the one we wait for may be
        // waiting for our core, and a yield lets it run at the cost of one
        // system call, where a sleep costs a wake-up on both sides.
        #[cfg(not(loom))]
        for _ in 0..YIELD_ROUNDS {
            if ready() {
                return true;
            }
            std::thread::yield_now();
        }
        self.sleep(waiter, deadline, slice, heavy_barrier, ready)
    }

    #[cold]
    fn sleep<W: Waiter>(
        &self,
        waiter: &W,
        deadline: Option<Instant>,
        slice: Option<Duration>,
        heavy_barrier: Option<impl FnOnce() -> bool>,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        // A sliced wait ends at the slice's end if that comes first (the
        // clock is read here, once we know we sleep).
        let deadline = match slice {
            Some(s) => {
                let end = Instant::now() + s;
                Some(deadline.map_or(end, |d| d.min(end)))
            }
            None => deadline,
        };
        // Step 2: announce ourselves, so that every later notify wakes us.
        // SYNC: first half of the waiter's side of the Dekker pair: this
        // SeqCst RMW, then the SeqCst reads inside `ready`, pair with the
        // notifier's SeqCst state store, then the SeqCst read of `waiters`,
        // in `notify`. With asymmetric fences, the heavy barrier below comes
        // between this announcement and the reads in `ready` (pairs with the
        // Release state store, the light barrier and the read of `waiters`
        // in `notify_light`).
        self.waiters.fetch_add(1, Ordering::SeqCst);
        // Step 2b (asymmetric fences only): the heavy barrier, once: every
        // notifier's later read of `waiters` sees the announcement, or its
        // earlier state store is visible to every re-check below. If it
        // failed, a light notify may miss us: sleep in short slices; if it
        // succeeded, in longer ones all the same (see FENCED_SLICE).
        let longest_sleep = match heavy_barrier.map(|barrier| barrier()) {
            Some(false) => Some(DEGRADED_SLICE),
            Some(true) => Some(FENCED_SLICE),
            None => None,
        };
        let mut slept = false;
        let got = loop {
            // Step 3: take the key before re-checking, so that a notify after
            // the re-check changes `seq` and the sleep below returns at once.
            // SYNC: pairs with the SeqCst bump in `notify_slow`.
            let key = load_sc(&self.seq);
            if ready() {
                break true;
            }
            if slept && slice.is_some() {
                break false;
            }
            let Ok(timeout) = time_left(deadline) else {
                break false;
            };
            let timeout = match (timeout, longest_sleep) {
                (Some(t), Some(s)) => Some(t.min(s)),
                (t, s) => t.or(s),
            };
            // Sleeps only while `seq == key`.
            waiter.wait(&self.seq, key, timeout);
            slept = true;
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::loom::atomic::AtomicU64;
    use std::sync::{Condvar, Mutex};

    /// A futex on the heap, for one process: sleeps while the word holds
    /// the expected value, until a wake or the timeout, as `FUTEX_WAIT`.
    #[derive(Default)]
    struct Futex {
        lock: Mutex<()>,
        woken: Condvar,
    }

    // SAFETY: the word is checked under `lock`, and `wake` notifies under
    // it, so a wake after a change of the word is never lost.
    unsafe impl Waiter for Futex {
        fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
            let held = self.lock.lock().unwrap();
            if word.load(Ordering::SeqCst) != expected {
                return;
            }
            match timeout {
                Some(t) => drop(self.woken.wait_timeout(held, t).unwrap()),
                None => drop(self.woken.wait(held).unwrap()),
            }
        }
        fn wake(&self, _: &AtomicU32, _: u32) {
            let _held = self.lock.lock().unwrap();
            self.woken.notify_all();
        }
        fn wait64(&self, _: &AtomicU64, _: u32, _: Option<Duration>) {
            unreachable!("the eventcount waits on 32-bit words")
        }
        fn wake64(&self, _: &AtomicU64, _: u32) {
            unreachable!("the eventcount waits on 32-bit words")
        }
    }

    /// A fenced waiter whose notification never comes (the state changes
    /// with no notify at all, as when a light notification is missed)
    /// still sees the change, after at most a slice, even with no
    /// deadline of its own.
    #[test]
    fn fenced_waiter_sees_an_unnotified_change() {
        let ec = EventCount::new();
        let futex = Futex::default();
        let state = AtomicU32::new(0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let woke = ec.wait_until_fenced(
                    &futex,
                    None,
                    || true,
                    || state.load(Ordering::Acquire) != 0,
                );
                let _ = tx.send(woke);
            });
            // Let the waiter announce itself and sleep, then change the
            // state behind its back.
            while ec.waiters() == 0 {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_millis(20));
            state.store(1, Ordering::Release);
            let got = rx.recv_timeout(Duration::from_secs(30));
            if got.is_err() {
                // Free the waiter so that the scope can end, then fail.
                ec.notify(&futex);
            }
            assert_eq!(got, Ok(true), "the waiter never looked again");
        });
    }
}
