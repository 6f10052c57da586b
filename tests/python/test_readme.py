"""Every Python snippet in README.md runs as shown."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from test_docs import run_blocks

README = Path(__file__).resolve().parents[2] / "README.md"
ALL_BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
# A one-line block like `RateLimiter(limit: int, ...)` is a signature to read,
# not code to run; it is checked against the real signature instead.
SIGNATURES = [b for b in ALL_BLOCKS if re.fullmatch(r"RateLimiter\(.*: .*\)\n", b)]
BLOCKS = [b for b in ALL_BLOCKS if b not in SIGNATURES]


def test_documented_signature_matches_the_class() -> None:
    from rust_py_rate_limit import RateLimiter

    assert len(SIGNATURES) == 1
    names = re.findall(r"(\w+):", SIGNATURES[0])
    assert names == list(inspect.signature(RateLimiter).parameters)


def test_readme_has_snippets() -> None:
    assert len(BLOCKS) >= 10


def run_all() -> list[dict[str, Any]]:
    """Runs every block as a reader would (see `test_docs.run_blocks`): the
    seed's middleware snippet adds to the app of the snippet above it."""
    return run_blocks(BLOCKS, README)


def defining(name: str) -> dict[str, Any]:
    """The first program that defines ``name``."""
    return next(ns for ns in run_all() if name in ns)


def test_every_snippet_runs(capsys: pytest.CaptureFixture[str]) -> None:
    run_all()
    assert capsys.readouterr().out.splitlines()[0] == "allowed"
    login = defining("login")["login"]
    assert login() == "ok"


def test_fastapi_manual_check_snippet_limits() -> None:
    from fastapi.testclient import TestClient

    client = TestClient(defining("app")["app"])
    codes = [client.get("/api/users").status_code for _ in range(101)]
    assert codes == [200] * 100 + [429]
    assert client.get("/api/users").json() == {"detail": "Too many requests"}


def test_django_manual_check_snippet_limits() -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure(DEFAULT_CHARSET="utf-8", ALLOWED_HOSTS=["*"])
    from django.test import RequestFactory

    my_view = defining("my_view")["my_view"]
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1")
    codes = [my_view(request).status_code for _ in range(101)]
    assert codes == [200] * 100 + [429]
