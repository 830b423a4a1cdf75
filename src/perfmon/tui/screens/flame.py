"""The flame screen: py-spy profiles of the run, per session, per variant, and a diff.

Left, the views: each profile taken (a session over a window of time, named by its session,
workload and variant), each (workload, variant) aggregate (its profiles merged), and, per
workload, each candidate variant against the baseline. Profiles of different workloads are
never merged: a diff across workloads would partly show which workloads got profiled. In
aggregates and diffs each stack's root process frame (the session's command line, which differs
between variants that differ by ``args``) is renamed after the workload
(``StackTree.with_root``), so the same function lines up across variants. Right, the
selected view as an icicle (``FlameView``), a line on the selected frame (its total and self
share of samples, or both variants' shares and the change), and a table of the top functions
(or of the biggest changes in a diff).

The stacks are read from the run directory (``profiles/*.collapsed``), which is on the viewer's
machine; which profiles exist comes from the snapshots (``Snapshot.profiles``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from perfmon.core.stacks import DiffNode, DiffTree, StackTree, parse_collapsed, root_frame_name
from perfmon.core.text import strip_terminal_escapes
from perfmon.tui.widgets.flame import FlameNode, FlameView

TOP_ROWS = 30


def _short(name: str, width: int = 60) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def load_tree(run_dir: Path, name: str) -> StackTree:
    """Parse ``run_dir/profiles/<name>.collapsed`` (process frames merged across sessions).

    Raises:
        OSError: if the file cannot be read; ValueError: for a bad name.
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad profile name {name!r}")
    text = strip_terminal_escapes(
        (run_dir / "profiles" / f"{name}.collapsed").read_text("utf-8", "replace")
    )
    return parse_collapsed(text)


def _variant(profile: dict[str, Any]) -> str:
    return str(profile.get("variant") or "default")


def group_label(workload: str, variant: str) -> str:
    """``"workload/variant"``, or the variant alone when the profile names no workload."""
    return f"{workload}/{variant}" if workload else variant


def aggregate_view(workload: str, variant: str) -> str:
    """The view id of a (workload, variant) aggregate (names may hold any character)."""
    return "aggregate:" + json.dumps([workload, variant])


def diff_view(workload: str, base: str, cand: str) -> str:
    """The view id of a workload's ``cand`` variant against its ``base`` variant."""
    return "diff:" + json.dumps([workload, base, cand])


def parse_view(view_id: str) -> tuple[str, list[str]]:
    """Split a view id into ``("aggregate" | "diff" | "profile", parts)``.

    Raises:
        ValueError: for an aggregate or diff id whose parts do not parse.
    """
    for kind, n in (("aggregate", 2), ("diff", 3)):
        if view_id.startswith(kind + ":"):
            parts = json.loads(view_id[len(kind) + 1 :])
            if not (isinstance(parts, list) and len(parts) == n):
                raise ValueError(f"bad view {view_id!r}")
            return kind, [str(x) for x in parts]
    return "profile", [view_id]


class FlameScreen(Screen[None]):
    """Profiles of a run as icicle graphs; ``escape`` goes back to the run.

    Args:
        run_dir: the run directory (holding ``profiles/``).
        profiles: the profile records (``ProfileRecord.to_dict()`` dicts) known so far.
        select: the view to open first: a profile name, ``aggregate_view(workload, variant)``
            or ``diff_view(workload, base, cand)`` (default: the newest profile with stacks).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="back", tooltip="Zoom out, or back to the run"),
        Binding(
            "slash",
            "search",
            "Search",
            id="flame.search",
            key_display="/",
            tooltip="Find a function",
        ),
        Binding(
            "n",
            "next_match",
            "Next",
            id="flame.next-match",
            tooltip="Select the next search match",
        ),
        Binding(
            "r",
            "reload",
            "Reload",
            id="flame.reload",
            show=False,
            tooltip="Load profiles taken since",
        ),
        Binding("tab", "focus_next", "Panels", id="focus-next", show=False),
    ]

    DEFAULT_CSS = """
    FlameScreen #flame-views {
        width: 30%;
        min-width: 24;
        max-width: 40;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        border: round $foreground-muted 50%;
        &:focus { border: round $primary; }
    }
    FlameScreen #flame-right { width: 1fr; }
    FlameScreen FlameView {
        height: 2fr;
        border: round $foreground-muted 50%;
        &:focus { border: round $primary; }
    }
    FlameScreen #flame-detail { height: 2; padding: 0 1; color: $foreground; }
    FlameScreen #flame-top {
        height: 1fr;
        min-height: 5;
        max-height: 14;
        border: round $foreground-muted 50%;
        &:focus { border: round $primary; }
    }
    FlameScreen #flame-search { dock: bottom; display: none; }
    FlameScreen #flame-search.-shown { display: block; }
    """

    def __init__(
        self, run_dir: str | Path, profiles: list[dict[str, Any]], *, select: str | None = None
    ) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.profiles = list(profiles)
        self.want = select
        self.view_id: str | None = None
        self.stacks: StackTree | DiffTree | None = None
        self.matches: list[FlameNode] = []
        self._match = -1
        self._cache: dict[str, StackTree] = {}

    def compose(self) -> ComposeResult:
        """Views list; icicle, detail line and top-functions table; search input; footer."""
        with Horizontal():
            views = OptionList(id="flame-views")
            views.border_title = "Profiles"
            yield views
            with Vertical(id="flame-right"):
                flame = FlameView(id="flame")
                flame.border_title = "Flame"
                yield flame
                yield Static("", id="flame-detail")
                top: DataTable[str] = DataTable(
                    id="flame-top", cursor_type="row", zebra_stripes=True
                )
                top.border_title = "Top functions"
                yield top
        yield Input(placeholder="function name (enter: find, escape: cancel)", id="flame-search")
        yield Footer()

    def on_mount(self) -> None:
        """Fill the views list and open the first view."""
        self._fill_views()
        self.query_one(FlameView).focus()

    # -- views -----------------------------------------------------------------------------

    def _usable(self) -> list[dict[str, Any]]:
        return [
            p for p in self.profiles if p.get("status") in ("ok", "partial") and p.get("samples")
        ]

    def _fill_views(self) -> None:
        views = self.query_one("#flame-views", OptionList)
        views.clear_options()
        usable = self._usable()
        options: list[Option] = []
        for p in reversed(usable):
            # One line each (cut to the list's width): session, workload/variant, samples.
            where = group_label(str(p.get("workload") or ""), _variant(p))
            label = _short(f"s{p['session']} {where} · {p['samples']:,}", 38)
            options.append(Option(label, id=p["name"]))
        groups: dict[str, dict[str, int]] = {}
        for p in usable:
            counts = groups.setdefault(str(p.get("workload") or ""), {})
            counts[_variant(p)] = counts.get(_variant(p), 0) + 1
        for workload in sorted(groups):
            counts = groups[workload]
            for v in sorted(counts):
                label = _short(f"all {group_label(workload, v)} ({counts[v]})", 38)
                options.append(Option(label, id=aggregate_view(workload, v)))
            variants = sorted(counts)
            if len(variants) > 1:
                base = "baseline" if "baseline" in variants else variants[0]
                for v in variants:
                    if v != base:
                        where = f"{workload}: " if workload else ""
                        label = _short(f"diff {where}{base}→{v}", 38)
                        options.append(Option(label, id=diff_view(workload, base, v)))
        failed = [p for p in self.profiles if p not in usable]
        views.add_options(options)
        views.border_subtitle = f"{len(usable)} ok, {len(failed)} failed"
        if not options:
            msg = "No profile yet: press f on the run screen to sample the running session."
            if failed:
                msg = f"No stacks. Last profile: {failed[-1].get('message', '')}"
            self.query_one("#flame-detail", Static).update(msg)
            return
        ids = [o.id for o in options]
        want = self.want if self.want in ids else (self.view_id if self.view_id in ids else ids[0])
        views.highlighted = ids.index(want)
        self.open_view(str(want))

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        """Open the view under the cursor."""
        if event.option.id and event.option.id != self.view_id:
            self.open_view(event.option.id)

    def _profile_tree(self, name: str) -> StackTree:
        tree = self._cache.get(name)
        if tree is None:
            tree = self._cache[name] = load_tree(self.run_dir, name)
        return tree

    def _aggregate_tree(self, workload: str, variant: str) -> StackTree:
        """The profiles of one (workload, variant) merged, root frames named after the workload."""
        root = root_frame_name(workload)
        names = [
            p["name"]
            for p in self._usable()
            if str(p.get("workload") or "") == workload and _variant(p) == variant
        ]
        return StackTree.merged(self._profile_tree(n).with_root(root) for n in names)

    def open_view(self, view_id: str) -> None:
        """Show a view: a profile name, ``aggregate_view(...)`` or ``diff_view(...)``."""
        self.view_id = view_id
        flame = self.query_one(FlameView)
        try:
            kind, parts = parse_view(view_id)
            if kind == "aggregate":
                workload, v = parts
                tree: StackTree | DiffTree = self._aggregate_tree(workload, v)
                title = f"all of {group_label(workload, v)}"
            elif kind == "diff":
                workload, a, b = parts
                tree = DiffTree(
                    self._aggregate_tree(workload, a), self._aggregate_tree(workload, b)
                )
                where = f"{workload}: " if workload else ""
                title = f"{where}{b} vs {a}: red grew, green shrank (share of samples)"
            else:
                tree = self._profile_tree(view_id)
                p = next((p for p in self.profiles if p.get("name") == view_id), {})
                where = group_label(str(p.get("workload") or ""), _variant(p))
                title = f"profile {view_id} · session {p.get('session', '?')} · {where}"
        except (OSError, ValueError) as exc:
            self.stacks = None
            flame.show(None)
            self.query_one("#flame-detail", Static).update(f"cannot read {view_id}: {exc}")
            return
        self.stacks = tree
        samples = tree.total if isinstance(tree, StackTree) else tree.cand_samples
        flame.border_title = title
        flame.border_subtitle = (
            f"{samples:,} samples"
            if isinstance(tree, StackTree)
            else f"{tree.base_samples:,} vs {tree.cand_samples:,} samples"
        )
        flame.show(tree.root)
        self._fill_top()

    def _fill_top(self) -> None:
        table: DataTable[str] = self.query_one("#flame-top", DataTable)
        table.clear(columns=True)
        tree = self.stacks
        if isinstance(tree, StackTree):
            table.border_title = "Top functions (by self share)"
            table.add_columns("self", "total", "function")
            for f in tree.top_functions(TOP_ROWS):
                table.add_row(
                    f"{f.self_share:6.1%}", f"{f.total_share:6.1%}", _short(f.name), key=f.name
                )
        elif isinstance(tree, DiffTree):
            table.border_title = "Biggest changes (self share)"
            table.add_columns("base", "cand", "change", "function")
            for d in tree.top_changes(TOP_ROWS):
                table.add_row(
                    f"{d.base_self:6.1%}",
                    f"{d.cand_self:6.1%}",
                    f"{d.delta_self * 100:+.1f}pp",
                    _short(d.name),
                    key=d.name,
                )

    def detail(self, node: FlameNode | None) -> str:
        """The detail line for a frame."""
        if node is None:
            return ""
        path = " › ".join(_short(n, 30) for n in node.path()[-3:]) or "all"
        if isinstance(node, DiffNode):
            return (
                f"{path}\ntotal share {node.base:.1%} → {node.cand:.1%} "
                f"({node.delta * 100:+.1f} pp), self {node.base_self:.1%} → {node.cand_self:.1%}"
            )
        assert isinstance(self.stacks, StackTree)
        t = self.stacks.total or 1
        return (
            f"{path}\ntotal {node.total / t:.1%} ({node.total:,} samples), "
            f"self {node.self_count / t:.1%} ({node.self_count:,})"
        )

    def on_flame_view_selected(self, event: FlameView.Selected) -> None:
        """Describe the selected frame."""
        self.query_one("#flame-detail", Static).update(self.detail(event.node))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a top function: find it in the flame view."""
        name = str(event.row_key.value)
        self._find(name, exact=True)

    # -- search ----------------------------------------------------------------------------

    def action_search(self) -> None:
        """Show the search input."""
        box = self.query_one("#flame-search", Input)
        box.add_class("-shown")
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Find frames whose name contains the text."""
        event.input.remove_class("-shown")
        self._find(event.value)
        self.query_one(FlameView).focus()

    def _find(self, text: str, *, exact: bool = False) -> None:
        flame = self.query_one(FlameView)
        if self.stacks is None:
            return
        found: list[Any] = self.stacks.search(text)
        if exact:
            found = [n for n in found if n.name == text]
        self.matches = found
        self._match = -1
        flame.highlight(found)
        if found:
            self.action_next_match()
            plural = "es" if len(found) != 1 else ""
            self.notify(f"{len(found)} match{plural} for {text!r} (n: next)", timeout=3)
        else:
            self.notify(f"no frame matches {text!r}", severity="warning", timeout=3)

    def action_next_match(self) -> None:
        """Select the next search match (largest first)."""
        if self.matches:
            self._match = (self._match + 1) % len(self.matches)
            self.query_one(FlameView).select(self.matches[self._match])

    # -- other keys ------------------------------------------------------------------------

    def action_back(self) -> None:
        """Hide the search box, else zoom out, else go back to the run screen."""
        box = self.query_one("#flame-search", Input)
        if box.has_class("-shown"):
            box.remove_class("-shown")
            self.query_one(FlameView).focus()
            return
        if not self.query_one(FlameView).action_unzoom():
            self.dismiss()

    def action_reload(self) -> None:
        """Take the profiles of the newest snapshot (profiles taken since the screen opened)."""
        snap = getattr(self.app, "snapshot", None)
        if snap is not None:
            self.profiles = [p.to_dict() for p in snap.profiles]
        self.want = self.view_id
        self._fill_views()
