"""The gate language: parsing, unit checks, evaluation, verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perfmon.core.campaign import GateConfig
from perfmon.core.datasource import ArrayMetricSource
from perfmon.core.gates import (
    FUNCTIONS,
    Evaluation,
    Expr,
    Gate,
    GateSyntaxError,
    Ratio,
    Reduce,
    evaluate_gates,
    parse_gate,
    verdict,
)
from perfmon.core.labels import Selector
from perfmon.core.model import Dimension, GateResult, GateState, MetricKind
from perfmon.core.stats import SessionGroup


class FakeSource:
    """A MetricSource with canned reductions: (func, metric) -> (value, n).

    It serves what threshold gates read (``reduce`` without label matchers, ``kind``); the
    session-level methods that statistical gates read fail loudly if a test reaches them.
    """

    def __init__(
        self,
        values: dict[tuple[str, str], tuple[float | None, int]],
        kinds: dict[str, MetricKind] | None = None,
    ) -> None:
        self.values = values
        self.kinds = kinds or {}
        self.calls: list[tuple[str, str, float | None, float | None]] = []

    def reduce(
        self,
        func: str,
        metric: str,
        *,
        q: float | None = None,
        window_s: float | None = None,
        where: Selector = (),
    ) -> tuple[float | None, int]:
        assert not where, "FakeSource serves no label matchers"
        self.calls.append((func, metric, q, window_s))
        return self.values.get((func, metric), (None, 0))

    def kind(self, metric: str) -> MetricKind | None:
        return self.kinds.get(metric)

    def session_groups(self) -> list[SessionGroup]:
        raise AssertionError("FakeSource has no sessions")

    def session_variants(self) -> list[str]:
        raise AssertionError("FakeSource has no sessions")

    def finished_sessions(self, group: SessionGroup) -> int:
        raise AssertionError("FakeSource has no sessions")

    def session_values(
        self, metric: str, variant: str | None, *, group: SessionGroup | None = None
    ) -> list[float]:
        raise AssertionError("FakeSource has no sessions")

    def points(
        self, metric: str, *, window_s: float | None = None, where: Selector = ()
    ) -> tuple[list[float], list[float]]:
        raise AssertionError("FakeSource has no time series")


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "func", "metric", "q"),
    [
        ("max(rss_bytes) < 1GB", "max", "rss_bytes", None),
        ("min(x) > 0", "min", "x", None),
        ("mean(x) < 1", "mean", "x", None),
        ("median(x) < 1", "median", "x", None),
        ("sum(x) < 1", "sum", "x", None),
        ("count(x) < 1", "count", "x", None),
        ("last(x) < 1", "last", "x", None),
        ("p50(x) < 1", "quantile", "x", 0.5),
        ("p95(event_queue_depth) < 100", "quantile", "event_queue_depth", 0.95),
        ("p99(x) < 1", "quantile", "x", 0.99),
        ("p99.9(x) < 1", "quantile", "x", 0.999),
        ("  p95 ( x )<1  ", "quantile", "x", 0.95),
    ],
)
def test_parse_reductions(text: str, func: str, metric: str, q: float | None) -> None:
    gate = parse_gate(text)
    assert isinstance(gate.lhs, Reduce)
    assert gate.lhs.func == func
    assert gate.lhs.metric == metric
    if q is None:
        assert gate.lhs.q is None
    else:
        assert gate.lhs.q == pytest.approx(q)
    assert gate.metrics == frozenset({metric})
    assert gate.expr == text


@pytest.mark.parametrize(
    ("text", "op", "threshold", "threshold_text"),
    [
        ("max(causal_trace_bytes) < 50MB", "<", 50e6, "50MB"),
        ("max(rss_bytes) <= 1MiB", "<=", 1024.0**2, "1MiB"),
        ("p95(chunk_seconds) < 1ms", "<", 1e-3, "1ms"),
        ("p95(chunk_seconds) < 0.001", "<", 1e-3, "0.001"),
        ("max(sdpa_max_abs_diff) <= 1e-4", "<=", 1e-4, "1e-4"),
        ("max(system_memory_percent) <= 70", "<=", 70.0, "70"),
        ("max(system_memory_percent) <= 70%", "<=", 70.0, "70%"),
        ("max(hit_ratio) >= 90%", ">=", 0.9, "90%"),
        ("ratio(count(compressions), count(chunks)) < 10%", "<", 0.10, "10%"),
        ("ratio(count(compressions), count(chunks)) < 0.10", "<", 0.10, "0.10"),
        ("mean(x) > -3", ">", -3.0, "-3"),
        ("mean(chunk_seconds) >= 2 min", ">=", 120.0, "2 min"),
    ],
)
def test_parse_thresholds(text: str, op: str, threshold: float, threshold_text: str) -> None:
    gate = parse_gate(text)
    assert gate.op == op
    assert gate.threshold == pytest.approx(threshold)
    assert gate.threshold_text == threshold_text


def test_parse_ratio_nested() -> None:
    gate = parse_gate("ratio(count(a_total), ratio(sum(b), max(c))) < 1")
    assert isinstance(gate.lhs, Ratio)
    assert isinstance(gate.lhs.den, Ratio)
    assert gate.metrics == frozenset({"a_total", "b", "c"})
    assert gate.lhs.text == "ratio(count(a_total), ratio(sum(b), max(c)))"
    assert gate.lhs.dimension is Dimension.RATIO


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("", 1, "expected a function"),
        ("p95(x)", 7, "expected a comparison"),
        ("p95(x) <", 9, "expected a threshold"),
        ("p95(x) == 3", 8, "unsupported comparison"),
        ("p95(x) = 3", 8, "unsupported comparison"),
        ("foo(x) < 3", 1, "unknown function 'foo'"),
        ("p95 x < 3", 5, "expected '('"),
        ("p95(x < 3", 7, "expected ')'"),
        ("p95() < 3", 5, "expected a metric name"),
        ("p95(1x) < 3", 5, "expected a metric name"),
        ("max(x.1) < 3", 5, "expected a metric name"),
        ("max(x.y) < 3", 6, "unexpected character '.'"),
        ("p101(x) < 3", 1, "not between p0 and p100"),
        ("max(x) < 3 apples", 10, "bad threshold"),
        ("max(x) < abc", 10, "bad threshold"),
        ("max(x) < nan", 10, "bad threshold"),
        ("ratio(count(a) count(b)) < 1", 16, "expected ','"),
        ("ratio(count(a), b) < 1", 17, "unknown function 'b'"),
        ("max(x) $ 3", 8, "unexpected character '$'"),
        ("3 < max(x)", 1, "expected a function"),
    ],
)
def test_parse_errors(text: str, column: int, fragment: str) -> None:
    with pytest.raises(GateSyntaxError) as info:
        parse_gate(text)
    assert fragment in info.value.message
    assert info.value.column == column
    assert f"(column {column})" in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("max(chunk_seconds) < 50MB", "threshold 50MB is bytes but metric chunk_seconds is time"),
        ("max(rss_bytes) < 1ms", "threshold 1ms is time but metric rss_bytes is bytes"),
        ("max(event_queue_depth) < 1s", "metric event_queue_depth is without unit"),
        ("max(chunk_seconds) < 10%", "is a percentage but metric chunk_seconds is time"),
        ("max(cpu_percent) < 1s", "metric cpu_percent is a percentage"),
        ("count(chunk_seconds) < 1s", "count(chunk_seconds) is a count"),
        ("ratio(count(a), count(b)) < 5MB", "ratio(count(a), count(b)) is a ratio"),
    ],
)
def test_unit_mismatch(text: str, fragment: str) -> None:
    with pytest.raises(GateSyntaxError) as info:
        parse_gate(text)
    assert fragment in info.value.message
    assert info.value.column == text.index("<") + 3


def test_function_registry_is_extensible() -> None:
    """A new function is one registry entry; the parser needs no change."""

    class Double(Expr):
        def __init__(self, inner: Expr) -> None:
            self.inner = inner

        @property
        def metrics(self) -> frozenset[str]:
            return self.inner.metrics

        @property
        def dimension(self) -> Dimension:
            return self.inner.dimension

        @property
        def text(self) -> str:
            return f"double({self.inner.text})"

        def evaluate(self, source, window_s):  # type: ignore[no-untyped-def]
            ev = self.inner.evaluate(source, window_s)
            value = None if ev.value is None else 2 * ev.value
            return Evaluation(value, ev.n, f"double = {value}", ev.missing, ev.waiting, 1.0, 3.0)

    def build(parser, name, pos):  # type: ignore[no-untyped-def]
        inner = parser.expr()
        parser.expect(")", "after double's argument")
        return Double(inner)

    FUNCTIONS["double"] = build
    try:
        gate = parse_gate("double(max(x)) < 2.5")
        assert gate.metrics == frozenset({"x"})
        result = gate.evaluate(FakeSource({("max", "x"): (1.0, 4)}), "d")
        # The expression carries an interval 1..3 that straddles 2.5.
        assert result.state is GateState.INCONCLUSIVE
        assert result.value == 2.0
        assert (result.ci_low, result.ci_high) == (1.0, 3.0)
        assert (
            parse_gate("double(max(x)) < 4")
            .evaluate(FakeSource({("max", "x"): (1.0, 4)}), "d")
            .state
            is GateState.PASS
        )
        assert (
            parse_gate("double(max(x)) < 0.5")
            .evaluate(FakeSource({("max", "x"): (1.0, 4)}), "d")
            .state
            is GateState.FAIL
        )
    finally:
        del FUNCTIONS["double"]
    with pytest.raises(GateSyntaxError, match="unknown function 'double'"):
        parse_gate("double(max(x)) < 2.5")


# --- evaluation with a fake source ----------------------------------------------------------


def test_pass_fail_and_reason() -> None:
    src = FakeSource({("quantile", "event_queue_depth"): (31.0, 4812)})
    result = parse_gate("p95(event_queue_depth) < 100").evaluate(src, "Queue depth")
    assert result == GateResult(
        "Queue depth",
        "p95(event_queue_depth) < 100",
        GateState.PASS,
        31.0,
        4812,
        "p95 = 31 over 4,812 samples, limit < 100",
        # The gate's grammar, as its parser gave it (issue 12).
        op="<",
        threshold=100.0,
        threshold_text="100",
        limit="< 100",
        unit="none",
        selections=(("event_queue_depth", ()),),
        func="p95",
    )
    calls: list[tuple[str, str, object, None]] = [
        ("quantile", "event_queue_depth", pytest.approx(0.95), None)
    ]
    assert src.calls == calls

    src = FakeSource({("quantile", "event_queue_depth"): (131.0, 4812)})
    result = parse_gate("p95(event_queue_depth) < 100").evaluate(src, "Queue depth")
    assert result.state is GateState.FAIL
    assert result.reason == "p95 = 131 over 4,812 samples, limit < 100"


@pytest.mark.parametrize(
    ("op", "value", "state"),
    [
        ("<", 100.0, GateState.FAIL),
        ("<=", 100.0, GateState.PASS),
        (">", 100.0, GateState.FAIL),
        (">=", 100.0, GateState.PASS),
        ("<", 99.0, GateState.PASS),
        (">", 101.0, GateState.PASS),
    ],
)
def test_operators_at_the_boundary(op: str, value: float, state: GateState) -> None:
    src = FakeSource({("max", "x"): (value, 3)})
    assert parse_gate(f"max(x) {op} 100").evaluate(src, "g").state is state


def test_reason_in_human_units() -> None:
    src = FakeSource({("max", "causal_trace_bytes"): (12.3 * 1024**2, 40)})
    result = parse_gate("max(causal_trace_bytes) < 50MB").evaluate(src, "Trace")
    assert result.state is GateState.PASS
    assert result.reason == "max = 12.3 MiB over 40 samples, limit < 47.7 MiB (50MB)"

    src = FakeSource({("quantile", "chunk_seconds"): (0.0013, 1)})
    result = parse_gate("p99(chunk_seconds) < 1ms").evaluate(src, "Chunk")
    assert result.state is GateState.FAIL
    assert result.reason == "p99 = 1.3 ms over 1 sample, limit < 1 ms (1ms)"


def test_pending_until_samples_and_window_passed_through() -> None:
    gate = parse_gate("p95(event_queue_depth) < 100")
    src = FakeSource({})
    result = gate.evaluate(src, "Queue", window_s=60.0)
    assert result.state is GateState.PENDING
    assert result.value is None
    assert result.reason == "waiting for samples of event_queue_depth"
    assert src.calls[0][3] == 60.0


def test_ratio_reason_and_state() -> None:
    gate = parse_gate("ratio(count(compressions), count(chunks)) < 0.1")
    src = FakeSource({("count", "compressions"): (12.0, 12), ("count", "chunks"): (280.0, 280)})
    result = gate.evaluate(src, "Compression")
    assert result.state is GateState.PASS
    assert result.value == pytest.approx(12 / 280)
    assert result.n == 292
    assert result.reason == "ratio = 0.04286 (12 / 280), limit < 0.1"

    pct = parse_gate("ratio(count(compressions), count(chunks)) < 10%").evaluate(src, "c")
    assert pct.state is GateState.PASS
    assert pct.reason.endswith("limit < 0.1 (10%)")

    src = FakeSource({("count", "compressions"): (40.0, 40), ("count", "chunks"): (280.0, 280)})
    assert gate.evaluate(src, "Compression").state is GateState.FAIL


def test_ratio_pending_cases() -> None:
    gate = parse_gate("ratio(count(compressions), count(chunks)) < 0.1")
    # No chunks yet: pending on the denominator (and the numerator).
    result = gate.evaluate(FakeSource({}), "c")
    assert result.state is GateState.PENDING
    assert result.reason == "waiting for samples of chunks, compressions"
    # Zero denominator: pending.
    src = FakeSource({("count", "compressions"): (0.0, 1), ("count", "chunks"): (0.0, 3)})
    result = gate.evaluate(src, "c")
    assert result.state is GateState.PENDING
    assert result.reason == "waiting: count(chunks) is 0"
    # Chunks but no compression yet: a count of nothing is 0, so the gate is decided.
    result = gate.evaluate(FakeSource({("count", "chunks"): (50.0, 50)}), "c")
    assert result.state is GateState.PASS
    assert result.value == 0.0
    # ... but a max of nothing stays pending.
    gate = parse_gate("ratio(max(a), count(chunks)) < 0.1")
    result = gate.evaluate(FakeSource({("count", "chunks"): (50.0, 50)}), "c")
    assert result.state is GateState.PENDING
    assert result.reason == "waiting for samples of a"


def test_evaluate_gates_and_verdict() -> None:
    gates = [
        GateConfig("A", "max(x) < 10", parse_gate("max(x) < 10")),
        GateConfig("B", "max(y) < 10", parse_gate("max(y) < 10"), window_s=5.0),
    ]
    src = FakeSource({("max", "x"): (3.0, 2)})
    results = evaluate_gates(gates, src)
    assert [r.name for r in results] == ["A", "B"]
    assert [r.state for r in results] == [GateState.PASS, GateState.PENDING]
    assert src.calls[1][3] == 5.0
    assert verdict(results) is GateState.PENDING

    def r(state: GateState) -> GateResult:
        return GateResult("g", "e", state, None, 0, "")

    assert verdict([]) is GateState.PASS
    assert verdict([r(GateState.PASS), r(GateState.PASS)]) is GateState.PASS
    assert verdict([r(GateState.PASS), r(GateState.FAIL), r(GateState.PENDING)]) is (GateState.FAIL)
    assert verdict([r(GateState.INCONCLUSIVE), r(GateState.PASS)]) is GateState.INCONCLUSIVE
    assert verdict([r(GateState.INCONCLUSIVE), r(GateState.PENDING)]) is GateState.PENDING


def test_gate_is_hashable_and_compares_by_text() -> None:
    assert parse_gate("max(x) < 1") == parse_gate("max(x) < 1")
    assert isinstance(parse_gate("max(x) < 1"), Gate)


# --- evaluation with the exact array source -------------------------------------------------


def test_gates_over_array_source() -> None:
    t = np.arange(100, dtype=float)
    src = ArrayMetricSource(
        {
            "event_queue_depth": (MetricKind.GAUGE, t, np.arange(100, dtype=float)),
            "chunks_total": (MetricKind.COUNTER, t, np.ones(100)),
            "compressions_total": (MetricKind.COUNTER, t[:5], np.ones(5)),
            "rss_bytes": (MetricKind.GAUGE, t, np.full(100, 40e6)),
        }
    )
    res = parse_gate("p95(event_queue_depth) < 100").evaluate(src, "q")
    assert res.state is GateState.PASS
    assert res.value == pytest.approx(94.05)  # type 7: 0.95 * 99
    assert res.n == 100
    res = parse_gate("p95(event_queue_depth) < 50").evaluate(src, "q", window_s=9.0)
    assert res.state is GateState.FAIL
    assert res.n == 9  # window_bounds(99, 9) = [90.28, 99.28): t = 91 .. 99
    assert res.value == pytest.approx(91 + 0.95 * 8)
    res = parse_gate("ratio(count(compressions_total), count(chunks_total)) < 10%").evaluate(
        src, "c"
    )
    assert res.state is GateState.PASS
    assert res.value == pytest.approx(0.05)
    assert res.reason == "ratio = 0.05 (5 / 100), limit < 0.1 (10%)"
    res = parse_gate("max(rss_bytes) < 50MB").evaluate(src, "m")
    assert res.state is GateState.PASS
    res = parse_gate("max(missing_bytes) < 50MB").evaluate(src, "m")
    assert res.state is GateState.PENDING


def test_parse_then_evaluate_in_campaign_path(tmp_path: Path) -> None:
    """Gates in a campaign file evaluate like directly parsed ones."""
    from perfmon.core.campaign import parse_campaign

    text = """
[campaign]
name = "g"
[[workload]]
name = "w"
command = ["true"]
[[gate]]
name = "Depth"
expr = "max(event_queue_depth) < 5"
window = "10s"
"""
    campaign = parse_campaign(text, tmp_path / "c.toml")
    t = np.arange(30, dtype=float)
    v = np.where(t < 15, 100.0, 1.0)
    src = ArrayMetricSource({"event_queue_depth": (MetricKind.GAUGE, t, v)})
    (result,) = evaluate_gates(campaign.gates, src)
    assert result.state is GateState.PASS  # the spike is outside the 10 s window
    assert result.n == 10  # window_bounds(29, 10) = [19.06, 29.06): t = 20 .. 29
