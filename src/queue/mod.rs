//! Queues between processes: algorithm cores in [`raw`], typed handles
//! placed in shared memory next to them.

pub mod raw;

#[cfg(not(loom))]
mod membarrier;

#[cfg(not(loom))]
pub mod spsc;

#[cfg(not(loom))]
pub(crate) mod joinable;
#[cfg(not(loom))]
pub(crate) mod message;
#[cfg(not(loom))]
pub(crate) mod mpmc;
#[cfg(not(loom))]
pub(crate) mod pipe;
