//! Variable-size messages: any `serde` type, encoded with postcard into the
//! fixed-size slots of an MPMC ring ([`raw::mpmc`](crate::algo::mpmc)).
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

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::ptr;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::loom::atomic::{AtomicU64, Ordering};
use crate::algo::mpmc::{MpmcState, QueueMemory, RawQueue, STATE_BYTES};
use crate::algo::spsc::{TryPopError, TryPushError};
use crate::shm::header::{Expect, Fingerprint, ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::descriptor::Descriptor;
use crate::shm::object::{Placed, SharedObject};
use crate::algo::wait::deadline;
use crate::shm::object::Place;
use crate::sys::thread::ProcLiveness;
use crate::sys::futex::Futex;
use crate::algo::robust::{Liveness, Owner};

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

/// Alignment (and size granule) of a message slot.
const SLOT_ALIGN: usize = 64;
/// Bytes of a slot before the message: stamp, length, padding.
const SLOT_HEADER: usize = 16;
/// The largest maximum message size objects accept (1 GiB).
pub(crate) const MAX_MESSAGE_SIZE: usize = 1 << 30;
/// The largest number of slots a message object accepts.
pub(crate) const MAX_MESSAGES: usize = crate::shm::header::MAX_RING_SLOTS;
/// Prefix of the type hash of message slots.
const TAG: &str = "multiproc::message::";

/// The slot size for messages of up to `max_message_size` bytes.
fn slot_size(max_message_size: usize) -> Result<usize> {
    if max_message_size == 0 || max_message_size > MAX_MESSAGE_SIZE {
        return Err(Error::InvalidSize {
            requested: max_message_size as u64,
            reason: "maximum message size must be 1 ..= 2^30 bytes",
        });
    }
    Ok((max_message_size + SLOT_HEADER).next_multiple_of(SLOT_ALIGN))
}

/// The layout of a message object of `kind` with `slots` slots for
/// messages of `max_message_size` bytes of `T`.
pub(crate) fn layout<T>(
    kind: ObjectKind,
    slots: usize,
    max_message_size: usize,
) -> Result<ObjectLayout> {
    if slots > 2 * MAX_MESSAGES {
        return Err(Error::InvalidSize {
            requested: slots as u64,
            reason: "capacity above MessageQueue::MAX_CAPACITY",
        });
    }
    let slot = slot_size(max_message_size)?;
    // slot <= 2^30 + 64 fits u32.
    let fp = Fingerprint::slots::<T>(TAG, slot as u32, SLOT_ALIGN as u32);
    ObjectLayout::with_fingerprint(kind, fp, slots)
}

/// What an attacher of a message object of `T` accepts: slots of any size
/// (a multiple of 64) whose type hash names `T`.
pub(crate) fn expect<T>() -> Expect {
    Expect::Slots {
        type_hash: Fingerprint::slot_hash::<T>(TAG),
        align: SLOT_ALIGN as u32,
        min_size: SLOT_ALIGN as u32,
    }
}

/// Capacity argument check shared by the constructors.
pub(crate) fn check_capacity(capacity: usize) -> Result<()> {
    if capacity == 0 || capacity > MAX_MESSAGES {
        return Err(Error::InvalidSize {
            requested: capacity as u64,
            reason: "capacity must be 1 ..= 2^32 - 1 messages",
        });
    }
    Ok(())
}

/// One ring of message slots inside a placed object: its state lies
/// `state_back` bytes before element 0, its slots are elements
/// `first .. first + cap`.
#[derive(Clone)]
pub(crate) struct MsgMem {
    obj: Placed,
    state_back: usize,
    first: usize,
    cap: usize,
    slot: usize,
}

impl fmt::Debug for MsgMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.obj.fmt(f)
    }
}

impl MsgMem {
    /// The ring whose state lies `state_back` bytes before element 0 of
    /// `obj` and whose slots are elements `first .. first + cap`.
    ///
    /// Callers pass constants of the object's kind, checked here against
    /// its validated layout (a failure is a bug in this crate, not bad
    /// shared memory: the layout was computed locally).
    pub(crate) fn new(obj: Placed, state_back: usize, first: usize, cap: usize) -> MsgMem {
        let slot = obj.fingerprint().size as usize;
        assert!(
            cap >= 1
                && first + cap <= obj.len()
                && slot >= SLOT_ALIGN
                && slot.is_multiple_of(SLOT_ALIGN)
                && state_back >= STATE_BYTES
                && state_back.is_multiple_of(SLOT_ALIGN),
            "message ring outside its object"
        );
        MsgMem {
            obj,
            state_back,
            first,
            cap,
            slot,
        }
    }

    /// The object the ring lives in.
    pub(crate) fn placed(&self) -> &Placed {
        &self.obj
    }

    /// Largest message a slot holds.
    #[inline]
    pub(crate) fn max_message_size(&self) -> usize {
        self.slot - SLOT_HEADER
    }

    /// Start of slot `index` (below the capacity).
    #[inline]
    fn slot_ptr(&self, index: usize) -> *mut u8 {
        // One compare keeps every slot access in bounds whoever calls.
        assert!(index < self.cap, "message slot index out of range");
        // SAFETY: first + index < first + cap <= the object's length
        // (checked in `new` and above), so the slot lies inside the object.
        unsafe { self.obj.data().add((self.first + index) * self.slot) }
    }
}

// SAFETY: the state offset and slot bounds were checked in `new` against
// the locally validated layout, which lies inside the mapping that `obj`
// keeps alive; the state is only atomics (valid for any bytes), stamps are
// 64-aligned u64s only ever accessed atomically; the capacity is constant
// and below 2^60 (an object is at most isize::MAX / 2 bytes).
unsafe impl QueueMemory for MsgMem {
    type Waiter = Futex;

    #[inline]
    fn state(&self) -> &MpmcState {
        // SAFETY: `state_back` >= STATE_BYTES bytes before element 0 lie
        // after the header in the object (each message kind's data offset
        // reserves them), 64-aligned; MpmcState is only atomics.
        unsafe { &*self.obj.data().sub(self.state_back).cast::<MpmcState>() }
    }

    #[inline]
    fn capacity(&self) -> usize {
        self.cap
    }

    #[inline]
    fn waiter(&self) -> &Futex {
        &Futex
    }

    #[inline]
    unsafe fn stamp(&self, index: usize) -> &AtomicU64 {
        // SAFETY: index < capacity (caller): the slot's first 8 bytes, 64-aligned.
        unsafe { AtomicU64::from_ptr(self.slot_ptr(index).cast::<u64>()) }
    }
    #[inline]
    fn me(&self) -> Owner {
        crate::sys::thread::current()
    }

    fn is_dead(&self, owner: Owner) -> bool {
        ProcLiveness.is_dead(owner)
    }
}

/// The ring of a message object.
pub(crate) type Ring = RawQueue<MsgMem>;

/// Writes `bytes` (at most the slot's room) into slot `index`.
fn write_slot(m: &MsgMem, index: usize, bytes: &[u8]) {
    debug_assert!(bytes.len() <= m.max_message_size());
    let p = m.slot_ptr(index);
    // SAFETY: the ring passes an index below the capacity whose slot it
    // owns; `bytes` fits after the 16-byte slot header (checked by the
    // caller before claiming). Volatile / plain copies of plain bytes.
    unsafe {
        ptr::write_volatile(p.add(8).cast::<u32>(), bytes.len() as u32);
        ptr::copy_nonoverlapping(bytes.as_ptr(), p.add(SLOT_HEADER), bytes.len());
    }
}

/// Copies the message of slot `index` into `buf`; `Err(len)` if its length
/// word is larger than the slot (a peer scribbled over it).
fn read_slot(m: &MsgMem, index: usize, buf: &Cell<Vec<u8>>) -> std::result::Result<(), usize> {
    let p = m.slot_ptr(index);
    // SAFETY: the ring passes an index below the capacity whose slot it
    // owns; the length word is in the slot header.
    let len = unsafe { ptr::read_volatile(p.add(8).cast::<u32>()) } as usize;
    if len > m.max_message_size() {
        return Err(len);
    }
    let mut v = buf.take();
    v.clear();
    v.reserve(len);
    // SAFETY: len bytes after the slot header lie in the slot (checked
    // above); `v` has room for them; u8 has no invalid values.
    unsafe {
        ptr::copy_nonoverlapping(p.add(SLOT_HEADER), v.as_mut_ptr(), len);
        v.set_len(len);
    }
    buf.set(v);
    Ok(())
}

thread_local! {
    /// Encoding and decoding scratch, reused between messages.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on an empty scratch buffer (this thread's, unless a nested
/// call has it), keeping the buffer for next time if it stayed small.
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = SCRATCH.try_with(Cell::take).unwrap_or_default();
    buf.clear();
    let r = f(&mut buf);
    if buf.capacity() <= 1 << 20 {
        let _ = SCRATCH.try_with(|c| c.set(buf));
    }
    r
}

/// How long a send or receive may wait.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    /// Not at all.
    No,
    /// Until the deadline (`None`: as long as it takes).
    Until(Option<Instant>),
    /// At most this long from the first miss (the clock is read only if
    /// the operation cannot complete at once).
    For(Duration),
}

impl Wait {
    /// Waiting at most `timeout`.
    pub(crate) fn at_most(timeout: Duration) -> Wait {
        Wait::For(timeout)
    }

    /// Whether running out of room or items means the time ran out (a
    /// timed wait), rather than "would block" (no wait).
    fn timed(self) -> bool {
        !matches!(self, Wait::No)
    }
}

/// Puts `bytes` (already checked against the slot room) into `ring`.
fn put_bytes(ring: &Ring, bytes: &[u8], wait: Wait) -> std::result::Result<(), TryPushError<()>> {
    let r = match wait {
        Wait::No => ring.try_put_with(bytes, write_slot),
        Wait::For(t) => match ring.try_put_with(bytes, write_slot) {
            Err(TryPushError::Full(b)) => ring.put_with(b, write_slot, deadline(t)),
            r => r,
        },
        Wait::Until(d) => loop {
            match ring.put_with(bytes, write_slot, d) {
                // Without a deadline the wait ends only with room or close.
                Err(TryPushError::Full(_)) if d.is_none() => {}
                r => break r,
            }
        },
    };
    r.map_err(|e| match e {
        TryPushError::Full(_) => TryPushError::Full(()),
        TryPushError::Closed(_) => TryPushError::Closed(()),
    })
}

/// Encodes `value` and puts it into `ring`.
pub(crate) fn send<T: Serialize>(
    ring: &Ring,
    value: T,
    wait: Wait,
) -> std::result::Result<(), SendError<T>> {
    let max = ring.memory().max_message_size();
    with_scratch(|buf| {
        let encoded = postcard::to_extend(&value, std::mem::take(buf));
        match encoded {
            Ok(b) => *buf = b,
            Err(e) => {
                return Err(SendError::Encode {
                    value,
                    reason: e.to_string(),
                });
            }
        }
        if buf.len() > max {
            return Err(SendError::TooLarge {
                value,
                size: buf.len(),
                max,
            });
        }
        put_bytes(ring, buf, wait).map_err(|e| match e {
            TryPushError::Full(()) if wait.timed() => SendError::Timeout(value),
            TryPushError::Full(()) => SendError::Full(value),
            TryPushError::Closed(()) => SendError::Closed(value),
        })
    })
}

/// Puts raw `bytes` as one message into `ring`.
pub(crate) fn send_bytes(
    ring: &Ring,
    bytes: &[u8],
    wait: Wait,
) -> std::result::Result<(), SendError<()>> {
    let max = ring.memory().max_message_size();
    if bytes.len() > max {
        return Err(SendError::TooLarge {
            value: (),
            size: bytes.len(),
            max,
        });
    }
    put_bytes(ring, bytes, wait).map_err(|e| match e {
        TryPushError::Full(()) if wait.timed() => SendError::Timeout(()),
        TryPushError::Full(()) => SendError::Full(()),
        TryPushError::Closed(()) => SendError::Closed(()),
    })
}

/// Takes the next message from `ring` and hands its bytes to `decode`.
pub(crate) fn recv_with<R>(
    ring: &Ring,
    wait: Wait,
    decode: impl FnOnce(&[u8]) -> std::result::Result<R, String>,
) -> std::result::Result<R, RecvError> {
    with_scratch(|scratch| {
        let cell = Cell::new(std::mem::take(scratch));
        let read = |m: &MsgMem, i: usize| read_slot(m, i, &cell);
        let got = match wait {
            Wait::No => ring.try_get_with(read),
            Wait::For(t) => match ring.try_get_with(read) {
                Err(TryPopError::Empty) => ring.get_with(read, deadline(t)),
                r => r,
            },
            Wait::Until(d) => loop {
                match ring.get_with(read, d) {
                    // Without a deadline the wait ends only with an item or
                    // close.
                    Err(TryPopError::Empty) if d.is_none() => {}
                    r => break r,
                }
            },
        };
        *scratch = cell.take();
        match got {
            Ok(Ok(())) => decode(scratch).map_err(|reason| RecvError::Decode {
                len: scratch.len(),
                reason,
            }),
            Ok(Err(len)) => Err(RecvError::Decode {
                len,
                reason: "message length larger than its slot (shared memory was overwritten)"
                    .to_owned(),
            }),
            Err(TryPopError::Empty) if wait.timed() => Err(RecvError::Timeout),
            Err(TryPopError::Empty) => Err(RecvError::Empty),
            Err(TryPopError::Closed) => Err(RecvError::Closed),
        }
    })
}

/// Decodes one whole `T` from `bytes` (trailing bytes are an error).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, String> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(format!(
            "{} trailing bytes after a {}",
            rest.len(),
            std::any::type_name::<T>()
        )),
        Err(e) => Err(format!("not a {}: {e}", std::any::type_name::<T>())),
    }
}

/// Why a message was not sent. Every variant but
/// [`Encode`](SendError::Encode)'s reason hands the value back.
#[non_exhaustive]
pub enum SendError<T> {
    /// No room (only from the non-blocking calls, `try_*`).
    Full(T),
    /// Still no room when the time ran out (only from the `*_timeout`
    /// calls).
    Timeout(T),
    /// The queue (or the connection) is closed.
    Closed(T),
    /// The encoded message is larger than the maximum message size set at
    /// creation: nothing was sent.
    TooLarge {
        /// The value.
        value: T,
        /// Its encoded size in bytes.
        size: usize,
        /// The maximum message size.
        max: usize,
    },
    /// The value's `Serialize` implementation failed: nothing was sent.
    Encode {
        /// The value.
        value: T,
        /// What the encoder said.
        reason: String,
    },
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Full(v)
            | SendError::Timeout(v)
            | SendError::Closed(v)
            | SendError::TooLarge { value: v, .. }
            | SendError::Encode { value: v, .. } => v,
        }
    }

    /// Whether there was no room.
    pub fn is_full(&self) -> bool {
        matches!(self, SendError::Full(_))
    }

    /// Whether the time ran out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendError::Timeout(_))
    }

    /// Whether the queue or connection is closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, SendError::Closed(_))
    }

    /// The same error without the value.
    fn forget(&self) -> SendError<()> {
        match self {
            SendError::Full(_) => SendError::Full(()),
            SendError::Timeout(_) => SendError::Timeout(()),
            SendError::Closed(_) => SendError::Closed(()),
            SendError::TooLarge { size, max, .. } => SendError::TooLarge {
                value: (),
                size: *size,
                max: *max,
            },
            SendError::Encode { reason, .. } => SendError::Encode {
                value: (),
                reason: reason.clone(),
            },
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.forget() {
            SendError::Full(()) => f.write_str("Full(..)"),
            SendError::Timeout(()) => f.write_str("Timeout(..)"),
            SendError::Closed(()) => f.write_str("Closed(..)"),
            SendError::TooLarge { size, max, .. } => f
                .debug_struct("TooLarge")
                .field("size", &size)
                .field("max", &max)
                .finish_non_exhaustive(),
            SendError::Encode { reason, .. } => f
                .debug_struct("Encode")
                .field("reason", &reason)
                .finish_non_exhaustive(),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("the queue is full"),
            SendError::Timeout(_) => f.write_str("the queue was still full when the time ran out"),
            SendError::Closed(_) => f.write_str("the queue is closed"),
            SendError::TooLarge { size, max, .. } => write!(
                f,
                "message of {size} bytes exceeds the maximum message size of {max} bytes"
            ),
            SendError::Encode { reason, .. } => write!(f, "cannot encode the message: {reason}"),
        }
    }
}

impl<T> std::error::Error for SendError<T> {}

/// Drops the value and keeps the kind.
impl<T> From<SendError<T>> for Error {
    fn from(e: SendError<T>) -> Self {
        match e {
            SendError::Full(_) => Error::Full,
            SendError::Timeout(_) => Error::Timeout,
            SendError::Closed(_) => Error::Closed,
            SendError::TooLarge { size, max, .. } => Error::TooLarge { size, max },
            SendError::Encode { reason, .. } => Error::Encode { reason },
        }
    }
}

/// Why no message was received.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// Nothing to take (only from the non-blocking calls, `try_*`).
    Empty,
    /// Still nothing to take when the time ran out (only from the
    /// `*_timeout` calls).
    Timeout,
    /// Closed, and every message was taken.
    Closed,
    /// A message was taken but is not a valid encoding of the expected
    /// type (a sender of another type, [`send_bytes`](crate::Connection::send_bytes)
    /// data, or overwritten shared memory). The message is consumed; later
    /// ones are unaffected.
    Decode {
        /// The message's length in bytes.
        len: usize,
        /// What the decoder said.
        reason: String,
    },
}

impl RecvError {
    /// Whether there was nothing to take.
    pub fn is_empty(&self) -> bool {
        matches!(self, RecvError::Empty)
    }

    /// Whether the time ran out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, RecvError::Timeout)
    }

    /// Whether the queue or connection is closed and drained.
    pub fn is_closed(&self) -> bool {
        matches!(self, RecvError::Closed)
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Empty => f.write_str("the queue is empty"),
            RecvError::Timeout => f.write_str("the queue was still empty when the time ran out"),
            RecvError::Closed => f.write_str("the queue is closed and empty"),
            RecvError::Decode { len, reason } => {
                write!(f, "cannot decode a message of {len} bytes: {reason}")
            }
        }
    }
}

impl std::error::Error for RecvError {}

impl From<RecvError> for Error {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Empty => Error::Empty,
            RecvError::Timeout => Error::Timeout,
            RecvError::Closed => Error::Closed,
            RecvError::Decode { len, reason } => Error::Decode { len, reason },
        }
    }
}

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
/// and a handle [`attach`](Self::attach)ed from a
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

/// Places a one-ring message object of `kind` (`Messages` or `Joinable`)
/// with `capacity` slots for messages of `max_message_size` bytes of `T`.
pub(crate) fn place_one_ring<T>(
    place: Place<'_>,
    kind: ObjectKind,
    capacity: usize,
    max_message_size: usize,
) -> Result<Ring> {
    check_capacity(capacity)?;
    let l = layout::<T>(kind, capacity, max_message_size)?;
    let slot = l.fingerprint.size as usize;
    let obj = place.make(l, |data| init_stamps(data, slot, 0, capacity))?;
    Ok(one_ring(obj))
}

/// Bytes a one-ring message object of `kind` takes (`usize::MAX` if the
/// sizes are refused).
pub(crate) fn one_ring_size<T>(
    kind: ObjectKind,
    capacity: usize,
    max_message_size: usize,
) -> usize {
    if check_capacity(capacity).is_err() {
        return usize::MAX;
    }
    layout::<T>(kind, capacity, max_message_size).map_or(usize::MAX, |l| l.total_size)
}

/// Makes the ring of a one-ring message object (kinds `Messages` and
/// `Joinable`: the ring's state right before element 0).
pub(crate) fn one_ring(obj: Placed) -> Ring {
    let cap = obj.len();
    RawQueue::new(MsgMem::new(obj, STATE_BYTES, 0, cap))
}

/// Writes the initial stamps of a ring whose slots are elements
/// `first .. first + cap` of the fresh object at `data` with `slot`-byte
/// slots.
pub(crate) fn init_stamps(data: *mut u8, slot: usize, first: usize, cap: usize) {
    for i in 0..cap {
        // SAFETY: the caller's object has at least first + cap slots of
        // `slot` bytes at `data`, 64-aligned, not yet published to anyone.
        // Relaxed: publishing the object (Release) orders it.
        unsafe { AtomicU64::from_ptr(data.add((first + i) * slot).cast::<u64>()) }
            .store(i as u64, Ordering::Relaxed);
    }
}

impl<T: Serialize + DeserializeOwned> MessageQueue<T> {
        /// Opens the `MessageQueue<T>` placed at `offset` of a named segment.
    ///
    /// # Errors
    ///
    /// See [`Descriptor`](crate::Descriptor#errors-of-attach-and-open_at).
    pub fn open_at(shm: &SharedMemory, offset: usize) -> Result<Self> {
        Self::open_object(shm, offset)
    }

    /// Attaches to the `MessageQueue<T>` a descriptor names, in this process or
    /// another.
    ///
    /// # Errors
    ///
    /// See [`Descriptor`](crate::Descriptor#errors-of-attach-and-open_at).
    pub fn attach(descriptor: &Descriptor) -> Result<Self> {
        Self::attach_object(descriptor)
    }

    /// A descriptor from which another process can [`attach`](Self::attach).
    pub fn descriptor(&self) -> Descriptor {
        self.describe()
    }

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
    /// [`Error::InvalidSize`] for a capacity of 0 or above
    /// [`MAX_CAPACITY`](Self::MAX_CAPACITY), a maximum message size of 0
    /// or above [`MAX_MESSAGE_SIZE`](Self::MAX_MESSAGE_SIZE), or a queue too
    /// large for the address space; [`Error::Io`] if a segment cannot be
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
    /// processes to [`open_at`](Self::open_at). `offset` must be a multiple
    /// of 64 with [`shared_size`](Self::shared_size) bytes free after it.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), plus [`Error::OutOfBounds`] for a misaligned or
    /// too-late offset and [`Error::AlreadyExists`] if an object was already
    /// placed there.
    ///
    /// # Examples
    ///
    /// ```
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
unsafe impl<T: Serialize + DeserializeOwned> SharedObject for MessageQueue<T> {
    const KIND: ObjectKind = ObjectKind::Messages;
    const LEN: Option<u64> = None;

    fn expect() -> Expect {
        expect::<T>()
    }

    fn from_placed(obj: Placed, _: u32) -> Result<Self> {
        Ok(Self::over(obj))
    }

    fn placed(&self) -> &Placed {
        self.ring.memory().placed()
    }
}

/// Encodes the handle as its [`Descriptor`].
impl<T: Serialize + DeserializeOwned> Serialize for MessageQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`] names.
impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for MessageQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
