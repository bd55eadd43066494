//! Bad input: zero and absurd sizes, wrong-type attach, unpublished,
//! corrupted and forged headers, garbage descriptors. Each is a clear error;
//! none may crash or touch memory outside the segment.
#![cfg(not(loom))]

mod common;

use common::ShmName;
use multiproc::SharedObject;
use multiproc::{
    Array, AtomicValue, Descriptor, Error, Fingerprint, ObjectKind, RLock, RawArray, RawValue,
    SegmentRef, SharedMemory, Value,
};

#[test]
fn zero_and_absurd_lengths() {
    assert!(matches!(
        Array::<u8>::new(0),
        Err(Error::InvalidSize { requested: 0, .. })
    ));
    assert!(matches!(
        RawArray::<u8>::new(0),
        Err(Error::InvalidSize { .. })
    ));
    assert!(matches!(
        Array::<u32>::from_slice(&[]),
        Err(Error::InvalidSize { .. })
    ));
    assert!(matches!(
        Array::<u64>::new(usize::MAX),
        Err(Error::InvalidSize { .. })
    ));
    assert!(matches!(
        RawArray::<u64>::new(usize::MAX / 8),
        Err(Error::InvalidSize { .. })
    ));
    // Larger than RAM and swap together, but no overflow: refused up front.
    assert!(matches!(
        Array::<u8>::new(1 << 50),
        Err(Error::InvalidSize { .. })
    ));
    assert!(Array::<u64>::shared_size(usize::MAX).is_err());
}

#[test]
fn index_and_slice_errors() {
    let a = Array::<u32>::new(4).unwrap();
    assert_eq!(a.get(4), None);
    assert!(matches!(
        a.set(4, 1),
        Err(Error::IndexOutOfRange { index: 4, len: 4 })
    ));
    assert!(matches!(
        a.copy_from_slice(&[1, 2, 3]),
        Err(Error::SliceLength {
            expected: 4,
            found: 3
        })
    ));
    assert!(matches!(
        a.copy_to_slice(&mut [0; 5]),
        Err(Error::SliceLength { .. })
    ));
    assert!(matches!(
        a.write_at(3, &[1, 2]),
        Err(Error::IndexOutOfRange { .. })
    ));
    assert!(matches!(
        a.read_at(usize::MAX, &mut [0; 2]),
        Err(Error::IndexOutOfRange { .. })
    ));
    let r = RawArray::<u8>::new(3).unwrap();
    // SAFETY: no other access to this array while the slices live.
    unsafe {
        assert!(r.slice_mut(2..4).is_none());
        #[allow(clippy::reversed_empty_ranges)]
        let rev = r.slice_mut(2..1);
        assert!(rev.is_none());
        assert_eq!(r.slice_mut(1..3).map(|s| s.len()), Some(2));
    }
    assert_eq!(a.to_vec(), [0; 4]);
}

#[test]
fn wrong_type_kind_and_length_attach() {
    let v = Value::new(1u32).unwrap();
    let d = v.descriptor();
    assert!(matches!(
        Value::<f32>::attach(&d),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(matches!(
        Value::<u64>::attach(&d),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(matches!(
        RawValue::<u32>::attach(&d),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        AtomicValue::<u32>::attach(&d),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        Array::<u32>::attach(&d),
        Err(Error::KindMismatch { .. })
    ));
    assert_eq!(Value::<u32>::attach(&d).unwrap().get(), 1);
    let a = Array::<u16>::new(10).unwrap();
    assert!(matches!(
        RawArray::<u16>::attach(&a.descriptor()),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        Array::<i16>::attach(&a.descriptor()),
        Err(Error::LayoutMismatch { .. })
    ));
}

/// Mirror of `Descriptor`'s serialised form, to forge descriptors as a
/// hostile or buggy peer would.
#[derive(serde::Serialize, serde::Deserialize)]
struct Forged {
    segment: SegmentRef,
    offset: u64,
    kind: ObjectKind,
    fingerprint: Fingerprint,
    len: u64,
    part: u32,
}

fn forge(d: &Descriptor, f: impl FnOnce(&mut Forged)) -> Descriptor {
    let mut m: Forged = postcard::from_bytes(&d.to_bytes()).unwrap();
    f(&mut m);
    Descriptor::from_bytes(&postcard::to_allocvec(&m).unwrap()).unwrap()
}

#[test]
fn garbage_and_forged_descriptors() {
    assert!(matches!(
        Descriptor::from_bytes(b""),
        Err(Error::InvalidDescriptor { .. })
    ));
    assert!(matches!(
        Descriptor::from_bytes(&[0xff; 40]),
        Err(Error::InvalidDescriptor { .. })
    ));

    let a = Array::<u64>::new(16).unwrap();
    let d = a.descriptor();
    assert_eq!(Descriptor::from_bytes(&d.to_bytes()).unwrap(), d);
    // Another length than the header's.
    let longer = forge(&d, |m| m.len = 1 << 40);
    assert!(matches!(
        Array::<u64>::attach(&longer),
        Err(Error::LengthMismatch { .. })
    ));
    // An offset past the segment, and a misaligned one.
    let far = forge(&d, |m| m.offset = u64::MAX - 8);
    assert!(matches!(
        Array::<u64>::attach(&far),
        Err(Error::OutOfBounds { .. })
    ));
    let odd = forge(&d, |m| m.offset += 8);
    assert!(matches!(
        Array::<u64>::attach(&odd),
        Err(Error::OutOfBounds { .. })
    ));
    // An offset inside the segment where nothing was placed.
    let empty = forge(&d, |m| m.offset = 1 << 19);
    let err = Array::<u64>::attach(&empty).unwrap_err();
    assert!(
        matches!(err, Error::NotReady { .. } | Error::Corrupted { .. }),
        "{err}"
    );
    // A file identity that does not match the descriptor number.
    let other = forge(&d, |m| {
        if let SegmentRef::Memfd { ino, .. } = &mut m.segment {
            *ino ^= 0x5555;
        }
    });
    let err = std::thread::spawn(move || Array::<u64>::attach(&other).map(|_| ()))
        .join()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidDescriptor { .. }), "{err}");
    // A process that does not exist.
    let gone = forge(&d, |m| {
        if let SegmentRef::Memfd { pid, fd, ino, .. } = &mut m.segment {
            *pid = u32::MAX / 2;
            *fd = 100_000;
            *ino ^= 1;
        }
    });
    let err = std::thread::spawn(move || Array::<u64>::attach(&gone).map(|_| ()))
        .join()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    // A named segment that does not exist.
    let missing = forge(&d, |m| {
        m.segment = SegmentRef::Named {
            name: "multiproc-test-no-such-segment".into(),
            dev: 0,
            ino: 0,
        }
    });
    assert!(matches!(
        Array::<u64>::attach(&missing),
        Err(Error::NotFound { .. })
    ));
}

// Header field offsets (see src/shm/header.rs).
const READY: usize = 8;
const LEN: usize = 32;
const CHECKSUM: usize = 56;

/// FNV-1a over the header fields, as the crate computes its checksum.
fn checksum(h: &[u8; 64]) -> u64 {
    let w64 = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap());
    let w32 = |o: usize| u64::from(u32::from_le_bytes(h[o..o + 4].try_into().unwrap()));
    let mut x: u64 = 0xcbf2_9ce4_8422_2325;
    for word in [
        w64(0),
        w32(12),
        w32(16),
        w32(20),
        w64(24),
        w64(32),
        w64(40),
        w32(48),
        w32(52),
    ] {
        for b in word.to_le_bytes() {
            x ^= u64::from(b);
            x = x.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    x
}

#[test]
fn unpublished_and_corrupted_headers() {
    let name = ShmName::new("corrupt");
    let shm = SharedMemory::create(&name.0, 16 * 1024).unwrap();
    // Nothing placed: not ready.
    assert!(matches!(
        Value::<u64>::open_at(&shm, 0),
        Err(Error::NotReady { offset: 0 })
    ));
    // Offsets that do not fit or are misaligned.
    assert!(matches!(
        Value::<u64>::open_at(&shm, 32),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        Value::<u64>::open_at(&shm, shm.size()),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        Value::<u64>::create_at(&shm, 8, 1),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        Array::<u64>::create_at(&shm, 0, 1 << 20),
        Err(Error::OutOfBounds { .. })
    ));

    let good = Array::<u32>::create_at(&shm, 0, 8).unwrap();
    let peer = common::Peer::open(&shm);
    let pristine = peer.header(0);

    // Half-initialised: ready word still says "being initialised".
    peer.write(READY, &1u32.to_le_bytes());
    assert!(matches!(
        Array::<u32>::open_at(&shm, 0),
        Err(Error::NotReady { .. })
    ));
    // A future layout version.
    peer.write(READY, &0x4D50_00F0u32.to_le_bytes());
    assert!(matches!(
        Array::<u32>::open_at(&shm, 0),
        Err(Error::VersionMismatch { found: 240, .. })
    ));
    // Garbage in the ready word.
    peer.write(READY, &0xdead_beefu32.to_le_bytes());
    assert!(matches!(
        Array::<u32>::open_at(&shm, 0),
        Err(Error::Corrupted { .. })
    ));
    peer.write(0, &pristine);
    assert!(Array::<u32>::open_at(&shm, 0).is_ok());

    // Bad magic.
    peer.write(0, b"NOTMAGIC");
    assert!(matches!(
        Array::<u32>::open_at(&shm, 0),
        Err(Error::Corrupted { .. })
    ));
    peer.write(0, &pristine);
    // A flipped length bit: the checksum catches it.
    peer.write(LEN, &9u64.to_le_bytes());
    assert!(matches!(
        Array::<u32>::open_at(&shm, 0),
        Err(Error::Corrupted { .. })
    ));
    peer.write(0, &pristine);

    // A forged header with a valid checksum and a length far past the end of
    // the segment: refused, never read through.
    let mut forged = pristine;
    let huge: u64 = 1 << 40;
    forged[LEN..LEN + 8].copy_from_slice(&huge.to_le_bytes());
    forged[40..48].copy_from_slice(&(128 + 4 * huge).to_le_bytes());
    let sum = checksum(&forged);
    forged[CHECKSUM..].copy_from_slice(&sum.to_le_bytes());
    peer.write(0, &forged);
    let err = Array::<u32>::open_at(&shm, 0).unwrap_err();
    assert!(matches!(err, Error::Corrupted { .. }), "{err}");
    // Forged sizes that disagree with kind and length.
    let mut forged = pristine;
    forged[40..48].copy_from_slice(&10u64.to_le_bytes());
    let sum = checksum(&forged);
    forged[CHECKSUM..].copy_from_slice(&sum.to_le_bytes());
    peer.write(0, &forged);
    assert!(matches!(
        Array::<u32>::open_at(&shm, 0),
        Err(Error::Corrupted { .. })
    ));

    // The handle made before the scribbling keeps its own validated layout:
    // still 8 elements, still in bounds.
    assert_eq!(good.len(), 8);
    good.copy_from_slice(&[7; 8]).unwrap();
    assert_eq!(good.to_vec(), [7; 8]);
}

/// A peer that scribbles garbage over the whole payload of a live array,
/// lock word included, cannot make us access memory outside the segment.
#[test]
fn scribbled_payload_stays_in_bounds() {
    let name = ShmName::new("scribble");
    let shm = SharedMemory::create(&name.0, 4096).unwrap();
    let a = RawArray::<u64>::create_at(&shm, 0, 32).unwrap();
    let peer = common::Peer::open(&shm);
    let junk: Vec<u8> = (0..shm.size()).map(|i| (i * 31 + 7) as u8).collect();
    peer.write(0, &junk);
    assert_eq!(a.len(), 32);
    assert!(a.get(31).is_some());
    assert!(a.get(32).is_none());
    assert_eq!(a.to_vec().len(), 32);
    assert!(RawArray::<u64>::open_at(&shm, 0).is_err());
}

/// Two live objects may not overlap in this process, and raw byte access
/// may not touch a live object: either would let a write change bytes under
/// a guard's `&mut`.
#[test]
fn overlapping_objects_and_raw_writes_are_refused() {
    let name = ShmName::new("overlap");
    let shm = SharedMemory::create(&name.0, 16 * 1024).unwrap();
    let a = Array::<u64>::create_at(&shm, 0, 100).unwrap(); // bytes 0..928
    let err = Value::create_at(&shm, 128, 1u64).unwrap_err();
    assert!(matches!(err, Error::Overlap { other: 0, .. }), "{err}");
    assert!(matches!(
        shm.write_at(200, &[1, 2, 3]),
        Err(Error::Overlap { .. })
    ));
    assert!(matches!(
        shm.read_at(0, &mut [0u8; 8]),
        Err(Error::Overlap { .. })
    ));
    // Past the array: fine.
    shm.write_at(1024, &[9; 8]).unwrap();
    let v = Value::create_at(&shm, 1024, 2u64).unwrap(); // zeroes its own bytes
    assert_eq!(v.get(), 2);
    // The same object attached again is fine (one registration).
    let again = Array::<u64>::open_at(&shm, 0).unwrap();
    assert_eq!(again.len(), a.len());
    // Once every handle is gone, the bytes are free for raw access again.
    drop((a, again));
    let mut h = [0u8; 8];
    shm.read_at(0, &mut h).unwrap();
    assert_eq!(&h, b"MPROCOBJ");
}

/// A genuine header copied into another live object's data (as a forged
/// descriptor would point at) is refused: the range belongs to that object.
#[test]
fn object_inside_another_object_is_refused() {
    let name = ShmName::new("nested");
    let shm = SharedMemory::create(&name.0, 16 * 1024).unwrap();
    // Make a real Value at 8192, copy its bytes out once it is dropped.
    let bytes = {
        let v = Value::create_at(&shm, 8192, 42u64).unwrap();
        let n = Value::<u64>::shared_size();
        drop(v);
        let mut b = vec![0u8; n];
        shm.read_at(8192, &mut b).unwrap();
        b
    };
    // A byte array whose data (from offset 64) now holds that object image
    // at segment offset 128.
    let raw = RawArray::<u8>::create_at(&shm, 0, 4096).unwrap();
    raw.write_at(64, &bytes).unwrap();
    let err = Value::<u64>::open_at(&shm, 128).unwrap_err();
    assert!(matches!(err, Error::Overlap { other: 0, .. }), "{err}");
    // Through a descriptor too.
    let real = Value::<u64>::open_at(&shm, 8192).unwrap();
    let forged = forge(&real.descriptor(), |m| m.offset = 128);
    assert!(matches!(
        Value::<u64>::attach(&forged),
        Err(Error::Overlap { .. })
    ));
}

/// A descriptor naming a memfd that is not sealed against resizing (so a
/// peer could truncate it under our mapping) is refused.
#[test]
fn unsealed_memfd_is_refused() {
    use std::os::fd::AsRawFd;
    let fd = rustix::fs::memfd_create("multiproc", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, 4096).unwrap();
    let st = rustix::fs::fstat(&fd).unwrap();
    let v = Value::new(1u64).unwrap();
    let forged = forge(&v.descriptor(), |m| {
        m.segment = SegmentRef::Memfd {
            pid: std::process::id(),
            fd: fd.as_raw_fd(),
            dev: st.st_dev,
            ino: st.st_ino,
        };
        m.offset = 64;
    });
    let err = std::thread::spawn(move || Value::<u64>::attach(&forged).map(|_| ()))
        .join()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidDescriptor { .. }), "{err}");
}

/// `open` does not follow a symbolic link planted under the segment's name.
#[test]
fn open_refuses_symlink() {
    let name = ShmName::new("symlink");
    let target = std::env::temp_dir().join(format!("{}-target", name.0));
    std::fs::write(&target, [0u8; 4096]).unwrap();
    std::os::unix::fs::symlink(&target, format!("/dev/shm/{}", name.0)).unwrap();
    let err = SharedMemory::open(&name.0).unwrap_err();
    let _ = std::fs::remove_file(&target);
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err}");
}

/// The longest name the limit announces really works.
#[test]
fn longest_name_is_accepted() {
    let base = ShmName::new("long");
    let long = format!(
        "{}{}",
        base.0,
        "x".repeat(multiproc::MAX_NAME_LEN - base.0.len())
    );
    assert_eq!(long.len(), multiproc::MAX_NAME_LEN);
    let shm = SharedMemory::create(&long, 64).unwrap();
    assert!(SharedMemory::open(&long).is_ok());
    shm.unlink().unwrap();
}

/// Garbage a peer left in a free `RLock`'s recursion count: the next locker
/// starts at one level, and its last unlock frees the lock. (Taking the lock
/// used to add one to whatever the count held: an overflow panic in debug
/// builds for `u32::MAX`, and otherwise a count that never came back to zero,
/// so the lock stayed held. Found by the `attach_bytes` fuzz target.)
#[test]
fn scribbled_rlock_count_starts_over() {
    let name = ShmName::new("rlock-count");
    let shm = SharedMemory::create(&name.0, 4096).unwrap();
    let r = RLock::create_at(&shm, 0).unwrap();
    let peer = common::Peer::open(&shm);
    // After the header: the lock word (u64, 0 = free), then the count (u32).
    const COUNT: usize = 64 + 8;
    for (i, garbage) in [u32::MAX, 7, u32::MAX - 1].into_iter().enumerate() {
        peer.write(COUNT, &garbage.to_le_bytes());
        let g = match i {
            0 => r.try_lock().unwrap(),
            1 => r.lock_timeout(common::DEADLINE).unwrap(),
            _ => r.lock().unwrap(),
        };
        assert_eq!(r.count(), 1);
        let inner = r.try_lock().unwrap();
        assert_eq!(r.count(), 2);
        drop((inner, g));
        assert!(!r.is_owned());
        assert_eq!(r.count(), 0);
        // Free for another thread too.
        std::thread::scope(|s| {
            s.spawn(|| assert!(r.try_lock().is_ok()));
        });
    }
}

/// A forged channel header of zero-sized elements may claim any length
/// without its size overflowing; a capacity above `spsc::MAX_CAPACITY` is
/// refused when attaching, as when placing. (It used to attach, and a
/// scribbled position near the end of such a ring overflowed the ring's
/// index arithmetic: a panic in debug builds.) At the maximum itself,
/// positions near wrap-around stay harmless.
#[test]
fn forged_ring_capacity_above_the_maximum() {
    use multiproc::spsc::{self, Consumer, Producer};
    let name = ShmName::new("ring-capacity");
    let shm = SharedMemory::create(&name.0, 4096).unwrap();
    drop(spsc::channel_at::<()>(&shm, 0, 1).unwrap());
    let peer = common::Peer::open(&shm);
    let pristine = peer.header(0);
    let forge = |len: u64| {
        let mut h = pristine;
        h[LEN..LEN + 8].copy_from_slice(&len.to_le_bytes());
        // Zero-sized elements: the total size stays that of the state lines.
        let sum = checksum(&h);
        h[CHECKSUM..].copy_from_slice(&sum.to_le_bytes());
        peer.write(0, &h);
    };
    let max = spsc::MAX_CAPACITY as u64;
    for len in [max + 1, 1 << 62, u64::MAX - 1, u64::MAX] {
        forge(len);
        let err = Producer::<()>::open_at(&shm, 0).unwrap_err();
        assert!(matches!(err, Error::Corrupted { .. }), "{len}: {err}");
        let err = Consumer::<()>::open_at(&shm, 0).unwrap_err();
        assert!(matches!(err, Error::Corrupted { .. }), "{len}: {err}");
    }
    forge(max);
    // The tail after the header, the head two lines later (ObjectKind::Spsc).
    const TAIL: usize = 64;
    const HEAD: usize = 192;
    for (tail, head) in [
        (max - 1, 0),
        (u64::MAX - 1, u64::MAX - 3),
        (u64::MAX, u64::MAX - max + 2),
        (2 * max - 2, max - 9),
    ] {
        peer.write_u64(TAIL, tail);
        peer.write_u64(HEAD, head);
        let mut tx = Producer::<()>::open_at(&shm, 0).unwrap();
        let mut rx = Consumer::<()>::open_at(&shm, 0).unwrap();
        assert_eq!(tx.capacity(), spsc::MAX_CAPACITY);
        for _ in 0..3 {
            let _ = tx.try_push(());
            assert!(tx.push_slice(&[(); 10]) <= 10);
            let _ = rx.try_pop();
            assert!(rx.pop_into(&mut [(); 7]) <= 7);
            assert!(tx.len() <= spsc::MAX_CAPACITY && rx.len() <= spsc::MAX_CAPACITY);
        }
    }
}
