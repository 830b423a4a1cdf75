"""``PerfmonApp``: the Textual viewer of a run's snapshots.

The app never owns the campaign. It polls a ``SnapshotSource`` at ``refresh_hz`` and, when the
newest snapshot is a different object from the one shown, applies it to the panels inside one
``batch_update`` (memray's live TUI works the same way). Tables are updated by keyed diff, so
nothing is rebuilt per tick and nothing redraws when no new snapshot arrived.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container
from textual.events import Resize
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Footer

from perfmon.core.snapshot import RunState, Snapshot
from perfmon.core.units import format_bytes
from perfmon.tui.source import SnapshotSource
from perfmon.tui.themes import ThemeError, register_themes
from perfmon.tui.widgets.gate_board import GateBoard
from perfmon.tui.widgets.metrics_table import MetricsTable
from perfmon.tui.widgets.sessions_table import SessionsTable
from perfmon.tui.widgets.status_bar import MessageLine, StatusBar

WIDE_COLUMNS = 140
"""From this terminal width on, sessions and gates sit side by side."""

STOPPING_NOTE = "stopping… writing report"


def _set_subtitle(widget: Widget, text: str) -> None:
    """Set a panel's border subtitle only when it changed: setting it repaints the whole panel."""
    if widget.border_subtitle != text:
        widget.border_subtitle = text


class PerfmonApp(App[None]):
    """The live viewer: status bar, message line, sessions, gates and metrics panels, footer.

    Args:
        source: where snapshots come from and commands go (see ``SnapshotSource``). The caller
            keeps ownership: the app never calls ``source.close()``.
        refresh_hz: how many times a second the source is polled (> 0).
        theme: a perfmon theme (``perfmon-dark``, ``perfmon-light``) or a Textual theme name.
        mouse: enable mouse support when the app is run with ``run()``.

    Raises:
        ValueError: if ``refresh_hz`` <= 0 or the theme is unknown.
        ThemeError: if a theme file is not valid.
    """

    CSS_PATH = "perfmon.tcss"
    TITLE = "perfmon"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "q",
            "quit_viewer",
            "Quit",
            id="quit",
            tooltip="Stop the run (the report is written) and exit; press again to leave at once",
        ),
        Binding("e", "export", "Export", id="export", tooltip="Write the report now"),
        Binding("p", "pause", "Pause", id="pause", tooltip="Stop launching new sessions"),
        Binding("p", "resume", "Resume", id="resume", tooltip="Launch sessions again"),
        Binding(
            "question_mark",
            "help",
            "Help",
            id="help",
            key_display="?",
            tooltip="Keys and what the panels show",
        ),
        Binding("tab", "focus_next", "Panels", id="focus-next", tooltip="Focus the next panel"),
        Binding(
            "f",
            "profile",
            "Profile",
            id="profile",
            tooltip="Sample the selected (else the running) session with py-spy for 5 s",
        ),
        Binding("g", "flames", "Flames", id="flames", tooltip="Open the flame graphs"),
        Binding(
            "t",
            "timeline",
            "Timeline",
            id="timeline",
            tooltip="A metric over the whole run, with zoom and gate changes",
        ),
    ]

    PROFILE_SECONDS = 5.0
    """How long the f key samples a session."""

    def __init__(
        self,
        source: SnapshotSource,
        *,
        refresh_hz: float = 4.0,
        theme: str = "perfmon-dark",
        mouse: bool = True,
    ) -> None:
        if not refresh_hz > 0:
            raise ValueError(f"refresh_hz must be > 0, got {refresh_hz}")
        super().__init__()
        self.source = source
        self.refresh_hz = refresh_hz
        self.mouse = mouse
        register_themes(self)
        if theme not in self.available_themes:
            known = ", ".join(sorted(self.available_themes))
            raise ValueError(f"unknown theme {theme!r} (known: {known})")
        self.theme = theme
        self.snapshot: Snapshot | None = None
        """The snapshot shown, None before the first."""
        self.stop_requested = False
        self.paused = False
        self.finished = False
        self._note_message = ""
        self._note_base = ""
        self._timer: Timer | None = None

    # -- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        """Status bar, message line, the three panels and the footer."""
        yield StatusBar(id="status")
        yield MessageLine(id="message")
        with Container(id="panels"):
            sessions = SessionsTable(id="sessions")
            sessions.border_title = "Sessions"
            yield sessions
            gates = GateBoard(id="gates")
            gates.border_title = "Gates"
            yield gates
            metrics = MetricsTable(id="metrics")
            metrics.border_title = "Metrics"
            yield metrics
        yield Footer()

    def on_mount(self) -> None:
        """Show the current snapshot at once, then poll the source."""
        self._set_wide(self.size.width)
        self.poll()
        if not self.finished:
            self._timer = self.set_interval(1.0 / self.refresh_hz, self.poll)

    def on_resize(self, event: Resize) -> None:
        """Switch between the narrow (stacked) and wide (side by side) layouts."""
        self._set_wide(event.size.width)

    def _set_wide(self, width: int) -> None:
        self.set_class(width >= WIDE_COLUMNS, "-wide")

    def run(self, **kwargs: Any) -> None:
        """Run the app (``App.run``), with mouse support as chosen in the constructor."""
        kwargs.setdefault("mouse", self.mouse)
        super().run(**kwargs)

    # -- polling ---------------------------------------------------------------------------

    def poll(self) -> None:
        """Apply the source's newest snapshot if it changed; exit when a requested stop is done."""
        snapshot = self.source.latest()
        finished = self.source.finished
        changed = snapshot is not None and snapshot is not self.snapshot
        if changed:
            assert snapshot is not None
            with self.batch_update():
                self._apply(snapshot)
        if finished != self.finished:
            self.finished = finished
            self._show_status()
            self.refresh_bindings()
            if finished and self._timer is not None and not self.stop_requested:
                # Nothing more will come: stop polling, keep showing the final snapshot.
                self._timer.stop()
        if self.stop_requested and (
            finished
            or (snapshot is not None and snapshot.state in (RunState.FINISHED, RunState.FAILED))
        ):
            self.exit()

    def _apply(self, snapshot: Snapshot) -> None:
        previous = self.snapshot
        self.snapshot = snapshot
        if snapshot.state in (RunState.PAUSED, RunState.RUNNING) and (
            previous is None or previous.state != snapshot.state
        ):
            self.paused = snapshot.state == RunState.PAUSED
            self.refresh_bindings()
        self._show_status()
        self._show_message()
        sessions = self.query_one(SessionsTable)
        sessions.update_sessions(snapshot.sessions)
        done = f"{snapshot.sessions_done:,}/{snapshot.sessions_total:,} done"
        disk = snapshot.disk_bytes
        if isinstance(disk, int | float) and disk > 0:
            done += f" · recorded {format_bytes(disk)} on disk"
        _set_subtitle(sessions, done)
        gates = self.query_one(GateBoard)
        gates.sync(snapshot.gates)
        _set_subtitle(gates, GateBoard.summary(snapshot.gates))
        metrics = self.query_one(MetricsTable)
        metrics.update_metrics(snapshot.metrics)
        _set_subtitle(metrics, f"{len(snapshot.metrics)} metrics")

    def display_state(self) -> str | None:
        """The run state the status bar shows (overrides the snapshot's once stopping/ended)."""
        if self.finished:
            if self.snapshot is not None and self.snapshot.state == RunState.FAILED:
                return RunState.FAILED
            return RunState.FINISHED
        if self.stop_requested:
            return RunState.STOPPING
        return None

    def _show_status(self) -> None:
        note = STOPPING_NOTE if self.stop_requested and not self.finished else ""
        self.query_one(StatusBar).show(self.snapshot, state=self.display_state(), note=note)

    def _show_message(self) -> None:
        message = self.snapshot.message if self.snapshot is not None else ""
        if self._note_message and message == self._note_base:
            message = self._note_message
        self.query_one(MessageLine).show(message)

    def note(self, text: str) -> None:
        """Show a viewer-side message until the run reports a new message of its own."""
        self._note_message = text
        self._note_base = self.snapshot.message if self.snapshot is not None else ""
        self._show_message()

    def _send(self, command: str) -> bool:
        try:
            self.source.send(command)
        except (OSError, ValueError) as exc:
            self.note(f"could not send {command!r}: {exc}")
            return False
        return True

    # -- actions ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show only the pause/resume binding that applies; disable commands once finished."""
        if action == "pause":
            return not self.paused and not self.finished
        if action == "resume":
            return self.paused and not self.finished
        if action in ("export", "profile"):
            return None if self.finished else True
        return True

    def action_quit_viewer(self) -> None:
        """First q: ask the run to stop and wait for the report; second q (or run over): exit."""
        if self.stop_requested or self.finished:
            self.exit()
            return
        if not self._send("stop"):
            self.exit()
            return
        self.stop_requested = True
        if self._timer is None:
            self._timer = self.set_interval(1.0 / self.refresh_hz, self.poll)
        self._show_status()
        self.refresh_bindings()

    def action_export(self) -> None:
        """Ask the run to write its report now."""
        if self._send("export"):
            self.note("export requested: writing the report…")

    def action_pause(self) -> None:
        """Ask the run to stop launching new sessions."""
        if self._send("pause"):
            self.paused = True
            self.note("pause requested: running sessions finish, no new ones start")
            self.refresh_bindings()

    def action_resume(self) -> None:
        """Ask the run to launch sessions again."""
        if self._send("resume"):
            self.paused = False
            self.note("resume requested")
            self.refresh_bindings()

    def action_profile(self) -> None:
        """Ask the run to sample the selected session (if running, else the running one)."""
        command = "profile"
        table = self.query_one(SessionsTable)
        snap = self.snapshot
        if snap is not None and table.row_count and table.cursor_row >= 0:
            row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            chosen = next((r for r in snap.sessions if str(r.id) == str(row_key)), None)
            if chosen is not None and chosen.status == "running":
                command = f"profile {chosen.id} {self.PROFILE_SECONDS:g}"
        if self._send(command):
            self.note(f"profiling requested ({self.PROFILE_SECONDS:g} s with py-spy); g: flames")

    def action_flames(self) -> None:
        """Open the flame screen on the run's profiles."""
        from perfmon.tui.screens.flame import FlameScreen

        snap = self.snapshot
        if snap is None:
            self.note("no snapshot yet")
            return
        if not isinstance(self.screen, FlameScreen):
            self.push_screen(FlameScreen(snap.run_dir, [p.to_dict() for p in snap.profiles]))

    def action_timeline(self) -> None:
        """Open the timeline screen (the metric selected in the metrics panel first)."""
        from perfmon.tui.screens.timeline import TimelineScreen

        snap = self.snapshot
        if snap is None:
            self.note("no snapshot yet")
            return
        if not isinstance(self.screen, TimelineScreen):
            metrics = self.query_one(MetricsTable)
            metric = None
            if metrics.row_count and metrics.cursor_row >= 0:
                key = metrics.coordinate_to_cell_key(metrics.cursor_coordinate).row_key.value
                metric = str(key) if key is not None else None
            self.push_screen(TimelineScreen(snap.run_dir, metric=metric))

    def action_help(self) -> None:
        """Open the help screen."""
        # Imported here: the help screen's Markdown widget pulls in markdown-it (~50 ms of the
        # viewer's start-up, measured with python -X importtime), not needed for a first frame.
        from perfmon.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


__all__ = ["STOPPING_NOTE", "WIDE_COLUMNS", "PerfmonApp", "ThemeError"]
