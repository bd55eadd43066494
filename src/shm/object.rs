//! Placing objects in segments, attaching to them, and their descriptors.
//!
//! Small objects come from a per-thread *arena*: the thread's current 1 MiB
//! memfd chunk, carved by the shared bump pointer in its segment header. A
//! chunk that is full is left to the handles placed in it and unmapped when
//! the last of them drops; the thread starts a new chunk. Objects larger than a
//! quarter of a chunk get a memfd segment of their own. So 10,000 `Value<u64>`
//! (128 bytes each) live in two mappings, and a 1 GiB `Array` in one of its
//! own.
//!
//! The arena is thread-local rather than behind a process-wide lock so that a
//! forked child never inherits a lock held by another thread of its parent;
//! and because the bump pointer is in shared memory, a forked child that keeps
//! allocating from its parent's chunk gets ranges disjoint from the parent's.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::loom::atomic::AtomicU64;
use crate::loom::atomic::{AtomicPtr, Ordering};
use crate::algo::bump::bump;
use crate::shm::header::{self, Expect, Fingerprint, HEADER_SIZE, ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::ranges::{self, Registration};
use crate::shm::segment::{SEGMENT_HEADER_SIZE, Segment, SegmentRef};

/// Writes `open_at`, `attach` and `descriptor` for a typed handle whose impl
/// block also has `fn from_placed(Placed) -> Self` and
/// `fn placed(&self) -> &Placed`. `$len` is the length `open_at` insists on
/// (`None`: any); `$t` is the element type whose fingerprint the header
/// records (the user's `T`, or a sync object's private state struct).
macro_rules! attach_api {
    ($what:literal, $kind:expr, $len:expr, $t:ty) => {
        crate::shm::object::attach_api!(
            $what,
            $kind,
            $len,
            expect = crate::shm::header::Expect::Exact(crate::Fingerprint::of::<$t>())
        );
    };
    ($what:literal, $kind:expr, $len:expr, expect = $expect:expr) => {
        #[doc = concat!("Opens the `", $what, "` placed at `offset` of a named segment.")]
        ///
        /// # Errors
        ///
        /// [`Error::NotReady`](crate::Error::NotReady) if nothing is
        /// published there, [`Error::KindMismatch`](crate::Error::KindMismatch)
        /// or [`Error::LayoutMismatch`](crate::Error::LayoutMismatch) for
        /// another kind or element type,
        /// [`Error::Corrupted`](crate::Error::Corrupted) for a damaged header,
        /// [`Error::OutOfBounds`](crate::Error::OutOfBounds) for an offset
        /// that does not fit the segment.
        pub fn open_at(shm: &crate::SharedMemory, offset: usize) -> crate::Result<Self> {
            crate::shm::object::open_expecting(shm, offset, $kind, $expect, $len)
                .map(Self::from_placed)
        }

        #[doc = concat!("Attaches to the `", $what, "` a [`Descriptor`](crate::Descriptor) names, ")]
        /// in this process or another (see there).
        ///
        /// # Errors
        ///
        /// As [`open_at`](Self::open_at), plus
        /// [`Error::NotFound`](crate::Error::NotFound) if the segment is gone,
        /// [`Error::InvalidDescriptor`](crate::Error::InvalidDescriptor) if
        /// the descriptor names another file, and
        /// [`Error::LengthMismatch`](crate::Error::LengthMismatch).
        pub fn attach(descriptor: &crate::Descriptor) -> crate::Result<Self> {
            crate::shm::object::Placed::attach_descriptor(descriptor, $kind, $expect, 1)
                .map(|(placed, _)| Self::from_placed(placed))
        }

        /// A descriptor from which another process can
        /// [`attach`](Self::attach).
        pub fn descriptor(&self) -> crate::Descriptor {
            self.placed().descriptor()
        }
    };
}
pub(crate) use attach_api;

/// Size of an arena chunk.
pub(crate) const CHUNK_SIZE: usize = 1 << 20;

/// This thread's current chunk; on thread exit it is left in [`SPARE`] for
/// the next thread that needs one, so short-lived threads do not each keep a
/// chunk (and its descriptor) alive.
struct ChunkSlot(RefCell<Option<Arc<Segment>>>);

impl Drop for ChunkSlot {
    fn drop(&mut self) {
        if let Some(seg) = self.0.get_mut().take() {
            let old = SPARE.swap(Arc::into_raw(seg).cast_mut(), Ordering::AcqRel);
            if !old.is_null() {
                // SAFETY: SPARE only ever holds pointers from `Arc::into_raw`,
                // and the swap made this one ours.
                drop(unsafe { Arc::from_raw(old) });
            }
        }
    }
}

thread_local! {
    static CURRENT_CHUNK: ChunkSlot = const { ChunkSlot(RefCell::new(None)) };
}

/// A chunk left by an exited thread (an `Arc::into_raw` pointer, or null).
/// Lock-free, so a fork never inherits it locked.
static SPARE: AtomicPtr<Segment> = AtomicPtr::new(std::ptr::null_mut());

fn take_spare() -> Option<Arc<Segment>> {
    let p = SPARE.swap(std::ptr::null_mut(), Ordering::AcqRel);
    // SAFETY: SPARE only ever holds pointers from `Arc::into_raw`, and the
    // swap made this one ours.
    (!p.is_null()).then(|| unsafe { Arc::from_raw(p) })
}

/// Reserves room for `layout` in this thread's chunk (taking a spare or a new
/// chunk when needed; a new one if `fresh`).
fn arena_reserve(layout: &ObjectLayout, fresh: bool) -> Result<(Arc<Segment>, usize)> {
    let reserve = |cur: &mut Option<Arc<Segment>>| -> Result<(Arc<Segment>, usize)> {
        if fresh {
            *cur = None;
        } else if cur.is_none() {
            *cur = take_spare();
        }
        if let Some(seg) = cur.as_ref()
            && let Some(off) = bump_in(seg, layout)
        {
            return Ok((Arc::clone(seg), off));
        }
        let seg = Segment::create_memfd(CHUNK_SIZE)?;
        let off = bump_in(&seg, layout).ok_or(Error::InvalidSize {
            requested: layout.total_size as u64,
            reason: "object does not fit a fresh chunk",
        })?;
        *cur = Some(Arc::clone(&seg));
        Ok((seg, off))
    };
    // During thread-local teardown (an object made from a TLS destructor)
    // the slot is gone: give the object a chunk of its own.
    CURRENT_CHUNK
        .try_with(|slot| reserve(&mut slot.0.borrow_mut()))
        .unwrap_or_else(|_| reserve(&mut None))
}

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
/// by name.
///
/// # Examples
///
/// ```
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
    segment: SegmentRef,
    offset: u64,
    kind: ObjectKind,
    fingerprint: Fingerprint,
    len: u64,
    part: u32,
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

/// A validated object in a mapped segment: the segment (kept alive), the
/// header's offset and the layout computed locally. Handles read the payload
/// through `data()` and never re-read the header.
#[derive(Clone)]
pub(crate) struct Placed {
    seg: Arc<Segment>,
    offset: usize,
    layout: ObjectLayout,
    /// This object's entry in the table of live objects.
    _reg: Arc<Registration>,
}

impl fmt::Debug for Placed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Placed")
            .field("offset", &self.offset)
            .field("kind", &self.layout.kind)
            .field("len", &self.layout.len)
            .finish()
    }
}

impl Placed {
    /// Places a new object in this thread's arena (or a segment of its own if
    /// it is large). The payload is zero; call `publish` once it is set.
    pub(crate) fn alloc(layout: ObjectLayout) -> Result<Placed> {
        if layout.total_size + layout.align > CHUNK_SIZE / 4 {
            let seg = Segment::create_memfd(
                SEGMENT_HEADER_SIZE.next_multiple_of(layout.align) + layout.total_size,
            )?;
            let offset = bump_in(&seg, &layout).ok_or(Error::InvalidSize {
                requested: layout.total_size as u64,
                reason: "object does not fit its own segment",
            })?;
            // A fresh memfd reads as zeros: no need to zero the payload.
            return Placed::claim(seg, offset, layout);
        }
        // A chunk whose shared bump pointer a peer moved back can hand out a
        // range that is already in use; then this thread leaves that chunk
        // for a fresh one.
        let mut fresh = false;
        loop {
            let (seg, offset) = arena_reserve(&layout, fresh)?;
            match Placed::claim(seg, offset, layout) {
                Ok(placed) => {
                    // Chunk space is fresh (zero) unless a peer rewound the
                    // bump pointer; small objects are zeroed to be sure.
                    placed.zero_payload();
                    return Ok(placed);
                }
                Err(Error::Overlap { .. } | Error::AlreadyExists { .. }) if !fresh => fresh = true,
                Err(e) => return Err(e),
            }
        }
    }

    /// Registers the range and claims the header at `offset` of `seg`.
    fn claim(seg: Arc<Segment>, offset: usize, layout: ObjectLayout) -> Result<Placed> {
        // Register first: a range that overlaps a live object must not be
        // touched at all.
        let reg = ranges::register(seg.file_id(), offset, &layout)?;
        // SAFETY: the caller checked that offset..offset+total_size lies in
        // the mapping and is `layout.align`-aligned.
        unsafe { header::claim(seg.base().add(offset), offset as u64, &layout)? };
        Ok(Placed {
            seg,
            offset,
            layout,
            _reg: reg,
        })
    }

    /// Zeroes everything after the header (lock word and elements).
    fn zero_payload(&self) {
        // SAFETY: header_ptr + HEADER_SIZE .. + total_size lies inside the
        // mapping, and we hold the claim on this object (not yet published).
        unsafe {
            std::ptr::write_bytes(
                self.header_ptr().add(HEADER_SIZE),
                0,
                self.layout.total_size - HEADER_SIZE,
            )
        };
    }

    /// Places a new object at `offset` of a named segment, its payload
    /// zeroed; call `publish` once it is set.
    pub(crate) fn create_at(
        shm: &SharedMemory,
        offset: usize,
        layout: ObjectLayout,
    ) -> Result<Placed> {
        let seg = shm.segment();
        let end = offset.checked_add(layout.total_size);
        if !offset.is_multiple_of(layout.align) || end.is_none_or(|e| e > seg.len()) {
            return Err(Error::OutOfBounds {
                offset: offset as u64,
                end: end.map_or(u64::MAX, |e| e as u64),
                segment_size: seg.len() as u64,
                align: layout.align as u64,
            });
        }
        let placed = Placed::claim(Arc::clone(seg), offset, layout)?;
        placed.zero_payload();
        Ok(placed)
    }

    /// Publishes the header: from now on the object can be attached.
    pub(crate) fn publish(&self) {
        // SAFETY: `self` was made by `alloc`/`create_at`, which claimed the
        // header; the mapping is alive while `self.seg` is.
        unsafe { header::publish(self.header_ptr()) }
    }

    /// Attaches to the object at `offset` of `seg` after validating its
    /// header against the expected kind, type and (optionally) length.
    pub(crate) fn attach(
        seg: Arc<Segment>,
        offset: u64,
        kind: ObjectKind,
        fingerprint: Expect,
        len: Option<u64>,
    ) -> Result<Placed> {
        // SAFETY: the mapping is valid for `seg.len()` bytes and page-aligned.
        let layout =
            unsafe { header::validate(seg.base(), seg.len(), offset, kind, fingerprint, len)? };
        // `validate` checked that the object lies within the mapping.
        let offset = offset as usize;
        // The same object attached twice shares one registration; an object
        // inside another live one (a forged descriptor) is refused.
        let reg = ranges::register(seg.file_id(), offset, &layout)?;
        Ok(Placed {
            seg,
            offset,
            layout,
            _reg: reg,
        })
    }

    /// Attaches to the object a descriptor names, an object of `parts`
    /// parts (see [`Descriptor::part`]); returns the part too.
    pub(crate) fn attach_descriptor(
        d: &Descriptor,
        kind: ObjectKind,
        fingerprint: Expect,
        parts: u32,
    ) -> Result<(Placed, u32)> {
        if d.kind != kind {
            return Err(Error::KindMismatch {
                expected: kind,
                found: d.kind,
            });
        }
        if !fingerprint.accepts(d.fingerprint) {
            return Err(Error::LayoutMismatch {
                expected: fingerprint.shown(d.fingerprint),
                found: d.fingerprint,
            });
        }
        if d.part >= parts {
            return Err(Error::InvalidDescriptor {
                reason: format!("part {} of an object with {parts} part(s)", d.part),
            });
        }
        let seg = Segment::attach(&d.segment)?;
        // The header must hold exactly the descriptor's fingerprint.
        Placed::attach(
            seg,
            d.offset,
            kind,
            Expect::Exact(d.fingerprint),
            Some(d.len),
        )
        .map(|p| (p, d.part))
    }

    /// A descriptor another process can attach with.
    pub(crate) fn descriptor(&self) -> Descriptor {
        self.descriptor_of_part(0)
    }

    /// A descriptor of part `part` of this object.
    pub(crate) fn descriptor_of_part(&self, part: u32) -> Descriptor {
        Descriptor {
            segment: self.seg.segment_ref(),
            offset: self.offset as u64,
            kind: self.layout.kind,
            fingerprint: self.layout.fingerprint,
            len: self.layout.len,
            part,
        }
    }

    fn header_ptr(&self) -> *mut u8 {
        // SAFETY: `offset` lies within the mapping (checked when placed).
        unsafe { self.seg.base().add(self.offset) }
    }

    /// Pointer to element 0.
    #[inline]
    pub(crate) fn data(&self) -> *mut u8 {
        // SAFETY: offset + data_offset + len * size <= segment length (the
        // layout was computed locally and checked against the segment).
        unsafe { self.seg.base().add(self.offset + self.layout.data_offset) }
    }

    /// The element fingerprint of the validated layout.
    #[inline]
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        self.layout.fingerprint
    }

    /// Number of elements.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        // The layout's total size fits in the mapping, so the length fits usize.
        self.layout.len as usize
    }

    /// The robust lock word right after the header (kinds `Value`, `Array`,
    /// `Mutex`, `RLock`).
    #[inline]
    pub(crate) fn lock_word(&self) -> &AtomicU64 {
        debug_assert!(matches!(
            self.layout.kind,
            ObjectKind::Value | ObjectKind::Array | ObjectKind::Mutex | ObjectKind::RLock
        ));
        // SAFETY: these layouts reserve 8 bytes at HEADER_SIZE (64-aligned)
        // for the lock word; the mapping outlives `&self`.
        unsafe { AtomicU64::from_ptr(self.header_ptr().add(HEADER_SIZE).cast::<u64>()) }
    }

    /// The `i`-th 32-bit word of the payload (state of a sync object).
    #[inline]
    pub(crate) fn state_u32(&self, i: usize) -> &crate::loom::atomic::AtomicU32 {
        assert!((i + 1) * 4 <= self.layout.total_size - self.layout.data_offset);
        // SAFETY: in bounds of the payload (asserted), 4-aligned (the payload
        // is 64-aligned); the mapping outlives `&self`.
        unsafe { crate::loom::atomic::AtomicU32::from_ptr(self.data().cast::<u32>().add(i)) }
    }
}

/// Where a new object goes: this thread's arena or a chosen offset of a named
/// segment.
pub(crate) enum Place<'a> {
    Arena,
    At(&'a SharedMemory, usize),
}

impl Place<'_> {
    /// Places an object of `layout` (payload zeroed), runs `init` on its data
    /// pointer, then publishes it.
    pub(crate) fn make(self, layout: ObjectLayout, init: impl FnOnce(*mut u8)) -> Result<Placed> {
        let obj = match self {
            Place::Arena => Placed::alloc(layout)?,
            Place::At(shm, offset) => Placed::create_at(shm, offset, layout)?,
        };
        init(obj.data());
        obj.publish();
        Ok(obj)
    }
}

/// Opens the object at `offset` of a named segment, expecting `fingerprint`
/// of its elements.
pub(crate) fn open_expecting(
    shm: &SharedMemory,
    offset: usize,
    kind: ObjectKind,
    fingerprint: Expect,
    len: Option<u64>,
) -> Result<Placed> {
    Placed::attach(
        Arc::clone(shm.segment()),
        offset as u64,
        kind,
        fingerprint,
        len,
    )
}

/// Reserves room for `layout` in an arena segment, bounds-checked.
fn bump_in(seg: &Segment, layout: &ObjectLayout) -> Option<usize> {
    let off = bump(
        seg.next_word(),
        layout.total_size as u64,
        layout.align as u64,
        seg.len() as u64,
    )?;
    // `bump` keeps off + total_size <= seg.len(), so this fits usize; a
    // scribbled bump pointer must not hand out the segment header itself.
    usize::try_from(off)
        .ok()
        .filter(|&o| o >= SEGMENT_HEADER_SIZE)
}
