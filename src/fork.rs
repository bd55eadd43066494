//! What this crate does around `fork`: one set of `pthread_atfork` handlers,
//! registered on first use in a way that a concurrent `fork` cannot wedge.
//!
//! * prepare: take the table of live objects (`shm/ranges.rs`), so no child
//!   inherits it locked by a thread that does not exist in the child;
//! * parent: release it;
//! * child: release it, and forget this thread's cached identity (TID and
//!   start stamp, `sync/owner.rs`): the child's one thread has a new TID.
//!
//! Registration is not a `std::sync::Once`: a child forked while another
//! thread ran the `Once` would find it "in progress" forever. Instead a word
//! records who is registering (a pid) or that registration is done. The
//! child handler marks it done in every child of a registered parent; a
//! child that finds another process's pid there knows the parent had not
//! finished (glibc serialises `pthread_atfork` with `fork`, so the handlers
//! were either fully registered before the fork, and ran, or not at all) and
//! registers itself.

use crate::loom::atomic::{AtomicU32, Ordering};

/// Registration finished in this process.
const DONE: u32 = u32::MAX;

/// 0: nobody registered yet; a pid: that process is registering; `DONE`.
static STATE: AtomicU32 = AtomicU32::new(0);

extern "C" fn prepare() {
    crate::shm::ranges::lock_for_fork();
}

extern "C" fn parent() {
    crate::shm::ranges::unlock_after_fork();
}

extern "C" fn child() {
    // The handlers are registered in this child's address space too.
    STATE.store(DONE, Ordering::Release);
    crate::shm::ranges::unlock_after_fork();
    crate::sync::owner::forget_identity();
}

/// Makes sure the fork handlers are registered in this process. Cheap (one
/// load) once they are.
#[inline]
pub(crate) fn ensure_handlers() {
    // SYNC: Acquire pairs with the Release stores of DONE below and in
    // `child`.
    if STATE.load(Ordering::Acquire) != DONE {
        register_slow();
    }
}

#[cold]
fn register_slow() {
    let me = std::process::id();
    loop {
        match STATE.load(Ordering::Acquire) {
            DONE => return,
            // Another thread of this process is registering: wait for it.
            p if p == me => std::thread::yield_now(),
            // 0, or a registration our parent had not finished when it
            // forked us: ours to do.
            seen => {
                if STATE
                    .compare_exchange(seen, me, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    // SAFETY: registers `extern "C"` functions that live as
                    // long as the program; they only touch this crate's
                    // process-local state.
                    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
                    // SYNC: Release pairs with the Acquire loads above.
                    STATE.store(DONE, Ordering::Release);
                    return;
                }
            }
        }
    }
}
