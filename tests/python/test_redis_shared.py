"""One limit shared by many processes on one Redis: exact totals across
processes and threads, across uvicorn workers, and across hosts whose clocks
disagree. Every server is a throwaway one (the session's ``redis_url``, see
conftest.py and redis_server.py).
"""

from __future__ import annotations

import glob
import http.client
import os
import select
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from redis_server import free_port, in_ci

from rust_py_rate_limit import RateLimiter


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    name = f"shared-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{name}:*"):
        client.delete(key)


def spawn(
    script: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``python -c script args...`` with pipes for stdin, stdout and stderr."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_ready(proc: subprocess.Popen[str]) -> None:
    """Waits for the child's "ready" line (its stderr if it died instead)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != "ready\n":
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"child not ready ({line!r}): {err}")


# -- processes x threads -----------------------------------------------------

HAMMER = textwrap.dedent(
    """
    import sys, threading
    from rust_py_rate_limit import RateLimiter
    url, prefix, limit, threads, hits = sys.argv[1:]
    lim = RateLimiter(int(limit), 600, storage=url, key_prefix=prefix,
                      timeout=10, on_error="raise")
    assert lim.remaining("warm-up") == int(limit)  # connected before the start
    admitted = [0] * int(threads)
    def work(i):
        admitted[i] = sum(lim.allow("hot") for _ in range(int(hits)))
    pool = [threading.Thread(target=work, args=(i,)) for i in range(int(threads))]
    print("ready", flush=True)
    assert sys.stdin.readline() == "go\\n"
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    stats = lim.stats()
    print(sum(admitted), stats["allowed"], stats["blocked"], stats["storage_errors"])
    """
)


def test_processes_and_threads_admit_exactly_the_limit(
    redis_url: str, prefix: str
) -> None:
    """4 processes x 8 threads x 2,000 hits on one key (64,000 hits, 6.4 per
    admission) admit exactly the limit in total: no lost update, no double
    spend, whatever the interleaving."""
    processes, threads, hits, limit = 4, 8, 2_000, 10_000
    args = (redis_url, prefix, str(limit), str(threads), str(hits))
    procs = [spawn(HAMMER, *args) for _ in range(processes)]
    try:
        for proc in procs:  # every process connected and waiting
            wait_ready(proc)
        for proc in procs:  # then all start at once
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    reports = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        reports.append([int(x) for x in out.split()])
    for admitted, allowed, blocked, errors in reports:
        assert errors == 0
        assert admitted == allowed
        assert allowed + blocked == threads * hits
    assert sum(r[0] for r in reports) == limit
    check = RateLimiter(
        limit, 600, storage=redis_url, key_prefix=prefix, on_error="raise", timeout=5
    )
    assert check.remaining("hot") == 0


# -- uvicorn workers -----------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def serve_example(
    tmp_path: Path,
) -> Iterator[Callable[[dict[str, str]], int]]:
    """Starts ``examples/shared_fastapi.py`` under ``uvicorn --workers 4`` with
    the given environment; returns its port once it answers. Every server is
    terminated by PID at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> int:
        port = free_port()
        log = tmp_path / f"uvicorn-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "shared_fastapi:app",
                 "--app-dir", str(EXAMPLES), "--workers", "4",
                 "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        procs.append(proc)
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"uvicorn exited:\n{log.read_text()}")
            try:
                if fetch(port, "/stats")[0] == 200:
                    return port
            except OSError:
                pass
            assert time.monotonic() < deadline, "uvicorn did not answer"
            time.sleep(0.1)

    yield start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def fetch(port: int, path: str = "/api/users") -> tuple[int, int]:
    """GET over a fresh connection (so the kernel hands it to any worker):
    the status and the pid of the worker that served it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status, int(response.getheader("X-Worker-Pid", "0"))
    finally:
        conn.close()


def storage_url(request: pytest.FixtureRequest, storage: str) -> str:
    """The URL of the session's server of `storage`, or ``"memory"``."""
    if storage == "redis":
        return str(request.getfixturevalue("redis_url"))
    if storage == "postgresql":
        return str(request.getfixturevalue("postgres").url)
    return "memory"


@pytest.mark.parametrize("storage", ["redis", "postgresql", "memory"])
def test_uvicorn_workers_share_one_limit_on_a_shared_store_only(
    storage: str,
    request: pytest.FixtureRequest,
    prefix: str,
    serve_example: Callable[[dict[str, str]], int],
) -> None:
    """Four uvicorn workers: on Redis they admit exactly the limit in total;
    on the memory store each worker admits its own limit.

    The kernel hands each new connection to whichever worker accepts it
    first, which guarantees no spread at all; so requests go out in rounds
    (fresh connections from 8 threads) until the workers that served them
    would, counting alone, admit more than the limit: at least two workers,
    enough requests each. Only then do the totals tell the stores apart.
    """
    limit = 20
    port = serve_example(
        {
            "STORAGE_URL": storage_url(request, storage),
            "RATE_LIMIT": f"{limit}/hour",  # no window ends during the test
            "RATE_LIMIT_PREFIX": prefix,
            "RATE_LIMIT_TIMEOUT": "5",  # no fail-open on a busy machine
        }
    )
    served: Counter[int] = Counter()  # requests per worker pid
    admitted: Counter[int] = Counter()
    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(8) as pool:
        while sum(min(limit, n) for n in served.values()) <= limit:
            assert time.monotonic() < deadline, f"requests never spread: {served}"
            for status, pid in pool.map(lambda _: fetch(port), range(16)):
                assert status in (200, 429), status
                assert pid > 0
                served[pid] += 1
                admitted[pid] += status == 200
    assert len(served) >= 2
    if storage != "memory":
        assert sum(admitted.values()) == limit, (admitted, served)
    else:
        # Each worker alone: its first `limit` requests pass.
        assert admitted == {pid: min(limit, n) for pid, n in served.items()}
        assert limit < sum(admitted.values()) <= 4 * limit


# -- clocks that disagree --------------------------------------------------------

FAKETIME_HINT = (
    "libfaketime not found: the clock-skew test runs clients with their clocks "
    "moved by libfaketime. Install it (Debian/Ubuntu: apt-get install faketime)."
)


def libfaketime() -> str:
    """The libfaketime preload library; skips the test (fails it in CI) without it."""
    patterns = [
        "/usr/lib/*/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
        "/usr/local/lib/faketime/libfaketime.so.1",
    ]
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    if in_ci():
        pytest.fail(FAKETIME_HINT, pytrace=False)
    pytest.skip(FAKETIME_HINT)


SKEWED = textwrap.dedent(
    """
    import sys, time
    from rust_py_rate_limit import RateLimiter
    url, prefix, algorithm, limit = sys.argv[1:]
    lim = RateLimiter(int(limit), 600, algorithm=algorithm, storage=url,
                      key_prefix=prefix, timeout=10, on_error="raise")
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "time":
            print(time.time(), flush=True)
        elif command == "hit":
            print(sum(lim.allow("shared") for _ in range(int(arg))), flush=True)
        elif command == "retry":
            print(lim.check("shared")["retry_after_seconds"], flush=True)
    """
)


class Client:
    """A client process whose wall clock is ``offset`` away (libfaketime)."""

    def __init__(self, offset: str, *args: str) -> None:
        env = {
            **os.environ,
            "LD_PRELOAD": libfaketime(),
            "FAKETIME": offset,
            # Only the wall clock moves: Tokio's timers (the per-operation
            # deadline) run on the monotonic clock and keep working.
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }
        self.proc = spawn(SKEWED, *args, env=env)

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        answer = self.proc.stdout.readline() if ready else ""
        if not answer:
            self.proc.kill()
            pytest.fail(f"client died: {self.proc.communicate(timeout=10)[1]}")
        return answer.strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.communicate(timeout=10)


@pytest.mark.parametrize("storage", ["redis", "postgresql"])
@pytest.mark.parametrize("algorithm", ["sliding", "gcra"])
def test_clients_with_skewed_clocks_share_one_limit(
    algorithm: str, storage: str, prefix: str, request: pytest.FixtureRequest
) -> None:
    """Two clients whose clocks are two days behind and three hours ahead
    share one limit exactly: the store computes on the server's clock (Redis
    TIME, PostgreSQL clock_timestamp()), never on a client's. (Had it used
    the client's clock, the client ahead would find the window long over, or
    the debt long drained, and admit a whole limit again.)"""
    limit = 30
    url = storage_url(request, storage)
    args = (url, prefix, algorithm, str(limit))
    behind, ahead = Client("-2d", *args), Client("+3h", *args)
    try:
        real = time.time()
        skews = [float(c.ask("time")) - real for c in (behind, ahead)]
        assert abs(skews[0] + 2 * 86_400) < 60, skews  # the skew took effect
        assert abs(skews[1] - 3 * 3_600) < 60, skews
        assert int(behind.ask("hit 20")) == 20
        assert int(ahead.ask("hit 30")) == 10
        assert int(behind.ask("hit 30")) == 0
        assert int(ahead.ask("hit 5")) == 0
        for client in (behind, ahead):  # times come from the server too
            assert 0 < int(client.ask("retry")) <= 2 * 600  # sliding: 2 windows
    finally:
        behind.close()
        ahead.close()
    server_time: float
    if storage == "redis":
        server_time = redis.Redis.from_url(url).time()[0]
    else:
        with request.getfixturevalue("postgres").connect() as conn:
            row = conn.execute("SELECT extract(epoch FROM clock_timestamp())")
            server_time = float(row.fetchone()[0])
    assert abs(server_time - time.time()) < 60, "the server's clock is real"
