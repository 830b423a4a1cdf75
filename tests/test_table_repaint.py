"""The keyed tables repaint only changed rows and cache rendered cells: what the screen shows
must still follow every update (values in place, growing cells, new rows, re-sorting, themes)."""

from __future__ import annotations

import dataclasses
from typing import Any

from textual.geometry import Region

from perfmon.tui.app import PerfmonApp
from perfmon.tui.source import ScriptedSource
from perfmon.tui.widgets.keyed_table import KeyedTable
from perfmon.tui.widgets.metrics_table import MetricsTable
from perfmon.tui.widgets.sessions_table import SessionsTable
from test_tui import settle, snapshot


def screen_lines(table: KeyedTable[Any]) -> list[str]:
    """The table's lines as the compositor gets them (through the widget's line cache)."""
    width, height = table.size
    return [strip.text for strip in table.render_lines(Region(0, 0, width, height))]


def line_of(table: KeyedTable[Any], needle: str) -> str:
    lines = [line for line in screen_lines(table) if needle in line]
    assert len(lines) == 1, (needle, screen_lines(table))
    return lines[0]


async def test_changed_cells_show_through_the_caches() -> None:
    first = snapshot(3)
    rows = list(first.sessions)
    src = ScriptedSource([first])
    app = PerfmonApp(src)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot, app)
        table = app.query_one(SessionsTable)
        before = screen_lines(table)
        assert "800 ms" in line_of(table, "running")
        # Same width (repainted in place), then wider than the column (measured again).
        for wall, samples in ((0.9, rows[3].samples), (1234.5, 98_765_432)):
            rows[3] = dataclasses.replace(rows[3], wall_s=wall, samples=samples)
            src.push(dataclasses.replace(first, sessions=tuple(rows)))
            await settle(pilot, app)
            running = line_of(table, "running")
            assert table.cell_text("3", "wall") in running and f"{samples:,}" in running
            if wall == 0.9:
                assert "900 ms" in running
                in_place = screen_lines(table)
                changed = [
                    i for i, (a, b) in enumerate(zip(before, in_place, strict=True)) if a != b
                ]
                assert changed == [before.index(next(x for x in before if "running" in x))]
        # A status change re-renders the row's cells; the finished row keeps its new text.
        rows[3] = dataclasses.replace(rows[3], status="ok", status_text="ok")
        src.push(dataclasses.replace(first, sessions=tuple(rows)))
        await settle(pilot, app)
        assert "running" not in "".join(screen_lines(table))


async def test_resorted_rows_render_in_their_new_places() -> None:
    first = snapshot(2)
    m = first.metrics
    src = ScriptedSource([dataclasses.replace(first, metrics=(m[0], m[2]))])
    app = PerfmonApp(src)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot, app)
        table = app.query_one(MetricsTable)
        screen_lines(table)
        src.push(dataclasses.replace(first, metrics=(m[0], m[1], m[2])))
        await settle(pilot, app)
        wanted = [m[0].name, m[1].name, m[2].name]
        shown = [w for line in screen_lines(table) for w in line.split() if w in wanted]
        assert shown == wanted


async def test_theme_change_restyles_cached_cells() -> None:
    src = ScriptedSource([snapshot(3)])
    app = PerfmonApp(src, theme="perfmon-dark")
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot, app)
        table = app.query_one(SessionsTable)

        def running_color() -> object:
            width, height = table.size
            for strip in table.render_lines(Region(0, 0, width, height)):
                for segment in strip:
                    if segment.text.strip() == "running" and segment.style is not None:
                        return segment.style.color
            raise AssertionError("no running cell on screen")

        dark = running_color()
        app.theme = "perfmon-light"
        await pilot.pause()
        assert running_color() != dark
