"""Flask integration: per-route and app-wide rate limits, decided in Rust.

A `FlaskRateLimiter` is a Flask extension: ``@limiter.limit()`` limits one
route (it wraps the view, so it goes *below* ``@app.get``); with
``default_limits=True`` every route is limited unless exempt. Requests are
keyed per route (the endpoint, never the raw path) and per client. The
options are those of the request policy (`rust_py_rate_limit._policy`); this
module translates Flask requests and responses to it (see the README).
"""

from __future__ import annotations

import functools
import inspect
import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from flask import Flask, Request, Response, current_app, request
from flask.typing import ResponseReturnValue

from rust_py_rate_limit._native import Decision
from rust_py_rate_limit._policy import (
    LimitOptions,
    OptionValueError,
    RequestPolicy,
    Rule,
    Verdict,
    check_names,
)
from rust_py_rate_limit._policy.options import check_bool, check_callable
from rust_py_rate_limit._policy.wsgi import VerdictHeaders
from rust_py_rate_limit.limiter import RateLimiter

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["EXTENSION_KEY", "FlaskRateLimiter", "OnBlocked"]

F = TypeVar("F", bound=Callable[..., Any])

#: Where `FlaskRateLimiter.init_app` registers the extension in
#: ``app.extensions``.
EXTENSION_KEY = "rust_py_rate_limit"

#: ``on_blocked(decision)``: returns the response of a refused request (any
#: value a Flask view may return).
OnBlocked = Callable[[Decision], ResponseReturnValue]

# Attributes set on view functions: their limits, and @exempt.
_RULES = "_rust_py_rate_limit_routes"
_EXEMPT = "_rust_py_rate_limit_exempt"


class FlaskOptions(LimitOptions, total=False):
    """The keyword options of `FlaskRateLimiter` passed on to the policy."""

    rate: str | Sequence[str] | None
    exempt_options: bool


class FlaskView:
    """The policy's view of a Flask request."""

    __slots__ = ("request",)
    user = None

    def __init__(self, req: Request) -> None:
        self.request = req

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def path(self) -> str:
        return self.request.path

    @property
    def peer(self) -> str | None:
        return self.request.remote_addr

    @property
    def route(self) -> str:
        return self.request.endpoint or ""

    def header(self, name: str) -> list[str]:
        return self.request.headers.getlist(name)


def _no_args(name: str, func: object) -> Callable[[Request], Any] | None:
    """A Flask callback takes no arguments (it reads ``flask.request``); the
    policy hands callbacks the request."""
    check_callable(name, func)
    if func is None:
        return None
    return lambda _request: cast(Callable[[], Any], func)()


class FlaskRateLimiter:
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
            key_func=_no_args("key_func", key_func),
            exempt=_no_args("exempt", exempt) if callable(exempt) else exempt,
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
                key=_no_args("key", key) if callable(key) else key,
                key_func=_no_args("key_func", key_func),
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
            call: Callable[..., Any] = view
            if inspect.iscoroutinefunction(view):

                def call(*args: Any, **kwargs: Any) -> Any:
                    return current_app.ensure_sync(view)(*args, **kwargs)

            @functools.wraps(view)
            def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
                req = request._get_current_object()  # type: ignore[attr-defined]
                hits = req.environ.get(self._hits)
                if hits is None:
                    hits = self._hits_of(req)
                # The view runs, so every request is counted, a CORS preflight
                # included (only those Flask answers itself are exempt).
                verdict = rule.decide(FlaskView(req))
                if verdict.decision is not None:
                    hits.append(verdict)
                return (
                    call(*args, **kwargs) if verdict.passes else self._refuse(verdict)
                )

            # A new tuple: a stacked limit must not add itself to the inner one's.
            setattr(wrapper, _RULES, (*getattr(view, _RULES, ()), rule))
            return cast(F, wrapper)

        return decorator

    def exempt(self, view: F) -> F:
        """Decorator: exempts a view from ``default_limits`` (a limit of its
        own still applies). Works above or below ``@app.get(...)``."""
        if not callable(view):
            raise TypeError(f"@exempt decorates a view function, not {view!r}")
        setattr(view, _EXEMPT, True)
        return view

    def _hits_of(self, req: Request) -> list[Verdict]:
        """The verdict list of a request that did not come through the app's
        WSGI callable (``app.test_request_context()``, for example)."""
        if current_app.extensions.get(EXTENSION_KEY) is not self:
            raise RuntimeError(
                "this FlaskRateLimiter is not installed on "
                f"{current_app.name!r}: call limiter.init_app(app)"
            )
        hits: list[Verdict] = req.environ.setdefault(self._hits, [])
        return hits

    def _decide(self, rules: Iterable[Rule], req: Request) -> Response | None:
        hits = req.environ.get(self._hits)
        if hits is None:
            hits = self._hits_of(req)
        for rule in rules:
            verdict = rule.decide(FlaskView(req))
            if verdict.decision is not None:
                hits.append(verdict)
            if not verdict.passes:
                return self._refuse(verdict)
        return None

    def _refuse(self, verdict: Verdict) -> Response:
        on_blocked = self.policy.on_blocked
        if not verdict.limited or on_blocked is None:
            return Response(
                verdict.body, status=verdict.status, mimetype="application/json"
            )
        value = on_blocked(verdict.decision)
        if value is None:
            raise TypeError("on_blocked returned None; it must return a response")
        return current_app.make_response(value)

    def _default_applies(self, view: object, req: Request) -> bool:
        return not (
            self._default is None
            or getattr(view, _EXEMPT, False)
            or str(req.endpoint).rpartition(".")[2] == "static"  # any blueprint's
            or self.policy.exempt(FlaskView(req))
        )

    def _before_request(self, app: Flask) -> Response | None:
        """With ``default_limits``: the default rate for a view without a
        limit of its own (the wrapper of a limited view decides itself)."""
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        endpoint = req.endpoint
        if endpoint is None or (
            req.method == "OPTIONS"
            and getattr(req.url_rule, "provide_automatic_options", False)
        ):
            # No route matched (404, 405, redirect) and no view runs; or
            # Flask answers it: _automatic_options decides.
            return None
        view = app.view_functions.get(endpoint)
        if getattr(view, _RULES, ()) or not self._default_applies(view, req):
            return None
        assert self._default is not None
        return self._decide((self._default,), req)

    def _automatic_options(self, app: Flask) -> Response | None:
        """An OPTIONS that Flask answers itself, the view unrun: counted by
        the view's own limits, else the default one; a preflight is exempt."""
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        if self.policy.preflight(FlaskView(req)):
            return None
        view = app.view_functions.get(req.endpoint or "")
        rules: tuple[Rule, ...] = getattr(view, _RULES, ())
        if rules:
            rules = tuple(r for r in reversed(rules) if r.policy is self.policy)
        elif self._default_applies(view, req):
            assert self._default is not None
            rules = (self._default,)
        return self._decide(rules, req)
