"""examples/fastapi_app.py under a real uvicorn process, over loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server() -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "fastapi_app:app",
            "--app-dir",
            str(EXAMPLES),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"{base}/stats", timeout=0.5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_middleware_over_real_http(server: str) -> None:
    with httpx.Client(base_url=server) as client:
        responses = [client.get("/api/users") for _ in range(7)]
        stats = client.get("/stats").json()["limiter"]
    assert [r.status_code for r in responses] == [200] * 5 + [429] * 2
    assert [r.headers["x-ratelimit-remaining"] for r in responses] == [
        "4",
        "3",
        "2",
        "1",
        "0",
        "0",
        "0",
    ]
    assert all("retry-after" not in r.headers for r in responses[:5])
    assert responses[5].headers["retry-after"] == "10"
    assert responses[5].json() == {"detail": "Too many requests"}
    assert (stats["allowed"], stats["blocked"]) == (5, 2)


def test_route_dependency_and_manual_check_over_real_http(server: str) -> None:
    with httpx.Client(base_url=server) as client:
        items = [client.get(f"/api/items/{i}").status_code for i in range(1, 4)]
        searches = [client.get("/api/search", params={"q": "x"}) for _ in range(4)]
    assert items == [200, 200, 429], "/api/items/{item_id} shares one limit"
    assert [r.status_code for r in searches[:3]] == [200, 200, 200]
    assert searches[3].json() == {"detail": "Too many searches"}


def test_make_demo_script() -> None:
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 15
    lines = result.stdout.splitlines()
    rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [row[3] for row in rows] == ["200"] * 5 + ["429"] * 2
    assert rows[-1][-1] == "10"
    assert any("'blocked': 2" in line for line in lines)
