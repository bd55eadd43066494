//! The futex, modelled for loom: shared by every `tests/loom_*.rs`.
//!
//! Each sleeper registers under one mutex with the address it sleeps on,
//! after checking the word under that mutex; `wake(addr, n)` marks at most
//! `n` sleepers of that address (oldest first) as woken, under the same
//! mutex. So, as with FUTEX_WAIT/FUTEX_WAKE, a wake that follows a change of
//! the word is never lost, and a wake of `n` wakes no more than `n`: an
//! algorithm that wakes too few shows as a loom deadlock.
//!
//! Timeouts are modelled one of two ways: `ModelFutex::blocking()` ignores
//! them (a wait returns only when woken); `ModelFutex::timing_out()` returns
//! from every timed wait at once (a timeout can fire at any moment).
#![allow(dead_code)]

use std::time::Duration;

use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use loom::sync::{Condvar, Mutex};
use multiproc::algo::wait::Waiter;

/// Runs a loom model with at most `bound` preemptions, or fewer if
/// `LOOM_MAX_PREEMPTIONS` says so, so that no model explodes when run without
/// the variable.
pub fn check(bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(b.preemption_bound.map_or(bound, |env| env.min(bound)));
    b.check(f);
}

struct Sleeper {
    id: u64,
    addr: usize,
    woken: bool,
}

#[derive(Default)]
struct Sleepers {
    next_id: u64,
    list: Vec<Sleeper>,
}

pub struct ModelFutex {
    m: Mutex<Sleepers>,
    cv: Condvar,
    timeouts_fire: bool,
}

impl ModelFutex {
    /// Timed waits block like untimed ones.
    pub fn blocking() -> Self {
        ModelFutex {
            m: Mutex::new(Sleepers::default()),
            cv: Condvar::new(),
            timeouts_fire: false,
        }
    }

    /// Timed waits return at once, as if their timeout fired.
    pub fn timing_out() -> Self {
        ModelFutex {
            timeouts_fire: true,
            ..Self::blocking()
        }
    }

    fn park(&self, addr: usize, still: impl Fn() -> bool, timeout: Option<Duration>) {
        if timeout.is_some() && self.timeouts_fire {
            loom::thread::yield_now();
            return;
        }
        let mut g = self.m.lock().unwrap();
        if !still() {
            return;
        }
        let id = g.next_id;
        g.next_id += 1;
        g.list.push(Sleeper {
            id,
            addr,
            woken: false,
        });
        loop {
            g = self.cv.wait(g).unwrap();
            let at = g.list.iter().position(|s| s.id == id).expect("registered");
            if g.list[at].woken {
                g.list.remove(at);
                return;
            }
        }
    }

    fn notify(&self, addr: usize, count: u32) {
        let mut g = self.m.lock().unwrap();
        let mut left = count;
        for s in g.list.iter_mut().filter(|s| s.addr == addr && !s.woken) {
            if left == 0 {
                break;
            }
            s.woken = true;
            left -= 1;
        }
        if left != count {
            self.cv.notify_all();
        }
    }
}

// SAFETY: `park` checks the word and registers under `m`; `notify` marks
// sleepers under `m`: no wake after a change of the word is lost.
unsafe impl Waiter for ModelFutex {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        let addr = word as *const AtomicU32 as usize;
        self.park(addr, || word.load(Ordering::SeqCst) == expected, timeout);
    }

    fn wake(&self, word: &AtomicU32, count: u32) {
        self.notify(word as *const AtomicU32 as usize, count);
    }

    fn wait64(&self, word: &AtomicU64, expected_low: u32, timeout: Option<Duration>) {
        let addr = word as *const AtomicU64 as usize;
        self.park(
            addr,
            || word.load(Ordering::SeqCst) as u32 == expected_low,
            timeout,
        );
    }

    fn wake64(&self, word: &AtomicU64, count: u32) {
        self.notify(word as *const AtomicU64 as usize, count);
    }
}
