//! The parent-to-child handover: the boot record (in a memfd the child
//! inherits) and the [`SPAWN_ENV`] variable that names it.

use std::mem::MaybeUninit;
use std::os::fd::RawFd;

use serde::{Deserialize, Serialize};

use crate::process::spawn::{SPAWN_ENV, WIRE_VERSION};

/// What the child needs to know, in the boot memfd.
#[derive(Serialize, Deserialize)]
pub(crate) struct Boot {
    pub(crate) version: u32,
    pub(crate) entry: String,
    pub(crate) name: String,
    pub(crate) path: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent_pid: u32,
    pub(crate) parent_name: String,
    /// The parent's stdout, kept aside while fd 1 is `/dev/null` until
    /// `init` (see `testing::ForTest`).
    pub(crate) stdout: Option<i32>,
    /// Memfds inherited for the arguments' shared objects.
    pub(crate) inherited: Vec<i32>,
    /// The encoded entry value.
    pub(crate) args: Vec<u8>,
}

/// [`SPAWN_ENV`], parsed and checked against this process's descriptors.
pub(crate) struct EnvRef {
    pub(crate) parent: u32,
    pub(crate) boot: RawFd,
    pub(crate) status: RawFd,
}

/// The boot record reference in [`SPAWN_ENV`], if it is meant for this
/// process: its boot memfd is open here, at that number, and is that file.
pub(crate) fn env_ref() -> Option<EnvRef> {
    let value = std::env::var_os(SPAWN_ENV)?;
    let value = value.to_str()?;
    let mut it = value.split(':');
    let mut next = || it.next();
    let version: u32 = next()?.parse().ok()?;
    let parent: u32 = next()?.parse().ok()?;
    let boot: RawFd = next()?.parse().ok()?;
    let dev: u64 = next()?.parse().ok()?;
    let ino: u64 = next()?.parse().ok()?;
    let status: RawFd = next()?.parse().ok()?;
    if version != WIRE_VERSION || file_id(boot) != Some((dev, ino)) {
        return None;
    }
    Some(EnvRef {
        parent,
        boot,
        status,
    })
}

/// (device, inode) of descriptor number `fd`, if open.
pub(crate) fn file_id(fd: RawFd) -> Option<(u64, u64)> {
    if fd < 0 {
        return None;
    }
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat only reads the descriptor number (a closed one fails
    // with EBADF) and writes the stat buffer we own.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so it filled the buffer.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
}

/// Sets close-on-exec on descriptor number `fd` (an inherited one).
pub(crate) fn set_cloexec(fd: RawFd) {
    // SAFETY: fcntl F_SETFD only changes a flag of the descriptor number; a
    // closed one fails with EBADF.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// The largest boot record a spawn writes, and so the most a child reads:
/// the encoded entry (its arguments) and a few names. A size past it is a
/// forged or foreign file, refused before anything is allocated.
pub(crate) const MAX_BOOT_RECORD: usize = 1 << 30;

/// Reads and decodes the boot record from memfd `fd`.
pub(crate) fn read_boot(fd: RawFd) -> std::result::Result<Boot, String> {
    let unreadable = |e: std::io::Error| format!("cannot read the boot record: {e}");
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat of the inherited memfd into a buffer we own.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return Err(unreadable(std::io::Error::last_os_error()));
    }
    // SAFETY: fstat succeeded, so it filled the buffer.
    let size = unsafe { st.assume_init() }.st_size;
    let size = usize::try_from(size)
        .ok()
        .filter(|&n| n <= MAX_BOOT_RECORD)
        .ok_or_else(|| {
            format!("boot record of {size} bytes (the most a spawn writes is {MAX_BOOT_RECORD})")
        })?;
    let mut bytes = vec![0u8; size];
    let mut done = 0;
    while done < size {
        // SAFETY: pread from the inherited memfd into the rest of a buffer
        // we own.
        let n = unsafe {
            libc::pread(
                fd,
                bytes[done..].as_mut_ptr().cast(),
                size - done,
                done as libc::off_t,
            )
        };
        match n {
            n if n > 0 => done += n as usize,
            0 => return Err(format!("boot record cut at {done} of {size} bytes")),
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return Err(unreadable(std::io::Error::last_os_error())),
        }
    }
    let boot: Boot =
        postcard::from_bytes(&bytes).map_err(|e| format!("cannot decode the boot record: {e}"))?;
    if boot.version != WIRE_VERSION {
        return Err(format!(
            "boot record version {} (this program reads {WIRE_VERSION})",
            boot.version
        ));
    }
    Ok(boot)
}
