//! `RawArray<T>`: elements in shared memory without a lock (and the
//! element operations `Array<T>` runs under its lock).

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::ptr;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::shm::header::{Expect, ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Place, Placed, Token};

/// The placement rule in `create_at`'s docs.
macro_rules! placement_docs {
    () => {
        "`offset` must be a multiple of `shared_align()` with `shared_size(len)` bytes free after it."
    };
}
pub(crate) use placement_docs;

/// Elements in shared memory without a lock: Python's
/// `multiprocessing.RawArray`.
///
/// The safe methods copy (element reads and writes are volatile, bulk copies
/// are `memcpy`), so they never create a Rust reference into memory that
/// other processes change. Racing writers to the *same* elements are not
/// excluded: the result is some mix of their bytes, still a valid `T`.
///
/// Writers that touch *disjoint* ranges need no lock at all: the usual way
/// for worker processes to fill one big array is for each to compute its part
/// and [`write_at`](Self::write_at) it, or to write in place through
/// [`slice_mut`](Self::slice_mut) (unsafe: the caller promises the range is
/// its alone).
///
/// # Examples
///
/// ```
/// use multiproc::RawArray;
/// # fn main() -> multiproc::Result<()> {
/// let a = RawArray::<f64>::new(8)?;
/// // Two workers, two halves (here in one process).
/// a.write_at(0, &[1.0; 4])?;
/// a.write_at(4, &[2.0; 4])?;
/// assert_eq!(a.to_vec().iter().sum::<f64>(), 12.0);
/// # Ok(())
/// # }
/// ```
pub struct RawArray<T> {
    pub(crate) obj: Placed,
    _t: PhantomData<T>,
}

// SAFETY: the safe API copies; references come only from unsafe methods whose
// callers take on the aliasing rules.
unsafe impl<T: Pod + Send> Send for RawArray<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send> Sync for RawArray<T> {}

impl<T> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            obj: self.obj.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray")
            .field("type", &std::any::type_name::<T>())
            .field("place", &self.obj)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> RawArray<T> {
    /// A zero-filled array of `len` elements.
    ///
    /// # Errors
    ///
    /// As [`Array::new`](crate::Array::new).
    pub fn new(len: usize) -> Result<Self> {
        Self::make(ObjectKind::RawArray, Place::Arena, len, None)
    }

    /// An array holding a copy of `src`.
    ///
    /// # Errors
    ///
    /// As [`Array::new`](crate::Array::new) (an empty `src` is refused).
    pub fn from_slice(src: &[T]) -> Result<Self> {
        Self::make(ObjectKind::RawArray, Place::Arena, src.len(), Some(src))
    }

    /// A zero-filled array of `len` elements at `offset` of a named segment.
    #[doc = placement_docs!()]
    ///
    /// # Errors
    ///
    /// As [`Array::create_at`](crate::Array::create_at).
    pub fn create_at(shm: &SharedMemory, offset: usize, len: usize) -> Result<Self> {
        Self::make(ObjectKind::RawArray, Place::At(shm, offset), len, None)
    }

    /// Places `len` elements (zero, or a copy of `src`) as an object of
    /// `kind`: `RawArray`, or `Array`, whose elements are this type's
    /// behind a lock word.
    pub(crate) fn make(
        kind: ObjectKind,
        place: Place<'_>,
        len: usize,
        src: Option<&[T]>,
    ) -> Result<Self> {
        let layout = ObjectLayout::new::<T>(kind, len)?;
        let obj = place.make(layout, |p| {
            if let Some(src) = src {
                // SAFETY: the data region holds `len == src.len()` elements,
                // aligned for T, and nobody else sees it before `publish`.
                unsafe { ptr::copy_nonoverlapping(src.as_ptr(), p.cast::<T>(), src.len()) };
            }
        })?;
        Ok(Self::over(obj))
    }

    /// The elements of a validated object of kind `RawArray` or `Array`.
    pub(crate) fn over(obj: Placed) -> Self {
        RawArray {
            obj,
            _t: PhantomData,
        }
    }

    /// Bytes a `RawArray<T>` of `len` elements takes in a segment.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`] as for [`new`](Self::new).
    pub fn shared_size(len: usize) -> Result<usize> {
        ObjectLayout::new::<T>(ObjectKind::RawArray, len).map(|l| l.total_size)
    }

    /// Alignment a `RawArray<T>` needs in a segment (at least 64).
    pub fn shared_align() -> usize {
        ObjectLayout::new::<T>(ObjectKind::RawArray, 1).map_or(usize::MAX, |l| l.align)
    }

    /// Number of elements.
    #[inline]
    pub fn len(&self) -> usize {
        self.obj.len()
    }

    /// Always `false`: arrays have at least one element.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` (a volatile read), or `None` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<T> {
        // SAFETY: i < len: the element is in the mapping, aligned; any bytes
        // are a valid T.
        (i < self.len()).then(|| unsafe { self.as_ptr().add(i).read_volatile() })
    }

    /// Writes element `i` (a volatile write).
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] past the end.
    #[inline]
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        if i >= self.len() {
            return Err(Error::IndexOutOfRange {
                index: i,
                len: self.len(),
            });
        }
        // SAFETY: i < len, as in `get`.
        unsafe { self.as_ptr().add(i).write_volatile(value) };
        Ok(())
    }

    /// A copy of all elements.
    pub fn to_vec(&self) -> Vec<T> {
        let mut v = Vec::<T>::with_capacity(self.len());
        // SAFETY: copies len elements into the Vec's spare capacity, then
        // sets the length; every bit pattern is a valid T (Pod).
        unsafe {
            ptr::copy_nonoverlapping(self.as_ptr(), v.as_mut_ptr(), self.len());
            v.set_len(self.len());
        }
        v
    }

    /// Overwrites all elements with `src` (one `memcpy`).
    ///
    /// # Errors
    ///
    /// [`Error::SliceLength`] if `src.len() != self.len()`.
    pub fn copy_from_slice(&self, src: &[T]) -> Result<()> {
        self.exact(src.len())?;
        self.write_at(0, src)
    }

    /// Copies all elements into `dst` (one `memcpy`).
    ///
    /// # Errors
    ///
    /// [`Error::SliceLength`] if `dst.len() != self.len()`.
    pub fn copy_to_slice(&self, dst: &mut [T]) -> Result<()> {
        self.exact(dst.len())?;
        self.read_at(0, dst)
    }

    /// Copies `dst.len()` elements starting at `start` into `dst`.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] if the range does not fit.
    pub fn read_at(&self, start: usize, dst: &mut [T]) -> Result<()> {
        self.range(start, dst.len())?;
        // SAFETY: start..start+dst.len() is in bounds (checked); `dst` is ours.
        unsafe { ptr::copy_nonoverlapping(self.as_ptr().add(start), dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// Copies `src` into the elements starting at `start`: the lock-free way
    /// for workers to fill disjoint parts of one array.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] if the range does not fit.
    pub fn write_at(&self, start: usize, src: &[T]) -> Result<()> {
        self.range(start, src.len())?;
        // SAFETY: the destination range is in bounds (checked). `src` could
        // overlap it only if unsafe code borrowed this array's own memory;
        // `copy` (memmove) stays correct even then.
        unsafe { ptr::copy(src.as_ptr(), self.as_ptr().add(start), src.len()) };
        Ok(())
    }

    /// Sets every element to `value`.
    pub fn fill(&self, value: T) {
        // Zero-sized elements hold nothing to write (and a forged header
        // may give them any length).
        if size_of::<T>() == 0 {
            return;
        }
        for i in 0..self.len() {
            // SAFETY: i < len.
            unsafe { self.as_ptr().add(i).write(value) };
        }
    }

    /// Pointer to element 0 in this process's mapping.
    pub fn as_ptr(&self) -> *mut T {
        self.obj.data().cast()
    }

    /// Borrows all elements as a slice.
    ///
    /// # Safety
    ///
    /// No thread or process may write any element while the slice lives.
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: aligned, valid for len elements while `self` lives; the
        // absence of writers is the caller's promise.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }

    /// Borrows the elements in `range` mutably, for in-place work on a part
    /// that is this caller's alone.
    ///
    /// Returns `None` if `range` does not fit.
    ///
    /// # Safety
    ///
    /// While the slice lives, no other thread or process may read or write
    /// any element in `range`, and no other reference to those elements may
    /// exist in this process. Disjoint ranges may be borrowed at once.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, range: Range<usize>) -> Option<&mut [T]> {
        if range.start > range.end || range.end > self.len() {
            return None;
        }
        // SAFETY: the range is in bounds (checked); exclusivity is the
        // caller's promise.
        Some(unsafe { std::slice::from_raw_parts_mut(self.as_ptr().add(range.start), range.len()) })
    }

    fn range(&self, start: usize, count: usize) -> Result<()> {
        match start.checked_add(count) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(Error::IndexOutOfRange {
                index: start.saturating_add(count).saturating_sub(1).max(start),
                len: self.len(),
            }),
        }
    }

    fn exact(&self, found: usize) -> Result<()> {
        if found == self.len() {
            Ok(())
        } else {
            Err(Error::SliceLength {
                expected: self.len(),
                found,
            })
        }
    }

}

// SAFETY: `len` elements of `T` at the data offset of a `RawArray` header
// of `T`'s fingerprint, which is all the handle reads and writes.
unsafe impl<T: Pod> Object for RawArray<T> {
    const KIND: ObjectKind = ObjectKind::RawArray;
    const LEN: Option<u64> = None;

    fn expect() -> Expect {
        Expect::of::<T>()
    }

    fn from_placed(obj: Placed, _: u32, _: Token) -> Result<Self> {
        Ok(Self::over(obj))
    }

    fn placed(&self) -> &Placed {
        &self.obj
    }
}

/// Encodes the handle as its [`Descriptor`](crate::Descriptor).
impl<T: Pod> Serialize for RawArray<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de, T: Pod> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
