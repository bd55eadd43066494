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
//! Nothing may block for long: a blocking call runs only when the model
//! says it returns at once, and timed calls wait 0..50 µs.
#![no_main]

use std::collections::VecDeque;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use multiproc::spsc::{self, Consumer, Producer, TryPopError, TryPushError};
use multiproc::{Closed, Queue, TryGetError, TryPutError};

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

#[derive(Arbitrary, Debug)]
enum Input {
    Mpmc { capacity: u8, ops: Vec<QueueOp> },
    Spsc { capacity: u8, ops: Vec<SpscOp> },
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
            QueueOp::PutTimeout(v, w) => assert_eq!(q.put_timeout(v, w.duration()), m.try_put(v)),
            QueueOp::Get => {
                // `get` blocks only on an empty, open queue.
                if !m.items.is_empty() || m.closed {
                    assert_eq!(q.get().map_err(|_| TryGetError::Closed), m.try_get());
                }
            }
            QueueOp::TryGet => assert_eq!(q.try_get(), m.try_get()),
            QueueOp::GetTimeout(w) => assert_eq!(q.get_timeout(w.duration()), m.try_get()),
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
        TryPutError::Full(v) => TryPushError::Full(v),
        TryPutError::Closed(v) => TryPushError::Closed(v),
    };
    let pop_err = |e: TryGetError| match e {
        TryGetError::Empty => TryPopError::Empty,
        TryGetError::Closed => TryPopError::Closed,
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
                m.try_put(v).map_err(push_err)
            ),
            SpscOp::PushSlice(src) => assert_eq!(tx.push_slice(&src), m.put_slice(&src)),
            SpscOp::Pop => {
                if !m.items.is_empty() || m.closed {
                    assert_eq!(
                        rx.pop().map_err(|_| TryPopError::Closed),
                        m.try_get().map_err(pop_err)
                    );
                }
            }
            SpscOp::TryPop => assert_eq!(rx.try_pop(), m.try_get().map_err(pop_err)),
            SpscOp::PopTimeout(w) => {
                assert_eq!(rx.pop_timeout(w.duration()), m.try_get().map_err(pop_err))
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

fuzz_target!(|input: Input| {
    match input {
        Input::Mpmc { capacity, ops } => run_mpmc(usize::from(capacity % 64) + 1, ops),
        Input::Spsc { capacity, ops } => run_spsc(usize::from(capacity % 64) + 1, ops),
    }
});
