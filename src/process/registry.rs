//! The table of children this process started and has not yet reaped, as
//! Python's `multiprocessing` keeps `_children`.
//!
//! * Every `start` adds the child; every later `start`, dropped handle, and
//!   [`active_children`](crate::active_children) call reaps the children
//!   that have exited, so a child whose handle was dropped while it ran does
//!   not stay a zombie for long.
//! * At exit (an `atexit` handler, registered with the first child: `main`
//!   returning or `std::process::exit`), daemon children still running are
//!   killed and every remaining child is waited for, as Python does at
//!   interpreter exit; a forked child does the same for its own children
//!   before `_exit`. So no child outlives a parent that exits normally, and
//!   none stays a zombie.
//! * The table is a [`ForkLock`]: the `fork` prepare handler holds it, so a
//!   forked child never inherits it locked. Entries carry the pid of their
//!   owner; a forked copy leaves its parent's entries alone (it neither
//!   waits for nor signals them), and drops them on its first reap.

use std::sync::Arc;

use rustix::process::Signal;

use crate::sys::atfork::ForkLock;
use crate::loom::atomic::{AtomicU32, Ordering};
use crate::process::child::Child;

static CHILDREN: ForkLock<Vec<Arc<Child>>> = ForkLock::new(Vec::new());

/// 1 once the `atexit` handler is registered in this address space.
static AT_EXIT: AtomicU32 = AtomicU32::new(0);

/// The pid of the last process that added a child here: a forked child
/// that started none finds its parent's pid, and skips [`finish`] without
/// touching (and so copying) the table's pages.
static ADDED_BY: AtomicU32 = AtomicU32::new(0);

/// Records a child just started.
pub(crate) fn add(child: &Arc<Child>) {
    if AT_EXIT
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        // SAFETY: registers an `extern "C"` function that lives as long as
        // the program and touches only this module's table.
        unsafe { libc::atexit(at_exit) };
    }
    ADDED_BY.store(std::process::id(), Ordering::Relaxed);
    CHILDREN.with(|t| t.push(Arc::clone(child)));
}

/// Reaps every child that has exited; returns those still running.
pub(crate) fn reap() -> Vec<Arc<Child>> {
    CHILDREN.with(|t| {
        // `poll` errs only for a child someone else reaped: it is gone too.
        t.retain(|c| c.owned_here() && matches!(c.poll(), Ok(None)));
        t.clone()
    })
}

/// Kills the daemon children still running and waits for every child:
/// what Python does at exit. Blocks as long as a non-daemon child runs.
/// Entries inherited from a parent through `fork` are not this process's:
/// they are dropped untouched.
pub(crate) fn finish() {
    if ADDED_BY.load(Ordering::Relaxed) != std::process::id() {
        return;
    }
    let children = CHILDREN.with(std::mem::take);
    let mine = || children.iter().filter(|c| c.owned_here());
    for c in mine().filter(|c| c.daemon()) {
        let _ = c.signal(Signal::KILL);
    }
    for c in mine() {
        let _ = c.wait(None);
    }
}

extern "C" fn at_exit() {
    finish();
}
