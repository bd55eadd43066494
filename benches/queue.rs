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

use two_sides::crowd::{Crowd, array_queue_threads, mpmc_processes};
use two_sides::flow::{CAPACITY, Flow, Mode, peer_2threads, spsc_2proc, spsc_2threads};
use two_sides::pingpong::{PingPong, PingPongShared, RawFutex, RawSpin, SpscPair, pingpong};
use two_sides::waiting::{Spin, with_watchdog};
use two_sides::{Latency, Marks, Wall};

use std::time::Duration;

use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};

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
// spsc_throughput
// --------------------------------------------------------------------------

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
// pingpong_spin, pingpong_blocking, wakeup_latency
// --------------------------------------------------------------------------

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
