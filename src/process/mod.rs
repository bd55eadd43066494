//! Processes: Python's `multiprocessing.Process`, started by `fork` or by
//! spawn (re-executing this program).
//!
//! Layering inside: `exit` (what a target returns, failures) and `status`
//! (the pipe a child reports on) ← `child` (one started child: pidfd,
//! reaping, signals, the spawn handshake) ← `registry` (every child not yet
//! reaped; reaping in the background, waiting at exit) ← `fork` and `spawn`
//! (the two start methods), `current` (who this process is), `transfer`
//! (shared objects as serde values) ← [`Process`].

pub(crate) mod child;
pub(crate) mod current;
pub(crate) mod exit;
pub(crate) mod fork;
pub(crate) mod registry;
pub(crate) mod spawn;
pub(crate) mod status;
pub mod testing;

use std::ffi::OsString;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::error::{Error, Result};
use crate::process::child::Child;
use crate::process::exit::{Failure, IntoExitCode};
use crate::process::spawn::{ChildSetup, Encode, Entry, SpawnConfig};

pub use current::{ParentProcess, ProcessInfo};

/// How a [`Process`] starts its child.
///
/// # Examples
///
/// ```
/// use multiproc::{Process, StartMethod};
/// let p = Process::fork(|| ());
/// assert_eq!(p.start_method(), StartMethod::Fork);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StartMethod {
    /// `fork`: the child is a copy of this process and runs the target in
    /// it. Fast (one `fork`), and the target may borrow anything; but the
    /// child of a multi-threaded parent inherits every lock another thread
    /// held, held forever: see [`Process::fork`].
    Fork,
    /// Re-execute this program (`/proc/self/exe`) and run a registered
    /// [`Entry`] in it, its arguments encoded with serde. Slower (a whole
    /// program start), safe whatever the parent's threads do. See
    /// [`Process::spawn`] and [`init`](crate::init).
    Spawn,
}

/// What a `Process` will run.
enum Target<'a> {
    Fork(fork::Target<'a>),
    Spawn {
        entry: &'static str,
        encode: Encode<'a>,
    },
}

/// A child process, as Python's `multiprocessing.Process`.
///
/// Make one with [`fork`](Process::fork) (a closure, run in a forked copy of
/// this process), [`spawn`](Process::spawn) (an [`Entry`], run in a fresh
/// copy of this program), or [`new`](Process::new) (an `Entry` by either
/// method); set a [`name`](Process::with_name) or
/// [`daemon`](Process::with_daemon) flag; then [`start`](Process::start) it,
/// and [`join`](Process::join) it.
///
/// The exit code follows Python: 0, the code the child exited with, or
/// minus the signal that killed it (`-15` after [`terminate`](Process::terminate)).
/// A target that panics exits with 101 and one that returns `Err` with 1;
/// their message is in [`failure`](Process::failure).
///
/// # Shared objects
///
/// Every shared object ([`Value`](crate::Value), [`Array`](crate::Array),
/// [`AtomicValue`](crate::AtomicValue), the locks, [`Queue`](crate::Queue),
/// the [`spsc`](crate::spsc) ends, [`SharedMemory`](crate::SharedMemory),
/// [`Descriptor`](crate::Descriptor)s) can go to a child of either method.
/// A forked child uses the parent's handles as they are (the memory is
/// `MAP_SHARED`, so both see the same bytes). A spawned child gets them
/// inside its `Entry` value: each encodes as its descriptor, the memfd
/// behind it is inherited by the child, and the child attaches and validates
/// it; a descriptor that does not attach makes the child exit with code 1
/// and a [`FailureKind::Setup`](crate::FailureKind::Setup) failure naming the
/// cause.
///
/// # Reaping, dropping, exit
///
/// Every child is reaped by its pidfd (never `waitpid(-1)`), so no child
/// stays a zombie and no other code's children are touched. Dropping a
/// handle does not stop its child, as dropping a
/// [`JoinHandle`](std::thread::JoinHandle) does not stop a thread: the
/// child runs on, and is reaped by the next `start`, handle drop, or
/// [`active_children`](crate::active_children) call after it exits. When
/// the program exits (`main` returns, or [`std::process::exit`]), it kills
/// its daemon children that still run and waits for the others, as Python
/// does at interpreter exit, so no child is left orphaned. A forked child
/// does the same before its `_exit`.
///
/// # Daemons
///
/// A daemon child is killed (SIGKILL) when its parent dies, by any means,
/// SIGKILL included: the child sets `PR_SET_PDEATHSIG`, then checks that its
/// parent has not died meanwhile. Linux sends that signal when the parent
/// **thread** that started the child exits, not the whole process: start
/// daemons from a thread that lives as long as they should (the main
/// thread, say). A daemon may start only daemon children (Python forbids it
/// any child): non-daemon ones would be orphaned when it is killed.
///
/// # Examples
///
/// ```
/// use multiproc::{Array, Process};
/// # fn main() -> multiproc::Result<()> {
/// let squares = Array::<u64>::new(10)?;
/// let mut kids = Vec::new();
/// for i in 0..10 {
///     let squares = &squares;
///     let mut p = Process::fork(move || squares.set(i, (i * i) as u64));
///     p.start()?;
///     kids.push(p);
/// }
/// for p in &kids {
///     assert_eq!(p.join()?, 0);
/// }
/// assert_eq!(squares.get(9), Some(81));
/// # Ok(())
/// # }
/// ```
pub struct Process<'a> {
    name: String,
    /// Place in the process tree, for the child's own children's names.
    path: Vec<u32>,
    daemon: bool,
    method: StartMethod,
    /// Taken by `start` (through `&mut self`, so the lock is never
    /// contended; it only makes `Process` `Sync`).
    target: Mutex<Option<Target<'a>>>,
    entry_name: Option<&'static str>,
    spawn: SpawnConfig,
    child: Option<Arc<Child>>,
}

impl fmt::Debug for Process<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("method", &self.method)
            .field("daemon", &self.daemon)
            .field("entry", &self.entry_name)
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

impl<'a> Process<'a> {
    fn with_target(method: StartMethod, target: Target<'a>, entry: Option<&'static str>) -> Self {
        let (path, name) = current::next_child();
        Process {
            name,
            path,
            daemon: false,
            method,
            target: Mutex::new(Some(target)),
            entry_name: entry,
            spawn: SpawnConfig::default(),
            child: None,
        }
    }

    /// A process that will run `target` in a forked child
    /// ([`StartMethod::Fork`]). The target may borrow from the caller: the
    /// child runs it on its own copy of the caller's memory.
    ///
    /// # Forking a multi-threaded parent
    ///
    /// `fork` copies only the calling thread. A lock that another thread
    /// held at that instant (a `std::sync::Mutex` of your program, the
    /// lock of `stdout` while another thread prints, a library's
    /// internal lock) stays held in the child with nobody to release it,
    /// and the child deadlocks if it takes it. So the target should do only
    /// what the child needs: work on shared objects and its own data, and
    /// not take locks other threads of the parent use. The crate limits the
    /// hazard on its side: its own tables are locked around `fork` by
    /// `pthread_atfork` handlers (and glibc locks `malloc`'s), the child
    /// runs only the target and leaves with `_exit` (no destructors of the
    /// parent's objects, no `atexit` handlers, no stdio buffers flushed a
    /// second time: a line printed without a newline may be lost, flush it
    /// in the target), and a panic is caught in the child, never unwound
    /// across the fork into frames that belong to the parent's program.
    /// The child must not use its parent's `Process` handles. When in
    /// doubt, or when other threads run arbitrary code, use
    /// [`spawn`](Process::spawn).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Process, Value};
    /// # fn main() -> multiproc::Result<()> {
    /// let total = Value::new(0u64)?;
    /// let mut p = Process::fork(|| *total.lock().unwrap() += 42);
    /// p.start()?;
    /// assert_eq!(p.join()?, 0);
    /// assert_eq!(total.get(), 42);
    /// # Ok(())
    /// # }
    /// ```
    pub fn fork<F, R>(target: F) -> Process<'a>
    where
        F: FnOnce() -> R + Send + 'a,
        R: IntoExitCode,
    {
        let target: fork::Target<'a> = Box::new(move || target().into_report());
        Process::with_target(StartMethod::Fork, Target::Fork(target), None)
    }

    /// A process that will re-execute this program and run `entry` in it
    /// ([`StartMethod::Spawn`]). The program must call
    /// [`init`](crate::init) first thing in `main`, registering `E` (in a
    /// test binary: see [`init`](crate::init#test-binaries)).
    ///
    /// `entry` is encoded when the process starts. Shared objects in it
    /// travel as descriptors, and the memfds they live in are inherited by
    /// the child (at the same descriptor numbers, which their descriptors
    /// name), so the child can attach them even if the parent drops them
    /// meanwhile. Named segments travel by name.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::{Entry, EntryPoint, Process, Queue};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Producer {
    ///     queue: Queue<u64>,
    ///     count: u64,
    /// }
    ///
    /// impl Entry for Producer {
    ///     type Output = multiproc::Result<()>;
    ///     fn run(self) -> multiproc::Result<()> {
    ///         for i in 0..self.count {
    ///             self.queue.put(i).map_err(|_| multiproc::Error::Timeout)?;
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// fn main() -> multiproc::Result<()> {
    ///     multiproc::init(&[EntryPoint::of::<Producer>()]);
    ///     let queue = Queue::<u64>::new(16)?;
    ///     let mut p = Process::spawn(Producer { queue: queue.clone(), count: 100 });
    ///     p.start()?;
    ///     let sum: u64 = (0..100).map(|_| queue.get().unwrap()).sum();
    ///     assert_eq!(p.join()?, 0);
    ///     assert_eq!(sum, 4950);
    ///     Ok(())
    /// }
    /// ```
    pub fn spawn<E: Entry + Send + 'a>(entry: E) -> Process<'a> {
        Process::new(StartMethod::Spawn, entry)
    }

    /// A process that will run `entry` by either start method: under
    /// [`StartMethod::Fork`] the forked child calls [`Entry::run`] on its copy
    /// (no encoding at all), under [`StartMethod::Spawn`] as
    /// [`spawn`](Process::spawn). Handy where the method is a setting.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::{Entry, Process, StartMethod};
    /// # #[derive(serde::Serialize, serde::Deserialize)]
    /// # struct Job;
    /// # impl Entry for Job { type Output = (); fn run(self) {} }
    /// # fn main() -> multiproc::Result<()> {
    /// let method = if std::env::var_os("USE_SPAWN").is_some() {
    ///     StartMethod::Spawn
    /// } else {
    ///     StartMethod::Fork
    /// };
    /// let mut p = Process::new(method, Job);
    /// p.start()?;
    /// p.join()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn new<E: Entry + Send + 'a>(method: StartMethod, entry: E) -> Process<'a> {
        let name = E::name();
        let target = match method {
            StartMethod::Fork => Target::Fork(Box::new(move || entry.run().into_report())),
            StartMethod::Spawn => Target::Spawn {
                entry: name,
                encode: Box::new(move || {
                    let bytes = postcard::to_allocvec(&entry).map_err(|e| e.to_string());
                    (bytes, Box::new(entry) as Box<dyn Send + 'a>)
                }),
            },
        };
        Process::with_target(method, target, Some(name))
    }

    /// Sets the name (by default `Process-N`, numbered in the order
    /// processes are made here; `Process-N:M` in a child numbered `N`). The
    /// child sees it as [`current_process`](crate::current_process)`().name()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// let p = Process::fork(|| ()).with_name("loader").with_daemon(true);
    /// assert_eq!((p.name(), p.daemon()), ("loader", true));
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Makes the child a daemon (or not): it is killed when its parent dies,
    /// and at the parent's exit (see [the type docs](Process#daemons)).
    /// Ignored once started.
    pub fn with_daemon(mut self, daemon: bool) -> Self {
        if self.child.is_none() {
            self.daemon = daemon;
        }
        self
    }

    /// Spawn only: the command-line arguments the re-executed program gets
    /// after its `argv[0]` (none by default). [`init`](crate::init) ignores
    /// them; they matter for code that runs before it (such as a test
    /// harness, see [`init`](crate::init#test-binaries)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use multiproc::{Entry, Process};
    /// # #[derive(serde::Serialize, serde::Deserialize)]
    /// # struct Job;
    /// # impl Entry for Job { type Output = (); fn run(self) {} }
    /// # fn main() -> multiproc::Result<()> {
    /// // A program that parses its arguments before `init` needs valid ones.
    /// let mut p = Process::spawn(Job)
    ///     .with_exec_args(["--config", "/etc/app.toml"])
    ///     .with_start_timeout(Duration::from_secs(5));
    /// p.start()?;
    /// p.join()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_exec_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.spawn.exec_args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Spawn only: how long [`start`](Process::start) waits for the child to
    /// reach [`init`](crate::init) (30 s by default). A child silent past
    /// it is killed, and `start` fails.
    pub fn with_start_timeout(mut self, timeout: Duration) -> Self {
        self.spawn.start_timeout = timeout;
        self
    }

    /// Starts the child. Under [`StartMethod::Spawn`] it returns once the
    /// child's [`init`](crate::init) has found the entry point and decoded
    /// its arguments (about the time the program takes to start). Under
    /// either method the child holds every shared object of its target
    /// when `start` returns, so this process may drop its own copies then:
    /// the end of a [`Pipe`](crate::Pipe) handed to the child, for
    /// instance, which it must drop for `recv` on the other end to see the
    /// child's death.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::fork(|| 3);
    /// assert_eq!(p.pid(), None);
    /// p.start()?;
    /// assert!(p.pid().is_some());
    /// assert_eq!(p.join()?, 3);
    /// assert!(p.start().is_err()); // once only
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyStarted`] if already started;
    /// [`Error::DaemonChild`] if this process is a daemon and the new one is
    /// not; [`Error::InitMissing`] if this is a spawned child whose `main`
    /// did not call `init`; [`Error::Spawn`] if a spawned child does not
    /// reach its entry point (see [`init`](crate::init)), or its entry
    /// cannot be encoded; [`Error::Io`] if `fork`, `posix_spawn` or a pipe
    /// fails.
    pub fn start(&mut self) -> Result<()> {
        let name = || self.name.clone();
        if self.child.is_some() {
            return Err(Error::AlreadyStarted { name: name() });
        }
        if !self.daemon && current::is_daemon() {
            return Err(Error::DaemonChild { name: name() });
        }
        spawn::check_may_start(&self.name)?;
        let Some(target) = self
            .target
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return Err(Error::AlreadyStarted { name: name() });
        };
        registry::reap();
        let setup = ChildSetup {
            name: &self.name,
            path: &self.path,
            daemon: self.daemon,
        };
        let child = match target {
            Target::Fork(target) => fork::start(target, &setup)?,
            Target::Spawn { entry, encode } => spawn::start(entry, encode, &setup, &self.spawn)?,
        };
        let child = Arc::new(child);
        registry::add(&child);
        self.child = Some(child);
        Ok(())
    }

    fn started(&self) -> Result<&Child> {
        self.child.as_deref().ok_or_else(|| Error::NotStarted {
            name: self.name.clone(),
        })
    }

    /// Waits for the child to exit, and returns its
    /// [`exitcode`](Process::exitcode).
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] if not started; [`Error::Io`] if the child
    /// was reaped by other code (a `waitpid(-1)`, or `SIGCHLD` ignored).
    pub fn join(&self) -> Result<i32> {
        let code = self.started()?.wait(None)?;
        // A wait without a deadline returns only with an exit code.
        code.ok_or(Error::Timeout)
    }

    /// Waits up to `timeout` for the child to exit and returns its exit
    /// code. Sleeps in the kernel meanwhile.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if the child still runs when the time is up
    /// (it runs on: join again, or [`terminate`](Process::terminate) it);
    /// otherwise as [`join`](Process::join).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::Process;
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::fork(|| std::thread::sleep(Duration::from_secs(10)));
    /// p.start()?;
    /// assert!(matches!(
    ///     p.join_timeout(Duration::from_millis(50)),
    ///     Err(multiproc::Error::Timeout)
    /// ));
    /// assert!(p.is_alive());
    /// p.terminate()?;
    /// assert_eq!(p.join()?, -15);
    /// # Ok(())
    /// # }
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<i32> {
        let child = self.started()?;
        child
            .wait(Instant::now().checked_add(timeout))?
            .ok_or(Error::Timeout)
    }

    /// Whether the child has started and not yet exited (reaps it if it
    /// has).
    pub fn is_alive(&self) -> bool {
        self.child
            .as_deref()
            .is_some_and(|c| matches!(c.poll(), Ok(None)))
    }

    /// The exit code once the child has exited (reaping it if needed):
    /// 0, the code it exited with (low 8 bits), or minus the signal that
    /// killed it. `None` before it starts and while it runs.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::fork(|| std::thread::sleep(std::time::Duration::from_secs(10)));
    /// assert_eq!(p.exitcode(), None);
    /// p.start()?;
    /// assert_eq!(p.exitcode(), None);
    /// p.kill()?;
    /// p.join()?;
    /// assert_eq!(p.exitcode(), Some(-9));
    /// assert!(!p.is_alive());
    /// # Ok(())
    /// # }
    /// ```
    pub fn exitcode(&self) -> Option<i32> {
        self.child.as_deref().and_then(|c| c.poll().ok().flatten())
    }

    /// The child's pid, once started.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_deref().map(Child::pid)
    }

    /// Sends SIGTERM (through the pidfd: never to a process that reused the
    /// pid). Does nothing once the child has exited.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] if not started.
    pub fn terminate(&self) -> Result<()> {
        self.started()?.signal(Signal::TERM)
    }

    /// Sends SIGKILL, as [`terminate`](Process::terminate) sends SIGTERM.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] if not started.
    pub fn kill(&self) -> Result<()> {
        self.started()?.signal(Signal::KILL)
    }

    /// The failure the child reported: a panic message, the `Debug` form of
    /// an error its target returned, or why a spawned child could not set
    /// its entry up. Complete once the child has been joined.
    pub fn failure(&self) -> Option<Failure> {
        self.child.as_deref().and_then(Child::failure)
    }

    /// The name (see [`with_name`](Process::with_name)).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the child is (or will be) a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// The start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }
}

impl Drop for Process<'_> {
    fn drop(&mut self) {
        // A running child stays in the table and runs on (see the type
        // docs); this reaps the children that have exited.
        if self.child.is_some() {
            registry::reap();
        }
    }
}

/// The children this process started that are still running, as Python's
/// `multiprocessing.active_children()`; reaps those that have exited
/// (including children whose handles were dropped).
///
/// # Examples
///
/// ```
/// use multiproc::{Process, active_children};
/// # fn main() -> multiproc::Result<()> {
/// let mut p = Process::fork(|| std::thread::sleep(std::time::Duration::from_millis(100)));
/// p.start()?;
/// let pid = p.pid().unwrap();
/// drop(p); // the child runs on
/// assert!(active_children().iter().any(|c| c.pid() == pid));
/// # Ok(())
/// # }
/// ```
pub fn active_children() -> Vec<ProcessInfo> {
    registry::reap()
        .iter()
        .map(|c| ProcessInfo::new(c.name().to_owned(), c.pid(), c.daemon()))
        .collect()
}
