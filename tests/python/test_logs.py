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
        import logging, os, sys, time
        from rust_py_rate_limit import ManualClock, RateLimiter, enable_logging
        logging.basicConfig(
            stream=sys.stdout, level=logging.DEBUG, format="%(process)d %(message)s"
        )
        enable_logging(poll_interval=0.01)
        clock = ManualClock()
        limiter = RateLimiter(1, 1, clock=clock, cleanup_interval=0.01)
        limiter.allow("k")
        pid = os.fork()
        if pid == 0:
            clock.advance(1)
            time.sleep(0.3)
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
        timeout=20,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "parent done" in lines
    assert any("janitor sweep removed=1" in line for line in lines), lines
