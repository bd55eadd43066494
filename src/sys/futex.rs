//! The one place that makes futex system calls.
//!
//! Algorithm cores never call the kernel themselves: they are generic over
//! [`Waiter`], so loom models can plug in a model of the futex and the
//! shipped build plugs in [`Futex`], the kernel's *shared* futex. A shared
//! futex is keyed by the physical page, so a waiter in one process is woken
//! by a wake in another as long as both map the same memfd or shm file. A
//! *private* futex (`FUTEX_PRIVATE_FLAG`) is keyed by the address space and
//! would wake nobody in another process: it is never used here.

use std::time::Duration;

use crate::algo::wait::Waiter;
use crate::loom::atomic::{AtomicU32, AtomicU64};

/// Address of the low 32 bits of a 64-bit word.
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
pub(crate) struct Futex;

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
