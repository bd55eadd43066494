//! `AtomicValue<T>`: a lock-free integer in shared memory.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::shm::header::{Expect, ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Placed, Token};
use crate::shm::object::Place;

mod sealed {
    pub trait Sealed {}
}

/// Integer types that [`AtomicValue`] can hold: `u8`..`u64`, `i8`..`i64`,
/// `usize`, `isize`. Sealed; each maps to its `core::sync::atomic` type.
pub trait AtomicInt: bytemuck::Pod + Eq + fmt::Debug + Send + Sync + sealed::Sealed {
    #[doc(hidden)]
    type Atomic: Send + Sync;
    #[doc(hidden)]
    /// # Safety
    /// `p` must be valid and aligned for `Self::Atomic` for `'a`, and only
    /// accessed atomically by everyone.
    unsafe fn atomic<'a>(p: *mut Self) -> &'a Self::Atomic;
    #[doc(hidden)]
    fn load(a: &Self::Atomic, o: Ordering) -> Self;
    #[doc(hidden)]
    fn store(a: &Self::Atomic, v: Self, o: Ordering);
    #[doc(hidden)]
    fn swap(a: &Self::Atomic, v: Self, o: Ordering) -> Self;
    #[doc(hidden)]
    fn compare_exchange(
        a: &Self::Atomic,
        c: Self,
        n: Self,
        s: Ordering,
        f: Ordering,
    ) -> Result<Self, Self>;
    #[doc(hidden)]
    fn compare_exchange_weak(
        a: &Self::Atomic,
        c: Self,
        n: Self,
        s: Ordering,
        f: Ordering,
    ) -> Result<Self, Self>;
    #[doc(hidden)]
    fn fetch_add(a: &Self::Atomic, v: Self, o: Ordering) -> Self;
    #[doc(hidden)]
    fn fetch_sub(a: &Self::Atomic, v: Self, o: Ordering) -> Self;
    #[doc(hidden)]
    fn fetch_and(a: &Self::Atomic, v: Self, o: Ordering) -> Self;
    #[doc(hidden)]
    fn fetch_or(a: &Self::Atomic, v: Self, o: Ordering) -> Self;
    #[doc(hidden)]
    fn fetch_xor(a: &Self::Atomic, v: Self, o: Ordering) -> Self;
    #[doc(hidden)]
    fn fetch_max(a: &Self::Atomic, v: Self, o: Ordering) -> Self;
    #[doc(hidden)]
    fn fetch_min(a: &Self::Atomic, v: Self, o: Ordering) -> Self;
}

macro_rules! atomic_int {
    ($($t:ty => $a:ident),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl AtomicInt for $t {
            type Atomic = crate::loom::mapped::$a;
            #[inline]
            unsafe fn atomic<'a>(p: *mut Self) -> &'a Self::Atomic {
                // SAFETY: forwarded from the caller.
                unsafe { Self::Atomic::from_ptr(p) }
            }
            #[inline] fn load(a: &Self::Atomic, o: Ordering) -> Self { a.load(o) }
            #[inline] fn store(a: &Self::Atomic, v: Self, o: Ordering) { a.store(v, o) }
            #[inline] fn swap(a: &Self::Atomic, v: Self, o: Ordering) -> Self { a.swap(v, o) }
            #[inline]
            fn compare_exchange(a: &Self::Atomic, c: Self, n: Self, s: Ordering, f: Ordering) -> Result<Self, Self> {
                a.compare_exchange(c, n, s, f)
            }
            #[inline]
            fn compare_exchange_weak(a: &Self::Atomic, c: Self, n: Self, s: Ordering, f: Ordering) -> Result<Self, Self> {
                a.compare_exchange_weak(c, n, s, f)
            }
            #[inline] fn fetch_add(a: &Self::Atomic, v: Self, o: Ordering) -> Self { a.fetch_add(v, o) }
            #[inline] fn fetch_sub(a: &Self::Atomic, v: Self, o: Ordering) -> Self { a.fetch_sub(v, o) }
            #[inline] fn fetch_and(a: &Self::Atomic, v: Self, o: Ordering) -> Self { a.fetch_and(v, o) }
            #[inline] fn fetch_or(a: &Self::Atomic, v: Self, o: Ordering) -> Self { a.fetch_or(v, o) }
            #[inline] fn fetch_xor(a: &Self::Atomic, v: Self, o: Ordering) -> Self { a.fetch_xor(v, o) }
            #[inline] fn fetch_max(a: &Self::Atomic, v: Self, o: Ordering) -> Self { a.fetch_max(v, o) }
            #[inline] fn fetch_min(a: &Self::Atomic, v: Self, o: Ordering) -> Self { a.fetch_min(v, o) }
        }
    )*};
}

atomic_int! {
    u8 => AtomicU8, u16 => AtomicU16, u32 => AtomicU32, u64 => AtomicU64, usize => AtomicUsize,
    i8 => AtomicI8, i16 => AtomicI16, i32 => AtomicI32, i64 => AtomicI64, isize => AtomicIsize,
}

/// A lock-free integer in shared memory, for counters and flags that several
/// processes update: `counter.fetch_add(1, Relaxed)` instead of Python's
/// `with v.get_lock(): v.value += 1`.
///
/// The operations are those of the `core::sync::atomic` type for `T` (the
/// same orderings; `SeqCst` when unsure) and compile to the same
/// instructions: the integer sits alone in its own cache line of a shared
/// mapping. Like `core`'s, they panic on an ordering the operation cannot
/// take (`load(Release)`, `store(Acquire)`, a failure ordering of `Release`),
/// a programming error rather than a runtime condition.
///
/// # Examples
///
/// ```
/// use multiproc::AtomicValue;
/// use std::sync::atomic::Ordering::SeqCst;
/// # fn main() -> multiproc::Result<()> {
/// let hits = AtomicValue::new(0u64)?;
/// hits.fetch_add(5, SeqCst);
/// assert_eq!(hits.compare_exchange(5, 7, SeqCst, SeqCst), Ok(5));
/// assert_eq!(hits.load(SeqCst), 7);
/// # Ok(())
/// # }
/// ```
pub struct AtomicValue<T> {
    obj: Placed,
    _t: PhantomData<T>,
}

// SAFETY: the integer is only ever accessed atomically.
unsafe impl<T: AtomicInt> Send for AtomicValue<T> {}
// SAFETY: as above.
unsafe impl<T: AtomicInt> Sync for AtomicValue<T> {}

impl<T> Clone for AtomicValue<T> {
    fn clone(&self) -> Self {
        AtomicValue {
            obj: self.obj.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: AtomicInt> fmt::Debug for AtomicValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AtomicValue")
            .field(&self.load(Ordering::Relaxed))
            .finish()
    }
}

impl<T: AtomicInt> AtomicValue<T> {
    /// Places an atomic integer holding `value` in shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if a new segment cannot be made.
    pub fn new(value: T) -> Result<Self> {
        Self::make(Place::Arena, value)
    }

    /// Places an atomic integer at `offset` of a named segment; see
    /// [`Value::create_at`](crate::Value::create_at).
    ///
    /// # Errors
    ///
    /// As [`Value::create_at`](crate::Value::create_at).
    pub fn create_at(shm: &SharedMemory, offset: usize, value: T) -> Result<Self> {
        Self::make(Place::At(shm, offset), value)
    }

    fn make(place: Place<'_>, value: T) -> Result<Self> {
        let layout = ObjectLayout::new::<T>(ObjectKind::Atomic, 1)?;
        let obj = place.make(layout, |p| {
            // SAFETY: aligned and valid for one T, unpublished.
            unsafe { p.cast::<T>().write(value) }
        })?;
        Ok(AtomicValue {
            obj,
            _t: PhantomData,
        })
    }

    fn over(obj: Placed) -> Self {
        AtomicValue {
            obj,
            _t: PhantomData,
        }
    }

    /// Bytes an `AtomicValue<T>` takes in a segment.
    pub fn shared_size() -> usize {
        ObjectLayout::new::<T>(ObjectKind::Atomic, 1).map_or(usize::MAX, |l| l.total_size)
    }

    /// Alignment an `AtomicValue<T>` needs in a segment (at least 64).
    pub fn shared_align() -> usize {
        ObjectLayout::new::<T>(ObjectKind::Atomic, 1).map_or(usize::MAX, |l| l.align)
    }

    #[inline]
    fn a(&self) -> &T::Atomic {
        // SAFETY: the data is 64-aligned (more than any atomic needs), valid
        // for one T while `self` holds the mapping, and accessed atomically
        // only (every handle goes through here).
        unsafe { T::atomic(self.obj.data().cast()) }
    }

    /// Loads the value.
    #[inline]
    pub fn load(&self, order: Ordering) -> T {
        T::load(self.a(), order)
    }

    /// Stores `value`.
    #[inline]
    pub fn store(&self, value: T, order: Ordering) {
        T::store(self.a(), value, order)
    }

    /// Stores `value`, returning the previous value.
    #[inline]
    pub fn swap(&self, value: T, order: Ordering) -> T {
        T::swap(self.a(), value, order)
    }

    /// Stores `new` if the value is `current`; returns the previous value,
    /// `Ok` if it was `current`.
    #[inline]
    pub fn compare_exchange(
        &self,
        current: T,
        new: T,
        success: Ordering,
        failure: Ordering,
    ) -> Result<T, T> {
        T::compare_exchange(self.a(), current, new, success, failure)
    }

    /// Like [`compare_exchange`](Self::compare_exchange), but may fail
    /// spuriously; for use in loops.
    #[inline]
    pub fn compare_exchange_weak(
        &self,
        current: T,
        new: T,
        success: Ordering,
        failure: Ordering,
    ) -> Result<T, T> {
        T::compare_exchange_weak(self.a(), current, new, success, failure)
    }

    /// Adds `value` (wrapping), returning the previous value.
    #[inline]
    pub fn fetch_add(&self, value: T, order: Ordering) -> T {
        T::fetch_add(self.a(), value, order)
    }

    /// Subtracts `value` (wrapping), returning the previous value.
    #[inline]
    pub fn fetch_sub(&self, value: T, order: Ordering) -> T {
        T::fetch_sub(self.a(), value, order)
    }

    /// Bitwise and, returning the previous value.
    #[inline]
    pub fn fetch_and(&self, value: T, order: Ordering) -> T {
        T::fetch_and(self.a(), value, order)
    }

    /// Bitwise or, returning the previous value.
    #[inline]
    pub fn fetch_or(&self, value: T, order: Ordering) -> T {
        T::fetch_or(self.a(), value, order)
    }

    /// Bitwise xor, returning the previous value.
    #[inline]
    pub fn fetch_xor(&self, value: T, order: Ordering) -> T {
        T::fetch_xor(self.a(), value, order)
    }

    /// Stores the maximum of the value and `value`, returning the previous
    /// value.
    #[inline]
    pub fn fetch_max(&self, value: T, order: Ordering) -> T {
        T::fetch_max(self.a(), value, order)
    }

    /// Stores the minimum of the value and `value`, returning the previous
    /// value.
    #[inline]
    pub fn fetch_min(&self, value: T, order: Ordering) -> T {
        T::fetch_min(self.a(), value, order)
    }

    /// Applies `f` until its result is stored without interference (a CAS
    /// loop), as `core`'s `fetch_update`; `f` returning `None` stops with
    /// `Err(current)`.
    pub fn fetch_update<F>(
        &self,
        set_order: Ordering,
        fetch_order: Ordering,
        mut f: F,
    ) -> Result<T, T>
    where
        F: FnMut(T) -> Option<T>,
    {
        let mut prev = self.load(fetch_order);
        while let Some(next) = f(prev) {
            match self.compare_exchange_weak(prev, next, set_order, fetch_order) {
                Ok(x) => return Ok(x),
                Err(seen) => prev = seen,
            }
        }
        Err(prev)
    }
}

// SAFETY: one `T` at the data offset of an `Atomic` header of `T`'s fingerprint,
// reached only as `T::Atomic`, which is all the handle touches.
unsafe impl<T: AtomicInt> Object for AtomicValue<T> {
    const KIND: ObjectKind = ObjectKind::Atomic;

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
impl<T: AtomicInt> Serialize for AtomicValue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de, T: AtomicInt> Deserialize<'de> for AtomicValue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
