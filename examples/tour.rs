//! A tour of `multiproc`: a multi-process numeric job on shared memory.
//!
//! Worker processes (one per core, at least two) start together at a
//! `Barrier` and take blocks of work from a shared `Queue` (the parent
//! queued every block and closed it, so workers stop when it runs dry).
//! For each block they sample `f(x) = 4 / (1 + x^2)` into its slice of one
//! shared `RawArray<f64>` with no lock and count their progress in a shared
//! `AtomicValue<u64>`; at the end each adds its partial sum into a
//! lock-protected `Value<f64>`, merges its extremes under a `Mutex` and
//! sends a report (a serde struct) through a `MessageQueue`; the leader of
//! the closing barrier sets an `Event` that the parent waits on. The parent
//! then integrates the samples (the integral over `[0, 1]` is pi) and checks
//! the workers' own sums against its own. Then it measures the primitives
//! it used.
//!
//! Run: `cargo run --release --example tour`
//!
//! Workers are `Process`es started by fork (daemons: they die with the
//! tour if it is killed); `cargo run --example processes` shows the spawn
//! start method.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::{Duration, Instant};

use multiproc::SharedObject;
use multiproc::{
    Array, AtomicValue, Barrier, Event, MessageQueue, Mutex, Process, Queue, RawArray, RecvError,
    Value,
};
use serde::{Deserialize, Serialize};

/// Samples of the integrand.
const SAMPLES: usize = 1 << 24;

/// Samples per block of work.
const BLOCK: usize = 64 * 1024;

/// What a worker reports when the job queue runs dry.
#[derive(Debug, Serialize, Deserialize)]
struct Report {
    worker: usize,
    pid: u32,
    blocks: u32,
    partial: f64,
}

fn f(x: f64) -> f64 {
    4.0 / (1.0 + x * x)
}

fn main() -> multiproc::Result<()> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2);
    println!(
        "multiproc tour: {workers} worker processes, {SAMPLES} samples of 4/(1+x^2) on [0, 1]"
    );

    // --- The job ---------------------------------------------------------
    let samples = RawArray::<f64>::new(SAMPLES)?;
    let progress = AtomicValue::new(0u64)?;
    let total = Value::new(0.0f64)?;
    let extremes = Mutex::new([f64::INFINITY, f64::NEG_INFINITY])?;
    let start = Barrier::new(workers as u32)?;
    let finish = Barrier::new(workers as u32)?;
    let done = Event::new()?;
    let h = 1.0 / (SAMPLES - 1) as f64;
    // Every block of work, as (first sample, count); closed once full, so
    // workers drain it and then see `Closed`.
    let jobs = Queue::<[u64; 2]>::new(SAMPLES / BLOCK)?;
    for start in (0..SAMPLES).step_by(BLOCK) {
        let job = [start as u64, BLOCK.min(SAMPLES - start) as u64];
        jobs.try_put(job).expect("the queue holds every block");
    }
    jobs.close();
    let reports = MessageQueue::<Report>::new(workers, 256)?;

    let started = Instant::now();
    let kids: Vec<_> = (0..workers)
        .map(|w| {
            let (samples, progress, total) = (&samples, &progress, &total);
            let (extremes, start, finish, done) = (&extremes, &start, &finish, &done);
            let (jobs, reports) = (&jobs, &reports);
            spawn_worker(move || {
                if start.wait_timeout(Duration::from_secs(60)).is_err() {
                    return 2;
                }
                let mut partial = 0.0;
                let mut blocks = 0;
                let (mut lo_y, mut hi_y) = (f64::INFINITY, f64::NEG_INFINITY);
                let mut block = vec![0.0f64; BLOCK];
                // Take blocks until the queue is closed and drained.
                while let Ok([first, n]) = jobs.try_get() {
                    let (first, n) = (first as usize, n as usize);
                    for (k, y) in block[..n].iter_mut().enumerate() {
                        *y = f((first + k) as f64 * h);
                        partial += *y;
                        lo_y = lo_y.min(*y);
                        hi_y = hi_y.max(*y);
                    }
                    if samples.write_at(first, &block[..n]).is_err() {
                        return 1;
                    }
                    progress.fetch_add(n as u64, Relaxed);
                    blocks += 1;
                }
                let report = Report {
                    worker: w,
                    pid: std::process::id(),
                    blocks,
                    partial,
                };
                if reports
                    .put_timeout(report, Duration::from_secs(60))
                    .is_err()
                {
                    return 4;
                }
                *total.lock().unwrap() += partial;
                {
                    let mut e = extremes.lock().unwrap();
                    e[0] = e[0].min(lo_y);
                    e[1] = e[1].max(hi_y);
                }
                match finish.wait_timeout(Duration::from_secs(60)) {
                    Ok(r) if r.is_leader() => done.set(),
                    Ok(_) => {}
                    Err(_) => return 3,
                }
                0
            })
        })
        .collect();
    let names: Vec<String> = kids
        .iter()
        .map(|k| format!("{} (pid {})", k.name(), k.pid().unwrap_or(0)))
        .collect();
    println!("  started daemon workers by fork: {}", names.join(", "));
    let mut polls = 0;
    while done.wait_timeout(Duration::from_millis(1)).is_err()
        && started.elapsed() < Duration::from_secs(60)
    {
        polls += 1;
    }
    assert_eq!(
        progress.load(Relaxed),
        SAMPLES as u64,
        "progress counter is off"
    );
    for k in kids {
        let code = wait(&k, Duration::from_secs(60));
        assert_eq!(code, Some(0), "worker failed");
    }
    let fill_time = started.elapsed();
    let mut per_worker = vec![0u32; workers];
    let mut reported = 0.0;
    for _ in 0..workers {
        let r = reports
            .get_timeout(Duration::from_secs(60))
            .expect("a report");
        per_worker[r.worker] = r.blocks;
        reported += r.partial;
        assert_ne!(r.pid, std::process::id(), "the work ran in other processes");
    }
    assert_eq!(reports.try_get().unwrap_err(), RecvError::Empty);
    assert_eq!(
        per_worker.iter().sum::<u32>() as usize,
        SAMPLES / BLOCK,
        "blocks lost or taken twice"
    );

    // Trapezoid rule over the shared samples, read in one bulk copy.
    let mut ys = vec![0.0f64; SAMPLES];
    samples.copy_to_slice(&mut ys)?;
    let sum: f64 = ys.iter().sum();
    let pi = h * (sum - 0.5 * (ys[0] + ys[SAMPLES - 1]));
    let workers_sum = total.get();
    let [lo_y, hi_y] = *extremes.lock().unwrap();
    println!(
        "  filled {SAMPLES} samples in {:.1} ms ({:.0} M samples/s, {:.2} GB/s into shared memory); parent checked the done Event {polls} times",
        ms(fill_time),
        SAMPLES as f64 / fill_time.as_secs_f64() / 1e6,
        (SAMPLES * 8) as f64 / fill_time.as_secs_f64() / 1e9,
    );
    println!(
        "  pi ~ {pi:.12} (error {:.1e}); workers' locked sum {workers_sum:.6} vs parent's {sum:.6}",
        (pi - std::f64::consts::PI).abs()
    );
    println!("  f ranged over [{lo_y:.6}, {hi_y:.6}] (merged under a Mutex; exact: [2, 4])");
    println!(
        "  {} blocks of {BLOCK} samples taken from a shared Queue, per worker: {per_worker:?}; reports sent through a MessageQueue add up to {reported:.6}",
        SAMPLES / BLOCK
    );
    assert!(
        (reported - workers_sum).abs() <= 1e-6 * sum,
        "reports disagree with the locked sum"
    );
    assert!(
        (pi - std::f64::consts::PI).abs() < 1e-9,
        "integration went wrong"
    );
    assert!(
        (lo_y - 2.0).abs() < 1e-12 && (hi_y - 4.0).abs() < 1e-12,
        "extremes went wrong"
    );
    assert!(
        (workers_sum - sum).abs() <= 1e-6 * sum,
        "partial sums were lost"
    );

    // --- The primitives, measured ----------------------------------------
    println!("primitives, measured now on this machine:");
    const N: u64 = 1_000_000;
    let counter = AtomicValue::new(0u64)?;
    let t = race_two_processes(|| {
        for _ in 0..N {
            counter.fetch_add(1, Relaxed);
        }
    });
    assert_eq!(counter.load(SeqCst), 2 * N);
    println!(
        "  AtomicValue::fetch_add, 2 processes x {N}: {:.1} ns per increment ({:.0} M/s)",
        t.as_nanos() as f64 / (2 * N) as f64,
        (2 * N) as f64 / t.as_secs_f64() / 1e6
    );

    const L: u64 = 200_000;
    let locked = Value::new(0u64)?;
    let t = race_two_processes(|| {
        for _ in 0..L {
            *locked.lock().unwrap() += 1;
        }
    });
    assert_eq!(locked.get(), 2 * L);
    println!(
        "  Value lock + increment, 2 processes x {L}: {:.1} ns per increment ({:.1} M/s; Python's `with v.get_lock()` does about 0.3-0.4 M/s)",
        t.as_nanos() as f64 / (2 * L) as f64,
        (2 * L) as f64 / t.as_secs_f64() / 1e6
    );

    const R: u32 = 2_000;
    let (ping, pong) = (Event::new()?, Event::new()?);
    let kid = spawn_worker(|| {
        for _ in 0..R {
            if ping.wait_timeout(Duration::from_secs(60)).is_err() {
                return 4;
            }
            ping.clear();
            pong.set();
        }
        0
    });
    let t = Instant::now();
    for _ in 0..R {
        ping.set();
        assert!(
            pong.wait_timeout(Duration::from_secs(60)).is_ok(),
            "ping-pong stalled"
        );
        pong.clear();
    }
    let t = t.elapsed();
    assert_eq!(
        wait(&kid, Duration::from_secs(60)),
        Some(0),
        "ping-pong child failed"
    );
    println!(
        "  Event ping-pong between 2 processes: {:.1} us per round trip (Python's Event pair: about 45-50 us)",
        t.as_secs_f64() * 1e6 / f64::from(R)
    );

    const Q: u64 = 1_000_000;
    let q = Queue::<u64>::new(1024)?;
    let kid = spawn_worker(|| {
        for i in 0..Q {
            if q.put_timeout(i, Duration::from_secs(60)).is_err() {
                return 5;
            }
        }
        0
    });
    let t = Instant::now();
    let mut got = 0u64;
    for _ in 0..Q {
        got += q
            .get_timeout(Duration::from_secs(60))
            .expect("queue stalled");
    }
    let t = t.elapsed();
    assert_eq!(
        wait(&kid, Duration::from_secs(60)),
        Some(0),
        "producer failed"
    );
    assert_eq!(got, Q * (Q - 1) / 2, "items lost");
    println!(
        "  Queue<u64> put/get between 2 processes: {:.1} M items/s (Python's Queue: about 0.08 M/s)",
        Q as f64 / t.as_secs_f64() / 1e6
    );

    let (near, far) = multiproc::pipe::<(u32, String)>()?;
    let kid = spawn_worker(|| {
        while let Ok(m) = far.recv_timeout(Duration::from_secs(60)) {
            if far.send(m).is_err() {
                return 6;
            }
        }
        0
    });
    let t = Instant::now();
    for i in 0..R {
        near.send((i, "ping".to_owned())).expect("send");
        let back = near.recv_timeout(Duration::from_secs(60)).expect("echo");
        assert_eq!(back.0, i);
    }
    let t = t.elapsed();
    near.close();
    assert_eq!(
        wait(&kid, Duration::from_secs(60)),
        Some(0),
        "echo child failed"
    );
    println!(
        "  Pipe round trip of a (u32, String) between 2 processes: {:.1} us (Python's Pipe: about 56 us)",
        t.as_secs_f64() * 1e6 / f64::from(R)
    );

    let bytes = 64 << 20;
    let src = vec![1.5f64; bytes / 8];
    let arr = Array::<f64>::new(bytes / 8)?;
    let mut heap = vec![0.0f64; bytes / 8];
    arr.copy_from_slice(&src)?; // touch the pages once
    heap.copy_from_slice(&src);
    let (mut shared_best, mut heap_best) = (Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        let t = Instant::now();
        arr.copy_from_slice(&src)?;
        shared_best = shared_best.min(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(&mut heap).copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&heap);
        heap_best = heap_best.min(t.elapsed());
    }
    println!(
        "  Array::copy_from_slice 64 MiB: {:.2} GB/s; heap copy_from_slice: {:.2} GB/s (ratio {:.2})",
        bytes as f64 / shared_best.as_secs_f64() / 1e9,
        bytes as f64 / heap_best.as_secs_f64() / 1e9,
        heap_best.as_secs_f64() / shared_best.as_secs_f64()
    );

    let t = Instant::now();
    let many: Vec<_> = (0..10_000u64).map(Value::new).collect::<Result<_, _>>()?;
    let made = t.elapsed();
    let segments: std::collections::HashSet<_> = many
        .iter()
        .map(|v| v.descriptor().segment().clone())
        .collect();
    println!(
        "  10,000 Value<u64> created in {:.2} ms ({:.2} us each), sharing {} memfd segment(s)",
        ms(made),
        made.as_secs_f64() * 1e6 / 10_000.0,
        segments.len()
    );
    println!("done.");
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Starts a daemon worker `Process` (by fork) that runs `job` and exits with
/// its return value.
fn spawn_worker<'a>(job: impl FnOnce() -> i32 + Send + 'a) -> Process<'a> {
    let mut p = Process::fork(job).with_daemon(true);
    p.start().expect("start a worker process");
    p
}

/// Waits up to `timeout` for a worker's exit code; kills it after that.
fn wait(p: &Process<'_>, timeout: Duration) -> Option<i32> {
    match p.join_timeout(timeout) {
        Ok(code) => Some(code),
        _ => {
            let _ = p.kill();
            let _ = p.join();
            None
        }
    }
}

/// Runs `work` in this process and in a forked child at once, released
/// together by a shared flag; returns the wall time until both finished.
fn race_two_processes(work: impl Fn() + Sync) -> Duration {
    let go = AtomicValue::new(0u32).expect("flag");
    let kid = spawn_worker(|| {
        let give_up = Instant::now() + Duration::from_secs(60);
        while go.load(SeqCst) == 0 {
            if Instant::now() > give_up {
                return 3;
            }
            std::hint::spin_loop();
        }
        work();
        0
    });
    std::thread::sleep(Duration::from_millis(5));
    let t = Instant::now();
    go.store(1, SeqCst);
    work();
    let code = wait(&kid, Duration::from_secs(60));
    let elapsed = t.elapsed();
    assert_eq!(code, Some(0), "racing child failed");
    elapsed
}
