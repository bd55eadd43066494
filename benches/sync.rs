//! Criterion benches for the process-shared locks and blocking primitives
//! (`Mutex`, `Lock`, `RLock`, `Event`, `Semaphore`).
//!
//! Run with
//!
//! ```text
//! cargo bench --bench sync                            # everything, about 2 minutes
//! cargo bench --bench sync -- lock_contended_2proc    # one group
//! cargo test --bench sync                             # each bench once (CI smoke run)
//! python3 benches/python/sync_locks.py                # the CPython figures
//! ```
//!
//! Each group measures our primitive next to peers that do the same work
//! without this crate, in the same run, so the ratios between them come from
//! one machine state. `benches/python/sync_locks.py` prints the CPython
//! `multiprocessing` figures under the same names (`lock_uncontended`,
//! `lock_contended_2proc`; its `event_pingpong_2proc` and
//! `semaphore_pingpong_2proc` pair with `pingpong_2proc` below).
//!
//! * `lock_uncontended`: lock and unlock with no contention, one thread.
//!   Contestants: [`Mutex<u64>`] (`*m.lock().unwrap() += 1`), [`Lock`]
//!   (lock, drop the guard) and [`RLock`] (the same; its peer is
//!   parking_lot's `ReentrantMutex`). Peers:
//!   `parking_lot::Mutex<u64>`, `std::sync::Mutex<u64>`, and a pthread mutex
//!   made `PTHREAD_PROCESS_SHARED` in a `MAP_SHARED` page (all `+= 1`), and a
//!   process-shared POSIX `sem_t` used as a lock (`sem_wait` + `sem_post`:
//!   what Python's `multiprocessing.Lock` is). SPEC goal: `Mutex` ≤ 1.5×
//!   `parking_lot`.
//! * `lock_contended_2proc`: two processes (a `fork`ed child and the parent)
//!   each add 1 to a plain counter under one lock N times at once; the time is
//!   the wall time of all 2N increments, and the throughput line (elem/s)
//!   counts single increments, so its inverse is the time per increment.
//!   Contestant: [`Mutex<u64>`]. Peers, each in one `MAP_SHARED` page with
//!   its counter in the lock's cache line (as `Mutex<u64>` keeps it): a
//!   pthread mutex initialised `PTHREAD_PROCESS_SHARED`, and a `sem_t`
//!   (`sem_init(pshared = 1, 1)`, `sem_wait`/`sem_post`). So that no run can
//!   hang on a peer lock whose holder died, the peers lock with
//!   `pthread_mutex_timedlock` / `sem_timedwait` against one absolute
//!   deadline computed per run (glibc's fast and slow paths are those of
//!   `pthread_mutex_lock` / `sem_wait`, with no clock read per call); ours
//!   uses the plain `lock()`, which recovers from a dead holder. Reference:
//!   `std::sync::Mutex<u64>` between two threads. SPEC goal: `Mutex` ≥ the
//!   pthread mutex (throughput).
//! * `pingpong_2proc` and `wakeup_latency_2proc`: a ping-pong between two
//!   processes; the time is per round trip (two hand-offs). Contestants: an
//!   [`Event`] pair (A sets `e1`, waits `e2`, clears it; B waits `e1`,
//!   clears it, sets `e2`) and a [`Semaphore`] pair at 0 (A releases `s1`
//!   and acquires `s2`; B the other way round). Peers: a raw futex
//!   ping-pong on two `u32` words in a `MAP_SHARED` page: each side bumps
//!   the other's word, `FUTEX_WAKE`s it (always: one system call), and
//!   `FUTEX_WAIT`s (shared, no `FUTEX_PRIVATE_FLAG`) while its own word is
//!   unchanged; once with no spinning ("raw futex, no spin") and once
//!   checking its word 100 times first ("raw futex, spin 100 then wait"),
//!   as our primitives spin briefly (6 checks, 63 pause hints) before they
//!   sleep.
//!   - `pingpong_2proc` runs free, as Python's `event_pingpong_2proc` and
//!     `semaphore_pingpong_2proc` do: the time is the parent's wall time. A
//!     side whose spin catches the answer does not sleep at all, so these
//!     figures are bimodal (both sides spinning: well under a microsecond;
//!     both sleeping: a few microseconds) and move a lot between runs.
//!   - `wakeup_latency_2proc` measures the futex path only: before each
//!     signal the signalling side waits (untimed) until the other sleeps in
//!     a futex wait, per its `/proc/<pid>/wchan`, then stamps the clock;
//!     the woken side adds now - stamp (both read one `CLOCK_MONOTONIC`).
//!     The time is the sum of the two one-way wake-up latencies of a round
//!     trip, from the call that signals until the woken side's wait
//!     returns. Spinning cannot help here, so the two raw variants should
//!     agree. SPEC goal: ours ≤ 1.3× the raw futex ping-pong, compared
//!     against "raw futex, no spin" (the pure futex path).
//!
//!   The sanity run before each prints the round trip and how often the
//!   child slept in the kernel per round trip (voluntary context switches):
//!   1.00 in `wakeup_latency_2proc` by construction.
//!
//! Forks and thread spawns are outside the timed regions; each
//! `iter_custom` call forks once and releases both sides with a shared start
//! flag. Every wait has a deadline (30 s) after which the bench fails and
//! the child is killed; children leave with `_exit` and die with the parent
//! (`tests/common`). Every bench checks its result once before it is
//! measured. The machines this runs on are small and shared, so samples are
//! few and short; compare medians within one run rather than across runs.

#[path = "../tests/common/mod.rs"]
mod common;
mod two_sides;

use two_sides::{
    DEADLINE, FutexPair, Handshake, Latency, Marks, SharedPage, Wall, checked_run, two_processes,
    two_threads, voluntary_switches, wait_flag,
};

use std::hint::black_box;
use std::mem::MaybeUninit;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};
use multiproc::{AtomicValue, Event, Lock, Mutex, RLock, Semaphore};

/// Increments each side does per criterion iteration in
/// `lock_contended_2proc`.
const INCR_PER_SIDE: u64 = 1_000;

/// Increments per side in the sanity run before each contended bench: more
/// than one iteration, so the two sides really overlap.
const SANITY_INCR: u64 = 50_000;

/// Round trips in the sanity run before each ping-pong bench.
const SANITY_ROUNDS: u64 = 2_000;

/// Checks of its word the spinning raw futex peer makes before it sleeps.
const RAW_SPINS: u32 = 100;

// --------------------------------------------------------------------------
// Shared memory for the raw peers
// --------------------------------------------------------------------------

/// Panics with `what` and the error number if a pthread call failed.
fn check(rc: libc::c_int, what: &str) {
    assert!(
        rc == 0,
        "{what} failed: {}",
        std::io::Error::from_raw_os_error(rc)
    );
}

/// `CLOCK_REALTIME` now + `d`: the absolute deadline the timed pthread and
/// semaphore calls take.
fn realtime_deadline(d: Duration) -> libc::timespec {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec we own.
    check(
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) },
        "clock_gettime",
    );
    let nsec = now.tv_nsec + libc::c_long::from(d.subsec_nanos() as i32);
    libc::timespec {
        tv_sec: now.tv_sec + d.as_secs() as libc::time_t + nsec / 1_000_000_000,
        tv_nsec: nsec % 1_000_000_000,
    }
}

/// A pthread mutex with `PTHREAD_PROCESS_SHARED` at the start of a shared
/// page, and a `u64` counter it guards in the same cache line.
struct PthreadMutex {
    page: SharedPage,
}

impl PthreadMutex {
    /// Offset of the counter: right after the 40-byte `pthread_mutex_t`.
    const COUNTER: usize = 48;

    fn new() -> PthreadMutex {
        assert!(size_of::<libc::pthread_mutex_t>() <= Self::COUNTER);
        let page = SharedPage::new();
        let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is initialised by the first call before the others
        // use it; the mutex is placed in our fresh page, aligned, and
        // initialised once before anyone locks it.
        unsafe {
            check(
                libc::pthread_mutexattr_init(attr.as_mut_ptr()),
                "pthread_mutexattr_init",
            );
            check(
                libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED),
                "pthread_mutexattr_setpshared",
            );
            check(
                libc::pthread_mutex_init(page.at(0), attr.as_ptr()),
                "pthread_mutex_init",
            );
            libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
        }
        PthreadMutex { page }
    }

    fn raw(&self) -> *mut libc::pthread_mutex_t {
        self.page.at(0)
    }

    #[inline]
    fn lock(&self) {
        // SAFETY: an initialised process-shared mutex in a live mapping.
        let rc = unsafe { libc::pthread_mutex_lock(self.raw()) };
        check(rc, "pthread_mutex_lock");
    }

    /// Locks, or returns false once `until` (`CLOCK_REALTIME`) has passed.
    #[inline]
    fn lock_until(&self, until: &libc::timespec) -> bool {
        // SAFETY: as in `lock`; `until` is a valid timespec.
        let rc = unsafe { libc::pthread_mutex_timedlock(self.raw(), until) };
        if rc == libc::ETIMEDOUT {
            return false;
        }
        check(rc, "pthread_mutex_timedlock");
        true
    }

    /// # Safety
    ///
    /// The calling thread holds the mutex.
    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: the caller holds it.
        let rc = unsafe { libc::pthread_mutex_unlock(self.raw()) };
        check(rc, "pthread_mutex_unlock");
    }

    /// Adds 1 to the counter.
    ///
    /// # Safety
    ///
    /// The calling thread holds the mutex.
    #[inline]
    unsafe fn incr(&self) {
        let c = self.page.at::<u64>(Self::COUNTER);
        // SAFETY: the counter is in bounds and aligned, and only touched by
        // holders of the mutex, whose lock/unlock order these accesses.
        unsafe { c.write_volatile(c.read_volatile() + 1) };
    }

    /// The counter (take no lock: call with no other side running).
    fn count(&self) -> u64 {
        // SAFETY: as in `incr`; nobody else runs.
        unsafe { self.page.at::<u64>(Self::COUNTER).read_volatile() }
    }

    /// Sets the counter to 0 (with no other side running).
    fn reset(&self) {
        // SAFETY: as in `count`.
        unsafe { self.page.at::<u64>(Self::COUNTER).write_volatile(0) }
    }
}

impl Drop for PthreadMutex {
    fn drop(&mut self) {
        // SAFETY: an initialised, unlocked mutex nobody uses any more (the
        // children that shared it have been reaped).
        unsafe { libc::pthread_mutex_destroy(self.raw()) };
    }
}

/// A process-shared POSIX semaphore (`sem_init(pshared = 1, 1)`) used as a
/// lock, as Python's `multiprocessing.Lock` does, at the start of a shared
/// page, and a `u64` counter it guards in the same cache line.
struct SemLock {
    page: SharedPage,
}

impl SemLock {
    /// Offset of the counter: right after the 32-byte `sem_t`.
    const COUNTER: usize = 32;

    fn new() -> SemLock {
        assert!(size_of::<libc::sem_t>() <= Self::COUNTER);
        let page = SharedPage::new();
        // SAFETY: the semaphore is placed in our fresh page, aligned, and
        // initialised once before anyone uses it.
        let rc = unsafe { libc::sem_init(page.at(0), 1, 1) };
        assert!(rc == 0, "sem_init: {}", std::io::Error::last_os_error());
        SemLock { page }
    }

    fn raw(&self) -> *mut libc::sem_t {
        self.page.at(0)
    }

    #[inline]
    fn wait(&self) {
        // SAFETY: an initialised process-shared semaphore in a live mapping.
        while unsafe { libc::sem_wait(self.raw()) } != 0 {
            let e = std::io::Error::last_os_error();
            assert!(e.raw_os_error() == Some(libc::EINTR), "sem_wait: {e}");
        }
    }

    /// Takes the semaphore, or returns false once `until`
    /// (`CLOCK_REALTIME`) has passed.
    #[inline]
    fn wait_until(&self, until: &libc::timespec) -> bool {
        // SAFETY: as in `wait`; `until` is a valid timespec.
        while unsafe { libc::sem_timedwait(self.raw(), until) } != 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::ETIMEDOUT) => return false,
                _ => panic!("sem_timedwait: {e}"),
            }
        }
        true
    }

    #[inline]
    fn post(&self) {
        // SAFETY: as in `wait`.
        let rc = unsafe { libc::sem_post(self.raw()) };
        assert!(rc == 0, "sem_post: {}", std::io::Error::last_os_error());
    }

    /// Adds 1 to the counter.
    ///
    /// # Safety
    ///
    /// The calling thread holds the semaphore.
    #[inline]
    unsafe fn incr(&self) {
        let c = self.page.at::<u64>(Self::COUNTER);
        // SAFETY: the counter is in bounds and aligned, and only touched by
        // holders of the semaphore, whose wait/post order these accesses.
        unsafe { c.write_volatile(c.read_volatile() + 1) };
    }

    /// The counter (with no other side running).
    fn count(&self) -> u64 {
        // SAFETY: as in `incr`; nobody else runs.
        unsafe { self.page.at::<u64>(Self::COUNTER).read_volatile() }
    }

    /// Sets the counter to 0 (with no other side running).
    fn reset(&self) {
        // SAFETY: as in `count`.
        unsafe { self.page.at::<u64>(Self::COUNTER).write_volatile(0) }
    }

    /// The semaphore's value.
    fn value(&self) -> i32 {
        let mut v = 0;
        // SAFETY: as in `wait`; writes one int we own.
        unsafe { libc::sem_getvalue(self.raw(), &mut v) };
        v
    }
}

impl Drop for SemLock {
    fn drop(&mut self) {
        // SAFETY: an initialised semaphore nobody waits on any more.
        unsafe { libc::sem_destroy(self.raw()) };
    }
}

// --------------------------------------------------------------------------
// lock_uncontended
// --------------------------------------------------------------------------

/// `lock_uncontended`: one thread locking and unlocking our locks vs
/// parking_lot, std, a process-shared pthread mutex and a `sem_t`.
fn lock_uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("lock_uncontended");

    let m = Mutex::new(0u64).expect("Mutex::new");
    *m.lock().unwrap() += 1;
    assert_eq!(*m.lock().unwrap(), 1);
    g.bench_function("Mutex<u64> lock += 1", |b| {
        b.iter(|| *black_box(&m).lock().unwrap() += 1);
    });

    let l = Lock::new().expect("Lock::new");
    {
        let guard = l.lock().unwrap();
        assert!(l.try_lock().is_err(), "Lock not held while locked");
        drop(guard);
    }
    assert!(l.try_lock().is_ok(), "Lock still held after unlock");
    g.bench_function("Lock lock+unlock", |b| {
        b.iter(|| drop(black_box(&l).lock().unwrap()));
    });

    let r = RLock::new().expect("RLock::new");
    {
        let outer = r.lock().unwrap();
        let inner = r.lock().unwrap();
        assert_eq!(r.count(), 2);
        drop(inner);
        drop(outer);
    }
    assert_eq!(r.count(), 0);
    g.bench_function("RLock lock+unlock", |b| {
        b.iter(|| drop(black_box(&r).lock().unwrap()));
    });

    let prm = parking_lot::ReentrantMutex::new(0u64);
    {
        let outer = prm.lock();
        let inner = prm.lock();
        assert_eq!((*outer, *inner), (0, 0));
    }
    g.bench_function("parking_lot ReentrantMutex lock+unlock", |b| {
        b.iter(|| drop(black_box(&prm).lock()));
    });

    let pl = parking_lot::Mutex::new(0u64);
    *pl.lock() += 1;
    assert_eq!(*pl.lock(), 1);
    g.bench_function("parking_lot Mutex<u64> lock += 1", |b| {
        b.iter(|| *black_box(&pl).lock() += 1);
    });

    let sm = std::sync::Mutex::new(0u64);
    *sm.lock().unwrap() += 1;
    assert_eq!(*sm.lock().unwrap(), 1);
    g.bench_function("std Mutex<u64> lock += 1", |b| {
        b.iter(|| *black_box(&sm).lock().unwrap() += 1);
    });

    let pm = PthreadMutex::new();
    let pthread_incr = |pm: &PthreadMutex| {
        pm.lock();
        // SAFETY: locked just above.
        unsafe {
            pm.incr();
            pm.unlock();
        }
    };
    pthread_incr(&pm);
    assert_eq!(pm.count(), 1);
    g.bench_function("pthread mutex (pshared) lock += 1", |b| {
        b.iter(|| pthread_incr(black_box(&pm)));
    });

    let sem = SemLock::new();
    let sem_pair = |s: &SemLock| {
        s.wait();
        s.post();
    };
    sem_pair(&sem);
    assert_eq!(sem.value(), 1);
    g.bench_function("sem_t (pshared) wait+post", |b| {
        b.iter(|| sem_pair(black_box(&sem)));
    });

    g.finish();
}

// --------------------------------------------------------------------------
// Two sides, started together
// --------------------------------------------------------------------------

// --------------------------------------------------------------------------
// lock_contended_2proc
// --------------------------------------------------------------------------

/// Benches `name`: two sides (`run`) each doing `per_side` increments per
/// iteration, after one checked sanity run.
fn bench_incr(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    reset: impl Fn(),
    run: impl Fn(u64) -> Duration,
    total: impl Fn() -> u64,
) {
    checked_run(SANITY_INCR, &reset, &run, &total);
    g.bench_function(name, |b| {
        b.iter_custom(|iters| checked_run(iters * INCR_PER_SIDE, &reset, &run, &total));
    });
}

/// `lock_contended_2proc`: two processes incrementing a counter under one
/// lock: ours vs a process-shared pthread mutex and `sem_t` (and std's
/// `Mutex` between two threads).
fn lock_contended_2proc(c: &mut Criterion) {
    let mut g = c.benchmark_group("lock_contended_2proc");
    // One fork per sample: many short samples let the median ride over the
    // scheduler noise of a small machine.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(60)
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(2 * INCR_PER_SIDE));
    let hs = Handshake::new();

    let m = Mutex::new(0u64).expect("Mutex::new");
    let mutex_incr = |n: u64| {
        for _ in 0..n {
            *m.lock().unwrap() += 1;
        }
        true
    };
    bench_incr(
        &mut g,
        "Mutex<u64> lock += 1 2proc",
        || *m.lock().unwrap() = 0,
        |n| two_processes(&hs, n, &mutex_incr),
        || *m.lock().unwrap(),
    );

    let pm = PthreadMutex::new();
    let pthread_incr = |n: u64| {
        let until = realtime_deadline(DEADLINE);
        for _ in 0..n {
            if !pm.lock_until(&until) {
                return false;
            }
            // SAFETY: locked just above.
            unsafe {
                pm.incr();
                pm.unlock();
            }
        }
        true
    };
    bench_incr(
        &mut g,
        "pthread mutex (pshared) lock += 1 2proc",
        || pm.reset(),
        |n| two_processes(&hs, n, &pthread_incr),
        || pm.count(),
    );

    let sem = SemLock::new();
    let sem_incr = |n: u64| {
        let until = realtime_deadline(DEADLINE);
        for _ in 0..n {
            if !sem.wait_until(&until) {
                return false;
            }
            // SAFETY: holds the semaphore, taken just above.
            unsafe { sem.incr() };
            sem.post();
        }
        true
    };
    bench_incr(
        &mut g,
        "sem_t (pshared) wait += 1 post 2proc",
        || sem.reset(),
        |n| two_processes(&hs, n, &sem_incr),
        || sem.count(),
    );
    assert_eq!(sem.value(), 1, "sem_t lock left taken");

    let sm = std::sync::Mutex::new(0u64);
    let std_incr = |n: u64| {
        for _ in 0..n {
            *sm.lock().unwrap() += 1;
        }
        true
    };
    bench_incr(
        &mut g,
        "std Mutex<u64> lock += 1 2thread",
        || *sm.lock().unwrap() = 0,
        |n| two_threads(&hs, n, &std_incr),
        || *sm.lock().unwrap(),
    );

    g.finish();
}

// --------------------------------------------------------------------------
// pingpong_2proc and wakeup_latency_2proc
// --------------------------------------------------------------------------

/// Two objects two processes bounce a signal between. Side A (the parent)
/// signals the first and waits for the second; side B (the child) answers.
/// Each side returns false if one of its waits ran past [`DEADLINE`].
trait PingPong {
    /// Puts both objects back to the start (before the fork of a run).
    fn reset(&self);
    /// Checks both objects after a run, with the child gone.
    fn check(&self);
    /// The parent's side: `rounds` round trips.
    fn side_a(&self, rounds: u64, m: &impl Marks) -> bool;
    /// The child's side.
    fn side_b(&self, rounds: u64, m: &impl Marks) -> bool;
}

/// A pair of [`Event`]s: A sets `e1`, waits `e2`, clears it; B waits `e1`,
/// clears it, sets `e2`.
struct EventPair {
    e1: Event,
    e2: Event,
}

impl PingPong for EventPair {
    fn reset(&self) {
        self.e1.clear();
        self.e2.clear();
    }

    fn check(&self) {
        assert!(
            !self.e1.is_set() && !self.e2.is_set(),
            "an Event was left set"
        );
    }

    fn side_a(&self, rounds: u64, m: &impl Marks) -> bool {
        for _ in 0..rounds {
            m.before_signal();
            self.e1.set();
            if self.e2.wait_timeout(DEADLINE).is_err() {
                return false;
            }
            m.after_wake();
            self.e2.clear();
        }
        true
    }

    fn side_b(&self, rounds: u64, m: &impl Marks) -> bool {
        for _ in 0..rounds {
            if self.e1.wait_timeout(DEADLINE).is_err() {
                return false;
            }
            m.after_wake();
            self.e1.clear();
            m.before_signal();
            self.e2.set();
        }
        true
    }
}

/// A pair of [`Semaphore`]s at 0: A releases `s1` and acquires `s2`; B
/// acquires `s1` and releases `s2`.
struct SemaphorePair {
    s1: Semaphore,
    s2: Semaphore,
}

impl PingPong for SemaphorePair {
    fn reset(&self) {}

    fn check(&self) {
        assert!(
            self.s1.value() == 0 && self.s2.value() == 0,
            "a Semaphore kept a permit"
        );
    }

    fn side_a(&self, rounds: u64, m: &impl Marks) -> bool {
        for _ in 0..rounds {
            m.before_signal();
            self.s1.release().unwrap();
            if self.s2.acquire_timeout(DEADLINE).is_err() {
                return false;
            }
            m.after_wake();
        }
        true
    }

    fn side_b(&self, rounds: u64, m: &impl Marks) -> bool {
        for _ in 0..rounds {
            if self.s1.acquire_timeout(DEADLINE).is_err() {
                return false;
            }
            m.after_wake();
            m.before_signal();
            self.s2.release().unwrap();
        }
        true
    }
}

/// The raw futex peer: a [`FutexPair`] whose sides spin `spins` checks
/// before each wait. A bumps word 0 and waits for word 1; B answers.
struct RawFutex<'a> {
    pair: &'a FutexPair,
    spins: u32,
}

impl RawFutex<'_> {
    /// The relative timeout of each `FUTEX_WAIT`.
    const TIMEOUT: libc::timespec = libc::timespec {
        tv_sec: DEADLINE.as_secs() as libc::time_t,
        tv_nsec: 0,
    };
}

impl PingPong for RawFutex<'_> {
    fn reset(&self) {
        self.pair.reset();
    }

    fn check(&self) {
        assert_eq!(
            self.pair.word(0).load(Relaxed),
            self.pair.word(1).load(Relaxed),
            "raw futex sides out of step"
        );
    }

    fn side_a(&self, rounds: u64, m: &impl Marks) -> bool {
        for i in 1..=rounds {
            let i = i as u32;
            m.before_signal();
            self.pair.post(0, i);
            if !self.pair.wait_for(1, i, self.spins, &Self::TIMEOUT) {
                return false;
            }
            m.after_wake();
        }
        true
    }

    fn side_b(&self, rounds: u64, m: &impl Marks) -> bool {
        for i in 1..=rounds {
            let i = i as u32;
            if !self.pair.wait_for(0, i, self.spins, &Self::TIMEOUT) {
                return false;
            }
            m.after_wake();
            m.before_signal();
            self.pair.post(1, i);
        }
        true
    }
}

/// Shared state of the ping-pong runs: the start flags, and what the child
/// reports back.
struct PingPongShared {
    hs: Handshake,
    /// The child's voluntary context switches during its rounds.
    switches: AtomicValue<u64>,
    /// The child's [`Marks::sum`].
    child_sum: AtomicValue<u64>,
}

impl PingPongShared {
    fn new() -> PingPongShared {
        PingPongShared {
            hs: Handshake::new(),
            switches: AtomicValue::new(0).expect("AtomicValue::new"),
            child_sum: AtomicValue::new(0).expect("AtomicValue::new"),
        }
    }
}

/// One ping-pong run of `rounds` round trips: the parent plays side A, a
/// forked child side B. Returns the run's time (see [`Marks::time`]) and
/// the child's voluntary context switches during its rounds.
fn pingpong(
    sh: &PingPongShared,
    p: &impl PingPong,
    m: &impl Marks,
    rounds: u64,
) -> (Duration, u64) {
    sh.hs.reset();
    p.reset();
    let parent = std::process::id() as libc::pid_t;
    let mut child = common::fork(|| {
        m.start(parent);
        sh.hs.ready.store(1, Release);
        let before = voluntary_switches();
        let ok = p.side_b(rounds, m);
        sh.switches.store(voluntary_switches() - before, Relaxed);
        sh.child_sum.store(m.sum(), Relaxed);
        if ok { 0 } else { 2 }
    });
    m.start(child.pid());
    // A panic below drops `child`, which kills and reaps it.
    assert!(
        wait_flag(&sh.hs.ready, Instant::now() + DEADLINE),
        "child never became ready"
    );
    let start = Instant::now();
    let ok = p.side_a(rounds, m);
    let wall = start.elapsed();
    assert!(ok, "the parent's ping-pong waits ran past {DEADLINE:?}");
    match child.wait_timeout(DEADLINE) {
        Some(0) => {}
        Some(code) => panic!("ping-pong child failed with {code}"),
        None => panic!("ping-pong child still running after {DEADLINE:?}"),
    }
    p.check();
    let sums = m.sum() + sh.child_sum.load(Relaxed);
    (m.time(wall, sums), sh.switches.load(Relaxed))
}

/// Benches `name` in `group`: the ping-pong `p` timed by `m`, after a sanity run that
/// prints the time per round trip and how often the child slept.
fn bench_pingpong(
    g: &mut BenchmarkGroup<'_, WallTime>,
    group: &str,
    name: &str,
    p: &impl PingPong,
    m: &impl Marks,
) {
    let sh = PingPongShared::new();
    let (t, slept) = pingpong(&sh, p, m, SANITY_ROUNDS);
    eprintln!(
        "sanity {group}/{name}: {SANITY_ROUNDS} round trips, {:.2} us each, \
         child slept {:.2} times per round trip",
        t.as_secs_f64() * 1e6 / SANITY_ROUNDS as f64,
        slept as f64 / SANITY_ROUNDS as f64
    );
    g.bench_function(name, |b| {
        b.iter_custom(|iters| pingpong(&sh, p, m, iters).0);
    });
}

/// Benches every ping-pong contestant and peer in `group`, timed by
/// `m`.
fn pingpong_group(c: &mut Criterion, group: &str, m: &impl Marks) {
    let mut g = c.benchmark_group(group);
    // One fork per sample: many short samples let the median ride over the
    // scheduler noise of a small machine.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(60)
        .measurement_time(Duration::from_secs(2));

    let events = EventPair {
        e1: Event::new().expect("Event::new"),
        e2: Event::new().expect("Event::new"),
    };
    bench_pingpong(&mut g, group, "Event", &events, m);
    let sems = SemaphorePair {
        s1: Semaphore::new(0).expect("Semaphore::new"),
        s2: Semaphore::new(0).expect("Semaphore::new"),
    };
    bench_pingpong(&mut g, group, "Semaphore", &sems, m);
    let pair = FutexPair::new();
    let raw = |spins| RawFutex { pair: &pair, spins };
    bench_pingpong(&mut g, group, "raw futex, no spin", &raw(0), m);
    bench_pingpong(
        &mut g,
        group,
        "raw futex, spin 100 then wait",
        &raw(RAW_SPINS),
        m,
    );
    g.finish();
}

/// `pingpong_2proc`: the free-running ping-pong (Python's
/// `event_pingpong_2proc` / `semaphore_pingpong_2proc`).
fn pingpong_2proc(c: &mut Criterion) {
    pingpong_group(c, "pingpong_2proc", &Wall);
}

/// `wakeup_latency_2proc`: the paced ping-pong, in which every wake-up
/// finds the other side asleep in the kernel.
fn wakeup_latency_2proc(c: &mut Criterion) {
    pingpong_group(c, "wakeup_latency_2proc", &Latency::new());
}

/// Criterion settings for small, noisy machines: short warm-up, few samples.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = lock_uncontended, lock_contended_2proc, pingpong_2proc, wakeup_latency_2proc
}
criterion_main!(benches);
