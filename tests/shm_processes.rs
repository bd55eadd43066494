//! `Value`, `Array`, `RawArray` and `AtomicValue` across real processes.
#![cfg(not(loom))]
#![allow(clippy::approx_constant)] // 3.1415927 is the Python tutorial's number

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::{Duration, Instant};

use common::{fork, fork_all};
use multiproc::SharedObject;
use multiproc::{Array, AtomicValue, Descriptor, RawArray, RawValue, SegmentRef, Value};

/// The classic: a child sets a float and negates an array; the parent sees both.
#[test]
fn smoke_child_changes_are_seen_by_parent() {
    let num = Value::new(0.0f64).unwrap();
    let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>()).unwrap();
    let kid = fork(|| {
        num.set(3.1415927);
        for x in arr.lock().unwrap().iter_mut() {
            *x = -*x;
        }
        0
    });
    assert_eq!(kid.join(), 0);
    assert_eq!(num.get(), 3.1415927);
    assert_eq!(arr.to_vec(), [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]);
}

/// A child's change to its own heap copy is not seen; a shared one is.
#[test]
fn private_memory_stays_private() {
    let mut local = vec![1u32; 4];
    let shared = Array::from_slice(&local).unwrap();
    let kid = fork(|| {
        local[0] = 99;
        shared.set(0, 99).unwrap();
        i32::from(local[0] != 99)
    });
    assert_eq!(kid.join(), 0);
    assert_eq!(local[0], 1);
    assert_eq!(shared.get(0), Some(99));
}

/// Two processes add 1 a million times each through a shared atomic.
#[test]
fn atomic_fetch_add_two_processes_exact() {
    const N: u64 = 1_000_000;
    let counter = AtomicValue::new(0u64).unwrap();
    let go = AtomicValue::new(0u32).unwrap();
    let kid = fork(|| {
        while go.load(SeqCst) == 0 {
            std::hint::spin_loop();
        }
        for _ in 0..N {
            counter.fetch_add(1, Relaxed);
        }
        0
    });
    go.store(1, SeqCst);
    for _ in 0..N {
        counter.fetch_add(1, Relaxed);
    }
    assert_eq!(kid.join(), 0);
    assert_eq!(counter.load(SeqCst), 2 * N);
}

/// Four processes increment a `Value` under its lock; nothing is lost.
#[test]
fn value_lock_excludes_across_processes() {
    const N: u64 = 50_000;
    const P: usize = 4;
    // A pair whose halves must always agree: a torn update would show.
    let v = Value::new([0u64; 2]).unwrap();
    fork_all(P, |_| {
        for _ in 0..N {
            let mut g = v.lock().unwrap();
            if g[0] != g[1] {
                return 1;
            }
            g[0] += 1;
            g[1] += 1;
        }
        0
    });
    assert_eq!(v.get(), [P as u64 * N; 2]);
}

/// Array element updates under the lock from several processes.
#[test]
fn array_lock_across_processes() {
    const N: usize = 20_000;
    let a = Array::<u32>::new(8).unwrap();
    fork_all(3, |i| {
        for k in 0..N {
            let mut g = a.lock().unwrap();
            g[k % 8] += 1;
            g[7 - i] += 0;
        }
        0
    });
    assert_eq!(a.to_vec().iter().map(|&x| x as usize).sum::<usize>(), 3 * N);
}

/// Workers fill disjoint ranges of one big `RawArray` without a lock, both
/// by copying (`write_at`) and in place (`slice_mut`).
#[test]
fn raw_array_disjoint_fill() {
    const LEN: usize = 1 << 20;
    const W: usize = 4;
    let a = RawArray::<f64>::new(LEN).unwrap();
    fork_all(W, |w| {
        let part = LEN / W;
        let start = w * part;
        if w % 2 == 0 {
            let chunk: Vec<f64> = (start..start + part).map(|i| i as f64 * 0.5).collect();
            a.write_at(start, &chunk).map_or(1, |()| 0)
        } else {
            // SAFETY: this worker's range is its alone.
            let Some(s) = (unsafe { a.slice_mut(start..start + part) }) else {
                return 2;
            };
            for (k, x) in s.iter_mut().enumerate() {
                *x = (start + k) as f64 * 0.5;
            }
            0
        }
    });
    let v = a.to_vec();
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as f64 * 0.5));
}

#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Point {
    id: u32,
    x: f32,
}

/// A `RawValue` of a user struct, written by a child.
#[test]
fn raw_value_struct_across_fork() {
    let v = RawValue::new(Point { id: 0, x: 0.0 }).unwrap();
    let kid = fork(|| {
        v.set(Point { id: 7, x: 2.5 });
        0
    });
    assert_eq!(kid.join(), 0);
    assert_eq!(v.get(), Point { id: 7, x: 2.5 });
}

/// Parent and forked child both keep allocating from the chunk they share;
/// the shared bump pointer keeps their objects apart.
#[test]
fn fork_then_allocate_in_both_processes() {
    let _warm = Value::new(0u64).unwrap(); // makes sure a chunk is current
    let results = RawArray::<u64>::new(200).unwrap();
    let kid = fork(|| {
        let mine: Vec<_> = (0..100)
            .map(|i| Value::new(1000 + i as u64).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        for (i, v) in mine.iter().enumerate() {
            results.set(100 + i, v.get()).unwrap();
        }
        0
    });
    let mine: Vec<_> = (0..100).map(|i| Value::new(i as u64).unwrap()).collect();
    assert_eq!(kid.join(), 0);
    for (i, v) in mine.iter().enumerate() {
        assert_eq!(v.get(), i as u64, "parent value {i} was overwritten");
    }
    for i in 0..100 {
        assert_eq!(
            results.get(100 + i),
            Some(1000 + i as u64),
            "child value {i}"
        );
    }
}

fn segment_identity(d: &Descriptor) -> (u64, u64) {
    match d.segment() {
        SegmentRef::Memfd { dev, ino, .. } | SegmentRef::Named { dev, ino, .. } => (*dev, *ino),
        other => panic!("unexpected segment {other:?}"),
    }
}

/// 10,000 small values share a handful of segments, not one mapping each.
#[test]
fn many_small_values_share_segments() {
    let values: Vec<_> = (0..10_000u64).map(|i| Value::new(i).unwrap()).collect();
    let segments: HashSet<_> = values
        .iter()
        .map(|v| segment_identity(&v.descriptor()))
        .collect();
    assert!(
        segments.len() <= 3,
        "10,000 values used {} segments",
        segments.len()
    );
    // Each value is intact (no overlap between objects).
    assert!(values.iter().enumerate().all(|(i, v)| v.get() == i as u64));
    // And the mappings in /proc/self/maps agree.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let ours = maps
        .lines()
        .filter(|l| {
            segments
                .iter()
                .any(|(_, ino)| l.split_whitespace().nth(4) == Some(&ino.to_string()))
        })
        .count();
    assert!(ours <= 3, "{ours} mappings for 10,000 values");
}

/// A large array gets a segment of its own, zero-filled.
#[test]
fn large_array_own_segment_zeroed() {
    let small = Array::<u8>::new(16).unwrap();
    let big = Array::<u64>::new(1 << 20).unwrap();
    assert_ne!(
        segment_identity(&small.descriptor()),
        segment_identity(&big.descriptor())
    );
    assert!(big.lock().unwrap().iter().all(|&x| x == 0));
}

/// A lock held in one process makes `lock_timeout` in another give up, and
/// `try_lock` fail; released, it is taken.
#[test]
fn lock_timeout_across_processes() {
    let v = Value::new(0u32).unwrap();
    let held = AtomicValue::new(0u32).unwrap();
    let release = AtomicValue::new(0u32).unwrap();
    let kid = fork(|| {
        let mut g = v.lock().unwrap();
        *g = 1;
        held.store(1, SeqCst);
        while release.load(SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(g);
        0
    });
    while held.load(SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(matches!(
        v.try_lock(),
        Err(multiproc::TryLockError::WouldBlock)
    ));
    let t = Instant::now();
    assert!(matches!(
        v.lock_timeout(Duration::from_millis(100)),
        Err(multiproc::LockTimeoutError::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(100));
    release.store(1, SeqCst);
    let g = v
        .lock_timeout(Duration::from_secs(30))
        .expect("lock after release");
    assert_eq!(*g, 1);
    drop(g);
    assert_eq!(kid.join(), 0);
}

/// A waiter sleeping on the lock in another process is woken by unlock.
#[test]
fn blocked_locker_is_woken() {
    let v = Value::new(0u64).unwrap();
    let g = v.lock().unwrap();
    let kid = fork(|| {
        // Blocks (sleeping on the futex) until the parent unlocks.
        *v.lock().unwrap() += 5;
        0
    });
    kid.wait_until_futex_sleep();
    drop(g);
    assert_eq!(kid.join(), 0);
    assert_eq!(v.get(), 5);
}

/// A child attaches from a descriptor in a fresh thread (empty registry) after
/// closing the inherited descriptor: the segment is found through
/// `/proc/<parent>/fd/<fd>`.
#[test]
fn attach_through_proc_fd() {
    let a = Array::from_slice(&[1.5f64, 2.5, 3.5]).unwrap();
    let d = a.descriptor();
    let SegmentRef::Memfd { fd, .. } = d.segment().clone() else {
        panic!("expected a memfd segment")
    };
    let kid = fork(move || {
        // SAFETY: the child gives up its inherited copy of the descriptor;
        // its existing mapping stays valid.
        unsafe { libc::close(fd) };
        let d = d.clone();
        let t = std::thread::spawn(move || {
            let b = Array::<f64>::attach(&d).map_err(|e| e.to_string())?;
            b.set(0, -1.0).map_err(|e| e.to_string())?;
            Ok::<_, String>(b.to_vec())
        });
        match t.join() {
            Ok(Ok(v)) if v == [-1.0, 2.5, 3.5] => 0,
            _ => 1,
        }
    });
    assert_eq!(kid.join(), 0);
    assert_eq!(a.get(0), Some(-1.0));
}

/// An unrelated process (a fresh exec of this test binary, inheriting no
/// descriptor) attaches `Value`, `Array` and `AtomicValue` from descriptors
/// and changes them.
#[test]
fn attach_from_unrelated_process() {
    let v = Value::new(1.25f64).unwrap();
    let a = Array::from_slice(&[1u16, 2, 3]).unwrap();
    let c = AtomicValue::new(40i64).unwrap();
    let mut data = Vec::new();
    for d in [v.descriptor(), a.descriptor(), c.descriptor()] {
        let b = d.to_bytes();
        data.push(b.len() as u8);
        data.extend(b);
    }
    let (code, out) = common::run_self("role_attach_and_modify", &data);
    assert_eq!(code, 0, "child output:\n{out}");
    assert_eq!(v.get(), 2.5);
    assert_eq!(a.to_vec(), [2, 4, 6]);
    assert_eq!(c.load(SeqCst), 42);
}

/// The child side of [`attach_from_unrelated_process`].
#[test]
#[ignore = "child half of a re-exec test: run by common::run_self"]
fn role_attach_and_modify() {
    let Some(data) = common::role_data("role_attach_and_modify") else {
        return;
    };
    let mut descs = Vec::new();
    let mut rest = &data[..];
    while let Some((&n, tail)) = rest.split_first() {
        descs.push(Descriptor::from_bytes(&tail[..n as usize]).unwrap());
        rest = &tail[n as usize..];
    }
    let v = Value::<f64>::attach(&descs[0]).unwrap();
    *v.lock().unwrap() *= 2.0;
    let a = Array::<u16>::attach(&descs[1]).unwrap();
    a.lock().unwrap().iter_mut().for_each(|x| *x *= 2);
    let c = AtomicValue::<i64>::attach(&descs[2]).unwrap();
    c.fetch_add(2, SeqCst);
    // Wrong types are refused, here too.
    assert!(Value::<f32>::attach(&descs[0]).is_err());
    assert!(Array::<u32>::attach(&descs[1]).is_err());
}

/// Short-lived threads that each make an object hand their chunk on: they
/// do not each keep a segment (and a descriptor) alive.
#[test]
fn short_lived_threads_share_chunks() {
    let values: Vec<Value<u64>> = (0..200u64)
        .map(|i| {
            std::thread::spawn(move || Value::new(i).unwrap())
                .join()
                .unwrap()
        })
        .collect();
    let segments: HashSet<_> = values
        .iter()
        .map(|v| segment_identity(&v.descriptor()))
        .collect();
    assert!(
        segments.len() <= 4,
        "200 threads used {} segments",
        segments.len()
    );
    assert!(values.iter().enumerate().all(|(i, v)| v.get() == i as u64));
}

/// Making an object from a thread-local destructor (after this crate's own
/// thread-locals are gone) works instead of aborting.
#[test]
fn create_during_thread_local_teardown() {
    #[allow(clippy::disallowed_types)] // an in-process flag, not shared memory
    static OK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    struct MakesValueOnDrop;
    impl Drop for MakesValueOnDrop {
        fn drop(&mut self) {
            if Value::new(5u64).is_ok_and(|v| v.get() == 5) {
                OK.fetch_add(1, SeqCst);
            }
        }
    }
    thread_local!(static X: MakesValueOnDrop = const { MakesValueOnDrop });
    std::thread::spawn(|| {
        X.with(|_| ());
        // Touch the arena after X, so its thread-local is destroyed first.
        drop(Value::new(1u64).unwrap());
    })
    .join()
    .unwrap();
    assert_eq!(OK.load(SeqCst), 1);
}
