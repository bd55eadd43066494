//! Criterion benches for variable-size `serde` messages between processes:
//! [`MessageQueue`] throughput and [`Pipe`] round trips, next to in-process
//! references in the same run.
//!
//! ```text
//! cargo bench --bench messages          # about a minute
//! cargo test --bench messages           # each bench once (CI smoke run)
//! python3 benches/python/queues.py      # CPython's Queue and Pipe figures
//! ```
//!
//! * `message_throughput`: a forked child puts `n` messages, the parent gets
//!   and times them; one criterion iteration is one message. Payloads:
//!   `u64` (what `queues.py`'s `queue_throughput` sends: Python ints) and the
//!   spec's tuple `(i32, Option<()>, String)` with a 12-byte string.
//!   Contestants: `MessageQueue` `put`/`get` (blocking) across two
//!   processes, and the Pod [`Queue`] for `u64` (no encoding at all).
//!   Reference: crossbeam's `ArrayQueue` of the same tuples between two
//!   threads (no encoding, no process boundary), spinning on full/empty.
//!   Compare with CPython's `queue_throughput` (`multiprocessing.Queue`).
//! * `pipe_roundtrip`: the parent sends `i` over a [`pipe`] and waits for
//!   the child's echo; the time is per round trip. Compare with CPython's
//!   `pipe_roundtrip`.
//!
//! Every run checks what arrived (the sum of the values, the echoes); every
//! blocking call here has a deadline, so a bug fails the bench rather than
//! hanging it. Children leave with `_exit` and die with the parent.

#[path = "../tests/common/mod.rs"]
mod common;
mod two_sides;

use std::sync::atomic::Ordering::Release;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_queue::ArrayQueue;
use multiproc::{MessageQueue, Queue, pipe};
use two_sides::{DEADLINE, Handshake, wait_flag};

/// Slots of every queue here.
const CAPACITY: usize = 1024;

/// The tuple payload of the spec.
type Tuple = (i32, Option<()>, String);

fn tuple(i: u64) -> Tuple {
    (i as i32, None, "twelve bytes".to_owned())
}

/// Forks a producer running `produce(n)`; times the parent's `consume(n)`
/// from the start flag; checks both succeeded.
fn producer_consumer(
    hs: &Handshake,
    n: u64,
    produce: impl Fn(u64) -> bool,
    consume: impl FnOnce(u64) -> bool,
) -> Duration {
    hs.reset();
    let child = common::fork(|| if hs.peer(|| produce(n)) { 0 } else { 2 });
    assert!(
        wait_flag(&hs.ready, Instant::now() + DEADLINE),
        "child never became ready"
    );
    let start = Instant::now();
    hs.go.store(1, Release);
    let ok = consume(n);
    let elapsed = start.elapsed();
    assert!(ok, "consumer failed (lost, wrong or late messages)");
    assert_eq!(child.join(), 0, "producer failed");
    elapsed
}

fn message_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("message_throughput");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    let hs = Handshake::new();

    g.bench_function("MessageQueue<u64> put/get, 2 processes", |b| {
        b.iter_custom(|n| {
            let q = MessageQueue::<u64>::new(CAPACITY, 16).unwrap();
            producer_consumer(
                &hs,
                n,
                |n| (0..n).all(|i| q.put_timeout(i, DEADLINE).is_ok()),
                |n| {
                    let mut sum = 0u64;
                    for _ in 0..n {
                        match q.get_timeout(DEADLINE) {
                            Ok(v) => sum = sum.wrapping_add(v),
                            Err(_) => return false,
                        }
                    }
                    sum == n.wrapping_mul(n.wrapping_sub(1)) / 2
                },
            )
        })
    });

    g.bench_function(
        "MessageQueue<(i32, Option<()>, String)> put/get, 2 processes",
        |b| {
            b.iter_custom(|n| {
                let q = MessageQueue::<Tuple>::new(CAPACITY, 48).unwrap();
                producer_consumer(
                    &hs,
                    n,
                    |n| (0..n).all(|i| q.put_timeout(tuple(i), DEADLINE).is_ok()),
                    |n| {
                        (0..n).all(|i| {
                            q.get_timeout(DEADLINE)
                                .is_ok_and(|t| t.0 == i as i32 && t.2.len() == 12)
                        })
                    },
                )
            })
        },
    );

    g.bench_function("Queue<u64> put/get (Pod, reference), 2 processes", |b| {
        b.iter_custom(|n| {
            let q = Queue::<u64>::new(CAPACITY).unwrap();
            producer_consumer(
                &hs,
                n,
                |n| (0..n).all(|i| q.put_timeout(i, DEADLINE).is_ok()),
                |n| (0..n).all(|i| q.get_timeout(DEADLINE) == Ok(i)),
            )
        })
    });

    g.bench_function(
        "ArrayQueue<(i32, Option<()>, String)> (reference), 2 threads",
        |b| {
            b.iter_custom(|n| {
                let q = ArrayQueue::<Tuple>::new(CAPACITY);
                let go = std::sync::Barrier::new(2);
                std::thread::scope(|s| {
                    let q = &q;
                    let go = &go;
                    s.spawn(move || {
                        go.wait();
                        let end = Instant::now() + DEADLINE;
                        for i in 0..n {
                            let mut v = tuple(i);
                            while let Err(back) = q.push(v) {
                                v = back;
                                std::hint::spin_loop();
                                assert!(Instant::now() < end, "ArrayQueue push stalled");
                            }
                        }
                    });
                    go.wait();
                    let start = Instant::now();
                    let end = start + DEADLINE;
                    for i in 0..n {
                        let t = loop {
                            if let Some(t) = q.pop() {
                                break t;
                            }
                            std::hint::spin_loop();
                            assert!(Instant::now() < end, "ArrayQueue pop stalled");
                        };
                        assert_eq!(t.0, i as i32);
                    }
                    start.elapsed()
                })
            })
        },
    );
    g.finish();
}

fn pipe_roundtrip(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipe_roundtrip");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    let hs = Handshake::new();
    g.bench_function("Connection<u64> send/recv echo, 2 processes", |b| {
        b.iter_custom(|n| {
            let (parent, child) = pipe::<u64>().unwrap();
            producer_consumer(
                &hs,
                n,
                |n| {
                    (0..n).all(|_| {
                        child
                            .recv_timeout(DEADLINE)
                            .is_ok_and(|v| child.send_timeout(v, DEADLINE).is_ok())
                    })
                },
                |n| {
                    (0..n).all(|i| {
                        parent.send_timeout(i, DEADLINE).is_ok()
                            && parent.recv_timeout(DEADLINE) == Ok(i)
                    })
                },
            )
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default().configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = message_throughput, pipe_roundtrip
}
criterion_main!(benches);
