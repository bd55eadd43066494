//! The one place that makes futex system calls.
//!
//! Lock cores never call the kernel themselves: they are generic over
//! [`Waiter`], so loom models can plug in a model of the futex and the shipped
//! build plugs in [`Futex`], the kernel's *shared* futex. A shared futex is
//! keyed by the physical page, so a waiter in one process is woken by a wake in
//! another as long as both map the same memfd or shm file. A *private* futex
//! (`FUTEX_PRIVATE_FLAG`) is keyed by the address space and would wake nobody
//! in another process: it is never used here.

use std::time::{Duration, Instant};

use crate::loom::atomic::{AtomicU32, AtomicU64, Ordering};

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

/// A `SeqCst` load, for the reading half of a Dekker pair.
///
/// loom treats `SeqCst` loads as `Acquire` (tokio-rs/loom#180) and would
/// report lost wake-ups the real memory model rules out; under loom this is
/// a `fetch_add(0)`, which, like every read-modify-write, reads the newest
/// value, as a `SeqCst` load ordered after a `SeqCst` write in the single
/// total order does.
#[inline]
pub(crate) fn load_sc(word: &AtomicU32) -> u32 {
    #[cfg(not(loom))]
    return word.load(Ordering::SeqCst);
    #[cfg(loom)]
    return word.fetch_add(0, Ordering::SeqCst);
}

/// [`load_sc`] for a 64-bit word (the queues' positions and stamps).
#[inline]
pub(crate) fn load_sc64(word: &AtomicU64) -> u64 {
    #[cfg(not(loom))]
    return word.load(Ordering::SeqCst);
    #[cfg(loom)]
    return word.fetch_add(0, Ordering::SeqCst);
}

/// A `SeqCst` store of a word the other side reads with [`load_sc64`] /
/// [`load_sc`], done as a swap: on x86-64 a `SeqCst` store is the same
/// `xchg` instruction, and under loom, where those reads are
/// `fetch_add(0)`, loom keeps the modification order of a word total only
/// between read-modify-writes (a plain store racing a `fetch_add(0)` could
/// be ordered after it while the RMW read the older value).
#[inline]
pub(crate) fn store_sc64(word: &AtomicU64, value: u64) {
    word.swap(value, Ordering::SeqCst);
}

/// Address of the low 32 bits of a 64-bit word.
#[cfg(not(loom))]
fn low_half(word: &AtomicU64) -> *const u32 {
    let p = word.as_ptr().cast::<u32>();
    #[cfg(target_endian = "little")]
    return p;
    #[cfg(target_endian = "big")]
    // SAFETY: the second half of an 8-byte word is in bounds.
    return unsafe { p.add(1) };
}

/// `FUTEX_WAIT` / `FUTEX_WAKE` (shared) on a raw address, for the 64-bit
/// words: Rust code only ever touches those words as `AtomicU64`; the kernel
/// reads the 32-bit half itself.
#[cfg(not(loom))]
fn raw_futex(addr: *const u32, op: libc::c_int, val: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    });
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `addr` points into a live, 4-aligned word of a mapping the
    // caller holds; FUTEX_WAIT reads it, FUTEX_WAKE only uses it as a key.
    // Errors (EAGAIN, EINTR, ETIMEDOUT) mean "look again" to every caller.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            addr,
            op,
            val,
            tsp,
            std::ptr::null::<u32>(),
            0,
        );
    }
}

/// The kernel's shared futex (`FUTEX_WAIT` / `FUTEX_WAKE` without
/// `FUTEX_PRIVATE_FLAG`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Futex;

#[cfg(not(loom))]
// SAFETY: FUTEX_WAIT compares and sleeps atomically with respect to FUTEX_WAKE
// on the same (shared, physical-page keyed) word: a wake after a change of the
// word is never lost (futex(2)).
unsafe impl Waiter for Futex {
    #[inline]
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        use rustix::thread::futex;
        let ts = timeout.map(|d| futex::Timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(d.subsec_nanos()),
        });
        // EAGAIN (the word changed), EINTR and ETIMEDOUT all mean "go and look
        // again": the caller loops on the word and its own deadline.
        let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
    }

    #[inline]
    fn wake(&self, word: &AtomicU32, count: u32) {
        use rustix::thread::futex;
        // Cannot fail for a valid, aligned word: the reference guarantees both.
        let _ = futex::wake(word, futex::Flags::empty(), count);
    }

    #[inline]
    fn wait64(&self, word: &AtomicU64, expected_low: u32, timeout: Option<Duration>) {
        raw_futex(low_half(word), libc::FUTEX_WAIT, expected_low, timeout);
    }

    #[inline]
    fn wake64(&self, word: &AtomicU64, count: u32) {
        raw_futex(low_half(word), libc::FUTEX_WAKE, count, None);
    }
}
