//! loom models of the SPSC ring core (`RawProducer` / `RawConsumer`) and its
//! eventcount: every item is received exactly once and in order, slots are
//! never read and written at once (loom's `UnsafeCell` checks that, so an
//! index published too weakly fails here), no wake-up is lost (the futex
//! model ignores timeouts, so a lost wake-up is a deadlock), and close
//! lets the consumer drain, then report `Closed`.
//!
//! Each concurrent model runs under every fencing the ring allows: both
//! ends symmetric (`SeqCst` swaps), both asymmetric (`Release` stores, light
//! and heavy barriers), and asymmetric rings with one end in a process that
//! does not receive heavy barriers (that end publishes with `SeqCst` swaps,
//! its waits still issue the heavy barrier). The asymmetric barrier is
//! modelled as what it guarantees: a `SeqCst` fence on both sides (the light
//! barrier is a compiler fence in the real build, see `algo/eventcount.rs`).
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom cargo test --release --test loom_spsc`
#![cfg(loom)]

mod loom_model;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{Ordering, fence};
use loom_model::{ModelFutex, check};
use multiproc::algo::spsc::{
    Fencing, RawConsumer, RawProducer, RingMemory, SpscState, TryPopError, TryPushError,
};

struct Ring {
    state: SpscState,
    slots: Vec<UnsafeCell<u32>>,
    futex: ModelFutex,
}

/// Heap memory for the ring, shared by the two ends; `receives` says
/// whether this end's "process" takes part in heavy barriers.
#[derive(Clone)]
struct Mem {
    ring: Arc<Ring>,
    receives: bool,
}

// SAFETY: one state, a fixed number of slots, each access bounds-checked by
// `Vec` indexing; loom's UnsafeCell reports any concurrent slot access. The
// heavy barrier is a SeqCst fence, and so is every light barrier under loom,
// so a light end's barrier and a waiter's are ordered as membarrier orders
// them.
unsafe impl RingMemory for Mem {
    type Item = u32;
    type Waiter = ModelFutex;

    fn state(&self) -> &SpscState {
        &self.ring.state
    }

    fn capacity(&self) -> usize {
        self.ring.slots.len()
    }

    fn waiter(&self) -> &ModelFutex {
        &self.ring.futex
    }

    fn receives_heavy_barrier(&self) -> bool {
        self.receives
    }

    fn heavy_barrier(&self) -> bool {
        fence(Ordering::SeqCst);
        true
    }

    unsafe fn write(&self, index: usize, value: u32) {
        // SAFETY: loom's UnsafeCell access; loom itself checks it for races.
        self.ring.slots[index].with_mut(|p| unsafe { *p = value });
    }

    unsafe fn read(&self, index: usize) -> u32 {
        // SAFETY: as in `write`.
        self.ring.slots[index].with(|p| unsafe { *p })
    }
}

/// How a model's ring is fenced, and which ends publish lightly.
#[derive(Clone, Copy, Debug)]
enum Setup {
    /// `Fencing::Symmetric`: both ends `SeqCst`.
    Symmetric,
    /// `Fencing::Asymmetric`, both ends light.
    Asymmetric,
    /// `Fencing::Asymmetric`, the producer light, the consumer `SeqCst`.
    LightProducer,
    /// `Fencing::Asymmetric`, the producer `SeqCst`, the consumer light.
    LightConsumer,
}

const SETUPS: [Setup; 4] = [
    Setup::Symmetric,
    Setup::Asymmetric,
    Setup::LightProducer,
    Setup::LightConsumer,
];

fn ring_with(capacity: usize, setup: Setup) -> (RawProducer<Mem>, RawConsumer<Mem>) {
    let (fencing, p_light, c_light) = match setup {
        Setup::Symmetric => (Fencing::Symmetric, false, false),
        Setup::Asymmetric => (Fencing::Asymmetric, true, true),
        Setup::LightProducer => (Fencing::Asymmetric, true, false),
        Setup::LightConsumer => (Fencing::Asymmetric, false, true),
    };
    let ring = Arc::new(Ring {
        state: SpscState::with_fencing(fencing),
        slots: (0..capacity).map(|_| UnsafeCell::new(0)).collect(),
        futex: ModelFutex::blocking(),
    });
    let tx = RawProducer::new(Mem {
        ring: ring.clone(),
        receives: p_light,
    });
    let rx = RawConsumer::new(Mem {
        ring,
        receives: c_light,
    });
    assert_eq!((tx.is_light(), rx.is_light()), (p_light, c_light));
    (tx, rx)
}

fn ring(capacity: usize) -> (RawProducer<Mem>, RawConsumer<Mem>) {
    ring_with(capacity, Setup::Symmetric)
}

/// Capacity 2, three items pushed and popped with blocking calls: each
/// arrives once, in order; the producer must sleep for room at least in
/// some interleavings, the consumer for items in others.
#[test]
fn blocking_items_in_order() {
    for setup in SETUPS {
        println!("{setup:?}");
        blocking_items_in_order_with(setup);
    }
}

fn blocking_items_in_order_with(setup: Setup) {
    check(3, move || {
        let (mut tx, mut rx) = ring_with(2, setup);
        let t = loom::thread::spawn(move || {
            for v in 1..=3 {
                tx.push(v, None).unwrap();
            }
        });
        for want in 1..=3 {
            assert_eq!(rx.pop(None), Ok(want));
        }
        t.join().unwrap();
        assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
        assert_eq!(rx.memory().state().waiters(), (0, 0));
    });
}

/// The smallest lost-wake-up model: one push against a consumer that may
/// be going to sleep, and one pop against a producer that may be going to
/// sleep on a full ring of one. A wake-up lost by either Dekker pair is a
/// deadlock here.
#[test]
fn single_push_wakes_sleeping_consumer() {
    for setup in SETUPS {
        println!("{setup:?}");
        check(3, move || {
            let (mut tx, mut rx) = ring_with(1, setup);
            let t = loom::thread::spawn(move || {
                tx.push(1, None).unwrap();
                tx.push(2, None).unwrap();
            });
            assert_eq!(rx.pop(None), Ok(1));
            assert_eq!(rx.pop(None), Ok(2));
            t.join().unwrap();
            assert_eq!(rx.memory().state().waiters(), (0, 0));
        });
    }
}

/// A push then a close: a consumer that may be asleep is woken, gets the
/// item, then `Closed`; a push after the close is refused with its value.
#[test]
fn close_drains_then_reports_closed() {
    for setup in SETUPS {
        println!("{setup:?}");
        close_drains_then_reports_closed_with(setup);
    }
}

fn close_drains_then_reports_closed_with(setup: Setup) {
    check(3, move || {
        let (mut tx, mut rx) = ring_with(2, setup);
        let t = loom::thread::spawn(move || {
            tx.push(7, None).unwrap();
            tx.close();
            assert!(matches!(tx.try_push(8), Err(TryPushError::Closed(8))));
        });
        assert_eq!(rx.pop(None), Ok(7));
        assert_eq!(rx.pop(None), Err(TryPopError::Closed));
        t.join().unwrap();
    });
}

/// A producer blocked on a full ring is woken by the close, which it
/// reports with its value.
#[test]
fn close_wakes_blocked_producer() {
    for setup in SETUPS {
        println!("{setup:?}");
        close_wakes_blocked_producer_with(setup);
    }
}

fn close_wakes_blocked_producer_with(setup: Setup) {
    check(3, move || {
        let (mut tx, rx) = ring_with(1, setup);
        assert!(tx.try_push(1).is_ok());
        let t =
            loom::thread::spawn(move || matches!(tx.push(2, None), Err(TryPushError::Closed(2))));
        rx.memory().state().close(rx.memory().waiter());
        assert!(t.join().unwrap());
    });
}

/// Batches: `push_slice` and `pop_into` move four items through a ring of
/// two with one publish per batch, falling back to blocking calls when a
/// batch moves nothing; all arrive once, in order.
#[test]
fn batches_in_order() {
    for setup in SETUPS {
        println!("{setup:?}");
        batches_in_order_with(setup);
    }
}

fn batches_in_order_with(setup: Setup) {
    check(2, move || {
        let (mut tx, mut rx) = ring_with(2, setup);
        let t = loom::thread::spawn(move || {
            let src = [1, 2, 3, 4];
            let mut at = 0;
            while at < src.len() {
                let n = tx.push_slice(&src[at..]);
                if n == 0 {
                    tx.push(src[at], None).unwrap();
                    at += 1;
                } else {
                    at += n;
                }
            }
        });
        let mut got = Vec::new();
        let mut buf = [0; 2];
        while got.len() < 4 {
            let n = rx.pop_into(&mut buf);
            if n == 0 {
                got.push(rx.pop(None).unwrap());
            } else {
                got.extend_from_slice(&buf[..n]);
            }
        }
        t.join().unwrap();
        assert_eq!(got, [1, 2, 3, 4]);
    });
}

/// Without concurrency: a full ring hands the value back, an empty one
/// says so, an expired deadline does not block, and batches stop at the
/// capacity.
#[test]
fn try_and_deadline() {
    check(1, || {
        let (mut tx, mut rx) = ring(2);
        let past = Some(std::time::Instant::now());
        assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
        assert_eq!(rx.pop(past), Err(TryPopError::Empty));
        assert_eq!(tx.push_slice(&[1, 2, 3]), 2);
        assert!(matches!(tx.try_push(4), Err(TryPushError::Full(4))));
        assert!(matches!(tx.push(5, past), Err(TryPushError::Full(5))));
        let mut buf = [0; 3];
        assert_eq!(rx.pop_into(&mut buf), 2);
        assert_eq!(buf[..2], [1, 2]);
        assert!(tx.try_push(6).is_ok());
        assert_eq!(rx.try_pop(), Ok(6));
    });
}
