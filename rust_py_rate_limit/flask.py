"""Flask integration: per-route and app-wide rate limits, decided in Rust.

A `FlaskRateLimiter` is a Flask extension: ``@limiter.limit()`` limits one
route (it wraps the view, so it goes *below* ``@app.get``); with
``default_limits=True`` every route is limited unless exempt. Requests are
keyed per route (the endpoint, never the raw path) and per client. The
options are those of the request policy (`rust_py_rate_limit._policy`); this
module translates Flask requests and responses to it (see the README).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, Response
from flask.typing import ResponseReturnValue

from rust_py_rate_limit._flask import (
    EXEMPT,
    EXTENSION_KEY,
    FlaskHooks,
    no_args,
)
from rust_py_rate_limit._native import Decision
from rust_py_rate_limit._policy import (
    LimitOptions,
    OptionValueError,
    RequestPolicy,
    check_names,
)
from rust_py_rate_limit._policy.options import check_bool
from rust_py_rate_limit._policy.wsgi import VerdictHeaders
from rust_py_rate_limit.limiter import RateLimiter

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["EXTENSION_KEY", "FlaskRateLimiter", "OnBlocked"]

F = TypeVar("F", bound=Callable[..., Any])

#: ``on_blocked(decision)``: returns the response of a refused request (any
#: value a Flask view may return).
OnBlocked = Callable[[Decision], ResponseReturnValue]


class FlaskOptions(LimitOptions, total=False):
    """The keyword options of `FlaskRateLimiter` passed on to the policy."""

    rate: str | Sequence[str] | None
    exempt_options: bool


class FlaskRateLimiter(FlaskHooks):
    """Rate limiting for a Flask app.

    Args:
        app: The app; or None, and call `init_app` later.
        limit, window_seconds: The default rate (or ``rate=``, or
            ``limiter=`` to share one); optional when every route names
            its own.
        key_func: ``() -> str``, called during a request (it may read
            ``flask.request``); default: the client address.
        default_limits: Limit every route (but static files, ``@exempt``
            views and ``exempt`` paths) by the default rate.
        exempt: Paths (each exempting itself and everything below it) or a
            predicate ``() -> bool``, lifted from ``default_limits``.
        on_blocked: ``(decision) -> response value`` for a refused request;
            the rate-limit headers are added to it. Default: a JSON 429.
        **options: The request policy's other options (`FlaskOptions`:
            ``rate``, ``algorithm``, ``headers``, ``trusted_proxies``,
            ``exempt_options``, ``cost``, ``detail``, ``clock``,
            ``max_keys``, the storage options...), as for the FastAPI
            middleware; those that build a limiter apply to every limiter
            the extension creates.

    Raises:
        TypeError, ValueError: A bad argument, naming it.
    """

    def __init__(
        self,
        app: Flask | None = None,
        limit: int | None = None,
        window_seconds: int | None = None,
        *,
        key_func: Callable[[], str] | None = None,
        default_limits: bool = False,
        exempt: Iterable[str] | Callable[[], bool] | None = None,
        on_blocked: OnBlocked | None = None,
        **options: Unpack[FlaskOptions],
    ) -> None:
        if app is not None and not isinstance(app, Flask):
            raise TypeError(
                f"app must be a Flask app or None, not {type(app).__name__}"
            )
        check_names(options, "FlaskRateLimiter", FlaskOptions)
        self.policy = RequestPolicy(
            limit=limit,
            window_seconds=window_seconds,
            key_func=no_args("key_func", key_func),
            exempt=no_args("exempt", exempt) if callable(exempt) else exempt,
            on_blocked=on_blocked,
            require_rate=False,
            route_separator=":",
            caller="FlaskRateLimiter",
            **options,
        )
        if check_bool("default_limits", default_limits) and self.policy.rule is None:
            raise ValueError(
                "default_limits=True needs a default rate: give limit and "
                "window_seconds, rate, or limiter"
            )
        self._default = self.policy.rule if default_limits else None
        # Per-request verdicts live in the WSGI environ, which belongs to one
        # request (flask.g may outlive it when an app context is pushed).
        self._hits = f"rust_py_rate_limit.flask.hits.{id(self)}"
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        if app is not None:
            self.init_app(app)

    @property
    def limiter(self) -> RateLimiter | None:
        """The limiter of the default rate (None without a default rate)."""
        return self.policy.limiter

    def init_app(self, app: Flask) -> None:
        """Registers the extension as ``app.extensions["rust_py_rate_limit"]``
        and adds its request hooks (once per app).

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
        # Under the app's WSGI callable: the request's verdict list, and the
        # headers added as the response starts. Flask's request hooks would
        # cost more than the decision (each is dispatched per request).
        app.wsgi_app = VerdictHeaders(app.wsgi_app, self._hits)  # type: ignore[method-assign]
        if self._default is not None:
            # Bound to the app: no current_app proxy on the request path. A
            # plain function, not a partial: Flask asks every hook per request
            # whether it is a coroutine function, which unwraps a partial slowly.
            def before_request() -> Response | None:
                return self._before_request(app)

            app.before_request(before_request)
        # Flask answers an OPTIONS to a rule with automatic options itself,
        # without the view: its documented override point decides for it.
        answer_options = app.make_default_options_response

        def make_default_options_response() -> Response:
            return self._automatic_options(app) or answer_options()

        app.make_default_options_response = make_default_options_response  # type: ignore[method-assign]
        self._apps.add(app)

    def limit(
        self,
        rate: str | Sequence[str] | None = None,
        *,
        key: str | Callable[[], str] | None = None,
        key_func: Callable[[], str] | None = None,
        cost: int | None = None,
    ) -> Callable[[F], F]:
        """Decorator: limits one route. Put it below ``@app.get(...)``.

        Args:
            rate: The route's own rate (``"5/minute"``), with a limiter of
                its own; None: the default rate (still counted per route).
            key: The whole key instead of route and client, as 0.3.1's
                ``limit(key)``: a fixed str or ``() -> str``.
            key_func: The client part of the key, instead of the extension's.
            cost: Units each request spends (default: the extension's).

        Raises:
            TypeError, ValueError: A bad argument; a positional string that
                is not a rate names ``key=``.
        """
        if callable(rate):
            raise TypeError(
                "rate must be a rate string or None; write @limiter.limit() "
                "with parentheses"
            )
        try:
            rule = self.policy.make_rule(
                rate,
                key=no_args("key", key) if callable(key) else key,
                key_func=no_args("key_func", key_func),
                cost=cost,
            )
        except OptionValueError as exc:
            if exc.option != "rate" or not isinstance(rate, str):
                raise
            raise OptionValueError(
                "rate",
                f"{rate!r} is not a rate such as '100/minute' ({exc}); to key "
                "this route by a fixed string, as 0.3.1's limit('login') did, "
                f"pass key={rate!r}",
            ) from exc

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
            return self._wrap(view, rule)

        return decorator

    def exempt(self, view: F) -> F:
        """Decorator: exempts a view from ``default_limits`` (a limit of its
        own still applies). Works above or below ``@app.get(...)``."""
        if not callable(view):
            raise TypeError(f"@exempt decorates a view function, not {view!r}")
        setattr(view, EXEMPT, True)
        return view
