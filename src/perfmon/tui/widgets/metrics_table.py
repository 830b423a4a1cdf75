"""The metrics panel: one row per metric with last, p95, max, n and a sparkline of its series.

Numbers are written for people (issue 14): every value in its metric's unit
(``perfmon.core.units.format_metric``: ``1.3 ms``, ``48 MiB``, ``92.7 MB/s``); a counter shows
its total and its rate over the time it was counted (``Σ 1,234 · 41.1/s``), not the p95 or
maximum of its increments; a one-off value (one sample) shows that value alone. Metrics whose
every sample had the same value are folded into one "constant" line at the end, so that they
do not fill the panel with rows whose p95 and max repeat the last value.

The panel can split every metric by a label (issue 11): with a snapshot split by ``variant``
(``Snapshot.split_metrics``), each metric gets one row per value of the label, named as a
PromQL selection, e.g. ``session_seconds{variant="candidate"}``; metrics that have no split
rows (machine-wide ones) keep their pooled row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

from rich.cells import cell_len
from textual.widgets.data_table import ColumnKey, RowKey

from perfmon.core.model import MetricKind
from perfmon.core.snapshot import MetricSummary, Snapshot
from perfmon.core.units import format_counter, format_metric
from perfmon.tui.widgets.keyed_table import Cell, Column, KeyedTable, shorten
from perfmon.tui.widgets.sparkline import render_sparkline

SPARK_MIN = 12
"""Narrowest sparkline drawn, in cells (narrower, the trend column is hidden)."""

METRIC_MIN = 24
"""Narrowest the metric name column is cut to, in cells (room for ``name{variant="…``)."""

CONSTANT_KEY = "·constant"
"""Row key of the folded line of constant metrics (no metric name starts with ``·``)."""

CONSTANT_SHOWN = 6
"""Most constant metrics named on the folded line; the rest are counted."""


def is_constant(item: MetricSummary) -> bool:
    """True for a metric with at least two samples that all had the same value (not a
    counter: a counter's increments of 1 make a total that grows)."""
    return item.count >= 2 and item.min == item.max and item.kind != MetricKind.COUNTER.value


def counter_span_s(item: MetricSummary) -> float:
    """The seconds a counter's increments were counted over (its series' span), 0 if unknown."""
    return item.series_span_s if item.count >= 2 else 0.0


def panel_rows(snapshot: Snapshot) -> list[MetricSummary]:
    """The rows of the metrics panel for a snapshot: each metric (in snapshot order) as its
    split rows when the snapshot is split and has any for it, else as its pooled row; split
    rows of metrics the snapshot does not list come after."""
    if not snapshot.split_label:
        return list(snapshot.metrics)
    by_metric: dict[str, list[MetricSummary]] = {}
    for row in snapshot.split_metrics:
        by_metric.setdefault(row.name, []).append(row)
    out: list[MetricSummary] = []
    for m in snapshot.metrics:
        out.extend(by_metric.pop(m.name, []) or (m,))
    for rows in by_metric.values():
        out.extend(rows)
    return out


def split_subtitle(snapshot: Snapshot) -> str:
    """The panel's subtitle: the number of metrics, and the split with since when it counts."""
    text = f"{len(snapshot.metrics)} metrics"
    if snapshot.split_label:
        text += f" · by {snapshot.split_label}"
        if snapshot.split_since_t > snapshot.started_t + 1.0:
            since = snapshot.split_since_t - snapshot.started_t
            from perfmon.core.units import format_duration

            text += f" since +{format_duration(since)}"
        shown = len(snapshot.split_metrics)
        if snapshot.split_rows_total > shown:
            text += f" ({shown} of {snapshot.split_rows_total:,} rows)"
        if snapshot.split_samples_dropped:
            text += f" · {snapshot.split_samples_dropped:,} samples over the row cap"
    return text


class MetricsTable(KeyedTable[MetricSummary]):
    """Metrics in snapshot order (sorted by name), keyed by name (with labels when split).

    Values are formatted with their unit (``format_metric``). A counter's "last" shows its
    total (Σ) and rate; its p95 and max, which would describe single increments, are blank.
    A one-off value shows its value only. Constant metrics are folded into one line at the
    end (``CONSTANT_KEY``). The trend column's width follows the panel's width: the sparkline
    fills what the other columns leave. In a narrow panel the names are shortened with "…"
    (a split name keeps its metric and the start of its labels) and columns are hidden in
    this order: n, trend, max, p95; the name and last value always show.
    """

    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("metric", "metric", fit=True, min_width=METRIC_MIN),
        Column("last", "last", justify="right"),
        Column("p95", "p95", justify="right", priority=4),
        Column("max", "max", justify="right", priority=3),
        Column("n", "n", justify="right", priority=1),
        Column("trend", "trend", fill=True, min_width=SPARK_MIN, priority=2),
    )

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._order: dict[str, int] = {}
        self._names: dict[str, str] = {}

    @property
    def spark_width(self) -> int:
        """The width of the sparklines in cells (the trend column's)."""
        return self.fill_width("trend")

    def shorten_text(self, column_key: str, text: str, width: int) -> str:
        """A split name keeps its label values when cut (``short_name``)."""
        if column_key == "metric":
            return short_name(text, width)
        return super().shorten_text(column_key, text, width)

    def key_of(self, item: MetricSummary) -> str:
        """Row key: the metric's name, with its labels when the panel is split."""
        return item.display_name()

    def metric_of(self, key: str) -> str | None:
        """The metric name of a row key (None for the folded line of constants)."""
        if key == CONSTANT_KEY:
            return None
        return self._names.get(key, key)

    def cells_of(self, item: MetricSummary) -> tuple[Cell, ...]:
        """Formatted values and the sparkline of the metric's series."""
        if item.name == CONSTANT_KEY:
            text = item.kind
            if len(text) > self.spark_width:
                text = text[: max(1, self.spark_width - 1)] + "…"
            return (
                Cell(f"({item.count} constant)", "muted"),
                Cell("", "", "right"),
                Cell("", "", "right"),
                Cell("", "", "right"),
                Cell("", "muted", "right"),
                Cell(text, "muted"),
            )

        def fmt(value: float) -> str:
            return format_metric(value, item.name)

        name = item.display_name()
        counter = item.kind == MetricKind.COUNTER.value
        if counter:
            last, p95, high = format_counter(item.total, counter_span_s(item), item.name), "", ""
        elif item.count == 1:
            last, p95, high = fmt(item.last), "", ""
        else:
            last, p95, high = fmt(item.last), fmt(item.p95), fmt(item.max)
        spark = render_sparkline(item.series, self.spark_width) if item.count > 1 else ""
        return (
            Cell(name, "bold"),
            Cell(last, "", "right"),
            Cell(p95, "", "right"),
            Cell(high, "", "right"),
            Cell(f"{item.count:,}", "muted", "right"),
            Cell(spark, "accent"),
        )

    def update_metrics(self, metrics: Sequence[MetricSummary]) -> None:
        """Show metric rows (a snapshot's, or ``panel_rows``), keeping their order when new
        ones appear; constant metrics are folded into one last line."""
        shown = [m for m in metrics if not is_constant(m)]
        constants = [m for m in metrics if is_constant(m)]
        if constants:
            shown.append(fold_constants(constants))
        self._names = {m.display_name(): m.name for m in shown}
        order = {m.display_name(): i for i, m in enumerate(shown)}
        added = self.sync(shown)
        if added and order != self._order and len(self.rows) > 1:
            # By row key: the shown name may be shortened (``short_name``).
            rank = {
                id(self._data[RowKey(key)][ColumnKey("metric")]): order.get(key, len(order))
                for key in self._cells
            }
            self.sort("metric", key=lambda text: rank.get(id(text), len(order)))
        self._order = order

    def update_snapshot(self, snapshot: Snapshot) -> None:
        """Show a snapshot's metrics, split by its label when it is split."""
        self.update_metrics(panel_rows(snapshot))


_LABEL_VALUE = re.compile(r'="((?:[^"\\]|\\.)*)"')


def short_name(text: str, width: int) -> str:
    """A metric's display name cut to at most ``width`` cells so that split rows stay told
    apart: ``name{k="v", ...}`` becomes ``name{v, ...}`` (label keys dropped), then
    ``na…{v, ...}`` (the metric name cut), then ``na…{va…}`` (both cut).

    Args:
        text: ``MetricSummary.display_name()``.
        width: cells (>= 1).
    """
    if cell_len(text) <= width:
        return text
    brace = text.find("{")
    if brace <= 0 or not text.endswith("}"):
        return shorten(text, width)
    name = text[:brace]
    values = "{" + ", ".join(_LABEL_VALUE.findall(text[brace:])) + "}"
    if cell_len(name) + cell_len(values) <= width:
        return name + values
    room = width - cell_len(values)
    if room >= 4:
        return shorten(name, room - 1).rstrip("…_") + "…" + values
    # The values alone are too wide: a third for the name, the rest for the values.
    head = shorten(name, min(cell_len(name), max(4, width // 3)))
    inner_room = width - cell_len(head) - 2
    if inner_room < 2:
        return shorten(name + values, width)
    return head + "{" + shorten(values[1:-1], inner_room) + "}"


def fold_constants(constants: Sequence[MetricSummary]) -> MetricSummary:
    """One summary standing for the folded line of constant metrics: its ``kind`` carries the
    text ``name = value, ...`` (at most ``CONSTANT_SHOWN`` named, the rest counted) and its
    ``count`` the number of metrics folded."""
    parts = [f"{m.display_name()} = {format_metric(m.last, m.name)}" for m in constants]
    text = ", ".join(parts[:CONSTANT_SHOWN])
    if len(parts) > CONSTANT_SHOWN:
        text += f", +{len(parts) - CONSTANT_SHOWN} more"
    return MetricSummary(
        name=CONSTANT_KEY,
        kind=text,
        count=len(constants),
        total=0.0,
        last=0.0,
        min=0.0,
        max=0.0,
        mean=0.0,
        p50=0.0,
        p95=0.0,
    )
