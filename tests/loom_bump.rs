//! loom model of the shared bump allocator: concurrent reservations from one
//! `next` word never overlap and never pass the limit.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release --test loom_bump`
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::AtomicU64;
use multiproc::algo::bump::bump;

#[test]
fn concurrent_reservations_are_disjoint() {
    loom::model(|| {
        // Room for three 64-byte objects after a 64-byte header, not four.
        let next = Arc::new(AtomicU64::new(64));
        let limit = 64 + 3 * 64 + 32;
        let t = {
            let next = next.clone();
            loom::thread::spawn(move || [bump(&next, 40, 64, limit), bump(&next, 64, 64, limit)])
        };
        let mine = [bump(&next, 64, 64, limit), bump(&next, 10, 8, limit)];
        let theirs = t.join().unwrap();
        let mut got: Vec<(u64, u64)> = Vec::new();
        for (r, size) in mine.iter().zip([64, 10]).chain(theirs.iter().zip([40, 64])) {
            if let Some(start) = *r {
                assert!(
                    start >= 64 && start + size <= limit,
                    "out of bounds: {start}+{size}"
                );
                got.push((start, start + size));
            }
        }
        got.sort();
        for w in got.windows(2) {
            assert!(w[0].1 <= w[1].0, "overlap: {got:?}");
        }
        // The first reservation of each thread always fits.
        assert!(mine[0].is_some() && theirs[0].is_some());
    });
}
