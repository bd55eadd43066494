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

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Result, TimedOut};
use crate::loom::atomic::{AtomicU64, Ordering};
use crate::queue::message::{
    RecvError, Ring, SendError, Wait, decode, expect, one_ring, one_ring_size, place_one_ring,
    queries,
    recv_with, send,
};
use crate::algo::eventcount::EventCount;
use crate::algo::mpmc::STATE_BYTES;
use crate::shm::header::{Expect, ObjectKind};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Placed, Token};
use crate::algo::wait::deadline;
use crate::shm::object::Place;
use crate::sys::futex::Futex;

/// The unfinished-task line, right before the ring's words.
#[repr(C, align(64))]
struct TaskLine {
    /// Messages put and not yet marked done.
    unfinished: AtomicU64,
    /// Joiners wait here for `unfinished` to reach zero.
    done: EventCount,
}

const TASK_LINE: usize = 64;
const _: () = assert!(size_of::<TaskLine>() == TASK_LINE);

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
/// producers, consumers and joiners may be in any processes. A consumer
/// that dies between `get` and `task_done` leaves its task unfinished: a
/// plain `join` then waits for good, which is what
/// [`join_timeout`](Self::join_timeout) is for.
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
/// q.join(); // all ten were got and marked done
/// assert_eq!(q.unfinished_tasks(), 0);
/// q.close();
/// worker.join().unwrap();
/// # Ok(())
/// # }
/// ```
pub struct JoinableQueue<T> {
    ring: Ring,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            ring: self.ring.clone(),
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
    #[inline]
    fn tasks(&self) -> &TaskLine {
        // SAFETY: kind Joinable puts element 0 six lines past the header:
        // the ring's STATE_BYTES right before it, and the task line right
        // before those, inside the object, after the header, 64-aligned;
        // TaskLine is only atomics (valid for any bytes); the mapping
        // outlives `&self`.
        unsafe {
            &*self
                .ring
                .memory()
                .placed()
                .data()
                .sub(STATE_BYTES + TASK_LINE)
                .cast::<TaskLine>()
        }
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

    fn join_until(&self, d: Option<std::time::Instant>) -> bool {
        let t = self.tasks();
        // SYNC: SeqCst load: the waiter's re-check of the `done` Dekker
        // pair; Acquire half pairs with the SeqCst decrements in
        // `finish_one`, so the joiner sees the consumers' work.
        t.done
            .wait_until(&Futex, d, || t.unfinished.load(Ordering::SeqCst) == 0)
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    fn over(obj: Placed) -> Self {
        JoinableQueue {
            ring: one_ring(obj),
            _t: PhantomData,
        }
    }

    fn make(place: Place<'_>, capacity: usize, max_message_size: usize) -> Result<Self> {
        let ring = place_one_ring::<T>(place, ObjectKind::Joinable, capacity, max_message_size)?;
        Ok(JoinableQueue {
            ring,
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
    /// assert_eq!(multiproc::JoinableQueue::<u8>::shared_size(2, 8), 64 + 64 + 256 + 2 * 64);
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
        recv_with(&self.ring, Wait::Until(None), decode::<T>)
    }

    /// Takes the oldest message if there is one, without blocking.
    ///
    /// # Errors
    ///
    /// As [`MessageQueue::try_get`](crate::MessageQueue::try_get).
    pub fn try_get(&self) -> std::result::Result<T, RecvError> {
        recv_with(&self.ring, Wait::No, decode::<T>)
    }

    /// Takes the oldest message, sleeping at most `timeout` while the queue
    /// is empty.
    ///
    /// # Errors
    ///
    /// As [`MessageQueue::get_timeout`](crate::MessageQueue::get_timeout).
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, RecvError> {
        recv_with(&self.ring, Wait::at_most(timeout), decode::<T>)
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
        self.finish_one()
    }

    /// Sleeps until every message put so far was marked done (returns at
    /// once if none is unfinished).
    pub fn join(&self) {
        while !self.join_until(None) {}
    }

    /// Sleeps until every message put so far was marked done, for at most
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// [`TimedOut`](crate::TimedOut) if some were still unfinished when the
    /// time ran out.
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
    pub fn join_timeout(&self, timeout: Duration) -> std::result::Result<(), TimedOut> {
        if self.join_until(deadline(timeout)) {
            Ok(())
        } else {
            Err(TimedOut)
        }
    }

    /// Tasks put and not yet marked done (a snapshot).
    pub fn unfinished_tasks(&self) -> u64 {
        self.tasks().unfinished.load(Ordering::Relaxed)
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
