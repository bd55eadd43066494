//! The only module that names `core` atomics or `loom`.
//!
//! Algorithm cores (`algo/`) use the types re-exported here, and the
//! shims below for what loom models differently from the hardware. A normal build gets `core::sync::atomic`; a build with
//! `RUSTFLAGS="--cfg loom"` gets loom's model-checked atomics, so the
//! `tests/loom_*.rs` models run the very code that ships. Code that casts
//! mmap'd bytes into atomics (everything under `shm/` that touches a mapping)
//! is not compiled under loom: loom's atomics have another layout and no
//! `from_ptr`.
//!
//! `clippy.toml` forbids the `core` atomic types everywhere else; the aliases
//! below are the sanctioned way in.
#![allow(clippy::disallowed_types)]

#[cfg(not(loom))]
pub(crate) mod atomic {
    pub use core::sync::atomic::{Ordering, compiler_fence, fence};
    /// 32-bit atomic (futex words).
    pub type AtomicU32 = core::sync::atomic::AtomicU32;
    /// 64-bit atomic (bump pointers, counters).
    pub type AtomicU64 = core::sync::atomic::AtomicU64;
    /// Atomic pointer (the arena's spare-chunk slot).
    pub type AtomicPtr<T> = core::sync::atomic::AtomicPtr<T>;
}

#[cfg(loom)]
pub(crate) mod atomic {
    pub use loom::sync::atomic::{Ordering, fence};
    /// 32-bit atomic (futex words), loom-modelled.
    pub type AtomicU32 = loom::sync::atomic::AtomicU32;
    /// 64-bit atomic (bump pointers, counters), loom-modelled.
    pub type AtomicU64 = loom::sync::atomic::AtomicU64;
}

/// Atomics of every integer width, for `AtomicValue<T>` over mapped memory.
/// Never loom-modelled (they live in mmap'd bytes), so they exist only in
/// normal builds.
#[cfg(not(loom))]
pub(crate) mod mapped {
    pub type AtomicI8 = core::sync::atomic::AtomicI8;
    pub type AtomicI16 = core::sync::atomic::AtomicI16;
    pub type AtomicI32 = core::sync::atomic::AtomicI32;
    pub type AtomicI64 = core::sync::atomic::AtomicI64;
    pub type AtomicIsize = core::sync::atomic::AtomicIsize;
    pub type AtomicU8 = core::sync::atomic::AtomicU8;
    pub type AtomicU16 = core::sync::atomic::AtomicU16;
    pub type AtomicU32 = core::sync::atomic::AtomicU32;
    pub type AtomicU64 = core::sync::atomic::AtomicU64;
    pub type AtomicUsize = core::sync::atomic::AtomicUsize;
}

/// Interior mutability for the process-local tables guarded by this crate's
/// own fork-safe spin lock (never in shared memory, never loom-modelled).
#[cfg(not(loom))]
pub(crate) type UnsafeCell<T> = core::cell::UnsafeCell<T>;

/// Spin-loop hint; under loom a yield, so spinning models terminate.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// A `SeqCst` load, for the reading half of a Dekker pair.
///
/// loom treats `SeqCst` loads as `Acquire` (tokio-rs/loom#180) and would
/// report lost wake-ups the real memory model rules out; under loom this is
/// a `fetch_add(0)`, which, like every read-modify-write, reads the newest
/// value, as a `SeqCst` load ordered after a `SeqCst` write in the single
/// total order does.
#[inline]
pub(crate) fn load_sc(word: &atomic::AtomicU32) -> u32 {
    #[cfg(not(loom))]
    return word.load(atomic::Ordering::SeqCst);
    #[cfg(loom)]
    return word.fetch_add(0, atomic::Ordering::SeqCst);
}

/// [`load_sc`] for a 64-bit word (the queues' positions and stamps).
#[inline]
pub(crate) fn load_sc64(word: &atomic::AtomicU64) -> u64 {
    #[cfg(not(loom))]
    return word.load(atomic::Ordering::SeqCst);
    #[cfg(loom)]
    return word.fetch_add(0, atomic::Ordering::SeqCst);
}

/// A `SeqCst` store of a word the other side reads with [`load_sc64`] /
/// [`load_sc`], done as a swap: on x86-64 a `SeqCst` store is the same
/// `xchg` instruction, and under loom, where those reads are
/// `fetch_add(0)`, loom keeps the modification order of a word total only
/// between read-modify-writes (a plain store racing a `fetch_add(0)` could
/// be ordered after it while the RMW read the older value).
#[inline]
pub(crate) fn store_sc64(word: &atomic::AtomicU64, value: u64) {
    word.swap(value, atomic::Ordering::SeqCst);
}
