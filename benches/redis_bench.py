"""Redis store figures, side by side in one process (needs a Redis server).

    .venv/bin/python benches/redis_bench.py [--url redis://127.0.0.1:6379/15]

Rows, each the median of interleaved repeats, as ratios to a raw EVALSHA round
trip from redis-py in the same process:

- ``redis-py PING`` and ``redis-py EVALSHA`` of a trivial script (baselines);
- ``allow()`` of ours on a Redis store, one thread;
- ``await aallow()`` one at a time, and 100 concurrent awaits (per hit).

Targets: ``allow()`` at most 1.1x an EVALSHA round trip; 100 concurrent
awaits at least 5x the sequential rate.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Callable

import redis

from rust_py_rate_limit import RateLimiter


def per_call(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    client = redis.Redis.from_url(args.url)
    sha = client.script_load("return 1")
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    limiter = RateLimiter(10**7, 60, storage=args.url, key_prefix=prefix, timeout=1.0)
    limiter.allow("warm")

    async def sequential(n: int) -> None:
        for _ in range(n):
            await limiter.aallow("k")

    async def concurrent(n: int) -> None:
        for _ in range(n // 100):
            await asyncio.gather(*(limiter.aallow("k") for _ in range(100)))

    rows: dict[str, list[float]] = {
        "redis-py PING": [],
        "redis-py EVALSHA": [],
        "ours allow()": [],
        "ours await aallow(), one at a time": [],
        "ours await aallow(), 100 concurrent": [],
    }
    loop = asyncio.new_event_loop()
    for _ in range(args.repeats):
        rows["redis-py PING"].append(per_call(client.ping, args.n))
        rows["redis-py EVALSHA"].append(
            per_call(lambda: client.evalsha(sha, 0), args.n)
        )
        rows["ours allow()"].append(per_call(lambda: limiter.allow("k"), args.n))
        start = time.perf_counter_ns()
        loop.run_until_complete(sequential(args.n))
        rows["ours await aallow(), one at a time"].append(
            (time.perf_counter_ns() - start) / args.n / 1000
        )
        start = time.perf_counter_ns()
        loop.run_until_complete(concurrent(args.n))
        rows["ours await aallow(), 100 concurrent"].append(
            (time.perf_counter_ns() - start) / args.n / 1000
        )
    loop.close()
    limiter.clear()
    medians = {name: statistics.median(values) for name, values in rows.items()}
    base = medians["redis-py EVALSHA"]
    print(f"## Redis store ({args.url}, median of {args.repeats} x {args.n} hits)\n")
    print("| what | µs per hit | x EVALSHA round trip |")
    print("|---|---|---|")
    for name, value in medians.items():
        print(f"| {name} | {value:.1f} | {value / base:.2f}x |")
    allow_ratio = medians["ours allow()"] / base
    speedup = (
        medians["ours await aallow(), one at a time"]
        / medians["ours await aallow(), 100 concurrent"]
    )
    print("\n### Targets\n")
    verdict = "PASS" if allow_ratio <= 1.1 else "MISS"
    print(
        f"- {verdict} allow() <= 1.1x a redis-py EVALSHA round trip: {allow_ratio:.2f}x"
    )
    verdict = "PASS" if speedup >= 5 else "MISS"
    print(
        f"- {verdict} 100 concurrent aallow() >= 5x the sequential rate: {speedup:.1f}x"
    )


if __name__ == "__main__":
    main()
