"""Opt-in forwarding of the core's log events to Python logging."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time

import pytest

from rust_py_rate_limit import ManualClock, RateLimiter, enable_logging


def test_janitor_sweeps_reach_the_python_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="rust_py_rate_limit")
    enable_logging(poll_interval=0.01)
    enable_logging()  # a second call changes nothing
    clock = ManualClock()
    with RateLimiter(1, 1, clock=clock, cleanup_interval=0.01) as limiter:
        limiter.allow("k")
        clock.advance(1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            "removed=1" in r.getMessage() for r in caplog.records
        ):
            time.sleep(0.01)
    sweeps = [r for r in caplog.records if "janitor sweep" in r.getMessage()]
    assert any("removed=1" in r.getMessage() for r in sweeps)
    assert all(r.name == "rust_py_rate_limit" for r in sweeps)
    assert all(r.levelno == logging.DEBUG for r in sweeps)
    assert all(
        getattr(r, "rust_target", None) == "rust_py_rate_limit::janitor" for r in sweeps
    )


@pytest.mark.parametrize("interval", [0, -1, "1", True])
def test_bad_poll_interval(interval: object) -> None:
    with pytest.raises((TypeError, ValueError), match="poll_interval"):
        enable_logging(poll_interval=interval)  # type: ignore[arg-type]


def test_forwarding_survives_fork_and_exit() -> None:
    script = textwrap.dedent(
        """
        import logging, os, sys, threading, time
        from rust_py_rate_limit import ManualClock, RateLimiter, enable_logging
        logging.basicConfig(
            stream=sys.stdout, level=logging.DEBUG, format="%(process)d %(message)s"
        )
        swept = threading.Event()
        class Seen(logging.Handler):
            def emit(self, record):
                if "removed=1" in record.getMessage():
                    swept.set()
        logging.getLogger().addHandler(Seen())
        enable_logging(poll_interval=0.01)
        clock = ManualClock()
        limiter = RateLimiter(1, 1, clock=clock, cleanup_interval=0.01)
        limiter.allow("k")
        pid = os.fork()
        if pid == 0:
            clock.advance(1)
            # Waits for the child's own janitor and pump (on a loaded machine
            # they can take a while), not a fixed time.
            swept.wait(20)
            sys.stdout.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        print("parent done", flush=True)
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
    lines = result.stdout.splitlines()
    assert "parent done" in lines
    assert any("janitor sweep removed=1" in line for line in lines), lines


def test_an_outage_and_its_end_are_logged_without_enable_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With Redis down and the default on_error="allow", every hit is
    admitted unchecked: that must reach `logging` (WARNING) even when nobody
    called enable_logging(), once for the outage and once for its end."""
    from redis_server import RedisServer, free_port, require_redis_server

    require_redis_server()
    caplog.set_level(logging.WARNING, logger="rust_py_rate_limit")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    limiter = RateLimiter(100, 60, storage=url, key_prefix="outage", timeout=0.5)

    def lines(marker: str) -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name == "rust_py_rate_limit"
            and f"127.0.0.1:{port}" in r.getMessage()
            and marker in r.getMessage()
        ]

    def settle(marker: str, want: int) -> list[logging.LogRecord]:
        # Delivered by the call that follows the event (or by the pump thread
        # if another test enabled logging): give a pump a moment.
        deadline = time.monotonic() + 2
        while len(lines(marker)) < want and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.15)
        return lines(marker)

    assert sum(limiter.allow("k") for _ in range(200)) == 200  # fail open
    assert limiter.stats()["storage_errors"] >= 1
    opened = settle("circuit breaker opened", 1)
    assert len(opened) == 1, [r.getMessage() for r in opened]
    assert opened[0].levelno == logging.WARNING
    assert "on_error='allow': hits are admitted unchecked" in opened[0].getMessage()
    assert not lines("answers again")

    server = RedisServer(port=port)
    try:
        deadline = time.monotonic() + 10
        while limiter.stats()["breaker"] != "closed":
            assert time.monotonic() < deadline, "the breaker never closed"
            time.sleep(0.05)
        assert limiter.allow("k") is True
        assert limiter.allow("k") is True
        recovered = settle("answers again", 1)
        assert len(recovered) == 1, [r.getMessage() for r in recovered]
        assert recovered[0].levelno == logging.WARNING
        assert len(lines("circuit breaker opened")) == 1
    finally:
        server.stop()
