"""One limit shared by many processes on one Redis: exact totals across
processes and threads, across uvicorn workers, and across hosts whose clocks
disagree. Every server is a throwaway one (the session's ``redis_url``, see
conftest.py and redis_server.py).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator

import pytest
import redis

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
    check = RateLimiter(limit, 600, storage=redis_url, key_prefix=prefix)
    assert check.remaining("hot") == 0
