"""ASGI requests and responses, translated onto the request policy.

Shared by the middleware of `rust_py_rate_limit.starlette` and the route
limits of `rust_py_rate_limit.fastapi`: the request view, the JSON answer,
which headers say a response already describes a limit, and whether a CORS
preflight reaches an endpoint.
"""

from __future__ import annotations

from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.routing import Match, Router
from starlette.types import Receive, Scope, Send

from rust_py_rate_limit._policy import Verdict

__all__ = [
    "CORS",
    "LIMIT_HEADERS",
    "ScopeView",
    "answer",
    "downstream",
    "endpoint_may_run",
    "identity",
]


def identity(user: object) -> str | None:
    """The identity of an authenticated Starlette user (as
    ``AuthenticationMiddleware`` sets ``scope["user"]``), else None."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return str(getattr(user, "identity", None) or getattr(user, "display_name", ""))


class ScopeView:
    """The policy's view of an ASGI HTTP scope (read lazily)."""

    __slots__ = ("_request", "receive", "route", "scope")

    def __init__(
        self, scope: Scope, receive: Receive, route: str = "", request: Any = None
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.route = route
        self._request = request

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def path(self) -> str:
        return str(self.scope["path"])

    @property
    def peer(self) -> str | None:
        client = self.scope.get("client")
        return str(client[0]) if client else None

    @property
    def user(self) -> str | None:
        return identity(self.scope.get("user"))

    @property
    def request(self) -> Request:
        if self._request is None:
            self._request = Request(self.scope, self.receive)
        return self._request  # type: ignore[no-any-return]

    def header(self, name: str) -> list[str]:
        raw = name.encode("latin-1")
        return [v.decode("latin-1") for k, v in self.scope["headers"] if k == raw]


# The names that say a response already describes a rate limit (both
# header modes; not Retry-After, which an app's own 503 may carry).
LIMIT_HEADERS = frozenset((b"x-ratelimit-limit", b"ratelimit-policy", b"ratelimit"))


async def answer(send: Send, verdict: Verdict) -> None:
    """Sends the JSON answer of a verdict that does not pass (429, 503)."""
    body = verdict.body
    await send(
        {
            "type": "http.response.start",
            "status": verdict.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *verdict.raw_headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# What a CORS preflight reaches, found once per middleware: the router that
# will route it, or a CORSMiddleware that answers it.
CORS = "cors"
_MAX_HOPS = 64


def downstream(app: object) -> Router | str | None:
    """Follows ``app`` through middleware (each calling its ``.app``) to the
    router, or to a `CORSMiddleware` (which answers every preflight itself).
    None when the chain leads anywhere else: then nothing is proved."""
    for _ in range(_MAX_HOPS):
        if isinstance(app, CORSMiddleware):
            return CORS
        if isinstance(app, Router):
            return app
        router = getattr(app, "router", None)
        if isinstance(router, Router):  # a Starlette or FastAPI app
            return router
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


def endpoint_may_run(router: Router, scope: Scope) -> bool:
    """Whether routing ``scope`` may run an endpoint (or any app but the
    router's own answers: 405, a slash redirect, its default 404)."""
    partial = False
    try:
        for route in router.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                # A route takes this method (a route listing OPTIONS, a Mount,
                # a class endpoint): its code runs.
                return True
            partial = partial or match is Match.PARTIAL
    except Exception:
        return True
    if partial:
        return False  # 405 Method Not Allowed, from the router
    # No route: a redirect or the router's 404, unless it has a default app.
    return bool(router.default != router.not_found)
