//! A cheap clock that every process on the machine reads alike, for the
//! times that shared memory records (when a pipe's peers were first seen
//! gone, say).

use rustix::time::{ClockId, clock_gettime};

/// Milliseconds of `CLOCK_MONOTONIC_COARSE` (the vDSO's tick-resolution
/// monotonic clock, a few ms coarse and a few ns to read): one count for
/// every process in the same time namespace.
pub(crate) fn coarse_ms() -> u64 {
    let t = clock_gettime(ClockId::MonotonicCoarse);
    (t.tv_sec as u64)
        .saturating_mul(1000)
        .saturating_add(t.tv_nsec as u64 / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_ms_moves_forward() {
        let a = coarse_ms();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let b = coarse_ms();
        assert!(b >= a + 20, "{a} then {b}");
    }
}
