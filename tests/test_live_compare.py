"""The comparison panel (issue 14, point 1): computed from per-session values, carried in
snapshots, computed by the gate worker off the sessions' path."""

from __future__ import annotations

import asyncio
import json
import math
import textwrap
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from perfmon.core.campaign import load_campaign
from perfmon.core.model import MetricKind, SessionSpec
from perfmon.core.snapshot import (
    SNAPSHOT_VERSION,
    ComparisonPanel,
    RunState,
    Snapshot,
)
from perfmon.core.stats import SessionGroup, StatsOptions, anytime_ratio, compare
from perfmon.engine.fake_executor import FakeExecutor, FakeSession
from perfmon.engine.live_compare import build_panel, ratio_text, side_of
from perfmon.engine.recorder import make_run_dir
from perfmon.engine.replay import snapshot_from_run_dir
from perfmon.engine.runner import Runner

G1 = SessionGroup("golden", "w", (("n", "1"),))
G2 = SessionGroup("golden", "w", (("n", "2"),))


class Source:
    """A ``MetricSource`` over fixed per-session values: {(metric, variant, group): [...]}."""

    def __init__(self, values: dict[tuple[str, str, SessionGroup], list[float]]) -> None:
        self.values = values
        self.groups = list(dict.fromkeys(g for _, _, g in values))
        self.variants = list(dict.fromkeys(v for _, v, _ in values))

    def session_groups(self) -> list[SessionGroup]:
        return list(self.groups)

    def session_variants(self) -> list[str]:
        return list(self.variants)

    def session_values(
        self, metric: str, variant: str | None, *, group: SessionGroup | None = None
    ) -> list[float]:
        return list(self.values.get((metric, str(variant), group or G1), []))

    def kind(self, metric: str) -> MetricKind | None:
        return MetricKind.VALUE


def jitter(center: float, n: int, spread: float = 0.02) -> list[float]:
    return [center * (1 + spread * math.sin(i * 1.7)) for i in range(n)]


def test_ratio_text_speaks_in_the_metric_direction() -> None:
    assert ratio_text(1.39, 1.30, 1.51, "session_seconds", "lower") == "1.39x faster [1.3, 1.51]"
    assert ratio_text(0.5, 0.4, 0.625, "session_seconds", "lower") == "2x slower [1.6, 2.5]"
    assert ratio_text(2.0, 1.5, math.inf, "x_bytes_per_second", "higher").startswith(
        "2x higher [1.5, ∞]"
    )
    assert ratio_text(0.5, 0.0, 0.9, "session_seconds", "lower") == "2x slower [1.11, ∞]"


def test_side_counts_outliers_beyond_three_scaled_mads_and_bounds_values() -> None:
    xs = [1.0, 1.01, 0.99, 1.02, 0.98, 1.0, 5.0]
    side = side_of("a", xs, max_values=4)
    assert side.n == 7 and side.outliers == 1
    assert side.values == tuple(xs[-4:])
    assert side.median == pytest.approx(1.0) and side.high == 5.0 and side.low == 0.98
    empty = side_of("a", [])
    assert empty.n == 0 and empty.median is None


def test_anytime_panel_uses_the_gates_sequence_and_reports_no_p() -> None:
    a, b = jitter(2.0, 12), jitter(1.0, 12)
    src = Source({("session_seconds", "base", G1): a, ("session_seconds", "cand", G1): b})
    panel = build_panel(src, metrics=("session_seconds",), variant_order=["base", "cand"])
    assert panel is not None and panel.inference == "anytime"
    (row,) = panel.rows
    assert [s.variant for s in row.sides] == ["base", "cand"]
    (r,) = row.ratios
    expected = anytime_ratio(a, b, 0.95)
    assert r.factor == pytest.approx(expected.speedup)
    assert r.low == pytest.approx(expected.speedup_low)
    assert r.state == "decided" and r.p_value is None
    assert r.text.startswith(f"{expected.speedup:.3g}x faster [")
    assert "anytime-valid" in r.method


@pytest.mark.slow
def test_fixed_panel_is_provisional_until_the_planned_n_and_gives_p() -> None:
    a, b = jitter(2.0, 6), jitter(1.0, 6)
    src = Source({("session_seconds", "base", G1): a, ("session_seconds", "cand", G1): b})
    opts = StatsOptions(inference="fixed")
    early = build_panel(src, metrics=("session_seconds",), options=opts, planned={"golden": 10})
    assert early is not None
    r = early.rows[0].ratios[0]
    c = compare(a, b, opts)
    assert r.state == "provisional" and r.p_value == pytest.approx(c.p_value)
    assert r.factor == pytest.approx(c.speedup)
    done = build_panel(src, metrics=("session_seconds",), options=opts, planned={"golden": 6})
    assert done is not None and done.rows[0].ratios[0].state == "decided"
    ended = build_panel(src, metrics=("session_seconds",), options=opts, finished=True)
    assert ended is not None and ended.rows[0].ratios[0].state == "decided"


def test_pending_below_min_sessions_and_undecided_when_the_interval_straddles_one() -> None:
    src = Source(
        {
            ("session_seconds", "base", G1): jitter(1.0, 3),
            ("session_seconds", "cand", G1): jitter(1.0, 3),
            ("session_seconds", "base", G2): jitter(1.0, 8, 0.2),
            ("session_seconds", "cand", G2): jitter(1.01, 8, 0.2)[::-1],
        }
    )
    panel = build_panel(src, metrics=("session_seconds",))
    assert panel is not None
    by = {row.params: row.ratios[0] for row in panel.rows}
    assert by["n=1"].state == "pending" and "3 of 5 sessions per side" in by["n=1"].text
    assert by["n=1"].factor is None
    assert by["n=2"].state == "undecided"


def test_rows_are_bounded_and_counted_and_one_variant_gives_no_panel() -> None:
    values: dict[tuple[str, str, SessionGroup], list[float]] = {}
    for i in range(30):
        g = SessionGroup("golden", "w", (("n", str(i)),))
        values[("session_seconds", "a", g)] = jitter(1.0, 6)
        values[("session_seconds", "b", g)] = jitter(0.5, 6)
        values[("session_cpu_seconds", "a", g)] = jitter(1.0, 6)
        values[("session_cpu_seconds", "b", g)] = jitter(0.5, 6)
    panel = build_panel(
        Source(values), metrics=("session_seconds", "session_cpu_seconds"), max_rows=40
    )
    assert panel is not None and len(panel.rows) == 40 and panel.rows_total == 60
    assert len(panel.rows_of("session_seconds")) == 30  # the default metric's rows first
    one = Source({("session_seconds", "a", G1): jitter(1.0, 6)})
    assert build_panel(one) is None


def test_reference_previous_compares_each_variant_with_the_one_before() -> None:
    src = Source(
        {
            ("session_seconds", "v1", G1): jitter(4.0, 6),
            ("session_seconds", "v2", G1): jitter(2.0, 6),
            ("session_seconds", "v3", G1): jitter(1.0, 6),
        }
    )
    panel = build_panel(src, metrics=("session_seconds",), reference="previous")
    assert panel is not None
    assert [(r.variant, r.against) for r in panel.rows[0].ratios] == [("v2", "v1"), ("v3", "v2")]


def _snapshot(panel: ComparisonPanel | None) -> Snapshot:
    return Snapshot(
        version=SNAPSHOT_VERSION,
        run_id="r",
        campaign="c",
        run_dir="/tmp/r",
        state=RunState.RUNNING,
        started_t=0.0,
        now_t=1.0,
        sessions_total=4,
        sessions_done=2,
        samples_total=0,
        malformed_total=0,
        comparison=panel,
    )


def test_snapshot_round_trips_the_panel_as_strict_json_and_reads_version_1() -> None:
    src = Source(
        {
            ("session_seconds", "base", G1): jitter(2.0, 8),
            ("session_seconds", "cand", G1): jitter(1.0, 8),
            ("session_seconds", "base", G2): jitter(2.0, 2),
            ("session_seconds", "cand", G2): [],
        }
    )
    panel = build_panel(src, metrics=("session_seconds",))
    snap = _snapshot(panel)
    wire = json.dumps(snap.to_dict(), allow_nan=False)  # the daemon's encoding
    back = Snapshot.from_dict(json.loads(wire))
    assert back == snap and isinstance(back.comparison, ComparisonPanel)
    old = {k: v for k, v in _snapshot(None).to_dict().items() if k != "comparison"}
    old["version"] = 1
    decoded = Snapshot.from_dict(old)
    assert decoded.comparison is None and decoded.version == SNAPSHOT_VERSION
    bad = snap.to_dict()
    bad["comparison"] = {"rows": [{"nope": 1}]}
    with pytest.raises(ValueError, match="malformed"):
        Snapshot.from_dict(bad)


def test_snapshot_size_stays_bounded_at_the_caps() -> None:
    values: dict[tuple[str, str, SessionGroup], list[float]] = {}
    for i in range(100):
        g = SessionGroup("golden", "w", (("n", str(i)),))
        values[("session_seconds", "a", g)] = jitter(1.0, 200)
        values[("session_seconds", "b", g)] = jitter(0.5, 200)
    panel = build_panel(Source(values), metrics=("session_seconds",))
    assert panel is not None
    size = len(json.dumps(asdict(panel)))
    assert size < 200_000, size  # 48 rows x 2 sides x 64 values


def write_campaign(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        textwrap.dedent(
            """
            [campaign]
            name = "cmp"
            sample_interval = "100ms"
            [[workload]]
            name = "spin"
            command = ["spin"]
            matrix = { size = [1, 2] }
            [variant.baseline]
            env = { V = "a" }
            [variant.candidate]
            env = { V = "b" }
            [set.golden]
            sessions = 6
            """
        )
        + textwrap.dedent(extra)
    )
    return path


def script(spec: SessionSpec) -> FakeSession:
    base = 2.0 if spec.variant == "baseline" else 1.0
    return FakeSession(wall_s=base * (1 + 0.01 * (spec.id % 5)), peak_rss_bytes=1 << 20)


@pytest.mark.slow
async def test_a_fake_run_carries_the_panel_in_its_snapshots(tmp_path: Path) -> None:
    campaign = load_campaign(write_campaign(tmp_path))
    run_dir = make_run_dir(tmp_path / "runs", campaign.name, time.time())
    runner = Runner(
        campaign,
        run_dir,
        executor_factory=FakeExecutor.factory(script),
        sample_system=False,
    )
    snaps: list[Snapshot] = []
    runner.snapshot_listeners.append(snaps.append)
    outcome = await asyncio.wait_for(runner.run(), timeout=60)
    assert outcome.exit_status == 0
    final = snaps[-1]
    assert final.state == RunState.FINISHED
    panel = final.comparison
    assert panel is not None
    assert panel.metrics[0] == "session_seconds"
    rows = panel.rows_of("session_seconds")
    assert [r.params for r in rows] == ["size=1", "size=2"]
    for row in rows:
        assert [s.n for s in row.sides] == [6, 6]
        (r,) = row.ratios
        assert (r.variant, r.against) == ("candidate", "baseline")
        assert r.factor is not None and 1.8 < r.factor < 2.2
        assert "faster" in r.text
    # computed by the worker thread, not per snapshot
    assert runner.gate_worker.panel_evaluations >= 1
    # and the snapshot goes through the socket's strict JSON
    json.dumps(final.to_dict(), allow_nan=False)
    # a finished run's replay (perfmon attach after the daemon is gone) shows it too
    replayed = snapshot_from_run_dir(run_dir).comparison
    assert replayed is not None
    assert [r.params for r in replayed.rows_of("session_seconds")] == ["size=1", "size=2"]
    assert replayed.rows_of("session_seconds")[0].ratios[0].text == rows[0].ratios[0].text


async def test_the_panel_is_computed_only_when_a_session_finished(tmp_path: Path) -> None:
    campaign = load_campaign(write_campaign(tmp_path))
    run_dir = make_run_dir(tmp_path / "runs", campaign.name, time.time())
    runner = Runner(
        campaign, run_dir, executor_factory=FakeExecutor.factory(script), sample_system=False
    )
    calls: list[Any] = []
    inner = runner.gate_worker.panel
    assert inner is not None

    def counting(source: Any) -> Any:
        calls.append(source)
        return inner(source)

    runner.gate_worker.panel = counting
    assert await runner.gate_worker.evaluate_now() == 0
    assert len(calls) == 1  # first look
    assert await runner.gate_worker.evaluate_now() == 0
    assert len(calls) == 1  # nothing changed
    runner.gate_worker.note_samples(["rss_bytes"])
    await runner.gate_worker.evaluate_now()
    assert len(calls) == 1  # samples alone do not change per-session values of finished ones
    runner.gate_worker.note_sessions()
    await runner.gate_worker.evaluate_now()
    assert len(calls) == 2
    await runner.gate_worker.close()


def test_a_gate_with_an_unbounded_interval_still_crosses_the_socket() -> None:
    from perfmon.core.model import GateResult, GateState, GroupResult

    inf = math.inf
    gate = GateResult(
        "Overhead",
        "regression(chunk_seconds, baseline, monitored) < 5%",
        GateState.INCONCLUSIVE,
        58.7,
        10,
        "regression = +5866% [-100.0%, +inf%]",
        ci_low=-1.0,
        ci_high=inf,
        groups=(GroupResult("g", GateState.INCONCLUSIVE, 58.7, 10, "r", -1.0, inf),),
    )
    snap = replace(_snapshot(None), gates=(gate,))
    wire = json.dumps(snap.to_dict(), allow_nan=False)
    back = Snapshot.from_dict(json.loads(wire)).gates[0]
    assert back.ci_high is None and back.ci_low == -1.0 and back.value == 58.7
    assert back.groups[0].ci_high is None and back.reason == gate.reason
