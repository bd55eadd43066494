//! [`Pipe`] and [`Connection`]: Python's `multiprocessing.Pipe()`, a duplex
//! pair of message channels in one shared object.
//!
//! The object holds two message rings (the format of
//! [`MessageQueue`](crate::MessageQueue)): ring 0 carries messages from end 0
//! to end 1, ring 1 the other way. Their words lie before element 0
//! (ring 0's first), their slots are elements `0..cap` and `cap..2 cap`;
//! before the words, the holder tables of end 0 and end 1
//! ([`HolderTable`](crate::algo::holders::HolderTable), 576 bytes each:
//! end 0's first). Closing an end closes both rings: the peer drains what
//! was sent, then sees `Closed`, and its sends fail. An end whose table
//! says every holder is gone is closed by the other end's waiting calls
//! (see [`Connection`]'s end of file); `queue::ends` keeps this process's
//! count of handles per end.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::algo::holders::HOLDER_TABLE_BYTES;
use crate::algo::mpmc::{QueueMemory, RawQueue, STATE_BYTES};
use crate::algo::wait::deadline;
use crate::error::{Error, Result};
use crate::loom::atomic::{AtomicU64, Ordering};
use crate::queue::ends::EndHold;
use crate::queue::message::{
    MsgMem, RecvError, Ring, SendError, Wait, check_capacity, decode, expect, init_stamps, layout,
    recv_with, send, send_bytes,
};
use crate::shm::header::{Expect, ObjectKind};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Place, Placed, Token};
use crate::sys::clock::coarse_ms;

/// How often (ms) one handle's calls that do not wait look whether the
/// other end is gone.
const LOOK_EVERY_MS: u64 = 10;

/// Options for a new pipe: capacity and maximum message size of each
/// direction. [`pipe`] uses the defaults.
///
/// # Examples
///
/// ```
/// use multiproc::Pipe;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (a, b) = Pipe::new().capacity(4).max_message_size(1 << 20).create::<Vec<u8>>()?;
/// a.send(vec![7; 500_000])?;
/// assert_eq!(b.recv()?.len(), 500_000);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pipe {
    capacity: usize,
    max_message_size: usize,
}

impl Default for Pipe {
    fn default() -> Self {
        Self::new()
    }
}

impl Pipe {
    /// Messages each direction holds by default.
    pub const DEFAULT_CAPACITY: usize = 64;
    /// Default maximum message size: 64 KiB slots.
    pub const DEFAULT_MAX_MESSAGE_SIZE: usize = (64 << 10) - 16;

    /// The default options.
    pub fn new() -> Pipe {
        Pipe {
            capacity: Self::DEFAULT_CAPACITY,
            max_message_size: Self::DEFAULT_MAX_MESSAGE_SIZE,
        }
    }

    /// Messages each direction holds before `send` waits.
    pub fn capacity(mut self, capacity: usize) -> Pipe {
        self.capacity = capacity;
        self
    }

    /// The largest encoded message (rounded up to fill 64-byte lines).
    pub fn max_message_size(mut self, max_message_size: usize) -> Pipe {
        self.max_message_size = max_message_size;
        self
    }

    /// Places the pipe in shared memory and returns its two ends.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`] for a capacity or maximum message size of 0
    /// or above the limits of [`MessageQueue`](crate::MessageQueue);
    /// [`Error::Io`] if a segment cannot be made.
    pub fn create<T: Serialize + DeserializeOwned>(self) -> Result<(Connection<T>, Connection<T>)> {
        self.make(Place::Arena)
    }

    /// Places the pipe at `offset` of a named segment and returns its two
    /// ends; unrelated processes get them with [`open_at`](crate::SharedObject::open_at).
    /// `offset` must be a multiple of 64 with
    /// [`shared_size`](Self::shared_size) bytes free after it.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create), plus [`Error::OutOfBounds`] for a
    /// misaligned or too-late offset and [`Error::AlreadyExists`] if an
    /// object was already placed there.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Pipe, SharedMemory};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let name = format!("multiproc-doc-pipe-{}", std::process::id());
    /// let opts = Pipe::new().capacity(4).max_message_size(64);
    /// let shm = SharedMemory::create(&name, opts.shared_size::<String>())?;
    /// let (a, _b) = opts.create_at::<String>(&shm, 0)?;
    /// a.send("hi".to_owned())?;
    /// // ... in another process:
    /// let (_a2, b2) = Pipe::open_at::<String>(&shm, 0)?;
    /// assert_eq!(b2.recv()?, "hi");
    /// # shm.unlink()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn create_at<T: Serialize + DeserializeOwned>(
        self,
        shm: &SharedMemory,
        offset: usize,
    ) -> Result<(Connection<T>, Connection<T>)> {
        self.make(Place::At(shm, offset))
    }

    /// Opens the pipe placed at `offset` of a named segment (by
    /// [`create_at`](Self::create_at)) and returns its two ends, 0 and 1.
    ///
    /// # Errors
    ///
    /// See [`Descriptor`](crate::Descriptor#errors-of-attach-and-open_at).
    pub fn open_at<T: Serialize + DeserializeOwned>(
        shm: &SharedMemory,
        offset: usize,
    ) -> Result<(Connection<T>, Connection<T>)> {
        let end0 = Connection::<T>::open_object(shm, offset)?;
        let end1 = Connection::end_of(end0.placed().clone(), 1)?;
        Ok((end0, end1))
    }

    /// Bytes a pipe with these options takes in a segment (`usize::MAX` if
    /// they are refused).
    pub fn shared_size<T>(&self) -> usize {
        if check_capacity(self.capacity).is_err() {
            return usize::MAX;
        }
        self.capacity
            .checked_mul(2)
            .and_then(|slots| layout::<T>(ObjectKind::Pipe, slots, self.max_message_size).ok())
            .map_or(usize::MAX, |l| l.total_size)
    }

    fn make<T: Serialize + DeserializeOwned>(
        self,
        place: Place<'_>,
    ) -> Result<(Connection<T>, Connection<T>)> {
        check_capacity(self.capacity)?;
        let slots = self.capacity * 2;
        let l = layout::<T>(ObjectKind::Pipe, slots, self.max_message_size)?;
        let slot = l.fingerprint.size as usize;
        let cap = self.capacity;
        let obj = place.make(l, |data| {
            init_stamps(data, slot, 0, cap);
            init_stamps(data, slot, cap, cap);
        })?;
        Ok((
            Connection::end_of(obj.clone(), 0)?,
            Connection::end_of(obj, 1)?,
        ))
    }
}

/// A duplex pipe with the default options ([`Pipe::new`]): Python's
/// `multiprocessing.Pipe()`.
///
/// # Errors
///
/// As [`Pipe::create`].
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (parent, child) = multiproc::pipe::<(i32, Option<()>, String)>()?;
/// child.send((42, None, "hello".into()))?;
/// assert_eq!(parent.recv()?, (42, None, "hello".into()));
/// parent.send((0, Some(()), "back".into()))?;
/// assert_eq!(child.recv()?.2, "back");
/// # Ok(())
/// # }
/// ```
pub fn pipe<T: Serialize + DeserializeOwned>() -> Result<(Connection<T>, Connection<T>)> {
    Pipe::new().create()
}

/// One end of a [`Pipe`]: sends `T`s to the other end and receives theirs.
///
/// Like the ends of Python's `Pipe()`, a `Connection` may be handed to
/// another process (a forked child's copy, or
/// [`attach`](crate::SharedObject::attach) from its [`descriptor`](crate::SharedObject::descriptor)).
/// Several processes may use one end at once (each message goes to one
/// receiver), though a pipe is meant for two parties.
///
/// [`close`](Self::close) from either end closes the pipe; the other end
/// then receives what was already sent, then [`RecvError::Closed`], and
/// its sends fail with [`SendError::Closed`].
///
/// # End of file
///
/// As with Python's pipes, an end that no live process holds any more
/// reads as closed from the other end: its holders were killed, exited or
/// dropped their handles. Each end keeps, in the shared object, a table of
/// the processes holding a handle to it (a process enters with its first
/// handle, a forked child with the `fork` that copied them, a spawned
/// child when it decodes its arguments, a process of `open_at` when it
/// opens; it leaves when its last handle drops, or dies). A `recv` that
/// waits on an empty direction whose sending end is held by nobody closes
/// the pipe, receives what was left, then reports `Closed`; a `send` that
/// waits for room that only a gone end could make reports `Closed` with
/// its value. `try_recv`, `poll`, `try_send` and the `*_timeout` calls
/// look too (at most every 10 ms per handle).
///
/// - A gone end is told after every look for 50 ms found it gone (a
///   forked child records itself within its `fork`, a moment after its
///   parent may have dropped its copy). A `recv` already waiting looks at
///   the end of each slice of its sleep: 140 ms after the peer's death in
///   `tests/pipe_eof.rs`; after a long idle wait, by the slice lengths
///   (not measured), at most about 2.6 s (its slices grow to 1.28 s). A
///   loop of `try_recv`s took 59 ms.
/// - **Drop the end you do not use**, as in Python: a parent that keeps
///   its copy of the child's end holds that end itself, and never sees the
///   child's death. Handing the end to a
///   [`Process`](crate::Process) and dropping it once
///   [`start`](crate::Process::start) returns is safe under both start
///   methods.
/// - A table holds 63 processes per end (a dead one's place is reused);
///   a 64th live one makes the end never count as gone: no false end of
///   file, and no end of file at all. So does a process that holds more
///   than 256 pipe ends at once (it keeps count of 256).
/// - Holders are told apart by process id and start time, read from
///   `/proc` (so a reused process id is not taken for the old holder);
///   without a usable `/proc` a holder always counts as alive.
///
/// Several processes may receive from one end; a receiver killed inside
/// `recv` is counted by [`lost`](Self::lost).
pub struct Connection<T> {
    /// This handle's share in the process's hold on its end (first, so it
    /// drops before the mapping the rings keep).
    hold: EndHold,
    /// When this handle last looked whether the other end is gone
    /// (`coarse_ms`), for the calls that do not wait.
    looked: AtomicU64,
    send: Ring,
    recv: Ring,
    end: u32,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Connection<T> {
    fn clone(&self) -> Self {
        Connection {
            hold: self.hold.clone(),
            looked: AtomicU64::new(0),
            send: self.send.clone(),
            recv: self.recv.clone(),
            end: self.end,
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let holders = self
            .send
            .memory()
            .peer_tables()
            .map(|(mine, theirs)| (mine.holders(), theirs.holders()));
        f.debug_struct("Connection")
            .field("end", &self.end)
            .field("holders (this end, the other)", &holders)
            .field("unread", &self.recv.len())
            .field("closed", &self.send.is_closed())
            .field("place", self.send.memory().placed())
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    /// End `end` (0 or 1) of the pipe `obj`.
    fn end_of(obj: Placed, end: u32) -> Result<Self> {
        let cap = obj.len() / 2;
        if cap == 0 {
            // Only a forged header can say so: `create` makes 2 × capacity.
            return Err(Error::Corrupted {
                offset: 0,
                reason: "pipe with fewer than two slots",
            });
        }
        // Ring 0's words are first (2 × STATE_BYTES before element 0),
        // its slots first too; before the rings' words, end 0's holder
        // table, then end 1's.
        let holders = |e: u32| 2 * STATE_BYTES + (2 - e as usize) * HOLDER_TABLE_BYTES;
        let ring0 = RawQueue::new(
            MsgMem::new(obj.clone(), 2 * STATE_BYTES, 0, cap).with_peers(holders(0), holders(1)),
        );
        let ring1 = RawQueue::new(
            MsgMem::new(obj, STATE_BYTES, cap, cap).with_peers(holders(1), holders(0)),
        );
        let (send, recv) = if end == 0 {
            (ring0, ring1)
        } else {
            (ring1, ring0)
        };
        // Our end's table: the one our sending ring's producers use.
        let (mine, _) = send
            .memory()
            .peer_tables()
            .expect("a pipe's rings know their holder tables");
        Ok(Connection {
            hold: EndHold::new(mine),
            looked: AtomicU64::new(0),
            send,
            recv,
            end,
            _t: PhantomData,
        })
    }

    /// Sends `value` to the other end, sleeping while its direction is
    /// full.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] once the pipe is closed,
    /// [`SendError::TooLarge`] / [`SendError::Encode`] as for
    /// [`MessageQueue::put`](crate::MessageQueue::put); each with the value.
    pub fn send(&self, value: T) -> std::result::Result<(), SendError<T>> {
        self.sent(send(&self.send, value, Wait::Until(None)))
    }

    /// Sends `value` if there is room, without blocking.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), plus [`SendError::Full`].
    pub fn try_send(&self, value: T) -> std::result::Result<(), SendError<T>> {
        self.sent(send(&self.send, value, Wait::No))
    }

    /// Sends `value`, sleeping at most `timeout` while the direction is
    /// full.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), plus [`SendError::Timeout`] if there was
    /// still no room when the time ran out.
    pub fn send_timeout(
        &self,
        value: T,
        timeout: Duration,
    ) -> std::result::Result<(), SendError<T>> {
        self.sent(send(&self.send, value, Wait::at_most(timeout)))
    }

    /// Receives the next message from the other end, sleeping until there
    /// is one.
    ///
    /// # Errors
    ///
    /// [`RecvError::Closed`] once the pipe is closed and everything sent
    /// was received (Python's `EOFError`); [`RecvError::Decode`] if the
    /// message is not a valid `T` (for example, bytes from
    /// [`send_bytes`](Self::send_bytes)).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{RecvError, pipe};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (a, b) = pipe::<u32>()?;
    /// a.send(1)?;
    /// a.close();
    /// assert_eq!(b.recv()?, 1);
    /// assert_eq!(b.recv(), Err(RecvError::Closed));
    /// assert!(b.send(2).unwrap_err().is_closed());
    /// # Ok(())
    /// # }
    /// ```
    pub fn recv(&self) -> std::result::Result<T, RecvError> {
        self.received(Wait::Until(None), |w| recv_with(&self.recv, w, decode::<T>))
    }

    /// Receives the next message if there is one, without blocking.
    ///
    /// # Errors
    ///
    /// [`RecvError::Empty`], or as [`recv`](Self::recv).
    pub fn try_recv(&self) -> std::result::Result<T, RecvError> {
        self.received(Wait::No, |w| recv_with(&self.recv, w, decode::<T>))
    }

    /// Receives the next message, sleeping at most `timeout` until there is
    /// one.
    ///
    /// # Errors
    ///
    /// [`RecvError::Timeout`] if nothing came in time, or as
    /// [`recv`](Self::recv).
    pub fn recv_timeout(&self, timeout: Duration) -> std::result::Result<T, RecvError> {
        self.received(Wait::at_most(timeout), |w| {
            recv_with(&self.recv, w, decode::<T>)
        })
    }

    /// Whether a [`recv`](Self::recv) would return at once (a message is
    /// there, or the pipe is closed and drained), sleeping at most `timeout`
    /// until it would: Python's `poll(timeout)`. `Duration::ZERO` only
    /// looks.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (a, b) = multiproc::pipe::<u8>()?;
    /// assert!(!b.poll(Duration::ZERO));
    /// a.send(5)?;
    /// assert!(b.poll(Duration::from_secs(1)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn poll(&self, timeout: Duration) -> bool {
        if self.recv.wait_readable(deadline(timeout)) {
            return true;
        }
        if self.other_end_gone() {
            self.close();
            return true;
        }
        false
    }

    /// Sends raw bytes as one message (no encoding), sleeping while the
    /// direction is full.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`], or [`SendError::TooLarge`] for more bytes
    /// than [`max_message_size`](Self::max_message_size).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (a, b) = multiproc::pipe::<()>()?;
    /// a.send_bytes(b"raw")?;
    /// assert_eq!(b.recv_bytes()?, b"raw");
    /// # Ok(())
    /// # }
    /// ```
    pub fn send_bytes(&self, bytes: &[u8]) -> std::result::Result<(), SendError<()>> {
        self.sent(send_bytes(&self.send, bytes, Wait::Until(None)))
    }

    /// Sends raw bytes as one message, sleeping at most `timeout` while the
    /// direction is full.
    ///
    /// # Errors
    ///
    /// As [`send_bytes`](Self::send_bytes), plus [`SendError::Full`].
    pub fn send_bytes_timeout(
        &self,
        bytes: &[u8],
        timeout: Duration,
    ) -> std::result::Result<(), SendError<()>> {
        self.sent(send_bytes(&self.send, bytes, Wait::at_most(timeout)))
    }

    /// Receives the next message's raw bytes (whatever was sent: bytes from
    /// [`send_bytes`](Self::send_bytes) or an encoded `T`), sleeping until
    /// there is one.
    ///
    /// # Errors
    ///
    /// [`RecvError::Closed`] once the pipe is closed and drained;
    /// [`RecvError::Decode`] only for a length word overwritten in shared
    /// memory.
    pub fn recv_bytes(&self) -> std::result::Result<Vec<u8>, RecvError> {
        self.received(Wait::Until(None), |w| {
            recv_with(&self.recv, w, |b| Ok(b.to_vec()))
        })
    }

    /// Receives the next message's raw bytes, sleeping at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvError::Timeout`] if nothing came in time, or as
    /// [`recv_bytes`](Self::recv_bytes).
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> std::result::Result<Vec<u8>, RecvError> {
        self.received(Wait::at_most(timeout), |w| {
            recv_with(&self.recv, w, |b| Ok(b.to_vec()))
        })
    }

    /// A send's result. A `Closed` one closes the whole pipe: a direction
    /// closes alone only when a sender found every holder of the other end
    /// gone, and the pipe is then dead both ways. A `Full` or `Timeout`
    /// one becomes `Closed` (and closes the pipe) if the other end is gone
    /// for good (see [`other_end_gone`](Self::other_end_gone)).
    fn sent<V>(
        &self,
        r: std::result::Result<(), SendError<V>>,
    ) -> std::result::Result<(), SendError<V>> {
        match r {
            Err(SendError::Closed(_)) => self.close(),
            Err(SendError::Full(v) | SendError::Timeout(v)) if self.other_end_gone() => {
                self.close();
                return Err(SendError::Closed(v));
            }
            _ => {}
        }
        r
    }

    /// Runs a receive that may wait as `wait` says. A `Closed` result
    /// closes the whole pipe (see [`sent`](Self::sent)). After an `Empty`
    /// or `Timeout` one, if the other end is gone for good, closes the pipe
    /// and receives once more without waiting: a message sent before the
    /// end went, or `Closed`.
    fn received<R>(
        &self,
        wait: Wait,
        receive: impl Fn(Wait) -> std::result::Result<R, RecvError>,
    ) -> std::result::Result<R, RecvError> {
        let r = match receive(wait) {
            Err(RecvError::Empty | RecvError::Timeout) if self.other_end_gone() => {
                self.close();
                receive(Wait::No)
            }
            r => r,
        };
        if matches!(r, Err(RecvError::Closed)) {
            self.close();
        }
        r
    }

    /// Whether every holder of the other end is gone for good, looked up
    /// at most every [`LOOK_EVERY_MS`] per handle (a look reads `/proc`
    /// for each holder: a loop of `try_recv`s must not pay that each
    /// time). A blocked call looks by itself, once per slice of its sleep.
    fn other_end_gone(&self) -> bool {
        let now = coarse_ms();
        // SYNC: Relaxed: only spaces this handle's looks out; two threads
        // that both look at once are merely wasteful.
        let last = self.looked.load(Ordering::Relaxed);
        if now.wrapping_sub(last) < LOOK_EVERY_MS {
            return false;
        }
        self.looked.store(now, Ordering::Relaxed);
        self.send.memory().consumers_gone()
    }

    /// Closes the pipe, both directions, for both ends: the other end
    /// receives what was already sent, then `Closed`; sends from either end
    /// fail. Wakes every sleeper. Closing twice is harmless.
    pub fn close(&self) {
        self.send.close();
        self.recv.close();
    }

    /// Whether the pipe was closed (messages may still be left to receive).
    pub fn is_closed(&self) -> bool {
        self.send.is_closed()
    }

    /// Messages sent to this end that a receiver of this end took and
    /// then died with (killed, say) before its `recv` returned: counted
    /// when a sender frees the dead receiver's slot. Only several receivers
    /// on one end (or a receiver killed mid-`recv` and replaced) can lose a
    /// message this way; the other end's [`lost`](Self::lost) counts the
    /// other direction. See [`Queue::lost`](crate::Queue::lost).
    pub fn lost(&self) -> u64 {
        self.recv.lost()
    }

    /// Which end this is: 0 for the first of the pair, 1 for the second.
    pub fn end(&self) -> u32 {
        self.end
    }

    /// Messages each direction holds.
    pub fn capacity(&self) -> usize {
        self.send.capacity()
    }

    /// The largest encoded message (or byte string) a send accepts.
    pub fn max_message_size(&self) -> usize {
        self.send.memory().max_message_size()
    }
}

// SAFETY: two rings' states, then `len` slots of the fingerprint's slot
// size (ring 0's `len / 2`, then ring 1's), at the data offset of a `Pipe`
// header whose type hash names `T`: all an end reads and writes.
unsafe impl<T: Serialize + DeserializeOwned> Object for Connection<T> {
    const KIND: ObjectKind = ObjectKind::Pipe;
    const LEN: Option<u64> = None;
    const PARTS: u32 = 2;

    fn expect() -> Expect {
        expect::<T>()
    }

    fn from_placed(obj: Placed, part: u32, _: Token) -> Result<Self> {
        Self::end_of(obj, part)
    }

    fn placed(&self) -> &Placed {
        self.send.memory().placed()
    }

    fn part(&self) -> u32 {
        self.end
    }
}

/// Encodes the end as its [`Descriptor`](crate::Descriptor).
impl<T: Serialize + DeserializeOwned> Serialize for Connection<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the pipe end an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for Connection<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
