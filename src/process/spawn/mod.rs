//! The spawn start method: re-execute this program and run a registered
//! entry point in it.
//!
//! # How a spawn goes
//!
//! 1. The parent encodes the [`Entry`] value with postcard. Shared objects
//!    inside it encode as their [`Descriptor`](crate::Descriptor)s, and each
//!    memfd of this process that a descriptor names is collected on the way
//!    (`shm::segment::collect_memfds`).
//! 2. It writes a boot record (entry name, arguments, the child's name and
//!    place in the process tree, daemon flag, the parent's pid and name) to
//!    a fresh memfd, opens the status pipe, and calls `posix_spawn` on
//!    `/proc/self/exe` (the very file this process runs, even if the path
//!    was replaced since), with the environment plus [`SPAWN_ENV`]. File
//!    actions `dup2(fd, fd)` clear close-on-exec, in the child only, on the
//!    boot memfd, the status pipe's write end and every noted memfd: the
//!    child inherits exactly those, at the same numbers, and no other
//!    process can catch them (every descriptor of this crate is
//!    close-on-exec in the parent). glibc's `posix_spawn` is a `vfork`-style
//!    clone: nothing of the parent is copied, and the parent may have any
//!    number of threads.
//! 3. In the child, [`init`](crate::init) (first thing in `main`) reads [`SPAWN_ENV`],
//!    checks that the descriptor it names is the boot memfd (number,
//!    device and inode), marks the inherited descriptors close-on-exec
//!    again, becomes a daemon if asked (`PR_SET_PDEATHSIG`, then a check
//!    that the parent is still the one that spawned it), finds the entry
//!    point by name, decodes the arguments (each shared object attaches
//!    from its descriptor, through the inherited descriptor, and is
//!    validated), reports `STARTED` on the status pipe (after the decoding,
//!    whether it worked or not), runs the entry, reports a failure if any,
//!    and exits. The parent's `start` returns once `STARTED` arrives: by
//!    then the child holds every object of its arguments, so the parent
//!    may drop its copies (a [`Connection`](crate::Connection) end it
//!    handed down, say) at once.
//!
//! # No fork bomb, no hang
//!
//! A program that never calls `init` runs `main` again in the child. The
//! parent notices: the child exits, or stays silent past the start timeout
//! (then it is killed), without the handshake, and `start` returns
//! [`Error::Spawn`] saying that `init` is missing. Meanwhile the child
//! cannot multiply: in a process whose [`SPAWN_ENV`] names a live boot memfd
//! that `init` has not dispatched, every `Process::start` is refused.
//! [`SPAWN_ENV`] reaching an unrelated program (inherited by something the
//! entry starts with `std::process::Command`) is ignored there: the boot
//! memfd is not open in it.

mod boot;
mod child;
mod entry;
mod parent;

use std::time::Duration;

pub(crate) use child::check_may_start;
pub(crate) use child::init_with;
pub use entry::{Entry, EntryPoint};
pub(crate) use parent::{ChildSetup, Encode, SpawnConfig, start};

/// The environment variable that tells a re-executed program which boot
/// record to run (`version:parent pid:boot fd:device:inode:status fd`).
/// Set by the parent for the child only; a program has no reason to set
/// it, and reads it only to tell, before [`init`](crate::init), whether it runs as a
/// spawned child.
///
/// # Examples
///
/// ```
/// // Code that must run once, in the parent only, even before `init`:
/// if std::env::var_os(multiproc::SPAWN_ENV).is_none() {
///     println!("starting up");
/// }
/// ```
pub const SPAWN_ENV: &str = "MULTIPROC_SPAWN";

/// Version of the boot record and of [`SPAWN_ENV`]'s format.
pub(crate) const WIRE_VERSION: u32 = 1;

/// How long `start` waits, by default, for a spawned child to reach
/// [`init`](crate::init).
pub(crate) const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
