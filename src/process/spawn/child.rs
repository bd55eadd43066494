//! The child's side of a spawn: [`init`], which finds and runs the entry
//! this process was spawned for, and the no-fork-bomb guard.

use crate::error::{Error, Result};
use crate::loom::atomic::{AtomicU32, Ordering};
use crate::process::current::{self, Identity};
use crate::process::exit::ERROR_EXIT_CODE;
use crate::process::spawn::boot::{EnvRef, env_ref, read_boot, set_cloexec};
use crate::process::spawn::{EntryPoint, SPAWN_ENV};
use crate::process::status;

/// 1 once `init` dispatched this process (or in its forked copies).
static DISPATCHED: AtomicU32 = AtomicU32::new(0);

/// Refuses to start a process in a spawned child that [`init`] has not
/// dispatched (see the module docs: no fork bomb).
pub(crate) fn check_may_start(name: &str) -> Result<()> {
    if DISPATCHED.load(Ordering::Relaxed) == 0
        && std::env::var_os(SPAWN_ENV).is_some()
        && env_ref().is_some()
    {
        return Err(Error::InitMissing {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Runs the entry point this process was spawned for, if it was, and exits;
/// returns at once otherwise. Call it first thing in `main`, with every
/// [`Entry`](crate::Entry) the program spawns.
///
/// In a spawned child, `init` never returns: it runs the entry named by the
/// parent and exits with its code (after waiting for the children the entry
/// left running, as Python does at exit). In any other process it only
/// reads one environment variable ([`SPAWN_ENV`]) and returns.
///
/// What runs before `init` in `main` runs again in every spawned child,
/// so put nothing before it that should run once (opening files,
/// printing, parsing arguments that a child does not get).
///
/// If a spawned child's `init` does not register the entry it was spawned
/// for, the parent's [`start`](crate::Process::start) fails with
/// [`Error::Spawn`] naming the entries it does register. If `main` never
/// calls `init`, `start` fails too (the child exits or times out without the
/// handshake), and the child cannot start processes meanwhile: no fork
/// bomb, no hang.
///
/// # Test binaries
///
/// A test binary's `main` belongs to the test harness, so the child is made
/// to run one test, and that test calls `init`: register the entries in an
/// ignored test of their own (so a normal run skips it), and have the child
/// run it with its command line, as [`child_test_args`] builds it:
///
/// ```no_run
/// use multiproc::{Entry, EntryPoint, Process};
/// use multiproc::testing::child_test_args;
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct Job;
/// # impl Entry for Job { type Output = (); fn run(self) {} }
///
/// const ENTRIES: &[EntryPoint] = &[EntryPoint::of::<Job>()];
///
/// /// The child half: runs the entry in a spawned child.
/// #[test]
/// #[ignore = "child half of job_runs"]
/// fn spawn_child() {
///     multiproc::init(ENTRIES);
/// }
///
/// #[test]
/// fn job_runs() {
///     let mut p = Process::spawn(Job).with_exec_args(child_test_args("spawn_child"));
///     p.start().unwrap();
///     assert_eq!(p.join().unwrap(), 0);
/// }
/// ```
///
/// The child runs the test binary with `spawn_child --exact
/// --include-ignored --nocapture --test-threads=1 --quiet`; the harness's
/// own lines go to the parent's stdout too (this crate's tests hide them
/// with a hook of `multiproc::testing`, which is not part of the stable
/// API). A test binary with `harness = false` can call `init` at the top of
/// its own `main` instead.
///
/// [`child_test_args`]: crate::testing::child_test_args
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Entry, EntryPoint};
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct Worker;
/// # impl Entry for Worker { type Output = (); fn run(self) {} }
///
/// fn main() {
///     multiproc::init(&[EntryPoint::of::<Worker>()]);
///     // ... the program, which may spawn `Worker`s
/// }
/// ```
pub fn init(entries: &[EntryPoint]) {
    if DISPATCHED.load(Ordering::Relaxed) != 0 {
        return;
    }
    let Some(env) = env_ref() else {
        return;
    };
    DISPATCHED.store(1, Ordering::Relaxed);
    let code = dispatch(entries, &env);
    // Flushes stdout and runs the `atexit` handler that waits for the
    // children the entry left running.
    std::process::exit(code)
}

/// Runs the spawned entry; the exit code.
fn dispatch(entries: &[EntryPoint], env: &EnvRef) -> i32 {
    // Nothing this process starts should inherit the status pipe.
    set_cloexec(env.status);
    let setup_failed = |why: String| {
        status::send(env.status, status::SETUP, &why);
        ERROR_EXIT_CODE
    };
    let boot = read_boot(env.boot);
    // SAFETY: closes the boot memfd, inherited for this one read.
    unsafe { libc::close(env.boot) };
    let boot = match boot {
        Ok(b) => b,
        Err(why) => return setup_failed(why),
    };
    for &fd in &boot.inherited {
        set_cloexec(fd);
    }
    if let Some(fd) = boot.stdout {
        // SAFETY: puts the parent's stdout, inherited at `fd` for this
        // purpose, back on descriptor 1 (an atomic replacement of the
        // `/dev/null` there), then closes the spare.
        unsafe {
            libc::dup2(fd, 1);
            libc::close(fd);
        }
    }
    if boot.daemon {
        // A daemon dies with its parent; if the parent is already gone (we
        // were handed to another), so is the daemon.
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
        if rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32) != Some(env.parent) {
            return ERROR_EXIT_CODE;
        }
    }
    current::enter_child(Box::new(Identity {
        name: boot.name,
        path: boot.path,
        daemon: boot.daemon,
        parent: (boot.parent_pid, boot.parent_name),
    }));
    let found: Vec<&EntryPoint> = entries.iter().filter(|e| e.name() == boot.entry).collect();
    let entry = match found[..] {
        [one] => one,
        [] => {
            let names: Vec<&str> = entries.iter().map(EntryPoint::name).collect();
            return setup_failed(format!(
                "entry point {} is not registered with this program's multiproc::init \
                 (it registers {names:?})",
                boot.entry
            ));
        }
        _ => {
            return setup_failed(format!(
                "{} entry points are registered under the name {}: give them distinct \
                 Entry::name()s",
                found.len(),
                boot.entry
            ));
        }
    };
    let started = || status::send(env.status, status::STARTED, &boot.entry);
    let outcome = (entry.run)(&boot.args, &started);
    if let Some(f) = &outcome.failure {
        status::send(env.status, status::tag_of(f.kind()), f.message());
    }
    outcome.code
}
