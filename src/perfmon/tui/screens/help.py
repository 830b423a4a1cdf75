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
| `q` | stop the run. It asks first ("Stop run X? n sessions will be cancelled": `y` stop, \
`n`/`escape` keep running, `d` detach); then the daemon ends the sessions and writes the \
report, and the viewer exits. While stopping, `q` leaves at once (the run goes on stopping). \
After the run, `q` just quits. `ctrl+c` does the same as `q`. |
| `d` | detach: leave the viewer, the run goes on in the background; `perfmon attach` comes \
back, `perfmon stop` stops it. `ctrl+q` does the same. |
| `e` | write the report now, without stopping. |
| `p` | pause launching new sessions / resume (running sessions go on). |
| `f` | profile the selected session (or the running one) with py-spy for 5 s. |
| `g` | open the flame screen: each profile (session, workload/variant), each workload's \
variants merged ("all tgat/baseline"), and per workload the baseline-vs-candidate diff; the \
root process frame is named after the workload so the same function lines up across variants. \
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
| `m` | compare another per-session metric in the comparison panel (`session_seconds` \
first, then CPU seconds, peak RSS and the metrics of `speedup`/`regression` gates). |
| `enter` | on a comparison row: that comparison in detail (escape back). |
| `tab` / `shift+tab` | move between the panels; arrows and page keys scroll the focused one. |
| `ctrl+p` | the command palette: every action above by name (stop, detach, export, pause, \
profile now, flames, timeline, theme, help, ...), and the current screen's own. |
| `?` | this help; `escape` (or `?`) closes it. |

These keys mean the same on every screen: `q` stop (asks), `d` detach, `escape` back, `?` help.

Keys can be remapped in `~/.config/perfmon/keys.toml` (`$XDG_CONFIG_HOME/perfmon/keys.toml`, or \
the file named by `$PERFMON_KEYS`), by binding id (see the table at the end):

```toml
[keys]
stop = "ctrl+x"
"flame.search" = "f3"
```

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
- **Metrics**: each metric's last value, p95, max, sample count n, and its trend over the
  whole run (each block is the mean of one time bucket), in the metric's unit (`1.3 ms`,
  `48 MiB`, `92.7 MB/s`). A counter shows its total and rate (`Σ 1,234 · 41.1/s`), a one-off
  value its value alone; metrics with one value throughout are folded into one last
  "(N constant)" line.


**Layout.** Below 30 rows (e.g. 80x24) the metrics panel is left out so that the verdict, the
gates and the comparison fit (`t` still opens any metric's timeline); from 160 columns the
panels sit side by side and the charts grow with them.

A viewer started by `perfmon attach` without `--control` is read-only: `q` says so, `d`
leaves, and `e`, `p`, `f` and `l` are refused by the daemon.
"""


def bindings_table(keymap: dict[str, str] | None = None) -> str:
    """A Markdown table of every binding id with its keys (after ``keymap``) and what it does.

    Args:
        keymap: the keymap in force (``App._keymap``); None for the default keys.
    """
    from perfmon.tui.keymap import describe, known_bindings

    rows = [
        "## Binding ids (for keys.toml)",
        "",
        "| id | keys | where | what |",
        "|---|---|---|---|",
    ]
    for info in describe(known_bindings(), keymap or {}):
        what = info.description.replace("|", "\\|")
        rows.append(f"| `{info.id}` | `{info.keys}` | {info.scope} | {what} |")
    return "\n".join(rows) + "\n"


class HelpScreen(ModalScreen[None]):
    """A modal listing the viewer's keys, the binding ids and what its panels show.

    ``escape`` or ``?`` closes it (``q`` does not: it means "stop the run" everywhere else).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "escape,question_mark",
            "dismiss",
            "Close",
            id="help.close",
            key_display="esc",
            tooltip="Close the help",
        ),
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
            keymap = dict(getattr(self.app, "_keymap", {}) or {})
            yield Markdown(HELP_TEXT + "\n" + bindings_table(keymap))
