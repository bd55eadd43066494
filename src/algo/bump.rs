//! Lock-free bump allocation from a shared offset.
//!
//! Every memfd segment the arena makes starts with a segment header whose
//! `next` word is the offset of the first free byte. Reserving space is a CAS
//! loop on that word, so two processes that share the segment (a parent and a
//! forked child that both keep allocating from the parent's current chunk)
//! always get disjoint ranges. Space is never handed back: a segment is
//! reclaimed whole, by the kernel, once no process maps it.
//!
//! `next` lives in shared memory, so a peer may scribble over it. The loop
//! trusts it only as far as the bounds check: garbage can make allocations
//! overlap (wrong results) or fail (a new segment), never escape `limit`.

use crate::loom::atomic::{AtomicU64, Ordering};

/// Reserves `size` bytes aligned to `align` (a power of two) below `limit`,
/// returning the start offset, or `None` if they do not fit.
pub fn bump(next: &AtomicU64, size: u64, align: u64, limit: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    // Relaxed throughout: all read-modify-writes of one word are totally
    // ordered, which is all disjointness needs. What is placed in the range
    // is published separately (the object header's ready word).
    let mut cur = next.load(Ordering::Relaxed);
    loop {
        let start = cur.checked_next_multiple_of(align)?;
        let end = start.checked_add(size).filter(|&e| e <= limit)?;
        match next.compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Some(start),
            // Another allocator moved `next`: retry from its value.
            Err(seen) => cur = seen,
        }
    }
}
