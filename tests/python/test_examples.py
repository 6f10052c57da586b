"""Every example runs and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_basic_example() -> None:
    out = run("basic_usage.py")
    assert "request 3 -> allowed" in out
    assert "request 4 -> blocked" in out
    assert "'allowed': False" in out
    assert "'retry_after_seconds': 60" in out
    assert "decorator refused" in out
    assert "stats(): {'allowed': 7, 'blocked': 3, 'total_checks': 10" in out


def test_decorator_example() -> None:
    out = run("decorator_usage.py")
    assert "blocked: key=login limit=5 retry_after=60" in out
    assert "{'user': 1}" in out


def test_async_example() -> None:
    out = run("async_usage.py")
    assert "aallow x5: [True, True, True, True, True]" in out
    assert "aallow 6th: False" in out
    assert "acquire with timeout 0: False" in out
    assert "refused, retry after 1s" in out


def test_drf_example() -> None:
    out = run("drf_app.py")
    assert "GET /api/users #3: 200" in out
    assert "GET /api/users #4: 429 Retry-After: 60" in out
    assert "GET /api/upload #1: 200" in out
    assert "GET /api/upload #2: 429" in out


def test_abuse_example() -> None:
    out = run("abuse.py")
    assert "hit 4: allowed=False banned=False retry_after=60.0" in out
    assert "hit 5: allowed=False banned=True retry_after=600.0" in out
    assert "banned for: 600.0" in out
    assert "after the ban: True" in out
    assert "allow-listed: [True, True, True, True, True]" in out
    assert "deny-listed denied: True" in out
    assert "shadow would refuse: [False, False, True, True]" in out
    assert "stats: {'allowed': 2, 'blocked': 2, 'shadow_refused': 2}" in out


def test_immutablelog_events_example() -> None:
    out = run("immutablelog_events.py")
    # A burst of 20 from one address: one blocked event, then one ban.
    assert "1 rate_limit_blocked ip:203.0.113.9" in out
    assert "2 rate_limit_banned ip:203.0.113.9" in out
    assert "chain lines verified: 2" in out
