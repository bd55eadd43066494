//! The `mpmc_throughput` runs of `benches/queue.rs`: the shared state of a
//! run ([`Crowd`]), one run of ours with forked producers and consumers, and
//! one of the `ArrayQueue` peer on threads.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};
use std::time::{Duration, Instant};

use multiproc::{AtomicValue, Queue, TryGetError};

use super::flow::{CAPACITY, expected_sum};
use super::waiting::{Spin, with_watchdog};
use super::{DEADLINE, wait_flag};
use crate::common;

// --------------------------------------------------------------------------
// mpmc_throughput
// --------------------------------------------------------------------------

/// Shared state of the MPMC runs: start and finish counts, the consumers'
/// sums, and how many producers are done.
pub struct Crowd {
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
    pub fn new() -> Crowd {
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
pub fn mpmc_processes(cr: &Crowd, p: usize, c: usize, n: u64, spin: bool) -> Duration {
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
pub fn array_queue_threads(cr: &Crowd, p: usize, c: usize, n: u64) -> Duration {
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
