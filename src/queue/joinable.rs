//! [`JoinableQueue`]: a [`MessageQueue`](crate::MessageQueue) with a shared
//! count of unfinished tasks, as Python's `multiprocessing.JoinableQueue`.
//!
//! The count lives on its own cache line before the ring's words. A put
//! adds one *before* the message enters the ring (so a consumer's
//! `task_done` can never find the count at zero for a message it took), and
//! takes it back if the put fails. `task_done` decrements with a CAS that
//! refuses to go below zero; the decrement to zero (a `SeqCst` RMW) wakes
//! joiners through an eventcount whose condition reads the count with a
//! `SeqCst` load: the same Dekker pair as the rings' blocking.
//!
//! That count is exact while nobody dies, and never too low: a producer
//! killed while blocked in `put` leaves it one too high, a consumer killed
//! before `task_done` leaves its task in it. So it is only the fast path.
//! The truth is derived, when the count is not zero, from two things no
//! death can leave wrong: a census of the ring's slots (written, or
//! claimed by a live producer or consumer: [`RawQueue::census`]) and the
//! takers' table (per process, messages got and not yet marked done,
//! raised while the get still holds the slot's claim; `algo/takers.rs`).
//! Unfinished = the census's items + the live takers' counts; lost = the
//! dead takers' counts. A joiner sleeps in slices (10 ms doubling to
//! 160 ms) and, after each slice with the count above zero, counts the
//! truth: no unfinished task left ends the join (with [`TasksLost`] if
//! some were lost).
//!
//! [`RawQueue::census`]: crate::algo::mpmc::RawQueue::census

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::loom::atomic::{AtomicU64, Ordering};
use crate::queue::message::{
    RecvError, Ring, SendError, Wait, decode, expect, one_ring, one_ring_size, place_one_ring,
    queries, recv_taking, send,
};
use crate::algo::takers::{TAKERS_BYTES, Takers};
use crate::sys::thread::{self, ProcLiveness};
use crate::algo::eventcount::EventCount;
use crate::algo::mpmc::STATE_BYTES;
use crate::shm::header::{Expect, ObjectKind};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Placed, Token};
use crate::algo::wait::deadline;
use crate::shm::object::Place;
use crate::sys::futex::Futex;

/// The unfinished-task line, then the takers' table, right before the
/// ring's words.
#[repr(C, align(64))]
struct TaskLine {
    /// Messages put and not yet marked done, as far as the live calls
    /// know (see the module docs): never below the truth.
    unfinished: AtomicU64,
    /// Joiners wait here for `unfinished` to reach zero.
    done: EventCount,
}

const TASK_LINE: usize = 64;
const _: () = assert!(size_of::<TaskLine>() == TASK_LINE);

/// A joiner's first slice before it counts the truth, and its longest.
const JOIN_LOOK: Duration = Duration::from_millis(10);
const JOIN_LOOK_MAX: Duration = Duration::from_millis(160);

/// Tasks that a process got and died with before marking them done:
/// [`JoinableQueue::join`] ends and reports them, where Python's would wait
/// for ever. They stay counted (every later join reports them) until
/// [`JoinableQueue::clear_lost`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{count} task(s) lost with a process that died before task_done")]
pub struct TasksLost {
    /// How many.
    pub count: u64,
}

impl From<TasksLost> for crate::Error {
    fn from(e: TasksLost) -> Self {
        crate::Error::TasksLost { count: e.count }
    }
}

/// Why a [`JoinableQueue::join_timeout`] did not see every task done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinTimeoutError {
    /// Tasks were still unfinished when the time ran out.
    #[error("timed out with tasks unfinished")]
    Timeout,
    /// No task is unfinished, but some were lost with a dead process.
    #[error(transparent)]
    Lost(TasksLost),
}

impl From<JoinTimeoutError> for crate::Error {
    fn from(e: JoinTimeoutError) -> Self {
        match e {
            JoinTimeoutError::Timeout => crate::Error::Timeout,
            JoinTimeoutError::Lost(l) => l.into(),
        }
    }
}

/// The tasks as a census and the takers' table tell them.
#[derive(Clone, Copy, Debug)]
struct Truth {
    unfinished: u64,
    lost: u64,
}

/// `task_done` was called more times than messages were put.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("task_done() called more times than messages were put")]
pub struct TaskDoneError;

impl From<TaskDoneError> for crate::Error {
    fn from(_: TaskDoneError) -> Self {
        crate::Error::TaskDone
    }
}

/// A [`MessageQueue`](crate::MessageQueue) that also counts unfinished
/// tasks: Python's `multiprocessing.JoinableQueue`.
///
/// Every successful put adds one to the count of unfinished tasks; each
/// [`task_done`](Self::task_done), called by a consumer once it finished
/// with a message it got, takes one off. [`join`](Self::join) sleeps until
/// the count is zero: every message put so far was got *and* processed.
/// More `task_done` calls than puts is a [`TaskDoneError`], as Python's
/// `ValueError`.
///
/// The queue, the count and the sleepers all live in shared memory, so
/// producers, consumers and joiners may be in any processes.
///
/// # A process that dies
///
/// A producer killed anywhere in `put` (blocked for room, say) leaves
/// nothing counted: its task was never put. A consumer killed between
/// `get` and `task_done` leaves its task *lost*: once every other task is
/// done, [`join`](Self::join) returns [`TasksLost`] with their number,
/// instead of waiting for ever as Python's does (and
/// [`lost_tasks`](Self::lost_tasks) tells it). Each process's gets are
/// counted in a table of 63 processes next to the ring, raised while the
/// get still holds the message's slot: one killed in the few instructions
/// between claiming the slot and that count loses the message uncounted
/// (the ring's own [`lost`](Self::lost) counts it). After a death a `join`
/// notices within its slices (10 ms, doubling to 160 ms); with more than 63
/// processes ever getting from the queue the table overflows, and joins go
/// by the plain count, which a death leaves too high (use
/// [`join_timeout`](Self::join_timeout) then).
///
/// # Examples
///
/// ```
/// use multiproc::JoinableQueue;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let q = JoinableQueue::<String>::new(16, 64)?;
/// let worker = {
///     let q = q.clone();
///     std::thread::spawn(move || {
///         while let Ok(job) = q.get() {
///             assert!(job.starts_with("job"));
///             q.task_done().unwrap();
///         }
///     })
/// };
/// for i in 0..10 {
///     q.put(format!("job {i}"))?;
/// }
/// q.join()?; // all ten were got and marked done
/// assert_eq!(q.unfinished_tasks(), 0);
/// q.close();
/// worker.join().unwrap();
/// # Ok(())
/// # }
/// ```
pub struct JoinableQueue<T> {
    ring: Ring,
    /// This process's entry in the takers' table, once known
    /// (`usize::MAX` before).
    taker: AtomicU64,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            ring: self.ring.clone(),
            // The cached index, still right in this process (a clone made
            // after a fork finds it stale and looks again).
            taker: AtomicU64::new(self.taker.load(Ordering::Relaxed)),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("len", &self.ring.len())
            .field(
                "unfinished",
                &self.tasks().unfinished.load(Ordering::Relaxed),
            )
            .field("capacity", &self.ring.capacity())
            .field("closed", &self.ring.is_closed())
            .field("place", self.ring.memory().placed())
            .finish()
    }
}

impl<T> JoinableQueue<T> {
    /// The `back` bytes before the ring's words, as a `U`.
    ///
    /// # Safety
    ///
    /// `back` is `TAKERS_BYTES` (for `Takers`) or `TAKERS_BYTES +
    /// TASK_LINE` (for `TaskLine`).
    #[inline]
    unsafe fn before_ring<U>(&self, back: usize) -> &U {
        // SAFETY: kind Joinable puts element 0 23 lines past the header:
        // the ring's STATE_BYTES right before it, the takers' table before
        // those and the task line before that, inside the object, after
        // the header, 64-aligned; both are only atomics (valid for any
        // bytes); the mapping outlives `&self`.
        unsafe {
            &*self
                .ring
                .memory()
                .placed()
                .data()
                .sub(STATE_BYTES + back)
                .cast::<U>()
        }
    }

    #[inline]
    fn tasks(&self) -> &TaskLine {
        // SAFETY: the task line's offset.
        unsafe { self.before_ring(TAKERS_BYTES + TASK_LINE) }
    }

    #[inline]
    fn takers(&self) -> &Takers {
        // SAFETY: the takers' table's offset.
        unsafe { self.before_ring(TAKERS_BYTES) }
    }

    /// Counts, in this process's takers' entry, a message just taken (the
    /// caller still holds its slot's claim).
    fn took(&self) {
        // SYNC: Relaxed: a cache of this handle's entry index.
        let mut hint = self.taker.load(Ordering::Relaxed) as usize;
        // `process`, not `process_prepared`: the handle's making ran the
        // checks it needs (in this process, or in the parent it forked).
        self.takers().took(thread::process(), &mut hint);
        self.taker.store(hint as u64, Ordering::Relaxed);
    }

    /// The tasks as the ring's census and the takers' table tell them, or
    /// `None` if the table overflowed (a taker it does not know of).
    fn truth(&self) -> Option<Truth> {
        // The census first, then the table: a message a get moved from the
        // ring to its taker's count in between is seen twice (a moment's
        // over-count), never missed.
        let census = self.ring.census();
        let held = self.takers().held(&ProcLiveness)?;
        Some(Truth {
            unfinished: census.written + census.writing + census.reading + held.live,
            lost: held.dead,
        })
    }

    /// Takes one task off the count; `Err` if it is zero.
    fn finish_one(&self) -> std::result::Result<(), TaskDoneError> {
        let t = self.tasks();
        let mut n = t.unfinished.load(Ordering::Relaxed);
        loop {
            if n == 0 {
                return Err(TaskDoneError);
            }
            // SYNC: SeqCst: the state store of the `done` Dekker pair, read
            // by the SeqCst load in `join_until`; its Release half also
            // orders the consumer's work on the task before a joiner's
            // return.
            match t
                .unfinished
                .compare_exchange(n, n - 1, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
        if n == 1 {
            t.done.notify(&Futex);
        }
        Ok(())
    }

    /// Waits until no task is unfinished (`Ok`, or `Lost` if some were
    /// lost), or `d` passes (`Timeout`).
    fn join_until(
        &self,
        d: Option<std::time::Instant>,
    ) -> std::result::Result<(), JoinTimeoutError> {
        let t = self.tasks();
        let mut slice = JOIN_LOOK;
        loop {
            let end = std::time::Instant::now() + slice;
            let until = d.map_or(end, |d| d.min(end));
            // SYNC: SeqCst load: the waiter's re-check of the `done` Dekker
            // pair; Acquire half pairs with the SeqCst decrements in
            // `finish_one`, so the joiner sees the consumers' work.
            if t.done.wait_until(&Futex, Some(until), || {
                t.unfinished.load(Ordering::SeqCst) == 0
            }) {
                return Ok(());
            }
            // A slice with tasks counted: maybe some are a dead process's.
            if let Some(truth) = self.truth()
                && truth.unfinished == 0
            {
                return match truth.lost {
                    0 => Ok(()),
                    count => Err(JoinTimeoutError::Lost(TasksLost { count })),
                };
            }
            if d.is_some_and(|d| std::time::Instant::now() >= d) {
                return Err(JoinTimeoutError::Timeout);
            }
            slice = (slice * 2).min(JOIN_LOOK_MAX);
        }
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    fn over(obj: Placed) -> Self {
        // The identity checks `took` relies on, once (they allocate).
        thread::process_prepared();
        JoinableQueue {
            ring: one_ring(obj),
            taker: AtomicU64::new(u64::MAX),
            _t: PhantomData,
        }
    }

    fn make(place: Place<'_>, capacity: usize, max_message_size: usize) -> Result<Self> {
        let ring = place_one_ring::<T>(place, ObjectKind::Joinable, capacity, max_message_size)?;
        thread::process_prepared();
        Ok(JoinableQueue {
            ring,
            taker: AtomicU64::new(u64::MAX),
            _t: PhantomData,
        })
    }

    /// Places an empty queue of `capacity` messages of up to
    /// `max_message_size` encoded bytes in shared memory, with no
    /// unfinished tasks.
    ///
    /// # Errors
    ///
    /// As [`MessageQueue::new`](crate::MessageQueue::new).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let q = multiproc::JoinableQueue::<(u32, String)>::new(64, 1024)?;
    /// assert_eq!(q.unfinished_tasks(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(capacity: usize, max_message_size: usize) -> Result<Self> {
        Self::make(Place::Arena, capacity, max_message_size)
    }

    /// Places an empty queue at `offset` of a named segment (see
    /// [`MessageQueue::create_at`](crate::MessageQueue::create_at)).
    ///
    /// # Errors
    ///
    /// As [`MessageQueue::create_at`](crate::MessageQueue::create_at).
    pub fn create_at(
        shm: &SharedMemory,
        offset: usize,
        capacity: usize,
        max_message_size: usize,
    ) -> Result<Self> {
        Self::make(Place::At(shm, offset), capacity, max_message_size)
    }

    /// Bytes a queue takes in a segment (`usize::MAX` if those sizes are
    /// refused).
    ///
    /// # Examples
    ///
    /// ```
    /// // Header, the task line, four lines of ring words, 2 slots of 64 bytes.
    /// assert_eq!(multiproc::JoinableQueue::<u8>::shared_size(2, 8), 64 + 64 + 1088 + 256 + 2 * 64);
    /// ```
    pub fn shared_size(capacity: usize, max_message_size: usize) -> usize {
        one_ring_size::<T>(ObjectKind::Joinable, capacity, max_message_size)
    }

    /// Counts a task, then sends `value` as `wait` says; takes the count
    /// back if the value was not sent.
    fn counted(&self, value: T, wait: Wait) -> std::result::Result<(), SendError<T>> {
        // SYNC: Relaxed is enough: a consumer can only `task_done` this
        // task after getting the message, which the ring's Release/Acquire
        // stamp orders after this increment.
        self.tasks().unfinished.fetch_add(1, Ordering::Relaxed);
        send(&self.ring, value, wait).inspect_err(|_| {
            // Ours to take back: we added it above.
            let _ = self.finish_one();
        })
    }

    /// Puts `value` and counts it as an unfinished task, sleeping while the
    /// queue is full.
    ///
    /// # Errors
    ///
    /// As [`MessageQueue::put`](crate::MessageQueue::put); a value not put
    /// is not counted.
    pub fn put(&self, value: T) -> std::result::Result<(), SendError<T>> {
        self.counted(value, Wait::Until(None))
    }

    /// Puts and counts `value` if there is room, without blocking.
    ///
    /// # Errors
    ///
    /// As [`MessageQueue::try_put`](crate::MessageQueue::try_put).
    pub fn try_put(&self, value: T) -> std::result::Result<(), SendError<T>> {
        self.counted(value, Wait::No)
    }

    /// Puts and counts `value`, sleeping while the queue is full, for at
    /// most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`MessageQueue::put_timeout`](crate::MessageQueue::put_timeout).
    pub fn put_timeout(
        &self,
        value: T,
        timeout: Duration,
    ) -> std::result::Result<(), SendError<T>> {
        self.counted(value, Wait::at_most(timeout))
    }

    /// Takes the oldest message, sleeping while the queue is empty. Call
    /// [`task_done`](Self::task_done) once it is processed.
    ///
    /// # Errors
    ///
    /// As [`MessageQueue::get`](crate::MessageQueue::get). A message that
    /// fails to decode was taken, so it still counts as a task to mark
    /// done.
    pub fn get(&self) -> std::result::Result<T, RecvError> {
        recv_taking(&self.ring, Wait::Until(None), || self.took(), decode::<T>)
    }

    /// Takes the oldest message if there is one, without blocking.
    ///
    /// # Errors
    ///
    /// As [`MessageQueue::try_get`](crate::MessageQueue::try_get).
    pub fn try_get(&self) -> std::result::Result<T, RecvError> {
        recv_taking(&self.ring, Wait::No, || self.took(), decode::<T>)
    }

    /// Takes the oldest message, sleeping at most `timeout` while the queue
    /// is empty.
    ///
    /// # Errors
    ///
    /// As [`MessageQueue::get_timeout`](crate::MessageQueue::get_timeout).
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, RecvError> {
        recv_taking(&self.ring, Wait::at_most(timeout), || self.took(), decode::<T>)
    }

    /// Marks one task done: the consumer finished with a message it got.
    /// The call that brings the count to zero wakes every joiner.
    ///
    /// # Errors
    ///
    /// [`TaskDoneError`] if there is no unfinished task (more calls than
    /// puts); the count stays zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{JoinableQueue, TaskDoneError};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = JoinableQueue::<u8>::new(4, 8)?;
    /// q.put(1)?;
    /// q.get()?;
    /// q.task_done()?;
    /// assert_eq!(q.task_done(), Err(TaskDoneError));
    /// # Ok(())
    /// # }
    /// ```
    pub fn task_done(&self) -> std::result::Result<(), TaskDoneError> {
        // The taker's count first, then the live count: a death between the
        // two leaves the live count too high (never below the truth, which
        // the join counts anyway), and `clear_lost` may subtract a dead
        // taker's counts from it, every one of which it still holds.
        // SYNC: Relaxed: a cache of this handle's entry index.
        let hint = self.taker.load(Ordering::Relaxed) as usize;
        let took_off = self
            .takers()
            .done(thread::process(), hint, &ProcLiveness);
        self.finish_one().inspect_err(|_| {
            if let Some(i) = took_off {
                self.takers().undo(i);
            }
        })
    }

    /// Sleeps until every message put so far was marked done (returns at
    /// once if none is unfinished).
    ///
    /// # Errors
    ///
    /// [`TasksLost`] once no task is unfinished but some were got by a
    /// process that died before marking them done (killed, say): Python's
    /// `join` would wait for them for ever. Every later `join` reports them
    /// too, until [`clear_lost`](Self::clear_lost).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = multiproc::JoinableQueue::<u8>::new(4, 8)?;
    /// q.put(1)?;
    /// q.get()?;
    /// q.task_done()?;
    /// q.join()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn join(&self) -> std::result::Result<(), TasksLost> {
        loop {
            match self.join_until(None) {
                Ok(()) => return Ok(()),
                Err(JoinTimeoutError::Lost(l)) => return Err(l),
                Err(JoinTimeoutError::Timeout) => {}
            }
        }
    }

    /// Sleeps until every message put so far was marked done, for at most
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// [`JoinTimeoutError::Timeout`] if some were still unfinished when the
    /// time ran out; [`JoinTimeoutError::Lost`] as [`join`](Self::join)'s
    /// [`TasksLost`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = multiproc::JoinableQueue::<u8>::new(4, 8)?;
    /// q.put(1)?;
    /// assert!(q.join_timeout(Duration::from_millis(5)).is_err());
    /// q.get()?;
    /// q.task_done()?;
    /// q.join_timeout(Duration::from_millis(5))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> std::result::Result<(), JoinTimeoutError> {
        self.join_until(deadline(timeout))
    }

    /// Tasks put and not yet marked done, lost ones included (a snapshot).
    /// A put still blocked for room is not counted, nor one whose producer
    /// died before it returned. Costs a look at every slot when tasks are
    /// counted.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = multiproc::JoinableQueue::<u8>::new(4, 8)?;
    /// q.put(1)?;
    /// assert_eq!(q.unfinished_tasks(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn unfinished_tasks(&self) -> u64 {
        let counted = self.tasks().unfinished.load(Ordering::Relaxed);
        if counted == 0 {
            return 0;
        }
        self.truth()
            .map_or(counted, |t| (t.unfinished + t.lost).min(counted))
    }

    /// Tasks got by a process that died before marking them done (a
    /// snapshot): what [`join`](Self::join) reports as [`TasksLost`].
    pub fn lost_tasks(&self) -> u64 {
        self.truth().map_or(0, |t| t.lost)
    }

    /// Forgets the lost tasks (of processes that died): they no longer
    /// count as unfinished, and joins no longer report them, as if they had
    /// been marked done. Returns how many. Like a mutex's
    /// `mark_consistent`: call it once whatever those tasks stood for was
    /// dealt with.
    pub fn clear_lost(&self) -> u64 {
        let n = self
            .takers()
            .clear_dead(thread::process_prepared(), &ProcLiveness);
        for _ in 0..n {
            if self.finish_one().is_err() {
                break;
            }
        }
        n
    }

    /// Closes the queue, as [`MessageQueue::close`](crate::MessageQueue::close).
    /// The task count is unchanged: joiners still wait for `task_done`.
    pub fn close(&self) {
        self.ring.close();
    }

    queries!();
}

// SAFETY: the unfinished-task line, then the layout of a `MessageQueue<T>`, at
// the data offset of a `Joinable` header: all the handle reads and writes.
unsafe impl<T: Serialize + DeserializeOwned> Object for JoinableQueue<T> {
    const KIND: ObjectKind = ObjectKind::Joinable;
    const LEN: Option<u64> = None;

    fn expect() -> Expect {
        expect::<T>()
    }

    fn from_placed(obj: Placed, _: u32, _: Token) -> Result<Self> {
        Ok(Self::over(obj))
    }

    fn placed(&self) -> &Placed {
        self.ring.memory().placed()
    }
}

/// Encodes the handle as its [`Descriptor`](crate::Descriptor).
impl<T: Serialize + DeserializeOwned> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
