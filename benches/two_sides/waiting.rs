//! Waiting helpers of the queue benches (`benches/queue.rs`): a spin wait
//! with a deadline, and a watchdog for the blocking calls that take none.

use std::time::Instant;

use super::DEADLINE;

// --------------------------------------------------------------------------
// Waiting helpers
// --------------------------------------------------------------------------

/// A spin wait with a deadline: hot at first, yielding the CPU between
/// checks after a long miss (the two sides may share one core).
pub struct Spin {
    spins: u32,
    deadline: Instant,
}

impl Spin {
    /// A spin that gives up [`DEADLINE`] from now.
    pub fn new() -> Spin {
        Spin {
            spins: 0,
            deadline: Instant::now() + DEADLINE,
        }
    }

    /// After a check that found nothing: pauses, and returns false once the
    /// deadline has passed.
    #[inline]
    pub fn miss(&mut self) -> bool {
        self.spins = self.spins.wrapping_add(1);
        if self.spins.is_multiple_of(1024) {
            if Instant::now() >= self.deadline {
                return false;
            }
            if self.spins >= 1 << 16 {
                std::thread::yield_now();
            }
        }
        std::hint::spin_loop();
        true
    }

    /// After a check that found what it waited for: the next wait starts
    /// hot again.
    #[inline]
    pub fn hit(&mut self) {
        self.spins = 0;
    }
}

/// Runs `f` with a watchdog thread that aborts the process (and so kills
/// every child, which dies with its parent) if `f` takes more than twice
/// [`DEADLINE`]: the blocking channel calls take no deadline of their own.
pub fn with_watchdog<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(2 * DEADLINE)
            {
                eprintln!("{what}: a run did not finish within {:?}", 2 * DEADLINE);
                std::process::abort();
            }
        });
        // On a panic in `f`, `done` is dropped while unwinding, which lets
        // the watchdog go.
        let r = f();
        drop(done);
        r
    })
}
