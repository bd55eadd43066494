//! `Process`: both start methods, exit codes and failures, signals,
//! `join_timeout`, daemons, identities, every shared object handed to a
//! child, garbage descriptors, a missing `init`, and what dropping a running
//! handle does.
//!
//! Spawned children re-run this test binary with only the test
//! `spawn_child` selected (`Process::for_test`); that test calls
//! `multiproc::init` with the entries below, and does nothing in a normal
//! run. Every child is joined with a deadline (`finish`), and killed if it
//! overruns.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::{DEADLINE, ShmName};
use multiproc::{
    Array, AtomicValue, Barrier, BoundedSemaphore, Condition, Connection, Descriptor, Entry,
    EntryPoint, Error, Event, FailureKind, JoinableQueue, Lock, MessageQueue, Mutex, Process,
    Queue, RLock, RawArray, RawValue, SPAWN_ENV, Semaphore, SharedMemory, StartMethod, Value,
    active_children, current_process, parent_process, pipe, spsc,
};
use serde::{Deserialize, Serialize};

const BOTH: [StartMethod; 2] = [StartMethod::Fork, StartMethod::Spawn];

const ENTRIES: &[EntryPoint] = &[
    EntryPoint::of::<ReportPid>(),
    EntryPoint::of::<Negate>(),
    EntryPoint::of::<Exit>(),
    EntryPoint::of::<Sleep>(),
    EntryPoint::of::<Everything>(),
    EntryPoint::of::<AttachOne>(),
    EntryPoint::of::<CheckIdentity>(),
    EntryPoint::of::<Grandchildren>(),
    EntryPoint::of::<TryNonDaemonChild>(),
    EntryPoint::of::<CheckInherited>(),
];

/// The spawned children's `main`: runs the entry they were spawned for.
#[test]
fn spawn_child() {
    multiproc::init(ENTRIES);
}

/// A process running `entry` by `method`; spawned ones run `spawn_child`.
fn process<E: Entry + Send + 'static>(method: StartMethod, entry: E) -> Process<'static> {
    Process::new(method, entry).for_test("spawn_child")
}

/// Joins within the deadline; kills the child and fails the test if not.
fn finish(p: &Process<'_>) -> i32 {
    match p.join_timeout(DEADLINE) {
        Ok(Some(code)) => code,
        other => {
            let _ = p.kill();
            let _ = p.join();
            panic!("{} did not exit within {DEADLINE:?}: {other:?}", p.name());
        }
    }
}

/// Asserts that `pid` is no longer a child of this process (it was reaped).
fn assert_reaped(pid: u32) {
    let mut status = 0;
    // SAFETY: WNOHANG on one pid: reaps nothing but a zombie child of ours,
    // which the assertion then reports.
    let r = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
    assert_eq!(r, -1, "pid {pid} was still our child (a zombie or running)");
}

fn getppid() -> u32 {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() as u32 }
}

// --------------------------------------------------------------------------
// Entries
// --------------------------------------------------------------------------

/// Writes its pid and parent pid into `out[2 * slot..]`.
#[derive(Serialize, Deserialize)]
struct ReportPid {
    slot: usize,
    out: Array<u32>,
}

impl Entry for ReportPid {
    type Output = multiproc::Result<()>;
    fn run(self) -> multiproc::Result<()> {
        self.out.set(2 * self.slot, std::process::id())?;
        self.out.set(2 * self.slot + 1, getppid())
    }
}

/// Negates its own copy of `local` and the shared `shared`.
#[derive(Serialize, Deserialize)]
struct Negate {
    local: Vec<i32>,
    shared: Array<i32>,
}

impl Entry for Negate {
    type Output = multiproc::Result<()>;
    fn run(mut self) -> multiproc::Result<()> {
        for x in &mut self.local {
            *x = -*x;
        }
        for x in self.shared.lock().unwrap().iter_mut() {
            *x = -*x;
        }
        // The child's copy did change.
        assert_eq!(self.local[1], -1);
        Ok(())
    }
}

/// Ends with an exit code, an error, or a panic.
#[derive(Serialize, Deserialize)]
enum Exit {
    Code(i32),
    Error(String),
    Panic(String),
}

impl Entry for Exit {
    type Output = Result<i32, String>;
    fn run(self) -> Result<i32, String> {
        match self {
            Exit::Code(c) => Ok(c),
            Exit::Error(e) => Err(e),
            Exit::Panic(m) => panic!("{m}"),
        }
    }
}

/// Sleeps.
#[derive(Serialize, Deserialize)]
struct Sleep {
    ms: u64,
}

impl Entry for Sleep {
    type Output = ();
    fn run(self) {
        std::thread::sleep(Duration::from_millis(self.ms));
    }
}

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

/// Checks `current_process()` and `parent_process()` in the child.
#[derive(Serialize, Deserialize)]
struct CheckIdentity {
    name: String,
    daemon: bool,
    parent_pid: u32,
    parent_name: String,
}

impl Entry for CheckIdentity {
    type Output = Result<(), String>;
    fn run(self) -> Result<(), String> {
        let me = current_process();
        let parent = parent_process().ok_or("no parent_process")?;
        let seen = (
            me.name().to_owned(),
            me.pid(),
            me.daemon(),
            parent.pid(),
            parent.name().to_owned(),
            parent.is_alive(),
        );
        let want = (
            self.name,
            std::process::id(),
            self.daemon,
            self.parent_pid,
            self.parent_name,
            true,
        );
        if seen == want {
            Ok(())
        } else {
            Err(format!("saw {seen:?}, wanted {want:?}"))
        }
    }
}

/// Starts a slow non-daemon grandchild and a daemon grandchild, drops both
/// handles and returns: the exit must wait for the first, kill the second.
#[derive(Serialize, Deserialize)]
struct Grandchildren {
    flag: AtomicValue<u32>,
    daemon_pid: AtomicValue<u32>,
}

impl Entry for Grandchildren {
    type Output = multiproc::Result<()>;
    fn run(self) -> multiproc::Result<()> {
        let flag = &self.flag;
        let mut slow = Process::fork(move || {
            std::thread::sleep(Duration::from_millis(300));
            flag.store(1, SeqCst);
        });
        slow.start()?;
        let mut daemon = Process::fork(|| std::thread::sleep(DEADLINE)).with_daemon(true);
        daemon.start()?;
        self.daemon_pid.store(daemon.pid().unwrap_or(0), SeqCst);
        Ok(())
    }
}

/// In a daemon: starting a non-daemon child must be refused, a daemon one
/// allowed. Exit code 0 if so.
#[derive(Serialize, Deserialize)]
struct TryNonDaemonChild;

impl Entry for TryNonDaemonChild {
    type Output = i32;
    fn run(self) -> i32 {
        let mut p = Process::fork(|| ());
        if !matches!(p.start(), Err(Error::ProcessState { .. })) {
            return 1;
        }
        let mut d = Process::fork(|| ()).with_daemon(true);
        if d.start().is_err() || d.join_timeout(DEADLINE).ok().flatten() != Some(0) {
            return 2;
        }
        0
    }
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
// The tutorial examples
// --------------------------------------------------------------------------

/// Ten children report their pid and their parent's.
#[test]
fn ten_children_report_pids() {
    for method in BOTH {
        let out = Array::<u32>::new(20).unwrap();
        let mut kids: Vec<Process<'_>> = (0..10)
            .map(|slot| {
                process(
                    method,
                    ReportPid {
                        slot,
                        out: out.clone(),
                    },
                )
            })
            .collect();
        assert!(kids.iter().all(|p| p.pid().is_none()));
        for p in &mut kids {
            p.start().unwrap();
        }
        for p in &kids {
            assert_eq!(finish(p), 0, "{method:?}: {:?}", p.failure());
        }
        let seen = out.to_vec();
        let mut pids = Vec::new();
        for (slot, p) in kids.iter().enumerate() {
            assert_eq!(Some(seen[2 * slot]), p.pid(), "{method:?} slot {slot}");
            assert_eq!(seen[2 * slot + 1], std::process::id(), "{method:?} ppid");
            pids.push(seen[2 * slot]);
            assert_reaped(seen[2 * slot]);
        }
        pids.sort_unstable();
        pids.dedup();
        assert_eq!(pids.len(), 10);
    }
}

/// A child's changes to its copy of a `Vec` stay there; its changes to a
/// shared `Array` are seen.
#[test]
fn vec_is_copied_array_is_shared() {
    for method in BOTH {
        // 400 KB of local data: a spawned child's arguments do not fit a
        // pipe buffer.
        let local: Vec<i32> = (0..100_000).collect();
        let shared = Array::from_slice(&[1, 2, 3]).unwrap();
        let mut p = process(
            method,
            Negate {
                local: local.clone(),
                shared: shared.clone(),
            },
        );
        p.start().unwrap();
        assert_eq!(finish(&p), 0, "{method:?}: {:?}", p.failure());
        assert_eq!(local[1], 1, "{method:?}: the parent's Vec changed");
        assert_eq!(shared.to_vec(), [-1, -2, -3], "{method:?}");
    }
    // The same with a closure that captures the Vec by move.
    let mut local = vec![1, 2, 3];
    let shared = Array::from_slice(&[1, 2, 3]).unwrap();
    let mut p = Process::fork({
        let shared = &shared;
        let mut mine = local.clone();
        move || {
            mine.iter_mut().for_each(|x| *x = -*x);
            for x in shared.lock().unwrap().iter_mut() {
                *x = -*x;
            }
            i32::from(mine != [-1, -2, -3])
        }
    });
    p.start().unwrap();
    local.push(4);
    assert_eq!(finish(&p), 0);
    assert_eq!(local, [1, 2, 3, 4]);
    assert_eq!(shared.to_vec(), [-1, -2, -3]);
}

/// `terminate`: not alive afterwards, exit code -15; `kill`: -9.
#[test]
fn terminate_and_kill() {
    for method in BOTH {
        let p = {
            let mut p = process(method, Sleep { ms: 60_000 });
            p.start().unwrap();
            p
        };
        assert!(p.is_alive());
        assert_eq!(p.exitcode(), None);
        p.terminate().unwrap();
        assert_eq!(finish(&p), -15, "{method:?}");
        assert!(!p.is_alive());
        assert_eq!(p.exitcode(), Some(-15));
        // Signalling a reaped child does nothing.
        p.terminate().unwrap();
        p.kill().unwrap();
        assert_reaped(p.pid().unwrap());

        let mut p = process(method, Sleep { ms: 60_000 });
        p.start().unwrap();
        p.kill().unwrap();
        assert_eq!(finish(&p), -9, "{method:?}");
    }
}

/// `join_timeout` on a sleeping child returns after the timeout, with the
/// child still alive.
#[test]
fn join_timeout_returns_in_time() {
    for method in BOTH {
        let mut p = process(method, Sleep { ms: 60_000 });
        p.start().unwrap();
        let timeout = Duration::from_millis(200);
        let t0 = Instant::now();
        assert_eq!(p.join_timeout(timeout).unwrap(), None, "{method:?}");
        assert!(t0.elapsed() >= timeout);
        assert!(p.is_alive());
        p.kill().unwrap();
        assert_eq!(finish(&p), -9);
    }
}

/// Exit codes, errors and panics, with their messages. (The spawned
/// child's panic hook prints "boom 42" on stderr, as any panic does: that
/// output is expected.)
#[test]
fn exit_codes_errors_and_panics() {
    for method in BOTH {
        let run = |how: Exit| {
            let mut p = process(method, how);
            p.start().unwrap();
            let code = finish(&p);
            (code, p.failure())
        };
        assert_eq!(run(Exit::Code(0)), (0, None));
        assert_eq!(run(Exit::Code(3)), (3, None));
        let (code, failure) = run(Exit::Error("disk full".into()));
        let failure = failure.unwrap();
        assert_eq!(
            (code, failure.kind()),
            (1, FailureKind::Error),
            "{method:?}"
        );
        assert_eq!(failure.message(), "\"disk full\"");
        let (code, failure) = run(Exit::Panic("boom 42".into()));
        let failure = failure.unwrap();
        assert_eq!(
            (code, failure.kind()),
            (101, FailureKind::Panic),
            "{method:?}"
        );
        assert_eq!(failure.message(), "boom 42");
    }
    // A closure's panic, with a formatted message.
    let n = 7;
    let mut p = Process::fork(move || {
        if n > 0 {
            panic!("closure panicked with {n}");
        }
    });
    p.start().unwrap();
    assert_eq!(finish(&p), 101);
    assert_eq!(p.failure().unwrap().message(), "closure panicked with 7");
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
        assert!(joinable.join_timeout(DEADLINE), "{method:?} joinable");
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
fn undispatched_child() {
    if std::env::var_os(SPAWN_ENV).is_none() {
        return;
    }
    let mut p = Process::fork(|| ());
    let code = match p.start() {
        Err(Error::ProcessState { .. }) => 42,
        _ => 43,
    };
    std::process::exit(code);
}

#[test]
fn spawn_without_init_is_a_clear_error() {
    let mut p = Process::spawn(Sleep { ms: 0 }).for_test("undispatched_child");
    let err = p.start().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
    // Exit code 42: the child was refused to start a process of its own.
    assert!(
        msg.contains("exit code 42") && msg.contains("multiproc::init"),
        "{msg}"
    );
    assert!(p.pid().is_none());
    assert!(matches!(p.join(), Err(Error::ProcessState { .. })));
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

// --------------------------------------------------------------------------
// Daemons, identities, drops and exits
// --------------------------------------------------------------------------

/// A daemon child dies when its parent is SIGKILLed. The test runs in a
/// forked helper that is a child subreaper, so the orphaned daemon is handed
/// to it, and it can check how the daemon died.
#[test]
fn daemon_dies_when_parent_is_killed() {
    for method in BOTH {
        let daemon_pid = AtomicValue::new(0u32).unwrap();
        let helper = common::fork(|| {
            // SAFETY: prctl on this (forked, single-threaded) helper.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
            let daemon_pid = &daemon_pid;
            let mut middle = Process::fork(move || {
                let mut d = process(method, Sleep { ms: 60_000 }).with_daemon(true);
                if d.start().is_err() {
                    return 2;
                }
                daemon_pid.store(d.pid().unwrap_or(0), SeqCst);
                std::thread::sleep(DEADLINE);
                3
            });
            if middle.start().is_err() {
                return 10;
            }
            let end = Instant::now() + DEADLINE;
            let d = loop {
                match daemon_pid.load(SeqCst) {
                    0 if Instant::now() < end => std::thread::sleep(Duration::from_millis(1)),
                    0 => return 11,
                    d => break d as i32,
                }
            };
            let _ = middle.kill();
            if middle.join_timeout(DEADLINE).ok().flatten() != Some(-9) {
                return 12;
            }
            // The daemon is ours now; it must die of SIGKILL.
            let mut status = 0;
            loop {
                // SAFETY: waits for one pid, our (adopted) child.
                let r = unsafe { libc::waitpid(d, &mut status, libc::WNOHANG) };
                if r == d {
                    break;
                }
                if r < 0 || Instant::now() >= end {
                    // SAFETY: kill our adopted child so nothing is left.
                    unsafe { libc::kill(d, libc::SIGKILL) };
                    return 13;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL {
                0
            } else {
                14
            }
        });
        assert_eq!(helper.join(), 0, "{method:?}");
    }
}

/// A daemon may start daemon children, not others.
#[test]
fn daemon_starts_only_daemons() {
    for method in BOTH {
        let mut p = process(method, TryNonDaemonChild).with_daemon(true);
        p.start().unwrap();
        assert_eq!(finish(&p), 0, "{method:?}: {:?}", p.failure());
    }
}

/// Names, pids and daemon flags as the child sees them.
#[test]
fn current_and_parent_process() {
    assert_eq!(current_process().name(), "MainProcess");
    assert!(parent_process().is_none());
    for method in BOTH {
        for daemon in [false, true] {
            let name = format!("worker-{method:?}-{daemon}");
            let check = CheckIdentity {
                name: name.clone(),
                daemon,
                parent_pid: std::process::id(),
                parent_name: "MainProcess".into(),
            };
            let mut p = process(method, check).with_name(&name).with_daemon(daemon);
            assert_eq!(p.name(), name);
            p.start().unwrap();
            assert_eq!(finish(&p), 0, "{method:?}: {:?}", p.failure());
        }
    }
    // Default names: Process-N, and Process-N:1 for its first child.
    let mut p = Process::fork(|| {
        let me = current_process();
        let child = Process::fork(|| ());
        i32::from(child.name() != format!("{}:1", me.name()))
    });
    assert!(p.name().starts_with("Process-"), "{}", p.name());
    p.start().unwrap();
    assert_eq!(finish(&p), 0);
}

/// Dropping a running handle detaches the child: it runs on, and is reaped
/// once it has exited.
#[test]
fn dropped_handle_detaches_then_reaps() {
    let go = Event::new().unwrap();
    let done = AtomicValue::new(0u32).unwrap();
    let mut p = Process::fork(|| {
        if go.wait_timeout(DEADLINE).is_ok() {
            done.store(1, SeqCst);
        }
    });
    p.start().unwrap();
    let pid = p.pid().unwrap();
    drop(p);
    let listed = |pid| active_children().iter().any(|c| c.pid() == pid);
    assert!(listed(pid), "a detached child is still listed");
    go.set();
    let end = Instant::now() + DEADLINE;
    while done.load(SeqCst) == 0 || listed(pid) {
        assert!(Instant::now() < end, "detached child never finished");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_reaped(pid);
}

/// At exit a process waits for its non-daemon children and kills its
/// daemon ones (dropped handles included), under both start methods.
#[test]
fn exit_waits_for_children_and_kills_daemons() {
    for method in BOTH {
        let flag = AtomicValue::new(0u32).unwrap();
        let daemon_pid = AtomicValue::new(0u32).unwrap();
        let mut p = process(
            method,
            Grandchildren {
                flag: flag.clone(),
                daemon_pid: daemon_pid.clone(),
            },
        );
        p.start().unwrap();
        assert_eq!(finish(&p), 0, "{method:?}: {:?}", p.failure());
        assert_eq!(flag.load(SeqCst), 1, "{method:?}: exited before its child");
        let d = daemon_pid.load(SeqCst) as i32;
        assert_ne!(d, 0);
        // Killed and reaped by its parent before that exited: gone.
        // SAFETY: signal 0 only checks whether the pid exists.
        let r = unsafe { libc::kill(d, 0) };
        assert_eq!(
            r, -1,
            "{method:?}: the daemon grandchild {d} is still there"
        );
    }
}

/// Handles can be shared with and sent to other threads.
#[test]
fn process_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Process<'static>>();
    let mut p = Process::fork(|| ());
    p.start().unwrap();
    let code = std::thread::scope(|s| s.spawn(|| finish(&p)).join().unwrap());
    assert_eq!(code, 0);
}

/// Misuse is an error, not a panic.
#[test]
fn state_errors() {
    let mut p = Process::fork(|| ());
    assert!(matches!(p.join(), Err(Error::ProcessState { .. })));
    assert!(matches!(p.terminate(), Err(Error::ProcessState { .. })));
    assert!(matches!(
        p.join_timeout(Duration::ZERO),
        Err(Error::ProcessState { .. })
    ));
    assert!(!p.is_alive());
    assert_eq!(p.exitcode(), None);
    p.start().unwrap();
    assert!(matches!(p.start(), Err(Error::ProcessState { .. })));
    assert_eq!(finish(&p), 0);
    assert_eq!(p.join().unwrap(), 0, "join again gives the same code");
    assert_eq!(p.start_method(), StartMethod::Fork);
}
