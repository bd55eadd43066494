//! Process-shared synchronisation: the typed handles (`Mutex`, `Lock`,
//! `RLock`, `Condition`, `Semaphore`, `BoundedSemaphore`, `Event`,
//! `Barrier`) placed in shared memory, over the lock words of `algo/`; and
//! the locked data, `Value` and `Array`, which sit above the lock they
//! contain.

pub(crate) mod array;
pub(crate) mod barrier;
pub(crate) mod bounded_semaphore;
pub(crate) mod condition;
pub(crate) mod event;
pub(crate) mod lock;
pub(crate) mod lock_word;
pub(crate) mod mutex;
pub(crate) mod poison;
pub(crate) mod rlock;
pub(crate) mod semaphore;
pub(crate) mod value;
