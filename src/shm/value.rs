//! `RawValue<T>`: one `T` in shared memory, no lock.

use std::fmt;
use std::marker::PhantomData;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::shm::header::{Expect, ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Place, Placed, Token};

/// One `T` in shared memory without a lock: Python's
/// `multiprocessing.RawValue`.
///
/// [`get`](Self::get) and [`set`](Self::set) are single volatile reads and
/// writes. Concurrent writers are not excluded: a read racing a write of a
/// `T` wider than a machine word can see a mix of old and new bytes (still a
/// valid `T`, since `T: Pod`). Synchronise yourself, or use [`Value`](crate::Value) or
/// [`AtomicValue`](crate::AtomicValue).
///
/// # Examples
///
/// ```
/// use multiproc::RawValue;
/// # fn main() -> multiproc::Result<()> {
/// let v = RawValue::new([1u16, 2, 3])?;
/// v.set([4, 5, 6]);
/// assert_eq!(v.get(), [4, 5, 6]);
/// # Ok(())
/// # }
/// ```
pub struct RawValue<T> {
    obj: Placed,
    _t: PhantomData<T>,
}

// SAFETY: access is by volatile copies only; sharing handles shares no Rust
// references to the value.
unsafe impl<T: Pod + Send> Send for RawValue<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send> Sync for RawValue<T> {}

impl<T> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue {
            obj: self.obj.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawValue")
            .field("type", &std::any::type_name::<T>())
            .field("place", &self.obj)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> RawValue<T> {
    /// Places `value` in shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if a new segment cannot be made.
    pub fn new(value: T) -> Result<Self> {
        Self::make(Place::Arena, value)
    }

    /// Places `value` at `offset` of a named segment; see
    /// [`Value::create_at`](crate::Value::create_at).
    ///
    /// # Errors
    ///
    /// As [`Value::create_at`](crate::Value::create_at).
    pub fn create_at(shm: &SharedMemory, offset: usize, value: T) -> Result<Self> {
        Self::make(Place::At(shm, offset), value)
    }

    fn make(place: Place<'_>, value: T) -> Result<Self> {
        let layout = ObjectLayout::new::<T>(ObjectKind::RawValue, 1)?;
        let obj = place.make(layout, |p| {
            // SAFETY: aligned, valid for one T, not yet shared.
            unsafe { p.cast::<T>().write(value) }
        })?;
        Self::from_placed(obj, 0, Token::new())
    }

    /// Bytes a `RawValue<T>` takes in a segment.
    pub fn shared_size() -> usize {
        ObjectLayout::new::<T>(ObjectKind::RawValue, 1).map_or(usize::MAX, |l| l.total_size)
    }

    /// Alignment a `RawValue<T>` needs in a segment (at least 64).
    pub fn shared_align() -> usize {
        ObjectLayout::new::<T>(ObjectKind::RawValue, 1).map_or(usize::MAX, |l| l.align)
    }

    /// Reads the value (one volatile read).
    #[inline]
    pub fn get(&self) -> T {
        // SAFETY: aligned and valid for one T for as long as `self` lives;
        // any bytes are a valid T (Pod).
        unsafe { self.as_ptr().read_volatile() }
    }

    /// Writes the value (one volatile write).
    #[inline]
    pub fn set(&self, value: T) {
        // SAFETY: as for `get`.
        unsafe { self.as_ptr().write_volatile(value) }
    }

    /// Pointer to the value in this process's mapping.
    pub fn as_ptr(&self) -> *mut T {
        self.obj.data().cast()
    }
}

// SAFETY: one `T` at the data offset of a `RawValue` header of `T`'s
// fingerprint, which is all the handle reads and writes.
unsafe impl<T: Pod> Object for RawValue<T> {
    const KIND: ObjectKind = ObjectKind::RawValue;

    fn expect() -> Expect {
        Expect::of::<T>()
    }

    fn from_placed(obj: Placed, _: u32, _: Token) -> Result<Self> {
        Ok(RawValue {
            obj,
            _t: PhantomData,
        })
    }

    fn placed(&self) -> &Placed {
        &self.obj
    }
}

/// Encodes the handle as its [`Descriptor`](crate::Descriptor).
impl<T: Pod> Serialize for RawValue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de, T: Pod> Deserialize<'de> for RawValue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
