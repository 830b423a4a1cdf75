"""SVG snapshots of the flame and timeline screens at 80x24, 100x30 and 200x50 (deterministic).

Fixed data only: the snapshot comes from ``tests.test_tui.snapshot`` (fixed times), the
profiles are written from constants into a temporary run directory (its path is never drawn),
the theme is fixed and no keys file is read. Update with ``pytest --snapshot-update`` and look
at the SVGs before committing them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from perfmon.core.snapshot import GateChange, ProfileEntry
from perfmon.core.stacks import DiffNode
from perfmon.engine.profiler import INDEX_FILE, PROFILES_DIR
from perfmon.tui.app import PerfmonApp
from perfmon.tui.screens.flame import FlameScreen, aggregate_view, diff_view
from perfmon.tui.source import StaticSource
from perfmon.tui.widgets.flame import FlameView
from test_tui import T0, snapshot

SIZES = [(80, 24), (100, 30), (200, 50)]

TGAT_ROOT = 'process {pid}:"python -m samples.tgat_attention --events 512 --impl {impl}"'
MODULE = "<module> (tgat_attention.py:1)"
MAIN = "main (tgat_attention.py:80)"
STACKS = {
    "math": [
        ([MODULE, MAIN, "attention_math (tgat_attention.py:20)", "matmul (functional.py:10)"], 620),
        (
            [MODULE, MAIN, "attention_math (tgat_attention.py:20)", "softmax (functional.py:30)"],
            180,
        ),
        ([MODULE, MAIN, "build_edges (dag.py:12)"], 120),
        ([MODULE, MAIN, "write_parquet (io.py:44)"], 80),
    ],
    "sdpa": [
        ([MODULE, MAIN, "attention_sdpa (tgat_attention.py:40)", "sdpa (functional.py:50)"], 390),
        ([MODULE, MAIN, "attention_sdpa (tgat_attention.py:40)", "mask (masks.py:8)"], 90),
        ([MODULE, MAIN, "build_edges (dag.py:12)"], 125),
        ([MODULE, MAIN, "write_parquet (io.py:44)"], 85),
    ],
}
GZIP = [(["<module> (gz.py:1)", "compress (gzip.py:100)", "deflate (zlib.py:7)"], 300)]


def _collapsed(root: str, stacks: list[tuple[list[str], int]]) -> str:
    return "".join(";".join([root, *frames]) + f" {n}\n" for frames, n in stacks)


def _profile(name: str, session: int, workload: str, variant: str, samples: int) -> dict[str, Any]:
    return {
        "name": name,
        "session": session,
        "workload": workload,
        "variant": variant,
        "params": "events=512",
        "set_name": "golden",
        "started_t": T0 + 60 * session,
        "seconds": 5.0,
        "rate_hz": 100,
        "nonblocking": False,
        "reason": "1 in 2 sessions of its variant",
        "status": "ok",
        "samples": samples,
        "errors": 0,
        "message": "",
        "pyspy_cpu_s": 0.4,
    }


def profiled_run_dir(run_dir: Path) -> list[dict[str, Any]]:
    """Write a run's profiles (two tgat variants, twice each; one gzip profile)."""
    folder = run_dir / PROFILES_DIR
    folder.mkdir(parents=True)
    records = []
    for k, (variant, impl) in enumerate(
        [("baseline", "math"), ("candidate", "sdpa"), ("baseline", "math"), ("candidate", "sdpa")]
    ):
        name = f"s{k + 2:04d}-p{k + 1:02d}"
        text = _collapsed(TGAT_ROOT.format(pid=100 + k, impl=impl), STACKS[impl])
        (folder / f"{name}.collapsed").write_text(text)
        records.append(_profile(name, k + 2, "tgat", variant, sum(n for _, n in STACKS[impl])))
    text = _collapsed('process 300:"gzip -6 big.bin"', GZIP)
    (folder / "s0009-p05.collapsed").write_text(text)
    records.append(_profile("s0009-p05", 9, "gzip", "candidate", 300))
    (folder / INDEX_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def gate_changes() -> list[dict[str, Any]]:
    return [
        {"t": T0 + 40, "gate": "Parity", "old": "pending", "new": "pass", "reason": "max ok"},
        {"t": T0 + 70, "gate": "Leak", "old": "pending", "new": "inconclusive", "reason": ""},
        {"t": T0 + 95, "gate": "RAM", "old": "pending", "new": "fail", "reason": "71.5%"},
    ]


def make_app(run_dir: Path) -> PerfmonApp:
    records = profiled_run_dir(run_dir)
    snap = snapshot(
        8,
        run_dir=str(run_dir),
        now_t=T0 + 120,
        profiles=tuple(ProfileEntry.from_dict(r) for r in records),
        gate_changes=tuple(GateChange.from_dict(c) for c in gate_changes()),
    )
    return PerfmonApp(StaticSource(snap), keys=False, theme="perfmon-dark")


async def open_flame_diff(pilot: Pilot[None]) -> None:
    await pilot.press("g")
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, FlameScreen)
    views = screen.query_one("#flame-views")
    ids = [views.get_option_at_index(i).id for i in range(views.option_count)]  # type: ignore[attr-defined]
    views.highlighted = ids.index(diff_view("tgat", "baseline", "candidate"))  # type: ignore[attr-defined]
    await pilot.pause()
    await pilot.pause()


async def open_timeline(pilot: Pilot[None]) -> None:
    await pilot.press("t")
    await pilot.pause()
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_flame_screen_diff(size: tuple[int, int], snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path / "run"), terminal_size=size, run_before=open_flame_diff)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_timeline_screen(size: tuple[int, int], snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path / "run"), terminal_size=size, run_before=open_timeline)


# -- the same data under pilot: what the snapshots show, asserted --------------------------


async def test_flame_views_are_per_workload_and_the_diff_lines_up(tmp_path: Path) -> None:
    app = make_app(tmp_path / "run")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_flame_diff(pilot)
        screen = app.screen
        assert isinstance(screen, FlameScreen)
        views = screen.query_one("#flame-views")
        labels = [str(views.get_option_at_index(i).prompt) for i in range(views.option_count)]  # type: ignore[attr-defined]
        # every profile names its workload; aggregates per (workload, variant); one diff
        assert labels[0].startswith("s9 gzip/candidate")
        assert labels[1].startswith("s5 tgat/candidate")
        assert "all gzip/candidate (1)" in labels and "all tgat/baseline (2)" in labels
        assert [x for x in labels if x.startswith("diff")] == ["diff tgat: baseline→candidate"]
        flame = screen.query_one(FlameView)
        root = flame.root
        assert isinstance(root, DiffNode)
        # the root process frames (whose command lines differ) are one frame: the workload
        assert list(root.children) == ['process "tgat"']
        edges = [n for n in root.walk() if n.name.startswith("build_edges")]
        assert len(edges) == 1 and edges[0].delta > 0  # a larger share of a faster run
        assert "compress" not in {n.name.split(" ")[0] for n in root.walk()}
        top = screen.query_one("#flame-top", DataTable)
        changes = {
            str(top.get_row_at(i)[3]): str(top.get_row_at(i)[2]) for i in range(top.row_count)
        }
        assert changes["matmul (functional.py:10)"] == "-62.0pp"
        # the aggregate of one workload's variant holds only its own profiles
        screen.open_view(aggregate_view("tgat", "baseline"))
        await pilot.pause()
        assert flame.root is not None and flame.root.weight == 2000
