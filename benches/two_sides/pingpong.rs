//! The ping-pong runs of `benches/queue.rs`: the [`PingPong`] trait, our
//! contestant (two `spsc` channels, [`SpscPair`]) and the raw peers
//! ([`RawSpin`], [`RawFutex`]), and one run between the parent and a forked
//! child ([`pingpong`]).

use std::cell::RefCell;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::{Duration, Instant};

use multiproc::AtomicValue;
use multiproc::spsc::{self, TryGetError, TryPutError};

use super::flow::fresh_channel;
use super::waiting::{Spin, with_watchdog};
use super::{DEADLINE, FutexPair, Handshake, Marks, SharedPage, voluntary_switches, wait_flag};
use crate::common;

// --------------------------------------------------------------------------
// Shared memory for the raw peers
// --------------------------------------------------------------------------

/// Two one-way links two processes bounce the round number `1..=rounds`
/// through. Side A (the parent) sends and waits for the answer; side B
/// (the child) answers. Each side returns false if a wait ran past
/// [`DEADLINE`] or a wrong value came back.
pub trait PingPong {
    /// The parent's side.
    fn side_a(&self, rounds: u64, m: &impl Marks) -> bool;
    /// The child's side.
    fn side_b(&self, rounds: u64, m: &impl Marks) -> bool;
}

/// Two fresh `spsc` channels: A carries `i` from the parent to the child, B
/// carries it back. `blocking` picks `push`/`pop` over spinning on
/// `try_push`/`try_pop`.
pub struct SpscPair {
    a_tx: RefCell<spsc::Producer<u64>>,
    a_rx: RefCell<spsc::Consumer<u64>>,
    b_tx: RefCell<spsc::Producer<u64>>,
    b_rx: RefCell<spsc::Consumer<u64>>,
    blocking: bool,
}

impl SpscPair {
    pub fn new(blocking: bool) -> SpscPair {
        let (a_tx, a_rx) = fresh_channel();
        let (b_tx, b_rx) = fresh_channel();
        SpscPair {
            a_tx: RefCell::new(a_tx),
            a_rx: RefCell::new(a_rx),
            b_tx: RefCell::new(b_tx),
            b_rx: RefCell::new(b_rx),
            blocking,
        }
    }

    /// Sends `v`; false on a deadline or a closed channel.
    #[inline]
    fn send(&self, tx: &mut spsc::Producer<u64>, v: u64, spin: &mut Spin) -> bool {
        if self.blocking {
            return tx.push(v).is_ok();
        }
        let mut v = v;
        loop {
            match tx.try_push(v) {
                Ok(()) => {
                    spin.hit();
                    return true;
                }
                Err(TryPutError::Full(back)) => v = back,
                Err(TryPutError::Closed(_)) => return false,
            }
            if !spin.miss() {
                return false;
            }
        }
    }

    /// Receives one value and checks it is `want`.
    #[inline]
    fn recv(&self, rx: &mut spsc::Consumer<u64>, want: u64, spin: &mut Spin) -> bool {
        if self.blocking {
            return rx.pop() == Ok(want);
        }
        loop {
            match rx.try_pop() {
                Ok(v) => {
                    spin.hit();
                    return v == want;
                }
                Err(TryGetError::Empty) => {}
                Err(TryGetError::Closed) => return false,
            }
            if !spin.miss() {
                return false;
            }
        }
    }
}

impl PingPong for SpscPair {
    fn side_a(&self, rounds: u64, m: &impl Marks) -> bool {
        let (mut tx, mut rx) = (self.a_tx.borrow_mut(), self.b_rx.borrow_mut());
        let mut spin = Spin::new();
        for i in 1..=rounds {
            m.before_signal();
            if !self.send(&mut tx, i, &mut spin) || !self.recv(&mut rx, i, &mut spin) {
                return false;
            }
            m.after_wake();
        }
        true
    }

    fn side_b(&self, rounds: u64, m: &impl Marks) -> bool {
        let (mut rx, mut tx) = (self.a_rx.borrow_mut(), self.b_tx.borrow_mut());
        let mut spin = Spin::new();
        for i in 1..=rounds {
            if !self.recv(&mut rx, i, &mut spin) {
                return false;
            }
            m.after_wake();
            m.before_signal();
            if !self.send(&mut tx, i, &mut spin) {
                return false;
            }
        }
        true
    }
}

/// Two `u64` words in a shared page, one per side, on their own cache
/// lines.
struct WordPair {
    page: SharedPage,
}

impl WordPair {
    /// Byte offsets of the two words, on different cache lines (and
    /// different adjacent-line prefetch pairs).
    const OFFSETS: [usize; 2] = [0, 128];

    fn new() -> WordPair {
        WordPair {
            page: SharedPage::new(),
        }
    }

    /// Word `i` (0 or 1) as a `u64` atomic.
    // The crate's own atomics go through `crate::loom`; this raw peer needs
    // an atomic on its own mmap'd word, which only std can give.
    #[allow(clippy::disallowed_types)]
    fn word64(&self, i: usize) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: an aligned u64 inside the page, which lives as long as
        // `self`; every access to it, in every process, is atomic.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.page.at(Self::OFFSETS[i])) }
    }
}

/// The raw spin peer: each side stores the round number into its own
/// `u64` word and spins until the other's word reads it.
pub struct RawSpin(WordPair);

impl RawSpin {
    pub fn new() -> RawSpin {
        RawSpin(WordPair::new())
    }

    #[inline]
    fn wait_for(&self, i: usize, want: u64, spin: &mut Spin) -> bool {
        let w = self.0.word64(i);
        // SYNC: Acquire pairs with the Release store of the other side.
        while w.load(Acquire) != want {
            if !spin.miss() {
                return false;
            }
        }
        spin.hit();
        true
    }
}

impl PingPong for RawSpin {
    fn side_a(&self, rounds: u64, m: &impl Marks) -> bool {
        let mut spin = Spin::new();
        for i in 1..=rounds {
            m.before_signal();
            // SYNC: Release pairs with the Acquire load in `wait_for`.
            self.0.word64(0).store(i, Release);
            if !self.wait_for(1, i, &mut spin) {
                return false;
            }
            m.after_wake();
        }
        true
    }

    fn side_b(&self, rounds: u64, m: &impl Marks) -> bool {
        let mut spin = Spin::new();
        for i in 1..=rounds {
            if !self.wait_for(0, i, &mut spin) {
                return false;
            }
            m.after_wake();
            m.before_signal();
            // SYNC: Release pairs with the Acquire load in `wait_for`.
            self.0.word64(1).store(i, Release);
        }
        true
    }
}

/// The raw futex peer of `benches/sync.rs` (its [`FutexPair`]): each side
/// stores the round number into its `u32` word, `FUTEX_WAKE`s it (always:
/// one system call), and waits for the other's word, `spins` checks first,
/// then `FUTEX_WAIT` (shared) while it holds the old value.
pub struct RawFutex {
    pair: FutexPair,
    spins: u32,
}

impl RawFutex {
    /// The relative timeout of each `FUTEX_WAIT`.
    const TIMEOUT: libc::timespec = libc::timespec {
        tv_sec: DEADLINE.as_secs() as libc::time_t,
        tv_nsec: 0,
    };

    pub fn new(spins: u32) -> RawFutex {
        RawFutex {
            pair: FutexPair::new(),
            spins,
        }
    }

    #[inline]
    fn post(&self, i: usize, value: u32) {
        self.pair.post(i, value);
    }

    #[inline]
    fn wait_for(&self, i: usize, target: u32) -> bool {
        self.pair.wait_for(i, target, self.spins, &Self::TIMEOUT)
    }
}

impl PingPong for RawFutex {
    fn side_a(&self, rounds: u64, m: &impl Marks) -> bool {
        for i in 1..=rounds {
            let i = i as u32;
            m.before_signal();
            self.post(0, i);
            if !self.wait_for(1, i) {
                return false;
            }
            m.after_wake();
        }
        true
    }

    fn side_b(&self, rounds: u64, m: &impl Marks) -> bool {
        for i in 1..=rounds {
            let i = i as u32;
            if !self.wait_for(0, i) {
                return false;
            }
            m.after_wake();
            m.before_signal();
            self.post(1, i);
        }
        true
    }
}

/// Shared state of the ping-pong runs: the start flags, and what the child
/// reports back.
pub struct PingPongShared {
    hs: Handshake,
    /// The child's voluntary context switches during its rounds.
    switches: AtomicValue<u64>,
    /// The child's [`Marks::sum`].
    child_sum: AtomicValue<u64>,
}

impl PingPongShared {
    pub fn new() -> PingPongShared {
        PingPongShared {
            hs: Handshake::new(),
            switches: AtomicValue::new(0).expect("AtomicValue::new"),
            child_sum: AtomicValue::new(0).expect("AtomicValue::new"),
        }
    }
}

/// One ping-pong run of `rounds` round trips through a fresh `make()`: the
/// parent plays side A, a forked child side B. Returns the run's time (see
/// [`Marks::time`]) and the child's voluntary context switches during its
/// rounds.
pub fn pingpong<P: PingPong>(
    sh: &PingPongShared,
    make: &impl Fn() -> P,
    m: &impl Marks,
    rounds: u64,
) -> (Duration, u64) {
    sh.hs.reset();
    let p = make();
    let parent = std::process::id() as libc::pid_t;
    with_watchdog("ping-pong", || {
        let mut child = common::fork(|| {
            m.start(parent);
            sh.hs.ready.store(1, Release);
            let before = voluntary_switches();
            let ok = p.side_b(rounds, m);
            sh.switches.store(voluntary_switches() - before, Relaxed);
            sh.child_sum.store(m.sum(), Relaxed);
            if ok { 0 } else { 2 }
        });
        m.start(child.pid());
        // A panic below drops `child`, which kills and reaps it.
        assert!(
            wait_flag(&sh.hs.ready, Instant::now() + DEADLINE),
            "child never became ready"
        );
        let start = Instant::now();
        let ok = p.side_a(rounds, m);
        let wall = start.elapsed();
        assert!(
            ok,
            "the parent's ping-pong side failed (a wait ran past {DEADLINE:?}, or a wrong value came back)"
        );
        match child.wait_timeout(DEADLINE) {
            Some(0) => {}
            Some(code) => panic!("ping-pong child failed with {code}"),
            None => panic!("ping-pong child still running after {DEADLINE:?}"),
        }
        let sums = m.sum() + sh.child_sum.load(Relaxed);
        (m.time(wall, sums), sh.switches.load(Relaxed))
    })
}
