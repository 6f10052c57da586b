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

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import HTTPException, Request, Response

from rust_py_rate_limit._http import (
    BLOCKED_BODY,
    BLOCKED_STATUS,
    HeaderMode,
    check_header_mode,
    rate_limit_headers,
)
from rust_py_rate_limit.exceptions import StorageError
from rust_py_rate_limit.keys import (
    ForwardedHeader,
    TrustedProxies,
    check_forwarded_header,
    check_ipv6_prefix,
    client_address_from_header,
)
from rust_py_rate_limit.limiter import RateLimiter
from rust_py_rate_limit.starlette import RateLimitMiddleware, build_limiter, check_cost

__all__ = ["RateLimit", "RateLimitMiddleware"]


class RateLimit:
    """A FastAPI dependency limiting one route: ``Depends(RateLimit("10/minute"))``.

    Args:
        rate: A rate string such as ``"10/minute"`` (or compound).
        limit: Instead of ``rate``: requests per window (with
            ``window_seconds``).
        window_seconds: The window length in seconds.
        limiter: A `RateLimiter` to share instead of rate/limit.
        algorithm: Algorithm of the limiter built from rate/limit.
        key_func: ``(request) -> str`` (or an awaitable of one) for the
            client part of the key; by default the client address.
        headers: ``"legacy"`` (default), ``"ietf"``, ``"both"`` or None.
        trusted_proxies: Proxies whose forwarding header is believed.
        forwarded_header: The one header believed from a trusted proxy:
            ``"x-forwarded-for"`` (default), ``"forwarded"`` or
            ``"x-real-ip"``.
        ipv6_prefix: Key IPv6 clients by this prefix (e.g. 64).
        cost: Units each request spends (at most the limiter's capacity).

    Raises:
        TypeError: An option has the wrong type.
        ValueError: An option has a wrong value.
        storage: ``"memory"`` (default) or a ``redis://`` URL, with
            ``key_prefix``, ``timeout`` and ``on_error`` as for `RateLimiter`.
    """

    def __init__(
        self,
        rate: str | list[str] | None = None,
        *,
        limit: int | None = None,
        window_seconds: int | None = None,
        limiter: RateLimiter | None = None,
        algorithm: str = "fixed",
        key_func: Callable[[Request], str | Awaitable[str]] | None = None,
        headers: HeaderMode = "legacy",
        trusted_proxies: Iterable[str] | TrustedProxies | None = None,
        forwarded_header: ForwardedHeader = "x-forwarded-for",
        ipv6_prefix: int | None = None,
        cost: int = 1,
        storage: str | None = None,
        key_prefix: str | None = None,
        timeout: float | None = None,
        on_error: str | None = None,
    ) -> None:
        self.limiter = build_limiter(
            limiter,
            limit,
            window_seconds,
            rate,
            algorithm,
            storage=storage,
            key_prefix=key_prefix,
            timeout=timeout,
            on_error=on_error,
        )
        if key_func is not None and not callable(key_func):
            raise TypeError("key_func must be callable")
        self.key_func = key_func
        self.headers = check_header_mode(headers)
        self.trusted_proxies = TrustedProxies(trusted_proxies)
        self.forwarded_header = check_forwarded_header(forwarded_header)
        self.ipv6_prefix = check_ipv6_prefix(ipv6_prefix)
        # Fail at start-up, not on every request.
        self.cost = check_cost(cost, self.limiter.capacity)

    async def _client(self, request: Request) -> str:
        if self.key_func is not None:
            result: Any = self.key_func(request)
            return str(await result if inspect.isawaitable(result) else result)
        peer = request.client.host if request.client else None
        # Only the configured header is read: the client cannot pick.
        return client_address_from_header(
            peer,
            request.headers.getlist(self.forwarded_header)
            if self.trusted_proxies
            else (),
            forwarded_header=self.forwarded_header,
            trusted_proxies=self.trusted_proxies,
            ipv6_prefix=self.ipv6_prefix,
        )

    async def __call__(self, request: Request, response: Response) -> None:
        route = request.scope.get("route")
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        # Keyed on the route's template, so /items/1 and /items/2 share it.
        key = f"{template or request.url.path}\x00{await self._client(request)}"
        try:
            decision = await self.limiter.adecide(key, self.cost)
        except StorageError:
            raise HTTPException(
                status_code=503, detail="Rate limiter unavailable"
            ) from None
        headers = rate_limit_headers(decision, self.limiter, self.headers)
        if not decision.allowed:
            raise HTTPException(
                status_code=BLOCKED_STATUS,
                detail=BLOCKED_BODY["detail"],
                headers=dict(headers),
            )
        for name, value in headers:
            response.headers[name] = value
