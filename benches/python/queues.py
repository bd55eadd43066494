#!/usr/bin/env python3
"""Python `multiprocessing` reference figures for the Rust benches in
`benches/queue.rs` (shared-memory queues).

Measures, with the 'fork' start method:

* queue_throughput:       ints 0..N-1 put on a `multiprocessing.Queue` by a
                          child and got by the parent, messages per second
                          (the sum is checked)
* simplequeue_throughput: the same with a `multiprocessing.SimpleQueue`
* queue_throughput_tuple: tuples `(i, None, "twelve bytes")` through a
                          `Queue`, messages per second; pairs with the tuple
                          `MessageQueue` in `benches/messages.rs`
* pipe_roundtrip:         a child echoes ints over a duplex `Pipe()`,
                          microseconds per round trip (send -> recv back)
* queue_roundtrip:        the same through two `Queue`s (the parent puts on
                          A and gets from B; the child gets from A and puts
                          on B), microseconds per round trip; pairs with
                          `pingpong_blocking` in `benches/queue.rs`

Run: python3 benches/python/queues.py [--quick]

Each figure is the median of 5 repetitions after a warm-up, with min and max.
Every child is joined with a timeout and killed if it overruns.
"""

import multiprocessing as mp
import signal
import statistics
import sys
import time

QUICK = "--quick" in sys.argv
SCALE = 10 if QUICK else 1
REPS = 5
JOIN_TIMEOUT = 60.0
GET_TIMEOUT = 30.0


def report(name, values, unit):
    med = statistics.median(values)
    print(
        f"python {name}: median {med:.4g} {unit} "
        f"(min {min(values):.4g}, max {max(values):.4g}, n={len(values)})",
        flush=True,
    )


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


def producer(q, n, barrier, tuples):
    barrier.wait()
    put = q.put
    if tuples:
        for i in range(n):
            put((i, None, "twelve bytes"))
    else:
        for i in range(n):
            put(i)


def throughput_once(make, n, simple, tuples=False):
    q = make()
    barrier = mp.Barrier(2)
    child = mp.Process(target=producer, args=(q, n, barrier, tuples))
    child.start()
    try:
        barrier.wait(GET_TIMEOUT)
        t = time.perf_counter()
        total = 0
        if simple:
            # SimpleQueue.get has no timeout: an alarm bounds the loop.
            signal.alarm(int(GET_TIMEOUT))
            get = q.get
            for _ in range(n):
                total += get()
            signal.alarm(0)
        elif tuples:
            get = q.get
            for _ in range(n):
                i, none, s = get(True, GET_TIMEOUT)
                total += i + (none is not None) + len(s) - 12
        else:
            get = q.get
            for _ in range(n):
                total += get(True, GET_TIMEOUT)
        elapsed = time.perf_counter() - t
    finally:
        join_all([child])
    if total != n * (n - 1) // 2:
        sys.exit(f"queue lost items: sum {total} != {n * (n - 1) // 2}")
    return n / elapsed


def pipe_echo(conn, n, barrier):
    barrier.wait()
    for _ in range(n):
        conn.send(conn.recv())


def pipe_roundtrip_once(n):
    parent, child_end = mp.Pipe()
    barrier = mp.Barrier(2)
    child = mp.Process(target=pipe_echo, args=(child_end, n, barrier))
    child.start()
    try:
        barrier.wait(GET_TIMEOUT)
        t = time.perf_counter()
        for i in range(n):
            parent.send(i)
            if not parent.poll(GET_TIMEOUT) or parent.recv() != i:
                sys.exit("pipe round trip failed")
        elapsed = time.perf_counter() - t
    finally:
        join_all([child])
    return elapsed / n * 1e6


def queue_echo(a, b, n, barrier):
    barrier.wait()
    for _ in range(n):
        b.put(a.get(True, GET_TIMEOUT))


def queue_roundtrip_once(n):
    a, b = mp.Queue(), mp.Queue()
    barrier = mp.Barrier(2)
    child = mp.Process(target=queue_echo, args=(a, b, n, barrier))
    child.start()
    try:
        barrier.wait(GET_TIMEOUT)
        t = time.perf_counter()
        for i in range(n):
            a.put(i)
            if b.get(True, GET_TIMEOUT) != i:
                sys.exit("queue round trip failed")
        elapsed = time.perf_counter() - t
    finally:
        join_all([child])
    return elapsed / n * 1e6


def on_alarm(_sig, _frame):
    raise TimeoutError(f"a SimpleQueue get waited past {GET_TIMEOUT} s")


def main():
    mp.set_start_method("fork")
    signal.signal(signal.SIGALRM, on_alarm)
    print(f"python {sys.version.split()[0]} multiprocessing queue reference, start method fork", flush=True)
    n = 200_000 // SCALE
    for name, make, simple in (
        ("queue_throughput", mp.Queue, False),
        ("simplequeue_throughput", mp.SimpleQueue, True),
    ):
        throughput_once(make, n // 10, simple)  # warm-up
        report(name, [throughput_once(make, n, simple) for _ in range(REPS)], "msgs/s")
    throughput_once(mp.Queue, n // 10, False, True)  # warm-up
    report(
        "queue_throughput_tuple",
        [throughput_once(mp.Queue, n, False, True) for _ in range(REPS)],
        "msgs/s",
    )
    rounds = 10_000 // SCALE
    pipe_roundtrip_once(rounds // 10)
    report("pipe_roundtrip", [pipe_roundtrip_once(rounds) for _ in range(REPS)], "us/roundtrip")
    queue_roundtrip_once(rounds // 10)
    report("queue_roundtrip", [queue_roundtrip_once(rounds) for _ in range(REPS)], "us/roundtrip")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"# total wall time {time.perf_counter() - t0:.1f} s", file=sys.stderr)
