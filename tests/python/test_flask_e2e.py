"""examples/flask_app.py under a real gunicorn (2 sync workers), over loopback.

Each gunicorn worker is its own process with its own in-memory limiter, so a
client gets ``limit`` requests through *per worker*: more than the limit in
all, at most ``limit x workers``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
LIMIT = 5  # examples/flask_app.py: 5 requests a minute on /hello
WORKERS = 2
CONCURRENCY = 8  # keeps both sync workers busy, so both answer
DEADLINE_SECONDS = 8.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited early:\n{log.read_text()}")
        try:
            if httpx2.get(f"{base}/stats", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"gunicorn did not answer:\n{log.read_text()}")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@contextmanager
def gunicorn(log: Path) -> Iterator[str]:
    """Runs the example under gunicorn; stops it whatever happens."""
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--chdir",
                str(EXAMPLES),
                "--workers",
                str(WORKERS),
                "--worker-class",
                "sync",
                "--bind",
                f"127.0.0.1:{port}",
                "--graceful-timeout",
                "5",
                "flask_app:app",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(proc, base, log)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_gunicorn_workers_keep_their_own_counters(tmp_path: Path) -> None:
    log = tmp_path / "gunicorn.log"
    with (
        gunicorn(log) as base,
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
