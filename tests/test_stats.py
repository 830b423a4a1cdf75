"""``perfmon.core.stats`` against scipy.stats and numpy on the same data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from perfmon.core.stats import (
    OUTLIER_Z,
    SessionGroup,
    StatsOptions,
    compare,
    modified_z_scores,
    significance,
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
    opts = StatsOptions(resamples=2000, seed=42, method=method, confidence=0.9)
    c = compare(A.tolist(), B.tolist(), opts)

    def ratio(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.median(x, axis=axis) / np.median(y, axis=axis)

    def change(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
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


def test_significance_equals_scipy() -> None:
    mw = sps.mannwhitneyu(A, B, alternative="two-sided").pvalue
    welch = sps.ttest_ind(A, B, equal_var=False).pvalue
    assert significance(A.tolist(), B.tolist()) == pytest.approx(mw)
    assert significance(A.tolist(), B.tolist(), "welch") == pytest.approx(welch)
    assert compare(A.tolist(), B.tolist(), StatsOptions(test="welch")).p_value == pytest.approx(
        welch
    )
    with pytest.raises(ValueError, match="unknown test"):
        significance([1.0, 2.0], [1.0, 2.0], "ks")


def test_compare_is_reproducible_and_seed_dependent() -> None:
    one = compare(A.tolist(), B.tolist(), StatsOptions(seed=1, resamples=500))
    again = compare(list(A), list(B), StatsOptions(seed=1, resamples=500))
    other = compare(A.tolist(), B.tolist(), StatsOptions(seed=2, resamples=500))
    assert (one.speedup_low, one.speedup_high) == (again.speedup_low, again.speedup_high)
    assert (one.speedup_low, one.speedup_high) != (other.speedup_low, other.speedup_high)


def test_compare_rejects_what_it_cannot_compute() -> None:
    with pytest.raises(ValueError, match=">= 2 values"):
        compare([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive medians"):
        compare([0.0, 0.0, 1.0], [1.0, 2.0])


@pytest.mark.parametrize(
    "kw",
    [
        {"confidence": 1.0},
        {"test": "ks"},
        {"resamples": 10},
        {"method": "studentized"},
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
