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
- confidence intervals of a ratio (the default, ``interval = "rank"``): the Hodges-Lehmann
  estimate of the shift of log values with its exact distribution-free (Moses) interval, the
  k-th smallest and largest of the m n pairwise differences ``log a_i - log b_j`` with k from
  the exact null distribution of the Mann-Whitney U, exponentiated to a ratio (Hodges, J. L.
  and Lehmann, E. L. (1963), Ann. Math. Statist. 34(2), 598-611; Bauer, D. F. (1972), JASA
  67(339), 687-690; Hollander, M., Wolfe, D. A. and Chicken, E. (2014), "Nonparametric
  Statistical Methods", 3rd ed., section 4.3). Its coverage is at least the stated level at
  every n for continuous data; at n where the stated level cannot be reached (3 vs 3 at 95%:
  at most 90%) there is no interval (``SampleTooSmall``). ``bench/stats_honesty.py`` measured
  it against the percentile and BCa bootstraps of the ratio of medians on real session times:
  the bootstraps miss 1 in more than 6.5% of A/A campaigns at small n, this does not;
- the bootstrap (``interval = "bootstrap"``, opt-in, approximate): resampling each variant
  independently (``scipy.stats.bootstrap`` with ``paired=False``; Efron, B. and Tibshirani,
  R. J. (1993), "An Introduction to the Bootstrap", chapters 13-14), of the ratio of medians;
- significance: Mann-Whitney U, exact without ties, a permutation test with ties, the normal
  approximation only at large n (``significance_test``), never below the smallest attainable
  p; or Welch's unequal-variances t-test (``scipy.stats.ttest_ind(..., equal_var=False)``),
  labelled approximate;
- trends: the Theil-Sen slope with its confidence interval (``scipy.stats.theilslopes``; Sen,
  P. K. (1968), JASA 63(324), 1379-1389).
"""

from __future__ import annotations

import bisect
import collections
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ANYTIME_GRID_HALF",
    "ANYTIME_GRID_STEP",
    "BOOTSTRAP_METHODS",
    "INFERENCES",
    "INTERVALS",
    "MIN_SESSIONS",
    "MIN_SESSIONS_FLOOR",
    "OUTLIER_Z",
    "TESTS",
    "AnytimeRatio",
    "Comparison",
    "PValue",
    "RankInterval",
    "RankIntervalPlan",
    "SampleTooSmall",
    "SessionGroup",
    "ShiftSequence",
    "StatsOptions",
    "Summary",
    "Trend",
    "anytime_ratio",
    "compare",
    "format_level",
    "format_p",
    "modified_z_scores",
    "mwu_null_pmf",
    "pairwise_difference_quantiles",
    "rank_interval_plan",
    "shift_interval",
    "significance",
    "significance_test",
    "summarize",
    "theil_sen",
]

OUTLIER_Z = 3.5
"""Modified z-score beyond which a value is flagged as an outlier (Iglewicz & Hoaglin)."""

MIN_SESSIONS = 5
"""Default sessions per side before a statistical gate decides (campaign key ``min_sessions``).

At 5 vs 5 the exact rank interval reaches 95% (96.8%); at 3 vs 3 it reaches at most 90%, and the
smallest two-sided Mann-Whitney p is 0.1."""

MIN_SESSIONS_FLOOR = 3
"""The smallest ``min_sessions`` a campaign may set."""

INTERVALS = ("rank", "bootstrap")
"""Interval methods: the exact rank interval (default) or the bootstrap (``bootstrap_method``)."""

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
        method: ``"percentile"``, ``"basic"`` or ``"BCa"`` (``bootstrap_method``), used when
            ``interval == "bootstrap"``.
        interval: ``"rank"`` (exact rank interval of the Hodges-Lehmann ratio, default) or
            ``"bootstrap"`` (``interval``).
        min_sessions: sessions each side needs before a statistical gate or a comparison
            decides (``min_sessions``, default ``MIN_SESSIONS``, at least
            ``MIN_SESSIONS_FLOOR``).
        inference: how live statistical gates decide (``inference``): ``"anytime"`` (default,
            ``anytime_ratio``: a confidence sequence valid at every look) or ``"fixed"`` (the
            fixed-n interval above, provisional until the set's planned n).

    ``resamples`` and ``seed`` also drive the Monte Carlo permutation test (ties, mid-size n).

    Raises:
        ValueError: for a value out of range or an unknown name.
    """

    confidence: float = 0.95
    test: str = "mannwhitney"
    resamples: int = 9999
    seed: int = 0
    method: str = "percentile"
    interval: str = "rank"
    min_sessions: int = MIN_SESSIONS
    inference: str = "anytime"

    def __post_init__(self) -> None:
        if self.inference not in ("anytime", "fixed"):
            raise ValueError(f"unknown inference {self.inference!r} (use anytime or fixed)")
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
        if self.interval not in INTERVALS:
            raise ValueError(f"unknown interval {self.interval!r} (use {' or '.join(INTERVALS)})")
        if self.min_sessions < MIN_SESSIONS_FLOOR:
            raise ValueError(
                f"min_sessions must be >= {MIN_SESSIONS_FLOOR}, got {self.min_sessions}"
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
    mad = float(np.median(np.abs(x - med)))
    if mad == 0.0:  # as modified_z_scores: any departure from a constant majority is flagged
        outliers = int(np.count_nonzero(x != med))
    else:
        outliers = int(np.count_nonzero(np.abs(0.6745 * (x - med) / mad) > OUTLIER_Z))
    return Summary(
        n=n,
        median=med,
        mad=mad,
        mean=float(np.mean(x)),
        std=float(np.std(x, ddof=1)) if n > 1 else math.nan,
        p5=p5,
        p95=p95,
        min=float(np.min(x)),
        max=float(np.max(x)),
        outliers=outliers,
    )


def _mwu_exact_feasible(m: int, n: int) -> bool:
    """Whether the exact null distribution of U is cheap enough (a few ms) for (m, n)."""
    return min(m, n) * (m * n + 1) <= _EXACT_WORK


_EXACT_WORK = 1_000_000
"""Bound on ``min(m, n) * (m n + 1)``, the cost of ``mwu_null_pmf`` in array element steps
(1,000,000: 100 vs 100, about 10-40 ms; each new (m, n) of a growing campaign costs one)."""


@functools.lru_cache(maxsize=64)
def _mwu_null_pmf_cached(m: int, n: int) -> Any:
    import numpy as np

    # The number of ways to reach U = u is the coefficient of q^u in the Gaussian binomial
    # coefficient [m + n choose m]_q = prod_{j=1..m} (1 - q^(n+j)) / (1 - q^j) (Andrews, G. E.
    # (1976), "The Theory of Partitions", theorem 3.1; Mann & Whitney 1947's recurrence in closed
    # form). After step j the partial product is [n + j choose j]_q, a polynomial with
    # non-negative coefficients; each step multiplies by (1 - q^(n+j)) and divides by
    # (1 - q^j) (a cumulative sum with stride j), renormalised to keep floats in range.
    small, large = min(m, n), max(m, n)
    size = small * large + 1
    f = np.zeros(size)
    f[0] = 1.0
    for j in range(1, small + 1):
        shift = large + j
        if shift < size:
            f[shift:] -= f[: size - shift].copy()
        pad = (-size) % j
        g = np.concatenate([f, np.zeros(pad)]).reshape(-1, j)
        f = np.cumsum(g, axis=0).reshape(-1)[:size]
        f /= f.sum()
    # The far end collects the cancellation error of the multiplications; the distribution is
    # symmetric (U and mn - U are equally likely), so mirror the accurate near half onto it.
    half = size // 2
    f[size - half :] = f[:half][::-1]
    np.clip(f, 0.0, None, out=f)
    f /= f.sum()
    f.setflags(write=False)
    return f


def mwu_null_pmf(m: int, n: int) -> Any:
    """The exact null distribution of the Mann-Whitney statistic U for samples of m and n.

    ``U`` counts the pairs (i, j) with ``x_i > y_j``; without ties and under the null
    hypothesis (both samples from one continuous distribution) every one of the
    ``C(m + n, m)`` splits of the pooled ranks is equally likely (Mann, H. B. and Whitney,
    D. R. (1947), Ann. Math. Statist. 18(1), 50-60).

    Args:
        m / n: sample sizes, each >= 1, with ``min(m, n) * (m n + 1)`` at most 1,000,000
            (100 vs 100).

    Returns:
        A read-only float64 array of length ``m n + 1``: ``P(U = u)`` for u = 0..mn.

    Raises:
        ValueError: for sizes below 1 or too large for the exact computation.
    """
    if m < 1 or n < 1:
        raise ValueError(f"sample sizes must be >= 1, got {m} and {n}")
    if not _mwu_exact_feasible(m, n):
        raise ValueError(f"the exact distribution of U for n = {m}/{n} is too large to compute")
    return _mwu_null_pmf_cached(m, n)


def _smallest_p(m: int, n: int) -> float:
    """``2 / C(m + n, m)``: the smallest two-sided p a test of ranks can reach (0.1 at 3 vs 3)."""
    if m < 1 or n < 1:
        return 1.0
    log_splits = math.lgamma(m + n + 1) - math.lgamma(m + 1) - math.lgamma(n + 1)
    return min(1.0, math.exp(math.log(2.0) - log_splits))


@dataclass(frozen=True, slots=True)
class RankIntervalPlan:
    """Which order statistics of the m n pairwise differences bound an exact rank interval.

    Attributes:
        k: the interval is ``[d_(k), d_(mn + 1 - k)]`` of the sorted differences (1-based);
            0 when no interval reaches the asked confidence at this (m, n).
        confidence: the interval's actual confidence, ``1 - 2 P(U <= k - 1)`` (>= the asked
            level; exact for continuous data), or the best attainable one when ``k == 0``.
        exact: whether k comes from the exact distribution of U (else from its normal
            approximation with continuity correction, used for large m n).
    """

    k: int
    confidence: float
    exact: bool


def rank_interval_plan(m: int, n: int, confidence: float) -> RankIntervalPlan:
    """The order statistics of the exact distribution-free interval for a shift (Moses).

    For samples X (m values) and Y (n values) differing by a shift delta, the interval
    ``[d_(k), d_(mn+1-k)]`` of the sorted differences ``x_i - y_j`` covers delta with
    probability ``1 - 2 P(U <= k - 1)``; k is the largest integer with
    ``P(U <= k - 1) <= (1 - confidence) / 2`` (Hollander, Wolfe & Chicken (2014),
    "Nonparametric Statistical Methods", 3rd ed., section 4.3; Bauer, D. F. (1972), JASA
    67(339), 687-690). Large samples use ``k = floor(mn/2 + 1/2 - z sqrt(mn(m+n+1)/12))``.

    Args:
        m / n: sample sizes, each >= 1.
        confidence: the asked two-sided level in (0, 1).

    Returns:
        The plan; ``k == 0`` when even ``[d_(1), d_(mn)]`` has a confidence below the asked
        one (e.g. m = n = 3: at most 90%).
    """
    alpha2 = (1.0 - confidence) / 2.0
    if _mwu_exact_feasible(m, n):
        import numpy as np

        cdf = np.cumsum(mwu_null_pmf(m, n))
        k = int(np.searchsorted(cdf, alpha2 * (1.0 + 1e-9), side="right"))
        k = min(k, (m * n + 1) // 2)
        if k == 0:
            return RankIntervalPlan(0, 1.0 - _smallest_p(m, n), True)
        return RankIntervalPlan(k, 1.0 - 2.0 * float(cdf[k - 1]), True)
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1.0 - alpha2)
    sigma = math.sqrt(m * n * (m + n + 1) / 12.0)
    k = max(0, min(math.floor(m * n / 2.0 + 0.5 - z * sigma), (m * n + 1) // 2))
    achieved = 1.0 - 2.0 * NormalDist().cdf((k - 0.5 - m * n / 2.0) / sigma) if k else 0.0
    return RankIntervalPlan(k, achieved, False)


def pairwise_difference_quantiles(
    x: Sequence[float], y: Sequence[float], ks: Sequence[int]
) -> list[float]:
    """The k-th smallest of the m n differences ``x_i - y_j``, for each k (1-based).

    Small inputs (m n up to 250,000) select from all differences with ``numpy.partition``;
    larger ones search by value, counting the differences at or below a bound with binary
    searches (O((m + n) log n) per count), until the bound brackets at most a few thousand
    candidates, then select among those: O(m + n) memory, about a millisecond at
    m = n = 2,000 (the selection problem of Johnson, D. B. and Mizoguchi, T. (1978), SIAM J.
    Comput. 7(2), 147-153, solved here by bisection on the value instead).

    Args:
        x / y: the samples (finite floats).
        ks: ranks in 1..m n.

    Returns:
        One difference per k, in the order of ``ks``.

    Raises:
        ValueError: for a k out of range or an empty sample.
    """
    import numpy as np

    xs = np.sort(np.asarray(x, dtype=np.float64))
    ys = np.sort(np.asarray(y, dtype=np.float64))
    m, n = xs.size, ys.size
    total = m * n
    if total == 0:
        raise ValueError("pairwise differences need two non-empty samples")
    for k in ks:
        if not 1 <= k <= total:
            raise ValueError(f"rank {k} is out of 1..{total}")
    if total <= 250_000:
        d = (xs[:, None] - ys[None, :]).ravel()
        idx = sorted({k - 1 for k in ks})
        part = np.partition(d, idx)
        return [float(part[k - 1]) for k in ks]

    def count_le(t: float) -> int:
        # pairs with y_j >= x_i - t, i.e. x_i - y_j <= t
        return int(total - np.searchsorted(ys, xs - t, side="left").sum())

    out = []
    for k in ks:
        lo, hi = float(xs[0] - ys[-1]), float(xs[-1] - ys[0])
        c_lo, c_hi = count_le(lo), count_le(hi)
        while c_lo >= k:  # bracket: count_le(lo) < k <= count_le(hi), whatever the rounding
            lo -= abs(lo) + 1.0
            c_lo = count_le(lo)
        while c_hi < k:
            hi += abs(hi) + 1.0
            c_hi = count_le(hi)
        while c_hi - c_lo > 4 * (m + n):
            mid = lo + (hi - lo) / 2.0
            if not lo < mid < hi:
                break
            c = count_le(mid)
            if c >= k:
                hi, c_hi = mid, c
            else:
                lo, c_lo = mid, c
        # candidates: lo < x_i - y_j <= hi, i.e. x_i - hi <= y_j < x_i - lo
        start = np.searchsorted(ys, xs - hi, side="left")
        stop = np.searchsorted(ys, xs - lo, side="left")
        lens = stop - start
        rows = np.repeat(np.arange(m), lens)
        offs = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        cand = np.sort(xs[rows] - ys[start[rows] + offs])
        out.append(float(cand[k - c_lo - 1]))
    return out


@dataclass(frozen=True, slots=True)
class RankInterval:
    """The Hodges-Lehmann shift estimate with its exact rank (Moses) confidence interval.

    Attributes:
        estimate: the Hodges-Lehmann estimator, the median of the m n differences
            ``x_i - y_j`` (Hodges, J. L. and Lehmann, E. L. (1963), Ann. Math. Statist. 34(2),
            598-611).
        low / high: the interval ``[d_(k), d_(mn+1-k)]`` (see ``rank_interval_plan``).
        confidence: its actual confidence (>= the asked level).
        exact: whether k came from the exact distribution of U.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    exact: bool


class SampleTooSmall(ValueError):
    """Too few values for an interval at the asked confidence (e.g. 3 vs 3 at 95%).

    Attributes:
        best: the best attainable confidence at these sample sizes.
    """

    def __init__(self, message: str, best: float) -> None:
        super().__init__(message)
        self.best = best


def shift_interval(
    x: Sequence[float], y: Sequence[float], confidence: float = 0.95
) -> RankInterval:
    """Hodges-Lehmann estimate and exact distribution-free interval of the shift of X over Y.

    For continuous data the interval covers the true shift with probability at least
    ``confidence`` at every m, n (Hollander, Wolfe & Chicken 2014, section 4.3); with ties it
    stays conservative in practice.

    Args:
        x / y: the samples (e.g. log session times of the baseline and the candidate).
        confidence: two-sided level in (0, 1).

    Returns:
        The estimate and interval, in the samples' unit.

    Raises:
        SampleTooSmall: when no rank interval reaches ``confidence`` at these sizes.
    """
    m, n = len(x), len(y)
    plan = rank_interval_plan(m, n, confidence)
    if plan.k == 0:
        raise SampleTooSmall(
            f"n = {m}/{n}: an exact rank interval reaches at most {plan.confidence:.1%} "
            f"confidence, not {confidence:.0%}",
            plan.confidence,
        )
    total = m * n
    mids = [(total + 1) // 2, total // 2 + 1]
    q = pairwise_difference_quantiles(x, y, [plan.k, total + 1 - plan.k, *mids])
    return RankInterval((q[2] + q[3]) / 2.0, q[0], q[1], plan.confidence, plan.exact)


@dataclass(frozen=True, slots=True)
class PValue:
    """A two-sided p-value and how it was computed.

    Attributes:
        p: the p-value (NaN when undefined), never below the smallest value attainable at
            these sample sizes (``2 / C(m + n, m)`` for a rank test: 0.1 at 3 vs 3).
        method: for people, e.g. ``"Mann-Whitney exact"``.
    """

    p: float
    method: str


_TIED_EXACT_WORK = 5_000_000
"""Bound on ``N k S`` (pooled size, smaller side, largest score sum) of the exact tied test."""


def _tied_exact_feasible(m: int, n: int) -> bool:
    k, total = min(m, n), m + n
    return total * k * (2 * k * total + 1) <= _TIED_EXACT_WORK


def _splits_text(m: int, n: int) -> str:
    splits = math.comb(m + n, m)
    return f"all {splits:,}" if splits < 10**9 else f"all {float(splits):.2g}"


def _rank_sum_distribution(scores: Any, k: int) -> Any:
    """The permutation distribution of the sum of ``k`` of the integer ``scores``.

    Every k-subset of the pooled scores is equally likely under the null hypothesis; the
    number of subsets reaching each sum comes from the shift algorithm of Streitberg, B. and
    Roehmel, J. (1986), "Exact distributions for permutation and rank tests", Statistical
    Software Newsletter 12(1), 10-17: ``c[j][s]`` counts j-subsets of the scores seen so far
    with sum s, and each score w adds ``c[j-1][s-w]`` to ``c[j][s]``. Only additions, so the
    probabilities are exact to rounding even in the tails.

    Args:
        scores: non-negative int64 array (doubled mid-ranks).
        k: subset size, 1..len(scores).

    Returns:
        float64 array: ``P(sum = s)`` for s = 0..the largest possible sum.
    """
    import numpy as np

    top = int(np.sort(scores)[-k:].sum())
    c = np.zeros((k + 1, top + 1))
    c[0, 0] = 1.0
    for seen, w in enumerate(scores.tolist(), start=1):
        if w > top:
            continue  # no subset reaching at most ``top`` contains this score
        for j in range(min(seen, k), 0, -1):
            c[j, w:] += c[j - 1, : top + 1 - w]
    # counts stay below C(N, k), at most ~1e30 within _TIED_EXACT_WORK: no overflow
    dist = c[k]
    return dist / dist.sum()


_PERMUTATION_MAX_MIN_N = 30
"""Above this many values on the smaller side, rank tests with ties use the normal approx."""

_PERMUTATION_MAX_N = 120
"""Above this many values in all, rank tests with ties use the normal approx. (a Monte Carlo
permutation test of 9,999 splits costs about 0.1 s at 120 values and grows with them)."""


def _mwu_path(m: int, n: int, ties: bool) -> str:
    """How ``significance_test`` computes a Mann-Whitney p: ``"exact"``, ``"tied-exact"``,
    ``"monte-carlo"`` or ``"normal"``."""
    if not ties:
        return "exact" if _mwu_exact_feasible(m, n) else "normal"
    if _tied_exact_feasible(m, n):
        return "tied-exact"
    if min(m, n) <= _PERMUTATION_MAX_MIN_N and m + n <= _PERMUTATION_MAX_N:
        return "monte-carlo"
    return "normal"


def significance_test(
    a: Sequence[float],
    b: Sequence[float],
    test: str = "mannwhitney",
    *,
    resamples: int = 9999,
    seed: int = 0,
) -> PValue:
    """Two-sided p-value of a difference between two independent samples, with its method.

    Mann-Whitney (``test="mannwhitney"``), two-sided, ``p = min(1, 2 min(P(U <= u),
    P(U >= u)))`` under the null distribution that fits the data:

    - no ties, exact distribution affordable: the exact distribution of U
      (``mwu_null_pmf``; Mann & Whitney 1947);
    - ties, small samples (up to about 27 vs 27, or 5 vs 300): the exact permutation
      distribution of the mid-rank sum over every split (``_rank_sum_distribution``,
      Streitberg & Roehmel 1986);
    - ties, up to 30 values on the smaller side and 120 in all: a Monte Carlo permutation test
      over ``resamples`` random splits, ``p = (1 + hits) / (1 + resamples)`` per side, which
      keeps its level (Phipson, B. and Smyth, G. K. (2010), Stat. Appl. Genet. Mol. Biol.
      9(1));
    - otherwise the normal approximation with tie and continuity corrections
      (``scipy.stats.mannwhitneyu(method="asymptotic")``), accurate at these sizes.

    ``test="welch"``: Welch's unequal-variances t-test (``scipy.stats.ttest_ind(...,
    equal_var=False)``), a normal-theory approximation, so labelled approximate.

    Every p is at least ``2 / C(m + n, m)``, the smallest a two-sided test of ranks can reach
    (0.1 at 3 vs 3), and at most 1.

    Args:
        a / b: the two samples, each n >= 2.
        test: ``"mannwhitney"`` or ``"welch"``.
        resamples: random splits of the Monte Carlo permutation test.
        seed: seed of its generator (same inputs, same p).

    Raises:
        ValueError: for an unknown test.
    """
    import numpy as np
    from scipy import stats

    m, n = len(a), len(b)
    floor = _smallest_p(m, n)
    if test == "welch":
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
        return PValue(p, "Welch t, approximate")
    if test != "mannwhitney":
        raise ValueError(f"unknown test {test!r} (use {' or '.join(TESTS)})")
    pooled = np.concatenate([np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)])
    ordered = np.sort(pooled)
    ties = bool(np.any(ordered[1:] == ordered[:-1]))
    path = _mwu_path(m, n, ties)
    if path == "normal":  # accurate at these sizes; skip the ranks scipy computes again
        p = float(stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic").pvalue)
        return PValue(max(p, floor), "Mann-Whitney normal approx.")
    ranks = stats.rankdata(pooled)
    r1 = float(ranks[:m].sum())
    if path == "exact":
        u = round(r1 - m * (m + 1) / 2.0)
        pmf = mwu_null_pmf(m, n)
        low, high = float(pmf[: u + 1].sum()), float(pmf[u:].sum())
        p, method = min(1.0, 2.0 * min(low, high)), "Mann-Whitney exact"
    elif path == "tied-exact":
        scores = np.rint(2.0 * ranks).astype(np.int64)  # mid-ranks are multiples of 1/2
        small_first = m <= n
        k = m if small_first else n
        observed = int(scores[:m].sum() if small_first else scores[m:].sum())
        dist = _rank_sum_distribution(scores, k)
        low, high = float(dist[: observed + 1].sum()), float(dist[observed:].sum())
        p = min(1.0, 2.0 * min(low, high))
        method = f"Mann-Whitney exact permutation ({_splits_text(m, n)} splits, ties)"
    else:  # "monte-carlo"
        rng = np.random.default_rng(seed)
        eps = 1e-9 * max(1.0, abs(r1))
        hits_low = hits_high = 0
        batch = max(1, 1_000_000 // (m + n))
        done = 0
        while done < resamples:
            rows = min(batch, resamples - done)
            perm = rng.permuted(np.broadcast_to(ranks, (rows, m + n)), axis=1)
            sums = perm[:, :m].sum(axis=1)
            hits_low += int(np.count_nonzero(sums <= r1 + eps))
            hits_high += int(np.count_nonzero(sums >= r1 - eps))
            done += rows
        low, high = (1 + hits_low) / (1 + resamples), (1 + hits_high) / (1 + resamples)
        p = min(1.0, 2.0 * min(low, high))
        method = f"Mann-Whitney permutation, {resamples:,} random splits (ties)"
    return PValue(max(p, floor), method)


def significance(a: Sequence[float], b: Sequence[float], test: str = "mannwhitney") -> float:
    """Two-sided p-value of a difference between two independent samples.

    The value of ``significance_test`` (default resamples and seed); see there for the method
    chosen by sample size and ties.

    Args:
        a / b: the two samples (e.g. baseline and candidate session times), each n >= 2.
        test: ``"mannwhitney"`` or ``"welch"``.

    Returns:
        The p-value (NaN when undefined, e.g. Welch's test on two constant samples).

    Raises:
        ValueError: for an unknown test.
    """
    return significance_test(a, b, test).p


@dataclass(frozen=True, slots=True)
class Comparison:
    """Variant A (baseline) against variant B (candidate), one value per session each.

    With the default ``interval="rank"`` the speedup is the Hodges-Lehmann ratio
    ``exp(HL(log A - log B))`` (the median of the m n ratios ``a_i / b_j``) with the exact rank
    interval for it (``shift_interval`` on log values, exponentiated); with
    ``interval="bootstrap"`` it is the ratio of medians with a bootstrap interval.

    Attributes:
        a / b: robust summaries of each variant.
        speedup: the estimate of A / B (> 1: B is faster when the metric is a time).
        speedup_low / speedup_high: its confidence interval.
        regression: ``1 / speedup - 1``, the relative change of B against A.
        regression_low / regression_high: its confidence interval.
        p_value: two-sided p-value of ``options.test``.
        options: how it was computed.
        median_ratio: ``median(A) / median(B)``, descriptive.
        estimator: what ``speedup`` is: ``"HL ratio"`` or ``"median ratio"``.
        interval_method: how the interval was made, for people, e.g.
            ``"exact rank CI (Hodges-Lehmann, log)"``.
        confidence: the interval's actual confidence (the rank interval's is >= the asked
            level; a bootstrap's is the nominal one).
        p_method: how the p-value was computed (``PValue.method``).
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
    median_ratio: float = math.nan
    estimator: str = "median ratio"
    interval_method: str = ""
    confidence: float = math.nan
    p_method: str = ""

    def describe(self, func: str = "speedup") -> str:
        """One line for people, e.g. ``"1.23x [1.10, 1.37] 95% exact rank CI (Hodges-Lehmann,
        log), Mann-Whitney exact p = 0.004, n = 10/10"``; ``func="regression"`` gives the
        relative change (``"+4.1% [-2.0%, +9.9%] ..."``)."""
        if func == "regression":
            shown = (
                f"{self.regression:+.1%} [{self.regression_low:+.1%}, {self.regression_high:+.1%}]"
            )
        else:
            shown = f"{self.speedup:.3g}x [{self.speedup_low:.3g}, {self.speedup_high:.3g}]"
        return (
            f"{shown} {format_level(self.options.confidence, self.confidence)} "
            f"{self.interval_method}, {self.p_method} {format_p(self.p_value)}, "
            f"n = {self.a.n}/{self.b.n}"
        )


def format_level(asked: float, actual: float) -> str:
    """The interval's level for people: ``"95%"``, or ``"95% (96.8%)"`` when the exact
    rank interval's actual confidence is notably above the asked one."""
    shown = f"{asked:.0%}" if round(asked * 100, 6) == round(asked * 100) else f"{asked:.1%}"
    if math.isfinite(actual) and actual - asked >= 0.0005:
        return f"{shown} ({actual:.1%})"
    return shown


def format_p(p: float) -> str:
    """A p-value for people: ``"p = 0.0043"``, ``"p < 0.0001"``, ``"p = n/a"``."""
    if math.isnan(p):
        return "p = n/a"
    return f"p = {p:.2g}" if p >= 1e-4 else "p < 0.0001"


def compare(
    a: Sequence[float], b: Sequence[float], options: StatsOptions = DEFAULT_OPTIONS
) -> Comparison:
    """Compare two variants: a ratio with its confidence interval, and a significance test.

    Results are cached by their inputs (values and options), so the live path can ask again at
    every snapshot tick for the cost of a dictionary lookup; every random generator is seeded
    from ``options.seed``, so the same inputs always give the same result.

    Args:
        a: variant A's values (the baseline), at least 2 (gates wait for
            ``options.min_sessions``).
        b: variant B's values (the candidate), at least 2.
        options: confidence level, interval method, test, resamples, seed.

    Returns:
        The comparison. ``interval="rank"`` (default): Hodges-Lehmann ratio and exact rank
        interval on log values (``shift_interval``). ``interval="bootstrap"``: ratio of
        medians, two ``scipy.stats.bootstrap`` calls (speedup and regression) with generators
        seeded alike.

    Raises:
        SampleTooSmall: when the rank interval cannot reach the asked confidence at these
            sizes (e.g. 3 vs 3 at 95%: at most 90%).
        ValueError: if either sample has fewer than 2 values, or (rank interval) a value is not
            positive, or (bootstrap) a median is not positive: a ratio needs positive values,
            as times and sizes are.
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
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each variant needs >= 2 values, got {len(a)} and {len(b)}")
    sa, sb = summarize(a), summarize(b)
    pv = significance_test(a, b, options.test, resamples=options.resamples, seed=options.seed)
    median_ratio = sa.median / sb.median if sb.median else math.nan
    if options.interval == "rank":
        if min(a) <= 0 or min(b) <= 0:
            raise ValueError(
                "a ratio needs positive values (times, sizes), "
                f"got a minimum of {min(min(a), min(b)):g}"
            )
        import numpy as np

        ri = shift_interval(np.log(a).tolist(), np.log(b).tolist(), options.confidence)
        kind = "Hodges-Lehmann, log" if ri.exact else "Hodges-Lehmann, log, normal approx. of U"
        return Comparison(
            a=sa,
            b=sb,
            speedup=math.exp(ri.estimate),
            speedup_low=math.exp(ri.low),
            speedup_high=math.exp(ri.high),
            regression=math.exp(-ri.estimate) - 1.0,
            regression_low=math.exp(-ri.high) - 1.0,
            regression_high=math.exp(-ri.low) - 1.0,
            p_value=pv.p,
            options=options,
            median_ratio=median_ratio,
            estimator="HL ratio",
            interval_method=f"{'exact ' if ri.exact else ''}rank CI ({kind})",
            confidence=ri.confidence,
            p_method=pv.method,
        )
    return _bootstrap_compare(a, b, sa, sb, pv, options)


def _bootstrap_compare(
    a: tuple[float, ...],
    b: tuple[float, ...],
    sa: Summary,
    sb: Summary,
    pv: PValue,
    options: StatsOptions,
) -> Comparison:
    import numpy as np
    from scipy import stats

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
        p_value=pv.p,
        options=options,
        median_ratio=sa.median / sb.median,
        estimator="median ratio",
        interval_method=f"bootstrap CI ({options.method}, approximate)",
        confidence=options.confidence,
        p_method=pv.method,
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


# --- Anytime-valid inference (issue 11, point 3) ------------------------------------------------

INFERENCES = ("anytime", "fixed")
"""How a live statistical gate decides (campaign key ``inference``): ``"anytime"`` (default) from
a confidence sequence valid at every look, ``"fixed"`` from the fixed-n exact rank interval,
shown as provisional until the set's planned n."""

ANYTIME_GRID_HALF = 5.0
"""Half-width of the grid of log-ratios a confidence sequence is tracked on: ratios from
exp(-5) = 0.0067 to exp(5) = 148. A bound beyond it is reported as 0 or infinity."""

ANYTIME_GRID_STEP = 0.0025
"""Step of that grid in log units (0.25% in the ratio); bounds are rounded outwards to it."""

ANYTIME_BET_CAP = 0.75
"""Truncation ``c`` of the bets (Waudby-Smith & Ramdas 2024 use 1/2 or 3/4): the bet on a value
in [0, 1] with null mean 1/2 is at most ``c / (1/2) = 1.5``."""

_ANYTIME_FIRST_SCALE = 0.05
"""Scale (log units, about 5%) of the first differences' transform, before 3 differences give
a robust one. Any positive value keeps the sequence valid; it only shapes its power."""


def _sorted_median(v: Sequence[float]) -> float:
    k = len(v)
    return v[k // 2] if k % 2 else 0.5 * (v[k // 2 - 1] + v[k // 2])


def _sorted_mad(v: Sequence[float], med: float) -> float:
    """``_sorted_median(sorted(abs(x - med) for x in v))`` for a sorted ``v``, in O(log n).

    The deviations of the values below ``med`` (``med - x``, read from ``med`` outwards) and
    of the others (``x - med``) are two sorted runs; the order statistics of their union are
    found by binary search on how many come from the first run (the k-th smallest of two
    sorted arrays). ``med - x`` is exactly ``abs(x - med)`` for ``x < med`` (IEEE 754
    subtraction rounds symmetrically), so the result is the same float as sorting.
    """
    n = len(v)
    m = bisect.bisect_left(v, med)
    p, q = m, n - m

    def a(i: int) -> float:  # i-th smallest deviation below the median
        return med - v[m - 1 - i]

    def b(j: int) -> float:  # j-th smallest deviation at or above it
        return v[m + j] - med

    def kth(k: int) -> float:
        lo, hi = max(0, k + 1 - q), min(k + 1, p)
        while lo < hi:  # the first i (taken from a) with a(i) >= b(k - i)
            i = (lo + hi) // 2
            if k - i >= 0 and a(i) < b(k - i):
                lo = i + 1
            else:
                hi = i
        i = lo
        best = -math.inf
        if i > 0:
            best = a(i - 1)
        if k - i >= 0:
            best = max(best, b(k - i))
        return best

    if n % 2:
        return kth(n // 2)
    return 0.5 * (kth(n // 2 - 1) + kth(n // 2))


class ShiftSequence:
    """A confidence sequence for the centre of symmetry of paired differences, by betting.

    Each new pair gives one difference ``d_i = log a_i - log b_i`` (baseline over candidate, on
    log times). For a candidate shift ``theta`` the bounded, odd transform
    ``x_i(theta) = (1 + tanh((d_i - theta) / s_i)) / 2`` lies in (0, 1); when the ``d_i`` are
    symmetric about ``theta`` (an A/A pair is exactly symmetric about 0: its two sessions are
    exchangeable; with a shift on log scale ``d_i - theta`` is a difference of two exchangeable
    values), ``E[x_i | past] = 1/2`` whatever the distribution's tails, because ``tanh`` is odd
    and the scale ``s_i`` (1.4826 times the median absolute deviation of ``d_1 .. d_{i-1}``) is
    predictable. The hedged capital process

        K_t(theta) = 1/2 prod_{i<=t} (1 + l_i (x_i - 1/2)) + 1/2 prod_{i<=t} (1 - l_i (x_i - 1/2))

    with the predictable plug-in bets ``l_i = min(c / (1/2), sqrt(2 log(2/alpha) /
    (sigma2_{i-1} i log(1 + i))))`` and ``sigma2_t = (1/4 + sum_{j<=t} (x_j - mu_j)^2) / (t + 1)``,
    ``mu_t = (1/2 + sum_{j<=t} x_j) / (t + 1)`` is then a nonnegative martingale with initial
    value 1, so by Ville's inequality ``P(exists t: K_t(theta) >= 1/alpha) <= alpha``: the set of
    ``theta`` whose capital has never reached ``1/alpha`` is a ``1 - alpha`` confidence sequence,
    valid at every stopping time, and running-intersected (it only shrinks, so a decision made on
    it is never taken back).

    Sources: Waudby-Smith, I. and Ramdas, A. (2024), "Estimating means of bounded random
    variables by betting", J. R. Statist. Soc. B 86(1), 1-27 (the hedged capital process,
    section 4.2, and the predictable plug-in bets, eq. 26-27); Ville, J. (1939), "Etude critique
    de la notion de collectif" (the maximal inequality); Shafer, G. (2021), "Testing by betting",
    J. R. Statist. Soc. A 184(2), 407-431, and Ramdas, A., Grunwald, P., Vovk, V. and Shafer, G.
    (2023), "Game-theoretic statistics and safe anytime-valid inference", Statist. Sci. 38(4),
    576-601 (testing symmetry by betting on an odd, bounded function of the observations).

    The grid of ``theta`` is ``[-ANYTIME_GRID_HALF, ANYTIME_GRID_HALF]`` in steps of
    ``ANYTIME_GRID_STEP``; one update costs O(grid) (4,001 points: tens of microseconds) plus an
    O(n) sorted insertion for the scale, whatever n.

    Args:
        alpha: 1 - the confidence level, in (0, 1).

    Raises:
        ValueError: for an ``alpha`` outside (0, 1).
    """

    def __init__(self, alpha: float = 0.05) -> None:
        import numpy as np

        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        self.alpha = alpha
        steps = round(ANYTIME_GRID_HALF / ANYTIME_GRID_STEP)
        self._grid = np.arange(-steps, steps + 1, dtype=np.float64) * ANYTIME_GRID_STEP
        size = self._grid.size
        # Only the grid points still in the set are tracked (an excluded point never returns):
        # the work per update shrinks with the set.
        self._theta = self._grid.copy()
        self._index = np.arange(size)
        self._log_plus = np.zeros(size)
        self._log_minus = np.zeros(size)
        self._sum_x = np.zeros(size)
        self._sum_dev2 = np.zeros(size)
        self._log_barrier = math.log(1.0 / alpha)
        self._log_two_over_alpha = math.log(2.0 / alpha)
        self._sorted: list[float] = []
        self.n = 0

    def _scale(self) -> float:
        past = self._sorted
        if len(past) < 3:
            return _ANYTIME_FIRST_SCALE
        med = _sorted_median(past)
        return max(1.4826 * _sorted_mad(past, med), 1e-4)

    def update(self, d: float) -> None:
        """Add one paired difference ``d`` (log baseline - log candidate).

        Raises:
            ValueError: for a non-finite ``d``.
        """
        import bisect

        import numpy as np

        if not math.isfinite(d):
            raise ValueError(f"a difference must be finite, got {d!r}")
        t = self.n + 1
        s = self._scale()
        x = 0.5 * (1.0 + np.tanh((d - self._theta) / s))
        # The bet uses only x_1 .. x_{t-1} (predictable): sigma2_{t-1} and mu_{t-1}.
        sigma2 = (0.25 + self._sum_dev2) / t
        lam = np.minimum(
            ANYTIME_BET_CAP / 0.5,
            np.sqrt(2.0 * self._log_two_over_alpha / (sigma2 * t * math.log(1.0 + t))),
        )
        centred = x - 0.5
        self._log_plus += np.log1p(lam * centred)
        self._log_minus += np.log1p(-lam * centred)
        self._sum_x += x
        mu = (0.5 + self._sum_x) / (t + 1)
        self._sum_dev2 += (x - mu) ** 2
        log_k = np.logaddexp(self._log_plus, self._log_minus) - math.log(2.0)
        keep = log_k < self._log_barrier
        # A set narrower than the grid step (e.g. a constant ratio, whose every difference is
        # the same) would exclude every grid point; it is kept at the grid's resolution instead:
        # the remaining points' neighbours bracket it (``interval`` rounds outwards).
        if not keep.all() and keep.any():
            self._theta = self._theta[keep]
            self._index = self._index[keep]
            self._log_plus = self._log_plus[keep]
            self._log_minus = self._log_minus[keep]
            self._sum_x = self._sum_x[keep]
            self._sum_dev2 = self._sum_dev2[keep]
        bisect.insort(self._sorted, d)
        self.n = t

    def interval(self) -> tuple[float, float]:
        """The running-intersected confidence set's hull, in log units: ``(low, high)``.

        Bounds are rounded outwards to the grid (one step beyond the outermost point kept);
        ``-inf`` / ``inf`` where the set reaches the grid's edge. A set narrower than one step
        is shown at the grid's resolution (two steps wide).
        """
        idx = self._index
        if idx.size == 0:
            return (math.nan, math.nan)
        lo, hi = int(idx[0]), int(idx[-1])
        last = self._grid.size - 1
        low = -math.inf if lo == 0 else float(self._grid[lo - 1])
        high = math.inf if hi == last else float(self._grid[hi + 1])
        return (low, high)

    def estimate(self) -> float:
        """The median of the differences so far (log units), held inside the interval."""
        if not self._sorted:
            return math.nan
        med = _sorted_median(self._sorted)
        low, high = self.interval()
        if math.isnan(low):
            return med
        return min(max(med, low), high)


@dataclass(frozen=True, slots=True)
class AnytimeRatio:
    """A ratio A / B with its anytime-valid confidence sequence (``anytime_ratio``).

    Attributes:
        speedup / speedup_low / speedup_high: the ratio of the paired medians and its
            running-intersected confidence sequence (0 or infinity beyond the grid).
        regression / regression_low / regression_high: ``1 / speedup - 1`` and its bounds.
        pairs: the number of pairs used (``min(len(a), len(b))``).
        n_a / n_b: the values given per variant.
        confidence: ``1 - alpha``, valid simultaneously at every n.
        method: for people.
    """

    speedup: float
    speedup_low: float
    speedup_high: float
    regression: float
    regression_low: float
    regression_high: float
    pairs: int
    n_a: int
    n_b: int
    confidence: float
    method: str = "anytime-valid CS (betting, paired log ratio)"

    def describe(self, func: str = "speedup") -> str:
        """One line for people, e.g. ``"1.23x [1.05, 1.51] 95% anytime-valid CS (betting,
        paired log ratio), 12 pairs, n = 12/12"``."""
        if func == "regression":
            shown = (
                f"{self.regression:+.1%} [{self.regression_low:+.1%}, {self.regression_high:+.1%}]"
            )
        else:
            shown = f"{self.speedup:.3g}x [{self.speedup_low:.3g}, {self.speedup_high:.3g}]"
        return (
            f"{shown} {format_level(self.confidence, self.confidence)} {self.method}, "
            f"{self.pairs} pairs, n = {self.n_a}/{self.n_b}"
        )


_SEQ_CACHE: collections.OrderedDict[Any, tuple[bytes, int, ShiftSequence]] = (
    collections.OrderedDict()
)
_SEQ_CACHE_SIZE = 256


def _pairs_digest(d: Sequence[float], k: int) -> bytes:
    import hashlib
    import struct

    return hashlib.blake2b(struct.pack(f"<Q{k}d", k, *d[:k]), digest_size=16).digest()


def anytime_ratio(
    a: Sequence[float],
    b: Sequence[float],
    confidence: float = 0.95,
    *,
    key: Any = None,
) -> AnytimeRatio:
    """The ratio A / B with a confidence sequence valid whenever it is looked at.

    Sessions are paired in order (the i-th of A with the i-th of B: interleaved sets run them
    side by side); an unpaired last session waits for its partner. The sequence is
    ``ShiftSequence`` over ``log a_i - log b_i``, exponentiated. With a ``key`` (a gate passes
    its metric, variants and group) the sequence is kept between calls, one per key: when the
    pairs extend those seen before, asking again after one more pair costs one update, not a
    replay; otherwise it is rebuilt from the pairs given.

    Args:
        a: variant A's values (baseline), positive (times, sizes), in session order.
        b: variant B's values (candidate), positive, in session order.
        confidence: ``1 - alpha``, in (0, 1).
        key: any hashable naming the sequence, or None to compute without keeping it.

    Returns:
        The ratio and its sequence; with no pairs yet, bounds ``(0, inf)``.

    Raises:
        ValueError: for a value that is not positive and finite, or a confidence out of (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    k = min(len(a), len(b))
    d: list[float] = []
    for x, y in zip(a[:k], b[:k], strict=True):
        if not (x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"a ratio needs positive, finite values, got {x!r} and {y!r}")
        d.append(math.log(x) - math.log(y))
    alpha = 1.0 - confidence
    seq: ShiftSequence | None = None
    start = 0
    cache_key = None if key is None else (key, alpha)
    if cache_key is not None:
        found = _SEQ_CACHE.pop(cache_key, None)
        if found is not None:
            digest, seen, cached = found
            if seen <= k and _pairs_digest(d, seen) == digest:
                seq, start = cached, seen
    if seq is None:
        seq = ShiftSequence(alpha)
    for v in d[start:]:
        seq.update(v)
    if cache_key is not None:
        _SEQ_CACHE[cache_key] = (_pairs_digest(d, k), k, seq)
        while len(_SEQ_CACHE) > _SEQ_CACHE_SIZE:
            _SEQ_CACHE.popitem(last=False)
    low, high = seq.interval() if k else (-math.inf, math.inf)
    est = seq.estimate() if k else math.nan
    return AnytimeRatio(
        speedup=math.exp(est),
        speedup_low=math.exp(low),
        speedup_high=math.exp(high),
        regression=math.exp(-est) - 1.0,
        regression_low=math.exp(-high) - 1.0,
        regression_high=math.exp(-low) - 1.0,
        pairs=k,
        n_a=len(a),
        n_b=len(b),
        confidence=confidence,
    )
