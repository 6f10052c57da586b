"""Typed shapes of the dicts the limiter returns, for type checkers."""

from __future__ import annotations

from typing import Literal, TypeAlias, TypedDict

__all__ = ["AlgorithmName", "CheckResult", "Decisions", "Latency", "Metrics", "Stats"]

#: Every name ``RateLimiter(algorithm=...)`` accepts (canonical names and aliases).
AlgorithmName: TypeAlias = Literal[
    "fixed",
    "fixed_window",
    "sliding",
    "sliding_window",
    "sliding_log",
    "token_bucket",
    "gcra",
    "leaky_bucket",
]


class CheckResult(TypedDict):
    """What ``RateLimiter.check`` returns.

    Attributes:
        allowed: Whether the hit was admitted (and counted).
        limit: The limit per window.
        remaining: Units that can still be spent in the current window.
        reset_after_seconds: Whole seconds (rounded up) until the key's
            allowance is full again.
        retry_after_seconds: Whole seconds (rounded up) until a hit of the
            same cost can be admitted; 0 when allowed, never 0 when blocked.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after_seconds: int
    retry_after_seconds: int


class Stats(TypedDict):
    """What ``RateLimiter.stats`` returns.

    Attributes:
        allowed: Hits admitted.
        blocked: Hits refused.
        total_checks: ``allowed + blocked``.
        active_keys: Keys currently holding state.
        rejected_full: New keys refused (or admitted untracked) because
            ``max_keys`` keys were stored.
        expired_removed: Expired keys removed by sweeps so far (the janitor,
            ``cleanup_expired()``, or making room under ``max_keys``).
        cleanup_runs: Sweeps completed (janitor runs and
            ``cleanup_expired()`` calls).
        storage_errors: Failed storage operations (Redis only).
        breaker: The Redis circuit breaker, ``"closed"`` or ``"open"``
            (always ``"closed"`` for the memory store).
        bans: Bans begun (by ``ban_after`` or ``ban()``).
        banned_keys: Keys banned now.
        denied: Hits refused by the deny list.
        shadow_refused: Hits shadow mode admitted that would have been
            refused.
        local_cache_hits: Refusals answered from the Redis store's local
            over-limit cache, without a round trip (also in ``blocked``).
        events_dropped: Decision events dropped because the limiter's queue
            was full (see `rust_py_rate_limit.events`).
    """

    allowed: int
    blocked: int
    total_checks: int
    active_keys: int
    rejected_full: int
    expired_removed: int
    cleanup_runs: int
    storage_errors: int
    breaker: Literal["closed", "open"]
    bans: int
    banned_keys: int
    denied: int
    shadow_refused: int
    local_cache_hits: int
    events_dropped: int


class Decisions(TypedDict):
    """Every decision counted once, by what the caller got.

    Attributes:
        admitted: Admitted by the limit (or the allow list).
        refused: Refused by the limit.
        banned: Refused because the key was banned (the refusal that began
            the ban included).
        denied: Refused by the deny list.
        shadow: Admitted by shadow mode, though the limit (or a ban) would
            have refused them.
    """

    admitted: int
    refused: int
    banned: int
    denied: int
    shadow: int


class Latency(TypedDict):
    """Round trips to the storage server, in fixed buckets.

    Attributes:
        bounds: Upper bounds of the buckets, in seconds (a last bucket,
            unbounded, follows).
        counts: Round trips per bucket (not cumulative), one more than
            ``bounds``.
        sum: Their total duration, in seconds.
        count: How many.
    """

    bounds: list[float]
    counts: list[int]
    sum: float
    count: int


class Metrics(TypedDict):
    """What ``RateLimiter.metrics`` returns: what metrics export.

    Attributes:
        name: The limiter's name, the ``limiter`` label.
        algorithm: Its algorithm.
        storage: ``"memory"``, ``"redis"`` or ``"postgresql"``.
        decisions: Decisions by result (`Decisions`).
        near_limit: Admissions with at least 80% of the limit spent.
        storage_errors: As in `Stats`.
        breaker: As in `Stats`.
        active_keys: As in `Stats`.
        banned_keys: As in `Stats`.
        bans: As in `Stats`.
        rejected_full: As in `Stats`.
        expired_removed: As in `Stats`.
        cleanup_runs: As in `Stats`.
        latency: Storage round trips (None for the memory store).
    """

    name: str
    algorithm: str
    storage: str
    decisions: Decisions
    near_limit: int
    storage_errors: int
    breaker: Literal["closed", "open"]
    active_keys: int
    banned_keys: int
    bans: int
    rejected_full: int
    expired_removed: int
    cleanup_runs: int
    latency: Latency | None
