"""Prometheus metrics of every live `RateLimiter`, through prometheus-client.

``register()`` once per process is all it takes; then any of
prometheus-client's exposition helpers (``make_asgi_app``, ``make_wsgi_app``,
``generate_latest``) reports, per limiter (the ``limiter`` label is its
``name``; limiters sharing a name are summed), from the counters the Rust
core keeps anyway:

- ``rust_py_rate_limit_decisions_total{limiter, result}``: every decision
  once, ``result`` being ``admitted``, ``refused``, ``banned``, ``denied`` or
  ``shadow`` (admitted by shadow mode, though refused by the limit);
- ``rust_py_rate_limit_near_limit_total``: admissions with at least 80% of the
  limit spent (Envoy's ``NEAR_LIMIT_RATIO``);
- ``rust_py_rate_limit_storage_errors_total``, ``..._breaker_open`` (1 while
  the Redis circuit breaker is open) and, for Redis,
  ``..._storage_latency_seconds`` (a histogram of round trips);
- ``..._active_keys``, ``..._banned_keys`` (gauges), ``..._bans_total``,
  ``..._rejected_full_total``, ``..._expired_removed_total``,
  ``..._cleanup_runs_total``.

No label holds a key, so the number of series stays bounded by the number
of limiters. A limiter that is dropped leaves the output by itself.

Several worker processes (gunicorn, ``uvicorn --workers``): with
``PROMETHEUS_MULTIPROC_DIR`` set, prometheus-client's multiprocess mode
cannot use a collector, so ``register()`` instead mirrors the counters into
prometheus-client's own multiprocess values, from a daemon thread every
``interval`` seconds and at exit; a scrape of any worker through
``MultiProcessCollector`` then reports the sums over every worker (up to
``interval`` behind). Gunicorn needs the ``child_exit`` hook that
prometheus-client documents (``multiprocess.mark_process_dead(worker.pid)``)
so that the gauges of a dead worker leave the sums.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from rust_py_rate_limit._metrics import (
    BREAKER_HELP as _BREAKER_HELP,
)
from rust_py_rate_limit._metrics import (
    COUNTERS as _COUNTERS,
)
from rust_py_rate_limit._metrics import (
    DECISIONS_HELP as _DECISIONS_HELP,
)
from rust_py_rate_limit._metrics import (
    GAUGES as _GAUGES,
)
from rust_py_rate_limit._metrics import (
    LATENCY_HELP as _LATENCY_HELP,
)
from rust_py_rate_limit._metrics import (
    RESULTS,
    totals,
)
from rust_py_rate_limit._metrics import (
    Totals as _Totals,
)
from rust_py_rate_limit._native import LATENCY_BOUNDS
from rust_py_rate_limit.limiter import live_limiters

__all__ = ["PREFIX", "RateLimitCollector", "register", "scrape_registry"]

#: The prefix of every metric name.
PREFIX = "rust_py_rate_limit"


class RateLimitCollector(Collector):
    """A prometheus-client collector of every live limiter (see the module).

    Args:
        limiters: The limiters to report; None (default): every live one.
    """

    def __init__(self, limiters: Iterable[Any] | None = None) -> None:
        self._limiters = None if limiters is None else list(limiters)

    def collect(self) -> Iterator[Metric]:
        by_name = totals(self._limiters)
        decisions = CounterMetricFamily(
            f"{PREFIX}_decisions", _DECISIONS_HELP, labels=["limiter", "result"]
        )
        counters: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            key: CounterMetricFamily(f"{PREFIX}_{name}", text, labels=["limiter"])
            for key, name, text in _COUNTERS
        }
        gauges: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            key: GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=["limiter"])
            for key, name, text in _GAUGES
        }
        breaker = GaugeMetricFamily(
            f"{PREFIX}_breaker_open", _BREAKER_HELP, labels=["limiter"]
        )
        latency = HistogramMetricFamily(
            f"{PREFIX}_storage_latency_seconds", _LATENCY_HELP, labels=["limiter"]
        )
        for name, t in sorted(by_name.items()):
            for result, count in t.decisions.items():
                decisions.add_metric([name, result], count)
            for key, family in {**counters, **gauges}.items():
                family.add_metric([name], t.counters[key])
            breaker.add_metric([name], t.breaker_open)
            if t.latency is not None:
                bounds, counts, total = t.latency
                cumulative, running = [], 0
                for bound, count in zip(
                    [*map(_le, bounds), "+Inf"], counts, strict=True
                ):
                    running += count
                    cumulative.append((bound, running))
                latency.add_metric([name], cumulative, total)
        yield decisions
        yield from counters.values()
        yield from gauges.values()
        yield breaker
        yield latency

    def describe(self) -> Iterator[Metric]:
        # Nothing to describe up front: the registry then collects on demand
        # instead of at registration (when no limiter may exist yet).
        return iter(())


def _le(bound: float) -> str:
    return repr(float(bound))


class _Mirror:
    """Multiprocess mode: the counters copied into prometheus-client values
    (which write to ``PROMETHEUS_MULTIPROC_DIR``), each limiter's changes
    since the last copy, so a scrape of any worker sums every worker's."""

    def __init__(self, interval: float) -> None:
        # Not registered in a registry: in multiprocess mode the values go
        # to the directory's files, which MultiProcessCollector reads.
        kw: dict[str, Any] = {"registry": None}
        self.decisions = Counter(
            f"{PREFIX}_decisions", _DECISIONS_HELP, ["limiter", "result"], **kw
        )
        self.counters = {
            key: Counter(f"{PREFIX}_{name}", text, ["limiter"], **kw)
            for key, name, text in _COUNTERS
        }
        self.gauges = {
            key: Gauge(
                f"{PREFIX}_{name}", text, ["limiter"], multiprocess_mode="livesum", **kw
            )
            for key, name, text in _GAUGES
        }
        self.breaker = Gauge(
            f"{PREFIX}_breaker_open",
            _BREAKER_HELP,
            ["limiter"],
            multiprocess_mode="livemax",
            **kw,
        )
        self.latency = Histogram(
            f"{PREFIX}_storage_latency_seconds",
            _LATENCY_HELP,
            ["limiter"],
            buckets=(*LATENCY_BOUNDS, float("inf")),
            **kw,
        )
        # Per limiter, what was copied of each of its counters.
        self._seen: weakref.WeakKeyDictionary[Any, dict[tuple[str, ...], float]] = (
            weakref.WeakKeyDictionary()
        )
        self._names: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.interval = interval
        self._pid = os.getpid()
        self._thread: threading.Thread | None = None
        if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
            os.register_at_fork(after_in_child=self._forked)
        atexit.register(self.stop)

    def _forked(self) -> None:
        # A child's limiters start from the parent's counts, which the parent
        # copies (also those since its last copy): the child copies only
        # what it adds.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._pid = os.getpid()
        self._seen = weakref.WeakKeyDictionary()
        for limiter in live_limiters():
            self._seen[limiter] = _values(limiter.metrics())
        self.start()

    def sync(self) -> None:
        """Copies what each live limiter counted since the last copy."""
        with self._lock:
            gauges: dict[str, _Totals] = {}
            for limiter in live_limiters():
                m = limiter.metrics()
                name = m["name"]
                gauges.setdefault(name, _Totals()).add(m)
                seen = self._seen.setdefault(limiter, {})
                for counter, value in _values(m).items():
                    delta = value - seen.get(counter, 0)
                    seen[counter] = value
                    if delta > 0:
                        self._child(name, counter).inc(delta)
            for name, t in gauges.items():
                for key, gauge in self.gauges.items():
                    gauge.labels(name).set(t.counters[key])
                self.breaker.labels(name).set(t.breaker_open)
            # A name whose limiters are all gone leaves the live gauges.
            for name in self._names - gauges.keys():
                for gauge in (*self.gauges.values(), self.breaker):
                    gauge.remove(name)
            self._names = set(gauges)

    def _child(self, name: str, key: tuple[str, ...]) -> Any:
        """The prometheus-client value that counter `key` of `name` adds to."""
        kind = key[0]
        if kind == "d":
            return self.decisions.labels(name, key[1])
        if kind == "c":
            return self.counters[key[1]].labels(name)
        # Whole buckets at once, into prometheus-client's values of each
        # bucket and of the sum (observe() would take one call per trip).
        hist = self.latency.labels(name)
        return hist._sum if kind == "s" else hist._buckets[int(key[1])]

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="rust_py_rate_limit-prometheus", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sync()
            except Exception:  # never let the thread die
                logging.getLogger("rust_py_rate_limit").exception(
                    "copying the metrics for Prometheus failed"
                )

    def stop(self) -> None:
        """Stops the copying thread after a last copy (run at exit)."""
        self._stop.set()
        if os.getpid() == self._pid:
            self.sync()


def _values(m: Any) -> dict[tuple[str, ...], float]:
    """Every counter of one limiter's `metrics()`, by the key the mirror
    keeps it under."""
    values: dict[tuple[str, ...], float] = {
        ("d", result): m["decisions"][result] for result in RESULTS
    }
    for key, *_ in _COUNTERS:
        values[("c", key)] = m[key]
    lat = m["latency"]
    if lat is not None:
        for i, count in enumerate(lat["counts"]):
            values[("l", str(i))] = count
        values[("s",)] = lat["sum"]
    return values


_collectors: weakref.WeakKeyDictionary[CollectorRegistry, RateLimitCollector] = (
    weakref.WeakKeyDictionary()
)
_mirror: _Mirror | None = None
_register_lock = threading.Lock()


def register(
    registry: CollectorRegistry | None = None, *, interval: float = 1.0
) -> RateLimitCollector | _Mirror:
    """Reports every live limiter's metrics through prometheus-client.

    Without ``PROMETHEUS_MULTIPROC_DIR``: a `RateLimitCollector` joins
    ``registry`` (default: prometheus-client's global ``REGISTRY``), read at
    each scrape. With it: the counters are mirrored into multiprocess values
    every ``interval`` seconds (and at exit); serve them with
    prometheus-client's ``MultiProcessCollector``. Calling it again with the
    same registry returns what the first call made.

    Raises:
        TypeError: ``registry`` is not a ``CollectorRegistry``.
        ValueError: ``interval`` is not a positive number of seconds.
    """
    if registry is not None and not isinstance(registry, CollectorRegistry):
        raise TypeError(
            f"registry must be a prometheus_client CollectorRegistry, not "
            f"{type(registry).__name__}"
        )
    if isinstance(interval, bool) or not isinstance(interval, (int, float)):
        raise TypeError(f"interval must be a number, not {type(interval).__name__}")
    if not 0 < interval < float("inf"):
        raise ValueError(
            f"interval must be a positive number of seconds, got {interval}"
        )
    global _mirror
    target = REGISTRY if registry is None else registry
    with _register_lock:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # One mirror per process, whatever the registry: two would add
            # every count twice to the same multiprocess values.
            if _mirror is None:
                _mirror = _Mirror(float(interval))
                _mirror.start()
            return _mirror
        made = _collectors.get(target)
        if made is None:
            made = _collectors[target] = RateLimitCollector()
            target.register(made)
        return made


def scrape_registry() -> CollectorRegistry:
    """The registry a ``/metrics`` endpoint serves: prometheus-client's
    global ``REGISTRY``, or with ``PROMETHEUS_MULTIPROC_DIR`` set a fresh one
    holding a ``MultiProcessCollector`` (the sums over every worker), as
    prometheus-client's multiprocess documentation builds it."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry
