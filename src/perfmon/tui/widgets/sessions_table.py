"""The sessions panel: one row per session, keyed by id, following the newest running one."""

from __future__ import annotations

from typing import ClassVar

from perfmon.core.model import SessionStatus
from perfmon.core.snapshot import SessionRow
from perfmon.core.units import format_bytes, format_seconds
from perfmon.tui.widgets.keyed_table import Cell, Column, KeyedTable

_STATUS_ROLE: dict[str, str] = {
    SessionStatus.OK.value: "success",
    SessionStatus.RUNNING.value: "accent",
    SessionStatus.PENDING.value: "muted",
    SessionStatus.CANCELLED.value: "warning",
    SessionStatus.NOISY.value: "warning",
    SessionStatus.EXIT.value: "error",
    SessionStatus.SIGNAL.value: "error",
    SessionStatus.TIMEOUT.value: "error",
    SessionStatus.START_FAILED.value: "error",
}


def status_role(status: str) -> str:
    """Return the style role of a ``SessionStatus`` value (failures are "error")."""
    return _STATUS_ROLE.get(status, "error")


class SessionsTable(KeyedTable[SessionRow]):
    """Sessions in schedule order: id, workload, variant, set, params, status, wall, RSS, samples.

    In a narrow panel the names (workload, variant, params, status) are shortened with "…"
    and columns are hidden in this order: params, set, peak RSS, variant, samples; the id,
    status and wall time always show.

    While the user has not scrolled away, the table keeps the newest running session in view
    ("follow"); scrolling back to that row (or the end) turns following on again.
    """

    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("id", "#", justify="right"),
        Column("workload", "workload", fit=True, min_width=10),
        Column("variant", "variant", fit=True, min_width=9, priority=4),
        Column("set", "set", priority=2),
        Column("params", "params", fit=True, min_width=10, priority=1),
        Column("status", "status", fit=True, min_width=10),
        Column("wall", "wall", justify="right"),
        Column("rss", "peak RSS", justify="right", priority=3),
        Column("samples", "samples", justify="right", priority=5),
    )

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.follow = True
        """Keep the newest running session in view; off once the user scrolls elsewhere."""
        self._auto_scroll_y: float | None = None
        self._follow_key: str | None = None

    def key_of(self, item: SessionRow) -> str:
        """Row key: the session id as a string."""
        return str(item.id)

    def cells_of(self, item: SessionRow) -> tuple[Cell, ...]:
        """Cells of one session; pending rows are dimmed, the status cell is coloured."""
        base = "muted" if item.status == SessionStatus.PENDING.value else ""
        wall = format_seconds(item.wall_s) if item.wall_s is not None else "–"
        rss = format_bytes(item.peak_rss_bytes) if item.peak_rss_bytes is not None else "–"
        samples = f"{item.samples:,}"
        samples_role = base
        if item.malformed:
            samples = f"{samples} ⚠{item.malformed:,}"
            samples_role = "warning"
        set_text = f"{item.set_name}*" if item.warmup else item.set_name
        status = Cell(item.status_text, status_role(item.status))
        if item.busy and item.background_share is not None:
            # Ran on a busy machine (perfmon.core.noise): say how busy, in the warning colour.
            status = Cell(f"{item.status_text} ⚠bg {item.background_share:.0%}", "warning")
        return (
            Cell(str(item.id), "muted", "right"),
            Cell(item.workload, base),
            Cell(item.variant, base),
            Cell(set_text, base),
            Cell(item.params, "muted"),
            status,
            Cell(wall, base, "right"),
            Cell(rss, base, "right"),
            Cell(samples, samples_role, "right"),
        )

    def update_sessions(self, rows: tuple[SessionRow, ...]) -> None:
        """Show the sessions of a snapshot and, when following, scroll the newest running one
        into view after the next refresh."""
        self.sync(rows)
        target: str | None = None
        for row in reversed(rows):
            if row.status == SessionStatus.RUNNING.value:
                target = str(row.id)
                break
        if target is None and rows:
            done = [r for r in rows if SessionStatus(r.status).finished]
            target = str(done[-1].id) if done else None
        self._follow_key = target
        if self._auto_scroll_y is not None and self.scroll_y != self._auto_scroll_y:
            # The user moved the view since we last placed it.
            self.follow = False
            self._auto_scroll_y = None
        if self.follow and target is not None:
            self.call_after_refresh(self._scroll_to_follow)

    def after_rebuild(self) -> None:
        """Keep following the newest running session after the columns were rebuilt."""
        if self.follow and self._follow_key is not None:
            self.call_after_refresh(self._scroll_to_follow)

    def _scroll_to_follow(self) -> None:
        key = self._follow_key
        if key is None or key not in self._cells:
            return
        index = self.get_row_index(key)
        visible = max(1, self.scrollable_content_region.height - self.header_height)
        top = int(self.scroll_y)
        if not top <= index < top + visible:
            # Keep a couple of finished rows above the running one for context.
            self.scroll_to(y=max(0, index - visible + 2), animate=False, immediate=True)
        self._auto_scroll_y = self.scroll_y

    def watch_scroll_y(self, old: float, new: float) -> None:
        """Turn following back on when the user scrolls to the end of the table."""
        super().watch_scroll_y(old, new)
        if not self.follow and new >= self.max_scroll_y:
            self.follow = True
            self._auto_scroll_y = None
