"""The comparison panel and the layouts in the viewer (issue 14, points 1 and 2)."""

from __future__ import annotations

from dataclasses import replace

from fixed_run import fixed_snapshot
from perfmon.core.snapshot import ComparisonSide
from perfmon.tui.app import PerfmonApp, layout_classes
from perfmon.tui.screens.comparison import (
    ComparisonScreen,
    histogram,
    marks_line,
    stretch,
)
from perfmon.tui.source import ScriptedSource
from perfmon.tui.widgets.comparison import ComparisonTable, box_plot, items_of
from perfmon.tui.widgets.gate_board import GateBoard
from perfmon.tui.widgets.keyed_table import shorten

# -- pure -----------------------------------------------------------------------------------


def side(low: float, q1: float, med: float, q3: float, high: float) -> ComparisonSide:
    return ComparisonSide("v", 10, med, q1, q3, low, high)


def test_box_plot_draws_whiskers_box_and_median_on_the_common_scale() -> None:
    assert box_plot(side(0, 2.5, 5, 7.5, 10), 0, 10, 11) == "──▒▒▒█▒▒▒──"
    # the same side on a wider scale occupies its own part of it
    assert box_plot(side(0, 2.5, 5, 7.5, 10), 0, 20, 21) == "──▒▒▒█▒▒▒──" + " " * 10
    plot = box_plot(side(10, 12, 14, 16, 20), 0, 20, 21)
    assert plot.startswith(" " * 10) and plot.index("█") == 14 and plot.endswith("─")
    assert box_plot(ComparisonSide("v", 0, None, None, None, None, None), 0, 1, 5) == "     "
    assert box_plot(side(3, 3, 3, 3, 3), 3, 3, 5) == "  █  "


def test_histogram_marks_and_stretch() -> None:
    assert histogram((0.0, 0.0, 1.0), 0.0, 1.0, 3) == "█ ▄"
    assert marks_line([False, True, False], 3) == " ▲"
    assert marks_line([True] + [False] * 9, 5) == "▲"
    values, flags = stretch((1.0, 2.0), [False, True], 6)
    assert values == (1.0, 1.0, 1.0, 2.0, 2.0, 2.0) and flags == [False] * 3 + [True] * 3


def test_shorten_cuts_at_a_word_never_inside_a_number() -> None:
    text = "speedup = 1.05x [1.01, 1.09] 95% anytime-valid"
    assert shorten(text, 100) == text
    cut = shorten(text, 24)
    assert cut == "speedup = 1.05x [1.01…"
    assert len(cut) <= 24
    assert shorten("abcdefghij", 5) == "abcd…"


def test_items_put_the_reference_first_with_the_group_on_its_first_row() -> None:
    snap = fixed_snapshot()
    items = items_of(snap.comparison, "session_seconds")
    assert [i.side.variant for i in items[:2]] == ["baseline", "candidate"]
    assert items[0].group == "events=117" and items[1].group == ""
    assert items[0].ratio is None and items[1].ratio is not None
    assert len(items) == 8
    assert items_of(None, "session_seconds") == []


def test_layout_classes_by_terminal_size() -> None:
    assert layout_classes(80, 24) == {"-wide": False, "-short": True}
    assert layout_classes(100, 30) == {"-wide": False, "-short": False}
    assert layout_classes(200, 50) == {"-wide": True, "-short": False}


# -- the app ----------------------------------------------------------------------------------


async def test_the_panel_shows_each_variant_and_the_ratio_in_the_metric_direction() -> None:
    snap = fixed_snapshot()
    assert snap.comparison is not None
    app = PerfmonApp(ScriptedSource([snap]))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        table = app.query_one(ComparisonTable)
        row = snap.comparison.rows_of("session_seconds")[1]  # events=268
        key = f"{row.key}|candidate"
        change = table.cell_text(key, "change")
        assert change == f"● {row.ratios[0].text}"
        assert "faster" in change
        assert table.cell_text(f"{row.key}|baseline", "change") == "reference"
        assert table.cell_text(f"{row.key}|candidate", "n") == "10"
        assert "█" in table.cell_text(key, "dist")
        assert "session_seconds" in str(table.border_subtitle)
        assert "anytime-valid" in str(table.border_subtitle)
        await pilot.press("m")
        await pilot.pause()
        assert app.comparison_metric() == "session_peak_rss_bytes"
        assert "session_peak_rss_bytes" in str(table.border_subtitle)
        rss_row = snap.comparison.rows_of("session_peak_rss_bytes")[0]
        assert "larger" in table.cell_text(f"{rss_row.key}|candidate", "change")
        await pilot.press("m")
        await pilot.pause()
        assert app.comparison_metric() == "session_seconds"


async def test_enter_opens_the_detail_and_it_follows_new_snapshots() -> None:
    snap = fixed_snapshot(6)
    later = fixed_snapshot(10)
    src = ScriptedSource([snap, later])
    app = PerfmonApp(src)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.query_one(ComparisonTable).focus()
        await pilot.press("down", "down", "enter")  # events=268, baseline (an outlier)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ComparisonScreen)
        assert screen.row is not None and screen.row.params == "events=268"
        assert [s.n for s in screen.row.sides] == [6, 6]
        src.advance()
        app.poll()
        await pilot.pause()
        assert [s.n for s in screen.row.sides] == [10, 10]
        order = str(screen.query_one("#cmp-order").render())
        assert "▲" in order  # session 7 of the baseline at 268 events
        dist = str(screen.query_one("#cmp-dist").render())
        assert "1 outlier" in dist
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ComparisonScreen)


async def test_a_snapshot_without_a_panel_says_what_it_needs() -> None:
    app = PerfmonApp(ScriptedSource([replace(fixed_snapshot(), comparison=None)]))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        table = app.query_one(ComparisonTable)
        assert table.row_count == 0
        assert "two variants" in str(table.border_subtitle)
        await pilot.press("tab", "tab", "enter")
        await pilot.pause()
        assert not isinstance(app.screen, ComparisonScreen)


async def test_80x24_shows_verdict_gates_and_comparison_and_cuts_no_reason_mid_number() -> None:
    app = PerfmonApp(ScriptedSource([fixed_snapshot()]))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.has_class("-short") and not app.has_class("-wide")
        assert not app.query_one("#metrics").display
        gates = app.query_one(GateBoard)
        comparison = app.query_one(ComparisonTable)
        for widget in (gates, comparison):
            assert widget.region.height >= 5 and widget.region.bottom <= 23
        reason = gates.cell_text("Performance", "reason")
        assert reason.endswith("…") and "[1.01" in reason
        region = gates.scrollable_content_region
        width = sum(c.get_render_width(gates) for c in gates.columns.values())
        assert width <= region.width


async def test_200x50_puts_the_panels_side_by_side() -> None:
    app = PerfmonApp(ScriptedSource([fixed_snapshot()]))
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        assert app.has_class("-wide")
        sessions = app.query_one("#sessions").region
        gates = app.query_one("#gates").region
        comparison = app.query_one("#comparison").region
        metrics = app.query_one("#metrics").region
        assert sessions.x < gates.x and sessions.y == gates.y
        assert comparison.x == sessions.x and comparison.y > sessions.y
        assert metrics.x == gates.x
        # the box plots grew with the panel
        assert app.query_one(ComparisonTable).box_width > 20


def test_ratio_cell_says_the_state_in_words_and_colours_the_direction() -> None:
    from perfmon.core.snapshot import ComparisonRatio
    from perfmon.tui.widgets.comparison import ratio_cell

    better = ComparisonRatio("b", "a", "decided", "1.4x faster [1.3, 1.5]", 1.4, 1.3, 1.5)
    assert ratio_cell(better, "session_seconds")[:2] == ("● 1.4x faster [1.3, 1.5]", "success")
    worse = replace(better, text="2x slower [1.8, 2.2]", factor=0.5, low=0.45, high=0.55)
    assert ratio_cell(worse, "session_seconds").role == "error"
    open_ = replace(better, state="undecided", text="1.01x faster [0.9, 1.1]")
    assert ratio_cell(open_, "session_seconds").text.endswith("(no clear change yet)")
    assert ratio_cell(open_, "session_seconds", True).text.endswith("(no clear change)")
    fixed = replace(better, state="provisional", p_value=0.0043)
    cell = ratio_cell(fixed, "session_seconds")
    assert cell.text == "~ 1.4x faster [1.3, 1.5] p = 0.0043 (provisional)"
    assert cell.role == "warning"
