//! Every operating-system facility the layers above share, and nothing
//! else: the shared futex (`futex`), the heavy barrier of the asymmetric
//! fences (`membarrier`), who this thread is and whether a recorded thread
//! still lives (`thread`), what happens around `fork` (`atfork`), and a
//! clock all processes share (`clock`).
//!
//! Each module implements, for Linux, a trait or contract of the algorithm
//! cores in `algo/` (`Waiter`, `Liveness`), or is a leaf that the tables
//! above register into (`atfork`). Nothing here knows a shared object.

pub(crate) mod atfork;
pub(crate) mod clock;
pub(crate) mod futex;
pub(crate) mod spawn;
pub(crate) mod membarrier;
pub(crate) mod thread;
