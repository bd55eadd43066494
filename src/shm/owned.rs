//! Owned named segments: Python's resource tracker (which unlinks the
//! segments a program created and never unlinked, once the program and its
//! children are gone) without a tracker process, from two marks the kernel
//! keeps for us on the file.
//!
//! - **The mode says "owned"**: an owned segment's mode is `01700` (sticky
//!   and owner-execute bits, which mean nothing to Linux on a plain file)
//!   instead of `0600`. Nothing else this crate or Python makes looks so.
//! - **A lock says "its owner lives"**: the creator takes a shared `flock`
//!   on the file through a descriptor of its own, which this process keeps
//!   until it unlinks the segment or ends. A forked child inherits the
//!   descriptor and so holds the lock too; `exec` closes it (the
//!   descriptor is close-on-exec). The kernel drops the lock with the last
//!   descriptor, however the processes end, `SIGKILL` included.
//!
//! An owned segment on which nobody holds the lock is *stale*: its creator
//! and the children it forked are gone and never unlinked it.
//! [`SharedMemory::create`](super::named::SharedMemory::create) and
//! [`open`](super::named::SharedMemory::open) of such a name, and
//! [`SharedMemory::remove_stale`](super::named::SharedMemory::remove_stale),
//! unlink it. A checker takes the lock exclusively without blocking: it
//! gets it only if no holder is left.
//!
//! The creator creates the file with mode `0600`, takes the lock, and only
//! then sets `01700`, so no checker ever sees the mark without the lock.

use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{self, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::sys::atfork::ForkLock;

/// The mode bits of an owned segment.
pub(crate) const OWNED_MODE: u32 = 0o1700;

/// The lock descriptors of the owned segments this process created and has
/// not unlinked, by bare name. A forked child inherits the descriptors (and
/// a copy of this list); dropping an entry closes the descriptor.
static HELD: ForkLock<Vec<(String, OwnedFd)>> = ForkLock::new(Vec::new());

/// Marks the just-created segment `fd` (named `bare`) as owned by this
/// process: a descriptor of its own with a shared lock, kept in [`HELD`],
/// then mode [`OWNED_MODE`].
pub(crate) fn mark_owned(fd: &OwnedFd, bare: &str) -> Result<()> {
    let lock = rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(|e| Error::io("fcntl(F_DUPFD)", e))?;
    // The dup shares `fd`'s open file description, which the lock belongs
    // to: every descriptor of it, here and in forked children, holds it.
    fs::flock(&lock, FlockOperation::NonBlockingLockShared).map_err(|e| Error::io("flock", e))?;
    fs::fchmod(fd, Mode::from_raw_mode(OWNED_MODE)).map_err(|e| Error::io("fchmod", e))?;
    HELD.with(|held| {
        prune(held);
        held.push((bare.to_owned(), lock));
    });
    Ok(())
}

/// Drops the locks of owned segments whose name another process unlinked
/// (the file has no link left): nothing to own, and the descriptor would
/// pin the segment's memory for as long as this process lives.
fn prune(held: &mut Vec<(String, OwnedFd)>) {
    held.retain(|(_, fd)| fs::fstat(fd).is_ok_and(|st| st.st_nlink > 0));
}

/// [`prune`]s this process's locks (called by `remove_stale`).
pub(crate) fn prune_unlinked() {
    HELD.with(prune);
}

/// Drops this process's lock on the owned segment `bare`, if it holds one
/// (called once the name is unlinked).
pub(crate) fn forget(bare: &str) {
    // Closing outside the lock would be nicer, but `close` of a plain file
    // is quick and cannot block.
    HELD.with(|held| held.retain(|(name, _)| name != bare));
}

/// Whether `fd` is an owned segment of this user that nobody holds the lock
/// on. Takes the lock for a moment to tell; `false` whenever unsure.
pub(crate) fn is_stale(fd: impl AsFd) -> bool {
    let Ok(st) = fs::fstat(&fd) else {
        return false;
    };
    if st.st_mode & 0o7777 != OWNED_MODE
        || fs::FileType::from_raw_mode(st.st_mode) != fs::FileType::RegularFile
        || st.st_uid != rustix::process::geteuid().as_raw()
    {
        return false;
    }
    // Our own exclusive lock (released when the caller closes `fd`, a
    // description of its own): granted only if no holder is left.
    fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_ok()
}

/// Unlinks `/dev/shm/<bare>` if it is a stale owned segment; whether it
/// did. The name is unlinked only if it still leads to the file that was
/// found stale (same device and inode).
pub(crate) fn remove_if_stale(path: &str) -> Result<bool> {
    let fd = match fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::LOOP | Errno::ACCESS | Errno::PERM) => return Ok(false),
        Err(e) => return Err(Error::io("open /dev/shm/<name>", e)),
    };
    if !is_stale(&fd) {
        return Ok(false);
    }
    let (Ok(held), Ok(now)) = (fs::fstat(&fd), fs::lstat(path)) else {
        return Ok(false);
    };
    if (held.st_dev, held.st_ino) != (now.st_dev, now.st_ino) {
        return Ok(false);
    }
    match fs::unlink(path) {
        Ok(()) => Ok(true),
        // Another checker was first.
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(Error::io("unlink /dev/shm/<name>", e)),
    }
}
