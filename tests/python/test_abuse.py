"""Against abuse: temporary bans, allow and deny lists, shadow mode."""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from typing import Any

import pytest

from rust_py_rate_limit import Decision, ManualClock, RateLimiter, StorageError
from rust_py_rate_limit.types import AlgorithmName

UNREACHABLE = "redis://127.0.0.1:1/0"


def banning(clock: ManualClock, **extra: Any) -> RateLimiter:
    """2 hits per 10 s; 3 refusals within 10 s ban for 60 s."""
    return RateLimiter(
        2, 10, clock=clock, ban_after=3, ban_within=10, ban_seconds=60, **extra
    )


# -- bans ----------------------------------------------------------------------


def test_the_third_refusal_within_the_span_bans_until_exactly_its_end() -> None:
    clock = ManualClock()
    lim = banning(clock)
    assert [lim.allow("k") for _ in range(2)] == [True, True]
    refusals = [lim.decide("k") for _ in range(3)]
    assert [d.allowed for d in refusals] == [False] * 3
    assert [d.banned for d in refusals] == [False, False, True]
    assert refusals[2].retry_after == 60.0
    assert lim.banned_for("k") == 60.0
    stats = lim.stats()
    assert (stats["bans"], stats["banned_keys"]) == (1, 1)
    # Banned: refused with the ban's remaining time, counters untouched (the
    # window has long passed, yet nothing was spent).
    clock.advance(30)
    d = lim.decide("k")
    assert (d.allowed, d.banned, d.retry_after, d.remaining) == (False, True, 30.0, 0)
    assert lim.peek("k").banned
    clock.advance(30 - 1e-9)
    assert lim.decide("k").banned  # a nanosecond before the end
    clock.advance(1e-9)
    after = lim.decide("k")
    assert (after.allowed, after.banned, after.remaining) == (True, False, 1)
    assert lim.banned_for("k") is None
    assert lim.stats()["banned_keys"] == 0


def test_refusals_outside_the_span_do_not_ban() -> None:
    clock = ManualClock()
    lim = banning(clock)
    for _ in range(6):
        assert [lim.allow("k") for _ in range(2)] == [True, True]
        assert not lim.decide("k").banned  # one refusal per 10 s window
        clock.advance(10)
    assert lim.stats()["bans"] == 0


def test_ban_within_defaults_to_the_first_window() -> None:
    clock = ManualClock()
    lim = RateLimiter(1, 5, clock=clock, ban_after=2, ban_seconds=100)
    lim.allow("k")
    lim.allow("k")
    clock.advance(5)  # the first refusal leaves the 5 s span
    lim.allow("k")
    assert not lim.decide("k").banned
    assert lim.decide("k").banned
    assert "ban_after=2, ban_within=5, ban_seconds=100)" in repr(lim)


def test_manual_bans_and_their_awaitable_twins() -> None:
    clock = ManualClock()
    lim = RateLimiter(5, 60, clock=clock)
    lim.ban("k", 2.5)
    assert lim.banned_for("k") == 2.5
    assert not lim.allow("k")
    assert lim.unban("k") is True
    assert lim.unban("k") is False
    assert lim.allow("k")

    async def main() -> tuple[float | None, bool, float | None]:
        await lim.aban("a", 10)
        before = await lim.abanned_for("a")
        return before, await lim.aunban("a"), await lim.abanned_for("a")

    assert asyncio.run(main()) == (10.0, True, None)
    lim.ban("r", 5)
    assert lim.reset("r") is False  # no rate state, but the ban goes too
    assert lim.banned_for("r") is None
    lim.ban("c", 5)
    lim.clear()
    assert lim.banned_for("c") is None
    assert lim.stats()["bans"] == 4


def test_bans_in_compound_limits() -> None:
    clock = ManualClock()
    lim = RateLimiter(
        rate="1/second;5/minute", clock=clock, ban_after=2, ban_seconds=30
    )
    assert lim.allow("k")
    assert not lim.decide("k").banned
    d = lim.decide("k")
    assert d.banned
    assert d.retry_after == 30.0


def test_threads_hammering_one_key_begin_exactly_one_ban() -> None:
    clock = ManualClock()
    lim = RateLimiter(100, 60, clock=clock, ban_after=5, ban_seconds=600)
    start = threading.Barrier(8)
    admitted: list[int] = []

    def hammer() -> None:
        start.wait()
        admitted.append(sum(lim.allow("k") for _ in range(1_000)))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 100
    assert lim.stats()["bans"] == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ban_after": 3}, TypeError, "ban_after needs ban_seconds"),
        ({"ban_seconds": 3}, TypeError, "need ban_after"),
        ({"ban_within": 3}, TypeError, "need ban_after"),
        ({"ban_after": 0, "ban_seconds": 1}, ValueError, "ban_after"),
        ({"ban_after": -1, "ban_seconds": 1}, ValueError, "ban_after"),
        ({"ban_after": 1.5, "ban_seconds": 1}, TypeError, "ban_after"),
        ({"ban_after": True, "ban_seconds": 1}, TypeError, "ban_after"),
        ({"ban_after": 10_001, "ban_seconds": 1}, ValueError, "ban_after"),
        ({"ban_after": 1, "ban_seconds": 0}, ValueError, "ban_seconds"),
        ({"ban_after": 1, "ban_seconds": -1}, ValueError, "ban_seconds"),
        ({"ban_after": 1, "ban_seconds": "1"}, TypeError, "ban_seconds"),
        ({"ban_after": 1, "ban_seconds": 1, "ban_within": 0}, ValueError, "ban_within"),
        ({"allow_keys": "abc"}, TypeError, "allow_keys"),
        ({"deny_keys": [1]}, TypeError, "deny_keys"),
        ({"deny_keys": 5}, TypeError, "deny_keys"),
        ({"shadow": 1}, TypeError, "shadow"),
    ],
)
def test_bad_abuse_options_name_the_argument(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        RateLimiter(5, 60, **kwargs)


def test_bad_manual_ban_values() -> None:
    lim = RateLimiter(5, 60)
    with pytest.raises(ValueError, match="seconds"):
        lim.ban("k", 0)
    with pytest.raises(TypeError, match="seconds"):
        lim.ban("k", None)  # type: ignore[arg-type]


# -- allow and deny lists ---------------------------------------------------------


def test_listed_keys_are_never_stored_nor_counted() -> None:
    lim = RateLimiter(1, 60, allow_keys=["vip"], deny_keys={"evil"})
    assert [lim.allow("vip") for _ in range(5)] == [True] * 5
    vip = lim.decide("vip")
    assert (vip.allowed, vip.remaining, vip.denied) == (True, 1, False)
    evil = lim.decide("evil")
    assert (evil.allowed, evil.denied, evil.retry_after) == (False, True, 60.0)
    assert lim.peek("evil").denied
    assert lim.remaining("evil") == 0
    stats = lim.stats()
    assert (stats["active_keys"], stats["allowed"], stats["blocked"]) == (0, 0, 0)
    # A peek is no hit: the deny list counted the one decide() only.
    assert stats["denied"] == 1
    assert lim.allow_keys == frozenset({"vip"})
    assert lim.deny_keys == frozenset({"evil"})


def test_lists_take_keys_with_lone_surrogates_and_apply_to_every_path() -> None:
    odd = "k\udc80"
    lim = RateLimiter(1, 60, deny_keys=[odd])
    assert lim.deny_keys == frozenset({odd})
    assert not lim.allow(odd)
    assert lim.check(odd)["allowed"] is False
    assert asyncio.run(lim.adecide(odd)).denied
    assert lim.remaining(odd) == 0


def test_lists_are_replaced_at_run_time_while_threads_hit() -> None:
    lim = RateLimiter(10**9, 60)
    stop = threading.Event()
    seen: list[Decision] = []

    def hit() -> None:
        while not stop.is_set():
            seen.append(lim.decide("k"))

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for i in range(200):
        lim.deny_keys = ["k"] if i % 2 == 0 else []
    lim.deny_keys = ["k"]
    stop.set()
    for t in threads:
        t.join()
    assert not lim.allow("k")
    lim.deny_keys = None
    assert lim.allow("k")
    denied = sum(d.denied for d in seen)
    assert 0 <= denied <= len(seen)
    # Every decision is one list's or the other's answer, never a mix.
    assert all(d.denied == (not d.allowed) for d in seen)


def test_listed_keys_never_reach_redis() -> None:
    lim = RateLimiter(
        1,
        60,
        storage=UNREACHABLE,
        on_error="raise",
        allow_keys=["vip"],
        deny_keys=["x"],
    )
    assert lim.allow("vip")
    assert not lim.allow("x")

    async def main() -> list[bool]:
        return [await lim.aallow("vip"), await lim.aallow("x")]

    assert asyncio.run(main()) == [True, False]
    assert lim.stats()["storage_errors"] == 0
    with pytest.raises(StorageError):
        lim.allow("other")


# -- shadow mode -----------------------------------------------------------


def run(lim: RateLimiter, clock: ManualClock, seed: int) -> list[Decision]:
    rnd = random.Random(seed)
    out = []
    for _ in range(500):
        out.append(lim.decide(f"k{rnd.randrange(3)}", rnd.randint(1, 3)))
        clock.advance(rnd.randrange(200_000) / 1e6)
    return out


@pytest.mark.parametrize("algorithm", ["fixed", "sliding", "sliding_log", "gcra"])
def test_shadow_mode_refuses_nothing_and_counts_what_it_would_refuse(
    algorithm: AlgorithmName,
) -> None:
    real_clock, shadow_clock = ManualClock(), ManualClock()
    real = RateLimiter(5, 2, algorithm=algorithm, clock=real_clock)
    shadow = RateLimiter(5, 2, algorithm=algorithm, clock=shadow_clock, shadow=True)
    got_real = run(real, real_clock, 7)
    got_shadow = run(shadow, shadow_clock, 7)
    assert all(d.allowed for d in got_shadow)
    refused = [not d.allowed for d in got_real]
    assert [d.shadow_refused for d in got_shadow] == refused
    # Remaining allowance reported as the real decision's.
    assert [d.remaining for d in got_shadow] == [d.remaining for d in got_real]
    assert shadow.stats()["shadow_refused"] == sum(refused) > 0
    assert shadow.stats()["allowed"] == real.stats()["allowed"]
    assert shadow.shadow
    assert not real.shadow
    assert "shadow=True" in repr(shadow)


def test_a_shadow_ban_is_counted_not_enforced() -> None:
    clock = ManualClock()
    lim = banning(clock, shadow=True)
    got = [lim.decide("k") for _ in range(8)]
    assert all(d.allowed for d in got)
    assert lim.stats()["bans"] == 1
    assert got[-1].banned
    assert got[-1].shadow_refused


def test_shadow_mode_on_redis_awaitables(redis_url: str) -> None:
    prefix = f"shadow-{uuid.uuid4().hex[:8]}"
    lim = RateLimiter(
        2, 60, storage=redis_url, key_prefix=prefix, on_error="raise", shadow=True
    )

    async def main() -> list[Decision]:
        return [await lim.adecide("k") for _ in range(4)]

    got = asyncio.run(main())
    assert [d.allowed for d in got] == [True] * 4
    assert [d.shadow_refused for d in got] == [False, False, True, True]
    assert lim.allow("k") is True
    assert lim.stats()["shadow_refused"] == 3
    lim.clear()


def test_a_shadow_refusal_is_logged_once_per_key_per_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from rust_py_rate_limit import enable_logging

    caplog.set_level(logging.INFO, logger="rust_py_rate_limit")
    enable_logging(poll_interval=0.01)
    clock = ManualClock()
    lim = RateLimiter(1, 60, clock=clock, shadow=True)
    # Keys of this test only: records of earlier tests may still arrive.
    tag = uuid.uuid4().hex[:8]
    k, other, sentinel = f"k-{tag}", f"other-{tag}", f"sentinel-{tag}"

    def keys() -> list[str]:
        got = []
        for r in caplog.records:
            message = r.getMessage()
            if "shadow mode admitted" in message and tag in message:
                assert r.levelno == logging.INFO
                got.append(message.split("key=")[1].split(" ")[0])
        return got

    class Arrived(logging.Handler):
        """Sets ``seen`` when the sentinel's record reaches the logger."""

        def __init__(self) -> None:
            super().__init__()
            self.seen = threading.Event()

        def emit(self, record: logging.LogRecord) -> None:
            if f"key={sentinel}" in record.getMessage():
                self.seen.set()

    # On the root logger after caplog's handler: caplog holds a record
    # before the event is set.
    arrived = Arrived()
    logging.getLogger().addHandler(arrived)

    for _ in range(20):
        lim.allow(k)  # 19 shadow refusals: one record
    for _ in range(3):
        lim.allow(other)  # another key: its own record
    clock.advance(59)
    lim.allow(k)  # the same window: no record
    clock.advance(1)
    lim.allow(k)  # admitted (a new window): no refusal, no record
    lim.allow(k)  # refused in the new window: a record
    lim.allow(sentinel)
    lim.allow(sentinel)  # a record after all the others
    # Records arrive in order: once the sentinel's is in, every earlier one is
    # (delivered by the log pump's own thread, in real time).
    try:
        assert arrived.seen.wait(5), "the sentinel's record never arrived"
    finally:
        logging.getLogger().removeHandler(arrived)
    assert keys() == [k, other, k, sentinel]
    assert lim.stats()["shadow_refused"] == 19 + 2 + 1 + 1 + 1
