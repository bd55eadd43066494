//! The MPMC `Queue` across real processes: forked producers and consumers,
//! a re-executed, unrelated consumer; plus bad capacities, full and empty,
//! close and timeouts, and peers that scribble over the ring's shared
//! positions and stamps.
#![cfg(not(loom))]

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::{ShmName, fork};
use multiproc::SharedObject;
use multiproc::{
    AtomicValue, Closed, Descriptor, Error, Queue, RawArray, SharedMemory, TryGetError,
    TryPutError, Value,
};

/// Item `seq` of producer `p`: the producer in the top 8 bits, the
/// sequence number below, so a consumer can check each producer's order.
fn item(p: u64, seq: u64) -> u64 {
    (p << 56) | seq
}

#[test]
fn queue_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Queue<u64>>();
    check::<Queue<[u8; 3]>>();
}

/// One process, no blocking: order, `len`, full and empty, wrap-around.
#[test]
fn smoke() {
    let q = Queue::<u64>::new(4).unwrap();
    assert_eq!(q.capacity(), 4);
    assert!(q.is_empty() && !q.is_full());
    for i in 0..4 {
        q.try_put(i).unwrap();
        assert_eq!(q.len(), i as usize + 1);
    }
    assert!(q.is_full());
    for round in 0..10u64 {
        assert_eq!(q.try_get(), Ok(round));
        q.put(round + 4).unwrap();
        assert_eq!(q.len(), 4);
    }
    for i in 10..14 {
        assert_eq!(q.get(), Ok(i));
    }
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
    assert!(q.is_empty());
    assert!(format!("{q:?}").contains("capacity: 4"));
}

/// Zero, absurd and overflowing capacities are `InvalidSize`.
#[test]
fn capacity() {
    for cap in [
        0,
        usize::MAX,
        Queue::<u64>::MAX_CAPACITY + 1,
        usize::MAX / 4,
    ] {
        assert!(
            matches!(Queue::<u64>::new(cap), Err(Error::InvalidSize { .. })),
            "capacity {cap}"
        );
    }
    assert!(matches!(
        Queue::<()>::new(0),
        Err(Error::InvalidSize { .. })
    ));
    let q = Queue::<()>::new(3).unwrap();
    assert_eq!(q.put_slice(&[(); 5]), 3);
    assert!(matches!(q.try_put(()), Err(TryPutError::Full(()))));
    assert_eq!(q.get_into(&mut [(); 2]), 2);
    assert_eq!(Queue::<u64>::shared_size(0), usize::MAX);
    assert_eq!(Queue::<u64>::shared_size(10), 64 + 256 + 160);
    assert_eq!(Queue::<u64>::shared_align(), 64);
}

/// `try_put` on a full queue hands the value back; `try_get` on an empty
/// one says `Empty`; after `close` (from another handle) puts hand their
/// value back as `Closed` and gets drain, then say `Closed`.
#[test]
fn try_full_empty_and_close() {
    let q = Queue::<[u32; 3]>::new(2).unwrap();
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
    q.try_put([1; 3]).unwrap();
    q.try_put([2; 3]).unwrap();
    match q.try_put([3; 3]) {
        Err(TryPutError::Full(v)) => assert_eq!(v, [3; 3]),
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(
        q.put_timeout([3; 3], Duration::ZERO)
            .unwrap_err()
            .is_timeout()
    );
    assert_eq!(q.put_slice(&[[4; 3]]), 0);
    q.clone().close();
    q.close(); // twice is harmless
    assert!(q.is_closed());
    assert!(matches!(
        q.try_put([5; 3]),
        Err(TryPutError::Closed([5, 5, 5]))
    ));
    assert_eq!(q.put([6; 3]), Err(Closed([6; 3])));
    assert!(
        q.put_timeout([7; 3], Duration::from_millis(1))
            .unwrap_err()
            .is_closed()
    );
    assert_eq!(q.put_slice(&[[8; 3]]), 0);
    assert_eq!(q.len(), 2);
    assert_eq!(q.try_get(), Ok([1; 3]));
    assert_eq!(q.get(), Ok([2; 3]));
    assert_eq!(q.try_get(), Err(TryGetError::Closed));
    assert_eq!(q.get(), Err(Closed(())));
    assert_eq!(
        q.get_timeout(Duration::from_secs(60)),
        Err(multiproc::GetTimeoutError::Closed)
    );
    assert_eq!(q.get_into(&mut [[0; 3]; 4]), 0);
}

/// Timed calls give up after at least their timeout; a huge timeout does
/// not overflow.
#[test]
fn timeouts() {
    let q = Queue::<u16>::new(1).unwrap();
    let timeout = Duration::from_millis(50);
    let t0 = Instant::now();
    assert_eq!(
        q.get_timeout(timeout),
        Err(multiproc::GetTimeoutError::Timeout)
    );
    assert!(t0.elapsed() >= timeout);
    q.put_timeout(1, Duration::MAX).unwrap();
    let t0 = Instant::now();
    match q.put_timeout(2, timeout) {
        Err(multiproc::PutTimeoutError::Timeout(2)) => {}
        other => panic!("expected Full(2), got {other:?}"),
    }
    assert!(t0.elapsed() >= timeout);
    assert_eq!(q.get_timeout(Duration::MAX), Ok(1));
    assert_eq!(
        q.get_timeout(Duration::ZERO),
        Err(multiproc::GetTimeoutError::Timeout)
    );
}

/// `producers` processes each put `per` items (single puts, or batches
/// with `batch`), `consumers` processes get until `Closed`; the parent
/// closes once every producer is done. Each consumer checks that every
/// producer's items arrive in increasing order and records its count and
/// checksum; together they got every item exactly once.
fn run_mpmc(producers: u64, consumers: usize, per: u64, capacity: usize, batch: bool) {
    let q = Queue::<u64>::new(capacity).unwrap();
    let sums = RawArray::<u64>::new(consumers).unwrap();
    let counts = RawArray::<u64>::new(consumers).unwrap();
    let cons: Vec<_> = (0..consumers)
        .map(|c| {
            let (q, sums, counts) = (q.clone(), sums.clone(), counts.clone());
            fork(move || {
                let mut last = vec![None::<u64>; producers as usize];
                let (mut n, mut s) = (0u64, 0u64);
                let mut buf = [0u64; 37];
                loop {
                    let got: &[u64] = if batch {
                        let k = q.get_into(&mut buf[..(n as usize % 37) + 1]);
                        if k > 0 {
                            &buf[..k]
                        } else {
                            match q.get() {
                                Ok(v) => {
                                    buf[0] = v;
                                    &buf[..1]
                                }
                                Err(Closed(())) => break,
                            }
                        }
                    } else {
                        match q.get() {
                            Ok(v) => {
                                buf[0] = v;
                                &buf[..1]
                            }
                            Err(Closed(())) => break,
                        }
                    };
                    for &v in got {
                        let (p, seq) = ((v >> 56) as usize, v & ((1 << 56) - 1));
                        if p >= last.len() || seq >= per || last[p].is_some_and(|l| l >= seq) {
                            eprintln!("consumer {c}: bad item {v:#x} after {:?}", last.get(p));
                            return 2;
                        }
                        last[p] = Some(seq);
                        s = s.wrapping_add(v);
                        n += 1;
                    }
                }
                sums.set(c, s).unwrap();
                counts.set(c, n).unwrap();
                0
            })
        })
        .collect();
    let prods: Vec<_> = (0..producers)
        .map(|p| {
            let q = q.clone();
            fork(move || {
                if batch {
                    let src: Vec<u64> = (0..per).map(|i| item(p, i)).collect();
                    let (mut at, mut step) = (0, 1);
                    while at < src.len() {
                        let end = (at + step).min(src.len());
                        match q.put_slice(&src[at..end]) {
                            0 => {
                                if q.put(src[at]).is_err() {
                                    return 1;
                                }
                                at += 1;
                            }
                            n => at += n,
                        }
                        step = step % 50 + 3;
                    }
                } else {
                    for i in 0..per {
                        if q.put(item(p, i)).is_err() {
                            return 1;
                        }
                    }
                }
                0
            })
        })
        .collect();
    for (i, p) in prods.into_iter().enumerate() {
        assert_eq!(p.join(), 0, "producer {i}");
    }
    q.close();
    for (i, c) in cons.into_iter().enumerate() {
        assert_eq!(c.join(), 0, "consumer {i}");
    }
    let total: u64 = (0..consumers).map(|c| counts.get(c).unwrap()).sum();
    assert_eq!(total, producers * per);
    let sum = (0..consumers).fold(0u64, |s, c| s.wrapping_add(sums.get(c).unwrap()));
    let want = (0..producers)
        .flat_map(|p| (0..per).map(move |i| item(p, i)))
        .fold(0u64, u64::wrapping_add);
    assert_eq!(sum, want);
    assert!(q.is_empty());
    assert_eq!(q.try_get(), Err(TryGetError::Closed));
}

/// One producer process, one consumer process, 1,000,000 items.
#[test]
fn one_producer_one_consumer_across_processes() {
    run_mpmc(1, 1, 1_000_000, 1024, false);
}

/// Three producer processes, two consumer processes, 1,200,000 items in a
/// small ring (lots of full and empty).
#[test]
fn three_producers_two_consumers_across_processes() {
    run_mpmc(3, 2, 400_000, 64, false);
}

/// The same with batches of varying sizes on both sides.
#[test]
fn batches_three_producers_two_consumers() {
    run_mpmc(3, 2, 200_000, 100, true);
}

/// A consumer asleep in `get` in another process is woken by a put, and
/// by a close; a producer asleep on a full queue is woken by a get.
#[test]
fn blocking_wakes_across_processes() {
    let q = Queue::<u32>::new(1).unwrap();
    let consumer = fork(|| {
        let a = q.get();
        let b = q.get();
        i32::from(!(a == Ok(42) && b == Err(Closed(()))))
    });
    consumer.wait_until_futex_sleep();
    q.put(42).unwrap();
    consumer.wait_until_futex_sleep();
    q.close();
    assert_eq!(consumer.join(), 0);

    let q = Queue::<u32>::new(1).unwrap();
    q.put(1).unwrap();
    let producer = fork(|| i32::from(q.put(2).is_err()));
    producer.wait_until_futex_sleep();
    assert_eq!(q.get(), Ok(1));
    assert_eq!(producer.join(), 0);
    assert_eq!(q.get(), Ok(2));
}

/// Close semantics across processes: a producer process puts, closes and
/// leaves; consumers started later in two other processes drain every
/// item between them, then both see `Closed`; puts after the close fail.
#[test]
fn close_then_drain_across_processes() {
    let q = Queue::<u64>::new(128).unwrap();
    let taken = AtomicValue::new(0u64).unwrap();
    let producer = fork(|| {
        for i in 0..100 {
            q.put(i).unwrap();
        }
        q.close();
        0
    });
    assert_eq!(producer.join(), 0);
    assert!(q.is_closed());
    assert_eq!(q.len(), 100);
    assert!(matches!(q.try_put(1), Err(TryPutError::Closed(1))));
    let kids: Vec<_> = (0..2)
        .map(|_| {
            fork(|| {
                let mut n = 0;
                while q.get().is_ok() {
                    n += 1;
                }
                taken.fetch_add(n, SeqCst);
                i32::from(q.try_get() != Err(TryGetError::Closed))
            })
        })
        .collect();
    for k in kids {
        assert_eq!(k.join(), 0);
    }
    assert_eq!(taken.load(SeqCst), 100);
}

/// A consumer attached in an unrelated process (a re-executed test binary,
/// no fork): it takes every item put here, until the close. Wrong kinds and
/// types are refused.
#[test]
fn attach_consumer_in_unrelated_process() {
    const N: u64 = 100_000;
    let q = Queue::<u64>::new(64).unwrap();
    let d = q.descriptor();
    assert!(Value::<u64>::attach(&d).is_err());
    assert!(Queue::<u32>::attach(&d).is_err());
    assert!(Queue::<i64>::attach(&d).is_err());
    assert!(multiproc::spsc::Consumer::<u64>::attach(&d).is_err());
    let bytes = d.to_bytes();
    let child = std::thread::spawn(move || common::run_self("role_mpmc_consumer", &bytes));
    for i in 0..N {
        q.put_timeout(i, common::DEADLINE).unwrap();
    }
    q.close();
    let (code, out) = child.join().unwrap();
    assert_eq!(code, 0, "child output:\n{out}");
    let want = N * (N - 1) / 2;
    assert!(
        out.contains(&format!("sum={want} n={N}")),
        "child output:\n{out}"
    );
}

/// The child side of [`attach_consumer_in_unrelated_process`].
#[test]
#[ignore = "child half of a re-exec test: run by common::run_self"]
fn role_mpmc_consumer() {
    let Some(data) = common::role_data("role_mpmc_consumer") else {
        return;
    };
    let d = Descriptor::from_bytes(&data).unwrap();
    let q = Queue::<u64>::attach(&d).unwrap();
    assert_eq!(q.capacity(), 64);
    let (mut n, mut sum) = (0u64, 0u64);
    loop {
        match q.get_timeout(common::DEADLINE) {
            Ok(v) => {
                assert_eq!(v, n);
                sum += v;
                n += 1;
            }
            Err(multiproc::GetTimeoutError::Closed) => break,
            Err(multiproc::GetTimeoutError::Timeout) => panic!("no item within the deadline"),
        }
    }
    println!("sum={sum} n={n}");
}

/// Offsets within a `Queue<u64>` object (header at 0): see `ObjectKind::Mpmc`
/// and the `MpmcState` table in `src/algo/mpmc/layout.rs`.
mod mpmc_layout {
    /// The tail hint.
    pub const TAIL: usize = 64;
    /// The `readable` and `writable` eventcounts (`seq | waiters << 32`).
    pub const EVENTS: [usize; 2] = [128, 136];
    /// The closed word (u32, with 4 spare bytes) and the lost count.
    pub const CLOSED: usize = 144;
    pub const LOST: usize = 152;
    /// The head hint.
    pub const HEAD: usize = 192;
    /// Slot `i`: its stamp at `SLOTS + 16 * i`, its value 8 bytes later.
    pub const SLOTS: usize = 320;
}

/// Peers scribbling over the ring's shared words (tail, head, eventcounts,
/// stamps) make this process's puts and gets fail or return wrong data,
/// never touch memory outside the queue, hang or panic.
///
/// The segment holds a canary `RawArray` right before the queue and another
/// right after it; the rest of the segment is a canary pattern too. With a
/// capacity of 8 the position encoding has room for slot indices up to 15,
/// and slots 8..15 would lie exactly over the second canary (its header,
/// then its data). Its data words are traps: stamps that, with a head or
/// tail a scribbler sets to match, look like an item to take or a free slot
/// to fill at index 12..15. A ring that used a slot index from shared memory
/// without checking it against the capacity would read a value nobody put
/// (caught by the gets' checks) and write a stamp or a value into the
/// canary (caught at the end).
///
/// One forked process scribbles at random all along; the forked process
/// that operates on the queue also scribbles, between its operations,
/// through its own mapping, with chosen values (positions past the
/// capacity, with the closed mark, near wrap-around, and the traps). Every
/// call it makes is a `try_*`, a batch, or a 1 ms timeout.
#[test]
fn scribbled_positions_and_stamps_never_go_out_of_bounds() {
    use mpmc_layout::{CLOSED, EVENTS, HEAD, LOST, SLOTS, TAIL};
    const CAP: usize = 8;
    /// The encoding's slot index mask is 15 for capacity 8; one lap is 32.
    const MARK: u64 = 16;
    const ONE_LAP: u64 = 32;
    const VAL: u64 = 0x5151_5151_5151_5151;
    const CANARY: u64 = 0xC0FF_EE00_DEAD_BEEF;
    const SIZE: usize = 4096;
    /// A TID above the kernel's limit (2^22) but inside the claim's field.
    const NO_TID: u64 = (1 << 22) - 1;

    let name = ShmName::new("mpmc-scribble");
    let shm = SharedMemory::create(&name.0, SIZE).unwrap();
    // [canary before: 0..128][queue: 128..576][canary after: 576..704][pattern]
    let before = RawArray::<u64>::create_at(&shm, 0, 8).unwrap();
    let q_off = 128;
    let q = Queue::<u64>::create_at(&shm, q_off, CAP).unwrap();
    assert_eq!(Queue::<u64>::shared_size(CAP), 448);
    let after_off = q_off + 448;
    let after = RawArray::<u64>::create_at(&shm, after_off, 8).unwrap();
    // Slot k >= CAP would be at q_off + SLOTS + 16 k: slots 12..15 are the
    // data of `after` (stamp at element 2 (k - 12), value after it).
    assert_eq!(q_off + SLOTS + 16 * 12, after_off + 64);
    let lap = |n: u64| n * ONE_LAP;
    let trap: [u64; 8] = [
        lap(0x1234) + 13, // slot 12 stamp: "item at head lap(0x1234) + 12"
        CANARY,           // slot 12 value
        lap(0x777) + 13,  // slot 13 stamp: "free for tail lap(0x777) + 13"
        CANARY,           // slot 13 value
        lap(3) + 15,      // slot 14 stamp: "item at head lap(3) + 14"
        CANARY,
        lap(0xABCD) + 15, // slot 15 stamp: "free for tail lap(0xABCD) + 15"
        CANARY,
    ];
    let before_words: Vec<u64> = (0..8).map(|i| CANARY ^ i).collect();
    before.copy_from_slice(&before_words).unwrap();
    after.copy_from_slice(&trap).unwrap();
    let peer = common::Peer::open(&shm);
    let pattern_from = after_off + 128;
    for off in (pattern_from..SIZE).step_by(8) {
        peer.write_u64(off, CANARY);
    }
    let headers = [peer.header(0), peer.header(after_off)];

    // The words a scribbler may write: everything shared but the values.
    let mut words = vec![
        q_off + TAIL,
        q_off + HEAD,
        q_off + EVENTS[0],
        q_off + EVENTS[1],
        q_off + CLOSED,
        q_off + LOST,
    ];
    words.extend((0..CAP).map(|i| q_off + SLOTS + 16 * i));
    let interesting: Vec<u64> = vec![
        0,
        1,
        CAP as u64 - 1,
        CAP as u64,
        CAP as u64 + 1,
        MARK - 1,
        MARK,
        MARK | 3,
        ONE_LAP,
        ONE_LAP + CAP as u64 - 1,
        ONE_LAP + MARK - 1,
        u64::MAX,
        u64::MAX - ONE_LAP + 1,
        1 << 63,
        (1 << 63) | 15,
        // Forged claims (claim bit 63, reading bit 62, lap tag from bit 54)
        // naming a TID no task has: recoverers take them for dead ones.
        (1 << 63) | (NO_TID << 32),
        (1 << 63) | (1 << 62) | (NO_TID << 32),
        (1 << 63) | (1 << 54) | (NO_TID << 32),
        (1 << 63) | (1 << 62) | (0xff << 54) | (NO_TID << 32),
        // The traps: heads one below the item stamps, tails equal to the
        // free stamps.
        trap[0] - 1,
        trap[2],
        trap[4] - 1,
        trap[6],
    ];
    let xorshift = |state: &mut u64| {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    };
    let pick = |r: u64| {
        if r.is_multiple_of(3) {
            interesting[(r / 3) as usize % interesting.len()]
        } else {
            r
        }
    };

    let stop = AtomicValue::new(0u32).unwrap();
    // A peer process scribbling until told to stop (or for the deadline).
    let scribbler = fork(|| {
        let end = Instant::now() + common::DEADLINE;
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        while stop.load(SeqCst) == 0 && Instant::now() < end {
            let r = xorshift(&mut rng);
            let word = words[(r >> 40) as usize % words.len()];
            peer.write_u64(word, pick(xorshift(&mut rng)));
        }
        0
    });
    // This side: operations, with its own chosen scribbles in between.
    let operator = fork(|| {
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut buf = [0u64; 2 * CAP];
        let ours = |v: u64| v == VAL || v == 0; // put by us, or never written
        for round in 0..20_000u32 {
            let r = xorshift(&mut rng);
            match round % 6 {
                0 => peer.write_u64(q_off + TAIL, pick(r)),
                1 => peer.write_u64(q_off + HEAD, pick(r)),
                2 => {
                    peer.write_u64(q_off + TAIL, pick(r));
                    peer.write_u64(q_off + HEAD, pick(xorshift(&mut rng)));
                }
                3 => peer.write_u64(words[6 + r as usize % CAP], pick(xorshift(&mut rng))),
                4 => peer.write_u64(q_off + EVENTS[r as usize % 2], pick(xorshift(&mut rng))),
                _ => {
                    // Spring a trap: a position that points past the
                    // capacity, at a stamp that matches it.
                    let t = (r % 4) as usize;
                    if t.is_multiple_of(2) {
                        peer.write_u64(q_off + HEAD, trap[2 * t] - 1);
                    } else {
                        peer.write_u64(q_off + TAIL, trap[2 * t]);
                    }
                }
            }
            assert!(q.len() <= CAP);
            if let Ok(v) = q.try_get() {
                assert!(ours(v), "got {v:#x}, which nobody put");
            }
            let n = q.get_into(&mut buf);
            assert!(n <= CAP, "get_into took {n}");
            assert!(buf[..n].iter().all(|&v| ours(v)), "got {:#x?}", &buf[..n]);
            let _ = q.try_put(VAL);
            assert!(q.put_slice(&[VAL; 2 * CAP]) <= CAP);
            let _ = (q.is_empty(), q.is_full(), q.is_closed());
            if round % 500 == 0 {
                if let Ok(v) = q.get_timeout(Duration::from_millis(1)) {
                    assert!(ours(v), "got {v:#x}, which nobody put");
                }
                let _ = q.put_timeout(VAL, Duration::from_millis(1));
            }
            if round % 777 == 0 {
                q.close(); // a later scribble of `closed` reopens it
            }
        }
        0
    });
    let code = operator.join();
    stop.store(1, SeqCst);
    assert_eq!(scribbler.join(), 0);
    assert_eq!(
        code, 0,
        "the operating process failed (see its panic above)"
    );

    // Nothing outside the queue was written: the canary objects, their
    // headers, and the rest of the segment.
    assert_eq!(before.to_vec(), before_words, "the canary before the queue");
    assert_eq!(after.to_vec(), trap, "the canary after the queue");
    assert_eq!([peer.header(0), peer.header(after_off)], headers);
    for off in (pattern_from..SIZE).step_by(8) {
        assert_eq!(peer.read_u64(off), CANARY, "byte {off} past the canaries");
    }
    // Sane words make a working ring again.
    peer.write_u64(q_off + TAIL, 0);
    peer.write_u64(q_off + HEAD, 0);
    for w in [EVENTS[0], EVENTS[1], CLOSED, LOST] {
        peer.write_u64(q_off + w, 0);
    }
    for i in 0..CAP {
        peer.write_u64(q_off + SLOTS + 16 * i, i as u64);
    }
    assert!(q.is_empty() && !q.is_closed());
    q.put_timeout(3, common::DEADLINE).unwrap();
    assert_eq!(q.put_slice(&[4, 5]), 2);
    assert_eq!(q.get_timeout(common::DEADLINE), Ok(3));
    let mut two = [0; 2];
    assert_eq!(q.get_into(&mut two), 2);
    assert_eq!(two, [4, 5]);
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
}

/// Stamps scribbled far ahead make every position look taken by others: a
/// timed get or put walks its skip budget, then sleeps until its deadline
/// and reports `Empty` / `Full`. (It used to spin past its deadline: the
/// waiter's condition said "ready" when the walk ran out, the get said
/// "empty", forever. Found by the `attach_bytes` fuzz target.) Runs in a
/// child, so a regression fails at the test deadline instead of hanging.
#[test]
fn scribbled_stamps_end_timed_calls_at_their_deadline() {
    use mpmc_layout::SLOTS;
    const CAP: usize = 4;
    let name = ShmName::new("mpmc-ahead");
    let shm = SharedMemory::create(&name.0, 4096).unwrap();
    let q = Queue::<u64>::create_at(&shm, 0, CAP).unwrap();
    let peer = common::Peer::open(&shm);
    for i in 0..CAP {
        // A position (claim bit clear) far past any the ring reached.
        peer.write_u64(SLOTS + 16 * i, 1 << 62);
    }
    let child = fork(|| {
        let short = Duration::from_millis(30);
        let got = q.get_timeout(short);
        let put = q.put_timeout(7, short);
        i32::from(got != Err(multiproc::GetTimeoutError::Timeout))
            + 2 * i32::from(put != Err(multiproc::PutTimeoutError::Timeout(7)))
    });
    assert_eq!(
        child.join(),
        0,
        "1: the get, 2: the put did not time out as Empty / Full"
    );
}

/// crossbeam's `linearizable` scenario across processes: four processes
/// share a ring of four; each round, each does `try_put` and then
/// `try_get`. With at most four items in flight there is always room, and
/// a `try_get` after one's own completed `try_put` always finds an item,
/// even while another process's put holds an earlier slot claimed but not
/// yet written (a put in progress is not an empty queue).
#[test]
fn linearizable_try_put_then_try_get() {
    const ROUNDS: u64 = 100_000;
    let q = Queue::<u64>::new(4).unwrap();
    let kids: Vec<_> = (0..4u64)
        .map(|p| {
            let q = q.clone();
            fork(move || {
                for i in 0..ROUNDS {
                    if q.try_put(p * ROUNDS + i).is_err() {
                        return 1;
                    }
                    if q.try_get().is_err() {
                        return 2;
                    }
                }
                0
            })
        })
        .collect();
    for (p, k) in kids.into_iter().enumerate() {
        assert_eq!(k.join(), 0, "process {p}: 1 = full, 2 = empty");
    }
    assert!(q.is_empty());
}
