"""The figures every metrics exporter reports, summed by limiter name.

Shared by `rust_py_rate_limit.prometheus` and `rust_py_rate_limit.otel`: what
each counter is called and means, and the totals of the live limiters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rust_py_rate_limit.limiter import live_limiters

if TYPE_CHECKING:
    from rust_py_rate_limit.types import Metrics

__all__ = ["COUNTERS", "GAUGES", "RESULTS", "Totals", "totals"]

#: The values of the ``result`` label.
RESULTS = ("admitted", "refused", "banned", "denied", "shadow")
# Counters besides the decisions: (the metrics() key, the name, its help).
COUNTERS = (
    ("near_limit", "near_limit", "Admissions with at least 80% of the limit spent."),
    ("storage_errors", "storage_errors", "Failed storage operations."),
    ("bans", "bans", "Bans begun (ban_after or ban())."),
    ("rejected_full", "rejected_full", "New keys turned away by max_keys."),
    ("expired_removed", "expired_removed", "Expired keys removed by sweeps."),
    ("cleanup_runs", "cleanup_runs", "Sweeps of expired keys completed."),
)
GAUGES = (
    ("active_keys", "active_keys", "Keys holding state."),
    ("banned_keys", "banned_keys", "Keys banned now."),
)
DECISIONS_HELP = "Rate-limit decisions, by what the caller got."
LATENCY_HELP = "Round trips to the storage server."
BREAKER_HELP = "1 while the storage circuit breaker is open."


class Totals:
    """The metrics of one limiter name, summed over its limiters."""

    __slots__ = ("breaker_open", "counters", "decisions", "latency")

    def __init__(self) -> None:
        self.decisions = dict.fromkeys(RESULTS, 0)
        self.counters: dict[str, int] = {}
        self.breaker_open = 0
        self.latency: tuple[list[float], list[int], float] | None = None

    def add(self, m: Metrics) -> None:
        for result in RESULTS:
            self.decisions[result] += int(m["decisions"][result])  # type: ignore[literal-required]
        for key, *_ in (*COUNTERS, *GAUGES):
            value: Any = m[key]  # type: ignore[literal-required]
            self.counters[key] = self.counters.get(key, 0) + int(value)
        self.breaker_open = max(self.breaker_open, int(m["breaker"] == "open"))
        lat = m["latency"]
        if lat is not None:
            if self.latency is None:
                self.latency = (lat["bounds"], [0] * len(lat["counts"]), 0.0)
            bounds, counts, total = self.latency
            counts[:] = [a + b for a, b in zip(counts, lat["counts"], strict=True)]
            self.latency = (bounds, counts, total + lat["sum"])


def totals(limiters: Iterable[Any] | None = None) -> dict[str, Totals]:
    """The metrics of ``limiters`` (default: every live one), by name."""
    by_name: dict[str, Totals] = {}
    for limiter in live_limiters() if limiters is None else limiters:
        m = limiter.metrics()
        by_name.setdefault(m["name"], Totals()).add(m)
    return by_name
