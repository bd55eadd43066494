//! The per-thread arena that small objects are placed in: the thread's
//! current 1 MiB memfd chunk, carved by the shared bump pointer in its
//! segment header. A chunk that is full is left to the handles placed in
//! it and unmapped when the last of them drops; the thread starts a new
//! chunk. Objects larger than a quarter of a chunk get a memfd segment of
//! their own (see `Placed::alloc`). So 10,000 `Value<u64>` (128 bytes each)
//! live in two mappings, and a 1 GiB `Array` in one of its own.
//!
//! The arena is thread-local rather than behind a process-wide lock so that a
//! forked child never inherits a lock held by another thread of its parent;
//! and because the bump pointer is in shared memory, a forked child that keeps
//! allocating from its parent's chunk gets ranges disjoint from the parent's.

use std::cell::RefCell;
use std::sync::Arc;

use crate::algo::bump::bump;
use crate::error::{Error, Result};
use crate::loom::atomic::{AtomicPtr, Ordering};
use crate::shm::header::ObjectLayout;
use crate::shm::segment::{SEGMENT_HEADER_SIZE, Segment};

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
pub(crate) fn reserve(layout: &ObjectLayout, fresh: bool) -> Result<(Arc<Segment>, usize)> {
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

/// Reserves room for `layout` in an arena segment, bounds-checked.
pub(crate) fn bump_in(seg: &Segment, layout: &ObjectLayout) -> Option<usize> {
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
