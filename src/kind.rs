//! What an object in shared memory is: its [`ObjectKind`] and its element
//! type's [`Fingerprint`], as every object header and every
//! [`Descriptor`](crate::Descriptor) records them.
//!
//! A leaf below `error`, whose mismatch variants name both; the header
//! format that stores them, and each kind's layout, are in `shm/header.rs`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of object a header describes.
///
/// Recorded in every header so that attaching, say, an `Array` descriptor as a
/// `Value` is an error rather than a misread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
#[repr(u32)]
pub enum ObjectKind {
    /// [`Value`](crate::Value): a lock word and one `T`.
    Value = 1,
    /// [`RawValue`](crate::RawValue): one `T`, no lock.
    RawValue = 2,
    /// [`Array`](crate::Array): a lock word and `len` elements.
    Array = 3,
    /// [`RawArray`](crate::RawArray): `len` elements, no lock.
    RawArray = 4,
    /// [`AtomicValue`](crate::AtomicValue): one integer used atomically.
    Atomic = 5,
    /// A process-shared mutex guarding one `T` (`Mutex`, `Lock`).
    Mutex = 6,
    /// A re-entrant process-shared lock (`RLock`).
    RLock = 7,
    /// A counting semaphore (`Semaphore`, `BoundedSemaphore`).
    Semaphore = 8,
    /// An event flag (`Event`).
    Event = 9,
    /// A barrier (`Barrier`).
    Barrier = 10,
    /// A condition variable (`Condition`).
    Condition = 11,
    /// A single-producer single-consumer ring ([`spsc`](crate::spsc)):
    /// index and wait words, then `len` slots.
    Spsc = 12,
    /// A multi-producer multi-consumer ring ([`Queue`](crate::Queue)):
    /// position and wait words, then `len` slots of stamp and value.
    Mpmc = 13,
    /// A queue of serialised messages
    /// ([`MessageQueue`](crate::MessageQueue)): the MPMC ring's words, then
    /// `len` fixed-size slots of stamp, length and message bytes.
    Messages = 14,
    /// A [`JoinableQueue`](crate::JoinableQueue): an unfinished-task line,
    /// then the same layout as [`Messages`](Self::Messages).
    Joinable = 15,
    /// A duplex [`Pipe`](crate::Pipe): two message rings' words, then their
    /// slots (`len / 2` each).
    Pipe = 16,
}

impl ObjectKind {
    pub(crate) fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => ObjectKind::Value,
            2 => ObjectKind::RawValue,
            3 => ObjectKind::Array,
            4 => ObjectKind::RawArray,
            5 => ObjectKind::Atomic,
            6 => ObjectKind::Mutex,
            7 => ObjectKind::RLock,
            8 => ObjectKind::Semaphore,
            9 => ObjectKind::Event,
            10 => ObjectKind::Barrier,
            11 => ObjectKind::Condition,
            12 => ObjectKind::Spsc,
            13 => ObjectKind::Mpmc,
            14 => ObjectKind::Messages,
            15 => ObjectKind::Joinable,
            16 => ObjectKind::Pipe,
            _ => return None,
        })
    }
}

/// The identity of an element type as recorded in shared memory: its size,
/// its alignment and a hash of its type name.
///
/// The hash is FNV-1a over [`std::any::type_name`], which is stable for one
/// compiler version; processes built from the same source with the same
/// toolchain agree on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    /// `size_of::<T>()`.
    pub size: u32,
    /// `align_of::<T>()`.
    pub align: u32,
    /// FNV-1a 64 of `type_name::<T>()`.
    pub type_hash: u64,
}

impl Fingerprint {
    /// The fingerprint of `T`.
    pub fn of<T>() -> Self {
        Fingerprint {
            // Sizes above 4 GiB for one element are refused by `ObjectLayout`.
            size: u32::try_from(size_of::<T>()).unwrap_or(u32::MAX),
            align: u32::try_from(align_of::<T>()).unwrap_or(u32::MAX),
            type_hash: fnv1a(std::any::type_name::<T>().as_bytes(), FNV_OFFSET),
        }
    }
}

impl Fingerprint {
    /// The fingerprint of `size`-byte slots of a message object whose
    /// messages are `T`s: the hash covers `tag` and `T`'s type name, the size
    /// is the slot's (chosen at creation, so attaching accepts any size).
    pub(crate) fn slots<T: ?Sized>(tag: &str, size: u32, align: u32) -> Self {
        Fingerprint {
            size,
            align,
            type_hash: Self::slot_hash::<T>(tag),
        }
    }

    /// The type hash of [`slots`](Self::slots).
    pub(crate) fn slot_hash<T: ?Sized>(tag: &str) -> u64 {
        fnv1a(
            std::any::type_name::<T>().as_bytes(),
            fnv1a(tag.as_bytes(), FNV_OFFSET),
        )
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "size {}, align {}, type hash {:#018x}",
            self.size, self.align, self.type_hash
        )
    }
}

pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

pub(crate) fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

