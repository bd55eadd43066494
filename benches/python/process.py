#!/usr/bin/env python3
"""Python `multiprocessing` reference figures for `benches/process.rs`.

Measures `p = ctx.Process(target=nothing); p.start(); p.join()` for the
start methods 'fork' and 'spawn' (the pair our `Process::fork` and
`Process::spawn` match), and, as the raw peers of the Rust bench,
`os.fork()` + `os._exit(0)` + `os.waitpid()` and a `subprocess` run of this
same interpreter with `-c pass`.

Run (standard library only, Linux):

    python3 benches/python/process.py           # full run, about 30 s
    python3 benches/python/process.py --quick   # smoke run, counts / 10

Every measurement does one untimed warm-up, then 5 timed repetitions of
`n` start+join pairs, and prints one line:

    python <name>: median <value> us/op (min <v>, max <v>, n=<reps>)

Every child is joined with a timeout and the script fails if one overruns
or exits with a non-zero code.
"""

import multiprocessing
import os
import statistics
import subprocess
import sys
import time

QUICK = "--quick" in sys.argv
SCALE = 10 if QUICK else 1
REPS = 5
JOIN_TIMEOUT = 60.0


def nothing():
    pass


def report(name, values):
    med = statistics.median(values)
    print(
        f"python {name}: median {med:.1f} us/op "
        f"(min {min(values):.1f}, max {max(values):.1f}, n={len(values)})",
        flush=True,
    )


def start_join(ctx):
    p = ctx.Process(target=nothing)
    p.start()
    p.join(JOIN_TIMEOUT)
    if p.is_alive():
        p.kill()
        p.join()
        sys.exit(f"error: child {p.pid} overran {JOIN_TIMEOUT}s")
    if p.exitcode != 0:
        sys.exit(f"error: child {p.pid} exited with {p.exitcode}")


def raw_fork():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        sys.exit(f"error: raw child exited with status {status}")


def raw_subprocess():
    subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=JOIN_TIMEOUT)


def measure(name, fn, n):
    fn()  # warm-up (starts the fork server / resource tracker if any)
    samples = []
    for _ in range(REPS):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t) / n * 1e6)
    report(name, samples)


def main():
    print(f"python {sys.version.split()[0]} multiprocessing process reference", flush=True)
    fork = multiprocessing.get_context("fork")
    spawn = multiprocessing.get_context("spawn")
    measure("process_start_join_fork", lambda: start_join(fork), max(1, 500 // SCALE))
    measure("raw_fork_waitpid", raw_fork, max(1, 1000 // SCALE))
    measure("process_start_join_spawn", lambda: start_join(spawn), max(1, 20 // SCALE))
    measure("raw_subprocess_python", raw_subprocess, max(1, 20 // SCALE))


if __name__ == "__main__":
    main()
