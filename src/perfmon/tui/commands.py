"""The command palette's perfmon commands (``ctrl+p``): every action of the viewer by name.

A Textual command ``Provider`` (https://textual.textualize.io/guide/command_palette/), as
posting's ``commands.py`` does: each command names an action, the node that runs it (the app,
or the screen the palette was opened on) and a line of help. A command whose action does not
apply now (``check_action`` says so, e.g. export once the run is over, pause while paused) is
not offered. Textual's own commands (theme, keys panel, screenshot, maximize) stay; its
"Quit" is replaced by perfmon's *Detach* and *Stop the run* (``PerfmonApp.get_system_commands``).
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from textual.dom import DOMNode


@dataclass(frozen=True, slots=True)
class PaletteCommand:
    """One palette entry.

    Attributes:
        title: what the palette shows and matches against.
        help: one line under it.
        action: the action run (``App.run_action``), e.g. ``"stop"`` or ``"search"``.
        where: ``"app"`` (run on the app) or a screen class name (run on that screen, offered
            only while it is the current screen).
    """

    title: str
    help: str
    action: str
    where: str = "app"


COMMANDS: tuple[PaletteCommand, ...] = (
    PaletteCommand("Stop the run", "End the sessions and write the report (asks first)", "stop"),
    PaletteCommand("Detach", "Leave the viewer; the run goes on (perfmon attach)", "detach"),
    PaletteCommand("Export the report", "Write the report now, without stopping", "export"),
    PaletteCommand("Pause", "Launch no new session; running sessions go on", "pause"),
    PaletteCommand("Resume", "Launch sessions again", "resume"),
    PaletteCommand(
        "Profile now", "Sample the selected (else running) session with py-spy", "profile"
    ),
    PaletteCommand("Flame graphs", "Profiles per workload and variant, and diffs", "flames"),
    PaletteCommand("Timeline", "A metric over the whole run, with gate changes", "timeline"),
    PaletteCommand(
        "Comparison: next metric",
        "Compare another per-session metric in the comparison panel",
        "comparison_metric",
    ),
    PaletteCommand(
        "Comparison in detail",
        "The comparison row under the cursor: distributions, values in order, outliers",
        "comparison_detail",
    ),
    PaletteCommand(
        "Split metrics by label",
        "Next split of the metrics panel: none, variant, workload, set, each matrix key",
        "split",
    ),
    PaletteCommand("Help", "Keys, binding ids and what the panels show", "help"),
    PaletteCommand("Back", "Back to the run screen", "back", "FlameScreen"),
    PaletteCommand("Find a function", "Search the flame graph by name", "search", "FlameScreen"),
    PaletteCommand("Next match", "Select the next search match", "next_match", "FlameScreen"),
    PaletteCommand("Reload profiles", "Show profiles taken since", "reload", "FlameScreen"),
    PaletteCommand("Back", "Back to the run screen", "back", "TimelineScreen"),
    PaletteCommand("Zoom in", "Halve the window around the cursor", "zoom(0.5)", "TimelineScreen"),
    PaletteCommand("Zoom out", "Double the window around the cursor", "zoom(2)", "TimelineScreen"),
    PaletteCommand("Whole run", "Show the whole run again", "whole", "TimelineScreen"),
)
"""Every command, in the order the palette lists them before anything is typed."""


class PerfmonCommands(Provider):
    """Offers ``COMMANDS`` that apply on the current screen (see the module docstring)."""

    def _available(self) -> list[tuple[PaletteCommand, DOMNode]]:
        screen = self.screen
        out: list[tuple[PaletteCommand, DOMNode]] = []
        for cmd in COMMANDS:
            node: DOMNode
            if cmd.where == "app":
                node = self.app
            elif type(screen).__name__ == cmd.where:
                node = screen
            else:
                continue
            name = cmd.action.split("(", 1)[0]
            if node.check_action(name, ()) is True:  # False: hidden, None: disabled now
                out.append((cmd, node))
        return out

    def _run(self, cmd: PaletteCommand, node: DOMNode) -> partial[Coroutine[Any, Any, bool]]:
        return partial(self.app.run_action, cmd.action, node)

    async def discover(self) -> Hits:
        """Every command that applies now, before anything is typed."""
        for cmd, node in self._available():
            yield DiscoveryHit(cmd.title, self._run(cmd, node), help=cmd.help)

    async def search(self, query: str) -> Hits:
        """Commands whose title matches ``query`` (Textual's fuzzy matcher), best first."""
        matcher = self.matcher(query)
        for cmd, node in self._available():
            score = matcher.match(cmd.title)
            if score > 0:
                yield Hit(score, matcher.highlight(cmd.title), self._run(cmd, node), help=cmd.help)


__all__ = ["COMMANDS", "PaletteCommand", "PerfmonCommands"]
