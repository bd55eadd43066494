//! `Process`: daemons, identities (`current_process`, `parent_process`,
//! names), what dropping a running handle does, what a process waits for
//! and kills at exit, and misuse.
//!
//! Spawned children re-run this test binary with only the test
//! `spawn_child` selected (`multiproc::testing::ForTest`); that test calls
//! `multiproc::init` with the entries below, and does nothing in a normal
//! run. Every child is joined with a deadline (`finish`), and killed if it
//! overruns.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::DEADLINE;
use common::entries::{BOTH, Sleep, assert_reaped, finish, process};
use multiproc::{
    AtomicValue, Entry, EntryPoint, Error, Event, Process, StartMethod, active_children,
    current_process, parent_process,
};
use serde::{Deserialize, Serialize};

const ENTRIES: &[EntryPoint] = &[
    EntryPoint::of::<Sleep>(),
    EntryPoint::of::<Armed>(),
    EntryPoint::of::<CheckIdentity>(),
    EntryPoint::of::<Grandchildren>(),
    EntryPoint::of::<TryNonDaemonChild>(),
];

/// The spawned children's `main`: runs the entry they were spawned for.
#[test]
#[ignore = "child half of the spawn tests: run by ForTest::for_test"]
fn spawn_child() {
    multiproc::init(ENTRIES);
}

// --------------------------------------------------------------------------
// Entries
// --------------------------------------------------------------------------

/// Checks `current_process()` and `parent_process()` in the child.
#[derive(Serialize, Deserialize)]
struct CheckIdentity {
    name: String,
    daemon: bool,
    parent_pid: u32,
    parent_name: String,
}

impl Entry for CheckIdentity {
    type Output = Result<(), String>;
    fn run(self) -> Result<(), String> {
        let me = current_process();
        let parent = parent_process().ok_or("no parent_process")?;
        let seen = (
            me.name().to_owned(),
            me.pid(),
            me.daemon(),
            parent.pid(),
            parent.name().to_owned(),
            parent.is_alive(),
        );
        let want = (
            self.name,
            std::process::id(),
            self.daemon,
            self.parent_pid,
            self.parent_name,
            true,
        );
        if seen == want {
            Ok(())
        } else {
            Err(format!("saw {seen:?}, wanted {want:?}"))
        }
    }
}

/// Starts a slow non-daemon grandchild and a daemon grandchild, drops both
/// handles and returns: the exit must wait for the first, kill the second.
#[derive(Serialize, Deserialize)]
struct Grandchildren {
    flag: AtomicValue<u32>,
    daemon_pid: AtomicValue<u32>,
}

impl Entry for Grandchildren {
    type Output = multiproc::Result<()>;
    fn run(self) -> multiproc::Result<()> {
        let flag = &self.flag;
        let mut slow = Process::fork(move || {
            std::thread::sleep(Duration::from_millis(300));
            flag.store(1, SeqCst);
        });
        slow.start()?;
        let mut daemon = Process::fork(|| std::thread::sleep(DEADLINE)).with_daemon(true);
        daemon.start()?;
        self.daemon_pid.store(daemon.pid().unwrap_or(0), SeqCst);
        Ok(())
    }
}

/// Says it runs (its target started, so a daemon's death signal is armed),
/// then sleeps.
#[derive(Serialize, Deserialize)]
struct Armed {
    running: AtomicValue<u32>,
    ms: u64,
}

impl Entry for Armed {
    type Output = ();
    fn run(self) {
        self.running.store(1, SeqCst);
        std::thread::sleep(Duration::from_millis(self.ms));
    }
}

/// In a daemon: starting a non-daemon child must be refused, a daemon one
/// allowed. Exit code 0 if so.
#[derive(Serialize, Deserialize)]
struct TryNonDaemonChild;

impl Entry for TryNonDaemonChild {
    type Output = i32;
    fn run(self) -> i32 {
        let mut p = Process::fork(|| ());
        if !matches!(p.start(), Err(Error::DaemonChild { .. })) {
            return 1;
        }
        let mut d = Process::fork(|| ()).with_daemon(true);
        if d.start().is_err() || d.join_timeout(DEADLINE).ok() != Some(0) {
            return 2;
        }
        0
    }
}
// --------------------------------------------------------------------------
// Daemons, identities, drops and exits
// --------------------------------------------------------------------------

/// A daemon child dies when its parent is SIGKILLed. The test runs in a
/// forked helper that is a child subreaper, so the orphaned daemon is handed
/// to it, and it can check how the daemon died. The parent is killed once
/// the daemon's target runs: a parent killed before that (while the forked
/// daemon arms its death signal) makes the daemon exit by itself, code 1,
/// which is the same promise kept another way.
#[test]
fn daemon_dies_when_parent_is_killed() {
    for method in BOTH {
        let daemon_pid = AtomicValue::new(0u32).unwrap();
        let running = AtomicValue::new(0u32).unwrap();
        let helper = common::fork(|| {
            // SAFETY: prctl on this (forked, single-threaded) helper.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
            let daemon_pid = &daemon_pid;
            let running = &running;
            let mut middle = Process::fork(move || {
                let entry = Armed {
                    running: running.clone(),
                    ms: 60_000,
                };
                let mut d = process(method, entry).with_daemon(true);
                if d.start().is_err() {
                    return 2;
                }
                daemon_pid.store(d.pid().unwrap_or(0), SeqCst);
                std::thread::sleep(DEADLINE);
                3
            });
            if middle.start().is_err() {
                return 10;
            }
            let end = Instant::now() + DEADLINE;
            let d = loop {
                match daemon_pid.load(SeqCst) {
                    0 if Instant::now() < end => std::thread::sleep(Duration::from_millis(1)),
                    0 => return 11,
                    d => break d as i32,
                }
            };
            while running.load(SeqCst) == 0 {
                if Instant::now() >= end {
                    return 15;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = middle.kill();
            if middle.join_timeout(DEADLINE).ok() != Some(-9) {
                return 12;
            }
            // The daemon is ours now; it must die of SIGKILL.
            let mut status = 0;
            loop {
                // SAFETY: waits for one pid, our (adopted) child.
                let r = unsafe { libc::waitpid(d, &mut status, libc::WNOHANG) };
                if r == d {
                    break;
                }
                if r < 0 || Instant::now() >= end {
                    // SAFETY: kill our adopted child so nothing is left.
                    unsafe { libc::kill(d, libc::SIGKILL) };
                    return 13;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL {
                0
            } else {
                14
            }
        });
        assert_eq!(helper.join(), 0, "{method:?}");
    }
}

/// A daemon may start daemon children, not others.
#[test]
fn daemon_starts_only_daemons() {
    for method in BOTH {
        let mut p = process(method, TryNonDaemonChild).with_daemon(true);
        p.start().unwrap();
        assert_eq!(finish(&p), 0, "{method:?}: {:?}", p.failure());
    }
}

/// Names, pids and daemon flags as the child sees them.
#[test]
fn current_and_parent_process() {
    assert_eq!(current_process().name(), "MainProcess");
    assert!(parent_process().is_none());
    for method in BOTH {
        for daemon in [false, true] {
            let name = format!("worker-{method:?}-{daemon}");
            let check = CheckIdentity {
                name: name.clone(),
                daemon,
                parent_pid: std::process::id(),
                parent_name: "MainProcess".into(),
            };
            let mut p = process(method, check).with_name(&name).with_daemon(daemon);
            assert_eq!(p.name(), name);
            p.start().unwrap();
            assert_eq!(finish(&p), 0, "{method:?}: {:?}", p.failure());
        }
    }
    // Default names: Process-N, and Process-N:1 for its first child.
    let mut p = Process::fork(|| {
        let me = current_process();
        let child = Process::fork(|| ());
        i32::from(child.name() != format!("{}:1", me.name()))
    });
    assert!(p.name().starts_with("Process-"), "{}", p.name());
    p.start().unwrap();
    assert_eq!(finish(&p), 0);
}

/// Dropping a running handle detaches the child: it runs on, and is reaped
/// once it has exited.
#[test]
fn dropped_handle_detaches_then_reaps() {
    let go = Event::new().unwrap();
    let done = AtomicValue::new(0u32).unwrap();
    let mut p = Process::fork(|| {
        if go.wait_timeout(DEADLINE).is_ok() {
            done.store(1, SeqCst);
        }
    });
    p.start().unwrap();
    let pid = p.pid().unwrap();
    drop(p);
    let listed = |pid| active_children().iter().any(|c| c.pid() == pid);
    assert!(listed(pid), "a detached child is still listed");
    go.set();
    let end = Instant::now() + DEADLINE;
    while done.load(SeqCst) == 0 || listed(pid) {
        assert!(Instant::now() < end, "detached child never finished");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_reaped(pid);
}

/// At exit a process waits for its non-daemon children and kills its
/// daemon ones (dropped handles included), under both start methods.
#[test]
fn exit_waits_for_children_and_kills_daemons() {
    for method in BOTH {
        let flag = AtomicValue::new(0u32).unwrap();
        let daemon_pid = AtomicValue::new(0u32).unwrap();
        let mut p = process(
            method,
            Grandchildren {
                flag: flag.clone(),
                daemon_pid: daemon_pid.clone(),
            },
        );
        p.start().unwrap();
        assert_eq!(finish(&p), 0, "{method:?}: {:?}", p.failure());
        assert_eq!(flag.load(SeqCst), 1, "{method:?}: exited before its child");
        let d = daemon_pid.load(SeqCst) as i32;
        assert_ne!(d, 0);
        // Killed and reaped by its parent before that exited: gone.
        // SAFETY: signal 0 only checks whether the pid exists.
        let r = unsafe { libc::kill(d, 0) };
        assert_eq!(
            r, -1,
            "{method:?}: the daemon grandchild {d} is still there"
        );
    }
}

/// Handles can be shared with and sent to other threads.
#[test]
fn process_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Process<'static>>();
    let mut p = Process::fork(|| ());
    p.start().unwrap();
    let code = std::thread::scope(|s| s.spawn(|| finish(&p)).join().unwrap());
    assert_eq!(code, 0);
}

/// Misuse is an error, not a panic.
#[test]
fn state_errors() {
    let mut p = Process::fork(|| ());
    assert!(matches!(p.join(), Err(Error::NotStarted { .. })));
    assert!(matches!(p.terminate(), Err(Error::NotStarted { .. })));
    assert!(matches!(
        p.join_timeout(Duration::ZERO),
        Err(Error::NotStarted { .. })
    ));
    assert!(!p.is_alive());
    assert_eq!(p.exitcode(), None);
    p.start().unwrap();
    assert!(matches!(p.start(), Err(Error::AlreadyStarted { .. })));
    assert_eq!(finish(&p), 0);
    assert_eq!(p.join().unwrap(), 0, "join again gives the same code");
    assert_eq!(p.start_method(), StartMethod::Fork);
}
