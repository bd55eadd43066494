//! Who this process is: `current_process()`, `parent_process()`, and the
//! numbering behind default names (`Process-1`, and `Process-1:2` for the
//! second child of that child, as Python names them).
//!
//! The identity sits behind an atomic pointer to a leaked box: set once in
//! each child (after `fork`, or by `init` in a spawned child), read without
//! a lock, never freed, so a fork at any moment copies a consistent value.

use crate::loom::atomic::{AtomicPtr, AtomicU32, Ordering};

/// This process's identity, when it is a child started by this crate.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) name: String,
    /// Position in the tree of processes: `[1, 2]` is `Process-1:2`.
    pub(crate) path: Vec<u32>,
    pub(crate) daemon: bool,
    /// The parent's pid and name.
    pub(crate) parent: (u32, String),
}

/// Null in a process that no `Process` started (the main process).
static CURRENT: AtomicPtr<Identity> = AtomicPtr::new(std::ptr::null_mut());

/// How many `Process` objects this process has made (numbers the next one).
static MADE: AtomicU32 = AtomicU32::new(0);

fn current() -> Option<&'static Identity> {
    // SYNC: Acquire pairs with the Release swap in `enter_child`.
    let p = CURRENT.load(Ordering::Acquire);
    // SAFETY: CURRENT is null or a leaked `Box<Identity>`, never freed.
    unsafe { p.as_ref() }
}

/// The tree position and default name of the next `Process` made here.
pub(crate) fn next_child() -> (Vec<u32>, String) {
    let n = MADE.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
    let mut path = current().map_or_else(Vec::new, |c| c.path.clone());
    path.push(n);
    let digits: Vec<String> = path.iter().map(u32::to_string).collect();
    let name = format!("Process-{}", digits.join(":"));
    (path, name)
}

/// This process's name: `MainProcess` unless a `Process` started it.
pub(crate) fn name() -> String {
    current().map_or_else(|| MAIN_NAME.to_owned(), |c| c.name.clone())
}

/// Whether this process is a daemon child.
pub(crate) fn is_daemon() -> bool {
    current().is_some_and(|c| c.daemon)
}

/// Becomes `identity` (in a new child); its own children count from 1.
pub(crate) fn enter_child(identity: Box<Identity>) {
    MADE.store(0, Ordering::Relaxed);
    let new = Box::into_raw(identity);
    // SYNC: Release pairs with the Acquire load in `current`. The old
    // identity (the parent's, inherited through fork) is leaked: a reader
    // may still hold it.
    CURRENT.swap(new, Ordering::AcqRel);
}

const MAIN_NAME: &str = "MainProcess";

/// Name, pid and daemon flag of a process, as [`current_process`] and
/// [`active_children`](crate::active_children) report them.
///
/// # Examples
///
/// ```
/// use multiproc::{Process, current_process};
/// # fn main() -> multiproc::Result<()> {
/// let mut p = Process::fork(|| {
///     let me = current_process();
///     i32::from(!(me.name() == "worker" && me.daemon() && me.pid() == std::process::id()))
/// })
/// .with_name("worker")
/// .with_daemon(true);
/// p.start()?;
/// assert_eq!(p.join()?, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    name: String,
    pid: u32,
    daemon: bool,
}

impl ProcessInfo {
    pub(crate) fn new(name: String, pid: u32, daemon: bool) -> ProcessInfo {
        ProcessInfo { name, pid, daemon }
    }

    /// The name: `MainProcess` for a process no `Process` started, else the
    /// name given to its `Process` (by default `Process-N`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it is a daemon (killed when its parent dies).
    pub fn daemon(&self) -> bool {
        self.daemon
    }
}

/// The process that started this one, as [`parent_process`] reports it.
///
/// # Examples
///
/// ```
/// use multiproc::{Process, parent_process};
/// # fn main() -> multiproc::Result<()> {
/// let mut p = Process::fork(|| {
///     let parent = parent_process().expect("started by a Process");
///     i32::from(!parent.is_alive())
/// });
/// p.start()?;
/// assert_eq!(p.join()?, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentProcess {
    name: String,
    pid: u32,
}

impl ParentProcess {
    /// The parent's name when it started this process.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parent's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the parent still runs: this process has not been handed to
    /// another parent (which happens when its parent exits).
    pub fn is_alive(&self) -> bool {
        rustix::process::getppid().is_some_and(|p| p.as_raw_nonzero().get() as u32 == self.pid)
    }
}

/// This process: `MainProcess`, or the child a [`Process`](crate::Process)
/// started, with its name, pid and daemon flag. Python's
/// `multiprocessing.current_process()`.
///
/// # Examples
///
/// ```
/// let me = multiproc::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id());
/// ```
pub fn current_process() -> ProcessInfo {
    ProcessInfo {
        name: name(),
        pid: std::process::id(),
        daemon: is_daemon(),
    }
}

/// The parent of this process if a [`Process`](crate::Process) started it
/// (`None` in the main process), as Python's
/// `multiprocessing.parent_process()`.
///
/// # Examples
///
/// ```
/// use multiproc::{Process, parent_process};
/// # fn main() -> multiproc::Result<()> {
/// assert!(parent_process().is_none()); // the main process
/// let me = std::process::id();
/// let mut p = Process::fork(move || {
///     let parent = parent_process().unwrap();
///     assert_eq!(parent.pid(), me);
///     assert_eq!(parent.name(), "MainProcess");
/// });
/// p.start()?;
/// assert_eq!(p.join()?, 0);
/// # Ok(())
/// # }
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    current().map(|c| ParentProcess {
        name: c.parent.1.clone(),
        pid: c.parent.0,
    })
}
