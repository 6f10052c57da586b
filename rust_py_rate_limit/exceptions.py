"""Exceptions raised by rust_py_rate_limit.

Being limited is a value (``allow`` returns False, ``check`` returns
``allowed: False``); these exceptions are for the places that turn a refusal
into control flow, such as the decorator.
"""

from __future__ import annotations

from rust_py_rate_limit._native import StorageError

__all__ = ["RateLimitExceeded", "StorageError"]


class RateLimitExceeded(Exception):
    """A rate-limited call was refused.

    Attributes:
        key: The key that is over its limit.
        limit: The limit per window.
        retry_after: Whole seconds (rounded up) until a retry can be admitted.
    """

    def __init__(self, key: str, limit: int, retry_after: int) -> None:
        super().__init__(key, limit, retry_after)
        self.key = key
        self.limit = limit
        self.retry_after = retry_after

    def __str__(self) -> str:
        return (
            f"rate limit exceeded for key {self.key!r} "
            f"(limit {self.limit}); retry after {self.retry_after}s"
        )
