//! The MPMC ring's memory in a mapping: the slot format (a stamp, then the
//! value) and `Mapped`, the ring's view of a placed object.

use std::fmt;
use std::marker::PhantomData;
use std::ptr;

use bytemuck::Pod;

use crate::algo::mpmc::{MpmcState, QueueMemory, STATE_BYTES, SlotMemory};
use crate::algo::robust::{Liveness, Owner};
use crate::error::{Error, Result};
use crate::loom::atomic::AtomicU64;
use crate::shm::header::{ObjectKind, ObjectLayout};
use crate::shm::object::Placed;
use crate::sys::futex::Futex;
use crate::sys::thread::ProcLiveness;

/// One slot in shared memory: the stamp, then the value (in one cache line
/// for small `T`). The element type of a queue's object header.
#[repr(C)]
pub(crate) struct Slot<T> {
    pub(super) stamp: AtomicU64,
    value: T,
}

/// A ring placed in shared memory: the state right before the slots.
pub(super) struct Mapped<T> {
    pub(super) obj: Placed,
    pub(super) _t: PhantomData<T>,
}

impl<T> Clone for Mapped<T> {
    fn clone(&self) -> Self {
        Mapped {
            obj: self.obj.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Mapped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.obj.fmt(f)
    }
}

impl<T> Mapped<T> {
    #[inline]
    fn slots(&self) -> *mut Slot<T> {
        self.obj.data().cast::<Slot<T>>()
    }
}

// SAFETY: the state and the slot pointer come from the locally validated
// layout of one object (never from shared memory) and stay put while `obj`
// keeps the mapping alive; the capacity is the layout's length, which the
// layout bounds far below 2^60 (a slot is at least 8 bytes and an object at
// most isize::MAX / 2). Values are accessed with volatile copies of `Pod`
// values and stamps only as atomics, sound however a peer scribbles.
unsafe impl<T: Pod> QueueMemory for Mapped<T> {
    type Waiter = Futex;

    #[inline]
    fn state(&self) -> &MpmcState {
        // SAFETY: kind Mpmc puts element 0 at 5 * 64 bytes past the header
        // (or later, aligned), so the STATE_BYTES before it lie inside the
        // object, after the header, 64-aligned; MpmcState is only atomics,
        // valid for any bytes (zeroed at creation); the mapping outlives
        // `&self`.
        unsafe { &*self.obj.data().sub(STATE_BYTES).cast::<MpmcState>() }
    }

    #[inline]
    fn capacity(&self) -> usize {
        self.obj.len()
    }

    #[inline]
    fn waiter(&self) -> &Futex {
        &Futex
    }

    #[inline]
    unsafe fn stamp(&self, index: usize) -> &AtomicU64 {
        // SAFETY: index < capacity (caller), so the slot is inside the
        // object, aligned by the layout; an atomic is valid for any bytes
        // and is only ever accessed atomically; the mapping outlives `&self`.
        unsafe { &(*self.slots().add(index)).stamp }
    }
    #[inline]
    fn me(&self) -> Owner {
        crate::sys::thread::current()
    }

    fn is_dead(&self, owner: Owner) -> bool {
        ProcLiveness.is_dead(owner)
    }
}

// SAFETY: the slot pointers are in bounds for index < capacity (the
// layout's length); values are copied with volatile accesses of `Pod`
// values, sound whatever a peer writes.
unsafe impl<T: Pod> SlotMemory for Mapped<T> {
    type Item = T;

    #[inline]
    unsafe fn write(&self, index: usize, value: T) {
        // SAFETY: index < capacity (caller); the value field is aligned for
        // T by `Slot`'s layout and disjoint from the stamp.
        unsafe { ptr::write_volatile(&raw mut (*self.slots().add(index)).value, value) }
    }

    #[inline]
    unsafe fn read(&self, index: usize) -> T {
        // SAFETY: as in `write`; any bytes are a valid T: Pod.
        unsafe { ptr::read_volatile(&raw const (*self.slots().add(index)).value) }
    }
}

pub(super) fn layout<T>(capacity: usize) -> Result<ObjectLayout> {
    if capacity > MAX_CAPACITY {
        return Err(Error::InvalidSize {
            requested: capacity as u64,
            reason: "queue capacity above Queue::MAX_CAPACITY",
        });
    }
    ObjectLayout::new::<Slot<T>>(ObjectKind::Mpmc, capacity)
}

/// The largest capacity [`Queue::new`] accepts.
pub(super) const MAX_CAPACITY: usize = crate::shm::header::MAX_RING_SLOTS;

