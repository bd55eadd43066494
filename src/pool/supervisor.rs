//! The parent's side of a pool: the table of tasks and workers, the
//! dispatch of tasks to worker inboxes, and the supervisor thread that
//! takes results, notices dead and overdue workers, and replaces them.
//!
//! Each worker has its own inbox holding at most `depth` tasks, so the
//! pool always knows which tasks a worker holds. The worker writes the id
//! of the task it runs in its `running` word before it calls the task
//! function. When a worker is found dead (its exit reaped), the pool first
//! takes every result already on the results queue, then fails the task
//! named in `running` if it still holds it (it was running: a task is
//! never run twice), and sends its other tasks, not started, to other
//! workers. A task in the inbox of a dead worker is therefore neither lost
//! nor run twice.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use crate::loom::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::Duration;

use crate::error::{Error, Result, TaskError};
use crate::pool::func::{FnRef, Key};
use crate::pool::result::{Helper, Outcome, Sink};
use crate::pool::wire::{
    Bytes, RESULT_OVERHEAD, ResultMsg, TaskMsg, WorkerConfig, program_identity,
};
use crate::pool::worker::{self, WorkerEntry};
use crate::process::testing::ForTest;
use crate::process::{Process, StartMethod};
use crate::queue::message::{MessageQueue, RecvError};
use crate::shm::atomic::AtomicValue;
use crate::sys::clock::coarse_ms;

/// Hashes a task id, a counter the pool alone hands out (no one chooses
/// it to collide): one multiplication, not SipHash, on a table touched
/// twice per task.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A pool's settings, fixed at its start.
pub(crate) struct Settings {
    pub(crate) processes: usize,
    pub(crate) method: StartMethod,
    pub(crate) initializer: Option<(FnRef, Bytes)>,
    pub(crate) max_tasks: Option<u64>,
    pub(crate) max_message: usize,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) prefix: String,
    pub(crate) test_name: Option<String>,
    /// Tasks a worker's inbox holds (the one it runs and those behind).
    pub(crate) depth: usize,
    /// How long a worker polls its inbox, and a waiting parent thread
    /// takes results itself, before sleeping.
    pub(crate) spin: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    /// No new tasks; workers stop once every task is done.
    Closed,
    /// Every task done after `close`: the inboxes are closed.
    Stopping,
    Terminated,
}

struct Task {
    func: FnRef,
    input: Bytes,
    sink: Arc<dyn Sink>,
    index: usize,
    /// The worker holding it.
    worker: Option<usize>,
    /// Leading parts of its result.
    partial: Vec<u8>,
}

struct Worker {
    process: Process<'static>,
    name: String,
    pid: u32,
    inbox: MessageQueue<TaskMsg>,
    /// Ids of the tasks sent to it and not finished, in order.
    held: VecDeque<u64>,
    sent: u64,
    /// The task it was killed for running too long.
    overdue: Option<u64>,
}

/// The running/since words of one worker place, reused by its replacements.
struct Place {
    running: AtomicValue<u64>,
    since: AtomicValue<u64>,
    worker: Option<Worker>,
}

pub(crate) struct State {
    pub(crate) phase: Phase,
    next_id: u64,
    tasks: HashMap<u64, Task, BuildHasherDefault<IdHasher>>,
    pending: VecDeque<u64>,
    places: Vec<Place>,
    /// Workers ever started, for their names.
    started: u64,
    /// Why the pool can run nothing (its initializer failed, or a worker
    /// could not be started).
    broken: Option<TaskError>,
    /// Set by the supervisor as it ends.
    pub(crate) finished: bool,
}

pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) key: Key,
    state: Mutex<State>,
    /// Notified when the supervisor ends.
    pub(crate) changed: Condvar,
    results: MessageQueue<ResultMsg>,
    program: (u64, u64),
    /// Parent threads taking results themselves (see `Helper`).
    helpers: AtomicU64,
    /// The supervisor thread, woken when the last helper stops.
    pub(crate) supervisor: OnceLock<Thread>,
}

/// Finished tasks to hand to their sinks once the lock is dropped (a sink
/// may run a callback that submits to the pool).
type Deliveries = Vec<(Arc<dyn Sink>, usize, Outcome)>;

fn deliver(d: Deliveries) {
    for (sink, index, outcome) in d {
        sink.deliver(index, outcome);
    }
}

impl Shared {
    pub(crate) fn new(settings: Settings, key: Key) -> Result<Arc<Shared>> {
        let slots = (settings.processes * (settings.depth + 1)).clamp(4, 1 << 14);
        let results = MessageQueue::new(slots.next_power_of_two(), settings.max_message)?;
        let mut places = Vec::with_capacity(settings.processes);
        for _ in 0..settings.processes {
            places.push(Place {
                running: AtomicValue::new(0)?,
                since: AtomicValue::new(0)?,
                worker: None,
            });
        }
        Ok(Arc::new(Shared {
            settings,
            key,
            state: Mutex::new(State {
                phase: Phase::Running,
                next_id: 1,
                tasks: HashMap::default(),
                pending: VecDeque::new(),
                places,
                started: 0,
                broken: None,
                finished: false,
            }),
            changed: Condvar::new(),
            results,
            program: program_identity(),
            helpers: AtomicU64::new(0),
            supervisor: OnceLock::new(),
        }))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the supervisor out of its wait for results.
    pub(crate) fn wake(&self) {
        let _ = self.results.try_put(ResultMsg::Wake);
        // A helper may take the message: the park ends all the same.
        if let Some(t) = self.supervisor.get() {
            t.unpark();
        }
    }

    /// Starts every worker; on error kills those started.
    pub(crate) fn start_all(&self) -> Result<()> {
        let mut st = self.lock();
        for i in 0..self.settings.processes {
            if let Err(e) = self.start_worker(&mut st, i) {
                kill_all(&mut st);
                return Err(e);
            }
        }
        Ok(())
    }

    fn start_worker(&self, st: &mut State, i: usize) -> Result<()> {
        let s = &self.settings;
        st.started += 1;
        let name = format!("{}-{}", s.prefix, st.started);
        let inbox = MessageQueue::new(s.depth.next_power_of_two(), s.max_message)?;
        let place = &mut st.places[i];
        place.running.store(0, Ordering::Relaxed);
        let cfg = WorkerConfig {
            inbox: inbox.clone(),
            results: self.results.clone(),
            running: place.running.clone(),
            since: place.since.clone(),
            key: self.key,
            program: self.program,
            initializer: s.initializer.clone(),
            max_tasks: s.max_tasks,
            max_part: s.max_message - RESULT_OVERHEAD,
            spin: s.spin,
        };
        let mut p = match s.method {
            StartMethod::Fork => Process::fork(move || worker::run(cfg)),
            StartMethod::Spawn => Process::spawn(WorkerEntry(cfg)),
        }
        .with_name(name.clone())
        .with_daemon(true);
        if let Some(t) = &s.test_name {
            p = p.for_test(t);
        }
        p.start()?;
        let pid = p.pid().unwrap_or(0);
        place.worker = Some(Worker {
            process: p,
            name,
            pid,
            inbox,
            held: VecDeque::new(),
            sent: 0,
            overdue: None,
        });
        Ok(())
    }

    /// Queues `inputs` as tasks `first..` of `sink`'s job and dispatches
    /// what the workers have room for.
    pub(crate) fn submit(
        &self,
        func: FnRef,
        inputs: Vec<Vec<u8>>,
        sink: Arc<dyn Sink>,
        first: usize,
    ) -> Result<()> {
        let mut st = self.lock();
        if st.phase != Phase::Running {
            return Err(Error::PoolClosed);
        }
        if let Some(e) = &st.broken {
            return Err(Error::Task(e.clone()));
        }
        for (k, input) in inputs.into_iter().enumerate() {
            let id = st.next_id;
            st.next_id += 1;
            st.tasks.insert(
                id,
                Task {
                    func,
                    input: Bytes(input.into()),
                    sink: sink.clone(),
                    index: first + k,
                    worker: None,
                    partial: Vec::new(),
                },
            );
            st.pending.push_back(id);
        }
        self.dispatch(&mut st);
        Ok(())
    }

    /// Sends pending tasks to the least loaded workers with room.
    fn dispatch(&self, st: &mut State) {
        if !matches!(st.phase, Phase::Running | Phase::Closed) {
            return;
        }
        let depth = self.settings.depth;
        while let Some(&id) = st.pending.front() {
            let max_tasks = self.settings.max_tasks;
            let best = st
                .places
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.worker.as_ref().map(|w| (i, w)))
                .filter(|(_, w)| {
                    w.overdue.is_none()
                        && w.held.len() < depth
                        && max_tasks.is_none_or(|m| w.sent < m)
                })
                .min_by_key(|(_, w)| w.held.len())
                .map(|(i, _)| i);
            let Some(i) = best else { break };
            let task = st.tasks.get_mut(&id).expect("pending tasks are in the table");
            let w = st.places[i].worker.as_mut().expect("chosen above");
            let msg = TaskMsg {
                id,
                func: task.func,
                input: task.input.clone(),
            };
            match w.inbox.try_put(msg) {
                Ok(()) => {
                    st.pending.pop_front();
                    w.held.push_back(id);
                    w.sent += 1;
                    task.worker = Some(i);
                }
                // The inbox refuses a task the pool counted room for: the
                // worker is gone or its inbox overwritten. Kill it; the
                // check of the workers sends its tasks elsewhere.
                Err(_) => {
                    let _ = w.process.kill();
                    w.overdue.get_or_insert(0);
                    break;
                }
            }
        }
    }

    fn handle(&self, st: &mut State, msg: ResultMsg, out: &mut Deliveries) {
        match msg {
            ResultMsg::Part { id, bytes } => {
                if let Some(t) = st.tasks.get_mut(&id) {
                    t.partial.extend_from_slice(&bytes.0);
                }
            }
            ResultMsg::Done { id, outcome } => {
                let Some(mut t) = st.tasks.remove(&id) else {
                    return;
                };
                if let Some(w) = t.worker.and_then(|i| st.places[i].worker.as_mut()) {
                    w.held.retain(|&h| h != id);
                }
                let outcome = outcome.map(|last| {
                    if t.partial.is_empty() {
                        last
                    } else {
                        t.partial.extend_from_slice(&last.0);
                        Bytes(std::mem::take(&mut t.partial).into())
                    }
                });
                out.push((t.sink, t.index, outcome));
            }
            ResultMsg::InitFailed { message } => {
                self.break_pool(st, TaskError::InitializerFailed { message }, out);
            }
            ResultMsg::Wake => {}
        }
    }

    /// No task can run: fail them all, start no more workers.
    fn break_pool(&self, st: &mut State, why: TaskError, out: &mut Deliveries) {
        st.broken.get_or_insert(why.clone());
        fail_all(st, &why, out);
    }

    /// Takes and handles every result on the queue; how many. Results are
    /// taken only here, under the state lock, so the parts of one result
    /// are handled in order whichever thread takes them.
    fn drain(&self, st: &mut State, out: &mut Deliveries) -> usize {
        let mut n = 0;
        loop {
            match self.results.try_get() {
                Ok(msg) => self.handle(st, msg, out),
                // Only an overwritten queue reads closed: stop.
                Err(RecvError::Closed) => {
                    st.phase = Phase::Terminated;
                    kill_all(st);
                    fail_all(st, &TaskError::Terminated, out);
                    return n;
                }
                Err(_) => return n,
            }
            n += 1;
        }
    }

    /// Starts a worker in empty place `i`, unless the pool is stopping
    /// or broken; a worker that cannot start breaks the pool.
    fn replace(&self, st: &mut State, i: usize, out: &mut Deliveries) {
        if matches!(st.phase, Phase::Running | Phase::Closed)
            && st.broken.is_none()
            && let Err(e) = self.start_worker(st, i)
        {
            let why = TaskError::InitializerFailed {
                message: format!("cannot start a worker: {e}"),
            };
            self.break_pool(st, why, out);
        }
    }

    /// Reaps dead workers (failing the task each was running, re-queueing
    /// the rest), kills overdue ones, and starts replacements.
    fn check_workers(&self, st: &mut State, out: &mut Deliveries) {
        for i in 0..st.places.len() {
            let Some(w) = st.places[i].worker.as_ref() else {
                self.replace(st, i, out);
                continue;
            };
            if let Some(code) = w.process.exitcode() {
                // A result the worker finished sending is on the queue.
                self.drain(st, out);
                let place = &mut st.places[i];
                let w = place.worker.take().expect("checked above");
                // SYNC: pairs with the worker's Release store in `worker::run`.
                let running = place.running.load(Ordering::Acquire);
                // The worker ran its tasks in order: those before the one
                // named in `running` are finished (their results may sit
                // behind a slow claim on the queue: they stay in the
                // table, held by no worker, until they are taken); that
                // one failed with the worker; those after it never
                // started. If `running` names none of them, none started.
                let at = w.held.iter().position(|&id| id == running);
                let mut requeue = Vec::new();
                for (k, id) in w.held.iter().copied().enumerate() {
                    match at {
                        Some(at) if k < at => {
                            if let Some(t) = st.tasks.get_mut(&id) {
                                t.worker = None;
                            }
                        }
                        Some(at) if k == at => {
                            // Killed for a timeout: of this task, or, if it
                            // finished just before the kill landed, of the
                            // one before it (then this one is reported as
                            // killed with its worker).
                            let why = if w.overdue == Some(id) {
                                TaskError::TimedOut {
                                    timeout: self.settings.task_timeout.unwrap_or_default(),
                                }
                            } else {
                                TaskError::WorkerDied {
                                    name: w.name.clone(),
                                    pid: w.pid,
                                    exit_code: code,
                                }
                            };
                            if let Some(t) = st.tasks.remove(&id) {
                                out.push((t.sink, t.index, Err(why)));
                            }
                        }
                        _ => {
                            if let Some(t) = st.tasks.get_mut(&id) {
                                t.worker = None;
                                requeue.push(id);
                            }
                        }
                    }
                }
                for id in requeue.into_iter().rev() {
                    st.pending.push_front(id);
                }
                self.replace(st, i, out);
            } else if let (Some(limit), Some(&front)) = (self.settings.task_timeout, w.held.front())
            {
                let place = &st.places[i];
                if w.overdue.is_none()
                    && place.running.load(Ordering::Acquire) == front
                    && coarse_ms().saturating_sub(place.since.load(Ordering::Relaxed))
                        >= limit.as_millis() as u64
                {
                    let _ = w.process.kill();
                    st.places[i].worker.as_mut().expect("checked").overdue = Some(front);
                }
            }
        }
    }

    /// Stops the pool now: kills every worker, fails every task.
    pub(crate) fn terminate(&self) {
        let mut out = Vec::new();
        {
            let mut st = self.lock();
            if st.phase == Phase::Terminated {
                return;
            }
            st.phase = Phase::Terminated;
            kill_all(&mut st);
            fail_all(&mut st, &TaskError::Terminated, &mut out);
        }
        self.wake();
        deliver(out);
    }

    /// The supervisor thread's loop.
    pub(crate) fn supervise(&self) {
        let mut since_check = std::time::Instant::now();
        loop {
            let busy = !self.lock().tasks.is_empty();
            let nap = if busy {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(50)
            };
            // While a parent thread takes the results itself, a wait on the
            // queue would only cost every result a wake-up of this thread.
            if self.helpers.load(Ordering::SeqCst) > 0 {
                std::thread::park_timeout(nap);
            } else {
                self.results.wait_readable_timeout(nap);
            }
            let mut out = Vec::new();
            let mut st = self.lock();
            self.drain(&mut st, &mut out);
            if since_check.elapsed() >= Duration::from_millis(5) || !busy {
                self.check_workers(&mut st, &mut out);
                since_check = std::time::Instant::now();
            }
            self.dispatch(&mut st);
            if st.phase == Phase::Closed && st.tasks.is_empty() {
                st.phase = Phase::Stopping;
                for w in st.places.iter().filter_map(|p| p.worker.as_ref()) {
                    w.inbox.close();
                }
            }
            let done = match st.phase {
                Phase::Terminated => true,
                Phase::Stopping => {
                    self.check_workers(&mut st, &mut out);
                    st.places.iter().all(|p| p.worker.is_none())
                }
                _ => false,
            };
            drop(st);
            deliver(out);
            if done {
                break;
            }
        }
        // Reap the workers (killed by terminate, or exiting after close).
        let workers: Vec<Worker> = {
            let mut st = self.lock();
            st.places.iter_mut().filter_map(|p| p.worker.take()).collect()
        };
        for w in workers {
            if w.process.join_timeout(Duration::from_secs(10)).is_err() {
                let _ = w.process.kill();
                let _ = w.process.join();
            }
        }
        let mut st = self.lock();
        st.finished = true;
        self.changed.notify_all();
    }
}

fn kill_all(st: &mut State) {
    for w in st.places.iter().filter_map(|p| p.worker.as_ref()) {
        let _ = w.process.kill();
    }
}

fn fail_all(st: &mut State, why: &TaskError, out: &mut Deliveries) {
    st.pending.clear();
    for p in st.places.iter_mut().filter_map(|p| p.worker.as_mut()) {
        p.held.clear();
    }
    for (_, t) in st.tasks.drain() {
        out.push((t.sink, t.index, Err(why.clone())));
    }
}

impl Helper for Shared {
    fn help(&self) -> bool {
        if self.results.is_empty() {
            return false;
        }
        let mut out = Vec::new();
        let mut st = self.lock();
        let n = self.drain(&mut st, &mut out);
        if n > 0 {
            self.dispatch(&mut st);
        }
        drop(st);
        deliver(out);
        n > 0
    }

    fn spin(&self) -> Duration {
        self.settings.spin
    }

    fn helping(&self, on: bool) {
        if on {
            self.helpers.fetch_add(1, Ordering::SeqCst);
        } else if self.helpers.fetch_sub(1, Ordering::SeqCst) == 1
            && let Some(t) = self.supervisor.get()
        {
            // Back to the queue: results may be waiting there already.
            t.unpark();
        }
    }
}

impl Shared {
    pub(crate) fn worker_pids(&self) -> Vec<u32> {
        self.lock()
            .places
            .iter()
            .filter_map(|p| p.worker.as_ref().map(|w| w.pid))
            .collect()
    }
}
