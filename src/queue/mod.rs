//! Queues between processes: the typed handles (`Queue`, `spsc`,
//! `MessageQueue`, `JoinableQueue`, `Pipe`) placed in shared memory, over
//! the ring algorithms of `algo/`.

pub mod spsc;

pub(crate) mod ends;
pub(crate) mod error;

pub(crate) mod joinable;
pub(crate) mod message;
pub(crate) mod mpmc;
pub(crate) mod pipe;
