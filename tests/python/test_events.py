"""Decision events: one blocked event per key and window, bans, storage
outages, a bounded queue, callbacks that fail, fork and exit."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer

from rust_py_rate_limit import ManualClock, RateLimiter
from rust_py_rate_limit.events import _dispatcher, flush

ROOT = Path(__file__).resolve().parents[2]
CAPACITY = 10_000  # the core's queue per limiter (src/events.rs)


def collect(limiter: RateLimiter) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    limiter.on_event(got.append)
    return got


def test_a_flood_is_one_blocked_event_per_window(clock: ManualClock) -> None:
    limiter = RateLimiter(5, 60, clock=clock, name="api")
    got = collect(limiter)
    refused = sum(not limiter.allow("ip:1") for _ in range(10_005))
    assert refused == 10_000
    flush()
    assert len(got) == 1
    event = got[0]
    assert event["event_type"] == "rate_limit_blocked"
    assert (event["key"], event["limit"], event["window_seconds"]) == ("ip:1", 5, 60)
    assert (event["limiter"], event["algorithm"]) == ("api", "fixed")
    assert event["retry_after"] == 60.0
    assert event["refusals_before"] == 0
    assert event["blocked_at"].endswith("Z")
    assert event["window_start"].endswith("Z")
    assert event["window_start"] <= event["blocked_at"]
    json.dumps(event)  # JSON-ready as it is
    clock.advance(60)
    for _ in range(6):
        limiter.allow("ip:1")
    flush()
    assert len(got) == 2
    assert got[1]["refusals_before"] == 10_000, "the flood the first event stood for"


def test_the_delivery_thread_delivers_without_a_flush(clock: ManualClock) -> None:
    """Events reach the callback from the daemon thread within its poll
    interval, nobody calling flush() (real time: the thread's own loop)."""
    limiter = RateLimiter(1, 60, clock=clock)
    got: list[dict[str, Any]] = []
    arrived = threading.Event()

    def callback(event: dict[str, Any]) -> None:
        got.append(event)
        arrived.set()

    limiter.on_event(callback)
    assert limiter.allow("k") is True
    assert limiter.allow("k") is False
    assert arrived.wait(10), "the delivery thread delivered nothing"
    assert [e["event_type"] for e in got] == ["rate_limit_blocked"]
    assert _dispatcher.thread is not None
    assert _dispatcher.thread.is_alive()


def test_eight_threads_flooding_one_key_make_one_event(clock: ManualClock) -> None:
    limiter = RateLimiter(10, 60, clock=clock)
    got = collect(limiter)
    barrier = threading.Barrier(8)

    def flood() -> None:
        barrier.wait()
        for _ in range(2_000):
            limiter.decide("k")

    threads = [threading.Thread(target=flood) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flush()
    assert [e["event_type"] for e in got] == ["rate_limit_blocked"]


def test_bans_and_unbans_are_events(clock: ManualClock) -> None:
    limiter = RateLimiter(1, 60, clock=clock, ban_after=2, ban_seconds=600)
    got = collect(limiter)
    assert [limiter.allow("k") for _ in range(6)] == [True] + [False] * 5
    limiter.ban("other", 30)
    assert limiter.unban("other")
    assert not limiter.unban("nobody")  # no ban: no event
    flush()
    kinds = [(e["event_type"], e["key"]) for e in got]
    assert kinds == [
        ("rate_limit_blocked", "k"),
        ("rate_limit_banned", "k"),
        ("rate_limit_banned", "other"),
        ("rate_limit_unbanned", "other"),
    ]
    assert got[1]["ban_seconds"] == 600.0
    assert got[2]["ban_seconds"] == 30.0


def test_admissions_and_shadow_make_no_event_unless_refused(clock: ManualClock) -> None:
    limiter = RateLimiter(3, 60, clock=clock, shadow=True)
    got = collect(limiter)
    assert all(limiter.allow("k") for _ in range(5))
    flush()
    # Shadow mode reports what the limit refused, the request admitted.
    assert [e["event_type"] for e in got] == ["rate_limit_blocked"]
    quiet = RateLimiter(3, 60, clock=clock)
    nothing = collect(quiet)
    for _ in range(3):
        quiet.allow("k")
    flush()
    assert nothing == []


def test_off_event_stops_collecting(clock: ManualClock) -> None:
    limiter = RateLimiter(1, 60, clock=clock)
    got: list[dict[str, Any]] = []
    limiter.on_event(got.append)
    assert limiter.off_event(got.append)
    assert not limiter.off_event(got.append)
    limiter.allow("k")
    limiter.allow("k")
    flush()
    assert got == []
    with pytest.raises(TypeError, match="callable"):
        limiter.on_event("print")  # type: ignore[arg-type]


def test_a_full_queue_drops_and_counts(clock: ManualClock) -> None:
    limiter = RateLimiter(1, 60, clock=clock)
    got = collect(limiter)
    for i in range(CAPACITY + 5):
        limiter.allow(f"k{i}")
    with _dispatcher.delivering:  # no delivery while the queue fills
        for i in range(CAPACITY + 5):
            limiter.allow(f"k{i}")
        assert limiter.stats()["events_dropped"] == 5
    flush()
    assert len(got) == CAPACITY


def test_a_raising_callback_is_logged_once_and_others_still_get_events(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RateLimiter(1, 60, clock=clock)

    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("sink down")

    limiter.on_event(broken)
    got = collect(limiter)
    with caplog.at_level(logging.ERROR, logger="rust_py_rate_limit"):
        for key in ("a", "b"):
            limiter.allow(key)
            assert not limiter.allow(key)  # never raises into the caller
        flush()
    assert [e["key"] for e in got] == ["a", "b"]
    failures = [r for r in caplog.records if "event callback" in r.getMessage()]
    assert len(failures) == 1


def test_storage_outages_and_redis_refusals_are_events(redis_url: str) -> None:
    limiter = RateLimiter(1, 60, storage=redis_url, key_prefix="events-test")
    got = collect(limiter)
    assert [limiter.allow("k") for _ in range(4)] == [True, False, False, False]
    flush()
    assert [e["event_type"] for e in got] == ["rate_limit_blocked"]
    limiter.clear()

    server = RedisServer()
    down = RateLimiter(1, 60, storage=server.url, timeout=0.2)
    events = collect(down)
    down.allow("k")
    server.kill()
    try:
        for _ in range(5):
            down.allow("k")  # on_error="allow": admitted, no exception
        flush()
        kinds = [e["event_type"] for e in events]
        assert kinds.count("storage_unavailable") == 1
        outage = events[kinds.index("storage_unavailable")]
        assert outage["storage"] == "redis"
        assert outage["detail"]
        # Back on the same port: the breaker's probe (every 0.5 s) closes it,
        # and the next decision that succeeds ends the outage. Real time is
        # the subject here: poll, with a deadline.
        server.start()
        deadline = time.monotonic() + 15
        while "storage_recovered" not in [e["event_type"] for e in events]:
            assert time.monotonic() < deadline, [e["event_type"] for e in events]
            down.allow("k2")
            flush()
            time.sleep(0.1)
        kinds = [e["event_type"] for e in events]
        assert kinds.count("storage_unavailable") == 1
        assert kinds.count("storage_recovered") == 1
    finally:
        server.stop()


CHILD_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from rust_py_rate_limit import RateLimiter
    out = sys.argv[1]
    limiter = RateLimiter(1, 60)
    limiter.on_event(lambda e: open(out, "a").write(json.dumps(e) + "\\n"))
    pid = os.fork()
    if pid == 0:
        for key in ("child-1", "child-2"):
            limiter.allow(key); limiter.allow(key)
        sys.exit(0)  # atexit delivers the child's events
    os.waitpid(pid, 0)
    limiter.allow("parent"); limiter.allow("parent")
    """
)


def test_events_after_fork_and_flushed_at_exit(tmp_path: Path) -> None:
    # Both processes exit right after their refusals: the exit flush delivers
    # them; the child's events come from the child's own delivery.
    out = tmp_path / "events.jsonl"
    script = tmp_path / "fork_events.py"
    script.write_text(CHILD_SCRIPT)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    subprocess.run(
        [sys.executable, str(script), str(out)], check=True, timeout=60, env=env
    )
    keys = sorted(json.loads(line)["key"] for line in out.read_text().splitlines())
    assert keys == ["child-1", "child-2", "parent"]


def test_adapters_take_events_for_every_limiter_they_build() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from flask import Flask

    from rust_py_rate_limit.fastapi import RateLimitMiddleware
    from rust_py_rate_limit.flask import FlaskRateLimiter

    got: list[dict[str, Any]] = []
    api = FastAPI()
    api.add_middleware(
        RateLimitMiddleware, limit=1, window_seconds=60, name="api", events=got.append
    )

    @api.get("/a")
    async def a() -> str:
        return "a"

    client = TestClient(api)
    assert [client.get("/a").status_code for _ in range(3)] == [200, 429, 429]

    app = Flask(__name__)
    limiter = FlaskRateLimiter(app, name="web", events=got.append)

    @app.get("/b")
    @limiter.limit("1/minute")  # its own limiter, watched too
    def b() -> str:
        return "b"

    flask_client = app.test_client()
    assert [flask_client.get("/b").status_code for _ in range(3)] == [200, 429, 429]
    flush()
    assert [(e["event_type"], e["limiter"]) for e in got] == [
        ("rate_limit_blocked", "api"),
        ("rate_limit_blocked", "web 1/minute"),
    ]
    with pytest.raises(TypeError, match="events"):
        FlaskRateLimiter(Flask(__name__), limit=1, window_seconds=1, events="log")  # type: ignore[arg-type]


QUEUED_BEFORE_FORK = textwrap.dedent(
    """
    import json, os, sys
    from rust_py_rate_limit import RateLimiter
    from rust_py_rate_limit.events import _dispatcher
    out = sys.argv[1]
    limiter = RateLimiter(1, 60)
    limiter.on_event(
        lambda e: open(out, "a").write(json.dumps([os.getpid(), e["key"]]) + "\\n")
    )
    with _dispatcher.delivering:  # queued, not delivered, when the fork comes
        limiter.allow("pre"); limiter.allow("pre")
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # the child's exit delivers what it queued: nothing
    os.waitpid(pid, 0)
    print(os.getpid())
    """
)


def test_events_queued_before_a_fork_are_delivered_once(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    script = tmp_path / "queued.py"
    script.write_text(QUEUED_BEFORE_FORK)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    done = subprocess.run(
        [sys.executable, str(script), str(out)],
        check=True, timeout=60, env=env, capture_output=True, text=True,
    )  # fmt: skip
    parent = int(done.stdout.strip())
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        [parent, "pre"]
    ]


def test_redis_awaitable_refusals_are_events(redis_url: str) -> None:
    import asyncio

    limiter = RateLimiter(1, 60, storage=redis_url, key_prefix="events-async")
    got = collect(limiter)

    async def hits() -> list[bool]:
        first = [await limiter.aallow("k")]
        # Concurrent awaits share batches (or the loop's own link).
        return first + list(
            await asyncio.gather(*(limiter.aallow("k") for _ in range(5)))
        )

    try:
        assert asyncio.run(hits()) == [True] + [False] * 5
        flush()
        assert [(e["event_type"], e["key"]) for e in got] == [
            ("rate_limit_blocked", "k")
        ]
    finally:
        limiter.clear()
