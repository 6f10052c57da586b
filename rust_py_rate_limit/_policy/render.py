"""The one place a decision becomes HTTP: the verdict, its headers and body.

Header modes (``headers=``):

- ``"legacy"`` (default): ``X-RateLimit-Limit``, ``X-RateLimit-Remaining``,
  ``X-RateLimit-Reset`` (seconds until the allowance is full again, as
  ``check()`` reports it);
- ``"ietf"``: the IETF draft fields ``RateLimit-Policy: "default";q=100;w=60``
  and ``RateLimit: "default";r=42;t=17``;
- ``"both"``, or ``None`` for no rate-limit headers at all.

``Retry-After`` is sent with every 429, whatever the mode.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from rust_py_rate_limit._native import Decision, RateLimiterCore
from rust_py_rate_limit._policy.options import HeaderMode, OptionValueError

__all__ = [
    "BLOCKED_STATUS",
    "DEFAULT_DETAIL",
    "HEADER_NAMES",
    "PASS",
    "UNAVAILABLE",
    "HeaderMode",
    "Rendering",
    "Verdict",
    "check_header_mode",
    "reported",
]

BLOCKED_STATUS = 429
DEFAULT_DETAIL = "Too many requests"
_MODES = ("legacy", "ietf", "both", None)


def check_header_mode(mode: object) -> HeaderMode:
    """Validates a ``headers=`` option."""
    if mode not in _MODES:
        raise OptionValueError(
            "headers", f"headers must be 'legacy', 'ietf', 'both' or None, got {mode!r}"
        )
    return mode  # type: ignore[return-value]


def _body(detail: str) -> bytes:
    return json.dumps({"detail": detail}).encode()


class _Spelling(NamedTuple):
    """Header names (but the legacy ones, which the decision renders), as
    text or as ASGI's lower-case bytes."""

    policy: Any
    field: Any
    retry_after: Any
    state: Any  # the RateLimit field: '"%s";r=%d;t=%d'


_TEXT = _Spelling(
    "RateLimit-Policy",
    "RateLimit",
    "Retry-After",
    '"%s";r=%d;t=%d',
)
_RAW = _Spelling(*(part.lower().encode("latin-1") for part in _TEXT))
#: Every header a verdict may carry, lower-case.
HEADER_NAMES = frozenset(
    (
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        *(name.lower() for name in _TEXT[:-1]),
    )
)
_LEGACY_TEXT = operator.methodcaller("_legacy_headers", False)
_LEGACY_RAW = operator.methodcaller("_legacy_headers", True)


class Rendering:
    """Headers and body for the decisions of one limiter, worked out once.

    Args:
        limiter: The limiter whose decisions are rendered (its rules name
            the IETF policies).
        mode: The header mode.
        detail: The ``detail`` of a 429's JSON body.
    """

    __slots__ = (
        "_deciding",
        "_ietf",
        "_legacy",
        "_policy",
        "body",
        "detail",
        "headers",
        "mode",
        "raw_headers",
    )
    headers: Callable[[Decision], list[tuple[str, str]]]
    raw_headers: Callable[[Decision], list[tuple[bytes, bytes]]]

    def __init__(
        self,
        limiter: RateLimiterCore,
        mode: HeaderMode = "legacy",
        detail: str = DEFAULT_DETAIL,
    ) -> None:
        self.mode = mode
        self.detail = detail
        self.body = _body(detail)
        self._legacy = mode in ("legacy", "both")
        self._ietf = mode in ("ietf", "both")
        limits = limiter.limits
        names = (
            ["default"] if len(limits) == 1 else [f"p{i}" for i in range(len(limits))]
        )
        policy = ", ".join(
            f'"{name}";q={limit};w={window}'
            for name, (limit, window) in zip(names, limits, strict=True)
        )
        # Indexed by raw (False: text, True: ASGI's bytes).
        self._policy = (policy, policy.encode("latin-1"))
        # The rule that decided: the first whose limit is the decision's.
        deciding: dict[int, str] = {}
        for name, (limit, _) in zip(names, limits, strict=True):
            deciding.setdefault(limit, name)
        self._deciding = (
            (deciding, names[0]),
            ({k: v.encode() for k, v in deciding.items()}, names[0].encode()),
        )
        if mode == "legacy":
            # The default mode, rendered by the decision itself in one call.
            self.headers = _LEGACY_TEXT
            self.raw_headers = _LEGACY_RAW
        else:
            self.headers = self._text_headers
            self.raw_headers = self._raw_headers

    def _render(self, decision: Decision, raw: bool) -> list[Any]:
        spelling = _RAW if raw else _TEXT
        if self._legacy:
            # Retry-After (on a refusal) comes last: the native list has it.
            headers: list[Any] = decision._legacy_headers(raw)
            retry_after = headers.pop() if not decision.allowed else None
        else:
            headers = []
            retry_after = None
        if self._ietf:
            by_limit, first = self._deciding[raw]
            name = by_limit.get(decision.limit, first)
            state = (name, decision.remaining, decision.reset_after_seconds)
            headers += (
                (spelling.policy, self._policy[raw]),
                (spelling.field, spelling.state % state),
            )
        if retry_after is not None:
            headers.append(retry_after)
        elif not decision.allowed:
            wait = decision.retry_after_seconds
            headers.append((spelling.retry_after, b"%d" % wait if raw else str(wait)))
        return headers

    # ``headers(decision)``: ``(name, value)`` pairs, ``Retry-After``
    # included when it refuses; ``raw_headers(decision)``: the same as ASGI
    # wants them (lower-case latin-1 bytes). Set per mode in ``__init__``.

    def _text_headers(self, decision: Decision) -> list[tuple[str, str]]:
        return self._render(decision, False)

    def _raw_headers(self, decision: Decision) -> list[tuple[bytes, bytes]]:
        return self._render(decision, True)


class Verdict:
    """What the policy answers for one request.

    Attributes:
        status: None to let the request through (adding `headers` to the
            response), else the status to answer with, with `body`,
            `detail` and `headers`: 429 (refused), 503 (the storage failed
            with ``on_error="raise"``), 403 (a deny-listed network).
        passes: Whether the request goes on to the app (``status`` is None).
        decision: The limiter's decision, None when none was taken.
    """

    __slots__ = ("decision", "passes", "rendering", "status")

    def __init__(
        self,
        status: int | None,
        decision: Decision | None = None,
        rendering: Rendering | None = None,
    ) -> None:
        self.status = status
        self.passes = status is None
        self.decision = decision
        self.rendering = rendering

    @property
    def limited(self) -> bool:
        """Whether the limit refused the request (a 429, with a decision):
        the refusal an ``on_blocked`` callback may answer instead."""
        return self.status == BLOCKED_STATUS and self.decision is not None

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The rate-limit headers of the response (``Retry-After`` included
        on a 429); empty when no decision was taken."""
        if self.decision is None or self.rendering is None:
            return []
        return self.rendering.headers(self.decision)

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """`headers` as ASGI wants them."""
        if self.decision is None or self.rendering is None:
            return []
        return self.rendering.raw_headers(self.decision)

    @property
    def detail(self) -> str:
        """The ``detail`` of the JSON body of an answer."""
        if self.status == 503:
            return "Rate limiter unavailable"
        if self.status == 403:
            return "Forbidden"
        return self.rendering.detail if self.rendering else DEFAULT_DETAIL

    @property
    def body(self) -> bytes:
        """The JSON body of an answer: ``{"detail": ...}``."""
        if self.rendering is not None and self.status == BLOCKED_STATUS:
            return self.rendering.body
        return _body(self.detail)

    def __repr__(self) -> str:
        return f"Verdict(status={self.status!r}, decision={self.decision!r})"


#: Not limited (exempt): the request goes on, with no headers.
PASS = Verdict(None)
#: The storage failed and ``on_error`` is ``"raise"``: a 503, never an
#: exception out of an adapter.
UNAVAILABLE = Verdict(503)
#: The client is on the deny list of networks: a 403.
FORBIDDEN = Verdict(403)


def reported(verdicts: Iterable[Verdict]) -> Verdict:
    """The verdict whose headers a response carries when several limits
    decided one request: the first refusal, else the one with the least
    remaining."""
    verdicts = list(verdicts)
    if len(verdicts) == 1:
        return verdicts[0]
    for verdict in verdicts:
        if not verdict.passes:
            return verdict
    return min(verdicts, key=lambda v: v.decision.remaining if v.decision else 1 << 62)
