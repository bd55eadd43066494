//! Criterion benches for the shared-memory objects (`Value`, `RawValue`,
//! `AtomicValue`, `Array`, `RawArray`, `SharedMemory`).
//!
//! Run with
//!
//! ```text
//! cargo bench --bench shm                       # everything, about 2 minutes
//! cargo bench --bench shm -- cross_process_incr # one group
//! cargo test --bench shm                        # each bench once (CI smoke run)
//! ```
//!
//! Each group measures one of our operations next to a peer that does the same
//! work without this crate, in the same run, so the ratios between them come
//! from one machine state. `benches/python/shm_value_array.py` prints the
//! CPython `multiprocessing` figures for the same four group names.
//!
//! * `array_bulk_copy`: copying 1 MiB and 64 MiB of `f64` from a `Vec` into
//!   shared memory with [`Array::copy_from_slice`] (takes the lock once) and
//!   [`RawArray::copy_from_slice`] (no lock); peer: `heap copy_from_slice`,
//!   `Vec<f64>` into `Vec<f64>`. For 64 MiB also the way back,
//!   [`Array::copy_to_slice`]. Throughput is in decimal bytes, so criterion
//!   prints GB/s (10^9 bytes/s, the unit of the Python script).
//! * `value_ops`: single-process, uncontended operations: [`Value`] get, set
//!   and `*v.lock().unwrap() += 1`; [`RawValue`] get and set; [`AtomicValue`] load and
//!   `fetch_add(Relaxed)`; `Array<f64>::get`. Peers: `std::sync::Mutex<u64>`
//!   lock and increment, `std::sync::atomic::AtomicU64::fetch_add`.
//! * `cross_process_incr`: two processes (a `fork`ed child and the parent)
//!   each add 1 to one shared counter N times at once; the time is the wall
//!   time of all 2N increments. One criterion iteration is 2 x 1000
//!   increments; the throughput line (elem/s) counts single increments, so
//!   its inverse is the time per increment. One fork (one sample) per
//!   ~10 ms of increments.
//!   Contestants: `AtomicValue<u64>::fetch_add` and the locked
//!   `*v.lock().unwrap() += 1` on a `Value<u64>`. Peers: the same between two threads
//!   of one process with `std::sync::atomic::AtomicU64` and
//!   `std::sync::Mutex<u64>`. The child is forked (or the thread spawned)
//!   outside the timed region; timing starts when the parent releases it.
//! * `create`: `Value::<u64>::new`, `Array::<f64>::new(1024)` (both from the
//!   per-thread 1 MiB arena, dropped right away; a fresh arena chunk, with its
//!   memfd and page faults, is paid for once per chunk), and `SharedMemory::create` of
//!   4 KiB plus `unlink` and drop. Peers: raw `memfd_create` + `ftruncate` +
//!   `mmap` + `munmap` + `close`, and raw `shm_open` + `ftruncate` + `mmap` +
//!   `munmap` + `close` + `shm_unlink`.
//!
//! Every bench checks its result once before it is measured. The machines
//! this runs on are small and shared, so samples are few and short; compare
//! medians within one run rather than across runs.

#[path = "../tests/common/mod.rs"]
mod common;
mod two_sides;

use two_sides::{Handshake, checked_run, two_processes, two_threads};

use std::hint::black_box;
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use multiproc::{Array, AtomicValue, RawArray, RawValue, SharedMemory, Value};
use rustix::fs::{MemfdFlags, Mode};
use rustix::mm::{MapFlags, ProtFlags};

/// One mebibyte.
const MIB: usize = 1 << 20;

/// Increments each side does per criterion iteration in `cross_process_incr`.
const INCR_PER_SIDE: u64 = 1_000;

// --------------------------------------------------------------------------
// array_bulk_copy
// --------------------------------------------------------------------------

/// `array_bulk_copy`: bulk copies into (and out of) shared arrays vs a heap
/// `Vec` copy.
fn array_bulk_copy(c: &mut Criterion) {
    let mut g = c.benchmark_group("array_bulk_copy");
    for (label, bytes) in [("1MiB", MIB), ("64MiB", 64 * MIB)] {
        let n = bytes / size_of::<f64>();
        // Every page of every buffer is touched before measuring, so no
        // timed copy pays for first-touch page faults.
        let src: Vec<f64> = (0..n).map(|i| i as f64 + 0.5).collect();
        let mut heap = vec![-1.0f64; n];
        let arr = Array::<f64>::new(n).expect("Array::new");
        let raw = RawArray::<f64>::new(n).expect("RawArray::new");

        // Sanity: each copy lands every element.
        arr.copy_from_slice(&src).expect("Array::copy_from_slice");
        assert!(arr.to_vec() == src, "Array copy_from_slice lost data");
        raw.copy_from_slice(&src)
            .expect("RawArray::copy_from_slice");
        assert!(raw.to_vec() == src, "RawArray copy_from_slice lost data");
        heap.copy_from_slice(&src);
        assert!(heap == src, "heap copy lost data");

        // Decimal bytes, so criterion prints GB/s like the Python script.
        g.throughput(Throughput::BytesDecimal(bytes as u64));
        if bytes >= 64 * MIB {
            // ~9 ms a copy: linear sampling's 210 iterations would overrun
            // the measurement time; equal samples of ~10 copies do not.
            g.sampling_mode(SamplingMode::Flat);
        }
        g.bench_function(BenchmarkId::new("Array copy_from_slice", label), |b| {
            b.iter(|| black_box(&arr).copy_from_slice(black_box(&src)).unwrap());
        });
        g.bench_function(BenchmarkId::new("RawArray copy_from_slice", label), |b| {
            b.iter(|| black_box(&raw).copy_from_slice(black_box(&src)).unwrap());
        });
        g.bench_function(BenchmarkId::new("heap copy_from_slice", label), |b| {
            b.iter(|| black_box(&mut heap[..]).copy_from_slice(black_box(&src)));
        });

        if bytes == 64 * MIB {
            heap.fill(-1.0);
            arr.copy_to_slice(&mut heap).expect("Array::copy_to_slice");
            assert!(heap == src, "Array copy_to_slice lost data");
            g.bench_function(BenchmarkId::new("Array copy_to_slice", label), |b| {
                b.iter(|| {
                    black_box(&arr)
                        .copy_to_slice(black_box(&mut heap[..]))
                        .unwrap();
                });
            });
        }
    }
    g.finish();
}

// --------------------------------------------------------------------------
// value_ops
// --------------------------------------------------------------------------

/// `value_ops`: uncontended single-process operations on shared values vs
/// `std::sync::Mutex` and `std::sync::atomic::AtomicU64`.
fn value_ops(c: &mut Criterion) {
    let mut g = c.benchmark_group("value_ops");

    let v = Value::new(0u64).expect("Value::new");
    v.set(7);
    assert_eq!(v.get(), 7);
    *v.lock().unwrap() += 1;
    assert_eq!(v.get(), 8);
    g.bench_function("Value get", |b| b.iter(|| black_box(&v).get()));
    g.bench_function("Value set", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(&v).set(black_box(i));
        });
    });
    g.bench_function("Value lock += 1", |b| {
        b.iter(|| *black_box(&v).lock().unwrap() += 1);
    });

    let r = RawValue::new(0u64).expect("RawValue::new");
    r.set(7);
    assert_eq!(r.get(), 7);
    g.bench_function("RawValue get", |b| b.iter(|| black_box(&r).get()));
    g.bench_function("RawValue set", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(&r).set(black_box(i));
        });
    });

    let a = AtomicValue::new(0u64).expect("AtomicValue::new");
    assert_eq!(a.fetch_add(5, Relaxed), 0);
    assert_eq!(a.load(Relaxed), 5);
    g.bench_function("AtomicValue load", |b| {
        b.iter(|| black_box(&a).load(Relaxed));
    });
    g.bench_function("AtomicValue fetch_add", |b| {
        b.iter(|| black_box(&a).fetch_add(1, Relaxed));
    });

    let arr = Array::<f64>::from_slice(&[1.5; 1024]).expect("Array::from_slice");
    assert_eq!(arr.get(1023), Some(1.5));
    g.bench_function("Array get", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % 1024;
            black_box(&arr).get(black_box(i))
        });
    });

    let m = Mutex::new(0u64);
    *m.lock().unwrap() += 1;
    assert_eq!(*m.lock().unwrap(), 1);
    g.bench_function("std Mutex lock += 1", |b| {
        b.iter(|| *black_box(&m).lock().unwrap() += 1);
    });

    std_atomic_fetch_add_peer(&mut g);
    g.finish();
}

/// The `value_ops` peer on a plain `std::sync::atomic::AtomicU64`.
// The crate routes its own atomics through `crate::loom`; a bench peer is the
// one place a std atomic is the point.
#[allow(clippy::disallowed_types)]
fn std_atomic_fetch_add_peer(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
) {
    let x = std::sync::atomic::AtomicU64::new(0);
    assert_eq!(x.fetch_add(5, Relaxed), 0);
    assert_eq!(x.load(Relaxed), 5);
    g.bench_function("std AtomicU64 fetch_add", |b| {
        b.iter(|| black_box(&x).fetch_add(1, Relaxed));
    });
}

// --------------------------------------------------------------------------
// cross_process_incr
// --------------------------------------------------------------------------

/// `cross_process_incr`: two processes incrementing one shared counter vs two
/// threads incrementing a std counter.
fn cross_process_incr(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_process_incr");
    // One fork per sample: many short samples (~10 ms each) let the median
    // ride over the scheduler noise of a small machine, and the fork stays
    // outside the timed region.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(100)
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(2 * INCR_PER_SIDE));
    let hs = Handshake::new();

    let counter = AtomicValue::new(0u64).expect("AtomicValue::new");
    let atomic_incr = |n: u64| {
        for _ in 0..n {
            counter.fetch_add(1, Relaxed);
        }
        true
    };
    let reset = || counter.store(0, Relaxed);
    let total = || counter.load(Acquire);
    // Sanity: a bigger run than one iteration, so the two really overlap.
    checked_run(
        100_000,
        reset,
        |n| two_processes(&hs, n, &atomic_incr),
        total,
    );
    g.bench_function("AtomicValue fetch_add 2proc", |b| {
        b.iter_custom(|iters| {
            let n = iters * INCR_PER_SIDE;
            checked_run(n, reset, |n| two_processes(&hs, n, &atomic_incr), total)
        });
    });

    let value = Value::new(0u64).expect("Value::new");
    let locked_incr = |n: u64| {
        for _ in 0..n {
            *value.lock().unwrap() += 1;
        }
        true
    };
    let reset = || value.set(0);
    let total = || value.get();
    checked_run(
        100_000,
        reset,
        |n| two_processes(&hs, n, &locked_incr),
        total,
    );
    g.bench_function("Value lock += 1 2proc", |b| {
        b.iter_custom(|iters| {
            let n = iters * INCR_PER_SIDE;
            checked_run(n, reset, |n| two_processes(&hs, n, &locked_incr), total)
        });
    });

    std_atomic_2thread_peer(&mut g, &hs);

    let mutex = Mutex::new(0u64);
    let mutex_incr = |n: u64| {
        for _ in 0..n {
            *mutex.lock().unwrap() += 1;
        }
        true
    };
    let reset = || *mutex.lock().unwrap() = 0;
    let total = || *mutex.lock().unwrap();
    checked_run(100_000, reset, |n| two_threads(&hs, n, &mutex_incr), total);
    g.bench_function("std Mutex lock += 1 2thread", |b| {
        b.iter_custom(|iters| {
            let n = iters * INCR_PER_SIDE;
            checked_run(n, reset, |n| two_threads(&hs, n, &mutex_incr), total)
        });
    });

    g.finish();
}

/// The `cross_process_incr` peer on a plain `std::sync::atomic::AtomicU64`
/// shared by two threads.
// See `std_atomic_fetch_add_peer` for why a std atomic is allowed here.
#[allow(clippy::disallowed_types)]
fn std_atomic_2thread_peer(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    hs: &Handshake,
) {
    let counter = std::sync::atomic::AtomicU64::new(0);
    let atomic_incr = |n: u64| {
        for _ in 0..n {
            counter.fetch_add(1, Relaxed);
        }
        true
    };
    let reset = || counter.store(0, Relaxed);
    let total = || counter.load(Acquire);
    checked_run(100_000, reset, |n| two_threads(hs, n, &atomic_incr), total);
    g.bench_function("std AtomicU64 fetch_add 2thread", |b| {
        b.iter_custom(|iters| {
            let n = iters * INCR_PER_SIDE;
            checked_run(n, reset, |n| two_threads(hs, n, &atomic_incr), total)
        });
    });
}

// --------------------------------------------------------------------------
// create
// --------------------------------------------------------------------------

/// A pid-unique `/dev/shm` name that is removed (if still there) when the
/// guard drops, so a panicking bench leaves nothing behind.
struct ShmName(String);

impl ShmName {
    /// `multiproc-bench-<pid>-<tag>`, with any leftover of that name removed.
    fn new(tag: &str) -> ShmName {
        let name = format!("multiproc-bench-{}-{tag}", std::process::id());
        let _ = SharedMemory::remove(&name);
        ShmName(name)
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        let _ = SharedMemory::remove(&self.0);
    }
}

/// The raw peer of `Value::new`'s slow path and `SharedMemory::create`: an
/// anonymous memfd of `size` bytes, mapped and unmapped, then closed.
fn raw_memfd_map(size: usize) {
    let fd = rustix::fs::memfd_create("bench", MemfdFlags::CLOEXEC).expect("memfd_create");
    rustix::fs::ftruncate(&fd, size as u64).expect("ftruncate");
    map_unmap(&fd, size);
}

/// The raw peer of `SharedMemory::create` + `unlink`: `shm_open` (create,
/// exclusive), size, map, unmap, close, `shm_unlink`.
fn raw_shm_open_map(path: &str, size: usize) {
    let fd = rustix::shm::open(
        path,
        rustix::shm::OFlags::CREATE | rustix::shm::OFlags::EXCL | rustix::shm::OFlags::RDWR,
        Mode::RUSR | Mode::WUSR,
    )
    .expect("shm_open");
    // Unlink eagerly: the name is gone before anything below can panic.
    rustix::shm::unlink(path).expect("shm_unlink");
    rustix::fs::ftruncate(&fd, size as u64).expect("ftruncate");
    map_unmap(&fd, size);
}

/// Maps `size` bytes of `fd` shared and read-write and unmaps them again,
/// touching no page (as `SharedMemory::create` touches none).
fn map_unmap(fd: &std::os::fd::OwnedFd, size: usize) {
    // SAFETY: a fresh mapping at an address of the kernel's choosing; it
    // overlaps nothing of ours.
    let p = unsafe {
        rustix::mm::mmap(
            ptr::null_mut(),
            size,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            fd,
            0,
        )
    }
    .expect("mmap");
    // SAFETY: `p` is the mapping made above, `size` bytes long, and nothing
    // else refers to it.
    unsafe { rustix::mm::munmap(p, size) }.expect("munmap");
}

/// `create`: making shared objects and segments vs raw memfd / shm_open.
fn create(c: &mut Criterion) {
    let mut g = c.benchmark_group("create");

    assert_eq!(Value::new(5u64).expect("Value::new").get(), 5);
    g.bench_function("Value::<u64>::new", |b| {
        b.iter(|| drop(black_box(Value::new(black_box(0u64)).unwrap())));
    });

    let a = Array::<f64>::new(1024).expect("Array::new");
    assert!(a.len() == 1024 && a.to_vec().iter().all(|&x| x == 0.0));
    drop(a);
    g.bench_function("Array::<f64>::new(1024)", |b| {
        b.iter(|| drop(black_box(Array::<f64>::new(black_box(1024)).unwrap())));
    });

    // The same name every time: each iteration unlinks it before the next
    // creates it again.
    let name = ShmName::new("create");
    {
        let shm = SharedMemory::create(&name.0, 4096).expect("SharedMemory::create");
        shm.unlink().expect("unlink");
        assert_eq!(shm.size(), 4096);
        shm.write_at(4092, b"tail").expect("write_at");
        let mut buf = [0u8; 4];
        shm.read_at(4092, &mut buf).expect("read_at");
        assert_eq!(&buf, b"tail");
        assert!(
            SharedMemory::open(&name.0).is_err(),
            "unlinked name still opens"
        );
    }
    g.bench_function("SharedMemory create+unlink 4KiB", |b| {
        b.iter(|| {
            let shm = SharedMemory::create(black_box(&name.0), 4096).unwrap();
            shm.unlink().unwrap();
            drop(shm);
        });
    });

    raw_memfd_map(4096);
    g.bench_function("raw memfd+mmap 4KiB", |b| {
        b.iter(|| raw_memfd_map(black_box(4096)));
    });

    let raw_name = ShmName::new("raw");
    let raw_path = format!("/{}", raw_name.0);
    raw_shm_open_map(&raw_path, 4096);
    g.bench_function("raw shm_open+mmap+unlink 4KiB", |b| {
        b.iter(|| raw_shm_open_map(black_box(&raw_path), 4096));
    });

    g.finish();
}

/// Criterion settings for small, noisy machines: short warm-up, few samples.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = array_bulk_copy, value_ops, cross_process_incr, create
}
criterion_main!(benches);
