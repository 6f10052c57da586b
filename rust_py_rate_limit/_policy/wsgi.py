"""The WSGI side of rendering: the verdicts of a request, whose headers join
the response's as it starts.

A WSGI adapter (Flask's) wraps its app in `VerdictHeaders` and appends each
verdict that took a decision to ``environ[key]``; one middleware frame and a
list extended once cost less than a framework's per-request hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rust_py_rate_limit._policy.render import HEADER_NAMES, Verdict, reported

__all__ = ["VerdictHeaders", "merge_headers"]

Headers = list[tuple[str, str]]


class VerdictHeaders:
    """WSGI middleware: ``environ[key]`` is this request's list of verdicts;
    the headers of those it holds (`reported`, for several) are added to the
    response's as it starts.

    Args:
        app: The WSGI app it wraps.
        key: The environ key of the verdict list.
    """

    __slots__ = ("app", "key")

    def __init__(self, app: Callable[..., Any], key: str) -> None:
        self.app = app
        self.key = key

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        hits: list[Verdict] = []
        environ[self.key] = hits

        def start(status: str, headers: Headers, exc_info: Any = None) -> Any:
            if hits:
                pairs = (hits[0] if len(hits) == 1 else reported(hits)).headers
                if pairs:
                    headers = merge_headers(headers, pairs)
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


def merge_headers(headers: Headers, pairs: Headers) -> Headers:
    """``headers`` with the rate-limit ``pairs``, which replace any of the
    same name (in the usual case, none: then appended in one step)."""
    if HEADER_NAMES.isdisjoint([name.lower() for name, _ in headers]):
        headers.extend(pairs)
        return headers
    names = {name.lower() for name, _ in pairs}
    return [h for h in headers if h[0].lower() not in names] + pairs
