"""Comparisons from recorded runs: variants within a run (the report's comparison section) and
two runs against each other (``perfmon compare RUN_A RUN_B``).

Both use one value per measured session (``ArrayMetricSource.session_values``: a ``value``
metric's value, a counter's sum, other kinds' mean; warm-ups and sessions that did not finish
``ok`` left out) and ``perfmon.core.stats.compare``: medians, n, the ratio of medians with its
bootstrap confidence interval, the p-value of the configured test, and outlier counts
(modified z-score, Iglewicz & Hoaglin). Nothing is pooled across workloads, matrix values or
sets: each (set, workload, matrix values) group is compared on its own.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfmon.core.model import metric_dimension
from perfmon.core.stats import MIN_SESSIONS, StatsOptions, compare, summarize
from perfmon.core.units import format_quantity

if TYPE_CHECKING:
    from perfmon.core.datasource import ArrayMetricSource
    from perfmon.engine.recorder import RunData

__all__ = [
    "ComparisonRow",
    "compare_runs",
    "comparison_section",
    "render_comparison_md",
    "render_rows_markdown",
    "render_rows_text",
    "source_from_run",
]

SESSION_METRICS = ("session_seconds", "session_cpu_seconds", "session_peak_rss_bytes")
"""Metrics perfmon records once per session; listed first in comparisons."""


def source_from_run(data: RunData) -> ArrayMetricSource:
    """An exact source of one value per measured session and metric, for comparisons.

    Read batch by batch and folded per (metric, session)
    (``perfmon.engine.recorded.session_source``), so memory grows with sessions times
    metrics, not with samples. Only its per-session methods (``session_values``,
    ``session_groups``, ``session_variants``, ``metric_names``) are meaningful.

    Args:
        data: the run as ``perfmon.engine.recorder.read_run`` returns it.
    """
    from perfmon.engine.recorded import session_source

    return session_source(data)


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    """One metric of one group: A (baseline, or run A) against B (candidate, or run B).

    Attributes:
        group: the group's label, e.g. ``"golden tgat events=128"``.
        metric: metric name.
        a_label / b_label: what is compared (variant names, or ``"A: variant"`` for runs).
        a_n / b_n: sessions; a_median / b_median: medians (NaN when none).
        a_mad / b_mad: raw MADs; a_outliers / b_outliers: modified-z outlier counts.
        speedup / speedup_low / speedup_high: ``median(A) / median(B)`` and its CI
            (None when either side has fewer than ``MIN_SESSIONS`` sessions).
        change: ``median(B) / median(A) - 1`` (None likewise).
        p_value: the configured test's p-value (None likewise).
    """

    group: str
    metric: str
    a_label: str
    b_label: str
    a_n: int
    b_n: int
    a_median: float
    b_median: float
    a_mad: float
    b_mad: float
    a_outliers: int
    b_outliers: int
    speedup: float | None = None
    speedup_low: float | None = None
    speedup_high: float | None = None
    change: float | None = None
    p_value: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The row as JSON-ready data (NaN becomes null)."""

        def clean(x: Any) -> Any:
            return None if isinstance(x, float) and not math.isfinite(x) else x

        return {f.name: clean(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _row(
    group: str,
    metric: str,
    a_label: str,
    b_label: str,
    a: Sequence[float],
    b: Sequence[float],
    options: StatsOptions,
) -> ComparisonRow:
    sa, sb = summarize(a), summarize(b)
    base = ComparisonRow(
        group, metric, a_label, b_label, sa.n, sb.n, sa.median, sb.median, sa.mad, sb.mad,
        sa.outliers, sb.outliers,
    )  # fmt: skip
    if sa.n < MIN_SESSIONS or sb.n < MIN_SESSIONS:
        return base
    try:
        c = compare(a, b, options)
    except ValueError:  # zero medians (e.g. a parity diff of 0): no ratio, still summarised
        return base
    return dataclasses.replace(
        base,
        speedup=c.speedup,
        speedup_low=c.speedup_low,
        speedup_high=c.speedup_high,
        change=c.regression,
        p_value=c.p_value,
    )


def _metrics(source: ArrayMetricSource) -> list[str]:
    names = [m for m in source.metric_names if source.session_values(m, None)]
    return sorted(names, key=lambda m: (m not in SESSION_METRICS, m))


def comparison_section(data: RunData, options: StatsOptions | None = None) -> dict[str, Any]:
    """The report's comparison section: every variant against the first, per group and metric.

    Args:
        data: the recorded run.
        options: statistical options (default: those stored in the manifest).

    Returns:
        ``{"baseline": name, "options": {...}, "rows": [ComparisonRow.to_json(), ...]}``;
        no rows when the run has a single variant.
    """
    from perfmon.engine.recorded import stored_stats_options

    if options is None:
        options, _ = stored_stats_options(data.manifest)  # a damaged manifest: the defaults
    source = source_from_run(data)
    variants = source.session_variants()
    rows: list[ComparisonRow] = []
    if len(variants) >= 2:
        base = variants[0]
        metrics = _metrics(source)
        for group in source.session_groups():
            for metric in metrics:
                a = source.session_values(metric, base, group=group)
                for other in variants[1:]:
                    b = source.session_values(metric, other, group=group)
                    if a or b:
                        rows.append(_row(group.label, metric, base, other, a, b, options))
    return {
        "baseline": variants[0] if variants else None,
        "options": _options_json(options),
        "rows": [r.to_json() for r in rows],
    }


def _options_json(options: StatsOptions) -> dict[str, Any]:
    return {
        "confidence": options.confidence,
        "test": options.test,
        "resamples": options.resamples,
        "seed": options.seed,
        "method": options.method,
    }


def compare_runs(
    run_a: Path, run_b: Path, options: StatsOptions | None = None
) -> tuple[list[ComparisonRow], dict[str, Any]]:
    """Compare two recorded runs metric by metric, per (workload, matrix values, variant).

    Sessions of every set are taken together (sets are schedules, not configurations).

    Args:
        run_a: the reference run directory (A).
        run_b: the run compared with it (B); ``speedup`` > 1 means B is faster.
        options: statistical options (default: those stored in run A's manifest).

    Returns:
        ``(rows, meta)``: one row per metric and group found in both runs; ``meta`` names the
        runs and options, and under ``damage`` lists each run's damaged files (``run_a``,
        ``run_b``: problem sentences) and whether data beyond a crash's torn tail was lost
        (``data_lost``). Damaged batches are skipped, never raised.

    Raises:
        FileNotFoundError: if a directory is not a run directory.
    """
    from perfmon.core.stats import SessionGroup
    from perfmon.engine.recorded import stored_stats_options
    from perfmon.engine.recorder import read_run

    da, db = read_run(run_a), read_run(run_b)
    if options is None:
        options, _ = stored_stats_options(da.manifest)
    sa, sb = source_from_run(da), source_from_run(db)

    def keys(source: ArrayMetricSource) -> list[tuple[str, tuple[tuple[str, str], ...], str]]:
        out = []
        for g in source.session_groups():
            for v in source.session_variants():
                out.append((g.workload, g.params, v))
        return list(dict.fromkeys(out))

    def values(source: ArrayMetricSource, metric: str, key: Any) -> list[float]:
        workload, params, variant = key
        out: list[float] = []
        for g in source.session_groups():
            if g.workload == workload and g.params == params:
                out += source.session_values(metric, variant, group=g)
        return out

    kb = set(keys(sb))
    common = [k for k in keys(sa) if k in kb]
    metrics = [m for m in _metrics(sa) if m in set(_metrics(sb))]
    rows: list[ComparisonRow] = []
    for key in common:
        workload, params, variant = key
        label = SessionGroup(variant, workload, params).label
        for metric in metrics:
            a, b = values(sa, metric, key), values(sb, metric, key)
            if a and b:
                rows.append(_row(label, metric, "A", "B", a, b, options))
    meta = {
        "run_a": str(run_a),
        "run_b": str(run_b),
        "options": _options_json(options),
        "damage": {
            "run_a": list(da.problems),
            "run_b": list(db.problems),
            "data_lost": bool(da.damage or db.damage),
        },
    }
    return rows, meta


# -- rendering ------------------------------------------------------------------------------


def _q(value: float | None, metric: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return format_quantity(value, metric_dimension(metric))


def _cells(r: ComparisonRow) -> list[str]:
    if r.speedup is None:
        speedup = change = p = "-"
    else:
        speedup = f"{r.speedup:.3g}x [{r.speedup_low:.3g}, {r.speedup_high:.3g}]"
        change = f"{r.change:+.1%}"
        p = "-" if r.p_value is None or math.isnan(r.p_value) else f"{r.p_value:.2g}"
    named = r.b_label not in ("A", "B")
    a = f"{r.a_label}: " if named else ""
    b = f"{r.b_label}: " if named else ""
    return [
        r.group,
        r.metric,
        f"{a}{_q(r.a_median, r.metric)} (n={r.a_n}, out={r.a_outliers})",
        f"{b}{_q(r.b_median, r.metric)} (n={r.b_n}, out={r.b_outliers})",
        speedup,
        change,
        p,
    ]


def _header(a: str, b: str, options: dict[str, Any]) -> list[str]:
    level = f"{options['confidence']:.0%}"
    return ["group", "metric", f"{a} median", f"{b} median", f"speedup {level} CI", "change", "p"]


def render_rows_markdown(
    rows: Sequence[ComparisonRow], options: dict[str, Any], a: str = "A", b: str = "B"
) -> list[str]:
    """Rows as a Markdown table (lines), or one line saying there is nothing to compare."""
    if not rows:
        return ["Nothing to compare: no metric has sessions on both sides.", ""]
    header = _header(a, b, options)
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |")
    return [*out, ""]


def render_rows_text(
    rows: Sequence[ComparisonRow], options: dict[str, Any], a: str = "A", b: str = "B"
) -> str:
    """Rows as an aligned plain-text table for the terminal."""
    if not rows:
        return "Nothing to compare: no metric has sessions on both sides.\n"
    table = [_header(a, b, options), *(_cells(r) for r in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _method_line(options: dict[str, Any]) -> str:
    test = {"mannwhitney": "Mann-Whitney U", "welch": "Welch's t-test"}.get(
        options["test"], options["test"]
    )
    return (
        f"One value per measured session. speedup = median(A) / median(B) (> 1: B is faster), "
        f"change = median(B) / median(A) - 1; {options['confidence']:.0%} bootstrap CI "
        f"({options['method']}, {options['resamples']} resamples, seed {options['seed']}); "
        f"p: two-sided {test}; out: outliers by modified z-score > 3.5 (counted, kept). "
        f"Ratios need >= {MIN_SESSIONS} sessions per side."
    )


def render_comparison_md(section: dict[str, Any]) -> list[str]:
    """The report's ``## Comparison`` section as Markdown lines (empty with one variant)."""
    if not section or not section.get("rows"):
        return []
    rows = [ComparisonRow(**r) for r in section["rows"]]
    baseline = section.get("baseline") or "A"
    out = ["## Comparison", "", f"Each variant against `{baseline}`, per set, workload and "]
    out[-1] += "matrix value. " + _method_line(section["options"])
    out.append("")
    out += render_rows_markdown(rows, section["options"], a="baseline", b="variant")
    return out


def to_json(rows: Sequence[ComparisonRow], meta: dict[str, Any]) -> str:
    """Rows and meta as a JSON document."""
    return json.dumps({**meta, "rows": [r.to_json() for r in rows]}, indent=2)
