//! `Process`, what crosses to a child: every shared object under both start
//! methods, the memfds a spawned child inherits, and garbage descriptors;
//! and how a spawn fails: a missing `init`, an unregistered entry, a child
//! that never answers the start handshake.
//!
//! Spawned children re-run this test binary with only the test
//! `spawn_child` selected (`multiproc::testing::ForTest`); that test calls
//! `multiproc::init` with the entries below, and does nothing in a normal
//! run. Every child is joined with a deadline (`finish`), and killed if it
//! overruns.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::entries::{BOTH, Sleep, finish, process};
use common::{DEADLINE, ShmName};
use multiproc::SharedObject;
use multiproc::testing::ForTest;
use multiproc::{
    Array, AtomicValue, Barrier, BoundedSemaphore, Condition, Connection, Descriptor, Entry,
    EntryPoint, Error, Event, FailureKind, JoinableQueue, Lock, MessageQueue, Mutex, Process,
    Queue, RLock, RawArray, RawValue, SPAWN_ENV, Semaphore, SharedMemory, Value, pipe, spsc,
};
use serde::{Deserialize, Serialize};

const ENTRIES: &[EntryPoint] = &[
    EntryPoint::of::<Sleep>(),
    EntryPoint::of::<Everything>(),
    EntryPoint::of::<AttachOne>(),
    EntryPoint::of::<CheckInherited>(),
];

/// The spawned children's `main`: runs the entry they were spawned for.
#[test]
#[ignore = "child half of the spawn tests: run by ForTest::for_test"]
fn spawn_child() {
    multiproc::init(ENTRIES);
}

// --------------------------------------------------------------------------
// Entries
// --------------------------------------------------------------------------

/// Every kind of shared object; the child changes each one.
#[derive(Serialize, Deserialize)]
struct Everything {
    value: Value<u64>,
    raw_value: RawValue<u32>,
    array: Array<f64>,
    raw_array: RawArray<u16>,
    /// Large enough for a segment of its own (not the arena).
    big: Array<u8>,
    atomic: AtomicValue<u64>,
    mutex: Mutex<[u32; 2]>,
    cond: Condition,
    lock: Lock,
    rlock: RLock,
    sem: Semaphore,
    bsem: BoundedSemaphore,
    event: Event,
    barrier: Barrier,
    queue: Queue<u64>,
    tx: spsc::Producer<u32>,
    shm: SharedMemory,
    /// A `Value` placed in the named segment.
    shm_value: Value<u64>,
    /// A bare descriptor, attached by hand.
    descriptor: Descriptor,
    messages: MessageQueue<(i32, Option<()>, String)>,
    joinable: JoinableQueue<String>,
    /// The child's end of a pipe.
    conn: Connection<String>,
}

impl Entry for Everything {
    type Output = Result<(), String>;
    fn run(mut self) -> Result<(), String> {
        let e = |what: &str| format!("{what} failed in the child");
        *self.value.lock().unwrap() += 1;
        self.raw_value.set(7);
        self.array.set(1, 2.5).map_err(|_| e("Array::set"))?;
        self.raw_array.set(2, 9).map_err(|_| e("RawArray::set"))?;
        let last = self.big.len() - 1;
        self.big.set(last, 1).map_err(|_| e("big Array::set"))?;
        self.atomic.fetch_add(5, SeqCst);
        {
            let _held = self.lock.lock().unwrap();
            let g1 = self.rlock.lock().unwrap();
            let g2 = self.rlock.lock().unwrap();
            if self.rlock.count() != 2 {
                return Err(e("RLock re-entry"));
            }
            drop((g2, g1));
        }
        self.mutex.lock().unwrap()[1] = 11;
        self.cond.notify_all();
        self.sem.release().map_err(|_| e("Semaphore::release"))?;
        if self.bsem.try_acquire().is_err() {
            return Err(e("BoundedSemaphore::try_acquire"));
        }
        self.event.set();
        self.barrier
            .wait_timeout(DEADLINE)
            .map_err(|_| e("Barrier::wait"))?;
        self.queue.put(99).map_err(|_| e("Queue::put"))?;
        self.tx.push(5).map_err(|_| e("Producer::push"))?;
        *self.shm_value.lock().unwrap() += 1;
        self.shm
            .write_at(4096, b"hi there")
            .map_err(|_| e("SharedMemory::write_at"))?;
        let extra = Value::<u32>::attach(&self.descriptor).map_err(|err| err.to_string())?;
        extra.set(77);
        self.messages
            .put((1, None, "from the child".into()))
            .map_err(|_| e("MessageQueue::put"))?;
        let job = self
            .joinable
            .get_timeout(DEADLINE)
            .map_err(|_| e("JoinableQueue::get"))?;
        if job != "job" || self.joinable.task_done().is_err() {
            return Err(e("JoinableQueue::task_done"));
        }
        let ping = self
            .conn
            .recv_timeout(DEADLINE)
            .map_err(|_| e("Connection::recv"))?;
        self.conn
            .send(format!("{ping} pong"))
            .map_err(|_| e("Connection::send"))?;
        Ok(())
    }
}

/// Adds one to a `Value<u64>`: the entry the forged descriptors target.
#[derive(Serialize, Deserialize)]
struct AttachOne {
    v: Value<u64>,
}

impl Entry for AttachOne {
    type Output = ();
    fn run(self) {
        *self.v.lock().unwrap() += 1;
    }
}

/// Encodes like `AttachOne`, but with a `Value<f32>`: the wrong type.
#[derive(Serialize, Deserialize)]
struct ForgedType {
    v: Value<f32>,
}

impl Entry for ForgedType {
    type Output = ();
    fn run(self) {}
    fn name() -> &'static str {
        AttachOne::name()
    }
}

/// Encodes like `AttachOne`, with any descriptor.
#[derive(Serialize, Deserialize)]
struct ForgedDescriptor {
    v: Descriptor,
}

impl Entry for ForgedDescriptor {
    type Output = ();
    fn run(self) {}
    fn name() -> &'static str {
        AttachOne::name()
    }
}

/// Encodes like `AttachOne`, with bytes that are no descriptor at all.
#[derive(Serialize, Deserialize)]
struct ForgedBytes {
    v: [u8; 4],
}

impl Entry for ForgedBytes {
    type Output = ();
    fn run(self) {}
    fn name() -> &'static str {
        AttachOne::name()
    }
}

/// Registered nowhere.
#[derive(Serialize, Deserialize)]
struct Unregistered;

impl Entry for Unregistered {
    type Output = ();
    fn run(self) {}
}
/// Checks that the memfds of its arguments were inherited.
#[derive(Serialize, Deserialize)]
struct CheckInherited {
    /// Of an array the parent keeps: its memfd must be open here at the
    /// number the descriptor names.
    kept: Descriptor,
    /// The only handle of its (own) segment: the parent closes it right
    /// after the spawn, so only an inherited descriptor reaches it.
    only: Array<u8>,
}

impl Entry for CheckInherited {
    type Output = Result<(), String>;
    fn run(self) -> Result<(), String> {
        let multiproc::SegmentRef::Memfd { fd, .. } = self.kept.segment().clone() else {
            return Err("not a memfd".into());
        };
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).map_err(|e| e.to_string())?;
        if !link.to_string_lossy().starts_with("/memfd:multiproc") {
            return Err(format!("fd {fd} is {link:?}"));
        }
        let sum: u64 = self.only.to_vec().iter().map(|&b| u64::from(b)).sum();
        if sum != 1 << 20 {
            return Err(format!("sum {sum}"));
        }
        Ok(())
    }
}
// --------------------------------------------------------------------------
// Shared objects under both start methods
// --------------------------------------------------------------------------

#[test]
fn every_shared_object_under_both_methods() {
    for method in BOTH {
        let name = ShmName::new("everything");
        let shm = SharedMemory::create(&name.0, 8192).unwrap();
        let shm_value = Value::create_at(&shm, 0, 40u64).unwrap();
        let extra = Value::new(0u32).unwrap();
        let (tx, mut rx) = spsc::channel::<u32>(4).unwrap();
        let (parent_end, child_end) = pipe::<String>().unwrap();
        let joinable = JoinableQueue::<String>::new(4, 64).unwrap();
        joinable.put("job".into()).unwrap();
        let e = Everything {
            value: Value::new(1).unwrap(),
            raw_value: RawValue::new(0).unwrap(),
            array: Array::new(3).unwrap(),
            raw_array: RawArray::new(3).unwrap(),
            big: Array::new(1 << 20).unwrap(),
            atomic: AtomicValue::new(10).unwrap(),
            mutex: Mutex::new([0, 0]).unwrap(),
            cond: Condition::new().unwrap(),
            lock: Lock::new().unwrap(),
            rlock: RLock::new().unwrap(),
            sem: Semaphore::new(0).unwrap(),
            bsem: BoundedSemaphore::new(1).unwrap(),
            event: Event::new().unwrap(),
            barrier: Barrier::new(2).unwrap(),
            queue: Queue::new(4).unwrap(),
            tx,
            shm: SharedMemory::open(&name.0).unwrap(),
            shm_value: shm_value.clone(),
            descriptor: extra.descriptor(),
            messages: MessageQueue::new(4, 64).unwrap(),
            joinable: joinable.clone(),
            conn: child_end,
        };
        let messages = e.messages.clone();
        let (value, raw_value, array, raw_array, big, atomic) = (
            e.value.clone(),
            e.raw_value.clone(),
            e.array.clone(),
            e.raw_array.clone(),
            e.big.clone(),
            e.atomic.clone(),
        );
        let (mutex, cond, lock, rlock, sem, bsem, event, barrier, queue) = (
            e.mutex.clone(),
            e.cond.clone(),
            e.lock.clone(),
            e.rlock.clone(),
            e.sem.clone(),
            e.bsem.clone(),
            e.event.clone(),
            e.barrier.clone(),
            e.queue.clone(),
        );
        let mut p = process(method, e);
        p.start().unwrap();

        // The parent's half of each rendezvous.
        assert!(barrier.wait_timeout(DEADLINE).is_ok(), "{method:?} barrier");
        let (g, timed_out) = cond
            .wait_timeout_while(mutex.lock().unwrap(), DEADLINE, |v| v[1] != 11)
            .unwrap();
        assert!(!timed_out.timed_out(), "{method:?} condition");
        drop(g);
        assert!(
            sem.acquire_timeout(DEADLINE).is_ok(),
            "{method:?} semaphore"
        );
        assert!(event.wait_timeout(DEADLINE).is_ok(), "{method:?} event");
        assert_eq!(queue.get_timeout(DEADLINE).ok(), Some(99), "{method:?}");
        assert_eq!(rx.pop_timeout(DEADLINE).ok(), Some(5), "{method:?}");
        parent_end.send("ping".into()).unwrap();
        assert_eq!(parent_end.recv_timeout(DEADLINE).unwrap(), "ping pong");
        assert_eq!(
            messages.get_timeout(DEADLINE).unwrap(),
            (1, None, "from the child".into())
        );
        assert!(
            joinable.join_timeout(DEADLINE).is_ok(),
            "{method:?} joinable"
        );
        assert_eq!(finish(&p), 0, "{method:?}: {:?}", p.failure());

        assert_eq!(value.get(), 2);
        assert_eq!(raw_value.get(), 7);
        assert_eq!(array.to_vec(), [0.0, 2.5, 0.0]);
        assert_eq!(raw_array.to_vec(), [0, 0, 9]);
        assert_eq!(big.get(big.len() - 1), Some(1));
        assert_eq!(atomic.load(SeqCst), 15);
        assert_eq!(*mutex.lock().unwrap(), [0, 11]);
        assert!(!lock.is_locked());
        assert_eq!(rlock.count(), 0);
        assert_eq!(bsem.value(), 0);
        assert_eq!(shm_value.get(), 41);
        let mut hi = [0u8; 8];
        shm.read_at(4096, &mut hi).unwrap();
        assert_eq!(&hi, b"hi there");
        assert_eq!(extra.get(), 77);
    }
}

/// A descriptor that does not attach is a clear error in the spawned child:
/// exit code 1 and a setup failure that names the cause.
#[test]
fn garbage_descriptor_is_a_clear_error_in_the_child() {
    let run = |p: &mut Process<'_>| {
        p.start().unwrap();
        let code = finish(p);
        let f = p.failure().expect("a failure message");
        assert_eq!((code, f.kind()), (1, FailureKind::Setup), "{f}");
        f.message().to_owned()
    };
    let name = AttachOne::name();

    // The real thing works.
    let v = Value::new(1u64).unwrap();
    let mut p = Process::spawn(AttachOne { v: v.clone() }).for_test("spawn_child");
    p.start().unwrap();
    assert_eq!(finish(&p), 0, "{:?}", p.failure());
    assert_eq!(v.get(), 2);

    // Another element type.
    let f = Value::new(1.0f32).unwrap();
    let msg = run(&mut Process::spawn(ForgedType { v: f }).for_test("spawn_child"));
    assert!(
        msg.contains(name) && msg.contains("layout mismatch"),
        "{msg}"
    );

    // A descriptor naming a descriptor number that is not open anywhere.
    let real = v.descriptor();
    let forged = forge(&real, 100_000, 1);
    let msg = run(&mut Process::spawn(ForgedDescriptor { v: forged }).for_test("spawn_child"));
    assert!(msg.contains("not found"), "{msg}");

    // A descriptor naming a real memfd of ours, with another inode.
    let fd = match real.segment() {
        multiproc::SegmentRef::Memfd { fd, .. } => *fd,
        other => panic!("unexpected {other:?}"),
    };
    let forged = forge(&real, fd, 1);
    let msg = run(&mut Process::spawn(ForgedDescriptor { v: forged }).for_test("spawn_child"));
    assert!(msg.contains("invalid descriptor"), "{msg}");

    // Bytes that are no descriptor.
    let msg = run(&mut Process::spawn(ForgedBytes { v: [9, 9, 9, 9] }).for_test("spawn_child"));
    assert!(msg.contains("cannot decode the arguments"), "{msg}");
    assert_eq!(v.get(), 2);
}

/// A spawned child inherits the memfds its arguments live in, at the
/// numbers their descriptors name, even those the parent closes at once.
#[test]
fn spawned_child_inherits_memfds() {
    let kept = Array::<u8>::new(1 << 20).unwrap();
    let mut p = Process::spawn(CheckInherited {
        kept: kept.descriptor(),
        only: Array::from_slice(&vec![1u8; 1 << 20]).unwrap(),
    })
    .for_test("spawn_child");
    p.start().unwrap();
    assert_eq!(finish(&p), 0, "{:?}", p.failure());
}

/// `real` with its memfd's descriptor number and inode replaced.
fn forge(real: &Descriptor, fd: i32, ino: u64) -> Descriptor {
    #[derive(Serialize)]
    enum Seg {
        Memfd {
            pid: u32,
            fd: i32,
            dev: u64,
            ino: u64,
        },
    }
    #[derive(Serialize)]
    struct Fake {
        segment: Seg,
        offset: u64,
        kind: multiproc::ObjectKind,
        fingerprint: multiproc::Fingerprint,
        len: u64,
        part: u32,
    }
    let multiproc::SegmentRef::Memfd { pid, dev, .. } = real.segment().clone() else {
        panic!("not a memfd");
    };
    let fake = Fake {
        segment: Seg::Memfd { pid, fd, dev, ino },
        offset: real.offset(),
        kind: real.kind(),
        fingerprint: real.fingerprint(),
        len: real.len(),
        part: real.part(),
    };
    Descriptor::from_bytes(&postcard::to_allocvec(&fake).unwrap()).unwrap()
}

// --------------------------------------------------------------------------
// Spawn failures: no init, an unregistered entry, a silent child
// --------------------------------------------------------------------------

/// Re-run by `spawn_without_init_is_a_clear_error` as a spawned child that
/// never calls `init`: it must be refused to start processes. Does nothing
/// in a normal run.
#[test]
#[ignore = "child half of a spawn test: run by ForTest::for_test"]
fn undispatched_child() {
    if std::env::var_os(SPAWN_ENV).is_none() {
        return;
    }
    let mut p = Process::fork(|| ());
    let code = match p.start() {
        Err(Error::InitMissing { .. }) => 42,
        _ => 43,
    };
    std::process::exit(code);
}

#[test]
fn spawn_without_init_is_a_clear_error() {
    let mut p = Process::spawn(Sleep { ms: 0 }).for_test("undispatched_child");
    let err = p.start().unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            Error::Spawn {
                failure: multiproc::SpawnFailure::InitMissing { code: 42 },
                ..
            }
        ),
        "{err:?}"
    );
    // Exit code 42: the child was refused to start a process of its own.
    assert!(
        msg.contains("exit code 42") && msg.contains("multiproc::init"),
        "{msg}"
    );
    assert!(p.pid().is_none());
    assert!(matches!(p.join(), Err(Error::NotStarted { .. })));
}

#[test]
fn unregistered_entry_is_a_clear_error() {
    let mut p = Process::spawn(Unregistered).for_test("spawn_child");
    let err = p.start().unwrap_err().to_string();
    assert!(
        err.contains("not registered") && err.contains("Unregistered"),
        "{err}"
    );
}

/// Re-run by `silent_child_times_out` as a spawned child that neither calls
/// `init` nor exits. Does nothing in a normal run.
#[test]
#[ignore = "child half of silent_child_times_out: run by ForTest::for_test"]
fn silent_child() {
    if std::env::var_os(SPAWN_ENV).is_some() {
        std::thread::sleep(DEADLINE);
    }
}

#[test]
fn silent_child_times_out() {
    let mut p = Process::spawn(Sleep { ms: 0 })
        .for_test("silent_child")
        .with_start_timeout(Duration::from_millis(500));
    let t0 = Instant::now();
    let err = p.start().unwrap_err().to_string();
    assert!(t0.elapsed() >= Duration::from_millis(500));
    assert!(err.contains("within") && err.contains("killed"), "{err}");
}

/// A child whose spawn variable names a boot record of 1 TiB (a sparse
/// memfd, as a forged or foreign file could be) refuses it before
/// allocating: exit code 1 and a setup failure on its status pipe, not an
/// abort.
#[test]
fn huge_boot_record_is_refused_in_the_child() {
    use std::os::fd::AsRawFd;
    let boot = rustix::fs::memfd_create("forged-boot", rustix::fs::MemfdFlags::empty()).unwrap();
    rustix::fs::ftruncate(&boot, 1 << 40).unwrap();
    let st = rustix::fs::fstat(&boot).unwrap();
    // The status pipe: the child writes, this test reads.
    let (status_r, status_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::empty()).unwrap();
    let value = format!(
        "1:{}:{}:{}:{}:{}",
        std::process::id(),
        boot.as_raw_fd(),
        st.st_dev,
        st.st_ino,
        status_w.as_raw_fd()
    );
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(multiproc::testing::child_test_args("spawn_child"))
        .env(SPAWN_ENV, value)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    drop(status_w);
    let end = Instant::now() + DEADLINE;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child ran past {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(code, Some(1), "a setup failure, not an abort");
    let mut said = vec![0u8; 4096];
    let n = rustix::io::read(&status_r, &mut said[..]).unwrap_or(0);
    let said = String::from_utf8_lossy(&said[..n]);
    assert!(
        said.contains("boot record of 1099511627776 bytes"),
        "{said:?}"
    );
}
