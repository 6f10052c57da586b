"""The one place a decision becomes HTTP: rate-limit headers and the 429.

Every framework adapter builds its headers and its 429 here, so they agree:

- ``"legacy"`` (default): ``X-RateLimit-Limit``, ``X-RateLimit-Remaining``,
  ``X-RateLimit-Reset`` (seconds until the allowance is full again, as
  ``check()`` reports it);
- ``"ietf"``: the IETF draft fields ``RateLimit-Policy: "default";q=100;w=60``
  and ``RateLimit: "default";r=42;t=17``;
- ``"both"``, or ``None`` for no rate-limit headers at all.

``Retry-After`` is sent only with a 429, whatever the mode.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

from rust_py_rate_limit._native import Decision, RateLimiterCore

__all__ = [
    "BLOCKED_BODY",
    "BLOCKED_STATUS",
    "HeaderMode",
    "blocked_body",
    "check_header_mode",
    "rate_limit_headers",
]

HeaderMode = Literal["legacy", "ietf", "both"] | None

BLOCKED_STATUS = 429
BLOCKED_BODY: dict[str, str] = {"detail": "Too many requests"}
_MODES = ("legacy", "ietf", "both", None)


def check_header_mode(mode: object) -> HeaderMode:
    """Validates a ``headers=`` option."""
    if mode not in _MODES:
        raise ValueError(
            f"headers must be 'legacy', 'ietf', 'both' or None, got {mode!r}"
        )
    return mode  # type: ignore[return-value]


def _policy_names(limits: Sequence[tuple[int, int]]) -> list[str]:
    return ["default"] if len(limits) == 1 else [f"p{i}" for i in range(len(limits))]


def rate_limit_headers(
    decision: Decision, limiter: RateLimiterCore, mode: HeaderMode = "legacy"
) -> list[tuple[str, str]]:
    """Headers for a response decided by ``decision``.

    Args:
        decision: The decision for this request.
        limiter: The limiter that made it (for the policy of the IETF fields).
        mode: ``"legacy"``, ``"ietf"``, ``"both"`` or None.

    Returns:
        ``(name, value)`` pairs, ``Retry-After`` included when blocked.
    """
    headers: list[tuple[str, str]] = []
    if mode in ("legacy", "both"):
        headers += [
            ("X-RateLimit-Limit", str(decision.limit)),
            ("X-RateLimit-Remaining", str(decision.remaining)),
            ("X-RateLimit-Reset", str(decision.reset_after_seconds)),
        ]
    if mode in ("ietf", "both"):
        limits = limiter.limits
        names = _policy_names(limits)
        headers.append(
            (
                "RateLimit-Policy",
                ", ".join(
                    f'"{name}";q={limit};w={window}'
                    for name, (limit, window) in zip(names, limits, strict=True)
                ),
            )
        )
        # The rule that decided: the first whose limit is the decision's.
        deciding = next(
            (
                n
                for n, (limit, _) in zip(names, limits, strict=True)
                if limit == decision.limit
            ),
            names[0],
        )
        headers.append(
            (
                "RateLimit",
                f'"{deciding}";r={decision.remaining};t={decision.reset_after_seconds}',
            )
        )
    if not decision.allowed:
        headers.append(("Retry-After", str(decision.retry_after_seconds)))
    return headers


def blocked_body() -> bytes:
    """The default JSON body of a 429."""
    return json.dumps(BLOCKED_BODY).encode()
