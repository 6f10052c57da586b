"""The request policy's behaviour, as one table of cases for every adapter.

Each case builds an app (see `policy_harness`) with a limit (``limit`` per
60 s, on a `ManualClock` unless the case names a storage) and options by the
policy's names, then sends its steps in order; each step states what must
come back. ``None`` in a step means "not checked" (where frameworks
legitimately differ, e.g. the status of an OPTIONS the framework answers).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

CLIENT = "203.0.113.9"
PROXY = "10.0.0.1"
PREFLIGHT = (("Origin", "https://a.example"), ("Access-Control-Request-Method", "GET"))
LEGACY = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
IETF = ("RateLimit-Policy", "RateLimit")
TOO_MANY = {"detail": "Too many requests"}
ABSENT = None


@dataclass(frozen=True)
class Step:
    """One request and what it must get."""

    path: str = "/"
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    peer: str | None = CLIENT
    status: int | None = 200
    #: Whether it carries the rate-limit headers (it was counted).
    counted: bool | None = True
    #: Exact header values; ``ABSENT`` for a header that must not be there.
    expect: dict[str, str | None] = field(default_factory=dict)
    body: Any = None  # the JSON body, when given
    text: str | None = None  # the body as text, when given
    raises: str | None = None  # a regex the raised error's message matches


def ok(remaining: int, **kw: Any) -> Step:
    """A GET / admitted with ``remaining`` left."""
    return Step(expect={"X-RateLimit-Remaining": str(remaining)}, **kw)


def blocked(**kw: Any) -> Step:
    """Refused: a 429 (unless ``status`` says otherwise) with Retry-After."""
    kw.setdefault("body", TOO_MANY)
    kw.setdefault("status", 429)
    expect = {"Retry-After": "60", "X-RateLimit-Remaining": "0", **kw.pop("expect", {})}
    return Step(expect=expect, **kw)


def free(path: str, **kw: Any) -> Step:
    """Not counted: no rate-limit headers, whatever the limit."""
    kw.setdefault("status", 200)
    return Step(path=path, counted=False, **kw)


@dataclass(frozen=True)
class Case:
    id: str
    steps: tuple[Step, ...]
    options: dict[str, Any] = field(default_factory=dict)
    limit: int = 2
    #: What the case needs of an adapter beyond its options (an adapter
    #: that limits views, not requests, has no app-wide CORS preflights).
    tags: frozenset[str] = frozenset()

    @property
    def needs(self) -> frozenset[str]:
        """Option names and tags: an adapter's harness lists those it lacks."""
        return frozenset(self.options) | self.tags


def _counted(i: int, **changes: Any) -> Step:
    """The i-th of three requests from one client with limit 2."""
    return replace(ok(1 - i) if i < 2 else blocked(), **changes)


def _through_proxy(chosen: dict[str, str]) -> tuple[Step, ...]:
    """Three requests from a trusted proxy whose chosen header names CLIENT
    while the others rotate: one client, so the third is refused."""
    steps = []
    for i in range(3):
        headers = {
            "X-Forwarded-For": f"198.51.100.{i}",
            "Forwarded": f"for=192.0.2.{i}",
            "X-Real-IP": f"192.0.2.{100 + i}",
            **chosen,
        }
        steps.append(_counted(i, peer=PROXY, headers=tuple(headers.items())))
    return tuple(steps)


CASES = [
    Case(
        "limit-then-429",
        (ok(1), ok(0), blocked(expect={"X-RateLimit-Limit": "2"})),
    ),
    Case(
        "head-counts-as-get-once",
        (
            ok(2, method="HEAD"),
            ok(1),
            ok(0, method="HEAD"),
            blocked(method="HEAD", body=None),
        ),
        limit=3,
    ),
    Case("cost", (ok(2), ok(0), blocked()), {"cost": 2}, limit=4),
    Case(
        "headers-legacy",
        (
            Step(
                expect={
                    "X-RateLimit-Limit": "2",
                    "X-RateLimit-Reset": "60",
                    "RateLimit": ABSENT,
                    "Retry-After": ABSENT,
                }
            ),
            ok(0),
            blocked(),
        ),
        {"headers": "legacy"},
    ),
    Case(
        "headers-ietf",
        (
            Step(
                counted=None,
                expect={
                    "RateLimit-Policy": '"default";q=2;w=60',
                    "RateLimit": '"default";r=1;t=60',
                    "X-RateLimit-Limit": ABSENT,
                },
            ),
            Step(counted=None, expect={"RateLimit": '"default";r=0;t=60'}),
            Step(
                status=429,
                counted=None,
                body=TOO_MANY,
                expect={"Retry-After": "60", "X-RateLimit-Remaining": ABSENT},
            ),
        ),
        {"headers": "ietf"},
    ),
    Case(
        "headers-both",
        (
            Step(
                expect={"RateLimit": '"default";r=1;t=60', "X-RateLimit-Remaining": "1"}
            ),
            ok(0),
            blocked(),
        ),
        {"headers": "both"},
    ),
    Case(
        "headers-none",
        (
            Step(counted=False),
            Step(counted=False),
            Step(
                status=429, counted=False, body=TOO_MANY, expect={"Retry-After": "60"}
            ),
        ),
        {"headers": None},
    ),
    Case(
        "detail",
        (ok(1), ok(0), blocked(body={"detail": "Slow down"})),
        {"detail": "Slow down"},
    ),
    Case(
        "on-blocked",
        (ok(1), ok(0), blocked(status=418, body=None, text="slow down")),
        {"on_blocked": True},
    ),
    Case(
        "exempt-prefixes",
        (
            ok(0),
            free("/health"),
            free("/health/"),
            free("/health/live"),
            free("/health//live"),
            # Flask answers a doubled slash with a redirect: still uncounted.
            free("//health", status=None),
            blocked(path="/healthz"),
            blocked(path="/api/health"),
        ),
        {"exempt": ["/health"]},
        limit=1,
    ),
    Case(
        "exempt-dot-segments-never-match",
        (
            ok(0),
            blocked(path="/health/../api/users"),
            blocked(path="/health/./x"),
            blocked(path="/./health"),
            free("/health/x"),
        ),
        {"exempt": ["/health"]},
        limit=1,
    ),
    Case(
        "preflight-answered-without-app-code-is-free",
        (
            *[free("/plain", method="OPTIONS", headers=PREFLIGHT, status=None)] * 3,
            ok(1, path="/plain"),
        ),
        tags=frozenset({"preflight"}),
    ),
    Case(
        "preflight-running-app-code-is-counted",
        (
            Step(path="/cors", method="OPTIONS", headers=PREFLIGHT),
            Step(path="/cors", method="OPTIONS", headers=PREFLIGHT),
            blocked(path="/cors", method="OPTIONS", headers=PREFLIGHT),
        ),
        tags=frozenset({"preflight"}),
    ),
    Case(
        "preflight-counted-with-exempt-options-false",
        (
            Step(path="/plain", method="OPTIONS", headers=PREFLIGHT, status=None),
            Step(path="/plain", method="OPTIONS", headers=PREFLIGHT, status=None),
            blocked(path="/plain", method="OPTIONS", headers=PREFLIGHT),
        ),
        {"exempt_options": False},
        tags=frozenset({"preflight"}),
    ),
    Case(
        "plain-options-is-counted",
        (
            Step(path="/plain", method="OPTIONS", status=None),
            Step(path="/plain", method="OPTIONS", status=None),
            blocked(path="/plain", method="OPTIONS"),
        ),
        tags=frozenset({"preflight"}),
    ),
    Case(
        "forwarding-headers-ignored-without-trusted-proxies",
        tuple(
            _counted(i, headers=(("X-Forwarded-For", f"198.51.100.{i}"),))
            for i in range(3)
        ),
    ),
    Case(
        "trusted-proxy-x-forwarded-for-beats-a-forged-forwarded",
        _through_proxy({"X-Forwarded-For": f"6.6.6.6, {CLIENT}"}),
        {"trusted_proxies": [PROXY]},
    ),
    Case(
        "trusted-proxy-forwarded",
        _through_proxy({"Forwarded": f'for="{CLIENT}";proto=https'}),
        {"trusted_proxies": [PROXY], "forwarded_header": "forwarded"},
    ),
    Case(
        "trusted-proxy-x-real-ip",
        _through_proxy({"X-Real-IP": CLIENT}),
        {"trusted_proxies": [PROXY], "forwarded_header": "x-real-ip"},
    ),
    Case(
        "untrusted-peer-cannot-forward",
        (
            ok(1, peer="198.51.100.1", headers=(("X-Forwarded-For", "1.1.1.1"),)),
            ok(0, peer="198.51.100.1", headers=(("X-Forwarded-For", "2.2.2.2"),)),
            blocked(peer="198.51.100.1"),
        ),
        {"trusted_proxies": [PROXY]},
    ),
    Case(
        "ipv4-mapped-ipv6-is-keyed-as-ipv4",
        (
            ok(1, peer="::ffff:198.51.100.7"),
            ok(0, peer="198.51.100.7"),
            blocked(peer="::ffff:198.51.100.7"),
        ),
    ),
    Case(
        "ipv6-prefix-groups-clients",
        (
            ok(1, peer="2001:db8::1"),
            ok(0, peer="2001:db8::2"),
            blocked(peer="2001:db8::3"),
            ok(1, peer="2001:db8:0:1::1"),
        ),
        {"ipv6_prefix": 64},
    ),
    Case(
        "missing-address-is-an-error-not-a-shared-key",
        (Step(peer=None, raises="no client address"),),
    ),
    Case(
        "max-keys",
        (ok(1), blocked(peer="198.51.100.2"), ok(0)),
        {"max_keys": 1},
    ),
    Case(
        "allow-listed-network-passes-unlimited-without-headers",
        (
            *[free("/")] * 3,
            free("/", peer="2001:db8::7"),
            ok(0, peer="198.51.100.1"),
            blocked(peer="198.51.100.1"),
            free("/"),
        ),
        {"allow_networks": ["203.0.113.0/24", "2001:db8::/32"]},
        limit=1,
    ),
    Case(
        "deny-listed-network-gets-403",
        (
            Step(status=403, counted=False, body={"detail": "Forbidden"}),
            Step(
                peer="::ffff:203.0.113.9",
                status=403,
                counted=False,
                body={"detail": "Forbidden"},
            ),
            ok(1, peer="198.51.100.1"),
        ),
        {"deny_networks": [CLIENT], "allow_networks": ["203.0.113.0/24"]},
    ),
    Case(
        "a-forged-x-forwarded-for-cannot-reach-an-allow-listed-network",
        tuple(
            _counted(
                i,
                peer=PROXY,
                headers=(("X-Forwarded-For", f"192.0.2.{i}, {CLIENT}"),),
            )
            for i in range(3)
        ),
        {"trusted_proxies": [PROXY], "allow_networks": ["192.0.2.0/24"]},
    ),
    Case(
        "shadow-mode-refuses-nothing-and-reports-the-real-allowance",
        (ok(1), ok(0), ok(0), ok(0)),
        {"shadow": True},
    ),
    Case(
        "storage-failure-with-on-error-raise-answers-503",
        (
            Step(
                status=503,
                counted=False,
                body={"detail": "Rate limiter unavailable"},
                expect={"Retry-After": ABSENT},
            ),
        ),
        {"storage": "redis://127.0.0.1:1/0", "on_error": "raise", "timeout": 0.05},
    ),
]
