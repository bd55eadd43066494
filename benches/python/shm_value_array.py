#!/usr/bin/env python3
"""Python `multiprocessing` reference figures for the shared-memory benches.

Measures what CPython's own `multiprocessing` costs for the operations our
Rust crate reimplements, so the Rust numbers can be quoted in BENCHMARKS.md
as ratios against these:

  create               Value('d') / Array('d', 1024) construction, and
                       SharedMemory(create=True, size=4096) + close + unlink
  value_ops            .value get/set on a synchronized Value('q') and on a
                       RawValue('q'); a[i] on a synchronized Array('d', 1024)
  cross_process_incr   two forked processes each doing
                       `with v.get_lock(): v.value += 1` N times on one Value
  array_bulk_copy      copying 1 MiB / 64 MiB of doubles into an unlocked
                       Array('d', n) (memoryview copy), and `arr[:] = list`

The figures pair with the Rust criterion benches in `benches/shm.rs`
(groups: `array_bulk_copy`, `value_ops`, `cross_process_incr`, `create`).

Run (standard library only, Linux, start method 'fork'):

    python3 benches/python/shm_value_array.py           # full run, < 60 s
    python3 benches/python/shm_value_array.py --quick   # smoke run, counts / 10

Every measurement does one untimed warm-up, then 5 timed repetitions, and
prints one line:

    python <name>: median <value> <unit> (min <v>, max <v>, n=<reps>)

Notes on method:
  * The garbage collector is disabled inside timed regions (as `timeit` does).
  * Per-op loops are unrolled 10x so the Python `for` overhead is mostly
    amortised; what remains (~1-2 ns/op) is not subtracted.
  * The cross-process figure is timed inside the children (perf_counter is
    CLOCK_MONOTONIC, comparable across processes): elapsed = latest end -
    earliest start, after both children pass a shared Barrier. Process
    start-up and exit are therefore excluded.
"""

import argparse
import ctypes
import gc
import multiprocessing
import multiprocessing.shared_memory
import statistics
import sys
import time

REPS = 5
START_METHOD = "fork"
CHILD_TIMEOUT_S = 60.0

ctx = multiprocessing.get_context(START_METHOD)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def report(name, unit, samples):
    """Print one result line in the fixed format."""
    def fmt(x):
        return f"{x:.3f}" if x < 100 else f"{x:.1f}"
    print(
        f"python {name}: median {fmt(statistics.median(samples))} {unit} "
        f"(min {fmt(min(samples))}, max {fmt(max(samples))}, n={len(samples)})",
        flush=True,
    )


def timed(fn):
    """Run fn() once with the GC off; return elapsed seconds."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    finally:
        gc.enable()


def measure(name, unit, fn, convert):
    """Warm up fn once, time it REPS times, report convert(seconds) per rep."""
    fn()  # warm-up (not timed)
    samples = [convert(timed(fn)) for _ in range(REPS)]
    report(name, unit, samples)


def per_op_us(count):
    return lambda secs: secs * 1e6 / count


def per_op_ns(count):
    return lambda secs: secs * 1e9 / count


def gb_per_s(nbytes):
    return lambda secs: nbytes / secs / 1e9


# --------------------------------------------------------------------------
# create
# --------------------------------------------------------------------------

def bench_create(scale):
    n = 2000 // scale

    # Objects are kept alive in a list for the whole timed loop so that the
    # multiprocessing heap cannot hand the same block back each time; the
    # list is dropped (and the blocks freed) after the timer stops.
    def make_values():
        keep = [ctx.Value("d", 0.0) for _ in range(n)]
        return keep

    def make_arrays():
        keep = [ctx.Array("d", 1024) for _ in range(n)]
        return keep

    measure("value_new", "us/op", make_values, per_op_us(n))
    measure("array_new_1k", "us/op", make_arrays, per_op_us(n))

    # The first SharedMemory(create=True) starts the resource tracker
    # process; the warm-up absorbs that.
    def shm_create_unlink():
        for _ in range(n):
            shm = multiprocessing.shared_memory.SharedMemory(create=True, size=4096)
            shm.close()
            shm.unlink()

    measure("shm_create_unlink", "us/op", shm_create_unlink, per_op_us(n))


# --------------------------------------------------------------------------
# value_ops (single process)
# --------------------------------------------------------------------------

def _get_loop(v, iters):
    # 10 reads per iteration to amortise loop overhead.
    for _ in range(iters):
        v.value; v.value; v.value; v.value; v.value
        v.value; v.value; v.value; v.value; v.value


def _set_loop(v, iters):
    for i in range(iters):
        v.value = i; v.value = i; v.value = i; v.value = i; v.value = i
        v.value = i; v.value = i; v.value = i; v.value = i; v.value = i


def bench_value_ops(scale):
    sync_ops = 300_000 // scale     # synchronized: lock acquire/release each op
    raw_ops = 1_000_000 // scale    # raw ctypes access is much cheaper

    v = ctx.Value("q", 0)
    it = sync_ops // 10
    measure("value_get", "ns/op", lambda: _get_loop(v, it), per_op_ns(it * 10))
    measure("value_set", "ns/op", lambda: _set_loop(v, it), per_op_ns(it * 10))

    r = ctx.RawValue("q", 0)
    it = raw_ops // 10
    measure("rawvalue_get", "ns/op", lambda: _get_loop(r, it), per_op_ns(it * 10))
    measure("rawvalue_set", "ns/op", lambda: _set_loop(r, it), per_op_ns(it * 10))


def bench_array_get_item(scale):
    ops = 300_000 // scale
    a = ctx.Array("d", 1024)            # synchronized (lock=True default)
    rounds = max(1, ops // 1024)

    def loop():
        for _ in range(rounds):
            for i in range(1024):
                a[i]

    measure("array_locked_get_item", "ns/op", loop, per_op_ns(rounds * 1024))


# --------------------------------------------------------------------------
# cross_process_incr
# --------------------------------------------------------------------------

def _incr_worker(v, n, barrier, times, slot):
    """Child: wait for the sibling, then do n locked increments.

    Start/end timestamps go into times[2*slot], times[2*slot+1].
    """
    barrier.wait()
    t0 = time.perf_counter()
    lock = v.get_lock()
    for _ in range(n):
        with lock:
            v.value += 1
    t1 = time.perf_counter()
    times[2 * slot] = t0
    times[2 * slot + 1] = t1


def _run_incr_2proc(n):
    """One 2-process run; returns elapsed seconds covering only increments."""
    v = ctx.Value("q", 0)
    times = ctx.RawArray("d", 4)
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(target=_incr_worker, args=(v, n, barrier, times, slot))
        for slot in range(2)
    ]
    for p in procs:
        p.start()

    failed = False
    for p in procs:
        p.join(CHILD_TIMEOUT_S)
        if p.is_alive():
            print(f"error: child {p.pid} overran {CHILD_TIMEOUT_S}s, terminating",
                  file=sys.stderr)
            p.terminate()
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
            failed = True
        elif p.exitcode != 0:
            print(f"error: child {p.pid} exited with {p.exitcode}", file=sys.stderr)
            failed = True
    if failed:
        # Release anyone still waiting on the barrier, then stop the others.
        barrier.abort()
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
        sys.exit(1)

    if v.value != 2 * n:
        print(f"error: final count {v.value} != expected {2 * n}", file=sys.stderr)
        sys.exit(1)

    return max(times[1], times[3]) - min(times[0], times[2])


def bench_cross_process_incr(scale, n):
    n = max(1, n // scale)
    _run_incr_2proc(max(1, n // 10))  # warm-up (smaller: it only warms caches)
    secs = [_run_incr_2proc(n) for _ in range(REPS)]
    total = 2 * n
    report("value_locked_incr_2proc", "Mops/s", [total / s / 1e6 for s in secs])
    report("value_locked_incr_2proc", "ns/op", [s * 1e9 / total for s in secs])


# --------------------------------------------------------------------------
# array_bulk_copy
# --------------------------------------------------------------------------

def bench_bulk_copy(scale):
    # Copies per timed repetition, chosen so each rep is ~10-20 ms or more.
    for label, nbytes, copies in (("1mib", 1 << 20, 200), ("64mib", 64 << 20, 8)):
        copies = max(1, copies // scale)
        n = nbytes // 8
        arr = ctx.Array("d", n, lock=False)  # plain ctypes array in shared heap
        # Non-zero source whose pages are all touched already.
        src = memoryview(bytes(range(256)) * (nbytes // 256))
        # ctypes reports format '<d'; casting to bytes gives a flat byte view.
        # (ctypes.memmove(arr, src, nbytes) measures the same, within noise.)
        dst = memoryview(arr).cast("B")

        def copy():
            for _ in range(copies):
                dst[:] = src

        measure(f"array_bulk_copy_{label}", "GB/s", copy, gb_per_s(nbytes * copies))
        assert dst[:256] == src[:256] and dst[-256:] == src[-256:]
        del dst, src, arr

    # Element-wise: assign a Python list of floats via slice assignment.
    nbytes = 1 << 20
    n = nbytes // 8
    copies = max(1, 20 // scale)
    arr = ctx.Array("d", n, lock=False)
    values = [float(i) for i in range(n)]

    def copy_list():
        for _ in range(copies):
            arr[:] = values

    measure("array_bulk_copy_1mib_slice_list", "GB/s", copy_list,
            gb_per_s(nbytes * copies))
    assert arr[n - 1] == float(n - 1)


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="divide all iteration counts by 10 (smoke run)")
    ap.add_argument("--incr-n", type=int, default=200_000,
                    help="increments per process for value_locked_incr_2proc")
    args = ap.parse_args()
    scale = 10 if args.quick else 1

    print(f"python {sys.version.split()[0]} multiprocessing reference, "
          f"start method {START_METHOD}", flush=True)

    t_start = time.perf_counter()
    bench_create(scale)
    bench_value_ops(scale)
    bench_array_get_item(scale)
    # Before the bulk copy, so the forked children don't inherit 64 MiB buffers.
    bench_cross_process_incr(scale, args.incr_n)
    bench_bulk_copy(scale)
    print(f"# total wall time {time.perf_counter() - t_start:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
