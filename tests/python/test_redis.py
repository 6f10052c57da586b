"""The Redis store: same decisions as the memory store, atomic, bounded keys,
TTLs, failure policy. The server is the session's ``redis_url`` (a throwaway
redis-server on a free port, or RUST_PY_RATE_LIMIT_REDIS_URL if set); the
cluster and TLS tests start their own throwaway servers (redis_server.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_server import RedisServer, free_port, require_redis_server

from rust_py_rate_limit import Decision, ManualClock, RateLimiter, StorageError
from rust_py_rate_limit.types import AlgorithmName

SERVER = object()  # stands for the session's redis_url in parametrized options
VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "decisions.json"


@pytest.fixture(scope="module")
def server(redis_url: str) -> redis.Redis:
    client = redis.Redis.from_url(redis_url)
    client.ping()
    return client


@pytest.fixture
def prefix(server: redis.Redis) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    for key in server.scan_iter(match=f"{name}:*"):
        server.delete(key)


def limiter(url: str, prefix: str, *args: Any, **kwargs: Any) -> RateLimiter:
    """A limiter on `url` whose storage errors raise (unless the test asks
    otherwise), so a failure can never pass for a decision."""
    kwargs.setdefault("on_error", "raise")
    kwargs.setdefault("timeout", 5)
    return RateLimiter(*args, storage=url, key_prefix=prefix, **kwargs)


def test_basic_decisions_and_methods(redis_url: str, prefix: str) -> None:
    lim = limiter(redis_url, prefix, 3, 60)
    assert lim.storage == "redis"
    assert [lim.allow("k") for _ in range(4)] == [True, True, True, False]
    assert lim.check("k") == {
        "allowed": False,
        "limit": 3,
        "remaining": 0,
        "reset_after_seconds": 60,
        "retry_after_seconds": 60,
    }
    assert lim.remaining("k") == 0
    assert lim.remaining("other") == 3
    assert lim.reset("k") is True
    assert lim.reset("k") is False
    assert lim.allow("k", cost=3) is True
    stats = lim.stats()
    assert (stats["allowed"], stats["blocked"], stats["storage_errors"]) == (4, 2, 0)
    assert stats["breaker"] == "closed"


def scaled_case(
    case: dict[str, Any],
) -> tuple[list[tuple[int, int]], list[dict[str, Any]]]:
    """The vectors are in nanoseconds; Redis works in microseconds. The
    arithmetic is the same in any time unit, so run each vector with one
    nanosecond of it as one microsecond: windows x1000, times x1000."""
    limits = [(limit, window * 1000) for limit, window in case["limits"]]
    return limits, case["steps"]


CASES = json.loads(VECTORS.read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_shared_vectors_on_redis(
    redis_url: str, case: dict[str, Any], prefix: str
) -> None:
    limits, steps = scaled_case(case)
    clock = ManualClock()
    # Decisions depend on differences only; an origin like today's Unix time
    # in microseconds (16 digits) checks that the scripts keep every digit.
    clock.advance(1_780_000_000)
    if len(limits) == 1:
        (limit, window), *_ = limits
        lim = limiter(
            redis_url,
            prefix,
            limit,
            window,
            algorithm=case["algorithm"],
            burst=case["burst"],
            clock=clock,
        )
    else:
        rate = ";".join(f"{limit}/{window}s" for limit, window in limits)
        lim = limiter(
            redis_url, prefix, rate=rate, algorithm=case["algorithm"], clock=clock
        )
    now_us = 0
    for i, step in enumerate(steps):
        clock.advance((step["at_ns"] - now_us) / 1e6)
        now_us = step["at_ns"]
        d = lim.decide("key", step["cost"])
        got = (
            d.allowed,
            d.remaining,
            d.retry_after_ns // 1000,
            d.reset_after_ns // 1000,
        )
        want = (
            step["allowed"],
            step["remaining"],
            step["retry_after_ns"],
            step["reset_after_ns"],
        )
        assert got == want, f"step {i}"


# -- TTLs and refusals ----------------------------------------------------------
#
# Every script that writes sets on every key it writes a TTL in (0, 2 x the
# key's window]; a refused hit writes nothing (value and TTL untouched). The
# scripts' own commands are read from MONITOR, so the TTL checked is exactly
# the PEXPIRE argument sent, with no race against expiry even for a 1 ms TTL.

READS = {
    "HMGET", "HGET", "HGETALL", "GET", "ZRANGE", "ZRANGEBYSCORE", "ZCARD", "TIME",
    "EXISTS",
}  # fmt: skip


@dataclasses.dataclass
class Script:
    """One EVALSHA seen by MONITOR and the commands it ran."""

    call: list[str]
    commands: list[list[str]]

    def writes(self) -> list[list[str]]:
        """Every command of the script that is not a known read."""
        return [c for c in self.commands if c[0].upper() not in READS]

    def ttls_ms(self) -> dict[str, int]:
        """Each key the script wrote and the TTL its last write left (-1: none)."""
        ttls: dict[str, int] = {}
        for command in self.writes():
            name, key = command[0].upper(), command[1]
            if name == "PEXPIRE":
                ttls[key] = int(command[2])
            elif name == "SET" and "PX" in (upper := [w.upper() for w in command]):
                ttls[key] = int(command[upper.index("PX") + 1])
            else:
                ttls[key] = ttls.get(key, -1)
        return ttls


@contextlib.contextmanager
def monitor(client: redis.Redis) -> Iterator[list[Script]]:
    """Collects the EVALSHA calls (with their scripts' commands) that the
    server runs inside the block, from any client."""
    scripts: list[Script] = []
    with client.monitor() as mon:  # type: ignore[no-untyped-call]
        yield scripts
        marker = f"end-{uuid.uuid4().hex}"
        client.echo(marker)
        while True:
            entry = mon.next_command()
            words = entry["command"].split(" ")
            if words == ["ECHO", marker]:
                break
            if entry["client_type"] == "lua":
                scripts[-1].commands.append(words)
            elif words[0].upper() == "EVALSHA":
                scripts.append(Script(words, []))


@dataclasses.dataclass
class TtlCase:
    """Hits on one key: rules as (limit, window in units of W), and steps as
    (time in units of W, cost, admitted?)."""

    algorithm: AlgorithmName
    rules: list[tuple[int, int]]
    steps: list[tuple[Fraction | int, int, bool]]


H = Fraction(1, 2)
TTL_CASES = {
    "fixed": TtlCase(
        "fixed",
        [(3, 1)],
        [(0, 1, True), (0, 2, True), (0, 1, False), (H, 1, False), (1, 1, True),
         (3, 3, True), (3, 1, False)],
    ),
    "sliding": TtlCase(
        "sliding",
        [(3, 1)],
        [(0, 1, True), (0, 2, True), (0, 1, False), (H, 1, False), (1 + H, 1, True),
         (1 + H, 1, False), (4, 3, True)],
    ),
    "sliding_log": TtlCase(
        "sliding_log",
        [(3, 1)],
        [(0, 1, True), (0, 2, True), (0, 1, False), (H, 1, False), (1, 1, True),
         (1, 2, True), (1, 1, False)],
    ),
    "token_bucket": TtlCase(
        "token_bucket",
        [(3, 1)],
        [(0, 3, True), (0, 1, False), (H, 1, True), (H, 1, False), (10, 3, True)],
    ),
    "gcra": TtlCase(
        "gcra",
        [(3, 1)],
        [(0, 3, True), (0, 1, False), (H, 1, True), (H, 1, False), (10, 3, True)],
    ),
    # The second rule refuses while the first would admit: nothing is written.
    "compound": TtlCase(
        "fixed",
        [(2, 1), (3, 10)],
        [(0, 1, True), (0, 1, True), (0, 1, False), (1, 1, True), (2, 1, False),
         (10, 2, True)],
    ),
}  # fmt: skip


def check_ttls(
    case: TtlCase, window_us: int, keys: list[str], script: Script, allowed: bool
) -> None:
    """The script wrote nothing if refused; else every key it wrote ends with
    a TTL in (0, 2 x that rule's window]."""
    if not allowed:
        assert script.writes() == [], "a refused hit wrote"
        return
    ttls = script.ttls_ms()
    assert ttls, "an admitted hit wrote nothing"
    multiples = dict(zip(keys, key_multiples(case, keys), strict=True))
    for key, ttl in ttls.items():
        assert 0 < ttl <= 2 * multiples[key] * window_us // 1000, (key, ttl)


def key_multiples(case: TtlCase, keys: list[str]) -> list[int]:
    """The window (in units of W) of the rule each of ``keys`` belongs to:
    a rule has one key, or two for a sliding log (the log and its sum); the
    last two, the key's ban and refusals, belong to none (0: with no ban
    policy a script must never write them)."""
    rule_keys = len(keys) - 2
    width = rule_keys // len(case.rules)
    assert width * len(case.rules) == rule_keys, keys
    return [m for _, m in case.rules for _ in range(width)] + [0, 0]


@pytest.fixture(scope="module")
def quiet_server() -> Iterator[redis.Redis]:
    """A server of its own, so MONITOR sees only the test's commands."""
    server = RedisServer()
    try:
        yield redis.Redis.from_url(server.url)
    finally:
        server.stop()


def rate_of(case: TtlCase, window_seconds: int) -> str:
    return ";".join(f"{n}/{m * window_seconds}s" for n, m in case.rules)


@pytest.mark.parametrize("name", list(TTL_CASES))
def test_writes_expire_within_two_windows_and_refusals_write_nothing(
    name: str, quiet_server: redis.Redis
) -> None:
    """Through the API, windows of 10 s, with a manual clock: the PEXPIRE
    each script sends, the PTTL after it, and DUMP/PTTL around refusals."""
    case = TTL_CASES[name]
    clock = ManualClock()
    url = quiet_server.get_connection_kwargs()
    lim = RateLimiter(
        rate=rate_of(case, 10),
        algorithm=case.algorithm,
        storage=f"redis://127.0.0.1:{url['port']}/0",
        key_prefix=f"ttl-{name}",
        clock=clock,
        on_error="raise",
        timeout=5,
        local_cache_keys=0,  # every hit runs the script, refusals too
    )
    keys = lim._redis_keys("k")
    assert lim.peek("warm-up"), "loads the script: one EVALSHA per hit below"
    now = Fraction(0)
    for i, (at, cost, admitted) in enumerate(case.steps):
        clock.advance(float((at - now) * 10))
        now = Fraction(at)
        before = [(quiet_server.dump(k), quiet_server.pttl(k)) for k in keys]
        with monitor(quiet_server) as scripts:
            assert lim.allow("k", cost) is admitted, f"step {i}"
        (script,) = scripts
        check_ttls(case, 10_000_000, keys, script, admitted)
        after = [(quiet_server.dump(k), quiet_server.pttl(k)) for k in keys]
        for key, (dump, ttl), (dump2, ttl2), multiple in zip(
            keys, before, after, key_multiples(case, keys), strict=True
        ):
            if admitted and key in script.ttls_ms():
                assert 0 < ttl2 <= 2 * multiple * 10_000, (i, key, ttl2)
            elif not admitted:
                assert dump2 == dump, f"step {i}: a refused hit changed {key}"
                assert ttl2 <= ttl, f"step {i}: a refused hit extended {key}'s TTL"


@pytest.mark.parametrize("window_us", [1_000, 100_000, 10_000_000])
@pytest.mark.parametrize("name", list(TTL_CASES))
def test_script_ttls_for_windows_down_to_a_millisecond(
    name: str, window_us: int, quiet_server: redis.Redis
) -> None:
    """The same steps with windows of 1 ms, 100 ms and 10 s. The API takes
    whole seconds, so the library's own script (the SHA it loads, seen by
    MONITOR) is called directly with the window in microseconds.

    Each run is one MULTI/EXEC: DUMP and PEXPIRETIME (the absolute expiry,
    which no elapsed time changes) of every key after every step. A key may
    still expire between two steps when the server is descheduled for a
    millisecond; the steps' decisions then differ from the expected ones,
    and the run is repeated on a fresh key."""
    case = TTL_CASES[name]
    port = quiet_server.get_connection_kwargs()["port"]
    lim = RateLimiter(
        rate=rate_of(case, 1),
        algorithm=case.algorithm,
        storage=f"redis://127.0.0.1:{port}/0",
        key_prefix=f"raw-{name}-{window_us}",
        clock=ManualClock(),
        on_error="raise",
        timeout=5,
    )
    assert lim.peek("warm-up")  # loads the script
    with monitor(quiet_server) as seen:
        assert lim.peek("k")
    ((call, nkeys, *_),) = [(s.call, int(s.call[2]), s) for s in seen]
    sha = call[1]

    def rules(unit_us: int) -> list[str]:
        """limit, window (µs), burst of every rule, as the script takes them."""
        return [str(x) for n, m in case.rules for x in (n, m * unit_us, n)]

    # The layout prelude.lua documents: the number of rules, the rules, the
    # ban policy (none: zeros), then mode, cost and now of each decision
    # (here one).
    nrules = len(case.rules)
    assert call[3 + nkeys :] == [
        str(nrules),
        *rules(1_000_000),
        "0",
        "0",
        "0",
        "peek",
        "1",
        "0",
    ], call
    start = 10**12  # any origin, in microseconds
    for attempt in range(20):
        keys = lim._redis_keys(f"user-{attempt}")
        assert len(keys) == nkeys
        tx = quiet_server.pipeline(transaction=True)
        for key in keys:
            tx.dump(key)
            tx.execute_command("PEXPIRETIME", key)  # type: ignore[no-untyped-call]
        for at, cost, _ in case.steps:
            now = start + int(at * window_us)
            tx.evalsha(
                sha, nkeys, *keys, nrules, *rules(window_us), 0, 0, 0, "hit", cost, now
            )
            for key in keys:
                tx.dump(key)
                tx.execute_command("PEXPIRETIME", key)  # type: ignore[no-untyped-call]
        with monitor(quiet_server) as scripts:
            replies = tx.execute()
        # replies: the keys' state, then per step the script's reply and the
        # keys' state after it (DUMP, PEXPIRETIME per key).
        state = 2 * nkeys
        states = [replies[i : i + state] for i in range(0, len(replies), state + 1)]
        decisions = [bool(r[0]) for r in replies[state :: state + 1]]
        if decisions != [admitted for _, _, admitted in case.steps]:
            continue  # a key expired between two steps; try again
        assert len(scripts) == len(case.steps)
        for i, (script, admitted) in enumerate(zip(scripts, decisions, strict=True)):
            check_ttls(case, window_us, keys, script, admitted)
            before, after = states[i], states[i + 1]
            if not admitted:
                assert after == before, (
                    f"step {i}: a refused hit changed a key or its TTL"
                )
            else:
                for j, key in enumerate(keys):
                    if key in script.ttls_ms():
                        assert after[2 * j + 1] > 0, f"step {i}: {key} has no TTL"
        return
    pytest.fail(f"no run decided as expected in 20 tries; last: {decisions}")


@pytest.mark.parametrize("algorithm", ["token_bucket", "gcra"])
def test_a_large_burst_outlives_two_windows_until_its_debt_drains(
    algorithm: AlgorithmName, redis_url: str, prefix: str, server: redis.Redis
) -> None:
    """1 per second with a burst of 5: spending the burst leaves a debt that
    takes 5 s to drain, so the key must live 5 s (the memory store keeps the
    state until the debt is gone). A TTL capped at 2 windows (2 s) drops the
    debt early and the next hits get a fresh burst: over-admission.

    Real time: the TTL runs on the server's clock, so the test waits 2.3 s."""
    clock = ManualClock()
    memory = RateLimiter(1, 1, algorithm=algorithm, burst=5, clock=clock)
    lim = limiter(
        redis_url, prefix, 1, 1, algorithm=algorithm, burst=5, clock=clock,
        on_error="raise", timeout=5,
    )  # fmt: skip
    assert memory.allow("k", cost=5)
    assert lim.allow("k", cost=5)
    key, _ban, _refusals = lim._redis_keys("k")
    ttl = server.pttl(key)
    assert ttl > 4_000, f"the debt drains in 5 s, but the key expires in {ttl} ms"
    time.sleep(2.3)
    clock.advance(2.3)
    want = memory.decide("k", cost=4)
    assert (want.allowed, want.remaining) == (False, 2)
    got = lim.decide("k", cost=4)
    assert (got.allowed, got.remaining) == (want.allowed, want.remaining)


def test_sliding_log_reads_only_what_left_the_window(
    quiet_server: redis.Redis,
) -> None:
    """A hot key holds up to ``limit`` live entries; a decision must not read
    them all (its cost would grow with the traffic it limits). Seen with
    MONITOR: an admitted hit reads only the entries that left the window,
    and a refusal's retry time only the oldest live ones, a page at a time."""
    clock = ManualClock()
    port = quiet_server.get_connection_kwargs()["port"]
    lim = RateLimiter(
        500, 60, algorithm="sliding_log", storage=f"redis://127.0.0.1:{port}/0",
        key_prefix="hot", clock=clock, on_error="raise", timeout=5,
    )  # fmt: skip
    memory = RateLimiter(500, 60, algorithm="sliding_log", clock=clock)
    for _ in range(5):  # 5 entries at 0 s, then 490 from 1 s on
        assert lim.allow("k")
        assert memory.allow("k")
    clock.advance(1)
    for _ in range(490):
        clock.advance(0.001)
        assert lim.allow("k")
        assert memory.allow("k")
    assert quiet_server.zcard(lim._redis_keys("k")[0]) == 495
    clock.advance(58.6)  # the first 5 entries leave the window

    def sizes(script: Script) -> list[int]:
        """How many entries each of the script's range reads may return
        (-1: the dead ones, however many)."""
        out = []
        for command in script.commands:
            name = command[0].upper()
            if name in ("ZRANGE", "ZRANGEBYSCORE") and "LIMIT" in command:
                out.append(int(command[command.index("LIMIT") + 2]))
            elif name == "ZRANGE":
                out.append(int(command[3]) - int(command[2]) + 1)
            elif name == "ZRANGEBYSCORE":
                assert command[2] == "-inf", command  # only the dead ones
                out.append(-1)
        return out

    with monitor(quiet_server) as scripts:
        got = [lim.decide("k", cost=10), lim.decide("k")]
    want = [memory.decide("k", cost=10), memory.decide("k")]
    assert [(d.allowed, d.remaining, d.reset_after, d.retry_after) for d in got] == [
        (d.allowed, d.remaining, d.reset_after, d.retry_after) for d in want
    ]
    assert [d.allowed for d in got] == [True, False]
    assert quiet_server.zcard(lim._redis_keys("k")[0]) == 491  # 5 dead went
    hit, refusal = scripts
    assert sizes(hit) == [-1]  # just the dead entries: 5 here, not 500
    assert all(0 < n <= 8 for n in sizes(refusal)[1:]), sizes(refusal)


@pytest.mark.parametrize("lost", ["sum", "log"])
def test_sliding_log_survives_losing_one_of_its_keys(
    lost: str, redis_url: str, prefix: str, server: redis.Redis
) -> None:
    """Under maxmemory with an allkeys policy Redis may evict the log's sum
    or the log itself: the sum is counted again from the log, and a lost
    log starts afresh (never a stale sum against an empty log)."""
    clock = ManualClock()
    lim = limiter(
        redis_url, prefix, 10, 60, algorithm="sliding_log", clock=clock,
        on_error="raise",
    )  # fmt: skip
    assert lim.allow("k", cost=3)
    clock.advance(30)
    assert lim.allow("k", cost=4)
    log, sum_key, _ban, _refusals = lim._redis_keys("k")
    assert int(server.get(sum_key) or -1) == 7
    server.delete(sum_key if lost == "sum" else log)
    if lost == "sum":
        assert lim.decide("k", cost=3).remaining == 0
        assert lim.allow("k") is False
        clock.advance(30)  # the first 3 units leave
        assert lim.decide("k", cost=3).remaining == 0
    else:
        assert lim.decide("k", cost=3).remaining == 7
    assert int(server.get(sum_key) or -1) == (10 if lost == "sum" else 3)


def test_keys_are_bounded_and_tagged(redis_url: str, prefix: str) -> None:
    lim = limiter(redis_url, prefix, rate="1/second;5/minute")
    for key in ["", "{x}", "*", "\x00", "ключ", "x" * (1 << 20)]:
        a, b, ban, refusals = lim._redis_keys(key)
        assert len(a) <= 128
        assert a.startswith(prefix + ":")
        tag = a[a.index("{") : a.index("}") + 1]
        for other in (b, ban, refusals):  # one slot for the whole decision
            assert other[other.index("{") : other.index("}") + 1] == tag
        assert lim.allow(key)


def test_compound_is_all_or_nothing_on_redis(redis_url: str, prefix: str) -> None:
    clock = ManualClock()
    lim = limiter(redis_url, prefix, rate="2/second;3/minute", clock=clock)
    assert [lim.allow("k") for _ in range(3)] == [True, True, False]
    clock.advance(1)
    assert lim.allow("k")
    blocked = lim.check("k")
    assert (blocked["allowed"], blocked["limit"], blocked["retry_after_seconds"]) == (
        False,
        3,
        59,
    )
    clock.advance(59)
    assert lim.allow("k", cost=2), "the refusals spent nothing per second"


def test_clear_removes_only_this_limiter(
    redis_url: str, prefix: str, server: redis.Redis
) -> None:
    a = limiter(redis_url, prefix, 5, 60)
    b = limiter(redis_url, prefix, 5, 60, algorithm="gcra")
    for i in range(50):
        a.allow(f"k{i}")
        b.allow(f"k{i}")
    a.clear()
    assert a.remaining("k1") == 5
    assert b.remaining("k1") == 4
    assert sum(1 for _ in server.scan_iter(match=f"{prefix}:*")) == 50


def test_awaitables_pipeline_on_one_connection(redis_url: str, prefix: str) -> None:
    lim = limiter(redis_url, prefix, 100, 60)

    async def main() -> list[bool]:
        return list(await asyncio.gather(*(lim.aallow("k") for _ in range(150))))

    results = asyncio.run(main())
    assert results.count(True) == 100
    assert asyncio.run(lim.acheck("k"))["allowed"] is False
    assert asyncio.run(lim.aremaining("k")) == 0
    assert asyncio.run(lim.areset("k")) is True
    assert asyncio.run(lim.acquire("k", timeout=0)) is True


def test_threads_share_exactly(redis_url: str, prefix: str) -> None:
    lim = limiter(redis_url, prefix, 300, 60)
    admitted = [0] * 4

    def work(i: int) -> None:
        admitted[i] = sum(lim.allow("hot") for _ in range(100))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 300


# -- failures ------------------------------------------------------------------


class Silent:
    """A TCP server that accepts connections and never answers (a paused Redis)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    yield server
    server.close()


@pytest.mark.parametrize("on_error", ["allow", "deny", "raise"])
def test_failure_policy_on_a_paused_server(on_error: str, silent: Silent) -> None:
    lim = RateLimiter(
        5,
        60,
        storage=f"redis://127.0.0.1:{silent.port}/0",
        timeout=0.05,
        on_error=on_error,  # type: ignore[arg-type]
    )
    start = time.monotonic()
    if on_error == "raise":
        with pytest.raises(StorageError, match="redis"):
            lim.allow("k")
    else:
        assert lim.allow("k") is (on_error == "allow")
    assert time.monotonic() - start < 1.0, "the deadline is enforced"
    assert lim.stats()["storage_errors"] >= 1


def test_breaker_opens_and_answers_without_the_network() -> None:
    lim = RateLimiter(
        5, 60, storage="redis://127.0.0.1:1/0", timeout=0.05, on_error="deny"
    )
    for _ in range(3):
        assert lim.allow("k") is False
    assert lim.stats()["breaker"] == "open"
    start = time.perf_counter()
    for _ in range(100):
        assert lim.allow("k") is False
    assert (time.perf_counter() - start) / 100 < 0.001
    blocked = lim.check("k")
    assert blocked["retry_after_seconds"] >= 1


def test_breaker_recovers_when_the_server_answers() -> None:
    # A server that is briefly unreachable: point at a port, then open it.
    require_redis_server()
    port = free_port()
    lim = RateLimiter(5, 60, storage=f"redis://127.0.0.1:{port}/0", timeout=0.05)
    for _ in range(3):
        assert lim.allow("k") is True  # on_error="allow" by default
    assert lim.stats()["breaker"] == "open"
    revived = RedisServer(port=port)
    try:
        deadline = time.monotonic() + 10
        while lim.stats()["breaker"] != "closed" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lim.stats()["breaker"] == "closed"
        assert [lim.allow("k") for _ in range(6)] == [True] * 5 + [False]
    finally:
        revived.stop()


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"storage": 5}, TypeError, "storage"),
        ({"storage": "nope://x"}, ValueError, "storage"),
        ({"storage": SERVER, "on_error": "maybe"}, ValueError, "on_error"),
        ({"storage": SERVER, "timeout": 0}, ValueError, "timeout"),
        ({"storage": SERVER, "key_prefix": "a{b}"}, ValueError, "key_prefix"),
        ({"storage": SERVER, "max_keys": 5}, ValueError, "max_keys"),
        ({"on_error": "deny"}, ValueError, "on_error"),
    ],
)
def test_bad_redis_options(
    options: dict[str, Any], error: type, name: str, redis_url: str
) -> None:
    options = {k: redis_url if v is SERVER else v for k, v in options.items()}
    with pytest.raises(error, match=name):
        RateLimiter(5, 60, **options)


def test_limits_too_large_for_lua_numbers(redis_url: str) -> None:
    with pytest.raises(ValueError, match="2\\^53"):
        RateLimiter(10**9, 10**6, storage=redis_url)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_forked_child_opens_its_own_connection(redis_url: str, prefix: str) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, os
        from rust_py_rate_limit import RateLimiter
        lim = RateLimiter(10, 60, storage={redis_url!r}, key_prefix={prefix!r},
                          on_error="raise", timeout=5)
        assert lim.allow("k")
        pid = os.fork()
        if pid == 0:
            ok = lim.allow("k") and asyncio.run(lim.aallow("k"))
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert lim.remaining("k") == 7
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# -- adapters -------------------------------------------------------------------


def test_middleware_shares_a_redis_limit_across_apps(
    redis_url: str, prefix: str
) -> None:
    from fastapi import FastAPI
    from starlette.testclient import TestClient

    from rust_py_rate_limit.fastapi import RateLimitMiddleware

    def app() -> FastAPI:
        application = FastAPI()

        @application.get("/")
        def home() -> dict[str, bool]:
            return {"ok": True}

        application.add_middleware(
            RateLimitMiddleware,
            limit=3,
            window_seconds=60,
            storage=redis_url,
            key_prefix=prefix,
            on_error="raise",
            timeout=5,
        )
        return application

    # Two "workers": separate apps and limiters, one Redis.
    one, two = TestClient(app()), TestClient(app())
    codes = [client.get("/").status_code for client in (one, two, one, two)]
    assert sorted(codes) == [200, 200, 200, 429]


def test_middleware_never_lets_a_storage_error_escape() -> None:
    from fastapi import FastAPI
    from starlette.testclient import TestClient

    from rust_py_rate_limit.fastapi import RateLimit, RateLimitMiddleware

    application = FastAPI()

    @application.get("/")
    def home() -> dict[str, bool]:
        return {"ok": True}

    from fastapi import Depends

    @application.get(
        "/route",
        dependencies=[
            Depends(
                RateLimit("5/minute", storage="redis://127.0.0.1:1/0", on_error="raise")
            )
        ],
    )
    def route() -> dict[str, bool]:
        return {"ok": True}

    application.add_middleware(
        RateLimitMiddleware,
        limit=3,
        window_seconds=60,
        storage="redis://127.0.0.1:1/0",
        on_error="raise",
        exempt=["/route"],
    )
    client = TestClient(application)
    r = client.get("/")
    assert (r.status_code, r.json()) == (503, {"detail": "Rate limiter unavailable"})
    r = client.get("/route")
    assert (r.status_code, r.json()) == (503, {"detail": "Rate limiter unavailable"})


def test_redis_example_app(redis_url: str, prefix: str) -> None:
    import importlib.util

    from starlette.testclient import TestClient

    os.environ["RATE_LIMIT_PREFIX"] = prefix
    os.environ["STORAGE_URL"] = redis_url
    try:
        path = Path(__file__).resolve().parents[2] / "examples" / "shared_fastapi.py"
        spec = importlib.util.spec_from_file_location("shared_fastapi", path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        del os.environ["RATE_LIMIT_PREFIX"], os.environ["STORAGE_URL"]
    client = TestClient(module.app)
    codes = [client.get("/api/users").status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    assert client.get("/stats").json()["limiter"]["blocked"] == 1


def test_flask_and_django_take_storage_options(redis_url: str, prefix: str) -> None:
    from flask import Flask

    from rust_py_rate_limit.flask import FlaskRateLimiter

    def flask_app() -> Flask:
        app = Flask(__name__)
        ext = FlaskRateLimiter(
            app,
            limit=2,
            window_seconds=60,
            storage=redis_url,
            key_prefix=prefix,
            on_error="raise",
            timeout=5,
        )

        @app.get("/")
        @ext.limit()
        def home() -> str:
            return "ok"

        return app

    one, two = flask_app().test_client(), flask_app().test_client()
    codes = [c.get("/").status_code for c in (one, two, one)]
    assert codes == [200, 200, 429], "two apps, one Redis limit"

    broken = Flask(__name__)
    ext = FlaskRateLimiter(
        broken,
        limit=2,
        window_seconds=60,
        storage="redis://127.0.0.1:1/0",
        on_error="raise",
    )

    @broken.get("/")
    @ext.limit()
    def home() -> str:
        return "ok"

    r = broken.test_client().get("/")
    assert (r.status_code, r.get_json()) == (
        503,
        {"detail": "Rate limiter unavailable"},
    )


def test_django_storage_settings(redis_url: str, prefix: str) -> None:
    script = textwrap.dedent(
        f"""
        import django
        from django.conf import settings
        settings.configure(
            DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
            MIDDLEWARE=["rust_py_rate_limit.django.RateLimitMiddleware"],
            RUST_PY_RATE_LIMIT={{"LIMIT": 2, "WINDOW_SECONDS": 60,
                                "STORAGE": {redis_url!r}, "KEY_PREFIX": {prefix!r}}},
        )
        django.setup()
        from django.http import JsonResponse
        from django.urls import path
        urlpatterns = [path("", lambda request: JsonResponse({{"ok": True}}))]
        from django.test import Client
        codes = [Client().get("/").status_code for _ in range(3)]
        assert codes == [200, 200, 429], codes
        from django.test import override_settings
        broken = {{"LIMIT": 2, "WINDOW_SECONDS": 60, "STORAGE": "redis://127.0.0.1:1/0",
                  "ON_ERROR": "raise"}}
        with override_settings(RUST_PY_RATE_LIMIT=broken):
            r = Client().get("/")
        assert r.status_code == 503, r.status_code
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# -- Redis Cluster ----------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    """Three primaries, no replicas, on free ports (each with a free bus port)."""
    require_redis_server()
    nodes: list[RedisServer] = []
    try:
        for _ in range(3):
            port = free_port(with_bus=True)
            workdir = tmp_path_factory.mktemp(f"node{port}")
            nodes.append(
                RedisServer(
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(workdir / "nodes.conf"),
                    port=port,
                    workdir=workdir,
                )
            )  # fmt: skip
        ports = [node.port for node in nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create"]
            + [f"127.0.0.1:{p}" for p in ports]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        wait_for_cluster(ports)
        yield ports
    finally:
        for node in nodes:
            node.stop()


def wait_for_cluster(ports: list[int], timeout: float = 30) -> None:
    """Waits until every node says the cluster is ok, covers all 16384 slots,
    and maps them the same way: `cluster create` returns when the first node
    agrees, and a node that has not heard yet answers CLUSTERDOWN or MOVED
    to the wrong place."""
    deadline = time.monotonic() + timeout
    clients = [redis.Redis(host="127.0.0.1", port=p) for p in ports]
    while True:
        try:
            infos = [c.cluster("INFO") for c in clients]
            maps = [sorted(map(str, c.cluster("SLOTS"))) for c in clients]
            ready = all(
                i.get("cluster_state") == "ok"
                and int(i.get("cluster_slots_ok", 0)) == 16384
                and int(i.get("cluster_known_nodes", 0)) == len(ports)
                for i in infos
            ) and all(m == maps[0] for m in maps)
        except redis.RedisError:
            ready = False
        if ready:
            return
        assert time.monotonic() < deadline, f"the test cluster did not settle: {infos}"
        time.sleep(0.05)


CLUSTER_ROUNDS = 20


@pytest.mark.parametrize("round_", range(CLUSTER_ROUNDS))
def test_redis_cluster(cluster: list[int], round_: int) -> None:
    """Run CLUSTER_ROUNDS times: it once flaked (three hits admitted under a
    limit of two), which a storage error answered by on_error="allow" would
    explain; here every error raises and none is counted."""
    url = f"redis+cluster://127.0.0.1:{cluster[0]}"
    clock = ManualClock()
    lim = RateLimiter(
        rate="2/second;3/minute",
        storage=url,
        key_prefix=f"c{round_}",
        clock=clock,
        on_error="raise",
        timeout=5,
    )
    keys = [f"user:{i}" for i in range(30)]  # spread over every node
    for key in keys:
        assert [lim.allow(key) for _ in range(3)] == [True, True, False]
    clock.advance(1)
    assert lim.allow("user:0") is True
    assert lim.check("user:0")["limit"] == 3, "compound rules share one slot"
    assert lim.reset("user:1") is True
    assert asyncio.run(lim.aallow("user:1")) is True
    # The keys live on several nodes, and clear() finds them on all.
    nodes_with_keys = sum(
        1 for port in cluster if redis.Redis(host="127.0.0.1", port=port).dbsize() > 0
    )
    assert nodes_with_keys >= 2
    lim.clear()
    assert all(
        redis.Redis(host="127.0.0.1", port=port).dbsize() == 0 for port in cluster
    )
    assert lim.remaining("user:5") == 2
    assert lim.stats()["storage_errors"] == 0


HOSTILE_KEYS = ["", "{", "}", "{x}", "}{", "*", "\x00", "ключ 🔑", "x" * (1 << 20)]
CLUSTER_CASES: list[tuple[AlgorithmName, str]] = [
    ("fixed", "4/2s"),
    ("sliding", "4/2s"),
    ("sliding_log", "4/2s"),
    ("token_bucket", "4/2s"),
    ("gcra", "4/2s"),
    ("sliding", "4/2s;6/10s"),
]


def in_micros(d: Decision) -> tuple[bool, int, int, int, int]:
    """A decision with its times rounded up to the microsecond: Redis computes
    in whole microseconds, the memory store in nanoseconds, and a time that
    falls between two microseconds comes out of Redis rounded up (a retry is
    never too early)."""
    return (
        d.allowed,
        d.limit,
        d.remaining,
        -(-d.retry_after_ns // 1000),
        -(-d.reset_after_ns // 1000),
    )


@pytest.mark.parametrize("round_", range(CLUSTER_ROUNDS))
@pytest.mark.parametrize(
    ("algorithm", "rate"), CLUSTER_CASES, ids=[f"{a}-{r}" for a, r in CLUSTER_CASES]
)
def test_cluster_decides_like_memory_for_hostile_keys(
    algorithm: AlgorithmName, rate: str, cluster: list[int], round_: int
) -> None:
    """Every algorithm and a compound rate on the three-primary cluster, keys
    with braces, globs, NUL, unicode and a megabyte: no CROSSSLOT or any
    other error (on_error="raise"), and every decision is the memory
    store's (to the microsecond) for the same hits at the same times."""
    clock = ManualClock()
    memory = RateLimiter(rate=rate, algorithm=algorithm, clock=clock)
    lim = RateLimiter(
        rate=rate,
        algorithm=algorithm,
        storage=",".join(f"127.0.0.1:{p}" for p in cluster).join(
            ["redis+cluster://", ""]
        ),
        key_prefix=f"hostile-{algorithm}-{round_}",
        clock=clock,
        on_error="raise",
        timeout=5,
        local_cache_keys=0,  # the scripts' own answers, to the microsecond
    )
    rng = random.Random(f"{algorithm}{rate}")
    for step in range(12):
        clock.advance(rng.choice([0, 0, 0.25, 0.5, 1, 2.5]))
        for key in HOSTILE_KEYS:
            cost = rng.choice([1, 2, 2])
            want, got = memory.decide(key, cost), lim.decide(key, cost)
            assert in_micros(got) == in_micros(want), (step, key[:10], cost)
            assert in_micros(lim.peek(key)) == in_micros(memory.peek(key))
        if step == 6:
            assert lim.reset("{x}") == memory.reset("{x}") is True
    assert lim.remaining("*") == memory.remaining("*")
    lim.clear()
    assert all(lim.remaining(key) == 4 for key in HOSTILE_KEYS)
    assert lim.stats()["storage_errors"] == 0


@pytest.fixture(scope="module")
def tls_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server speaking TLS only, with a self-signed certificate."""
    require_redis_server()
    workdir = tmp_path_factory.mktemp("tls")
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    port = free_port()
    server = RedisServer(
        "--port", "0", "--tls-port", str(port),
        "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
        port=port,
        workdir=workdir,
        plain_port=False,
    )  # fmt: skip
    try:
        yield port
    finally:
        server.stop()


def test_rediss_tls(tls_port: int) -> None:
    # "#insecure" skips certificate verification (a self-signed test server).
    url = f"rediss://127.0.0.1:{tls_port}/0#insecure"
    lim = RateLimiter(2, 60, storage=url, key_prefix="tls", on_error="raise", timeout=2)
    assert [lim.allow("k") for _ in range(3)] == [True, True, False]
    assert asyncio.run(lim.acheck("k"))["allowed"] is False
    # Verifying the self-signed certificate fails: a storage error, no panic.
    strict = RateLimiter(
        2, 60, storage=f"rediss://127.0.0.1:{tls_port}/0", on_error="raise", timeout=2
    )
    with pytest.raises(StorageError):
        strict.allow("k")


def test_unix_socket() -> None:
    # A short directory: a socket path must fit in 108 bytes.
    workdir = Path(tempfile.mkdtemp(prefix="rl-"))
    sock = workdir / "redis.sock"
    server = RedisServer(
        "--unixsocket", str(sock), "--unixsocketperm", "700", workdir=workdir
    )
    try:
        lim = RateLimiter(
            2, 60, storage=f"unix://{sock}", key_prefix="unix", on_error="raise"
        )
        assert [lim.allow("k") for _ in range(3)] == [True, True, False]
        # Another key: "k"'s refusal is remembered, and would not reach Redis.
        assert asyncio.run(lim.acheck("j"))["remaining"] == 1
        with redis.Redis(unix_socket_path=str(sock)) as admin:
            assert len(list(admin.scan_iter(match="unix:*"))) == 2
            clients = admin.client_list()
        # The sync pool's, the awaitables' and this one: all on the socket.
        assert len(clients) >= 3
        assert {c["laddr"] for c in clients} == {f"{sock}:0"}, clients
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
