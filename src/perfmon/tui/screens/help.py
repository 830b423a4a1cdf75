"""The help screen: the keys, and what each panel shows."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP_TEXT = """\
## Keys

| key | what it does |
|-----|--------------|
| `q` | stop the run: the daemon ends the sessions and writes the report, then the viewer \
exits. A second `q` leaves at once (the run goes on stopping). After the run, `q` just quits. |
| `e` | write the report now, without stopping. |
| `p` | pause launching new sessions / resume (running sessions go on). |
| `f` | profile the selected session (or the running one) with py-spy for 5 s. |
| `g` | open the flame screen: profiles, per-variant aggregates, baseline-vs-candidate diff. \
There: arrows move between frames (down/up into and out of a frame), enter/backspace zoom, \
`/` search, `n` next match, `r` reload, escape back. |
| `t` | open the timeline: the chosen metric over the whole run (up/down picks it), \
with markers where gates changed state (coloured by the new state); left/right move the \
cursor, `+`/`-` zoom in/out around it (a zoomed window is read from the recording), `0` shows \
the whole run again, escape back. |
| `l` | split the metrics panel by a label: none, `variant`, `workload`, `set`, then each \
matrix key, in turn; each metric then has one row per label value, e.g. \
`session_seconds{variant="candidate"}`. A live run splits from the moment you ask (the \
subtitle says since when); a finished run's whole recording is split. |
| `tab` / `shift+tab` | move between the panels; arrows and page keys scroll the focused one. |
| `?` | this help; `escape` closes it. |

## Panels

- **Status bar**: campaign, run state, elapsed time, sessions done/total, samples ingested,
  malformed probe lines (highlighted when any were dropped) and the verdict so far (pass only
  when every gate passes).
- **Sessions**: one row per session in schedule order. `*` after the set marks a warm-up session
  (recorded, left out of statistics). Status: *ok*, *running*, *pending*, or how it failed
  (`exit N`, a signal name, `timeout`, `start failed`, `cancelled`). The table follows the newest
  running session until you scroll; scroll to the end to follow again.
- **Gates**: each gate's state (● pass, ✗ fail, … pending, ? inconclusive: the confidence
  interval still straddles the threshold) and the reason, with the measured value and sample count.
- **Metrics**: each metric's last value, p95, max, sample count n, and its trend over the
  whole run (each block is the mean of one time bucket), in the metric's unit (`1.3 ms`,
  `48 MiB`, `92.7 MB/s`). A counter shows its total and rate (`Σ 1,234 · 41.1/s`), a one-off
  value its value alone; metrics with one value throughout are folded into one last
  "(N constant)" line.

A viewer started by `perfmon attach` without `--control` is read-only: `q` just leaves, and
`e`, `p`, `f` and `l` are refused by the daemon.
"""


class HelpScreen(ModalScreen[None]):
    """A modal listing the viewer's keys and what its panels show; escape, q or ? close it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close", id="help.close", tooltip="Close the help"),
        Binding("q", "dismiss", "Close", show=False),
        Binding("question_mark", "dismiss", "Close", show=False),
    ]

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
        background: $background 60%;
    }
    HelpScreen > VerticalScroll {
        width: 90%;
        max-width: 110;
        height: 90%;
        border: round $primary;
        border-title-color: $primary;
        border-subtitle-color: $foreground-muted;
        background: $surface;
        padding: 0 1;
    }
    """

    def compose(self) -> ComposeResult:
        """A scrollable Markdown page."""
        with VerticalScroll() as scroll:
            scroll.border_title = "perfmon help"
            scroll.border_subtitle = "escape to close"
            yield Markdown(HELP_TEXT)
