"""A fixed, deterministic snapshot of an attention audit with its comparison panel.

Used by the SVG snapshot tests (tests/test_snapshots.py) and the comparison App tests: no
clock, no daemon; the panel is computed by the daemon's own code (``build_panel``) from fixed
per-session values, so its numbers are the real statistics of those values.
"""

from __future__ import annotations

import math

from perfmon.core.gates import parse_gate
from perfmon.core.model import GateResult, GateState, MetricKind
from perfmon.core.snapshot import (
    SNAPSHOT_VERSION,
    ComparisonPanel,
    MetricSummary,
    RunState,
    SessionRow,
    Snapshot,
)
from perfmon.core.stats import SessionGroup
from perfmon.engine.live_compare import build_panel

T0 = 1_700_000_000.0
EVENTS = (117, 268, 512, 1024)
SESSIONS = 10
"""Measured sessions per variant and matrix value."""


def timing(events: int, variant: str, i: int) -> float:
    """A session's seconds: the candidate 1.4-1.9x faster, growing with events, with jitter,
    a slow drift, and one outlier (session 7 of the baseline at 268 events)."""
    base = 0.002 * events
    speed = {117: 1.05, 268: 1.42, 512: 1.7, 1024: 1.9}[events]
    t = base if variant == "baseline" else base / speed
    t *= 1 + 0.03 * math.sin(i * 2.3 + events) + 0.004 * i
    if variant == "baseline" and events == 268 and i == 7:
        t *= 1.6
    return t


class FixedSource:
    """A ``MetricSource`` over ``timing`` (session_seconds and session_peak_rss_bytes)."""

    def __init__(self, sessions: int = SESSIONS) -> None:
        self.sessions = sessions

    def session_groups(self) -> list[SessionGroup]:
        return [SessionGroup("golden", "tgat", (("events", str(e)),)) for e in EVENTS]

    def session_variants(self) -> list[str]:
        return ["baseline", "candidate"]

    def session_values(
        self, metric: str, variant: str | None, *, group: SessionGroup | None = None
    ) -> list[float]:
        assert group is not None and variant is not None
        events = int(group.params[0][1])
        if metric == "session_seconds":
            return [timing(events, variant, i) for i in range(self.sessions)]
        if metric == "session_peak_rss_bytes":
            mb = 180 + events / 8 + (12 if variant == "candidate" else 0)
            return [(mb + (i % 3)) * 2**20 for i in range(self.sessions)]
        return []

    def kind(self, metric: str) -> MetricKind | None:
        return MetricKind.VALUE


def fixed_panel(sessions: int = SESSIONS) -> ComparisonPanel:
    """The panel ``build_panel`` computes for the fixed values."""
    panel = build_panel(
        FixedSource(sessions),
        metrics=("session_seconds", "session_peak_rss_bytes"),
        variant_order=["baseline", "candidate"],
    )
    assert panel is not None
    return panel


def _metric(name: str, series: list[float], kind: str = MetricKind.GAUGE.value) -> MetricSummary:
    ordered = sorted(series)
    return MetricSummary(
        name=name,
        kind=kind,
        count=len(series),
        total=sum(series),
        last=series[-1],
        min=ordered[0],
        max=ordered[-1],
        mean=sum(series) / len(series),
        p50=ordered[len(ordered) // 2],
        p95=ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)],
        series=tuple(series),
        series_span_s=len(series) * 2.0,
    )


def fixed_snapshot(sessions: int = SESSIONS) -> Snapshot:
    """The audit after ``sessions`` per variant and matrix value, gates decided."""
    rows: list[SessionRow] = []
    sid = 0
    for i in range(sessions):
        for e in EVENTS:
            for v in ("baseline", "candidate"):
                wall = timing(e, v, i)
                rows.append(
                    SessionRow(
                        id=sid,
                        workload="tgat",
                        variant=v,
                        set_name="golden",
                        params=f"events={e}",
                        warmup=False,
                        status="ok",
                        status_text="ok",
                        wall_s=wall,
                        cpu_s=wall * 0.97,
                        peak_rss_bytes=int((180 + e / 8) * 2**20),
                        samples=40 + sid % 7,
                        malformed=0,
                    )
                )
                sid += 1
    n = 80
    metrics = (
        _metric("attn_forward_seconds", [0.004 + 0.001 * math.sin(k / 3) for k in range(n)]),
        _metric("rss_bytes", [(150 + k) * 2**20 for k in range(n)]),
        _metric("sdpa_max_abs_diff", [3e-6 + 1e-7 * (k % 5) for k in range(n)], "value"),
        _metric("session_seconds", [r.wall_s or 0.0 for r in rows[-n:]], "histogram"),
        _metric("system_memory_percent", [41.0 + (k % 7) * 0.5 for k in range(n)]),
    )
    gates = (
        GateResult(
            "Performance",
            "speedup(session_seconds, baseline, candidate) >= 1.4",
            GateState.FAIL,
            1.05,
            2 * sessions,
            "events=117: speedup = 1.05x [1.01, 1.09] 95% anytime-valid CS, limit >= 1.4",
            ci_low=1.01,
            ci_high=1.09,
        ),
        GateResult(
            "Parity",
            "max(sdpa_max_abs_diff) <= 1e-4",
            GateState.PASS,
            3.4e-6,
            n,
            "max = 3.4e-06 over 80 samples, limit <= 1e-4",
        ),
        GateResult(
            "RAM",
            "max(system_memory_percent) <= 70",
            GateState.PASS,
            44.0,
            n,
            "max = 44% over 80 samples, limit <= 70",
        ),
        GateResult(
            "Leak",
            "slope(rss_bytes) < 1MiB/h",
            GateState.INCONCLUSIVE,
            0.8,
            n,
            "slope 0.8 MiB/h [-0.3, 1.9], limit < 1MiB/h",
        ),
    )
    # As a run's gates come: annotated with their grammar (threshold, unit, ...) by the
    # parser (issue 12), which the board reads for its margin plot.
    annotated = tuple(parse_gate(g.expr).annotate(g) for g in gates)
    total = len(rows)
    return Snapshot(
        version=SNAPSHOT_VERSION,
        run_id="20250101T000000Z-attention-audit",
        campaign="attention-audit",
        run_dir="/tmp/runs/20250101T000000Z-attention-audit",
        state=RunState.RUNNING,
        started_t=T0,
        now_t=T0 + 3723,
        sessions_total=total + 8,
        sessions_done=total,
        samples_total=sum(r.samples for r in rows),
        malformed_total=0,
        sessions=tuple(rows),
        metrics=metrics,
        gates=annotated,
        verdict=GateState.FAIL.value,
        message="session 80 finished: tgat candidate events=1024",
        comparison=fixed_panel(sessions),
    )
