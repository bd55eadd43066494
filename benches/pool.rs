//! Criterion benches for `Pool`: the cost a task adds.
//!
//! Run with
//!
//! ```text
//! cargo bench --bench pool        # about 30 seconds
//! cargo test --bench pool         # each bench once (CI smoke run)
//! python3 benches/python/pool.py  # Python's Pool, the peer
//! ```
//!
//! Group `pool_per_task` (time per task, `Throughput::Elements`):
//! * `map chunksize 1`: `map_chunked(identity, 0..1000, 1)` on 2 workers,
//!   a task per item.
//! * `map default chunks`: `map(identity, 0..100_000)`, Python's default
//!   chunking (`ceil(len / (4 * workers))`).
//!
//! Group `pool_round_trip`: `apply_async(identity, x)` then `get`, one
//! task in flight.
//!
//! Python's figures for the same three (its `Pool(2)`) come from
//! `benches/python/pool.py`; BENCHMARKS.md has both, with the ratios.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group};
use multiproc::Pool;

fn identity(x: u64) -> u64 {
    x
}

fn per_task(c: &mut Criterion) {
    // The default pool, and one whose workers and waiters sleep at once
    // (no spin): the cost of every hand-off through the kernel.
    let pools = [
        ("", Pool::new(2).expect("pool")),
        (
            ", no spin",
            Pool::builder()
                .processes(2)
                .spin(Duration::ZERO)
                .build()
                .expect("pool"),
        ),
    ];
    let small: Vec<u64> = (0..1000).collect();
    let large: Vec<u64> = (0..100_000).collect();
    for (_, pool) in &pools {
        assert_eq!(pool.map_chunked(identity, &small, 1).unwrap(), small);
    }
    let mut g = c.benchmark_group("pool_per_task");
    for (label, pool) in &pools {
        g.throughput(Throughput::Elements(small.len() as u64));
        g.bench_function(format!("map chunksize 1{label}"), |b| {
            b.iter(|| black_box(pool.map_chunked(identity, &small, 1).unwrap()))
        });
        g.throughput(Throughput::Elements(large.len() as u64));
        g.bench_function(format!("map default chunks{label}"), |b| {
            b.iter(|| black_box(pool.map(identity, large.iter().copied()).unwrap()))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("pool_round_trip");
    for (label, pool) in &pools {
        g.bench_function(format!("apply_async + get{label}"), |b| {
            b.iter(|| black_box(pool.apply_async(identity, 7).unwrap().get().unwrap()))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = per_task
}

fn main() {
    multiproc::init(&[]);
    benches();
    Criterion::default().configure_from_args().final_summary();
}
