//! Producers and consumers SIGKILLed mid-stream: the survivors go on, and
//! what the dead took or never sent is accounted for.
//!
//! In the first tests each victim is killed while it is parked between
//! operations (after a known number of items), so the outcome is exact.
//! The `inside_*` tests kill a victim *inside* an MPMC put or get, between
//! claiming its slot and finishing it: the test stops the victim
//! (`SIGSTOP`) at random moments until the slot's stamp shows the victim's
//! claim, then kills it there. The survivors must go on past the dead
//! claim.
#![cfg(not(loom))]

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::{Child, DEADLINE, Peer, ShmName, fork};
use multiproc::{
    AtomicValue, Event, JoinableQueue, Pipe, Queue, RecvError, SendError, SharedMemory,
    TryGetError, spsc,
};

/// Item `seq` of producer `p`.
fn item(p: u64, seq: u64) -> u64 {
    (p << 40) | seq
}

/// Three producers, two consumers; producer 0 and consumer 0 are killed
/// halfway. The surviving consumer gets every item the survivors put and
/// every item producer 0 put before it died, each exactly once, each
/// producer's in order.
///
/// The survivor starts taking only once consumer 0 has taken its `HALF`:
/// racing freely, a busy survivor on a loaded 2-core machine could take
/// all 45,000 items first and leave consumer 0 waiting for a share that
/// never comes (CI saw it: "consumer 0 never parked" after 60 s).
#[test]
fn mpmc_producer_and_consumer_killed_mid_stream() {
    const PER: u64 = 20_000;
    const HALF: u64 = 5_000;
    let q = Queue::<u64>::new(64).unwrap();
    // Per producer: how many it put (published before it parks).
    let put = [0; 3].map(|_| AtomicValue::new(0u64).unwrap());
    // Per consumer: how many it took, and their sum.
    let took = [0; 2].map(|_| AtomicValue::new(0u64).unwrap());
    let sums = [0; 2].map(|_| AtomicValue::new(0u64).unwrap());
    let parked = [Event::new().unwrap(), Event::new().unwrap()];
    let never = Event::new().unwrap();

    let consumer = |c: usize, stop_after: Option<u64>| {
        let (q, took, sums, parked, never) = (
            q.clone(),
            took[c].clone(),
            sums[c].clone(),
            parked[1].clone(),
            never.clone(),
        );
        fork(move || {
            if stop_after.is_none() && parked.wait_timeout(DEADLINE).is_err() {
                return 3;
            }
            let mut last = [None::<u64>; 3];
            loop {
                if stop_after == Some(took.load(SeqCst)) {
                    // Parked for good: the test kills us here.
                    parked.set();
                    never.wait_timeout(DEADLINE).unwrap();
                    return 9;
                }
                match q.get_timeout(DEADLINE) {
                    Ok(v) => {
                        let (p, seq) = ((v >> 40) as usize, v & ((1 << 40) - 1));
                        if last[p].is_some_and(|l| l >= seq) {
                            return 1;
                        }
                        last[p] = Some(seq);
                        sums.fetch_add(v, SeqCst);
                        took.fetch_add(1, SeqCst);
                    }
                    Err(multiproc::GetTimeoutError::Closed) => return 0,
                    Err(multiproc::GetTimeoutError::Timeout) => return 2,
                }
            }
        })
    };
    let victim_consumer = consumer(0, Some(HALF));
    let survivor = consumer(1, None);
    let producers: Vec<_> = (0..3u64)
        .map(|p| {
            let (q, put, parked, never) = (
                q.clone(),
                put[p as usize].clone(),
                parked[0].clone(),
                never.clone(),
            );
            fork(move || {
                for i in 0..PER {
                    if p == 0 && i == HALF {
                        parked.set();
                        never.wait_timeout(DEADLINE).unwrap();
                        return 9;
                    }
                    if q.put_timeout(item(p, i), DEADLINE).is_err() {
                        return 1;
                    }
                    put.store(i + 1, SeqCst);
                }
                0
            })
        })
        .collect();
    let mut producers = producers.into_iter();
    let victim_producer = producers.next().unwrap();

    assert!(
        parked[0].wait_timeout(DEADLINE).is_ok(),
        "producer 0 never parked"
    );
    victim_producer.signal(libc::SIGKILL);
    assert_eq!(victim_producer.join(), -libc::SIGKILL);
    assert!(
        parked[1].wait_timeout(DEADLINE).is_ok(),
        "consumer 0 never parked"
    );
    victim_consumer.signal(libc::SIGKILL);
    assert_eq!(victim_consumer.join(), -libc::SIGKILL);

    for p in producers {
        assert_eq!(p.join(), 0, "a surviving producer failed");
    }
    q.close();
    assert_eq!(survivor.join(), 0, "the surviving consumer failed");

    // Everything put was taken, by the dead consumer or the survivor.
    let put: Vec<u64> = put.iter().map(|a| a.load(SeqCst)).collect();
    assert_eq!(put, [HALF, PER, PER]);
    let taken = took[0].load(SeqCst) + took[1].load(SeqCst);
    assert_eq!(took[0].load(SeqCst), HALF);
    assert_eq!(taken, HALF + 2 * PER, "items lost or duplicated");
    let want: u64 = (0..3u64)
        .map(|p| (0..put[p as usize]).map(|i| item(p, i)).sum::<u64>())
        .sum();
    assert_eq!(sums[0].load(SeqCst) + sums[1].load(SeqCst), want);
    assert_eq!(q.try_get(), Err(TryGetError::Closed));
}

/// A JoinableQueue consumer killed between `get` and `task_done`: the
/// survivors finish everything else, and `join` ends (it would wait for
/// ever in Python) reporting the dead consumer's task as lost, neither
/// hanging nor pretending; `clear_lost` forgets it.
#[test]
fn joinable_consumer_killed_before_task_done() {
    let q = JoinableQueue::<String>::new(16, 64).unwrap();
    let got_one = Event::new().unwrap();
    let victim = {
        let (q, got_one) = (q.clone(), got_one.clone());
        fork(move || {
            let _task = q.get_timeout(DEADLINE);
            got_one.set();
            // Parked with its task unfinished: killed here.
            std::thread::sleep(DEADLINE);
            9
        })
    };
    q.put("first".into()).unwrap();
    assert!(got_one.wait_timeout(DEADLINE).is_ok());
    victim.signal(libc::SIGKILL);
    assert_eq!(victim.join(), -libc::SIGKILL);

    let worker = {
        let q = q.clone();
        fork(move || {
            loop {
                match q.get_timeout(DEADLINE) {
                    Ok(_) => {
                        if q.task_done().is_err() {
                            return 1;
                        }
                    }
                    Err(RecvError::Closed) => return 0,
                    Err(_) => return 2,
                }
            }
        })
    };
    for i in 0..100 {
        q.put(format!("job {i}")).unwrap();
    }
    assert_eq!(
        q.join_timeout(DEADLINE),
        Err(multiproc::JoinTimeoutError::Lost(multiproc::TasksLost {
            count: 1
        }))
    );
    assert_eq!(q.join(), Err(multiproc::TasksLost { count: 1 }));
    assert_eq!(q.unfinished_tasks(), 1, "the dead consumer's task");
    assert_eq!(q.lost_tasks(), 1);
    assert!(q.is_empty());
    assert_eq!(q.clear_lost(), 1);
    assert_eq!(q.unfinished_tasks(), 0);
    assert_eq!(q.join(), Ok(()));
    q.close();
    assert_eq!(worker.join(), 0);
}

/// A JoinableQueue producer killed while blocked in `put` on a full queue
/// (its task counted by the live count, never put): once the consumers
/// finished everything that was put, `join` returns `Ok` (in a child, so a
/// hang fails the test by its deadline), and the unfinished count is 0.
#[test]
fn joinable_producer_killed_blocked_in_put_is_not_counted() {
    let q = JoinableQueue::<u32>::new(2, 16).unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    let mut victim = {
        let q = q.clone();
        fork(move || {
            // Blocks: the queue is full. Killed here.
            i32::from(q.put(3).is_err())
        })
    };
    victim.wait_until_futex_sleep();
    victim.signal(libc::SIGKILL);
    assert_eq!(victim.wait_timeout(DEADLINE), Some(-libc::SIGKILL));
    for _ in 0..2 {
        q.get_timeout(DEADLINE).unwrap();
        q.task_done().unwrap();
    }
    let joiner = {
        let q = q.clone();
        fork(move || i32::from(q.join().is_err()))
    };
    assert_eq!(joiner.join(), 0, "join returned Ok");
    assert_eq!(q.unfinished_tasks(), 0);
    assert_eq!(q.lost_tasks(), 0);
    assert!(q.is_empty());
}

/// A task got by one process and marked done by another after the getter
/// exited (Python lets any process call `task_done`): it is done, not
/// lost, and `clear_lost` has nothing to forget (it would otherwise take
/// the task off the count a second time, and `join` would return while
/// another task waits).
#[test]
fn joinable_task_done_for_a_getter_that_exited() {
    let q = JoinableQueue::<u32>::new(4, 16).unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    let getter = {
        let q = q.clone();
        fork(move || i32::from(q.get_timeout(DEADLINE) != Ok(1)))
    };
    assert_eq!(getter.join(), 0);
    q.task_done().unwrap(); // for task 1, on the exited getter's behalf
    assert_eq!(q.lost_tasks(), 0);
    assert_eq!(q.clear_lost(), 0);
    assert_eq!(q.unfinished_tasks(), 1, "task 2 still waits");
    assert_eq!(
        q.join_timeout(Duration::from_millis(50)),
        Err(multiproc::JoinTimeoutError::Timeout)
    );
    assert_eq!(q.get_timeout(DEADLINE), Ok(2));
    q.task_done().unwrap();
    assert_eq!(q.join(), Ok(()));
}

/// An SPSC producer killed mid-stream: the consumer gets every item it
/// published, in order, and after that nothing (no half-written item shows
/// up), so the survivor can tell exactly what arrived.
#[test]
fn spsc_producer_killed_mid_stream() {
    const HALF: u64 = 50_000;
    let (mut tx, mut rx) = spsc::channel::<u64>(256).unwrap();
    let parked = Event::new().unwrap();
    let victim = {
        let parked = parked.clone();
        fork(move || {
            for i in 0..HALF {
                if tx.push_timeout(i, DEADLINE).is_err() {
                    return 1;
                }
            }
            parked.set();
            std::thread::sleep(DEADLINE);
            9
        })
    };
    let mut next = 0;
    while next < HALF {
        match rx.pop_timeout(DEADLINE) {
            Ok(v) => {
                assert_eq!(v, next);
                next += 1;
            }
            Err(e) => panic!("after {next} items: {e:?}"),
        }
    }
    assert!(parked.wait_timeout(DEADLINE).is_ok());
    victim.signal(libc::SIGKILL);
    assert_eq!(victim.join(), -libc::SIGKILL);
    assert_eq!(
        rx.pop_timeout(Duration::from_millis(50)),
        Err(multiproc::GetTimeoutError::Timeout)
    );
    assert!(rx.is_empty());
}

/// Offset of slot 0's stamp in a `Queue<u64>` placed at offset 0 of a
/// named segment (the 64-byte header, then the ring's four state lines);
/// slot `i`'s is `16 * i` further (stamp, then value).
const SLOT0_STAMP: usize = 64 + 256;
/// Slots of the queues the `inside_*` tests use.
const INSIDE_CAP: usize = 8;

/// Whether `word` is a claim (bit 63) by the single-threaded process `pid`
/// (TID bits 53..32), made by a consumer (bit 62 set) if `reading`.
fn is_claim_by(word: u64, pid: libc::pid_t, reading: bool) -> bool {
    word >> 63 == 1
        && (word >> 32) & ((1 << 22) - 1) == pid as u64
        && (word >> 62) & 1 == u64::from(reading)
}

/// Whether `/proc` says `pid` is stopped.
fn is_stopped(pid: libc::pid_t) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
}

/// The offsets of the stamps of the `Queue<u64>`s of the `inside_*` tests.
fn queue_stamps() -> Vec<usize> {
    (0..INSIDE_CAP).map(|i| SLOT0_STAMP + 16 * i).collect()
}

/// Lets `victim` run for short random spells, stopping it after each,
/// until one of the words at `stamps` shows its claim of the wanted kind;
/// then kills it while it is stopped there and reaps it. Returns how many
/// stops it took.
fn kill_inside_claim(victim: Child, peer: &Peer, stamps: &[usize], reading: bool) -> u32 {
    let pid = victim.pid();
    let end = Instant::now() + DEADLINE;
    let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ u64::from(pid.unsigned_abs());
    for stops in 1.. {
        assert!(
            Instant::now() < end,
            "never caught the victim inside a claim"
        );
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let spell = Instant::now() + Duration::from_micros(rng % 200);
        while Instant::now() < spell {
            std::hint::spin_loop();
        }
        victim.signal(libc::SIGSTOP);
        while !is_stopped(pid) {
            assert!(Instant::now() < end, "the victim never stopped");
            std::thread::yield_now();
        }
        if stamps
            .iter()
            .any(|&at| is_claim_by(peer.read_u64(at), pid, reading))
        {
            victim.signal(libc::SIGKILL);
            assert_eq!(victim.join(), -libc::SIGKILL);
            return stops;
        }
        victim.signal(libc::SIGCONT);
    }
    unreachable!()
}

/// A producer killed inside a put, after claiming its slot and before
/// publishing it: the consumer (spinning or asleep in `get` at that moment)
/// skips the dead claim and goes on. Nothing is counted lost (the put never
/// returned), and the consumer got exactly the items whose puts returned.
#[test]
fn inside_put_killed_producer_is_skipped() {
    const MARK: u64 = u64::MAX;
    let name = ShmName::new("inside-put");
    let shm = SharedMemory::create(&name.0, 4096).unwrap();
    let q = Queue::<u64>::create_at(&shm, 0, INSIDE_CAP).unwrap();
    let peer = Peer::open(&shm);
    let published = AtomicValue::new(0u64).unwrap();
    let got = AtomicValue::new(0u64).unwrap();

    let victim = fork(|| {
        for i in 1.. {
            if q.put_timeout(i, DEADLINE).is_err() {
                return 1;
            }
            published.store(i, SeqCst);
        }
        0
    });
    let consumer = fork(|| {
        let mut last = 0;
        loop {
            match q.get_timeout(DEADLINE) {
                Ok(MARK) => return 0,
                // Items arrive in order, none twice, none skipped.
                Ok(v) if v == last + 1 => {
                    last = v;
                    got.store(v, SeqCst);
                }
                Ok(_) => return 1,
                Err(_) => return 2,
            }
        }
    });
    let stops = kill_inside_claim(victim, &peer, &queue_stamps(), false);
    q.put_timeout(MARK, DEADLINE).unwrap();
    assert_eq!(
        consumer.join(),
        0,
        "the consumer failed (code 1: order, 2: timed out)"
    );
    // The claimed item was never published; all the others were got.
    assert_eq!(got.load(SeqCst), published.load(SeqCst));
    assert_eq!(q.lost(), 0);
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
    eprintln!(
        "inside_put: victim killed inside put #{} after {stops} stops",
        published.load(SeqCst) + 1
    );
}

/// A victim consumer: takes `1, 2, ...` with `take`, recording the last in
/// `taken`; returns 1 on anything else (out of order, an error).
fn take_in_order(taken: &AtomicValue<u64>, mut take: impl FnMut() -> Option<u64>) -> i32 {
    let mut last = 0;
    loop {
        match take() {
            Some(v) if v == last + 1 => {
                last = v;
                taken.store(v, SeqCst);
            }
            _ => return 1,
        }
    }
}

/// A consumer killed inside a get, after claiming its slot and before
/// freeing it: the producer (blocked on the full ring at that moment)
/// frees the slot, counts the item as lost, and goes on. The next consumer
/// gets the items after the lost one, in order.
#[test]
fn inside_get_killed_consumer_is_freed_and_counted() {
    let name = ShmName::new("inside-get");
    let shm = SharedMemory::create(&name.0, 4096).unwrap();
    let q = Queue::<u64>::create_at(&shm, 0, INSIDE_CAP).unwrap();
    let peer = Peer::open(&shm);
    let taken = AtomicValue::new(0u64).unwrap();

    let producer = fork(|| {
        for i in 1.. {
            match q.put_timeout(i, DEADLINE) {
                Ok(()) => {}
                Err(multiproc::PutTimeoutError::Closed(_)) => return 0,
                Err(multiproc::PutTimeoutError::Timeout(_)) => return 2,
            }
        }
        0
    });
    let victim = fork(|| take_in_order(&taken, || q.get_timeout(DEADLINE).ok()));
    let stops = kill_inside_claim(victim, &peer, &queue_stamps(), true);
    // The victim died holding item `last + 1`: the producer frees its slot
    // and goes on with `last + 2`.
    let last = taken.load(SeqCst);
    for want in last + 2..last + 200 {
        assert_eq!(q.get_timeout(DEADLINE), Ok(want));
    }
    assert_eq!(q.lost(), 1);
    q.close();
    while q.try_get().is_ok() {}
    assert_eq!(
        producer.join(),
        0,
        "the producer failed (code 2: timed out)"
    );
    eprintln!(
        "inside_get: victim killed inside get #{} after {stops} stops",
        last + 1
    );
}

/// A receiver of a `Pipe` end killed inside a `recv`, with a second
/// receiver on the same end: the sender frees the dead receiver's slot,
/// the end's `lost()` counts the message, and the survivor gets the rest in
/// order. The test finds the claim by scanning every word of the pipe (a
/// claim by the victim's TID cannot be mistaken for a small message or
/// index).
#[test]
fn pipe_receiver_killed_inside_recv_is_counted() {
    let name = ShmName::new("inside-recv");
    let opts = Pipe::new().capacity(INSIDE_CAP).max_message_size(48);
    let size = opts.shared_size::<u64>();
    let shm = SharedMemory::create(&name.0, size).unwrap();
    let (a, b) = opts.create_at::<u64>(&shm, 0).unwrap();
    let peer = Peer::open(&shm);
    let taken = AtomicValue::new(0u64).unwrap();

    let sender = fork(|| {
        for i in 1.. {
            match a.send_timeout(i, DEADLINE) {
                Ok(()) => {}
                Err(SendError::Closed(_)) => return 0,
                Err(_) => return 2,
            }
        }
        0
    });
    let victim = fork(|| take_in_order(&taken, || b.recv_timeout(DEADLINE).ok()));
    let words: Vec<usize> = (0..size / 8).map(|i| i * 8).collect();
    let stops = kill_inside_claim(victim, &peer, &words, true);
    let last = taken.load(SeqCst);
    // Another process opens the same end and receives on.
    let (_, b2) = Pipe::open_at::<u64>(&shm, 0).unwrap();
    for want in last + 2..last + 200 {
        assert_eq!(b2.recv_timeout(DEADLINE), Ok(want));
    }
    assert_eq!(b.lost(), 1);
    assert_eq!(b2.lost(), 1);
    assert_eq!(a.lost(), 0, "nothing was lost from end 1 to end 0");
    b.close();
    while b2.try_recv().is_ok() {}
    assert_eq!(sender.join(), 0, "the sender failed (code 2: timed out)");
    eprintln!(
        "inside_recv: victim killed inside recv #{} after {stops} stops",
        last + 1
    );
}
