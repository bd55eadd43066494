//! Shared objects as serde values, so they travel inside a spawned
//! [`Entry`](crate::Entry) (or any serde message): each encodes as its
//! [`Descriptor`] and decodes by attaching to it, with the usual checks
//! (kind, element type, length, header, and the file's identity).
//!
//! A failed attach becomes a serde error. Formats such as postcard drop the
//! message of such an error, so the message is also kept aside here, per
//! thread, for `init` to report to the parent.

use std::cell::RefCell;

use bytemuck::Pod;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::queue::spsc::{Consumer, Producer};
use crate::shm::segment::SegmentRef;
use crate::{
    Array, AtomicInt, AtomicValue, Barrier, BoundedSemaphore, Condition, Connection, Descriptor,
    Event, JoinableQueue, MessageQueue, Mutex, Queue, RLock, RawArray, RawValue, Semaphore,
    SharedMemory, Value,
};

thread_local! {
    static ATTACH_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Forgets any attach error kept on this thread.
pub(crate) fn clear_attach_error() {
    let _ = ATTACH_ERROR.try_with(|e| e.borrow_mut().take());
}

/// The first attach error kept on this thread since the last clear.
pub(crate) fn take_attach_error() -> Option<String> {
    ATTACH_ERROR
        .try_with(|e| e.borrow_mut().take())
        .ok()
        .flatten()
}

/// Keeps `message` (the first one wins: it is the cause) and makes the
/// serde error.
fn attach_failed<E: serde::de::Error>(message: String) -> E {
    let _ = ATTACH_ERROR.try_with(|e| {
        e.borrow_mut().get_or_insert_with(|| message.clone());
    });
    E::custom(message)
}

/// `Serialize` as the descriptor, `Deserialize` by `attach`, for handles
/// with `descriptor()` and `attach(&Descriptor)` (from `attach_api!`).
macro_rules! via_descriptor {
    ($($what:literal [$($g:tt)*] $ty:ty;)*) => {$(
        #[doc = concat!("Encodes the `", $what, "` as its [`Descriptor`].")]
        impl<$($g)*> Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.descriptor().serialize(s)
            }
        }

        #[doc = concat!("Attaches to the `", $what, "` an encoded [`Descriptor`] names; ")]
        /// a descriptor that does not attach is an error naming the cause.
        impl<'de, $($g)*> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let descriptor = Descriptor::deserialize(d)?;
                <$ty>::attach(&descriptor)
                    .map_err(|e| attach_failed(format!("{}: {e}", $what)))
            }
        }
    )*};
}

via_descriptor! {
    "Value<T>" [T: Pod] Value<T>;
    "RawValue<T>" [T: Pod] RawValue<T>;
    "Array<T>" [T: Pod] Array<T>;
    "RawArray<T>" [T: Pod] RawArray<T>;
    "AtomicValue<T>" [T: AtomicInt] AtomicValue<T>;
    "Mutex<T>" [T: Pod] Mutex<T>;
    "RLock" [] RLock;
    "Condition" [] Condition;
    "Semaphore" [] Semaphore;
    "BoundedSemaphore" [] BoundedSemaphore;
    "Event" [] Event;
    "Barrier" [] Barrier;
    "Queue<T>" [T: Pod] Queue<T>;
    "Producer<T>" [T: Pod] Producer<T>;
    "Consumer<T>" [T: Pod] Consumer<T>;
    "MessageQueue<T>" [T: Serialize + DeserializeOwned] MessageQueue<T>;
    "JoinableQueue<T>" [T: Serialize + DeserializeOwned] JoinableQueue<T>;
    "Connection<T>" [T: Serialize + DeserializeOwned] Connection<T>;
}

/// Encodes the segment by name (and inode), as Python pickles a
/// `SharedMemory`.
impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.segment_ref().serialize(s)
    }
}

/// Opens the named segment again, checking that the name still leads to
/// the same file (not one unlinked and re-created since).
impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = SegmentRef::deserialize(d)?;
        SharedMemory::from_ref(&r).map_err(|e| attach_failed(format!("SharedMemory: {e}")))
    }
}
