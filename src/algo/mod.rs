//! The algorithm cores: every lock-free and blocking algorithm of the crate,
//! as operations on plain atomic words, with waiting and liveness injected
//! through traits ([`wait::Waiter`], [`robust::Liveness`]) and, for the
//! queues, the memory they run on (`RingMemory`, `QueueMemory`).
//!
//! Nothing here maps memory, opens a descriptor or makes a system call, so
//! the very code that ships runs in the loom models of `tests/loom_*.rs` on
//! heap memory: this module is the only part of the crate built under
//! `--cfg loom`, where it is public (hidden) for those models.

pub mod barrier;
pub mod bump;
pub mod condvar;
pub mod event;
pub mod eventcount;
pub mod holders;
pub mod mpmc;
pub mod robust;
pub mod semaphore;
pub mod spsc;
pub mod takers;
pub mod wait;
