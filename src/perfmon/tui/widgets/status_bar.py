"""The status bar: campaign, run state, elapsed time, progress, samples, malformed, verdict."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from perfmon.core.model import GateState
from perfmon.core.snapshot import RunState, Snapshot
from perfmon.core.units import format_duration

STATE_STYLES: dict[str, str] = {
    RunState.STARTING: "bold $background on $foreground-muted",
    RunState.RUNNING: "bold $background on $success",
    RunState.PAUSED: "bold $background on $warning",
    RunState.STOPPING: "bold $background on $warning",
    RunState.FINISHED: "bold $background on $primary",
    RunState.FAILED: "bold $background on $error",
}
"""Run state -> pill style (theme variables only)."""

VERDICT_STYLES: dict[str, tuple[str, str]] = {
    GateState.PASS.value: ("● PASS", "bold $success"),
    GateState.FAIL.value: ("✗ FAIL", "bold $error"),
    GateState.PENDING.value: ("… pending", "$foreground-muted"),
    GateState.INCONCLUSIVE.value: ("? INCONCLUSIVE", "bold $warning"),
}
"""Verdict -> (text, style)."""


def status_content(
    snapshot: Snapshot | None, *, state: str | None = None, note: str = ""
) -> Content:
    """Build the status line for a snapshot.

    Args:
        snapshot: the snapshot shown, or None before the first one.
        state: a ``RunState`` value overriding the snapshot's (e.g. FINISHED once the source
            ended, STOPPING once the user asked to stop).
        note: a short note appended in the warning colour (e.g. "stopping… writing report").

    Returns:
        The line as Textual ``Content`` (user text is never parsed as markup).
    """
    sep = (" │ ", "$foreground-muted")
    if snapshot is None:
        parts: list[str | tuple[str, str]] = [
            (" perfmon ", "bold $background on $primary"),
            ("  waiting for the first snapshot…", "$foreground-muted"),
        ]
        if note:
            parts += [sep, (note, "bold $warning")]
        return Content.assemble(*parts)
    run_state = state or snapshot.state
    pill = STATE_STYLES.get(run_state, STATE_STYLES[RunState.FAILED])
    verdict_text, verdict_style = VERDICT_STYLES.get(
        snapshot.verdict, (snapshot.verdict, "$warning")
    )
    malformed_style = (
        "bold $background on $error" if snapshot.malformed_total else "$foreground-muted"
    )
    # Most important first, so that a narrow terminal cuts the least useful end.
    parts = [(f" {snapshot.campaign} ", "bold $primary"), (f" {run_state.upper()} ", pill)]
    if note:
        parts += [" ", (note, "bold $warning")]
    parts += [
        " ",
        (verdict_text, verdict_style),
        sep,
        (format_duration(snapshot.elapsed_s), "bold"),
        sep,
        ("sessions ", "$foreground-muted"),
        (f"{snapshot.sessions_done:,}/{snapshot.sessions_total:,}", "bold"),
        *_busy_parts(snapshot),
        sep,
        ("samples ", "$foreground-muted"),
        (f"{snapshot.samples_total:,}", "bold"),
        sep,
        (f" malformed {snapshot.malformed_total:,} ", malformed_style),
    ]
    # What the metric-name caps dropped, and metrics not shown (the report has them all).
    if snapshot.dropped_samples:
        at_least = "≥" if snapshot.dropped_names_capped else ""
        parts += [
            sep,
            (
                f" dropped {snapshot.dropped_samples:,} samples of {at_least}"
                f"{snapshot.dropped_names:,} names over the caps ",
                "bold $background on $warning",
            ),
        ]
    if snapshot.metrics_total > len(snapshot.metrics):
        parts += [
            sep,
            ("metrics shown ", "$foreground-muted"),
            (f"{len(snapshot.metrics):,}/{snapshot.metrics_total:,}", "bold"),
        ]
    return Content.assemble(*parts)


def _busy_parts(snapshot: Snapshot) -> list[str | tuple[str, str]]:
    """The "N on a busy machine" pill after the session count, when sessions ran on a busy
    machine (``Snapshot.noise``, see ``perfmon.core.noise``); else nothing."""
    busy = snapshot.noise.busy if snapshot.noise is not None else 0
    if not isinstance(busy, int) or busy <= 0:
        return []
    return [" ", (f" {busy:,} on a busy machine ", "bold $background on $warning")]


class StatusBar(Static):
    """One line at the top of the screen; redrawn only when its text changes."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        width: 1fr;
        background: $panel;
        color: $foreground;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        initial = status_content(None)
        super().__init__(initial, id=id, markup=False)
        self._last: Content = initial

    def show(self, snapshot: Snapshot | None, *, state: str | None = None, note: str = "") -> None:
        """Show ``snapshot`` (see ``status_content`` for the arguments)."""
        content = status_content(snapshot, state=state, note=note)
        if content == self._last:
            return
        self._last = content
        self.update(content)

    @property
    def text(self) -> str:
        """The plain text shown (for tests)."""
        return self._last.plain


class MessageLine(Static):
    """The latest notable event of the run (``Snapshot.message``) or of the viewer."""

    DEFAULT_CSS = """
    MessageLine {
        height: 1;
        width: 1fr;
        padding: 0 1;
        color: $foreground-muted;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self.text = ""

    def show(self, text: str) -> None:
        """Show ``text`` (plain; a change of text redraws the line)."""
        if text == self.text:
            return
        self.text = text
        self.update(Content.assemble(("› ", "$accent"), text) if text else "")
