"""The README's main job: the bundled quickstart campaign, headless, end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quickstart_runs_end_to_end_with_a_truthful_report(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "perfmon",
            "run",
            str(REPO / "samples" / "quickstart.toml"),
            "--headless",
            "--runs-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        stdin=subprocess.DEVNULL,
    )
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    report = json.loads((run_dir / "report.json").read_text())
    # The exit status is the verdict the report gives, whatever the data says on this machine.
    expected = 0 if report["verdict"] == "pass" else 1
    assert out.returncode == expected, out.stdout + out.stderr
    session_lines = [line for line in out.stdout.splitlines() if re.match(r"\[\s*\d+/\d+\]", line)]
    assert len(session_lines) == 12
    assert all(" ok " in line for line in session_lines), out.stdout
    # every gate was decided on recorded data, with its sample count
    assert len(report["gates"]) == 7
    for gate in report["gates"]:
        # the overhead gate is statistical: its interval may still straddle 5% at n = 5
        assert gate["state"] in ("pass", "fail", "inconclusive"), gate
        assert gate["n"] > 0
    md = (run_dir / "report.md").read_text()
    for name in (
        "Event queue depth",
        "Causal trace size",
        "Compression frequency",
        "RAM",
        "Expert selection",
        "Monitoring overhead",
    ):
        assert name in md
    assert (run_dir / "samples.parquet").is_file()
    assert (run_dir / "manifest.json").is_file()
    logs = sorted((run_dir / "logs").iterdir())
    assert len(logs) == 24  # stdout and stderr of 12 sessions
    # issue 14: the viewer's comparison panel (here through attach's replay of the finished
    # run): baseline against monitored on every session, for session_seconds and for the
    # overhead gate's chunk_seconds
    from perfmon.engine.replay import snapshot_from_run_dir

    panel = snapshot_from_run_dir(run_dir).comparison
    assert panel is not None and panel.metrics[0] == "session_seconds"
    assert "chunk_seconds" in panel.metrics
    for metric in ("session_seconds", "chunk_seconds"):
        (row,) = panel.rows_of(metric)
        assert [(s.variant, s.n) for s in row.sides] == [("baseline", 5), ("monitored", 5)]
        (ratio,) = row.ratios
        assert (ratio.variant, ratio.against) == ("monitored", "baseline")
        assert ratio.state in ("decided", "undecided"), ratio
