//! The futex, modelled for loom: shared by every `tests/loom_*.rs`.
//!
//! Sleepers park on one condition variable; `wait` checks the word and parks
//! under one mutex, and `wake` notifies under it, so a wake that follows a
//! change of the word cannot slip between the check and the park, exactly
//! the FUTEX_WAIT guarantee. Timeouts are modelled one of two ways:
//! `ModelFutex::blocking()` ignores them (a wait returns only when woken: a
//! lost wake-up then shows as a loom deadlock); `ModelFutex::timing_out()`
//! returns from every timed wait at once (a timeout can fire at any moment).
#![allow(dead_code)]

use std::time::Duration;

use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use loom::sync::{Condvar, Mutex};
use multiproc::sync::raw::futex::Waiter;

pub struct ModelFutex {
    m: Mutex<()>,
    cv: Condvar,
    timeouts_fire: bool,
}

impl ModelFutex {
    /// Timed waits block like untimed ones.
    pub fn blocking() -> Self {
        ModelFutex {
            m: Mutex::new(()),
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

    fn park(&self, still: impl Fn() -> bool, timeout: Option<Duration>) {
        if timeout.is_some() && self.timeouts_fire {
            loom::thread::yield_now();
            return;
        }
        let g = self.m.lock().unwrap();
        if !still() {
            return;
        }
        drop(self.cv.wait(g).unwrap());
    }

    fn notify(&self) {
        let _g = self.m.lock().unwrap();
        self.cv.notify_all();
    }
}

// SAFETY: `park` checks the word and parks under `m`; `notify` notifies under
// `m`: no wake after a change of the word is lost.
unsafe impl Waiter for ModelFutex {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        self.park(|| word.load(Ordering::SeqCst) == expected, timeout);
    }

    fn wake(&self, _word: &AtomicU32, _count: u32) {
        self.notify();
    }

    fn wait64(&self, word: &AtomicU64, expected_low: u32, timeout: Option<Duration>) {
        self.park(
            || word.load(Ordering::SeqCst) as u32 == expected_low,
            timeout,
        );
    }

    fn wake64(&self, _word: &AtomicU64, _count: u32) {
        self.notify();
    }
}
