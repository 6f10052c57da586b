"""An example app under a real gunicorn on a free loopback port, for the
end-to-end tests; stopped, workers included, whatever happens."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

__all__ = ["EXAMPLES", "ROOT", "gunicorn"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_up(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited early:\n{log.read_text()}")
        try:
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.05)  # a real server starting: poll it
    raise AssertionError(f"gunicorn did not answer:\n{log.read_text()}")


@contextmanager
def gunicorn(
    log: Path, app: str, *options: str, ready: str, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Runs ``app`` (``module:variable`` in examples/) under gunicorn with
    ``options``, waits until ``ready`` (a path) answers 200, and yields the
    base URL. ``env`` adds to the environment."""
    port = _free_port()
    environ = {**os.environ, **(env or {})}
    environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [environ.get("PYTHONPATH")])]
    )
    command = [sys.executable, "-m", "gunicorn", "--chdir", str(EXAMPLES)]
    command += [*options, "--bind", f"127.0.0.1:{port}", app]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=environ
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_until_up(proc, base + ready, log)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
