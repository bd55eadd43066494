//! Criterion benches for starting and joining a process.
//!
//! Run with
//!
//! ```text
//! cargo bench --bench process     # about 30 seconds
//! cargo test --bench process      # each bench once (CI smoke run)
//! ```
//!
//! One group, `process_start_join`: start a child that does nothing and
//! wait for it to exit, one child per iteration.
//!
//! * `raw fork+waitpid`: `libc::fork`, the child `_exit(0)`s, the parent
//!   `waitpid`s it. The SPEC's peer for `Process::fork`.
//! * `Process::fork`: `Process::fork(|| ())`, `start`, `join`: a status pipe,
//!   `fork`, a pidfd, the child's `catch_unwind` and `_exit`, and the reap.
//! * `raw Command spawn`: `std::process::Command` (posix_spawn) of this
//!   same bench binary, whose `main` exits at once when it sees
//!   `MULTIPROC_BENCH_RAW_CHILD`; `status()` waits for it. The peer for
//!   `Process::spawn`.
//! * `Process::spawn`: `Process::spawn(Nothing)`: the boot memfd, the status
//!   pipe, posix_spawn of this binary, `multiproc::init` at the top of its
//!   `main` (reads the boot record, handshake, runs the entry, exits), and
//!   the reap.
//! * `Process::spawn, Value argument`: the same with a shared `Value<u64>`
//!   in the entry (its memfd inherited, attached and validated in the
//!   child, which adds one to it).
//!
//! Both spawn contestants run the same binary and leave at the top of its
//! `main`, so the difference is what the crate adds. Every contestant is
//! checked once before it is measured. `benches/python/process.py` measures
//! Python's `Process(target=f).start(); p.join()` with fork and spawn.

use std::hint::black_box;
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use multiproc::{Entry, EntryPoint, Process, Value};
use serde::{Deserialize, Serialize};

/// Environment variable that makes this binary exit at the top of `main`
/// (the raw `Command` peer's child).
const RAW_CHILD: &str = "MULTIPROC_BENCH_RAW_CHILD";

/// An entry that does nothing.
#[derive(Serialize, Deserialize)]
struct Nothing;

impl Entry for Nothing {
    type Output = ();
    fn run(self) {}
}

/// An entry that adds one to a shared counter.
#[derive(Serialize, Deserialize)]
struct AddOne {
    counter: Value<u64>,
}

impl Entry for AddOne {
    type Output = ();
    fn run(self) {
        *self.counter.lock().unwrap() += 1;
    }
}

fn raw_fork_wait() {
    // SAFETY: the child only calls `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: leaves the child at once.
        unsafe { libc::_exit(0) };
    }
    assert!(pid > 0, "fork failed");
    let mut status = 0;
    // SAFETY: waits for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
}

fn process_fork() {
    let mut p = Process::fork(|| ());
    p.start().expect("start");
    assert_eq!(p.join().expect("join"), 0);
}

fn raw_command() {
    let status = Command::new("/proc/self/exe")
        .env(RAW_CHILD, "1")
        .status()
        .expect("spawn");
    assert!(status.success());
}

fn process_spawn<E: Entry + Send + 'static>(entry: E) {
    let mut p = Process::spawn(entry);
    p.start().expect("start");
    assert_eq!(p.join().expect("join"), 0, "{:?}", p.failure());
}

/// `process_start_join`: see the module docs.
fn start_join(c: &mut Criterion) {
    let counter = Value::new(0u64).expect("Value::new");
    // Sanity: each contestant runs a child that exits with 0 (asserted
    // inside), and a spawned child really attaches its argument.
    raw_fork_wait();
    process_fork();
    raw_command();
    process_spawn(Nothing);
    process_spawn(AddOne {
        counter: counter.clone(),
    });
    assert_eq!(
        counter.get(),
        1,
        "the spawned child did not reach the Value"
    );

    let mut g = c.benchmark_group("process_start_join");
    g.bench_function("raw fork+waitpid", |b| b.iter(raw_fork_wait));
    g.bench_function("Process::fork", |b| b.iter(process_fork));
    g.bench_function("raw Command spawn", |b| b.iter(raw_command));
    g.bench_function("Process::spawn", |b| b.iter(|| process_spawn(Nothing)));
    g.bench_function("Process::spawn, Value argument", |b| {
        b.iter(|| {
            process_spawn(AddOne {
                counter: black_box(counter.clone()),
            })
        })
    });
    g.finish();
}

/// Criterion settings for small, noisy machines: short warm-up, few samples.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = start_join
}

fn main() {
    // A child of `Process::spawn` runs its entry here and exits.
    multiproc::init(&[EntryPoint::of::<Nothing>(), EntryPoint::of::<AddOne>()]);
    // The raw `Command` peer's child.
    if std::env::var_os(RAW_CHILD).is_some() {
        std::process::exit(0);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
