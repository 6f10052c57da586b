"""examples/flask_app.py under a real gunicorn (2 sync workers), over loopback.

Each gunicorn worker is its own process with its own in-memory limiter, so a
client gets ``limit`` requests through *per worker*: more than the limit in
all, at most ``limit x workers``.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx2
from gunicorn_server import gunicorn

LIMIT = 5  # examples/flask_app.py: 5 requests a minute on /hello
WORKERS = 2
CONCURRENCY = 8  # keeps both sync workers busy, so both answer
DEADLINE_SECONDS = 8.0


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def flask_app(log: Path) -> AbstractContextManager[str]:
    """examples/flask_app.py under gunicorn, WORKERS sync workers."""
    return gunicorn(
        log, "flask_app:app", "--workers", str(WORKERS), "--worker-class", "sync",
        "--graceful-timeout", "5", ready="/stats",
    )  # fmt: skip


def test_gunicorn_workers_keep_their_own_counters(tmp_path: Path) -> None:
    log = tmp_path / "gunicorn.log"
    with (
        flask_app(log) as base,
        httpx2.Client(base_url=base, timeout=5) as client,
        ThreadPoolExecutor(CONCURRENCY) as pool,
    ):

        def hello(_: int) -> tuple[int, int, httpx2.Response]:
            response = client.get("/hello")
            return response.status_code, int(response.headers["X-Worker-Pid"]), response

        def stats(_: int) -> dict[str, Any]:
            body: dict[str, Any] = client.get("/stats").json()
            return body

        # Hit /hello until every worker has refused us at least once.
        results: list[tuple[int, int, httpx2.Response]] = []
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            results += pool.map(hello, range(CONCURRENCY))
            refused_by = {pid for status, pid, _ in results if status == 429}
            if len(refused_by) == WORKERS:
                break

        pids = {pid for _, pid, _ in results}
        assert len(pids) == WORKERS, f"both workers should answer: {pids}"
        ok = Counter(pid for status, pid, _ in results if status == 200)
        refused = Counter(pid for status, pid, _ in results if status == 429)
        assert set(ok) | set(refused) == pids, "only 200s and 429s"
        # Per-worker semantics: each worker admits the limit, no more.
        assert ok == dict.fromkeys(pids, LIMIT)
        assert LIMIT < sum(ok.values()) <= LIMIT * WORKERS
        for status, pid, response in results:
            if status == 200:
                assert response.json() == {"message": "hello", "pid": pid}
                assert "Retry-After" not in response.headers
            else:
                assert response.json() == {"detail": "Too many requests"}
                assert response.headers["X-RateLimit-Remaining"] == "0"
                assert 0 < int(response.headers["Retry-After"]) <= 60

        # Each worker's own stats() agree with what it answered.
        seen: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + 2
        while len(seen) < WORKERS and time.monotonic() < deadline:
            for body in pool.map(stats, range(CONCURRENCY)):
                seen[body["pid"]] = body["stats"]
        assert set(seen) == pids
        for pid, worker_stats in seen.items():
            assert worker_stats["allowed"] == LIMIT
            assert worker_stats["blocked"] == refused[pid]

    # Stopped: gunicorn reaped its workers before exiting.
    until = time.monotonic() + 5
    while not all(gone(pid) for pid in pids) and time.monotonic() < until:
        time.sleep(0.05)
    assert all(gone(pid) for pid in pids)
