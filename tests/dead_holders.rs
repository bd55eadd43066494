//! Red-team loops for the dead-peer cases of issue 16 that are not queues'
//! consumers: a `Semaphore` guard holder, a `Barrier` party inside a round
//! that breaks, and an `spsc` producer, each SIGKILLed at a random moment;
//! the survivors must go on every time (a permit comes back, `reset`
//! heals, `pop` ends with `Closed`).
//!
//! The runs default to a few (a smoke test in `cargo test`);
//! `MULTIPROC_REDTEAM=300` runs the red-team count and prints the
//! figures.
#![cfg(not(loom))]

mod common;

use std::time::{Duration, Instant};

use common::{DEADLINE, fork, redteam_runs};
use multiproc::spsc::{self, GetTimeoutError};
use multiproc::{Barrier, Event, Semaphore};

/// A random delay below `max_us` microseconds (xorshift on the clock).
fn jitter(max_us: u64) -> Duration {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    Duration::from_micros(x % max_us)
}

/// A holder takes and gives back permits through guards in a loop and is
/// killed at a random moment (holding one or not): the parent's
/// `access_timeout` always gets a permit, and after the parent gives it
/// back the count is whole again.
#[test]
fn semaphore_guard_holders_killed_at_random() {
    let runs = redteam_runs(3);
    let (mut taken_over, t0) = (0, Instant::now());
    for run in 0..runs {
        let sem = Semaphore::new(1).unwrap();
        let started = Event::new().unwrap();
        let mut holder = fork(|| {
            started.set();
            loop {
                let permit = sem.access();
                std::hint::black_box(&permit);
                drop(permit);
            }
        });
        assert!(started.wait_timeout(DEADLINE).is_ok());
        std::thread::sleep(jitter(2_000));
        holder.signal(libc::SIGKILL);
        assert_eq!(holder.wait_timeout(DEADLINE), Some(-libc::SIGKILL));
        let permit = sem
            .access_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("run {run}: the permit never came back"));
        taken_over += u32::from(permit.from_dead_holder());
        drop(permit);
        assert_eq!(sem.value(), 1, "run {run}: the count is whole");
    }
    eprintln!(
        "semaphore guard holders killed at random: {runs} runs, all got a permit \
         ({taken_over} from the dead holder), {:?}",
        t0.elapsed()
    );
}

/// A party of a three-party barrier waits in a loop of rounds with the
/// parent and a second child, and is killed at a random moment; the
/// survivors' timed waits break the round; `reset` heals it and a new
/// round of three (with a fresh child) passes.
#[test]
fn barrier_parties_killed_at_random() {
    let runs = redteam_runs(3);
    let t0 = Instant::now();
    for run in 0..runs {
        let b = Barrier::new(3).unwrap();
        let party = || {
            fork(|| {
                loop {
                    if b.wait_timeout(DEADLINE).is_err() {
                        return 0;
                    }
                }
            })
        };
        let mut victim = party();
        let other = party();
        let end = Instant::now() + jitter(3_000);
        while Instant::now() < end {
            if b.wait_timeout(DEADLINE).is_err() {
                panic!("run {run}: a round broke before the kill");
            }
        }
        victim.signal(libc::SIGKILL);
        assert_eq!(victim.wait_timeout(DEADLINE), Some(-libc::SIGKILL));
        // The survivors: ours breaks the round (or finds it broken).
        if b.wait_timeout(Duration::from_millis(50)).is_ok() {
            // The victim had arrived: its arrival completed one more round.
            let again = b.wait_timeout(Duration::from_millis(50));
            assert!(again.is_err(), "run {run}: a round without the victim");
        }
        assert_eq!(other.join(), 0);
        b.reset();
        assert!(!b.is_broken(), "run {run}: reset healed it");
        let fresh: Vec<_> = (0..2)
            .map(|_| fork(|| i32::from(b.wait_timeout(DEADLINE).is_err())))
            .collect();
        assert!(b.wait_timeout(DEADLINE).is_ok(), "run {run}: a new round");
        for k in fresh {
            assert_eq!(k.join(), 0);
        }
    }
    eprintln!(
        "barrier parties killed at random: {runs} runs, all healed, {:?}",
        t0.elapsed()
    );
}

/// An spsc producer streams and is killed at a random moment: the consumer
/// gets an unbroken prefix of its items, then `Closed`.
#[test]
fn spsc_producers_killed_at_random() {
    let runs = redteam_runs(3);
    let t0 = Instant::now();
    for run in 0..runs {
        let (tx, mut rx) = spsc::channel::<u64>(16).unwrap();
        let mut producer = fork(move || {
            let mut tx = tx;
            for i in 0.. {
                if tx.push(i).is_err() {
                    return 1;
                }
            }
            0
        });
        std::thread::sleep(jitter(2_000));
        let mut next = 0;
        for _ in 0..100 {
            assert_eq!(rx.pop_timeout(DEADLINE), Ok(next), "run {run}");
            next += 1;
        }
        producer.signal(libc::SIGKILL);
        assert_eq!(producer.wait_timeout(DEADLINE), Some(-libc::SIGKILL));
        loop {
            match rx.pop_timeout(DEADLINE) {
                Ok(v) => {
                    assert_eq!(v, next, "run {run}: in order, none missing");
                    next += 1;
                }
                Err(GetTimeoutError::Closed) => break,
                Err(GetTimeoutError::Timeout) => panic!("run {run}: never closed"),
            }
        }
    }
    eprintln!(
        "spsc producers killed at random: {runs} runs, all ended Closed, {:?}",
        t0.elapsed()
    );
}
