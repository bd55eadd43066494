//! Processes, both start methods: workers fill a shared `Array`, one
//! `Entry` type run by fork and by spawn; then a child that panics, and one
//! that is terminated.
//!
//! Run: `cargo run --release --example processes`
//!
//! `multiproc::init` is the first line of `main`: a child started by
//! `Process::spawn` re-executes this program, and `init` runs its entry
//! there (and exits) instead of returning.

use std::time::{Duration, Instant};

use multiproc::{Array, Entry, EntryPoint, Process, StartMethod, current_process};
use serde::{Deserialize, Serialize};

/// Writes `slot * slot` and its pid into the shared arrays.
#[derive(Serialize, Deserialize)]
struct Square {
    slot: usize,
    squares: Array<u64>,
    pids: Array<u32>,
}

impl Entry for Square {
    type Output = multiproc::Result<()>;
    fn run(self) -> multiproc::Result<()> {
        self.squares
            .set(self.slot, (self.slot * self.slot) as u64)?;
        self.pids.set(self.slot, current_process().pid())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(&[EntryPoint::of::<Square>()]);

    const WORKERS: usize = 8;
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let squares = Array::<u64>::new(WORKERS)?;
        let pids = Array::<u32>::new(WORKERS)?;
        let t0 = Instant::now();
        let mut workers = Vec::new();
        for slot in 0..WORKERS {
            let entry = Square {
                slot,
                squares: squares.clone(),
                pids: pids.clone(),
            };
            let mut p = Process::new(method, entry);
            p.start()?;
            workers.push(p);
        }
        for p in &workers {
            let code = p.join()?;
            if code != 0 {
                return Err(format!("{} exited with {code}: {:?}", p.name(), p.failure()).into());
            }
        }
        let elapsed = t0.elapsed();
        let want: Vec<u64> = (0..WORKERS as u64).map(|i| i * i).collect();
        if squares.to_vec() != want {
            return Err(format!("{method:?}: squares {:?}", squares.to_vec()).into());
        }
        println!(
            "{method:?}: {WORKERS} workers ({}) filled {:?} in {elapsed:.2?}; pids {:?}",
            workers
                .iter()
                .map(Process::name)
                .collect::<Vec<_>>()
                .join(", "),
            squares.to_vec(),
            pids.to_vec(),
        );
    }

    // A panic in a child: exit code 101, and its message in the parent (the
    // child's panic hook prints it on stderr too, as for any panic).
    let mut p = Process::fork(|| {
        let input: Vec<u32> = Vec::new();
        assert!(!input.is_empty(), "no input to work on");
    });
    p.start()?;
    println!(
        "a panicking child: exit code {}, {}",
        p.join()?,
        p.failure()
            .map_or_else(|| "no message".to_owned(), |f| f.to_string())
    );

    // A child that would sleep for a minute: still running after 50 ms,
    // then terminated (exit code -15, Python's convention).
    let mut p = Process::fork(|| std::thread::sleep(Duration::from_secs(60)));
    p.start()?;
    let early = p.join_timeout(Duration::from_millis(50));
    p.terminate()?;
    println!(
        "a sleeping child: join_timeout(50 ms) = {early:?}, after terminate: exit code {}, alive: {}",
        p.join()?,
        p.is_alive()
    );
    Ok(())
}
