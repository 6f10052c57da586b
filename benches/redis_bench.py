"""The "redis" suite: our Redis store, raw redis-py and the peers' stores; ONE run.

Every row talks to the same redis-server, from this one interpreter, with the
machinery of ``scenarios.py`` (interleaved repeats in an order rotated by one
place per repeat, median, a fresh client or limiter per run, GC off while
timed, one discarded warm-up round). One scenario, ``hits``: each run gets
``KEYS`` fresh keys, hits each once untimed (this opens the connection, loads
the scripts and creates the keys), then times ``hits`` hits round-robin over
them. The limit is 10^6 per 60 s, so nothing is refused; every timed result is
checked anyway and refusals are counted. Cells are µs/hit and their ratio to
the raw EVALSHA round trip measured in the same run.

Rows:

- baselines: redis-py ``PING`` and ``EVALSHA`` of ``return 1``;
- ours, sync: ``RateLimiter(..., storage=url).allow(key)`` for each algorithm;
- ours, async: ``await aallow(key)`` one at a time, and 100 at a time
  (``asyncio.gather`` of 100 awaits, one per key), per hit;
- peers, sync, on their own Redis stores: limits (``RedisStorage`` with
  ``FixedWindowRateLimiter`` / ``MovingWindowRateLimiter``, ``hit``),
  throttled-py (``RedisStore``; fixed window, GCRA, token bucket, ``limit``),
  pyrate-limiter (``RedisBucket`` and ``StateBucket`` + ``RedisStateStore``,
  ``Limiter.try_acquire``). Each is compared with our same algorithm
  (``ours_over_peer`` = ours / peer, below 1 = ours faster).

Then the flood on a refused key (``--no-flood`` skips it): one key already
refused (limit 1 per 60 s, spent), hit again and again with ``allow(k)``:
µs per hit with the local over-limit cache (the default, answered from
memory), with ``local_cache_keys=0`` (every hit a script call), and the
memory store's refusal for reference; median of interleaved repeats.

Then the deadline (``--no-deadline`` skips it): against a server of its own
that accepts connections and never answers (a thread here, on a free loopback
port), how long ``allow()`` and ``await aallow()`` take to give up, p50 / p99
/ max, for timeouts of 10, 50 and 500 ms (200 calls each, 20 at 500 ms so
the whole section stays near a minute; fewer with ``--quick``). Each call
gets a fresh limiter, so the circuit breaker (which answers without the
network after 3 failures) never hides the deadline.

The server: ``--redis-url`` if given, else a throwaway ``redis-server`` on a
free loopback port (nothing saved to disk), stopped by PID at the end; with
neither, the suite is skipped with a note. Every key lives under one fresh
prefix (``rprl-bench-<random>``), deleted at the end (SCAN + DEL, never KEYS or
FLUSHDB).

Output is JSON on stdout (or in ``--json FILE``); progress goes to stderr.

    python benches/redis_bench.py --impl evalsha,fixed,limits_fixed --quick
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import importlib
import importlib.util
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import scenarios as core
from scenarios import AwaitHandle, CallHandle, Handle
from scenarios import ServerRow as Row

OURS = "rust_py_rate_limit"
BASELINE = "evalsha"
LIMIT = 10**6  # per WINDOW; far above the hits any key gets in one run
WINDOW = 60
KEYS = 100  # distinct keys per run; also the size of one asyncio.gather
ALL_SCENARIOS = ("hits",)
INSTALL_HINT = (
    "redis-server not found and no --redis-url given: skipping the redis "
    "suite. Install it (Debian/Ubuntu: apt-get install redis-server; macOS: "
    "brew install redis) or pass --redis-url redis://host:port/db."
)

# Targets (checked in run.py).
EVALSHA_BUDGET = 1.1  # ours allow() / raw EVALSHA round trip
AWAIT_BUDGET = 1.2  # ours await aallow() one at a time / raw EVALSHA round trip
PEER_BUDGET = 1.0  # ours / peer, same algorithm (below 1: ours faster)
GATHER_FACTOR = 5.0  # one-at-a-time aallow ns/hit / 100-concurrent ns/hit

# Import name -> name on PyPI (as pinned in benches/requirements.txt).
PACKAGES = {
    "redis": "redis",
    OURS: "rust-py-rate-limit",
    "limits": "limits",
    "throttled": "throttled-py",
    "pyrate_limiter": "pyrate-limiter",
}


@dataclass(frozen=True)
class RedisParams:
    # Many short runs rather than a few long ones: a network round trip is
    # easily disturbed by whatever else the machine runs, and finer interleaving
    # spreads a disturbance over every row instead of one.
    repeats: int = 15
    hits: int = 2_000  # timed hits per run (a multiple of KEYS)


QUICK = RedisParams(repeats=5, hits=500)


@dataclass(frozen=True)
class Ctx:
    """Where every row connects and the namespace of every key it writes."""

    url: str
    prefix: str


# --------------------------------------------------------------------------
# Rows. ``make(ctx, limit, window)`` builds one client or limiter.
# --------------------------------------------------------------------------


def _redis_client(ctx: Ctx) -> Any:
    return importlib.import_module("redis").Redis.from_url(ctx.url)


def _make_ping(ctx: Ctx, limit: int, window: int) -> Handle:
    client = _redis_client(ctx)
    ping = client.ping
    return CallHandle(lambda key: ping(), core.always_true, client.close)


def _make_evalsha(ctx: Ctx, limit: int, window: int) -> Handle:
    client = _redis_client(ctx)
    sha = client.script_load("return 1")
    evalsha = client.evalsha
    return CallHandle(lambda key: evalsha(sha, 0), core.always_true, client.close)


def _ours_limiter(ctx: Ctx, limit: int, window: int, algorithm: str) -> Any:
    mod = importlib.import_module(OURS)
    # on_error="raise": a Redis failure must show, never be answered by the
    # fail-open policy without a round trip.
    return mod.RateLimiter(
        limit,
        window,
        algorithm=algorithm,
        storage=ctx.url,
        key_prefix=ctx.prefix,
        timeout=1.0,
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


def _limits(strategy: str) -> Callable[[Ctx, int, int], Handle]:
    """``<strategy>(RedisStorage(url, key_prefix=...)).hit(item, key)``."""

    def make(ctx: Ctx, limit: int, window: int) -> Handle:
        limits = importlib.import_module("limits")
        storage = importlib.import_module("limits.storage")
        strategies = importlib.import_module("limits.strategies")
        item = limits.RateLimitItemPerSecond(limit, window)
        store = storage.RedisStorage(ctx.url, key_prefix=ctx.prefix)
        hit = functools.partial(getattr(strategies, strategy)(store).hit, item)
        return CallHandle(hit, bool, store.storage.close)

    return make


def _not_limited(result: Any) -> bool:
    return not result.limited


def _throttled(using: str) -> Callable[[Ctx, int, int], Handle]:
    """``Throttled(using, quota, store=RedisStore(url), timeout=-1).limit(key)``."""

    def make(ctx: Ctx, limit: int, window: int) -> Handle:
        throttled = importlib.import_module("throttled")
        quota = throttled.rate_limiter.per_duration(timedelta(seconds=window), limit)
        store = throttled.store.RedisStore(server=ctx.url, options={})
        # timeout=-1: return at once when limited, never wait and retry.
        limiter = throttled.Throttled(
            using=using,
            quota=quota,
            store=store,
            timeout=-1,
            key_prefix=ctx.prefix,
        )
        return CallHandle(limiter.limit, _not_limited)

    return make


class _RedisBuckets(core.PerKeyBuckets):
    """One Redis-backed bucket per key (see ``scenarios.PerKeyBuckets``):
    a ``RedisBucket`` (sorted-set log), or a GCRA ``StateBucket`` on a
    ``RedisStateStore``. Timestamps come from the wall clock in ms, what
    ``RedisBucket.now()`` and a ``RedisStateStore``'s default clock use.
    """

    def __init__(self, pl: Any, client: Any, prefix: str, rate: Any, gcra: bool):
        self._pl = pl
        self._client = client
        self._prefix = prefix
        self._rates = [rate]
        self._gcra = gcra
        super().__init__(pl.RateItem, pl.WallClock().now)

    def new_bucket(self, name: str) -> Any:
        pl = self._pl
        key = f"{self._prefix}:{name}"
        if self._gcra:
            store = pl.RedisStateStore(self._client, key)
            return pl.StateBucket(self._rates, store=store, algorithm=pl.GCRA())
        return pl.RedisBucket.init(self._rates, self._client, key)


def _pyrate(gcra: bool) -> Callable[[Ctx, int, int], Handle]:
    """``Limiter(PerKeyFactory()).try_acquire(key, 1, False)`` on Redis buckets."""

    def make(ctx: Ctx, limit: int, window: int) -> Handle:
        pl = importlib.import_module("pyrate_limiter")
        client = _redis_client(ctx)
        rate = pl.Rate(limit, window * 1000)  # ms; burst = limit
        bases = (_RedisBuckets, pl.BucketFactory)
        factory_cls = type("PerKeyRedisFactory", bases, {"__module__": __name__})
        prefix = ctx.prefix
        limiter = pl.Limiter(factory_cls(pl, client, prefix, rate, gcra))
        acquire = limiter.try_acquire

        def close() -> None:
            limiter.close()
            client.close()

        # blocking=False: a full bucket returns False at once (no sleep).
        return CallHandle(lambda key: acquire(key, 1, False), bool, close)

    return make


ROWS: dict[str, Row] = {
    r.name: r
    for r in (
        Row("ping", "redis", _make_ping, "redis-py `client.ping()`", "baseline"),
        Row(
            "evalsha",
            "redis",
            _make_evalsha,
            'redis-py `client.evalsha(sha, 0)` of `"return 1"`: **the baseline**',
            "baseline",
        ),
        Row(
            "fixed",
            OURS,
            _ours("fixed"),
            '`RateLimiter(L, 60, storage=url, on_error="raise").allow(k)` (fixed '
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
        Row("gcra", OURS, _ours("gcra"), 'ours `algorithm="gcra"`', "ours"),
        Row(
            "token_bucket",
            OURS,
            _ours("token_bucket"),
            'ours `algorithm="token_bucket"`',
            "ours",
        ),
        Row(
            "limits_fixed",
            "limits",
            _limits("FixedWindowRateLimiter"),
            "limits `FixedWindowRateLimiter(RedisStorage(url)).hit(item, k)`",
            "peer",
            vs="fixed",
        ),
        Row(
            "limits_moving",
            "limits",
            _limits("MovingWindowRateLimiter"),
            "limits `MovingWindowRateLimiter(RedisStorage(url)).hit(item, k)`",
            "peer",
            vs="sliding_log",
        ),
        Row(
            "throttled_fixed",
            "throttled",
            _throttled("fixed_window"),
            'throttled-py `Throttled(using="fixed_window", store=RedisStore(url), '
            "timeout=-1).limit(k)`",
            "peer",
            vs="fixed",
        ),
        Row(
            "throttled_gcra",
            "throttled",
            _throttled("gcra"),
            'throttled-py, `using="gcra"`',
            "peer",
            vs="gcra",
        ),
        Row(
            "throttled_token_bucket",
            "throttled",
            _throttled("token_bucket"),
            'throttled-py, `using="token_bucket"`',
            "peer",
            vs="token_bucket",
        ),
        Row(
            "pyrate_bucket",
            "pyrate_limiter",
            _pyrate(gcra=False),
            "pyrate-limiter `Limiter(factory).try_acquire(k, 1, False)`, a "
            "`RedisBucket` (sorted-set log) per key",
            "peer",
            vs="sliding_log",
        ),
        Row(
            "pyrate_gcra",
            "pyrate_limiter",
            _pyrate(gcra=True),
            "pyrate-limiter, a GCRA `StateBucket` on a `RedisStateStore` per key",
            "peer",
            vs="gcra",
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
    )
}


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10.0
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server on port {port} did not start")
        time.sleep(0.02)


@contextmanager
def redis_server(url: str | None) -> Iterator[tuple[str, str | None]]:
    """Yields ``(url, None)``, or ``("", why not)`` when there is no server.

    With ``url`` given, uses it as is. Otherwise starts a throwaway
    ``redis-server`` on a free loopback port (no RDB, no AOF) and stops it by
    PID on exit.
    """
    if url:
        yield url, None
        return
    binary = shutil.which("redis-server")
    if binary is None:
        yield "", INSTALL_HINT
        return
    port = _free_port()
    # Its own scratch --dir: nothing it could write lands in the repository.
    scratch = tempfile.TemporaryDirectory(prefix="rprl-bench-redis-")
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", scratch.name]
    cmd += ["--save", "", "--appendonly", "no"]
    print(f"$ {' '.join(cmd)}", file=sys.stderr)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc)
        yield f"redis://127.0.0.1:{port}/0", None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        scratch.cleanup()
        print(f"  stopped redis-server (pid {proc.pid})", file=sys.stderr)


def _delete_prefix(ctx: Ctx) -> int:
    """Deletes every key under ``ctx.prefix`` (SCAN + DEL); returns the count."""
    client = _redis_client(ctx)
    try:
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{ctx.prefix}:*", count=1000):
            batch.append(key)
            if len(batch) == 1000:
                deleted += int(client.delete(*batch))
                batch = []
        if batch:
            deleted += int(client.delete(*batch))
        return deleted
    finally:
        client.close()


def _server_version(ctx: Ctx) -> str:
    client = _redis_client(ctx)
    try:
        return str(client.info("server").get("redis_version", "?"))
    finally:
        client.close()


def _meta(params: RedisParams) -> dict[str, Any]:
    extra = {"keys": KEYS, "limit": LIMIT, "window": WINDOW}
    return core.server_meta("redis", asdict(params) | extra, BASELINE)


# --------------------------------------------------------------------------
# A flood on a refused key: the local over-limit cache against a round trip.
# --------------------------------------------------------------------------

#: (name, what, RateLimiter options beyond limit 1 per 60 s, hits per run).
FLOOD_ROWS: tuple[tuple[str, str, dict[str, Any] | None, int], ...] = (
    ("cached", "Redis, local over-limit cache on (default)", {}, 20_000),
    ("uncached", "Redis, `local_cache_keys=0`", {"local_cache_keys": 0}, 1_000),
    ("memory", "memory store (reference)", None, 20_000),
)
#: The cached flood is at least this many times cheaper than the uncached one.
FLOOD_FACTOR = 20.0


def flood(ctx: Ctx, quick: bool) -> dict[str, Any]:
    """µs per refused hit on one spent key, per row."""
    mod = importlib.import_module(OURS)
    repeats = 3 if quick else 7
    samples: dict[str, list[float]] = {name: [] for name, *_ in FLOOD_ROWS}
    problems = []
    for repeat in range(repeats + 1):  # the first round is a warm-up
        rows = FLOOD_ROWS[repeat % 3 :] + FLOOD_ROWS[: repeat % 3]
        for name, _, options, hits in rows:
            if options is None:
                lim = mod.RateLimiter(1, 60)
            else:
                lim = mod.RateLimiter(
                    1,
                    60,
                    storage=ctx.url,
                    key_prefix=f"{ctx.prefix}:flood-{name}-{repeat}",
                    timeout=1.0,
                    on_error="raise",
                    **options,
                )
            allow = lim.allow
            if not allow("k") or allow("k"):
                problems.append(f"flood/{name}: the key was not spent and refused")
            gc.disable()
            t = time.perf_counter_ns()
            admitted = sum(1 for _ in range(hits) if allow("k"))
            ns = time.perf_counter_ns() - t
            gc.enable()
            if admitted:
                problems.append(f"flood/{name}: {admitted} hits admitted")
            if repeat:
                samples[name].append(ns / hits)
    results: dict[str, dict[str, Any]] = {}
    medians: dict[str, float] = {}
    for name, what, _, hits in FLOOD_ROWS:
        ordered = sorted(samples[name])
        medians[name] = ordered[len(ordered) // 2]
        results[name] = {
            "what": what,
            "hits": hits,
            "median_ns": round(ordered[len(ordered) // 2], 1),
        }
    cached, uncached = medians["cached"], medians["uncached"]
    return {
        "repeats": repeats,
        "results": results,
        "uncached_over_cached": round(uncached / cached, 2) if cached else None,
        "problems": problems,
    }


# --------------------------------------------------------------------------
# The deadline against a server that accepts and never answers.
# --------------------------------------------------------------------------

#: (timeout in seconds, calls per path, calls at once). The 500 ms calls run
#: in waves of 20 at once (threads for allow(), a gather for aallow()), each
#: timed from its own start: 200 one after another would take 200 s.
DEADLINE_RUNS = ((0.01, 200, 1), (0.05, 200, 1), (0.5, 200, 20))
DEADLINE_RUNS_QUICK = ((0.01, 50, 1), (0.05, 50, 1), (0.5, 40, 20))
#: What a call may take beyond its timeout (target, checked in run.py).
DEADLINE_SLACK_MS = 20.0


class Stalling:
    """Accepts connections on a free loopback port, reads, never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)
            # Never read: what the client sends sits in the socket buffer.

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()
        with self.lock:
            for conn in self.conns:
                conn.close()


def _spread(seconds: list[float]) -> dict[str, Any]:
    ordered = sorted(seconds)
    n = len(ordered)
    return {
        "calls": n,
        "p50_ms": round(ordered[n // 2] * 1000, 3),
        "p99_ms": round(ordered[min(n - 1, int(n * 0.99))] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def deadline_distribution(quick: bool) -> dict[str, Any]:
    """How long calls take to give up on a server that never answers."""
    mod = importlib.import_module(OURS)
    server = Stalling()
    url = f"redis://127.0.0.1:{server.port}/0"
    runs = []
    started = time.monotonic()
    problems = []

    def limiter(timeout: float) -> Any:
        return mod.RateLimiter(
            10, 60, storage=url, timeout=timeout, on_error="allow", key_prefix="d"
        )

    def failed(lim: Any, ok: object, timeout: float, how: str) -> None:
        if ok is not True or lim.stats()["storage_errors"] != 1:
            problems.append(f"deadline {timeout}: {how} call did not fail")

    def one_sync(timeout: float) -> float:
        lim = limiter(timeout)
        t = time.perf_counter()
        ok = lim.allow("k")
        took = time.perf_counter() - t
        failed(lim, ok, timeout, "a sync")
        return took

    async def one_awaited(timeout: float) -> float:
        lim = limiter(timeout)
        t = time.perf_counter()
        ok = await lim.aallow("k")
        took = time.perf_counter() - t
        failed(lim, ok, timeout, "an awaited")
        return took

    async def awaited(timeout: float, calls: int, wave: int) -> list[float]:
        took: list[float] = []
        while len(took) < calls:
            n = min(wave, calls - len(took))
            took += await asyncio.gather(*(one_awaited(timeout) for _ in range(n)))
        return took

    def synced(timeout: float, calls: int, wave: int) -> list[float]:
        if wave == 1:
            return [one_sync(timeout) for _ in range(calls)]
        took: list[float] = []
        with ThreadPoolExecutor(wave) as pool:
            while len(took) < calls:
                n = min(wave, calls - len(took))
                took += pool.map(one_sync, [timeout] * n)
        return took

    try:
        for timeout, calls, wave in DEADLINE_RUNS_QUICK if quick else DEADLINE_RUNS:
            print(f"deadline {timeout * 1000:g} ms x {calls} ...", file=sys.stderr)
            runs.append(
                {
                    "timeout_ms": timeout * 1000,
                    "at_once": wave,
                    "sync": _spread(synced(timeout, calls, wave)),
                    "async": _spread(asyncio.run(awaited(timeout, calls, wave))),
                }
            )
    finally:
        server.close()
    return {
        "runs": runs,
        "seconds": round(time.monotonic() - started, 1),
        "problems": problems,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", default=",".join(ROWS), help="comma list")
    ap.add_argument("--scenarios", default=",".join(ALL_SCENARIOS), help="comma list")
    ap.add_argument("--repeats", type=int, help="repeats (default 15)")
    ap.add_argument("--quick", action="store_true", help="smaller, faster run")
    ap.add_argument("--hits", type=int, help=f"timed hits per run (x {KEYS})")
    ap.add_argument("--redis-url", help="use this server (default: a throwaway one)")
    ap.add_argument("--json", type=Path, help="write JSON here instead of stdout")
    ap.add_argument(
        "--no-deadline", action="store_true", help="skip the deadline distribution"
    )
    ap.add_argument(
        "--no-flood", action="store_true", help="skip the flood on a refused key"
    )
    args = ap.parse_args(argv)

    params = QUICK if args.quick else RedisParams()
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
    with redis_server(args.redis_url) as (url, why_not):
        if why_not is not None:
            meta["unavailable"] = why_not
            print(f"note: {why_not}", file=sys.stderr)
            core.emit_json(out, args.json)
            return 0
        ctx = Ctx(url, f"rprl-bench-{uuid.uuid4().hex[:12]}")
        meta["server"] = {
            "url": core.shown_url(url),
            "throwaway": not args.redis_url,
            "version": _server_version(ctx),
            "prefix": ctx.prefix,
        }
        try:
            # Each row its own namespace: limits' strategies, for one, share
            # key names, so its fixed and moving windows would collide.
            impls = core.server_impls(
                ROWS, names, lambda n: replace(ctx, prefix=f"{ctx.prefix}:{n}"), meta
            )
            for _ in scenarios:  # "hits", the one scenario
                if not impls:
                    break
                scn = core.ServerHits(params.repeats, params.hits, KEYS, LIMIT, WINDOW)
                res = core.run_server_hits(scn, impls, ROWS, BASELINE, problems)
                out["scenarios"][scn.name] = res
            if not args.no_flood and importlib.util.find_spec(OURS) is not None:
                print("flood on a refused key ...", file=sys.stderr)
                out["flood"] = flood(ctx, args.quick)
                problems.extend(out["flood"]["problems"])
                for name, row in out["flood"]["results"].items():
                    print(
                        f"  {name}: {row['median_ns'] / 1000:.3f} µs/hit",
                        file=sys.stderr,
                    )
        finally:
            meta["deleted_keys"] = _delete_prefix(ctx)
            print(
                f"  deleted {meta['deleted_keys']:,} keys under {ctx.prefix}:",
                file=sys.stderr,
            )

    if not args.no_deadline and importlib.util.find_spec(OURS) is not None:
        out["deadline"] = deadline_distribution(args.quick)
        problems.extend(out["deadline"]["problems"])
    meta["loadavg"]["end"] = core.loadavg()
    core.emit_json(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
