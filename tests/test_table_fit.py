"""No table of the viewer cuts a number or a header at any width (issue 14, point 2).

``plan_columns`` is tested pure; the app is driven at 80x24, 100x30, 160x50 and 200x50 on a
hard snapshot (long params, 1,220-sample sessions, metrics split by variant with long labels,
the comparison panel) and every shown cell must appear whole on its screen line, every
shortened name must end in "…", the table must not scroll sideways, and the hidden columns
are the least important ones."""

from __future__ import annotations

from typing import Any

import pytest

from fit_run import hard_snapshot
from perfmon.tui.app import PerfmonApp
from perfmon.tui.source import ScriptedSource
from perfmon.tui.widgets.comparison import ComparisonTable
from perfmon.tui.widgets.keyed_table import Column, KeyedTable, plan_columns, shorten
from perfmon.tui.widgets.metrics_table import MetricsTable
from perfmon.tui.widgets.sessions_table import SessionsTable
from test_table_repaint import screen_lines
from test_tui import settle

COLS = (
    Column("id", "#"),
    Column("name", "name", fit=True, min_width=6),
    Column("a", "a", priority=2),
    Column("b", "b", priority=1),
    Column("spark", "spark", fill=True, min_width=4, max_width=10, priority=3),
)


def test_plan_keeps_everything_when_it_fits_and_gives_the_rest_to_fill() -> None:
    plan = plan_columns(COLS, [3, 20, 5, 5, 0], available=100, padding=1)
    assert plan.kept == (0, 1, 2, 3, 4) and plan.hidden == ()
    assert plan.widths == {"name": 20, "spark": 10}  # spark capped at its max_width


def test_plan_cuts_names_before_hiding_then_hides_lowest_priority_first() -> None:
    # everything at its narrowest: 3 + 6 + 5 + 5 + 4 + 5 * 2 padding = 33 cells
    plan = plan_columns(COLS, [3, 20, 5, 5, 0], available=33, padding=1)
    assert plan.hidden == () and plan.widths == {"name": 6, "spark": 4}
    plan = plan_columns(COLS, [3, 20, 5, 5, 0], available=32, padding=1)
    assert plan.hidden == ("b",) and plan.widths == {
        "name": 12,
        "spark": 4,
    }  # b's 7 cells go to the name
    plan = plan_columns(COLS, [3, 20, 5, 5, 0], available=20, padding=1)
    assert plan.hidden == ("a", "b")
    plan = plan_columns(COLS, [3, 20, 5, 5, 0], available=18, padding=1)
    assert plan.hidden == ("a", "b", "spark")
    # the columns come back when the panel widens
    assert plan_columns(COLS, [3, 20, 5, 5, 0], available=60, padding=1).hidden == ()


def test_plan_never_hides_columns_without_priority() -> None:
    plan = plan_columns(COLS, [3, 20, 5, 5, 0], available=5, padding=1)
    assert plan.kept == (0, 1)
    assert plan.widths["name"] == 6


def test_plan_shares_the_room_among_fit_columns_by_water_filling() -> None:
    cols = (Column("x", "x", fit=True, min_width=4), Column("y", "y", fit=True, min_width=4))
    # 30 cells less 4 of padding: x wants 5 (gets it), y gets the other 21 of its 40
    assert plan_columns(cols, [5, 40], available=30).widths == {"x": 5, "y": 21}
    assert plan_columns(cols, [30, 40], available=30).widths == {"x": 13, "y": 13}


def assert_nothing_cut(table: KeyedTable[Any]) -> None:
    """Every shown cell whole on its line; shortened names end in "…"; no sideways scroll."""
    region = table.scrollable_content_region
    assert table.virtual_size.width <= region.width, (table.id, table.virtual_size, region)
    lines = [x for x in screen_lines(table) if not x.startswith(("╭", "╰"))]
    header = lines[0]
    for key in table.shown_columns:
        label = next(c.label for c in table.COLUMNS if c.key == key)
        assert label in header, (table.id, label, header)
    top = int(table.scroll_y)
    visible = len(lines) - table.header_height
    for index, row_key in enumerate(table.row_keys[top : top + visible]):
        line = lines[table.header_height + index]
        for i, key in enumerate(table.shown_columns):
            col = next(c for c in table.COLUMNS if c.key == key)
            shown = table.cell_text(row_key, key)
            raw = table._raw[row_key][[c.key for c in table.COLUMNS].index(key)].text
            assert shown.strip() in line, (table.id, row_key, key, shown, line)
            if col.fit:
                # cut with "…", or a split metric's name with its label keys left out
                same_name = "{" in raw and shown.split("{")[0] == raw.split("{")[0]
                assert shown == raw or "…" in shown or same_name, (table.id, key, shown, raw)
            else:
                assert shown == raw, (table.id, key, shown, raw)
            del i


# The hidden columns at each size (sessions, metrics, comparison); "None": panel not shown.
EXPECTED = {
    (60, 30): (("set", "params", "rss"), ("max", "n", "trend"), ("n", "dist")),
    (80, 24): (("params",), None, ()),
    (100, 30): ((), (), ()),
    (160, 50): (("params",), (), ()),
    (200, 50): ((), (), ()),
}


@pytest.mark.slow
@pytest.mark.parametrize("size", list(EXPECTED), ids=[f"{w}x{h}" for w, h in EXPECTED])
async def test_no_table_cuts_a_number_at_any_size(size: tuple[int, int]) -> None:
    app = PerfmonApp(ScriptedSource([hard_snapshot()]))
    async with app.run_test(size=size) as pilot:
        await settle(pilot, app)
        tables = (
            app.query_one(SessionsTable),
            app.query_one(MetricsTable),
            app.query_one(ComparisonTable),
        )
        hidden: list[tuple[str, ...] | None] = []
        for table in tables:
            if not table.display or not table.size.height:
                hidden.append(None)
                continue
            assert_nothing_cut(table)
            hidden.append(table.hidden_columns)
        assert tuple(hidden) == EXPECTED[size], hidden


@pytest.mark.slow
async def test_hidden_columns_come_back_when_the_terminal_widens() -> None:
    app = PerfmonApp(ScriptedSource([hard_snapshot()]))
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot, app)
        sessions = app.query_one(SessionsTable)
        sessions.focus()
        await pilot.press("down", "down", "down")
        row = sessions.cursor_row
        assert sessions.hidden_columns == ()
        await pilot.resize_terminal(80, 40)
        await settle(pilot, app)
        assert "params" in sessions.hidden_columns
        assert "hidden: " in str(sessions.border_title)
        assert sessions.cursor_row == row
        assert_nothing_cut(sessions)
        await pilot.resize_terminal(200, 50)
        await settle(pilot, app)
        assert sessions.hidden_columns == ()
        assert str(sessions.border_title) == "Sessions"
        assert_nothing_cut(sessions)


@pytest.mark.slow
async def test_a_rebuild_keeps_the_scroll_position() -> None:
    app = PerfmonApp(ScriptedSource([hard_snapshot()]))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        sessions = app.query_one(SessionsTable)
        # the user scrolled back to session 20 (the table stops following the newest)
        sessions.scroll_to(y=20, animate=False, immediate=True)
        sessions.follow = False
        await settle(pilot, app)
        assert sessions.scroll_y == 20 and sessions.hidden_columns == ()
        await pilot.resize_terminal(80, 24)
        await settle(pilot, app)
        after: tuple[str, ...] = tuple(sessions.hidden_columns)  # read again after the resize
        assert after == ("params",)
        assert sessions.scroll_y == 20
        shown = [line for line in screen_lines(sessions) if "tgat" in line]
        assert shown and shown[0].split()[1] == "20", shown
        assert_nothing_cut(sessions)
        # following again, a rebuild keeps the newest session in view
        sessions.follow = True
        await pilot.resize_terminal(100, 30)
        await settle(pilot, app)
        assert sessions.hidden_columns == () and sessions.scroll_y == sessions.max_scroll_y


def test_shorten_never_cuts_inside_a_word_when_a_space_fits() -> None:
    assert shorten("events=117 heads=16 seq=4096", 18) == "events=117…"
