"""Decorators that rate-limit plain and coroutine functions."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from rust_py_rate_limit._native import Decision
from rust_py_rate_limit.exceptions import RateLimitExceeded
from rust_py_rate_limit.limiter import RateLimiter

__all__ = ["rate_limit"]

F = TypeVar("F", bound=Callable[..., Any])
KeySpec = str | Callable[..., str]


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


def _refuse(key: str, decision: Decision) -> RateLimitExceeded:
    return RateLimitExceeded(key, decision.limit, decision.retry_after_seconds)


def rate_limit(
    limiter: RateLimiter, key: KeySpec, *, cost: int = 1
) -> Callable[[F], F]:
    """Rate-limits the decorated function under ``key``.

    Args:
        limiter: The limiter that decides.
        key: A fixed key, or a callable given the decorated function's
            arguments that returns the key.
        cost: Units each call spends.

    Returns:
        A decorator. Works on ``def`` and ``async def`` functions (the wrapper
        of a coroutine function is a coroutine function). A refused call
        raises `RateLimitExceeded` before the function runs.
    """
    if not isinstance(limiter, RateLimiter):
        raise TypeError(f"limiter must be a RateLimiter, not {type(limiter).__name__}")
    resolve = _key_resolver(key)
    # Refuse a bad cost at decoration time, not at the first call.
    if isinstance(cost, bool) or not isinstance(cost, int):
        raise TypeError(f"cost must be an int, not {type(cost).__name__}")
    if not 1 <= cost <= limiter.max_requests:
        raise ValueError(
            f"cost must be between 1 and the limit ({limiter.max_requests}), got {cost}"
        )

    def decorator(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                key = resolve(args, kwargs)
                decision = await limiter.adecide(key, cost)
                if not decision.allowed:
                    raise _refuse(key, decision)
                return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = resolve(args, kwargs)
            decision = limiter.decide(key, cost)
            if not decision.allowed:
                raise _refuse(key, decision)
            return func(*args, **kwargs)

        return cast(F, wrapper)

    return decorator
