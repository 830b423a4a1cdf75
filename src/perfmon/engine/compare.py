"""Comparisons from recorded runs: variants within a run (the report's comparison section) and
two runs against each other (``perfmon compare RUN_A RUN_B``).

Both use one value per measured session (``ArrayMetricSource.session_values``: a ``value``
metric's value, a counter's sum, other kinds' mean; warm-ups and sessions that did not finish
``ok`` left out) and ``perfmon.core.stats.compare``: medians, n, the ratio (by default the
Hodges-Lehmann ratio with its exact rank interval, which keeps its level at every n), the
p-value of the configured test with its method, and outlier counts (modified z-score,
Iglewicz & Hoaglin). Below ``min_sessions`` per side, or where the interval cannot reach the
asked level at the n there is (3 vs 3 at 95%), a row says so instead of showing a ratio.
Nothing is pooled across workloads, matrix values or sets: each (set, workload, matrix values)
group is compared on its own. Nor across hosts (issue 16): within a run judged per host
(``perfmon.engine.recorded.judged_per_host``) each host's sessions are compared among
themselves (``"golden @ gpu-a kernel"``); two runs, or a run and its ``--baseline-run``, whose
sessions ran under different host fingerprints are not compared at all unless asked
(``MixedHostsRefused``): a ratio between two different machines measures the machines.
"""

from __future__ import annotations

import dataclasses
import dataclasses as dc
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from perfmon.core.gates import VariantComparison, describe_change, fill_variants, parse_gate
from perfmon.core.model import GateResult, GateState
from perfmon.core.stats import (
    SessionGroup,
    StatsOptions,
    compare,
    format_level,
    format_p,
    summarize,
)
from perfmon.core.units import HIGHER, format_metric, metric_direction
from perfmon.engine.manifest import manifest_directions, stats_options
from perfmon.engine.recorded import (
    HOST_SEPARATOR,
    RecordedGates,
    allows_mixed_hosts,
    evaluate_recorded,
    host_fingerprints,
    judged_per_host,
    parse_stored_gate,
    session_host,
    session_source,
    set_spans,
    stored_stats_options,
    worst_of_groups,
)
from perfmon.engine.recorder import read_run

if TYPE_CHECKING:
    from perfmon.core.datasource import ArrayMetricSource
    from perfmon.engine.recorder import RunData

__all__ = [
    "ComparisonRow",
    "FailIfResult",
    "MixedHostsRefused",
    "apply_baseline_run",
    "combine_runs",
    "compare_runs",
    "comparison_section",
    "cross_run_refusal",
    "judge_fail_if",
    "omit_variants",
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

    return session_source(data)


class MixedHostsRefused(ValueError):
    """Two recorded runs' sessions ran under different host fingerprints and nothing allowed
    comparing them (``--allow-mixed-hosts``, or ``[executor] allow_mixed_hosts = true`` in
    either run's campaign). The message names the fingerprints and the way to allow it."""


def _fingerprints(data: RunData) -> list[str]:
    return list(
        dict.fromkeys(fp for fps in host_fingerprints(data.sessions).values() for fp in fps)
    )


def cross_run_refusal(base: RunData, new: RunData, *, allow: bool = False) -> str | None:
    """Why two runs' sessions may not be compared, or None when they may.

    They may not when both recorded host fingerprints (sessions on a Ray cluster) and, taken
    together, more than one, unless ``allow`` or either run's campaign opted in
    (``allows_mixed_hosts``). Runs that recorded none (the local executor) are not judged
    here: their machines are in each manifest's provenance.

    Args:
        base / new: the runs (``read_run``).
        allow: the user allowed it (``perfmon compare --allow-mixed-hosts``).
    """
    fa, fb = _fingerprints(base), _fingerprints(new)
    prints = list(dict.fromkeys(fa + fb))
    if not fa or not fb or len(prints) <= 1:
        return None
    if allow or allows_mixed_hosts(base.manifest) or allows_mixed_hosts(new.manifest):
        return None
    return (
        f"refused: the runs' sessions ran under {len(prints)} different host fingerprints "
        f"(A: {'; '.join(fa)} | B: {'; '.join(fb)}); a ratio between different machines "
        "measures the machines. Pass --allow-mixed-hosts (or record with [executor] "
        "allow_mixed_hosts = true) to compare them anyway"
    )


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    """One metric of one group: A (baseline, or run A) against B (candidate, or run B).

    Attributes:
        group: the group's label, e.g. ``"golden tgat events=128"``.
        metric: metric name.
        a_label / b_label: what is compared (variant names, or ``"A: variant"`` for runs).
        a_n / b_n: sessions; a_median / b_median: medians (NaN when none).
        a_mad / b_mad: raw MADs; a_outliers / b_outliers: modified-z outlier counts.
        speedup / speedup_low / speedup_high: the ratio A / B and its CI (``estimator``
            says which ratio; None when either side has fewer than ``min_sessions`` sessions
            or the interval cannot reach the asked level: ``note`` says why).
        change: ``1 / speedup - 1``, the relative change of B (None likewise).
        p_value: the configured test's p-value (None likewise).
        estimator: ``"HL ratio"`` (Hodges-Lehmann) or ``"median ratio"`` (bootstrap).
        median_ratio: ``median(A) / median(B)``, descriptive (None without a comparison).
        interval_method / confidence: how the CI was made and its actual level.
        p_method: how the p-value was computed.
        note: why there is no ratio, e.g. ``"n too small: 3/3, min_sessions 5"``.
        direction: ``"lower"`` or ``"higher"`` is better for this metric, or None when unknown
            (``perfmon.core.units.metric_direction`` with the campaign's ``[metric.X]``).
        judgement: B's change in the metric's terms, e.g. ``"1.23x slower (+23.0%)"``,
            ``"-18.5%, worse"`` or ``"+12.3% (direction unknown)"`` (empty without a ratio).
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
    estimator: str = ""
    median_ratio: float | None = None
    interval_method: str = ""
    confidence: float | None = None
    p_method: str = ""
    note: str = ""
    direction: str | None = None
    judgement: str = ""
    constant: bool = False

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
    directions: Mapping[str, str] | None = None,
) -> ComparisonRow:
    sa, sb = summarize(a), summarize(b)
    base = ComparisonRow(
        group, metric, a_label, b_label, sa.n, sb.n, sa.median, sb.median, sa.mad, sb.mad,
        sa.outliers, sb.outliers, direction=metric_direction(metric, directions),
        constant=bool(a) and bool(b) and min(a) == max(a) == min(b) == max(b),
    )  # fmt: skip
    if sa.n < options.min_sessions or sb.n < options.min_sessions:
        return dataclasses.replace(
            base, note=f"n too small: {sa.n}/{sb.n}, min_sessions {options.min_sessions}"
        )
    try:
        c = compare(a, b, options)
    except ValueError as exc:  # zero values (a parity diff of 0), or an unreachable level
        return dataclasses.replace(base, note=str(exc))
    return dataclasses.replace(
        base,
        speedup=c.speedup,
        speedup_low=c.speedup_low,
        speedup_high=c.speedup_high,
        change=c.regression,
        p_value=c.p_value,
        estimator=c.estimator,
        median_ratio=c.median_ratio,
        interval_method=c.interval_method,
        confidence=c.confidence,
        p_method=c.p_method,
        judgement=describe_change(c, base.direction, metric),
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

    if options is None:
        options, _ = stored_stats_options(data.manifest)  # a damaged manifest: the defaults
    source = source_from_run(data)
    directions = manifest_directions(data.manifest)
    variants = source.session_variants()
    rows: list[ComparisonRow] = []
    refused: list[str] = []
    # Issue 16: a run judged per host compares each host's sessions among themselves.
    if judged_per_host(data.sessions, allows_mixed_hosts(data.manifest)):
        parts = []
        for host, prints in host_fingerprints(data.sessions).items():
            if len(prints) > 1:
                refused.append(
                    f"host {host}: refused, its sessions ran under {len(prints)} host "
                    f"fingerprints ({'; '.join(prints)})"
                )
                continue
            mine = [s for s in data.sessions if session_host(s) == host]
            parts.append((f"{HOST_SEPARATOR}{host}", source.with_sessions(mine)))
    else:
        parts = [("", source)]
    if len(variants) >= 2:
        base = variants[0]
        metrics = _metrics(source)
        for at, part in parts:
            for group in part.session_groups():
                label = dc.replace(group, set_name=f"{group.set_name}{at}").label
                for metric in metrics:
                    a = part.session_values(metric, base, group=group)
                    for other in variants[1:]:
                        b = part.session_values(metric, other, group=group)
                        if a or b:
                            rows.append(_row(label, metric, base, other, a, b, options, directions))
    section: dict[str, Any] = {
        "baseline": variants[0] if variants else None,
        "options": _options_json(options),
        "rows": [r.to_json() for r in rows],
    }
    if refused:
        section["refused"] = refused
    return section


def _options_json(options: StatsOptions) -> dict[str, Any]:
    return {
        "confidence": options.confidence,
        "test": options.test,
        "resamples": options.resamples,
        "seed": options.seed,
        "method": options.method,
        "interval": options.interval,
        "min_sessions": options.min_sessions,
    }


def compare_runs(
    run_a: Path,
    run_b: Path,
    options: StatsOptions | None = None,
    *,
    allow_mixed_hosts: bool = False,
) -> tuple[list[ComparisonRow], dict[str, Any]]:
    """Compare two recorded runs metric by metric, per (workload, matrix values, variant).

    Sessions of every set are taken together (sets are schedules, not configurations).

    Args:
        run_a: the reference run directory (A).
        run_b: the run compared with it (B); ``speedup`` > 1 means B is faster.
        options: statistical options (default: those stored in run A's manifest).
        allow_mixed_hosts: compare runs recorded under different host fingerprints.

    Returns:
        ``(rows, meta)``: one row per metric and group found in both runs; ``meta`` names the
        runs and options, and under ``damage`` lists each run's damaged files (``run_a``,
        ``run_b``: problem sentences) and whether data beyond a crash's torn tail was lost
        (``data_lost``). Damaged batches are skipped, never raised.

    Raises:
        FileNotFoundError: if a directory is not a run directory.
        MixedHostsRefused: the runs ran under different host fingerprints
            (``cross_run_refusal``) and ``allow_mixed_hosts`` is False.
    """

    da, db = read_run(run_a), read_run(run_b)
    refusal = cross_run_refusal(da, db, allow=allow_mixed_hosts)
    if refusal is not None:
        raise MixedHostsRefused(refusal)
    directions = {**manifest_directions(db.manifest), **manifest_directions(da.manifest)}
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
                rows.append(_row(label, metric, "A", "B", a, b, options, directions))
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
    return format_metric(value, metric)


def constant_line(rows: Sequence[ComparisonRow]) -> str:
    """The rows of metrics that had one value in every session of both sides, as one line
    (issue 14): ``"constant: golden tgat: a = 1, b = 4 KiB"``; "" when there are none. Such
    rows have no spread to compare (their ratio would read ``1x [1, 1]``)."""
    by_group: dict[str, list[str]] = {}
    for r in rows:
        if r.constant:
            by_group.setdefault(r.group, []).append(f"{r.metric} = {_q(r.a_median, r.metric)}")
    if not by_group:
        return ""
    return "constant: " + "; ".join(f"{g}: {', '.join(ms)}" for g, ms in by_group.items())


def _cells(r: ComparisonRow, options: dict[str, Any]) -> list[str]:
    if r.speedup is None:
        speedup = r.note or "-"
        change = p = method = "-"
    else:
        assert r.speedup_low is not None and r.speedup_high is not None
        if r.direction == HIGHER:  # how many times better B is: B / A for a rate
            speedup = f"{1 / r.speedup:.3g}x [{1 / r.speedup_high:.3g}, {1 / r.speedup_low:.3g}]"
        else:
            speedup = f"{r.speedup:.3g}x [{r.speedup_low:.3g}, {r.speedup_high:.3g}]"
            if r.direction is None:
                speedup = f"A/B {speedup}"
        if r.confidence is not None:
            level = format_level(options["confidence"], r.confidence)
            if level != f"{options['confidence']:.0%}":
                speedup += f" {level}"
        change = r.judgement or f"{r.change:+.1%}"
        p = "-" if r.p_value is None or math.isnan(r.p_value) else format_p(r.p_value)[4:]
        p = p.replace("< ", "<")
        method = "; ".join(x for x in (r.interval_method, r.p_method) if x) or "-"
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
        method,
    ]


def _header(a: str, b: str, options: dict[str, Any]) -> list[str]:
    level = f"{options['confidence']:.0%}"
    return [
        "group",
        "metric",
        f"{a} median",
        f"{b} median",
        f"speedup {level} CI",
        "change",
        "p",
        "method",
    ]


def render_rows_markdown(
    rows: Sequence[ComparisonRow], options: dict[str, Any], a: str = "A", b: str = "B"
) -> list[str]:
    """Rows as a Markdown table (lines), or one line saying there is nothing to compare."""
    if not rows:
        return ["Nothing to compare: no metric has sessions on both sides.", ""]
    header = _header(a, b, options)
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        if r.constant:
            continue  # folded into one line below the table
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(r, options)) + " |")
    folded = constant_line(rows)
    if folded:
        out += ["", folded]
    return [*out, ""]


def render_rows_text(
    rows: Sequence[ComparisonRow], options: dict[str, Any], a: str = "A", b: str = "B"
) -> str:
    """Rows as an aligned plain-text table for the terminal."""
    if not rows:
        return "Nothing to compare: no metric has sessions on both sides.\n"
    table = [_header(a, b, options), *(_cells(r, options) for r in rows if not r.constant)]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    folded = constant_line(rows)
    if folded:
        lines.append(folded)
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _method_line(options: dict[str, Any]) -> str:
    test = {"mannwhitney": "Mann-Whitney U", "welch": "Welch's t-test (approximate)"}.get(
        options["test"], options["test"]
    )
    level = f"{options['confidence']:.0%}"
    need = options.get("min_sessions", 5)
    if options.get("interval", "bootstrap") == "rank":
        how = (
            "speedup = the Hodges-Lehmann ratio, the median of the ratios a_i / b_j, turned "
            "to the metric's direction (> 1: B is better: A / B where lower is better, B / A "
            "for rates; 'A/B' where the direction is unknown), change = B's relative change, "
            "judged in that direction; "
            f"{level} exact rank CI (Moses: order statistics of the pairwise log ratios, k from "
            "the exact distribution of U; normal approximation of U at large n), whose actual "
            "level is shown where it is notably above the asked one"
        )
    else:
        how = (
            "speedup = median(A) / median(B) turned to the metric's direction (> 1: B is "
            "better), change = median(B) / median(A)"
            f" - 1 judged in that direction; {level} bootstrap CI ({options['method']}, "
            f"{options['resamples']} "
            f"resamples, seed {options['seed']}; approximate at small n)"
        )
    return (
        f"One value per measured session. {how}; p: two-sided {test}, exact, by permutation "
        "with ties, or by normal approximation at large n (the method column says which); "
        "out: outliers by modified z-score > 3.5 (counted, kept). "
        f"Ratios need >= {need} sessions per side (min_sessions)."
    )


def render_comparison_md(section: dict[str, Any]) -> list[str]:
    """The report's ``## Comparison`` section as Markdown lines (empty with one variant)."""
    if not section or not (section.get("rows") or section.get("refused")):
        return []
    rows = [ComparisonRow(**r) for r in section["rows"]]
    baseline = section.get("baseline") or "A"
    out = ["## Comparison", "", f"Each variant against `{baseline}`, per set, workload and "]
    out[-1] += "matrix value. " + _method_line(section["options"])
    out.append("")
    for line in section.get("refused") or ():
        out += [f"- {line}", ""]
    if rows:
        out += render_rows_markdown(rows, section["options"], a="baseline", b="variant")
    return out


def to_json(rows: Sequence[ComparisonRow], meta: dict[str, Any]) -> str:
    """Rows and meta as a JSON document."""
    return json.dumps({**meta, "rows": [r.to_json() for r in rows]}, indent=2)


# -- CI against a stored run: compare --fail-if and run --baseline-run -------------------------

BASE_LABEL = "baseline"
"""With variants omitted (``regression(session_seconds) > 5%``), BASE's sessions play this."""

NEW_LABEL = "candidate"
"""... and NEW's sessions play this."""


def combine_runs(
    base: RunData,
    new: RunData,
    *,
    base_sessions: Any = None,
    relabel_base: Any = None,
    relabel_new: Any = None,
) -> RunData:
    """One ``RunData`` holding NEW's data and (some of) BASE's sessions with their samples.

    BASE's session ids are moved above NEW's (``max id + 1``) so that nothing collides, and
    BASE's machine-wide samples are dropped (they describe another run's machine).

    Args:
        base / new: the runs (``read_run``).
        base_sessions: a predicate on a BASE session row: keep it (default: all).
        relabel_base / relabel_new: functions mapping a session row to a new row (e.g. a
            different ``variant``), applied after filtering (default: unchanged).

    Returns:
        A ``RunData`` whose ``run_dir`` and ``manifest`` are NEW's.
    """

    ids = [int(s["id"]) for s in new.sessions if isinstance(s.get("id"), int)]
    offset = (max(ids) + 1) if ids else 0
    kept = [s for s in base.sessions if isinstance(s.get("id"), int)]
    if base_sessions is not None:
        kept = [s for s in kept if base_sessions(s)]
    keep_ids = pa.array(sorted(int(s["id"]) for s in kept), pa.int32())
    rows = [{**s, "id": int(s["id"]) + offset} for s in kept]
    if relabel_base is not None:
        rows = [relabel_base(r) for r in rows]
    new_rows = list(new.sessions)
    if relabel_new is not None:
        new_rows = [relabel_new(r) for r in new_rows]

    def kept_base() -> Iterator[pa.RecordBatch]:
        for batch in base.batches():
            part = batch.filter(pc.is_in(batch.column("session"), value_set=keep_ids))
            if part.num_rows:
                yield _shift_batch(part, offset)

    def batches() -> Iterator[pa.RecordBatch]:
        # NEW's samples, then BASE's kept sessions' samples moved above NEW's ids, one batch
        # at a time from each run's files: memory does not grow with either recording.
        yield from new.batches()
        yield from kept_base()

    # NEW's count and time range are known (read_run); BASE's kept part takes one pass.
    n, t_min, t_max = new.num_samples, new.t_min, new.t_max
    for batch in kept_base():
        n += batch.num_rows
        lo, hi = (x.as_py() for x in pc.min_max(batch.column("t")).values())
        t_min = lo if t_min is None else min(t_min, lo)
        t_max = hi if t_max is None else max(t_max, hi)
    return dc.replace(
        new,
        sessions=new_rows + rows,
        in_memory=None,
        batch_source=batches,
        num_samples=n,
        t_min=t_min,
        t_max=t_max,
    )


def _shift_batch(batch: pa.RecordBatch, offset: int) -> pa.RecordBatch:
    """``batch`` with its session ids moved up by ``offset`` (machine-wide samples, which
    belong to the other run, are filtered out before: they are not among the kept ids)."""
    i = batch.schema.get_field_index("session")
    shifted = pc.add(batch.column(i).cast(pa.int64()), offset).cast(pa.int32())
    return batch.set_column(i, "session", shifted)


def omit_variants(expr: str) -> tuple[str, bool]:
    """``regression(m) > 5%`` -> ``regression(m, baseline, candidate) > 5%``.

    Returns:
        ``(expression, rewritten)``: the expression with ``BASE_LABEL`` and ``NEW_LABEL``
        filled in when ``speedup``/``regression`` was written with a metric alone.
    """
    return fill_variants(expr, BASE_LABEL, NEW_LABEL)


@dataclass(frozen=True, slots=True)
class FailIfResult:
    """The judgement of one ``--fail-if`` condition.

    Attributes:
        expr: the condition as given.
        outcome: ``"shown"`` (the data shows the condition: fail the build), ``"not shown"``
            (the data shows its opposite) or ``"undecided"`` (an interval straddles the limit,
            or too few sessions).
        lines: one line per group of sessions: its state and the gate's reason text.
    """

    expr: str
    outcome: str
    lines: tuple[str, ...]


def judge_fail_if(
    base_dir: Path,
    new_dir: Path,
    exprs: Sequence[str],
    options: StatsOptions | None = None,
    *,
    allow_mixed_hosts: bool = False,
) -> list[FailIfResult]:
    """Judge ``perfmon compare BASE NEW --fail-if EXPR`` conditions.

    Each condition is a gate expression (``perfmon.core.gates``), judged with the same
    statistics as gates: ``speedup``/``regression`` by their bootstrap interval per group of
    sessions (``perfmon.core.stats.compare``), other functions by their value. A condition is
    *shown* when, in at least one group, the gate would pass (for an interval: the whole
    interval on the condition's side); *not shown* when every group shows the opposite (the
    whole interval on the other side); otherwise *undecided*.

    Which sessions are compared:

    - ``speedup(m) ...`` / ``regression(m) ...`` (variants omitted): BASE's sessions are the
      baseline, NEW's the candidate, variant by variant: groups are (variant, workload, matrix
      values), sets pooled (sets are schedules, not configurations);
    - ``speedup(m, A, B)``: BASE's sessions of variant A against NEW's of variant B, sets
      pooled;
    - any other function (``max(rss_bytes) > 1GB``): NEW's data alone.

    Args:
        base_dir / new_dir: the run directories.
        exprs: the conditions.
        options: statistical options (default: those stored in BASE's manifest).
        allow_mixed_hosts: compare runs recorded under different host fingerprints.

    Returns:
        One ``FailIfResult`` per condition, in order.

    Raises:
        perfmon.core.gates.GateSyntaxError: if a condition does not parse.
        FileNotFoundError: if a directory is not a run directory.
        MixedHostsRefused: the runs ran under different host fingerprints
            (``cross_run_refusal``) and ``allow_mixed_hosts`` is False.
    """

    base, new = read_run(base_dir), read_run(new_dir)
    refusal = cross_run_refusal(base, new, allow=allow_mixed_hosts)
    if refusal is not None:
        raise MixedHostsRefused(refusal)
    if options is None:
        options = stats_options(base.manifest.get("campaign") or {})
    gates = []
    for expr in exprs:
        text, rewritten = omit_variants(expr)
        directions = {**manifest_directions(new.manifest), **manifest_directions(base.manifest)}
        gate = parse_gate(text, stats=options, directions=directions)  # raises first
        gates.append((expr, gate, rewritten))
    out: list[FailIfResult] = []
    for expr, gate, rewritten in gates:
        lhs = gate.lhs
        if isinstance(lhs, VariantComparison) and rewritten:

            def as_side(label: str) -> Any:
                def relabel(row: dict[str, Any]) -> dict[str, Any]:
                    return {**row, "set_name": str(row.get("variant", "")), "variant": label}

                return relabel

            data = combine_runs(
                base, new, relabel_base=as_side(BASE_LABEL), relabel_new=as_side(NEW_LABEL)
            )
        elif isinstance(lhs, VariantComparison):
            a, b = lhs.a, lhs.b

            def pooled(row: dict[str, Any]) -> dict[str, Any]:
                return {**row, "set_name": "all"}

            only_b = [s for s in new.sessions if s.get("variant") == b]
            data = combine_runs(
                base,
                dataclasses.replace(new, sessions=only_b),
                base_sessions=lambda s, a=a: s.get("variant") == a,
                relabel_base=pooled,
                relabel_new=pooled,
            )  # fmt: skip
        else:
            data = new
        source = source_from_run(data)
        ev = lhs.evaluate(source, None)
        judged = gate.judge_groups(ev) if ev.groups else [(ev, gate.judge(ev))]
        lines = []
        for g, state in judged:
            text = g.text or f"waiting: {g.waiting or 'no samples of ' + ', '.join(g.missing)}"
            label = f"{g.label}: " if g.label and not text.startswith(g.label) else ""
            lines.append(f"{state.value.upper():<12} {label}{text}, condition {gate.limit_text}")
        states = [s for _, s in judged]
        if any(s is GateState.PASS for s in states):
            outcome = "shown"
        elif states and all(s is GateState.FAIL for s in states):
            outcome = "not shown"
        else:
            outcome = "undecided"
        out.append(FailIfResult(expr, outcome, tuple(lines)))
    return out


def apply_baseline_run(
    gates: Sequence[dict[str, Any]],
    data: RunData,
    recorded: Any,
    baseline_dir: Path,
    stats: StatsOptions,
) -> Any:
    """Re-judge a run's statistical gates against a recorded run (``perfmon run --baseline-run``).

    For each ``speedup(m, A, B)`` / ``regression(m, A, B)`` gate, this run's sessions of the
    baseline variant A are replaced by the recorded run's sessions of variant A in the same
    set, workload and matrix values (sets matched by name; the recorded run's sessions of sets
    this run does not have are left out). Variant B's sessions are this run's. Every other
    gate keeps its result on this run's data alone. Each re-judged gate's reason starts with
    ``baseline RUN_ID:``.

    Args:
        gates: ``[{name, expr, window_s}]`` as stored in the manifest.
        data: this run's ``RunData``.
        recorded: this run's ``perfmon.engine.recorded.RecordedGates``.
        baseline_dir: the recorded run directory.
        stats: statistical options.

    Returns:
        A ``RecordedGates`` with the statistical gates' results replaced.

    Raises:
        FileNotFoundError: if ``baseline_dir`` is not a run directory.
        perfmon.core.gates.GateSyntaxError: if a stored gate no longer parses.
    """

    base = read_run(baseline_dir)
    run_id = base.manifest.get("run_id", baseline_dir.name)
    refusal = cross_run_refusal(base, data)
    sets = {str(s.get("set_name")) for s in data.sessions}
    run = list(recorded.run)
    per_set = {k: list(v) for k, v in recorded.per_set.items()}

    def mark(result: Any) -> Any:
        return dataclasses.replace(result, reason=f"baseline {run_id}: {result.reason}")

    for i, g in enumerate(gates):
        gate = parse_stored_gate(g, stats)
        if not isinstance(gate.lhs, VariantComparison):
            continue
        a = gate.lhs.a
        if refusal is not None:  # issue 16: never a ratio between different machines
            pending = GateResult(str(g["name"]), str(g["expr"]), GateState.PENDING, None, 0, "")
            run[i] = mark(dataclasses.replace(gate.annotate(pending), reason=refusal))
            for results in per_set.values():
                results[i] = run[i]
            continue
        # Per host when this run is judged per host: each host's candidate sessions against
        # the recorded run's baseline sessions (one host fingerprint, checked above).
        hosts = list(host_fingerprints(data.sessions)) if recorded.per_host else [None]
        for host in hosts:
            mine = [
                s
                for s in data.sessions
                if s.get("variant") != a and (host is None or session_host(s) == host)
            ]
            combined = combine_runs(
                base,
                dataclasses.replace(data, sessions=mine),
                base_sessions=lambda s, a=a: (
                    s.get("variant") == a and str(s.get("set_name")) in sets
                ),
                relabel_base=None if host is None else (lambda r, h=host: {**r, "host": h}),
            )
            again = evaluate_recorded([g], combined, stats, allow_mixed_hosts=True)
            at = "" if host is None else f"{HOST_SEPARATOR}{host}"
            if host is None:
                run[i] = mark(again.run[0])
            if again.per_set:
                for name, results in again.per_set.items():
                    if f"{name}{at}" in per_set:
                        per_set[f"{name}{at}"][i] = mark(results[0])
            elif host is not None:
                only = next(iter(set_spans(combined.sessions)), "")
                if f"{only}{at}" in per_set:
                    per_set[f"{only}{at}"][i] = mark(again.run[0])
        if recorded.per_host:
            run[i] = worst_of_groups(per_set, i, gate, per_host=True)
    return RecordedGates(run=run, per_set=per_set, per_host=recorded.per_host)
