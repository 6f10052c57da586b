"""Code written for 0.3.1 runs unchanged: its README's snippets for the core
and the decorator, and what 0.3.1 did (observed with the published wheel)
that its README does not spell out: the repr, ``stats_json()``, ``hello()``,
the exception's signature and message, and ``on_blocked``'s arguments."""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import json
import pickle
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

import rust_py_rate_limit
from rust_py_rate_limit import ManualClock, RateLimiter, RateLimitExceeded, rate_limit

STATS_031 = ["allowed", "blocked", "total_checks", "active_keys", "rejected_full"]
CHECK_031 = [
    "allowed",
    "limit",
    "remaining",
    "reset_after_seconds",
    "retry_after_seconds",
]
POSITIONAL_031 = [
    "limit",
    "window_seconds",
    "algorithm",
    "max_keys",
    "cleanup_interval",
]


# -- the package --------------------------------------------------------------


def test_everything_031_exported_is_still_exported() -> None:
    for name in ["RateLimiter", "RateLimitExceeded", "rate_limit", "hello"]:
        assert name in rust_py_rate_limit.__all__
        assert getattr(rust_py_rate_limit, name) is not None
    assert "__version__" in rust_py_rate_limit.__all__


def test_hello_says_what_031_said() -> None:
    assert rust_py_rate_limit.hello() == (
        "Hello from rust-py-rate-limit! "
        "Fast local rate limiting for Python, powered by Rust."
    )


def test_version_has_one_source_the_crate() -> None:
    cargo = (Path(__file__).resolve().parents[2] / "Cargo.toml").read_text()
    package = cargo.split("[package]", 1)[1].split("\n[", 1)[0]
    match = re.search(r'^version = "([^"]+)"$', package, flags=re.M)
    assert match is not None
    assert rust_py_rate_limit.__version__ == match.group(1)
    assert importlib.metadata.version("rust-py-rate-limit") == match.group(1)


# -- README 0.3.1: Quick start, Sliding Window, API reference ------------------


def test_quick_start_snippet() -> None:
    limiter = RateLimiter(limit=3, window_seconds=60)
    assert limiter.allow("ip:127.0.0.1") is True
    assert limiter.allow("ip:127.0.0.1") is True
    assert limiter.allow("ip:127.0.0.1") is True
    assert limiter.allow("ip:127.0.0.1") is False


def test_sliding_snippet() -> None:
    limiter = RateLimiter(limit=100, window_seconds=60, algorithm="sliding")
    assert limiter.algorithm == "sliding"


def test_api_reference_positional_form() -> None:
    limiter = RateLimiter(100, 60, "sliding", 10_000, 60.0)
    with limiter:
        assert limiter.max_requests == 100
        assert limiter.window_seconds == 60
        assert limiter.algorithm == "sliding"
        assert limiter.max_keys == 10_000
        assert limiter.cleanup_interval == 60.0
        assert limiter.cleanup_running
    assert not limiter.cleanup_running


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((5, 60, "sliding"), ("sliding", None, None)),
        ((5, 60, "fixed", 7), ("fixed", 7, None)),
        ((5, 60, "fixed", None, 30), ("fixed", None, 30.0)),
    ],
)
def test_every_prefix_of_the_positional_form(
    args: tuple[Any, ...], expected: tuple[Any, ...]
) -> None:
    limiter = RateLimiter(*args)
    with limiter:
        assert (limiter.algorithm, limiter.max_keys, limiter.cleanup_interval) == (
            expected
        )


def test_the_signature_takes_0_3_1_positionals_and_the_rest_by_keyword() -> None:
    parameters = list(inspect.signature(RateLimiter).parameters.values())
    assert [p.name for p in parameters[:5]] == POSITIONAL_031
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in parameters[:5])
    assert all(p.kind is p.KEYWORD_ONLY for p in parameters[5:])
    assert {"rate", "burst", "clock", "on_full", "storage"} <= {
        p.name for p in parameters[5:]
    }


def test_a_sixth_positional_argument_names_the_five() -> None:
    with pytest.raises(TypeError) as info:
        RateLimiter(5, 60, "fixed", None, None, "5/minute")  # type: ignore[call-arg]
    assert str(info.value) == (
        "RateLimiter() takes at most 5 positional arguments (limit, window_seconds,"
        " algorithm, max_keys, cleanup_interval) but 6 were given; pass the others"
        " by keyword"
    )


def test_an_argument_given_by_position_and_by_keyword() -> None:
    with pytest.raises(
        TypeError,
        match=r"^RateLimiter\(\) got multiple values for argument 'algorithm'",
    ):
        RateLimiter(5, 60, "fixed", algorithm="sliding")  # type: ignore[misc]

    class Mine(RateLimiter):
        __slots__ = ()

    with pytest.raises(TypeError, match=r"^Mine\(\) got multiple values .*'max_keys'"):
        Mine(5, 60, "fixed", 10, max_keys=10)  # type: ignore[misc]


def test_api_reference_refusals() -> None:
    for bad in (0, -1):
        with pytest.raises(ValueError, match="limit"):
            RateLimiter(bad, 60)
        with pytest.raises(ValueError, match="window_seconds"):
            RateLimiter(5, bad)
    with pytest.raises(ValueError, match="algorithm"):
        RateLimiter(5, 60, "leaky")  # type: ignore[arg-type]


def test_api_reference_methods() -> None:
    limiter = RateLimiter(2, 60)
    assert limiter.allow("k") is True
    assert limiter.remaining("k") == 1
    assert limiter.reset("k") is True
    assert limiter.reset("k") is False
    limiter.allow("a")
    limiter.clear()
    assert limiter.stats()["active_keys"] == 0
    assert limiter.cleanup_expired() == 0


def test_check_return_value(clock: ManualClock) -> None:
    limiter = RateLimiter(100, 60, "fixed", 1_000, clock=clock)
    allowed = limiter.check("k")
    assert list(allowed) == CHECK_031, "0.3.1's keys in 0.3.1's order"
    assert allowed == dict(zip(CHECK_031, [True, 100, 99, 60, 0], strict=True))
    for _ in range(99):
        limiter.allow("k")
    clock.advance(18)
    blocked = limiter.check("k")
    assert blocked == dict(zip(CHECK_031, [False, 100, 0, 42, 42], strict=True))


# -- README 0.3.1: Decorator ---------------------------------------------------


@pytest.mark.parametrize(
    ("key", "refused"),
    [("login", "login"), (lambda user_id: f"user:{user_id}", "user:1")],
    ids=["key string", "callable key"],
)
def test_decorator_snippets(key: Any, refused: str) -> None:
    limiter = RateLimiter(limit=5, window_seconds=60)
    calls: list[int] = []

    @limiter.limit(key)
    def fetch(user_id: int) -> str:
        calls.append(user_id)
        return "ok"

    assert [fetch(1) for _ in range(5)] == ["ok"] * 5
    with pytest.raises(RateLimitExceeded) as info:
        fetch(1)
    assert (info.value.key, info.value.limit, info.value.retry_after) == (
        refused,
        5,
        60,
    )
    assert str(info.value) == (
        f"Rate limit exceeded for key={refused!r} (limit=5); retry after 60s"
    )
    assert calls == [1] * 5, "a refused call never runs the function"


def test_on_blocked_is_called_with_the_function_arguments() -> None:
    limiter = RateLimiter(limit=1, window_seconds=60)
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def fallback(*args: Any, **kwargs: Any) -> str:
        seen.append((args, kwargs))
        return "cached"

    @limiter.limit(lambda user_id, **_: f"user:{user_id}", on_blocked=fallback)
    def fetch(user_id: int, *, fresh: bool = False) -> str:
        return "fresh"

    assert fetch(7, fresh=True) == "fresh"
    assert fetch(7, fresh=True) == "cached"
    assert seen == [((7,), {"fresh": True})]


def test_on_blocked_of_the_module_level_decorator() -> None:
    limiter = RateLimiter(limit=1, window_seconds=60)

    @rate_limit(limiter, "job", on_blocked=lambda n: f"skipped {n}")
    def job(n: int) -> str:
        return f"ran {n}"

    assert [job(1), job(2)] == ["ran 1", "skipped 2"]


def test_on_blocked_on_a_coroutine_function() -> None:
    limiter = RateLimiter(limit=1, window_seconds=60)

    async def later(user_id: int) -> str:
        return f"later {user_id}"

    @limiter.limit("a", on_blocked=lambda user_id: f"busy {user_id}")
    async def plain(user_id: int) -> str:
        return f"fresh {user_id}"

    @limiter.limit("b", on_blocked=later)
    async def awaited(user_id: int) -> str:
        return f"fresh {user_id}"

    async def main() -> list[str]:
        return [await plain(1), await plain(2), await awaited(3), await awaited(4)]

    assert asyncio.run(main()) == ["fresh 1", "busy 2", "fresh 3", "later 4"]


def test_on_refused_gets_the_refusal_and_excludes_on_blocked() -> None:
    limiter = RateLimiter(limit=1, window_seconds=60)

    @limiter.limit("k", on_refused=lambda exc: (exc.key, exc.retry_after))
    def job(n: int) -> object:
        return n

    assert (job(1), job(2)) == (1, ("k", 60))
    with pytest.raises(ValueError, match=r"on_blocked or on_refused, not both"):
        limiter.limit("k", on_blocked=lambda: 1, on_refused=lambda exc: 2)


def test_exception_signature_and_message() -> None:
    exc = RateLimitExceeded("k", limit=5, retry_after=3)
    assert str(exc) == "Rate limit exceeded for key='k' (limit=5); retry after 3s"
    assert (exc.key, exc.limit, exc.retry_after) == ("k", 5, 3)
    assert str(RateLimitExceeded("k")) == "Rate limit exceeded for key='k'"
    assert str(RateLimitExceeded("k", limit=5)) == (
        "Rate limit exceeded for key='k' (limit=5)"
    )
    assert str(RateLimitExceeded("k", retry_after=2)) == (
        "Rate limit exceeded for key='k'; retry after 2s"
    )
    with pytest.raises(TypeError):
        RateLimitExceeded("k", 5, 3)  # type: ignore[call-arg]
    # Unlike 0.3.1's, a pickled one comes back whole.
    again = pickle.loads(pickle.dumps(exc))
    assert (again.key, again.limit, again.retry_after, str(again)) == (
        "k",
        5,
        3,
        str(exc),
    )


# -- README 0.3.1: Bounded memory, Statistics ----------------------------------


def test_bounded_memory_snippet() -> None:
    limiter = RateLimiter(
        limit=100,
        window_seconds=60,
        max_keys=100_000,
        cleanup_interval=60,
    )
    with limiter:
        assert limiter.max_keys == 100_000
        assert limiter.cleanup_interval == 60
        assert limiter.cleanup_running


def test_a_full_store_refuses_new_keys_and_counts_them() -> None:
    limiter = RateLimiter(3, 60, max_keys=10)
    for i in range(12):
        limiter.allow(f"k{i}")
    stats = limiter.stats()
    assert {name: stats[name] for name in STATS_031} == {  # type: ignore[literal-required]
        "allowed": 10,
        "blocked": 2,
        "total_checks": 12,
        "active_keys": 10,
        "rejected_full": 2,
    }
    refused = limiter.check("new")
    assert (refused["allowed"], refused["retry_after_seconds"]) == (False, 60)
    assert limiter.allow("k0"), "a tracked key is never evicted"
    assert limiter.stats()["rejected_full"] == 3


def test_statistics_keys_start_with_0_3_1s() -> None:
    assert list(RateLimiter(3, 60).stats())[:5] == STATS_031


def test_stats_json_is_compact_json_of_stats() -> None:
    limiter = RateLimiter(3, 60)
    assert limiter.stats_json().startswith(
        '{"allowed":0,"blocked":0,"total_checks":0,"active_keys":0,"rejected_full":0,'
    )
    for _ in range(4):
        limiter.allow("k")
    text = limiter.stats_json()
    assert " " not in text
    assert text == json.dumps(limiter.stats(), separators=(",", ":"))
    assert list(json.loads(text)) == list(limiter.stats())
    assert json.loads(text)["blocked"] == 1


def test_stats_json_on_a_redis_store(redis_url: str) -> None:
    prefix = f"compat-{uuid.uuid4().hex[:12]}"
    limiter = RateLimiter(2, 60, storage=redis_url, key_prefix=prefix)
    try:
        assert [limiter.allow("k") for _ in range(3)] == [True, True, False]
        stats = json.loads(limiter.stats_json())
        assert (stats["allowed"], stats["blocked"]) == (2, 1)
        assert stats["breaker"] == "closed"
    finally:
        limiter.clear()


# -- repr ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limiter", "text"),
    [
        (
            lambda: RateLimiter(3, 60),
            'RateLimiter(limit=3, window_seconds=60, algorithm="fixed")',
        ),
        (
            lambda: RateLimiter(3, 60, "sliding", 10, 5.0),
            'RateLimiter(limit=3, window_seconds=60, algorithm="sliding", '
            "max_keys=10, cleanup_interval=5)",
        ),
        (
            lambda: RateLimiter(3, 60, cleanup_interval=0.5),
            'RateLimiter(limit=3, window_seconds=60, algorithm="fixed", '
            "cleanup_interval=0.5)",
        ),
        (
            lambda: RateLimiter(3, 60, max_keys=1),
            'RateLimiter(limit=3, window_seconds=60, algorithm="fixed", max_keys=1)',
        ),
    ],
)
def test_repr_is_0_3_1s(limiter: Any, text: str) -> None:
    with limiter() as made:
        assert repr(made) == text


def test_repr_adds_the_newer_options_after_0_3_1s() -> None:
    bucket = RateLimiter(10, 60, "token_bucket", 100, burst=3, on_full="allow")
    assert repr(bucket) == (
        'RateLimiter(limit=10, window_seconds=60, algorithm="token_bucket", '
        'max_keys=100, on_full="allow", burst=3)'
    )
    assert repr(RateLimiter(rate="2/second;100/hour")) == (
        'RateLimiter(rate="2/1s;100/3600s", algorithm="fixed")'
    )
    remote = RateLimiter(5, 60, storage="redis://:s3cret@127.0.0.1:1/2")
    assert repr(remote) == (
        'RateLimiter(limit=5, window_seconds=60, algorithm="fixed", '
        'storage="redis://:***@127.0.0.1:1/2")'
    )


def test_repr_of_a_subclass_names_the_class_0_3_1_named() -> None:
    class Mine(RateLimiter):
        __slots__ = ()

    assert repr(Mine(1, 2)) == (
        'RateLimiter(limit=1, window_seconds=2, algorithm="fixed")'
    )
