//! Two sides started together, for the cross-process benches: a timing side
//! and its peer (a forked child or a thread) released at once by a shared
//! flag, with deadlines on every wait so no bench can hang. Shared by
//! `benches/shm.rs` and `benches/sync.rs` (each includes this module and
//! `tests/common` as `common`).

use std::sync::atomic::Ordering::{Acquire, Release};
use std::time::{Duration, Instant};

use multiproc::AtomicValue;

use crate::common;

/// How long any wait on the other process or thread may take before the
/// bench kills it and fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Start/finish flags between the timing side and its peer (a forked child
/// or a thread), each on its own cache line in shared memory.
pub struct Handshake {
    /// Set by the peer once it is running and about to wait for `go`.
    pub ready: AtomicValue<u32>,
    /// Set by the timing side right after it starts the clock.
    pub go: AtomicValue<u32>,
    /// Set by the peer after its work.
    pub done: AtomicValue<u32>,
}

impl Handshake {
    /// Three fresh flags, all clear.
    pub fn new() -> Handshake {
        let flag = || AtomicValue::new(0u32).expect("AtomicValue::new");
        Handshake {
            ready: flag(),
            go: flag(),
            done: flag(),
        }
    }

    /// Clears all flags for the next run.
    pub fn reset(&self) {
        self.ready.store(0, Release);
        self.go.store(0, Release);
        self.done.store(0, Release);
    }

    /// The peer's side: announce readiness, wait for `go`, run `work`, flag
    /// `done`. Returns false if `go` never came or `work` failed.
    pub fn peer(&self, work: impl FnOnce() -> bool) -> bool {
        self.ready.store(1, Release);
        if !wait_flag(&self.go, Instant::now() + DEADLINE) {
            return false;
        }
        let ok = work();
        self.done.store(1, Release);
        ok
    }
}

/// Spins until `flag` is set or `deadline` passes; returns whether it was
/// set. Spins hot at first (a start signal is seen within ~100 ns), then
/// yields the CPU between checks.
pub fn wait_flag(flag: &AtomicValue<u32>, deadline: Instant) -> bool {
    let mut spins = 0u32;
    loop {
        if flag.load(Acquire) != 0 {
            return true;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) {
            if Instant::now() >= deadline {
                return false;
            }
            if spins >= 1 << 16 {
                std::thread::yield_now();
            }
        }
        std::hint::spin_loop();
    }
}

/// One two-process run: forks a child that runs `work(per_side)` against
/// the parent's own `work(per_side)`, and returns the wall time from the
/// start signal until both are done. Fork and reaping are not timed. `work`
/// returns false if one of its timed waits ran out.
pub fn two_processes(hs: &Handshake, per_side: u64, work: &impl Fn(u64) -> bool) -> Duration {
    hs.reset();
    let child = common::fork(|| if hs.peer(|| work(per_side)) { 0 } else { 2 });
    let deadline = Instant::now() + DEADLINE;
    // A panic below drops `child`, which kills and reaps it.
    assert!(wait_flag(&hs.ready, deadline), "child never became ready");
    let start = Instant::now();
    hs.go.store(1, Release);
    let ok = work(per_side);
    let finished = wait_flag(&hs.done, start + DEADLINE);
    let elapsed = start.elapsed();
    assert!(ok, "the parent's lock waits ran past {DEADLINE:?}");
    assert!(
        finished,
        "child did not finish its increments within {DEADLINE:?}"
    );
    assert_eq!(child.join(), 0, "child failed");
    elapsed
}

/// One two-thread run: as [`two_processes`], with a scoped thread as the
/// peer. Spawning and joining are not timed.
pub fn two_threads(
    hs: &Handshake,
    per_side: u64,
    work: &(impl Fn(u64) -> bool + Sync),
) -> Duration {
    hs.reset();
    std::thread::scope(|s| {
        let peer = s.spawn(|| hs.peer(|| work(per_side)));
        let deadline = Instant::now() + DEADLINE;
        // On a panic here the scope still joins `peer`, which gives up
        // waiting for `go` at its own deadline.
        assert!(
            wait_flag(&hs.ready, deadline),
            "peer thread never became ready"
        );
        let start = Instant::now();
        hs.go.store(1, Release);
        let ok = work(per_side);
        let finished = wait_flag(&hs.done, start + DEADLINE);
        let elapsed = start.elapsed();
        assert!(
            ok && finished,
            "peer thread did not finish within {DEADLINE:?}"
        );
        assert!(peer.join().expect("peer thread panicked"));
        elapsed
    })
}

/// Runs `reset`, one timed two-sided run of `run`, and checks that
/// `total()` is exactly `2 * per_side` afterwards.
pub fn checked_run(
    per_side: u64,
    reset: impl Fn(),
    run: impl FnOnce(u64) -> Duration,
    total: impl Fn() -> u64,
) -> Duration {
    reset();
    let t = run(per_side);
    assert_eq!(total(), 2 * per_side, "increments were lost");
    t
}
