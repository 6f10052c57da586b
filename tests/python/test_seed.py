"""The seed README's Quick start and API reference, as written."""

from __future__ import annotations

from rust_py_rate_limit import ManualClock, RateLimiter


def test_intro_snippet(capsys: object) -> None:
    limiter = RateLimiter(limit=10, window_seconds=60)

    if limiter.allow("user:123"):
        print("allowed")
    else:
        print("blocked")

    assert limiter.remaining("user:123") == 9


def test_quick_start() -> None:
    limiter = RateLimiter(limit=3, window_seconds=60)

    assert limiter.allow("ip:127.0.0.1") is True
    assert limiter.allow("ip:127.0.0.1") is True
    assert limiter.allow("ip:127.0.0.1") is True
    assert limiter.allow("ip:127.0.0.1") is False  # limit reached


def test_fixed_window_timeline(clock: ManualClock) -> None:
    limiter = RateLimiter(limit=3, window_seconds=60, clock=clock)
    results = [limiter.allow("user:1") for _ in range(4)]
    assert results == [True, True, True, False]
    clock.advance(60)
    assert limiter.allow("user:1") is True  # new window


def test_check_allowed_payload() -> None:
    limiter = RateLimiter(limit=100, window_seconds=60)
    assert limiter.check("k") == {
        "allowed": True,
        "limit": 100,
        "remaining": 99,
        "reset_after_seconds": 60,
        "retry_after_seconds": 0,
    }


def test_check_blocked_payload(clock: ManualClock) -> None:
    limiter = RateLimiter(limit=100, window_seconds=60, clock=clock)
    for _ in range(100):
        assert limiter.allow("k")
    clock.advance(18)
    result = limiter.check("k")
    assert type(result) is dict
    assert result == {
        "allowed": False,
        "limit": 100,
        "remaining": 0,
        "reset_after_seconds": 42,
        "retry_after_seconds": 42,
    }


def test_check_rounds_seconds_up_and_never_reports_zero_while_blocked(
    clock: ManualClock,
) -> None:
    limiter = RateLimiter(limit=1, window_seconds=60, clock=clock)
    limiter.allow("k")
    clock.advance(59.999)
    result = limiter.check("k")
    assert result["allowed"] is False
    assert result["retry_after_seconds"] == 1
    assert result["reset_after_seconds"] == 1
    clock.advance(0.0005)
    assert limiter.check("k")["retry_after_seconds"] == 1
    clock.advance(0.0005)
    assert limiter.check("k")["allowed"] is True


def test_remaining_does_not_consume() -> None:
    limiter = RateLimiter(limit=5, window_seconds=60)
    assert limiter.remaining("new") == 5
    limiter.allow("k")
    assert [limiter.remaining("k") for _ in range(10)] == [4] * 10
    assert limiter.stats()["total_checks"] == 1
    assert limiter.stats()["active_keys"] == 1


def test_reset_returns_true_then_false() -> None:
    limiter = RateLimiter(limit=1, window_seconds=60)
    assert limiter.reset("k") is False
    limiter.allow("k")
    assert limiter.allow("k") is False
    assert limiter.reset("k") is True
    assert limiter.reset("k") is False
    assert limiter.allow("k") is True


def test_clear_drops_all_keys() -> None:
    limiter = RateLimiter(limit=1, window_seconds=60)
    for key in ("a", "b", "c"):
        limiter.allow(key)
    limiter.clear()
    assert limiter.stats()["active_keys"] == 0
    assert all(limiter.allow(key) for key in ("a", "b", "c"))


def test_stats_counts() -> None:
    limiter = RateLimiter(limit=2, window_seconds=60)
    for _ in range(5):
        limiter.allow("a")
    limiter.check("b")
    assert limiter.stats() == {
        "allowed": 3,
        "blocked": 3,
        "total_checks": 6,
        "active_keys": 2,
        "rejected_full": 0,
        "expired_removed": 0,
        "cleanup_runs": 0,
        "storage_errors": 0,
        "breaker": "closed",
        "bans": 0,
        "banned_keys": 0,
        "denied": 0,
        "shadow_refused": 0,
        "local_cache_hits": 0,
        "events_dropped": 0,
    }


def test_cleanup_expired_with_manual_clock(clock: ManualClock) -> None:
    limiter = RateLimiter(limit=10, window_seconds=60, clock=clock)
    limiter.allow("old")
    clock.advance(30)
    limiter.allow("young")
    clock.advance(29.5)
    assert limiter.cleanup_expired() == 0
    clock.advance(0.5)
    assert limiter.cleanup_expired() == 1
    assert limiter.stats()["active_keys"] == 1
    assert limiter.remaining("young") == 9
    clock.advance(30)
    assert limiter.cleanup_expired() == 1
    assert limiter.stats()["active_keys"] == 0


def test_properties() -> None:
    limiter = RateLimiter(limit=100, window_seconds=60)
    assert limiter.max_requests == 100
    assert limiter.window_seconds == 60
    assert limiter.algorithm == "fixed"
    assert repr(limiter) == (
        'RateLimiter(limit=100, window_seconds=60, algorithm="fixed")'
    )


def test_properties_are_read_only() -> None:
    limiter = RateLimiter(limit=100, window_seconds=60)
    for name in ("max_requests", "window_seconds", "algorithm"):
        try:
            setattr(limiter, name, 1)
        except AttributeError:
            continue
        raise AssertionError(f"{name} is writable")


def test_cost_spends_units(clock: ManualClock) -> None:
    limiter = RateLimiter(limit=10, window_seconds=60, clock=clock)
    assert limiter.check("k", cost=7)["remaining"] == 3
    assert limiter.allow("k", cost=4) is False
    assert limiter.remaining("k") == 3, "a refused hit spends nothing"
    assert limiter.allow("k", 3) is True
    assert limiter.remaining("k") == 0


def test_blocked_check_with_cost_reports_true_remaining(clock: ManualClock) -> None:
    limiter = RateLimiter(limit=10, window_seconds=60, clock=clock)
    limiter.allow("k", cost=8)
    result = limiter.check("k", cost=5)
    assert result["allowed"] is False
    assert result["remaining"] == 2
    assert result["retry_after_seconds"] == 60


def test_manual_clock_shared_between_limiters() -> None:
    clock = ManualClock()
    a = RateLimiter(limit=1, window_seconds=10, clock=clock)
    b = RateLimiter(limit=1, window_seconds=20, clock=clock)
    a.allow("k")
    b.allow("k")
    clock.advance(10)
    assert a.allow("k") is True
    assert b.allow("k") is False
    assert clock.now == 10.0
    assert repr(clock) == "ManualClock(now=10.0)"


def test_distinct_limiters_do_not_share_state() -> None:
    a = RateLimiter(limit=1, window_seconds=60)
    b = RateLimiter(limit=1, window_seconds=60)
    assert a.allow("k")
    assert b.allow("k")
