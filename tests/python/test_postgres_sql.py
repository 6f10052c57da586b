"""The PostgreSQL store's server-side functions (src/store/postgres/*.sql),
called directly: the shared decision vectors, compound limits, bans, reset
and the sweep, on a throwaway server. The store's Rust client calls the same
functions."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_server import PostgresServer

from rust_py_rate_limit import ManualClock, RateLimiter, postgres_schema_sql

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors" / "decisions.json"
CASES: list[dict[str, Any]] = json.loads(VECTORS.read_text())["cases"]
SCHEMA = "rl_test"
# A time origin like today's Unix time in µs: every digit must survive.
ORIGIN = 1_780_000_000_000_000


def install_sql(schema: str, unlogged: bool = True) -> str:
    """The SQL the store installs (the library hands it out for a DBA)."""
    return postgres_schema_sql(schema, unlogged)


@pytest.fixture(scope="module")
def pg(postgres: PostgresServer) -> Iterator[Any]:
    with postgres.connect() as conn:
        conn.autocommit = True
        conn.execute(install_sql(SCHEMA))
        yield conn


def decide(
    conn: Any,
    key: bytes,
    algorithm: str,
    rules: list[tuple[int, int, int]],
    now: int,
    cost: int = 1,
    mode: str = "hit",
    ban: tuple[int, int, int] = (0, 0, 0),
) -> tuple[bool, int, int, int, int, int]:
    limits, windows, bursts = (list(x) for x in zip(*rules, strict=True))
    row = conn.execute(
        f"SELECT * FROM {SCHEMA}.decide(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (key, algorithm, limits, windows, bursts, list(ban), mode, cost, now),
    ).fetchone()
    return tuple(row)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_shared_vectors_on_postgres(pg: Any, case: dict[str, Any]) -> None:
    # The vectors are in ns; the functions work in µs. The arithmetic is the
    # same in any unit: one ns of a vector is one µs here (windows x1000).
    rules = [
        (limit, window * 1_000_000_000, case["burst"] or limit)
        for limit, window in case["limits"]
    ]
    key = f"vector:{case['name']}".encode()
    for i, step in enumerate(case["steps"]):
        allowed, _, remaining, reset, retry, banned = decide(
            pg, key, case["algorithm"], rules, ORIGIN + step["at_ns"], step["cost"]
        )
        got = (allowed, remaining, retry, reset, banned)
        want = (
            step["allowed"],
            step["remaining"],
            step["retry_after_ns"],
            step["reset_after_ns"],
            0,
        )
        assert got == want, f"step {i}"


def test_a_peek_spends_nothing_and_a_refusal_writes_nothing(pg: Any) -> None:
    rules = [(2, 60_000_000, 2)]
    key = b"peek"
    assert decide(pg, key, "fixed", rules, ORIGIN, mode="peek")[:3] == (True, 2, 2)
    assert decide(pg, key, "fixed", rules, ORIGIN)[2] == 1
    assert decide(pg, key, "fixed", rules, ORIGIN)[2] == 0
    before = pg.execute(
        f"SELECT a, b FROM {SCHEMA}.state WHERE key = %s", (key,)
    ).fetchall()
    assert decide(pg, key, "fixed", rules, ORIGIN + 1)[0] is False
    after = pg.execute(
        f"SELECT a, b FROM {SCHEMA}.state WHERE key = %s", (key,)
    ).fetchall()
    assert before == after


@pytest.mark.parametrize(
    "algorithm", ["fixed", "sliding", "sliding_log", "token_bucket", "gcra"]
)
@pytest.mark.parametrize(
    "rate", [[(5, 2)], [(3, 1), (7, 10)]], ids=["single", "compound"]
)
def test_postgres_agrees_with_the_memory_store(
    pg: Any, algorithm: str, rate: list[tuple[int, int]]
) -> None:
    """300 random hits and peeks: the same answers, to the microsecond
    (compound limits all-or-nothing, the most restrictive reported)."""
    rng = random.Random(f"{algorithm}{rate}")
    clock = ManualClock()
    text = ";".join(f"{limit}/{window}s" for limit, window in rate)
    memory = RateLimiter(rate=text, algorithm=algorithm, clock=clock)  # type: ignore[arg-type]
    # No burst given: each rule's bucket holds its own limit.
    rules = [(limit, window * 1_000_000, limit) for limit, window in rate]
    key = f"agree:{algorithm}:{text}".encode()
    now = 0
    for i in range(300):
        step = rng.choice([0, 1, 1_000, 150_000, 700_000, 2_500_000])
        now += step
        clock.advance(step / 1e6)
        peek = rng.random() < 0.2
        cost = 1 if peek else min(rng.choice([1, 1, 1, 2, 3]), memory.capacity)
        mine = memory.peek("k") if peek else memory.decide("k", cost)
        got = decide(
            pg, key, algorithm, rules, ORIGIN + now, cost, "peek" if peek else "hit"
        )
        where = f"hit {i} at {now} µs (cost {cost}, peek {peek})"
        assert got[:3] == (mine.allowed, mine.limit, mine.remaining), where
        assert got[5] == 0, where
        # Times: the memory store decides in ns, PostgreSQL in µs.
        assert abs(got[3] - mine.reset_after_ns / 1000) <= 1, where
        assert abs(got[4] - mine.retry_after_ns / 1000) <= 1, where


def fixed_one(
    conn: Any, key: bytes, rule: tuple[int, int, int], now: int, cost: int, mode: str
) -> tuple[bool, int, int, int, int, int]:
    """The one-statement decision the store prepares for a one-rule fixed
    window without automatic bans (src/store/postgres/fixed_one.sql)."""
    sql = (ROOT / "src/store/postgres/fixed_one.sql").read_text()
    sql = sql.replace("__SCHEMA__", SCHEMA)
    sql = re.sub(r"--[^\n]*", "", sql)  # comments name the parameters too
    # The store prepares it with these parameter types (conn.rs, DECIDE_TYPES).
    types = ["bytea", "text", *["bigint[]"] * 4, "text", "bigint", "bigint"]
    sql = re.sub(r"\$(\d)", lambda m: f"%(p{m[1]})s::{types[int(m[1]) - 1]}", sql)
    limit, window, burst = rule
    params = [key, "fixed", [limit], [window], [burst], [0, 0, 0], mode, cost, now]
    row = conn.execute(sql, {f"p{i}": v for i, v in enumerate(params, 1)}).fetchone()
    return tuple(row)


def test_the_fixed_statement_answers_as_decide(pg: Any) -> None:
    """The one-statement fixed window gives decide()'s answers, to the
    microsecond, over 600 random hits, peeks, bans and window turns; and
    the rows each leaves are the same."""
    rng = random.Random("fixed_one")
    rule = (4, 3_000_000, 4)
    now = ORIGIN
    fast, slow = b"fixed_one:fast", b"fixed_one:slow"
    for i in range(600):
        now += rng.choice([0, 1, 1_000, 400_000, 1_500_000, 3_000_000, 7_000_000])
        mode = "peek" if rng.random() < 0.2 else "hit"
        cost = 1 if mode == "peek" else rng.choice([1, 1, 2, 4])
        if rng.random() < 0.03:
            for key in (fast, slow):
                pg.execute(f"SELECT {SCHEMA}.ban(%s, %s, %s)", (key, 2_000_000, now))
        got = fixed_one(pg, fast, rule, now, cost, mode)
        want = decide(pg, slow, "fixed", [rule], now, cost, mode)
        assert got == want, f"step {i} at {now - ORIGIN} µs ({mode}, cost {cost})"
        rows = [
            pg.execute(
                f"SELECT a, b, expires_at FROM {SCHEMA}.state WHERE key = %s", (key,)
            ).fetchone()
            for key in (fast, slow)
        ]
        assert rows[0] == rows[1], f"step {i}: rows {rows}"


def test_bans_begin_hold_and_lift(pg: Any) -> None:
    rules = [(1, 60_000_000, 1)]
    ban = (2, 60_000_000, 600_000_000)  # 2 refusals within 60 s: 600 s ban
    key = b"ban"
    assert decide(pg, key, "fixed", rules, ORIGIN, ban=ban)[0] is True
    first = decide(pg, key, "fixed", rules, ORIGIN + 1, ban=ban)
    assert (first[0], first[5]) == (False, 0)
    second = decide(pg, key, "fixed", rules, ORIGIN + 2, ban=ban)
    assert (second[0], second[4], second[5]) == (False, 600_000_000, 2)
    # Banned: refused until exactly the end, counters untouched.
    late = decide(pg, key, "fixed", rules, ORIGIN + 2 + 599_999_999, ban=ban)
    assert (late[0], late[4], late[5]) == (False, 1, 1)
    assert decide(pg, key, "fixed", rules, ORIGIN + 602_000_000, ban=ban)[0] is True
    # By hand.
    pg.execute(f"SELECT {SCHEMA}.ban(%s, %s, %s)", (b"hand", 30_000_000, ORIGIN))
    left = pg.execute(
        f"SELECT {SCHEMA}.banned_for(%s, %s)", (b"hand", ORIGIN + 1)
    ).fetchone()
    assert left == (29_999_999,)
    assert decide(pg, b"hand", "gcra", rules, ORIGIN + 1)[5] == 1
    lifted = pg.execute(
        f"SELECT {SCHEMA}.unban(%s, %s)", (b"hand", ORIGIN + 2)
    ).fetchone()
    assert lifted == (True,)
    assert decide(pg, b"hand", "gcra", rules, ORIGIN + 3)[0] is True


def test_reset_and_sweep(pg: Any) -> None:
    rules = [(1, 1_000_000, 1)]
    assert decide(pg, b"r", "fixed", rules, ORIGIN)[0] is True
    assert decide(pg, b"r", "fixed", rules, ORIGIN)[0] is False
    assert pg.execute(f"SELECT {SCHEMA}.reset(%s, %s)", (b"r", ORIGIN)).fetchone() == (
        True,
    )
    assert decide(pg, b"r", "fixed", rules, ORIGIN)[0] is True
    for i in range(30):
        decide(pg, f"sweep{i}".encode(), "sliding", rules, ORIGIN)
    swept = pg.execute(
        f"SELECT {SCHEMA}.sweep(%s, %s)", (10, ORIGIN + 10_000_000)
    ).fetchone()
    assert swept == (10,), "at most the batch per table (no bans row here)"
    rest = pg.execute(
        f"SELECT {SCHEMA}.sweep(%s, %s)", (10_000, ORIGIN + 10_000_000)
    ).fetchone()
    assert rest[0] > 0
    live = pg.execute(
        f"SELECT count(*) FROM {SCHEMA}.state WHERE expires_at <= %s",
        (ORIGIN + 10_000_000,),
    ).fetchone()
    assert live == (0,)


def test_the_schema_installs_twice_and_logged(pg: Any) -> None:
    pg.execute(install_sql(SCHEMA))  # idempotent
    pg.execute(install_sql("rl_logged", unlogged=False))
    persistence = (
        "SELECT relpersistence FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = 'state'"
    )
    assert pg.execute(persistence, ("rl_logged",)).fetchone() == ("p",)
    assert pg.execute(persistence, (SCHEMA,)).fetchone() == ("u",)
