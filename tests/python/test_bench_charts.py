"""benches/charts.py: the SVG chart of each suite, from a small JSON in the
shape benches/run.py writes (no benchmark is run here)."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import platform
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

BENCHES = Path(__file__).resolve().parents[2] / "benches"
sys.path.insert(0, str(BENCHES))

import charts  # noqa: E402
import run  # noqa: E402

DATE = "2024-03-05T06:07:08Z"
SHOWN_DATE = "2024-03-05 06:07 UTC"
MACHINE: dict[str, Any] = {
    "cpu": "Test CPU 9000 @ 3.00GHz",
    "cores": 8,
    "python": "CPython 3.12.1",
    "platform": "Linux-test-x86_64",
    "package": "9.8.7",
}


def _meta(impls: Mapping[str, str | None], **extra: Any) -> dict[str, Any]:
    return {
        "python": "3.12.1",
        "python_implementation": "CPython",
        "platform": "Linux-test-x86_64",
        "cpu_count": 8,
        "params": {"repeats": 7},
        "impls": dict(impls),
        "skipped": {},
        "problems": [],
    } | extra


def _res(ns: float, ratio: float, **extra: Any) -> dict[str, Any]:
    return {"median_ns": ns, "ratio": ratio, "samples_ns": [ns, ns, ns]} | extra


def _row(kind: str, package: str | None, vs: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "vs": vs, "package": package}


OURS = "rust-py-rate-limit"


def _json(
    meta: dict[str, Any],
    scenarios: dict[str, dict[str, Any]],
    rows: dict[str, dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    data = {
        "processes": {"main": meta},
        "scenarios": scenarios,
        "targets": [],
        **extra,
        "generated_at": DATE,
        "quick": False,
        "machine": MACHINE,
        "rows": rows,
    }
    # Through text, as run.py writes it and --charts-only reads it.
    loaded: dict[str, Any] = json.loads(json.dumps(data))
    return loaded


def core_json() -> dict[str, Any]:
    hot = {
        "dict": _res(150.0, 1.0, process="main"),
        "ours_allow": _res(75.0, 0.5, process="main"),
        "ours_check": _res(230.0, 1.53, process="main"),
        "limits": _res(2300.0, 15.33, process="main"),
        "token_bucket": _res(430.0, 2.87, process="main"),
        "rprl031_dict": _res(148.0, 1.0, process="rprl031"),
        "rprl031_allow": _res(140.0, 0.95, process="rprl031"),
    }
    memory = {
        "dict": {"bytes_per_key": 150.9, "ratio": 1.0, "process": "main"},
        "ours_allow": {"bytes_per_key": 44.4, "ratio": 0.29, "process": "main"},
        "limits": {"bytes_per_key": 347.3, "ratio": 2.3, "process": "main"},
    }
    data = _json(
        _meta({"dict": None, "ours_allow": "9.8.7", "limits": "5.8.0"}),
        {
            "hot": {"description": "one key, never blocked", "results": hot},
            "memory": {"unit": "B/key", "keys": 1_000_000, "results": memory},
        },
        {
            "dict": _row("baseline", None),
            "ours_allow": _row("ours", OURS, "dict"),
            "ours_check": _row("ours", OURS, "dict"),
            "limits": _row("peer", "limits", "dict"),
            "token_bucket": _row("peer", "token-bucket", "dict"),
            "rprl031_dict": _row("baseline", None),
            "rprl031_allow": _row("previous", f"{OURS}==0.3.1", "rprl031_dict"),
        },
    )
    data["processes"]["rprl031"] = _meta({"dict": None, "ours_allow": "0.3.1"})
    return data


def algorithms_json() -> dict[str, Any]:
    def results(scale: float) -> dict[str, Any]:
        return {
            "fixed": _res(75 * scale, 1.0, vs=None, ratio_vs=1.0),
            "sliding": _res(85 * scale, 1.13, vs="fixed", ratio_vs=1.13),
            "limits_sliding": _res(4500 * scale, 60.0, vs="sliding", ratio_vs=53.0),
            "gcra": _res(83 * scale, 1.11, vs="fixed", ratio_vs=1.11),
            "pyrate_gcra": _res(4700 * scale, 62.7, vs="gcra", ratio_vs=56.6),
        }

    return _json(
        _meta(
            {"fixed": "9.8.7", "limits_sliding": "5.8.0", "pyrate_gcra": "4.6.0"},
            suite="algorithms",
            baseline="fixed",
        ),
        {
            "hot": {"description": "one key", "results": results(1.0)},
            "keys100k": {"keys": 100_000, "results": results(1.7)},
        },
        {
            "fixed": _row("ours", OURS),
            "sliding": _row("ours", OURS, "fixed"),
            "limits_sliding": _row("peer", "limits", "sliding"),
            "gcra": _row("ours", OURS, "fixed"),
            "pyrate_gcra": _row("peer", "pyrate-limiter", "gcra"),
        },
        suite="algorithms",
    )


def async_json() -> dict[str, Any]:
    return _json(
        _meta({"allow": "9.8.7", "sleep0": None}, suite="async", ours="9.8.7"),
        {
            "twins": {
                "results": {
                    "allow": _res(74.0, 1.0, vs=None),
                    "aallow": _res(178.0, 2.4, vs="allow"),
                    "sleep0": _res(1990.0, 26.9, vs="aallow"),
                }
            },
            "sweep": {
                "results": {"sweep": {"removed": 1000, "longest_chunk_us": 91.9}}
            },
            "controls": {
                "results": {
                    "plain": _res(76.0, 1.0, vs=None),
                    "banned": _res(107.0, 1.4, vs="guarded"),
                }
            },
            "observe": {
                "results": {
                    "unobserved": _res(73.0, 1.0, vs=None),
                    "observed": _res(78.0, 1.06, vs="unobserved"),
                    "deliver": _res(7600.0, 104.0, vs=None),
                }
            },
        },
        {
            "allow": _row("ours", OURS),
            "aallow": _row("ours", OURS, "allow"),
            "sleep0": _row("reference", None, "aallow"),
            "plain": _row("ours", OURS),
            "banned": _row("ours", OURS, "guarded"),
            "unobserved": _row("ours", OURS),
            "observed": _row("ours", OURS, "unobserved"),
            "deliver": _row("ours", OURS),
        },
        suite="async",
    )


def http_json() -> dict[str, Any]:
    return _json(
        _meta(
            {"fastapi": "0.110.0", "slowapi": "0.1.10", "flask_limiter": "4.1.1"},
            suite="http",
        ),
        {
            "fastapi": {
                "results": {
                    "fastapi": _res(60_000.0, 1.0),
                    "fastapi_ours": _res(63_000.0, 1.05),
                    "slowapi": _res(131_000.0, 2.18),
                }
            },
            "flask": {
                "results": {
                    "flask": _res(56_000.0, 1.0),
                    "flask_ours": _res(60_000.0, 1.07),
                    "flask_limiter": _res(209_000.0, 3.73),
                }
            },
        },
        {
            "fastapi": _row("baseline", "FastAPI"),
            "fastapi_ours": _row("ours", OURS, "fastapi"),
            "slowapi": _row("peer", "slowapi", "fastapi"),
            "flask": _row("baseline", "Flask"),
            "flask_ours": _row("ours", OURS, "flask"),
            "flask_limiter": _row("peer", "Flask-Limiter", "flask"),
        },
        suite="http",
    )


def _server_meta(suite: str, version: str, impls: dict[str, str]) -> dict[str, Any]:
    return _meta(
        impls,
        suite=suite,
        params={"repeats": 15, "hits": 2000, "keys": 100, "threads": 8},
        server={"url": "x://127.0.0.1:1/0", "throwaway": True, "version": version},
        unavailable=None,
    )


def redis_json() -> dict[str, Any]:
    return _json(
        _server_meta("redis", "7.2.4", {"limits_fixed": "5.8.0", "fixed": "9.8.7"}),
        {
            "hits": {
                "keys": 100,
                "results": {
                    "ping": _res(34_000.0, 1.1),
                    "evalsha": _res(31_000.0, 1.0),
                    "fixed": _res(22_400.0, 0.72),
                    "limits_fixed": _res(47_000.0, 1.53, vs="fixed"),
                    "gcra": _res(22_200.0, 0.71),
                    "pyrate_gcra": _res(80_000.0, 2.58, vs="gcra"),
                    "aallow": _res(38_000.0, 1.23),
                    "aallow_gather": _res(13_000.0, 0.43, vs="aallow"),
                },
            }
        },
        {
            "ping": _row("baseline", "redis"),
            "evalsha": _row("baseline", "redis"),
            "fixed": _row("ours", OURS),
            "gcra": _row("ours", OURS),
            "limits_fixed": _row("peer", "limits", "fixed"),
            "pyrate_gcra": _row("peer", "pyrate-limiter", "gcra"),
            "aallow": _row("async", OURS),
            "aallow_gather": _row("async", OURS, "aallow"),
        },
        suite="redis",
        deadline=None,
        flood=None,
    )


def postgres_json() -> dict[str, Any]:
    return _json(
        _server_meta("postgres", "16.2 (Debian 16.2-1)", {"pyrate_bucket": "4.6.0"}),
        {
            "hits": {
                "keys": 100,
                "results": {
                    "select1": _res(26_000.0, 1.0),
                    "fixed": _res(87_000.0, 3.3),
                    "sliding_log": _res(92_000.0, 3.5),
                    "pyrate_bucket": _res(426_000.0, 16.1, vs="sliding_log"),
                    "aallow": _res(390_000.0, 14.8),
                    "aallow_gather": _res(92_000.0, 3.5, vs="aallow"),
                    "threads_own": _res(50_000.0, 1.9, vs="fixed"),
                    "threads_one": _res(158_000.0, 6.0, vs="fixed"),
                },
            }
        },
        {
            "select1": _row("baseline", "psycopg"),
            "fixed": _row("ours", OURS),
            "sliding_log": _row("ours", OURS),
            "pyrate_bucket": _row("peer", "pyrate-limiter", "sliding_log"),
            "aallow": _row("async", OURS),
            "aallow_gather": _row("async", OURS, "aallow"),
            "threads_own": _row("threads", OURS, "fixed"),
            "threads_one": _row("threads", OURS, "fixed"),
        },
        suite="postgres",
    )


JSONS = {
    "core": core_json,
    "algorithms": algorithms_json,
    "async": async_json,
    "http": http_json,
    "redis": redis_json,
    "postgres": postgres_json,
}
# Rows that measure something else than the others (per event, per scrape)
# or are 1x by definition in another process: not drawn.
NOT_DRAWN = {"rprl031_dict", "deliver"}
# The suites whose groups are their scenarios (the server suites have one
# scenario, "hits", named in the title, grouped by what the rows are).
SERVER_SUITES = {"redis", "postgres"}


def _texts(svg: bytes) -> list[str]:
    """Every piece of text in the SVG (svg.fonttype "none": text as text)."""
    root = ET.fromstring(svg)
    return [
        "".join(el.itertext())
        for el in root.iter()
        if el.tag.rsplit("}", 1)[-1] == "text"
    ]


def test_every_suite_has_a_synthetic_json() -> None:
    assert set(JSONS) == set(charts.SUITES) == set(run.JSON_NAMES)


@pytest.mark.parametrize("suite", list(JSONS))
def test_chart_names_every_scenario_and_row_and_the_date(
    suite: str, tmp_path: Path
) -> None:
    data = JSONS[suite]()
    path = charts.write(suite, data, tmp_path)
    assert path == tmp_path / f"{suite}.svg"
    svg = path.read_bytes()
    texts = _texts(svg)
    joined = "\n".join(texts)

    for scenario in data["scenarios"]:
        if scenario == "sweep":  # not a ratio: the async tables show it
            continue
        titled = (t.startswith(f"{scenario}:") or f" {scenario}:" in t for t in texts)
        assert any(titled), scenario
    drawn = {
        name
        for scn in data["scenarios"].values()
        for name, res in scn["results"].items()
        if "ratio" in res and name not in NOT_DRAWN
    }
    labels = set(texts)
    assert drawn <= labels, drawn - labels
    peers = {n for n, r in data["rows"].items() if r["kind"] == "peer"}
    assert peers <= labels
    assert not (NOT_DRAWN & labels)
    # Each bar ends with its ratio, then its raw value.
    assert any(t.startswith("1.00x  (") for t in texts)
    # The caption: machine, Python, our version, the date of the run.
    assert SHOWN_DATE in joined
    assert MACHINE["cpu"] in joined
    assert "8 CPUs" in joined
    assert "CPython 3.12.1" in joined
    assert "rust-py-rate-limit 9.8.7" in joined
    assert "lower is better" in joined
    assert "log scale" in joined
    # Our bars in their own colour; the date is not in the SVG's metadata.
    assert f"fill: {charts.COLORS['ours']}".encode() in svg
    assert b"<dc:date>" not in svg


@pytest.mark.parametrize("suite", list(JSONS))
def test_same_json_same_bytes(suite: str, tmp_path: Path) -> None:
    first = charts.write(suite, JSONS[suite](), tmp_path / "a")
    assert first is not None
    drawn = first.read_bytes()
    second = charts.write(suite, copy.deepcopy(JSONS[suite]()), tmp_path / "b")
    assert second is not None
    assert second.read_bytes() == drawn
    again = charts.write(suite, JSONS[suite](), tmp_path / "a")
    assert again == first
    assert first.read_bytes() == drawn
    chart = charts.build(suite, JSONS[suite]())
    assert chart is not None
    assert charts.render(chart) == first.read_bytes()


def test_the_values_change_the_chart(tmp_path: Path) -> None:
    data = http_json()
    chart = charts.build("http", data)
    assert chart is not None
    before = charts.render(chart)
    data["scenarios"]["flask"]["results"]["flask_ours"]["ratio"] = 1.2
    after = charts.build("http", data)
    assert after is not None
    assert before != charts.render(after)
    assert "1.20x  (60 µs)" in _texts(charts.render(after))


def test_a_quick_run_says_so() -> None:
    data = core_json() | {"quick": True}
    chart = charts.build("core", data)
    assert chart is not None
    assert "--quick" in "\n".join(_texts(charts.render(chart)))


def test_caption_without_machine_falls_back_to_the_meta() -> None:
    """A JSON from before run.py stored the machine: the caption still
    names the platform, CPUs and our version (from the rows' versions)."""
    data = algorithms_json()
    del data["machine"]
    lines = charts.caption(data)
    assert "Linux-test-x86_64" in lines[0]
    assert "8 CPUs" in lines[0]
    assert "rust-py-rate-limit 9.8.7" in lines[0]
    assert "peers: limits 5.8.0, pyrate-limiter 4.6.0" in lines[1]


@pytest.mark.parametrize("suite", ["redis", "postgres"])
def test_a_skipped_server_suite_has_no_chart(suite: str, tmp_path: Path) -> None:
    stale = tmp_path / f"{suite}.svg"
    stale.write_text("<svg/>")
    data = JSONS[suite]()
    data["processes"]["main"]["unavailable"] = "not installed"
    data["scenarios"] = {}
    assert charts.write(suite, data, tmp_path) is None
    assert not stale.exists()  # it would not match the JSON


def test_ratio_and_time_text() -> None:
    assert charts.ratio_text(0.2712) == "0.27x"
    assert charts.ratio_text(15.33) == "15.3x"
    assert charts.ratio_text(1234.5) == "1,234x"
    assert charts.time_text(76.54) == "76.5 ns"
    assert charts.time_text(431.2) == "431 ns"
    assert charts.time_text(2323.0) == "2.32 µs"
    assert charts.time_text(131_174.0) == "131 µs"
    assert charts.time_text(8_038_266.0) == "8.04 ms"


# --------------------------------------------------------------------------
# run.py: what it stores for the charts, --charts-only, no matplotlib
# --------------------------------------------------------------------------


@pytest.mark.parametrize("suite", list(JSONS))
def test_run_describes_every_row(suite: str) -> None:
    rows = run.suite_rows(suite)
    kinds = {"baseline", "ours", "previous", "peer", "reference", "async", "threads"}
    assert rows
    assert {r["kind"] for r in rows.values()} <= kinds
    assert any(r["kind"] in charts.OURS_KINDS for r in rows.values())
    for name, row in rows.items():
        if row["kind"] == "peer":
            assert row["vs"] in rows, name
            assert row["package"], name
    # The synthetic JSONs above describe their rows as run.py does.
    for name, row in JSONS[suite]()["rows"].items():
        assert rows[name]["kind"] == row["kind"], name


def test_machine_info() -> None:
    info = run.machine_info()
    assert set(info) == {"cpu", "cores", "python", "platform", "package"}
    assert info["python"] == (
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    assert info["cores"] == os.cpu_count()
    assert info["cpu"]


def test_charts_only_redraws_from_the_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / run.RESULTS
    results.mkdir(parents=True)
    data = http_json()
    del data["rows"]  # as written before run.py stored them
    (results / run.JSON_NAMES["http"]).write_text(json.dumps(data))
    monkeypatch.setattr(run, "ROOT", tmp_path)
    assert run.redraw_charts(["http", "redis"]) == 0
    assert (results / "http.svg").exists()
    assert not (results / "redis.svg").exists()
    err = capsys.readouterr().err
    assert "chart: benches/results/http.svg" in err
    assert "no benches/results/latest-redis.json" in err


def test_without_matplotlib_one_note_and_no_chart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "matplotlib" else real(name, *args)

    monkeypatch.setattr(run, "ROOT", tmp_path)
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    run._no_matplotlib.cache_clear()
    run.draw_chart("http", http_json())
    run.draw_chart("redis", redis_json())
    run._no_matplotlib.cache_clear()
    err = capsys.readouterr().err
    assert err.count("pip install .[bench]") == 1
    assert not list(tmp_path.rglob("*.svg"))
