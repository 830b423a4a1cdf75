"""Robust statistics for comparing variants: summaries, outliers, ratio CIs, tests, trends.

Everything here works on plain sequences of floats (one value per session, typically) and is
pure; numpy and scipy are imported inside the functions that need them, so that importing
``perfmon.core`` stays light (tests/test_layers.py checks it).

Sources:

- quantiles: numpy's default (``method="linear"``), Hyndman & Fan (1996) definition 7;
- MAD: the raw median absolute deviation ``median(|x - median(x)|)``, unscaled (multiply by
  1.4826 for a normal-consistent estimate of the standard deviation);
- outliers: the modified z-score ``M_i = 0.6745 (x_i - median) / MAD``, flagged when
  ``|M_i| > 3.5`` (Iglewicz, B. and Hoaglin, D. C. (1993), "How to Detect and Handle
  Outliers", ASQC Basic References in Quality Control 16);
- confidence intervals of a ratio of medians: the bootstrap, resampling each variant
  independently (``scipy.stats.bootstrap`` with ``paired=False``; Efron, B. and Tibshirani,
  R. J. (1993), "An Introduction to the Bootstrap", chapters 13-14). The percentile method is
  the default because BCa's jackknife acceleration is ill-behaved for the median (a
  non-smooth statistic) on small samples with ties;
- significance: Mann-Whitney U (``scipy.stats.mannwhitneyu``, two-sided) by default, or Welch's
  unequal-variances t-test (``scipy.stats.ttest_ind(..., equal_var=False)``);
- trends: the Theil-Sen slope with its confidence interval (``scipy.stats.theilslopes``; Sen,
  P. K. (1968), JASA 63(324), 1379-1389).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BOOTSTRAP_METHODS",
    "MIN_SESSIONS",
    "OUTLIER_Z",
    "TESTS",
    "Comparison",
    "SessionGroup",
    "StatsOptions",
    "Summary",
    "Trend",
    "compare",
    "modified_z_scores",
    "significance",
    "summarize",
    "theil_sen",
]

OUTLIER_Z = 3.5
"""Modified z-score beyond which a value is flagged as an outlier (Iglewicz & Hoaglin)."""

MIN_SESSIONS = 3
"""Sessions each variant needs before a comparison is computed (a bootstrap of fewer is noise)."""

TESTS = ("mannwhitney", "welch")
"""Significance tests: Mann-Whitney U (default) or Welch's t-test."""

BOOTSTRAP_METHODS = ("percentile", "basic", "BCa")
"""Confidence-interval methods of ``scipy.stats.bootstrap``."""


@dataclass(frozen=True, slots=True)
class StatsOptions:
    """How statistical gates and comparisons are computed (``[campaign]`` keys).

    Attributes:
        confidence: confidence level of intervals, in (0, 1) (``confidence``, default 0.95).
        test: ``"mannwhitney"`` or ``"welch"`` (``test``).
        resamples: bootstrap resamples (``bootstrap_resamples``, default 9999 as scipy's).
        seed: seed of the bootstrap's random generator, so results are reproducible
            (``bootstrap_seed``, default 0).
        method: ``"percentile"``, ``"basic"`` or ``"BCa"`` (``bootstrap_method``).
    """

    confidence: float = 0.95
    test: str = "mannwhitney"
    resamples: int = 9999
    seed: int = 0
    method: str = "percentile"

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence!r}")
        if self.test not in TESTS:
            raise ValueError(f"unknown test {self.test!r} (use {' or '.join(TESTS)})")
        if self.resamples < 100:
            raise ValueError(f"bootstrap resamples must be >= 100, got {self.resamples}")
        if self.method not in BOOTSTRAP_METHODS:
            raise ValueError(
                f"unknown bootstrap method {self.method!r} (use {', '.join(BOOTSTRAP_METHODS)})"
            )


DEFAULT_OPTIONS = StatsOptions()


@dataclass(frozen=True, slots=True, order=True)
class SessionGroup:
    """Sessions that are compared with each other: one set, one workload, one matrix value.

    Variants are compared within a group, never across groups: pooling sessions of different
    workloads or matrix values would mix scales (a 1.9x speedup at 128 events and 0.95x at
    1024 are both real, and their pool is neither).

    Attributes:
        set_name: the set (``golden``, ``canary``, ...).
        workload: the workload.
        params: its matrix values as ``((name, value), ...)`` in the campaign's key order.
    """

    set_name: str
    workload: str
    params: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        """For people: ``"golden pipeline chunks=200"``."""
        parts = [self.set_name, self.workload, *(f"{k}={v}" for k, v in self.params)]
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Summary:
    """Robust summary of one sample (e.g. one variant's session times).

    Attributes:
        n: number of values.
        median / mad: median and raw median absolute deviation.
        mean / std: mean and sample standard deviation (``ddof=1``; NaN for n < 2).
        p5 / p95: 5th and 95th percentiles (Hyndman & Fan type 7).
        min / max: extremes.
        outliers: how many values have a modified z-score beyond ``OUTLIER_Z`` (kept, counted).
    """

    n: int
    median: float
    mad: float
    mean: float
    std: float
    p5: float
    p95: float
    min: float
    max: float
    outliers: int

    @property
    def cv(self) -> float:
        """Coefficient of variation ``std / mean`` (NaN when the mean is 0 or n < 2)."""
        return self.std / self.mean if self.mean else math.nan


def modified_z_scores(values: Sequence[float]) -> list[float]:
    """Modified z-scores ``0.6745 (x - median) / MAD`` (Iglewicz & Hoaglin 1993).

    Args:
        values: the sample.

    Returns:
        One score per value. When the MAD is 0 (more than half the values equal), values equal
        to the median score 0 and the others +-inf, so any departure from a constant majority
        is flagged.
    """
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return []
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med)))
    if mad == 0.0:
        return [0.0 if v == med else math.copysign(math.inf, v - med) for v in x.tolist()]
    return [float(z) for z in 0.6745 * (x - med) / mad]


def summarize(values: Sequence[float]) -> Summary:
    """Summarize a sample: n, median, MAD, mean, std, p5, p95, min, max, outlier count.

    Args:
        values: the sample (any finite floats; one per session for session-level metrics).

    Returns:
        The summary; every statistic is NaN when ``values`` is empty.
    """
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, nan, nan, nan, nan, 0)
    med = float(np.median(x))
    p5, p95 = (float(v) for v in np.quantile(x, (0.05, 0.95), method="linear"))
    outliers = sum(1 for z in modified_z_scores(x.tolist()) if abs(z) > OUTLIER_Z)
    return Summary(
        n=n,
        median=med,
        mad=float(np.median(np.abs(x - med))),
        mean=float(np.mean(x)),
        std=float(np.std(x, ddof=1)) if n > 1 else math.nan,
        p5=p5,
        p95=p95,
        min=float(np.min(x)),
        max=float(np.max(x)),
        outliers=outliers,
    )


def significance(a: Sequence[float], b: Sequence[float], test: str = "mannwhitney") -> float:
    """Two-sided p-value of a difference between two independent samples.

    Args:
        a / b: the two samples (e.g. baseline and candidate session times), each n >= 2.
        test: ``"mannwhitney"`` (``scipy.stats.mannwhitneyu``, method ``"auto"``: exact for
            small samples without ties) or ``"welch"`` (``scipy.stats.ttest_ind`` with
            ``equal_var=False``).

    Returns:
        The p-value (NaN when undefined, e.g. Welch's test on two constant samples).

    Raises:
        ValueError: for an unknown test.
    """
    from scipy import stats

    if test == "mannwhitney":
        return float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    if test == "welch":
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    raise ValueError(f"unknown test {test!r} (use {' or '.join(TESTS)})")


@dataclass(frozen=True, slots=True)
class Comparison:
    """Variant A (baseline) against variant B (candidate), one value per session each.

    Attributes:
        a / b: robust summaries of each variant.
        speedup: ``median(A) / median(B)`` (> 1: B is faster when the metric is a time).
        speedup_low / speedup_high: its bootstrap confidence interval.
        regression: ``median(B) / median(A) - 1``, the relative change of B against A.
        regression_low / regression_high: its bootstrap confidence interval.
        p_value: two-sided p-value of ``options.test``.
        options: how it was computed.
    """

    a: Summary
    b: Summary
    speedup: float
    speedup_low: float
    speedup_high: float
    regression: float
    regression_low: float
    regression_high: float
    p_value: float
    options: StatsOptions


def compare(
    a: Sequence[float], b: Sequence[float], options: StatsOptions = DEFAULT_OPTIONS
) -> Comparison:
    """Compare two variants: ratio of medians with a bootstrap CI, and a significance test.

    Results are cached by their inputs (values and options), so the live path can ask again at
    every snapshot tick for the cost of a dictionary lookup; the bootstrap's generator is seeded
    from ``options.seed``, so the same inputs always give the same interval.

    Args:
        a: variant A's values (the baseline), at least 2 (gates wait for ``MIN_SESSIONS``).
        b: variant B's values (the candidate), at least 2.
        options: confidence level, test, resamples, seed and bootstrap method.

    Returns:
        The comparison. The speedup's and the regression's intervals are two
        ``scipy.stats.bootstrap`` calls with generators seeded alike, so both draw the same
        resamples and each equals what scipy gives for that statistic.

    Raises:
        ValueError: if either sample has fewer than 2 values, or a median is not positive
            (a ratio of medians needs positive values, as times and sizes are).
    """
    import hashlib
    import struct

    va, vb = tuple(map(float, a)), tuple(map(float, b))
    # The cache key is a digest of the values, not the values: a soak's gates compare
    # thousands of sessions, and keeping every compared tuple alive would cost megabytes.
    digest = hashlib.blake2b(digest_size=16)
    digest.update(struct.pack(f"<Q{len(va)}d", len(va), *va))
    digest.update(struct.pack(f"<Q{len(vb)}d", len(vb), *vb))
    key = (digest.digest(), options)
    cached = _CACHE.get(key)
    if cached is not None:
        _CACHE.move_to_end(key)
        return cached
    result = _compare(va, vb, options)
    _CACHE[key] = result
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return result


_CACHE_SIZE = 256
_CACHE: collections.OrderedDict[tuple[bytes, StatsOptions], Comparison] = collections.OrderedDict()


def _compare(a: tuple[float, ...], b: tuple[float, ...], options: StatsOptions) -> Comparison:
    import numpy as np
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each variant needs >= 2 values, got {len(a)} and {len(b)}")
    sa, sb = summarize(a), summarize(b)
    if not (sa.median > 0 and sb.median > 0):
        raise ValueError(
            f"a ratio of medians needs positive medians, got {sa.median:g} and {sb.median:g}"
        )

    def speedup(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(np.median(x, axis=axis) / np.median(y, axis=axis))

    def regression(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(np.median(y, axis=axis) / np.median(x, axis=axis) - 1.0)

    intervals = []
    for statistic in (speedup, regression):
        res = stats.bootstrap(
            (np.asarray(a), np.asarray(b)),
            statistic,
            n_resamples=options.resamples,
            vectorized=True,
            paired=False,
            confidence_level=options.confidence,
            method=options.method,
            batch=2000,
            rng=np.random.default_rng(options.seed),
        )
        intervals.append((float(res.confidence_interval.low), float(res.confidence_interval.high)))
    (s_low, s_high), (r_low, r_high) = intervals
    return Comparison(
        a=sa,
        b=sb,
        speedup=sa.median / sb.median,
        speedup_low=s_low,
        speedup_high=s_high,
        regression=sb.median / sa.median - 1.0,
        regression_low=r_low,
        regression_high=r_high,
        p_value=significance(a, b, options.test),
        options=options,
    )


@dataclass(frozen=True, slots=True)
class Trend:
    """A Theil-Sen trend line of values against time.

    Attributes:
        slope: median of pairwise slopes, value units per second.
        low / high: its confidence interval (``scipy.stats.theilslopes``).
        n: number of points.
        span_s: time covered by the points, seconds.
    """

    slope: float
    low: float
    high: float
    n: int
    span_s: float


def theil_sen(
    t: Sequence[float], values: Sequence[float], confidence: float = 0.95
) -> Trend | None:
    """Theil-Sen slope of ``values`` against ``t`` with its confidence interval.

    ``scipy.stats.theilslopes`` takes O(n^2) time and memory, so callers should pass bucketed
    points (a few hundred), not raw samples.

    Args:
        t: times, seconds (any origin).
        values: the values, one per time.
        confidence: confidence level of the interval.

    Returns:
        The trend, or None with fewer than 3 points or no spread in time.
    """
    from scipy import stats

    n = len(t)
    if n < 3 or n != len(values):
        return None
    span = max(t) - min(t)
    if span <= 0:
        return None
    res = stats.theilslopes(values, t, alpha=confidence)
    return Trend(
        slope=float(res.slope),
        low=float(res.low_slope),
        high=float(res.high_slope),
        n=n,
        span_s=float(span),
    )
