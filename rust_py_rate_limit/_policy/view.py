"""The framework-neutral view of one HTTP request that the policy reads.

An adapter builds one per request from its framework's request. It should
be cheap: a class with ``__slots__`` whose attributes may be properties read
lazily from the framework's request (the policy reads only what its options
need: ``path`` for exempt prefixes, ``method`` and the preflight header for
CORS, ``peer`` and the forwarding header for the client address, ``user``
for ``key_func="user"``, ``request`` for user callbacks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

__all__ = ["RequestView", "View"]


class RequestView(Protocol):
    """What the policy reads of a request.

    Attributes:
        method: The HTTP method, upper case (``"GET"``).
        path: The path as the framework routes it (percent-decoded once).
        peer: The address of the direct peer (the TCP connection), or None
            when there is none (a Unix socket).
        route: The route's id for per-route keys (a path template, an
            endpoint, a view's name); ``""`` when unknown.
        user: The authenticated user's identity as a str, None when
            anonymous (read only for ``key_func="user"``).
        request: The framework's own request, handed to user callbacks
            (``key_func``, an ``exempt`` predicate).
    """

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def peer(self) -> str | None: ...

    @property
    def route(self) -> str: ...

    @property
    def user(self) -> str | None: ...

    @property
    def request(self) -> Any: ...

    def header(self, name: str) -> Sequence[str]:
        """The values of header ``name`` (given in lower case), in order."""
        ...


class View:
    """A plain `RequestView`, for tests and for callers that have every part
    at hand.

    Args:
        method: The HTTP method.
        path: The routed path.
        peer: The direct peer's address.
        headers: Header values by lower-case name (a mapping of name to a
            list of values) or ``(name, value)`` pairs.
        route: The route's id.
        user: The authenticated user's identity.
        request: The framework's request, for callbacks.
    """

    __slots__ = ("_headers", "method", "path", "peer", "request", "route", "user")

    def __init__(
        self,
        method: str = "GET",
        path: str = "/",
        peer: str | None = None,
        *,
        headers: Mapping[str, Sequence[str]] | Iterable[tuple[str, str]] = (),
        route: str = "",
        user: str | None = None,
        request: Any = None,
    ) -> None:
        self.method = method
        self.path = path
        self.peer = peer
        self.route = route
        self.user = user
        self.request = request
        pairs = (
            [(k, v) for k, values in headers.items() for v in values]
            if isinstance(headers, Mapping)
            else list(headers)
        )
        self._headers = [(k.lower(), v) for k, v in pairs]

    def header(self, name: str) -> list[str]:
        """The values of header ``name`` (lower case), in order."""
        return [v for k, v in self._headers if k == name]

    def __repr__(self) -> str:
        return f"View({self.method!r}, {self.path!r}, peer={self.peer!r})"
