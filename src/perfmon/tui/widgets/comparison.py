"""The comparison panel: each variant against the reference, per group, for one metric.

One row per (group, variant) of ``Snapshot.comparison`` (``perfmon.core.snapshot.ComparisonPanel``,
computed by the daemon): the group on its first row, the variant, its median and n, the ratio
against the reference in the metric's own direction with its state, and a box plot of its
per-session values on a scale common to the group's variants. Nothing is computed here but
text: the numbers and their states come from the daemon (``perfmon.engine.live_compare``).

The box plot (``box_plot``) draws whiskers from the minimum to the maximum as ``─``, the
interquartile box as ``▒`` and the median as ``█``; its width follows the panel's width, like
the metrics panel's sparklines.
"""

from __future__ import annotations

import math
from typing import ClassVar, NamedTuple

from perfmon.core.model import metric_dimension
from perfmon.core.snapshot import ComparisonPanel, ComparisonRatio, ComparisonRow, ComparisonSide
from perfmon.core.units import format_quantity
from perfmon.tui.widgets.keyed_table import Cell, Column, KeyedTable

BOX_MIN = 6
"""Narrowest box plot drawn, in cells."""

BOX_MAX = 60
"""Widest box plot drawn in the panel, in cells."""

CHANGE_MIN = 22
"""Narrowest the change column is cut to, in cells: the marker, the ratio and its interval
(``● 1.23× [1.10, 1.40]``) still show whole; the p-value and the words are cut at a space."""

STATE_MARKS: dict[str, str] = {
    "decided": "●",
    "undecided": "?",
    "provisional": "~",
    "pending": "…",
}
"""A ratio's state -> its marker (the state is also said in words where it is not decided)."""

STATE_WORDS: dict[str, str] = {
    "decided": "",
    "undecided": "no clear change yet",
    "provisional": "provisional",
    "pending": "",
}


def box_plot(side: ComparisonSide, low: float, high: float, width: int) -> str:
    """A text box plot of one side on the scale ``[low, high]``, ``width`` cells wide.

    ``─`` spans min to max (whiskers), ``▒`` the quartiles, ``█`` the median; cells outside
    the side's range are spaces. A scale of zero width (every value equal) puts the median in
    the middle.

    Args:
        side: the variant's summary (None statistics give an empty plot).
        low / high: the scale, in the metric's base unit (the group's min and max).
        width: cells (>= 1).

    Raises:
        ValueError: if ``width`` < 1.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    if side.median is None or side.low is None or side.high is None:
        return " " * width
    q1 = side.q1 if side.q1 is not None else side.median
    q3 = side.q3 if side.q3 is not None else side.median
    span = high - low

    def pos(x: float) -> int:
        if not span > 0 or not math.isfinite(x):
            return (width - 1) // 2
        return min(width - 1, max(0, round((x - low) / span * (width - 1))))

    cells = [" "] * width
    for i in range(pos(side.low), pos(side.high) + 1):
        cells[i] = "─"
    for i in range(pos(q1), pos(q3) + 1):
        cells[i] = "▒"
    cells[pos(side.median)] = "█"
    return "".join(cells)


def row_scale(row: ComparisonRow) -> tuple[float, float]:
    """The common scale of a row's box plots: its sides' min and max (0, 0 when empty)."""
    lows = [s.low for s in row.sides if s.low is not None]
    highs = [s.high for s in row.sides if s.high is not None]
    if not lows or not highs:
        return (0.0, 0.0)
    return (min(lows), max(highs))


def group_label(row: ComparisonRow, with_set: bool, with_workload: bool = True) -> str:
    """``"pipeline size=1"``: the set when the panel has several, the workload when it has
    several (or the row has no matrix values), and the matrix values."""
    parts = [row.set_name] if with_set else []
    if with_workload or not row.params:
        parts.append(row.workload)
    if row.params:
        parts.append(row.params)
    return " ".join(parts)


def ratio_cell(ratio: ComparisonRatio, metric: str, finished: bool = False) -> Cell:
    """The change column for a candidate: marker, ratio text, p-value and state in words
    (an undecided ratio of a finished run is "no clear change", not "... yet").

    Colour: success for a decided improvement, error for a decided regression, warning while
    provisional, muted while pending or undecided.
    """
    from perfmon.core.stats import format_p

    mark = STATE_MARKS.get(ratio.state, "?")
    text = f"{mark} {ratio.text}"
    if ratio.p_value is not None:
        text += f" {format_p(ratio.p_value)}"
    word = STATE_WORDS.get(ratio.state, ratio.state)
    if finished and ratio.state == "undecided":
        word = "no clear change"
    if word:
        text += f" ({word})"
    if ratio.state == "decided" and ratio.factor is not None:
        role = "success" if ratio.factor >= 1.0 else "error"
    elif ratio.state == "provisional":
        role = "warning"
    else:
        role = "muted"
    return Cell(text, role)


class ComparisonItem(NamedTuple):
    """One row of the table: a variant of a comparison row (hashable, compared by value).

    Attributes:
        key: the table's row key (``row.key`` + ``|`` + variant).
        group: the group's label on the group's first row, "" on the others.
        row: the comparison row; ``side``: this variant's side.
        ratio: this variant against the reference, None for the reference itself.
        scale: the row's common scale ``(low, high)``.
        finished: the run has ended (no more sessions will come).
    """

    key: str
    group: str
    row: ComparisonRow
    side: ComparisonSide
    ratio: ComparisonRatio | None
    scale: tuple[float, float]
    finished: bool = False


def items_of(
    panel: ComparisonPanel | None, metric: str, finished: bool = False
) -> list[ComparisonItem]:
    """The table's rows for one metric of a panel, in group order, the reference first.

    Args:
        panel: the snapshot's panel, or None (no rows).
        metric: which of ``panel.metrics`` to show.
        finished: the run has ended.
    """
    if panel is None:
        return []
    rows = panel.rows_of(metric)
    with_set = len({r.set_name for r in panel.rows}) > 1
    with_workload = len({r.workload for r in panel.rows}) > 1
    out: list[ComparisonItem] = []
    for row in rows:
        ratios = {r.variant: r for r in row.ratios}
        scale = row_scale(row)
        for i, side in enumerate(row.sides):
            out.append(
                ComparisonItem(
                    key=f"{row.key}|{side.variant}",
                    group=group_label(row, with_set, with_workload) if i == 0 else "",
                    row=row,
                    side=side,
                    ratio=ratios.get(side.variant),
                    scale=scale,
                    finished=finished,
                )
            )
    return out


class ComparisonTable(KeyedTable[ComparisonItem]):
    """The comparison panel's table (see the module docstring); ``show`` applies a panel."""

    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("group", "group", fit=True, min_width=10),
        Column("variant", "variant", fit=True, min_width=9),
        Column("median", "median", justify="right"),
        Column("n", "n", justify="right", priority=1),
        Column("change", "vs reference", fit=True, min_width=CHANGE_MIN),
        Column("dist", "dist", fill=True, min_width=BOX_MIN, max_width=BOX_MAX, priority=2),
    )

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.metric = ""

    @property
    def box_width(self) -> int:
        """The width of the box plots in cells (the dist column's)."""
        return self.fill_width("dist")

    def key_of(self, item: ComparisonItem) -> str:
        """Row key: the comparison row's key and the variant."""
        return item.key

    def cells_of(self, item: ComparisonItem) -> tuple[Cell, ...]:
        """Group, variant, median, n, change against the reference, box plot."""
        dim = metric_dimension(item.row.metric)
        side = item.side
        if item.ratio is None:
            change = Cell("reference", "muted")
        else:
            change = ratio_cell(item.ratio, item.row.metric, item.finished)
        n = f"{side.n:,}"
        return (
            Cell(item.group, "bold"),
            Cell(side.variant, "primary" if item.ratio is None else ""),
            Cell(format_quantity(side.median, dim), "", "right"),
            Cell(n, "muted", "right"),
            change,
            Cell(box_plot(side, *item.scale, self.box_width), "accent"),
        )

    def show(self, panel: ComparisonPanel | None, metric: str, finished: bool = False) -> None:
        """Show one metric of a panel (rows of another metric shown before are removed);
        ``finished``: the run has ended."""
        self.metric = metric
        self.sync(items_of(panel, metric, finished))

    def row_at_cursor(self) -> ComparisonRow | None:
        """The comparison row of the cursor's line, or None."""
        if not self.row_count or self.cursor_row < 0:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        item = self._items.get(str(key))
        return None if item is None else item.row


def panel_subtitle(panel: ComparisonPanel | None, metric: str) -> str:
    """The panel's subtitle: the metric, the inference, what is not shown, and the keys."""
    if panel is None:
        return "needs two variants with finished sessions"
    how = (
        f"{panel.confidence:.0%} anytime-valid"
        if panel.inference == "anytime"
        else f"{panel.confidence:.0%} fixed-n"
    )
    parts = [metric, how]
    if panel.rows_total > len(panel.rows):
        parts.append(f"{panel.rows_total - len(panel.rows)} rows not shown")
    if len(panel.metrics) > 1:
        parts.append("m: metric")
    parts.append("enter: detail")
    return " · ".join(parts)


__all__ = [
    "BOX_MIN",
    "ComparisonItem",
    "ComparisonTable",
    "box_plot",
    "group_label",
    "items_of",
    "panel_subtitle",
    "ratio_cell",
    "row_scale",
]
