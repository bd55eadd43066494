//! The `spsc_throughput` runs of `benches/queue.rs`: the shared state of a
//! run ([`Flow`]), fresh channels, how our contestants move the items
//! ([`Mode`]), and one run of ours across two processes or two threads, or
//! of a peer between two threads.

use std::cell::RefCell;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use multiproc::AtomicValue;
use multiproc::spsc::{self, TryGetError, TryPutError};

use super::waiting::{Spin, with_watchdog};
use super::{Handshake, checked_run, two_processes, two_threads};

/// Slots of every ring in these benches, ours and the peers'.
pub const CAPACITY: usize = 1024;

/// Items per `push_slice` / `pop_into` call in the batched contestant.
pub const BATCH: usize = 64;

/// `0 + 1 + .. + (n - 1)`: the sum a consumer of `n` items must see.
pub fn expected_sum(n: u64) -> u64 {
    if n == 0 { 0 } else { n * (n - 1) / 2 }
}

// --------------------------------------------------------------------------
// spsc_throughput
// --------------------------------------------------------------------------

/// Shared state of the throughput runs: the start flags, the consumer's sum
/// and item count.
pub struct Flow {
    hs: Handshake,
    /// The sum of the items the consumer received in the last run.
    sum: AtomicValue<u64>,
    /// Items the producer sent plus items the consumer received.
    moved: AtomicValue<u64>,
}

impl Flow {
    pub fn new() -> Flow {
        Flow {
            hs: Handshake::new(),
            sum: AtomicValue::new(0).expect("AtomicValue::new"),
            moved: AtomicValue::new(0).expect("AtomicValue::new"),
        }
    }

    /// One checked run of `n` items: `run` moves them and reports through
    /// [`Self::sum`] and [`Self::moved`]; both are checked.
    pub fn run(&self, n: u64, run: impl FnOnce(u64) -> Duration) -> Duration {
        let t = checked_run(
            n,
            || {
                self.sum.store(u64::MAX, Relaxed);
                self.moved.store(0, Relaxed);
            },
            run,
            || self.moved.load(Relaxed),
        );
        assert_eq!(
            self.sum.load(Relaxed),
            expected_sum(n),
            "the consumer received the wrong items"
        );
        t
    }

    /// The work of one side of a run, for [`two_processes`] or
    /// [`two_threads`]: the consuming side (`is_consumer()`) runs `consume`
    /// and records its sum, the other runs `produce`. Each returns false if
    /// a wait ran past its deadline.
    fn sides(
        &self,
        is_consumer: impl Fn() -> bool,
        produce: impl Fn(u64) -> bool,
        consume: impl Fn(u64) -> Option<u64>,
    ) -> impl Fn(u64) -> bool {
        move |n| {
            if is_consumer() {
                let Some(sum) = consume(n) else { return false };
                self.sum.store(sum, Relaxed);
            } else if !produce(n) {
                return false;
            }
            self.moved.fetch_add(n, Relaxed);
            true
        }
    }
}

/// A fresh channel, its pages touched once (so that no page fault falls in
/// a timed run), empty.
pub fn fresh_channel() -> (spsc::Producer<u64>, spsc::Consumer<u64>) {
    let (mut tx, mut rx) = spsc::channel::<u64>(CAPACITY).expect("spsc::channel");
    let fill = vec![0u64; CAPACITY];
    assert_eq!(tx.push_slice(&fill), CAPACITY);
    let mut back = vec![1u64; CAPACITY];
    assert_eq!(rx.pop_into(&mut back), CAPACITY);
    (tx, rx)
}

/// How our contestants move the items.
#[derive(Clone, Copy)]
pub enum Mode {
    /// Blocking `push` / `pop`.
    Blocking,
    /// `try_push` / `try_pop`, spinning on full / empty.
    Spinning,
    /// `push_slice` / `pop_into` in batches of [`BATCH`], spinning.
    Batched,
}

/// Pushes `0..n` into `tx` as `mode` says; false on a deadline.
fn produce_spsc(tx: &mut spsc::Producer<u64>, n: u64, mode: Mode) -> bool {
    match mode {
        Mode::Blocking => (0..n).all(|i| tx.push(i).is_ok()),
        Mode::Spinning => {
            let mut spin = Spin::new();
            for i in 0..n {
                let mut v = i;
                loop {
                    match tx.try_push(v) {
                        Ok(()) => break,
                        Err(TryPutError::Full(back)) => v = back,
                        Err(TryPutError::Closed(_)) => return false,
                    }
                    if !spin.miss() {
                        return false;
                    }
                }
                spin.hit();
            }
            true
        }
        Mode::Batched => {
            let mut spin = Spin::new();
            let mut buf = [0u64; BATCH];
            let mut next = 0;
            while next < n {
                let k = (n - next).min(BATCH as u64) as usize;
                for (j, slot) in buf[..k].iter_mut().enumerate() {
                    *slot = next + j as u64;
                }
                let mut off = 0;
                while off < k {
                    let m = tx.push_slice(&buf[off..k]);
                    if m == 0 {
                        if !spin.miss() {
                            return false;
                        }
                    } else {
                        spin.hit();
                        off += m;
                    }
                }
                next += k as u64;
            }
            true
        }
    }
}

/// Takes `n` items from `rx` as `mode` says; their sum, or `None` on a
/// deadline.
fn consume_spsc(rx: &mut spsc::Consumer<u64>, n: u64, mode: Mode) -> Option<u64> {
    let mut sum = 0u64;
    match mode {
        Mode::Blocking => {
            for _ in 0..n {
                sum = sum.wrapping_add(rx.pop().ok()?);
            }
        }
        Mode::Spinning => {
            let mut spin = Spin::new();
            for _ in 0..n {
                loop {
                    match rx.try_pop() {
                        Ok(v) => {
                            sum = sum.wrapping_add(v);
                            break;
                        }
                        Err(TryGetError::Empty) => {}
                        Err(TryGetError::Closed) => return None,
                    }
                    if !spin.miss() {
                        return None;
                    }
                }
                spin.hit();
            }
        }
        Mode::Batched => {
            let mut spin = Spin::new();
            let mut buf = [0u64; BATCH];
            let mut left = n;
            while left > 0 {
                let want = left.min(BATCH as u64) as usize;
                let m = rx.pop_into(&mut buf[..want]);
                if m == 0 {
                    if !spin.miss() {
                        return None;
                    }
                    continue;
                }
                spin.hit();
                sum = buf[..m].iter().fold(sum, |s, &v| s.wrapping_add(v));
                left -= m as u64;
            }
        }
    }
    Some(sum)
}

/// One run of ours: `n` items from a forked child (producer) to the parent
/// (consumer, timing), through a fresh channel.
pub fn spsc_2proc(flow: &Flow, n: u64, mode: Mode) -> Duration {
    let (tx, rx) = fresh_channel();
    let (tx, rx) = (RefCell::new(tx), RefCell::new(rx));
    let parent = std::process::id();
    let work = flow.sides(
        || std::process::id() == parent,
        |n| produce_spsc(&mut tx.borrow_mut(), n, mode),
        |n| consume_spsc(&mut rx.borrow_mut(), n, mode),
    );
    with_watchdog("spsc_throughput", || two_processes(&flow.hs, n, &work))
}

/// One run of ours between two threads of this process (a reference: it
/// tells what crossing processes costs): a spawned thread produces, this
/// one consumes.
pub fn spsc_2threads(flow: &Flow, n: u64, mode: Mode) -> Duration {
    let (tx, rx) = fresh_channel();
    let (tx, rx) = (std::sync::Mutex::new(tx), std::sync::Mutex::new(rx));
    peer_2threads(
        flow,
        n,
        |n| produce_spsc(&mut tx.lock().expect("spsc producer"), n, mode),
        |n| consume_spsc(&mut rx.lock().expect("spsc consumer"), n, mode),
    )
}

/// One run of a peer between two threads: `produce` on a spawned thread,
/// `consume` on this one (timing).
pub fn peer_2threads(
    flow: &Flow,
    n: u64,
    produce: impl Fn(u64) -> bool + Sync,
    consume: impl Fn(u64) -> Option<u64> + Sync,
) -> Duration {
    let me = std::thread::current().id();
    let work = flow.sides(|| std::thread::current().id() == me, produce, consume);
    two_threads(&flow.hs, n, &work)
}
