"""report.html in a real headless browser (Chromium from Debian's packages).

Chromium prints every console message (errors, Content-Security-Policy violations such as a
blocked network load) to stderr as ``CONSOLE`` lines with ``--enable-logging=stderr``; the page
must render with none. A control page proves the check can fail. Skipped, with the reason,
where Chromium is not installed (``apt-get install chromium``; .ci/run installs it).
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from perfmon.core.gates import parse_gate
from perfmon.core.model import GateResult, GateState
from perfmon.engine.exporters import render
from perfmon.engine.recorder import read_run
from perfmon.engine.report import build_report
from synthetic_runs import normal_walls, record_run

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium not installed (apt-get install chromium)"
    ),
]


def _chromium(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run",
         "--enable-logging=stderr", "--v=0", f"--user-data-dir={page.parent / 'profile'}",
         *args, page.as_uri()],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_the_console_check_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text(
        '<html><head><meta http-equiv="Content-Security-Policy" content="default-src \'none\'">'
        '</head><body><img src="https://example.invalid/x.png"></body></html>'
    )
    assert _console(_chromium(page, "--dump-dom").stderr)


def test_report_html_renders_without_console_errors(tmp_path: Path) -> None:
    run_dir = record_run(
        tmp_path / "run",
        {"baseline": normal_walls(1.0, 8, seed=1), "candidate": normal_walls(0.6, 8, seed=2)},
    )
    gates = [
        GateResult("Speed", "speedup(session_seconds, baseline, candidate) >= 1.4",
                   GateState.PASS, 1.6, 16, "speedup = 1.6x", 1.5, 1.7),
        GateResult("Queue", "max(event_queue_depth) < 5", GateState.FAIL, 9.0, 160, "max = 9"),
    ]  # fmt: skip
    # As a run's gates come: annotated with their grammar (the metrics they read, whose time
    # series the report charts), by the parser.
    gates = [parse_gate(g.expr).annotate(g) for g in gates]
    data = read_run(run_dir)
    page = run_dir / "report.html"
    page.write_text(render("html", build_report(data, gates, verdict="fail"), data))

    done = _chromium(page, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    assert _console(done.stderr) == []
    assert "Verdict: FAIL: 1 of 2 gates passed" in done.stdout
    assert done.stdout.count('<img class="chart"') >= 3

    # every embedded chart is a well-formed SVG document
    for blob in re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", done.stdout):
        root = ET.fromstring(base64.b64decode(blob))
        assert root.tag.endswith("svg")

    shot = tmp_path / "report.png"
    done = _chromium(page, f"--screenshot={shot}", "--window-size=1280,2000")
    assert _console(done.stderr) == []
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
