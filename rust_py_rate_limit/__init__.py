"""Fast rate limiting for Python, decided in Rust.

Example:
    >>> from rust_py_rate_limit import RateLimiter
    >>> limiter = RateLimiter(limit=2, window_seconds=60)
    >>> limiter.allow("user:1"), limiter.allow("user:1"), limiter.allow("user:1")
    (True, True, False)
"""

import atexit as _atexit
import os as _os

from rust_py_rate_limit._native import (
    Decision,
    ManualClock,
    __version__,
    _after_fork_in_child,
    _quiesce,
    postgres_schema_sql,
)
from rust_py_rate_limit.decorators import rate_limit
from rust_py_rate_limit.exceptions import RateLimitExceeded, StorageError
from rust_py_rate_limit.limiter import RateLimiter
from rust_py_rate_limit.logs import enable_logging


def hello() -> str:
    """A greeting naming the library, as 0.3.1 returned it.

    Returns:
        ``"Hello from rust-py-rate-limit! Fast local rate limiting for Python,
        powered by Rust."``
    """
    return (
        "Hello from rust-py-rate-limit! "
        "Fast local rate limiting for Python, powered by Rust."
    )


# At exit, let results being handed from Tokio to Python land first (see
# src/py/bridge.rs); no background thread touches Python after that.
_atexit.register(_quiesce)

# A forked child (gunicorn --preload, multiprocessing) starts its own janitors.
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = [
    "Decision",
    "ManualClock",
    "RateLimitExceeded",
    "RateLimiter",
    "StorageError",
    "__version__",
    "enable_logging",
    "hello",
    "postgres_schema_sql",
    "rate_limit",
]
