"""Limiter names, the core's counters (`metrics()`) and their Prometheus
export, in one process and across gunicorn workers (multiprocess mode)."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from gunicorn_server import EXAMPLES, gunicorn
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rust_py_rate_limit import ManualClock, RateLimiter
from rust_py_rate_limit._metrics import RESULTS
from rust_py_rate_limit._native import LATENCY_BOUNDS
from rust_py_rate_limit.prometheus import RateLimitCollector, register

ROOT = Path(__file__).resolve().parents[2]


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[Any, ...]], float]:
    """Every sample of a scrape, parsed by prometheus-client's own parser."""
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    scrape: dict[tuple[str, tuple[Any, ...]], float], name: str, **labels: str
) -> float:
    return scrape[(name, tuple(sorted(labels.items())))]


# -- names -------------------------------------------------------------------


def test_default_names_come_from_the_rules() -> None:
    assert RateLimiter(100, 60).name == "fixed:100/60s"
    compound = RateLimiter(rate="10/second;1000/hour", algorithm="sliding")
    assert compound.name == "sliding:10/1s;1000/3600s"
    assert RateLimiter(5, 1, "gcra", burst=2).name == "gcra:5/1s"
    assert "name=" not in repr(RateLimiter(100, 60))


def test_a_given_name_labels_the_limiter_and_its_repr() -> None:
    limiter = RateLimiter(3, 60, name="login")
    assert limiter.name == "login"
    assert limiter.metrics()["name"] == "login"
    assert repr(limiter).endswith(', name="login")')


@pytest.mark.parametrize(
    ("name", "error"),
    [
        (1, TypeError),
        (b"api", TypeError),
        ("", ValueError),
        ("a\nb", ValueError),
        ("x" * 201, ValueError),
    ],
)
def test_bad_names_are_refused_naming_the_argument(name: object, error: type) -> None:
    with pytest.raises(error, match="name"):
        RateLimiter(3, 60, name=name)  # type: ignore[arg-type]


# -- the counters ------------------------------------------------------------


def test_every_decision_is_counted_once_by_what_the_caller_got(
    clock: ManualClock,
) -> None:
    limiter = RateLimiter(
        5,
        60,
        clock=clock,
        ban_after=2,
        ban_within=60,
        ban_seconds=30,
        allow_keys=["vip"],
        deny_keys=["evil"],
    )
    hits = [limiter.allow("a") for _ in range(5)]  # admitted, the last 2 near
    hits += [limiter.allow("a"), limiter.allow("a")]  # refused; the 2nd begins a ban
    hits += [limiter.allow("a") for _ in range(3)]  # banned
    hits += [limiter.allow("vip"), limiter.allow("evil")]
    limiter.peek("evil")  # a peek counts nothing
    limiter.remaining("a")
    assert hits == [True] * 5 + [False] * 5 + [True, False]
    m = limiter.metrics()
    # The refusal that began the ban counts as the ban's (as on Redis).
    assert m["decisions"] == {
        "admitted": 6,
        "refused": 1,
        "banned": 4,
        "denied": 1,
        "shadow": 0,
    }
    decided: dict[str, int] = dict(m["decisions"])  # type: ignore[arg-type]
    assert sum(decided.values()) == len(hits)
    # 80% of 5 spent: the 4th and 5th admissions (remaining 1 and 0).
    assert m["near_limit"] == 2
    assert (m["bans"], m["banned_keys"], m["active_keys"]) == (1, 1, 1)
    assert (m["storage"], m["latency"], m["storage_errors"]) == ("memory", None, 0)


def test_shadow_mode_counts_what_it_waved_through(clock: ManualClock) -> None:
    limiter = RateLimiter(2, 60, clock=clock, shadow=True)
    assert [limiter.decide("k").allowed for _ in range(5)] == [True] * 5
    assert limiter.metrics()["decisions"] == {
        "admitted": 2,
        "refused": 0,
        "banned": 0,
        "denied": 0,
        "shadow": 3,
    }


def test_every_path_counts_the_same(clock: ManualClock) -> None:
    import asyncio

    limiter = RateLimiter(3, 60, clock=clock)
    limiter.allow("k")
    limiter.check("k")
    limiter.decide("k")
    assert asyncio.run(limiter.aallow("k")) is False
    assert limiter.metrics()["decisions"]["admitted"] == 3
    assert limiter.metrics()["decisions"]["refused"] == 1


def test_storage_errors_and_latency_against_redis(redis_url: str) -> None:
    up = RateLimiter(2, 60, storage=redis_url, name="redis-up")
    assert [up.allow("k") for _ in range(3)] == [True, True, False]
    m = up.metrics()
    assert m["decisions"]["admitted"] == 2
    # The third answer may come from the local over-limit cache: no trip.
    latency = m["latency"]
    assert latency is not None
    assert latency["bounds"] == LATENCY_BOUNDS
    assert len(latency["counts"]) == len(LATENCY_BOUNDS) + 1
    assert latency["count"] == sum(latency["counts"]) >= 2
    assert latency["sum"] > 0

    with socket_nobody_listens() as port:
        down = RateLimiter(
            2, 60, storage=f"redis://127.0.0.1:{port}", timeout=0.2, name="redis-down"
        )
        assert [down.allow("k") for _ in range(3)] == [True] * 3  # on_error="allow"
    m = down.metrics()
    assert m["storage_errors"] == 3
    assert m["decisions"]["admitted"] == 3  # the failure policy's answers


class socket_nobody_listens:
    """A loopback port bound but not listening: connections are refused."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        port: int = self.sock.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


# -- Prometheus --------------------------------------------------------------


def test_scrape_reports_exact_counts_per_limiter(clock: ManualClock) -> None:
    registry = CollectorRegistry()
    api = RateLimiter(3, 60, clock=clock, name="api")
    login = RateLimiter(1, 60, clock=clock, name="login", deny_keys=["evil"])
    registry.register(RateLimitCollector([api, login]))
    for _ in range(4):
        api.allow("a")
    login.allow("b")
    login.allow("b")
    login.allow("evil")
    scrape = samples(registry)
    total = "rust_py_rate_limit_decisions_total"
    assert value(scrape, total, limiter="api", result="admitted") == 3
    assert value(scrape, total, limiter="api", result="refused") == 1
    assert value(scrape, total, limiter="login", result="refused") == 1
    assert value(scrape, total, limiter="login", result="denied") == 1
    assert value(scrape, "rust_py_rate_limit_near_limit_total", limiter="api") == 1
    assert value(scrape, "rust_py_rate_limit_active_keys", limiter="api") == 1
    assert value(scrape, "rust_py_rate_limit_breaker_open", limiter="api") == 0
    for name, labels in scrape:
        assert dict(labels).keys() <= {"limiter", "result", "le"}, name


def test_scrape_reports_bans_and_shadow(clock: ManualClock) -> None:
    registry = CollectorRegistry()
    banning = RateLimiter(1, 60, clock=clock, name="ban", ban_after=1, ban_seconds=60)
    shadow = RateLimiter(1, 60, clock=clock, name="shadow", shadow=True)
    registry.register(RateLimitCollector([banning, shadow]))
    for _ in range(4):
        banning.allow("k")  # admitted, refused (beginning the ban), banned x2
        shadow.allow("k")  # admitted, then shadow-admitted x3
    scrape = samples(registry)
    total = "rust_py_rate_limit_decisions_total"
    assert value(scrape, total, limiter="ban", result="refused") == 0
    assert value(scrape, total, limiter="ban", result="banned") == 3
    assert value(scrape, "rust_py_rate_limit_bans_total", limiter="ban") == 1
    assert value(scrape, "rust_py_rate_limit_banned_keys", limiter="ban") == 1
    assert value(scrape, total, limiter="shadow", result="admitted") == 1
    assert value(scrape, total, limiter="shadow", result="shadow") == 3


def test_limiters_sharing_a_name_are_summed_and_dropped_ones_leave() -> None:
    registry = CollectorRegistry()
    registry.register(RateLimitCollector())
    first = RateLimiter(10, 60, name="shared-name-test")
    second = RateLimiter(10, 60, name="shared-name-test")
    first.allow("a")
    second.allow("b")
    second.allow("c")
    total = "rust_py_rate_limit_decisions_total"
    scrape = samples(registry)
    assert value(scrape, total, limiter="shared-name-test", result="admitted") == 3
    del first, second
    gc.collect()
    scrape = samples(registry)
    assert not [k for k in scrape if ("limiter", "shared-name-test") in k[1]]


def test_redis_latency_is_a_prometheus_histogram(redis_url: str) -> None:
    registry = CollectorRegistry()
    limiter = RateLimiter(5, 60, storage=redis_url, name="hist")
    registry.register(RateLimitCollector([limiter]))
    for _ in range(4):
        limiter.allow("h")
    scrape = samples(registry)
    name = "rust_py_rate_limit_storage_latency_seconds"
    assert value(scrape, f"{name}_count", limiter="hist") == 4
    assert value(scrape, f"{name}_bucket", limiter="hist", le="+Inf") == 4
    buckets = [
        value(scrape, f"{name}_bucket", limiter="hist", le=repr(float(b)))
        for b in LATENCY_BOUNDS
    ]
    assert buckets == sorted(buckets), "cumulative"
    assert value(scrape, f"{name}_sum", limiter="hist") > 0


def test_register_is_idempotent_and_checks_its_arguments() -> None:
    registry = CollectorRegistry()
    assert register(registry) is register(registry)
    with pytest.raises(TypeError, match="registry"):
        register("registry")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval"):
        register(CollectorRegistry(), interval=0)
    with pytest.raises(TypeError, match="interval"):
        register(CollectorRegistry(), interval="1")  # type: ignore[arg-type]
    assert set(RESULTS) == set(RateLimiter(1, 1).metrics()["decisions"])


def test_fastapi_example_serves_metrics() -> None:
    import runpy

    from fastapi.testclient import TestClient

    example = runpy.run_path(str(ROOT / "examples" / "metrics_fastapi.py"))
    client = TestClient(example["app"])
    codes = [client.get("/hello").status_code for _ in range(7)]
    assert codes == [200] * 5 + [429] * 2
    text = client.get("/metrics").text  # exempt: never limited
    found = {
        s.labels["result"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "rust_py_rate_limit_decisions_total"
        and s.labels["limiter"] == "api"
    }
    assert (found["admitted"], found["refused"]) == (5, 2)


# -- several workers ---------------------------------------------------------


@pytest.fixture
def gunicorn_metrics(tmp_path: Path) -> Iterator[str]:
    """examples/metrics_flask.py under gunicorn, 3 workers, multiprocess
    mode; stopped (and its workers) whatever happens."""
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    with gunicorn(
        tmp_path / "gunicorn.log",
        "metrics_flask:app",
        "--config", str(EXAMPLES / "gunicorn_metrics.py"),
        "--workers", "3",
        ready="/metrics",
        env={"PROMETHEUS_MULTIPROC_DIR": str(prom_dir), "METRICS_INTERVAL": "0.1"},
    ) as base:  # fmt: skip
        yield base


def test_gunicorn_workers_report_their_sums(gunicorn_metrics: str) -> None:
    base = gunicorn_metrics
    sent = 40
    with httpx2.Client() as client:
        codes = [client.get(f"{base}/hello").status_code for _ in range(sent)]
    assert set(codes) <= {200, 429}
    admitted = codes.count(200)
    # Each worker mirrors its counters every 0.1 s: poll (real time is the
    # subject here) until the sums over the 3 workers have caught up.
    deadline = time.monotonic() + 15
    while True:
        text = httpx2.get(f"{base}/metrics", timeout=2).text
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "rust_py_rate_limit_decisions_total":
                    assert s.labels["limiter"] == "hello"
                    totals[s.labels["result"]] = (
                        totals.get(s.labels["result"], 0) + s.value
                    )
        if sum(totals.values()) >= sent or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sum(totals.values()) == sent
    assert totals["admitted"] == admitted
    assert totals["refused"] == sent - admitted
    assert 5 <= admitted <= 15, "each worker admits 5 on its own limiter"


# -- OpenTelemetry -----------------------------------------------------------


def test_opentelemetry_observes_the_same_counts(clock: ManualClock) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from rust_py_rate_limit.otel import METER_NAME, instrument

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    made = instrument(provider)
    assert instrument(provider) is made
    limiter = RateLimiter(2, 60, clock=clock, name="otel-test", deny_keys=["evil"])
    for _ in range(3):
        limiter.allow("k")
    limiter.allow("evil")
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[tuple[str, tuple[Any, ...]], float] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == METER_NAME
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    labels = tuple(sorted((point.attributes or {}).items()))
                    points[(metric.name, labels)] = point.value  # type: ignore[union-attr]

    def at(name: str, **labels: str) -> float:
        return points[(f"{METER_NAME}.{name}", tuple(sorted(labels.items())))]

    assert at("decisions", limiter="otel-test", result="admitted") == 2
    assert at("decisions", limiter="otel-test", result="refused") == 1
    assert at("decisions", limiter="otel-test", result="denied") == 1
    assert at("near_limit", limiter="otel-test") == 1
    assert at("active_keys", limiter="otel-test") == 1
    assert at("breaker_open", limiter="otel-test") == 0
    with pytest.raises(TypeError, match="meter_provider"):
        instrument("provider")  # type: ignore[arg-type]


def test_shadow_mode_with_bans_counts_each_decision_once(clock: ManualClock) -> None:
    limiter = RateLimiter(1, 60, clock=clock, ban_after=2, ban_seconds=100, shadow=True)
    assert all(limiter.decide("k").allowed for _ in range(4))
    decided = limiter.metrics()["decisions"]
    assert decided == {
        "admitted": 1,
        "refused": 0,
        "banned": 0,
        "denied": 0,
        "shadow": 3,
    }
    assert limiter.stats()["shadow_refused"] == 3


def test_a_listed_hit_with_a_bad_cost_counts_nothing() -> None:
    limiter = RateLimiter(2, 60, allow_keys=["vip"], deny_keys=["evil"])
    for key in ("vip", "evil"):
        with pytest.raises(ValueError, match="cost"):
            limiter.allow(key, cost=5)
        with pytest.raises(ValueError, match="cost"):
            limiter.decide(key, cost=5)
    decided = limiter.metrics()["decisions"]
    assert (decided["admitted"], decided["denied"]) == (0, 0)
