//! An `spsc` channel whose other end is held by no live process: `pop`
//! drains what was pushed, then reports `Closed`, and a `push` that would
//! wait for room reports `Closed` too, for a peer that was a forked child
//! or an unrelated process that opened the end by name. A peer that
//! lives, idle, is never taken for gone, nor is an end this process still
//! holds a copy of.
//!
//! The unrelated process re-runs this test binary with only
//! `open_at_producer_role` selected (an `#[ignore]`d child half).
#![cfg(not(loom))]

mod common;

use std::time::{Duration, Instant};

use common::{DEADLINE, ShmName, fork, role_data};
use multiproc::spsc::{self, Consumer, GetTimeoutError, PutTimeoutError, TryGetError, TryPutError};
use multiproc::{SharedMemory, SharedObject};

/// Pops until `Closed`, within the deadline; returns the values popped.
fn pop_until_closed(rx: &mut Consumer<u32>) -> Vec<u32> {
    let mut got = Vec::new();
    loop {
        match rx.pop_timeout(DEADLINE) {
            Ok(v) => got.push(v),
            Err(GetTimeoutError::Closed) => return got,
            Err(GetTimeoutError::Timeout) => panic!("pop after the producer died timed out"),
        }
    }
}

/// A forked child holds the producer (the parent's copy went with the
/// closure), pushes, and is killed: the parent pops what was pushed, then
/// `Closed`; the channel now reads as closed. `pop` (no timeout) ends too.
#[test]
fn pop_from_a_killed_forked_producer_is_closed() {
    let (tx, mut rx) = spsc::channel::<u32>(8).unwrap();
    let mut child = fork(move || {
        let mut tx = tx;
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        std::thread::sleep(DEADLINE);
        0
    });
    assert_eq!(rx.pop_timeout(DEADLINE), Ok(1));
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait_timeout(DEADLINE), Some(-libc::SIGKILL));
    let t0 = Instant::now();
    assert_eq!(pop_until_closed(&mut rx), [2]);
    assert!(rx.is_closed());
    assert!(rx.pop().is_err(), "a plain pop returns Closed");
    eprintln!("forked producer: Closed {:?} after its death", t0.elapsed());
}

/// A plain `pop` that is already asleep when the producer dies returns
/// `Closed` (run in a child, so that a bug fails the test by its deadline
/// instead of hanging it).
#[test]
fn a_sleeping_pop_ends_when_the_producer_dies() {
    let (tx, rx) = spsc::channel::<u32>(8).unwrap();
    let mut producer = fork(move || {
        let _tx = tx;
        std::thread::sleep(DEADLINE);
        0
    });
    let consumer = fork(move || {
        let mut rx = rx;
        i32::from(rx.pop().is_ok())
    });
    consumer.wait_until_futex_sleep();
    producer.signal(libc::SIGKILL);
    assert_eq!(producer.wait_timeout(DEADLINE), Some(-libc::SIGKILL));
    assert_eq!(consumer.join(), 0, "pop returned Closed");
}

/// A forked child holds the consumer and never pops; once it is killed, a
/// `push` that waits for room reports `Closed` with its value.
#[test]
fn push_to_a_killed_consumer_fails_once_full() {
    let (mut tx, rx) = spsc::channel::<u32>(2).unwrap();
    let mut child = fork(move || {
        let _rx = rx;
        std::thread::sleep(DEADLINE);
        0
    });
    tx.push(1).unwrap();
    tx.push(2).unwrap();
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait_timeout(DEADLINE), Some(-libc::SIGKILL));
    let t0 = Instant::now();
    assert_eq!(
        tx.push_timeout(3, DEADLINE),
        Err(PutTimeoutError::Closed(3))
    );
    assert!(tx.push(4).is_err(), "a plain push fails too");
    eprintln!("push to a dead consumer: Closed after {:?}", t0.elapsed());
}

/// `try_pop` and `try_push` in a loop (no waiting at all) see a dead peer
/// too.
#[test]
fn non_blocking_calls_see_a_dead_peer() {
    let (tx, mut rx) = spsc::channel::<u32>(2).unwrap();
    let mut child = fork(move || {
        let _tx = tx;
        std::thread::sleep(DEADLINE);
        0
    });
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait_timeout(DEADLINE), Some(-libc::SIGKILL));
    let t0 = Instant::now();
    loop {
        match rx.try_pop() {
            Err(TryGetError::Empty) => {}
            Err(TryGetError::Closed) => break,
            other => panic!("try_pop: {other:?}"),
        }
        assert!(
            t0.elapsed() < DEADLINE,
            "try_pop never saw the dead producer"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!("try_pop: the dead producer seen after {:?}", t0.elapsed());

    let (mut tx, rx) = spsc::channel::<u32>(1).unwrap();
    let mut child = fork(move || {
        let _rx = rx;
        std::thread::sleep(DEADLINE);
        0
    });
    tx.push(1).unwrap();
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait_timeout(DEADLINE), Some(-libc::SIGKILL));
    let t0 = Instant::now();
    loop {
        match tx.try_push(2) {
            Err(TryPutError::Full(2)) => {}
            Err(TryPutError::Closed(2)) => break,
            other => panic!("try_push: {other:?}"),
        }
        assert!(
            t0.elapsed() < DEADLINE,
            "try_push never saw the dead consumer"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!("try_push: the dead consumer seen after {:?}", t0.elapsed());
}

/// A live producer that pushes nothing for a while is not gone, not even
/// right after the fork whose parent dropped its copy; once it exits, the
/// consumer sees `Closed`.
#[test]
fn a_live_idle_producer_is_not_gone() {
    let (tx, mut rx) = spsc::channel::<u32>(8).unwrap();
    let child = fork(move || {
        let mut tx = tx;
        std::thread::sleep(Duration::from_millis(400));
        tx.push(5).unwrap();
        std::thread::sleep(Duration::from_millis(600));
        0
    });
    assert_eq!(rx.pop_timeout(DEADLINE), Ok(5));
    assert_eq!(
        rx.pop_timeout(Duration::from_millis(300)),
        Err(GetTimeoutError::Timeout)
    );
    assert!(!rx.is_closed());
    assert_eq!(child.join(), 0);
    assert!(pop_until_closed(&mut rx).is_empty());
}

/// While this process holds the producer (the forked child had a copy),
/// the producer end is not gone when the child dies: the end a process does
/// not use must be dropped for the peer to see the end.
#[test]
fn an_end_held_here_is_not_gone() {
    let (tx, mut rx) = spsc::channel::<u32>(8).unwrap();
    let mut child = fork(|| {
        std::thread::sleep(DEADLINE);
        0
    });
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait_timeout(DEADLINE), Some(-libc::SIGKILL));
    assert_eq!(
        rx.pop_timeout(Duration::from_millis(400)),
        Err(GetTimeoutError::Timeout)
    );
    drop(tx);
    assert!(pop_until_closed(&mut rx).is_empty());
}

/// The unrelated process's half: opens the producer of the channel at
/// offset 0 of the named segment it is given, pushes 1 and sleeps until
/// killed.
#[test]
#[ignore = "child half of pop_from_a_killed_open_at_producer_is_closed: run by it"]
fn open_at_producer_role() {
    let Some(data) = role_data("open_at_producer_role") else {
        return;
    };
    let name = String::from_utf8(data).unwrap();
    let shm = SharedMemory::open(&name).unwrap();
    let mut tx = spsc::Producer::<u32>::open_at(&shm, 0).unwrap();
    tx.push(1).unwrap();
    std::thread::sleep(DEADLINE);
}

/// An unrelated process opens the producer by name and is killed: `pop`
/// reports `Closed` after the value it pushed.
#[test]
fn pop_from_a_killed_open_at_producer_is_closed() {
    let name = ShmName::new("spsc-eof");
    let shm = SharedMemory::create(&name.0, spsc::shared_size::<u32>(4)).unwrap();
    let (tx, mut rx) = spsc::channel_at::<u32>(&shm, 0, 4).unwrap();
    drop(tx);
    let exe = std::env::current_exe().unwrap();
    let mut peer = std::process::Command::new(exe)
        .args(multiproc::testing::child_test_args("open_at_producer_role"))
        .env(common::ROLE_VAR, "open_at_producer_role")
        .env(common::DATA_VAR, common::to_hex(name.0.as_bytes()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let got = rx.pop_timeout(DEADLINE);
    peer.kill().unwrap();
    peer.wait().unwrap();
    assert_eq!(got, Ok(1));
    let t0 = Instant::now();
    assert!(pop_until_closed(&mut rx).is_empty());
    eprintln!(
        "open_at producer: Closed {:?} after its death",
        t0.elapsed()
    );
}
