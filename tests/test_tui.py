"""Tests of the Textual viewer: keyed updates, gates, keys, help, themes, screenshots."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
from rich.color import Color
from textual.pilot import Pilot
from textual.theme import Theme

from perfmon.core.model import GateResult, GateState, MetricKind
from perfmon.core.snapshot import SNAPSHOT_VERSION, MetricSummary, RunState, SessionRow, Snapshot
from perfmon.tui.app import STOPPING_NOTE, PerfmonApp
from perfmon.tui.screens.help import HelpScreen
from perfmon.tui.source import ScriptedSource, SnapshotSource, StaticSource
from perfmon.tui.themes import ThemeError, load_theme_file, load_themes, theme_from_dict, themes_dir
from perfmon.tui.widgets.gate_board import GateBoard
from perfmon.tui.widgets.keyed_table import KeyedTable
from perfmon.tui.widgets.metrics_table import MetricsTable
from perfmon.tui.widgets.sessions_table import SessionsTable
from perfmon.tui.widgets.sparkline import BLOCKS, render_sparkline, resample
from perfmon.tui.widgets.status_bar import MessageLine, StatusBar

T0 = 1_700_000_000.0
CAMPAIGN = "attention-audit"

# -- snapshot builders (also used by test_tui_snapshots.py and the screenshot script) -----


def session(
    i: int,
    status: str = "pending",
    *,
    wall: float | None = None,
    rss: int | None = None,
    **kw: object,
) -> SessionRow:
    """A session row of the attention audit: interleaved baseline/candidate, golden set."""
    defaults = dict(
        id=i,
        workload="tgat",
        variant="baseline" if i % 2 == 0 else "candidate",
        set_name="golden",
        params=f"events={(117, 268, 512, 1024)[(i // 2) % 4]}",
        warmup=i < 2,
        status=status,
        status_text=status.replace("_", " "),
        wall_s=wall,
        cpu_s=wall,
        peak_rss_bytes=rss,
        samples=0 if status == "pending" else 40 + i,
        malformed=0,
    )
    defaults.update(kw)
    return SessionRow(**defaults)  # type: ignore[arg-type]


def metric(name: str, series: list[float], kind: str = MetricKind.GAUGE.value) -> MetricSummary:
    """A metric summary computed from ``series`` (p95 by nearest rank)."""
    ordered = sorted(series)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return MetricSummary(
        name=name,
        kind=kind,
        count=len(series),
        total=sum(series),
        last=series[-1],
        min=ordered[0],
        max=ordered[-1],
        mean=sum(series) / len(series),
        p50=ordered[len(ordered) // 2],
        p95=p95,
        series=tuple(series),
        series_span_s=len(series) * 2.0,
    )


def gate(name: str, state: GateState, reason: str = "", expr: str = "") -> GateResult:
    """A gate result."""
    return GateResult(
        name=name, expr=expr or f"max({name.lower()}) < 1", state=state, value=None, n=0,
        reason=reason,
    )  # fmt: skip


def snapshot(step: int, *, total: int = 12, **kw: object) -> Snapshot:
    """The run after ``step`` sessions finished: session ``step`` running, the rest pending."""
    rows = []
    for i in range(total):
        if i < step:
            status = "timeout" if i == 5 else "ok"
            rows.append(session(i, status, wall=2.0 + 0.1 * i, rss=(180 + 3 * i) * 2**20))
        elif i == step:
            rows.append(session(i, "running", wall=0.8, rss=150 * 2**20))
        else:
            rows.append(session(i))
    n = max(1, step) * 10
    metrics = (
        metric("attn_forward_seconds", [0.004 + 0.001 * math.sin(k / 3) for k in range(n)]),
        metric("chunks_total", [1.0] * n, kind=MetricKind.COUNTER.value),
        metric("rss_bytes", [(150 + k) * 2**20 for k in range(n)]),
        metric("sdpa_max_abs_diff", [3e-6 + 1e-7 * (k % 5) for k in range(n)], "value"),
        metric("session_seconds", [2.0 + 0.1 * k for k in range(max(1, step))], "histogram"),
        metric("system_memory_percent", [41.0 + (k % 7) * 0.5 for k in range(n)]),
    )
    gates = (
        gate(
            "Performance",
            GateState.PASS if step >= 4 else GateState.PENDING,
            "speedup 1.62× (95% CI 1.48–1.77) over 8 sessions, limit ≥ 1.4" if step >= 4 else "",
            "speedup(session_seconds, baseline, candidate) >= 1.4",
        ),
        gate(
            "Parity",
            GateState.PASS if step >= 1 else GateState.PENDING,
            "max = 3.4e-06 over 40 samples, limit ≤ 1e-4" if step >= 1 else "",
            "max(sdpa_max_abs_diff) <= 1e-4",
        ),
        gate(
            "RAM",
            GateState.FAIL if step >= 6 else GateState.PENDING,
            "max = 71.5% over 60 samples, limit ≤ 70" if step >= 6 else "",
            "max(system_memory_percent) <= 70",
        ),
        gate(
            "Leak",
            GateState.INCONCLUSIVE if step >= 2 else GateState.PENDING,
            "slope 0.8 MiB/h (95% CI −0.3–1.9), limit < 1MiB/h" if step >= 2 else "",
            "slope(rss_bytes) < 1MiB/h",
        ),
    )
    verdict = GateState.FAIL if step >= 6 else GateState.PENDING
    fields = dict(
        version=SNAPSHOT_VERSION,
        run_id=f"20250101T000000Z-{CAMPAIGN}",
        campaign=CAMPAIGN,
        run_dir=f"/tmp/runs/20250101T000000Z-{CAMPAIGN}",
        state=RunState.RUNNING,
        started_t=T0,
        now_t=T0 + 3723 + 5 * step,
        sessions_total=total,
        sessions_done=step,
        samples_total=sum(r.samples for r in rows),
        malformed_total=3 if step >= 5 else 0,
        sessions=tuple(rows),
        metrics=metrics,
        gates=gates,
        verdict=verdict.value,
        message=f"session {step} started: tgat candidate events=512" if step else "",
    )
    fields.update(kw)
    return Snapshot(**fields)  # type: ignore[arg-type]


def demo_script(steps: int = 9) -> list[Snapshot]:
    """A run of ``steps`` snapshots, each a new object."""
    return [snapshot(s) for s in range(steps)]


def close_to(color: Color | None, hex_color: str | None) -> bool:
    """True if a Rich colour is within 3/255 per channel of ``hex_color`` (Textual blends text
    colours by the theme's text alpha, which moves them by a unit or two)."""
    assert color is not None and color.triplet is not None
    assert hex_color is not None
    want = bytes.fromhex(hex_color.lstrip("#"))
    return all(abs(a - b) <= 3 for a, b in zip(color.triplet, want, strict=True))


async def settle(pilot: Pilot[None], app: PerfmonApp) -> None:
    """Poll the source now and let the screen refresh."""
    app.poll()
    await pilot.pause()


# -- source ------------------------------------------------------------------------------


def test_scripted_source_plays_in_order_and_records_commands() -> None:
    script = demo_script(3)
    src = ScriptedSource(script, finish_at_end=True)
    assert isinstance(src, SnapshotSource)
    assert src.latest() is script[0] and not src.finished
    assert src.advance() is script[1]
    assert src.advance() is script[2]
    assert src.finished
    src.send("pause")
    with pytest.raises(ValueError, match="unknown command"):
        src.send("reboot")
    src.close()
    with pytest.raises(OSError):
        src.send("stop")
    assert src.commands == ["pause"]


def test_static_source_is_finished() -> None:
    snap = snapshot(3)
    src = StaticSource(snap)
    assert src.latest() is snap and src.finished


# -- sparkline ---------------------------------------------------------------------------


def test_sparkline_scales_to_blocks_and_width() -> None:
    assert render_sparkline([0, 1, 2, 3, 4, 5, 6, 7], 8) == BLOCKS
    assert render_sparkline([], 10) == ""
    assert render_sparkline([5.0] * 4, 10) == BLOCKS[3] * 4
    assert render_sparkline([float("nan"), 1.0, 2.0], 10) == BLOCKS[0] + BLOCKS[-1]
    long = render_sparkline(list(range(1000)), 20)
    assert len(long) == 20 and long[0] == BLOCKS[0] and long[-1] == BLOCKS[-1]
    assert resample([1, 3, 5, 7], 2) == [2.0, 6.0]
    with pytest.raises(ValueError):
        resample([1.0], 0)


# -- app ---------------------------------------------------------------------------------


async def test_rows_appear_and_update_by_key() -> None:
    src = ScriptedSource(demo_script(4))
    app = PerfmonApp(src)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        table = app.query_one(SessionsTable)
        assert table.row_count == 12
        assert table.cell_text("0", "status") == "running"
        assert table.cell_text("1", "status") == "pending"
        assert table.cell_text("0", "wall") == "800 ms"
        src.advance()
        await settle(pilot, app)
        assert table.row_count == 12
        assert table.cell_text("0", "status") == "ok"
        assert table.cell_text("0", "wall") == "2 s"
        assert table.cell_text("1", "status") == "running"
        assert table.cell_text("1", "variant") == "candidate"
        # A session that only appears later is added, not rebuilt.
        bigger = snapshot(2, total=13)
        src.push(bigger)
        await settle(pilot, app)
        assert table.row_count == 13
        assert table.row_keys[-1] == "12"
        metrics = app.query_one(MetricsTable)
        assert metrics.row_keys == [m.name for m in bigger.metrics]
        assert metrics.cell_text("rss_bytes", "last") == "169 MiB"
        assert metrics.cell_text("system_memory_percent", "max") == "44%"
        assert metrics.cell_text("chunks_total", "last") == "Σ 20 · 0.5/s"  # total and rate
        assert set(metrics.cell_text("session_seconds", "trend")) <= set(BLOCKS)


async def test_metric_added_later_keeps_snapshot_order() -> None:
    first = snapshot(2)
    m = first.metrics
    src = ScriptedSource([dataclasses.replace(first, metrics=(m[0], m[2]))])
    app = PerfmonApp(src)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        table = app.query_one(MetricsTable)
        assert table.row_keys == [m[0].name, m[2].name]
        src.push(dataclasses.replace(first, metrics=(m[0], m[1], m[2])))
        await settle(pilot, app)
        assert table.row_keys == [m[0].name, m[1].name, m[2].name]


async def test_gates_turn_green_then_red() -> None:
    src = ScriptedSource([snapshot(0), snapshot(1), snapshot(6)])
    app = PerfmonApp(src)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        board = app.query_one(GateBoard)
        assert board.row_keys == ["Performance", "Parity", "RAM", "Leak"]
        assert board.cell_text("Parity", "state") == "… pending"
        assert board.cell_text("Parity", "reason") == "max(sdpa_max_abs_diff) <= 1e-4"
        src.advance()
        await settle(pilot, app)
        assert board.cell_text("Parity", "state") == "● pass"
        green = board.get_cell("Parity", "state").style
        assert board.cell_text("RAM", "state") == "… pending"
        src.advance()
        await settle(pilot, app)
        assert board.row_count == 4
        assert board.cell_text("RAM", "state") == "✗ fail"
        assert "71.5%" in board.cell_text("RAM", "reason")
        red = board.get_cell("RAM", "state").style
        assert green.color != red.color  # type: ignore[union-attr]
        assert close_to(red.color, app.current_theme.error)  # type: ignore[union-attr]
        status = app.query_one(StatusBar).text
        assert "✗ FAIL" in status and "malformed 3" in status
        assert "2 pass" in (board.border_subtitle or "")


async def test_theme_change_restyles_cells() -> None:
    src = ScriptedSource([snapshot(6)])
    app = PerfmonApp(src, theme="perfmon-dark")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        board = app.query_one(GateBoard)
        dark_red = board.get_cell("RAM", "state").style.color  # type: ignore[union-attr]
        app.theme = "perfmon-light"
        await pilot.pause()
        await pilot.pause()
        light_red = board.get_cell("RAM", "state").style.color  # type: ignore[union-attr]
        assert dark_red != light_red
        light = app.get_theme("perfmon-light")
        assert light is not None
        assert close_to(light_red, light.error)


async def test_q_sends_stop_then_exits_when_finished() -> None:
    src = ScriptedSource(demo_script(3))
    app = PerfmonApp(src, keys=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("q")  # asks first
        await pilot.pause()
        assert src.commands == []
        await pilot.press("y")
        await pilot.pause()
        assert src.commands == ["stop"]
        assert app.is_running
        status = app.query_one(StatusBar).text
        assert STOPPING_NOTE in status and "STOPPING" in status
        src.finish(snapshot(3, state=RunState.FINISHED))
        await settle(pilot, app)
        await pilot.pause()
        assert not app.is_running


async def test_second_q_quits_at_once() -> None:
    src = ScriptedSource(demo_script(3))
    app = PerfmonApp(src, keys=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("q", "y")
        await pilot.pause()
        assert app.is_running
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
    assert src.commands == ["stop"]


async def test_finished_run_keeps_final_snapshot_and_q_quits() -> None:
    src = ScriptedSource([snapshot(6)])
    app = PerfmonApp(src, keys=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        src.finish()
        await settle(pilot, app)
        status = app.query_one(StatusBar).text
        assert "FINISHED" in status and "FAIL" in status
        assert app.query_one(SessionsTable).row_count == 12
        await pilot.press("p")  # no pause once the run is over
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
    assert src.commands == []


async def test_p_pauses_then_resumes() -> None:
    src = ScriptedSource(demo_script(2))
    app = PerfmonApp(src)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("p")
        assert src.commands == ["pause"]
        assert "pause requested" in app.query_one(MessageLine).text
        await pilot.press("p")
        assert src.commands == ["pause", "resume"]
        # The daemon reports it paused (e.g. paused by another viewer): p resumes.
        src.push(snapshot(1, state=RunState.PAUSED))
        await settle(pilot, app)
        await pilot.press("p")
        assert src.commands == ["pause", "resume", "resume"]


async def test_e_sends_export_and_message_line_follows_the_run() -> None:
    src = ScriptedSource(demo_script(3))
    app = PerfmonApp(src)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        line = app.query_one(MessageLine)
        assert line.text == ""
        await pilot.press("e")
        assert src.commands == ["export"]
        assert "export requested" in line.text
        src.push(snapshot(1, message="report written to /tmp/runs/x/report.md"))
        await settle(pilot, app)
        assert line.text == "report written to /tmp/runs/x/report.md"


async def test_send_failure_is_shown_not_raised() -> None:
    src = ScriptedSource(demo_script(2))
    src.close()
    app = PerfmonApp(src)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("e")
        assert "could not send 'export'" in app.query_one(MessageLine).text


async def test_help_opens_and_escape_closes() -> None:
    app = PerfmonApp(ScriptedSource(demo_script(2)))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


async def test_tab_moves_focus_between_panels() -> None:
    app = PerfmonApp(ScriptedSource(demo_script(2)))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        seen = [app.focused.id if app.focused else None]
        for _ in range(3):
            await pilot.press("tab")
            seen.append(app.focused.id if app.focused else None)
        assert seen == ["sessions", "gates", "comparison", "metrics"]


async def test_no_snapshot_yet_shows_waiting() -> None:
    src = ScriptedSource(demo_script(2), start=False)
    app = PerfmonApp(src)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        assert "waiting for the first snapshot" in app.query_one(StatusBar).text
        src.advance()
        await settle(pilot, app)
        assert CAMPAIGN in app.query_one(StatusBar).text


async def test_sessions_follow_running_row_until_user_scrolls() -> None:
    total = 60
    src = ScriptedSource([snapshot(0, total=total)])
    app = PerfmonApp(src)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        table = app.query_one(SessionsTable)
        src.push(snapshot(40, total=total))
        await settle(pilot, app)
        await pilot.pause()
        visible = table.scrollable_content_region.height - table.header_height
        assert table.scroll_y <= 40 < table.scroll_y + visible
        table.scroll_to(y=0, animate=False, immediate=True)
        await pilot.pause()
        src.push(snapshot(50, total=total))
        await settle(pilot, app)
        await pilot.pause()
        assert not table.follow
        assert table.scroll_y == 0


def test_bad_arguments_are_refused() -> None:
    src = StaticSource(snapshot(1))
    with pytest.raises(ValueError, match="refresh_hz"):
        PerfmonApp(src, refresh_hz=0)
    with pytest.raises(ValueError, match="unknown theme"):
        PerfmonApp(src, theme="no-such-theme")
    assert PerfmonApp(src, theme="nord").theme == "nord"


async def test_screenshot_contains_campaign(tmp_path: Path) -> None:
    app = PerfmonApp(StaticSource(snapshot(6)))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        path = app.save_screenshot(path=str(tmp_path), filename="perfmon.svg")
    svg = Path(path).read_text(encoding="utf-8")
    assert svg.startswith("<svg")
    assert CAMPAIGN.replace("-", "&#8209;") in svg or CAMPAIGN in svg


# -- themes ------------------------------------------------------------------------------


def test_theme_files_parse_into_themes() -> None:
    directory = themes_dir()
    assert directory is not None
    themes = load_themes(directory)
    assert set(themes) >= {"perfmon-dark", "perfmon-light"}
    dark = load_theme_file(directory / "perfmon-dark.toml")
    light = load_theme_file(directory / "perfmon-light.toml")
    assert isinstance(dark, Theme) and isinstance(light, Theme)
    assert dark.dark and not light.dark
    for theme in (dark, light):
        for key in ("primary", "secondary", "accent", "foreground", "background", "surface",
                    "panel", "success", "warning", "error"):  # fmt: skip
            assert getattr(theme, key), (theme.name, key)
        theme.to_color_system().generate()


def test_bad_theme_files_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ThemeError, match="'primary'"):
        theme_from_dict({"name": "x"}, source="x.toml")
    with pytest.raises(ThemeError, match="unknown key"):
        theme_from_dict({"name": "x", "primary": "#fff", "primry": "#000"})
    with pytest.raises(ThemeError, match="'error'"):
        theme_from_dict({"name": "x", "primary": "#fff", "error": "not-a-colour"})
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n", encoding="utf-8")
    with pytest.raises(ThemeError, match=r"bad\.toml"):
        load_theme_file(bad)


async def test_same_snapshot_is_not_applied_again() -> None:
    src = ScriptedSource(demo_script(3))
    app = PerfmonApp(src)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        tables: list[KeyedTable[Any]] = [
            app.query_one(SessionsTable),
            app.query_one(GateBoard),
            app.query_one(MetricsTable),
        ]
        counts = [t._update_count for t in tables]
        status = app.query_one(StatusBar)
        shown = status._last
        for _ in range(3):
            await settle(pilot, app)
        assert [t._update_count for t in tables] == counts
        assert status._last is shown
        # An equal snapshot in a new object changes no cell either.
        latest = src.latest()
        assert latest is not None
        src.push(dataclasses.replace(latest))
        await settle(pilot, app)
        assert [t._update_count for t in tables] == counts
        src.advance()
        await settle(pilot, app)
        assert [t._update_count for t in tables] != counts


async def test_sessions_panel_shows_the_recording_size() -> None:
    src = ScriptedSource([dataclasses.replace(snapshot(3), disk_bytes=3 * 2**20)])
    app = PerfmonApp(src)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        subtitle = str(app.query_one(SessionsTable).border_subtitle)
        assert subtitle == "3/12 done · recorded 3 MiB on disk"
