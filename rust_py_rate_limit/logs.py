"""Forwarding of the Rust core's log events to Python `logging`.

A storage outage and its end are always logged (WARNING, logger
``rust_py_rate_limit``), with no setup: they are handed to ``logging`` by
the next Python thread that returns from a storage call. Everything else
the core logs through Rust's ``tracing`` (janitor sweeps at DEBUG, anything
unexpected at WARNING) reaches Python only if you ask:

    import logging
    import rust_py_rate_limit

    rust_py_rate_limit.enable_logging()
    logging.getLogger("rust_py_rate_limit").setLevel(logging.DEBUG)

Records are queued by the Rust thread that emits them and handed to the
``rust_py_rate_limit`` logger by a daemon thread of this module, so Python is
never called from a Rust thread or while a Rust lock is held.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from rust_py_rate_limit._native import _drain_logs, _install_logging

__all__ = ["LOGGER_NAME", "enable_logging"]

LOGGER_NAME = "rust_py_rate_limit"

_lock = threading.Lock()
_thread: threading.Thread | None = None
_poll_interval = 0.1


def _pump(interval: float) -> None:
    logger = logging.getLogger(LOGGER_NAME)
    while True:
        records, dropped = _drain_logs()
        for level, target, message in records:
            if logger.isEnabledFor(level):
                logger.log(level, "%s", message, extra={"rust_target": target})
        if dropped:
            logger.warning("%d log records were dropped (queue full)", dropped)
        time.sleep(interval)


def _start(interval: float) -> None:
    global _thread
    _thread = threading.Thread(
        target=_pump, args=(interval,), name="rust_py_rate_limit-logs", daemon=True
    )
    _thread.start()


def _after_fork_in_child() -> None:
    # The pump thread does not exist in a forked child: start a new one.
    global _lock
    _lock = threading.Lock()
    if _thread is not None:
        _start(_poll_interval)


def enable_logging(poll_interval: float = 0.1) -> None:
    """Forwards the core's log events to the ``rust_py_rate_limit`` logger.

    Events at DEBUG and above are collected; set the logger's level to choose
    what is emitted. Calling it again changes nothing.

    Args:
        poll_interval: Seconds between deliveries of queued records.
    """
    global _poll_interval
    if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float):
        kind = type(poll_interval).__name__
        raise TypeError(f"poll_interval must be a number of seconds, not {kind}")
    if not poll_interval > 0:
        raise ValueError(f"poll_interval must be positive, got {poll_interval}")
    with _lock:
        if _thread is not None:
            return
        _install_logging()
        _poll_interval = float(poll_interval)
        _start(_poll_interval)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
