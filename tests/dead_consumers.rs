//! Consumers SIGKILLed at random moments while items stream through every
//! MPMC queue kind: what a dying consumer took must be counted by `lost()`,
//! except in the few instructions between a get returning and its caller
//! recording the item.
//!
//! Each run: a producer puts items `1..=items`, a victim consumer gets them
//! and marks each in shared memory right after its get returns (raising a
//! shared flag first, lowering it after the marks), and the test kills the
//! victim at a random moment, then drains the rest itself and puts one lap
//! of filler items (so that a producer reaches, and frees, a slot the
//! victim died holding). An item neither marked nor drained is missing;
//! `missing - lost()` items vanished uncounted. A run whose victim died
//! with the flag raised is set apart: its get had returned (an unoptimised
//! build spends long enough there to be hit in a few runs of 20).
//!
//! The runs per kind default to a few (a smoke test in `cargo test`);
//! `MULTIPROC_REDTEAM=300` runs the red-team count and prints the
//! figures.
#![cfg(not(loom))]

mod common;

use std::sync::OnceLock;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::{DEADLINE, fork, redteam_runs};
use multiproc::{AtomicValue, JoinableQueue, MessageQueue, Pipe, Queue, RawArray};
use serde::{Deserialize, Deserializer, Serialize};

/// Items each run streams (of the small kinds).
const ITEMS: u64 = 20_000;
/// Slots of every queue: small, so the producer blocks and the ring wraps.
const CAP: usize = 8;
/// Items per call of the batch kind (`put_slice` / `get_into`).
const BATCH: u64 = 16;
/// Longest wait for one item in the drain.
const DRAIN_WAIT: Duration = Duration::from_millis(200);

/// A small xorshift, seeded from the clock and the kind.
struct Rng(u64);

impl Rng {
    fn new(salt: u64) -> Rng {
        let t = Instant::now().elapsed().as_nanos() as u64
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
        Rng((t ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One queue kind, through plain functions (they survive `fork`).
struct Kind<Q> {
    name: &'static str,
    /// Items each run streams.
    items: u64,
    make: fn() -> Q,
    /// Puts items `from..=to`, blocking (with a deadline); `false` on
    /// failure.
    put: fn(&Q, u64, u64) -> bool,
    /// Gets one item or more into the vector, waiting at most the given
    /// time; `false` on timeout or close.
    /// `returned` is called as soon as the queue's call returned items.
    get: fn(&Q, Duration, &mut Vec<u64>, &dyn Fn()) -> bool,
    lost: fn(&Q) -> u64,
}

/// Totals over the runs of one kind.
#[derive(Debug, Default)]
struct Tally {
    runs: u32,
    /// Runs whose victim was killed while the producer still had items to
    /// put.
    kills: u32,
    missing: u64,
    lost: u64,
    /// Runs with an item missing that `lost()` did not count, whose victim
    /// died inside a get.
    uncounted_runs: u32,
    /// Runs with an item missing that `lost()` did not count, whose victim
    /// died after its get returned and before it marked the items (not
    /// the queue's to count).
    window_runs: u32,
}

fn consumer_kills<Q: Clone>(kind: &Kind<Q>, runs: u32) -> Tally {
    let items = kind.items;
    let mut rng = Rng::new(kind.name.len() as u64);
    let mut t = Tally::default();
    for _ in 0..runs {
        let q = (kind.make)();
        let marked = RawArray::<u8>::new(items as usize + 1).unwrap();
        let put_count = AtomicValue::new(0u64).unwrap();
        let producer = {
            let (q, put_count, put) = (q.clone(), put_count.clone(), kind.put);
            fork(move || {
                let mut next = 1;
                while next <= items {
                    let to = (next + BATCH - 1).min(items);
                    if !put(&q, next, to) {
                        return 2;
                    }
                    put_count.store(to, SeqCst);
                    next = to + 1;
                }
                0
            })
        };
        // 1 while the victim has items its get returned and it has not
        // marked yet.
        let unmarked = AtomicValue::new(0u32).unwrap();
        let mut victim = {
            let (q, marked, get) = (q.clone(), marked.clone(), kind.get);
            let unmarked = unmarked.clone();
            fork(move || {
                let mut got = Vec::new();
                let returned = || unmarked.store(1, SeqCst);
                while get(&q, DEADLINE, &mut got, &returned) {
                    for v in got.drain(..) {
                        marked.set(v as usize, 1).unwrap();
                    }
                    unmarked.store(0, SeqCst);
                }
                0
            })
        };
        // Kill somewhere in the stream (its first 10 milliseconds).
        std::thread::sleep(Duration::from_micros(rng.below(10_000)));
        let in_stream = put_count.load(SeqCst) < items;
        victim.signal(libc::SIGKILL);
        assert_eq!(victim.wait_timeout(DEADLINE), Some(-libc::SIGKILL));
        // Drain what is left.
        let mut drained = vec![false; items as usize + 1];
        let end = Instant::now() + DEADLINE;
        let mut got = Vec::new();
        loop {
            if (kind.get)(&q, DRAIN_WAIT, &mut got, &|| {}) {
                for v in got.drain(..) {
                    drained[v as usize] = true;
                }
            } else if put_count.load(SeqCst) == items {
                break;
            } else {
                assert!(Instant::now() < end, "{}: the drain stalled", kind.name);
            }
        }
        assert_eq!(producer.join(), 0, "{}: the producer failed", kind.name);
        // One lap more of filler (item 0): a put reaches every slot, so a
        // slot the victim died holding is freed and counted.
        for _ in 0..2 * CAP {
            assert!((kind.put)(&q, 0, 0));
            assert!((kind.get)(&q, DEADLINE, &mut got, &|| {}));
            assert_eq!(std::mem::take(&mut got), [0]);
        }
        let missing = (1..=items as usize)
            .filter(|&i| marked.get(i) == Some(0) && !drained[i])
            .count() as u64;
        let lost = (kind.lost)(&q);
        assert!(
            lost <= missing,
            "{}: lost() {lost} but only {missing} missing",
            kind.name
        );
        t.runs += 1;
        t.kills += u32::from(in_stream);
        t.missing += missing;
        t.lost += lost;
        // Items the victim's get returned and it died before marking are
        // nobody's to count.
        let in_window = unmarked.load(SeqCst) == 1;
        t.window_runs += u32::from(missing > lost && in_window);
        t.uncounted_runs += u32::from(missing > lost && !in_window);
    }
    eprintln!("{}: {t:?}", kind.name);
    t
}

/// Asserts what the red-team count promises: uncounted losses in under
/// 1 % of the runs, and, for a smoke run, at most two. What is left of
/// the window after a get released its slot (the return through its
/// frames and the wake of a producer waiting for the release, before the
/// victim's flag goes up) is hit now and then: in unoptimised builds 2
/// runs of 360 (`MULTIPROC_REDTEAM=60 cargo test --test dead_consumers`),
/// in release builds 4 of 1,800 (`MULTIPROC_REDTEAM=300 cargo test
/// --release --test dead_consumers`, 3 of them with 200 KB messages, on a
/// machine busy with another test run; beside a second such run, 1 of
/// 300 there).
fn check(name: &str, t: &Tally) {
    let allowed = (t.runs / 100).max(2);
    assert!(
        t.uncounted_runs <= allowed,
        "{name}: {} of {} runs lost an item uncounted ({t:?})",
        t.uncounted_runs,
        t.runs
    );
}

/// A message that carries its item number in a string.
fn text(i: u64) -> String {
    format!("item {i:010} of the stream, with some padding")
}

fn number(s: &str) -> u64 {
    s[5..15].parse().unwrap()
}

#[test]
fn queue_consumers_killed_at_random() {
    let kind = Kind {
        name: "Queue<u64>",
        items: ITEMS,
        make: || Queue::<u64>::new(CAP).unwrap(),
        put: |q, from, to| (from..=to).all(|i| q.put_timeout(i, DEADLINE).is_ok()),
        get: |q, t, got, returned| {
            q.get_timeout(t)
                .map(|v| {
                    returned();
                    got.push(v)
                })
                .is_ok()
        },
        lost: |q| q.lost(),
    };
    check(kind.name, &consumer_kills(&kind, redteam_runs(20)));
}

/// `put_slice` and `get_into`, up to [`BATCH`] items a call (one blocking
/// call when the ring is full or empty).
#[test]
fn queue_batch_consumers_killed_at_random() {
    let kind = Kind {
        name: "Queue<u64> put_slice/get_into",
        items: ITEMS,
        make: || Queue::<u64>::new(CAP).unwrap(),
        put: |q, from, to| {
            let src: Vec<u64> = (from..=to).collect();
            let mut done = 0;
            while done < src.len() {
                match q.put_slice(&src[done..]) {
                    0 => match q.put_timeout(src[done], DEADLINE) {
                        Ok(()) => done += 1,
                        Err(_) => return false,
                    },
                    n => done += n,
                }
            }
            true
        },
        get: |q, t, got, returned| {
            let mut dst = [0u64; BATCH as usize];
            match q.get_into(&mut dst) {
                0 => q
                    .get_timeout(t)
                    .map(|v| {
                        returned();
                        got.push(v)
                    })
                    .is_ok(),
                n => {
                    returned();
                    got.extend_from_slice(&dst[..n]);
                    true
                }
            }
        },
        lost: |q| q.lost(),
    };
    check(kind.name, &consumer_kills(&kind, redteam_runs(20)));
}

#[test]
fn message_queue_consumers_killed_at_random() {
    let kind = Kind {
        name: "MessageQueue<String>",
        items: ITEMS,
        make: || MessageQueue::<String>::new(CAP, 64).unwrap(),
        put: |q, from, to| (from..=to).all(|i| q.put_timeout(text(i), DEADLINE).is_ok()),
        get: |q, t, got, returned| {
            q.get_timeout(t)
                .map(|s| {
                    returned();
                    got.push(number(&s))
                })
                .is_ok()
        },
        lost: |q| q.lost(),
    };
    check(kind.name, &consumer_kills(&kind, redteam_runs(20)));
}

#[test]
fn joinable_queue_consumers_killed_at_random() {
    let kind = Kind {
        name: "JoinableQueue<String>",
        items: ITEMS,
        make: || JoinableQueue::<String>::new(CAP, 64).unwrap(),
        put: |q, from, to| (from..=to).all(|i| q.put_timeout(text(i), DEADLINE).is_ok()),
        get: |q, t, got, returned| {
            q.get_timeout(t)
                .map(|s| {
                    returned();
                    got.push(number(&s))
                })
                .is_ok()
        },
        lost: |q| q.lost(),
    };
    check(kind.name, &consumer_kills(&kind, redteam_runs(20)));
}

#[test]
fn pipe_receivers_killed_at_random() {
    let kind = Kind {
        name: "Pipe<String>",
        items: ITEMS,
        make: || {
            Pipe::new()
                .capacity(CAP)
                .max_message_size(64)
                .create::<String>()
                .unwrap()
        },
        put: |(a, _), from, to| (from..=to).all(|i| a.send_timeout(text(i), DEADLINE).is_ok()),
        get: |(_, b), t, got, returned| {
            b.recv_timeout(t)
                .map(|s| {
                    returned();
                    got.push(number(&s))
                })
                .is_ok()
        },
        lost: |(_, b)| b.lost(),
    };
    check(kind.name, &consumer_kills(&kind, redteam_runs(20)));
}

/// A message of about 200 KB whose first 8 bytes are its item number.
fn big(i: u64) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; 200_000];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

#[test]
fn big_message_consumers_killed_at_random() {
    let kind = Kind {
        name: "MessageQueue<Vec<u8>> (200 KB)",
        items: 300,
        make: || MessageQueue::<Vec<u8>>::new(CAP, 200_016).unwrap(),
        put: |q, from, to| (from..=to).all(|i| q.put_timeout(big(i), DEADLINE).is_ok()),
        get: |q, t, got, returned| {
            q.get_timeout(t)
                .map(|v| {
                    returned();
                    got.push(u64::from_le_bytes(v[..8].try_into().unwrap()))
                })
                .is_ok()
        },
        lost: |q| q.lost(),
    };
    check(kind.name, &consumer_kills(&kind, redteam_runs(5)));
}

/// Shared flag a [`Slow`] sets when its `Deserialize` starts.
static DECODING: OnceLock<AtomicValue<u64>> = OnceLock::new();

/// A message whose decoding takes a long time (and says when it starts).
#[derive(Serialize)]
struct Slow(u64);

impl<'de> Deserialize<'de> for Slow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Slow, D::Error> {
        if let Some(flag) = DECODING.get() {
            flag.store(1, SeqCst);
        }
        std::thread::sleep(Duration::from_secs(30));
        u64::deserialize(d).map(Slow)
    }
}

/// A consumer killed while it decodes a message: the message is counted
/// lost (the slot is still claimed while it decodes), and nobody gets it.
#[test]
fn consumer_killed_inside_deserialize_is_counted() {
    let decoding = DECODING.get_or_init(|| AtomicValue::new(0u64).unwrap());
    let q = MessageQueue::<Slow>::new(2, 16).unwrap();
    q.put(Slow(7)).unwrap();
    let mut victim = {
        let q = q.clone();
        fork(move || match q.get_timeout(DEADLINE) {
            Ok(_) => 0,
            Err(_) => 2,
        })
    };
    let end = Instant::now() + DEADLINE;
    while decoding.load(SeqCst) == 0 {
        assert!(Instant::now() < end, "the victim never decoded");
        std::thread::sleep(Duration::from_millis(1));
    }
    victim.signal(libc::SIGKILL);
    assert_eq!(victim.wait_timeout(DEADLINE), Some(-libc::SIGKILL));
    assert_eq!(q.lost(), 0, "nobody has looked at the dead claim yet");
    // Two puts reach the dead consumer's slot (capacity 2): the second
    // frees it and counts the message.
    q.put_timeout(Slow(8), DEADLINE).unwrap();
    q.put_timeout(Slow(9), DEADLINE).unwrap();
    assert_eq!(q.lost(), 1, "the message the victim was decoding");
    assert_eq!(q.len(), 2);
}
