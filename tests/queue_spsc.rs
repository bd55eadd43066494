//! The SPSC channel across real processes: forked children and a
//! re-executed, unrelated process; plus bad capacities and a peer that
//! scribbles over the ring's shared indices.
#![cfg(not(loom))]

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::{ShmName, fork};
use multiproc::SharedObject;
use multiproc::spsc::{self, Closed, Consumer, Producer, TryGetError, TryPutError};
use multiproc::{AtomicValue, Descriptor, Error, SharedMemory, Value};

/// The value of item `i`: not just `i`, so a slot read at the wrong time or
/// place shows.
fn item(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i >> 7)
}

#[test]
fn ends_are_send_not_clone() {
    fn send<T: Send + Sync>() {}
    send::<Producer<u64>>();
    send::<Consumer<[u8; 3]>>();
}

/// One process, no blocking: order, `len`, full and empty.
#[test]
fn smoke() {
    let (mut tx, mut rx) = spsc::channel::<u64>(4).unwrap();
    assert_eq!((tx.capacity(), rx.capacity()), (4, 4));
    assert!(tx.is_empty() && rx.is_empty() && !tx.is_full());
    for i in 0..4 {
        tx.try_push(item(i)).unwrap();
        assert_eq!(rx.len(), i as usize + 1);
    }
    assert!(tx.is_full() && rx.is_full());
    for round in 0..10u64 {
        assert_eq!(rx.try_pop(), Ok(item(round)));
        tx.push(item(round + 4)).unwrap();
    }
    for i in 10..14 {
        assert_eq!(rx.pop(), Ok(item(i)));
    }
    assert_eq!(rx.try_pop(), Err(TryGetError::Empty));
    assert!(format!("{tx:?} {rx:?}").contains("capacity: 4"));
}

/// Zero, absurd and overflowing capacities are `InvalidSize`; the largest
/// accepted one is `MAX_CAPACITY`.
#[test]
fn capacity() {
    for cap in [0, usize::MAX, spsc::MAX_CAPACITY + 1, usize::MAX / 4] {
        assert!(
            matches!(spsc::channel::<u64>(cap), Err(Error::InvalidSize { .. })),
            "capacity {cap}"
        );
    }
    assert!(matches!(
        spsc::channel::<()>(0),
        Err(Error::InvalidSize { .. })
    ));
    // Zero-sized items need no room; the capacity still bounds the count.
    let (mut tx, mut rx) = spsc::channel::<()>(spsc::MAX_CAPACITY).unwrap();
    assert_eq!(tx.push_slice(&[(); 100]), 100);
    assert_eq!(rx.len(), 100);
    assert_eq!(rx.pop_into(&mut [(); 64]), 64);
    assert_eq!(spsc::shared_size::<u64>(0), usize::MAX);
    assert_eq!(spsc::shared_size::<u64>(10), 64 + 2 * 576 + 256 + 80);
}

/// `try_push` on a full channel hands the value back; `try_pop` on an
/// empty one says `Empty`; after `close` pushes hand their value back as
/// `Closed` and pops drain, then say `Closed`.
#[test]
fn try_full_empty_and_close() {
    let (mut tx, mut rx) = spsc::channel::<[u32; 3]>(2).unwrap();
    assert_eq!(rx.try_pop(), Err(TryGetError::Empty));
    tx.try_push([1, 1, 1]).unwrap();
    tx.try_push([2, 2, 2]).unwrap();
    match tx.try_push([3, 3, 3]) {
        Err(TryPutError::Full(v)) => assert_eq!(v, [3, 3, 3]),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(tx.push_slice(&[[4; 3]]), 0);
    tx.close();
    tx.close(); // twice is harmless
    assert!(tx.is_closed() && rx.is_closed());
    assert!(matches!(
        tx.try_push([5; 3]),
        Err(TryPutError::Closed([5, 5, 5]))
    ));
    assert_eq!(tx.push([6; 3]), Err(Closed([6, 6, 6])));
    assert!(
        tx.push_timeout([7; 3], Duration::from_millis(1))
            .unwrap_err()
            .is_closed()
    );
    assert_eq!(tx.push_slice(&[[8; 3]]), 0);
    assert_eq!(rx.try_pop(), Ok([1, 1, 1]));
    assert_eq!(rx.pop(), Ok([2, 2, 2]));
    assert_eq!(rx.try_pop(), Err(TryGetError::Closed));
    assert_eq!(rx.pop(), Err(Closed(())));
    assert_eq!(
        rx.pop_timeout(Duration::from_secs(60)),
        Err(multiproc::GetTimeoutError::Closed)
    );
    assert_eq!(rx.pop_into(&mut [[0; 3]; 4]), 0);
}

/// Timed calls give up after at least their timeout; a huge timeout does
/// not overflow.
#[test]
fn timeouts() {
    let (mut tx, mut rx) = spsc::channel::<u16>(1).unwrap();
    let timeout = Duration::from_millis(50);
    let t0 = Instant::now();
    assert_eq!(
        rx.pop_timeout(timeout),
        Err(multiproc::GetTimeoutError::Timeout)
    );
    assert!(t0.elapsed() >= timeout);
    tx.push_timeout(1, Duration::MAX).unwrap();
    let t0 = Instant::now();
    match tx.push_timeout(2, timeout) {
        Err(multiproc::PutTimeoutError::Timeout(2)) => {}
        other => panic!("expected Full(2), got {other:?}"),
    }
    assert!(t0.elapsed() >= timeout);
    assert_eq!(rx.pop_timeout(Duration::MAX), Ok(1));
    assert_eq!(
        rx.pop_timeout(Duration::ZERO),
        Err(multiproc::GetTimeoutError::Timeout)
    );
}

/// One producer process and one consumer process move 2,000,000 `u64`
/// through a small ring with blocking calls: every item arrives once, in
/// order (checked item by item and by checksum); the producer closes, and
/// the consumer sees `Closed` only after the last item.
#[test]
fn spsc_two_million_across_processes() {
    const N: u64 = 2_000_000;
    let (mut tx, mut rx) = spsc::channel::<u64>(1024).unwrap();
    let sum = AtomicValue::new(0u64).unwrap();
    let count = AtomicValue::new(0u64).unwrap();
    let producer = fork(|| {
        for i in 0..N {
            if tx.push(item(i)).is_err() {
                return 1;
            }
        }
        tx.close();
        0
    });
    let consumer = fork(|| {
        let (mut n, mut s) = (0u64, 0u64);
        while let Ok(v) = rx.pop() {
            if v != item(n) {
                eprintln!("item {n}: got {v:#x}, want {:#x}", item(n));
                return 2;
            }
            s = s.wrapping_add(v);
            n += 1;
        }
        sum.store(s, SeqCst);
        count.store(n, SeqCst);
        0
    });
    assert_eq!(producer.join(), 0);
    assert_eq!(consumer.join(), 0);
    assert_eq!(count.load(SeqCst), N);
    let want = (0..N).fold(0u64, |s, i| s.wrapping_add(item(i)));
    assert_eq!(sum.load(SeqCst), want);
    assert!(rx.is_empty());
}

/// Batches across processes: `push_slice` and `pop_into` of varying sizes
/// move 1,000,000 items in order; the ends fall back to blocking calls when
/// a batch moves nothing.
#[test]
fn batches_across_processes() {
    const N: u64 = 1_000_000;
    let (mut tx, mut rx) = spsc::channel::<u64>(300).unwrap();
    let producer = fork(|| {
        let src: Vec<u64> = (0..N).map(item).collect();
        let mut at = 0;
        let mut step = 1;
        while at < src.len() {
            let end = (at + step).min(src.len());
            let n = tx.push_slice(&src[at..end]);
            if n == 0 {
                tx.push(src[at]).unwrap();
                at += 1;
            } else {
                at += n;
            }
            step = step % 500 + 7;
        }
        tx.close();
        0
    });
    let consumer = fork(|| {
        let mut buf = vec![0u64; 613];
        let mut next = 0u64;
        let mut want = 1;
        loop {
            let n = rx.pop_into(&mut buf[..want]);
            let got: &[u64] = if n == 0 {
                match rx.pop() {
                    Ok(v) => {
                        buf[0] = v;
                        &buf[..1]
                    }
                    Err(Closed(())) => break,
                }
            } else {
                &buf[..n]
            };
            for &v in got {
                if v != item(next) {
                    return 2;
                }
                next += 1;
            }
            want = want % 613 + 1;
        }
        if next == N { 0 } else { 3 }
    });
    assert_eq!(producer.join(), 0);
    assert_eq!(consumer.join(), 0);
}

/// A consumer asleep in `pop` in another process is woken by a push, and
/// by a close; a producer asleep on a full ring is woken by a pop.
#[test]
fn blocking_wakes_across_processes() {
    let (mut tx, mut rx) = spsc::channel::<u32>(1).unwrap();
    let consumer = fork(|| {
        let a = rx.pop();
        let b = rx.pop();
        i32::from(!(a == Ok(42) && b == Err(Closed(()))))
    });
    consumer.wait_until_futex_sleep();
    tx.push(42).unwrap();
    // The child pops 42 and sleeps again; the close wakes it.
    consumer.wait_until_futex_sleep();
    tx.close();
    assert_eq!(consumer.join(), 0);

    let (mut tx, mut rx) = spsc::channel::<u32>(1).unwrap();
    tx.push(1).unwrap();
    let producer = fork(|| i32::from(tx.push(2).is_err()));
    producer.wait_until_futex_sleep();
    assert_eq!(rx.pop(), Ok(1));
    assert_eq!(producer.join(), 0);
    assert_eq!(rx.pop(), Ok(2));
}

/// The producer's end-of-stream protocol (Python's `put(None)`): it pushes,
/// closes and leaves; the consumer, started later in another process,
/// drains every item, then sees `Closed`.
#[test]
fn end_marker_close_then_drain() {
    let (mut tx, mut rx) = spsc::channel::<u64>(128).unwrap();
    let producer = fork(|| {
        for i in 0..100 {
            tx.push(item(i)).unwrap();
        }
        tx.close();
        0
    });
    assert_eq!(producer.join(), 0);
    assert!(rx.is_closed());
    assert_eq!(rx.len(), 100);
    let consumer = fork(|| {
        for i in 0..100 {
            if rx.pop() != Ok(item(i)) {
                return 1;
            }
        }
        i32::from(rx.pop() != Err(Closed(())) || rx.try_pop() != Err(TryGetError::Closed))
    });
    assert_eq!(consumer.join(), 0);
}

/// The consumer end attached in an unrelated process (a re-executed test
/// binary, no fork, no inherited descriptors): it takes every item the
/// producer pushes here, until the close. Wrong kinds and types are
/// refused.
#[test]
fn attach_consumer_in_unrelated_process() {
    const N: u64 = 100_000;
    let (mut tx, rx) = spsc::channel::<u64>(64).unwrap();
    let d = rx.descriptor();
    assert!(Value::<u64>::attach(&d).is_err());
    assert!(Consumer::<u32>::attach(&d).is_err());
    assert!(Consumer::<i64>::attach(&d).is_err());
    let bytes = d.to_bytes();
    let child = std::thread::spawn(move || common::run_self("role_spsc_consumer", &bytes));
    for i in 0..N {
        tx.push_timeout(item(i), common::DEADLINE).unwrap();
    }
    tx.close();
    let (code, out) = child.join().unwrap();
    assert_eq!(code, 0, "child output:\n{out}");
    let want = (0..N).fold(0u64, |s, i| s.wrapping_add(item(i)));
    assert!(
        out.contains(&format!("sum={want} n={N}")),
        "child output:\n{out}"
    );
}

/// The child side of [`attach_consumer_in_unrelated_process`].
#[test]
#[ignore = "child half of a re-exec test: run by common::run_self"]
fn role_spsc_consumer() {
    let Some(data) = common::role_data("role_spsc_consumer") else {
        return;
    };
    let d = Descriptor::from_bytes(&data).unwrap();
    assert!(Producer::<u32>::attach(&d).is_err());
    let mut rx = Consumer::<u64>::attach(&d).unwrap();
    assert_eq!(rx.capacity(), 64);
    let (mut n, mut sum) = (0u64, 0u64);
    loop {
        match rx.pop_timeout(common::DEADLINE) {
            Ok(v) => {
                assert_eq!(v, item(n));
                sum = sum.wrapping_add(v);
                n += 1;
            }
            Err(multiproc::GetTimeoutError::Closed) => break,
            Err(multiproc::GetTimeoutError::Timeout) => panic!("no item within the deadline"),
        }
    }
    println!("sum={sum} n={n}");
}

/// The producer end handed over: a forked child pushes through its copy,
/// then another child attaches a fresh producer from the descriptor and
/// continues; the consumer sees one stream, in order. Our own copy of the
/// end stayed behind; a handle attached afresh takes the end back.
#[test]
fn producer_handed_over() {
    let (mut tx, mut rx) = spsc::channel::<u64>(16).unwrap();
    let d = tx.descriptor();
    let first = fork(|| {
        for i in 0..10 {
            tx.push(item(i)).unwrap();
        }
        0
    });
    assert_eq!(first.join(), 0);
    let second = fork(|| {
        let mut p = Producer::<u64>::attach(&d).unwrap();
        for i in 10..16 {
            p.push(item(i)).unwrap();
        }
        0
    });
    assert_eq!(second.join(), 0);
    for i in 0..16 {
        assert_eq!(rx.try_pop(), Ok(item(i)));
    }
    drop(tx);
    let mut tx = Producer::<u64>::attach(&d).unwrap();
    tx.push(item(16)).unwrap();
    assert_eq!(rx.try_pop(), Ok(item(16)));
}

/// Both ends used here first, then handed to other processes mid-stream
/// (positions not multiples of the capacity, so slot indices wrap at new
/// places): a forked child keeps using its up-to-date copy of the consumer,
/// another child attaches the producer from its descriptor;
/// then both ends come back as fresh handles. One stream, in order, no
/// item lost or repeated.
#[test]
fn ends_handed_over_after_use_keep_positions() {
    const CAP: usize = 5;
    let (mut tx, mut rx) = spsc::channel::<u64>(CAP).unwrap();
    let (dt, dr) = (tx.descriptor(), rx.descriptor());
    // Here: 7 in, 4 out (head 4, tail 7).
    for i in 0..7 {
        if i >= CAP as u64 {
            assert_eq!(rx.try_pop(), Ok(item(i - CAP as u64)));
        }
        tx.try_push(item(i)).unwrap();
    }
    for i in 2..4 {
        assert_eq!(rx.try_pop(), Ok(item(i)));
    }
    drop(tx);
    // A child consumes with its forked copy (head 4 at the fork) while
    // another attaches the producer (tail 7) and pushes the rest.
    const N: u64 = 1_000;
    let consumer = fork(|| {
        for i in 4..N {
            if rx.pop_timeout(common::DEADLINE) != Ok(item(i)) {
                return 1;
            }
        }
        0
    });
    let producer = fork(|| {
        let Ok(mut p) = Producer::<u64>::attach(&dt) else {
            return 2;
        };
        for i in 7..N {
            if p.push_timeout(item(i), common::DEADLINE).is_err() {
                return 1;
            }
        }
        0
    });
    assert_eq!(producer.join(), 0);
    assert_eq!(consumer.join(), 0);
    // Back here, as fresh handles: positions N and N.
    drop(rx);
    let mut rx = Consumer::<u64>::attach(&dr).unwrap();
    let mut tx = Producer::<u64>::attach(&dt).unwrap();
    assert!(rx.is_empty());
    for i in N..N + 2 * CAP as u64 {
        tx.try_push(item(i)).unwrap();
        assert_eq!(rx.try_pop(), Ok(item(i)));
    }
}

/// A named-segment channel opened by offset; `open_at` refuses other types.
#[test]
fn named_segment_open_at() {
    let name = ShmName::new("spsc");
    let size = spsc::shared_size::<u32>(8);
    let shm = SharedMemory::create(&name.0, size).unwrap();
    let (mut tx, _rx) = spsc::channel_at::<u32>(&shm, 0, 8).unwrap();
    assert!(matches!(
        spsc::channel_at::<u32>(&shm, 0, 8),
        Err(Error::AlreadyExists { .. }) | Err(Error::Overlap { .. })
    ));
    assert!(Consumer::<u64>::open_at(&shm, 0).is_err());
    tx.push_slice(&[1, 2, 3]);
    let child = fork(|| {
        let Ok(mut rx) = Consumer::<u32>::open_at(&shm, 0) else {
            return 1;
        };
        let mut buf = [0; 8];
        i32::from(rx.pop_into(&mut buf) != 3 || buf[..3] != [1, 2, 3])
    });
    assert_eq!(child.join(), 0);
}

/// Offsets within the object (header at 0): see `ObjectKind::Spsc`.
/// The two ends' holder tables, between the header and the ring's words.
const TABLES: usize = 2 * 576;
const TAIL: usize = 64 + TABLES;
const CLOSED: usize = 144 + TABLES;
const HEAD: usize = 192 + TABLES;

/// A peer scribbling over the ring's indices and flags makes our process
/// get wrong data, `Empty`/`Full`, or `Closed`, but never read or write
/// outside the ring: every value popped is one of the values in the slots,
/// counts stay within the capacity, and timed calls return.
#[test]
fn scribbled_indices_never_go_out_of_bounds() {
    const CAP: usize = 7;
    let name = ShmName::new("spsc-scribble");
    // Room for the ring and, after it, a canary region we must never touch.
    let size = 4096;
    let shm = SharedMemory::create(&name.0, size).unwrap();
    let (mut tx, mut rx) = spsc::channel_at::<u64>(&shm, 0, CAP).unwrap();
    let peer = common::Peer::open(&shm);
    let end = spsc::shared_size::<u64>(CAP);
    const CANARY: u64 = 0xC0FF_EE00_DEAD_BEEF;
    for off in (end.next_multiple_of(8)..size).step_by(8) {
        peer.write_u64(off, CANARY);
    }
    const FILL: u64 = 0x5151_5151_5151_5151;
    while tx.try_push(FILL).is_ok() {}

    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let interesting = [
        0,
        1,
        CAP as u64 - 1,
        CAP as u64,
        CAP as u64 + 1,
        u64::MAX,
        u64::MAX - 3,
        1 << 63,
    ];
    let mut buf = [0u64; 2 * CAP];
    for round in 0..5_000 {
        let pick = |r: u64| {
            if r.is_multiple_of(3) {
                interesting[(r / 3) as usize % interesting.len()]
            } else {
                r
            }
        };
        match round % 4 {
            0 => peer.write_u64(TAIL, pick(next())),
            1 => peer.write_u64(HEAD, pick(next())),
            2 => {
                peer.write_u64(TAIL, pick(next()));
                peer.write_u64(HEAD, pick(next()));
            }
            _ => peer.write(CLOSED, &((next() % 2) as u32).to_ne_bytes()),
        }
        assert!(tx.len() <= CAP && rx.len() <= CAP);
        match rx.try_pop() {
            Ok(v) => assert_eq!(v, FILL, "popped a value nobody pushed"),
            Err(TryGetError::Empty | TryGetError::Closed) => {}
        }
        let n = rx.pop_into(&mut buf);
        assert!(n <= CAP);
        assert!(buf[..n].iter().all(|&v| v == FILL));
        let _ = tx.try_push(FILL);
        assert!(tx.push_slice(&[FILL; 2 * CAP]) <= CAP);
        if round % 500 == 0 {
            let _ = rx.pop_timeout(Duration::from_millis(1));
            let _ = tx.push_timeout(FILL, Duration::from_millis(1));
        }
    }
    // The bytes after the ring were never written.
    for off in (end.next_multiple_of(8)..size).step_by(8) {
        assert_eq!(
            peer.read_u64(off),
            CANARY,
            "byte {off} past the ring was written"
        );
    }
    // Restored indices make a working ring again for fresh handles (the
    // old ones keep their own positions, which the scribbler did not touch).
    peer.write_u64(TAIL, 0);
    peer.write_u64(HEAD, 0);
    peer.write(CLOSED, &0u32.to_ne_bytes());
    drop((tx, rx));
    let mut tx = Producer::<u64>::open_at(&shm, 0).unwrap();
    let mut rx = Consumer::<u64>::open_at(&shm, 0).unwrap();
    tx.push_timeout(3, common::DEADLINE).unwrap();
    assert_eq!(rx.pop_timeout(common::DEADLINE), Ok(3));
}

// --------------------------------------------------------------------------
// Wake-ups, and the fences behind them
// --------------------------------------------------------------------------

/// Whether this process may use `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`
/// (what the channel's asymmetric fences need).
fn membarrier_global_expedited_supported() -> bool {
    const MEMBARRIER_CMD_QUERY: libc::c_long = 0;
    const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_long = 1 << 1;
    // SAFETY: a query; it changes nothing.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) };
    r >= 0 && r & MEMBARRIER_CMD_GLOBAL_EXPEDITED != 0
}

/// Makes every later `membarrier` call of this process fail with `EPERM`
/// (a seccomp filter on all its threads), as a sandbox might.
fn refuse_membarrier() {
    const fn stmt(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }
    // Load the system call number (offset 0 of `seccomp_data`); membarrier:
    // EPERM; anything else: allow. No architecture check: only this
    // process's native calls matter here.
    let mut prog = [
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_membarrier as u32,
        },
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: plain prctl/seccomp calls with a valid filter program that
    // outlives them; the filter only turns membarrier into EPERM.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let r = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &fprog as *const libc::sock_fprog,
        );
        assert_eq!(r, 0, "seccomp: {}", std::io::Error::last_os_error());
        assert_eq!(
            libc::syscall(libc::SYS_membarrier, 0, 0, 0),
            -1,
            "membarrier still allowed"
        );
    }
}

/// Where `membarrier` works, a new channel is fenced asymmetrically and both
/// ends publish with plain stores (the fast path); elsewhere symmetrically.
#[test]
fn fencing_follows_membarrier_support() {
    let (tx, rx) = spsc::channel::<u8>(2).unwrap();
    let want = if membarrier_global_expedited_supported() {
        "fencing: Asymmetric, light: true"
    } else {
        "fencing: Symmetric, light: false"
    };
    for end in [format!("{tx:?}"), format!("{rx:?}")] {
        assert!(end.contains(want), "{end}");
    }
}

/// Rounds in each wake-up test.
const WAKE_ROUNDS: u64 = 30;

/// Single items, each pushed only once the consumer in another process is
/// asleep on the futex (and each pop only once the producer sleeps on a
/// full ring): every one of these wake-ups goes through the eventcount's
/// fences and the futex, and none may be lost (a lost one shows as a child
/// past the test's deadline).
#[test]
fn every_single_push_wakes_a_sleeping_consumer() {
    let (mut tx, mut rx) = spsc::channel::<u64>(1).unwrap();
    let consumer = fork(|| {
        for i in 0..WAKE_ROUNDS {
            if rx.pop_timeout(common::DEADLINE) != Ok(item(i)) {
                return 1;
            }
        }
        0
    });
    for i in 0..WAKE_ROUNDS {
        // The last item was taken, so the next futex sleep is a new one.
        wait_for(|| tx.is_empty());
        consumer.wait_until_futex_sleep();
        tx.push(item(i)).unwrap();
    }
    assert_eq!(consumer.join(), 0);

    let (mut tx, mut rx) = spsc::channel::<u64>(1).unwrap();
    tx.push(item(0)).unwrap();
    let producer = fork(|| {
        for i in 1..=WAKE_ROUNDS {
            if tx.push_timeout(item(i), common::DEADLINE).is_err() {
                return 1;
            }
        }
        0
    });
    for i in 0..WAKE_ROUNDS {
        wait_for(|| rx.is_full());
        producer.wait_until_futex_sleep();
        assert_eq!(rx.pop(), Ok(item(i)));
    }
    assert_eq!(producer.join(), 0);
    assert_eq!(rx.pop(), Ok(item(WAKE_ROUNDS)));
}

/// Waits (up to the test deadline) until `cond` holds.
fn wait_for(mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + common::DEADLINE;
    while !cond() {
        assert!(
            Instant::now() < end,
            "condition not met within the deadline"
        );
        std::thread::yield_now();
    }
}

/// A forked child whose `membarrier` calls are refused after it inherited
/// the ends of an asymmetric channel: its own publishes stay light (its
/// process is still registered, inherited from the parent), but its sleeps
/// cannot issue the heavy barrier, so it sleeps in short slices. It still
/// gets every item, sleeping before most of them, and the parent, asleep on
/// the answer channel, is woken by each of its pushes.
#[test]
fn forked_waiter_with_membarrier_refused() {
    let (mut tx, mut rx) = spsc::channel::<u64>(1).unwrap();
    let (mut back_tx, mut back_rx) = spsc::channel::<u64>(1).unwrap();
    let child = fork(|| {
        refuse_membarrier();
        for i in 0..WAKE_ROUNDS {
            let Ok(v) = rx.pop_timeout(common::DEADLINE) else {
                return 1;
            };
            if v != item(i) || back_tx.push_timeout(v, common::DEADLINE).is_err() {
                return 2;
            }
        }
        0
    });
    for i in 0..WAKE_ROUNDS {
        if i % 2 == 0 {
            wait_for(|| tx.is_empty());
            child.wait_until_futex_sleep();
        }
        tx.push(item(i)).unwrap();
        assert_eq!(back_rx.pop_timeout(common::DEADLINE), Ok(item(i)));
    }
    assert_eq!(child.join(), 0);
}

/// An unrelated process whose `membarrier` calls are refused from the start
/// attaches the ends of an asymmetric channel pair: its ends publish with
/// `SeqCst` swaps (it cannot register) and sleep in short slices (it cannot
/// issue the heavy barrier); ours stay light. Items bounce both ways, each
/// side sleeping on the futex in turn; none is lost.
#[test]
fn attached_ends_with_membarrier_refused() {
    let (mut tx, rx) = spsc::channel::<u64>(1).unwrap();
    let (back_tx, mut back_rx) = spsc::channel::<u64>(1).unwrap();
    let mut data = Vec::new();
    for d in [rx.descriptor(), back_tx.descriptor()] {
        let b = d.to_bytes();
        data.extend_from_slice(&(b.len() as u32).to_le_bytes());
        data.extend_from_slice(&b);
    }
    let child = std::thread::spawn(move || common::run_self("role_refused_bouncer", &data));
    for i in 0..WAKE_ROUNDS {
        tx.push_timeout(item(i), common::DEADLINE).unwrap();
        assert_eq!(back_rx.pop_timeout(common::DEADLINE), Ok(item(i)));
    }
    let (code, out) = child.join().unwrap();
    assert_eq!(code, 0, "child output:\n{out}");
    assert!(
        out.contains("fencing: Asymmetric, light: false")
            || !membarrier_global_expedited_supported(),
        "child output:\n{out}"
    );
    assert!(
        out.contains(&format!("bounced {WAKE_ROUNDS}")),
        "child output:\n{out}"
    );
}

/// The child side of [`attached_ends_with_membarrier_refused`].
#[test]
#[ignore = "child half of a re-exec test: run by common::run_self"]
fn role_refused_bouncer() {
    let Some(data) = common::role_data("role_refused_bouncer") else {
        return;
    };
    refuse_membarrier();
    let len = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
    let rx_d = Descriptor::from_bytes(&data[4..4 + len]).unwrap();
    let tx_d = Descriptor::from_bytes(&data[8 + len..]).unwrap();
    let mut rx = Consumer::<u64>::attach(&rx_d).unwrap();
    let mut tx = Producer::<u64>::attach(&tx_d).unwrap();
    println!("{rx:?}");
    for i in 0..WAKE_ROUNDS {
        let v = rx.pop_timeout(common::DEADLINE).unwrap();
        assert_eq!(v, item(i));
        tx.push_timeout(v, common::DEADLINE).unwrap();
    }
    println!("bounced {WAKE_ROUNDS}");
}

/// A channel made by a process whose `membarrier` calls are refused is
/// fenced symmetrically, and so are the ends another process opens on it,
/// though that process could use asymmetric fences: the ring's word, fixed
/// at creation, decides. Its consumer sleeps and is woken by our pushes.
#[test]
fn channel_made_with_membarrier_refused_is_symmetric() {
    let name = ShmName::new("spsc-sym");
    let shm = SharedMemory::create(&name.0, spsc::shared_size::<u64>(1)).unwrap();
    let arg = name.0.clone().into_bytes();
    let child = std::thread::spawn(move || common::run_self("role_symmetric_maker", &arg));
    let end = Instant::now() + common::DEADLINE;
    let mut tx = loop {
        match Producer::<u64>::open_at(&shm, 0) {
            Ok(tx) => break tx,
            Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("the child never made its channel: {e}"),
        }
    };
    assert!(
        format!("{tx:?}").contains("fencing: Symmetric, light: false"),
        "{tx:?}"
    );
    for i in 0..WAKE_ROUNDS {
        tx.push_timeout(item(i), common::DEADLINE).unwrap();
    }
    let (code, out) = child.join().unwrap();
    assert_eq!(code, 0, "child output:\n{out}");
    assert!(
        out.contains(&format!("took {WAKE_ROUNDS}")),
        "child output:\n{out}"
    );
}

/// The child side of [`channel_made_with_membarrier_refused_is_symmetric`].
#[test]
#[ignore = "child half of a re-exec test: run by common::run_self"]
fn role_symmetric_maker() {
    let Some(data) = common::role_data("role_symmetric_maker") else {
        return;
    };
    refuse_membarrier();
    let shm = SharedMemory::open(std::str::from_utf8(&data).unwrap()).unwrap();
    let (_tx, mut rx) = spsc::channel_at::<u64>(&shm, 0, 1).unwrap();
    let dbg = format!("{rx:?}");
    assert!(dbg.contains("fencing: Symmetric, light: false"), "{dbg}");
    for i in 0..WAKE_ROUNDS {
        assert_eq!(rx.pop_timeout(common::DEADLINE), Ok(item(i)));
    }
    println!("took {WAKE_ROUNDS}");
}
