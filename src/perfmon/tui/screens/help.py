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
| `m` | compare another per-session metric in the comparison panel (`session_seconds` \
first, then CPU seconds, peak RSS and the metrics of `speedup`/`regression` gates). |
| `enter` | on a comparison row: that comparison in detail (escape back). |
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
- **Comparison**: per workload and matrix value (and set), each variant's median with its n,
  the change against the reference variant (`[campaign] reference`, the first by default) in
  the metric's own direction with its interval (`1.42x faster [1.42, 1.51]`), and a box plot
  of its sessions on a scale common to the group (`─` min to max, `▒` quartiles, `█` median).
  `●` decided (the interval excludes 1), `?` no clear change yet, `~` provisional (fixed-n
  inference before the planned n: its interval does not hold its level until then), `…`
  waiting for `min_sessions` per side. With `inference = "anytime"` (the default) the interval
  is a confidence sequence, valid whenever you look, and no p-value is shown (a fixed-n
  p-value does not hold its level under repeated looks); with `inference = "fixed"` the
  exact rank interval and the test's p-value are shown. The detail screen shows both
  distributions, the per-session values in session order (drift shows as a slope) and the
  outliers (`▲`: beyond 3 scaled MADs of the median).
- **Metrics**: each metric's last value (Σ total for counters), p95, max, sample count n, and
  its trend over the whole run (each block is the mean of one time bucket).

**Layout.** Below 30 rows (e.g. 80x24) the metrics panel is left out so that the verdict, the
gates and the comparison fit (`t` still opens any metric's timeline); from 160 columns the
panels sit side by side and the charts grow with them.

A viewer started by `perfmon attach` without `--control` is read-only: `q` just leaves, and
`e`, `p` and `f` are refused by the daemon.
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
