//! `Array<T>` (elements behind a process-shared lock) and `RawArray<T>`
//! (elements, no lock).

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut, Range};
use std::ptr;
use std::time::Duration;

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::shm::header::{ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Placed, attach_api};
use crate::shm::object::Place;
use crate::sync::mutex::{LockResult, OwnerDied, TryLockResult, word};
use crate::algo::robust::{Locked, RobustLock};

/// The elements of an array object: bounds-checked copies in and out.
/// Shared by [`Array`] (under its lock) and [`RawArray`] (without).
struct Elems<T> {
    obj: Placed,
    _t: PhantomData<T>,
}

impl<T> Clone for Elems<T> {
    fn clone(&self) -> Self {
        Elems {
            obj: self.obj.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Pod> Elems<T> {
    fn make(kind: ObjectKind, place: Place<'_>, len: usize, src: Option<&[T]>) -> Result<Self> {
        let layout = ObjectLayout::new::<T>(kind, len)?;
        let obj = place.make(layout, |p| {
            if let Some(src) = src {
                // SAFETY: the data region holds `len == src.len()` elements,
                // aligned for T, and nobody else sees it before `publish`.
                unsafe { ptr::copy_nonoverlapping(src.as_ptr(), p.cast::<T>(), src.len()) };
            }
        })?;
        Ok(Elems {
            obj,
            _t: PhantomData,
        })
    }

    #[inline]
    fn ptr(&self) -> *mut T {
        self.obj.data().cast()
    }

    #[inline]
    fn len(&self) -> usize {
        self.obj.len()
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

    #[inline]
    fn get(&self, i: usize) -> Option<T> {
        // SAFETY: i < len: the element is in the mapping, aligned; any bytes
        // are a valid T.
        (i < self.len()).then(|| unsafe { self.ptr().add(i).read_volatile() })
    }

    #[inline]
    fn set(&self, i: usize, v: T) -> Result<()> {
        if i >= self.len() {
            return Err(Error::IndexOutOfRange {
                index: i,
                len: self.len(),
            });
        }
        // SAFETY: i < len, as in `get`.
        unsafe { self.ptr().add(i).write_volatile(v) };
        Ok(())
    }

    fn read_at(&self, start: usize, dst: &mut [T]) -> Result<()> {
        self.range(start, dst.len())?;
        // SAFETY: start..start+dst.len() is in bounds (checked); `dst` is ours.
        unsafe { ptr::copy_nonoverlapping(self.ptr().add(start), dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    fn write_at(&self, start: usize, src: &[T]) -> Result<()> {
        self.range(start, src.len())?;
        // SAFETY: the destination range is in bounds (checked). `src` could
        // overlap it only if unsafe code borrowed this array's own memory;
        // `copy` (memmove) stays correct even then.
        unsafe { ptr::copy(src.as_ptr(), self.ptr().add(start), src.len()) };
        Ok(())
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

    fn to_vec(&self) -> Vec<T> {
        let mut v = Vec::<T>::with_capacity(self.len());
        // SAFETY: copies len elements into the Vec's spare capacity, then
        // sets the length; every bit pattern is a valid T (Pod).
        unsafe {
            ptr::copy_nonoverlapping(self.ptr(), v.as_mut_ptr(), self.len());
            v.set_len(self.len());
        }
        v
    }

    fn fill(&self, value: T) {
        // Zero-sized elements hold nothing to write (and a forged header
        // may give them any length).
        if size_of::<T>() == 0 {
            return;
        }
        for i in 0..self.len() {
            // SAFETY: i < len.
            unsafe { self.ptr().add(i).write(value) };
        }
    }
}

macro_rules! placement_docs {
    () => {
        "`offset` must be a multiple of `shared_align()` with `shared_size(len)` bytes free after it."
    };
}

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
/// in the way: use [`RawArray`] and its [`write_at`](RawArray::write_at).
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
    elems: Elems<T>,
}

// SAFETY: as for `Value`: access goes through the shared lock or copies.
unsafe impl<T: Pod + Send> Send for Array<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send> Sync for Array<T> {}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            elems: self.elems.clone(),
        }
    }
}

impl<T> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("type", &std::any::type_name::<T>())
            .field("place", &self.elems.obj)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> Array<T> {
    /// A zero-filled array of `len` elements.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`] for a length of zero, one whose byte size
    /// overflows, or one larger than this machine's memory.
    pub fn new(len: usize) -> Result<Self> {
        Elems::make(ObjectKind::Array, Place::Arena, len, None).map(|elems| Array { elems })
    }

    /// An array holding a copy of `src`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new) (an empty `src` is refused).
    pub fn from_slice(src: &[T]) -> Result<Self> {
        Elems::make(ObjectKind::Array, Place::Arena, src.len(), Some(src))
            .map(|elems| Array { elems })
    }

    /// A zero-filled array of `len` elements at `offset` of a named segment.
    #[doc = placement_docs!()]
    ///
    /// # Errors
    ///
    /// As [`Value::create_at`](crate::Value::create_at) and [`new`](Self::new).
    pub fn create_at(shm: &SharedMemory, offset: usize, len: usize) -> Result<Self> {
        Elems::make(ObjectKind::Array, Place::At(shm, offset), len, None)
            .map(|elems| Array { elems })
    }

    attach_api!("Array<T>", ObjectKind::Array, None, T);

    fn from_placed(obj: Placed) -> Self {
        Array {
            elems: Elems {
                obj,
                _t: PhantomData,
            },
        }
    }

    fn placed(&self) -> &Placed {
        &self.elems.obj
    }

    /// Bytes an `Array<T>` of `len` elements takes in a segment.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`] as for [`new`](Self::new).
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
        self.elems.len()
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
        self.elems.get(i)
    }

    /// Writes element `i` under the lock.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] past the end.
    #[inline]
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        let _g = self.held();
        self.elems.set(i, value)
    }

    /// A copy of all elements, taken under the lock.
    pub fn to_vec(&self) -> Vec<T> {
        let _g = self.held();
        self.elems.to_vec()
    }

    /// Overwrites all elements with `src` under the lock (one `memcpy`).
    ///
    /// # Errors
    ///
    /// [`Error::SliceLength`] if `src.len() != self.len()`.
    pub fn copy_from_slice(&self, src: &[T]) -> Result<()> {
        self.elems.exact(src.len())?;
        let _g = self.held();
        self.elems.write_at(0, src)
    }

    /// Copies all elements into `dst` under the lock (one `memcpy`).
    ///
    /// # Errors
    ///
    /// [`Error::SliceLength`] if `dst.len() != self.len()`.
    pub fn copy_to_slice(&self, dst: &mut [T]) -> Result<()> {
        self.elems.exact(dst.len())?;
        let _g = self.held();
        self.elems.read_at(0, dst)
    }

    /// Copies `dst.len()` elements starting at `start` into `dst`, under the
    /// lock.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] if the range does not fit.
    pub fn read_at(&self, start: usize, dst: &mut [T]) -> Result<()> {
        let _g = self.held();
        self.elems.read_at(start, dst)
    }

    /// Copies `src` into the elements starting at `start`, under the lock.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] if the range does not fit.
    pub fn write_at(&self, start: usize, src: &[T]) -> Result<()> {
        let _g = self.held();
        self.elems.write_at(start, src)
    }

    /// Sets every element to `value`, under the lock.
    pub fn fill(&self, value: T) {
        let _g = self.held();
        self.elems.fill(value);
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
        // No deadline: only returns once the lock is held.
        let how = word::lock(self.elems.obj.lock_word(), None).unwrap_or(Locked::Clean);
        word::result(how, self.guard())
    }

    /// Takes the lock if it is free, without blocking.
    ///
    /// # Errors
    ///
    /// As [`Mutex::try_lock`](crate::Mutex::try_lock).
    #[inline]
    pub fn try_lock(&self) -> TryLockResult<ArrayGuard<'_, T>> {
        word::try_result(word::try_lock(self.elems.obj.lock_word()), || self.guard())
    }

    /// Takes the lock, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock_timeout`](crate::Mutex::lock_timeout).
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<ArrayGuard<'_, T>> {
        word::try_result(
            word::lock_timeout(self.elems.obj.lock_word(), timeout),
            || self.guard(),
        )
    }

    /// The lock held for one of the copying methods: an earlier holder's
    /// death is left for [`lock`](Self::lock) to report.
    #[inline]
    fn held(&self) -> ArrayGuard<'_, T> {
        self.lock().unwrap_or_else(OwnerDied::into_inner)
    }

    fn guard(&self) -> ArrayGuard<'_, T> {
        ArrayGuard {
            array: self,
            _not_send: PhantomData,
        }
    }

    /// Pointer to element 0 in this process's mapping.
    pub fn as_ptr(&self) -> *mut T {
        self.elems.ptr()
    }
}

/// The lock of an [`Array`], held: derefs to `[T]`, unlocks on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Pod> {
    array: &'a Array<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard only hands out `&[T]`.
unsafe impl<T: Pod + Sync> Sync for ArrayGuard<'_, T> {}

impl<T: Pod> ArrayGuard<'_, T> {
    /// Declares the elements repaired after an [`OwnerDied`].
    pub fn mark_consistent(&mut self) {
        // SAFETY: the guard exists only while this thread holds the lock.
        unsafe { RobustLock::mark_consistent(self.array.elems.obj.lock_word()) }
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

impl<T: Pod> Drop for ArrayGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: a guard exists only while this thread holds the lock.
        unsafe { word::unlock(self.array.elems.obj.lock_word()) }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

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
    elems: Elems<T>,
}

// SAFETY: the safe API copies; references come only from unsafe methods whose
// callers take on the aliasing rules.
unsafe impl<T: Pod + Send> Send for RawArray<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send> Sync for RawArray<T> {}

impl<T> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            elems: self.elems.clone(),
        }
    }
}

impl<T> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray")
            .field("type", &std::any::type_name::<T>())
            .field("place", &self.elems.obj)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> RawArray<T> {
    /// A zero-filled array of `len` elements.
    ///
    /// # Errors
    ///
    /// As [`Array::new`].
    pub fn new(len: usize) -> Result<Self> {
        Elems::make(ObjectKind::RawArray, Place::Arena, len, None).map(|elems| RawArray { elems })
    }

    /// An array holding a copy of `src`.
    ///
    /// # Errors
    ///
    /// As [`Array::new`] (an empty `src` is refused).
    pub fn from_slice(src: &[T]) -> Result<Self> {
        Elems::make(ObjectKind::RawArray, Place::Arena, src.len(), Some(src))
            .map(|elems| RawArray { elems })
    }

    /// A zero-filled array of `len` elements at `offset` of a named segment.
    #[doc = placement_docs!()]
    ///
    /// # Errors
    ///
    /// As [`Array::create_at`].
    pub fn create_at(shm: &SharedMemory, offset: usize, len: usize) -> Result<Self> {
        Elems::make(ObjectKind::RawArray, Place::At(shm, offset), len, None)
            .map(|elems| RawArray { elems })
    }

    attach_api!("RawArray<T>", ObjectKind::RawArray, None, T);

    fn from_placed(obj: Placed) -> Self {
        RawArray {
            elems: Elems {
                obj,
                _t: PhantomData,
            },
        }
    }

    fn placed(&self) -> &Placed {
        &self.elems.obj
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
        self.elems.len()
    }

    /// Always `false`: arrays have at least one element.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` (a volatile read), or `None` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<T> {
        self.elems.get(i)
    }

    /// Writes element `i` (a volatile write).
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] past the end.
    #[inline]
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        self.elems.set(i, value)
    }

    /// A copy of all elements.
    pub fn to_vec(&self) -> Vec<T> {
        self.elems.to_vec()
    }

    /// Overwrites all elements with `src` (one `memcpy`).
    ///
    /// # Errors
    ///
    /// [`Error::SliceLength`] if `src.len() != self.len()`.
    pub fn copy_from_slice(&self, src: &[T]) -> Result<()> {
        self.elems.exact(src.len())?;
        self.elems.write_at(0, src)
    }

    /// Copies all elements into `dst` (one `memcpy`).
    ///
    /// # Errors
    ///
    /// [`Error::SliceLength`] if `dst.len() != self.len()`.
    pub fn copy_to_slice(&self, dst: &mut [T]) -> Result<()> {
        self.elems.exact(dst.len())?;
        self.elems.read_at(0, dst)
    }

    /// Copies `dst.len()` elements starting at `start` into `dst`.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] if the range does not fit.
    pub fn read_at(&self, start: usize, dst: &mut [T]) -> Result<()> {
        self.elems.read_at(start, dst)
    }

    /// Copies `src` into the elements starting at `start`: the lock-free way
    /// for workers to fill disjoint parts of one array.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] if the range does not fit.
    pub fn write_at(&self, start: usize, src: &[T]) -> Result<()> {
        self.elems.write_at(start, src)
    }

    /// Sets every element to `value`.
    pub fn fill(&self, value: T) {
        self.elems.fill(value);
    }

    /// Pointer to element 0 in this process's mapping.
    pub fn as_ptr(&self) -> *mut T {
        self.elems.ptr()
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
}
