"""The documentation site, built as `make docs` builds it and opened in a
real headless browser (Chromium, driven by Playwright): the home page, the
search and the API reference load without a console error, a page error
or a failed request, and make no request off this machine.

The site is built and browsed once, in the main test run (the interpreter
matrix deselects the ``site`` marker). Outside CI, a machine without the
``docs`` extra or a Chromium skips it, saying what to install; in CI a skip
fails (see conftest)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parents[2]
# What GitHub's REST API answers for the repository and its latest release,
# the fields the theme reads.
GITHUB: dict[str, dict[str, Any]] = {
    "rust-py-rate-limit": {"stargazers_count": 42, "forks_count": 3},
    "latest": {"tag_name": "v0.4.0"},
}
# Debian's and Ubuntu's names for the browser; CHROMIUM overrides.
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _browser() -> str:
    path = os.environ.get("CHROMIUM") or next(
        (p for p in map(shutil.which, BROWSERS) if p), None
    )
    if path is None:
        pytest.skip("no Chromium: apt-get install chromium (or set CHROMIUM=path)")
    return path


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The site built with --strict into a temporary directory and served
    over HTTP on a free loopback port (search needs HTTP, not file://)."""
    pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", out],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=True,
        timeout=300,
    )
    handler = partial(_QuietHandler, directory=str(out))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the docs extra: pip install -e '.[docs]'"
    )
    executable = _browser()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable)
        try:
            yield chromium
        finally:
            chromium.close()


def _expect() -> Any:
    return pytest.importorskip("playwright.sync_api").expect


@dataclass
class Visit:
    """What a page did while it loaded and was used."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    offsite: list[str] = field(default_factory=list)
    github: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.console_errors == []
        assert self.page_errors == []
        assert self.failed == []
        assert self.offsite == []


@pytest.fixture
def page(browser: Any, site: str) -> Iterator[tuple[Any, Visit]]:
    """A fresh page that records console errors, uncaught page errors,
    failed requests and any request that would leave this machine: only
    GitHub's API may be asked (the theme's repository facts), any other
    host is recorded and answered empty (the site must tell no third party
    who reads it)."""
    context = browser.new_context()
    page = context.new_page()
    visit = Visit()

    def console(message: Any) -> None:
        if message.type == "error":
            visit.console_errors.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda e: visit.page_errors.append(str(e)))
    page.on(
        "requestfailed",
        lambda r: visit.failed.append(f"{r.url}: {r.failure}"),
    )

    def route(route: Any) -> None:
        url = route.request.url
        host = urlsplit(url).hostname
        if host == "127.0.0.1" or url.startswith("data:"):
            route.continue_()
        elif host == "api.github.com":
            # The theme shows the repository's stars, forks and latest
            # release from GitHub's REST API; stood in for here with the
            # fields GitHub documents.
            visit.github.append(url)
            route.fulfill(json=GITHUB.get(urlsplit(url).path.rsplit("/", 1)[1], {}))
        else:
            visit.offsite.append(url)
            route.fulfill(status=204)

    page.route("**/*", route)
    try:
        yield page, visit
    finally:
        context.close()


def _open(tab: Any, url: str) -> None:
    """Goes to ``url`` and waits for the network to settle: it must be 200."""
    response = tab.goto(url, wait_until="networkidle")
    assert response is not None
    assert response.status == 200


def test_the_home_page_loads_clean(page: tuple[Any, Visit], site: str) -> None:
    tab, visit = page
    _open(tab, f"{site}/")
    assert "rust-py-rate-limit" in tab.title()
    assert tab.locator("article h1").first.inner_text().strip() != ""
    # The navigation reaches every section: the reference among them.
    assert tab.locator("nav a[href$='reference/']").count() >= 1
    # The repository's facts, from the stand-in for GitHub's API.
    facts = tab.locator(".md-header .md-source__fact")
    _expect()(facts).to_have_text(["v0.4.0", "42", "3"])
    visit.assert_clean()


def test_search_finds_a_page(page: tuple[Any, Visit], site: str) -> None:
    tab, visit = page
    _open(tab, f"{site}/")
    box = tab.locator("input.md-search__input")
    box.click()
    # Typed key by key, as a reader types (the theme searches on keyup).
    box.press_sequentially("ManualClock", delay=10)
    results = tab.locator("a.md-search-result__link")
    # Results render as each key is typed: wait for those of the whole word
    # (assertions through `expect` retry until they hold or time out).
    expect = _expect()
    expect(tab.locator(".md-search-result__meta")).to_contain_text("matching")
    expect(results.first).to_have_attribute("href", re.compile(r"/concepts/testing/"))
    # The result opens its page, the search term highlighted.
    results.first.click()
    tab.wait_for_url("**/concepts/testing/**")
    expect(tab.locator("article mark").first).to_have_text(
        re.compile("ManualClock", re.I)
    )
    visit.assert_clean()


def test_a_reference_page_loads_clean(page: tuple[Any, Visit], site: str) -> None:
    tab, visit = page
    _open(tab, f"{site}/reference/")
    article = tab.locator("article")
    # mkdocstrings rendered the class and its methods from the stubs.
    assert article.locator("[id='rust_py_rate_limit.RateLimiter']").count() == 1
    assert article.locator("[id='rust_py_rate_limit.RateLimiter.allow']").count() == 1
    assert "retry_after" in article.inner_text()
    visit.assert_clean()
