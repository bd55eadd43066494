//! Named segments (`SharedMemory`) between processes, and objects placed in
//! them at chosen offsets.
#![cfg(not(loom))]

mod common;

use std::os::fd::AsFd;
use std::sync::atomic::Ordering::SeqCst;

use common::{ShmName, fork};
use multiproc::SharedObject;
use multiproc::{Array, AtomicValue, Error, SharedMemory, Value};

#[test]
fn smoke_create_open_unlink() {
    let name = ShmName::new("smoke");
    let shm = SharedMemory::create(&name.0, 1000).unwrap();
    assert_eq!(shm.name(), name.0);
    assert!(shm.size() >= 1000);
    shm.write_at(10, b"parent").unwrap();
    let n = name.0.clone();
    let kid = fork(move || {
        let Ok(other) = SharedMemory::open(&n) else {
            return 1;
        };
        let mut buf = [0u8; 6];
        if other.read_at(10, &mut buf).is_err() || &buf != b"parent" {
            return 2;
        }
        other.write_at(0, b"child").map_or(3, |()| 0)
    });
    assert_eq!(kid.join(), 0);
    let mut buf = [0u8; 5];
    shm.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"child");
    shm.unlink().unwrap();
    assert!(matches!(
        SharedMemory::open(&name.0),
        Err(Error::NotFound { .. })
    ));
    // The mapping outlives the name.
    shm.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"child");
    assert!(matches!(shm.unlink(), Err(Error::NotFound { .. })));
}

/// A leading slash is accepted and dropped, as Python does.
#[test]
fn leading_slash_is_the_same_name() {
    let name = ShmName::new("slash");
    let a = SharedMemory::create(&format!("/{}", name.0), 64).unwrap();
    assert_eq!(a.name(), name.0);
    let b = SharedMemory::open(&name.0).unwrap();
    a.write_at(0, &[42]).unwrap();
    let mut x = [0u8];
    b.read_at(0, &mut x).unwrap();
    assert_eq!(x, [42]);
}

#[test]
fn create_errors() {
    let name = ShmName::new("errors");
    let _shm = SharedMemory::create(&name.0, 64).unwrap();
    assert!(matches!(
        SharedMemory::create(&name.0, 64),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        SharedMemory::create("", 64),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        SharedMemory::create("/", 64),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        SharedMemory::create("a/b", 64),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        SharedMemory::create("..", 64),
        Err(Error::InvalidName { .. })
    ));
    let long = "x".repeat(multiproc::MAX_NAME_LEN + 1);
    assert!(matches!(
        SharedMemory::create(&long, 64),
        Err(Error::InvalidName { .. })
    ));
    let zero = ShmName::new("zero");
    assert!(matches!(
        SharedMemory::create(&zero.0, 0),
        Err(Error::InvalidSize { requested: 0, .. })
    ));
    let huge = ShmName::new("huge");
    assert!(matches!(
        SharedMemory::create(&huge.0, usize::MAX / 2),
        Err(Error::InvalidSize { .. })
    ));
    // Failed creates leave nothing behind.
    assert!(matches!(
        SharedMemory::open(&zero.0),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        SharedMemory::open(&huge.0),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        SharedMemory::open("multiproc-test-missing"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        SharedMemory::remove("multiproc-test-missing"),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn read_write_bounds() {
    let name = ShmName::new("bounds");
    let shm = SharedMemory::create(&name.0, 4096).unwrap();
    let size = shm.size();
    assert!(shm.write_at(size - 1, &[1]).is_ok());
    assert!(matches!(
        shm.write_at(size, &[1]),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        shm.read_at(usize::MAX, &mut [0u8; 2]),
        Err(Error::OutOfBounds { .. })
    ));
}

/// A segment readable by group or others is refused on open.
#[test]
fn open_refuses_loose_mode() {
    let name = ShmName::new("mode");
    let shm = SharedMemory::create(&name.0, 64).unwrap();
    let fd = rustix::shm::open(
        format!("/{}", name.0).as_str(),
        rustix::shm::OFlags::RDWR,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    rustix::fs::fchmod(fd.as_fd(), rustix::fs::Mode::from_raw_mode(0o644)).unwrap();
    assert!(matches!(
        SharedMemory::open(&name.0),
        Err(Error::PermissionDenied { .. })
    ));
    drop(shm);
}

/// A segment owned by another user is refused (needs root to set up).
#[test]
fn open_refuses_other_owner() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: open_refuses_other_owner needs root to chown a segment");
        return;
    }
    let name = ShmName::new("owner");
    let _shm = SharedMemory::create(&name.0, 64).unwrap();
    let fd = rustix::shm::open(
        format!("/{}", name.0).as_str(),
        rustix::shm::OFlags::RDWR,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    // SAFETY: fchown on a descriptor we own.
    let r = unsafe { libc::fchown(std::os::fd::AsRawFd::as_raw_fd(&fd), 65534, 65534) };
    assert_eq!(r, 0);
    let err = SharedMemory::open(&name.0).unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err}");
}

/// Objects placed at offsets of a named segment, opened by an unrelated
/// process (a fresh exec of this binary) by name and offset.
#[test]
fn objects_in_named_segment_across_unrelated_process() {
    let name = ShmName::new("objects");
    let shm = SharedMemory::create(&name.0, 64 * 1024).unwrap();
    let v = Value::create_at(&shm, 0, 1.5f64).unwrap();
    let c_off = Value::<f64>::shared_size().next_multiple_of(AtomicValue::<u32>::shared_align());
    let c = AtomicValue::create_at(&shm, c_off, 10u32).unwrap();
    let a_off = 4096;
    let a = Array::<i32>::create_at(&shm, a_off, 100).unwrap();
    a.copy_from_slice(&(0..100).collect::<Vec<_>>()).unwrap();
    let mut data = name.0.clone().into_bytes();
    data.push(0);
    data.extend((c_off as u32).to_le_bytes());
    let (code, out) = common::run_self("role_open_named_objects", &data);
    assert_eq!(code, 0, "child output:\n{out}");
    assert_eq!(v.get(), -1.5);
    assert_eq!(c.load(SeqCst), 11);
    assert_eq!(a.to_vec(), (0..100).map(|x| x * 3).collect::<Vec<_>>());
    // Placing twice at one offset is refused.
    assert!(matches!(
        Value::create_at(&shm, 0, 0.0f64),
        Err(Error::AlreadyExists { .. })
    ));
}

/// The child side of [`objects_in_named_segment_across_unrelated_process`].
#[test]
#[ignore = "child half of a re-exec test: run by common::run_self"]
fn role_open_named_objects() {
    let Some(data) = common::role_data("role_open_named_objects") else {
        return;
    };
    let nul = data.iter().position(|&b| b == 0).unwrap();
    let name = std::str::from_utf8(&data[..nul]).unwrap();
    let c_off = u32::from_le_bytes(data[nul + 1..nul + 5].try_into().unwrap()) as usize;
    let shm = SharedMemory::open(name).unwrap();
    let v = Value::<f64>::open_at(&shm, 0).unwrap();
    v.set(-v.get());
    AtomicValue::<u32>::open_at(&shm, c_off)
        .unwrap()
        .fetch_add(1, SeqCst);
    let a = Array::<i32>::open_at(&shm, 4096).unwrap();
    assert_eq!(a.len(), 100);
    a.lock().unwrap().iter_mut().for_each(|x| *x *= 3);
    // Wrong kind or type at a right offset is refused.
    assert!(matches!(
        Array::<f64>::open_at(&shm, 0),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        Value::<u64>::open_at(&shm, 0),
        Err(Error::LayoutMismatch { .. })
    ));
}

/// A descriptor of an object in a named segment attaches by name; once the
/// name is unlinked and re-created, the old descriptor is refused.
#[test]
fn named_descriptor_detects_recreation() {
    let name = ShmName::new("recreate");
    let shm = SharedMemory::create(&name.0, 4096).unwrap();
    let v = Value::create_at(&shm, 0, 5u64).unwrap();
    let d = v.descriptor();
    let n = name.0.clone();
    let d2 = d.clone();
    let kid = fork(move || {
        // A fresh thread has an empty registry, so this opens by name.
        let t = std::thread::spawn(move || Value::<u64>::attach(&d2).map(|w| w.get()));
        match t.join() {
            Ok(Ok(5)) => 0,
            _ => 1,
        }
    });
    assert_eq!(kid.join(), 0);
    shm.unlink().unwrap();
    drop((v, shm));
    let again = SharedMemory::create(&n, 4096).unwrap();
    let _w = Value::create_at(&again, 0, 6u64).unwrap();
    let err = std::thread::spawn(move || Value::<u64>::attach(&d).map(|_| ()))
        .join()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidDescriptor { .. }), "{err}");
}

// ------------------------------------------------------- owned segments

/// Whether `/dev/shm/<name>` exists.
fn exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm/{name}")).exists()
}

/// Forks a child that creates `name` (owned or not), says so, and sleeps
/// until killed; returns it once the segment exists.
fn creator(name: &str, owned: bool) -> common::Child {
    let made = AtomicValue::new(0u32).unwrap();
    let n = name.to_owned();
    let m = made.clone();
    let kid = fork(move || {
        let shm = if owned {
            SharedMemory::create_owned(&n, 4096)
        } else {
            SharedMemory::create(&n, 4096)
        };
        let Ok(shm) = shm else {
            return 1;
        };
        drop(shm); // the lock outlives the handle
        m.store(1, SeqCst);
        std::thread::sleep(common::DEADLINE);
        0
    });
    let end = std::time::Instant::now() + common::DEADLINE;
    while made.load(SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < end,
            "the creator never made {name}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    kid
}

/// An owned segment whose creator was SIGKILLed is stale: the next `open`
/// unlinks it and reports `NotFound`; while the creator lived, `open` and
/// `remove_stale` left it alone. A plain segment of a killed creator stays,
/// as POSIX names do.
#[test]
fn owned_segment_of_a_killed_creator_is_removed() {
    let owned = ShmName::new("owned");
    let plain = ShmName::new("plain");
    let mut kid = creator(&owned.0, true);
    let mut other = creator(&plain.0, false);
    assert!(SharedMemory::open(&owned.0).is_ok(), "its creator lives");
    SharedMemory::remove_stale().unwrap();
    assert!(exists(&owned.0), "remove_stale left a live owner's segment");
    for k in [&mut kid, &mut other] {
        k.signal(libc::SIGKILL);
        assert_eq!(k.wait_timeout(common::DEADLINE), Some(-libc::SIGKILL));
    }
    assert!(matches!(
        SharedMemory::open(&owned.0),
        Err(Error::NotFound { .. })
    ));
    assert!(!exists(&owned.0), "open unlinked the stale segment");
    SharedMemory::remove_stale().unwrap();
    assert!(exists(&plain.0), "a plain segment is never removed");
    assert!(SharedMemory::open(&plain.0).is_ok());
}

/// `create` over the name of a stale owned segment replaces it, and
/// `remove_stale` unlinks stale ones and counts them.
#[test]
fn create_and_remove_stale_replace_stale_owned_segments() {
    let a = ShmName::new("stale-a");
    let b = ShmName::new("stale-b");
    for name in [&a, &b] {
        let mut kid = creator(&name.0, true);
        kid.signal(libc::SIGKILL);
        assert_eq!(kid.wait_timeout(common::DEADLINE), Some(-libc::SIGKILL));
    }
    let fresh = SharedMemory::create(&a.0, 100).unwrap();
    assert_eq!(fresh.size(), 100, "a new segment, not the stale one");
    // b is stale. Not checked: the count, since a concurrent test's
    // remove_stale may take b first.
    SharedMemory::remove_stale().unwrap();
    assert!(!exists(&b.0));
    assert!(exists(&a.0), "the fresh plain segment stays");
    drop(fresh);
}

/// A child the owner forked holds the owner's lock too: killing the owner
/// alone leaves the segment; once the child is gone as well, it is stale.
#[test]
fn a_forked_child_of_the_owner_keeps_the_segment() {
    let name = ShmName::new("owned-family");
    let grandchild = AtomicValue::new(0i32).unwrap();
    let made = AtomicValue::new(0u32).unwrap();
    let n = name.0.clone();
    let (gc_out, made_out) = (grandchild.clone(), made.clone());
    let mut owner = fork(move || {
        let Ok(_shm) = SharedMemory::create_owned(&n, 4096) else {
            return 1;
        };
        // SAFETY: the grandchild only sleeps and `_exit`s; it outlives us
        // on purpose (no PR_SET_PDEATHSIG) and ends by itself after 20 s
        // if the test could not kill it.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: sleep and _exit are async-signal-safe: all a forked
            // child of a multi-threaded process may call.
            unsafe {
                libc::sleep(20);
                libc::_exit(0);
            }
        }
        gc_out.store(pid, SeqCst);
        made_out.store(1, SeqCst);
        std::thread::sleep(common::DEADLINE);
        0
    });
    let end = std::time::Instant::now() + common::DEADLINE;
    while made.load(SeqCst) == 0 {
        assert!(std::time::Instant::now() < end, "the owner never made it");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let gc = grandchild.load(SeqCst);
    assert!(gc > 0);
    owner.signal(libc::SIGKILL);
    assert_eq!(owner.wait_timeout(common::DEADLINE), Some(-libc::SIGKILL));
    let open_now = SharedMemory::open(&name.0);
    // SAFETY: a plain kill of the grandchild we forked (through the owner).
    unsafe { libc::kill(gc, libc::SIGKILL) };
    assert!(open_now.is_ok(), "the owner's forked child still holds it");
    drop(open_now);
    // The grandchild is not ours to reap; its descriptors close as it dies.
    let end = std::time::Instant::now() + common::DEADLINE;
    while exists(&name.0) {
        assert!(std::time::Instant::now() < end, "never stale");
        let _ = SharedMemory::open(&name.0);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The owner's `unlink` releases its lock: a new owned segment under the
/// same name, made by the same process, is its own.
#[test]
fn unlink_releases_ownership() {
    let name = ShmName::new("owned-unlink");
    let shm = SharedMemory::create_owned(&name.0, 4096).unwrap();
    shm.unlink().unwrap();
    assert!(!exists(&name.0));
    let again = SharedMemory::create_owned(&name.0, 4096).unwrap();
    assert!(SharedMemory::open(&name.0).is_ok());
    again.unlink().unwrap();
}
