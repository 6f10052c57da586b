"""Request paths: normalization and exempt prefixes.

Prefixes match whole segments after repeated slashes are collapsed:
``"/health"`` exempts ``/health``, ``/health/``, ``//health`` and
``/health/live``, not ``/healthz``. A path with a ``.`` or ``..`` segment
is never exempt, so ``/health/../api`` cannot borrow an exemption. Paths are
compared as the framework routes them (percent-decoded once); they are not
decoded again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rust_py_rate_limit._policy.options import OptionTypeError, OptionValueError

__all__ = [
    "ExemptPaths",
    "check_exempt",
    "exempt_paths",
    "has_dot_segment",
    "normalize_path",
]


def normalize_path(path: str) -> str:
    """A path with repeated slashes collapsed and no trailing slash."""
    while "//" in path:
        path = path.replace("//", "/")
    return path.rstrip("/") or "/"


def has_dot_segment(path: str) -> bool:
    """Whether ``path`` has a ``.`` or ``..`` segment."""
    return "." in path and any(s in (".", "..") for s in path.split("/"))


class ExemptPaths:
    """A matcher of exempt path prefixes: ``matcher(path) -> bool``.

    Args:
        paths: Prefixes, each a str starting with ``/`` and without ``.``
            or ``..`` segments.

    Raises:
        OptionValueError: A prefix is not such a str.
    """

    __slots__ = ("_everything", "_prefixes", "_subtrees")

    def __init__(self, paths: Iterable[object]) -> None:
        prefixes = []
        for path in paths:
            if not isinstance(path, str) or not path.startswith("/"):
                raise OptionValueError(
                    "exempt",
                    f"exempt paths must be str starting with '/', got {path!r}",
                )
            if has_dot_segment(path):
                raise OptionValueError(
                    "exempt",
                    f"exempt paths may not have '.' or '..' segments, got {path!r}",
                )
            prefixes.append(normalize_path(path))
        self._prefixes = frozenset(prefixes)
        self._subtrees = tuple(p + "/" for p in prefixes if p != "/")
        self._everything = "/" in self._prefixes

    def __bool__(self) -> bool:
        return bool(self._prefixes)

    def __call__(self, path: str) -> bool:
        path = normalize_path(path if path.startswith("/") else "/" + path)
        if has_dot_segment(path):
            return False
        return (
            self._everything
            or path in self._prefixes
            or path.startswith(self._subtrees)
        )

    def __repr__(self) -> str:
        return f"ExemptPaths({sorted(self._prefixes)!r})"


def check_exempt(
    spec: object,
) -> tuple[ExemptPaths | None, Callable[[Any], object] | None]:
    """The ``exempt`` option: paths (a str or a list of them) or a predicate.

    Returns:
        ``(paths, None)``, ``(None, predicate)``, or ``(None, None)``.
    """
    if spec is None:
        return None, None
    if callable(spec):
        return None, spec
    if isinstance(spec, str):
        spec = [spec]
    if not isinstance(spec, Iterable):
        raise OptionTypeError(
            "exempt",
            "exempt must be a list of paths or a predicate (request) -> bool, "
            f"not {type(spec).__name__}",
        )
    paths = ExemptPaths(spec)
    return (paths if paths else None), None


def exempt_paths(exempt: Iterable[str] | None) -> Callable[[str], bool] | None:
    """A matcher for exempt paths (a str or a list): each exempts itself and
    everything below it. None when there are none."""
    if callable(exempt):
        raise OptionTypeError("exempt", "exempt_paths takes paths, not a predicate")
    return check_exempt(exempt)[0]
