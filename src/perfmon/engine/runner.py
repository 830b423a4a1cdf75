"""The runner: one campaign, end to end, in one asyncio loop.

Data flows once, with no back and forth (design.md section 3)::

    campaign -> Scheduler -> Supervisor -> workload subprocesses
    workload --probe protocol--> Decoder -> Recorder (run directory, durable)
                                         -> LiveState (bounded) -> gates -> Snapshot
    Snapshot -> listeners (control socket server, headless progress printer)

The same ``Runner`` runs inside the daemon (``perfmon run`` with a viewer attached over the
control socket) and in the foreground (``perfmon run --headless``): there is one code path.

Sessions run one at a time. On a benchmark machine two concurrent sessions measure each
other's interference as much as themselves, so perfmon serialises them (as pyperf and
hyperfine do).

At the end the recorder is closed (samples compacted to Parquet) and the gates are evaluated
again on the *full recorded data* (``ArrayMetricSource``, exact quantiles), so that every number
in the report comes from a recorded sample, not from the bounded live aggregates.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfmon._version import __version__
from perfmon.core.batch import SampleBatch
from perfmon.core.campaign import Campaign
from perfmon.core.gates import evaluate_gates, parse_gate, verdict
from perfmon.core.live import LiveState
from perfmon.core.model import (
    GateResult,
    GateState,
    MetricKind,
    Sample,
    SessionResult,
    SessionStatus,
)
from perfmon.core.schedule import Scheduler
from perfmon.core.snapshot import RunState, Snapshot

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
FLUSH_INTERVAL_S = 0.5
"""Recorder flush interval: kill -9 of the runner loses at most this much (design.md: <= 1 s)."""

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
"""Exit statuses (design.md section 7)."""


def campaign_to_json(campaign: Campaign) -> dict[str, Any]:
    """Return the campaign as resolved, as plain JSON data, for the run's manifest.

    Args:
        campaign: a parsed campaign.

    Returns:
        A dict of lists, dicts, strings and numbers; gates appear as ``{name, expr, window_s}``.
    """

    def plain(obj: Any) -> Any:
        if isinstance(obj, Path):
            return str(obj)
        if isinstance(obj, dict):
            return {str(k): plain(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [plain(v) for v in obj]
        return obj

    return {
        "name": campaign.name,
        "path": str(campaign.path),
        "sample_interval_s": campaign.sample_interval_s,
        "grace_s": campaign.grace_s,
        "log_cap_bytes": campaign.log_cap_bytes,
        "workloads": [plain(dataclasses.asdict(w)) for w in campaign.workloads],
        "variants": [plain(dataclasses.asdict(v)) for v in campaign.variants],
        "sets": [plain(dataclasses.asdict(s)) for s in campaign.sets],
        "gates": [{"name": g.name, "expr": g.expr, "window_s": g.window_s} for g in campaign.gates],
    }


def evaluate_recorded_gates(
    gates: list[dict[str, Any]], run_dir: Path
) -> tuple[list[GateResult], Any]:
    """Evaluate gates on the full recorded data of a run directory.

    Args:
        gates: ``[{name, expr, window_s}]`` as stored in the manifest.
        run_dir: the run directory.

    Returns:
        ``(results, run_data)``: one GateResult per gate, and the ``RunData`` read.

    Raises:
        perfmon.core.gates.GateSyntaxError: if a stored gate expression no longer parses.
    """
    from perfmon.core.campaign import GateConfig
    from perfmon.core.datasource import ArrayMetricSource
    from perfmon.engine.recorder import read_run

    data = read_run(run_dir)
    warmup_ids = {int(s["id"]) for s in data.sessions if s.get("warmup")}
    table = data.samples
    samples: list[Sample] = []
    if table.num_rows:
        cols = table.to_pydict()
        for t, sess, metric, value, kind in zip(
            cols["t"], cols["session"], cols["metric"], cols["value"], cols["kind"], strict=True
        ):
            if sess in warmup_ids:
                continue
            samples.append(Sample(t, sess, metric, value, MetricKind(kind)))
    source = ArrayMetricSource.from_samples(samples)
    configs = [
        GateConfig(
            name=g["name"], expr=g["expr"], gate=parse_gate(g["expr"]), window_s=g.get("window_s")
        )
        for g in gates
    ]
    return evaluate_gates(configs, source), data


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a run ended.

    Attributes:
        verdict: ``GateState`` value over the full recorded data.
        exit_status: 0 pass, 1 a gate failed or is undecided, 3 could not complete.
        run_dir: the run directory; ``report_md``: path of report.md (None if not written).
        gates: the final gate results.
    """

    verdict: str
    exit_status: int
    run_dir: Path
    report_md: Path | None
    gates: tuple[GateResult, ...]


SnapshotListener = Callable[[Snapshot], None]
SessionListener = Callable[[SessionResult], None]


class Runner:
    """Runs one campaign into one run directory.

    Args:
        campaign: the parsed campaign.
        run_dir: an existing, empty run directory (see ``recorder.make_run_dir``).
        python: the interpreter that replaces ``{python}`` in commands (default: this one).
        snapshot_hz: how often a snapshot is published to listeners, per second.

    Listeners are plain callables called on the loop's thread; they must not block.
    """

    def __init__(
        self,
        campaign: Campaign,
        run_dir: Path,
        *,
        python: str = sys.executable,
        snapshot_hz: float = 4.0,
    ) -> None:
        from perfmon.engine.recorder import Recorder

        self.campaign = campaign
        self.run_dir = run_dir
        self.run_id = run_dir.name
        self.snapshot_interval_s = 1.0 / max(0.1, snapshot_hz)
        self.scheduler = Scheduler(campaign, python)
        self.started_t = time.time()
        self.live = LiveState(
            run_id=self.run_id,
            campaign=campaign.name,
            run_dir=str(run_dir),
            started_t=self.started_t,
        )
        self.recorder = Recorder(run_dir)
        self.state = RunState.STARTING
        self.message = ""
        self.snapshot_listeners: list[SnapshotListener] = []
        self.session_listeners: list[SessionListener] = []
        self._stop = asyncio.Event()
        self._resume = asyncio.Event()
        self._resume.set()
        self._supervisor: Any = None
        self._gates: list[GateResult] = []
        self._last_snapshot: Snapshot | None = None
        self._export_lock = asyncio.Lock()
        self._final_verdict: str | None = None

    # ----------------------------------------------------------------- commands
    def request_stop(self) -> None:
        """Stop launching sessions, end the running one, then write the report."""
        if not self._stop.is_set():
            self.message = "stopping: ending the running session, then writing the report"
            self.state = RunState.STOPPING
            self._stop.set()
            self._resume.set()
            if self._supervisor is not None:
                asyncio.get_running_loop().create_task(self._supervisor.cancel_all())

    def pause(self) -> None:
        """Launch no new session until ``resume``; the running session finishes normally."""
        if self.state == RunState.RUNNING:
            self._resume.clear()
            self.state = RunState.PAUSED
            self.message = "paused: no new sessions will start (p to resume)"

    def resume(self) -> None:
        """Resume launching sessions after ``pause``."""
        if self.state == RunState.PAUSED:
            self.state = RunState.RUNNING
            self.message = "resumed"
            self._resume.set()

    async def export(self) -> Path | None:
        """Write report.md and report.json now, from what has been recorded so far.

        Returns:
            The path of report.md, or None if it could not be written (the reason is in
            ``message``).
        """
        async with self._export_lock:
            self.recorder.flush()
            try:
                path = await asyncio.to_thread(self._write_report)
            except Exception as exc:  # a failed export must not end the run
                log.exception("export failed")
                self.message = f"report could not be written: {exc}"
                return None
            self.message = f"report written to {path}"
            return path

    def handle_command(self, command: str) -> None:
        """Apply a viewer command: ``stop``, ``pause``, ``resume``, ``toggle-pause``, ``export``.

        Raises:
            ValueError: for an unknown command.
        """
        if command == "stop":
            self.request_stop()
        elif command == "pause":
            self.pause()
        elif command == "resume":
            self.resume()
        elif command == "toggle-pause":
            self.resume() if self.state == RunState.PAUSED else self.pause()
        elif command == "export":
            asyncio.get_running_loop().create_task(self.export())
        else:
            raise ValueError(f"unknown command {command!r}")

    # ----------------------------------------------------------------- data in
    def _on_samples(self, samples: SampleBatch | Sequence[Sample]) -> None:
        batch = samples if isinstance(samples, SampleBatch) else SampleBatch.from_samples(samples)
        self.live.add_batch(batch)
        self.recorder.add_batch(batch)

    def _on_update(self, result: SessionResult) -> None:
        self.live.update_session(result)

    def _session_samples(self, result: SessionResult) -> list[Sample]:
        """Session-level samples: one ``value`` per finished OK session."""
        if result.status is not SessionStatus.OK:
            return []
        t = result.end_t or time.time()
        sid = result.spec.id
        out = []
        if result.wall_s is not None:
            out.append(Sample(t, sid, "session_seconds", result.wall_s, MetricKind.VALUE))
        if result.cpu_s is not None:
            out.append(Sample(t, sid, "session_cpu_seconds", result.cpu_s, MetricKind.VALUE))
        if result.peak_rss_bytes is not None:
            out.append(
                Sample(
                    t, sid, "session_peak_rss_bytes", float(result.peak_rss_bytes), MetricKind.VALUE
                )
            )
        return out

    # ----------------------------------------------------------------- snapshots
    def snapshot(self) -> Snapshot:
        """Take a snapshot of the live state now (gates as last evaluated)."""
        planned = self.scheduler.planned_total
        gates = tuple(self._gates)
        if self._final_verdict is not None:
            v = self._final_verdict
        else:
            v = verdict(gates).value if gates else GateState.PASS.value
        snap = self.live.snapshot(
            now=time.time(),
            state=self.state,
            gates=gates,
            verdict=v,
            message=self.message,
            sessions_total=planned,
        )
        self._last_snapshot = snap
        return snap

    def _publish(self) -> None:
        if self._final_verdict is None:
            self._gates = evaluate_gates(list(self.campaign.gates), self.live)
        snap = self.snapshot()
        for listener in list(self.snapshot_listeners):
            try:
                listener(snap)
            except Exception:  # a broken listener must not stop the run
                log.exception("snapshot listener failed")

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.snapshot_interval_s)
            self._publish()

    async def _flush(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self.recorder.flush()

    # ----------------------------------------------------------------- the run
    def _manifest(self) -> dict[str, Any]:
        from perfmon.engine.provenance import collect_provenance

        return {
            "format": "perfmon-run",
            "version": MANIFEST_VERSION,
            "run_id": self.run_id,
            "perfmon_version": __version__,
            "started_t": self.started_t,
            "campaign": campaign_to_json(self.campaign),
            "provenance": collect_provenance(self.campaign.path),
        }

    def _write_report(self) -> Path:
        from perfmon.engine.report import build_report, write_report

        gates_json = campaign_to_json(self.campaign)["gates"]
        results, data = evaluate_recorded_gates(gates_json, self.run_dir)
        v = verdict(results).value if results else GateState.PASS.value
        report = build_report(data, results, verdict=v)
        md, _ = write_report(self.run_dir, report)
        return md

    async def run(self) -> RunOutcome:
        """Run the campaign to the end (or until ``request_stop``) and write the report.

        Returns:
            The outcome; its exit status is 0 when every gate passes on the recorded data,
            1 when one failed or is undecided, 3 when the run was stopped or broke.
        """
        from perfmon.engine.sampler import SystemSampler
        from perfmon.engine.supervisor import Supervisor

        self.recorder.write_manifest(self._manifest())
        supervisor = Supervisor(
            log_dir=self.run_dir / "logs",
            log_cap_bytes=self.campaign.log_cap_bytes,
            sample_interval_s=self.campaign.sample_interval_s,
            grace_s=self.campaign.grace_s,
            on_samples=self._on_samples,
            on_update=self._on_update,
        )
        self._supervisor = supervisor
        sampler = SystemSampler(self.campaign.sample_interval_s, self._on_samples)
        background = [
            asyncio.create_task(sampler.run(), name="system-sampler"),
            asyncio.create_task(self._tick(), name="snapshots"),
            asyncio.create_task(self._flush(), name="recorder-flush"),
        ]
        self.state = RunState.RUNNING
        self.message = f"running {self.campaign.name}"
        completed = False
        error: BaseException | None = None
        try:
            while not self._stop.is_set():
                await self._resume.wait()
                if self._stop.is_set():
                    break
                spec = self.scheduler.next_session()
                if spec is None:
                    completed = True
                    break
                self.live.add_session(spec)
                result = await supervisor.run_session(spec)
                extra = self._session_samples(result)
                if extra:
                    self._on_samples(extra)
                self.recorder.session_finished(result)
                self.live.update_session(result)
                for listener in list(self.session_listeners):
                    try:
                        listener(result)
                    except Exception:
                        log.exception("session listener failed")
        except Exception as exc:  # report what we have, then exit 3
            log.exception("run failed")
            error = exc
            self.message = f"run failed: {exc}"
        finally:
            with contextlib.suppress(Exception):
                await supervisor.cancel_all()
            sampler.stop()
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

        return await self._finish(completed=completed and error is None)

    async def _finish(self, *, completed: bool) -> RunOutcome:
        """Close the recording, evaluate gates on it, write the report, publish the end."""
        self.state = RunState.STOPPING
        self.message = "writing report"
        self._publish()
        report_md: Path | None = None
        results: list[GateResult] = []
        try:
            await asyncio.to_thread(self.recorder.close)
            gates_json = campaign_to_json(self.campaign)["gates"]
            results, data = await asyncio.to_thread(
                evaluate_recorded_gates, gates_json, self.run_dir
            )
            v = verdict(results).value if results else GateState.PASS.value
            from perfmon.engine.report import build_report, write_report

            report = build_report(data, results, verdict=v)
            report_md, _ = await asyncio.to_thread(write_report, self.run_dir, report)
        except Exception as exc:
            log.exception("could not write the report")
            self.message = f"report could not be written: {exc}"
            completed = False
            v = GateState.PENDING.value
        self._gates = results or self._gates
        self._final_verdict = v
        if not completed:
            exit_status = EXIT_INCOMPLETE
        elif v == GateState.PASS.value:
            exit_status = EXIT_PASS
        else:
            exit_status = EXIT_FAIL
        self.state = RunState.FINISHED if completed else RunState.FAILED
        if report_md is not None:
            stopped = "" if completed else " (run stopped before the end)"
            self.message = f"verdict {v.upper()}{stopped}; report: {report_md}"
        self._publish()
        return RunOutcome(
            verdict=v,
            exit_status=exit_status,
            run_dir=self.run_dir,
            report_md=report_md,
            gates=tuple(results),
        )
