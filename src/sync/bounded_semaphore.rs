//! `BoundedSemaphore` (Python's `multiprocessing.BoundedSemaphore`): a
//! [`Semaphore`] whose handle keeps a bound, and derefs to it.

use std::fmt;
use std::ops::Deref;

use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::loom::atomic::Ordering;
use crate::shm::header::{Expect, ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Place, Placed, Token};
use crate::algo::holders::HOLDER_TABLE_BYTES;
use crate::sync::semaphore::{HOLDERS_AT, MAX, Semaphore};

/// A `BoundedSemaphore` in shared memory: `SemState`'s fields at the same
/// offsets, with the bound, written once before publish, in `max`.
#[repr(C, align(64))]
#[derive(Clone, Copy, Pod, Zeroable)]
struct BoundedSemState {
    word: u64,
    waiters: u32,
    /// The initial value, which the count may never exceed.
    max: u32,
    recovered: u32,
    _pad: [u32; 11],
    holders: [[u64; 8]; HOLDER_TABLE_BYTES / 64],
}
const _: () = assert!(std::mem::offset_of!(BoundedSemState, holders) == HOLDERS_AT);

/// A semaphore whose value may never exceed its initial value: Python's
/// `multiprocessing.BoundedSemaphore`. A release beyond the initial value,
/// which catches a release without a matching acquire, is an
/// [`OverRelease`](crate::OverRelease) error.
///
/// Everything but its constructors and [`max_value`](Self::max_value) is
/// [`Semaphore`]'s, through `Deref` (as Python's class derives from
/// `Semaphore`); the handle's releases check its bound. A `Semaphore`
/// taken out through the `Deref` (`(*bounded).clone()`) keeps the bound,
/// and describes the bounded object: attach its descriptor as a
/// `BoundedSemaphore` (as a `Semaphore` it is a `LayoutMismatch`).
///
/// # Examples
///
/// ```
/// use multiproc::BoundedSemaphore;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sem = BoundedSemaphore::new(1)?;
/// sem.acquire();
/// sem.release()?;
/// assert!(sem.release().is_err()); // one release too many
/// assert_eq!(sem.value(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    /// A semaphore handle whose `max` is the bound.
    sem: Semaphore,
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.value())
            .field("max", &self.sem.max)
            .field("place", &self.sem.obj)
            .finish()
    }
}

impl Deref for BoundedSemaphore {
    type Target = Semaphore;

    fn deref(&self) -> &Semaphore {
        &self.sem
    }
}

impl BoundedSemaphore {
    /// Places a bounded semaphore with `value` permits, which is also its
    /// bound, in shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if a new segment cannot be made.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::BoundedSemaphore::new(3)?;
    /// assert_eq!(sem.max_value(), 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(value: u32) -> Result<Self> {
        Self::make(Place::Arena, value)
    }

    /// Places a bounded semaphore at `offset` of a named segment; see
    /// [`Semaphore::create_at`].
    ///
    /// # Errors
    ///
    /// As [`Semaphore::create_at`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::SharedObject;
    /// use multiproc::{BoundedSemaphore, SharedMemory};
    /// # fn main() -> multiproc::Result<()> {
    /// # let name = format!("multiproc-doc-bsem-{}", std::process::id());
    /// let shm = SharedMemory::create(&name, 4096)?;
    /// let sem = BoundedSemaphore::create_at(&shm, 0, 2)?;
    /// assert_eq!(BoundedSemaphore::open_at(&shm, 0)?.max_value(), 2);
    /// # drop(sem);
    /// # shm.unlink()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn create_at(shm: &SharedMemory, offset: usize, value: u32) -> Result<Self> {
        Self::make(Place::At(shm, offset), value)
    }

    fn make(place: Place<'_>, value: u32) -> Result<Self> {
        let layout = ObjectLayout::new::<BoundedSemState>(ObjectKind::Semaphore, 1)?;
        let obj = place.make(layout, |p| {
            let state = BoundedSemState {
                word: u64::from(value),
                max: value,
                ..Zeroable::zeroed()
            };
            // SAFETY: the data pointer is aligned and valid for one
            // BoundedSemState; nobody else can see it before `publish`.
            unsafe { p.cast::<BoundedSemState>().write(state) }
        })?;
        Ok(Self::over(obj))
    }

    /// The handle over a validated bounded semaphore: its bound is read
    /// once, here.
    fn over(obj: Placed) -> Self {
        let max = obj.state_u32(MAX).load(Ordering::Relaxed);
        BoundedSemaphore {
            sem: Semaphore { obj, max },
        }
    }

    /// Bytes a `BoundedSemaphore` takes in a segment.
    pub fn shared_size() -> usize {
        ObjectLayout::new::<BoundedSemState>(ObjectKind::Semaphore, 1)
            .map_or(usize::MAX, |l| l.total_size)
    }

    /// Alignment a `BoundedSemaphore` needs in a segment (64).
    pub fn shared_align() -> usize {
        ObjectLayout::new::<BoundedSemState>(ObjectKind::Semaphore, 1)
            .map_or(usize::MAX, |l| l.align)
    }

    /// The bound: the initial value, which releases may not exceed.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let sem = multiproc::BoundedSemaphore::new(2)?;
    /// sem.acquire();
    /// assert_eq!((sem.value(), sem.max_value()), (1, 2));
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_value(&self) -> u32 {
        self.sem.max
    }
}

// SAFETY: a `BoundedSemState` (words and a holder table, used only atomically) at the
// data offset of a `Semaphore` header of its fingerprint: all the handle
// touches.
unsafe impl Object for BoundedSemaphore {
    const KIND: ObjectKind = ObjectKind::Semaphore;

    fn expect() -> Expect {
        Expect::of::<BoundedSemState>()
    }

    fn from_placed(obj: Placed, _: u32, _: Token) -> Result<Self> {
        Ok(Self::over(obj))
    }

    fn placed(&self) -> &Placed {
        &self.sem.obj
    }
}

/// Encodes the handle as its [`Descriptor`](crate::Descriptor).
impl Serialize for BoundedSemaphore {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de> Deserialize<'de> for BoundedSemaphore {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
