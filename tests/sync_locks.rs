//! `Mutex`, `Lock`, `RLock` and the locks inside `Value`/`Array`, across real
//! processes: exclusion, timeouts, and survival of a holder killed by SIGKILL.
#![cfg(not(loom))]

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::{fork, fork_all};
use multiproc::SharedObject;
use multiproc::{Array, AtomicValue, Lock, Mutex, NotOwner, RLock, RawValue, TryLockError, Value};

/// Generous bound for a lock that must come free: a broken lock fails the
/// test instead of hanging it.
const SOON: Duration = Duration::from_secs(30);

/// CLOCK_MONOTONIC in nanoseconds: comparable across processes.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into our own timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn wait_until(flag: &AtomicValue<u32>, want: u32) {
    let end = Instant::now() + SOON;
    while flag.load(SeqCst) != want {
        assert!(Instant::now() < end, "flag never became {want}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// 4 processes x 100,000 increments of a plain (non-atomic) counter under a
/// `Lock`: exact only if the lock excludes.
#[test]
fn lock_four_processes_exact_total() {
    const N: u64 = 100_000;
    let lock = Lock::new().unwrap();
    let counter = RawValue::new(0u64).unwrap();
    fork_all(4, |_| {
        for _ in 0..N {
            let _g = lock.lock().unwrap();
            counter.set(counter.get() + 1);
        }
        0
    });
    assert_eq!(counter.get(), 4 * N);
    assert!(!lock.is_locked());
}

/// A `Mutex<T>` guarding its own data across processes.
#[test]
fn mutex_guards_data_across_processes() {
    const N: u64 = 20_000;
    let m = Mutex::new([0u64; 2]).unwrap();
    fork_all(3, |_| {
        for _ in 0..N {
            let mut g = m.lock().unwrap();
            if g[0] != g[1] {
                return 1;
            }
            g[0] += 1;
            g[1] += 1;
        }
        0
    });
    assert_eq!(*m.lock().unwrap(), [3 * N; 2]);
}

/// A child takes `lock`, tears the data it protects, says so, and waits to
/// be killed.
fn hold_and_wait<F: FnOnce()>(holding: &AtomicValue<u32>, take_and_tear: F) -> common::Child {
    fork(|| {
        take_and_tear();
        holding.store(1, SeqCst);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    })
}

/// SIGKILL the holder; the next locker (the parent, before it even reaps the
/// zombie) gets `OwnerDied` with the torn data, repairs it, marks it
/// consistent; later lockers get the lock clean.
#[test]
fn mutex_holder_killed_next_locker_recovers() {
    let m = Mutex::new([0u64; 2]).unwrap();
    let holding = AtomicValue::new(0u32).unwrap();
    let kid = hold_and_wait(&holding, || {
        let mut g = m.lock().unwrap();
        g[0] = 1; // half an update
        std::mem::forget(g);
    });
    wait_until(&holding, 1);
    assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
    kid.signal(libc::SIGKILL);
    // Not reaped yet: the holder is a zombie, which counts as dead.
    let mut g = match m.lock_timeout(SOON) {
        Err(multiproc::LockTimeoutError::OwnerDied(died)) => died.into_inner(),
        Ok(_) => panic!("a dead holder's lock was handed over clean"),
        Err(multiproc::LockTimeoutError::Timeout) => {
            panic!("dead holder not detected within {SOON:?}")
        }
    };
    assert_eq!(*g, [1, 0], "the torn update is visible");
    g[1] = g[0];
    g.mark_consistent();
    drop(g);
    assert!(!m.is_poisoned());
    assert_eq!(*m.lock().unwrap(), [1, 1]);
    assert_eq!(kid.join(), -libc::SIGKILL);
}

/// A waiter already asleep in `lock()` in a third process when the holder
/// is killed is handed the lock with `OwnerDied`. Prints how long that took.
#[test]
fn sleeping_waiter_recovers_after_holder_killed() {
    let lock = Lock::new().unwrap();
    let holding = AtomicValue::new(0u32).unwrap();
    let waiting = AtomicValue::new(0u32).unwrap();
    let got_at = AtomicValue::new(0u64).unwrap();
    let holder = hold_and_wait(&holding, || lock.acquire().unwrap());
    wait_until(&holding, 1);
    let waiter = fork(|| {
        waiting.store(1, SeqCst);
        let r = lock.lock_timeout(SOON);
        got_at.store(now_ns(), SeqCst);
        match r {
            Err(multiproc::LockTimeoutError::OwnerDied(mut died)) => {
                died.get_mut().mark_consistent();
                0
            }
            Ok(_) => 1,
            Err(multiproc::LockTimeoutError::Timeout) => 2,
        }
    });
    wait_until(&waiting, 1);
    waiter.wait_until_futex_sleep();
    let killed_at = now_ns();
    holder.signal(libc::SIGKILL);
    assert_eq!(holder.join(), -libc::SIGKILL);
    assert_eq!(
        waiter.join(),
        0,
        "the waiter did not get the lock with OwnerDied"
    );
    let ms = got_at.load(SeqCst).saturating_sub(killed_at) as f64 / 1e6;
    println!("dead holder detected by a sleeping waiter after {ms:.1} ms");
    assert!(!lock.is_poisoned());
    assert!(lock.try_lock().is_ok());
}

/// Without `mark_consistent`, every locker hears of the death.
#[test]
fn unrepaired_death_is_reported_again() {
    let lock = Lock::new().unwrap();
    let holding = AtomicValue::new(0u32).unwrap();
    let kid = hold_and_wait(&holding, || lock.acquire().unwrap());
    wait_until(&holding, 1);
    kid.signal(libc::SIGKILL);
    assert_eq!(kid.join(), -libc::SIGKILL);
    for _ in 0..3 {
        assert!(matches!(
            lock.lock_timeout(SOON),
            Err(multiproc::LockTimeoutError::OwnerDied(_))
        ));
        assert!(lock.is_poisoned());
    }
    let mut g = lock.lock().unwrap_err().into_inner();
    g.mark_consistent();
    drop(g);
    assert!(lock.lock().is_ok());
}

/// The locks inside `Value` and `Array` survive a killed holder too; `get`
/// and `to_vec` do not hang on them.
#[test]
fn value_and_array_holder_killed() {
    let v = Value::new(5u64).unwrap();
    let a = Array::<u32>::new(4).unwrap();
    let holding = AtomicValue::new(0u32).unwrap();
    let kid = hold_and_wait(&holding, || {
        std::mem::forget(v.lock().unwrap());
        std::mem::forget(a.lock().unwrap());
    });
    wait_until(&holding, 1);
    kid.signal(libc::SIGKILL);
    assert_eq!(kid.join(), -libc::SIGKILL);
    assert_eq!(v.get(), 5); // recovers silently, leaves the mark
    match v.lock() {
        Err(died) => assert_eq!(**died.get_ref(), 5),
        Ok(_) => panic!("the death was forgotten"),
    }
    let mut g = a.lock().unwrap_err().into_inner();
    g.mark_consistent();
    drop(g);
    assert_eq!(a.to_vec(), [0; 4]);
    assert!(a.lock().is_ok());
}

/// A thread that exits holding a lock is a dead holder as well.
#[test]
fn thread_exit_while_holding() {
    let m = Mutex::new(0u32).unwrap();
    let m2 = m.clone();
    std::thread::spawn(move || std::mem::forget(m2.lock().unwrap()))
        .join()
        .unwrap();
    assert!(matches!(
        m.lock_timeout(SOON),
        Err(multiproc::LockTimeoutError::OwnerDied(_))
    ));
}

/// `RLock` re-enters in its owner thread, excludes other processes, and
/// refuses a release from a non-owner.
#[test]
fn rlock_reentry_and_ownership() {
    let r = RLock::new().unwrap();
    let g1 = r.lock().unwrap();
    let g2 = r.try_lock().unwrap();
    let g3 = r.lock_timeout(Duration::ZERO).unwrap();
    assert_eq!(r.count(), 3);
    assert!(r.is_owned());
    let r2 = r.clone();
    let other_thread = std::thread::spawn(move || {
        (
            r2.release(),
            r2.is_owned(),
            matches!(r2.try_lock(), Err(TryLockError::WouldBlock)),
        )
    });
    assert_eq!(other_thread.join().unwrap(), (Err(NotOwner), false, true));
    let kid = fork(|| {
        let busy = matches!(r.try_lock(), Err(TryLockError::WouldBlock));
        let refused = r.release() == Err(NotOwner);
        let t = Instant::now();
        let timed_out = matches!(
            r.lock_timeout(Duration::from_millis(50)),
            Err(multiproc::LockTimeoutError::Timeout)
        );
        i32::from(!(busy && refused && timed_out && t.elapsed() >= Duration::from_millis(50)))
    });
    assert_eq!(kid.join(), 0);
    drop((g3, g2));
    assert_eq!(r.count(), 1);
    drop(g1);
    assert_eq!(r.count(), 0);
    assert_eq!(r.release(), Err(NotOwner));
    // Python style.
    r.acquire().unwrap();
    r.acquire().unwrap();
    assert_eq!(r.release(), Ok(()));
    assert_eq!(r.release(), Ok(()));
    assert_eq!(r.release(), Err(NotOwner));
}

/// A forked child dropping its copy of the parent's `RLock` guard leaves
/// the parent's level alone: the parent still holds the lock, once.
#[test]
fn rlock_forked_guard_copy_leaves_the_parents_level() {
    let r = RLock::new().unwrap();
    let guard = r.lock().unwrap();
    let kid = fork(|| {
        // SAFETY: the child's address space holds its own copy of `guard`;
        // moving it out there and dropping it is what a forked child that
        // owned an inherited guard does. The parent's copy is untouched.
        drop(unsafe { std::ptr::read(&guard) });
        i32::from(r.try_lock().is_ok())
    });
    assert_eq!(kid.join(), 0, "the child could not take the parent's lock");
    assert!(r.is_owned());
    assert_eq!(r.count(), 1);
    drop(guard);
    assert_eq!(r.count(), 0);
}

/// Two processes take turns on an `RLock`, each re-entering.
#[test]
fn rlock_excludes_across_processes() {
    const N: u64 = 10_000;
    let r = RLock::new().unwrap();
    let counter = RawValue::new(0u64).unwrap();
    fork_all(3, |_| {
        for _ in 0..N {
            let _outer = r.lock().unwrap();
            let _inner = r.lock().unwrap();
            counter.set(counter.get() + 1);
        }
        0
    });
    assert_eq!(counter.get(), 3 * N);
    assert_eq!(r.count(), 0);
}

/// An `RLock` holder killed with two levels held: the next locker gets it
/// with `OwnerDied` and a count of one.
#[test]
fn rlock_holder_killed() {
    let r = RLock::new().unwrap();
    let holding = AtomicValue::new(0u32).unwrap();
    let kid = hold_and_wait(&holding, || {
        r.acquire().unwrap();
        r.acquire().unwrap();
    });
    wait_until(&holding, 1);
    kid.signal(libc::SIGKILL);
    let mut g = match r.lock_timeout(SOON) {
        Err(multiproc::LockTimeoutError::OwnerDied(died)) => died.into_inner(),
        other => panic!("expected OwnerDied, got {:?}", other.map(|_| ())),
    };
    assert_eq!(r.count(), 1);
    g.mark_consistent();
    drop(g);
    assert_eq!(r.count(), 0);
    assert_eq!(kid.join(), -libc::SIGKILL);
}

/// `Lock::release` belongs to the holder; `acquire`/`release` pair up.
#[test]
fn lock_release_ownership() {
    let lock = Lock::new().unwrap();
    assert_eq!(lock.release(), Err(NotOwner));
    lock.acquire().unwrap();
    let kid = fork(|| i32::from(lock.release() != Err(NotOwner)));
    assert_eq!(kid.join(), 0);
    assert!(lock.is_locked());
    assert_eq!(lock.release(), Ok(()));
    assert!(!lock.is_locked());
}

/// Timed locks give up after about the time asked (never before it).
#[test]
fn lock_timeout_waits_at_least_the_timeout() {
    let m = Mutex::new(0u8).unwrap();
    let holding = AtomicValue::new(0u32).unwrap();
    let release = AtomicValue::new(0u32).unwrap();
    let kid = fork(|| {
        let g = m.lock().unwrap();
        holding.store(1, SeqCst);
        while release.load(SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(g);
        0
    });
    wait_until(&holding, 1);
    for ms in [0u64, 10, 120] {
        let t = Instant::now();
        assert!(matches!(
            m.lock_timeout(Duration::from_millis(ms)),
            Err(multiproc::LockTimeoutError::Timeout)
        ));
        assert!(t.elapsed() >= Duration::from_millis(ms));
    }
    release.store(1, SeqCst);
    assert!(m.lock_timeout(SOON).is_ok());
    assert_eq!(kid.join(), 0);
}

/// Descriptors: a `Mutex` and an `RLock` attached in an unrelated process.
#[test]
fn locks_attach_from_unrelated_process() {
    let m = Mutex::new(41u32).unwrap();
    let r = RLock::new().unwrap();
    let mut data = m.descriptor().to_bytes();
    let split = data.len() as u8;
    data.insert(0, split);
    data.extend(r.descriptor().to_bytes());
    let (code, out) = common::run_self("role_use_locks", &data);
    assert_eq!(code, 0, "child output:\n{out}");
    assert_eq!(*m.lock().unwrap(), 42);
    assert!(!r.is_owned());
    assert!(Mutex::<u64>::attach(&m.descriptor()).is_err());
    assert!(Lock::attach(&r.descriptor()).is_err());
}

/// The child side of [`locks_attach_from_unrelated_process`].
#[test]
#[ignore = "child half of a re-exec test: run by common::run_self"]
fn role_use_locks() {
    let Some(data) = common::role_data("role_use_locks") else {
        return;
    };
    let n = data[0] as usize;
    let md = multiproc::Descriptor::from_bytes(&data[1..1 + n]).unwrap();
    let rd = multiproc::Descriptor::from_bytes(&data[1 + n..]).unwrap();
    let m = Mutex::<u32>::attach(&md).unwrap();
    let r = RLock::attach(&rd).unwrap();
    let _g = r.lock().unwrap();
    *m.lock().unwrap() += 1;
}

/// A guard that outlives an explicit `release` of its level must not, when
/// dropped, release the lock someone else took meanwhile.
#[test]
fn stale_guard_does_not_release_anothers_lock() {
    let lock = Lock::new().unwrap();
    let g = lock.lock().unwrap();
    assert_eq!(lock.release(), Ok(())); // Python-style release under a live guard
    let holding = AtomicValue::new(0u32).unwrap();
    let release = AtomicValue::new(0u32).unwrap();
    let kid = fork(|| {
        let g = lock.lock().unwrap();
        holding.store(1, SeqCst);
        while release.load(SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(g);
        0
    });
    wait_until(&holding, 1);
    drop(g); // stale: must leave the child's lock alone
    assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
    release.store(1, SeqCst);
    assert_eq!(kid.join(), 0);
    assert!(lock.try_lock().is_ok());

    let r = RLock::new().unwrap();
    let g = r.lock().unwrap();
    assert_eq!(r.release(), Ok(()));
    assert_eq!(r.count(), 0);
    let r2 = r.clone();
    let t = std::thread::spawn(move || {
        let g = r2.lock().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let still_mine = r2.is_owned();
        drop(g);
        still_mine
    });
    std::thread::sleep(Duration::from_millis(10));
    drop(g); // stale level: must not unlock the other thread's hold
    assert!(t.join().unwrap());
}

/// A holder whose thread name is not UTF-8, killed and not yet reaped (a
/// zombie), is still recognised as dead.
#[test]
fn zombie_holder_with_odd_name_is_recovered() {
    let lock = Lock::new().unwrap();
    let holding = AtomicValue::new(0u32).unwrap();
    let kid = hold_and_wait(&holding, || {
        let name = b"\xff\xfe (odd) )\0";
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
        lock.acquire().unwrap();
    });
    wait_until(&holding, 1);
    kid.signal(libc::SIGKILL);
    // The zombie is reaped only after the lock is recovered.
    assert!(matches!(
        lock.lock_timeout(SOON),
        Err(multiproc::LockTimeoutError::OwnerDied(_))
    ));
    assert_eq!(kid.join(), -libc::SIGKILL);
}
