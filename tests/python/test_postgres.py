"""The PostgreSQL store through the public API, against real throwaway
servers: the same decisions as memory for every algorithm (sync and
awaitable), exact counts across threads, processes and a fork, refusals
that write nothing, the schema (created, versioned, unlogged or logged, a
role without CREATE), clear, sweeps, and failures that follow ``on_error``
within the deadline."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pg_server import PostgresServer

from rust_py_rate_limit import (
    ManualClock,
    RateLimiter,
    StorageError,
    postgres_schema_sql,
)
from rust_py_rate_limit.types import AlgorithmName

ALGORITHMS: list[AlgorithmName] = [
    "fixed",
    "sliding",
    "sliding_log",
    "token_bucket",
    "gcra",
]
# Manual time well after today's, so a sweep on the server's clock never
# finds these rows expired.
LATER = 1_900_000_000.0
SCHEMA = "rl_store"


def make(url: str, **options: Any) -> RateLimiter:
    options.setdefault("on_error", "raise")
    options.setdefault("pg_schema", SCHEMA)
    options.setdefault("timeout", 2.0)
    return RateLimiter(storage=url, **options)


def same(a: Any, b: Any) -> None:
    assert (a.allowed, a.limit, a.remaining, a.banned) == (
        b.allowed,
        b.limit,
        b.remaining,
        b.banned,
    )
    # Memory decides in ns, PostgreSQL in µs.
    assert abs(a.retry_after - b.retry_after) <= 1e-6
    assert abs(a.reset_after - b.reset_after) <= 1e-6


RATES: list[Any] = ["5/second", ["3/second", "10/minute"]]


@pytest.mark.parametrize("rate", RATES, ids=["single", "compound"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_decisions_match_the_memory_store(
    postgres: PostgresServer, algorithm: AlgorithmName, rate: Any
) -> None:
    clock = ManualClock()
    clock.advance(LATER)
    memory = RateLimiter(
        rate=rate, algorithm=algorithm, clock=clock, ban_after=4, ban_seconds=2
    )
    pg = make(
        postgres.url,
        rate=rate,
        algorithm=algorithm,
        clock=clock,
        ban_after=4,
        ban_seconds=2,
        key_prefix=f"match:{algorithm}:{len(rate)}",
    )
    rng = random.Random(f"{algorithm}{rate}")
    for _ in range(120):
        clock.advance(rng.choice([0, 0.001, 0.05, 0.2, 0.7, 3]))
        key, cost = rng.choice("ab"), rng.choice([1, 1, 2])
        if rng.random() < 0.2:
            same(memory.peek(key), pg.peek(key))
        else:
            same(memory.decide(key, cost), pg.decide(key, cost))
    assert pg.stats()["storage_errors"] == 0
    assert pg.stats()["allowed"] == memory.stats()["allowed"]


@pytest.mark.parametrize("algorithm", ["fixed", "gcra", "sliding_log"])
def test_awaitables_decide_as_the_sync_calls(
    postgres: PostgresServer, algorithm: AlgorithmName
) -> None:
    clock = ManualClock()
    clock.advance(LATER)
    memory = RateLimiter(rate="4/second", algorithm=algorithm, clock=clock)
    pg = make(
        postgres.url,
        rate="4/second",
        algorithm=algorithm,
        clock=clock,
        key_prefix=f"await:{algorithm}",
    )

    async def run() -> None:
        rng = random.Random(algorithm)
        for _ in range(60):
            clock.advance(rng.choice([0, 0.01, 0.3]))
            same(memory.decide("k"), await pg.adecide("k"))
            same(memory.peek("k"), await pg.apeek("k"))
        # Many at once pipeline on the shared connections, exactly.
        clock.advance(10)
        results = await asyncio.gather(*(pg.aallow("burst") for _ in range(40)))
        assert sum(results) == 4
        assert await pg.areset("burst") is True
        assert await pg.aallow("burst") is True
        await pg.aban("b", 30)
        assert await pg.abanned_for("b") == pytest.approx(30, abs=1e-6)
        assert (await pg.adecide("b")).banned
        assert await pg.aunban("b") is True
        assert await pg.aallow("b") is True
        await pg.aclear()
        assert await pg.aremaining("burst") == 4

    asyncio.run(run())
    assert pg.stats()["storage_errors"] == 0


def admitted_by_threads(lim: RateLimiter, hits: int, threads: int = 8) -> int:
    """`threads` threads at once, `hits` each on one key: how many passed."""
    counts: list[int] = []

    def worker() -> None:
        counts.append(sum(lim.allow("hot") for _ in range(hits)))

    started = [threading.Thread(target=worker) for _ in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join()
    return sum(counts)


def test_threads_admit_exactly_the_limit(postgres: PostgresServer) -> None:
    lim = make(postgres.url, rate="250/hour", key_prefix="threads")
    assert admitted_by_threads(lim, 100) == 250
    assert lim.stats()["storage_errors"] == 0


def _hits(url: str, n: int, out: Any) -> None:
    """8 threads of `n` hits each on one key; puts the admitted count."""
    lim = RateLimiter(
        rate="10000/hour", storage=url, on_error="raise", pg_schema=SCHEMA,
        key_prefix="procs", timeout=30,
    )  # fmt: skip
    out.put((admitted_by_threads(lim, n), lim.stats()["storage_errors"]))


def test_processes_and_threads_admit_exactly_the_limit(
    postgres: PostgresServer,
) -> None:
    """4 processes x 8 threads x 1,000 hits on one key: exactly 10,000."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_hits, args=(postgres.url, 1000, out)) for _ in range(4)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert sum(admitted for admitted, _ in results) == 10_000
    assert [errors for _, errors in results] == [0, 0, 0, 0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connections(postgres: PostgresServer) -> None:
    lim = make(postgres.url, rate="3/hour", key_prefix="fork")
    assert lim.allow("k") is True
    pid = os.fork()
    if pid == 0:  # the child: its own connections, the same limit
        try:
            ok = lim.allow("k") is True and lim.stats()["storage_errors"] == 0
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [lim.allow("k"), lim.allow("k")] == [True, False]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_calls_sync_and_async_within_a_second(
    postgres: PostgresServer,
) -> None:
    lim = make(postgres.url, rate="10/hour", key_prefix="fork-async")

    async def both() -> bool:
        return lim.allow("k") and await lim.aallow("k")

    assert asyncio.run(both())  # the parent's connections exist
    pid = os.fork()
    if pid == 0:
        try:
            started = time.monotonic()
            ok = asyncio.run(both()) and time.monotonic() - started < 1
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert asyncio.run(both())
    assert lim.remaining("k") == 4


def state_rows(postgres: PostgresServer, schema: str) -> list[tuple[Any, ...]]:
    with postgres.connect() as conn:
        rows: list[tuple[Any, ...]] = conn.execute(
            "SELECT xmin::text, key, rule, a, b, c, log, expires_at "
            f'FROM "{schema}".state ORDER BY key, rule'
        ).fetchall()
        return rows


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_refusal_writes_nothing(
    postgres: PostgresServer, algorithm: AlgorithmName
) -> None:
    schema = f"rl_refusal_{algorithm}"
    lim = make(postgres.url, rate=["2/minute", "5/hour"], algorithm=algorithm,
               pg_schema=schema)  # fmt: skip
    assert [lim.allow("k"), lim.allow("k")] == [True, True]
    before = state_rows(postgres, schema)
    assert len(before) == 2
    for _ in range(3):
        assert lim.allow("k") is False
        lim.peek("k")
    assert state_rows(postgres, schema) == before


def test_the_schema_is_created_versioned_and_unlogged(postgres: PostgresServer) -> None:
    make(postgres.url, rate="1/second", pg_schema="rl_unlogged").allow("k")
    make(postgres.url, rate="1/second", pg_schema="rl_logged", pg_unlogged=False)
    with postgres.connect() as conn:
        persistence = dict(
            conn.execute(
                "SELECT n.nspname, c.relpersistence FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relname = 'state' "
                "AND n.nspname IN ('rl_unlogged', 'rl_logged')"
            ).fetchall()
        )
        assert persistence == {"rl_unlogged": "u", "rl_logged": "p"}
        version = conn.execute("SELECT version FROM rl_unlogged.schema_version")
        assert version.fetchall() == [(1,)]
        conn.execute("UPDATE rl_logged.schema_version SET version = 99")
        conn.commit()
    with pytest.raises(StorageError, match=r"version 99, newer than this release's 1"):
        make(postgres.url, rate="1/second", pg_schema="rl_logged")


def test_a_role_without_create_is_told_the_sql_to_run(postgres: PostgresServer) -> None:
    with postgres.connect() as conn:
        conn.autocommit = True
        conn.execute("DROP ROLE IF EXISTS app")
        conn.execute("CREATE ROLE app LOGIN")
    url = f"postgresql://app@127.0.0.1:{postgres.port}/test"
    with pytest.raises(
        StorageError,
        match=r"cannot install the schema .*postgres_schema_sql\(\"rl_app\"\)",
    ):
        make(url, rate="2/minute", pg_schema="rl_app")
    with postgres.connect() as conn:
        conn.autocommit = True
        conn.execute(postgres_schema_sql("rl_app", role="app"))
    lim = make(url, rate="2/minute", pg_schema="rl_app")
    assert [lim.allow("k") for _ in range(3)] == [True, True, False]


def test_clear_drops_only_this_limiters_keys(postgres: PostgresServer) -> None:
    one = make(postgres.url, rate="1/hour", key_prefix="clear-one")
    two = make(postgres.url, rate="1/hour", key_prefix="clear-two")
    assert one.allow("k")
    assert two.allow("k")
    one.clear()
    assert one.allow("k") is True
    assert two.allow("k") is False


def test_sweeps_delete_expired_rows_in_batches(postgres: PostgresServer) -> None:
    schema = "rl_sweep"
    clock = ManualClock()  # time 0: every row is long expired by the server's clock
    old = make(postgres.url, rate="5/second", clock=clock, pg_schema=schema)
    live = make(postgres.url, rate="5/hour", pg_schema=schema, key_prefix="live")
    for i in range(2500):
        old.allow(f"k{i}")
    live.allow("stays")
    assert len(state_rows(postgres, schema)) == 2501
    assert old.cleanup_expired() == 2500  # three batches of at most 1,000
    assert len(state_rows(postgres, schema)) == 1
    stats = old.stats()
    assert (stats["cleanup_runs"], stats["expired_removed"]) == (1, 2500)
    assert live.allow("stays") is True


def test_the_janitor_sweeps_on_its_interval(postgres: PostgresServer) -> None:
    schema = "rl_janitor"
    lim = make(postgres.url, rate="5/second", clock=ManualClock(), pg_schema=schema,
               cleanup_interval=0.05)  # fmt: skip
    for i in range(30):
        lim.allow(f"k{i}")
    deadline = time.monotonic() + 10
    while state_rows(postgres, schema) and time.monotonic() < deadline:
        time.sleep(0.02)  # waiting on the real janitor
    assert state_rows(postgres, schema) == []
    assert lim.stats()["cleanup_runs"] >= 1


def test_a_unix_socket_url(postgres: PostgresServer) -> None:
    url = f"postgresql:///test?host={postgres.dir}&port={postgres.port}&user=postgres"
    lim = make(url, rate="2/minute", key_prefix="unix")
    assert [lim.allow("k") for _ in range(3)] == [True, True, False]


def test_repr_and_stats_name_the_store(postgres: PostgresServer) -> None:
    url = f"postgresql://postgres:secret@127.0.0.1:{postgres.port}/test"
    lim = make(url, rate="2/minute", key_prefix="repr")
    assert 'storage="postgresql://postgres:***@127.0.0.1' in repr(lim)
    assert "secret" not in repr(lim)
    assert lim.storage == "postgresql"
    assert lim.metrics()["storage"] == "postgresql"


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"pg_schema": 3}, TypeError, "pg_schema must be a str"),
        ({"pg_schema": ""}, ValueError, "pg_schema must be 1 to 63 bytes"),
        ({"pg_unlogged": "no"}, TypeError, "pg_unlogged must be a bool"),
        (
            {"local_cache_keys": 5},
            ValueError,
            "local_cache_keys only applies to a Redis",
        ),
        ({"max_keys": 5}, ValueError, "max_keys applies to the memory store"),
    ],
)
def test_bad_options_name_the_argument(
    postgres: PostgresServer, options: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        make(postgres.url, rate="1/second", **options)


def test_postgres_options_need_a_postgres_storage() -> None:
    with pytest.raises(ValueError, match="pg_schema only applies to a PostgreSQL"):
        RateLimiter(rate="1/second", pg_schema="x")
    with pytest.raises(ValueError, match="pg_unlogged only applies to a PostgreSQL"):
        RateLimiter(rate="1/second", storage="redis://localhost", pg_unlogged=False)
    with pytest.raises(ValueError, match="storage is not a usable PostgreSQL URL"):
        RateLimiter(rate="1/second", storage="postgresql://h/db?bogus=1")
    with pytest.raises(ValueError, match="schema must be 1 to 63 bytes"):
        postgres_schema_sql("")


def test_a_key_flood_is_swept_as_it_comes(postgres: PostgresServer) -> None:
    """20,000 one-off keys under the janitor: the table holds a fraction of
    them at any time and none once the janitor catches up."""
    schema = "rl_flood"
    # Each row expires a second after a manual time an hour ago: already
    # expired by the server's clock, so only the sweep bounds the table.
    clock = ManualClock()
    clock.advance(time.time() - 3600)
    lim = make(postgres.url, rate="5/second", clock=clock, pg_schema=schema,
               cleanup_interval=0.05)  # fmt: skip
    peak = 0
    try:
        with postgres.connect() as conn:
            conn.autocommit = True
            count = f"SELECT count(*) FROM {schema}.state"
            for block in range(20):
                for i in range(1000):
                    assert lim.allow(f"flood-{block}-{i}") is True
                peak = max(peak, conn.execute(count).fetchone()[0])
            # Waiting on the real janitor: the table empty and its sweep
            # counted (a sweep counts its batches once it has committed them).
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                left = conn.execute(count).fetchone()[0]
                if left == 0 and lim.stats()["expired_removed"] == 20_000:
                    break
                time.sleep(0.02)
    finally:
        lim.stop_cleanup()
    assert left == 0
    assert peak < 10_000  # without the janitor: 20,000
    stats = lim.stats()
    assert stats["expired_removed"] == 20_000
    assert stats["storage_errors"] == 0


# -- failures -----------------------------------------------------------------


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server of the test's own, which it may stop or lock."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        result = call()
    except StorageError as e:
        result = e
    return result, time.monotonic() - started


def test_a_locked_table_times_out_within_the_deadline(
    own_server: PostgresServer,
) -> None:
    lim = make(own_server.url, rate="5/second", timeout=0.2, pg_schema="rl_lock")
    assert lim.allow("k") is True
    with own_server.connect() as blocker:
        blocker.execute("LOCK TABLE rl_lock.state IN ACCESS EXCLUSIVE MODE")
        result, took = timed(lambda: lim.allow("k"))
        assert isinstance(result, StorageError)
        assert "timed out after 200 ms" in str(result) or "cancelled" in str(result)
        assert took <= 2 * 0.2 + 0.05

        async def awaited() -> Any:
            try:
                return await lim.aallow("k")
            except StorageError as e:
                return e

        started = time.monotonic()
        result = asyncio.run(awaited())
        assert isinstance(result, StorageError)
        assert time.monotonic() - started <= 2 * 0.2 + 0.05
        blocker.rollback()
    # The breaker may have opened: it closes once the probe gets through.
    wait_for_breaker_to_close(lim)
    assert lim.allow("k") is True


def test_a_terminated_backend_costs_no_decision(own_server: PostgresServer) -> None:
    lim = make(own_server.url, rate="5/minute", pg_schema="rl_term")

    async def awaited(key: str) -> bool:
        return await lim.aallow(key)

    loop = asyncio.new_event_loop()
    try:
        assert lim.allow("k") is True
        assert loop.run_until_complete(awaited("a")) is True
        own_server.terminate_backends("rust_py_rate_limit")
        # The pooled and shared connections are gone: calls open new ones.
        assert [lim.allow("k") for _ in range(5)] == [True] * 4 + [False]
        assert loop.run_until_complete(awaited("a")) is True
    finally:
        loop.close()
    assert lim.stats()["storage_errors"] == 0


def test_a_read_only_server_follows_on_error(own_server: PostgresServer) -> None:
    lim = make(own_server.url, rate="5/minute", pg_schema="rl_ro")
    assert lim.allow("k") is True
    with own_server.connect() as admin:
        admin.autocommit = True
        admin.execute("ALTER DATABASE test SET default_transaction_read_only = on")
    own_server.terminate_backends("rust_py_rate_limit")
    raised = [timed(lambda: lim.allow("k"))[0] for _ in range(2)]
    assert all(isinstance(r, StorageError) for r in raised)
    assert any("read-only" in str(r) for r in raised), raised
    deny = make(own_server.url, rate="5/minute", pg_schema="rl_ro", on_error="deny")
    allow = make(own_server.url, rate="5/minute", pg_schema="rl_ro", on_error="allow")
    assert deny.allow("k") is False
    assert allow.allow("k") is True
    assert deny.stats()["storage_errors"] == allow.stats()["storage_errors"] == 1


@pytest.mark.parametrize("on_error", ["allow", "deny", "raise"])
def test_a_stopped_server_follows_on_error_and_is_logged_once(
    own_server: PostgresServer, on_error: str, caplog: pytest.LogCaptureFixture
) -> None:
    lim = make(own_server.url, rate="5/minute", on_error=on_error, timeout=0.2,
               pg_schema="rl_down")  # fmt: skip
    assert lim.allow("k") is True
    own_server.stop()
    with caplog.at_level(logging.WARNING, logger="rust_py_rate_limit"):
        results = []
        for _ in range(6):
            result, took = timed(lambda: lim.allow("k"))
            assert took <= 2 * 0.2 + 0.05
            results.append(result)
    if on_error == "raise":
        assert all(isinstance(r, StorageError) for r in results)
        assert str(results[0]).startswith("postgresql: ")
    else:
        assert results == [on_error == "allow"] * 6
    stats = lim.stats()
    assert stats["storage_errors"] == 6
    assert stats["breaker"] == "open"
    failing = [
        r for r in caplog.records if "failing; circuit breaker opened" in r.getMessage()
    ]
    assert len(failing) == 1
    assert "PostgreSQL at postgresql://postgres@127.0.0.1" in failing[0].getMessage()


# -- adapters -----------------------------------------------------------------


def test_the_asgi_middleware_takes_the_url(postgres: PostgresServer) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from rust_py_rate_limit.fastapi import RateLimitMiddleware

    app = FastAPI()
    app.add_middleware(
        RateLimitMiddleware, limit=2, window_seconds=60, storage=postgres.url,
        pg_schema="rl_asgi", key_prefix="asgi", on_error="raise",
    )  # fmt: skip

    @app.get("/")
    def index() -> dict[str, bool]:
        return {"ok": True}

    client = TestClient(app)
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 429]
    with postgres.connect() as conn:
        rows = conn.execute("SELECT count(*) FROM rl_asgi.state").fetchone()
    assert rows == (1,)


def test_django_settings_take_the_url(postgres: PostgresServer) -> None:
    import django_settings  # noqa: F401  (configures Django)
    from django.http import HttpRequest, HttpResponse
    from django.test import RequestFactory, override_settings

    from rust_py_rate_limit.django import RateLimitMiddleware

    config = {
        "LIMIT": 2,
        "WINDOW_SECONDS": 60,
        "STORAGE": postgres.url,
        "PG_SCHEMA": "rl_django",
        "PG_UNLOGGED": False,
        "ON_ERROR": "raise",
    }

    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    with override_settings(RUST_PY_RATE_LIMIT=config):
        middleware = RateLimitMiddleware(view)
    factory = RequestFactory()
    codes = [middleware(factory.get("/")).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    with postgres.connect() as conn:
        kind = conn.execute(
            "SELECT relpersistence FROM pg_class "
            "WHERE oid = 'rl_django.state'::regclass"
        ).fetchone()
    assert kind == ("p",)


def wait_for_breaker_to_close(lim: RateLimiter) -> None:
    deadline = time.monotonic() + 15
    while lim.stats()["breaker"] == "open":
        assert time.monotonic() < deadline, "the breaker never closed"
        time.sleep(0.05)  # waiting on the real probe


@pytest.mark.parametrize("on_error", ["allow", "deny", "raise"])
def test_a_paused_server_costs_the_deadline_then_recovers(
    own_server: PostgresServer, on_error: str
) -> None:
    lim = make(own_server.url, rate="5/minute", on_error=on_error, timeout=0.2,
               pg_schema="rl_pause")  # fmt: skip
    assert lim.allow("k") is True
    own_server.pause()
    try:
        for _ in range(4):
            result, took = timed(lambda: lim.allow("k"))
            assert took <= 2 * 0.2 + 0.05
            if on_error == "raise":
                assert isinstance(result, StorageError)
            else:
                assert result is (on_error == "allow")

        async def awaited() -> Any:
            try:
                return await lim.aallow("k")
            except StorageError as e:
                return e

        started = time.monotonic()
        asyncio.run(awaited())
        assert time.monotonic() - started <= 2 * 0.2 + 0.05
        assert lim.stats()["breaker"] == "open"
    finally:
        own_server.resume()
    wait_for_breaker_to_close(lim)
    assert lim.allow("k") is True
    assert asyncio.run(lim.aallow("k")) is True


def test_a_killed_and_restarted_server(own_server: PostgresServer) -> None:
    lim = make(own_server.url, rate="5/minute", on_error="deny", timeout=0.2,
               pg_schema="rl_restart")  # fmt: skip
    assert lim.allow("k") is True
    own_server.kill()
    for _ in range(4):
        result, took = timed(lambda: lim.allow("k"))
        assert result is False
        assert took <= 2 * 0.2 + 0.05
    own_server.restart()
    wait_for_breaker_to_close(lim)
    # Unlogged tables are emptied by the crash: the key starts afresh.
    assert [lim.allow("k") for _ in range(6)] == [True] * 5 + [False]
    assert asyncio.run(lim.aallow("other")) is True


def test_a_repeatable_read_default_changes_nothing(own_server: PostgresServer) -> None:
    with own_server.connect() as admin:
        admin.autocommit = True
        admin.execute(
            "ALTER DATABASE test SET default_transaction_isolation = 'repeatable read'"
        )
    lim = make(own_server.url, rate="100/hour", pg_schema="rl_rr")
    assert admitted_by_threads(lim, 50) == 100
    assert lim.stats()["storage_errors"] == 0


def test_a_dropped_schema_is_installed_again(postgres: PostgresServer) -> None:
    lim = make(postgres.url, rate="3/minute", pg_schema="rl_dropped")
    assert lim.allow("k") is True
    with postgres.connect() as conn:
        conn.execute("DROP SCHEMA rl_dropped CASCADE")
        conn.commit()
    with pytest.raises(StorageError, match="is not installed yet; installing it"):
        lim.allow("k")
    deadline = time.monotonic() + 15
    while True:  # waiting on the real background install
        try:
            first = lim.allow("k")
            break
        except StorageError:
            assert time.monotonic() < deadline, "the schema was never installed"
            time.sleep(0.05)
    assert [first, lim.allow("k"), lim.allow("k"), lim.allow("k")] == [
        True,
        True,
        True,
        False,
    ]


def test_a_standby_in_recovery_follows_on_error(own_server: PostgresServer) -> None:
    primary = make(own_server.url, rate="5/minute", pg_schema="rl_standby")
    assert primary.allow("k") is True  # the schema exists, and streams
    standby = PostgresServer(primary=own_server)
    try:
        deadline = time.monotonic() + 30
        while True:  # waiting on the real replication
            with standby.connect() as conn:
                in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                found = conn.execute(
                    "SELECT count(*) FROM pg_namespace WHERE nspname = 'rl_standby'"
                ).fetchone()
            assert in_recovery == (True,)
            if found == (1,):
                break
            assert time.monotonic() < deadline, "the standby never caught up"
            time.sleep(0.05)
        raising = make(standby.url, rate="5/minute", pg_schema="rl_standby")
        result, took = timed(lambda: raising.allow("k"))
        assert isinstance(result, StorageError)
        assert "the server is a standby in recovery, read-only" in str(result)
        assert took <= 2 * 2.0 + 0.05
        for on_error, expected in (("allow", True), ("deny", False)):
            lim = make(standby.url, rate="5/minute", pg_schema="rl_standby",
                       on_error=on_error)  # fmt: skip
            assert lim.allow("k") is expected
            assert lim.stats()["storage_errors"] == 1
    finally:
        standby.stop()


def test_tls_as_libpq_reads_sslmode() -> None:
    server = PostgresServer(tls=True)
    try:
        base = f"postgresql://postgres@127.0.0.1:{server.port}/test"

        def encrypted(url: str) -> bool:
            lim = make(url, rate="5/minute", pg_schema="rl_tls", key_prefix=url[-40:])
            assert lim.allow("k") is True
            with server.connect() as conn:
                row = conn.execute(
                    "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a "
                    "USING (pid) WHERE a.application_name = 'rust_py_rate_limit'"
                ).fetchone()
            assert row is not None
            return bool(row[0])

        assert encrypted(f"{base}?sslmode=require") is True  # encrypted, unchecked
        assert encrypted(f"{base}?sslmode=verify-full&sslrootcert={server.cert}")
        # The self-signed certificate is not one of the web's roots.
        lim = make(f"{base}?sslmode=verify-full", rate="5/minute", pg_schema="rl_tls")
        with pytest.raises(StorageError, match=r"could not connect to .*certificate"):
            lim.allow("k")
    finally:
        server.stop()


def inject(server: PostgresServer, schema: str, code: str, times: int) -> None:
    """The next `times` writes of a hit to `schema` fail with SQLSTATE
    `code`, as the server fails a deadlock's or a serialization failure's
    victim (the statement rolled back). A sequence counts them: it is not
    rolled back with the failing statement."""
    with server.connect() as conn:
        conn.autocommit = True
        conn.execute(f"DROP SEQUENCE IF EXISTS {schema}.faults")
        conn.execute(f"CREATE SEQUENCE {schema}.faults")
        conn.execute(f"""
            CREATE OR REPLACE FUNCTION {schema}.fault() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('{schema}.faults') <= {times} THEN
                    RAISE EXCEPTION 'injected' USING ERRCODE = '{code}';
                END IF;
                RETURN NEW;
            END $$""")
        conn.execute(f"DROP TRIGGER IF EXISTS fault ON {schema}.state")
        conn.execute(
            f"CREATE TRIGGER fault BEFORE INSERT OR UPDATE ON {schema}.state "
            f"FOR EACH ROW EXECUTE FUNCTION {schema}.fault()"
        )


ROLLBACKS = {"40P01": "a deadlock", "40001": "a serialization failure"}


@pytest.mark.parametrize("code", list(ROLLBACKS))
def test_a_rolled_back_decision_is_made_once_more(
    postgres: PostgresServer, code: str
) -> None:
    """A deadlock's or serialization failure's victim decided nothing: the
    call is made once more and the hit counted once."""
    schema = f"rl_retry_{code.lower()}"
    lim = make(postgres.url, rate="2/minute", pg_schema=schema)
    assert lim.peek("k").remaining == 2  # installs the schema
    inject(postgres, schema, code, times=1)
    assert lim.allow("k") is True
    inject(postgres, schema, code, times=1)

    async def awaited() -> bool:
        return await lim.aallow("k")

    assert asyncio.run(awaited()) is True
    assert lim.allow("k") is False
    assert lim.stats()["storage_errors"] == 0


@pytest.mark.parametrize("code", list(ROLLBACKS))
@pytest.mark.parametrize("on_error", ["allow", "deny", "raise"])
def test_a_decision_rolled_back_again_follows_on_error(
    postgres: PostgresServer, code: str, on_error: str
) -> None:
    schema = f"rl_rollback_{code.lower()}"
    lim = make(postgres.url, rate="2/minute", pg_schema=schema, on_error=on_error,
               key_prefix=on_error, timeout=0.5)  # fmt: skip
    assert lim.peek("k").remaining == 2
    inject(postgres, schema, code, times=1_000_000)

    async def awaited() -> Any:
        try:
            return await lim.aallow("k")
        except StorageError as e:
            return e

    for result, took in [timed(lambda: lim.allow("k")),
                         timed(lambda: asyncio.run(awaited()))]:  # fmt: skip
        assert took <= 0.5 + 0.1
        if on_error == "raise":
            assert isinstance(result, StorageError)
            assert f"postgresql: {ROLLBACKS[code]}: injected" in str(result)
        else:
            assert result is (on_error == "allow")
    assert lim.stats()["storage_errors"] == 2
