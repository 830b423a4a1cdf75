"""Daemon-side memory over a time-compressed 72-hour soak (LiveState, Recorder, gates, snapshots).

Method. A fake clock runs from 0 to ``HOURS`` hours. A 2-second session starts every
``SESSION_EVERY_S`` = 4 s (64,800 sessions in 72 h), as in ``samples/soak.toml``'s canary set;
each session sends, in one columnar batch per session, 20 ``chunk_seconds`` (histogram), 20
``event_queue_depth`` (gauge), 2 ``chunks_total`` (counter) samples and psutil-style
``process_cpu_percent``/``process_rss_bytes`` samples at 1 Hz, then ends OK. Everything goes
through the daemon's real objects in this process: ``LiveState.add_session`` /
``update_session`` / ``add_batch``, ``Recorder.add_batch`` / ``session_finished`` (writing
Arrow segments to a temporary run directory, flushed every simulated minute), the soak
campaign's gates (``evaluate_gates`` on the live state) and the snapshot as the daemon sends
it (``Snapshot.to_dict`` + the control socket's JSON encoding) every ``SNAPSHOT_EVERY_S``
simulated seconds, the viewer's side decoding it back (``Snapshot.from_dict``).

Resident set size (``psutil``, after ``gc.collect()``) is read after the first simulated hour
(the warm-up: reservoirs and buckets filled, segment buffers at size) and every 24 h after;
the figure is the growth from the warm-up reading to 72 h. The snapshot's encoded size is
printed beside it, since the viewer holds the latest one.
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from perfmon.core.batch import SampleBatch
from perfmon.core.campaign import parse_campaign
from perfmon.core.gates import evaluate_gates
from perfmon.core.live import LiveState
from perfmon.core.model import (
    MetricKind,
    SessionResult,
    SessionSpec,
    SessionStatus,
)
from perfmon.core.snapshot import Snapshot
from perfmon.engine.daemon import encode
from perfmon.engine.recorder import Recorder

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import Figure, emit  # noqa: E402

HOURS = 72
SESSION_EVERY_S = 4.0
SESSION_S = 2.0
SNAPSHOT_EVERY_S = 1800.0
START_T = 1_764_000_000.0
METRICS = (
    ("chunk_seconds", MetricKind.HISTOGRAM),
    ("event_queue_depth", MetricKind.GAUGE),
    ("chunks_total", MetricKind.COUNTER),
    ("process_cpu_percent", MetricKind.GAUGE),
    ("process_rss_bytes", MetricKind.GAUGE),
)
PER_SESSION = (20, 20, 2, 2, 2)


def _batch(sid: int, t0: float, rng: np.random.Generator) -> SampleBatch:
    keys = np.repeat(np.arange(len(METRICS), dtype=np.int32), PER_SESSION)
    n = len(keys)
    t = t0 + np.sort(rng.uniform(0, SESSION_S, n))
    base = np.array([2e-4, 30.0, 1.0, 95.0, 2e8])[keys]
    values = base * rng.uniform(0.5, 1.5, n)
    return SampleBatch(
        t,
        np.full(n, sid, np.int64),
        keys,
        values,
        tuple(m for m, _ in METRICS),
        tuple(k for _, k in METRICS),
    )


def _rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def main() -> None:
    campaign = parse_campaign(
        (HERE.parent / "samples" / "soak.toml").read_text(), HERE.parent / "samples" / "soak.toml"
    )
    gates = list(campaign.gates)
    rng = np.random.default_rng(7)
    readings: list[tuple[float, int, int]] = []  # (hour, rss, snapshot bytes)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        live = LiveState(
            run_id="soak",
            campaign="soak",
            run_dir=str(run_dir),
            started_t=START_T,
            session_metrics={m for g in gates for m in g.gate.metrics},
        )
        rec = Recorder(run_dir)
        checkpoints = [1.0] + [float(h) for h in range(24, HOURS + 1, 24)]
        next_flush = 60.0
        next_snap = SNAPSHOT_EVERY_S
        snap_bytes = 0
        sid = 0
        t_rel = 0.0
        wall0 = time.perf_counter()
        end = HOURS * 3600.0
        while t_rel < end:
            spec = SessionSpec(
                id=sid,
                workload="pipeline",
                variant="default",
                set_name="canary",
                index=sid,
                warmup=False,
                argv=("python", "streaming_pipeline.py"),
                env=(),
                cwd="/tmp",
                timeout_s=120.0,
                params=(),
            )
            t0 = START_T + t_rel
            live.add_session(spec)
            live.update_session(SessionResult(spec, SessionStatus.RUNNING, start_t=t0))
            batch = _batch(sid, t0, rng)
            live.add_batch(batch)
            rec.add_batch(batch)
            done = SessionResult(
                spec,
                SessionStatus.OK,
                exit_code=0,
                start_t=t0,
                end_t=t0 + SESSION_S,
                wall_s=SESSION_S,
                cpu_s=1.9,
                peak_rss_bytes=200_000_000,
                samples=len(batch),
            )
            live.update_session(done)
            rec.session_finished(done)
            sid += 1
            t_rel += SESSION_EVERY_S
            if t_rel >= next_flush:
                rec.flush()
                next_flush += 60.0
            if t_rel >= next_snap:
                results = evaluate_gates(gates, live)
                snap = live.snapshot(now=START_T + t_rel, state="running", gates=results)
                data = encode({"type": "snapshot", "snapshot": snap.to_dict()})
                snap_bytes = len(data)
                viewer = Snapshot.from_dict(json.loads(data)["snapshot"])
                del viewer, snap, data
                next_snap += SNAPSHOT_EVERY_S
            if checkpoints and t_rel >= checkpoints[0] * 3600.0:
                readings.append((checkpoints.pop(0), _rss(), snap_bytes))
        rec.close()
        wall = time.perf_counter() - wall0
    for hour, rss, sb in readings:
        print(f"    {hour:>4.0f} h: RSS {rss / 2**20:8.1f} MiB, snapshot {sb / 1024:8.1f} KiB")
    warm = readings[0][1]
    growth = (readings[-1][1] - warm) / warm * 100
    emit(
        Figure(
            "daemon-side RSS growth over a time-compressed 72 h soak",
            growth,
            "%",
            "<= 5",
            growth <= 5.0,
            f"fake clock, a {SESSION_S:g} s session every {SESSION_S * 2:g} s ({sid:,} sessions, "
            f"{live.samples_total:,} samples) through LiveState + Recorder + the soak gates + "
            f"snapshot encode/decode every {SNAPSHOT_EVERY_S / 60:g} min; RSS after gc at 1 h "
            f"(warm-up) vs {HOURS} h; {wall:.0f} s of real time",
            ", ".join(
                f"{h:g} h {r / 2**20:.1f} MiB (snapshot {b / 1024:.0f} KiB)" for h, r, b in readings
            ),
        )
    )


if __name__ == "__main__":
    main()
