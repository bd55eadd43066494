//! Placing objects in segments and attaching to them: [`Placed`] (one
//! validated object), [`Place`] (where a new one goes), and
//! [`SharedObject`], the one contract every typed handle implements, which
//! gives them all the same `attach`, `open_at`, `descriptor` and `serde`.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::loom::atomic::{AtomicU32, AtomicU64};
use crate::shm::arena::{self, CHUNK_SIZE, bump_in};
use crate::shm::descriptor::Descriptor;
use crate::shm::header::{self, Expect, Fingerprint, HEADER_SIZE, ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::ranges::{self, Registration};
use crate::shm::segment::{SEGMENT_HEADER_SIZE, Segment};

/// The crate-private contract of a typed handle to an object placed in
/// shared memory: what it is (kind, element fingerprint, length, parts) and
/// how it is made from a validated [`Placed`]. The provided methods are the
/// one implementation of attaching (by descriptor or at an offset of a named
/// segment), describing, and `serde`, for every handle; [`SharedObject`] is
/// their public face. `pub` in a private module: users can name neither it
/// nor implement [`SharedObject`].
///
/// # Safety
///
/// [`KIND`](Self::KIND), [`expect`](Self::expect) and
/// [`LEN`](Self::LEN) must pin down the layout that
/// [`from_placed`](Self::from_placed) and every method of the handle read
/// and write through the object: `from_placed` is handed any object whose
/// header validated against them, whatever its creator was, and its
/// accesses must stay inside that layout.
pub unsafe trait Object: Sized {
    /// The kind recorded in the header.
    const KIND: ObjectKind;
    /// The length the header must record (`None`: any; `Some(1)` for the
    /// scalar kinds).
    const LEN: Option<u64> = Some(1);
    /// How many parts the object has (the two ends of a pipe); a
    /// descriptor names one.
    const PARTS: u32 = 1;

    /// The element fingerprint the header must record.
    fn expect() -> Expect;

    /// The handle over a validated object, for part `part` (below
    /// [`PARTS`](Self::PARTS)). The [`Token`] keeps it out of reach of
    /// code outside the crate, which can call it through a
    /// `SharedObject` bound but cannot make a token.
    fn from_placed(obj: Placed, part: u32, token: Token) -> Result<Self>;

    /// The object this handle uses.
    fn placed(&self) -> &Placed;

    /// The part of the object this handle uses.
    fn part(&self) -> u32 {
        0
    }

    /// Attaches to the object `d` names (see [`Descriptor`]).
    fn attach_object(d: &Descriptor) -> Result<Self> {
        let (obj, part) = Placed::attach_descriptor(d, Self::KIND, Self::expect(), Self::PARTS)?;
        Self::from_placed(obj, part, Token(()))
    }

    /// Opens the object placed at `offset` of a named segment (part 0).
    fn open_object(shm: &SharedMemory, offset: usize) -> Result<Self> {
        let obj = Placed::attach(
            Arc::clone(shm.segment()),
            offset as u64,
            Self::KIND,
            Self::expect(),
            Self::LEN,
        )?;
        Self::from_placed(obj, 0, Token(()))
    }

    /// A descriptor of this handle's object and part.
    fn describe(&self) -> Descriptor {
        self.placed().descriptor_of_part(self.part())
    }

    /// `serde`'s `Serialize`: the descriptor.
    fn serialize_object<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.describe().serialize(s)
    }

    /// `serde`'s `Deserialize`: attach to the descriptor. A failure is a
    /// serde error naming the cause, also kept aside for
    /// [`take_attach_error`] (postcard drops custom messages).
    fn deserialize_object<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let descriptor = Descriptor::deserialize(d)?;
        Self::attach_object(&descriptor).map_err(|e| {
            attach_failed(format!(
                "{}: {e}",
                short_type_name(std::any::type_name::<Self>())
            ))
        })
    }
}

/// Only this crate can make one: the argument that keeps
/// [`Object::from_placed`] (reachable through a `SharedObject` bound, as a
/// supertrait method) out of reach of code outside the crate, which could
/// otherwise wrap any object's bytes in any handle type.
pub struct Token(());

impl Token {
    /// A token, for the crate's own calls of `from_placed`.
    pub(crate) fn new() -> Token {
        Token(())
    }
}

/// What every shared handle can do to travel between processes: be
/// attached from a [`Descriptor`] (in this process or another), be opened at
/// an offset of a named [`SharedMemory`], and describe itself. Every handle
/// of the crate implements it (and only those: it is sealed), and also
/// implements `serde` as its descriptor, so a handle inside a spawned
/// child's entry, or any serde message, travels the same way.
///
/// Bring it into scope (`use multiproc::SharedObject;`, or
/// `use multiproc::prelude::*;`) to call its methods.
///
/// It is sealed: only the crate's handles implement it, and the contract
/// beneath it (which object bytes a handle may wrap) cannot be reached from
/// outside the crate:
///
/// ```compile_fail
/// // A handle of one type over another object's bytes: does not compile.
/// use multiproc::SharedObject;
/// fn rewrap<A: SharedObject, B: SharedObject>(a: &A) -> B {
///     B::from_placed(a.placed().clone(), 0).unwrap()
/// }
/// ```
///
/// # Errors
///
/// `attach` and `open_at` check the same things and fail the same ways; see
/// [`Descriptor`](crate::Descriptor#errors-of-attach-and-open_at).
///
/// # Examples
///
/// ```
/// use multiproc::{Descriptor, SharedObject, Value, pipe};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let v = Value::new(7u32)?;
/// let d: Descriptor = v.descriptor();
/// // ... in another process (a spawned child, an unrelated program):
/// let w = Value::<u32>::attach(&d)?;
/// assert_eq!(w.get(), 7);
/// assert!(Value::<u64>::attach(&d).is_err()); // another element type
///
/// // A pipe end's descriptor names its end.
/// let (a, b) = pipe::<String>()?;
/// let b2 = multiproc::Connection::<String>::attach(&b.descriptor())?;
/// a.send("to b".into())?;
/// assert_eq!(b2.recv()?, "to b");
/// # Ok(())
/// # }
/// ```
pub trait SharedObject: Object {
    /// Attaches to the object `descriptor` names, in this process or
    /// another.
    ///
    /// # Errors
    ///
    /// See [`Descriptor`](crate::Descriptor#errors-of-attach-and-open_at).
    fn attach(descriptor: &Descriptor) -> Result<Self> {
        Self::attach_object(descriptor)
    }

    /// Opens the object of this type placed at `offset` of a named segment
    /// (by the type's `create_at`), for unrelated processes.
    ///
    /// # Errors
    ///
    /// See [`Descriptor`](crate::Descriptor#errors-of-attach-and-open_at).
    fn open_at(shm: &SharedMemory, offset: usize) -> Result<Self> {
        Self::open_object(shm, offset)
    }

    /// A descriptor from which another process can
    /// [`attach`](crate::SharedObject::attach) (plain data: serde, or
    /// [`Descriptor::to_bytes`]).
    fn descriptor(&self) -> Descriptor {
        self.describe()
    }
}

impl<T: Object> SharedObject for T {}

/// `multiproc::sync::mutex::Mutex<u8>` as `Mutex<u8>`: the path of every
/// segment dropped, generic arguments included.
fn short_type_name(full: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            out.push_str(word.rsplit("::").next().unwrap_or(""));
            word.clear();
            out.push(c);
        }
    }
    out.push_str(word.rsplit("::").next().unwrap_or(""));
    out
}

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
pub(crate) fn attach_failed<E: serde::de::Error>(message: String) -> E {
    let _ = ATTACH_ERROR.try_with(|e| {
        e.borrow_mut().get_or_insert_with(|| message.clone());
    });
    E::custom(message)
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

/// A validated object in a mapped segment: the segment (kept alive), the
/// header's offset and the layout computed locally. Handles read the payload
/// through `data()` and never re-read the header.
#[derive(Clone)]
pub struct Placed {
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
            let (seg, offset) = arena::reserve(&layout, fresh)?;
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

    /// The `i`-th 64-bit word of the payload (state of a sync object).
    #[inline]
    pub(crate) fn state_u64(&self, i: usize) -> &AtomicU64 {
        assert!((i + 1) * 8 <= self.layout.total_size - self.layout.data_offset);
        // SAFETY: in bounds of the payload (asserted), 8-aligned (the payload
        // is 64-aligned); the mapping outlives `&self`.
        unsafe { AtomicU64::from_ptr(self.data().cast::<u64>().add(i)) }
    }

    /// The `i`-th 32-bit word of the payload (state of a sync object).
    #[inline]
    pub(crate) fn state_u32(&self, i: usize) -> &AtomicU32 {
        assert!((i + 1) * 4 <= self.layout.total_size - self.layout.data_offset);
        // SAFETY: in bounds of the payload (asserted), 4-aligned (the payload
        // is 64-aligned); the mapping outlives `&self`.
        unsafe { AtomicU32::from_ptr(self.data().cast::<u32>().add(i)) }
    }
}

