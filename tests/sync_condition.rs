//! `Condition` with `Mutex` across real processes.
#![cfg(not(loom))]

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::{fork, fork_all};
use multiproc::{AtomicValue, Condition, Mutex};

/// A bounded buffer of 8 slots: `[head, tail, slot0..slot7]`.
type Ring = [u64; 10];
const SLOTS: u64 = 8;

fn len(r: &Ring) -> u64 {
    r[1] - r[0]
}

/// One producer process and one consumer process through a bounded buffer
/// guarded by a `Mutex`, with `not_empty` / `not_full` conditions: every
/// item arrives once, in order.
#[test]
fn producer_consumer_across_processes() {
    const N: u64 = 20_000;
    let ring = Mutex::new([0u64; 10]).unwrap();
    let not_empty = Condition::new().unwrap();
    let not_full = Condition::new().unwrap();
    let sum = AtomicValue::new(0u64).unwrap();
    let consumer = fork(|| {
        let mut expect = 1;
        while expect <= N {
            let mut g = not_empty
                .wait_while(ring.lock().unwrap(), |r| len(r) == 0)
                .unwrap();
            let item = g[2 + (g[0] % SLOTS) as usize];
            g[0] += 1;
            drop(g);
            not_full.notify_one();
            if item != expect {
                return 1;
            }
            sum.fetch_add(item, SeqCst);
            expect += 1;
        }
        0
    });
    let producer = fork(|| {
        for item in 1..=N {
            let mut g = not_full
                .wait_while(ring.lock().unwrap(), |r| len(r) == SLOTS)
                .unwrap();
            let at = 2 + (g[1] % SLOTS) as usize;
            g[at] = item;
            g[1] += 1;
            drop(g);
            not_empty.notify_one();
        }
        0
    });
    assert_eq!(producer.join(), 0);
    assert_eq!(consumer.join(), 0, "items arrived out of order");
    assert_eq!(sum.load(SeqCst), N * (N + 1) / 2);
}

/// `notify_all` wakes waiters in three other processes.
#[test]
fn notify_all_wakes_three_processes() {
    let flag = Mutex::new(0u32).unwrap();
    let cond = Condition::new().unwrap();
    let waiting = AtomicValue::new(0u32).unwrap();
    let kids: Vec<_> = (0..3)
        .map(|_| {
            fork(|| {
                let g = flag.lock().unwrap();
                waiting.fetch_add(1, SeqCst);
                let g = cond.wait_while(g, |f| *f == 0).unwrap();
                i32::from(*g != 7)
            })
        })
        .collect();
    let end = Instant::now() + common::DEADLINE;
    while waiting.load(SeqCst) < 3 {
        assert!(Instant::now() < end);
        std::thread::sleep(Duration::from_millis(1));
    }
    // Wake them from a real futex sleep, not while they still spin.
    for k in &kids {
        k.wait_until_futex_sleep();
    }
    *flag.lock().unwrap() = 7;
    cond.notify_all();
    for k in kids {
        assert_eq!(k.join(), 0);
    }
}

/// Timed waits time out after at least the timeout; a notification ends
/// them early.
#[test]
fn wait_timeout() {
    let m = Mutex::new(0u32).unwrap();
    let cond = Condition::new().unwrap();
    let t = Instant::now();
    let (g, r) = cond
        .wait_timeout(m.lock().unwrap(), Duration::from_millis(50))
        .unwrap();
    assert!(r.timed_out());
    assert!(t.elapsed() >= Duration::from_millis(50));
    let (g, r) = cond
        .wait_timeout_while(g, Duration::from_millis(30), |v| *v == 0)
        .unwrap();
    assert!(r.timed_out());
    drop(g);
    let kid = fork(|| {
        std::thread::sleep(Duration::from_millis(20));
        *m.lock().unwrap() = 1;
        cond.notify_one();
        0
    });
    let (g, r) = cond
        .wait_timeout_while(m.lock().unwrap(), common::DEADLINE, |v| *v == 0)
        .unwrap();
    assert!(!r.timed_out());
    assert_eq!(*g, 1);
    drop(g);
    assert_eq!(kid.join(), 0);
}

/// Many processes waiting and notifying in turn: a token passed around a
/// ring of 4 processes for many rounds, each waiting for its turn.
#[test]
fn token_ring() {
    const P: u32 = 4;
    const ROUNDS: u32 = 500;
    let turn = Mutex::new(0u32).unwrap();
    let cond = Condition::new().unwrap();
    fork_all(P as usize, |me| {
        let me = me as u32;
        for round in 0..ROUNDS {
            let want = round * P + me;
            let mut g = match cond
                .wait_timeout_while(turn.lock().unwrap(), common::DEADLINE, |t| *t != want)
            {
                Ok((g, r)) if !r.timed_out() => g,
                _ => return 1,
            };
            *g += 1;
            drop(g);
            cond.notify_all();
        }
        0
    });
    assert_eq!(*turn.lock().unwrap(), P * ROUNDS);
}
