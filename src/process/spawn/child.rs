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

/// [`init`](crate::init), with the crate's own entry points (`builtin`,
/// the layers above: the pool's worker) found beside the program's.
pub(crate) fn init_with(entries: &[EntryPoint], builtin: &[EntryPoint]) {
    if DISPATCHED.load(Ordering::Relaxed) != 0 {
        return;
    }
    let Some(env) = env_ref() else {
        return;
    };
    DISPATCHED.store(1, Ordering::Relaxed);
    let code = dispatch(entries, builtin, &env);
    // Flushes stdout and runs the `atexit` handler that waits for the
    // children the entry left running.
    std::process::exit(code)
}

/// Runs the spawned entry; the exit code.
fn dispatch(entries: &[EntryPoint], builtin: &[EntryPoint], env: &EnvRef) -> i32 {
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
    let found: Vec<&EntryPoint> = entries
        .iter()
        .chain(builtin)
        .filter(|e| e.name() == boot.entry)
        .collect();
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
