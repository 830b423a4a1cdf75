"""Rebuild a viewer snapshot of a finished or crashed run from its recording.

``perfmon attach`` on a run whose daemon is gone replays the run directory through the same
``LiveState`` the daemon used (sessions from sessions.jsonl/Parquet, samples from Parquet or
the surviving segments) and evaluates the gates on the full recorded data, so the viewer shows
what was recorded, nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from perfmon.core.gates import verdict
from perfmon.core.live import LiveState
from perfmon.core.model import SessionResult, SessionSpec, SessionStatus
from perfmon.core.snapshot import RunState, Snapshot


def _spec(row: dict[str, Any]) -> SessionSpec:
    return SessionSpec(
        id=int(row["id"]),
        workload=str(row["workload"]),
        variant=str(row["variant"]),
        set_name=str(row["set_name"]),
        index=int(row["index"]),
        warmup=bool(row["warmup"]),
        argv=tuple(row.get("argv") or ()),
        env=tuple(sorted((row.get("env") or {}).items())),
        cwd=str(row.get("cwd") or ""),
        timeout_s=row.get("timeout_s"),
        params=tuple(sorted((row.get("params") or {}).items())),
    )


def _result(row: dict[str, Any]) -> SessionResult:
    return SessionResult(
        spec=_spec(row),
        status=SessionStatus(row["status"]),
        exit_code=row.get("exit_code"),
        signal=row.get("signal"),
        start_t=row.get("start_t"),
        end_t=row.get("end_t"),
        wall_s=row.get("wall_s"),
        cpu_s=row.get("cpu_s"),
        peak_rss_bytes=row.get("peak_rss_bytes"),
        malformed=int(row.get("malformed") or 0),
        samples=int(row.get("samples") or 0),
        error=str(row.get("error") or ""),
        extra=_extra(row.get("extra")),
    )


def _extra(value: Any) -> dict[str, float]:
    """A row's ``extra`` figures (e.g. the noise figures), keeping only numeric entries."""
    if not isinstance(value, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in value.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def snapshot_from_run_dir(run_dir: Path) -> Snapshot:
    """Build the final snapshot of a run from its run directory.

    Args:
        run_dir: a run directory (closed, still open, or left behind by a crash).

    Returns:
        A snapshot whose state is ``finished`` when the run has a report and ``failed``
        otherwise (the daemon is gone without one), with gates evaluated on the recording.

    Raises:
        OSError / ValueError: if the directory has no readable manifest.
    """
    from perfmon.engine.recorded import Columns
    from perfmon.engine.runner import evaluate_recorded_gates

    manifest = json.loads((run_dir / "manifest.json").read_text())
    results, data = evaluate_recorded_gates(manifest["campaign"]["gates"], run_dir)
    started = float(manifest.get("started_t") or 0.0)
    live = LiveState(
        run_id=run_dir.name,
        campaign=str(manifest["campaign"]["name"]),
        run_dir=str(run_dir),
        started_t=started,
    )
    end_t = started
    for row in sorted(data.sessions, key=lambda r: int(r["id"])):
        result = _result(row)
        live.add_session(result.spec)
        live.update_session(result)
        end_t = max(end_t, float(result.end_t or 0.0))
    if data.samples.num_rows:
        cols = Columns.from_table(data.samples)
        live.add_batch(cols.batch())
        end_t = max(end_t, float(cols.t.max()))
    has_report = (run_dir / "report.json").is_file()
    state = RunState.FINISHED if has_report else RunState.FAILED
    message = (
        f"recorded run; report: {run_dir / 'report.md'}"
        if has_report
        else "this run ended without a report (crashed?): perfmon report RUN_DIR writes one"
    )
    if data.repaired_segments:
        message += f"; {data.repaired_segments} torn segment tail(s) repaired on read"
    v = verdict(results).value if results else "pass"
    return live.snapshot(
        now=end_t, state=state, gates=results, verdict=v, message=message, sessions_total=None
    )
