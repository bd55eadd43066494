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
//! `write_at` refuse ranges that touch a live object.
//!
//! Other processes are outside this table: what a peer writes can make
//! results wrong, never make this process break Rust's aliasing rules
//! (a peer's write is not a write by this program).
//!
//! The table is guarded by a spin lock held only for a map lookup or update,
//! and taken by a `pthread_atfork` prepare handler, so a forked child never
//! inherits it held by a thread that does not exist in the child.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Once, Weak};

use crate::error::{Error, Result};
use crate::loom::UnsafeCell;
use crate::loom::atomic::{AtomicU32, Ordering};
use crate::shm::header::ObjectLayout;

/// Identity of a file: (device, inode).
pub(crate) type FileId = (u64, u64);

struct Entry {
    end: usize,
    layout: ObjectLayout,
    reg: Weak<Registration>,
}

type Table = HashMap<FileId, BTreeMap<usize, Entry>>;

/// A spin lock that `fork` takes in its prepare handler.
struct ForkSafeLock {
    locked: AtomicU32,
    table: UnsafeCell<Option<Table>>,
}

// SAFETY: `table` is only reached through `with`, under `locked`.
unsafe impl Sync for ForkSafeLock {}

static TABLE: ForkSafeLock = ForkSafeLock {
    locked: AtomicU32::new(0),
    table: UnsafeCell::new(None),
};

impl ForkSafeLock {
    fn acquire(&self) {
        let mut spins = 0u32;
        // SYNC: Acquire pairs with the Release store in `release`.
        while self
            .locked
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    fn release(&self) {
        // SYNC: Release pairs with the Acquire CAS in `acquire`.
        self.locked.store(0, Ordering::Release);
    }

    fn with<R>(&self, f: impl FnOnce(&mut Table) -> R) -> R {
        static ATFORK: Once = Once::new();
        ATFORK.call_once(|| {
            // SAFETY: the handlers only take and release this spin lock.
            unsafe {
                libc::pthread_atfork(Some(fork_prepare), Some(fork_release), Some(fork_release))
            };
        });
        self.acquire();
        // SAFETY: we hold the lock; `f` cannot re-enter (no callbacks here
        // take the table), and the reference does not outlive the call.
        let r = f(unsafe { &mut *self.table.get() }.get_or_insert_with(HashMap::new));
        self.release();
        r
    }
}

extern "C" fn fork_prepare() {
    TABLE.acquire();
}

extern "C" fn fork_release() {
    TABLE.release();
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
        TABLE.with(|t| {
            if let Some(objects) = t.get_mut(&self.file) {
                // Remove our entry only: a new object may already sit there.
                if objects
                    .get(&self.start)
                    .is_some_and(|e| std::ptr::eq(e.reg.as_ptr(), me))
                {
                    objects.remove(&self.start);
                }
                if objects.is_empty() {
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
/// [`Error::Overlap`] if the range overlaps another live object.
pub(crate) fn register(
    file: FileId,
    start: usize,
    layout: &ObjectLayout,
) -> Result<Arc<Registration>> {
    let end = start + layout.total_size;
    TABLE.with(|t| {
        let objects = t.entry(file).or_default();
        if let Some((s, e)) = overlapping(objects, start, end) {
            if s == start
                && e.end == end
                && e.layout == *layout
                && let Some(reg) = e.reg.upgrade()
            {
                return Ok(reg);
            }
            return Err(Error::Overlap {
                offset: start as u64,
                end: end as u64,
                other: s as u64,
            });
        }
        let reg = Arc::new(Registration { file, start });
        objects.insert(
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

/// Checks that `start..end` of `file` touches no live object.
///
/// # Errors
///
/// [`Error::Overlap`] if it does.
pub(crate) fn check_free(file: FileId, start: usize, end: usize) -> Result<()> {
    if start >= end {
        return Ok(());
    }
    TABLE.with(|t| {
        match t
            .get_mut(&file)
            .and_then(|o| overlapping(o, start, end).map(|(s, _)| s))
        {
            Some(other) => Err(Error::Overlap {
                offset: start as u64,
                end: end as u64,
                other: other as u64,
            }),
            None => Ok(()),
        }
    })
}
