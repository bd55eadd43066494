//! Shared memory: segments, the object header, placement, and the typed
//! objects placed in them without a lock (`RawValue`, `RawArray`,
//! `AtomicValue`).
//!
//! Layering inside: `header` (format) ← `segment` (fd + mapping) and
//! `named` ← `ranges` (live objects) ← `object` (placement, attach,
//! descriptors) ← the typed objects.

pub(crate) mod arena;
pub(crate) mod array;
pub(crate) mod atomic;
pub(crate) mod descriptor;
pub(crate) mod header;
pub(crate) mod named;
pub(crate) mod object;
pub(crate) mod owned;
pub(crate) mod ranges;
pub(crate) mod segment;
pub(crate) mod value;

pub use header::{Fingerprint, ObjectKind};
