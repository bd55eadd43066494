//! A `Pipe` whose other end is held by no live process: `recv` drains what
//! was sent, then reports `Closed` (Python's `EOFError`), and a `send` that
//! would wait for room reports `Closed` too, for a peer that was a forked
//! child, a spawned child or an unrelated process that opened the end by
//! name. A peer that lives, idle, is never taken for gone, not even right
//! after a fork whose parent dropped its copy of the end.
//!
//! Spawned children re-run this test binary with only `spawn_child`
//! selected; the unrelated process re-runs it with only
//! `open_at_peer_role` selected (an `#[ignore]`d child half).

mod common;

use std::time::{Duration, Instant};

use common::entries::{BOTH, finish, process};
use common::{DEADLINE, ShmName, fork, role_data};
use multiproc::{Connection, Entry, EntryPoint, Pipe, RecvError, SendError, SharedMemory, pipe};
use serde::{Deserialize, Serialize};

const ENTRIES: &[EntryPoint] = &[EntryPoint::of::<HoldEnd>(), EntryPoint::of::<SendLate>()];

/// The spawned children's `main`.
#[test]
#[ignore = "child half of the spawn tests: run by ForTest::for_test"]
fn spawn_child() {
    multiproc::init(ENTRIES);
}

/// Sends 1 on its end, then sleeps (until the test kills it).
#[derive(Serialize, Deserialize)]
struct HoldEnd {
    conn: Connection<u32>,
}

impl Entry for HoldEnd {
    type Output = ();
    fn run(self) {
        self.conn.send(1).unwrap();
        std::thread::sleep(DEADLINE);
    }
}

/// Sleeps a while, then sends 9 on its end, and exits.
#[derive(Serialize, Deserialize)]
struct SendLate {
    conn: Connection<u32>,
}

impl Entry for SendLate {
    type Output = ();
    fn run(self) {
        std::thread::sleep(Duration::from_millis(300));
        self.conn.send(9).unwrap();
    }
}

/// Receives on `a` until it reports `Closed`, within the deadline; returns
/// how long that took from `since`.
fn recv_until_closed(a: &Connection<u32>, since: Instant) -> Duration {
    loop {
        match a.recv_timeout(DEADLINE) {
            Err(RecvError::Closed) => return since.elapsed(),
            Ok(_) => {}
            other => panic!("recv after the peer died: {other:?}"),
        }
    }
}

/// A forked child holds end 1 (the parent's copy went with the closure),
/// sends, and is killed: the parent's `recv` gets the message, then
/// `Closed`; the pipe now reads as closed.
#[test]
fn recv_from_a_killed_forked_peer_is_closed() {
    let (a, b) = pipe::<u32>().unwrap();
    let mut child = fork(move || {
        b.send(1).unwrap();
        b.send(2).unwrap();
        std::thread::sleep(DEADLINE);
        0
    });
    assert_eq!(a.recv_timeout(DEADLINE), Ok(1));
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait_timeout(DEADLINE), Some(-libc::SIGKILL));
    let t0 = Instant::now();
    assert_eq!(a.recv_timeout(DEADLINE), Ok(2), "what was sent is drained");
    let took = recv_until_closed(&a, t0);
    assert!(a.is_closed());
    assert!(matches!(a.send(3), Err(SendError::Closed(3))));
    eprintln!("forked peer: EOF {took:?} after its death");
}

/// A forked child holds end 1 and never receives; once it is killed, a
/// `send` that waits for room on the full direction reports `Closed` with
/// its value.
#[test]
fn send_to_a_killed_peer_fails_once_full() {
    let (a, b) = Pipe::new().capacity(2).create::<u32>().unwrap();
    let mut child = fork(move || {
        b.send(7).unwrap();
        std::thread::sleep(DEADLINE);
        0
    });
    assert_eq!(a.recv_timeout(DEADLINE), Ok(7));
    a.send(1).unwrap();
    a.send(2).unwrap();
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait_timeout(DEADLINE), Some(-libc::SIGKILL));
    let t0 = Instant::now();
    match a.send_timeout(3, DEADLINE) {
        Err(SendError::Closed(3)) => {}
        other => panic!("send to a dead peer: {other:?}"),
    }
    eprintln!("send to a dead peer: Closed after {:?}", t0.elapsed());
}

/// The parent drops its copy of end 1 right after the fork and receives at
/// once: the child, which holds end 1 from the fork on (it recorded itself
/// before its `fork` returned) but sends only after a while, is not taken
/// for gone; nor is a live peer that sends nothing for a while.
#[test]
fn a_live_idle_peer_is_not_gone() {
    let (a, b) = pipe::<u32>().unwrap();
    let child = fork(move || {
        std::thread::sleep(Duration::from_millis(400));
        b.send(5).unwrap();
        // Idle, alive, holding the end.
        std::thread::sleep(Duration::from_millis(600));
        0
    });
    // The closure (and the parent's copy of `b` in it) is gone.
    assert_eq!(a.recv_timeout(DEADLINE), Ok(5));
    assert_eq!(
        a.recv_timeout(Duration::from_millis(300)),
        Err(RecvError::Timeout)
    );
    assert!(!a.is_closed());
    assert_eq!(child.join(), 0);
    // The child exited: its end is held by nobody now.
    let t0 = Instant::now();
    let took = recv_until_closed(&a, t0);
    eprintln!("exited peer: EOF after {took:?}");
}

/// While this process still holds a copy of the other end, the other end
/// is not gone, whoever else died: as with Python's pipes, the end a
/// process does not use must be dropped for the peer to see end-of-file.
#[test]
fn a_copy_held_here_keeps_the_end_alive() {
    let (a, b) = pipe::<u32>().unwrap();
    let b_here = b.clone();
    let mut child = fork(move || {
        b.send(1).unwrap();
        std::thread::sleep(DEADLINE);
        0
    });
    assert_eq!(a.recv_timeout(DEADLINE), Ok(1));
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait_timeout(DEADLINE), Some(-libc::SIGKILL));
    assert_eq!(
        a.recv_timeout(Duration::from_millis(500)),
        Err(RecvError::Timeout)
    );
    drop(b_here);
    recv_until_closed(&a, Instant::now());
}

/// A child started by `Process` under both start methods holds end 1 (a
/// spawned child attaches it from its descriptor) and is killed: `recv`
/// reports `Closed`.
#[test]
fn recv_from_a_killed_process_under_both_methods() {
    for method in BOTH {
        let (a, b) = pipe::<u32>().unwrap();
        let mut p = process(method, HoldEnd { conn: b });
        p.start().unwrap();
        assert_eq!(a.recv_timeout(DEADLINE), Ok(1), "{method:?}");
        p.kill().unwrap();
        assert_ne!(finish(&p), 0);
        let took = recv_until_closed(&a, Instant::now());
        eprintln!("{method:?} peer: EOF {took:?} after its death");
    }
}

/// A peer started by `Process` under either method, that sends only after
/// a while: this process gave its copy of the end away with the entry and
/// receives at once, and is not told `Closed` meanwhile (the child holds
/// the end once `start` returns: a spawned child reports it started only
/// after decoding its arguments); once the child exited, it is.
#[test]
fn a_slow_process_peer_is_not_gone() {
    for method in BOTH {
        let (a, b) = pipe::<u32>().unwrap();
        let mut p = process(method, SendLate { conn: b });
        p.start().unwrap();
        assert_eq!(a.recv_timeout(DEADLINE), Ok(9), "{method:?}");
        assert_eq!(finish(&p), 0, "{method:?}");
        recv_until_closed(&a, Instant::now());
    }
}

/// One call on end 0; whether it reported the pipe closed.
type SawClosed = fn(&Connection<u32>) -> bool;

/// The calls that do not wait, or wait less than a slice, see the end of a
/// dead peer too: `try_recv` in a loop, `recv_timeout` of 2 ms in a loop,
/// `poll(ZERO)` (true, then `recv` is `Closed`), and `try_send` into a
/// full direction.
#[test]
fn short_and_non_blocking_calls_see_a_dead_peer() {
    let kinds: [(&str, SawClosed); 4] = [
        ("try_recv", |a| match a.try_recv() {
            Err(RecvError::Empty) => false,
            Err(RecvError::Closed) => true,
            other => panic!("try_recv: {other:?}"),
        }),
        ("recv_timeout", |a| {
            match a.recv_timeout(Duration::from_millis(2)) {
                Err(RecvError::Timeout) => false,
                Err(RecvError::Closed) => true,
                other => panic!("recv_timeout: {other:?}"),
            }
        }),
        ("poll", |a| {
            if !a.poll(Duration::ZERO) {
                return false;
            }
            assert_eq!(a.recv(), Err(RecvError::Closed));
            true
        }),
        ("try_send", |a| match a.try_send(4) {
            Err(SendError::Full(4)) => false,
            Err(SendError::Closed(4)) => true,
            other => panic!("try_send: {other:?}"),
        }),
    ];
    for (what, closed) in kinds {
        let (a, b) = Pipe::new().capacity(2).create::<u32>().unwrap();
        let mut child = fork(move || {
            b.send(1).unwrap();
            std::thread::sleep(DEADLINE);
            0
        });
        assert_eq!(a.recv_timeout(DEADLINE), Ok(1));
        a.send(1).unwrap();
        a.send(2).unwrap();
        child.signal(libc::SIGKILL);
        assert_eq!(child.wait_timeout(DEADLINE), Some(-libc::SIGKILL));
        let t0 = Instant::now();
        while !closed(&a) {
            assert!(t0.elapsed() < DEADLINE, "{what} never saw the dead peer");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(a.is_closed(), "{what}");
        eprintln!("{what}: the dead peer seen after {:?}", t0.elapsed());
    }
}

/// The unrelated process's half: opens end 1 of the pipe at offset 0 of the
/// named segment it is given, sends 1 and sleeps until killed.
#[test]
#[ignore = "child half of open_at_peer_dies: run by it"]
fn open_at_peer_role() {
    let Some(data) = role_data("open_at_peer_role") else {
        return;
    };
    let name = String::from_utf8(data).unwrap();
    let shm = SharedMemory::open(&name).unwrap();
    let (_, b) = Pipe::open_at::<u32>(&shm, 0).unwrap();
    b.send(1).unwrap();
    std::thread::sleep(DEADLINE);
}

/// An unrelated process opens end 1 by name (`Pipe::open_at`) and is
/// killed: `recv` on end 0 reports `Closed`.
#[test]
fn recv_from_a_killed_open_at_peer_is_closed() {
    let name = ShmName::new("pipe-eof");
    let opts = Pipe::new().capacity(4).max_message_size(48);
    let shm = SharedMemory::create(&name.0, opts.shared_size::<u32>()).unwrap();
    let (a, b) = opts.create_at::<u32>(&shm, 0).unwrap();
    drop(b);
    let exe = std::env::current_exe().unwrap();
    let mut peer = std::process::Command::new(exe)
        .args(multiproc::testing::child_test_args("open_at_peer_role"))
        .env(common::ROLE_VAR, "open_at_peer_role")
        .env(common::DATA_VAR, common::to_hex(name.0.as_bytes()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let got = a.recv_timeout(DEADLINE);
    peer.kill().unwrap();
    peer.wait().unwrap();
    assert_eq!(got, Ok(1));
    let took = recv_until_closed(&a, Instant::now());
    eprintln!("open_at peer: EOF {took:?} after its death");
}
