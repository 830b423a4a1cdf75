"""The metrics panel split by a label (issue 11 point 1): live state, snapshot, commands,
replay of a recorded run and the viewer's key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from perfmon.core.batch import SampleBatch
from perfmon.core.live import MAX_SPLIT_ROWS, LiveState, parse_split_command
from perfmon.core.model import SYSTEM_SESSION, MetricKind, Sample, SessionSpec
from perfmon.core.snapshot import Snapshot
from perfmon.tui.source import ScriptedSource, is_command
from synthetic_runs import record_run, session_spec


def _spec(sid: int, variant: str, *, events: str = "512", warmup: bool = False) -> SessionSpec:
    return session_spec(sid, variant, warmup=warmup, params=(("events", events),))


def _live() -> LiveState:
    return LiveState(run_id="r", campaign="c", run_dir="/r", started_t=0.0)


def _samples(
    sid: int, values: list[float], name: str = "chunk_seconds", t0: float = 1.0
) -> list[Sample]:
    return [Sample(t0 + i, sid, name, v, MetricKind.GAUGE) for i, v in enumerate(values)]


def test_split_by_variant_gives_one_exact_row_per_value() -> None:
    live = _live()
    live.add_session(_spec(0, "baseline"))
    live.add_session(_spec(1, "candidate"))
    live.add_session(_spec(2, "baseline", warmup=True))
    live.set_split("variant", now=0.0)
    live.add_batch(SampleBatch.from_samples(_samples(0, [1.0, 2.0, 3.0])))
    live.add_batch(SampleBatch.from_samples(_samples(1, [10.0, 20.0])))
    live.add_batch(SampleBatch.from_samples(_samples(2, [99.0])))  # a warm-up: not folded anywhere
    live.add_batch(
        SampleBatch.from_samples(_samples(SYSTEM_SESSION, [50.0], name="system_cpu_percent"))
    )
    snap = live.snapshot(now=5.0, state="running")
    assert snap.split_label == "variant"
    rows = {m.display_name(): m for m in snap.split_metrics}
    assert set(rows) == {
        'chunk_seconds{variant="baseline"}',
        'chunk_seconds{variant="candidate"}',
    }
    base, cand = (
        rows['chunk_seconds{variant="baseline"}'],
        rows['chunk_seconds{variant="candidate"}'],
    )
    assert (base.count, base.max, base.mean) == (3, 3.0, 2.0)
    assert (cand.count, cand.min, cand.max) == (2, 10.0, 20.0)
    pooled = next(m for m in snap.metrics if m.name == "chunk_seconds")
    assert pooled.count == 5  # the pooled row is unchanged by the split
    assert snap.split_rows_total == 2


def test_split_multi_session_batches_and_matrix_keys() -> None:
    """A batch mixing sessions is split per session, by a matrix key as well."""
    live = _live()
    for sid, ev in enumerate(["117", "512", "117"]):
        live.add_session(_spec(sid, "baseline", events=ev))
    live.set_split("events", now=0.0)
    batch = SampleBatch.from_samples(
        _samples(0, [1.0, 1.0]) + _samples(1, [5.0]) + _samples(2, [3.0]) + _samples(1, [7.0], "x")
    )
    live.add_batch(batch)
    rows = {m.display_name(): m.count for m in live.snapshot(now=1, state="running").split_metrics}
    assert rows == {
        'chunk_seconds{events="117"}': 3,
        'chunk_seconds{events="512"}': 1,
        'x{events="512"}': 1,
    }


def test_split_counts_from_the_request_and_switching_starts_afresh() -> None:
    live = _live()
    live.add_session(_spec(0, "baseline"))
    live.add_batch(
        SampleBatch.from_samples(_samples(0, [1.0, 2.0]))
    )  # before the split: pooled only
    live.set_split("variant", now=10.0)
    live.add_batch(SampleBatch.from_samples(_samples(0, [3.0], t0=11.0)))
    snap = live.snapshot(now=12.0, state="running")
    (row,) = snap.split_metrics
    assert (row.count, snap.split_since_t) == (1, 10.0)
    live.set_split("workload", now=20.0)
    assert live.snapshot(now=21, state="running").split_metrics == ()
    live.set_split("", now=30.0)
    snap = live.snapshot(now=31, state="running")
    assert (snap.split_label, snap.split_metrics, snap.split_since_t) == ("", (), 0.0)


def test_split_rows_are_capped_and_counted() -> None:
    live = _live()
    n = MAX_SPLIT_ROWS + 5
    for sid in range(n):
        live.add_session(_spec(sid, f"v{sid}"))
    live.set_split("variant", now=0.0)
    for sid in range(n):
        live.add_batch(SampleBatch.from_samples(_samples(sid, [1.0])))
    snap = live.snapshot(now=1.0, state="running")
    assert snap.split_rows_total == MAX_SPLIT_ROWS
    assert snap.split_samples_dropped == 5
    assert len(snap.split_metrics) <= 128  # SNAPSHOT_MAX_METRICS: the snapshot stays bounded


def test_split_snapshot_round_trips_through_json() -> None:
    live = _live()
    live.add_session(_spec(0, "baseline"))
    live.set_split("variant", now=0.0)
    live.add_batch(SampleBatch.from_samples(_samples(0, [1.0, 2.0])))
    snap = live.snapshot(now=1.0, state="running")
    again = Snapshot.from_dict(snap.to_dict())
    assert again == snap
    assert again.split_metrics[0].labels == (("variant", "baseline"),)


def test_split_command_grammar() -> None:
    assert parse_split_command("split") == ""
    assert parse_split_command("split events") == "events"
    assert parse_split_command("split ") == ""  # whitespace around words is ignored
    for bad in ("split a b", "splits", "split a{", "split " + "x" * 65):
        with pytest.raises(ValueError):
            parse_split_command(bad)
    assert is_command("split variant") and is_command("split")
    assert not is_command("split a=b")


def test_split_costs_nothing_while_not_asked_for() -> None:
    live = _live()
    live.add_session(_spec(0, "baseline"))
    ts = np.arange(1000, dtype=np.float64)
    batch = SampleBatch.from_samples(_samples(0, list(ts)))
    live.add_batch(batch)
    assert live._split is None and live._groups_agg is None


def test_runner_applies_split_in_order_with_ingest(tmp_path: Path) -> None:
    """The daemon's ``split LABEL`` reaches the live state through the mutation queue."""
    from test_runner import make_runner

    runner = make_runner(tmp_path)
    runner.handle_command("split variant")
    assert runner.snapshot().split_label == "variant"
    runner.handle_command("split")
    assert runner.snapshot().split_label == ""
    with pytest.raises(ValueError):
        runner.handle_command("split no good")


def test_recorded_run_source_splits_the_whole_recording(tmp_path: Path) -> None:
    from perfmon.engine.replay import RecordedRunSource

    run = record_run(tmp_path / "run", {"baseline": [2.0, 2.1, 2.2], "candidate": [1.0, 1.1]})
    src = RecordedRunSource(run)
    first = src.latest()
    assert first is not None and first.split_label == ""
    src.send("split variant")
    src.join(60)
    snap = src.latest()
    assert snap is not None and snap.split_label == "variant"
    assert snap.split_since_t <= snap.started_t  # the whole recording is split
    counts = {m.display_name(): m.count for m in snap.split_metrics if m.name == "session_seconds"}
    assert counts == {
        'session_seconds{variant="baseline"}': 3,
        'session_seconds{variant="candidate"}': 2,
    }
    with pytest.raises(ConnectionError):
        src.send("stop")


async def test_split_key_cycles_labels_and_the_panel_shows_labelled_rows() -> None:
    """``l`` sends ``split variant``, then ``split workload``, ...; the panel names each row
    as a PromQL selection."""
    from perfmon.tui.app import PerfmonApp
    from perfmon.tui.widgets.metrics_table import MetricsTable

    live = _live()
    live.add_session(_spec(0, "baseline"))
    live.add_session(_spec(1, "candidate"))
    live.add_batch(SampleBatch.from_samples(_samples(0, [1.0, 2.0]) + _samples(1, [3.0, 4.0])))
    plain = live.snapshot(now=5.0, state="running")
    live.set_split("variant", now=0.0)
    live.add_batch(
        SampleBatch.from_samples(_samples(0, [1.5], t0=6.0) + _samples(1, [3.5], t0=6.0))
    )
    split = live.snapshot(now=7.0, state="running")
    source = ScriptedSource([plain, split])
    app = PerfmonApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("l")
        assert source.commands == ["split variant"]
        source.advance()
        await pilot.pause(0.4)
        table = app.query_one(MetricsTable)
        keys = {str(k.value) for k in table.rows}
        assert 'chunk_seconds{variant="baseline"}' in keys
        assert 'chunk_seconds{variant="candidate"}' in keys
        assert "by variant" in str(table.border_subtitle)
        assert table.metric_of('chunk_seconds{variant="baseline"}') == "chunk_seconds"
        await pilot.press("l", "l", "l", "l")
        assert source.commands[1:] == ["split workload", "split set", "split events", "split"]


async def test_split_key_on_a_recorded_run_shows_the_split(tmp_path: Path) -> None:
    from perfmon.engine.replay import RecordedRunSource
    from perfmon.tui.app import PerfmonApp
    from perfmon.tui.widgets.metrics_table import MetricsTable

    run = record_run(tmp_path / "run", {"baseline": [2.0, 2.1], "candidate": [1.0, 1.1]})
    app = PerfmonApp(RecordedRunSource(run))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("l")
        for _ in range(100):
            await pilot.pause(0.1)
            if app.snapshot is not None and app.snapshot.split_label == "variant":
                break
        await pilot.pause(0.3)
        keys = {str(k.value) for k in app.query_one(MetricsTable).rows}
        assert 'session_seconds{variant="candidate"}' in keys


def test_display_name_of_a_pooled_row_is_its_name() -> None:
    from perfmon.core.snapshot import MetricSummary

    m = MetricSummary("a", "gauge", 1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    assert m.display_name() == "a"
    assert dataclasses.replace(m, labels=(("set", "x"),)).display_name() == 'a{set="x"}'


def test_the_daemon_stops_splitting_when_the_last_viewer_that_asked_leaves(
    tmp_path: Path,
) -> None:
    from typing import Any

    from perfmon.engine.daemon import ControlServer

    class Runner:
        def __init__(self) -> None:
            self.commands: list[str] = []

        def handle_command(self, command: str) -> None:
            self.commands.append(command)

    runner = Runner()
    server = ControlServer(runner, tmp_path / "s.sock")
    a: Any = object()
    b: Any = object()
    server._note_split(a, "split variant")
    server._note_split(b, "split workload")  # one split, shared by the viewers
    server._note_split(b, "pause")  # other commands change nothing
    server._release_split(a)
    assert runner.commands == []  # b still looks at it
    server._release_split(b)
    assert runner.commands == ["split"]  # nobody left: the ingest path stops splitting
    server._release_split(b)
    assert runner.commands == ["split"]
    server._note_split(a, "split set")
    server._note_split(a, "split")  # a viewer turned it off itself
    server._release_split(a)
    assert runner.commands == ["split"]
