"""The stop confirmation: a modal that asks before a run is stopped.

A 72-hour soak must not end because a key was pressed by mistake, so ``q`` (and ``ctrl+c``)
open this modal instead of stopping at once: ``y`` stops the run (the running sessions are
cancelled, the report is written), ``n`` or ``escape`` keeps it running, ``d`` leaves the
viewer with the run going on (the same ``detach`` binding as on every screen).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from perfmon.core.snapshot import Snapshot

Choice = Literal["stop", "detach"]


def stop_question(snapshot: Snapshot | None) -> tuple[str, str]:
    """The modal's title and its sentence on what stopping cancels.

    Args:
        snapshot: the run as last seen (None before the first snapshot).

    Returns:
        ``(title, text)``, e.g. ``("Stop run 20260101T000000Z-audit?", "1 running session
        will be cancelled and 38 planned sessions will not start. ...")``.
    """
    if snapshot is None:
        return "Stop the run?", "No snapshot yet. The run stops and writes its report."
    running = sum(1 for r in snapshot.sessions if r.status == "running")
    planned = max(0, snapshot.sessions_total - snapshot.sessions_done - running)

    def n(count: int, what: str) -> str:
        return f"{count:,} {what}{'s' if count != 1 else ''}"

    parts = [f"{n(running, 'running session')} will be cancelled"]
    if planned:
        parts.append(f"{n(planned, 'planned session')} will not start")
    text = " and ".join(parts) + ". The report is written from what was recorded."
    return f"Stop run {snapshot.run_id}?", text


class ConfirmStop(ModalScreen[Choice | None]):
    """Asks whether to stop the run; dismissed with ``"stop"``, ``"detach"`` or None.

    Args:
        snapshot: the run as last seen, for the question (see ``stop_question``).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "choose('stop')", "Stop", id="confirm.yes", tooltip="Stop the run"),
        Binding("n,escape", "choose('')", "Keep running", id="confirm.no", key_display="n/esc"),
        Binding(
            "d",
            "choose('detach')",
            "Detach",
            id="detach",
            tooltip="Leave the viewer; the run goes on in the background",
        ),
        Binding(
            "left", "app.focus_previous", id="confirm.left", show=False, tooltip="Previous button"
        ),
        Binding("right", "app.focus_next", id="confirm.right", show=False, tooltip="Next button"),
    ]

    DEFAULT_CSS = """
    ConfirmStop {
        align: center middle;
        background: $background 60%;
    }
    ConfirmStop > Vertical {
        width: 64;
        max-width: 100%;
        height: auto;
        border: round $error;
        border-title-color: $error;
        background: $surface;
        padding: 0 1;
    }
    ConfirmStop #confirm-text { margin: 1 0; }
    ConfirmStop Horizontal { height: auto; align-horizontal: center; }
    ConfirmStop Button { margin: 0 1; min-width: 10; }
    """

    def __init__(self, snapshot: Snapshot | None) -> None:
        super().__init__()
        self.title_text, self.text = stop_question(snapshot)

    def compose(self) -> ComposeResult:
        """The question, and three buttons (keep running has the focus)."""
        with Vertical() as box:
            box.border_title = self.title_text
            yield Static(self.text, id="confirm-text")
            with Horizontal():
                yield Button("Stop (y)", variant="error", id="stop")
                yield Button("Keep running (n)", variant="primary", id="keep")
                yield Button("Detach (d)", id="detach")

    def on_mount(self) -> None:
        """Focus the safe choice."""
        self.query_one("#keep", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """A button: its choice."""
        self.action_choose("" if event.button.id == "keep" else str(event.button.id))

    def action_choose(self, choice: str) -> None:
        """Dismiss with ``"stop"``, ``"detach"``, or None for any other text."""
        if choice == "stop":
            self.dismiss("stop")
        elif choice == "detach":
            self.dismiss("detach")
        else:
            self.dismiss(None)
