//! Attaching every object kind to arbitrary shared bytes.
//!
//! One named segment per fuzzing process (unlinked at once, so nothing is
//! left in /dev/shm) is zeroed before each input; the input then writes raw
//! bytes into it, forges object headers (the bytes a real creator writes,
//! with the length and one field of the fuzzer's choosing, and the checksum
//! made to match or not), places real objects and overwrites their payload
//! (lock words, counters, queue positions and stamps) with garbage, and
//! opens or attaches (through a descriptor naming this segment) any object
//! type at any offset. Each attach must return a clean `Err` or a handle
//! whose operations stay in bounds: they may return wrong data, never
//! crash, panic or hang (every wait is a `try_*` or a timeout of a few
//! microseconds). The raw input is also decoded as descriptor bytes and
//! attached as every type.
//!
//! The message kinds are among them: `MessageQueue<Vec<u8>>`,
//! `JoinableQueue<u16>` and a `Pipe` end of `Connection<Vec<u8>>`. Pipes are
//! only made in the arena, so this target places one in its segment by
//! writing what `Pipe::create` writes (header, zeroed ring words, slot
//! stamps) and reaches it through a descriptor naming that offset (part 0,
//! or the part of the `Attach` step's choosing). Forged message headers may
//! have any slot size (a multiple of 64 passes the fingerprint check), and
//! payload words reach the first slots' stamps and length words.
#![no_main]

use std::sync::OnceLock;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use multiproc::SharedObject;
use multiproc::spsc::{Consumer, Producer};
use multiproc::{
    Array, AtomicValue, Barrier, BoundedSemaphore, Condition, Connection, Descriptor, Event,
    Fingerprint, JoinableQueue, Lock, LockTimeoutError, LockTimeoutResult, MessageQueue, Mutex,
    ObjectKind, Queue, RLock, RawArray, RawValue, SegmentRef, Semaphore, SharedMemory,
    TryLockError, TryLockResult, Value,
};
use serde::Serialize;

/// Bytes of the fuzzing segment the input writes (and places objects in).
const SEG: usize = 1 << 14;
/// Size of the mapping: one page more than [`SEG`], never written (zero, so
/// no header there validates). A zero-sized element (`RawArray<()>`) of an
/// object that ends at the very end of a mapping is read at one past its
/// end: sound in Rust, which touches no memory for it, but ASan checks such
/// zero-sized volatile reads against the next mapping's shadow and reports
/// them when that mapping is one of its own (a false positive, seen here).
const MAPPED: usize = SEG + 4096;

/// A timeout for the timed calls: zero to 49 µs.
fn wait(us: u16) -> Duration {
    Duration::from_micros(u64::from(us % 50))
}

/// The guard of a `try_lock` / `lock_timeout`, if the lock was taken.
fn taken<G>(r: TryLockResult<G>) -> Option<G> {
    match r {
        Ok(g) => Some(g),
        Err(TryLockError::OwnerDied(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// As [`taken`], for a timed lock.
fn timed_taken<G>(r: LockTimeoutResult<G>) -> Option<G> {
    match r {
        Ok(g) => Some(g),
        Err(LockTimeoutError::OwnerDied(e)) => Some(e.into_inner()),
        Err(LockTimeoutError::Timeout) => None,
    }
}

/// One operation on an attached object: `code` picks it (modulo the
/// type's count), `a` and `b` are its arguments.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Op {
    code: u8,
    a: u32,
    b: u16,
}

macro_rules! targets {
    (|$shm:ident, $off:ident, $len:ident| $($name:ident: $ty:ty => $create:expr;)*) => {
        /// The object types attached.
        #[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
        enum Target { $($name),* }

        const ALL: &[Target] = &[$(Target::$name),*];

        /// An attached handle.
        enum Obj { $($name($ty)),* }

        impl Target {
            /// Places a real object at `off` (`len` elements where the type has a length).
            #[allow(unused_variables)]
            fn create(self, $shm: &SharedMemory, $off: usize, $len: usize) -> multiproc::Result<Obj> {
                match self { $(Target::$name => $create.map(Obj::$name)),* }
            }

            fn open(self, shm: &SharedMemory, off: usize) -> multiproc::Result<Obj> {
                match self { $(Target::$name => <$ty>::open_at(shm, off).map(Obj::$name)),* }
            }

            fn attach(self, d: &Descriptor) -> multiproc::Result<Obj> {
                match self { $(Target::$name => <$ty>::attach(d).map(Obj::$name)),* }
            }
        }

        impl Obj {
            fn descriptor(&self) -> Descriptor {
                match self { $(Obj::$name(o) => o.descriptor()),* }
            }
        }
    };
}

targets! {
    |shm, off, len|
    ValueU64: Value<u64> => Value::create_at(shm, off, 7u64);
    RawValueU32: RawValue<u32> => RawValue::create_at(shm, off, 7u32);
    ArrayU16: Array<u16> => Array::create_at(shm, off, len);
    ArrayUnit: Array<()> => Array::create_at(shm, off, len);
    RawArrayU64: RawArray<u64> => RawArray::create_at(shm, off, len);
    RawArrayUnit: RawArray<()> => RawArray::create_at(shm, off, len);
    AtomicU64: AtomicValue<u64> => AtomicValue::create_at(shm, off, 7u64);
    MutexU32: Mutex<u32> => Mutex::create_at(shm, off, 7u32);
    Lock: Lock => Lock::create_at(shm, off);
    RLock: RLock => RLock::create_at(shm, off);
    Semaphore: Semaphore => Semaphore::create_at(shm, off, 2);
    Bounded: BoundedSemaphore => BoundedSemaphore::create_at(shm, off, 2);
    Event: Event => Event::create_at(shm, off);
    Barrier: Barrier => Barrier::create_at(shm, off, 2);
    Condition: Condition => Condition::create_at(shm, off);
    ProducerU32: Producer<u32> => multiproc::spsc::channel_at::<u32>(shm, off, len).map(|(p, _)| p);
    ConsumerU32: Consumer<u32> => multiproc::spsc::channel_at::<u32>(shm, off, len).map(|(_, c)| c);
    ProducerUnit: Producer<()> => multiproc::spsc::channel_at::<()>(shm, off, len).map(|(p, _)| p);
    ConsumerUnit: Consumer<()> => multiproc::spsc::channel_at::<()>(shm, off, len).map(|(_, c)| c);
    QueueU64: Queue<u64> => Queue::create_at(shm, off, len);
    QueueUnit: Queue<()> => Queue::create_at(shm, off, len);
    MessagesBytes: MessageQueue<Vec<u8>> => MessageQueue::create_at(shm, off, len, MSG_MAX);
    JoinableU16: JoinableQueue<u16> => JoinableQueue::create_at(shm, off, len, MSG_MAX);
    PipeBytes0: PipeEnd<0> => PipeEnd::create_at(shm, off, len);
    PipeBytes1: PipeEnd<1> => PipeEnd::create_at(shm, off, len);
}

/// The maximum message size the message kinds are created with (slots of
/// 64 bytes).
const MSG_MAX: usize = 48;

/// Where a pipe's slots start, relative to its header: after the header
/// line, the two ends' holder tables (nine lines each), then two rings'
/// four lines of words (layout version 4).
const PIPE_DATA: usize = 27 * 64;

/// A pipe end in the fuzzing segment, opened as end `END`.
struct PipeEnd<const END: u32>(Connection<Vec<u8>>);

impl<const END: u32> PipeEnd<END> {
    /// Places a pipe of `len` slots each way at `off` as `Pipe::create`
    /// would (it places pipes only in the arena): the header (that of a
    /// `MessageQueue<Vec<u8>>` of the same slots, with the pipe's kind,
    /// length and data offset), zeroed words and the two rings' initial
    /// stamps; then opens end `END`.
    fn create_at(shm: &SharedMemory, off: usize, len: usize) -> multiproc::Result<Self> {
        drop(MessageQueue::<Vec<u8>>::create_at(shm, off, 1, MSG_MAX)?);
        let mut h = [0; 64];
        shm.read_at(off, &mut h)?;
        let slot = get_u32(&h, 16) as usize;
        let total = PIPE_DATA + 2 * len * slot;
        if off + total > SEG {
            return Err(multiproc::Error::OutOfBounds {
                offset: off as u64,
                end: (off + total) as u64,
                segment_size: SEG as u64,
                align: 64,
            });
        }
        put_u32(&mut h, 12, ObjectKind::Pipe as u32);
        put_u64(&mut h, 32, 2 * len as u64);
        put_u64(&mut h, 40, total as u64);
        put_u32(&mut h, 48, PIPE_DATA as u32);
        let sum = checksum(&h);
        put_u64(&mut h, 56, sum);
        shm.write_at(off + 64, &vec![0; total - 64])?;
        for ring in 0..2 {
            for i in 0..len {
                let at = off + PIPE_DATA + (ring * len + i) * slot;
                shm.write_at(at, &(i as u64).to_le_bytes())?;
            }
        }
        shm.write_at(off, &h)?;
        PipeEnd::open_at(shm, off)
    }

    /// Attaches end `END` of the pipe whose header is at `off`, through a
    /// descriptor with the header's fingerprint and length.
    fn open_at(shm: &SharedMemory, off: usize) -> multiproc::Result<Self> {
        let mut h = [0; 64];
        shm.read_at(off, &mut h)?;
        let raw = RawDescriptor {
            segment: shm.segment_ref(),
            offset: off as u64,
            kind: ObjectKind::Pipe,
            fingerprint: Fingerprint {
                size: get_u32(&h, 16),
                align: get_u32(&h, 20),
                type_hash: get_u64(&h, 24),
            },
            len: get_u64(&h, 32),
            part: END,
        };
        let bytes = postcard::to_allocvec(&raw).expect("encode a descriptor");
        PipeEnd::attach(&Descriptor::from_bytes(&bytes).expect("decode our own descriptor"))
    }

    fn attach(d: &Descriptor) -> multiproc::Result<Self> {
        Connection::attach(d).map(PipeEnd)
    }

    /// The other end, attached from a descriptor of the same object.
    fn other(&self) -> multiproc::Result<Connection<Vec<u8>>> {
        let d = self.0.descriptor();
        let raw = RawDescriptor {
            segment: d.segment().clone(),
            offset: d.offset(),
            kind: d.kind(),
            fingerprint: d.fingerprint(),
            len: d.len(),
            part: 1 - d.part(),
        };
        let bytes = postcard::to_allocvec(&raw).expect("encode a descriptor");
        Connection::attach(&Descriptor::from_bytes(&bytes).expect("decode our own descriptor"))
    }

    fn descriptor(&self) -> Descriptor {
        self.0.descriptor()
    }
}

/// The header a real creator writes for a target, and what its descriptor
/// says.
struct Template {
    header: [u8; 64],
    kind: ObjectKind,
    fingerprint: Fingerprint,
}

/// The process-wide fuzzing state.
struct Env {
    shm: SharedMemory,
    templates: Vec<Template>,
    /// A mutex of our own (in the arena) for `Condition::wait_timeout`.
    mutex: Mutex<u32>,
}

/// The postcard shape of a [`Descriptor`] (same fields, same order), to
/// make descriptors that name this segment with fields of our choosing.
#[derive(Serialize)]
struct RawDescriptor {
    segment: SegmentRef,
    offset: u64,
    kind: ObjectKind,
    fingerprint: Fingerprint,
    len: u64,
    part: u32,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn field<const N: usize>(h: &[u8; 64], at: usize) -> [u8; N] {
    h[at..at + N].try_into().unwrap()
}

fn get_u32(h: &[u8; 64], at: usize) -> u32 {
    u32::from_le_bytes(field(h, at))
}

fn get_u64(h: &[u8; 64], at: usize) -> u64 {
    u64::from_le_bytes(field(h, at))
}

fn put_u32(h: &mut [u8; 64], at: usize, v: u32) {
    h[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(h: &mut [u8; 64], at: usize, v: u64) {
    h[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// The header checksum (see `src/shm/header.rs`): FNV-1a 64 over the
/// fields as little-endian u64s, `ready` and the checksum left out.
fn checksum(h: &[u8; 64]) -> u64 {
    let words = [
        get_u64(h, 0),
        u64::from(get_u32(h, 12)),
        u64::from(get_u32(h, 16)),
        u64::from(get_u32(h, 20)),
        get_u64(h, 24),
        get_u64(h, 32),
        get_u64(h, 40),
        u64::from(get_u32(h, 48)),
        u64::from(get_u32(h, 52)),
    ];
    let mut x = FNV_OFFSET;
    for w in words {
        for b in w.to_le_bytes() {
            x ^= u64::from(b);
            x = x.wrapping_mul(FNV_PRIME);
        }
    }
    x
}

/// A template's header for `len` elements (size fields and checksum to
/// match).
fn header_for(t: &Template, len: u64) -> [u8; 64] {
    let mut h = t.header;
    let elem = u64::from(get_u32(&h, 16));
    let data_offset = u64::from(get_u32(&h, 48));
    put_u64(&mut h, 32, len);
    put_u64(&mut h, 40, data_offset.wrapping_add(len.wrapping_mul(elem)));
    let sum = checksum(&h);
    put_u64(&mut h, 56, sum);
    h
}

fn zero(shm: &SharedMemory) {
    shm.write_at(0, &[0; MAPPED])
        .expect("no object is live between inputs");
}

impl Env {
    fn new() -> Env {
        let name = format!("multiproc-fuzz-{}", std::process::id());
        let _ = SharedMemory::remove(&name); // a leftover of a crashed run with our pid
        let shm = SharedMemory::create(&name, MAPPED).expect("create the fuzzing segment");
        // Unlinked at once: the mapping lives on, the name is gone even if
        // the fuzzer is killed.
        shm.unlink().expect("unlink the fuzzing segment");
        let mut templates = Vec::new();
        for &t in ALL {
            let obj = t.create(&shm, 0, 1).expect("place a real object");
            let d = obj.descriptor();
            drop(obj);
            let mut header = [0; 64];
            shm.read_at(0, &mut header).expect("read a header");
            let tpl = Template {
                header,
                kind: d.kind(),
                fingerprint: d.fingerprint(),
            };
            // Self-checks: our forgery of a real header is byte-exact, at
            // another length too; our descriptor encoding is postcard's.
            assert_eq!(header_for(&tpl, d.len()), header, "{t:?}");
            let raw = RawDescriptor {
                segment: shm.segment_ref(),
                offset: 0,
                kind: d.kind(),
                fingerprint: d.fingerprint(),
                len: d.len(),
                part: d.part(),
            };
            assert_eq!(postcard::to_allocvec(&raw).unwrap(), d.to_bytes(), "{t:?}");
            zero(&shm);
            if let Ok(obj) = t.create(&shm, 0, 3) {
                let d = obj.descriptor();
                drop(obj);
                let mut real = [0; 64];
                shm.read_at(0, &mut real).unwrap();
                assert_eq!(header_for(&tpl, d.len()), real, "{t:?} of length 3");
                zero(&shm);
            }
            templates.push(tpl);
        }
        Env {
            shm,
            templates,
            mutex: Mutex::new(0).expect("a mutex in the arena"),
        }
    }

    fn template(&self, t: Target) -> &Template {
        &self.templates[ALL.iter().position(|&x| x == t).unwrap()]
    }
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(Env::new)
}

/// An offset in (or just past) the segment.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Offset {
    /// A cache line: `64 * n`.
    Line(u8),
    /// Any byte offset, up to a little past the end.
    Byte(u16),
}

impl Offset {
    fn get(self) -> usize {
        match self {
            Offset::Line(n) => usize::from(n) * 64,
            Offset::Byte(b) => usize::from(b) % (MAPPED + 256),
        }
    }
}

/// An element count.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Len {
    Small(u8),
    Any(u64),
    /// `u64::MAX - n`: absurd lengths pass the size checks for zero-sized
    /// elements.
    FromTop(u8),
}

impl Len {
    fn get(self) -> u64 {
        match self {
            Len::Small(n) => u64::from(n),
            Len::Any(n) => n,
            Len::FromTop(n) => u64::MAX - u64::from(n),
        }
    }
}

/// One field of a forged header set to a value of the fuzzer's choosing.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Tweak {
    None,
    Magic(u64),
    Ready(u32),
    Kind(u32),
    ElemSize(u32),
    ElemAlign(u32),
    TypeHash(u64),
    TotalSize(u64),
    DataOffset(u32),
    Reserved(u32),
    Checksum(u64),
    /// Element size `16 * n`, with the total size to match: a message
    /// object of another slot size (or one the attacher must refuse: zero,
    /// not a multiple of 64).
    SlotSize(u8),
}

/// A 64-bit word for a payload (a lock word, a ring position or stamp),
/// chosen the way ring code compares them rather than as random bytes.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Word {
    Small(u8),
    FromTop(u8),
    /// The object's length plus `n`.
    NearLen(i8),
    /// An MPMC position: `lap * one_lap | closed mark | index`, with the
    /// encoding of the object's length.
    Pos {
        lap: Len,
        closed: bool,
        index: u8,
    },
    Any(u64),
}

impl Word {
    fn get(self, len: u64) -> u64 {
        let mark = len
            .saturating_add(1)
            .checked_next_power_of_two()
            .unwrap_or(1 << 63);
        match self {
            Word::Small(n) => u64::from(n),
            Word::FromTop(n) => u64::MAX - u64::from(n),
            Word::NearLen(n) => len.wrapping_add_signed(i64::from(n)),
            Word::Pos { lap, closed, index } => lap
                .get()
                .wrapping_mul(mark.wrapping_mul(2))
                .wrapping_add(if closed { mark } else { 0 })
                .wrapping_add(u64::from(index)),
            Word::Any(v) => v,
        }
    }
}

/// Words at `8 * (n % 128)` bytes after a header: the state lines and the
/// first slots of a ring (stamps, and a message slot's length word at its
/// byte 8), or a lock word and its value.
type Words = Vec<(u8, Word)>;

fn write_words(shm: &SharedMemory, header_at: usize, len: u64, words: &Words) {
    for &(n, w) in words {
        let at = header_at + 64 + 8 * (usize::from(n) % 128);
        write_clipped(shm, at, &w.get(len).to_le_bytes());
    }
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// Raw bytes at `at` (refused over a live object).
    Bytes { at: u16, bytes: Vec<u8> },
    /// The header `target`'s creator writes for `len` elements, with one
    /// field tweaked (the checksum recomputed after the tweak if `fix`),
    /// and `payload` after it; then, with `ops`, opens `target` there.
    Forge {
        line: u8,
        target: Target,
        len: Len,
        tweak: Tweak,
        fix: bool,
        payload: Vec<u8>,
        words: Words,
        ops: Option<Vec<Op>>,
    },
    /// A real object of `len` elements, given `fill` items if it is a
    /// queue, dropped; then `payload` over the bytes after its header.
    Create {
        line: u8,
        target: Target,
        len: u8,
        fill: Fill,
        payload: Vec<u8>,
        words: Words,
    },
    /// Opens `target` at `at`, runs `ops`, and keeps it live.
    Open {
        at: Offset,
        target: Target,
        ops: Vec<Op>,
    },
    /// Attaches `target` from a descriptor naming this segment, with the
    /// kind and fingerprint of `like`, length `len` (by default the one
    /// in the header there) and part 0 or 1 (a pipe's two ends); runs `ops`.
    Attach {
        at: Offset,
        target: Target,
        like: Target,
        len: Option<Len>,
        part: bool,
        ops: Vec<Op>,
    },
    /// `Create`, then `Open` of the same target there.
    Scribble {
        line: u8,
        target: Target,
        len: u8,
        fill: Fill,
        payload: Vec<u8>,
        words: Words,
        ops: Vec<Op>,
    },
    /// Drops the live handles.
    DropAll,
}

/// Items put into a fresh queue before it is scribbled over: a count
/// (`% 17`) and a seed for the messages.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Fill(u8, u32);

#[derive(Arbitrary, Debug)]
struct Input {
    steps: Vec<Step>,
}

/// A message of `a % 70` bytes (some too large for 64-byte slots).
fn u8s(a: u32) -> Vec<u8> {
    (0..small(a)).map(|i| i as u8 ^ a as u8).collect()
}

fn u16s(n: usize, a: u32) -> Vec<u16> {
    (0..n).map(|i| (i as u32 ^ a) as u16).collect()
}

fn run_ops(obj: &mut Obj, ops: &[Op], env: &Env) {
    for &Op { code, a, b } in ops {
        let c = usize::from(code);
        let t = wait(b);
        match obj {
            Obj::ValueU64(v) => match c % 3 {
                0 | 1 => {
                    let g = if c % 3 == 0 {
                        taken(v.try_lock())
                    } else {
                        timed_taken(v.lock_timeout(t))
                    };
                    if let Some(mut g) = g {
                        *g = g.wrapping_add(u64::from(a));
                        if b % 2 == 0 {
                            g.mark_consistent();
                        }
                        drop(g);
                        // The lock is free now: the blocking forms return.
                        v.set(v.get() ^ u64::from(a));
                    }
                }
                _ => {
                    let _ = v.as_ptr();
                }
            },
            Obj::RawValueU32(v) => {
                if c % 2 == 0 {
                    v.set(a);
                } else {
                    let _ = v.get();
                }
            }
            Obj::ArrayU16(arr) => array_ops(arr, c, a, t, |n| u16s(n, a)),
            Obj::ArrayUnit(arr) => array_ops(arr, c, a, t, |n| vec![(); n]),
            Obj::RawArrayU64(arr) => raw_array_ops(arr, c, a, |n| {
                (0..n).map(|i| i as u64 ^ u64::from(a)).collect()
            }),
            Obj::RawArrayUnit(arr) => raw_array_ops(arr, c, a, |n| vec![(); n]),
            Obj::AtomicU64(x) => {
                let a = u64::from(a);
                match c % 6 {
                    0 => drop(x.load(SeqCst)),
                    1 => x.store(a, SeqCst),
                    2 => drop(x.fetch_add(a, SeqCst)),
                    3 => drop(x.compare_exchange(a, a ^ 1, SeqCst, SeqCst)),
                    4 => drop(x.fetch_max(a, SeqCst)),
                    _ => drop(x.swap(a, SeqCst)),
                }
            }
            Obj::MutexU32(m) => {
                let g = if c % 2 == 0 {
                    taken(m.try_lock())
                } else {
                    timed_taken(m.lock_timeout(t))
                };
                if let Some(mut g) = g {
                    *g = g.wrapping_add(a);
                    if c % 4 < 2 {
                        g.mark_consistent();
                    }
                }
                let _ = (m.is_poisoned(), m.is_locked());
            }
            Obj::Lock(l) => match c % 3 {
                0 => drop(taken(l.try_lock())),
                1 => drop(timed_taken(l.lock_timeout(t))),
                // Not held by us (unless the garbage names this thread).
                _ => drop(l.release()),
            },
            Obj::RLock(l) => match c % 4 {
                0 => {
                    if let Some(g) = taken(l.try_lock()) {
                        // Re-entry while held.
                        let inner = timed_taken(l.lock_timeout(t));
                        let _ = l.count();
                        drop(inner);
                        drop(g);
                    }
                }
                1 => drop(timed_taken(l.lock_timeout(t))),
                2 => drop(l.release()),
                _ => drop((l.count(), l.is_owned())),
            },
            Obj::Semaphore(s) => match c % 5 {
                0 => drop(s.try_acquire()),
                1 => drop(s.acquire_timeout(t)),
                2 => drop(s.release()),
                3 => drop(s.release_n(a)),
                _ => drop((s.value(), s.access_timeout(t))),
            },
            Obj::Bounded(s) => match c % 5 {
                0 => drop(s.try_acquire()),
                1 => drop(s.acquire_timeout(t)),
                2 => drop(s.release()),
                3 => drop(s.release_n(a)),
                _ => drop((s.value(), s.max_value(), s.try_access())),
            },
            Obj::Event(e) => match c % 4 {
                0 => e.set(),
                1 => e.clear(),
                2 => drop(e.wait_timeout(t)),
                _ => drop(e.is_set()),
            },
            Obj::Barrier(br) => match c % 4 {
                0 => drop(br.wait_timeout(t)),
                1 => br.abort(),
                2 => br.reset(),
                _ => drop((br.parties(), br.n_waiting(), br.is_broken())),
            },
            Obj::Condition(cv) => match c % 3 {
                0 => cv.notify_one(),
                1 => cv.notify_all(),
                _ => {
                    let g = timed_taken(env.mutex.lock_timeout(Duration::from_secs(5)))
                        .expect("our own mutex is free");
                    match cv.wait_timeout(g, t) {
                        Ok((g, _)) => drop(g),
                        Err(e) => drop(e.into_inner()),
                    }
                }
            },
            Obj::ProducerU32(p) => {
                producer_ops(p, c, t, |n| (0..n as u32).map(|i| i ^ a).collect())
            }
            Obj::ProducerUnit(p) => producer_ops(p, c, t, |n| vec![(); n]),
            Obj::ConsumerU32(q) => consumer_ops(q, c, t, a),
            Obj::ConsumerUnit(q) => consumer_ops(q, c, t, a),
            Obj::QueueU64(q) => queue_ops(q, c, t, a, |n| (0..n as u64).collect()),
            Obj::QueueUnit(q) => queue_ops(q, c, t, a, |n| vec![(); n]),
            Obj::MessagesBytes(q) => {
                let cap = q.capacity();
                let msg = u8s(a);
                match c % 7 {
                    0 => drop(q.try_put(msg)),
                    1 => drop(q.put_timeout(msg, t)),
                    2 => drop(q.try_get()),
                    3 => drop(q.get_timeout(t)),
                    4 => q.close(),
                    // Room for a message of `max_message_size` bytes at most.
                    5 => assert!(q.max_message_size() % 64 == 48),
                    _ => drop((q.is_empty(), q.is_full(), q.is_closed())),
                }
                assert!(q.len() <= cap);
            }
            Obj::JoinableU16(q) => {
                let cap = q.capacity();
                match c % 9 {
                    0 => drop(q.try_put(a as u16)),
                    1 => drop(q.put_timeout(a as u16, t)),
                    2 => drop(q.try_get()),
                    3 => drop(q.get_timeout(t)),
                    4 => q.close(),
                    5 => drop(q.task_done()),
                    6 => drop(q.join_timeout(t)),
                    7 => drop(q.unfinished_tasks()),
                    _ => drop((q.is_empty(), q.is_full(), q.is_closed())),
                }
                assert!(q.len() <= cap);
            }
            Obj::PipeBytes0(PipeEnd(p)) => pipe_ops(p, c, t, a),
            Obj::PipeBytes1(PipeEnd(p)) => pipe_ops(p, c, t, a),
        }
    }
}

fn pipe_ops(p: &Connection<Vec<u8>>, c: usize, t: Duration, a: u32) {
    let msg = u8s(a);
    match c % 10 {
        0 => drop(p.try_send(msg)),
        1 => drop(p.send_timeout(msg, t)),
        2 => drop(p.send_bytes_timeout(&msg, t)),
        3 => drop(p.try_recv()),
        4 => drop(p.recv_timeout(t)),
        5 => drop(p.recv_bytes_timeout(t)),
        6 => drop(p.poll(t)),
        7 => p.close(),
        8 => assert!(p.end() == 0 || p.end() == 1),
        _ => drop((p.is_closed(), p.capacity(), p.max_message_size())),
    }
}

impl Obj {
    /// Puts up to `n` items (messages of `a`'s choosing) into a fresh queue
    /// or message object, so scribbles land on slots in use; a pipe gets
    /// them from both ends. Other types are left as they are.
    fn fill(&mut self, n: usize, a: u32) {
        let msgs = (0..n as u32).map(|i| u8s(a.rotate_left(i * 7)));
        match self {
            Obj::QueueU64(q) => drop(q.put_slice(&(0..n as u64).collect::<Vec<_>>())),
            Obj::QueueUnit(q) => drop(q.put_slice(&vec![(); n])),
            Obj::MessagesBytes(q) => msgs.for_each(|m| drop(q.try_put(m))),
            Obj::JoinableU16(q) => (0..n as u32).for_each(|i| drop(q.try_put((a ^ i) as u16))),
            Obj::PipeBytes0(p) => pipe_fill(p, msgs),
            Obj::PipeBytes1(p) => pipe_fill(p, msgs),
            _ => {}
        }
    }
}

fn pipe_fill<const END: u32>(p: &PipeEnd<END>, msgs: impl Iterator<Item = Vec<u8>>) {
    let other = p.other().expect("attach the other end of our own pipe");
    for (i, m) in msgs.enumerate() {
        let end = if i % 2 == 0 { &p.0 } else { &other };
        let _ = end.try_send(m);
    }
}

/// Element counts for buffers: bounded, whatever the object's length.
fn small(a: u32) -> usize {
    (a % 70) as usize
}

fn array_ops<T: bytemuck::Pod + PartialEq + std::fmt::Debug>(
    arr: &Array<T>,
    c: usize,
    a: u32,
    t: Duration,
    make: impl Fn(usize) -> Vec<T>,
) {
    let len = arr.len();
    let zst = size_of::<T>() == 0;
    let g = if c.is_multiple_of(2) {
        taken(arr.try_lock())
    } else {
        timed_taken(arr.lock_timeout(t))
    };
    let Some(mut g) = g else {
        // Held by someone (the garbage says): only the lock-free calls.
        let _ = (arr.len(), arr.as_ptr());
        return;
    };
    assert_eq!(g.len(), len);
    if !zst {
        // Every element of the guard's slice is in bounds.
        let src = make(len);
        g.copy_from_slice(&src);
        assert_eq!(&g[..], &src[..]);
    }
    drop(g);
    // The lock is free now: the calls that take it return.
    let i = a as usize % (len.saturating_add(2));
    let x = make(1)[0];
    assert_eq!(arr.get(i).is_some(), i < len);
    assert_eq!(arr.set(i, x).is_ok(), i < len);
    assert!(arr.get(len).is_none());
    let n = small(a);
    let start = (a as usize >> 8) % len.saturating_add(2);
    let mut buf = make(n);
    let fits = start.checked_add(n).is_some_and(|e| e <= len);
    assert_eq!(arr.read_at(start, &mut buf).is_ok(), fits);
    assert_eq!(arr.write_at(start, &buf).is_ok(), fits);
    assert!(arr.copy_from_slice(&make(n)).is_ok() == (n == len));
    if !zst {
        // O(len) calls: the length is bounded by the segment unless the
        // element is zero-sized.
        assert_eq!(arr.to_vec().len(), len);
        arr.fill(x);
        let mut all = make(len);
        arr.copy_to_slice(&mut all).unwrap();
        assert!(all.iter().all(|&e| e == x));
    }
}

fn raw_array_ops<T: bytemuck::Pod + PartialEq + std::fmt::Debug>(
    arr: &RawArray<T>,
    c: usize,
    a: u32,
    make: impl Fn(usize) -> Vec<T>,
) {
    let len = arr.len();
    let zst = size_of::<T>() == 0;
    let i = a as usize % (len.saturating_add(2));
    let x = make(1)[0];
    match c % 4 {
        0 => {
            assert_eq!(arr.get(i).is_some(), i < len);
            assert_eq!(arr.set(i, x).is_ok(), i < len);
        }
        1 => {
            let n = small(a);
            let start = (a as usize >> 8) % len.saturating_add(2);
            let mut buf = make(n);
            let fits = start.checked_add(n).is_some_and(|e| e <= len);
            assert_eq!(arr.read_at(start, &mut buf).is_ok(), fits);
            assert_eq!(arr.write_at(start, &buf).is_ok(), fits);
        }
        2 => {
            assert_eq!(
                arr.copy_from_slice(&make(small(a))).is_ok(),
                small(a) == len
            );
            let mut dst = make(small(a));
            assert_eq!(arr.copy_to_slice(&mut dst).is_ok(), small(a) == len);
        }
        _ => {
            if !zst {
                arr.fill(x);
                assert!(arr.to_vec().iter().all(|&e| e == x));
            }
        }
    }
}

fn producer_ops<T: bytemuck::Pod>(
    p: &mut Producer<T>,
    c: usize,
    t: Duration,
    make: impl Fn(usize) -> Vec<T>,
) {
    let cap = p.capacity();
    let one = make(1)[0];
    match c % 5 {
        0 => drop(p.try_push(one)),
        1 => drop(p.push_timeout(one, t)),
        2 => {
            let src = make(c % 70);
            assert!(p.push_slice(&src) <= src.len().min(cap));
        }
        3 => p.close(),
        _ => drop((p.is_empty(), p.is_full(), p.is_closed())),
    }
    assert!(p.len() <= cap);
}

fn consumer_ops<T: bytemuck::Pod>(q: &mut Consumer<T>, c: usize, t: Duration, a: u32) {
    let cap = q.capacity();
    match c % 4 {
        0 => drop(q.try_pop()),
        1 => drop(q.pop_timeout(t)),
        2 => {
            let mut dst = vec![T::zeroed(); small(a)];
            assert!(q.pop_into(&mut dst) <= dst.len().min(cap));
        }
        _ => drop((q.is_empty(), q.is_full(), q.is_closed())),
    }
    assert!(q.len() <= cap);
}

fn queue_ops<T: bytemuck::Pod>(
    q: &Queue<T>,
    c: usize,
    t: Duration,
    a: u32,
    make: impl Fn(usize) -> Vec<T>,
) {
    let cap = q.capacity();
    let one = make(1)[0];
    match c % 8 {
        0 => drop(q.try_put(one)),
        1 => drop(q.put_timeout(one, t)),
        2 => drop(q.try_get()),
        3 => drop(q.get_timeout(t)),
        4 => {
            let src = make(small(a));
            assert!(q.put_slice(&src) <= src.len().min(cap));
        }
        5 => {
            let mut dst = make(small(a));
            assert!(q.get_into(&mut dst) <= dst.len().min(cap));
        }
        6 => q.close(),
        _ => drop((q.is_empty(), q.is_full(), q.is_closed())),
    }
    assert!(q.len() <= cap);
}

/// Most handles kept live at once.
const MAX_LIVE: usize = 8;

fn run(input: Input, env: &Env) {
    let shm = &env.shm;
    let mut live: Vec<Obj> = Vec::new();
    for step in input.steps {
        match step {
            // Refused (Overlap) over a live object.
            Step::Bytes { at, bytes } => write_clipped(shm, usize::from(at) % SEG, &bytes),
            Step::Forge {
                line,
                target,
                len,
                tweak,
                fix,
                payload,
                words,
                ops,
            } => {
                let len = len.get();
                let mut h = header_for(env.template(target), len);
                match tweak {
                    Tweak::None => {}
                    Tweak::Magic(v) => put_u64(&mut h, 0, v),
                    Tweak::Ready(v) => put_u32(&mut h, 8, v),
                    Tweak::Kind(v) => put_u32(&mut h, 12, v),
                    Tweak::ElemSize(v) => put_u32(&mut h, 16, v),
                    Tweak::ElemAlign(v) => put_u32(&mut h, 20, v),
                    Tweak::TypeHash(v) => put_u64(&mut h, 24, v),
                    Tweak::TotalSize(v) => put_u64(&mut h, 40, v),
                    Tweak::DataOffset(v) => put_u32(&mut h, 48, v),
                    Tweak::Reserved(v) => put_u32(&mut h, 52, v),
                    Tweak::Checksum(v) => put_u64(&mut h, 56, v),
                    Tweak::SlotSize(n) => {
                        let slot = 16 * u64::from(n);
                        let data_offset = u64::from(get_u32(&h, 48));
                        put_u32(&mut h, 16, slot as u32);
                        put_u64(&mut h, 40, data_offset.wrapping_add(len.wrapping_mul(slot)));
                    }
                }
                if fix && !matches!(tweak, Tweak::Checksum(_)) {
                    let sum = checksum(&h);
                    put_u64(&mut h, 56, sum);
                }
                let off = usize::from(line) * 64;
                let _ = shm.write_at(off, &h);
                write_clipped(shm, off + 64, &payload);
                write_words(shm, off, len, &words);
                if let Some(ops) = ops
                    && let Ok(mut obj) = target.open(shm, off)
                {
                    run_ops(&mut obj, &ops, env);
                    keep(&mut live, obj);
                }
            }
            Step::Create {
                line,
                target,
                len,
                fill,
                payload,
                words,
            } => {
                create_and_scribble(shm, line, target, len, fill, &payload, &words);
            }
            Step::Scribble {
                line,
                target,
                len,
                fill,
                payload,
                words,
                ops,
            } => {
                if create_and_scribble(shm, line, target, len, fill, &payload, &words)
                    && let Ok(mut obj) = target.open(shm, usize::from(line) * 64)
                {
                    run_ops(&mut obj, &ops, env);
                    keep(&mut live, obj);
                }
            }
            Step::Open { at, target, ops } => {
                if let Ok(mut obj) = target.open(shm, at.get()) {
                    run_ops(&mut obj, &ops, env);
                    keep(&mut live, obj);
                }
            }
            Step::Attach {
                at,
                target,
                like,
                len,
                part,
                ops,
            } => {
                let tpl = env.template(like);
                let raw = RawDescriptor {
                    segment: shm.segment_ref(),
                    offset: at.get() as u64,
                    kind: tpl.kind,
                    fingerprint: tpl.fingerprint,
                    len: match len {
                        Some(len) => len.get(),
                        None => header_len(shm, at.get()),
                    },
                    part: u32::from(part),
                };
                let bytes = postcard::to_allocvec(&raw).expect("encode a descriptor");
                let d = Descriptor::from_bytes(&bytes).expect("decode our own descriptor");
                if let Ok(mut obj) = target.attach(&d) {
                    assert_eq!(obj.descriptor(), d, "attached as described");
                    run_ops(&mut obj, &ops, env);
                    keep(&mut live, obj);
                }
            }
            Step::DropAll => live.clear(),
        }
    }
}

/// Places a real `target` at `line`, fills it, drops it, and writes
/// `payload`, then `words`, over the bytes after its header; whether it
/// was placed.
fn create_and_scribble(
    shm: &SharedMemory,
    line: u8,
    target: Target,
    len: u8,
    Fill(n, seed): Fill,
    payload: &[u8],
    words: &Words,
) -> bool {
    let off = usize::from(line) * 64;
    let len = usize::from(len % 16) + 1;
    let Ok(mut obj) = target.create(shm, off, len) else {
        return false;
    };
    obj.fill(usize::from(n % 17), seed);
    drop(obj);
    write_clipped(shm, off + 64, payload);
    write_words(shm, off, len as u64, words);
    true
}

/// Writes what fits of `bytes` at `at`, if nothing live is there.
fn write_clipped(shm: &SharedMemory, at: usize, bytes: &[u8]) {
    if at < SEG {
        let n = bytes.len().min(SEG - at);
        let _ = shm.write_at(at, &bytes[..n]);
    }
}

/// The length field of the header at `at`, if it can be read.
fn header_len(shm: &SharedMemory, at: usize) -> u64 {
    let mut len = [0; 8];
    match shm.read_at(at.wrapping_add(32), &mut len) {
        Ok(()) => u64::from_le_bytes(len),
        Err(_) => 0,
    }
}

fn keep(live: &mut Vec<Obj>, obj: Obj) {
    if live.len() < MAX_LIVE {
        live.push(obj);
    }
}

/// The raw input as descriptor bytes: decoding and attaching as every type
/// give a value or a clean `Err`. No operations: such a descriptor may name
/// any segment of this user, not only ours.
fn raw_descriptor(data: &[u8]) {
    let Ok(d) = Descriptor::from_bytes(data) else {
        return;
    };
    assert_eq!(Descriptor::from_bytes(&d.to_bytes()).ok(), Some(d.clone()));
    let _ = d.to_string();
    for &t in ALL {
        let _ = t.attach(&d);
    }
}

fuzz_target!(|data: &[u8]| {
    let env = env();
    raw_descriptor(data);
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        run(input, env);
    }
    zero(&env.shm);
});
