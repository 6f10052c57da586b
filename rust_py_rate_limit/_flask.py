"""Flask requests and responses, translated onto the request policy.

What `rust_py_rate_limit.flask.FlaskRateLimiter` does per request: the
request view, the verdicts of a request (kept in its WSGI environ, whose
headers `rust_py_rate_limit._policy.wsgi.VerdictHeaders` adds), a limited
view's wrapper, the default limit before a view, the OPTIONS requests Flask
answers itself, and the refusal as a Flask response.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from flask import Flask, Request, Response, current_app, request
from flask.typing import ResponseReturnValue

from rust_py_rate_limit._policy import RequestPolicy, Rule, Verdict
from rust_py_rate_limit._policy.options import check_callable

__all__ = ["EXEMPT", "EXTENSION_KEY", "RULES", "FlaskHooks", "FlaskView", "no_args"]

F = TypeVar("F", bound=Callable[..., Any])

#: Where `FlaskRateLimiter.init_app` registers the extension in
#: ``app.extensions``.
EXTENSION_KEY = "rust_py_rate_limit"

# Attributes set on view functions: their limits, and @exempt.
RULES = "_rust_py_rate_limit_routes"
EXEMPT = "_rust_py_rate_limit_exempt"


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


def no_args(name: str, func: object) -> Callable[[Request], Any] | None:
    """A Flask callback takes no arguments (it reads ``flask.request``); the
    policy hands callbacks the request."""
    check_callable(name, func)
    if func is None:
        return None
    return lambda _request: cast(Callable[[], Any], func)()


class FlaskHooks:
    """The per-request half of the extension (its public half, options and
    decorators, is `FlaskRateLimiter`)."""

    policy: RequestPolicy
    #: The default limit (``default_limits=True``), else None.
    _default: Rule | None
    #: The WSGI environ key of a request's verdict list.
    _hits: str

    def _wrap(self, view: F, rule: Rule) -> F:
        """``view`` deciding by ``rule`` before it runs."""
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
            return call(*args, **kwargs) if verdict.passes else self._refuse(verdict)

        # A new tuple: a stacked limit must not add itself to the inner one's.
        setattr(wrapper, RULES, (*getattr(view, RULES, ()), rule))
        return cast(F, wrapper)

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
            or getattr(view, EXEMPT, False)
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
        if getattr(view, RULES, ()) or not self._default_applies(view, req):
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
        rules: tuple[Rule, ...] = getattr(view, RULES, ())
        if rules:
            rules = tuple(r for r in reversed(rules) if r.policy is self.policy)
        elif self._default_applies(view, req):
            assert self._default is not None
            rules = (self._default,)
        return self._decide(rules, req)
