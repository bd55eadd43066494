//! Shared memory: segments, the object header, placement, and the typed
//! objects placed in them (`Value`, `RawValue`, `Array`, `RawArray`,
//! `AtomicValue`).
//!
//! Layering inside: `bump` (pure algorithm, loom-modelled) and `header`
//! (format) ← `segment` (fd + mapping) and `named` ← `object` (placement,
//! attach, descriptors) ← the typed objects.

pub mod bump;
#[cfg(not(loom))]
pub(crate) mod header;

#[cfg(not(loom))]
pub(crate) mod array;
#[cfg(not(loom))]
pub(crate) mod atomic;
#[cfg(not(loom))]
pub(crate) mod named;
#[cfg(not(loom))]
pub(crate) mod object;
#[cfg(not(loom))]
pub(crate) mod ranges;
#[cfg(not(loom))]
pub(crate) mod segment;
#[cfg(not(loom))]
pub(crate) mod value;

#[cfg(not(loom))]
pub use header::{Fingerprint, ObjectKind};
