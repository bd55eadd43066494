//! The heavy barrier of the queues' asymmetric fences: Linux
//! `membarrier(2)` with `MEMBARRIER_CMD_GLOBAL_EXPEDITED`, which runs a
//! full memory barrier on every CPU that is running a thread of a process
//! registered with `MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED` (threads that
//! are not running have passed through the scheduler's barriers).
//!
//! Checked on this project's machines (Linux 6.18, see ARCHITECTURE.md):
//! registration is per process (per address space), inherited by a `fork`ed
//! child and dropped by `exec`; the first registration takes about 0.6 µs,
//! later ones 0.25 µs; the barrier takes about 0.3 µs when no registered
//! process runs on another CPU and about 3.7 µs (an inter-processor
//! interrupt) when one does.
//!
//! The only system calls of the queues outside the futex.

use crate::loom::atomic::{AtomicU32, Ordering};
use rustix::thread::{MembarrierCommand, membarrier};

/// Registration not tried yet in this process.
const UNKNOWN: u32 = 0;
/// This process is registered.
const REGISTERED: u32 = 1;
/// The kernel refused (no `membarrier`, or a seccomp filter).
const REFUSED: u32 = 2;

/// This process's registration, as far as we know: inherited by a forked
/// child together with the kernel's own record (both are copied with the
/// address space), reset by `exec` together with it.
static STATE: AtomicU32 = AtomicU32::new(UNKNOWN);

/// Registers this process to receive heavy barriers (once; later calls read
/// one word). Returns whether it is registered.
#[inline]
pub(crate) fn register() -> bool {
    // SYNC: Acquire pairs with the Release store in `register_slow`: the
    // registration a thread saw recorded was done before.
    match STATE.load(Ordering::Acquire) {
        REGISTERED => true,
        REFUSED => false,
        _ => register_slow(),
    }
}

#[cold]
fn register_slow() -> bool {
    // Registering twice is harmless, so racing threads may both do it.
    let ok = membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok();
    // SYNC: Release pairs with the Acquire load in `register`.
    STATE.store(if ok { REGISTERED } else { REFUSED }, Ordering::Release);
    ok
}

/// A full memory barrier on every running thread of every registered
/// process, and on ours; `false` if the kernel refused.
pub(crate) fn heavy_barrier() -> bool {
    membarrier(MembarrierCommand::GlobalExpedited).is_ok()
}
