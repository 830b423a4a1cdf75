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

No table cuts a number at the panel's edge, at any width (issue 14, point 2). Each column says
how it gives way (``Column``: ``fit`` names shortened with ``…``, ``fill`` drawings that take
the rest, ``priority`` for columns that may be hidden); ``plan_columns`` decides, on a resize
or when a cell grows wider than the plan knew, which columns show and how wide the fit and fill
columns are. Only when the set of shown columns changes are the DataTable's columns rebuilt
from the kept items (``_rebuild``); the per-snapshot path (``sync``) compares and updates the
shown cells as before, plus one ``cell_len`` per cell of a changed row. The hidden columns are
named in the panel's title.
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

    How a column gives way when the panel is narrower than the table (``plan_columns``):

    - ``fit``: a name column. It takes at most its widest text and at least ``min_width``
      (``FIT_MIN`` when None) cells; a text wider than its width is cut at the last space that
      fits, with ``…`` (``shorten``), so a number is never cut at the panel's edge. When
      several columns fit, the room is shared out by water-filling (the widest is cut first).
    - ``fill``: a drawn column (sparkline, box plot) that takes the room the others leave,
      between ``min_width`` (``FIT_MIN`` when None) and ``max_width`` (None: no bound); the
      subclass draws it ``fill_width(key)`` cells wide.
    - ``priority``: None, the column is always shown; otherwise, when even the narrowest
      layout does not fit, columns are hidden lowest ``priority`` first (ties: rightmost
      first) until it fits, and shown again when the panel widens.
    """

    key: str
    label: str
    width: int | None = None
    justify: str = "left"
    fit: bool = False
    priority: int | None = None
    fill: bool = False
    min_width: int | None = None
    max_width: int | None = None


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


FIT_MIN = 12
"""Narrowest width a ``fit`` or ``fill`` column is given when it sets no ``min_width``, in
cells."""


class ColumnPlan(NamedTuple):
    """Which columns a table shows at a width and how wide its fit and fill columns are.

    Attributes:
        kept: indexes into the table's columns of those shown, in order.
        widths: column key -> width in cells, for the shown ``fit`` and ``fill`` columns.
        hidden: keys of the hidden columns, in column order.
    """

    kept: tuple[int, ...]
    widths: dict[str, int]
    hidden: tuple[str, ...]


def _least_width(col: Column, natural: int) -> int:
    """The narrowest a column may be: a plain column its widest text, a fit one its
    ``min_width`` (or its widest text if narrower), a fill one its ``min_width``."""
    low = FIT_MIN if col.min_width is None else col.min_width
    if col.fill:
        return low
    if col.fit:
        return min(natural, low)
    return natural if col.width is None else col.width


def _water_fill(naturals: list[int], lows: list[int], room: int) -> list[int]:
    """Share ``room`` cells among columns wanting ``naturals``, none below its ``lows``:
    a column that wants less than an equal share gets what it wants, the others share the
    rest equally (max-min fairness, "water-filling"; Bertsekas and Gallager, *Data
    Networks*, 2nd ed., 1992, sec. 6.5.2)."""
    widths = list(lows)
    room -= sum(lows)
    open_ = [i for i in range(len(naturals)) if naturals[i] > widths[i]]
    while room > 0 and open_:
        share = max(1, room // len(open_))
        for i in list(open_):
            give = min(share, naturals[i] - widths[i], room)
            widths[i] += give
            room -= give
            if widths[i] >= naturals[i]:
                open_.remove(i)
            if room <= 0:
                break
    return widths


def plan_columns(
    columns: Sequence[Column], naturals: Sequence[int], available: int, padding: int = 1
) -> ColumnPlan:
    """Plan a table for ``available`` cells: hide columns by ``priority`` until the narrowest
    layout fits, then size the fit columns (water-filling) and give the fill columns the rest.

    Args:
        columns: the table's columns.
        naturals: per column, its widest text (header included), in cells; ignored for fill
            columns.
        available: the table's content width in cells (>= 0).
        padding: cells of padding on each side of every column (``DataTable.cell_padding``).

    Returns:
        The plan. When even the always-shown columns at their narrowest do not fit, they are
        all kept (the table then scrolls sideways): nothing else can be hidden.
    """
    kept = list(range(len(columns)))

    def need(ids: list[int]) -> int:
        return sum(_least_width(columns[i], naturals[i]) + 2 * padding for i in ids)

    while need(kept) > available:
        droppable = [i for i in kept if columns[i].priority is not None]
        if not droppable:
            break
        low = min(columns[i].priority or 0 for i in droppable)
        kept.remove(max(i for i in droppable if columns[i].priority == low))
    fixed = sum(
        _least_width(columns[i], naturals[i]) + 2 * padding
        for i in kept
        if not (columns[i].fit or columns[i].fill)
    )
    fills = [i for i in kept if columns[i].fill]
    fits = [i for i in kept if columns[i].fit]
    pads = 2 * padding * (len(fills) + len(fits))
    room = available - fixed - pads
    fill_lows = [_least_width(columns[i], 0) for i in fills]
    fit_lows = [_least_width(columns[i], naturals[i]) for i in fits]
    fit_room = max(sum(fit_lows), room - sum(fill_lows))
    fit_widths = _water_fill([naturals[i] for i in fits], fit_lows, fit_room)
    widths = {columns[i].key: max(1, w) for i, w in zip(fits, fit_widths, strict=True)}
    left = room - sum(fit_widths)
    for n, i in enumerate(fills):
        col = columns[i]
        share = max(fill_lows[n], left // (len(fills) - n))
        if col.max_width is not None:
            share = min(share, col.max_width)
        widths[col.key] = share
        left -= share
    hidden = tuple(c.key for i, c in enumerate(columns) if i not in kept)
    return ColumnPlan(tuple(kept), widths, hidden)


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
        self._raw: dict[str, tuple[Cell, ...]] = {}
        """Per row, its cells as ``cells_of`` made them (every column, texts uncut)."""
        self._cells: dict[str, tuple[Cell, ...]] = {}
        """Per row, the cells shown: one per shown column, fit texts shortened."""
        self._cell_lines: LRUCache[tuple[object, ...], list[list[Segment]]] = LRUCache(
            CELL_CACHE_SIZE
        )
        self._style_generation = 0
        self._role_styles: dict[str, Style] = {}
        self._kept: tuple[int, ...] = tuple(range(len(self.COLUMNS)))
        self._widths: dict[str, int] = {}
        self._naturals = [cell_len(c.label) for c in self.COLUMNS]
        self._has_fit = any(c.fit for c in self.COLUMNS)
        self._title_base: str | None = None
        self.hidden_columns: tuple[str, ...] = ()
        """Keys of the columns hidden because the panel is too narrow (``plan_columns``)."""

    # -- to be defined by subclasses -------------------------------------------------------

    def key_of(self, item: T) -> str:
        """Return the row key of ``item``."""
        raise NotImplementedError

    def cells_of(self, item: T) -> tuple[Cell, ...]:
        """Return one ``Cell`` per column of ``COLUMNS`` for ``item`` (a ``fill`` column's
        text drawn ``fill_width(key)`` cells wide)."""
        raise NotImplementedError

    # -- machinery -------------------------------------------------------------------------

    def on_mount(self) -> None:
        """Add the columns and follow theme changes."""
        self._add_columns()
        self.app.theme_changed_signal.subscribe(self, self._on_theme_changed)

    def _add_columns(self) -> None:
        for i in self._kept:
            col = self.COLUMNS[i]
            width = self._widths.get(col.key, col.width)
            self.add_column(Text(col.label, justify=col.justify), key=col.key, width=width)  # type: ignore[arg-type]

    def fill_width(self, key: str) -> int:
        """The width in cells a ``fill`` column (or a ``fit`` one) is drawn at now: its
        ``min_width`` (``FIT_MIN``) until the table has a size."""
        width = self._widths.get(key)
        if width is not None:
            return width
        col = next(c for c in self.COLUMNS if c.key == key)
        return FIT_MIN if col.min_width is None else col.min_width

    @property
    def shown_columns(self) -> tuple[str, ...]:
        """Keys of the columns shown, in order."""
        return tuple(self.COLUMNS[i].key for i in self._kept)

    @property
    def row_keys(self) -> list[str]:
        """The row keys in display order."""
        return [str(row.key.value) for row in self.ordered_rows]

    def cell_text(self, row_key: str, column_key: str) -> str:
        """Return the plain text of one cell as shown (for tests and for the help of screen
        readers); for a hidden column, the text it would show.

        Raises:
            textual.widgets.data_table.CellDoesNotExist: for an unknown row or column.
        """
        if column_key in self.hidden_columns and row_key in self._raw:
            index = next(i for i, c in enumerate(self.COLUMNS) if c.key == column_key)
            return self._raw[row_key][index].text
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
        wider = False
        seen: set[str] = set()
        repaint: list[str] = []
        kept = [self.COLUMNS[i] for i in self._kept]
        naturals = self._naturals
        for item in items:
            key = self.key_of(item)
            seen.add(key)
            old_item = self._items.get(key)
            if old_item is not None and old_item == item:
                continue
            raw = self.cells_of(item)
            for i, (col, cell) in enumerate(zip(self.COLUMNS, raw, strict=True)):
                if not col.fill:
                    width = cell_len(cell.text)
                    if width > naturals[i]:
                        naturals[i] = width
                        wider = True
            cells = self._shown(raw)
            self._items[key] = item
            self._raw[key] = raw
            old = self._cells.get(key)
            self._cells[key] = cells
            if old is None:
                self.add_row(*(self._cell_renderable(c) for c in cells), key=key)
                added = True
                continue
            changed = [
                (col, after)
                for col, before, after in zip(kept, old, cells, strict=True)
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
            del self._raw[key]
            del self._cells[key]
            self.remove_row(key)
        if wider or (added and self._has_fit):
            self.fit_columns()
        return added

    # -- fitting the columns to the panel's width -------------------------------------------

    def _shown(self, raw: tuple[Cell, ...]) -> tuple[Cell, ...]:
        """The shown cells of a row: those of the shown columns, fit texts shortened."""
        out = []
        widths = self._widths
        for i in self._kept:
            cell = raw[i]
            col = self.COLUMNS[i]
            if col.fit:
                width = widths.get(col.key)
                if width is not None:
                    short = self.shorten_text(col.key, cell.text, width)
                    if short != cell.text:
                        cell = cell._replace(text=short)
            out.append(cell)
        return tuple(out)

    def shorten_text(self, column_key: str, text: str, width: int) -> str:
        """A fit column's ``text`` cut to at most ``width`` cells (``shorten``); a subclass may
        shorten its names its own way (it must return at most ``width`` cells)."""
        return shorten(text, width)

    def on_resize(self) -> None:
        """Fit the columns to the new width."""
        self.fit_columns()

    def fit_columns(self) -> None:
        """Fit the table to its width (``plan_columns``): hide or show columns, size the fit
        and fill columns, re-cut and redraw their cells.

        The DataTable's columns are rebuilt only when the set of shown columns changes (on
        a resize, or when a cell grows); otherwise only the cells whose text changed are
        updated. Does nothing before the table has a size, or when nothing changed.
        """
        if not self.size.width:
            return
        plan = plan_columns(
            self.COLUMNS,
            self._naturals,
            self.scrollable_content_region.width,
            self.cell_padding,
        )
        if plan.kept == self._kept and plan.widths == self._widths:
            return
        rebuild = plan.kept != self._kept
        fills = {c.key for c in self.COLUMNS if c.fill}
        redraw = any(self._widths.get(k) != plan.widths.get(k) for k in fills)
        self._kept = plan.kept
        self._widths = plan.widths
        self.hidden_columns = plan.hidden
        if redraw:
            self._raw = {key: self.cells_of(item) for key, item in self._items.items()}
        if rebuild:
            self._rebuild()
        else:
            for col in (self.COLUMNS[i] for i in self._kept):
                column = self.columns.get(ColumnKey(col.key))
                if column is not None and col.key in plan.widths:
                    column.auto_width = False
                    column.width = plan.widths[col.key]
            kept = [self.COLUMNS[i] for i in self._kept]
            for key, raw in self._raw.items():
                cells = self._shown(raw)
                old = self._cells[key]
                if cells == old:
                    continue
                self._cells[key] = cells
                for col, before, after in zip(kept, old, cells, strict=True):
                    if before != after:
                        self.update_cell(key, col.key, self._cell_renderable(after))
            self._require_update_dimensions = True
            self.refresh()
        self._show_hidden()

    def _rebuild(self) -> None:
        """Rebuild the DataTable's columns and rows from the kept items (rows keep their
        order, the cursor its row)."""
        order = self.row_keys
        cursor = self.cursor_row
        x, y = self.scroll_x, self.scroll_y
        self._cell_lines.clear()
        self.clear(columns=True)
        self._add_columns()
        for key in order:
            cells = self._shown(self._raw[key])
            self._cells[key] = cells
            self.add_row(*(self._cell_renderable(c) for c in cells), key=key)
        # Measure now (``DataTable`` does it on idle), so that the scroll position can be
        # restored: until then the table's virtual size is that of an empty table.
        self._require_update_dimensions = False
        new_rows = self._new_rows.copy()
        self._new_rows.clear()
        self._update_dimensions(new_rows)
        if 0 <= cursor < len(order):
            self.move_cursor(row=cursor, animate=False, scroll=False)
        self.scroll_to(x=x, y=y, animate=False, immediate=True)
        self.after_rebuild()

    def after_rebuild(self) -> None:
        """Called after the columns were rebuilt (a subclass may scroll to a row)."""

    def _show_hidden(self) -> None:
        """Name the hidden columns in the panel's title (``Sessions · hidden: set, params``)."""
        if self._title_base is None:
            self._title_base = str(self.border_title or "")
        if not self._title_base:
            return
        title = self._title_base
        if self.hidden_columns:
            labels = [c.label for c in self.COLUMNS if c.key in self.hidden_columns]
            title += " · hidden: " + ", ".join(labels)
        if self.border_title != title:
            self.border_title = title

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
        kept = [self.COLUMNS[i] for i in self._kept]
        for key, cells in self._cells.items():
            for col, cell in zip(kept, cells, strict=True):
                if cell.role:
                    self.update_cell(key, col.key, self._cell_renderable(cell))
