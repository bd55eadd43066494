//! The fork start method: the child is a copy of this process that runs the
//! target and leaves with `_exit`.
//!
//! After `fork` the child has one thread, the one that called `start`; every
//! other thread of the parent is gone, and whatever lock one of them held at
//! that instant stays held forever in the child. The crate keeps its own
//! state out of that trap (its tables are taken by `pthread_atfork`
//! handlers around the fork, see `src/sys/atfork.rs`; glibc does the same for
//! `malloc`), and the child does only this:
//!
//! 1. become a daemon if asked (`PR_SET_PDEATHSIG`, then check that the
//!    parent has not died already);
//! 2. take its own identity (prepared by the parent: the child writes as
//!    few pages as it can, each one a copy-on-write fault);
//! 3. run the target under `catch_unwind`: a panic stops here, and never
//!    unwinds into the caller's frames (which belong to the parent's
//!    program, and would run its destructors twice);
//! 4. report a failure on the status pipe, wait for its own children (as
//!    Python does at exit), and `_exit` with the code: no destructors, no
//!    `atexit` handlers, no stdio buffers flushed twice.

use std::os::fd::AsRawFd;

use rustix::pipe::PipeFlags;
use rustix::process::Pid;

use crate::error::{Error, Result};
use crate::process::child::Child;
use crate::process::current::{self, Identity};
use crate::process::exit::{ExitReport, run_catching};
use crate::process::spawn::ChildSetup;
use crate::process::{registry, status};

/// A fork target: runs in the child.
pub(crate) type Target<'a> = Box<dyn FnOnce() -> ExitReport + Send + 'a>;

/// Forks a child that runs `target`.
pub(crate) fn start(target: Target<'_>, setup: &ChildSetup<'_>) -> Result<Child> {
    crate::sys::atfork::ensure_handlers();
    let (status_r, status_w) =
        rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::io("pipe2", e))?;
    let parent = std::process::id();
    // Made here, so the child only stores a pointer: every page the child
    // writes is a copy-on-write fault, part of the start's cost.
    let identity = Box::new(Identity {
        name: setup.name.to_owned(),
        path: setup.path.to_vec(),
        daemon: setup.daemon,
        parent: (parent, current::name()),
    });
    // SAFETY: the child runs only `child_main`, which never returns into
    // the caller's frames and leaves with `_exit` (see the module docs for
    // what it touches); the parent only records the pid.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        drop(status_r);
        child_main(target, status_w.as_raw_fd(), identity, parent)
    }
    let forked = std::io::Error::last_os_error();
    drop(identity);
    drop(status_w);
    // The parent gave the target to the child; its captures are dropped here.
    drop(target);
    match Pid::from_raw(pid) {
        Some(pid) if pid.as_raw_nonzero().get() > 0 => Ok(Child::new(
            pid,
            status_r,
            setup.name.to_owned(),
            setup.daemon,
        )),
        _ => Err(Error::io("fork", forked)),
    }
}

/// The forked child: steps 1 to 4 of the module docs.
fn child_main(target: Target<'_>, status_fd: i32, identity: Box<Identity>, parent: u32) -> ! {
    if identity.daemon {
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
        // The parent may have died before the line above: then the death
        // signal will never come, and the daemon goes now.
        if rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32) != Some(parent) {
            // SAFETY: leaves the child at once, running nothing of the parent's.
            unsafe { libc::_exit(1) };
        }
    }
    current::enter_child(identity);
    let outcome = run_catching(|| target().into());
    if let Some(f) = &outcome.failure {
        status::send(status_fd, status::tag_of(f.kind()), f.message());
    }
    registry::finish();
    // SAFETY: leaves the child without running the parent's destructors or
    // atexit handlers.
    unsafe { libc::_exit(outcome.code) }
}
