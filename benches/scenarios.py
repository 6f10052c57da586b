"""Side-by-side rate limiter micro-benchmarks, run in ONE interpreter.

Every implementation is measured in the same process, interleaved: for each
scenario and each of ``--repeats`` repeats, every implementation runs once, in
an order rotated by one place per repeat. The reported number is the median of
the per-repeat ns/hit (raw: loop overhead included, nothing subtracted), and
``ratio`` is that median divided by the median of the plain-Python ``dict``
baseline measured in the same process and scenario. One extra round before the
repeats warms the process up and is discarded.

The ``memory`` scenario runs each implementation in a fresh child process
(``scenarios.py --memory-child IMPL``) and reports the RSS growth per key.

Output is JSON on stdout (or in ``--json FILE``); progress goes to stderr.

    python benches/scenarios.py --impl dict,ours_allow --scenarios hot,over
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from time import monotonic, perf_counter_ns
from typing import Any
from urllib.parse import urlsplit, urlunsplit

WINDOW = 60
BIG_LIMIT = 10**9  # never reached in these runs; valid for every implementation
HOT_KEY = "user:1"
THREADS = 4

ALL_IMPLS = ("dict", "ours_allow", "ours_check", "limits", "token_bucket")
ALL_SCENARIOS = ("hot", "over", "keys100k", "newkeys", "threads4", "memory")


# --------------------------------------------------------------------------
# The baseline: a plain-Python fixed window on a dict.
# --------------------------------------------------------------------------


class DictFixedWindow:
    """Fixed-window limiter: ``key -> [window_start, count]`` in a dict.

    The window of a key starts at its first hit and lasts ``window`` seconds;
    at most ``limit`` hits are allowed in it.
    """

    __slots__ = ("_buckets", "_limit", "_window")

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self._limit = limit
        self._window = window
        self._buckets: dict[str, list[Any]] = {}

    def allow(self, key: str) -> bool:
        now = monotonic()
        entry = self._buckets.get(key)
        if entry is None or now - entry[0] >= self._window:
            self._buckets[key] = [now, 1]
            return True
        if entry[1] < self._limit:
            entry[1] += 1
            return True
        return False


def _self_test_baseline() -> None:
    """Check the baseline is a correct fixed window (cheap; runs every time)."""
    global monotonic
    real = monotonic
    fake_now = [1000.0]

    def fake_monotonic() -> float:
        return fake_now[0]

    monotonic = fake_monotonic
    try:
        lim = DictFixedWindow(3, 10)
        assert [lim.allow("a") for _ in range(4)] == [True, True, True, False]
        assert lim.allow("b")
        fake_now[0] += 9.999
        assert not lim.allow("a")
        fake_now[0] += 0.001
        assert [lim.allow("a") for _ in range(4)] == [True, True, True, False]
    finally:
        monotonic = real


# --------------------------------------------------------------------------
# Implementations under test. Each handle runs its own tight loop over a
# pre-bound method, so every implementation pays the same loop overhead.
# --------------------------------------------------------------------------


class Handle:
    """One limiter instance under test."""

    def run(self, keys: list[str]) -> None:
        """Hit every key in ``keys`` once, in order (the timed loop)."""
        raise NotImplementedError

    def hit(self, key: str) -> bool:
        """One hit; True if it was allowed (used for sanity checks)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release background resources (timers, threads)."""


class MethodHandle(Handle):
    """``method(key)`` on a limiter object: dict, ours, token_bucket."""

    def __init__(
        self,
        limiter: Any,
        method: str,
        allowed: Callable[[Any], bool] = bool,
    ) -> None:
        self._limiter = limiter
        self._fn: Callable[[str], Any] = getattr(limiter, method)
        self._allowed = allowed

    def run(self, keys: list[str]) -> None:
        fn = self._fn
        for k in keys:
            fn(k)

    def hit(self, key: str) -> bool:
        return self._allowed(self._fn(key))


class LimitsHandle(Handle):
    """``limits``: ``FixedWindowRateLimiter(MemoryStorage()).hit(item, key)``.

    ``strategy`` names another ``limits.strategies`` class (the algorithms suite
    uses ``SlidingWindowCounterRateLimiter`` and ``MovingWindowRateLimiter``).
    """

    def __init__(
        self, limit: int, window: int, strategy: str = "FixedWindowRateLimiter"
    ) -> None:
        limits = importlib.import_module("limits")
        storage = importlib.import_module("limits.storage")
        strategies = importlib.import_module("limits.strategies")
        if window == 60:
            self._item = limits.RateLimitItemPerMinute(limit)
        else:
            self._item = limits.RateLimitItemPerSecond(limit, window)
        self._storage = storage.MemoryStorage()
        self._strategy = getattr(strategies, strategy)(self._storage)

    def run(self, keys: list[str]) -> None:
        hit = self._strategy.hit
        item = self._item
        for k in keys:
            hit(item, k)

    def hit(self, key: str) -> bool:
        return bool(self._strategy.hit(self._item, key))

    def close(self) -> None:
        # MemoryStorage sweeps expired keys on a threading.Timer; stop it so it
        # cannot steal the GIL while another implementation is being timed.
        timer = self._storage.timer
        timer.cancel()
        if timer.is_alive():
            timer.join()


def _check_allowed(result: Any) -> bool:
    return bool(result["allowed"])


def _make_dict(limit: int, window: int) -> Handle:
    return MethodHandle(DictFixedWindow(limit, window), "allow")


def _ours(limit: int, window: int) -> Any:
    mod = importlib.import_module("rust_py_rate_limit")
    return mod.RateLimiter(limit=limit, window_seconds=window)


def _make_ours_allow(limit: int, window: int) -> Handle:
    return MethodHandle(_ours(limit, window), "allow")


def _make_ours_check(limit: int, window: int) -> Handle:
    return MethodHandle(_ours(limit, window), "check", _check_allowed)


def _make_limits(limit: int, window: int) -> Handle:
    return LimitsHandle(limit, window)


def _make_token_bucket(limit: int, window: int) -> Handle:
    tb = importlib.import_module("token_bucket")
    # Same long-run rate as the fixed window (limit per window), burst = limit.
    limiter = tb.Limiter(limit / window, limit, tb.MemoryStorage())
    return MethodHandle(limiter, "consume")


@dataclass(frozen=True)
class Impl:
    name: str
    module: str  # module whose version is reported ("" = none)
    make: Callable[[int, int], Handle]
    memory: bool = True  # *_check shares ours_allow's storage: not re-measured


IMPLS: dict[str, Impl] = {
    i.name: i
    for i in (
        Impl("dict", "", _make_dict),
        Impl("ours_allow", "rust_py_rate_limit", _make_ours_allow),
        Impl("ours_check", "rust_py_rate_limit", _make_ours_check, memory=False),
        Impl("limits", "limits", _make_limits),
        Impl("token_bucket", "token_bucket", _make_token_bucket),
    )
}


def _unavailable(impl: Impl) -> str | None:
    """None if the implementation can be built, else why not."""
    try:
        handle = impl.make(10, WINDOW)
        handle.hit("probe")
        handle.close()
    except (ImportError, AttributeError, TypeError, ValueError, RuntimeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _version(impl: Impl) -> str | None:
    if not impl.module:
        return None
    version = getattr(importlib.import_module(impl.module), "__version__", None)
    return None if version is None else str(version)


# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    repeats: int = 7
    n_hot: int = 200_000  # hits per run, hot and over
    n_keys: int = 100_000  # distinct keys in keys100k
    passes: int = 3  # timed passes over them
    n_new: int = 100_000  # never-seen keys per run in newkeys
    n_thread: int = 50_000  # hits per thread in threads4
    memory_keys: int = 1_000_000
    warmup: int = 10_000


QUICK = Params(
    repeats=3,
    n_hot=50_000,
    passes=1,
    n_new=20_000,
    n_thread=20_000,
    memory_keys=200_000,
    warmup=2_000,
)


# --------------------------------------------------------------------------
# Timing helpers
# --------------------------------------------------------------------------


class SanityError(Exception):
    pass


def _expect(got: bool, want: bool, what: str) -> None:
    if got is not want:
        raise SanityError(f"{what}: expected allowed={want}, got {got}")


def _timed(handle: Handle, keys: list[str]) -> int:
    """Wall ns of ``handle.run(keys)`` with the cyclic GC off."""
    gc.collect()
    gc.disable()
    try:
        t0 = perf_counter_ns()
        handle.run(keys)
        t1 = perf_counter_ns()
    finally:
        gc.enable()
    return t1 - t0


def _timed_threads(handle: Handle, key_lists: list[list[str]]) -> int:
    """Wall ns from releasing all threads (one per list) until all finished."""
    barrier = threading.Barrier(len(key_lists) + 1)

    def worker(keys: list[str]) -> None:
        barrier.wait()
        handle.run(keys)

    threads = [threading.Thread(target=worker, args=(keys,)) for keys in key_lists]
    for t in threads:
        t.start()
    while barrier.n_waiting < len(threads):
        time.sleep(0.0005)
    gc.collect()
    gc.disable()
    try:
        t0 = perf_counter_ns()
        barrier.wait()
        for t in threads:
            t.join()
        t1 = perf_counter_ns()
    finally:
        gc.enable()
    return t1 - t0


def _prehashed(keys: list[str]) -> list[str]:
    # str caches its hash; compute it up front so that no implementation pays
    # (or is spared) the first hash depending on the order it runs in.
    for k in keys:
        hash(k)
    return keys


@contextmanager
def _limiter(impl: Impl, limit: int) -> Iterator[Handle]:
    handle = impl.make(limit, WINDOW)
    try:
        yield handle
    finally:
        handle.close()


# --------------------------------------------------------------------------
# Scenarios. ``sample`` builds a fresh limiter (untimed), warms it up, times
# one run and returns ns/hit; the key lists are built once per scenario.
# --------------------------------------------------------------------------

Sample = dict[str, float]


class Scenario:
    name = ""
    description = ""

    def __init__(self, p: Params) -> None:
        self.p = p

    def sample(self, impl: Impl, repeat: int) -> Sample:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {}


class Hot(Scenario):
    name = "hot"
    description = "one key, never blocked"

    def __init__(self, p: Params) -> None:
        super().__init__(p)
        self.keys = [HOT_KEY] * p.n_hot
        self.warm = self.keys[: p.warmup]

    def sample(self, impl: Impl, repeat: int) -> Sample:
        with _limiter(impl, BIG_LIMIT) as h:
            h.run(self.warm)
            ns = _timed(h, self.keys)
            _expect(h.hit(HOT_KEY), True, "hot key after the run")
        return {"ns": ns / len(self.keys)}

    def info(self) -> dict[str, Any]:
        return {"hits": len(self.keys), "limit": BIG_LIMIT, "window": WINDOW}


class Over(Hot):
    name = "over"
    description = "one key already over its limit (1), every hit blocked"

    def sample(self, impl: Impl, repeat: int) -> Sample:
        with _limiter(impl, 1) as h:
            _expect(h.hit(HOT_KEY), True, "first hit")
            h.run(self.warm)
            ns = _timed(h, self.keys)
            _expect(h.hit(HOT_KEY), False, "over key after the run")
        return {"ns": ns / len(self.keys)}

    def info(self) -> dict[str, Any]:
        return {"hits": len(self.keys), "limit": 1, "window": WINDOW}


class Keys100k(Scenario):
    name = "keys100k"
    description = "distinct existing keys, round-robin"

    def __init__(self, p: Params) -> None:
        super().__init__(p)
        self.distinct = _prehashed([f"user:{i}" for i in range(p.n_keys)])
        self.keys = self.distinct * p.passes

    def sample(self, impl: Impl, repeat: int) -> Sample:
        with _limiter(impl, BIG_LIMIT) as h:
            h.run(self.distinct)  # creates every key and warms up
            ns = _timed(h, self.keys)
            _expect(h.hit(self.distinct[0]), True, "first key after the run")
        return {"ns": ns / len(self.keys)}

    def info(self) -> dict[str, Any]:
        return {"keys": len(self.distinct), "passes": self.p.passes}


class NewKeys(Scenario):
    name = "newkeys"
    description = "first hit on never-seen keys (fresh limiter)"

    def __init__(self, p: Params) -> None:
        super().__init__(p)
        self.keys = _prehashed([f"user:{i}" for i in range(p.n_new)])
        self.warm = _prehashed([f"warm:{i}" for i in range(p.warmup)])

    def sample(self, impl: Impl, repeat: int) -> Sample:
        with _limiter(impl, BIG_LIMIT) as h:
            h.run(self.warm)
            ns = _timed(h, self.keys)
            _expect(h.hit(self.keys[0]), True, "first new key after the run")
        return {"ns": ns / len(self.keys)}

    def info(self) -> dict[str, Any]:
        return {"keys": len(self.keys)}


class Threads(Scenario):
    name = f"threads{THREADS}"
    description = (
        f"{THREADS} threads, one key each, concurrently; total wall ns / total "
        "hits, vs the same total hits on 1 thread"
    )

    def __init__(self, p: Params) -> None:
        super().__init__(p)
        self.multi = [[f"thread:{t}"] * p.n_thread for t in range(THREADS)]
        self.single = [[HOT_KEY] * (p.n_thread * THREADS)]

    def _one(self, impl: Impl, lists: list[list[str]]) -> float:
        with _limiter(impl, BIG_LIMIT) as h:
            for keys in lists:
                h.run(keys[: self.p.warmup])
            ns = _timed_threads(h, lists)
            for keys in lists:
                _expect(h.hit(keys[0]), True, "thread key after the run")
        return ns / sum(len(keys) for keys in lists)

    def sample(self, impl: Impl, repeat: int) -> Sample:
        if repeat % 2:
            single = self._one(impl, self.single)
            multi = self._one(impl, self.multi)
        else:
            multi = self._one(impl, self.multi)
            single = self._one(impl, self.single)
        return {"ns": multi, "single_ns": single}

    def info(self) -> dict[str, Any]:
        return {"threads": THREADS, "hits_per_thread": self.p.n_thread}


TIMED_SCENARIOS: dict[str, type[Scenario]] = {
    s.name: s for s in (Hot, Over, Keys100k, NewKeys, Threads)
}


def _med(values: list[float]) -> float:
    return float(statistics.median(values))


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return round(value / base, 4)


def run_timed(
    scn: Scenario,
    impls: list[Impl],
    repeats: int,
    problems: list[str],
    baseline: str = "dict",
) -> dict[str, Any]:
    """Interleaved repeats of ``scn``; ratios are to the ``baseline`` impl."""
    samples: dict[str, list[Sample]] = {i.name: [] for i in impls}
    for r in range(-1, repeats):  # round -1 warms the process up; not kept
        shift = r % len(impls)
        for impl in impls[shift:] + impls[:shift]:
            try:
                sample = scn.sample(impl, r)
                if r >= 0:
                    samples[impl.name].append(sample)
            except SanityError as exc:
                problems.append(f"{scn.name}/{impl.name}: {exc}")
                print(f"  !! {scn.name}/{impl.name}: {exc}", file=sys.stderr)

    medians: dict[str, Sample] = {}
    for name, rows in samples.items():
        if rows:
            medians[name] = {f: _med([row[f] for row in rows]) for f in rows[0]}
    base = medians.get(baseline, {})
    results: dict[str, Any] = {}
    for name, med in medians.items():
        res: dict[str, Any] = {
            "median_ns": round(med["ns"], 2),
            "ratio": _ratio(med["ns"], base.get("ns")),
            "samples_ns": [round(row["ns"], 2) for row in samples[name]],
        }
        if "single_ns" in med:
            res["single_median_ns"] = round(med["single_ns"], 2)
            res["single_ratio"] = _ratio(med["single_ns"], base.get("single_ns"))
            # Paired: 4 threads and 1 thread ran back to back in each repeat.
            res["threads_vs_single"] = round(
                _med([row["ns"] / row["single_ns"] for row in samples[name]]), 4
            )
            res["single_samples_ns"] = [
                round(row["single_ns"], 2) for row in samples[name]
            ]
        results[name] = res
    return {
        "description": scn.description,
        "unit": "ns/hit",
        **scn.info(),
        "results": results,
    }


# --------------------------------------------------------------------------
# Memory: one fresh child process per implementation.
# --------------------------------------------------------------------------


def _rss_bytes() -> int:
    statm = Path("/proc/self/statm")
    if statm.exists():
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    import resource  # not on Windows; ru_maxrss is a peak, good enough here

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def memory_child(impl: Impl, n_keys: int) -> dict[str, Any]:
    """Measure RSS growth per key in this (fresh) process; see ``--memory-child``.

    The key strings are built before the first reading, so they do not count:
    only what the limiter allocates (its own copies of the keys included) does.
    """
    width = max(6, len(str(n_keys - 1)))
    keys = _prehashed([f"user:{i:0{width}d}" for i in range(n_keys)])
    warm = [f"warm:{i}" for i in range(1000)]
    # limit 2: each key gets one hit below, so a key still tracked at the end
    # allows exactly one more hit; an evicted one would allow two.
    handle = impl.make(2, WINDOW)
    try:
        handle.run(warm)
        gc.collect()
        before = _rss_bytes()
        t0 = perf_counter_ns()
        gc.disable()
        try:
            handle.run(keys)
        finally:
            gc.enable()
        elapsed = (perf_counter_ns() - t0) / 1e9
        gc.collect()
        after = _rss_bytes()
        kept = handle.hit(keys[0]) and not handle.hit(keys[0])
    finally:
        handle.close()
    return {
        "impl": impl.name,
        "keys": n_keys,
        "rss_before": before,
        "rss_after": after,
        "bytes_per_key": round((after - before) / n_keys, 2),
        "insert_seconds": round(elapsed, 3),
        "first_key_still_tracked": kept,
    }


def run_memory(
    impls: list[Impl],
    n_keys: int,
    problems: list[str],
    script: Path | None = None,
    baseline: str = "dict",
) -> dict[str, Any]:
    """Run ``script --memory-child IMPL`` (default: this file) per implementation."""
    results: dict[str, Any] = {}
    for impl in impls:
        if not impl.memory:
            continue
        cmd = [
            sys.executable,
            str(script or Path(__file__).resolve()),
            "--memory-child",
            impl.name,
            "--memory-keys",
            str(n_keys),
        ]
        print(f"  memory: {impl.name} ({n_keys:,} keys)", file=sys.stderr)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            problems.append(f"memory/{impl.name}: child failed: {proc.stderr[-500:]}")
            print(f"  !! memory/{impl.name} failed:\n{proc.stderr}", file=sys.stderr)
            continue
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        if not child["first_key_still_tracked"]:
            problems.append(f"memory/{impl.name}: first key no longer tracked")
        results[impl.name] = child
    base = results.get(baseline, {}).get("bytes_per_key")
    for res in results.values():
        res["ratio"] = _ratio(res["bytes_per_key"], base)
    return {
        "description": "RSS growth per key after inserting keys like user:123456",
        "unit": "B/key",
        "keys": n_keys,
        "results": results,
    }


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def log_summary(res: dict[str, Any], started: float, *fields: str) -> None:
    """Prints one progress line: each implementation's first present field."""

    def first(v: dict[str, Any]) -> Any:
        return next((v[f] for f in fields if f in v), None)

    summary = ", ".join(f"{k}={first(v)}" for k, v in res["results"].items())
    print(f"  {summary}  [{time.monotonic() - started:.1f}s]", file=sys.stderr)


def emit_json(out: dict[str, Any], path: Path | None) -> None:
    """Writes the results to ``path`` (creating its folder), or to stdout."""
    text = json.dumps(out, indent=2)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    else:
        print(text)


def _csv(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in items if x not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (from {allowed})")
    return items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", default=",".join(ALL_IMPLS), help="comma list")
    ap.add_argument("--scenarios", default=",".join(ALL_SCENARIOS), help="comma list")
    ap.add_argument("--repeats", type=int, help="repeats per scenario (default 7)")
    ap.add_argument("--quick", action="store_true", help="smaller, faster run")
    ap.add_argument("--memory-keys", type=int, help="keys for the memory scenario")
    ap.add_argument("--json", type=Path, help="write JSON here instead of stdout")
    ap.add_argument("--memory-child", metavar="IMPL", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    _self_test_baseline()
    params = QUICK if args.quick else Params()
    if args.repeats is not None:
        params = replace(params, repeats=max(1, args.repeats))
    if args.memory_keys is not None:
        params = replace(params, memory_keys=max(1, args.memory_keys))

    if args.memory_child:
        impl = IMPLS[args.memory_child]
        print(json.dumps(memory_child(impl, params.memory_keys)))
        return 0

    problems: list[str] = []
    skipped: dict[str, str] = {}
    impls: list[Impl] = []
    for name in _csv(args.impl, ALL_IMPLS, "implementation"):
        reason = _unavailable(IMPLS[name])
        if reason:
            skipped[name] = reason
            print(f"note: skipping {name}: {reason}", file=sys.stderr)
        else:
            impls.append(IMPLS[name])
    if "dict" not in [i.name for i in impls]:
        print("note: no dict baseline selected; ratios will be null", file=sys.stderr)

    out: dict[str, Any] = {
        "meta": {
            "python": sys.version.split()[0],
            "python_implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "params": asdict(params),
            "impls": {i.name: _version(i) for i in impls},
            "skipped": skipped,
            "problems": problems,
        },
        "scenarios": {},
    }
    for name in _csv(args.scenarios, ALL_SCENARIOS, "scenario"):
        if not impls:
            break
        t0 = time.monotonic()
        print(f"{name} ...", file=sys.stderr)
        if name == "memory":
            res = run_memory(impls, params.memory_keys, problems)
        else:
            scn = TIMED_SCENARIOS[name](params)
            res = run_timed(scn, impls, params.repeats, problems)
            del scn
            gc.collect()
        out["scenarios"][name] = res
        log_summary(res, t0, "median_ns", "bytes_per_key")

    emit_json(out, args.json)
    return 0


# --------------------------------------------------------------------------
# Shared by the suites that time a server (redis_bench.py, postgres_bench.py):
# handles that count refusals, their rows, the "hits" scenario, run metadata.
# ``run`` counts refusals in the timed loop itself, one call of
# ``allowed(result)`` per hit for every row, so every row pays the same.
# --------------------------------------------------------------------------


def always_true(result: Any) -> bool:
    """``allowed`` of a row that decides nothing (a raw round trip)."""
    return True


class CallHandle(Handle):
    """``fn(key)`` per key; ``allowed(result)`` says whether it was admitted."""

    def __init__(
        self,
        fn: Callable[[str], Any],
        allowed: Callable[[Any], bool] = bool,
        close: Callable[[], Any] | None = None,
    ) -> None:
        self._fn = fn
        self._allowed = allowed
        self._close = close
        self.refused = 0

    def run(self, keys: list[str]) -> None:
        fn = self._fn
        allowed = self._allowed
        refused = 0
        for k in keys:
            if not allowed(fn(k)):
                refused += 1
        self.refused += refused

    def hit(self, key: str) -> bool:
        return self._allowed(self._fn(key))

    def close(self) -> None:
        if self._close is not None:
            self._close()


class AwaitHandle(CallHandle):
    """``await fn(key)`` per key, ``batch`` awaits at a time (asyncio.gather).

    Runs in its own event loop; ``batch=1`` awaits one call at a time.
    """

    def __init__(self, fn: Callable[[str], Any], batch: int) -> None:
        super().__init__(fn)
        self._batch = batch
        self._loop = asyncio.new_event_loop()

    async def _arun(self, keys: list[str]) -> int:
        fn = self._fn
        refused = 0
        if self._batch == 1:
            for k in keys:
                if not await fn(k):
                    refused += 1
            return refused
        gather = asyncio.gather
        step = self._batch
        for i in range(0, len(keys), step):
            results = await gather(*[fn(k) for k in keys[i : i + step]])
            refused += sum(1 for r in results if not r)
        return refused

    def run(self, keys: list[str]) -> None:
        self.refused += self._loop.run_until_complete(self._arun(keys))

    def hit(self, key: str) -> bool:
        return self._loop.run_until_complete(self._arun([key])) == 0

    def close(self) -> None:
        self._loop.close()


@dataclass(frozen=True)
class ServerRow:
    """One row of a server suite; ``make(ctx, limit, window)`` builds one
    client or limiter (``ctx``: the suite's server and namespace)."""

    name: str
    module: str  # module whose version is reported
    make: Callable[[Any, int, int], Handle]
    what: str  # what is timed per hit
    kind: str  # "baseline", "ours", "async", "threads" or "peer"
    vs: str = ""  # peer: our row of the same algorithm; async: the sequential row


class ServerHits(Scenario):
    """``keys`` fresh keys per run, each hit once untimed (this opens the
    connection, loads what the row loads and creates the keys), then ``hits``
    timed hits round-robin over them; refusals are counted per row."""

    name = "hits"

    def __init__(
        self, repeats: int, hits: int, keys: int, limit: int, window: int
    ) -> None:
        super().__init__(replace(Params(), repeats=repeats))
        self.hits = hits
        self.n_keys = keys
        self.limit = limit
        self.window = window
        self.description = (
            f"{keys} fresh keys per run, each hit once untimed, then hits "
            f"round-robin over them; limit {limit:,} per {window} s (never reached)"
        )
        self.refused: dict[str, int] = {}

    def sample(self, impl: Impl, repeat: int) -> Sample:
        n = self.n_keys
        keys = _prehashed([f"{impl.name}:{repeat + 1}:{i}" for i in range(n)])
        timed = keys * (self.hits // n)
        try:
            with _limiter(impl, self.limit) as h:
                assert isinstance(h, CallHandle)
                h.run(keys)
                h.refused = 0
                ns = _timed(h, timed)
                refused = h.refused
                _expect(h.hit(keys[0]), True, "first key after the run")
        except SanityError:
            raise
        except Exception as exc:  # a server error: report the row, keep going
            raise SanityError(f"{type(exc).__name__}: {exc}") from exc
        if repeat >= 0:
            self.refused[impl.name] = self.refused.get(impl.name, 0) + refused
        return {"ns": ns / len(timed)}

    def info(self) -> dict[str, Any]:
        return {
            "keys": self.n_keys,
            "hits": self.hits,
            "limit": self.limit,
            "window": self.window,
            "refused": self.refused,
        }


def add_vs(res: dict[str, Any], rows: dict[str, ServerRow]) -> None:
    """Each row's ``vs``, ``ratio_vs`` (median / median of vs) and, for a peer,
    ``ours_over_peer`` (median of our same algorithm / the peer's median)."""
    results = res["results"]
    for name, row in results.items():
        vs = rows[name].vs
        row["vs"] = vs or None
        row["refused"] = res["refused"].get(name, 0)
        base = results.get(vs or name, {}).get("median_ns")
        row["ratio_vs"] = round(row["median_ns"] / base, 4) if base else None
        if rows[name].kind == "peer":
            ours = results.get(vs, {}).get("median_ns")
            row["ours_over_peer"] = round(ours / row["median_ns"], 4) if ours else None


def server_impls(
    rows: dict[str, ServerRow],
    names: list[str],
    ctx_for: Callable[[str], Any],
    meta: dict[str, Any],
) -> list[Impl]:
    """The rows in ``names`` that can be built (each on ``ctx_for(name)``);
    fills ``meta``'s ``skipped``, ``impls`` (versions) and ``what``."""
    impls: list[Impl] = []
    for name in names:
        row = rows[name]
        impl = Impl(name, row.module, functools.partial(row.make, ctx_for(name)), False)
        reason = _unavailable(impl)
        if reason:
            meta["skipped"][name] = reason
            print(f"note: skipping {name}: {reason}", file=sys.stderr)
        else:
            impls.append(impl)
            meta["impls"][name] = module_version(row.module)
            meta["what"][name] = row.what
    return impls


def run_server_hits(
    scn: ServerHits,
    impls: list[Impl],
    rows: dict[str, ServerRow],
    baseline: str,
    problems: list[str],
) -> dict[str, Any]:
    """``run_timed`` of ``scn`` + ``add_vs``; refusals go to ``problems``."""
    t0 = time.monotonic()
    print(f"{scn.name} ...", file=sys.stderr)
    res = run_timed(scn, impls, scn.p.repeats, problems, baseline)
    add_vs(res, rows)
    for row_name, refused in res["refused"].items():
        if refused:
            problems.append(f"{scn.name}/{row_name}: {refused} hits refused")
    log_summary(res, t0, "median_ns")
    gc.collect()
    return res


def module_version(module: str) -> str | None:
    version = getattr(importlib.import_module(module), "__version__", None)
    return None if version is None else str(version)


def loadavg() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def server_meta(suite: str, params: dict[str, Any], baseline: str) -> dict[str, Any]:
    """The ``meta`` of a server suite's JSON, before the run."""
    return {
        "suite": suite,
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "params": params,
        "baseline": baseline,
        "loadavg": {"start": loadavg()},
        "server": None,
        "unavailable": None,
        "impls": {},
        "what": {},
        "skipped": {},
        "problems": [],
    }


def shown_url(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


class PerKeyBuckets:
    """The routing half of a pyrate-limiter ``BucketFactory``: one bucket per
    key (``item.name``), made on first use by ``new_bucket``.

    ``Limiter(bucket)`` alone puts every key in ONE bucket (its
    ``SingleBucketFactory`` ignores the name); its docs route keys to buckets
    with a ``BucketFactory``. Suites mix a subclass into
    ``pyrate_limiter.BucketFactory`` at run time (the package is imported
    lazily, like every peer). No bucket is registered with the background
    Leaker: a run lasts well under the window.
    """

    def __init__(self, rate_item: Any, now: Callable[[], int]) -> None:
        self._rate_item = rate_item
        self._now = now
        self.buckets: dict[str, Any] = {}

    def new_bucket(self, name: str) -> Any:
        raise NotImplementedError

    def wrap_item(self, name: str, weight: int = 1) -> Any:
        return self._rate_item(name, self._now(), weight=weight)

    def get(self, item: Any) -> Any:
        bucket = self.buckets.get(item.name)
        if bucket is None:
            bucket = self.buckets[item.name] = self.new_bucket(item.name)
        return bucket

    def owned_buckets(self) -> list[Any]:
        return list(self.buckets.values())


if __name__ == "__main__":
    sys.exit(main())
