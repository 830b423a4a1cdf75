"""The gate language: a small expression language for release checks, never ``eval``.

A gate compares one expression over recorded metrics with a threshold (design.md section 5, in
the spirit of k6 thresholds, https://grafana.com/docs/k6/latest/using-k6/thresholds/)::

    gate      := expr OP threshold
    OP        := "<" | "<=" | ">" | ">="
    expr      := FUNC "(" SEL ")" | "ratio" "(" expr "," expr ")"
               | ("speedup" | "regression") "(" SEL "," VARIANT "," VARIANT ")"
               | ("var" | "std" | "cv") "(" SEL ["," VARIANT] ")" | "slope" "(" SEL ")"
    SEL       := METRIC [ "{" [ MATCHER { "," MATCHER } [","] ] "}" ]
    MATCHER   := LABEL ("=" | "!=" | "=~" | "!~") STRING       # PromQL selectors
    FUNC      := max | min | mean | median | sum | count | last | pNN
    threshold := a number with an optional unit: 50MB, 1ms, 1e-4, 70, 10%

Label matchers (``perfmon.core.labels``) narrow a metric to the samples of matching sessions:
``p95(chunk_seconds{variant="candidate"}) < 1ms``. A gate configured with ``by`` labels is
judged per group (``Gate.evaluate``). ``speedup`` and ``regression`` are oriented by the
metric's direction (``perfmon.core.units.metric_direction`` or the campaign's
``[metric.NAME] better``; see ``oriented``).

``pNN`` is a quantile: ``p50``, ``p95``, ``p99``, ``p99.9`` (quantile 0.999). Thresholds are parsed
with ``perfmon.core.units.parse_quantity`` and checked against the metric's unit (its name's
suffix, ``perfmon.core.model.metric_dimension``) when the gate is parsed, so that
``max(chunk_seconds) < 50MB`` is an error, not a gate that always passes. A bare number is in
the metric's base unit (seconds, bytes, percent points). ``%`` on a ``*_percent`` metric means
percent points (``70%`` is 70); on a ratio or a dimensionless expression it means a fraction
(``10%`` is 0.10).

The parser is a hand-written tokenizer plus recursive descent producing a small AST (``Expr``
subclasses). Functions are looked up in a registry (``FUNCTIONS``) mapping a name to a builder,
so that statistical functions (``speedup``, ``regression``, ``slope``) can be added without
touching the parser: a builder parses its own arguments and returns an ``Expr`` whose
evaluation may carry a confidence interval, which ``Gate.evaluate`` then judges as a whole
(pass, fail, or inconclusive when it straddles the threshold).

This module is pure: no I/O, no third-party imports.
"""

from __future__ import annotations

import math
import operator
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from perfmon.core.labels import (
    LABEL_OPS,
    Matcher,
    Selector,
    format_selector,
    selector_matches,
    session_labels,
)
from perfmon.core.model import (
    METRIC_NAME_RE,
    Dimension,
    GateResult,
    GateState,
    GroupResult,
    MetricKind,
    metric_dimension,
)
from perfmon.core.stats import DEFAULT_OPTIONS, SessionGroup, StatsOptions
from perfmon.core.units import (
    HIGHER,
    LOWER,
    format_metric,
    format_quantity,
    judgement_words,
    metric_direction,
    parse_quantity,
)

if TYPE_CHECKING:
    from perfmon.core.stats import AnytimeRatio, Comparison

__all__ = [
    "FUNCTIONS",
    "REDUCERS",
    "VERDICT_RULE",
    "Evaluation",
    "Expr",
    "Gate",
    "GateSyntaxError",
    "MetricSource",
    "Ratio",
    "Reduce",
    "SessionGroup",
    "Slope",
    "Spread",
    "VariantComparison",
    "by_values",
    "describe_change",
    "describe_oriented",
    "evaluate_gates",
    "fill_variants",
    "format_gate_value",
    "live_selections",
    "oriented",
    "parse_gate",
    "reads",
    "scope",
    "selections",
    "short_value",
    "verdict",
]

REDUCERS: tuple[str, ...] = ("max", "min", "mean", "median", "quantile", "sum", "count", "last")
"""Reductions a ``MetricSource`` must implement (``quantile`` takes ``q`` in [0, 1])."""

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

_DIMENSIONLESS = (Dimension.NONE, Dimension.RATIO, Dimension.COUNT)


class GateSyntaxError(ValueError):
    """A gate expression that does not parse or whose units do not fit.

    Attributes:
        message: what is wrong, in one sentence.
        column: 1-based column in the expression where the problem starts.
    """

    def __init__(self, message: str, column: int) -> None:
        self.message = message
        self.column = column
        super().__init__(f"{message} (column {column})")


class GateConfig(Protocol):
    """A named gate as a campaign configures it (``perfmon.core.campaign.GateConfig``, which
    imports this module: a protocol here keeps the two free of an import cycle).

    Attributes:
        name: the gate's name; gate: the parsed expression; window_s: the last seconds it
            is judged over (None: the whole run); by: labels it is judged per group of.
    """

    @property
    def name(self) -> str: ...

    @property
    def gate(self) -> Gate: ...

    @property
    def window_s(self) -> float | None: ...

    @property
    def by(self) -> tuple[str, ...]: ...


class MetricSource(Protocol):
    """Where a gate reads its data: the live state (bounded) or the recorded run (exact)."""

    def reduce(
        self,
        func: str,
        metric: str,
        *,
        q: float | None = None,
        window_s: float | None = None,
        where: Selector = (),
    ) -> tuple[float | None, int]:
        """Reduce one metric's samples to a number.

        ``where`` is passed only when not empty, so a source that serves no label matchers
        need not accept it (gates with matchers then cannot be evaluated over it).

        Args:
            func: one of ``REDUCERS``. ``count`` is the sum of increments for a counter metric
                and the number of samples otherwise.
            metric: metric name.
            q: the quantile in [0, 1] for ``func == "quantile"``.
            window_s: use only the last ``window_s`` seconds of samples (None: all).
            where: label matchers (``perfmon.core.labels``): only samples of sessions whose
                labels match all of them (machine-wide samples have no labels).

        Returns:
            ``(value, n)``: the value in the metric's base unit and the number of samples used;
            value is None when n is 0.
        """
        ...

    def kind(self, metric: str) -> MetricKind | None:
        """The metric's kind, or None if no sample of it was seen."""
        ...

    def session_groups(self) -> list[SessionGroup]:
        """The (set, workload, matrix values) groups of measured (non-warm-up) sessions.

        Returns:
            Each group once, in the order its first session was scheduled.
        """
        ...

    def session_variants(self) -> list[str]:
        """Variants of measured sessions, each once, in the order first scheduled."""
        ...

    def finished_sessions(self, group: SessionGroup) -> int:
        """The number of measured sessions of ``group`` that finished with status ``ok``."""
        ...

    def session_values(
        self,
        metric: str,
        variant: str | None,
        *,
        group: SessionGroup | None = None,
    ) -> list[float]:
        """One value of ``metric`` per measured session that finished OK, in session order.

        A session's value is, by the metric's kind: ``value`` -> its last value (e.g.
        ``session_seconds``, a parity diff); ``counter`` -> the sum of its increments;
        ``gauge`` and ``histogram`` -> the mean of its samples. Warm-up sessions, sessions
        that did not finish with status ``ok`` and machine-wide samples are left out.

        Args:
            metric: metric name.
            variant: only sessions of this variant (None: every variant).
            group: only sessions of this (set, workload, matrix values) group (None: all).
        """
        ...

    def points(
        self, metric: str, *, window_s: float | None = None, where: Selector = ()
    ) -> tuple[list[float], list[float]]:
        """The metric as a time series of at most a few hundred points, for trends (``slope``).

        Args:
            metric: metric name.
            window_s: only the last ``window_s`` seconds.
            where: label matchers, as for ``reduce`` (passed only when not empty).

        Returns:
            ``(t, values)``: times in seconds (any origin; only differences matter) and the mean
            of the samples around each time, oldest first.
        """
        ...


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The value of an expression at one moment.

    Attributes:
        value: the value in base units, or None when it cannot be computed yet.
        n: samples it was computed from.
        text: how the value reads for people, e.g. ``"p95 = 31 over 4,812 samples"``.
        missing: metrics with no samples yet (the gate is pending while any is missing).
        waiting: another reason the value is not available yet (e.g. a zero denominator).
        ci_low / ci_high: a confidence interval for statistical expressions, else None.
        groups: for expressions judged per group of sessions (``speedup``, ``var``, ...), one
            evaluation per group; ``Gate.evaluate`` judges each and the gate takes the worst.
        label: which group this evaluation is of, e.g. ``"golden pipeline chunks=200"``.
    """

    value: float | None
    n: int
    text: str = ""
    missing: frozenset[str] = frozenset()
    waiting: str = ""
    ci_low: float | None = None
    ci_high: float | None = None
    groups: tuple[Evaluation, ...] = ()
    label: str = ""


class Expr(ABC):
    """A node of the gate AST: something that evaluates to one number over a ``MetricSource``."""

    @property
    @abstractmethod
    def metrics(self) -> frozenset[str]:
        """The metric names this expression reads."""

    @property
    @abstractmethod
    def dimension(self) -> Dimension:
        """The dimension of the expression's value (time, bytes, percent, ratio, ...)."""

    @property
    @abstractmethod
    def text(self) -> str:
        """The expression in canonical source form, e.g. ``"p95(event_queue_depth)"``."""

    @abstractmethod
    def evaluate(self, source: MetricSource, window_s: float | None) -> Evaluation:
        """Evaluate over ``source``, optionally over the last ``window_s`` seconds only."""


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


@dataclass(frozen=True, slots=True)
class Reduce(Expr):
    """``FUNC(METRIC)``: one reduction of one metric's samples.

    Attributes:
        func: one of ``REDUCERS``.
        metric: metric name.
        label: the function as written (``"p95"``, ``"max"``).
        q: quantile in [0, 1] when ``func == "quantile"``.
    """

    func: str
    metric: str
    label: str
    q: float | None = None
    matchers: Selector = ()

    @property
    def metrics(self) -> frozenset[str]:
        """See ``Expr.metrics``."""
        return frozenset((self.metric,))

    @property
    def dimension(self) -> Dimension:
        """``count`` is a dimensionless count; every other reduction keeps the metric's unit."""
        if self.func == "count":
            return Dimension.COUNT
        return metric_dimension(self.metric)

    @property
    def text(self) -> str:
        """See ``Expr.text``."""
        return f"{self.label}({self.metric}{format_selector(self.matchers)})"

    def evaluate(self, source: MetricSource, window_s: float | None) -> Evaluation:
        """See ``Expr.evaluate``; with matchers, only the matching sessions' samples."""
        if self.matchers:
            value, n = source.reduce(
                self.func, self.metric, q=self.q, window_s=window_s, where=self.matchers
            )
        else:
            value, n = source.reduce(self.func, self.metric, q=self.q, window_s=window_s)
        if value is None or n == 0:
            return Evaluation(None, 0, missing=frozenset((self.metric,)))
        shown = self.format_value(value)
        return Evaluation(value, n, f"{self.label} = {shown} over {_plural(n, 'sample')}")

    def format_value(self, value: float) -> str:
        """A value of this reduction for people, in the metric's unit (``format_metric``:
        ``92.7 MB/s`` for a rate); ``count`` as a count."""
        if self.func == "count":
            return format_quantity(value, Dimension.COUNT)
        return format_metric(value, self.metric)


@dataclass(frozen=True, slots=True)
class Ratio(Expr):
    """``ratio(a, b)``: ``a / b``, e.g. the fraction of chunks that needed compression.

    A ``count`` or ``sum`` numerator with no samples while the denominator has some is 0 (no
    event happened yet), so ``ratio(count(compressions), count(chunks))`` is 0, not pending,
    before the first compression. A zero denominator leaves the gate pending.
    """

    num: Expr
    den: Expr

    @property
    def metrics(self) -> frozenset[str]:
        """See ``Expr.metrics``."""
        return self.num.metrics | self.den.metrics

    @property
    def dimension(self) -> Dimension:
        """A ratio is dimensionless."""
        return Dimension.RATIO

    @property
    def text(self) -> str:
        """See ``Expr.text``."""
        return f"ratio({self.num.text}, {self.den.text})"

    def evaluate(self, source: MetricSource, window_s: float | None) -> Evaluation:
        """See ``Expr.evaluate``."""
        den = self.den.evaluate(source, window_s)
        num = self.num.evaluate(source, window_s)
        if (
            num.value is None
            and not num.waiting
            and den.value is not None
            and isinstance(self.num, Reduce)
            and self.num.func in ("count", "sum")
        ):
            num = Evaluation(0.0, 0)
        missing = num.missing | den.missing
        if missing or num.waiting or den.waiting:
            return Evaluation(None, 0, missing=missing, waiting=num.waiting or den.waiting)
        assert num.value is not None and den.value is not None
        if den.value == 0:
            return Evaluation(None, num.n + den.n, waiting=f"{self.den.text} is 0")
        value = num.value / den.value
        shown = format_quantity(value, Dimension.RATIO)
        parts = (
            format_quantity(num.value, self.num.dimension),
            format_quantity(den.value, self.den.dimension),
        )
        return Evaluation(value, num.n + den.n, f"ratio = {shown} ({parts[0]} / {parts[1]})")


# --- statistical expressions -----------------------------------------------------------------


def _labels_of(group: SessionGroup, variant: str = "") -> dict[str, str]:
    """The labels of a (set, workload, matrix values) group's sessions of ``variant``."""
    return session_labels(
        variant=variant, workload=group.workload, set_name=group.set_name, params=group.params
    )


def _groups_or_missing(
    source: MetricSource, metric: str, matchers: Selector = ()
) -> list[SessionGroup] | Evaluation:
    """The groups a statistical gate over ``metric`` judges, or a pending evaluation.

    A group whose sessions finished without any of them emitting ``metric`` is left out: a
    campaign's other workloads (a DAG builder beside an attention kernel) do not emit every
    metric, and must not keep a gate pending forever. A group none of whose sessions has
    finished yet is kept (and is pending) until one has.
    """
    groups = source.session_groups()
    if matchers:
        # Variant matchers are judged per variant by the caller; here only the group's labels.
        scoped = tuple(m for m in matchers if m.label != "variant")
        groups = [g for g in groups if selector_matches(scoped, _labels_of(g))]
    if not groups or source.kind(metric) is None:
        return Evaluation(None, 0, missing=frozenset((metric,)))
    relevant = [
        g
        for g in groups
        if source.session_values(metric, None, group=g) or source.finished_sessions(g) == 0
    ]
    if not relevant:
        return Evaluation(None, 0, missing=frozenset((metric,)))
    return relevant


def _combine(groups: list[Evaluation], metric: str) -> Evaluation:
    """One evaluation carrying per-group evaluations; ``Gate.evaluate`` judges each."""
    if not any(g.value is not None for g in groups):
        waiting = "; ".join(g.waiting for g in groups if g.waiting) or "no value yet"
        return Evaluation(None, sum(g.n for g in groups), waiting=waiting)
    first = next(g for g in groups if g.value is not None)
    return Evaluation(
        first.value,
        first.n,
        first.text,
        ci_low=first.ci_low,
        ci_high=first.ci_high,
        groups=tuple(groups),
    )


@dataclass(frozen=True, slots=True)
class VariantComparison(Expr):
    """``speedup(METRIC, A, B)`` or ``regression(METRIC, A, B)``, per group of sessions.

    ``speedup`` is how many times better B (the candidate) is than A (the baseline) in the
    metric's ``direction``: A / B where lower is better (a time), B / A where higher is better
    (a throughput), so > 1 means B is better either way; ``regression`` is how much worse B
    is, relative to A (``< 10%`` allows B to be up to 10% worse); see ``oriented``. Label
    ``matchers`` (not on ``variant``) keep only the matching (set, workload, matrix) groups.
    By default the ratio is the Hodges-Lehmann ratio (the median of the
    ratios ``a_i / b_j``) with its exact rank interval, which keeps its stated level at every n
    (``perfmon.core.stats.compare``; ``interval = "bootstrap"`` gives the ratio of medians with
    an approximate bootstrap interval), and the p-value of the configured test, computed per
    (set, workload, matrix values) group from one value per measured session
    (``MetricSource.session_values``); each variant needs ``options.min_sessions`` sessions
    first (campaign key ``min_sessions``, default 5). The reason names the estimator, the
    interval's method and actual level, the test and n.
    ``window_s`` is not applied (the comparison uses every measured session of the group).

    Attributes:
        func: ``"speedup"`` or ``"regression"``.
        metric: metric name.
        a / b: the baseline and the candidate variant.
        options: confidence level, test and bootstrap settings.
    """

    func: str
    metric: str
    a: str
    b: str
    options: StatsOptions = DEFAULT_OPTIONS
    matchers: Selector = ()
    direction: str = LOWER

    @property
    def metrics(self) -> frozenset[str]:
        """See ``Expr.metrics``."""
        return frozenset((self.metric,))

    @property
    def dimension(self) -> Dimension:
        """A ratio (speedup) or a relative change (regression): dimensionless."""
        return Dimension.RATIO

    @property
    def text(self) -> str:
        """See ``Expr.text``."""
        return f"{self.func}({self.metric}{format_selector(self.matchers)}, {self.a}, {self.b})"

    def parse_threshold(self, text: str, pos: int) -> float:
        """A ratio (``1.4``, ``1.4x``) or a relative change (``10%``, ``0.1``).

        Raises:
            GateSyntaxError: for a threshold with a unit such as ``ms``.
        """
        if self.func == "speedup" and text.endswith("x"):
            text = text[:-1]
        return _threshold(self, text, pos)

    def evaluate(self, source: MetricSource, window_s: float | None) -> Evaluation:
        """See ``Expr.evaluate``; one ``groups`` entry per group of sessions.

        A group is pending until each variant has ``options.min_sessions`` sessions, and
        while the interval cannot reach the asked confidence at its n (``SampleTooSmall``);
        the reason says which.
        """
        from perfmon.core.stats import compare

        groups = _groups_or_missing(source, self.metric, self.matchers)
        if isinstance(groups, Evaluation):
            return groups
        out: list[Evaluation] = []
        need = self.options.min_sessions
        for group in groups:
            va = source.session_values(self.metric, self.a, group=group)
            vb = source.session_values(self.metric, self.b, group=group)
            n = len(va) + len(vb)
            if len(va) < need or len(vb) < need:
                have = min(len(va), len(vb))
                out.append(
                    Evaluation(
                        None,
                        n,
                        waiting=f"{group.label}: {have} of {need} sessions per side "
                        f"(min_sessions), n = {len(va)}/{len(vb)}",
                        label=group.label,
                    )
                )
                continue
            if self.options.inference == "anytime":
                out.append(self._anytime(va, vb, group))
                continue
            try:
                c = compare(va, vb, self.options)
            except ValueError as exc:  # SampleTooSmall too: the reason gives the best level
                out.append(Evaluation(None, n, waiting=f"{group.label}: {exc}", label=group.label))
                continue
            value, low, high = oriented(c, self.func, self.direction)
            text = (
                f"{self.func} = {describe_oriented(c, self.func, self.direction, self.metric)}, "
                "provisional until the planned n"
            )
            out.append(Evaluation(value, n, text, ci_low=low, ci_high=high, label=group.label))
        return _combine(out, self.metric)

    def _anytime(self, va: Sequence[float], vb: Sequence[float], group: SessionGroup) -> Evaluation:
        """One group's anytime-valid evaluation (``perfmon.core.stats.anytime_ratio``).

        The interval is a running-intersected confidence sequence, valid at every look, so a
        state it decides (pass or fail) is never taken back by later sessions.
        """
        from perfmon.core.stats import anytime_ratio

        n = len(va) + len(vb)
        try:
            r = anytime_ratio(
                va,
                vb,
                self.options.confidence,
                key=(self.metric, self.a, self.b, self.matchers, group),
            )
        except ValueError as exc:
            return Evaluation(None, n, waiting=f"{group.label}: {exc}", label=group.label)
        if math.isnan(r.speedup_low):
            return Evaluation(
                None,
                n,
                waiting=f"{group.label}: no shift fits the pairs (is the pairing broken?)",
                label=group.label,
            )
        value, low, high = oriented(r, self.func, self.direction)
        text = f"{self.func} = {describe_oriented(r, self.func, self.direction, self.metric)}"
        return Evaluation(value, n, text, ci_low=low, ci_high=high, label=group.label)


def _recip(x: float) -> float:
    """``1 / x`` on the extended positive axis: an anytime-valid interval's bound of 0 (or
    inf) on a ratio, ``A / B`` turned into ``B / A``, is inf (or 0), not a ZeroDivisionError."""
    if x == 0:
        return math.inf
    return 1.0 / x


def oriented(c: Comparison | AnytimeRatio, func: str, direction: str) -> tuple[float, float, float]:
    """A comparison's value and interval in the metric's direction.

    ``perfmon.core.stats.compare`` estimates ``A / B`` (the Hodges-Lehmann ratio and its exact
    rank interval); only the orientation changes here, never the statistics:

    - ``speedup``: how many times better B is, > 1 when B is better. Lower is better: ``A / B``
      (a time halved is 2x). Higher is better: ``B / A`` (a throughput doubled is 2x), the
      reciprocal estimate with the reciprocal interval (a monotone map of an interval keeps its
      coverage).
    - ``regression``: how much worse B is, relative to A, > 0 when worse. Lower is better:
      ``B / A - 1``. Higher is better: ``1 - B / A`` (throughput down 18.5% is +18.5%).

    Args:
        c: the comparison of A (baseline) with B (candidate).
        func: ``"speedup"`` or ``"regression"``.
        direction: ``"lower"`` or ``"higher"`` (``perfmon.core.units.metric_direction``).

    Returns:
        ``(value, ci_low, ci_high)``.
    """
    if direction == HIGHER:
        if func == "speedup":
            return _recip(c.speedup), _recip(c.speedup_high), _recip(c.speedup_low)
        return -c.regression, -c.regression_high, -c.regression_low
    if func == "speedup":
        return c.speedup, c.speedup_low, c.speedup_high
    return c.regression, c.regression_low, c.regression_high


def describe_change(c: Comparison | AnytimeRatio, direction: str | None, metric: str) -> str:
    """B's change against A in the metric's terms, e.g. ``"1.23x slower"`` or ``"-18.5%, worse"``.

    Args:
        c: the comparison.
        direction: ``"lower"``, ``"higher"`` or None (unknown: the change without a judgement).
        metric: the metric name (its suffix picks ``faster``/``slower`` or ``better``/``worse``).
    """
    change = 1.0 / c.speedup - 1.0  # B / A - 1, the metric's own relative change
    if direction is None:
        return f"{change:+.1%} (direction unknown)"
    good, bad = judgement_words(metric)
    better = oriented(c, "speedup", direction)[0]
    if better == 1.0:
        return f"{change:+.1%}, no change"
    if good == "faster":
        ratio = better if better > 1 else 1.0 / better
        return f"{ratio:.3g}x {good if better > 1 else bad} ({change:+.1%})"
    return f"{change:+.1%}, {good if better > 1 else bad}"


def describe_oriented(c: Comparison | AnytimeRatio, func: str, direction: str, metric: str) -> str:
    """``Comparison.describe`` in the metric's direction, with B's change in words.

    E.g. ``"0.815x [0.78, 0.85], 1.23x slower (-18.5%), 95% exact rank CI ..., n = 10/10"``.
    """
    value, low, high = oriented(c, func, direction)
    if func == "regression":
        shown = f"{value:+.1%} [{low:+.1%}, {high:+.1%}]"
    else:
        shown = f"{value:.3g}x [{low:.3g}, {high:.3g}]"
    rest = c.describe(func).split("] ", 1)[-1]  # the level, methods, p-value and n
    return f"{shown}, {describe_change(c, direction, metric)}, {rest}"


_SPREAD_FUNCS = ("var", "std", "cv")


@dataclass(frozen=True, slots=True)
class Spread(Expr):
    """``var(METRIC)``, ``std(METRIC)``, ``cv(METRIC)``, optionally ``(METRIC, VARIANT)``.

    The sample variance (``ddof=1``), standard deviation, or coefficient of variation
    (``std / mean``) across sessions: one value per measured session
    (``MetricSource.session_values``), per (set, workload, matrix values) group and per
    variant (or only ``variant``), each needing ``options.min_sessions`` sessions (campaign key
    ``min_sessions``, default 5). A stability gate
    such as ``var(motif_delta_lift) < 0.05`` holds when it holds for every group and variant.

    Attributes:
        func: ``"var"``, ``"std"`` or ``"cv"``.
        metric: metric name.
        variant: only this variant, or None for each variant separately.
        options: statistical options; only ``min_sessions`` is used.
    """

    func: str
    metric: str
    variant: str | None = None
    options: StatsOptions = DEFAULT_OPTIONS
    matchers: Selector = ()

    @property
    def metrics(self) -> frozenset[str]:
        """See ``Expr.metrics``."""
        return frozenset((self.metric,))

    @property
    def dimension(self) -> Dimension:
        """``std`` keeps the metric's unit; ``var`` (unit squared) and ``cv`` have none."""
        if self.func == "std":
            return metric_dimension(self.metric)
        return Dimension.RATIO if self.func == "cv" else Dimension.NONE

    @property
    def text(self) -> str:
        """See ``Expr.text``."""
        extra = f", {self.variant}" if self.variant else ""
        return f"{self.func}({self.metric}{format_selector(self.matchers)}{extra})"

    def evaluate(self, source: MetricSource, window_s: float | None) -> Evaluation:
        """See ``Expr.evaluate``; one ``groups`` entry per group and variant."""
        import statistics

        groups = _groups_or_missing(source, self.metric, self.matchers)
        if isinstance(groups, Evaluation):
            return groups
        variants: list[str | None]
        if self.variant is not None:
            variants = [self.variant]
        else:
            variants = list(dict.fromkeys(source.session_variants()))
        out: list[Evaluation] = []
        for group in groups:
            for variant in variants:
                if self.matchers and not selector_matches(
                    self.matchers, _labels_of(group, variant or "")
                ):
                    continue
                values = source.session_values(self.metric, variant, group=group)
                label = f"{group.label} {variant}" if variant else group.label
                n = len(values)
                need = self.options.min_sessions
                if n < need:
                    out.append(
                        Evaluation(
                            None,
                            n,
                            waiting=f"{label}: {n} of {need} sessions (min_sessions)",
                            label=label,
                        )
                    )
                    continue
                std = statistics.stdev(values)
                mean = statistics.fmean(values)
                if self.func == "var":
                    value = std * std
                elif self.func == "std":
                    value = std
                elif mean == 0:
                    out.append(Evaluation(None, n, waiting=f"{label}: mean is 0", label=label))
                    continue
                else:
                    value = std / abs(mean)
                shown = format_quantity(value, self.dimension)
                text = f"{self.func} = {shown} over {_plural(n, 'session')}"
                out.append(Evaluation(value, n, text, label=label))
        return _combine(out, self.metric)


_RATE_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True, slots=True)
class Slope(Expr):
    """``slope(METRIC)``: the metric's trend, Theil-Sen, in its unit per second.

    Computed over the metric's time series as ``MetricSource.points`` gives it (bucket means,
    at most a few hundred points) with ``perfmon.core.stats.theil_sen`` and its confidence
    interval, so ``slope(rss_bytes) < 1MiB/h`` passes once the whole interval is below
    1 MiB per hour. The threshold must be a rate: a quantity in the metric's unit, ``/``, and
    ``s``, ``min``, ``h`` or ``d``. Needs at least 3 points.

    Attributes:
        metric: metric name.
        options: its ``confidence`` is the interval's level.
    """

    metric: str
    options: StatsOptions = DEFAULT_OPTIONS
    matchers: Selector = ()

    @property
    def metrics(self) -> frozenset[str]:
        """See ``Expr.metrics``."""
        return frozenset((self.metric,))

    @property
    def dimension(self) -> Dimension:
        """The metric's unit (per second)."""
        return metric_dimension(self.metric)

    @property
    def text(self) -> str:
        """See ``Expr.text``."""
        return f"slope({self.metric}{format_selector(self.matchers)})"

    def format_rate(self, per_s: float) -> str:
        """A rate for people, per hour: ``"1.2 MiB/h"``."""
        return f"{format_quantity(per_s * 3600.0, self.dimension)}/h"

    def parse_threshold(self, text: str, pos: int) -> float:
        """Parse a rate such as ``1MiB/h`` into the metric's base unit per second.

        Raises:
            GateSyntaxError: if it is not a rate or its unit does not fit the metric.
        """
        amount, sep, per = text.partition("/")
        per = per.strip()
        if not sep or per not in _RATE_UNITS:
            raise GateSyntaxError(
                f"slope needs a rate such as 1MiB/h (per s, min, h or d), got {text!r}", pos + 1
            )
        value = _threshold(Reduce("max", self.metric, "slope"), amount.strip(), pos)
        return value / _RATE_UNITS[per]

    def evaluate(self, source: MetricSource, window_s: float | None) -> Evaluation:
        """See ``Expr.evaluate``."""
        from perfmon.core.stats import theil_sen

        if self.matchers:
            t, values = source.points(self.metric, window_s=window_s, where=self.matchers)
        else:
            t, values = source.points(self.metric, window_s=window_s)
        if not t:
            return Evaluation(None, 0, missing=frozenset((self.metric,)))
        trend = theil_sen(t, values, self.options.confidence)
        if trend is None:
            return Evaluation(None, len(t), waiting=f"{len(t)} points of {self.metric}, need 3")
        level = f"{self.options.confidence:.0%}"
        text = (
            f"slope = {self.format_rate(trend.slope)} [{self.format_rate(trend.low)}, "
            f"{self.format_rate(trend.high)}] {level} CI over "
            f"{_plural(trend.n, 'point')} ({format_quantity(trend.span_s, Dimension.TIME)})"
        )
        return Evaluation(trend.slope, trend.n, text, ci_low=trend.low, ci_high=trend.high)


# --- tokenizer ------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<op><=|>=|<|>|==|=~|!~|!=|=)
  | (?P<punct>[(),{}])
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*(?:\.[0-9]+)?)
  | (?P<number>[+-]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[A-Za-zµ%/]*)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "op", "punct", "ident", "number", "string", "end"
    text: str
    pos: int  # 0-based offset in the expression


class _Parser:
    """Recursive-descent parser over a lazily tokenized expression."""

    def __init__(
        self,
        source: str,
        stats: StatsOptions = DEFAULT_OPTIONS,
        directions: Mapping[str, str] | None = None,
        default_direction: str | None = None,
    ) -> None:
        self.source = source
        self.pos = 0
        self._peeked: _Token | None = None
        self.stats = stats
        self.directions = directions or {}
        self.default_direction = default_direction

    def error(self, message: str, pos: int) -> GateSyntaxError:
        return GateSyntaxError(message, pos + 1)

    def peek(self) -> _Token:
        if self._peeked is None:
            self._peeked = self._lex()
        return self._peeked

    def next(self) -> _Token:
        tok = self.peek()
        self._peeked = None
        return tok

    def _lex(self) -> _Token:
        while True:
            if self.pos >= len(self.source):
                return _Token("end", "", len(self.source))
            m = _TOKEN_RE.match(self.source, self.pos)
            if m is None:
                raise self.error(f"unexpected character {self.source[self.pos]!r}", self.pos)
            start, self.pos = self.pos, m.end()
            kind = m.lastgroup
            assert kind is not None
            if kind != "space":
                return _Token(kind, m.group(), start)

    def rest(self) -> tuple[str, int]:
        """The untokenized remainder (the threshold) and its offset, whitespace stripped."""
        assert self._peeked is None
        text = self.source[self.pos :]
        stripped = text.lstrip()
        return stripped.rstrip(), self.pos + (len(text) - len(stripped))

    def expect(self, text: str, after: str) -> _Token:
        tok = self.next()
        if tok.text != text or tok.kind not in ("punct", "op"):
            found = repr(tok.text) if tok.kind != "end" else "the end"
            raise self.error(f"expected {text!r} {after}, found {found}", tok.pos)
        return tok

    def expr(self) -> Expr:
        tok = self.next()
        if tok.kind != "ident":
            found = repr(tok.text) if tok.kind != "end" else "the end"
            raise self.error(
                f"expected a function such as p95(...), max(...) or ratio(...), found {found}",
                tok.pos,
            )
        builder = _builder(tok.text)
        if builder is None:
            known = ", ".join([*FUNCTIONS, "pNN"])
            raise self.error(f"unknown function {tok.text!r} (known: {known})", tok.pos)
        self.expect("(", f"after {tok.text}")
        return builder(self, tok.text, tok.pos)

    def metric(self, func: str) -> str:
        tok = self.next()
        if tok.kind != "ident" or not METRIC_NAME_RE.match(tok.text):
            found = repr(tok.text) if tok.kind != "end" else "the end"
            raise self.error(f"expected a metric name in {func}(...), found {found}", tok.pos)
        return tok.text

    def selection(self, func: str) -> tuple[str, Selector, int]:
        """A metric name with optional label matchers: ``name{label="v", ...}``.

        Returns:
            ``(metric, selector, pos)``: ``pos`` the metric's 0-based offset.
        """
        pos = self.peek().pos
        metric = self.metric(func)
        if self.peek().text != "{" or self.peek().kind != "punct":
            return metric, (), pos
        self.next()
        matchers: list[Matcher] = []
        while True:
            tok = self.next()
            if tok.kind == "punct" and tok.text == "}":
                break
            if tok.kind != "ident" or not _LABEL_RE.match(tok.text):
                found = repr(tok.text) if tok.kind != "end" else "the end"
                raise self.error(
                    f'expected a label name such as variant="candidate" in {metric}{{...}}, '
                    f"found {found}",
                    tok.pos,
                )
            op = self.next()
            if op.kind != "op" or op.text not in LABEL_OPS:
                found = repr(op.text) if op.kind != "end" else "the end"
                raise self.error(
                    f"expected a label matcher ({', '.join(LABEL_OPS)}) after {tok.text}, "
                    f"found {found}",
                    op.pos,
                )
            val = self.next()
            if val.kind != "string":
                found = repr(val.text) if val.kind != "end" else "the end"
                raise self.error(
                    f'expected a quoted value after {tok.text}{op.text} (e.g. "candidate"), '
                    f"found {found}",
                    val.pos,
                )
            try:
                matchers.append(Matcher(tok.text, op.text, _unquote(val.text)))
            except ValueError as exc:
                raise self.error(str(exc), val.pos) from None
            sep = self.next()
            if sep.kind == "punct" and sep.text == "}":
                break
            if sep.kind != "punct" or sep.text != ",":
                found = repr(sep.text) if sep.kind != "end" else "the end"
                raise self.error(
                    f"expected ',' or '}}' after a label matcher, found {found}", sep.pos
                )
        labels = [m.label for m in matchers if m.op == "="]
        for label in labels:
            if labels.count(label) > 1:
                raise self.error(f"label {label!r} is matched with '=' twice", pos)
        return metric, tuple(matchers), pos

    def direction(self, metric: str, func: str, pos: int) -> str:
        """The metric's direction for ``speedup``/``regression``; an error when unknown."""
        found = metric_direction(metric, self.directions) or self.default_direction
        if found is None:
            raise self.error(
                f"{func} needs to know whether {metric} is better lower or higher: its name "
                f"has no unit suffix that says (_seconds, _bytes: lower; _per_second: higher); "
                f'set [metric.{metric}] better = "lower" or "higher" in the campaign',
                pos,
            )
        return found


# --- function registry ------------------------------------------------------------------------

Builder = Callable[[_Parser, str, int], Expr]
"""Parses a function's arguments (after its ``(``, up to and including ``)``) into an ``Expr``.

Arguments: the parser, the function name as written, its 0-based offset in the expression.
"""


def _unquote(text: str) -> str:
    """A string token's value: quotes removed, ``\\"`` and ``\\\\`` unescaped."""
    return re.sub(r"\\(.)", r"\1", text[1:-1])


_LABEL_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _reducer(func: str) -> Builder:
    def build(parser: _Parser, name: str, pos: int) -> Expr:
        metric, selector, _ = parser.selection(name)
        parser.expect(")", f"after {name}({metric}")
        return Reduce(func, metric, name, matchers=selector)

    return build


def _quantile(parser: _Parser, name: str, pos: int) -> Expr:
    q = float(name[1:]) / 100.0
    if not 0.0 <= q <= 1.0:
        raise parser.error(f"quantile {name} is not between p0 and p100", pos)
    metric, selector, _ = parser.selection(name)
    parser.expect(")", f"after {name}({metric}")
    return Reduce("quantile", metric, name, q, matchers=selector)


def _ratio(parser: _Parser, name: str, pos: int) -> Expr:
    num = parser.expr()
    parser.expect(",", "between ratio's two arguments")
    den = parser.expr()
    parser.expect(")", "after ratio's second argument")
    return Ratio(num, den)


def _variant(parser: _Parser, name: str) -> str:
    tok = parser.next()
    if tok.kind != "ident":
        found = repr(tok.text) if tok.kind != "end" else "the end"
        raise parser.error(f"expected a variant name in {name}(...), found {found}", tok.pos)
    return tok.text


def _comparison(parser: _Parser, name: str, pos: int) -> Expr:
    metric, selector, mpos = parser.selection(name)
    for m in selector:
        if m.label == "variant":
            raise parser.error(
                f"{name} compares the two variants given as its arguments; a variant "
                f"matcher on its metric is not allowed",
                mpos,
            )
    direction = parser.direction(metric, name, mpos)
    parser.expect(",", f"after {name}({metric} (usage: {name}(METRIC, BASELINE, CANDIDATE))")
    a = _variant(parser, name)
    parser.expect(",", f"after {name}({metric}, {a} (usage: {name}(METRIC, BASELINE, CANDIDATE))")
    b = _variant(parser, name)
    if a == b:
        raise parser.error(f"{name} compares two different variants, got {a!r} twice", pos)
    parser.expect(")", f"after {name}({metric}, {a}, {b}")
    return VariantComparison(name, metric, a, b, parser.stats, selector, direction)


def _spread(parser: _Parser, name: str, pos: int) -> Expr:
    metric, selector, _ = parser.selection(name)
    variant: str | None = None
    if parser.peek().text == ",":
        parser.next()
        variant = _variant(parser, name)
    parser.expect(")", f"after {name}({metric}")
    return Spread(name, metric, variant, parser.stats, selector)


def _slope(parser: _Parser, name: str, pos: int) -> Expr:
    metric, selector, _ = parser.selection(name)
    parser.expect(")", f"after {name}({metric}")
    return Slope(metric, parser.stats, selector)


FUNCTIONS: dict[str, Builder] = {
    **{f: _reducer(f) for f in ("max", "min", "mean", "median", "sum", "count", "last")},
    "ratio": _ratio,
    "speedup": _comparison,
    "regression": _comparison,
    **{f: _spread for f in _SPREAD_FUNCS},
    "slope": _slope,
}
"""Function name -> builder. ``pNN`` quantiles are matched by pattern, not listed here."""

_QUANTILE_RE = re.compile(r"p\d{1,3}(?:\.\d+)?\Z")


def _builder(name: str) -> Builder | None:
    if name in FUNCTIONS:
        return FUNCTIONS[name]
    if _QUANTILE_RE.match(name):
        return _quantile
    return None


# --- gates ------------------------------------------------------------------------------------


def _describe(expr: Expr) -> str:
    dim = expr.dimension
    if isinstance(expr, Reduce) and expr.func != "count":
        unit = {
            Dimension.TIME: "time",
            Dimension.BYTES: "bytes",
            Dimension.PERCENT: "a percentage",
            Dimension.RATIO: "a ratio",
            Dimension.COUNT: "a count",
            Dimension.NONE: "without unit",
        }[dim]
        return f"metric {expr.metric} is {unit}"
    return f"{expr.text} is {'a ratio' if dim is Dimension.RATIO else 'a count'}"


def _threshold(expr: Expr, text: str, pos: int) -> float:
    """Parse ``text`` as a threshold for ``expr``, in ``expr``'s base unit."""
    try:
        value, dim = parse_quantity(text)
    except ValueError as exc:
        raise GateSyntaxError(f"bad threshold: {exc}", pos + 1) from None
    if math.isnan(value):
        raise GateSyntaxError(f"bad threshold {text!r}", pos + 1)
    target = expr.dimension
    if dim is Dimension.NONE:
        return value
    if dim is Dimension.PERCENT:
        if target is Dimension.PERCENT:
            return value
        if target in _DIMENSIONLESS:
            return value / 100.0
        raise GateSyntaxError(f"threshold {text} is a percentage but {_describe(expr)}", pos + 1)
    if dim is not target:
        raise GateSyntaxError(f"threshold {text} is {dim.value} but {_describe(expr)}", pos + 1)
    return value


@dataclass(frozen=True, slots=True)
class Gate:
    """A parsed gate expression.

    Attributes:
        expr: the expression as written.
        op: the comparison, one of ``<``, ``<=``, ``>``, ``>=``.
        threshold: the limit in the left-hand side's base unit (seconds, bytes, percent
            points, plain ratio).
        threshold_text: the limit as written, e.g. ``"50MB"``.
        lhs: the left-hand side's AST.
    """

    expr: str
    op: str
    threshold: float
    threshold_text: str
    lhs: Expr = field(compare=False)
    direction: str = ""

    def annotate(self, result: GateResult) -> GateResult:
        """``result`` with this gate's grammar filled in: ``op``, ``threshold``,
        ``threshold_text``, ``limit``, ``unit``, ``rate``, ``direction`` and ``selections``
        (see ``perfmon.core.model.GateResult``), so that readers never parse ``expr``."""
        return replace(
            result,
            op=self.op,
            threshold=self.threshold,
            threshold_text=self.threshold_text,
            limit=self.limit_text,
            unit=self.lhs.dimension.value,
            rate=isinstance(self.lhs, Slope),
            direction=self.direction,
            selections=tuple(
                (metric, tuple((m.label, m.op, m.value) for m in matchers))
                for metric, matchers in reads(self.lhs)
            ),
            func=_func_of(self.lhs),
        )

    @property
    def metrics(self) -> frozenset[str]:
        """Every metric name the gate reads."""
        return self.lhs.metrics

    @property
    def limit_text(self) -> str:
        """The limit for people, e.g. ``"< 47.7 MiB (50MB)"`` or ``"< 100"``."""
        if isinstance(self.lhs, Slope):
            shown = self.lhs.format_rate(self.threshold)
        elif isinstance(self.lhs, Reduce):
            shown = self.lhs.format_value(self.threshold)
        else:
            shown = format_quantity(self.threshold, self.lhs.dimension)
        if shown != self.threshold_text:
            shown = f"{shown} ({self.threshold_text})"
        return f"{self.op} {shown}"

    def judge(self, ev: Evaluation) -> GateState:
        """The state of one evaluation against the threshold (see ``evaluate``)."""
        if ev.missing or ev.waiting or ev.value is None:
            return GateState.PENDING
        compare = OPERATORS[self.op]
        if ev.ci_low is not None and ev.ci_high is not None:
            low_ok = compare(ev.ci_low, self.threshold)
            high_ok = compare(ev.ci_high, self.threshold)
            if low_ok and high_ok:
                return GateState.PASS
            if not low_ok and not high_ok:
                return GateState.FAIL
            return GateState.INCONCLUSIVE
        return GateState.PASS if compare(ev.value, self.threshold) else GateState.FAIL

    def judge_groups(self, ev: Evaluation) -> list[tuple[Evaluation, GateState]]:
        """Each group of a per-group evaluation with its own state, in group order."""
        return [(g, self.judge(g)) for g in ev.groups]

    def _judge_groups(self, ev: Evaluation, name: str) -> GateResult:
        """The gate over per-group evaluations: the worst group decides, as ``verdict`` does.

        FAIL if any group fails, else PENDING if any is pending, else INCONCLUSIVE if any is,
        else PASS. Value, interval and reason are the deciding group's; with several groups
        the reason names it and counts the groups' states.
        """
        judged = self.judge_groups(ev)
        state = verdict([_STATE_ONLY[s] for _, s in judged])
        deciding = next(g for g, s in judged if s is state)
        text = deciding.text or f"waiting: {deciding.waiting or 'no value yet'}"
        if len(judged) > 1 and deciding.label and not text.startswith(deciding.label):
            text = f"{deciding.label}: {text}"
        reason = f"{text}, limit {self.limit_text}"
        if len(judged) > 1:
            summary = _state_counts(s for _, s in judged)
            reason = f"{reason} ({len(judged)} groups: {summary})"
        groups = tuple(
            GroupResult(
                g.label,
                s,
                g.value,
                g.n,
                f"{g.text or 'waiting: ' + (g.waiting or 'no value yet')}, limit {self.limit_text}",
                g.ci_low,
                g.ci_high,
            )
            for g, s in judged
        )
        return GateResult(
            name,
            self.expr,
            state,
            deciding.value,
            deciding.n,
            reason,
            ci_low=deciding.ci_low,
            ci_high=deciding.ci_high,
            groups=groups,
            per_set=_per_set(judged, self.lhs),
        )

    def _evaluate_by(
        self, source: MetricSource, name: str, window_s: float | None, by: Sequence[str]
    ) -> GateResult:
        """The gate judged once per value of the ``by`` labels (see ``evaluate``)."""
        combos = by_values(source, by)
        if not combos:
            reason = f"waiting for sessions with label{'s' if len(by) > 1 else ''} {', '.join(by)}"
            return GateResult(name, self.expr, GateState.PENDING, None, 0, reason)
        results: list[tuple[str, GateResult]] = []
        silent: list[tuple[str, GateResult]] = []
        for combo in combos:
            label = " ".join(f"{k}={v}" for k, v in combo)
            extra = tuple(Matcher(k, "=", v) for k, v in combo)
            scoped = replace(self, lhs=scope(self.lhs, extra))
            r = scoped._evaluate(source, name, window_s, ())
            if (
                r.reason.startswith("waiting for samples")
                and _finished(source, combo)
                and not getattr(source, "selections_full", False)  # a live state over its cap
            ):
                # Its sessions finished without emitting the metric (another workload's
                # group): left out, as statistical gates leave such groups out.
                silent.append((label, r))
                continue
            results.append((label, r))
        if not results:
            results = silent
        state = verdict([r for _, r in results])
        label, deciding = next((lab, r) for lab, r in results if r.state is state)
        summary = _state_counts(r.state for _, r in results)
        reason = f"{label}: {deciding.reason} ({len(results)} groups by {', '.join(by)}: {summary})"
        groups = tuple(
            GroupResult(lab, r.state, r.value, r.n, r.reason, r.ci_low, r.ci_high)
            for lab, r in results
        )
        return GateResult(
            name,
            self.expr,
            state,
            deciding.value,
            deciding.n,
            reason,
            ci_low=deciding.ci_low,
            ci_high=deciding.ci_high,
            groups=groups,
        )

    def evaluate(
        self,
        source: MetricSource,
        name: str,
        *,
        window_s: float | None = None,
        by: Sequence[str] = (),
    ) -> GateResult:
        """Evaluate the gate now.

        Args:
            source: the data.
            name: the gate's name, copied into the result.
            window_s: evaluate over the last ``window_s`` seconds only (None: all data).
            by: label names (``variant``, ``workload``, ``set``, matrix keys): judge the gate
                once per combination of their values among the measured sessions (each
                group's expression gets ``label="value"`` matchers added), list every group
                in ``GateResult.groups``, and take the worst group's state (fail, then
                pending, then inconclusive, then pass: as ``verdict`` does for a run).
                Sessions that lack one of the labels (a workload without that matrix key)
                are in no group, and a group whose sessions finished without emitting the
                metric (another workload's) is left out, as statistical gates do.

        Returns:
            PENDING while a metric has no samples (or a ratio's denominator is 0), else PASS or
            FAIL by comparing the value with the threshold. Where the expression carries a
            confidence interval, PASS needs the whole interval on the passing side, FAIL the
            whole interval on the failing side, and anything else is INCONCLUSIVE. The
            result carries the gate's grammar (``annotate``).
        """
        return self.annotate(self._evaluate(source, name, window_s, by))

    def _evaluate(
        self, source: MetricSource, name: str, window_s: float | None, by: Sequence[str]
    ) -> GateResult:
        """``evaluate`` without the grammar fields."""
        if by:
            return self._evaluate_by(source, name, window_s, by)
        ev = self.lhs.evaluate(source, window_s)
        if ev.groups:
            return self._judge_groups(ev, name)
        if ev.missing or ev.waiting or ev.value is None:
            if ev.missing:
                reason = f"waiting for samples of {', '.join(sorted(ev.missing))}"
            else:
                reason = f"waiting: {ev.waiting or 'no value yet'}"
            return GateResult(name, self.expr, GateState.PENDING, None, ev.n, reason)
        compare = OPERATORS[self.op]
        if ev.ci_low is not None and ev.ci_high is not None:
            low_ok = compare(ev.ci_low, self.threshold)
            high_ok = compare(ev.ci_high, self.threshold)
            if low_ok and high_ok:
                state = GateState.PASS
            elif not low_ok and not high_ok:
                state = GateState.FAIL
            else:
                state = GateState.INCONCLUSIVE
        else:
            state = GateState.PASS if compare(ev.value, self.threshold) else GateState.FAIL
        reason = f"{ev.text}, limit {self.limit_text}"
        return GateResult(
            name, self.expr, state, ev.value, ev.n, reason, ci_low=ev.ci_low, ci_high=ev.ci_high
        )


def _state_counts(states: Iterable[GateState]) -> str:
    """How many groups are in each state, in first-seen order: ``"2 pass, 1 fail"``."""
    counts: dict[GateState, int] = {}
    for st in states:
        counts[st] = counts.get(st, 0) + 1
    return ", ".join(f"{c} {st.value}" for st, c in counts.items())


VERDICT_RULE = (
    "verdict: pass only if every gate passes in every set "
    "(any fail: fail; else any pending: pending; else any inconclusive: inconclusive)"
)
"""The rule that makes a run's verdict from its gates and sets, written on the board and in
the report (``verdict``; a gate judged per group of sessions takes its worst group)."""


def _short(ev: Evaluation, lhs: Expr | None = None) -> str:
    """A group's value for the board, in the expression's terms: ``"6.21x [5.71, 19.1]"`` for
    a speedup, ``"+8.34% [+2.1%, +14.6%]"`` for a regression (a relative change, never the
    fraction 0.0834), ``"3.2 ms"`` for a metric's value, or ``"n = 3"``."""
    if ev.value is None:
        return f"n = {ev.n}"

    def fmt(v: float) -> str:
        if isinstance(lhs, VariantComparison):
            return f"{v:+.1%}" if lhs.func == "regression" else f"{v:.3g}x"
        if isinstance(lhs, Slope):
            return lhs.format_rate(v)
        if isinstance(lhs, Reduce):
            return lhs.format_value(v)
        if lhs is not None:
            return format_quantity(v, lhs.dimension)
        return f"{v:.3g}"

    if ev.ci_low is not None and ev.ci_high is not None:
        return f"{fmt(ev.value)} [{fmt(ev.ci_low)}, {fmt(ev.ci_high)}]"
    return fmt(ev.value)


def short_value(gate: Gate, result: GateResult) -> str:
    """A result's value for the board's per-group line, in the gate's terms (``_short``):
    ``"6.21x [5.71, 19.1]"``, ``"3.2 ms"``, or ``"n = 3"`` while it has no value.

    Args:
        gate: the parsed gate the result is of.
        result: one evaluation's result of it.
    """
    ev = Evaluation(result.value, result.n, ci_low=result.ci_low, ci_high=result.ci_high)
    return _short(ev, gate.lhs)


def _per_set(
    judged: list[tuple[Evaluation, GateState]], lhs: Expr | None = None
) -> tuple[tuple[str, str, str], ...]:
    """Each set's state over its groups (the worst, as ``verdict``), with the deciding group's
    short value; a set none of whose groups has a session yet is ``"not started"``. The set is
    a group label's first word (``SessionGroup.label``)."""
    by_set: dict[str, list[tuple[Evaluation, GateState]]] = {}
    for ev, st in judged:
        by_set.setdefault(ev.label.split(" ", 1)[0] if ev.label else "", []).append((ev, st))
    out: list[tuple[str, str, str]] = []
    for name, items in by_set.items():
        if all(ev.n == 0 for ev, _ in items):
            out.append((name, "not started", ""))
            continue
        state = verdict([_STATE_ONLY[s] for _, s in items])
        deciding = next(ev for ev, s in items if s is state)
        text = _short(deciding, lhs)
        if len(items) > 1:
            text = f"{text} ({len(items)} groups)"
        out.append((name, state.value, text))
    return tuple(out)


def parse_gate(
    expr: str,
    *,
    stats: StatsOptions | None = None,
    directions: Mapping[str, str] | None = None,
    default_direction: str | None = None,
) -> Gate:
    """Parse a gate expression such as ``"p95(event_queue_depth) < 100"``.

    Args:
        expr: the expression as written in the campaign.
        stats: how statistical functions (``speedup``, ``regression``, ``slope``) compute
            their intervals (default ``StatsOptions()``: 95%, Mann-Whitney, 9999 resamples).
        directions: metric name -> ``"lower"`` or ``"higher"`` (the campaign's
            ``[metric.NAME] better``); other metrics' directions come from their unit suffix
            (``perfmon.core.units.metric_direction``).
        default_direction: the direction of a metric neither gives (None: ``speedup`` and
            ``regression`` on it are an error). Only for re-reading runs recorded before
            directions existed, which were judged lower-is-better.

    Returns:
        The parsed gate, its threshold converted to the left-hand side's base unit.

    Raises:
        GateSyntaxError: if the expression does not parse, names an unknown function, or its
            threshold's unit does not fit the metric (e.g. bytes against a ``*_seconds`` metric),
            a label matcher is malformed, a threshold is not finite, or ``speedup`` /
            ``regression`` names a metric of unknown direction.
    """
    parser = _Parser(expr, stats or DEFAULT_OPTIONS, directions, default_direction)
    lhs = parser.expr()
    tok = parser.next()
    if tok.kind != "op":
        found = repr(tok.text) if tok.kind != "end" else "the end"
        raise parser.error(f"expected a comparison (<, <=, >, >=), found {found}", tok.pos)
    if tok.text not in OPERATORS:
        raise parser.error(f"unsupported comparison {tok.text!r} (use <, <=, > or >=)", tok.pos)
    text, pos = parser.rest()
    if not text:
        raise parser.error(f"expected a threshold after {tok.text!r}", pos)
    if isinstance(lhs, Slope | VariantComparison):
        threshold = lhs.parse_threshold(text, pos)
    else:
        threshold = _threshold(lhs, text, pos)
    if not math.isfinite(threshold):
        raise GateSyntaxError(f"threshold {text!r} is not a finite number", pos + 1)
    if isinstance(lhs, VariantComparison):
        direction = lhs.direction
    elif isinstance(lhs, Reduce | Spread | Slope):
        direction = metric_direction(lhs.metric, directions) or ""
    else:
        direction = ""  # a ratio of two expressions: no one metric's direction
    return Gate(expr, tok.text, threshold, text, lhs, direction)


def fill_variants(expr: str, a: str, b: str) -> tuple[str, bool]:
    """``regression(m) > 5%`` -> ``regression(m, A, B) > 5%``: ``speedup``/``regression``
    written with a metric (and its matchers) alone get the variants ``a`` and ``b`` filled in,
    as ``perfmon compare --fail-if`` writes them. Read with this module's tokenizer, so the
    metric and matchers are those ``parse_gate`` would read.

    Args:
        expr: a gate expression.
        a / b: the baseline's and the candidate's variant names.

    Returns:
        ``(expression, rewritten)``: ``expr`` unchanged and False when it is not such a call
        (including when it does not parse: ``parse_gate`` then says why).
    """
    parser = _Parser(expr)
    try:
        func = parser.next()
        if func.kind != "ident" or func.text not in ("speedup", "regression"):
            return expr, False
        parser.expect("(", f"after {func.text}")
        start = parser.peek().pos
        parser.selection(func.text)
        close = parser.next()
    except GateSyntaxError:
        return expr, False
    if close.kind != "punct" or close.text != ")":
        return expr, False
    inner = expr[start : close.pos].rstrip()
    return f"{func.text}({inner}, {a}, {b}){expr[close.pos + 1 :]}", True


_SAME_UNIT_FUNCS = frozenset(REDUCERS) - {"count"}
"""Reductions whose value is in its metric's unit (``max(x_bytes)`` is bytes)."""


def _func_of(expr: Expr) -> str:
    """The function an expression's value comes from (``GateResult.func``)."""
    if isinstance(expr, Reduce):
        return expr.label if expr.func == "quantile" else expr.func
    if isinstance(expr, VariantComparison | Spread):
        return expr.func
    if isinstance(expr, Ratio):
        return "ratio"
    if isinstance(expr, Slope):
        return "slope"
    return ""


def format_gate_value(
    value: float, unit: str, rate: bool = False, func: str = "", metric: str = ""
) -> str:
    """A gate's value, interval end or threshold for people, in the gate's unit.

    Args:
        value: in the gate's base unit (seconds, bytes, percent points, plain ratio), per
            second when ``rate``.
        unit: ``GateResult.unit``: a ``Dimension`` value, "" when unknown (shown as a plain
            number).
        rate: ``GateResult.rate``: shown per hour, as ``Slope.format_rate`` does
            (``"1.2 MiB/h"``).
        func: ``GateResult.func``: a ``regression`` reads as a signed percentage
            (``"+8.34%"``), a ``speedup`` as a factor (``"1.39x"``), a reduction of a metric
            in the metric's unit with rates humanised (``"92.7 MB/s"``; needs ``metric``).
        metric: the metric the gate reads (``GateResult.metrics[0]``), "" when unknown.

    Returns:
        E.g. ``"1.3 ms"``, ``"48 MiB"``, ``"63.2%"``, ``"1.4"``, ``"1.2 MiB/h"``, ``"+8.34%"``,
        ``"1.39x"``.
    """
    if func == "regression":
        return f"{value:+.2%}"
    if func == "speedup":
        return f"{value:.3g}x"
    try:
        dim = Dimension(unit) if unit else Dimension.NONE
    except ValueError:
        dim = Dimension.NONE
    if rate:
        return f"{format_quantity(value * 3600.0, dim)}/h"
    if metric and _func_base(func) in _SAME_UNIT_FUNCS:
        return format_metric(value, metric)
    return format_quantity(value, dim)


def _func_base(func: str) -> str:
    """A reduction's function from its label: ``p99.9`` and ``p95`` are quantiles."""
    return "quantile" if re.fullmatch(r"p[0-9]+(?:\.[0-9]+)?", func) else func


def reads(expr: Expr) -> list[tuple[str, Selector]]:
    """Every ``(metric, matchers)`` an expression reads, in expression order (unlike
    ``selections``, also those of statistical functions over session values); an expression
    type added to ``FUNCTIONS`` from outside gives its ``metrics`` without matchers."""
    if isinstance(expr, Ratio):
        return reads(expr.num) + reads(expr.den)
    if isinstance(expr, Reduce | VariantComparison | Spread | Slope):
        return [(expr.metric, expr.matchers)]
    return [(m, ()) for m in sorted(expr.metrics)]


def evaluate_gates(gates: Sequence[GateConfig], source: MetricSource) -> list[GateResult]:
    """Evaluate every gate of a campaign, each over its own window.

    Args:
        gates: the campaign's gates, in order.
        source: the data.

    Returns:
        One result per gate, in the same order.
    """
    return [
        g.gate.evaluate(source, g.name, window_s=g.window_s, by=g.by)
        if g.by
        else g.gate.evaluate(source, g.name, window_s=g.window_s)
        for g in gates
    ]


def scope(expr: Expr, extra: Selector) -> Expr:
    """``expr`` with ``extra`` label matchers added to every metric it reads.

    Args:
        expr: an expression.
        extra: matchers to add (e.g. ``events="512"`` for one group of a ``by`` gate).

    Raises:
        TypeError: for an expression type this function does not know.
    """
    if isinstance(expr, Ratio):
        return Ratio(scope(expr.num, extra), scope(expr.den, extra))
    if isinstance(expr, Reduce | VariantComparison | Spread | Slope):
        return replace(expr, matchers=(*expr.matchers, *extra))
    raise TypeError(f"cannot add label matchers to {type(expr).__name__}")


def selections(expr: Expr) -> list[tuple[str, Selector]]:
    """Every ``(metric, matchers)`` an expression reads sample by sample (``Reduce`` and
    ``slope``), for a live state that keeps one aggregate per selection."""
    if isinstance(expr, Ratio):
        return selections(expr.num) + selections(expr.den)
    if isinstance(expr, Reduce | Slope):
        return [(expr.metric, expr.matchers)]
    return []


def live_selections(gates: Sequence[GateConfig]) -> list[tuple[str, Selector, tuple[str, ...]]]:
    """``(metric, matchers, by)`` for every labelled or ``by`` selection the gates read sample by
    sample: what ``perfmon.core.live.LiveState(selections=...)`` keeps aggregates for."""
    out: list[tuple[str, Selector, tuple[str, ...]]] = []
    for g in gates:
        for metric, selector in selections(g.gate.lhs):
            if selector or g.by:
                out.append((metric, selector, tuple(g.by)))
    return out


def _finished(source: MetricSource, combo: Sequence[tuple[str, str]]) -> bool:
    """Whether a session of a ``by`` group (its label values) has finished OK."""
    wanted = {k: v for k, v in combo if k != "variant"}
    for group in source.session_groups():
        labels = _labels_of(group)
        if all(labels.get(k) == v for k, v in wanted.items()) and source.finished_sessions(group):
            return True
    return False


def by_values(source: MetricSource, by: Sequence[str]) -> list[tuple[tuple[str, str], ...]]:
    """The combinations of the ``by`` labels' values among the measured sessions, in the order
    first scheduled; sessions lacking one of the labels give none.

    Args:
        source: the data (its ``session_groups`` and ``session_variants``).
        by: label names.
    """
    variants = source.session_variants() if "variant" in by else [""]
    out: dict[tuple[tuple[str, str], ...], None] = {}
    for group in source.session_groups():
        for variant in variants:
            labels = _labels_of(group, variant)
            if all(k in labels for k in by):
                out[tuple((k, labels[k]) for k in by)] = None
    return list(out)


def verdict(results: Sequence[GateResult]) -> GateState:
    """The run's verdict from its gates' results (design.md section 2).

    Returns:
        FAIL if any gate fails; else PENDING if any is still pending; else INCONCLUSIVE if any
        is inconclusive; else PASS (also when there are no gates: nothing failed).
    """
    states = {r.state for r in results}
    for state in (GateState.FAIL, GateState.PENDING, GateState.INCONCLUSIVE):
        if state in states:
            return state
    return GateState.PASS


_STATE_ONLY: dict[GateState, GateResult] = {
    state: GateResult("", "", state, None, 0, "") for state in GateState
}
"""Placeholder results so that ``verdict``'s precedence also combines a gate's groups."""
