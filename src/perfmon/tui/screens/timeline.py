"""The timeline screen: one metric over the whole run, with zoom, and where gates changed state.

Left, the metrics (up/down picks one). Right, the chart (``TimelineChart``), a line on the
cursor's column, and the latest gate changes. The whole-run view is drawn from the snapshot's
downsampled series (``MetricSummary.series``: at most 120 bucket means), which costs nothing.
Zooming in (``+``) around the cursor reads that window's samples from the recording
(``perfmon.engine.recorder.read_run`` on the run directory, which is on the viewer's machine)
in a worker thread and reduces them to one min/max/mean per column; until they arrive the
window is drawn from the series. Gate changes come from ``Snapshot.gate_changes``
(or, for a run recorded before they were published, from ``events.jsonl``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from perfmon.core.model import metric_dimension
from perfmon.core.snapshot import MetricSummary, Snapshot
from perfmon.core.units import format_duration, format_quantity
from perfmon.tui.widgets.timeline_chart import (
    Columns,
    TimelineChart,
    bucket_columns,
    marker_columns,
    points_only,
)

MIN_WINDOW_S = 5.0
"""The narrowest zoom window, seconds."""

CHANGES_SHOWN = 5
"""Gate changes listed under the chart (the latest)."""

RELOAD_AFTER_S = 5.0
"""A cached metric is read again from the recording when a window reaches past what it held
and the run has gone on this long since."""

STATE_VAR = {
    "pass": "$success",
    "fail": "$error",
    "inconclusive": "$warning",
    "pending": "$foreground-muted",
}


def series_points(metric: MetricSummary, started_t: float) -> tuple[list[float], list[float]]:
    """A snapshot metric's series as (seconds since the run started, bucket mean) points.

    Each point sits at its bucket's centre. Without ``series_start_t`` (an older daemon) the
    series is taken to end at the metric's latest bucket, placed at the run's start. Buckets
    that got no sample (``MetricSummary.series_gaps``) are left out: a pause is a gap, and a
    value emitted once is one point, not a block over the time other workloads ran.
    """
    n = len(metric.series)
    if not n:
        return [], []
    width = metric.series_span_s / n
    start = metric.series_start_t - started_t if metric.series_start_t else 0.0
    filled = metric.series_filled()
    t = [start + (i + 0.5) * width for i in range(n) if filled[i]]
    return t, [v for v, f in zip(metric.series, filled, strict=True) if f]


def read_metric(run_dir: Path, metric: str, started_t: float) -> tuple[np.ndarray, np.ndarray]:
    """Read every recorded sample of one metric: (seconds since start, value), sorted by time.

    Raises:
        FileNotFoundError: if ``run_dir`` is not a directory.
    """
    # Lazy: the engine's API imports pyarrow; the viewer starts without it (see its docstring).
    from perfmon.engine.api import metric_samples

    # validated batch by batch; only this metric's samples are kept (sorted by time)
    t, value = metric_samples(run_dir, metric)
    return t - started_t, value


class TimelineScreen(Screen[None]):
    """A metric over the whole run, zoomable, with gate-change markers; escape goes back.

    Args:
        run_dir: the run directory (its recording is read when zoomed in).
        metric: the metric to show first (default: the first of the snapshot's).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="back", tooltip="Back to the run"),
        Binding(
            "left",
            "cursor(-1)",
            "Cursor",
            id="timeline.left",
            key_display="←/→",
            tooltip="Move the cursor left",
        ),
        Binding(
            "right",
            "cursor(1)",
            "Cursor",
            id="timeline.right",
            show=False,
            tooltip="Move the cursor right",
        ),
        Binding("shift+left", "cursor(-10)", "10 columns left", id="timeline.left-10", show=False),
        Binding(
            "shift+right", "cursor(10)", "10 columns right", id="timeline.right-10", show=False
        ),
        Binding(
            "plus,equals_sign",
            "zoom(0.5)",
            "Zoom in",
            id="timeline.zoom-in",
            key_display="+",
            tooltip="Halve the window around the cursor (samples read from the recording)",
        ),
        Binding("minus,underscore", "zoom(2)", "Zoom out", id="timeline.zoom-out", key_display="-"),
        Binding("0", "whole", "Whole run", id="timeline.whole", tooltip="Back to the whole run"),
    ]

    DEFAULT_CSS = """
    TimelineScreen #timeline-metrics {
        width: 30;
        height: 1fr;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        border: round $foreground-muted 50%;
        border-title-color: $foreground-muted;
        &:focus { border: round $primary; border-title-color: $primary; }
    }
    TimelineScreen #timeline-right { width: 1fr; }
    TimelineScreen TimelineChart {
        border: round $foreground-muted 50%;
        border-title-color: $foreground;
        border-subtitle-color: $foreground-muted;
    }
    TimelineScreen #timeline-detail {
        height: 2;
        padding: 0 1;
        color: $foreground;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    TimelineScreen #timeline-changes {
        height: auto;
        max-height: 8;
        padding: 0 1;
        border: round $foreground-muted 50%;
        border-title-color: $foreground-muted;
        color: $foreground;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, run_dir: str | Path, *, metric: str | None = None) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.metric = metric
        self.snapshot: Snapshot | None = None
        self.window: tuple[float, float] | None = None
        """The zoom window, seconds since start; None for the whole run."""
        self.cursor_s = math.inf
        """The cursor's time, seconds since start."""
        self.follow = True
        """Keep the cursor on the newest column as the run goes on (whole-run view)."""
        self.columns: Columns | None = None
        self.zoomed_columns: Columns | None = None
        """The recorded samples of the window, once read (None while reading or whole run)."""
        self.loading = False
        self.load_error = ""
        self._gen = 0
        self._cache: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
        self._file_changes: list[dict[str, Any]] | None = None

    def compose(self) -> ComposeResult:
        """Metrics list; chart, cursor line and gate changes; footer."""
        with Horizontal():
            metrics = OptionList(id="timeline-metrics")
            metrics.border_title = "Metrics"
            yield metrics
            with Vertical(id="timeline-right"):
                chart = TimelineChart(id="timeline-chart")
                chart.border_title = "Timeline"
                yield chart
                yield Static("", id="timeline-detail")
                changes = Static("", id="timeline-changes")
                changes.border_title = "Gate changes"
                yield changes
        yield Footer()

    def on_mount(self) -> None:
        """Show the app's current snapshot and follow new ones."""
        self.query_one(OptionList).focus()
        self.call_after_refresh(self._poll)
        self.set_interval(1.0, self._poll)

    # -- data ------------------------------------------------------------------------------

    def _poll(self) -> None:
        snap = getattr(self.app, "snapshot", None)
        if snap is None or snap is self.snapshot:
            return
        self.snapshot = snap
        self._fill_metrics(snap)
        self._redraw()

    def _fill_metrics(self, snap: Snapshot) -> None:
        names = [m.name for m in snap.metrics]
        if self.metric not in names:
            self.metric = names[0] if names else None
        options = self.query_one(OptionList)
        if [options.get_option_at_index(i).id for i in range(options.option_count)] == names:
            return
        options.clear_options()
        options.add_options([Option(n, id=n) for n in names])
        if self.metric is not None:
            options.highlighted = names.index(self.metric)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        """Show the highlighted metric (over the same window)."""
        if event.option.id and event.option.id != self.metric:
            self.metric = event.option.id
            self.zoomed_columns = None
            self._redraw(reload=True)

    def gate_changes(self) -> list[dict[str, Any]]:
        """The gate changes known: the snapshot's, else those recorded in ``events.jsonl``."""
        snap = self.snapshot
        if snap is not None and snap.gate_changes is not None:
            return [c.to_dict() for c in snap.gate_changes]
        if self._file_changes is None:
            from perfmon.engine.api import read_gate_changes  # lazy, as in read_metric

            self._file_changes = read_gate_changes(self.run_dir)[0]
        return self._file_changes

    def run_span(self) -> float:
        """Seconds from the run's start to the snapshot's time (at least ``MIN_WINDOW_S``)."""
        snap = self.snapshot
        return max(MIN_WINDOW_S, snap.elapsed_s if snap is not None else 0.0)

    def _summary(self) -> MetricSummary | None:
        snap = self.snapshot
        if snap is None:
            return None
        return next((m for m in snap.metrics if m.name == self.metric), None)

    def _redraw(self, *, reload: bool = False) -> None:
        snap = self.snapshot
        chart = self.query_one(TimelineChart)
        summary = self._summary()
        if snap is None or summary is None:
            chart.show(None, empty_text="no metrics yet")
            self._show_detail()
            return
        start, end = self.window if self.window is not None else (0.0, self.run_span())
        width = chart.plot_width
        if self.window is not None and self.zoomed_columns is not None and not reload:
            cols = self.zoomed_columns
        else:
            t, v = series_points(summary, snap.started_t)
            cols = bucket_columns(t, v, start, end, width)
            if self.window is not None and reload:
                self._load_window(self.metric or "", start, end, width, self._next_gen())
        self.columns = cols
        if (self.window is None and self.follow) or not start <= self.cursor_s <= end:
            self.cursor_s = self._newest_time(cols)
        cursor = cols.column_of(self.cursor_s)
        chart.show(
            cols,
            markers=marker_columns(self.gate_changes(), snap.started_t, cols),
            cursor=cursor,
            dimension=metric_dimension(summary.name),
            empty_text=f"no samples of {summary.name} in this window",
            points=points_only(summary),
            metric=summary.name,
        )
        chart.border_title = summary.name
        view = "whole run" if self.window is None else "zoomed"
        chart.border_subtitle = f"{view} {format_duration(start)}–{format_duration(end)}" + (
            " · reading recording…" if self.loading else ""
        )
        self._show_detail()
        self._show_changes(start, end)

    @staticmethod
    def _newest_time(cols: Columns) -> float:
        filled = np.flatnonzero(cols.count > 0)
        col = int(filled[-1]) if filled.size else cols.width - 1
        return cols.column_start(col) + (cols.end_s - cols.start_s) / max(1, cols.width) / 2

    def _next_gen(self) -> int:
        self._gen += 1
        self.loading = True
        self.load_error = ""
        return self._gen

    @work(thread=True, exclusive=True, group="timeline-zoom")
    def _load_window(self, metric: str, start: float, end: float, width: int, gen: int) -> None:
        """Read the window's samples from the recording and reduce them to ``width`` columns."""
        worker = get_current_worker()
        snap = self.snapshot
        started_t = snap.started_t if snap is not None else 0.0
        now = snap.elapsed_s if snap is not None else 0.0
        try:
            cached = self._cache.get(metric)
            if cached is None or (end > cached[2] and now - cached[2] >= RELOAD_AFTER_S):
                t, v = read_metric(self.run_dir, metric, started_t)
                cached = (t, v, now)
                self._cache = {metric: cached}  # one metric at a time: bounded memory
            t, v, _ = cached
            if not t.size:
                raise LookupError(f"the recording has no samples of {metric}")
            lo, hi = (
                np.searchsorted(t, [start, end], side="left")[0],
                np.searchsorted(t, end, side="right"),
            )
            cols = bucket_columns(t[lo:hi], v[lo:hi], start, end, width)
            error = ""
        except Exception as exc:  # a damaged or missing recording: say so, keep the series
            cols, error = None, f"{exc}; showing the live series"
        if not worker.is_cancelled:
            self.app.call_from_thread(self._window_loaded, gen, cols, error)

    def _window_loaded(self, gen: int, cols: Columns | None, error: str) -> None:
        if gen != self._gen or self.window is None:
            return
        self.loading = False
        self.load_error = error
        self.zoomed_columns = cols
        self._redraw()

    # -- text ------------------------------------------------------------------------------

    def _show_detail(self) -> None:
        detail = self.query_one("#timeline-detail", Static)
        cols, summary = self.columns, self._summary()
        if cols is None or summary is None:
            detail.update("")
            return
        dim = metric_dimension(summary.name)
        col = cols.column_of(self.cursor_s)
        t0 = cols.column_start(col)
        t1 = cols.column_start(col + 1)
        at = f"[b]{format_duration(t0)}[/b]–{format_duration(t1)}"
        if cols.count[col]:
            source = "samples" if self.zoomed_columns is cols else "buckets"
            values = (
                f"mean {format_quantity(float(cols.mean[col]), dim)} · "
                f"min {format_quantity(float(cols.lo[col]), dim)} · "
                f"max {format_quantity(float(cols.hi[col]), dim)} · "
                f"{int(cols.count[col]):,} {source}"
            )
        else:
            values = "[$foreground-muted]nothing recorded here[/]"
        hint = self.load_error or (
            "whole run from the live series; + zooms in around the cursor (reads the recording)"
            if self.window is None
            else "recorded samples, min/max/mean per column; - zooms out, 0 whole run"
        )
        detail.update(f"{at}  {values}\n[$foreground-muted]{hint}[/]")

    def _show_changes(self, start: float, end: float) -> None:
        box = self.query_one("#timeline-changes", Static)
        snap = self.snapshot
        changes = self.gate_changes()
        if snap is None or not changes:
            box.update("[$foreground-muted]no gate has changed state yet[/]")
            box.border_subtitle = ""
            return
        lines = []
        for c in changes[-CHANGES_SHOWN:]:
            rel = float(c["t"]) - snap.started_t
            colour = STATE_VAR.get(str(c["new"]), "$foreground")
            dim = "" if start <= rel <= end else "[dim]"
            lines.append(
                f"{dim}{format_duration(rel)}  [b]{_escape(str(c['gate']))}[/b]  "
                f"{_escape(str(c['old']))} → [{colour}]{_escape(str(c['new']))}[/]"
                f"  [$foreground-muted]{_escape(str(c.get('reason', '')))}[/]"
                + ("[/dim]" if dim else "")
            )
        box.update("\n".join(lines))
        box.border_subtitle = f"{len(changes)} in all"

    # -- actions ---------------------------------------------------------------------------

    def action_back(self) -> None:
        """Back to the run."""
        self.app.pop_screen()

    def action_cursor(self, step: int) -> None:
        """Move the cursor ``step`` columns; past the window's edge the window pans."""
        cols = self.columns
        if cols is None or not cols.width:
            return
        col = cols.column_of(self.cursor_s) + step
        col_s = (cols.end_s - cols.start_s) / cols.width
        if 0 <= col < cols.width or self.window is None:
            col = min(cols.width - 1, max(0, col))
            self.cursor_s = cols.column_start(col) + col_s / 2
            self.follow = self.window is None and col >= cols.column_of(self._newest_time(cols))
            self._redraw()
            return
        start, end = self.window
        shift = (end - start) / 4 * (1 if step > 0 else -1)
        shift = max(-start, min(shift, self.run_span() - end))
        if shift == 0:
            return
        self.window = (start + shift, end + shift)
        self.cursor_s = min(max(self.cursor_s + step * col_s, start + shift), end + shift)
        self.zoomed_columns = None
        self._redraw(reload=True)

    def action_zoom(self, factor: float) -> None:
        """Scale the window by ``factor`` around the cursor (0.5 zooms in, 2 out)."""
        total = self.run_span()
        start, end = self.window if self.window is not None else (0.0, total)
        span = min(total, max(MIN_WINDOW_S, (end - start) * factor))
        if span >= total:
            self.action_whole()
            return
        if span == end - start:
            return
        centre = self.cursor_s if math.isfinite(self.cursor_s) else (start + end) / 2
        new_start = min(max(0.0, centre - span / 2), total - span)
        self.window = (new_start, new_start + span)
        self.zoomed_columns = None
        self.follow = False
        self._redraw(reload=True)

    def action_whole(self) -> None:
        """Back to the whole run (from the live series)."""
        self.window = None
        self.zoomed_columns = None
        self.follow = True
        self.loading = False
        self._gen += 1
        self._redraw()

    def on_timeline_chart_resized(self) -> None:
        """Rebuild the columns for the chart's new width."""
        if self.snapshot is not None:
            self.zoomed_columns = None
            self._redraw(reload=True)

    def refresh_now(self) -> None:
        """Redraw from the newest snapshot at once (tests and callers that cannot wait)."""
        self.snapshot = None
        self._poll()


def _escape(text: str) -> str:
    from textual.markup import escape

    return escape(text)
