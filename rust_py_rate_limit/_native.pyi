"""Type stubs of the compiled module ``rust_py_rate_limit._native``."""

from collections.abc import Callable
from typing import Any, Final, Literal, TypeVar, final

from typing_extensions import disjoint_base

from rust_py_rate_limit.types import CheckResult, Stats

__all__ = ["ManualClock", "RateLimiter", "__version__"]

__version__: Final[str]

_F = TypeVar("_F", bound=Callable[..., Any])

@final
class ManualClock:
    """A clock for tests: starts at 0 and moves only by ``advance(seconds)``."""

    def __new__(cls) -> ManualClock: ...
    def advance(self, seconds: float) -> None: ...
    @property
    def now(self) -> float: ...

@disjoint_base
class RateLimiter:
    """A thread-safe rate limiter."""

    def __new__(
        cls,
        limit: int,
        window_seconds: int,
        *,
        clock: ManualClock | None = None,
    ) -> RateLimiter: ...
    def allow(self, key: str, cost: int = 1) -> bool: ...
    def check(self, key: str, cost: int = 1) -> CheckResult: ...
    def remaining(self, key: str) -> int: ...
    def reset(self, key: str) -> bool: ...
    def clear(self) -> None: ...
    def cleanup_expired(self) -> int: ...
    def stats(self) -> Stats: ...
    def limit(
        self, key: str | Callable[..., str], *, cost: int = 1
    ) -> Callable[[_F], _F]: ...
    @property
    def max_requests(self) -> int: ...
    @property
    def window_seconds(self) -> int: ...
    @property
    def algorithm(self) -> Literal["fixed"]: ...
