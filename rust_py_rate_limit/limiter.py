"""`RateLimiter`: the native core plus its awaitable twins and waiting.

Every decision is made in Rust by `RateLimiterCore`. This subclass adds what
is naturally Python: awaitables, waiting for admission, and the decorator.
On the in-memory store each awaitable method is a coroutine that decides as
soon as it is awaited and completes without suspending: no event-loop round
trip, no thread hop, no Tokio.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import json
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from rust_py_rate_limit._native import Decision, ManualClock, RateLimiterCore
from rust_py_rate_limit._timeout import check_timeout
from rust_py_rate_limit.decorators import rate_limit
from rust_py_rate_limit.exceptions import RateLimitExceeded
from rust_py_rate_limit.types import AlgorithmName, CheckResult

if TYPE_CHECKING:
    from typing_extensions import Self

    from rust_py_rate_limit.events import EventCallback

__all__ = ["RateLimiter"]

F = TypeVar("F", bound=Callable[..., Any])


class RateLimiter(RateLimiterCore):
    """A thread-safe rate limiter whose decisions are made in Rust.

    The first five arguments may be given by position, in 0.3.1's order
    (``limit, window_seconds, algorithm, max_keys, cleanup_interval``); the
    others are keyword-only.

    Args:
        limit: Units admitted per window (with ``window_seconds``).
        window_seconds: The window length in whole seconds.
        algorithm: ``"fixed"`` (default), ``"sliding"``, ``"sliding_log"``,
            ``"token_bucket"`` or ``"gcra"``.
        max_keys: At most this many keys are stored (default: unbounded).
        cleanup_interval: Seconds between background sweeps of expired keys
            (default: no background sweeps).
        rate: Instead of ``limit``/``window_seconds``: a rate string such as
            ``"100/minute"``, or several (``"10/second;1000/hour"`` or a
            list) for a compound limit.
        burst: Bucket capacity for ``token_bucket`` and ``gcra``.
        clock: A `ManualClock` for tests; the monotonic clock by default.
        on_full: When ``max_keys`` keys are stored and none has expired, a
            new key is refused (``"deny"``, the default) or admitted without
            being tracked (``"allow"``).
        storage: ``"memory"`` (default), a Redis URL (``redis://``,
            ``rediss://``, ``unix://``, ``redis+cluster://``) or a PostgreSQL
            URL (``postgresql://``, ``postgres://``).
        key_prefix: With Redis or PostgreSQL: the namespace of the limiter's
            keys.
        timeout: With Redis or PostgreSQL: the deadline of one operation, in
            seconds.
        on_error: With Redis or PostgreSQL: what a failed operation turns
            into (``"allow"``, ``"deny"`` or ``"raise"``).
        ban_after: Ban a key refused this many times within ``ban_within``
            seconds (default: the first limit's window) for ``ban_seconds``:
            every hit of a banned key is refused without touching its
            counters (memory store).
        ban_within: See ``ban_after``.
        ban_seconds: See ``ban_after``.
        allow_keys: Keys always admitted, never counted or stored.
        deny_keys: Keys always refused (`Decision.denied`), no state kept.
        shadow: Decide and count as usual, but admit what would be refused
            (`Decision.shadow_refused`): see what a new limit would do.
        local_cache_keys: With Redis: how many keys' refusals are remembered
            locally until their retry time, answering further hits of at
            least the refused cost without a round trip (default 20000; 0
            turns the cache off).
        pg_schema: With PostgreSQL: the schema holding the store's tables and
            functions, created on first use.
        pg_unlogged: With PostgreSQL: whether tables this limiter creates
            are ``UNLOGGED`` (default; faster, emptied after a crash).
        name: The ``limiter`` label of its metrics and events (default:
            its algorithm and rules, such as ``"fixed:100/60s"``).

    Example:
        >>> limiter = RateLimiter(limit=2, window_seconds=60)
        >>> limiter.allow("k"), limiter.allow("k"), limiter.allow("k")
        (True, True, False)
    """

    __slots__ = ()

    if TYPE_CHECKING:

        def __new__(
            cls,
            limit: int | None = None,
            window_seconds: int | None = None,
            algorithm: AlgorithmName = "fixed",
            max_keys: int | None = None,
            cleanup_interval: float | None = None,
            *,
            rate: str | Sequence[str] | None = None,
            burst: int | None = None,
            clock: ManualClock | None = None,
            on_full: Literal["deny", "allow"] = "deny",
            storage: str = "memory",
            key_prefix: str = "rust_py_rate_limit",
            timeout: float = 0.05,
            on_error: Literal["allow", "deny", "raise"] = "allow",
            ban_after: int | None = None,
            ban_within: float | None = None,
            ban_seconds: float | None = None,
            allow_keys: Iterable[str] | None = None,
            deny_keys: Iterable[str] | None = None,
            shadow: bool = False,
            local_cache_keys: int = 20000,
            name: str | None = None,
            pg_schema: str = "rust_py_rate_limit",
            pg_unlogged: bool = True,
        ) -> Self: ...

    else:

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            if len(args) > 2 or not _PARAMETERS.issuperset(kwargs):
                _check_arguments(cls, args, kwargs)
            # A Redis store needs awaitables that really wait on the network,
            # subclasses included.
            if kwargs.get("storage") not in (None, "memory"):
                cls = _redis_class(cls)
            limiter = super().__new__(cls, *args, **kwargs)
            with _LIVE_LOCK:
                LIVE.add(limiter)
            return limiter

    # -- context managers: leaving stops the janitor ----------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_cleanup()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop_cleanup()

    # -- events -------------------------------------------------------------

    def on_event(self, callback: EventCallback) -> EventCallback:
        """Calls ``callback(event)`` for each decision event of this limiter
        (a refused key's first refusal per window, bans, storage outages;
        see `rust_py_rate_limit.events`), from a daemon thread, never from
        the deciding call. Returns ``callback`` (so it may decorate).

        Raises:
            TypeError: ``callback`` is not callable.
        """
        from rust_py_rate_limit.events import add_callback

        add_callback(self, callback)
        return callback

    def off_event(self, callback: EventCallback) -> bool:
        """Stops calling ``callback``; whether it was registered. With no
        callback left, the limiter stops collecting events."""
        from rust_py_rate_limit.events import remove_callback

        return remove_callback(self, callback)

    # -- reporting ----------------------------------------------------------

    def stats_json(self) -> str:
        """`stats` as compact JSON, keys in the same order.

        Example:
            >>> RateLimiter(limit=3, window_seconds=60).stats_json()[:42]
            '{"allowed":0,"blocked":0,"total_checks":0,'
        """
        return json.dumps(self.stats(), separators=(",", ":"))

    # -- awaitable twins --------------------------------------------------

    # Not passing the default cost spares the native side checking it, so the
    # common call costs what `allow(key)` costs (a bool is never skipped: it
    # must still be refused there).

    async def aallow(self, key: str, cost: int = 1) -> bool:
        """Awaitable twin of `allow`."""
        if type(cost) is int and cost == 1:
            return self.allow(key)
        return self.allow(key, cost)

    async def acheck(self, key: str, cost: int = 1) -> CheckResult:
        """Awaitable twin of `check`."""
        if type(cost) is int and cost == 1:
            return self.check(key)
        return self.check(key, cost)

    async def adecide(self, key: str, cost: int = 1) -> Decision:
        """Awaitable twin of `decide`."""
        if type(cost) is int and cost == 1:
            return self.decide(key)
        return self.decide(key, cost)

    async def aremaining(self, key: str) -> int:
        """Awaitable twin of `remaining`."""
        return self.remaining(key)

    async def apeek(self, key: str) -> Decision:
        """Awaitable twin of `peek`."""
        return self.peek(key)

    async def areset(self, key: str) -> bool:
        """Awaitable twin of `reset`."""
        return self.reset(key)

    async def aclear(self) -> None:
        """Awaitable twin of `clear`."""
        self.clear()

    async def acleanup_expired(self) -> int:
        """Awaitable twin of `cleanup_expired`."""
        return self.cleanup_expired()

    async def aban(self, key: str, seconds: float) -> None:
        """Awaitable twin of `ban`."""
        self.ban(key, seconds)

    async def aunban(self, key: str) -> bool:
        """Awaitable twin of `unban`."""
        return self.unban(key)

    async def abanned_for(self, key: str) -> float | None:
        """Awaitable twin of `banned_for`."""
        return self.banned_for(key)

    # -- waiting for admission --------------------------------------------

    async def acquire(
        self, key: str, cost: int = 1, timeout: float | None = None
    ) -> bool:
        """Waits until a hit of ``cost`` on ``key`` is admitted, and spends it.

        Sleeps exactly the decision's ``retry_after`` between tries, so it
        wakes when the hit can pass. Cancelling it spends nothing.

        Args:
            key: The key to spend on.
            cost: Units to spend: an int from 1 to the capacity (None is a
                TypeError).
            timeout: Seconds to wait at most; None waits as long as needed.

        Returns:
            True once admitted; False at once if admission would come later
            than ``timeout``.
        """
        limit = check_timeout(timeout)
        loop = asyncio.get_running_loop()
        deadline = None if limit is None else loop.time() + limit
        while True:
            decision = await self.adecide(key, cost)
            if decision.allowed:
                return True
            delay = decision.retry_after
            if deadline is not None and loop.time() + delay > deadline:
                return False
            await asyncio.sleep(delay)

    def wait(self, key: str, cost: int = 1, timeout: float | None = None) -> bool:
        """Blocking twin of `acquire`: sleeps (without the GIL) until admitted.

        Returns:
            True once admitted; False at once if admission would come later
            than ``timeout``.
        """
        limit = check_timeout(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            decision = self.decide(key, cost)
            if decision.allowed:
                return True
            delay = decision.retry_after
            if deadline is not None and time.monotonic() + delay > deadline:
                return False
            time.sleep(delay)

    # -- decorator ----------------------------------------------------------

    def limit(
        self,
        key: str | Callable[..., str],
        *,
        cost: int = 1,
        on_blocked: Callable[..., Any] | None = None,
        on_refused: Callable[[RateLimitExceeded], Any] | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> Callable[[F], F]:
        """Decorator: rate-limits a function under ``key``.

        See `rust_py_rate_limit.decorators.rate_limit` for the options:
        ``on_blocked`` is called with the function's own arguments,
        ``on_refused`` with the `RateLimitExceeded`.
        """
        return rate_limit(
            self,
            key,
            cost=cost,
            on_blocked=on_blocked,
            on_refused=on_refused,
            wait=wait,
            timeout=timeout,
        )


# __new__ takes *args/**kwargs only to pick the subclass; show the real ones.
RateLimiter.__signature__ = inspect.signature(RateLimiterCore)  # type: ignore[attr-defined]

#: Every RateLimiter of this process that is still referenced: what the
#: metrics exporters report (a dropped limiter leaves it by itself). Read it
#: through `live_limiters`: a limiter may be added while another thread
#: iterates.
LIVE: weakref.WeakSet[RateLimiter] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def live_limiters() -> list[RateLimiter]:
    """Every live limiter of this process, now."""
    with _LIVE_LOCK:
        return list(LIVE)


_PARAMETERS = frozenset(
    name
    for name, p in inspect.signature(RateLimiterCore).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD
)
# The arguments that may be given by position, in 0.3.1's order.
_POSITIONAL = tuple(
    name
    for name, p in inspect.signature(RateLimiterCore).parameters.items()
    if p.kind is p.POSITIONAL_OR_KEYWORD
)


def _check_arguments(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Raises the TypeError for arguments `RateLimiter` does not take, naming
    the class the caller used (not the native base) and, for a misspelt
    keyword, the nearest valid one. Returns if the arguments are fine."""
    name = cls.__name__
    if len(args) > len(_POSITIONAL):
        raise TypeError(
            f"{name}() takes at most {len(_POSITIONAL)} positional arguments "
            f"({', '.join(_POSITIONAL)}) but {len(args)} were given; pass the "
            "others by keyword"
        )
    for given in _POSITIONAL[: len(args)]:
        if given in kwargs:
            raise TypeError(f"{name}() got multiple values for argument {given!r}")
    unknown = sorted(set(kwargs) - _PARAMETERS)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(_PARAMETERS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TypeError(
            f"{name}() got an unexpected keyword argument {unknown[0]!r}{hint}"
        )


def _redis_class(cls: type) -> type:
    """The class of a Redis-backed instance of `cls`: `cls` with the Redis
    awaitables of `_RedisRateLimiter` between it and `RateLimiter`, so a
    subclass's own overrides still win and their ``super()`` calls reach
    the network versions."""
    if issubclass(cls, _RedisRateLimiter):
        return cls
    if cls is RateLimiter:
        return _RedisRateLimiter
    # Kept on the class itself (a cycle the collector can free with it).
    twin: type | None = cls.__dict__.get("_rpl_redis_twin")
    if twin is None:
        twin = type(
            cls.__name__,
            (cls, _RedisRateLimiter),
            {
                "__slots__": (),
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__doc__": cls.__doc__,
            },
        )
        type.__setattr__(cls, "_rpl_redis_twin", twin)
    return twin


class _RedisRateLimiter(RateLimiter):
    """A `RateLimiter` on a Redis store: its awaitables are Tokio futures
    that wait on the network without blocking the event loop, and many
    concurrent ones share one multiplexed connection."""

    __slots__ = ()

    async def aallow(self, key: str, cost: int = 1) -> bool:
        return (await self.adecide(key, cost)).allowed

    async def acheck(self, key: str, cost: int = 1) -> CheckResult:
        return (await self.adecide(key, cost)).to_dict()

    async def adecide(self, key: str, cost: int = 1) -> Decision:
        decision = await self._adecide(key, cost)
        # Shadow mode applies once the store has answered.
        if decision.allowed or not self.shadow:
            return decision
        return self._shadowed(key, decision)

    async def aremaining(self, key: str) -> int:
        return (await self._apeek(key)).remaining

    async def apeek(self, key: str) -> Decision:
        return await self._apeek(key)

    async def areset(self, key: str) -> bool:
        return await self._areset(key)

    async def aclear(self) -> None:
        await self._aclear()

    async def acleanup_expired(self) -> int:
        return 0

    async def aban(self, key: str, seconds: float) -> None:
        await self._aban(key, seconds)

    async def aunban(self, key: str) -> bool:
        return await self._aunban(key)

    async def abanned_for(self, key: str) -> float | None:
        return await self._abanned_for(key)
