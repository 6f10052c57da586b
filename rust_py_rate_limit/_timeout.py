"""The ``timeout=`` argument of waiting, checked one way for every caller."""

from __future__ import annotations

import math

__all__ = ["check_timeout"]


def check_timeout(timeout: float | None) -> float | None:
    """Checks a ``timeout=`` argument.

    Args:
        timeout: Seconds to wait at most, or None for no limit.

    Returns:
        The timeout as a float, or None.

    Raises:
        TypeError: ``timeout`` is not a number (a bool is not one).
        ValueError: ``timeout`` is negative or NaN.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(
            f"timeout must be a number of seconds or None, not {type(timeout).__name__}"
        )
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(
            f"timeout must be a non-negative number of seconds, got {timeout}"
        )
    return float(timeout)
