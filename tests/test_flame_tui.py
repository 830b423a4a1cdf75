"""The flame screen on real py-spy data: a CPU-bound campaign run under perfmon, then viewed."""

from __future__ import annotations

import asyncio
import dataclasses
import textwrap
import time

import pytest
from textual.widgets import DataTable

from perfmon.core.campaign import parse_campaign
from perfmon.core.snapshot import SessionRow, Snapshot
from perfmon.core.stacks import DiffNode, StackNode
from perfmon.engine.profiler import find_py_spy, load_index
from perfmon.engine.recorder import make_run_dir
from perfmon.engine.runner import Runner
from perfmon.tui.app import PerfmonApp
from perfmon.tui.screens.flame import FlameScreen, aggregate_view, diff_view
from perfmon.tui.source import ScriptedSource, StaticSource, is_command
from perfmon.tui.widgets.flame import FlameView, _laid_out

WORKLOAD = textwrap.dedent(
    """
    import os, sys, time

    def slow_path(n):
        return sum(i * i for i in range(n))

    def fast_path(n):
        return sum(range(n))

    def main(seconds):
        impl = slow_path if os.environ.get("WORK_IMPL", "slow") == "slow" else fast_path
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            impl(2000)

    main(float(sys.argv[1]))
    """
)

CAMPAIGN = """
[campaign]
name = "flame-tui"
sample_interval = "100ms"

[[workload]]
name = "cpu"
command = ["{python}", "SCRIPT", "1.5"]

[variant.baseline]
env = { WORK_IMPL = "slow" }
[variant.candidate]
env = { WORK_IMPL = "fast" }

[set.golden]
sessions = 1

[profile]
every = 1
"""


@pytest.fixture(scope="module")
def profiled_run(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    """A real run of two CPU-bound sessions, each sampled by py-spy; its last snapshot."""
    if find_py_spy() is None:
        pytest.skip("py-spy is not installed")
    tmp = tmp_path_factory.mktemp("flame")
    script = tmp / "cpu_work.py"
    script.write_text(WORKLOAD)
    path = tmp / "flame.toml"
    path.write_text(CAMPAIGN.replace("SCRIPT", str(script)))
    campaign = parse_campaign(path.read_text(), path)
    run_dir = make_run_dir(tmp / "runs", "flame-tui", time.time())
    runner = Runner(campaign, run_dir)
    asyncio.run(runner.run())
    records = load_index(run_dir)
    if not all(r.ok for r in records):
        pytest.skip(f"py-spy could not sample here: {records[0].message if records else '?'}")
    return runner.snapshot()


@pytest.mark.slow
async def test_flame_screen_shows_real_profiles_and_navigates(profiled_run: Snapshot) -> None:
    app = PerfmonApp(StaticSource(profiled_run))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("g")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, FlameScreen)
        flame = screen.query_one(FlameView)
        # Newest profile first: the candidate session's stacks, hot in fast_path.
        assert screen.view_id == profiled_run.profiles[-1].name
        assert isinstance(flame.root, StackNode) and flame.root.total > 20
        rows = flame.rows()
        assert rows[0][0][0] is flame.root and rows[0][0][1:] == (0, flame.size.width)
        top = screen.query_one("#flame-top", DataTable)
        assert top.row_count > 0
        first = str(top.get_row_at(0)[2])
        assert first.startswith("fast_path")

        # Into the tree with down, out with up; enter zooms, backspace unzooms.
        await pilot.press("down")
        child = flame.selected
        assert child is not None and child.parent is flame.root
        await pilot.press("down", "down")
        deep = flame.selected
        assert deep is not None and deep.parent is not None and deep.parent.parent is child
        await pilot.press("enter")
        assert flame.zoom is deep
        assert flame.rows()[0][0][0] is deep
        await pilot.press("backspace")
        assert flame.zoom is deep.parent
        await pilot.press("up")
        assert flame.selected is deep.parent
        detail = str(screen.query_one("#flame-detail").render())
        assert "total" in detail and "self" in detail

        # Search by function name selects the largest match.
        await pilot.press("slash")
        await pilot.press(*"fast_path", "enter")
        await pilot.pause()
        assert screen.matches and flame.selected is screen.matches[0]
        assert flame.selected.name.startswith("fast_path")
        assert id(flame.selected) in flame.matches

        # The diff view: candidate against baseline.
        screen.open_view(diff_view("cpu", "baseline", "candidate"))
        await pilot.pause()
        assert isinstance(flame.root, DiffNode)
        grew = next(n for n in flame.root.walk() if n.name.startswith("fast_path"))
        shrank = next(n for n in flame.root.walk() if n.name.startswith("slow_path"))
        assert grew.delta > 0.3 and shrank.delta < -0.3
        theme = app.theme_variables
        from textual.color import Color

        panel = Color.parse(theme["panel"])
        red = Color.parse(theme["error"])
        want = panel.blend(red, 0.25 + 0.75 * grew.delta / flame._biggest)
        got = flame._colour(grew)
        # the same blend; channels may differ by one from rounding the delta's float
        assert all(abs(a - b) <= 1 for a, b in zip(got.rgb, want.rgb, strict=True)), (got, want)
        assert str(top.get_row_at(0)[2]).endswith("pp")

        screen.open_view(aggregate_view("cpu", "baseline"))
        await pilot.pause()
        assert str(top.get_row_at(0)[2]).startswith(("slow_path", "<genexpr>"))

        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, FlameScreen)


async def test_f_sends_profile_for_the_selected_running_session() -> None:
    row = SessionRow(
        id=4,
        workload="cpu",
        variant="baseline",
        set_name="golden",
        params="",
        warmup=False,
        status="running",
        status_text="running",
        wall_s=1.0,
        cpu_s=None,
        peak_rss_bytes=None,
        samples=0,
        malformed=0,
    )
    snap = Snapshot(
        version=1,
        run_id="r",
        campaign="c",
        run_dir="/nonexistent",
        state="running",
        started_t=0.0,
        now_t=1.0,
        sessions_total=5,
        sessions_done=4,
        samples_total=0,
        malformed_total=0,
        sessions=(row,),
    )
    source = ScriptedSource([snap])
    app = PerfmonApp(source)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("f")
        assert source.commands == ["profile 4 5"]
        source.push(dataclasses.replace(snap, sessions=(dataclasses.replace(row, status="ok"),)))
        await pilot.pause(0.5)
        await pilot.press("f")
        assert source.commands[-1] == "profile"
        await pilot.press("g")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, FlameScreen)
        detail = str(screen.query_one("#flame-detail").render())
        assert "No profile yet" in detail


def test_is_command() -> None:
    assert is_command("profile") and is_command("profile 3") and is_command("profile 3 2.5")
    assert not is_command("profile x") and not is_command("profile 1 0") and not is_command("rm")


def test_layout_is_proportional_and_bounded() -> None:
    from perfmon.core.stacks import parse_collapsed

    tree = parse_collapsed("a;b 30\na;c 10\nd 40\n")
    rows = _laid_out(tree.root, 80, 2)
    assert len(rows) == 2  # depth cut at the height
    assert [(n.name, x0, x1) for n, x0, x1 in rows[1]] == [("a", 0, 40), ("d", 40, 80)]
    assert _laid_out(tree.root, 0, 5) == [[] for _ in range(5)]
