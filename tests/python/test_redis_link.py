"""Awaited decisions over the event loop's own connection (its "link"): the
same decisions, deadlines and failure policy as the runtime path, batched,
with no thread hop. The first await of a loop opens the link off the loop
(and takes the runtime path); the ones after it use the link."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from test_redis_deadline import TRICKLE, FakeServer, decision_reply, fake, ms

from rust_py_rate_limit import RateLimiter, StorageError

__all__ = ["fake"]  # the fixture, shared with the deadline tests


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    name = f"link-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{name}*"):
        client.delete(key)


async def go_live(lim: RateLimiter) -> None:
    """Opens the running loop's link and waits until awaits use it."""
    await lim.aallow("warm-up")
    deadline = time.monotonic() + 5
    while lim._link_status() not in ("opened", "live"):
        assert time.monotonic() < deadline, lim._link_status()
        await asyncio.sleep(0.002)
    await lim.aallow("warm-up")
    assert lim._link_status() == "live"


def test_decisions_on_the_link_are_exact_and_batched(
    redis_url: str, prefix: str
) -> None:
    lim = RateLimiter(100, 60, storage=redis_url, key_prefix=prefix, on_error="raise")
    check = RateLimiter(100, 60, storage=redis_url, key_prefix=prefix, on_error="raise")

    async def main() -> list[bool]:
        assert lim._link_status() == "none"
        await go_live(lim)
        got = list(await asyncio.gather(*(lim.aallow("k") for _ in range(150))))
        got += [await lim.aallow("k") for _ in range(5)]
        decision = await lim.adecide("k")
        assert not decision.allowed
        assert decision.remaining == 0
        assert 59 < decision.retry_after <= 60
        assert await lim.acheck("k", cost=1) == check.check("k")
        assert lim._link_status() == "live"
        return got

    got = asyncio.run(main())
    assert got.count(True) == 100
    assert got[:100] == [True] * 100
    assert lim.stats()["storage_errors"] == 0
    assert lim.stats()["allowed"] == 102  # two warm-up hits
    assert check.remaining("k") == 0


def test_the_link_reloads_a_flushed_script(redis_url: str, prefix: str) -> None:
    lim = RateLimiter(10, 60, storage=redis_url, key_prefix=prefix, on_error="raise")
    admin = redis.Redis.from_url(redis_url)

    async def main() -> list[bool]:
        await go_live(lim)
        admin.script_flush()
        first = await lim.aallow("k")  # NOSCRIPT, loaded and run again
        admin.script_flush()
        rest = await asyncio.gather(*(lim.aallow("k") for _ in range(12)))
        assert lim._link_status() == "live"
        return [first, *rest]

    got = asyncio.run(main())
    assert got.count(True) == 10
    assert lim.stats()["storage_errors"] == 0


def live_limiter(server: FakeServer, timeout: float, on_error: str) -> RateLimiter:
    """A limiter on the fake ``server`` (which answers well until told not to)."""
    return RateLimiter(
        5,
        60,
        storage=server.url,
        timeout=timeout,
        on_error=on_error,  # type: ignore[arg-type]
        key_prefix="link",
    )


@pytest.mark.parametrize("timeout", [0.05, 0.2])
@pytest.mark.parametrize("on_error", ["allow", "deny", "raise"])
@pytest.mark.parametrize("mode", ["silent", "half", "trickle", "late", "close"])
def test_calls_on_the_link_return_by_the_deadline(
    fake: Callable[..., FakeServer], mode: str, on_error: str, timeout: float
) -> None:
    server = fake("good", delay=2 * timeout)
    lim = live_limiter(server, timeout, on_error)

    async def main() -> tuple[float, Any, str]:
        await go_live(lim)
        server.mode = mode
        start = time.monotonic()
        try:
            # wait_for: a deadline that never fires fails here, not hangs.
            outcome: Any = await asyncio.wait_for(lim.aallow("k"), 5)
        except StorageError as err:
            outcome = err
        return time.monotonic() - start, outcome, lim._link_status()

    elapsed, outcome, status = asyncio.run(main())
    assert elapsed <= 2 * timeout + 0.05, f"took {elapsed:.3f} s"
    assert status == "retry", "a failed link is dropped, to be opened again"
    if on_error == "raise":
        assert isinstance(outcome, StorageError)
        message = str(outcome)
        assert "\n" not in message
        if mode == "close":
            assert message == (
                f"redis: the server at 127.0.0.1:{server.port} closed the connection"
            )
        else:
            assert message.startswith("redis: operation timed out"), message
            assert f"after {ms(timeout)}" in message
    else:
        assert outcome is (on_error == "allow")
    assert lim.stats()["storage_errors"] == 1


@pytest.mark.parametrize("mode", ["trickle", "late"])
def test_a_late_reply_on_the_link_never_answers_a_later_call(
    fake: Callable[..., FakeServer], mode: str
) -> None:
    timeout = 0.05
    server = fake("good", delay=2 * timeout)
    lim = live_limiter(server, timeout, "raise")

    async def main() -> tuple[int, int]:
        await go_live(lim)
        server.mode = mode
        with pytest.raises(StorageError, match="timed out after 50 ms"):
            await lim.acheck("a")
        late = server.calls
        await asyncio.sleep(len(decision_reply(late)) * TRICKLE + 0.1)
        server.mode = "good"
        await go_live(lim)
        got = (await lim.acheck("b"))["remaining"]
        return late, got

    late, got = asyncio.run(main())
    assert got != late, "the late reply answered a later call"
    assert got == server.calls, "the later call got its own reply"


def test_a_cancelled_await_on_the_link_leaves_the_others_alone(
    fake: Callable[..., FakeServer],
) -> None:
    server = fake("good", delay=0.05)
    lim = live_limiter(server, 1.0, "raise")
    problems: list[dict[str, Any]] = []

    async def main() -> Any:
        asyncio.get_running_loop().set_exception_handler(
            lambda _loop, context: problems.append(context)
        )
        await go_live(lim)
        server.mode = "late"
        task = asyncio.ensure_future(lim.adecide("a"))
        queued = asyncio.ensure_future(lim.adecide("b"))  # waits behind it
        await asyncio.sleep(0.01)
        task.cancel()
        decision = await queued
        await asyncio.sleep(0.1)
        assert task.cancelled()
        return decision

    decision = asyncio.run(main())
    assert decision.allowed
    assert problems == []
    assert lim.stats()["storage_errors"] == 0


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_live_links_close_with_their_loops(redis_url: str, prefix: str) -> None:
    lim = RateLimiter(10**6, 60, storage=redis_url, key_prefix=prefix, on_error="raise")

    async def one_loop() -> None:
        await go_live(lim)

    asyncio.run(one_loop())
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(100):
        asyncio.run(one_loop())
    asyncio.run(lim.aallow("k"))  # a new loop sweeps the closed ones
    assert len(os.listdir("/proc/self/fd")) - before < 10
    assert lim.stats()["storage_errors"] == 0


def test_a_dropped_limiter_closes_its_link(redis_url: str, prefix: str) -> None:
    admin = redis.Redis.from_url(redis_url)

    def clients() -> int:
        return len(admin.client_list())

    async def main() -> None:
        lim = RateLimiter(5, 60, storage=redis_url, key_prefix=prefix)
        await go_live(lim)
        with_link = clients()
        other = RateLimiter(5, 60, storage=redis_url, key_prefix=prefix)
        del lim
        await go_live(other)  # the next lookup closes the dead one's link
        await asyncio.sleep(0.05)
        assert clients() < with_link + 2

    asyncio.run(main())


def test_a_flood_of_awaits_is_decided_in_order_across_batches(
    redis_url: str, prefix: str
) -> None:
    # 40,000 awaits queued at once go out in hundreds of batched calls, one
    # on the wire at a time: each key's hits must be decided in the order
    # they were awaited, none lost or answered twice.
    lim = RateLimiter(
        300, 60, storage=redis_url, key_prefix=prefix, on_error="raise", timeout=30
    )
    keys = [f"k{i % 100}" for i in range(40_000)]

    async def main() -> list[bool]:
        await go_live(lim)
        got = list(await asyncio.gather(*(lim.aallow(k) for k in keys)))
        assert lim._link_status() == "live"
        return got

    got = asyncio.run(main())
    admitted: dict[str, int] = {}
    for key, ok in zip(keys, got, strict=True):
        admitted[key] = admitted.get(key, 0) + ok
    assert admitted == {f"k{i}": 300 for i in range(100)}
    # Per key, the first 300 hits in order are the admitted ones.
    for i in range(100):
        mine = [ok for k, ok in zip(keys, got, strict=True) if k == f"k{i}"]
        assert mine == [True] * 300 + [False] * 100
    assert lim.stats()["storage_errors"] == 0
