"""Fuzz the readers with damaged run directories (issue 13, point 1).

A small but complete run directory is recorded once with the recorder's own API (a closed run:
``samples.parquet`` with several row groups, ``sessions.jsonl``/``.parquet``, manifest, events,
profiles; and an open run: sample segments), then every kind of file is damaged at random
offsets with a fixed seed: truncated, overwritten with random bytes, or a range zeroed. For
every case ``perfmon report`` (in-process) must exit 0 or 1 as documented, never raise, and

- when sample data was hit, either say "Damage found" in report.md or read back exactly the
  samples that were recorded (a change the checks cannot see is one that changed nothing the
  report uses, e.g. an IPC padding byte);
- when a JSON file no longer decodes, say "Damage found";
- exit 1 whenever it reports damage beyond a crash's torn tail (``data_lost``), else 0 (the
  verdict is printed, as ``perfmon report`` always did).

A sample of cases also runs ``perfmon report`` in a subprocess, where a signal (a segfault in
pyarrow) would show as a negative return code; and ``perfmon attach``'s replay and ``perfmon
compare`` read the damaged runs too.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perfmon.cli import main
from perfmon.core.batch import SampleBatch
from perfmon.core.campaign import parse_campaign
from perfmon.core.model import (
    GateResult,
    GateState,
    MetricKind,
    Sample,
    SessionResult,
    SessionSpec,
    SessionStatus,
)
from perfmon.engine import recorder as recorder_mod
from perfmon.engine.events import GateChangeLog
from perfmon.engine.manifest import campaign_to_json
from perfmon.engine.recorder import Recorder, read_run

T0 = 1_764_000_000.0
SEED = 20261201

CAMPAIGN = """
[campaign]
name = "fuzzed"
bootstrap_resamples = 200

[[workload]]
name = "w"
command = ["true"]

[variant.baseline]
[variant.candidate]

[set.golden]
sessions = 6

[[gate]]
name = "Queue"
expr = "p95(event_queue_depth) < 1000"
[[gate]]
name = "RAM"
expr = "max(system_memory_percent) <= 90"
[[gate]]
name = "Speed"
expr = "speedup(session_seconds, baseline, candidate) >= 0.5"
"""


def _result(sid: int) -> SessionResult:
    variant = "baseline" if sid % 2 == 0 else "candidate"
    spec = SessionSpec(
        id=sid,
        workload="w",
        variant=variant,
        set_name="golden",
        index=sid // 2,
        warmup=False,
        argv=("true",),
        env=(),
        cwd="/tmp",
        timeout_s=60.0,
        params=(),
    )
    start = T0 + sid * 2.0
    r = SessionResult(spec=spec, status=SessionStatus.OK, start_t=start, end_t=start + 1.0)
    r.wall_s = (2.0 if variant == "baseline" else 1.5) + 0.01 * sid
    r.cpu_s = 0.5
    r.peak_rss_bytes = 50_000_000 + sid
    r.samples = 200
    return r


def _record(run_dir: Path, *, close: bool) -> None:
    """Record 12 sessions, 2,400 session samples and 120 machine-wide ones."""
    campaign = parse_campaign(CAMPAIGN, run_dir / "c.toml")
    rec = Recorder(run_dir, segment_max_bytes=12_000)  # several segments
    rec.write_manifest(
        {
            "run_id": run_dir.name,
            "started_t": T0 - 1.0,
            "campaign": campaign_to_json(campaign),
            "provenance": {"hostname": "fuzz"},
        }
    )
    rng = np.random.default_rng(SEED)
    events = GateChangeLog(run_dir)
    for sid in range(12):
        r = _result(sid)
        start = float(r.start_t or 0.0)
        samples = [
            Sample(start + k * 0.005, sid, "event_queue_depth", float(rng.integers(0, 200)))
            for k in range(100)
        ] + [
            Sample(start + k * 0.005, sid, "chunks_total", 1.0, MetricKind.COUNTER)
            for k in range(100)
        ]
        samples.append(Sample(start, -1, "system_memory_percent", 40.0 + sid))
        samples.append(Sample(start + 0.5, -1, "system_memory_percent", 41.0 + sid))
        samples.append(Sample(float(r.end_t or 0.0), sid, "session_seconds", float(r.wall_s or 0)))
        rec.add_batch(SampleBatch.from_samples(samples))
        rec.flush()
        rec.session_finished(r)
        state = GateState.PASS if sid > 3 else GateState.PENDING
        events.observe([GateResult("Queue", "p95(...)", state, 1.0, 1, "ok")], start)
    events.close()
    profiles = run_dir / "profiles"
    profiles.mkdir()
    record = {
        "name": "s0001-p01",
        "session": 1,
        "workload": "w",
        "variant": "candidate",
        "params": "",
        "set_name": "golden",
        "started_t": T0,
        "seconds": 1.0,
        "rate_hz": 100,
        "nonblocking": False,
        "reason": "on demand",
        "status": "ok",
        "samples": 30,
        "errors": 0,
        "message": "",
    }
    (profiles / "index.jsonl").write_text(json.dumps(record) + "\n")
    (profiles / "s0001-p01.collapsed").write_text(
        "MainThread;main (w.py:1);work (w.py:5) 20\nMainThread;main (w.py:1);io (w.py:9) 10\n"
    )
    if close:
        rec.close()


@dataclass(frozen=True)
class Base:
    closed: Path
    open: Path
    closed_samples: list[tuple[float, int, str, float, str]]
    open_samples: list[tuple[float, int, str, float, str]]


def _rows(run_dir: Path) -> list[tuple[float, int, str, float, str]]:
    table = read_run(run_dir).samples
    return sorted(
        zip(
            *(table.column(c).to_pylist() for c in ("t", "session", "metric", "value", "kind")),
            strict=True,
        )
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    root = tmp_path_factory.mktemp("fuzz-base")
    closed, opened = root / "closed", root / "open"
    closed.mkdir()
    opened.mkdir()
    old = recorder_mod.PARQUET_ROW_GROUP_ROWS
    recorder_mod.PARQUET_ROW_GROUP_ROWS = 500  # several row groups in a small file
    try:
        _record(closed, close=True)
    finally:
        recorder_mod.PARQUET_ROW_GROUP_ROWS = old
    _record(opened, close=False)
    for run in (closed, opened):
        out = _report(run)
        assert out.rc == 0, out.stderr
        assert "Damage found" not in out.markdown
    return Base(closed, opened, _rows(closed), _rows(opened))


@dataclass(frozen=True)
class Outcome:
    rc: int
    stdout: str
    stderr: str
    markdown: str
    report: dict[str, Any]


def _report(run_dir: Path) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["report", str(run_dir)])
    md = run_dir / "report.md"
    markdown = md.read_text() if md.exists() else ""
    report = json.loads((run_dir / "report.json").read_text()) if md.exists() else {}
    return Outcome(rc, out.getvalue(), err.getvalue(), markdown, report)


# file kind -> (which base run, how to pick the file)
KINDS = {
    "segment": ("open", "samples/segment-*.arrows"),
    "samples.parquet": ("closed", "samples.parquet"),
    "sessions.jsonl": ("closed", "sessions.jsonl"),
    "sessions.parquet": ("closed", "sessions.parquet"),
    "manifest.json": ("closed", "manifest.json"),
    "events.jsonl": ("closed", "events.jsonl"),
    "profiles/index.jsonl": ("closed", "profiles/index.jsonl"),
    "profiles/*.collapsed": ("closed", "profiles/*.collapsed"),
}
SAMPLE_KINDS = {"segment", "samples.parquet"}
MUTATIONS = ("truncate", "overwrite", "zeros")


@dataclass(frozen=True)
class Case:
    kind: str
    mutation: str
    file_index: int
    offset_frac: float
    length: int
    seed: int

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.mutation}-{self.seed}"


def make_cases(n: int, seed: int = SEED) -> list[Case]:
    """``n`` cases, cycling through every file kind and mutation, offsets and lengths random."""
    rng = random.Random(seed)
    cases = []
    combos = [(k, m) for k in KINDS for m in MUTATIONS]
    for i in range(n):
        kind, mutation = combos[i % len(combos)]
        length = rng.choice([1, 2, 4, 8, 16, 64, 512])
        cases.append(Case(kind, mutation, rng.randrange(1000), rng.random(), length, i))
    return cases


def apply(case: Case, base: Base, dest: Path) -> tuple[Path, bytes, bytes]:
    """Copy the base run to ``dest`` and damage one file; returns (file, before, after)."""
    which, pattern = KINDS[case.kind]
    src = base.open if which == "open" else base.closed
    shutil.copytree(src, dest)
    files = sorted(dest.glob(pattern))
    assert files, pattern
    target = files[case.file_index % len(files)]
    before = target.read_bytes()
    rng = random.Random(case.seed)
    off = min(int(case.offset_frac * len(before)), max(len(before) - 1, 0))
    if case.mutation == "truncate":
        after = before[:off]
    elif case.mutation == "overwrite":
        junk = bytes(rng.randrange(256) for _ in range(case.length))
        after = before[:off] + junk + before[off + case.length :]
    else:
        after = before[:off] + b"\0" * case.length + before[off + case.length :]
    target.write_bytes(after)
    return target, before, after


def _json_intact(kind: str, data: bytes) -> bool:
    """Whether a JSON/JSONL file still decodes line by line (objects)."""
    try:
        text = data.decode("utf-8")
        if kind == "manifest.json":
            return isinstance(json.loads(text), dict)
        return all(isinstance(json.loads(line), dict) for line in text.splitlines() if line.strip())
    except (UnicodeDecodeError, ValueError):
        return False


def _collapsed_intact(data: bytes) -> bool:
    """Whether a stacks file still reads as py-spy writes it (see report._collapsed_intact)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    lines = text.split("\n")
    return (
        text.endswith("\n")
        and all(ch >= " " or ch in "\n\t" for ch in text)
        and all(re.fullmatch(r".+ \d+", line) for line in lines[:-1] if line.strip())
    )


def check_case(case: Case, base: Base, tmp: Path) -> str:
    """Run one case; assert the rules above; return what happened (for the tally)."""
    run = tmp / case.id
    _target, before, after = apply(case, base, run)
    out = _report(run)
    assert out.rc in (0, 1), (case, out.rc, out.stderr)
    assert out.report, (case, "no report written", out.stderr)
    rec = out.report["recording"]
    found = "## Damage found" in out.markdown
    assert found == bool(rec["problems"]), case
    expected_rc = 1 if rec["data_lost"] else 0
    assert out.rc == expected_rc, (case, out.rc, rec)
    if after == before:
        return "unchanged"
    if case.kind in SAMPLE_KINDS:
        if not found:
            want = base.open_samples if case.kind == "segment" else base.closed_samples
            assert _rows(run) == want, (case, "silently different samples")
            return "harmless"
    elif case.kind.endswith((".json", ".jsonl")) and not _json_intact(case.kind, after):
        assert found, (case, "undecodable JSON not reported")
    elif case.kind == "sessions.parquet" and not found:
        import pyarrow.parquet as pq  # a changed byte the page CRCs do not cover (statistics)

        same = pq.read_table(run / "sessions.parquet").equals(
            pq.read_table(base.closed / "sessions.parquet")
        )
        assert same, (case, "damaged sessions.parquet not reported")
        return "harmless"
    elif case.kind == "profiles/*.collapsed" and not _collapsed_intact(after):
        assert found, (case, "damaged stacks not reported")
    if case.kind not in SAMPLE_KINDS and case.kind != "manifest.json":
        return "damage found" if found else "not visible"
    # the other readers: attach's replay and compare
    from perfmon.engine.compare import compare_runs
    from perfmon.engine.replay import snapshot_from_run_dir

    snap = snapshot_from_run_dir(run)
    if case.kind in SAMPLE_KINDS and found:
        assert "damage found" in snap.message, snap.message
    compare_runs(base.closed, run)
    return "damage found" if found else "not visible"


N_CASES = 48  # 2 of each (kind, mutation); the slow test runs 360


# Chunk 0 (12 cases) in the fast suite, without the HTML report (matplotlib, ~2 s a report);
# all four chunks (48 cases) with every format, the HTML report included, in the full one.
@pytest.mark.parametrize(
    "chunk", [0, *(pytest.param(i, marks=pytest.mark.slow) for i in (1, 2, 3))]
)
def test_no_damaged_file_crashes_report(
    base: Base, tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if chunk == 0:
        import perfmon.engine.exporters as exporters

        monkeypatch.setattr(exporters, "DEFAULT_FORMATS", ("csv", "junit"))
    cases = make_cases(N_CASES)[chunk::4]
    tally: dict[str, int] = {}
    for case in cases:
        what = check_case(case, base, tmp_path)
        tally[what] = tally.get(what, 0) + 1
    assert tally.get("damage found", 0) > len(cases) // 3, tally


MANY_CASES = 360  # 15 of each kind and mutation
MANY_CHUNKS = 4  # tests of their own, so that parallel workers share the 360 cases


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("chunk", range(MANY_CHUNKS))
def test_no_damaged_file_crashes_report_many(
    base: Base, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    # 360 cases in all (15 of each kind and mutation), a quarter per chunk. report.md/json,
    # csv and junit are written for each; the HTML report (matplotlib, ~1 s a report) is left
    # to the default-size fuzz above, which renders it for all of its cases.
    import perfmon.engine.exporters as exporters

    monkeypatch.setattr(exporters, "DEFAULT_FORMATS", ("csv", "junit"))
    tally: dict[str, int] = {}
    for case in make_cases(MANY_CASES, seed=SEED + 1)[chunk::MANY_CHUNKS]:
        what = check_case(case, base, tmp_path)
        tally[f"{case.kind} {what}"] = tally.get(f"{case.kind} {what}", 0) + 1
        shutil.rmtree(tmp_path / case.id)
    print(json.dumps(tally, indent=1, sort_keys=True))


def _subprocess_report(run: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perfmon", "report", str(run)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("mutation", MUTATIONS)
@pytest.mark.slow
def test_damaged_samples_in_a_subprocess_no_signal_no_traceback(
    base: Base, tmp_path: Path, mutation: str
) -> None:
    """A segfault would show only here: a negative return code."""
    case = next(
        c
        for c in make_cases(N_CASES, seed=SEED + 7)
        if c.kind == "samples.parquet" and c.mutation == mutation
    )
    seg = next(
        c
        for c in make_cases(N_CASES, seed=SEED + 7)
        if c.kind == "segment" and c.mutation == mutation
    )
    for c in (case, seg):
        run = tmp_path / c.id
        apply(c, base, run)
        proc = _subprocess_report(run)
        assert proc.returncode in (0, 1), (c, proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr


def test_garbage_manifest_reports_damage_and_never_passes(base: Base, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(base.closed, run)
    (run / "manifest.json").write_bytes(b"\x00garbage{")
    out = _report(run)
    assert out.rc == 1
    assert out.report["verdict"] == "pending"
    assert "## Damage found" in out.markdown and "manifest.json unreadable" in out.markdown
    assert out.report["recording"]["samples"] == len(base.closed_samples)  # nothing else lost


def test_not_a_run_directory_exits_2(tmp_path: Path) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["report", str(tmp_path)]) == 2
        assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not a run directory" in err.getvalue()


def test_damaged_parquet_row_group_is_counted_and_the_rest_kept(base: Base, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    run = tmp_path / "run"
    shutil.copytree(base.closed, run)
    path = run / "samples.parquet"
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups >= 3
    rg = meta.row_group(1)
    col = rg.column(3)  # value
    data = bytearray(path.read_bytes())
    mid = col.data_page_offset + col.total_compressed_size // 2
    data[mid : mid + 8] = b"\xa5" * 8
    path.write_bytes(bytes(data))
    out = _report(run)
    rec = out.report["recording"]
    assert out.rc == 1 and rec["data_lost"]
    assert rec["samples_lost"] == rg.num_rows
    assert rec["samples"] == len(base.closed_samples) - rg.num_rows
    assert "1 of" in out.markdown and "row group(s) damaged" in out.markdown
