"""Rebuild a viewer snapshot of a finished or crashed run from its recording.

``perfmon attach`` on a run whose daemon is gone replays the run directory through the same
``LiveState`` the daemon used (sessions from sessions.jsonl/Parquet, samples from Parquet or
the surviving segments) and evaluates the gates on the full recorded data, so the viewer shows
what was recorded, nothing else, including the py-spy profiles (``profiles/index.jsonl``), so
the flame screen of a finished run shows its flames.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from perfmon.core.gates import verdict
from perfmon.core.live import LiveState, parse_split_command
from perfmon.core.model import SessionResult, SessionSpec, SessionStatus
from perfmon.core.snapshot import ComparisonPanel, ProfileEntry, RunState, Snapshot


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


def snapshot_from_run_dir(run_dir: Path, *, split: str = "") -> Snapshot:
    """Build the final snapshot of a run from its run directory.

    Damaged files never raise: the recording is read with every batch validated
    (``perfmon.engine.recorder.read_run``), gates come from the manifest when it is readable
    (a gate whose stored expression no longer parses is ``pending``), sessions with a status
    this version does not know are left out, and the snapshot's message says what damage was
    found.

    Args:
        run_dir: a run directory (closed, still open, or left behind by a crash).
        split: a label to split the metrics by (``perfmon.core.live.LiveState.set_split``),
            over the whole recording; "" for none.

    Returns:
        A snapshot whose state is ``finished`` when the run has a report and ``failed``
        otherwise (the daemon is gone without one), with gates evaluated on the recording.

    Raises:
        FileNotFoundError: if ``run_dir`` is not a directory.
        ValueError: if ``split`` is not a label name.
    """
    from perfmon.engine.recorded import Columns, evaluate_recorded_safely, stored_stats_options
    from perfmon.engine.recorder import read_run, run_gates

    data = read_run(run_dir)
    manifest = data.manifest
    gates, gate_problem = run_gates(manifest)
    stats, _ = stored_stats_options(manifest)
    results = evaluate_recorded_safely(gates, data, stats).run
    campaign = manifest.get("campaign")
    name = campaign.get("name") if isinstance(campaign, dict) else None
    started = manifest.get("started_t")
    started = float(started) if isinstance(started, int | float) else 0.0
    live = LiveState(
        run_id=run_dir.name,
        campaign=str(name) if isinstance(name, str) else run_dir.name,
        run_dir=str(run_dir),
        started_t=started,
    )
    if split:
        live.set_split(split, started)  # before the sessions: every one's value is known
    end_t = started
    skipped = 0
    for row in sorted(data.sessions, key=lambda r: int(r["id"])):
        try:
            result = _result(row)
        except (ValueError, TypeError, KeyError):
            skipped += 1
            continue
        live.add_session(result.spec)
        live.update_session(result)
        end_t = max(end_t, float(result.end_t or 0.0))
    for batch in data.batches():  # one batch at a time: the live state is bounded
        if batch.num_rows:
            live.add_batch(Columns.from_batches((batch,)).batch())
    if data.t_max is not None:
        end_t = max(end_t, data.t_max)
    has_report = (run_dir / "report.json").is_file()
    state = RunState.FINISHED if has_report else RunState.FAILED
    message = (
        f"recorded run; report: {run_dir / 'report.md'}"
        if has_report
        else "this run ended without a report (crashed?): perfmon report RUN_DIR writes one"
    )
    if data.problems:
        message += (
            f"; damage found: {len(data.problems)} problem(s), "
            f"{data.samples_lost:,} samples known lost (perfmon report RUN_DIR lists them)"
        )
    if skipped:
        message += f"; {skipped} session(s) with an unknown status left out"
    v = verdict(results).value if results else "pass"
    if gate_problem and not results:
        v = "pending"
    snap = live.snapshot(
        now=end_t, state=state, gates=results, verdict=v, message=message, sessions_total=None
    )
    snap = replace(snap, comparison=_panel(live, campaign, gates, stats, has_report))
    return with_recorded_profiles(snap, run_dir)


def with_recorded_profiles(snap: Snapshot, run_dir: Path) -> Snapshot:
    """``snap`` with ``profiles`` filled from the run directory's profile index.

    The viewer's flame screen lists the snapshot's ``profiles`` (the runner fills them while
    the run goes on); a replayed run has them only in ``profiles/index.jsonl``. Every recorded
    profile is listed (a torn or garbage line of the index is skipped by ``load_index``),
    oldest first, and ``profiling`` is empty.

    Args:
        snap: a snapshot rebuilt from the recording.
        run_dir: its run directory.

    Returns:
        A new snapshot (``snap`` itself when no profile was recorded).
    """
    from perfmon.engine.profiler import load_index

    records = load_index(run_dir)
    if not records:
        return snap
    profiles = tuple(ProfileEntry.from_dict(r.to_dict()) for r in records)
    return replace(snap, profiles=profiles, profiling=())


class RecordedRunSource:
    """A finished (or crashed) run as a viewer's ``SnapshotSource``: its replayed snapshot.

    The viewer's ``split LABEL`` command replays the recording again with the metrics split by
    that label (``snapshot_from_run_dir(run_dir, split=LABEL)``), in a background thread so
    the viewer stays responsive; ``latest`` gives the new snapshot once it is built. Other
    commands raise ``ConnectionError``: the run has ended.

    Args:
        run_dir: the run directory.
        snapshot: its snapshot already built (``snapshot_from_run_dir(run_dir)``), or None to
            build it now.

    Raises:
        FileNotFoundError: if ``run_dir`` is not a directory (when ``snapshot`` is None).
    """

    def __init__(self, run_dir: Path, snapshot: Snapshot | None = None) -> None:
        self.run_dir = run_dir
        self._lock = threading.Lock()
        self._latest = snapshot if snapshot is not None else snapshot_from_run_dir(run_dir)
        self._wanted = self._latest.split_label
        self._thread: threading.Thread | None = None
        self.error = ""
        """Why the latest split could not be built ("" when it could)."""

    def latest(self) -> Snapshot | None:
        """The snapshot shown: the latest one built."""
        with self._lock:
            return self._latest

    @property
    def finished(self) -> bool:
        """Always True: a recorded run sends nothing more of its own."""
        return True

    @property
    def busy(self) -> bool:
        """True while a split is being replayed."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def send(self, command: str) -> None:
        """Apply ``split [LABEL]``; any other command raises.

        Raises:
            ValueError: for a malformed split command.
            ConnectionError: for any other command (the run has ended).
        """
        if not (command == "split" or command.startswith("split ")):
            raise ConnectionError("the run has ended: only 'split LABEL' applies to a recording")
        label = parse_split_command(command)
        with self._lock:
            self._wanted = label
            if self._thread is not None and self._thread.is_alive():
                return  # the running replay picks the newest wish up when it ends
            self._thread = threading.Thread(target=self._replay, name="perfmon-split", daemon=True)
            self._thread.start()

    def _replay(self) -> None:
        while True:
            with self._lock:
                label = self._wanted
                if label == self._latest.split_label:
                    return
            try:
                snap = snapshot_from_run_dir(self.run_dir, split=label)
            except (OSError, ValueError) as exc:
                with self._lock:
                    self.error = f"cannot split by {label!r}: {exc}"
                    self._wanted = self._latest.split_label
                return
            with self._lock:
                self._latest = snap
                self.error = ""

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for a split being replayed (tests)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def close(self) -> None:
        """Nothing to release (a replay thread in flight ends on its own)."""


def _panel(
    live: LiveState, campaign: Any, gates: list[dict[str, Any]], stats: Any, finished: bool
) -> ComparisonPanel | None:
    """The comparison panel of a recorded run (``perfmon.engine.live_compare``), from what its
    manifest says (reference, directions, variants, sets); None when it cannot be built."""
    from perfmon.core.gates import VariantComparison
    from perfmon.engine.live_compare import build_panel, panel_metrics
    from perfmon.engine.recorded import parse_stored_gate

    camp = campaign if isinstance(campaign, dict) else {}
    gated: list[str] = []
    for g in gates:
        try:
            lhs = parse_stored_gate(g, stats).lhs
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(lhs, VariantComparison):
            gated.append(lhs.metric)
    try:
        directions = {str(k): str(v) for k, v in dict(camp.get("directions") or {}).items()}
        variants = [str(v["name"]) for v in camp.get("variants") or () if isinstance(v, dict)]
        return build_panel(
            live,
            metrics=panel_metrics(gated),
            reference=str(camp.get("reference") or "first"),
            directions=directions,
            options=stats,
            variant_order=variants,
            finished=finished,
        )
    except (TypeError, ValueError, KeyError, AttributeError):  # a damaged manifest
        return None
