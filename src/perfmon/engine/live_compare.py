"""The live comparison panel: each variant against the reference, per group, while the run goes on.

``build_panel`` reads a ``perfmon.core.gates.MetricSource`` (the live state, through the gate
worker's ``LockedSource``) and returns a ``perfmon.core.snapshot.ComparisonPanel``: per
(set, workload, matrix values) group and per-session metric, each variant's median, quartiles
and n, and each variant against the reference variant as a ratio in the metric's own direction
("1.39x faster [1.30, 1.51]"). It writes no statistics of its own:

- the reference and the pairs (``[campaign] reference``: first, previous or a variant) and the
  ratio's wording and direction come from ``perfmon.engine.tables`` (the report's tables);
- with ``inference = "anytime"`` (default) the ratio is the gates' anytime-valid confidence
  sequence (``perfmon.core.stats.anytime_ratio``), valid whenever the panel is looked at, so
  "decided" (the interval excludes 1) is never taken back; no p-value is shown, since a fixed-n
  p-value does not hold its level under repeated looks;
- with ``inference = "fixed"`` it is the Hodges-Lehmann ratio with its exact rank interval and
  the configured test's p-value (``perfmon.core.stats.compare``), marked provisional until
  each side has its set's planned sessions (a duration set: until the run has finished);
- outliers are values beyond 3 scaled MADs of the median (modified z-score
  ``perfmon.core.stats.modified_z_scores`` |z| > 3, Iglewicz & Hoaglin 1993: 0.6745 / MAD
  equals 1 / (1.4826 MAD), so |z| > 3 is "beyond 3 scaled MADs").

Nothing here runs on the sessions' path: the gate worker calls ``build_panel`` in its thread,
only when a session finished since the last call (``perfmon.engine.gate_worker``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from perfmon.core.snapshot import (
    MAX_COMPARISON_ROWS,
    MAX_COMPARISON_VALUES,
    ComparisonPanel,
    ComparisonRatio,
    ComparisonRow,
    ComparisonSide,
)
from perfmon.core.stats import DEFAULT_OPTIONS, StatsOptions

__all__ = [
    "DEFAULT_METRICS",
    "OUTLIER_Z",
    "build_panel",
    "merge_panels",
    "panel_metrics",
    "ratio_text",
    "side_of",
]

DEFAULT_METRICS = ("session_seconds", "session_cpu_seconds", "session_peak_rss_bytes")
"""The per-session metrics every run's panel compares, ``session_seconds`` (the metric the
speedup gates use) first; the metrics of ``speedup``/``regression`` gates follow."""

OUTLIER_Z = 3.0
"""|modified z| beyond which a value is an outlier: 3 scaled MADs (see the module docstring)."""


def panel_metrics(gated: Iterable[str] = ()) -> tuple[str, ...]:
    """The metrics a panel compares: ``DEFAULT_METRICS``, then ``gated`` (the metrics of
    ``speedup``/``regression`` gates), each once, in that order.

    Args:
        gated: metric names.
    """
    out = list(DEFAULT_METRICS)
    for m in gated:
        if m not in out:
            out.append(m)
    return tuple(out)


def _clean(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def side_of(
    variant: str, values: Sequence[float], max_values: int = MAX_COMPARISON_VALUES
) -> ComparisonSide:
    """One variant's side of a comparison row.

    Args:
        variant: its name.
        values: its per-session values, in session order (base units).
        max_values: most values carried (the latest).

    Returns:
        The side: n, median, quartiles (numpy's linear interpolation), min, max, the latest
        values and the number of outliers (beyond ``OUTLIER_Z`` scaled MADs) among all values.
    """
    import numpy as np

    from perfmon.core.stats import modified_z_scores

    xs = [float(v) for v in values if math.isfinite(v)]
    if not xs:
        return ComparisonSide(variant, 0, None, None, None, None, None)
    arr = np.asarray(xs)
    q1, med, q3 = (float(q) for q in np.percentile(arr, [25.0, 50.0, 75.0]))
    outliers = sum(1 for z in modified_z_scores(xs) if abs(z) > OUTLIER_Z)
    return ComparisonSide(
        variant=variant,
        n=len(xs),
        median=med,
        q1=q1,
        q3=q3,
        low=float(arr.min()),
        high=float(arr.max()),
        values=tuple(xs[-max_values:]) if max_values > 0 else (),
        outliers=outliers,
    )


def _num(x: float) -> str:
    return "∞" if math.isinf(x) else f"{x:.3g}"


def _inv(x: float) -> float:
    return math.inf if x == 0 else 1.0 / x


def ratio_text(factor: float, low: float, high: float, metric: str, direction: str) -> str:
    """A ratio in the metric's direction for people: ``"1.39x faster [1.30, 1.51]"``.

    The same wording as the report's tables (``perfmon.engine.tables``): ``faster``/``slower``
    for times, ``smaller``/``larger`` for sizes, ``higher``/``lower`` for rates; a factor below
    1 is shown as its reciprocal with the opposite word.

    Args:
        factor / low / high: how many times better the candidate is (> 1: better) and its
            interval (``low`` may be 0 and ``high`` infinite).
        metric: the metric's name (its unit suffix picks the words).
        direction: ``"lower"`` or ``"higher"``.
    """
    from perfmon.engine.tables import _words

    good, bad = _words(metric, direction)
    if factor >= 1.0:
        return f"{factor:.3g}x {good} [{_num(low)}, {_num(high)}]"
    return f"{_inv(factor):.3g}x {bad} [{_num(_inv(high))}, {_num(_inv(low))}]"


def _ratio(
    ref: Sequence[float],
    other: Sequence[float],
    *,
    variant: str,
    against: str,
    metric: str,
    direction: str | None,
    options: StatsOptions,
    planned: int | None,
    finished: bool,
    key: Any,
) -> ComparisonRatio:
    from perfmon.core.gates import oriented
    from perfmon.core.stats import anytime_ratio, compare, format_level, format_p

    need = options.min_sessions
    if direction is None:
        return ComparisonRatio(variant, against, "pending", "no direction: values only")
    if len(ref) < need or len(other) < need:
        have = min(len(ref), len(other))
        return ComparisonRatio(
            variant, against, "pending", f"{have} of {need} sessions per side (min_sessions)"
        )
    p_value: float | None = None
    try:
        if options.inference == "anytime":
            r = anytime_ratio(ref, other, options.confidence, key=key)
            level = r.confidence
            method = f"{format_level(options.confidence, level)} {r.method}, {r.pairs} pairs"
            f, lo, hi = oriented(r, "speedup", direction)
        else:
            c = compare(ref, other, options)
            level = c.confidence
            p_value = _clean(c.p_value)
            method = (
                f"{format_level(options.confidence, level)} {c.interval_method}, "
                f"{c.p_method} {format_p(c.p_value)}"
            )
            f, lo, hi = oriented(c, "speedup", direction)
    except ValueError as exc:  # SampleTooSmall, or values that are not positive
        return ComparisonRatio(variant, against, "pending", str(exc))
    if not math.isfinite(f) or math.isnan(lo) or math.isnan(hi):
        return ComparisonRatio(variant, against, "pending", "no ratio fits these values")
    text = ratio_text(f, lo, hi, metric, direction)
    if (
        options.inference == "fixed"
        and not finished
        and (planned is None or min(len(ref), len(other)) < planned)
    ):
        state = "provisional"
    elif lo <= 1.0 <= hi:
        state = "undecided"
    else:
        state = "decided"
    return ComparisonRatio(
        variant=variant,
        against=against,
        state=state,
        text=text,
        factor=_clean(f),
        low=_clean(lo),
        high=_clean(hi),
        level=_clean(level),
        p_value=p_value,
        method=method,
    )


def build_panel(
    source: Any,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    reference: str = "first",
    directions: Mapping[str, str] | None = None,
    options: StatsOptions = DEFAULT_OPTIONS,
    planned: Mapping[str, int | None] | None = None,
    variant_order: Sequence[str] = (),
    finished: bool = False,
    max_rows: int = MAX_COMPARISON_ROWS,
    max_values: int = MAX_COMPARISON_VALUES,
    set_suffix: str = "",
) -> ComparisonPanel | None:
    """Compare each variant with the reference, per group and metric, from per-session values.

    Args:
        source: a ``MetricSource`` (``session_groups``, ``session_variants``,
            ``session_values``, ``kind``), e.g. the live state behind a ``LockedSource``.
        metrics: per-session metrics to compare, the panel's default first
            (``panel_metrics``); a metric with no value in a group gets no row there.
        reference: ``"first"``, ``"previous"`` or a variant's name (``[campaign] reference``).
        directions: the campaign's ``[metric.X] better`` (metric -> ``"lower"``/``"higher"``).
        options: confidence, ``min_sessions``, ``inference`` and the fixed-n methods.
        planned: set name -> measured sessions planned per variant (None: a duration set);
            with fixed-n inference a ratio is provisional until both sides have that many.
        variant_order: the campaign's variants, in order (others follow as first seen).
        finished: the run has ended (a fixed-n ratio is no longer provisional).
        max_rows: most rows (over all metrics, ``metrics`` order first); the rest counted.
        max_values: most per-session values carried per side (the latest).
        set_suffix: appended to each row's set name and key (``" @ gpu-a"``: a panel of one
            host's sessions, ``merge_panels``).

    Returns:
        The panel, or None when no group has two variants with values (nothing to compare).

    Raises:
        Nothing for bad data: a ratio that cannot be computed is a pending row with the reason.
    """
    from perfmon.engine.tables import _comparable, _reference_of

    directions = directions or {}
    planned = planned or {}
    seen = list(source.session_variants())
    variants = [v for v in variant_order if v in seen] + [v for v in seen if v not in variant_order]
    if len(variants) < 2:
        return None
    rows: list[ComparisonRow] = []
    total = 0
    for metric in metrics:
        kind = source.kind(metric)
        direction = _comparable(metric, None if kind is None else str(kind.value), directions)
        for group in source.session_groups():
            per = {v: list(source.session_values(metric, v, group=group)) for v in variants}
            present = [v for v in variants if per[v]]
            if len(present) < 2:
                continue
            total += 1
            if len(rows) >= max_rows:
                continue
            pairs = _reference_of(present, reference)
            ref_first = [pairs[0][1]] if pairs else []
            order = ref_first + [v for v in present if v not in ref_first]
            params = " ".join(f"{k}={v}" for k, v in group.params)
            rows.append(
                ComparisonRow(
                    key=f"{metric}|{group.set_name}{set_suffix}|{group.workload}|{params}",
                    metric=metric,
                    set_name=f"{group.set_name}{set_suffix}",
                    workload=group.workload,
                    params=params,
                    sides=tuple(side_of(v, per[v], max_values) for v in order),
                    ratios=tuple(
                        _ratio(
                            per[against],
                            per[v],
                            variant=v,
                            against=against,
                            metric=metric,
                            direction=direction,
                            options=options,
                            planned=planned.get(group.set_name),
                            finished=finished,
                            key=("panel", metric, against, v, group, set_suffix),
                        )
                        for v, against in pairs
                    ),
                )
            )
    if not rows:
        return None
    present_metrics = tuple(m for m in metrics if any(r.metric == m for r in rows))
    return ComparisonPanel(
        metrics=present_metrics,
        inference=options.inference,
        confidence=options.confidence,
        min_sessions=options.min_sessions,
        rows=tuple(rows),
        rows_total=total,
    )


def merge_panels(
    panels: Sequence[ComparisonPanel | None], max_rows: int = MAX_COMPARISON_ROWS
) -> ComparisonPanel | None:
    """One panel from panels of different sessions (one per (set, host) lane on a fleet,
    ``build_panel(..., set_suffix=" @ HOST")``): each metric's rows, panel after panel, the
    metrics in first-seen order, at most ``max_rows`` rows (``rows_total`` counts them all).

    Args:
        panels: the panels (None: a lane with nothing to compare yet).
        max_rows: most rows kept.

    Returns:
        The merged panel, or None when every panel is None.
    """
    present = [p for p in panels if p is not None]
    if not present:
        return None
    metrics = tuple(dict.fromkeys(m for p in present for m in p.metrics))
    rows = [r for m in metrics for p in present for r in p.rows_of(m)]
    first = present[0]
    return ComparisonPanel(
        metrics=metrics,
        inference=first.inference,
        confidence=first.confidence,
        min_sessions=first.min_sessions,
        rows=tuple(rows[:max_rows]),
        rows_total=sum(p.rows_total for p in present),
    )
