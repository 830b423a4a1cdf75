"""ArrayMetricSource: exact reductions over recorded samples."""

from __future__ import annotations

import numpy as np
import pytest

from perfmon.core.datasource import ArrayMetricSource
from perfmon.core.model import MetricKind, Sample


def _source() -> ArrayMetricSource:
    t = np.array([10.0, 11.0, 12.0, 13.0, 14.0])
    return ArrayMetricSource(
        {
            "depth": (MetricKind.GAUGE, t, np.array([5.0, 1.0, 4.0, 2.0, 3.0])),
            "chunks_total": (MetricKind.COUNTER, t, np.array([1.0, 2.0, 1.0, 1.0, 3.0])),
        }
    )


@pytest.mark.parametrize(
    ("func", "expected"),
    [
        ("max", 5.0),
        ("min", 1.0),
        ("mean", 3.0),
        ("median", 3.0),
        ("sum", 15.0),
        ("count", 5.0),
        ("last", 3.0),
    ],
)
def test_reductions(func: str, expected: float) -> None:
    want: tuple[object, int] = (pytest.approx(expected), 5)
    assert _source().reduce(func, "depth") == want


def test_count_of_a_counter_sums_increments() -> None:
    src = _source()
    assert src.reduce("count", "chunks_total") == (8.0, 5)
    assert src.reduce("count", "depth") == (5.0, 5)


def test_quantile_is_hyndman_fan_type_7() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    src = ArrayMetricSource({"x": (MetricKind.HISTOGRAM, np.arange(5.0), values)})
    # Type 7: h = (n - 1) q; 0.9 * 4 = 3.6 -> 4 + 0.6 * (10 - 4) = 7.6
    want: tuple[object, int] = (pytest.approx(7.6), 5)
    assert src.reduce("quantile", "x", q=0.9) == want
    assert src.reduce("quantile", "x", q=0.0) == (1.0, 5)
    assert src.reduce("quantile", "x", q=1.0) == (10.0, 5)
    with pytest.raises(ValueError, match="q in"):
        src.reduce("quantile", "x")
    with pytest.raises(ValueError, match="q in"):
        src.reduce("quantile", "x", q=1.5)


def test_window_uses_samples_since_now_minus_window() -> None:
    src = _source()
    assert src.now == 14.0
    # window_bounds(14, 2) = [12.0625, 14.0625): the live state's cut, steps of 2 s / 32
    assert src.reduce("max", "depth", window_s=2.0) == (3.0, 2)
    assert src.reduce("count", "chunks_total", window_s=0.0) == (3.0, 1)
    # An explicit end of window: a metric that stopped reporting is empty in a short window.
    late = ArrayMetricSource(
        {"depth": (MetricKind.GAUGE, np.array([1.0, 2.0]), np.array([7.0, 8.0]))}, now=100.0
    )
    assert late.reduce("max", "depth", window_s=10.0) == (None, 0)
    assert late.reduce("max", "depth") == (8.0, 2)


def test_window_end_is_latest_over_all_metrics() -> None:
    src = ArrayMetricSource(
        {
            "a": (MetricKind.GAUGE, np.array([1.0, 2.0]), np.array([1.0, 2.0])),
            "b": (MetricKind.GAUGE, np.array([50.0]), np.array([9.0])),
        }
    )
    assert src.now == 50.0
    assert src.reduce("max", "a", window_s=10.0) == (None, 0)


def test_unknown_metric_and_empty_arrays() -> None:
    src = ArrayMetricSource({"e": (MetricKind.GAUGE, np.empty(0), np.empty(0))})
    assert src.reduce("max", "nope") == (None, 0)
    assert src.reduce("count", "e") == (None, 0)
    assert src.kind("e") is None
    assert src.kind("nope") is None
    assert src.now is None
    with pytest.raises(ValueError, match="unknown reduction"):
        src.reduce("stddev", "e")


def test_unsorted_input_is_sorted_and_last_is_latest() -> None:
    src = ArrayMetricSource(
        {"x": (MetricKind.GAUGE, np.array([3.0, 1.0, 2.0]), np.array([30.0, 10.0, 20.0]))}
    )
    assert src.reduce("last", "x") == (30.0, 3)
    assert src.reduce("min", "x", window_s=1.0) == (30.0, 1)  # [2.03125, 3.03125)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="one length"):
        ArrayMetricSource({"x": (MetricKind.GAUGE, np.arange(3.0), np.arange(2.0))})


def test_from_samples() -> None:
    samples = [
        Sample(2.0, 0, "chunks_total", 1.0, MetricKind.COUNTER),
        Sample(1.0, 0, "depth", 4.0),
        Sample(3.0, 1, "depth", 6.0),
        Sample(0.5, 1, "chunks_total", 2.0, MetricKind.COUNTER),
        Sample(2.5, 0, "depth", 5.0),
    ]
    src = ArrayMetricSource.from_samples(samples)
    assert src.metric_names == ("chunks_total", "depth")
    assert src.kind("chunks_total") is MetricKind.COUNTER
    assert src.kind("depth") is MetricKind.GAUGE
    assert src.reduce("count", "chunks_total") == (3.0, 2)
    assert src.reduce("last", "depth") == (6.0, 3)
    assert src.reduce("last", "chunks_total") == (1.0, 2)
    assert list(src.values("depth")) == [4.0, 5.0, 6.0]


def test_from_samples_kind_of_latest_sample() -> None:
    samples = [
        Sample(1.0, 0, "n", 1.0, MetricKind.GAUGE),
        Sample(2.0, 0, "n", 1.0, MetricKind.COUNTER),
    ]
    assert ArrayMetricSource.from_samples(samples).kind("n") is MetricKind.COUNTER
