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

use std::fmt;
use std::ptr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Size of the object header, and the alignment of every object.
pub(crate) const HEADER_SIZE: usize = 64;
/// `b"MPROCOBJ"` read as a little-endian integer.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"MPROCOBJ");
/// The layout version this build writes and reads.
pub(crate) const LAYOUT_VERSION: u32 = 3;
/// High half of a published `ready` word.
const READY_TAG: u32 = 0x4D50_0000; // "MP"
/// The ready word of a header being initialised.
pub(crate) const READY_BUSY: u32 = 1;
/// The ready word of a published header.
pub(crate) const READY: u32 = READY_TAG | LAYOUT_VERSION;

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
    fn from_u32(v: u32) -> Option<Self> {
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

    /// The most elements an object of this kind may have. The rings' index
    /// arithmetic relies on capacities of at most their `MAX_CAPACITY`,
    /// which placing them checks; attaching must too, since a header for
    /// zero-sized elements can claim any length without its size
    /// overflowing.
    fn max_len(self) -> u64 {
        match self {
            ObjectKind::Spsc => crate::queue::spsc::MAX_CAPACITY as u64,
            ObjectKind::Mpmc => crate::queue::mpmc::Queue::<u8>::MAX_CAPACITY as u64,
            ObjectKind::Messages | ObjectKind::Joinable => {
                crate::queue::message::MAX_MESSAGES as u64
            }
            ObjectKind::Pipe => 2 * crate::queue::message::MAX_MESSAGES as u64,
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
            // Spsc: producer line (tail), wait line (eventcounts, closed
            // flag, fencing word), consumer line (head), a spacer line;
            // slots start on the line after. Tail and head
            // lie 128 bytes apart, so not even the adjacent-line prefetcher
            // pairs them.
            // Mpmc: the same four lines (tail, wait, head, spacer).
            ObjectKind::Spsc | ObjectKind::Mpmc | ObjectKind::Messages => 5 * HEADER_SIZE,
            // The unfinished-task line, then the four lines of a ring.
            ObjectKind::Joinable => 6 * HEADER_SIZE,
            // Two rings' four lines each (the ring from end 0 to end 1
            // first).
            ObjectKind::Pipe => 9 * HEADER_SIZE,
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
    /// is the slot's (chosen at creation, so attaching accepts any, see
    /// [`Expect::Slots`]).
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

/// What an attacher expects of the element fingerprint it finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
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

impl From<Fingerprint> for Expect {
    fn from(fp: Fingerprint) -> Self {
        Expect::Exact(fp)
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

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
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
