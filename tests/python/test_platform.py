"""The Python side holds up where the OS lacks POSIX pieces, as on Windows:
no ``os.register_at_fork`` and no ``fcntl``. A child interpreter removes
both before the package is imported, then imports every module that
registers a fork handler and uses each of them (a decision, an event, the
Prometheus multiprocess mirror, the ImmutableLog file). The Rust side's
Windows build is checked by ``make wheels`` (a cross ``cargo clippy``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import os, sys, threading
    del os.fork, os.register_at_fork  # Windows has no fork
    sys.modules["fcntl"] = None       # nor fcntl: importing it raises
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]

    import rust_py_rate_limit
    from rust_py_rate_limit import RateLimiter, events, logs, prometheus
    from rust_py_rate_limit.immutablelog import ImmutableLogSink, verify

    limiter = RateLimiter(limit=1, window_seconds=60)
    seen = threading.Event()
    limiter.on_event(lambda event: seen.set())
    assert limiter.allow("k") is True
    assert limiter.allow("k") is False
    assert seen.wait(10), "no event delivered"

    prometheus.register(interval=0.05)
    chain = os.path.join(sys.argv[1], "chain.jsonl")
    sink = ImmutableLogSink(service="svc", mode="local", path=chain)
    logged = RateLimiter(limit=1, window_seconds=60)
    logged.on_event(sink)
    logged.allow("k"), logged.allow("k")
    events.flush()
    sink.close()
    assert verify(chain) == 1, "one event in the hash chain"
    print("ok")
    """
)


def test_the_package_works_without_fork_handlers_or_fcntl(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok"]
