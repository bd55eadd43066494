//! What this crate does around `fork`: one set of `pthread_atfork` handlers,
//! registered on first use in a way that a concurrent `fork` cannot wedge.
//!
//! * prepare: take the table of live objects (`shm/ranges.rs`) and the table
//!   of started children (`process/registry.rs`), so no child inherits them
//!   locked by a thread that does not exist in the child;
//! * parent: release them;
//! * child: release them, and forget this thread's cached identity (TID and
//!   start stamp, `sync/owner.rs`): the child's one thread has a new TID.
//!
//! [`ForkLock`] is the spin lock such tables use.
//!
//! Registration is not a `std::sync::Once`: a child forked while another
//! thread ran the `Once` would find it "in progress" forever. Instead a word
//! records who is registering (a pid) or that registration is done. The
//! child handler marks it done in every child of a registered parent; a
//! child that finds another process's pid there knows the parent had not
//! finished (glibc serialises `pthread_atfork` with `fork`, so the handlers
//! were either fully registered before the fork, and ran, or not at all) and
//! registers itself.

use crate::loom::UnsafeCell;
use crate::loom::atomic::{AtomicU32, Ordering};

/// Registration finished in this process.
const DONE: u32 = u32::MAX;

/// 0: nobody registered yet; a pid: that process is registering; `DONE`.
static STATE: AtomicU32 = AtomicU32::new(0);

extern "C" fn prepare() {
    crate::shm::ranges::lock_for_fork();
    crate::process::registry::lock_for_fork();
}

extern "C" fn parent() {
    crate::process::registry::unlock_after_fork();
    crate::shm::ranges::unlock_after_fork();
}

extern "C" fn child() {
    // The handlers are registered in this child's address space too.
    STATE.store(DONE, Ordering::Release);
    crate::process::registry::unlock_after_fork();
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

/// A spin lock around process-local data, held only for short table
/// updates, that the prepare handler takes around `fork` (see the module
/// docs): a `std::sync::Mutex` cannot be taken in one C callback and released
/// in another.
pub(crate) struct ForkLock<T> {
    locked: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: `data` is only reached through `with`, under `locked`, so at most
// one thread at a time touches the `T`, which may move between threads.
unsafe impl<T: Send> Sync for ForkLock<T> {}

impl<T> ForkLock<T> {
    /// A lock around `data`.
    pub(crate) const fn new(data: T) -> Self {
        ForkLock {
            locked: AtomicU32::new(0),
            data: UnsafeCell::new(data),
        }
    }

    /// Takes the lock (spinning, then yielding).
    pub(crate) fn acquire(&self) {
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

    /// Releases the lock.
    pub(crate) fn release(&self) {
        // SYNC: Release pairs with the Acquire CAS in `acquire`.
        self.locked.store(0, Ordering::Release);
    }

    /// Runs `f` on the data under the lock. `f` must not take this lock
    /// again.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        ensure_handlers();
        /// Releases the lock however `f` ends.
        struct Held<'a, T>(&'a ForkLock<T>);
        impl<T> Drop for Held<'_, T> {
            fn drop(&mut self) {
                self.0.release();
            }
        }
        self.acquire();
        let _held = Held(self);
        // SAFETY: we hold the lock, so no other reference to the data
        // exists; the reference does not outlive the call.
        f(unsafe { &mut *self.data.get() })
    }
}
