//! [`Queue`]: a bounded multi-producer multi-consumer queue of `Pod` values
//! in shared memory (the ring algorithm is in
//! [`algo::mpmc`](crate::algo::mpmc)).

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use bytemuck::Pod;

mod mapped;

pub use crate::queue::error::{Closed, GetTimeoutError, PutTimeoutError, TryGetError, TryPutError};
pub(crate) use mapped::Slot;
use mapped::{MAX_CAPACITY, Mapped, layout};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::loom::atomic::Ordering;
use crate::algo::mpmc::RawQueue;
use crate::shm::header::{Expect, ObjectKind};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Placed, Token};
use crate::algo::wait::deadline;
use crate::shm::object::Place;

/// A bounded multi-producer multi-consumer queue of [`Pod`] values in
/// shared memory: Python's `multiprocessing.Queue` without pickling.
///
/// [`Queue::new`] places a ring of `capacity` slots in shared memory. Every
/// handle reaches the same queue: [`Clone`]s, a forked child's copy, and a
/// handle [`attach`](crate::SharedObject::attach)ed in an unrelated process from a
/// [`Descriptor`](crate::Descriptor). Any number of them may put and get at
/// once, from any threads and processes; operations take `&self`.
///
/// Values are copied into and out of the ring, never serialised. Putting
/// and getting take no lock (a bounded ring after Dmitry Vyukov's, one
/// stamp per slot); with nobody asleep they make no system call. A blocking
/// [`put`](Queue::put) or [`get`](Queue::get) spins briefly, then sleeps on
/// a shared futex. [`put_slice`](Queue::put_slice) and
/// [`get_into`](Queue::get_into) move a whole batch with one update of the
/// shared position and one wake-up.
///
/// After [`close`](Queue::close), from any handle, puts fail with `Closed`
/// and gets drain what is left, then report `Closed`: the end-of-stream
/// marker without a marker value. Dropping a handle does not close the
/// queue.
///
/// A process killed in the middle of a put or get blocks nobody. Each slot
/// is claimed in its stamp with the claimant's thread id and start time;
/// a caller that finds a claim stuck at the position it needs asks whether
/// the claimant still lives (blocked callers look every 20 ms while a claim
/// sits at their position, and back off to about a second on an idle
/// queue); the non-blocking calls wait for a live claimant's operation to
/// finish (up to 50 ms), so a `try_get` after one's own completed
/// `try_put` never finds the queue empty. A dead
/// producer's position is skipped: its `put` never returned, so nothing is
/// lost. A dead consumer's slot is freed and its value counted in
/// [`lost`](Queue::lost). All processes using a queue must share a PID
/// namespace for this (as for the robust locks); where the claimant's
/// liveness cannot be told, its slot waits. A peer that scribbles over the
/// queue's memory can make results wrong or calls wait, never make this
/// process read or write outside the queue.
///
/// # Examples
///
/// ```
/// use multiproc::Queue;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let q = Queue::<u64>::new(1024)?;
/// let producers: Vec<_> = (0..3u64)
///     .map(|p| {
///         let q = q.clone();
///         std::thread::spawn(move || {
///             for i in 0..1000 {
///                 q.put(p * 1000 + i).unwrap();
///             }
///         })
///     })
///     .collect();
/// let mut sum = 0;
/// for _ in 0..3000 {
///     sum += q.get()?;
/// }
/// for p in producers {
///     p.join().unwrap();
/// }
/// assert_eq!(sum, 3000 * 2999 / 2);
/// # Ok(())
/// # }
/// ```
pub struct Queue<T: Pod> {
    raw: RawQueue<Mapped<T>>,
}

impl<T: Pod> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            raw: self.raw.clone(),
        }
    }
}

impl<T: Pod> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("closed", &self.is_closed())
            .field("place", &self.raw.memory().obj)
            .finish()
    }
}

impl<T: Pod> Queue<T> {
        /// The largest capacity [`new`](Self::new) accepts.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiproc::Queue::<u8>::MAX_CAPACITY, u32::MAX as usize);
    /// ```
    pub const MAX_CAPACITY: usize = MAX_CAPACITY;

    fn over(obj: Placed) -> Self {
        Queue {
            raw: RawQueue::new(Mapped {
                obj,
                _t: PhantomData,
            }),
        }
    }

    fn make(place: Place<'_>, capacity: usize) -> Result<Self> {
        let obj = place.make(layout::<T>(capacity)?, |data| {
            let slots = data.cast::<Slot<T>>();
            for i in 0..capacity {
                // SAFETY: i < capacity, the layout's length: the slot lies in
                // the object, which nobody else uses before it is published.
                // Relaxed: publishing the object (Release) orders it.
                unsafe { (*slots.add(i)).stamp.store(i as u64, Ordering::Relaxed) };
            }
        })?;
        Ok(Self::over(obj))
    }

    /// Places an empty queue of `capacity` slots in shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`](crate::Error::InvalidSize) for a capacity of 0, above
    /// [`MAX_CAPACITY`](Self::MAX_CAPACITY), or too large for the address
    /// space; [`Error::Io`](crate::Error::Io) if a segment cannot be made.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Queue;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = Queue::<[f32; 2]>::new(16)?;
    /// q.put([1.0, 2.0])?;
    /// assert_eq!(q.get()?, [1.0, 2.0]);
    /// assert!(Queue::<u8>::new(0).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(capacity: usize) -> Result<Self> {
        Self::make(Place::Arena, capacity)
    }

    /// Places an empty queue of `capacity` slots at `offset` of a named
    /// segment, for unrelated processes to [`open_at`](crate::SharedObject::open_at).
    /// `offset` must be a multiple of [`shared_align`](Self::shared_align)
    /// with [`shared_size`](Self::shared_size) bytes free after it.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), plus [`Error::OutOfBounds`](crate::Error::OutOfBounds) for a misaligned or
    /// too-late offset and [`Error::AlreadyExists`](crate::Error::AlreadyExists) if an object was already
    /// placed there.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::SharedObject;
    /// use multiproc::{Queue, SharedMemory};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let name = format!("multiproc-doc-mpmc-{}", std::process::id());
    /// let shm = SharedMemory::create(&name, Queue::<u32>::shared_size(8))?;
    /// let q = Queue::<u32>::create_at(&shm, 0, 8)?;
    /// q.put(5)?;
    /// // ... in another process:
    /// let q2 = Queue::<u32>::open_at(&shm, 0)?;
    /// assert_eq!(q2.get()?, 5);
    /// # drop((q, q2));
    /// # shm.unlink()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn create_at(shm: &SharedMemory, offset: usize, capacity: usize) -> Result<Self> {
        Self::make(Place::At(shm, offset), capacity)
    }

    /// Bytes a queue of `capacity` slots takes in a segment (`usize::MAX`
    /// if that capacity is refused).
    ///
    /// # Examples
    ///
    /// ```
    /// // Header, four lines of shared words, then 16 bytes (stamp, value)
    /// // per slot.
    /// assert_eq!(multiproc::Queue::<u64>::shared_size(4), 64 + 256 + 4 * 16);
    /// ```
    pub fn shared_size(capacity: usize) -> usize {
        layout::<T>(capacity).map_or(usize::MAX, |l| l.total_size)
    }

    /// Alignment a queue of `T` needs in a segment (64, or `T`'s if
    /// larger).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiproc::Queue::<u64>::shared_align(), 64);
    /// ```
    pub fn shared_align() -> usize {
        layout::<T>(1).map_or(usize::MAX, |l| l.align)
    }

    /// Puts `value`, sleeping while the queue is full.
    ///
    /// # Errors
    ///
    /// [`Closed`] with the value if the queue is (or gets) closed.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = multiproc::Queue::<u8>::new(1)?;
    /// q.put(7)?;
    /// assert_eq!(q.get()?, 7);
    /// q.close();
    /// assert_eq!(q.put(8).unwrap_err().0, 8);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn put(&self, value: T) -> std::result::Result<(), Closed<T>> {
        loop {
            match self.raw.put(value, None) {
                Ok(()) => return Ok(()),
                Err(TryPutError::Closed(v)) => return Err(Closed(v)),
                // Without a deadline the wait only ends with room or close.
                Err(TryPutError::Full(_)) => {}
            }
        }
    }

    /// Puts `value` if there is room, without blocking (Python's
    /// `put_nowait`).
    ///
    /// # Errors
    ///
    /// [`TryPutError::Full`] or [`TryPutError::Closed`], with the value.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Queue, TryPutError};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = Queue::<u8>::new(1)?;
    /// q.try_put(1)?;
    /// assert!(matches!(q.try_put(2), Err(TryPutError::Full(2))));
    /// q.close();
    /// assert!(matches!(q.try_put(3), Err(TryPutError::Closed(3))));
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn try_put(&self, value: T) -> std::result::Result<(), TryPutError<T>> {
        self.raw.try_put(value)
    }

    /// Puts `value`, sleeping while the queue is full, for at most
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// [`PutTimeoutError::Timeout`] if the queue was still full when the
    /// timeout elapsed, [`PutTimeoutError::Closed`] if it is (or gets)
    /// closed; both with the value.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = multiproc::Queue::<u8>::new(1)?;
    /// q.put_timeout(1, Duration::from_millis(5))?;
    /// assert!(q.put_timeout(2, Duration::from_millis(5)).unwrap_err().is_timeout());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn put_timeout(
        &self,
        value: T,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<T>> {
        // The clock is read only if the queue is full now.
        match self.raw.try_put(value) {
            Err(TryPutError::Full(v)) => self.raw.put(v, deadline(timeout)).map_err(Into::into),
            done => done.map_err(Into::into),
        }
    }

    /// Takes the oldest value, sleeping while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the queue is closed and every value was taken.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = multiproc::Queue::<u32>::new(4)?;
    /// q.put(1)?;
    /// q.close();
    /// assert_eq!(q.get()?, 1);
    /// assert!(q.get().is_err());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn get(&self) -> std::result::Result<T, Closed> {
        loop {
            match self.raw.get(None) {
                Ok(v) => return Ok(v),
                Err(TryGetError::Closed) => return Err(Closed(())),
                // Without a deadline the wait only ends with an item or close.
                Err(TryGetError::Empty) => {}
            }
        }
    }

    /// Takes the oldest value if there is one, without blocking (Python's
    /// `get_nowait`).
    ///
    /// # Errors
    ///
    /// [`TryGetError::Empty`], or [`TryGetError::Closed`] once the queue is
    /// closed and drained. A value another handle is still putting (it
    /// claimed the slot and was preempted before filling it) counts as not
    /// there yet.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Queue, TryGetError};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = Queue::<u8>::new(4)?;
    /// assert_eq!(q.try_get(), Err(TryGetError::Empty));
    /// q.put(9)?;
    /// assert_eq!(q.try_get(), Ok(9));
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn try_get(&self) -> std::result::Result<T, TryGetError> {
        self.raw.try_get()
    }

    /// Takes the oldest value, sleeping while the queue is empty, for at
    /// most `timeout`.
    ///
    /// # Errors
    ///
    /// [`GetTimeoutError::Timeout`] if the queue was still empty when the
    /// timeout elapsed, [`GetTimeoutError::Closed`] once it is closed and
    /// drained.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{GetTimeoutError, Queue};
    /// use std::time::Duration;
    /// # fn main() -> multiproc::Result<()> {
    /// let q = Queue::<u8>::new(4)?;
    /// assert_eq!(q.get_timeout(Duration::from_millis(5)), Err(GetTimeoutError::Timeout));
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetTimeoutError> {
        // The clock is read only if the queue is empty now.
        match self.raw.try_get() {
            Err(TryGetError::Empty) => self.raw.get(deadline(timeout)).map_err(Into::into),
            done => done.map_err(Into::into),
        }
    }

    /// Puts as many values of `src` as fit now, in order, claiming them
    /// with one update of the shared position; returns how many. Never
    /// blocks; returns 0 when the queue is full or closed.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = multiproc::Queue::<u16>::new(4)?;
    /// assert_eq!(q.put_slice(&[1, 2, 3, 4, 5, 6]), 4);
    /// let mut got = [0; 8];
    /// assert_eq!(q.get_into(&mut got), 4);
    /// assert_eq!(got[..4], [1, 2, 3, 4]);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn put_slice(&self, src: &[T]) -> usize {
        self.raw.put_slice(src)
    }

    /// Takes up to `dst.len()` values into `dst`, oldest first, claiming
    /// them with one update of the shared position; returns how many.
    /// Never blocks; returns 0 when the queue is empty (see
    /// [`try_get`](Self::try_get) to tell empty from closed).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = multiproc::Queue::<u8>::new(8)?;
    /// q.put_slice(&[1, 2, 3]);
    /// let mut buf = [0; 2];
    /// assert_eq!(q.get_into(&mut buf), 2);
    /// assert_eq!(buf, [1, 2]);
    /// assert_eq!(q.get_into(&mut buf), 1);
    /// assert_eq!(buf[0], 3);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn get_into(&self, dst: &mut [T]) -> usize {
        self.raw.get_into(dst)
    }

    /// Closes the queue: later puts fail with `Closed`, and gets drain what
    /// is left, then see `Closed`. Wakes every sleeper. Closing twice is
    /// harmless; there is no reopening.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Queue, TryGetError};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = Queue::<u8>::new(4)?;
    /// q.put(1)?;
    /// q.close();
    /// assert_eq!(q.try_get(), Ok(1));
    /// assert_eq!(q.try_get(), Err(TryGetError::Closed));
    /// # Ok(())
    /// # }
    /// ```
    pub fn close(&self) {
        self.raw.close();
    }

    /// Whether the queue was closed (values may still be left to get).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let q = multiproc::Queue::<u8>::new(4)?;
    /// assert!(!q.is_closed());
    /// q.clone().close();
    /// assert!(q.is_closed());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.raw.is_closed()
    }

    /// Values taken by a consumer that died before its get returned, and so
    /// lost.
    ///
    /// A process killed in the middle of a `get` (after it claimed the
    /// value's slot, before the call returned) cannot hand the value on. A
    /// producer that later needs that slot finds its claimant dead, frees
    /// the slot and counts the value here (so the count grows only once a
    /// producer comes round to that slot). A process killed in the middle of
    /// a `put` loses nothing: its `put` never returned, and consumers skip
    /// the position.
    ///
    /// A get keeps its claim until all its work is done: the copy out of
    /// the slot, for [`MessageQueue`](crate::MessageQueue),
    /// [`JoinableQueue`](crate::JoinableQueue) and
    /// [`Connection`](crate::Connection) the decoding too (a slow
    /// `Deserialize` included), and the wake of a producer that waits for
    /// room. One window remains: a consumer killed after the release of the
    /// slot and before the call returned (the wake of a producer waiting
    /// for that release, if one waits, one load and the return; for
    /// [`get_into`](Self::get_into), every value of the batch) loses the
    /// value uncounted. Measured by `tests/dead_consumers.rs` with
    /// `MULTIPROC_REDTEAM=300` (consumers SIGKILLed at random in a stream):
    /// 1 of 1,800 kills (300 for each of six queue kinds and ways, batches
    /// of `get_into` among them) lost a value uncounted, the test's own
    /// bookkeeping after the get included; before the claim covered the
    /// decode and the wake, 242 did. Run again with that bookkeeping set
    /// apart, on a busy box: 4 of 1,800, 3 of them with 200 KB messages
    /// (whose producers often wait for the release).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let q = multiproc::Queue::<u64>::new(4)?;
    /// assert_eq!(q.lost(), 0);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn lost(&self) -> u64 {
        self.raw.lost()
    }

    /// Values in the queue now (a snapshot other handles may change at
    /// once; values being put count).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = multiproc::Queue::<u8>::new(4)?;
    /// q.put(1)?;
    /// assert_eq!(q.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the queue is empty now (a snapshot).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let q = multiproc::Queue::<u8>::new(4)?;
    /// assert!(q.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Whether the queue is full now (a snapshot).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = multiproc::Queue::<u8>::new(1)?;
    /// q.put(1)?;
    /// assert!(q.is_full());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }

    /// The number of slots.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let q = multiproc::Queue::<u8>::new(100)?;
    /// assert_eq!(q.capacity(), 100);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn capacity(&self) -> usize {
        self.raw.capacity()
    }
}

// SAFETY: the ring state, then `len` slots of `Slot<T>` at the data offset of an
// `Mpmc` header of that fingerprint: all the handle reads and writes.
unsafe impl<T: Pod> Object for Queue<T> {
    const KIND: ObjectKind = ObjectKind::Mpmc;
    const LEN: Option<u64> = None;

    fn expect() -> Expect {
        Expect::of::<Slot<T>>()
    }

    fn from_placed(obj: Placed, _: u32, _: Token) -> Result<Self> {
        Ok(Self::over(obj))
    }

    fn placed(&self) -> &Placed {
        &self.raw.memory().obj
    }
}

/// Encodes the handle as its [`Descriptor`](crate::Descriptor).
impl<T: Pod> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de, T: Pod> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
