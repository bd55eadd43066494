//! Lock words and their algorithms: state only, no OS calls but through
//! [`futex::Waiter`], no mappings, so loom can model them on heap memory.

pub mod barrier;
pub mod condvar;
pub mod event;
pub mod futex;
pub mod robust;
pub mod semaphore;
