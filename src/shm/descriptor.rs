//! [`Descriptor`]: how another process finds and checks an object.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kind::{Fingerprint, ObjectKind};
use crate::shm::segment::SegmentRef;

/// Everything needed to find and check an object from another process: its
/// segment, its offset, its kind, its element type's fingerprint and its
/// length.
///
/// A descriptor is plain data (`serde`), so it can travel to a spawned child
/// on its command line or through a pipe, or to an unrelated process. Each
/// typed handle has `descriptor()` and `attach(&Descriptor)`; attaching
/// re-validates the shared header, so a descriptor that is stale, forged or
/// for another type is an [`Error`], never a misread.
///
/// Memfd segments are reached through an inherited descriptor or
/// `/proc/<pid>/fd/<fd>` of a live process of the same user; named segments
/// by name. Every shared handle also implements `serde` as its descriptor:
/// serialising one encodes its descriptor, deserialising one attaches.
///
/// # Errors of `attach` and `open_at`
///
/// Every handle's `attach(&Descriptor)` and `open_at(&SharedMemory,
/// offset)` check the same things and fail the same ways:
/// [`Error::KindMismatch`] or [`Error::LayoutMismatch`] for another kind
/// of object or element type, [`Error::LengthMismatch`] for another
/// length, [`Error::NotReady`] if nothing is published there,
/// [`Error::VersionMismatch`] for a header of another layout version,
/// [`Error::Corrupted`] for a damaged header, [`Error::OutOfBounds`] for
/// an offset that does not fit the segment, [`Error::Overlap`] for an
/// object that overlaps another one live in this process; and, for
/// `attach`, [`Error::NotFound`] if the segment is gone and
/// [`Error::InvalidDescriptor`] if the descriptor names another file or
/// a part the object does not have.
///
/// # Examples
///
/// ```
/// use multiproc::SharedObject;
/// use multiproc::{Descriptor, Value};
/// # fn main() -> multiproc::Result<()> {
/// let v = Value::new(7u32)?;
/// let bytes = v.descriptor().to_bytes();
/// // ... in another process:
/// let d = Descriptor::from_bytes(&bytes)?;
/// let w = Value::<u32>::attach(&d)?;
/// assert_eq!(w.get(), 7);
/// assert!(Value::<f32>::attach(&d).is_err()); // wrong type
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Descriptor {
    pub(crate) segment: SegmentRef,
    pub(crate) offset: u64,
    pub(crate) kind: ObjectKind,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) len: u64,
    pub(crate) part: u32,
}

impl Descriptor {
    /// The segment the object lives in.
    pub fn segment(&self) -> &SegmentRef {
        &self.segment
    }

    /// Offset of the object's header within its segment.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The kind of object.
    pub fn kind(&self) -> ObjectKind {
        self.kind
    }

    /// The element type's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Number of elements (1 for scalar objects).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Which part of the object the handle uses: 0, except for the second
    /// end of a [`Pipe`](crate::Pipe), which is 1.
    pub fn part(&self) -> u32 {
        self.part
    }

    /// Whether the length is zero: never for a descriptor this crate made
    /// (objects hold at least one element); such a descriptor attaches to
    /// nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Encodes the descriptor compactly (postcard).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain integers and strings into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes a descriptor made by [`to_bytes`](Self::to_bytes).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDescriptor`] if the bytes are not a descriptor.
    pub fn from_bytes(bytes: &[u8]) -> Result<Descriptor> {
        postcard::from_bytes(bytes).map_err(|e| Error::InvalidDescriptor {
            reason: format!("cannot decode descriptor bytes: {e}"),
        })
    }
}

impl fmt::Display for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}[{}] at offset {} of {:?}",
            self.kind, self.len, self.offset, self.segment
        )?;
        if self.part != 0 {
            write!(f, ", part {}", self.part)?;
        }
        Ok(())
    }
}

