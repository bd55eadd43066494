//! Which pipe and channel ends this process holds: a process-local count of handles per
//! end, so that the end's shared [`HolderTable`] records this process from
//! its first handle to its last, and a forked child, which inherits the
//! handles, records itself too (in the atfork child hook).
//!
//! A handle owns an [`EndHold`]; creating, cloning, attaching or decoding a
//! handle makes one, dropping the handle drops it. The first hold of an end
//! in a process adds the process to the end's table, the last one's drop
//! takes it out. A process that cannot keep count (more than [`MAX_ENDS`]
//! ends held at once) marks the end's table as holding someone unknown, so
//! the other side never takes that end for gone.

use crate::algo::holders::HolderTable;
use crate::algo::robust::{Liveness, Owner};
use crate::sys::atfork::{ForkLock, on_child};
use crate::sys::thread::{ProcLiveness, process, process_prepared};

/// The most ends one process can keep count of at a time.
pub(crate) const MAX_ENDS: usize = 256;

/// One end this process holds: its table's address (0: a free entry) and
/// how many handles of it live here.
#[derive(Clone, Copy)]
struct Held {
    table: usize,
    handles: u32,
}

static ENDS: ForkLock<[Held; MAX_ENDS]> = ForkLock::new(
    [Held {
        table: 0,
        handles: 0,
    }; MAX_ENDS],
);

/// Liveness for the child hook, which must not allocate (`/proc` reads
/// do): nobody is dead, so the child takes a free slot or marks the table.
struct NobodyDies;

// SAFETY: never reports dead.
unsafe impl Liveness for NobodyDies {
    fn is_dead(&self, _: Owner) -> bool {
        false
    }
}

/// In a forked child: records the child as a holder of every end the
/// parent held when it forked (the child has copies of those handles).
fn child_hook() {
    let me = process();
    ENDS.with(|ends| {
        for e in ends.iter().filter(|e| e.handles > 0) {
            // SAFETY: an entry with handles names a table inside a mapping
            // those handles keep alive (inherited by this child).
            let table = unsafe { &*(e.table as *const HolderTable) };
            table.add(me, &NobodyDies);
        }
    });
}

/// One handle's share in this process's hold on an end.
#[derive(Debug)]
pub(crate) struct EndHold {
    /// The table's address; 0 if this process could not keep count (the
    /// table was marked instead).
    table: usize,
}

impl EndHold {
    /// A hold on the end whose holders `table` records. `table` must stay
    /// mapped for as long as the hold lives (the handle that owns the hold
    /// keeps the mapping, and drops the hold first).
    pub(crate) fn new(table: &HolderTable) -> EndHold {
        // Identity and its /proc checks now, so that a forked child finds
        // them cached (the child hook must not allocate).
        let me = process_prepared();
        on_child(child_hook);
        let addr = std::ptr::from_ref(table) as usize;
        let counted = ENDS.with(|ends| {
            if let Some(e) = ends.iter_mut().find(|e| e.table == addr && e.handles > 0) {
                e.handles += 1;
                return true;
            }
            match ends.iter_mut().find(|e| e.handles == 0) {
                Some(e) => {
                    *e = Held {
                        table: addr,
                        handles: 1,
                    };
                    table.add(me, &ProcLiveness);
                    true
                }
                None => false,
            }
        });
        if !counted {
            table.mark_unknown();
        }
        EndHold {
            table: if counted { addr } else { 0 },
        }
    }
}

impl Clone for EndHold {
    fn clone(&self) -> Self {
        if self.table == 0 {
            return EndHold { table: 0 };
        }
        // SAFETY: as in `drop`: our handle keeps the table mapped.
        EndHold::new(unsafe { &*(self.table as *const HolderTable) })
    }
}

impl Drop for EndHold {
    fn drop(&mut self) {
        if self.table == 0 {
            return;
        }
        let addr = self.table;
        let last = ENDS.with(|ends| {
            match ends.iter_mut().find(|e| e.table == addr && e.handles > 0) {
                Some(e) => {
                    e.handles -= 1;
                    e.handles == 0
                }
                // Not counted here: a hold made before a fork whose child
                // hook found no room cannot happen (the child inherits the
                // parent's entries), so this is unreachable in practice;
                // leave the table as it is.
                None => false,
            }
        });
        if last {
            // SAFETY: the handle that owns this hold still keeps the
            // mapping (it drops the hold before its memory).
            let table = unsafe { &*(addr as *const HolderTable) };
            table.remove(process());
        }
    }
}
