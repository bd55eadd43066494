//! A single-producer single-consumer channel of [`Pod`] values in shared
//! memory: the fastest one-to-one path between two processes.
//!
//! [`channel`] places a bounded ring of `capacity` slots in shared memory
//! and returns its two ends. The [`Producer`] pushes, the [`Consumer`] pops;
//! values are copied into and out of the ring, never serialised. Either end
//! can go to another process: a forked child uses its copy, an unrelated
//! process [`attach`](crate::SharedObject::attach)es from a [`Descriptor`](crate::Descriptor).
//!
//! Pushing and popping are lock-free. Each end caches the other's index and
//! reads the shared one only when its copy says "full" or "empty"; batch
//! [`push_slice`](Producer::push_slice) and [`pop_into`](Consumer::pop_into)
//! publish the index once per batch. A blocking [`push`](Producer::push) or
//! [`pop`](Consumer::pop) spins briefly, then sleeps on a shared futex (an
//! eventcount); with nobody asleep, pushes and pops make no system call and
//! no locked instruction: the side that goes to sleep pays for not missing
//! its wake-up, with one `membarrier(2)` call (where the kernel allows it;
//! elsewhere every push and pop pays a locked instruction instead).
//!
//! After [`Producer::close`], pushes fail with `Closed` and pops drain what
//! is left, then report `Closed`: the end-of-stream marker (Python's
//! `queue.put(None)` idiom) without a marker value.
//!
//! # One producer, one consumer
//!
//! Exactly one thread of one process may use each end at a time.
//! `Producer` and `Consumer` are [`Send`] but not [`Clone`], and their
//! operations take `&mut self`, so within a process the type system holds
//! that line. Across processes it is the user's job: after a `fork` both
//! processes hold both ends, and each end must be used by one of them only.
//! A handle keeps its end's position in process memory, as rtrb does: a
//! forked copy knows where the end was at the fork, and a handle made by
//! [`attach`](crate::SharedObject::attach) or [`open_at`](crate::SharedObject::open_at) starts
//! where the end was left. So an end is handed over by a copy or a
//! descriptor, and the handle it came from is not used again; to take the
//! end back, attach a fresh handle. Using one end from two places (or an
//! old copy after another moved the end on) can lose, duplicate or garble
//! items, never cause undefined behaviour: every slot index is computed
//! locally modulo the capacity, and shared indices that make no sense read
//! as "no items" or "no room".
//! Dropping an end does not close the channel (a forked child's copy may
//! still be in use); call [`close`](Producer::close).
//!
//! # A peer that dies
//!
//! Each end has a table of the processes holding a handle of it (63
//! slots: pid and start time), next to the ring: a process enters at its
//! first handle of the end (made, attached, decoded, or inherited through
//! `fork`) and leaves when its last one is dropped. Once no live process
//! holds the other end (all of them dropped it, exited or were killed,
//! `SIGKILL` included), this end sees the channel closed: a
//! [`pop`](Consumer::pop) drains what was pushed, then reports `Closed`;
//! a [`push`](Producer::push) that finds the ring full reports `Closed`
//! with its value. A blocked call looks between slices of its sleep (after
//! 20 ms, then at doubling intervals up to 1.28 s), the calls that do not
//! wait ([`try_pop`](Consumer::try_pop), [`try_push`](Producer::try_push),
//! the `_timeout` calls) at most every 10 ms per handle; the end must look
//! gone on two looks 50 ms apart, so a forked child that has not yet
//! entered is not taken for gone. Measured here
//! (`cargo test --test spsc_eof -- --nocapture`): about 140 ms after the
//! death for a blocked call, about 60 ms for a loop of non-blocking ones.
//! A handle in transit (encoded in a message, not yet decoded) holds
//! nothing: keep the handle that sends it until the receiver has it, or
//! the other end may see the end gone. A child made by `fork` and then
//! `exec` (such as `std::process::Command` may make) stays recorded as a
//! holder of every end its parent held at the fork, for its whole life.
//! As with Python's pipes, a process that keeps a copy of the other end
//! (a parent that forked the child it handed the end to, and kept its own
//! handle) keeps that end alive: drop the end a process does not use. A
//! table that overflows (a 64th holder) never reads as gone: no false end.
//! [`pop_into`](Consumer::pop_into) and [`push_slice`](Producer::push_slice)
//! never look. Dead means what `/proc` says (one PID namespace).
//!
//! # Examples
//!
//! ```
//! use multiproc::spsc;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut tx, mut rx) = spsc::channel::<u64>(1024)?;
//! let producer = std::thread::spawn(move || {
//!     for i in 0..10_000 {
//!         tx.push(i).unwrap();
//!     }
//!     tx.close();
//! });
//! let mut sum = 0;
//! while let Ok(v) = rx.pop() {
//!     sum += v;
//! }
//! producer.join().unwrap();
//! assert_eq!(sum, 10_000 * 9_999 / 2);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::ptr;

use bytemuck::Pod;

pub use consumer::Consumer;
pub use producer::Producer;
pub use crate::queue::error::{Closed, GetTimeoutError, PutTimeoutError, TryGetError, TryPutError};


use crate::algo::holders::{HOLDER_TABLE_BYTES, HolderTable, SETTLE_MS};
use crate::error::{Error, Result};
use crate::sys::clock::coarse_ms;
use crate::sys::membarrier;
use crate::sys::thread::ProcLiveness;
use crate::algo::spsc::{
    Fencing, RingMemory, STATE_BYTES, SpscState,
};
use crate::shm::header::{ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::object::Placed;
use crate::shm::object::Place;
use crate::sys::futex::Futex;

/// How often (in ms, at most) one handle's calls that do not wait look
/// whether the other end is gone; a blocked call looks once per slice.
const LOOK_EVERY_MS: u64 = 10;

/// The largest capacity [`channel`] accepts.
pub const MAX_CAPACITY: usize = crate::shm::header::MAX_RING_SLOTS;

/// Which end a handle is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    Producer,
    Consumer,
}

/// A ring placed in shared memory: the two ends' holder tables, then the
/// ring state, right before the slots.
pub(super) struct Mapped<T> {
    /// Slot 0: `obj.data()`, computed once (the hot path then does not walk
    /// from the handle to the segment's mapping on every access).
    slots: *mut T,
    /// The ring state, the [`STATE_BYTES`] before slot 0.
    state: *const SpscState,
    /// This end's holder table.
    own: *const HolderTable,
    /// The other end's holder table.
    peer: *const HolderTable,
    /// Keeps the mapping (and so both pointers) alive.
    pub(super) obj: Placed,
    _t: PhantomData<T>,
}

// SAFETY: the pointers are a cached `obj.data()`, valid wherever `obj` is
// (which is Send and Sync); the state is only atomics, and slots are copied
// in and out, so the handle is as sendable and shareable as `T` itself, as
// it was with `PhantomData<T>` alone.
unsafe impl<T: Send> Send for Mapped<T> {}
// SAFETY: as for Send.
unsafe impl<T: Sync> Sync for Mapped<T> {}

impl<T> fmt::Debug for Mapped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.obj.fmt(f)
    }
}

impl<T> Mapped<T> {
    /// The `Debug` form of an end called `name` over this ring.
    pub(super) fn fmt_end(&self, f: &mut fmt::Formatter<'_>, name: &str, light: bool) -> fmt::Result
    where
        T: Pod,
    {
        let len = self.state().len(self.capacity());
        f.debug_struct(name)
            .field("len", &len)
            .field("capacity", &self.capacity())
            .field("closed", &self.state().is_closed())
            .field("fencing", &self.state().fencing())
            .field("light", &light)
            .field("place", &self.obj)
            .finish()
    }

    pub(super) fn new(obj: Placed, end: End) -> Self {
        let data = obj.data();
        let table = |e: End| {
            let back = STATE_BYTES + HOLDER_TABLE_BYTES * if e == End::Producer { 2 } else { 1 };
            // SAFETY: kind Spsc puts element 0 at 23 * 64 bytes past the
            // header (or later, aligned), so the STATE_BYTES and the two
            // holder tables before it lie inside the object, after the
            // header, 64-aligned.
            unsafe { data.sub(back) }.cast::<HolderTable>().cast_const()
        };
        let other = if end == End::Producer {
            End::Consumer
        } else {
            End::Producer
        };
        Mapped {
            slots: data.cast::<T>(),
            // SAFETY: as for the tables: the STATE_BYTES before element 0
            // lie inside the object.
            state: unsafe { data.sub(STATE_BYTES) }.cast::<SpscState>(),
            own: table(end),
            peer: table(other),
            obj,
            _t: PhantomData,
        }
    }

    /// This end's holder table.
    pub(super) fn own_table(&self) -> &HolderTable {
        // SAFETY: inside the object (see `new`); a HolderTable is only
        // atomics, valid for any bytes; the mapping outlives `&self`.
        unsafe { &*self.own }
    }

    fn peer_table(&self) -> &HolderTable {
        // SAFETY: as in `own_table`.
        unsafe { &*self.peer }
    }

    /// Whether the other end is held by nobody alive, for good (see
    /// [`HolderTable::gone_for`]), looked up at most once per
    /// [`LOOK_EVERY_MS`] through `looked` (a look reads `/proc` for each
    /// holder: a loop of `try_pop`s must not pay that each time).
    pub(super) fn peer_gone_looked(&self, looked: &mut u64) -> bool {
        let now = coarse_ms();
        if now.wrapping_sub(*looked) < LOOK_EVERY_MS {
            return false;
        }
        *looked = now;
        self.peer_table()
            .gone_for(&ProcLiveness, now, SETTLE_MS)
    }

    #[inline]
    fn slots(&self) -> *mut T {
        self.slots
    }
}

// SAFETY: the state and the slot pointer come from the locally validated
// layout of one object (never from shared memory) and stay put while `obj`
// keeps the mapping alive; the capacity is the layout's length. Slots are
// accessed with volatile or `copy_nonoverlapping` copies of `Pod` values,
// which are sound however a peer scribbles over the bytes. This process
// says it receives heavy barriers only once the kernel has registered it for
// `MEMBARRIER_CMD_GLOBAL_EXPEDITED`, which is what `heavy_barrier` issues
// (see `sys/membarrier.rs`).
unsafe impl<T: Pod> RingMemory for Mapped<T> {
    type Item = T;
    type Waiter = Futex;

    #[inline]
    fn state(&self) -> &SpscState {
        // SAFETY: `state` points at the STATE_BYTES inside the object (see
        // `Mapped::new`); SpscState is only atomics, valid for any bytes
        // (zeroed at creation); the mapping outlives `&self`.
        unsafe { &*self.state }
    }

    #[inline]
    fn capacity(&self) -> usize {
        self.obj.len()
    }

    #[inline]
    fn waiter(&self) -> &Futex {
        &Futex
    }

    fn receives_heavy_barrier(&self) -> bool {
        membarrier::register()
    }

    fn watches_peer(&self) -> bool {
        true
    }

    fn peer_gone(&self) -> bool {
        self.peer_table()
            .gone_for(&ProcLiveness, coarse_ms(), SETTLE_MS)
    }

    #[cold]
    fn heavy_barrier(&self) -> bool {
        membarrier::heavy_barrier()
    }

    #[inline]
    unsafe fn write(&self, index: usize, value: T) {
        // SAFETY: index < capacity (caller), so the slot is inside the
        // object; aligned for T by the layout.
        unsafe { ptr::write_volatile(self.slots().add(index), value) }
    }

    #[inline]
    unsafe fn read(&self, index: usize) -> T {
        // SAFETY: as in `write`; any bytes are a valid T: Pod.
        unsafe { ptr::read_volatile(self.slots().add(index)) }
    }

    #[inline]
    unsafe fn write_run(&self, index: usize, src: &[T]) {
        // SAFETY: index + len <= capacity (caller); `src` is a local slice,
        // which cannot overlap the shared slots a live object owns.
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), self.slots().add(index), src.len()) }
    }

    #[inline]
    unsafe fn read_run(&self, index: usize, dst: &mut [T]) {
        // SAFETY: as in `write_run`; any bytes are a valid T: Pod.
        unsafe { ptr::copy_nonoverlapping(self.slots().add(index), dst.as_mut_ptr(), dst.len()) }
    }
}

fn layout<T>(capacity: usize) -> Result<ObjectLayout> {
    if capacity > MAX_CAPACITY {
        return Err(Error::InvalidSize {
            requested: capacity as u64,
            reason: "channel capacity above spsc::MAX_CAPACITY",
        });
    }
    ObjectLayout::new::<T>(ObjectKind::Spsc, capacity)
}

fn make<T: Pod>(place: Place<'_>, capacity: usize) -> Result<(Producer<T>, Consumer<T>)> {
    // Asymmetric fences if this process can take part in them; an attacher
    // that cannot publishes symmetrically, and one whose heavy barriers fail
    // sleeps in short slices (see `algo/spsc`).
    let fencing = if membarrier::register() {
        Fencing::Asymmetric
    } else {
        Fencing::Symmetric
    };
    let obj = place.make(layout::<T>(capacity)?, |data| {
        // The payload is zeroed: an empty, open ring, fenced symmetrically
        // until we say otherwise.
        // SAFETY: as in `Mapped::state`: the STATE_BYTES before the slots
        // lie inside the object, 64-aligned, and hold only atomics; nobody
        // else sees the object before it is published.
        let st = unsafe { &*data.sub(STATE_BYTES).cast::<SpscState>() };
        st.init_fencing(fencing);
    })?;
    Ok((Producer::over(obj.clone()), Consumer::over(obj)))
}

/// Places a channel of `capacity` slots in shared memory and returns its
/// two ends.
///
/// # Errors
///
/// [`Error::InvalidSize`] for a capacity of 0, above [`MAX_CAPACITY`], or
/// too large for the address space; [`Error::Io`] if a segment cannot be
/// made.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (mut tx, mut rx) = multiproc::spsc::channel::<[f32; 4]>(16)?;
/// tx.push([1.0, 2.0, 3.0, 4.0])?;
/// assert_eq!(rx.pop()?, [1.0, 2.0, 3.0, 4.0]);
/// assert!(multiproc::spsc::channel::<u8>(0).is_err());
/// # Ok(())
/// # }
/// ```
pub fn channel<T: Pod>(capacity: usize) -> Result<(Producer<T>, Consumer<T>)> {
    make(Place::Arena, capacity)
}

/// Places a channel of `capacity` slots at `offset` of a named segment, for
/// unrelated processes to [`Producer::open_at`](crate::SharedObject::open_at) / [`Consumer::open_at`](crate::SharedObject::open_at).
/// `offset` must be a multiple of [`shared_align`] with [`shared_size`]
/// bytes free after it.
///
/// # Errors
///
/// As [`channel`], plus [`Error::OutOfBounds`] for a misaligned or too-late
/// offset and [`Error::AlreadyExists`] if an object was already placed
/// there.
///
/// # Examples
///
/// ```
/// use multiproc::SharedObject;
/// use multiproc::{SharedMemory, spsc};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let name = format!("multiproc-doc-spsc-{}", std::process::id());
/// let shm = SharedMemory::create(&name, spsc::shared_size::<u32>(8))?;
/// let (mut tx, _rx) = spsc::channel_at::<u32>(&shm, 0, 8)?;
/// tx.push(5)?;
/// // ... in another process:
/// let mut rx = spsc::Consumer::<u32>::open_at(&shm, 0)?;
/// assert_eq!(rx.pop()?, 5);
/// # shm.unlink()?;
/// # Ok(())
/// # }
/// ```
pub fn channel_at<T: Pod>(
    shm: &SharedMemory,
    offset: usize,
    capacity: usize,
) -> Result<(Producer<T>, Consumer<T>)> {
    make(Place::At(shm, offset), capacity)
}

/// Bytes a channel of `capacity` slots of `T` takes in a segment
/// (`usize::MAX` if that capacity is refused).
///
/// # Examples
///
/// ```
/// assert_eq!(multiproc::spsc::shared_size::<u64>(4), 64 + 2 * 576 + 256 + 4 * 8);
/// ```
pub fn shared_size<T>(capacity: usize) -> usize {
    layout::<T>(capacity).map_or(usize::MAX, |l| l.total_size)
}

/// Alignment a channel of `T` needs in a segment (64, or `T`'s if larger).
///
/// # Examples
///
/// ```
/// assert_eq!(multiproc::spsc::shared_align::<u64>(), 64);
/// ```
pub fn shared_align<T>() -> usize {
    layout::<T>(1).map_or(usize::MAX, |l| l.align)
}

/// The snapshot queries both ends have: `is_closed`, `len`, `is_empty`,
/// `is_full`, `capacity` (for a handle with a `raw` field over `Mapped`).
macro_rules! ring_queries {
    () => {
        /// Whether the channel was closed (values may still be left to pop).
        ///
        /// # Examples
        ///
        /// ```
        /// # fn main() -> multiproc::Result<()> {
        /// let (tx, rx) = multiproc::spsc::channel::<u8>(4)?;
        /// tx.close();
        /// assert!(tx.is_closed() && rx.is_closed());
        /// # Ok(())
        /// # }
        /// ```
        #[inline]
        pub fn is_closed(&self) -> bool {
            self.raw.memory().state().is_closed()
        }

        /// Values in the channel now (a snapshot the other end may change
        /// at once).
        ///
        /// # Examples
        ///
        /// ```
        /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// let (mut tx, rx) = multiproc::spsc::channel::<u8>(4)?;
        /// tx.push(1)?;
        /// assert_eq!((tx.len(), rx.len()), (1, 1));
        /// # Ok(())
        /// # }
        /// ```
        #[inline]
        pub fn len(&self) -> usize {
            self.raw.memory().state().len(self.capacity())
        }

        /// Whether the channel is empty now (a snapshot).
        ///
        /// # Examples
        ///
        /// ```
        /// # fn main() -> multiproc::Result<()> {
        /// let (tx, rx) = multiproc::spsc::channel::<u8>(4)?;
        /// assert!(tx.is_empty() && rx.is_empty());
        /// # Ok(())
        /// # }
        /// ```
        #[inline]
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// Whether the channel is full now (a snapshot).
        ///
        /// # Examples
        ///
        /// ```
        /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// let (mut tx, rx) = multiproc::spsc::channel::<u8>(1)?;
        /// tx.push(1)?;
        /// assert!(tx.is_full() && rx.is_full());
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
        /// let (tx, rx) = multiproc::spsc::channel::<u8>(100)?;
        /// assert_eq!((tx.capacity(), rx.capacity()), (100, 100));
        /// # Ok(())
        /// # }
        /// ```
        #[inline]
        pub fn capacity(&self) -> usize {
            self.raw.memory().capacity()
        }
    };
}

// After the macro, which they use.
mod consumer;
mod producer;
