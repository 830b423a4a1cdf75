"""Profiles per (workload, variant): root-frame normalisation, exports, replay, scheduling."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from perfmon.core.campaign import parse_campaign
from perfmon.core.live import LiveState
from perfmon.core.snapshot import RunState
from perfmon.core.stacks import DiffTree, StackTree, parse_collapsed, root_frame_name
from perfmon.engine.fake_executor import FakeExecutor, FakeSession
from perfmon.engine.flame_export import diff_pairs, profiles_section, variant_trees, write_exports
from perfmon.engine.profiler import INDEX_FILE, PROFILES_DIR, ProfileRecord
from perfmon.engine.recorder import make_run_dir
from perfmon.engine.replay import with_recorded_profiles
from perfmon.engine.runner import Runner

# Two variants of pyperformance's nbody that differ by their arguments: the session's own
# process frame (its command line) differs, everything below it is the same code.
NBODY_BASE = (
    'process 101:"python bm_nbody.py --loops 10";<module> (bm_nbody.py:1);'
    "advance (bm_nbody.py:60) 900\n"
    'process 101:"python bm_nbody.py --loops 10";<module> (bm_nbody.py:1);'
    "report_energy (bm_nbody.py:90) 100\n"
)
NBODY_CAND = (
    'process 202:"python bm_nbody.py --loops 10 --fast";<module> (bm_nbody.py:1);'
    "advance (bm_nbody.py:60) 870\n"
    'process 202:"python bm_nbody.py --loops 10 --fast";<module> (bm_nbody.py:1);'
    "report_energy (bm_nbody.py:90) 130\n"
)


def test_root_process_frames_differing_by_args_do_not_line_up_without_normalising() -> None:
    diff = DiffTree(parse_collapsed(NBODY_BASE), parse_collapsed(NBODY_CAND))
    advance = [n for n in diff.root.walk() if n.name.startswith("advance")]
    # The failure the issue saw: the same function twice, once vanished, once new.
    assert sorted(round(n.delta, 2) for n in advance) == [-0.9, 0.87]


def test_with_root_makes_the_same_function_line_up_across_variants() -> None:
    root = root_frame_name("nbody")
    base = parse_collapsed(NBODY_BASE).with_root(root)
    cand = parse_collapsed(NBODY_CAND).with_root(root)
    assert list(base.root.children) == list(cand.root.children) == [root]
    assert base.total == 1000 and cand.total == 1000
    diff = DiffTree(base, cand)
    (advance,) = [n for n in diff.root.walk() if n.name.startswith("advance")]
    assert advance.delta == pytest.approx(-0.03)
    assert advance.path() == (root, "<module> (bm_nbody.py:1)", "advance (bm_nbody.py:60)")
    # the function table agrees with the graph
    change = {f.name: f.delta_self for f in diff.top_changes(5)}
    assert change["advance (bm_nbody.py:60)"] == pytest.approx(-0.03)


def test_with_root_keeps_stacks_without_a_process_frame_and_deeper_process_frames() -> None:
    tree = StackTree()
    tree.add_stack(["main (a.py:1)", "f (a.py:2)"], 3)
    tree.add_stack(['process 7:"python a.py"', 'process 9:"python child.py"', "g (c.py:1)"], 2)
    tree.malformed = 4
    out = tree.with_root("W")
    assert sorted(out.root.children) == ["W", "main (a.py:1)"]
    assert out.find(["W", 'process 9:"python child.py"', "g (c.py:1)"]) is not None
    assert out.total == 5 and out.malformed == 4
    # the original is left alone
    assert 'process 7:"python a.py"' in tree.root.children


def _record(name: str, session: int, workload: str, variant: str, samples: int) -> ProfileRecord:
    return ProfileRecord(
        name=name,
        session=session,
        workload=workload,
        variant=variant,
        params="",
        set_name="golden",
        started_t=1000.0 + session,
        seconds=1.0,
        rate_hz=100,
        nonblocking=False,
        reason="every session",
        status="ok",
        samples=samples,
        errors=0,
        message="",
    )


def write_profiles(run_dir: Path, profiles: list[tuple[ProfileRecord, str]]) -> None:
    """A run directory's profiles as the profiler leaves them (index + collapsed files)."""
    folder = run_dir / PROFILES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for rec, text in profiles:
        (folder / f"{rec.name}.collapsed").write_text(text)
        lines.append(json.dumps(rec.to_dict()))
    (folder / INDEX_FILE).write_text("\n".join(lines) + "\n{torn")


OTHER = 'process 303:"python gz.py";compress (gz.py:5) 500\n'


def two_workloads(run_dir: Path) -> None:
    write_profiles(
        run_dir,
        [
            (_record("s0000-p01", 0, "nbody", "baseline", 1000), NBODY_BASE),
            (_record("s0001-p02", 1, "nbody", "candidate", 1000), NBODY_CAND),
            (_record("s0002-p03", 2, "gzip", "candidate", 500), OTHER),
        ],
    )


def test_exports_are_per_workload_and_variant_and_never_merge_workloads(tmp_path: Path) -> None:
    two_workloads(tmp_path)
    trees, used = variant_trees(tmp_path)
    assert list(trees) == [("nbody", "baseline"), ("nbody", "candidate"), ("gzip", "candidate")]
    assert [r.name for r in used[("gzip", "candidate")]] == ["s0002-p03"]
    assert trees[("nbody", "candidate")].find(['process "nbody"']) is not None
    # gzip has one variant only: no diff; nbody's candidate against its baseline.
    assert diff_pairs(list(trees)) == [(("nbody", "baseline"), ("nbody", "candidate"))]
    names = sorted(p.name for p in write_exports(tmp_path))
    assert "diff-nbody--baseline-vs-candidate.svg" in names
    assert "variant-gzip--candidate.svg" in names and "variant-nbody--baseline.collapsed" in names
    assert not any(n.startswith("diff-gzip") for n in names)
    section = profiles_section(tmp_path)
    (d,) = section["diffs"]
    assert (d["workload"], d["base"], d["cand"]) == ("nbody", "baseline", "candidate")
    changes = {c["name"]: c["delta_self"] for c in d["changes"]}
    assert changes["advance (bm_nbody.py:60)"] == pytest.approx(-0.03)
    assert "compress (gz.py:5)" not in changes
    svg = (tmp_path / PROFILES_DIR / "diff-nbody--baseline-vs-candidate.svg").read_text()
    assert svg.count("advance (bm_nbody.py:60):") == 1  # one frame, not two


def test_replay_lists_the_recorded_profiles(tmp_path: Path) -> None:
    two_workloads(tmp_path)
    live = LiveState(run_id="r", campaign="c", run_dir=str(tmp_path), started_t=0.0)
    snap = live.snapshot(now=1.0, state=RunState.FINISHED)
    out = with_recorded_profiles(snap, tmp_path)
    assert [p.name for p in out.profiles] == ["s0000-p01", "s0001-p02", "s0002-p03"]
    assert out.profiles[0].workload == "nbody" and out.profiling == ()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert with_recorded_profiles(snap, empty) is snap


CAMPAIGN = """
[campaign]
name = "every"

[[workload]]
name = "w"
command = ["true"]

[[workload]]
name = "v"
command = ["true"]

[variant.baseline]
env = { X = "1" }
[variant.candidate]
env = { X = "2" }

[set.golden]
sessions = 4
order = "interleaved"

[profile]
every = 2
"""


@pytest.mark.slow  # a whole fake campaign with its report: ~8 s here
async def test_every_covers_each_variant_of_each_workload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CAMPAIGN)
    campaign = parse_campaign(CAMPAIGN, path)
    run_dir = make_run_dir(tmp_path / "runs", "every", time.time())
    monkeypatch.setattr(FakeExecutor, "pid_of", lambda self, sid: 10_000 + sid)
    runner = Runner(
        campaign,
        run_dir,
        executor_factory=FakeExecutor.factory(FakeSession(wall_s=0.1)),
        sample_system=False,
    )
    started: list[tuple[int, str]] = []

    def fake_start(
        session_id: int, target: tuple[int, Any, str], seconds: float | None, reason: str
    ) -> None:
        spec = runner._running_specs[session_id]
        assert target == (10_000 + session_id, None, "")
        assert reason == "1 in 2 sessions of its variant"
        started.append((session_id, f"{spec.workload}/{spec.variant}"))

    monkeypatch.setattr(runner, "_start_profile", fake_start)
    await runner.run()
    groups = [g for _, g in started]
    # every 2nd session of each (workload, variant): 4 sessions each -> 2 profiles each
    assert sorted(set(groups)) == ["v/baseline", "v/candidate", "w/baseline", "w/candidate"]
    assert all(groups.count(g) == 2 for g in set(groups)), started


ARGS_WORKLOAD = """
import sys, time

def slow_path(n):
    return sum(i * i for i in range(n))

def fast_path(n):
    return sum(range(n))

def main(seconds, impl):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        impl(2000)

main(float(sys.argv[1]), slow_path if sys.argv[2] == "slow" else fast_path)
"""

ARGS_CAMPAIGN = """
[campaign]
name = "args"
sample_interval = "100ms"

[[workload]]
name = "cpu"
command = ["{python}", "SCRIPT", "1.0"]

[variant.baseline]
args = ["slow"]
[variant.candidate]
args = ["fast"]

[set.golden]
sessions = 2
order = "interleaved"

[profile]
every = 2
"""


@pytest.mark.slow
async def test_real_run_every_2_interleaved_profiles_both_variants_and_diff_lines_up(
    tmp_path: Path,
) -> None:
    from perfmon.engine.profiler import find_py_spy, load_index

    if find_py_spy() is None:
        pytest.skip("py-spy is not installed")
    script = tmp_path / "cpu_args.py"
    script.write_text(ARGS_WORKLOAD)
    path = tmp_path / "args.toml"
    text = ARGS_CAMPAIGN.replace("SCRIPT", str(script))
    path.write_text(text)
    run_dir = make_run_dir(tmp_path / "runs", "args", time.time())
    await Runner(parse_campaign(text, path), run_dir).run()
    records = load_index(run_dir)
    if records and not any(r.ok for r in records):
        pytest.skip(f"py-spy could not sample here: {records[0].message}")
    # sessions 0..3 run baseline, candidate, baseline, candidate: the 2nd of each is sampled
    assert [(r.session, r.variant) for r in records] == [(2, "baseline"), (3, "candidate")]
    trees, _ = variant_trees(run_dir)
    base, cand = trees[("cpu", "baseline")], trees[("cpu", "candidate")]
    # the command lines differ by their last argument; the roots are one frame all the same
    assert list(base.root.children) == list(cand.root.children) == ['process "cpu"']
    diff = DiffTree(base, cand)
    mains = [n for n in diff.root.walk() if n.name.startswith("main ")]
    # One frame carries the hot function in both variants, with a small change (unaligned
    # roots showed it twice, at -92 and +89 points). py-spy may also catch `main` on another
    # path now and then (a stray sample): such a node is small, and no node swings far.
    top = max(mains, key=lambda n: n.base + n.cand)
    assert top.base > 0.5 and top.cand > 0.5 and abs(top.delta) < 0.1, mains
    assert all(abs(n.delta) < 0.1 for n in mains), mains
