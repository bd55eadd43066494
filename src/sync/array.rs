//! `Array<T>`: elements in shared memory behind one process-shared lock
//! (Python's `multiprocessing.Array`): a [`RawArray`]'s elements with a
//! robust lock word in front.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::loom::atomic::AtomicU64;
use crate::shm::array::{RawArray, placement_docs};
use crate::shm::header::{Expect, ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Place, Placed, Token};
use crate::sync::lock_word::Held;
use crate::sync::poison::{
    LockResult, LockTimeoutResult, OwnerDied, TryLockResult, map_lock, map_lock_timeout,
    map_try_lock,
};

/// Elements in shared memory guarded by one process-shared lock: Python's
/// `multiprocessing.Array`.
///
/// Element reads and writes ([`get`](Self::get), [`set`](Self::set)) and the
/// bulk copies ([`to_vec`](Self::to_vec),
/// [`copy_from_slice`](Self::copy_from_slice), ...) each take the lock once;
/// the bulk copies run at `memcpy` speed. [`lock`](Self::lock) returns a guard
/// that derefs to `[T]` for longer work.
///
/// For workers that fill disjoint parts of one big array, the lock only gets
/// in the way: use [`RawArray`](crate::RawArray) and its [`write_at`](RawArray::write_at).
///
/// # Examples
///
/// ```
/// use multiproc::Array;
/// # fn main() -> multiproc::Result<()> {
/// let a = Array::from_slice(&[0i32, 1, 2, 3])?;
/// a.set(0, 10)?;
/// for x in a.lock().unwrap().iter_mut() {
///     *x = -*x;
/// }
/// assert_eq!(a.to_vec(), [-10, -1, -2, -3]);
/// assert_eq!(a.get(7), None);
/// # Ok(())
/// # }
/// ```
pub struct Array<T> {
    /// The elements (an object of kind `Array`, whose lock word comes
    /// first).
    raw: RawArray<T>,
}

// SAFETY: as for `Value`: access goes through the shared lock or copies.
unsafe impl<T: Pod + Send> Send for Array<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send> Sync for Array<T> {}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            raw: self.raw.clone(),
        }
    }
}

impl<T> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("type", &std::any::type_name::<T>())
            .field("place", &self.raw.obj)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> Array<T> {
    /// A zero-filled array of `len` elements.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`](crate::Error::InvalidSize) for a length of zero, one whose byte size
    /// overflows, or one larger than this machine's memory.
    pub fn new(len: usize) -> Result<Self> {
        RawArray::make(ObjectKind::Array, Place::Arena, len, None).map(|raw| Array { raw })
    }

    /// An array holding a copy of `src`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new) (an empty `src` is refused).
    pub fn from_slice(src: &[T]) -> Result<Self> {
        RawArray::make(ObjectKind::Array, Place::Arena, src.len(), Some(src))
            .map(|raw| Array { raw })
    }

    /// A zero-filled array of `len` elements at `offset` of a named segment.
    #[doc = placement_docs!()]
    ///
    /// # Errors
    ///
    /// As [`Value::create_at`](crate::Value::create_at) and [`new`](Self::new).
    pub fn create_at(shm: &SharedMemory, offset: usize, len: usize) -> Result<Self> {
        RawArray::make(ObjectKind::Array, Place::At(shm, offset), len, None)
            .map(|raw| Array { raw })
    }

    /// Bytes an `Array<T>` of `len` elements takes in a segment.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`](crate::Error::InvalidSize) as for [`new`](Self::new).
    pub fn shared_size(len: usize) -> Result<usize> {
        ObjectLayout::new::<T>(ObjectKind::Array, len).map(|l| l.total_size)
    }

    /// Alignment an `Array<T>` needs in a segment (at least 64).
    pub fn shared_align() -> usize {
        ObjectLayout::new::<T>(ObjectKind::Array, 1).map_or(usize::MAX, |l| l.align)
    }

    /// Number of elements.
    #[inline]
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Always `false`: arrays have at least one element.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` read under the lock, or `None` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<T> {
        let _g = self.held();
        self.raw.get(i)
    }

    /// Writes element `i` under the lock.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`](crate::Error::IndexOutOfRange) past the end.
    #[inline]
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        let _g = self.held();
        self.raw.set(i, value)
    }

    /// A copy of all elements, taken under the lock.
    pub fn to_vec(&self) -> Vec<T> {
        let _g = self.held();
        self.raw.to_vec()
    }

    /// Overwrites all elements with `src` under the lock (one `memcpy`).
    ///
    /// # Errors
    ///
    /// [`Error::SliceLength`](crate::Error::SliceLength) if `src.len() != self.len()`.
    pub fn copy_from_slice(&self, src: &[T]) -> Result<()> {
                let _g = self.held();
        self.raw.copy_from_slice(src)
    }

    /// Copies all elements into `dst` under the lock (one `memcpy`).
    ///
    /// # Errors
    ///
    /// [`Error::SliceLength`](crate::Error::SliceLength) if `dst.len() != self.len()`.
    pub fn copy_to_slice(&self, dst: &mut [T]) -> Result<()> {
                let _g = self.held();
        self.raw.copy_to_slice(dst)
    }

    /// Copies `dst.len()` elements starting at `start` into `dst`, under the
    /// lock.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`](crate::Error::IndexOutOfRange) if the range does not fit.
    pub fn read_at(&self, start: usize, dst: &mut [T]) -> Result<()> {
        let _g = self.held();
        self.raw.read_at(start, dst)
    }

    /// Copies `src` into the elements starting at `start`, under the lock.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`](crate::Error::IndexOutOfRange) if the range does not fit.
    pub fn write_at(&self, start: usize, src: &[T]) -> Result<()> {
        let _g = self.held();
        self.raw.write_at(start, src)
    }

    /// Sets every element to `value`, under the lock.
    pub fn fill(&self, value: T) {
        let _g = self.held();
        self.raw.fill(value);
    }

    /// Takes the lock, sleeping while another thread or process holds it,
    /// and returns a guard that derefs to the elements.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`], holding the guard, if a holder died holding the lock
    /// and nobody has called [`ArrayGuard::mark_consistent`] since; see
    /// [`Mutex`](crate::Mutex).
    #[inline]
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        map_lock(Held::lock(self.word()), |held| self.guard(held))
    }

    /// Takes the lock if it is free, without blocking.
    ///
    /// # Errors
    ///
    /// As [`Mutex::try_lock`](crate::Mutex::try_lock).
    #[inline]
    pub fn try_lock(&self) -> TryLockResult<ArrayGuard<'_, T>> {
        map_try_lock(Held::try_lock(self.word()), |held| self.guard(held))
    }

    /// Takes the lock, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock_timeout`](crate::Mutex::lock_timeout).
    pub fn lock_timeout(&self, timeout: Duration) -> LockTimeoutResult<ArrayGuard<'_, T>> {
        map_lock_timeout(Held::lock_timeout(self.word(), timeout), |held| {
            self.guard(held)
        })
    }

    /// The lock held for one of the copying methods: an earlier holder's
    /// death is left for [`lock`](Self::lock) to report.
    #[inline]
    fn held(&self) -> ArrayGuard<'_, T> {
        self.lock().unwrap_or_else(OwnerDied::into_inner)
    }

    fn guard<'a>(&'a self, held: Held<'a>) -> ArrayGuard<'a, T> {
        ArrayGuard { held, array: self }
    }

    /// The lock word, right after the header.
    fn word(&self) -> &AtomicU64 {
        self.raw.placed().lock_word()
    }

    /// Pointer to element 0 in this process's mapping.
    pub fn as_ptr(&self) -> *mut T {
        self.raw.as_ptr()
    }
}

/// The lock of an [`Array`], held: derefs to `[T]`, unlocks on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Pod> {
    /// Unlocks on drop; keeps the guard on this thread.
    held: Held<'a>,
    array: &'a Array<T>,
}

// SAFETY: a shared guard only hands out `&[T]`.
unsafe impl<T: Pod + Sync> Sync for ArrayGuard<'_, T> {}

impl<T: Pod> ArrayGuard<'_, T> {
    /// Declares the elements repaired after an [`OwnerDied`].
    pub fn mark_consistent(&mut self) {
        self.held.mark_consistent();
    }
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: we hold the lock: no cooperating writer; the elements are
        // aligned and valid for `len` reads while the mapping lives.
        unsafe { std::slice::from_raw_parts(self.array.as_ptr(), self.array.len()) }
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: we hold the lock: nobody else reads or writes the elements.
        unsafe { std::slice::from_raw_parts_mut(self.array.as_ptr(), self.array.len()) }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}


// SAFETY: the layout of a `RawArray<T>` behind a lock word, under its own
// kind, which is all the handle reads and writes.
unsafe impl<T: Pod> Object for Array<T> {
    const KIND: ObjectKind = ObjectKind::Array;
    const LEN: Option<u64> = None;

    fn expect() -> Expect {
        Expect::of::<T>()
    }

    fn from_placed(obj: Placed, _: u32, _: Token) -> Result<Self> {
        Ok(Array {
            raw: RawArray::over(obj),
        })
    }

    fn placed(&self) -> &Placed {
        self.raw.placed()
    }
}

/// Encodes the handle as its [`Descriptor`](crate::Descriptor).
impl<T: Pod> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
