"""The shared decision vectors, through the binding on a ManualClock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rust_py_rate_limit import ManualClock, RateLimiter

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "decisions.json"
CASES: list[dict[str, Any]] = json.loads(VECTORS.read_text())["cases"]


def build(case: dict[str, Any], clock: ManualClock) -> RateLimiter:
    limits = case["limits"]
    if len(limits) == 1:
        (limit, window), *_ = limits
        return RateLimiter(
            limit,
            window,
            algorithm=case["algorithm"],
            burst=case["burst"],
            clock=clock,
        )
    rate = ";".join(f"{limit}/{window}s" for limit, window in limits)
    return RateLimiter(rate=rate, algorithm=case["algorithm"], clock=clock)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_vector(case: dict[str, Any]) -> None:
    clock = ManualClock()
    limiter = build(case, clock)
    now_ns = 0
    for i, step in enumerate(case["steps"]):
        clock.advance((step["at_ns"] - now_ns) / 1e9)
        now_ns = step["at_ns"]
        d = limiter.decide("key", cost=step["cost"])
        got = (d.allowed, d.remaining, d.retry_after_ns, d.reset_after_ns)
        want = (
            step["allowed"],
            step["remaining"],
            step["retry_after_ns"],
            step["reset_after_ns"],
        )
        assert got == want, f"step {i} at {now_ns} ns"
        assert d.retry_after_seconds == -(-step["retry_after_ns"] // 10**9)


def test_every_algorithm_has_a_vector() -> None:
    assert {c["algorithm"] for c in CASES} >= {
        "fixed",
        "sliding",
        "sliding_log",
        "token_bucket",
        "gcra",
    }
