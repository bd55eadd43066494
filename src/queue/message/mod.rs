//! Variable-size messages: any `serde` type, encoded with postcard into the
//! fixed-size slots of an MPMC ring ([`algo::mpmc`](crate::algo::mpmc)).
//!
//! [`MessageQueue`] is the typed handle; [`JoinableQueue`](crate::JoinableQueue)
//! and [`Connection`](crate::Connection) use the same ring and slot format.
//!
//! # Slots
//!
//! Each slot is a multiple of 64 bytes, 64-aligned:
//!
//! ```text
//! +0   stamp   u64   the ring's per-slot sequence stamp
//! +8   len     u32   bytes of the message
//! +12  (pad)
//! +16  message bytes, up to slot size - 16
//! ```
//!
//! The slot size is fixed when the object is made (the maximum message size
//! rounded up) and recorded as the element size of the object's header
//! fingerprint, whose type hash names the message type; an attacher takes
//! the slot size from the validated header.
//!
//! A message is encoded into a thread-local buffer first, so an oversize
//! message is refused before a slot is claimed, then copied into the slot.
//! A getter copies the bytes out (a length above the slot's room is a
//! scribble, reported as a decode error) and decodes after the slot is
//! free again.

mod error;
mod slot;
mod wire;

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use error::{RecvError, SendError};
pub(crate) use slot::{
    MAX_MESSAGE_SIZE, MAX_MESSAGES, MsgMem, Ring, check_capacity, expect, init_stamps, layout,
    one_ring, one_ring_size, place_one_ring,
};
pub(crate) use wire::{Wait, decode, recv_taking, recv_with, send, send_bytes};

use crate::error::Result;
use crate::algo::wait::deadline;
use crate::shm::header::{Expect, ObjectKind};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Place, Placed, Token};

/// The snapshot queries of a one-ring message queue (a `ring: Ring`
/// field): `is_closed`, `len`, `is_empty`, `is_full`, `capacity`, `lost`,
/// `max_message_size`.
macro_rules! queries {
    () => {
        /// Whether the queue was closed (messages may still be left to get).
        pub fn is_closed(&self) -> bool {
            self.ring.is_closed()
        }

        /// Messages in the queue now (a snapshot other handles may change at
        /// once).
        pub fn len(&self) -> usize {
            self.ring.len()
        }

        /// Whether the queue is empty now (a snapshot).
        pub fn is_empty(&self) -> bool {
            self.ring.is_empty()
        }

        /// Whether the queue is full now (a snapshot).
        pub fn is_full(&self) -> bool {
            self.ring.len() == self.ring.capacity()
        }

        /// The number of slots.
        pub fn capacity(&self) -> usize {
            self.ring.capacity()
        }

        /// Messages taken by a consumer that died (killed, say) before its
        /// get returned, and so lost: counted when a producer frees the
        /// dead consumer's slot. See [`Queue::lost`](crate::Queue::lost).
        pub fn lost(&self) -> u64 {
            self.ring.lost()
        }

        /// The largest encoded message a slot holds: the size asked for at
        /// creation, rounded up so that slots fill whole 64-byte lines.
        pub fn max_message_size(&self) -> usize {
            self.ring.memory().max_message_size()
        }
    };
}
pub(crate) use queries;

/// A bounded multi-producer multi-consumer queue of `serde` values in
/// shared memory: Python's `multiprocessing.Queue` for any picklable
/// object, with postcard instead of pickle.
///
/// Use [`Queue`](crate::Queue) for [`Pod`](bytemuck::Pod) values (no
/// encoding at all, several times faster); use `MessageQueue` for strings,
/// vectors, enums, options, structs: any `T: Serialize + DeserializeOwned`.
///
/// The queue has `capacity` slots of a fixed size, chosen with the maximum
/// message size at creation (rounded up so that each slot fills whole
/// 64-byte lines; [`max_message_size`](Self::max_message_size) says what
/// it became). A message that encodes larger is refused with
/// [`SendError::TooLarge`], never truncated. The queue takes
/// `capacity × slot size` bytes of address space; creating it touches the
/// page holding each slot's stamp, and the rest of a slot's pages only
/// become resident as long messages fill them.
///
/// Every handle reaches the same queue: [`Clone`]s, a forked child's copy,
/// and a handle [`attach`](crate::SharedObject::attach)ed from a
/// [`Descriptor`](crate::Descriptor). Putting and getting are lock-free,
/// make no system call when nobody sleeps, and the blocking forms spin
/// briefly, then sleep on a shared futex. [`close`](Self::close) works as
/// [`Queue::close`](crate::Queue::close).
///
/// # Examples
///
/// ```
/// use multiproc::MessageQueue;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let q = MessageQueue::<(i32, Option<()>, String)>::new(16, 256)?;
/// q.put((42, None, "hello".to_owned()))?;
/// assert_eq!(q.get()?, (42, None, "hello".to_owned()));
///
/// // Too large for its slots: refused, and the value is handed back.
/// let err = q.put((1, Some(()), "x".repeat(1000))).unwrap_err();
/// assert!(matches!(err, multiproc::SendError::TooLarge { .. }));
/// # Ok(())
/// # }
/// ```
pub struct MessageQueue<T> {
    ring: Ring,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for MessageQueue<T> {
    fn clone(&self) -> Self {
        MessageQueue {
            ring: self.ring.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for MessageQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageQueue")
            .field("len", &self.ring.len())
            .field("capacity", &self.ring.capacity())
            .field("max_message_size", &self.ring.memory().max_message_size())
            .field("closed", &self.ring.is_closed())
            .field("place", self.ring.memory().placed())
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> MessageQueue<T> {
        /// The largest capacity [`new`](Self::new) accepts.
    pub const MAX_CAPACITY: usize = MAX_MESSAGES;

    /// The largest maximum message size [`new`](Self::new) accepts (1 GiB).
    pub const MAX_MESSAGE_SIZE: usize = MAX_MESSAGE_SIZE;

    fn over(obj: Placed) -> Self {
        MessageQueue {
            ring: one_ring(obj),
            _t: PhantomData,
        }
    }

    fn make(place: Place<'_>, capacity: usize, max_message_size: usize) -> Result<Self> {
        let ring = place_one_ring::<T>(place, ObjectKind::Messages, capacity, max_message_size)?;
        Ok(MessageQueue {
            ring,
            _t: PhantomData,
        })
    }

    /// Places an empty queue of `capacity` messages of up to
    /// `max_message_size` encoded bytes in shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`](crate::Error::InvalidSize) for a capacity of 0 or above
    /// [`MAX_CAPACITY`](Self::MAX_CAPACITY), a maximum message size of 0
    /// or above [`MAX_MESSAGE_SIZE`](Self::MAX_MESSAGE_SIZE), or a queue too
    /// large for the address space; [`Error::Io`](crate::Error::Io) if a segment cannot be
    /// made.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::MessageQueue;
    /// # fn main() -> multiproc::Result<()> {
    /// let q = MessageQueue::<String>::new(8, 100)?;
    /// assert_eq!(q.max_message_size(), 112); // rounded up to fill 128-byte slots
    /// assert!(MessageQueue::<String>::new(0, 100).is_err());
    /// assert!(MessageQueue::<String>::new(8, 0).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(capacity: usize, max_message_size: usize) -> Result<Self> {
        Self::make(Place::Arena, capacity, max_message_size)
    }

    /// Places an empty queue at `offset` of a named segment, for unrelated
    /// processes to [`open_at`](crate::SharedObject::open_at). `offset` must be a multiple
    /// of 64 with [`shared_size`](Self::shared_size) bytes free after it.
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
    /// use multiproc::{MessageQueue, SharedMemory};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let name = format!("multiproc-doc-msgq-{}", std::process::id());
    /// let size = MessageQueue::<String>::shared_size(4, 64);
    /// let shm = SharedMemory::create(&name, size)?;
    /// let q = MessageQueue::<String>::create_at(&shm, 0, 4, 64)?;
    /// q.put("hi".to_owned())?;
    /// // ... in another process:
    /// let q2 = MessageQueue::<String>::open_at(&shm, 0)?;
    /// assert_eq!(q2.get()?, "hi");
    /// # drop((q, q2));
    /// # shm.unlink()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn create_at(
        shm: &SharedMemory,
        offset: usize,
        capacity: usize,
        max_message_size: usize,
    ) -> Result<Self> {
        Self::make(Place::At(shm, offset), capacity, max_message_size)
    }

    /// Bytes a queue of `capacity` messages of up to `max_message_size`
    /// bytes takes in a segment (`usize::MAX` if those sizes are refused).
    ///
    /// # Examples
    ///
    /// ```
    /// // Header, four lines of shared words, then 4 slots of 64 bytes.
    /// assert_eq!(multiproc::MessageQueue::<u8>::shared_size(4, 48), 64 + 256 + 4 * 64);
    /// ```
    pub fn shared_size(capacity: usize, max_message_size: usize) -> usize {
        one_ring_size::<T>(ObjectKind::Messages, capacity, max_message_size)
    }

    /// Puts `value`, sleeping while the queue is full.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] if the queue is (or gets) closed,
    /// [`SendError::TooLarge`] if `value` encodes larger than
    /// [`max_message_size`](Self::max_message_size),
    /// [`SendError::Encode`] if its `Serialize` implementation fails; each
    /// with the value.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = multiproc::MessageQueue::<Vec<f64>>::new(4, 1024)?;
    /// q.put(vec![1.0, 2.5])?;
    /// assert_eq!(q.get()?, [1.0, 2.5]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn put(&self, value: T) -> std::result::Result<(), SendError<T>> {
        send(&self.ring, value, Wait::Until(None))
    }

    /// Puts `value` if there is room, without blocking (Python's
    /// `put_nowait`).
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put), plus [`SendError::Full`].
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = multiproc::MessageQueue::<String>::new(1, 64)?;
    /// q.try_put("a".into())?;
    /// assert!(q.try_put("b".into()).unwrap_err().is_full());
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_put(&self, value: T) -> std::result::Result<(), SendError<T>> {
        send(&self.ring, value, Wait::No)
    }

    /// Puts `value`, sleeping while the queue is full, for at most
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put), plus [`SendError::Timeout`] if the queue was
    /// still full when the timeout elapsed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = multiproc::MessageQueue::<u8>::new(1, 8)?;
    /// q.put_timeout(1, Duration::from_millis(5))?;
    /// assert!(q.put_timeout(2, Duration::from_millis(5)).unwrap_err().is_timeout());
    /// # Ok(())
    /// # }
    /// ```
    pub fn put_timeout(
        &self,
        value: T,
        timeout: Duration,
    ) -> std::result::Result<(), SendError<T>> {
        send(&self.ring, value, Wait::at_most(timeout))
    }

    /// Takes the oldest message, sleeping while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`RecvError::Closed`] once the queue is closed and every message was
    /// taken; [`RecvError::Decode`] if the message taken is not a valid `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = multiproc::MessageQueue::<Option<String>>::new(4, 64)?;
    /// q.put(Some("job".into()))?;
    /// q.put(None)?; // the end marker
    /// while let Some(job) = q.get()? {
    ///     assert_eq!(job, "job");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn get(&self) -> std::result::Result<T, RecvError> {
        recv_with(&self.ring, Wait::Until(None), decode::<T>)
    }

    /// Takes the oldest message if there is one, without blocking (Python's
    /// `get_nowait`).
    ///
    /// # Errors
    ///
    /// [`RecvError::Empty`], [`RecvError::Closed`] once closed and drained,
    /// or [`RecvError::Decode`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{MessageQueue, RecvError};
    /// # fn main() -> multiproc::Result<()> {
    /// let q = MessageQueue::<String>::new(4, 64)?;
    /// assert_eq!(q.try_get(), Err(RecvError::Empty));
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_get(&self) -> std::result::Result<T, RecvError> {
        recv_with(&self.ring, Wait::No, decode::<T>)
    }

    /// Takes the oldest message, sleeping while the queue is empty, for at
    /// most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), plus [`RecvError::Timeout`] if the queue was
    /// still empty when the timeout elapsed.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{MessageQueue, RecvError};
    /// use std::time::Duration;
    /// # fn main() -> multiproc::Result<()> {
    /// let q = MessageQueue::<String>::new(4, 64)?;
    /// assert_eq!(q.get_timeout(Duration::from_millis(5)), Err(RecvError::Timeout));
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, RecvError> {
        recv_with(&self.ring, Wait::at_most(timeout), decode::<T>)
    }

    /// Waits up to `timeout` until a get may succeed (a message is there,
    /// or the queue is closed), taking nothing; whether it may. For a
    /// consumer that takes messages under a lock of its own, so that no
    /// other consumer handles one out of order.
    pub(crate) fn wait_readable_timeout(&self, timeout: Duration) -> bool {
        self.ring.wait_readable(deadline(timeout))
    }

    /// Closes the queue: later puts fail with `Closed`, and gets drain what
    /// is left, then see `Closed`. Wakes every sleeper.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{MessageQueue, RecvError};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = MessageQueue::<String>::new(4, 64)?;
    /// q.put("last".into())?;
    /// q.close();
    /// assert!(q.put("late".into()).unwrap_err().is_closed());
    /// assert_eq!(q.get()?, "last");
    /// assert_eq!(q.get(), Err(RecvError::Closed));
    /// # Ok(())
    /// # }
    /// ```
    pub fn close(&self) {
        self.ring.close();
    }

    queries!();
}

// SAFETY: the ring state, then `len` slots of the fingerprint's slot size (stamp,
// length, message bytes) at the data offset of a `Messages` header whose
// type hash names `T`: all the handle reads and writes.
unsafe impl<T: Serialize + DeserializeOwned> Object for MessageQueue<T> {
    const KIND: ObjectKind = ObjectKind::Messages;
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
impl<T: Serialize + DeserializeOwned> Serialize for MessageQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for MessageQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
