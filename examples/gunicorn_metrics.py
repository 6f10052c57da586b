"""Gunicorn settings for prometheus-client's multiprocess mode.

``child_exit`` is the hook prometheus-client documents: a dead worker's live
gauges (``rust_py_rate_limit_active_keys``...) leave the sums. Counters stay.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess


def child_exit(server: Any, worker: Any) -> None:
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
