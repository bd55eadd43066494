//! What this crate does around `fork`: one set of `pthread_atfork` handlers,
//! registered on first use in a way that a concurrent `fork` cannot wedge,
//! and [`ForkLock`], the spin lock of the crate's process-local tables.
//!
//! * prepare: take every [`ForkLock`] that has been used in this process
//!   (the table of live objects in `shm/ranges.rs`, the table of started
//!   children in `process/registry.rs`), so no child inherits one locked by
//!   a thread that does not exist in the child;
//! * parent: release them;
//! * child: release them, forget this thread's and this process's cached
//!   identity (TID, pid and start stamps, `sys/thread.rs`): the child's one
//!   thread has a new TID; then run the child hooks registered with
//!   [`on_child`] (the pipe ends record the child as a holder of every end
//!   it inherited).
//!
//! The locks register themselves here on first use (a hook list), so this
//! module names none of the tables and depends on nothing above it. The
//! list has its own spin lock, which the prepare handler holds until the
//! fork is done: a lock cannot register (and so be taken) between the
//! handler's walk of the list and the fork.
//!
//! Registration of the handlers is not a `std::sync::Once`: a child forked
//! while another thread ran the `Once` would find it "in progress" forever.
//! Instead a word records who is registering (a pid) or that registration
//! is done. The child handler marks it done in every child of a registered
//! parent; a child that finds another process's pid there knows the parent
//! had not finished (glibc serialises `pthread_atfork` with `fork`, so the
//! handlers were either fully registered before the fork, and ran, or not
//! at all) and registers itself.

use crate::loom::UnsafeCell;
use crate::loom::atomic::{AtomicPtr, AtomicU32, Ordering};

/// Registration finished in this process.
const DONE: u32 = u32::MAX;

/// 0: nobody registered yet; a pid: that process is registering; `DONE`.
static STATE: AtomicU32 = AtomicU32::new(0);

/// The most [`ForkLock`]s a process can use (the crate has two).
const MAX_HOOKS: usize = 8;

/// The lock words of the [`ForkLock`]s used so far, in registration order;
/// `HOOK_COUNT` of them are set. Written under `HOOK_LOCK`.
static HOOKS: [AtomicPtr<AtomicU32>; MAX_HOOKS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_HOOKS];
static HOOK_COUNT: AtomicU32 = AtomicU32::new(0);
/// Guards `HOOKS`; held by the prepare handler until the fork is done.
static HOOK_LOCK: AtomicU32 = AtomicU32::new(0);

/// The most child hooks ([`on_child`]) a process can have (the crate has
/// one).
const MAX_CHILD_HOOKS: usize = 4;

/// The child hooks registered so far (`fn()` pointers),
/// `CHILD_HOOK_COUNT` of them. Written under `HOOK_LOCK`.
static CHILD_HOOKS: [AtomicPtr<()>; MAX_CHILD_HOOKS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_CHILD_HOOKS];
static CHILD_HOOK_COUNT: AtomicU32 = AtomicU32::new(0);

/// Has `hook` run in every child forked from now on, in the child handler,
/// after the [`ForkLock`]s are released (so it may take one) and the
/// cached identities forgotten. A hook runs in a child of a possibly
/// multi-threaded parent before `fork` returns there: it must not allocate
/// or take any lock but a `ForkLock`. Registering the same hook twice keeps
/// one.
pub(crate) fn on_child(hook: fn()) {
    ensure_handlers();
    let addr = hook as *mut ();
    spin_acquire(&HOOK_LOCK);
    let n = CHILD_HOOK_COUNT.load(Ordering::Relaxed) as usize;
    let known = CHILD_HOOKS[..n]
        .iter()
        .any(|h| h.load(Ordering::Relaxed) == addr);
    if !known {
        if n >= MAX_CHILD_HOOKS {
            spin_release(&HOOK_LOCK);
            panic!("more child hooks than MAX_CHILD_HOOKS");
        }
        CHILD_HOOKS[n].store(addr, Ordering::Relaxed);
        CHILD_HOOK_COUNT.store(n as u32 + 1, Ordering::Relaxed);
    }
    // SYNC: the Release store in `spin_release` publishes the list to the
    // prepare handler, which takes HOOK_LOCK before the fork.
    spin_release(&HOOK_LOCK);
}

/// Takes a spin word (spinning, then yielding).
fn spin_acquire(word: &AtomicU32) {
    let mut spins = 0u32;
    // SYNC: Acquire pairs with the Release store in `spin_release`.
    while word
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

/// Releases a spin word.
fn spin_release(word: &AtomicU32) {
    // SYNC: Release pairs with the Acquire CAS in `spin_acquire`.
    word.store(0, Ordering::Release);
}

/// The registered lock words, `HOOK_COUNT` of them. Call with `HOOK_LOCK`
/// held.
fn hooks() -> impl DoubleEndedIterator<Item = &'static AtomicU32> {
    let n = HOOK_COUNT.load(Ordering::Relaxed) as usize;
    HOOKS[..n].iter().map(|h| {
        // SAFETY: every pointer stored in HOOKS comes from a
        // `&'static ForkLock`'s lock word (`ForkLock::register`).
        unsafe { &*h.load(Ordering::Relaxed) }
    })
}

extern "C" fn prepare() {
    spin_acquire(&HOOK_LOCK);
    for word in hooks() {
        spin_acquire(word);
    }
}

extern "C" fn parent() {
    for word in hooks().rev() {
        spin_release(word);
    }
    spin_release(&HOOK_LOCK);
}

extern "C" fn child() {
    // The handlers are registered in this child's address space too.
    STATE.store(DONE, Ordering::Release);
    for word in hooks().rev() {
        spin_release(word);
    }
    // The hooks, read while the list is still ours (the prepare handler
    // took HOOK_LOCK before the fork, so this copy is whole); they run
    // after the release, since a hook may take a `ForkLock`, whose first
    // use registers it under HOOK_LOCK.
    let mut hooks = [std::ptr::null_mut::<()>(); MAX_CHILD_HOOKS];
    let n = CHILD_HOOK_COUNT.load(Ordering::Relaxed) as usize;
    for (to, from) in hooks.iter_mut().zip(&CHILD_HOOKS[..n]) {
        *to = from.load(Ordering::Relaxed);
    }
    spin_release(&HOOK_LOCK);
    crate::sys::thread::forget_identity();
    for &addr in &hooks[..n] {
        // SAFETY: every address in CHILD_HOOKS came from a `fn()` in
        // `on_child`.
        let hook: fn() = unsafe { std::mem::transmute::<*mut (), fn()>(addr) };
        hook();
    }
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
                    // long as the program; they only touch this module's
                    // statics and this thread's cached identity.
                    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
                    // SYNC: Release pairs with the Acquire loads above.
                    STATE.store(DONE, Ordering::Release);
                    return;
                }
            }
        }
    }
}

/// In debug builds, catches a `ForkLock` taken while this thread holds one:
/// the prepare handler takes them all in registration order, so nesting two
/// could deadlock against a concurrent `fork`.
#[cfg(debug_assertions)]
struct Nesting;

#[cfg(debug_assertions)]
thread_local! {
    static HOLDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(debug_assertions)]
impl Nesting {
    fn enter() -> Nesting {
        let nested = HOLDING.try_with(|h| h.replace(true)).unwrap_or(false);
        assert!(!nested, "a ForkLock taken while another is held");
        Nesting
    }
}

#[cfg(debug_assertions)]
impl Drop for Nesting {
    fn drop(&mut self) {
        let _ = HOLDING.try_with(|h| h.set(false));
    }
}

/// A spin lock around process-local data, held only for short table
/// updates, that the prepare handler takes around `fork` (see the module
/// docs): a `std::sync::Mutex` cannot be taken in one C callback and released
/// in another. Only for statics, and never held while taking another one
/// (the prepare handler takes them all in registration order).
pub(crate) struct ForkLock<T> {
    locked: AtomicU32,
    /// 1 once `locked` is in the hook list.
    registered: AtomicU32,
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
            registered: AtomicU32::new(0),
            data: UnsafeCell::new(data),
        }
    }

    /// Puts this lock in the hook list, once.
    #[cold]
    fn register(&'static self) {
        spin_acquire(&HOOK_LOCK);
        if self.registered.load(Ordering::Relaxed) == 0 {
            let n = HOOK_COUNT.load(Ordering::Relaxed) as usize;
            if n >= MAX_HOOKS {
                // A programming error of this crate (a new table without a
                // larger list); release the list first, so that forks and
                // other tables go on working.
                spin_release(&HOOK_LOCK);
                panic!("more ForkLocks than MAX_HOOKS");
            }
            HOOKS[n].store(std::ptr::from_ref(&self.locked).cast_mut(), Ordering::Relaxed);
            HOOK_COUNT.store(n as u32 + 1, Ordering::Relaxed);
            self.registered.store(1, Ordering::Release);
        }
        // SYNC: the Release store in `spin_release` publishes the list to
        // the next holder of HOOK_LOCK (the prepare handler among them).
        spin_release(&HOOK_LOCK);
    }

    /// Runs `f` on the data under the lock. `f` must not take any
    /// `ForkLock`.
    pub(crate) fn with<R>(&'static self, f: impl FnOnce(&mut T) -> R) -> R {
        ensure_handlers();
        // SYNC: Acquire pairs with the Release store in `register`.
        if self.registered.load(Ordering::Acquire) == 0 {
            self.register();
        }
        /// Releases the lock however `f` ends.
        struct Held<'a>(&'a AtomicU32);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                spin_release(self.0);
            }
        }
        #[cfg(debug_assertions)]
        let _nesting = Nesting::enter();
        spin_acquire(&self.locked);
        let _held = Held(&self.locked);
        // SAFETY: we hold the lock, so no other reference to the data
        // exists; the reference does not outlive the call.
        f(unsafe { &mut *self.data.get() })
    }
}
