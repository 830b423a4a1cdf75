"""Recorded run directories with known session values, for exporter and compare tests.

Sessions are recorded through the real ``Recorder`` (no subprocess): each has a
``session_seconds`` value sample, as the runner records one per session, plus a gauge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from perfmon.core.batch import SampleBatch
from perfmon.core.model import MetricKind, Sample, SessionResult, SessionSpec, SessionStatus
from perfmon.engine.recorder import Recorder

T0 = 1_764_000_000.0


def record_run(
    run_dir: Path,
    walls: dict[str, Sequence[float]],
    *,
    workload: str = "tgat",
    set_name: str = "golden",
    params: tuple[tuple[str, str], ...] = (("events", "512"),),
    gates: Sequence[Mapping[str, object]] = (),
    campaign: str = "audit",
    extra_sessions: Sequence[SessionResult] = (),
    t0: float = T0,
) -> Path:
    """Record one closed run: for each variant, one OK session per wall time given.

    Returns:
        ``run_dir`` (created when missing).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    rec = Recorder(run_dir)
    rec.write_manifest(
        {
            "format": "perfmon-run",
            "run_id": run_dir.name,
            "started_t": t0,
            "campaign": {"name": campaign, "gates": list(gates), "stats": {"resamples": 999}},
        }
    )
    sid = 0
    t = t0
    longest = max((len(v) for v in walls.values()), default=0)
    for i in range(longest):  # interleaved, as the default schedule runs them
        for variant, values in walls.items():
            if i >= len(values):
                continue
            spec = SessionSpec(
                id=sid,
                workload=workload,
                variant=variant,
                set_name=set_name,
                index=i,
                warmup=False,
                argv=("python", "w.py"),
                env=(),
                cwd="/tmp",
                timeout_s=None,
                params=params,
            )
            wall = float(values[i])
            r = SessionResult(spec=spec, start_t=t, end_t=t + wall, status=SessionStatus.OK)
            r.wall_s = wall
            r.cpu_s = wall * 0.9
            r.peak_rss_bytes = 100_000_000 + sid
            samples = [
                Sample(t + k * wall / 10, sid, "event_queue_depth", float(k), MetricKind.GAUGE)
                for k in range(10)
            ]
            samples.append(Sample(t + wall, sid, "session_seconds", wall, MetricKind.VALUE))
            rec.add_batch(SampleBatch.from_samples(samples))
            rec.session_finished(r)
            t += wall + 0.1
            sid += 1
    for r in extra_sessions:
        rec.session_finished(r)
    rec.add_batch(
        SampleBatch.from_samples(
            [Sample(t0 + k, -1, "system_memory_percent", 40.0 + k) for k in range(5)]
        )
    )
    rec.close()
    return run_dir


def normal_walls(median: float, n: int, spread: float = 0.01, seed: int = 1) -> list[float]:
    """``n`` positive wall times around ``median`` (relative spread ``spread``)."""
    rng = np.random.default_rng(seed)
    return [float(median * (1.0 + spread * x)) for x in rng.standard_normal(n)]


def session_spec(
    sid: int,
    variant: str = "baseline",
    *,
    workload: str = "tgat",
    set_name: str = "golden",
    warmup: bool = False,
    params: Sequence[tuple[str, str]] = (),
) -> SessionSpec:
    """A session spec for tests of the live state, the report and the viewer: session ``sid``
    (also its index) of ``workload`` x ``variant`` in ``set_name``, running ``true`` (nothing
    here starts it)."""
    return SessionSpec(
        id=sid,
        workload=workload,
        variant=variant,
        set_name=set_name,
        index=sid,
        warmup=warmup,
        argv=("true",),
        env=(),
        cwd="/tmp",
        timeout_s=None,
        params=tuple(params),
    )
