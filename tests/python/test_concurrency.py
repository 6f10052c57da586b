"""Exact counts under forced thread interleaving."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from rust_py_rate_limit import RateLimiter


@pytest.fixture
def tiny_switch_interval() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def run_threads(n: int, target: Callable[[int], None]) -> None:
    start = threading.Barrier(n)

    def body(i: int) -> None:
        start.wait()
        target(i)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.usefixtures("tiny_switch_interval")
@pytest.mark.parametrize("round_", range(20))
def test_eight_threads_on_one_key_admit_exactly_the_limit(round_: int) -> None:
    limiter = RateLimiter(limit=10_000, window_seconds=3600)
    admitted = [0] * 8

    def work(i: int) -> None:
        allow = limiter.allow
        admitted[i] = sum(allow("hot") for _ in range(5_000))

    run_threads(8, work)
    assert sum(admitted) == 10_000
    assert limiter.stats() == {
        "allowed": 10_000,
        "blocked": 30_000,
        "total_checks": 40_000,
        "active_keys": 1,
        "rejected_full": 0,
        "expired_removed": 0,
        "cleanup_runs": 0,
        "storage_errors": 0,
        "breaker": "closed",
        "bans": 0,
        "banned_keys": 0,
        "denied": 0,
        "shadow_refused": 0,
        "local_cache_hits": 0,
        "events_dropped": 0,
    }


@pytest.mark.usefixtures("tiny_switch_interval")
def test_eight_threads_over_many_keys_keep_exact_counts() -> None:
    keys = [f"user:{i}" for i in range(1_000)]
    # Thread i hits every key 3 times, and the keys j with j % 8 == i
    # (j + 1) % 5 more times with cost 2: uneven, overlapping work.
    plans = [
        [(k, 1) for _ in range(3) for k in keys]
        + [(keys[j], 2) for j in range(i, 1_000, 8) for _ in range((j + 1) % 5)]
        for i in range(8)
    ]
    expected = Counter[str]()
    for plan in plans:
        for key, cost in plan:
            expected[key] += cost
    limiter = RateLimiter(limit=10**6, window_seconds=3600)

    def work(i: int) -> None:
        allow = limiter.allow
        for key, cost in plans[i]:
            allow(key, cost)

    run_threads(8, work)
    for key in keys:
        assert limiter.remaining(key) == 10**6 - expected[key], key
    assert limiter.stats()["total_checks"] == sum(len(p) for p in plans)
    assert limiter.stats()["active_keys"] == 1_000
