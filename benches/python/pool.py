"""Python's multiprocessing.Pool, the peer of benches/pool.rs.

    python3 benches/python/pool.py

Prints, for Pool(2) with fork: the time per task of map(identity,
range(1000), chunksize=1), of map(identity, range(100000)) with the
default chunks, and of one apply_async(identity, (7,)).get() round trip;
best of 5 runs each.
"""
import multiprocessing as mp
import time


def identity(x):
    return x


def best(f, runs=5):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    mp.set_start_method("fork")
    with mp.Pool(2) as pool:
        pool.map(identity, range(100))
        t = best(lambda: pool.map(identity, range(1000), chunksize=1))
        print(f"map chunksize 1: {t / 1000 * 1e6:.2f} us/task")
        t = best(lambda: pool.map(identity, range(100_000)))
        print(f"map default chunks: {t / 100_000 * 1e6:.3f} us/task")
        n = 2000
        t = best(lambda: [pool.apply_async(identity, (7,)).get() for _ in range(n)])
        print(f"apply_async + get: {t / n * 1e6:.1f} us")


if __name__ == "__main__":
    main()
