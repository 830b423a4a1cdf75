"""``perfmon.core.stats`` against scipy.stats and numpy on the same data."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats as sps

from perfmon.core.stats import (
    OUTLIER_Z,
    SampleTooSmall,
    SessionGroup,
    StatsOptions,
    _rank_sum_distribution,
    compare,
    modified_z_scores,
    mwu_null_pmf,
    pairwise_difference_quantiles,
    rank_interval_plan,
    significance,
    significance_test,
    summarize,
    theil_sen,
)

RNG = np.random.default_rng(7)
A = RNG.lognormal(0.0, 0.1, 20)  # "baseline" session times, ~1 s
B = RNG.lognormal(-0.4, 0.1, 17)  # "candidate", ~0.67 s


def test_summary_matches_numpy() -> None:
    s = summarize(A.tolist())
    assert s.n == 20
    assert s.median == pytest.approx(np.median(A))
    assert s.mad == pytest.approx(np.median(np.abs(A - np.median(A))))
    assert s.mean == pytest.approx(np.mean(A))
    assert s.std == pytest.approx(np.std(A, ddof=1))
    assert s.p5 == pytest.approx(np.quantile(A, 0.05))
    assert s.p95 == pytest.approx(np.quantile(A, 0.95))
    assert (s.min, s.max) == (A.min(), A.max())
    assert s.cv == pytest.approx(np.std(A, ddof=1) / np.mean(A))
    # MAD agrees with scipy's unscaled median_abs_deviation.
    assert s.mad == pytest.approx(sps.median_abs_deviation(A, scale=1.0))


def test_empty_summary_is_nan() -> None:
    s = summarize([])
    assert s.n == 0 and math.isnan(s.median) and s.outliers == 0


def test_modified_z_scores_flag_outliers_and_keep_them() -> None:
    values = [1.0, 1.01, 0.99, 1.02, 0.98, 1.0, 5.0]
    z = modified_z_scores(values)
    med = np.median(values)
    mad = np.median(np.abs(np.array(values) - med))
    assert z == pytest.approx(list(0.6745 * (np.array(values) - med) / mad))
    assert [abs(v) > OUTLIER_Z for v in z] == [False] * 6 + [True]
    s = summarize(values)
    assert s.outliers == 1 and s.n == 7  # counted, not dropped
    assert s.max == 5.0


def test_zero_mad_flags_any_departure() -> None:
    assert modified_z_scores([2.0, 2.0, 2.0, 3.0]) == [0.0, 0.0, 0.0, math.inf]
    assert summarize([2.0, 2.0, 2.0]).outliers == 0


@pytest.mark.parametrize("method", ["percentile", "basic", "BCa"])
def test_bootstrap_ci_equals_scipy_with_the_same_seed(method: str) -> None:
    opts = StatsOptions(
        resamples=2000, seed=42, method=method, confidence=0.9, interval="bootstrap"
    )
    c = compare(A.tolist(), B.tolist(), opts)

    def ratio(
        x: NDArray[np.float64], y: NDArray[np.float64], axis: int = -1
    ) -> NDArray[np.float64]:
        return np.median(x, axis=axis) / np.median(y, axis=axis)

    def change(
        x: NDArray[np.float64], y: NDArray[np.float64], axis: int = -1
    ) -> NDArray[np.float64]:
        return np.median(y, axis=axis) / np.median(x, axis=axis) - 1

    for stat, low, high in (
        (ratio, c.speedup_low, c.speedup_high),
        (change, c.regression_low, c.regression_high),
    ):
        ref = sps.bootstrap(
            (A, B),
            stat,
            n_resamples=2000,
            paired=False,
            confidence_level=0.9,
            method=method,
            rng=np.random.default_rng(42),
        ).confidence_interval
        assert (low, high) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert c.speedup == pytest.approx(np.median(A) / np.median(B))
    assert c.regression == pytest.approx(np.median(B) / np.median(A) - 1)
    assert c.speedup_low < c.speedup < c.speedup_high
    assert c.estimator == "median ratio" and "approximate" in c.interval_method


def test_significance_equals_scipy() -> None:
    mw = sps.mannwhitneyu(A, B, alternative="two-sided", method="exact").pvalue
    welch = sps.ttest_ind(A, B, equal_var=False).pvalue
    assert significance(A.tolist(), B.tolist()) == pytest.approx(mw)
    assert significance(A.tolist(), B.tolist(), "welch") == pytest.approx(welch)
    assert compare(A.tolist(), B.tolist(), StatsOptions(test="welch")).p_value == pytest.approx(
        welch
    )
    with pytest.raises(ValueError, match="unknown test"):
        significance([1.0, 2.0], [1.0, 2.0], "ks")


def test_compare_is_reproducible_and_seed_dependent() -> None:
    boot = {"resamples": 500, "interval": "bootstrap"}
    one = compare(A.tolist(), B.tolist(), StatsOptions(seed=1, **boot))  # type: ignore[arg-type]
    again = compare(list(A), list(B), StatsOptions(seed=1, **boot))  # type: ignore[arg-type]
    other = compare(A.tolist(), B.tolist(), StatsOptions(seed=2, **boot))  # type: ignore[arg-type]
    assert (one.speedup_low, one.speedup_high) == (again.speedup_low, again.speedup_high)
    assert (one.speedup_low, one.speedup_high) != (other.speedup_low, other.speedup_high)


def test_compare_rejects_what_it_cannot_compute() -> None:
    with pytest.raises(ValueError, match=">= 2 values"):
        compare([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive medians"):
        compare([0.0, 0.0, 1.0], [1.0, 2.0], StatsOptions(interval="bootstrap"))
    with pytest.raises(ValueError, match="positive values"):
        compare([0.0, 1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0, 5.0])


@pytest.mark.parametrize(
    "kw",
    [
        {"confidence": 1.0},
        {"test": "ks"},
        {"resamples": 10},
        {"method": "studentized"},
        {"interval": "bca"},
        {"min_sessions": 2},
    ],
)
def test_bad_options(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        StatsOptions(**kw)  # type: ignore[arg-type]


def test_theil_sen_equals_scipy() -> None:
    t = np.arange(50.0) * 60.0
    y = 1e6 + 2.0 * t + RNG.normal(0, 500, 50)
    trend = theil_sen(t.tolist(), y.tolist(), 0.9)
    assert trend is not None
    ref = sps.theilslopes(y, t, alpha=0.9)
    assert (trend.slope, trend.low, trend.high) == pytest.approx(
        (ref.slope, ref.low_slope, ref.high_slope)
    )
    assert trend.n == 50 and trend.span_s == pytest.approx(49 * 60.0)
    assert theil_sen([0.0, 1.0], [1.0, 2.0]) is None
    assert theil_sen([5.0, 5.0, 5.0], [1.0, 2.0, 3.0]) is None


def test_session_group_label() -> None:
    g = SessionGroup("golden", "tgat", (("events", "128"),))
    assert g.label == "golden tgat events=128"


# -- exact rank intervals and p-values ----------------------------------------------------------


def _brute_u_counts(m: int, n: int) -> list[int]:
    """Counts of U = sum of X's ranks - m(m+1)/2 over every split of ranks 1..m+n."""
    counts = [0] * (m * n + 1)
    for xs in itertools.combinations(range(1, m + n + 1), m):
        counts[sum(xs) - m * (m + 1) // 2] += 1
    return counts


def _recurrence_u_counts(m: int, n: int) -> list[int]:
    """Mann & Whitney's recurrence f(u; m, n) = f(u - n; m - 1, n) + f(u; m, n - 1), in ints."""

    @functools.cache
    def f(u: int, i: int, j: int) -> int:
        if u < 0:
            return 0
        if i == 0 or j == 0:
            return int(u == 0)
        return f(u - j, i - 1, j) + f(u, i, j - 1)

    return [f(u, m, n) for u in range(m * n + 1)]


@pytest.mark.parametrize(("m", "n"), [(1, 1), (3, 3), (2, 7), (5, 4), (6, 6)])
def test_null_distribution_of_u_equals_brute_force(m: int, n: int) -> None:
    counts = _brute_u_counts(m, n)
    total = math.comb(m + n, m)
    assert sum(counts) == total
    assert mwu_null_pmf(m, n) == pytest.approx([c / total for c in counts], abs=1e-15)


def test_null_distribution_of_u_at_moderate_sizes_equals_integer_recurrence() -> None:
    counts = _recurrence_u_counts(20, 17)
    total = math.comb(37, 20)
    pmf = mwu_null_pmf(20, 17)
    assert pmf == pytest.approx([c / total for c in counts], rel=1e-9, abs=1e-18)
    scipy_p = sps.mannwhitneyu(A, B, alternative="two-sided", method="exact").pvalue
    assert significance_test(A.tolist(), B.tolist()).p == pytest.approx(scipy_p, rel=1e-9)


@pytest.mark.parametrize(
    ("m", "n", "conf", "k", "actual"),
    [
        # Hollander, Wolfe & Chicken (2014), table A.6 gives these critical values
        (5, 5, 0.95, 3, 1 - 2 * 4 / 252),
        (10, 10, 0.95, 24, None),
        (4, 4, 0.95, 1, 1 - 2 / 70),
        (3, 3, 0.90, 1, 0.9),
        (3, 3, 0.95, 0, 0.9),  # unattainable: at most 90%
    ],
)
def test_rank_interval_plan(m: int, n: int, conf: float, k: int, actual: float | None) -> None:
    plan = rank_interval_plan(m, n, conf)
    assert plan.k == k and plan.exact
    counts = _recurrence_u_counts(m, n)
    total = math.comb(m + n, m)
    if k:
        tail = sum(counts[:k]) / total
        assert plan.confidence == pytest.approx(1 - 2 * tail)
        half = (1 - conf) / 2 * (1 + 1e-9)  # 0.1 / 2 is 0.04999... in floats
        assert tail <= half < (tail + counts[k] / total)  # k is the largest such
        assert plan.confidence >= conf
    if actual is not None:
        assert plan.confidence == pytest.approx(actual)


def test_large_rank_plan_uses_the_normal_approximation_close_to_the_level() -> None:
    plan = rank_interval_plan(2000, 1500, 0.95)
    assert not plan.exact and plan.confidence == pytest.approx(0.95, abs=1e-3)


@pytest.mark.parametrize(("m", "n"), [(6, 4), (40, 33), (700, 450)])
def test_pairwise_difference_quantiles_equal_a_full_sort(m: int, n: int) -> None:
    rng = np.random.default_rng(m)
    x = rng.lognormal(0, 0.5, m)
    y = np.round(rng.lognormal(0, 0.5, n), 2)  # ties in y
    d = np.sort((x[:, None] - y[None, :]).ravel())
    ks = [1, 2, m * n // 3, m * n // 2, m * n // 2 + 1, m * n - 1, m * n]
    got = pairwise_difference_quantiles(x.tolist(), y.tolist(), ks)
    assert got == pytest.approx([d[k - 1] for k in ks], rel=0, abs=1e-12)


def test_hodges_lehmann_ratio_and_rank_interval_by_brute_force() -> None:
    a, b = A[:9].tolist(), B[:7].tolist()
    c = compare(a, b)
    ratios = np.sort((np.asarray(a)[:, None] / np.asarray(b)[None, :]).ravel())
    plan = rank_interval_plan(9, 7, 0.95)
    assert c.speedup == pytest.approx(np.median(ratios))
    assert (c.speedup_low, c.speedup_high) == pytest.approx(
        (ratios[plan.k - 1], ratios[63 - plan.k])
    )
    assert c.regression == pytest.approx(1 / c.speedup - 1)
    assert (c.regression_low, c.regression_high) == pytest.approx(
        (1 / c.speedup_high - 1, 1 / c.speedup_low - 1)
    )
    assert c.median_ratio == pytest.approx(np.median(a) / np.median(b))
    assert c.estimator == "HL ratio" and c.confidence == plan.confidence
    line = c.describe()
    assert "exact rank CI (Hodges-Lehmann, log)" in line and "Mann-Whitney exact p = " in line
    assert line.endswith("n = 9/7") and line.startswith(f"{c.speedup:.3g}x [")


@pytest.mark.parametrize(("n", "level"), [(5, 0.95), (10, 0.95), (5, 0.90)])
def test_rank_interval_coverage_holds_at_small_n(n: int, level: float) -> None:
    """2,000 A/A campaigns from a heavy-tailed lognormal: the interval misses 1 at most as
    often as its level allows (plus Monte Carlo error), and not far less (it is not vacuous)."""
    rng = np.random.default_rng(20261201 + n)
    sims = 2000
    x = np.log(rng.lognormal(0.0, 1.0, (sims, n)))
    y = np.log(rng.lognormal(0.0, 1.0, (sims, n)))
    d = np.sort((x[:, :, None] - y[:, None, :]).reshape(sims, -1), axis=1)
    plan = rank_interval_plan(n, n, level)
    low, high = d[:, plan.k - 1], d[:, n * n - plan.k]
    miss = float(np.mean((low > 0) | (high < 0)))
    nominal = 1 - plan.confidence
    se = math.sqrt(nominal * (1 - nominal) / sims)
    assert miss <= nominal + 3 * se
    assert miss >= nominal - 4 * se
    # one of those campaigns through compare() gives the same interval
    c = compare(np.exp(x[0]).tolist(), np.exp(y[0]).tolist(), StatsOptions(confidence=level))
    assert (c.speedup_low, c.speedup_high) == pytest.approx((math.exp(low[0]), math.exp(high[0])))


def test_three_versus_three_never_claims_more_than_it_can() -> None:
    # every split of six distinct values: p >= 0.1, the smallest attainable
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    ps = []
    for xs in itertools.combinations(values, 3):
        ys = [v for v in values if v not in xs]
        ps.append(significance_test(list(xs), ys).p)
    assert min(ps) == pytest.approx(0.1) and all(p >= 0.1 - 1e-12 for p in ps)
    # with ties, too (scipy's normal approximation gives 0.047 for this split)
    tied = significance_test([1.0, 1.0, 2.0], [3.0, 4.0, 4.0])
    assert tied.p == pytest.approx(0.1) and "all 20 splits" in tied.method
    with pytest.raises(SampleTooSmall, match=r"at most 90.0% confidence, not 95%") as info:
        compare([1.0, 1.1, 1.2], [2.0, 2.1, 2.2])
    assert info.value.best == pytest.approx(0.9)
    c = compare([1.0, 1.1, 1.2], [2.0, 2.1, 2.2], StatsOptions(confidence=0.9))
    assert (c.speedup_low, c.speedup_high) == pytest.approx((1.0 / 2.2, 1.2 / 2.0))


def _exact_permutation_p(a: list[float], b: list[float]) -> float:
    pooled = np.asarray(a + b)
    ranks = sps.rankdata(pooled)
    m = len(a)
    r1 = ranks[:m].sum()
    sums = np.array([ranks[list(ix)].sum() for ix in itertools.combinations(range(len(pooled)), m)])
    low = np.mean(sums <= r1 + 1e-9)
    high = np.mean(sums >= r1 - 1e-9)
    return float(min(1.0, 2 * min(low, high)))


def test_ties_get_the_exact_permutation_p() -> None:
    a = [3.0, 3.0, 4.0, 5.0, 5.0, 6.0]
    b = [1.0, 2.0, 3.0, 3.0, 4.0, 4.0, 2.0]
    pv = significance_test(a, b)
    assert pv.p == pytest.approx(_exact_permutation_p(a, b), rel=1e-12)
    assert "exact permutation (all 1,716 splits, ties)" in pv.method
    rng = np.random.default_rng(5)
    a = rng.integers(0, 6, 9).astype(float).tolist()
    b = (rng.integers(0, 6, 8) + 1).astype(float).tolist()
    assert significance_test(a, b).p == pytest.approx(_exact_permutation_p(a, b), rel=1e-9)
    assert significance_test(b, a).p == pytest.approx(_exact_permutation_p(a, b), rel=1e-9)


def test_ties_at_mid_size_use_a_monte_carlo_permutation_within_its_error() -> None:
    rng = np.random.default_rng(5)
    a = rng.integers(0, 30, 30).astype(float).tolist()
    b = (rng.integers(0, 30, 60) + 3).astype(float).tolist()
    pooled = np.asarray(a + b)
    scores = np.rint(2 * sps.rankdata(pooled)).astype(np.int64)
    dist = _rank_sum_distribution(scores, 30)
    observed = int(scores[:30].sum())
    exact = min(1.0, 2 * min(dist[: observed + 1].sum(), dist[observed:].sum()))
    pv = significance_test(a, b, resamples=9999, seed=1)
    assert "9,999 random splits" in pv.method
    se = math.sqrt(exact * (1 - exact) / 9999) * 2
    assert abs(pv.p - exact) <= 4 * se + 2 / 10000
    assert pv.p == significance_test(a, b, resamples=9999, seed=1).p  # seeded


def test_large_samples_are_fast_enough_paths() -> None:
    rng = np.random.default_rng(3)
    a = rng.lognormal(0, 0.3, 1500).tolist()
    b = rng.lognormal(0.1, 0.3, 1200).tolist()
    c = compare(a, b)
    assert "normal approx." in c.interval_method and "normal approx." in c.p_method
    assert c.speedup_low < c.speedup < c.speedup_high < 1.0
    ref = sps.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic").pvalue
    assert c.p_value == pytest.approx(ref)


def test_pairwise_difference_quantiles_with_heavy_ties_and_large_values() -> None:
    rng = np.random.default_rng(2)
    x = np.round(rng.normal(1e6, 10, 600))  # many equal differences, far from 0
    y = np.round(rng.normal(1e6, 10, 500))
    d = np.sort((x[:, None] - y[None, :]).ravel())
    ks = [1, 5, 1000, 150_000, 299_999, 300_000]
    assert pairwise_difference_quantiles(x.tolist(), y.tolist(), ks) == [d[k - 1] for k in ks]
