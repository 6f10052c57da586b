"""Throwaway redis-server processes for the tests.

Each server runs on a free loopback port, keeps nothing on disk, and is
stopped by PID when its test (or session) ends. Tests that need a server
call :func:`require_redis_server` first: without a ``redis-server`` binary a
developer machine skips them with a message saying how to install one, and
CI (``RUST_PY_RATE_LIMIT_CI=1``, set by ``.ci/run``) fails instead, so the
Redis tests never skip there.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

INSTALL_HINT = (
    "redis-server not found: the Redis store's tests start their own "
    "throwaway servers. Install it (Debian/Ubuntu: apt-get install "
    "redis-server; macOS: brew install redis) or point "
    "RUST_PY_RATE_LIMIT_REDIS_URL at a server you can flush."
)


def in_ci() -> bool:
    return os.environ.get("RUST_PY_RATE_LIMIT_CI") == "1"


def require_redis_server() -> str:
    """The redis-server binary; skips the test (fails it in CI) without one."""
    path = shutil.which("redis-server")
    if path is None:
        if in_ci():
            pytest.fail(INSTALL_HINT, pytrace=False)
        pytest.skip(INSTALL_HINT)
    return path


def free_port(with_bus: bool = False) -> int:
    """A free loopback port (and, ``with_bus``, its cluster bus port + 10000)."""
    while True:
        port = random.randint(20_000, 50_000)
        try:
            with socket.socket() as a:
                a.bind(("127.0.0.1", port))
                if with_bus:
                    with socket.socket() as b:
                        b.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        return port


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server on port {port} did not start")
        time.sleep(0.02)


def _die_with_parent() -> None:
    """In the server's process before exec (Linux): SIGKILL it when the test
    process dies, so a crashed or killed pytest leaves no server behind."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


#: Servers not stopped yet; stopped at exit if a test forgot.
_running: set[RedisServer] = set()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_running):
        server.stop()


class RedisServer:
    """One redis-server on 127.0.0.1:``port``, started on construction.

    ``extra`` are more command-line options (``"--maxmemory", "1mb"``...).
    ``pause``/``resume`` send SIGSTOP/SIGCONT (a stalled server); ``kill``
    and ``start`` stop it hard and bring it back on the same port.
    """

    def __init__(
        self,
        *extra: str,
        port: int | None = None,
        workdir: Path | None = None,
        plain_port: bool = True,
    ) -> None:
        self.binary = require_redis_server()
        self.port = port if port is not None else free_port(with_bus=True)
        self.extra = list(extra)
        # Its own directory: a replica's sync writes an RDB file even
        # with --save "", and it must not land in the caller's directory.
        self.own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="redis-test-"))
        self.plain_port = plain_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.plain_port:
            args += ["--port", str(self.port)]
        args += ["--dir", str(self.workdir)]
        self.proc = subprocess.Popen(
            args + self.extra,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        _running.add(self)
        wait_for_port(self.port)

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """Stops the server at once (SIGKILL) and waits for it to exit."""
        if self.proc is None:
            return
        os.kill(self.proc.pid, signal.SIGCONT)  # in case it was paused
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        """Stops the server for good (and removes its directory if it made it)."""
        _running.discard(self)
        if self.own_dir:
            self.own_dir = False
            self._terminate()
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            self._terminate()

    def _terminate(self) -> None:
        if self.proc is None:
            return
        os.kill(self.proc.pid, signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
