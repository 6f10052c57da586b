"""Draw the benchmark charts: one SVG per suite, from the JSON run.py writes.

    benches/results/latest.json           -> benches/results/core.svg
    benches/results/latest-<suite>.json   -> benches/results/<suite>.svg

One figure per suite: for each scenario a group of horizontal bars, one per
row (ours, each peer, the baseline where the suite has one), on a log scale of
the row's time (or memory) per hit divided by the suite's baseline measured in
the same run: lower is better. Our bars are orange; each bar ends with its
ratio and its raw time. A caption names the machine (CPU, CPUs, Python, our
package's version) and the date of the run, from the JSON.

The same JSON always gives a byte-identical SVG (a fixed ``svg.hashsalt``,
text kept as text, no date in the SVG's metadata), so a chart redrawn from
unchanged results does not churn git.

Needs matplotlib (the ``bench`` extra: ``pip install .[bench]``); run.py
imports this module only when matplotlib is importable, and draws each
suite's chart right after writing its JSON (``run.py --charts-only`` redraws
them all from the JSON files). Drawn with the Agg canvas, never pyplot: no
global state, no window.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.textpath import TextToPath
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

SUITES = ("core", "algorithms", "async", "http", "redis", "postgres")
OURS_PACKAGE = "rust-py-rate-limit"

# Row kinds (``rows[name]["kind"]`` in the JSON, written by run.py).
OURS_KINDS = ("ours", "async", "threads")  # async / threads: the server suites'
COLORS = {
    "ours": "#e8590c",
    "previous": "#ffc078",
    "peer": "#4a78b5",
    "baseline": "#adb5bd",
    "reference": "#7d8790",
}

# Layout, in inches (the figure is WIDTH wide: about 900 px in a README).
WIDTH = 9.0
PITCH = 0.22  # one bar
CLUSTER_GAP = 0.5  # extra space (in bars) before a new algorithm's cluster
GROUP_TITLE = 0.34  # a group's title, above its bars
GROUP_SPACE = 0.12  # between groups
TITLE = 0.42  # the figure's title, above the legend
LEGEND_LINE = 0.24  # a row of the legend
AXIS = 0.62  # tick labels and the axis label
CAPTION_LINE = 0.19
RIGHT = 0.2
MARGIN = 0.2  # left of the title, legend and caption
BASELINE_LINE = "#343a40"  # the dashed line at 1x
FONT = 9  # bar labels, ticks, legend, caption
RC: dict[Any, Any] = {  # (keys: matplotlib.typing.RcKeyType, from 3.9)
    "svg.hashsalt": "rust-py-rate-limit benchmarks",
    "svg.fonttype": "none",
    "font.size": FONT,
    "axes.titlesize": 10,
    "axes.labelsize": FONT,
    "xtick.labelsize": FONT,
    "ytick.labelsize": FONT,
    "legend.fontsize": FONT,
    "figure.titlesize": 11,
}


@dataclass(frozen=True)
class Bar:
    name: str
    kind: str
    ratio: float  # to the baseline measured in the same run
    value: str  # the raw measurement, e.g. "76.5 ns"
    gap: bool = False  # a new cluster starts here: a little space above


@dataclass(frozen=True)
class Group:
    title: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Chart:
    title: str
    axis: str  # the value axis' label
    baseline: str  # what 1x is (legend)
    groups: tuple[Group, ...]
    legend: dict[str, str]  # kind -> label
    caption: tuple[str, ...]


# --------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------


def ratio_text(ratio: float) -> str:
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    if ratio >= 10:
        return f"{ratio:.1f}x"
    return f"{ratio:.2f}x"


def time_text(ns: float) -> str:
    if ns < 100:
        return f"{ns:.1f} ns"
    if ns < 1000:
        return f"{ns:.0f} ns"
    value, unit = (ns / 1e3, "µs") if ns < 1e6 else (ns / 1e6, "ms")
    return f"{value:.3g} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def _date(stamp: str | None) -> str:
    """``2025-01-31T12:34:56Z`` -> ``2025-01-31 12:34 UTC``."""
    if not stamp:
        return "date unknown"
    return stamp.replace("T", " ")[:16] + (" UTC" if stamp.endswith("Z") else "")


def _versions(data: dict[str, Any], kinds: Iterable[str]) -> str:
    """``limits 5.8.0, throttled-py 3.5.0``: the packages of rows of ``kinds``."""
    impls = data["processes"]["main"].get("impls", {})
    found: dict[str, str] = {}
    for name, row in data.get("rows", {}).items():
        version = impls.get(name)
        if row.get("kind") in kinds and row.get("package") and version:
            found.setdefault(row["package"], version)
    return ", ".join(f"{p} {v}" for p, v in sorted(found.items()))


def _ours_version(data: dict[str, Any]) -> str | None:
    """Our package's version: as the run recorded it, else as our rows'."""
    version: str | None = (data.get("machine") or {}).get("package")
    if version:
        return version
    found = _versions(data, OURS_KINDS).split(" ")  # [package, version]
    return found[1] if len(found) == 2 else None


def caption(data: dict[str, Any], server: str = "") -> tuple[str, ...]:
    """Two lines: the machine and date; the peers and the run's kind."""
    meta = data["processes"]["main"]
    machine = data.get("machine") or {}
    python = machine.get("python") or (
        f"{meta.get('python_implementation', 'Python')} {meta.get('python', '?')}"
    )
    cores = machine.get("cores") or meta.get("cpu_count")
    package = _ours_version(data) or "?"
    first = [
        machine.get("cpu") or meta.get("platform") or "unknown CPU",
        f"{cores} CPUs" if cores else "",
        python,
        f"{OURS_PACKAGE} {package}",
        server,
        _date(data.get("generated_at")),
    ]
    peers = _versions(data, ("peer",))
    repeats = meta.get("params", {}).get("repeats")
    second = [
        f"peers: {peers}" if peers else "",
        f"median of {repeats} interleaved repeats" if repeats else "",
        "--quick run: a smoke test, not figures to quote" if data.get("quick") else "",
    ]
    return (
        " · ".join(p for p in first if p),
        " · ".join(p for p in second if p),
    )


# --------------------------------------------------------------------------
# Building a chart from a suite's JSON
# --------------------------------------------------------------------------


def _results(data: dict[str, Any], scenario: str) -> dict[str, Any]:
    results: dict[str, Any] = (
        data.get("scenarios", {}).get(scenario, {}).get("results", {})
    )
    return results


def _bar(
    data: dict[str, Any], scenario: str, name: str, gap: bool = False
) -> Bar | None:
    res = _results(data, scenario).get(name)
    if not res or not res.get("ratio") or res["ratio"] <= 0:
        return None
    if res.get("bytes_per_key") is not None:
        value = f"{res['bytes_per_key']:.0f} B/key"
    elif res.get("median_ns") is not None:
        value = time_text(res["median_ns"])
    else:
        return None
    kind = data.get("rows", {}).get(name, {}).get("kind", "ours")
    return Bar(name, kind, float(res["ratio"]), value, gap)


def _clustered(data: dict[str, Any], bars: Iterable[Bar | None]) -> tuple[Bar, ...]:
    """The bars that exist, with a gap before one of ours that follows a peer
    or that peers are compared with (it heads their cluster)."""
    present = [b for b in bars if b is not None]
    rows: dict[str, Any] = data.get("rows", {})
    heads = {rows.get(b.name, {}).get("vs") for b in present if b.kind == "peer"}
    out: list[Bar] = []
    for bar in present:
        gap = (
            bool(out)
            and bar.kind in OURS_KINDS
            and (out[-1].kind == "peer" or bar.name in heads)
        )
        out.append(Bar(bar.name, bar.kind, bar.ratio, bar.value, gap))
    return tuple(out)


def _title(titles: dict[str, str], data: dict[str, Any], scenario: str) -> str:
    scn = data["scenarios"][scenario]
    if scenario in titles:
        try:
            return titles[scenario].format(**scn)
        except (KeyError, ValueError):
            return titles[scenario]
    return f"{scenario}: " + textwrap.shorten(scn.get("description", ""), 80)


def _scenario_groups(
    data: dict[str, Any], titles: dict[str, str], skip: Iterable[str] = ()
) -> tuple[Group, ...]:
    """A group per scenario, its rows in the order of ``rows``."""
    order = list(data.get("rows", {}))
    groups = []
    for scenario in data.get("scenarios", {}):
        names = [n for n in _results(data, scenario) if n not in skip]
        names.sort(key=lambda n: order.index(n) if n in order else len(order))
        bars = _clustered(data, (_bar(data, scenario, n) for n in names))
        if bars:
            groups.append(Group(_title(titles, data, scenario), bars))
    return tuple(groups)


def _legend(data: dict[str, Any], baseline: str, **extra: str) -> dict[str, str]:
    version = _ours_version(data)
    legend = {
        "ours": f"ours ({OURS_PACKAGE} {version})" if version else "ours",
        "peer": "peers",
        "baseline": baseline,
    }
    return legend | extra


def _memory(data: dict[str, Any]) -> str:
    return " (memory: bytes)" if "memory" in data.get("scenarios", {}) else ""


CORE_TITLES = {
    "hot": "hot: one key, never blocked",
    "over": "over: one key over its limit, every hit blocked",
    "keys100k": "keys100k: {keys:,} existing keys, round-robin",
    "newkeys": "newkeys: the first hit on never-seen keys",
    "threads4": "threads4: {threads} threads at once, a key each "
    "(wall time / all hits)",
    "memory": "memory: RSS growth per key after {keys:,} keys (bytes, not time)",
}


def core_chart(data: dict[str, Any]) -> Chart | None:
    groups = _scenario_groups(data, CORE_TITLES, skip=("rprl031_dict",))
    if not groups:
        return None
    return Chart(
        "core: ours against a plain-Python dict and two peers, in memory",
        f"time{_memory(data)} per hit, x the dict baseline measured in the same "
        "run (log scale; lower is better)",
        "1x = dict: a plain-Python fixed window",
        groups,
        _legend(
            data,
            "dict (baseline)",
            previous=f"{OURS_PACKAGE} 0.3.1 (x its own dict, in its own process)",
        ),
        caption(data),
    )


ALGORITHM_TITLES = {
    "hot": "hot: one key, limit 10^9 (sliding_log and limits_moving: 100, "
    "every timed hit blocked)",
    "keys100k": "keys100k: {keys:,} existing keys, round-robin, never blocked",
    "memory": "memory: RSS growth per key after {keys:,} keys (bytes, not time)",
}


def algorithms_chart(data: dict[str, Any]) -> Chart | None:
    groups = _scenario_groups(data, ALGORITHM_TITLES)
    if not groups:
        return None
    return Chart(
        "algorithms: each of ours, then the peers with the same algorithm",
        f"time{_memory(data)} per hit, x our fixed window measured in the same "
        "run (log scale; lower is better)",
        "1x = ours, fixed window",
        groups,
        _legend(data, ""),
        caption(data),
    )


ASYNC_TITLES = {
    "twins": "twins: a hot key inside a running asyncio loop (1x = allow)",
    "hot": "hot: one key, max_keys set vs unset (1x = unbounded)",
    "keys100k": "keys100k: {keys:,} keys, max_keys set vs unset (1x = unbounded)",
    "controls": "controls: ban policy and allow / deny lists (1x = plain)",
    "observe": "observe: an event callback and a Prometheus collector "
    "(1x = unobserved)",
}
# Not per hit: ns per delivered event and per scrape of 100 limiters.
ASYNC_SKIP = ("deliver", "scrape100")


def async_chart(data: dict[str, Any]) -> Chart | None:
    groups = _scenario_groups(data, ASYNC_TITLES, skip=ASYNC_SKIP)
    if not groups:
        return None
    return Chart(
        "async and extras: what awaiting, max_keys, controls and watching cost",
        "time per call, x the first row of its group measured in the same run "
        "(log scale; lower is better)",
        "1x = the group's first row",
        groups,
        _legend(
            data,
            "",
            reference="reference: one event-loop round trip (asyncio.sleep(0))",
        ),
        caption(data),
    )


HTTP_TITLES = {
    "fastapi": "fastapi: a FastAPI app, GET /hello, awaited in-process (ASGI) "
    "(1x = no limiting)",
    "flask": "flask: a Flask app, GET /hello, called in-process (WSGI) "
    "(1x = no limiting)",
    "drf": "drf: a Django REST framework APIView, GET /hello (1x = no throttle)",
}


def http_chart(data: dict[str, Any]) -> Chart | None:
    groups = _scenario_groups(data, HTTP_TITLES)
    if not groups:
        return None
    return Chart(
        "http: a request through a limited app, per framework",
        "time per request, x the same app without limiting measured in the same "
        "run (log scale; lower is better)",
        "1x = the same app without limiting",
        groups,
        _legend(
            data,
            "the app without limiting (baseline)",
            reference="reference: a middleware that only adds a header",
        ),
        caption(data),
    )


def _server_groups(data: dict[str, Any], threads: str = "") -> tuple[Group, ...]:
    """Round trips; each of our algorithms followed by its peers; awaits;
    threads (``threads``: that group's title)."""
    rows: dict[str, Any] = data.get("rows", {})
    measured = _results(data, "hits")

    def of(kind: str) -> list[str]:
        return [n for n, r in rows.items() if r.get("kind") == kind and n in measured]

    sync: list[str] = []
    for name in of("ours"):
        sync.append(name)
        sync += [p for p in of("peer") if rows[p].get("vs") == name]
    sync += [p for p in of("peer") if p not in sync]
    keys = data["scenarios"].get("hits", {}).get("keys", "")
    parts = [
        ("round trips without a limiter (the baseline)", of("baseline")),
        (
            "allow(), per hit: each of our algorithms, then the peers with the "
            "same algorithm",
            sync,
        ),
        (
            f"await aallow() (fixed window): one at a time, and {keys} at once",
            of("async"),
        ),
        (threads, of("threads")),
    ]
    groups = []
    for title, names in parts:
        bars = _clustered(data, (_bar(data, "hits", n) for n in names))
        if bars:
            groups.append(Group(title, bars))
    return tuple(groups)


def _server_version(data: dict[str, Any], name: str) -> str:
    server = data["processes"]["main"].get("server") or {}
    version = str(server.get("version") or "").split(" ")[0]
    return f"{name} {version}" if version else ""


def redis_chart(data: dict[str, Any]) -> Chart | None:
    if data["processes"]["main"].get("unavailable"):
        return None
    groups = _server_groups(data)
    if not groups:
        return None
    return Chart(
        "redis, hits: a decision per round trip, ours and the peers on one server",
        "time per hit, x a redis-py EVALSHA round trip measured in the same run "
        "(log scale; lower is better)",
        "1x = redis-py EVALSHA of `return 1`",
        groups,
        _legend(data, "raw redis-py round trips (baseline)"),
        caption(data, _server_version(data, "redis-server")),
    )


def postgres_chart(data: dict[str, Any]) -> Chart | None:
    meta = data["processes"]["main"]
    if meta.get("unavailable"):
        return None
    threads = meta.get("params", {}).get("threads", "")
    groups = _server_groups(
        data,
        f"{threads} threads calling allow() at once (fixed window): on keys of "
        "their own, on one key (wall time / all hits)",
    )
    if not groups:
        return None
    return Chart(
        "postgres, hits: a decision per round trip, ours and the peer on one server",
        "time per hit, x a psycopg SELECT 1 round trip measured in the same run "
        "(log scale; lower is better)",
        "1x = psycopg prepared SELECT 1",
        groups,
        _legend(data, "raw psycopg round trip (baseline)"),
        caption(data, _server_version(data, "PostgreSQL")),
    )


BUILDERS = {
    "core": core_chart,
    "algorithms": algorithms_chart,
    "async": async_chart,
    "http": http_chart,
    "redis": redis_chart,
    "postgres": postgres_chart,
}


def build(suite: str, data: dict[str, Any]) -> Chart | None:
    """The chart of ``suite`` from its JSON; None when there is nothing to
    draw (a skipped suite, no ratios)."""
    return BUILDERS[suite](data)


# --------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------

_TEXT = TextToPath()


def _width_in(text: str, size: float = FONT, bold: bool = False) -> float:
    """The width of ``text`` in inches (DejaVu Sans metrics, as drawn)."""
    prop = FontProperties(size=size, weight="bold" if bold else "normal")
    width, _, _ = _TEXT.get_text_width_height_descent(text, prop, ismath=False)
    return float(width) / 72


def _label(bar: Bar) -> str:
    return f"{ratio_text(bar.ratio)}  ({bar.value})"


def _limits(chart: Chart, axis_width: float) -> tuple[float, float]:
    """x limits (log) that leave room for each bar's label at its end."""
    bars = [b for g in chart.groups for b in g.bars]
    lo = math.log10(min(min(b.ratio for b in bars), 1.0) / 1.6)
    hi = math.log10(max(max(b.ratio for b in bars), 1.0) * 1.25)
    for b in bars:
        # log(r) + f * (hi - lo) <= hi, where f is the label's share of the axis
        f = (_width_in(_label(b), bold=b.kind in OURS_KINDS) + 0.12) / axis_width
        hi = max(hi, (math.log10(b.ratio) - f * lo) / (1 - f))
    return 10**lo, 10**hi


def _tick(x: float, _pos: float) -> str:
    return f"{x:g}x"


def render(chart: Chart, fmt: str = "svg") -> bytes:
    """The SVG of ``chart``: the same chart always gives the same bytes
    (``fmt="png"``: a preview, as drawn with DejaVu Sans)."""
    with matplotlib.rc_context(RC):
        fig = figure(chart)
        out = io.BytesIO()
        if fmt == "svg":
            fig.savefig(out, format="svg", metadata={"Date": None})
        else:
            fig.savefig(out, format=fmt, dpi=100)
        return out.getvalue()


def _rows_of(pieces: list[str], width: float, sep: float) -> list[list[str]]:
    """``pieces`` packed greedily into rows at most ``width`` inches wide
    (``sep``: the inches between two pieces)."""
    rows: list[list[str]] = []
    used = 0.0
    for piece in pieces:
        w = _width_in(piece)
        if rows and used + sep + w <= width:
            rows[-1].append(piece)
            used += sep + w
        else:
            rows.append([piece])
            used = w
    return rows


def _legend_handles(chart: Chart) -> list[Patch | Line2D]:
    kinds = {b.kind for g in chart.groups for b in g.bars}
    handles: list[Patch | Line2D] = [
        Patch(color=COLORS[k], label=text)
        for k, text in chart.legend.items()
        if text and (k in kinds or (k == "ours" and kinds & set(OURS_KINDS)))
    ]
    handles.append(
        Line2D(
            [],
            [],
            color=BASELINE_LINE,
            linewidth=0.9,
            linestyle="--",
            label=chart.baseline,
        )
    )
    return handles


def figure(chart: Chart) -> Figure:
    """The figure of ``chart`` (sized and laid out in inches; call it under
    ``matplotlib.rc_context(RC)``, as ``render`` does)."""
    labels = [b.name for g in chart.groups for b in g.bars]
    left = max(_width_in(n) for n in labels) + 0.3
    axis_width = WIDTH - left - RIGHT
    text_width = WIDTH - 2 * MARGIN

    handles = _legend_handles(chart)
    # A legend entry: its handle (1.4 em), a gap (0.8 em), its text; 1.2 em
    # between entries.
    em = FONT / 72
    by_label = {str(h.get_label()): h for h in handles}
    entry = {t: (1.4 + 0.8) * em + _width_in(t) for t in by_label}
    legend_rows: list[list[str]] = []
    used = 0.0
    for text in by_label:
        if legend_rows and used + 1.2 * em + entry[text] <= text_width:
            legend_rows[-1].append(text)
            used += 1.2 * em + entry[text]
        else:
            legend_rows.append([text])
            used = entry[text]
    caption = [
        " · ".join(row)
        for line in chart.caption
        for row in _rows_of(line.split(" · "), text_width, _width_in(" · "))
    ]

    top = TITLE + LEGEND_LINE * len(legend_rows) + 0.12
    heights = [
        GROUP_TITLE + PITCH * (len(g.bars) + CLUSTER_GAP * sum(b.gap for b in g.bars))
        for g in chart.groups
    ]
    bottom = AXIS + CAPTION_LINE * len(caption) + 0.1
    height = top + sum(heights) + GROUP_SPACE * (len(heights) - 1) + bottom
    fig = Figure(figsize=(WIDTH, height))
    FigureCanvasAgg(fig)
    lo, hi = _limits(chart, axis_width)
    decades = math.log10(hi / lo)
    subs: tuple[float, ...] = (1.0,)
    if decades <= 1.2:
        subs = (1.0, 2.0, 3.0, 5.0)
    elif decades <= 3.5:
        subs = (1.0, 2.0, 5.0)

    y_top = height - top
    axes = []
    for group, h in zip(chart.groups, heights, strict=True):
        bars_h = h - GROUP_TITLE
        ax = fig.add_axes(
            (left / WIDTH, (y_top - h) / height, axis_width / WIDTH, bars_h / height)
        )
        axes.append(ax)
        y_top -= h + GROUP_SPACE
        ys: list[float] = []
        pos = 0.0
        for bar in group.bars:
            pos += CLUSTER_GAP if bar.gap else 0.0
            ys.append(pos)
            pos += 1.0
        ax.barh(
            ys,
            [b.ratio - lo for b in group.bars],
            left=lo,
            height=0.72,
            color=[COLORS.get(b.kind, COLORS["ours"]) for b in group.bars],
            zorder=2,
        )
        for y, bar in zip(ys, group.bars, strict=True):
            ours = bar.kind in OURS_KINDS
            ax.text(
                bar.ratio * (hi / lo) ** (0.06 / axis_width),
                y,
                _label(bar),
                va="center",
                ha="left",
                fontsize=FONT,
                fontweight="bold" if ours else "normal",
                color="#212529" if ours else "#495057",
                # over the baseline's line and the grid, not under them
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5},
                zorder=5,
            )
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(pos - 0.5, -0.5)
        ax.set_yticks(ys, [b.name for b in group.bars])
        ax.tick_params(axis="y", length=0)
        ax.axvline(1.0, color=BASELINE_LINE, linewidth=0.9, linestyle="--", zorder=4)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.xaxis.set_major_formatter(FuncFormatter(_tick))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(axis="x", which="major", color="#e9ecef", linewidth=0.8, zorder=0)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.set_title(group.title, loc="left", fontsize=10, pad=5)
        ax.tick_params(axis="x", which="both", labelbottom=False)
    axes[-1].tick_params(axis="x", which="major", labelbottom=True)
    axes[-1].set_xlabel(chart.axis)

    fig.suptitle(
        chart.title,
        x=MARGIN / WIDTH,
        y=1 - 0.12 / height,
        ha="left",
        fontweight="bold",
    )
    for i, row in enumerate(legend_rows):
        fig.legend(
            handles=[by_label[t] for t in row],
            loc="upper left",
            bbox_to_anchor=(
                (MARGIN - 0.05) / WIDTH,
                1 - (TITLE + LEGEND_LINE * i) / height,
            ),
            ncol=len(row),
            frameon=False,
            handlelength=1.4,
            handletextpad=0.8,
            columnspacing=1.2,
            borderaxespad=0,
            borderpad=0,
        )
    for i, line in enumerate(caption):
        fig.text(
            MARGIN / WIDTH,
            (0.12 + CAPTION_LINE * (len(caption) - 1 - i)) / height,
            line,
            fontsize=FONT,
            color="#495057",
        )
    return fig


def chart_path(results: Path, suite: str) -> Path:
    return results / f"{suite}.svg"


def write(suite: str, data: dict[str, Any], results: Path) -> Path | None:
    """Draw ``suite``'s chart from ``data`` into ``results/<suite>.svg``;
    None (and any older chart removed: it would not match the JSON) when
    there is nothing to draw."""
    path = chart_path(results, suite)
    chart = build(suite, data)
    if chart is None:
        path.unlink(missing_ok=True)
        return None
    svg = render(chart)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_bytes() != svg:
        path.write_bytes(svg)
    return path
