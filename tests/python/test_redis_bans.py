"""Bans on the Redis store: checked and begun inside the decision script, so
one ban holds for every process and host at once."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import threading
import uuid
from typing import Any

import pytest
import redis

from rust_py_rate_limit import ManualClock, RateLimiter


@pytest.fixture
def prefix() -> str:
    return f"bans-{uuid.uuid4().hex[:10]}"


def banning(
    url: str, prefix: str, clock: ManualClock | None, **extra: Any
) -> RateLimiter:
    """2 hits per 10 s; 3 refusals within 10 s ban for 60 s."""
    options: dict[str, Any] = {
        "storage": url,
        "key_prefix": prefix,
        "on_error": "raise",
        "timeout": 5,
        "ban_after": 3,
        "ban_within": 10,
        "ban_seconds": 60,
    }
    if clock is not None:
        options["clock"] = clock
    options.update(extra)
    return RateLimiter(2, 10, **options)


def test_the_third_refusal_bans_until_exactly_its_end(
    redis_url: str, prefix: str
) -> None:
    clock = ManualClock()
    lim = banning(redis_url, prefix, clock, local_cache_keys=0)
    assert [lim.allow("k") for _ in range(2)] == [True, True]
    refusals = [lim.decide("k") for _ in range(3)]
    assert [d.allowed for d in refusals] == [False] * 3
    assert [d.banned for d in refusals] == [False, False, True]
    assert refusals[2].retry_after == 60.0
    assert lim.banned_for("k") == 60.0
    assert lim.stats()["bans"] == 1
    # Banned: refused with the ban's time left, counters untouched.
    server = redis.Redis.from_url(redis_url)
    state = lim._redis_keys("k")[0]
    before = server.dump(state)
    clock.advance(30)
    d = lim.decide("k")
    assert (d.allowed, d.banned, d.retry_after, d.remaining) == (False, True, 30.0, 0)
    assert lim.peek("k").banned
    assert server.dump(state) == before
    clock.advance(30 - 1e-6)
    assert lim.decide("k").banned  # a microsecond before the end
    clock.advance(1e-6)
    after = lim.decide("k")
    assert (after.allowed, after.banned, after.remaining) == (True, False, 1)
    assert lim.banned_for("k") is None


def test_refusals_outside_the_span_do_not_ban(redis_url: str, prefix: str) -> None:
    clock = ManualClock()
    lim = banning(redis_url, prefix, clock, local_cache_keys=0)
    for _ in range(6):
        assert [lim.allow("k") for _ in range(2)] == [True, True]
        assert not lim.decide("k").banned  # one refusal per 10 s window
        clock.advance(10)
    assert lim.stats()["bans"] == 0


def test_manual_ban_unban_and_banned_for(redis_url: str, prefix: str) -> None:
    clock = ManualClock()
    lim = RateLimiter(5, 60, storage=redis_url, key_prefix=prefix, clock=clock)
    assert lim.banned_for("k") is None
    assert lim.unban("k") is False
    lim.ban("k", 2.5)
    assert lim.banned_for("k") == 2.5
    d = lim.decide("k")
    assert (d.allowed, d.banned, d.retry_after) == (False, True, 2.5)
    assert lim.stats()["bans"] == 1
    assert lim.unban("k") is True
    assert lim.allow("k") is True  # the local cache forgot the ban
    lim.ban("k", 1)
    clock.advance(1)
    assert lim.banned_for("k") is None
    assert lim.allow("k") is True
    with pytest.raises(ValueError, match="seconds"):
        lim.ban("k", 0)
    with pytest.raises(TypeError, match="seconds"):
        lim.ban("k", None)  # type: ignore[arg-type]


def test_awaitable_twins(redis_url: str, prefix: str) -> None:
    lim = RateLimiter(5, 60, storage=redis_url, key_prefix=prefix)

    async def run() -> tuple[Any, ...]:
        await lim.aban("k", 30)
        left = await lim.abanned_for("k")
        refused = await lim.adecide("k")
        lifted = await lim.aunban("k")
        return (
            left,
            refused.banned,
            lifted,
            await lim.abanned_for("k"),
            await lim.aallow("k"),
        )

    left, banned, lifted, after, admitted = asyncio.run(run())
    assert 29 < left <= 30
    assert (banned, lifted, after, admitted) == (True, True, None, True)


def test_reset_lifts_a_ban(redis_url: str, prefix: str) -> None:
    lim = RateLimiter(5, 60, storage=redis_url, key_prefix=prefix)
    lim.ban("k", 60)
    assert lim.reset("k") is False  # no rate state: the ban went all the same
    assert lim.banned_for("k") is None
    lim.ban("k", 60)
    lim.clear()
    assert lim.allow("k") is True


def test_compound_limits_ban_once_per_key(redis_url: str, prefix: str) -> None:
    clock = ManualClock()
    lim = RateLimiter(
        rate="2/second;3/minute", storage=redis_url, key_prefix=prefix, clock=clock,
        ban_after=2, ban_within=60, ban_seconds=30, local_cache_keys=0,
    )  # fmt: skip
    assert [lim.allow("k") for _ in range(2)] == [True, True]
    assert lim.decide("k").banned is False  # the per-second rule refuses
    clock.advance(1)
    assert lim.allow("k") is True
    d = lim.decide("k")  # the per-minute rule refuses: the second refusal
    # The ban began; the minute's own wait (59 s) is the longer one.
    assert (d.banned, d.retry_after) == (True, 59.0)
    assert lim.banned_for("k") == 30.0
    clock.advance(29)
    assert lim.decide("k").banned
    clock.advance(1)
    assert lim.decide("k").banned is False  # the ban is over; the minute is not


def test_a_cached_ban_keeps_its_flag(redis_url: str, prefix: str) -> None:
    lim = banning(redis_url, prefix, None)
    for _ in range(5):
        lim.decide("k")
    server = redis.Redis.from_url(redis_url)
    calls = server.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    flood = [lim.decide("k", cost=c) for c in (1, 2, 1, 2)]
    assert all(d.banned and not d.allowed for d in flood)
    after = server.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    assert after - calls == 0, "a banned key's refusals come from the local cache"
    assert lim.stats()["local_cache_hits"] >= 4


def test_matches_the_memory_store_over_a_random_sequence(
    redis_url: str, prefix: str
) -> None:
    rng = random.Random(1234)
    for algorithm in ("fixed", "sliding", "sliding_log", "gcra", "token_bucket"):
        clocks = ManualClock(), ManualClock()
        options: dict[str, Any] = {
            "algorithm": algorithm,
            "ban_after": 3,
            "ban_within": 5,
            "ban_seconds": 7,
        }
        memory = RateLimiter(4, 10, clock=clocks[0], **options)
        remote = RateLimiter(
            4, 10, clock=clocks[1], storage=redis_url,
            key_prefix=f"{prefix}-{algorithm}", local_cache_keys=0,
            on_error="raise", timeout=5, **options,
        )  # fmt: skip
        for step in range(300):
            key = rng.choice("ab")
            cost = rng.choice((1, 1, 1, 2))
            a, b = memory.decide(key, cost), remote.decide(key, cost)
            # Redis keeps microseconds: times agree to one.
            assert (a.allowed, a.banned, a.remaining) == (
                b.allowed, b.banned, b.remaining,
            ), (algorithm, step, a, b)  # fmt: skip
            assert abs(a.retry_after - b.retry_after) <= 1e-6, (algorithm, step, a, b)
            assert abs(a.reset_after - b.reset_after) <= 1e-6, (algorithm, step, a, b)
            dt = rng.choice((0, 0, 0.25, 1, 3))
            for clock in clocks:
                clock.advance(dt)
        assert memory.stats()["bans"] == remote.stats()["bans"] > 0, algorithm


def test_eight_threads_begin_exactly_one_ban(redis_url: str, prefix: str) -> None:
    lim = RateLimiter(
        50, 60, storage=redis_url, key_prefix=prefix, on_error="raise", timeout=5,
        ban_after=20, ban_seconds=60, local_cache_keys=0,
    )  # fmt: skip
    results: list[list[Any]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def hammer(i: int) -> None:
        start.wait()
        results[i] = [lim.decide("k") for _ in range(40)]

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    decisions = [d for part in results for d in part]
    assert sum(d.allowed for d in decisions) == 50
    assert lim.stats()["bans"] == 1
    assert lim.banned_for("k") is not None


WORKER = """
import json, sys
from rust_py_rate_limit import RateLimiter
url, prefix = sys.argv[1], sys.argv[2]
lim = RateLimiter(10, 60, storage=url, key_prefix=prefix, on_error="raise",
                  timeout=5, ban_after=5, ban_seconds=60)
print("ready", flush=True)
sys.stdin.readline()
decisions = [lim.decide("k") for _ in range(20)]
print(json.dumps({
    "admitted": sum(d.allowed for d in decisions),
    "bans": lim.stats()["bans"],
    "banned_now": lim.decide("k").banned,
}), flush=True)
"""


def test_four_processes_see_one_ban(redis_url: str, prefix: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, redis_url, prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:  # all at once
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = []
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert sum(r["admitted"] for r in reports) == 10
    assert sum(r["bans"] for r in reports) == 1
    assert all(r["banned_now"] for r in reports)
    main = RateLimiter(
        10, 60, storage=redis_url, key_prefix=prefix, ban_after=5, ban_seconds=60
    )
    left = main.banned_for("k")
    assert left is not None
    assert 0 < left <= 60
