"""A sink for rate-limit decision events: ImmutableLog, a local hash chain, or both.

`ImmutableLogSink` is a callable taking one event (a plain mapping such as
``{"event_type": "rate_limit_blocked", "key": "ip:127.0.0.1", ...}``) and
recording it in one or two places, depending on ``mode``:

* ``"remote"``: sent to ImmutableLog's ingestion API (``POST /v1/events``)
  by a daemon thread, retried while the service is unreachable, and kept in
  a *pending file* until ImmutableLog acknowledged it, so that nothing is
  lost when the process stops before delivery: the next sink opened on the
  same pending file sends it again, and the ``Idempotency-Key`` keeps it
  from being counted twice.
* ``"local"``: appended to a JSON-lines file in which every line carries the
  SHA-256 of the line before it; `verify` finds the first line that was
  edited, removed, reordered or cut off.
* ``"hybrid"``: both.

Only the standard library is used, and no framework is assumed: anything
that calls a function with an event dict can use it. Calling the sink never
waits for the network and never raises: an event that cannot be recorded is
logged (logger ``rust_py_rate_limit``) and counted in `ImmutableLogSink.stats`.

Example:
    >>> import tempfile, pathlib
    >>> from rust_py_rate_limit.immutablelog import ImmutableLogSink, verify
    >>> chain = pathlib.Path(tempfile.mkdtemp()) / "decisions.jsonl"
    >>> sink = ImmutableLogSink(service="api", mode="local", path=chain)
    >>> sink({"event_type": "rate_limit_banned", "key": "ip:10.0.0.7",
    ...       "limiter": "login", "id": "ban-1"})
    >>> sink.close()
    >>> verify(chain)
    1

    Sending to ImmutableLog instead (``IMMUTABLELOG_API_KEY`` set)::

        sink = ImmutableLogSink(os.environ["IMMUTABLELOG_API_KEY"], service="api",
                                env="production")
        sink(event)          # queued, returns at once
        sink.flush(5.0)      # optional: wait up to 5 s for delivery

Event ids:
    An event's ``"id"`` (a string) is its identity: it is sent as the
    ``Idempotency-Key`` and the ledger's ``trace_id``, and a sink records an
    id it has recently seen only once. An event without one gets a derived
    id, written into the recorded event: for ``rate_limit_blocked``, a UUID5
    of ``(limiter, key, window_start)`` (``blocked_at`` when there is no
    ``window_start``), so that every worker blocking the same key in the same
    window reports the same ledger entry; for any other event, a fresh UUID4.

Wire format:
    One request per event: ``POST {base_url}/v1/events`` with the headers
    ``Authorization: Bearer <api_key>``, ``Content-Type: application/json``,
    ``Idempotency-Key: <event id>`` and ``Request-Id: <uuid4>``, and the body
    ``{"payload": "<the event as compact JSON>", "meta": {"type": ...,
    "event_name": <event_type>, "service": ..., "trace_id": <event id>,
    "request_id": <the Request-Id>, "env": ...}}`` (``env`` only when set;
    ``type`` is ``"warning"`` for ``rate_limit_blocked``, ``rate_limit_banned``
    and ``storage_unavailable``, ``"info"`` for anything else). The Request-Id
    is drawn once per event when it is accepted and stored with it in the
    pending file, so every attempt, and a replay by a later process, sends
    byte-for-byte the same request.

Delivery:
    A 2xx answer delivers the event (a ``"duplicate": true`` answer is
    counted in ``duplicates``). A 5xx answer, a timeout or a network error is
    retried after an exponential, jittered delay (``backoff``, doubled at each
    attempt, at most 30 s, times a random factor in [0.5, 1]; a longer
    ``Retry-After`` on a 5xx is honoured up to 30 s), up to ``max_attempts``
    attempts. Then the service is taken to be down: the event and every event
    queued behind it stay in the pending file, new events are only written
    there, and one of them is tried again now and then (the same delays,
    continued); as soon as one is accepted, all of them are sent. Any other
    answer (3xx, 400, 401, 403, 429, ...) is final: the event is dropped,
    counted in ``failed_permanent``, and the first answer with each status
    is logged at ERROR.

Pending files:
    ``pending_path`` defaults to ``immutablelog-pending-<service>.jsonl`` in
    the directory of ``path`` (or the working directory when there is no
    ``path``). Each line is either an event, ``{"v": 1, "id": ..,
    "request_id": .., "body": "<the request body>"}``, written before the
    event is first sent, or an acknowledgement ``{"ack": "<id>"}``, written
    once ImmutableLog accepted or refused it; the file is emptied whenever
    every event in it is acknowledged (and compacted when acknowledgements
    pile up).

    Each process, and each sink, writes a pending file of its own, which it
    holds an exclusive ``fcntl.flock`` on: the first of
    ``<stem><suffix>``, ``<stem>.1<suffix>``, ``<stem>.2<suffix>``, ... that
    no living process holds. A lock is released when its process ends, however
    it ends, so a file nobody holds belongs to a process that is gone: a new
    sink takes its unacknowledged events over (at start, and on
    `ImmutableLogSink.flush_pending`) and sends them. A forked child starts
    with an empty queue and, at its first event, a pending file of its own.
    Without ``fcntl`` (Windows) there is no locking: give each process its
    own ``pending_path`` there.

    The files are written but not fsync'ed: an accepted event survives the
    process being killed, not the machine losing power.

Local chain:
    Each line of ``path`` is ``{"seq": <line number>, "prev": <SHA-256 hex of
    the previous line's bytes, 64 zeros on the first>, "id": <event id>,
    "event": {...}, "hash": <SHA-256 hex of the line up to ``,"hash"``, with
    the closing brace>}``. Appends are serialized across threads, and across
    processes with ``fcntl.flock``; a file renamed away (log rotation) is
    followed by a new chain in a new file. A hash chain shows accidental or
    careless changes, not a determined forger, who can recompute every hash;
    nor can it show that lines were cut off at the end. Hybrid mode sends the
    same events to ImmutableLog, whose ledger is the anchor.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import hashlib
import http.client
import json
import logging
import math
import os
import random
import re
import ssl
import threading
import time
import urllib.parse
import uuid
import weakref
from collections.abc import Mapping
from typing import Any, Literal

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["ChainBroken", "ImmutableLogSink", "verify"]

logger = logging.getLogger("rust_py_rate_limit")

Mode = Literal["remote", "local", "hybrid"]
_MODES = ("remote", "local", "hybrid")

#: The longest wait between two attempts (seconds).
MAX_BACKOFF = 30.0
#: How many recently recorded event ids a sink remembers to record each once.
SEEN_IDS = 16_384
#: Acknowledgements in a pending file beyond which it is compacted.
COMPACT_ACKS = 4_096

_ZERO_HASH = "0" * 64
_WARNING_TYPES = frozenset(
    {"rate_limit_blocked", "rate_limit_banned", "storage_unavailable"}
)
#: Namespace of the UUID5 ids derived for rate_limit_blocked events.
_BLOCKED_NAMESPACE = uuid.uuid5(
    uuid.NAMESPACE_URL, "https://api.immutablelog.com/rust-py-rate-limit/blocked"
)
_ID_RE = re.compile(r"[\x21-\x7e]{1,255}")
_HASH_SUFFIX_RE = re.compile(rb',"hash":"([0-9a-f]{64})"\}\Z')
_USER_AGENT = "rust-py-rate-limit-immutablelog/1"


class ChainBroken(ValueError):
    """A local chain file that does not verify.

    Attributes:
        line: The 1-based number of the first line that is wrong.
        reason: Why, e.g. ``"edited: ..."``, ``"removed: ..."``,
            ``"reordered: ..."`` or ``"truncated: ..."``.
    """

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}: line {line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


def verify(path: str | os.PathLike[str]) -> int:
    """Checks a local chain file written by a ``local`` or ``hybrid`` sink.

    Every line must be complete, match its own hash, carry its own line
    number and the hash of the line before it.

    Args:
        path: The chain file.

    Returns:
        The number of lines (0 for an empty file).

    Raises:
        ChainBroken: At the first bad line, saying whether it was edited,
            removed, reordered or truncated.
        OSError: When the file cannot be read.
    """
    name = os.fspath(path)
    with open(name, "rb") as f:
        data = f.read()
    if not data:
        return 0
    lines = data.split(b"\n")
    complete = lines[-1] == b""
    if complete:
        lines.pop()
    parsed: list[dict[str, Any] | str] = [_parse_chain_line(raw) for raw in lines]
    where: dict[int, int] = {}
    for number, entry in enumerate(parsed, 1):
        if isinstance(entry, dict):
            where.setdefault(entry["seq"], number)
    last = len(lines)
    for number, entry in enumerate(parsed, 1):
        if number == last and not complete:
            detail = "it is incomplete" if isinstance(entry, str) else "no newline"
            raise ChainBroken(name, number, f"truncated: the last line has {detail}")
        if isinstance(entry, str):
            raise ChainBroken(name, number, f"edited: {entry}")
        seq = entry["seq"]
        if seq != number:
            if number in where:
                reason = (
                    f"reordered: it holds entry {seq}, "
                    f"entry {number} is on line {where[number]}"
                )
            elif seq > number:
                missing = (
                    f"entry {number} is"
                    if seq == number + 1
                    else f"entries {number}-{seq - 1} are"
                )
                reason = f"removed: {missing} missing before it"
            else:
                reason = f"reordered: it holds entry {seq} again"
            raise ChainBroken(name, number, reason)
        expected = (
            _ZERO_HASH if number == 1 else hashlib.sha256(lines[number - 2]).hexdigest()
        )
        if entry["prev"] != expected:
            raise ChainBroken(
                name,
                number,
                f"edited: line {number - 1} is not the line this one was chained to",
            )
    return last


def _parse_chain_line(raw: bytes) -> dict[str, Any] | str:
    """The fields of a chain line whose hash matches, or why it is not one."""
    match = _HASH_SUFFIX_RE.search(raw)
    if match is None:
        return "not a chain line (no hash at its end)"
    body = raw[: match.start()] + b"}"
    try:
        obj = json.loads(raw)
    except ValueError:
        return "not valid JSON"
    if not (
        isinstance(obj, dict)
        and type(obj.get("seq")) is int
        and isinstance(obj.get("prev"), str)
        and isinstance(obj.get("id"), str)
        and isinstance(obj.get("event"), dict)
    ):
        return "not a chain line (missing or mistyped fields)"
    if hashlib.sha256(body).hexdigest() != match.group(1).decode():
        return "its content does not match its hash"
    return obj


class _Record:
    """One event on its way to ImmutableLog."""

    __slots__ = ("attempts", "body", "id", "in_file", "line", "outcome", "request_id")

    def __init__(self, event_id: str, request_id: str, body: bytes) -> None:
        self.id = event_id
        self.request_id = request_id
        self.body = body
        self.line = b""
        self.in_file = False
        self.attempts = 0
        #: None while undecided; "sent", "duplicate", "failed" or "parked".
        self.outcome: str | None = None


def _pending_line(record: _Record) -> bytes:
    entry = {
        "v": 1,
        "id": record.id,
        "request_id": record.request_id,
        "body": record.body.decode(),
    }
    return (json.dumps(entry, separators=(",", ":")) + "\n").encode()


def _ack_line(event_id: str) -> bytes:
    return (json.dumps({"ack": event_id}, separators=(",", ":")) + "\n").encode()


def _read_pending(data: bytes) -> tuple[dict[str, _Record], int, int]:
    """Unacknowledged events of a pending file, acks and unreadable lines."""
    live: dict[str, _Record] = {}
    acks = bad = 0
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            if "ack" in obj:
                live.pop(str(obj["ack"]), None)
                acks += 1
                continue
            record = _Record(
                str(obj["id"]), str(obj["request_id"]), obj["body"].encode()
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            bad += 1
            continue
        record.line = raw + b"\n"
        record.in_file = True
        live.pop(record.id, None)
        live[record.id] = record
    return live, acks, bad


def _try_flock(fd: int) -> bool:
    """Takes an exclusive lock on ``fd`` without waiting; False if held."""
    if fcntl is None:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _pread(fd: int, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes at ``offset`` (the caller holds the file's lock)."""
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows
    return os.read(fd, size)  # pragma: no cover


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks = []
    offset = 0
    while offset < size:
        chunk = _pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _integer(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _optional_path(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike):
        raise TypeError(
            f"{name} must be a str or os.PathLike, not {type(value).__name__}"
        )
    text = os.fspath(value)
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a text path, not bytes")
    if not text:
        raise ValueError(f"{name} must not be empty")
    return os.path.abspath(text)


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value or not value.isprintable():
        raise ValueError(f"{name} must be a non-empty printable string, got {value!r}")
    return value


class ImmutableLogSink:
    """Records rate-limit decision events in ImmutableLog and/or a local chain.

    Call it with one event mapping; it returns at once. See the module
    documentation for the wire format, the retry policy and the file formats.

    Example:
        >>> sink = ImmutableLogSink(  # doctest: +SKIP
        ...     "il_live_...", service="api", env="production", mode="hybrid",
        ...     path="/var/log/api/decisions.jsonl")
        >>> sink({"event_type": "rate_limit_blocked",  # doctest: +SKIP
        ...       "limiter": "api", "key": "ip:127.0.0.1", "limit": 100,
        ...       "window_seconds": 60, "window_start": "2026-12-04T12:00:00Z",
        ...       "retry_after": 12.5})
        >>> sink.flush(timeout=5.0)  # doctest: +SKIP
        True
        >>> sink.stats["sent"]  # doctest: +SKIP
        1

    Args:
        api_key: The ImmutableLog API key; required in ``remote`` and
            ``hybrid`` mode.
        base_url: The API's root, ``http://`` or ``https://`` (a path is kept:
            events go to ``<base_url>/v1/events``).
        service: The service name sent with every event (``meta.service``).
        env: The environment sent with every event (``meta.env``), if any.
        mode: ``"remote"``, ``"local"`` or ``"hybrid"``.
        path: The local chain file; required in ``local`` and ``hybrid`` mode.
        pending_path: Where undelivered events are kept (``remote`` and
            ``hybrid`` mode); a process whose file is taken uses
            ``<stem>.1<suffix>`` and so on. Default:
            ``immutablelog-pending-<service>.jsonl`` next to ``path``, or in
            the working directory.
        timeout: Seconds to connect, and to wait for each answer.
        max_attempts: Attempts at an event before the service is taken to be
            down and the event left pending.
        backoff: The delay before the second attempt, in seconds; it doubles
            at each further attempt, up to 30 s.
        max_queue: Events held in memory for delivery at most; more are
            dropped (counted in ``dropped``).

    Raises:
        TypeError: When an argument has the wrong type (named).
        ValueError: When an argument's value is refused (named).
        OSError: When the chain or pending file cannot be opened.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = "https://api.immutablelog.com",
        service: str,
        env: str | None = None,
        mode: Mode = "remote",
        path: str | os.PathLike[str] | None = None,
        pending_path: str | os.PathLike[str] | None = None,
        timeout: float = 5.0,
        max_attempts: int = 8,
        backoff: float = 0.5,
        max_queue: int = 10_000,
    ) -> None:
        if not isinstance(mode, str):
            raise TypeError(f"mode must be a str, not {type(mode).__name__}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {', '.join(_MODES)}; got {mode!r}")
        self._remote = mode in ("remote", "hybrid")
        self._local = mode in ("local", "hybrid")
        self.mode: Mode = mode
        self.service = _text("service", service)
        self.env = None if env is None else _text("env", env)
        if api_key is not None:
            api_key = _text("api_key", api_key)
            if not api_key.isascii():
                raise ValueError("api_key must be ASCII")
        elif self._remote:
            raise ValueError(f"api_key is required in {mode} mode")
        self._api_key = api_key
        if not isinstance(base_url, str):
            raise TypeError(f"base_url must be a str, not {type(base_url).__name__}")
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url must be an http(s):// URL, got {base_url!r}")
        if url.query or url.fragment:
            raise ValueError(
                f"base_url must not have a query or fragment: {base_url!r}"
            )
        try:
            port = url.port
        except ValueError as exc:
            raise ValueError(f"base_url has a bad port: {base_url!r}") from exc
        self.base_url = base_url.rstrip("/")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = port
        self._endpoint = url.path.rstrip("/") + "/v1/events"
        self.path = _optional_path("path", path)
        if self._local and self.path is None:
            raise ValueError(f"path is required in {mode} mode")
        if not self._local and self.path is not None:
            raise ValueError("path is only used in local and hybrid mode")
        pending = _optional_path("pending_path", pending_path)
        if not self._remote and pending is not None:
            raise ValueError("pending_path is only used in remote and hybrid mode")
        if self._remote and pending is None:
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", self.service)
            folder = os.path.dirname(self.path) if self.path else os.getcwd()
            pending = os.path.join(folder, f"immutablelog-pending-{safe}.jsonl")
        self.pending_path = pending
        self.timeout = _number("timeout", timeout)
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.max_attempts = _integer("max_attempts", max_attempts, 1)
        self.backoff = _number("backoff", backoff)
        if not self.backoff > 0:
            raise ValueError(f"backoff must be positive, got {backoff!r}")
        self.max_queue = _integer("max_queue", max_queue, 1)

        self._init_state()
        self._closed = False
        try:
            if self._local:
                self._open_chain()
            if self._remote:
                with self._file_lock:
                    found = self._acquire_pending()
                    found += self._adopt_orphans()
                with self._lock:
                    self._park_found(found)
        except BaseException:
            for fd in (self._chain_fd, self._pending_fd):
                if fd is not None:
                    os.close(fd)
            raise
        _sinks.add(self)

    # ------------------------------------------------------------------ state

    def _init_state(self) -> None:
        """Locks, queue and counters: at construction and in a forked child."""
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._file_lock = threading.Lock()
        self._chain_lock = threading.Lock()
        self._queue: collections.deque[_Record] = collections.deque()
        self._parked: dict[str, _Record] = {}
        self._inflight: _Record | None = None
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._down = False
        self._failures = 0
        self._probe_at = 0.0
        self._conn: http.client.HTTPConnection | None = None
        self._logged_statuses: set[int] = set()
        self._logged: set[str] = set()
        self._counts = dict.fromkeys(
            (
                "sent",
                "duplicates",
                "retried",
                "failed_permanent",
                "dropped",
                "invalid",
                "deduplicated",
                "written",
                "write_errors",
            ),
            0,
        )
        # The pending file (remote/hybrid), guarded by _file_lock.
        self._pending_fd: int | None = None
        self._pending_name: str | None = None
        self._file_live: dict[str, _Record] = {}
        self._file_acks = 0
        # The chain file (local/hybrid), guarded by _chain_lock.
        self._chain_fd: int | None = None
        self._chain_end = -1
        self._chain_seq = 0
        self._chain_prev = _ZERO_HASH

    @property
    def stats(self) -> dict[str, int]:
        """Counters since the sink was made (in a forked child: since the fork).

        ``sent`` (events ImmutableLog accepted, ``duplicates`` included),
        ``duplicates`` (accepted as already recorded), ``retried`` (attempts
        after a failed one), ``failed_permanent`` (refused with a final
        status), ``dropped`` (queue full, or the sink closed), ``pending``
        (waiting for delivery: queued, in flight or left in the pending file),
        ``invalid`` (not an event), ``deduplicated`` (an id this sink had
        just recorded), ``written`` (lines appended to the chain) and
        ``write_errors`` (chain or pending-file writes that failed).
        """
        with self._lock:
            stats = dict(self._counts)
            stats["pending"] = (
                len(self._queue) + len(self._parked) + (self._inflight is not None)
            )
        return stats

    def __repr__(self) -> str:
        return (
            f"ImmutableLogSink(service={self.service!r}, mode={self.mode!r}, "
            f"base_url={self.base_url!r}, path={self.path!r}, "
            f"pending_path={self._pending_name or self.pending_path!r})"
        )

    def __enter__(self) -> ImmutableLogSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _level(self, topic: str, level: int) -> int:
        """``level`` the first time for ``topic``, DEBUG after (_lock held).

        The caller logs after releasing the lock: a logging handler may call
        the sink.
        """
        if topic in self._logged:
            return logging.DEBUG
        self._logged.add(topic)
        return level

    # --------------------------------------------------------------- the call

    def __call__(self, event: Mapping[str, Any]) -> None:
        """Records one event; returns at once and never raises.

        Args:
            event: A mapping with a string ``"event_type"``, JSON-serializable
                values and optionally a string ``"id"``.
        """
        try:
            self._record(event)
        except Exception as exc:
            try:
                with self._lock:
                    self._counts["invalid"] += 1
                    level = self._level("invalid", logging.WARNING)
                logger.log(
                    level,
                    "ImmutableLogSink: event not recorded (%s: %s)",
                    type(exc).__name__,
                    exc,
                )
            except Exception:  # pragma: no cover - logging itself failed
                pass

    def _record(self, event: Mapping[str, Any]) -> None:
        if not isinstance(event, Mapping):
            raise TypeError(f"an event must be a mapping, not {type(event).__name__}")
        data = dict(event)
        event_type = data.get("event_type")
        if not isinstance(event_type, str) or not event_type:
            raise ValueError("the event has no string 'event_type'")
        event_id = data.get("id")
        if event_id is None:
            event_id = data["id"] = self._derive_id(data)
        elif not isinstance(event_id, str) or not _ID_RE.fullmatch(event_id):
            raise ValueError(
                "the event's 'id' must be a string of 1-255 printable ASCII characters"
            )
        payload = json.dumps(
            data, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        with self._lock:
            if self._closed:
                self._counts["dropped"] += 1
                level = self._level("closed", logging.WARNING)
            elif event_id in self._seen:
                self._seen.move_to_end(event_id)
                self._counts["deduplicated"] += 1
                return
            else:
                self._seen[event_id] = None
                if len(self._seen) > SEEN_IDS:
                    self._seen.popitem(last=False)
                level = 0
        if level:
            logger.log(level, "ImmutableLogSink: called after close(), event dropped")
            return
        if self._local:
            self._append_chain(event_id, payload)
        if self._remote:
            self._enqueue(event_type, event_id, payload)

    def _derive_id(self, event: dict[str, Any]) -> str:
        if event["event_type"] == "rate_limit_blocked":
            window = event.get("window_start")
            if window is None:
                window = event.get("blocked_at")
            if window is not None:
                name = json.dumps(
                    [event.get("limiter"), event.get("key"), window],
                    separators=(",", ":"),
                    ensure_ascii=False,
                )
                return str(uuid.uuid5(_BLOCKED_NAMESPACE, name))
        return str(uuid.uuid4())

    def _enqueue(self, event_type: str, event_id: str, payload: str) -> None:
        request_id = str(uuid.uuid4())
        meta: dict[str, str] = {
            "type": "warning" if event_type in _WARNING_TYPES else "info",
            "event_name": event_type,
            "service": self.service,
            "trace_id": event_id,
            "request_id": request_id,
        }
        if self.env is not None:
            meta["env"] = self.env
        body = json.dumps(
            {"payload": payload, "meta": meta},
            separators=(",", ":"),
            ensure_ascii=False,
        )
        record = _Record(event_id, request_id, body.encode())
        record.line = _pending_line(record)
        with self._lock:
            if self._closed or len(self._queue) + len(self._parked) >= self.max_queue:
                self._seen.pop(event_id, None)
                self._counts["dropped"] += 1
                level = self._level("dropped", logging.WARNING)
                error = None
            else:
                level = 0
                error = self._write_pending(record)
                if error is not None:
                    self._counts["write_errors"] += 1
                    level = self._level("pending", logging.ERROR)
                self._queue_record(record)
        if error is not None:
            logger.log(
                level,
                "ImmutableLogSink: cannot write the pending file %s (%s); events "
                "are sent but would be lost if the process stopped",
                self._pending_name or self.pending_path,
                error,
            )
        elif level:
            logger.log(
                level,
                "ImmutableLogSink: %d events waiting for delivery, event dropped",
                self.max_queue,
            )

    def _queue_record(self, record: _Record) -> None:
        """Hands an event to the delivery thread (_lock held)."""
        if self._down:  # only written down; the next probe tells when to send
            record.outcome = "parked"
            self._parked[record.id] = record
        else:
            self._queue.append(record)
        self._cond.notify_all()
        self._start_worker()

    # ----------------------------------------------------------- chain file

    def _open_chain(self) -> None:
        assert self.path is not None
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        if self._chain_fd is not None:
            os.close(self._chain_fd)
        self._chain_fd = fd
        self._chain_end = -1

    def _append_chain(self, event_id: str, payload: str) -> None:
        assert self.path is not None
        try:
            with self._chain_lock:
                if self._chain_fd is None or not _same_file(self._chain_fd, self.path):
                    self._open_chain()  # first use, or the file was rotated away
                fd = self._chain_fd
                assert fd is not None
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    size = os.fstat(fd).st_size
                    lead = b""
                    if size != self._chain_end:
                        lead = self._read_chain_tail(fd, size)
                    body = (
                        f'{{"seq":{self._chain_seq + 1},"prev":"{self._chain_prev}",'
                        f'"id":{json.dumps(event_id)},"event":{payload}}}'
                    ).encode()
                    digest = hashlib.sha256(body).hexdigest()
                    line = body[:-1] + f',"hash":"{digest}"}}'.encode()
                    _write_all(fd, lead + line + b"\n")
                    self._chain_end = size + len(lead) + len(line) + 1
                    self._chain_seq += 1
                    self._chain_prev = hashlib.sha256(line).hexdigest()
                finally:
                    if fcntl is not None:
                        fcntl.flock(fd, fcntl.LOCK_UN)
            with self._lock:
                self._counts["written"] += 1
        except OSError as exc:
            self._chain_end = -1
            with self._lock:
                self._counts["write_errors"] += 1
                level = self._level("chain", logging.ERROR)
            logger.log(
                level, "ImmutableLogSink: cannot append to %s: %s", self.path, exc
            )

    def _read_chain_tail(self, fd: int, size: int) -> bytes:
        """Learns seq and prev from the file's last line; b"\\n" if it is torn."""
        if size == 0:
            self._chain_seq, self._chain_prev = 0, _ZERO_HASH
            return b""
        block = 65536
        start = size
        tail = b""
        while start > 0:
            start = max(0, start - block)
            tail = _pread(fd, size - start, start)
            if tail.rstrip(b"\n").count(b"\n") >= 1:
                break
        torn = not tail.endswith(b"\n")
        last = tail[:-1] if not torn else tail
        last = last.rsplit(b"\n", 1)[-1]
        self._chain_prev = hashlib.sha256(last).hexdigest()
        entry = _parse_chain_line(last)
        if isinstance(entry, dict):
            self._chain_seq = entry["seq"]
        else:  # an unreadable last line: count the lines
            data = _read_all(fd)
            self._chain_seq = data.count(b"\n") + (1 if torn else 0)
        return b"\n" if torn else b""

    # --------------------------------------------------------- pending file

    def _pending_candidates(self) -> list[tuple[int, str]]:
        """Pending files of this sink's family in its folder, by index."""
        assert self.pending_path is not None
        folder, name = os.path.split(self.pending_path)
        stem, suffix = os.path.splitext(name)
        pattern = re.compile(
            re.escape(stem) + r"(?:\.([1-9][0-9]{0,5}))?" + re.escape(suffix) + r"\Z"
        )
        found = []
        try:
            names = os.listdir(folder)
        except OSError:
            return []
        for entry in names:
            match = pattern.match(entry)
            if match:
                found.append((int(match.group(1) or 0), os.path.join(folder, entry)))
        return sorted(found)

    def _pending_file(self, index: int) -> str:
        assert self.pending_path is not None
        if index == 0:
            return self.pending_path
        stem, suffix = os.path.splitext(self.pending_path)
        return f"{stem}.{index}{suffix}"

    def _acquire_pending(self) -> list[_Record]:
        """Locks the first free pending file of the family and loads it.

        Called with _file_lock held. Returns the unacknowledged events found.
        """
        for index in range(100_000):
            name = self._pending_file(index)
            while True:
                fd = os.open(name, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
                if not _try_flock(fd):
                    os.close(fd)
                    break
                if _same_file(fd, name):
                    return self._take_pending(fd, name)
                os.close(fd)  # replaced or removed while we waited: again
        raise OSError(f"no free pending file next to {self.pending_path}")

    def _take_pending(self, fd: int, name: str) -> list[_Record]:
        self._pending_fd = fd
        self._pending_name = name
        data = _read_all(fd)
        live, acks, bad = _read_pending(data)
        if bad:
            logger.warning(
                "ImmutableLogSink: %d unreadable lines skipped in %s", bad, name
            )
        self._file_live = live
        self._file_acks = acks
        if not live:
            if data:
                os.ftruncate(fd, 0)
                self._file_acks = 0
        elif acks or bad or not data.endswith(b"\n"):
            try:
                self._rewrite_pending()
            except OSError as exc:
                logger.warning("ImmutableLogSink: cannot compact %s: %s", name, exc)
                if not data.endswith(b"\n"):
                    _write_all(fd, b"\n")
        if live:
            logger.info(
                "ImmutableLogSink: %d undelivered events found in %s", len(live), name
            )
        return list(live.values())

    def _park_found(self, found: list[_Record]) -> None:
        """Queues events found in pending files for delivery (_lock held)."""
        for record in found:
            record.outcome = "parked"
            self._parked[record.id] = record
            self._seen[record.id] = None
        while len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        if self._parked:
            self._start_worker()
            self._cond.notify_all()

    def _adopt_orphans(self) -> list[_Record]:
        """Moves the events of pending files no process holds into ours.

        Called with _file_lock held. Returns the events taken over.
        """
        taken: list[_Record] = []
        if fcntl is None or self._pending_fd is None:  # pragma: no cover
            return taken
        for _, name in self._pending_candidates():
            if name == self._pending_name:
                continue
            try:
                fd = os.open(name, os.O_RDWR)
            except OSError:
                continue
            try:
                if not _try_flock(fd) or not _same_file(fd, name):
                    continue
                live, _, _ = _read_pending(_read_all(fd))
                fresh = [r for r in live.values() if r.id not in self._file_live]
                if fresh:
                    _write_all(self._pending_fd, b"".join(r.line for r in fresh))
                for record in fresh:
                    self._file_live[record.id] = record
                os.unlink(name)
                taken += fresh
                if fresh:
                    logger.info(
                        "ImmutableLogSink: %d undelivered events taken over from %s",
                        len(fresh),
                        name,
                    )
            except OSError as exc:
                logger.warning("ImmutableLogSink: cannot take over %s: %s", name, exc)
            finally:
                os.close(fd)
        return taken

    def _write_pending(self, record: _Record) -> OSError | None:
        """Appends an event to the pending file (called with _lock held)."""
        with self._file_lock:
            try:
                if self._pending_fd is None:
                    # In a forked child, at its first event.
                    self._park_found(self._acquire_pending())
                assert self._pending_fd is not None
                _write_all(self._pending_fd, record.line)
            except OSError as exc:
                return exc
            record.in_file = True
            self._file_live[record.id] = record
        return None

    def _ack(self, record: _Record) -> None:
        """Marks an event as done in the pending file."""
        if not record.in_file:
            return
        with self._file_lock:
            if self._file_live.pop(record.id, None) is None or self._pending_fd is None:
                return
            try:
                if not self._file_live:
                    os.ftruncate(self._pending_fd, 0)
                    self._file_acks = 0
                    return
                _write_all(self._pending_fd, _ack_line(record.id))
                self._file_acks += 1
                if self._file_acks > COMPACT_ACKS and self._file_acks > len(
                    self._file_live
                ):
                    self._rewrite_pending()
            except OSError as exc:
                logger.debug("ImmutableLogSink: ack not written: %s", exc)

    def _rewrite_pending(self) -> None:
        """Replaces the pending file by its unacknowledged events.

        The new file is locked before it is renamed into place, so that no
        other process can take it; called with _file_lock held.
        """
        assert self._pending_fd is not None
        assert self._pending_name is not None
        folder, name = os.path.split(self._pending_name)
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _try_flock(fd)
            _write_all(fd, b"".join(r.line for r in self._file_live.values()))
            os.replace(tmp, self._pending_name)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(self._pending_fd)
        self._pending_fd = fd
        self._file_acks = 0

    # ------------------------------------------------------------- delivery

    def _start_worker(self) -> None:
        """Starts the delivery thread if it is not running (_lock held)."""
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(
                target=self._run,
                name=f"immutablelog-{self.service}",
                daemon=True,
            )
            self._thread.start()

    def _delay(self, failures: int) -> float:
        base = min(MAX_BACKOFF, self.backoff * 2.0 ** min(failures - 1, 64))
        return base * random.uniform(0.5, 1.0)

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    record, budget = self._next_record()
                    if record is None:
                        return
                    self._inflight = record
                try:
                    outcome = self._deliver(record, budget)
                except Exception:  # a bug: keep the event, try again later
                    logger.exception("ImmutableLogSink: delivery failed")
                    with self._lock:
                        self._failures += 1
                        self._down = True
                        self._probe_at = time.monotonic() + max(
                            1.0, self._delay(self._failures)
                        )
                    outcome = "parked"
                self._finish(record, outcome)
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _next_record(self) -> tuple[_Record | None, int]:
        """Waits for the next event to send and its number of attempts."""
        while True:
            if self._stopping:
                return None, 0
            if self._queue:
                return self._queue.popleft(), self.max_attempts
            if self._parked:
                if not self._down:
                    record = self._parked.pop(next(iter(self._parked)))
                    return record, self.max_attempts
                wait = self._probe_at - time.monotonic()
                if wait <= 0:
                    return self._parked.pop(next(iter(self._parked))), 1
                self._cond.wait(wait)
            else:
                self._cond.wait()

    def _deliver(self, record: _Record, budget: int) -> str:
        """Sends one event: "sent", "duplicate", "failed", "parked" or "stop"."""
        attempt = 0
        while True:
            if record.attempts:
                with self._lock:
                    self._counts["retried"] += 1
            record.attempts += 1
            attempt += 1
            kind, status, detail, retry_after = self._send(record)
            if kind in ("sent", "duplicate"):
                return kind
            if kind == "failed":
                with self._lock:
                    first = status not in self._logged_statuses
                    self._logged_statuses.add(status)
                logger.log(
                    logging.ERROR if first else logging.DEBUG,
                    "ImmutableLog refused an event with %d %s; events refused so "
                    "are dropped (logged once per status)",
                    status,
                    detail,
                )
                return "failed"
            with self._lock:
                self._failures += 1
                delay = max(self._delay(self._failures), min(retry_after, MAX_BACKOFF))
                give_up = attempt >= budget
                was_down = self._down
                if give_up:
                    self._down = True
                    self._probe_at = time.monotonic() + delay
            if give_up:
                logger.log(
                    logging.DEBUG if was_down else logging.WARNING,
                    "ImmutableLog unreachable after %d attempts (%s); events are "
                    "kept in %s and sent when it answers again",
                    attempt,
                    detail,
                    self._pending_name,
                )
                return "parked"
            logger.debug("ImmutableLog: %s; retrying in %.2f s", detail, delay)
            with self._lock:
                if self._cond.wait_for(lambda: self._stopping, delay):
                    return "stop"

    def _send(self, record: _Record) -> tuple[str, int, str, float]:
        """One HTTP attempt: (kind, status, detail, retry_after)."""
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Idempotency-Key": record.id,
            "Request-Id": record.request_id,
            "User-Agent": _USER_AGENT,
        }
        for fresh in (False, True):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._conn.request("POST", self._endpoint, record.body, headers)
                response = self._conn.getresponse()
                data = response.read()
            except Exception as exc:  # OSError, HTTPException, anything odd
                self._conn.close()
                self._conn = None
                if reused and not fresh:
                    continue  # a kept-alive connection the server had closed
                return "retry", 0, f"{type(exc).__name__}: {exc}", 0.0
            if response.will_close:
                self._conn.close()
                self._conn = None
            break
        status = response.status
        detail = f"{response.reason}: {data[:200].decode(errors='replace')}".strip()
        if 200 <= status < 300:
            try:
                answer = json.loads(data)
                duplicate = isinstance(answer, dict) and answer.get("duplicate") is True
            except ValueError:
                duplicate = False
            return ("duplicate" if duplicate else "sent"), status, detail, 0.0
        if 500 <= status < 600:
            retry_after = 0.0
            with contextlib.suppress(ValueError):
                retry_after = max(0.0, float(response.headers.get("Retry-After", 0)))
            return "retry", status, f"{status} {detail}", retry_after
        return "failed", status, detail, 0.0

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host,
                self._port,
                timeout=self.timeout,
                context=ssl.create_default_context(),
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _finish(self, record: _Record, outcome: str) -> None:
        if outcome in ("sent", "duplicate", "failed"):
            self._ack(record)
        recovered = 0
        with self._cond:
            self._inflight = None
            if outcome in ("sent", "duplicate"):
                self._counts["sent"] += 1
                if outcome == "duplicate":
                    self._counts["duplicates"] += 1
            elif outcome == "failed":
                self._counts["failed_permanent"] += 1
            if outcome in ("sent", "duplicate", "failed"):
                # The service answered: it is up.
                if self._down:
                    recovered = len(self._parked)
                self._down = False
                self._failures = 0
            else:  # parked, or stopped: the event stays in the pending file
                self._parked[record.id] = record
                if outcome == "parked":
                    for queued in self._queue:
                        queued.outcome = "parked"
                        self._parked[queued.id] = queued
                    self._queue.clear()
                    for parked in self._parked.values():
                        parked.outcome = "parked"
            record.outcome = outcome
            self._cond.notify_all()
        if recovered:
            logger.info(
                "ImmutableLog answers again; sending %d pending events", recovered
            )

    # ----------------------------------------------------------- public API

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every queued event was delivered, refused or left pending.

        Args:
            timeout: Seconds to wait at most; None waits as long as it takes
                (at most ``max_attempts`` attempts per event).

        Returns:
            True if nothing is left to deliver: every event was accepted or
            refused. False on timeout, or when events were left in the pending
            file because the service could not be reached.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._stopping and (
                self._queue
                or self._inflight is not None
                or (self._parked and not self._down and self._thread is not None)
            ):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return not self._parked

    def flush_pending(self) -> int:
        """Sends again what the pending files hold, and waits for the outcome.

        Events left pending after ``max_attempts`` attempts, and those of
        pending files no living process holds (taken over first), are tried
        again now, each with ``max_attempts`` attempts, until one cannot be
        delivered either.

        Returns:
            How many of them were delivered (accepted by ImmutableLog).
        """
        if not self._remote or self._closed:
            return 0
        with self._file_lock:
            found = self._adopt_orphans()
        with self._cond:
            self._park_found(found)
            batch = list(self._parked.values())
            if not batch:
                return 0
            for record in batch:
                record.outcome = None
            self._down = False
            self._start_worker()
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: (
                    self._stopping
                    or all(r.outcome is not None for r in batch)
                    or (self._down and self._inflight not in batch)
                )
            )
            return sum(r.outcome in ("sent", "duplicate") for r in batch)

    def close(self, timeout: float = 5.0) -> None:
        """Flushes for at most ``timeout`` seconds, then stops the sink.

        Events not delivered by then stay in the pending file for the next
        sink opened on it. Called at exit for every sink still open.

        Args:
            timeout: Seconds to wait for delivery.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._file_lock:
            if self._pending_fd is not None:
                if not self._file_live and self._pending_name is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(self._pending_name)
                os.close(self._pending_fd)
                self._pending_fd = None
        with self._chain_lock:
            if self._chain_fd is not None:
                os.close(self._chain_fd)
                self._chain_fd = None
        _sinks.discard(self)

    def _after_fork_in_child(self) -> None:
        """The child's own state: no queue, thread or inherited file handles."""
        for fd in (self._pending_fd, self._chain_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        closed = self._closed
        self._init_state()
        self._closed = closed


_sinks: weakref.WeakSet[ImmutableLogSink] = weakref.WeakSet()


def _close_all(timeout: float = 5.0) -> None:
    """At exit: closes every open sink within one shared deadline."""
    deadline = time.monotonic() + timeout
    for sink in list(_sinks):
        sink.close(max(0.0, deadline - time.monotonic()))


def _after_fork_in_child() -> None:
    for sink in list(_sinks):
        sink._after_fork_in_child()


atexit.register(_close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
