"""py-spy profiling: real py-spy against real sessions, failure modes, campaign [profile], exports.

These tests run py-spy for real (it is a dependency of the dev environment); where py-spy
cannot attach here (no ptrace permission), the tests that need stacks are skipped with the
profiler's own message, which is what a user would see.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from perfmon.core.campaign import CampaignError, ProfileConfig, parse_campaign
from perfmon.core.stacks import parse_collapsed
from perfmon.engine.flame_export import (
    profiles_section,
    render_profiles_md,
    speedscope_json,
    write_exports,
)
from perfmon.engine.profiler import (
    PTRACE_HELP,
    Profiler,
    explain_failure,
    find_py_spy,
    load_index,
    load_stacks,
)
from perfmon.engine.recorder import make_run_dir
from perfmon.engine.replay import snapshot_from_run_dir
from perfmon.engine.runner import Runner, parse_profile_command
from perfmon.tui.app import PerfmonApp
from perfmon.tui.screens.flame import FlameScreen
from perfmon.tui.source import StaticSource
from perfmon.tui.widgets.flame import FlameView

PY_SPY = find_py_spy()
needs_py_spy = pytest.mark.skipif(PY_SPY is None, reason="py-spy is not installed")

# A CPU-bound workload whose hot function depends on the variant (env WORK_IMPL), so that the
# per-variant aggregates and their diff have something real to show.
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


def _spawn_cpu(
    tmp_path: Path, seconds: float, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    script = tmp_path / "cpu_work.py"
    script.write_text(WORKLOAD)
    return subprocess.Popen(
        [sys.executable, str(script), str(seconds)],
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _skip_if_no_ptrace(rec_message: str) -> None:
    if "not allowed to attach" in rec_message:
        pytest.skip(rec_message)


# -- pure helpers ---------------------------------------------------------------------------


def test_explain_failure_messages() -> None:
    perm = explain_failure("Error: Permission denied (os error 13)", 1, 42)
    assert "not allowed to attach to pid 42" in perm and PTRACE_HELP in perm
    assert "ptrace_scope" in perm and "SYS_PTRACE" in perm
    gone = explain_failure(
        "Error: Failed to get process executable name. Check that the process is running.\n"
        "Caused by:\n    0: No such file or directory (os error 2)",
        1,
        7,
    )
    assert "exited before py-spy could attach" in gone
    notpy = explain_failure("Error: Failed to find python version from target process", 1, 9)
    assert "does not look like a Python process" in notpy
    other = explain_failure("Error: something odd\nmore", 2, 1)
    assert other == "py-spy failed (exit status 2): Error: something odd"


def test_parse_profile_command() -> None:
    assert parse_profile_command("profile") == (None, None)
    assert parse_profile_command("profile 3") == (3, None)
    assert parse_profile_command("profile 3 2.5") == (3, 2.5)
    for bad in ("profile x", "profile 1 -2", "profile 1 2 3", "profiles"):
        with pytest.raises(ValueError):
            parse_profile_command(bad)


def test_campaign_profile_table() -> None:
    base = '[campaign]\nname = "c"\n[[workload]]\nname = "w"\ncommand = ["true"]\n'
    plain = parse_campaign(base, Path("c.toml"))
    assert plain.profile == ProfileConfig()
    c = parse_campaign(
        base
        + '[profile]\nevery = 5\nduty = "10s/5min"\nrate = 250\nnonblocking = true\n'
        + 'duration = "3s"\nsubprocesses = false\n',
        Path("c.toml"),
    )
    assert c.profile == ProfileConfig(5, 10.0, 300.0, 250, True, 3.0, False)
    for body, key in (
        ("every = 0", "profile.every"),
        ('duty = "10s"', "profile.duty"),
        ('duty = "5min/10s"', "profile.duty"),
        ("rate = 0", "profile.rate"),
        ("nonblocking = 1", "profile.nonblocking"),
        ("oops = 1", "profile.oops"),
    ):
        with pytest.raises(CampaignError) as err:
            parse_campaign(base + "[profile]\n" + body + "\n", Path("c.toml"))
        assert err.value.key == key
        assert err.value.line == 7


# -- failure modes, each a record with a message, never an exception -----------------------------


async def test_py_spy_missing(tmp_path: Path) -> None:
    prof = Profiler(tmp_path, py_spy=None)
    prof.py_spy = None  # as if find_py_spy() found nothing
    rec = await prof.profile(session_id=1, pid=os.getpid(), seconds=1, reason="test")
    assert rec.status == "failed" and "pip install py-spy" in rec.message
    missing = Profiler(tmp_path, py_spy=str(tmp_path / "no-such-py-spy"))
    rec2 = await missing.profile(session_id=2, pid=os.getpid(), seconds=1, reason="test")
    assert rec2.status == "failed" and "could not be started" in rec2.message
    assert [r.name for r in load_index(tmp_path)] == [rec.name, rec2.name]


async def test_permission_denied_is_explained(tmp_path: Path) -> None:
    # A stand-in py-spy that fails the way py-spy does without ptrace permission.
    fake = tmp_path / "py-spy"
    fake.write_text(
        "#!/bin/sh\necho 'Error: Failed to open process - check if it is running.' >&2\n"
        "echo 'Caused by: Permission denied (os error 13)' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    rec = await Profiler(tmp_path, py_spy=str(fake)).profile(
        session_id=1, pid=os.getpid(), seconds=1, reason="test"
    )
    assert rec.status == "failed"
    assert "kernel.yama.ptrace_scope" in rec.message and "SYS_PTRACE" in rec.message


@needs_py_spy
@pytest.mark.slow
async def test_non_python_process(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        await asyncio.sleep(0.2)
        rec = await Profiler(tmp_path).profile(session_id=1, pid=proc.pid, seconds=1, reason="test")
    finally:
        proc.kill()
        proc.wait()
    _skip_if_no_ptrace(rec.message)
    assert rec.status == "failed"
    assert "does not look like a Python process" in rec.message


@needs_py_spy
async def test_process_gone_before_attach(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    rec = await Profiler(tmp_path).profile(session_id=1, pid=proc.pid, seconds=1, reason="t")
    assert rec.status == "failed"
    assert "exited before py-spy could attach" in rec.message


# -- real stacks --------------------------------------------------------------------------------


@needs_py_spy
@pytest.mark.slow
async def test_real_profile_of_a_cpu_bound_process(tmp_path: Path) -> None:
    proc = _spawn_cpu(tmp_path, 20)
    try:
        await asyncio.sleep(0.3)
        prof = Profiler(tmp_path, rate_hz=100)
        rec = await prof.profile(
            session_id=3, pid=proc.pid, seconds=1, reason="test", variant="baseline"
        )
    finally:
        proc.kill()
        proc.wait()
    _skip_if_no_ptrace(rec.message)
    assert rec.status == "ok", rec.message
    assert rec.samples > 20  # about 100 at 100 Hz for 1 s, fewer on a loaded machine
    # py-spy's own cost is measured and shown with the profile
    assert rec.pyspy_cpu_s is not None and rec.pyspy_cpu_s > 0
    assert "CPU-s" in rec.message
    tree = parse_collapsed(load_stacks(tmp_path, rec.name))
    assert tree.total == rec.samples
    top = tree.top_functions(1)[0]
    assert top.name.startswith(("slow_path", "<genexpr>")), top
    assert tree.search("main (")[0].name.startswith("main (")
    (process,) = tree.root.children.values()  # perfmon (here: pytest) trimmed away
    assert process.name.startswith('process "') and "cpu_work.py" in process.name
    assert load_index(tmp_path) == [rec]


@needs_py_spy
@pytest.mark.slow
async def test_process_exits_while_sampled_keeps_the_stacks(tmp_path: Path) -> None:
    proc = _spawn_cpu(tmp_path, 1.5)
    try:
        await asyncio.sleep(0.3)
        rec = await Profiler(tmp_path).profile(
            session_id=1, pid=proc.pid, seconds=5, reason="test", nonblocking=True
        )
    finally:
        proc.wait()
    _skip_if_no_ptrace(rec.message)
    assert rec.status == "partial", rec.message
    assert rec.nonblocking and rec.samples > 0
    assert "ended while sampled" in rec.message


# -- the runner: scheduled and on-demand profiles, exports, report -------------------------------

CAMPAIGN = """
[campaign]
name = "flame"
sample_interval = "100ms"
grace = "1s"

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
rate = 100
"""


@needs_py_spy
@pytest.mark.slow
async def test_runner_profiles_every_session_and_exports(tmp_path: Path) -> None:
    script = tmp_path / "cpu_work.py"
    script.write_text(WORKLOAD)
    path = tmp_path / "flame.toml"
    path.write_text(CAMPAIGN.replace("SCRIPT", str(script)))
    campaign = parse_campaign(path.read_text(), path)
    run_dir = make_run_dir(tmp_path / "runs", "flame", time.time())
    runner = Runner(campaign, run_dir)
    outcome = await runner.run()
    assert outcome.exit_status == 0
    records = load_index(run_dir)
    assert [r.session for r in records] == [0, 1]
    if not all(r.ok for r in records):
        _skip_if_no_ptrace(records[0].message)
    assert all(r.ok for r in records), [r.message for r in records]
    assert {r.variant for r in records} == {"baseline", "candidate"}
    assert records[0].reason == "every session"
    snap = runner.snapshot()
    assert [p.name for p in snap.profiles] == [r.name for r in records]

    prof = run_dir / "profiles"
    for name in ("variant-cpu--baseline", "variant-cpu--candidate"):
        assert (prof / f"{name}.collapsed").stat().st_size > 0
        assert (prof / f"{name}.svg").read_text().startswith("<svg")
        sc = json.loads((prof / f"{name}.speedscope.json").read_text())
        assert sc["profiles"][0]["type"] == "sampled"
        assert sum(sc["profiles"][0]["weights"]) == sc["profiles"][0]["endValue"] > 0
    assert "<svg" in (prof / "diff-cpu--baseline-vs-candidate.svg").read_text()
    # A finished run replayed from its directory lists the same profiles for the flame screen.
    replayed = snapshot_from_run_dir(run_dir)
    assert [p.name for p in replayed.profiles] == [r.name for r in records]
    app = PerfmonApp(StaticSource(replayed), keys=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("g")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, FlameScreen) and screen.view_id == records[-1].name
        root = screen.query_one(FlameView).root
        assert root is not None and root.weight == records[-1].samples

    section = profiles_section(run_dir)
    assert section["sampled_sessions"] == [0, 1]
    tops = {v["variant"]: v["top"][0]["name"] for v in section["variants"]}
    assert tops["baseline"].startswith(("slow_path", "<genexpr>"))
    assert tops["candidate"].startswith("fast_path")
    changes = {c["name"].split(" ")[0]: c["delta_self"] for c in section["diffs"][0]["changes"]}
    assert changes["fast_path"] > 0.3
    report = (run_dir / "report.md").read_text()
    assert "## Profiles (py-spy)" in report and "Top functions: cpu/baseline" in report
    assert json.loads((run_dir / "report.json").read_text())["profiles"]["profiles"] == 2


@needs_py_spy
@pytest.mark.slow
async def test_profile_command_on_the_running_session(tmp_path: Path) -> None:
    script = tmp_path / "cpu_work.py"
    script.write_text(WORKLOAD)
    path = tmp_path / "flame.toml"
    text = CAMPAIGN.replace("SCRIPT", str(script)).replace('"1.5"', '"4"')
    text = text.split("[profile]")[0]
    path.write_text(text)
    campaign = parse_campaign(text, path)
    run_dir = make_run_dir(tmp_path / "runs", "flame", time.time())
    runner = Runner(campaign, run_dir)
    task = asyncio.create_task(runner.run())
    for _ in range(200):
        await asyncio.sleep(0.05)
        if runner._supervisor is not None and runner._supervisor.running:
            break
    runner.handle_command("profile")
    assert runner.message.startswith("profiling session 0 with py-spy for 5 s")
    runner.handle_command("profile 0 1")
    assert "already being sampled" in runner.message
    assert runner.snapshot().profiling == (0,)
    with pytest.raises(ValueError):
        runner.handle_command("profile zero")
    await task
    runner.handle_command("profile")
    assert runner.message == "profile: no session is running"
    records = load_index(run_dir)
    assert len(records) == 1 and records[0].reason == "on demand"
    _skip_if_no_ptrace(records[0].message)
    assert records[0].status == "partial" and records[0].samples > 0  # session ended at ~4 s


def test_exports_of_a_run_without_profiles(tmp_path: Path) -> None:
    assert write_exports(tmp_path) == []
    section = profiles_section(tmp_path)
    assert section["profiles"] == 0
    assert "No session was profiled" in "\n".join(render_profiles_md(section))


def test_speedscope_frames_parse_file_and_line() -> None:
    tree = parse_collapsed("main (a.py:1);f (b.py:7) 3\nmain (a.py:1) 1\n")
    sc = speedscope_json(tree, "t")
    assert sc["shared"]["frames"] == [
        {"name": "main", "file": "a.py", "line": 1},
        {"name": "f", "file": "b.py", "line": 7},
    ]
    assert sorted(
        zip(map(tuple, sc["profiles"][0]["samples"]), sc["profiles"][0]["weights"], strict=True)
    ) == [
        ((0,), 1),
        ((0, 1), 3),
    ]
