"""The background janitor, bounded memory, fork and interpreter exit.

The janitor tests are about real time: they use short real intervals.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rust_py_rate_limit import ManualClock, RateLimiter, _native

INTERVAL = 0.02


def eventually(predicate: Callable[[], bool], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def alive_tasks() -> int:
    return _native._runtime_info()["alive_tasks"]


def settled_tasks() -> int:
    """The runtime's task count once garbage from earlier tests is gone: a
    collected Redis limiter ends its connection's tasks, which would move a
    count taken too early."""
    gc.collect()
    last = alive_tasks()
    for _ in range(100):
        time.sleep(0.02)
        now = alive_tasks()
        if now == last:
            return now
        last = now
    return last


def test_janitor_sweeps_expired_keys(clock: ManualClock) -> None:
    limiter = RateLimiter(5, 10, clock=clock, cleanup_interval=INTERVAL)
    assert limiter.cleanup_running is True
    assert limiter.cleanup_interval == pytest.approx(INTERVAL)
    for i in range(1_000):
        limiter.allow(f"user:{i}")
    clock.advance(10)
    assert eventually(lambda: limiter.stats()["active_keys"] == 0)
    stats = limiter.stats()
    assert stats["expired_removed"] == 1_000
    assert stats["cleanup_runs"] >= 1
    limiter.stop_cleanup()


def test_janitor_sweeps_within_two_intervals(clock: ManualClock) -> None:
    limiter = RateLimiter(5, 10, clock=clock, cleanup_interval=0.1)
    limiter.allow("k")
    time.sleep(0.05)  # about real time: land between two ticks
    clock.advance(10)
    start = time.monotonic()
    assert eventually(lambda: limiter.stats()["active_keys"] == 0, within=2.0)
    assert time.monotonic() - start <= 0.25
    limiter.stop_cleanup()


def test_janitor_keeps_live_keys(clock: ManualClock) -> None:
    limiter = RateLimiter(5, 10, clock=clock, cleanup_interval=INTERVAL)
    limiter.allow("live", cost=5)
    assert eventually(lambda: limiter.stats()["cleanup_runs"] >= 2)
    assert limiter.remaining("live") == 0
    assert limiter.stats()["active_keys"] == 1
    limiter.stop_cleanup()


def test_start_and_stop(clock: ManualClock) -> None:
    limiter = RateLimiter(5, 10, clock=clock)
    assert limiter.cleanup_running is False
    assert limiter.cleanup_interval is None
    limiter.start_cleanup(INTERVAL)
    assert limiter.cleanup_running is True
    limiter.start_cleanup(0.5)  # restarts with the new interval
    assert limiter.cleanup_interval == pytest.approx(0.5)
    limiter.stop_cleanup()
    assert limiter.cleanup_running is False
    limiter.stop_cleanup()  # idempotent
    limiter.allow("k")
    clock.advance(10)
    time.sleep(5 * INTERVAL)
    assert limiter.stats()["active_keys"] == 1, "a stopped janitor sweeps nothing"


@pytest.mark.parametrize(
    ("interval", "error"),
    [(0, ValueError), (-1, ValueError), (float("nan"), ValueError), ("1", TypeError)],
)
def test_bad_interval(interval: object, error: type) -> None:
    limiter = RateLimiter(5, 10)
    with pytest.raises(error, match="interval"):
        limiter.start_cleanup(interval)  # type: ignore[arg-type]
    with pytest.raises(error, match="cleanup_interval"):
        RateLimiter(5, 10, cleanup_interval=interval)  # type: ignore[arg-type]


def test_context_managers_stop_the_janitor() -> None:
    with RateLimiter(5, 10, cleanup_interval=INTERVAL) as limiter:
        assert limiter.cleanup_running
    assert not limiter.cleanup_running

    async def main() -> RateLimiter:
        async with RateLimiter(5, 10, cleanup_interval=INTERVAL) as limiter:
            assert limiter.cleanup_running
            assert await limiter.aallow("k")
        return limiter

    import asyncio

    assert not asyncio.run(main()).cleanup_running


def test_garbage_collected_limiter_ends_its_janitor() -> None:
    baseline = settled_tasks()
    limiter = RateLimiter(5, 10, cleanup_interval=INTERVAL)
    assert alive_tasks() == baseline + 1
    del limiter
    gc.collect()
    assert eventually(lambda: alive_tasks() == baseline)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_ten_thousand_limiters_with_janitors_leave_nothing_behind() -> None:
    def churn() -> None:
        for i in range(10_000):
            limiter = RateLimiter(1, 1, cleanup_interval=0.5)
            limiter.allow(str(i))
        del limiter
        gc.collect()

    baseline = settled_tasks()
    churn()  # warm up: the runtime, allocator pools
    assert eventually(lambda: alive_tasks() == baseline), "every janitor ended"
    threads, rss = os_threads(), rss_bytes()
    churn()
    assert eventually(lambda: alive_tasks() == baseline)
    # Nothing left behind: no thread more than before. (One fewer is fine: a
    # thread of an earlier test may end meanwhile; CI saw 6 -> 5 once.)
    assert os_threads() <= threads
    assert rss_bytes() - rss < 8 * 2**20


def test_max_keys_holds_under_a_flood(clock: ManualClock) -> None:
    limiter = RateLimiter(3, 60, clock=clock, max_keys=1_000)
    assert limiter.max_keys == 1_000
    assert limiter.allow("victim", cost=3)
    for i in range(100_000):
        limiter.allow(f"junk:{i}")
    stats = limiter.stats()
    assert stats["active_keys"] <= 1_000
    assert stats["rejected_full"] == 100_000 - 999
    assert limiter.allow("victim") is False, "the flood did not reset the victim"
    # Expired keys make room again.
    clock.advance(60)
    assert limiter.allow("newcomer") is True


def test_max_keys_on_full_allow_admits_untracked(clock: ManualClock) -> None:
    limiter = RateLimiter(1, 60, clock=clock, max_keys=1, on_full="allow")
    assert limiter.allow("a")
    assert limiter.allow("b")
    assert limiter.allow("b"), "untracked keys are never counted"
    assert limiter.stats()["rejected_full"] == 2
    assert limiter.stats()["active_keys"] == 1


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"max_keys": 0}, ValueError, "max_keys"),
        ({"max_keys": -5}, ValueError, "max_keys"),
        ({"max_keys": 1.5}, TypeError, "max_keys"),
        ({"on_full": "drop"}, ValueError, "on_full"),
        ({"on_full": 1}, ValueError, "on_full"),
    ],
)
def test_bad_bounds(options: dict[str, object], error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        RateLimiter(1, 60, **options)  # type: ignore[arg-type]


def test_sweeps_release_memory_across_cycles(clock: ManualClock) -> None:
    limiter = RateLimiter(1, 10, clock=clock)
    keys = [f"user:{i:07d}" for i in range(1_000_000)]

    rss = rss_bytes

    def fill_and_sweep() -> None:
        allow = limiter.allow
        for key in keys:
            allow(key)
        clock.advance(10)
        assert limiter.cleanup_expired() == len(keys)
        assert limiter.stats()["active_keys"] == 0

    fill_and_sweep()
    before = rss()
    fill_and_sweep()
    assert rss() - before < 10 * 2**20


def run_script(source: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_fork_child_janitor_sweeps_and_awaitables_work() -> None:
    result = run_script(
        """
        import asyncio, os, time
        from rust_py_rate_limit import ManualClock, RateLimiter
        clock = ManualClock()
        limiter = RateLimiter(5, 10, clock=clock, cleanup_interval=0.02)
        limiter.allow("parent")
        pid = os.fork()
        if pid == 0:
            ok = limiter.cleanup_running and asyncio.run(limiter.aallow("child"))
            clock.advance(10)
            deadline = time.monotonic() + 5
            while limiter.stats()["active_keys"] and time.monotonic() < deadline:
                time.sleep(0.01)
            os._exit(0 if ok and limiter.stats()["active_keys"] == 0 else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert limiter.cleanup_running
        assert limiter.stats()["active_keys"] == 1   # the parent is unaffected
        clock.advance(10)
        deadline = time.monotonic() + 5
        while limiter.stats()["active_keys"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert limiter.stats()["active_keys"] == 0
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_two_hundred_forks_with_a_live_janitor() -> None:
    result = run_script(
        """
        import os, time
        from rust_py_rate_limit import RateLimiter
        limiter = RateLimiter(5, 1, cleanup_interval=0.001)
        for i in range(200):
            for k in range(50):
                limiter.allow(f"{i}:{k}")
            start = time.monotonic()
            pid = os.fork()
            if pid == 0:
                limiter.allow("child")
                os._exit(0 if limiter.cleanup_running else 3)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, (i, status)
            assert time.monotonic() - start < 1.0, i
        print("ok")
        """,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


MULTIPROCESSING_SCRIPT = """
import multiprocessing as mp
import sys

from rust_py_rate_limit import RateLimiter

limiter = RateLimiter(3, 60, cleanup_interval=0.05)


def work(i):
    return [limiter.allow(f"key:{i}") for _ in range(4)], limiter.cleanup_running


if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    with ctx.Pool(2) as pool:
        for allowed, running in pool.map(work, range(6)):
            assert allowed == [True, True, True, False], allowed
            assert running
    print("ok")
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing(method: str, tmp_path: Path) -> None:
    script = tmp_path / "pool.py"
    script.write_text(MULTIPROCESSING_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), method],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_exit_with_janitors_and_pending_awaitables() -> None:
    script = """
        import asyncio
        from rust_py_rate_limit import RateLimiter
        limiters = [RateLimiter(1, 60, cleanup_interval=0.01) for _ in range(20)]
        for limiter in limiters:
            limiter.allow("k")
        pending = [limiters[0].aallow("k"), limiters[1].acquire("k")]
        loop = asyncio.new_event_loop()
        task = loop.create_task(limiters[2].acquire("k"))
        loop.run_until_complete(asyncio.sleep(0.01))
        """
    for _ in range(50):
        start = time.monotonic()
        result = run_script(script, timeout=10)
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - start < 1.0 + 0.5  # interpreter start-up
        assert "Traceback" not in result.stderr


def test_sweep_runs_without_the_gil() -> None:
    clock = ManualClock()
    limiter = RateLimiter(1, 10, clock=clock)
    allow = limiter.allow
    for i in range(300_000):
        allow(str(i))
    clock.advance(10)
    progressed: list[int] = []
    done = threading.Event()

    def other() -> None:
        while not done.is_set():
            progressed.append(1)

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert limiter.cleanup_expired() == 300_000
    finally:
        done.set()
        thread.join()
    assert progressed
