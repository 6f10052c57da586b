"""The shared policy cases (`policy_cases`), through every adapter's own
test client (`policy_harness`): one table, the same answers everywhere."""

from __future__ import annotations

import re
from typing import Any

import pytest
from policy_cases import CASES, Case, Step
from policy_harness import HARNESSES, Harness, Sent

from rust_py_rate_limit import ManualClock

RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "RateLimit")


def check(step: Step, got: Sent, statuses_only: bool = False) -> None:
    where = f"{step.method} {step.path} from {step.peer}"
    if step.status is not None:
        assert got.status == step.status, (where, got.status, got.body[:200])
    if statuses_only:
        # What a throttle controls: the status, and Retry-After on a 429.
        if "Retry-After" in step.expect:
            assert got.header("Retry-After") == step.expect["Retry-After"], where
        return
    if step.counted is not None:
        counted = any(got.header(name) is not None for name in RATE_LIMIT_HEADERS)
        assert counted is step.counted, (where, dict(got.headers))
    for name, value in step.expect.items():
        assert got.header(name) == value, (where, name, dict(got.headers))
    if step.body is not None:
        assert got.json() == step.body, where
    if step.text is not None:
        assert got.body.decode() == step.text, where


@pytest.mark.parametrize(
    ("harness", "case"),
    [
        pytest.param(harness, case, id=f"{case.id}-{harness.name}")
        for case in CASES
        for harness in HARNESSES
        if not case.needs & harness.lacks
    ],
)
def test_policy_case(harness: Harness, case: Case) -> None:
    options: dict[str, Any] = {"limit": case.limit, "window_seconds": 60}
    if "storage" not in case.options:
        options["clock"] = ManualClock()
    options.update(case.options)
    with harness.make(**options) as app:
        for step in case.steps:
            send = (step.method, step.path, step.headers, step.peer)
            if step.raises is not None:
                with pytest.raises(Exception, match=re.compile(step.raises)):
                    app.send(*send)
                continue
            statuses_only = getattr(harness, "statuses_only", False)
            check(step, app.send(*send), statuses_only)
