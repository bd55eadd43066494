//! Where finished tasks land in the parent: a [`Collector`] behind every
//! [`AsyncResult`] (one task, or all the chunks of a `map`), and a
//! [`Stream`] behind every [`Imap`] iterator. Outcomes stay encoded until
//! the caller asks, so a result is decoded on the caller's thread, not on
//! the pool's.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use crate::loom::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::error::{Error, Result, TaskError};
use crate::pool::wire::Bytes;

/// A finished task: its encoded `Vec` of results, or why it has none.
pub(crate) type Outcome = std::result::Result<Bytes, TaskError>;

/// What the pool hands a finished task to (on its supervisor thread, or on
/// a thread that terminates the pool).
pub(crate) trait Sink: Send + Sync {
    /// Task number `index` of its job finished.
    fn deliver(&self, index: usize, outcome: Outcome);
}

/// The pool, as a thread waiting for a result sees it: rather than sleep
/// at once and be woken by the supervisor (two more wake-ups on the way
/// of every result), the waiter takes the results itself for a while.
pub(crate) trait Helper: Send + Sync {
    /// Hands every result on the results queue to its sink (and sends the
    /// workers the tasks that now have room); whether there was any.
    fn help(&self) -> bool;
    /// How long a waiter helps before it sleeps (zero: not at all).
    fn spin(&self) -> Duration;
    /// A waiter starts (`true`) or stops helping: while any helps, the
    /// supervisor leaves the results queue alone.
    fn helping(&self, on: bool);
}

/// Helps the pool behind `helper` until `done()`, or `deadline` passes,
/// or nothing has come for the pool's spin time; whether `done()`.
fn help_until(
    helper: &Weak<dyn Helper>,
    deadline: Option<Instant>,
    mut done: impl FnMut() -> bool,
) -> bool {
    if done() {
        return true;
    }
    let Some(h) = helper.upgrade() else {
        return false;
    };
    let spin = h.spin();
    if spin.is_zero() {
        return false;
    }
    let end_by = |now: Instant| deadline.map_or(now + spin, |d| d.min(now + spin));
    let mut end = end_by(Instant::now());
    h.helping(true);
    let mut idle = 0u32;
    let mut progressed = false;
    let finished = loop {
        if done() {
            break true;
        }
        if h.help() {
            progressed = true;
            continue;
        }
        idle += 1;
        crate::pool::worker::pause(idle);
        if idle.is_multiple_of(16) {
            // The clock is read only here: the spin time counts from the
            // last check that found progress.
            let now = Instant::now();
            if progressed {
                progressed = false;
                idle = 0;
                end = end_by(now);
            } else if now >= end {
                break done();
            }
        }
    };
    h.helping(false);
    finished
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One wait on `cv` until `deadline` (none: as long as it takes); `None`
/// once the deadline has passed.
fn wait_until<'a, T>(
    cv: &Condvar,
    g: MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> Option<MutexGuard<'a, T>> {
    Some(match deadline {
        None => cv.wait(g).unwrap_or_else(PoisonError::into_inner),
        Some(d) => {
            let left = d.checked_duration_since(Instant::now())?;
            cv.wait_timeout(g, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0
        }
    })
}

/// A callback run once every task of a job has finished.
pub(crate) type OnDone = Box<dyn FnOnce(&[Outcome]) + Send>;

/// Collects the outcomes of a job's tasks, then runs its callback.
pub(crate) struct Collector {
    parts: Mutex<(Vec<Option<Outcome>>, usize)>,
    finished: OnceLock<Vec<Outcome>>,
    changed: Condvar,
    callback: Mutex<Option<OnDone>>,
    helper: Weak<dyn Helper>,
}

impl Collector {
    pub(crate) fn new(
        tasks: usize,
        callback: Option<OnDone>,
        helper: Weak<dyn Helper>,
    ) -> Arc<Collector> {
        let c = Arc::new(Collector {
            parts: Mutex::new(((0..tasks).map(|_| None).collect(), tasks)),
            finished: OnceLock::new(),
            changed: Condvar::new(),
            callback: Mutex::new(callback),
            helper,
        });
        if tasks == 0 {
            c.finish(Vec::new());
        }
        c
    }

    fn finish(&self, outcomes: Vec<Outcome>) {
        let _ = self.finished.set(outcomes);
        {
            // Taken under the lock the waiters check under, so none misses it.
            let _g = lock(&self.parts);
            self.changed.notify_all();
        }
        if let Some(cb) = lock(&self.callback).take() {
            let outcomes = self.finished.get().expect("set above");
            // A panicking callback must not take the pool's thread down.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(outcomes))).is_err() {
                eprintln!("multiproc: a pool callback panicked");
            }
        }
    }

    fn wait(&self, deadline: Option<Instant>) -> Option<&[Outcome]> {
        help_until(&self.helper, deadline, || {
            self.finished.get().is_some()
        });
        let mut g = lock(&self.parts);
        loop {
            if let Some(done) = self.finished.get() {
                return Some(done);
            }
            g = wait_until(&self.changed, g, deadline)?;
        }
    }
}

impl Sink for Collector {
    fn deliver(&self, index: usize, outcome: Outcome) {
        let all = {
            let mut g = lock(&self.parts);
            let (parts, left) = &mut *g;
            match parts.get_mut(index) {
                Some(slot @ None) => {
                    *slot = Some(outcome);
                    *left -= 1;
                }
                _ => return,
            }
            if *left > 0 {
                return;
            }
            std::mem::take(parts)
                .into_iter()
                .map(|o| o.expect("all delivered"))
                .collect()
        };
        self.finish(all);
    }
}

/// Decodes a task's outcome into its `Vec` of results.
pub(crate) fn decode_vec<R: DeserializeOwned>(outcome: &Outcome) -> Result<Vec<R>, TaskError> {
    let bytes = outcome.as_ref().map_err(Clone::clone)?;
    postcard::from_bytes(&bytes.0).map_err(|e| TaskError::Decode {
        what: "result".to_owned(),
        reason: e.to_string(),
    })
}

/// One task's result.
pub(crate) fn decode_one<R: DeserializeOwned>(outcomes: &[Outcome]) -> Result<R> {
    let mut v = decode_vec::<R>(&outcomes[0]).map_err(Error::Task)?;
    match (v.pop(), v.is_empty()) {
        (Some(r), true) => Ok(r),
        _ => Err(Error::Task(TaskError::Decode {
            what: "result".to_owned(),
            reason: "a task returned other than one result".to_owned(),
        })),
    }
}

/// All chunks' results, in order; the first failed chunk's error.
pub(crate) fn decode_all<R: DeserializeOwned>(outcomes: &[Outcome]) -> Result<Vec<R>> {
    let mut all = Vec::new();
    for o in outcomes {
        all.extend(decode_vec::<R>(o).map_err(Error::Task)?);
    }
    Ok(all)
}

/// The result of a task submitted with [`Pool::apply_async`] (or of a whole
/// [`Pool::map_async`]), Python's `AsyncResult`.
///
/// Every call can be repeated: the outcome stays in the handle, and
/// [`get`](AsyncResult::get) decodes a fresh copy each time.
///
/// [`Pool::apply_async`]: crate::Pool::apply_async
/// [`Pool::map_async`]: crate::Pool::map_async
pub struct AsyncResult<R> {
    collector: Arc<Collector>,
    decode: fn(&[Outcome]) -> Result<R>,
    _r: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.collector.finished.get().is_some())
            .finish_non_exhaustive()
    }
}

impl<R: DeserializeOwned> AsyncResult<R> {
    pub(crate) fn new(collector: Arc<Collector>, decode: fn(&[Outcome]) -> Result<R>) -> Self {
        AsyncResult {
            collector,
            decode,
            _r: PhantomData,
        }
    }

    /// Waits for the result and returns it.
    ///
    /// # Errors
    ///
    /// [`Error::Task`] if the task failed: a panic (with its message), a
    /// dead worker (naming it and its signal), a timeout, a result that
    /// does not decode, a terminated pool.
    pub fn get(&self) -> Result<R> {
        let outcomes = self.collector.wait(None).expect("no deadline");
        (self.decode)(outcomes)
    }

    /// Waits up to `timeout` for the result and returns it.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if the task has not finished in time (it goes
    /// on: ask again later); otherwise as [`get`](AsyncResult::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<R> {
        let deadline = Instant::now().checked_add(timeout);
        match self.collector.wait(deadline) {
            Some(outcomes) => (self.decode)(outcomes),
            None => Err(Error::Timeout),
        }
    }

    /// Waits until the task has finished.
    pub fn wait(&self) {
        self.collector.wait(None);
    }

    /// Waits up to `timeout`; whether the task has finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.collector
            .wait(Instant::now().checked_add(timeout))
            .is_some()
    }

    /// Whether the task has finished.
    pub fn ready(&self) -> bool {
        self.collector.finished.get().is_some()
    }

    /// Whether the task finished without an error; `None` while it runs
    /// (Python raises `ValueError` there).
    pub fn successful(&self) -> Option<bool> {
        self.collector
            .finished
            .get()
            .map(|o| o.iter().all(|o| o.is_ok()))
    }
}

/// Collects the outcomes of an [`Imap`]'s chunks as they come.
pub(crate) struct Stream {
    state: Mutex<StreamState>,
    changed: Condvar,
    /// Chunks delivered so far (changed under `state`'s lock).
    delivered: AtomicU64,
    helper: Weak<dyn Helper>,
}

#[derive(Default)]
struct StreamState {
    /// By chunk number.
    ready: BTreeMap<usize, Outcome>,
    /// Chunk numbers in the order they finished.
    arrived: VecDeque<usize>,
}

impl Stream {
    pub(crate) fn new(helper: Weak<dyn Helper>) -> Arc<Stream> {
        Arc::new(Stream {
            state: Mutex::new(StreamState::default()),
            changed: Condvar::new(),
            delivered: AtomicU64::new(0),
            helper,
        })
    }

    /// Takes chunk `want` (or, with `None`, the first to finish), waiting
    /// until `deadline`.
    fn take(&self, want: Option<usize>, deadline: Option<Instant>) -> Option<(usize, Outcome)> {
        let mut g = lock(&self.state);
        loop {
            let found = match want {
                Some(i) => g.ready.remove(&i).map(|o| {
                    g.arrived.retain(|&a| a != i);
                    (i, o)
                }),
                None => match g.arrived.pop_front() {
                    Some(i) => g.ready.remove(&i).map(|o| (i, o)),
                    None => None,
                },
            };
            if found.is_some() {
                return found;
            }
            let seen = self.delivered.load(Ordering::Relaxed);
            drop(g);
            let more = help_until(&self.helper, deadline, || {
                self.delivered.load(Ordering::Relaxed) != seen
            });
            g = lock(&self.state);
            // Read under the lock `deliver` counts under: no delivery falls
            // between this check and the wait.
            if !more && self.delivered.load(Ordering::Relaxed) == seen {
                g = wait_until(&self.changed, g, deadline)?;
            }
        }
    }
}

impl Sink for Stream {
    fn deliver(&self, index: usize, outcome: Outcome) {
        let mut g = lock(&self.state);
        if g.ready.insert(index, outcome).is_none() {
            g.arrived.push_back(index);
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_all();
    }
}

/// How an [`Imap`] submits its next chunk: the pool's call, boxed so the
/// iterator's type does not name the argument type's encoding.
pub(crate) type Submit<'p> = Box<dyn FnMut(usize) -> Option<Result<usize>> + Send + 'p>;

/// The lazy iterator of [`Pool::imap`] and [`Pool::imap_unordered`]: it
/// reads its input only as results are taken, with at most
/// [`window`](Imap::with_window) chunks in flight, so an endless input does
/// not fill memory (Python's `imap` reads its whole input at once).
///
/// Each item is the task's result, or its error (every item of a failed
/// chunk carries the chunk's error).
///
/// [`Pool::imap`]: crate::Pool::imap
/// [`Pool::imap_unordered`]: crate::Pool::imap_unordered
pub struct Imap<'p, R> {
    stream: Arc<Stream>,
    /// Submits chunk number `n`; `None` once the input is exhausted, else
    /// the count of items in the chunk.
    submit: Submit<'p>,
    ordered: bool,
    window: usize,
    /// Items per chunk in flight, by chunk number.
    in_flight: BTreeMap<usize, usize>,
    next_chunk: usize,
    submitted: usize,
    exhausted: bool,
    buffer: VecDeque<Result<R>>,
}

impl<R> fmt::Debug for Imap<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("ordered", &self.ordered)
            .field("window", &self.window)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl<'p, R: DeserializeOwned> Imap<'p, R> {
    pub(crate) fn new(stream: Arc<Stream>, submit: Submit<'p>, ordered: bool, window: usize) -> Self {
        Imap {
            stream,
            submit,
            ordered,
            window: window.max(1),
            in_flight: BTreeMap::new(),
            next_chunk: 0,
            submitted: 0,
            exhausted: false,
            buffer: VecDeque::new(),
        }
    }

    /// Sets how many chunks may be in flight at once (at least 1; by
    /// default twice the pool's workers). Takes effect at the next call.
    pub fn with_window(mut self, chunks: usize) -> Self {
        self.window = chunks.max(1);
        self
    }

    fn fill(&mut self) -> Option<Error> {
        while !self.exhausted && self.in_flight.len() < self.window {
            match (self.submit)(self.submitted) {
                None => self.exhausted = true,
                Some(Ok(items)) => {
                    self.in_flight.insert(self.submitted, items);
                    self.submitted += 1;
                }
                Some(Err(e)) => {
                    self.exhausted = true;
                    return Some(e);
                }
            }
        }
        None
    }

    /// The next result, waiting at most `timeout` for it: Python's
    /// `next(timeout)`. `None` once every result was taken.
    ///
    /// # Errors
    ///
    /// An item is `Err(Error::Timeout)` if no result came in time (ask
    /// again: nothing is lost), or the task's error.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.next_until(Instant::now().checked_add(timeout))
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Option<Result<R>> {
        loop {
            if let Some(item) = self.buffer.pop_front() {
                return Some(item);
            }
            if let Some(e) = self.fill() {
                return Some(Err(e));
            }
            if self.in_flight.is_empty() {
                return None;
            }
            let want = self.ordered.then_some(self.next_chunk);
            let Some((chunk, outcome)) = self.stream.take(want, deadline) else {
                return Some(Err(Error::Timeout));
            };
            let items = self.in_flight.remove(&chunk).unwrap_or(0);
            if self.ordered {
                self.next_chunk = chunk + 1;
            }
            match decode_vec::<R>(&outcome) {
                Ok(v) => self.buffer.extend(v.into_iter().map(Ok)),
                Err(e) => {
                    for _ in 0..items.max(1) {
                        self.buffer.push_back(Err(Error::Task(e.clone())));
                    }
                }
            }
        }
    }
}

impl<R: DeserializeOwned> Iterator for Imap<'_, R> {
    type Item = Result<R>;
    fn next(&mut self) -> Option<Result<R>> {
        self.next_until(None)
    }
}
