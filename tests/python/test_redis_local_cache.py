"""The Redis store's local over-limit cache: a refusal Redis returned is
remembered per key until its retry time, and hits of at least its cost are
refused from memory meanwhile, without a script call."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from test_redis_link import go_live

from rust_py_rate_limit import ManualClock, RateLimiter
from rust_py_rate_limit._policy.policy import RequestPolicy

ALGORITHMS = ["fixed", "sliding", "sliding_log", "token_bucket", "gcra"]


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    name = f"lcache-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{name}*"):
        client.delete(key)


def script_calls(redis_url: str) -> int:
    """Script calls the server has run so far (EVALSHA and EVAL)."""
    with redis.Redis.from_url(redis_url) as client:
        stats = client.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
        for name in ("evalsha", "eval")
    )


def limiter(redis_url: str, prefix: str, *args: Any, **kwargs: Any) -> RateLimiter:
    kwargs.setdefault("on_error", "raise")
    kwargs.setdefault("timeout", 2.0)
    return RateLimiter(*args, storage=redis_url, key_prefix=prefix, **kwargs)


def test_a_sync_flood_on_a_refused_key_costs_a_handful_of_calls(
    redis_url: str, prefix: str
) -> None:
    lim = limiter(redis_url, prefix, 5, 60)
    assert [lim.allow("k") for _ in range(6)] == [True] * 5 + [False]
    before = script_calls(redis_url)
    decisions = [lim.decide("k") for _ in range(10_000)]
    assert script_calls(redis_url) - before <= 3
    assert not any(d.allowed for d in decisions)
    assert all(d.remaining == 0 and d.limit == 5 for d in decisions)
    assert all(0 < d.retry_after <= 60 for d in decisions)
    assert all(d.reset_after >= d.retry_after for d in decisions)
    # Non-increasing: each counts down to the same moment.
    retries = [d.retry_after for d in decisions]
    assert retries == sorted(retries, reverse=True)
    stats = lim.stats()
    assert stats["local_cache_hits"] >= 9_997
    assert stats["blocked"] == 10_001
    assert stats["allowed"] == 5
    # Another key, and a cheaper hit than the refused one, still reach Redis.
    before = script_calls(redis_url)
    assert lim.allow("other")
    assert script_calls(redis_url) - before == 1


def test_a_refusal_answers_only_hits_of_at_least_its_cost(
    redis_url: str, prefix: str
) -> None:
    lim = limiter(redis_url, prefix, 5, 60)
    assert lim.allow("k", cost=3)
    assert not lim.allow("k", cost=3)  # 2 left: refused by Redis, remembered
    before = script_calls(redis_url)
    assert not lim.allow("k", cost=4)  # costlier: from the cache
    assert not lim.allow("k", cost=3)
    assert script_calls(redis_url) - before == 0
    assert lim.allow("k", cost=2)  # cheaper: Redis admits it
    assert script_calls(redis_url) - before == 1
    # The admission forgot the refusal: the next hit asks Redis again.
    assert not lim.allow("k", cost=3)
    assert script_calls(redis_url) - before == 2


def test_peeks_go_to_redis(redis_url: str, prefix: str) -> None:
    lim = limiter(redis_url, prefix, 1, 60)
    assert lim.allow("k")
    assert not lim.allow("k")
    before = script_calls(redis_url)
    assert lim.remaining("k") == 0
    assert not lim.peek("k").allowed
    assert script_calls(redis_url) - before == 2


def test_an_awaited_flood_costs_a_handful_of_calls(redis_url: str, prefix: str) -> None:
    lim = limiter(redis_url, prefix, 5, 60)

    async def main() -> None:
        # The runtime path (no link yet), then the link.
        assert [await lim.aallow("k") for _ in range(6)] == [True] * 5 + [False]
        await go_live(lim)
        before = script_calls(redis_url)
        sequential = [await lim.adecide("k") for _ in range(10_000)]
        gathered = await asyncio.gather(*(lim.aallow("k") for _ in range(10_000)))
        assert script_calls(redis_url) - before <= 3
        assert not any(d.allowed for d in sequential)
        assert all(0 < d.retry_after <= 60 for d in sequential)
        assert not any(gathered)
        # Refused on the link itself: a fresh key, cached from its reply.
        assert [await lim.aallow("j") for _ in range(6)] == [True] * 5 + [False]
        before = script_calls(redis_url)
        assert not any(await asyncio.gather(*(lim.aallow("j") for _ in range(1000))))
        assert script_calls(redis_url) - before == 0
        assert lim._link_status() == "live"

    asyncio.run(main())
    assert lim.stats()["local_cache_hits"] >= 21_000 - 6


def test_runtime_path_refusals_are_cached(redis_url: str, prefix: str) -> None:
    """No link ever opens outside a running loop's awaits: the runtime
    path's replies (decided in batches) fill the cache too."""
    lim = limiter(redis_url, prefix, 3, 60)

    async def main() -> list[bool]:
        return list(await asyncio.gather(*(lim.aallow("k") for _ in range(50))))

    got = asyncio.run(main())
    assert got.count(True) == 3
    before = script_calls(redis_url)
    assert not lim.allow("k")  # sync, from what the awaits remembered
    assert script_calls(redis_url) - before == 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_decisions_with_and_without_the_cache_are_identical(
    redis_url: str, prefix: str, algorithm: str
) -> None:
    clock = ManualClock()
    clock.advance(1_780_000_000)
    options: dict[str, Any] = {"algorithm": algorithm, "clock": clock}
    if algorithm in ("token_bucket", "gcra"):
        options["burst"] = 6
    cached = limiter(redis_url, prefix + "-on", 6, 2, **options)
    plain = limiter(redis_url, prefix + "-off", 6, 2, local_cache_keys=0, **options)
    rng = random.Random(f"lcache-{algorithm}")
    keys = ["a", "b", "c"]
    exact = 0
    for step in range(1500):
        if rng.random() < 0.3:
            clock.advance(rng.choice([1e-6, 0.001, 0.013, 0.1, 0.37, 1.0]))
        key = rng.choice(keys)
        cost = rng.choice([1, 1, 1, 2, 3, 6])
        a, b = cached.decide(key, cost=cost), plain.decide(key, cost=cost)
        where = f"step {step}: {key} cost {cost}"
        assert a.allowed == b.allowed, where
        assert a.limit == b.limit, where
        if a.allowed or cost == 1:
            # A cost-1 refusal is remembered for cost 1: the same moment.
            assert a.retry_after == b.retry_after, where
            assert a.remaining == b.remaining, where
        else:
            # Answered from a cheaper hit's refusal, the retry time is that
            # one's: never later than Redis's (a lower bound).
            assert 0 < a.retry_after <= b.retry_after, where
            assert a.remaining <= b.remaining, where
            exact += a.retry_after == b.retry_after
    assert cached.stats()["local_cache_hits"] > 50
    assert plain.stats()["local_cache_hits"] == 0
    assert cached.stats()["blocked"] == plain.stats()["blocked"]


def test_another_limiters_reset_is_seen_once_the_cached_time_passed(
    redis_url: str, prefix: str
) -> None:
    clock = ManualClock()
    clock.advance(1_780_000_000)
    lim = limiter(redis_url, prefix, 2, 10, algorithm="gcra", clock=clock)
    other = limiter(redis_url, prefix, 2, 10, algorithm="gcra", clock=clock)
    assert lim.allow("k")
    assert lim.allow("k")
    refused = lim.decide("k")
    assert not refused.allowed
    retry = refused.retry_after
    assert 0 < retry <= 10
    assert other.reset("k")  # "another process"
    assert other.allow("k")  # Redis admits again...
    other.reset("k")
    # ...but this one still answers from its cache until the retry time.
    clock.advance(retry - 0.001)
    assert not lim.allow("k")
    assert lim.decide("k").retry_after == pytest.approx(0.001)
    clock.advance(0.001)
    assert lim.allow("k")


def test_own_reset_and_clear_forget_at_once(redis_url: str, prefix: str) -> None:
    clock = ManualClock()
    lim = limiter(redis_url, prefix, 1, 60, clock=clock)
    assert lim.allow("k")
    assert not lim.allow("k")
    assert lim._local_cache_len() == 1
    assert lim.reset("k")
    assert lim._local_cache_len() == 0
    assert lim.allow("k")
    assert not lim.allow("k")
    assert lim.allow("j")
    assert not lim.allow("j")
    assert lim._local_cache_len() == 2
    lim.clear()
    assert lim._local_cache_len() == 0
    assert lim.allow("k")
    assert lim.allow("j")

    async def main() -> None:
        assert not await lim.aallow("k")
        assert lim._local_cache_len() == 1
        assert await lim.areset("k")
        assert lim._local_cache_len() == 0
        assert await lim.aallow("k")
        assert not await lim.aallow("k")
        await lim.aclear()
        assert lim._local_cache_len() == 0
        assert await lim.aallow("k")

    asyncio.run(main())


def test_zero_turns_the_cache_off(redis_url: str, prefix: str) -> None:
    lim = limiter(redis_url, prefix, 1, 60, local_cache_keys=0)
    assert lim.allow("k")
    before = script_calls(redis_url)
    assert not any(lim.allow("k") for _ in range(50))

    async def main() -> None:
        await go_live(lim)
        assert not any([await lim.aallow("k") for _ in range(20)])

    asyncio.run(main())
    # 50 sync hits, 20 awaited ones and go_live's two warm-up hits.
    assert script_calls(redis_url) - before == 72
    assert lim._local_cache_len() == 0
    assert lim.stats()["local_cache_hits"] == 0


def test_the_bound_holds(redis_url: str, prefix: str) -> None:
    clock = ManualClock()
    lim = limiter(redis_url, prefix, 1, 10, clock=clock, local_cache_keys=10)
    for i in range(60):
        key = f"k{i}"
        assert lim.allow(key)
        assert not lim.allow(key)  # Redis refuses: remembered...
        assert not lim.allow(key)  # ...and answered from memory
        assert lim._local_cache_len() <= 10
    assert lim._local_cache_len() == 10
    assert lim.stats()["local_cache_hits"] == 60
    assert lim.stats()["blocked"] == 120
    # Expired refusals go first when new ones come.
    clock.advance(11)
    for i in range(60, 65):
        assert lim.allow(f"k{i}")
        assert not lim.allow(f"k{i}")
        assert lim._local_cache_len() <= 10
    assert lim._local_cache_len() >= 5


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("10", TypeError, "local_cache_keys must be an int, not str"),
        (1.5, TypeError, "local_cache_keys must be an int, not float"),
        (True, TypeError, "local_cache_keys must be an int, not bool"),
        (-1, ValueError, "local_cache_keys must be 0 or more, got -1"),
        (2**70, ValueError, "local_cache_keys must be at most 2**32"),
    ],
)
def test_bad_values_name_the_argument(
    redis_url: str, value: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message.replace("*", r"\*")):
        RateLimiter(10, 60, storage=redis_url, local_cache_keys=value)


def test_the_memory_store_refuses_it() -> None:
    with pytest.raises(
        ValueError, match="local_cache_keys only applies to a Redis storage"
    ):
        RateLimiter(10, 60, local_cache_keys=100)
    assert RateLimiter(10, 60).stats()["local_cache_hits"] == 0
    assert RateLimiter(10, 60)._local_cache_len() == 0


def test_the_request_policy_passes_it_through(redis_url: str, prefix: str) -> None:
    policy = RequestPolicy(
        limit=1,
        window_seconds=60,
        storage=redis_url,
        key_prefix=prefix,
        local_cache_keys=0,
    )
    lim = policy.limiter
    assert lim is not None
    assert lim.allow("k") is True
    before = script_calls(redis_url)
    assert not lim.allow("k")
    assert not lim.allow("k")
    assert script_calls(redis_url) - before == 2
    with pytest.raises(ValueError, match="local_cache_keys"):
        RequestPolicy(limit=1, window_seconds=60, local_cache_keys=5)
