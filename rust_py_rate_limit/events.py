"""Decision events: what a limiter refused, banned or failed at, delivered to
callbacks off the request path.

``limiter.on_event(callback)`` registers ``callback(event)``; ``event`` is a
plain dict (JSON-ready) whose ``event_type`` is one of:

- ``"rate_limit_blocked"``: a key's first refusal in a window of the first
  limit (a flood is one event; the next one carries in ``refusals_before``
  how many refusals the previous one stood for). Fields: ``key``,
  ``limit``, ``window_seconds``, ``blocked_at`` (ISO 8601 UTC),
  ``window_start`` (the wall-clock window it fell in, the same in every
  worker), ``retry_after`` (seconds), ``limiter`` (its name),
  ``algorithm``, ``refusals_before``;
- ``"rate_limit_banned"`` (a ban began, by ``ban_after`` or ``ban()``; with
  ``ban_seconds``) and ``"rate_limit_unbanned"`` (``unban()`` lifted one);
- ``"storage_unavailable"`` (an outage of the Redis store began; with
  ``detail``, the error) and ``"storage_recovered"``.

In shadow mode the events report what the limit refused, though the request
was admitted. The Rust core queues events without the GIL in a bounded
queue per limiter (a full queue drops and counts them:
``stats()["events_dropped"]``); one daemon thread of this module drains
every limiter's queue every ``POLL_INTERVAL`` seconds and calls its
callbacks, so ``allow()`` never waits for one. A callback that raises is
logged (logger ``rust_py_rate_limit``), never propagated. A forked child
starts its own thread; at exit, what is queued is delivered within
``EXIT_DEADLINE`` seconds.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rust_py_rate_limit.limiter import RateLimiter

__all__ = ["EXIT_DEADLINE", "POLL_INTERVAL", "Event", "EventCallback", "flush"]

#: Seconds between two deliveries.
POLL_INTERVAL = 0.05
#: Seconds the last delivery at exit may take.
EXIT_DEADLINE = 2.0

Event = dict[str, Any]
EventCallback = Callable[[Event], object]

_logger = logging.getLogger("rust_py_rate_limit")


def _iso(at_us: int) -> str:
    stamp = datetime.fromtimestamp(at_us / 1e6, timezone.utc)
    return stamp.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _event(limiter: RateLimiter, raw: tuple[Any, ...]) -> Event:
    kind, key, at_us, retry_after, refusals_before, detail = raw
    limit, window = limiter.limits[0]
    event: Event = {"event_type": kind, "limiter": limiter.name}
    if kind == "rate_limit_blocked":
        start_us = at_us - at_us % (window * 1_000_000)
        event.update(
            key=key,
            limit=limit,
            window_seconds=window,
            blocked_at=_iso(at_us),
            window_start=_iso(start_us),
            retry_after=retry_after,
            algorithm=limiter.algorithm,
            refusals_before=refusals_before,
        )
    elif kind == "rate_limit_banned":
        event.update(
            key=key,
            limit=limit,
            window_seconds=window,
            banned_at=_iso(at_us),
            ban_seconds=retry_after,
            algorithm=limiter.algorithm,
        )
    elif kind == "rate_limit_unbanned":
        event.update(key=key, unbanned_at=_iso(at_us))
    else:
        event.update(at=_iso(at_us), storage=limiter.storage, detail=detail)
    return event


class _Dispatcher:
    """The delivery thread and the callbacks of every limiter."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.callbacks: weakref.WeakKeyDictionary[RateLimiter, list[EventCallback]] = (
            weakref.WeakKeyDictionary()
        )
        self.thread: threading.Thread | None = None
        self.wake = threading.Event()
        self.failed: set[int] = set()  # callbacks whose failure was logged
        self.delivering = threading.Lock()  # one delivery at a time

    def add(self, limiter: RateLimiter, callback: EventCallback) -> None:
        with self.lock:
            callbacks = self.callbacks.setdefault(limiter, [])
            if callback not in callbacks:  # registered once
                callbacks.append(callback)
            limiter._set_events(True)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(
                    target=self._run, name="rust_py_rate_limit-events", daemon=True
                )
                self.thread.start()

    def remove(self, limiter: RateLimiter, callback: EventCallback) -> bool:
        with self.lock:
            callbacks = self.callbacks.get(limiter, [])
            if callback not in callbacks:
                return False
            callbacks.remove(callback)
            self.failed.discard(id(callback))
            if not callbacks:
                del self.callbacks[limiter]
                limiter._set_events(False)
            return True

    def deliver(self, timeout: float = -1) -> int:
        """Drains every limiter once and calls its callbacks; how many
        events were delivered (0 when another delivery ran past
        ``timeout`` seconds, or when called from a callback)."""
        if threading.current_thread() is self.thread:
            return 0  # flush() from a callback: the delivery is under way
        if not self.delivering.acquire(timeout=timeout):
            return 0
        try:
            return self._deliver()
        finally:
            self.delivering.release()

    def _deliver(self) -> int:
        with self.lock:
            pairs = [(lim, list(cbs)) for lim, cbs in self.callbacks.items()]
        delivered = 0
        for limiter, callbacks in pairs:
            for raw in limiter._drain_events():
                event = _event(limiter, raw)
                delivered += 1
                for callback in callbacks:
                    try:
                        callback(dict(event))
                    except Exception:
                        if id(callback) not in self.failed:
                            self.failed.add(id(callback))
                            _logger.exception(
                                "an event callback of limiter %r raised (logged "
                                "once per callback); the event was dropped for it",
                                limiter.name,
                            )
        return delivered

    def _run(self) -> None:
        while True:
            self.wake.wait(POLL_INTERVAL)
            self.wake.clear()
            try:
                # Not `deliver()`: that returns at once on this thread (it
                # is how a callback's flush() is kept from waiting on itself).
                with self.delivering:
                    self._deliver()
            except Exception:  # never let the thread die
                _logger.exception("event delivery failed")

    def forked(self) -> None:
        self.lock = threading.Lock()
        self.delivering = threading.Lock()
        self.wake = threading.Event()
        self.thread = None
        # The events queued before the fork are the parent's to deliver.
        for limiter in list(self.callbacks):
            limiter._drain_events()
        if self.callbacks:
            self.thread = threading.Thread(
                target=self._run, name="rust_py_rate_limit-events", daemon=True
            )
            self.thread.start()

    def at_exit(self) -> None:
        deadline = time.monotonic() + EXIT_DEADLINE
        while (left := deadline - time.monotonic()) > 0 and self.deliver(left):
            pass


_dispatcher = _Dispatcher()
if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_dispatcher.forked)
atexit.register(_dispatcher.at_exit)


def add_callback(limiter: RateLimiter, callback: object) -> None:
    """`RateLimiter.on_event`."""
    if not callable(callback):
        raise TypeError(f"callback must be callable, not {type(callback).__name__}")
    _dispatcher.add(limiter, callback)


def remove_callback(limiter: RateLimiter, callback: EventCallback) -> bool:
    """`RateLimiter.off_event`."""
    return _dispatcher.remove(limiter, callback)


def flush(timeout: float = EXIT_DEADLINE) -> None:
    """Delivers what is queued now, in the calling thread, for up to
    ``timeout`` seconds (tests, and before a planned shutdown)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0 and _dispatcher.deliver(left):
        pass
