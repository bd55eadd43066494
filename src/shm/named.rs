//! Named segments for unrelated processes, like Python's
//! `multiprocessing.shared_memory.SharedMemory`.

use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::shm;

use crate::error::{Error, Result};
use crate::shm::segment::{Backing, Segment, SegmentRef, check_fits_memory};

/// Longest name accepted, the file-name limit of `/dev/shm` (`NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;

/// A named POSIX shared memory segment (`shm_open`), the counterpart of
/// Python's `multiprocessing.shared_memory.SharedMemory`.
///
/// Unrelated processes of the same user find it by name. The creator makes it
/// with `O_CREAT|O_EXCL` and mode `0600`; [`open`](Self::open) refuses a
/// segment owned by another user or readable by group or others. The bytes
/// start at offset 0 with no header of ours, so a segment made by Python (or
/// any other program) can be opened and read as it is.
///
/// Dropping a `SharedMemory` unmaps it; the name stays until
/// [`unlink`](Self::unlink) (or [`SharedMemory::remove`]) removes it, as in
/// Python. Typed objects can be placed in it at chosen offsets with
/// [`Value::create_at`](crate::Value::create_at) and friends.
///
/// # Examples
///
/// ```
/// use multiproc::SharedMemory;
/// # fn main() -> multiproc::Result<()> {
/// # let name = format!("multiproc-doc-{}", std::process::id());
/// let shm = SharedMemory::create(&name, 4096)?;
/// shm.write_at(0, b"hello")?;
///
/// let other = SharedMemory::open(&name)?; // typically in another process
/// let mut buf = [0u8; 5];
/// other.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// shm.unlink()?;
/// # Ok(())
/// # }
/// ```
pub struct SharedMemory {
    seg: Arc<Segment>,
    name: String,
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("size", &self.size())
            .finish()
    }
}

/// Checks a name and returns it without its optional leading slash.
fn normalize(name: &str) -> Result<&str> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let bad = |reason| Error::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if bare.is_empty() {
        return Err(bad("empty"));
    }
    if bare.len() > MAX_NAME_LEN {
        return Err(bad("longer than 255 bytes"));
    }
    if bare.contains('/') {
        return Err(bad("contains '/' after the leading one"));
    }
    if bare.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    if bare == "." || bare == ".." {
        return Err(bad("is '.' or '..'"));
    }
    Ok(bare)
}

/// Opens an existing named segment read-write after checking its owner and
/// mode. Used by [`SharedMemory::open`] and by descriptor attach.
pub(crate) fn open_checked(name: &str) -> Result<OwnedFd> {
    let bare = normalize(name)?;
    let fd = shm::open(
        format!("/{bare}").as_str(),
        shm::OFlags::RDWR,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::NOENT => Error::NotFound {
            what: format!("shared memory {bare:?}"),
        },
        Errno::ACCESS => Error::PermissionDenied {
            name: bare.to_owned(),
            reason: "shm_open refused access".into(),
        },
        e => Error::io("shm_open", e),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| Error::io("fstat", e))?;
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != me {
        return Err(Error::PermissionDenied {
            name: bare.to_owned(),
            reason: format!("owned by uid {}, not by this process's uid {me}", st.st_uid),
        });
    }
    if st.st_mode & 0o077 != 0 {
        return Err(Error::PermissionDenied {
            name: bare.to_owned(),
            reason: format!(
                "mode {:04o} grants access to group or others (want 0600)",
                st.st_mode & 0o7777
            ),
        });
    }
    Ok(fd)
}

impl SharedMemory {
    /// Creates a new named segment of `size` bytes, zero-filled.
    ///
    /// `name` may start with `/` (as `shm_open` wants) or not (as Python
    /// writes it); the stored name has no slash.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] if the name is taken, [`Error::InvalidName`],
    /// [`Error::InvalidSize`] for a size of zero or beyond this machine's
    /// memory, [`Error::Io`] for other OS failures.
    pub fn create(name: &str, size: usize) -> Result<SharedMemory> {
        let bare = normalize(name)?;
        if size == 0 {
            return Err(Error::InvalidSize {
                requested: 0,
                reason: "a shared memory segment needs at least one byte",
            });
        }
        check_fits_memory(size as u64)?;
        let path = format!("/{bare}");
        let fd = shm::open(
            path.as_str(),
            shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
            Mode::RUSR | Mode::WUSR,
        )
        .map_err(|e| match e {
            Errno::EXIST => Error::AlreadyExists {
                what: format!("shared memory {bare:?}"),
            },
            Errno::ACCESS => Error::PermissionDenied {
                name: bare.to_owned(),
                reason: "shm_open refused to create it".into(),
            },
            e => Error::io("shm_open", e),
        })?;
        let sized = rustix::fs::ftruncate(&fd, size as u64)
            .map_err(|e| Error::io("ftruncate", e))
            .and_then(|()| Segment::map(fd, Backing::Named(bare.to_owned())));
        match sized {
            Ok(seg) => Ok(SharedMemory {
                seg: seg.register(),
                name: bare.to_owned(),
            }),
            Err(e) => {
                // Leave nothing behind in /dev/shm on a failed create.
                let _ = shm::unlink(path.as_str());
                Err(e)
            }
        }
    }

    /// Opens an existing named segment, mapping all of it.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if no segment has this name,
    /// [`Error::PermissionDenied`] if another user owns it or its mode lets
    /// group or others in, [`Error::InvalidSize`] if it is still empty.
    pub fn open(name: &str) -> Result<SharedMemory> {
        let bare = normalize(name)?.to_owned();
        let fd = open_checked(&bare)?;
        let seg = Segment::map(fd, Backing::Named(bare.clone()))?.register();
        Ok(SharedMemory { seg, name: bare })
    }

    /// Removes the name from the system. Mappings already made, here and in
    /// other processes, stay valid until dropped.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the name was already removed.
    pub fn unlink(&self) -> Result<()> {
        SharedMemory::remove(&self.name)
    }

    /// Removes a named segment by name, e.g. one left behind by a process
    /// that crashed before its `unlink`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if no segment has this name, [`Error::InvalidName`].
    pub fn remove(name: &str) -> Result<()> {
        let bare = normalize(name)?;
        shm::unlink(format!("/{bare}").as_str()).map_err(|e| match e {
            Errno::NOENT => Error::NotFound {
                what: format!("shared memory {bare:?}"),
            },
            e => Error::io("shm_unlink", e),
        })
    }

    /// The name, without a leading slash (as Python reports it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size of the mapping in bytes.
    pub fn size(&self) -> usize {
        self.seg.len()
    }

    /// Pointer to byte 0. Other processes may write through their own
    /// mappings at any time.
    pub fn as_ptr(&self) -> *mut u8 {
        self.seg.base()
    }

    /// Views the whole segment as a byte slice.
    ///
    /// # Safety
    ///
    /// No process may write the segment while the slice lives.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is valid for `size()` bytes for `self`'s
        // lifetime; absence of writers is the caller's promise.
        unsafe { std::slice::from_raw_parts(self.seg.base(), self.seg.len()) }
    }

    /// Views the whole segment as a mutable byte slice.
    ///
    /// # Safety
    ///
    /// No other process or thread may read or write the segment while the
    /// slice lives, and no other slice from this segment may exist.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: as for `as_slice`; exclusivity is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.seg.base(), self.seg.len()) }
    }

    /// Copies `buf.len()` bytes starting at `offset` out of the segment.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] if the range does not fit.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len())?;
        // SAFETY: the range lies inside the mapping (checked); `buf` is ours.
        // A concurrent writer elsewhere can make the bytes stale, not invalid.
        unsafe {
            std::ptr::copy_nonoverlapping(self.seg.base().add(offset), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    /// Copies `buf` into the segment starting at `offset`.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] if the range does not fit.
    pub fn write_at(&self, offset: usize, buf: &[u8]) -> Result<()> {
        self.check_range(offset, buf.len())?;
        // SAFETY: the range lies inside the mapping (checked).
        unsafe {
            std::ptr::copy_nonoverlapping(buf.as_ptr(), self.seg.base().add(offset), buf.len())
        };
        Ok(())
    }

    fn check_range(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size() => Ok(()),
            end => Err(Error::OutOfBounds {
                offset: offset as u64,
                end: end.map_or(u64::MAX, |e| e as u64),
                segment_size: self.size() as u64,
                align: 1,
            }),
        }
    }

    /// How another process finds this segment (name and inode).
    pub fn segment_ref(&self) -> SegmentRef {
        self.seg.segment_ref()
    }

    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }
}
