"""Promises the library makes about its errors, its `repr`, subclasses and
`clear()` on Redis (issue: keep every promise)."""

from __future__ import annotations

import asyncio
import os
import pickle
import time
import traceback
import uuid
from collections.abc import Iterator

import pytest
import redis

from rust_py_rate_limit import RateLimiter, StorageError
from rust_py_rate_limit._native import _roundtrip


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    name = f"promise-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{name}*"):
        client.delete(key)


# -- errors that say what is wrong ---------------------------------------------


@pytest.mark.parametrize(
    "storage", ["memcached://x", "http://localhost:6379", "redis:/x", "Memory", ""]
)
def test_an_unknown_storage_lists_the_accepted_ones(storage: str) -> None:
    with pytest.raises(ValueError, match="storage") as info:
        RateLimiter(5, 60, storage=storage)
    message = str(info.value)
    for accepted in (
        "'memory'",
        "redis://",
        "rediss://",
        "unix://",
        "redis+cluster://",
    ):
        assert accepted in message
    assert repr(storage) in message
    assert "InvalidClientConfig" not in message


def test_an_unknown_storage_does_not_echo_its_password() -> None:
    with pytest.raises(ValueError, match="storage") as info:
        RateLimiter(5, 60, storage="memcached://admin:hunter2@cache:11211")
    assert "hunter2" not in str(info.value)
    assert "admin:***@cache:11211" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "nearest"),
    [
        ({"lmit": 5, "window_seconds": 60}, "'limit'"),
        ({"limit": 5, "window_second": 60}, "'window_seconds'"),
        ({"rate": "5/minute", "on_eror": "deny"}, "'on_error'"),
        ({"rate": "5/minute", "keyprefix": "x"}, "'key_prefix'"),
    ],
)
def test_a_misspelt_keyword_names_rate_limiter_and_the_nearest(
    kwargs: dict[str, object], nearest: str
) -> None:
    with pytest.raises(TypeError) as info:
        RateLimiter(**kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("RateLimiter() got an unexpected keyword argument")
    assert f"did you mean {nearest}?" in message
    assert "RateLimiterCore" not in message


def test_an_unrelated_keyword_and_extra_positionals() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'zzz'$"):
        RateLimiter(5, 60, zzz=1)  # type: ignore[call-arg]
    with pytest.raises(
        TypeError,
        match=r"RateLimiter\(\) takes at most 5 positional arguments \(limit, "
        r"window_seconds, algorithm, max_keys, cleanup_interval\) but 6 were given",
    ):
        RateLimiter(5, 60, "fixed", None, None, "5/minute")  # type: ignore[call-arg]

    class Mine(RateLimiter):
        pass

    with pytest.raises(TypeError, match=r"^Mine\(\) got an unexpected keyword"):
        Mine(5, 60, lmit=3)  # type: ignore[call-arg]


def test_storage_error_is_named_where_users_import_it() -> None:
    assert StorageError.__module__ == "rust_py_rate_limit"
    assert StorageError.__qualname__ == "StorageError"
    assert repr(StorageError("x")) == "StorageError('x')"
    # Picklable through its public name (multiprocessing hands errors over).
    assert type(pickle.loads(pickle.dumps(StorageError("boom")))) is StorageError
    lim = RateLimiter(5, 60, storage="redis://127.0.0.1:1/0", on_error="raise")
    with pytest.raises(StorageError) as info:
        lim.allow("k")
    assert "rust_py_rate_limit.StorageError" in "".join(
        traceback.format_exception_only(info.type, info.value)
    )


def test_repr_shows_the_storage_with_the_password_masked() -> None:
    memory = RateLimiter(5, 60)
    assert "storage" not in repr(memory)
    lim = RateLimiter(5, 60, storage="redis://:s3cret@127.0.0.1:1/2")
    assert repr(lim) == (
        'RateLimiter(limit=5, window_seconds=60, algorithm="fixed", '
        'storage="redis://:***@127.0.0.1:1/2")'
    )
    unix = RateLimiter(5, 60, storage="unix:///tmp/r.sock?db=1&password=pw")
    assert 'storage="unix:///tmp/r.sock?db=1&password=***"' in repr(unix)
    assert "s3cret" not in repr(lim)
    assert 'pw"' not in repr(unix)


# -- subclasses keep the network awaitables ---------------------------------------


def test_a_subclass_on_redis_awaits_without_blocking_the_loop(
    redis_url: str, prefix: str
) -> None:
    """`await lim.aallow(k)` of a subclass must wait on the network, not make
    the blocking call on the loop's thread: while Redis is held up by a
    blocked client (CLIENT PAUSE), the loop keeps ticking."""

    class MyLimiter(RateLimiter):
        pass

    class Custom(RateLimiter):
        async def aallow(self, key: str, cost: int = 1) -> bool:
            self.seen = key
            return await super().aallow(key, cost)

    admin = redis.Redis.from_url(redis_url)
    for cls in (MyLimiter, Custom):
        lim = cls(
            5, 60, storage=redis_url, key_prefix=prefix, timeout=5, on_error="raise"
        )
        assert isinstance(lim, cls)
        assert type(lim).__name__ == cls.__name__
        assert lim.allow(f"warm-{cls.__name__}")  # connects

        async def main(lim: RateLimiter = lim) -> tuple[bool, int]:
            ticks = 0
            stop = False

            async def ticker() -> None:
                nonlocal ticks
                while not stop:
                    ticks += 1
                    await asyncio.sleep(0.005)

            task = asyncio.create_task(ticker())
            await asyncio.sleep(0)
            admin.client_pause(300)
            try:
                admitted = await lim.aallow("k")
            finally:
                stop = True
                await task
            return admitted, ticks

        admitted, ticks = asyncio.run(main())
        assert admitted is True
        # A blocking call would have held the loop for the whole pause.
        assert ticks >= 10, (cls.__name__, ticks)
        assert lim.stats()["storage_errors"] == 0
    assert (
        Custom(5, 60, storage=redis_url).__class__
        is Custom(1, 1, storage=redis_url).__class__
    ), "one Redis class per subclass, made once"


def test_a_subclass_on_memory_keeps_its_own_class() -> None:
    class MyLimiter(RateLimiter):
        pass

    lim = MyLimiter(5, 60)
    assert type(lim) is MyLimiter
    assert asyncio.run(lim.aallow("k")) is True


# -- clear() on Redis deletes this limiter's keys only ------------------------------


def test_clear_spares_a_limiter_whose_prefix_extends_this_ones(
    redis_url: str, prefix: str
) -> None:
    """Keys are `<prefix>:<identity>:{<digest>}:<rule>`; a limiter with prefix
    `<prefix>:<identity>` has keys that start the same way, and clear() once
    deleted them too."""
    mine = RateLimiter(5, 60, storage=redis_url, key_prefix=prefix, on_error="raise")
    identity = mine._redis_keys("k")[0].split(":")[1]
    other = RateLimiter(
        5, 60, storage=redis_url, key_prefix=f"{prefix}:{identity}", on_error="raise"
    )
    assert other._redis_keys("k")[0].startswith(f"{prefix}:{identity}:")
    for key in ("a", "b", "c"):
        mine.allow(key)
        other.allow(key)
    mine.clear()
    assert mine.remaining("a") == 5
    assert [other.remaining(k) for k in "abc"] == [4, 4, 4]


# -- wake-up pipes go with their loops ----------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_abandoned_bridge_awaits_leave_no_pipes() -> None:
    """1,000 `asyncio.run()` calls that each abandon an await whose result
    comes after the loop closed: each loop's wake-up pipe is closed once
    another loop starts, so descriptors do not pile up."""

    async def abandon() -> None:
        pending = _roundtrip(1, 0.02)  # a future of the loop, never awaited
        await asyncio.sleep(0)
        assert not pending.done()  # type: ignore[attr-defined]

    asyncio.run(abandon())
    time.sleep(0.05)
    before = open_fds()
    for _ in range(1000):
        asyncio.run(abandon())
    time.sleep(0.1)  # every abandoned result has arrived
    asyncio.run(abandon())
    assert open_fds() - before < 20


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_abandoned_redis_awaits_leave_no_pipes(redis_url: str, prefix: str) -> None:
    """The reproduction: 1,000 `asyncio.run()` calls that each abandon one
    `aallow` (held up by CLIENT PAUSE, so every answer lands after its loop
    closed) used to leave ~1,600 descriptors open, then "Too many open
    files"."""
    lim = RateLimiter(
        10**6, 60, storage=redis_url, key_prefix=prefix, timeout=30, on_error="raise"
    )
    admin = redis.Redis.from_url(redis_url)

    async def abandon() -> None:
        asyncio.get_running_loop().create_task(lim.aallow("k"))
        await asyncio.sleep(0)

    asyncio.run(abandon())
    time.sleep(0.05)
    before = open_fds()
    admin.client_pause(3000)
    started = time.monotonic()
    for _ in range(1000):
        asyncio.run(abandon())
    assert time.monotonic() - started < 3, "the pause ended before the loops did"
    admin.client_unpause()
    deadline = time.monotonic() + 10
    while lim.stats()["allowed"] < 1001 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lim.stats()["allowed"] == 1001  # every abandoned decision landed
    asyncio.run(abandon())
    assert open_fds() - before < 20
    assert lim.stats()["storage_errors"] == 0
