"""Rate limiting for FastAPI: the ASGI middleware and a per-route dependency.

Example:
    from fastapi import Depends, FastAPI
    from rust_py_rate_limit.fastapi import RateLimit, RateLimitMiddleware

    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, limit=100, window_seconds=60)

    @app.get("/search", dependencies=[Depends(RateLimit("10/minute"))])
    async def search() -> dict[str, list[str]]:
        return {"results": []}

`RateLimitMiddleware` is the pure ASGI middleware of
`rust_py_rate_limit.starlette`. `RateLimit` limits one route: it keys on the
route's path template (``/items/{item_id}``), so every URL of the route
shares the limit, sets the rate-limit headers on the response, and raises a
429 ``HTTPException`` when refused; the endpoint needs no extra parameters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

from fastapi import HTTPException, Request, Response

from rust_py_rate_limit._asgi import ScopeView
from rust_py_rate_limit._policy import LimitOptions, RequestPolicy, Rule, check_names
from rust_py_rate_limit.limiter import RateLimiter
from rust_py_rate_limit.starlette import RateLimitMiddleware

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["RateLimit", "RateLimitMiddleware"]


class RateLimitOptions(LimitOptions, total=False):
    """The keyword options of `RateLimit`."""

    limit: int | None
    window_seconds: int | None
    key_func: Callable[[Request], str | Awaitable[str]] | Literal["user"] | None


class RateLimit:
    """A FastAPI dependency limiting one route: ``Depends(RateLimit("10/minute"))``.

    Args:
        rate: A rate string such as ``"10/minute"`` (or compound); or
            ``limit`` and ``window_seconds``; or ``limiter`` to share one.
        algorithm: Algorithm of the limiter built from rate/limit.
        key_func: ``(request) -> str`` (or an awaitable of one), or
            ``"user"``, for the client part of the key; by default the client
            address.
        headers: ``"legacy"`` (default), ``"ietf"``, ``"both"`` or None.
        trusted_proxies, forwarded_header, ipv6_prefix: The client address
            (see `rust_py_rate_limit.keys`).
        cost: Units each request spends (at most the limiter's capacity).
        detail: The ``detail`` of the 429.
        max_keys, cleanup_interval: As for `RateLimiter`.
        storage, key_prefix, timeout, on_error, pg_schema, pg_unlogged: A
            ``redis://`` or ``postgresql://`` storage; a storage failure with
            ``on_error="raise"`` answers 503.

    Raises:
        TypeError: An option has the wrong type.
        ValueError: An option has a wrong value.
    """

    def __init__(
        self,
        rate: str | list[str] | None = None,
        **options: Unpack[RateLimitOptions],
    ) -> None:
        check_names(options, "RateLimit", RateLimitOptions)
        policy = RequestPolicy(
            rate=rate,
            caller="RateLimit",
            # Keyed on the route's template, so /items/1 and /items/2 share it.
            route_separator="\x00",
            **options,
        )
        assert policy.rule is not None
        self.rule: Rule = policy.rule
        self.limiter: RateLimiter = self.rule.limiter
        self.cost = self.rule.cost

    async def __call__(self, request: Request, response: Response) -> None:
        route = request.scope.get("route")
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        view = ScopeView(
            request.scope, request.receive, template or request.url.path, request
        )
        verdict = await self.rule.adecide(view)
        if not verdict.passes:
            raise HTTPException(
                status_code=verdict.status or 500,
                detail=verdict.detail,
                headers=dict(verdict.headers) or None,
            )
        for name, value in verdict.headers:
            response.headers[name] = value
