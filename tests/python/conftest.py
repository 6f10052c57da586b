"""Shared fixtures."""

from __future__ import annotations

import pytest

from rust_py_rate_limit import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
