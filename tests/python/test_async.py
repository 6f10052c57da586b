"""The awaitable twins, acquire() and wait()."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import warnings
from typing import Any

import pytest
import uvloop

from rust_py_rate_limit import ManualClock, RateLimiter

TWINS: list[tuple[str, tuple[Any, ...]]] = [
    ("allow", ("k",)),
    ("allow", ("k", 2)),
    ("check", ("k",)),
    ("check", ("k", 3)),
    ("decide", ("k",)),
    ("remaining", ("k",)),
    ("peek", ("k",)),
    ("reset", ("k",)),
    ("reset", ("missing",)),
    ("cleanup_expired", ()),
    ("clear", ()),
]


def twin_results(clock: ManualClock) -> tuple[list[Any], list[Any]]:
    sync = RateLimiter(5, 60, clock=clock)
    asyn = RateLimiter(5, 60, clock=clock)

    async def run_async() -> list[Any]:
        out = []
        for name, args in TWINS:
            out.append(await getattr(asyn, "a" + name)(*args))
        return out

    expected = [getattr(sync, name)(*args) for name, args in TWINS]
    return expected, asyncio.run(run_async())


def test_every_awaitable_twin_returns_what_its_sync_twin_returns(
    clock: ManualClock,
) -> None:
    expected, got = twin_results(clock)
    assert got == expected
    assert got[2] == {
        "allowed": True,
        "limit": 5,
        "remaining": 1,
        "reset_after_seconds": 60,
        "retry_after_seconds": 0,
    }


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_awaitables_under_each_loop(runner: str) -> None:
    limiter = RateLimiter(2, 60)

    async def main() -> list[bool]:
        return [await limiter.aallow("k") for _ in range(3)]

    result = uvloop.run(main()) if runner == "uvloop" else asyncio.run(main())
    assert result == [True, True, False]


def test_awaitables_complete_without_suspending() -> None:
    limiter = RateLimiter(2, 60)
    coro = limiter.acheck("k")
    with pytest.raises(StopIteration) as done:
        coro.send(None)
    assert done.value.value["remaining"] == 1


def test_gather_and_tasks_accept_them() -> None:
    limiter = RateLimiter(3, 60)

    async def main() -> list[bool]:
        task = asyncio.create_task(limiter.aallow("k"))
        rest = await asyncio.gather(*(limiter.aallow("k") for _ in range(3)))
        return [await task, *rest]

    assert sorted(asyncio.run(main())) == [False, True, True, True]


def test_two_loops_in_two_threads_share_one_limiter() -> None:
    limiter = RateLimiter(1_000, 60)
    results: list[int] = []

    async def spend() -> int:
        return sum([await limiter.aallow("shared") for _ in range(600)])

    def body() -> None:
        results.append(asyncio.run(spend()))

    threads = [threading.Thread(target=body) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 1_000


def test_asyncio_run_a_thousand_times() -> None:
    limiter = RateLimiter(10_000, 60)
    for _ in range(1_000):
        assert asyncio.run(limiter.aallow("k")) is True
    assert limiter.remaining("k") == 9_000


def test_bad_arguments_raise_when_awaited() -> None:
    limiter = RateLimiter(2, 60)
    with pytest.raises(TypeError, match="key"):
        asyncio.run(limiter.aallow(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cost"):
        asyncio.run(limiter.acheck("k", 3))


# -- acquire / wait -----------------------------------------------------------


def test_acquire_admits_at_once_when_free() -> None:
    limiter = RateLimiter(1, 60)
    assert asyncio.run(limiter.acquire("k")) is True
    assert limiter.remaining("k") == 0


def test_acquire_waits_for_a_manual_clock() -> None:
    clock = ManualClock()
    limiter = RateLimiter(1, 1, clock=clock)
    limiter.allow("k")

    async def main() -> bool:
        task = asyncio.create_task(limiter.acquire("k"))
        await asyncio.sleep(0.05)
        assert not task.done(), "admitted before the clock moved"
        clock.advance(1)
        return await asyncio.wait_for(task, 5)

    assert asyncio.run(main()) is True
    assert limiter.remaining("k") == 0


def test_acquire_waits_the_real_retry_after() -> None:
    # About real time: a 100/s token bucket refills one token in 10 ms.
    limiter = RateLimiter(100, 1, algorithm="token_bucket", burst=1)
    limiter.allow("k")

    async def main() -> float:
        start = time.monotonic()
        assert await limiter.acquire("k", timeout=5) is True
        return time.monotonic() - start

    waited = asyncio.run(main())
    assert waited >= 0.009


def test_acquire_returns_false_at_once_past_the_timeout() -> None:
    limiter = RateLimiter(1, 60)
    limiter.allow("k")

    async def main() -> tuple[bool, float]:
        start = time.monotonic()
        result = await limiter.acquire("k", timeout=1)
        return result, time.monotonic() - start

    result, waited = asyncio.run(main())
    assert result is False
    assert waited < 0.5
    assert limiter.stats()["allowed"] == 1


@pytest.mark.parametrize(
    ("timeout", "error"),
    [(-1, ValueError), (float("nan"), ValueError), ("1", TypeError), (True, TypeError)],
)
def test_bad_timeout(timeout: object, error: type) -> None:
    limiter = RateLimiter(1, 60)
    with pytest.raises(error, match="timeout"):
        asyncio.run(limiter.acquire("k", timeout=timeout))  # type: ignore[arg-type]
    with pytest.raises(error, match="timeout"):
        limiter.wait("k", timeout=timeout)  # type: ignore[arg-type]


def test_cancelled_acquire_leaves_nothing_behind() -> None:
    limiter = RateLimiter(1, 3600)
    limiter.allow("k")

    async def main() -> int:
        task = asyncio.create_task(limiter.acquire("k"))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return len(asyncio.all_tasks())

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert asyncio.run(main()) == 1  # only main() itself
        gc.collect()
    assert limiter.stats() == {
        "allowed": 1,
        "blocked": 1,
        "total_checks": 2,
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


def test_wait_blocks_until_admitted_without_holding_the_gil() -> None:
    limiter = RateLimiter(100, 1, algorithm="gcra", burst=1)
    limiter.allow("k")
    ticks: list[int] = []
    stop = threading.Event()

    def ticker() -> None:
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.0005)

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        assert limiter.wait("k", timeout=5) is True
    finally:
        stop.set()
        thread.join()
    assert ticks, "another thread ran while wait() slept"


def test_wait_timeout_returns_false_at_once() -> None:
    limiter = RateLimiter(1, 60)
    limiter.allow("k")
    start = time.monotonic()
    assert limiter.wait("k", timeout=0.5) is False
    assert time.monotonic() - start < 0.4


def test_async_decorator_uses_the_awaitable_path() -> None:
    calls: list[str] = []

    class Spy(RateLimiter):
        __slots__ = ()

        async def adecide(self, key: str, cost: int = 1) -> Any:
            calls.append(key)
            return await super().adecide(key, cost)

    limiter = Spy(1, 60)

    @limiter.limit("job")
    async def job() -> int:
        return 1

    assert asyncio.run(job()) == 1
    assert calls == ["job"]


# -- the Tokio bridge (used by the Redis store's awaitables) -------------------


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_tokio_bridge_round_trip(runner: str) -> None:
    from rust_py_rate_limit import _native

    async def main() -> list[object]:
        single = await _native._roundtrip("x")
        delayed = await _native._roundtrip(7, 0.01)
        many = await asyncio.gather(*(_native._roundtrip(i) for i in range(100)))
        return [single, delayed, many]

    run = uvloop.run if runner == "uvloop" else asyncio.run
    assert run(main()) == ["x", 7, list(range(100))]


def test_tokio_bridge_cancellation_and_bad_input() -> None:
    from rust_py_rate_limit import _native

    def alive() -> int:
        return int(_native._runtime_info()["alive_tasks"])

    async def main() -> None:
        await _native._roundtrip(0)  # the runtime is up
        baseline = alive()
        pending = asyncio.ensure_future(_native._roundtrip(1, 60))
        await asyncio.sleep(0.01)
        assert alive() == baseline + 1
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        # The cancelled await's Tokio task ends too (it would sleep 60 s).
        for _ in range(200):
            if alive() == baseline:
                break
            await asyncio.sleep(0.005)
        assert alive() == baseline

    asyncio.run(main())
    with pytest.raises(ValueError, match="delay_seconds"):
        _native._roundtrip(1, -1)


def test_tokio_bridge_in_a_forked_child() -> None:
    import os
    import subprocess
    import sys
    import textwrap

    if not hasattr(os, "fork"):
        pytest.skip("POSIX fork")
    script = textwrap.dedent(
        """
        import asyncio, os
        from rust_py_rate_limit import _native

        async def trip(value, delay=0.0):
            return await _native._roundtrip(value, delay)

        assert asyncio.run(trip("parent")) == "parent"
        pid = os.fork()
        if pid == 0:
            ok = asyncio.run(trip("child", 0.01)) == "child"
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert asyncio.run(trip("again")) == "again"
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_awaitable_twins_refuse_a_bool_cost() -> None:
    limiter = RateLimiter(2, 60)
    for twin in (limiter.aallow, limiter.acheck, limiter.adecide):
        with pytest.raises(TypeError, match="cost"):
            asyncio.run(twin("k", True))
    assert limiter.stats()["total_checks"] == 0


def test_tokio_bridge_keeps_no_descriptor_per_finished_loop() -> None:
    import gc
    import os

    from rust_py_rate_limit import _native

    fd_dir = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"

    async def trip() -> object:
        return await _native._roundtrip("x")

    assert asyncio.run(trip()) == "x"
    gc.collect()
    before = len(os.listdir(fd_dir))
    for _ in range(300):
        assert asyncio.run(trip()) == "x"
    gc.collect()
    # Each loop's wake-up pipe closes with its loop.
    assert len(os.listdir(fd_dir)) - before < 10


def test_tokio_bridge_results_reach_each_threads_own_loop() -> None:
    import threading

    from rust_py_rate_limit import _native

    results: dict[int, list[object]] = {}

    def run(i: int) -> None:
        async def main() -> list[object]:
            return list(
                await asyncio.gather(
                    *(_native._roundtrip((i, j), 0.001 * (j % 3)) for j in range(200))
                )
            )

        results[i] = asyncio.run(main())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: [(i, j) for j in range(200)] for i in range(4)}


def test_tokio_bridge_needs_a_running_loop() -> None:
    from rust_py_rate_limit import _native

    with pytest.raises(RuntimeError, match="event loop"):
        _native._roundtrip(1)


def test_tokio_bridge_skips_results_of_cancelled_awaits() -> None:
    import sys

    from rust_py_rate_limit import _native

    unraisable: list[object] = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append

    async def main() -> list[object]:
        doomed = [asyncio.ensure_future(_native._roundtrip(i, 0.02)) for i in range(50)]
        kept = [_native._roundtrip(i, 0.02) for i in range(50)]
        await asyncio.sleep(0)
        for fut in doomed:
            fut.cancel()
        got: list[object] = list(await asyncio.gather(*kept))
        await asyncio.sleep(0.05)  # the cancelled ones' results arrive too
        assert all(fut.cancelled() for fut in doomed)
        return got

    try:
        assert asyncio.run(main()) == list(range(50))
    finally:
        sys.unraisablehook = old_hook
    assert unraisable == []
