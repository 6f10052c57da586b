"""Every ```python block of the documentation site (docs/**/*.md) runs as
shown, page by page, as test_readme runs the README's (a block in a content
tab or an admonition too). Code that must not
run here (a peer library's, a shell session) is fenced as ```py or another
language instead."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = sorted(
    page
    for page in DOCS.rglob("*.md")
    if re.search(r"^ *```python\n", page.read_text(), flags=re.M)
)
# A fence at any indent (inside a content tab or an admonition), closed at
# the same indent.
FENCE = re.compile(r"^( *)```python\n(.*?)^\1```", flags=re.S | re.M)


def blocks(page: Path) -> list[str]:
    return [textwrap.dedent(code) for _, code in FENCE.findall(page.read_text())]


def run_blocks(blocks: list[str], filename: Path) -> list[dict[str, Any]]:
    """Runs the blocks of a page as a reader would: each block is a program
    of its own, unless it uses names from the block before it (then it runs
    in that block's namespace). Returns each program's namespace."""
    namespaces: list[dict[str, Any]] = []
    for block in blocks:
        code = compile(block, str(filename), "exec")
        fresh: dict[str, Any] = {"__name__": "docs"}
        try:
            exec(code, fresh)
        except NameError:
            if not namespaces:
                raise
            exec(code, namespaces[-1])
        else:
            namespaces.append(fresh)
    return namespaces


def run_page(page: Path) -> list[dict[str, Any]]:
    return run_blocks(blocks(page), page)


def defining(page: str, name: str) -> dict[str, Any]:
    """The namespace of the first program of ``page`` (below docs/) that
    defines ``name``: for tests of what a page's snippet does."""
    return next(ns for ns in run_page(DOCS / page) if name in ns)


def test_the_site_has_runnable_pages() -> None:
    assert len(PAGES) >= 10


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_every_block_of_the_page_runs(page: Path) -> None:
    assert run_page(page)


ROOT = DOCS.parent

# The blocks fenced ```py on purpose, so not run: page -> how many, and why.
# A new one fails test_blocks_not_run_are_listed until it is listed here.
NOT_RUN: dict[str, tuple[int, str]] = {
    "migration/from-0.3.1.md": (4, "0.3.1's side of each tab"),
    "migration/from-django-ratelimit-and-drf.md": (
        7,
        "django-ratelimit's and DRF's sides; one Django settings dict naming "
        "a Redis server",
    ),
    "migration/from-limits-slowapi-flask-limiter.md": (
        8,
        "limits', slowapi's and Flask-Limiter's sides; ours against a Redis "
        "and a PostgreSQL server by name",
    ),
    "migration/from-pyrate-limiter.md": (
        6,
        "pyrate-limiter's sides; ours against a Redis and a PostgreSQL server by name",
    ),
}
UNRUN = re.compile(r"^ *```py$", flags=re.M)


def test_blocks_not_run_are_listed() -> None:
    """Every block deliberately left unrun (fenced ```py) is counted and
    listed in NOT_RUN with its reason; every other Python block runs."""
    found = {
        str(page.relative_to(DOCS)): n
        for page in sorted(DOCS.rglob("*.md"))
        if (n := len(UNRUN.findall(page.read_text())))
    }
    assert found == {page: n for page, (n, _) in NOT_RUN.items()}
    assert not UNRUN.findall((ROOT / "README.md").read_text())
    # The blocks that run (59 on the site when this was written).
    ran = sum(len(blocks(page)) for page in PAGES)
    assert ran >= 50, ran


def slugs(page: Path) -> set[str]:
    """The anchors of a page's headings, as GitHub and the site make them."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    return {
        re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", title.strip().lower()))
        for title in re.findall(r"^#+ (.*)$", text, flags=re.M)
    }


def test_every_readme_link_into_the_repository_resolves() -> None:
    """The README links into the site's pages (and other files) by relative
    path, as GitHub shows it: each file exists and each #anchor is one of its
    headings. (mkdocs --strict checks the site's own links.)"""
    readme = ROOT / "README.md"
    links = re.findall(r"\]\(([^)\s]+)\)", readme.read_text())
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert len([link for link in local if link.startswith("docs/")]) >= 20
    for link in local:
        path, _, anchor = link.partition("#")
        target = ROOT / path if path else readme
        assert target.exists(), link
        if anchor:
            assert anchor in slugs(target), link
