//! Segments: one file (a memfd or a POSIX shm object) mapped `MAP_SHARED`.
//!
//! A [`Segment`] owns the file descriptor and the mapping and is shared by
//! `Arc` among every handle placed in it; the mapping goes away with the last
//! handle in this process, the memory with the last mapping or descriptor in
//! any process.
//!
//! Each thread keeps a registry from the file's identity (device, inode) to
//! the live segment, so attaching many objects of one segment (from
//! descriptors, say in a spawned child) maps it once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Weak};

use memmap2::{MmapOptions, MmapRaw};
use rustix::fs::{self, MemfdFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::loom::atomic::AtomicU64;
use crate::shm::header::HEADER_SIZE;

/// `b"MPROCSEG"` as a little-endian integer: the first word of every memfd
/// segment this crate creates.
const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"MPROCSEG");
/// Offset of the bump pointer in a segment header.
const NEXT_OFFSET: usize = 24;
/// Size of the segment header; objects start after it.
pub(crate) const SEGMENT_HEADER_SIZE: usize = HEADER_SIZE;

/// How to find a segment from another process. Part of a
/// [`Descriptor`](crate::Descriptor).
///
/// Serialising one that names a memfd of this process while a spawn encodes
/// its arguments hands the spawned child that descriptor (see
/// [`Process::spawn`](crate::Process::spawn) and `collect_memfds`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[non_exhaustive]
pub enum SegmentRef {
    /// An anonymous memfd, reachable as descriptor `fd` of process `pid`
    /// (inherited by a child, or opened through `/proc/<pid>/fd/<fd>` while
    /// `pid` lives). `dev` and `ino` identify the file, so a reused
    /// descriptor number is detected rather than mapped.
    Memfd {
        /// The process whose descriptor table holds `fd`.
        pid: u32,
        /// The descriptor number in that process.
        fd: i32,
        /// Device of the memfd's inode.
        dev: u64,
        /// Inode number of the memfd.
        ino: u64,
    },
    /// A named POSIX shared memory object (`/dev/shm/<name>`).
    Named {
        /// The name, without the leading slash.
        name: String,
        /// Device of the object's inode when the descriptor was made.
        dev: u64,
        /// Inode number, so a segment unlinked and re-created under the same
        /// name is detected.
        ino: u64,
    },
}

impl Serialize for SegmentRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        /// The same shape as `SegmentRef`, so the derived `Deserialize`
        /// reads it back.
        #[derive(Serialize)]
        #[serde(rename = "SegmentRef")]
        enum Wire<'a> {
            Memfd {
                pid: u32,
                fd: i32,
                dev: u64,
                ino: u64,
            },
            Named {
                name: &'a str,
                dev: u64,
                ino: u64,
            },
        }
        let wire = match self {
            SegmentRef::Memfd { pid, fd, dev, ino } => {
                note_memfd(*fd, *dev, *ino);
                Wire::Memfd {
                    pid: *pid,
                    fd: *fd,
                    dev: *dev,
                    ino: *ino,
                }
            }
            SegmentRef::Named { name, dev, ino } => Wire::Named {
                name,
                dev: *dev,
                ino: *ino,
            },
        };
        wire.serialize(s)
    }
}

thread_local! {
    /// The memfds named by the `SegmentRef`s serialised on this thread
    /// inside [`collect_memfds`].
    static COLLECT: RefCell<Option<Vec<(RawFd, u64, u64)>>> = const { RefCell::new(None) };
}

/// A memfd of this process named by a `SegmentRef` being serialised.
fn note_memfd(fd: RawFd, dev: u64, ino: u64) {
    let _ = COLLECT.try_with(|c| {
        if let Some(v) = c.borrow_mut().as_mut() {
            v.push((fd, dev, ino));
        }
    });
}

/// Runs `encode` and returns what it returned, with every memfd of this
/// process (descriptor number, device, inode) that a `SegmentRef` serialised
/// on this thread meanwhile names: what a spawned child must inherit to
/// attach the objects in the encoding.
pub(crate) fn collect_memfds<R>(encode: impl FnOnce() -> R) -> (R, Vec<(RawFd, u64, u64)>) {
    /// Ends the collection however `encode` ends.
    struct Collecting;
    impl Drop for Collecting {
        fn drop(&mut self) {
            let _ = COLLECT.try_with(|c| c.borrow_mut().take());
        }
    }
    let _ = COLLECT.try_with(|c| *c.borrow_mut() = Some(Vec::new()));
    let collecting = Collecting;
    let r = encode();
    let noted = COLLECT
        .try_with(|c| c.borrow_mut().take())
        .ok()
        .flatten()
        .unwrap_or_default();
    drop(collecting);
    (r, noted)
}

/// What backs a segment.
#[derive(Debug)]
pub(crate) enum Backing {
    /// An anonymous memfd (arena chunks, large objects).
    Memfd,
    /// A named POSIX shm object; the name is kept without its leading slash.
    Named(String),
}

/// One mapped file. See the module docs.
#[derive(Debug)]
pub(crate) struct Segment {
    map: MmapRaw,
    fd: OwnedFd,
    dev: u64,
    ino: u64,
    backing: Backing,
}

thread_local! {
    static REGISTRY: RefCell<HashMap<(u64, u64), Weak<Segment>>> = RefCell::new(HashMap::new());
}

impl Segment {
    /// Creates an anonymous memfd segment of at least `size` bytes (a segment
    /// header included), sealed against resizing, and writes its header.
    pub(crate) fn create_memfd(size: usize) -> Result<Arc<Segment>> {
        let size = size
            .checked_next_multiple_of(page_size())
            .ok_or(Error::InvalidSize {
                requested: size as u64,
                reason: "size overflows the address space",
            })?;
        check_fits_memory(size as u64)?;
        let fd = fs::memfd_create("multiproc", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
            .map_err(|e| Error::io("memfd_create", e))?;
        fs::ftruncate(&fd, size as u64).map_err(|e| Error::io("ftruncate", e))?;
        // Nobody, not even a hostile peer holding the fd, can shrink the file
        // under our mapping (which would turn accesses into SIGBUS).
        fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
            .map_err(|e| Error::io("fcntl(F_ADD_SEALS)", e))?;
        let seg = Segment::map(fd, Backing::Memfd)?;
        // SAFETY: the mapping is fresh, at least one page, page-aligned; we
        // write the segment header before anyone else can know the segment.
        unsafe {
            let base = seg.base();
            base.cast::<u64>().write(SEGMENT_MAGIC);
            base.add(8).cast::<u32>().write(1);
            base.add(16).cast::<u64>().write(seg.len() as u64);
            base.add(NEXT_OFFSET)
                .cast::<u64>()
                .write(SEGMENT_HEADER_SIZE as u64);
        }
        Ok(seg.register())
    }

    /// Maps the whole of `fd` read-write and shared.
    pub(crate) fn map(fd: OwnedFd, backing: Backing) -> Result<Segment> {
        let st = fs::fstat(&fd).map_err(|e| Error::io("fstat", e))?;
        let len = usize::try_from(st.st_size).map_err(|_| Error::InvalidSize {
            requested: st.st_size as u64,
            reason: "segment size does not fit the address space",
        })?;
        if len == 0 {
            return Err(Error::InvalidSize {
                requested: 0,
                reason: "the segment is empty (its creator has not sized it yet)",
            });
        }
        let map = MmapOptions::new()
            .len(len)
            .map_raw(fd.as_raw_fd())
            .map_err(|e| Error::io("mmap", e))?;
        Ok(Segment {
            map,
            fd,
            dev: st.st_dev,
            ino: st.st_ino,
            backing,
        })
    }

    /// Records the segment in this thread's registry and wraps it.
    pub(crate) fn register(self) -> Arc<Segment> {
        let key = (self.dev, self.ino);
        let seg = Arc::new(self);
        // During thread-local teardown there is no registry: skip it.
        let _ = REGISTRY.try_with(|r| {
            let mut r = r.borrow_mut();
            if r.len() >= 64 && r.len().is_power_of_two() {
                r.retain(|_, w| w.strong_count() > 0);
            }
            r.insert(key, Arc::downgrade(&seg));
        });
        seg
    }

    /// The live segment for this file identity, if this thread maps it.
    pub(crate) fn lookup(dev: u64, ino: u64) -> Option<Arc<Segment>> {
        REGISTRY
            .try_with(|r| r.borrow().get(&(dev, ino)).and_then(Weak::upgrade))
            .ok()
            .flatten()
    }

    /// Attaches the segment a descriptor names: reuses this thread's
    /// mapping, else maps an inherited descriptor, else opens it through
    /// `/proc` (memfd) or by name (named segments).
    pub(crate) fn attach(r: &SegmentRef) -> Result<Arc<Segment>> {
        match r {
            SegmentRef::Memfd { pid, fd, dev, ino } => {
                if let Some(seg) = Segment::lookup(*dev, *ino) {
                    return Ok(seg);
                }
                // An inherited descriptor (spawned children) first.
                if let Some(own) = dup_if_same(*fd, *dev, *ino) {
                    require_sealed(&own)?;
                    return Ok(Segment::map(own, Backing::Memfd)?.register());
                }
                let path = format!("/proc/{pid}/fd/{fd}");
                let gone = || Error::NotFound {
                    what: format!("memfd segment {path} (its process or descriptor is gone)"),
                };
                // Look before opening: only a memfd of ours is worth opening
                // (opening a tty, FIFO or device could block or have effects).
                match std::fs::read_link(&path) {
                    Ok(target) if target.to_string_lossy().starts_with(MEMFD_LINK_PREFIX) => {}
                    Ok(_) => {
                        return Err(Error::InvalidDescriptor {
                            reason: format!("{path} is not a multiproc memfd"),
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                        return Err(Error::PermissionDenied {
                            name: path.clone(),
                            reason: "cannot open another process's descriptor".into(),
                        });
                    }
                    Err(_) => return Err(gone()),
                }
                let owned = fs::open(
                    path.as_str(),
                    OFlags::RDWR | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
                    Mode::empty(),
                )
                .map_err(|e| match e {
                    Errno::NOENT => gone(),
                    Errno::ACCESS | Errno::PERM => Error::PermissionDenied {
                        name: path.clone(),
                        reason: "cannot open another process's descriptor".into(),
                    },
                    e => Error::io("open /proc/<pid>/fd/<fd>", e),
                })?;
                let st = fs::fstat(&owned).map_err(|e| Error::io("fstat", e))?;
                if (st.st_dev, st.st_ino) != (*dev, *ino) {
                    return Err(Error::InvalidDescriptor {
                        reason: format!("{path} is not the segment the descriptor names"),
                    });
                }
                require_sealed(&owned)?;
                Ok(Segment::map(owned, Backing::Memfd)?.register())
            }
            SegmentRef::Named { name, dev, ino } => {
                if let Some(seg) = Segment::lookup(*dev, *ino) {
                    return Ok(seg);
                }
                let fd = crate::shm::named::open_checked(name)?;
                let st = fs::fstat(&fd).map_err(|e| Error::io("fstat", e))?;
                if (st.st_dev, st.st_ino) != (*dev, *ino) {
                    return Err(Error::InvalidDescriptor {
                        reason: format!(
                            "shared memory {name:?} was re-created since the descriptor was made"
                        ),
                    });
                }
                Ok(Segment::map(fd, Backing::Named(name.clone()))?.register())
            }
        }
    }

    /// How another process can find this segment.
    pub(crate) fn segment_ref(&self) -> SegmentRef {
        match &self.backing {
            Backing::Memfd => SegmentRef::Memfd {
                pid: std::process::id(),
                fd: self.fd.as_raw_fd(),
                dev: self.dev,
                ino: self.ino,
            },
            Backing::Named(name) => SegmentRef::Named {
                name: name.clone(),
                dev: self.dev,
                ino: self.ino,
            },
        }
    }

    /// The file's identity (device, inode).
    #[inline]
    pub(crate) fn file_id(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// First byte of the mapping (page-aligned).
    #[inline]
    pub(crate) fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Length of the mapping in bytes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The bump pointer of an arena segment.
    pub(crate) fn next_word(&self) -> &AtomicU64 {
        // SAFETY: arena segments are at least one page and start with a
        // segment header whose word at NEXT_OFFSET (8-aligned) is the bump
        // pointer; the mapping lives as long as `self`.
        unsafe { AtomicU64::from_ptr(self.base().add(NEXT_OFFSET).cast::<u64>()) }
    }
}

/// What `/proc/<pid>/fd/<fd>` reads for a memfd this crate made.
const MEMFD_LINK_PREFIX: &str = "/memfd:multiproc";

/// Refuses a memfd that could shrink under our mapping (one not made by this
/// crate, which seals every memfd against resizing): accesses past a
/// truncation would fault with SIGBUS.
fn require_sealed(fd: &OwnedFd) -> Result<()> {
    let seals = fs::fcntl_get_seals(fd).unwrap_or(SealFlags::empty());
    if seals.contains(SealFlags::SHRINK | SealFlags::GROW) {
        Ok(())
    } else {
        Err(Error::InvalidDescriptor {
            reason: "the file is not a sealed multiproc memfd".into(),
        })
    }
}

/// Duplicates descriptor `fd` of this process if it is open and is the file
/// (`dev`, `ino`).
fn dup_if_same(fd: RawFd, dev: u64, ino: u64) -> Option<OwnedFd> {
    if fd < 0 {
        return None;
    }
    // SAFETY: F_DUPFD_CLOEXEC only reads the descriptor number; a closed or
    // foreign number fails with EBADF and creates nothing.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return None;
    }
    // SAFETY: `new` is a descriptor we just created and own.
    let owned = unsafe { OwnedFd::from_raw_fd(new) };
    let st = fs::fstat(&owned).ok()?;
    ((st.st_dev, st.st_ino) == (dev, ino)).then_some(owned)
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    rustix::param::page_size()
}

/// Refuses sizes larger than this machine's RAM and swap together: such a
/// mapping could only end in SIGBUS or the OOM killer.
pub(crate) fn check_fits_memory(size: u64) -> Result<()> {
    let info = rustix::system::sysinfo();
    let unit = u64::from(info.mem_unit.max(1));
    let total = (info.totalram as u64)
        .saturating_add(info.totalswap as u64)
        .saturating_mul(unit);
    if size > total {
        return Err(Error::InvalidSize {
            requested: size,
            reason: "larger than this machine's memory and swap together",
        });
    }
    Ok(())
}
