"""Run the benchmark suites and print a markdown report (what ``make bench`` runs).

``--suite core`` (the default):

1. ``benches/scenarios.py`` in this interpreter: dict, ours_allow, ours_check,
   limits, token_bucket (``ours`` is whatever ``rust_py_rate_limit`` imports).
2. The same in ``.venv-bench-031/`` (created on first use) with the PyPI
   release ``rust-py-rate-limit==0.3.1``, which has the same import name and so
   needs its own interpreter: dict, rprl031_allow, rprl031_check. Its ratios are
   to its own dict baseline, measured in that process.
3. Prints the tables and the targets; writes ``benches/results/latest.json``.

``--suite algorithms``: ``benches/algorithms.py`` in this interpreter (each of
our algorithms against our fixed window, and each peer against our same
algorithm); prints its tables and targets; writes
``benches/results/latest-algorithms.json``.

``--suite async``: ``benches/async_suite.py`` (awaitable twins in a running
loop, the expired-key sweep and allow() latency during it, max_keys set vs
unset); writes ``benches/results/latest-async.json``.

``--suite http``: ``benches/http_suite.py`` (FastAPI and Flask apps driven
in-process through ASGI / WSGI calls: no limiting vs our middleware /
extension vs slowapi / Flask-Limiter); writes
``benches/results/latest-http.json``.

``--suite redis``: ``benches/redis_bench.py`` against one redis-server
(``--redis-url``, or a throwaway one it starts on a free loopback port and
stops; skipped with a note if there is neither): raw redis-py PING and
EVALSHA round trips, our Redis store per algorithm, ``await aallow()`` one at
a time vs 100 concurrent, and the peers' Redis stores (limits, throttled-py,
pyrate-limiter); then how long a call takes to give up on a server that
accepts and never answers (p50/p99/max, timeouts of 10, 50 and 500 ms, sync
and awaitable; about a minute); writes ``benches/results/latest-redis.json``.

``--suite postgres``: ``benches/postgres_bench.py`` against one PostgreSQL
server (``--postgres-url``, or a throwaway one started with the tests' helper
``tests/python/pg_server.py`` and removed at the end; skipped with a note if
PostgreSQL is not installed): a raw psycopg prepared ``SELECT 1`` round trip,
our PostgreSQL store per algorithm, ``await aallow()`` one at a time vs 100
concurrent, 8 threads on keys of their own vs on one key, and
pyrate-limiter's ``PostgresBucket``; writes
``benches/results/latest-postgres.json``.

``--suite all`` runs the six, one after the other.

Each JSON also records the machine (CPU model, CPUs, Python, our package's
version) and what each row is (``rows``: ours, a peer, the baseline...); right
after writing it, run.py draws the suite's chart, ``benches/results/<suite>.svg``
(``benches/charts.py``), when matplotlib is importable (``pip install
.[bench]``); otherwise it says so once and goes on. ``--charts-only`` redraws
the charts from the JSON files already there, running nothing.

    .venv/bin/python benches/run.py
        [--suite core|algorithms|async|http|redis|postgres|all] [--quick]
        [--redis-url redis://host:port/db] [--postgres-url postgresql://...]
        [--charts-only]
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import algorithms as algo
import async_suite as aio
import http_suite as web
import postgres_bench as pb
import redis_bench as rb
import scenarios as core

ROOT = Path(__file__).resolve().parent.parent
BENCHES = Path("benches")  # all paths below are relative to ROOT (the cwd)
SCENARIOS = BENCHES / "scenarios.py"
ALGORITHMS = BENCHES / "algorithms.py"
ASYNC = BENCHES / "async_suite.py"
HTTP = BENCHES / "http_suite.py"
REDIS = BENCHES / "redis_bench.py"
POSTGRES = BENCHES / "postgres_bench.py"
RESULTS = BENCHES / "results"
REQUIREMENTS = BENCHES / "requirements.txt"
VENV_031 = Path(".venv-bench-031")
PIN_031 = "rust-py-rate-limit==0.3.1"
VERSION_031 = "0.3.1"

MAIN_IMPLS = ["dict", "ours_allow", "ours_check", "limits", "token_bucket"]
OLD_IMPLS = ["dict", "ours_allow", "ours_check"]
RELABEL_031 = {
    "dict": "rprl031_dict",
    "ours_allow": "rprl031_allow",
    "ours_check": "rprl031_check",
}
ROWS = MAIN_IMPLS + list(RELABEL_031.values())
TIMED = ["hot", "over", "keys100k", "newkeys", "threads4"]
SUITES = ("core", "algorithms", "async", "http", "redis", "postgres", "all")
JSON_NAMES = {
    "core": "latest.json",
    "algorithms": "latest-algorithms.json",
    "async": "latest-async.json",
    "http": "latest-http.json",
    "redis": "latest-redis.json",
    "postgres": "latest-postgres.json",
}
# benches/results/.gitignore: the raw output of each script is not kept; the
# suites' JSON and charts are, so that the README can show them.
RESULTS_GITIGNORE = """\
# Written by benches/run.py. The suites' JSON (latest*.json) and charts (*.svg)
# may be committed, from a full run (make bench) only, never from --quick; the
# raw output of each script (main.json, algorithms.json, ...) is not kept.
*
!.gitignore
!latest*.json
!*.svg
"""
# Import names of the peers each suite needs (from benches/requirements.txt).
PEER_MODULES = {
    "core": ["limits", "token_bucket"],
    "algorithms": ["limits", "throttled", "pyrate_limiter"],
    "async": [],
    "http": ["slowapi", "flask_limiter"],
    "redis": ["redis", "limits", "throttled", "pyrate_limiter"],
    "postgres": ["psycopg_pool", "pyrate_limiter"],
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _pip(python: Path | str, *args: str) -> bool:
    cmd = [str(python), "-m", "pip", "install", "-q"]
    cmd += ["--disable-pip-version-check", *args]
    _log(f"$ {' '.join(cmd)}")
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode == 0


def ensure_peers(modules: list[str]) -> None:
    """Install benches/requirements.txt here if a peer package is missing."""
    missing = [m for m in modules if not importlib.util.find_spec(m)]
    if missing and not _pip(sys.executable, "-r", str(REQUIREMENTS)):
        _log(f"note: could not install {missing}; they will be skipped")


def _interpreter_info(python: Path) -> tuple[str, str | None]:
    """(python major.minor, installed rust-py-rate-limit version or None)."""
    code = (
        "import sys, importlib.metadata as m\n"
        "v = '%d.%d' % sys.version_info[:2]\n"
        "try:\n    print(v, m.version('rust-py-rate-limit'))\n"
        "except m.PackageNotFoundError:\n    print(v, '-')\n"
    )
    out = subprocess.run(
        [str(python), "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        return "", None
    pyver, pkg = out.stdout.split()
    return pyver, None if pkg == "-" else pkg


def ensure_venv_031() -> Path | None:
    """Create/refresh .venv-bench-031 with the PyPI release; None on failure."""
    python = _venv_python(VENV_031)
    here = "{}.{}".format(*sys.version_info[:2])
    if (ROOT / python).exists():
        pyver, pkg = _interpreter_info(python)
        if pyver != here:
            _log(f"{VENV_031}: Python {pyver or '?'} != {here}; recreating")
            shutil.rmtree(ROOT / VENV_031)
        elif pkg == VERSION_031:
            return python
    if not (ROOT / python).exists():
        _log(f"creating {VENV_031}/")
        venv = [sys.executable, "-m", "venv", str(VENV_031)]
        made = subprocess.run(venv, cwd=ROOT, check=False)
        if made.returncode != 0:
            return None
    if not _pip(python, PIN_031):
        return None
    return python


def run_scenarios(
    python: Path | str,
    impls: list[str],
    out: Path,
    args: Any,
    script: Path = SCENARIOS,
    only: list[str] | None = None,
    extra: list[str] | None = None,
) -> Any:
    """Run a suite's ``script``; ``only``: scenario names; ``extra``: more args."""
    cmd = [str(python), str(script), "--impl", ",".join(impls)]
    cmd += ["--json", str(out), *(extra or [])]
    if args.quick:
        cmd.append("--quick")
    if args.repeats:
        cmd += ["--repeats", str(args.repeats)]
    if only:
        cmd += ["--scenarios", ",".join(only)]
    _log(f"$ {' '.join(cmd)}")
    if subprocess.run(cmd, cwd=ROOT, check=False).returncode != 0:
        raise SystemExit(f"{script.name} failed under {python}")
    return json.loads((ROOT / out).read_text())


def combine(main: Any, old: Any | None) -> dict[str, Any]:
    """Merge both processes' results under their row labels."""
    scenarios: dict[str, Any] = {}
    sources = [("main", main, {n: n for n in MAIN_IMPLS})]
    if old is not None:
        sources.append(("rprl031", old, RELABEL_031))
    for process, raw, labels in sources:
        for name, scn in raw["scenarios"].items():
            merged = scenarios.setdefault(
                name, {k: v for k, v in scn.items() if k != "results"} | {"results": {}}
            )
            for impl, res in scn["results"].items():
                merged["results"][labels[impl]] = res | {"process": process}
    return {
        "processes": {
            "main": main["meta"],
            **({"rprl031": old["meta"]} if old is not None else {}),
        },
        "scenarios": scenarios,
    }


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def _get(data: dict[str, Any], scn: str, row: str, field: str) -> float | None:
    res = data["scenarios"].get(scn, {}).get("results", {}).get(row)
    value = None if res is None else res.get(field)
    return None if value is None else float(value)


def _cell(ns: float | None, ratio: float | None) -> str:
    if ns is None:
        return "—"
    text = f"{ns:,.0f}" if ns >= 100 else f"{ns:.1f}"
    return f"{text} ({ratio:.2f}x)" if ratio is not None else text


def timed_table(data: dict[str, Any]) -> str:
    cols = [c for c in TIMED if c in data["scenarios"]]
    threads = "threads4" in cols
    head = ["impl", *cols]
    if threads:
        head += ["1 thread", "4T / 1T"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in ROWS:
        cells = [
            _cell(_get(data, c, row, "median_ns"), _get(data, c, row, "ratio"))
            for c in cols
        ]
        if threads:
            cells.append(
                _cell(
                    _get(data, "threads4", row, "single_median_ns"),
                    _get(data, "threads4", row, "single_ratio"),
                )
            )
            mt = _get(data, "threads4", row, "threads_vs_single")
            cells.append("—" if mt is None else f"{mt:.2f}")
        if any(c != "—" for c in cells):
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def memory_table(data: dict[str, Any]) -> str:
    mem = data["scenarios"].get("memory")
    if not mem:
        return ""
    lines = [
        f"| impl | B/key ({mem['keys']:,} keys) | x dict |",
        "|---|---|---|",
    ]
    for row in ROWS:
        bpk = _get(data, "memory", row, "bytes_per_key")
        if bpk is not None:
            ratio = _get(data, "memory", row, "ratio")
            shown = "—" if ratio is None else f"{ratio:.2f}x"
            lines.append(f"| {row} | {bpk:.1f} | {shown} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    label: str
    measure: Callable[[dict[str, Any]], float | None]
    op: str  # "<=" or ">="
    threshold: float
    unit: str = "x"

    def evaluate(self, data: dict[str, Any]) -> dict[str, Any]:
        value = self.measure(data)
        if value is None:
            status = "N/A"
        elif self.op == "<=":
            status = "PASS" if value <= self.threshold else "MISS"
        else:
            status = "PASS" if value >= self.threshold else "MISS"
        return {
            "target": self.label,
            "op": self.op,
            "threshold": self.threshold,
            "value": None if value is None else round(value, 4),
            "unit": self.unit,
            "status": status,
        }


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


TARGETS = [
    Target(
        "ours allow hot key <= 0.6x dict",
        lambda d: _get(d, "hot", "ours_allow", "ratio"),
        "<=",
        0.6,
    ),
    Target(
        "ours allow 100k keys <= 0.8x dict",
        lambda d: _get(d, "keys100k", "ours_allow", "ratio"),
        "<=",
        0.8,
    ),
    Target(
        "ours check hot <= 2.5x ours allow hot",
        lambda d: _div(
            _get(d, "hot", "ours_check", "median_ns"),
            _get(d, "hot", "ours_allow", "median_ns"),
        ),
        "<=",
        2.5,
    ),
    Target(
        "ours 4 threads total ns/hit <= 1.2x ours 1 thread",
        lambda d: _get(d, "threads4", "ours_allow", "threads_vs_single"),
        "<=",
        1.2,
    ),
    Target(
        "ours allow hot >= 2x faster than rprl031 allow hot (ratios to own dict)",
        lambda d: _div(
            _get(d, "hot", "rprl031_allow", "ratio"),
            _get(d, "hot", "ours_allow", "ratio"),
        ),
        ">=",
        2.0,
    ),
    Target(
        "ours allow hot >= 25x faster than limits",
        lambda d: _div(
            _get(d, "hot", "limits", "median_ns"),
            _get(d, "hot", "ours_allow", "median_ns"),
        ),
        ">=",
        25.0,
    ),
    Target(
        "ours memory <= 80 B/key (keys like user:123456)",
        lambda d: _get(d, "memory", "ours_allow", "bytes_per_key"),
        "<=",
        80.0,
        " B/key",
    ),
]


def targets_list(results: list[dict[str, Any]]) -> str:
    lines = []
    for t in results:
        if t["value"] is None:
            lines.append(f"- N/A  {t['target']}: not measured")
            continue
        shown = f"{t['value']:.1f}" if t["unit"] != "x" else f"{t['value']:.2f}"
        lines.append(f"- {t['status']} {t['target']}: {shown}{t['unit']}")
    return "\n".join(lines)


def report(data: dict[str, Any]) -> str:
    main = data["processes"]["main"]
    ours = main["impls"].get("ours_allow")
    parts = ["## Benchmarks", ""]
    parts.append(
        f"Python {main['python']} on {main['platform']}, {main['cpu_count']} CPUs; "
        f"median of {main['params']['repeats']} interleaved repeats; "
        "cells are ns/hit (x ratio to dict in the same process)."
    )
    if ours is None:
        parts.append("\n**ours is not importable here: build it first.**")
    elif ours == VERSION_031:
        parts.append(
            f"\n**Note: `rust_py_rate_limit` here is {VERSION_031} (the PyPI "
            "release), so 'ours' is a stand-in.**"
        )
    if "rprl031" in data["processes"]:
        parts.append(
            "\nrprl031_* rows ran in `.venv-bench-031` (rust-py-rate-limit "
            f"{VERSION_031}); their ratios are to rprl031_dict, the dict baseline "
            "measured in that process."
        )
    parts += ["", timed_table(data)]
    mem = memory_table(data)
    if mem:
        parts += ["", "### Memory", "", mem]
    parts += ["", "### Targets", "", targets_list(data["targets"])]
    problems = [
        f"{proc}: {p}"
        for proc, meta in data["processes"].items()
        for p in meta["problems"]
    ]
    if problems:
        parts += ["", "### Problems", ""] + [f"- {p}" for p in problems]
    return "\n".join(parts)


# --------------------------------------------------------------------------
# The algorithms suite (benches/algorithms.py)
# --------------------------------------------------------------------------

ALGO_TIMED = [s for s in algo.ALL_SCENARIOS if s != "memory"]


def _limit_text(limit: int | None) -> str:
    if limit is None:
        return "—"
    digits = str(limit)
    if limit >= 10_000 and digits.rstrip("0") == "1":
        return f"10^{len(digits) - 1}"
    return f"{limit:,}"


def algo_timed_table(data: dict[str, Any]) -> str:
    cols = [c for c in ALGO_TIMED if c in data["scenarios"]]
    head = ["impl", "vs", "limit", *cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, v in algo.VARIANTS.items():
        cells = [
            _cell(_get(data, c, row, "median_ns"), _get(data, c, row, "ratio_vs"))
            for c in cols
        ]
        if all(c == "—" for c in cells):
            continue
        limits = " / ".join(_limit_text(v.limit(c)) for c in cols)
        lines.append(
            f"| {row} | {v.vs or '—'} | {limits} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def algo_memory_table(data: dict[str, Any]) -> str:
    mem = data["scenarios"].get("memory")
    if not mem or not mem["results"]:
        return ""
    lines = [
        f"| impl | B/key ({mem['keys']:,} keys) | x {algo.BASELINE} |",
        "|---|---|---|",
    ]
    for row in algo.VARIANTS:
        bpk = _get(data, "memory", row, "bytes_per_key")
        if bpk is not None:
            ratio = _get(data, "memory", row, "ratio")
            shown = "—" if ratio is None else f"{ratio:.2f}x"
            lines.append(f"| {row} | {bpk:.1f} | {shown} |")
    return "\n".join(lines)


def _ratio_vs(scn: str, row: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda d: _get(d, scn, row, "ratio_vs")


def _with_limit(row: str, limit: int | None) -> str:
    if limit is None or limit == core.BIG_LIMIT:
        return row
    return f"{row} (limit {_limit_text(limit)})"


def algo_targets() -> list[Target]:
    """Ours: ratio to our fixed <= budget. Peers: peer / ours-same >= 20."""
    ours: list[Target] = []
    peers: list[Target] = []
    for v in algo.VARIANTS.values():
        for scn in ALGO_TIMED:
            limit = v.limit(scn)
            if limit is None:
                continue
            if v.peer:
                label = (
                    f"ours {_with_limit(v.vs, limit)} {scn} >= "
                    f"{algo.PEER_TARGET:.0f}x faster than {v.name}"
                )
                peers.append(
                    Target(label, _ratio_vs(scn, v.name), ">=", algo.PEER_TARGET)
                )
            elif v.budget is not None:
                label = (
                    f"{_with_limit(v.name, limit)} {scn} <= {v.budget}x {algo.BASELINE}"
                )
                ours.append(Target(label, _ratio_vs(scn, v.name), "<=", v.budget))
    return ours + peers


def algo_notes(data: dict[str, Any]) -> list[str]:
    notes = []
    blocked = _div(
        _get(data, "hot", "sliding_log", "median_ns"),
        _get(data, "hot", "fixed_100", "median_ns"),
    )
    if blocked is not None:
        notes.append(
            "like for like, both blocked on every timed hit: sliding_log hot / "
            f"fixed_100 hot = {blocked:.2f}x"
        )
    return notes


def algo_report(data: dict[str, Any]) -> str:
    meta = data["processes"]["main"]
    peers = sorted(
        {
            (algo.PACKAGES.get(v.module, v.module), version)
            for name, version in meta["impls"].items()
            if (v := algo.VARIANTS[name]).peer
        }
    )
    parts = ["## Benchmarks: algorithms", ""]
    parts.append(
        f"Python {meta['python']} on {meta['platform']}, {meta['cpu_count']} CPUs; "
        f"median of {meta['params']['repeats']} interleaved repeats; cells are "
        "ns/hit (x ratio to the `vs` row in the same process and scenario: our "
        f"`{algo.BASELINE}` for ours, our same algorithm for a peer); `limit` is "
        f"per {core.WINDOW} s, per scenario."
    )
    if peers:
        parts.append("Peers: " + ", ".join(f"{m} {v}" for m, v in peers) + ".")
    if algo.BASELINE not in meta["impls"]:
        parts.append("\n**ours is not importable here: build it first.**")
    parts += ["", algo_timed_table(data)]
    mem = algo_memory_table(data)
    if mem:
        parts += ["", "### Memory", "", mem]
    parts += ["", "### Targets", "", targets_list(data["targets"])]
    notes = algo_notes(data)
    if notes:
        parts += ["", "### Notes", ""] + [f"- {n}" for n in notes]
    problems = [f"{p}" for p in meta["problems"]]
    problems += [f"skipped {k}: {r}" for k, r in meta["skipped"].items()]
    if problems:
        parts += ["", "### Problems", ""] + [f"- {p}" for p in problems]
    return "\n".join(parts)


# --------------------------------------------------------------------------
# The async suite (benches/async_suite.py)
# --------------------------------------------------------------------------


def _ns_text(ns: float | None) -> str:
    if ns is None:
        return "—"
    return f"{ns:,.0f}" if ns >= 100 else f"{ns:.1f}"


def _us_text(ns: float | None) -> str:
    if ns is None:
        return "—"
    us = ns / 1000
    return f"{us:,.0f}" if us >= 100 else f"{us:.2f}" if us < 10 else f"{us:.1f}"


def _ratio_text(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}x"


def async_twins_table(data: dict[str, Any]) -> str:
    lines = ["| row | what | ns/call | x vs | vs |", "|---|---|---|---|---|"]
    for name, row in aio.ROWS.items():
        if "twins" not in row.scenarios:
            continue
        ns = _get(data, "twins", name, "median_ns")
        if ns is None:
            continue
        ratio = _get(data, "twins", name, "ratio_vs") if row.vs else None
        lines.append(
            f"| {name} | {row.what} | {_ns_text(ns)} | {_ratio_text(ratio)} "
            f"| {row.vs or '—'} |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def async_sweep_table(data: dict[str, Any]) -> str:
    scn = data["scenarios"].get("sweep")
    res = (scn or {}).get("results", {}).get("sweep")
    if not res:
        return ""
    repeats = len(res["samples"])
    return "\n".join(
        [
            "| keys removed | total | per key | chunks | longest chunk (lock hold) "
            f"| worst of {repeats} |",
            "|---|---|---|---|---|---|",
            f"| {res['removed']:,} | {res['total_ms']:,.1f} ms "
            f"| {res['ns_per_key']:.0f} ns | {res['chunks']:,.0f} "
            f"| {res['longest_chunk_us']:,.0f} µs "
            f"| {res['longest_chunk_us_max']:,.0f} µs |",
        ]
    )


def async_latency_table(data: dict[str, Any]) -> str:
    scn = data["scenarios"].get("latency")
    if not scn or not scn["results"]:
        return ""
    lines = [
        "| main thread meanwhile | calls | p50 | p99 | p99.9 | max | window |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {
        "idle": f"sleeps {scn['idle_seconds']} s (no sweep: baseline)",
        "sweep": "runs `cleanup_expired()`",
    }
    for name, label in labels.items():
        r = scn["results"].get(name)
        if r is None:
            continue
        lines.append(
            f"| {label} | {r['calls']:,.0f} | {_us_text(r['p50_ns'])} µs "
            f"| {_us_text(r['p99_ns'])} µs | {_us_text(r['p999_ns'])} µs "
            f"| {_us_text(r['max_ns'])} µs | {r['window_ms']:,.1f} ms |"
        )
    return "\n".join(lines)


def async_max_keys_table(data: dict[str, Any]) -> str:
    cols = [c for c in ("hot", "keys100k") if c in data["scenarios"]]
    if not cols:
        return ""
    lines = ["| row | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, row in aio.ROWS.items():
        if "hot" not in row.scenarios:
            continue
        cells = [
            _cell(_get(data, c, name, "median_ns"), _get(data, c, name, "ratio_vs"))
            for c in cols
        ]
        if any(c != "—" for c in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def async_controls_table(data: dict[str, Any], scenario: str = "controls") -> str:
    if scenario not in data["scenarios"]:
        return ""
    lines = ["| row | what | ns/hit | x vs |", "|---|---|---|---|"]
    for name, row in aio.ROWS.items():
        if scenario not in row.scenarios:
            continue
        ns = _get(data, scenario, name, "median_ns")
        if ns is None:
            continue
        ratio = _get(data, scenario, name, "ratio_vs")
        vs = f"{ratio:.2f}x {row.vs}" if ratio is not None and row.vs else "baseline"
        lines.append(f"| {name} | {row.what} | {ns:.0f} | {vs} |")
    return "\n".join(lines)


def _field(scn: str, row: str, field: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda d: _get(d, scn, row, field)


def _us_field(
    scn: str, row: str, field: str
) -> Callable[[dict[str, Any]], float | None]:
    def measure(d: dict[str, Any]) -> float | None:
        ns = _get(d, scn, row, field)
        return None if ns is None else ns / 1000

    return measure


ASYNC_TARGETS = [
    Target(
        f"allow() admitting with an event callback and a Prometheus collector "
        f"<= {aio.OBSERVE_BUDGET}x without",
        _field("observe", "observed", "ratio_vs"),
        "<=",
        aio.OBSERVE_BUDGET,
    ),
    *(
        Target(
            f"allow() on {what} key <= {aio.CONTROLS_BUDGET}x a normal hit with "
            "the same controls",
            _field("controls", row, "ratio_vs"),
            "<=",
            aio.CONTROLS_BUDGET,
        )
        for row, what in (("banned", "a banned"), ("allow_listed", "an allow-listed"))
    ),
    Target(
        f"await aallow <= {aio.TWIN_BUDGET}x allow (in a running loop, hot key)",
        _field("twins", "aallow", "ratio_vs"),
        "<=",
        aio.TWIN_BUDGET,
    ),
    Target(
        f"await acheck <= {aio.TWIN_BUDGET}x check (in a running loop, hot key)",
        _field("twins", "acheck", "ratio_vs"),
        "<=",
        aio.TWIN_BUDGET,
    ),
    Target(
        f"await aallow >= {aio.ROUND_TRIP_FACTOR:.0f}x faster than one loop round "
        "trip (await asyncio.sleep(0))",
        lambda d: _div(
            _get(d, "twins", "sleep0", "median_ns"),
            _get(d, "twins", "aallow", "median_ns"),
        ),
        ">=",
        aio.ROUND_TRIP_FACTOR,
    ),
    Target(
        f"await acheck >= {aio.ROUND_TRIP_FACTOR:.0f}x faster than one loop round "
        "trip (await asyncio.sleep(0))",
        lambda d: _div(
            _get(d, "twins", "sleep0", "median_ns"),
            _get(d, "twins", "acheck", "median_ns"),
        ),
        ">=",
        aio.ROUND_TRIP_FACTOR,
    ),
    Target(
        f"sweep of expired keys: longest single lock hold <= "
        f"{aio.LOCK_HOLD_BUDGET_US:.0f} µs (median of repeats)",
        _field("sweep", "sweep", "longest_chunk_us"),
        "<=",
        aio.LOCK_HOLD_BUDGET_US,
        " µs",
    ),
    Target(
        "allow() from another thread during cleanup_expired(): p99 <= "
        f"{aio.SWEEP_P99_BUDGET_US:.0f} µs",
        _us_field("latency", "sweep", "p99_ns"),
        "<=",
        aio.SWEEP_P99_BUDGET_US,
        " µs",
    ),
    Target(
        f"allow hot, max_keys={aio.MAX_KEYS:_} <= {aio.MAX_KEYS_BUDGET}x unbounded",
        _field("hot", "max_keys", "ratio_vs"),
        "<=",
        aio.MAX_KEYS_BUDGET,
    ),
    Target(
        f"allow 100k keys, max_keys={aio.MAX_KEYS:_} <= {aio.MAX_KEYS_BUDGET}x "
        "unbounded",
        _field("keys100k", "max_keys", "ratio_vs"),
        "<=",
        aio.MAX_KEYS_BUDGET,
    ),
]


def _problems(meta: dict[str, Any]) -> list[str]:
    problems = [f"{p}" for p in meta["problems"]]
    problems += [f"skipped {k}: {r}" for k, r in meta["skipped"].items()]
    return problems


def async_report(data: dict[str, Any]) -> str:
    meta = data["processes"]["main"]
    parts = ["## Benchmarks: async", ""]
    parts.append(
        f"Python {meta['python']} on {meta['platform']}, {meta['cpu_count']} CPUs; "
        f"rust-py-rate-limit {meta['ours'] or '(not importable)'}; median of "
        f"{meta['params']['repeats']} repeats (twins and max_keys interleaved, "
        "rotated order; sweep and latency a fresh limiter each)."
    )
    if meta["ours"] is None:
        parts.append("\n**ours is not importable here: build it first.**")
    sections = [
        (
            "Awaitable twins (inside one running asyncio loop, hot key, limit 10^9)",
            async_twins_table(data),
        ),
        (
            "Sweep of expired keys (`_profile_sweep()`: one chunk = one shard-lock "
            "hold)",
            async_sweep_table(data),
        ),
        (
            "allow() latency on a live key, timed on another Python thread, same "
            "limiter",
            async_latency_table(data),
        ),
        (
            f"max_keys={aio.MAX_KEYS:_} set vs unset: ns/hit (x unbounded)",
            async_max_keys_table(data),
        ),
        ("Controls against abuse: allow() on one key", async_controls_table(data)),
        (
            "Watching: events and metrics (deliver: ns per event; scrape100: "
            "ns per scrape)",
            async_controls_table(data, "observe"),
        ),
    ]
    for title, table in sections:
        if table:
            parts += ["", f"### {title}", "", table]
    parts += ["", "### Targets", "", targets_list(data["targets"])]
    problems = _problems(meta)
    if problems:
        parts += ["", "### Problems", ""] + [f"- {p}" for p in problems]
    return "\n".join(parts)


# --------------------------------------------------------------------------
# The http suite (benches/http_suite.py)
# --------------------------------------------------------------------------

FRAMEWORK_NAMES = {"fastapi": "FastAPI", "flask": "Flask", "drf": "DRF"}


def http_table(data: dict[str, Any]) -> str:
    lines = [
        "| framework | row | what | µs/request | x baseline |",
        "|---|---|---|---|---|",
    ]
    for name, row in web.ROWS.items():
        ns = _get(data, row.framework, name, "median_ns")
        if ns is None:
            continue
        ratio = _get(data, row.framework, name, "ratio")
        lines.append(
            f"| {FRAMEWORK_NAMES[row.framework]} | {name} | {row.what} "
            f"| {_us_text(ns)} | {_ratio_text(ratio)} |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def _faster(scn: str, slow: str, fast: str) -> Callable[[dict[str, Any]], float | None]:
    """How many times faster ``fast`` is than ``slow`` (ns / ns)."""
    return lambda d: _div(
        _get(d, scn, slow, "median_ns"), _get(d, scn, fast, "median_ns")
    )


def _added_faster(
    scn: str, slow: str, fast: str
) -> Callable[[dict[str, Any]], float | None]:
    """(slow - baseline) / (fast - baseline): how many times less ``fast``
    adds to its framework's baseline."""

    def measure(d: dict[str, Any]) -> float | None:
        base = _get(d, scn, web.BASELINES[scn], "median_ns")
        slow_ns = _get(d, scn, slow, "median_ns")
        fast_ns = _get(d, scn, fast, "median_ns")
        if base is None or slow_ns is None or fast_ns is None:
            return None
        return _div(slow_ns - base, max(fast_ns - base, 1.0))

    return measure


def http_targets() -> list[Target]:
    targets: list[Target] = []
    for fw, ours in web.OURS_ROWS.items():
        peer = web.PEER_ROWS[fw]
        shown = FRAMEWORK_NAMES[fw]
        budget = web.OVERHEAD_BUDGETS[fw]
        factor = web.PEER_FACTORS[fw]
        targets.append(
            Target(
                f"{shown} + ours <= {budget:.2f}x {shown} alone",
                _field(fw, ours, "ratio"),
                "<=",
                budget,
            )
        )
        if fw == "drf":
            # A throttle is a small part of a DRF request: compare what each
            # adds to the same view without one.
            targets.append(
                Target(
                    f"{shown}: ours adds 1/{factor:g} of what {peer} adds "
                    f"to the bare view or less (({peer} - bare) / (ours - bare) "
                    f">= {factor:.2f})",
                    _added_faster(fw, peer, ours),
                    ">=",
                    factor,
                )
            )
            continue
        targets.append(
            Target(
                f"{shown}: ours {factor:g}x as fast as {web.PACKAGES[peer]} "
                f"({peer} / ours >= {factor:.2f})",
                _faster(fw, peer, ours),
                ">=",
                factor,
            )
        )
    return targets


def http_report(data: dict[str, Any]) -> str:
    meta = data["processes"]["main"]
    versions = ", ".join(
        f"{web.PACKAGES.get(m, m)} {v}"
        for m, v in sorted(
            {
                **meta["frameworks"],
                **{
                    web.ROWS[n].module: v
                    for n, v in meta["impls"].items()
                    if web.ROWS[n].peer or web.ROWS[n].module == web.OURS
                },
            }.items()
        )
        if v
    )
    parts = ["## Benchmarks: http", ""]
    parts.append(
        f"Python {meta['python']} on {meta['platform']}, {meta['cpu_count']} CPUs; "
        f"{versions}. In-process: ASGI apps awaited directly with a pre-built "
        "scope and no-op receive/send on one asyncio loop, WSGI apps called with "
        f"a pre-built environ; `GET {web.PATH}` -> small JSON, same client, limit "
        f"10^9/minute (never reached); median of {meta['params']['repeats']} "
        f"interleaved repeats of {meta['params']['requests']:,} requests; cells are "
        "µs/request (x ratio to the same framework without limiting, same process)."
    )
    table = http_table(data)
    if table:
        parts += ["", table]
    parts += ["", "### Targets", "", targets_list(data["targets"])]
    problems = _problems(meta)
    if problems:
        parts += ["", "### Problems", ""] + [f"- {p}" for p in problems]
    return "\n".join(parts)


# --------------------------------------------------------------------------
# The redis suite (benches/redis_bench.py)
# --------------------------------------------------------------------------

REDIS_SCN = "hits"


def _server_rows(rows: dict[str, Any], kinds: tuple[str, ...]) -> list[str]:
    return [name for name, row in rows.items() if row.kind in kinds]


def _redis_rows(kinds: tuple[str, ...]) -> list[str]:
    return _server_rows(rb.ROWS, kinds)


def server_sync_table(data: dict[str, Any], rows: dict[str, Any], base: str) -> str:
    """Baselines, ours and the peers of a server suite; ``base``: the label
    of the baseline round trip."""
    lines = [
        f"| row | what | µs/hit | x {base} | vs ours | ours / peer | refused |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in _server_rows(rows, ("baseline", "ours", "peer")):
        ns = _get(data, REDIS_SCN, name, "median_ns")
        if ns is None:
            continue
        row = rows[name]
        ratio = _get(data, REDIS_SCN, name, "ratio")
        ours = _get(data, REDIS_SCN, name, "ours_over_peer")
        refused = _get(data, REDIS_SCN, name, "refused")
        lines.append(
            f"| {name} | {row.what} | {_us_text(ns)} | {_ratio_text(ratio)} "
            f"| {row.vs or '—'} | {_ratio_text(ours) if row.vs else '—'} "
            f"| {'—' if refused is None else f'{refused:,.0f}'} |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def server_rate_table(
    data: dict[str, Any],
    rows: dict[str, Any],
    base: str,
    kind: str = "async",
    rate_vs: str = "one at a time",
) -> str:
    """Rows of ``kind`` with their rate, and their rate over their ``vs``
    row's (``rate_vs`` names it)."""
    lines = [
        f"| row | what | µs/hit | x {base} | hits/s | rate x {rate_vs} |",
        "|---|---|---|---|---|---|",
    ]
    for name in _server_rows(rows, (kind,)):
        ns = _get(data, REDIS_SCN, name, "median_ns")
        if ns is None:
            continue
        row = rows[name]
        ratio = _get(data, REDIS_SCN, name, "ratio")
        speedup = _div(1.0, _get(data, REDIS_SCN, name, "ratio_vs"))
        lines.append(
            f"| {name} | {row.what} | {_us_text(ns)} | {_ratio_text(ratio)} "
            f"| {1e9 / ns:,.0f} | {_ratio_text(speedup)} |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def redis_sync_table(data: dict[str, Any]) -> str:
    return server_sync_table(data, rb.ROWS, "EVALSHA")


def redis_async_table(data: dict[str, Any]) -> str:
    return server_rate_table(data, rb.ROWS, "EVALSHA")


def redis_deadline_table(data: dict[str, Any]) -> str:
    runs = (data.get("deadline") or {}).get("runs") or []
    lines = [
        "| timeout | path | calls (at once) | p50 ms | p99 ms | max ms "
        "| max - timeout |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for path, what in (("sync", "allow()"), ("async", "await aallow()")):
            d = run[path]
            lines.append(
                f"| {run['timeout_ms']:g} ms | {what} | {d['calls']} "
                f"({run.get('at_once', 1)}) | "
                f"{d['p50_ms']:.1f} | {d['p99_ms']:.1f} | {d['max_ms']:.1f} | "
                f"{d['max_ms'] - run['timeout_ms']:+.1f} ms |"
            )
    return "\n".join(lines) if len(lines) > 2 else ""


def redis_flood_table(data: dict[str, Any]) -> str:
    results = (data.get("flood") or {}).get("results") or {}
    lines = ["| row | what | µs/hit | hits/s |", "|---|---|---|---|"]
    for name, row in results.items():
        ns = row["median_ns"]
        lines.append(f"| {name} | {row['what']} | {_us_text(ns)} | {1e9 / ns:,.0f} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _flood_factor(data: dict[str, Any]) -> float | None:
    return (data.get("flood") or {}).get("uncached_over_cached")


def _deadline_overrun(
    timeout_ms: float, path: str
) -> Callable[[dict[str, Any]], float | None]:
    def measure(data: dict[str, Any]) -> float | None:
        for run in (data.get("deadline") or {}).get("runs") or []:
            if run["timeout_ms"] == timeout_ms:
                return float(run[path]["max_ms"] - timeout_ms)
        return None

    return measure


def redis_targets() -> list[Target]:
    targets = [
        Target(
            f"ours {name} allow() <= {rb.EVALSHA_BUDGET}x a redis-py EVALSHA "
            "round trip",
            _field(REDIS_SCN, name, "ratio"),
            "<=",
            rb.EVALSHA_BUDGET,
        )
        for name in _redis_rows(("ours",))
    ]
    for name in _redis_rows(("peer",)):
        row = rb.ROWS[name]
        targets.append(
            Target(
                f"ours {row.vs} faster than {name} ({rb.PACKAGES[row.module]}): "
                f"ours / peer <= {rb.PEER_BUDGET:.2f}",
                _field(REDIS_SCN, name, "ours_over_peer"),
                "<=",
                rb.PEER_BUDGET,
            )
        )
    targets.append(
        Target(
            f"ours fixed await aallow() one at a time <= {rb.AWAIT_BUDGET}x a "
            "redis-py EVALSHA round trip",
            _field(REDIS_SCN, "aallow", "ratio"),
            "<=",
            rb.AWAIT_BUDGET,
        )
    )
    targets.append(
        Target(
            f"{rb.KEYS} concurrent await aallow() >= {rb.GATHER_FACTOR:.0f}x the "
            "one-at-a-time rate",
            _faster(REDIS_SCN, "aallow", "aallow_gather"),
            ">=",
            rb.GATHER_FACTOR,
        )
    )
    targets.append(
        Target(
            "a flood on a refused key: allow() with the local over-limit cache "
            f">= {rb.FLOOD_FACTOR:.0f}x cheaper than with local_cache_keys=0",
            _flood_factor,
            ">=",
            rb.FLOOD_FACTOR,
        )
    )
    for timeout, _, _ in rb.DEADLINE_RUNS:
        for path, what in (("sync", "allow()"), ("async", "await aallow()")):
            targets.append(
                Target(
                    f"{what} on a server that never answers, timeout "
                    f"{timeout * 1000:g} ms: the slowest call ends within "
                    f"{rb.DEADLINE_SLACK_MS:g} ms of it",
                    _deadline_overrun(timeout * 1000, path),
                    "<=",
                    rb.DEADLINE_SLACK_MS,
                    " ms",
                )
            )
    return targets


def redis_notes(data: dict[str, Any]) -> list[str]:
    notes = []
    if "sliding_log" in data["scenarios"].get(REDIS_SCN, {}).get("results", {}):
        notes.append(
            "sliding_log keeps a running sum beside each key's log, so a "
            "decision reads only the entries that left the window, not every "
            "live one; here a key holds at most "
            f"{data['processes']['main']['params']['hits'] // rb.KEYS + 1} "
            "entries"
        )
    if any(n.startswith("pyrate") for n in data["processes"]["main"]["impls"]):
        notes.append(
            "pyrate-limiter: `Limiter(bucket)` puts every name in one bucket, so "
            "a `BucketFactory` routes each key to its own Redis bucket (as its "
            "docs show); the buckets are not registered with its background "
            "Leaker (a run is far shorter than the window)"
        )
    return notes


def _server_intro(
    meta: dict[str, Any],
    rows: dict[str, Any],
    packages: dict[str, str],
    server_name: str,
    base: str,
) -> list[str]:
    """The paragraphs that open a server suite's report."""
    server = meta["server"]
    versions = ", ".join(
        f"{packages.get(m, m)} {v}"
        for m, v in sorted(
            {rows[n].module: v for n, v in meta["impls"].items() if v}.items()
        )
    )
    params = meta["params"]
    parts = [
        f"Python {meta['python']} on {meta['platform']}, {meta['cpu_count']} CPUs; "
        f"{server_name} at {server['url']} "
        f"({'throwaway, started for this run' if server['throwaway'] else 'given'}); "
        f"{versions}. One process, one server: median of {params['repeats']} "
        f"interleaved repeats (rotated order) of {params['hits']:,} timed hits "
        f"over {params['keys']} fresh keys (each hit once untimed first), limit "
        f"{_limit_text(params['limit'])} per {params['window']} s (never reached); "
        f"cells are µs/hit (x {base} measured in the same run). `ours / peer`: "
        "our same algorithm's µs/hit / the peer's (below 1: ours faster)."
    ]
    load = meta.get("loadavg", {})
    if load.get("start") is not None:
        parts.append(
            f"1-minute load average {load['start']:.2f} at the start, "
            f"{load.get('end') or 0:.2f} at the end (on {meta['cpu_count']} CPUs: "
            "above that, other processes competed for the CPU and the round "
            "trips are noisy)."
        )
    return parts


def redis_report(data: dict[str, Any]) -> str:
    meta = data["processes"]["main"]
    parts = ["## Benchmarks: redis", ""]
    if meta["unavailable"]:
        parts.append(f"**Skipped: {meta['unavailable']}**")
        return "\n".join(parts)
    server = meta["server"]
    parts += _server_intro(
        meta,
        rb.ROWS,
        rb.PACKAGES,
        f"redis-server {server['version']}",
        "the redis-py EVALSHA round trip of `return 1`",
    )
    sections = [
        ("Sync, per hit", redis_sync_table(data)),
        ("Async (ours, fixed window), per hit", redis_async_table(data)),
        (
            "A flood on a refused key (limit 1 per 60 s, spent; `allow(k)` "
            "again and again), per hit",
            redis_flood_table(data),
        ),
        (
            "Deadline: a server that accepts and never answers (a fresh "
            "limiter per call, so the breaker never answers instead; the 500 ms "
            "calls in waves of 20 at once, each timed from its own start"
            + (
                f", {data['deadline']['seconds']:g} s here"
                if data.get("deadline")
                else ""
            )
            + ")",
            redis_deadline_table(data),
        ),
    ]
    for title, table in sections:
        if table:
            parts += ["", f"### {title}", "", table]
    parts += ["", "### Targets", "", targets_list(data["targets"])]
    notes = redis_notes(data)
    if notes:
        parts += ["", "### Notes", ""] + [f"- {n}" for n in notes]
    problems = _problems(meta)
    if problems:
        parts += ["", "### Problems", ""] + [f"- {p}" for p in problems]
    return "\n".join(parts)


# --------------------------------------------------------------------------
# The postgres suite (benches/postgres_bench.py)
# --------------------------------------------------------------------------


def postgres_targets() -> list[Target]:
    return [
        Target(
            f"ours fixed allow() <= {pb.SELECT1_BUDGET}x a psycopg prepared "
            "`SELECT 1` round trip",
            _field(REDIS_SCN, "fixed", "ratio"),
            "<=",
            pb.SELECT1_BUDGET,
        ),
        Target(
            "ours sliding_log >= 2x faster than pyrate-limiter's PostgresBucket: "
            f"ours / peer <= {pb.PEER_BUDGET:.2f}",
            _field(REDIS_SCN, "pyrate_bucket", "ours_over_peer"),
            "<=",
            pb.PEER_BUDGET,
        ),
        Target(
            f"{pb.KEYS} concurrent await aallow() >= {pb.GATHER_FACTOR:.0f}x the "
            "one-at-a-time rate",
            _faster(REDIS_SCN, "aallow", "aallow_gather"),
            ">=",
            pb.GATHER_FACTOR,
        ),
    ]


def postgres_notes(data: dict[str, Any]) -> list[str]:
    notes = []
    meta = data["processes"]["main"]
    if "pyrate_bucket" in meta["impls"]:
        notes.append(
            "pyrate-limiter: `Limiter(bucket)` puts every name in one bucket, so "
            "a `BucketFactory` routes each key to its own `PostgresBucket` (a "
            "table per key, created on the untimed first hit); each acquire "
            "takes the table's lock, counts the window and inserts, in one "
            "transaction on a pooled connection. Its item timestamps come from "
            "the local wall clock, not its `PostgresClock` (one round trip "
            "fewer per acquire: that favours it)"
        )
    if any(n.startswith("threads") for n in meta["impls"]):
        notes.append(
            f"threads_*: µs/hit is the wall time of {meta['params']['threads']} "
            "threads at once / all their hits; `rate x fixed` is their hits/s "
            "over the fixed row's (one thread)"
        )
    return notes


def postgres_report(data: dict[str, Any]) -> str:
    meta = data["processes"]["main"]
    parts = ["## Benchmarks: postgres", ""]
    if meta["unavailable"]:
        parts.append(f"**Skipped: {meta['unavailable']}**")
        return "\n".join(parts)
    server = meta["server"]
    parts += _server_intro(
        meta,
        pb.ROWS,
        pb.PACKAGES,
        f"PostgreSQL {server['version']}",
        "the psycopg prepared `SELECT 1` round trip",
    )
    sections = [
        ("Sync, per hit", server_sync_table(data, pb.ROWS, "SELECT 1")),
        (
            "Async (ours, fixed window), per hit",
            server_rate_table(data, pb.ROWS, "SELECT 1"),
        ),
        (
            f"Threads (ours, fixed window): {meta['params']['threads']} at once",
            server_rate_table(data, pb.ROWS, "SELECT 1", "threads", "fixed"),
        ),
    ]
    for title, table in sections:
        if table:
            parts += ["", f"### {title}", "", table]
    parts += ["", "### Targets", "", targets_list(data["targets"])]
    notes = postgres_notes(data)
    if notes:
        parts += ["", "### Notes", ""] + [f"- {n}" for n in notes]
    problems = _problems(meta)
    if problems:
        parts += ["", "### Problems", ""] + [f"- {p}" for p in problems]
    return "\n".join(parts)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def _split_scenarios(
    text: str | None, suites: list[str]
) -> dict[str, list[str] | None]:
    """``--scenarios`` per suite (None = all of them)."""
    if not text:
        return {s: None for s in suites}
    known = {
        "core": core.ALL_SCENARIOS,
        "algorithms": algo.ALL_SCENARIOS,
        "async": aio.ALL_SCENARIOS,
        "http": web.ALL_SCENARIOS,
        "redis": rb.ALL_SCENARIOS,
        "postgres": pb.ALL_SCENARIOS,
    }
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [n for n in names if not any(n in known[s] for s in suites)]
    if unknown:
        allowed = sorted({n for s in suites for n in known[s]})
        raise SystemExit(f"unknown scenario: {', '.join(unknown)} (from {allowed})")
    return {s: [n for n in names if n in known[s]] for s in suites}


# --------------------------------------------------------------------------
# What the charts need: the machine, and what each row is
# --------------------------------------------------------------------------


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model") and value.strip():
                return value.strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        out = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return platform.processor() or platform.machine() or None


def machine_info() -> dict[str, Any]:
    """The machine and interpreter of this run (for the charts' caption)."""
    try:
        package: str | None = importlib.metadata.version("rust-py-rate-limit")
    except importlib.metadata.PackageNotFoundError:
        package = None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "package": package,
    }


OURS_PACKAGE = "rust-py-rate-limit"


def _package(module: str, names: dict[str, str]) -> str | None:
    if not module:
        return None
    if module == "rust_py_rate_limit":
        return OURS_PACKAGE
    return names.get(module, module.replace("_", "-"))


def suite_rows(suite: str) -> dict[str, dict[str, Any]]:
    """What each row of ``suite`` is, in display order: ``kind`` (``baseline``,
    ``ours``, ``previous`` (0.3.1), ``peer``, ``reference``; the server suites
    also ``async`` and ``threads``, which are ours), ``vs`` (the row a peer is
    compared with) and ``package`` (its name on PyPI)."""
    rows: dict[str, dict[str, Any]] = {}
    if suite == "core":
        kinds = {"dict": "baseline", "limits": "peer", "token_bucket": "peer"}
        for name in MAIN_IMPLS:
            module = core.IMPLS[name].module
            rows[name] = {
                "kind": kinds.get(name, "ours"),
                "vs": None if name == "dict" else "dict",
                "package": _package(module, {}),
            }
        for name, label in RELABEL_031.items():
            rows[label] = {
                "kind": "baseline" if name == "dict" else "previous",
                "vs": None if name == "dict" else "rprl031_dict",
                "package": None if name == "dict" else f"{OURS_PACKAGE}=={VERSION_031}",
            }
    elif suite == "algorithms":
        for name, v in algo.VARIANTS.items():
            rows[name] = {
                "kind": "ours" if v.module == algo.OURS else "peer",
                "vs": v.vs or None,
                "package": _package(v.module, algo.PACKAGES),
            }
    elif suite == "async":
        for name, r in aio.ROWS.items():
            rows[name] = {
                "kind": "ours" if r.module == aio.OURS else "reference",
                "vs": r.vs or None,
                "package": _package(r.module, {}),
            }
    elif suite == "http":
        for name, h in web.ROWS.items():
            kind = (
                "baseline"
                if h.baseline
                else "peer"
                if h.peer
                else "reference"
                if h.reference
                else "ours"
            )
            rows[name] = {
                "kind": kind,
                "vs": None if h.baseline else web.BASELINES.get(h.framework),
                "package": _package(h.module, web.PACKAGES),
            }
    else:
        mod = rb if suite == "redis" else pb
        for name, s in mod.ROWS.items():
            rows[name] = {
                "kind": s.kind,
                "vs": s.vs or None,
                "package": _package(s.module, mod.PACKAGES),
            }
    return rows


@functools.cache
def _no_matplotlib() -> None:
    """Said once per run."""
    _log(
        "note: no charts drawn: matplotlib is missing; "
        "`pip install .[bench]` draws them"
    )


def draw_chart(suite: str, data: dict[str, Any]) -> None:
    """``benches/results/<suite>.svg`` from ``data``, if matplotlib is here."""
    if importlib.util.find_spec("matplotlib") is None:
        _no_matplotlib()
        return
    import charts  # needs matplotlib

    path = charts.write(suite, data, ROOT / RESULTS)
    if path is None:
        _log(f"note: no {suite} chart: nothing measured to draw")
    else:
        _log(f"chart: {path.relative_to(ROOT)}")


def redraw_charts(suites: list[str]) -> int:
    """``--charts-only``: each suite's chart from its JSON, running nothing."""
    if importlib.util.find_spec("matplotlib") is None:
        _log("--charts-only needs matplotlib: `pip install .[bench]`")
        return 1
    for suite in suites:
        path = ROOT / RESULTS / JSON_NAMES[suite]
        if not path.exists():
            _log(f"note: no {RESULTS / JSON_NAMES[suite]}: no {suite} chart")
            continue
        data = json.loads(path.read_text())
        # A JSON from before run.py stored them: what each row is has not
        # changed since (the caption then lacks the CPU model).
        data.setdefault("rows", suite_rows(suite))
        draw_chart(suite, data)
    return 0


def _finish(data: dict[str, Any], suite: str, args: Any) -> None:
    data["generated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data["quick"] = args.quick
    data["machine"] = machine_info()
    data["rows"] = suite_rows(suite)
    (ROOT / RESULTS / JSON_NAMES[suite]).write_text(json.dumps(data, indent=2) + "\n")
    draw_chart(suite, data)


def run_core(args: Any, only: list[str] | None) -> dict[str, Any]:
    main_raw = run_scenarios(
        sys.executable, MAIN_IMPLS, RESULTS / "main.json", args, only=only
    )
    old_raw = None
    if not args.skip_031:
        python = _venv_python(VENV_031) if args.no_install else ensure_venv_031()
        if python is None or not (ROOT / python).exists():
            _log(f"note: {VENV_031} unavailable; skipping the {VERSION_031} rows")
        else:
            old_raw = run_scenarios(
                python, OLD_IMPLS, RESULTS / "rprl031.json", args, only=only
            )
    data = combine(main_raw, old_raw)
    data["targets"] = [t.evaluate(data) for t in TARGETS]
    _finish(data, "core", args)
    return data


def run_algorithms(args: Any, only: list[str] | None) -> dict[str, Any]:
    raw = run_scenarios(
        sys.executable,
        list(algo.VARIANTS),
        RESULTS / "algorithms.json",
        args,
        script=ALGORITHMS,
        only=only,
    )
    data: dict[str, Any] = {
        "suite": "algorithms",
        "processes": {"main": raw["meta"]},
        "scenarios": raw["scenarios"],
    }
    data["targets"] = [t.evaluate(data) for t in algo_targets()]
    _finish(data, "algorithms", args)
    return data


def run_async(args: Any, only: list[str] | None) -> dict[str, Any]:
    raw = run_scenarios(
        sys.executable,
        list(aio.ROWS),
        RESULTS / "async.json",
        args,
        script=ASYNC,
        only=only,
    )
    data: dict[str, Any] = {
        "suite": "async",
        "processes": {"main": raw["meta"]},
        "scenarios": raw["scenarios"],
    }
    data["targets"] = [t.evaluate(data) for t in ASYNC_TARGETS]
    _finish(data, "async", args)
    return data


def run_http(args: Any, only: list[str] | None) -> dict[str, Any]:
    raw = run_scenarios(
        sys.executable,
        list(web.ROWS),
        RESULTS / "http.json",
        args,
        script=HTTP,
        only=only,
    )
    data: dict[str, Any] = {
        "suite": "http",
        "processes": {"main": raw["meta"]},
        "scenarios": raw["scenarios"],
    }
    data["targets"] = [t.evaluate(data) for t in http_targets()]
    _finish(data, "http", args)
    return data


def _run_server_suite(
    args: Any,
    only: list[str] | None,
    suite: str,
    rows: list[str],
    script: Path,
    url_flag: str,
    url: str | None,
    targets: Callable[[], list[Target]],
    keep: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A suite against a server (its own throwaway one unless ``url``):
    targets are evaluated only when the server was there; ``keep`` names
    the raw result's extra sections carried into the data."""
    raw = run_scenarios(
        sys.executable,
        rows,
        RESULTS / f"{suite}.json",
        args,
        script=script,
        only=only,
        extra=[url_flag, url] if url else [],
    )
    data: dict[str, Any] = {
        "suite": suite,
        "processes": {"main": raw["meta"]},
        "scenarios": raw["scenarios"],
        **{key: raw.get(key) for key in keep},
    }
    unavailable = raw["meta"]["unavailable"] is not None
    data["targets"] = [] if unavailable else [t.evaluate(data) for t in targets()]
    _finish(data, suite, args)
    return data


def run_redis(args: Any, only: list[str] | None) -> dict[str, Any]:
    return _run_server_suite(
        args, only, "redis", list(rb.ROWS), REDIS, "--redis-url", args.redis_url,
        redis_targets, keep=("deadline", "flood"),
    )  # fmt: skip


def run_postgres(args: Any, only: list[str] | None) -> dict[str, Any]:
    return _run_server_suite(
        args, only, "postgres", list(pb.ROWS), POSTGRES, "--postgres-url",
        args.postgres_url, postgres_targets,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", choices=SUITES, help="which suite (default: core)")
    ap.add_argument("--quick", action="store_true", help="smoke test (< 1 min)")
    ap.add_argument("--repeats", type=int, help="override repeats per scenario")
    ap.add_argument("--scenarios", help="comma list (default: all)")
    ap.add_argument("--skip-031", action="store_true", help="skip the 0.3.1 venv")
    ap.add_argument("--no-install", action="store_true", help="never run pip")
    ap.add_argument("--strict", action="store_true", help="exit 1 on any MISS")
    ap.add_argument(
        "--redis-url", help="redis suite: use this server, not a throwaway one"
    )
    ap.add_argument(
        "--postgres-url",
        help="postgres suite: use this server, not a throwaway one",
    )
    ap.add_argument(
        "--charts-only",
        action="store_true",
        help="redraw the charts from the JSON files already there (of every "
        "suite, or of --suite), running nothing",
    )
    args = ap.parse_args(argv)

    os.chdir(ROOT)
    (ROOT / RESULTS).mkdir(parents=True, exist_ok=True)
    ignore = ROOT / RESULTS / ".gitignore"
    if not ignore.exists():
        ignore.write_text(RESULTS_GITIGNORE)

    every = [s for s in SUITES if s != "all"]
    if args.charts_only:
        return redraw_charts(every if args.suite in (None, "all") else [args.suite])
    args.suite = args.suite or "core"
    suites = every if args.suite == "all" else [args.suite]
    only = _split_scenarios(args.scenarios, suites)
    reports: list[tuple[str, dict[str, Any], Path]] = []
    for suite in suites:
        if only[suite] == []:
            _log(f"note: no {suite} scenario in --scenarios; skipping that suite")
            continue
        if not args.no_install:
            ensure_peers(PEER_MODULES[suite])
        if suite == "core":
            data = run_core(args, only[suite])
            reports.append((report(data), data, RESULTS / "latest.json"))
        elif suite == "algorithms":
            data = run_algorithms(args, only[suite])
            reports.append(
                (algo_report(data), data, RESULTS / "latest-algorithms.json")
            )
        elif suite == "async":
            data = run_async(args, only[suite])
            reports.append((async_report(data), data, RESULTS / "latest-async.json"))
        elif suite == "http":
            data = run_http(args, only[suite])
            reports.append((http_report(data), data, RESULTS / "latest-http.json"))
        elif suite == "redis":
            data = run_redis(args, only[suite])
            reports.append((redis_report(data), data, RESULTS / "latest-redis.json"))
        else:
            data = run_postgres(args, only[suite])
            reports.append(
                (postgres_report(data), data, RESULTS / "latest-postgres.json")
            )

    for i, (text, _, path) in enumerate(reports):
        if i:
            print()
        print(text)
        print(f"\nraw results: {path}")
    missed = any(
        t["status"] != "PASS" for _, data, _ in reports for t in data["targets"]
    )
    if args.strict and missed:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
