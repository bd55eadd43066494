//! Python's `multiprocessing`, in Rust, on shared memory.
//!
//! `multiproc` puts typed data in memory that several processes map at once
//! and lets them work on it without copies or pickling:
//!
//! | type | Python | what it is |
//! |---|---|---|
//! | [`Value<T>`] | `multiprocessing.Value` | one `T` behind a process-shared lock |
//! | [`RawValue<T>`] | `multiprocessing.RawValue` | one `T`, no lock |
//! | [`Array<T>`] | `multiprocessing.Array` | `len` elements behind a lock, `memcpy`-speed bulk copies |
//! | [`RawArray<T>`] | `multiprocessing.RawArray` | `len` elements, no lock; disjoint writers need none |
//! | [`AtomicValue<T>`] | — | a lock-free shared integer (`fetch_add`, `compare_exchange`, ...) |
//! | [`SharedMemory`] | `multiprocessing.shared_memory.SharedMemory` | a named segment for unrelated processes |
//! | [`Descriptor`] | pickling a shared object | finds and re-validates an object from another process |
//! | [`Mutex<T>`], [`Lock`] | `multiprocessing.Lock` | process-shared lock that survives a dead holder ([`OwnerDied`]); `Lock` has no data |
//! | [`RLock`] | `multiprocessing.RLock` | re-entrant per thread, robust too |
//! | [`Condition`] | `multiprocessing.Condition` | condition variable used with a [`Mutex`] guard |
//! | [`Semaphore`], [`BoundedSemaphore`] | same names | counting semaphores |
//! | [`Event`] | `multiprocessing.Event` | a flag processes wait on |
//! | [`Barrier`] | `multiprocessing.Barrier` | rendezvous of `n` parties, reusable, breakable |
//! | [`Queue<T>`] | `multiprocessing.Queue` | bounded lock-free MPMC ring of `Pod` items |
//! | [`MessageQueue<T>`] | `multiprocessing.Queue` | the same ring carrying any `serde` type (postcard), up to a maximum message size |
//! | [`JoinableQueue<T>`] | `multiprocessing.JoinableQueue` | a `MessageQueue` counting unfinished tasks: `task_done`, `join` |
//! | [`pipe`], [`Connection<T>`] | `multiprocessing.Pipe` | a duplex pair of message channels |
//! | [`spsc::channel`] | — | lock-free single-producer single-consumer ring of `Pod` items |
//! | [`Pool`] | `multiprocessing.Pool` | worker processes running plain `fn`s: `map`, `imap`, `apply_async`, ...; survives a dead worker |
//! | [`Process`] | `multiprocessing.Process` | a child process, started by `fork` (a closure) or spawn (an [`Entry`] run by [`init`] in a re-executed program) |
//!
//! `T` is any [`bytemuck::Pod`] type: integers, floats, arrays of them,
//! `#[repr(C)]` structs deriving `Pod`.
//!
//! # How sharing works
//!
//! Objects live in memfd segments mapped `MAP_SHARED`: a child made by `fork`
//! sees (and changes) the very same memory, and any process can attach an
//! object from its [`Descriptor`]. Small objects share 1 MiB segments, so ten
//! thousand `Value<u64>` are two mappings, not ten thousand. Every object
//! starts with a header (magic, layout version, element type fingerprint,
//! length, checksum, and a ready word published last); attaching checks it
//! all, so a wrong type, length, or a corrupted or half-made object is an
//! [`Error`], never undefined behaviour.
//!
//! # Example
//!
//! A forked child changes shared data; the parent sees it:
//!
//! ```
//! use multiproc::{Array, Process, Value};
//! # fn main() -> multiproc::Result<()> {
//! let num = Value::new(0.0f64)?;
//! let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>())?;
//!
//! let mut p = Process::fork(|| {
//!     num.set(3.1415927);
//!     for x in arr.lock().unwrap().iter_mut() {
//!         *x = -*x;
//!     }
//! });
//! p.start()?;
//! assert_eq!(p.join()?, 0);
//! assert_eq!(num.get(), 3.1415927);
//! assert_eq!(arr.to_vec(), [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]);
//! # Ok(())
//! # }
//! ```
//!
//! Blocking calls spin briefly, then sleep on the kernel's shared futex, and
//! every one has a `*_timeout` form; releasing, setting or notifying makes no
//! system call when nobody sleeps.
//!
//! # Blocking calls, timeouts and errors
//!
//! One rule holds for every blocking call of the crate:
//!
//! | form | waits | fails with | Python |
//! |---|---|---|---|
//! | `op()` | as long as it takes | only what waiting cannot cure: `Closed`, a lock's [`OwnerDied`] (with the guard) | `op()` |
//! | `try_op()` | never | [`WouldBlock`] / [`TryLockError::WouldBlock`], or `Full(value)` / `Empty` for queues | `op(block=False)`, `put_nowait` |
//! | `op_timeout(d)` | at most `d` | [`TimedOut`], or a `Timeout` variant: [`LockTimeoutError::Timeout`], [`PutTimeoutError::Timeout`], [`GetTimeoutError::Timeout`], [`SendError::Timeout`], [`RecvError::Timeout`], [`BarrierTimeoutError::Timeout`], [`Error::Timeout`] | `op(timeout=d)` |
//!
//! A value that was not put comes back inside its error. A call returns a
//! `Result` exactly when it can fail. Every error converts into [`Error`]
//! with `?` (dropping the value or guard it carries), so a function that
//! returns [`Result`] can use them all:
//!
//! ```
//! use std::time::Duration;
//! use multiproc::{Error, MessageQueue, Queue, Semaphore};
//! # fn main() -> multiproc::Result<()> {
//! fn work(q: &Queue<u64>, results: &MessageQueue<String>, sem: &Semaphore) -> multiproc::Result<()> {
//!     sem.acquire_timeout(Duration::from_secs(1))?;
//!     let n = q.get_timeout(Duration::from_secs(1))?;
//!     results.try_put(format!("{n}"))?;
//!     sem.release()?;
//!     Ok(())
//! }
//! let (q, results, sem) = (Queue::new(4)?, MessageQueue::new(4, 32)?, Semaphore::new(1)?);
//! q.put(7)?;
//! work(&q, &results, &sem)?;
//! assert_eq!(results.get()?, "7");
//! assert!(matches!(work(&q, &results, &sem), Err(Error::Timeout))); // nothing left to get
//! # Ok(())
//! # }
//! ```
//!
//! Python's exceptions map onto [`Error`]: `queue.Full` and `queue.Empty` on
//! [`Error::Full`] and [`Error::Empty`], `TimeoutError` on
//! [`Error::Timeout`], `BrokenBarrierError` on [`Error::BrokenBarrier`],
//! `EOFError` on [`Error::Closed`], `ValueError` from `task_done` on
//! [`Error::TaskDone`]. Condition waits return the guard in every case, so
//! their timed forms say beside it whether the time ran out.
//!
//! # Platform
//!
//! Linux only: memfd, shared futexes and `/proc` are Linux facilities.
#![cfg_attr(loom, allow(dead_code, unused_imports))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_os = "linux"))]
compile_error!("multiproc supports Linux only (memfd, shared futexes, /proc)");

/// Items built in the normal build only: under `--cfg loom` the crate is
/// its algorithm cores alone (see `algo`), so this one gate replaces a
/// `cfg` on every module.
macro_rules! not_under_loom {
    ($($item:item)*) => { $( #[cfg(not(loom))] $item )* };
}

pub(crate) mod loom;

// Under loom only the algorithm cores are built, and made reachable for the
// models in tests/loom_*.rs.
#[cfg(loom)]
#[doc(hidden)]
pub mod algo;

not_under_loom! {
    mod algo;
    mod error;
    mod kind;
    mod process;
    mod pool;
    mod queue;
    mod shm;
    mod sync;
    mod sys;

    pub use error::{Error, Result, SpawnFailure, TimedOut, WouldBlock};
    pub use process::{
        ParentProcess, Process, ProcessInfo, StartMethod, active_children,
        current::{current_process, parent_process},
        exit::{ERROR_EXIT_CODE, ExitReport, Failure, FailureKind, IntoExitCode, PANIC_EXIT_CODE},
        spawn::{Entry, EntryPoint, SPAWN_ENV},
    };
    #[doc(hidden)]
    pub use process::testing;

    /// The traits a program that shares objects between processes uses:
    /// `use multiproc::prelude::*;`.
    pub mod prelude {
        pub use crate::shm::object::SharedObject;
    }
    pub use error::TaskError;
    pub use pool::{AsyncResult, DEFAULT_SPIN, Imap, MAX_PROCESSES, Pool, PoolBuilder, init};
    pub use queue::joinable::{JoinTimeoutError, JoinableQueue, TaskDoneError, TasksLost};
    pub use queue::message::{MessageQueue, RecvError, SendError};
    pub use queue::error::{Closed, GetTimeoutError, PutTimeoutError, TryGetError, TryPutError};
    pub use queue::mpmc::Queue;
    pub use queue::pipe::{Connection, Pipe, pipe};
    pub use queue::spsc;
    pub use shm::{Fingerprint, ObjectKind};
    pub use shm::{
        array::RawArray,
        atomic::{AtomicInt, AtomicValue},
        descriptor::Descriptor,
        object::SharedObject,
        named::{MAX_NAME_LEN, SharedMemory},
        segment::SegmentRef,
        value::RawValue,
    };
    pub use sync::{
        array::{Array, ArrayGuard},
        value::{Value, ValueGuard},
        barrier::{Barrier, BarrierTimeoutError, BarrierWaitResult, BrokenBarrier},
        condition::{Condition, WaitTimeoutResult},
        event::Event,
        lock::Lock,
        mutex::{Mutex, MutexGuard},
        poison::{
            LockResult, LockTimeoutError, LockTimeoutResult, NotOwner, OwnerDied, TryLockError,
            TryLockResult,
        },
        rlock::{RLock, RLockGuard},
        bounded_semaphore::BoundedSemaphore,
        semaphore::{OverRelease, Semaphore, SemaphoreGuard},
    };
}
