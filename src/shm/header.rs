//! The 64-byte header in front of every object placed in shared memory.
//!
//! ```text
//! offset  field        meaning
//!      0  magic        b"MPROCOBJ" as a little-endian u64
//!      8  ready        0 = empty, 1 = being initialised, READY_TAG|version = published
//!     12  kind         ObjectKind as u32
//!     16  elem_size    size_of::<T>()
//!     20  elem_align   align_of::<T>()
//!     24  type_hash    FNV-1a 64 of type_name::<T>()
//!     32  len          element count (1 for scalars)
//!     40  total_size   bytes from the header's start to the object's end
//!     48  data_offset  bytes from the header's start to element 0
//!     52  reserved     0
//!     56  checksum     FNV-1a 64 over the fields above, `ready` excluded
//! ```
//!
//! The creator fills every field, then publishes `ready` with a Release store;
//! an attacher loads `ready` with Acquire, copies the header out with one
//! volatile read and validates the *copy*. Handles keep only the validated
//! data pointer and length: a peer that later scribbles over the header cannot
//! move them.

use std::ptr;

use crate::error::{Error, Result};
pub use crate::kind::{Fingerprint, ObjectKind};
use crate::kind::{FNV_OFFSET, fnv1a};

/// Size of the object header, and the alignment of every object.
pub(crate) const HEADER_SIZE: usize = 64;
/// `b"MPROCOBJ"` read as a little-endian integer.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"MPROCOBJ");
/// The layout version this build writes and reads.
pub(crate) const LAYOUT_VERSION: u32 = 5;
/// High half of a published `ready` word.
const READY_TAG: u32 = 0x4D50_0000; // "MP"
/// The ready word of a header being initialised.
pub(crate) const READY_BUSY: u32 = 1;
/// The ready word of a published header.
pub(crate) const READY: u32 = READY_TAG | LAYOUT_VERSION;

/// The most slots one ring may have, for every ring kind (each queue's
/// `MAX_CAPACITY` is this): the rings' index arithmetic relies on it.
pub(crate) const MAX_RING_SLOTS: usize = u32::MAX as usize;

/// The per-kind layout table: what each kind allows and where its data
/// starts. Owned here, with the format, so that placing and attaching check
/// the same limits without reading them from the layers above.
impl ObjectKind {
    /// The most elements an object of this kind may have. Placing a ring
    /// checks its capacity against it; attaching must too, since a header
    /// for zero-sized elements can claim any length without its size
    /// overflowing.
    fn max_len(self) -> u64 {
        match self {
            ObjectKind::Spsc | ObjectKind::Mpmc | ObjectKind::Messages | ObjectKind::Joinable => {
                MAX_RING_SLOTS as u64
            }
            // Two rings.
            ObjectKind::Pipe => 2 * MAX_RING_SLOTS as u64,
            _ => u64::MAX,
        }
    }

    /// Where element 0 starts, relative to the header, for elements of
    /// alignment `align`.
    fn data_offset(self, align: usize) -> usize {
        let min = match self {
            // Robust lock word (u64) right after the header; the value
            // shares its cache line.
            ObjectKind::Value | ObjectKind::Mutex => HEADER_SIZE + 8,
            // Lock word alone in its line; data starts on the next line so
            // bulk copies run on 64-byte aligned memory.
            ObjectKind::Array => 2 * HEADER_SIZE,
            // Mpmc: producer line (tail), wait line (eventcounts, closed
            // flag), consumer line (head), a spacer line; slots start on
            // the line after. Tail and head lie 128 bytes apart, so not
            // even the adjacent-line prefetcher pairs them.
            ObjectKind::Mpmc | ObjectKind::Messages => 5 * HEADER_SIZE,
            // Spsc: the holder tables of the producer end and the consumer
            // end (nine lines each), then the same four lines (the wait
            // line also holds the fencing word).
            ObjectKind::Spsc => 23 * HEADER_SIZE,
            // The unfinished-task line, the takers' table (17 lines), then
            // the four lines of a ring.
            ObjectKind::Joinable => 23 * HEADER_SIZE,
            // The holder tables of end 0 and end 1 (nine lines each), then
            // two rings' four lines each (the ring from end 0 to end 1
            // first).
            ObjectKind::Pipe => 27 * HEADER_SIZE,
            // Everything else keeps its state (and, for a Mutex, the lock word
            // and then the value) in the payload right after the header.
            ObjectKind::RawValue
            | ObjectKind::RawArray
            | ObjectKind::Atomic
            | ObjectKind::RLock
            | ObjectKind::Semaphore
            | ObjectKind::Event
            | ObjectKind::Barrier
            | ObjectKind::Condition => HEADER_SIZE,
        };
        min.next_multiple_of(align)
    }
}

/// What an attacher expects of the element fingerprint it finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this fingerprint.
    Exact(Fingerprint),
    /// Slots of any size (a multiple of `align`, at least `min_size`) with
    /// this type hash and alignment: message objects, whose slot size is
    /// chosen at creation. The header checksum and the size arithmetic
    /// still pin the object's extent.
    Slots {
        type_hash: u64,
        align: u32,
        min_size: u32,
    },
}

impl Expect {
    /// Whether `found` is acceptable.
    pub(crate) fn accepts(&self, found: Fingerprint) -> bool {
        match *self {
            Expect::Exact(fp) => fp == found,
            Expect::Slots {
                type_hash,
                align,
                min_size,
            } => {
                found.type_hash == type_hash
                    && found.align == align
                    && found.size >= min_size
                    && found.size.is_multiple_of(align)
            }
        }
    }

    /// The fingerprint to name as "expected" in an error about `found`.
    pub(crate) fn shown(&self, found: Fingerprint) -> Fingerprint {
        match *self {
            Expect::Exact(fp) => fp,
            Expect::Slots {
                type_hash, align, ..
            } => Fingerprint {
                size: found.size,
                align,
                type_hash,
            },
        }
    }
}

impl Expect {
    /// Exactly the fingerprint of `T`.
    pub(crate) fn of<T>() -> Expect {
        Expect::Exact(Fingerprint::of::<T>())
    }
}

impl From<Fingerprint> for Expect {
    fn from(fp: Fingerprint) -> Self {
        Expect::Exact(fp)
    }
}

/// Where an object's parts lie, computed from its kind, element type and
/// length alone (never read back from shared memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ObjectLayout {
    pub kind: ObjectKind,
    pub fingerprint: Fingerprint,
    pub len: u64,
    /// Bytes from the header's start to element 0.
    pub data_offset: usize,
    /// Bytes from the header's start to the object's end.
    pub total_size: usize,
    /// Alignment of the header (at least 64, the cache line).
    pub align: usize,
}

impl ObjectLayout {
    /// The layout of a `kind` object of `len` elements of type `T`.
    pub fn new<T>(kind: ObjectKind, len: usize) -> Result<Self> {
        Self::with_fingerprint(kind, Fingerprint::of::<T>(), len)
    }

    /// The layout of a `kind` object of `len` elements described by `fp`.
    pub fn with_fingerprint(kind: ObjectKind, fp: Fingerprint, len: usize) -> Result<Self> {
        Self::from_parts(kind, fp, len as u64).map_err(|reason| Error::InvalidSize {
            requested: len as u64,
            reason,
        })
    }

    /// Recomputes a layout from header fields; `Err` says which is unusable.
    fn from_parts(kind: ObjectKind, fp: Fingerprint, len: u64) -> Result<Self, &'static str> {
        if len == 0 {
            return Err("length must be at least 1");
        }
        if len > kind.max_len() {
            return Err("length above the largest its kind allows");
        }
        let align = fp.align as usize;
        if !align.is_power_of_two() {
            return Err("element alignment is not a power of two");
        }
        if fp.size == u32::MAX || !(fp.size as usize).is_multiple_of(align) {
            return Err("element size is not a multiple of its alignment");
        }
        let data_offset = kind.data_offset(align);
        let total_size = usize::try_from(len)
            .ok()
            .and_then(|n| n.checked_mul(fp.size as usize))
            .and_then(|bytes| bytes.checked_add(data_offset))
            .filter(|&t| t <= isize::MAX as usize / 2)
            .ok_or("size overflows the address space")?;
        Ok(ObjectLayout {
            kind,
            fingerprint: fp,
            len,
            data_offset,
            total_size,
            align: align.max(HEADER_SIZE),
        })
    }
}

/// The header as it lies in shared memory. Never referenced in place: it is
/// written with a volatile write and read with a volatile read, and its
/// `ready` word is reached through an atomic.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawHeader {
    magic: u64,
    ready: u32,
    kind: u32,
    elem_size: u32,
    elem_align: u32,
    type_hash: u64,
    len: u64,
    total_size: u64,
    data_offset: u32,
    reserved: u32,
    checksum: u64,
}

const _: () = assert!(size_of::<RawHeader>() == HEADER_SIZE);

impl RawHeader {
    fn for_layout(l: &ObjectLayout) -> Self {
        let mut h = RawHeader {
            magic: MAGIC,
            ready: 0,
            kind: l.kind as u32,
            elem_size: l.fingerprint.size,
            elem_align: l.fingerprint.align,
            type_hash: l.fingerprint.type_hash,
            len: l.len,
            total_size: l.total_size as u64,
            data_offset: l.data_offset as u32,
            reserved: 0,
            checksum: 0,
        };
        h.checksum = h.compute_checksum();
        h
    }

    fn compute_checksum(&self) -> u64 {
        let mut h = FNV_OFFSET;
        for word in [
            self.magic,
            u64::from(self.kind),
            u64::from(self.elem_size),
            u64::from(self.elem_align),
            self.type_hash,
            self.len,
            self.total_size,
            u64::from(self.data_offset),
            u64::from(self.reserved),
        ] {
            h = fnv1a(&word.to_le_bytes(), h);
        }
        h
    }
}

/// Access to the `ready` word of the header at `hdr`.
///
/// # Safety
///
/// `hdr` must be valid for reads and writes of `HEADER_SIZE` bytes, 8-aligned,
/// for the returned lifetime.
#[cfg(not(loom))]
unsafe fn ready_word<'a>(hdr: *mut u8) -> &'a crate::loom::atomic::AtomicU32 {
    // SAFETY: `ready` is a u32 at offset 8 of a live, 8-aligned header (caller).
    unsafe { crate::loom::atomic::AtomicU32::from_ptr(hdr.add(8).cast::<u32>()) }
}

/// Claims the empty header at `hdr`, writes the fields of `layout`, and
/// returns; the caller initialises the payload and then calls [`publish`].
///
/// Fails with `AlreadyExists` when something was placed here before.
///
/// # Safety
///
/// `hdr` must be 64-aligned and valid for reads and writes of
/// `layout.total_size` bytes.
#[cfg(not(loom))]
pub(crate) unsafe fn claim(hdr: *mut u8, offset: u64, layout: &ObjectLayout) -> Result<()> {
    use crate::loom::atomic::Ordering;
    // SAFETY: forwarded from the caller.
    let ready = unsafe { ready_word(hdr) };
    // Relaxed: the claim only needs to be exclusive; publication is `publish`.
    if ready
        .compare_exchange(0, READY_BUSY, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return Err(Error::AlreadyExists {
            what: format!("an object at offset {offset}"),
        });
    }
    let h = RawHeader::for_layout(layout);
    // Write every field but `ready` (which we own now).
    // SAFETY: `hdr` is valid and aligned (caller); the fields are plain bytes.
    unsafe {
        let dst = hdr.cast::<RawHeader>();
        ptr::write_volatile(ptr::addr_of_mut!((*dst).magic), h.magic);
        ptr::write_volatile(ptr::addr_of_mut!((*dst).kind), h.kind);
        ptr::write_volatile(ptr::addr_of_mut!((*dst).elem_size), h.elem_size);
        ptr::write_volatile(ptr::addr_of_mut!((*dst).elem_align), h.elem_align);
        ptr::write_volatile(ptr::addr_of_mut!((*dst).type_hash), h.type_hash);
        ptr::write_volatile(ptr::addr_of_mut!((*dst).len), h.len);
        ptr::write_volatile(ptr::addr_of_mut!((*dst).total_size), h.total_size);
        ptr::write_volatile(ptr::addr_of_mut!((*dst).data_offset), h.data_offset);
        ptr::write_volatile(ptr::addr_of_mut!((*dst).reserved), h.reserved);
        ptr::write_volatile(ptr::addr_of_mut!((*dst).checksum), h.checksum);
    }
    Ok(())
}

/// Publishes a header claimed with [`claim`] whose payload is initialised.
///
/// # Safety
///
/// As for [`claim`], which must have succeeded on `hdr`.
#[cfg(not(loom))]
pub(crate) unsafe fn publish(hdr: *mut u8) {
    use crate::loom::atomic::Ordering;
    // SAFETY: forwarded from the caller.
    let ready = unsafe { ready_word(hdr) };
    // SYNC: Release pairs with the Acquire load in `validate`: an attacher
    // that sees READY sees every header field and the initial payload.
    ready.store(READY, Ordering::Release);
}

/// Validates the header at `offset` of a segment of `segment_size` bytes
/// mapped at `base`, against what the caller expects.
///
/// `expected_len` of `None` accepts any length. Returns the layout recomputed
/// from the (validated) header.
///
/// # Safety
///
/// `base` must be valid for reads of `segment_size` bytes and 64-aligned.
#[cfg(not(loom))]
pub(crate) unsafe fn validate(
    base: *mut u8,
    segment_size: usize,
    offset: u64,
    kind: ObjectKind,
    fingerprint: Expect,
    expected_len: Option<u64>,
) -> Result<ObjectLayout> {
    use crate::loom::atomic::Ordering;
    let out_of_bounds = |end: u64| Error::OutOfBounds {
        offset,
        end,
        segment_size: segment_size as u64,
        align: HEADER_SIZE as u64,
    };
    let start = usize::try_from(offset).map_err(|_| out_of_bounds(u64::MAX))?;
    let hdr_end = start
        .checked_add(HEADER_SIZE)
        .filter(|&e| e <= segment_size);
    if hdr_end.is_none() || start % HEADER_SIZE != 0 {
        return Err(out_of_bounds(offset.saturating_add(HEADER_SIZE as u64)));
    }
    // SAFETY: start..start+64 lies inside the mapping (checked above), and is
    // 64-aligned since `base` is.
    let hdr = unsafe { base.add(start) };
    // SAFETY: as above.
    let ready = unsafe { ready_word(hdr) }.load(Ordering::Acquire);
    // SYNC: this Acquire pairs with the Release store in `publish`.
    match ready {
        0 | READY_BUSY => return Err(Error::NotReady { offset }),
        READY => {}
        r if r & 0xFFFF_0000 == READY_TAG => {
            return Err(Error::VersionMismatch {
                supported: LAYOUT_VERSION,
                found: r & 0xFFFF,
            });
        }
        _ => {
            return Err(Error::Corrupted {
                offset,
                reason: "ready word holds garbage",
            });
        }
    }
    // SAFETY: in bounds and aligned (above); a volatile copy, so a concurrent
    // scribbler can only change what we read, not make us read elsewhere.
    let h: RawHeader = unsafe { ptr::read_volatile(hdr.cast::<RawHeader>()) };
    let corrupted = |reason| Error::Corrupted { offset, reason };
    if h.magic != MAGIC {
        return Err(corrupted("bad magic"));
    }
    if h.checksum != h.compute_checksum() {
        return Err(corrupted("checksum mismatch"));
    }
    let found_kind = ObjectKind::from_u32(h.kind).ok_or(corrupted("unknown object kind"))?;
    if found_kind != kind {
        return Err(Error::KindMismatch {
            expected: kind,
            found: found_kind,
        });
    }
    let found_fp = Fingerprint {
        size: h.elem_size,
        align: h.elem_align,
        type_hash: h.type_hash,
    };
    if !fingerprint.accepts(found_fp) {
        return Err(Error::LayoutMismatch {
            expected: fingerprint.shown(found_fp),
            found: found_fp,
        });
    }
    let layout = ObjectLayout::from_parts(found_kind, found_fp, h.len).map_err(corrupted)?;
    if layout.total_size as u64 != h.total_size
        || layout.data_offset as u64 != u64::from(h.data_offset)
    {
        return Err(corrupted("size fields disagree with kind, type and length"));
    }
    if start % layout.align != 0 {
        return Err(corrupted("object misaligned for its element type"));
    }
    let end = start.checked_add(layout.total_size);
    if end.is_none_or(|e| e > segment_size) {
        return Err(corrupted("object extends past the end of its segment"));
    }
    if let Some(want) = expected_len
        && want != h.len
    {
        return Err(Error::LengthMismatch {
            expected: want,
            found: h.len,
        });
    }
    Ok(layout)
}
