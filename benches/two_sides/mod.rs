//! Two sides started together, for the cross-process benches: a timing side
//! and its peer (a forked child or a thread) released at once by a shared
//! flag, with deadlines on every wait so no bench can hang; a shared page for
//! raw peers; and the pacing of the ping-pong benches (free-running, or
//! waiting until the other side really sleeps on its futex). Shared by
//! `benches/shm.rs`, `benches/sync.rs` and `benches/queue.rs` (each includes
//! this module and `tests/common` as `common`). Not every bench uses every
//! item.
//!
//! The submodules hold what only `benches/queue.rs` uses: spin waits and a
//! watchdog ([`waiting`]), the `spsc_throughput` runs ([`flow`]), the
//! `mpmc_throughput` runs ([`crowd`]), and the ping-pong peers and their
//! driver ([`pingpong`]).
#![allow(dead_code)]

pub mod crowd;
pub mod flow;
pub mod pingpong;
pub mod waiting;

use std::cell::{Cell, RefCell};
use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::{Duration, Instant};

use multiproc::AtomicValue;
use rustix::mm::{MapFlags, ProtFlags};

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

// --------------------------------------------------------------------------
// Shared memory for raw peers, and ping-pong pacing
// --------------------------------------------------------------------------

/// The size of one [`SharedPage`].
pub const PAGE: usize = 4096;

/// One zero-filled page mapped `MAP_SHARED | MAP_ANONYMOUS`: shared with
/// every child forked after it was made. Unmapped when the parent drops it
/// (a forked child leaves with `_exit` and never does).
pub struct SharedPage {
    ptr: NonNull<u8>,
}

impl SharedPage {
    /// Maps a fresh page.
    pub fn new() -> SharedPage {
        // SAFETY: a fresh mapping at an address of the kernel's choosing; it
        // overlaps nothing of ours.
        let p = unsafe {
            rustix::mm::mmap_anonymous(
                ptr::null_mut(),
                PAGE,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
            )
        }
        .expect("mmap MAP_SHARED|MAP_ANONYMOUS");
        SharedPage {
            ptr: NonNull::new(p.cast()).expect("mmap returned null"),
        }
    }

    /// A pointer to a `T` at byte `offset`, which must be aligned for `T`
    /// with `size_of::<T>()` bytes of the page after it.
    pub fn at<T>(&self, offset: usize) -> *mut T {
        assert!(offset.is_multiple_of(align_of::<T>()) && offset + size_of::<T>() <= PAGE);
        // SAFETY: in bounds of the page, checked above.
        unsafe { self.ptr.as_ptr().add(offset).cast() }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; whatever pointed into it lives in
        // the object that owns this page and is dropped with it.
        unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), PAGE) }.expect("munmap");
    }
}

// SAFETY: the page is plain shared memory; all access to it goes through
// process-shared locks or atomics (see the users below).
unsafe impl Send for SharedPage {}
// SAFETY: as above.
unsafe impl Sync for SharedPage {}

/// This process's voluntary context switches so far (each one a sleep in
/// the kernel, such as a futex wait that blocked).
pub fn voluntary_switches() -> u64 {
    let mut ru = MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: writes one rusage we own.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage");
    // SAFETY: initialised by the successful call (and zeroed before).
    u64::try_from(unsafe { ru.assume_init() }.ru_nvcsw).unwrap_or(0)
}

/// What a ping-pong side does around each signal and wake-up, and what a
/// run's time is: the wall time of the free-running ping-pong ([`Wall`]),
/// or the summed one-way wake-up latencies of the paced one ([`Latency`]).
pub trait Marks {
    /// At the start of a run, in each process, with the other's pid.
    fn start(&self, other: libc::pid_t);
    /// Right before a side signals the other.
    fn before_signal(&self);
    /// Right after a side's wait returned.
    fn after_wake(&self);
    /// What this process measured in the run (summed latencies, in ns).
    fn sum(&self) -> u64;
    /// The run's time from the parent's wall time and both sides' sums.
    fn time(&self, wall: Duration, sums: u64) -> Duration;
}

/// The free-running ping-pong: nothing around the signals; the time is the
/// parent's wall time.
pub struct Wall;

impl Marks for Wall {
    fn start(&self, _other: libc::pid_t) {}
    #[inline]
    fn before_signal(&self) {}
    #[inline]
    fn after_wake(&self) {}
    fn sum(&self) -> u64 {
        0
    }
    fn time(&self, wall: Duration, _sums: u64) -> Duration {
        wall
    }
}

/// The paced ping-pong: before each signal the signalling side waits until
/// the other side sleeps on a futex (its `/proc/<pid>/wchan` says so;
/// between looks it yields the CPU, in case both share one), then stamps
/// the time; the woken side adds (now - stamp) to its sum. The time is the
/// sum of both sides' wake-up latencies: the waits for the other to fall
/// asleep are not in it, and every wake-up timed is a real one.
pub struct Latency {
    /// A `CLOCK_MONOTONIC` origin both processes share (copied by fork).
    base: Instant,
    /// When the last signal was sent, in ns since `base`.
    sent: AtomicValue<u64>,
    /// This process's summed latencies (each process has its own copy).
    sum: Cell<u64>,
    /// `/proc/<pid>/wchan` of the other side (each process has its own).
    other_wchan: RefCell<String>,
}

impl Latency {
    pub fn new() -> Latency {
        Latency {
            base: Instant::now(),
            sent: AtomicValue::new(0).expect("AtomicValue::new"),
            sum: Cell::new(0),
            other_wchan: RefCell::new(String::new()),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

impl Marks for Latency {
    fn start(&self, other: libc::pid_t) {
        self.sum.set(0);
        *self.other_wchan.borrow_mut() = format!("/proc/{other}/wchan");
    }

    fn before_signal(&self) {
        let path = self.other_wchan.borrow();
        let deadline = Instant::now() + DEADLINE;
        loop {
            let wchan = std::fs::read_to_string(&*path).unwrap_or_default();
            if wchan.starts_with("futex") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the other side never slept on a futex (wchan {wchan:?})"
            );
            std::thread::yield_now();
        }
        // SYNC: Release pairs with the Acquire load in `after_wake` (the
        // signal itself also orders it).
        self.sent.store(self.now_ns(), Release);
    }

    #[inline]
    fn after_wake(&self) {
        let now = self.now_ns();
        // SYNC: Acquire pairs with the Release store in `before_signal`.
        let sent = self.sent.load(Acquire);
        self.sum.set(self.sum.get() + now.saturating_sub(sent));
    }

    fn sum(&self) -> u64 {
        self.sum.get()
    }

    fn time(&self, _wall: Duration, sums: u64) -> Duration {
        Duration::from_nanos(sums)
    }
}

/// The raw futex peer's words: two `u32` futex words in a shared page, one
/// per side, each a count of the round trips its side has been woken for.
/// Used by the raw futex ping-pongs of `benches/sync.rs` and
/// `benches/queue.rs`.
pub struct FutexPair {
    page: SharedPage,
}

impl FutexPair {
    /// Byte offsets of the two words, on different cache lines.
    const OFFSETS: [usize; 2] = [0, 128];

    pub fn new() -> FutexPair {
        FutexPair {
            page: SharedPage::new(),
        }
    }

    /// Word `i` (0 or 1) as an atomic.
    // The crate's own atomics go through `crate::loom`; this raw peer needs
    // an atomic on its own mmap'd word, which only std can give.
    #[allow(clippy::disallowed_types)]
    pub fn word(&self, i: usize) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: an aligned u32 inside the page, which lives as long as
        // `self`; every access to it, in every process, is atomic.
        unsafe { std::sync::atomic::AtomicU32::from_ptr(self.page.at(Self::OFFSETS[i])) }
    }

    /// Sets both words to 0 (with no other side running).
    pub fn reset(&self) {
        self.word(0).store(0, Relaxed);
        self.word(1).store(0, Relaxed);
    }

    /// Stores `value` into word `i` and wakes one sleeper on it
    /// (`FUTEX_WAKE`, shared: always one system call).
    #[inline]
    pub fn post(&self, i: usize, value: u32) {
        let w = self.word(i);
        // SYNC: Release pairs with the Acquire loads in `wait_for`.
        w.store(value, Release);
        // SAFETY: FUTEX_WAKE only uses the address of a live, aligned word
        // as a key.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                w.as_ptr(),
                libc::FUTEX_WAKE,
                1,
                ptr::null::<libc::timespec>(),
                ptr::null::<u32>(),
                0,
            );
        }
    }

    /// Waits until word `i` reads `target`: `spins` checks first, then
    /// `FUTEX_WAIT` (shared) while it still holds the old value. Returns
    /// false if one wait sleeps [`DEADLINE`] without a change.
    #[inline]
    pub fn wait_for(&self, i: usize, target: u32, spins: u32, timeout: &libc::timespec) -> bool {
        let w = self.word(i);
        for _ in 0..spins {
            // SYNC: Acquire pairs with the Release store in `post`.
            if w.load(Acquire) == target {
                return true;
            }
            std::hint::spin_loop();
        }
        loop {
            // SYNC: Acquire pairs with the Release store in `post`.
            let v = w.load(Acquire);
            if v == target {
                return true;
            }
            // SAFETY: FUTEX_WAIT reads a live, aligned word and sleeps while
            // it holds `v`; `timeout` is a valid relative timespec.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    w.as_ptr(),
                    libc::FUTEX_WAIT,
                    v,
                    timeout as *const libc::timespec,
                    ptr::null::<u32>(),
                    0,
                )
            };
            if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT) {
                return false;
            }
        }
    }
}
