"""Exceptions raised by rust_py_rate_limit.

Being limited is a value (``allow`` returns False, ``check`` returns
``allowed: False``); these exceptions are for the places that turn a refusal
into control flow, such as the decorator.
"""

from __future__ import annotations

from typing import Any

from rust_py_rate_limit._native import StorageError

__all__ = ["RateLimitExceeded", "StorageError"]


class RateLimitExceeded(Exception):
    """A rate-limited call was refused.

    The signature and message are 0.3.1's: ``RateLimitExceeded("k",
    limit=5, retry_after=3)`` reads ``Rate limit exceeded for key='k'
    (limit=5); retry after 3s``, and ``args`` holds that message.

    Args:
        key: The key that is over its limit.
        limit: The limit per window, if known.
        retry_after: Whole seconds (rounded up) until a retry can be
            admitted, if known.

    Attributes:
        key: The key that is over its limit.
        limit: The limit per window, or None.
        retry_after: Whole seconds until a retry can be admitted, or None.
    """

    def __init__(
        self, key: str, *, limit: int | None = None, retry_after: int | None = None
    ) -> None:
        message = f"Rate limit exceeded for key={key!r}"
        if limit is not None:
            message += f" (limit={limit})"
        if retry_after is not None:
            message += f"; retry after {retry_after}s"
        super().__init__(message)
        self.key = key
        self.limit = limit
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        # The default would call RateLimitExceeded(message): rebuild from
        # the fields instead (keeping anything else set on the instance).
        return (
            _rebuild,
            (type(self), self.key, self.limit, self.retry_after),
            self.__dict__,
        )


def _rebuild(
    cls: type[RateLimitExceeded], key: str, limit: int | None, retry_after: int | None
) -> RateLimitExceeded:
    return cls(key, limit=limit, retry_after=retry_after)
