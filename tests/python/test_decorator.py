"""The decorator on plain functions, coroutine functions and methods."""

from __future__ import annotations

import asyncio
import inspect
import pickle

import pytest

from rust_py_rate_limit import ManualClock, RateLimiter, RateLimitExceeded, rate_limit


def test_seed_decorator_snippet() -> None:
    limiter = RateLimiter(limit=5, window_seconds=60)

    @limiter.limit("login")
    def login() -> str:
        return "ok"

    assert [login() for _ in range(5)] == ["ok"] * 5
    with pytest.raises(RateLimitExceeded) as info:
        login()
    assert (info.value.key, info.value.limit, info.value.retry_after) == (
        "login",
        5,
        60,
    )


def test_callable_key_receives_the_arguments() -> None:
    limiter = RateLimiter(limit=1, window_seconds=60)
    calls: list[int] = []

    @limiter.limit(lambda user_id: f"user:{user_id}")
    def fetch(user_id: int) -> int:
        calls.append(user_id)
        return user_id

    assert fetch(1) == 1
    assert fetch(2) == 2
    with pytest.raises(RateLimitExceeded) as info:
        fetch(1)
    assert info.value.key == "user:1"
    assert calls == [1, 2], "a refused call never runs the function"


def test_coroutine_function_stays_a_coroutine_function(clock: ManualClock) -> None:
    limiter = RateLimiter(limit=2, window_seconds=10, clock=clock)

    @limiter.limit(lambda n: f"n:{n}", cost=2)
    async def double(n: int) -> int:
        """Doubles n."""
        return 2 * n

    assert inspect.iscoroutinefunction(double)
    assert double.__name__ == "double"
    assert double.__doc__ == "Doubles n."
    assert asyncio.run(double(4)) == 8
    with pytest.raises(RateLimitExceeded) as info:
        asyncio.run(double(4))
    assert info.value.retry_after == 10
    clock.advance(10)
    assert asyncio.run(double(4)) == 8


def test_methods_work() -> None:
    limiter = RateLimiter(limit=1, window_seconds=60)

    class Service:
        def __init__(self, name: str) -> None:
            self.name = name

        @limiter.limit(lambda self: f"svc:{self.name}")
        def run(self) -> str:
            return self.name

    a, b = Service("a"), Service("b")
    assert (a.run(), b.run()) == ("a", "b")
    with pytest.raises(RateLimitExceeded):
        a.run()


def test_module_level_helper() -> None:
    limiter = RateLimiter(limit=1, window_seconds=60)

    @rate_limit(limiter, "job")
    def job() -> int:
        return 1

    assert job() == 1
    with pytest.raises(RateLimitExceeded):
        job()


def test_bad_decorator_arguments() -> None:
    limiter = RateLimiter(limit=3, window_seconds=60)
    with pytest.raises(TypeError, match="key"):
        limiter.limit(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cost"):
        limiter.limit("k", cost=4)
    with pytest.raises(ValueError, match="cost"):
        limiter.limit("k", cost=0)
    with pytest.raises(TypeError, match="cost"):
        limiter.limit("k", cost=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="limiter"):
        rate_limit(object(), "k")  # type: ignore[arg-type]

    @limiter.limit(lambda: 7)  # type: ignore[arg-type, return-value]
    def f() -> None:
        pass

    with pytest.raises(TypeError, match="key callable must return str"):
        f()


def test_exception_message_and_pickle() -> None:
    exc = RateLimitExceeded("k", limit=5, retry_after=12)
    assert str(exc) == "Rate limit exceeded for key='k' (limit=5); retry after 12s"
    assert exc.args == (str(exc),)
    assert isinstance(exc, Exception)
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is RateLimitExceeded
    assert (again.key, again.limit, again.retry_after) == ("k", 5, 12)
    assert again.args == exc.args


def test_exception_limit_and_retry_after_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        RateLimitExceeded("k", 5, 12)  # type: ignore[call-arg]
    bare = RateLimitExceeded("k")
    assert (bare.limit, bare.retry_after) == (None, None)
    assert str(bare) == "Rate limit exceeded for key='k'"


def test_on_refused_result_is_returned_instead_of_raising() -> None:
    limiter = RateLimiter(limit=1, window_seconds=60)
    seen: list[RateLimitExceeded] = []

    def fallback(exc: RateLimitExceeded) -> str:
        seen.append(exc)
        return "cached"

    @limiter.limit("k", on_refused=fallback)
    def fresh() -> str:
        return "fresh"

    assert fresh() == "fresh"
    assert fresh() == "cached"
    assert (seen[0].key, seen[0].limit, seen[0].retry_after) == ("k", 1, 60)


def test_on_refused_on_coroutine_functions_may_be_async() -> None:
    limiter = RateLimiter(limit=1, window_seconds=60)

    async def fallback(exc: RateLimitExceeded) -> str:
        return f"later ({exc.retry_after}s)"

    @limiter.limit("k", on_refused=fallback)
    async def fresh() -> str:
        return "fresh"

    async def main() -> list[str]:
        return [await fresh(), await fresh()]

    assert asyncio.run(main()) == ["fresh", "later (60s)"]


def test_wait_true_waits_for_admission(clock: ManualClock) -> None:
    import threading

    # 20 a second with a burst of 1: a refused call waits 50 ms (of the
    # manual clock; the waiter sleeps that long in real time between tries).
    limiter = RateLimiter(20, 1, algorithm="gcra", burst=1, clock=clock)

    @limiter.limit("k", wait=True, timeout=10)
    def job(n: int) -> int:
        return n

    assert job(1) == 1
    results: list[int] = []
    waiter = threading.Thread(target=lambda: results.append(job(2)))
    waiter.start()
    waiter.join(0.2)
    assert results == [], "admitted before the manual clock moved"
    clock.advance(0.05)
    waiter.join(5)
    assert results == [2]


def test_wait_true_on_coroutine_functions(clock: ManualClock) -> None:
    limiter = RateLimiter(20, 1, algorithm="gcra", burst=1, clock=clock)

    @limiter.limit("k", wait=True)
    async def job() -> str:
        return "done"

    async def main() -> list[str]:
        first = await job()
        task = asyncio.create_task(job())
        await asyncio.sleep(0.1)
        assert not task.done()
        clock.advance(0.05)
        return [first, await asyncio.wait_for(task, 5)]

    assert asyncio.run(main()) == ["done", "done"]


def test_wait_with_timeout_refuses_at_once() -> None:
    limiter = RateLimiter(limit=1, window_seconds=60)

    @limiter.limit("k", wait=True, timeout=0.5)
    def job() -> str:
        return "ran"

    assert job() == "ran"
    with pytest.raises(RateLimitExceeded) as info:
        job()
    assert info.value.retry_after == 60


def test_bad_wait_options() -> None:
    limiter = RateLimiter(limit=1, window_seconds=60)
    with pytest.raises(TypeError, match="wait"):
        limiter.limit("k", wait=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        limiter.limit("k", wait=True, timeout=-1)
    with pytest.raises(TypeError, match="on_blocked"):
        limiter.limit("k", on_blocked="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_refused"):
        limiter.limit("k", on_refused="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_blocked or on_refused, not both"):
        limiter.limit("k", on_blocked=lambda: 1, on_refused=lambda exc: 2)


def test_cost_is_checked_against_the_capacity() -> None:
    bucket = RateLimiter(10, 60, algorithm="token_bucket", burst=3)
    assert bucket.capacity == 3
    with pytest.raises(ValueError, match="cost"):
        bucket.limit("k", cost=4)
    compound = RateLimiter(rate="2/second;100/hour")
    assert compound.capacity == 2
    with pytest.raises(ValueError, match="cost"):
        compound.limit("k", cost=3)
