//! Process-shared synchronisation: raw lock words and their algorithms in
//! [`raw`], typed handles placed in shared memory next to them.

pub mod raw;

#[cfg(not(loom))]
pub(crate) mod barrier;
#[cfg(not(loom))]
pub(crate) mod condition;
#[cfg(not(loom))]
pub(crate) mod event;
#[cfg(not(loom))]
pub(crate) mod mutex;
#[cfg(not(loom))]
pub(crate) mod owner;
#[cfg(not(loom))]
pub(crate) mod rlock;
#[cfg(not(loom))]
pub(crate) mod semaphore;
