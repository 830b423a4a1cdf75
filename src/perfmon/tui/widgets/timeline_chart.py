"""``TimelineChart``: one metric over a window of the run, one column per time bucket.

Each column is a time bucket of the window, drawn as a bar up to the bucket's mean with the
eight Unicode lower-block elements (▁▂▃▄▅▆▇█, so a row holds eight levels), and a thin whisker
(│) from the bar up to the bucket's maximum. Gate changes are vertical markers coloured by the
gate's new state; the cursor column is highlighted. The value axis is labelled in the metric's
unit (``perfmon.core.units.format_metric``: ``92.7 MB/s``, ``1.3 ms``), the time axis in
elapsed ``H:MM:SS`` since the run started. Colours come from theme variables through
component classes.

A metric of one-off values (``MetricKind.VALUE``: a parity diff, a compression ratio, one per
session or one per run) is drawn as points (``points_only``): one ``POINT`` per column that
got a value, at the value's height, and nothing where it got none, so a value emitted once is
a point, not a bar over the time other workloads ran.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from perfmon.core.model import Dimension, MetricKind
from perfmon.core.snapshot import MetricSummary
from perfmon.core.units import format_duration, format_metric, format_quantity

BLOCKS = "▁▂▃▄▅▆▇█"
"""Lower-block elements U+2581..U+2588: one to eight eighths of a cell."""

GUTTER = 10
"""Columns left of the plot: a 9-character value label and the axis line."""

AXIS_ROWS = 2
"""Rows under the plot: the time axis line and its labels."""

TICK_STEPS_S = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
)  # fmt: skip
"""Candidate spacings of time-axis ticks, seconds."""

POINT = "●"
"""The mark of a one-off value (points mode)."""


def points_only(metric: MetricSummary) -> bool:
    """True when a metric is drawn as points: one-off values (``MetricKind.VALUE``), or any
    metric with a single sample."""
    return metric.kind == MetricKind.VALUE.value or metric.count == 1


STATE_CLASS = {
    "pass": "timeline--pass",
    "fail": "timeline--fail",
    "inconclusive": "timeline--inconclusive",
    "pending": "timeline--pending",
}
"""Gate state -> the component class that colours its markers."""


@dataclass(frozen=True, slots=True)
class Columns:
    """A metric reduced to one bucket per chart column.

    Attributes:
        start_s / end_s: the window, seconds since the run started.
        mean / lo / hi: per column, the mean, minimum and maximum of the values that fell in
            it, in the metric's base unit (NaN for an empty column).
        count: per column, how many values fell in it.
    """

    start_s: float
    end_s: float
    mean: np.ndarray[Any, np.dtype[np.float64]]
    lo: np.ndarray[Any, np.dtype[np.float64]]
    hi: np.ndarray[Any, np.dtype[np.float64]]
    count: np.ndarray[Any, np.dtype[np.int64]]

    @property
    def width(self) -> int:
        """Number of columns."""
        return int(self.mean.size)

    def column_of(self, t_s: float) -> int:
        """The column holding time ``t_s`` (seconds since start), clamped to the chart."""
        span = self.end_s - self.start_s
        if self.width == 0 or span <= 0:
            return 0
        col = math.floor((t_s - self.start_s) / span * self.width)
        return min(self.width - 1, max(0, col))

    def column_start(self, col: int) -> float:
        """The time at which column ``col`` starts, seconds since start."""
        return self.start_s + (self.end_s - self.start_s) * col / max(1, self.width)


def bucket_columns(
    t_s: Sequence[float] | np.ndarray[Any, Any],
    values: Sequence[float] | np.ndarray[Any, Any],
    start_s: float,
    end_s: float,
    width: int,
) -> Columns:
    """Reduce (time, value) points to ``width`` equal time buckets over ``[start_s, end_s]``.

    Args:
        t_s: times, seconds since the run started (any order).
        values: one value per time, in the metric's base unit; non-finite values are dropped.
        start_s / end_s: the window, seconds since start (``end_s > start_s``).
        width: number of columns (>= 1).

    Returns:
        The columns: min, max and mean per bucket (NaN where a bucket got no point). A point
        exactly at ``end_s`` falls in the last column.

    Raises:
        ValueError: if ``width`` < 1 or the window is empty, or the arrays differ in length.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    if not end_s > start_s:
        raise ValueError(f"empty window [{start_s}, {end_s}]")
    t = np.asarray(t_s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.shape != v.shape:
        raise ValueError(f"{t.size} times but {v.size} values")
    keep = (t >= start_s) & (t <= end_s) & np.isfinite(v) & np.isfinite(t)
    t, v = t[keep], v[keep]
    idx = np.minimum(((t - start_s) / (end_s - start_s) * width).astype(np.int64), width - 1)
    count = np.bincount(idx, minlength=width).astype(np.int64)
    sums = np.bincount(idx, weights=v, minlength=width)
    mean = np.full(width, np.nan)
    lo = np.full(width, np.nan)
    hi = np.full(width, np.nan)
    filled = count > 0
    mean[filled] = sums[filled] / count[filled]
    if idx.size:
        order = np.argsort(idx, kind="stable")
        sorted_idx, sorted_v = idx[order], v[order]
        starts = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]])
        cols = sorted_idx[starts]
        lo[cols] = np.minimum.reduceat(sorted_v, starts)
        hi[cols] = np.maximum.reduceat(sorted_v, starts)
    return Columns(start_s, end_s, mean, lo, hi, count)


def tick_step(span_s: float, width: int, label_chars: int = 10) -> float:
    """The smallest of ``TICK_STEPS_S`` that leaves ``label_chars`` columns per label.

    Args:
        span_s: the window's length, seconds; width: the plot's width in columns.
        label_chars: the room one time label needs.
    """
    most = max(1, width // label_chars)
    for step in TICK_STEPS_S:
        if span_s / step <= most:
            return float(step)
    return float(math.ceil(span_s / most / 86400) * 86400)


def marker_columns(
    changes: Sequence[dict[str, Any]], started_t: float, columns: Columns
) -> dict[int, str]:
    """The chart columns of gate changes inside the window, with the state each turned to.

    Args:
        changes: ``{t, gate, old, new, ...}`` dicts, ``t`` in Unix seconds, oldest first.
        started_t: the run's start, Unix seconds.
        columns: the chart's columns.

    Returns:
        Column -> new state; where several changes share a column, the latest wins.
    """
    out: dict[int, str] = {}
    for c in changes:
        rel = float(c["t"]) - started_t
        if columns.start_s <= rel <= columns.end_s:
            out[columns.column_of(rel)] = str(c["new"])
    return out


def value_range(columns: Columns) -> tuple[float, float] | None:
    """The value axis ``(bottom, top)`` for the columns, None when they hold no value.

    The axis spans the columns' minimum to maximum; it starts at zero when every value is
    non-negative and the minimum is under a third of the maximum (a bar's height then reads
    as its size), else a little under the minimum so the lowest bar still shows. A flat series
    gets a band around its value.
    """
    if not np.any(columns.count > 0):
        return None
    lo = float(np.nanmin(columns.lo))
    hi = float(np.nanmax(columns.hi))
    if hi - lo <= abs(hi) * 1e-9:
        pad = abs(hi) * 0.1 or 1.0
        return (0.0 if lo >= 0 and lo - pad < 0 else lo - pad), hi + pad
    if lo >= 0 and lo < hi / 3:
        return 0.0, hi
    return lo - (hi - lo) * 0.05, hi


class TimelineChart(Widget):
    """A bar chart of a metric over a window of the run (see the module docstring).

    Call ``show`` to give it data; it draws on its own size. ``plot_width`` is how many
    columns the data should have to fill it.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "timeline--bar",
        "timeline--whisker",
        "timeline--axis",
        "timeline--cursor",
        "timeline--empty",
        *STATE_CLASS.values(),
    }

    DEFAULT_CSS = """
    TimelineChart {
        height: 1fr;
        min-height: 6;
    }
    TimelineChart > .timeline--bar { color: $primary; }
    TimelineChart > .timeline--whisker { color: $foreground-muted; }
    TimelineChart > .timeline--axis { color: $foreground-muted; }
    TimelineChart > .timeline--cursor { background: $accent 35%; }
    TimelineChart > .timeline--empty { color: $foreground-muted; text-style: italic; }
    TimelineChart > .timeline--pass { color: $success; }
    TimelineChart > .timeline--fail { color: $error; }
    TimelineChart > .timeline--inconclusive { color: $warning; }
    TimelineChart > .timeline--pending { color: $foreground-muted; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns: Columns | None = None
        self.markers: dict[int, str] = {}
        self.cursor = 0
        self.dimension = Dimension.NONE
        self.metric = ""
        self.points = False
        self.empty_text = "no data"
        self._lines: list[Strip] | None = None

    @property
    def plot_width(self) -> int:
        """Columns available for data (the widget's content width less the value labels)."""
        return max(1, self.content_size.width - GUTTER)

    @property
    def plot_height(self) -> int:
        """Rows available for data (the content height less the time axis)."""
        return max(1, self.content_size.height - AXIS_ROWS)

    def show(
        self,
        columns: Columns | None,
        *,
        markers: dict[int, str] | None = None,
        cursor: int = 0,
        dimension: Dimension = Dimension.NONE,
        empty_text: str = "no data",
        points: bool = False,
        metric: str = "",
    ) -> None:
        """Draw these columns.

        Args:
            columns: the data (None: nothing to draw; ``empty_text`` is shown).
            markers: column -> gate state of the change marked there.
            cursor: the highlighted column.
            dimension: the metric's dimension, for the value labels.
            empty_text: what to say when there is no value to draw.
            points: draw each column's value as a point, not a bar (``points_only``).
            metric: the metric's name: when given, the value labels are in its unit
                (``format_metric``, which knows rates), else in ``dimension``.
        """
        self.columns = columns
        self.markers = dict(markers or {})
        self.cursor = cursor
        self.dimension = dimension
        self.metric = metric
        self.points = points
        self.empty_text = empty_text
        self._lines = None
        self.refresh()

    class Resized(Message):
        """Posted when the chart's size changed (its owner rebuilds the columns)."""

    def on_resize(self) -> None:
        """Redraw at the new size and tell the owner."""
        self._lines = None
        self.post_message(self.Resized())

    def render_line(self, y: int) -> Strip:
        """One row of the chart (rows are built together and cached until the data changes)."""
        if self._lines is None or len(self._lines) != self.content_size.height:
            self._lines = self._build()
        return self._lines[y] if 0 <= y < len(self._lines) else Strip.blank(self.size.width)

    # -- drawing -------------------------------------------------------------------------

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(name, partial=True)

    def _build(self) -> list[Strip]:
        width, height = self.content_size.width, self.content_size.height
        cols = self.columns
        rng = value_range(cols) if cols is not None else None
        if cols is None or rng is None or height < AXIS_ROWS + 1:
            blank = [Strip.blank(width) for _ in range(height)]
            if height:
                text = self.empty_text[:width].center(width)
                blank[height // 2] = Strip([Segment(text, self._style("timeline--empty"))], width)
            return blank
        rows = height - AXIS_ROWS
        bottom, top = rng
        scale = rows * 8 / (top - bottom)
        n = min(cols.width, max(0, width - GUTTER))
        bar, whisker, axis = (
            self._style("timeline--bar"),
            self._style("timeline--whisker"),
            self._style("timeline--axis"),
        )
        cursor_bg = self._style("timeline--cursor")
        marker_styles = {
            c: self._style(STATE_CLASS.get(s, "timeline--pending")) for c, s in self.markers.items()
        }
        mean_h = [-1.0 if not cols.count[i] else (cols.mean[i] - bottom) * scale for i in range(n)]
        hi_h = [-1.0 if not cols.count[i] else (cols.hi[i] - bottom) * scale for i in range(n)]
        label_rows = {0: top, rows - 1: bottom}
        if rows >= 5:
            label_rows[(rows - 1) // 2] = top - (top - bottom) * ((rows - 1) // 2 + 0.5) / rows
        lines: list[Strip] = []
        for r in range(rows):
            base = (rows - 1 - r) * 8  # eighths below this row
            if r in label_rows:
                label = self._label(label_rows[r])[: GUTTER - 1]
                segs = [Segment(label.rjust(GUTTER - 1) + "┤", axis)]
            else:
                segs = [Segment(" " * (GUTTER - 1) + "│", axis)]
            for i in range(n):
                fill = mean_h[i] - base
                style = marker_styles.get(i, bar)
                if mean_h[i] < 0:
                    ch = " "
                elif self.points:
                    # One point, in the row that holds the value (the top row also the top).
                    top_row = r == 0 and mean_h[i] >= rows * 8
                    ch = POINT if base <= mean_h[i] < base + 8 or top_row else " "
                elif fill >= 1:
                    ch = BLOCKS[min(7, max(0, round(fill) - 1))] if fill < 8 else BLOCKS[7]
                elif base == 0:
                    ch = BLOCKS[0]  # the lowest bar still shows
                elif hi_h[i] - base >= 0.5 and hi_h[i] - mean_h[i] >= 1:
                    ch, style = "│", marker_styles.get(i, whisker)
                else:
                    ch = " "
                if ch == " " and i in marker_styles:
                    ch = "┊"
                if i == self.cursor:
                    style = style + cursor_bg
                segs.append(Segment(ch, style))
            lines.append(Strip(segs, width).extend_cell_length(width))
        lines += self._axis(cols, n, width, axis, marker_styles)
        return lines

    def _label(self, value: float) -> str:
        """A value-axis label in the metric's unit."""
        if self.metric:
            return format_metric(value, self.metric)
        return format_quantity(value, self.dimension)

    def _axis(
        self, cols: Columns, n: int, width: int, axis: Style, marker_styles: dict[int, Style]
    ) -> list[Strip]:
        span = cols.end_s - cols.start_s
        step = tick_step(span, n)
        first = math.ceil(cols.start_s / step) * step
        ticks: list[tuple[int, float]] = []
        t = first
        while t <= cols.end_s + 1e-9:
            col = min(n - 1, math.floor((t - cols.start_s) / span * n)) if span > 0 else 0
            ticks.append((col, t))
            t += step
        line = ["─"] * n
        for col, _ in ticks:
            line[col] = "┬"
        segs = [Segment(" " * (GUTTER - 1) + "└", axis)]
        segs += [
            Segment(
                ch,
                marker_styles.get(i, axis)
                + (self._style("timeline--cursor") if i == self.cursor else Style()),
            )
            for i, ch in enumerate(line)
        ]
        labels = [" "] * (n + GUTTER)
        last_end = -1
        for col, tt in ticks:
            text = format_duration(tt)
            at = GUTTER + col - len(text) // 2
            at = max(GUTTER - 2, min(at, n + GUTTER - len(text)))
            if at <= last_end:
                continue
            labels[at : at + len(text)] = list(text)
            last_end = at + len(text)
        return [
            Strip(segs, width).extend_cell_length(width),
            Strip([Segment("".join(labels), axis)], width).extend_cell_length(width).crop(0, width),
        ]
