//! The crate's error type for setup, attach and OS failures.

use std::io;

use crate::kind::{Fingerprint, ObjectKind};

/// Result alias for fallible `multiproc` calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while creating, opening or attaching shared
/// objects.
///
/// Semantic variants come first; operating-system failures keep their
/// [`io::Error`] as [`source`](std::error::Error::source). Hot-path operations
/// (a lock with a timeout, an index) have small errors of their own or return
/// `Option`, so this type never sits on a fast path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A named segment with this name already exists (`O_EXCL` refused it), or
    /// something was already placed at this offset (a published or half-made
    /// object, or non-zero bytes where its ready word goes).
    #[error("{what} already exists")]
    AlreadyExists {
        /// The segment name, or a description of the place.
        what: String,
    },
    /// No named segment has this name, or a descriptor names a memfd that
    /// can no longer be reached: the process whose descriptor it names has
    /// exited or closed it (other processes may still map the segment; attach
    /// from one of their descriptors instead).
    #[error("{what} not found")]
    NotFound {
        /// The segment name, or a description of what was looked for.
        what: String,
    },
    /// A segment name is empty, holds `/` or NUL past the leading slash, or is
    /// longer than the file-system limit.
    #[error("invalid shared memory name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A named segment exists but is not safe to open: another owner, or a
    /// mode that grants access to group or others.
    #[error("refusing to open {name:?}: {reason}")]
    PermissionDenied {
        /// The segment name.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// A size or length of zero, one that overflows, or one larger than this
    /// machine's memory.
    #[error("invalid size {requested}: {reason}")]
    InvalidSize {
        /// The size or length asked for.
        requested: u64,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The object at this place was created for another element type (its
    /// size, alignment or type name differ).
    #[error("layout mismatch: expected {expected}, found {found}")]
    LayoutMismatch {
        /// The type this handle wants.
        expected: Fingerprint,
        /// The type recorded in the shared header.
        found: Fingerprint,
    },
    /// The object at this place is of another kind (say an `Array` where a
    /// `Value` was expected).
    #[error("kind mismatch: expected {expected:?}, found {found:?}")]
    KindMismatch {
        /// The kind this handle wants.
        expected: ObjectKind,
        /// The kind recorded in the shared header.
        found: ObjectKind,
    },
    /// The object has another length than the descriptor or caller said.
    #[error("length mismatch: expected {expected}, found {found}")]
    LengthMismatch {
        /// The length asked for.
        expected: u64,
        /// The length recorded in the shared header.
        found: u64,
    },
    /// The header's ready word is not yet published: the object is still being
    /// initialised, or nothing was ever placed here.
    #[error("object at offset {offset} is not ready (not initialised or still initialising)")]
    NotReady {
        /// Offset of the header within its segment.
        offset: u64,
    },
    /// The header's layout version is one this build does not understand.
    #[error("unsupported layout version {found} (this build reads {supported})")]
    VersionMismatch {
        /// The version this build writes and reads.
        supported: u32,
        /// The version found in shared memory.
        found: u32,
    },
    /// The shared header is damaged: wrong magic, checksum, or fields that do
    /// not fit the segment.
    #[error("corrupted shared header at offset {offset}: {reason}")]
    Corrupted {
        /// Offset of the header within its segment.
        offset: u64,
        /// What check failed.
        reason: &'static str,
    },
    /// An offset or range does not fit the segment, or is misaligned.
    #[error(
        "range {offset}..{end} does not fit a segment of {segment_size} bytes (alignment {align})"
    )]
    OutOfBounds {
        /// Start of the range.
        offset: u64,
        /// End of the range (exclusive), saturated on overflow.
        end: u64,
        /// Size of the segment.
        segment_size: u64,
        /// Required alignment of `offset`.
        align: u64,
    },
    /// The range overlaps a live object in this process (one placed or
    /// attached at another offset or with another layout): two typed views of
    /// the same bytes, or a raw copy into a typed object's bytes, would break
    /// Rust's aliasing rules.
    #[error("range {offset}..{end} overlaps a live object at offset {other} in this process")]
    Overlap {
        /// Start of the range asked for.
        offset: u64,
        /// End of the range asked for (exclusive).
        end: u64,
        /// Offset of the live object it overlaps.
        other: u64,
    },
    /// An index past the end of an array.
    #[error("index {index} out of range for length {len}")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// Two slices that must have the same length do not.
    #[error("slice length mismatch: expected {expected}, found {found}")]
    SliceLength {
        /// The length required.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// A descriptor that cannot be attached in this process: malformed, or
    /// naming a file that is not the segment it describes.
    #[error("invalid descriptor: {reason}")]
    InvalidDescriptor {
        /// What was wrong with it.
        reason: String,
    },
    /// A `*_timeout` call reached its deadline ([`TimedOut`], or a
    /// `Timeout` variant of a per-operation error, converted).
    #[error("timed out")]
    Timeout,
    /// A `try_*` call would have had to wait: a lock held elsewhere, no
    /// permit left ([`WouldBlock`], converted).
    #[error("the call would block")]
    WouldBlock,
    /// A non-blocking put found the queue full (Python's `queue.Full`).
    #[error("the queue is full")]
    Full,
    /// A non-blocking get found the queue empty (Python's `queue.Empty`).
    #[error("the queue is empty")]
    Empty,
    /// The queue, channel or pipe is closed (and, for a receiver, drained):
    /// Python's `EOFError` on a pipe.
    #[error("closed")]
    Closed,
    /// A message's encoding is larger than the maximum message size set at
    /// creation; nothing was sent.
    #[error("message of {size} bytes exceeds the maximum message size of {max} bytes")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The maximum message size.
        max: usize,
    },
    /// A value's `Serialize` implementation failed; nothing was sent.
    #[error("cannot encode the message: {reason}")]
    Encode {
        /// What the encoder said.
        reason: String,
    },
    /// A received message is not a valid encoding of the expected type.
    #[error("cannot decode a message of {len} bytes: {reason}")]
    Decode {
        /// The message's length in bytes.
        len: usize,
        /// What the decoder said.
        reason: String,
    },
    /// A lock's previous holder died holding it ([`OwnerDied`](crate::OwnerDied),
    /// converted: the guard it carried is dropped, so the lock is free again).
    #[error("a previous holder of the lock died while holding it")]
    OwnerDied,
    /// A release of a lock by a thread that does not hold it
    /// ([`NotOwner`](crate::NotOwner), converted).
    #[error("release of a lock not held by this thread")]
    NotOwner,
    /// A semaphore released above its bound
    /// ([`OverRelease`](crate::OverRelease), converted).
    #[error("semaphore released too many times: its value may not exceed {max}")]
    OverRelease {
        /// The bound.
        max: u32,
    },
    /// A barrier wait failed because the barrier is broken
    /// ([`BrokenBarrier`](crate::BrokenBarrier), converted): Python's
    /// `BrokenBarrierError`.
    #[error("the barrier is broken")]
    BrokenBarrier,
    /// `task_done` was called more times than items were put
    /// ([`TaskDoneError`](crate::TaskDoneError), converted): Python's
    /// `ValueError`.
    #[error("task_done() called more times than there were items")]
    TaskDone,
    /// A `JoinableQueue::join` ended with tasks that processes got and
    /// died with before marking them done
    /// ([`TasksLost`](crate::TasksLost), converted).
    #[error("{count} task(s) lost with a process that died before task_done")]
    TasksLost {
        /// How many.
        count: u64,
    },
    /// [`Process::start`](crate::Process::start) of a process that was
    /// already started (a process starts once, as in Python).
    #[error("process {name} was already started")]
    AlreadyStarted {
        /// The process's name.
        name: String,
    },
    /// A [`Process`](crate::Process) call that needs a started child
    /// (`join`, `terminate`, ...) on one never started.
    #[error("process {name} was not started")]
    NotStarted {
        /// The process's name.
        name: String,
    },
    /// A daemon process tried to start a non-daemon child: it would be
    /// orphaned when the daemon is killed with its parent (Python forbids
    /// a daemon any child).
    #[error("process {name}: a daemon process may start only daemon children")]
    DaemonChild {
        /// The name of the child that was refused.
        name: String,
    },
    /// A process spawned to run an entry point tried to start a process
    /// before [`init`](crate::init) ran that entry: the program does not
    /// call `multiproc::init` first thing in `main`. Refused, so that such
    /// a program cannot start copies of itself without end.
    #[error(
        "process {name}: this process was spawned to run an entry point, but multiproc::init \
         has not run it (the program does not call multiproc::init first thing in main); \
         refusing to start processes here"
    )]
    InitMissing {
        /// The name of the process that was refused.
        name: String,
    },
    /// A spawned child did not start its entry point; see [`SpawnFailure`].
    #[error("cannot spawn {entry}: {failure}")]
    Spawn {
        /// The entry point's name.
        entry: String,
        /// What went wrong.
        #[source]
        failure: SpawnFailure,
    },
    /// A [`Pool`](crate::Pool) task did not produce its result; the
    /// [`TaskError`] says why (a panic, a dead worker, a timeout, ...).
    #[error("pool task failed: {0}")]
    Task(#[from] TaskError),
    /// A task was submitted to a [`Pool`](crate::Pool) after
    /// [`close`](crate::Pool::close) or [`terminate`](crate::Pool::terminate):
    /// Python's `ValueError("Pool not running")`. Nothing was submitted.
    #[error("the pool is closed: it takes no new tasks")]
    PoolClosed,
    /// [`Pool::join`](crate::Pool::join) before `close` or `terminate`:
    /// Python's `ValueError("Pool is still running")`.
    #[error("the pool is still running: close or terminate it before join")]
    PoolRunning,
    /// A pool task function that is not code of this program's executable
    /// (it came from a library loaded at run time), so a worker could not
    /// find it at the same place.
    #[error(
        "the function at {address:#x} is not in this program's executable: a pool task must be \
         a function of the program itself"
    )]
    FunctionNotInProgram {
        /// The function's address in this process.
        address: usize,
    },
    /// An operating-system call failed.
    #[error("{op} failed")]
    Io {
        /// The call that failed, e.g. `"memfd_create"`.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// "exit code 3" or "killed by signal 9".
fn exit_text(code: &i32) -> String {
    if *code < 0 {
        format!("killed by signal {}", -code)
    } else {
        format!("exit code {code}")
    }
}

impl Error {
    /// Wraps an OS error from the named call.
    pub(crate) fn io(op: &'static str, source: impl Into<io::Error>) -> Self {
        Error::Io {
            op,
            source: source.into(),
        }
    }
}

/// Why a spawned child did not start its entry point (inside
/// [`Error::Spawn`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnFailure {
    /// The entry value (or the boot record) could not be encoded.
    #[error("cannot encode the arguments: {reason}")]
    Encode {
        /// What the encoder said.
        reason: String,
    },
    /// An argument for the re-executed program holds a NUL byte.
    #[error("an argument holds a NUL byte")]
    NulArgument,
    /// `posix_spawn` of `/proc/self/exe` failed.
    #[error("posix_spawn of /proc/self/exe failed")]
    Exec(#[source] io::Error),
    /// The child reported why it could not start the entry (an entry its
    /// `init` does not register, two entries of one name, an unreadable
    /// boot record), and exited with `code`.
    #[error("{message} (the child exited: {})", exit_text(.code))]
    Refused {
        /// The child's exit code (minus the signal that killed it).
        code: i32,
        /// What the child said.
        message: String,
    },
    /// The child exited with `code` before reaching its entry point, saying
    /// nothing: usually its `main` does not call [`init`](crate::init)
    /// first thing (in a test binary: the test it runs does not).
    #[error(
        "the child exited ({}) before its entry point started: does the program call \
         multiproc::init first thing in main (in a test binary: in the test the child runs)?",
        exit_text(.code)
    )]
    InitMissing {
        /// The child's exit code (minus the signal that killed it).
        code: i32,
    },
    /// The child gave no sign of reaching `init` within the start timeout
    /// and was killed.
    #[error(
        "the child gave no sign of reaching multiproc::init within {timeout:?} (it was killed): \
         does the program call multiproc::init first thing in main?"
    )]
    Silent {
        /// The start timeout.
        timeout: std::time::Duration,
    },
    /// Waiting for the child's handshake failed (the child was killed).
    #[error("{op} failed while waiting for the child (it was killed)")]
    Wait {
        /// The call that failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A `try_*` call that would have had to wait: a lock held elsewhere, no
/// semaphore permit left. Converts into [`Error::WouldBlock`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, thiserror::Error)]
#[error("the call would block")]
pub struct WouldBlock;

/// A `*_timeout` call whose deadline passed first. Converts into
/// [`Error::Timeout`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, thiserror::Error)]
#[error("timed out")]
pub struct TimedOut;

impl From<WouldBlock> for Error {
    fn from(_: WouldBlock) -> Self {
        Error::WouldBlock
    }
}

impl From<TimedOut> for Error {
    fn from(_: TimedOut) -> Self {
        Error::Timeout
    }
}

/// Why a [`Pool`](crate::Pool) task has no result. Carried by
/// [`Error::Task`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum TaskError {
    /// The task function panicked; the worker caught it and goes on.
    #[error("the task panicked: {message}")]
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The worker running the task died (killed, aborted, exited); the
    /// pool replaced it. Only the task it was running fails: tasks queued
    /// behind it run on other workers.
    #[error("worker {name} (pid {pid}) died running the task: {}", exit_text(.exit_code))]
    WorkerDied {
        /// The worker's name (`ForkPoolWorker-3`, say).
        name: String,
        /// The worker's pid.
        pid: u32,
        /// Its exit code, or minus the signal that killed it (`-9` for
        /// SIGKILL), as [`Process::exitcode`](crate::Process::exitcode).
        exit_code: i32,
    },
    /// The task ran longer than the pool's
    /// [`task_timeout`](crate::PoolBuilder::task_timeout): its worker was
    /// killed and replaced.
    #[error("the task ran past its timeout of {timeout:?}; its worker was killed")]
    TimedOut {
        /// The pool's task timeout.
        timeout: std::time::Duration,
    },
    /// The worker could not decode the task's arguments, or this process
    /// could not decode its result (a `Deserialize` that fails on what its
    /// own `Serialize` wrote, say).
    #[error("cannot decode the task's {what}: {reason}")]
    Decode {
        /// `"arguments"` or `"result"`.
        what: String,
        /// What the decoder said.
        reason: String,
    },
    /// The task's result could not be encoded in the worker.
    #[error("cannot encode the task's result: {reason}")]
    Encode {
        /// What the encoder said.
        reason: String,
    },
    /// A worker's initializer failed (panicked): the pool starts no more
    /// workers and fails every task it holds.
    #[error("the pool's initializer failed: {message}")]
    InitializerFailed {
        /// The initializer's panic message.
        message: String,
    },
    /// The pool was terminated (or dropped) before the task finished.
    #[error("the pool was terminated before the task finished")]
    Terminated,
    /// The worker refused the task's function reference (it was not made
    /// by this pool for this program): shared memory was overwritten.
    #[error("the worker refused the task's function: {reason}")]
    BadFunction {
        /// Why.
        reason: String,
    },
}
