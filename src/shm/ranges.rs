//! The process-wide table of live typed objects, per file.
//!
//! Typed handles hand out Rust references into shared memory (a guard's
//! `&mut T`), so within this process no two live objects may overlap, and
//! nothing may write under one through another path: the compiler would
//! assume the bytes unchanged. Every placement and every attach registers its
//! byte range under the file's identity (device, inode), which holds however
//! many times the file is mapped; a range that overlaps a live object of
//! another layout is refused with [`Error::Overlap`], and attaching the same
//! object again shares its registration. `SharedMemory::read_at` and
//! `write_at` hold a claim on their range for the whole copy ([`RawAccess`]):
//! refused if it touches a live object, and while it is held no object can be
//! placed or attached over it. Raw claims may overlap each other (copies make
//! no references).
//!
//! Other processes are outside this table: what a peer writes can make
//! results wrong, never make this process break Rust's aliasing rules
//! (a peer's write is not a write by this program).
//!
//! The table is guarded by a spin lock held only for a map lookup or update,
//! and taken by the `pthread_atfork` prepare handler (`sys/atfork.rs`), so a forked
//! child never inherits it held by a thread that does not exist in the child.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};

use crate::error::{Error, Result};
use crate::sys::atfork::ForkLock;
use crate::loom::atomic::{AtomicU64, Ordering};
use crate::shm::header::ObjectLayout;

/// Identity of a file: (device, inode).
pub(crate) type FileId = (u64, u64);

struct Entry {
    end: usize,
    layout: ObjectLayout,
    reg: Weak<Registration>,
}

/// The live objects of one file, by start offset (never overlapping), and
/// the raw copies in progress over it.
#[derive(Default)]
struct FileEntry {
    objects: BTreeMap<usize, Entry>,
    raw: Vec<(usize, usize, u64)>,
}

impl FileEntry {
    fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.raw.is_empty()
    }

    fn raw_overlap(&self, start: usize, end: usize) -> Option<usize> {
        self.raw
            .iter()
            .find(|&&(s, e, _)| s < end && start < e)
            .map(|&(s, _, _)| s)
    }
}

type Table = HashMap<FileId, FileEntry>;

/// The table, behind the spin lock that `fork` takes in its prepare handler.
static TABLE: ForkLock<Option<Table>> = ForkLock::new(None);

/// Runs `f` on the table, under its lock. `f` must not take it again.
fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    TABLE.with(|t| f(t.get_or_insert_with(HashMap::new)))
}

/// A live object's claim on its byte range; dropped with the object's last
/// handle in this process.
#[derive(Debug)]
pub(crate) struct Registration {
    file: FileId,
    start: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let me: *const Registration = self;
        with_table(|t| {
            if let Some(file) = t.get_mut(&self.file) {
                // Remove our entry only: a new object may already sit there.
                if file
                    .objects
                    .get(&self.start)
                    .is_some_and(|e| std::ptr::eq(e.reg.as_ptr(), me))
                {
                    file.objects.remove(&self.start);
                }
                if file.is_empty() {
                    t.remove(&self.file);
                }
            }
        });
    }
}

/// The live entry overlapping `start..end`, if any; dead entries found on
/// the way are removed.
fn overlapping(
    objects: &mut BTreeMap<usize, Entry>,
    start: usize,
    end: usize,
) -> Option<(usize, &Entry)> {
    loop {
        // Entries never overlap each other, so only the last one starting
        // before `end` can reach into `start..end`.
        let (&s, e) = objects.range(..end.max(start + 1)).next_back()?;
        if e.end <= start {
            return None;
        }
        if e.reg.strong_count() == 0 {
            objects.remove(&s);
            continue;
        }
        return objects.get(&s).map(|e| (s, e));
    }
}

/// Registers the object of `layout` at `start` of `file`, or joins its live
/// registration if the very same object is registered already.
///
/// # Errors
///
/// [`Error::Overlap`] if the range overlaps another live object, or a raw
/// copy in progress.
pub(crate) fn register(
    file: FileId,
    start: usize,
    layout: &ObjectLayout,
) -> Result<Arc<Registration>> {
    let end = start + layout.total_size;
    let overlap = |other: usize| Error::Overlap {
        offset: start as u64,
        end: end as u64,
        other: other as u64,
    };
    with_table(|t| {
        let entry = t.entry(file).or_default();
        if let Some(other) = entry.raw_overlap(start, end) {
            return Err(overlap(other));
        }
        if let Some((s, e)) = overlapping(&mut entry.objects, start, end) {
            if s != start || e.end != end || e.layout != *layout {
                return Err(overlap(s));
            }
            if let Some(reg) = e.reg.upgrade() {
                return Ok(reg);
            }
            // The same object, whose last handle is being dropped right now:
            // replace its entry (that drop removes only its own entry).
        }
        let reg = Arc::new(Registration { file, start });
        entry.objects.insert(
            start,
            Entry {
                end,
                layout: *layout,
                reg: Arc::downgrade(&reg),
            },
        );
        Ok(reg)
    })
}

/// A raw copy's claim on a range of a file, held for the copy's duration:
/// no object can be placed or attached over it meanwhile.
pub(crate) struct RawAccess {
    file: FileId,
    id: u64,
}

impl Drop for RawAccess {
    fn drop(&mut self) {
        with_table(|t| {
            if let Some(file) = t.get_mut(&self.file) {
                file.raw.retain(|&(_, _, id)| id != self.id);
                if file.is_empty() {
                    t.remove(&self.file);
                }
            }
        });
    }
}

/// Claims `start..end` of `file` for a raw copy.
///
/// # Errors
///
/// [`Error::Overlap`] if the range touches a live object.
pub(crate) fn begin_raw(file: FileId, start: usize, end: usize) -> Result<RawAccess> {
    static NEXT_ID: AtomicU64 = AtomicU64::new(0);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    with_table(|t| {
        let entry = t.entry(file).or_default();
        if start < end
            && let Some((other, _)) = overlapping(&mut entry.objects, start, end)
        {
            return Err(Error::Overlap {
                offset: start as u64,
                end: end as u64,
                other: other as u64,
            });
        }
        entry.raw.push((start, end, id));
        Ok(RawAccess { file, id })
    })
}
