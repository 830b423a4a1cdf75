"""A ``DataTable`` updated from snapshots by keyed diff: new rows added, changed cells updated.

Rows are never rebuilt per tick. Each row has a key (a session id, a gate name, a metric name);
each cell is described by a ``Cell`` (text, style role, justification). On every snapshot the
table compares the new item with the one it shows and calls ``update_cell`` only for cells whose
description changed. Colours come from component classes styled with theme variables, so every
theme works; on a theme change all cells are re-styled once.

Two costs of Textual's ``DataTable`` matter at a few snapshots a second (measured with
``bench/viewer_cpu.py`` and py-spy): any ``update_cell`` invalidates every rendered cell of the
table (its caches are keyed by an update counter), and ``update_cell(update_width=True)``
re-measures the whole column whenever a value gets narrower. So a column here only grows (a
cell is re-measured only when its text is wider than the column), a changed row repaints only
that row, and the table keeps its own cache of rendered cells keyed by the cell's description,
so an update re-renders only the cells that changed.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import ClassVar, Generic, NamedTuple, TypeVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.theme import Theme
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

T = TypeVar("T", bound=Hashable)

CELL_CACHE_SIZE = 4096
"""Rendered cells kept per table (a 100x30 screen shows about 150 table cells)."""

ROLES = ("success", "error", "warning", "accent", "muted", "primary", "bold")
"""Style roles a cell may take; each maps to the component class ``perfmon--<role>``."""


class Cell(NamedTuple):
    """The description of one table cell.

    Attributes:
        text: the plain text shown (never parsed as markup).
        role: one of ``ROLES``, or "" for the table's own colour.
        justify: "left" or "right" (numbers are right-justified).
    """

    text: str
    role: str = ""
    justify: str = "left"


class Column(NamedTuple):
    """A column of a keyed table: its key, header label and fixed width (None: automatic).

    ``fit``: the column takes the width the other columns leave (at least ``FIT_MIN``), and a
    text wider than that is cut at the last space that fits, with ``…`` (``shorten``), so a
    number is never cut in the middle at the panel's edge. At most one column fits.
    """

    key: str
    label: str
    width: int | None = None
    justify: str = "left"
    fit: bool = False


FIT_MIN = 12
"""Narrowest width a ``fit`` column is given, in cells."""


def shorten(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` cells at the last space that fits, ending in ``…``.

    A text that fits is returned as is; one with no space early enough is cut at ``width - 1``
    cells (a single long word cannot be kept whole).

    Args:
        text: one line.
        width: cells (>= 1).
    """
    if cell_len(text) <= width:
        return text
    room = width - 1  # for the ellipsis
    cut = ""
    for i, ch in enumerate(text):
        if cell_len(text[: i + 1]) > room:
            break
        if ch == " ":
            cut = text[:i]
    if not cut.strip():
        out = ""
        for ch in text:
            if cell_len(out + ch) > room:
                break
            out += ch
        cut = out
    return cut.rstrip(" ─│·,;:") + "…"


class KeyedTable(DataTable[Text], Generic[T]):
    """Base class of the viewer's tables; subclasses define ``COLUMNS``, ``key_of``, ``cells_of``.

    Raises nothing at runtime on unknown keys: rows that vanish from a snapshot are removed.
    """

    COLUMNS: ClassVar[tuple[Column, ...]] = ()

    COMPONENT_CLASSES: ClassVar[set[str]] = {f"perfmon--{role}" for role in ROLES}

    DEFAULT_CSS = """
    KeyedTable {
        & > .perfmon--success { color: $success; }
        & > .perfmon--error { color: $error; text-style: bold; }
        & > .perfmon--warning { color: $warning; }
        & > .perfmon--accent { color: $accent; text-style: bold; }
        & > .perfmon--muted { color: $foreground-muted; }
        & > .perfmon--primary { color: $primary; }
        & > .perfmon--bold { text-style: bold; }
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(
            id=id,
            classes=classes,
            cursor_type="row",
            zebra_stripes=False,
            show_cursor=False,
            cursor_foreground_priority="css",
        )
        self._items: dict[str, T] = {}
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self._cell_lines: LRUCache[tuple[object, ...], list[list[Segment]]] = LRUCache(
            CELL_CACHE_SIZE
        )
        self._style_generation = 0
        self._role_styles: dict[str, Style] = {}
        self._fit_col = next((c for c in self.COLUMNS if c.fit), None)
        self._fit_index = next((i for i, c in enumerate(self.COLUMNS) if c.fit), -1)
        self._fit_width: int | None = None

    # -- to be defined by subclasses -------------------------------------------------------

    def key_of(self, item: T) -> str:
        """Return the row key of ``item``."""
        raise NotImplementedError

    def cells_of(self, item: T) -> tuple[Cell, ...]:
        """Return one ``Cell`` per column of ``COLUMNS`` for ``item``."""
        raise NotImplementedError

    # -- machinery -------------------------------------------------------------------------

    def on_mount(self) -> None:
        """Add the columns and follow theme changes."""
        for col in self.COLUMNS:
            self.add_column(Text(col.label, justify=col.justify), key=col.key, width=col.width)  # type: ignore[arg-type]
        self.app.theme_changed_signal.subscribe(self, self._on_theme_changed)

    @property
    def row_keys(self) -> list[str]:
        """The row keys in display order."""
        return [str(row.key.value) for row in self.ordered_rows]

    def cell_text(self, row_key: str, column_key: str) -> str:
        """Return the plain text of one cell (for tests and for the help of screen readers).

        Raises:
            textual.widgets.data_table.CellDoesNotExist: for an unknown row or column.
        """
        return self.get_cell(row_key, column_key).plain

    def _cell_renderable(self, cell: Cell) -> Text:
        style = self._role_styles.get(cell.role)
        if style is None:
            style = Style()
            if cell.role:
                # Only colour and weight: a background would paint over the cursor row.
                full = self.get_component_rich_style(f"perfmon--{cell.role}")
                style = Style(color=full.color, bold=full.bold)
            self._role_styles[cell.role] = style
        return Text(cell.text, style=style, justify=cell.justify, no_wrap=True, end="")  # type: ignore[arg-type]

    def on_focus(self) -> None:
        """Show the row cursor while the panel has focus."""
        self.show_cursor = True

    def on_blur(self) -> None:
        """Hide the row cursor when focus moves to another panel."""
        self.show_cursor = False

    def sync(self, items: Sequence[T]) -> bool:
        """Show ``items``: add new rows, update changed cells, remove rows no longer present.

        Args:
            items: the rows to show, in display order.

        Returns:
            True if a row was added (callers may want to re-sort or scroll).
        """
        added = False
        seen: set[str] = set()
        repaint: list[str] = []
        for item in items:
            key = self.key_of(item)
            seen.add(key)
            old_item = self._items.get(key)
            if old_item is not None and old_item == item:
                continue
            cells = self._fitted(self.cells_of(item))
            self._items[key] = item
            old = self._cells.get(key)
            self._cells[key] = cells
            if old is None:
                self.add_row(*(self._cell_renderable(c) for c in cells), key=key)
                added = True
                continue
            changed = [
                (col, after)
                for col, before, after in zip(self.COLUMNS, old, cells, strict=True)
                if before != after
            ]
            if any(self._grows(col, after) for col, after in changed):
                for col, after in changed:
                    self.update_cell(key, col.key, self._cell_renderable(after), update_width=True)
            elif changed:
                row = self._data[RowKey(key)]
                for col, after in changed:
                    row[ColumnKey(col.key)] = self._cell_renderable(after)
                repaint.append(key)
        if repaint:
            self._repaint_rows(repaint)
        for key in [k for k in self._items if k not in seen]:
            del self._items[key]
            del self._cells[key]
            self.remove_row(key)
        if added and self._fit_col is not None:
            self.fit_columns()
        return added

    # -- the fit column ------------------------------------------------------------------

    def _fitted(self, cells: tuple[Cell, ...]) -> tuple[Cell, ...]:
        """``cells`` with the fit column's text shortened to its width (when known)."""
        i, width = self._fit_index, self._fit_width
        if i < 0 or width is None or i >= len(cells):
            return cells
        cell = cells[i]
        short = shorten(cell.text, width)
        if short == cell.text:
            return cells
        return (*cells[:i], cell._replace(text=short), *cells[i + 1 :])

    def on_resize(self) -> None:
        """Fit the fit column (if any) to the new width."""
        self.fit_columns()

    def fit_columns(self) -> None:
        """Give the fit column the width the other columns leave and re-cut its cells.

        Does nothing without a fit column, before the table has a size, or when the width
        did not change.
        """
        col = self._fit_col
        if col is None or not self.size.width:
            return
        others = sum(
            c.get_render_width(self) for k, c in self.columns.items() if k.value != col.key
        )
        room = self.scrollable_content_region.width - others - 2 * self.cell_padding
        width = max(FIT_MIN, room)
        if width == self._fit_width:
            return
        self._fit_width = width
        column = self.columns.get(ColumnKey(col.key))
        if column is not None:
            column.auto_width = False
            column.width = width
        for key, item in self._items.items():
            cells = self._fitted(self.cells_of(item))
            if cells != self._cells[key]:
                self._cells[key] = cells
                self.update_cell(key, col.key, self._cell_renderable(cells[self._fit_index]))
        self._require_update_dimensions = True
        self.refresh()

    def _repaint_rows(self, keys: list[str]) -> None:
        """Repaint only the given rows, whose cell values were set in place.

        ``DataTable.update_cell`` repaints the whole table (``refresh()``), so every visible
        line would be rendered again; ``sync`` sets the values as it does (in the table's
        ``_data``, bumping its update counter once), then refreshes each changed row's region
        (``refresh_row``, as the table does for cursor moves). Column widths are unchanged:
        ``sync`` uses ``update_cell(update_width=True)`` when a cell grows.
        """
        self._update_count += 1
        for key in keys:
            self.refresh_row(self.get_row_index(key))

    def _grows(self, col: Column, cell: Cell) -> bool:
        """Whether ``cell`` is wider than its (automatic) column: only then is it measured."""
        column = self.columns.get(ColumnKey(col.key))
        return (
            column is not None and column.auto_width and cell_len(cell.text) > column.content_width
        )

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> list[list[Segment]]:
        """Render a cell (``DataTable._render_cell``), cached by the cell's description.

        Textual's own cache is keyed by the table's update counter, so one changed cell would
        re-render every visible cell; this cache is keyed by what the cell shows and where.
        Header cells and cells without a description go straight to ``DataTable``.
        """
        cells = None
        if row_index >= 0 and column_index >= 0:
            row_key = self._row_locations.get_key(row_index)
            if row_key is not None:
                cells = self._cells.get(str(row_key.value))
        if cells is None or column_index >= len(cells):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        key = (
            row_index,
            column_index,
            cells[column_index],
            base_style,
            width,
            cursor,
            hover,
            self.show_cursor,
            self._show_hover_cursor,
            self._pseudo_class_state,
            self._style_generation,
        )
        lines = self._cell_lines.get(key)
        if lines is None:
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
            self._cell_lines[key] = lines
        return lines

    def _on_theme_changed(self, _theme: Theme) -> None:
        """Re-style every cell with the new theme's colours."""
        self._rich_style_cache.clear()
        self._style_generation += 1
        self._cell_lines.clear()
        self._role_styles.clear()
        for key, cells in self._cells.items():
            for col, cell in zip(self.COLUMNS, cells, strict=True):
                if cell.role:
                    self.update_cell(key, col.key, self._cell_renderable(cell))
