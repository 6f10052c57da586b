"""``make demo``: serve examples/fastapi_app.py with uvicorn on a free port,
send it a burst of requests over loopback, print what came back, stop.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

EXAMPLES = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until_up(base: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/stats", timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("the demo server did not start")


def main() -> int:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "fastapi_app:app",
            "--app-dir",
            str(EXAMPLES),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
    )
    try:
        wait_until_up(base, time.monotonic() + 10)
        print(f"uvicorn serving examples/fastapi_app.py on {base}\n")
        row = "{:>2}  {:<16} {:>6}  {:>9}  {:>11}"
        print(row.format("#", "request", "status", "remaining", "retry-after"))
        with httpx.Client(base_url=base, timeout=5) as client:
            for i in range(1, 8):
                r = client.get("/api/users")
                remaining = r.headers.get("x-ratelimit-remaining", "-")
                retry = r.headers.get("retry-after", "-")
                print(row.format(i, "GET /api/users", r.status_code, remaining, retry))
            stats = client.get("/stats").json()
        print(f"\nserver limiter stats (pid {stats['pid']}): {stats['limiter']}")
        blocked = stats["limiter"]["blocked"]
        return 0 if blocked >= 1 else 1
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
