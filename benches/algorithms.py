"""The "algorithms" suite: every algorithm of ours side by side, run in ONE interpreter.

Our ``RateLimiter.allow`` for ``fixed``, ``sliding``, ``sliding_log``,
``token_bucket``, ``gcra`` and a compound fixed limit, next to the peer that
implements the same algorithm (``limits``, ``throttled-py``,
``pyrate-limiter``). Same machinery as ``scenarios.py`` (interleaved repeats,
rotated order, median, fresh limiter per run, GC off while timed): each
scenario's ``ratio`` is to our ``fixed`` in the same process and scenario, and
``ratio_vs`` is to the row named in ``vs`` (our same algorithm, for a peer).

The ``memory`` scenario runs each of our algorithms in a fresh child process
(``algorithms.py --memory-child IMPL``) and reports the RSS growth per key.

Output is JSON on stdout (or in ``--json FILE``); progress goes to stderr.

    python benches/algorithms.py --impl fixed,gcra,pyrate_gcra --scenarios hot
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import scenarios as core
from scenarios import (
    BIG_LIMIT,
    HOT_KEY,
    QUICK,
    WINDOW,
    Handle,
    Impl,
    LimitsHandle,
    MethodHandle,
    Params,
    Sample,
    Scenario,
)

BASELINE = "fixed"
SLIDING_LOG_LIMIT = 100  # the limit the sliding_log target is stated for
SLIDING_LOG_BIG = 10**6  # never reached in hot: shows the under-limit cost
PEER_TARGET = 20.0  # ours must be at least this many times faster than a peer
# throttled-py's MemoryStore is an LRU of MAX_SIZE keys (default 1024): sized so
# that keys100k measures rate limiting, not eviction and re-creation.
THROTTLED_MAX_SIZE = 1 << 21

ALL_SCENARIOS = ("hot", "keys100k", "memory")
# Import name -> name on PyPI (as pinned in benches/requirements.txt).
PACKAGES = {
    "limits": "limits",
    "throttled": "throttled-py",
    "pyrate_limiter": "pyrate-limiter",
}


# --------------------------------------------------------------------------
# Implementations. ``make(limit, window)`` builds one limiter; the limit each
# scenario passes is the variant's own (``Variant.hot_limit`` / ``keys_limit``),
# and 2 in the memory scenario.
# --------------------------------------------------------------------------


def _ours(algorithm: str) -> Callable[[int, int], Handle]:
    def make(limit: int, window: int) -> Handle:
        mod = importlib.import_module("rust_py_rate_limit")
        limiter = mod.RateLimiter(
            limit=limit, window_seconds=window, algorithm=algorithm
        )
        return MethodHandle(limiter, "allow")

    return make


def _make_compound(limit: int, window: int) -> Handle:
    """``RateLimiter(rate="L/minute;L/hour")``: two fixed windows per key."""
    if window != 60:
        raise ValueError("the compound limit is per minute and per hour")
    mod = importlib.import_module("rust_py_rate_limit")
    return MethodHandle(mod.RateLimiter(rate=f"{limit}/minute;{limit}/hour"), "allow")


def _limits(strategy: str) -> Callable[[int, int], Handle]:
    def make(limit: int, window: int) -> Handle:
        return LimitsHandle(limit, window, strategy)

    return make


def _not_limited(result: Any) -> bool:
    return not result.limited


def _throttled(using: str) -> Callable[[int, int], Handle]:
    """``Throttled(using, quota, store=MemoryStore(), timeout=-1).limit(key)``."""

    def make(limit: int, window: int) -> Handle:
        throttled = importlib.import_module("throttled")
        quota = throttled.rate_limiter.per_duration(timedelta(seconds=window), limit)
        store = throttled.store.MemoryStore(options={"MAX_SIZE": THROTTLED_MAX_SIZE})
        # timeout=-1: return at once when limited, never wait and retry.
        limiter = throttled.Throttled(using=using, quota=quota, store=store, timeout=-1)
        return MethodHandle(limiter, "limit", _not_limited)

    return make


class PyrateHandle(Handle):
    """pyrate-limiter: ``Limiter(factory).try_acquire(key, 1, False)``.

    ``blocking=False``: a full bucket returns False at once (no sleep, no
    retry). Passed positionally, the cheapest way to call it.
    """

    def __init__(self, limiter: Any) -> None:
        self._limiter = limiter
        self._acquire: Callable[[str, int, bool], Any] = limiter.try_acquire

    def run(self, keys: list[str]) -> None:
        acquire = self._acquire
        for k in keys:
            acquire(k, 1, False)

    def hit(self, key: str) -> bool:
        result = self._acquire(key, 1, False)
        if not isinstance(result, bool):
            raise TypeError(f"try_acquire returned {type(result).__name__}")
        return result

    def close(self) -> None:
        self._limiter.close()


class _PerKeyBuckets(core.PerKeyBuckets):
    """One GCRA ``StateBucket`` (in-memory state) per key; see
    ``scenarios.PerKeyBuckets`` and ``_make_pyrate_gcra``."""

    def __init__(self, pl: Any, limit: int, window: int) -> None:
        self._rates = [pl.Rate(limit, window * 1000)]  # ms; burst = limit
        self._clock = pl.MonotonicClock()  # an in-memory StateBucket's default
        self._algorithm = pl.GCRA()
        self._state_bucket = pl.StateBucket
        super().__init__(pl.RateItem, self._clock.now)

    def new_bucket(self, name: str) -> Any:
        return self._state_bucket(
            self._rates, algorithm=self._algorithm, clock=self._clock
        )


def _make_pyrate_gcra(limit: int, window: int) -> Handle:
    """pyrate-limiter v4: ``Limiter(factory)``, a GCRA ``StateBucket`` per key.

    ``Limiter(Rate(...))`` alone puts every key in ONE bucket (its
    ``SingleBucketFactory`` ignores the name), so per-key limits need a
    ``BucketFactory`` that routes by ``item.name``, as its docs show. The
    buckets are not registered with the background Leaker: a ``StateBucket``
    keeps constant state and its ``leak()`` is a no-op.
    """
    pl = importlib.import_module("pyrate_limiter")
    bases = (_PerKeyBuckets, pl.BucketFactory)
    factory_cls = type("PerKeyFactory", bases, {"__module__": __name__})
    return PyrateHandle(pl.Limiter(factory_cls(pl, limit, window)))


@dataclass(frozen=True)
class Variant:
    """One row of the suite."""

    name: str
    module: str  # module whose version is reported
    make: Callable[[int, int], Handle]
    what: str  # what is timed per hit (for the README / JSON)
    vs: str = BASELINE  # the row ``ratio_vs`` divides by ("" for the baseline)
    hot_limit: int | None = BIG_LIMIT  # None: not run in hot
    keys_limit: int | None = BIG_LIMIT  # None: not run in keys100k
    budget: float | None = None  # target for ours: ratio_vs <= budget
    peer: bool = False  # target for a peer: ratio_vs >= PEER_TARGET
    memory: bool = False  # measured in the memory scenario

    def limit(self, scenario: str) -> int | None:
        return self.hot_limit if scenario == "hot" else self.keys_limit


OURS = "rust_py_rate_limit"
SL, SLB = SLIDING_LOG_LIMIT, SLIDING_LOG_BIG

# In display order: each peer right after our algorithm it is compared with.
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "fixed",
            OURS,
            _ours("fixed"),
            'ours `RateLimiter(limit, 60, algorithm="fixed").allow(key)`: the baseline',
            vs="",
            memory=True,
        ),
        Variant(
            "fixed_100",
            OURS,
            _ours("fixed"),
            "ours fixed with limit 100: in hot every timed hit is blocked, "
            "like sliding_log's (no target)",
            hot_limit=SL,
            keys_limit=None,
        ),
        Variant(
            "sliding",
            OURS,
            _ours("sliding"),
            'ours `algorithm="sliding"` (sliding window counter)',
            budget=1.3,
            memory=True,
        ),
        Variant(
            "limits_sliding",
            "limits",
            _limits("SlidingWindowCounterRateLimiter"),
            "`SlidingWindowCounterRateLimiter(MemoryStorage()).hit(item, key)`",
            vs="sliding",
            peer=True,
        ),
        Variant(
            "sliding_log",
            OURS,
            _ours("sliding_log"),
            'ours `algorithm="sliding_log"` (exact moving window), limit 100',
            hot_limit=SL,
            keys_limit=SL,
            budget=2.0,
            memory=True,
        ),
        Variant(
            "limits_moving",
            "limits",
            _limits("MovingWindowRateLimiter"),
            "`MovingWindowRateLimiter(MemoryStorage()).hit(item, key)`, limit 100",
            vs="sliding_log",
            hot_limit=SL,
            keys_limit=SL,
            peer=True,
        ),
        Variant(
            "sliding_log_1e6",
            OURS,
            _ours("sliding_log"),
            "ours sliding_log with limit 10^6: never blocks in hot",
            hot_limit=SLB,
            keys_limit=None,
            budget=2.0,
        ),
        Variant(
            "limits_moving_1e6",
            "limits",
            _limits("MovingWindowRateLimiter"),
            "limits' moving window with limit 10^6",
            vs="sliding_log_1e6",
            hot_limit=SLB,
            keys_limit=None,
            peer=True,
        ),
        Variant(
            "token_bucket",
            OURS,
            _ours("token_bucket"),
            'ours `algorithm="token_bucket"` (burst = limit)',
            budget=1.3,
            memory=True,
        ),
        Variant(
            "throttled_token_bucket",
            "throttled",
            _throttled("token_bucket"),
            'throttled-py `Throttled(using="token_bucket", quota=per_duration(60 s, '
            "limit), store=MemoryStore(), timeout=-1).limit(key)`",
            vs="token_bucket",
            peer=True,
        ),
        Variant(
            "gcra",
            OURS,
            _ours("gcra"),
            'ours `algorithm="gcra"`',
            budget=1.3,
            memory=True,
        ),
        Variant(
            "throttled_gcra",
            "throttled",
            _throttled("gcra"),
            'throttled-py, `using="gcra"`, otherwise as above',
            vs="gcra",
            peer=True,
        ),
        Variant(
            "pyrate_gcra",
            "pyrate_limiter",
            _make_pyrate_gcra,
            "pyrate-limiter `Limiter(PerKeyFactory()).try_acquire(key, 1, False)`, "
            "a GCRA `StateBucket` per key",
            vs="gcra",
            peer=True,
        ),
        Variant(
            "compound",
            OURS,
            _make_compound,
            'ours `RateLimiter(rate="L/minute;L/hour").allow(key)`',
            budget=1.3,
            memory=True,
        ),
    )
}

IMPLS: dict[str, Impl] = {
    v.name: Impl(v.name, v.module, v.make, memory=v.memory) for v in VARIANTS.values()
}


# --------------------------------------------------------------------------
# Scenarios: like scenarios.py's hot and keys100k, but each implementation
# gets its variant's limit, and the sanity check expects a block when that
# limit is reached (sliding_log, limit 100, in hot).
# --------------------------------------------------------------------------


class AlgoHot(Scenario):
    name = "hot"
    description = "one key; limit 10^9 unless the variant says otherwise"

    def __init__(self, p: Params) -> None:
        super().__init__(p)
        self.keys = [HOT_KEY] * p.n_hot
        self.warm = self.keys[: p.warmup]

    def sample(self, impl: Impl, repeat: int) -> Sample:
        limit = VARIANTS[impl.name].hot_limit
        assert limit is not None
        # Allowed after the run only if warm-up + run + this hit fit the limit.
        expect = len(self.warm) + len(self.keys) + 1 <= limit
        with core._limiter(impl, limit) as h:
            h.run(self.warm)
            ns = core._timed(h, self.keys)
            core._expect(h.hit(HOT_KEY), expect, "hot key after the run")
        return {"ns": ns / len(self.keys)}

    def info(self) -> dict[str, Any]:
        return {"hits": len(self.keys), "warmup": len(self.warm), "window": WINDOW}


class AlgoKeys100k(Scenario):
    name = "keys100k"
    description = "distinct existing keys, round-robin; never blocked"

    def __init__(self, p: Params) -> None:
        super().__init__(p)
        self.distinct = core._prehashed([f"user:{i}" for i in range(p.n_keys)])
        self.keys = self.distinct * p.passes

    def sample(self, impl: Impl, repeat: int) -> Sample:
        limit = VARIANTS[impl.name].keys_limit
        assert limit is not None
        with core._limiter(impl, limit) as h:
            h.run(self.distinct)  # creates every key and warms up
            ns = core._timed(h, self.keys)
            core._expect(h.hit(self.distinct[0]), True, "first key after the run")
        return {"ns": ns / len(self.keys)}

    def info(self) -> dict[str, Any]:
        return {"keys": len(self.distinct), "passes": self.p.passes}


TIMED_SCENARIOS: dict[str, type[Scenario]] = {
    s.name: s for s in (AlgoHot, AlgoKeys100k)
}


def _add_vs(res: dict[str, Any], scenario: str) -> None:
    """Add each row's limit, ``vs`` and ``ratio_vs`` (median / median of vs)."""
    results = res["results"]
    for name, row in results.items():
        v = VARIANTS[name]
        row["limit"] = v.limit(scenario)
        row["vs"] = v.vs or None
        base = results.get(v.vs or name, {}).get("median_ns")
        row["ratio_vs"] = round(row["median_ns"] / base, 4) if base else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", default=",".join(VARIANTS), help="comma list")
    ap.add_argument("--scenarios", default=",".join(ALL_SCENARIOS), help="comma list")
    ap.add_argument("--repeats", type=int, help="repeats per scenario (default 7)")
    ap.add_argument("--quick", action="store_true", help="smaller, faster run")
    ap.add_argument("--memory-keys", type=int, help="keys for the memory scenario")
    ap.add_argument("--json", type=Path, help="write JSON here instead of stdout")
    ap.add_argument("--memory-child", metavar="IMPL", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    params = QUICK if args.quick else Params()
    if args.repeats is not None:
        params = replace(params, repeats=max(1, args.repeats))
    if args.memory_keys is not None:
        params = replace(params, memory_keys=max(1, args.memory_keys))

    if args.memory_child:
        impl = IMPLS[args.memory_child]
        print(json.dumps(core.memory_child(impl, params.memory_keys)))
        return 0

    problems: list[str] = []
    skipped: dict[str, str] = {}
    impls: list[Impl] = []
    for name in core._csv(args.impl, tuple(VARIANTS), "implementation"):
        reason = core._unavailable(IMPLS[name])
        if reason:
            skipped[name] = reason
            print(f"note: skipping {name}: {reason}", file=sys.stderr)
        else:
            impls.append(IMPLS[name])
    if BASELINE not in [i.name for i in impls]:
        print(f"note: no {BASELINE} baseline; ratios will be null", file=sys.stderr)

    out: dict[str, Any] = {
        "meta": {
            "suite": "algorithms",
            "python": sys.version.split()[0],
            "python_implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "params": asdict(params),
            "baseline": BASELINE,
            "impls": {i.name: core._version(i) for i in impls},
            "what": {i.name: VARIANTS[i.name].what for i in impls},
            "skipped": skipped,
            "problems": problems,
        },
        "scenarios": {},
    }
    for name in core._csv(args.scenarios, ALL_SCENARIOS, "scenario"):
        if not impls:
            break
        t0 = time.monotonic()
        print(f"{name} ...", file=sys.stderr)
        if name == "memory":
            script = Path(__file__).resolve()
            res = core.run_memory(
                impls, params.memory_keys, problems, script=script, baseline=BASELINE
            )
        else:
            these = [i for i in impls if VARIANTS[i.name].limit(name) is not None]
            scn = TIMED_SCENARIOS[name](params)
            res = core.run_timed(scn, these, params.repeats, problems, BASELINE)
            _add_vs(res, name)
            del scn
            gc.collect()
        out["scenarios"][name] = res
        core.log_summary(res, t0, "median_ns", "bytes_per_key")

    core.emit_json(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
