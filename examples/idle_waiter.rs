//! How often a consumer blocked on an idle queue wakes up: the voluntary
//! context switches of a forked child that waits in `Queue::get_timeout`
//! for 12 s, read from `/proc/<pid>/status` over 10 s of that wait.
//!
//! `cargo run --release --example idle_waiter`

use std::time::Duration;

use multiproc::{Process, Queue};

/// The `voluntary_ctxt_switches` line of `/proc/<pid>/status`.
fn switches(pid: u32) -> multiproc::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| {
        multiproc::Error::Io {
            op: "read /proc/<pid>/status",
            source: e,
        }
    })?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

fn main() -> multiproc::Result<()> {
    let q = Queue::<u64>::new(8)?;
    let mut waiter = Process::fork(|| i32::from(q.get_timeout(Duration::from_secs(12)).is_err()));
    waiter.start()?;
    let pid = waiter.pid().unwrap_or(0);
    std::thread::sleep(Duration::from_secs(1));
    let before = switches(pid)?;
    std::thread::sleep(Duration::from_secs(10));
    let after = switches(pid)?;
    println!(
        "a consumer blocked on an idle Queue woke {} times in 10 s",
        after - before
    );
    waiter.kill()?;
    waiter.join()?;
    Ok(())
}
