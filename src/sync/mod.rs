//! Process-shared synchronisation: the typed handles (`Mutex`, `Lock`,
//! `RLock`, `Condition`, `Semaphore`, `BoundedSemaphore`, `Event`,
//! `Barrier`) placed in shared memory, over the lock words of `algo/`.

pub(crate) mod barrier;
pub(crate) mod condition;
pub(crate) mod event;
pub(crate) mod mutex;
pub(crate) mod rlock;
pub(crate) mod semaphore;
