"""A throwaway PostgreSQL server for the tests: ``initdb`` into a temporary
directory, ``postgres`` on a free loopback port (and a Unix socket in the
same directory), stopped by its PID at the end.

Set ``RUST_PY_RATE_LIMIT_PG_URL`` to use a server of your own instead. The
binaries are looked up on ``PATH`` and in the usual Debian place
(``/usr/lib/postgresql/<version>/bin``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from redis_server import free_port, in_ci, wait_for_port

__all__ = ["PostgresServer", "require_postgres"]


def require_postgres() -> Path:
    """The directory of ``initdb`` and ``postgres``; skipped (failed in CI)
    when there is none."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    for candidate in sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True
    ):
        return Path(candidate).parent
    message = (
        "PostgreSQL is not installed (initdb not found): apt-get install "
        "postgresql, or set RUST_PY_RATE_LIMIT_PG_URL"
    )
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")


def _tool(bindir: Path, name: str) -> str:
    """PostgreSQL's program `name`: beside initdb, on the PATH, or in
    Debian's versioned directory."""
    if (bindir / name).exists():
        return str(bindir / name)
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
        None,
    )
    if found is None:
        raise FileNotFoundError(f"{name} not found beside {bindir} or on the PATH")
    return found


def _postgres_ids() -> tuple[int | None, int | None]:
    """initdb and postgres refuse to run as root: as root, nobody's ids."""
    if os.geteuid() != 0:
        return None, None
    import pwd

    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


class PostgresServer:
    """One postgres on 127.0.0.1:``port`` with a database ``test``, started
    on construction; ``stop()`` stops it and removes its directory."""

    def __init__(
        self, primary: PostgresServer | None = None, *, tls: bool = False
    ) -> None:
        """A new server; with `primary`, a standby streaming from it (in
        recovery: read-only), made by pg_basebackup; with `tls`, TLS on, with
        a self-signed certificate for 127.0.0.1 and localhost (`cert`)."""
        bindir = require_postgres()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pg-test-"))
        uid, gid = _postgres_ids()
        if uid is not None and gid is not None:
            os.chown(self.dir, uid, gid)
        data = self.dir / "data"
        if primary is None:
            command = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                       "-A", "trust", "--no-sync", "-E", "UTF8"]  # fmt: skip
        else:
            command = [_tool(bindir, "pg_basebackup"), "-h", "127.0.0.1",
                       "-p", str(primary.port), "-U", "postgres", "-D", str(data),
                       "-R", "-X", "stream", "-c", "fast", "--no-sync"]  # fmt: skip
        subprocess.run(
            command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            user=uid, group=gid,
        )  # fmt: skip
        self._command = [
            str(bindir / "postgres"), "-D", str(data), "-p", str(self.port),
            "-h", "127.0.0.1", "-k", str(self.dir), "-c", "fsync=off",
            "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        ]  # fmt: skip
        self._ids = (uid, gid)
        if tls:
            self.cert = self.dir / "server.crt"
            key = self.dir / "server.key"
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                 "-days", "2", "-subj", "/CN=localhost", "-keyout", str(key),
                 "-out", str(self.cert),
                 "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                 "-addext", "basicConstraints=critical,CA:FALSE"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            key.chmod(0o600)
            if uid is not None and gid is not None:
                os.chown(key, uid, gid)
            self._command += ["-c", "ssl=on", "-c", f"ssl_cert_file={self.cert}",
                              "-c", f"ssl_key_file={key}"]  # fmt: skip
        self._start()
        if primary is None:
            with self.connect("postgres") as conn:
                conn.autocommit = True
                conn.execute("CREATE DATABASE test")

    def _start(self) -> None:
        uid, gid = self._ids
        self.proc = subprocess.Popen(
            self._command,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, user=uid, group=gid,
        )  # fmt: skip
        wait_for_port(self.port, timeout=30)
        self._wait_ready()

    def terminate_backends(self, application_name: str) -> None:
        """Ends the backends of `application_name`, returning once they are
        gone (pg_terminate_backend waits, up to its timeout, for each)."""
        with self.connect() as conn:
            conn.autocommit = True
            conn.execute(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (application_name,),
            )

    def _signal_all(self, sig: signal.Signals) -> None:
        """`sig` to the server and each of its processes (every backend
        calls setsid(), so they are not in the server's process group)."""
        pids = [self.proc.pid]
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                with open(stat) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if int(fields[1]) == self.proc.pid:  # its parent is the server
                pids.append(int(stat.split("/")[2]))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def pause(self) -> None:
        """SIGSTOP to the server and every backend."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL to the server and every backend, keeping the data."""
        self._signal_all(signal.SIGKILL)
        self.proc.wait(timeout=20)

    def restart(self) -> None:
        """Starts the server again on the same port and data (after kill)."""
        self._start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/test"

    def connect(self, dbname: str = "test"):  # type: ignore[no-untyped-def]
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=dbname
        )

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with self.connect("postgres"):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.resume()  # a paused server cannot shut down
            os.kill(self.proc.pid, signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__":  # a manual check: start, print the URL, stop
    server = PostgresServer()
    print(server.url, file=sys.stderr)
    server.stop()
