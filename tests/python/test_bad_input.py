"""Every bad argument gets a clear TypeError or ValueError naming it."""

from __future__ import annotations

import math
from typing import Any

import pytest

from rust_py_rate_limit import ManualClock, RateLimiter

BIG = 2**53  # one past the largest limit the core holds


@pytest.mark.parametrize("value", [0, -1, -(10**30)])
@pytest.mark.parametrize("name", ["limit", "window_seconds"])
def test_non_positive_is_value_error(name: str, value: int) -> None:
    kwargs: dict[str, Any] = {"limit": 10, "window_seconds": 60, name: value}
    with pytest.raises(ValueError, match=name):
        RateLimiter(**kwargs)


@pytest.mark.parametrize(
    "value", [True, False, 1.0, 1.5, "10", None, math.nan, math.inf, b"1", [1]]
)
@pytest.mark.parametrize("name", ["limit", "window_seconds"])
def test_wrong_type_is_type_error(name: str, value: object) -> None:
    kwargs: dict[str, Any] = {"limit": 10, "window_seconds": 60, name: value}
    with pytest.raises(TypeError, match=name):
        RateLimiter(**kwargs)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("limit", BIG),
        ("limit", 2**64),
        ("limit", 10**100),
        ("window_seconds", 10**9 + 1),
        ("window_seconds", 2**63),
        ("window_seconds", 10**100),
    ],
)
def test_too_large_is_value_error(name: str, value: int) -> None:
    kwargs: dict[str, Any] = {"limit": 10, "window_seconds": 60, name: value}
    with pytest.raises(ValueError, match=name):
        RateLimiter(**kwargs)


def test_largest_accepted_values_work() -> None:
    limiter = RateLimiter(limit=BIG - 1, window_seconds=10**9)
    assert limiter.check("k", cost=BIG - 1)["remaining"] == 0
    assert limiter.allow("k") is False


def test_missing_arguments_are_type_errors() -> None:
    with pytest.raises(TypeError):
        RateLimiter()
    with pytest.raises(TypeError):
        RateLimiter(10)


@pytest.mark.parametrize("key", [None, 1, b"bytes", 1.5, ["k"], object()])
@pytest.mark.parametrize("method", ["allow", "check", "remaining", "reset"])
def test_non_str_key_is_type_error(method: str, key: object) -> None:
    limiter = RateLimiter(limit=10, window_seconds=60)
    with pytest.raises(TypeError, match="key"):
        getattr(limiter, method)(key)
    assert limiter.stats()["total_checks"] == 0


@pytest.mark.parametrize("method", ["allow", "check"])
@pytest.mark.parametrize("cost", [0, -1, -(10**30)])
def test_cost_below_one_is_value_error(method: str, cost: int) -> None:
    limiter = RateLimiter(limit=10, window_seconds=60)
    with pytest.raises(ValueError, match="cost"):
        getattr(limiter, method)("k", cost=cost)
    assert limiter.stats() == {
        "allowed": 0,
        "blocked": 0,
        "total_checks": 0,
        "active_keys": 0,
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


@pytest.mark.parametrize("method", ["allow", "check"])
@pytest.mark.parametrize("cost", [11, 10**6, 10**30])
def test_cost_above_limit_is_value_error_and_changes_nothing(
    method: str, cost: int
) -> None:
    limiter = RateLimiter(limit=10, window_seconds=60)
    limiter.allow("k")
    with pytest.raises(ValueError, match="cost") as info:
        getattr(limiter, method)("k", cost=cost)
    if cost == 11:
        assert "could never be admitted" in str(info.value)
    assert limiter.remaining("k") == 9
    assert limiter.stats()["total_checks"] == 1


@pytest.mark.parametrize("cost", [True, 1.0, "1", math.nan])
def test_cost_of_wrong_type_is_type_error(cost: object) -> None:
    limiter = RateLimiter(limit=10, window_seconds=60)
    with pytest.raises(TypeError, match="cost"):
        limiter.allow("k", cost=cost)  # type: ignore[arg-type]


def test_clock_of_wrong_type_is_type_error() -> None:
    with pytest.raises(TypeError, match="clock"):
        RateLimiter(limit=1, window_seconds=1, clock="now")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "error"),
    [
        (-1, ValueError),
        (-0.5, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-math.inf, ValueError),
        (10**30, ValueError),
        (1e300, ValueError),
        (True, TypeError),
        ("1", TypeError),
        (None, TypeError),
    ],
)
def test_manual_clock_rejects_bad_steps(seconds: object, error: type) -> None:
    clock = ManualClock()
    with pytest.raises(error, match="seconds"):
        clock.advance(seconds)  # type: ignore[arg-type]
    assert clock.now == 0.0


def test_manual_clock_refuses_to_pass_its_end() -> None:
    clock = ManualClock()
    clock.advance(4 * 10**9)
    with pytest.raises(ValueError, match="seconds"):
        clock.advance(10**9)
    assert clock.now == 4e9


@pytest.mark.parametrize(
    "key",
    ["", "x" * (1 << 20), "ключ🔑", "\x00nul", "\ud800lone surrogate", "a\udcff"],
)
def test_odd_keys_work_and_stay_distinct(key: str) -> None:
    limiter = RateLimiter(limit=1, window_seconds=60)
    assert limiter.allow(key) is True
    assert limiter.allow(key) is False
    assert limiter.remaining(key) == 0
    assert limiter.allow(key + "-other") is True
    assert limiter.reset(key) is True


def test_surrogate_keys_do_not_collide_with_their_replacement() -> None:
    limiter = RateLimiter(limit=1, window_seconds=60)
    assert limiter.allow("\ud800")
    assert limiter.allow("\ufffd")
    assert limiter.allow("\udcff")


def test_str_subclass_key_is_accepted() -> None:
    class Key(str):
        pass

    limiter = RateLimiter(limit=1, window_seconds=60)
    assert limiter.allow(Key("k"))
    assert not limiter.allow("k")


def test_str_subclass_cannot_alias_another_key_through_encode() -> None:
    # A lone surrogate has no UTF-8 form, so its bytes come from encoding
    # with surrogatepass: read from the string's data, never through an
    # encode() the subclass controls.
    class Alias(str):
        def encode(self, *args: Any, **kwargs: Any) -> bytes:
            return b"victim"

    limiter = RateLimiter(limit=1, window_seconds=60)
    assert limiter.allow("victim") is True
    assert limiter.allow(Alias("\ud800attacker")) is True
    assert limiter.allow(Alias("\ud800attacker")) is False
    assert limiter.remaining("victim") == 0
    assert limiter.reset("victim") is True
    assert limiter.remaining(Alias("\ud800attacker")) == 0


SYNC_COST_METHODS = ["allow", "check", "decide", "wait"]
ASYNC_COST_METHODS = ["aallow", "acheck", "adecide", "acquire"]


@pytest.mark.parametrize("method", SYNC_COST_METHODS)
def test_cost_none_is_type_error(method: str) -> None:
    limiter = RateLimiter(limit=10, window_seconds=60)
    with pytest.raises(TypeError, match=r"^cost must be an int, not NoneType$"):
        getattr(limiter, method)("k", None)
    with pytest.raises(TypeError, match=r"^cost must be an int, not NoneType$"):
        getattr(limiter, method)("k", cost=None)
    assert limiter.stats()["total_checks"] == 0
    assert limiter.remaining("k") == 10


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ASYNC_COST_METHODS)
async def test_awaitable_cost_none_is_type_error(method: str) -> None:
    limiter = RateLimiter(limit=10, window_seconds=60)
    with pytest.raises(TypeError, match=r"^cost must be an int, not NoneType$"):
        await getattr(limiter, method)("k", None)
    with pytest.raises(TypeError, match=r"^cost must be an int, not NoneType$"):
        await getattr(limiter, method)("k", cost=None)
    assert limiter.stats()["total_checks"] == 0


def test_omitted_cost_is_one() -> None:
    limiter = RateLimiter(limit=10, window_seconds=60)
    assert limiter.check("k")["remaining"] == 9
    assert limiter.decide("k").remaining == 8
    assert limiter.allow("k") is True
    assert limiter.remaining("k") == 7


MAX = 2**53 - 1  # 9007199254740991: the largest limit, burst and cost


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 2**53}, f"limit must be at most {MAX}, got 9007199254740992"),
        ({"limit": 2**63}, f"limit must be at most {MAX}, got 9223372036854775808"),
        ({"limit": 2**64}, f"limit must be at most {MAX}, got a larger number"),
        (
            {"window_seconds": 2**63},
            "window_seconds must be at most 1000000000, got 9223372036854775808",
        ),
        (
            {"window_seconds": 10**100},
            "window_seconds must be at most 1000000000, got a larger number",
        ),
        (
            {"algorithm": "gcra", "burst": 2**63},
            f"burst must be at most {MAX}, got 9223372036854775808",
        ),
        (
            {"max_keys": 2**64},
            "max_keys must be at most 18446744073709551615, got a larger number",
        ),
    ],
)
def test_too_large_messages_quote_the_real_bound(
    kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {"limit": 10, "window_seconds": 60, **kwargs}
    with pytest.raises(ValueError, match=f"^{message.split()[0]} ") as info:
        RateLimiter(**args)
    assert str(info.value) == message


def test_burst_whose_refill_time_does_not_fit_quotes_its_bound() -> None:
    # 10 a second: a full bucket of 10**12 would take 10**11 s to refill;
    # its times would wrap at 2**64 ns.
    with pytest.raises(ValueError, match=r"^burst") as info:
        RateLimiter(rate="10/second", algorithm="token_bucket", burst=10**12)
    assert str(info.value) == (
        "burst must be between 1 and 10000000000 with 10 per 1s (a full bucket "
        "must refill within 1000000000 seconds), got 1000000000000"
    )
    bucket = RateLimiter(
        rate="10/second", algorithm="gcra", burst=10**10, clock=ManualClock()
    )
    assert bucket.allow("k", cost=10**10)
    refused = bucket.decide("k")
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.1)
    assert refused.reset_after == pytest.approx(10**9)


@pytest.mark.parametrize("cost", [2**64, 10**30])
def test_huge_cost_quotes_the_capacity(cost: int) -> None:
    limiter = RateLimiter(limit=10, window_seconds=60)
    with pytest.raises(ValueError, match=r"^cost") as info:
        limiter.allow("k", cost=cost)
    assert str(info.value) == (
        "cost must be at most the capacity (10), got a larger number"
    )
