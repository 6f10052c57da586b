"""Every algorithm through the binding: reference models, threads, options."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rust_py_rate_limit import ManualClock, RateLimiter
from rust_py_rate_limit.types import AlgorithmName

S = 10**9
ALGORITHMS: list[AlgorithmName] = [
    "fixed",
    "sliding",
    "sliding_log",
    "token_bucket",
    "gcra",
]
History = list[tuple[int, int]]
Model = Callable[[History, int, int], bool]


# -- deliberately simple reference models: decide from the full history ----


def fixed_model(limit: int, window: int) -> Model:
    def admits(history: History, now: int, cost: int) -> bool:
        start, spent = None, 0
        for t, c in history:
            if start is None or t - start >= window:
                start, spent = t, 0
            spent += c
        if start is not None and now - start < window:
            return spent + cost <= limit
        return cost <= limit

    return admits


def log_model(limit: int, window: int) -> Model:
    def admits(history: History, now: int, cost: int) -> bool:
        return sum(c for t, c in history if now - t < window) + cost <= limit

    return admits


def sliding_model(limit: int, window: int) -> Model:
    def roll(
        state: tuple[int, int, int] | None, t: int
    ) -> tuple[int, int, int]:  # (start, curr, prev)
        if state is None:
            return (t, 0, 0)
        start, curr, _prev = state
        k = (t - start) // window
        if k == 0:
            return state
        if k == 1:
            return (start + window, 0, curr)
        return (t, 0, 0)

    def admits(history: History, now: int, cost: int) -> bool:
        state = None
        for t, c in history:
            start, curr, prev = roll(state, t)
            state = (start, curr + c, prev)
        start, curr, prev = roll(state, now)
        weight = Fraction(window - (now - start), window)
        return prev * weight + curr + cost <= limit

    return admits


def bucket_model(limit: int, window: int, burst: int) -> Model:
    rate = Fraction(limit, window)  # tokens per nanosecond

    def admits(history: History, now: int, cost: int) -> bool:
        tokens, at = Fraction(burst), None
        for t, c in history:
            if at is not None:
                tokens = min(Fraction(burst), tokens + rate * (t - at))
            tokens -= c
            at = t
        if at is not None:
            tokens = min(Fraction(burst), tokens + rate * (now - at))
        return tokens >= cost

    return admits


def model_for(algorithm: AlgorithmName, limit: int, window: int) -> Model:
    if algorithm == "fixed":
        return fixed_model(limit, window)
    if algorithm == "sliding":
        return sliding_model(limit, window)
    if algorithm == "sliding_log":
        return log_model(limit, window)
    return bucket_model(limit, window, limit)


steps_strategy = st.lists(
    st.tuples(
        st.one_of(st.just(0), st.integers(0, S // 2), st.integers(0, 4 * S)),
        st.integers(1, 5),
    ),
    min_size=1,
    max_size=60,
)


def drive(
    limiter: RateLimiter, clock: ManualClock, model: Model, steps: History
) -> None:
    now = 0
    history: History = []
    capacity = min(limit for limit, _ in limiter.limits)
    for dt, cost in steps:
        clock.advance(dt / 1e9)
        now += dt
        cost = min(cost, capacity)
        before = limiter.peek("k")
        decision = limiter.decide("k", cost)
        assert decision.allowed == model(history, now, cost), (now, cost)
        if decision.allowed:
            history.append((now, cost))
        else:
            assert limiter.peek("k") == before, "a refused hit changed state"
            assert decision.retry_after_ns > 0
            assert decision.retry_after_seconds >= 1


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=60, deadline=None)
@given(limit=st.integers(1, 10), window=st.integers(1, 5), steps=steps_strategy)
def test_matches_reference_model(
    algorithm: AlgorithmName, limit: int, window: int, steps: History
) -> None:
    clock = ManualClock()
    limiter = RateLimiter(limit, window, algorithm=algorithm, clock=clock)
    drive(limiter, clock, model_for(algorithm, limit, window * S), steps)


@pytest.mark.parametrize("algorithm", ["fixed", "sliding_log", "gcra"])
@settings(max_examples=60, deadline=None)
@given(
    l1=st.integers(1, 4),
    l2=st.integers(1, 10),
    steps=steps_strategy,
)
def test_compound_matches_all_models(
    algorithm: AlgorithmName, l1: int, l2: int, steps: History
) -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=f"{l1}/second;{l2}/5s", algorithm=algorithm, clock=clock)
    first = model_for(algorithm, l1, S)
    second = model_for(algorithm, l2, 5 * S)

    def both(history: History, now: int, cost: int) -> bool:
        return first(history, now, cost) and second(history, now, cost)

    drive(limiter, clock, both, steps)


# -- threads -----------------------------------------------------------------


@pytest.fixture
def tiny_switch_interval() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@pytest.mark.usefixtures("tiny_switch_interval")
@pytest.mark.parametrize(
    "options",
    [{"algorithm": a} for a in ALGORITHMS]
    + [
        {"rate": "10000/hour;20000/day"},
        {"rate": "10000/hour;10000/day", "algorithm": "gcra"},
    ],
    ids=[*ALGORITHMS, "compound-fixed", "compound-gcra"],
)
def test_eight_threads_admit_exactly_the_limit(options: dict[str, str]) -> None:
    # A frozen clock: no window ends and no token refills during the test.
    if "rate" in options:
        limiter = RateLimiter(clock=ManualClock(), **options)  # type: ignore[arg-type]
    else:
        limiter = RateLimiter(10_000, 3600, clock=ManualClock(), **options)  # type: ignore[arg-type]
    admitted = [0] * 8
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        allow = limiter.allow
        barrier.wait()
        admitted[i] = sum(allow("hot") for _ in range(5_000))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 10_000
    assert limiter.stats()["blocked"] == 30_000


# -- options -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("fixed", "fixed"),
        ("fixed_window", "fixed"),
        ("sliding", "sliding"),
        ("sliding_window", "sliding"),
        ("sliding_log", "sliding_log"),
        ("token_bucket", "token_bucket"),
        ("gcra", "gcra"),
        ("leaky_bucket", "gcra"),
    ],
)
def test_algorithm_names_and_aliases(name: str, canonical: str) -> None:
    limiter = RateLimiter(5, 60, algorithm=name)  # type: ignore[arg-type]
    assert limiter.algorithm == canonical
    assert f'algorithm="{canonical}"' in repr(limiter)


def test_unknown_algorithm_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="algorithm") as info:
        RateLimiter(5, 60, algorithm="leaky")  # type: ignore[arg-type]
    for name in ALGORITHMS:
        assert repr(name) in str(info.value)
    with pytest.raises(TypeError, match="algorithm"):
        RateLimiter(5, 60, algorithm=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rate", "limits"),
    [
        ("100/minute", [(100, 60)]),
        ("100 per minute", [(100, 60)]),
        ("10/30s", [(10, 30)]),
        ("5/5m", [(5, 300)]),
        ("1000/hour", [(1000, 3600)]),
        ("7 per 2 days", [(7, 172800)]),
        ("10/second;1000/hour", [(10, 1), (1000, 3600)]),
        (["10/second", "1000/hour"], [(10, 1), (1000, 3600)]),
        (("1/s",), [(1, 1)]),
    ],
)
def test_rate_strings(rate: str | list[str], limits: list[tuple[int, int]]) -> None:
    limiter = RateLimiter(rate=rate)
    assert limiter.limits == limits
    assert limiter.max_requests == limits[0][0]
    assert limiter.window_seconds == limits[0][1]


@pytest.mark.parametrize(
    ("rate", "needle"),
    [
        ("", "empty"),
        ("100", "'100'"),
        ("ten/second", "ten"),
        ("10/fortnight", "fortnight"),
        ("0/second", "0/second"),
        ("10/second;10/parsec", "parsec"),
        ([], "empty"),
    ],
)
def test_malformed_rates_name_the_bad_part(rate: str | list[str], needle: str) -> None:
    with pytest.raises(ValueError, match="rate") as info:
        RateLimiter(rate=rate)
    assert needle in str(info.value).replace('"', "'")


@pytest.mark.parametrize("rate", [10, None, [1], {"10/s"}])
def test_rate_of_wrong_type(rate: object) -> None:
    with pytest.raises(TypeError):
        RateLimiter(rate=rate)  # type: ignore[arg-type]


def test_rate_and_limit_together_is_an_error() -> None:
    with pytest.raises(TypeError, match="rate"):
        RateLimiter(10, 60, rate="10/minute")
    with pytest.raises(TypeError, match="window_seconds"):
        RateLimiter(10)
    with pytest.raises(TypeError, match="limit"):
        RateLimiter(window_seconds=10)


def test_burst() -> None:
    assert RateLimiter(10, 60, algorithm="token_bucket").burst == 10
    limiter = RateLimiter(10, 60, algorithm="token_bucket", burst=3)
    assert limiter.burst == 3
    assert repr(limiter).endswith("burst=3)")
    assert [limiter.allow("k") for _ in range(4)] == [True, True, True, False]
    assert RateLimiter(10, 60).burst is None
    # A burst above the limit is a bigger bucket, not an error.
    assert RateLimiter(1, 60, algorithm="gcra", burst=5).check("k", cost=5)["allowed"]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"algorithm": "fixed", "burst": 3}, ValueError),
        ({"algorithm": "sliding_log", "burst": 3}, ValueError),
        ({"algorithm": "gcra", "burst": 0}, ValueError),
        ({"algorithm": "gcra", "burst": 2**53}, ValueError),
        ({"algorithm": "gcra", "burst": 1.5}, TypeError),
        ({"algorithm": "gcra", "burst": True}, TypeError),
    ],
)
def test_bad_burst(options: dict[str, object], error: type) -> None:
    with pytest.raises(error, match="burst"):
        RateLimiter(10, 60, **options)  # type: ignore[arg-type]


def test_burst_with_compound_rate_is_an_error() -> None:
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(rate="1/s;10/m", algorithm="gcra", burst=2)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_cost_above_capacity_is_refused_and_changes_nothing(algorithm: str) -> None:
    limiter = RateLimiter(5, 60, algorithm=algorithm)  # type: ignore[arg-type]
    limiter.allow("k")
    with pytest.raises(ValueError, match="cost"):
        limiter.allow("k", cost=6)
    assert limiter.remaining("k") == 4
    assert limiter.stats()["total_checks"] == 1


def test_compound_capacity_is_the_smallest_limit() -> None:
    limiter = RateLimiter(rate="3/second;100/hour")
    with pytest.raises(ValueError, match="cost"):
        limiter.allow("k", cost=4)
    assert limiter.allow("k", cost=3)


def test_compound_refusal_spends_nothing(clock: ManualClock) -> None:
    limiter = RateLimiter(rate="2/second;3/minute", clock=clock)
    assert limiter.allow("k", cost=2)
    clock.advance(1)
    assert limiter.allow("k")
    blocked = limiter.check("k", cost=2)
    assert blocked["allowed"] is False
    assert blocked["limit"] == 3, "the hourly rule refused"
    assert blocked["retry_after_seconds"] == 59
    # Had the refusal spent the per-second rule, this hit would fail too.
    assert limiter.check("k", cost=1) == {
        "allowed": False,
        "limit": 3,
        "remaining": 0,
        "reset_after_seconds": 59,
        "retry_after_seconds": 59,
    }
    clock.advance(59)
    assert limiter.allow("k", cost=2)


def test_decision_object(clock: ManualClock) -> None:
    limiter = RateLimiter(1, 10, clock=clock)
    ok = limiter.decide("k")
    assert bool(ok) is True
    assert (ok.allowed, ok.limit, ok.remaining) == (True, 1, 0)
    assert (ok.reset_after, ok.retry_after) == (10.0, 0.0)
    clock.advance(2.5)
    no = limiter.decide("k")
    assert bool(no) is False
    assert (no.retry_after, no.retry_after_seconds, no.retry_after_ns) == (
        7.5,
        8,
        7_500_000_000,
    )
    assert no.to_dict() == {
        "allowed": False,
        "limit": 1,
        "remaining": 0,
        "reset_after_seconds": 8,
        "retry_after_seconds": 8,
    }
    assert repr(no) == (
        "Decision(allowed=False, limit=1, remaining=0, reset_after=7.5, "
        "retry_after=7.5)"
    )
    assert no == limiter.peek("k")
    assert no != ok
    assert no != "Decision"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_cleanup_expired_removes_only_idle_keys(
    algorithm: str, clock: ManualClock
) -> None:
    limiter = RateLimiter(2, 10, algorithm=algorithm, clock=clock)  # type: ignore[arg-type]
    limiter.allow("old")
    clock.advance(30)
    limiter.allow("new")
    assert limiter.cleanup_expired() == 1
    assert limiter.stats()["active_keys"] == 1
    assert limiter.remaining("new") == 1
