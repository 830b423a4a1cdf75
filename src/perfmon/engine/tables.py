"""Result tables in the shape users publish (issue 15, point 2).

Pure functions over per-session values (``SessionValues``), plus one adapter from a recorded
run (``tables_section``). Every cell comes from recorded sessions, with its n and interval:

- **median** per variant and matrix value, with the distribution-free order-statistic interval
  (``median_interval``) and its attained level;
- **ratio** pivots (variant x matrix value) against the reference variant: the Hodges-Lehmann
  ratio with its exact rank interval (``perfmon.core.stats.compare``), in the metric's
  direction ("1.39x faster [1.30, 1.51]");
- **difference** pivots: the Hodges-Lehmann shift on the raw scale with its exact rank (Moses)
  interval (``perfmon.core.stats.shift_interval``);
- **scaling** tables (one variant, a matrix): each matrix value's median, and its ratio against
  the first matrix value;
- **throughput** (units of work, or sessions, per second or minute) and **efficiency**
  (speedup over the fewest workers, divided by the worker multiple);
- **values**: constants and one-off values (parity diffs, config echoes) shown as values,
  never as ratios;
- **margins** of each gate to its threshold.

Ratios are computed only where a ratio means something: metrics with a known direction
(``perfmon.core.units.metric_direction``, or the campaign's ``[metric.X] better``) that are
timings, sizes or rates by their unit suffix, or aggregated per session (gauges, counters,
histograms); never one-off ``value`` metrics without a unit, never metrics with zero spread,
never machine-wide ``system_*`` metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perfmon.core.stats import (
    DEFAULT_OPTIONS,
    SampleTooSmall,
    StatsOptions,
    compare,
    format_level,
    shift_interval,
)
from perfmon.core.units import HIGHER, LOWER, format_metric, metric_direction
from perfmon.engine.manifest import manifest_directions
from perfmon.engine.recorded import (
    HOST_SEPARATOR,
    allows_mixed_hosts,
    host_fingerprints,
    judged_per_host,
    session_aggregates,
    session_host,
    stored_stats_options,
)

__all__ = [
    "MAX_TABLES",
    "SessionValues",
    "build_tables",
    "median_interval",
    "render_tables_md",
    "tables_section",
]

MAX_TABLES = 40
"""Most tables one report prints; the rest are named in ``left_out`` (gated metrics, then
per-session timings, then other metrics with a direction, come first)."""

SESSION_METRICS = ("session_seconds", "session_cpu_seconds", "session_peak_rss_bytes")
REFERENCES = ("first", "previous")
"""Values of ``[campaign] reference`` other than a variant's name."""
_WORKERS = "workers"


@dataclass(frozen=True, slots=True)
class SessionValues:
    """One measured session (status OK, not a warm-up) and its per-session metric values.

    Attributes:
        set_name / workload / variant: where it belongs.
        params: its matrix values ``((key, value), ...)`` in the campaign's key order.
        values: metric name -> the session's value (a ``value`` metric's last value, a
            counter's sum, other kinds' mean; base units).
    """

    set_name: str
    workload: str
    variant: str
    params: tuple[tuple[str, str], ...] = ()
    values: Mapping[str, float] = field(default_factory=dict)


def median_interval(xs: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Distribution-free confidence interval for a median from order statistics.

    The interval ``[x_(k), x_(n+1-k)]`` covers the population median with probability
    ``1 - 2 P(B <= k - 1)``, ``B ~ Binomial(n, 1/2)``, for any continuous distribution of
    independent values (Conover, *Practical Nonparametric Statistics*, 3rd ed. 1999, section
    3.2; Hollander, Wolfe & Chicken, *Nonparametric Statistical Methods*, 2014). ``k`` is the
    largest rank whose exact coverage is at least ``level``.

    Args:
        xs: the values (at least 1).
        level: the coverage wanted, in (0, 1).

    Returns:
        ``(low, high, coverage)``: the interval and its exact coverage, at least ``level``
        when ``n`` allows it; for small ``n`` (fewer than 6 values at 0.95) the widest interval
        ``[min, max]`` and its coverage ``1 - 2^(1-n)``, below ``level``.

    Raises:
        ValueError: ``xs`` is empty.
    """
    from scipy.stats import binom  # lazy: scipy.stats costs ~1 s of import

    x = sorted(xs)
    n = len(x)
    if n == 0:
        raise ValueError("median_interval of no values")
    # Coverage of [x_(j), x_(n+1-j)] for j = 1 .. n // 2 (at least j = 1: [min, max]), with the
    # binomial CDF in floating point (scipy), so that n in the tens of thousands neither
    # overflows (math.comb(n, j) * 0.5**n does past n ~ 1,030) nor takes quadratic time.
    j = np.arange(1, max(1, n // 2) + 1)
    cov = 1.0 - 2.0 * binom.cdf(j - 1, n, 0.5)
    ok = np.flatnonzero(cov >= level)
    i = int(ok[-1]) if ok.size else 0  # coverage falls as j grows: the last j that holds
    k, coverage = int(j[i]), float(cov[i])
    return x[k - 1], x[n - k], coverage


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


def _fmt(value: float, metric: str) -> str:
    """A value in the metric's unit, rates humanised (``format_metric``: ``92.7 MB/s``)."""
    return format_metric(value, metric)


def _clean(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _col_label(params: tuple[tuple[str, str], ...]) -> str:
    return " ".join(f"{k}={v}" for k, v in params) or "all"


def _median_cell(xs: Sequence[float], metric: str, options: StatsOptions) -> dict[str, Any]:
    """A median with its order-statistic interval, or "n too small"."""
    if not xs:
        return {"n": 0, "text": "–"}
    med = _median(xs)
    low, high, cov = median_interval(xs, options.confidence)
    cell: dict[str, Any] = {"n": len(xs), "median": _clean(med)}
    if len(xs) < options.min_sessions or cov < options.confidence:
        cell["note"] = "n too small"
        cell["text"] = f"{_fmt(med, metric)} (n = {len(xs)}, too small for an interval)"
        return cell
    cell.update(low=_clean(low), high=_clean(high), level=cov)
    cell["text"] = (
        f"{_fmt(med, metric)} [{_fmt(low, metric)}, {_fmt(high, metric)}] "
        f"{format_level(options.confidence, cov)}, n = {len(xs)}"
    )
    return cell


def _words(metric: str, direction: str) -> tuple[str, str]:
    if metric.endswith(("_seconds", "_ms", "_us", "_ns")):
        return "faster", "slower"
    if direction == HIGHER:
        return "higher", "lower"
    return "smaller", "larger"


def _ratio_cell(
    ref: Sequence[float],
    other: Sequence[float],
    metric: str,
    direction: str,
    options: StatsOptions,
) -> dict[str, Any]:
    """``other`` against ``ref``: the HL ratio in the metric's direction, and the HL shift."""
    n_txt = f"n = {len(ref)}/{len(other)}"
    if len(ref) < options.min_sessions or len(other) < options.min_sessions:
        return {
            "n": [len(ref), len(other)],
            "note": "n too small",
            "text": f"n too small ({n_txt})",
        }
    try:
        c = compare(ref, other, options)
    except ValueError as exc:  # zero or negative values, or an unreachable level
        return {"n": [len(ref), len(other)], "note": str(exc), "text": "no ratio"}
    # "better" factor: > 1 when `other` is better (compare() estimates ref / other).
    if direction == HIGHER:
        f, lo, hi = 1.0 / c.speedup, 1.0 / c.speedup_high, 1.0 / c.speedup_low
    else:
        f, lo, hi = c.speedup, c.speedup_low, c.speedup_high
    good, bad = _words(metric, direction)
    if f >= 1.0:
        text = f"{f:.3g}x {good} [{lo:.3g}, {hi:.3g}]"
    else:
        text = f"{1.0 / f:.3g}x {bad} [{1.0 / hi:.3g}, {1.0 / lo:.3g}]"
    cell: dict[str, Any] = {
        "n": [len(ref), len(other)],
        "ratio": c.speedup,  # ref / other, as compare() gives it
        "ratio_low": c.speedup_low,
        "ratio_high": c.speedup_high,
        "better_factor": f,
        "better_low": lo,
        "better_high": hi,
        "level": c.confidence,
        "p_value": _clean(c.p_value),
        "p_method": c.p_method,
        "text": text,
    }
    if lo <= 1.0 <= hi:
        cell["text"] += " (no clear change)"
    return cell


def _diff_cell(
    ref: Sequence[float], other: Sequence[float], metric: str, options: StatsOptions
) -> dict[str, Any]:
    """``other - ref``: Hodges-Lehmann shift with its exact rank (Moses) interval."""
    if len(ref) < options.min_sessions or len(other) < options.min_sessions:
        return {"n": [len(ref), len(other)], "note": "n too small", "text": "n too small"}
    try:
        r = shift_interval(other, ref, options.confidence)
    except SampleTooSmall:
        return {"n": [len(ref), len(other)], "note": "n too small", "text": "n too small"}
    sign = "+" if r.estimate >= 0 else "-"

    def signed(x: float) -> str:
        return ("+" if x >= 0 else "-") + _fmt(abs(x), metric)

    return {
        "n": [len(ref), len(other)],
        "difference": r.estimate,
        "low": r.low,
        "high": r.high,
        "level": r.confidence,
        "text": f"{sign}{_fmt(abs(r.estimate), metric)} [{signed(r.low)}, {signed(r.high)}]",
    }


def _reference_of(variants: Sequence[str], reference: str) -> list[tuple[str, str]]:
    """``(other, against)`` pairs: every variant against the first, against the one before
    (``"previous"``), or against a named variant."""
    if reference == "previous":
        return [(variants[i], variants[i - 1]) for i in range(1, len(variants))]
    ref = variants[0] if reference == "first" or reference not in variants else reference
    return [(v, ref) for v in variants if v != ref]


def _comparable(
    metric: str,
    kind: str | None,
    directions: Mapping[str, str],
) -> str | None:
    """The metric's direction when a ratio of it means something, else None."""
    if metric.startswith("system_"):
        return None
    direction = metric_direction(metric, directions)
    if direction not in (LOWER, HIGHER):
        return None
    by_unit = metric_direction(metric) is not None or metric in SESSION_METRICS
    if kind == "value" and not by_unit:  # a one-off result (parity, config echo)
        return None
    return direction


def _table(
    kind: str, title: str, header: Sequence[str], rows: list[list[Any]], **meta: Any
) -> dict[str, Any]:
    """A table: ``rows`` of cells (dicts with ``text``, or strings)."""
    return {"kind": kind, "title": title, "header": list(header), "rows": rows, **meta}


def _workers_key(params: Sequence[tuple[str, str]], declared: str | None) -> str | None:
    keys = [k for k, _ in params]
    if declared and declared in keys:
        return declared
    return _WORKERS if _WORKERS in keys else None


def build_tables(
    sessions: Iterable[SessionValues],
    *,
    kinds: Mapping[str, str] | None = None,
    directions: Mapping[str, str] | None = None,
    reference: str = "first",
    workloads: Mapping[str, Mapping[str, Any]] | None = None,
    gated: Iterable[str] = (),
    variant_order: Sequence[str] = (),
    options: StatsOptions = DEFAULT_OPTIONS,
    max_tables: int = MAX_TABLES,
) -> dict[str, Any]:
    """Build the result tables from per-session values.

    Args:
        sessions: the measured sessions (OK, not warm-ups) with their values.
        kinds: metric name -> its kind (``"value"``, ``"gauge"``, ``"counter"``, ...).
        directions: the campaign's ``[metric.X] better`` (metric -> ``"lower"``/``"higher"``).
        reference: ``"first"``, ``"previous"`` or a variant's name (``[campaign] reference``).
        workloads: workload name -> ``{"units", "units_metric", "workers_key"}`` as declared.
        gated: metric names read by gates (their tables come first).
        variant_order: the campaign's variant order (others follow in order of appearance).
        options: confidence, ``min_sessions`` and the rank interval's options.
        max_tables: most tables returned; the rest are named in ``left_out``.

    Returns:
        ``{"reference", "confidence", "min_sessions", "tables": [...], "left_out": [...]}``;
        each table ``{"kind", "title", "header", "rows", "set", "workload", "metric"}`` with
        rows of cells ``{"text", ...numbers}`` (kinds: ``median``, ``ratio``, ``difference``,
        ``scaling``, ``throughput``, ``efficiency``, ``values``).
    """
    kinds = kinds or {}
    directions = directions or {}
    workloads = workloads or {}
    gated_set = set(gated)
    # (set, workload) -> params -> variant -> metric -> values
    data: dict[
        tuple[str, str], dict[tuple[tuple[str, str], ...], dict[str, dict[str, list[float]]]]
    ]
    data = {}
    seen_variants: list[str] = list(variant_order)
    for s in sessions:
        if s.variant not in seen_variants:
            seen_variants.append(s.variant)
        per = data.setdefault((s.set_name, s.workload), {}).setdefault(s.params, {})
        vals = per.setdefault(s.variant, {})
        for m, v in s.values.items():
            if v is not None and math.isfinite(v):
                vals.setdefault(m, []).append(float(v))
        secs = s.values.get("session_seconds")
        spec = workloads.get(s.workload) or {}
        units_metric = spec.get("units_metric")
        if secs is not None and secs > 0 and math.isfinite(secs):
            units = 1.0 if not units_metric else s.values.get(units_metric)
            if units is not None and math.isfinite(units):
                vals.setdefault("\0throughput", []).append(units / secs)
    candidates: list[tuple[tuple[int, str], Callable[[], list[dict[str, Any]]]]] = []

    def priority(metric: str) -> tuple[int, str]:
        if metric in gated_set:
            return (0, metric)
        if metric in SESSION_METRICS:
            return (1, metric)
        if metric_direction(metric, directions) is not None:
            return (2, metric)
        return (3, metric)

    for (set_name, workload), by_params in data.items():
        cols = list(by_params)
        variants = [v for v in seen_variants if any(v in by_params[p] for p in cols)]
        metrics = sorted(
            {m for p in cols for vs in by_params[p].values() for m in vs if m[0] != "\0"},
            key=priority,
        )
        where = f"{set_name} {workload}"
        meta = {"set": set_name, "workload": workload}
        constants: list[tuple[str, float, int]] = []  # folded into one line (issue 14)
        col_labels = [_col_label(p) for p in cols]

        def values(
            p: tuple[tuple[str, str], ...],
            v: str,
            m: str,
            bp: dict[tuple[tuple[str, str], ...], dict[str, dict[str, list[float]]]] = by_params,
        ) -> list[float]:
            return bp[p].get(v, {}).get(m, [])

        for metric in metrics:
            every = [x for p in cols for v in variants for x in values(p, v, metric)]
            if not every:
                continue
            direction = _comparable(metric, kinds.get(metric), directions)
            if min(every) == max(every):
                constants.append((metric, every[0], len(every)))
                continue
            if direction is None:
                candidates.append(
                    (
                        (0, metric) if metric in gated_set else (5, metric),  # a parity gate's
                        _values_table(where, meta, metric, cols, col_labels, variants, values),
                    )
                )
                continue
            candidates.append(
                (
                    priority(metric),
                    _metric_tables(
                        where,
                        meta,
                        metric,
                        direction,
                        cols,
                        col_labels,
                        variants,
                        values,
                        reference,
                        options,
                    ),
                )
            )
        if constants:
            candidates.append(((4, "\x7fconstants"), _const(where, meta, constants)))
        spec = workloads.get(workload) or {}
        candidates.append(
            (
                (1, "\x7fthroughput"),
                _throughput(where, meta, spec, cols, col_labels, variants, values, options),
            )
        )
        wk = _workers_key(cols[0], spec.get("workers_key")) if cols else None
        if wk is not None:
            candidates.append(
                (
                    (1, "\x7fefficiency"),
                    _efficiency(where, meta, wk, cols, variants, values, options),
                )
            )
    candidates.sort(key=lambda c: c[0])
    tables: list[dict[str, Any]] = []
    left_out: list[str] = []
    for _, make in candidates:
        for t in make():
            if len(tables) < max_tables:
                tables.append(t)
            else:
                left_out.append(t["title"])
    return {
        "reference": reference,
        "confidence": options.confidence,
        "min_sessions": options.min_sessions,
        "tables": tables,
        "left_out": left_out,
    }


Values = Callable[[tuple[tuple[str, str], ...], str, str], list[float]]


def _const(
    where: str, meta: Mapping[str, Any], constants: Sequence[tuple[str, float, int]]
) -> Callable[[], list[dict[str, Any]]]:
    """Every metric that had one value in every session of a (set, workload), folded into one
    line, ``constant: a = 1, b = 4 KiB, c = 0`` (issue 14): such a metric has no spread to
    compare, and a table or a ``1x [1, 1]`` ratio per metric would bury the ones that do."""

    def make() -> list[dict[str, Any]]:
        parts = [f"{metric} = {_fmt(value, metric)}" for metric, value, _ in constants]
        cell = {
            "constants": {metric: value for metric, value, _ in constants},
            "n": {metric: n for metric, _, n in constants},
            "text": "constant: " + ", ".join(parts),
        }
        names = ", ".join(metric for metric, _, _ in constants)
        title = f"{where}: constant metrics ({names})"
        if len(title) > 160:
            title = f"{where}: {len(constants)} constant metrics"
        return [
            _table(
                "values",
                title,
                ["same value in every session"],
                [[cell]],
                metric=constants[0][0] if len(constants) == 1 else "",
                metrics=[metric for metric, _, _ in constants],
                **meta,
            )
        ]

    return make


def _values_table(
    where: str,
    meta: Mapping[str, Any],
    metric: str,
    cols: Sequence[tuple[tuple[str, str], ...]],
    col_labels: Sequence[str],
    variants: Sequence[str],
    values: Values,
) -> Callable[[], list[dict[str, Any]]]:
    """One-off values (parity, echoes): median and range per cell, never a ratio."""

    def make() -> list[dict[str, Any]]:
        rows: list[list[Any]] = []
        for v in variants:
            row: list[Any] = [v]
            for p in cols:
                xs = values(p, v, metric)
                if not xs:
                    row.append({"n": 0, "text": "–"})
                    continue
                lo, hi, med = min(xs), max(xs), _median(xs)
                text = (
                    f"{_fmt(med, metric)} (range {_fmt(lo, metric)} to {_fmt(hi, metric)}, "
                    f"n = {len(xs)})"
                    if lo != hi
                    else f"{_fmt(med, metric)} (n = {len(xs)})"
                )
                row.append({"n": len(xs), "median": med, "min": lo, "max": hi, "text": text})
            rows.append(row)
        title = f"{where}: {metric} (values, no ratio: no direction or a one-off value)"
        return [_table("values", title, ["variant", *col_labels], rows, metric=metric, **meta)]

    return make


def _metric_tables(
    where: str,
    meta: Mapping[str, Any],
    metric: str,
    direction: str,
    cols: Sequence[tuple[tuple[str, str], ...]],
    col_labels: Sequence[str],
    variants: Sequence[str],
    values: Values,
    reference: str,
    options: StatsOptions,
) -> Callable[[], list[dict[str, Any]]]:
    def make() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        m = {"metric": metric, "direction": direction, **meta}
        if len(variants) == 1:
            return _scaling(
                where, m, metric, direction, cols, col_labels, variants[0], values, options
            )
        med_rows: list[list[Any]] = [
            [v, *(_median_cell(values(p, v, metric), metric, options) for p in cols)]
            for v in variants
        ]
        out.append(
            _table(
                "median",
                f"{where}: {metric}, median per variant",
                ["variant", *col_labels],
                med_rows,
                **m,
            )
        )
        pairs = _reference_of(variants, reference)
        ratio_rows: list[list[Any]] = []
        diff_rows: list[list[Any]] = []
        for other, against in pairs:
            label = f"{other} vs {against}"
            ratio_rows.append(
                [
                    label,
                    *(
                        _ratio_cell(
                            values(p, against, metric),
                            values(p, other, metric),
                            metric,
                            direction,
                            options,
                        )
                        for p in cols
                    ),
                ]
            )
            diff_rows.append(
                [
                    label,
                    *(
                        _diff_cell(
                            values(p, against, metric), values(p, other, metric), metric, options
                        )
                        for p in cols
                    ),
                ]
            )
        out.append(
            _table(
                "ratio",
                f"{where}: {metric}, ratio against the reference ({direction} is better)",
                ["comparison", *col_labels],
                ratio_rows,
                **m,
            )
        )
        out.append(
            _table(
                "difference",
                f"{where}: {metric}, difference against the reference",
                ["comparison", *col_labels],
                diff_rows,
                **m,
            )
        )
        return out

    return make


def _scaling(
    where: str,
    meta: Mapping[str, Any],
    metric: str,
    direction: str,
    cols: Sequence[tuple[tuple[str, str], ...]],
    col_labels: Sequence[str],
    variant: str,
    values: Values,
    options: StatsOptions,
) -> list[dict[str, Any]]:
    """One variant: each matrix value's median, and its ratio against the first value."""
    rows: list[list[Any]] = []
    first = values(cols[0], variant, metric) if cols else []
    for p, label in zip(cols, col_labels, strict=True):
        xs = values(p, variant, metric)
        ratio = (
            {"text": "reference"}
            if p == cols[0]
            else _ratio_cell(first, xs, metric, direction, options)
        )
        rows.append([label, _median_cell(xs, metric, options), ratio])
    header = ["matrix value", f"median ({variant})", f"vs {col_labels[0]}"]
    return [_table("scaling", f"{where}: {metric}, scaling by matrix value", header, rows, **meta)]


def _throughput(
    where: str,
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    cols: Sequence[tuple[tuple[str, str], ...]],
    col_labels: Sequence[str],
    variants: Sequence[str],
    values: Values,
    options: StatsOptions,
) -> Callable[[], list[dict[str, Any]]]:
    """Per-session units / session_seconds: median per variant with its interval."""
    unit = str(spec.get("units") or "sessions") if spec.get("units_metric") else "sessions"

    def make() -> list[dict[str, Any]]:
        rows: list[list[Any]] = []
        any_value = False
        every = [x for v in variants for p in cols for x in values(p, v, "\0throughput")]
        per, scale = ("min", 60.0) if every and _median(every) < 1.0 else ("s", 1.0)
        for v in variants:
            row: list[Any] = [v]
            for p in cols:
                xs = values(p, v, "\0throughput")
                if not xs:
                    row.append({"n": 0, "text": "–"})
                    continue
                any_value = True
                med = _median(xs)
                cell: dict[str, Any] = {"n": len(xs), "per_second": med, "unit": unit}
                low, high, cov = median_interval(xs, options.confidence)
                if len(xs) < options.min_sessions or cov < options.confidence:
                    cell["note"] = "n too small"
                    cell["text"] = f"{med * scale:.4g} {unit}/{per} (n = {len(xs)}, too small)"
                else:
                    cell.update(low=low, high=high, level=cov)
                    cell["text"] = (
                        f"{med * scale:.4g} {unit}/{per} [{low * scale:.4g}, {high * scale:.4g}] "
                        f"{format_level(options.confidence, cov)}, n = {len(xs)}"
                    )
                row.append(cell)
            rows.append(row)
        if not any_value:
            return []
        title = f"{where}: throughput ({unit} per session second, median per variant)"
        return [_table("throughput", title, ["variant", *col_labels], rows, **meta)]

    return make


def _efficiency(
    where: str,
    meta: Mapping[str, Any],
    key: str,
    cols: Sequence[tuple[tuple[str, str], ...]],
    variants: Sequence[str],
    values: Values,
    options: StatsOptions,
) -> Callable[[], list[dict[str, Any]]]:
    """Speedup of ``session_seconds`` over the fewest workers, and speedup / worker multiple.

    Columns are grouped by the other matrix keys; the interval of the efficiency is the
    speedup's exact rank interval divided by the (fixed) worker multiple.
    """

    def make() -> list[dict[str, Any]]:
        def workers(p: tuple[tuple[str, str], ...]) -> float | None:
            try:
                w = float(dict(p)[key])
            except (KeyError, ValueError):
                return None
            return w if w > 0 and math.isfinite(w) else None

        by_rest: dict[tuple[tuple[str, str], ...], list[tuple[float, Any]]] = {}
        for p in cols:
            w = workers(p)
            if w is not None:
                rest = tuple((k, x) for k, x in p if k != key)
                by_rest.setdefault(rest, []).append((w, p))
        out = []
        for rest, items in by_rest.items():
            items.sort(key=lambda t: t[0])
            if len(items) < 2:
                continue
            w0, p0 = items[0]
            rows: list[list[Any]] = []
            for v in variants:
                base = values(p0, v, "session_seconds")
                for w, p in items:
                    xs = values(p, v, "session_seconds")
                    if p == p0:  # the reference itself: 1x, 100% by definition
                        ref = {"n": len(xs), "text": f"reference (n = {len(xs)})"}
                        rows.append([v, f"{w:g}", ref, {"text": "100% (reference)"}])
                        continue
                    cell = _ratio_cell(base, xs, "session_seconds", LOWER, options)
                    mult = w / w0
                    eff: dict[str, Any] = {"workers_multiple": mult}
                    if "better_factor" in cell:
                        e, lo, hi = (
                            cell[k] / mult for k in ("better_factor", "better_low", "better_high")
                        )
                        eff.update(
                            efficiency=e, low=lo, high=hi, text=f"{e:.0%} [{lo:.0%}, {hi:.0%}]"
                        )
                        sp = (
                            f"{cell['better_factor']:.3g}x "
                            f"[{cell['better_low']:.3g}, {cell['better_high']:.3g}]"
                        )
                        cell = {**cell, "text": sp}
                    else:
                        eff["text"] = cell["text"]
                    rows.append([v, f"{w:g}", cell, eff])
            label = _col_label(rest)
            title = (
                f"{where}: efficiency = speedup / workers ({key}; {label}; against {key}={w0:g})"
            )
            header = ["variant", key, "speedup of session_seconds", "efficiency"]
            out.append(_table("efficiency", title, header, rows, metric="session_seconds", **meta))
        return out

    return make


# --- gate margins ------------------------------------------------------------------------------


def gate_margins(gates: Sequence[Any]) -> list[dict[str, Any]]:
    """The margin of each gate (and each of its groups) to its threshold.

    The comparison and threshold are those the gate's result carries (``GateResult.op`` and
    ``threshold``, in the value's base unit, filled where the gate was parsed and
    evaluated); nothing is parsed here.
    The margin is positive when there is room: ``value - threshold`` for ``>``/``>=``,
    ``threshold - value`` for ``<``/``<=``; for a statistical gate the worst end of the
    interval (the low end for ``>=``, the high end for ``<=``) gets its own margin.

    Args:
        gates: ``GateResult`` objects (``name``, ``op``, ``threshold``, ``value``,
            ``ci_low``, ``ci_high``, ``groups``).

    Returns:
        One dict per gate or group: ``{"gate", "group", "op", "threshold", "value",
        "margin", "worst", "worst_margin", "text"}``; results without a threshold (a gate
        whose expression did not parse, or one from a daemon older than issue 12) are
        skipped.
    """
    out = []
    for g in gates:
        op, threshold = getattr(g, "op", ""), getattr(g, "threshold", None)
        if not op or threshold is None:
            continue
        thr = float(threshold)
        groups = tuple(getattr(g, "groups", ()))
        # A gate judged per group: one row per group (the gate's own value is its deciding
        # group's, so it is not repeated).
        entries = [(x.label, x.value, x.ci_low, x.ci_high) for x in groups] or [
            (None, g.value, g.ci_low, g.ci_high)
        ]
        for label, value, low, high in entries:
            row: dict[str, Any] = {"gate": g.name, "group": label, "op": op, "threshold": thr}
            if value is None:
                row.update(value=None, margin=None, text=f"pending vs {op} {thr:.4g}")
                out.append(row)
                continue
            upward = op in (">", ">=")
            margin = value - thr if upward else thr - value
            worst = low if upward else high
            row.update(value=value, margin=margin)
            text = f"{value:.4g} vs {op} {thr:.4g}: margin {margin:+.3g}"
            if worst is not None and math.isfinite(worst):
                wm = worst - thr if upward else thr - worst
                row.update(worst=worst, worst_margin=wm)
                end = "low" if upward else "high"
                text += f" (interval {end} {worst:.4g}: {wm:+.3g})"
            row["text"] = text
            out.append(row)
    return out


# --- from a recorded run -----------------------------------------------------------------------


def tables_section(
    data: Any,
    gate_results: Sequence[Any] = (),
    kinds: Mapping[str, str] | None = None,
    options: StatsOptions | None = None,
) -> dict[str, Any]:
    """The report's ``tables`` section from a recorded run.

    Args:
        data: a ``perfmon.engine.recorder.RunData``.
        gate_results: the run's ``GateResult`` list (for the margins, and to put gated metrics
            first).
        kinds: metric name -> kind (the report's ``metrics`` entries); None: every metric is
            treated as aggregated per session.
        options: statistical options (default: those stored in the manifest).

    Returns:
        ``build_tables``'s dict plus ``"margins"`` (``gate_margins``).

    Raises:
        ValueError: for invalid statistical options stored in the manifest.
    """

    if options is None:
        options, _ = stored_stats_options(data.manifest)
    campaign = data.manifest.get("campaign")
    campaign = campaign if isinstance(campaign, Mapping) else {}
    reference = campaign.get("reference")
    reference = reference if isinstance(reference, str) else "first"
    workloads: dict[str, dict[str, Any]] = {}
    for w in campaign.get("workloads") or ():
        if isinstance(w, Mapping) and isinstance(w.get("name"), str):
            workloads[w["name"]] = {
                k: w.get(k)
                for k in ("units", "units_metric", "workers_key")
                if isinstance(w.get(k), str)
            }
    variant_order = [
        str(v["name"])
        for v in campaign.get("variants") or ()
        if isinstance(v, Mapping) and "name" in v
    ]
    per_metric: dict[str, dict[int, float]] = {}
    for metric, (sids, _, vals) in session_aggregates(data.batches()).items():
        per_metric[metric] = dict(zip(sids.tolist(), vals.tolist(), strict=True))
    # Issue 16: on several hosts, each set on each host is its own table group; a host whose
    # sessions ran under several fingerprints gets no table (its numbers would pool them).
    per_host = judged_per_host(data.sessions, allows_mixed_hosts(data.manifest))
    refused = {h for h, fps in host_fingerprints(data.sessions).items() if len(fps) > 1}
    rows = []
    for s in data.sessions:
        if s.get("warmup") or s.get("status") != "ok" or s.get("id") is None:
            continue
        if per_host and (not session_host(s) or session_host(s) in refused):
            continue
        try:
            sid = int(s["id"])
        except (TypeError, ValueError):
            continue
        params = s.get("params") if isinstance(s.get("params"), Mapping) else {}
        values = {m: d[sid] for m, d in per_metric.items() if sid in d}
        set_name = str(s.get("set_name", ""))
        rows.append(
            SessionValues(
                f"{set_name}{HOST_SEPARATOR}{session_host(s)}" if per_host else set_name,
                str(s.get("workload", "")),
                str(s.get("variant", "")),
                tuple((str(k), str(v)) for k, v in params.items()),
                values,
            )
        )
    gated = {m for g in gate_results for m in g.metrics}
    section = build_tables(
        rows,
        kinds=kinds,
        directions=manifest_directions(data.manifest),
        reference=reference,
        workloads=workloads,
        gated=gated,
        variant_order=variant_order,
        options=options,
    )
    section["margins"] = gate_margins(gate_results)
    if per_host:
        section["left_out"] += [
            f"host {h}: refused, its sessions ran under {len(fps)} host fingerprints "
            "([executor] allow_mixed_hosts = true pools them)"
            for h, fps in host_fingerprints(data.sessions).items()
            if h in refused
        ]
    return section


def _cell_text(c: Any) -> str:
    text = c.get("text", "") if isinstance(c, Mapping) else str(c)
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_tables_md(section: Mapping[str, Any] | None) -> list[str]:
    """Markdown lines of the ``tables`` section (``## Result tables``); empty without one."""
    if not section or (not section.get("tables") and not section.get("margins")):
        return []
    ref = section.get("reference", "first")
    ref_text = {
        "first": "each variant against the first",
        "previous": "each variant against the one before it (cumulative layers)",
    }.get(str(ref), f"each variant against {ref}")
    lines = [
        "## Result tables",
        "",
        f"Reference: {ref_text}. Medians with the order-statistic interval (Conover 1999, "
        "3.2); ratios are Hodges-Lehmann with the exact rank interval; differences the "
        "Hodges-Lehmann shift with the Moses interval; at least "
        f"{section.get('min_sessions')} sessions per side, {section.get('confidence', 0.95):.0%}.",
        "",
    ]
    margins = section.get("margins") or []
    if margins:
        lines += [
            "### Margin to each gate's threshold",
            "",
            "| gate | group | margin |",
            "|---|---|---|",
        ]
        for m in margins:
            gate, group = _cell_text(m.get("gate", "")), _cell_text(m.get("group") or "")
            lines.append(f"| {gate} | {group} | {_cell_text(m)} |")
        lines.append("")
    for t in section.get("tables") or []:
        lines += [f"### {t['title']}", ""]
        lines.append("| " + " | ".join(_cell_text(h) for h in t["header"]) + " |")
        lines.append("|" + "---|" * len(t["header"]))
        for row in t["rows"]:
            lines.append("| " + " | ".join(_cell_text(c) for c in row) + " |")
        lines.append("")
    left = section.get("left_out") or []
    if left:
        lines += [
            f"{len(left)} more table(s) left out (see report.json's limit): "
            + "; ".join(left[:20])
            + ("; ..." if len(left) > 20 else ""),
            "",
        ]
    return lines
