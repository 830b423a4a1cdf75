"""A ``DataTable`` updated from snapshots by keyed diff: new rows added, changed cells updated.

Rows are never rebuilt per tick. Each row has a key (a session id, a gate name, a metric name);
each cell is described by a ``Cell`` (text, style role, justification). On every snapshot the
table compares the new item with the one it shows and calls ``update_cell`` only for cells whose
description changed. Colours come from component classes styled with theme variables, so every
theme works; on a theme change all cells are re-styled once.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import ClassVar, Generic, NamedTuple, TypeVar

from rich.style import Style
from rich.text import Text
from textual.theme import Theme
from textual.widgets import DataTable

T = TypeVar("T", bound=Hashable)

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
    """A column of a keyed table: its key, header label and fixed width (None: automatic)."""

    key: str
    label: str
    width: int | None = None
    justify: str = "left"


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
        style = Style()
        if cell.role:
            # Only colour and weight: a background would paint over the cursor row.
            full = self.get_component_rich_style(f"perfmon--{cell.role}")
            style = Style(color=full.color, bold=full.bold)
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
        for item in items:
            key = self.key_of(item)
            seen.add(key)
            old_item = self._items.get(key)
            if old_item is not None and old_item == item:
                continue
            cells = self.cells_of(item)
            self._items[key] = item
            old = self._cells.get(key)
            self._cells[key] = cells
            if old is None:
                self.add_row(*(self._cell_renderable(c) for c in cells), key=key)
                added = True
                continue
            for col, before, after in zip(self.COLUMNS, old, cells, strict=True):
                if before != after:
                    self.update_cell(key, col.key, self._cell_renderable(after), update_width=True)
        for key in [k for k in self._items if k not in seen]:
            del self._items[key]
            del self._cells[key]
            self.remove_row(key)
        return added

    def _on_theme_changed(self, _theme: Theme) -> None:
        """Re-style every cell with the new theme's colours."""
        self._rich_style_cache.clear()
        for key, cells in self._cells.items():
            for col, cell in zip(self.COLUMNS, cells, strict=True):
                if cell.role:
                    self.update_cell(key, col.key, self._cell_renderable(cell))
