"""Report formats besides report.md and report.json: HTML, CSV, JUnit XML, GitHub summary.

Every exporter works from the report's *data* (``perfmon.engine.report.build_report``'s dict,
the content of report.json) and, where it needs per-session or per-sample detail, from the run
directory as read by ``perfmon.engine.recorder.read_run`` — never from report.md's text.

- ``report.html`` (``html_report``): one self-contained file (no network, no JavaScript) with
  the verdict, the gates, per-variant distributions, gated metrics over time with the gate
  changes marked, the comparison table and the flame graphs; charts drawn by matplotlib as SVG.
- ``report.csv`` (``csv_report``): one row per session and one row per metric summary.
- ``junit.xml`` (``junit_report``): one testcase per gate per set.
- GitHub step summary (``github_summary``): Markdown for ``$GITHUB_STEP_SUMMARY``.

``write_exports`` writes the files a run writes by default; each format is written on its own,
so one that fails (say, matplotlib missing) never costs the run the others, and the failure is
returned, not raised.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfmon.engine.exporters.common import gate_quantity
from perfmon.engine.exporters.csv_report import render_csv
from perfmon.engine.exporters.github_summary import render_github
from perfmon.engine.exporters.html_report import render_html
from perfmon.engine.exporters.junit_report import render_junit
from perfmon.engine.recorder import atomic_write_text, read_run
from perfmon.engine.report_md import render_markdown

if TYPE_CHECKING:
    from perfmon.engine.recorder import RunData

__all__ = ["DEFAULT_FORMATS", "FILE_NAMES", "FORMATS", "gate_quantity", "render", "write_exports"]

log = logging.getLogger(__name__)

FORMATS = ("md", "json", "html", "csv", "junit", "github")
"""Every format ``perfmon report --format`` knows."""

DEFAULT_FORMATS = ("html", "csv", "junit")
"""What a run writes next to report.md and report.json."""

FILE_NAMES = {
    "md": "report.md",
    "json": "report.json",
    "html": "report.html",
    "csv": "report.csv",
    "junit": "junit.xml",
    "github": "report.github.md",
}
"""The file each format is written to inside the run directory."""


def render(fmt: str, report: Mapping[str, Any], data: RunData | None) -> str:
    """Render one format as text.

    Args:
        fmt: one of ``FORMATS``.
        report: ``build_report``'s dict (a perfmon-report version 1).
        data: the run as read by ``read_run``; needed by ``html`` and ``csv`` (per-session and
            per-sample detail), read from ``report["run_dir"]`` when None.

    Returns:
        The document's text.

    Raises:
        ValueError: for an unknown format or a report that is not a perfmon report.
        ImportError: for ``html`` when matplotlib is not installed.
    """
    if fmt == "json":
        return json.dumps(report, indent=2, allow_nan=False) + "\n"
    if fmt == "md":
        return render_markdown(dict(report))
    if fmt == "junit":
        return render_junit(report)
    if fmt == "github":
        return render_github(report)
    if fmt in ("html", "csv"):
        if data is None:
            data = read_run(Path(str(report["run_dir"])))
        if fmt == "csv":
            return render_csv(report, data.sessions)

        return render_html(report, data)
    raise ValueError(f"unknown report format {fmt!r} (known: {', '.join(FORMATS)})")


def write_exports(
    run_dir: Path,
    report: Mapping[str, Any],
    data: RunData | None = None,
    formats: Sequence[str] = DEFAULT_FORMATS,
) -> tuple[list[Path], dict[str, str]]:
    """Write ``formats`` into the run directory, each atomically and each on its own.

    Args:
        run_dir: the run directory.
        report: ``build_report``'s dict.
        data: the run as read by ``read_run`` (read once here when None and needed).
        formats: formats among ``FORMATS``.

    Returns:
        ``(written, failed)``: the paths written, and format -> error text for those that could
        not be written (logged too; an older file of that format is removed, so that no stale
        report stays next to a new report.md). Never raises for one format's failure.
    """

    written: list[Path] = []
    failed: dict[str, str] = {}
    for fmt in formats:
        try:
            if data is None and fmt in ("html", "csv"):
                data = read_run(run_dir)
            text = render(fmt, report, data)
            path = run_dir / FILE_NAMES[fmt]
            atomic_write_text(path, text)
            written.append(path)
        except Exception as exc:  # one format must never cost the run the others
            log.exception("could not write the %s report", fmt)
            failed[fmt] = f"{type(exc).__name__}: {exc}"
            # An older file of this format (an export made mid-run) would now disagree with
            # report.md: remove it rather than leave a stale report behind.
            with contextlib.suppress(OSError):
                (run_dir / FILE_NAMES[fmt]).unlink(missing_ok=True)
    return written, failed
