"""The ImmutableLog sink against a real HTTP server on loopback, and local chains.

The fake server implements the documented endpoint (``POST /v1/events``,
202 with ``duplicate`` for an Idempotency-Key it has seen), records every
request, and can be told to answer given statuses first, to answer 503 to
everything, or to hold requests until released.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rust_py_rate_limit import immutablelog
from rust_py_rate_limit.immutablelog import ChainBroken, ImmutableLogSink, verify

API_KEY = "il_test_0123456789"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def key(self) -> str:
        return self.headers["Idempotency-Key"]


class FakeImmutableLog:
    """ImmutableLog's ingestion endpoint, in a thread, on a free loopback port."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.ledger: dict[str, str] = {}  # Idempotency-Key -> tx_id
        self.script: list[int] = []  # statuses to answer before 202s
        self.down = False  # answer 503 to everything
        #: When set, each request waits for one release() of it.
        self.gate: threading.Semaphore | None = None
        self.cond = threading.Condition()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: no Nagle delay.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = Request("POST", self.path, dict(self.headers.items()), body)
                with fake.cond:
                    fake.requests.append(request)
                    fake.cond.notify_all()
                if fake.gate is not None:
                    fake.gate.acquire(timeout=10)
                status, answer = fake.answer(request)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.01,), daemon=True
        )
        self.thread.start()

    def answer(self, request: Request) -> tuple[int, dict[str, Any]]:
        with self.cond:
            if self.down:
                return 503, {"ok": False, "error": "unavailable"}
            if self.script:
                status = self.script.pop(0)
                if status != 202:
                    return status, {"ok": False, "error": f"status {status}"}
            if request.path != "/v1/events":
                return 404, {"ok": False, "error": "not found"}
            if request.headers.get("Authorization") != f"Bearer {API_KEY}":
                return 401, {"ok": False, "error": "unauthorized"}
            duplicate = request.key in self.ledger
            if not duplicate:
                self.ledger[request.key] = f"tx-{len(self.ledger) + 1}"
            payload = request.json["payload"]
            self.cond.notify_all()
            return 202, {
                "ok": True,
                "tx_id": self.ledger[request.key],
                "payload_hash": hashlib.sha256(payload.encode()).hexdigest(),
                "status": "accepted",
                "duplicate": duplicate,
                "request_id": request.headers.get("Request-Id"),
            }

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Waits until ``count`` requests arrived."""
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.requests) >= count, timeout), (
                f"{len(self.requests)} requests, expected {count}"
            )

    def wait_recorded(self, count: int, timeout: float = 10.0) -> None:
        """Waits until ``count`` events are in the ledger."""
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.ledger) >= count, timeout), (
                f"{len(self.ledger)} recorded, expected {count}"
            )

    def stop(self) -> None:
        if self.gate is not None:
            self.gate.release(1000)
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[FakeImmutableLog]:
    fake = FakeImmutableLog()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def dead_url() -> str:
    """An http URL on a loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


MakeSink = Callable[..., ImmutableLogSink]


@pytest.fixture
def make_sink(server: FakeImmutableLog, tmp_path: Path) -> Iterator[MakeSink]:
    """Sinks with test defaults, all closed at the end of the test."""
    sinks: list[ImmutableLogSink] = []

    def make(**kwargs: Any) -> ImmutableLogSink:
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("base_url", server.url)
        kwargs.setdefault("service", "api")
        if kwargs.get("mode", "remote") != "local":
            kwargs.setdefault("pending_path", tmp_path / "pending.jsonl")
        kwargs.setdefault("timeout", 5.0)
        kwargs.setdefault("backoff", 0.01)
        sink = ImmutableLogSink(kwargs.pop("api_key"), **kwargs)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close(timeout=2.0)


def blocked(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_type": "rate_limit_blocked",
        "key": "ip:127.0.0.1",
        "limit": 100,
        "window_seconds": 60,
        "blocked_at": "2026-12-04T12:00:00.123456Z",
        "limiter": "api",
        "retry_after": 12.5,
        "algorithm": "fixed",
        "window_start": "2026-12-04T12:00:00Z",
    }
    event.update(overrides)
    return event


def other(event_type: str = "rate_limit_banned", **fields: Any) -> dict[str, Any]:
    return {"event_type": event_type, "key": "ip:10.0.0.7", **fields}


def live_pending(path: Path) -> list[str]:
    """Ids of the unacknowledged events in a pending file."""
    live: dict[str, None] = {}
    for line in path.read_bytes().splitlines():
        entry = json.loads(line)
        if "ack" in entry:
            live.pop(entry["ack"], None)
        else:
            live[entry["id"]] = None
    return list(live)


# ---------------------------------------------------------------- the wire


def test_request_headers_and_body_are_as_documented(
    server: FakeImmutableLog, make_sink: MakeSink, tmp_path: Path
) -> None:
    sink = make_sink(env="production")
    event = blocked(id="evt-0001")
    sink(event)
    assert sink.flush(timeout=10)
    assert len(server.requests) == 1
    request = server.requests[0]
    assert request.method == "POST"
    assert request.path == "/v1/events"
    request_id = request.headers["Request-Id"]
    assert uuid.UUID(request_id).version == 4
    sent = {k: v for k, v in request.headers.items() if k not in ("Host",)}
    assert sent == {
        "Accept-Encoding": "identity",
        "Content-Length": str(len(request.body)),
        "Authorization": f"Bearer {API_KEY}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Idempotency-Key": "evt-0001",
        "Request-Id": request_id,
        "User-Agent": "rust-py-rate-limit-immutablelog/1",
    }
    body = request.json
    assert set(body) == {"payload", "meta"}
    assert json.loads(body["payload"]) == event
    assert body["payload"] == json.dumps(event, separators=(",", ":"))
    assert body["meta"] == {
        "type": "warning",
        "event_name": "rate_limit_blocked",
        "service": "api",
        "trace_id": "evt-0001",
        "request_id": request_id,
        "env": "production",
    }
    assert sink.stats == {
        "sent": 1,
        "duplicates": 0,
        "retried": 0,
        "failed_permanent": 0,
        "dropped": 0,
        "pending": 0,
        "invalid": 0,
        "deduplicated": 0,
        "written": 0,
        "write_errors": 0,
    }
    pending = tmp_path / "pending.jsonl"
    assert pending.read_bytes() == b""  # emptied once everything was acknowledged
    sink.close()
    assert not pending.exists()  # and removed at close


def test_meta_type_per_event_type_and_no_env_when_unset(
    server: FakeImmutableLog, make_sink: MakeSink
) -> None:
    sink = make_sink()
    types = {
        "rate_limit_blocked": "warning",
        "rate_limit_banned": "warning",
        "storage_unavailable": "warning",
        "rate_limit_unbanned": "info",
        "storage_recovered": "info",
        "something_new": "info",
    }
    for event_type in types:
        sink({"event_type": event_type, "id": f"id-{event_type}"})
    assert sink.flush(timeout=10)
    metas = {r.json["meta"]["event_name"]: r.json["meta"] for r in server.requests}
    assert {name: meta["type"] for name, meta in metas.items()} == types
    assert all("env" not in meta for meta in metas.values())
    assert all(meta["trace_id"] == f"id-{name}" for name, meta in metas.items())


def test_base_url_path_prefix_is_kept(
    server: FakeImmutableLog, make_sink: MakeSink
) -> None:
    sink = make_sink(base_url=server.url + "/ingest/")
    sink(other(id="x1"))
    sink.flush(timeout=10)
    assert server.requests[0].path == "/ingest/v1/events"
    assert sink.stats["failed_permanent"] == 1  # the fake only serves /v1/events


# -------------------------------------------------------------- event ids


def test_blocked_events_of_one_window_share_one_key_across_sinks(
    server: FakeImmutableLog, make_sink: MakeSink, tmp_path: Path
) -> None:
    worker1 = make_sink()
    worker2 = make_sink()  # same pending_path: it gets a file of its own
    assert {p.name for p in tmp_path.iterdir()} == {"pending.jsonl", "pending.1.jsonl"}
    worker1(blocked(blocked_at="2026-12-04T12:00:01Z", retry_after=59.0))
    assert worker1.flush(timeout=10)
    worker2(blocked(blocked_at="2026-12-04T12:00:07Z", retry_after=53.0))
    assert worker2.flush(timeout=10)
    first, second = server.requests
    assert first.key == second.key
    assert uuid.UUID(first.key).version == 5
    assert json.loads(first.json["payload"])["id"] == first.key
    assert first.json["meta"]["trace_id"] == first.key
    assert len(server.ledger) == 1  # one ledger entry
    assert worker1.stats["duplicates"] == 0
    assert worker2.stats["sent"] == 1
    assert worker2.stats["duplicates"] == 1

    # Another window, limiter or key is another entry.
    worker1(blocked(window_start="2026-12-04T12:01:00Z"))
    worker1(blocked(limiter="login"))
    worker1(blocked(key="ip:127.0.0.2"))
    assert worker1.flush(timeout=10)
    assert len({r.key for r in server.requests}) == 4


def test_blocked_without_window_start_keys_on_blocked_at(
    server: FakeImmutableLog, make_sink: MakeSink
) -> None:
    sink = make_sink()
    event = blocked()
    del event["window_start"]
    sink(event)
    sink(dict(event))  # same blocked_at: same id, recorded once
    sink({**event, "blocked_at": "2026-12-04T12:00:00.5Z"})
    assert sink.flush(timeout=10)
    assert len(server.requests) == 2
    assert sink.stats["deduplicated"] == 1
    assert all(uuid.UUID(r.key).version == 5 for r in server.requests)


def test_other_events_without_id_get_a_fresh_uuid4(
    server: FakeImmutableLog, make_sink: MakeSink
) -> None:
    sink = make_sink()
    event = other("rate_limit_unbanned")
    sink(event)
    sink(event)
    assert sink.flush(timeout=10)
    keys = [r.key for r in server.requests]
    assert len(set(keys)) == 2
    assert all(uuid.UUID(k).version == 4 for k in keys)
    assert "id" not in event  # the caller's event is not modified


def test_an_id_is_recorded_once_per_sink(
    server: FakeImmutableLog, make_sink: MakeSink
) -> None:
    sink = make_sink()
    for _ in range(5):
        sink(blocked())  # one key, one window: one ledger entry
    assert sink.flush(timeout=10)
    assert len(server.requests) == 1
    assert sink.stats["deduplicated"] == 4


# ---------------------------------------------------------------- delivery


def test_5xx_is_retried_with_the_same_request(
    server: FakeImmutableLog, make_sink: MakeSink
) -> None:
    server.script = [500, 500]
    sink = make_sink()
    sink(blocked())
    assert sink.flush(timeout=10)
    assert len(server.requests) == 3
    assert len({r.key for r in server.requests}) == 1
    assert len({r.headers["Request-Id"] for r in server.requests}) == 1
    assert len({r.body for r in server.requests}) == 1
    assert len(server.ledger) == 1
    stats = sink.stats
    assert (stats["sent"], stats["retried"], stats["pending"]) == (1, 2, 0)


@pytest.mark.parametrize("status", [400, 401, 403, 429])
def test_4xx_is_final_and_logged_once_per_status(
    server: FakeImmutableLog,
    make_sink: MakeSink,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    status: int,
) -> None:
    caplog.set_level(logging.DEBUG, logger="rust_py_rate_limit")
    server.script = [status, status, 409]
    sink = make_sink()
    for n in range(3):
        sink(other(id=f"e{n}"))
    assert sink.flush(timeout=10)
    assert len(server.requests) == 3  # none retried
    stats = sink.stats
    assert (stats["failed_permanent"], stats["retried"], stats["sent"]) == (3, 0, 0)
    assert stats["pending"] == 0
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in errors] == ["rust_py_rate_limit"] * 2
    assert f"{status}" in errors[0].getMessage()
    assert "409" in errors[1].getMessage()
    assert live_pending(tmp_path / "pending.jsonl") == []


def test_a_wrong_key_is_refused_for_good(
    server: FakeImmutableLog, make_sink: MakeSink, caplog: pytest.LogCaptureFixture
) -> None:
    sink = make_sink(api_key="il_wrong")
    sink(other(id="a"))
    sink(other(id="b"))
    assert sink.flush(timeout=10)
    assert sink.stats["failed_permanent"] == 2
    refusals = [r for r in caplog.records if "401" in r.getMessage()]
    assert [r.levelno for r in refusals if r.levelno >= logging.WARNING] == [
        logging.ERROR
    ]


def test_server_down_then_a_restarted_process_replays_each_event_once(
    server: FakeImmutableLog, make_sink: MakeSink, dead_url: str, tmp_path: Path
) -> None:
    pending = tmp_path / "pending.jsonl"
    # Three attempts 0.1-0.2 and 0.2-0.4 s apart; then the next try would be
    # 0.4-0.8 s later: long after the stats below were read.
    first = make_sink(base_url=dead_url, max_attempts=3, backoff=0.2)
    ids = [f"evt-{n}" for n in range(4)]
    for event_id in ids:
        first(other(id=event_id))
    assert not first.flush(timeout=10)  # given up: kept pending
    stats = first.stats
    assert (stats["sent"], stats["pending"]) == (0, 4)
    assert stats["retried"] == 2  # three attempts at the first, then it was down
    assert live_pending(pending) == ids
    first.close(timeout=0.5)
    assert live_pending(pending) == ids  # close does not give them up

    second = make_sink()  # the restarted process, same pending file
    assert second.flush(timeout=10)
    assert sorted(r.key for r in server.requests) == ids  # each exactly once
    assert len({r.key for r in server.requests}) == len(ids)
    assert second.stats["sent"] == 4
    assert second.stats["duplicates"] == 0
    assert pending.read_bytes() == b""


def test_a_killed_process_leaves_nothing_behind(
    server: FakeImmutableLog, make_sink: MakeSink, dead_url: str, tmp_path: Path
) -> None:
    # Two sinks in a process that is killed before any delivery: the base
    # pending file and pending.1.jsonl are left with unacknowledged events.
    script = textwrap.dedent(
        f"""
        import os
        from rust_py_rate_limit.immutablelog import ImmutableLogSink
        sinks = [
            ImmutableLogSink("k", base_url={dead_url!r}, service="api",
                             pending_path={str(tmp_path / "pending.jsonl")!r})
            for _ in range(2)
        ]
        for n in range(6):
            sinks[n % 2]({{"event_type": "rate_limit_banned", "id": f"k{{n}}"}})
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["pending.1.jsonl", "pending.jsonl"]

    sink = make_sink()  # takes pending.jsonl, and pending.1.jsonl over
    assert sink.flush(timeout=10)
    assert sorted(r.key for r in server.requests) == [f"k{n}" for n in range(6)]
    assert sink.stats["duplicates"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pending.jsonl"]


def test_a_live_sinks_pending_file_is_not_taken_over(
    server: FakeImmutableLog, make_sink: MakeSink, dead_url: str, tmp_path: Path
) -> None:
    holder = make_sink(base_url=dead_url, max_attempts=1)
    holder(other(id="held"))
    assert not holder.flush(timeout=10)
    other_sink = make_sink()
    assert other_sink.flush_pending() == 0
    assert other_sink.flush(timeout=10)
    assert server.requests == []
    assert live_pending(tmp_path / "pending.jsonl") == ["held"]
    holder.close(timeout=0)
    assert other_sink.flush_pending() == 1  # now it is an orphan
    assert [r.key for r in server.requests] == ["held"]


def test_flush_pending_sends_what_was_given_up(
    server: FakeImmutableLog,
    make_sink: MakeSink,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rust_py_rate_limit")
    server.down = True
    # One attempt each, and the next try 2.5-5 s away: only flush_pending()
    # sends them within this test.
    sink = make_sink(max_attempts=1, backoff=5.0)
    for n in range(3):
        sink(other(id=f"p{n}"))
    assert not sink.flush(timeout=10)
    assert sink.stats["pending"] == 3
    assert len(server.requests) == 1  # the service was down: one try only
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "unreachable after 1 attempts (503" in warnings[0].getMessage()
    server.down = False
    assert sink.flush_pending() == 3
    assert sink.stats["pending"] == 0
    assert sink.flush(timeout=10)
    assert sorted(server.ledger) == ["p0", "p1", "p2"]
    assert live_pending(tmp_path / "pending.jsonl") == []
    assert sink.flush_pending() == 0


def test_delivery_resumes_by_itself_when_the_service_is_back(
    server: FakeImmutableLog, make_sink: MakeSink
) -> None:
    server.down = True
    sink = make_sink(max_attempts=2)
    for n in range(3):
        sink(other(id=f"r{n}"))
    assert not sink.flush(timeout=10)
    server.down = False
    server.wait_recorded(3)  # the next probe gets through, then the rest
    assert sink.flush(timeout=10)
    assert sorted(server.ledger) == ["r0", "r1", "r2"]
    assert sink.stats["pending"] == 0


def test_pending_file_is_compacted_and_stays_locked(
    server: FakeImmutableLog,
    make_sink: MakeSink,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(immutablelog, "COMPACT_ACKS", 2)
    pending = tmp_path / "pending.jsonl"
    server.gate = threading.Semaphore(0)
    sink = make_sink()
    ids = [f"c{n}" for n in range(6)]
    for event_id in ids:
        sink(other(id=event_id))
    server.wait_for(1)
    assert live_pending(pending) == ids
    server.gate.release(4)  # c0-c3 answered, c4 held: c3's ack compacted the file
    server.wait_for(5)
    lines = [json.loads(line) for line in pending.read_bytes().splitlines()]
    assert [line["id"] for line in lines] == ["c4", "c5"]
    # The rewritten file is still held: another sink does not take it over.
    bystander = make_sink(base_url="http://127.0.0.1:9")
    assert bystander.flush_pending() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "pending.1.jsonl",
        "pending.jsonl",
    ]
    server.gate.release(2)
    assert sink.flush(timeout=10)
    assert [r.key for r in server.requests] == ids
    assert pending.read_bytes() == b""


def test_queue_full_drops_and_counts(
    server: FakeImmutableLog, make_sink: MakeSink, tmp_path: Path
) -> None:
    server.gate = threading.Semaphore(0)
    sink = make_sink(max_queue=2)
    sink(other(id="q0"))
    server.wait_for(1)  # q0 is in flight, held by the server
    for n in range(1, 6):
        sink(other(id=f"q{n}"))
    stats = sink.stats
    assert (stats["dropped"], stats["pending"]) == (3, 3)
    assert live_pending(tmp_path / "pending.jsonl") == ["q0", "q1", "q2"]
    server.gate.release(3)
    assert sink.flush(timeout=10)
    assert [r.key for r in server.requests] == ["q0", "q1", "q2"]
    assert sink.stats["sent"] == 3


def test_bad_events_never_raise(
    server: FakeImmutableLog, make_sink: MakeSink, caplog: pytest.LogCaptureFixture
) -> None:
    class Exploding(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise RuntimeError("boom")

        def __iter__(self) -> Iterator[str]:
            raise RuntimeError("boom")

        def __len__(self) -> int:
            return 1

    caplog.set_level(logging.WARNING, logger="rust_py_rate_limit")
    sink = make_sink()
    bad: list[Any] = [
        None,
        42,
        ["event_type"],
        {},
        {"event_type": 5},
        {"event_type": ""},
        {"event_type": "x", "id": 7},
        {"event_type": "x", "id": "with space"},
        {"event_type": "x", "id": "x" * 256},
        {"event_type": "x", "value": object()},
        {"event_type": "x", "value": float("nan")},
        {"event_type": "x", ("tuple", "key"): 1},
        Exploding(),
    ]
    for event in bad:
        sink(event)
    sink(other(id="good"))
    assert sink.flush(timeout=10)
    assert sink.stats["invalid"] == len(bad)
    assert [r.key for r in server.requests] == ["good"]
    warnings = [
        r
        for r in caplog.records
        if "not recorded" in r.getMessage() and r.levelno >= logging.WARNING
    ]
    assert len(warnings) == 1  # the first; the rest at DEBUG


def test_calls_after_close_are_dropped(make_sink: MakeSink) -> None:
    with make_sink() as sink:
        pass
    sink(other(id="late"))
    assert sink.stats["dropped"] == 1
    sink.close()  # again: nothing happens


# ------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"api_key": None}, ValueError, "api_key"),
        ({"api_key": ""}, ValueError, "api_key"),
        ({"api_key": 5}, TypeError, "api_key"),
        ({"api_key": "a\nb"}, ValueError, "api_key"),
        ({"api_key": None, "mode": "hybrid", "path": "x"}, ValueError, "api_key"),
        ({"mode": "cloud"}, ValueError, "mode"),
        ({"mode": 1}, TypeError, "mode"),
        ({"mode": "local"}, ValueError, "path"),
        ({"mode": "hybrid"}, ValueError, "path"),
        ({"mode": "local", "path": b"x"}, TypeError, "path"),
        ({"mode": "local", "path": ""}, ValueError, "path"),
        ({"path": "chain.jsonl"}, ValueError, "path"),
        ({"mode": "local", "path": "x", "pending_path": "p"}, ValueError, "pending"),
        ({"pending_path": 3}, TypeError, "pending_path"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": -1.0}, ValueError, "timeout"),
        ({"timeout": float("inf")}, ValueError, "timeout"),
        ({"timeout": "5"}, TypeError, "timeout"),
        ({"timeout": True}, TypeError, "timeout"),
        ({"base_url": "ftp://example.com"}, ValueError, "base_url"),
        ({"base_url": "api.immutablelog.com"}, ValueError, "base_url"),
        ({"base_url": "https://"}, ValueError, "base_url"),
        ({"base_url": "https://h:99999"}, ValueError, "base_url"),
        ({"base_url": "https://h/?q=1"}, ValueError, "base_url"),
        ({"base_url": None}, TypeError, "base_url"),
        ({"service": ""}, ValueError, "service"),
        ({"service": None}, TypeError, "service"),
        ({"env": 3}, TypeError, "env"),
        ({"env": ""}, ValueError, "env"),
        ({"max_attempts": 0}, ValueError, "max_attempts"),
        ({"max_attempts": 1.5}, TypeError, "max_attempts"),
        ({"backoff": -0.1}, ValueError, "backoff"),
        ({"backoff": 0}, ValueError, "backoff"),
        ({"backoff": None}, TypeError, "backoff"),
        ({"max_queue": 0}, ValueError, "max_queue"),
        ({"max_queue": "10"}, TypeError, "max_queue"),
    ],
)
def test_bad_arguments_name_the_argument(
    tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], name: str
) -> None:
    args: dict[str, Any] = {
        "api_key": "k",
        "service": "api",
        "pending_path": tmp_path / "p.jsonl",
    }
    if kwargs.get("mode") == "local":
        del args["pending_path"]
    args.update(kwargs)
    for key in ("path", "pending_path"):
        if isinstance(args.get(key), str) and args[key]:
            args[key] = str(tmp_path / args[key])
    with pytest.raises(error, match=name):
        ImmutableLogSink(args.pop("api_key"), **args)


def test_service_is_required() -> None:
    with pytest.raises(TypeError, match="service"):
        ImmutableLogSink("k")  # type: ignore[call-arg]


def test_default_pending_file_is_named_after_the_service(
    tmp_path: Path, dead_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with ImmutableLogSink("k", base_url=dead_url, service="my api/v2") as sink:
        assert sink.pending_path == str(
            tmp_path / "immutablelog-pending-my_api_v2.jsonl"
        )
    chain = tmp_path / "logs" / "chain.jsonl"
    chain.parent.mkdir()
    with ImmutableLogSink(
        "k", base_url=dead_url, service="api", mode="hybrid", path=chain
    ) as sink:
        assert sink.pending_path == str(chain.parent / "immutablelog-pending-api.jsonl")


# ------------------------------------------------------------ local chain


def write_chain(path: Path, count: int) -> list[dict[str, Any]]:
    events = [other(id=f"c{n}", n=n) for n in range(count)]
    with ImmutableLogSink(service="api", mode="local", path=path) as sink:
        for event in events:
            sink(event)
        assert sink.stats["written"] == count
    return events


def test_local_chain_lines_link_by_sha256(tmp_path: Path) -> None:
    path = tmp_path / "chain.jsonl"
    events = write_chain(path, 5)
    assert verify(path) == 5
    raw = path.read_bytes().splitlines()
    prev = "0" * 64
    for n, (line, event) in enumerate(zip(raw, events, strict=True), 1):
        entry = json.loads(line)
        assert list(entry) == ["seq", "prev", "id", "event", "hash"]
        assert entry["seq"] == n
        assert entry["prev"] == prev
        assert entry["id"] == event["id"]
        assert entry["event"] == event
        body = line[: line.rindex(b',"hash"')] + b"}"
        assert entry["hash"] == hashlib.sha256(body).hexdigest()
        prev = hashlib.sha256(line).hexdigest()


def test_an_empty_chain_verifies(tmp_path: Path) -> None:
    path = tmp_path / "chain.jsonl"
    path.touch()
    assert verify(path) == 0


def tampered(path: Path, lines: list[bytes], name: str, tail: bytes = b"\n") -> Path:
    copy = path.with_name(name)
    copy.write_bytes(b"\n".join(lines) + tail)
    return copy


def assert_broken(path: Path, line: int, reason: str) -> None:
    with pytest.raises(ChainBroken) as info:
        verify(path)
    assert info.value.line == line
    assert info.value.reason.startswith(reason), info.value.reason
    assert f"line {line}: {reason}" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_verify_finds_an_edited_line(tmp_path: Path) -> None:
    path = tmp_path / "chain.jsonl"
    write_chain(path, 5)
    lines = path.read_bytes().splitlines()
    edited = list(lines)
    edited[2] = edited[2].replace(b'"n":2', b'"n":7')
    assert_broken(tampered(path, edited, "edited.jsonl"), 3, "edited")


def test_verify_finds_an_edited_last_line(tmp_path: Path) -> None:
    path = tmp_path / "chain.jsonl"
    write_chain(path, 5)
    lines = path.read_bytes().splitlines()
    lines[4] = lines[4].replace(b'"c4"', b'"c9"')
    assert_broken(tampered(path, lines, "edited.jsonl"), 5, "edited")


def test_verify_finds_a_rehashed_line(tmp_path: Path) -> None:
    # The line is edited and its own hash recomputed: the next line's prev
    # no longer matches it.
    path = tmp_path / "chain.jsonl"
    write_chain(path, 5)
    lines = path.read_bytes().splitlines()
    body = lines[1][: lines[1].rindex(b',"hash"')] + b"}"
    body = body.replace(b'"n":1', b'"n":8')
    digest = hashlib.sha256(body).hexdigest().encode()
    lines[1] = body[:-1] + b',"hash":"' + digest + b'"}'
    assert_broken(tampered(path, lines, "rehashed.jsonl"), 3, "edited")


def test_verify_finds_a_removed_line(tmp_path: Path) -> None:
    path = tmp_path / "chain.jsonl"
    write_chain(path, 5)
    lines = path.read_bytes().splitlines()
    del lines[2]
    assert_broken(tampered(path, lines, "removed.jsonl"), 3, "removed")
    first_gone = path.read_bytes().splitlines()[1:]
    assert_broken(tampered(path, first_gone, "first.jsonl"), 1, "removed")


def test_verify_finds_swapped_lines(tmp_path: Path) -> None:
    path = tmp_path / "chain.jsonl"
    write_chain(path, 5)
    lines = path.read_bytes().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    assert_broken(tampered(path, lines, "swapped.jsonl"), 2, "reordered")


def test_verify_finds_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "chain.jsonl"
    write_chain(path, 5)
    data = path.read_bytes()
    cut = path.with_name("cut.jsonl")
    cut.write_bytes(data[:-20])
    assert_broken(cut, 5, "truncated")
    no_newline = path.with_name("no_newline.jsonl")
    no_newline.write_bytes(data[:-1])
    assert_broken(no_newline, 5, "truncated")


def test_a_chain_continues_across_sinks_and_after_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "chain.jsonl"
    write_chain(path, 2)
    write_chain(path, 2)  # a new sink reads the last line to go on
    assert verify(path) == 4
    with path.open("ab") as f:
        f.write(b'{"seq":5,"prev":"ab')  # a crash in the middle of a write
    write_chain(path, 1)
    assert len(path.read_bytes().splitlines()) == 6
    assert_broken(path, 5, "edited")  # the torn line, not the one after it


def test_a_rotated_chain_starts_again(tmp_path: Path) -> None:
    path = tmp_path / "chain.jsonl"
    with ImmutableLogSink(service="api", mode="local", path=path) as sink:
        sink(other(id="before"))
        path.rename(tmp_path / "chain.1.jsonl")
        sink(other(id="after"))
    assert verify(tmp_path / "chain.1.jsonl") == 1
    assert verify(path) == 1
    assert json.loads(path.read_bytes())["id"] == "after"


def test_chain_appends_from_threads_sinks_and_processes(tmp_path: Path) -> None:
    path = tmp_path / "chain.jsonl"
    script = textwrap.dedent(
        f"""
        from rust_py_rate_limit.immutablelog import ImmutableLogSink
        with ImmutableLogSink(service="api", mode="local", path={str(path)!r}) as s:
            for n in range(200):
                s({{"event_type": "rate_limit_banned", "id": f"proc-{{n}}"}})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    sinks = [ImmutableLogSink(service="api", mode="local", path=path) for _ in range(2)]

    def append(sink: ImmutableLogSink, name: str) -> None:
        for n in range(100):
            sink(other(id=f"{name}-{n}"))

    threads = [
        threading.Thread(target=append, args=(sinks[i % 2], f"t{i}")) for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for sink in sinks:
        sink.close()
    assert proc.wait(timeout=60) == 0
    assert verify(path) == 600
    ids = [json.loads(line)["id"] for line in path.read_bytes().splitlines()]
    assert len(set(ids)) == 600


def test_hybrid_records_locally_and_remotely(
    server: FakeImmutableLog, make_sink: MakeSink, tmp_path: Path
) -> None:
    path = tmp_path / "chain.jsonl"
    sink = make_sink(mode="hybrid", path=path)
    sink(blocked())
    sink(other(id="h1"))
    assert sink.flush(timeout=10)
    assert verify(path) == 2
    lines = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert [line["id"] for line in lines] == [r.key for r in server.requests]
    assert [json.loads(r.json["payload"]) for r in server.requests] == [
        line["event"] for line in lines
    ]
    assert sink.stats["written"] == 2
    assert sink.stats["sent"] == 2


# ------------------------------------------------------- process lifetime


def test_events_are_delivered_at_exit(server: FakeImmutableLog, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        from rust_py_rate_limit.immutablelog import ImmutableLogSink
        sink = ImmutableLogSink({API_KEY!r}, base_url={server.url!r}, service="api",
                                pending_path={str(tmp_path / "p.jsonl")!r})
        for n in range(20):
            sink({{"event_type": "storage_unavailable", "id": f"x{{n}}"}})
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert sorted(server.ledger) == sorted(f"x{n}" for n in range(20))
    assert os.listdir(tmp_path) == []  # delivered, and the pending file removed


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_queue_and_pending_file(
    server: FakeImmutableLog, tmp_path: Path
) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys
        from rust_py_rate_limit.immutablelog import ImmutableLogSink
        sink = ImmutableLogSink({API_KEY!r}, base_url={server.url!r}, service="api",
                                pending_path={str(tmp_path / "p.jsonl")!r})
        sink({{"event_type": "rate_limit_banned", "id": "parent-1"}})
        assert sink.flush(10)
        pid = os.fork()
        if pid == 0:
            sink({{"event_type": "rate_limit_banned", "id": "child-1"}})
            ok = sink.flush(10) and sink.stats["sent"] == 1
            names = sorted(os.listdir({str(tmp_path)!r}))
            ok = ok and names == ["p.1.jsonl", "p.jsonl"]
            sink.close()
            os._exit(0 if ok else 1)
        sink({{"event_type": "rate_limit_banned", "id": "parent-2"}})
        _, status = os.waitpid(pid, 0)
        assert sink.flush(10)
        assert sink.stats["sent"] == 2, sink.stats
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert sorted(server.ledger) == ["child-1", "parent-1", "parent-2"]
    assert len(server.requests) == 3


# -- wired to a limiter ---------------------------------------------------------


def test_a_limiters_events_reach_immutablelog_once_per_window(
    server: FakeImmutableLog, make_sink: MakeSink, tmp_path: Path
) -> None:
    """Two workers' limiters (same name) refuse one key in one window: each
    reports one blocked event, and both carry one Idempotency-Key, so the
    ledger holds one entry."""
    from rust_py_rate_limit import RateLimiter
    from rust_py_rate_limit.events import flush

    workers = [RateLimiter(2, 3600, name="login") for _ in range(2)]
    sinks = [make_sink(pending_path=tmp_path / f"pending-{i}.jsonl") for i in range(2)]
    for limiter, sink in zip(workers, sinks, strict=True):
        limiter.on_event(sink)
        for _ in range(50):
            limiter.allow("ip:203.0.113.9")
    flush()
    for sink in sinks:
        assert sink.flush(timeout=10)
    assert len(server.requests) == 2
    keys = {r.headers["Idempotency-Key"] for r in server.requests}
    assert len(keys) == 1, "same limiter, key and window: one ledger entry"
    payload = json.loads(server.requests[0].json["payload"])
    assert payload["event_type"] == "rate_limit_blocked"
    assert (payload["key"], payload["limiter"], payload["limit"]) == (
        "ip:203.0.113.9",
        "login",
        2,
    )
    assert server.requests[0].json["meta"]["event_name"] == "rate_limit_blocked"
