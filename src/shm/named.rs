//! Named segments for unrelated processes, like Python's
//! `multiprocessing.shared_memory.SharedMemory`.

use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use rustix::fs::{self, FallocateFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::shm::object::attach_failed;
use crate::shm::owned;
use crate::shm::ranges;
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
/// Python, even after its creator died; a segment made with
/// [`create_owned`](Self::create_owned) is removed once its creator (and
/// the children it forked) died without unlinking it, as Python's resource
/// tracker does. Typed objects can be placed in it at chosen offsets with
/// [`Value::create_at`](crate::Value::create_at) and friends.
///
/// # A peer that shrinks the file
///
/// Unlike the crate's anonymous segments (memfds sealed against resizing),
/// a named segment is a plain file that any process with access can
/// truncate. After a truncation, touching a page of this mapping past the
/// new end of the file kills this process with `SIGBUS`: the kernel has no
/// memory to show there, and no `Result` can report it. Share named
/// segments only with processes you trust not to resize them (the file is
/// created mode `0600`, so only the same user can), and prefer the
/// anonymous objects (`Value::new`, `Queue::new`, ..., handed to other
/// processes by [`Descriptor`](crate::Descriptor)) when the peers are your
/// own children.
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

/// Where POSIX shared memory objects live on Linux (what glibc's `shm_open`
/// and Python use).
const SHM_DIR: &str = "/dev/shm";

fn path_of(bare: &str) -> String {
    format!("{SHM_DIR}/{bare}")
}

/// Opens an existing named segment read-write after checking that it is a
/// regular file (not a symbolic link: `O_NOFOLLOW`), owned by this user, and
/// closed to group and others. Used by [`SharedMemory::open`] and by
/// descriptor attach.
pub(crate) fn open_checked(name: &str) -> Result<OwnedFd> {
    let bare = normalize(name)?;
    let denied = |reason: String| Error::PermissionDenied {
        name: bare.to_owned(),
        reason,
    };
    let fd = fs::open(
        path_of(bare).as_str(),
        OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::NOENT => Error::NotFound {
            what: format!("shared memory {bare:?}"),
        },
        Errno::ACCESS => denied("open refused access".into()),
        Errno::LOOP => denied("it is a symbolic link".into()),
        e => Error::io("open /dev/shm/<name>", e),
    })?;
    let st = fs::fstat(&fd).map_err(|e| Error::io("fstat", e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(denied("not a regular file".into()));
    }
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != me {
        return Err(denied(format!(
            "owned by uid {}, not by this process's uid {me}",
            st.st_uid
        )));
    }
    if st.st_mode & 0o077 != 0 {
        return Err(denied(format!(
            "mode {:04o} grants access to group or others (want 0600)",
            st.st_mode & 0o7777
        )));
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
        Self::make(name, size, false)
    }

    /// Creates a new named segment, as [`create`](Self::create) does, that
    /// is *owned* by this process: once this process and every child it
    /// forked have ended (`SIGKILL` included) without unlinking it, the
    /// segment is stale, and the next [`create`](Self::create) or
    /// [`open`](Self::open) of its name, or a
    /// [`remove_stale`](Self::remove_stale), unlinks it. Python's
    /// `SharedMemory(create=True)` with its resource tracker behaves so.
    ///
    /// How (no tracker process): the file's mode is `01700` instead of
    /// `0600`, and this process holds a shared `flock` on it through a
    /// descriptor it keeps until it unlinks the name or ends; forked
    /// children inherit that descriptor, spawned ones do not. The kernel
    /// drops the lock with the last descriptor; an owned file nobody holds
    /// the lock on is stale. Dropping the `SharedMemory` keeps the lock
    /// (other processes may still use the segment), [`unlink`](Self::unlink)
    /// releases it.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::SharedMemory;
    /// # fn main() -> multiproc::Result<()> {
    /// # let name = format!("multiproc-doc-owned-{}", std::process::id());
    /// let shm = SharedMemory::create_owned(&name, 4096)?;
    /// // While this process lives, the segment is not stale.
    /// SharedMemory::remove_stale()?;
    /// assert!(SharedMemory::open(&name).is_ok());
    /// shm.unlink()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn create_owned(name: &str, size: usize) -> Result<SharedMemory> {
        Self::make(name, size, true)
    }

    /// Unlinks every stale owned segment of this user in `/dev/shm` (see
    /// [`create_owned`](Self::create_owned)); returns how many. Segments
    /// made by [`create`](Self::create), by Python or by any other program
    /// are never touched, nor are owned ones whose owner lives.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if `/dev/shm` cannot be read or a stale name cannot be
    /// unlinked.
    pub fn remove_stale() -> Result<usize> {
        let dir = std::fs::read_dir(SHM_DIR).map_err(|e| Error::Io {
            op: "read_dir /dev/shm",
            source: e,
        })?;
        owned::prune_unlinked();
        let mut removed = 0;
        for entry in dir.flatten() {
            let Some(bare) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if owned::remove_if_stale(&path_of(&bare))? {
                owned::forget(&bare);
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn make(name: &str, size: usize, owned: bool) -> Result<SharedMemory> {
        let bare = normalize(name)?;
        if size == 0 {
            return Err(Error::InvalidSize {
                requested: 0,
                reason: "a shared memory segment needs at least one byte",
            });
        }
        check_fits_memory(size as u64)?;
        let path = path_of(bare);
        let create = || {
            fs::open(
                path.as_str(),
                OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::RUSR | Mode::WUSR,
            )
        };
        let fd = match create() {
            // A stale owned segment under the name: unlink it, try again.
            Err(Errno::EXIST) if owned::remove_if_stale(&path)? => create(),
            r => r,
        }
        .map_err(|e| match e {
            Errno::EXIST => Error::AlreadyExists {
                what: format!("shared memory {bare:?}"),
            },
            Errno::ACCESS => Error::PermissionDenied {
                name: bare.to_owned(),
                reason: "open refused to create it".into(),
            },
            e => Error::io("open /dev/shm/<name>", e),
        })?;
        let marked = if owned {
            owned::mark_owned(&fd, bare)
        } else {
            Ok(())
        };
        // Reserve the pages now: a full /dev/shm (it often has a size limit)
        // is an error here rather than a SIGBUS at the first touch later.
        let sized = marked
            .and_then(|()| {
                fs::fallocate(&fd, FallocateFlags::empty(), 0, size as u64).map_err(|e| {
                    match e {
                        Errno::NOSPC => Error::InvalidSize {
                            requested: size as u64,
                            reason: "no space left in /dev/shm",
                        },
                        e => Error::io("fallocate", e),
                    }
                })
            })
            .and_then(|()| Segment::map(fd, Backing::Named(bare.to_owned())));
        match sized {
            Ok(seg) => Ok(SharedMemory {
                seg: seg.register(),
                name: bare.to_owned(),
            }),
            Err(e) => {
                // Leave nothing behind in /dev/shm on a failed create.
                let _ = fs::unlink(path.as_str());
                owned::forget(bare);
                Err(e)
            }
        }
    }

    /// Opens an existing named segment, mapping all of it.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if no segment has this name (or it was a stale
    /// [owned](Self::create_owned) one, which this call unlinked),
    /// [`Error::PermissionDenied`] if another user owns it or its mode lets
    /// group or others in, [`Error::InvalidSize`] if it is still empty.
    pub fn open(name: &str) -> Result<SharedMemory> {
        let bare = normalize(name)?.to_owned();
        owned::remove_if_stale(&path_of(&bare))?;
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
        fs::unlink(path_of(bare).as_str()).map_err(|e| match e {
            Errno::NOENT => Error::NotFound {
                what: format!("shared memory {bare:?}"),
            },
            e => Error::io("unlink /dev/shm/<name>", e),
        })?;
        // An owned segment of ours: nothing left to own.
        owned::forget(bare);
        Ok(())
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
    /// [`Error::OutOfBounds`] if the range does not fit,
    /// [`Error::Overlap`] if it touches a typed object that is live in this
    /// process (use the object's own handle for its bytes).
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        let _claim = self.claim_range(offset, buf.len())?;
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
    /// [`Error::OutOfBounds`] if the range does not fit,
    /// [`Error::Overlap`] if it touches a typed object that is live in this
    /// process.
    pub fn write_at(&self, offset: usize, buf: &[u8]) -> Result<()> {
        let _claim = self.claim_range(offset, buf.len())?;
        // SAFETY: the range lies inside the mapping (checked).
        unsafe {
            std::ptr::copy_nonoverlapping(buf.as_ptr(), self.seg.base().add(offset), buf.len())
        };
        Ok(())
    }

    /// Checks that the range fits, and claims it against objects for the
    /// duration of a copy.
    fn claim_range(&self, offset: usize, len: usize) -> Result<ranges::RawAccess> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size() => ranges::begin_raw(self.seg.file_id(), offset, end),
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

    /// Opens the named segment `r` names, checking that the name still
    /// leads to the same file.
    pub(crate) fn from_ref(r: &SegmentRef) -> Result<SharedMemory> {
        match r {
            SegmentRef::Named { name, .. } => Ok(SharedMemory {
                seg: Segment::attach(r)?,
                name: name.clone(),
            }),
            SegmentRef::Memfd { .. } => Err(Error::InvalidDescriptor {
                reason: "an anonymous memfd segment is not a named SharedMemory".into(),
            }),
        }
    }

    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }
}

/// Encodes the segment by name (and inode), as Python pickles a
/// `SharedMemory`.
impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.segment_ref().serialize(s)
    }
}

/// Opens the named segment again, checking that the name still leads to
/// the same file (not one unlinked and re-created since).
impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let r = SegmentRef::deserialize(d)?;
        SharedMemory::from_ref(&r).map_err(|e| attach_failed(format!("SharedMemory: {e}")))
    }
}
