"""``PerfmonApp``: the Textual viewer of a run's snapshots.

Layout. Four panels: sessions, gates, the comparison (each variant against the reference,
``perfmon.tui.widgets.comparison``) and metrics. The screen gets classes by size
(``layout_classes``): below ``SHORT_ROWS`` rows (``-short``, e.g. 80x24) the metrics panel
is left out and the sessions panel shrinks, so the verdict (status bar), the gates and the
comparison fit; from ``WIDE_COLUMNS`` columns (``-wide``) the panels sit side by side in two
columns (sessions and the comparison left, gates and metrics right) and the charts (box plots,
sparklines) grow with their panel.

The app never owns the campaign. It polls a ``SnapshotSource`` at ``refresh_hz`` and, when the
newest snapshot is a different object from the one shown, applies it to the panels inside one
``batch_update`` (memray's live TUI works the same way). Tables are updated by keyed diff, so
nothing is rebuilt per tick and nothing redraws when no new snapshot arrived.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Literal

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Container
from textual.events import Resize
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Footer

from perfmon.core.snapshot import RunState, Snapshot
from perfmon.core.units import format_bytes
from perfmon.tui.commands import PerfmonCommands
from perfmon.tui.keymap import KeymapError, load_keymap, set_scopes_provider
from perfmon.tui.source import SnapshotSource
from perfmon.tui.themes import ThemeError, register_themes
from perfmon.tui.widgets.comparison import ComparisonTable, panel_subtitle
from perfmon.tui.widgets.gate_board import GateBoard
from perfmon.tui.widgets.metrics_table import MetricsTable, split_subtitle
from perfmon.tui.widgets.sessions_table import SessionsTable
from perfmon.tui.widgets.status_bar import MessageLine, StatusBar

WIDE_COLUMNS = 160
"""From this terminal width on, the panels sit side by side in two columns."""

SHORT_ROWS = 30
"""Below this terminal height the metrics panel is left out (the verdict, the gates and the
comparison come first) and the sessions panel shrinks."""


def layout_classes(width: int, height: int) -> dict[str, bool]:
    """The screen's layout classes for a terminal of ``width`` x ``height`` cells:
    ``{"-wide": ..., "-short": ...}`` (see the module docstring)."""
    return {"-wide": width >= WIDE_COLUMNS, "-short": height < SHORT_ROWS}


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
        keys: the keys file remapping bindings by id (``perfmon.tui.keymap``): a path, None
            for ``keymap.default_path()``, or False for none. A bad file is shown as an error
            when the viewer starts, and the default keys are kept.

    Raises:
        ValueError: if ``refresh_hz`` <= 0 or the theme is unknown.
        ThemeError: if a theme file is not valid.
    """

    CSS_PATH = "perfmon.tcss"
    TITLE = "perfmon"
    COMMANDS = App.COMMANDS | {PerfmonCommands}

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "q",
            "stop",
            "Stop",
            id="stop",
            tooltip="Stop the run (asks first; the report is written); once over, leave",
        ),
        Binding(
            "ctrl+c",
            "stop",
            "Stop",
            id="stop.ctrl-c",
            show=False,
            system=True,
            tooltip="Like q: stop the run (asks first)",
        ),
        Binding(
            "d",
            "detach",
            "Detach",
            id="detach",
            tooltip="Leave the viewer; the run goes on (perfmon attach comes back)",
        ),
        Binding(
            "ctrl+q",
            "detach",
            "Detach",
            id="detach.ctrl-q",
            show=False,
            priority=True,
            tooltip="Like d: leave the viewer, the run goes on",
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
        # The metrics panel's split by a label (issue 11): action_split below.
        Binding(
            "l",
            "split",
            "Split",
            id="split",
            tooltip="Split the metrics by a label: none, variant, workload, set, each matrix key",
        ),
        Binding(
            "m",
            "comparison_metric",
            "Metric",
            id="comparison.metric",
            tooltip="Compare another per-session metric (session_seconds first)",
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
        keys: Path | Literal[False] | None = None,
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
        self.keys_file = keys
        self.keys_error = ""
        """Why the keys file was refused ("" when it was used or there is none)."""
        self.detached = False
        """True once the viewer was left with ``detach`` (the run goes on)."""
        self._split_wanted: str | None = None  # the split last asked for (issue 11)
        self._split_timer: Timer | None = None
        self._comparison_metric = ""

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
            comparison = ComparisonTable(id="comparison")
            comparison.border_title = "Comparison"
            yield comparison
            metrics = MetricsTable(id="metrics")
            metrics.border_title = "Metrics"
            yield metrics
        yield Footer()

    def on_mount(self) -> None:
        """Show the current snapshot at once, then poll the source."""
        # After the first frame: checking a keys file imports the screens (the timeline's numpy
        # is ~0.4 s of import, measured with python -X importtime).
        self.call_after_refresh(self._load_keys)
        self._set_layout(self.size.width, self.size.height)
        self.poll()
        if not self.finished:
            self._timer = self.set_interval(1.0 / self.refresh_hz, self.poll)

    def on_resize(self, event: Resize) -> None:
        """Switch layouts by the terminal's size (``layout_classes``)."""
        self._set_layout(event.size.width, event.size.height)

    def _set_layout(self, width: int, height: int) -> None:
        for name, on in layout_classes(width, height).items():
            self.set_class(on, name)

    def run(self, **kwargs: Any) -> Any:
        """Run the app (``App.run``), with mouse support as chosen in the constructor.

        Returns:
            What ``App.run`` returns (the value passed to ``exit``, e.g. pytest-textual-
            snapshot's screenshot), None for the viewer itself.
        """
        kwargs.setdefault("mouse", self.mouse)
        return super().run(**kwargs)

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
        metrics.update_snapshot(snapshot)
        _set_subtitle(metrics, split_subtitle(snapshot))
        self._show_comparison(snapshot)

    # -- the comparison panel --------------------------------------------------------------

    def comparison_metric(self) -> str:
        """The metric the comparison panel shows: the one chosen with ``m`` if the panel
        still has it, else the panel's first (``session_seconds``)."""
        panel = self.snapshot.comparison if self.snapshot is not None else None
        if panel is None or not panel.metrics:
            return self._comparison_metric or "session_seconds"
        if self._comparison_metric in panel.metrics:
            return self._comparison_metric
        return panel.metrics[0]

    def _show_comparison(self, snapshot: Snapshot) -> None:
        panel = snapshot.comparison
        metric = self.comparison_metric()
        table = self.query_one(ComparisonTable)
        done = self.finished or snapshot.state in (RunState.FINISHED, RunState.FAILED)
        table.show(panel, metric, done)
        _set_subtitle(table, panel_subtitle(panel, metric))
        from perfmon.tui.screens.comparison import ComparisonScreen

        for screen in self.screen_stack:
            if isinstance(screen, ComparisonScreen) and panel is not None:
                screen.update_panel(panel)

    def action_comparison_metric(self) -> None:
        """Show the panel's next per-session metric (``session_seconds`` first)."""
        panel = self.snapshot.comparison if self.snapshot is not None else None
        if panel is None or len(panel.metrics) < 2:
            self.note("the comparison has one metric only")
            return
        current = self.comparison_metric()
        i = panel.metrics.index(current) if current in panel.metrics else -1
        self._comparison_metric = panel.metrics[(i + 1) % len(panel.metrics)]
        assert self.snapshot is not None
        self._show_comparison(self.snapshot)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a comparison row opens it in detail."""
        if not isinstance(event.data_table, ComparisonTable):
            return
        self.action_comparison_detail()

    def action_comparison_detail(self) -> None:
        """Open the comparison row under the cursor in detail (``ComparisonScreen``)."""
        from perfmon.tui.screens.comparison import ComparisonScreen

        panel = self.snapshot.comparison if self.snapshot is not None else None
        row = self.query_one(ComparisonTable).row_at_cursor()
        if panel is None or row is None:
            self.note("no comparison yet: it needs two variants with finished sessions")
            return
        if not isinstance(self.screen, ComparisonScreen):
            self.push_screen(ComparisonScreen(panel, row.key))

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

    def action_stop(self) -> None:
        """Ask before stopping the run (``ConfirmStop``); once stopping or over, leave.

        A read-only viewer (``perfmon attach`` without ``--control``) cannot stop the run: it
        says so and how to leave.
        """
        if self.stop_requested or self.finished:
            self.exit()
            return
        if getattr(self.source, "control", True) is False:
            self.note("read-only viewer: d detaches; perfmon attach --control can stop the run")
            return
        from perfmon.tui.screens.confirm import ConfirmStop

        if not isinstance(self.screen, ConfirmStop):
            self.push_screen(ConfirmStop(self.snapshot), self._stop_chosen)

    def _stop_chosen(self, choice: str | None) -> None:
        if choice == "stop":
            self.request_stop()
        elif choice == "detach":
            self.action_detach()

    def request_stop(self) -> None:
        """Ask the run to stop and wait for its report (then exit); exit if it cannot be asked."""
        if self.stop_requested or self.finished:
            return
        if not self._send("stop"):
            self.exit()
            return
        self.stop_requested = True
        if self._timer is None:
            self._timer = self.set_interval(1.0 / self.refresh_hz, self.poll)
        self._show_status()
        self.refresh_bindings()

    def action_detach(self) -> None:
        """Leave the viewer without stopping the run (it goes on; ``perfmon attach`` returns)."""
        self.detached = not self.finished
        self.exit()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's palette commands without its "Quit" (perfmon's Detach and Stop replace it)."""
        for command in super().get_system_commands(screen):
            if command.title != "Quit":
                yield command

    def _load_keys(self) -> None:
        """Apply the keys file (``perfmon.tui.keymap``); show why when it is refused."""
        if self.keys_file is False:
            return
        try:
            keymap = load_keymap(self.keys_file)
        except KeymapError as exc:
            self.keys_error = str(exc)
            self.notify(
                f"{exc}. Default keys kept.", title="keys file", severity="error", timeout=20
            )
            return
        if keymap:
            self.set_keymap(keymap)

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
                metric = metrics.metric_of(str(key)) if key is not None else None
            self.push_screen(TimelineScreen(snap.run_dir, metric=metric))

    def action_help(self) -> None:
        """Open the help screen."""
        # Imported here: the help screen's Markdown widget pulls in markdown-it (~50 ms of the
        # viewer's start-up, measured with python -X importtime), not needed for a first frame.
        from perfmon.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    # -- the metrics panel's split by a label (issue 11) -----------------------------------

    def split_labels(self) -> list[str]:
        """The labels the split cycles through: "" (none), ``variant``, ``workload``, ``set``,
        then every matrix key of the snapshot's sessions, in order of appearance."""
        labels = ["", "variant", "workload", "set"]
        snap = self.snapshot
        for row in snap.sessions if snap is not None else ():
            for pair in row.params.split():
                key = pair.partition("=")[0]
                if key and key not in labels:
                    labels.append(key)
        return labels

    def action_split(self) -> None:
        """Split the metrics panel by the next label (see ``split_labels``)."""
        labels = self.split_labels()
        current = self._split_wanted
        if current is None:
            current = self.snapshot.split_label if self.snapshot is not None else ""
        following = labels[(labels.index(current) + 1) % len(labels)] if current in labels else ""
        if not self._send(f"split {following}".strip()):
            return
        self._split_wanted = following
        self.note(f"metrics split by {following}" if following else "metrics not split")
        if self.finished and self._split_timer is None:
            # A recorded run replays the split in the background: look for it until it shows.
            self._split_timer = self.set_interval(1.0 / self.refresh_hz, self._poll_split)

    def _poll_split(self) -> None:
        self.poll()
        snap = self.snapshot
        if snap is None or snap.split_label == self._split_wanted:
            if self._split_timer is not None:
                self._split_timer.stop()
            self._split_timer = None
            return
        error = getattr(self.source, "error", "")
        if error:
            self.note(str(error))
            self._split_wanted = snap.split_label


def binding_scopes() -> dict[str, list[Binding]]:
    """Each screen of the viewer with the bindings active on it (app-wide ones included).

    Imports the screens (which the viewer otherwise imports only when opened), so it is
    called only when a keys file exists or the help lists the ids. Registered with
    ``perfmon.tui.keymap.set_scopes_provider`` when this module is imported.

    Returns:
        Screen name -> its bindings: ``run`` (the app's), ``flame`` (app + flame screen +
        flame view), ``timeline`` (app + timeline screen), ``comparison`` (app + the
        comparison detail screen), ``help`` and ``confirm`` (modal screens: the app's
        bindings do not reach them).
    """
    from perfmon.tui.screens.comparison import ComparisonScreen
    from perfmon.tui.screens.confirm import ConfirmStop
    from perfmon.tui.screens.flame import FlameScreen
    from perfmon.tui.screens.help import HelpScreen
    from perfmon.tui.screens.timeline import TimelineScreen
    from perfmon.tui.widgets.flame import FlameView

    def of(*classes: type) -> list[Binding]:
        out: list[Binding] = []
        for cls in classes:
            out += [b for b in getattr(cls, "BINDINGS", []) if isinstance(b, Binding)]
        return out

    app = of(PerfmonApp)
    return {
        "run": app,
        "flame": app + of(FlameScreen, FlameView),
        "timeline": app + of(TimelineScreen),
        "comparison": app + of(ComparisonScreen),
        "help": of(HelpScreen),
        "confirm": of(ConfirmStop),
    }


set_scopes_provider(binding_scopes)

__all__ = [
    "SHORT_ROWS",
    "STOPPING_NOTE",
    "WIDE_COLUMNS",
    "PerfmonApp",
    "ThemeError",
    "layout_classes",
]
