"""One comparison in detail: both distributions, the per-session values in order, outliers.

Opened with enter on a row of the comparison panel. It shows, for the chosen (set, workload,
matrix values) group and metric:

- each ratio against the reference with its state, interval method, level, n and p-value (as
  computed by the daemon: ``perfmon.engine.live_compare``);
- each variant's distribution: a wide box plot on the group's common scale, a histogram of
  its values (the values the snapshot carries) in ``HIST_BINS``-free cells on the same scale,
  and its median, quartiles, range and outlier count (beyond 3 scaled MADs over all its n);
- the per-session values in session order, as a sparkline per variant (drift shows as a
  slope) with outliers marked ``▲`` beneath, and as a table (outliers flagged).

The screen follows the live run: the app hands it each new panel (``update_panel``).
"""

from __future__ import annotations

import math
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from perfmon.core.model import metric_dimension
from perfmon.core.snapshot import ComparisonPanel, ComparisonRow, ComparisonSide
from perfmon.core.units import format_quantity
from perfmon.tui.widgets.comparison import box_plot, group_label, ratio_cell, row_scale
from perfmon.tui.widgets.sparkline import render_sparkline

OUTLIER_Z = 3.0
"""Outlier mark: |modified z| > 3, i.e. beyond 3 scaled MADs (``perfmon.engine.live_compare``)."""

BARS = " ▁▂▃▄▅▆▇█"


def histogram(values: tuple[float, ...], low: float, high: float, width: int) -> str:
    """A one-line histogram of ``values`` on ``[low, high]`` in ``width`` cells (bar height =
    count in the cell's bin, scaled to the fullest bin)."""
    if width < 1 or not values:
        return " " * max(width, 0)
    counts = [0] * width
    span = high - low
    for v in values:
        if not math.isfinite(v):
            continue
        i = (width - 1) // 2 if not span > 0 else round((v - low) / span * (width - 1))
        counts[min(width - 1, max(0, i))] += 1
    top = max(counts) or 1
    return "".join(BARS[0 if c == 0 else max(1, round(c / top * 8))] for c in counts)


def outlier_flags(side: ComparisonSide) -> list[bool]:
    """Which of the side's carried values are beyond ``OUTLIER_Z`` scaled MADs of their median
    (``perfmon.core.stats.modified_z_scores``)."""
    from perfmon.core.stats import modified_z_scores

    return [abs(z) > OUTLIER_Z for z in modified_z_scores(side.values)]


def marks_line(flags: list[bool], width: int) -> str:
    """``▲`` under the sparkline cells holding an outlier (values mapped to cells as
    ``render_sparkline`` does when there are more values than cells)."""
    n = len(flags)
    if n == 0 or width < 1:
        return ""
    if n <= width:
        return "".join("▲" if f else " " for f in flags).rstrip()
    cells = [" "] * width
    for i, f in enumerate(flags):
        if f:
            cells[min(width - 1, i * width // n)] = "▲"
    return "".join(cells).rstrip()


def stretch(
    values: tuple[float, ...], flags: list[bool], width: int
) -> tuple[tuple[float, ...], list[bool]]:
    """Repeat each value (and its outlier flag) so that a few sessions fill about ``width``
    cells of a sparkline; more values than cells are returned as they are."""
    n = len(values)
    if n == 0 or n >= width:
        return values, flags
    k = max(1, width // n)
    return (
        tuple(v for v in values for _ in range(k)),
        [f for f in flags for _ in range(k)],
    )


class ComparisonScreen(Screen[None]):
    """The detail of one comparison row (see the module docstring).

    Args:
        panel: the panel the row comes from; ``key``: the row's ``ComparisonRow.key``.

    Raises:
        Nothing: a row that vanishes from later panels keeps its last values on screen.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="comparison.back", tooltip="Back"),
    ]

    DEFAULT_CSS = """
    ComparisonScreen > VerticalScroll {
        height: 1fr;
        padding: 0 1;
    }
    ComparisonScreen #cmp-summary, ComparisonScreen #cmp-dist, ComparisonScreen #cmp-order {
        border: round $foreground-muted 50%;
        border-title-color: $foreground-muted;
        height: auto;
        padding: 0 1;
    }
    ComparisonScreen #cmp-values {
        border: round $foreground-muted 50%;
        border-title-color: $foreground-muted;
        height: auto;
        max-height: 24;
    }
    """

    def __init__(self, panel: ComparisonPanel, key: str) -> None:
        super().__init__()
        self.key = key
        self.row: ComparisonRow | None = next((r for r in panel.rows if r.key == key), None)
        self.panel = panel

    def compose(self) -> ComposeResult:
        """Summary, distributions, values in order, values table, footer."""
        with VerticalScroll():
            yield Static(id="cmp-summary")
            yield Static(id="cmp-dist")
            yield Static(id="cmp-order")
            yield DataTable(id="cmp-values", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        """Fill the screen from the row."""
        self.query_one("#cmp-summary").border_title = "Comparison"
        self.query_one("#cmp-dist").border_title = "Distributions (common scale)"
        self.query_one("#cmp-order").border_title = "Per-session values in session order"
        self.query_one("#cmp-values").border_title = "Values (▲ beyond 3 MADs)"
        self._draw()

    def on_resize(self) -> None:
        """Redraw the plots at the new width."""
        self._draw()

    def update_panel(self, panel: ComparisonPanel) -> None:
        """Follow a newer panel (the same row, with more sessions)."""
        row = next((r for r in panel.rows if r.key == self.key), None)
        if row is None or row == self.row:
            return
        self.panel, self.row = panel, row
        self._draw()

    def _role_style(self, role: str) -> str:
        """A cell role as a Rich style from the current theme's colours (so every theme works)."""
        theme = self.app.current_theme
        colour = {"success": theme.success, "error": theme.error, "warning": theme.warning}
        if colour.get(role):
            return f"bold {colour[role]}" if role == "error" else str(colour[role])
        return "dim" if role == "muted" else ""

    def _plot_width(self, label: int) -> int:
        width = self.size.width or 80
        return max(10, width - label - 8)

    def _draw(self) -> None:
        row = self.row
        summary = self.query_one("#cmp-summary", Static)
        if row is None:
            summary.update("this comparison is not in the snapshot any more")
            return
        dim = metric_dimension(row.metric)

        def fmt(x: float | None) -> str:
            return format_quantity(x, dim)

        with_set = len({r.set_name for r in self.panel.rows}) > 1
        title = Text()
        title.append(f"{group_label(row, with_set) or row.workload}", style="bold")
        title.append(f" · {row.metric}")
        if not with_set:
            title.append(f" · set {row.set_name}")
        lines = [title]
        for r in row.ratios:
            cell = ratio_cell(r, row.metric)
            line = Text(f"{r.variant} vs {r.against}: ")
            line.append(cell.text, style=self._role_style(cell.role))
            lines.append(line)
            if r.method:
                lines.append(Text(f"  {r.method}", style="dim"))
        how = (
            "anytime-valid (valid at every look)"
            if self.panel.inference == "anytime"
            else ("fixed-n (provisional until the planned n)")
        )
        lines.append(
            Text(
                f"inference: {how}; a ratio needs {self.panel.min_sessions} sessions per side",
                style="dim",
            )
        )
        summary.update(Text("\n").join(lines))

        label = max((len(s.variant) for s in row.sides), default=8) + 1
        width = self._plot_width(label)
        low, high = row_scale(row)
        dist: list[Text] = [Text(f"{'':{label}}{fmt(low)} … {fmt(high)}", style="dim")]
        for side in row.sides:
            dist.append(Text(f"{side.variant:<{label}}") + Text(box_plot(side, low, high, width)))
            dist.append(
                Text(f"{'':{label}}") + Text(histogram(side.values, low, high, width), style="dim")
            )
            dist.append(
                Text(
                    f"{'':{label}}median {fmt(side.median)}, IQR {fmt(side.q1)} – {fmt(side.q3)}, "
                    f"range {fmt(side.low)} – {fmt(side.high)}, n = {side.n:,}, "
                    f"{side.outliers} outlier{'s' if side.outliers != 1 else ''}",
                    style="dim",
                )
            )
        self.query_one("#cmp-dist", Static).update(Text("\n").join(dist))

        order: list[Text] = []
        for side in row.sides:
            values, flags = stretch(side.values, outlier_flags(side), width)
            spark_w = min(width, max(1, len(values)))
            order.append(
                Text(f"{side.variant:<{label}}")
                + Text(render_sparkline(values, spark_w), style="bold")
            )
            marks = marks_line(flags, spark_w)
            if marks:
                order.append(Text(f"{'':{label}}{marks}", style=self._role_style("error")))
            shown = len(side.values)
            more = f" (latest {shown} of {side.n:,})" if shown < side.n else ""
            span = ""
            if side.values:
                span = f", {fmt(min(side.values))} to {fmt(max(side.values))} (own scale)"
            order.append(Text(f"{'':{label}}{shown} sessions{more}{span}", style="dim"))
        self.query_one("#cmp-order", Static).update(Text("\n").join(order))

        table = self.query_one("#cmp-values", DataTable)
        table.clear(columns=True)
        table.add_column("#", key="i")
        for side in row.sides:
            table.add_column(side.variant, key=side.variant)
        marked = {s.variant: outlier_flags(s) for s in row.sides}
        depth = max((len(s.values) for s in row.sides), default=0)
        for i in range(depth):
            cells: list[Text] = [Text(str(i + 1), style="dim")]
            for side in row.sides:
                if i < len(side.values):
                    mark = " ▲" if marked[side.variant][i] else ""
                    cells.append(Text(fmt(side.values[i]) + mark, justify="right"))
                else:
                    cells.append(Text(""))
            table.add_row(*cells)


__all__ = ["ComparisonScreen", "histogram", "marks_line", "outlier_flags", "stretch"]
