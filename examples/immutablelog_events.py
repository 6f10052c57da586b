"""Decision events of a limiter, recorded in a tamper-evident local chain.

Runs offline: ``mode="local"`` appends each event to a JSON-lines file whose
lines each carry the SHA-256 of the line before. With an ImmutableLog API key,
``ImmutableLogSink(api_key, service="api")`` sends them to the service instead
(``mode="hybrid"``: both).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from rust_py_rate_limit import RateLimiter
from rust_py_rate_limit.events import flush
from rust_py_rate_limit.immutablelog import ImmutableLogSink, verify

chain = Path(tempfile.mkdtemp()) / "rate-limit-events.jsonl"
sink = ImmutableLogSink(service="api", mode="local", path=chain)

limiter = RateLimiter(
    limit=3, window_seconds=60, name="login", ban_after=5, ban_seconds=600
)
limiter.on_event(sink)  # any callable taking one event dict works

for _ in range(20):  # a credential-stuffing burst from one address
    limiter.allow("ip:203.0.113.9")

flush()  # events are delivered by a daemon thread; wait for them here
sink.close()
for line in chain.read_text().splitlines():
    entry = json.loads(line)  # {"seq", "prev", "id", "event", "hash"}
    print(entry["seq"], entry["event"]["event_type"], entry["event"]["key"])
print("chain lines verified:", verify(chain))
