//! `Process`, the tutorial examples under both start methods: pids, what a
//! child copies and what it shares, `terminate` and `kill`, `join_timeout`,
//! exit codes, errors and panics.
//!
//! Spawned children re-run this test binary with only the test
//! `spawn_child` selected (`multiproc::testing::ForTest`); that test calls
//! `multiproc::init` with the entries below, and does nothing in a normal
//! run. Every child is joined with a deadline (`finish`), and killed if it
//! overruns.

mod common;

use std::time::{Duration, Instant};

use common::entries::{BOTH, Sleep, assert_reaped, finish, process};
use multiproc::{Array, Entry, EntryPoint, FailureKind, Process};
use serde::{Deserialize, Serialize};

const ENTRIES: &[EntryPoint] = &[
    EntryPoint::of::<ReportPid>(),
    EntryPoint::of::<Negate>(),
    EntryPoint::of::<Exit>(),
    EntryPoint::of::<Sleep>(),
];

/// The spawned children's `main`: runs the entry they were spawned for.
#[test]
#[ignore = "child half of the spawn tests: run by ForTest::for_test"]
fn spawn_child() {
    multiproc::init(ENTRIES);
}

fn getppid() -> u32 {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() as u32 }
}

// --------------------------------------------------------------------------
// Entries
// --------------------------------------------------------------------------

/// Writes its pid and parent pid into `out[2 * slot..]`.
#[derive(Serialize, Deserialize)]
struct ReportPid {
    slot: usize,
    out: Array<u32>,
}

impl Entry for ReportPid {
    type Output = multiproc::Result<()>;
    fn run(self) -> multiproc::Result<()> {
        self.out.set(2 * self.slot, std::process::id())?;
        self.out.set(2 * self.slot + 1, getppid())
    }
}

/// Negates its own copy of `local` and the shared `shared`.
#[derive(Serialize, Deserialize)]
struct Negate {
    local: Vec<i32>,
    shared: Array<i32>,
}

impl Entry for Negate {
    type Output = multiproc::Result<()>;
    fn run(mut self) -> multiproc::Result<()> {
        for x in &mut self.local {
            *x = -*x;
        }
        for x in self.shared.lock().unwrap().iter_mut() {
            *x = -*x;
        }
        // The child's copy did change.
        assert_eq!(self.local[1], -1);
        Ok(())
    }
}

/// Ends with an exit code, an error, or a panic.
#[derive(Serialize, Deserialize)]
enum Exit {
    Code(i32),
    Error(String),
    Panic(String),
}

impl Entry for Exit {
    type Output = Result<i32, String>;
    fn run(self) -> Result<i32, String> {
        match self {
            Exit::Code(c) => Ok(c),
            Exit::Error(e) => Err(e),
            Exit::Panic(m) => panic!("{m}"),
        }
    }
}
// --------------------------------------------------------------------------
// The tutorial examples
// --------------------------------------------------------------------------

/// Ten children report their pid and their parent's.
#[test]
fn ten_children_report_pids() {
    for method in BOTH {
        let out = Array::<u32>::new(20).unwrap();
        let mut kids: Vec<Process<'_>> = (0..10)
            .map(|slot| {
                process(
                    method,
                    ReportPid {
                        slot,
                        out: out.clone(),
                    },
                )
            })
            .collect();
        assert!(kids.iter().all(|p| p.pid().is_none()));
        for p in &mut kids {
            p.start().unwrap();
        }
        for p in &kids {
            assert_eq!(finish(p), 0, "{method:?}: {:?}", p.failure());
        }
        let seen = out.to_vec();
        let mut pids = Vec::new();
        for (slot, p) in kids.iter().enumerate() {
            assert_eq!(Some(seen[2 * slot]), p.pid(), "{method:?} slot {slot}");
            assert_eq!(seen[2 * slot + 1], std::process::id(), "{method:?} ppid");
            pids.push(seen[2 * slot]);
            assert_reaped(seen[2 * slot]);
        }
        pids.sort_unstable();
        pids.dedup();
        assert_eq!(pids.len(), 10);
    }
}

/// A child's changes to its copy of a `Vec` stay there; its changes to a
/// shared `Array` are seen.
#[test]
fn vec_is_copied_array_is_shared() {
    for method in BOTH {
        // 400 KB of local data: a spawned child's arguments do not fit a
        // pipe buffer.
        let local: Vec<i32> = (0..100_000).collect();
        let shared = Array::from_slice(&[1, 2, 3]).unwrap();
        let mut p = process(
            method,
            Negate {
                local: local.clone(),
                shared: shared.clone(),
            },
        );
        p.start().unwrap();
        assert_eq!(finish(&p), 0, "{method:?}: {:?}", p.failure());
        assert_eq!(local[1], 1, "{method:?}: the parent's Vec changed");
        assert_eq!(shared.to_vec(), [-1, -2, -3], "{method:?}");
    }
    // The same with a closure that captures the Vec by move.
    let mut local = vec![1, 2, 3];
    let shared = Array::from_slice(&[1, 2, 3]).unwrap();
    let mut p = Process::fork({
        let shared = &shared;
        let mut mine = local.clone();
        move || {
            mine.iter_mut().for_each(|x| *x = -*x);
            for x in shared.lock().unwrap().iter_mut() {
                *x = -*x;
            }
            i32::from(mine != [-1, -2, -3])
        }
    });
    p.start().unwrap();
    local.push(4);
    assert_eq!(finish(&p), 0);
    assert_eq!(local, [1, 2, 3, 4]);
    assert_eq!(shared.to_vec(), [-1, -2, -3]);
}

/// `terminate`: not alive afterwards, exit code -15; `kill`: -9.
#[test]
fn terminate_and_kill() {
    for method in BOTH {
        let p = {
            let mut p = process(method, Sleep { ms: 60_000 });
            p.start().unwrap();
            p
        };
        assert!(p.is_alive());
        assert_eq!(p.exitcode(), None);
        p.terminate().unwrap();
        assert_eq!(finish(&p), -15, "{method:?}");
        assert!(!p.is_alive());
        assert_eq!(p.exitcode(), Some(-15));
        // Signalling a reaped child does nothing.
        p.terminate().unwrap();
        p.kill().unwrap();
        assert_reaped(p.pid().unwrap());

        let mut p = process(method, Sleep { ms: 60_000 });
        p.start().unwrap();
        p.kill().unwrap();
        assert_eq!(finish(&p), -9, "{method:?}");
    }
}

/// `join_timeout` on a sleeping child returns after the timeout, with the
/// child still alive.
#[test]
fn join_timeout_returns_in_time() {
    for method in BOTH {
        let mut p = process(method, Sleep { ms: 60_000 });
        p.start().unwrap();
        let timeout = Duration::from_millis(200);
        let t0 = Instant::now();
        assert!(
            matches!(p.join_timeout(timeout), Err(multiproc::Error::Timeout)),
            "{method:?}"
        );
        assert!(t0.elapsed() >= timeout);
        assert!(p.is_alive());
        p.kill().unwrap();
        assert_eq!(finish(&p), -9);
    }
}

/// Exit codes, errors and panics, with their messages. (The spawned
/// child's panic hook prints "boom 42" on stderr, as any panic does: that
/// output is expected.)
#[test]
fn exit_codes_errors_and_panics() {
    for method in BOTH {
        let run = |how: Exit| {
            let mut p = process(method, how);
            p.start().unwrap();
            let code = finish(&p);
            (code, p.failure())
        };
        assert_eq!(run(Exit::Code(0)), (0, None));
        assert_eq!(run(Exit::Code(3)), (3, None));
        let (code, failure) = run(Exit::Error("disk full".into()));
        let failure = failure.unwrap();
        assert_eq!(
            (code, failure.kind()),
            (1, FailureKind::Error),
            "{method:?}"
        );
        assert_eq!(failure.message(), "\"disk full\"");
        let (code, failure) = run(Exit::Panic("boom 42".into()));
        let failure = failure.unwrap();
        assert_eq!(
            (code, failure.kind()),
            (101, FailureKind::Panic),
            "{method:?}"
        );
        assert_eq!(failure.message(), "boom 42");
    }
    // A closure's panic, with a formatted message.
    let n = 7;
    let mut p = Process::fork(move || {
        if n > 0 {
            panic!("closure panicked with {n}");
        }
    });
    p.start().unwrap();
    assert_eq!(finish(&p), 101);
    assert_eq!(p.failure().unwrap().message(), "closure panicked with 7");
}
