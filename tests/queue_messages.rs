//! Variable-size `serde` messages across real processes: `MessageQueue`,
//! `JoinableQueue` and `Pipe`/`Connection`, forked and re-executed peers,
//! oversize and undecodable messages, wrong-type attach, scribbled lengths.
#![cfg(not(loom))]

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::{DEADLINE, ShmName, fork};
use multiproc::SharedObject;
use multiproc::{
    AtomicValue, Connection, Descriptor, Error, JoinableQueue, MessageQueue, Pipe, Queue,
    RecvError, SendError, SharedMemory, TaskDoneError, pipe,
};
use serde::{Deserialize, Serialize};

/// The spec's example payload.
type Tuple = (i32, Option<()>, String);

/// A struct payload with a variable-size part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    producer: u32,
    seq: u64,
    name: String,
    data: Vec<f64>,
}

fn job(producer: u32, seq: u64) -> Job {
    Job {
        producer,
        seq,
        name: format!("job-{producer}-{seq}"),
        data: (0..seq % 7).map(|i| i as f64 * 0.5).collect(),
    }
}

#[test]
fn handles_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<MessageQueue<String>>();
    check::<JoinableQueue<Job>>();
    check::<Connection<Vec<u8>>>();
    // Even for a `T` that is neither: values travel encoded.
    check::<MessageQueue<std::rc::Rc<u8>>>();
}

#[test]
fn bad_sizes_are_errors() {
    for (cap, max) in [
        (0, 64),
        (4, 0),
        (MessageQueue::<u8>::MAX_CAPACITY + 1, 64),
        (4, MessageQueue::<u8>::MAX_MESSAGE_SIZE + 1),
        (usize::MAX, usize::MAX),
        // Fine each, too large together for the address space.
        (u32::MAX as usize, 1 << 30),
    ] {
        assert!(
            matches!(
                MessageQueue::<u8>::new(cap, max),
                Err(Error::InvalidSize { .. })
            ),
            "{cap} x {max}"
        );
        assert!(matches!(
            JoinableQueue::<u8>::new(cap, max),
            Err(Error::InvalidSize { .. })
        ));
        assert!(matches!(
            Pipe::new()
                .capacity(cap)
                .max_message_size(max)
                .create::<u8>(),
            Err(Error::InvalidSize { .. })
        ));
    }
    assert_eq!(MessageQueue::<u8>::shared_size(0, 8), usize::MAX);
}

/// Full, empty, order, oversize and close in one process.
#[test]
fn one_process_semantics() {
    let q = MessageQueue::<Tuple>::new(2, 32).unwrap();
    assert_eq!(q.max_message_size(), 48);
    assert_eq!(q.try_get(), Err(RecvError::Empty));
    q.try_put((1, None, "a".into())).unwrap();
    q.put((2, Some(()), "b".into())).unwrap();
    assert!(q.is_full());
    let back = q.try_put((3, None, "c".into())).unwrap_err();
    assert!(back.is_full());
    assert_eq!(back.into_inner(), (3, None, "c".into()));
    let t0 = Instant::now();
    assert!(
        q.put_timeout((4, None, "d".into()), Duration::from_millis(20))
            .unwrap_err()
            .is_timeout()
    );
    assert!(t0.elapsed() >= Duration::from_millis(20));
    assert_eq!(q.get().unwrap(), (1, None, "a".into()));

    // Oversize: refused with the value, nothing enqueued, nothing lost.
    let big = (5, None, "x".repeat(100));
    match q.put(big.clone()) {
        Err(SendError::TooLarge { value, size, max }) => {
            assert_eq!(value, big);
            assert_eq!(max, 48);
            assert!(size > 100);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(q.len(), 1);
    assert_eq!(q.get().unwrap(), (2, Some(()), "b".into()));

    // A message exactly at the limit goes through.
    let s = "y".repeat(48 - 1 - 1 - 1); // i32 varint(1) + None(1) + len(1)
    q.put((0, None, s.clone())).unwrap();
    assert_eq!(q.get().unwrap().2, s);

    q.put((6, None, "last".into())).unwrap();
    q.close();
    assert!(q.is_closed());
    assert!(q.put((7, None, "late".into())).unwrap_err().is_closed());
    assert_eq!(q.get().unwrap().2, "last");
    assert_eq!(q.get(), Err(RecvError::Closed));
    assert_eq!(
        q.get_timeout(Duration::from_millis(1)),
        Err(RecvError::Closed)
    );
}

/// A value whose `Serialize` fails is an `Encode` error with the value.
#[test]
fn failing_serialize_is_an_error() {
    struct Bad;
    impl Serialize for Bad {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused"))
        }
    }
    impl<'de> Deserialize<'de> for Bad {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Bad, D::Error> {
            Ok(Bad)
        }
    }
    let q = MessageQueue::<Bad>::new(2, 64).unwrap();
    assert!(matches!(q.put(Bad), Err(SendError::Encode { .. })));
    assert!(q.is_empty());
}

/// 1 producer / 1 consumer across processes: 200,000 structs, the end
/// marker `None`, order and checksum checked in the consumer.
#[test]
fn producer_consumer_with_end_marker() {
    const N: u64 = 200_000;
    let q = MessageQueue::<Option<Job>>::new(256, 256).unwrap();
    let sum = AtomicValue::new(0u64).unwrap();
    let consumer = {
        let (q, sum) = (q.clone(), sum.clone());
        fork(move || {
            let mut want = 0;
            let mut total = 0u64;
            while let Some(j) = q.get_timeout(DEADLINE).expect("get") {
                if j != job(0, want) {
                    return 1;
                }
                total = total.wrapping_add(j.seq + j.data.len() as u64);
                want += 1;
            }
            sum.store(total, SeqCst);
            i32::from(want != N) * 2
        })
    };
    let mut expected = 0u64;
    for i in 0..N {
        let j = job(0, i);
        expected = expected.wrapping_add(j.seq + j.data.len() as u64);
        q.put_timeout(Some(j), DEADLINE).unwrap();
    }
    q.put_timeout(None, DEADLINE).unwrap();
    assert_eq!(consumer.join(), 0);
    assert_eq!(sum.load(SeqCst), expected);
}

/// 3 producers / 2 consumers across processes: every message got exactly
/// once (a per-item flag in a shared array), each producer's in order.
#[test]
fn three_producers_two_consumers_exactly_once() {
    const PER: u64 = 30_000;
    const P: u32 = 3;
    let q = MessageQueue::<Job>::new(64, 128).unwrap();
    let seen = multiproc::RawArray::<u8>::new((PER * u64::from(P)) as usize).unwrap();
    let got = AtomicValue::new(0u64).unwrap();
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let (q, seen, got) = (q.clone(), seen.clone(), got.clone());
            fork(move || {
                let mut last = [None::<u64>; P as usize];
                loop {
                    match q.get_timeout(DEADLINE) {
                        Ok(j) => {
                            let p = j.producer as usize;
                            if last[p].is_some_and(|l| l >= j.seq) || j != job(j.producer, j.seq) {
                                return 1;
                            }
                            last[p] = Some(j.seq);
                            let idx = (u64::from(j.producer) * PER + j.seq) as usize;
                            if seen.get(idx) != Some(0) {
                                return 2;
                            }
                            if seen.set(idx, 1).is_err() {
                                return 4;
                            }
                            got.fetch_add(1, SeqCst);
                        }
                        Err(RecvError::Closed) => return 0,
                        Err(_) => return 3,
                    }
                }
            })
        })
        .collect();
    let producers: Vec<_> = (0..P)
        .map(|p| {
            let q = q.clone();
            fork(move || {
                for i in 0..PER {
                    if q.put_timeout(job(p, i), DEADLINE).is_err() {
                        return 1;
                    }
                }
                0
            })
        })
        .collect();
    for p in producers {
        assert_eq!(p.join(), 0);
    }
    q.close();
    for c in consumers {
        assert_eq!(c.join(), 0);
    }
    assert_eq!(got.load(SeqCst), PER * u64::from(P));
    assert!((0..seen.len()).all(|i| seen.get(i) == Some(1)));
}

/// JoinableQueue, 3 producers and 2 consumers in processes: `join` returns
/// only after every message was got *and* marked done (consumers count
/// their finished work before `task_done`, and dawdle a little).
#[test]
fn joinable_three_producers_two_consumers() {
    const PER: u64 = 2_000;
    let q = JoinableQueue::<(u32, u64)>::new(32, 32).unwrap();
    let done = AtomicValue::new(0u64).unwrap();
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let (q, done) = (q.clone(), done.clone());
            fork(move || {
                loop {
                    match q.get_timeout(DEADLINE) {
                        Ok((_, seq)) => {
                            if seq % 500 == 0 {
                                std::thread::sleep(Duration::from_millis(2));
                            }
                            done.fetch_add(1, SeqCst);
                            if q.task_done().is_err() {
                                return 1;
                            }
                        }
                        Err(RecvError::Closed) => return 0,
                        Err(_) => return 2,
                    }
                }
            })
        })
        .collect();
    let producers: Vec<_> = (0..3u32)
        .map(|p| {
            let q = q.clone();
            fork(move || {
                for i in 0..PER {
                    if q.put_timeout((p, i), DEADLINE).is_err() {
                        return 1;
                    }
                }
                0
            })
        })
        .collect();
    for p in producers {
        assert_eq!(p.join(), 0);
    }
    assert!(q.join_timeout(DEADLINE).is_ok(), "join timed out");
    assert_eq!(done.load(SeqCst), 3 * PER);
    assert_eq!(q.unfinished_tasks(), 0);
    assert_eq!(q.task_done(), Err(TaskDoneError));
    q.close();
    for c in consumers {
        assert_eq!(c.join(), 0);
    }
}

/// A joiner in another process sleeps (on the futex) until the last
/// `task_done`; a failed put does not count as a task.
#[test]
fn joinable_join_sleeps_until_last_task_done() {
    let q = JoinableQueue::<String>::new(1, 16).unwrap();
    q.put("a".into()).unwrap();
    // Full: not put, not counted.
    assert!(q.try_put("b".into()).unwrap_err().is_full());
    assert!(matches!(
        q.try_put("c".repeat(100)),
        Err(SendError::TooLarge { .. })
    ));
    assert_eq!(q.unfinished_tasks(), 1);
    assert!(q.join_timeout(Duration::from_millis(5)).is_err());
    let joiner = {
        let q = q.clone();
        fork(move || i32::from(q.join_timeout(DEADLINE).is_err()))
    };
    joiner.wait_until_futex_sleep();
    assert_eq!(q.get().unwrap(), "a");
    q.task_done().unwrap();
    assert_eq!(joiner.join(), 0);
}

/// A consumer asleep on an empty message queue in another process wakes
/// for one message.
#[test]
fn sleeping_getter_wakes() {
    let q = MessageQueue::<String>::new(4, 64).unwrap();
    let child = {
        let q = q.clone();
        fork(move || match q.get_timeout(DEADLINE) {
            Ok(s) if s == "wake" => 0,
            _ => 1,
        })
    };
    child.wait_until_futex_sleep();
    q.put("wake".into()).unwrap();
    assert_eq!(child.join(), 0);
}

/// Python's tutorial: a child sends through a pipe, the parent receives;
/// then ping-pong both ways; `close` from the child ends the parent's
/// `recv` after it drained everything, and the parent's sends fail.
#[test]
fn pipe_between_parent_and_child() {
    let (parent, child_end) = pipe::<Tuple>().unwrap();
    let child = fork(move || {
        child_end.send((42, None, "hello".into())).unwrap();
        for _ in 0..1000 {
            let (n, _, s) = child_end.recv_timeout(DEADLINE).unwrap();
            child_end.send((n + 1, Some(()), s)).unwrap();
        }
        for i in 0..10 {
            child_end.send((i, None, "tail".into())).unwrap();
        }
        child_end.close();
        0
    });
    assert_eq!(
        parent.recv_timeout(DEADLINE).unwrap(),
        (42, None, "hello".into())
    );
    for i in 0..1000 {
        parent.send((i, None, format!("ping {i}"))).unwrap();
        let (n, unit, s) = parent.recv_timeout(DEADLINE).unwrap();
        assert_eq!((n, unit, s), (i + 1, Some(()), format!("ping {i}")));
    }
    assert_eq!(child.join(), 0);
    for i in 0..10 {
        assert_eq!(parent.recv().unwrap(), (i, None, "tail".into()));
    }
    assert_eq!(parent.recv(), Err(RecvError::Closed));
    assert!(
        parent.poll(Duration::ZERO),
        "closed and drained polls ready"
    );
    assert!(
        parent
            .send((0, None, String::new()))
            .unwrap_err()
            .is_closed()
    );
}

/// `poll` sleeps until a message arrives from another process; bytes and
/// typed messages share the channel; a typed `recv` of raw bytes is a
/// `Decode` error that consumes only that message.
#[test]
fn pipe_poll_and_bytes() {
    let (a, b) = Pipe::new()
        .capacity(4)
        .max_message_size(100)
        .create::<u64>()
        .unwrap();
    assert!(!b.poll(Duration::from_millis(5)));
    let child = fork(move || {
        std::thread::sleep(Duration::from_millis(20));
        a.send_bytes(b"not a u64 at all, longer than ten bytes")
            .unwrap();
        a.send(7).unwrap();
        a.send_bytes(&[0u8; 100]).unwrap();
        match a.send_bytes(&[0u8; 113]) {
            Err(SendError::TooLarge {
                size: 113,
                max: 112,
                ..
            }) => 0,
            _ => 1,
        }
    });
    assert!(b.poll(DEADLINE));
    assert!(matches!(b.recv(), Err(RecvError::Decode { len: 39, .. })));
    assert_eq!(b.recv_timeout(DEADLINE), Ok(7));
    assert_eq!(b.recv_bytes_timeout(DEADLINE).unwrap(), vec![0u8; 100]);
    assert_eq!(child.join(), 0);
    assert_eq!(b.try_recv(), Err(RecvError::Empty));
}

/// A pipe placed in a named segment: the ends `open_at` returns talk to
/// the ones `create_at` made, across a fork; refused sizes, a second
/// placement at the same offset, the wrong message type and the wrong kind
/// are errors.
#[test]
fn pipe_placed_in_a_named_segment() {
    let name = ShmName::new("pipe-at");
    let opts = Pipe::new().capacity(4).max_message_size(64);
    assert_eq!(Pipe::new().capacity(0).shared_size::<u64>(), usize::MAX);
    assert_eq!(
        Pipe::new().max_message_size(0).shared_size::<u64>(),
        usize::MAX
    );
    let size = opts.shared_size::<String>();
    let shm = SharedMemory::create(&name.0, size + 4096).unwrap();
    let (a, _b) = opts.create_at::<String>(&shm, 0).unwrap();
    assert!(matches!(
        opts.create_at::<String>(&shm, 0),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        opts.create_at::<String>(&shm, 8),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        opts.create_at::<String>(&shm, size + 4096 - 64),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        Pipe::open_at::<u64>(&shm, 0),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(matches!(
        MessageQueue::<String>::open_at(&shm, 0),
        Err(Error::KindMismatch { .. })
    ));
    let child = fork(|| {
        let Ok((_, b)) = Pipe::open_at::<String>(&shm, 0) else {
            return 1;
        };
        while let Ok(m) = b.recv_timeout(DEADLINE) {
            if b.send_timeout(format!("echo {m}"), DEADLINE).is_err() {
                return 2;
            }
        }
        0
    });
    for i in 0..50 {
        a.send_timeout(format!("{i}"), DEADLINE).unwrap();
        assert_eq!(a.recv_timeout(DEADLINE).unwrap(), format!("echo {i}"));
    }
    a.close();
    assert_eq!(child.join(), 0);
}

/// An end handed to an unrelated process by descriptor: the re-executed
/// test binary attaches end 1 and echoes until the pipe closes.
#[test]
fn pipe_end_in_unrelated_process() {
    let (a, b) = pipe::<String>().unwrap();
    let d = b.descriptor();
    assert_eq!(d.part(), 1);
    let bytes = d.to_bytes();
    let child = std::thread::spawn(move || common::run_self("role_pipe_echo", &bytes));
    for i in 0..100 {
        a.send_timeout(format!("msg {i}"), DEADLINE).unwrap();
        assert_eq!(a.recv_timeout(DEADLINE).unwrap(), format!("echo msg {i}"));
    }
    a.close();
    let (code, out) = child.join().unwrap();
    assert_eq!(code, 0, "child output:\n{out}");
    assert!(out.contains("echoed=100"), "child output:\n{out}");
}

#[test]
#[ignore = "child half of a re-exec test: run by common::run_self"]
fn role_pipe_echo() {
    let Some(data) = common::role_data("role_pipe_echo") else {
        return;
    };
    let d = Descriptor::from_bytes(&data).unwrap();
    let b = Connection::<String>::attach(&d).unwrap();
    assert_eq!(b.end(), 1);
    let mut n = 0;
    loop {
        match b.recv_timeout(DEADLINE) {
            Ok(s) => {
                b.send(format!("echo {s}")).unwrap();
                n += 1;
            }
            Err(RecvError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    println!("echoed={n}");
}

/// A message queue attached in an unrelated process from its descriptor.
#[test]
fn message_queue_in_unrelated_process() {
    let q = MessageQueue::<Job>::new(16, 256).unwrap();
    let bytes = q.descriptor().to_bytes();
    let child = std::thread::spawn(move || common::run_self("role_message_consumer", &bytes));
    for i in 0..1000 {
        q.put_timeout(job(9, i), DEADLINE).unwrap();
    }
    q.close();
    let (code, out) = child.join().unwrap();
    assert_eq!(code, 0, "child output:\n{out}");
    assert!(out.contains("got=1000"), "child output:\n{out}");
}

#[test]
#[ignore = "child half of a re-exec test: run by common::run_self"]
fn role_message_consumer() {
    let Some(data) = common::role_data("role_message_consumer") else {
        return;
    };
    let d = Descriptor::from_bytes(&data).unwrap();
    let q = MessageQueue::<Job>::attach(&d).unwrap();
    let mut n = 0;
    while let Ok(j) = q.get_timeout(DEADLINE) {
        assert_eq!(j, job(9, n));
        n += 1;
    }
    println!("got={n}");
}

/// Attaching with another message type, another kind, or a pipe part
/// that does not exist is a clear error.
#[test]
fn wrong_attach_is_an_error() {
    let q = MessageQueue::<String>::new(4, 64).unwrap();
    let d = q.descriptor();
    assert!(matches!(
        MessageQueue::<u32>::attach(&d),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(matches!(
        JoinableQueue::<String>::attach(&d),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        Queue::<u64>::attach(&d),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        Connection::<String>::attach(&d),
        Err(Error::KindMismatch { .. })
    ));
    let again = MessageQueue::<String>::attach(&d).unwrap();
    q.put("shared".into()).unwrap();
    assert_eq!(again.get().unwrap(), "shared");

    let (a, _b) = pipe::<String>().unwrap();
    let pd = a.descriptor();
    assert_eq!(pd.part(), 0);
    assert!(matches!(
        MessageQueue::<String>::attach(&pd),
        Err(Error::KindMismatch { .. })
    ));
    // A descriptor naming part 2 of a pipe: re-encode with the part byte
    // changed (the last field of the encoding).
    let mut bytes = pd.to_bytes();
    *bytes.last_mut().unwrap() = 2;
    let forged = Descriptor::from_bytes(&bytes).unwrap();
    assert_eq!(forged.part(), 2);
    assert!(matches!(
        Connection::<String>::attach(&forged),
        Err(Error::InvalidDescriptor { .. })
    ));
    // A non-zero part on an object that has one part.
    let mut bytes = d.to_bytes();
    *bytes.last_mut().unwrap() = 1;
    assert!(matches!(
        MessageQueue::<String>::attach(&Descriptor::from_bytes(&bytes).unwrap()),
        Err(Error::InvalidDescriptor { .. })
    ));
}

/// A peer overwrites a message's length word: the getter reports a
/// `Decode` error for that message (never reads past its slot) and the
/// next message is fine.
#[test]
fn scribbled_length_is_a_decode_error() {
    let name = common::ShmName::new("msg-scribble");
    let size = MessageQueue::<String>::shared_size(1, 48) + 64;
    let shm = SharedMemory::create(&name.0, size).unwrap();
    // One slot: every message lies in slot 0, after the header (64 bytes)
    // and the ring's words (256); its length word is at +8.
    let q = MessageQueue::<String>::create_at(&shm, 0, 1, 48).unwrap();
    let peer = common::Peer::open(&shm);
    let len_word = 64 + 256 + 8;
    for len in [u32::MAX, 49, 1 << 20, 0] {
        q.put("first".into()).unwrap();
        assert_eq!(peer.read_u64(len_word) & 0xFFFF_FFFF, 6);
        peer.write_u64(len_word, u64::from(len));
        let err = q.try_get().unwrap_err();
        assert!(
            matches!(err, RecvError::Decode { len: l, .. } if l == len as usize),
            "{err:?}"
        );
        q.put("second".into()).unwrap();
        assert_eq!(q.try_get().unwrap(), "second");
    }
    drop(q);
    shm.unlink().unwrap();
}
