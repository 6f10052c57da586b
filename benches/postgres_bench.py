"""The "postgres" suite: our PostgreSQL store, raw psycopg and pyrate-limiter's
PostgreSQL bucket; ONE run.

Every row talks to the same PostgreSQL server, from this one interpreter, with
the machinery of ``scenarios.py`` shared with the redis suite (interleaved
repeats in an order rotated by one place per repeat, median, a fresh
connection or limiter per run, GC off while timed, one discarded warm-up
round). One scenario, ``hits``: each run gets ``KEYS`` fresh keys, hits each
once untimed (this opens the connections, installs the schema on first use
and creates the rows), then times ``hits`` hits round-robin over them. The
limit is 10^6 per 60 s, so nothing is refused; every timed result is checked
anyway and refusals are counted. Cells are µs/hit and their ratio to the raw
psycopg ``SELECT 1`` round trip measured in the same run.

Rows:

- baseline: psycopg 3 ``cur.execute("SELECT 1", prepare=True);
  cur.fetchone()`` on an autocommit connection (a prepared statement: one
  round trip, nothing parsed or planned per call);
- floor: one prepared upsert of a counter in an unlogged table, per key
  (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``, commit not waited
  for): what any limiter that writes a hit pays at least, decision aside;
- ours, sync: ``RateLimiter(rate="1000000/minute", algorithm=A,
  storage=url, pg_schema="rprl_bench", timeout=5, on_error="raise")
  .allow(key)`` for each algorithm;
- ours, async: ``await aallow(key)`` one at a time, and 100 at a time
  (``asyncio.gather`` of 100 awaits, one per key), per hit;
- ours, threads: ``THREADS`` threads calling ``allow()`` at once, each on a
  key of its own, or all on one key (every hit waits for the same row
  lock); µs/hit is the wall time of the run / all hits;
- peer: pyrate-limiter's ``PostgresBucket`` (a table per bucket, a log of
  hits), one bucket per key through a ``BucketFactory``, on a
  ``psycopg_pool.ConnectionPool``; compared with our ``sliding_log``
  (``ours_over_peer`` = ours / peer, below 1 = ours faster).

The server: ``--postgres-url`` if given, else a throwaway server started
with the tests' helper ``tests/python/pg_server.py`` (``initdb`` into a
temporary directory, a free loopback port, removed at the end); without
PostgreSQL installed the suite is skipped with a note. Our rows write to the
schema ``rprl_bench`` under a fresh key prefix (``rprl-bench-<random>``), the
peer to a fresh schema of its own; both schemas are dropped at the end if
this run created them (on a given server a ``rprl_bench`` that was already
there is left, and our rows in it expire within two minutes).

Output is JSON on stdout (or in ``--json FILE``); progress goes to stderr.

    python benches/postgres_bench.py --impl select1,fixed,pyrate_bucket --quick
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import scenarios as core
from scenarios import AwaitHandle, CallHandle, Handle
from scenarios import ServerRow as Row

OURS = "rust_py_rate_limit"
BASELINE = "select1"
LIMIT = 10**6  # per WINDOW; far above the hits any key gets in one run
WINDOW = 60
KEYS = 100  # distinct keys per run; also the size of one asyncio.gather
THREADS = 8  # threads of the threads_* rows
SCHEMA = "rprl_bench"  # our store's pg_schema
ALL_SCENARIOS = ("hits",)
TESTS = Path(__file__).resolve().parent.parent / "tests" / "python"
INSTALL_HINT = (
    "PostgreSQL not found (no initdb) and no --postgres-url given: skipping "
    "the postgres suite. Install it (Debian/Ubuntu: apt-get install "
    "postgresql; macOS: brew install postgresql) or pass --postgres-url "
    "postgresql://user@host:port/db."
)

# Targets (checked in run.py).
SELECT1_BUDGET = 1.3  # ours fixed allow() / raw psycopg SELECT 1 round trip
PEER_BUDGET = 0.5  # ours sliding_log / pyrate-limiter's PostgresBucket
GATHER_FACTOR = 5.0  # one-at-a-time aallow ns/hit / 100-concurrent ns/hit

# Import name -> name on PyPI (as pinned in benches/requirements.txt).
PACKAGES = {
    "psycopg": "psycopg",
    "psycopg_pool": "psycopg-pool",
    OURS: "rust-py-rate-limit",
    "pyrate_limiter": "pyrate-limiter",
}


@dataclass(frozen=True)
class PostgresParams:
    # As in the redis suite: many short runs, so that a disturbance from
    # whatever else the machine runs spreads over every row.
    repeats: int = 15
    hits: int = 2_000  # timed hits per run (a multiple of KEYS)


QUICK = PostgresParams(repeats=5, hits=500)


@dataclass(frozen=True)
class Ctx:
    """Where every row connects and the namespaces it writes to."""

    url: str
    prefix: str  # our key_prefix
    peer_schema: str  # pyrate-limiter's tables


# --------------------------------------------------------------------------
# Threads: one limiter, THREADS threads calling allow() at once.
# --------------------------------------------------------------------------


class ThreadsHandle(CallHandle):
    """``run(keys)`` makes ``len(keys)`` hits on ``threads`` threads at once
    (started once, released together): thread ``t`` makes every
    ``threads``-th of them, each on ``keys[t]`` (a key of its own) or, with
    ``one_key``, all on ``keys[0]``. ``hit`` runs on the calling thread."""

    def __init__(self, fn: Callable[[str], Any], one_key: bool, threads: int) -> None:
        super().__init__(fn)
        self._one_key = one_key
        self._n = threads
        self._work: list[list[str]] = []
        self._start = threading.Barrier(threads + 1)
        self._done = threading.Barrier(threads + 1)
        self._lock = threading.Lock()
        self._errors: list[BaseException] = []
        self._stop = False
        self._threads = [
            threading.Thread(target=self._worker, args=(t,), daemon=True)
            for t in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def _worker(self, t: int) -> None:
        fn = self._fn
        allowed = self._allowed
        while True:
            self._start.wait()
            if self._stop:
                return
            refused = 0
            try:
                for k in self._work[t]:
                    if not allowed(fn(k)):
                        refused += 1
            except Exception as exc:  # reported by run()
                with self._lock:
                    self._errors.append(exc)
            with self._lock:
                self.refused += refused
            self._done.wait()

    def run(self, keys: list[str]) -> None:
        n = self._n
        self._work = [
            [keys[0 if self._one_key else t % len(keys)]] * len(keys[t::n])
            for t in range(n)
        ]
        self._start.wait()
        self._done.wait()
        if self._errors:
            raise self._errors.pop()

    def close(self) -> None:
        self._stop = True
        self._start.wait()
        for thread in self._threads:
            thread.join()


# --------------------------------------------------------------------------
# Rows. ``make(ctx, limit, window)`` builds one connection or limiter.
# --------------------------------------------------------------------------


def _connect(url: str, **kwargs: Any) -> Any:
    return importlib.import_module("psycopg").connect(url, **kwargs)


def _make_select1(ctx: Ctx, limit: int, window: int) -> Handle:
    conn = _connect(ctx.url, autocommit=True)
    cur = conn.cursor()
    execute = cur.execute
    fetchone = cur.fetchone

    def select1(key: str) -> Any:
        execute("SELECT 1", prepare=True)
        return fetchone()

    return CallHandle(select1, core.always_true, conn.close)


def _ours_limiter(ctx: Ctx, limit: int, window: int, algorithm: str) -> Any:
    if window != 60:
        raise ValueError(f"window {window} s: the rows use '<limit>/minute'")
    mod = importlib.import_module(OURS)
    # on_error="raise": a PostgreSQL failure must show, never be answered by
    # the fail-open policy without a round trip.
    return mod.RateLimiter(
        rate=f"{limit}/minute",
        algorithm=algorithm,
        storage=ctx.url,
        pg_schema=SCHEMA,
        key_prefix=ctx.prefix,
        timeout=5,
        on_error="raise",
    )


def _ours(algorithm: str) -> Callable[[Ctx, int, int], Handle]:
    def make(ctx: Ctx, limit: int, window: int) -> Handle:
        return CallHandle(_ours_limiter(ctx, limit, window, algorithm).allow)

    return make


def _ours_await(batch: int) -> Callable[[Ctx, int, int], Handle]:
    def make(ctx: Ctx, limit: int, window: int) -> Handle:
        return AwaitHandle(_ours_limiter(ctx, limit, window, "fixed").aallow, batch)

    return make


def _ours_threads(one_key: bool) -> Callable[[Ctx, int, int], Handle]:
    def make(ctx: Ctx, limit: int, window: int) -> Handle:
        lim = _ours_limiter(ctx, limit, window, "fixed")
        return ThreadsHandle(lim.allow, one_key, THREADS)

    return make


class _PostgresBuckets(core.PerKeyBuckets):
    """One ``PostgresBucket`` per key (see ``scenarios.PerKeyBuckets``): a
    table ``ratelimit___<key>`` in the pool's schema, a log of hits.
    Timestamps come from the local wall clock in ms, what the bucket's
    ``PostgresClock`` falls back to: it spares the peer the extra round trip
    of reading the database's clock per acquire."""

    def __init__(self, pl: Any, pool: Any, rate: Any) -> None:
        self._pl = pl
        self._pool = pool
        self._rates = [rate]
        super().__init__(pl.RateItem, pl.WallClock().now)

    def new_bucket(self, name: str) -> Any:
        return self._pl.PostgresBucket(self._pool, name, self._rates)


def _make_pyrate(ctx: Ctx, limit: int, window: int) -> Handle:
    """``Limiter(PerKeyFactory()).try_acquire(key, 1, False)`` on
    ``PostgresBucket``s sharing one ``ConnectionPool`` (one connection: the
    timed loop is one thread)."""
    pl = importlib.import_module("pyrate_limiter")
    pool_mod = importlib.import_module("psycopg_pool")
    pool = pool_mod.ConnectionPool(
        ctx.url,
        min_size=1,
        max_size=1,
        kwargs={"options": f"-c search_path={ctx.peer_schema}"},
        open=True,
    )
    pool.wait(timeout=10)
    rate = pl.Rate(limit, window * 1000)  # ms
    bases = (_PostgresBuckets, pl.BucketFactory)
    factory_cls = type("PerKeyPostgresFactory", bases, {"__module__": __name__})
    limiter = pl.Limiter(factory_cls(pl, pool, rate))
    acquire = limiter.try_acquire

    def close() -> None:
        limiter.close()
        pool.close()

    # blocking=False: a full bucket returns False at once (no sleep).
    return CallHandle(lambda key: acquire(key, 1, False), bool, close)


def _make_upsert(ctx: Ctx, limit: int, window: int) -> Handle:
    """The floor of any limiter that writes a hit: one prepared upsert of a
    counter in an unlogged table (commit not waited for, as ours), no
    decision, no lock beyond the row's."""
    conn = _connect(ctx.url, autocommit=True)
    conn.execute("SET synchronous_commit = off")
    conn.execute(
        "CREATE UNLOGGED TABLE IF NOT EXISTS rprl_bench_upsert "
        "(key text PRIMARY KEY, n bigint NOT NULL)"
    )
    cur = conn.cursor()
    execute = cur.execute
    fetchone = cur.fetchone
    sql = (
        "INSERT INTO rprl_bench_upsert AS t VALUES (%s, 1) ON CONFLICT (key) "
        "DO UPDATE SET n = t.n + 1 RETURNING n"
    )

    def upsert(key: str) -> Any:
        execute(sql, (key,), prepare=True)
        return fetchone()

    def close() -> None:
        conn.execute("DROP TABLE IF EXISTS rprl_bench_upsert")
        conn.close()

    return CallHandle(upsert, core.always_true, close)


ROWS: dict[str, Row] = {
    r.name: r
    for r in (
        Row(
            "select1",
            "psycopg",
            _make_select1,
            'psycopg `cur.execute("SELECT 1", prepare=True); cur.fetchone()`, '
            "autocommit: **the baseline**",
            "baseline",
        ),
        Row(
            "upsert",
            "psycopg",
            _make_upsert,
            "psycopg, one prepared `INSERT ... ON CONFLICT (key) DO UPDATE SET "
            "n = n + 1 RETURNING n` in an unlogged table, `synchronous_commit "
            "= off`: the floor of any limiter that writes a hit (no decision)",
            "baseline",
        ),
        Row(
            "fixed",
            OURS,
            _ours("fixed"),
            '`RateLimiter(rate="1000000/minute", storage=url, '
            'pg_schema="rprl_bench", on_error="raise").allow(k)` (fixed '
            "window, the default)",
            "ours",
        ),
        Row("sliding", OURS, _ours("sliding"), 'ours `algorithm="sliding"`', "ours"),
        Row(
            "sliding_log",
            OURS,
            _ours("sliding_log"),
            'ours `algorithm="sliding_log"` (exact moving window)',
            "ours",
        ),
        Row(
            "token_bucket",
            OURS,
            _ours("token_bucket"),
            'ours `algorithm="token_bucket"`',
            "ours",
        ),
        Row("gcra", OURS, _ours("gcra"), 'ours `algorithm="gcra"`', "ours"),
        Row(
            "pyrate_bucket",
            "pyrate_limiter",
            _make_pyrate,
            "pyrate-limiter `Limiter(factory).try_acquire(k, 1, False)`, a "
            "`PostgresBucket` (a table, a log of hits) per key on a "
            "`psycopg_pool.ConnectionPool`",
            "peer",
            vs="sliding_log",
        ),
        Row(
            "aallow",
            OURS,
            _ours_await(1),
            "ours fixed `await lim.aallow(k)`, one at a time",
            "async",
        ),
        Row(
            "aallow_gather",
            OURS,
            _ours_await(KEYS),
            f"ours fixed, `asyncio.gather` of {KEYS} `lim.aallow(k)` (one per key), "
            "per hit",
            "async",
            vs="aallow",
        ),
        Row(
            "threads_own",
            OURS,
            _ours_threads(one_key=False),
            f"ours fixed `allow(k)` on {THREADS} threads at once, each on a key "
            "of its own",
            "threads",
            vs="fixed",
        ),
        Row(
            "threads_one",
            OURS,
            _ours_threads(one_key=True),
            f"ours fixed `allow(k)` on {THREADS} threads at once, all on one key "
            "(one row lock)",
            "threads",
            vs="fixed",
        ),
    )
}


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


@contextmanager
def postgres_server(url: str | None) -> Iterator[tuple[str, str | None]]:
    """Yields ``(url, None)``, or ``("", why not)`` when there is no server.

    With ``url`` given, uses it as is. Otherwise starts a throwaway server
    with the tests' ``PostgresServer`` and stops it (removing its directory)
    on exit.
    """
    if url:
        yield url, None
        return
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    try:
        pg_server = importlib.import_module("pg_server")
        pytest = importlib.import_module("pytest")
    except ImportError as exc:
        yield "", f"cannot start a throwaway PostgreSQL ({exc}): skipping"
        return
    # Without PostgreSQL, the helper skips (or, in CI, fails) the "test".
    absent = (pytest.skip.Exception, pytest.fail.Exception)
    try:
        server = pg_server.PostgresServer()
    except absent:
        yield "", INSTALL_HINT
        return
    print(f"  started PostgreSQL at {server.url}", file=sys.stderr)
    try:
        yield server.url, None
    finally:
        server.stop()
        print(f"  stopped PostgreSQL (pid {server.proc.pid})", file=sys.stderr)


def _query(url: str, sql: str) -> Any:
    """The first column of the first row of ``sql`` (autocommit)."""
    with _connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
        return None if row is None else row[0]


def _schema_exists(url: str, schema: str) -> bool:
    sql = f"SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'"
    return bool(_query(url, sql))


def _drop_schema(url: str, schema: str) -> None:
    with _connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _meta(params: PostgresParams) -> dict[str, Any]:
    extra = {"keys": KEYS, "limit": LIMIT, "window": WINDOW, "threads": THREADS}
    return core.server_meta("postgres", asdict(params) | extra, BASELINE)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", default=",".join(ROWS), help="comma list")
    ap.add_argument("--scenarios", default=",".join(ALL_SCENARIOS), help="comma list")
    ap.add_argument("--repeats", type=int, help="repeats (default 15)")
    ap.add_argument("--quick", action="store_true", help="smaller, faster run")
    ap.add_argument("--hits", type=int, help=f"timed hits per run (x {KEYS})")
    ap.add_argument("--postgres-url", help="use this server (default: a throwaway one)")
    ap.add_argument("--json", type=Path, help="write JSON here instead of stdout")
    args = ap.parse_args(argv)

    params = QUICK if args.quick else PostgresParams()
    if args.repeats is not None:
        params = replace(params, repeats=max(1, args.repeats))
    if args.hits is not None:
        params = replace(params, hits=args.hits)
    params = replace(params, hits=max(KEYS, params.hits // KEYS * KEYS))
    names = core._csv(args.impl, tuple(ROWS), "implementation")
    scenarios = core._csv(args.scenarios, ALL_SCENARIOS, "scenario")

    out: dict[str, Any] = {"meta": _meta(params), "scenarios": {}}
    meta = out["meta"]
    problems: list[str] = meta["problems"]
    with postgres_server(args.postgres_url) as (url, why_not):
        if why_not is not None:
            meta["unavailable"] = why_not
            print(f"note: {why_not}", file=sys.stderr)
            core.emit_json(out, args.json)
            return 0
        run_id = uuid.uuid4().hex[:12]
        ctx = Ctx(url, f"rprl-bench-{run_id}", f"rprl_bench_pyrate_{run_id}")
        ours_existed = _schema_exists(url, SCHEMA)
        with _connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{ctx.peer_schema}"')
        meta["server"] = {
            "url": core.shown_url(url),
            "throwaway": not args.postgres_url,
            "version": str(_query(url, "SHOW server_version")),
            "schema": SCHEMA,
            "prefix": ctx.prefix,
            "peer_schema": ctx.peer_schema,
        }
        try:
            # Each row its own key prefix (ours) or table names (the peer's
            # tables are named after the keys, which carry the row's name).
            impls = core.server_impls(
                ROWS, names, lambda n: replace(ctx, prefix=f"{ctx.prefix}:{n}"), meta
            )
            for _ in scenarios:  # "hits", the one scenario
                if not impls:
                    break
                scn = core.ServerHits(params.repeats, params.hits, KEYS, LIMIT, WINDOW)
                res = core.run_server_hits(scn, impls, ROWS, BASELINE, problems)
                out["scenarios"][scn.name] = res
        finally:
            dropped = [ctx.peer_schema] + ([] if ours_existed else [SCHEMA])
            for schema in dropped:
                _drop_schema(url, schema)
            meta["dropped_schemas"] = dropped
            print(f"  dropped schemas {', '.join(dropped)}", file=sys.stderr)

    meta["loadavg"]["end"] = core.loadavg()
    core.emit_json(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
