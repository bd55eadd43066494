//! Criterion benches for the shared-memory queues: the [`spsc`] channel
//! and the MPMC [`Queue`] between processes, next to in-process peers between two threads and
//! raw shared-memory ping-pongs between two processes.
//!
//! Run with
//!
//! ```text
//! cargo bench --bench queue                       # everything, about 2 minutes
//! cargo bench --bench queue -- spsc_throughput    # one group
//! cargo test --bench queue                        # each bench once (CI smoke run)
//! python3 benches/python/queues.py                # the CPython figures
//! ```
//!
//! Each group measures our channel next to peers that do the same work
//! without this crate, in the same run, so the ratios between them come from
//! one machine state. `benches/python/queues.py` prints the CPython
//! `multiprocessing` figures (`Queue` and `SimpleQueue` throughput, `Pipe`
//! and two-`Queue` round trips).
//!
//! * `spsc_throughput`: `u64` items `0, 1, ..` from a producer to a
//!   consumer through a ring of [`CAPACITY`] slots; one criterion iteration
//!   is one item (`Throughput::Elements(1)`), so the time is per item and the
//!   throughput line is items per second. Contestants, across two processes
//!   (a `fork`ed child produces, the parent consumes and times):
//!   `spsc push/pop` (the blocking single-item calls: spin briefly, then
//!   sleep on a futex), `spsc try_push/try_pop spin` (the non-blocking calls,
//!   spinning on full/empty as the peers do) and `spsc push_slice/pop_into
//!   64` (batches of [`BATCH`], spinning on full/empty). Peers, between two
//!   threads of one process: `rtrb` (`push`/`pop`) and crossbeam's
//!   `ArrayQueue` (`push`/`pop`), both spinning on full/empty. SPEC goal:
//!   ours across processes ≥ each peer between threads. References: our
//!   single-item calls between two threads (`.. (2 threads, reference)`),
//!   which tell what crossing processes costs. After the group, an
//!   `interleaved` line per single-item contestant gives its throughput
//!   relative to rtrb runs just before and after it (and to an ArrayQueue
//!   run in the same round), over 15 rounds of short runs: this machine's
//!   state drifts over seconds, so these ratios are steadier than ratios
//!   of criterion's medians, which are taken one contestant at a time.
//! * `pingpong_spin`: round trips through two queues (the parent pushes `i`
//!   into A and waits for `i` from B; the child pops from A and pushes into
//!   B), both sides spinning on `try_pop`; the time is per round trip.
//!   Contestant: two `spsc` channels between two processes. Peer: a raw
//!   shared-memory spin ping-pong between two processes (two `u64` words on
//!   their own cache lines of a `MAP_SHARED` page; each side stores `i` into
//!   its word and spins until the other's word reads `i`). SPEC goal: ours
//!   ≤ 2× the raw spin ping-pong.
//! * `pingpong_blocking` and `wakeup_latency`: the same round trip with the
//!   blocking `pop` (and `push`), so a side whose spin misses sleeps on the
//!   channel's futex. Peers: the raw futex ping-pong of `benches/sync.rs`
//!   (two `u32` words in a `MAP_SHARED` page; each side bumps the other's
//!   word, `FUTEX_WAKE`s it, and `FUTEX_WAIT`s on its own), once with no
//!   spinning and once checking its word 100 times first.
//!   - `pingpong_blocking` runs free (the time is the parent's wall time),
//!     so a side that catches the answer while spinning does not sleep:
//!     bimodal figures that move between runs.
//!   - `wakeup_latency` measures the futex path only, as `benches/sync.rs`'s
//!     `wakeup_latency_2proc` does: before each signal the signalling side
//!     waits (untimed) until the other sleeps in a futex wait, per its
//!     `/proc/<pid>/wchan`, then stamps the clock, and the woken side adds
//!     now - stamp. The time is the sum of the two wake-up latencies of a
//!     round trip. SPEC goal: ours ≤ 1.3× "raw futex, no spin".
//!
//!   The sanity run before each ping-pong prints the round trip and how
//!   often the child slept in the kernel per round trip (voluntary context
//!   switches).
//!
//! * `mpmc_throughput`: `u64` items `0..n` through a [`Queue`] of
//!   [`CAPACITY`] slots, 1P/1C and 2P/2C; producer `j` of `p` puts `j, j +
//!   p, ..`, the last producer done closes the queue, and consumers take
//!   items until it is closed and drained. One criterion iteration is one
//!   item. Contestants, every producer and consumer a forked child (the
//!   parent only times, napping 20 µs between looks): `Queue put/get`
//!   (blocking) and `Queue try_put/try_get spin`. Peer: crossbeam's
//!   `ArrayQueue` with the same roles on threads, spinning on full/empty
//!   (consumers stop once all producers are done and the queue is
//!   drained). The count and sum of the items received are checked on
//!   every run. SPEC goal: ours across processes ≥ the peer between
//!   threads. 2P/2C puts four busy workers on a 2-core machine, so its
//!   figures there say more about yielding than about the queues.
//!
//! A channel's ends keep their positions in process memory, so a forked
//! child's copy of an end moves on while the parent's stays behind: every
//! run across processes makes fresh channels (outside the timed region, and
//! touches their pages once before the fork). Forks and thread spawns are
//! outside the timed regions; each `iter_custom` call forks once and
//! releases both sides with a shared start flag. Every spin has a deadline
//! (30 s) after which the bench fails; the blocking calls, which take none,
//! run under a watchdog thread that aborts the bench if a run takes twice
//! that. Children leave with `_exit` and die with the parent
//! (`tests/common`). Every bench checks its result once before it is
//! measured (the sum of the items received, or the values bounced), and the
//! throughput runs check the sum on every run. The machines this runs on
//! are small and shared, so samples are few and short; compare medians
//! within one run rather than across runs.

#[path = "../tests/common/mod.rs"]
mod common;
mod two_sides;

use two_sides::{
    DEADLINE, FutexPair, Handshake, Latency, Marks, SharedPage, Wall, checked_run, two_processes,
    two_threads, voluntary_switches, wait_flag,
};

use std::cell::RefCell;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};
use multiproc::spsc::{self, TryPopError, TryPushError};
use multiproc::{AtomicValue, Queue, TryGetError};

/// Slots of every ring in these benches, ours and the peers'.
const CAPACITY: usize = 1024;

/// Items per `push_slice` / `pop_into` call in the batched contestant.
const BATCH: usize = 64;

/// Items in the sanity run before each throughput bench (fewer in the
/// unoptimised build of `cargo test --bench queue`, whose spinning peers
/// crawl on a busy 2-core machine).
const SANITY_ITEMS: u64 = if cfg!(debug_assertions) {
    50_000
} else {
    1_000_000
};

/// Round trips in the sanity run before each ping-pong bench.
const SANITY_ROUNDS: u64 = if cfg!(debug_assertions) { 500 } else { 2_000 };

/// Checks of its word the spinning raw futex peer makes before it sleeps.
const RAW_SPINS: u32 = 100;

// --------------------------------------------------------------------------
// Waiting helpers
// --------------------------------------------------------------------------

/// A spin wait with a deadline: hot at first, yielding the CPU between
/// checks after a long miss (the two sides may share one core).
struct Spin {
    spins: u32,
    deadline: Instant,
}

impl Spin {
    /// A spin that gives up [`DEADLINE`] from now.
    fn new() -> Spin {
        Spin {
            spins: 0,
            deadline: Instant::now() + DEADLINE,
        }
    }

    /// After a check that found nothing: pauses, and returns false once the
    /// deadline has passed.
    #[inline]
    fn miss(&mut self) -> bool {
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
    fn hit(&mut self) {
        self.spins = 0;
    }
}

/// Runs `f` with a watchdog thread that aborts the process (and so kills
/// every child, which dies with its parent) if `f` takes more than twice
/// [`DEADLINE`]: the blocking channel calls take no deadline of their own.
fn with_watchdog<R>(what: &str, f: impl FnOnce() -> R) -> R {
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

/// `0 + 1 + .. + (n - 1)`: the sum a consumer of `n` items must see.
fn expected_sum(n: u64) -> u64 {
    if n == 0 { 0 } else { n * (n - 1) / 2 }
}

// --------------------------------------------------------------------------
// spsc_throughput
// --------------------------------------------------------------------------

/// Shared state of the throughput runs: the start flags, the consumer's sum
/// and item count.
struct Flow {
    hs: Handshake,
    /// The sum of the items the consumer received in the last run.
    sum: AtomicValue<u64>,
    /// Items the producer sent plus items the consumer received.
    moved: AtomicValue<u64>,
}

impl Flow {
    fn new() -> Flow {
        Flow {
            hs: Handshake::new(),
            sum: AtomicValue::new(0).expect("AtomicValue::new"),
            moved: AtomicValue::new(0).expect("AtomicValue::new"),
        }
    }

    /// One checked run of `n` items: `run` moves them and reports through
    /// [`Self::sum`] and [`Self::moved`]; both are checked.
    fn run(&self, n: u64, run: impl FnOnce(u64) -> Duration) -> Duration {
        let t = checked_run(
            n,
            || {
                self.sum.store(u64::MAX, Relaxed);
                self.moved.store(0, Relaxed);
            },
            run,
            || self.moved.load(Relaxed),
        );
        assert_eq!(
            self.sum.load(Relaxed),
            expected_sum(n),
            "the consumer received the wrong items"
        );
        t
    }

    /// The work of one side of a run, for [`two_processes`] or
    /// [`two_threads`]: the consuming side (`is_consumer()`) runs `consume`
    /// and records its sum, the other runs `produce`. Each returns false if
    /// a wait ran past its deadline.
    fn sides(
        &self,
        is_consumer: impl Fn() -> bool,
        produce: impl Fn(u64) -> bool,
        consume: impl Fn(u64) -> Option<u64>,
    ) -> impl Fn(u64) -> bool {
        move |n| {
            if is_consumer() {
                let Some(sum) = consume(n) else { return false };
                self.sum.store(sum, Relaxed);
            } else if !produce(n) {
                return false;
            }
            self.moved.fetch_add(n, Relaxed);
            true
        }
    }
}

/// A fresh channel, its pages touched once (so that no page fault falls in
/// a timed run), empty.
fn fresh_channel() -> (spsc::Producer<u64>, spsc::Consumer<u64>) {
    let (mut tx, mut rx) = spsc::channel::<u64>(CAPACITY).expect("spsc::channel");
    let fill = vec![0u64; CAPACITY];
    assert_eq!(tx.push_slice(&fill), CAPACITY);
    let mut back = vec![1u64; CAPACITY];
    assert_eq!(rx.pop_into(&mut back), CAPACITY);
    (tx, rx)
}

/// How our contestants move the items.
#[derive(Clone, Copy)]
enum Mode {
    /// Blocking `push` / `pop`.
    Blocking,
    /// `try_push` / `try_pop`, spinning on full / empty.
    Spinning,
    /// `push_slice` / `pop_into` in batches of [`BATCH`], spinning.
    Batched,
}

/// Pushes `0..n` into `tx` as `mode` says; false on a deadline.
fn produce_spsc(tx: &mut spsc::Producer<u64>, n: u64, mode: Mode) -> bool {
    match mode {
        Mode::Blocking => (0..n).all(|i| tx.push(i).is_ok()),
        Mode::Spinning => {
            let mut spin = Spin::new();
            for i in 0..n {
                let mut v = i;
                loop {
                    match tx.try_push(v) {
                        Ok(()) => break,
                        Err(TryPushError::Full(back)) => v = back,
                        Err(TryPushError::Closed(_)) => return false,
                    }
                    if !spin.miss() {
                        return false;
                    }
                }
                spin.hit();
            }
            true
        }
        Mode::Batched => {
            let mut spin = Spin::new();
            let mut buf = [0u64; BATCH];
            let mut next = 0;
            while next < n {
                let k = (n - next).min(BATCH as u64) as usize;
                for (j, slot) in buf[..k].iter_mut().enumerate() {
                    *slot = next + j as u64;
                }
                let mut off = 0;
                while off < k {
                    let m = tx.push_slice(&buf[off..k]);
                    if m == 0 {
                        if !spin.miss() {
                            return false;
                        }
                    } else {
                        spin.hit();
                        off += m;
                    }
                }
                next += k as u64;
            }
            true
        }
    }
}

/// Takes `n` items from `rx` as `mode` says; their sum, or `None` on a
/// deadline.
fn consume_spsc(rx: &mut spsc::Consumer<u64>, n: u64, mode: Mode) -> Option<u64> {
    let mut sum = 0u64;
    match mode {
        Mode::Blocking => {
            for _ in 0..n {
                sum = sum.wrapping_add(rx.pop().ok()?);
            }
        }
        Mode::Spinning => {
            let mut spin = Spin::new();
            for _ in 0..n {
                loop {
                    match rx.try_pop() {
                        Ok(v) => {
                            sum = sum.wrapping_add(v);
                            break;
                        }
                        Err(TryPopError::Empty) => {}
                        Err(TryPopError::Closed) => return None,
                    }
                    if !spin.miss() {
                        return None;
                    }
                }
                spin.hit();
            }
        }
        Mode::Batched => {
            let mut spin = Spin::new();
            let mut buf = [0u64; BATCH];
            let mut left = n;
            while left > 0 {
                let want = left.min(BATCH as u64) as usize;
                let m = rx.pop_into(&mut buf[..want]);
                if m == 0 {
                    if !spin.miss() {
                        return None;
                    }
                    continue;
                }
                spin.hit();
                sum = buf[..m].iter().fold(sum, |s, &v| s.wrapping_add(v));
                left -= m as u64;
            }
        }
    }
    Some(sum)
}

/// One run of ours: `n` items from a forked child (producer) to the parent
/// (consumer, timing), through a fresh channel.
fn spsc_2proc(flow: &Flow, n: u64, mode: Mode) -> Duration {
    let (tx, rx) = fresh_channel();
    let (tx, rx) = (RefCell::new(tx), RefCell::new(rx));
    let parent = std::process::id();
    let work = flow.sides(
        || std::process::id() == parent,
        |n| produce_spsc(&mut tx.borrow_mut(), n, mode),
        |n| consume_spsc(&mut rx.borrow_mut(), n, mode),
    );
    with_watchdog("spsc_throughput", || two_processes(&flow.hs, n, &work))
}

/// One run of ours between two threads of this process (a reference: it
/// tells what crossing processes costs): a spawned thread produces, this
/// one consumes.
fn spsc_2threads(flow: &Flow, n: u64, mode: Mode) -> Duration {
    let (tx, rx) = fresh_channel();
    let (tx, rx) = (std::sync::Mutex::new(tx), std::sync::Mutex::new(rx));
    peer_2threads(
        flow,
        n,
        |n| produce_spsc(&mut tx.lock().expect("spsc producer"), n, mode),
        |n| consume_spsc(&mut rx.lock().expect("spsc consumer"), n, mode),
    )
}

/// One run of a peer between two threads: `produce` on a spawned thread,
/// `consume` on this one (timing).
fn peer_2threads(
    flow: &Flow,
    n: u64,
    produce: impl Fn(u64) -> bool + Sync,
    consume: impl Fn(u64) -> Option<u64> + Sync,
) -> Duration {
    let me = std::thread::current().id();
    let work = flow.sides(|| std::thread::current().id() == me, produce, consume);
    two_threads(&flow.hs, n, &work)
}

/// Benches `name`: the sanity run (prints items per second), then `run`
/// under criterion.
fn bench_flow(
    g: &mut BenchmarkGroup<'_, WallTime>,
    flow: &Flow,
    name: &str,
    run: impl Fn(u64) -> Duration,
) {
    let t = flow.run(SANITY_ITEMS, &run);
    eprintln!(
        "sanity spsc_throughput/{name}: {SANITY_ITEMS} items, sum checked, {:.1} ns each ({:.1} M items/s)",
        t.as_secs_f64() * 1e9 / SANITY_ITEMS as f64,
        SANITY_ITEMS as f64 / t.as_secs_f64() / 1e6
    );
    g.bench_function(name, |b| b.iter_custom(|iters| flow.run(iters, &run)));
}

/// `spsc_throughput`: ours across processes, rtrb and `ArrayQueue` between
/// threads.
fn spsc_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("spsc_throughput");
    // One fork per sample, each moving ~100 ms of items.
    g.sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(1));
    let flow = Flow::new();

    bench_flow(&mut g, &flow, "spsc push/pop (2 processes)", |n| {
        spsc_2proc(&flow, n, Mode::Blocking)
    });
    bench_flow(
        &mut g,
        &flow,
        "spsc try_push/try_pop spin (2 processes)",
        |n| spsc_2proc(&flow, n, Mode::Spinning),
    );
    bench_flow(
        &mut g,
        &flow,
        "spsc push_slice/pop_into 64 (2 processes)",
        |n| spsc_2proc(&flow, n, Mode::Batched),
    );

    bench_flow(&mut g, &flow, "spsc push/pop (2 threads, reference)", |n| {
        with_watchdog("spsc_throughput", || {
            spsc_2threads(&flow, n, Mode::Blocking)
        })
    });
    bench_flow(
        &mut g,
        &flow,
        "spsc try_push/try_pop spin (2 threads, reference)",
        |n| spsc_2threads(&flow, n, Mode::Spinning),
    );

    let (tx, rx) = rtrb::RingBuffer::<u64>::new(CAPACITY);
    let (tx, rx) = (std::sync::Mutex::new(tx), std::sync::Mutex::new(rx));
    let rtrb_push = |n: u64| {
        let mut tx = tx.lock().expect("rtrb producer");
        let mut spin = Spin::new();
        for i in 0..n {
            while tx.push(i).is_err() {
                if !spin.miss() {
                    return false;
                }
            }
            spin.hit();
        }
        true
    };
    let rtrb_pop = |n: u64| {
        let mut rx = rx.lock().expect("rtrb consumer");
        let mut spin = Spin::new();
        let mut sum = 0u64;
        for _ in 0..n {
            loop {
                if let Ok(v) = rx.pop() {
                    sum = sum.wrapping_add(v);
                    break;
                }
                if !spin.miss() {
                    return None;
                }
            }
            spin.hit();
        }
        Some(sum)
    };
    bench_flow(&mut g, &flow, "rtrb (2 threads)", |n| {
        peer_2threads(&flow, n, rtrb_push, rtrb_pop)
    });

    let q = crossbeam_queue::ArrayQueue::<u64>::new(CAPACITY);
    let cb_push = |n: u64| {
        let mut spin = Spin::new();
        for i in 0..n {
            while q.push(i).is_err() {
                if !spin.miss() {
                    return false;
                }
            }
            spin.hit();
        }
        true
    };
    let cb_pop = |n: u64| {
        let mut spin = Spin::new();
        let mut sum = 0u64;
        for _ in 0..n {
            loop {
                if let Some(v) = q.pop() {
                    sum = sum.wrapping_add(v);
                    break;
                }
                if !spin.miss() {
                    return None;
                }
            }
            spin.hit();
        }
        Some(sum)
    };
    bench_flow(&mut g, &flow, "crossbeam ArrayQueue (2 threads)", |n| {
        peer_2threads(&flow, n, cb_push, cb_pop)
    });
    g.finish();

    interleaved(
        &flow,
        &|n| peer_2threads(&flow, n, rtrb_push, rtrb_pop),
        &|n| peer_2threads(&flow, n, cb_push, cb_pop),
        &[
            ("spsc push/pop (2 processes)", &|n| {
                spsc_2proc(&flow, n, Mode::Blocking)
            }),
            ("spsc try_push/try_pop spin (2 processes)", &|n| {
                spsc_2proc(&flow, n, Mode::Spinning)
            }),
        ],
    );
}

/// Rounds of [`interleaved`].
const INTERLEAVED_ROUNDS: usize = if cfg!(debug_assertions) { 1 } else { 15 };

/// Items per run in [`interleaved`].
const INTERLEAVED_ITEMS: u64 = if cfg!(debug_assertions) {
    20_000
} else {
    500_000
};

/// Short runs of `ours` and of the peers in turn, [`INTERLEAVED_ROUNDS`]
/// times: each round runs `arrayqueue` and each of `ours` between two runs
/// of `rtrb`, and prints the median (min, max) of each one's throughput
/// relative to the mean of those two rtrb runs, and of ours relative to the
/// ArrayQueue run of the same round. The host moves this machine's two
/// vCPUs nearer and farther apart over seconds, so criterion's medians,
/// taken one contestant at a time, can compare different machine states;
/// neighbouring short runs compare like with like. Every run's sum is
/// checked.
fn interleaved(
    flow: &Flow,
    rtrb: &dyn Fn(u64) -> Duration,
    arrayqueue: &dyn Fn(u64) -> Duration,
    ours: &[(&str, &dyn Fn(u64) -> Duration)],
) {
    let n = INTERLEAVED_ITEMS;
    let mut vs_rtrb = vec![Vec::new(); ours.len() + 1];
    let mut vs_aq = vec![Vec::new(); ours.len()];
    let mut before = flow.run(n, rtrb);
    for _ in 0..INTERLEAVED_ROUNDS {
        let aq = flow.run(n, arrayqueue);
        let times: Vec<Duration> = ours.iter().map(|(_, run)| flow.run(n, run)).collect();
        let after = flow.run(n, rtrb);
        let peer = (before + after).as_secs_f64() / 2.0;
        vs_rtrb[ours.len()].push(peer / aq.as_secs_f64());
        for (i, t) in times.iter().enumerate() {
            vs_rtrb[i].push(peer / t.as_secs_f64());
            vs_aq[i].push(aq.as_secs_f64() / t.as_secs_f64());
        }
        before = after;
    }
    let summary = |r: &mut Vec<f64>| {
        r.sort_by(f64::total_cmp);
        format!(
            "{:.2}x (min {:.2}, max {:.2})",
            r[r.len() / 2],
            r[0],
            r[r.len() - 1]
        )
    };
    let names = ours
        .iter()
        .map(|(name, _)| *name)
        .chain(["crossbeam ArrayQueue (2 threads)"]);
    for (i, name) in names.enumerate() {
        let against_aq = vs_aq
            .get_mut(i)
            .map(|r| format!(", vs ArrayQueue {}", summary(r)))
            .unwrap_or_default();
        eprintln!(
            "interleaved spsc_throughput/{name}: {INTERLEAVED_ROUNDS} rounds of {n} items, \
             throughput vs rtrb {}{against_aq}",
            summary(&mut vs_rtrb[i])
        );
    }
}

// --------------------------------------------------------------------------
// mpmc_throughput
// --------------------------------------------------------------------------

/// Shared state of the MPMC runs: start and finish counts, the consumers'
/// sums, and how many producers are done.
struct Crowd {
    /// Workers running and about to wait for `go`.
    ready: AtomicValue<u32>,
    /// Set by the timing side right after it starts the clock.
    go: AtomicValue<u32>,
    /// Workers done with their work.
    done: AtomicValue<u32>,
    /// Producers done pushing.
    producers_done: AtomicValue<u32>,
    /// The sum of the items all consumers received.
    sum: AtomicValue<u64>,
    /// How many items all consumers received.
    count: AtomicValue<u64>,
}

impl Crowd {
    fn new() -> Crowd {
        Crowd {
            ready: AtomicValue::new(0).expect("AtomicValue::new"),
            go: AtomicValue::new(0).expect("AtomicValue::new"),
            done: AtomicValue::new(0).expect("AtomicValue::new"),
            producers_done: AtomicValue::new(0).expect("AtomicValue::new"),
            sum: AtomicValue::new(0).expect("AtomicValue::new"),
            count: AtomicValue::new(0).expect("AtomicValue::new"),
        }
    }

    fn reset(&self) {
        for flag in [&self.ready, &self.go, &self.done, &self.producers_done] {
            flag.store(0, Release);
        }
        self.sum.store(0, Release);
        self.count.store(0, Release);
    }

    /// A worker's life: announce, wait for `go`, work, count itself done.
    fn worker(&self, work: impl FnOnce() -> bool) -> bool {
        self.ready.fetch_add(1, AcqRel);
        if !wait_flag(&self.go, Instant::now() + DEADLINE) {
            return false;
        }
        let ok = work();
        self.done.fetch_add(1, AcqRel);
        ok
    }

    /// Waits (untimed) until `n` workers are ready, starts the clock,
    /// releases them, and returns the time until all `n` are done. The
    /// timing side naps between looks so as not to take a core from the
    /// workers.
    fn time_workers(&self, n: u32) -> Duration {
        let deadline = Instant::now() + DEADLINE;
        while self.ready.load(Acquire) < n {
            assert!(Instant::now() < deadline, "workers never became ready");
            std::thread::yield_now();
        }
        let start = Instant::now();
        self.go.store(1, Release);
        while self.done.load(Acquire) < n {
            assert!(
                start.elapsed() < DEADLINE,
                "workers did not finish within {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_micros(20));
        }
        start.elapsed()
    }

    /// A producer's share of `0..n`: `j, j + p, j + 2p, ..` for producer
    /// `j` of `p`.
    fn share(j: usize, p: usize, n: u64) -> impl Iterator<Item = u64> {
        (j as u64..n).step_by(p)
    }

    /// Adds a consumer's results.
    fn received(&self, sum: u64, count: u64) {
        self.sum.fetch_add(sum, AcqRel);
        self.count.fetch_add(count, AcqRel);
    }

    /// Checks that the consumers got exactly `0..n`, once each (by count
    /// and sum).
    fn check(&self, n: u64) {
        assert_eq!(self.count.load(Acquire), n, "items lost or duplicated");
        assert_eq!(
            self.sum.load(Acquire),
            expected_sum(n),
            "the consumers received the wrong items"
        );
    }
}

/// One MPMC run across processes: `p` forked producers and `c` forked
/// consumers move `n` items through a fresh [`Queue`], the parent only
/// times. The last producer done closes the queue; consumers take items
/// until they see it closed and drained.
fn mpmc_processes(cr: &Crowd, p: usize, c: usize, n: u64, spin: bool) -> Duration {
    cr.reset();
    let q = Queue::<u64>::new(CAPACITY).expect("Queue::new");
    // Touch the ring's pages once, outside the timed region.
    for i in 0..CAPACITY as u64 {
        q.try_put(i).expect("a fresh queue has room");
    }
    for _ in 0..CAPACITY {
        q.try_get().expect("the queue holds what was put");
    }
    with_watchdog("mpmc_throughput", || {
        let children: Vec<common::Child> = (0..p + c)
            .map(|w| {
                let q = &q;
                common::fork(move || {
                    let ok = cr.worker(|| {
                        if w < p {
                            mpmc_produce(q, Crowd::share(w, p, n), spin, &cr.producers_done, p)
                        } else {
                            mpmc_consume(q, spin)
                                .map(|(s, k)| cr.received(s, k))
                                .is_some()
                        }
                    });
                    if ok { 0 } else { 2 }
                })
            })
            .collect();
        let t = cr.time_workers((p + c) as u32);
        for child in children {
            assert_eq!(child.join(), 0, "an MPMC worker failed");
        }
        cr.check(n);
        t
    })
}

/// Puts `items` into `q` (blocking `put`, or spinning on `try_put`); the
/// last of `p` producers closes the queue.
fn mpmc_produce(
    q: &Queue<u64>,
    items: impl Iterator<Item = u64>,
    spin: bool,
    producers_done: &AtomicValue<u32>,
    p: usize,
) -> bool {
    let mut s = Spin::new();
    for i in items {
        if !spin {
            if q.put(i).is_err() {
                return false;
            }
            continue;
        }
        while q.try_put(i).is_err() {
            if !s.miss() {
                return false;
            }
        }
        s.hit();
    }
    if producers_done.fetch_add(1, AcqRel) + 1 == p as u32 {
        q.close();
    }
    true
}

/// Takes items from `q` until it is closed and drained (blocking `get`, or
/// spinning on `try_get`); their sum and count, or `None` on a deadline.
fn mpmc_consume(q: &Queue<u64>, spin: bool) -> Option<(u64, u64)> {
    let (mut sum, mut count) = (0u64, 0u64);
    let mut s = Spin::new();
    loop {
        let v = if spin {
            match q.try_get() {
                Ok(v) => v,
                Err(TryGetError::Empty) => {
                    if !s.miss() {
                        return None;
                    }
                    continue;
                }
                Err(TryGetError::Closed) => break,
            }
        } else {
            match q.get() {
                Ok(v) => v,
                Err(_) => break,
            }
        };
        s.hit();
        sum = sum.wrapping_add(v);
        count += 1;
    }
    Some((sum, count))
}

/// One run of the `ArrayQueue` peer between threads: `p` producer and `c`
/// consumer threads, spinning on full/empty; consumers stop once every
/// producer is done and the queue is drained.
fn array_queue_threads(cr: &Crowd, p: usize, c: usize, n: u64) -> Duration {
    cr.reset();
    let q = crossbeam_queue::ArrayQueue::<u64>::new(CAPACITY);
    std::thread::scope(|sc| {
        let workers: Vec<_> = (0..p + c)
            .map(|w| {
                let q = &q;
                sc.spawn(move || {
                    cr.worker(|| {
                        let mut s = Spin::new();
                        if w < p {
                            for i in Crowd::share(w, p, n) {
                                while q.push(i).is_err() {
                                    if !s.miss() {
                                        return false;
                                    }
                                }
                                s.hit();
                            }
                            cr.producers_done.fetch_add(1, AcqRel);
                            return true;
                        }
                        let (mut sum, mut count) = (0u64, 0u64);
                        loop {
                            if let Some(v) = q.pop() {
                                s.hit();
                                sum = sum.wrapping_add(v);
                                count += 1;
                            } else if cr.producers_done.load(Acquire) == p as u32 {
                                while let Some(v) = q.pop() {
                                    sum = sum.wrapping_add(v);
                                    count += 1;
                                }
                                break;
                            } else if !s.miss() {
                                return false;
                            }
                        }
                        cr.received(sum, count);
                        true
                    })
                })
            })
            .collect();
        let t = cr.time_workers((p + c) as u32);
        for w in workers {
            assert!(
                w.join().expect("worker panicked"),
                "an ArrayQueue worker failed"
            );
        }
        cr.check(n);
        t
    })
}

/// One timed run of `n` items.
type Run<'a> = dyn Fn(u64) -> Duration + 'a;

/// `mpmc_throughput`: ours across processes against `ArrayQueue` between
/// threads, 1P/1C and 2P/2C.
fn mpmc_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("mpmc_throughput");
    g.sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(1));
    let cr = &Crowd::new();
    for (p, k) in [(1, 1), (2, 2)] {
        let runs: [(String, Box<Run<'_>>); 3] = [
            (
                format!("Queue put/get {p}P/{k}C (processes)"),
                Box::new(move |n| mpmc_processes(cr, p, k, n, false)),
            ),
            (
                format!("Queue try_put/try_get spin {p}P/{k}C (processes)"),
                Box::new(move |n| mpmc_processes(cr, p, k, n, true)),
            ),
            (
                format!("crossbeam ArrayQueue {p}P/{k}C (threads)"),
                Box::new(move |n| array_queue_threads(cr, p, k, n)),
            ),
        ];
        for (name, run) in &runs {
            let t = run(SANITY_ITEMS);
            eprintln!(
                "sanity mpmc_throughput/{name}: {SANITY_ITEMS} items, count and sum checked, \
                 {:.1} ns each ({:.1} M items/s)",
                t.as_secs_f64() * 1e9 / SANITY_ITEMS as f64,
                SANITY_ITEMS as f64 / t.as_secs_f64() / 1e6
            );
            g.bench_function(name.as_str(), |b| b.iter_custom(run));
        }
    }
    g.finish();
}

// --------------------------------------------------------------------------
// Shared memory for the raw peers
// --------------------------------------------------------------------------

/// Two one-way links two processes bounce the round number `1..=rounds`
/// through. Side A (the parent) sends and waits for the answer; side B
/// (the child) answers. Each side returns false if a wait ran past
/// [`DEADLINE`] or a wrong value came back.
trait PingPong {
    /// The parent's side.
    fn side_a(&self, rounds: u64, m: &impl Marks) -> bool;
    /// The child's side.
    fn side_b(&self, rounds: u64, m: &impl Marks) -> bool;
}

/// Two fresh `spsc` channels: A carries `i` from the parent to the child, B
/// carries it back. `blocking` picks `push`/`pop` over spinning on
/// `try_push`/`try_pop`.
struct SpscPair {
    a_tx: RefCell<spsc::Producer<u64>>,
    a_rx: RefCell<spsc::Consumer<u64>>,
    b_tx: RefCell<spsc::Producer<u64>>,
    b_rx: RefCell<spsc::Consumer<u64>>,
    blocking: bool,
}

impl SpscPair {
    fn new(blocking: bool) -> SpscPair {
        let (a_tx, a_rx) = fresh_channel();
        let (b_tx, b_rx) = fresh_channel();
        SpscPair {
            a_tx: RefCell::new(a_tx),
            a_rx: RefCell::new(a_rx),
            b_tx: RefCell::new(b_tx),
            b_rx: RefCell::new(b_rx),
            blocking,
        }
    }

    /// Sends `v`; false on a deadline or a closed channel.
    #[inline]
    fn send(&self, tx: &mut spsc::Producer<u64>, v: u64, spin: &mut Spin) -> bool {
        if self.blocking {
            return tx.push(v).is_ok();
        }
        let mut v = v;
        loop {
            match tx.try_push(v) {
                Ok(()) => {
                    spin.hit();
                    return true;
                }
                Err(TryPushError::Full(back)) => v = back,
                Err(TryPushError::Closed(_)) => return false,
            }
            if !spin.miss() {
                return false;
            }
        }
    }

    /// Receives one value and checks it is `want`.
    #[inline]
    fn recv(&self, rx: &mut spsc::Consumer<u64>, want: u64, spin: &mut Spin) -> bool {
        if self.blocking {
            return rx.pop() == Ok(want);
        }
        loop {
            match rx.try_pop() {
                Ok(v) => {
                    spin.hit();
                    return v == want;
                }
                Err(TryPopError::Empty) => {}
                Err(TryPopError::Closed) => return false,
            }
            if !spin.miss() {
                return false;
            }
        }
    }
}

impl PingPong for SpscPair {
    fn side_a(&self, rounds: u64, m: &impl Marks) -> bool {
        let (mut tx, mut rx) = (self.a_tx.borrow_mut(), self.b_rx.borrow_mut());
        let mut spin = Spin::new();
        for i in 1..=rounds {
            m.before_signal();
            if !self.send(&mut tx, i, &mut spin) || !self.recv(&mut rx, i, &mut spin) {
                return false;
            }
            m.after_wake();
        }
        true
    }

    fn side_b(&self, rounds: u64, m: &impl Marks) -> bool {
        let (mut rx, mut tx) = (self.a_rx.borrow_mut(), self.b_tx.borrow_mut());
        let mut spin = Spin::new();
        for i in 1..=rounds {
            if !self.recv(&mut rx, i, &mut spin) {
                return false;
            }
            m.after_wake();
            m.before_signal();
            if !self.send(&mut tx, i, &mut spin) {
                return false;
            }
        }
        true
    }
}

/// Two `u64` words in a shared page, one per side, on their own cache
/// lines.
struct WordPair {
    page: SharedPage,
}

impl WordPair {
    /// Byte offsets of the two words, on different cache lines (and
    /// different adjacent-line prefetch pairs).
    const OFFSETS: [usize; 2] = [0, 128];

    fn new() -> WordPair {
        WordPair {
            page: SharedPage::new(),
        }
    }

    /// Word `i` (0 or 1) as a `u64` atomic.
    // The crate's own atomics go through `crate::loom`; this raw peer needs
    // an atomic on its own mmap'd word, which only std can give.
    #[allow(clippy::disallowed_types)]
    fn word64(&self, i: usize) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: an aligned u64 inside the page, which lives as long as
        // `self`; every access to it, in every process, is atomic.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.page.at(Self::OFFSETS[i])) }
    }
}

/// The raw spin peer: each side stores the round number into its own
/// `u64` word and spins until the other's word reads it.
struct RawSpin(WordPair);

impl RawSpin {
    fn new() -> RawSpin {
        RawSpin(WordPair::new())
    }

    #[inline]
    fn wait_for(&self, i: usize, want: u64, spin: &mut Spin) -> bool {
        let w = self.0.word64(i);
        // SYNC: Acquire pairs with the Release store of the other side.
        while w.load(Acquire) != want {
            if !spin.miss() {
                return false;
            }
        }
        spin.hit();
        true
    }
}

impl PingPong for RawSpin {
    fn side_a(&self, rounds: u64, m: &impl Marks) -> bool {
        let mut spin = Spin::new();
        for i in 1..=rounds {
            m.before_signal();
            // SYNC: Release pairs with the Acquire load in `wait_for`.
            self.0.word64(0).store(i, Release);
            if !self.wait_for(1, i, &mut spin) {
                return false;
            }
            m.after_wake();
        }
        true
    }

    fn side_b(&self, rounds: u64, m: &impl Marks) -> bool {
        let mut spin = Spin::new();
        for i in 1..=rounds {
            if !self.wait_for(0, i, &mut spin) {
                return false;
            }
            m.after_wake();
            m.before_signal();
            // SYNC: Release pairs with the Acquire load in `wait_for`.
            self.0.word64(1).store(i, Release);
        }
        true
    }
}

/// The raw futex peer of `benches/sync.rs` (its [`FutexPair`]): each side
/// stores the round number into its `u32` word, `FUTEX_WAKE`s it (always:
/// one system call), and waits for the other's word, `spins` checks first,
/// then `FUTEX_WAIT` (shared) while it holds the old value.
struct RawFutex {
    pair: FutexPair,
    spins: u32,
}

impl RawFutex {
    /// The relative timeout of each `FUTEX_WAIT`.
    const TIMEOUT: libc::timespec = libc::timespec {
        tv_sec: DEADLINE.as_secs() as libc::time_t,
        tv_nsec: 0,
    };

    fn new(spins: u32) -> RawFutex {
        RawFutex {
            pair: FutexPair::new(),
            spins,
        }
    }

    #[inline]
    fn post(&self, i: usize, value: u32) {
        self.pair.post(i, value);
    }

    #[inline]
    fn wait_for(&self, i: usize, target: u32) -> bool {
        self.pair.wait_for(i, target, self.spins, &Self::TIMEOUT)
    }
}

impl PingPong for RawFutex {
    fn side_a(&self, rounds: u64, m: &impl Marks) -> bool {
        for i in 1..=rounds {
            let i = i as u32;
            m.before_signal();
            self.post(0, i);
            if !self.wait_for(1, i) {
                return false;
            }
            m.after_wake();
        }
        true
    }

    fn side_b(&self, rounds: u64, m: &impl Marks) -> bool {
        for i in 1..=rounds {
            let i = i as u32;
            if !self.wait_for(0, i) {
                return false;
            }
            m.after_wake();
            m.before_signal();
            self.post(1, i);
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

/// One ping-pong run of `rounds` round trips through a fresh `make()`: the
/// parent plays side A, a forked child side B. Returns the run's time (see
/// [`Marks::time`]) and the child's voluntary context switches during its
/// rounds.
fn pingpong<P: PingPong>(
    sh: &PingPongShared,
    make: &impl Fn() -> P,
    m: &impl Marks,
    rounds: u64,
) -> (Duration, u64) {
    sh.hs.reset();
    let p = make();
    let parent = std::process::id() as libc::pid_t;
    with_watchdog("ping-pong", || {
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
        assert!(
            ok,
            "the parent's ping-pong side failed (a wait ran past {DEADLINE:?}, or a wrong value came back)"
        );
        match child.wait_timeout(DEADLINE) {
            Some(0) => {}
            Some(code) => panic!("ping-pong child failed with {code}"),
            None => panic!("ping-pong child still running after {DEADLINE:?}"),
        }
        let sums = m.sum() + sh.child_sum.load(Relaxed);
        (m.time(wall, sums), sh.switches.load(Relaxed))
    })
}

/// Benches `name` in `group`: the ping-pong through `make()` timed by `m`,
/// after a sanity run that prints the time per round trip and how often the
/// child slept.
fn bench_pingpong<P: PingPong>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    group: &str,
    name: &str,
    make: impl Fn() -> P,
    m: &impl Marks,
) {
    let sh = PingPongShared::new();
    let (t, slept) = pingpong(&sh, &make, m, SANITY_ROUNDS);
    eprintln!(
        "sanity {group}/{name}: {SANITY_ROUNDS} round trips, values checked, {:.2} us each, \
         child slept {:.2} times per round trip",
        t.as_secs_f64() * 1e6 / SANITY_ROUNDS as f64,
        slept as f64 / SANITY_ROUNDS as f64
    );
    g.bench_function(name, |b| {
        b.iter_custom(|iters| pingpong(&sh, &make, m, iters).0);
    });
}

/// A ping-pong group: many short samples (one fork each) let the median
/// ride over the scheduler noise of a small machine.
fn pingpong_settings(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(60)
        .measurement_time(Duration::from_secs(2));
}

/// `pingpong_spin`: two channels with spinning `try_pop` against the raw
/// shared-memory spin ping-pong.
fn pingpong_spin(c: &mut Criterion) {
    let group = "pingpong_spin";
    let mut g = c.benchmark_group(group);
    pingpong_settings(&mut g);
    bench_pingpong(
        &mut g,
        group,
        "spsc x2, try_pop spin",
        || SpscPair::new(false),
        &Wall,
    );
    bench_pingpong(&mut g, group, "raw shared-memory spin", RawSpin::new, &Wall);
    g.finish();
}

/// The blocking ping-pong groups: two channels with blocking `pop` against
/// the raw futex ping-pong, timed by `m`.
fn blocking_group(c: &mut Criterion, group: &str, m: &impl Marks) {
    let mut g = c.benchmark_group(group);
    pingpong_settings(&mut g);
    bench_pingpong(
        &mut g,
        group,
        "spsc x2, blocking pop",
        || SpscPair::new(true),
        m,
    );
    bench_pingpong(&mut g, group, "raw futex, no spin", || RawFutex::new(0), m);
    bench_pingpong(
        &mut g,
        group,
        "raw futex, spin 100 then wait",
        || RawFutex::new(RAW_SPINS),
        m,
    );
    g.finish();
}

/// `pingpong_blocking`: free-running.
fn pingpong_blocking(c: &mut Criterion) {
    blocking_group(c, "pingpong_blocking", &Wall);
}

/// `wakeup_latency`: paced, every wake-up a real futex wake-up.
fn wakeup_latency(c: &mut Criterion) {
    blocking_group(c, "wakeup_latency", &Latency::new());
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
    targets = spsc_throughput, mpmc_throughput, pingpong_spin, pingpong_blocking, wakeup_latency
}
criterion_main!(benches);
