"""OpenTelemetry metrics of every live `RateLimiter`, on ``opentelemetry-api``.

``instrument()`` once per process creates observable instruments over the
counters the Rust core keeps (the same figures as
`rust_py_rate_limit.prometheus`), read when your SDK's reader collects:

- ``rust_py_rate_limit.decisions`` (counter, attributes ``limiter`` and
  ``result``: ``admitted``, ``refused``, ``banned``, ``denied``, ``shadow``);
- ``rust_py_rate_limit.near_limit``, ``.storage_errors``, ``.bans``,
  ``.rejected_full``, ``.expired_removed``, ``.cleanup_runs`` (counters);
- ``rust_py_rate_limit.active_keys``, ``.banned_keys``, ``.breaker_open``
  (gauges);
- ``rust_py_rate_limit.storage.duration.sum`` (s) and ``.count`` for Redis
  round trips: the API has no observable histogram.

Only the API is used: the SDK, exporters and the collector are yours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from rust_py_rate_limit._metrics import COUNTERS, DECISIONS_HELP, GAUGES, Totals, totals

__all__ = ["METER_NAME", "instrument"]

#: The name of the meter the instruments belong to.
METER_NAME = "rust_py_rate_limit"

Callback = Callable[[CallbackOptions], Iterable[Observation]]
_made: dict[int, list[Any]] = {}


def _observer(read: Callable[[str, Totals], Iterable[Observation]]) -> Callback:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        observed: list[Observation] = []
        for name, t in totals().items():
            observed.extend(read(name, t))
        return observed

    return callback


def _decisions(name: str, t: Totals) -> Iterable[Observation]:
    for result, count in t.decisions.items():
        yield Observation(count, {"limiter": name, "result": result})


def _field(key: str) -> Callable[[str, Totals], Iterable[Observation]]:
    def read(name: str, t: Totals) -> Iterable[Observation]:
        yield Observation(t.counters[key], {"limiter": name})

    return read


def _breaker(name: str, t: Totals) -> Iterable[Observation]:
    yield Observation(t.breaker_open, {"limiter": name})


def _latency(index: int) -> Callable[[str, Totals], Iterable[Observation]]:
    def read(name: str, t: Totals) -> Iterable[Observation]:
        if t.latency is not None:
            _, counts, total = t.latency
            yield Observation((total, sum(counts))[index], {"limiter": name})

    return read


def instrument(meter_provider: MeterProvider | None = None) -> list[Any]:
    """Creates the instruments (once per meter provider; a second call with
    the same provider returns the first call's instruments).

    Args:
        meter_provider: The provider to create them with; None (default):
            the global one, ``opentelemetry.metrics.get_meter_provider()``.

    Raises:
        TypeError: ``meter_provider`` is not a ``MeterProvider``.
    """
    if meter_provider is not None and not isinstance(meter_provider, MeterProvider):
        raise TypeError(
            "meter_provider must be an opentelemetry MeterProvider or None, "
            f"not {type(meter_provider).__name__}"
        )
    provider = meter_provider or metrics.get_meter_provider()
    made = _made.get(id(provider))
    if made is not None:
        return made
    meter = provider.get_meter(METER_NAME)
    prefix = METER_NAME
    made = [
        meter.create_observable_counter(
            f"{prefix}.decisions",
            [_observer(_decisions)],
            unit="{decision}",
            description=DECISIONS_HELP,
        )
    ]
    for key, name, text in COUNTERS:
        made.append(
            meter.create_observable_counter(
                f"{prefix}.{name}", [_observer(_field(key))], description=text
            )
        )
    for key, name, text in GAUGES:
        made.append(
            meter.create_observable_gauge(
                f"{prefix}.{name}", [_observer(_field(key))], description=text
            )
        )
    made.append(
        meter.create_observable_gauge(
            f"{prefix}.breaker_open",
            [_observer(_breaker)],
            description="1 while the storage circuit breaker is open.",
        )
    )
    latency = (
        ("sum", "s", "Total duration of round trips to the storage server."),
        ("count", "{round_trip}", "Round trips to the storage server."),
    )
    for index, (name, unit, text) in enumerate(latency):
        made.append(
            meter.create_observable_counter(
                f"{prefix}.storage.duration.{name}",
                [_observer(_latency(index))],
                unit=unit,
                description=text,
            )
        )
    _made[id(provider)] = made
    return made
