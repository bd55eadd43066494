//! Queue operation sequences against a `VecDeque` model.
//!
//! The input picks a queue kind and a small capacity (1..=64), then a
//! sequence of operations, run on one thread: on the MPMC `Queue<u32>`
//! (several handles: clones and handles attached from the descriptor), or
//! on an `spsc::channel::<u32>` (whose ends are re-attached from their
//! descriptor now and then, as a hand-over to another process would do).
//! Every result must match the model exactly: the values, `Full`, `Empty`
//! and `Closed`, the counts of batch calls, `len`, `is_empty`, `is_full`,
//! `is_closed`.
//!
//! Three message kinds run against the same kind of model, with a maximum
//! message size of the input's choosing (1..=200 bytes asked, rounded up as
//! the library does): a `MessageQueue<Vec<u8>>` and a `JoinableQueue<u16>`
//! (clones and attached handles; the joinable model also counts unfinished
//! tasks: `task_done`, `join_timeout`, `unfinished_tasks`), where a message
//! whose postcard encoding exceeds `max_message_size()` must be refused as
//! `TooLarge` with the value handed back; and a `Pipe` of two
//! `Connection<Vec<u8>>` ends (re-attached from their descriptors now and
//! then), one model queue of encoded messages per direction: typed and raw
//! sends and receives mix, so a typed receive of raw bytes must decode as
//! postcard does (or be a `Decode` error of the message's length), and a
//! raw receive returns exactly the bytes sent or a typed send's encoding;
//! closing either end closes both directions; `poll` says whether a
//! message is waiting or the pipe is closed and drained.
//!
//! Nothing may block for long: a blocking call runs only when the model
//! says it returns at once, and timed calls wait 0..50 µs.
#![no_main]

use std::collections::VecDeque;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use multiproc::SharedObject;
use multiproc::spsc::{self, Consumer, Producer};
use multiproc::{
    Closed, Connection, Descriptor, GetTimeoutError, JoinableQueue, MessageQueue, Pipe,
    PutTimeoutError, Queue, RecvError, SendError, TaskDoneError, TryGetError, TryPutError,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Most handles on one queue at once.
const MAX_HANDLES: usize = 4;

/// A timeout for the `*_timeout` calls: zero or a few microseconds.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Wait {
    Zero,
    Micros(u8),
}

impl Wait {
    fn duration(self) -> Duration {
        match self {
            Wait::Zero => Duration::ZERO,
            Wait::Micros(us) => Duration::from_micros(u64::from(us % 50)),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum QueueOp {
    Put(u32),
    TryPut(u32),
    PutTimeout(u32, Wait),
    Get,
    TryGet,
    GetTimeout(Wait),
    PutSlice(Vec<u32>),
    GetInto(u8),
    Len,
    IsEmpty,
    IsFull,
    IsClosed,
    Close,
    /// A clone of the current handle becomes one more handle.
    Clone,
    /// A handle attached from the current one's descriptor.
    Attach,
    /// Later operations go through handle `n % handles`.
    Use(u8),
    /// Drops handle `n % handles` (the last one stays).
    Drop(u8),
}

#[derive(Arbitrary, Debug)]
enum SpscOp {
    Push(u32),
    TryPush(u32),
    PushTimeout(u32, Wait),
    PushSlice(Vec<u32>),
    Pop,
    TryPop,
    PopTimeout(Wait),
    PopInto(u8),
    /// `len` from the producer (`false`) or the consumer (`true`) end.
    Len(bool),
    IsEmpty(bool),
    IsFull(bool),
    IsClosed(bool),
    Close,
    /// The producer handed over: a new one attached from its descriptor
    /// replaces it.
    ReattachProducer,
    /// The same for the consumer.
    ReattachConsumer,
}

/// An operation on a message queue (`MessageQueue` or `JoinableQueue`).
#[derive(Arbitrary, Debug)]
enum MsgOp<V> {
    Put(V),
    TryPut(V),
    PutTimeout(V, Wait),
    Get,
    TryGet,
    GetTimeout(Wait),
    Len,
    IsEmpty,
    IsFull,
    IsClosed,
    Close,
    /// Joinable only (a no-op on a `MessageQueue`).
    TaskDone,
    /// Joinable only: `join_timeout`.
    Join(Wait),
    /// Joinable only: `unfinished_tasks`.
    Unfinished,
    Clone,
    Attach,
    Use(u8),
    Drop(u8),
}

/// An operation on a pipe, at end `0` (`false`) or `1` (`true`).
#[derive(Arbitrary, Debug)]
enum PipeOp {
    Send(bool, Vec<u8>),
    TrySend(bool, Vec<u8>),
    SendTimeout(bool, Vec<u8>, Wait),
    SendBytes(bool, Vec<u8>),
    SendBytesTimeout(bool, Vec<u8>, Wait),
    Recv(bool),
    TryRecv(bool),
    RecvTimeout(bool, Wait),
    RecvBytes(bool),
    RecvBytesTimeout(bool, Wait),
    Poll(bool, Wait),
    IsClosed(bool),
    Close(bool),
    /// The end handed over: a clone (`true`) or a handle attached from its
    /// descriptor replaces it.
    Reattach(bool, bool),
}

#[derive(Arbitrary, Debug)]
enum Input {
    Mpmc {
        capacity: u8,
        ops: Vec<QueueOp>,
    },
    Spsc {
        capacity: u8,
        ops: Vec<SpscOp>,
    },
    Messages {
        capacity: u8,
        max: u8,
        ops: Vec<MsgOp<Vec<u8>>>,
    },
    Joinable {
        capacity: u8,
        max: u8,
        ops: Vec<MsgOp<u16>>,
    },
    Pipe {
        capacity: u8,
        max: u8,
        ops: Vec<PipeOp>,
    },
}

/// What the queue must hold.
struct Model {
    items: VecDeque<u32>,
    cap: usize,
    closed: bool,
}

impl Model {
    fn new(cap: usize) -> Self {
        Model {
            items: VecDeque::new(),
            cap,
            closed: false,
        }
    }

    fn is_full(&self) -> bool {
        self.items.len() == self.cap
    }

    /// The outcome of a non-blocking put, applied to the model.
    fn try_put(&mut self, v: u32) -> Result<(), TryPutError<u32>> {
        if self.closed {
            Err(TryPutError::Closed(v))
        } else if self.is_full() {
            Err(TryPutError::Full(v))
        } else {
            self.items.push_back(v);
            Ok(())
        }
    }

    /// The outcome of a non-blocking get, applied to the model.
    fn try_get(&mut self) -> Result<u32, TryGetError> {
        match self.items.pop_front() {
            Some(v) => Ok(v),
            None if self.closed => Err(TryGetError::Closed),
            None => Err(TryGetError::Empty),
        }
    }

    /// How many of `src` a batch put takes, applied to the model.
    fn put_slice(&mut self, src: &[u32]) -> usize {
        if self.closed {
            return 0;
        }
        let n = src.len().min(self.cap - self.items.len());
        self.items.extend(&src[..n]);
        n
    }

    /// What a batch get into `k` slots returns, applied to the model.
    fn get_into(&mut self, k: usize) -> Vec<u32> {
        let n = k.min(self.items.len());
        self.items.drain(..n).collect()
    }
}

fn run_mpmc(cap: usize, ops: Vec<QueueOp>) {
    let q = Queue::<u32>::new(cap).expect("capacities 1..=64 are valid");
    assert_eq!(q.capacity(), cap);
    let mut handles = vec![q];
    let mut cur = 0;
    let mut m = Model::new(cap);
    for op in ops {
        let q = &handles[cur];
        match op {
            QueueOp::Put(v) => {
                // `put` blocks only on a full, open queue.
                if m.closed {
                    assert_eq!(q.put(v), Err(Closed(v)));
                } else if !m.is_full() {
                    assert_eq!(q.put(v), Ok(()));
                    m.items.push_back(v);
                }
            }
            QueueOp::TryPut(v) => assert_eq!(q.try_put(v), m.try_put(v)),
            QueueOp::PutTimeout(v, w) => assert_eq!(
                q.put_timeout(v, w.duration()),
                m.try_put(v).map_err(PutTimeoutError::from)
            ),
            QueueOp::Get => {
                // `get` blocks only on an empty, open queue.
                if !m.items.is_empty() || m.closed {
                    assert_eq!(q.get().map_err(|_| TryGetError::Closed), m.try_get());
                }
            }
            QueueOp::TryGet => assert_eq!(q.try_get(), m.try_get()),
            QueueOp::GetTimeout(w) => assert_eq!(
                q.get_timeout(w.duration()),
                m.try_get().map_err(GetTimeoutError::from)
            ),
            QueueOp::PutSlice(src) => assert_eq!(q.put_slice(&src), m.put_slice(&src)),
            QueueOp::GetInto(k) => {
                let mut dst = vec![0; usize::from(k % 80)];
                let n = q.get_into(&mut dst);
                assert_eq!(dst[..n], m.get_into(dst.len()));
            }
            QueueOp::Len => assert_eq!(q.len(), m.items.len()),
            QueueOp::IsEmpty => assert_eq!(q.is_empty(), m.items.is_empty()),
            QueueOp::IsFull => assert_eq!(q.is_full(), m.is_full()),
            QueueOp::IsClosed => assert_eq!(q.is_closed(), m.closed),
            QueueOp::Close => {
                q.close();
                m.closed = true;
            }
            QueueOp::Clone => {
                if handles.len() < MAX_HANDLES {
                    handles.push(q.clone());
                }
            }
            QueueOp::Attach => {
                if handles.len() < MAX_HANDLES {
                    let d = q.descriptor();
                    let other = Queue::<u32>::attach(&d).expect("attach our own queue");
                    assert_eq!(other.capacity(), cap);
                    handles.push(other);
                }
            }
            QueueOp::Use(i) => cur = usize::from(i) % handles.len(),
            QueueOp::Drop(i) => {
                if handles.len() > 1 {
                    handles.remove(usize::from(i) % handles.len());
                    cur = 0;
                }
            }
        }
        let q = &handles[cur];
        assert_eq!(q.len(), m.items.len());
        assert_eq!(q.is_closed(), m.closed);
    }
    // Whatever is left comes out in order, then `Closed`.
    let q = &handles[cur];
    q.close();
    m.closed = true;
    loop {
        let want = m.try_get();
        assert_eq!(q.try_get(), want);
        if want.is_err() {
            break;
        }
    }
}

fn run_spsc(cap: usize, ops: Vec<SpscOp>) {
    let (mut tx, mut rx) = spsc::channel::<u32>(cap).expect("capacities 1..=64 are valid");
    assert_eq!((tx.capacity(), rx.capacity()), (cap, cap));
    let mut m = Model::new(cap);
    let push_err = |e: TryPutError<u32>| match e {
        TryPutError::Full(v) => TryPutError::Full(v),
        TryPutError::Closed(v) => TryPutError::Closed(v),
    };
    let pop_err = |e: TryGetError| match e {
        TryGetError::Empty => TryGetError::Empty,
        TryGetError::Closed => TryGetError::Closed,
    };
    for op in ops {
        match op {
            SpscOp::Push(v) => {
                if m.closed {
                    assert_eq!(tx.push(v), Err(Closed(v)));
                } else if !m.is_full() {
                    assert_eq!(tx.push(v), Ok(()));
                    m.items.push_back(v);
                }
            }
            SpscOp::TryPush(v) => assert_eq!(tx.try_push(v), m.try_put(v).map_err(push_err)),
            SpscOp::PushTimeout(v, w) => assert_eq!(
                tx.push_timeout(v, w.duration()),
                m.try_put(v).map_err(PutTimeoutError::from)
            ),
            SpscOp::PushSlice(src) => assert_eq!(tx.push_slice(&src), m.put_slice(&src)),
            SpscOp::Pop => {
                if !m.items.is_empty() || m.closed {
                    assert_eq!(
                        rx.pop().map_err(|_| TryGetError::Closed),
                        m.try_get().map_err(pop_err)
                    );
                }
            }
            SpscOp::TryPop => assert_eq!(rx.try_pop(), m.try_get().map_err(pop_err)),
            SpscOp::PopTimeout(w) => {
                assert_eq!(
                    rx.pop_timeout(w.duration()),
                    m.try_get().map_err(GetTimeoutError::from)
                )
            }
            SpscOp::PopInto(k) => {
                let mut dst = vec![0; usize::from(k % 80)];
                let n = rx.pop_into(&mut dst);
                assert_eq!(dst[..n], m.get_into(dst.len()));
            }
            SpscOp::Len(at_rx) => {
                let n = if at_rx { rx.len() } else { tx.len() };
                assert_eq!(n, m.items.len());
            }
            SpscOp::IsEmpty(at_rx) => {
                let e = if at_rx { rx.is_empty() } else { tx.is_empty() };
                assert_eq!(e, m.items.is_empty());
            }
            SpscOp::IsFull(at_rx) => {
                let f = if at_rx { rx.is_full() } else { tx.is_full() };
                assert_eq!(f, m.is_full());
            }
            SpscOp::IsClosed(at_rx) => {
                let c = if at_rx {
                    rx.is_closed()
                } else {
                    tx.is_closed()
                };
                assert_eq!(c, m.closed);
            }
            SpscOp::Close => {
                tx.close();
                m.closed = true;
            }
            SpscOp::ReattachProducer => {
                let d = tx.descriptor();
                tx = Producer::<u32>::attach(&d).expect("attach our own producer end");
            }
            SpscOp::ReattachConsumer => {
                let d = rx.descriptor();
                rx = Consumer::<u32>::attach(&d).expect("attach our own consumer end");
            }
        }
        assert_eq!(rx.len(), m.items.len());
        assert_eq!(tx.len(), m.items.len());
    }
    tx.close();
    m.closed = true;
    loop {
        let want = m.try_get().map_err(pop_err);
        assert_eq!(rx.try_pop(), want);
        if want.is_err() {
            break;
        }
    }
}

/// A send's outcome, comparable (`SendError` is not `PartialEq`).
#[derive(Debug, PartialEq)]
enum Sent<V> {
    Ok,
    Full(V),
    Timeout(V),
    Closed(V),
    TooLarge { value: V, size: usize, max: usize },
    Encode,
}

/// What a timed send reports where a non-blocking one reports `Full`.
fn timed<V>(s: Sent<V>) -> Sent<V> {
    match s {
        Sent::Full(v) => Sent::Timeout(v),
        other => other,
    }
}

/// What a timed receive reports where a non-blocking one reports `Empty`.
fn timed_recv<V>(r: Result<V, RecvError>) -> Result<V, RecvError> {
    r.map_err(|e| match e {
        RecvError::Empty => RecvError::Timeout,
        other => other,
    })
}

fn sent<V>(r: Result<(), SendError<V>>) -> Sent<V> {
    match r {
        Ok(()) => Sent::Ok,
        Err(SendError::Full(v)) => Sent::Full(v),
        Err(SendError::Timeout(v)) => Sent::Timeout(v),
        Err(SendError::Closed(v)) => Sent::Closed(v),
        Err(SendError::TooLarge { value, size, max }) => Sent::TooLarge { value, size, max },
        Err(_) => Sent::Encode,
    }
}

/// A receive's outcome, with a `Decode` error's reason left out (the
/// model does not know postcard's wording).
fn received<V>(r: Result<V, RecvError>) -> Result<V, RecvError> {
    r.map_err(|e| match e {
        RecvError::Decode { len, .. } => RecvError::Decode {
            len,
            reason: String::new(),
        },
        e => e,
    })
}

/// The maximum message size the library makes of `asked`: slots of
/// `max + 16` bytes, a multiple of 64.
fn rounded_max(asked: usize) -> usize {
    (asked + 16).next_multiple_of(64) - 16
}

/// One direction of encoded messages (a message queue, or one way of a
/// pipe).
struct MsgModel {
    items: VecDeque<Vec<u8>>,
    cap: usize,
    max: usize,
}

impl MsgModel {
    fn new(cap: usize, max: usize) -> Self {
        MsgModel {
            items: VecDeque::new(),
            cap,
            max,
        }
    }

    fn is_full(&self) -> bool {
        self.items.len() == self.cap
    }

    /// The outcome of a non-blocking send of `value` (encoded as `bytes`),
    /// applied to the model: the size check comes first.
    fn send<V>(&mut self, value: V, bytes: Vec<u8>, closed: bool) -> Sent<V> {
        if bytes.len() > self.max {
            Sent::TooLarge {
                size: bytes.len(),
                max: self.max,
                value,
            }
        } else if closed {
            Sent::Closed(value)
        } else if self.is_full() {
            Sent::Full(value)
        } else {
            self.items.push_back(bytes);
            Sent::Ok
        }
    }

    /// Whether a blocking send of `n` encoded bytes returns at once.
    fn send_returns(&self, n: usize, closed: bool) -> bool {
        n > self.max || closed || !self.is_full()
    }

    /// The next message's bytes, applied to the model.
    fn recv(&mut self, closed: bool) -> Result<Vec<u8>, RecvError> {
        match self.items.pop_front() {
            Some(b) => Ok(b),
            None if closed => Err(RecvError::Closed),
            None => Err(RecvError::Empty),
        }
    }

    /// The next message decoded as a `V`, as a typed receive reports it.
    fn recv_typed<V: DeserializeOwned>(&mut self, closed: bool) -> Result<V, RecvError> {
        self.recv(closed)
            .and_then(|b| match postcard::take_from_bytes::<V>(&b) {
                Ok((v, [])) => Ok(v),
                _ => Err(RecvError::Decode {
                    len: b.len(),
                    reason: String::new(),
                }),
            })
    }
}

fn encode<V: Serialize>(v: &V) -> Vec<u8> {
    postcard::to_allocvec(v).expect("plain values encode")
}

/// What the message-queue runner needs of `MessageQueue` and
/// `JoinableQueue`; the task calls are `None` on a `MessageQueue`.
trait MsgQueue<V>: Clone + Sized {
    fn put(&self, v: V) -> Result<(), SendError<V>>;
    fn try_put(&self, v: V) -> Result<(), SendError<V>>;
    fn put_timeout(&self, v: V, t: Duration) -> Result<(), SendError<V>>;
    fn get(&self) -> Result<V, RecvError>;
    fn try_get(&self) -> Result<V, RecvError>;
    fn get_timeout(&self, t: Duration) -> Result<V, RecvError>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool;
    fn is_full(&self) -> bool;
    fn is_closed(&self) -> bool;
    fn close(&self);
    fn capacity(&self) -> usize;
    fn max_message_size(&self) -> usize;
    fn descriptor(&self) -> Descriptor;
    fn attach(d: &Descriptor) -> multiproc::Result<Self>;
    fn task_done(&self) -> Option<Result<(), TaskDoneError>>;
    fn join_timeout(&self, t: Duration) -> Option<bool>;
    fn unfinished_tasks(&self) -> Option<u64>;
}

macro_rules! msg_queue {
    ($q:ident, |$s:ident| $done:expr, $join:expr, $unfinished:expr) => {
        impl<V: Serialize + DeserializeOwned> MsgQueue<V> for $q<V> {
            fn put(&self, v: V) -> Result<(), SendError<V>> {
                $q::put(self, v)
            }
            fn try_put(&self, v: V) -> Result<(), SendError<V>> {
                $q::try_put(self, v)
            }
            fn put_timeout(&self, v: V, t: Duration) -> Result<(), SendError<V>> {
                $q::put_timeout(self, v, t)
            }
            fn get(&self) -> Result<V, RecvError> {
                $q::get(self)
            }
            fn try_get(&self) -> Result<V, RecvError> {
                $q::try_get(self)
            }
            fn get_timeout(&self, t: Duration) -> Result<V, RecvError> {
                $q::get_timeout(self, t)
            }
            fn len(&self) -> usize {
                $q::len(self)
            }
            fn is_empty(&self) -> bool {
                $q::is_empty(self)
            }
            fn is_full(&self) -> bool {
                $q::is_full(self)
            }
            fn is_closed(&self) -> bool {
                $q::is_closed(self)
            }
            fn close(&self) {
                $q::close(self)
            }
            fn capacity(&self) -> usize {
                $q::capacity(self)
            }
            fn max_message_size(&self) -> usize {
                $q::max_message_size(self)
            }
            fn descriptor(&self) -> Descriptor {
                SharedObject::descriptor(self)
            }
            fn attach(d: &Descriptor) -> multiproc::Result<Self> {
                <Self as SharedObject>::attach(d)
            }
            fn task_done(&$s) -> Option<Result<(), TaskDoneError>> {
                $done
            }
            fn join_timeout(&$s, t: Duration) -> Option<bool> {
                $join(t)
            }
            fn unfinished_tasks(&$s) -> Option<u64> {
                $unfinished
            }
        }
    };
}

msg_queue!(MessageQueue, |self| None, |_| None, None);
msg_queue!(
    JoinableQueue,
    |self| Some(JoinableQueue::task_done(self)),
    |t| Some(JoinableQueue::join_timeout(self, t).is_ok()),
    Some(JoinableQueue::unfinished_tasks(self))
);

fn run_messages<V, Q>(q: Q, cap: usize, max: usize, ops: Vec<MsgOp<V>>)
where
    V: Serialize + DeserializeOwned + Clone + PartialEq + std::fmt::Debug,
    Q: MsgQueue<V>,
{
    assert_eq!(q.capacity(), cap);
    assert_eq!(q.max_message_size(), max);
    let joinable = q.unfinished_tasks().is_some();
    let mut handles = vec![q];
    let mut cur = 0;
    let mut m = MsgModel::new(cap, max);
    let mut closed = false;
    let mut unfinished = 0u64;
    for op in ops {
        let q = &handles[cur];
        // A send's model outcome, counting the task if it went in.
        let mut model_send = |v: V, m: &mut MsgModel, closed: bool| {
            let bytes = encode(&v);
            let r = m.send(v, bytes, closed);
            if r == Sent::Ok {
                unfinished += 1;
            }
            r
        };
        match op {
            MsgOp::Put(v) => {
                if m.send_returns(encode(&v).len(), closed) {
                    assert_eq!(sent(q.put(v.clone())), model_send(v, &mut m, closed));
                }
            }
            MsgOp::TryPut(v) => {
                assert_eq!(sent(q.try_put(v.clone())), model_send(v, &mut m, closed))
            }
            MsgOp::PutTimeout(v, w) => assert_eq!(
                sent(q.put_timeout(v.clone(), w.duration())),
                timed(model_send(v, &mut m, closed))
            ),
            MsgOp::Get => {
                if !m.items.is_empty() || closed {
                    assert_eq!(received(q.get()), m.recv_typed(closed));
                }
            }
            MsgOp::TryGet => assert_eq!(received(q.try_get()), m.recv_typed(closed)),
            MsgOp::GetTimeout(w) => {
                assert_eq!(
                    received(q.get_timeout(w.duration())),
                    timed_recv(m.recv_typed(closed))
                )
            }
            MsgOp::Len => assert_eq!(q.len(), m.items.len()),
            MsgOp::IsEmpty => assert_eq!(q.is_empty(), m.items.is_empty()),
            MsgOp::IsFull => assert_eq!(q.is_full(), m.is_full()),
            MsgOp::IsClosed => assert_eq!(q.is_closed(), closed),
            MsgOp::Close => {
                q.close();
                closed = true;
            }
            MsgOp::TaskDone => {
                if let Some(r) = q.task_done() {
                    if unfinished == 0 {
                        assert_eq!(r, Err(TaskDoneError));
                    } else {
                        assert_eq!(r, Ok(()));
                        unfinished -= 1;
                    }
                }
            }
            MsgOp::Join(w) => {
                if let Some(done) = q.join_timeout(w.duration()) {
                    assert_eq!(done, unfinished == 0);
                }
            }
            MsgOp::Unfinished => {
                if let Some(n) = q.unfinished_tasks() {
                    assert_eq!(n, unfinished);
                }
            }
            MsgOp::Clone => {
                if handles.len() < MAX_HANDLES {
                    handles.push(q.clone());
                }
            }
            MsgOp::Attach => {
                if handles.len() < MAX_HANDLES {
                    let other = Q::attach(&q.descriptor()).expect("attach our own queue");
                    assert_eq!(other.capacity(), cap);
                    assert_eq!(other.max_message_size(), max);
                    handles.push(other);
                }
            }
            MsgOp::Use(i) => cur = usize::from(i) % handles.len(),
            MsgOp::Drop(i) => {
                if handles.len() > 1 {
                    handles.remove(usize::from(i) % handles.len());
                    cur = 0;
                }
            }
        }
        let q = &handles[cur];
        assert_eq!(q.len(), m.items.len());
        assert_eq!(q.is_closed(), closed);
        if joinable {
            assert_eq!(q.unfinished_tasks(), Some(unfinished));
        }
    }
    let q = &handles[cur];
    q.close();
    loop {
        let want = m.recv_typed::<V>(true);
        assert_eq!(received(q.try_get()), want);
        if want.is_err() {
            break;
        }
    }
    // Getting finishes no task: the count is what the puts and
    // `task_done`s left.
    if joinable {
        assert_eq!(q.unfinished_tasks(), Some(unfinished));
        assert_eq!(q.join_timeout(Duration::ZERO), Some(unfinished == 0));
    }
}

fn run_pipe(cap: usize, asked: usize, ops: Vec<PipeOp>) {
    let (a, b) = Pipe::new()
        .capacity(cap)
        .max_message_size(asked)
        .create::<Vec<u8>>()
        .expect("capacities 1..=16 and sizes 1..=200 are valid");
    let max = rounded_max(asked);
    let mut ends: [Connection<Vec<u8>>; 2] = [a, b];
    for (i, c) in ends.iter().enumerate() {
        assert_eq!(c.end() as usize, i);
        assert_eq!((c.capacity(), c.max_message_size()), (cap, max));
    }
    // dirs[e]: the messages end `e` sent, for the other end to receive.
    let mut dirs = [MsgModel::new(cap, max), MsgModel::new(cap, max)];
    let mut closed = false;
    for op in ops {
        match op {
            PipeOp::Send(e, v) => {
                let (c, d) = (&ends[usize::from(e)], &mut dirs[usize::from(e)]);
                let bytes = encode(&v);
                if d.send_returns(bytes.len(), closed) {
                    assert_eq!(sent(c.send(v.clone())), d.send(v, bytes, closed));
                }
            }
            PipeOp::TrySend(e, v) => {
                let (c, d) = (&ends[usize::from(e)], &mut dirs[usize::from(e)]);
                let bytes = encode(&v);
                assert_eq!(sent(c.try_send(v.clone())), d.send(v, bytes, closed));
            }
            PipeOp::SendTimeout(e, v, w) => {
                let (c, d) = (&ends[usize::from(e)], &mut dirs[usize::from(e)]);
                let bytes = encode(&v);
                assert_eq!(
                    sent(c.send_timeout(v.clone(), w.duration())),
                    timed(d.send(v, bytes, closed))
                );
            }
            PipeOp::SendBytes(e, raw) => {
                let (c, d) = (&ends[usize::from(e)], &mut dirs[usize::from(e)]);
                if d.send_returns(raw.len(), closed) {
                    assert_eq!(sent(c.send_bytes(&raw)), d.send((), raw, closed));
                }
            }
            PipeOp::SendBytesTimeout(e, raw, w) => {
                let (c, d) = (&ends[usize::from(e)], &mut dirs[usize::from(e)]);
                assert_eq!(
                    sent(c.send_bytes_timeout(&raw, w.duration())),
                    timed(d.send((), raw, closed))
                );
            }
            PipeOp::Recv(e) => {
                let (c, d) = (&ends[usize::from(e)], &mut dirs[usize::from(!e)]);
                if !d.items.is_empty() || closed {
                    assert_eq!(received(c.recv()), d.recv_typed(closed));
                }
            }
            PipeOp::TryRecv(e) => {
                let (c, d) = (&ends[usize::from(e)], &mut dirs[usize::from(!e)]);
                assert_eq!(received(c.try_recv()), d.recv_typed(closed));
            }
            PipeOp::RecvTimeout(e, w) => {
                let (c, d) = (&ends[usize::from(e)], &mut dirs[usize::from(!e)]);
                assert_eq!(
                    received(c.recv_timeout(w.duration())),
                    timed_recv(d.recv_typed(closed))
                );
            }
            PipeOp::RecvBytes(e) => {
                let (c, d) = (&ends[usize::from(e)], &mut dirs[usize::from(!e)]);
                if !d.items.is_empty() || closed {
                    assert_eq!(c.recv_bytes(), d.recv(closed));
                }
            }
            PipeOp::RecvBytesTimeout(e, w) => {
                let (c, d) = (&ends[usize::from(e)], &mut dirs[usize::from(!e)]);
                assert_eq!(
                    c.recv_bytes_timeout(w.duration()),
                    timed_recv(d.recv(closed))
                );
            }
            PipeOp::Poll(e, w) => {
                let (c, d) = (&ends[usize::from(e)], &dirs[usize::from(!e)]);
                assert_eq!(c.poll(w.duration()), !d.items.is_empty() || closed);
            }
            PipeOp::IsClosed(e) => assert_eq!(ends[usize::from(e)].is_closed(), closed),
            PipeOp::Close(e) => {
                ends[usize::from(e)].close();
                closed = true;
            }
            PipeOp::Reattach(e, clone) => {
                let c = &ends[usize::from(e)];
                let new = if clone {
                    c.clone()
                } else {
                    let d = c.descriptor();
                    assert_eq!(d.part(), u32::from(e));
                    Connection::<Vec<u8>>::attach(&d).expect("attach our own pipe end")
                };
                assert_eq!(new.end(), u32::from(e));
                assert_eq!((new.capacity(), new.max_message_size()), (cap, max));
                ends[usize::from(e)] = new;
            }
        }
        for c in &ends {
            assert_eq!(c.is_closed(), closed);
        }
    }
    // Each end drains what the other sent, as raw bytes, then sees `Closed`.
    ends[0].close();
    for e in [false, true] {
        let (c, d) = (&ends[usize::from(e)], &mut dirs[usize::from(!e)]);
        assert!(c.poll(Duration::ZERO));
        loop {
            let want = d.recv(true);
            assert_eq!(c.recv_bytes_timeout(Duration::ZERO), want);
            if want.is_err() {
                break;
            }
        }
    }
}

fuzz_target!(|input: Input| {
    match input {
        Input::Mpmc { capacity, ops } => run_mpmc(usize::from(capacity % 64) + 1, ops),
        Input::Spsc { capacity, ops } => run_spsc(usize::from(capacity % 64) + 1, ops),
        Input::Messages { capacity, max, ops } => {
            let (cap, asked) = (usize::from(capacity % 16) + 1, usize::from(max % 200) + 1);
            let q = MessageQueue::<Vec<u8>>::new(cap, asked)
                .expect("capacities 1..=16 and sizes 1..=200 are valid");
            run_messages(q, cap, rounded_max(asked), ops);
        }
        Input::Joinable { capacity, max, ops } => {
            let (cap, asked) = (usize::from(capacity % 16) + 1, usize::from(max % 200) + 1);
            let q = JoinableQueue::<u16>::new(cap, asked)
                .expect("capacities 1..=16 and sizes 1..=200 are valid");
            run_messages(q, cap, rounded_max(asked), ops);
        }
        Input::Pipe { capacity, max, ops } => run_pipe(
            usize::from(capacity % 16) + 1,
            usize::from(max % 200) + 1,
            ops,
        ),
    }
});
