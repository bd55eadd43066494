//! `Event` (Python's `multiprocessing.Event`), placed in shared memory.
//!
//! One word after the object header: the flag, a sleepers bit and a count of
//! sets (see [`RawEvent`] for the algorithm).

use std::fmt;
use std::time::Duration;

use bytemuck::{Pod, Zeroable};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Result, TimedOut};
use crate::loom::atomic::AtomicU32;
use crate::shm::header::{Expect, ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Placed, Token};
use crate::algo::wait::deadline;
use crate::shm::object::Place;
use crate::algo::event::RawEvent;
use crate::sys::futex::Futex;

/// An `Event` in shared memory: only ever accessed through an atomic.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct EventState {
    /// Flag, sleepers bit and set count (`RawEvent`'s word).
    word: u32,
}

/// A flag that processes can wait for: Python's `multiprocessing.Event`.
///
/// [`set`](Self::set) turns it on and wakes every waiter;
/// [`clear`](Self::clear) turns it off; [`wait`](Self::wait) returns at once
/// while it is on, and otherwise sleeps until someone sets it. A waiter that
/// was sleeping when the flag was set returns even if it is cleared again
/// right away, as with Python's `threading.Event`.
///
/// Waiting spins briefly, then sleeps on a shared futex; `set` makes no
/// system call when nobody waits. Every handle (clones, a forked child's
/// copy, an attach from a [`Descriptor`](crate::Descriptor)) reaches the same
/// flag.
///
/// # Examples
///
/// ```
/// use multiproc::Event;
/// use std::time::Duration;
/// # fn main() -> multiproc::Result<()> {
/// let ev = Event::new()?;
/// assert!(ev.wait_timeout(Duration::from_millis(1)).is_err());
/// ev.set();
/// ev.wait(); // returns at once
/// assert!(ev.is_set());
/// ev.clear();
/// assert!(!ev.is_set());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Event {
    obj: Placed,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("is_set", &self.is_set())
            .field("place", &self.obj)
            .finish()
    }
}

impl Event {
    /// Places a new event, not set, in shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if a new segment cannot be made.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let ev = multiproc::Event::new()?;
    /// assert!(!ev.is_set());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new() -> Result<Self> {
        Self::make(Place::Arena)
    }

    /// Places a new event, not set, at `offset` of a named segment, for
    /// unrelated processes to [`open_at`](crate::SharedObject::open_at). `offset` must be a
    /// multiple of [`shared_align`](Self::shared_align) with
    /// [`shared_size`](Self::shared_size) bytes free after it.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`](crate::Error::OutOfBounds) for a misaligned or
    /// too-late offset, [`Error::AlreadyExists`](crate::Error::AlreadyExists)
    /// if an object was already placed there.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::SharedObject;
    /// use multiproc::{Event, SharedMemory};
    /// # fn main() -> multiproc::Result<()> {
    /// # let name = format!("multiproc-doc-event-{}", std::process::id());
    /// let shm = SharedMemory::create(&name, 4096)?;
    /// let ev = Event::create_at(&shm, 0)?;
    /// Event::open_at(&shm, 0)?.set();
    /// assert!(ev.is_set());
    /// # shm.unlink()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn create_at(shm: &SharedMemory, offset: usize) -> Result<Self> {
        Self::make(Place::At(shm, offset))
    }

    fn make(place: Place<'_>) -> Result<Self> {
        let layout = ObjectLayout::new::<EventState>(ObjectKind::Event, 1)?;
        // The payload is zeroed when placed: flag off, nobody asleep.
        let obj = place.make(layout, |_| {})?;
        Ok(Event { obj })
    }

    fn over(obj: Placed) -> Self {
        Event { obj }
    }

    /// Bytes an `Event` takes in a segment.
    pub fn shared_size() -> usize {
        ObjectLayout::new::<EventState>(ObjectKind::Event, 1).map_or(usize::MAX, |l| l.total_size)
    }

    /// Alignment an `Event` needs in a segment (64).
    pub fn shared_align() -> usize {
        ObjectLayout::new::<EventState>(ObjectKind::Event, 1).map_or(usize::MAX, |l| l.align)
    }

    #[inline]
    fn word(&self) -> &AtomicU32 {
        // SAFETY: the data pointer is aligned for EventState (align 4) and
        // valid for its one u32 while the mapping lives, which `self.obj`
        // guarantees for `&self`; after publish every process accesses the
        // word only atomically.
        unsafe { AtomicU32::from_ptr(self.obj.data().cast::<u32>()) }
    }

    /// Whether the flag is on (a snapshot).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let ev = multiproc::Event::new()?;
    /// ev.set();
    /// assert!(ev.is_set());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn is_set(&self) -> bool {
        RawEvent::is_set(self.word())
    }

    /// Turns the flag on and wakes every waiter. Setting a set event does
    /// nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let ev = multiproc::Event::new()?;
    /// ev.set();
    /// ev.set();
    /// assert!(ev.is_set());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn set(&self) {
        RawEvent::set(self.word(), &Futex);
    }

    /// Turns the flag off; later waiters sleep until the next
    /// [`set`](Self::set).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let ev = multiproc::Event::new()?;
    /// ev.set();
    /// ev.clear();
    /// assert!(!ev.is_set());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn clear(&self) {
        RawEvent::clear(self.word());
    }

    /// Returns once the flag is on, sleeping until someone sets it (Python's
    /// `wait()`). See [`wait_timeout`](Self::wait_timeout) to give up after a
    /// while.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let ev = multiproc::Event::new()?;
    /// ev.set();
    /// ev.wait();
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn wait(&self) {
        RawEvent::wait(self.word(), &Futex, None);
    }

    /// Waits for the flag for at most `timeout` (Python's
    /// `wait(timeout)`, whose `True` is `Ok` here).
    ///
    /// # Errors
    ///
    /// [`TimedOut`](crate::TimedOut) if the flag was not set in time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> multiproc::Result<()> {
    /// let ev = multiproc::Event::new()?;
    /// assert!(ev.wait_timeout(Duration::from_millis(5)).is_err());
    /// ev.set();
    /// ev.wait_timeout(Duration::from_millis(5))?;
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn wait_timeout(&self, timeout: Duration) -> std::result::Result<(), TimedOut> {
        if RawEvent::wait(self.word(), &Futex, deadline(timeout)) {
            Ok(())
        } else {
            Err(TimedOut)
        }
    }
}

// SAFETY: an `EventState` (one `u32`, used only atomically) at the data offset of
// an `Event` header of its fingerprint, which is all the handle touches.
unsafe impl Object for Event {
    const KIND: ObjectKind = ObjectKind::Event;

    fn expect() -> Expect {
        Expect::of::<EventState>()
    }

    fn from_placed(obj: Placed, _: u32, _: Token) -> Result<Self> {
        Ok(Self::over(obj))
    }

    fn placed(&self) -> &Placed {
        &self.obj
    }
}

/// Encodes the handle as its [`Descriptor`](crate::Descriptor).
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
