"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pg_server import PostgresServer
from redis_server import RedisServer, in_ci

from rust_py_rate_limit import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the session (initdb into a
    temporary directory, a free loopback port), stopped by PID at the end."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis server for the tests: RUST_PY_RATE_LIMIT_REDIS_URL if set,
    otherwise a throwaway redis-server on a free port, stopped at the end of
    the session (skipped, with how to install one, when there is none)."""
    url = os.environ.get("RUST_PY_RATE_LIMIT_REDIS_URL")
    if url:
        yield url
        return
    server = RedisServer()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI no test may skip: a skip is reported as a failure."""
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (RUST_PY_RATE_LIMIT_CI=1): {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    """Nor may a whole module skip (``pytest.importorskip`` at its top, for
    a package CI should have installed): that is a failure too."""
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (RUST_PY_RATE_LIMIT_CI=1): {report.longrepr}"
