"""Machine noise: the arithmetic on fake /proc readings, the guard, the campaign keys, the
scheduler's repeats, a runner with a fake meter, and (slow) real runs on a busy and an idle
machine."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from perfmon.core.campaign import CampaignError, load_campaign, parse_campaign
from perfmon.core.model import SessionResult, SessionStatus
from perfmon.core.noise import (
    DEFAULT_MAX_BACKGROUND_SHARE,
    NOISE_ATTEMPT,
    NOISE_BACKGROUND_SHARE,
    NOISE_BUSY,
    CpuTicks,
    NoiseGuard,
    NoiseReading,
    parse_loadavg,
    parse_proc_stat,
    parse_share,
    quietness_line,
    session_noise,
    summarize_noise,
)
from perfmon.core.schedule import Scheduler
from perfmon.core.snapshot import NoiseCounts, Snapshot
from perfmon.engine.headless import ProgressPrinter, run_headless
from perfmon.engine.noise import NoiseMeter, ProcReader, read_noise
from perfmon.engine.recorder import make_run_dir, read_run
from perfmon.engine.runner import Runner

BUSY = Path(__file__).resolve().parent / "workloads" / "busy.py"

PROC_STAT = """\
cpu  27641 10 5579 43138 861 3 141 925 7 0
cpu0 7698 0 1865 28883 249 0 15 435 0 0
cpu1 19943 0 3714 14255 612 0 126 489 0 0
intr 123 4 5
ctxt 99
"""


def ticks(*, busy: int, idle: int, steal: int = 0, ncpu: int = 2) -> CpuTicks:
    """Counters with ``busy`` ticks of user time, ``idle`` idle ticks and ``steal``."""
    return CpuTicks(busy, 0, 0, idle, 0, 0, 0, steal, ncpu)


def reading(busy: int, idle: int, *, steal: int = 0, self_s: float = 0.0) -> NoiseReading:
    return NoiseReading(ticks(busy=busy, idle=idle, steal=steal), self_s, 0.5)


# --- parsing -----------------------------------------------------------------------------------


def test_proc_stat_aggregate_line_and_cpu_count() -> None:
    t = parse_proc_stat(PROC_STAT)
    assert (t.user, t.nice, t.system, t.idle, t.iowait, t.irq, t.softirq, t.steal) == (
        27641,
        10,
        5579,
        43138,
        861,
        3,
        141,
        925,
    )
    assert t.ncpu == 2
    # guest (7) is inside user already: not added to the total
    assert t.total == 27641 + 10 + 5579 + 43138 + 861 + 3 + 141 + 925
    assert t.busy == t.total - 43138 - 861


def test_proc_stat_of_an_old_kernel_without_steal_and_damaged_files() -> None:
    t = parse_proc_stat("cpu  1 2 3 4\ncpu0 1 2 3 4\n")
    assert t.steal == 0 and t.iowait == 0 and t.total == 10 and t.ncpu == 1
    for bad in ("", "intr 1 2\n", "cpu  1 2\n", "cpu  a b c d e\n"):
        with pytest.raises(ValueError):
            parse_proc_stat(bad)


def test_loadavg_and_share_parsing() -> None:
    assert parse_loadavg("1.62 0.89 0.39 3/106 7454\n") == pytest.approx(1.62)
    with pytest.raises(ValueError):
        parse_loadavg("")
    assert parse_share("10%") == pytest.approx(0.10)
    assert parse_share(" 2.5% ") == pytest.approx(0.025)
    for bad in ("10", 0.1, 10, "%", "abc%", "150%", "-1%", True):
        with pytest.raises(ValueError):
            parse_share(bad)


# --- the arithmetic ----------------------------------------------------------------------------


def test_a_second_on_two_cpus_with_one_other_process_spinning_is_half_the_machine() -> None:
    # 1 s on 2 CPUs at 100 ticks/s: 200 ticks; the session used 0.5 s, the machine 1.5 s.
    start = reading(busy=1000, idle=1000, self_s=1.0)
    end = reading(busy=1150, idle=1050, self_s=1.02)
    noise = session_noise(start, end, 0.5, ticks_per_s=100)
    assert noise is not None
    assert noise.window_s == pytest.approx(1.0)
    assert noise.ncpu == 2
    assert noise.background_cpu_s == pytest.approx(1.0)
    assert noise.background_share == pytest.approx(0.5)
    assert noise.resolution == pytest.approx(2 / (100 * 1.0))
    assert noise.steal_share == 0.0
    assert noise.perfmon_cpu_s == pytest.approx(0.02)
    assert noise.load1 == 0.5
    assert noise.busy


def test_steal_is_a_share_of_all_ticks_and_counts_as_busy() -> None:
    # 200 ticks: 100 of the session's, 20 stolen by the hypervisor, 80 idle
    noise = session_noise(reading(0, 0, steal=0), reading(100, 80, steal=20), 1.0, ticks_per_s=100)
    assert noise is not None
    assert noise.steal_share == pytest.approx(0.1)
    assert noise.background_share == pytest.approx(0.1)  # the CPU was not ours meanwhile


def test_a_quiet_window_is_not_busy_and_background_never_goes_negative() -> None:
    start = reading(busy=1000, idle=1000)
    end = reading(busy=1052, idle=1148)  # 0.52 s busy, the session used 0.5 s
    noise = session_noise(start, end, 0.5, ticks_per_s=100)
    assert noise is not None and not noise.busy
    assert noise.background_share == pytest.approx(0.02 / 2.0)
    # rusage can exceed tick-sampled busy time: clamped at 0, not negative
    noise = session_noise(start, end, 0.9, ticks_per_s=100)
    assert noise is not None and noise.background_share == 0.0 and noise.background_cpu_s == 0.0


def test_short_sessions_are_flagged_only_beyond_their_tick_resolution() -> None:
    # 50 ms on 2 CPUs: 10 ticks; resolution 2 / (100 * 0.05) = 40%.
    start = reading(busy=0, idle=0)
    quantised = session_noise(start, reading(busy=6, idle=4), 0.05, ticks_per_s=100)
    assert quantised is not None
    assert quantised.background_share == pytest.approx(0.1)  # one tick more than the session's
    assert not quantised.busy
    grey = session_noise(start, reading(busy=10, idle=0), 0.05, ticks_per_s=100)
    assert grey is not None
    assert grey.background_share == pytest.approx(0.5) and grey.resolution == pytest.approx(0.4)
    assert not grey.busy  # 50% +- 40% is not certainly over 10%
    # a long session with the same share is flagged
    long_ = session_noise(start, reading(busy=2000, idle=0), 10.0, ticks_per_s=100)
    assert long_ is not None and long_.busy


def test_unusable_readings_give_no_figures() -> None:
    r = reading(busy=10, idle=10)
    none = NoiseReading(None, 0.0)
    assert session_noise(none, r, 0.1, ticks_per_s=100) is None
    assert session_noise(r, none, 0.1, ticks_per_s=100) is None
    assert session_noise(r, r, 0.1, ticks_per_s=100) is None  # no tick passed
    with pytest.raises(ValueError):
        session_noise(r, r, 0.1, ticks_per_s=0)


def test_unknown_session_cpu_counts_all_busy_time_as_background() -> None:
    noise = session_noise(reading(0, 0), reading(100, 100), None, ticks_per_s=100)
    assert noise is not None and noise.background_share == pytest.approx(0.5)


# --- the guard ---------------------------------------------------------------------------------


def _noise(share: float, busy: bool) -> object:
    start = reading(0, 0)
    b = round(share * 2000)
    noise = session_noise(start, reading(b, 2000 - b), 0.0, ticks_per_s=100)
    assert noise is not None and noise.busy is busy
    return noise


def test_the_guard_repeats_busy_ok_sessions_up_to_its_retries() -> None:
    busy, quiet = _noise(0.5, True), _noise(0.01, False)
    mark = NoiseGuard()
    assert mark.limit == DEFAULT_MAX_BACKGROUND_SHARE
    assert not mark.should_repeat(busy, 0, ok=True)  # type: ignore[arg-type]
    repeat = NoiseGuard(0.2, "repeat", 2)
    assert repeat.limit == 0.2
    assert repeat.should_repeat(busy, 0, ok=True)  # type: ignore[arg-type]
    assert repeat.should_repeat(busy, 1, ok=True)  # type: ignore[arg-type]
    assert not repeat.should_repeat(busy, 2, ok=True)  # type: ignore[arg-type]  # out of retries
    assert not repeat.should_repeat(busy, 0, ok=False)  # type: ignore[arg-type]  # a failure
    assert not repeat.should_repeat(quiet, 0, ok=True)  # type: ignore[arg-type]
    assert not repeat.should_repeat(None, 0, ok=True)
    for bad in ({"on_noisy": "retry"}, {"retries": -1}, {"max_background_share": 1.5}):
        with pytest.raises(ValueError):
            NoiseGuard(**bad)


# --- the summary line --------------------------------------------------------------------------


def _row(sid: int, share: float | None, *, busy: bool = False, status: str = "ok") -> dict:  # type: ignore[type-arg]
    extra = {}
    if share is not None:
        extra = {
            NOISE_BACKGROUND_SHARE: share,
            NOISE_BUSY: 1.0 if busy else 0.0,
            "noise_limit_share": 0.10,
            "noise_ncpu": 2.0,
            "noise_load1": 0.4 + sid / 10,
            "noise_steal_share": 0.0,
            "noise_perfmon_cpu_s": 0.01,
            "noise_window_s": 1.0,
        }
    return {"id": sid, "status": status, "extra": extra}


def test_a_quiet_run_says_quiet_with_median_and_max() -> None:
    rows = [_row(0, 0.01), _row(1, 0.03), _row(2, 0.008), _row(3, None)]
    s = summarize_noise(rows)
    assert (s.measured, s.busy, s.unmeasured, s.ncpu) == (3, 0, 1, 2)
    assert s.median_share == pytest.approx(0.01) and s.max_share == pytest.approx(0.03)
    assert s.perfmon_share == pytest.approx(0.03 / 6.0)
    line = quietness_line(s)
    assert line.startswith("Machine: quiet — background CPU median 1.0%, max 3.0% of 2 CPUs")
    assert "over 3 sessions" in line and "load 0.6 max" in line and "steal 0.0% max" in line


def test_a_busy_run_says_busy_counts_repeats_and_what_was_kept() -> None:
    rows = [
        _row(0, 0.55, busy=True, status="noisy"),
        _row(1, 0.60, busy=True),
        _row(2, 0.02),
        _row(3, 0.40, busy=True, status="noisy"),
        _row(4, 0.03),
    ]
    s = summarize_noise(rows)
    assert (s.measured, s.busy, s.repeated, s.kept_busy) == (5, 3, 2, 1)
    assert s.median_busy_share == pytest.approx(0.55)
    line = s.line()
    assert line.startswith("Machine: BUSY — 3 of 5 sessions over 10% background CPU of 2 CPUs")
    assert "(median 55%), 2 repeated" in line and "1 busy session kept" in line
    assert s.to_dict()["line"] == line and s.to_dict()["quiet"] is False


def test_a_run_without_figures_says_not_measured() -> None:
    assert summarize_noise([]).line() == "Machine: not measured"
    rows: list[dict[str, object]] = [
        {"id": 1, "extra": {NOISE_BACKGROUND_SHARE: "garbage"}},
        {"id": 2, "extra": None},
    ]
    assert (
        summarize_noise(rows).line() == "Machine: not measured (2 sessions without noise figures)"
    )


def test_damaged_rows_are_counted_not_a_traceback() -> None:
    from perfmon.engine.report import _machine
    from perfmon.engine.report_md import _machine_lines

    rows: list[dict[str, object]] = [
        {"id": 1, "status": "ok", "extra": {NOISE_BUSY: "yes", NOISE_BACKGROUND_SHARE: "x"}},
        {"id": 2, "status": "ok", "extra": [1, 2]},
        {"id": 3, "status": "ok", "extra": {NOISE_BUSY: 1.0, NOISE_BACKGROUND_SHARE: 0.5}},
        {"id": 4},
    ]
    machine = _machine(rows)
    assert machine["measured"] == 1 and machine["unmeasured"] == 3
    assert [b["id"] for b in machine["busy_sessions"]] == [3]
    assert any("50.0%" in line for line in _machine_lines(machine))


# --- campaign keys -----------------------------------------------------------------------------

BASE = """
[[workload]]
name = "w"
command = ["true"]
"""


def test_campaign_noise_keys_and_a_set_override(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """
        [campaign]
        name = "c"
        max_background_cpu = "5%"
        on_noisy = "repeat"
        noisy_retries = 3
        """
        + BASE
        + """
        [set.golden]
        sessions = 2
        [set.canary]
        sessions = 2
        on_noisy = "mark"
        """
    )
    c = parse_campaign(text, tmp_path / "c.toml")
    assert c.noise == NoiseGuard(0.05, "repeat", 3)
    assert c.noise_guard("golden") == c.noise
    assert c.noise_guard("canary") == NoiseGuard(0.05, "mark", 3)
    plain = parse_campaign('[campaign]\nname = "c"\n' + BASE, tmp_path / "c.toml")
    assert plain.noise == NoiseGuard() and plain.noise_guard("default") == NoiseGuard()


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        ('max_background_cpu = "ten"', "campaign.max_background_cpu", "percentage"),
        ("max_background_cpu = 0.1", "campaign.max_background_cpu", "percentage"),
        ('on_noisy = "retry"', "campaign.on_noisy", "unknown action"),
        ("noisy_retries = -1", "campaign.noisy_retries", ">= 0"),
    ],
)
def test_bad_noise_keys_name_line_and_key(
    tmp_path: Path, line: str, key: str, message: str
) -> None:
    text = f'[campaign]\nname = "c"\n{line}\n' + BASE
    with pytest.raises(CampaignError) as info:
        parse_campaign(text, tmp_path / "c.toml")
    assert info.value.key == key and info.value.line == 3 and message in info.value.message


# --- the scheduler -----------------------------------------------------------------------------


def test_a_repeated_session_runs_next_with_a_new_id_and_the_same_index(tmp_path: Path) -> None:
    text = (
        '[campaign]\nname = "c"\n'
        + BASE
        + ('[variant.a]\n[variant.b]\n[set.s]\nsessions = 2\norder = "interleaved"\n')
    )
    sched = Scheduler(parse_campaign(text, tmp_path / "c.toml"), sys.executable)
    assert sched.planned_total == 4
    first = sched.next_session()
    assert first is not None and first.variant == "a"
    again = sched.repeat(first)
    assert again is not None
    assert (again.id, again.attempt, again.index, again.variant) == (1, 1, 0, "a")
    assert again.argv == first.argv and again.set_name == first.set_name
    assert sched.planned_total == 5
    assert sched.next_session() == again  # the repetition first, then B: pairs stay together
    order = [s.variant for s in iter(sched.next_session, None)]
    assert order == ["b", "a", "b"]
    ids = [first.id, again.id]
    assert len(set(ids)) == 2
    # once stopped, nothing is repeated
    sched2 = Scheduler(parse_campaign(text, tmp_path / "c.toml"), sys.executable)
    spec = sched2.next_session()
    assert spec is not None
    sched2.stop()
    assert sched2.repeat(spec) is None and sched2.next_session() is None


def test_ids_stay_unique_with_repeats_anywhere(tmp_path: Path) -> None:
    text = '[campaign]\nname = "c"\n' + BASE + "[set.s]\nsessions = 5\nwarmup = 1\n"
    sched = Scheduler(parse_campaign(text, tmp_path / "c.toml"), sys.executable)
    seen = []
    while (spec := sched.next_session()) is not None:
        seen.append(spec.id)
        if spec.id % 2 == 0 and spec.attempt < 2:
            sched.repeat(spec)
    assert len(seen) == len(set(seen)) == sched.planned_total == sched.handed_out


# --- the engine's readings ---------------------------------------------------------------------


def test_read_noise_from_files_and_without_them(tmp_path: Path) -> None:
    stat, load = tmp_path / "stat", tmp_path / "loadavg"
    stat.write_text(PROC_STAT)
    load.write_text("0.25 0.1 0.05 1/99 42\n")
    r = read_noise(stat, load)
    assert r.cpu is not None and r.cpu.ncpu == 2 and r.load1 == 0.25 and r.perfmon_cpu_s > 0
    stat.write_text("garbage\n")
    r = read_noise(stat, tmp_path / "missing")
    assert r.cpu is None and r.load1 is None


def test_proc_reader_reads_first_lines_of_open_files_and_survives_damage(tmp_path: Path) -> None:
    stat, load = tmp_path / "stat", tmp_path / "loadavg"
    stat.write_text(PROC_STAT)
    load.write_text("0.25 0.1 0.05 1/99 42\n")
    reader = ProcReader(stat, load)
    assert reader.ncpu == 2
    r = reader()
    assert r.cpu == parse_proc_stat(PROC_STAT) and r.load1 == 0.25
    # later readings see new content through the open descriptors
    stat.write_text(PROC_STAT.replace("cpu  27641", "cpu  27941"))
    assert reader().cpu.user == 27941  # type: ignore[union-attr]
    stat.write_text("garbage\n")
    load.write_text("")
    r = reader()
    assert r.cpu is None and r.load1 is None
    reader.close()
    reader.close()
    assert reader().cpu is None
    missing = ProcReader(tmp_path / "no-stat", tmp_path / "no-load")
    assert missing.ncpu is None and missing().cpu is None and missing().load1 is None
    meter = NoiseMeter(missing)
    meter.started(1)
    assert meter.finished(1, 0.1, limit=0.1) is None and meter.unavailable == 2
    meter.close()


def test_the_meter_brackets_sessions_and_counts_unavailable_readings() -> None:
    readings = iter([reading(0, 0), reading(150, 50), NoiseReading(None, 0.0)])
    meter = NoiseMeter(lambda: next(readings), ticks_per_s=100)
    assert meter.finished(7, 0.5, limit=0.1) is None  # never started
    meter.started(7)
    meter.started(7)  # a second RUNNING update: ignored
    assert meter.is_open(7)
    noise = meter.finished(7, 0.5, limit=0.1)
    assert noise is not None and noise.background_share == pytest.approx(0.5) and noise.busy
    assert not meter.is_open(7)
    meter.started(8)
    assert meter.unavailable == 1


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="Linux /proc only")
def test_real_proc_readings_move_forward() -> None:
    a = read_noise()
    time.sleep(0.05)
    b = read_noise()
    assert a.cpu is not None and b.cpu is not None
    assert b.cpu.total >= a.cpu.total and b.cpu.busy >= a.cpu.busy
    assert b.cpu.ncpu >= len(os.sched_getaffinity(0))


# --- the runner, with a fake meter -------------------------------------------------------------


class FakeProc:
    """Counters where every reading adds ``busy`` of 200 ticks (1 s of 2 CPUs)."""

    def __init__(self, busy_share: float) -> None:
        self.busy_share = busy_share
        self.t = 0

    def __call__(self) -> NoiseReading:
        self.t += 1
        busy = int(self.t * 200 * self.busy_share)
        return NoiseReading(ticks(busy=busy, idle=self.t * 200 - busy), 0.0, 1.5)


def _campaign(tmp_path: Path, guard: str, *, sessions: int = 2) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [campaign]
            name = "noise"
            sample_interval = "50ms"
            grace = "1s"
            {guard}
            [[workload]]
            name = "w"
            command = ["true"]
            [variant.base]
            [variant.cand]
            [set.golden]
            sessions = {sessions}
            [[gate]]
            name = "Time"
            expr = "max(session_seconds) < 100"
            """
        )
    )
    return path


def _run(tmp_path: Path, guard: str, busy_share: float) -> tuple[Runner, list[Snapshot]]:
    campaign = load_campaign(_campaign(tmp_path, guard))
    runner = Runner(campaign, make_run_dir(tmp_path / "runs", campaign.name, time.time()))
    runner.noise = NoiseMeter(FakeProc(busy_share), ticks_per_s=100)
    snaps: list[Snapshot] = []
    runner.snapshot_listeners.append(snaps.append)
    asyncio.run(asyncio.wait_for(runner.run(), timeout=120))
    return runner, snaps


def test_repeat_guard_reruns_busy_sessions_and_keeps_them_out_of_the_gates(
    tmp_path: Path,
) -> None:
    runner, snaps = _run(tmp_path, 'on_noisy = "repeat"\nnoisy_retries = 1', 0.9)
    data = read_run(runner.run_dir)
    rows = sorted(data.sessions, key=lambda r: r["id"])
    assert [r["status"] for r in rows] == ["noisy", "ok"] * 4
    assert [r["extra"][NOISE_ATTEMPT] for r in rows] == [0.0, 1.0] * 4
    assert all(r["extra"][NOISE_BUSY] == 1.0 for r in rows)
    assert [r["variant"] for r in rows] == ["base", "base", "cand", "cand"] * 2
    assert all("repeated as session" in r["error"] for r in rows if r["status"] == "noisy")
    assert runner.scheduler.planned_total == 8
    assert runner.noise_counts == {"measured": 8, "busy": 8, "repeated": 4}
    assert snaps[-1].noise is not None and snaps[-1].noise.busy == 8
    report = json.loads((runner.run_dir / "report.json").read_text())
    assert report["machine"]["repeated"] == 4 and report["machine"]["kept_busy"] == 4
    assert report["machine"]["line"].startswith("Machine: BUSY — 8 of 8 sessions over 10%")
    # the gate saw the kept attempts only; the repeated ones are neither failed nor measured
    (gate,) = report["gates"]
    assert gate["n"] == 4
    assert report["sessions"]["failed"] == []
    assert sum(g["sessions"] for g in report["sessions"]["groups"]) == 4
    md = (runner.run_dir / "report.md").read_text()
    verdict_at = md.index("**Verdict:")
    assert md.index("Machine: BUSY") > verdict_at
    assert md.index("Machine: BUSY") < md.index("## Gates")
    assert "## Sessions on a busy machine" in md and "no: repeated" in md


def test_warmups_are_measured_but_never_repeated(tmp_path: Path) -> None:
    guard = 'on_noisy = "repeat"'
    path = _campaign(tmp_path, guard, sessions=1)
    path.write_text(path.read_text().replace("sessions = 1", "sessions = 1\nwarmup = 1"))
    campaign = load_campaign(path)
    runner = Runner(campaign, make_run_dir(tmp_path / "runs", campaign.name, time.time()))
    runner.noise = NoiseMeter(FakeProc(0.9), ticks_per_s=100)
    asyncio.run(asyncio.wait_for(runner.run(), timeout=120))
    rows = sorted(read_run(runner.run_dir).sessions, key=lambda r: r["id"])
    warm = [r for r in rows if r["warmup"]]
    assert len(warm) == 2 and all(r["status"] == "ok" and r["extra"][NOISE_BUSY] for r in warm)
    assert [r["status"] for r in rows if not r["warmup"]] == ["noisy", "noisy", "ok"] * 2


def test_default_guard_marks_busy_sessions_without_repeating(tmp_path: Path) -> None:
    runner, snaps = _run(tmp_path, "", 0.9)
    rows = read_run(runner.run_dir).sessions
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert all(r["extra"][NOISE_BUSY] == 1.0 for r in rows)
    last = snaps[-1]
    assert all(row.busy and row.background_share is not None for row in last.sessions)
    assert Snapshot.from_dict(json.loads(json.dumps(last.to_dict()))).sessions == last.sessions
    report = json.loads((runner.run_dir / "report.json").read_text())
    assert "4 busy sessions kept in the results" in report["machine"]["line"]
    from perfmon.engine.replay import snapshot_from_run_dir

    replayed = snapshot_from_run_dir(runner.run_dir)
    assert [r.busy for r in replayed.sessions] == [True] * 4


def test_the_viewer_marks_busy_sessions_and_counts_them() -> None:
    from perfmon.core.snapshot import SessionRow
    from perfmon.tui.widgets.sessions_table import SessionsTable, status_role
    from perfmon.tui.widgets.status_bar import status_content

    row = SessionRow(0, "w", "a", "s", "", False, "ok", "ok", 1.0, 1.0, None, 0, 0, 0.55, True)
    cells = SessionsTable().cells_of(row)
    status = next(c for c in cells if "ok" in c.text)
    assert status.text == "ok ⚠bg 55%" and status.role == "warning"
    quiet = SessionsTable().cells_of(
        SessionRow(1, "w", "a", "s", "", False, "ok", "ok", 1.0, 1.0, None, 0, 0, 0.01, False)
    )
    assert any(c.text == "ok" and c.role == "success" for c in quiet)
    assert status_role("noisy") == "warning"
    snap = Snapshot(1, "r", "c", "/", "running", 0.0, 1.0, 4, 2, 0, 0, (row,))
    assert "on a busy machine" not in status_content(snap).plain
    busy = Snapshot(
        1,
        "r",
        "c",
        "/",
        "running",
        0.0,
        1.0,
        4,
        2,
        0,
        0,
        (row,),
        noise=NoiseCounts(busy=3, measured=4, repeated=0),
    )
    assert "3 on a busy machine" in status_content(busy).plain


def test_quiet_machine_flags_nothing(tmp_path: Path) -> None:
    runner, _ = _run(tmp_path, 'max_background_cpu = "20%"\non_noisy = "repeat"', 0.05)
    rows = read_run(runner.run_dir).sessions
    assert len(rows) == 4 and all(r["extra"][NOISE_BUSY] == 0.0 for r in rows)
    report = json.loads((runner.run_dir / "report.json").read_text())
    assert report["machine"]["line"].startswith("Machine: quiet — background CPU median")
    assert report["machine"]["limit_share"] == pytest.approx(0.2)


def test_headless_lines_mark_busy_sessions_with_a_running_count() -> None:
    from perfmon.core.model import SessionSpec

    spec = SessionSpec(0, "w", "a", "s", 0, False, ("true",), (), "/", None)
    out = io.StringIO()
    printer = ProgressPrinter(out, 2)
    quiet = SessionResult(spec, SessionStatus.OK, wall_s=1.0, cpu_s=1.0)
    quiet.extra = {NOISE_BUSY: 0.0, NOISE_BACKGROUND_SHARE: 0.01}
    busy = SessionResult(spec, SessionStatus.OK, wall_s=1.0, cpu_s=1.0)
    busy.extra = {NOISE_BUSY: 1.0, NOISE_BACKGROUND_SHARE: 0.55, "noise_limit_share": 0.1}
    printer.session(quiet)
    printer.session(busy)
    first, second = out.getvalue().splitlines()
    assert "BUSY" not in first
    assert "BUSY: background CPU 55% > 10%  [1 session on a busy machine]" in second
    repeated = SessionResult(spec, SessionStatus.NOISY, wall_s=1.0, cpu_s=1.0, error="repeated")
    repeated.extra = dict(busy.extra)
    printer.session(repeated)
    third = out.getvalue().splitlines()[2]
    assert third.startswith("[3/3]")  # a repetition adds a planned session
    assert "(repeated)  [2 sessions on a busy machine]" in third


# --- real runs (slow) --------------------------------------------------------------------------


@pytest.fixture
def spinners() -> Iterator[None]:
    """One CPU-spinning process per CPU, each ending by itself after 60 s at most."""
    code = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(os.cpu_count() or 1)]
    time.sleep(0.3)
    try:
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def _real_campaign(tmp_path: Path) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [campaign]
            name = "real-noise"
            sample_interval = "100ms"
            [[workload]]
            name = "busy"
            command = ["{{python}}", "{BUSY}", "0.4"]
            [set.s]
            sessions = 3
            """
        )
    )
    return path


@pytest.mark.slow
@pytest.mark.quiet  # spins every CPU on purpose: the other tests' noise
@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="Linux /proc only")
def test_a_busy_machine_is_flagged_live_and_in_the_report(tmp_path: Path, spinners: None) -> None:
    campaign = load_campaign(_real_campaign(tmp_path))
    run_dir = make_run_dir(tmp_path / "runs", campaign.name, time.time())
    out = io.StringIO()
    status = run_headless(campaign, run_dir, out=out)
    assert status == 0
    text = out.getvalue()
    assert "BUSY: background CPU" in text
    report = json.loads((run_dir / "report.json").read_text())
    machine = report["machine"]
    assert machine["measured"] == 3 and machine["busy"] >= 2
    assert machine["line"].startswith("Machine: BUSY")
    assert machine["line"] in text  # the headless end prints the report's line
    assert machine["median_busy_background_share"] > 0.3  # a CPU per CPU was spinning


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="Linux /proc only")
def test_an_idle_run_reports_consistent_figures(tmp_path: Path) -> None:
    # Other users of the machine may make it busy: check consistency, not quietness.
    campaign = load_campaign(_real_campaign(tmp_path))
    run_dir = make_run_dir(tmp_path / "runs", campaign.name, time.time())
    assert run_headless(campaign, run_dir, out=io.StringIO()) == 0
    rows = read_run(run_dir).sessions
    machine = json.loads((run_dir / "report.json").read_text())["machine"]
    shares = [r["extra"][NOISE_BACKGROUND_SHARE] for r in rows]
    assert machine["measured"] == len(rows) == 3
    assert all(0.0 <= s <= 1.0 for s in shares)
    assert machine["max_background_share"] == pytest.approx(max(shares))
    assert machine["busy"] == sum(1 for r in rows if r["extra"][NOISE_BUSY])
    word = "quiet" if machine["busy"] == 0 else "BUSY"
    assert machine["line"].startswith(f"Machine: {word} — ")
    assert machine["ncpu"] >= 1 and machine["perfmon_share"] is not None
    for r in rows:  # the session's own CPU is not background: its window holds its CPU time
        assert r["extra"]["noise_window_s"] * r["extra"]["noise_ncpu"] >= r["cpu_s"] * 0.9
