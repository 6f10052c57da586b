"""Fault injection against real redis-server processes.

A server stalled mid-load (SIGSTOP), killed and restarted on its port, its
script cache flushed, not yet listening, a read-only replica and a full
server (OOM): the deadline holds, every ``on_error`` policy applies, the
circuit breaker opens and closes, decisions are exact again afterwards, and
an outage is logged once.

test_redis.py already covers the policy against a socket that never answers
(one call), the breaker opening on a refused port, and recovery through the
probe once a server starts there; these tests go further with real servers.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis
from redis_server import RedisServer, free_port

from rust_py_rate_limit import RateLimiter, StorageError, enable_logging
from rust_py_rate_limit.logs import LOGGER_NAME

POLICIES = ["allow", "deny", "raise"]

#: The per-operation deadline of every limiter here (seconds).
DEADLINE = 0.05
#: How far past the deadline a call may end. A call that meets the deadline
#: still has to wake its thread and take the GIL back from the other load
#: threads (the switch interval is 5 ms, so up to ~15 ms behind three busy
#: threads) on a 2-core machine that also runs the Tokio workers and the
#: server. CI once saw a whole wave of awaits end together 30.4 ms late
#: (the loop itself held up, late in a long suite): 45 ms covers that, and is
#: still below what a deadline counted twice costs (> 100 ms) and far below
#: what a missing deadline costs (the stall lasts a second).
MARGIN = 0.045
#: No single call may take longer than this. Even with the breaker open and
#: no network at all, four threads taking turns at the GIL (each call
#: releases it) see tails of 30 ms alone, ~0.2 s under pytest on two cores
#: and ~0.5 s with two CPU hogs beside it. Every call also has to end while
#: the server is still stopped (the load is joined before SIGCONT), so none
#: can have waited for it to come back.
WORST = 1.0
#: Consecutive failures that open the breaker (src/store/redis/breaker.rs).
FAILURES_TO_OPEN = 3
#: The probe's interval (src/store/redis/breaker.rs).
PROBE_INTERVAL = 0.5
#: The Rust module that logs the store's outages.
TARGET = "rust_py_rate_limit::store::redis"


@pytest.fixture(autouse=True)
def _no_collector_pauses() -> Iterator[None]:
    """Keeps the cyclic garbage collector out of the timings: a full
    collection late in a long suite can hold the interpreter for tens of
    milliseconds, which a test about deadlines would read as a late call."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
def server() -> Iterator[RedisServer]:
    srv = RedisServer()
    try:
        yield srv
    finally:
        srv.stop()


def wait_until(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.005)
    return time.monotonic() - start


def commandstat(port: int, name: str, field: str = "calls") -> int:
    with redis.Redis(port=port) as client:
        stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{name}", {}).get(field, 0))


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def expected(outcome: bool | StorageError, on_error: str) -> bool:
    """Whether ``outcome`` is what ``on_error`` gives on a failure."""
    if on_error == "raise":
        return isinstance(outcome, StorageError)
    return outcome is (on_error == "allow")


def attempt(limiter: RateLimiter, key: str) -> bool | StorageError:
    """``limiter.allow(key)``, or the StorageError it raised."""
    try:
        return limiter.allow(key)
    except StorageError as err:
        return err


@dataclass
class Call:
    start: float
    end: float
    outcome: bool | StorageError


class Load:
    """Threads calling ``allow()`` in a loop, each call on a new key, so
    Redis itself always admits: a refusal or an error comes from the policy."""

    def __init__(self, limiter: RateLimiter, threads: int = 4) -> None:
        self.limiter = limiter
        self.stop = threading.Event()
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._work, args=(i,)) for i in range(threads)
        ]
        for t in self.threads:
            t.start()

    def _work(self, worker: int) -> None:
        mine: list[Call] = []
        n = 0
        while not self.stop.is_set():
            n += 1
            start = time.monotonic()
            outcome = attempt(self.limiter, f"w{worker}:{n}")
            mine.append(Call(start, time.monotonic(), outcome))
        with self.lock:
            self.calls.extend(mine)

    def join(self) -> list[Call]:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)
        assert not any(t.is_alive() for t in self.threads)
        return self.calls


def outage_records(caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    """How many outage and recovery lines the store logged so far."""
    records = [r for r in caplog.records if getattr(r, "rust_target", None) == TARGET]
    opened = sum("circuit breaker opened" in r.getMessage() for r in records)
    recovered = sum("answers again" in r.getMessage() for r in records)
    assert all(r.levelno == logging.WARNING for r in records)
    return opened, recovered


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger=LOGGER_NAME)
    enable_logging(poll_interval=0.01)
    time.sleep(0.05)  # let the pump hand over anything older
    caplog.clear()
    return caplog


# -- a stalled server (SIGSTOP) -------------------------------------------------


@pytest.mark.parametrize("on_error", POLICIES)
def test_sigstop_mid_load(
    on_error: str, server: RedisServer, logs: pytest.LogCaptureFixture
) -> None:
    lim = RateLimiter(
        5,
        60,
        storage=server.url,
        timeout=DEADLINE,
        on_error=on_error,  # type: ignore[arg-type]
        key_prefix="stall",
    )
    assert lim.allow("warm") is True
    load = Load(lim)
    time.sleep(0.2)
    assert lim.stats()["storage_errors"] == 0
    server.pause()
    paused_at = time.monotonic()
    try:
        # Longer than two probe intervals: the probe fails while paused.
        time.sleep(1.2)
        assert lim.stats()["breaker"] == "open"
        calls = load.join()
        # While open, a call is answered at once without the network (a call
        # that reached the stalled server would take the whole deadline).
        quick = []
        for i in range(200):
            start = time.perf_counter()
            outcome = attempt(lim, f"quick:{i}")
            quick.append(time.perf_counter() - start)
            assert expected(outcome, on_error)
        assert statistics.median(quick) < 0.0002
        assert statistics.fmean(quick) < 0.001
        errors_while_paused = lim.stats()["storage_errors"]
    finally:
        load.join()
        server.resume()

    # Calls made after the stop landed and before SIGCONT.
    stalled = [c for c in calls if c.start >= paused_at + 0.02]
    assert len(stalled) > 100
    latencies = [c.end - c.start for c in stalled]
    assert p99(latencies) <= DEADLINE + MARGIN, f"p99 {p99(latencies):.4f} s"
    assert max(latencies) <= WORST, f"max {max(latencies):.4f} s"
    assert all(expected(c.outcome, on_error) for c in stalled)
    if on_error == "raise":
        messages = {str(c.outcome) for c in stalled}
        assert all(m.startswith("redis: ") for m in messages), messages
        assert "redis: circuit breaker open: Redis failed repeatedly" in messages

    # Every policy answer is one storage error, and nothing else is.
    policy_answers = sum(expected(c.outcome, on_error) for c in calls) + len(quick)
    if on_error == "allow":
        assert len(stalled) + len(quick) <= errors_while_paused <= policy_answers
    else:
        assert errors_while_paused == policy_answers

    # The probe closes the breaker off the request path: no call is made here.
    closed_after = wait_until(lambda: lim.stats()["breaker"] == "closed", 3.0)
    assert closed_after <= PROBE_INTERVAL + DEADLINE + 0.5
    assert [lim.allow("after") for _ in range(6)] == [True] * 5 + [False]
    assert lim.check("after")["remaining"] == 0
    assert lim.stats()["storage_errors"] == errors_while_paused

    # One outage line and one recovery line, not one per failed call.
    wait_until(lambda: outage_records(logs)[1] >= 1, 3.0)
    time.sleep(0.05)
    assert outage_records(logs) == (1, 1)


@pytest.mark.parametrize("on_error", POLICIES)
def test_awaitables_during_a_pause(on_error: str, server: RedisServer) -> None:
    lim = RateLimiter(
        5,
        60,
        storage=server.url,
        timeout=DEADLINE,
        on_error=on_error,  # type: ignore[arg-type]
        key_prefix="astall",
    )

    async def one(key: str) -> tuple[float, bool | StorageError]:
        start = time.monotonic()
        try:
            outcome: bool | StorageError = await lim.aallow(key)
        except StorageError as err:
            outcome = err
        return time.monotonic() - start, outcome

    Result = tuple[float, bool | StorageError]

    async def stalled() -> tuple[list[Result], int, list[Result]]:
        # First wave, breaker still closed: every call meets the stalled
        # server, and the loop keeps running while they wait.
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                await asyncio.sleep(0.005)
                ticks += 1

        tick = asyncio.create_task(ticker())
        first = list(await asyncio.gather(*(one(f"first:{i}") for i in range(8))))
        done.set()
        await tick

        # Then, breaker open: calls in a loop from several tasks.
        results: list[Result] = []

        async def worker(w: int) -> None:
            for n in range(200):
                results.append(await one(f"a{w}:{n}"))

        await asyncio.gather(*(worker(w) for w in range(8)))
        return first, ticks, results

    assert asyncio.run(lim.aallow("warm")) is True
    server.pause()
    try:
        first, ticks, results = asyncio.run(stalled())
        assert lim.stats()["breaker"] == "open"
    finally:
        server.resume()
    assert all(DEADLINE / 2 < t <= DEADLINE + MARGIN for t, _ in first), first
    assert ticks >= 3, "the stalled calls blocked the event loop"
    latencies = [t for t, _ in first + results]
    assert p99(latencies) <= DEADLINE + MARGIN, f"p99 {p99(latencies):.4f} s"
    assert max(latencies) <= WORST, f"max {max(latencies):.4f} s"
    assert all(expected(outcome, on_error) for _, outcome in first + results)
    assert lim.stats()["storage_errors"] == len(first) + len(results)

    wait_until(lambda: lim.stats()["breaker"] == "closed", 3.0)

    async def after() -> list[bool]:
        return [await lim.aallow("after") for _ in range(6)]

    assert asyncio.run(after()) == [True] * 5 + [False]


# -- a killed server, a flushed script cache, nothing listening -----------------


def test_kill_and_restart_on_the_same_port(server: RedisServer) -> None:
    lim = RateLimiter(
        5, 60, storage=server.url, timeout=DEADLINE, on_error="raise", key_prefix="k"
    )
    assert [lim.allow("before") for _ in range(2)] == [True, True]
    server.kill()
    server.start()  # an empty server: no keys, no scripts loaded
    assert commandstat(server.port, "script|load") == 0
    failures: list[str] = []
    start = time.monotonic()
    while True:
        try:
            assert lim.allow("before") is True
            break
        except StorageError as err:
            failures.append(str(err))
            assert time.monotonic() - start < 3.0, failures
            time.sleep(0.01)
    recovered_after = time.monotonic() - start
    # The dead connection fails at most the calls that open the breaker,
    # then the probe or the reconnect brings it back.
    assert len(failures) <= FAILURES_TO_OPEN, failures
    assert recovered_after < PROBE_INTERVAL + 1.0
    # The new server had no script: EVALSHA got NOSCRIPT and it was loaded.
    assert commandstat(server.port, "evalsha", "failed_calls") >= 1
    assert commandstat(server.port, "script|load") >= 1
    # The state went with the old server; decisions are exact on the new one.
    assert [lim.allow("before") for _ in range(5)] == [True] * 4 + [False]
    assert asyncio.run(lim.aremaining("before")) == 0
    assert lim.stats()["storage_errors"] == len(failures)


def test_a_late_reply_never_answers_a_later_call(server: RedisServer) -> None:
    # A sync call that times out leaves its reply on the way; its connection
    # must not serve the next call, or that call would read the old answer.
    lim = RateLimiter(
        100, 60, storage=server.url, timeout=DEADLINE, on_error="raise", key_prefix="l"
    )
    assert [lim.decide("a").remaining for _ in range(10)] == list(range(99, 89, -1))
    server.pause()
    try:
        with pytest.raises(StorageError, match="timed out after 50 ms"):
            lim.decide("a")
    finally:
        server.resume()
    # The stalled hit on "a" runs now, and its reply (remaining 89) arrives.
    fresh = [lim.decide(f"b{i}") for i in range(5)]
    assert [(d.allowed, d.remaining) for d in fresh] == [(True, 99)] * 5
    assert lim.peek("a").remaining == 89  # the stalled hit counted, once
    assert lim.stats()["breaker"] == "closed"


def test_sync_calls_reuse_their_connections(server: RedisServer) -> None:
    lim = RateLimiter(10**6, 60, storage=server.url, key_prefix="p")
    with redis.Redis(port=server.port) as admin:
        before = admin.info("clients")["connected_clients"]
        threads = [
            threading.Thread(target=lambda: [lim.allow("k") for _ in range(200)])
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = admin.info("clients")["connected_clients"]
        # One blocking connection per thread at most, kept for the next call.
        assert 1 <= after - before <= 8
        assert admin.info("stats")["total_connections_received"] <= 8 + 1 + 1
        assert lim.remaining("k") == 10**6 - 1600


def test_script_flush_mid_load(server: RedisServer) -> None:
    lim = RateLimiter(
        5, 60, storage=server.url, timeout=1.0, on_error="raise", key_prefix="f"
    )
    # A reloaded script runs the hit once: no double count, no lost hit.
    assert [lim.allow("k") for _ in range(3)] == [True] * 3
    flushes = 10
    with redis.Redis(port=server.port) as admin:
        admin.script_flush()
        assert [lim.allow("k") for _ in range(3)] == [True, True, False]

        load = Load(lim)
        try:
            for _ in range(flushes):
                time.sleep(0.05)
                admin.script_flush()
            time.sleep(0.05)
        finally:
            calls = load.join()
    errors = [c.outcome for c in calls if isinstance(c.outcome, StorageError)]
    assert errors == []
    assert all(c.outcome is True for c in calls)
    assert commandstat(server.port, "script|load") >= flushes + 1
    stats = lim.stats()
    assert (stats["storage_errors"], stats["breaker"]) == (0, "closed")


def test_refused_at_start_then_the_server_starts() -> None:
    port = free_port(with_bus=True)
    lim = RateLimiter(
        3,
        60,
        storage=f"redis://127.0.0.1:{port}/0",
        timeout=DEADLINE,
        on_error="raise",
        key_prefix="r",
    )
    start = time.monotonic()
    with pytest.raises(StorageError, match=r"^redis: "):
        lim.allow("k")
    assert time.monotonic() - start <= DEADLINE + MARGIN
    assert lim.stats()["breaker"] == "closed", "one failure does not open it"
    srv = RedisServer(port=port)
    try:
        # No waiting for a probe: the failed connection was not kept, the
        # next call connects.
        assert lim.allow("k") is True
        assert asyncio.run(lim.aallow("k")) is True
        assert [lim.allow("k") for _ in range(2)] == [True, False]
        assert lim.stats()["storage_errors"] == 1
    finally:
        srv.stop()


# -- a server that answers but refuses writes ---------------------------------


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A read-only replica (of a primary that lives as long as it does)."""
    primary = RedisServer("--repl-diskless-sync-delay", "0")
    try:
        # The replica keeps the primary's snapshot in a file: not in the repo.
        srv = RedisServer(
            "--replicaof",
            "127.0.0.1",
            str(primary.port),
            workdir=tmp_path_factory.mktemp("replica"),
        )
        try:
            with redis.Redis(port=srv.port) as client:
                wait_until(
                    lambda: client.info("replication")["master_link_status"] == "up",
                    10,
                )
                with pytest.raises(redis.ReadOnlyError):
                    client.set("x", 1)
            yield srv
        finally:
            srv.stop()
    finally:
        primary.stop()


@pytest.fixture(scope="module")
def full() -> Iterator[RedisServer]:
    """A server over its maxmemory that refuses writes (noeviction)."""
    srv = RedisServer("--maxmemory", "1", "--maxmemory-policy", "noeviction")
    try:
        with (
            redis.Redis(port=srv.port) as client,
            pytest.raises(redis.exceptions.OutOfMemoryError),
        ):
            client.set("x", 1)
        yield srv
    finally:
        srv.stop()


# How redis 7.0 answers our (shebang-less) script's EVALSHA: it runs it, and
# the first write inside fails, with the script and line appended.
REFUSALS = {
    "replica": r"^redis: ReadOnly: You can't write against a read only replica\.",
    "full": r"^redis: \"?OOM\"?: command not allowed when used memory > 'maxmemory'",
}


@pytest.mark.parametrize("kind", ["replica", "full"])
@pytest.mark.parametrize("on_error", POLICIES)
def test_writes_refused(
    kind: str, on_error: str, request: pytest.FixtureRequest
) -> None:
    srv: RedisServer = request.getfixturevalue(kind)
    lim = RateLimiter(
        5,
        60,
        storage=srv.url,
        timeout=0.5,
        on_error=on_error,  # type: ignore[arg-type]
        key_prefix=f"{kind}-{on_error}",
    )
    for i in range(FAILURES_TO_OPEN):
        if on_error == "raise":
            with pytest.raises(StorageError, match=REFUSALS[kind]):
                lim.allow(f"k{i}")
        else:
            assert lim.allow(f"k{i}") is (on_error == "allow")
    assert lim.stats()["storage_errors"] == FAILURES_TO_OPEN
    assert lim.stats()["breaker"] == "open"
    if on_error == "raise":
        with pytest.raises(StorageError, match="circuit breaker open"):
            lim.allow("k")
    else:
        decision = lim.check("k")
        assert decision["allowed"] is (on_error == "allow")
        if on_error == "deny":
            assert decision["retry_after_seconds"] >= 1
    assert lim.stats()["storage_errors"] == FAILURES_TO_OPEN + 1


@pytest.mark.parametrize("kind", ["replica", "full"])
def test_a_lasting_write_refusal_is_logged_once(
    kind: str, request: pytest.FixtureRequest, logs: pytest.LogCaptureFixture
) -> None:
    # The server answers the probe's PING, so the breaker closes each probe
    # interval and the next calls fail again: still one outage, one line.
    srv: RedisServer = request.getfixturevalue(kind)
    lim = RateLimiter(
        5, 60, storage=srv.url, timeout=0.5, on_error="deny", key_prefix=f"log{kind}"
    )
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < 3 * PROBE_INTERVAL + 0.3:
        n += 1
        assert lim.allow(f"k{n}") is False
        time.sleep(0.002)
    assert lim.stats()["storage_errors"] == n
    wait_until(lambda: outage_records(logs)[0] >= 1, 3.0)
    time.sleep(0.05)
    assert outage_records(logs) == (1, 0)


# -- the probe -------------------------------------------------------------------


class Listener:
    """Accepts connections and never answers (a stalled server), counting
    them: while the breaker is open, each one is a probe."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.02)
        self.port: int = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self.closed.set()
        self.thread.join(timeout=5)
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_the_probe_ends_with_its_limiter() -> None:
    listener = Listener()
    try:
        lim = RateLimiter(
            5,
            60,
            storage=f"redis://127.0.0.1:{listener.port}/0",
            timeout=DEADLINE,
            on_error="deny",
        )
        for _ in range(FAILURES_TO_OPEN):
            assert lim.allow("k") is False
        assert lim.stats()["breaker"] == "open"
        before = len(listener.accepted)
        time.sleep(3 * PROBE_INTERVAL)
        assert len(listener.accepted) >= before + 2, "the probe is running"
        del lim
        gc.collect()
        time.sleep(PROBE_INTERVAL + 2 * DEADLINE)  # a probe under way ends
        after_drop = len(listener.accepted)
        time.sleep(3 * PROBE_INTERVAL)
        assert len(listener.accepted) == after_drop, "a probe outlived its limiter"
    finally:
        listener.close()
