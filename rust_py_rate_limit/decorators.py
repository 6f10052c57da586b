"""Decorators that rate-limit plain and coroutine functions.

Example:
    limiter = RateLimiter(limit=5, window_seconds=60)

    @limiter.limit("login")
    def login() -> str: ...

    @limiter.limit(lambda user_id: f"user:{user_id}", wait=True)
    async def fetch(user_id: int) -> dict: ...

    @limiter.limit("report", on_refused=lambda exc: f"retry in {exc.retry_after}s")
    def report() -> str: ...
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

from rust_py_rate_limit._native import Decision, RateLimiterCore
from rust_py_rate_limit._timeout import check_timeout
from rust_py_rate_limit.exceptions import RateLimitExceeded

__all__ = ["rate_limit"]

F = TypeVar("F", bound=Callable[..., Any])
KeySpec = str | Callable[..., str]
#: Called with the decorated function's own arguments (as in 0.3.1).
OnBlocked = Callable[..., Any]
#: Called with the `RateLimitExceeded` of the refused call.
OnRefused = Callable[[RateLimitExceeded], Any]
#: What the wrappers call on a refusal: (refusal, args, kwargs) -> result.
_Fallback = Callable[[RateLimitExceeded, tuple[Any, ...], dict[str, Any]], Any]


class _Limiter(Protocol):
    """What the decorator uses of a `RateLimiter` (named structurally:
    `rust_py_rate_limit.limiter` imports this module, not the reverse)."""

    @property
    def capacity(self) -> int: ...
    def decide(self, key: str, cost: int = 1) -> Decision: ...
    def peek(self, key: str) -> Decision: ...
    def wait(self, key: str, cost: int = 1, timeout: float | None = None) -> bool: ...
    async def adecide(self, key: str, cost: int = 1) -> Decision: ...
    async def apeek(self, key: str) -> Decision: ...
    async def acquire(
        self, key: str, cost: int = 1, timeout: float | None = None
    ) -> bool: ...


def _key_resolver(key: KeySpec) -> Callable[[tuple[Any, ...], dict[str, Any]], str]:
    if isinstance(key, str):
        return lambda args, kwargs: key
    if callable(key):
        func = key

        def resolve(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            value = func(*args, **kwargs)
            if not isinstance(value, str):
                raise TypeError(
                    f"key callable must return str, not {type(value).__name__}"
                )
            return value

        return resolve
    raise TypeError(f"key must be a str or a callable, not {type(key).__name__}")


def _refusal(key: str, decision: Decision) -> RateLimitExceeded:
    return RateLimitExceeded(
        key, limit=decision.limit, retry_after=decision.retry_after_seconds
    )


def _fallback(
    on_blocked: OnBlocked | None, on_refused: OnRefused | None
) -> _Fallback | None:
    """What a refused call returns instead of raising, if anything."""
    if on_blocked is not None and on_refused is not None:
        raise ValueError("give on_blocked or on_refused, not both")
    if on_blocked is not None:
        if not callable(on_blocked):
            raise TypeError("on_blocked must be callable")
        blocked = on_blocked
        return lambda refusal, args, kwargs: blocked(*args, **kwargs)
    if on_refused is not None:
        if not callable(on_refused):
            raise TypeError("on_refused must be callable")
        refused = on_refused
        return lambda refusal, args, kwargs: refused(refusal)
    return None


def rate_limit(
    limiter: _Limiter,
    key: KeySpec,
    *,
    cost: int = 1,
    on_blocked: OnBlocked | None = None,
    on_refused: OnRefused | None = None,
    wait: bool = False,
    timeout: float | None = None,
) -> Callable[[F], F]:
    """Rate-limits the decorated function under ``key``.

    Args:
        limiter: The limiter that decides.
        key: A fixed key, or a callable given the decorated function's
            arguments that returns the key.
        cost: Units each call spends.
        on_blocked: Called with the decorated function's own arguments
            (``on_blocked(*args, **kwargs)``, as in 0.3.1) when a call is
            refused; its result is returned instead of raising.
        on_refused: Called with the `RateLimitExceeded` of a refused call;
            its result is returned instead of raising. Give ``on_blocked``
            or ``on_refused``, not both. For a coroutine function, the
            result of either is awaited if it is awaitable.
        wait: Wait for admission (``acquire`` / ``wait``) instead of
            refusing.
        timeout: With ``wait``: seconds to wait at most before refusing.

    Returns:
        A decorator. Works on ``def`` and ``async def`` functions (the wrapper
        of a coroutine function is a coroutine function that uses the
        awaitable path) and on methods; ``functools.wraps`` keeps the
        function's metadata. A refused call never runs the function.
    """
    # A RateLimiter is the native core plus the waiting and awaitable
    # methods above (a bare RateLimiterCore has none of them).
    if not isinstance(limiter, RateLimiterCore) or not hasattr(limiter, "acquire"):
        raise TypeError(f"limiter must be a RateLimiter, not {type(limiter).__name__}")
    resolve = _key_resolver(key)
    # Refuse bad options at decoration time, not at the first call.
    if isinstance(cost, bool) or not isinstance(cost, int):
        raise TypeError(f"cost must be an int, not {type(cost).__name__}")
    if not 1 <= cost <= limiter.capacity:
        raise ValueError(
            f"cost must be between 1 and the capacity ({limiter.capacity}), got {cost}"
        )
    fallback = _fallback(on_blocked, on_refused)
    if not isinstance(wait, bool):
        raise TypeError(f"wait must be a bool, not {type(wait).__name__}")
    timeout = check_timeout(timeout)

    def decorator(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                key = resolve(args, kwargs)
                if wait:
                    if await limiter.acquire(key, cost, timeout):
                        return await func(*args, **kwargs)
                    decision = await limiter.apeek(key)
                else:
                    decision = await limiter.adecide(key, cost)
                    if decision.allowed:
                        return await func(*args, **kwargs)
                refusal = _refusal(key, decision)
                if fallback is None:
                    raise refusal
                result = fallback(refusal, args, kwargs)
                return await result if inspect.isawaitable(result) else result

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = resolve(args, kwargs)
            if wait:
                if limiter.wait(key, cost, timeout):
                    return func(*args, **kwargs)
                decision = limiter.peek(key)
            else:
                decision = limiter.decide(key, cost)
                if decision.allowed:
                    return func(*args, **kwargs)
            refusal = _refusal(key, decision)
            if fallback is None:
                raise refusal
            return fallback(refusal, args, kwargs)

        return cast(F, wrapper)

    return decorator
