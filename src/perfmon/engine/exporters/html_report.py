"""``report.html``: one self-contained page (no network, no JavaScript) people look at.

Sections: the verdict; the gates (whole run and per set) and their changes over time; per
variant distributions of every compared metric (one box plot with the sessions' values as
points, per group of sessions); each gated metric over time with the gate changes marked; the
comparison table; the flame graphs the run wrote (``perfmon.engine.flame_export``); the
recording's damage and the method.

Charts are drawn by matplotlib (object-oriented API, no pyplot state, SVG backend) and embedded
as ``data:image/svg+xml`` images, so their ids cannot collide and nothing in them can run.
Every text from the campaign or a workload is escaped with ``html.escape``; matplotlib's math
text is switched off so that a ``$`` in a name is printed, not parsed.

Memory stays bounded on huge runs: time series are reduced to at most ``TIME_BUCKETS`` buckets
(min, mean and max per bucket), distributions show at most ``POINTS_PER_BOX`` points per box
(an evenly spaced subset of the sorted values; the box uses all of them), and at most
``MAX_METRIC_CHARTS`` metrics get charts.

matplotlib is imported inside the functions that draw: it is an optional extra and takes about
half a second to import, which ``perfmon report --format md`` and a run writing no HTML never
pay.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from perfmon.core.model import Dimension, metric_dimension
from perfmon.engine.compare import SESSION_METRICS, source_from_run
from perfmon.engine.exporters.common import gate_quantity
from perfmon.engine.profiler import PROFILES_DIR

if TYPE_CHECKING:
    from perfmon.engine.recorder import RunData

__all__ = ["downsample", "render_html"]

log = logging.getLogger(__name__)

TIME_BUCKETS = 600
"""A time series is drawn from at most this many (min, mean, max) buckets."""

POINTS_PER_BOX = 400
"""At most this many session values are drawn as points per box (the box uses all)."""

MAX_METRIC_CHARTS = 12
"""At most this many metrics get a distribution chart, and as many a time chart."""

MAX_GROUPS_PER_CHART = 24
"""A distribution chart shows at most this many groups (the first, in run order)."""

MAX_TABLE_ROWS = 500
"""HTML tables show at most this many rows; report.json has all."""

FLAME_MAX_BYTES = 8 * 1024 * 1024
"""A flame graph SVG larger than this is linked, not embedded."""

_STATE_COLOUR = {
    "pass": "#1a7f37",
    "fail": "#cf222e",
    "inconclusive": "#9a6700",
    "pending": "#57606a",
}
_VARIANT_COLOURS = ("#0969da", "#d1242f", "#1a7f37", "#8250df", "#bf8700", "#57606a")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1200px;
color:#1f2328;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #d0d7de;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-size:1.3em;font-weight:bold;padding:.5em 1em;border-radius:6px;color:#fff;
display:inline-block}
.state{font-weight:bold}.chart{max-width:100%;height:auto;display:block;margin:.5em 0}
.note{color:#57606a;font-size:.9em}code{background:#f6f8fa;padding:0 .2em}
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _fmt(x: Any) -> str:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return "–"
    return f"{x:.4g}" if isinstance(x, float) else f"{x:,}"


def downsample(
    t: np.ndarray[Any, Any], v: np.ndarray[Any, Any], buckets: int = TIME_BUCKETS
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Reduce a time series to at most ``buckets`` equal-width time buckets.

    Args:
        t: sample times (any order, seconds); v: values of the same length. Non-finite values
            are dropped.
        buckets: the most buckets returned (>= 1).

    Returns:
        ``(t_mean, v_min, v_mean, v_max)`` per non-empty bucket, in time order; the series
        itself (min = mean = max) when it has no more points than ``buckets``.
    """
    t = np.asarray(t, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    keep = np.isfinite(t) & np.isfinite(v)
    t, v = t[keep], v[keep]
    if not t.size:
        return t, v, v, v
    acc = BucketedSeries(float(t.min()), float(t.max()), buckets)
    acc.add(t, v)
    return acc.result()


class BucketedSeries:
    """A time series reduced while it streams in: min/mean/max per equal-width time bucket.

    The same reduction as ``downsample`` over a known time range, fed batch by batch, so that a
    chart of a run of any length holds ``buckets`` numbers per series, never its samples
    (issue 13: the report's memory must not grow with the recording).

    Args:
        lo / hi: the run's first and last sample time, Unix seconds (``RunData.t_min/t_max``).
        buckets: equal-width buckets over ``[lo, hi]`` (>= 1).
    """

    def __init__(self, lo: float, hi: float, buckets: int = TIME_BUCKETS) -> None:
        self.lo = lo
        self.width = (hi - lo) / buckets or 1.0
        self.buckets = buckets
        self.count = np.zeros(buckets, np.int64)
        self.t_sum = np.zeros(buckets)
        self.v_sum = np.zeros(buckets)
        self.v_min = np.full(buckets, np.inf)
        self.v_max = np.full(buckets, -np.inf)
        self._raw: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] | None = []
        self._raw_n = 0

    def add(self, t: np.ndarray[Any, Any], v: np.ndarray[Any, Any]) -> None:
        """Fold samples in (seconds, values; non-finite ones are dropped)."""
        t = np.asarray(t, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        keep = np.isfinite(t) & np.isfinite(v)
        t, v = t[keep], v[keep]
        if not t.size:
            return
        if self._raw is not None:  # a short series is drawn point by point, as downsample does
            self._raw_n += t.size
            self._raw = None if self._raw_n > self.buckets else [*self._raw, (t, v)]
        idx = np.clip(((t - self.lo) / self.width).astype(np.int64), 0, self.buckets - 1)
        self.count += np.bincount(idx, minlength=self.buckets)
        self.t_sum += np.bincount(idx, weights=t, minlength=self.buckets)
        self.v_sum += np.bincount(idx, weights=v, minlength=self.buckets)
        np.minimum.at(self.v_min, idx, v)
        np.maximum.at(self.v_max, idx, v)

    def result(
        self,
    ) -> tuple[
        np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]
    ]:
        """``(t_mean, v_min, v_mean, v_max)`` per non-empty bucket in time order; the points
        themselves (min = mean = max) when there are no more than ``buckets``."""
        if self._raw is not None:
            t = np.concatenate([a for a, _ in self._raw]) if self._raw else np.zeros(0)
            v = np.concatenate([b for _, b in self._raw]) if self._raw else np.zeros(0)
            order = np.argsort(t, kind="stable")
            return t[order], v[order], v[order], v[order]
        ok = self.count > 0
        n = self.count[ok]
        return self.t_sum[ok] / n, self.v_min[ok], self.v_sum[ok] / n, self.v_max[ok]


# -- charts -------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    fig.subplots_adjust(left=0.13, right=0.98, top=0.9, bottom=0.28)
    return fig


def _unit_axis(ax: Any, metric: str) -> None:
    """Tick labels in the metric's unit (``perfmon.core.units.format_quantity``: 1.5 ms, 2 MiB)."""
    from matplotlib.ticker import FuncFormatter

    from perfmon.core.units import format_metric, metric_rate_unit

    if metric_dimension(metric) is not Dimension.NONE or metric_rate_unit(metric) is not None:
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: format_metric(y, metric)))


def _svg_img(fig: Any, alt: str) -> str:
    import matplotlib as mpl

    buf = io.BytesIO()
    with mpl.rc_context(
        {"svg.hashsalt": "perfmon", "svg.fonttype": "none", "text.parse_math": False}
    ):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="chart" alt="{_e(alt)}" src="data:image/svg+xml;base64,{data}">'


def _distribution_chart(
    metric: str, groups: Sequence[tuple[str, dict[str, list[float]]]], variants: Sequence[str]
) -> str:
    """Box plots of one value per session, per group and variant, with the values as points."""
    import matplotlib as mpl

    with mpl.rc_context({"text.parse_math": False}):
        n_groups = len(groups)
        fig = _figure(min(12.0, max(7.0, 2.0 + 1.1 * n_groups * max(1, len(variants)))), 3.6)
        ax = fig.add_subplot()
        width = 0.8 / max(1, len(variants))
        rng = np.random.default_rng(0)  # fixed jitter: the same report twice is identical
        for vi, variant in enumerate(variants):
            colour = _VARIANT_COLOURS[vi % len(_VARIANT_COLOURS)]
            positions, data = [], []
            for gi, (_, per_variant) in enumerate(groups):
                values = per_variant.get(variant) or []
                if values:
                    positions.append(gi + (vi - (len(variants) - 1) / 2) * width)
                    data.append(values)
            if not data:
                continue
            ax.boxplot(
                data,
                positions=positions,
                widths=width * 0.8,
                showfliers=False,
                patch_artist=True,
                boxprops={"facecolor": colour, "alpha": 0.25, "edgecolor": colour},
                medianprops={"color": colour, "linewidth": 2},
                whiskerprops={"color": colour},
                capprops={"color": colour},
            )
            for pos, values in zip(positions, data, strict=True):
                arr = np.sort(np.asarray(values, dtype=np.float64))
                if arr.size > POINTS_PER_BOX:
                    arr = arr[np.linspace(0, arr.size - 1, POINTS_PER_BOX).astype(np.int64)]
                x = pos + rng.uniform(-width * 0.3, width * 0.3, arr.size)
                ax.scatter(x, arr, s=8, color=colour, alpha=0.6, linewidths=0)
            ax.scatter([], [], color=colour, label=variant)
        ax.set_xticks(range(n_groups), [label for label, _ in groups], rotation=20, ha="right")
        _unit_axis(ax, metric)
        ax.set_title(f"{metric}: one value per measured session")
        ax.grid(axis="y", alpha=0.3)
        if variants:
            ax.legend(loc="best", fontsize="small")
        return _svg_img(fig, f"distribution of {metric} per variant")


def _time_chart(
    metric: str,
    t0: float,
    series: Mapping[str, BucketedSeries],
    changes: Sequence[Mapping[str, Any]],
) -> str:
    """A gated metric over time (bucketed min/mean/max), gate changes as vertical lines."""
    import matplotlib as mpl

    with mpl.rc_context({"text.parse_math": False}):
        fig = _figure(11.0, 3.2)
        ax = fig.add_subplot()
        for i, (label, reduced) in enumerate(series.items()):
            colour = _VARIANT_COLOURS[i % len(_VARIANT_COLOURS)]
            tm, vmin, vmean, vmax = reduced.result()
            x = tm - t0
            if x.size <= 2:
                ax.plot(x, vmean, "o", color=colour, label=label)
                continue
            # Break the line where the series pauses (between sessions): no slope is drawn
            # through time with no samples.
            dx = np.diff(x)
            gaps = np.flatnonzero(dx > 5 * max(float(np.median(dx)), 1e-9)) + 1
            xs, vmins, vmeans, vmaxs = (np.insert(a, gaps, np.nan) for a in (x, vmin, vmean, vmax))
            style = "-o" if x.size <= 200 else "-"
            ax.plot(xs, vmeans, style, color=colour, linewidth=1, markersize=3, label=label)
            if np.any(vmax > vmin):
                ax.fill_between(xs, vmins, vmaxs, color=colour, alpha=0.15, linewidth=0)
        for c in changes:
            colour = _STATE_COLOUR.get(str(c.get("new")), "#57606a")
            ax.axvline(float(c["t"]) - t0, color=colour, linestyle="--", linewidth=1)
            ax.annotate(
                f"{c.get('gate')}: {c.get('new')}",
                (float(c["t"]) - t0, 1.0),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize="x-small",
                color=colour,
            )
        ax.set_xlabel("seconds since the run started")
        _unit_axis(ax, metric)
        ax.set_title(f"{metric} over time (min/mean/max per time bucket)")
        ax.grid(alpha=0.3)
        if series:
            ax.legend(loc="best", fontsize="small")
        return _svg_img(fig, f"{metric} over time")


# -- sections -----------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: set[int]) -> str:
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for row in rows[:MAX_TABLE_ROWS]:
        out.append("<tr>")
        for i, cell in enumerate(row):
            cls = ' class="num"' if i in numeric else ""
            out.append(f"<td{cls}>{cell}</td>")  # cells are escaped by the caller
        out.append("</tr>")
    out.append("</tbody></table>")
    if len(rows) > MAX_TABLE_ROWS:
        out.append(f'<p class="note">{len(rows) - MAX_TABLE_ROWS:,} more rows in report.json.</p>')
    return "".join(out)


def _result_tables(report: Mapping[str, Any]) -> str:
    """The report's ``tables`` section (``perfmon.engine.tables``, issue 15), cell texts only."""
    section = report.get("tables") or {}
    tables, margins = section.get("tables") or [], section.get("margins") or []
    if not tables and not margins:
        return "<p>No result tables: no measured session.</p>"

    def text(c: Any) -> str:
        return _e(c.get("text", "") if isinstance(c, Mapping) else c)

    out = []
    if margins:
        out.append("<h3>Margin to each gate's threshold</h3>")
        rows = [[text(m.get("gate", "")), text(m.get("group") or ""), text(m)] for m in margins]
        out.append(_table(["Gate", "Group", "Margin"], rows, set()))
    for t in tables:
        out.append(f"<h3>{_e(t.get('title', ''))}</h3>")
        rows = [[text(c) for c in row] for row in t.get("rows") or []]
        out.append(_table([str(h) for h in t.get("header") or []], rows, set()))
    left = section.get("left_out") or []
    if left:
        out.append(f'<p class="note">{len(left):,} more table(s) left out.</p>')
    return "".join(out)


def _state(state: Any) -> str:
    s = str(state)
    colour = _STATE_COLOUR.get(s, "#57606a")
    return f'<span class="state" style="color:{colour}">{_e(s.upper())}</span>'


def _gate_table(gates: Sequence[Mapping[str, Any]]) -> str:
    if not gates:
        return "<p>No gates defined.</p>"
    rows = []
    for g in gates:
        ci = (
            f"[{gate_quantity(g, g.get('ci_low'))}, {gate_quantity(g, g.get('ci_high'))}]"
            if g.get("ci_low") is not None or g.get("ci_high") is not None
            else "–"
        )
        rows.append(
            [
                _e(g.get("name")),
                f"<code>{_e(g.get('expr'))}</code>",
                _state(g.get("state")),
                _e(gate_quantity(g, g.get("value"))),
                _e(ci),
                _e(_fmt(g.get("n"))),
                _e(g.get("reason")),
            ]
        )
    return _table(["Gate", "Expression", "State", "Value", "CI", "n", "Reason"], rows, {3, 4, 5})


def _gated_metrics(report: Mapping[str, Any]) -> dict[str, list[str]]:
    """Metric -> names of the gates reading it, in gate order (each gate's ``metrics``, as
    its parser gave them)."""
    out: dict[str, list[str]] = {}
    for g in report.get("gates") or []:
        metrics = g.get("metrics")
        for m in sorted({str(m) for m in metrics} if isinstance(metrics, list) else ()):
            out.setdefault(m, []).append(str(g.get("name")))
    return out


def _distributions(data: RunData) -> list[str]:

    source = source_from_run(data)
    variants = source.session_variants()
    groups = source.session_groups()[:MAX_GROUPS_PER_CHART]
    names = [m for m in source.metric_names if source.session_values(m, None)]
    names.sort(key=lambda m: (m not in SESSION_METRICS, m))
    charts = []
    for metric in names[:MAX_METRIC_CHARTS]:
        rows = []
        for g in groups:
            per = {v: source.session_values(metric, v, group=g) for v in variants}
            if any(per.values()):
                rows.append((g.label, per))
        if rows:
            charts.append(_distribution_chart(metric, rows, variants))
    if len(names) > MAX_METRIC_CHARTS:
        charts.append(
            f'<p class="note">{len(names) - MAX_METRIC_CHARTS} more metrics without a chart '
            "(see the metrics table in report.md).</p>"
        )
    return charts


def _time_series(data: RunData, report: Mapping[str, Any]) -> list[str]:
    """One chart per gated metric (at most ``MAX_METRIC_CHARTS``), one series per variant
    (machine-wide samples as "machine"), warm-up sessions left out.

    The recording is read batch by batch (``RunData.batches``) into ``BucketedSeries``: the
    memory this takes is ``TIME_BUCKETS`` numbers per series, whatever the run's length.
    """
    gated = _gated_metrics(report)
    if not gated or not data.num_samples or data.t_min is None or data.t_max is None:
        return []
    timing = report.get("timing") or {}
    changes = list((report.get("gate_changes") or {}).get("changes") or [])
    variant_of = {
        int(s["id"]): str(s.get("variant", ""))
        for s in data.sessions
        if isinstance(s.get("id"), int) and not s.get("warmup")
    }
    warm_ids = [
        int(s["id"]) for s in data.sessions if s.get("warmup") and isinstance(s.get("id"), int)
    ]
    warm = pa.array(sorted(warm_ids), pa.int32())
    wanted = list(gated)[:MAX_METRIC_CHARTS]
    wanted_set = pa.array(wanted, pa.string())
    lo, hi = float(data.t_min), float(data.t_max)
    series: dict[str, dict[str, BucketedSeries]] = {m: {} for m in wanted}
    for batch in data.batches():
        part = batch.filter(pc.is_in(batch.column("metric"), value_set=wanted_set))
        if len(warm) and part.num_rows:
            part = part.filter(pc.invert(pc.is_in(part.column("session"), value_set=warm)))
        if not part.num_rows:
            continue
        metric_col = part.column("metric").to_numpy(zero_copy_only=False).astype(str)
        t = part.column("t").to_numpy()
        v = part.column("value").to_numpy()
        sid = part.column("session").to_numpy().astype(np.int64)
        for metric in np.unique(metric_col).tolist():
            in_metric = metric_col == metric
            ms, mt, mv = sid[in_metric], t[in_metric], v[in_metric]
            uniq = np.unique(ms)
            labels = np.array([variant_of.get(int(x), "machine") for x in uniq])
            for label in dict.fromkeys(labels.tolist()):
                mask = np.isin(ms, uniq[labels == label])
                acc = series[metric].setdefault(label, BucketedSeries(lo, hi))
                acc.add(mt[mask], mv[mask])
    t0 = timing.get("started_t")
    t0 = float(t0) if isinstance(t0, int | float) else lo
    charts = []
    for metric in wanted:
        if not series[metric]:
            continue
        mine = [c for c in changes if c.get("gate") in gated[metric]]
        charts.append(_time_chart(metric, t0, series[metric], mine))
    return charts


def _q(value: Any, row: Mapping[str, Any]) -> str:
    """A median in its metric's unit (1.5 ms, 10.3 MiB), "–" when missing."""
    from perfmon.core.units import format_metric

    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "–"
    return format_metric(float(value), str(row.get("metric")))


def _comparison(report: Mapping[str, Any]) -> str:
    from perfmon.engine.report_md import comparison_beside_tables

    section = report.get("comparison") or {}
    rows = section.get("rows") or []
    if not rows:
        return "<p>Nothing to compare: the run has one variant.</p>"
    # The result tables show most comparisons as pivots: only the rest in this shape.
    rows, shown = comparison_beside_tables(report)
    note = (
        f"<p>The result tables below show {shown:,} of the run's {shown + len(rows):,} "
        "comparison rows; report.json keeps every row under <code>comparison</code>, and "
        "<code>perfmon compare</code> prints them.</p>"
        if shown
        else ""
    )
    if not rows:
        return note
    # Metrics with one value in every session of both sides: one line, not 1x [1, 1] rows.
    folded = _constant_line(rows)
    rows = [r for r in rows if not r.get("constant")]
    options = section.get("options") or {}
    level = options.get("confidence")
    level_text = f"{level:.0%} " if isinstance(level, int | float) else ""
    out_rows = []
    for r in rows:
        speedup = (
            "–"
            if r.get("speedup") is None
            else f"{_fmt(r['speedup'])}x [{_fmt(r.get('speedup_low'))}, "
            f"{_fmt(r.get('speedup_high'))}]"
        )
        change = "–" if r.get("change") is None else f"{r['change']:+.1%}"
        out_rows.append(
            [
                _e(r.get("group")),
                _e(r.get("metric")),
                _e(r.get("b_label")),
                _e(f"{_q(r.get('a_median'), r)} (n={r.get('a_n')}, out={r.get('a_outliers')})"),
                _e(f"{_q(r.get('b_median'), r)} (n={r.get('b_n')}, out={r.get('b_outliers')})"),
                _e(speedup),
                _e(change),
                _e(_fmt(r.get("p_value"))),
            ]
        )
    how = (
        "the Hodges-Lehmann ratio with its exact rank (Moses) interval"
        if options.get("interval", "bootstrap") == "rank"
        else "median(baseline) / median(variant) with its bootstrap interval "
        f"({_e(options.get('method'))}, {_e(options.get('resamples'))} resamples)"
    )
    head = note + (
        f"<p>Each variant against <code>{_e(section.get('baseline'))}</code>; speedup = "
        f"{how}, in the metric's direction; p: {_e(options.get('test'))}.</p>"
    )
    return head + _table(
        ["Group", "Metric", "Variant", "Baseline median", "Median", f"Speedup {level_text}CI",
         "Change", "p"],
        out_rows,
        {3, 4, 5, 6, 7},
    ) + (f"<p>{_e(folded)}</p>" if folded else "")  # fmt: skip


def _constant_line(rows: Sequence[Mapping[str, Any]]) -> str:
    """``perfmon.engine.compare.constant_line`` of the report's comparison rows."""
    from perfmon.engine.compare import ComparisonRow, constant_line

    try:
        return constant_line([ComparisonRow(**r) for r in rows if r.get("constant")])
    except TypeError:  # rows of another version: nothing folded
        return ""


def _flames(run_dir: Path) -> list[str]:

    folder = Path(run_dir) / PROFILES_DIR
    try:
        files = sorted(folder.glob("variant-*.svg")) + sorted(folder.glob("diff-*.svg"))
    except OSError:
        return []
    out = []
    for path in files:
        try:
            size = path.stat().st_size
            if size > FLAME_MAX_BYTES:
                out.append(
                    f'<p><a href="{_e(PROFILES_DIR)}/{_e(path.name)}">{_e(path.name)}</a> '
                    f"({size:,} bytes, not embedded)</p>"
                )
                continue
            data = base64.b64encode(path.read_bytes()).decode("ascii")
        except OSError:
            continue
        out.append(
            f"<h3>{_e(path.stem)}</h3>"
            f'<img class="chart" alt="{_e(path.stem)}" src="data:image/svg+xml;base64,{data}">'
        )
    return out


def _section(build: Any, *args: Any) -> list[str]:
    """A chart section, or one line saying why it could not be drawn: damaged rows that the
    readers let through cost the page one section, never the whole report."""
    try:
        result: list[str] = build(*args)
        return result
    except Exception as exc:
        log.exception("report.html: %s failed", getattr(build, "__name__", build))
        return [
            f'<p class="note">Could not draw this section: {_e(type(exc).__name__)}: {_e(exc)}</p>'
        ]


def render_html(report: Mapping[str, Any], data: RunData) -> str:
    """Render report.html.

    Args:
        report: ``build_report``'s dict for this run.
        data: the run as ``perfmon.engine.recorder.read_run`` returns it (sessions and samples
            for the charts).

    Returns:
        The HTML document: self-contained, no script, no external resource.

    Raises:
        ImportError: when matplotlib is not installed.
    """
    import matplotlib  # noqa: F401  (fail early, before any section, when it is missing)

    verdict = str(report.get("verdict") or "pending")
    title = report.get("campaign") or report.get("run_id")
    timing = report.get("timing") or {}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">",
        f"<title>perfmon report: {_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>perfmon report: {_e(title)}</h1>",
        f'<p class="verdict" style="background:{_STATE_COLOUR.get(verdict, "#57606a")}">'
        f"Verdict: {_e(report.get('verdict_line'))}</p>",
        f"<p>Run <code>{_e(report.get('run_id'))}</code>, started {_e(timing.get('started_utc'))}"
        f", ended {_e(timing.get('ended_utc'))}.</p>",
    ]
    machine = report.get("machine")
    if isinstance(machine, Mapping) and machine.get("line"):
        parts.append(f"<p>{_e(machine['line'])}</p>")
    parts.append(
        '<p class="note">'
        + " · ".join(
            f'<a href="#{i}">{t}</a>'
            for i, t in (
                ("gates", "Gates"),
                ("sessions", "Sessions"),
                ("distributions", "Distributions"),
                ("time", "Over time"),
                ("comparison", "Comparison"),
                ("tables", "Result tables"),
                ("flames", "Flame graphs"),
                ("recording", "Recording"),
            )
        )
        + "</p>"
    )

    parts.append('<h2 id="gates">Gates</h2>')
    parts.append(_gate_table(report.get("gates") or []))
    per_host = report.get("gate_groups") == "set and host"  # issue 16: "golden @ gpu-a"
    for set_name, gates in (report.get("gates_by_set") or {}).items():
        name, _, host = str(set_name).partition(" @ ") if per_host else (set_name, "", "")
        where = f" on host {_e(host)}" if host else ""
        parts.append(f"<h3>Set {_e(name)}{where}</h3>")
        parts.append(_gate_table(gates))
    changes = list((report.get("gate_changes") or {}).get("changes") or [])
    parts.append("<h3>Gate changes</h3>")
    if changes:
        shown = changes[-MAX_TABLE_ROWS:]
        parts.append(
            _table(
                ["Since start (s)", "Gate", "Change", "Reason"],
                [
                    [
                        _e(_fmt(c.get("since_start_s"))),
                        _e(c.get("gate")),
                        f"{_state(c.get('old'))} → {_state(c.get('new'))}",
                        _e(c.get("reason")),
                    ]
                    for c in shown
                ],
                {0},
            )
        )
    else:
        parts.append("<p>No gate changed state while the run was watched live.</p>")

    sessions = report.get("sessions") or {}
    parts.append('<h2 id="sessions">Sessions</h2>')
    counts = ", ".join(f"{v} {k}" for k, v in (sessions.get("by_status") or {}).items())
    parts.append(
        f"<p>{_e(sessions.get('total', 0))} sessions ({_e(counts or 'none')}), "
        f"{_e(sessions.get('warmup', 0))} warm-ups.</p>"
    )
    failed = sessions.get("failed") or []
    if failed:
        parts.append(
            _table(
                ["Session", "Workload", "Variant", "Status", "Error"],
                [
                    [
                        _e(f.get("id")),
                        _e(f.get("workload")),
                        _e(f.get("variant")),
                        _e(f.get("status_text")),
                        _e(f.get("error")),
                    ]
                    for f in failed
                ],
                {0},
            )
        )

    parts.append('<h2 id="distributions">Distributions per variant</h2>')
    dist = _section(_distributions, data)
    parts += dist or ["<p>No measured session has a value to show.</p>"]

    parts.append('<h2 id="time">Gated metrics over time</h2>')
    series = _section(_time_series, data, report)
    parts += series or ["<p>No gated metric has samples.</p>"]

    parts.append('<h2 id="comparison">Comparison</h2>')
    parts.append(_comparison(report))

    parts.append('<h2 id="tables">Result tables</h2>')
    parts.append(_result_tables(report))

    flames = _flames(data.run_dir)
    parts.append('<h2 id="flames">Flame graphs</h2>')
    parts += flames or ["<p>No profile was recorded.</p>"]

    rec = report.get("recording") or {}
    parts.append('<h2 id="recording">Recording</h2><ul>')
    parts.append(f"<li>{_e(_fmt(rec.get('samples')))} samples</li>")
    for p in rec.get("problems") or []:
        parts.append(f"<li>Problem: {_e(p)}</li>")
    if not rec.get("problems"):
        parts.append("<li>No damage found.</li>")
    parts.append("</ul><h2>Method</h2><ul>")
    for k, v in (report.get("method") or {}).items():
        parts.append(f"<li>{_e(k)}: {_e(v)}</li>")
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"
