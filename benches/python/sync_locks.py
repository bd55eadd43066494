#!/usr/bin/env python3
"""Python `multiprocessing` reference figures for the Rust benches in
`benches/sync.rs` (process-shared locks, events, semaphores).

Measures, with the 'fork' start method:

* lock_uncontended:     `lock.acquire(); lock.release()` on a
                        `multiprocessing.Lock` (a POSIX semaphore), ns per pair
* rlock_uncontended:    the same on a `multiprocessing.RLock`
* lock_contended_2proc: two processes each doing `with lock: counter.value += 1`
                        N times on a `RawValue` counter; ns per increment
* event_pingpong_2proc: two processes bouncing between two `Event`s
                        (set -> the other wakes -> clears -> sets back),
                        microseconds per round trip (two wake-ups)
* semaphore_pingpong_2proc: the same with two `Semaphore(0)`s
                        (release -> the other's acquire returns)

Run: python3 benches/python/sync_locks.py [--quick]

Each figure is the median of 5 repetitions after a warm-up, with min and max.
Every child is joined with a timeout and killed if it overruns.
"""

import multiprocessing as mp
import statistics
import sys
import time

QUICK = "--quick" in sys.argv
SCALE = 10 if QUICK else 1
REPS = 5
JOIN_TIMEOUT = 60.0


def report(name, values, unit):
    med = statistics.median(values)
    print(
        f"python {name}: median {med:.4g} {unit} "
        f"(min {min(values):.4g}, max {max(values):.4g}, n={len(values)})",
        flush=True,
    )


def timed_pairs(lock, n):
    acquire, release = lock.acquire, lock.release
    t = time.perf_counter()
    for _ in range(n):
        acquire()
        release()
    return (time.perf_counter() - t) / n * 1e9


def uncontended(name, make):
    n = 200_000 // SCALE
    lock = make()
    timed_pairs(lock, n // 10)  # warm-up
    report(name, [timed_pairs(lock, n) for _ in range(REPS)], "ns/op")


def join_all(procs):
    for p in procs:
        p.join(JOIN_TIMEOUT)
    bad = [p for p in procs if p.is_alive() or p.exitcode != 0]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    if bad:
        sys.exit(f"child failed or timed out: {[p.exitcode for p in bad]}")


def incr_worker(lock, counter, n, barrier, times, slot):
    barrier.wait()
    t0 = time.perf_counter()
    for _ in range(n):
        with lock:
            counter.value += 1
    times[slot * 2] = t0
    times[slot * 2 + 1] = time.perf_counter()


def contended_once(n):
    lock = mp.Lock()
    counter = mp.RawValue("q", 0)
    barrier = mp.Barrier(2)
    times = mp.RawArray("d", 4)
    procs = [mp.Process(target=incr_worker, args=(lock, counter, n, barrier, times, i)) for i in range(2)]
    for p in procs:
        p.start()
    join_all(procs)
    if counter.value != 2 * n:
        sys.exit(f"lock lost increments: {counter.value} != {2 * n}")
    span = max(times[1], times[3]) - min(times[0], times[2])
    return span / (2 * n) * 1e9


def pingpong_worker(kind, a, b, n, barrier):
    barrier.wait()
    for _ in range(n):
        if kind == "event":
            a.wait()
            a.clear()
            b.set()
        else:
            a.acquire()
            b.release()


def pingpong_once(kind, n):
    if kind == "event":
        a, b = mp.Event(), mp.Event()
    else:
        a, b = mp.Semaphore(0), mp.Semaphore(0)
    barrier = mp.Barrier(2)
    child = mp.Process(target=pingpong_worker, args=(kind, a, b, n, barrier))
    child.start()
    barrier.wait()
    t = time.perf_counter()
    for _ in range(n):
        if kind == "event":
            a.set()
            b.wait()
            b.clear()
        else:
            a.release()
            b.acquire()
    elapsed = time.perf_counter() - t
    join_all([child])
    return elapsed / n * 1e6


def main():
    mp.set_start_method("fork")
    print(f"python {sys.version.split()[0]} multiprocessing sync reference, start method fork", flush=True)
    uncontended("lock_uncontended", mp.Lock)
    uncontended("rlock_uncontended", mp.RLock)
    n = 100_000 // SCALE
    contended_once(n // 10)
    report("lock_contended_2proc", [contended_once(n) for _ in range(REPS)], "ns/op")
    for kind in ("event", "semaphore"):
        rounds = 5_000 // SCALE
        pingpong_once(kind, rounds // 10)
        report(f"{kind}_pingpong_2proc", [pingpong_once(kind, rounds) for _ in range(REPS)], "us/roundtrip")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"# total wall time {time.perf_counter() - t0:.1f} s", file=sys.stderr)
