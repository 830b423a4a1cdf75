"""``FlameView``: an icicle graph of a stack tree (or a baseline-vs-candidate diff) in the terminal.

Each row is one stack depth below the *zoom* frame (the root of what is shown, at the top);
each frame spans columns in proportion to its samples (``node.weight``), its callees below it,
largest first, as in speedscope's "left heavy" view. Keys move a *selection* through the tree:

- ``left`` / ``right``: the previous / next frame on the same row;
- ``down``: into the selected frame's largest callee; ``up``: back out to its caller;
- ``enter``: zoom into the selected frame (it fills the width); ``backspace``: zoom back out.

Colours come from the theme: frames of a single profile take ``$primary``/``$secondary``/
``$accent`` shades chosen by the frame's name (stable across redraws); in a diff a frame is
blended from ``$panel`` towards ``$error`` when the candidate spends a larger share of its
samples there and towards ``$success`` when a smaller one, in proportion to the change.
Search matches are drawn in ``$warning``; the selection is reversed.
"""

from __future__ import annotations

import zlib
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.color import Color
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from perfmon.core.stacks import DiffNode, StackNode

FlameNode = StackNode | DiffNode

_PALETTE = (
    "primary-darken-2",
    "secondary-darken-2",
    "accent-darken-2",
    "primary-darken-1",
    "secondary-darken-1",
    "accent-darken-3",
)


def _laid_out(zoom: FlameNode, width: int, rows: int) -> list[list[tuple[FlameNode, int, int]]]:
    """Per row (depth below ``zoom``), the frames drawn and their columns ``[x0, x1)``."""
    out: list[list[tuple[FlameNode, int, int]]] = [[] for _ in range(rows)]
    total = zoom.weight
    if rows <= 0 or width <= 0 or total <= 0:
        return out
    scale = width / total
    todo: list[tuple[FlameNode, float, int]] = [(zoom, 0.0, 0)]
    while todo:
        node, x, depth = todo.pop()
        x0, x1 = round(x), round(x + node.weight * scale)
        if x1 <= x0:
            continue
        out[depth].append((node, x0, x1))
        if depth + 1 >= rows:
            continue
        cx = x
        for child in node.sorted_children():
            todo.append((child, cx, depth + 1))
            cx += child.weight * scale
    for row in out:
        row.sort(key=lambda item: item[1])
    return out


class FlameView(Widget, can_focus=True):
    """An icicle view of a ``StackNode`` or ``DiffNode`` tree, navigable with keys.

    Set ``root`` with ``show(root)``; the selection and zoom start at the root.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "move(-1)", "Prev frame", id="flame.prev-frame", show=False),
        Binding("right", "move(1)", "Next frame", id="flame.next-frame", show=False),
        Binding(
            "down", "into", "Into", id="flame.into", show=False, tooltip="Select the largest callee"
        ),
        Binding("up", "out", "Out", id="flame.out", show=False, tooltip="Select the caller"),
        Binding(
            "enter",
            "zoom",
            "Zoom",
            id="flame.zoom",
            tooltip="Make the selected frame fill the width",
        ),
        Binding(
            "backspace",
            "unzoom",
            "Unzoom",
            id="flame.unzoom",
            show=False,
            tooltip="Zoom back out one frame",
        ),
    ]

    DEFAULT_CSS = """
    FlameView {
        height: 1fr;
        min-height: 4;
        background: $panel;
    }
    """

    class Selected(Message):
        """The selected frame changed (posted after ``show`` too)."""

        def __init__(self, view: FlameView, node: FlameNode | None) -> None:
            super().__init__()
            self.view = view
            self.node = node

    version: reactive[int] = reactive(0, layout=False)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.root: FlameNode | None = None
        self.zoom: FlameNode | None = None
        self.selected: FlameNode | None = None
        self.matches: set[int] = set()
        self._rows: list[list[tuple[FlameNode, int, int]]] = []
        self._layout_key: tuple[int, int, int] | None = None
        self._biggest = 0.0  # largest |delta| of a diff, for colour scaling

    # -- data ------------------------------------------------------------------------------

    def show(self, root: FlameNode | None) -> None:
        """Show a new tree (None: nothing), selection and zoom at its root."""
        self.root = self.zoom = self.selected = root
        self._biggest = max(
            (abs(n.delta) for n in root.walk() if isinstance(n, DiffNode)) if root else (),
            default=0.0,
        )
        self.matches = set()
        self._changed()

    def highlight(self, nodes: list[FlameNode]) -> None:
        """Draw these frames (search matches) in the theme's warning colour."""
        self.matches = {id(n) for n in nodes}
        self._changed(post=False)

    def select(self, node: FlameNode) -> None:
        """Select a frame; zoom out as far as needed for it to be visible."""
        zoom = self.zoom
        while zoom is not None and zoom is not self.root and not _is_below(node, zoom):
            zoom = zoom.parent
        self.zoom = zoom if zoom is not None else self.root
        self.selected = node
        self._changed()

    def _changed(self, *, post: bool = True) -> None:
        self._layout_key = None
        self.version += 1
        self.refresh()
        if post:
            self.post_message(self.Selected(self, self.selected))

    # -- layout and drawing ---------------------------------------------------------------

    def rows(self) -> list[list[tuple[FlameNode, int, int]]]:
        """The frames drawn, per row: ``(node, x0, x1)`` (recomputed when size or data change)."""
        key = (self.size.width, self.size.height, self.version)
        if key != self._layout_key:
            self._rows = (
                _laid_out(self.zoom, self.size.width, self.size.height) if self.zoom else []
            )
            self._layout_key = key
        return self._rows

    def _colour(self, node: FlameNode) -> Color:
        variables = self.app.theme_variables
        panel = Color.parse(variables.get("panel", "#303030"))
        if isinstance(node, DiffNode):
            biggest = self._biggest
            if biggest <= 0 or node.delta == 0:
                return panel
            target = Color.parse(variables["error" if node.delta > 0 else "success"])
            return panel.blend(target, 0.25 + 0.75 * min(1.0, abs(node.delta) / biggest))
        name = _PALETTE[zlib.crc32(node.name.encode()) % len(_PALETTE)]
        return Color.parse(variables.get(name, variables.get("primary", "#0178d4")))

    def render_line(self, y: int) -> Strip:
        """One row of the icicle."""
        width = self.size.width
        rows = self.rows()
        if y >= len(rows) or not rows[y]:
            return Strip.blank(width, self.rich_style)
        variables = self.app.theme_variables
        warning = Color.parse(variables.get("warning", "#ffa62b"))
        segments: list[Segment] = []
        col = 0
        for node, x0, x1 in rows[y]:
            if x0 > col:
                segments.append(Segment(" " * (x0 - col), self.rich_style))
            bg = warning if id(node) in self.matches else self._colour(node)
            style = Style(bgcolor=bg.rich_color, color=bg.get_contrast_text().rich_color)
            if node is self.selected:
                style += Style(reverse=True, bold=True)
            w = x1 - x0
            label = node.name if len(node.name) <= w - 1 else node.name[: max(0, w - 2)] + "…"
            text = (label + " " * w)[: w - 1] + ("▏" if w > 1 else "")
            if w == 1:
                text = " "
            segments.append(Segment(text, style))
            col = x1
        if col < width:
            segments.append(Segment(" " * (width - col), self.rich_style))
        return Strip(segments, width)

    # -- keys ------------------------------------------------------------------------------

    def _row_of(self, node: FlameNode) -> list[tuple[FlameNode, int, int]]:
        for row in self.rows():
            if any(n is node for n, _, _ in row):
                return row
        return []

    def action_move(self, step: int) -> None:
        """Select the previous (-1) or next (+1) frame on the selection's row."""
        if self.selected is None:
            return
        row = self._row_of(self.selected)
        ids = [n for n, _, _ in row]
        for i, node in enumerate(ids):
            if node is self.selected and 0 <= i + step < len(ids):
                self.selected = ids[i + step]
                self._changed()
                return

    def action_into(self) -> None:
        """Select the selected frame's largest callee."""
        if self.selected is not None:
            children = self.selected.sorted_children()
            if children:
                self.selected = children[0]
                self._changed()

    def action_out(self) -> None:
        """Select the selected frame's caller (zooming out when it is the zoom frame)."""
        node = self.selected
        if node is None or node.parent is None:
            return
        if node is self.zoom:
            self.zoom = node.parent
        self.selected = node.parent
        self._changed()

    def action_zoom(self) -> None:
        """Make the selected frame the zoom frame (it fills the width)."""
        if self.selected is not None and self.selected is not self.zoom:
            self.zoom = self.selected
            self._changed()

    def action_unzoom(self) -> bool:
        """Zoom out one frame; False when already at the root."""
        if self.zoom is None or self.zoom.parent is None:
            return False
        self.zoom = self.zoom.parent
        self._changed()
        return True


def _is_below(node: FlameNode, ancestor: FlameNode) -> bool:
    cur: FlameNode | None = node
    while cur is not None:
        if cur is ancestor:
            return True
        cur = cur.parent
    return False
