//! `Pool` across real processes: the tutorials' examples, CPython's pool
//! semantics (ordering, chunk sizes, errors, `maxtasksperchild`,
//! `initializer`, `terminate`), and the faults Python's pool hangs on: a
//! worker killed mid-task or idle, a task past its timeout, a panic, a
//! dropped busy pool. Every wait has a deadline; spawned workers re-run
//! this binary's `spawn_child`.

mod common;

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::DEADLINE;
use multiproc::testing::ForTest;
use multiproc::{AtomicValue, Error, Pool, PoolBuilder, RawArray, StartMethod, TaskError};

/// The spawned workers' `main`.
#[test]
#[ignore = "child half of the spawn pool tests"]
fn spawn_child() {
    multiproc::init(&[]);
}

/// Aborts the test binary (its daemon workers die with it) if the tests
/// have not finished in twice the deadline: a pool call without a
/// deadline must fail the run, never hang it.
fn watchdog() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::thread::spawn(|| {
            std::thread::sleep(2 * DEADLINE);
            eprintln!("tests/pool.rs: past twice the deadline, aborting");
            std::process::abort();
        });
    });
}

fn plain() -> PoolBuilder {
    watchdog();
    Pool::builder()
}

fn new_pool(n: usize) -> Pool {
    plain().processes(n).build().unwrap()
}

fn builder(method: StartMethod, n: usize) -> PoolBuilder {
    plain()
        .processes(n)
        .start_method(method)
        .for_test("spawn_child")
}

const BOTH: [StartMethod; 2] = [StartMethod::Fork, StartMethod::Spawn];

fn square(x: u64) -> u64 {
    x * x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn boom(x: u64) -> u64 {
    if x == 3 {
        panic!("three is right out");
    }
    x
}

/// Kills its own worker on 0.
fn die_on_zero(x: u64) -> u64 {
    if x == 0 {
        // SAFETY: raising a signal in this (worker) process.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    x + 1
}

fn pid_of(_: u64) -> u32 {
    std::process::id()
}

fn map_within(pool: &Pool, items: Vec<u64>) -> Vec<u64> {
    pool.map_async(square, items)
        .unwrap()
        .get_timeout(DEADLINE)
        .unwrap()
}

#[test]
fn the_tutorials_square_map() {
    for method in BOTH {
        let pool = builder(method, 5).build().unwrap();
        assert_eq!(map_within(&pool, vec![1, 2, 3]), [1, 4, 9], "{method:?}");
        let r = pool.apply_async(square, 7).unwrap();
        assert_eq!(r.get_timeout(DEADLINE).unwrap(), 49);
        assert!(r.ready());
        assert_eq!(r.successful(), Some(true));
        assert_eq!(r.get().unwrap(), 49, "get can be repeated");
        pool.close();
        pool.join_timeout(DEADLINE).unwrap();
    }
}

#[test]
fn twenty_apply_async_then_close_and_join() {
    let pool = new_pool(3);
    let rs: Vec<_> = (0..20u64)
        .map(|i| pool.apply_async(square, i).unwrap())
        .collect();
    pool.close();
    assert!(matches!(
        pool.apply_async(square, 1),
        Err(Error::PoolClosed)
    ));
    pool.join_timeout(DEADLINE).unwrap();
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.get_timeout(DEADLINE).unwrap(), (i * i) as u64);
    }
}

#[test]
fn a_long_task_times_out_at_get_and_terminate_returns() {
    let pool = new_pool(2);
    let r = pool.apply_async(sleep_ms, 10_000).unwrap();
    assert!(matches!(
        r.get_timeout(Duration::from_millis(300)),
        Err(Error::Timeout)
    ));
    let pids = pool.worker_pids();
    pool.terminate();
    assert!(matches!(
        r.get_timeout(DEADLINE),
        Err(Error::Task(TaskError::Terminated))
    ));
    for pid in pids {
        common::assert_gone(pid);
    }
}

#[test]
fn imap_orders_and_imap_unordered_gives_the_same_multiset() {
    let pool = new_pool(3);
    let ordered: Vec<u64> = pool.imap(square, 0..200u64).map(|r| r.unwrap()).collect();
    assert_eq!(ordered, (0..200u64).map(square).collect::<Vec<_>>());
    let chunked: Vec<u64> = pool
        .imap_chunked(square, 0..200u64, 7)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(chunked, ordered);
    let mut any: Vec<u64> = pool
        .imap_unordered(square, 0..200u64)
        .map(|r| r.unwrap())
        .collect();
    any.sort_unstable();
    assert_eq!(any, ordered);
}

#[test]
fn imap_reads_an_endless_input_lazily_and_next_timeout_waits() {
    let pool = new_pool(2);
    let mut it = pool.imap(square, 0u64..).with_window(4);
    for i in 0..50u64 {
        assert_eq!(it.next_timeout(DEADLINE).unwrap().unwrap(), i * i);
    }
    let mut slow = pool.imap(sleep_ms, [2_000u64]);
    assert!(matches!(
        slow.next_timeout(Duration::from_millis(100)),
        Some(Err(Error::Timeout))
    ));
}

#[test]
fn a_callback_sees_every_result_once() {
    let pool = new_pool(2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let mut rs = Vec::new();
    for i in 0..30u64 {
        let (s, e) = (seen.clone(), errors.clone());
        rs.push(
            pool.apply_async_with(
                boom,
                i,
                move |r| s.lock().unwrap().push(r),
                move |err| e.lock().unwrap().push(err.to_string()),
            )
            .unwrap(),
        );
    }
    for r in &rs {
        r.wait_timeout(DEADLINE);
    }
    pool.close();
    pool.join_timeout(DEADLINE).unwrap();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, (0..30u64).filter(|&i| i != 3).collect::<Vec<_>>());
    let errors = errors.lock().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("three is right out"), "{errors:?}");
}

#[test]
fn chunksize_edge_cases() {
    let pool = new_pool(2);
    let items: Vec<u64> = (0..37).collect();
    let want: Vec<u64> = items.iter().map(|&x| x * x).collect();
    for chunk in [1, 5, 36, 37, 1000] {
        assert_eq!(
            pool.map_chunked(square, &items, chunk).unwrap(),
            want,
            "{chunk}"
        );
    }
    assert!(pool.map(square, Vec::<u64>::new()).unwrap().is_empty());
    assert!(pool.imap(square, Vec::<u64>::new()).next().is_none());
}

#[test]
fn a_panic_comes_back_with_its_message_and_the_worker_goes_on() {
    for method in BOTH {
        let pool = builder(method, 2).build().unwrap();
        let e = pool
            .map_async(boom, 0..6u64)
            .unwrap()
            .get_timeout(DEADLINE)
            .unwrap_err();
        match e {
            Error::Task(TaskError::Panicked { message }) => {
                assert!(message.contains("three is right out"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let pids = pool.worker_pids();
        assert_eq!(map_within(&pool, vec![4]), [16]);
        assert_eq!(pool.worker_pids(), pids, "no worker was replaced");
    }
}

#[test]
fn max_tasks_per_child_replaces_workers() {
    let pool = plain().processes(2).max_tasks_per_child(3).build().unwrap();
    // Chunks of one: a chunk is a task.
    let mut it = pool.imap(pid_of, 0..30u64);
    let pids: Vec<u32> = (0..30)
        .map(|_| it.next_timeout(DEADLINE).unwrap().unwrap())
        .collect();
    let mut distinct = pids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() >= 10, "30 tasks, 3 a worker: {distinct:?}");
    for pid in &distinct {
        assert!(pids.iter().filter(|p| *p == pid).count() <= 3);
    }
}

fn count_start(counter: AtomicValue<u64>) {
    counter.fetch_add(1, Ordering::SeqCst);
}

fn fail_start(_: ()) {
    panic!("no database");
}

#[test]
fn the_initializer_runs_once_per_worker() {
    for method in BOTH {
        let counter = AtomicValue::new(0u64).unwrap();
        let pool = builder(method, 3)
            .initializer(count_start, counter.clone())
            .build()
            .unwrap();
        assert_eq!(map_within(&pool, (0..100).collect()).len(), 100);
        pool.close();
        pool.join_timeout(DEADLINE).unwrap();
        assert_eq!(counter.load(Ordering::SeqCst), 3, "{method:?}");
    }
}

#[test]
fn a_failing_initializer_is_reported() {
    let pool = plain()
        .processes(2)
        .initializer(fail_start, ())
        .build()
        .unwrap();
    let r = pool.apply_async(square, 2);
    let e = match r {
        Ok(r) => r.get_timeout(DEADLINE).unwrap_err(),
        Err(e) => e,
    };
    match e {
        Error::Task(TaskError::InitializerFailed { message }) => {
            assert!(message.contains("no database"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_worker_killed_mid_task_fails_only_that_task_100_times() {
    for (method, kills) in [(StartMethod::Fork, 100u64), (StartMethod::Spawn, 5)] {
        let pool = builder(method, 2).build().unwrap();
        let rs: Vec<_> = (0..kills * 3)
            .map(|i| pool.apply_async(die_on_zero, i % 3).unwrap())
            .collect();
        for (i, r) in rs.iter().enumerate() {
            match (i % 3, r.get_timeout(DEADLINE)) {
                (
                    0,
                    Err(Error::Task(TaskError::WorkerDied {
                        exit_code, name, ..
                    })),
                ) => {
                    assert_eq!(exit_code, -9);
                    assert!(name.contains("PoolWorker"), "{name}");
                }
                (k, Ok(v)) if k != 0 => assert_eq!(v, k as u64 + 1),
                other => panic!("{method:?} task {i}: {other:?}"),
            }
        }
        assert_eq!(pool.worker_pids().len(), 2);
    }
}

#[test]
fn a_task_past_its_timeout_fails_and_its_worker_is_replaced() {
    let pool = plain()
        .processes(1)
        .task_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let before = pool.worker_pids();
    let slow = pool.apply_async(sleep_ms, 20_000).unwrap();
    let next = pool.apply_async(square, 5).unwrap();
    assert!(matches!(
        slow.get_timeout(DEADLINE),
        Err(Error::Task(TaskError::TimedOut { .. }))
    ));
    assert_eq!(next.get_timeout(DEADLINE).unwrap(), 25);
    assert_ne!(pool.worker_pids(), before);
}

#[test]
fn a_worker_killed_while_idle_is_replaced() {
    let pool = new_pool(2);
    let pid = pool.worker_pids()[0];
    // SAFETY: SIGKILL to our own worker.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert_eq!(map_within(&pool, (0..50).collect()).len(), 50);
    let deadline = std::time::Instant::now() + DEADLINE;
    while pool.worker_pids().contains(&pid) {
        assert!(std::time::Instant::now() < deadline, "never replaced");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(pool.worker_pids().len(), 2);
}

#[test]
fn dropping_a_busy_pool_leaves_no_process() {
    let pool = new_pool(2);
    let pids = pool.worker_pids();
    let r = pool.map_async(sleep_ms, vec![5_000u64; 4]).unwrap();
    drop(pool);
    assert!(matches!(
        r.get_timeout(DEADLINE),
        Err(Error::Task(TaskError::Terminated))
    ));
    for pid in pids {
        common::assert_gone(pid);
    }
}

fn big(n: u64) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn len_of(v: Vec<u8>) -> usize {
    v.len()
}

#[test]
fn bad_input() {
    assert!(matches!(Pool::new(0), Err(Error::InvalidSize { .. })));
    assert!(matches!(Pool::new(100_000), Err(Error::InvalidSize { .. })));
    assert!(matches!(
        Pool::builder().processes(1).max_message_size(10).build(),
        Err(Error::InvalidSize { .. })
    ));
    let pool = plain().processes(1).max_message_size(4096).build().unwrap();
    assert!(matches!(pool.join(), Err(Error::PoolRunning)));
    // A result far over the message size comes back whole, in parts.
    let v = pool.apply_async(big, 1_000_000).unwrap();
    assert_eq!(v.get_timeout(DEADLINE).unwrap(), big(1_000_000));
    // An argument over it is refused, and nothing was submitted.
    assert!(matches!(
        pool.apply_async(len_of, vec![0u8; 10_000]),
        Err(Error::TooLarge { .. })
    ));
    // A map whose chunks would be too large is split, not refused.
    let items: Vec<Vec<u8>> = (0..20).map(|_| vec![7u8; 1000]).collect();
    assert_eq!(
        pool.map_chunked(len_of, &items, 20).unwrap(),
        vec![1000usize; 20]
    );
    pool.close();
    assert!(matches!(pool.map(square, [1]), Err(Error::PoolClosed)));
    pool.join_timeout(DEADLINE).unwrap();
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn fma(a: f64, b: f64, c: f64) -> f64 {
    a * b + c
}

#[test]
fn starmap_of_two_and_three() {
    let pool = new_pool(2);
    assert_eq!(pool.starmap(add, [(1, 2), (3, 4)]).unwrap(), [3, 7]);
    assert_eq!(pool.starmap3(fma, [(2.0, 3.0, 1.0)]).unwrap(), [7.0]);
    assert_eq!(pool.apply(square, 9).unwrap(), 81);
}

fn negate(xs: &RawArray<f64>, r: Range<usize>) -> usize {
    let n = r.len();
    for i in r {
        xs.set(i, -xs.get(i).unwrap()).unwrap();
    }
    n
}

#[test]
fn map_ranges_works_in_place_under_both_methods() {
    for method in BOTH {
        let xs = RawArray::<f64>::new(100_000).unwrap();
        for i in 0..100_000 {
            xs.set(i, i as f64).unwrap();
        }
        let pool = builder(method, 2).build().unwrap();
        let counts = pool
            .map_ranges_async(negate, &xs, 100_000, 0)
            .unwrap()
            .get_timeout(DEADLINE)
            .unwrap();
        assert_eq!(counts.iter().sum::<usize>(), 100_000);
        assert_eq!(
            counts.len(),
            100_000usize.div_ceil(100_000usize.div_ceil(8))
        );
        for i in (0..100_000).step_by(997) {
            assert_eq!(xs.get(i), Some(-(i as f64)), "{method:?}");
        }
    }
}

/// Waiters that take results themselves (several at once, results in
/// parts among them) and waiters that sleep at once get the same results,
/// under both start methods.
#[test]
fn helping_and_sleeping_waiters_get_the_same_results() {
    for method in BOTH {
        for spin in [
            Duration::ZERO,
            multiproc::DEFAULT_SPIN,
            Duration::from_millis(2),
        ] {
            let pool = builder(method, 2)
                .spin(spin)
                .max_message_size(512)
                .build()
                .unwrap();
            let items: Vec<u64> = (0..300).collect();
            let want: Vec<u64> = items.iter().map(|&x| square(x)).collect();
            assert_eq!(pool.map_chunked(square, &items, 1).unwrap(), want);
            let got: Vec<u64> = pool.imap(square, 0..300u64).map(|r| r.unwrap()).collect();
            assert_eq!(got, want, "{method:?} {spin:?}");
            std::thread::scope(|s| {
                for t in 0..3u64 {
                    let pool = &pool;
                    s.spawn(move || {
                        for i in 0..20 {
                            // Results of up to 5 parts, taken by whichever
                            // waiter comes first.
                            let n = 300 + 400 * ((t + i) % 5);
                            let r = pool.apply_async(big, n).unwrap();
                            assert_eq!(r.get_timeout(DEADLINE).unwrap(), big(n));
                        }
                    });
                }
            });
            pool.close();
            pool.join_timeout(DEADLINE).unwrap();
        }
    }
}
