"""Flask integration: per-route and app-wide rate limits, decided in Rust.

A `FlaskRateLimiter` is a Flask extension. ``@limiter.limit()`` limits one
route (it wraps the view, so it goes *below* ``@app.get``); with
``default_limits=True`` every route is limited unless marked
``@limiter.exempt``. Requests are keyed per route (the endpoint, never the
raw path, so ``/items/1`` and ``/items/2`` share the limit of
``/items/<id>``) and per client (the client address, taking the one
forwarding header named by ``forwarded_header`` only from
``trusted_proxies``; or your own ``key_func``).

Every limited response carries the rate-limit headers; a refused request
gets a 429 with ``{"detail": "Too many requests"}`` and ``Retry-After``
(or whatever ``on_blocked`` returns). Decisions take the synchronous path
(``RateLimiter.decide``): no event loop is involved.

Example:
    >>> from flask import Flask
    >>> from rust_py_rate_limit.flask import FlaskRateLimiter
    >>> app = Flask(__name__)
    >>> limiter = FlaskRateLimiter(app, limit=2, window_seconds=60)
    >>> @app.get("/api/users")
    ... @limiter.limit()
    ... def list_users():
    ...     return {"users": []}
    >>> client = app.test_client()
    >>> [client.get("/api/users").status_code for _ in range(3)]
    [200, 200, 429]
"""

from __future__ import annotations

import functools
import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from flask import Flask, Response, abort, current_app, request
from flask.typing import ResponseReturnValue

from rust_py_rate_limit._http import (
    BLOCKED_STATUS,
    HeaderMode,
    blocked_body,
    check_header_mode,
    rate_limit_headers,
)
from rust_py_rate_limit._native import Decision, ManualClock, RateLimiterCore
from rust_py_rate_limit.exceptions import StorageError
from rust_py_rate_limit.keys import (
    ForwardedHeader,
    TrustedProxies,
    check_forwarded_header,
    check_ipv6_prefix,
    client_address,
    client_address_from_header,
)
from rust_py_rate_limit.limiter import RateLimiter
from rust_py_rate_limit.types import AlgorithmName

__all__ = ["EXTENSION_KEY", "FlaskRateLimiter", "OnBlocked"]

F = TypeVar("F", bound=Callable[..., Any])

#: Where `FlaskRateLimiter.init_app` registers the extension in
#: ``app.extensions``.
EXTENSION_KEY = "rust_py_rate_limit"

#: ``on_blocked(decision)``: returns the response of a refused request (any
#: value a Flask view may return).
OnBlocked = Callable[[Decision], ResponseReturnValue]

# Per-request state lives in the WSGI environ, which belongs to exactly one
# request (``flask.g`` may outlive a request when an app context is pushed).
_ENVIRON_KEY = "rust_py_rate_limit.flask.hits"
# Attributes set on view functions.
_ROUTES_ATTR = "_rust_py_rate_limit_routes"
_EXEMPT_ATTR = "_rust_py_rate_limit_exempt"
_PREFLIGHT_HEADER = "Access-Control-Request-Method"


@dataclass(frozen=True, eq=False)
class _RouteLimit:
    """One ``@limiter.limit(...)`` applied to a view."""

    owner: FlaskRateLimiter
    limiter: RateLimiter
    key_func: Callable[[], str] | None
    cost: int


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return value


def _check_callable(name: str, value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(
            f"{name} must be a callable or None, not {type(value).__name__}"
        )


def _check_cost(cost: object, limiter: RateLimiterCore) -> int:
    if isinstance(cost, bool) or not isinstance(cost, int):
        raise TypeError(f"cost must be an int, not {type(cost).__name__}")
    burst = limiter.burst
    capacity = burst if burst is not None else min(n for n, _ in limiter.limits)
    if not 1 <= cost <= capacity:
        raise ValueError(
            f"cost must be between 1 and the limit ({capacity}), got {cost}"
        )
    return cost


def _trusted(proxies: object) -> TrustedProxies | None:
    if proxies is None or isinstance(proxies, TrustedProxies):
        return proxies
    if not isinstance(proxies, str | Iterable):
        raise TypeError(
            "trusted_proxies must be a TrustedProxies, a str or a list of str, "
            f"not {type(proxies).__name__}"
        )
    return TrustedProxies(proxies)


def _is_static(endpoint: str) -> bool:
    # "static" for the app, "<blueprint>.static" for a blueprint's folder.
    return endpoint.rpartition(".")[2] == "static"


def _reported(
    hits: Sequence[tuple[Decision, RateLimiterCore]],
) -> tuple[Decision, RateLimiterCore]:
    """The hit the headers describe: the refusal, else the tightest."""
    for hit in hits:
        if not hit[0].allowed:
            return hit
    return min(hits, key=lambda hit: hit[0].remaining)


class FlaskRateLimiter:
    """Rate limiting for a Flask app.

    Args:
        app: The app; or None, and call `init_app` later.
        limit: The default rate: units per window (with ``window_seconds``).
        window_seconds: The default rate's window, in whole seconds.
        rate: Instead of ``limit``/``window_seconds``: the default rate as a
            rate string (``"100/minute"``, ``"10/second;1000/hour"``).
        algorithm: The algorithm of the limiters this extension creates
            (``"fixed"``, ``"sliding"``, ``"sliding_log"``,
            ``"token_bucket"``, ``"gcra"``).
        key_func: Called with no arguments during a request (it may read
            ``flask.request``), returns the client's key as a str. Default:
            the client address (see ``trusted_proxies``).
        default_limits: Limit every route (but static files and
            ``@exempt`` views) by the default rate.
        headers: Rate-limit headers: ``"legacy"`` (``X-RateLimit-*``),
            ``"ietf"`` (``RateLimit-Policy``/``RateLimit``), ``"both"``, or
            None. ``Retry-After`` comes with every 429 regardless.
        trusted_proxies: Addresses or networks of your reverse proxies
            (``["10.0.0.0/8"]``). The forwarding header is believed only
            when the direct peer is one of them; the client is then the
            right-most entry that is not a trusted proxy.
        forwarded_header: The one header believed from a trusted proxy:
            ``"x-forwarded-for"`` (default), ``"forwarded"`` or
            ``"x-real-ip"`` (see `rust_py_rate_limit.keys`). The others are
            never read.
        ipv6_prefix: Key IPv6 clients by this prefix (e.g. 64).
        exempt_options: Do not count CORS preflights (``OPTIONS`` with an
            ``Access-Control-Request-Method`` header) that Flask answers
            itself, without the view: those of a route whose view does not
            list ``OPTIONS`` (Flask's automatic ``OPTIONS``). A preflight
            that runs the view (it lists ``OPTIONS``) is counted.
        on_blocked: Called with the refusing `Decision`; its return value
            (any Flask response value) is the response, to which the
            rate-limit headers are added. Default: a JSON 429.
        limiter: A `RateLimiter` to use as the default rate instead of
            ``limit``/``window_seconds``/``rate`` (its algorithm is then
            used for per-route limits too).
        clock: A `ManualClock` for the limiters this extension creates
            (for tests).

    Raises:
        TypeError: An argument has the wrong type, or rate arguments are
            given together with ``limiter``.
        ValueError: An argument has a wrong value.

    Example:
        >>> from flask import Flask
        >>> app = Flask(__name__)
        >>> limiter = FlaskRateLimiter(app, rate="100/minute", default_limits=True)
        >>> @app.get("/health")
        ... @limiter.exempt
        ... def health():
        ...     return "ok"
    """

    def __init__(
        self,
        app: Flask | None = None,
        limit: int | None = None,
        window_seconds: int | None = None,
        *,
        rate: str | Sequence[str] | None = None,
        algorithm: AlgorithmName = "fixed",
        key_func: Callable[[], str] | None = None,
        default_limits: bool = False,
        headers: HeaderMode = "legacy",
        trusted_proxies: TrustedProxies | str | Iterable[str] | None = None,
        forwarded_header: ForwardedHeader = "x-forwarded-for",
        ipv6_prefix: int | None = None,
        exempt_options: bool = True,
        on_blocked: OnBlocked | None = None,
        limiter: RateLimiter | None = None,
        clock: ManualClock | None = None,
        storage: str | None = None,
        key_prefix: str | None = None,
        timeout: float | None = None,
        on_error: Literal["allow", "deny", "raise"] | None = None,
    ) -> None:
        storage_options: dict[str, Any] = {
            name: value
            for name, value in (
                ("storage", storage),
                ("key_prefix", key_prefix),
                ("timeout", timeout),
                ("on_error", on_error),
            )
            if value is not None
        }
        if storage_options and limiter is not None:
            raise TypeError("give either limiter or storage options, not both")
        self._storage_options = storage_options
        if app is not None and not isinstance(app, Flask):
            raise TypeError(
                f"app must be a Flask app or None, not {type(app).__name__}"
            )
        if limiter is not None:
            if not isinstance(limiter, RateLimiter):
                raise TypeError(
                    "limiter must be a RateLimiter or None, "
                    f"not {type(limiter).__name__}"
                )
            if limit is not None or window_seconds is not None or rate is not None:
                raise TypeError(
                    "give either limiter or limit/window_seconds/rate, not both"
                )
            if algorithm != "fixed":
                raise TypeError(
                    "algorithm cannot be given with limiter: the limiter's "
                    f"algorithm ({limiter.algorithm!r}) is used"
                )
            algorithm = limiter.algorithm
            if clock is not None and not isinstance(clock, ManualClock):
                raise TypeError(
                    f"clock must be a ManualClock or None, not {type(clock).__name__}"
                )
        elif limit is not None or window_seconds is not None or rate is not None:
            limiter = RateLimiter(
                limit,
                window_seconds,
                rate=rate,
                algorithm=algorithm,
                clock=clock,
                **storage_options,
            )
        else:
            # No default rate (only per-route rate strings); still check the
            # options those limiters will be made with, now.
            RateLimiter(1, 1, algorithm=algorithm, clock=clock)
        _check_callable("key_func", key_func)
        _check_callable("on_blocked", on_blocked)
        self._default_limits = _check_bool("default_limits", default_limits)
        self._exempt_options = _check_bool("exempt_options", exempt_options)
        if default_limits and limiter is None:
            raise ValueError(
                "default_limits=True needs a default rate: give limit and "
                "window_seconds, rate, or limiter"
            )
        self._limiter = limiter
        self._algorithm: AlgorithmName = algorithm
        self._clock = clock
        self._key_func = key_func
        self._headers = check_header_mode(headers)
        self._trusted_proxies = _trusted(trusted_proxies)
        self._forwarded_header = check_forwarded_header(forwarded_header)
        self._ipv6_prefix = check_ipv6_prefix(ipv6_prefix)
        self._on_blocked = on_blocked
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        if app is not None:
            self.init_app(app)

    @property
    def limiter(self) -> RateLimiter | None:
        """The limiter of the default rate (None without a default rate)."""
        return self._limiter

    def init_app(self, app: Flask) -> None:
        """Installs the extension on ``app``.

        Registers it as ``app.extensions["rust_py_rate_limit"]`` and adds the
        ``before_request`` / ``after_request`` hooks. Calling it again for
        the same app does nothing.

        Args:
            app: The Flask app.

        Raises:
            TypeError: ``app`` is not a Flask app.
            RuntimeError: ``app`` already has another `FlaskRateLimiter`.
        """
        if not isinstance(app, Flask):
            raise TypeError(f"app must be a Flask app, not {type(app).__name__}")
        installed = app.extensions.get(EXTENSION_KEY)
        if installed is self:
            return
        if installed is not None:
            raise RuntimeError("this app already has a FlaskRateLimiter")
        app.extensions[EXTENSION_KEY] = self
        app.before_request(self._before_request)
        app.after_request(self._after_request)
        self._apps.add(app)

    # -- decorators ---------------------------------------------------------

    def limit(
        self,
        rate: str | Sequence[str] | None = None,
        *,
        key_func: Callable[[], str] | None = None,
        cost: int = 1,
    ) -> Callable[[F], F]:
        """Decorator: limits one route. Put it below ``@app.get(...)``.

        Args:
            rate: The route's own rate (``"5/minute"``), with a limiter of
                its own; None uses the extension's default rate (shared
                limiter, still counted per route).
            key_func: The client key for this route, instead of the
                extension's.
            cost: Units each request spends.

        Returns:
            A decorator that wraps the view. A route with a limit of its own
            is not also counted by ``default_limits``.

        Raises:
            TypeError: Used without parentheses, or a bad argument type.
            ValueError: No rate and no default rate, a bad rate string, or a
                cost the limit could never admit.
        """
        if callable(rate):
            raise TypeError(
                "rate must be a rate string or None; write @limiter.limit() "
                "with parentheses"
            )
        if rate is None:
            if self._limiter is None:
                raise ValueError(
                    "rate is required: this FlaskRateLimiter has no default rate"
                )
            route_limiter = self._limiter
        else:
            route_limiter = RateLimiter(
                rate=rate,
                algorithm=self._algorithm,
                clock=self._clock,
                **self._storage_options,
            )
        _check_callable("key_func", key_func)
        route = _RouteLimit(
            self, route_limiter, key_func, _check_cost(cost, route_limiter)
        )

        def decorator(view: F) -> F:
            if not callable(view):
                raise TypeError(f"@limit() decorates a view function, not {view!r}")
            for app in list(self._apps):
                if view in app.view_functions.values():
                    warnings.warn(
                        f"{getattr(view, '__name__', view)!r} is already a view of "
                        f"{app.name!r}: @limiter.limit() above @app.route does "
                        "not limit it; put it below",
                        stacklevel=2,
                    )

            @functools.wraps(view)
            def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
                return self._call_view(route, view, args, kwargs)

            # functools.wraps copied the view's attributes; make a new list so
            # a stacked limit does not add itself to the inner wrapper's.
            routes: tuple[_RouteLimit, ...] = getattr(view, _ROUTES_ATTR, ())
            setattr(wrapper, _ROUTES_ATTR, (*routes, route))
            return cast(F, wrapper)

        return decorator

    def exempt(self, view: F) -> F:
        """Decorator: exempts a view from ``default_limits``.

        A limit of the view's own (``@limiter.limit(...)``) still applies.
        Works above or below ``@app.get(...)``.

        Args:
            view: The view function.

        Returns:
            The same function, marked.
        """
        if not callable(view):
            raise TypeError(f"@exempt decorates a view function, not {view!r}")
        setattr(view, _EXEMPT_ATTR, True)
        return view

    # -- request hooks ---------------------------------------------------

    def _call_view(
        self,
        route: _RouteLimit,
        view: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> ResponseReturnValue:
        """The wrapper of a limited view: decides, then calls the view."""
        if not self._installed_on_current_app():
            raise RuntimeError(
                "this FlaskRateLimiter is not installed on "
                f"{current_app.name!r}: call limiter.init_app(app)"
            )
        # The view is called, so its body runs: every request is counted, a
        # CORS preflight included (the exemption is only for the preflights
        # Flask answers without calling the view, see _before_request).
        decision = self._hit(route)
        if not decision.allowed:
            return self._blocked(decision)
        # An async view runs through Flask's own ensure_sync, as without us.
        result: ResponseReturnValue = current_app.ensure_sync(view)(*args, **kwargs)
        return result

    def _installed_on_current_app(self) -> bool:
        # A helper, so that mypy does not narrow ``self`` to the Any of
        # ``app.extensions``.
        installed: object = current_app.extensions.get(EXTENSION_KEY)
        return installed is self

    def _exempt_preflight(self) -> bool:
        return (
            self._exempt_options
            and request.method == "OPTIONS"
            and _PREFLIGHT_HEADER in request.headers
        )

    @staticmethod
    def _automatic_options() -> bool:
        """Whether Flask answers this request itself, without the view: an
        ``OPTIONS`` to a rule with ``provide_automatic_options`` (the view
        does not list ``OPTIONS``), as ``Flask.dispatch_request`` does."""
        return request.method == "OPTIONS" and bool(
            getattr(request.url_rule, "provide_automatic_options", False)
        )

    def _client_key(self, key_func: Callable[[], str] | None) -> str:
        func = key_func or self._key_func
        if func is not None:
            key = func()
            if not isinstance(key, str):
                raise TypeError(f"key_func must return a str, not {type(key).__name__}")
            return key
        if not self._trusted_proxies:
            # Forwarding headers are ignored anyway: do not read them.
            return client_address(request.remote_addr, ipv6_prefix=self._ipv6_prefix)
        # Only the configured header is read: the client cannot pick.
        return client_address_from_header(
            request.remote_addr,
            request.headers.getlist(self._forwarded_header),
            forwarded_header=self._forwarded_header,
            trusted_proxies=self._trusted_proxies,
            ipv6_prefix=self._ipv6_prefix,
        )

    def _decide(
        self, limiter: RateLimiter, key_func: Callable[[], str] | None, cost: int
    ) -> Decision:
        key = f"{request.endpoint}:{self._client_key(key_func)}"
        try:
            decision = limiter.decide(key, cost)
        except StorageError:
            # A storage error never escapes the extension.
            abort(
                Response(
                    b'{"detail": "Rate limiter unavailable"}',
                    status=503,
                    mimetype="application/json",
                )
            )
        hits: list[tuple[Decision, RateLimiterCore]] = request.environ.setdefault(
            _ENVIRON_KEY, []
        )
        hits.append((decision, limiter))
        return decision

    def _hit(self, route: _RouteLimit) -> Decision:
        return self._decide(route.limiter, route.key_func, route.cost)

    def _blocked(self, decision: Decision) -> Response:
        if self._on_blocked is None:
            return Response(
                blocked_body(), status=BLOCKED_STATUS, mimetype="application/json"
            )
        value = self._on_blocked(decision)
        if value is None:
            raise TypeError("on_blocked returned None; it must return a response")
        return current_app.make_response(value)

    def _before_request(self) -> Response | None:
        endpoint = request.endpoint
        if endpoint is None:
            # No route matched (404, 405, redirect): no view runs.
            return None
        automatic = self._automatic_options()
        if automatic and self._exempt_preflight():
            # A CORS preflight Flask answers itself: no view runs.
            return None
        view = current_app.view_functions.get(endpoint)
        routes: tuple[_RouteLimit, ...] = getattr(view, _ROUTES_ATTR, ())
        if routes:
            if automatic:
                # Flask answers this OPTIONS itself: the wrapper will not run.
                for route in reversed(routes):
                    if route.owner is self:
                        decision = self._hit(route)
                        if not decision.allowed:
                            return self._blocked(decision)
            # Otherwise the wrapper decides, once, when the view is called.
            return None
        if (
            self._default_limits
            and self._limiter is not None
            and not getattr(view, _EXEMPT_ATTR, False)
            and not _is_static(endpoint)
        ):
            decision = self._decide(self._limiter, None, 1)
            if not decision.allowed:
                return self._blocked(decision)
        return None

    def _after_request(self, response: Response) -> Response:
        hits = request.environ.get(_ENVIRON_KEY)
        if hits:
            decision, limiter = _reported(hits)
            for name, value in rate_limit_headers(decision, limiter, self._headers):
                response.headers[name] = value
        return response
