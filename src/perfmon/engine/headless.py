"""``perfmon run --headless``: the same runner in the foreground, for CI.

Prints one line per finished session, a line whenever a gate changes state, and a heartbeat
line (timestamp, elapsed, sessions done/total, ETA) after 30 s without a line, then the final
gate table (evaluated on the full recorded data) and the report's path. The exit status is the
verdict: 0 every gate passes, 1 a gate failed or is undecided, 3 the run could not complete.
SIGINT and SIGTERM stop the run cleanly (the report is still written) and exit 3.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import signal
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from perfmon.core.campaign import Campaign
from perfmon.core.model import GateResult, SessionResult, SessionStatus
from perfmon.core.noise import NOISE_BACKGROUND_SHARE, NOISE_BUSY, NOISE_LIMIT
from perfmon.core.snapshot import Snapshot
from perfmon.core.text import strip_terminal_escapes
from perfmon.core.units import format_bytes, format_duration, format_seconds
from perfmon.engine.heap import HeapTrimmer, restore_workload_environment
from perfmon.engine.recorded import HOST_SEPARATOR
from perfmon.engine.runner import Runner, RunOutcome

HEARTBEAT_S = 30.0
"""A progress line is printed whenever this long passed without any line (some CI systems
kill a job that is silent for a few minutes)."""

CYCLES_KEPT = 1000
"""The ETA uses the median of at most this many recent session cycle times."""


class ProgressPrinter:
    """Prints session and gate progress lines, and a heartbeat, to a text stream.

    The heartbeat (``heartbeat``) is a line ``[UTC time] elapsed H:MM:SS, sessions
    done/total, current session H:MM:SS, ETA H:MM:SS`` printed when ``heartbeat_s`` passed
    without any line. The ETA is the median of the measured session cycle times (from one
    session's end to the next one's, so launch overhead is included) times the sessions left;
    it is shown once a session has finished. When ``out`` is a terminal, a status line with the
    same fields is also redrawn in place (carriage return) every call; when it is not (CI logs,
    files, pipes), only whole lines are written, so logs never fill with redraws.

    Args:
        out: where to print (stdout by default); lines are flushed as written.
        total: the number of planned sessions, or None for open-ended runs.
        clock: monotonic seconds (``time.monotonic``); wall: Unix seconds (``time.time``), for
            the timestamp. Both are injectable for tests.
        tty: whether ``out`` is a terminal (default: ``out.isatty()``).
        heartbeat_s: the longest silence, seconds.
    """

    def __init__(
        self,
        out: TextIO,
        total: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        tty: bool | None = None,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.out = out
        self.total = total
        self.done = 0
        self.busy = 0
        """Sessions flagged as run on a busy machine so far (``perfmon.core.noise``)."""
        self._gate_states: dict[str, str] = {}
        self._dropped_names = 0
        self._last_snapshot: Snapshot | None = None
        self._clock = clock
        self._wall = wall
        if tty is None:
            try:
                tty = bool(out.isatty())
            except (AttributeError, ValueError):
                tty = False
        self.tty = tty
        self.heartbeat_s = heartbeat_s
        self.started = clock()
        self._last_line = self.started
        self._last_end = self.started
        self._cycles: deque[float] = deque(maxlen=CYCLES_KEPT)
        self._status_shown = False

    def _print(self, text: str) -> None:
        self._clear_status()
        print(strip_terminal_escapes(text), file=self.out, flush=True)
        self._last_line = self._clock()

    def _clear_status(self) -> None:
        if self._status_shown:
            self.out.write("\r\x1b[K")
            self._status_shown = False

    def eta_s(self) -> float | None:
        """Seconds left: median session cycle time x sessions left (None when unknown)."""
        if self.total is None or not self._cycles:
            return None
        return statistics.median(self._cycles) * max(0, self.total - self.done)

    def progress_text(self) -> str:
        """The heartbeat's fields (without the timestamp)."""
        now = self._clock()
        done = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        parts = [
            f"elapsed {format_duration(now - self.started)}",
            f"sessions {done}",
        ]
        if self.total is None or self.done < self.total:
            parts.append(f"current session {format_duration(now - self._last_end)}")
        eta = self.eta_s()
        if eta is not None:
            median = statistics.median(self._cycles)
            parts.append(f"ETA {format_duration(eta)} (median session {format_seconds(median)})")
        elif self.total is not None:
            parts.append("ETA after the first session")
        return ", ".join(parts)

    def heartbeat(self) -> None:
        """Call periodically (about once a second): a progress line after ``heartbeat_s`` of
        silence, and on a terminal the in-place status line."""
        now = self._clock()
        stamp = _dt.datetime.fromtimestamp(self._wall(), _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if now - self._last_line >= self.heartbeat_s:
            self._print(f"[{stamp}] {self.progress_text()}")
        elif self.tty:
            self._clear_status()
            self.out.write(f"\r{stamp} {self.progress_text()}"[: self._width()])
            self.out.flush()
            self._status_shown = True

    @staticmethod
    def _width() -> int:
        import shutil

        return max(20, shutil.get_terminal_size((100, 24)).columns - 1) + 1

    def close(self) -> None:
        """Remove the in-place status line (call before the final table)."""
        self._clear_status()
        self.out.flush()

    def session(self, result: SessionResult) -> None:
        """A session listener: one line per finished session."""
        self.done += 1
        now = self._clock()
        self._cycles.append(max(0.0, now - self._last_end))
        self._last_end = now
        if result.status is SessionStatus.NOISY and self.total is not None:
            self.total += 1  # the noise guard runs it again: one more session planned
        spec = result.spec
        width = len(str(self.total)) if self.total else 3
        count = f"{self.done:>{width}}/{self.total}" if self.total else f"{self.done:>{width}}"
        params = " ".join(f"{k}={v}" for k, v in spec.params)
        what = f"{spec.workload}/{spec.variant}" + (f"[{params}]" if params else "")
        tag = f"{spec.set_name}{' warmup' if spec.warmup else ''} #{spec.index + 1}"
        wall = format_seconds(result.wall_s) if result.wall_s is not None else "–"
        cpu = format_seconds(result.cpu_s) if result.cpu_s is not None else "–"
        rss = format_bytes(result.peak_rss_bytes) if result.peak_rss_bytes else "–"
        line = (
            f"[{count}] {what:<28} {tag:<18} {result.status_text:<10} "
            f"wall {wall:>9}  cpu {cpu:>9}  peak RSS {rss:>10}  samples {result.samples:,}"
        )
        if result.malformed:
            line += f"  malformed {result.malformed:,}"
        if result.error and result.status is not SessionStatus.OK:
            line += f"  ({result.error})"
        if result.extra.get(NOISE_BUSY):
            self.busy += 1
            if result.status is not SessionStatus.NOISY:  # a repeat's error already says it
                share = result.extra.get(NOISE_BACKGROUND_SHARE, 0.0)
                limit = result.extra.get(NOISE_LIMIT, 0.0)
                line += f"  BUSY: background CPU {share:.0%} > {limit:.0%}"
            line += f"  [{self.busy} session{'s' if self.busy != 1 else ''} on a busy machine]"
        self._print(line)

    def snapshot(self, snap: Snapshot) -> None:
        """A snapshot listener: one line whenever a gate changes state, and one whenever the
        metric-name caps start dropping (and each time the dropped names grow tenfold)."""
        self._last_snapshot = snap
        names = snap.dropped_names
        if names and (not self._dropped_names or names >= 10 * self._dropped_names):
            self._dropped_names = names
            self._print(f"  metric-name caps: {snap.dropped_text()}")
        for gate in snap.gates:
            old = self._gate_states.get(gate.name)
            if old != gate.state.value:
                self._gate_states[gate.name] = gate.state.value
                if old is not None or gate.state.value != "pending":
                    change = f"{old or 'pending'} -> {gate.state.value}"
                    self._print(f"  gate {gate.name}: {change}: {gate.reason}")

    def final(self, outcome: RunOutcome) -> None:
        """Print the final gate table, the verdict and the report's path."""
        self.close()
        self._print("")
        self._print(format_gate_table(outcome.gates))
        self._print("")
        machine = _machine_line(outcome.run_dir)
        if machine:
            self._print(machine)
        if self._last_snapshot is not None and self._last_snapshot.dropped_samples:
            self._print(f"metric-name caps: {self._last_snapshot.dropped_text()}")
        self._print(f"verdict: {outcome.verdict.upper()}  (exit status {outcome.exit_status})")
        if outcome.report_md is not None:
            self._print(f"report:  {outcome.report_md}")
        self._print(f"run dir: {outcome.run_dir}")


def _machine_line(run_dir: Path) -> str:
    """The report's line on how quiet the machine was (``report.json``'s ``machine.line``,
    computed from the recorded sessions), or "" when there is no readable report."""
    try:
        report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
        line = report["machine"]["line"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return line if isinstance(line, str) else ""


def format_gate_table(gates: tuple[GateResult, ...] | list[GateResult]) -> str:
    """Format gates as a plain-text table (gate, state, expression, reason), for logs and CI.

    The reason already carries the measured value with its unit and sample count. A gate of
    a run judged per host (issue 16) is followed by one line per (set, host) group, so every
    host's state is in the log: ``    golden @ gpu-a  pass  1.98x [1.93x, 2.01x]``.
    """
    if not gates:
        return "no gates in this campaign"
    rows = [("gate", "state", "expression", "reason")]
    rows += [(g.name, g.state.value.upper(), g.expr, g.reason) for g in gates]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for i, r in enumerate(rows):
        lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
        if i == 0:
            lines.append("-" * len(lines[0]))
            continue
        hosts = [p for p in gates[i - 1].per_set if HOST_SEPARATOR in p[0]]
        width = max((len(name) for name, _, _ in hosts), default=0)
        for name, state, text in hosts:
            lines.append(f"    {name:<{width}}  {state:<12}  {text}".rstrip())
    return "\n".join(lines)


def run_headless(
    campaign: Campaign,
    run_dir: Path,
    *,
    out: TextIO | None = None,
    baseline_run: Path | None = None,
    heartbeat_s: float = HEARTBEAT_S,
    metrics_addr: str | None = None,
) -> int:
    """Run a campaign in the foreground with progress lines; return the exit status.

    Args:
        campaign: the parsed campaign.
        run_dir: a new, empty run directory.
        out: where progress goes (default stdout).
        baseline_run: a recorded run whose sessions are the statistical gates' baseline side
            (``perfmon run --baseline-run``; see ``compare.apply_baseline_run``).
        heartbeat_s: the longest silence between progress lines, seconds.
        metrics_addr: serve ``/metrics`` there (``perfmon.engine.prometheus``); None: no
            endpoint. An address that cannot be bound returns 2 before anything runs.
    """
    stream = out if out is not None else sys.stdout
    # Started again under PYTHONMALLOC=malloc by the CLI (perfmon.engine.heap): the workloads
    # must not inherit it; the heap's free pages go back to the system from the snapshot
    # thread, as in the daemon.
    restore_workload_environment()
    runner = Runner(campaign, run_dir)
    trimmer = HeapTrimmer()
    if trimmer.available:

        def trim(_snap: object) -> None:
            trimmer.tick()

        runner.snapshot_preparers.append(trim)
        runner.session_listeners.append(trimmer.note_session)
    runner.baseline_run = baseline_run
    printer = ProgressPrinter(stream, runner.scheduler.planned_total, heartbeat_s=heartbeat_s)
    runner.session_listeners.append(printer.session)
    runner.snapshot_listeners.append(printer.snapshot)
    print(f"perfmon: running {campaign.name} into {run_dir}", file=stream, flush=True)
    metrics = None
    if metrics_addr is not None:
        from perfmon.engine.prometheus import serve_metrics

        try:
            metrics = serve_metrics(
                runner.snapshot_listeners, metrics_addr, track_groups=runner.track_groups
            )
        except (OSError, ValueError) as exc:
            print(f"perfmon: --metrics-addr {metrics_addr}: {exc}", file=sys.stderr, flush=True)
            return 2
        print(f"perfmon: serving {metrics.url}", file=stream, flush=True)

    async def main() -> tuple[RunOutcome, bool]:
        loop = asyncio.get_running_loop()
        interrupted = False

        def stop() -> None:
            nonlocal interrupted
            interrupted = True
            print("perfmon: stopping (the report will still be written)", file=stream, flush=True)
            runner.request_stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)

        async def beat() -> None:
            while True:
                await asyncio.sleep(1.0)
                printer.heartbeat()

        ticker = asyncio.create_task(beat(), name="headless-heartbeat")
        try:
            return await runner.run(), interrupted
        finally:
            ticker.cancel()

    try:
        outcome, interrupted = asyncio.run(main())
    finally:
        if metrics is not None:
            metrics.close()
    printer.final(outcome)
    return 3 if interrupted else outcome.exit_status
