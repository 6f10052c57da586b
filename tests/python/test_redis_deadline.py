"""``timeout`` is a deadline for the whole operation, whatever the server does.

Each test runs a fake server on a free loopback port, in threads of the test:
it speaks just enough RESP to answer a script call (``EVALSHA``/``EVAL``) with
a decision, ``+OK`` to anything else, and misbehaves on the script call as
told: it never answers, answers half a reply, trickles a valid reply one byte
every 30 ms (a valid answer if waited for), closes mid-reply, answers after
twice the timeout, or is not Redis at all (an HTTP server). Every call must
return, under ``on_error``, within ``2 x timeout + 50 ms`` of real time (the
deadline plus a generous margin for a loaded machine), sync and awaitable
alike, and the error must say it timed out and after how long.

These tests are about real time: they assert on elapsed wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
from redis_server import RedisServer, free_port

from rust_py_rate_limit import RateLimiter, StorageError

POLICIES = ["allow", "deny", "raise"]
TIMEOUTS = [0.05, 0.2]
#: Misbehaviours that end in a timeout; "close" ends in a closed connection.
STALLS = ["silent", "half", "trickle", "late"]
#: How long apart the trickling server sends its bytes.
TRICKLE = 0.03


def first_half(reply: bytes) -> bytes:
    """The first three of a reply's six numbers (cut between elements)."""
    return reply[: reply.index(b":100\r\n") + len(b":100\r\n")]


def decision_reply(seq: int) -> bytes:
    """A script's answer: admitted, limit 100, remaining ``seq``, reset
    1000 ms, retry 0, no ban (``remaining`` tells which request a reply
    answered)."""
    return f"*6\r\n:1\r\n:100\r\n:{seq}\r\n:1000\r\n:0\r\n:0\r\n".encode()


def read_command(buf: bytearray) -> list[bytes] | None:
    """One RESP command (an array of bulk strings) taken off ``buf``."""
    if not buf.startswith(b"*") or b"\r\n" not in buf:
        return None
    head = bytes(buf).partition(b"\r\n")[0]
    count = int(head[1:])
    at = len(head) + 2
    parts = []
    for _ in range(count):
        end = buf.find(b"\r\n", at)
        if end < 0:
            return None
        size = int(buf[at + 1 : end])
        start = end + 2
        if len(buf) < start + size + 2:
            return None
        parts.append(bytes(buf[start : start + size]))
        at = start + size + 2
    del buf[:at]
    return parts


class FakeServer:
    """A TCP server on 127.0.0.1 misbehaving on script calls as ``mode`` says."""

    def __init__(self, mode: str, delay: float = 0.0) -> None:
        self.mode = mode
        self.delay = delay  # "late": how long before the answer
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        # accept() wakes up now and then to see whether to stop (closing
        # the socket does not wake it).
        self.sock.settimeout(0.02)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        self.accepted = 0
        self.calls = 0  # script calls received, all connections
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self.lock:
                self.conns.append(conn)
                self.accepted += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        buf = bytearray()
        try:
            while not self.stop.is_set():
                data = conn.recv(65536)
                if not data:
                    return
                if self.mode == "http":
                    conn.sendall(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                        b"Content-Length: 11\r\nConnection: close\r\n\r\nBad Request"
                    )
                    conn.close()
                    return
                buf += data
                while (command := read_command(buf)) is not None:
                    name = command[0].upper()
                    if name not in (b"EVALSHA", b"EVAL"):
                        conn.sendall(b"+OK\r\n")
                        continue
                    with self.lock:
                        self.calls += 1
                        seq = self.calls
                    if not self._answer(conn, decision_reply(seq)):
                        return
        except OSError:
            return

    def _answer(self, conn: socket.socket, reply: bytes) -> bool:
        """Answers a script call as the mode says; False if it closed."""
        mode = self.mode
        if mode == "good":
            conn.sendall(reply)
        elif mode == "silent":
            pass
        elif mode == "half":
            conn.sendall(first_half(reply))
        elif mode == "close":
            conn.sendall(first_half(reply))
            conn.shutdown(socket.SHUT_RDWR)
            conn.close()
            return False
        elif mode == "trickle":
            for byte in reply:
                if self.stop.wait(TRICKLE):
                    return False
                conn.sendall(bytes([byte]))
        elif mode == "late":
            if self.stop.wait(self.delay):
                return False
            conn.sendall(reply)
        return True

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        with self.lock:
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        for t in self.threads:
            t.join(timeout=5)
        # After the joins: a connection accepted while stopping is closed too.
        with self.lock:
            for conn in self.conns:
                conn.close()


@pytest.fixture
def fake() -> Iterator[Callable[..., FakeServer]]:
    servers: list[FakeServer] = []

    def start(mode: str, delay: float = 0.0) -> FakeServer:
        server = FakeServer(mode, delay)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def limiter(url: str, timeout: float, on_error: str) -> RateLimiter:
    return RateLimiter(
        5,
        60,
        storage=url,
        timeout=timeout,
        on_error=on_error,  # type: ignore[arg-type]
        key_prefix="deadline",
    )


def ms(timeout: float) -> str:
    return f"{round(timeout * 1000)} ms"


def run_sync(call: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``call()`` took, and what it returned or raised."""
    start = time.monotonic()
    try:
        outcome = call()
    except StorageError as err:
        outcome = err
    return time.monotonic() - start, outcome


def run_async(make: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    async def timed() -> tuple[float, Any]:
        start = time.monotonic()
        try:
            outcome = await make()
        except StorageError as err:
            outcome = err
        return time.monotonic() - start, outcome

    return asyncio.run(timed())


def admitted(outcome: Any) -> bool:
    """``allow``'s bool, or a decision's ``allowed``."""
    return outcome if isinstance(outcome, bool) else outcome.allowed


METHODS: dict[str, Callable[[RateLimiter, str], tuple[float, Any]]] = {
    "allow": lambda lim, key: run_sync(lambda: lim.allow(key)),
    "decide": lambda lim, key: run_sync(lambda: lim.decide(key)),
    "peek": lambda lim, key: run_sync(lambda: lim.peek(key)),
    "aallow": lambda lim, key: run_async(lambda: lim.aallow(key)),
}


@pytest.mark.parametrize("timeout", TIMEOUTS)
@pytest.mark.parametrize("on_error", POLICIES)
@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("mode", [*STALLS, "close"])
def test_every_call_returns_by_the_deadline(
    fake: Callable[..., FakeServer],
    mode: str,
    method: str,
    on_error: str,
    timeout: float,
) -> None:
    server = fake(mode, delay=2 * timeout)
    lim = limiter(server.url, timeout, on_error)
    bound = 2 * timeout + 0.05
    # Two calls: both reach the server (the breaker opens at the third).
    for i in range(2):
        elapsed, outcome = METHODS[method](lim, f"k{i}")
        assert elapsed <= bound, f"call {i} took {elapsed:.3f} s ({mode})"
        if on_error == "raise":
            assert isinstance(outcome, StorageError), outcome
            message = str(outcome)
            assert "\n" not in message
            if mode == "close":
                peer = f"127.0.0.1:{server.port}"
                assert message == f"redis: the server at {peer} closed the connection"
            else:
                assert "timed out" in message, message
                assert f"after {ms(timeout)}" in message, message
        else:
            assert admitted(outcome) is (on_error == "allow"), outcome
    assert lim.stats()["storage_errors"] == 2
    assert server.calls >= 1, "the calls reached the server"


@pytest.mark.parametrize("method", ["decide", "acheck"])
@pytest.mark.parametrize("mode", ["trickle", "late"])
def test_a_late_reply_never_answers_a_later_call(
    fake: Callable[..., FakeServer], mode: str, method: str
) -> None:
    # A reply that would have been valid if waited for arrives after the
    # call gave up; the next call must get its own answer, never that one.
    timeout = 0.05
    server = fake(mode, delay=2 * timeout)
    lim = limiter(server.url, timeout, "raise")

    def remaining(key: str) -> int:
        if method == "decide":
            return lim.decide(key).remaining
        return asyncio.run(lim.acheck(key))["remaining"]

    with pytest.raises(StorageError, match="timed out after 50 ms"):
        remaining("a")
    first = server.calls
    # Long enough for the stalled reply to arrive in full.
    time.sleep(len(decision_reply(first)) * TRICKLE + 0.1)
    server.mode = "good"
    got = remaining("b")
    assert got != first, "the late reply answered a later call"
    assert got == server.calls, "the later call got its own reply"
    assert lim.stats()["storage_errors"] == 1


def test_a_server_that_is_not_redis_says_so_in_one_line(
    fake: Callable[..., FakeServer],
) -> None:
    server = fake("http")
    lim = limiter(server.url, 0.5, "raise")
    expected = (
        f"redis: the server at 127.0.0.1:{server.port} "
        "does not speak the Redis protocol (RESP)"
    )
    with pytest.raises(StorageError) as sync:
        lim.allow("k")
    assert str(sync.value) == expected
    with pytest.raises(StorageError) as awaited:
        asyncio.run(lim.aallow("k"))
    assert str(awaited.value) == expected
    assert lim.stats()["storage_errors"] == 2


@pytest.mark.parametrize("on_error", POLICIES)
def test_a_server_that_stops_answering_mid_call_keeps_the_deadline(
    fake: Callable[..., FakeServer], on_error: str
) -> None:
    # Healthy first (a pooled connection), then silent: the pooled
    # connection's call must end by the deadline too.
    timeout = 0.05
    server = fake("good")
    lim = limiter(server.url, timeout, on_error)
    assert lim.allow("k") is True
    server.mode = "silent"
    elapsed, outcome = run_sync(lambda: lim.allow("k"))
    assert elapsed <= 2 * timeout + 0.05
    if on_error == "raise":
        assert "timed out after 50 ms (timeout=0.05)" in str(outcome)
    else:
        assert outcome is (on_error == "allow")
    assert lim.stats()["storage_errors"] == 1
    assert server.accepted == 1, "the healthy call's connection was reused"


def test_login_database_and_host_name_come_from_the_url() -> None:
    # The sync client reads the URL as redis-rs does: a password (AUTH), a
    # user and password (AUTH user pass), a database (SELECT), a host name
    # (looked up under the deadline).
    server = RedisServer(
        "--requirepass", "secret", "--user", "alice", "on", ">pw", "~*", "+@all"
    )
    try:
        admin = redis.Redis(port=server.port, password="secret")
        urls = {
            3: f"redis://:secret@localhost:{server.port}/3",
            2: f"redis://alice:pw@127.0.0.1:{server.port}/2",
        }
        for db, url in urls.items():
            lim = RateLimiter(2, 60, storage=url, on_error="raise", key_prefix="u")
            assert [lim.allow("k") for _ in range(3)] == [True, True, False]
            assert asyncio.run(lim.aallow("k")) is False
            assert lim.stats()["storage_errors"] == 0
            with redis.Redis(port=server.port, password="secret", db=db) as in_db:
                assert in_db.dbsize() == 1, f"the key went to database {db}"
            assert admin.dbsize() == 0
        wrong = RateLimiter(
            2,
            60,
            storage=f"redis://:nope@127.0.0.1:{server.port}/0",
            on_error="raise",
        )
        with pytest.raises(StorageError) as err:
            wrong.allow("k")
        assert "\n" not in str(err.value)
        assert "WRONGPASS" in str(err.value), str(err.value)
        admin.close()
    finally:
        server.stop()
