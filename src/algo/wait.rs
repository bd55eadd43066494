//! What every algorithm core shares about waiting: the [`Waiter`] trait (the
//! futex contract, implemented for the kernel by `sys::futex::Futex` and for
//! loom by the models in `tests/loom_model`), the spin backoff, and deadline
//! arithmetic. No system call is made here.

use std::time::{Duration, Instant};

use crate::loom::atomic::{AtomicU32, AtomicU64};

/// Sleep-until-changed and wake-sleepers on a 32-bit word, the futex contract.
///
/// # Safety
///
/// Implementations must not return from [`wait`](Waiter::wait) *before*
/// another thread's [`wake`](Waiter::wake) when `*word == expected` held at the
/// time of the call and no timeout elapsed, except spuriously: callers re-check
/// the word in a loop, so spurious returns are allowed, but a wake issued
/// after the word changed must never be lost. Lock cores rely on this for
/// freedom from lost wake-ups.
pub unsafe trait Waiter {
    /// Sleeps while `*word == expected`, until woken, a spurious wake, or the
    /// timeout elapses. Returns without sleeping if the word already differs.
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>);
    /// Wakes up to `count` sleepers on `word`.
    fn wake(&self, word: &AtomicU32, count: u32);
    /// As [`wait`](Waiter::wait), on the low 32 bits of a 64-bit word (the
    /// robust lock word keeps its futex half there).
    fn wait64(&self, word: &AtomicU64, expected_low: u32, timeout: Option<Duration>);
    /// As [`wake`](Waiter::wake), on the low 32 bits of a 64-bit word.
    fn wake64(&self, word: &AtomicU64, count: u32);
}

/// The largest `count` a futex wake takes: the kernel reads the count as a
/// signed `int`, so `u32::MAX` would mean `-1` and wake just one sleeper.
pub const WAKE_ALL: u32 = i32::MAX as u32;

/// Spin rounds before sleeping: exponential backoff of `1, 2, 4, ...` pause
/// hints, as crossbeam's `Backoff::spin`, about a microsecond in all. Under
/// loom one round keeps models small.
#[cfg(not(loom))]
pub const SPIN_ROUNDS: u32 = 6;
#[cfg(loom)]
pub const SPIN_ROUNDS: u32 = 1;

/// Pauses for spin round `round` (`2^round` pause hints).
#[inline]
pub(crate) fn backoff(round: u32) {
    for _ in 0..(1u32 << round.min(16)) {
        crate::loom::spin_hint();
    }
}

/// Deadline `timeout` from now; `None` if it is too far to represent
/// (which then means "wait as long as it takes").
#[inline]
pub(crate) fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// What is left until `deadline`: `Ok(None)` without a deadline,
/// `Ok(Some(left))` before it, `Err(())` once it has passed.
#[inline]
pub(crate) fn time_left(deadline: Option<Instant>) -> Result<Option<Duration>, ()> {
    match deadline {
        None => Ok(None),
        Some(d) => match d.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(()),
        },
    }
}

/// Gives the CPU to another thread (under loom: lets the model schedule
/// another thread).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(not(loom))]
    std::thread::yield_now();
    #[cfg(loom)]
    loom::thread::yield_now();
}
