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
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfmon.core.gates import format_gate_value

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


def gate_quantity(gate: Mapping[str, Any], x: Any) -> str:
    """A gate's value, interval end or threshold from report.json, in the unit the gate's
    parser gave it (its ``unit`` and ``rate``; ``perfmon.core.gates.format_gate_value``), so
    that every format shows one gate alike and none parses its expression.

    Args:
        gate: one entry of the report's ``gates`` (or ``gates_by_set``) list.
        x: the number, in the gate's base unit; anything else (None, NaN) reads ``"–"``.

    Returns:
        E.g. ``"1.3 ms"``, ``"48 MiB"``, ``"1.2 MiB/h"``; a gate without a unit (a report
        written before gates carried one) gives the number to 4 significant digits.
    """
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return "–"
    unit = str(gate.get("unit") or "")
    if not unit:
        return f"{x:.4g}" if isinstance(x, float) else f"{x:,}"
    return format_gate_value(float(x), unit, bool(gate.get("rate")))


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
        import json

        return json.dumps(report, indent=2, allow_nan=False) + "\n"
    if fmt == "md":
        from perfmon.engine.report import render_markdown

        return render_markdown(dict(report))
    if fmt == "junit":
        from perfmon.engine.exporters.junit_report import render_junit

        return render_junit(report)
    if fmt == "github":
        from perfmon.engine.exporters.github_summary import render_github

        return render_github(report)
    if fmt in ("html", "csv"):
        if data is None:
            from perfmon.engine.recorder import read_run

            data = read_run(Path(str(report["run_dir"])))
        if fmt == "csv":
            from perfmon.engine.exporters.csv_report import render_csv

            return render_csv(report, data.sessions)
        from perfmon.engine.exporters.html_report import render_html

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
    from perfmon.engine.recorder import atomic_write_text

    written: list[Path] = []
    failed: dict[str, str] = {}
    for fmt in formats:
        try:
            if data is None and fmt in ("html", "csv"):
                from perfmon.engine.recorder import read_run

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
