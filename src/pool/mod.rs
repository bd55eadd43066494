//! [`Pool`]: Python's `multiprocessing.Pool`, on shared-memory queues,
//! surviving its workers.
//!
//! Layering inside: `func` (task functions as distances in this program,
//! and the shims that decode, call, encode) ← `wire` (the messages, the
//! worker's configuration) ← `worker` (a worker's loop) and `result`
//! (where outcomes land: [`AsyncResult`], [`Imap`]) ← `supervisor` (the
//! parent's table of tasks and workers, and its thread) ← [`Pool`].

mod func;
mod result;
mod supervisor;
mod wire;
mod worker;

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::loom::atomic::{AtomicU64, Ordering};
use crate::process::StartMethod;
use crate::process::spawn::EntryPoint;
use crate::process::testing::ForTest;
use func::{FnRef, Key, RangeInput, Shim};
use result::{Collector, Helper, OnDone, Outcome, Stream, decode_all, decode_one};
use supervisor::{Phase, Settings, Shared};
use wire::{Bytes, TASK_OVERHEAD};

pub use result::{AsyncResult, Imap};

/// Runs the entry point this process was spawned for, if it was, and exits;
/// returns at once otherwise. Call it first thing in `main`, with every
/// [`Entry`](crate::Entry) the program spawns.
///
/// In a spawned child, `init` never returns: it runs the entry named by the
/// parent and exits with its code (after waiting for the children the entry
/// left running, as Python does at exit). In any other process it only
/// reads one environment variable ([`SPAWN_ENV`](crate::SPAWN_ENV)) and returns.
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
    crate::process::spawn::init_with(entries, BUILTIN_ENTRIES);
}

/// The entry points the crate registers itself in every
/// [`init`](crate::init): the spawned pool worker.
pub(crate) const BUILTIN_ENTRIES: &[EntryPoint] = &[EntryPoint::of::<worker::WorkerEntry>()];

/// The largest pool.
pub const MAX_PROCESSES: usize = 1024;

/// How long, by default, an idle worker polls its inbox and a waiting
/// parent thread takes results itself before sleeping (see
/// [`PoolBuilder::spin`]).
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// How a [`Pool`] is set up: Python's `Pool(processes, initializer,
/// initargs, maxtasksperchild)` and more. Made by [`Pool::builder`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Pool, StartMethod};
///
/// fn setup(greeting: String) {
///     assert_eq!(greeting, "hello");
/// }
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let pool = Pool::builder()
///     .processes(2)
///     .start_method(StartMethod::Fork)
///     .initializer(setup, "hello".to_owned())
///     .max_tasks_per_child(100)
///     .task_timeout(Duration::from_secs(60))
///     .build()?;
/// assert_eq!(pool.map(square, 1..=3u64)?, [1, 4, 9]);
/// # Ok(())
/// # }
/// ```
pub struct PoolBuilder {
    processes: Option<usize>,
    method: StartMethod,
    initializer: Option<(Shim, usize, std::result::Result<Vec<u8>, String>)>,
    max_tasks: Option<u64>,
    max_message: usize,
    task_timeout: Option<Duration>,
    prefix: Option<String>,
    test_name: Option<String>,
    spin: Duration,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("method", &self.method)
            .field("max_tasks_per_child", &self.max_tasks)
            .field("max_message_size", &self.max_message)
            .field("task_timeout", &self.task_timeout)
            .field("spin", &self.spin)
            .finish_non_exhaustive()
    }
}

impl PoolBuilder {
    /// The number of worker processes (by default the CPUs this process
    /// may run on, `std::thread::available_parallelism`).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// How workers start ([`StartMethod::Fork`] by default). Under
    /// [`StartMethod::Spawn`] the program must call [`init`](crate::init)
    /// first thing in `main` (no entry needs registering for the pool).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = method;
        self
    }

    /// A function each worker runs once with `arg`, before its first task
    /// (Python's `initializer` and `initargs`). If it panics, the pool
    /// starts no more workers, and every task fails with
    /// [`TaskError::InitializerFailed`](crate::TaskError::InitializerFailed)
    /// carrying its message.
    pub fn initializer<A: Serialize + DeserializeOwned>(mut self, f: fn(A), arg: A) -> Self {
        let bytes = postcard::to_allocvec(&arg).map_err(|e| e.to_string());
        self.initializer = Some((func::init::<A> as Shim, f as usize, bytes));
        self
    }

    /// Each worker exits after `n` tasks and is replaced (Python's
    /// `maxtasksperchild`); unlimited by default.
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks = Some(n.max(1));
        self
    }

    /// The largest message on the pool's queues, in bytes (64 KiB by
    /// default, at least 256). A chunk of a `map` whose arguments encode
    /// larger is split; a single argument larger is an error at submit. A
    /// result of any size comes back, in parts.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    /// A task that runs longer fails with
    /// [`TaskError::TimedOut`](crate::TaskError::TimedOut); its worker is
    /// killed and replaced (none by default). Checked every few
    /// milliseconds, from the moment the worker starts the task.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// How long an idle worker polls its inbox, and a parent thread
    /// waiting for a result takes results off the workers' queue itself,
    /// before it sleeps ([`DEFAULT_SPIN`] by default; zero: sleep at once).
    ///
    /// A task that follows within this time reaches a polling worker, and
    /// a result a polling waiter, with no wake-up through the kernel: the
    /// round trip of `apply_async` and `get` drops from tens of
    /// microseconds (three sleeping threads woken in turn) to a few. The
    /// price is that much CPU time after each task and each wait (as
    /// OpenMP runtimes spin before they block); set zero where the pool's
    /// workers share their cores with other busy work.
    pub fn spin(mut self, time: Duration) -> Self {
        self.spin = time;
        self
    }

    /// Workers are named `{prefix}-{n}` (`ForkPoolWorker-1`, or
    /// `SpawnPoolWorker-1`, by default, as Python names them).
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Starts the workers and returns once they run.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`] for 0 or more than [`MAX_PROCESSES`]
    /// workers, or a maximum message size under 256 bytes (or over the
    /// queues' limit); [`Error::Encode`] if the initializer's argument does
    /// not encode; whatever starting a process fails with.
    pub fn build(self) -> Result<Pool> {
        let processes = match self.processes {
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if processes == 0 || processes > MAX_PROCESSES {
            return Err(Error::InvalidSize {
                requested: processes as u64,
                reason: "a pool has 1 to 1024 worker processes",
            });
        }
        if self.max_message < 256 {
            return Err(Error::InvalidSize {
                requested: self.max_message as u64,
                reason: "a pool's maximum message size is at least 256 bytes",
            });
        }
        worker::install_quiet_hook();
        func::prepare();
        let key = Key::random();
        let initializer = match self.initializer {
            None => None,
            Some((shim, f, bytes)) => {
                let bytes = bytes.map_err(|reason| Error::Encode { reason })?;
                Some((FnRef::new(shim, f, &key)?, Bytes(bytes.into())))
            }
        };
        let prefix = self.prefix.unwrap_or_else(|| match self.method {
            StartMethod::Fork => "ForkPoolWorker".to_owned(),
            StartMethod::Spawn => "SpawnPoolWorker".to_owned(),
        });
        let settings = Settings {
            processes,
            method: self.method,
            initializer,
            max_tasks: self.max_tasks,
            max_message: self.max_message,
            task_timeout: self.task_timeout,
            prefix,
            test_name: self.test_name,
            depth: 2,
            spin: self.spin,
        };
        let shared = Shared::new(settings, key)?;
        shared.start_all()?;
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("multiproc-pool".to_owned())
            .spawn(move || s.supervise())
            .map_err(|source| Error::Io {
                op: "spawning the pool's thread",
                source,
            });
        let thread = match thread {
            Ok(t) => {
                let _ = shared.supervisor.set(t.thread().clone());
                t
            }
            Err(e) => {
                shared.terminate();
                return Err(e);
            }
        };
        Ok(Pool {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }
}

impl ForTest for PoolBuilder {
    fn for_test(mut self, test_name: &str) -> Self {
        self.test_name = Some(test_name.to_owned());
        self
    }
}

/// A pool of worker processes, Python's `multiprocessing.Pool`.
///
/// Task functions are plain functions, `fn(A) -> R` (a closure that
/// captures nothing coerces to one), with `A` and `R` any serde type.
/// Nothing needs registering: every worker runs this program, so a
/// function travels as its place in it. Shared objects in `A` (a
/// [`RawArray`](crate::RawArray), a lock, a queue, ...) travel as
/// descriptors and attach in the worker, as for [`Process`](crate::Process).
///
/// # The pool survives its workers
///
/// A worker killed mid-task (SIGKILL, `abort`, the OOM killer) fails only
/// the task it was running, with
/// [`TaskError::WorkerDied`](crate::TaskError::WorkerDied) naming the
/// worker and its signal; the pool starts a replacement, and the tasks
/// queued behind run elsewhere, once each. A task past the
/// [`task_timeout`](PoolBuilder::task_timeout) fails the same way, with
/// [`TaskError::TimedOut`](crate::TaskError::TimedOut). A panicking task
/// fails with [`TaskError::Panicked`](crate::TaskError::Panicked) and its
/// message; the worker goes on. (Python's `Pool` hangs when a worker dies,
/// CPython issue 66587.)
///
/// # Threads, fork, dropping
///
/// A `Pool` is `Send + Sync`: threads may submit at once. It runs one
/// thread of its own, which takes results and starts workers; workers are
/// daemons started from that thread, so they die with the pool's process
/// however it dies. Forked workers inherit the hazards of forking a
/// multi-threaded program ([`Process::fork`](crate::Process::fork)): a
/// task should not take locks the parent's other threads hold; use
/// [`StartMethod::Spawn`] where that matters. Callbacks run on the pool's
/// thread. Dropping a pool terminates it and reaps every worker, during a
/// panic too.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let pool = Pool::new(2)?;
/// assert_eq!(pool.map(square, vec![1u64, 2, 3])?, vec![1, 4, 9]);
/// let r = pool.apply_async(square, 7)?;
/// assert_eq!(r.get_timeout(Duration::from_secs(5))?, 49);
/// let mut sum = 0;
/// for x in pool.imap_unordered(square, 0..100u64) {
///     sum += x?;
/// }
/// assert_eq!(sum, 328_350);
/// pool.close();
/// pool.join()?;
/// # Ok(())
/// # }
/// ```
pub struct Pool {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.shared.settings.processes)
            .field("method", &self.shared.settings.method)
            .finish_non_exhaustive()
    }
}

/// Encodes `items` in chunks of `chunksize`, halving a chunk whose
/// encoding is over `max` bytes.
fn encode_chunks<T: Serialize>(
    items: &[T],
    chunksize: usize,
    max: usize,
    out: &mut Vec<(Vec<u8>, usize)>,
) -> Result<()> {
    for chunk in items.chunks(chunksize.max(1)) {
        let bytes = postcard::to_allocvec(chunk).map_err(|e| Error::Encode {
            reason: e.to_string(),
        })?;
        if bytes.len() <= max {
            out.push((bytes, chunk.len()));
        } else if chunk.len() == 1 {
            return Err(Error::TooLarge {
                size: bytes.len(),
                max,
            });
        } else {
            encode_chunks(chunk, chunk.len().div_ceil(2), max, out)?;
        }
    }
    Ok(())
}

impl Pool {
    /// A pool of `processes` workers started by fork, with the defaults of
    /// [`Pool::builder`].
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// The builder, with Python's defaults: as many workers as CPUs, fork,
    /// no initializer, no task limit, 64 KiB messages, no task timeout.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            method: StartMethod::Fork,
            initializer: None,
            max_tasks: None,
            max_message: 64 * 1024,
            task_timeout: None,
            prefix: None,
            test_name: None,
            spin: DEFAULT_SPIN,
        }
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.shared.settings.processes
    }

    /// Python's default chunk size for `len` items: `ceil(len / (4 *
    /// processes))`.
    fn default_chunksize(&self, len: usize) -> usize {
        len.div_ceil(4 * self.processes()).max(1)
    }

    fn max_input(&self) -> usize {
        self.shared.settings.max_message - TASK_OVERHEAD
    }

    /// The pool as a thread waiting for one of its results helps it.
    fn helper(&self) -> Weak<dyn Helper> {
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        weak
    }

    fn fn_ref(&self, shim: Shim, f: usize) -> Result<FnRef> {
        FnRef::new(shim, f, &self.shared.key)
    }

    /// Submits `items` in chunks as one job; the collector behind it.
    fn submit_chunks<T: Serialize>(
        &self,
        func: FnRef,
        items: &[T],
        chunksize: usize,
        callback: Option<OnDone>,
    ) -> Result<Arc<Collector>> {
        let mut chunks = Vec::new();
        encode_chunks(items, chunksize, self.max_input(), &mut chunks)?;
        let collector = Collector::new(chunks.len(), callback, self.helper());
        if !chunks.is_empty() {
            let inputs = chunks.into_iter().map(|(b, _)| b).collect();
            self.shared.submit(func, inputs, collector.clone(), 0)?;
        }
        Ok(collector)
    }

    /// Runs `f` on every item, in chunks of Python's default size, and
    /// returns the results in order (Python's `map`).
    ///
    /// # Errors
    ///
    /// [`Error::Task`] with the first failed chunk's error; [`Error::PoolClosed`]
    /// after `close`; [`Error::TooLarge`] if one argument encodes larger
    /// than the maximum message size (then nothing was submitted).
    pub fn map<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        let items: Vec<A> = items.into_iter().collect();
        let n = self.default_chunksize(items.len());
        self.map_chunked(f, &items, n)
    }

    /// [`map`](Pool::map) with a chunk size (Python's `chunksize`): each
    /// task carries `chunksize` items.
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub fn map_chunked<A, R>(&self, f: fn(A) -> R, items: &[A], chunksize: usize) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let func = self.fn_ref(func::map::<A, R>, f as usize)?;
        let c = self.submit_chunks(func, items, chunksize, None)?;
        AsyncResult::new(c, decode_all::<R>).get()
    }

    /// [`map`](Pool::map) without waiting (Python's `map_async`).
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map), for what fails at submit.
    pub fn map_async<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        let items: Vec<A> = items.into_iter().collect();
        let func = self.fn_ref(func::map::<A, R>, f as usize)?;
        let c = self.submit_chunks(func, &items, self.default_chunksize(items.len()), None)?;
        Ok(AsyncResult::new(c, decode_all::<R>))
    }

    /// `f(a, b)` for every pair, in order (Python's `starmap`).
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub fn starmap<A, B, R, I>(&self, f: fn(A, B) -> R, items: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = (A, B)>,
    {
        let items: Vec<(A, B)> = items.into_iter().collect();
        let func = self.fn_ref(func::star2::<A, B, R>, f as usize)?;
        let c = self.submit_chunks(func, &items, self.default_chunksize(items.len()), None)?;
        AsyncResult::new(c, decode_all::<R>).get()
    }

    /// `f(a, b, c)` for every triple, in order.
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub fn starmap3<A, B, C, R, I>(&self, f: fn(A, B, C) -> R, items: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        C: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = (A, B, C)>,
    {
        let items: Vec<(A, B, C)> = items.into_iter().collect();
        let func = self.fn_ref(func::star3::<A, B, C, R>, f as usize)?;
        let c = self.submit_chunks(func, &items, self.default_chunksize(items.len()), None)?;
        AsyncResult::new(c, decode_all::<R>).get()
    }

    /// Runs `f(arg)` in a worker and waits for it (Python's `apply`).
    ///
    /// # Errors
    ///
    /// As [`AsyncResult::get`], and what fails at submit.
    pub fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.apply_async(f, arg)?.get()
    }

    /// Submits `f(arg)` and returns at once (Python's `apply_async`).
    ///
    /// # Errors
    ///
    /// [`Error::PoolClosed`] after `close`; [`Error::TooLarge`] or
    /// [`Error::Encode`] if `arg` does not fit a message.
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let func = self.fn_ref(func::map::<A, R>, f as usize)?;
        let c = self.submit_chunks(func, std::slice::from_ref(&arg), 1, None)?;
        Ok(AsyncResult::new(c, decode_one::<R>))
    }

    /// [`apply_async`](Pool::apply_async) with Python's `callback` and
    /// `error_callback`: once the task finishes, the pool's thread calls
    /// `callback` with the result or `error_callback` with the error (keep
    /// them short: they hold up the pool's thread). The returned
    /// [`AsyncResult`] still has the result.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Pool::apply_async).
    pub fn apply_async_with<A, R, C, E>(
        &self,
        f: fn(A) -> R,
        arg: A,
        callback: C,
        error_callback: E,
    ) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        C: FnOnce(R) + Send + 'static,
        E: FnOnce(Error) + Send + 'static,
    {
        let func = self.fn_ref(func::map::<A, R>, f as usize)?;
        let on_done: OnDone = Box::new(move |outcomes: &[Outcome]| match decode_one::<R>(outcomes) {
            Ok(r) => callback(r),
            Err(e) => error_callback(e),
        });
        let c = self.submit_chunks(func, std::slice::from_ref(&arg), 1, Some(on_done))?;
        Ok(AsyncResult::new(c, decode_one::<R>))
    }

    fn imap_with<'p, A, R, I>(
        &'p self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
        ordered: bool,
    ) -> Imap<'p, R>
    where
        A: Serialize + DeserializeOwned + 'p,
        R: Serialize + DeserializeOwned + 'p,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'p,
    {
        let stream = Stream::new(self.helper());
        let sink = stream.clone();
        let func = self.fn_ref(func::map::<A, R>, f as usize);
        let mut items = items.into_iter();
        let max = self.max_input();
        let mut pending: std::collections::VecDeque<(Vec<u8>, usize)> = Default::default();
        let submit = Box::new(move |n: usize| -> Option<Result<usize>> {
            let func = match &func {
                Ok(f) => *f,
                Err(_) => return Some(Err(self.fn_ref(func::map::<A, R>, f as usize).unwrap_err())),
            };
            if pending.is_empty() {
                let chunk: Vec<A> = items.by_ref().take(chunksize.max(1)).collect();
                if chunk.is_empty() {
                    return None;
                }
                let mut out = Vec::new();
                if let Err(e) = encode_chunks(&chunk, chunk.len(), max, &mut out) {
                    return Some(Err(e));
                }
                pending.extend(out);
            }
            let (bytes, count) = pending.pop_front()?;
            Some(self.shared.submit(func, vec![bytes], sink.clone(), n).map(|()| count))
        });
        Imap::new(stream, submit, ordered, 2 * self.processes())
    }

    /// Runs `f` on the items lazily and yields the results in order
    /// (Python's `imap`, chunks of one item): the input is read only as
    /// results are taken, with at most twice the workers' count of chunks
    /// in flight ([`Imap::with_window`]), so it may be endless.
    ///
    /// An item that cannot be submitted (it encodes larger than the
    /// maximum message size, or the pool was closed) ends the input: its
    /// error is the next item yielded, then the results already in flight
    /// come, and the rest of the input is not read.
    pub fn imap<'p, A, R, I>(&'p self, f: fn(A) -> R, items: I) -> Imap<'p, R>
    where
        A: Serialize + DeserializeOwned + 'p,
        R: Serialize + DeserializeOwned + 'p,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'p,
    {
        self.imap_with(f, items, 1, true)
    }

    /// [`imap`](Pool::imap) with `chunksize` items a task.
    pub fn imap_chunked<'p, A, R, I>(
        &'p self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Imap<'p, R>
    where
        A: Serialize + DeserializeOwned + 'p,
        R: Serialize + DeserializeOwned + 'p,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'p,
    {
        self.imap_with(f, items, chunksize, true)
    }

    /// [`imap`](Pool::imap), yielding results as they finish (Python's
    /// `imap_unordered`).
    pub fn imap_unordered<'p, A, R, I>(&'p self, f: fn(A) -> R, items: I) -> Imap<'p, R>
    where
        A: Serialize + DeserializeOwned + 'p,
        R: Serialize + DeserializeOwned + 'p,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'p,
    {
        self.imap_with(f, items, 1, false)
    }

    /// The zero-copy numeric path: splits `0..len` into ranges of
    /// `chunk` (Python's default chunking when 0) and runs `f(&context,
    /// range)` on each; the results come back in range order.
    ///
    /// `context` is encoded once, and each worker decodes it once for the
    /// whole call: put the shared arrays in it
    /// ([`RawArray`](crate::RawArray), [`Array`](crate::Array)), and each
    /// task reads and writes its range in place, with no element
    /// serialised. A task message is a few dozen bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::ops::Range;
    /// use multiproc::{Pool, RawArray};
    ///
    /// fn square_range(xs: &RawArray<f64>, r: Range<usize>) -> f64 {
    ///     let mut sum = 0.0;
    ///     for i in r {
    ///         let x = xs.get(i).unwrap();
    ///         xs.set(i, x * x);
    ///         sum += x * x;
    ///     }
    ///     sum
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let xs = RawArray::<f64>::new(10_000)?;
    /// for i in 0..10_000 {
    ///     xs.set(i, i as f64);
    /// }
    /// let pool = Pool::new(2)?;
    /// let sums = pool.map_ranges(square_range, &xs, 10_000, 1_000)?;
    /// assert_eq!(sums.len(), 10);
    /// assert_eq!(xs.get(3), Some(9.0));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map); [`Error::TooLarge`] if the context does not
    /// fit a message.
    pub fn map_ranges<C, R>(
        &self,
        f: fn(&C, Range<usize>) -> R,
        context: &C,
        len: usize,
        chunk: usize,
    ) -> Result<Vec<R>>
    where
        C: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned,
    {
        self.map_ranges_async(f, context, len, chunk)?.get()
    }

    /// [`map_ranges`](Pool::map_ranges) without waiting.
    ///
    /// # Errors
    ///
    /// As [`map_ranges`](Pool::map_ranges), for what fails at submit.
    pub fn map_ranges_async<C, R>(
        &self,
        f: fn(&C, Range<usize>) -> R,
        context: &C,
        len: usize,
        chunk: usize,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        C: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned,
    {
        let func = self.fn_ref(func::ranges::<C, R>, f as usize)?;
        let context = postcard::to_allocvec(context).map_err(|e| Error::Encode {
            reason: e.to_string(),
        })?;
        let chunk = if chunk == 0 {
            self.default_chunksize(len)
        } else {
            chunk
        };
        static JOBS: AtomicU64 = AtomicU64::new(1);
        let job = JOBS.fetch_add(1, Ordering::Relaxed);
        let mut inputs = Vec::new();
        let mut start = 0;
        while start < len {
            let end = len.min(start.saturating_add(chunk));
            let bytes = postcard::to_allocvec(&RangeInput {
                job,
                context: &context,
                start: start as u64,
                end: end as u64,
            })
            .map_err(|e| Error::Encode {
                reason: e.to_string(),
            })?;
            if bytes.len() > self.max_input() {
                return Err(Error::TooLarge {
                    size: bytes.len(),
                    max: self.max_input(),
                });
            }
            inputs.push(bytes);
            start = end;
        }
        let collector = Collector::new(inputs.len(), None, self.helper());
        if !inputs.is_empty() {
            self.shared.submit(func, inputs, collector.clone(), 0)?;
        }
        Ok(AsyncResult::new(collector, decode_all::<R>))
    }

    /// Takes no new tasks; the workers exit once every task is done
    /// (Python's `close`).
    pub fn close(&self) {
        let mut st = self.shared.lock();
        if st.phase == Phase::Running {
            st.phase = Phase::Closed;
        }
        drop(st);
        self.shared.wake();
    }

    /// Kills the workers now; unfinished tasks fail with
    /// [`TaskError::Terminated`](crate::TaskError::Terminated) (Python's
    /// `terminate`). Returns once every worker is reaped.
    pub fn terminate(&self) {
        self.shared.terminate();
        self.join_thread();
    }

    fn join_thread(&self) {
        let t = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }

    /// Waits for the workers to exit, after [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate) (Python's `join`).
    ///
    /// # Errors
    ///
    /// [`Error::PoolRunning`] if the pool was neither closed nor
    /// terminated.
    pub fn join(&self) -> Result<()> {
        if self.shared.lock().phase == Phase::Running {
            return Err(Error::PoolRunning);
        }
        self.join_thread();
        Ok(())
    }

    /// [`join`](Pool::join), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if workers still run when the time is up;
    /// otherwise as [`join`](Pool::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now().checked_add(timeout);
        let mut st = self.shared.lock();
        if st.phase == Phase::Running {
            return Err(Error::PoolRunning);
        }
        while !st.finished {
            let left = deadline
                .and_then(|d| d.checked_duration_since(Instant::now()))
                .ok_or(Error::Timeout)?;
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(st);
        self.join_thread();
        Ok(())
    }

    /// The pids of the workers running now.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.shared.worker_pids()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.terminate();
        self.join_thread();
    }
}
