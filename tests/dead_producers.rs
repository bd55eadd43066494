//! Producers of a `JoinableQueue` SIGKILLed at random moments (most often
//! while blocked in `put` on a full queue, sometimes in the middle of one):
//! once the survivors' tasks and whatever the victim managed to put are
//! done, `join` must return `Ok` (the victim's unfinished put counted
//! nothing), never hang, never report a loss.
//!
//! The runs default to a few (a smoke test in `cargo test`);
//! `MULTIPROC_REDTEAM=300` runs the red-team count and prints the
//! figures.
#![cfg(not(loom))]

mod common;

use std::time::{Duration, Instant};

use common::{DEADLINE, fork, redteam_runs};
use multiproc::{JoinableQueue, RecvError};

/// Items each producer puts.
const ITEMS: u64 = 2_000;

#[test]
fn joinable_producers_killed_at_random() {
    let runs = redteam_runs(3);
    let mut seed = Instant::now().elapsed().as_nanos() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
        | 1;
    let mut below = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let (mut bad, mut killed_early) = (0, 0);
    for run in 0..runs {
        let q = JoinableQueue::<u64>::new(4, 16).unwrap();
        let producer = |p: u64| {
            let q = q.clone();
            fork(move || {
                for i in 0..ITEMS {
                    if q.put_timeout((p << 32) | i, DEADLINE).is_err() {
                        return 1;
                    }
                }
                0
            })
        };
        let mut victim = producer(0);
        let survivor = producer(1);
        // Consume slowly at first (so the producers block in `put`), and
        // kill the victim at a random moment.
        let kill_after = below(400) as usize;
        let mut got = 0u64;
        let mut victim_code = None;
        loop {
            match q.get_timeout(Duration::from_millis(300)) {
                Ok(_) => {
                    got += 1;
                    q.task_done().unwrap();
                }
                Err(RecvError::Timeout) => break,
                Err(e) => panic!("get: {e:?}"),
            }
            if got as usize == kill_after {
                victim.signal(libc::SIGKILL);
                victim_code = victim.wait_timeout(DEADLINE);
            }
            if got.is_multiple_of(64) {
                std::thread::yield_now();
            }
        }
        if victim_code.is_none() {
            victim.signal(libc::SIGKILL);
            victim_code = victim.wait_timeout(DEADLINE);
        }
        if victim_code != Some(-libc::SIGKILL) {
            // It finished all its puts before the kill came.
            killed_early += 1;
        }
        assert_eq!(survivor.join(), 0, "the surviving producer failed");
        // Drain what is left (the survivor is done).
        while q.try_get().is_ok() {
            q.task_done().unwrap();
        }
        let joined = q.join_timeout(DEADLINE);
        if joined.is_err() || q.unfinished_tasks() != 0 {
            bad += 1;
            eprintln!(
                "run {run}: join {joined:?}, unfinished {}, lost {}",
                q.unfinished_tasks(),
                q.lost_tasks()
            );
        }
    }
    eprintln!(
        "joinable producers killed at random: {runs} runs, {bad} with join not Ok \
         ({killed_early} victims had finished before the kill)"
    );
    assert_eq!(bad, 0);
}
