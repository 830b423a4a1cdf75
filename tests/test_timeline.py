"""The timeline: gate changes recorded by the runner, the chart's columns and markers, and the
timeline screen (open with t, change metric, zoom into a window read from a real recording)."""

from __future__ import annotations

import asyncio
import json
import math
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perfmon.core.batch import SampleBatch
from perfmon.core.campaign import parse_campaign
from perfmon.core.model import GateResult, GateState, MetricKind, Sample
from perfmon.core.snapshot import (
    SNAPSHOT_VERSION,
    GateChange,
    MetricSummary,
    RunState,
    Snapshot,
)
from perfmon.engine.events import EVENTS_JSONL, GateChangeLog, read_gate_changes
from perfmon.engine.recorder import Recorder, make_run_dir
from perfmon.engine.report import render_markdown
from perfmon.engine.runner import Runner
from perfmon.tui.app import PerfmonApp
from perfmon.tui.screens.timeline import TimelineScreen, series_points
from perfmon.tui.source import ScriptedSource
from perfmon.tui.widgets.timeline_chart import (
    BLOCKS,
    GUTTER,
    TimelineChart,
    bucket_columns,
    marker_columns,
    tick_step,
    value_range,
)

T0 = 1_700_000_000.0


# -- pure pieces -----------------------------------------------------------------------------


def test_bucket_columns_min_max_mean_per_column() -> None:
    t = [0.5, 1.5, 1.6, 9.99, 10.0, 20.0, -1.0]
    v = [1.0, 2.0, 4.0, 5.0, 7.0, 100.0, 100.0]
    cols = bucket_columns(t, v, 0.0, 10.0, 5)
    assert cols.count.tolist() == [3, 0, 0, 0, 2]  # 20 s and -1 s are outside; 10.0 is last
    assert cols.mean[0] == pytest.approx(7.0 / 3)
    assert (cols.lo[0], cols.hi[0]) == (1.0, 4.0)
    assert (cols.lo[4], cols.hi[4], cols.mean[4]) == (5.0, 7.0, 6.0)
    assert math.isnan(cols.mean[1]) and math.isnan(cols.hi[2])
    assert cols.column_of(4.1) == 2 and cols.column_of(99) == 4 and cols.column_of(-3) == 0
    with pytest.raises(ValueError):
        bucket_columns([], [], 1.0, 1.0, 3)
    with pytest.raises(ValueError):
        bucket_columns([1.0], [1.0, 2.0], 0.0, 1.0, 3)


def test_bucket_columns_matches_a_plain_loop_on_random_data() -> None:
    rng = np.random.default_rng(5)
    t = rng.uniform(0, 100, 5000)
    v = rng.normal(10, 3, 5000)
    cols = bucket_columns(t, v, 20.0, 70.0, 37)
    for i in range(37):
        a, b = 20.0 + 50.0 * i / 37, 20.0 + 50.0 * (i + 1) / 37
        sel = v[(t >= a) & ((t < b) | ((i == 36) & (t <= b)))]
        assert cols.count[i] == sel.size
        assert cols.lo[i] == pytest.approx(sel.min())
        assert cols.hi[i] == pytest.approx(sel.max())
        assert cols.mean[i] == pytest.approx(sel.mean())


def test_markers_fall_in_the_columns_of_their_times() -> None:
    cols = bucket_columns([0.0, 100.0], [1.0, 1.0], 0.0, 100.0, 50)
    changes = [
        {"t": T0 + 10.0, "gate": "A", "old": "pending", "new": "pass"},
        {"t": T0 + 51.0, "gate": "B", "old": "pending", "new": "fail"},
        {"t": T0 + 51.5, "gate": "A", "old": "pass", "new": "inconclusive"},
        {"t": T0 + 150.0, "gate": "A", "old": "inconclusive", "new": "pass"},  # outside
    ]
    assert marker_columns(changes, T0, cols) == {5: "pass", 25: "inconclusive"}


def test_tick_step_and_value_range() -> None:
    assert tick_step(60, 80) == 10  # 8 labels fit
    assert tick_step(3 * 3600, 80) == 1800
    assert tick_step(72 * 3600, 60) == 43200
    flat = bucket_columns([1.0, 2.0], [5.0, 5.0], 0.0, 3.0, 3)
    assert value_range(flat) == (4.5, 5.5)
    from_zero = bucket_columns([1.0, 2.0], [1.0, 10.0], 0.0, 3.0, 3)
    assert value_range(from_zero) == (0.0, 10.0)
    narrow = bucket_columns([1.0, 2.0], [90.0, 100.0], 0.0, 3.0, 3)
    assert value_range(narrow) == (89.5, 100.0)
    assert value_range(bucket_columns([], [], 0.0, 1.0, 2)) is None


def test_series_points_sit_on_the_run_time_axis() -> None:
    m = metric("x", [1.0, 2.0, 3.0, 4.0], start=T0 + 10.0, span=8.0)
    t, v = series_points(m, T0)
    assert t == [11.0, 13.0, 15.0, 17.0] and v == [1.0, 2.0, 3.0, 4.0]


# -- gate changes: log, reader, report, a real run ------------------------------------------


def _gate(name: str, state: GateState, reason: str = "") -> GateResult:
    return GateResult(name=name, expr="max(x) < 1", state=state, value=None, n=0, reason=reason)


def test_gate_change_log_records_changes_only_and_reads_back(tmp_path: Path) -> None:
    log = GateChangeLog(tmp_path, keep=2)
    assert log.observe([_gate("A", GateState.PENDING), _gate("B", GateState.PENDING)], 1.0) == []
    assert not (tmp_path / EVENTS_JSONL).exists()
    first = log.observe([_gate("A", GateState.PASS, "ok"), _gate("B", GateState.PENDING)], 2.0)
    assert first == [{"t": 2.0, "gate": "A", "old": "pending", "new": "pass", "reason": "ok"}]
    assert log.observe([_gate("A", GateState.PASS), _gate("B", GateState.PENDING)], 3.0) == []
    log.observe([_gate("A", GateState.FAIL), _gate("B", GateState.INCONCLUSIVE)], 4.0)
    assert [(c["gate"], c["new"]) for c in log.recent] == [("A", "fail"), ("B", "inconclusive")]
    log.close()
    # A torn last line (kill -9 mid-write) is skipped and counted.
    with (tmp_path / EVENTS_JSONL).open("a") as f:
        f.write('{"v": 1, "event": "gate", "t": 5.0, "ga')
    changes, dropped = read_gate_changes(tmp_path)
    assert dropped == 1
    assert [(c["t"], c["gate"], c["old"], c["new"]) for c in changes] == [
        (2.0, "A", "pending", "pass"),
        (4.0, "A", "pass", "fail"),
        (4.0, "B", "pending", "inconclusive"),
    ]
    assert read_gate_changes(tmp_path / "nowhere") == ([], 0)


WORKLOAD = textwrap.dedent(
    """
    import time
    from perfmon import probe
    for i in range(5):
        probe.gauge("depth_total", float(i))
        time.sleep(0.05)
    probe.value("parity_diff_ratio", 1e-6)  # the probe flushes at exit
    """
)

CAMPAIGN = """
[campaign]
name = "timeline"
sample_interval = "100ms"

[[workload]]
name = "w"
command = ["{python}", "SCRIPT"]

[set.golden]
sessions = 2

[[gate]]
name = "Parity"
expr = "max(parity_diff_ratio) <= 1e-4"
"""


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Snapshot]:
    """A small real run whose Parity gate turns from pending to pass; its last snapshot."""
    tmp = tmp_path_factory.mktemp("timeline")
    script = tmp / "work.py"
    script.write_text(WORKLOAD)
    path = tmp / "timeline.toml"
    path.write_text(CAMPAIGN.replace("SCRIPT", str(script)))
    campaign = parse_campaign(path.read_text(), path)
    run_dir = make_run_dir(tmp / "runs", "timeline", time.time())
    runner = Runner(campaign, run_dir, snapshot_hz=20)
    snaps: list[Snapshot] = []
    runner.snapshot_listeners.append(snaps.append)
    outcome = asyncio.run(runner.run())
    assert outcome.verdict == "pass"
    return run_dir, snaps[-1]


@pytest.mark.slow
def test_runner_records_a_gate_change_to_events_jsonl(real_run: tuple[Path, Snapshot]) -> None:
    run_dir, last = real_run
    lines = (run_dir / EVENTS_JSONL).read_text().splitlines()
    parity = [json.loads(x) for x in lines if json.loads(x)["gate"] == "Parity"]
    assert parity[0]["old"] == "pending" and parity[0]["new"] == "pass"
    assert parity[0]["reason"]  # the gate's one-line reason at the change
    started = json.loads((run_dir / "manifest.json").read_text())["started_t"]
    assert started <= parity[0]["t"] <= time.time()
    # Published in snapshots, and listed in the report.
    assert last.gate_changes is not None and last.gate_changes[0].gate == "Parity"
    report = json.loads((run_dir / "report.json").read_text())
    assert report["gate_changes"]["changes"][0]["new"] == "pass"
    md = render_markdown(report)
    assert "## Gate changes" in md and "| Parity | pending -> pass |" in md


# -- the screen ------------------------------------------------------------------------------


def metric(
    name: str, series: list[float], *, start: float = T0, span: float | None = None
) -> MetricSummary:
    finite = [x for x in series if math.isfinite(x)]
    return MetricSummary(
        name=name,
        kind=MetricKind.GAUGE.value,
        count=len(finite),
        total=sum(finite),
        last=finite[-1],
        min=min(finite),
        max=max(finite),
        mean=sum(finite) / len(finite),
        p50=finite[len(finite) // 2],
        p95=max(finite),
        series=tuple(series),
        series_span_s=float(len(series)) if span is None else span,
        series_start_t=start,
    )


def scripted_snapshot(
    run_dir: Path, elapsed: float, changes: list[dict[str, Any]], **metrics: list[float]
) -> Snapshot:
    return Snapshot(
        version=SNAPSHOT_VERSION,
        run_id="r",
        campaign="demo",
        run_dir=str(run_dir),
        state=RunState.RUNNING,
        started_t=T0,
        now_t=T0 + elapsed,
        sessions_total=4,
        sessions_done=1,
        samples_total=100,
        malformed_total=0,
        metrics=tuple(metric(n, s) for n, s in sorted(metrics.items())),
        gates=(_gate("RAM", GateState.PASS),),
        verdict="pass",
        gate_changes=tuple(GateChange.from_dict(c) for c in changes),
    )


def chart_text(app: PerfmonApp) -> list[str]:
    chart = app.screen.query_one(TimelineChart)
    h = chart.content_size.height
    return ["".join(s.text for s in chart.render_line(y)) for y in range(h)]


async def test_timeline_screen_opens_with_t_switches_metric_and_zooms(tmp_path: Path) -> None:
    # 100 s of a ramp (one bucket a second) and a flat metric; two gate changes.
    changes = [
        {"t": T0 + 20.0, "gate": "RAM", "old": "pending", "new": "pass", "reason": "ok"},
        {"t": T0 + 60.0, "gate": "Latency", "old": "pending", "new": "fail", "reason": "slow"},
    ]
    snap = scripted_snapshot(
        tmp_path,
        100.0,
        changes,
        a_ramp_seconds=[float(i) / 1000 for i in range(100)],
        b_flat_bytes=[2048.0] * 100,
    )
    app = PerfmonApp(ScriptedSource([snap]), refresh_hz=20)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("t")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, TimelineScreen)
        await pilot.pause(0.1)
        chart = screen.query_one(TimelineChart)
        assert screen.metric == "a_ramp_seconds" and screen.window is None
        cols = screen.columns
        assert cols is not None and cols.width == chart.plot_width
        assert (cols.start_s, cols.end_s) == (0.0, 100.0)
        # Markers at the columns of 20 s and 60 s, coloured by the new state.
        assert chart.markers == {cols.column_of(20.0): "pass", cols.column_of(60.0): "fail"}
        lines = chart_text(app)
        top = lines[0]
        assert top[GUTTER + cols.column_of(20.0)] == "┊"
        assert top[GUTTER + cols.column_of(60.0)] == "┊"
        bottom_row = lines[-3]
        assert bottom_row[GUTTER + cols.width - 1] == BLOCKS[7]  # the ramp's top is full
        assert "99 ms" in top[:GUTTER]  # the value axis in the metric's unit (0.099 s max)
        assert "0:00:00" in lines[-1] and "0:01:" in lines[-1]
        # The cursor follows the newest column; left moves it.
        assert chart.cursor == cols.width - 1
        await pilot.press("left", "left")
        assert chart.cursor == cols.width - 3
        # Another metric from the list.
        await pilot.press("down")
        await pilot.pause()
        assert screen.metric == "b_flat_bytes"
        assert "KiB" in chart_text(app)[0][:GUTTER]
        # Zoom in around the cursor: the window halves, twice; 0 goes back.
        await pilot.press("plus")
        await pilot.pause()
        assert screen.window is not None
        start, end = screen.window
        assert end - start == pytest.approx(50.0) and start <= screen.cursor_s <= end
        await pilot.press("plus")
        await pilot.pause()
        assert screen.window[1] - screen.window[0] == pytest.approx(25.0)
        await pilot.press("minus")
        await pilot.pause()
        assert screen.window[1] - screen.window[0] == pytest.approx(50.0)
        await pilot.press("0")
        await pilot.pause()
        assert screen.window is None
        await pilot.press("escape")
        assert not isinstance(app.screen, TimelineScreen)


async def test_zoom_reads_the_recorded_window(tmp_path: Path) -> None:
    # A recorded run: one sample a second for 200 s; sample i has value i, except a spike.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rec = Recorder(run_dir)
    rec.write_manifest({"format": "perfmon-run", "version": 1, "started_t": T0})
    values = [float(i) for i in range(200)]
    values[150] = 1000.0
    rec.add_batch(
        SampleBatch.from_samples(
            [Sample(T0 + i, -1, "load_ratio", v, MetricKind.GAUGE) for i, v in enumerate(values)]
        )
    )
    rec.flush()
    # The live series is coarse: 20 buckets of 10 s means (the spike is diluted).
    means = [float(np.mean(values[i : i + 10])) for i in range(0, 200, 10)]
    snap = scripted_snapshot(run_dir, 200.0, [], load_ratio=means)
    snap = Snapshot(
        **{
            **{f: getattr(snap, f) for f in snap.__dataclass_fields__},
            "metrics": (metric("load_ratio", means, span=200.0),),
        }
    )
    app = PerfmonApp(ScriptedSource([snap]), refresh_hz=20)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("t")
        await pilot.pause(0.1)
        screen = app.screen
        assert isinstance(screen, TimelineScreen)
        whole = screen.columns
        assert whole is not None and float(np.nanmax(whole.hi)) < 1000.0  # series means only
        # Put the cursor on the spike (150 s), then zoom in: the window is read from disk.
        screen.cursor_s = 150.5
        screen.follow = False
        await pilot.press("plus")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.zoomed_columns is not None and not screen.loading
        cols = screen.columns
        assert cols is screen.zoomed_columns
        start, end = screen.window or (0, 0)
        assert end - start == pytest.approx(100.0) and start <= 150.0 <= end
        # Each column holds the recorded samples of its time range: the spike is its max.
        spike_col = cols.column_of(150.0)
        assert cols.hi[spike_col] == 1000.0
        expected = sum(1 for i in range(200) if start <= i <= end)
        assert int(cols.count.sum()) == expected
        assert "samples" in str(screen.query_one("#timeline-detail").render())
