"""The "async" suite: awaitable twins, the expired-key sweep, max_keys; ONE interpreter.

Scenarios:

- ``twins``: inside one running asyncio loop, ``await lim.aallow(k)`` and
  ``await lim.acheck(k)`` next to ``lim.allow(k)`` / ``lim.check(k)`` and one
  event-loop round trip (``await asyncio.sleep(0)``); hot key, limit 10^9.
- ``sweep``: ``_profile_sweep()`` over 1,000,000 expired keys (filled with a
  ``ManualClock`` limiter, clock advanced past the window): total time,
  chunks, longest single chunk (= longest shard-lock hold).
- ``latency``: the same setup plus one live key; another Python thread times
  each ``allow(live key)`` (``perf_counter_ns`` around the call) while the main
  thread runs ``cleanup_expired()`` (which releases the GIL), and, as a
  baseline, while the main thread sleeps with no sweep running.
- ``hot`` / ``keys100k``: ``allow()`` with ``max_keys=1_000_000`` set vs
  unset (``scenarios.py``'s scenarios of the same names).
- ``controls``: ``allow()`` on one key with the controls against abuse:
  a limiter with none (``plain``), one with a ban policy and allow and deny
  lists hitting a key on neither (``guarded``, the normal hit), and the
  same limiter on a banned key, an allow-listed key and a deny-listed key
  (each vs ``guarded``).
- ``observe``: what watching costs. ``allow()`` admitting hits with an event
  callback (sleeping 1 ms per event) and a Prometheus collector registered
  (``observed``) vs without (``unobserved``); the same for hits refused on a
  key over its limit (``refused_observed`` vs ``refused``: every refusal
  asks whether its key already made an event this window); ``deliver``, an
  event end to end (a fresh key admitted then refused, queued, delivered to
  a callback: ns per event); ``scrape100``, one scrape of a registry over 100
  limiters with prometheus-client's ``generate_latest`` (ns per scrape).

``twins``, ``hot`` and ``keys100k`` use the machinery of ``scenarios.py``
(interleaved repeats, rotated order, median, fresh limiter per run, GC off
while timed); ``sweep`` and ``latency`` build a fresh limiter per repeat and
report medians over the repeats. One extra round first warms up, discarded.

Output is JSON on stdout (or in ``--json FILE``); progress goes to stderr.

    python benches/async_suite.py --impl allow,aallow,sleep0 --scenarios twins
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import importlib
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from time import perf_counter_ns
from typing import Any, TypeVar

import scenarios as core
from scenarios import BIG_LIMIT, HOT_KEY, WINDOW, Handle, Impl, Params, Scenario

OURS = "rust_py_rate_limit"
T = TypeVar("T")
MAX_KEYS = 1_000_000
LIVE_KEY = "live:1"
# While the latency scenario runs, a thread waiting for the GIL gets it after
# this long (CPython's default is 5 ms). Only the main thread ever waits, and
# only once its sweep (or sleep) is over, so this does not touch what the
# sampling thread measures: it ends the measured window sooner after the sweep.
SWITCH_INTERVAL = 0.0001

ALL_SCENARIOS = (
    "twins", "sweep", "latency", "hot", "keys100k", "controls", "observe",
)  # fmt: skip

# Targets (checked in run.py).
TWIN_BUDGET = 2.5  # await twin / its sync twin
ROUND_TRIP_FACTOR = 10.0  # sleep(0) round trip / await twin
LOCK_HOLD_BUDGET_US = 1000.0  # longest single shard-lock hold in a sweep
SWEEP_P99_BUDGET_US = 50.0  # p99 of allow() from another thread during a sweep
MAX_KEYS_BUDGET = 1.05  # max_keys set / unset
CONTROLS_BUDGET = 1.1  # a banned or listed key's hit / a normal hit
OBSERVE_BUDGET = 1.05  # a watched admitted hit / an unwatched one


@dataclass(frozen=True)
class AsyncParams:
    repeats: int = 7
    n_hot: int = 200_000  # hits per run: twins and hot
    n_keys: int = 100_000  # distinct keys in keys100k
    passes: int = 3  # timed passes over them
    warmup: int = 10_000
    sweep_keys: int = 1_000_000  # expired keys in sweep and latency
    idle_seconds: float = 0.2  # latency baseline: how long the main thread sleeps

    def core(self) -> Params:
        return replace(
            Params(),
            repeats=self.repeats,
            n_hot=self.n_hot,
            n_keys=self.n_keys,
            passes=self.passes,
            warmup=self.warmup,
        )


QUICK = AsyncParams(
    repeats=3,
    n_hot=50_000,
    passes=1,
    warmup=2_000,
    sweep_keys=200_000,
    idle_seconds=0.05,
)


def _ours_module() -> Any:
    return importlib.import_module(OURS)


def _limiter(limit: int, window: int, **kwargs: Any) -> Any:
    return _ours_module().RateLimiter(limit, window, **kwargs)


# --------------------------------------------------------------------------
# Rows of the timed scenarios
# --------------------------------------------------------------------------


def _check_allowed(result: Any) -> bool:
    return bool(result["allowed"])


class LoopHandle(Handle):
    """``fn(key)`` or ``await fn(key)`` per key, in a coroutine.

    ``arun`` is the timed loop, run inside the scenario's event loop; ``run``
    and ``hit`` wrap it in ``asyncio.run`` (used only by the availability
    probe).
    """

    def __init__(
        self,
        fn: Callable[[str], Any],
        awaited: bool,
        allowed: Callable[[Any], bool] = bool,
    ) -> None:
        self._fn = fn
        self._awaited = awaited
        self._allowed = allowed

    async def arun(self, keys: list[str]) -> None:
        fn = self._fn
        if self._awaited:
            for k in keys:
                await fn(k)
        else:
            for k in keys:
                fn(k)

    async def ahit(self, key: str) -> bool:
        result = self._fn(key)
        if self._awaited:
            result = await result
        return self._allowed(result)

    def run(self, keys: list[str]) -> None:
        asyncio.run(self.arun(keys))

    def hit(self, key: str) -> bool:
        return asyncio.run(self.ahit(key))


class RoundTripHandle(LoopHandle):
    """``await asyncio.sleep(0)`` per key: one event-loop round trip, no limiter."""

    def __init__(self) -> None:
        super().__init__(lambda key: None, awaited=False)

    async def arun(self, keys: list[str]) -> None:
        sleep = asyncio.sleep
        for _ in keys:
            await sleep(0)

    async def ahit(self, key: str) -> bool:
        await asyncio.sleep(0)
        return True


def _twin(method: str, awaited: bool) -> Callable[[int, int], Handle]:
    def make(limit: int, window: int) -> Handle:
        lim = _limiter(limit, window)
        allowed = _check_allowed if method.endswith("check") else bool
        return LoopHandle(getattr(lim, method), awaited, allowed)

    return make


def _round_trip(limit: int, window: int) -> Handle:
    return RoundTripHandle()


def _allow(**kwargs: Any) -> Callable[[int, int], Handle]:
    def make(limit: int, window: int) -> Handle:
        return core.MethodHandle(_limiter(limit, window, **kwargs), "allow")

    return make


# The guarded limiter's lists and ban policy; the key each row hits.
ALLOWED_KEY, DENIED_KEY, BANNED_KEY = "vip", "evil", "banned"
CONTROL_KEYS = {
    "plain": HOT_KEY,
    "guarded": HOT_KEY,
    "banned": BANNED_KEY,
    "allow_listed": ALLOWED_KEY,
    "deny_listed": DENIED_KEY,
}


class KeyHandle(Handle):
    """``lim.allow(key)`` on its own fixed key, whatever keys it is given."""

    def __init__(self, lim: Any, key: str) -> None:
        self._allow = lim.allow
        self._key = key

    def run(self, keys: list[str]) -> None:
        allow, key = self._allow, self._key
        for _ in keys:
            allow(key)

    def hit(self, key: str) -> bool:
        return bool(self._allow(self._key))


def _controlled(row: str) -> Callable[[int, int], Handle]:
    def make(limit: int, window: int) -> Handle:
        if row == "plain":
            return KeyHandle(_limiter(limit, window), CONTROL_KEYS[row])
        lim = _limiter(
            limit, window, ban_after=5, ban_seconds=3600,
            allow_keys=[ALLOWED_KEY], deny_keys=[DENIED_KEY],
        )  # fmt: skip
        lim.ban(BANNED_KEY, 10**6)
        return KeyHandle(lim, CONTROL_KEYS[row])

    return make


def _slow_callback(event: dict[str, Any]) -> None:
    time.sleep(0.001)


def _observed(row: str) -> Callable[[int, int], Handle]:
    """``observe``'s rows: a limiter watched or not, admitting or refusing."""

    def make(limit: int, window: int) -> Handle:
        refusing = row.startswith("refused")
        lim = _limiter(1 if refusing else limit, window)
        if refusing:
            lim.allow(HOT_KEY)  # over its limit from now on
        if row.endswith("observed"):
            lim.on_event(_slow_callback)
            prometheus = importlib.import_module(f"{OURS}.prometheus")
            registry = importlib.import_module("prometheus_client").CollectorRegistry()
            registry.register(prometheus.RateLimitCollector([lim]))
        return KeyHandle(lim, HOT_KEY)

    return make


class DeliverHandle(Handle):
    """One event per key: a fresh key admitted, then refused; the events
    delivered to a counting callback (flushed every few thousand, under the
    queue's capacity, and at the end)."""

    def __init__(self, limit: int, window: int) -> None:
        self.lim = _limiter(1, window)
        self.delivered = 0
        self.lim.on_event(self._count)
        self.flush = importlib.import_module(f"{OURS}.events").flush
        self.round = 0

    def _count(self, event: dict[str, Any]) -> None:
        self.delivered += 1

    def run(self, keys: list[str]) -> None:
        allow, flush = self.lim.allow, self.flush
        self.round += 1
        prefix = f"r{self.round}:"
        for i in range(len(keys)):
            k = prefix + str(i)
            allow(k)
            allow(k)
            if i % 4096 == 4095:
                flush()
        flush()

    def hit(self, key: str) -> bool:
        return bool(self.lim.allow(key))


class ScrapeHandle(Handle):
    """``generate_latest`` of a registry over 100 limiters, once per key."""

    def __init__(self, limit: int, window: int) -> None:
        client = importlib.import_module("prometheus_client")
        prometheus = importlib.import_module(f"{OURS}.prometheus")
        self.limiters = [_limiter(limit, window, name=f"l{i}") for i in range(100)]
        for lim in self.limiters:
            lim.allow("k")
        self.registry = client.CollectorRegistry()
        self.registry.register(prometheus.RateLimitCollector(self.limiters))
        self.scrape = functools.partial(client.generate_latest, self.registry)

    def run(self, keys: list[str]) -> None:
        scrape = self.scrape
        for _ in keys:
            scrape()

    def hit(self, key: str) -> bool:
        return b"rust_py_rate_limit_decisions_total" in self.scrape()


# Keys per run of the rows that do more than one hit per key.
OBSERVE_KEYS = {"deliver": 20_000, "scrape100": 100}


class Observe(Scenario):
    name = "observe"
    description = (
        "allow() watched (an event callback and a Prometheus collector) or not, "
        "admitting and refusing; one event end to end; one scrape of 100 limiters"
    )

    def __init__(self, p: Params) -> None:
        super().__init__(p)
        self.keys = [HOT_KEY] * p.n_hot
        self.warm = self.keys[: p.warmup]

    def sample(self, impl: Impl, repeat: int) -> core.Sample:
        handle = impl.make(BIG_LIMIT, WINDOW)
        keys = self.keys[: OBSERVE_KEYS.get(impl.name, len(self.keys))]
        try:
            handle.run(keys[: max(1, len(keys) // 20)])
            ns = core._timed(handle, keys)
            want = not impl.name.startswith("refused")
            core._expect(handle.hit(HOT_KEY), want, f"{impl.name} after the run")
            if isinstance(handle, DeliverHandle):
                # One event per key, warm-up included, each delivered.
                sent = max(1, len(keys) // 20) + len(keys)
                core._expect(handle.delivered == sent, True, "every event delivered")
        finally:
            handle.close()
        return {"ns": ns / len(keys)}

    def info(self) -> dict[str, Any]:
        return {"hits": len(self.keys), "limit": BIG_LIMIT, "window": WINDOW,
                "keys_per_run": OBSERVE_KEYS}  # fmt: skip


class Controls(Scenario):
    name = "controls"
    description = (
        "one key, limit 10^9: no controls, a normal hit with a ban policy and "
        "lists, and a banned / allow-listed / deny-listed key"
    )

    def __init__(self, p: Params) -> None:
        super().__init__(p)
        self.keys = [HOT_KEY] * p.n_hot
        self.warm = self.keys[: p.warmup]

    def sample(self, impl: Impl, repeat: int) -> core.Sample:
        handle = impl.make(BIG_LIMIT, WINDOW)
        try:
            handle.run(self.warm)
            ns = core._timed(handle, self.keys)
            want = impl.name not in ("banned", "deny_listed")
            core._expect(handle.hit(HOT_KEY), want, f"{impl.name} after the run")
        finally:
            handle.close()
        return {"ns": ns / len(self.keys)}

    def info(self) -> dict[str, Any]:
        return {"hits": len(self.keys), "limit": BIG_LIMIT, "window": WINDOW}


@dataclass(frozen=True)
class Row:
    """One row of a timed scenario."""

    name: str
    scenarios: tuple[str, ...]
    make: Callable[[int, int], Handle]
    what: str  # what is timed per hit (for the README / JSON)
    vs: str = ""  # the row ``ratio_vs`` divides by ("" for a baseline)
    module: str = OURS


TWINS = ("twins",)
MAXK = ("hot", "keys100k")
CONTROLS = ("controls",)
OBSERVE = ("observe",)

ROWS: dict[str, Row] = {
    r.name: r
    for r in (
        Row("allow", TWINS, _twin("allow", False), "`lim.allow(k)` in a coroutine"),
        Row(
            "aallow",
            TWINS,
            _twin("aallow", True),
            "`await lim.aallow(k)`",
            vs="allow",
        ),
        Row("check", TWINS, _twin("check", False), "`lim.check(k)` in a coroutine"),
        Row(
            "acheck",
            TWINS,
            _twin("acheck", True),
            "`await lim.acheck(k)`",
            vs="check",
        ),
        Row(
            "sleep0",
            TWINS,
            _round_trip,
            "`await asyncio.sleep(0)`: one event-loop round trip",
            vs="aallow",
            module="",
        ),
        Row("unbounded", MAXK, _allow(), "`RateLimiter(limit, 60).allow(k)`"),
        Row(
            "max_keys",
            MAXK,
            _allow(max_keys=MAX_KEYS),
            f"`RateLimiter(limit, 60, max_keys={MAX_KEYS:_}).allow(k)`",
            vs="unbounded",
        ),
        Row("plain", CONTROLS, _controlled("plain"), "`allow(k)`, no controls"),
        Row(
            "guarded",
            CONTROLS,
            _controlled("guarded"),
            "`allow(k)` with `ban_after`, `allow_keys`, `deny_keys` set; k on no "
            "list, not banned",
            vs="plain",
        ),
        Row(
            "banned",
            CONTROLS,
            _controlled("banned"),
            "the same limiter, `allow(k)` on a banned k (refused)",
            vs="guarded",
        ),
        Row(
            "allow_listed",
            CONTROLS,
            _controlled("allow_listed"),
            "the same limiter, `allow(k)` on an allow-listed k",
            vs="guarded",
        ),
        Row(
            "deny_listed",
            CONTROLS,
            _controlled("deny_listed"),
            "the same limiter, `allow(k)` on a deny-listed k (refused)",
            vs="guarded",
        ),
        Row("unobserved", OBSERVE, _observed("unobserved"), "`allow(k)` admitted"),
        Row(
            "observed",
            OBSERVE,
            _observed("observed"),
            "`allow(k)` admitted, with `on_event(callback)` and a Prometheus "
            "collector registered",
            vs="unobserved",
        ),
        Row("refused", OBSERVE, _observed("refused"), "`allow(k)` refused"),
        Row(
            "refused_observed",
            OBSERVE,
            _observed("refused_observed"),
            "`allow(k)` refused, with `on_event(callback)` (1 ms per event) and "
            "a collector",
            vs="refused",
        ),
        Row(
            "deliver",
            OBSERVE,
            DeliverHandle,
            "one event end to end: a fresh key admitted then refused, the event "
            "delivered to a callback (ns per event)",
        ),
        Row(
            "scrape100",
            OBSERVE,
            ScrapeHandle,
            "`generate_latest` of a registry over 100 limiters (ns per scrape)",
        ),
    )
}

BASELINES = {
    "twins": "allow",
    "hot": "unbounded",
    "keys100k": "unbounded",
    "controls": "plain",
    "observe": "unobserved",
}

IMPLS: dict[str, Impl] = {
    r.name: Impl(r.name, r.module, r.make, memory=False) for r in ROWS.values()
}


# --------------------------------------------------------------------------
# twins: every row timed inside one running event loop
# --------------------------------------------------------------------------


class Twins(Scenario):
    name = "twins"
    description = (
        "hot key, limit 10^9, timed inside one running asyncio loop: sync call, "
        "await twin, and one event-loop round trip"
    )

    def __init__(self, p: Params) -> None:
        super().__init__(p)
        self.keys = [HOT_KEY] * p.n_hot
        self.warm = self.keys[: p.warmup]
        self.loop = asyncio.new_event_loop()

    def sample(self, impl: Impl, repeat: int) -> core.Sample:
        handle = impl.make(BIG_LIMIT, WINDOW)
        assert isinstance(handle, LoopHandle)
        ns = self.loop.run_until_complete(self._sample(handle))
        return {"ns": ns / len(self.keys)}

    async def _sample(self, h: LoopHandle) -> int:
        await h.arun(self.warm)
        gc.collect()
        gc.disable()
        try:
            t0 = perf_counter_ns()
            await h.arun(self.keys)
            t1 = perf_counter_ns()
        finally:
            gc.enable()
        core._expect(await h.ahit(HOT_KEY), True, "hot key after the run")
        return t1 - t0

    def info(self) -> dict[str, Any]:
        return {
            "hits": len(self.keys),
            "limit": BIG_LIMIT,
            "window": WINDOW,
            "loop": type(self.loop).__module__ + "." + type(self.loop).__name__,
        }

    def close(self) -> None:
        self.loop.close()


def _add_vs(res: dict[str, Any]) -> None:
    """Add each row's ``vs`` and ``ratio_vs`` (median / median of vs)."""
    results = res["results"]
    for name, row in results.items():
        vs = ROWS[name].vs
        row["vs"] = vs or None
        base = results.get(vs or name, {}).get("median_ns")
        row["ratio_vs"] = round(row["median_ns"] / base, 4) if base else None


def run_rows(
    name: str, impls: list[Impl], p: AsyncParams, problems: list[str]
) -> dict[str, Any]:
    these = [i for i in impls if name in ROWS[i.name].scenarios]
    if name == "twins":
        scn: Scenario = Twins(p.core())
    elif name == "controls":
        scn = Controls(p.core())
    elif name == "observe":
        scn = Observe(p.core())
    else:
        scn = core.TIMED_SCENARIOS[name](p.core())
    try:
        res = core.run_timed(scn, these, p.repeats, problems, BASELINES[name])
    finally:
        if isinstance(scn, Twins):
            scn.close()
    if name in MAXK:
        res["max_keys"] = MAX_KEYS
    _add_vs(res)
    return res


# --------------------------------------------------------------------------
# sweep and latency: a limiter full of expired keys
# --------------------------------------------------------------------------


def _expired_limiter(keys: list[str]) -> Any:
    """A limiter holding ``keys``, all expired, and LIVE_KEY, live."""
    clock = _ours_module().ManualClock()
    lim = _limiter(BIG_LIMIT, WINDOW, clock=clock)
    allow = lim.allow
    for k in keys:
        allow(k)
    clock.advance(WINDOW + 1)
    core._expect(allow(LIVE_KEY), True, "live key")
    return lim


def _keys(n: int) -> list[str]:
    width = max(6, len(str(n - 1)))
    return core._prehashed([f"user:{i:0{width}d}" for i in range(n)])


def _check_swept(lim: Any, removed: int, n: int) -> None:
    if removed != n:
        raise core.SanityError(f"removed {removed} keys, expected {n}")
    active = lim.stats()["active_keys"]
    if active != 1:
        raise core.SanityError(f"{active} keys left, expected 1 (the live key)")


def _med(values: list[float]) -> float:
    return float(statistics.median(values))


def run_sweep(p: AsyncParams, problems: list[str]) -> dict[str, Any]:
    """``_profile_sweep()`` over ``sweep_keys`` expired keys, fresh limiter each."""
    keys = _keys(p.sweep_keys)
    rows: list[dict[str, float]] = []
    warmup: dict[str, float] = {}
    for r in range(-1, p.repeats):
        lim = _expired_limiter(keys)
        gc.collect()
        prof = lim._profile_sweep()
        try:
            _check_swept(lim, prof["removed"], len(keys))
        except core.SanityError as exc:
            problems.append(f"sweep: {exc}")
            print(f"  !! sweep: {exc}", file=sys.stderr)
            continue
        row = {
            "total_ms": prof["total_seconds"] * 1e3,
            "chunks": prof["chunks"],
            "longest_chunk_us": prof["longest_chunk_seconds"] * 1e6,
        }
        if r >= 0:
            rows.append(row)
        else:
            warmup = row
        del lim
    results: dict[str, Any] = {}
    if rows:
        total = _med([row["total_ms"] for row in rows])
        results["sweep"] = {
            "removed": len(keys),
            "total_ms": round(total, 3),
            "ns_per_key": round(total * 1e6 / len(keys), 2),
            "chunks": _med([row["chunks"] for row in rows]),
            "longest_chunk_us": round(_med([r["longest_chunk_us"] for r in rows]), 2),
            "longest_chunk_us_max": round(max(r["longest_chunk_us"] for r in rows), 2),
            "samples": [{k: round(v, 3) for k, v in row.items()} for row in rows],
            # The discarded first round: the first large free in a fresh
            # process behaves differently (see the README); kept for reference.
            "warmup_round": {k: round(v, 3) for k, v in warmup.items()},
        }
    return {
        "description": (
            "_profile_sweep() over expired keys (ManualClock advanced past the "
            "window); longest_chunk = longest single shard-lock hold"
        ),
        "unit": "ms / µs",
        "keys": len(keys),
        "results": results,
    }


def _percentile(ordered: list[int], q: float) -> int:
    """Nearest-rank percentile of a sorted, non-empty list."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _sample_latency(lim: Any, during: Callable[[], T]) -> tuple[dict[str, float], T]:
    """Times ``allow(LIVE_KEY)`` on another thread while ``during()`` runs here.

    Only calls that started and ended between this thread's timestamps around
    ``during()`` count. Returns their percentiles and what ``during()`` returned.
    """
    go = threading.Event()
    stop = threading.Event()
    starts: list[int] = []
    durations: list[int] = []

    def sampler() -> None:
        allow = lim.allow
        add_start = starts.append
        add_duration = durations.append
        pc = perf_counter_ns
        go.wait()
        while not stop.is_set():
            t0 = pc()
            allow(LIVE_KEY)
            t1 = pc()
            add_start(t0)
            add_duration(t1 - t0)

    thread = threading.Thread(target=sampler, name="latency-sampler", daemon=True)
    thread.start()
    gc.collect()
    gc.disable()
    try:
        go.set()
        begin = perf_counter_ns()
        result = during()
        end = perf_counter_ns()
    finally:
        stop.set()
        go.set()
        thread.join()
        gc.enable()
    kept = sorted(
        d for s, d in zip(starts, durations, strict=True) if s >= begin and s + d <= end
    )
    if not kept:
        raise core.SanityError("no allow() call completed while measuring")
    stats = {
        "p50_ns": _percentile(kept, 0.50),
        "p99_ns": _percentile(kept, 0.99),
        "p999_ns": _percentile(kept, 0.999),
        "max_ns": kept[-1],
        "calls": len(kept),
        "window_ms": (end - begin) / 1e6,
    }
    return stats, result


def _latency_row(rows: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "p50_ns": _med([r["p50_ns"] for r in rows]),
        "p99_ns": _med([r["p99_ns"] for r in rows]),
        "p999_ns": _med([r["p999_ns"] for r in rows]),
        "max_ns": max(r["max_ns"] for r in rows),
        "calls": _med([r["calls"] for r in rows]),
        "window_ms": round(_med([r["window_ms"] for r in rows]), 3),
        "samples": [{k: round(v, 1) for k, v in r.items()} for r in rows],
    }


def run_latency(p: AsyncParams, problems: list[str]) -> dict[str, Any]:
    """allow() latency from another thread: idle vs during cleanup_expired()."""
    keys = _keys(p.sweep_keys)
    idle: list[dict[str, float]] = []
    sweep: list[dict[str, float]] = []
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        for r in range(-1, p.repeats):
            lim = _expired_limiter(keys)
            try:
                # Idle first: the sweep empties the limiter.
                idle_for = functools.partial(time.sleep, p.idle_seconds)
                quiet, _ = _sample_latency(lim, idle_for)
                busy, removed = _sample_latency(lim, lim.cleanup_expired)
                _check_swept(lim, removed, len(keys))
            except core.SanityError as exc:
                problems.append(f"latency: {exc}")
                print(f"  !! latency: {exc}", file=sys.stderr)
                continue
            if r >= 0:
                idle.append(quiet)
                sweep.append(busy)
            del lim
    finally:
        sys.setswitchinterval(old_interval)
    results: dict[str, Any] = {}
    if idle:
        results["idle"] = _latency_row(idle)
        results["sweep"] = _latency_row(sweep)
    return {
        "description": (
            "per-call allow() latency on a live key, from another Python thread, "
            "while the main thread sleeps (idle) or runs cleanup_expired() (sweep)"
        ),
        "unit": "ns/call",
        "keys": len(keys),
        "idle_seconds": p.idle_seconds,
        "switch_interval": SWITCH_INTERVAL,
        "results": results,
    }


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", default=",".join(ROWS), help="comma list")
    ap.add_argument("--scenarios", default=",".join(ALL_SCENARIOS), help="comma list")
    ap.add_argument("--repeats", type=int, help="repeats per scenario (default 7)")
    ap.add_argument("--quick", action="store_true", help="smaller, faster run")
    ap.add_argument("--sweep-keys", type=int, help="expired keys in sweep/latency")
    ap.add_argument("--json", type=Path, help="write JSON here instead of stdout")
    args = ap.parse_args(argv)

    params = QUICK if args.quick else AsyncParams()
    if args.repeats is not None:
        params = replace(params, repeats=max(1, args.repeats))
    if args.sweep_keys is not None:
        params = replace(params, sweep_keys=max(1, args.sweep_keys))

    problems: list[str] = []
    skipped: dict[str, str] = {}
    impls: list[Impl] = []
    for name in core._csv(args.impl, tuple(ROWS), "implementation"):
        reason = core._unavailable(IMPLS[name])
        if reason:
            skipped[name] = reason
            print(f"note: skipping {name}: {reason}", file=sys.stderr)
        else:
            impls.append(IMPLS[name])
    try:
        version = str(_ours_module().__version__)
    except ImportError as exc:
        version = None
        skipped[OURS] = f"{type(exc).__name__}: {exc}"
        print(f"note: {OURS} is not importable: {exc}", file=sys.stderr)

    out: dict[str, Any] = {
        "meta": {
            "suite": "async",
            "python": sys.version.split()[0],
            "python_implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "params": asdict(params),
            "impls": {i.name: core._version(i) for i in impls},
            "ours": version,
            "what": {i.name: ROWS[i.name].what for i in impls},
            "skipped": skipped,
            "problems": problems,
        },
        "scenarios": {},
    }
    for name in core._csv(args.scenarios, ALL_SCENARIOS, "scenario"):
        if version is None:
            break
        t0 = time.monotonic()
        print(f"{name} ...", file=sys.stderr)
        if name == "sweep":
            res = run_sweep(params, problems)
        elif name == "latency":
            res = run_latency(params, problems)
        elif any(name in ROWS[i.name].scenarios for i in impls):
            res = run_rows(name, impls, params, problems)
        else:
            continue
        gc.collect()
        out["scenarios"][name] = res
        core.log_summary(res, t0, "median_ns", "total_ms", "p99_ns")

    core.emit_json(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
