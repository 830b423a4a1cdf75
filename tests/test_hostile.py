"""Hostile workloads, campaigns and environments (issue 13): bounded, private, clean, exit 2.

- a workload emitting 100,000 distinct metric names: the runner's memory stays bounded, the
  session's wall time is not inflated, snapshots keep flowing and stay small, and what was
  dropped is counted, recorded and shown;
- run directories 0700 and files 0600 whatever the umask (0750/0640 with ``share = "group"``);
- escape sequences in a campaign's command and a workload's output never reach report.md;
- hostile runtime directories (a symlink, a file, another user's) get exit 2 and one line.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from perfmon.core.campaign import load_campaign
from perfmon.core.live import DROPPED_NAMES_METRIC, DROPPED_SAMPLES_METRIC
from perfmon.core.snapshot import Snapshot
from perfmon.engine.recorder import make_run_dir, read_run
from perfmon.engine.runner import Runner

# Emits N distinct names (in batches, as fast as the pipe takes them), then works for WORK_S.
FLOOD = """
import os, sys, time
n, work_s = int(sys.argv[1]), float(sys.argv[2])
fd = int(os.environ["PERFMON_FD"])
for start in range(0, n, 5000):
    lines = (f"flood_{i:06d}_total 1\\n" for i in range(start, min(n, start + 5000)))
    os.write(fd, "".join(lines).encode())
end = time.monotonic() + work_s
while time.monotonic() < end:
    pass
"""


def _run(campaign_path: Path, tmp_path: Path) -> tuple[Runner, list[Snapshot], object]:
    campaign = load_campaign(campaign_path)
    runner = Runner(campaign, make_run_dir(tmp_path / "runs", campaign.name, time.time()))
    snapshots: list[Snapshot] = []
    runner.snapshot_listeners.append(snapshots.append)
    outcome = asyncio.run(asyncio.wait_for(runner.run(), timeout=300))
    return runner, snapshots, outcome


@pytest.mark.slow
@pytest.mark.quiet  # compares two sessions' wall times
def test_100000_metric_names_are_bounded_counted_and_do_not_inflate_timing(
    tmp_path: Path,
) -> None:
    script = tmp_path / "flood.py"
    script.write_text(FLOOD)
    path = tmp_path / "c.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [campaign]
            name = "flood"
            sample_interval = "100ms"
            [[workload]]
            name = "quiet"
            command = ["{{python}}", "{script}", "0", "2"]
            [[workload]]
            name = "flood"
            command = ["{{python}}", "{script}", "100000", "2"]
            [set.s]
            sessions = 1
            [[gate]]
            name = "ok"
            expr = "max(session_seconds) < 600"
            """
        )
    )
    gc.collect()
    rss_before = psutil.Process().memory_info().rss
    runner, snapshots, _ = _run(path, tmp_path)
    rss_growth = psutil.Process().memory_info().rss - rss_before

    # Memory: 2.23 GB before the caps; now 1,000 aggregates at most (generous bound).
    print(f"\nrunner RSS growth: {rss_growth / 2**20:.0f} MiB")
    assert rss_growth < 400 << 20, f"runner grew by {rss_growth / 2**20:.0f} MiB"
    # Timing: the flood's session takes about as long as the same work without it
    # (77 s for 15 s of work before the caps). Emitting itself costs the workload a little.
    rows = {s.workload: s for s in runner.live.snapshot(now=time.time(), state="x").sessions}
    quiet, flood = rows["quiet"].wall_s, rows["flood"].wall_s
    assert quiet is not None and flood is not None
    print(f"wall: quiet {quiet:.2f} s, flood {flood:.2f} s")
    assert flood < quiet + 3.0, (quiet, flood)
    # Snapshots kept flowing during the flood session and are small.
    during = [s for s in snapshots if s.dropped_samples]
    assert len(during) >= 3
    last = snapshots[-1]
    assert last.sessions_done == 2
    assert last.dropped_samples == 99_000 and last.dropped_names == 99_000
    assert last.sessions[-1].dropped == 99_000
    size = len(json.dumps(last.to_dict()))
    print(f"snapshots: {len(snapshots)} ({len(during)} with drops), last {size:,} bytes")
    assert size < 512_000, size
    assert last.dropped_text().startswith(
        "dropped 99,000 samples of 99,000 metric names over the 1,000-name cap"
    )
    # The recording holds the kept names and the counts, not 100,000 names.
    data = read_run(runner.run_dir)
    names = set(data.samples.column("metric").to_pylist())
    assert len(names) < 1_020
    assert {DROPPED_SAMPLES_METRIC, DROPPED_NAMES_METRIC} <= names
    # The report is bounded and says what was dropped.
    md = (runner.run_dir / "report.md").read_text()
    report = json.loads((runner.run_dir / "report.json").read_text())
    assert "dropped 99,000 samples of 99,000 metric names" in md
    assert report["metric_caps"]["dropped_samples"] == 99_000
    assert (runner.run_dir / "report.md").stat().st_size < 1 << 20
    assert (runner.run_dir / "report.json").stat().st_size < 2 << 20


ESC_CAMPAIGN = """
[campaign]
name = "esc"
sample_interval = "100ms"
grace = "1s"
share = "{share}"

[[workload]]
name = "w"
shell = true
command = "echo '\\u001b]0;TITLE\\u0007\\u001b[31mred'; echo e\\u001b[2J >&2; exit 3 # \\u001b[5m"
matrix = {{ m = ["\\u001b[1mbold\\u0007"] }}

[set.s]
sessions = 1

[[gate]]
name = "g\\u001b[31m"
expr = "max(session_seconds) < 600"
"""


def _perfmon(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perfmon", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def _modes(run_dir: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(run_dir.stat().st_mode)}
    for path in run_dir.rglob("*"):
        out[str(path.relative_to(run_dir))] = stat.S_IMODE(path.lstat().st_mode)
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("share", "dir_mode", "file_mode"), [("private", 0o700, 0o600), ("group", 0o750, 0o640)]
)
def test_run_directory_modes_and_no_escapes_in_the_report(
    tmp_path: Path, share: str, dir_mode: int, file_mode: int
) -> None:
    (tmp_path / "c.toml").write_text(ESC_CAMPAIGN.format(share=share))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; os.umask(0); from perfmon.cli import main; "
            "sys.exit(main(sys.argv[1:]))",
            "run",
            "--headless",
            "c.toml",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert "\x1b" not in proc.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    modes = _modes(run_dir)
    assert {"manifest.json", "report.md", "report.json", "samples.parquet"} <= set(modes)
    assert any(name.startswith("logs/") for name in modes)
    for name, mode in modes.items():
        is_dir = name == "." or (run_dir / name).is_dir()
        assert mode == (dir_mode if is_dir else file_mode), (name, oct(mode))
    md = (run_dir / "report.md").read_bytes()
    assert not [b for b in md if b < 0x20 and b not in (0x0A, 0x09)]
    assert b"\x7f" not in md and "\x9b" not in md.decode()
    assert b"TITLE" not in md  # an OSC sequence goes whole, its text too
    json.loads((run_dir / "report.json").read_text())  # JSON escapes the rest


def _bad_runtime(tmp_path: Path, kind: str) -> Path:
    target = tmp_path / "rt"
    if kind == "symlink":
        real = tmp_path / "real"
        real.mkdir(mode=0o700)
        target.symlink_to(real)
    elif kind == "file":
        target.write_text("not a directory")
    elif kind == "dangling":
        target.symlink_to(tmp_path / "nowhere")
    return target


@pytest.mark.parametrize(
    ("kind", "command"),
    [
        ("symlink", ["ls"]),
        ("file", ["ls"]),
        ("dangling", ["ls"]),
        ("symlink", ["stop", "x"]),
        ("symlink", ["attach", "x"]),
        ("symlink", ["run", "--detach", "c.toml"]),
    ],
)
def test_hostile_runtime_directories_exit_2_with_one_line(
    tmp_path: Path, kind: str, command: list[str]
) -> None:
    (tmp_path / "c.toml").write_text(
        "[campaign]\nname = 'c'\n[[workload]]\nname = 'w'\ncommand = ['true']\n"
    )
    runtime = _bad_runtime(tmp_path, kind)
    proc = _perfmon(*command, cwd=tmp_path, env={"PERFMON_RUNTIME_DIR": str(runtime)})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perfmon: error: "), proc.stderr
    assert str(runtime) in lines[0] and "refusing" in lines[0]
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_a_runtime_directory_of_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from perfmon.cli import main

    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    real_uid = os.getuid()
    monkeypatch.setenv("PERFMON_RUNTIME_DIR", str(runtime))
    monkeypatch.setattr(os, "getuid", lambda: real_uid + 1)  # as if another user owned it
    assert main(["ls"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"belongs to uid {real_uid}" in err


def test_damaged_registry_entries_are_skipped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from perfmon.engine.registry import list_runs

    runtime = tmp_path / "rt"
    monkeypatch.setenv("PERFMON_RUNTIME_DIR", str(runtime))
    runs = runtime / "runs"
    runs.mkdir(parents=True, mode=0o700)
    runtime.chmod(0o700)
    (runs / "a.json").write_text("garbage")
    (runs / "b.json").write_text('{"version": 1, "pid": "x"}')
    (runs / "c.json").write_text('{"version": 1, "pid": 1}')
    (runs / "d.json").write_text("[1, 2]")
    damaged: list[Path] = []
    assert list_runs(damaged=damaged) == []
    assert len(damaged) == 4


def test_the_status_bar_shows_what_the_caps_dropped() -> None:
    from perfmon.core.batch import SampleBatch
    from perfmon.core.live import LiveState
    from perfmon.core.model import MetricKind, Sample
    from perfmon.tui.widgets.status_bar import status_content

    live = LiveState(run_id="r", campaign="c", run_dir="/r", started_t=0.0, max_metrics=2)
    live.add_batch(
        SampleBatch.from_samples(Sample(1.0, 0, f"m{i}", 1.0, MetricKind.GAUGE) for i in range(5))
    )
    text = status_content(live.snapshot(now=1.0, state="running")).plain
    assert "dropped 3 samples of 3 names over the caps" in text
    clean = LiveState(run_id="r", campaign="c", run_dir="/r", started_t=0.0)
    assert "dropped" not in status_content(clean.snapshot(now=1.0, state="running")).plain


def test_snapshot_text_from_campaigns_and_workloads_is_one_clean_line() -> None:
    import dataclasses

    from perfmon.core.live import LiveState
    from perfmon.core.model import GateResult, GateState, SessionResult, SessionSpec

    spec = SessionSpec(
        id=0,
        workload="w",
        variant="v",
        set_name="s",
        index=0,
        warmup=False,
        argv=("x",),
        env=(),
        cwd="/",
        timeout_s=None,
        params=(("m", "\x1b[2Jx\ny"),),
    )
    live = LiveState(run_id="r", campaign="c", run_dir="/r", started_t=0.0)
    live.update_session(dataclasses.replace(SessionResult(spec=spec), error="e"))
    gate = GateResult("g\x1b]0;T\x07", "max(x) < 1", GateState.PENDING, None, 0, "r\r\nz")
    snap = live.snapshot(now=1.0, state="running", gates=[gate], message="m\x1b[31m!")
    blob = json.dumps(snap.to_dict(), ensure_ascii=False)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in blob)
    assert snap.sessions[0].params == "m=x y"
    assert snap.gates[0].name == "g" and snap.gates[0].reason == "r z"
    assert snap.message == "m!"


@pytest.mark.slow
def test_snapshots_keep_flowing_while_the_run_ends(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[campaign]\nname = 'end'\nsample_interval = '100ms'\n"
        "[[workload]]\nname = 'w'\ncommand = ['true']\n"
    )
    campaign = load_campaign(path)
    runner = Runner(
        campaign,
        make_run_dir(tmp_path / "runs", campaign.name, time.time()),
        snapshot_hz=20,
    )
    snapshots: list[Snapshot] = []
    runner.snapshot_listeners.append(snapshots.append)
    real_close = runner.recorder.close

    def slow_close() -> None:  # a big recording takes a while to compact
        time.sleep(0.6)
        real_close()

    runner.recorder.close = slow_close  # type: ignore[method-assign]
    outcome = asyncio.run(asyncio.wait_for(runner.run(), timeout=60))
    assert outcome.exit_status == 0
    ending = [s for s in snapshots if s.state == "stopping"]
    assert len(ending) >= 4, [s.state for s in snapshots]
    assert ending[-1].now_t - ending[0].now_t >= 0.3
    assert snapshots[-1].state == "finished"


def test_report_tables_per_session_are_cut_and_say_so(tmp_path: Path) -> None:
    from perfmon.engine.recorder import Recorder
    from perfmon.engine.report import SESSIONS_SHOWN, build_report, render_markdown

    with Recorder(tmp_path):
        pass
    rep = build_report(read_run(tmp_path), [], verdict="pass")
    row = {"id": 0, "workload": "w", "variant": "v", "params": {}, "warmup": False}
    failed = {**row, "status_text": "exit 1", "error": "boom"}
    rep["sessions"]["failed"] = [failed] * (SESSIONS_SHOWN + 50)
    rep["malformed"]["sessions"] = [{**row, "malformed": 1}] * (SESSIONS_SHOWN + 7)
    md = render_markdown(rep)
    assert md.count("| boom |") == SESSIONS_SHOWN
    assert "... and 50 more failed sessions" in md
    assert "... and 7 more sessions with malformed lines" in md
