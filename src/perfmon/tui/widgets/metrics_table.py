"""The metrics panel: one row per metric with last, p95, max, n and a sparkline of its series."""

from __future__ import annotations

from typing import ClassVar

from perfmon.core.model import MetricKind, metric_dimension
from perfmon.core.snapshot import MetricSummary
from perfmon.core.units import format_quantity
from perfmon.tui.widgets.keyed_table import Cell, Column, KeyedTable
from perfmon.tui.widgets.sparkline import render_sparkline

SPARK_MIN = 12
"""Narrowest sparkline drawn, in cells."""


class MetricsTable(KeyedTable[MetricSummary]):
    """Metrics in snapshot order (sorted by name), keyed by name.

    Values are formatted with their unit (``format_quantity`` with the dimension the name's
    suffix gives). For counters, "last" shows the total (Σ) rather than the last increment.
    The trend column's width follows the panel's width: the sparkline fills what the other
    columns leave.
    """

    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("metric", "metric"),
        Column("last", "last", justify="right"),
        Column("p95", "p95", justify="right"),
        Column("max", "max", justify="right"),
        Column("n", "n", justify="right"),
        Column("trend", "trend"),
    )

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.spark_width = SPARK_MIN
        self._order: dict[str, int] = {}

    def key_of(self, item: MetricSummary) -> str:
        """Row key: the metric's name."""
        return item.name

    def cells_of(self, item: MetricSummary) -> tuple[Cell, ...]:
        """Formatted values and the sparkline of the metric's series."""
        dim = metric_dimension(item.name)

        def fmt(value: float) -> str:
            return format_quantity(value, dim)

        counter = item.kind == MetricKind.COUNTER.value
        last = f"Σ {fmt(item.total)}" if counter else fmt(item.last)
        return (
            Cell(item.name, "bold"),
            Cell(last, "", "right"),
            Cell(fmt(item.p95), "", "right"),
            Cell(fmt(item.max), "", "right"),
            Cell(f"{item.count:,}", "muted", "right"),
            Cell(render_sparkline(item.series, self.spark_width), "accent"),
        )

    def update_metrics(self, metrics: tuple[MetricSummary, ...]) -> None:
        """Show the metrics of a snapshot, keeping the snapshot's order when new ones appear."""
        order = {m.name: i for i, m in enumerate(metrics)}
        added = self.sync(metrics)
        if added and order != self._order and len(self.rows) > 1:
            self.sort("metric", key=lambda text: order.get(text.plain, len(order)))
        self._order = order
        self.fit_sparkline()

    def on_resize(self) -> None:
        """Fit the sparklines to the new width."""
        self.fit_sparkline()

    def fit_sparkline(self) -> None:
        """Give the trend column the width the other columns leave, and redraw the sparklines.

        Does nothing before the table has a size, or when the width did not change.
        """
        if not self.size.width:
            return
        others = sum(
            col.get_render_width(self) for key, col in self.columns.items() if key.value != "trend"
        )
        room = self.scrollable_content_region.width - others - 2 * self.cell_padding
        width = max(SPARK_MIN, room)
        if width == self.spark_width:
            return
        self.spark_width = width
        for key, item in self._items.items():
            cells = self.cells_of(item)
            old = self._cells[key]
            self._cells[key] = cells
            if old[-1] != cells[-1]:
                self.update_cell(key, "trend", self._cell_renderable(cells[-1]), update_width=True)
