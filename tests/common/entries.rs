//! What the `Process` tests (`tests/process_*.rs`) share: both start
//! methods, a process running an entry (spawned ones re-run the test binary
//! with only its test `spawn_child` selected, which must register every entry
//! that binary spawns), a join with a deadline, a reaping check, and the
//! [`Sleep`] entry.

use std::time::Duration;

use multiproc::testing::ForTest;
use multiproc::{Entry, Process, StartMethod};
use serde::{Deserialize, Serialize};

use super::DEADLINE;

pub const BOTH: [StartMethod; 2] = [StartMethod::Fork, StartMethod::Spawn];

/// A process running `entry` by `method`; spawned ones run `spawn_child`.
pub fn process<E: Entry + Send + 'static>(method: StartMethod, entry: E) -> Process<'static> {
    Process::new(method, entry).for_test("spawn_child")
}

/// Joins within the deadline; kills the child and fails the test if not.
pub fn finish(p: &Process<'_>) -> i32 {
    match p.join_timeout(DEADLINE) {
        Ok(code) => code,
        other => {
            let _ = p.kill();
            let _ = p.join();
            panic!("{} did not exit within {DEADLINE:?}: {other:?}", p.name());
        }
    }
}

/// Asserts that `pid` is no longer a child of this process (it was reaped).
pub fn assert_reaped(pid: u32) {
    let mut status = 0;
    // SAFETY: WNOHANG on one pid: reaps nothing but a zombie child of ours,
    // which the assertion then reports.
    let r = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
    assert_eq!(r, -1, "pid {pid} was still our child (a zombie or running)");
}

/// Sleeps.
#[derive(Serialize, Deserialize)]
pub struct Sleep {
    pub ms: u64,
}

impl Entry for Sleep {
    type Output = ();
    fn run(self) {
        std::thread::sleep(Duration::from_millis(self.ms));
    }
}
