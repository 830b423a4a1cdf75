"""Numbers people can read (issue 14 point 3): rates humanised, counters as totals and rates,
one-off values as points, constant metrics folded into one line, units everywhere."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from textual.app import App, ComposeResult

from perfmon.core.batch import SampleBatch
from perfmon.core.gates import parse_gate
from perfmon.core.live import LiveState
from perfmon.core.model import (
    Dimension,
    MetricKind,
    Sample,
    SessionResult,
    SessionSpec,
    SessionStatus,
)
from perfmon.core.snapshot import SNAPSHOT_VERSION, MetricSummary, Snapshot
from perfmon.core.units import (
    format_counter,
    format_metric,
    format_quantity,
    format_rate,
    format_si,
    metric_rate_unit,
)
from perfmon.engine.compare import ComparisonRow, render_rows_markdown, render_rows_text
from perfmon.tui.screens.timeline import series_points
from perfmon.tui.widgets.timeline_chart import (
    BLOCKS,
    POINT,
    TimelineChart,
    bucket_columns,
    points_only,
)
from synthetic_runs import session_spec

# -- units ---------------------------------------------------------------------------------


def test_rates_are_humanised_with_their_unit() -> None:
    assert metric_rate_unit("parquet_read_bytes_per_second") == "B/s"
    assert metric_rate_unit("events_per_second") == "/s"
    assert metric_rate_unit("session_seconds") is None
    assert format_metric(9.27e7, "parquet_read_bytes_per_second") == "92.7 MB/s"
    assert format_metric(1.5e9, "read_bytes_per_second") == "1.5 GB/s"
    assert format_metric(512.0, "read_bytes_per_second") == "512 B/s"
    assert format_metric(12_345.0, "events_per_second") == "12.3 k/s"
    assert format_metric(0.5, "events_per_second") == "0.5/s"
    assert format_rate(None) == "–"
    assert "e+" not in format_metric(9.27e7, "parquet_read_bytes_per_second")


def test_other_metrics_keep_their_dimension_and_large_numbers_get_a_prefix() -> None:
    assert format_metric(0.0013, "chunk_seconds") == "1.3 ms"
    assert format_metric(48 * 1024**2, "rss_bytes") == "48 MiB"
    assert format_metric(63.2, "system_memory_percent") == "63.2%"
    assert format_metric(1e-4, "sdpa_max_abs_diff") == "1.000e-04"  # tiny: scientific is right
    assert format_quantity(9.27e7, Dimension.NONE) == "92.7 M"
    assert format_quantity(12_345_678.0, Dimension.COUNT) == "12,345,678"
    assert format_si(2.5e12) == "2.5 T"
    assert format_si(math.inf, "B/s") == "inf B/s"
    assert format_metric(None, "x") == "–"


def test_counters_read_as_total_and_rate() -> None:
    assert format_counter(1234, 30.0, "chunks_total") == "Σ 1,234 · 41.1/s"
    assert format_counter(3e6, 0.0, "written_bytes_total") == "Σ 2.86 MiB"  # no span: no rate
    assert format_counter(3e6, 1.0, "written_bytes_total") == "Σ 2.86 MiB · 3 MB/s"


# -- gates ----------------------------------------------------------------------------------


def _spec(sid: int, variant: str, set_name: str = "golden") -> SessionSpec:
    return session_spec(sid, variant, workload="w", set_name=set_name)


def test_the_per_set_text_of_a_regression_gate_is_a_percentage() -> None:
    live = LiveState(run_id="r", campaign="c", run_dir="/r", started_t=0.0)
    rng = np.random.default_rng(4)
    sid = 0
    for _ in range(10):
        for variant, scale in (("baseline", 1.0), ("candidate", 1.08)):
            spec = _spec(sid, variant)
            live.add_session(spec)
            value = scale * float(rng.lognormal(0.0, 0.01))
            live.add_batch(
                SampleBatch.from_samples([Sample(float(sid), sid, "session_seconds", value)])
            )
            live.update_session(SessionResult(spec=spec, status=SessionStatus.OK))
            sid += 1
    gate = parse_gate("regression(session_seconds, baseline, candidate) < 5%")
    result = gate.evaluate(live, "Regression")
    ((name, _state, text),) = result.per_set
    assert name == "golden"
    assert text.startswith("+") and "%" in text, text  # e.g. "+8.1% [+7.2%, +9.0%]"
    value = float(text.split("%")[0])
    assert 5.0 < value < 11.0  # percent points, not the fraction 0.08


def test_gate_reason_of_a_rate_is_humanised() -> None:
    live = LiveState(run_id="r", campaign="c", run_dir="/r", started_t=0.0)
    spec = _spec(0, "baseline")
    live.add_session(spec)
    live.add_batch(SampleBatch.from_samples([Sample(1.0, 0, "read_bytes_per_second", 9.27e7)]))
    result = parse_gate("min(read_bytes_per_second) > 50000000").evaluate(live, "Read")
    assert "min = 92.7 MB/s" in result.reason
    assert "> 50 MB/s" in result.reason


# -- the timeline: one-off values are points ----------------------------------------------


def test_series_gaps_ride_in_the_snapshot_and_the_timeline_skips_them() -> None:
    live = LiveState(run_id="r", campaign="c", run_dir="/r", started_t=0.0, series_points=8)
    spec = _spec(0, "baseline")
    live.add_session(spec)
    # a one-off value at t = 0 and one at t = 7.5 s: the buckets between got nothing
    live.add_batch(
        SampleBatch.from_samples([Sample(0.0, 0, "parity_diff", 1e-5, MetricKind.VALUE)])
    )
    live.add_batch(
        SampleBatch.from_samples([Sample(7.5, 0, "parity_diff", 2e-5, MetricKind.VALUE)])
    )
    snap = live.snapshot(now=8.0, state="running")
    (m,) = snap.metrics
    filled = m.series_filled()
    assert filled[0] and filled[-1] and not any(filled[1:-1])
    assert Snapshot.from_dict(snap.to_dict()).metrics[0].series_gaps == m.series_gaps
    t, v = series_points(m, 0.0)
    assert v == [1e-5, 2e-5]  # two points, not a plateau over the gap
    assert t[0] < 1.0 < 7.0 < t[1]
    assert points_only(m)


def _summary(name: str, kind: str, values: list[float]) -> MetricSummary:
    return MetricSummary(
        name=name,
        kind=kind,
        count=len(values),
        total=sum(values),
        last=values[-1],
        min=min(values),
        max=max(values),
        mean=sum(values) / len(values),
        p50=sorted(values)[len(values) // 2],
        p95=max(values),
        series=tuple(values),
        series_span_s=float(len(values)),
    )


class _ChartApp(App[None]):
    def compose(self) -> ComposeResult:
        yield TimelineChart(id="chart")


async def test_a_one_off_value_is_drawn_as_one_point() -> None:
    app = _ChartApp()
    async with app.run_test(size=(60, 14)) as pilot:
        chart = app.query_one(TimelineChart)
        cols = bucket_columns([30.0], [1e-5], 0.0, 100.0, chart.plot_width)
        chart.show(cols, points=True, metric="sdpa_max_abs_diff")
        await pilot.pause()
        text = "\n".join(strip.text for strip in chart._build())
        assert text.count(POINT) == 1
        assert not any(b in text for b in BLOCKS)
        # the same value as a bar chart fills its column from the axis up
        chart.show(cols, points=False)
        await pilot.pause()
        bars = "\n".join(strip.text for strip in chart._build())
        assert POINT not in bars and any(b in bars for b in BLOCKS)


async def test_rate_axis_labels_are_humanised() -> None:
    app = _ChartApp()
    async with app.run_test(size=(60, 14)) as pilot:
        chart = app.query_one(TimelineChart)
        cols = bucket_columns([1.0, 2.0], [9.0e7, 9.5e7], 0.0, 3.0, chart.plot_width)
        chart.show(cols, metric="read_bytes_per_second")
        await pilot.pause()
        text = "\n".join(strip.text for strip in chart._build())
        assert "MB/s" in text and "e+" not in text


# -- the metrics panel ----------------------------------------------------------------------


def _snapshot(metrics: list[MetricSummary]) -> Snapshot:
    return Snapshot(
        version=SNAPSHOT_VERSION,
        run_id="r",
        campaign="c",
        run_dir="/r",
        state="running",
        started_t=0.0,
        now_t=10.0,
        sessions_total=1,
        sessions_done=0,
        samples_total=10,
        malformed_total=0,
        metrics=tuple(metrics),
    )


async def test_metrics_panel_humanises_counts_folds_constants_and_shows_one_offs() -> None:
    from perfmon.tui.app import PerfmonApp
    from perfmon.tui.source import StaticSource
    from perfmon.tui.widgets.metrics_table import CONSTANT_KEY, MetricsTable

    snap = _snapshot(
        [
            _summary("batch_size", MetricKind.GAUGE.value, [64.0] * 5),
            _summary("chunks_total", MetricKind.COUNTER.value, [1.0] * 20),
            _summary("cache_ratio", MetricKind.GAUGE.value, [0.5] * 4),
            _summary("read_bytes_per_second", MetricKind.GAUGE.value, [9.0e7, 9.27e7]),
            _summary("sdpa_max_abs_diff", MetricKind.VALUE.value, [3e-5]),
        ]
    )
    app = PerfmonApp(StaticSource(snap))
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        table = app.query_one(MetricsTable)
        keys = table.row_keys
        assert keys[-1] == CONSTANT_KEY  # the folded line comes last
        assert "batch_size" not in keys and "cache_ratio" not in keys
        const = table.cell_text(CONSTANT_KEY, "trend")
        assert "batch_size = 64" in const and "cache_ratio = 0.5" in const
        assert table.cell_text(CONSTANT_KEY, "metric") == "(2 constant)"
        # a counter: total and rate, no p95 or max of its increments
        assert table.cell_text("chunks_total", "last") == "Σ 20 · 1/s"
        assert table.cell_text("chunks_total", "p95") == ""
        assert table.cell_text("chunks_total", "max") == ""
        # a rate in its unit
        assert table.cell_text("read_bytes_per_second", "last") == "92.7 MB/s"
        assert table.cell_text("read_bytes_per_second", "max") == "92.7 MB/s"
        # a one-off value: its value alone
        assert table.cell_text("sdpa_max_abs_diff", "last") == "3.000e-05"
        assert table.cell_text("sdpa_max_abs_diff", "p95") == ""
        assert table.metric_of(CONSTANT_KEY) is None


# -- compare output -------------------------------------------------------------------------


def _row(metric: str, a: float, b: float, constant: bool) -> ComparisonRow:
    return ComparisonRow(
        "golden w", metric, "A", "B", 8, 8, a, b, 0.0, 0.0, 0, 0,
        speedup=1.0, speedup_low=1.0, speedup_high=1.0, change=0.0, p_value=1.0,
        confidence=0.95, constant=constant,
    )  # fmt: skip


@pytest.mark.parametrize("render", ["md", "text"])
def test_compare_folds_constant_rows_into_one_line(render: str) -> None:
    rows = [
        _row("session_seconds", 1.2, 1.1, False),
        _row("config_rows", 10_000.0, 10_000.0, True),
        _row("page_bytes", 4096.0, 4096.0, True),
    ]
    options = {"confidence": 0.95}
    if render == "md":
        text = "\n".join(render_rows_markdown(rows, options))
    else:
        text = render_rows_text(rows, options)
    assert text.count("1x [1, 1]") == 1  # only the row that is not constant
    assert "constant: golden w: config_rows = 10,000, page_bytes = 4 KiB" in text


def test_report_comparison_marks_constant_rows(tmp_path: Path) -> None:
    from perfmon.engine.compare import comparison_section
    from perfmon.engine.recorder import read_run
    from synthetic_runs import normal_walls, record_run

    run = record_run(
        tmp_path / "run",
        {"baseline": normal_walls(1.0, 6), "candidate": normal_walls(0.7, 6, seed=2)},
    )
    rows = {r["metric"]: r for r in comparison_section(read_run(run))["rows"]}
    assert rows["event_queue_depth"]["constant"]  # 4.5 in every session of both sides
    assert not rows["session_seconds"]["constant"]


def test_report_gate_table_shows_regressions_in_percent_and_rates_in_their_unit() -> None:
    from perfmon.core.gates import parse_gate
    from perfmon.core.model import GateResult, GateState
    from perfmon.engine.report import _gate_json
    from perfmon.engine.report_md import _gate_table

    def gate(expr: str, value: float, low: float, high: float) -> dict[str, object]:
        # As the report writes it: the result annotated with the gate's grammar (issue 12).
        result = GateResult("G", expr, GateState.FAIL, value, 10, "r", low, high)
        return _gate_json(parse_gate(expr).annotate(result))

    md = "\n".join(
        _gate_table(
            [
                gate("regression(session_seconds, baseline, candidate) < 5%", 0.0834, 0.02, 0.15),
                gate("speedup(session_seconds, baseline, candidate) >= 1.4", 1.39, 1.3, 1.51),
                gate("min(read_bytes_per_second) > 5e7", 9.27e7, 9e7, 9.5e7),
            ]
        )
    )
    assert "| +8.34% | [+2.00%, +15.00%] |" in md
    assert "0.0834" not in md
    assert "| 1.39x | [1.3x, 1.51x] |" in md
    assert "| 92.7 MB/s | [90 MB/s, 95 MB/s] |" in md
